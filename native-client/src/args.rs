//! Event and ack arguments, held exactly as a Socket.IO peer would see them.
//!
//! A Socket.IO event carries any number of arguments, each a JSON value in which binary
//! buffers may sit anywhere. The native protocol carries them as one MessagePack array
//! (docs/PROTOCOL.md Part 2), and [`Args`] is that array decoded into [`rmpv::Value`]s:
//! unlike `serde_json::Value`, `rmpv::Value` has a binary type, keeps integers apart from
//! floats (and `u64` apart from `i64`), and keeps map keys and their order as they came, so
//! nothing is lost between a browser and a native client.
//!
//! For typed code, [`Args::from_serde`] and [`Args::to_serde`] go through `rmp-serde`:
//! structs become maps with field names as keys (what a JavaScript peer expects), and types
//! that serialize as bytes (`bytes::Bytes`, `serde_bytes`) become MessagePack `bin`, that is,
//! a `Buffer` on the JavaScript side. A plain `Vec<u8>` stays an array of numbers, as it
//! would in JSON.

use bytes::Bytes;
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::args::{decode_args, encode_args, kind, PayloadError};

/// The arguments of one event or ack: a Socket.IO argument list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args(pub Vec<Value>);

/// Why arguments could not be encoded, decoded or converted.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("cannot serialize the arguments: {0}")]
    Serialize(String),
    #[error(
        "arguments must serialize as a sequence (a tuple or a Vec, one element per argument), \
         got {0}"
    )]
    NotASequence(&'static str),
    #[error("arguments do not match the expected type: {0}")]
    Deserialize(String),
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Args(Vec::new())
    }

    /// One argument.
    pub fn one(value: impl Into<Value>) -> Self {
        Args(vec![value.into()])
    }

    /// One binary argument (a `Buffer` for a JavaScript peer).
    pub fn binary(bytes: impl Into<Vec<u8>>) -> Self {
        Args(vec![Value::Binary(bytes.into())])
    }

    /// Appends an argument, for building a list in one expression:
    /// `Args::new().with("name").with(42).with(Value::Binary(data))`.
    pub fn with(mut self, value: impl Into<Value>) -> Self {
        self.0.push(value.into());
        self
    }

    /// Appends an argument.
    pub fn push(&mut self, value: impl Into<Value>) {
        self.0.push(value.into());
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The argument at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.0.get(index)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Value> {
        self.0.iter()
    }

    pub fn into_inner(self) -> Vec<Value> {
        self.0
    }

    /// The wire form: one MessagePack array (the protocol's, [`crate::wire::args`]).
    pub fn encode(&self) -> Bytes {
        encode_args(&self.0)
    }

    /// Reads the wire form. Anything but exactly one MessagePack array is refused, so a
    /// payload has one meaning.
    pub fn decode(bytes: &[u8]) -> Result<Args, ArgsError> {
        decode_args(bytes).map(Args).map_err(ArgsError::Payload)
    }

    /// Arguments from a typed value that serializes as a sequence, one element per argument:
    /// `Args::from_serde(&("move", Point { x: 1, y: 2 }, Bytes::from_static(b"\x01")))`.
    pub fn from_serde<T: Serialize + ?Sized>(value: &T) -> Result<Args, ArgsError> {
        let mut out = Vec::new();
        value
            .serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
            .map_err(|e| ArgsError::Serialize(e.to_string()))?;
        match rmpv::decode::read_value(&mut &out[..]) {
            Ok(Value::Array(values)) => Ok(Args(values)),
            Ok(other) => Err(ArgsError::NotASequence(kind(&other))),
            // rmp-serde wrote it a moment ago; failing to read it back would be a bug there.
            Err(e) => Err(ArgsError::Serialize(e.to_string())),
        }
    }

    /// The arguments as a typed value: a tuple with one element per argument, a `Vec` of
    /// one type, or anything else a sequence deserializes into. Binary arguments deserialize
    /// into `bytes::Bytes` or `serde_bytes::ByteBuf`.
    pub fn to_serde<T: DeserializeOwned>(&self) -> Result<T, ArgsError> {
        rmp_serde::from_slice(&self.encode()).map_err(|e| ArgsError::Deserialize(e.to_string()))
    }
}

impl From<Vec<Value>> for Args {
    fn from(values: Vec<Value>) -> Self {
        Args(values)
    }
}

impl From<Args> for Vec<Value> {
    fn from(args: Args) -> Self {
        args.0
    }
}

impl FromIterator<Value> for Args {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Self {
        Args(iter.into_iter().collect())
    }
}

impl IntoIterator for Args {
    type Item = Value;
    type IntoIter = std::vec::IntoIter<Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Args {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    /// A payload as a browser would send it: numbers of every kind, strings, nulls, nested
    /// maps and arrays, and binary at several depths.
    fn rich() -> Args {
        Args(vec![
            Value::from("hello"),
            Value::from(0u64),
            Value::from(-1i64),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::F64(1.5),
            Value::F64(-0.0),
            Value::F64(1e300),
            Value::F32(0.25),
            Value::Nil,
            Value::Boolean(false),
            Value::Binary(vec![0, 1, 2, 255]),
            map(vec![
                ("n", Value::from(9_007_199_254_740_993u64)),
                ("buf", Value::Binary(vec![9; 300])),
                (
                    "list",
                    Value::Array(vec![
                        Value::Binary(vec![]),
                        map(vec![("deep", Value::Binary(vec![7]))]),
                        Value::from("é ✓ 𝄞"),
                    ]),
                ),
                ("empty", map(vec![])),
            ]),
            Value::Array(vec![]),
        ])
    }

    #[test]
    fn encode_decode_is_lossless() {
        let args = rich();
        let bytes = args.encode();
        assert_eq!(Args::decode(&bytes).unwrap(), args);
        // Integers stay integers of the same sign class, floats stay floats of their width.
        let back = Args::decode(&bytes).unwrap();
        assert!(matches!(back.0[3], Value::Integer(i) if i.as_u64() == Some(u64::MAX)));
        assert!(matches!(back.0[5], Value::F64(f) if f == 1.5));
        assert!(matches!(back.0[6], Value::F64(f) if f.is_sign_negative()));
        assert!(matches!(back.0[8], Value::F32(_)));
    }

    #[test]
    fn the_encoding_is_one_msgpack_array() {
        assert_eq!(&Args::new().encode()[..], &[0x90]);
        assert_eq!(
            &Args::new().with(1).with("a").encode()[..],
            &[0x92, 0x01, 0xa1, b'a']
        );
        assert_eq!(
            &Args::binary(vec![7]).encode()[..],
            &[0x91, 0xc4, 0x01, 0x07]
        );
        // Same bytes as encoding a Value::Array.
        let mut expected = Vec::new();
        rmpv::encode::write_value(&mut expected, &Value::Array(rich().0)).unwrap();
        assert_eq!(&rich().encode()[..], &expected[..]);
    }

    #[test]
    fn long_argument_lists_use_the_wider_array_headers() {
        for len in [15usize, 16, 65_535, 65_536] {
            let args: Args = (0..len).map(|i| Value::from(i as u64)).collect();
            let mut expected = Vec::new();
            rmpv::encode::write_value(&mut expected, &Value::Array(args.0.clone())).unwrap();
            assert_eq!(&args.encode()[..], &expected[..], "{len}");
            assert_eq!(Args::decode(&expected).unwrap(), args);
        }
    }

    #[test]
    fn decode_refuses_anything_but_one_array() {
        assert!(matches!(
            Args::decode(&[0x01]),
            Err(ArgsError::Payload(PayloadError::NotAnArray("an integer")))
        ));
        assert!(matches!(
            Args::decode(&[0x90, 0x90]),
            Err(ArgsError::Payload(PayloadError::TrailingBytes(1)))
        ));
        assert!(matches!(
            Args::decode(&[]),
            Err(ArgsError::Payload(PayloadError::Decode(_)))
        ));
        assert!(matches!(
            Args::decode(&[0x92, 0x01]),
            Err(ArgsError::Payload(PayloadError::Decode(_)))
        ));
        let msg = Args::decode(&[0xa1, b'x']).unwrap_err().to_string();
        assert_eq!(msg, "arguments must be a MessagePack array, got a string");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Chunk {
        name: String,
        size: u64,
        data: Bytes,
        ratio: f64,
        tags: Vec<String>,
        parts: Vec<Bytes>,
    }

    #[test]
    fn serde_structs_become_maps_with_binary_as_bin() {
        let chunk = Chunk {
            name: "a.bin".into(),
            size: 3,
            data: Bytes::from_static(&[1, 2, 3]),
            ratio: 0.5,
            tags: vec!["x".into()],
            parts: vec![Bytes::from_static(&[4]), Bytes::new()],
        };
        let args = Args::from_serde(&("file", &chunk, -7i32)).unwrap();
        assert_eq!(args.len(), 3);
        assert_eq!(args.0[0], Value::from("file"));
        assert_eq!(
            args.0[1],
            map(vec![
                ("name", Value::from("a.bin")),
                ("size", Value::from(3)),
                ("data", Value::Binary(vec![1, 2, 3])),
                ("ratio", Value::F64(0.5)),
                ("tags", Value::Array(vec![Value::from("x")])),
                (
                    "parts",
                    Value::Array(vec![Value::Binary(vec![4]), Value::Binary(vec![])])
                ),
            ])
        );
        assert_eq!(args.0[2], Value::from(-7));
        let (event, back, n): (String, Chunk, i64) = args.to_serde().unwrap();
        assert_eq!((event.as_str(), n), ("file", -7));
        assert_eq!(back, chunk);
    }

    #[test]
    fn serde_from_values_built_by_hand() {
        // A JavaScript peer sends `("x", {data: Buffer, n: 2})`.
        let args = Args::new().with("x").with(map(vec![
            ("n", Value::from(2)),
            ("data", Value::Binary(vec![5, 6])),
        ]));
        #[derive(Deserialize)]
        struct Payload {
            n: u8,
            data: Bytes,
        }
        let (name, payload): (String, Payload) = args.to_serde().unwrap();
        assert_eq!(name, "x");
        assert_eq!(payload.n, 2);
        assert_eq!(&payload.data[..], &[5, 6]);
        // A Vec of one type takes any number of arguments.
        let all: Vec<rmpv::Value> = args.to_serde().unwrap();
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn serde_numbers_keep_their_kind() {
        let args = Args::from_serde(&(1u8, -1i64, u64::MAX, 2.5f64, 0.5f32)).unwrap();
        assert_eq!(args.0[0], Value::from(1u8));
        assert!(matches!(args.0[1], Value::Integer(i) if i.as_i64() == Some(-1)));
        assert!(matches!(args.0[2], Value::Integer(i) if i.as_u64() == Some(u64::MAX)));
        assert_eq!(args.0[3], Value::F64(2.5));
        assert_eq!(args.0[4], Value::F32(0.5));
        let back: (u8, i64, u64, f64, f32) = args.to_serde().unwrap();
        assert_eq!(back, (1, -1, u64::MAX, 2.5, 0.5));
    }

    #[test]
    fn serde_errors_say_what_was_wrong() {
        let err = Args::from_serde(&"just a string").unwrap_err();
        assert!(matches!(err, ArgsError::NotASequence("a string")), "{err}");
        let err = Args::one("text").to_serde::<(u32,)>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("arguments do not match the expected type"),
            "{err}"
        );
        // A unit tuple has no elements but is still a sequence? rmp-serde writes `()` as nil.
        assert!(Args::from_serde(&Vec::<u8>::new()).unwrap().is_empty());
    }

    #[test]
    fn convenience_constructors() {
        assert!(Args::new().is_empty());
        assert_eq!(Args::one("a").0, vec![Value::from("a")]);
        assert_eq!(
            Args::binary(&b"ab"[..]).0,
            vec![Value::Binary(b"ab".to_vec())]
        );
        let mut args: Args = vec![Value::from(1)].into_iter().collect();
        args.push(true);
        assert_eq!(args.get(1), Some(&Value::Boolean(true)));
        assert_eq!((&args).into_iter().count(), 2);
        assert_eq!(Vec::<Value>::from(args).len(), 2);
    }
}
