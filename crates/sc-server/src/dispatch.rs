//! Routing of inbound events once the handshake is done: protocol events (`#subscribe`,
//! `#publish`, …) and application events (to handlers).

use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::FutureExt;
use sc_protocol::error::names;
use sc_protocol::frame::{PublishData, SubscribeData};
use sc_protocol::{CloseCode, EventPacket, HeartbeatDialect, Json, Publication, ScError, encode};

use crate::connection::{Connection, Flow};
use crate::handler::{Reply, Request};
use crate::socket::Socket;

/// Events the socketcluster-server 14 socket reserves for local use; it drops them when a client
/// sends them (PROTOCOL.md §11 rule 2). Applied to v1 connections.
const V14_RESERVED_INBOUND: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "connect",
    "_connect",
    "disconnect",
    "_disconnect",
    "connectAbort",
    "_connectAbort",
    "close",
    "_close",
    "message",
    "error",
    "authStateChange",
    "authTokenSigned",
    "authenticate",
    "deauthenticate",
    "badAuthToken",
    "raw",
];

pub(crate) async fn on_event(connection: &mut Connection, event: EventPacket) -> Flow {
    match event.event.as_str() {
        // A repeated handshake is ignored (PROTOCOL.md §4.7).
        "#handshake" => Flow::Continue,
        "#subscribe" => on_subscribe(&connection.socket, event).await,
        "#unsubscribe" => on_unsubscribe(&connection.socket, event).await,
        "#publish" => on_publish(&connection.socket, event).await,
        "#disconnect" => on_client_disconnect(connection, event),
        "#authenticate" if event.cid.is_none() => Flow::Close(CloseCode::HANDSHAKE_REJECTED),
        name if name.starts_with('#') => Flow::Continue,
        name if connection.dialect() == Some(HeartbeatDialect::V1) && V14_RESERVED_INBOUND.contains(&name) => {
            Flow::Continue
        }
        _ => on_application_event(&connection.socket, event),
    }
}

pub(crate) fn on_raw(socket: &Socket, bytes: Bytes) -> Flow {
    tracing::trace!(socket = %socket.id(), len = bytes.len(), "raw message");
    Flow::Continue
}

fn respond(socket: &Socket, cid: Option<u64>, result: Result<Option<&Json>, &ScError>) {
    let Some(cid) = cid else { return };
    let frame = match result {
        Ok(data) => encode::response(cid, data.map(Json::get)),
        Err(error) => encode::error_response(cid, error.to_json().get(), None),
    };
    let _ = socket.send_frame(frame);
}

fn respond_error(socket: &Socket, cid: Option<u64>, name: &str, message: String) -> Flow {
    respond(socket, cid, Err(&ScError::new(name, message)));
    Flow::Continue
}

/// `#subscribe` (PROTOCOL.md §7.1–7.2).
async fn on_subscribe(socket: &Socket, event: EventPacket) -> Flow {
    let cid = event.cid;
    let Some(subscribe) = SubscribeData::parse(event.data.as_ref()) else {
        return respond_error(socket, cid, names::INVALID_ACTION, "Subscribe channel name was malformatted".into());
    };
    let channel: Arc<str> = Arc::from(subscribe.channel.as_str());
    let limit = socket.0.server.options.socket_channel_limit;
    let (already, count) = {
        let channels = socket.0.channels.lock();
        (channels.contains(&channel), channels.len())
    };
    // The reference checks the limit before "already subscribed".
    if let Some(limit) = limit
        && count >= limit
    {
        let message = format!(
            "Failed to subscribe socket to the {channel} channel - InvalidActionError: Socket {} tried to exceed the channel subscription limit of {limit}",
            socket.id()
        );
        return respond_error(socket, cid, names::BROKER, message);
    }
    if !already {
        socket.0.channels.lock().insert(channel.clone());
        if let Err(error) = socket.0.server.hub.subscribe_socket(socket, &channel).await {
            socket.0.channels.lock().remove(&channel);
            tracing::warn!(socket = %socket.id(), %channel, %error, "subscribe failed at the broker");
            let message = format!("Failed to subscribe socket to the {channel} channel - {error}");
            return respond_error(socket, cid, names::BROKER, message);
        }
    }
    if let Some(cid) = cid {
        let ack = encode::response(cid, None);
        // v1 batch channels get their answer inside a batch array.
        let frame = if subscribe.batch { encode::batch(&[ack]) } else { ack };
        let _ = socket.send_frame(frame);
    }
    Flow::Continue
}

/// `#unsubscribe` (PROTOCOL.md §7.3).
async fn on_unsubscribe(socket: &Socket, event: EventPacket) -> Flow {
    let cid = event.cid;
    let Some(channel) = event.data.as_ref().and_then(Json::as_string) else {
        return respond_error(socket, cid, names::INVALID_ACTION, "Unsubscribe channel name was malformatted".into());
    };
    let removed = socket.0.channels.lock().remove(channel.as_str());
    if !removed {
        let message = format!(
            "Failed to unsubscribe socket from the {channel} channel - InvalidActionError: Socket {} tried to unsubscribe from a channel which it is not subscribed to",
            socket.id()
        );
        return respond_error(socket, cid, names::BROKER, message);
    }
    socket.0.server.hub.unsubscribe_socket(socket, &channel).await;
    respond(socket, cid, Ok(None));
    Flow::Continue
}

/// `#publish` from a client (PROTOCOL.md §7.4).
async fn on_publish(socket: &Socket, event: EventPacket) -> Flow {
    let cid = event.cid;
    if !socket.0.server.options.allow_client_publish {
        return respond_error(socket, cid, names::INVALID_ACTION, "Client publish feature is disabled".into());
    }
    let Some(publish) = PublishData::parse(event.data.as_ref()) else {
        return respond_error(socket, cid, names::INVALID_ACTION, "Publish channel name was malformatted".into());
    };
    let publication = Publication::new(&publish.channel, publish.data.as_ref());
    match socket.0.server.hub.broker().publish(publication).await {
        Ok(()) => respond(socket, cid, Ok(None)),
        Err(error) => {
            tracing::warn!(socket = %socket.id(), channel = %publish.channel, %error, "publish failed at the broker");
            let message = format!("Failed to publish to the {} channel - {error}", publish.channel);
            respond_error(socket, cid, names::BROKER, message);
        }
    }
    Flow::Continue
}

/// `#disconnect` from a v1 client: close with its code (socketcluster-server 14 behaviour).
fn on_client_disconnect(connection: &mut Connection, event: EventPacket) -> Flow {
    connection.settle_dialect(HeartbeatDialect::V1);
    #[derive(serde::Deserialize)]
    struct Fields {
        code: Option<u16>,
    }
    let code = event
        .data
        .as_ref()
        .and_then(|d| d.parse::<Fields>().ok())
        .and_then(|f| f.code)
        .filter(|c| tokio_websockets::CloseCode::try_from(*c).is_ok_and(|c| !c.is_reserved()))
        .unwrap_or(1000);
    Flow::Close(CloseCode(code))
}

/// An application event: run its handler, answer if the client asked for a response.
///
/// A handler that completes at once is answered inline (no task spawned, order preserved);
/// one that waits continues in its own task so the socket keeps processing.
fn on_application_event(socket: &Socket, event: EventPacket) -> Flow {
    let Some(handler) = socket.handler(&event.event) else {
        // Nobody handles it: never answered, as in SocketCluster (the client's ack times out).
        return Flow::Continue;
    };
    let cid = event.cid;
    let request = Request { socket: socket.clone(), event: event.event, data: event.data, cid };
    let event_name = request.event.clone();
    let mut future = std::panic::AssertUnwindSafe(handler.call(request)).catch_unwind();
    let waker = futures_util::task::noop_waker();
    let mut context = std::task::Context::from_waker(&waker);
    match future.poll_unpin(&mut context) {
        Poll::Ready(outcome) => finish(socket, cid, &event_name, outcome),
        Poll::Pending => {
            let socket = socket.clone();
            tokio::spawn(async move {
                let outcome = future.await;
                finish(&socket, cid, &event_name, outcome);
            });
        }
    }
    Flow::Continue
}

type Outcome = Result<Result<Reply, ScError>, Box<dyn std::any::Any + Send>>;

fn finish(socket: &Socket, cid: Option<u64>, event: &str, outcome: Outcome) {
    match outcome {
        Ok(Ok(reply)) => respond(socket, cid, Ok(reply.0.as_ref())),
        Ok(Err(error)) => respond(socket, cid, Err(&error)),
        Err(_) => {
            tracing::error!(socket = %socket.id(), event, "event handler panicked");
            respond(socket, cid, Err(&ScError::new("HandlerError", format!("The {event} handler failed"))));
        }
    }
}
