//! EXTENSIONS.md in cluster mode (`--workers 2 --brokers 2`, the boilerplate's `room/*` history
//! and presence): one sequence per channel over every worker and broker, presence across
//! workers, recovery through a worker `kill -9`, and a broker `kill -9` that is told, not hidden.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Instance;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sc_test_support::raw::{JsonClient, Pos};
use serde_json::{Value, json};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(20);

/// Raw clients until each of the two workers has at least `per_worker`.
async fn raw_on_both_workers(port: u16, per_worker: usize) -> HashMap<u64, Vec<JsonClient>> {
    let mut by_worker: HashMap<u64, Vec<JsonClient>> = HashMap::new();
    for _ in 0..200 {
        if by_worker.len() == 2 && by_worker.values().all(|c| c.len() >= per_worker) {
            return by_worker;
        }
        let mut raw = JsonClient::connect_retrying(port).await;
        let info = raw
            .invoke("workerInfo", Value::Null)
            .await
            .expect("workerInfo");
        let worker = info["data"]["id"].as_u64().expect("worker id");
        by_worker.entry(worker).or_default().push(raw);
    }
    panic!("connections did not spread over both workers");
}

async fn cluster_info(raw: &mut JsonClient) -> Value {
    raw.invoke("clusterInfo", Value::Null)
        .await
        .expect("clusterInfo")["data"]
        .clone()
}

fn publication(frame: &Value, channel: &str) -> Option<(Pos, Value)> {
    (frame["event"] == "#publish" && frame["data"]["channel"] == channel)
        .then(|| Some((Pos::of(&frame["data"])?, frame["data"]["data"].clone())))
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sequence_and_one_presence_across_workers_and_brokers() {
    let cluster = Instance::start(&["--workers", "2", "--brokers", "2"]);
    let mut by_worker = raw_on_both_workers(cluster.port, 2).await;
    let mut all: Vec<JsonClient> = by_worker.values_mut().flat_map(std::mem::take).collect();
    // Two channels, so that (by sc-hasher) both brokers are likely to own one.
    for channel in ["room/a", "room/b"] {
        let mut epoch = None;
        for raw in &mut all {
            let ack = raw
                .invoke("#subscribe", json!({"channel": channel}))
                .await
                .expect("subscribe");
            let position = Pos::of(&ack["data"]).expect("subscribe ack carries the position");
            assert_eq!(position.offset, 0);
            epoch.get_or_insert(position.epoch.clone());
            assert_eq!(
                Some(&position.epoch),
                epoch.as_ref(),
                "one epoch for every worker"
            );
        }
        // Publishers on both workers; the offsets form one sequence.
        let n = all.len();
        for (i, raw) in all.iter_mut().enumerate() {
            let ack = raw
                .invoke("#publish", json!({"channel": channel, "data": i}))
                .await
                .expect("publish");
            assert_eq!(
                Pos::of(&ack["data"]).expect("ack position").offset,
                i as u64 + 1
            );
        }
        for raw in &mut all {
            let mut offsets = Vec::new();
            while offsets.len() < n {
                let frame = raw.next(WAIT).await.expect("delivery");
                if let Some((position, _)) = publication(&frame, channel) {
                    offsets.push(position.offset);
                }
            }
            assert_eq!(offsets, (1..=n as u64).collect::<Vec<_>>());
        }
    }
    // Presence counts every socket on both workers.
    let answer = all[0]
        .invoke("#presence", json!({"channel": "room/a"}))
        .await
        .expect("presence");
    assert_eq!(answer["data"]["count"], all.len(), "{answer}");
    // A new socket's join reaches the others whichever worker they are on.
    let mut late = JsonClient::connect_retrying(cluster.port).await;
    late.invoke("#subscribe", json!({"channel": "room/a"}))
        .await
        .expect("subscribe");
    for raw in &mut all {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = raw.next(WAIT).await.expect("join event");
            if frame["event"] == "#presenceJoin"
                && frame["data"]["client"]["id"] == late.id.as_str()
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline);
        }
    }
}

/// A subscriber that reconnects and recovers after every connection loss, recording every
/// offset it receives on `channel`.
async fn recovering_subscriber(
    port: u16,
    channel: &'static str,
    mut raw: JsonClient,
    done: watch::Receiver<Option<u64>>,
) -> (Vec<u64>, Vec<bool>) {
    let mut offsets = Vec::new();
    let mut recovered_flags = Vec::new();
    let mut last: Option<Pos> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut data = json!({"channel": channel});
        if let Some(position) = &last {
            data["data"] = json!({"recover": {"offset": position.offset, "epoch": position.epoch}});
        }
        if let Ok(ack) = raw.invoke("#subscribe", data).await {
            let replayed = raw.take_stash();
            for frame in &replayed {
                if let Some((position, _)) = publication(frame, channel) {
                    offsets.push(position.offset);
                    last = Some(position);
                }
            }
            if let Some(flag) = ack["data"]["recovered"].as_bool() {
                recovered_flags.push(flag);
            }
            if let Some(position) = Pos::of(&ack["data"]) {
                last = Some(position);
            }
            loop {
                if let Some(end) = *done.borrow()
                    && last.as_ref().is_some_and(|l| l.offset >= end)
                {
                    return (offsets, recovered_flags);
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "subscriber never finished"
                );
                match raw.next(Duration::from_millis(300)).await {
                    Ok(frame) => {
                        if let Some((position, _)) = publication(&frame, channel) {
                            offsets.push(position.offset);
                            last = Some(position);
                        }
                    }
                    Err(e) if e == "timed out" => {}
                    Err(_) => break,
                }
            }
        }
        raw = JsonClient::connect_retrying(port).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_kill_during_a_stream_loses_and_doubles_nothing_for_recovering_subscribers() {
    let cluster = Instance::start(&["--workers", "2", "--brokers", "2"]);
    let mut by_worker = raw_on_both_workers(cluster.port, 3).await;
    let mut publisher = by_worker.get_mut(&0).unwrap().remove(0);
    let victim_pid = cluster_info(&mut publisher).await["workers"]["1"]
        .as_u64()
        .expect("worker 1 pid");
    let (done_tx, done_rx) = watch::channel(None);
    let mut subscribers = Vec::new();
    for raw in by_worker.values_mut().flat_map(std::mem::take) {
        subscribers.push(tokio::spawn(recovering_subscriber(
            cluster.port,
            "room/stream",
            raw,
            done_rx.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // About 500 publications a second for 3 s; worker 1 is killed after 1 s.
    let mut acknowledged = Vec::new();
    let start = tokio::time::Instant::now();
    let mut killed = false;
    let mut i = 0u64;
    while start.elapsed() < Duration::from_secs(3) && i < 1500 {
        if !killed && start.elapsed() > Duration::from_secs(1) {
            kill(Pid::from_raw(victim_pid as i32), Signal::SIGKILL).expect("kill -9 worker 1");
            killed = true;
        }
        if let Ok(ack) = publisher
            .invoke("#publish", json!({"channel": "room/stream", "data": i}))
            .await
            && let Some(position) = Pos::of(&ack["data"])
        {
            acknowledged.push(position.offset);
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(killed);
    let last = *acknowledged.last().expect("publications acknowledged");
    done_tx.send_replace(Some(last));
    let mut recoveries = 0;
    for subscriber in subscribers {
        let (offsets, recovered) = tokio::time::timeout(Duration::from_secs(60), subscriber)
            .await
            .expect("subscriber finished")
            .expect("subscriber task");
        let expected: Vec<u64> = (1..=*offsets.last().unwrap_or(&0)).collect();
        assert_eq!(offsets, expected, "every offset once, in order");
        assert!(
            offsets.len() as u64 >= last,
            "every acknowledged publication arrived"
        );
        assert!(
            recovered.iter().all(|r| *r),
            "the epoch survived the worker kill"
        );
        recoveries += recovered.len();
    }
    assert!(
        recoveries >= 3,
        "worker 1's subscribers reconnected and recovered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_kill_changes_the_epoch_and_recovery_says_recovered_false() {
    let cluster = Instance::start(&["--workers", "2", "--brokers", "2"]);
    let mut by_worker = raw_on_both_workers(cluster.port, 1).await;
    let mut subscriber = by_worker.get_mut(&0).unwrap().remove(0);
    let mut publisher = by_worker.get_mut(&1).unwrap().remove(0);
    // Find a room channel owned by broker 1, and its broker's pid.
    let info = cluster_info(&mut publisher).await;
    let broker_pid = info["brokers"]["1"].as_u64().expect("broker 1 pid");
    let channel = (0..64)
        .map(|i| format!("room/k{i}"))
        .find(|c| sc_protocol::hash::hash_key(c, 2) == 1)
        .expect("a channel on broker 1");
    let ack = subscriber
        .invoke("#subscribe", json!({"channel": channel}))
        .await
        .expect("subscribe");
    let old_epoch = Pos::of(&ack["data"]).expect("position").epoch;
    for i in 0..3 {
        publisher
            .invoke("#publish", json!({"channel": channel, "data": i}))
            .await
            .expect("publish");
    }
    let mut old = None;
    while old.as_ref().is_none_or(|p: &Pos| p.offset < 3) {
        let frame = subscriber.next(WAIT).await.expect("delivery");
        if let Some((position, _)) = publication(&frame, &channel) {
            old = Some(position);
        }
    }
    kill(Pid::from_raw(broker_pid as i32), Signal::SIGKILL).expect("kill -9 broker 1");

    // Publish until one is acknowledged by the restarted broker: it is offset 1 of a new epoch,
    // and the live subscriber sees the new epoch on its next delivery.
    let deadline = tokio::time::Instant::now() + WAIT;
    let new = loop {
        if let Ok(ack) = publisher
            .invoke("#publish", json!({"channel": channel, "data": "after"}))
            .await
            && let Some(position) = Pos::of(&ack["data"])
        {
            break position;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing never resumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(
        new.epoch, old_epoch,
        "a broker restarted empty starts a new epoch"
    );
    assert_eq!(new.offset, 1);
    loop {
        let frame = subscriber
            .next(WAIT)
            .await
            .expect("delivery after the restart");
        if let Some((position, _)) = publication(&frame, &channel) {
            assert_eq!(position, new, "the next delivery carries the new epoch");
            break;
        }
    }
    // A client recovering from the old position is told: recovered false, nothing replayed.
    let mut late = JsonClient::connect_retrying(cluster.port).await;
    let old = old.expect("old position");
    let ack = late
        .invoke(
            "#subscribe",
            json!({"channel": channel, "data": {"recover": {"offset": old.offset, "epoch": old.epoch}}}),
        )
        .await
        .expect("subscribe");
    assert_eq!(ack["data"]["recovered"], false, "{ack}");
    assert_eq!(Pos::of(&ack["data"]), Some(new));
    assert!(late.take_stash().iter().all(|f| f["event"] != "#publish"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_sockets_leave_presence_everywhere() {
    let cluster = Instance::start(&["--workers", "2", "--brokers", "2"]);
    let mut by_worker = raw_on_both_workers(cluster.port, 1).await;
    let mut observer = by_worker.get_mut(&0).unwrap().remove(0);
    let mut victim = by_worker.get_mut(&1).unwrap().remove(0);
    observer
        .invoke("#subscribe", json!({"channel": "room/p"}))
        .await
        .expect("subscribe");
    victim
        .invoke("#subscribe", json!({"channel": "room/p"}))
        .await
        .expect("subscribe");
    let answer = observer
        .invoke("#presence", json!({"channel": "room/p"}))
        .await
        .expect("presence");
    assert_eq!(answer["data"]["count"], 2, "{answer}");
    let pid = cluster_info(&mut observer).await["workers"]["1"]
        .as_u64()
        .expect("worker 1 pid");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9 worker 1");
    // pingTimeout (20 s) + 5 s at most.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        match observer.next(Duration::from_secs(1)).await {
            Ok(frame)
                if frame["event"] == "#presenceLeave"
                    && frame["data"]["client"]["id"] == victim.id.as_str() =>
            {
                break;
            }
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "the killed worker's socket never left"
            ),
        }
    }
    let answer = observer
        .invoke("#presence", json!({"channel": "room/p"}))
        .await
        .expect("presence");
    assert_eq!(answer["data"]["count"], 1, "{answer}");
}
