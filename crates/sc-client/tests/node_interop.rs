//! The client against the Node.js reference server (socketcluster-server 20,
//! `tests/interop/fixtures/node-server.js`), in both protocol versions.
//!
//! Requires Node.js; `tests/interop/node_modules` is installed with `npm ci` when missing.

mod common;

use common::node::NodeServer;
use common::scenarios;
use sc_client::ProtocolVersion::{self, Auto, V1, V2};

fn version_flag(version: ProtocolVersion) -> &'static str {
    match version {
        V1 => "1",
        _ => "2",
    }
}

async fn server(version: ProtocolVersion) -> NodeServer {
    NodeServer::start(&["--protocol-version", version_flag(version)]).await
}

#[tokio::test]
async fn rpc_v1() {
    scenarios::rpc(&server(V1).await.url(), V1).await;
}

#[tokio::test]
async fn rpc_v2() {
    scenarios::rpc(&server(V2).await.url(), V2).await;
}

#[tokio::test]
async fn pubsub_v1() {
    scenarios::pubsub(&server(V1).await.url(), V1).await;
}

#[tokio::test]
async fn pubsub_v2() {
    scenarios::pubsub(&server(V2).await.url(), V2).await;
}

#[tokio::test]
async fn server_invoke_v1() {
    scenarios::server_invoke(&server(V1).await.url(), V1).await;
}

#[tokio::test]
async fn server_invoke_v2() {
    scenarios::server_invoke(&server(V2).await.url(), V2).await;
}

#[tokio::test]
async fn kick_out_v2() {
    scenarios::kick_out(&server(V2).await.url(), V2).await;
}

#[tokio::test]
async fn reconnect_after_drop_v1() {
    scenarios::reconnect_after_drop(&server(V1).await.url(), V1).await;
}

#[tokio::test]
async fn reconnect_after_drop_v2() {
    scenarios::reconnect_after_drop(&server(V2).await.url(), V2).await;
}

#[tokio::test]
async fn queued_until_connected_and_close() {
    scenarios::queued_until_connected_and_close(&server(V2).await.url(), V2).await;
}

async fn fast_pings(version: ProtocolVersion) -> NodeServer {
    let flags = [
        "--protocol-version",
        version_flag(version),
        "--ping-interval",
        "100",
        "--ping-timeout",
        "500",
    ];
    NodeServer::start(&flags).await
}

#[tokio::test]
async fn heartbeat_v1() {
    scenarios::heartbeat_keeps_connection(&fast_pings(V1).await.url(), V1).await;
}

#[tokio::test]
async fn heartbeat_v2() {
    scenarios::heartbeat_keeps_connection(&fast_pings(V2).await.url(), V2).await;
}

#[tokio::test]
async fn heartbeat_auto_answers_both() {
    scenarios::heartbeat_keeps_connection(&fast_pings(V1).await.url(), Auto).await;
    scenarios::heartbeat_keeps_connection(&fast_pings(V2).await.url(), Auto).await;
}

#[tokio::test]
async fn heartbeat_mismatch_v1_client_v2_server() {
    scenarios::heartbeat_mismatch(&fast_pings(V2).await.url(), V1).await;
}

#[tokio::test]
async fn heartbeat_mismatch_v2_client_v1_server() {
    scenarios::heartbeat_mismatch(&fast_pings(V1).await.url(), V2).await;
}

/// Against the reference with `codecEngine: sc-codec-min-bin` (protocol v2 only: a v20 server in
/// v1 mode sends its `#1` pings as raw text, which no min-bin client can read, docs/protocol.md §18).
#[tokio::test]
async fn min_bin_and_channel_prefix_v2() {
    let server = NodeServer::start(&[
        "--protocol-version",
        "2",
        "--codec",
        "min-bin",
        "--ping-interval",
        "100",
    ])
    .await;
    scenarios::min_bin_and_channel_prefix(&server.url(), V2).await;
}
