//! Binary attachments for engine.io v3 long-polling clients (socket.io-client 2.x).
//!
//! engineioxide 0.17.9 (engineioxide-core 0.2.3, the newest published) writes Socket.IO
//! binary attachments toward v3 polling clients in the engine.io v4 form: `b<base64>` where
//! v3 expects `b4<base64>` in a text payload, and as a text packet where v3 expects a binary
//! packet in an XHR2 payload. A 2.x client then throws "got plaintext data when
//! reconstructing a packet" and the connection breaks. Upstream has fixes merged but not
//! released, and no other library sits at this layer, so this middleware rewrites those
//! packets in v3 polling responses. It touches nothing else: websocket traffic, v4 clients
//! and payloads without binary pass through unchanged.
//!
//! Every `b` packet in such a response comes from that one code path (engine.io v3 packet
//! types are digits; only binary packets start with `b`), so the rewrite is unambiguous.
//! Remove this module once a release of engineioxide encodes v3 binary correctly (the
//! interop tests over polling will tell).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

const STRING_SEPARATOR: u8 = b':';
const BINARY_SEPARATOR: u8 = 0xff;

/// Most a v3 polling response may be for this middleware to buffer it: engineioxide fills
/// one with packets up to its payload limit (`transport_limit`), and an attachment written
/// in base64 takes 4/3 of its bytes, so twice that limit holds any response it makes.
pub(crate) fn buffer_limit(transport_limit: usize) -> usize {
    transport_limit.saturating_mul(2)
}

/// The axum middleware. Only GET requests of v3 polling clients are inspected, and only
/// responses of at most `max_bytes` (see [`buffer_limit`]) are buffered to be rewritten:
/// a larger one passes as it is, and the buffer is refused before it grows past the bound.
pub async fn fix(State(max_bytes): State<usize>, request: Request, next: Next) -> Response {
    let v3_polling = request.method() == Method::GET
        && request.uri().query().is_some_and(|q| {
            q.split('&').any(|kv| kv == "EIO=3") && q.split('&').any(|kv| kv == "transport=polling")
        });
    let response = next.run(request).await;
    if !v3_polling {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let declared = axum::body::HttpBody::size_hint(&body).upper();
    if declared.is_none_or(|len| len > max_bytes as u64) {
        tracing::debug!(
            ?declared,
            max_bytes,
            "v3 polling response not buffered: too large"
        );
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, max_bytes).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let binary = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
    let fixed = if binary {
        fix_binary_payload(&bytes)
    } else {
        fix_text_payload(&bytes)
    };
    let body = match fixed {
        Some(fixed) => {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(fixed.len()));
            fixed
        }
        None => bytes,
    };
    Response::from_parts(parts, Body::from(body))
}

/// Text payload (`b64=1` clients): `<utf16 length>:<packet>` repeated. Rewrites `b<base64>`
/// to `b4<base64>`. Returns None when nothing needed fixing (or the payload is not one).
fn fix_text_payload(payload: &[u8]) -> Option<Bytes> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    let mut changed = false;
    while !rest.is_empty() {
        let colon = rest.find(STRING_SEPARATOR as char)?;
        let units: usize = rest[..colon].parse().ok()?;
        let after = &rest[colon + 1..];
        // The length counts UTF-16 code units; find the byte offset where they end.
        let mut seen = 0;
        let mut end = after.len();
        for (offset, ch) in after.char_indices() {
            if seen == units {
                end = offset;
                break;
            }
            seen += ch.len_utf16();
        }
        if seen < units {
            return None;
        }
        let packet = &after[..end];
        if let Some(data) = packet.strip_prefix('b') {
            out.push_str(&(units + 1).to_string());
            out.push(':');
            out.push_str("b4");
            out.push_str(data);
            changed = true;
        } else {
            out.push_str(&rest[..colon + 1 + end]);
        }
        rest = &after[end..];
    }
    changed.then(|| Bytes::from(out))
}

/// Binary payload (XHR2 clients): `<0 text|1 binary><length digits as bytes><0xff><data>`
/// repeated. Turns text packets `b<base64>` into binary packets `0x04 <bytes>`.
fn fix_binary_payload(payload: &[u8]) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(payload.len());
    let mut rest = payload;
    let mut changed = false;
    while !rest.is_empty() {
        let kind = rest[0];
        let sep = rest.iter().position(|&b| b == BINARY_SEPARATOR)?;
        let mut len = 0usize;
        for &digit in &rest[1..sep] {
            if digit > 9 {
                return None;
            }
            len = len.checked_mul(10)?.checked_add(digit as usize)?;
        }
        let data = rest.get(sep + 1..sep + 1 + len)?;
        if kind == 0 && data.first() == Some(&b'b') {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&data[1..])
                .ok()?;
            out.put_u8(1);
            for digit in (raw.len() + 1).to_string().bytes() {
                out.put_u8(digit - b'0');
            }
            out.put_u8(BINARY_SEPARATOR);
            out.put_u8(4);
            out.extend_from_slice(&raw);
            changed = true;
        } else {
            out.extend_from_slice(&rest[..sep + 1 + len]);
        }
        rest = &rest[sep + 1 + len..];
    }
    changed.then(|| out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_payload_binary_packets_gain_their_type() {
        // A binary event header followed by its attachment [7, 8] ("Bwg=").
        let payload = b"9:451-[\"e\"]5:bBwg=";
        let fixed = fix_text_payload(payload).unwrap();
        assert_eq!(&fixed[..], b"9:451-[\"e\"]6:b4Bwg=");
    }

    #[test]
    fn text_payload_counts_utf16_units() {
        // "é" is one UTF-16 unit but two UTF-8 bytes; "😀" is two units, four bytes.
        let payload = "4:4é😀5:bAQI=".as_bytes();
        let fixed = fix_text_payload(payload).unwrap();
        assert_eq!(&fixed[..], "4:4é😀6:b4AQI=".as_bytes());
    }

    #[test]
    fn text_payload_without_binary_is_left_alone() {
        assert!(fix_text_payload(b"2:403:2ab").is_none());
        assert!(fix_text_payload(b"not a payload").is_none());
    }

    #[test]
    fn binary_payload_text_attachments_become_binary_packets() {
        let mut payload = vec![0, 3, 0xff];
        payload.extend_from_slice(b"451");
        payload.extend_from_slice(&[0, 5, 0xff]);
        payload.extend_from_slice(b"bBwg=");
        let fixed = fix_binary_payload(&payload).unwrap();
        let mut expected = vec![0, 3, 0xff];
        expected.extend_from_slice(b"451");
        expected.extend_from_slice(&[1, 3, 0xff, 4, 7, 8]);
        assert_eq!(&fixed[..], &expected[..]);
    }

    /// `payload` (a text payload) served to a v3 polling GET through [`fix`] buffering at
    /// most `max_bytes`.
    async fn through_fix(payload: &'static str, max_bytes: usize) -> Bytes {
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route(
                "/socket.io/",
                axum::routing::get(move || async move { payload }),
            )
            .layer(axum::middleware::from_fn_with_state(max_bytes, fix));
        let request = Request::get("/socket.io/?EIO=3&transport=polling")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn only_responses_within_the_bound_are_buffered() {
        let payload = "9:451-[\"e\"]5:bBwg=";
        assert_eq!(
            &through_fix(payload, payload.len()).await[..],
            b"9:451-[\"e\"]6:b4Bwg="
        );
        // One byte over: passed on as it came, never collected.
        assert_eq!(
            &through_fix(payload, payload.len() - 1).await[..],
            payload.as_bytes()
        );
        assert_eq!(buffer_limit(3 << 20), 6 << 20);
        assert_eq!(buffer_limit(usize::MAX), usize::MAX);
    }

    #[test]
    fn binary_payload_without_attachments_is_left_alone() {
        let mut payload = vec![0, 1, 0xff];
        payload.extend_from_slice(b"3");
        assert!(fix_binary_payload(&payload).is_none());
        assert!(fix_binary_payload(&[0, 12, 0xff]).is_none());
    }
}
