//! Rolling restart (SIGUSR2 to the master) under load: every worker is replaced, one at a time,
//! while a publisher streams acknowledged publications on a history channel (the boilerplate's
//! `room/*`) to recovering `sc-client` subscribers, and a probe connects to the port all along.
//!
//! What a user relies on, and these tests assert (with two workers, and with a single one):
//! - the port accepts and answers `GET /health` at every moment of the roll;
//! - every worker process is replaced and the old ones exit;
//! - every subscriber is moved (1001), reconnects, resubscribes with `recover` and is told
//!   `recovered: true`; it then holds every offset once, in order, and every publication that
//!   was acknowledged to the publisher is at its offset: nothing acknowledged is lost or doubled;
//! - the publisher is moved too, reconnects on its own and keeps publishing after the roll.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Instance, client_options};
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parking_lot::Mutex;
use sc_client::{Channel, Client, ClientEvent, Events, Recovery};
use serde_json::{Value, json};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);
const CHANNEL: &str = "room/rolling";
const SUBSCRIBERS: usize = 4;

/// Connects, trying again while no worker takes the upgrade (a draining worker answers 503).
async fn connect(url: &str) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        match Client::connect(url, client_options()).await {
            Ok(client) => return client,
            Err(error) => {
                assert!(Instant::now() < deadline, "cannot connect: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The master's view of its workers: id → pid.
async fn worker_pids(url: &str) -> HashMap<String, u64> {
    let client = connect(url).await;
    let info: Value = tokio::time::timeout(WAIT, client.invoke("clusterInfo", Value::Null))
        .await
        .expect("in time")
        .expect("clusterInfo")
        .expect("data")
        .parse()
        .expect("json");
    let _ = client.close().await;
    info["workers"]
        .as_object()
        .unwrap_or_else(|| panic!("clusterInfo: {info}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("pid")))
        .collect()
}

/// Connects to the port and asks `/health`, back to back (1 ms apart), until `stop`; returns
/// (probes, failures).
fn probe(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut probes, mut failures) = (0u64, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && probes < 100_000 {
            probes += 1;
            let result = (|| -> std::io::Result<String> {
                let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
                tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
                tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                let mut text = String::new();
                tcp.read_to_string(&mut text)?;
                Ok(text)
            })();
            match result {
                Ok(text) if text.starts_with("HTTP/1.1 200") => {}
                Ok(text) => failures.push(format!(
                    "probe {probes}: {:?}",
                    text.lines().next().unwrap_or("")
                )),
                Err(error) => failures.push(format!("probe {probes}: {error}")),
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (probes, failures)
    })
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
        if let Some(last) = *done.borrow()
            && offsets.last().is_some_and(|o| *o >= last)
        {
            break;
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

/// What the publisher got acknowledged: (number published, offset), in order.
type Acked = Arc<Mutex<Vec<(u64, u64)>>>;

/// Publishes 1, 2, 3, … about 100 times a second until `stop`, on one `sc-client` that
/// reconnects on its own; notes every acknowledged publication. Returns how many it attempted
/// and how often it connected.
fn publisher(
    client: Client,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    let connects = Arc::new(AtomicU64::new(1));
    {
        let (connects, mut events) = (connects.clone(), client.events());
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if matches!(event, ClientEvent::Connect { .. }) {
                    connects.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 20_000 {
            n += 1;
            let sent = tokio::time::timeout(
                Duration::from_secs(3),
                client.invoke_publish_position(CHANNEL, json!(n)),
            )
            .await;
            if let Ok(Ok(Some(position))) = sent {
                acked.lock().push((n, position.offset));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = client.close().await;
        (n, connects.load(Ordering::Relaxed))
    })
}

async fn acked_at_least(acked: &Acked, count: usize) {
    let deadline = Instant::now() + WAIT;
    while acked.lock().len() < count {
        assert!(
            Instant::now() < deadline,
            "the publisher got no more acknowledgements ({} so far)",
            acked.lock().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rolling_restart_loses_no_acknowledged_publication(workers: usize) {
    let workers_arg = workers.to_string();
    let cluster = Instance::start(&[
        "--workers",
        &workers_arg,
        "--brokers",
        "1",
        "--drain-duration",
        "500",
    ]);
    let url = cluster.url();
    let before = worker_pids(&url).await;
    assert_eq!(before.len(), workers);

    let (done_tx, done_rx) = watch::channel(None);
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let client = connect(&url).await;
        let events = client.events();
        let channel = client.subscribe(CHANNEL).await.expect("subscribe");
        tokio::time::timeout(WAIT, channel.subscribed())
            .await
            .expect("subscribed in time")
            .expect("subscribed");
        let task = tokio::spawn(collect(channel, events, done_rx.clone()));
        subscribers.push((client, task));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let publishing = publisher(connect(&url).await, acked.clone(), stop.clone());
    let probing = probe(cluster.port, stop.clone());
    acked_at_least(&acked, 50).await;

    cluster.signal(Signal::SIGUSR2);
    let deadline = Instant::now() + WAIT;
    loop {
        let now = worker_pids(&url).await;
        let replaced =
            now.len() == workers && now.iter().all(|(id, pid)| before.get(id) != Some(pid));
        let old_gone = before
            .values()
            .all(|pid| kill(Pid::from_raw(*pid as i32), None).is_err());
        if replaced && old_gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rolling restart did not finish: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The stream goes on after the roll: the publisher came back on a new worker.
    let after_roll = acked.lock().len();
    acked_at_least(&acked, after_roll + 50).await;
    stop.store(true, Ordering::Relaxed);
    let (attempted, publisher_connects) = publishing.await.expect("publisher");
    let (probes, failures) = probing.join().expect("probe");

    assert!(probes > 100, "the probe ran ({probes} probes)");
    assert!(
        failures.is_empty(),
        "the port was not served at some moment ({} of {probes} probes failed): {failures:?}",
        failures.len()
    );
    assert!(
        publisher_connects >= 2,
        "the publisher was moved and reconnected"
    );
    let acked = acked.lock().clone();
    let last = acked.last().expect("publications acknowledged").1;
    done_tx.send_replace(Some(last));

    for (i, (_client, task)) in subscribers.into_iter().enumerate() {
        let (data, offsets, recoveries) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap_or_else(|_| panic!("subscriber {i} got every offset up to {last} in time"))
            .expect("subscriber task");
        assert_eq!(
            offsets,
            (1..=last).collect::<Vec<_>>(),
            "subscriber {i}: every offset once, in order"
        );
        for (number, offset) in &acked {
            assert_eq!(
                data[(*offset - 1) as usize],
                *number,
                "subscriber {i}: the acknowledged publication at offset {offset}"
            );
        }
        assert!(
            !recoveries.is_empty(),
            "subscriber {i} was moved and resubscribed with recovery"
        );
        assert!(
            recoveries.iter().all(Recovery::is_recovered),
            "subscriber {i}: every recovery was complete: {recoveries:?}"
        );
        eprintln!(
            "subscriber {i}: {} publications, {} recoveries",
            offsets.len(),
            recoveries.len()
        );
    }
    eprintln!(
        "{workers} worker(s): {} of {attempted} publications acknowledged, {publisher_connects} publisher connects, {probes} probes",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_two_workers_loses_no_acknowledged_publication_and_keeps_the_port_served()
 {
    rolling_restart_loses_no_acknowledged_publication(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_a_single_worker_loses_no_acknowledged_publication_and_keeps_the_port_served()
 {
    rolling_restart_loses_no_acknowledged_publication(1).await;
}
