//! EXTENSIONS.md over each distributed engine, Redis and NATS (a private redis-server or
//! nats-server with JetStream on a free port): two instances share one sequence per channel and
//! one presence, and a killed instance leaves presence within pingTimeout + 5 s; history survives a
//! broker kill -9 (zero loss); an engine restarted empty fails publishes while down and changes
//! the epoch.

mod common;

use std::time::Duration;

use common::Instance;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sc_test_support::engine::{EngineKind, EngineServer};
use sc_test_support::raw::{JsonClient, Pos};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_instances_share_one_sequence_and_one_presence() {
    two_instances_share_one_sequence_and_one_presence(EngineKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_two_instances_share_one_sequence_and_one_presence() {
    two_instances_share_one_sequence_and_one_presence(EngineKind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_history_in_the_engine_survives_a_broker_kill_with_zero_loss() {
    history_in_the_engine_survives_a_broker_kill_with_zero_loss(EngineKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_history_in_the_engine_survives_a_broker_kill_with_zero_loss() {
    history_in_the_engine_survives_a_broker_kill_with_zero_loss(EngineKind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_engine_restarted_empty_fails_publishes_then_changes_the_epoch() {
    engine_restarted_empty_fails_publishes_then_changes_the_epoch(EngineKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_engine_restarted_empty_fails_publishes_then_changes_the_epoch() {
    engine_restarted_empty_fails_publishes_then_changes_the_epoch(EngineKind::Nats).await;
}

fn instance(engine: &EngineServer) -> Instance {
    Instance::start(&[
        "--engine",
        &engine.url(),
        "--workers",
        "1",
        "--brokers",
        "1",
    ])
}

fn publication(frame: &Value, channel: &str) -> Option<Pos> {
    (frame["event"] == "#publish" && frame["data"]["channel"] == channel)
        .then(|| Pos::of(&frame["data"]))
        .flatten()
}

async fn next_position(raw: &mut JsonClient, channel: &str) -> Pos {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = raw.next(WAIT).await.expect("a delivery");
        if let Some(position) = publication(&frame, channel) {
            return position;
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
}

async fn publish(raw: &mut JsonClient, channel: &str, data: Value) -> Result<Pos, Value> {
    let ack = raw
        .invoke("#publish", json!({"channel": channel, "data": data}))
        .await
        .map_err(Value::from)?;
    Pos::of(&ack["data"]).ok_or(ack)
}

async fn two_instances_share_one_sequence_and_one_presence(kind: EngineKind) {
    let engine = EngineServer::start(kind, &[]);
    let (a, b) = (instance(&engine), instance(&engine));
    let mut on_a = JsonClient::connect_retrying(a.port).await;
    let mut on_b = JsonClient::connect_retrying(b.port).await;
    let ack_a = on_a
        .invoke("#subscribe", json!({"channel": "room/x"}))
        .await
        .unwrap();
    let ack_b = on_b
        .invoke("#subscribe", json!({"channel": "room/x"}))
        .await
        .unwrap();
    assert_eq!(
        Pos::of(&ack_a["data"]),
        Pos::of(&ack_b["data"]),
        "one epoch"
    );
    // b's subscription is announced to a across instances.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = on_a.next(WAIT).await.expect("join");
        if frame["event"] == "#presenceJoin" {
            assert_eq!(frame["data"]["client"]["id"], on_b.id.as_str());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
    let p1 = publish(&mut on_a, "room/x", json!(1)).await.unwrap();
    let p2 = publish(&mut on_b, "room/x", json!(2)).await.unwrap();
    assert_eq!((p1.offset, p2.offset), (1, 2));
    assert_eq!(p1.epoch, p2.epoch);
    for raw in [&mut on_a, &mut on_b] {
        assert_eq!(next_position(raw, "room/x").await, p1);
        assert_eq!(next_position(raw, "room/x").await, p2);
    }
    let answer = on_a
        .invoke("#presence", json!({"channel": "room/x"}))
        .await
        .unwrap();
    assert_eq!(answer["data"]["count"], 2, "{answer}");

    // Instance b dies without a word: within pingTimeout + 5 s it leaves a's presence.
    let info = on_b.invoke("clusterInfo", Value::Null).await.unwrap()["data"].clone();
    let mut pids: Vec<u64> = Vec::new();
    for group in ["workers", "brokers"] {
        pids.extend(
            info[group]
                .as_object()
                .unwrap()
                .values()
                .filter_map(Value::as_u64),
        );
    }
    kill(Pid::from_raw(b.master.id() as i32), Signal::SIGKILL).expect("kill -9 master");
    for pid in pids {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        match on_a.next(Duration::from_secs(1)).await {
            Ok(frame) if frame["event"] == "#presenceLeave" => {
                assert_eq!(frame["data"]["client"]["id"], on_b.id.as_str());
                break;
            }
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "the killed instance's socket never left"
            ),
        }
    }
    let answer = on_a
        .invoke("#presence", json!({"channel": "room/x"}))
        .await
        .unwrap();
    assert_eq!(answer["data"]["count"], 1, "{answer}");
}

async fn history_in_the_engine_survives_a_broker_kill_with_zero_loss(kind: EngineKind) {
    let engine = EngineServer::start(kind, &[]);
    let cluster = instance(&engine);
    let mut subscriber = JsonClient::connect_retrying(cluster.port).await;
    let mut publisher = JsonClient::connect_retrying(cluster.port).await;
    subscriber
        .invoke("#subscribe", json!({"channel": "room/z"}))
        .await
        .unwrap();
    let first = publish(&mut publisher, "room/z", json!(1)).await.unwrap();
    let info = publisher.invoke("clusterInfo", Value::Null).await.unwrap()["data"].clone();
    let broker = info["brokers"]["0"].as_u64().expect("broker pid");
    kill(Pid::from_raw(broker as i32), Signal::SIGKILL).expect("kill -9 the broker");
    let mut acknowledged = vec![first.clone()];
    let deadline = tokio::time::Instant::now() + WAIT;
    while acknowledged.len() < 5 {
        if let Ok(position) = publish(&mut publisher, "room/z", json!(acknowledged.len())).await {
            acknowledged.push(position);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing never resumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        acknowledged.iter().all(|p| p.epoch == first.epoch),
        "history lives in the engine: same epoch after a broker kill"
    );
    let offsets: Vec<u64> = acknowledged.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
    // A client recovering from the first position gets every acknowledged one.
    let mut late = JsonClient::connect_retrying(cluster.port).await;
    let ack = late
        .invoke(
            "#subscribe",
            json!({"channel": "room/z", "data": {"recover": {"offset": 1, "epoch": first.epoch}}}),
        )
        .await
        .unwrap();
    assert_eq!(ack["data"]["recovered"], true, "{ack}");
    let replayed: Vec<u64> = late
        .take_stash()
        .iter()
        .filter_map(|f| publication(f, "room/z"))
        .map(|p| p.offset)
        .collect();
    assert_eq!(replayed, vec![2, 3, 4, 5]);
}

async fn engine_restarted_empty_fails_publishes_then_changes_the_epoch(kind: EngineKind) {
    let mut engine = EngineServer::start(kind, &[]);
    let cluster = instance(&engine);
    let mut subscriber = JsonClient::connect_retrying(cluster.port).await;
    let mut publisher = JsonClient::connect_retrying(cluster.port).await;
    subscriber
        .invoke("#subscribe", json!({"channel": "room/e"}))
        .await
        .unwrap();
    let before = publish(&mut publisher, "room/e", json!("before"))
        .await
        .unwrap();
    assert_eq!(next_position(&mut subscriber, "room/e").await, before);

    engine.kill();
    engine.wipe();
    let refused = publish(&mut publisher, "room/e", json!("while down"))
        .await
        .expect_err("nothing is acknowledged while the engine is down");
    assert_eq!(refused["error"]["name"], "BrokerError", "{refused}");

    engine.restart();
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        if let Ok(position) = publish(&mut publisher, "room/e", json!("after")).await {
            break position;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing never resumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(
        after.epoch, before.epoch,
        "an engine restarted empty changes the epoch"
    );
    assert_eq!(after.offset, 1);
    assert_eq!(
        next_position(&mut subscriber, "room/e").await,
        after,
        "the live subscriber is told by the next delivery's epoch"
    );
}
