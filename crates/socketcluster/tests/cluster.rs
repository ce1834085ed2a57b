//! End-to-end tests of the process cluster: a real master with 2 workers and 2 brokers (the
//! `cluster_fixture` example), clients connected over TCP, processes killed with SIGKILL.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use common::{Instance, WAIT, client_options, fixture_path, next_value, subscribed};
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sc_client::{Client, ClientOptions};
use serde_json::{Value, json};

type Cluster = Instance;

fn options() -> ClientOptions {
    client_options()
}

async fn call(client: &Client, event: &str, data: Value) -> Value {
    let reply = tokio::time::timeout(WAIT, client.invoke(event, data))
        .await
        .unwrap_or_else(|_| panic!("{event} timed out"))
        .unwrap_or_else(|e| panic!("{event} failed: {e}"));
    reply
        .map(|j| j.parse().expect("json"))
        .unwrap_or(Value::Null)
}

async fn worker_of(client: &Client) -> (u64, u64) {
    let info = call(client, "workerInfo", Value::Null).await;
    (
        info["id"].as_u64().expect("id"),
        info["pid"].as_u64().expect("pid"),
    )
}

/// Connects clients until both workers have at least `per_worker` of them.
async fn clients_on_both_workers(
    cluster: &Cluster,
    per_worker: usize,
) -> HashMap<u64, Vec<Client>> {
    let mut by_worker: HashMap<u64, Vec<Client>> = HashMap::new();
    for _ in 0..200 {
        if by_worker.len() == 2 && by_worker.values().all(|c| c.len() >= per_worker) {
            return by_worker;
        }
        let client = Client::connect(&cluster.url(), options())
            .await
            .expect("connect");
        let (worker, _) = worker_of(&client).await;
        by_worker.entry(worker).or_default().push(client);
    }
    panic!(
        "connections did not spread over both workers: {:?}",
        by_worker.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_every_subscriber_on_every_worker_exactly_once_in_order() {
    let cluster = Cluster::start(&["--workers", "2", "--brokers", "2"]);
    let by_worker = clients_on_both_workers(&cluster, 3).await;
    // `news` lives on broker 1 and `chan-a` on broker 0 (sc-hasher): both brokers carry traffic.
    let mut subscriptions = Vec::new();
    for clients in by_worker.values() {
        for client in clients {
            for name in ["news", "chan-a"] {
                subscriptions.push((name, subscribed(client, name).await));
            }
        }
    }
    let publisher = &by_worker[&0][0];
    const COUNT: u64 = 200;
    for n in 0..COUNT {
        for name in ["news", "chan-a"] {
            publisher
                .invoke_publish(name, json!({ "n": n }))
                .await
                .expect("publish acknowledged");
        }
    }
    for (name, channel) in &mut subscriptions {
        for n in 0..COUNT {
            assert_eq!(
                next_value(channel).await,
                json!({ "n": n }),
                "{name}: message {n}"
            );
        }
        let extra = tokio::time::timeout(Duration::from_millis(300), channel.next()).await;
        assert!(extra.is_err(), "{name}: a duplicate arrived: {extra:?}");
    }
}

/// A client that does not wait for its publish acknowledgements: its publishes to a shared
/// channel cross the broker pipelined (more of them than a socket's 64 handler slots, so some
/// wait inline in between). Every subscriber on both workers gets each once, in order, and every
/// publish is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_sent_without_waiting_cross_workers_once_and_in_order() {
    let cluster = Cluster::start(&["--workers", "2", "--brokers", "2"]);
    let by_worker = clients_on_both_workers(&cluster, 2).await;
    let mut subscriptions = Vec::new();
    for clients in by_worker.values() {
        for client in clients {
            subscriptions.push(subscribed(client, "news").await);
        }
    }
    let publisher = &by_worker[&1][0];
    const COUNT: u64 = 1000;
    // Created in order and first polled in order, each queued to the client's connection (room
    // for 1024) on that first poll: sent in order, answered in any order. Unconstrained: a
    // send that found the task's cooperative budget spent would be retried after later ones.
    let publishes = (0..COUNT).map(|n| publisher.invoke_publish("news", json!({ "n": n })));
    let all = tokio::task::unconstrained(futures_util::future::join_all(publishes));
    let acks = tokio::time::timeout(WAIT, all)
        .await
        .expect("every publish answered in time");
    for (n, ack) in acks.into_iter().enumerate() {
        ack.unwrap_or_else(|e| panic!("publish {n} failed: {e}"));
    }
    for channel in &mut subscriptions {
        for n in 0..COUNT {
            assert_eq!(next_value(channel).await, json!({ "n": n }), "message {n}");
        }
        let extra = tokio::time::timeout(Duration::from_millis(300), channel.next()).await;
        assert!(extra.is_err(), "a duplicate arrived: {extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_by_one_worker_is_accepted_by_another_without_an_auth_key() {
    let cluster = Cluster::start(&["--workers", "2", "--brokers", "1"]);
    let mut by_worker = clients_on_both_workers(&cluster, 1).await;
    let signer = by_worker
        .remove(&0)
        .expect("a client on worker 0")
        .remove(0);
    let verifier = by_worker
        .remove(&1)
        .expect("a client on worker 1")
        .remove(0);
    call(&signer, "login", json!({ "username": "alice" })).await;
    let token = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(token) = signer.signed_auth_token() {
                return token;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("#setAuthToken from worker 0");
    let status = tokio::time::timeout(WAIT, verifier.authenticate(&token))
        .await
        .expect("#authenticate answered")
        .expect("#authenticate succeeded");
    assert!(
        status.is_authenticated,
        "worker 1 refused worker 0's token: {:?}",
        status.auth_error
    );
}

#[test]
fn the_broker_and_master_sockets_are_reachable_by_this_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start(&["--workers", "1", "--brokers", "1"]);
    let suffix = format!("_{}", cluster.master.id());
    let dir = std::fs::read_dir(std::env::temp_dir().join("socketcluster"))
        .expect("socket root")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.to_string_lossy().ends_with(&suffix))
        .expect("the cluster's socket directory");
    assert!(dir.join("master.sock").exists());
    let mode = std::fs::metadata(&dir)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{} is mode {:o}", dir.display(), mode);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_data_is_shared_across_workers_and_brokers_answer_custom_messages() {
    let cluster = Cluster::start(&["--workers", "2", "--brokers", "2"]);
    let by_worker = clients_on_both_workers(&cluster, 1).await;
    let (a, b) = (&by_worker[&0][0], &by_worker[&1][0]);
    call(
        a,
        "kvSet",
        json!({ "key": ["user", "bob"], "value": { "age": 5 } }),
    )
    .await;
    assert_eq!(
        call(b, "kvGet", json!({ "key": ["user"] })).await,
        json!({ "bob": { "age": 5 } })
    );
    assert_eq!(
        call(a, "kvAdd", json!({ "key": ["list"], "value": "i1" })).await,
        json!(0)
    );
    assert_eq!(
        call(b, "kvAdd", json!({ "key": ["list"], "value": "i2" })).await,
        json!(1)
    );
    assert_eq!(
        call(a, "kvCount", json!({ "key": ["list"] })).await,
        json!(2)
    );
    assert_eq!(
        call(b, "brokerEcho", json!({ "hello": 1 })).await,
        json!({ "hello": 1 })
    );
    let info = call(a, "clusterInfo", Value::Null).await;
    assert_eq!(
        info["workers"].as_object().map(|w| w.len()),
        Some(2),
        "{info}"
    );
    assert_eq!(
        info["brokers"].as_object().map(|b| b.len()),
        Some(2),
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_rebooted_and_its_clients_come_back_with_their_channels() {
    let cluster = Cluster::start(&["--workers", "2", "--brokers", "1"]);
    let by_worker = clients_on_both_workers(&cluster, 1).await;
    let victim = &by_worker[&1][0];
    let (_, old_pid) = worker_of(victim).await;
    let mut events = victim.events();
    let mut news = subscribed(victim, "news").await;

    kill(Pid::from_raw(old_pid as i32), Signal::SIGKILL).expect("kill -9 the worker");
    // The client notices and reconnects by itself (to whichever worker takes it).
    let disconnected = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let sc_client::ClientEvent::Disconnect { code, .. } = event {
                return code;
            }
        }
        0
    })
    .await
    .expect("the client saw the disconnect");
    assert_eq!(disconnected, 1006);
    tokio::time::timeout(WAIT, victim.connected())
        .await
        .expect("reconnected in time")
        .expect("reconnected");

    // The master rebooted worker 1 with the same id and a new process.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = call(&by_worker[&0][0], "clusterInfo", Value::Null).await;
        if let Some(pid) = info["workers"]["1"].as_u64()
            && pid != old_pid
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker 1 was not rebooted: {info}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Delivery resumes on the restored channel.
    tokio::time::timeout(WAIT, news.subscribed())
        .await
        .expect("in time")
        .expect("re-subscribed");
    by_worker[&0][0]
        .invoke_publish("news", json!("after reboot"))
        .await
        .expect("publish");
    assert_eq!(next_value(&mut news).await, json!("after reboot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_is_restarted_and_workers_resubscribe_without_the_clients() {
    let cluster = Cluster::start(&["--workers", "2", "--brokers", "2"]);
    let by_worker = clients_on_both_workers(&cluster, 1).await;
    let (subscriber, publisher) = (&by_worker[&0][0], &by_worker[&1][0]);
    let mut news = subscribed(subscriber, "news").await;
    publisher
        .invoke_publish("news", json!(0))
        .await
        .expect("publish");
    assert_eq!(next_value(&mut news).await, json!(0));

    let info = call(publisher, "clusterInfo", Value::Null).await;
    let broker_pid = info["brokers"]["1"]
        .as_u64()
        .expect("broker 1 (owner of `news`)");
    kill(Pid::from_raw(broker_pid as i32), Signal::SIGKILL).expect("kill -9 the broker");

    // Publish until one gets through the restarted broker; the subscriber did nothing.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 1;
    loop {
        let _ = publisher.invoke_publish("news", json!(n)).await;
        match tokio::time::timeout(Duration::from_millis(200), news.next()).await {
            Ok(Some(value)) => {
                let value: Value = value.parse().expect("json");
                assert!(value.as_u64().is_some_and(|v| v >= 1), "unexpected {value}");
                break;
            }
            Ok(None) => panic!("channel closed"),
            Err(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery did not resume after the broker restart"
        );
        n += 1;
    }
    let info = call(publisher, "clusterInfo", Value::Null).await;
    assert_ne!(
        info["brokers"]["1"].as_u64(),
        Some(broker_pid),
        "broker 1 was restarted: {info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_clients_with_1001_and_stops_every_process() {
    let mut cluster = Cluster::start(&[
        "--workers",
        "2",
        "--brokers",
        "1",
        "--process-term-timeout",
        "3000",
    ]);
    let by_worker = clients_on_both_workers(&cluster, 1).await;
    let info = call(&by_worker[&0][0], "clusterInfo", Value::Null).await;
    let mut pids: HashSet<u64> = HashSet::new();
    for group in ["workers", "brokers"] {
        pids.extend(
            info[group]
                .as_object()
                .expect("pids")
                .values()
                .filter_map(Value::as_u64),
        );
    }
    let mut events: Vec<_> = by_worker.values().flatten().map(|c| c.events()).collect();
    cluster.signal(Signal::SIGTERM);
    for stream in &mut events {
        let code = tokio::time::timeout(WAIT, async {
            while let Some(event) = stream.next().await {
                if let sc_client::ClientEvent::Disconnect { code, .. } = event {
                    return code;
                }
            }
            0
        })
        .await
        .expect("disconnect in time");
        assert_eq!(code, 1001);
    }
    let deadline = std::time::Instant::now() + WAIT;
    while cluster.master.try_wait().expect("wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the master did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        let alive = kill(Pid::from_raw(pid as i32), None).is_ok();
        assert!(!alive, "process {pid} outlived the master");
    }
}

/// The pid the master has for worker `id` now (`None` while it is waiting to restart it).
async fn worker_pid(asker: &Client, id: u64) -> Option<u64> {
    call(asker, "clusterInfo", Value::Null).await["workers"][id.to_string()].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_restart_backoff_exits_without_waiting_for_it() {
    let mut cluster = Cluster::start(&[
        "--workers",
        "2",
        "--brokers",
        "1",
        "--process-term-timeout",
        "3000",
        // Sockets still open at SIGTERM are closed at once, not spread over 5 s: this test
        // times the restart backoff, not the drain.
        "--drain-duration",
        "0",
    ]);
    let by_worker = clients_on_both_workers(&cluster, 1).await;
    let asker = &by_worker[&0][0];
    by_worker[&1][0]
        .close()
        .await
        .expect("close the client of worker 1");
    // Worker 1 dies right after every start: its restart backoff doubles each time, to 5 s.
    let mut last = None;
    for _ in 0..8 {
        let deadline = tokio::time::Instant::now() + WAIT;
        let pid = loop {
            if let Some(pid) = worker_pid(asker, 1).await
                && Some(pid) != last
            {
                break pid;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker 1 was not restarted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9 worker 1");
        last = Some(pid);
    }
    // The master saw the last death: worker 1 waits for its (5 s) backoff.
    let deadline = tokio::time::Instant::now() + WAIT;
    while worker_pid(asker, 1).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the master did not notice the death"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every client leaves first. (Connecting until both workers had one client may have left
    // several on worker 0.)
    let still_open = by_worker[&0].iter().chain(by_worker[&1].iter().skip(1));
    for client in still_open {
        client.close().await.expect("close a client");
    }

    cluster.signal(Signal::SIGTERM);
    let signalled = std::time::Instant::now();
    // Generous, yet below the 5 s backoff a sleep in the signal's way would add.
    let bound = Duration::from_secs(4);
    while cluster.master.try_wait().expect("wait").is_none() {
        assert!(
            signalled.elapsed() < bound,
            "the master did not exit within {bound:?} of SIGTERM during a restart backoff"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_configuration_fails_before_anything_starts() {
    let output = Command::new(fixture_path())
        .args(["--workers", "0"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("workers must be at least 1"));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let output = Command::new(fixture_path())
        .args(["--host", "127.0.0.1", "--port", &port])
        .output()
        .expect("run");
    assert!(!output.status.success(), "a port in use must be refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen"));
}

/// The Linux scheduling policy of process `pid` (`/proc/<pid>/stat` field 41: 0 is
/// `SCHED_OTHER`, 3 is `SCHED_BATCH`).
fn scheduling_policy(pid: u64) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')').expect("name") + 1..];
    after_name
        .split_whitespace()
        .nth(41 - 3)
        .expect("policy field")
        .parse()
        .expect("policy number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_run_under_sched_batch_by_default_and_normal_when_told() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    for (args, broker_policy) in [
        (&[][..], SCHED_BATCH),
        (&["--broker-scheduling", "normal"][..], SCHED_OTHER),
    ] {
        let cluster = Cluster::start(&[&["--workers", "1", "--brokers", "2"][..], args].concat());
        let client = Client::connect(&cluster.url(), options())
            .await
            .expect("connect");
        let info = call(&client, "clusterInfo", Value::Null).await;
        for id in ["0", "1"] {
            let pid = info["brokers"][id].as_u64().expect("broker pid");
            assert_eq!(
                scheduling_policy(pid),
                broker_policy,
                "broker {id} with {args:?}"
            );
        }
        let worker = info["workers"]["0"].as_u64().expect("worker pid");
        assert_eq!(
            scheduling_policy(worker),
            SCHED_OTHER,
            "workers serve clients: normal policy"
        );
        // The brokers still relay: a publication reaches its subscriber.
        let mut news = subscribed(&client, "news").await;
        client
            .invoke_publish("news", json!("hello"))
            .await
            .expect("publish");
        assert_eq!(next_value(&mut news).await, json!("hello"));
        client.close().await.expect("close");
    }
}
