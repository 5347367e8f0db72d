//! The arguments of a relayed event, kept in whichever encoding they arrived in.
//!
//! A Socket.IO client's arguments arrive as the JSON text of its packet (with binary
//! attachments, which the gateway decodes into values); the native protocol carries a
//! MessagePack array as bytes. Between two peers of the same transport the payload is
//! passed through untouched; it is converted only when it crosses from one transport to
//! the other, and the conversion lives here so both front ends agree on it.

use bytes::Bytes;
use rmpv::Value;

/// The native wire's encoding of arguments (one MessagePack array) is the protocol's, so it
/// lives in the wire crate; re-exported here, where the conversions use it.
pub use p2p_relay_wire::args::{decode_args, encode_args, error_value, kind, PayloadError};

/// Event arguments: JSON-like values with binary anywhere, any number of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Decoded values: Socket.IO arguments that carried binary attachments, and values
    /// the relay makes itself.
    Values(Vec<Value>),
    /// A MessagePack array, as the native protocol carries it.
    MsgPack(Bytes),
    /// A JSON array of arguments without binary, as a Socket.IO client sent it: relayed
    /// to another Socket.IO client as it came, parsed only if it goes to a native one.
    Json(JsonArgs),
}

/// Deepest nesting of arrays and objects accepted in the JSON of one event or ack, its
/// packet's own array included. serde_json stops at 128 with a bare "recursion limit
/// exceeded"; this limit is reached first, so the sender is told what is wrong.
pub const MAX_NESTING: usize = 100;

/// The JSON text of an array of event arguments, e.g. `[1,{"a":"b"}]`, kept as it arrived.
///
/// Made only by [`JsonArgs::new`], which checks that the text is one JSON array and
/// nothing else, so every holder can splice it into a packet as it is. The front end that
/// reads it applies its own limits first (nesting, numbers; see the Socket.IO gateway's
/// `args` module); conversions parse it again and say so if that fails.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonArgs {
    text: Bytes,
    /// What the arguments would be as MessagePack (see [`JsonArgs::msgpack_size`]),
    /// counted by the same reading that checks them.
    msgpack_size: usize,
}

/// Why a text is not a JSON array of arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotJsonArgs {
    #[error("arguments must be a JSON array")]
    NotAnArray,
    #[error("arrays and objects nest deeper than {0} levels")]
    TooDeep(usize),
    /// serde_json's own words, e.g. "number out of range at line 1 column 40" for `1e400`
    /// (a number no 64-bit float holds).
    #[error("{0}")]
    Invalid(String),
}

impl JsonArgs {
    /// Takes `text` if it is exactly one JSON array (surrounding whitespace is trimmed
    /// off) whose arrays and objects nest at most `max_depth` deep, the outer array
    /// counted, and whose every number fits a 64-bit float, so that every later
    /// conversion succeeds. It reads the text once and builds nothing; that reading also
    /// counts what the arguments would be as MessagePack.
    pub fn new(text: Bytes, max_depth: usize) -> Result<Self, NotJsonArgs> {
        let start = text
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .ok_or(NotJsonArgs::NotAnArray)?;
        let end = text.len()
            - text
                .iter()
                .rev()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(0);
        let text = text.slice(start..end);
        if text.first() != Some(&b'[') {
            return Err(NotJsonArgs::NotAnArray);
        }
        let too_deep = std::cell::Cell::new(false);
        let check = check::Check {
            depth: 0,
            max_depth,
            too_deep: &too_deep,
        };
        let mut de = serde_json::Deserializer::from_slice(&text);
        let msgpack_size = serde::de::DeserializeSeed::deserialize(check, &mut de)
            .and_then(|size| de.end().map(|()| size))
            .map_err(|e| {
                if too_deep.get() {
                    NotJsonArgs::TooDeep(max_depth)
                } else {
                    NotJsonArgs::Invalid(e.to_string())
                }
            })?;
        Ok(JsonArgs { text, msgpack_size })
    }

    /// The array's text, e.g. `[1,"two"]`.
    pub fn as_str(&self) -> &str {
        // Checked in `new`: serde_json reads only UTF-8.
        std::str::from_utf8(&self.text).expect("JsonArgs holds UTF-8")
    }

    /// Its length in bytes, which is what it costs on the wire.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether the text is empty (never: it is at least `[]`).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The length of the MessagePack array [`Payload::into_msgpack`] makes of these
    /// arguments, known without converting them: a native client is sent that, and it
    /// can be more than twice the text (`1.5,` is four bytes of JSON and nine of
    /// MessagePack).
    pub fn msgpack_size(&self) -> usize {
        self.msgpack_size
    }

    /// The arguments as values (numbers as integers where they are whole and fit, floats
    /// otherwise, as the values path reads them).
    pub fn to_values(&self) -> Result<Vec<Value>, PayloadError> {
        serde_json::from_slice(&self.text).map_err(|e| PayloadError::Decode(e.to_string()))
    }
}

impl std::fmt::Debug for JsonArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JsonArgs").field(&self.as_str()).finish()
    }
}

/// Why arguments cannot be handed to a Socket.IO client, which reads JSON with binary
/// buffers: MessagePack can say things JSON cannot. Refused with this reason rather than
/// altered silently (a `NaN` turned into `null`) or failing deep inside the encoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotJson {
    #[error("they are not valid MessagePack: {0}")]
    Undecodable(String),
    #[error(
        "a map key is {0}; JSON object keys are strings (integer and boolean keys are \
         turned into strings, other keys cannot be)"
    )]
    MapKey(&'static str),
    #[error("a float is {0}, which JSON cannot carry")]
    NonFinite(&'static str),
    #[error("a string is not valid UTF-8")]
    InvalidUtf8,
    #[error("a MessagePack extension value (type {0}) has no JSON form")]
    Extension(i8),
    /// Socket.IO reads any object whose `_placeholder` is `true` as a binary attachment.
    #[error("an object has \"_placeholder\": true, which Socket.IO reads as a binary attachment")]
    PlaceholderLookalike,
}

impl Payload {
    /// No arguments at all.
    pub fn empty() -> Self {
        Payload::Values(Vec::new())
    }

    /// The size used for limits: exact for encoded payloads, a close upper estimate of the
    /// encoded size for values (computed without encoding them).
    pub fn size(&self) -> usize {
        match self {
            Payload::MsgPack(bytes) => bytes.len(),
            Payload::Json(json) => json.len(),
            Payload::Values(values) => 5 + values.iter().map(value_size).sum::<usize>(),
        }
    }

    /// The size of the arguments in the form a client of transport `to` is sent them,
    /// computed from the payload as it is, without converting it, so that the message
    /// limit can hold for what a conversion would build before anything is built:
    /// MessagePack toward a Socket.IO client is its JSON text (a binary written as a
    /// placeholder) plus its binaries, sent as attachments ([`socketio_size`]; a 1-byte
    /// nil is a 4-byte `null`, a 2-byte empty binary a 29-byte placeholder); JSON toward
    /// a native client is its MessagePack ([`JsonArgs::msgpack_size`]). A payload that
    /// is not converted on the way has its [`Payload::size`].
    pub fn size_for(&self, to: crate::Transport) -> usize {
        match (self, to) {
            (Payload::MsgPack(bytes), crate::Transport::Legacy) => {
                // Bytes that cannot be walked are refused by the conversion itself.
                socketio_size(bytes).unwrap_or(bytes.len())
            }
            (Payload::Json(json), crate::Transport::Native) => json.msgpack_size(),
            _ => self.size(),
        }
    }

    /// The arguments as values, decoding them if they arrived encoded.
    pub fn into_values(self) -> Result<Vec<Value>, PayloadError> {
        match self {
            Payload::Values(values) => Ok(values),
            Payload::MsgPack(bytes) => decode_args(&bytes),
            Payload::Json(json) => json.to_values(),
        }
    }

    /// The arguments in the form a Socket.IO client can read: JSON values with binary
    /// buffers. Values that arrived from Socket.IO are that already and pass untouched;
    /// MessagePack is decoded and checked (integer and boolean map keys become strings, as
    /// JavaScript would make them), and refused when JSON cannot express it.
    pub fn into_json_values(self) -> Result<Vec<Value>, NotJson> {
        match self {
            Payload::Values(values) => Ok(values),
            Payload::Json(json) => json
                .to_values()
                .map_err(|e| NotJson::Undecodable(e.to_string())),
            Payload::MsgPack(bytes) => {
                let mut values =
                    decode_args(&bytes).map_err(|e| NotJson::Undecodable(e.to_string()))?;
                values.iter_mut().try_for_each(json_form)?;
                Ok(values)
            }
        }
    }

    /// The arguments as one encoded MessagePack array, encoding them if they arrived as values.
    pub fn into_msgpack(self) -> Bytes {
        match self {
            Payload::MsgPack(bytes) => bytes,
            Payload::Values(values) => encode_args(&values),
            // Valid by construction; an argument list that no longer parses (it cannot
            // happen) becomes no arguments rather than a panic.
            Payload::Json(json) => encode_args(&json.to_values().unwrap_or_default()),
        }
    }
}

/// What MessagePack arguments become for a Socket.IO client, counted over the encoded
/// bytes without decoding them into values: the length of their JSON text, each binary
/// written as its placeholder `{"_placeholder":true,"num":N}`, plus the binaries' bytes,
/// which travel as attachments beside it (the measure the Socket.IO gateway holds its
/// own packets to). None when the bytes cannot be walked (malformed, an extension value,
/// nested deeper than the decoder allows): converting them refuses them with the reason.
///
/// A key or value JSON cannot express counts as something close; converting it is
/// refused anyway.
pub fn socketio_size(bytes: &[u8]) -> Option<usize> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    let attachments = std::cell::Cell::new(0);
    serde::de::DeserializeSeed::deserialize(
        json_size::JsonSize {
            key: false,
            attachments: &attachments,
        },
        &mut de,
    )
    .ok()
}

/// Makes `value` expressible in JSON in place, or says why it cannot be. The depth is
/// bounded by the decoder's own nesting limit.
fn json_form(value: &mut Value) -> Result<(), NotJson> {
    match value {
        Value::Nil | Value::Boolean(_) | Value::Integer(_) | Value::Binary(_) => Ok(()),
        Value::F32(f) if !f.is_finite() => Err(NotJson::NonFinite(non_finite(f64::from(*f)))),
        Value::F64(f) if !f.is_finite() => Err(NotJson::NonFinite(non_finite(*f))),
        Value::F32(_) | Value::F64(_) => Ok(()),
        Value::String(s) if s.is_str() => Ok(()),
        Value::String(_) => Err(NotJson::InvalidUtf8),
        Value::Ext(kind, _) => Err(NotJson::Extension(*kind)),
        Value::Array(items) => items.iter_mut().try_for_each(json_form),
        Value::Map(entries) => {
            let lookalike = entries
                .iter()
                .any(|(k, v)| k.as_str() == Some("_placeholder") && *v == Value::Boolean(true));
            if lookalike {
                return Err(NotJson::PlaceholderLookalike);
            }
            entries.iter_mut().try_for_each(|(key, value)| {
                *key = json_key(key)?;
                json_form(value)
            })
        }
    }
}

fn json_key(key: &Value) -> Result<Value, NotJson> {
    match key {
        Value::String(s) if s.is_str() => Ok(key.clone()),
        Value::String(_) => Err(NotJson::InvalidUtf8),
        Value::Integer(n) => Ok(Value::from(n.to_string())),
        Value::Boolean(b) => Ok(Value::from(b.to_string())),
        other => Err(NotJson::MapKey(kind(other))),
    }
}

fn non_finite(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else {
        "infinite"
    }
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::Nil | Value::Boolean(_) => 1,
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => 9,
        Value::String(s) => 5 + s.as_bytes().len(),
        Value::Binary(b) => 5 + b.len(),
        Value::Ext(_, b) => 6 + b.len(),
        Value::Array(items) => 5 + items.iter().map(value_size).sum::<usize>(),
        Value::Map(entries) => {
            5 + entries
                .iter()
                .map(|(k, v)| value_size(k) + value_size(v))
                .sum::<usize>()
        }
    }
}

/// Walks MessagePack through serde without building it, adding up its JSON form.
mod json_size {
    use std::cell::Cell;
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde::Serialize;

    /// One value, a map key when `key` (written as a string); `attachments` counts the
    /// binaries met so far, which number the placeholders.
    #[derive(Clone, Copy)]
    pub(super) struct JsonSize<'a> {
        pub key: bool,
        pub attachments: &'a Cell<usize>,
    }

    /// Counts what is written instead of keeping it.
    struct Count(usize);

    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The length of `value` as serde_json writes it (as the gateway's serializer does).
    fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
        let mut count = Count(0);
        // Writing into a counter fails only for what JSON cannot hold, which the
        // conversion refuses.
        let _ = serde_json::to_writer(&mut count, value);
        count.0
    }

    impl JsonSize<'_> {
        /// A number or boolean, quoted when it is a key (as the conversion makes it).
        fn scalar(self, len: usize) -> usize {
            len + if self.key { 2 } else { 0 }
        }
    }

    impl<'de> DeserializeSeed<'de> for JsonSize<'_> {
        type Value = usize;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for JsonSize<'_> {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a MessagePack value")
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(4)
        }
        fn visit_bool<E>(self, v: bool) -> Result<usize, E> {
            Ok(self.scalar(if v { 4 } else { 5 }))
        }
        fn visit_u64<E>(self, v: u64) -> Result<usize, E> {
            Ok(self.scalar(json_len(&v)))
        }
        fn visit_i64<E>(self, v: i64) -> Result<usize, E> {
            Ok(self.scalar(json_len(&v)))
        }
        fn visit_f32<E>(self, v: f32) -> Result<usize, E> {
            Ok(json_len(&v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<usize, E> {
            Ok(json_len(&v))
        }
        fn visit_str<E>(self, v: &str) -> Result<usize, E> {
            Ok(json_len(v))
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<usize, E> {
            // `{"_placeholder":true,"num":N}` and the attachment itself.
            let num = self.attachments.replace(self.attachments.get() + 1);
            Ok(28 + json_len(&num) + v.len())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let item = JsonSize { key: false, ..self };
            let (mut size, mut items) = (2usize, 0usize);
            while let Some(len) = seq.next_element_seed(item)? {
                size = size.saturating_add(len);
                items += 1;
            }
            Ok(size.saturating_add(items.saturating_sub(1)))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let key = JsonSize { key: true, ..self };
            let value = JsonSize { key: false, ..self };
            let (mut size, mut entries) = (2usize, 0usize);
            while let Some(len) = map.next_key_seed(key)? {
                // The key, its colon and its value.
                size = size
                    .saturating_add(len)
                    .saturating_add(1)
                    .saturating_add(map.next_value_seed(value)?);
                entries += 1;
            }
            Ok(size.saturating_add(entries.saturating_sub(1)))
        }
        // An extension value (what rmp_serde hands over as a newtype) has no JSON form:
        // not counted, converting it is refused.
    }
}

/// Reads a JSON value through without building it, bounding its nesting and adding up
/// the length of its MessagePack form (as `encode_args` writes the values it parses to).
mod check {
    use std::cell::Cell;
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    /// One value at nesting `depth` (its container's level).
    #[derive(Clone, Copy)]
    pub(super) struct Check<'a> {
        pub depth: usize,
        pub max_depth: usize,
        pub too_deep: &'a Cell<bool>,
    }

    impl Check<'_> {
        fn nested<E: serde::de::Error>(self) -> Result<Self, E> {
            if self.depth + 1 > self.max_depth {
                self.too_deep.set(true);
                return Err(E::custom("too deep"));
            }
            Ok(Check {
                depth: self.depth + 1,
                ..self
            })
        }
    }

    /// The length of a MessagePack string, array or map header for `len` bytes or items
    /// (`str_like`: strings, whose short form holds up to 31, not 15).
    fn header(len: usize, str_like: bool) -> usize {
        let short = if str_like { 32 } else { 16 };
        match len {
            n if n < short => 1,
            n if str_like && n <= u8::MAX as usize => 2,
            n if n <= u16::MAX as usize => 3,
            _ => 5,
        }
    }

    impl<'de> DeserializeSeed<'de> for Check<'_> {
        type Value = usize;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
            // `deserialize_any`, not `deserialize_ignored_any`: serde_json skips an ignored
            // value without parsing its numbers, and `1e400` must be refused here.
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Check<'_> {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
            Ok(1)
        }
        // Integers take the shortest MessagePack form that holds them.
        fn visit_i64<E>(self, v: i64) -> Result<usize, E> {
            Ok(match v {
                -32..=127 => 1,
                -128..=255 => 2,
                -32_768..=65_535 => 3,
                -2_147_483_648..=4_294_967_295 => 5,
                _ => 9,
            })
        }
        fn visit_u64<E>(self, v: u64) -> Result<usize, E> {
            Ok(match v {
                0..=127 => 1,
                128..=255 => 2,
                256..=65_535 => 3,
                65_536..=4_294_967_295 => 5,
                _ => 9,
            })
        }
        fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
            Ok(9)
        }
        fn visit_str<E>(self, v: &str) -> Result<usize, E> {
            Ok(header(v.len(), true) + v.len())
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(1)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let element = self.nested()?;
            let (mut size, mut items) = (0usize, 0usize);
            while let Some(len) = seq.next_element_seed(element)? {
                size = size.saturating_add(len);
                items += 1;
            }
            Ok(size.saturating_add(header(items, false)))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let element = self.nested()?;
            let (mut size, mut entries) = (0usize, 0usize);
            // Keys are strings: counted by the same seed, which does not nest them.
            while let Some(key) = map.next_key_seed(element)? {
                size = size
                    .saturating_add(key)
                    .saturating_add(map.next_value_seed(element)?);
                entries += 1;
            }
            Ok(size.saturating_add(header(entries, false)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Value> {
        vec![
            Value::from("hello"),
            Value::from(42),
            Value::from(1.5),
            Value::Map(vec![(
                Value::from("blob"),
                Value::Array(vec![Value::Binary(vec![0, 1, 2, 255]), Value::Nil]),
            )]),
        ]
    }

    #[test]
    fn values_round_trip_through_msgpack() {
        let encoded = Payload::Values(sample()).into_msgpack();
        assert_eq!(Payload::MsgPack(encoded).into_values().unwrap(), sample());
    }

    #[test]
    fn size_estimate_is_at_least_the_encoded_size() {
        let values = Payload::Values(sample());
        let encoded = values.clone().into_msgpack();
        assert!(values.size() >= encoded.len());
        assert_eq!(Payload::MsgPack(encoded.clone()).size(), encoded.len());
    }

    #[test]
    fn refuses_non_array_and_garbage() {
        let mut one = Vec::new();
        rmpv::encode::write_value(&mut one, &Value::from(7)).unwrap();
        assert!(matches!(
            Payload::MsgPack(one.into()).into_values(),
            Err(PayloadError::NotAnArray("an integer"))
        ));
        // rmpv reads the never-used marker 0xc1 as nil, so it is refused as a non-array.
        assert!(matches!(
            Payload::MsgPack(Bytes::from_static(&[0xc1])).into_values(),
            Err(PayloadError::NotAnArray("nil"))
        ));
        // Truncated input: an array of two with one element.
        assert!(matches!(
            Payload::MsgPack(Bytes::from_static(&[0x92, 0x01])).into_values(),
            Err(PayloadError::Decode(_))
        ));
        assert!(matches!(
            Payload::MsgPack(Bytes::new()).into_values(),
            Err(PayloadError::Decode(_))
        ));
        assert!(matches!(
            Payload::MsgPack(Bytes::from_static(&[0x90, 0x00])).into_values(),
            Err(PayloadError::TrailingBytes(1))
        ));
    }

    #[test]
    fn msgpack_that_json_cannot_express_is_refused_with_the_reason() {
        let cases: [(&[u8], NotJson); 6] = [
            // [{nil: 1}]: the payload a native client sent that panicked the relay.
            (&[0x91, 0x81, 0xc0, 0x01], NotJson::MapKey("nil")),
            (&[0x91, 0x81, 0x90, 0x01], NotJson::MapKey("an array")),
            (&[0x91, 0x81, 0xc4, 0x00, 0x01], NotJson::MapKey("binary")),
            (
                &[0x91, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
                NotJson::NonFinite("NaN"),
            ),
            (&[0x91, 0xa1, 0xff], NotJson::InvalidUtf8),
            (&[0x91, 0xd4, 0x05, 0x00], NotJson::Extension(5)),
        ];
        for (bytes, expected) in cases {
            let payload = Payload::MsgPack(Bytes::copy_from_slice(bytes));
            assert_eq!(
                payload.into_json_values().unwrap_err(),
                expected,
                "{bytes:x?}"
            );
        }
        assert!(matches!(
            Payload::MsgPack(Bytes::from_static(&[0x92, 0x01])).into_json_values(),
            Err(NotJson::Undecodable(_))
        ));
    }

    #[test]
    fn integer_and_boolean_keys_become_strings_and_the_rest_passes() {
        // [{1: "a", true: [1.5, bin], "k": nil}]
        let bytes = [
            0x91, 0x83, 0x01, 0xa1, b'a', 0xc3, 0x92, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc4,
            0x01, 0x07, 0xa1, b'k', 0xc0,
        ];
        let values = Payload::MsgPack(Bytes::copy_from_slice(&bytes))
            .into_json_values()
            .unwrap();
        let expected = vec![Value::Map(vec![
            (Value::from("1"), Value::from("a")),
            (
                Value::from("true"),
                Value::Array(vec![Value::F64(1.5), Value::Binary(vec![7])]),
            ),
            (Value::from("k"), Value::Nil),
        ])];
        assert_eq!(values, expected);
        // Values from a Socket.IO client are JSON already and pass untouched.
        assert_eq!(
            Payload::Values(sample()).into_json_values().unwrap(),
            sample()
        );
    }

    fn json(text: &str) -> Result<JsonArgs, NotJsonArgs> {
        JsonArgs::new(Bytes::copy_from_slice(text.as_bytes()), 10)
    }

    #[test]
    fn json_args_are_kept_as_they_came() {
        let text = r#"[1.50,"\u00e9",12345678901234567890123,{"a":[true,null]}]"#;
        let args = json(&format!("  {text}\n")).unwrap();
        assert_eq!(args.as_str(), text);
        assert_eq!(Payload::Json(args).size(), text.len());
    }

    #[test]
    fn json_args_convert_as_the_values_path_reads_them() {
        let args = json(r#"["hello",42,1.5,{"k":[-7,null]}]"#).unwrap();
        let expected = vec![
            Value::from("hello"),
            Value::from(42),
            Value::F64(1.5),
            Value::Map(vec![(
                Value::from("k"),
                Value::Array(vec![Value::from(-7), Value::Nil]),
            )]),
        ];
        assert_eq!(args.to_values().unwrap(), expected);
        let payload = Payload::Json(args);
        assert_eq!(payload.clone().into_json_values().unwrap(), expected);
        assert_eq!(payload.into_msgpack(), encode_args(&expected));
    }

    #[test]
    fn json_args_refuse_what_is_not_one_bounded_array() {
        assert_eq!(json(r#"{"a":1}"#).unwrap_err(), NotJsonArgs::NotAnArray);
        assert_eq!(json("  ").unwrap_err(), NotJsonArgs::NotAnArray);
        assert!(matches!(json("[1] [2]"), Err(NotJsonArgs::Invalid(_))));
        assert!(matches!(json("[1,"), Err(NotJsonArgs::Invalid(_))));
        let err = json("[1e400]").unwrap_err();
        assert!(
            matches!(&err, NotJsonArgs::Invalid(m) if m.starts_with("number out of range")),
            "{err:?}"
        );
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(json(&deep(10)).is_ok());
        assert_eq!(json(&deep(11)).unwrap_err(), NotJsonArgs::TooDeep(10));
        // Objects count as much as arrays.
        assert_eq!(
            json(&format!(
                "[{}]",
                r#"{"a":"#.repeat(10) + "1" + &"}".repeat(10)
            ))
            .unwrap_err(),
            NotJsonArgs::TooDeep(10)
        );
    }

    /// `values` as the Socket.IO gateway writes them: JSON, each binary a placeholder
    /// numbered in order; returns the text and the binaries' total length.
    fn socketio_form(values: &[Value]) -> (String, usize) {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Sio<'a>(&'a Value, &'a std::cell::Cell<(usize, usize)>);
        impl serde::Serialize for Sio<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    Value::Binary(b) => {
                        let (num, len) = self.1.get();
                        self.1.set((num + 1, len + b.len()));
                        let mut map = s.serialize_map(Some(2))?;
                        map.serialize_entry("_placeholder", &true)?;
                        map.serialize_entry("num", &num)?;
                        map.end()
                    }
                    Value::Array(items) => {
                        let mut seq = s.serialize_seq(Some(items.len()))?;
                        for item in items {
                            seq.serialize_element(&Sio(item, self.1))?;
                        }
                        seq.end()
                    }
                    Value::Map(entries) => {
                        let mut map = s.serialize_map(Some(entries.len()))?;
                        for (k, v) in entries {
                            map.serialize_entry(&Sio(k, self.1), &Sio(v, self.1))?;
                        }
                        map.end()
                    }
                    other => other.serialize(s),
                }
            }
        }
        let seen = std::cell::Cell::new((0, 0));
        let all = Value::Array(values.to_vec());
        let text = serde_json::to_string(&Sio(&all, &seen)).unwrap();
        (text, seen.get().1)
    }

    #[test]
    fn socketio_size_is_the_json_form_and_its_attachments() {
        let cases = vec![
            sample(),
            vec![],
            vec![Value::Nil; 40],
            vec![
                Value::from("quote \" backslash \\ newline \n bell \u{7} é"),
                Value::from(-1),
                Value::from(-129),
                Value::from(u64::MAX),
                Value::from(i64::MIN),
                Value::F32(0.1),
                Value::F64(-2.5e-300),
                Value::Boolean(false),
                Value::Binary(vec![]),
                Value::Array(vec![Value::Binary(vec![9; 300]); 12]),
                Value::Map(vec![
                    (Value::from(7), Value::from(true)),
                    (Value::Boolean(false), Value::Nil),
                    (Value::from("k"), Value::Map(vec![])),
                ]),
            ],
        ];
        for values in cases {
            let encoded = encode_args(&values);
            // As JSON values (keys made strings), the way a Socket.IO client is sent them.
            let json = Payload::MsgPack(encoded.clone())
                .into_json_values()
                .unwrap();
            let (text, attachments) = socketio_form(&json);
            assert_eq!(
                socketio_size(&encoded),
                Some(text.len() + attachments),
                "{text}"
            );
        }
        // Malformed bytes are left to the conversion to refuse.
        assert_eq!(socketio_size(&[0x92, 0x01]), None);
        assert_eq!(socketio_size(&[0x91, 0xd4, 0x01, 0x02]), None);
    }

    #[test]
    fn size_for_measures_the_form_the_receiver_is_sent() {
        // 1000 nils: 1003 bytes of MessagePack, 4999 of JSON.
        let nils = encode_args(&vec![Value::Nil; 1000]);
        let payload = Payload::MsgPack(nils.clone());
        assert_eq!(payload.size(), 1003);
        assert_eq!(payload.size_for(crate::Transport::Native), 1003);
        assert_eq!(
            payload.size_for(crate::Transport::Legacy),
            2 + 4 * 1000 + 999
        );
        // 1000 floats: 4000 bytes of JSON, 9003 of MessagePack.
        let text = format!("[{}]", vec!["1.5"; 1000].join(","));
        let payload = Payload::Json(json(&text).unwrap());
        assert_eq!(payload.size_for(crate::Transport::Legacy), text.len());
        assert_eq!(payload.size_for(crate::Transport::Native), 9003);
        let values = Payload::Values(sample());
        assert_eq!(values.size_for(crate::Transport::Legacy), values.size());
    }

    #[test]
    fn msgpack_size_of_json_args_is_what_encoding_makes() {
        let long = |n: usize| format!("\"{}\"", "x".repeat(n));
        let many = |n: usize| format!("[{}]", vec!["0"; n].join(","));
        let entries = |n: usize| {
            let e: Vec<String> = (0..n).map(|i| format!("\"k{i}\":null")).collect();
            format!("{{{}}}", e.join(","))
        };
        let texts = vec![
            "[]".to_owned(),
            r#"[null,true,false,0,127,128,255,256,65535,65536,4294967295,4294967296]"#.to_owned(),
            r#"[-1,-32,-33,-128,-129,-32768,-32769,-2147483648,-2147483649,1.5,-0.0,1e300]"#
                .to_owned(),
            format!(
                "[{},{},{},{},{}]",
                long(31),
                long(32),
                long(255),
                long(256),
                long(65536)
            ),
            r#"["esc\n\"\\\u00e9",{"a":{"b":[1,{"c":"d"}]}}]"#.to_owned(),
            many(15),
            many(16),
            many(65536),
            format!("[{},{},{}]", entries(15), entries(16), entries(70000)),
        ];
        for text in texts {
            let args = json(&text).unwrap();
            let encoded = encode_args(&args.to_values().unwrap());
            assert_eq!(
                args.msgpack_size(),
                encoded.len(),
                "{}",
                &text[..text.len().min(80)]
            );
        }
    }
}
