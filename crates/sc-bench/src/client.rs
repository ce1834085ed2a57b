//! A minimal SocketCluster client over a raw WebSocket, built for load generation.
//!
//! It does only what the scenarios need, and cheaply: the `#handshake`, answering the heartbeats
//! of the dialect it was given (`#1` → `#2` or `""` → `""`, docs/protocol.md §6; a ping of the
//! other dialect is counted and left unanswered, as a client of that dialect does), `#subscribe`,
//! `#publish` and invokes
//! with cid bookkeeping. There is no reconnect, no outbound queue and no event emitter: a scenario
//! task owns its [`Client`] and drives it directly, reading with [`Client::recv`] and writing with
//! [`Client::feed`] / [`Client::flush`]. Frames are built with `sc_protocol::encode` and read with
//! [`Frame::decode_bytes`].

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use sc_protocol::{Codec, Frame, HeartbeatDialect, Json, Packet, ResponsePacket, encode, min_bin};
use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

/// Where and how to connect; shared by every connection of a run.
pub struct Target {
    url: String,
    addr: SocketAddr,
    builder: ClientBuilder<'static>,
    handshake_timeout: Duration,
    /// The `#handshake` data: `{"authToken":null}` or `{"authToken":"<jwt>"}`.
    handshake_data: String,
    /// Whether handshakes carry a token (and must then come back authenticated).
    with_token: bool,
    /// The wire codec of every connection.
    codec: Codec,
    /// The heartbeat dialect every connection speaks.
    dialect: HeartbeatDialect,
}

impl Target {
    /// Resolves `url` (a `ws://` URL whose host is a loopback address or `localhost`).
    pub async fn resolve(url: &str, handshake_timeout: Duration) -> Result<Target, ClientError> {
        let bad = |why: &str| ClientError::BadUrl(format!("{url}: {why}"));
        let builder = ClientBuilder::new()
            .uri(url)
            .map_err(|e| bad(&e.to_string()))?;
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| bad("only ws:// URLs are supported"))?;
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let host_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:80")
        } else {
            authority.to_owned()
        };
        let addrs = tokio::net::lookup_host(host_port.as_str())
            .await
            .map_err(|e| bad(&e.to_string()))?;
        let addrs: Vec<SocketAddr> = addrs.collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| bad("host did not resolve"))?;
        if !addr.ip().is_loopback() {
            return Err(bad(
                "not a loopback address; sc-bench only generates load on loopback",
            ));
        }
        Ok(Target {
            url: url.to_owned(),
            addr,
            builder,
            handshake_timeout,
            handshake_data: r#"{"authToken":null}"#.to_owned(),
            with_token: false,
            codec: Codec::Json,
            dialect: HeartbeatDialect::V2,
        })
    }

    /// Makes every handshake carry `token`; a handshake the server does not authenticate then
    /// fails with [`ClientError::NotAuthenticated`].
    pub fn set_auth_token(&mut self, token: &str) {
        let mut data = BytesMut::with_capacity(20 + token.len());
        data.put_slice(b"{\"authToken\":");
        encode::write_json_string(&mut data, token);
        data.put_u8(b'}');
        self.handshake_data = String::from_utf8_lossy(&data).into_owned();
        self.with_token = true;
    }

    /// Makes every connection speak `codec` (min-bin: MessagePack in binary frames).
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// Makes every connection speak the heartbeat `dialect` (protocol v1 or v2): it answers
    /// that dialect's pings only. A socketcluster-client 15+ (v2) does not answer the v1 ping
    /// `#1`, so a server detecting the dialect (`protocolVersion: auto`, whose first ping is a
    /// `#1` probe) settles on v2 for it; a 14.x client (v1) does not answer `""`.
    pub fn set_dialect(&mut self, dialect: HeartbeatDialect) {
        self.dialect = dialect;
    }

    /// Whether handshakes carry an auth token.
    pub fn has_auth_token(&self) -> bool {
        self.with_token
    }

    /// Resolves another `url` of the same deployment (e.g. a second instance), keeping this
    /// target's handshake timeout and auth token.
    pub async fn sibling(&self, url: &str) -> Result<Target, ClientError> {
        let mut other = Target::resolve(url, self.handshake_timeout).await?;
        other.handshake_data.clone_from(&self.handshake_data);
        other.with_token = self.with_token;
        other.codec = self.codec;
        other.dialect = self.dialect;
        Ok(other)
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Why a connection or one of its operations failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("bad --url {0}")]
    BadUrl(String),
    /// The TCP connection could not be made (nothing listening, no ports or descriptors left).
    #[error("cannot connect to {addr}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// The HTTP upgrade to WebSocket failed (wrong path, not a WebSocket server).
    #[error("WebSocket upgrade failed: {0}")]
    Upgrade(tokio_websockets::Error),
    /// No `#handshake` response arrived in time.
    #[error("no SocketCluster handshake response within {0:?}: is this a SocketCluster server?")]
    HandshakeTimeout(Duration),
    /// The server answered the handshake with an error.
    #[error("SocketCluster handshake rejected: {0}")]
    HandshakeRejected(String),
    /// The handshake carried a token but the server did not authenticate it.
    #[error(
        "the server did not accept the auth token (isAuthenticated is not true; authError: {0})"
    )]
    NotAuthenticated(String),
    /// The server sent something a SocketCluster server would not send.
    #[error("not a SocketCluster server: {0}")]
    NotSocketCluster(String),
    /// A request was answered with an error.
    #[error("{event} failed: {error}")]
    Failed {
        /// The event of the request.
        event: String,
        /// The error as the server sent it.
        error: String,
    },
    /// The server closed the connection.
    #[error("connection closed by the server (code {code}{reason})")]
    Closed {
        /// The close code (1005 if none was sent).
        code: u16,
        /// The close reason, with a leading `: ` when present.
        reason: String,
    },
    /// The WebSocket failed (I/O or protocol error).
    #[error("WebSocket error: {0}")]
    WebSocket(tokio_websockets::Error),
}

/// Heartbeat pings seen per dialect (a connection answers those of its own dialect), by one
/// connection or, summed with [`Heartbeats::add`], by several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heartbeats {
    /// `#1` pings (protocol v1).
    pub v1: u64,
    /// Empty-frame pings (protocol v2).
    pub v2: u64,
    /// How many connections the counts are of.
    pub connections: u64,
}

impl Heartbeats {
    /// The counts of one connection that has seen no ping yet.
    pub fn of_one_connection() -> Heartbeats {
        Heartbeats {
            connections: 1,
            ..Heartbeats::default()
        }
    }

    /// Adds another connection's (or group's) counts.
    pub fn add(&mut self, other: Heartbeats) {
        self.v1 += other.v1;
        self.v2 += other.v2;
        self.connections += other.connections;
    }

    /// Pings of both dialects.
    pub fn total(&self) -> u64 {
        self.v1 + self.v2
    }
}

/// One SocketCluster connection, after a successful handshake.
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    next_cid: u64,
    /// Cids sent and not answered yet. Responses arrive mostly in order, but nothing in the
    /// protocol promises it, so this is a set rather than a counter.
    pending: HashSet<u64>,
    heartbeats: Heartbeats,
    codec: Codec,
    dialect: HeartbeatDialect,
    /// Payload bytes of every data frame received (WebSocket headers not counted).
    bytes_in: u64,
}

impl Client {
    /// Connects to `target` (from `source` if given), performs the `#handshake` and waits for its
    /// response, all within the target's handshake timeout.
    pub async fn connect(target: &Target, source: Option<IpAddr>) -> Result<Client, ClientError> {
        let timeout = target.handshake_timeout;
        match tokio::time::timeout(timeout, Client::connect_unbounded(target, source)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::HandshakeTimeout(timeout)),
        }
    }

    async fn connect_unbounded(
        target: &Target,
        source: Option<IpAddr>,
    ) -> Result<Client, ClientError> {
        let addr = target.addr;
        let connect_error = |source| ClientError::Connect { addr, source };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(connect_error)?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).map_err(connect_error)?;
        }
        let stream = socket.connect(addr).await.map_err(connect_error)?;
        stream.set_nodelay(true).map_err(connect_error)?;
        let (ws, _response) = target
            .builder
            .connect_on(stream)
            .await
            .map_err(ClientError::Upgrade)?;
        let mut client = Client {
            ws,
            next_cid: 1,
            pending: HashSet::new(),
            heartbeats: Heartbeats::of_one_connection(),
            codec: target.codec,
            dialect: target.dialect,
            bytes_in: 0,
        };
        client
            .handshake(&target.handshake_data, target.with_token)
            .await?;
        Ok(client)
    }

    async fn handshake(&mut self, data: &str, with_token: bool) -> Result<(), ClientError> {
        let cid = self.take_cid();
        self.send(encode::event("#handshake", Some(data), Some(cid)))
            .await?;
        loop {
            match self.recv().await? {
                Frame::PingV1 | Frame::Empty => {}
                Frame::Packets(packets) => {
                    for packet in packets {
                        match packet {
                            Packet::Response(r) if r.rid == cid => {
                                self.pending.remove(&cid);
                                return match r.error {
                                    Some(error) => {
                                        Err(ClientError::HandshakeRejected(error.get().to_owned()))
                                    }
                                    None if with_token => check_authenticated(r.data.as_ref()),
                                    None => Ok(()),
                                };
                            }
                            // `#removeAuthToken` and the like may come first; anything else is odd.
                            Packet::Event(e) if e.event.starts_with('#') => {}
                            other => {
                                return Err(ClientError::NotSocketCluster(format!(
                                    "unexpected {other:?}"
                                )));
                            }
                        }
                    }
                }
                other => {
                    return Err(ClientError::NotSocketCluster(format!(
                        "unexpected frame {other:?}"
                    )));
                }
            }
        }
    }

    /// Reads the next frame. Heartbeat pings of the connection's dialect are answered before
    /// being returned (those of the other dialect are only counted); WebSocket control frames
    /// are handled by the WebSocket layer.
    pub async fn recv(&mut self) -> Result<Frame, ClientError> {
        loop {
            let message = match self.ws.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(ClientError::WebSocket(e)),
                None => {
                    return Err(ClientError::Closed {
                        code: 1006,
                        reason: String::new(),
                    });
                }
            };
            if let Some((code, reason)) = message.as_close() {
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                };
                return Err(ClientError::Closed {
                    code: u16::from(code),
                    reason,
                });
            }
            if !(message.is_text() || message.is_binary()) {
                continue;
            }
            let binary = message.is_binary();
            let bytes = Bytes::from(message.into_payload());
            self.bytes_in += bytes.len() as u64;
            let frame = if binary && self.codec == Codec::MinBin {
                min_bin::decode_frame(&bytes).map_err(|e| {
                    ClientError::NotSocketCluster(format!("undecodable min-bin frame: {e}"))
                })?
            } else {
                Frame::decode_bytes(bytes)
            };
            match frame {
                Frame::PingV1 => {
                    self.heartbeats.v1 += 1;
                    if self.dialect == HeartbeatDialect::V1 {
                        self.send(Bytes::from_static(b"#2")).await?;
                    }
                }
                Frame::Empty => {
                    self.heartbeats.v2 += 1;
                    if self.dialect == HeartbeatDialect::V2 {
                        self.send(Bytes::new()).await?;
                    }
                }
                _ => {}
            }
            return Ok(frame);
        }
    }

    /// Queues a text frame without flushing (the WebSocket layer flushes by itself past a
    /// threshold). Call [`Client::flush`] when done.
    pub async fn feed(&mut self, frame: Bytes) -> Result<(), ClientError> {
        let message = self.message(frame)?;
        self.ws.feed(message).await.map_err(ClientError::WebSocket)
    }

    /// A frame as a WebSocket message in this connection's codec: JSON text, or min-bin
    /// (binary; the v1 pong `#2` as the binary string, the v2 pong as an empty text frame).
    fn message(&self, frame: Bytes) -> Result<Message, ClientError> {
        Ok(match self.codec {
            Codec::Json => Message::text(frame),
            Codec::MinBin if frame.is_empty() => Message::text(frame),
            Codec::MinBin if &frame[..] == b"#2" => {
                Message::binary(Bytes::from_static(min_bin::PONG_V1))
            }
            Codec::MinBin => Message::binary(
                min_bin::encode_frame(&frame)
                    .map_err(|e| ClientError::NotSocketCluster(format!("min-bin encode: {e}")))?,
            ),
        })
    }

    /// Payload bytes received so far (data frames, heartbeats included).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Writes out everything queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.ws.flush().await.map_err(ClientError::WebSocket)
    }

    /// Sends one text frame now.
    pub async fn send(&mut self, frame: Bytes) -> Result<(), ClientError> {
        let message = self.message(frame)?;
        self.ws.send(message).await.map_err(ClientError::WebSocket)
    }

    /// Queues a request (an event with a fresh cid, recorded as pending) and returns its cid.
    pub async fn feed_invoke(&mut self, event: &str, data: &str) -> Result<u64, ClientError> {
        let cid = self.take_cid();
        self.feed(encode::event(event, Some(data), Some(cid)))
            .await?;
        Ok(cid)
    }

    /// Marks the request `rid` answered; false if no such request was pending.
    pub fn settle(&mut self, rid: u64) -> bool {
        self.pending.remove(&rid)
    }

    /// Sends a request and waits for its response; frames that arrive meanwhile are dropped.
    pub async fn call(&mut self, event: &str, data: &str) -> Result<ResponsePacket, ClientError> {
        let cid = self.feed_invoke(event, data).await?;
        self.flush().await?;
        loop {
            if let Frame::Packets(packets) = self.recv().await? {
                for packet in packets {
                    let Packet::Response(response) = packet else {
                        continue;
                    };
                    if !(self.settle(response.rid) && response.rid == cid) {
                        continue;
                    }
                    return match &response.error {
                        Some(error) => Err(ClientError::Failed {
                            event: event.to_owned(),
                            error: error.get().to_owned(),
                        }),
                        None => Ok(response),
                    };
                }
            }
        }
    }

    /// Signs in with the server's `login` procedure (`{"username": …}`) and returns the token the
    /// server sent with `#setAuthToken` (before or after the response, within `timeout`).
    pub async fn login(
        &mut self,
        username: &str,
        timeout: Duration,
    ) -> Result<String, ClientError> {
        let run = async {
            let mut data = BytesMut::with_capacity(16 + username.len());
            data.put_slice(b"{\"username\":");
            encode::write_json_string(&mut data, username);
            data.put_u8(b'}');
            let cid = self
                .feed_invoke("login", &String::from_utf8_lossy(&data))
                .await?;
            self.flush().await?;
            let (mut token, mut answered) = (None, false);
            while token.is_none() || !answered {
                let Frame::Packets(packets) = self.recv().await? else {
                    continue;
                };
                for packet in packets {
                    match packet {
                        Packet::Event(e) if e.event == "#setAuthToken" => {
                            #[derive(serde::Deserialize)]
                            struct SetAuthToken {
                                token: String,
                            }
                            token = e
                                .data
                                .as_ref()
                                .and_then(|d| d.parse::<SetAuthToken>().ok())
                                .map(|d| d.token);
                        }
                        Packet::Response(r) if r.rid == cid => {
                            self.settle(cid);
                            if let Some(error) = r.error {
                                return Err(ClientError::Failed {
                                    event: "login".into(),
                                    error: error.get().to_owned(),
                                });
                            }
                            answered = true;
                        }
                        _ => {}
                    }
                }
            }
            Ok(token.unwrap_or_default())
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Failed {
                event: "login".into(),
                error: format!("no #setAuthToken and response within {timeout:?}"),
            }),
        }
    }

    /// Subscribes to `channel` and waits for the acknowledgement.
    pub async fn subscribe(&mut self, channel: &str) -> Result<(), ClientError> {
        let mut data = BytesMut::with_capacity(16 + channel.len());
        data.put_slice(b"{\"channel\":");
        encode::write_json_string(&mut data, channel);
        data.put_u8(b'}');
        // Built from a JSON string literal, so always UTF-8.
        let data = std::str::from_utf8(&data).unwrap_or_default();
        self.call("#subscribe", data).await.map(|_| ())
    }

    /// Heartbeat pings seen so far.
    pub fn heartbeats(&self) -> Heartbeats {
        self.heartbeats
    }

    /// Closes the connection politely (close frame 1000), without waiting long for the server.
    pub async fn close(mut self) {
        let close = self.ws.send(Message::close(
            Some(tokio_websockets::CloseCode::NORMAL_CLOSURE),
            "",
        ));
        let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    }

    fn take_cid(&mut self) -> u64 {
        let cid = self.next_cid;
        self.next_cid += 1;
        self.pending.insert(cid);
        cid
    }
}

/// Checks a handshake response's data for `"isAuthenticated":true`.
fn check_authenticated(data: Option<&Json>) -> Result<(), ClientError> {
    #[derive(serde::Deserialize)]
    struct Status<'a> {
        #[serde(rename = "isAuthenticated", default)]
        is_authenticated: bool,
        #[serde(rename = "authError", borrow, default)]
        auth_error: Option<&'a serde_json::value::RawValue>,
    }
    let text = data.map(Json::get).unwrap_or("null");
    match serde_json::from_str::<Status<'_>>(text) {
        Ok(status) if status.is_authenticated => Ok(()),
        Ok(status) => Err(ClientError::NotAuthenticated(
            status.auth_error.map_or("none", |e| e.get()).to_owned(),
        )),
        Err(_) => Err(ClientError::NotSocketCluster(format!(
            "handshake response data {text}"
        ))),
    }
}

/// The data of a `#publish` request: `{"channel":<channel>,"data":<payload>}`, built around a
/// prefix encoded once per channel.
#[derive(Debug, Clone)]
pub struct PublishEncoder {
    prefix: Bytes,
}

impl PublishEncoder {
    /// An encoder for publications to `channel`.
    pub fn new(channel: &str) -> PublishEncoder {
        let mut prefix = BytesMut::with_capacity(24 + channel.len());
        prefix.put_slice(b"{\"channel\":");
        encode::write_json_string(&mut prefix, channel);
        prefix.put_slice(b",\"data\":");
        PublishEncoder {
            prefix: prefix.freeze(),
        }
    }

    /// The `#publish` data carrying `payload` (which must be one JSON value).
    pub fn data(&self, payload: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + payload.len() + 1);
        // The prefix is built from UTF-8 pieces only.
        out.push_str(std::str::from_utf8(&self.prefix).unwrap_or_default());
        out.push_str(payload);
        out.push('}');
        out
    }
}

/// A benchmark message: sequence number and send time, padded with `x` up to a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct Probe {
    /// Sequence number, from 0.
    #[serde(rename = "s")]
    pub seq: u64,
    /// Send time, [`crate::stats::now_micros`].
    #[serde(rename = "t")]
    pub sent_micros: u64,
}

impl Probe {
    /// `{"s":<seq>,"t":<sent>,"p":"xxx…"}`, padded so that the text is `size` bytes long (or as
    /// short as it can be, when `size` is smaller).
    pub fn encode(self, size: usize) -> String {
        let mut out = format!(r#"{{"s":{},"t":{},"p":""#, self.seq, self.sent_micros);
        let pad = size.saturating_sub(out.len() + 2);
        out.extend(std::iter::repeat_n('x', pad));
        out.push_str("\"}");
        out
    }

    /// Reads a probe back from a payload.
    pub fn decode(payload: &Json) -> Option<Probe> {
        Probe::decode_text(payload.get())
    }

    /// Reads a probe from JSON text: a fast path for the exact layout [`Probe::encode`] writes
    /// (this runs once per delivery), and serde for anything else (a server may re-serialise).
    fn decode_text(text: &str) -> Option<Probe> {
        fn number(text: &str) -> Option<(u64, &str)> {
            let end = text.find(|c: char| !c.is_ascii_digit())?;
            Some((text[..end].parse().ok()?, &text[end..]))
        }
        let fast = || {
            let (seq, rest) = number(text.strip_prefix(r#"{"s":"#)?)?;
            let (sent_micros, rest) = number(rest.strip_prefix(r#","t":"#)?)?;
            rest.starts_with(r#","p":""#)
                .then_some(Probe { seq, sent_micros })
        };
        fast().or_else(|| serde_json::from_str(text).ok())
    }
}

/// A `#publish` delivery as a receiver reads it (docs/protocol.md §7.5); the payload stays unparsed.
#[derive(Debug, serde::Deserialize)]
struct Delivery<'a> {
    #[serde(borrow)]
    channel: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// If `packet` is a `#publish` delivery, what it carries: `Some(Some(probe))` for a [`Probe`] on
/// `channel`, `Some(None)` for a delivery that is not one of ours (other channel or payload),
/// `None` for any other packet.
pub fn delivered_probe(packet: &Packet, channel: &str) -> Option<Option<Probe>> {
    let Packet::Event(event) = packet else {
        return None;
    };
    if event.event != "#publish" {
        return None;
    }
    let delivery = event
        .data
        .as_ref()
        .and_then(|d| serde_json::from_slice::<Delivery<'_>>(d.as_bytes()).ok());
    Some(
        delivery
            .filter(|d| d.channel == channel)
            .and_then(|d| Probe::decode_text(d.data.get())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_is_padded_and_round_trips() {
        let probe = Probe {
            seq: 42,
            sent_micros: 123_456,
        };
        let text = probe.encode(64);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with(r#"{"s":42,"t":123456,"p":"xxx"#));
        let json = Json::from_text(&text).unwrap();
        assert_eq!(Probe::decode(&json), Some(probe));
        // Re-serialised by a server (other key order, whitespace): the slow path still reads it.
        let reordered = Json::from_text(r#"{ "p": "x", "t": 123456, "s": 42 }"#).unwrap();
        assert_eq!(Probe::decode(&reordered), Some(probe));
        assert_eq!(
            Probe::decode(&Json::from_text(r#"{"s":"42"}"#).unwrap()),
            None
        );
        assert_eq!(probe.encode(1), r#"{"s":42,"t":123456,"p":""}"#);
    }

    #[test]
    fn publish_data_and_deliveries() {
        let encoder = PublishEncoder::new("bench-\"q");
        let payload = Probe {
            seq: 7,
            sent_micros: 9,
        }
        .encode(0);
        let data = encoder.data(&payload);
        assert_eq!(
            data,
            format!(r#"{{"channel":"bench-\"q","data":{payload}}}"#)
        );

        let delivery = format!(r##"{{"event":"#publish","data":{data}}}"##);
        let Frame::Packets(packets) = Frame::decode(&delivery) else {
            panic!()
        };
        assert_eq!(
            delivered_probe(&packets[0], "bench-\"q"),
            Some(Some(Probe {
                seq: 7,
                sent_micros: 9
            }))
        );
        assert_eq!(delivered_probe(&packets[0], "other"), Some(None));

        let Frame::Packets(packets) =
            Frame::decode(r##"{"event":"#publish","data":{"channel":"c","data":1}}"##)
        else {
            panic!()
        };
        assert_eq!(delivered_probe(&packets[0], "c"), Some(None));
        let Frame::Packets(packets) = Frame::decode(r#"{"rid":3}"#) else {
            panic!()
        };
        assert_eq!(delivered_probe(&packets[0], "c"), None);
    }
}
