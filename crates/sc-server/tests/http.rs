//! The HTTP side: upgrade path, origin check, health endpoint, plain requests (docs/protocol.md §1).

mod common;

use common::{Client, http_request, start_server, upgrade_request, v2};
use sc_server::ServerOptions;

#[tokio::test]
async fn upgrade_on_the_path_switches_protocols() {
    let ts = start_server(v2(), |_| {}).await;
    let response = http_request(ts.addr, &upgrade_request("/socketcluster/", "")).await;
    assert_eq!(response.status, 101);
    assert_eq!(response.header("upgrade"), Some("websocket"));
    // RFC 6455's example key and its accept value.
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        response.header("sec-websocket-extensions"),
        None,
        "no permessage-deflate"
    );
}

#[tokio::test]
async fn upgrade_without_trailing_slash_is_400() {
    let ts = start_server(v2(), |_| {}).await;
    let response = http_request(ts.addr, &upgrade_request("/socketcluster", "")).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.body, "Bad Request");
    let response = http_request(ts.addr, &upgrade_request("/elsewhere/", "")).await;
    assert_eq!(response.status, 400);
    assert!(
        Client::connect(ts.addr, "/socketcluster", &[])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn query_string_is_ignored_for_routing_and_kept_for_the_application() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = Client::connect(ts.addr, "/socketcluster/?foo=bar&arr=x&arr=y", &[])
        .await
        .expect("upgrade");
    client.handshake(20_000).await;
    let socket = ts.socket(&client);
    assert_eq!(socket.request().uri.query(), Some("foo=bar&arr=x&arr=y"));
    assert!(
        socket
            .request()
            .remote_addr
            .is_some_and(|a| a.ip().is_loopback())
    );
}

#[tokio::test]
async fn invalid_origin_is_403_with_the_reference_body() {
    let ts = start_server(
        ServerOptions {
            origins: "allowed.com:443".into(),
            ..v2()
        },
        |_| {},
    )
    .await;
    let response = http_request(
        ts.addr,
        &upgrade_request("/socketcluster/", "Origin: http://evil.com\r\n"),
    )
    .await;
    assert_eq!(response.status, 403);
    assert_eq!(response.header("content-type"), Some("text/html"));
    assert_eq!(
        response.body,
        "Failed to authorize socket handshake - Invalid origin: http://evil.com"
    );

    // A missing Origin is `*`, which only `*:*` allows.
    let response = http_request(ts.addr, &upgrade_request("/socketcluster/", "")).await;
    assert_eq!(response.status, 403);
    assert_eq!(
        response.body,
        "Failed to authorize socket handshake - Invalid origin: *"
    );

    // The allowed origin connects.
    let mut client = Client::connect(
        ts.addr,
        "/socketcluster/",
        &[("origin", "https://allowed.com")],
    )
    .await
    .expect("an allowed origin is upgraded");
    client.handshake(20_000).await;
}

#[tokio::test]
async fn health_reports_status_and_clients() {
    let ts = start_server(v2(), |_| {}).await;
    let _a = ts.client().await;
    let _b = ts.client().await;
    let response = http_request(
        ts.addr,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let health: serde_json::Value = serde_json::from_str(&response.body).expect("JSON body");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["clients"], 2);
    assert_eq!(health["connectionsTotal"], 2);
    assert_eq!(health["protocolVersion"], "2");
}

#[tokio::test]
async fn plain_get_on_the_path_is_refused_without_harm() {
    let ts = start_server(v2(), |_| {}).await;
    let request = "GET /socketcluster/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let response = http_request(ts.addr, request).await;
    // The reference's standalone server answers 501; a client error is as good: no upgrade.
    assert!(
        matches!(response.status, 400 | 426 | 501),
        "status {}",
        response.status
    );
    // An upgrade missing its key or with a wrong version is refused too.
    let request = "GET /socketcluster/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(http_request(ts.addr, request).await.status, 400);
    let request = upgrade_request("/socketcluster/", "").replace("Version: 13", "Version: 8");
    assert_eq!(http_request(ts.addr, &request).await.status, 400);
    // The server still serves.
    ts.client().await.expect_nothing_before_echo(2).await;
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let ts = start_server(v2(), |_| {}).await;
    let response = http_request(
        ts.addr,
        "GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 404);
}
