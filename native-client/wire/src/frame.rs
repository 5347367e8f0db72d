//! Length-prefixed postcard frames on the control stream: a u32 big-endian length, then
//! that many bytes of postcard. Hand-written because it is eight lines of logic over
//! tokio's `AsyncRead`; a codec crate would add a dependency for less clarity. The reader
//! and writer are behind the `io` feature (on by default): the relay's rules use the
//! protocol's definitions without tokio.

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
#[cfg(feature = "io")]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol's hard ceiling for one frame; no configuration can raise it.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Room a frame needs besides its payload (the event name, ids, postcard's headers), with
/// a wide margin: event names and ids are short.
pub const FRAME_OVERHEAD_BYTES: usize = 64 * 1024;
/// The limit used unless configured otherwise: room for a 1 MiB payload and its framing.
pub const DEFAULT_MAX_FRAME_BYTES: usize = frame_limit_for(1024 * 1024);

/// The frame limit that carries a payload of up to `payload_limit` bytes (the relay's
/// `--max-message-bytes`), never above [`MAX_FRAME_BYTES`].
pub const fn frame_limit_for(payload_limit: usize) -> usize {
    let limit = payload_limit.saturating_add(FRAME_OVERHEAD_BYTES);
    if limit < MAX_FRAME_BYTES {
        limit
    } else {
        MAX_FRAME_BYTES
    }
}

const LEN_BYTES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("bad frame: {0}")]
    Decode(postcard::Error),
    #[error("control stream ended in the middle of a frame")]
    Truncated,
    #[error("control stream failed: {0}")]
    Io(std::io::Error),
}

// Written out instead of `#[from]`, which would also make the inner error the `source()`:
// the messages above already include it, and a full error chain would print it twice.
impl From<postcard::Error> for FrameError {
    fn from(e: postcard::Error) -> Self {
        FrameError::Decode(e)
    }
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Encodes one frame, length prefix included.
pub fn encode<T: Serialize>(frame: &T) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::with_capacity(64).writer();
    out.get_mut().put_u32(0);
    let mut out = postcard::to_io(frame, out)?.into_inner();
    let len = out.len() - LEN_BYTES;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    out[..LEN_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out.freeze())
}

/// Decodes one frame body (without its length prefix). Trailing bytes are an error, so a
/// frame means exactly one thing.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (frame, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(frame)
}

/// Reads frame bodies off a stream. Decoding is separate, so that a frame that does not
/// decode can be answered and skipped while the framing stays intact.
#[cfg(feature = "io")]
pub struct FrameReader<R> {
    inner: R,
    max: usize,
}

#[cfg(feature = "io")]
impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max: max.min(MAX_FRAME_BYTES),
        }
    }

    /// The next frame's body, or None at a clean end of stream between frames.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        let mut len = [0u8; LEN_BYTES];
        let mut filled = 0;
        while filled < LEN_BYTES {
            match self.inner.read(&mut len[filled..]).await? {
                0 if filled == 0 => return Ok(None),
                0 => return Err(FrameError::Truncated),
                n => filled += n,
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let mut body = BytesMut::zeroed(len);
        self.inner
            .read_exact(&mut body)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
                _ => FrameError::Io(e),
            })?;
        Ok(Some(body.freeze()))
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes frames to a stream.
#[cfg(feature = "io")]
pub struct FrameWriter<W> {
    inner: W,
}

#[cfg(feature = "io")]
impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner }
    }

    pub async fn send<T: Serialize>(&mut self, frame: &T) -> Result<(), FrameError> {
        let bytes = encode(frame)?;
        self.send_encoded(&bytes).await
    }

    /// Writes a frame made by [`encode`].
    pub async fn send_encoded(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.inner.write_all(bytes).await?;
        Ok(())
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientFrame, ServerFrame, WireReply};
    use proptest::prelude::*;

    #[cfg(feature = "io")]
    fn frames() -> Vec<ClientFrame> {
        vec![
            ClientFrame::Hello {
                version: 1,
                client_id: "A".into(),
                credentials: Some(Bytes::from_static(b"secret")),
            },
            ClientFrame::Emit {
                target: "B".into(),
                event: "e".into(),
                args: Bytes::from_static(&[0x92, 0x01, 0xc4, 0x01, 0xff]),
                ack: Some(7),
            },
            ClientFrame::Answer {
                ticket: 3,
                answer: crate::WireAnswer::Accept(true),
            },
        ]
    }

    #[cfg(feature = "io")]
    #[tokio::test]
    async fn frames_round_trip_through_a_stream() {
        let mut wire = Vec::new();
        for frame in frames() {
            wire.extend_from_slice(&encode(&frame).unwrap());
        }
        let mut reader = FrameReader::new(&wire[..], DEFAULT_MAX_FRAME_BYTES);
        for expected in frames() {
            let body = reader.next().await.unwrap().unwrap();
            assert_eq!(decode::<ClientFrame>(&body).unwrap(), expected);
        }
        assert!(reader.next().await.unwrap().is_none());
    }

    #[cfg(feature = "io")]
    #[tokio::test]
    async fn oversized_frames_are_refused_before_reading_them() {
        let wire = (10_000u32).to_be_bytes();
        let mut reader = FrameReader::new(&wire[..], 1000);
        assert!(matches!(
            reader.next().await,
            Err(FrameError::TooLarge {
                len: 10_000,
                max: 1000
            })
        ));
    }

    #[cfg(feature = "io")]
    #[tokio::test]
    async fn truncated_frames_are_reported() {
        let mut wire = encode(&frames()[0]).unwrap().to_vec();
        wire.truncate(wire.len() - 1);
        let mut reader = FrameReader::new(&wire[..], DEFAULT_MAX_FRAME_BYTES);
        assert!(matches!(reader.next().await, Err(FrameError::Truncated)));
        let mut reader = FrameReader::new(&[0u8, 0][..], DEFAULT_MAX_FRAME_BYTES);
        assert!(matches!(reader.next().await, Err(FrameError::Truncated)));
    }

    #[test]
    fn unknown_frame_types_and_trailing_bytes_do_not_decode() {
        assert!(decode::<ClientFrame>(&[200]).is_err());
        let mut body = encode(&ServerFrame::PeerDisconnected).unwrap()[LEN_BYTES..].to_vec();
        assert!(decode::<ServerFrame>(&body).is_ok());
        body.push(0);
        assert!(decode::<ServerFrame>(&body).is_err());
        let reply = ServerFrame::Reply {
            req: 1,
            reply: WireReply::Failed {
                code: 3,
                message: "not paired with 'B'".into(),
            },
        };
        let body = encode(&reply).unwrap();
        assert_eq!(decode::<ServerFrame>(&body[LEN_BYTES..]).unwrap(), reply);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The decoders never panic on arbitrary bytes, and what they accept survives a
        /// re-encode unchanged.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(frame) = decode::<ClientFrame>(&body) {
                let again = encode(&frame).unwrap();
                prop_assert_eq!(decode::<ClientFrame>(&again[LEN_BYTES..]).unwrap(), frame);
            }
            if let Ok(frame) = decode::<ServerFrame>(&body) {
                let again = encode(&frame).unwrap();
                prop_assert_eq!(decode::<ServerFrame>(&again[LEN_BYTES..]).unwrap(), frame);
            }
        }

        #[cfg(feature = "io")]
        #[test]
        fn reading_arbitrary_streams_never_panics(wire in proptest::collection::vec(any::<u8>(), 0..512)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut reader = FrameReader::new(&wire[..], 128);
                for _ in 0..64 {
                    match reader.next().await {
                        Ok(Some(body)) => { let _ = decode::<ClientFrame>(&body); }
                        Ok(None) | Err(_) => break,
                    }
                }
            });
        }
    }
}
