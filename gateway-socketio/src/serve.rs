//! Serving the gateway over TCP with axum, and stopping it: gracefully first, then by force.
//!
//! The loop is hyper's own rather than `axum::serve`, which sets no timer (so no request
//! head timeout) and detaches its per-connection tasks. A graceful stop lets each
//! connection finish its request; a connection that never finishes (a client that keeps
//! its connection busy) would still outlive the server, so every accepted socket is wrapped
//! in [`Cuttable`], which a [`ServeShutdown::cut_connections`] turns into a closed socket for
//! whoever holds it, the connection task or, after an upgrade, engine.io's websocket tasks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::time::Duration;

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

/// How long a client may take to send a request head: from the moment a connection is
/// accepted, or from the end of its previous request when it is kept alive. Idle and
/// trickling connections are closed after it, so they cannot pile up until the process
/// runs out of file descriptors.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` with [`DEFAULT_HEADER_READ_TIMEOUT`], until the future is
/// dropped. See [`serve_with_shutdown`].
pub async fn serve(listener: TcpListener, app: axum::Router) -> io::Result<()> {
    serve_with_shutdown(
        listener,
        app,
        ServeShutdown::new(),
        DEFAULT_HEADER_READ_TIMEOUT,
    )
    .await
}

/// Serves `app` on `listener` until `shutdown` stops it: returns once the listener is
/// closed and every connection task has ended (after [`ServeShutdown::stop_accepting`]
/// when the connections finish their requests; after [`ServeShutdown::cut_connections`]
/// at once).
///
/// What `axum::serve` does, plus what it cannot (it sets no timer for hyper): a connection
/// that does not deliver a request head within `header_read_timeout` (an idle socket, or
/// headers sent a byte a second) is closed. TCP no-delay is set on every accepted socket
/// (axum leaves it off; small relayed messages then wait for delayed ACKs and throughput
/// collapses). Each request carries its client's address as
/// `axum::extract::ConnectInfo<SocketAddr>`, for the per-address connection limits and the
/// admission callback; an app served otherwise should use
/// `into_make_service_with_connect_info::<SocketAddr>()`, or those limits do not apply.
/// Websocket upgrades are served; after one, the header timeout no longer applies and the
/// engine.io heartbeat watches the connection.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    app: axum::Router,
    shutdown: ServeShutdown,
    header_read_timeout: Duration,
) -> io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    // HTTP/1.1 only: Socket.IO clients speak nothing else, and hyper-util's automatic
    // version detection waits for a first byte before any timer runs, so an idle socket
    // would never be timed out.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.graceful.cancelled() => break,
            accepted = listener.accept() => {
                let (tcp, remote_addr) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!("could not set TCP_NODELAY: {e}");
                }
                let service = app.clone().map_request(
                    move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        req.extensions_mut()
                            .insert(axum::extract::ConnectInfo(remote_addr));
                        req.map(axum::body::Body::new)
                    },
                );
                let service = hyper_util::service::TowerToHyperService::new(service);
                let io = TokioIo::new(Cuttable::new(tcp, &shutdown.cut));
                let connection = builder.serve_connection(io, service).with_upgrades();
                let graceful = shutdown.graceful.clone();
                connections.spawn(async move {
                    tokio::pin!(connection);
                    let ended = tokio::select! {
                        ended = connection.as_mut() => ended,
                        () = graceful.cancelled() => {
                            // Finish the request in progress, then close; an idle
                            // keep-alive connection closes at once.
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::trace!("connection ended: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// An accept that failed: a connection that went away before it was accepted is skipped;
/// anything else (out of file descriptors, mostly) is waited out for a second rather than
/// spun on.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!("cannot accept a Socket.IO connection: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
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
        let _client = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let mut server = Cuttable::new(tcp, &cut);

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
