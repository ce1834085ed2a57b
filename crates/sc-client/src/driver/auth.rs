//! Token store plumbing and auth state changes (docs/protocol.md §8.5–§8.7, §15.3).

use sc_protocol::error::names;
use sc_protocol::{Json, ResponsePacket, ScError};
use tokio::sync::oneshot;

use super::Driver;
use crate::error::{ClientError, ConnectionError, InvokeError};
use crate::events::{AuthState, AuthStatus, ClientEvent};
use crate::token_store::TokenStoreError;

impl Driver {
    /// The token to replay in the handshake (a store failure counts as no token).
    pub(super) fn load_token(&mut self) -> Option<String> {
        match self.shared.options.token_store.load() {
            Ok(token) => token,
            Err(error) => {
                self.store_failed(&error);
                None
            }
        }
    }

    fn store_failed(&self, error: &TokenStoreError) {
        self.emit(ClientEvent::Error(ConnectionError::TokenStore(
            error.to_string(),
        )));
    }

    /// Becomes authenticated with `token` (pending `waitForAuth` channels are subscribed).
    pub(super) async fn change_to_authenticated(&mut self, token: Option<String>) {
        self.signed_token = token.clone();
        let was = self.auth_state;
        self.auth_state = AuthState::Authenticated;
        self.shared.snapshot.send_modify(|s| {
            s.auth_state = AuthState::Authenticated;
            s.signed_token = token.clone();
        });
        if was != AuthState::Authenticated && !self.preparing_subscriptions {
            self.process_pending_subscriptions().await;
        }
        self.emit(ClientEvent::Authenticate {
            signed_token: token,
        });
    }

    /// Becomes unauthenticated (the stored token is left alone).
    pub(super) fn change_to_unauthenticated(&mut self) {
        if self.auth_state == AuthState::Unauthenticated {
            return;
        }
        let old = self.signed_token.take();
        self.auth_state = AuthState::Unauthenticated;
        self.shared.snapshot.send_modify(|s| {
            s.auth_state = AuthState::Unauthenticated;
            s.signed_token = None;
        });
        self.emit(ClientEvent::Deauthenticate {
            old_signed_token: old,
        });
    }

    /// `#setAuthToken` from the server: authenticated, and the token is stored.
    pub(super) async fn set_auth_token(&mut self, token: String) -> Result<(), TokenStoreError> {
        self.change_to_authenticated(Some(token.clone())).await;
        let result = self.shared.options.token_store.save(&token);
        if let Err(error) = &result {
            self.store_failed(error);
        }
        result
    }

    /// `#removeAuthToken` from the server: the token is deleted.
    pub(super) fn remove_auth_token(&mut self) {
        if let Err(error) = self.shared.options.token_store.remove() {
            self.store_failed(&error);
        }
        self.change_to_unauthenticated();
    }

    /// `deauthenticate()`: delete the token, tell the server if not closed, become
    /// unauthenticated.
    pub(super) async fn deauthenticate(&mut self) -> Result<(), ClientError> {
        let result = self
            .shared
            .options
            .token_store
            .remove()
            .map(drop)
            .map_err(|e| ClientError::TokenStore(e.to_string()));
        if !matches!(self.phase, super::Phase::Closed) {
            let deadline = super::deadline_after(self.shared.options.ack_timeout);
            self.out
                .enqueue("#removeAuthToken".to_owned(), None, None, deadline);
            self.flush_queue().await;
        }
        self.change_to_unauthenticated();
        result
    }

    /// The answer to `#authenticate`.
    pub(super) async fn on_authenticate_response(
        &mut self,
        token: String,
        reply: oneshot::Sender<Result<AuthStatus, InvokeError>>,
        response: ResponsePacket,
    ) {
        if let Some(error) = response.error {
            self.change_to_unauthenticated();
            let _ = reply.send(Err(InvokeError::Remote(ScError::from_json(&error))));
            return;
        }
        #[derive(serde::Deserialize)]
        struct Status {
            #[serde(rename = "isAuthenticated")]
            is_authenticated: Option<bool>,
            #[serde(rename = "authError", default)]
            auth_error: Option<Json>,
        }
        let status = response
            .data
            .as_ref()
            .and_then(|d| d.parse::<Status>().ok());
        let (is_authenticated, auth_error) = match status {
            Some(Status {
                is_authenticated: Some(is),
                auth_error,
            }) => (
                is,
                auth_error
                    .filter(|e| !e.is_null())
                    .map(|e| ScError::from_json(&e)),
            ),
            // Malformed answer: keep the current state, as the reference does.
            _ => (self.auth_state == AuthState::Authenticated, None),
        };
        if is_authenticated {
            self.change_to_authenticated(Some(token.clone())).await;
        } else {
            self.change_to_unauthenticated();
        }
        if let Err(error) = self.shared.options.token_store.save(&token) {
            self.store_failed(&error);
        }
        let _ = reply.send(Ok(AuthStatus {
            is_authenticated,
            auth_error,
        }));
    }
}

/// The token of `#setAuthToken` data `{"token":"…"}`.
pub(super) fn token_from(data: Option<&Json>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct SetAuthToken {
        token: String,
    }
    data?.parse::<SetAuthToken>().ok().map(|d| d.token)
}

/// The error answered to a `#setAuthToken` request without a token.
pub(super) fn no_token_error() -> ScError {
    ScError::new(
        names::INVALID_MESSAGE,
        "No token data provided by #setAuthToken event",
    )
}

/// The error answered to a `#setAuthToken` request when the token could not be stored.
pub(super) fn save_failed_error(error: &TokenStoreError) -> ScError {
    ScError::new(
        names::AUTH_TOKEN,
        format!("Client failed to save auth token - {error}"),
    )
}
