//! The client against the Rust server (`sc-server`) in-process, with the interop fixture's
//! demo handlers: the same scenarios as against the Node reference.

mod common;

use common::rust::RustServer;
use common::scenarios;
use sc_client::ProtocolVersion::{self, Auto, V1, V2};

async fn server(version: ProtocolVersion) -> RustServer {
    RustServer::start(version, None, None).await
}

#[tokio::test]
async fn rpc_v1() {
    scenarios::rpc(&server(V1).await.url(), V1).await;
}

#[tokio::test]
async fn rpc_v2_against_auto() {
    scenarios::rpc(&server(Auto).await.url(), V2).await;
}

#[tokio::test]
async fn pubsub_v2() {
    scenarios::pubsub(&server(V2).await.url(), V2).await;
}

#[tokio::test]
async fn pubsub_v1_against_auto() {
    scenarios::pubsub(&server(Auto).await.url(), V1).await;
}

#[tokio::test]
async fn server_invoke_v2() {
    scenarios::server_invoke(&server(V2).await.url(), V2).await;
}

#[tokio::test]
async fn kick_out_v1() {
    scenarios::kick_out(&server(V1).await.url(), V1).await;
}

#[tokio::test]
async fn reconnect_after_drop_v2() {
    scenarios::reconnect_after_drop(&server(V2).await.url(), V2).await;
}

#[tokio::test]
async fn queued_until_connected_and_close() {
    scenarios::queued_until_connected_and_close(&server(V2).await.url(), V2).await;
}

#[tokio::test]
async fn heartbeat_v1() {
    let server = RustServer::start(V1, Some(100), Some(500)).await;
    scenarios::heartbeat_keeps_connection(&server.url(), V1).await;
}

#[tokio::test]
async fn heartbeat_v2_against_auto() {
    let server = RustServer::start(Auto, Some(100), Some(500)).await;
    scenarios::heartbeat_keeps_connection(&server.url(), V2).await;
}

#[tokio::test]
async fn heartbeat_mismatch_v1_client_v2_server() {
    let server = RustServer::start(V2, Some(100), Some(500)).await;
    scenarios::heartbeat_mismatch(&server.url(), V1).await;
}

#[tokio::test]
async fn min_bin_and_channel_prefix_v2_against_auto() {
    let server = RustServer::start(Auto, Some(100), Some(1000)).await;
    scenarios::min_bin_and_channel_prefix(&server.url(), V2).await;
}

#[tokio::test]
async fn min_bin_and_channel_prefix_v1_against_auto() {
    let server = RustServer::start(Auto, Some(100), Some(1000)).await;
    scenarios::min_bin_and_channel_prefix(&server.url(), V1).await;
}
