//! `sc-client` subscribers in cluster mode (`--workers 2 --brokers 2`, the boilerplate's `room/*`
//! history): a worker `kill -9` during a stream of about 500 publications a second loses and
//! doubles nothing — the client recovers on its own after reconnecting, and says so.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Instance, client_options};
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sc_client::{Channel, Client, ClientEvent, Events, Recovery};
use serde_json::{Value, json};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(20);
const CHANNEL: &str = "room/sc-client-stream";

async fn worker_of(client: &Client) -> (u64, u64) {
    let info: Value = tokio::time::timeout(WAIT, client.invoke("workerInfo", Value::Null))
        .await
        .expect("workerInfo in time")
        .expect("workerInfo")
        .expect("data")
        .parse()
        .expect("json");
    (
        info["id"].as_u64().expect("id"),
        info["pid"].as_u64().expect("pid"),
    )
}

/// Connected clients (with their event streams) until both workers have `per_worker`.
async fn clients_on_both_workers(
    cluster: &Instance,
    per_worker: usize,
) -> HashMap<u64, Vec<(Client, Events, u64)>> {
    let mut by_worker: HashMap<u64, Vec<(Client, Events, u64)>> = HashMap::new();
    for _ in 0..200 {
        if by_worker.len() == 2 && by_worker.values().all(|c| c.len() >= per_worker) {
            return by_worker;
        }
        let client = Client::connect(&cluster.url(), client_options())
            .await
            .expect("connect");
        let events = client.events();
        let (worker, pid) = worker_of(&client).await;
        by_worker
            .entry(worker)
            .or_default()
            .push((client, events, pid));
    }
    panic!("connections did not spread over both workers");
}

/// Reads the channel until it has seen offset `done` (once known); returns the data and
/// offsets in arrival order, and the recovery outcomes reported meanwhile.
async fn collect(
    mut channel: Channel,
    mut events: Events,
    mut done: watch::Receiver<Option<u64>>,
) -> (Vec<u64>, Vec<u64>, Vec<Recovery>) {
    let (mut data, mut offsets, mut recoveries) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        if let Some(last) = *done.borrow() {
            if offsets.last().is_some_and(|o| *o >= last) {
                break;
            }
        }
        tokio::select! {
            item = channel.next() => {
                let item = item.expect("the channel stays open");
                data.push(item.parse::<u64>().expect("a number"));
                offsets.push(item.offset().expect("a position"));
            }
            Some(event) = events.next() => {
                if let ClientEvent::Recovery { recovery, .. } = event {
                    recoveries.push(recovery);
                }
            }
            _ = done.changed() => {}
        }
    }
    (data, offsets, recoveries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sc_client_subscribers_recover_through_a_worker_kill() {
    let cluster = Instance::start(&["--workers", "2", "--brokers", "2"]);
    let mut by_worker = clients_on_both_workers(&cluster, 2).await;
    let (publisher, _, _) = by_worker.get_mut(&0).expect("worker 0").remove(0);
    let victim = by_worker[&1][0].2;

    let (done_tx, done_rx) = watch::channel(None);
    let mut subscribers = Vec::new();
    for (worker, clients) in by_worker {
        for (client, events, _) in clients {
            let channel = client.subscribe(CHANNEL).await.expect("subscribe");
            tokio::time::timeout(WAIT, channel.subscribed())
                .await
                .expect("subscribed in time")
                .expect("subscribed");
            let task = tokio::spawn(collect(channel, events, done_rx.clone()));
            subscribers.push((worker, client, task));
        }
    }

    // About 500 publications a second for 3 s; worker 1 is killed after 1 s.
    let mut acknowledged = Vec::new();
    let start = tokio::time::Instant::now();
    let mut killed = false;
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(3) && n < 1500 {
        if !killed && start.elapsed() > Duration::from_secs(1) {
            kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill -9 worker 1");
            killed = true;
        }
        if let Ok(Some(position)) = publisher.invoke_publish_position(CHANNEL, json!(n)).await {
            acknowledged.push((n, position.offset));
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(killed);
    let last = acknowledged.last().expect("publications acknowledged").1;
    done_tx.send_replace(Some(last));

    let mut recovered = 0;
    for (worker, _client, task) in subscribers {
        let (data, offsets, recoveries) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the subscriber got everything in time")
            .expect("subscriber task");
        assert_eq!(
            offsets,
            (1..=last).collect::<Vec<_>>(),
            "every offset once, in order (worker {worker})"
        );
        for (number, offset) in &acknowledged {
            assert_eq!(
                data[(*offset - 1) as usize],
                *number,
                "publication at offset {offset}"
            );
        }
        assert!(
            recoveries.iter().all(Recovery::is_recovered),
            "the epoch survived the worker kill: {recoveries:?}"
        );
        if worker == 1 {
            assert!(!recoveries.is_empty(), "worker 1's subscribers recovered");
        }
        recovered += recoveries.len();
    }
    assert!(recovered >= 2, "both of worker 1's subscribers recovered");
}
