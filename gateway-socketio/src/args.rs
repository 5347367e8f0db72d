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

/// Deepest nesting of arrays and objects accepted in one packet, the packet's own array
/// included. serde_json stops at 128 with a bare "recursion limit exceeded"; this limit is
/// reached first, so the client is told what is wrong.
pub const MAX_NESTING: usize = 100;

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
        for value in &mut values {
            bind_placeholders(value, attachments)?;
        }
    }
    Ok(values)
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
}
