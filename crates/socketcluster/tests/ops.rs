//! Production operations, end to end with the `socketcluster` binary: TLS on the same port
//! (HTTPS, WSS, certificate reload without dropping open connections, clear start errors),
//! Prometheus metrics of the whole instance, the admin procedure, JSON logs, staggered drain with
//! readiness. Certificates are made at test time with the `openssl` command.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sc_client::Client;
use sc_test_support::logs::Logs;
use sc_test_support::process::{capture_stderr, wait_listening};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_websockets::{ClientBuilder, Message};

const WAIT: Duration = Duration::from_secs(20);

/// The `socketcluster` binary, started with `--port 0 --host 127.0.0.1` and `args`.
struct Server {
    child: Child,
    port: u16,
    stderr: Logs,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_socketcluster"))
            .args(["--port", "0", "--host", "127.0.0.1"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start socketcluster");
        let log = capture_stderr(&mut child);
        let port = wait_listening(&mut child, || format!("; stderr:\n{}", log.text()));
        Server {
            child,
            port,
            stderr: log,
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal");
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/socketcluster/", self.port)
    }

    fn wait_exit(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "the master did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command is needed to make test certificates");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A test CA in `dir` (made once): `ca.crt`, `ca.key`.
fn ca(dir: &Path) -> PathBuf {
    let cert = dir.join("ca.crt");
    if !cert.exists() {
        let key = dir.join("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=sc test CA",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
    }
    cert
}

/// A certificate for `localhost` and 127.0.0.1 signed by the test CA: (cert.pem, key.pem).
fn make_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ca_cert = ca(dir);
    let ca_key = dir.join("ca.key");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext file");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca_cert.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}

fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("cert")
}

/// A TLS client trusting exactly `certs`.
fn connector(certs: &[&Path]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert_der(cert)).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(port: u16, connector: &TlsConnector) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake")
}

fn peer_cert(stream: &Tls) -> Vec<u8> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("peer certificate")
}

/// `GET path` over any stream: (status, body).
async fn get_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut bytes = Vec::new();
    // A peer that closes without close_notify ends the read with an error after the body.
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut bytes)).await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    (status, body.to_owned())
}

async fn get(port: u16, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    get_on(tcp, path).await
}

/// Reads WebSocket messages until one parses as JSON with `"rid": rid` (pings and other frames
/// are answered or skipped).
async fn await_rid<S>(ws: &mut tokio_websockets::WebSocketStream<S>, rid: u64) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(WAIT, async {
        while let Some(message) = ws.next().await {
            let message = message.expect("ws message");
            let Some(text) = message.as_text() else {
                continue;
            };
            if text == "#1" {
                ws.send(Message::text("#2")).await.expect("pong");
                continue;
            }
            if text.is_empty() {
                ws.send(Message::text("")).await.expect("pong");
                continue;
            }
            if let Ok(value) = serde_json::from_str::<Value>(text)
                && value["rid"] == rid
            {
                return value;
            }
        }
        panic!("connection closed before rid {rid}");
    })
    .await
    .expect("answer in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_wss_and_a_new_certificate_reaches_new_connections_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = make_cert(dir.path(), "live");
    let (cert_b, key_b) = make_cert(dir.path(), "next");
    let first = std::fs::read(&cert).expect("read");
    let server = Server::start(&[
        "--workers",
        "2",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let trust = connector(&[&ca(dir.path())]);

    // HTTPS on the port: health and a static file.
    let stream = tls_connect(server.port, &trust).await;
    assert_eq!(peer_cert(&stream), cert_der(&cert).to_vec());
    let (status, body) = get_on(stream, "/health").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (status, body) = get_on(tls_connect(server.port, &trust).await, "/").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<html") || body.contains("<!DOCTYPE"),
        "{body}"
    );
    // Plain HTTP on a TLS port does not get through.
    let plain = tokio::time::timeout(WAIT, get_on_raw(server.port)).await;
    assert!(plain.expect("answer or close in time").is_none());

    // WSS: a SocketCluster handshake and an echo over an open connection.
    let stream = tls_connect(server.port, &trust).await;
    let (mut ws, _) = ClientBuilder::new()
        .uri("wss://localhost/socketcluster/")
        .expect("uri")
        .connect_on(stream)
        .await
        .expect("WebSocket upgrade over TLS");
    ws.send(Message::text(
        r##"{"event":"#handshake","data":{},"cid":1}"##,
    ))
    .await
    .expect("send");
    let handshake = await_rid(&mut ws, 1).await;
    assert!(handshake["data"]["id"].is_string(), "{handshake}");

    // New files, then SIGHUP to the master: new connections get the new certificate.
    std::fs::copy(&cert_b, &cert).expect("replace cert");
    std::fs::copy(&key_b, &key).expect("replace key");
    server.signal(Signal::SIGHUP);
    let deadline = Instant::now() + WAIT;
    loop {
        let stream = tls_connect(server.port, &trust).await;
        if peer_cert(&stream) == cert_der(&cert_b).to_vec() {
            break;
        }
        assert_eq!(
            peer_cert(&stream),
            CertificateDer::from_pem_slice(&first).unwrap().to_vec()
        );
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every worker serves it (connections land on both through SO_REUSEPORT).
    for _ in 0..8 {
        let stream = tls_connect(server.port, &trust).await;
        assert_eq!(peer_cert(&stream), cert_der(&cert_b).to_vec());
    }
    // The connection opened before the reload is still served.
    ws.send(Message::text(
        r#"{"event":"echo","data":{"still":"here"},"cid":2}"#,
    ))
    .await
    .expect("send on the old connection");
    let echo = await_rid(&mut ws, 2).await;
    assert_eq!(echo["data"], json!({"still": "here"}));
}

/// Plain HTTP to a TLS port: `Some(status)` if an HTTP answer came back, `None` otherwise.
async fn get_on_raw(port: u16) -> Option<u16> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut bytes = vec![0; 64];
    let n = tcp.read(&mut bytes).await.ok()?;
    let text = String::from_utf8_lossy(&bytes[..n]).to_string();
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
}

fn start_error(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_socketcluster"))
        .args(["--port", "0", "--host", "127.0.0.1"])
        .args(args)
        .output()
        .expect("run");
    assert!(!output.status.success(), "must refuse to start: {args:?}");
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn bad_certificate_files_fail_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = make_cert(dir.path(), "a");
    let (_, other_key) = make_cert(dir.path(), "b");
    let missing = dir.path().join("missing.pem");
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let error = start_error(&["--tls-cert", missing.to_str().unwrap(), "--tls-key", key_s]);
    assert!(
        error.contains("cannot read TLS certificate file"),
        "{error}"
    );
    assert!(error.contains(missing.to_str().unwrap()), "{error}");

    let error = start_error(&["--tls-cert", cert_s, "--tls-key", missing.to_str().unwrap()]);
    assert!(
        error.contains("cannot read TLS private key file"),
        "{error}"
    );
    assert!(error.contains(missing.to_str().unwrap()), "{error}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").expect("write");
    let error = start_error(&["--tls-cert", cert_s, "--tls-key", garbage.to_str().unwrap()]);
    assert!(error.contains(garbage.to_str().unwrap()), "{error}");
    assert!(error.contains("private key"), "{error}");

    let error = start_error(&[
        "--tls-cert",
        cert_s,
        "--tls-key",
        other_key.to_str().unwrap(),
    ]);
    assert!(error.contains("does not match"), "{error}");
    assert!(error.contains(other_key.to_str().unwrap()), "{error}");
    assert!(error.contains(cert_s), "{error}");

    let error = start_error(&["--tls-cert", cert_s]);
    assert!(error.contains("tlsKey"), "{error}");

    // The environment works as the flags do.
    let output = Command::new(env!("CARGO_BIN_EXE_socketcluster"))
        .args(["--port", "0", "--host", "127.0.0.1"])
        .env("SOCKETCLUSTER_TLS_CERT", cert_s)
        .env("SOCKETCLUSTER_TLS_KEY", missing.to_str().unwrap())
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(missing.to_str().unwrap()));
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scrape_shows_every_worker_and_broker() {
    let server = Server::start(&["--workers", "2", "--brokers", "2"]);
    let mut clients = Vec::new();
    for i in 0..6 {
        let client = Client::connect(&server.url(), common::client_options())
            .await
            .expect("connect");
        let _channel = client.subscribe(&format!("room-{}", i % 2)).await;
        client
            .invoke("echo", json!(i))
            .await
            .expect("echo answered");
        clients.push(client);
    }
    let (status, text) = get(server.port, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    for name in [
        "socketcluster_connections",
        "socketcluster_handshakes",
        "socketcluster_disconnects",
        "socketcluster_messages_received",
        "socketcluster_messages_sent",
        "socketcluster_bytes_received",
        "socketcluster_bytes_sent",
        "socketcluster_publications",
        "socketcluster_subscriptions",
        "socketcluster_channels",
        "socketcluster_slow_consumer_disconnects",
        "socketcluster_middleware_rejections",
        "socketcluster_rpc_duration_seconds",
        "socketcluster_engine_up",
        "socketcluster_process_restarts",
        "socketcluster_process_cpu_seconds",
        "socketcluster_process_resident_memory_bytes",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{name} once in:\n{text}"
        );
    }
    for process in [
        "worker=\"0\"",
        "worker=\"1\"",
        "broker=\"0\"",
        "broker=\"1\"",
    ] {
        assert!(
            text.contains(&format!(
                "socketcluster_process_resident_memory_bytes{{{process}}}"
            )),
            "{process} missing:\n{text}"
        );
    }
    assert_eq!(sum(&text, "socketcluster_connections"), 6.0, "{text}");
    assert_eq!(sum(&text, "socketcluster_handshakes_total"), 6.0);
    assert_eq!(sum(&text, "socketcluster_subscriptions"), 6.0);
    assert_eq!(sum(&text, "socketcluster_rpc_duration_seconds_count"), 6.0);
    assert!(sum(&text, "socketcluster_messages_received_total") >= 18.0); // handshake, subscribe, echo
    assert!(sum(&text, "socketcluster_bytes_sent_total") > 0.0);
    assert_eq!(
        sample(
            &text,
            "socketcluster_process_restarts_total{role=\"worker\"}"
        ),
        Some(0.0)
    );
    assert!(text.ends_with("# EOF\n"));
    assert!(!text.contains("room-"), "no channel names in labels");

    // Closed sockets count by code; the gauge follows.
    for client in clients.drain(..3) {
        client.disconnect(4321, "bye").await.expect("disconnect");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, text) = get(server.port, "/metrics").await;
        if sum(&text, "socketcluster_connections") == 3.0 {
            assert_eq!(sum(&text, "socketcluster_disconnects_total"), 3.0, "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections gauge stuck:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_a_separate_address_and_off() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let server = Server::start(&["--workers", "1", "--metrics-addr", &addr.to_string()]);
    let (status, _) = get(server.port, "/metrics").await;
    assert_eq!(
        status, 404,
        "not on the main port when --metrics-addr is set"
    );
    let (status, text) = get(addr.port(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("socketcluster_connections{worker=\"0\"} 0"),
        "{text}"
    );
    drop(server);

    let server = Server::start(&["--metrics", "false"]);
    let (status, _) = get(server.port, "/metrics").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_procedure_opens_only_with_the_token_and_the_page_is_404_without_it() {
    let server = Server::start(&[]);
    assert_eq!(get(server.port, "/admin").await.0, 404);
    let client = Client::connect(&server.url(), common::client_options())
        .await
        .expect("connect");
    // Without --admin-token nobody answers the procedure.
    let unanswered = client
        .invoke_with_timeout(
            "sc-admin/stats",
            json!({"token": "x"}),
            Duration::from_millis(500),
        )
        .await;
    assert!(unanswered.is_err());
    drop(server);

    let server = Server::start_with_env(
        &["--workers", "2"],
        &[("SOCKETCLUSTER_ADMIN_TOKEN", "s3cret")],
    );
    let (status, page) = get(server.port, "/admin").await;
    assert_eq!(status, 200);
    assert!(page.contains("/admin/socketcluster.js"), "{page}");
    assert_eq!(get(server.port, "/admin/socketcluster.js").await.0, 200);
    let client = Client::connect(&server.url(), common::client_options())
        .await
        .expect("connect");
    let wrong = client
        .invoke("sc-admin/stats", json!({"token": "guess"}))
        .await
        .expect_err("a wrong token is refused");
    assert!(format!("{wrong:?}").contains("ForbiddenError"), "{wrong:?}");
    let report: Value = client
        .invoke("sc-admin/stats", json!({"token": "s3cret"}))
        .await
        .expect("the right token opens it")
        .expect("a report")
        .parse()
        .expect("json");
    let workers = report["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{report}");
    let total: u64 = workers
        .iter()
        .filter_map(|w| w["connections"].as_u64())
        .sum();
    assert_eq!(total, 1, "{report}");
    assert_eq!(report["engineUp"], true);
    assert!(server.stderr.text().contains("admin page: wrong token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_their_process_one_object_per_line() {
    let mut server = Server::start_with_env(
        &["--workers", "2", "--log-format", "json"],
        &[("RUST_LOG", "info")],
    );
    server.signal(Signal::SIGTERM);
    server.wait_exit();
    let log = server.stderr.text();
    let mut processes = std::collections::HashSet::new();
    for line in log.lines() {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["timestamp"].is_string() && value["level"].is_string(),
            "{line}"
        );
        processes.insert(value["process"].as_str().expect("process").to_owned());
    }
    for process in ["master", "worker 0", "worker 1", "broker 0"] {
        assert!(processes.contains(process), "{process} in {processes:?}");
    }
    // RUST_LOG filters: warn hides the info lines.
    let mut quiet = Server::start_with_env(&["--log-format", "json"], &[("RUST_LOG", "warn")]);
    quiet.signal(Signal::SIGTERM);
    quiet.wait_exit();
    assert!(!quiet.stderr.text().contains("\"level\":\"INFO\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_at_once_and_closes_clients_spread_over_the_drain() {
    let mut server = Server::start(&["--workers", "1", "--drain-duration", "2000"]);
    assert_eq!(get(server.port, "/health/ready").await.0, 200);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let client = Client::builder(server.url())
            .options(common::client_options())
            .auto_reconnect(false)
            .connect()
            .await
            .expect("connect");
        clients.push(client);
    }
    let mut events: Vec<_> = clients.iter().map(|c| c.events()).collect();
    server.signal(Signal::SIGTERM);
    // Readiness goes 503 while liveness stays 200.
    let deadline = Instant::now() + WAIT;
    loop {
        let (ready, _) = get(server.port, "/health/ready").await;
        if ready == 503 {
            assert_eq!(get(server.port, "/health").await.0, 200);
            break;
        }
        assert!(Instant::now() < deadline, "readiness never turned off");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Each client notes when its close arrives.
    let closed_at = futures_util::future::join_all(events.iter_mut().map(|stream| async move {
        let code = tokio::time::timeout(WAIT, async {
            while let Some(event) = stream.next().await {
                if let sc_client::ClientEvent::Disconnect { code, .. } = event {
                    return code;
                }
            }
            0
        })
        .await
        .expect("disconnect in time");
        assert_eq!(code, 1001);
        Instant::now()
    }))
    .await;
    // Not all at once: the drain spreads 20 closes over 2 s (a slow machine only spreads more).
    let first = closed_at.iter().min().unwrap();
    let last = closed_at.iter().max().unwrap();
    assert!(
        *last - *first >= Duration::from_millis(500),
        "closes were not spread: {:?}",
        *last - *first
    );
    server.wait_exit();
}
