//! The NATS engine on a private 3-node cluster of nats-server ≥ 2.10.19 (the one `scripts/test`
//! installs under `.tools/`, or `$SC_TEST_NATS_SERVER`; the test fails saying how to get it when
//! there is none): without any option the key/value bucket and the history and presence streams
//! are created with 3 replicas (the server says so: `$JS.API.STREAM.INFO`), two instances
//! publishing to one history channel at once get distinct offsets, and killing the node that
//! leads the key/value stream keeps the key/value store and the history working.
#![cfg(feature = "nats")]

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use sc_broker::nats::{self, NatsBroker, NatsOptions};
use sc_broker::{Broker, HistoryPolicy, HistoryRead, KvCommand, KvStore, PresenceMember};
use sc_protocol::Json;
use sc_test_support::engine::unique;
use sc_test_support::nats_cluster::{NatsCluster, modern_nats_server};
use sc_test_support::sink::publication;

fn options() -> NatsOptions {
    NatsOptions {
        subject_prefix: format!("{}.", unique("screp")),
        ..NatsOptions::default()
    }
}

/// Every stream of the cluster with the replicas the server reports, the server its leader runs
/// on and how many followers it has.
async fn streams(broker: &NatsBroker) -> Vec<(String, usize, String, usize)> {
    let js = jetstream::new(broker.link().client().clone());
    let names: Vec<String> = eventually("stream names", || async {
        js.stream_names()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<String>, _>>()
    })
    .await;
    let mut out = Vec::new();
    for name in names {
        // (right after a server died, a stream it led answers once it has a new leader)
        let info = eventually(&format!("info of {name}"), || async {
            let mut stream = js.get_stream(&name).await.map_err(|e| e.to_string())?;
            stream.info().await.cloned().map_err(|e| e.to_string())
        })
        .await;
        let cluster = info.cluster.expect("cluster info of a clustered stream");
        out.push((
            name,
            info.config.num_replicas,
            cluster.leader.unwrap_or_default(),
            cluster.replicas.len(),
        ));
    }
    out.sort();
    out
}

/// Retries `what` for up to 20 s (a stream whose leader died elects a new one first).
async fn eventually<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    label: &str,
    mut what: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match what().await {
            Ok(value) => return value,
            Err(e) => assert!(Instant::now() < deadline, "{label}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_by_default_and_a_dead_leader_loses_nothing() {
    let binary = modern_nats_server();
    let mut cluster = NatsCluster::start_with(binary);
    let url = format!(
        "nats://{},{},{}",
        cluster.addr(0),
        cluster.addr(1),
        cluster.addr(2)
    );
    let opts = options();
    let (a, kv_a) = nats::connect(&url, opts.clone()).await.expect("a");
    let (b, _kv_b) = nats::connect(&url, opts.clone()).await.expect("b");
    let version = a.link().client().server_info().version;
    assert_eq!(
        a.link().replicas(),
        3,
        "default replicas on nats-server {version}"
    );

    // Create the bucket, a history stream and the presence streams, with nothing but defaults.
    let policy = HistoryPolicy {
        size: 1000,
        ttl: Duration::from_secs(600),
    };
    let history = unique("room/h");
    let key = vec![unique("k")];
    kv_a.execute(KvCommand::Set {
        key: key.clone(),
        value: Json::from_text("\"kept\"").unwrap(),
    })
    .await
    .expect("set");
    // Two instances publishing to one history channel at once, the stream created by whichever
    // comes first: compare-and-set on a replicated stream gives every publication its own offset
    // (what nats-server < 2.10.19 got wrong), and the instance that finds the stream being
    // created waits for its leader instead of timing out.
    let (from_a, from_b) = tokio::join!(
        async {
            let mut offsets = Vec::new();
            for i in 0..40 {
                let position = a
                    .publish_stored(publication(&history, &format!("\"a{i}\"")), policy)
                    .await
                    .expect("publish_stored on a");
                offsets.push(position.offset);
            }
            offsets
        },
        async {
            let mut offsets = Vec::new();
            for i in 0..40 {
                let position = b
                    .publish_stored(publication(&history, &format!("\"b{i}\"")), policy)
                    .await
                    .expect("publish_stored on b");
                offsets.push(position.offset);
            }
            offsets
        }
    );
    let mut all: Vec<u64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=80).collect::<Vec<u64>>(),
        "offsets given twice or skipped"
    );
    a.presence_join(
        &unique("room/p"),
        PresenceMember {
            id: "s1".to_owned(),
            user: None,
        },
    )
    .await
    .expect("presence join");

    // The server reports 3 replicas (a leader and 2 followers) for every stream we created.
    let found = streams(&a).await;
    let kinds = ["KV_sc_kv", "SC_H_", "SC_P_", "SC_L_"];
    for kind in kinds {
        assert!(
            found.iter().any(|(name, ..)| name.starts_with(kind)),
            "no {kind} stream in {found:?}"
        );
    }
    for (name, replicas, _, followers) in &found {
        assert_eq!(*replicas, 3, "{name} on nats-server {version}: {found:?}");
        assert_eq!(*followers, 2, "{name}: {found:?}");
    }

    // Kill the server that leads the key/value stream.
    let leader = found
        .iter()
        .find(|(name, ..)| name == "KV_sc_kv")
        .map(|(_, _, leader, _)| leader.clone())
        .unwrap();
    let victim: usize = leader
        .strip_prefix('n')
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("leader {leader:?}"))
        - 1;
    cluster.kill(victim);
    let killed = Instant::now();

    // Key/value: the value is still there, and writes work (once a new leader is elected).
    let value = eventually("kv get", || {
        kv_a.execute(KvCommand::Get { key: key.clone() })
    })
    .await;
    assert_eq!(value.get(), "\"kept\"");
    eventually("kv set", || {
        kv_a.execute(KvCommand::Set {
            key: key.clone(),
            value: Json::from_text("\"after\"").unwrap(),
        })
    })
    .await;
    let kv_back = killed.elapsed();
    let value = kv_a
        .execute(KvCommand::Get { key: key.clone() })
        .await
        .expect("get after");
    assert_eq!(value.get(), "\"after\"");

    // History: every stored publication is readable, and offsets continue from 81 on both.
    let page = eventually("history read", || {
        b.read_history(&history, policy, HistoryRead::Last(1000))
    })
    .await;
    let offsets: Vec<u64> = page
        .publications
        .iter()
        .map(|p| p.position().expect("position").offset)
        .collect();
    assert_eq!(offsets, (1..=80).collect::<Vec<u64>>());
    let next_a = eventually("publish_stored after the kill", || {
        a.publish_stored(publication(&history, "\"a-after\""), policy)
    })
    .await;
    let next_b = eventually("publish_stored after the kill", || {
        b.publish_stored(publication(&history, "\"b-after\""), policy)
    })
    .await;
    assert_eq!((next_a.offset, next_b.offset), (81, 82));
    assert_eq!(
        next_a.epoch, page.position.epoch,
        "the history kept its epoch"
    );
    // The survivors still hold 3-replica streams, led by a live server.
    let after = streams(&a).await;
    for (name, replicas, leader, _) in &after {
        assert_eq!(*replicas, 3, "{name}");
        assert_ne!(
            leader,
            &format!("n{}", victim + 1),
            "{name} still led by the dead node"
        );
    }
    eprintln!(
        "nats {version}: killed {leader} (key/value leader); key/value writable again after {kv_back:?}"
    );
}
