//! JWT authentication as SocketCluster does it (docs/protocol.md §8): signing with `authKey` (HMAC) or
//! a key pair, verification with jsonwebtoken's rules and error messages, expiry.
//!
//! Times that no clock can reach (an `exp` or `nbf` of 2^63 seconds and more) never panic: an
//! `exp` beyond [`SystemTime`]'s range never expires and an `nbf` beyond it is never active, as
//! with jsonwebtoken (Node and Rust), which compare the plain numbers. Error dates outside what
//! a JavaScript `Date` can show (after year 9999 here) are sent as `null`, as `JSON.stringify`
//! does for an invalid `Date`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use sc_protocol::error::names;
use sc_protocol::{Json, ScError};
use serde_json::{Map, Value};

use crate::options::{InvalidOptions, ServerOptions};

/// Tokens longer than this are refused without being parsed.
pub const MAX_TOKEN_LENGTH: usize = 64 * 1024;

/// Signs and verifies auth tokens for one server (every worker of a cluster shares the key).
pub struct AuthEngine {
    encoding: EncodingKey,
    decoding: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
    default_expiry: u64,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// `exp` is in the past (`AuthTokenExpiredError`, bad token).
    #[error("jwt expired")]
    Expired {
        /// The token's `exp`, in seconds since the epoch.
        expiry: u64,
    },
    /// `nbf` is in the future (`AuthTokenNotBeforeError`, not a bad token).
    #[error("jwt not active")]
    NotBefore {
        /// The token's `nbf`, in seconds since the epoch.
        date: u64,
    },
    /// Malformed, badly signed, wrong algorithm, … (`AuthTokenInvalidError`, bad token).
    #[error("{0}")]
    Invalid(String),
    /// Not a string (`AuthTokenError`, bad token).
    #[error("Invalid token format - Token must be a string")]
    NotAString,
}

impl TokenError {
    /// Whether the client should drop the token (`#removeAuthToken`): every failure except
    /// "not before".
    pub fn is_bad_token(&self) -> bool {
        !matches!(self, TokenError::NotBefore { .. })
    }

    /// The error as clients see it. `with_is_bad_token` adds the v15+ `isBadToken` field.
    pub fn to_sc_error(&self, with_is_bad_token: bool) -> ScError {
        let error = match self {
            TokenError::Expired { expiry } => {
                ScError::new(names::AUTH_TOKEN_EXPIRED, self.to_string())
                    .with("expiry", iso_date(*expiry))
            }
            TokenError::NotBefore { date } => {
                ScError::new(names::AUTH_TOKEN_NOT_BEFORE, self.to_string())
                    .with("date", iso_date(*date))
            }
            TokenError::Invalid(_) => ScError::new(names::AUTH_TOKEN_INVALID, self.to_string()),
            TokenError::NotAString => ScError::new(names::AUTH_TOKEN, self.to_string()),
        };
        if with_is_bad_token {
            error.with("isBadToken", self.is_bad_token())
        } else {
            error
        }
    }
}

/// A verified (or freshly signed) token.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthToken {
    /// The claims (payload), including `iat`/`exp` when present.
    pub claims: Map<String, Value>,
    /// The signed token string.
    pub signed: String,
}

impl AuthToken {
    /// The `exp` claim, in seconds since the epoch.
    pub fn expiry(&self) -> Option<u64> {
        self.claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| exp.max(0.0) as u64)
    }

    /// Whether the token has expired at `now` (SocketCluster: `exp * 1000 < Date.now()`). An
    /// `exp` too far ahead for [`SystemTime`] never expires.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expiry()
            .and_then(|exp| UNIX_EPOCH.checked_add(Duration::from_secs(exp)))
            .is_some_and(|expiry| now > expiry)
    }

    /// A claim as a string, e.g. `username`.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The claims as JSON.
    pub fn claims_json(&self) -> Json {
        Json::from(Value::Object(self.claims.clone()))
    }
}

/// Options of one `set_auth_token` call.
#[derive(Debug, Clone, Default)]
pub struct SignOptions {
    /// Seconds until expiry (default: `authDefaultExpiry`); ignored when the claims hold `exp`.
    pub expires_in: Option<u64>,
}

fn parse_algorithm(name: &str) -> Result<Algorithm, InvalidOptions> {
    name.parse()
        .map_err(|_| InvalidOptions(format!("unknown auth algorithm {name:?}")))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Last second that RFC 3339 (four-digit years) can show: 9999-12-31T23:59:59Z.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// `2026-11-25T16:44:14.000Z`, as `JSON.stringify(new Date(…))`; `None` (sent as `null`) for a
/// date after year 9999.
fn iso_date(seconds: u64) -> Option<String> {
    if seconds > LAST_RFC3339_SECOND {
        return None;
    }
    let time = UNIX_EPOCH.checked_add(Duration::from_secs(seconds))?;
    Some(humantime::format_rfc3339_millis(time).to_string())
}

impl AuthEngine {
    /// Builds the engine from `authKey` (or a random key), or `authPrivateKey` + `authPublicKey`.
    pub fn from_options(options: &ServerOptions) -> Result<AuthEngine, InvalidOptions> {
        let (encoding, decoding, default_algorithm, family): (_, _, _, &[Algorithm]) =
            match (&options.auth_private_key, &options.auth_public_key) {
                (Some(private), Some(public)) => {
                    let algorithm = options.auth_algorithm.as_deref().ok_or_else(|| {
                        InvalidOptions(
                        "authAlgorithm must be set with authPrivateKey/authPublicKey (e.g. RS256)"
                            .into(),
                    )
                    })?;
                    let algorithm = parse_algorithm(algorithm)?;
                    let bad_key = |e: jsonwebtoken::errors::Error| {
                        InvalidOptions(format!("invalid auth key pair: {e}"))
                    };
                    let (encoding, decoding) = match algorithm {
                        Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512 => (
                            EncodingKey::from_rsa_pem(private.as_bytes()).map_err(bad_key)?,
                            DecodingKey::from_rsa_pem(public.as_bytes()).map_err(bad_key)?,
                        ),
                        Algorithm::ES256 | Algorithm::ES384 => (
                            EncodingKey::from_ec_pem(private.as_bytes()).map_err(bad_key)?,
                            DecodingKey::from_ec_pem(public.as_bytes()).map_err(bad_key)?,
                        ),
                        Algorithm::EdDSA => (
                            EncodingKey::from_ed_pem(private.as_bytes()).map_err(bad_key)?,
                            DecodingKey::from_ed_pem(public.as_bytes()).map_err(bad_key)?,
                        ),
                        other => {
                            return Err(InvalidOptions(format!(
                                "{other:?} needs authKey, not a key pair"
                            )));
                        }
                    };
                    (encoding, decoding, algorithm, &[][..])
                }
                (None, None) => {
                    let key = options.auth_key.clone().unwrap_or_else(random_key);
                    (
                        EncodingKey::from_secret(key.as_bytes()),
                        DecodingKey::from_secret(key.as_bytes()),
                        Algorithm::HS256,
                        &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512][..],
                    )
                }
                _ => {
                    return Err(InvalidOptions(
                        "authPrivateKey and authPublicKey must be given together".into(),
                    ));
                }
            };
        let algorithm = match &options.auth_algorithm {
            Some(name) => parse_algorithm(name)?,
            None => default_algorithm,
        };
        let verify: Vec<Algorithm> = match &options.auth_verify_algorithms {
            Some(names) => names
                .iter()
                .map(|n| parse_algorithm(n))
                .collect::<Result<_, _>>()?,
            None if options.auth_algorithm.is_some() || family.is_empty() => vec![algorithm],
            None => family.to_vec(),
        };
        let mut validation = Validation::new(algorithm);
        validation.algorithms = verify;
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Ok(AuthEngine {
            encoding,
            decoding,
            algorithm,
            validation,
            default_expiry: options.auth_default_expiry,
        })
    }

    /// Signs `claims` (an object), adding `iat` and, unless present, `exp`.
    pub fn sign(&self, claims: &Value, options: &SignOptions) -> Result<AuthToken, ScError> {
        let Value::Object(mut claims) = claims.clone() else {
            return Err(ScError::new(
                names::INVALID_ARGUMENTS,
                "The auth token must be a JSON object",
            ));
        };
        let now = now_secs();
        claims.remove("iat");
        claims.insert("iat".into(), now.into());
        if !claims.contains_key("exp") {
            let expires_in = options.expires_in.unwrap_or(self.default_expiry);
            claims.insert("exp".into(), now.saturating_add(expires_in).into());
        }
        let failed = |e: &dyn std::fmt::Display| {
            ScError::new(names::AUTH, format!("Failed to sign auth token: {e}"))
        };
        // The header as jsonwebtoken (Node) writes it, `{"alg":"HS256","typ":"JWT"}`: the Rust
        // crate's `Header` would put `typ` first, and tokens should be byte-for-byte alike.
        let algorithm = serde_json::to_string(&self.algorithm).map_err(|e| failed(&e))?;
        let header = format!(r#"{{"alg":{algorithm},"typ":"JWT"}}"#);
        let payload = serde_json::to_vec(&claims).map_err(|e| failed(&e))?;
        let message = format!("{}.{}", base64url(header.as_bytes()), base64url(&payload));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.algorithm)
                .map_err(|e| failed(&e))?;
        let signed = format!("{message}.{signature}");
        Ok(AuthToken { claims, signed })
    }

    /// Verifies a token as received (`#handshake` `authToken`, `#authenticate` data).
    pub fn verify(&self, token: &Json) -> Result<AuthToken, TokenError> {
        let Some(signed) = token.as_string() else {
            return Err(if token.is_null() {
                TokenError::Invalid("jwt must be provided".into())
            } else {
                TokenError::NotAString
            });
        };
        self.verify_str(&signed)
    }

    /// Verifies a signed token string.
    pub fn verify_str(&self, signed: &str) -> Result<AuthToken, TokenError> {
        if signed.is_empty() {
            return Err(TokenError::Invalid("jwt must be provided".into()));
        }
        if signed.len() > MAX_TOKEN_LENGTH {
            return Err(TokenError::Invalid("jwt malformed".into()));
        }
        let parts: Vec<&str> = signed.split('.').collect();
        let [header, _, signature] = parts[..] else {
            return Err(TokenError::Invalid("jwt malformed".into()));
        };
        let algorithm = header_algorithm(header);
        // jsonwebtoken checks for a signature (any algorithm) once the token decodes.
        if algorithm.is_some() && signature.trim().is_empty() {
            return Err(TokenError::Invalid("jwt signature is required".into()));
        }
        if algorithm.as_deref() == Some("none") {
            // Never accepted; jsonwebtoken's wording for a signed `none` token.
            return Err(TokenError::Invalid("invalid algorithm".into()));
        }
        match jsonwebtoken::decode::<Map<String, Value>>(signed, &self.decoding, &self.validation) {
            // jsonwebtoken (Node) counts a token as expired from its `exp` second on
            // (`now >= exp`); the Rust crate only after it.
            Ok(data) => match data.claims.get("exp").and_then(Value::as_u64) {
                Some(exp) if now_secs() >= exp => Err(TokenError::Expired { expiry: exp }),
                _ => Ok(AuthToken {
                    claims: data.claims,
                    signed: signed.to_owned(),
                }),
            },
            Err(error) => Err(self.map_error(signed, error.kind())),
        }
    }

    fn map_error(&self, signed: &str, kind: &ErrorKind) -> TokenError {
        let claim = |name: &str| {
            unverified_claims(signed).and_then(|c| c.get(name).and_then(Value::as_u64))
        };
        match kind {
            ErrorKind::ExpiredSignature => TokenError::Expired {
                expiry: claim("exp").unwrap_or(0),
            },
            ErrorKind::ImmatureSignature => TokenError::NotBefore {
                date: claim("nbf").unwrap_or(0),
            },
            ErrorKind::InvalidSignature => TokenError::Invalid("invalid signature".into()),
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::MissingAlgorithm => TokenError::Invalid("invalid algorithm".into()),
            ErrorKind::InvalidToken => TokenError::Invalid("jwt malformed".into()),
            _ => TokenError::Invalid("invalid token".into()),
        }
    }
}

/// The `alg` of a token's header, unverified.
fn header_algorithm(header: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    header.get("alg").and_then(Value::as_str).map(str::to_owned)
}

/// The payload of a token without checking anything (to report `exp`/`nbf` in errors).
fn unverified_claims(signed: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let payload = signed.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh HMAC signing key: 32 bytes from the operating system's random source, hex-encoded.
///
/// A server without `authKey` signs with one of these; the process cluster generates one per
/// run and hands it to every worker, so that a token signed by one worker verifies on all.
///
/// ```
/// let key = sc_server::auth::random_key();
/// assert_eq!(key.len(), 64);
/// assert_ne!(key, sc_server::auth::random_key());
/// ```
pub fn random_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl std::fmt::Debug for AuthEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEngine").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(key: &str) -> AuthEngine {
        AuthEngine::from_options(&ServerOptions {
            auth_key: Some(key.into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn verifies_a_token_signed_by_the_node_reference() {
        // TV-9 (socketcluster-server 14, authKey 'test-secret-key'); its exp is in 2026-11, so
        // compare against the error kind at any date: either valid or expired, never invalid.
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VybmFtZSI6ImFsaWNlIiwiaWF0IjoxNzk1NjI1MDY3LCJleHAiOjE3OTU3MTE0Njd9.kfEA24HAIPDRT1rylNAJf9htoEJf_GpqQupYuiRx9ME";
        match engine("test-secret-key").verify_str(token) {
            Ok(t) => assert_eq!(t.claim_str("username"), Some("alice")),
            Err(e) => assert_eq!(e, TokenError::Expired { expiry: 1795711467 }),
        }
        assert_eq!(
            engine("other-key").verify_str(token),
            Err(TokenError::Invalid("invalid signature".into()))
        );
    }

    #[test]
    fn sign_then_verify_round_trip() {
        let e = engine("k");
        let token = e
            .sign(
                &serde_json::json!({"username": "bob"}),
                &SignOptions::default(),
            )
            .unwrap();
        // Same header bytes as tokens from socketcluster-server (docs/protocol.md §8.3).
        assert!(
            token
                .signed
                .starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.")
        );
        let keys: Vec<&str> = token.claims.keys().map(String::as_str).collect();
        assert_eq!(keys, ["username", "iat", "exp"]);
        let verified = e.verify_str(&token.signed).unwrap();
        assert_eq!(verified.claim_str("username"), Some("bob"));
        assert_eq!(verified.expiry(), Some(now_secs() + 86_400));
    }

    #[test]
    fn reference_error_messages() {
        let e = engine("k");
        assert_eq!(
            e.verify_str("not-a-jwt"),
            Err(TokenError::Invalid("jwt malformed".into()))
        );
        assert_eq!(
            e.verify(&Json::NULL),
            Err(TokenError::Invalid("jwt must be provided".into()))
        );
        assert_eq!(
            e.verify(&Json::encode(&12345).unwrap()),
            Err(TokenError::NotAString)
        );
        let expired = e
            .sign(
                &serde_json::json!({"u": 1, "exp": 1000}),
                &SignOptions::default(),
            )
            .unwrap();
        let err = e.verify_str(&expired.signed).unwrap_err();
        assert_eq!(err, TokenError::Expired { expiry: 1000 });
        assert_eq!(
            err.to_sc_error(true).to_json().get(),
            r#"{"message":"jwt expired","name":"AuthTokenExpiredError","expiry":"1970-01-01T00:16:40.000Z","isBadToken":true}"#
        );
        let later = e
            .sign(
                &serde_json::json!({"nbf": now_secs() + 3600}),
                &SignOptions::default(),
            )
            .unwrap();
        assert!(matches!(
            e.verify_str(&later.signed),
            Err(TokenError::NotBefore { .. })
        ));
        assert!(!e.verify_str(&later.signed).unwrap_err().is_bad_token());
    }

    #[test]
    fn refuses_alg_none_and_huge_tokens() {
        let e = engine("k");
        // {"alg":"none","typ":"JWT"}.{"username":"mallory"}.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VybmFtZSI6Im1hbGxvcnkifQ.";
        assert!(matches!(e.verify_str(none), Err(TokenError::Invalid(_))));
        assert_eq!(
            e.verify_str(none),
            Err(TokenError::Invalid("jwt signature is required".into()))
        );
        // An HS256 token with its signature cut off: jsonwebtoken's message, whatever the alg.
        let signed = e
            .sign(&serde_json::json!({"u": 1}), &SignOptions::default())
            .unwrap()
            .signed;
        let unsigned = &signed[..=signed.rfind('.').unwrap()];
        let error = e.verify_str(unsigned).unwrap_err();
        assert_eq!(
            error,
            TokenError::Invalid("jwt signature is required".into())
        );
        assert_eq!(
            error.to_sc_error(true).to_json().get(),
            r#"{"message":"jwt signature is required","name":"AuthTokenInvalidError","isBadToken":true}"#
        );
        let huge = format!("a.{}.b", "x".repeat(MAX_TOKEN_LENGTH));
        assert_eq!(
            e.verify_str(&huge),
            Err(TokenError::Invalid("jwt malformed".into()))
        );
    }

    #[test]
    fn expiry_check() {
        let t = AuthToken {
            claims: serde_json::from_str(r#"{"exp":100}"#).unwrap(),
            signed: String::new(),
        };
        assert!(t.is_expired_at(UNIX_EPOCH + Duration::from_secs(101)));
        assert!(!t.is_expired_at(UNIX_EPOCH + Duration::from_secs(100)));
    }

    /// Issue 12, defect 5: times beyond `SystemTime` never panic.
    #[test]
    fn out_of_range_times_do_not_panic() {
        let e = engine("k");
        for exp in [1u64 << 63, u64::MAX, LAST_RFC3339_SECOND + 1] {
            let token = e
                .sign(&serde_json::json!({ "exp": exp }), &SignOptions::default())
                .unwrap();
            let verified = e
                .verify_str(&token.signed)
                .expect("a far-future exp is valid");
            assert_eq!(verified.expiry(), Some(exp));
            assert!(!verified.is_expired_at(SystemTime::now()), "never expires");
        }
        let not_before = e
            .sign(
                &serde_json::json!({ "nbf": u64::MAX }),
                &SignOptions::default(),
            )
            .unwrap();
        let error = e.verify_str(&not_before.signed).unwrap_err();
        assert_eq!(error, TokenError::NotBefore { date: u64::MAX });
        assert_eq!(
            error.to_sc_error(true).to_json().get(),
            r#"{"message":"jwt not active","name":"AuthTokenNotBeforeError","date":null,"isBadToken":false}"#
        );
        let expired = TokenError::Expired { expiry: 1 << 63 };
        assert!(
            expired
                .to_sc_error(false)
                .to_json()
                .get()
                .contains(r#""expiry":null"#)
        );
        assert_eq!(
            iso_date(LAST_RFC3339_SECOND).as_deref(),
            Some("9999-12-31T23:59:59.000Z")
        );
        let sign = AuthEngine::from_options(&ServerOptions {
            auth_key: Some("k".into()),
            auth_default_expiry: u64::MAX,
            ..Default::default()
        })
        .unwrap()
        .sign(&serde_json::json!({}), &SignOptions::default())
        .unwrap();
        assert_eq!(sign.expiry(), Some(u64::MAX));
    }
}

/// A change of a socket's authentication, for [`Server::on_auth_event`](crate::Server::on_auth_event).
#[derive(Debug, Clone, Copy)]
pub enum AuthEvent<'a> {
    /// The socket became authenticated (handshake token, `#authenticate`, or `set_auth_token`).
    Authenticated(&'a AuthToken),
    /// The socket stopped being authenticated (logout, expiry, bad token, `deauthenticate`).
    Deauthenticated,
    /// The client presented a token that was refused (SocketCluster's `badSocketAuthToken`).
    BadToken(&'a TokenError),
}
