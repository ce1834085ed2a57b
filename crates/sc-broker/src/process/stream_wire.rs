//! History and presence over the worker ↔ broker link: the JSON carried by
//! [`WorkerMessage::Stream`](super::WorkerMessage::Stream) and its replies.
//!
//! | `op` | fields | reply |
//! |---|---|---|
//! | `publish` | `channel`, `policy`, `frame` (the `#publish` frame, as JSON) | `{"offset","epoch"}` |
//! | `history` | `channel`, `policy`, `since` (`{"offset","epoch"}`) or `last` | `{"offset","epoch","recovered","publications":[frame,…]}` |
//! | `join` | `channel`, `member` | `null` |
//! | `leave` | `channel`, `member` (only `id` is used) | `null` |
//! | `presence` | `channel` | `{"count","clients":[…]}` |

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use sc_protocol::{Json, Publication};

use crate::BrokerError;
use crate::stream::{
    HistoryPage, HistoryPolicy, HistoryRead, Position, PresenceInfo, PresenceMember,
};

/// The operation of a [`StreamRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamOp {
    /// Publish to a channel with history.
    Publish,
    /// Read a channel's history.
    History,
    /// Join a presence channel.
    Join,
    /// Leave a presence channel.
    Leave,
    /// Who is in a presence channel.
    Presence,
}

/// A position on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePosition {
    /// The offset.
    pub offset: u64,
    /// The epoch.
    pub epoch: String,
}

impl From<&Position> for WirePosition {
    fn from(p: &Position) -> WirePosition {
        WirePosition {
            offset: p.offset,
            epoch: p.epoch.to_string(),
        }
    }
}

impl From<WirePosition> for Position {
    fn from(p: WirePosition) -> Position {
        Position::new(p.offset, &p.epoch)
    }
}

/// One history or presence request from a worker to the broker owning the channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRequest {
    /// What to do.
    pub op: StreamOp,
    /// The channel.
    pub channel: String,
    /// The channel's history policy (`publish`, `history`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<HistoryPolicy>,
    /// `history`: everything after this position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<WirePosition>,
    /// `history`: the last `n` publications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<usize>,
    /// `join`, `leave`: the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<PresenceMember>,
    /// `publish`: the `#publish` frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<Json>,
}

impl StreamRequest {
    fn new(op: StreamOp, channel: &str) -> StreamRequest {
        StreamRequest {
            op,
            channel: channel.to_owned(),
            policy: None,
            since: None,
            last: None,
            member: None,
            frame: None,
        }
    }

    /// A publish of `publication` (whose frame must be valid JSON, as every publication's is).
    pub fn publish(
        publication: &Publication,
        policy: HistoryPolicy,
    ) -> Result<StreamRequest, BrokerError> {
        let frame = Json::from_bytes(publication.frame().clone())
            .map_err(|e| BrokerError::Engine(format!("publication frame is not JSON: {e}")))?;
        Ok(StreamRequest {
            policy: Some(policy),
            frame: Some(frame),
            ..StreamRequest::new(StreamOp::Publish, publication.channel())
        })
    }

    /// A history read.
    pub fn history(channel: &str, policy: HistoryPolicy, read: &HistoryRead) -> StreamRequest {
        let (since, last) = match read {
            HistoryRead::Since(position) => (Some(position.into()), None),
            HistoryRead::Last(n) => (None, Some(*n)),
        };
        StreamRequest {
            policy: Some(policy),
            since,
            last,
            ..StreamRequest::new(StreamOp::History, channel)
        }
    }

    /// A presence join or leave, or query (`member` unused).
    pub fn presence(op: StreamOp, channel: &str, member: Option<PresenceMember>) -> StreamRequest {
        StreamRequest {
            member,
            ..StreamRequest::new(op, channel)
        }
    }

    /// As JSON for the link.
    pub fn to_json(&self) -> Json {
        Json::encode(self).unwrap_or(Json::NULL)
    }

    /// The history read this request asks for.
    pub fn read(&self) -> HistoryRead {
        match &self.since {
            Some(since) => HistoryRead::Since(since.clone().into()),
            None => HistoryRead::Last(self.last.unwrap_or(0)),
        }
    }

    /// The publication of a `publish` request.
    pub fn publication(&self) -> Result<Publication, String> {
        let frame = self.frame.as_ref().ok_or("publish without a frame")?;
        Publication::from_frame(frame.to_bytes()).map_err(|e| e.to_string())
    }
}

/// A position as the reply of a `publish`.
pub fn position_json(position: &Position) -> Json {
    Json::from_text(&position.to_json()).unwrap_or(Json::NULL)
}

/// Reads the reply of a `publish`.
pub fn parse_position(reply: &Json) -> Result<Position, BrokerError> {
    reply
        .parse::<WirePosition>()
        .map(Position::from)
        .map_err(|e| BrokerError::Engine(format!("bad publish reply: {e}")))
}

/// A history page as the reply of a `history` (frames embedded verbatim).
pub fn page_json(page: &HistoryPage) -> Json {
    let mut out = String::with_capacity(
        64 + page
            .publications
            .iter()
            .map(|p| p.frame().len() + 1)
            .sum::<usize>(),
    );
    let position = page.position.to_json();
    out.push_str(&position[..position.len() - 1]);
    out.push_str(if page.recovered {
        ",\"recovered\":true,\"publications\":["
    } else {
        ",\"recovered\":false,\"publications\":["
    });
    for (i, publication) in page.publications.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(std::str::from_utf8(publication.frame()).unwrap_or("null"));
    }
    out.push_str("]}");
    Json::from_text(&out).unwrap_or(Json::NULL)
}

/// Reads the reply of a `history`.
pub fn parse_page(reply: &Json) -> Result<HistoryPage, BrokerError> {
    #[derive(Deserialize)]
    struct Page<'a> {
        offset: u64,
        epoch: String,
        recovered: bool,
        #[serde(borrow)]
        publications: Vec<&'a RawValue>,
    }
    let bad = |e: String| BrokerError::Engine(format!("bad history reply: {e}"));
    let page: Page<'_> =
        serde_json::from_slice(reply.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let bytes = reply.to_bytes();
    let publications = page
        .publications
        .iter()
        .map(|raw| {
            Publication::from_frame(bytes.slice_ref(raw.get().as_bytes()))
                .map_err(|e| bad(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HistoryPage {
        position: Position::new(page.offset, &page.epoch),
        publications,
        recovered: page.recovered,
    })
}

/// Presence as the reply of a `presence`.
pub fn presence_json(info: &PresenceInfo) -> Json {
    Json::from_text(&info.to_json()).unwrap_or(Json::NULL)
}

/// Reads the reply of a `presence`.
pub fn parse_presence(reply: &Json) -> Result<PresenceInfo, BrokerError> {
    reply
        .parse::<PresenceInfo>()
        .map_err(|e| BrokerError::Engine(format!("bad presence reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_and_pages_round_trip() {
        let policy = HistoryPolicy {
            size: 3,
            ttl: Duration::from_secs(5),
        };
        let p = Publication::new("c", Some(&Json::from_text(r#"{"a":1}"#).unwrap()));
        let request = StreamRequest::publish(&p, policy).unwrap();
        let back: StreamRequest = request.to_json().parse().unwrap();
        assert_eq!(back, request);
        assert_eq!(back.publication().unwrap(), p);
        let read = HistoryRead::Since(Position::new(4, "e"));
        assert_eq!(StreamRequest::history("c", policy, &read).read(), read);

        let page = HistoryPage {
            position: Position::new(2, "e"),
            publications: vec![
                p.with_position(Position::new(1, "e")),
                p.with_position(Position::new(2, "e")),
            ],
            recovered: false,
        };
        assert_eq!(parse_page(&page_json(&page)).unwrap(), page);
        let position = Position::new(9, "x");
        assert_eq!(parse_position(&position_json(&position)).unwrap(), position);
    }
}
