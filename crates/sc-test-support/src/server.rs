//! An in-process [`sc_server::Server`] on an ephemeral loopback port.

use std::net::SocketAddr;

use sc_server::{Server, ServerOptions, Socket};
use tokio::task::JoinHandle;

use crate::raw::RawClient;
use crate::wait::WAIT;

/// A server listening on `127.0.0.1:<ephemeral>`; stops serving when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// The server (a handle: clones share it).
    pub server: Server,
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server with `options`; `setup` registers handlers and middleware before the port
    /// opens.
    pub async fn start(options: ServerOptions, setup: impl FnOnce(&Server)) -> TestServer {
        let server = Server::new(options).expect("valid server options");
        setup(&server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let serving = server.clone();
        let task = tokio::spawn(async move {
            let _ = serving.serve(listener, serving.app(None)).await;
        });
        TestServer { server, addr, task }
    }

    /// The SocketCluster URL (`ws://127.0.0.1:<port>/socketcluster/`).
    pub fn url(&self) -> String {
        format!("ws://{}/socketcluster/", self.addr)
    }

    /// A raw client that completed the handshake (cid 1); its id is checked against the server's
    /// socket table.
    pub async fn client(&self) -> RawClient {
        let mut client = self.connect().await;
        client.handshake(self.server.options().ping_timeout).await;
        assert!(
            self.server.socket(client.id()).is_some(),
            "the server knows the socket after the handshake"
        );
        client
    }

    /// A raw client connected on the SocketCluster path, before the handshake.
    pub async fn connect(&self) -> RawClient {
        RawClient::connect(self.addr, "/socketcluster/", &[])
            .await
            .expect("WebSocket upgrade")
    }

    /// The server's handle on a connected client's socket.
    pub fn socket(&self, client: &RawClient) -> Socket {
        self.server.socket(client.id()).expect("socket registered")
    }

    /// Waits (at most [`WAIT`]) until `condition` holds; panics with `what` otherwise.
    pub async fn eventually(&self, what: &str, mut condition: impl FnMut(&Server) -> bool) {
        crate::wait::eventually(what, WAIT, || condition(&self.server)).await;
    }
}
