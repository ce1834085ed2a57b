//! [`Json`]: one JSON value kept as the exact text it arrived as.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// A syntactically valid JSON value, stored as its original text in shared [`Bytes`].
///
/// Cloning is a reference-count increment. The text is never re-encoded: what a client sent is what
/// other clients receive. Parse it into a typed value only when you need one, with [`Json::parse`].
///
/// ```
/// use sc_protocol::Json;
///
/// let value = Json::from_text(r#"{"a" : 1.50}"#).unwrap();
/// assert_eq!(value.get(), r#"{"a" : 1.50}"#); // byte-for-byte, whitespace and all
/// let parsed: serde_json::Value = value.parse().unwrap();
/// assert_eq!(parsed["a"], 1.5);
/// assert_eq!(Json::encode(&42).unwrap().get(), "42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(Bytes);

/// A value could not be read or written as JSON.
#[derive(Debug, thiserror::Error)]
#[error("invalid JSON: {0}")]
pub struct JsonError(#[from] serde_json::Error);

impl Json {
    /// The JSON `null`.
    pub const NULL: Json = Json(Bytes::from_static(b"null"));

    /// Validates `text` as one JSON value and keeps it verbatim.
    pub fn from_text(text: &str) -> Result<Self, JsonError> {
        let _: &RawValue = serde_json::from_str(text)?;
        Ok(Json(Bytes::copy_from_slice(text.as_bytes())))
    }

    /// Validates shared bytes as one JSON value and keeps them without copying.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, JsonError> {
        let _: &RawValue = serde_json::from_slice(&bytes)?;
        Ok(Json(bytes))
    }

    /// Serialises any value (as `JSON.stringify` would: compact, no whitespace).
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, JsonError> {
        Ok(Json(Bytes::from(serde_json::to_vec(value)?)))
    }

    /// A JSON string holding `text`, escaped as JSON requires.
    pub fn string(text: &str) -> Self {
        let mut out = Vec::with_capacity(text.len() + 2);
        crate::encode::write_json_string(&mut out, text);
        Json(Bytes::from(out))
    }

    /// Wraps bytes already known to be exactly one valid JSON value (e.g. a slice of a frame that
    /// was validated as a whole).
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        Json(bytes)
    }

    /// Deserialises the value into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, JsonError> {
        Ok(serde_json::from_slice(&self.0)?)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        // Invariant: constructed only from `&str` or from bytes that serde_json validated as JSON
        // (which implies UTF-8), so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("null")
    }

    /// The JSON text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared buffer holding the JSON text.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// Whether the value is the literal `null`.
    pub fn is_null(&self) -> bool {
        &self.0[..] == b"null"
    }

    /// The value as a string, if it is a JSON string.
    pub fn as_string(&self) -> Option<String> {
        if self.0.first() == Some(&b'"') {
            self.parse().ok()
        } else {
            None
        }
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Json({})", self.get())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&RawValue>(self.get()) {
            Ok(raw) => raw.serialize(serializer),
            Err(_) => serializer.serialize_unit(),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(Json(Bytes::from(raw.get().to_owned())))
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Self {
        Json(Bytes::from(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_text_verbatim_and_rejects_invalid() {
        assert_eq!(Json::from_text("[1, 2 ,3]").unwrap().get(), "[1, 2 ,3]");
        assert!(Json::from_text("{\"a\":").is_err());
        assert!(Json::from_text("").is_err());
    }

    #[test]
    fn string_escapes_like_json_stringify() {
        assert_eq!(Json::string("a\"b\\c\n\u{1}").get(), r#""a\"b\\c\n\u0001""#);
        assert_eq!(Json::string("a\"b").as_string().as_deref(), Some("a\"b"));
    }

    #[test]
    fn serialises_inline_without_reencoding() {
        #[derive(Serialize)]
        struct Wrapper {
            wrapped: Json,
        }
        let wrapped = Json::from_text(r#"{"x" : 1.50}"#).unwrap();
        let out = serde_json::to_string(&Wrapper { wrapped }).unwrap();
        assert_eq!(out, r#"{"wrapped":{"x" : 1.50}}"#);
    }
}
