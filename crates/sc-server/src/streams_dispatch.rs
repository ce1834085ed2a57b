//! The server side of EXTENSIONS.md on a socket: subscribing with history (E3, E4), presence
//! membership and the `#presence` query (E5).

use std::sync::Arc;

use sc_broker::{BrokerError, HistoryPolicy, Position, PresenceMember};
use sc_protocol::error::names;
use sc_protocol::{EventPacket, Json, ScError, encode};

use crate::connection::Flow;
use crate::dispatch::{respond, respond_error, subscribe_ack};
use crate::socket::Socket;
use crate::streams::Catchup;

/// The presence entry of `socket`: its id and the `username` claim of its token.
pub(crate) fn member(socket: &Socket) -> PresenceMember {
    PresenceMember {
        id: socket.id().to_owned(),
        user: socket
            .auth_token()
            .and_then(|token| token.claim_str("username").map(str::to_owned)),
    }
}

/// Joins `channel`'s presence if it keeps presence; on failure the caller unsubscribes.
async fn join_presence(socket: &Socket, channel: &str) -> Result<(), BrokerError> {
    let hub = &socket.0.server.hub;
    if hub.streams().presence(channel) {
        hub.broker().presence_join(channel, member(socket)).await?;
    }
    Ok(())
}

/// Undoes a subscription that failed half-way.
async fn abandon(socket: &Socket, channel: &Arc<str>) {
    if socket.0.channels.lock().remove(channel) {
        socket
            .0
            .server
            .hub
            .unsubscribe_socket(socket, channel)
            .await;
    }
}

/// Subscribes `socket` to a channel without history (presence joined if it keeps presence).
pub(crate) async fn subscribe_plain(
    socket: &Socket,
    channel: &Arc<str>,
) -> Result<(), BrokerError> {
    let hub = &socket.0.server.hub;
    let presence = hub.streams().presence(channel);
    socket.0.channels.lock().insert(channel.clone());
    if let Err(error) = hub.subscribe_socket(socket, channel, false, presence).await {
        socket.0.channels.lock().remove(channel);
        return Err(error);
    }
    if let Err(error) = join_presence(socket, channel).await {
        abandon(socket, channel).await;
        return Err(error);
    }
    Ok(())
}

/// A `#subscribe` to a history channel.
pub(crate) struct StreamedSubscribe<'a> {
    pub(crate) channel: &'a Arc<str>,
    pub(crate) policy: HistoryPolicy,
    pub(crate) catchup: Catchup,
    pub(crate) cid: Option<u64>,
    pub(crate) batch: bool,
    /// The socket holds the channel already (a repeated subscribe).
    pub(crate) already: bool,
}

impl StreamedSubscribe<'_> {
    /// The acknowledgement: the position, with `recovered` when `recover` was asked.
    fn ack(&self, position: &Position, recovered: bool) -> Option<bytes::Bytes> {
        let cid = self.cid?;
        let position = position.to_json();
        let data = if self.catchup.is_recover() {
            format!("{{\"recovered\":{recovered},{}", &position[1..])
        } else {
            position
        };
        Some(subscribe_ack(cid, Some(&data), self.batch))
    }

    /// Subscribes, replays what was asked, and acknowledges (EXTENSIONS.md E3, E4).
    pub(crate) async fn run(self, socket: &Socket) -> Result<(), BrokerError> {
        let hub = &socket.0.server.hub;
        let read = self.catchup.read(&self.policy);
        if self.already {
            // Replays as asked; live deliveries may interleave (clients should not do this).
            let page = hub
                .broker()
                .read_history(self.channel, self.policy, read)
                .await?;
            for publication in &page.publications {
                let _ = socket.send_frame(publication.frame().clone());
            }
            if let Some(frame) = self.ack(&page.position, page.recovered) {
                let _ = socket.send_frame(frame);
            }
            return Ok(());
        }
        let presence = hub.streams().presence(self.channel);
        socket.0.channels.lock().insert(self.channel.clone());
        if let Err(error) = hub
            .subscribe_socket(socket, self.channel, true, presence)
            .await
        {
            socket.0.channels.lock().remove(self.channel);
            return Err(error);
        }
        let mut result = join_presence(socket, self.channel).await;
        if result.is_ok() {
            result = hub
                .catch_up(
                    socket,
                    self.channel,
                    self.policy,
                    read,
                    |position, recovered| self.ack(position, recovered),
                )
                .await;
        }
        if result.is_err() {
            abandon(socket, self.channel).await;
        }
        result
    }
}

/// `#presence` (EXTENSIONS.md E5): who is in a presence channel the socket is subscribed to.
pub(crate) async fn on_presence(socket: &Socket, event: EventPacket) -> Flow {
    let cid = event.cid;
    #[derive(serde::Deserialize)]
    struct Query {
        channel: serde_json::Value,
    }
    let channel = event
        .data
        .as_ref()
        .and_then(|d| d.parse::<Query>().ok())
        .and_then(|q| q.channel.as_str().map(str::to_owned));
    let Some(channel) = channel else {
        return respond_error(
            socket,
            cid,
            names::INVALID_ARGUMENTS,
            "The #presence query needs a channel name string".into(),
        );
    };
    let hub = &socket.0.server.hub;
    if !hub.streams().presence(&channel) {
        return respond_error(
            socket,
            cid,
            PRESENCE_ERROR,
            format!("The {channel} channel does not keep presence"),
        );
    }
    if !socket.is_subscribed(&channel) {
        return respond_error(
            socket,
            cid,
            PRESENCE_ERROR,
            format!(
                "Socket {} is not subscribed to the {channel} channel",
                socket.id()
            ),
        );
    }
    match hub.broker().presence(&channel).await {
        Ok(info) => {
            if let Some(cid) = cid {
                let _ = socket.send_frame(encode::response(cid, Some(&info.to_json())));
            }
        }
        Err(error) => {
            tracing::warn!(socket = %socket.id(), %channel, %error, "presence query failed at the broker");
            let error = ScError::new(
                names::BROKER,
                format!("Failed to read the presence of the {channel} channel - {error}"),
            );
            respond(socket, cid, Err::<Option<&Json>, _>(&error));
        }
    }
    Flow::Continue
}

/// The error name of a refused `#presence` query.
pub(crate) const PRESENCE_ERROR: &str = "PresenceError";

/// After a login or logout, updates the `user` of the socket's presence entries (no event).
pub(crate) fn refresh_presence(socket: &Socket) {
    let hub = socket.0.server.hub.clone();
    let channels: Vec<Arc<str>> = socket
        .0
        .channels
        .lock()
        .iter()
        .filter(|c| hub.streams().presence(c))
        .cloned()
        .collect();
    if channels.is_empty() {
        return;
    }
    let member = member(socket);
    tokio::spawn(async move {
        for channel in channels {
            if let Err(error) = hub.broker().presence_join(&channel, member.clone()).await {
                tracing::warn!(%channel, %error, "presence update failed at the broker");
            }
        }
    });
}
