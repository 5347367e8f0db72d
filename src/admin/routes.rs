//! The admin listener's routes and the token check in front of the guarded ones.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Query, Request, State as Extract};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use super::control::{self, Overview};
use super::health::Readiness;
use super::{Access, Watched};

#[derive(Clone)]
pub struct State(Arc<Inner>);

struct Inner {
    watched: Watched,
    access: Access,
    registry: Registry,
    started: SystemTime,
}

impl State {
    pub fn new(watched: Watched, access: Access, started: SystemTime) -> Self {
        let mut registry = Registry::with_prefix("p2p_relay");
        watched.relay.metrics().register(&mut registry);
        Self(Arc::new(Inner {
            watched,
            access,
            registry,
            started,
        }))
    }
}

pub fn router(state: State) -> Router {
    let guarded = Router::new()
        .route("/", get(control_page))
        .route("/control.js", get(control_script))
        .route("/control.css", get(control_style))
        .route("/metrics", get(metrics))
        .route("/api/clients", get(clients))
        .route("/api/summary", get(summary))
        .route("/api/live", get(live))
        .route("/api/clients/{id}/disconnect", post(disconnect))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // Browsers ask for it; an empty answer keeps their consoles free of 404s.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .merge(guarded)
        // Outermost: every answer, a refusal too, carries the headers.
        .layer(middleware::from_fn_with_state(state.clone(), require_host))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// What the page may load and who may frame it: its own script and style only (served at
/// `control.js` and `control.css`, not inline, so that nothing injected into the page
/// could run), no framing (clickjacking of the disconnect button), no sniffing of a JSON
/// answer into something runnable.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Refuses, on a listener without a token, a request naming a host that is not loopback
/// nor one of `--admin-hosts`: what a web page reaching the listener by DNS rebinding
/// sends (see [`super::access`]).
async fn require_host(Extract(state): Extract<State>, request: Request, next: Next) -> Response {
    let header = request.headers().get(header::HOST).map(|v| v.to_str());
    let authority = request.uri().authority().map(|a| a.as_str());
    let allowed = match header {
        Some(Err(_)) => false,
        Some(Ok(host)) => {
            state.0.access.allows_host(Some(host))
                && authority.is_none_or(|a| state.0.access.allows_host(Some(a)))
        }
        None => state.0.access.allows_host(authority),
    };
    if allowed {
        return next.run(request).await;
    }
    tracing::debug!(host = ?header, "admin request for another host refused");
    (
        StatusCode::MISDIRECTED_REQUEST,
        "this admin listener has no token, so it answers only requests for localhost, \
         127.0.0.1 or [::1]: name one of those, add this host with --admin-hosts NAME, or \
         give an admin token (--admin-token-file)\n",
    )
        .into_response()
}

async fn control_script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        control::SCRIPT,
    )
        .into_response()
}

async fn control_style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        control::STYLE,
    )
        .into_response()
}

async fn require_token(Extract(state): Extract<State>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.0.access.allows(authorization) {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "admin token required: send 'Authorization: Bearer TOKEN'\n",
    )
        .into_response();
    // Lets a browser ask for it (any user name, the token as password).
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"p2p-relay admin\""),
    );
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(Extract(state): Extract<State>) -> Response {
    let readiness = state.0.watched.health.readiness();
    let status = match readiness {
        Readiness::Ready => StatusCode::OK,
        Readiness::Starting | Readiness::Draining => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, format!("{}\n", readiness.as_str())).into_response()
}

async fn metrics(Extract(state): Extract<State>) -> Response {
    state.0.watched.relay.metrics().refresh();
    let mut body = String::new();
    if let Err(e) =
        prometheus_client::encoding::prometheus_text::encode(&mut body, &state.0.registry)
    {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}\n"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn control_page(
    Extract(state): Extract<State>,
    Query(query): Query<PageQuery>,
) -> Html<String> {
    let limit = control::limit(query.limit);
    let after = query.after.as_deref().filter(|a| !a.is_empty());
    let page = state.0.watched.relay.clients(after, limit);
    let snapshot = state.0.watched.relay.metrics().snapshot();
    Html(control::html(
        &overview(&state, &snapshot),
        &page,
        after,
        limit,
    ))
}

async fn clients(
    Extract(state): Extract<State>,
    Query(query): Query<PageQuery>,
) -> Json<serde_json::Value> {
    let limit = control::limit(query.limit);
    let after = query.after.as_deref().filter(|a| !a.is_empty());
    Json(control::clients_json(
        &state.0.watched.relay.clients(after, limit),
    ))
}

async fn summary(Extract(state): Extract<State>) -> Json<serde_json::Value> {
    let snapshot = state.0.watched.relay.metrics().snapshot();
    Json(control::summary_json(&overview(&state, &snapshot)))
}

fn overview<'a>(state: &State, snapshot: &'a relay_runtime::metrics::Snapshot) -> Overview<'a> {
    let watched = &state.0.watched;
    Overview {
        socketio_addr: watched.socketio_addr,
        quic_addr: watched.quic_addr,
        readiness: watched.health.readiness(),
        started: state.0.started,
        snapshot,
    }
}

#[derive(Debug, serde::Deserialize)]
struct LiveQuery {
    /// Only clients whose id contains this.
    q: Option<String>,
    limit: Option<usize>,
}

/// How often the live view is sent: the page's rates and charts are per second.
const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The control center's live view, as server-sent events: one JSON reading a second of
/// the summary, one page of clients (those matching `q`), and the open streams. The page
/// turns successive readings into rates; the relay keeps no history.
async fn live(
    Extract(state): Extract<State>,
    Query(query): Query<LiveQuery>,
) -> axum::response::Sse<
    impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    let limit = control::limit(query.limit);
    let search = query.q.unwrap_or_default();
    let readings = futures::stream::unfold(
        (state, tokio::time::interval(LIVE_EVERY)),
        move |(state, mut every)| {
            let search = search.clone();
            async move {
                every.tick().await;
                let relay = &state.0.watched.relay;
                let snapshot = relay.metrics().snapshot();
                let page = control::search(relay, &search, limit);
                let reading = control::live_json(
                    &overview(&state, &snapshot),
                    &page,
                    &relay.streams(control::MAX_LIMIT),
                );
                let event = axum::response::sse::Event::default().data(reading.to_string());
                Some((Ok(event), (state, every)))
            }
        },
    );
    axum::response::Sse::new(readings).keep_alive(axum::response::sse::KeepAlive::default())
}

/// The header the page's disconnect button sends. A page of another site cannot send a
/// custom header without a CORS preflight, which this listener never grants, so a forged
/// cross-site form cannot disconnect anyone even where the browser holds the admin
/// token (HTTP Basic) or the listener is open (loopback).
pub const ACTION_HEADER: &str = "x-p2p-relay-admin";

/// Disconnects one client, as the control center's button does: it is told why
/// (`SERVER_ERROR` / a `Disconnected` close) and its peer is freed.
async fn disconnect(
    Extract(state): Extract<State>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !headers.contains_key(ACTION_HEADER) {
        return (
            StatusCode::FORBIDDEN,
            format!("send the header '{ACTION_HEADER}: 1' with the request\n"),
        )
            .into_response();
    }
    let relay = &state.0.watched.relay;
    match relay.conn_of(&id) {
        Some(conn) => {
            tracing::info!(client = %id, "disconnected from the control center");
            relay.close(conn, relay_core::CloseReason::Disconnected);
            Json(serde_json::json!({ "disconnected": id })).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no client '{id}' is connected") })),
        )
            .into_response(),
    }
}
