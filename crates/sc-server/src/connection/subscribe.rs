//! Subscribing a socket on `#subscribe`: plain channels, channels with history (EXTENSIONS.md
//! E3, E4) and presence membership (E5).

use std::sync::Arc;

use bytes::Bytes;
use sc_broker::{BrokerError, HistoryPolicy, Position};
use sc_protocol::encode;

use crate::socket::Socket;
use crate::streams::Catchup;

/// A subscribe acknowledgement; v1 batch channels get it inside a batch array.
pub(crate) fn subscribe_ack(cid: u64, data: Option<&str>, batch: bool) -> Bytes {
    let ack = encode::response(cid, data);
    if batch { encode::batch(&[ack]) } else { ack }
}

/// Joins `channel`'s presence if it keeps presence; on failure the caller unsubscribes.
async fn join_presence(socket: &Socket, channel: &str) -> Result<(), BrokerError> {
    let hub = socket.server().hub();
    if hub.streams().presence(channel) {
        hub.broker()
            .presence_join(channel, socket.presence_member())
            .await?;
    }
    Ok(())
}

/// Subscribes `socket` to a channel without history (presence joined if it keeps presence).
pub(crate) async fn subscribe_plain(
    socket: &Socket,
    channel: &Arc<str>,
) -> Result<(), BrokerError> {
    let presence = socket.server().hub().streams().presence(channel);
    socket.subscribe_channel(channel, false, presence).await?;
    if let Err(error) = join_presence(socket, channel).await {
        // Undoes the subscription that failed half-way.
        socket.unsubscribe_channel(channel).await;
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
    fn ack(&self, position: &Position, recovered: bool) -> Option<Bytes> {
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
        let hub = socket.server().hub();
        let read = self.catchup.read(&self.policy);
        if self.already {
            // Replays as asked; live deliveries may interleave (clients should not do this).
            let page = hub
                .broker()
                .read_history(self.channel, self.policy, read)
                .await?;
            for publication in &page.publications {
                if let Some(frame) = hub.outbound_frame(socket, publication) {
                    let _ = socket.send_frame(frame);
                }
            }
            if let Some(frame) = self.ack(&page.position, page.recovered) {
                let _ = socket.send_frame(frame);
            }
            return Ok(());
        }
        let presence = hub.streams().presence(self.channel);
        socket
            .subscribe_channel(self.channel, true, presence)
            .await?;
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
            // Undoes the subscription that failed half-way.
            socket.unsubscribe_channel(self.channel).await;
        }
        result
    }
}
