//! Serving the gateway over TCP with axum, and stopping it: gracefully first, then by force.
//!
//! The loop is hyper's own rather than `axum::serve`, which sets no timer (so no request
//! head timeout) and detaches its per-connection tasks. A graceful stop lets each
//! connection finish its request; a connection that never finishes (a client that keeps
//! its connection busy) would still outlive the server, so every accepted socket is wrapped
//! in [`Cuttable`], which a [`ServeShutdown::cut_connections`] turns into a closed socket for
//! whoever holds it, the connection task or, after an upgrade, engine.io's websocket tasks.
//!
//! With [`ServeTls`] the same loop serves https and wss: each accepted socket goes through
//! a rustls handshake (bounded by its own timeout, so a client that connects and says
//! nothing cannot hold a socket) before hyper sees it. The rustls configuration is shared,
//! so a certificate resolver that swaps its certificate (the relay's reloading one) is
//! served to every new connection, while established ones keep theirs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::client_addr::{read_proxy_preface, TrustedProxies};

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

/// How long a client of a TLS gateway may take, from the moment it connects, to complete
/// its TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS for [`serve_with_options`]: https and wss instead of http and ws.
#[derive(Clone)]
pub struct ServeTls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl ServeTls {
    /// Serves with `config` (its certificate, or its certificate resolver, is asked at every
    /// handshake). Its ALPN list is set to `http/1.1`, the only protocol served here.
    pub fn new(mut config: rustls::ServerConfig, handshake_timeout: Duration) -> Self {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            handshake_timeout,
        }
    }
}

impl std::fmt::Debug for ServeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeTls")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// How [`serve_with_options`] serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// `Some`: https and wss only.
    pub tls: Option<ServeTls>,
    /// Peers believed about their clients' addresses (`Forwarded`, `X-Forwarded-For`,
    /// and the PROXY protocol with `proxy_protocol`); empty: none, every client is its
    /// TCP peer.
    pub trusted_proxies: TrustedProxies,
    /// Connections from `trusted_proxies` start with a PROXY protocol (v1 or v2) preface,
    /// read within `header_read_timeout`; one without is closed.
    pub proxy_protocol: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            tls: None,
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
        }
    }
}

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
/// admission callback: the TCP peer's, or, from a peer in [`ServeOptions::trusted_proxies`],
/// the one its PROXY preface or its forwarding headers name (see `client_addr`). No
/// address is counted at accept, where only the proxy's is known. An app served otherwise
/// should use
/// `into_make_service_with_connect_info::<SocketAddr>()`, or those limits do not apply.
/// Websocket upgrades are served; after one, the header timeout no longer applies and the
/// engine.io heartbeat watches the connection.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    app: axum::Router,
    shutdown: ServeShutdown,
    header_read_timeout: Duration,
) -> io::Result<()> {
    let options = ServeOptions {
        header_read_timeout,
        ..ServeOptions::default()
    };
    serve_with_options(listener, app, shutdown, options).await
}

/// [`serve_with_shutdown`], over TLS when `options.tls` is set: every accepted socket must
/// complete its handshake within the TLS handshake timeout or is closed; a client that
/// speaks plain HTTP to it is answered `400` saying to use https (as nginx does) and closed.
pub async fn serve_with_options(
    listener: TcpListener,
    app: axum::Router,
    shutdown: ServeShutdown,
    options: ServeOptions,
) -> io::Result<()> {
    use hyper_util::rt::TokioTimer;
    use tower::ServiceExt;
    let ServeOptions {
        header_read_timeout,
        tls,
        trusted_proxies,
        proxy_protocol,
    } = options;
    let trusted_proxies = Arc::new(trusted_proxies);

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
                let (mut tcp, peer_addr) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!("could not set TCP_NODELAY: {e}");
                }
                let app = app.clone();
                let trusted = trusted_proxies.clone();
                let cut = shutdown.cut.clone();
                let graceful = shutdown.graceful.clone();
                let builder = builder.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    // No address is counted here: the client's address, which the
                    // per-address limits count, is known only after the preface and
                    // each request's headers.
                    let mut remote_addr = peer_addr;
                    if proxy_protocol && trusted.contains(peer_addr.ip()) {
                        let read = tokio::select! {
                            read = read_proxy_preface(&mut tcp, peer_addr, header_read_timeout) => read,
                            () = graceful.cancelled() => return,
                        };
                        match read {
                            Ok(client) => remote_addr = client,
                            Err(e) => {
                                tracing::debug!(proxy = %peer_addr, "closed: {e}");
                                return;
                            }
                        }
                    }
                    let service = app.map_request(
                        move |mut req: axum::http::Request<hyper::body::Incoming>| {
                            // A request from a trusted proxy names its client in its
                            // headers; this is the address everything after sees.
                            let client = trusted.resolve(remote_addr, req.headers());
                            req.extensions_mut()
                                .insert(axum::extract::ConnectInfo(client));
                            req.map(axum::body::Body::new)
                        },
                    );
                    let service = hyper_util::service::TowerToHyperService::new(service);
                    let socket = Cuttable::new(tcp, &cut);
                    let Some(tls) = tls else {
                        return serve_http(&builder, socket, service, graceful).await;
                    };
                    let accepted = tokio::select! {
                        accepted = tokio::time::timeout(
                            tls.handshake_timeout,
                            tls_accept(&tls.acceptor, socket, remote_addr),
                        ) => accepted,
                        () = graceful.cancelled() => return,
                    };
                    match accepted {
                        Ok(Some(stream)) => serve_http(&builder, stream, service, graceful).await,
                        Ok(None) => {}
                        Err(_) => tracing::debug!(
                            client = %remote_addr,
                            "closed: no TLS handshake within {:?}",
                            tls.handshake_timeout
                        ),
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

/// Serves one connection with hyper until it ends, or, once the server stops accepting,
/// until its request in progress has finished.
async fn serve_http<I, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    graceful: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = graceful.cancelled() => {
            // Finish the request in progress, then close; an idle keep-alive connection
            // closes at once.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::trace!("connection ended: {e}");
    }
}

/// What a client that speaks plain HTTP to the TLS port is told before the socket closes.
const PLAIN_HTTP_TO_TLS: &str =
    "This port serves HTTPS: connect with https:// (wss:// for websockets).\n";

/// The TLS handshake of one accepted socket; `None` when it failed (logged).
///
/// A first byte that cannot start a TLS record (0x16, a handshake) but looks like the
/// start of an HTTP method is a plain-HTTP client on the wrong scheme: it gets a 400 that
/// says so, instead of an unreadable TLS alert.
async fn tls_accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    mut socket: Cuttable,
    remote_addr: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<Cuttable>> {
    let mut first = [0u8; 1];
    match socket.tcp.peek(&mut first).await {
        Ok(0) | Err(_) => return None,
        Ok(_) => {}
    }
    if first[0].is_ascii_uppercase() {
        tracing::debug!(client = %remote_addr, "plain HTTP on the TLS port; answered 400");
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n{PLAIN_HTTP_TO_TLS}",
            PLAIN_HTTP_TO_TLS.len()
        );
        if socket.write_all(answer.as_bytes()).await.is_ok() {
            let _ = socket.tcp.shutdown().await;
            // Take what the client sent, so the close is a FIN rather than a reset that
            // could destroy the answer before the client reads it. Bounded by the caller's
            // handshake timeout and by size.
            let mut sink = [0u8; 4096];
            let mut left = 64 * 1024usize;
            while left > 0 {
                match socket.tcp.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        }
        return None;
    }
    match acceptor.accept(socket).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::debug!(client = %remote_addr, "TLS handshake failed: {e}");
            None
        }
    }
}

/// An accept that failed: a connection that went away before it was accepted is skipped;
/// anything else (out of file descriptors, mostly) is waited out for a second rather than
/// spun on.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
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
