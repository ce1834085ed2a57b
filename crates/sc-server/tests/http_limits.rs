//! The HTTP layer under abuse: requests that cannot be upgraded, silent and slow connections,
//! the cap on connections that did not upgrade, and permessage-deflate negotiation.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, WAIT, http_request, start_server, upgrade_request, v2};
use sc_server::ServerOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Options with short pre-upgrade timeouts (the defaults are 10 s).
fn strict() -> ServerOptions {
    ServerOptions {
        http_header_timeout: 300,
        http_idle_timeout: 300,
        ..v2()
    }
}

/// The status line's code of the response to `request`, read up to the end of the head only.
async fn status_of(addr: SocketAddr, request: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    timeout(WAIT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a response head");
            head.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response in time");
    let head = String::from_utf8_lossy(&head);
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Waits (bounded by [`WAIT`]) until the server closes `tcp`; returns how long that took.
async fn closed_by_server(tcp: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut sink = Vec::new();
    match timeout(WAIT, tcp.read_to_end(&mut sink)).await {
        Ok(_) => start.elapsed(),
        Err(_) => panic!("the server kept the connection open"),
    }
}

#[tokio::test]
async fn upgrades_that_cannot_succeed_are_400() {
    let ts = start_server(v2(), |_| {}).await;
    let good = upgrade_request("/socketcluster/", "");
    assert_eq!(status_of(ts.addr, &good).await, 101);
    let head = good.replacen("GET", "HEAD", 1);
    assert_eq!(status_of(ts.addr, &head).await, 400, "HEAD");
    let http10 = good.replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(status_of(ts.addr, &http10).await, 400, "HTTP/1.0");
    for key in [
        "dGhlIHNhbXBsZSBub25jZQ",       // not padded
        "dGhlIHNhbXBsZSBub25jZSE=",     // 17 bytes
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAA", // 21 bytes
        "!!!!!!!!!!!!!!!!!!!!!!==",     // not base64
        "",
    ] {
        let bad = good.replace("dGhlIHNhbXBsZSBub25jZQ==", key);
        assert_eq!(status_of(ts.addr, &bad).await, 400, "key {key:?}");
    }
}

#[tokio::test]
async fn silent_connections_are_closed() {
    let ts = start_server(strict(), |_| {}).await;
    let mut silent = TcpStream::connect(ts.addr).await.unwrap();
    closed_by_server(&mut silent).await;
    // A kept-alive connection that goes quiet after a response is closed too.
    let mut idle = TcpStream::connect(ts.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = [0; 12];
    idle.read_exact(&mut response).await.unwrap();
    assert_eq!(&response, b"HTTP/1.1 200");
    closed_by_server(&mut idle).await;
}

#[tokio::test]
async fn a_slowloris_header_is_cut_off() {
    let ts = start_server(strict(), |_| {}).await;
    let mut slow = TcpStream::connect(ts.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    // One header byte every 50 ms (for up to 10 s): always active, never done.
    let dripping = async {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if slow.write_all(b"X").await.is_err() {
                return true;
            }
        }
        false
    };
    let cut = timeout(WAIT, dripping).await.unwrap_or(false);
    assert!(cut, "the server kept reading a header that never ends");
}

#[tokio::test]
async fn connections_that_did_not_upgrade_are_capped() {
    let options = ServerOptions {
        max_pending_connections: 3,
        http_header_timeout: 60_000,
        http_idle_timeout: 60_000,
        ..v2()
    };
    let ts = start_server(options, |_| {}).await;
    // Upgraded WebSockets do not count against the cap.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(ts.client().await);
    }
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(ts.addr).await.unwrap());
    }
    // Let the server accept the three before the next one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = TcpStream::connect(ts.addr).await.unwrap();
    closed_by_server(&mut refused).await;
    // One of them goes away: there is room again.
    drop(silent.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = http_request(ts.addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(response.status, 200);
    assert!(response.body.contains("\"clients\":5"), "{}", response.body);
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_only_when_enabled_and_offered() {
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let off = start_server(v2(), |_| {}).await;
    let response = http_request(off.addr, &upgrade_request("/socketcluster/", offer)).await;
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-extensions"), None);

    let on = start_server(
        ServerOptions {
            per_message_deflate: true,
            ..v2()
        },
        |_| {},
    )
    .await;
    let response = http_request(on.addr, &upgrade_request("/socketcluster/", offer)).await;
    assert_eq!(response.status, 101);
    assert_eq!(
        response.header("sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let windowed = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n";
    let response = http_request(on.addr, &upgrade_request("/socketcluster/", windowed)).await;
    assert!(
        response
            .header("sec-websocket-extensions")
            .is_some_and(|v| v.ends_with("; server_max_window_bits=9"))
    );
    let response = http_request(on.addr, &upgrade_request("/socketcluster/", "")).await;
    assert_eq!(
        response.header("sec-websocket-extensions"),
        None,
        "not offered"
    );
    // A client without the extension is served as before.
    let mut plain = Client::connect(on.addr, "/socketcluster/", &[])
        .await
        .unwrap();
    plain.handshake(20_000).await;
}

#[tokio::test]
async fn a_connection_made_before_the_server_stops_gets_its_request_answered() {
    // A rolling restart stops a worker while clients keep connecting to the shared port: a
    // connection it already accepted (or the kernel queued for it) must not be dropped unanswered.
    let server = sc_server::Server::new(v2()).expect("valid options");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            let app = server.app(None);
            server
                .serve_until(listener, app, None, async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(status_of(addr, HEALTH).await, 200);
    // Connected, request not sent yet; then the server is told to stop.
    let mut early = TcpStream::connect(addr).await.unwrap();
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    early.write_all(HEALTH.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(WAIT, early.read_to_end(&mut response))
        .await
        .expect("answered in time")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the early connection was answered: {response:?}"
    );
    // It was the last: the listener is closed and serving ends.
    timeout(WAIT, serving)
        .await
        .expect("serving ends in time")
        .expect("task")
        .expect("serve_until");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no connection is accepted after the stop"
    );
}
