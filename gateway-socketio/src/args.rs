//! The arguments of one Socket.IO event or ack, all of them, in order.
//!
//! socketioxide hands an extractor only the first argument unless the target type
//! (de)serializes as a tuple; this wrapper does, so every argument is received and spread
//! again on emit. Values are `rmpv::Value` because, unlike `serde_json::Value`, it has a
//! binary variant: a Buffer anywhere in the arguments stays binary.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use relay_core::rmpv::Value;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args(pub Vec<Value>);

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for value in &self.0 {
            tuple.serialize_element(value)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of event arguments")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(value) = seq.next_element()? {
                    values.push(value);
                }
                Ok(Args(values))
            }
        }
        deserializer.deserialize_tuple(usize::MAX, ArgsVisitor)
    }
}

/// The arguments of an outgoing event: values, or JSON text relayed as it came (see
/// [`raw_emit`]), spread as the event's arguments either way.
#[derive(Debug, Clone, PartialEq)]
pub enum OutArgs {
    Values(Args),
    Json(relay_core::JsonArgs),
}

impl OutArgs {
    /// Back to the core's payload (when the event has to wait in the outbox after all).
    pub fn into_payload(self) -> relay_core::Payload {
        match self {
            OutArgs::Values(args) => relay_core::Payload::Values(args.0),
            OutArgs::Json(json) => relay_core::Payload::Json(json),
        }
    }
}

impl From<Args> for OutArgs {
    fn from(args: Args) -> Self {
        OutArgs::Values(args)
    }
}

impl Serialize for OutArgs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            OutArgs::Values(args) => args.serialize(serializer),
            OutArgs::Json(json) => {
                // Each argument is written as the text it was (serde_json's raw values
                // pass through socketioxide's serializer untouched); finding where each
                // one ends is all the reading this does.
                let items: Vec<&serde_json::value::RawValue> =
                    serde_json::from_str(json.as_str()).map_err(serde::ser::Error::custom)?;
                let mut tuple = serializer.serialize_tuple(items.len())?;
                for item in items {
                    tuple.serialize_element(item)?;
                }
                tuple.end()
            }
        }
    }
}

/// Deepest nesting accepted in one packet, the packet's own array included (the core's
/// rule for JSON arguments, which node links hold JSON to as well).
pub use relay_core::payload::MAX_NESTING;

/// Why the arguments of a packet could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("arrays and objects nest deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// serde_json's own words, e.g. "number out of range at line 1 column 40" for `1e400`
    /// (a number no 64-bit float holds).
    #[error("{0}")]
    Json(String),
    #[error(
        "binary placeholder {num} is out of range: the packet carries {count} attachment(s), \
         numbered from 0"
    )]
    PlaceholderOutOfRange { num: String, count: usize },
    #[error("a binary placeholder needs a num: the index of its attachment, from 0")]
    PlaceholderWithoutNum,
    #[error("the packet holds binary where text was expected")]
    NotText,
    /// The arguments would be larger than the relay's message limit once every
    /// placeholder is replaced by its attachment (worded as the core words its own limit).
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// The arguments of one event packet as socketioxide hands it over: the packet's JSON
/// (`[event, arg0, arg1, ...]`) and its binary attachments.
///
/// Read here rather than through socketioxide's extractors because its parser binds
/// attachments to placeholders in the order it meets them, ignoring their `num`, and
/// reports any failure (too deep, a number out of range) as a value that does not fit.
/// Socket.IO's own parser binds each placeholder to attachment `num` and refuses a `num`
/// out of range; so does this.
pub fn event_args(value: &socketioxide_core::Value) -> Result<Vec<Value>, ArgsError> {
    event_args_within(value, usize::MAX)
}

/// [`event_args`], refusing arguments that would be larger than `max_bytes` before any
/// attachment is copied into them ([`ArgsError::TooLarge`]).
///
/// One attachment may be referenced by any number of placeholders, and binding copies it
/// once per reference: a 1 MB attachment named 1,000 times in a 30 KB packet would become
/// 1 GB of values. So the size the arguments would have (the packet's JSON plus, per
/// placeholder, its attachment's length; see [`expanded_size`]) is checked first, and
/// nothing is built when it is over.
pub fn event_args_within(
    value: &socketioxide_core::Value,
    max_bytes: usize,
) -> Result<Vec<Value>, ArgsError> {
    let socketioxide_core::Value::Str(text, attachments) = value else {
        return Err(ArgsError::NotText);
    };
    let too_deep = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text.as_str());
    let mut values = serde::de::DeserializeSeed::deserialize(
        Packet {
            too_deep: &too_deep,
        },
        &mut de,
    )
    .and_then(|values| de.end().map(|()| values))
    .map_err(|e| {
        if too_deep.get() {
            ArgsError::TooDeep
        } else {
            ArgsError::Json(e.to_string())
        }
    })?;
    if let Some(attachments) = attachments {
        let size = expanded_size(text.as_str().len(), &values, attachments);
        if size > max_bytes {
            return Err(ArgsError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        for value in &mut values {
            bind_placeholders(value, attachments)?;
        }
    }
    Ok(values)
}

/// The size of a packet's arguments once its placeholders are bound: the JSON's length
/// plus, for every placeholder [`bind_placeholders`] would replace (at any depth), the
/// length of the attachment it names. Counted without copying anything; saturates rather
/// than overflows. A placeholder that names no attachment counts nothing here (binding
/// refuses it).
pub fn expanded_size(json_len: usize, values: &[Value], attachments: &VecDeque<Bytes>) -> usize {
    fn referenced(value: &Value, attachments: &VecDeque<Bytes>) -> usize {
        match value {
            Value::Array(items) => items.iter().fold(0, |sum: usize, v| {
                sum.saturating_add(referenced(v, attachments))
            }),
            // Binding replaces the whole object, so what else it holds is not counted.
            Value::Map(entries) if is_placeholder(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some("num"))
                .and_then(|(_, num)| num.as_u64())
                .and_then(|num| usize::try_from(num).ok())
                .and_then(|num| attachments.get(num))
                .map_or(0, Bytes::len),
            Value::Map(entries) => entries.iter().fold(0, |sum: usize, (_, v)| {
                sum.saturating_add(referenced(v, attachments))
            }),
            _ => 0,
        }
    }
    values.iter().fold(json_len, |sum, v| {
        sum.saturating_add(referenced(v, attachments))
    })
}

/// `P2P_EMIT`'s and `P2P_EMIT_ACKNOWLEDGE`'s object `{targetClientId, event, args}` as
/// the fast path reads it: the arguments stay the JSON text they came as.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEmit {
    pub target: String,
    pub event: String,
    /// `None` when `args` is missing or null: no arguments.
    pub args: Option<relay_core::JsonArgs>,
}

/// Reads an emit request without decoding its arguments, when it can: a packet without
/// binary attachments whose object is well formed. `None` otherwise, and then the packet
/// goes the way every other packet goes ([`event_args`]), which also words any error, so
/// both ways answer alike and this one only has to be right when it succeeds.
///
/// Between two Socket.IO clients the arguments are then relayed as the sender wrote them,
/// never parsed into values or written again (docs/PROTOCOL.md Part 3).
pub fn raw_emit(value: &socketioxide_core::Value) -> Option<RawEmit> {
    let socketioxide_core::Value::Str(text, attachments) = value else {
        return None;
    };
    if attachments.as_ref().is_some_and(|a| !a.is_empty()) {
        return None;
    }
    let (_, fields): (IgnoredAny, EmitFields) = serde_json::from_str(text.as_str()).ok()?;
    let target = serde_json::from_str::<String>(fields.target?.get()).ok()?;
    let event = serde_json::from_str::<String>(fields.event?.get()).ok()?;
    let args = match fields.args {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => {
            // The slice of the packet's own buffer that holds the array: no copy.
            let start = raw.get().as_ptr() as usize - text.as_str().as_ptr() as usize;
            let bytes = bytes::Bytes::from(text.slice(start..start + raw.get().len()));
            // The packet's array and the emit object sit above the arguments.
            Some(relay_core::JsonArgs::new(bytes, MAX_NESTING - 2).ok()?)
        }
    };
    Some(RawEmit {
        target,
        event,
        args,
    })
}

/// The emit object's fields, as slices of the packet's text; other keys are skipped.
struct EmitFields<'a> {
    target: Option<&'a serde_json::value::RawValue>,
    event: Option<&'a serde_json::value::RawValue>,
    args: Option<&'a serde_json::value::RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for EmitFields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
            type Value = EmitFields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object {targetClientId, event, args}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EmitFields<'a>, A::Error> {
                let mut fields = EmitFields {
                    target: None,
                    event: None,
                    args: None,
                };
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let slot = match &*key {
                        "targetClientId" => &mut fields.target,
                        "event" => &mut fields.event,
                        "args" => &mut fields.args,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    // A repeated key: the values path keeps the last one, and so does this.
                    *slot = Some(map.next_value()?);
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

/// Replaces every `{_placeholder: true, num}` object by attachment `num`.
fn bind_placeholders(value: &mut Value, attachments: &VecDeque<Bytes>) -> Result<(), ArgsError> {
    match value {
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| bind_placeholders(v, attachments)),
        Value::Map(entries) if is_placeholder(entries) => {
            let num = entries
                .iter()
                .find(|(k, _)| k.as_str() == Some("num"))
                .map(|(_, v)| v)
                .ok_or(ArgsError::PlaceholderWithoutNum)?;
            let out_of_range = || ArgsError::PlaceholderOutOfRange {
                num: num.to_string(),
                count: attachments.len(),
            };
            let index = match num {
                Value::Integer(n) => n.as_u64().ok_or_else(out_of_range)?,
                _ => return Err(ArgsError::PlaceholderWithoutNum),
            };
            let data = usize::try_from(index)
                .ok()
                .and_then(|i| attachments.get(i))
                .ok_or_else(out_of_range)?;
            *value = Value::Binary(data.to_vec());
            Ok(())
        }
        Value::Map(entries) => entries
            .iter_mut()
            .try_for_each(|(_, v)| bind_placeholders(v, attachments)),
        _ => Ok(()),
    }
}

/// Socket.IO's rule: an object whose `_placeholder` is `true` stands for an attachment.
fn is_placeholder(entries: &[(Value, Value)]) -> bool {
    entries
        .iter()
        .any(|(k, v)| k.as_str() == Some("_placeholder") && *v == Value::Boolean(true))
}

/// The packet's array: the event name is skipped, the rest are the arguments.
struct Packet<'a> {
    too_deep: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Packet<'_> {
    type Value = Vec<Value>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Value>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Packet<'_> {
    type Value = Vec<Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event packet: [event, ...arguments]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        seq.next_element::<IgnoredAny>()?;
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        let element = Json {
            depth: 1,
            too_deep: self.too_deep,
        };
        while let Some(value) = seq.next_element_seed(element.clone())? {
            values.push(value);
        }
        Ok(values)
    }
}

/// One JSON value as a MessagePack value, at nesting `depth` (its container's level).
#[derive(Clone)]
struct Json<'a> {
    depth: usize,
    too_deep: &'a Cell<bool>,
}

impl Json<'_> {
    fn nested<E: serde::de::Error>(&self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > MAX_NESTING {
            self.too_deep.set(true);
            return Err(E::custom(ArgsError::TooDeep));
        }
        Ok(Json {
            depth,
            too_deep: self.too_deep,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Json<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Json<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let element = self.nested()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(element.clone())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let element = self.nested()?;
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(element.clone())?;
            entries.push((Value::from(key), value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(json: &str, attachments: &[&[u8]]) -> socketioxide_core::Value {
        let attachments = (!attachments.is_empty()).then(|| {
            attachments
                .iter()
                .map(|a| Bytes::copy_from_slice(a))
                .collect()
        });
        socketioxide_core::Value::Str(json.to_owned().into(), attachments)
    }

    #[test]
    fn placeholders_bind_by_num_not_by_order() {
        let value = packet(
            r#"["e",[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]]"#,
            &[b"AA", b"BB"],
        );
        assert_eq!(
            event_args(&value).unwrap(),
            vec![Value::Array(vec![
                Value::Binary(b"BB".to_vec()),
                Value::Binary(b"AA".to_vec())
            ])]
        );
    }

    #[test]
    fn placeholders_out_of_range_are_refused() {
        for (json, num) in [
            (r#"["e",{"_placeholder":true,"num":2}]"#, "2"),
            (r#"["e",{"_placeholder":true,"num":-1}]"#, "-1"),
            (
                r#"["e",{"_placeholder":true,"num":18446744073709551615}]"#,
                "18446744073709551615",
            ),
        ] {
            assert_eq!(
                event_args(&packet(json, &[b"AA", b"BB"])).unwrap_err(),
                ArgsError::PlaceholderOutOfRange {
                    num: num.into(),
                    count: 2
                },
                "{json}"
            );
        }
        let no_num = packet(r#"["e",{"_placeholder":true,"num":"0"}]"#, &[b"AA"]);
        assert_eq!(
            event_args(&no_num).unwrap_err(),
            ArgsError::PlaceholderWithoutNum
        );
        // Without attachments a placeholder-shaped object is plain data, as in socket.io.
        let plain = packet(r#"["e",{"_placeholder":true,"num":0}]"#, &[]);
        assert!(matches!(&event_args(&plain).unwrap()[0], Value::Map(_)));
    }

    #[test]
    fn expanded_size_counts_every_reference_at_any_depth() {
        let attachments: VecDeque<Bytes> =
            [Bytes::from(vec![0; 1000]), Bytes::from(vec![0; 7])].into();
        let json = r#"["e",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":0},{"k":{"_placeholder":true,"num":1}}],{"_placeholder":true,"num":9},{"_placeholder":false,"num":0}]"#;
        let values = event_args(&packet(json, &[])).unwrap();
        // Two references to attachment 0, one (nested) to 1; num 9 names nothing and a
        // `_placeholder: false` object is data.
        assert_eq!(
            expanded_size(json.len(), &values, &attachments),
            json.len() + 2 * 1000 + 7
        );
        assert_eq!(expanded_size(5, &[], &attachments), 5);
        // Saturates instead of overflowing.
        assert_eq!(expanded_size(usize::MAX, &values, &attachments), usize::MAX);
    }

    #[test]
    fn arguments_over_the_limit_are_refused_before_binding() {
        let refs = vec![r#"{"_placeholder":true,"num":0}"#; 1000].join(",");
        let json = format!(r#"["e",[{refs}]]"#);
        let attachment = vec![7u8; 1024 * 1024];
        let value = packet(&json, &[&attachment]);
        let size = json.len() + 1000 * attachment.len();
        assert_eq!(
            event_args_within(&value, 1024 * 1024).unwrap_err(),
            ArgsError::TooLarge {
                size,
                limit: 1024 * 1024
            }
        );
        assert_eq!(
            ArgsError::TooLarge {
                size: 101,
                limit: 100
            }
            .to_string(),
            "payload of 101 bytes exceeds the limit of 100 bytes"
        );
        // Exactly at the limit is taken, and bound as before.
        let one = r#"["e",{"_placeholder":true,"num":0}]"#;
        let value = packet(one, &[b"AB"]);
        assert_eq!(
            event_args_within(&value, one.len() + 2).unwrap(),
            vec![Value::Binary(b"AB".to_vec())]
        );
        assert!(matches!(
            event_args_within(&value, one.len() + 1),
            Err(ArgsError::TooLarge { .. })
        ));
    }

    #[test]
    fn too_deep_and_out_of_range_numbers_say_so() {
        let deep = |levels: usize| format!("[\"e\",{}1{}]", "[".repeat(levels), "]".repeat(levels));
        assert!(event_args(&packet(&deep(MAX_NESTING - 1), &[])).is_ok());
        assert_eq!(
            event_args(&packet(&deep(MAX_NESTING), &[])).unwrap_err(),
            ArgsError::TooDeep
        );
        // Far past serde_json's own limit, still the same clear reason.
        assert_eq!(
            event_args(&packet(&deep(5000), &[])).unwrap_err(),
            ArgsError::TooDeep
        );
        let err = event_args(&packet(r#"["e",{"n":1e400}]"#, &[])).unwrap_err();
        assert!(err.to_string().starts_with("number out of range"), "{err}");
    }

    #[test]
    fn values_keep_their_types() {
        let value = packet(
            r#"["e","s",-3,18446744073709551615,2.5,null,true,{"k":[{"_placeholder":true,"num":0}]}]"#,
            &[&[9, 8]],
        );
        assert_eq!(
            event_args(&value).unwrap(),
            vec![
                Value::from("s"),
                Value::from(-3),
                Value::from(u64::MAX),
                Value::F64(2.5),
                Value::Nil,
                Value::Boolean(true),
                Value::Map(vec![(
                    Value::from("k"),
                    Value::Array(vec![Value::Binary(vec![9, 8])])
                )]),
            ]
        );
        assert_eq!(
            event_args(&packet(r#"["LIST_CLIENTS"]"#, &[])).unwrap(),
            vec![]
        );
    }

    fn emit_packet(object: &str) -> socketioxide_core::Value {
        packet(&format!(r#"["P2P_EMIT",{object}]"#), &[])
    }

    #[test]
    fn an_emit_is_read_without_decoding_its_arguments() {
        let raw = raw_emit(&emit_packet(
            r#"{"event":"e","x":[1e400],"targetClientId":"B","args":[1.50, "caf\u00e9"]}"#,
        ))
        .expect("the fast way");
        assert_eq!((raw.target.as_str(), raw.event.as_str()), ("B", "e"));
        assert_eq!(raw.args.unwrap().as_str(), r#"[1.50, "caf\u00e9"]"#);
        for object in [
            r#"{"targetClientId":"B","event":"e"}"#,
            r#"{"targetClientId":"B","event":"e","args":null}"#,
        ] {
            assert_eq!(raw_emit(&emit_packet(object)).unwrap().args, None);
        }
        // Escaped ids and names are read as strings, as the values path reads them.
        let raw = raw_emit(&emit_packet(
            r#"{"targetClientId":"\u0042","event":"\"q\"","args":[]}"#,
        ))
        .unwrap();
        assert_eq!((raw.target.as_str(), raw.event.as_str()), ("B", "\"q\""));
    }

    #[test]
    fn what_the_fast_way_cannot_read_goes_the_values_way() {
        // The packet's array and the emit object are two levels: args may nest 98 deep.
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_NESTING - 1),
            "]".repeat(MAX_NESTING - 1)
        );
        let not_fast = [
            // Attachments: placeholders are bound to them on the values path.
            packet(
                r#"["P2P_EMIT",{"targetClientId":"B","event":"e","args":[{"_placeholder":true,"num":0}]}]"#,
                &[b"AA"],
            ),
            emit_packet(r#"{"targetClientId":7,"event":"e","args":[]}"#),
            emit_packet(r#"{"targetClientId":"B","event":null,"args":[]}"#),
            emit_packet(r#"{"targetClientId":"B","event":"e","args":{"a":1}}"#),
            emit_packet(r#"{"targetClientId":"B","event":"e","args":[1e400]}"#),
            emit_packet(&format!(
                r#"{{"targetClientId":"B","event":"e","args":{deep}}}"#
            )),
            emit_packet(r#"["not","an","object"]"#),
            packet(r#"["P2P_EMIT"]"#, &[]),
            packet(
                r#"["P2P_EMIT",{"targetClientId":"B","event":"e"},"more"]"#,
                &[],
            ),
            packet(r#"["P2P_EMIT",{"targetClientId":"B","event":"e""#, &[]),
        ];
        for value in not_fast {
            assert_eq!(raw_emit(&value), None, "{value:?}");
        }
        // One level less is read the fast way, and the values path accepts it too.
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_NESTING - 2),
            "]".repeat(MAX_NESTING - 2)
        );
        let value = emit_packet(&format!(
            r#"{{"targetClientId":"B","event":"e","args":{deep}}}"#
        ));
        assert!(raw_emit(&value).is_some());
        assert!(event_args(&value).is_ok());
    }

    #[test]
    fn both_ways_agree_on_the_values() {
        let object = r#"{"targetClientId":"B","event":"e","args":[1,-2,3.25,"s",[true,false,null],{"k":{"n":18446744073709551615}},12345678901234567890123]}"#;
        let value = emit_packet(object);
        let fast = raw_emit(&value).unwrap().args.unwrap().to_values().unwrap();
        let Value::Map(entries) = event_args(&value).unwrap().remove(0) else {
            panic!("an object")
        };
        let slow = entries
            .into_iter()
            .find(|(k, _)| k.as_str() == Some("args"))
            .map(|(_, v)| v)
            .unwrap();
        assert_eq!(Value::Array(fast), slow);
    }
}
