//! Entry points of the fuzz targets, one function per target, each taking the fuzzer's bytes.
//!
//! The same file is compiled into `crates/sc-server/tests/fuzz_corpus.rs`, which replays every
//! input of `fuzz/corpus/<target>` and `fuzz/regressions/<target>` through [`run`] under
//! `cargo test`: a crash found once stays a regression test.
//!
//! Besides "does not panic", each entry checks a property that must hold for every input.

use std::time::{Duration, SystemTime};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};

/// Every target, by name (the `fuzz/corpus` and `fuzz/regressions` folder names).
pub const TARGETS: &[&str] = &[
    "ws_frames",
    "http_upgrade",
    "sc_packets",
    "jwt_verify",
    "broker_ipc",
    "min_bin",
    "inflate",
];

/// Runs the entry point of `target` on `data`.
///
/// # Panics
///
/// On an unknown target, and wherever the entry point finds a bug.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "ws_frames" => ws_frames(data),
        "http_upgrade" => http_upgrade(data),
        "sc_packets" => sc_packets(data),
        "jwt_verify" => jwt_verify(data),
        "broker_ipc" => broker_ipc(data),
        "min_bin" => min_bin(data),
        "inflate" => inflate(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// The WebSocket frame parser and message assembly. Input: one byte `k`, then `k % 8` split
/// points (2 bytes each), one byte choosing `maxPayload`, then the client's byte stream.
///
/// Property: how the stream is split into reads never changes what the parser yields.
pub fn ws_frames(data: &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let splits = usize::from(k % 8);
    if rest.len() < splits * 2 + 1 {
        return;
    }
    let (points, rest) = rest.split_at(splits * 2);
    let max_payload = match rest[0] % 4 {
        0 => 16,
        1 => 200,
        2 => 70_000,
        _ => 1 << 20,
    };
    let stream = &rest[1..];
    let mut cuts: Vec<usize> = points
        .chunks(2)
        .map(|p| usize::from(u16::from_be_bytes([p[0], p[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(&stream[start..cut]);
        start = cut;
    }
    chunks.push(&stream[start..]);

    let split = sc_server::fuzzing::ws_read(&chunks, max_payload);
    let whole = sc_server::fuzzing::ws_read(&[stream], max_payload);
    assert_eq!(split, whole, "the split into reads changed the outcome");
    for event in &whole {
        if let sc_server::fuzzing::WsEvent::Text(text) = event {
            assert!(std::str::from_utf8(text).is_ok(), "text must be UTF-8");
            assert!(text.len() <= max_payload, "a message over maxPayload");
        }
    }
}

/// HTTP requests to a server's app (static routes, `/health`, the WebSocket upgrade), over an
/// in-memory connection. Input: a 0 byte then raw request bytes, or a structured request.
///
/// Property: every request is answered (or the connection closed) without a panic, and a 101
/// carries the `Sec-WebSocket-Accept` of its key.
pub fn http_upgrade(data: &[u8]) {
    let request = match data.split_first() {
        Some((0, raw)) => raw.to_vec(),
        _ => match UpgradeRequest::arbitrary(&mut Unstructured::new(data)) {
            Ok(request) => request.render(),
            Err(_) => return,
        },
    };
    HTTP.with(|http| http.exchange(&request));
}

/// A structured HTTP request, mostly close to a WebSocket upgrade.
#[derive(Debug, Arbitrary)]
struct UpgradeRequest {
    method: u8,
    path: u8,
    version: u8,
    headers: Vec<(u8, String)>,
    body: Vec<u8>,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "OPTIONS", "G\0T", "get"];
const PATHS: &[&str] = &[
    "/socketcluster/",
    "/socketcluster/?x=1",
    "/",
    "/health",
    "/../../etc/passwd",
    "//socketcluster/",
    "*",
];
const VERSIONS: &[&str] = &["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x"];
const HEADERS: &[&str] = &[
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Origin",
    "Content-Length",
    "Transfer-Encoding",
    "X-Forwarded-For",
];

impl UpgradeRequest {
    fn render(&self) -> Vec<u8> {
        let pick = |list: &[&'static str], i: u8| list[usize::from(i) % list.len()];
        let mut out = format!(
            "{} {} {}\r\n",
            pick(METHODS, self.method),
            pick(PATHS, self.path),
            pick(VERSIONS, self.version)
        );
        // A valid upgrade unless the fuzzer's headers change it.
        if self.version % 2 == 0 {
            out.push_str("Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
            out.push_str(
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            );
        }
        for (name, value) in self.headers.iter().take(16) {
            out.push_str(pick(HEADERS, *name));
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// One runtime and one server for every HTTP input of a thread.
struct Http {
    runtime: tokio::runtime::Runtime,
    server: sc_server::Server,
}

thread_local! {
    static HTTP: Http = Http::new();
}

impl Http {
    fn new() -> Http {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime.block_on(async {
            sc_server::Server::new(sc_server::ServerOptions::default()).expect("server")
        });
        Http { runtime, server }
    }

    fn exchange(&self, request: &[u8]) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tower::ServiceExt;
        let app = self.server.app(None);
        let response = self.runtime.block_on(async move {
            let (mut client, server_io) = tokio::io::duplex(1 << 16);
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server_io), service)
                .with_upgrades();
            let serving = tokio::spawn(connection);
            let exchange = async {
                let _ = client.write_all(request).await;
                let _ = client.shutdown().await;
                let mut response = Vec::new();
                let _ = client.read_to_end(&mut response).await;
                response
            };
            let response = tokio::time::timeout(Duration::from_secs(5), exchange)
                .await
                .unwrap_or_default();
            serving.abort();
            response
        });
        if response.starts_with(b"HTTP/1.1 101") {
            let head = String::from_utf8_lossy(&response);
            assert!(
                head.to_ascii_lowercase().contains("sec-websocket-accept: "),
                "a 101 without Sec-WebSocket-Accept: {head}"
            );
        }
    }
}

/// The SocketCluster JSON packet decoder and the protocol events' data parsers.
///
/// Property: decoding the same bytes twice gives the same frame, and a `#publish` read in one
/// pass ([`sc_protocol::frame::PublishPacket`]) is the one the generic path reads.
pub fn sc_packets(data: &[u8]) {
    use sc_protocol::Frame;
    use sc_protocol::frame::{HandshakeData, Packet, PublishData, PublishPacket, SubscribeData};
    let bytes = Bytes::copy_from_slice(data);
    let frame = Frame::decode_bytes(bytes.clone());
    assert_eq!(
        format!("{frame:?}"),
        format!("{:?}", Frame::decode_bytes(bytes.clone()))
    );
    // A publish read in one pass is the publish the generic path reads, delivered as the same
    // frame.
    if let Some(publish) = PublishPacket::decode(&bytes) {
        let Frame::Packets(packets) = &frame else {
            panic!("one pass read a publish, the generic path {frame:?}")
        };
        let [Packet::Event(event)] = &packets[..] else {
            panic!("one pass read a publish, the generic path {packets:?}")
        };
        assert_eq!(event.event, "#publish");
        let generic = PublishPacket::from_event(event).expect("a well-formed publish");
        assert_eq!(publish.channel(), generic.channel());
        assert_eq!(publish.data(), generic.data());
        assert_eq!(publish.cid(), generic.cid());
        assert_eq!(publish.publication().frame(), generic.publication().frame());
    }
    if let Frame::Packets(packets) = frame {
        for packet in packets {
            if let Packet::Event(event) = packet {
                let data = event.data.as_ref();
                let _ = HandshakeData::parse(data);
                let _ = SubscribeData::parse(data);
                let _ = PublishData::parse(data);
                if let Some(json) = data {
                    let _ = json.as_string();
                    let _ = json.parse::<serde_json::Value>();
                }
            }
        }
    }
}

/// The JWT verification entry point. Input: a 0 byte then a raw token, or structured claims that
/// are signed (validly), optionally tampered with, then verified.
///
/// Property: verification never panics, nor do the expiry check and the error as sent to clients;
/// an untampered token with neither `exp` nor `nbf` verifies.
pub fn jwt_verify(data: &[u8]) {
    let engine = JWT.with(|engine| engine.clone());
    if let Some((0, raw)) = data.split_first() {
        let token = String::from_utf8_lossy(raw);
        check_token(&engine, &token);
        let _ = engine.verify(&sc_protocol::Json::string(&token));
        if let Ok(json) = std::str::from_utf8(raw)
            .map_err(drop)
            .and_then(|s| sc_protocol::Json::from_text(s).map_err(drop))
        {
            let _ = engine.verify(&json);
        }
        return;
    }
    let Ok(input) = Claims::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let mut claims = serde_json::Map::new();
    for (name, value) in [
        ("exp", &input.exp),
        ("nbf", &input.nbf),
        ("iat", &input.iat),
    ] {
        if let Some(value) = value.as_ref().and_then(ClaimValue::to_json) {
            claims.insert(name.to_owned(), value);
        }
    }
    for (name, value) in input.extra.iter().take(8) {
        // Only the time claims are checked; a string `nbf` is rightly refused ("invalid nbf").
        if !["exp", "nbf", "iat"].contains(&name.as_str()) {
            claims.insert(name.clone(), serde_json::Value::String(value.clone()));
        }
    }
    let plain = input.exp.is_none() && input.nbf.is_none() && input.tamper.is_none();
    let signed = match engine.sign(&serde_json::Value::Object(claims), &Default::default()) {
        Ok(token) => token.signed,
        Err(_) => return,
    };
    let signed = match input.tamper {
        Some((at, byte)) => {
            let mut bytes = signed.into_bytes();
            let at = usize::from(at) % bytes.len();
            bytes[at] = byte;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => signed,
    };
    let verified = check_token(&engine, &signed);
    if plain {
        assert!(
            verified,
            "a fresh token without exp/nbf must verify: {signed}"
        );
    }
}

thread_local! {
    static JWT: std::sync::Arc<sc_server::AuthEngine> = std::sync::Arc::new(
        sc_server::AuthEngine::from_options(&sc_server::ServerOptions {
            auth_key: Some("fuzz-key".into()),
            ..Default::default()
        })
        .expect("auth engine"),
    );
}

/// Verifies `token` and exercises what the server does with the outcome; whether it verified.
fn check_token(engine: &sc_server::AuthEngine, token: &str) -> bool {
    match engine.verify_str(token) {
        Ok(token) => {
            let _ = token.expiry();
            let _ = token.is_expired_at(SystemTime::now());
            let _ = token.claims_json();
            true
        }
        Err(error) => {
            let _ = error.is_bad_token();
            let _ = error.to_sc_error(true).to_json();
            let _ = error.to_sc_error(false).to_json();
            false
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Claims {
    exp: Option<ClaimValue>,
    nbf: Option<ClaimValue>,
    iat: Option<ClaimValue>,
    extra: Vec<(String, String)>,
    tamper: Option<(u16, u8)>,
}

#[derive(Debug, Arbitrary)]
enum ClaimValue {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
    Near(i32),
}

impl ClaimValue {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(match self {
            ClaimValue::Unsigned(n) => (*n).into(),
            ClaimValue::Signed(n) => (*n).into(),
            ClaimValue::Float(f) => serde_json::Number::from_f64(*f)?.into(),
            ClaimValue::Text(s) => s.clone().into(),
            ClaimValue::Near(delta) => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                now.saturating_add_signed(i64::from(*delta)).into()
            }
        })
    }
}

/// The broker IPC protocol: frame splitting (length-delimited) and both message decoders.
///
/// Property: whatever decodes re-encodes to a message that decodes to the same value.
pub fn broker_ipc(data: &[u8]) {
    use sc_broker::process::{BrokerMessage, WorkerMessage};
    use tokio_util::codec::Decoder;
    let body = Bytes::copy_from_slice(data);
    if let Ok(message) = WorkerMessage::decode(body.clone()) {
        assert_eq!(WorkerMessage::decode(message.encode()).ok(), Some(message));
    }
    if let Ok(message) = BrokerMessage::decode(body) {
        assert_eq!(BrokerMessage::decode(message.encode()).ok(), Some(message));
    }
    let mut codec = sc_broker::process::protocol::codec();
    let mut buffer = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buffer) {
        let _ = WorkerMessage::decode(frame.clone().freeze());
        let _ = BrokerMessage::decode(frame.freeze());
    }
}

/// The min-bin (`sc-codec-min-bin`) decoder: a client's binary frame as the server reads it.
///
/// Property: decoding is deterministic, a frame that decodes gives valid JSON text, and that JSON
/// transcoded back to min-bin decodes to the same JSON (what the server forwards is stable).
pub fn min_bin(data: &[u8]) {
    use sc_protocol::min_bin;
    let bytes = Bytes::copy_from_slice(data);
    let frame = min_bin::decode_frame(&bytes);
    assert_eq!(
        format!("{frame:?}"),
        format!("{:?}", min_bin::decode_frame(&bytes))
    );
    if let Ok(json) = min_bin::to_json(data) {
        let value: serde_json::Value =
            serde_json::from_slice(json.as_bytes()).expect("to_json gives valid JSON");
        let again = min_bin::encode_value(&json).expect("valid JSON encodes");
        let back = min_bin::value_to_json(&again).expect("our own encoding decodes");
        let back: serde_json::Value = serde_json::from_slice(back.as_bytes()).expect("JSON");
        // Integers beyond i64 go back out as float64, as msgpack-lite writes every number that
        // is not a 32-bit integer: compare numbers as JavaScript would, by their double value.
        assert_eq!(
            as_javascript_numbers(value),
            as_javascript_numbers(back),
            "JSON → min-bin → JSON changed the value"
        );
    }
    let _ = min_bin::value_to_json(data);
}

/// `value` with every number replaced by its double, as a JavaScript client reads it.
fn as_javascript_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(as_javascript_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, as_javascript_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The permessage-deflate inflater. Input: one byte choosing the limit (`maxPayload`), then a
/// compressed message.
///
/// Property: the output never exceeds the limit (a zip bomb stops there), and what inflates,
/// compressed again at any window size, inflates to the same bytes.
pub fn inflate(data: &[u8]) {
    let Some((&k, compressed)) = data.split_first() else {
        return;
    };
    let max_len = match k % 4 {
        0 => 16,
        1 => 1024,
        2 => 70_000,
        _ => 1 << 20,
    };
    match sc_server::fuzzing::inflate(compressed, max_len) {
        Ok(plain) => {
            assert!(plain.len() <= max_len, "inflated past the limit");
            let window_bits = 9 + k % 7;
            let again = sc_server::fuzzing::deflate(&plain, window_bits);
            assert_eq!(
                sc_server::fuzzing::inflate(&again, max_len),
                Ok(plain),
                "deflate → inflate is not the identity"
            );
        }
        Err(_too_long_or_invalid) => {}
    }
}
