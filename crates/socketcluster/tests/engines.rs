//! Several cluster instances linked by a real engine (Redis, NATS): cross-instance delivery with
//! exact counts, shared key/value data, and an engine restart mid-traffic. Each test starts its
//! own private engine on a free port (so it can stop and restart it) and never touches the
//! machine's own Redis or NATS.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Instance, WAIT, client_options, fixture_path, next_value, subscribed};
use futures_util::StreamExt;
use sc_client::{Client, ClientOptions};
use sc_test_support::engine::{EngineKind, EngineServer};
use sc_test_support::net::free_port;
use serde_json::{Value, json};

fn start_instance(engine: &EngineServer, args: &[&str]) -> Instance {
    let url = engine.url();
    let mut all = vec!["--engine", url.as_str()];
    all.extend_from_slice(args);
    Instance::start(&all)
}

fn options() -> ClientOptions {
    client_options()
}

async fn cross_instance_delivery(kind: EngineKind) {
    let engine = EngineServer::start(kind, &[]);
    let instances: Vec<Instance> = (0..3)
        .map(|i| {
            start_instance(
                &engine,
                if i == 0 {
                    &["--workers", "2", "--brokers", "1"]
                } else {
                    &["--workers", "1", "--brokers", "1"]
                },
            )
        })
        .collect();
    let mut clients = Vec::new();
    let mut channels = Vec::new();
    for instance in &instances {
        for _ in 0..2 {
            let client = Client::connect(&instance.url(), options())
                .await
                .expect("connect");
            channels.push(subscribed(&client, "news").await);
            clients.push(client);
        }
    }
    // Every instance publishes 100 messages; every subscriber gets all 300, each publisher's in order.
    const COUNT: u64 = 100;
    for n in 0..COUNT {
        for (i, client) in clients.iter().enumerate().step_by(2) {
            client
                .invoke_publish("news", json!({ "from": i, "n": n }))
                .await
                .expect("publish");
        }
    }
    for channel in &mut channels {
        let mut last: [Option<u64>; 6] = [None; 6];
        for _ in 0..COUNT * 3 {
            let message = next_value(channel).await;
            let from = message["from"].as_u64().expect("from") as usize;
            let n = message["n"].as_u64().expect("n");
            assert_eq!(
                last[from].map_or(0, |l| l + 1),
                n,
                "publisher {from}'s messages in order, none lost or repeated"
            );
            last[from] = Some(n);
        }
        let extra = tokio::time::timeout(Duration::from_millis(300), channel.next()).await;
        assert!(extra.is_err(), "a duplicate arrived: {extra:?}");
    }
    // Key/value data written through one instance is read through another, with expiry.
    let (a, c) = (&clients[0], &clients[4]);
    a.invoke(
        "kvSet",
        json!({ "key": ["session", "alice"], "value": { "cart": [1, 2] } }),
    )
    .await
    .expect("set");
    let read = c
        .invoke("kvGet", json!({ "key": ["session", "alice"] }))
        .await
        .expect("get");
    assert_eq!(
        read.map(|j| j.parse::<Value>().expect("json")),
        Some(json!({ "cart": [1, 2] }))
    );
    assert_eq!(instances[1].health()["healthy"], json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_links_three_instances() {
    cross_instance_delivery(EngineKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_links_three_instances() {
    cross_instance_delivery(EngineKind::Nats).await;
}

async fn survives_an_engine_restart(kind: EngineKind) {
    let mut engine = EngineServer::start(kind, &[]);
    let a = start_instance(&engine, &["--workers", "1", "--brokers", "1"]);
    let b = start_instance(&engine, &["--workers", "1", "--brokers", "1"]);
    let subscriber = Client::connect(&a.url(), options()).await.expect("connect");
    let local = Client::connect(&a.url(), options()).await.expect("connect");
    let publisher = Client::connect(&b.url(), options()).await.expect("connect");
    let mut news = subscribed(&subscriber, "news").await;
    publisher
        .invoke_publish("news", json!(0))
        .await
        .expect("publish");
    assert_eq!(next_value(&mut news).await, json!(0));

    engine.kill();
    // Once the publishing instance knows the engine is gone (its health says so), publishes fail
    // fast with an error. (One sent in the instant of the crash may still be handed to the
    // engine client before it has read the connection's end: no server can refuse that one.)
    let noticed = tokio::time::Instant::now() + WAIT;
    while b.health()["status"] != json!("degraded") {
        assert!(
            tokio::time::Instant::now() < noticed,
            "the publishing instance did not notice the {kind:?} engine going down: {}",
            b.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While the engine is down: clients stay connected, publishes fail fast with an error.
    let started = std::time::Instant::now();
    let failed = publisher.invoke_publish("news", json!("lost")).await;
    assert!(
        failed.is_err(),
        "a publish while the engine is down must fail"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "and fail fast");
    assert_eq!(
        local
            .invoke("echo", json!("still here"))
            .await
            .expect("echo")
            .map(|j| j.get().to_owned()),
        Some("\"still here\"".into())
    );
    let health = a.health();
    assert_eq!(health["status"], json!("degraded"), "{health}");

    engine.restart();
    // Delivery resumes without the clients doing anything.
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
            "delivery did not resume after the {kind:?} restart"
        );
        n += 1;
    }
    assert!(subscriber.id().is_some(), "the subscriber stayed connected");
    assert_eq!(a.health()["status"], json!("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_traffic() {
    survives_an_engine_restart(EngineKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_traffic() {
    survives_an_engine_restart(EngineKind::Nats).await;
}

#[test]
fn a_malformed_or_unreachable_engine_fails_at_start() {
    let output = Command::new(fixture_path())
        .args(["--port", "0", "--engine", "ftp://nowhere"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("engine must be"));
    let port = free_port().to_string();
    let output = Command::new(fixture_path())
        .args([
            "--port",
            "0",
            "--engine",
            &format!("redis://:wrongpass@127.0.0.1:{port}"),
        ])
        .output()
        .expect("run");
    assert!(
        !output.status.success(),
        "an unreachable engine must stop the start"
    );
}
