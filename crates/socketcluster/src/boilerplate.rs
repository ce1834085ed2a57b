//! The seed's boilerplate worker logic.
//!
//! SocketCluster's boilerplate `worker.js` reads:
//!
//! ```js
//! scServer.on('connection', function (socket) {
//!   socket.on('ping', function (data) {
//!     count++;
//!     scServer.exchange.publish('pong', count);
//!   });
//! });
//! ```
//!
//! Here the same in Rust, plus `echo` (answers with its data). `ping` also acknowledges when the
//! client asked for an acknowledgement.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sc_protocol::ScError;
use sc_server::{Reply, Request, Server};

/// Registers the boilerplate handlers on `server`.
///
/// ```
/// let server = sc_server::Server::new(Default::default()).unwrap();
/// socketcluster::boilerplate::register(&server);
/// ```
pub fn register(server: &Server) {
    let exchange = server.exchange();
    let count = Arc::new(AtomicU64::new(0));
    server.on("ping", move |_req: Request| {
        let (exchange, count) = (exchange.clone(), count.clone());
        async move {
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            exchange.publish("pong", &n).await.map_err(ScError::from)
        }
    });
    server.on("echo", |req: Request| async move { Ok::<_, ScError>(Reply::from(req.data().cloned())) });
}
