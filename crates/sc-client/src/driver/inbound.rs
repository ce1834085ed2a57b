//! Everything the server sends: heartbeats, packets, responses, the handshake response, and
//! the protocol events (`#publish`, `#kickOut`, `#setAuthToken`, `#removeAuthToken`,
//! v1 `#disconnect`). Nothing the server sends can make the client panic: unexpected input is a
//! raw message, ignored, or a typed close.

use std::time::Duration;

use bytes::Bytes;
use sc_protocol::frame::PublishData;
use sc_protocol::{
    CloseCode, Codec, EventPacket, Frame, Json, Packet, ResponsePacket, ScError, encode, min_bin,
};
use tokio_websockets::Message;

use super::auth::{no_token_error, save_failed_error, token_from};
use super::outbound::Awaiting;
use super::{Driver, MAX_TIMER, Phase, transport};
use crate::command::{ProcedureResponse, Reply};
use crate::error::{ConnectionError, InvokeError};
use crate::events::{ClientEvent, ConnectionState};
use crate::position::delivery_position;
use crate::presence::PresenceEvent;

impl Driver {
    /// One item from the WebSocket (or its end).
    pub(super) async fn on_message(
        &mut self,
        message: Option<Result<Message, tokio_websockets::Error>>,
    ) {
        let handshaking = matches!(self.phase, Phase::Handshaking { .. });
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                let (code, error) = transport::stream_error(&error);
                self.emit(ClientEvent::Error(error));
                self.teardown(code, String::new(), None);
                return;
            }
            None => {
                // The TCP connection ended without a close frame.
                self.closed_by_peer(1006, String::new(), handshaking);
                return;
            }
        };
        if let Some((code, reason)) = message.as_close() {
            let (code, reason) = (u16::from(code), reason.to_owned());
            self.closed_by_peer(code, reason, handshaking);
        } else if message.is_text() {
            let bytes: Bytes = message.into_payload().into();
            self.on_frame(Frame::decode_bytes(bytes.clone()), bytes)
                .await;
        } else if message.is_binary() {
            let bytes: Bytes = message.into_payload().into();
            if self.shared.options.codec == Codec::MinBin {
                match min_bin::decode_frame(&bytes) {
                    Ok(frame) => self.on_frame(frame, bytes).await,
                    Err(error) => {
                        // As the reference: an InvalidMessageError, and the frame is dropped.
                        tracing::debug!(%error, "undecodable min-bin frame");
                        self.emit(ClientEvent::Raw(bytes));
                    }
                }
            } else {
                // The JSON clients read binary frames as raw messages (§1.4).
                self.emit(ClientEvent::Raw(bytes));
            }
        }
        // WebSocket pings are answered by tokio-websockets; pongs need nothing.
    }

    fn closed_by_peer(&mut self, code: u16, reason: String, handshaking: bool) {
        if handshaking {
            self.emit(ClientEvent::Error(ConnectionError::ClosedDuringHandshake {
                code,
                reason: reason.clone(),
            }));
        }
        self.teardown(code, reason, None);
    }

    async fn on_frame(&mut self, frame: Frame, bytes: Bytes) {
        let options = &self.shared.options;
        match frame {
            Frame::PingV1 if options.answers_v1_ping() => {
                self.on_ping(Bytes::from_static(b"#2")).await
            }
            Frame::Empty if options.answers_v2_ping() => self.on_ping(Bytes::new()).await,
            Frame::Packets(packets) => {
                for packet in packets {
                    if self.phase.ws_mut().is_none() {
                        break; // an earlier packet closed the connection
                    }
                    self.on_packet(packet).await;
                }
            }
            // A heartbeat of the other dialect, or anything else: raw, as in the reference.
            _ => self.emit(ClientEvent::Raw(bytes)),
        }
    }

    async fn on_ping(&mut self, pong: Bytes) {
        self.reset_ping_deadline();
        self.write(pong).await;
    }

    async fn on_packet(&mut self, packet: Packet) {
        match packet {
            Packet::Event(EventPacket {
                event,
                data,
                cid: Some(cid),
            }) => self.on_invoke(event, data, cid).await,
            Packet::Event(EventPacket {
                event,
                data,
                cid: None,
            }) => self.on_transmit(event, data).await,
            Packet::Response(response) => self.on_response(response).await,
            Packet::Raw(bytes) => self.emit(ClientEvent::Raw(bytes)),
        }
    }

    async fn on_response(&mut self, response: ResponsePacket) {
        let Some(flight) = self.out.take(response.rid) else {
            return; // unknown or timed out: ignored
        };
        match flight.awaiting {
            Awaiting::Reply(Reply::Invoke(reply)) => {
                let result = match response.error {
                    Some(error) => Err(InvokeError::Remote(ScError::from_json(&error))),
                    None => Ok(response.data),
                };
                let _ = reply.send(result);
            }
            Awaiting::Reply(Reply::Authenticate { token, reply }) => {
                self.on_authenticate_response(token, reply, response).await;
            }
            Awaiting::Handshake => self.on_handshake_response(response).await,
            Awaiting::Subscribe { channel } => self.on_subscribe_response(
                &channel,
                response.rid,
                response.data.as_ref(),
                response.error,
            ),
        }
    }

    async fn on_handshake_response(&mut self, response: ResponsePacket) {
        if !matches!(self.phase, Phase::Handshaking { .. }) {
            return;
        }
        if let Some(error) = response.error {
            let error = ScError::from_json(&error);
            let code = rejection_code(&error, response.data.as_ref());
            self.emit(ClientEvent::Error(ConnectionError::HandshakeRejected {
                error,
                code,
            }));
            self.teardown(code, String::new(), Some((code, String::new())));
            return;
        }
        let status = match HandshakeStatus::parse(response.data.as_ref()) {
            Ok(status) => status,
            Err(why) => {
                self.emit(ClientEvent::Error(
                    ConnectionError::InvalidHandshakeResponse(why),
                ));
                let code = CloseCode::HANDSHAKE_FAILED.0;
                self.teardown(code, String::new(), Some((code, String::new())));
                return;
            }
        };
        if let Phase::Handshaking { ws } = std::mem::replace(&mut self.phase, Phase::Closed) {
            self.phase = Phase::Open { ws };
        }
        if let Some(ping_timeout) = status.ping_timeout {
            self.ping_timeout = ping_timeout;
        }
        self.reset_ping_deadline();
        let ping_timeout = self.ping_timeout;
        self.shared.snapshot.send_modify(|s| {
            s.state = ConnectionState::Open;
            s.id = Some(status.id.clone());
        });

        self.preparing_subscriptions = true;
        if status.is_authenticated {
            self.change_to_authenticated(self.handshake_token.clone())
                .await;
        } else {
            self.change_to_unauthenticated();
        }
        self.backoff.reset();
        self.preparing_subscriptions = false;
        if self.shared.options.auto_subscribe_on_connect {
            self.process_pending_subscriptions().await;
        }
        if !self.phase.is_open() {
            return; // a write failed meanwhile
        }
        self.emit(ClientEvent::Connect {
            id: status.id,
            is_authenticated: status.is_authenticated,
            ping_timeout,
            auth_error: status.auth_error,
        });
        self.flush_queue().await;
    }

    /// An event without cid.
    async fn on_transmit(&mut self, event: String, data: Option<Json>) {
        match event.as_str() {
            "#publish" => {
                if let Some(publish) = PublishData::parse(data.as_ref()) {
                    let payload = publish.data.unwrap_or(Json::NULL);
                    let position = data.as_ref().and_then(delivery_position);
                    let position = position.as_ref().map(|(o, e)| (*o, &**e));
                    let channel = self.shared.options.undecorate(&publish.channel).to_owned();
                    self.deliver_publication(&channel, payload, position);
                }
            }
            "#kickOut" => self.on_kick_out(data.as_ref()),
            "#setAuthToken" => {
                if let Some(token) = token_from(data.as_ref()) {
                    let _ = self.set_auth_token(token).await;
                }
            }
            "#removeAuthToken" => self.remove_auth_token(),
            "#disconnect" if self.shared.options.answers_v1_ping() => {
                self.on_v1_disconnect(data.as_ref())
            }
            _ => {
                let mut registry = self.shared.registry.lock();
                let presence = PresenceEvent::parse(&event, data.as_ref())
                    .is_some_and(|change| registry.deliver_presence(&change));
                let data = data.unwrap_or(Json::NULL);
                if !registry.deliver(&event, &data) && !presence {
                    tracing::debug!(%event, "no receiver for server event; dropped");
                }
            }
        }
    }

    /// An event with a cid: the server waits for `{"rid":cid,…}`.
    async fn on_invoke(&mut self, event: String, data: Option<Json>, cid: u64) {
        match event.as_str() {
            "#setAuthToken" => {
                let frame = match token_from(data.as_ref()) {
                    Some(token) => match self.set_auth_token(token).await {
                        Ok(()) => encode::response(cid, None),
                        Err(error) => encode::error_response(
                            cid,
                            save_failed_error(&error).to_json().get(),
                            None,
                        ),
                    },
                    None => encode::error_response(cid, no_token_error().to_json().get(), None),
                };
                self.write(frame).await;
            }
            "#removeAuthToken" => {
                self.remove_auth_token();
                self.write(encode::response(cid, None)).await;
            }
            _ => {
                let procedure = self.shared.registry.lock().procedure(&event);
                let Some(procedure) = procedure else {
                    // As in the reference: no handler, no response (the server times out).
                    tracing::debug!(%event, cid, "no procedure for server invoke; not answered");
                    return;
                };
                let responses = self.responses_tx.clone();
                let epoch = self.epoch;
                self.shared.runtime.spawn(async move {
                    let result = procedure(data).await;
                    let _ = responses
                        .send(ProcedureResponse { epoch, cid, result })
                        .await;
                });
            }
        }
    }

    /// v1 servers announce their close with `{"event":"#disconnect","data":{"code":…,"data":…}}`;
    /// the v14 client closes with that code and reason.
    fn on_v1_disconnect(&mut self, data: Option<&Json>) {
        #[derive(serde::Deserialize)]
        struct Disconnect {
            code: Option<f64>,
            #[serde(default)]
            data: Option<serde_json::Value>,
        }
        let Some(disconnect) = data.and_then(|d| d.parse::<Disconnect>().ok()) else {
            return;
        };
        let code = disconnect
            .code
            .and_then(close_code)
            .unwrap_or(CloseCode::NORMAL.0);
        let reason = match disconnect.data {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        self.teardown(code, reason, Some((code, String::new())));
    }
}

/// A close code from a JSON number, if it is a plausible one.
fn close_code(value: f64) -> Option<u16> {
    (value.fract() == 0.0 && (1000.0..=4999.0).contains(&value)).then_some(value as u16)
}

/// The close code for a handshake error: `error.statusCode` (v15+), else `data.code` (v14),
/// else 4003.
fn rejection_code(error: &ScError, data: Option<&Json>) -> u16 {
    let from_error = error
        .field("statusCode")
        .and_then(|c| c.parse::<f64>().ok())
        .and_then(close_code);
    let from_data = || {
        #[derive(serde::Deserialize)]
        struct Data {
            code: f64,
        }
        data.and_then(|d| d.parse::<Data>().ok())
            .and_then(|d| close_code(d.code))
    };
    from_error
        .or_else(from_data)
        .unwrap_or(CloseCode::HANDSHAKE_FAILED.0)
}

/// The data of a successful handshake response.
#[derive(Debug)]
struct HandshakeStatus {
    id: String,
    ping_timeout: Option<Duration>,
    is_authenticated: bool,
    auth_error: Option<ScError>,
}

impl HandshakeStatus {
    fn parse(data: Option<&Json>) -> Result<HandshakeStatus, String> {
        let Some(data) = data else {
            return Err("no data".to_owned());
        };
        let Ok(serde_json::Value::Object(map)) = data.parse::<serde_json::Value>() else {
            return Err(format!("data is not an object: {}", abbreviate(data.get())));
        };
        let id = match map.get("id") {
            Some(serde_json::Value::String(id)) => id.clone(),
            _ => return Err(format!("no string id in {}", abbreviate(data.get()))),
        };
        let ping_timeout = map
            .get("pingTimeout")
            .and_then(serde_json::Value::as_f64)
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map(|ms| Duration::from_secs_f64((ms / 1000.0).min(MAX_TIMER.as_secs_f64())));
        let is_authenticated = map
            .get("isAuthenticated")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let auth_error = map
            .get("authError")
            .filter(|e| !e.is_null())
            .map(|e| ScError::from_json(&Json::from(e.clone())));
        Ok(HandshakeStatus {
            id,
            ping_timeout,
            is_authenticated,
            auth_error,
        })
    }
}

fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Json {
        Json::from_text(text).unwrap()
    }

    #[test]
    fn handshake_status() {
        let s = HandshakeStatus::parse(Some(&json(
            r#"{"id":"VgVu","pingTimeout":30000,"authError":{"message":"jwt malformed","name":"AuthTokenInvalidError","isBadToken":true},"isAuthenticated":false}"#,
        )))
        .unwrap();
        assert_eq!(s.id, "VgVu");
        assert_eq!(s.ping_timeout, Some(Duration::from_secs(30)));
        assert!(!s.is_authenticated);
        assert_eq!(s.auth_error.unwrap().name(), Some("AuthTokenInvalidError"));

        for bad in [
            "null",
            "[]",
            r#"{"pingTimeout":1}"#,
            r#"{"id":5}"#,
            r#""x""#,
        ] {
            assert!(HandshakeStatus::parse(Some(&json(bad))).is_err(), "{bad}");
        }
        assert!(HandshakeStatus::parse(None).is_err());
        let huge =
            HandshakeStatus::parse(Some(&json(r#"{"id":"a","pingTimeout":1e300}"#))).unwrap();
        assert_eq!(huge.ping_timeout, Some(MAX_TIMER));
        let negative =
            HandshakeStatus::parse(Some(&json(r#"{"id":"a","pingTimeout":-5}"#))).unwrap();
        assert_eq!(negative.ping_timeout, None);
    }

    #[test]
    fn rejection_codes() {
        let v20 = ScError::from_json(&json(r#"{"message":"x","statusCode":4501}"#));
        assert_eq!(rejection_code(&v20, None), 4501);
        let v14 = ScError::from_json(&json(r#"{"message":"x","name":"HandshakeRejectError"}"#));
        assert_eq!(rejection_code(&v14, Some(&json(r#"{"code":4008}"#))), 4008);
        assert_eq!(rejection_code(&v14, None), 4003);
        let silly = ScError::from_json(&json(r#"{"message":"x","statusCode":99999}"#));
        assert_eq!(rejection_code(&silly, None), 4003);
        let plain = ScError::plain(Json::string("nope"));
        assert_eq!(rejection_code(&plain, None), 4003);
    }
}
