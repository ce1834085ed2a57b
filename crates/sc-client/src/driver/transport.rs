//! The WebSocket underneath: opening it, closing it politely, and turning its failures into
//! close codes and [`ConnectionError`]s.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::Uri;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_websockets::{ClientBuilder, Limits, MaybeTlsStream, Message, WebSocketStream};

use crate::error::ConnectionError;

/// The client's WebSocket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a closing socket may take to exchange close frames in the background.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Opens the WebSocket (TCP connect + HTTP upgrade). The caller bounds it with `connectTimeout`.
pub(crate) async fn open(uri: Uri, max_payload: usize) -> Result<Ws, ConnectionError> {
    let (ws, _response) = ClientBuilder::from_uri(uri)
        .limits(Limits::default().max_payload_len(Some(max_payload)))
        .connect()
        .await
        .map_err(connect_error)?;
    Ok(ws)
}

fn connect_error(error: tokio_websockets::Error) -> ConnectionError {
    use tokio_websockets::Error;
    use tokio_websockets::upgrade::Error as Upgrade;
    match error {
        Error::CannotResolveHost => ConnectionError::Resolve,
        Error::Io(e) => ConnectionError::Io {
            kind: e.kind(),
            message: e.to_string(),
        },
        Error::Upgrade(Upgrade::DidNotSwitchProtocols(status)) => {
            ConnectionError::HttpStatus { status }
        }
        other => ConnectionError::Upgrade(other.to_string()),
    }
}

/// The close code and error for a failure of an open WebSocket, as the reference observes it:
/// a dropped TCP connection is 1006, a protocol violation 1002, bad UTF-8 1007, a message above
/// `maxPayload` 1009.
pub(crate) fn stream_error(error: &tokio_websockets::Error) -> (u16, ConnectionError) {
    use tokio_websockets::Error;
    use tokio_websockets::proto::ProtocolError;
    let code = match error {
        Error::Protocol(ProtocolError::InvalidUtf8) => 1007,
        Error::Protocol(_) => 1002,
        Error::PayloadTooLong { .. } => 1009,
        _ => 1006,
    };
    (
        code,
        ConnectionError::WebSocket {
            code,
            message: error.to_string(),
        },
    )
}

/// Whether `code` can be sent in a close frame.
pub(crate) fn sendable_close_code(code: u16) -> bool {
    tokio_websockets::CloseCode::try_from(code).is_ok_and(|c| !c.is_reserved())
}

/// Finishes a WebSocket in the background: sends our close frame (when we are the side
/// closing), then reads until the peer's close completes, for at most [`CLOSE_GRACE`].
pub(crate) fn close_in_background(runtime: &Handle, mut ws: Ws, close: Option<(u16, String)>) {
    runtime.spawn(async move {
        let finish = async {
            if let Some((code, reason)) = close {
                let code = tokio_websockets::CloseCode::try_from(code)
                    .ok()
                    .filter(|c| !c.is_reserved());
                let reason = if code.is_some() {
                    truncate(&reason, 123)
                } else {
                    ""
                };
                let _ = ws.send(Message::close(code, reason)).await;
            }
            while let Some(Ok(_)) = ws.next().await {}
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
    });
}

/// The longest prefix of `text` that fits in `max` bytes without splitting a character.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes() {
        assert!(
            sendable_close_code(1000) && sendable_close_code(4000) && sendable_close_code(4999)
        );
        assert!(
            !sendable_close_code(1005) && !sendable_close_code(1006) && !sendable_close_code(5000)
        );
        assert!(!sendable_close_code(0) && !sendable_close_code(2000));
    }

    #[test]
    fn truncates_on_char_boundary() {
        let text = "é".repeat(100);
        let cut = truncate(&text, 123);
        assert_eq!(cut.len(), 122);
        assert_eq!(truncate("short", 123), "short");
    }
}
