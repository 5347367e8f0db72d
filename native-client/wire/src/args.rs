//! Event and ack arguments on the native wire: the `args` of `Emit`, `Deliver` and `Ack`
//! are one MessagePack array, one element per argument (docs/PROTOCOL.md 2.4). The relay
//! (converting for Socket.IO peers) and the native client encode and decode them here, so
//! both read the same bytes the same way.

use bytes::Bytes;
use rmpv::Value;

/// Why bytes are not one MessagePack array of arguments.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("arguments are not valid MessagePack: {0}")]
    Decode(String),
    #[error("arguments must be a MessagePack array, got {0}")]
    NotAnArray(&'static str),
    #[error("{0} trailing bytes after the MessagePack array of arguments")]
    TrailingBytes(usize),
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

/// The argument an emit-ack is answered with when it could not be delivered or taken:
/// `{error: message}`, the shape callers of the Socket.IO plugin test for. Every front end
/// and the native client answer failed acks with it, so it is written once, here.
pub fn error_value(message: &str) -> Value {
    Value::Map(vec![(Value::from("error"), Value::from(message))])
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

    #[test]
    fn decoding_refuses_what_is_not_exactly_one_array() {
        let mut one = Vec::new();
        rmpv::encode::write_value(&mut one, &Value::from(7)).unwrap();
        assert!(matches!(
            decode_args(&one),
            Err(PayloadError::NotAnArray("an integer"))
        ));
        // Truncated input: an array of two with one element.
        assert!(matches!(
            decode_args(&[0x92, 0x01]),
            Err(PayloadError::Decode(_))
        ));
        assert!(matches!(decode_args(&[]), Err(PayloadError::Decode(_))));
        assert!(matches!(
            decode_args(&[0x90, 0x00]),
            Err(PayloadError::TrailingBytes(1))
        ));
    }

    #[test]
    fn a_failed_ack_is_an_error_map() {
        assert_eq!(
            encode_args(&[error_value("gone")]),
            // [{"error": "gone"}]
            Bytes::from_static(b"\x91\x81\xa5error\xa4gone")
        );
    }
}
