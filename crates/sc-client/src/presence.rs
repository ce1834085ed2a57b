//! Presence (EXTENSIONS.md E5): who is subscribed to a presence channel ([`Presence`], from
//! [`Client::presence`](crate::Client::presence)), and the join / leave notifications as one
//! ordered [`Stream`] ([`PresenceEvents`], from
//! [`Client::presence_events`](crate::Client::presence_events)).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_util::Stream;
use sc_protocol::Json;
use serde::Deserialize;

use crate::sink::DataSource;

/// One socket subscribed to a presence channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PresenceClient {
    /// The socket id.
    pub id: String,
    /// The `username` claim of the socket's auth token, if it has one.
    #[serde(default)]
    pub user: Option<String>,
}

/// The answer to a `#presence` query.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Presence {
    /// How many sockets are subscribed, over all workers and instances.
    pub count: u64,
    /// Up to 1000 of them (which ones, and in what order, is unspecified).
    #[serde(default)]
    pub clients: Vec<PresenceClient>,
}

/// Whether a socket joined or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// `#presenceJoin`: a socket subscribed.
    Join,
    /// `#presenceLeave`: a socket unsubscribed or disconnected.
    Leave,
}

/// A `#presenceJoin` or `#presenceLeave` from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    /// Join or leave.
    pub change: PresenceChange,
    /// The presence channel.
    pub channel: String,
    /// The socket that joined or left.
    pub client: PresenceClient,
}

impl PresenceEvent {
    /// Reads the event `name` (`#presenceJoin` / `#presenceLeave`) with its data.
    pub(crate) fn parse(name: &str, data: Option<&Json>) -> Option<PresenceEvent> {
        let change = match name {
            "#presenceJoin" => PresenceChange::Join,
            "#presenceLeave" => PresenceChange::Leave,
            _ => return None,
        };
        #[derive(Deserialize)]
        struct Data {
            channel: String,
            client: PresenceClient,
        }
        let data: Data = data?.parse().ok()?;
        Some(PresenceEvent {
            change,
            channel: data.channel,
            client: data.client,
        })
    }
}

/// Every `#presenceJoin` and `#presenceLeave` the client receives, in arrival order, as a
/// [`Stream`].
///
/// Overflow policy as for channels: a full buffer
/// ([`ClientOptions::receiver_buffer`](crate::ClientOptions::receiver_buffer)) drops new events
/// for this stream and counts them ([`PresenceEvents::dropped`]). The stream ends when the
/// client shuts down.
pub struct PresenceEvents {
    source: DataSource<PresenceEvent>,
}

impl PresenceEvents {
    pub(crate) fn new(source: DataSource<PresenceEvent>) -> PresenceEvents {
        PresenceEvents { source }
    }

    /// Events dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.source.dropped.load(Ordering::Relaxed)
    }
}

impl Stream for PresenceEvents {
    type Item = PresenceEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PresenceEvent>> {
        self.source.rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for PresenceEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceEvents").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Json {
        Json::from_text(text).unwrap()
    }

    #[test]
    fn parses_the_wire_forms() {
        let join = PresenceEvent::parse(
            "#presenceJoin",
            Some(&json(
                r#"{"channel":"room/1","client":{"id":"abc","user":"alice"}}"#,
            )),
        )
        .unwrap();
        assert_eq!(join.change, PresenceChange::Join);
        assert_eq!(join.client.user.as_deref(), Some("alice"));
        let leave = PresenceEvent::parse(
            "#presenceLeave",
            Some(&json(
                r#"{"channel":"room/1","client":{"id":"abc","user":null}}"#,
            )),
        )
        .unwrap();
        assert_eq!(leave.change, PresenceChange::Leave);
        assert_eq!(leave.client.user, None);
        assert!(PresenceEvent::parse("#presenceJoin", Some(&json("{}"))).is_none());
        assert!(PresenceEvent::parse("other", Some(&json("{}"))).is_none());

        let presence: Presence =
            json(r#"{"count":3,"clients":[{"id":"a","user":"alice"},{"id":"b","user":null}]}"#)
                .parse()
                .unwrap();
        assert_eq!(presence.count, 3);
        assert_eq!(presence.clients[1].user, None);
    }
}
