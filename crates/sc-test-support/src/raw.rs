//! Raw WebSocket clients that speak the protocol in hand-written frames: [`RawClient`] checks
//! frames byte for byte, [`JsonClient`] reads them as JSON, answers heartbeats and keeps frames
//! that arrive while it waits for a response.
//!
//! Every wait is bounded: a test that expects a frame fails after [`WAIT`] instead of hanging.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_websockets::{ClientBuilder, Message, Payload, WebSocketStream};

use crate::wait::WAIT;

/// The upgrade request for `ws://<addr><path>` with extra `headers`.
fn request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<ClientBuilder<'static>, tokio_websockets::Error> {
    let mut builder = ClientBuilder::new()
        .uri(&format!("ws://{addr}{path}"))
        .expect("valid uri");
    for (name, value) in headers {
        builder = builder.add_header(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("header"),
        )?;
    }
    Ok(builder)
}

/// Opens a WebSocket to `ws://<addr><path>` (no time bound: callers add their own).
pub async fn connect_ws(
    addr: SocketAddr,
    path: &str,
) -> Result<WebSocketStream<TcpStream>, tokio_websockets::Error> {
    let builder = request(addr, path, &[])?;
    let tcp = TcpStream::connect(addr).await?;
    let (ws, _response) = builder.connect_on(tcp).await?;
    Ok(ws)
}

/// One thing read from the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A close frame: code and reason.
    Close(u16, String),
    /// The connection ended without a close frame.
    Ended,
    /// The WebSocket layer reported an error (e.g. a reset connection).
    Error(String),
}

/// A raw WebSocket client: hand-written frames in, exact frames out, over TCP (the default) or
/// any other byte stream (e.g. a `tokio::io::duplex` pipe served by `Server::serve_io`).
#[derive(Debug)]
pub struct RawClient<S = TcpStream> {
    ws: WebSocketStream<S>,
    id: Option<String>,
}

impl RawClient {
    /// Opens a WebSocket on `path` with extra request `headers`.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<RawClient, tokio_websockets::Error> {
        let builder = request(addr, path, headers)?;
        let tcp = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")?;
        let (ws, _response) = timeout(WAIT, builder.connect_on(tcp))
            .await
            .expect("upgrade in time")?;
        Ok(RawClient { ws, id: None })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// A client on an open WebSocket (before the handshake).
    pub fn over(ws: WebSocketStream<S>) -> RawClient<S> {
        RawClient { ws, id: None }
    }

    /// The socket id from the handshake response.
    pub fn id(&self) -> &str {
        self.id.as_deref().expect("handshake done")
    }

    /// Sends the reference client's first frame and checks the response byte for byte
    /// (docs/protocol.md §4.3): `{"rid":1,"data":{"id":<20 chars>,"pingTimeout":<ms>,"isAuthenticated":false}}`.
    pub async fn handshake(&mut self, ping_timeout: u64) -> String {
        self.send_text(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)
            .await;
        let response = self.recv_text().await;
        let id = handshake_id(&response);
        let expected = format!(
            r#"{{"rid":1,"data":{{"id":"{id}","pingTimeout":{ping_timeout},"isAuthenticated":false}}}}"#
        );
        assert_eq!(response, expected);
        self.id = Some(id.clone());
        id
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text.to_owned())).await;
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.send(Message::binary(bytes.to_vec())).await;
    }

    /// Sends a text frame whose payload is not valid UTF-8 (a protocol violation).
    pub async fn send_invalid_text(&mut self, bytes: &[u8]) {
        self.send(Message::text(Payload::from(bytes.to_vec())))
            .await;
    }

    async fn send(&mut self, message: Message) {
        timeout(WAIT, self.ws.send(message))
            .await
            .expect("send in time")
            .expect("send");
    }

    /// Sends a close frame (1000) and waits for the server's answer or the end.
    pub async fn close(mut self) {
        let _ = timeout(
            WAIT,
            self.ws.send(Message::close(
                Some(tokio_websockets::CloseCode::NORMAL_CLOSURE),
                "",
            )),
        )
        .await;
        let _ = timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Sends a close frame with `code` and `reason` (the connection stays readable).
    pub async fn send_close(&mut self, code: u16, reason: &str) {
        let code = tokio_websockets::CloseCode::try_from(code).expect("a valid close code");
        self.send(Message::close(Some(code), reason)).await;
    }

    /// The next data or close frame (control pings are skipped); panics after [`WAIT`].
    pub async fn recv(&mut self) -> Received {
        self.recv_within(WAIT)
            .await
            .expect("a frame within the wait bound")
    }

    /// The next data or close frame, or `None` if nothing arrives within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            let received = match next {
                None => Received::Ended,
                Some(Err(error)) => Received::Error(error.to_string()),
                Some(Ok(message)) => {
                    if let Some((code, reason)) = message.as_close() {
                        // Send the close echo the WebSocket layer queued, as a real client does.
                        let _ = tokio::time::timeout_at(deadline, self.ws.flush()).await;
                        Received::Close(code.into(), reason.to_owned())
                    } else if message.is_text() {
                        Received::Text(message.as_text().unwrap_or_default().to_owned())
                    } else if message.is_binary() {
                        Received::Binary(message.into_payload().to_vec())
                    } else {
                        continue; // WebSocket-level ping/pong
                    }
                }
            };
            return Some(received);
        }
    }

    /// Sends a WebSocket control ping and returns the payload of the pong that answers it.
    pub async fn control_ping(&mut self, payload: &'static [u8]) -> Vec<u8> {
        self.send(Message::ping(payload)).await;
        timeout(WAIT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(message)) if message.is_pong() => {
                        return message.into_payload().to_vec();
                    }
                    Some(Ok(message))
                        if message.as_text().is_some_and(|t| t.is_empty() || t == "#1") =>
                    {
                        continue;
                    }
                    other => panic!("expected a pong, got {other:?}"),
                }
            }
        })
        .await
        .expect("a pong within the wait bound")
    }

    /// The next frame, which must be a text frame.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Received::Text(text) => text,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next `n` text frames.
    pub async fn recv_texts(&mut self, n: usize) -> Vec<String> {
        let mut frames = Vec::with_capacity(n);
        for _ in 0..n {
            frames.push(self.recv_text().await);
        }
        frames
    }

    /// Waits for the server's close frame and returns its code and reason. Heartbeats before it
    /// are skipped; any other frame fails the test (the server must close without a word).
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.recv().await {
                Received::Close(code, reason) => return (code, reason),
                Received::Text(text) if text.is_empty() || text == "#1" => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Proves that nothing was sent before now: the server answers an `echo` (the sentinel) and
    /// that answer must be the very next frame. Frames are processed and queued in order, so any
    /// earlier reply or delivery would come first.
    pub async fn expect_nothing_before_echo(&mut self, cid: u64) {
        self.send_text(&format!(
            r#"{{"event":"echo","data":"sentinel","cid":{cid}}}"#
        ))
        .await;
        assert_eq!(
            self.recv_text().await,
            format!(r#"{{"rid":{cid},"data":"sentinel"}}"#)
        );
    }

    /// Subscribes to `channel` with `cid` and checks the plain ack.
    pub async fn subscribe(&mut self, channel: &str, cid: u64) {
        self.send_text(&format!(
            r##"{{"event":"#subscribe","data":{{"channel":"{channel}"}},"cid":{cid}}}"##
        ))
        .await;
        assert_eq!(self.recv_text().await, format!(r#"{{"rid":{cid}}}"#));
    }
}

/// The socket id of a handshake response, checked to be 20 URL-safe base64 characters.
pub fn handshake_id(response: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(response).expect("handshake response is JSON");
    let id = value["data"]["id"]
        .as_str()
        .expect("handshake response has data.id")
        .to_owned();
    assert_eq!(id.len(), 20, "socket id {id:?} has 20 characters");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "socket id {id:?} is URL-safe"
    );
    id
}

/// A position as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// The publication's offset in its channel's stream.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
}

impl Pos {
    /// The position in `value` (`{"offset":…,"epoch":…}`), if any.
    pub fn of(value: &Value) -> Option<Pos> {
        Some(Pos {
            offset: value["offset"].as_u64()?,
            epoch: value["epoch"].as_str()?.to_owned(),
        })
    }
}

/// One connection speaking raw SocketCluster frames as JSON values, for tests that look at
/// fields the client library hides (positions, epochs); heartbeats (`""`, `#1`) are answered.
#[derive(Debug)]
pub struct JsonClient {
    ws: WebSocketStream<TcpStream>,
    /// The socket id from the handshake.
    pub id: String,
    next_cid: u64,
    stash: VecDeque<Value>,
}

impl JsonClient {
    /// Connects and completes the handshake, or fails (the server may be restarting).
    pub async fn connect(port: u16) -> Result<JsonClient, String> {
        let connect = connect_ws(SocketAddr::from(([127, 0, 0, 1], port)), "/socketcluster/");
        let ws = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let mut raw = JsonClient {
            ws,
            id: String::new(),
            next_cid: 1,
            stash: VecDeque::new(),
        };
        let answer = raw
            .invoke("#handshake", serde_json::json!({"authToken": null}))
            .await?;
        raw.id = answer["data"]["id"]
            .as_str()
            .ok_or("no socket id")?
            .to_owned();
        Ok(raw)
    }

    /// Connects, retrying for up to 20 s.
    pub async fn connect_retrying(port: u16) -> JsonClient {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match JsonClient::connect(port).await {
                Ok(raw) => return raw,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot connect: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Sends one text frame.
    pub async fn send(&mut self, text: String) -> Result<(), String> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends an event with a cid and waits (at most 10 s) for its response; other frames are
    /// kept for [`next`](Self::next).
    pub async fn invoke(&mut self, event: &str, data: Value) -> Result<Value, String> {
        let cid = self.next_cid;
        self.next_cid += 1;
        let frame = serde_json::json!({"event": event, "data": data, "cid": cid});
        self.send(frame.to_string()).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.read(deadline).await?;
            if value["rid"].as_u64() == Some(cid) {
                return Ok(value);
            }
            self.stash.push_back(value);
        }
    }

    /// The next frame that is not a response (stashed ones first), waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Value, String> {
        if let Some(value) = self.stash.pop_front() {
            return Ok(value);
        }
        self.read(tokio::time::Instant::now() + wait).await
    }

    /// Takes the frames kept so far.
    pub fn take_stash(&mut self) -> Vec<Value> {
        self.stash.drain(..).collect()
    }

    async fn read(&mut self, deadline: tokio::time::Instant) -> Result<Value, String> {
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| "timed out".to_owned())?
                .ok_or("connection ended")?
                .map_err(|e| e.to_string())?;
            if message.is_close() {
                return Err("closed".into());
            }
            let Some(text) = message.as_text() else {
                continue;
            };
            match text {
                "" => self.send(String::new()).await?,
                "#1" => self.send("#2".into()).await?,
                text => return serde_json::from_str(text).map_err(|e| format!("{e}: {text}")),
            }
        }
    }
}
