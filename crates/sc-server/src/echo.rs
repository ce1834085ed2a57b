//! A plain WebSocket echo endpoint over the server's own WebSocket layer and accept loop, for
//! conformance testing with the Autobahn suite (`scripts/autobahn`, the `ws_echo` example).
//! Only built with the `ws-echo` feature; no SocketCluster protocol is spoken.

use std::future::poll_fn;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::ServerOptions;
use crate::http::{negotiate_deflate, switching_protocols, upgrade_key};
use crate::ws::{Inbound, WebSocket};

/// Echoes every message on any path (text as text, binary as binary), with the limits and the
/// permessage-deflate settings of `options` (`maxPayload`, `outboundQueueLimit`,
/// `perMessageDeflate`, `perMessageDeflateThreshold`, and the HTTP timeouts).
pub async fn serve_echo(listener: TcpListener, options: ServerOptions) -> std::io::Result<()> {
    let limits = options.listen_limits();
    let app = Router::new()
        .fallback(echo_upgrade)
        .with_state(std::sync::Arc::new(options));
    crate::listen::serve(listener, app, limits, None, std::future::pending()).await
}

async fn echo_upgrade(
    State(options): State<std::sync::Arc<ServerOptions>>,
    mut request: Request,
) -> Response {
    let Some(key) = upgrade_key(&request) else {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    };
    let deflate = negotiate_deflate(
        &request,
        options.per_message_deflate,
        options.per_message_deflate_threshold,
    );
    let (deflate, extensions) = deflate.unzip();
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocket::new(TokioIo::new(upgraded), options.max_payload)
            .with_queue_limit(options.outbound_queue_limit)
            .with_deflate(deflate);
        echo(ws).await;
    });
    switching_protocols(&key, None, extensions)
}

async fn echo<S>(mut ws: WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = poll_fn(|cx| ws.poll_next(cx)).await {
        let sent = match message {
            Ok(Inbound::Text(text)) => ws.send_message(false, text),
            Ok(Inbound::Binary(binary)) => ws.send_message(true, binary),
            // The close echo, or the close frame for an error, goes out on the next poll.
            Ok(Inbound::Close(..)) | Err(_) => Ok(()),
        };
        if sent.is_err() || poll_fn(|cx| ws.poll_flush(cx)).await.is_err() {
            return;
        }
    }
}
