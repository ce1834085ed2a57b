//! Shared helpers of the integration tests: a real server on an ephemeral port and a raw
//! WebSocket client that speaks the protocol in hand-written frames.
//!
//! Every wait is bounded: a test that expects a frame fails after [`WAIT`] instead of hanging.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use sc_protocol::{ProtocolVersion, ScError};
use sc_server::{Reply, Request, Server, ServerOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_websockets::{ClientBuilder, Message, Payload, WebSocketStream};

/// The longest any single expected event may take. Generous: it only matters when a test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A server listening on `127.0.0.1:<ephemeral>`; stops serving when dropped.
pub(crate) struct TestServer {
    pub(crate) server: Server,
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Default options with a fixed heartbeat dialect (v2), so frames and close reasons are v2's.
pub(crate) fn v2() -> ServerOptions {
    ServerOptions {
        protocol_version: ProtocolVersion::V2,
        ..Default::default()
    }
}

/// Default options speaking protocol v1 (`#1`/`#2`, `#disconnect` events).
pub(crate) fn v1() -> ServerOptions {
    ServerOptions {
        protocol_version: ProtocolVersion::V1,
        ..Default::default()
    }
}

/// A server with `options` that answers `echo` with its data (used as an ordering sentinel), and
/// whatever `setup` registers.
fn new_server(options: ServerOptions, setup: impl FnOnce(&Server)) -> Server {
    let server = Server::new(options).expect("valid options");
    server
        .on("echo", |req: Request| async move {
            Ok::<_, ScError>(Reply::from(req.data().cloned()))
        })
        .expect("echo is not reserved");
    setup(&server);
    server
}

/// Starts a server with `options`. Every test server answers `echo` with its data (used as an
/// ordering sentinel); `setup` registers whatever else the test needs before the port opens.
pub(crate) async fn start_server(
    options: ServerOptions,
    setup: impl FnOnce(&Server),
) -> TestServer {
    let server = new_server(options, setup);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local address");
    let serving = server.clone();
    let task = tokio::spawn(async move {
        let _ = serving.serve(listener, serving.app(None)).await;
    });
    TestServer { server, addr, task }
}

impl TestServer {
    /// A connected client that completed the handshake (cid 1); its id is checked against the
    /// server's socket table.
    pub(crate) async fn client(&self) -> Client {
        handshaken(&self.server, self.connect().await).await
    }

    /// A connected client on the SocketCluster path, before the handshake.
    pub(crate) async fn connect(&self) -> Client {
        Client::connect(self.addr, "/socketcluster/", &[])
            .await
            .expect("WebSocket upgrade")
    }

    /// The server's handle on a connected client's socket.
    pub(crate) fn socket(&self, client: &Client) -> sc_server::Socket {
        self.server.socket(client.id()).expect("socket registered")
    }

    /// Waits (bounded) until `condition` holds; panics with `what` otherwise.
    pub(crate) async fn eventually(&self, what: &str, condition: impl FnMut(&Server) -> bool) {
        eventually(&self.server, what, condition).await;
    }
}

/// Waits (bounded by [`WAIT`]) until `condition` holds for `server`; panics with `what` otherwise.
async fn eventually(server: &Server, what: &str, mut condition: impl FnMut(&Server) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition(server) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `client` after a completed handshake (cid 1), its id checked against `server`'s socket table.
async fn handshaken<S: AsyncRead + AsyncWrite + Unpin>(
    server: &Server,
    mut client: Client<S>,
) -> Client<S> {
    client.handshake(server.options().ping_timeout).await;
    assert!(
        server.socket(client.id()).is_some(),
        "the server knows the socket after the handshake"
    );
    client
}

/// A server reached over in-memory pipes (`tokio::io::duplex`) through [`Server::serve_io`]
/// instead of TCP. Under `#[tokio::test(start_paused = true)]` nothing waits in real time: the
/// clock jumps to the next deadline whenever both ends are idle, so heartbeat and timeout tests
/// are instant and can check when things happen exactly.
pub(crate) struct PipedServer {
    pub(crate) server: Server,
}

/// A [`PipedServer`] with `options` (and the `echo` handler, like [`start_server`]).
pub(crate) fn piped_server(options: ServerOptions, setup: impl FnOnce(&Server)) -> PipedServer {
    PipedServer {
        server: new_server(options, setup),
    }
}

impl PipedServer {
    /// A client connected through a new pipe, on the SocketCluster path, before the handshake.
    pub(crate) async fn connect(&self) -> Client<DuplexStream> {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let server = self.server.clone();
        let remote = SocketAddr::from(([127, 0, 0, 1], 50_000));
        tokio::spawn(async move { server.serve_io(server_end, remote, server.app(None)).await });
        let builder = ClientBuilder::new()
            .uri("ws://127.0.0.1/socketcluster/")
            .expect("valid uri");
        let (ws, _response) = timeout(WAIT, builder.connect_on(client_end))
            .await
            .expect("upgrade in time")
            .expect("WebSocket upgrade");
        Client { ws, id: None }
    }

    /// A client connected through a new pipe that completed the handshake.
    pub(crate) async fn client(&self) -> Client<DuplexStream> {
        handshaken(&self.server, self.connect().await).await
    }

    /// Waits (bounded) until `condition` holds; panics with `what` otherwise.
    pub(crate) async fn eventually(&self, what: &str, condition: impl FnMut(&Server) -> bool) {
        eventually(&self.server, what, condition).await;
    }
}

/// One thing read from the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame: code and reason.
    Close(u16, String),
    /// The connection ended without a close frame.
    Ended,
    /// The WebSocket layer reported an error (e.g. a reset connection).
    Error(String),
}

/// A raw WebSocket client: hand-written frames in, exact frames out (over TCP, or over a pipe
/// from [`PipedServer`]).
pub(crate) struct Client<S = TcpStream> {
    ws: WebSocketStream<S>,
    id: Option<String>,
}

impl Client {
    /// Opens a WebSocket on `path` with extra request `headers`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Client, tokio_websockets::Error> {
        let mut builder = ClientBuilder::new()
            .uri(&format!("ws://{addr}{path}"))
            .expect("valid uri");
        for (name, value) in headers {
            builder = builder.add_header(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).expect("header"),
            )?;
        }
        let tcp = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")?;
        let (ws, _response) = timeout(WAIT, builder.connect_on(tcp))
            .await
            .expect("upgrade in time")?;
        Ok(Client { ws, id: None })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// The socket id from the handshake response.
    pub(crate) fn id(&self) -> &str {
        self.id.as_deref().expect("handshake done")
    }

    /// Sends the reference client's first frame and checks the response byte for byte
    /// (docs/protocol.md §4.3): `{"rid":1,"data":{"id":<20 chars>,"pingTimeout":<ms>,"isAuthenticated":false}}`.
    pub(crate) async fn handshake(&mut self, ping_timeout: u64) -> String {
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

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text.to_owned())).await;
    }

    pub(crate) async fn send_binary(&mut self, bytes: &[u8]) {
        self.send(Message::binary(bytes.to_vec())).await;
    }

    /// Sends a text frame whose payload is not valid UTF-8 (a protocol violation).
    pub(crate) async fn send_invalid_text(&mut self, bytes: &[u8]) {
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
    pub(crate) async fn close(mut self) {
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
    pub(crate) async fn send_close(&mut self, code: u16, reason: &str) {
        let code = tokio_websockets::CloseCode::try_from(code).expect("a valid close code");
        self.send(Message::close(Some(code), reason)).await;
    }

    /// The next data or close frame (control pings are skipped); panics after [`WAIT`].
    pub(crate) async fn recv(&mut self) -> Received {
        self.recv_within(WAIT)
            .await
            .expect("a frame within the wait bound")
    }

    /// The next data or close frame, or `None` if nothing arrives within `wait`.
    pub(crate) async fn recv_within(&mut self, wait: Duration) -> Option<Received> {
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
    pub(crate) async fn control_ping(&mut self, payload: &'static [u8]) -> Vec<u8> {
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
    pub(crate) async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Received::Text(text) => text,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next `n` text frames.
    pub(crate) async fn recv_texts(&mut self, n: usize) -> Vec<String> {
        let mut frames = Vec::with_capacity(n);
        for _ in 0..n {
            frames.push(self.recv_text().await);
        }
        frames
    }

    /// Waits for the server's close frame and returns its code and reason. Heartbeats before it
    /// are skipped; any other frame fails the test (the server must close without a word).
    pub(crate) async fn expect_close(&mut self) -> (u16, String) {
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
    pub(crate) async fn expect_nothing_before_echo(&mut self, cid: u64) {
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
    pub(crate) async fn subscribe(&mut self, channel: &str, cid: u64) {
        self.send_text(&format!(
            r##"{{"event":"#subscribe","data":{{"channel":"{channel}"}},"cid":{cid}}}"##
        ))
        .await;
        assert_eq!(self.recv_text().await, format!(r#"{{"rid":{cid}}}"#));
    }
}

/// The socket id of a handshake response, checked to be 20 URL-safe base64 characters.
pub(crate) fn handshake_id(response: &str) -> String {
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

/// An HTTP response read off a raw connection.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `request` (raw HTTP/1.1) and reads one response: head, then a `Content-Length` body
/// (or everything until the server closes).
pub(crate) async fn http_request(addr: SocketAddr, request: &str) -> HttpResponse {
    timeout(WAIT, async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut buffer = Vec::new();
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.expect("read response head");
            assert!(
                n > 0,
                "connection closed before a complete response head: {:?}",
                String::from_utf8_lossy(&buffer)
            );
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buffer[..head_end].to_vec()).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut body = buffer[head_end..].to_vec();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse());
        match length {
            Some(Ok(length)) => {
                while body.len() < length {
                    let mut chunk = [0u8; 4096];
                    let n = tcp.read(&mut chunk).await.expect("read body");
                    assert!(n > 0, "connection closed inside the body");
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(length);
            }
            _ if status == 101 => {}
            _ => {
                tcp.read_to_end(&mut body)
                    .await
                    .expect("read body to the end");
            }
        }
        HttpResponse {
            status,
            headers,
            body: String::from_utf8(body).expect("UTF-8 body"),
        }
    })
    .await
    .expect("an HTTP response within the wait bound")
}

/// A WebSocket upgrade request for `path`, with extra header lines (each ending in `\r\n`).
pub(crate) fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}
