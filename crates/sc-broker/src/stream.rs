//! Stream positions, history and presence (EXTENSIONS.md): the types every engine shares.
//!
//! A channel with history keeps its last publications with their [`Position`]s; the engine that
//! holds the history gives the offsets, so that every worker, broker and instance sees one
//! sequence per channel. A presence channel knows which sockets are subscribed, everywhere.
//!
//! The [`Broker`](crate::Broker) trait carries the operations
//! ([`publish_stored`](crate::Broker::publish_stored),
//! [`read_history`](crate::Broker::read_history), [`presence_join`](crate::Broker::presence_join),
//! …); this module holds their values and the join/leave event frames.

use std::time::Duration;

use sc_protocol::encode::write_json_string;
use sc_protocol::{Json, Publication};
use serde::{Deserialize, Serialize};

pub use sc_protocol::Position;

/// Channel-name prefix of the internal companion channel that carries a presence channel's
/// `#presenceJoin` / `#presenceLeave` events between workers. Clients cannot subscribe or publish
/// to it (the server refuses such names).
pub const PRESENCE_PREFIX: &str = "#presence/";

/// Most clients listed in a presence answer (EXTENSIONS.md E5).
pub const PRESENCE_LIST_LIMIT: usize = 1000;

/// How much history a channel keeps: its last `size` publications, each for `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPolicy {
    /// Publications kept (at least 1).
    pub size: usize,
    /// How long each publication is kept.
    #[serde(with = "millis")]
    pub ttl: Duration,
}

/// What to read from a channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryRead {
    /// Every retained publication after this position (recovery, EXTENSIONS.md E3).
    Since(Position),
    /// The last `n` retained publications (history on join, EXTENSIONS.md E4); `Last(0)` reads
    /// only the current position.
    Last(usize),
}

/// The answer to a history read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The channel's position when the page was read (its epoch is created if the channel had
    /// none).
    pub position: Position,
    /// Publications, with their positions, in offset order.
    pub publications: Vec<Publication>,
    /// For [`HistoryRead::Since`]: whether `publications` is exactly everything after the given
    /// position (same epoch, nothing expired in between, position not ahead). Always true for
    /// [`HistoryRead::Last`].
    pub recovered: bool,
}

impl HistoryPage {
    /// The answer to `read` from a channel's `retained` publications (with positions, oldest
    /// first) while the channel is at `position`: what an engine that reads its whole retained
    /// history (Redis, NATS) returns.
    pub fn from_retained(
        read: &HistoryRead,
        position: Position,
        retained: Vec<Publication>,
    ) -> HistoryPage {
        let first = retained
            .first()
            .and_then(|p| p.position().map(|p| p.offset));
        match read {
            HistoryRead::Since(since) => HistoryPage {
                recovered: recovers(since, &position, first),
                publications: if since.epoch == position.epoch {
                    retained
                        .into_iter()
                        .filter(|p| p.position().is_some_and(|p| p.offset > since.offset))
                        .collect()
                } else {
                    Vec::new()
                },
                position,
            },
            HistoryRead::Last(n) => {
                let skip = retained.len().saturating_sub(*n);
                HistoryPage {
                    position,
                    publications: retained.into_iter().skip(skip).collect(),
                    recovered: true,
                }
            }
        }
    }
}

/// One socket in a presence channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceMember {
    /// The socket id.
    pub id: String,
    /// The `username` claim of the socket's auth token, if any.
    pub user: Option<String>,
}

/// Who is in a presence channel.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PresenceInfo {
    /// Exact number of subscribed sockets.
    pub count: usize,
    /// At most [`PRESENCE_LIST_LIMIT`] of them.
    pub clients: Vec<PresenceMember>,
}

impl PresenceInfo {
    /// `{"count":N,"clients":[{"id":…,"user":…},…]}`, the `#presence` answer.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(32 + self.clients.len() * 48);
        out.extend_from_slice(b"{\"count\":");
        out.extend_from_slice(self.count.to_string().as_bytes());
        out.extend_from_slice(b",\"clients\":[");
        for (i, member) in self.clients.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_member(&mut out, member);
        }
        out.extend_from_slice(b"]}");
        String::from_utf8(out).unwrap_or_default()
    }
}

fn write_member(out: &mut Vec<u8>, member: &PresenceMember) {
    out.extend_from_slice(b"{\"id\":");
    write_json_string(out, &member.id);
    out.extend_from_slice(b",\"user\":");
    match &member.user {
        Some(user) => write_json_string(out, user),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// A presence change, as carried on the companion channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// A socket subscribed (`#presenceJoin`).
    Join,
    /// A socket unsubscribed or disconnected (`#presenceLeave`).
    Leave,
}

/// The companion channel carrying `channel`'s presence events.
pub fn presence_channel(channel: &str) -> String {
    format!("{PRESENCE_PREFIX}{channel}")
}

/// The publication that tells every worker about a presence change: published on the companion
/// channel, its data is the complete event frame subscribers receive
/// (`{"event":"#presenceJoin","data":{"channel":…,"client":{"id":…,"user":…}}}`).
pub fn presence_event(
    change: PresenceChange,
    channel: &str,
    member: &PresenceMember,
) -> Publication {
    let mut out = Vec::with_capacity(96 + channel.len() + member.id.len());
    out.extend_from_slice(match change {
        PresenceChange::Join => b"{\"event\":\"#presenceJoin\",\"data\":{\"channel\":",
        PresenceChange::Leave => b"{\"event\":\"#presenceLeave\",\"data\":{\"channel\":",
    });
    write_json_string(&mut out, channel);
    out.extend_from_slice(b",\"client\":");
    write_member(&mut out, member);
    out.extend_from_slice(b"}}");
    // Built from escaped strings above: always valid JSON.
    let data = Json::from_bytes(out.into()).unwrap_or(Json::NULL);
    Publication::new(&presence_channel(channel), Some(&data))
}

/// The frame of [`presence_event`] split around its `client` object, for engines that build it
/// from a stored client (`head` + `{"id":…,"user":…}` + `tail`).
pub fn presence_event_parts(change: PresenceChange, channel: &str) -> (String, String) {
    let marker = PresenceMember {
        id: "\u{1}".to_owned(),
        user: None,
    };
    let event = presence_event(change, channel, &marker);
    let frame = String::from_utf8_lossy(event.frame()).into_owned();
    let mut client = Vec::new();
    write_member(&mut client, &marker);
    let client = String::from_utf8_lossy(&client).into_owned();
    match frame.split_once(&client) {
        Some((head, tail)) => (head.to_owned(), tail.to_owned()),
        None => (frame, String::new()),
    }
}

/// A member as the `client` object of presence events and answers.
pub fn member_json(member: &PresenceMember) -> String {
    let mut out = Vec::new();
    write_member(&mut out, member);
    String::from_utf8_lossy(&out).into_owned()
}

/// A fresh random epoch (12 alphanumeric characters).
pub fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..12)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Whether a history read of `since` can be served exactly: same epoch, not ahead of the
/// channel, and nothing missing between it and the first retained publication.
pub fn recovers(since: &Position, current: &Position, first_retained: Option<u64>) -> bool {
    if since.epoch != current.epoch || since.offset > current.offset {
        return false;
    }
    if since.offset == current.offset {
        return true;
    }
    first_retained.is_some_and(|first| first <= since.offset + 1)
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_frames_and_answers() {
        let alice = PresenceMember {
            id: "s1".into(),
            user: Some("alice".into()),
        };
        let p = presence_event(PresenceChange::Join, "room/1", &alice);
        assert_eq!(p.channel(), "#presence/room/1");
        assert_eq!(
            p.data().unwrap().get(),
            r##"{"event":"#presenceJoin","data":{"channel":"room/1","client":{"id":"s1","user":"alice"}}}"##
        );
        let info = PresenceInfo {
            count: 2,
            clients: vec![
                alice,
                PresenceMember {
                    id: "s2".into(),
                    user: None,
                },
            ],
        };
        assert_eq!(
            info.to_json(),
            r#"{"count":2,"clients":[{"id":"s1","user":"alice"},{"id":"s2","user":null}]}"#
        );
    }

    #[test]
    fn presence_parts_rebuild_the_event() {
        let m = PresenceMember {
            id: "s\"1".into(),
            user: Some("bob".into()),
        };
        let (head, tail) = presence_event_parts(PresenceChange::Leave, "room/1");
        let rebuilt = format!("{head}{}{tail}", member_json(&m));
        let event = presence_event(PresenceChange::Leave, "room/1", &m);
        assert_eq!(rebuilt.as_bytes(), &event.frame()[..]);
    }

    #[test]
    fn recovery_rules() {
        let cur = Position::new(10, "e");
        assert!(recovers(&Position::new(10, "e"), &cur, None));
        assert!(recovers(&Position::new(5, "e"), &cur, Some(6)));
        assert!(recovers(&Position::new(5, "e"), &cur, Some(1)));
        assert!(!recovers(&Position::new(5, "e"), &cur, Some(7)));
        assert!(!recovers(&Position::new(5, "e"), &cur, None));
        assert!(!recovers(&Position::new(5, "x"), &cur, Some(1)));
        assert!(!recovers(&Position::new(11, "e"), &cur, Some(1)));
        assert_eq!(new_epoch().len(), 12);
    }
}
