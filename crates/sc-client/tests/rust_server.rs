//! The client against the Rust server (`sc-server`) in-process, with the interop fixture's
//! demo handlers and middleware (`sc_test_support::interop`, the ones the `interop_fixture`
//! example serves): the same scenarios as against the Node reference.

mod common;

use common::scenarios;
use sc_client::ProtocolVersion::{self, Auto, V1, V2};
use sc_server::ServerOptions;
use sc_test_support::interop;
use sc_test_support::server::TestServer;

async fn server(version: ProtocolVersion) -> TestServer {
    start(version, None, None).await
}

/// The fixture speaking `version`, with pings every `ping_interval` ms and a `ping_timeout` ms
/// timeout (the defaults when `None`).
async fn start(
    version: ProtocolVersion,
    ping_interval: Option<u64>,
    ping_timeout: Option<u64>,
) -> TestServer {
    let defaults = ServerOptions::default();
    interop::start(ServerOptions {
        protocol_version: version,
        ping_interval: ping_interval.unwrap_or(defaults.ping_interval),
        ping_timeout: ping_timeout.unwrap_or(defaults.ping_timeout),
        ..defaults
    })
    .await
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
    let server = start(V1, Some(100), Some(500)).await;
    scenarios::heartbeat_keeps_connection(&server.url(), V1).await;
}

#[tokio::test]
async fn heartbeat_v2_against_auto() {
    let server = start(Auto, Some(100), Some(500)).await;
    scenarios::heartbeat_keeps_connection(&server.url(), V2).await;
}

#[tokio::test]
async fn heartbeat_mismatch_v1_client_v2_server() {
    let server = start(V2, Some(100), Some(500)).await;
    scenarios::heartbeat_mismatch(&server.url(), V1).await;
}

#[tokio::test]
async fn min_bin_and_channel_prefix_v2_against_auto() {
    let server = start(Auto, Some(100), Some(1000)).await;
    scenarios::min_bin_and_channel_prefix(&server.url(), V2).await;
}

#[tokio::test]
async fn min_bin_and_channel_prefix_v1_against_auto() {
    let server = start(Auto, Some(100), Some(1000)).await;
    scenarios::min_bin_and_channel_prefix(&server.url(), V1).await;
}
