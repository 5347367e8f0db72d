//! Socket.IO requests detached from hyper's read buffer before socketioxide keeps them.
//!
//! hyper parses a request head without copying: the URI and every header value are slices
//! of the connection's read buffer (8 KiB). engineioxide keeps the request parts of a
//! session's first request for the whole session (`Socket::req_parts`), and with them that
//! buffer: 8 KiB per connected client, most of an idle client's memory after the buffers
//! that serve its traffic. Copying the URI and the header values (a few hundred bytes)
//! lets hyper's buffer go once the request has been read. axum's router keeps a copy of
//! the URI too ([`OriginalUri`], in the request's extensions, which engineioxide keeps as
//! well), so that one is copied as well.
//!
//! Written here because neither hyper nor engineioxide offers a setting for it (hyper's
//! zero-copy parsing is its design; engineioxide stores what it is handed).

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;

/// The axum middleware: Socket.IO requests only (other routes keep hyper's parts as they
/// are, since nothing holds them past the response).
pub async fn detach(mut request: Request, next: Next) -> Response {
    if crate::is_socket_io_path(request.uri().path()) {
        detach_parts(&mut request);
    }
    next.run(request).await
}

/// A copy of `uri` that shares no buffer with it.
fn copied_uri(uri: &Uri) -> Option<Uri> {
    Uri::from_maybe_shared(Bytes::copy_from_slice(uri.to_string().as_bytes())).ok()
}

/// Replaces the request's URI (and axum's copy of it, [`OriginalUri`], which the router
/// keeps in the request's extensions) and header values with copies of their own.
fn detach_parts(request: &mut Request) {
    if let Some(uri) = copied_uri(request.uri()) {
        *request.uri_mut() = uri;
    }
    if let Some(original) = request.extensions_mut().get_mut::<OriginalUri>() {
        if let Some(uri) = copied_uri(&original.0) {
            original.0 = uri;
        }
    }
    let headers = request.headers();
    let mut copied = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // Header names are already owned: hyper copies custom names and the standard
        // ones are static.
        let Ok(mut fresh) = HeaderValue::from_bytes(value.as_bytes()) else {
            // Cannot happen (the bytes were a valid value already); keep the original.
            copied.append(name.clone(), value.clone());
            continue;
        };
        fresh.set_sensitive(value.is_sensitive());
        copied.append(name.clone(), fresh);
    }
    *request.headers_mut() = copied;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_the_request_as_it_was() {
        let mut request = Request::builder()
            .uri("/socket.io/?EIO=3&transport=websocket&clientId=A%20b")
            .header("origin", "http://example.com")
            .header("x-custom", "one")
            .header("x-custom", "two")
            .body(axum::body::Body::empty())
            .unwrap();
        let original = OriginalUri(request.uri().clone());
        request.extensions_mut().insert(original.clone());
        let before_uri = request.uri().clone();
        let before_headers = request.headers().clone();
        detach_parts(&mut request);
        assert_eq!(request.uri(), &before_uri);
        assert_eq!(
            request.extensions().get::<OriginalUri>().map(|u| &u.0),
            Some(&original.0)
        );
        assert_eq!(request.headers(), &before_headers);
        let customs: Vec<_> = request.headers().get_all("x-custom").iter().collect();
        assert_eq!(customs, ["one", "two"]);
    }
}
