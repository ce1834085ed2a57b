//! What only the server's integration tests share: option presets per heartbeat dialect and a
//! test server that always answers `echo`. The raw WebSocket client, the in-process server and
//! the raw HTTP helpers are `sc_test_support`'s, re-exported here under the names the tests use.

#![allow(dead_code, unused_imports)] // Each test binary uses a different subset.

use sc_protocol::{ProtocolVersion, ScError};
use sc_server::{Reply, Request, Server, ServerOptions};

pub(crate) use sc_test_support::http::{HttpResponse, http_request, upgrade_request};
pub(crate) use sc_test_support::raw::{RawClient as Client, Received, handshake_id};
pub(crate) use sc_test_support::server::TestServer;
pub(crate) use sc_test_support::wait::WAIT;

/// Default options with a fixed heartbeat dialect (v2), so frames and close reasons are v2's.
pub(crate) fn v2() -> ServerOptions {
    ServerOptions {
        protocol_version: ProtocolVersion::V2,
        ..Default::default()
    }
}

/// Default options speaking protocol v1 (`#1`/`#2`, `#disconnect` events).
pub(crate) fn v1() -> ServerOptions {
    ServerOptions {
        protocol_version: ProtocolVersion::V1,
        ..Default::default()
    }
}

/// Starts a server with `options`. Every test server answers `echo` with its data (used as an
/// ordering sentinel); `setup` registers whatever else the test needs before the port opens.
pub(crate) async fn start_server(
    options: ServerOptions,
    setup: impl FnOnce(&Server),
) -> TestServer {
    TestServer::start(options, |server| {
        server
            .on("echo", |req: Request| async move {
                Ok::<_, ScError>(Reply::from(req.data().cloned()))
            })
            .expect("echo is not reserved");
        setup(server);
    })
    .await
}
