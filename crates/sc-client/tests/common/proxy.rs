//! A TCP proxy in front of a server, to cut every connection at once (a network failure as the
//! client sees it) and to point new connections at another server (a restart on a new port).

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    target: Mutex<SocketAddr>,
    links: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

impl Proxy {
    /// Listens on an ephemeral port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            links: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = *accepting.target.lock();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut links = accepting.links.lock();
                links.retain(|l| !l.is_finished());
                links.push(link);
            }
        });
        Proxy { addr, shared, task }
    }

    /// The URL clients use to reach the server through the proxy.
    pub fn url(&self) -> String {
        format!("ws://{}/socketcluster/", self.addr)
    }

    /// Drops every open connection (both sides see the TCP connection end).
    pub fn cut(&self) {
        for link in self.shared.links.lock().drain(..) {
            link.abort();
        }
    }

    /// New connections go to `target` from now on.
    pub fn set_target(&self, target: SocketAddr) {
        *self.shared.target.lock() = target;
    }
}
