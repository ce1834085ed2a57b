//! Codec choice: which wire encoding a connection uses (docs/protocol.md §2).

use std::fmt;
use std::str::FromStr;

/// The encoding of one connection's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// `sc-formatter`: JSON in text frames (the SocketCluster default).
    #[default]
    Json,
    /// `sc-codec-min-bin`: MessagePack with compressed packet keys, in binary frames
    /// ([`crate::min_bin`]).
    MinBin,
}

/// A server's codec setting: one codec for every connection, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum CodecOption {
    /// Every connection speaks JSON (SocketCluster's default).
    #[default]
    #[serde(rename = "json")]
    Json,
    /// Every connection speaks min-bin.
    #[serde(rename = "min-bin")]
    MinBin,
    /// Each connection's codec is taken from its `#handshake` frame: a text frame means JSON, a
    /// binary MessagePack frame means min-bin. One endpoint serves both kinds of clients.
    #[serde(rename = "auto")]
    Auto,
}

impl CodecOption {
    /// The codec every connection starts with (`None` for `auto`: decided by the handshake).
    pub fn fixed(self) -> Option<Codec> {
        match self {
            CodecOption::Json => Some(Codec::Json),
            CodecOption::MinBin => Some(Codec::MinBin),
            CodecOption::Auto => None,
        }
    }
}

/// A codec name was not `json`, `min-bin` or `auto`.
#[derive(Debug, thiserror::Error)]
#[error("codec must be json, min-bin or auto, not {0:?}")]
pub struct InvalidCodec(String);

impl FromStr for CodecOption {
    type Err = InvalidCodec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(CodecOption::Json),
            "min-bin" | "minbin" | "sc-codec-min-bin" => Ok(CodecOption::MinBin),
            "auto" => Ok(CodecOption::Auto),
            other => Err(InvalidCodec(other.to_owned())),
        }
    }
}

impl FromStr for Codec {
    type Err = InvalidCodec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<CodecOption>() {
            Ok(CodecOption::Json) => Ok(Codec::Json),
            Ok(CodecOption::MinBin) => Ok(Codec::MinBin),
            _ => Err(InvalidCodec(s.to_owned())),
        }
    }
}

impl<'de> serde::Deserialize<'de> for CodecOption {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for CodecOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecOption::Json => "json",
            CodecOption::MinBin => "min-bin",
            CodecOption::Auto => "auto",
        })
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Json => "json",
            Codec::MinBin => "min-bin",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!(
            serde_json::from_str::<CodecOption>("\"min-bin\"").unwrap(),
            CodecOption::MinBin
        );
        assert_eq!("auto".parse::<CodecOption>().unwrap(), CodecOption::Auto);
        assert_eq!("json".parse::<Codec>().unwrap(), Codec::Json);
        assert!("auto".parse::<Codec>().is_err());
        assert!("xml".parse::<CodecOption>().is_err());
        assert_eq!(CodecOption::MinBin.to_string(), "min-bin");
    }
}
