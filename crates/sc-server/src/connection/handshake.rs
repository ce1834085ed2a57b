//! The SocketCluster handshake (`#handshake`, docs/protocol.md §4) and `#authenticate`
//! (docs/protocol.md §8.7): verifying a client's token, running handshake and authenticate
//! middleware, and answering.
//!
//! Both return `Err(code)` when the connection must close with `code`.

use std::sync::Arc;

use sc_protocol::error::names;
use sc_protocol::frame::HandshakeData;
use sc_protocol::{CloseCode, EventPacket, HeartbeatDialect, Json, ScError, encode};

use crate::auth::AuthEvent;
use crate::auth::{AuthToken, TokenError};
use crate::middleware::{
    AuthenticateAction, Block, HandshakeScAction, InboundAction, block_error, inbound_block_error,
};
use crate::socket::Socket;

/// `#handshake` (docs/protocol.md §4.2–4.4): verify the token, run handshake middleware, answer.
pub(crate) async fn on_handshake(
    socket: &Socket,
    dialect: Option<HeartbeatDialect>,
    event: EventPacket,
) -> Result<(), CloseCode> {
    let Some(cid) = event.cid else {
        return Err(CloseCode::HANDSHAKE_REJECTED);
    };
    let server = socket.server().clone();
    let options = server.options();
    let timeout = options.durations().middleware_timeout;
    let v1 = dialect == Some(HeartbeatDialect::V1);
    let handshake = HandshakeData::parse(event.data.as_ref());

    let mut verified = None;
    let mut auth_error = None;
    if let Some(token) = handshake.auth_token {
        match verify_and_authenticate(socket, &token).await {
            Ok(token) => verified = Some(token),
            Err((error, bad)) => auth_error = Some((error, bad)),
        }
    }

    let action = HandshakeScAction {
        socket: socket.clone(),
        auth_token: verified.clone(),
    };
    if let Err(block) = server.middleware().run_handshake_sc(action, timeout).await {
        return Err(reject_handshake(socket, dialect, cid, block));
    }

    let bad_token = auth_error.as_ref().is_some_and(|(_, bad)| *bad);
    if bad_token && v1 {
        let _ = socket.send_frame(encode::event("#removeAuthToken", Some("null"), None));
    }
    let mut data = String::with_capacity(128);
    data.push_str("{\"id\":");
    data.push_str(Json::string(socket.id()).get());
    data.push_str(",\"pingTimeout\":");
    data.push_str(&options.ping_timeout.to_string());
    if let Some((error, _)) = &auth_error {
        data.push_str(",\"authError\":");
        data.push_str(error.to_json().get());
    }
    data.push_str(if verified.is_some() {
        ",\"isAuthenticated\":true}"
    } else {
        ",\"isAuthenticated\":false}"
    });
    // The handshake response itself is never batched.
    let _ = socket.send_encoded(encode::response(cid, Some(&data)));
    if options.batch_on_handshake {
        socket.batch_on_handshake();
    }
    if bad_token && !v1 {
        let _ = socket.send_frame(encode::event("#removeAuthToken", None, None));
    }
    if let Some(token) = verified {
        socket.set_auth(Arc::new(token));
    }
    socket.set_open();
    server.register(socket);
    server.run_connection_handlers(socket).await;
    Ok(())
}

/// Handshake middleware said no: error response; returns the code to close with (its status
/// code).
fn reject_handshake(
    socket: &Socket,
    dialect: Option<HeartbeatDialect>,
    cid: u64,
    block: Block,
) -> CloseCode {
    let error = block_error(block, dialect, "handshakeSC", "handshake", "handshakeSC");
    let code = error
        .field("statusCode")
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (4000..5000).contains(c))
        .unwrap_or(CloseCode::HANDSHAKE_REJECTED.0);
    tracing::debug!(socket = %socket.id(), code, "handshake rejected by middleware");
    if dialect == Some(HeartbeatDialect::V1) {
        let data = format!("{{\"code\":{code}}}");
        let _ = socket.send_frame(encode::error_response(
            cid,
            error.to_json().get(),
            Some(&data),
        ));
        let _ = socket.send_frame(encode::event("#disconnect", Some(&data), None));
    } else {
        let error = if error.field("statusCode").is_some() {
            error
        } else {
            error.with("statusCode", code)
        };
        let _ = socket.send_frame(encode::error_response(cid, error.to_json().get(), None));
    }
    CloseCode(code)
}

/// Verifies a client's token and runs authenticate middleware. On failure: the error as the client
/// sees it and whether the token is bad (to be removed).
async fn verify_and_authenticate(
    socket: &Socket,
    token: &Json,
) -> Result<AuthToken, (ScError, bool)> {
    let server = socket.server();
    let v2_fields = socket.dialect() != Some(HeartbeatDialect::V1);
    let token = match server.auth().verify(token) {
        Ok(token) => token,
        Err(error) => {
            report_bad_token(socket, &error);
            return Err((error.to_sc_error(v2_fields), error.is_bad_token()));
        }
    };
    let action = InboundAction::Authenticate(AuthenticateAction {
        socket: socket.clone(),
        token,
    });
    let kind = action.kind();
    match server
        .middleware()
        .run_inbound(action, server.options().durations().middleware_timeout)
        .await
    {
        Ok(InboundAction::Authenticate(action)) => Ok(action.token),
        Ok(_) => Err((
            ScError::new(
                names::AUTH_TOKEN,
                "authenticate middleware returned another action",
            ),
            false,
        )),
        Err(block) => {
            let error = inbound_block_error(block, socket.dialect(), kind);
            let bad = error.field("isBadToken").is_some_and(|v| v.get() == "true");
            // `isBadToken` is how our middleware flags a bad token (v15+ style); socketcluster-server
            // 14 took that flag as `next(err, true)`, so v1 clients get the error without it (TV-14).
            let error = if socket.dialect() == Some(HeartbeatDialect::V1) {
                error.without("isBadToken")
            } else {
                error
            };
            Err((error, bad))
        }
    }
}

fn report_bad_token(socket: &Socket, error: &TokenError) {
    if error.is_bad_token() {
        tracing::debug!(socket = %socket.id(), %error, "bad auth token");
        socket
            .server()
            .emit_auth_event(socket, AuthEvent::BadToken(error));
    }
}

/// `#authenticate` (docs/protocol.md §8.7).
pub(crate) async fn on_authenticate(socket: &Socket, event: EventPacket) -> Result<(), CloseCode> {
    let Some(cid) = event.cid else {
        return Err(CloseCode::HANDSHAKE_REJECTED);
    };
    let v1 = socket.dialect() == Some(HeartbeatDialect::V1);
    let token = event.data.unwrap_or(Json::NULL);
    match verify_and_authenticate(socket, &token).await {
        Ok(token) => {
            socket.set_auth(Arc::new(token));
            let _ = socket.send_frame(encode::response(
                cid,
                Some(r#"{"isAuthenticated":true,"authError":null}"#),
            ));
        }
        Err((error, false)) => {
            // Not a bad token (e.g. not active yet): an answer, not an error; the client keeps it.
            socket.clear_auth();
            let data = format!(
                r#"{{"isAuthenticated":false,"authError":{}}}"#,
                error.to_json()
            );
            let _ = socket.send_frame(encode::response(cid, Some(&data)));
        }
        Err((error, true)) => {
            let remove = encode::event("#removeAuthToken", v1.then_some("null"), None);
            socket.clear_auth();
            if v1 {
                let data = format!(
                    r#"{{"isAuthenticated":false,"authError":{}}}"#,
                    error.to_json()
                );
                let _ = socket.send_frame(remove);
                let _ = socket.send_frame(encode::error_response(
                    cid,
                    error.to_json().get(),
                    Some(&data),
                ));
            } else {
                let _ = socket.send_frame(encode::error_response(cid, error.to_json().get(), None));
                let _ = socket.send_frame(remove);
            }
        }
    }
    Ok(())
}
