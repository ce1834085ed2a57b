//! Flow control on the worker ⇄ broker link (issue 12, defect 1): a worker that reads more
//! slowly than another worker publishes is waited for, not dropped, and loses nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sc_broker::process::{BrokerLinkConfig, BrokerServer, ClusterBroker};
use sc_broker::{Broker, DeliverySink, MemoryKv};
use sc_protocol::{Json, Publication};
use tokio::time::timeout;

/// A fresh directory for the broker socket, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sc-flow-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sink that takes its time with each delivery (a busy worker) and checks the order.
#[derive(Default)]
struct SlowSink {
    received: AtomicU64,
    out_of_order: AtomicU64,
}

impl DeliverySink for SlowSink {
    fn deliver(&self, publication: Publication) {
        let n = self.received.fetch_add(1, Ordering::SeqCst);
        let data = publication.data().map(|d| d.get().to_owned());
        if data.as_deref() != Some(n.to_string().as_str()) {
            self.out_of_order.fetch_add(1, Ordering::SeqCst);
        }
        // Slower than the broker writes: its queue for this worker fills up.
        std::thread::sleep(Duration::from_micros(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reading_worker_slows_the_publisher_and_loses_nothing() {
    const MESSAGES: u64 = 5_000;
    let dir = TempDir::new("slow");
    let socket = dir.0.join("b0");
    let _server = BrokerServer::builder(0, Arc::new(MemoryKv::new()))
        .with_outbound_capacity(4)
        .bind(&socket)
        .await
        .unwrap();
    let config = BrokerLinkConfig {
        publish_ack: false,
        ..BrokerLinkConfig::default()
    };
    let reader = ClusterBroker::connect(vec![socket.clone()], config.clone())
        .await
        .unwrap();
    let sink = Arc::new(SlowSink::default());
    reader.attach(sink.clone());
    reader.subscribe("x").await.unwrap();
    let publisher = ClusterBroker::connect(vec![socket], config).await.unwrap();

    // No acknowledgements awaited: the publisher goes as fast as the link lets it.
    let publishing = async {
        for i in 0..MESSAGES {
            let data = Json::from(serde_json::json!(i));
            publisher
                .publish(Publication::new("x", Some(&data)))
                .await
                .expect("publish is slowed, never refused");
        }
    };
    timeout(Duration::from_secs(60), publishing)
        .await
        .expect("publishing finishes");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sink.received.load(Ordering::SeqCst) < MESSAGES {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow worker got {} of {MESSAGES} messages",
            sink.received.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sink.received.load(Ordering::SeqCst),
        MESSAGES,
        "nothing extra"
    );
    assert_eq!(sink.out_of_order.load(Ordering::SeqCst), 0, "in order");
    assert_eq!(
        reader.connected(),
        vec![true],
        "the slow worker's link stayed up"
    );
}
