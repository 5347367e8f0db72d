//! Serving the gateway over TCP with axum, and stopping it: gracefully first, then by force.
//!
//! axum's graceful shutdown stops accepting and lets each connection finish its request,
//! but its per-connection tasks are detached: a connection that never finishes (a request
//! head trickling in, a client that keeps its connection busy) would outlive the server with
//! no handle to end it by. So every accepted socket is wrapped in [`Cuttable`], which a
//! [`ServeShutdown::cut_connections`] turns into a closed socket for whoever holds it, axum's
//! task or, after an upgrade, engine.io's websocket tasks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::serve::{Listener, ListenerExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Stops a gateway served by [`serve_with_shutdown`].
#[derive(Debug, Clone, Default)]
pub struct ServeShutdown {
    graceful: CancellationToken,
    cut: CancellationToken,
}

impl ServeShutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops accepting: idle connections are closed, requests in progress may finish (a
    /// long-polling request finishes when socketioxide closes its session).
    pub fn stop_accepting(&self) {
        self.graceful.cancel();
    }

    /// Ends every connection still open, now: reads see the end of the stream and writes
    /// fail, so each task serving one ends. Stops accepting as well.
    pub fn cut_connections(&self) {
        self.graceful.cancel();
        self.cut.cancel();
    }
}

/// Serves `app` on `listener` with TCP no-delay on every accepted socket (axum leaves it
/// off; small relayed messages then wait for delayed ACKs and throughput collapses), and
/// with each client's address known to the gateway (`ConnectInfo`), for the per-address
/// connection limits and the admission callback. An app served otherwise should use
/// `into_make_service_with_connect_info::<SocketAddr>()` too, or those limits do not apply.
pub async fn serve(listener: TcpListener, app: axum::Router) -> io::Result<()> {
    serve_with_shutdown(listener, app, ServeShutdown::new()).await
}

/// [`serve`], until `shutdown` stops it: returns once the listener is closed and every
/// connection task axum started has ended (after [`ServeShutdown::stop_accepting`] when
/// the connections finish; after [`ServeShutdown::cut_connections`] at once).
pub async fn serve_with_shutdown(
    listener: TcpListener,
    app: axum::Router,
    shutdown: ServeShutdown,
) -> io::Result<()> {
    // Through `tap_io`, for which axum provides the `ConnectInfo` of any listener.
    let listener = CuttableListener {
        inner: listener,
        cut: shutdown.cut.clone(),
    }
    .tap_io(|io| {
        if let Err(e) = io.tcp.set_nodelay(true) {
            tracing::warn!("could not set TCP_NODELAY: {e}");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.graceful.cancelled_owned())
    .await
}

struct CuttableListener {
    inner: TcpListener,
    cut: CancellationToken,
}

impl Listener for CuttableListener {
    type Io = Cuttable;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.inner).await;
        (Cuttable::new(tcp, &self.cut), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted socket that ends when the server cuts its connections.
///
/// Each direction waits on the cut by itself, since a websocket's reader and writer run in
/// different tasks and each must be woken. The token is the connection's own child, so
/// polling it never contends with another connection.
pub(crate) struct Cuttable {
    tcp: TcpStream,
    read_cut: Pin<Box<WaitForCancellationFutureOwned>>,
    write_cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Cuttable {
    fn new(tcp: TcpStream, cut: &CancellationToken) -> Self {
        let own = cut.child_token();
        Self {
            tcp,
            read_cut: Box::pin(own.clone().cancelled_owned()),
            write_cut: Box::pin(own.cancelled_owned()),
        }
    }
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server is shutting down",
    )
}

impl AsyncRead for Cuttable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_cut.as_mut().poll(cx).is_ready() {
            // The end of the stream: the reader stops as if the client had left.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Cuttable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting the socket down is what a cut connection should do anyway.
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_cut_ends_a_pending_read_and_fails_writes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = CancellationToken::new();
        let mut listener = CuttableListener {
            inner: listener,
            cut: cut.clone(),
        };
        let _client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = Listener::accept(&mut listener).await;

        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = server.read(&mut buf).await;
            (n.map_err(|e| e.kind()), server)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!reading.is_finished(), "nothing was sent: the read waits");
        cut.cancel();
        let (read, mut server) = tokio::time::timeout(std::time::Duration::from_secs(5), reading)
            .await
            .expect("the cut wakes the reader")
            .unwrap();
        assert_eq!(read, Ok(0), "a cut reads as the end of the stream");
        let write = server.write_all(b"late").await.map_err(|e| e.kind());
        assert_eq!(write, Err(io::ErrorKind::ConnectionAborted));
    }
}
