//! Issue 12, defect 5: tokens with times no clock can reach, and panics in a connection's task.
//! The server must answer instead of panicking, and a connection whose task does panic must still
//! be unregistered (so `/health` counts and graceful drains stay right) and closed with 1011.

mod common;

use common::{Client, Received, TestServer, start_server, v2};
use sc_server::{ServerOptions, SignOptions, Socket};
use serde_json::{Value, json};

fn with_key(options: ServerOptions) -> ServerOptions {
    ServerOptions {
        auth_key: Some("test-secret-key".into()),
        ..options
    }
}

fn sign(ts: &TestServer, claims: Value) -> String {
    ts.server
        .auth()
        .sign(&claims, &SignOptions::default())
        .expect("sign")
        .signed
}

/// Sends `#handshake` with `token` and returns the response's `data`.
async fn handshake_with(client: &mut Client, token: &str) -> Value {
    client
        .send_text(&format!(
            r##"{{"event":"#handshake","data":{{"authToken":"{token}"}},"cid":1}}"##
        ))
        .await;
    let response: Value = serde_json::from_str(&client.recv_text().await).expect("json");
    assert_eq!(response["rid"], 1);
    response["data"].clone()
}

#[tokio::test]
async fn an_exp_beyond_the_clock_never_expires_and_the_socket_still_unregisters() {
    let ts = start_server(with_key(v2()), |_| {}).await;
    for exp in [1u64 << 63, u64::MAX] {
        let token = sign(&ts, json!({ "username": "alice", "exp": exp }));
        let mut client = ts.connect().await;
        let data = handshake_with(&mut client, &token).await;
        assert_eq!(data["isAuthenticated"], true, "{data}");
        // Every event checks the token's expiry first: the check must not panic.
        client
            .send_text(r#"{"event":"echo","data":"still here","cid":2}"#)
            .await;
        assert_eq!(client.recv_text().await, r#"{"rid":2,"data":"still here"}"#);
        client.send_text("").await; // a v2 pong also checks the expiry
        client
            .send_text(r#"{"event":"echo","data":2,"cid":3}"#)
            .await;
        assert_eq!(client.recv_text().await, r#"{"rid":3,"data":2}"#);
        assert_eq!(ts.server.clients_count(), 1);
        client.close().await;
        ts.eventually("the socket is unregistered", |s| s.clients_count() == 0)
            .await;
    }
}

#[tokio::test]
async fn an_nbf_beyond_the_clock_is_not_active_yet_with_a_null_date() {
    let ts = start_server(with_key(v2()), |_| {}).await;
    let token = sign(&ts, json!({ "username": "alice", "nbf": u64::MAX }));
    let mut client = ts.connect().await;
    let data = handshake_with(&mut client, &token).await;
    assert_eq!(data["isAuthenticated"], false);
    assert_eq!(
        data["authError"],
        json!({"message": "jwt not active", "name": "AuthTokenNotBeforeError", "date": null, "isBadToken": false})
    );
    client
        .send_text(
            r##"{"event":"#authenticate","data":"TOKEN","cid":2}"##
                .replace("TOKEN", &token)
                .as_str(),
        )
        .await;
    let answer: Value = serde_json::from_str(&client.recv_text().await).expect("json");
    assert_eq!(
        answer["data"]["authError"]["name"],
        "AuthTokenNotBeforeError"
    );
    assert_eq!(ts.server.clients_count(), 1, "the connection lives on");
    client.close().await;
    ts.eventually("the socket is unregistered", |s| s.clients_count() == 0)
        .await;
}

#[tokio::test]
async fn a_panic_in_the_connection_task_closes_with_1011_and_unregisters() {
    let ts = start_server(v2(), |server| {
        server.on_connection(|socket: Socket| async move {
            if socket.id().is_empty() {
                return;
            }
            panic!("a bug in a connection handler");
        });
    })
    .await;
    let mut client = ts.connect().await;
    client
        .send_text(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)
        .await;
    // The handshake is answered before the connection handlers run; then the panic closes it.
    let handshake = client.recv_text().await;
    assert!(
        handshake.starts_with(r#"{"rid":1,"data":{"id":"#),
        "{handshake}"
    );
    let close = loop {
        match client.recv().await {
            Received::Text(text) if text.is_empty() => continue,
            other => break other,
        }
    };
    assert!(
        matches!(close, Received::Close(1011, _)),
        "expected close 1011, got {close:?}"
    );
    ts.eventually("the socket is unregistered", |s| s.clients_count() == 0)
        .await;
    // The server goes on serving.
    let mut again = ts.connect().await;
    again
        .send_text(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)
        .await;
    assert!(again.recv_text().await.starts_with(r#"{"rid":1,"#));
}
