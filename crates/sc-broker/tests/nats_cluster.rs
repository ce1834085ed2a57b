//! The NATS engine on a private 3-node NATS cluster (JetStream, free loopback ports): both
//! forms of server list, replicas chosen from the cluster size, each node's state, a broker
//! moving to another node when its node is killed (and resubscribing), and the key/value store
//! and channel history surviving the loss of a node.
#![cfg(feature = "nats")]

use std::time::{Duration, Instant};

use sc_broker::nats::{self, NatsOptions};
use sc_broker::{Broker, HistoryPolicy, HistoryRead, KvCommand, KvStore};
use sc_protocol::Json;
use sc_test_support::engine::unique;
use sc_test_support::nats_cluster::NatsCluster;
use sc_test_support::sink::{Collect, publication};

fn options() -> NatsOptions {
    NatsOptions {
        subject_prefix: format!("{}.", unique("sccl")),
        ..NatsOptions::default()
    }
}

/// The port of the node `broker` is connected to, from its health report.
fn connected_port(broker: &impl Broker) -> u16 {
    let health = broker.health();
    let node = health
        .nodes
        .iter()
        .find(|n| n.role == "connected")
        .unwrap_or_else(|| panic!("no connected node in {health:?}"));
    node.addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

async fn stream_replicas(broker: &nats::NatsBroker, stream: &str) -> usize {
    let js = async_nats::jetstream::new(broker.link().client().clone());
    let mut stream = js.get_stream(stream).await.expect("stream");
    stream.info().await.expect("info").config.num_replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_list_forms_reach_the_cluster_with_three_replicas_and_every_node_reported() {
    let cluster = NatsCluster::start();
    let full = format!("nats://{},nats://{}", cluster.addr(0), cluster.addr(1));
    // `replicas=3` forces replication (this machine's nats-server may predate 2.10.19).
    let short = format!("nats://{},{}?replicas=3", cluster.addr(1), cluster.addr(2));
    let opts = options();
    let (b, kv_b) = nats::connect(&short, opts.clone())
        .await
        .expect("short form");
    let (a, kv_a) = nats::connect(&full, opts.clone()).await.expect("full form");
    assert_eq!(b.link().replicas(), 3);
    assert_eq!(stream_replicas(&a, "KV_sc_kv").await, 3);
    // Without the option: 3 where replicated compare-and-set is safe, else 1.
    let version = a.link().client().server_info().version;
    let numbers: Vec<u64> = version
        .split(['.', '-'])
        .take(3)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let safe = numbers.as_slice() >= [2, 10, 19].as_slice();
    assert_eq!(a.link().replicas(), if safe { 3 } else { 1 }, "{version}");

    // Shared data across nodes.
    let key = vec![unique("k")];
    kv_a.execute(KvCommand::Set {
        key: key.clone(),
        value: Json::from_text("42").unwrap(),
    })
    .await
    .unwrap();
    let got = kv_b
        .execute(KvCommand::Get { key: key.clone() })
        .await
        .unwrap();
    assert_eq!(got.get(), "42");

    // Every node is listed (the ones the cluster announced too), all up, without duplicates.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = b.health();
        let mut addrs: Vec<&str> = health.nodes.iter().map(|n| n.addr.as_str()).collect();
        addrs.sort_unstable();
        let mut expected = vec![cluster.addr(0), cluster.addr(1), cluster.addr(2)];
        expected.sort_unstable();
        if addrs == expected && health.all_up() {
            assert_eq!(
                health
                    .nodes
                    .iter()
                    .filter(|n| n.role == "connected")
                    .count(),
                1
            );
            break;
        }
        assert!(Instant::now() < deadline, "{health:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_moves_the_broker_to_another_and_nothing_stored_is_lost() {
    let mut cluster = NatsCluster::start();
    let url = format!(
        "nats://{},{},{}?replicas=3",
        cluster.addr(0),
        cluster.addr(1),
        cluster.addr(2)
    );
    let opts = options();
    let (a, kv_a) = nats::connect(&url, opts.clone()).await.expect("a");
    let sink_a = Collect::new();
    a.attach(sink_a.clone());
    let channel = unique("live");
    a.subscribe(&channel).await.unwrap();
    let policy = HistoryPolicy {
        size: 100,
        ttl: Duration::from_secs(600),
    };
    let history = unique("room/h");
    for i in 1..=3 {
        a.publish_stored(publication(&history, &i.to_string()), policy)
            .await
            .unwrap();
    }
    let key = vec![unique("k")];
    kv_a.execute(KvCommand::Set {
        key: key.clone(),
        value: Json::from_text("\"kept\"").unwrap(),
    })
    .await
    .unwrap();

    // b is a publisher on another node than a's.
    let victim = cluster.index_of(connected_port(&a));
    let other = (victim + 1) % 3;
    let (b, _kv_b) = nats::connect(&format!("nats://{}", cluster.addr(other)), opts.clone())
        .await
        .expect("b");
    b.publish(publication(&channel, "0")).await.unwrap();
    assert!(sink_a.wait_for(1, Duration::from_secs(5)).await);

    cluster.kill(victim);
    let killed = Instant::now();
    // b publishes every 20 ms; a gets deliveries again once it is on another node.
    let mut sent = 1;
    let resumed = loop {
        b.publish(publication(&channel, &sent.to_string()))
            .await
            .unwrap();
        sent += 1;
        if sink_a.len() > 1 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "delivery did not resume within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("nats cluster: delivery resumed {resumed:?} after the node was killed");
    assert_ne!(connected_port(&a), cluster.nodes[victim].port);
    // After resuming, publications arrive in order and once.
    for i in sent..sent + 50 {
        b.publish(publication(&channel, &i.to_string()))
            .await
            .unwrap();
    }
    let last = (sent + 49).to_string();
    assert!(
        sink_a
            .wait_until(Duration::from_secs(5), |d| d.last() == Some(&last))
            .await
    );
    let received: Vec<u64> = sink_a.data().iter().map(|d| d.parse().unwrap()).collect();
    assert!(received.windows(2).all(|w| w[0] < w[1]), "{received:?}");
    assert_eq!(
        received[received.len() - 50..],
        (sent..sent + 50).collect::<Vec<_>>()[..]
    );

    // The killed node is reported down.
    let deadline = Instant::now() + Duration::from_secs(10);
    let victim_addr = cluster.addr(victim);
    while !a
        .health()
        .nodes
        .iter()
        .any(|n| n.addr == victim_addr && !n.up)
    {
        assert!(Instant::now() < deadline, "{:?}", a.health());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replicated state survives the node (new leaders may take a few seconds to be elected).
    let deadline = Instant::now() + Duration::from_secs(20);
    let value = loop {
        match kv_a.execute(KvCommand::Get { key: key.clone() }).await {
            Ok(value) => break value,
            Err(e) => assert!(Instant::now() < deadline, "kv: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(value.get(), "\"kept\"");
    let page = loop {
        match a
            .read_history(&history, policy, HistoryRead::Last(10))
            .await
        {
            Ok(page) => break page,
            Err(e) => assert!(Instant::now() < deadline, "history: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let offsets: Vec<u64> = page
        .publications
        .iter()
        .map(|p| p.position().expect("position").offset)
        .collect();
    assert_eq!(offsets, [1, 2, 3], "{page:?}");
    let next = loop {
        match a.publish_stored(publication(&history, "4"), policy).await {
            Ok(position) => break position,
            Err(e) => assert!(Instant::now() < deadline, "publish_stored: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(next.offset, 4);
}
