//! A scripted WebSocket server: each accepted connection is handed to the test, which reads the
//! client's frames and writes whatever it likes (valid or not).

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_websockets::{CloseCode, Message, Payload, ServerBuilder, WebSocketStream};

use super::within;

/// A listening fake server; stops accepting when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    connections: mpsc::UnboundedReceiver<FakeConn>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One accepted WebSocket connection.
pub struct FakeConn {
    ws: WebSocketStream<TcpStream>,
    /// The request target (`/socketcluster/?…`).
    pub target: String,
}

/// What the fake read from the client.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// A text frame.
    Text(String),
    /// A close frame.
    Close(u16, String),
    /// The connection ended without a close frame.
    Gone,
}

impl FakeServer {
    /// Listens on an ephemeral port.
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let (tx, connections) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok((request, ws)) = ServerBuilder::new().accept(stream).await {
                        let target = request.uri().to_string();
                        let _ = tx.send(FakeConn { ws, target });
                    }
                });
            }
        });
        FakeServer {
            addr,
            connections,
            task,
        }
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("ws://{}/socketcluster/", self.addr)
    }

    /// The next connection the client opens.
    pub async fn next_conn(&mut self) -> FakeConn {
        within(
            "the client to connect to the fake server",
            self.connections.recv(),
        )
        .await
        .expect("accept loop running")
    }
}

impl FakeConn {
    /// The next text or close frame from the client.
    pub async fn recv(&mut self) -> Received {
        within("a frame from the client", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(message)) => {
                        if let Some((code, reason)) = message.as_close() {
                            return Received::Close(u16::from(code), reason.to_owned());
                        }
                        if let Some(text) = message.as_text() {
                            return Received::Text(text.to_owned());
                        }
                    }
                    Some(Err(_)) | None => return Received::Gone,
                }
            }
        })
        .await
    }

    /// The next text frame, parsed; fails on anything else.
    pub async fn recv_json(&mut self) -> serde_json::Value {
        match self.recv().await {
            Received::Text(text) => {
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Reads the `#handshake` and returns its cid and token.
    pub async fn read_handshake(&mut self) -> (u64, serde_json::Value) {
        let frame = self.recv_json().await;
        assert_eq!(
            frame["event"], "#handshake",
            "first frame must be the handshake: {frame}"
        );
        (
            frame["cid"].as_u64().expect("numeric handshake cid"),
            frame["data"]["authToken"].clone(),
        )
    }

    /// Reads the handshake and answers it successfully.
    pub async fn handshake(
        &mut self,
        id: &str,
        ping_timeout_ms: u64,
        authenticated: bool,
    ) -> (u64, serde_json::Value) {
        let (cid, token) = self.read_handshake().await;
        self.send(&format!(
            r#"{{"rid":{cid},"data":{{"id":"{id}","pingTimeout":{ping_timeout_ms},"isAuthenticated":{authenticated}}}}}"#
        ))
        .await;
        (cid, token)
    }

    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("fake server write");
    }

    /// Sends text frames back to back with one flush, so that they reach the client in a burst.
    pub async fn send_burst(&mut self, texts: impl IntoIterator<Item = String>) {
        for text in texts {
            self.ws
                .feed(Message::text(text))
                .await
                .expect("fake server write");
        }
        self.ws.flush().await.expect("fake server flush");
    }

    /// Sends raw bytes in a text frame (may be invalid UTF-8).
    pub async fn send_text_bytes(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::text(Payload::from(bytes)))
            .await
            .expect("fake server write");
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .expect("fake server write");
    }

    /// Closes with a code and reason.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let code = CloseCode::try_from(code).expect("valid close code");
        let _ = self.ws.send(Message::close(Some(code), reason)).await;
    }

    /// Reads until the client's close frame (skipping text) and returns it.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.recv().await {
                Received::Close(code, reason) => return (code, reason),
                Received::Text(_) => {}
                Received::Gone => panic!("the connection ended without a close frame"),
            }
        }
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_tcp(self) {
        drop(self);
    }
}
