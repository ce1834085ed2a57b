//! Out of file descriptors (issue 12, defect 6): the accept loop says why it cannot accept (once
//! per interval, not once per attempt), open connections keep being served, and accepting resumes
//! once descriptors are free again.
//!
//! This file holds one test on purpose: it lowers its own process's `RLIMIT_NOFILE`, which no
//! other test shares (each integration test file is a process of its own).

mod common;

use std::time::Duration;

use common::{WAIT, http_request, start_server, v2};
use rustix::process::{Resource, getrlimit, setrlimit};
use sc_test_support::logs::Logs;
use tokio::net::{TcpSocket, TcpStream};

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[tokio::test]
async fn out_of_descriptors_the_server_logs_backs_off_serves_and_recovers() {
    let log = Logs::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let ts = start_server(v2(), |_| {}).await;
    let mut open = ts.client().await;

    // Client sockets made before the limit drops; connecting them needs no new descriptor,
    // accepting them does.
    let sockets: Vec<TcpSocket> = (0..40).map(|_| TcpSocket::new_v4().unwrap()).collect();
    let original = getrlimit(Resource::Nofile);
    let mut lowered = original;
    lowered.current = Some(open_fds() + 8);
    setrlimit(Resource::Nofile, lowered).unwrap();

    let mut connected: Vec<TcpStream> = Vec::new();
    for socket in sockets {
        connected.push(socket.connect(ts.addr).await.unwrap());
    }
    log.wait_for("cannot accept connections", WAIT).await;
    assert!(
        log.text().contains("out of file descriptors"),
        "{}",
        log.text()
    );

    // The open WebSocket is still served.
    open.send_text(r#"{"event":"echo","data":"still here","cid":2}"#)
        .await;
    assert_eq!(open.recv_text().await, r#"{"rid":2,"data":"still here"}"#);

    // More failed attempts (with back-off) do not log more lines within the interval.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lines = log.text().matches("cannot accept connections").count();
    assert_eq!(lines, 1, "{}", log.text());

    // Descriptors free up: the server accepts again, and serves new requests.
    connected.clear();
    log.wait_for("accepting connections again", WAIT).await;
    let response = http_request(ts.addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(response.status, 200);

    setrlimit(Resource::Nofile, original).unwrap();
}
