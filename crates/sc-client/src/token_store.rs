//! [`TokenStore`]: where the client keeps its signed auth token (docs/protocol.md §15.3).
//!
//! The client loads the token before every handshake, saves it on `#setAuthToken` and after
//! [`Client::authenticate`](crate::Client::authenticate), and removes it on
//! `#removeAuthToken` and [`Client::deauthenticate`](crate::Client::deauthenticate). It never
//! verifies the token: it is opaque to the client, apart from [`decode_payload`] for display.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use parking_lot::Mutex;

/// A token store failed (e.g. a file could not be written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenStoreError {
    message: String,
}

impl TokenStoreError {
    /// An error with a message.
    pub fn new(message: impl fmt::Display) -> TokenStoreError {
        TokenStoreError {
            message: message.to_string(),
        }
    }
}

/// Storage for one signed auth token (the reference's `authEngine`: `localStorage` in a
/// browser, a private map in Node).
///
/// Calls come from the client's background task and should return quickly (no network round
/// trips); a failure is reported as a [`ClientEvent::Error`](crate::ClientEvent::Error) and the
/// connection carries on, as in the reference.
pub trait TokenStore: Send + Sync + 'static {
    /// The stored token, if any.
    fn load(&self) -> Result<Option<String>, TokenStoreError>;
    /// Stores `token`, replacing any previous one.
    fn save(&self, token: &str) -> Result<(), TokenStoreError>;
    /// Removes the token, returning what was stored.
    fn remove(&self) -> Result<Option<String>, TokenStoreError>;
}

/// The default [`TokenStore`]: the token lives in memory, shared by clones of the store (so a
/// test or an application can look at it, or hand the same store to several clients).
///
/// ```
/// use sc_client::{MemoryTokenStore, TokenStore};
///
/// let store = MemoryTokenStore::with_token("a.b.c");
/// assert_eq!(store.load().unwrap().as_deref(), Some("a.b.c"));
/// assert_eq!(store.remove().unwrap().as_deref(), Some("a.b.c"));
/// assert_eq!(store.token(), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryTokenStore {
    token: Arc<Mutex<Option<String>>>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> MemoryTokenStore {
        MemoryTokenStore::default()
    }

    /// A store that already holds `token` (replayed at the first handshake).
    pub fn with_token(token: impl Into<String>) -> MemoryTokenStore {
        MemoryTokenStore {
            token: Arc::new(Mutex::new(Some(token.into()))),
        }
    }

    /// The token currently stored.
    pub fn token(&self) -> Option<String> {
        self.token.lock().clone()
    }
}

impl TokenStore for MemoryTokenStore {
    fn load(&self) -> Result<Option<String>, TokenStoreError> {
        Ok(self.token())
    }

    fn save(&self, token: &str) -> Result<(), TokenStoreError> {
        *self.token.lock() = Some(token.to_owned());
        Ok(())
    }

    fn remove(&self) -> Result<Option<String>, TokenStoreError> {
        Ok(self.token.lock().take())
    }
}

/// Decodes the payload (middle segment) of a JWT for local use, as the reference client does:
/// base64 → UTF-8 → JSON, or the decoded text as a JSON string when it is not JSON. `None` when
/// there is no middle segment or it is not base64. Nothing is verified.
///
/// ```
/// let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VybmFtZSI6ImFsaWNlIn0.sig";
/// let payload = sc_client::token_store::decode_payload(token).unwrap();
/// assert_eq!(payload["username"], "alice");
/// ```
pub fn decode_payload(signed_token: &str) -> Option<serde_json::Value> {
    const INDIFFERENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);

    let segment = signed_token.split('.').nth(1)?;
    let bytes = URL
        .decode(segment)
        .or_else(|_| STANDARD.decode(segment))
        .ok()?;
    let text = String::from_utf8_lossy(&bytes);
    Some(
        serde_json::from_str(&text)
            .unwrap_or_else(|_| serde_json::Value::String(text.into_owned())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_reference_token() {
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VybmFtZSI6ImFsaWNlIiwiaWF0IjoxNzk1NjI1MDY3LCJleHAiOjE3OTU3MTE0Njd9.kfEA24HAIPDRT1rylNAJf9htoEJf_GpqQupYuiRx9ME";
        let payload = decode_payload(token).unwrap();
        assert_eq!(payload["username"], "alice");
        assert_eq!(payload["exp"], 1795711467);
    }

    #[test]
    fn odd_tokens() {
        assert_eq!(decode_payload("no-dots"), None);
        assert_eq!(decode_payload("a.!!!.c"), None);
        // "aGVsbG8" = "hello": not JSON, kept as a string.
        assert_eq!(
            decode_payload("x.aGVsbG8.y"),
            Some(serde_json::Value::String("hello".into()))
        );
    }

    #[test]
    fn store_is_shared_by_clones() {
        let a = MemoryTokenStore::new();
        let b = a.clone();
        a.save("t").unwrap();
        assert_eq!(b.token().as_deref(), Some("t"));
    }
}
