//! The conformance suite (`tests/conformance/mod.rs`) against the process cluster: two broker
//! processes (run in-process as tasks, on temporary Unix sockets), each instance a worker's
//! `ClusterBroker` and `ClusterKv` over both.

mod conformance;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conformance::{BoxFuture, Engine, Instance};
use sc_broker::MemoryKv;
use sc_broker::process::{BrokerLinkConfig, BrokerServer, ClusterBroker};
use sc_test_support::engine::unique;

/// Two broker processes and the directory of their sockets (removed on drop).
struct Processes {
    dir: PathBuf,
    sockets: Vec<PathBuf>,
    _servers: Vec<BrokerServer>,
}

impl Engine for Processes {
    fn instance(&self) -> BoxFuture<'_, Instance> {
        Box::pin(async {
            let config = BrokerLinkConfig {
                request_timeout: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(5),
                ..BrokerLinkConfig::default()
            };
            let broker = ClusterBroker::connect(self.sockets.clone(), config)
                .await
                .expect("connect to the broker processes");
            let kv = Arc::new(broker.kv());
            Instance::attach(Arc::new(broker), kv)
        })
    }

    fn name(&self) -> &'static str {
        "cluster (2 brokers)"
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn processes() -> Processes {
    let dir = std::env::temp_dir().join(unique("sc-conformance"));
    std::fs::create_dir_all(&dir).unwrap();
    let sockets: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("b{i}"))).collect();
    let mut servers = Vec::new();
    for (id, path) in sockets.iter().enumerate() {
        let server = BrokerServer::builder(id, Arc::new(MemoryKv::new()))
            .bind(path)
            .await
            .expect("bind a broker process");
        servers.push(server);
    }
    Processes {
        dir,
        sockets,
        _servers: servers,
    }
}

conformance_suite!(processes);
