//! Protocol versions and heartbeat dialects (docs/protocol.md §6, §16).

use std::fmt;
use std::str::FromStr;

/// Which protocol a server speaks: one version, or both with per-connection detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum ProtocolVersion {
    /// Protocol v1 (socketcluster-client 14.x): heartbeats `#1` / `#2`.
    #[serde(rename = "1")]
    V1,
    /// Protocol v2 (socketcluster-client 15+): empty-frame heartbeats.
    #[serde(rename = "2")]
    V2,
    /// Detect each connection's dialect from its answer to the first ping (a non-reference
    /// extension, docs/protocol.md §16): serves 14.x and 15+ clients on one endpoint.
    #[default]
    #[serde(rename = "auto")]
    Auto,
}

impl<'de> serde::Deserialize<'de> for ProtocolVersion {
    /// Accepts `1`, `2`, `"1"`, `"2"` and `"auto"` (config files and environment variables write
    /// versions either way).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The heartbeat strings a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatDialect {
    /// `#1` ping, `#2` pong.
    V1,
    /// Empty frame both ways.
    V2,
}

impl HeartbeatDialect {
    /// The ping frame's text.
    pub fn ping(self) -> &'static str {
        match self {
            HeartbeatDialect::V1 => "#1",
            HeartbeatDialect::V2 => "",
        }
    }

    /// The pong frame's text.
    pub fn pong(self) -> &'static str {
        match self {
            HeartbeatDialect::V1 => "#2",
            HeartbeatDialect::V2 => "",
        }
    }
}

/// A protocol version string was not `1`, `2` or `auto`.
#[derive(Debug, thiserror::Error)]
#[error("protocolVersion must be 1, 2 or auto, not {0:?}")]
pub struct InvalidProtocolVersion(String);

impl FromStr for ProtocolVersion {
    type Err = InvalidProtocolVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1" => Ok(ProtocolVersion::V1),
            "2" => Ok(ProtocolVersion::V2),
            "auto" => Ok(ProtocolVersion::Auto),
            other => Err(InvalidProtocolVersion(other.to_owned())),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V1 => "1",
            ProtocolVersion::V2 => "2",
            ProtocolVersion::Auto => "auto",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_strings() {
        for (text, want) in [
            ("1", ProtocolVersion::V1),
            ("\"2\"", ProtocolVersion::V2),
            ("\"auto\"", ProtocolVersion::Auto),
        ] {
            assert_eq!(serde_json::from_str::<ProtocolVersion>(text).unwrap(), want);
        }
        assert!(serde_json::from_str::<ProtocolVersion>("3").is_err());
        assert_eq!(
            serde_json::to_string(&ProtocolVersion::V1).unwrap(),
            "\"1\""
        );
    }
}
