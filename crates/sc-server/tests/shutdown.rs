//! Shutdown as a type: [`Server::drain`] wakes the moment the last client leaves, and
//! [`Server::serve_with_shutdown`] drains, then stops accepting.

mod common;

use std::time::Duration;

use common::{Client, WAIT, start_server, v2};
use sc_server::Server;

/// A drain bound far longer than any test waits: returning well before it proves the drain
/// woke when the last client left.
const LONG: Duration = Duration::from_secs(120);

#[tokio::test]
async fn drain_returns_when_the_last_client_leaves() {
    let ts = start_server(v2(), |_| {}).await;
    let clients = vec![ts.client().await, ts.client().await];
    let server = ts.server.clone();
    let drain = tokio::spawn(async move { server.drain(LONG).await });
    for mut client in clients {
        assert_eq!(
            client.expect_close().await,
            (1001, "Server is shutting down".to_owned())
        );
        // The client answers and goes: the server's last socket leaves.
        client.close().await;
    }
    let left = tokio::time::timeout(WAIT * 2, drain)
        .await
        .expect("the drain returned when the last client left, not at its timeout")
        .expect("drain task");
    assert_eq!(left, 0);
    assert_eq!(ts.server.clients_count(), 0);
    assert!(ts.server.is_draining(), "/health/ready stays 503");
}

#[tokio::test]
async fn drain_gives_up_at_its_timeout_and_counts_who_is_left() {
    let ts = start_server(v2(), |_| {}).await;
    // This client never reads, so it never answers the close frame: the server keeps its
    // socket for the close grace (2 s), far beyond the drain's bound.
    let _silent = ts.client().await;
    let left = ts.server.drain(Duration::from_millis(100)).await;
    assert_eq!(left, 1);
}

#[tokio::test]
async fn drain_of_an_idle_server_returns_at_once() {
    let ts = start_server(v2(), |_| {}).await;
    let left = tokio::time::timeout(WAIT, ts.server.drain(LONG))
        .await
        .expect("nothing to wait for");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn serve_with_shutdown_drains_then_stops_accepting() {
    let server = Server::new(v2()).expect("valid options");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            let signal = async move {
                let _ = stopped.await;
            };
            server
                .serve_with_shutdown(listener, server.app(None), signal, LONG)
                .await
        })
    };
    let mut client = Client::connect(addr, "/socketcluster/", &[])
        .await
        .expect("WebSocket upgrade");
    client.handshake(server.options().ping_timeout).await;
    assert_eq!(server.clients_count(), 1);

    stop.send(()).expect("the server waits for the signal");
    assert_eq!(
        client.expect_close().await,
        (1001, "Server is shutting down".to_owned())
    );
    client.close().await;
    let left = tokio::time::timeout(WAIT * 2, serving)
        .await
        .expect("serve_with_shutdown returned once the last client left")
        .expect("serving task")
        .expect("served without an I/O error");
    assert_eq!(left, 0);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
