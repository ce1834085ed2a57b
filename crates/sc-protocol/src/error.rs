//! Errors as they travel on the wire (`sc-errors` dehydration, docs/protocol.md §9).

use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::encode::write_json_string;
use crate::json::Json;

/// Names of the `sc-errors` classes that appear on the wire or in local APIs.
pub mod names {
    /// Token expired (`expiry` field).
    pub const AUTH_TOKEN_EXPIRED: &str = "AuthTokenExpiredError";
    /// Malformed, badly signed or missing token.
    pub const AUTH_TOKEN_INVALID: &str = "AuthTokenInvalidError";
    /// `nbf` in the future (`date` field).
    pub const AUTH_TOKEN_NOT_BEFORE: &str = "AuthTokenNotBeforeError";
    /// Any other token problem.
    pub const AUTH_TOKEN: &str = "AuthTokenError";
    /// Token delivery failure.
    pub const AUTH: &str = "AuthError";
    /// Middleware blocked without an error (`type` field).
    pub const SILENT_MIDDLEWARE_BLOCKED: &str = "SilentMiddlewareBlockedError";
    /// An action that is not allowed now or with these arguments.
    pub const INVALID_ACTION: &str = "InvalidActionError";
    /// Wrong API arguments.
    pub const INVALID_ARGUMENTS: &str = "InvalidArgumentsError";
    /// Bad configuration.
    pub const INVALID_OPTIONS: &str = "InvalidOptionsError";
    /// Undecodable inbound message.
    pub const INVALID_MESSAGE: &str = "InvalidMessageError";
    /// A close with a code other than 1000/1001.
    pub const SOCKET_PROTOCOL: &str = "SocketProtocolError";
    /// Server-side protocol error.
    pub const SERVER_PROTOCOL: &str = "ServerProtocolError";
    /// A request was not answered in time.
    pub const TIMEOUT: &str = "TimeoutError";
    /// A pending request was aborted by a disconnect (`type` field).
    pub const BAD_CONNECTION: &str = "BadConnectionError";
    /// Subscribe, unsubscribe or publish failed at the broker.
    pub const BROKER: &str = "BrokerError";
    /// The handshake was rejected.
    pub const HANDSHAKE_REJECT: &str = "HandshakeRejectError";
}

/// An error as a SocketCluster peer sees it: `{"message":…,"name":…,<own fields>}`, or a bare
/// JSON value (the reference lets handlers fail with a plain string).
///
/// ```
/// use sc_protocol::ScError;
///
/// let err = ScError::new("CustomError", "Custom failure").with("extra", 42);
/// assert_eq!(err.to_json().get(), r#"{"message":"Custom failure","name":"CustomError","extra":42}"#);
/// assert_eq!(ScError::message_only("readonly channel").to_json().get(), r#"{"message":"readonly channel"}"#);
/// assert_eq!(ScError::from_json(&err.to_json()), err);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ScError(Repr);

#[derive(Clone, Debug, PartialEq)]
enum Repr {
    Object {
        message: String,
        name: Option<String>,
        fields: Vec<(String, Json)>,
    },
    Value(Json),
}

impl ScError {
    /// An error with a `name` and a `message`, like the `sc-errors` classes.
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> ScError {
        ScError(Repr::Object {
            message: message.into(),
            name: Some(name.into()),
            fields: Vec::new(),
        })
    }

    /// An error with only a `message` (a plain JavaScript `Error` has no own `name`).
    pub fn message_only(message: impl Into<String>) -> ScError {
        ScError(Repr::Object {
            message: message.into(),
            name: None,
            fields: Vec::new(),
        })
    }

    /// A bare value as the error, e.g. a string: `{"rid":4,"error":"plain string error"}`.
    pub fn plain(value: Json) -> ScError {
        ScError(Repr::Value(value))
    }

    /// Adds (or replaces) an own field, e.g. `statusCode`, `isBadToken`, `type`.
    /// Values that cannot be serialised are stored as `null`.
    pub fn with(mut self, key: &str, value: impl Serialize) -> ScError {
        let value = Json::encode(&value).unwrap_or(Json::NULL);
        match &mut self.0 {
            Repr::Object { fields, .. } => match fields.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => fields.push((key.to_owned(), value)),
            },
            Repr::Value(_) => {}
        }
        self
    }

    /// Removes an own field (other than `name` and `message`), if present.
    ///
    /// ```
    /// # use sc_protocol::ScError;
    /// let e = ScError::new("BannedError", "banned user").with("isBadToken", true);
    /// assert_eq!(e.without("isBadToken").to_json().get(), r#"{"message":"banned user","name":"BannedError"}"#);
    /// ```
    pub fn without(mut self, key: &str) -> ScError {
        if let Repr::Object { fields, .. } = &mut self.0 {
            fields.retain(|(k, _)| k != key);
        }
        self
    }

    /// The error's `name`, if it has one.
    pub fn name(&self) -> Option<&str> {
        match &self.0 {
            Repr::Object { name, .. } => name.as_deref(),
            Repr::Value(_) => None,
        }
    }

    /// The error's `message` (for a bare value: the string, or its JSON text).
    pub fn message(&self) -> String {
        match &self.0 {
            Repr::Object { message, .. } => message.clone(),
            Repr::Value(v) => v.as_string().unwrap_or_else(|| v.get().to_owned()),
        }
    }

    /// An own field other than `name` and `message`.
    pub fn field(&self, key: &str) -> Option<&Json> {
        match &self.0 {
            Repr::Object { fields, .. } => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Repr::Value(_) => None,
        }
    }

    /// Dehydrates the error into its wire form.
    pub fn to_json(&self) -> Json {
        match &self.0 {
            Repr::Value(v) => v.clone(),
            Repr::Object {
                message,
                name,
                fields,
            } => {
                let mut out = BytesMut::with_capacity(64 + message.len());
                out.put_slice(b"{\"message\":");
                write_json_string(&mut out, message);
                if let Some(name) = name {
                    out.put_slice(b",\"name\":");
                    write_json_string(&mut out, name);
                }
                for (key, value) in fields {
                    out.put_u8(b',');
                    write_json_string(&mut out, key);
                    out.put_u8(b':');
                    out.put_slice(value.as_bytes());
                }
                out.put_u8(b'}');
                Json::from_validated(out.freeze())
            }
        }
    }

    /// Hydrates an error received from a peer (non-objects stay bare values).
    pub fn from_json(value: &Json) -> ScError {
        let Ok(serde_json::Value::Object(map)) = value.parse::<serde_json::Value>() else {
            return ScError::plain(value.clone());
        };
        let mut message = String::from("Invalid error message format");
        let mut name = None;
        let mut fields = Vec::new();
        for (key, v) in map {
            match (key.as_str(), v) {
                ("message", serde_json::Value::String(m)) => message = m,
                ("message", _) => {}
                ("name", serde_json::Value::String(n)) => name = Some(n),
                (_, v) => fields.push((key, Json::from(v))),
            }
        }
        ScError(Repr::Object {
            message,
            name,
            fields,
        })
    }
}

impl fmt::Display for ScError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}: {}", self.message()),
            None => f.write_str(&self.message()),
        }
    }
}

impl std::error::Error for ScError {}

impl From<&str> for ScError {
    /// A plain error with only a message.
    fn from(message: &str) -> ScError {
        ScError::message_only(message)
    }
}

impl From<String> for ScError {
    /// A plain error with only a message.
    fn from(message: String) -> ScError {
        ScError::message_only(message)
    }
}

impl From<crate::json::JsonError> for ScError {
    fn from(error: crate::json::JsonError) -> ScError {
        ScError::new(names::INVALID_MESSAGE, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::names::*;

    #[test]
    fn reference_shapes() {
        let e = ScError::new(
            SILENT_MIDDLEWARE_BLOCKED,
            "The invoke AGAction was blocked by inbound middleware",
        )
        .with("type", "inbound");
        assert_eq!(
            e.to_json().get(),
            r#"{"message":"The invoke AGAction was blocked by inbound middleware","name":"SilentMiddlewareBlockedError","type":"inbound"}"#
        );
        let plain = ScError::plain(Json::string("plain string error"));
        assert_eq!(plain.to_json().get(), r#""plain string error""#);
        assert_eq!(plain.message(), "plain string error");
        let custom = ScError::message_only("SC handshake rejected with custom code")
            .with("statusCode", 4501);
        assert_eq!(
            custom.to_json().get(),
            r#"{"message":"SC handshake rejected with custom code","statusCode":4501}"#
        );
    }

    #[test]
    fn hydrate_keeps_fields() {
        let e = ScError::from_json(
            &Json::from_text(r#"{"name":"ClientError","message":"I refuse","x":[1]}"#).unwrap(),
        );
        assert_eq!(e.name(), Some("ClientError"));
        assert_eq!(e.message(), "I refuse");
        assert_eq!(e.field("x").unwrap().get(), "[1]");
    }
}
