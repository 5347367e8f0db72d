//! The control center: who is connected (id, transport, since when), who is paired with
//! whom, open streams, and the metrics at a glance.
//!
//! Rendered on the server as one small HTML page with nothing fetched from elsewhere, so
//! it works offline (and through an SSH tunnel) and reads without its script. The script
//! (`control.js`, served beside the page, as its style is) then keeps it live from `/api/live`, one
//! reading a second by server-sent events: it turns readings into per-client and per-stream
//! rates and small charts, searches by client id, and disconnects a client on a confirmed
//! click. The clients are paged by id (`?after=ID&limit=N`), so a relay with many clients
//! costs one page per view. `/api/clients` gives the same page as JSON, and
//! `/api/summary` the numbers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use relay_runtime::metrics::{transport_label, Snapshot};
use relay_runtime::{ClientInfo, ClientsPage, RelayHandle, StreamInfo, TrafficReading};
use serde_json::{json, Value};

use super::health::Readiness;

/// Clients shown on one page unless asked otherwise, and the most one page may hold.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// What the page shows besides the clients.
pub struct Overview<'a> {
    pub socketio_addr: std::net::SocketAddr,
    pub quic_addr: std::net::SocketAddr,
    pub readiness: Readiness,
    pub started: SystemTime,
    pub snapshot: &'a Snapshot,
}

/// The page's size, from the query, within bounds.
pub fn limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

pub fn html(
    overview: &Overview<'_>,
    page: &ClientsPage,
    after: Option<&str>,
    limit: usize,
) -> String {
    let now = SystemTime::now();
    let s = overview.snapshot;
    let readiness = overview.readiness.as_str();
    let mean = if s.acks == 0 {
        "-".to_owned()
    } else {
        format!("{:.1} ms", s.ack_mean_micros as f64 / 1000.0)
    };
    let summary = [
        (
            "Socket.IO clients",
            "socketio_connections",
            s.socketio_connections.to_string(),
        ),
        (
            "QUIC clients",
            "quic_connections",
            s.quic_connections.to_string(),
        ),
        ("Pairs", "pairs", s.pairs.to_string()),
        ("Open streams", "open_streams", s.open_streams.to_string()),
        (
            "Messages in / out",
            "messages",
            format!("{} / {}", s.messages_in, s.messages_out),
        ),
        (
            "Bytes in / out",
            "bytes",
            format!("{} / {}", s.bytes_in, s.bytes_out),
        ),
        (
            "Failed requests",
            "requests_failed",
            s.requests_failed.to_string(),
        ),
        (
            "Undelivered messages",
            "undelivered",
            s.undelivered.to_string(),
        ),
        (
            "Refused connections",
            "connects_refused",
            s.connects_refused.to_string(),
        ),
        (
            "Acks (mean round trip)",
            "acks",
            format!("{} ({mean})", s.acks),
        ),
    ];
    // maud escapes every interpolated value: client ids are chosen by clients, so nothing
    // of theirs can become markup.
    let markup = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "p2p-relay control center" }
                link rel="stylesheet" href="control.css";
            }
            body {
                h1 { "p2p-relay control center" }
                p {
                    "Status: " strong class=(readiness) id="readiness" { (readiness) }
                    " · up " (span(now.duration_since(overview.started).unwrap_or_default()))
                    " · Socket.IO " code { "http://" (overview.socketio_addr) }
                    " · QUIC " code { (overview.quic_addr) }
                }
                h2 { "At a glance" }
                table id="summary" {
                    tbody {
                        @for (name, key, value) in &summary {
                            tr { th { (name) } td class="n" id=(key) { (value) } }
                        }
                    }
                }
                div class="charts" {
                    figure {
                        canvas id="chart-messages" width="320" height="80" {}
                        figcaption {
                            "Messages/s (in + out), last minute: "
                            span id="rate-messages" { "-" }
                        }
                    }
                    figure {
                        canvas id="chart-bytes" width="320" height="80" {}
                        figcaption {
                            "Bytes/s (in + out), last minute: " span id="rate-bytes" { "-" }
                        }
                    }
                }
                p id="live" { "Live updates: not connected (the page needs its script)" }
                h2 { "Clients" }
                p id="clients-count" {
                    (page.total) " connected"
                    @if let Some(first) = page.clients.first() {
                        "; showing " (page.clients.len()) " from " code { (first.id.as_str()) }
                    }
                    "."
                }
                form id="search" {
                    label { "Search by client id " input name="q" id="q" autocomplete="off"; }
                }
                p id="notice" role="status" {}
                table id="clients" {
                    thead {
                        tr {
                            th { "Client" } th { "Transport" } th { "Address" }
                            th { "Connected since" } th { "Paired with" } th { "Streams" }
                            th { "Pending" } th { "Messages/s in / out" }
                            th { "Bytes/s in / out" } th {}
                        }
                    }
                    tbody {
                        @for client in &page.clients {
                            (client_row(client, now))
                        }
                    }
                }
                p {
                    @if after.is_some() {
                        a href={ "?limit=" (limit) } { "« first page" } " "
                    }
                    @if let Some(next) = &page.next {
                        a id="next" href={ "?after=" (query_value(next.as_str())) "&limit=" (limit) } {
                            "next page »"
                        }
                    }
                }
                h2 { "Streams" }
                table id="streams" {
                    thead {
                        tr {
                            th { "Stream" } th { "Between" } th { "Open since" }
                            th { "Bytes a→b / b→a" } th { "Bytes/s a→b / b→a" }
                        }
                    }
                    tbody {}
                }
                p {
                    small {
                        "Machine-readable: " a href="metrics" { "/metrics" }
                        " · " a href="api/clients" { "/api/clients" }
                        " · " a href="api/summary" { "/api/summary" }
                        " · " a href="api/live" { "/api/live" }
                    }
                }
                script src="control.js" {}
            }
        }
    };
    markup.into_string()
}

/// One client's row of the clients table (the script fills in the rates).
fn client_row(client: &ClientInfo, now: SystemTime) -> maud::Markup {
    let since = httpdate::fmt_http_date(client.since);
    let for_how_long = span(now.duration_since(client.since).unwrap_or_default());
    let id = client.id.as_str();
    maud::html! {
        tr class="client" {
            td { code class="id" { (id) } }
            td class="transport" { (generation_of(client)) }
            td class="remote" { (client.remote.map(|r| r.to_string()).unwrap_or_default()) }
            td title=(since) { (since) " (" (for_how_long) ")" }
            td {
                @match &client.peer {
                    Some(peer) => code class="peer" { (peer.as_str()) },
                    None => "–",
                }
            }
            td class="n streams" { (client.streams) }
            td class="n" { (client.pending) }
            td class="n messages-rate" { "-" }
            td class="n bytes-rate" { "-" }
            td {
                button type="button" class="disconnect" data-id=(id) { "Disconnect" }
            }
        }
    }
}

/// The page's script and style, served by this listener beside the page (relative paths,
/// so the page works under a proxy's prefix too): nothing is fetched from elsewhere, and
/// nothing inline, so the Content-Security-Policy can forbid inline code.
pub const SCRIPT: &str = include_str!("control.js");
pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\n\
     table{border-collapse:collapse;margin:.5rem 0 1.5rem}\n\
     th,td{padding:.25rem .75rem;border-bottom:1px solid #ddd;text-align:left}\n\
     td.n{text-align:right;font-variant-numeric:tabular-nums}\n\
     .ready{color:#070}.draining,.starting{color:#a40}code{font-size:.95em}\n\
     .charts{display:flex;gap:1.5rem;flex-wrap:wrap}.charts figure{margin:0}\n\
     canvas{border:1px solid #ddd;background:#fafafa}#notice{color:#a40}\n";

/// Clients scanned at most for one search: a search costs the relay a bounded walk of the
/// sorted directory, page by page, however many clients it has.
pub const SEARCH_SCAN: usize = 20_000;

/// The clients whose id contains `needle` (all clients when it is empty), at most `limit`,
/// in id order, among the first [`SEARCH_SCAN`] clients.
pub fn search(relay: &RelayHandle, needle: &str, limit: usize) -> ClientsPage {
    if needle.is_empty() {
        return relay.clients(None, limit);
    }
    let mut found = Vec::new();
    let mut after: Option<relay_core::ClientId> = None;
    let mut scanned = 0;
    let total = loop {
        let page = relay.clients(after.as_ref().map(|a| a.as_str()), MAX_LIMIT);
        scanned += page.clients.len();
        found.extend(
            page.clients
                .into_iter()
                .filter(|c| c.id.as_str().contains(needle)),
        );
        after = page.next;
        if found.len() >= limit || after.is_none() || scanned >= SEARCH_SCAN {
            break page.total;
        }
    };
    found.truncate(limit);
    ClientsPage {
        clients: found,
        next: None,
        total,
    }
}

fn generation_of(client: &ClientInfo) -> &'static str {
    client
        .generation
        .unwrap_or_else(|| transport_label(client.transport))
}

/// One reading for the live view.
pub fn live_json(overview: &Overview<'_>, page: &ClientsPage, streams: &[StreamInfo]) -> Value {
    let now = SystemTime::now();
    json!({
        "at_ms": now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
        "summary": summary_json(overview),
        "clients": clients_json(page),
        "streams": streams.iter().map(|s| stream_json(s, now)).collect::<Vec<_>>(),
    })
}

fn stream_json(stream: &StreamInfo, now: SystemTime) -> Value {
    json!({
        "id": format!("{:#x}", stream.id.0),
        "a": stream.a.as_ref().map(|c| c.as_str()),
        "b": stream.b.as_ref().map(|c| c.as_str()),
        "open_secs": now.duration_since(stream.since).unwrap_or_default().as_secs(),
        "bytes_ab": stream.traffic.bytes_in,
        "bytes_ba": stream.traffic.bytes_out,
    })
}

fn traffic_json(traffic: &TrafficReading) -> Value {
    json!({
        "messages_in": traffic.messages_in,
        "messages_out": traffic.messages_out,
        "bytes_in": traffic.bytes_in,
        "bytes_out": traffic.bytes_out,
    })
}

pub fn clients_json(page: &ClientsPage) -> Value {
    let now = SystemTime::now();
    json!({
        "total": page.total,
        "next": page.next.as_ref().map(|id| id.as_str()),
        "clients": page.clients.iter().map(|c| client_json(c, now)).collect::<Vec<_>>(),
    })
}

fn client_json(client: &ClientInfo, now: SystemTime) -> Value {
    json!({
        "id": client.id.as_str(),
        "transport": transport_label(client.transport),
        "generation": generation_of(client),
        "remote": client.remote.map(|r| r.to_string()),
        "traffic": traffic_json(&client.traffic),
        "since_unix_ms": client.since.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
        "connected_secs": now.duration_since(client.since).unwrap_or_default().as_secs(),
        "peer": client.peer.as_ref().map(|p| p.as_str()),
        "streams": client.streams,
        "pending": client.pending,
    })
}

pub fn summary_json(overview: &Overview<'_>) -> Value {
    let s = overview.snapshot;
    json!({
        "readiness": overview.readiness.as_str(),
        "uptime_secs": SystemTime::now().duration_since(overview.started).unwrap_or_default().as_secs(),
        "connections": { "socketio": s.socketio_connections, "quic": s.quic_connections },
        "pairs": s.pairs,
        "open_streams": s.open_streams,
        "messages": { "in": s.messages_in, "out": s.messages_out },
        "bytes": { "in": s.bytes_in, "out": s.bytes_out },
        "requests_failed": s.requests_failed,
        "undelivered": s.undelivered,
        "connects_refused": s.connects_refused,
        "acks": s.acks,
        "ack_mean_micros": s.ack_mean_micros,
    })
}

/// A value for a URL query.
fn query_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A duration the way a person reads it: `12s`, `5m 03s`, `3h 04m`, `2d 05h`.
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_not_markup() {
        let client = ClientInfo {
            id: relay_core::ClientId::new("<b id='x'>&").unwrap(),
            conn: relay_core::ConnId(0),
            transport: relay_core::Transport::Legacy,
            since: SystemTime::now(),
            peer: None,
            streams: 0,
            pending: 0,
            remote: None,
            generation: None,
            traffic: TrafficReading::default(),
            since_last_chunk: None,
        };
        let row = client_row(&client, SystemTime::now()).into_string();
        assert!(
            row.contains("<code class=\"id\">&lt;b id='x'&gt;&amp;</code>"),
            "{row}"
        );
        assert!(row.contains("data-id=\"&lt;b id='x'&gt;&amp;\""), "{row}");
        assert!(!row.contains("<b id="), "{row}");
        assert_eq!(query_value("a b&c"), "a+b%26c");
    }

    #[test]
    fn spans_read_like_a_clock() {
        assert_eq!(span(Duration::from_secs(12)), "12s");
        assert_eq!(span(Duration::from_secs(303)), "5m 03s");
        assert_eq!(span(Duration::from_secs(3 * 3600 + 240)), "3h 04m");
        assert_eq!(span(Duration::from_secs(2 * 86400 + 5 * 3600)), "2d 05h");
    }

    #[test]
    fn a_page_is_bounded() {
        assert_eq!(limit(None), DEFAULT_LIMIT);
        assert_eq!(limit(Some(0)), 1);
        assert_eq!(limit(Some(1_000_000)), MAX_LIMIT);
    }
}
