//! Which channels keep history and presence (the `history` and `presence` options), and the
//! `recover` / `history` subscribe options (EXTENSIONS.md E1, E3, E4, E7).

use std::time::Duration;

use sc_broker::{HistoryPolicy, HistoryRead, Position};
use sc_protocol::Json;

use crate::options::ServerOptions;

/// Largest offset a JavaScript client reads exactly (2^53 − 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The `history` and `presence` options, compiled.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    history: Vec<(String, HistoryPolicy)>,
    presence: Vec<String>,
}

impl Streams {
    pub(crate) fn from_options(options: &ServerOptions) -> Streams {
        Streams {
            history: options
                .history
                .iter()
                .map(|h| {
                    let policy = HistoryPolicy {
                        size: h.size,
                        ttl: Duration::from_secs(h.ttl),
                    };
                    (h.pattern.clone(), policy)
                })
                .collect(),
            presence: options.presence.clone(),
        }
    }

    /// The history policy of `channel`: the first matching entry's, if any.
    pub(crate) fn history(&self, channel: &str) -> Option<HistoryPolicy> {
        if self.history.is_empty() {
            return None;
        }
        self.history
            .iter()
            .find(|(pattern, _)| glob_match(pattern, channel))
            .map(|(_, policy)| *policy)
    }

    /// Whether `channel` keeps presence.
    pub(crate) fn presence(&self, channel: &str) -> bool {
        !self.presence.is_empty() && self.presence.iter().any(|p| glob_match(p, channel))
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (also none) and
/// every other character matches itself.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// What a subscribe on a history channel asks for, read from its `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Catchup {
    /// `recover`: everything after this position.
    Recover(Position),
    /// `history`: the last `limit` publications (clamped to the channel's size).
    Last(usize),
    /// Neither: only the current position.
    Nothing,
}

impl Catchup {
    pub(crate) fn read(&self, policy: &HistoryPolicy) -> HistoryRead {
        match self {
            Catchup::Recover(position) => HistoryRead::Since(position.clone()),
            Catchup::Last(limit) => HistoryRead::Last((*limit).min(policy.size)),
            Catchup::Nothing => HistoryRead::Last(0),
        }
    }

    pub(crate) fn is_recover(&self) -> bool {
        matches!(self, Catchup::Recover(_))
    }
}

/// Reads `recover` and `history` from a subscribe's `data` (EXTENSIONS.md E7 "Shapes"). `Err`
/// names the malformed field. Data that is not an object carries neither.
pub(crate) fn parse_catchup(data: Option<&Json>) -> Result<Catchup, &'static str> {
    let Some(data) = data else {
        return Ok(Catchup::Nothing);
    };
    if !data.get().trim_start().starts_with('{') {
        return Ok(Catchup::Nothing);
    }
    let Ok(serde_json::Value::Object(mut fields)) = data.parse::<serde_json::Value>() else {
        return Ok(Catchup::Nothing);
    };
    let recover = fields
        .remove("recover")
        .map(|v| parse_recover(&v).ok_or("recover"));
    let history = fields
        .remove("history")
        .map(|v| parse_history(&v).ok_or("history"));
    match (recover, history) {
        (Some(Err(field)), _) | (_, Some(Err(field))) => Err(field),
        (Some(Ok(position)), _) => Ok(Catchup::Recover(position)),
        (None, Some(Ok(limit))) => Ok(Catchup::Last(limit)),
        (None, None) => Ok(Catchup::Nothing),
    }
}

fn parse_recover(value: &serde_json::Value) -> Option<Position> {
    let object = value.as_object()?;
    if object.len() != 2 {
        return None;
    }
    let offset = object
        .get("offset")?
        .as_u64()
        .filter(|o| *o <= MAX_SAFE_INTEGER)?;
    let epoch = object.get("epoch")?.as_str().filter(|e| !e.is_empty())?;
    Some(Position::new(offset, epoch))
}

fn parse_history(value: &serde_json::Value) -> Option<usize> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    let limit = object.get("limit")?.as_u64()?;
    Some(usize::try_from(limit).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("room/*", "room/1"));
        assert!(glob_match("room/*", "room/"));
        assert!(!glob_match("room/*", "room"));
        assert!(glob_match("chat/*/messages", "chat/a/b/messages"));
        assert!(!glob_match("chat/*/messages", "chat/a/messages/x"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn catchup_shapes() {
        let j = |t: &str| Json::from_text(t).unwrap();
        assert_eq!(parse_catchup(None), Ok(Catchup::Nothing));
        assert_eq!(parse_catchup(Some(&j(r#""x""#))), Ok(Catchup::Nothing));
        assert_eq!(
            parse_catchup(Some(&j(
                r#"{"recover":{"offset":4,"epoch":"e"},"history":{"limit":2}}"#
            ))),
            Ok(Catchup::Recover(Position::new(4, "e")))
        );
        assert_eq!(
            parse_catchup(Some(&j(r#"{"history":{"limit":2},"other":1}"#))),
            Ok(Catchup::Last(2))
        );
        for bad in [
            r#"{"recover":{"offset":-1,"epoch":"e"}}"#,
            r#"{"recover":{"offset":1.5,"epoch":"e"}}"#,
            r#"{"recover":{"offset":1,"epoch":""}}"#,
            r#"{"recover":{"offset":9007199254740992,"epoch":"e"}}"#,
            r#"{"recover":{"offset":1}}"#,
            r#"{"recover":null}"#,
        ] {
            assert_eq!(parse_catchup(Some(&j(bad))), Err("recover"), "{bad}");
        }
        for bad in [
            r#"{"history":{}}"#,
            r#"{"history":{"limit":"3"}}"#,
            r#"{"history":5}"#,
            r#"{"recover":{"offset":1,"epoch":"e"},"history":{"limit":-1}}"#,
        ] {
            assert_eq!(parse_catchup(Some(&j(bad))), Err("history"), "{bad}");
        }
    }
}
