//! P2P streams: one native QUIC bidirectional stream each, bytes unframed end to end.
//!
//! The relay splices the two ends' QUIC streams, so flow control, FIN and resets travel
//! from peer to peer: a finished send side gives the other side a clean EOF, and a reset
//! reaches it as a reset with a code ([`crate::wire::ResetCode`]) that the read error names.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use quinn::{RecvStream, SendStream, VarInt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::StreamError;
use crate::wire::ResetCode;

/// A byte stream with the peer: `AsyncRead + AsyncWrite`.
///
/// - `shutdown()` (`AsyncWriteExt::shutdown`) finishes the send side (QUIC FIN); the peer
///   reads a clean EOF once it has read everything before it. Reading on goes on until the
///   peer finishes its side too.
/// - Dropping the stream, or its write half, **without** `shutdown()` resets the send side
///   (the peer's read fails with "the peer reset the stream") instead of finishing it:
///   quinn on its own would finish a dropped stream, which would make a writer that died
///   halfway look, to the reader, exactly like a complete transfer.
/// - Errors are `io::Error`s whose message names the cause, e.g. "stream reset: the peer's
///   connection was lost (code 0x12)"; [`StreamError::of`] gives the code back.
#[derive(Debug)]
pub struct P2pStream {
    read: P2pReadHalf,
    write: P2pWriteHalf,
}

/// The reading half of a [`P2pStream`].
#[derive(Debug)]
pub struct P2pReadHalf {
    id: u64,
    peer: Arc<str>,
    recv: RecvStream,
}

/// The writing half of a [`P2pStream`]. Dropped without `shutdown()`, it resets the stream.
#[derive(Debug)]
pub struct P2pWriteHalf {
    id: u64,
    peer: Arc<str>,
    /// Always `Some` until [`P2pStream::into_quinn`] takes it out (which consumes the half,
    /// so no method ever sees `None`).
    send: Option<SendStream>,
    /// Finished or reset on purpose: nothing to do on drop, and a second shutdown is a no-op.
    closed: bool,
}

impl P2pStream {
    pub(crate) fn new(id: u64, peer: Arc<str>, send: SendStream, recv: RecvStream) -> Self {
        P2pStream {
            read: P2pReadHalf {
                id,
                peer: peer.clone(),
                recv,
            },
            write: P2pWriteHalf {
                id,
                peer,
                send: Some(send),
                closed: false,
            },
        }
    }

    /// The relay's id of this stream (from the stream header).
    pub fn id(&self) -> u64 {
        self.read.id
    }

    /// The client at the other end.
    pub fn peer(&self) -> &str {
        &self.read.peer
    }

    /// Separate halves, to read and write from different tasks.
    pub fn split(self) -> (P2pReadHalf, P2pWriteHalf) {
        (self.read, self.write)
    }

    /// Puts halves from [`P2pStream::split`] back together.
    ///
    /// # Panics
    /// If the halves belong to different streams.
    pub fn unsplit(read: P2pReadHalf, write: P2pWriteHalf) -> Self {
        assert_eq!(read.id, write.id, "halves of different P2P streams");
        P2pStream { read, write }
    }

    /// Abandons the stream both ways with an application `code`: unsent data is dropped, the
    /// peer's reads fail with a reset and its writes with a stop (the relay reports any
    /// client reset to the peer as [`ResetCode::PeerReset`]).
    pub fn reset(&mut self, code: u32) {
        self.write.reset(code);
        self.read.stop(code);
    }

    /// The underlying quinn streams, for zero-copy `read_chunk` / `write_chunk`. The send
    /// stream is then plain quinn: dropping it finishes it rather than resetting it.
    pub fn into_quinn(self) -> (SendStream, RecvStream) {
        (self.write.into_quinn(), self.read.recv)
    }
}

impl P2pReadHalf {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Tells the peer to stop sending (its writes fail with a stop carrying `code`).
    pub fn stop(&mut self, code: u32) {
        // Fails only when the stream was already stopped or fully read: nothing left to do.
        let _ = self.recv.stop(VarInt::from_u32(code));
    }
}

impl P2pWriteHalf {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Abandons the send side with `code` (unsent data is dropped).
    pub fn reset(&mut self, code: u32) {
        self.closed = true;
        if let Some(send) = self.send.as_mut() {
            // Fails only when already finished or reset: nothing left to do.
            let _ = send.reset(VarInt::from_u32(code));
        }
    }

    fn into_quinn(mut self) -> SendStream {
        self.closed = true;
        match self.send.take() {
            Some(send) => send,
            None => unreachable!("the send stream is only taken by into_quinn, which consumes"),
        }
    }

    fn send(&mut self) -> io::Result<&mut SendStream> {
        self.send
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, StreamError::ClosedStream))
    }
}

impl Drop for P2pWriteHalf {
    fn drop(&mut self) {
        if !self.closed {
            tracing::debug!(
                stream = self.id,
                "P2P stream dropped without shutdown: resetting it"
            );
            if let Some(send) = self.send.as_mut() {
                let _ = send.reset(VarInt::from_u32(ResetCode::PeerReset.code()));
            }
        }
    }
}

impl AsyncRead for P2pReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut()
            .recv
            .poll_read_buf(cx, buf)
            .map_err(StreamError::from_read)
    }
}

impl AsyncWrite for P2pWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let send = self.get_mut().send()?;
        Pin::new(send)
            .poll_write(cx, buf)
            .map_err(StreamError::from_write)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // quinn sends as soon as it can; there is no buffer of ours to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        this.closed = true;
        let finished = this.send()?.finish();
        Poll::Ready(
            finished.map_err(|_| {
                io::Error::new(io::ErrorKind::NotConnected, StreamError::ClosedStream)
            }),
        )
    }
}

impl AsyncRead for P2pStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for P2pStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().write).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.get_mut().write).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}
