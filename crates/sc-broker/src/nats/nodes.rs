//! NATS clusters and secured servers: the client options a [`NatsUrl`] asks for (credentials,
//! credentials file, TLS), the JetStream replica count, and the state of every server we know
//! of (for `/health` and `/metrics`).
//!
//! - Replicas: streams and buckets we create get [`NatsOptions::replicas`] replicas (URL option
//!   `replicas=N`), or when that is 0 (the default) `min(3, servers in the cluster)`: 1 on a
//!   lone server, 3 in a cluster of 3 or more, so they survive the loss of one server. Offsets
//!   and key/value updates rely on JetStream's per-subject compare-and-set, which replicated
//!   streams only serialize from nats-server 2.10.19 on (nats-server#4320, #5794: older servers
//!   may accept two concurrent appends expecting the same sequence, i.e. give two publications
//!   one offset). So on older servers the default is 1 replica, with one warning; `replicas=3`
//!   forces replication there, at that risk. Streams that already exist keep their replicas
//!   (change them with `nats stream edit --replicas`).
//! - Nodes: the servers of the URL and the ones the connected server announced
//!   (`connect_urls`). The one our connection is on is `connected` (up while the connection
//!   is); every other is a `peer`, up when it accepts a TCP connection, checked every
//!   [`PROBE_INTERVAL`] in the background.
//!
//! [`NatsOptions::replicas`]: crate::nats::NatsOptions::replicas

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::ConnectOptions;
use parking_lot::Mutex;

use crate::health::{EngineHealth, NodeHealth};
use crate::nats::NatsLink;
use crate::nats::url::{Credentials, NatsUrl};

/// How often the peers of the connected server are checked.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Longest wait for a peer's TCP connect.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Largest replica count chosen automatically (JetStream's usual cap for production streams).
const MAX_AUTO_REPLICAS: usize = 3;

/// The first nats-server whose replicated streams serialize per-subject compare-and-set.
const SAFE_REPLICATED_CAS: (u64, u64, u64) = (2, 10, 19);

/// Whether the "old server, 1 replica" warning was logged.
static WARNED_OLD_SERVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Client options for `url`'s credentials and TLS. Fails (without secrets in the message) when a
/// named file cannot be read.
pub(crate) async fn connect_options(url: &NatsUrl) -> Result<ConnectOptions, String> {
    // async-nats parses but does not send the credentials of a URL: pass them explicitly.
    let mut options = match &url.credentials {
        Some(Credentials::UserPassword(user, password)) => {
            ConnectOptions::new().user_and_password(user.clone(), password.clone())
        }
        Some(Credentials::Token(token)) => ConnectOptions::new().token(token.clone()),
        None => ConnectOptions::new(),
    };
    if let Some(path) = &url.creds_file {
        options = options.credentials_file(path).await.map_err(|e| {
            format!(
                "cannot use the credentials file {}: {}",
                path.display(),
                e.kind()
            )
        })?;
    }
    if let Some(path) = &url.nkey_file {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("cannot read the NKey file {}: {}", path.display(), e.kind()))?;
        let seed = text
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("SU"))
            .ok_or_else(|| format!("the NKey file {} holds no user seed (SU…)", path.display()))?;
        options = options.nkey(seed.to_owned());
    }
    for path in url
        .tls_ca
        .iter()
        .chain(url.tls_client.iter().flat_map(|(c, k)| [c, k]))
    {
        if let Err(e) = std::fs::metadata(path) {
            return Err(format!(
                "cannot read the TLS file {}: {}",
                path.display(),
                e.kind()
            ));
        }
    }
    if let Some(ca) = &url.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &url.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options.require_tls(url.require_tls))
}

/// The replica count for streams and buckets we create on `link` (see the
/// [module](self) documentation).
pub(crate) fn replicas(link: &NatsLink) -> usize {
    let configured = link.options().replicas;
    if configured > 0 {
        return configured;
    }
    let info = link.client().server_info();
    if info.cluster.is_none() {
        return 1;
    }
    // The server lists every client URL of the cluster (its own included); a server that
    // advertises none (`--no_advertise`) leaves us the URL's list.
    let known = info.connect_urls.len().max(link.servers().len()).max(1);
    if known > 1 && !version_at_least(&info.version, SAFE_REPLICATED_CAS) {
        if !WARNED_OLD_SERVER.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                engine = "nats",
                version = %info.version,
                "nats-server before 2.10.19 does not serialize compare-and-set on replicated streams; new streams get 1 replica (URL option replicas=3 forces replication)"
            );
        }
        return 1;
    }
    known.min(MAX_AUTO_REPLICAS)
}

/// Whether a server version (`2.10.19`, `2.11.0-beta.1`) is at least `min`.
fn version_at_least(version: &str, min: (u64, u64, u64)) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    found >= min
}

/// The last probe of every known server.
#[derive(Default)]
pub(crate) struct NodeTable {
    peers: Mutex<Vec<(String, bool)>>,
}

impl NodeTable {
    /// The nodes now: the connected one first, then the peers as last probed.
    pub(crate) fn health(&self, link: &NatsLink) -> EngineHealth {
        let connected = connected_addr(link);
        let mut nodes = vec![NodeHealth::new(
            connected.clone(),
            "connected",
            link.is_connected(),
        )];
        nodes.extend(
            self.peers
                .lock()
                .iter()
                .filter(|(addr, _)| *addr != connected)
                .map(|(addr, up)| NodeHealth::new(addr.clone(), "peer", *up)),
        );
        EngineHealth { nodes }
    }
}

/// `host:port` of the server the client is (or was last) connected to, as the URL or the
/// cluster names it.
fn connected_addr(link: &NatsLink) -> String {
    let info = link.client().server_info();
    let unspecified = matches!(info.host.as_str(), "0.0.0.0" | "::" | "" | "[::]");
    known_addrs(link)
        .into_iter()
        .find(|addr| {
            addr.rsplit_once(':').is_some_and(|(host, port)| {
                port == info.port.to_string() && (unspecified || host == info.host)
            })
        })
        .unwrap_or_else(|| format!("{}:{}", info.host, info.port))
}

/// The URL's servers and the ones the connected server announced, without duplicates.
fn known_addrs(link: &NatsLink) -> Vec<String> {
    let mut addrs: Vec<String> = link.servers().to_vec();
    for url in link.client().server_info().connect_urls {
        let addr = url.rsplit_once("://").map_or(url.as_str(), |(_, a)| a);
        let addr = if addr.contains(':') {
            addr.to_owned()
        } else {
            format!("{addr}:4222")
        };
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

/// Probes the peers of `link` every [`PROBE_INTERVAL`] until the link is gone.
pub(crate) async fn probe_peers(link: Weak<NatsLink>, table: Arc<NodeTable>) {
    loop {
        let Some(strong) = link.upgrade() else { return };
        let addrs = known_addrs(&strong);
        drop(strong);
        let probes = addrs.into_iter().map(|addr| async move {
            let up = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr))
                .await
                .is_ok_and(|r| r.is_ok());
            (addr, up)
        });
        let results = futures_util::future::join_all(probes).await;
        *table.peers.lock() = results;
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert!(!version_at_least("2.9.10", SAFE_REPLICATED_CAS));
        assert!(!version_at_least("2.10.18", SAFE_REPLICATED_CAS));
        assert!(version_at_least("2.10.19", SAFE_REPLICATED_CAS));
        assert!(version_at_least("2.11.0-beta.1", SAFE_REPLICATED_CAS));
        assert!(version_at_least("3.0.0", SAFE_REPLICATED_CAS));
        assert!(!version_at_least("garbage", SAFE_REPLICATED_CAS));
    }
}
