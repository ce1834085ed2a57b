//! The HTTP side: the WebSocket upgrade on the SocketCluster path (with the reference's 400 / 403
//! answers), static files, `/health`, and serving with axum.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;

use crate::connection;
use crate::id::new_socket_id;
use crate::middleware::{Block, HandshakeWsAction};
use crate::origin::origin_allowed;
use crate::shared::ServerShared;
use crate::socket::{KeptRequest, Socket};
use crate::ws::WebSocket;

const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// [`Server::router`](crate::Server::router): a router with just the SocketCluster endpoint (`options.path`), to merge into an existing
/// axum app. Serve it with connect info (`into_make_service_with_connect_info::<SocketAddr>`)
/// so sockets know their remote address.
pub(crate) fn router(server: &Arc<ServerShared>) -> Router {
    Router::new()
        .route(&server.options().path, get(upgrade_route))
        .with_state(server.clone())
}

/// [`Server::app`](crate::Server::app): the complete HTTP app of a worker: the SocketCluster endpoint, `GET /health`, static files
/// from `public_dir` (if given) for everything else, and the reference's `400 Bad Request` for
/// WebSocket upgrades on any other path.
pub(crate) fn app(server: &Arc<ServerShared>, public_dir: Option<PathBuf>) -> Router {
    let mut app = Router::new()
        .route(&server.options().path, get(upgrade_route))
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .with_state(server.clone());
    if let Some(dir) = public_dir {
        app = app.fallback_service(
            tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true),
        );
    }
    app.layer(middleware::from_fn_with_state(
        server.clone(),
        reject_misrouted_upgrades,
    ))
}

async fn upgrade_route(State(server): State<Arc<ServerShared>>, request: Request) -> Response {
    upgrade(&server, request).await
}

async fn health(State(server): State<Arc<ServerShared>>) -> impl IntoResponse {
    let body = server.health().await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

/// Readiness: 200 while serving, 503 from the first moment of a drain (liveness stays on
/// `/health`).
async fn ready(State(server): State<Arc<ServerShared>>) -> Response {
    if server.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

async fn reject_misrouted_upgrades(
    State(server): State<Arc<ServerShared>>,
    request: Request,
    next: Next,
) -> Response {
    if is_websocket_upgrade(request.headers()) && request.uri().path() != server.options().path {
        return bad_request();
    }
    next.run(request).await
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    header_has_token(headers, header::UPGRADE, "websocket")
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

fn bad_request() -> Response {
    (StatusCode::BAD_REQUEST, "Bad Request").into_response()
}

/// The request's `Sec-WebSocket-Key` if it is a valid WebSocket upgrade request
/// (RFC 6455 §4.2.1): a GET (not HEAD) over HTTP/1.1 or later (an HTTP/1.0 connection cannot be upgraded:
/// it would get a 101 and then be closed), version 13, a 16-byte key.
pub(crate) fn upgrade_key(request: &Request) -> Option<HeaderValue> {
    if request.method() != http::Method::GET || request.version() < http::Version::HTTP_11 {
        return None;
    }
    let headers = request.headers();
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    if !version_ok
        || !is_websocket_upgrade(headers)
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return None;
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| is_valid_key(key.as_bytes()))
        .cloned()
}

/// permessage-deflate for this request if `enabled` and offered: the agreement and the
/// response header value.
pub(crate) fn negotiate_deflate(
    request: &Request,
    enabled: bool,
    threshold: usize,
) -> Option<(crate::ws::Deflate, String)> {
    if !enabled {
        return None;
    }
    let offers = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok());
    crate::ws::negotiate_deflate(offers, threshold)
}

/// The `101 Switching Protocols` answer.
pub(crate) fn switching_protocols(
    key: &HeaderValue,
    protocol: Option<String>,
    extensions: Option<String>,
) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    if let Some(extensions) = extensions.and_then(|e| HeaderValue::from_str(&e).ok()) {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, extensions);
    }
    response
}

/// Answers a WebSocket upgrade request ([`Server::accept`](crate::Server::accept)).
pub(crate) async fn upgrade(server: &Arc<ServerShared>, mut request: Request) -> Response {
    let Some(key) = upgrade_key(&request) else {
        return bad_request();
    };
    if server.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(&server.options().origins, origin) {
        let shown = origin.filter(|o| *o != "null").unwrap_or("*");
        tracing::info!(
            origin = shown,
            "rejected a WebSocket upgrade: invalid origin"
        );
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html")],
            format!("Failed to authorize socket handshake - Invalid origin: {shown}"),
        )
            .into_response();
    }
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_owned());
    let remote_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let kept_request = KeptRequest::new(remote_addr, request.uri(), request.headers());
    let middleware = server.middleware();
    if middleware.has_handshake_ws()
        && let Err(block) = middleware
            .run_handshake_ws(
                HandshakeWsAction {
                    request: kept_request.to_request(),
                },
                server.options().durations().middleware_timeout,
            )
            .await
    {
        let message = match block {
            Block::Error(error) => error.message(),
            Block::Silent => {
                "The handshakeWS AGAction was blocked by handshake middleware".to_owned()
            }
        };
        tracing::debug!(%message, "WebSocket upgrade blocked by middleware");
        return (StatusCode::UNAUTHORIZED, message).into_response();
    }
    let options = server.options();
    let deflate = negotiate_deflate(
        &request,
        options.per_message_deflate,
        options.per_message_deflate_threshold,
    );
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (deflate, extensions) = deflate.unzip();

    let server = server.clone();
    // This task only waits for the upgrade; the connection then runs in a task of its own, so
    // the long-lived task holds the connection's state alone (1.2 KB) instead of also this
    // future's upgrade state (together 2.7 KB per connection).
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "WebSocket upgrade failed");
                return;
            }
        };
        let options = server.options();
        let io = crate::metrics::Counted::new(TokioIo::new(upgraded), server.metrics().clone());
        let ws = WebSocket::new(io, options.max_payload)
            .with_queue_limit(options.outbound_queue_limit)
            .with_deflate(deflate);
        server.count_connection();
        let socket = Socket::new(
            new_socket_id(),
            server.clone(),
            kept_request,
            server.fixed_dialect(),
        );
        tokio::spawn(connection::run(ws, socket));
    });

    switching_protocols(&key, protocol, extensions)
}

/// A `Sec-WebSocket-Key` is a base64-encoded 16-byte nonce (RFC 6455 §4.2.1).
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24 && STANDARD.decode(key).is_ok_and(|nonce| nonce.len() == 16)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(sha.digest().bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_16_bytes_of_base64() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZSE="));
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!is_valid_key(b"not a key at all!!!!!!!!"));
        assert!(!is_valid_key(b""));
    }

    #[test]
    fn rfc6455_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
