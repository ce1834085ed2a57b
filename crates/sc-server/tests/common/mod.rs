//! What only the server's integration tests share: option presets per heartbeat dialect and a
//! test server that always answers `echo`. The raw WebSocket client, the in-process server and
//! the raw HTTP helpers are `sc_test_support`'s, re-exported here under the names the tests use.

#![allow(dead_code, unused_imports)] // Each test binary uses a different subset.

use sc_protocol::{ProtocolVersion, ScError};
use std::net::SocketAddr;
use std::time::Duration;

use sc_server::{Reply, Request, Server, ServerOptions};
use tokio::io::DuplexStream;
use tokio::time::timeout;
use tokio_websockets::ClientBuilder;

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

/// A server reached over in-memory pipes (`tokio::io::duplex`) through [`Server::serve_io`]
/// instead of TCP. Under `#[tokio::test(start_paused = true)]` nothing waits in real time: the
/// clock jumps to the next deadline whenever both ends are idle, so heartbeat and timeout tests
/// are instant and can check when things happen exactly.
pub(crate) struct PipedServer {
    pub(crate) server: Server,
}

/// A [`PipedServer`] with `options` (and the `echo` handler, like [`start_server`]).
pub(crate) fn piped_server(options: ServerOptions, setup: impl FnOnce(&Server)) -> PipedServer {
    let server = Server::new(options).expect("valid options");
    server
        .on("echo", |req: Request| async move {
            Ok::<_, ScError>(Reply::from(req.data().cloned()))
        })
        .expect("echo is not reserved");
    setup(&server);
    PipedServer { server }
}

impl PipedServer {
    /// A client connected through a new pipe, on the SocketCluster path, before the handshake.
    pub(crate) async fn connect(&self) -> Client<DuplexStream> {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let server = self.server.clone();
        let remote = SocketAddr::from(([127, 0, 0, 1], 50_000));
        tokio::spawn(async move { server.serve_io(server_end, remote, server.app(None)).await });
        let builder = ClientBuilder::new()
            .uri("ws://127.0.0.1/socketcluster/")
            .expect("valid uri");
        let (ws, _response) = timeout(WAIT, builder.connect_on(client_end))
            .await
            .expect("upgrade in time")
            .expect("WebSocket upgrade");
        Client::over(ws)
    }

    /// A client connected through a new pipe that completed the handshake.
    pub(crate) async fn client(&self) -> Client<DuplexStream> {
        let mut client = self.connect().await;
        client.handshake(self.server.options().ping_timeout).await;
        assert!(
            self.server.socket(client.id()).is_some(),
            "the server knows the socket after the handshake"
        );
        client
    }

    /// Waits (bounded by [`WAIT`], on the test's clock) until `condition` holds; panics with
    /// `what` otherwise.
    pub(crate) async fn eventually(&self, what: &str, mut condition: impl FnMut(&Server) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !condition(&self.server) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
