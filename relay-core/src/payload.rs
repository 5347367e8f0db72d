//! The arguments of a relayed event, kept in whichever encoding they arrived in.
//!
//! Socket.IO hands the gateway decoded values; the native protocol carries a MessagePack
//! array as bytes. Between two peers of the same transport the payload is passed through
//! untouched; it is converted only when it crosses from one transport to the other, and
//! the conversion lives here so both front ends agree on it.

use bytes::Bytes;
use rmpv::Value;

/// Event arguments: JSON-like values with binary anywhere, any number of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Decoded values, as a Socket.IO front end receives them.
    Values(Vec<Value>),
    /// A MessagePack array, as the native protocol carries it.
    MsgPack(Bytes),
}

/// Why a payload could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("arguments are not valid MessagePack: {0}")]
    Decode(String),
    #[error("arguments must be a MessagePack array, got {0}")]
    NotAnArray(&'static str),
    #[error("{0} trailing bytes after the MessagePack array of arguments")]
    TrailingBytes(usize),
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
            Payload::Values(values) => 5 + values.iter().map(value_size).sum::<usize>(),
        }
    }

    /// The arguments as values, decoding them if they arrived encoded.
    pub fn into_values(self) -> Result<Vec<Value>, PayloadError> {
        match self {
            Payload::Values(values) => Ok(values),
            Payload::MsgPack(bytes) => decode_args(&bytes),
        }
    }

    /// The arguments as one encoded MessagePack array, encoding them if they arrived as values.
    pub fn into_msgpack(self) -> Bytes {
        match self {
            Payload::MsgPack(bytes) => bytes,
            Payload::Values(values) => encode_args(&values),
        }
    }
}

/// Encodes arguments as one MessagePack array, without first cloning them into a
/// `Value::Array` (arguments may hold megabytes of binary).
pub fn encode_args(values: &[Value]) -> Bytes {
    let mut out = Vec::with_capacity(16);
    let len = values.len();
    if len < 16 {
        out.push(0x90 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0xdc);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    for value in values {
        rmpv::encode::write_value(&mut out, value)
            .expect("writing MessagePack into a Vec cannot fail");
    }
    Bytes::from(out)
}

/// The argument an emit-ack is answered with when it could not be delivered or taken:
/// `{error: message}`, the shape callers of the Socket.IO plugin test for. Every front end
/// and the native client answer failed acks with it, so it is written once, here.
pub fn error_value(message: &str) -> Value {
    Value::Map(vec![(Value::from("error"), Value::from(message))])
}

/// Decodes one MessagePack array of arguments. Anything else (another type, trailing
/// bytes) is refused, so an encoded payload has exactly one meaning.
pub fn decode_args(bytes: &[u8]) -> Result<Vec<Value>, PayloadError> {
    let mut reader = bytes;
    let value =
        rmpv::decode::read_value(&mut reader).map_err(|e| PayloadError::Decode(e.to_string()))?;
    if !reader.is_empty() {
        return Err(PayloadError::TrailingBytes(reader.len()));
    }
    match value {
        Value::Array(values) => Ok(values),
        other => Err(PayloadError::NotAnArray(kind(&other))),
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

/// How a value's type is named in error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) => "an integer",
        Value::F32(_) | Value::F64(_) => "a float",
        Value::String(_) => "a string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Ext(..) => "an extension value",
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
    fn long_argument_lists_use_the_wider_array_headers() {
        for len in [15, 16, 70_000] {
            let values: Vec<Value> = (0..len).map(|i| Value::from(i as u64)).collect();
            let encoded = encode_args(&values);
            assert_eq!(decode_args(&encoded).unwrap(), values);
            let mut reference = Vec::new();
            rmpv::encode::write_value(&mut reference, &Value::Array(values)).unwrap();
            assert_eq!(&encoded[..], &reference[..]);
        }
    }
}
