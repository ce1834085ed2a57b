//! The NATS engine's own behaviour against real NATS servers (with JetStream): limits, connect
//! errors (URLs, passwords never shown, no JetStream), and an outage in the middle of traffic
//! (the bucket survives a restart). What every engine guarantees (delivery, order, key/value,
//! expiry, history, presence) is checked by the conformance suite, `tests/conformance_nats.rs`.
#![cfg(feature = "nats")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sc_broker::nats::{self, NatsOptions};
use sc_broker::{Broker, BrokerError, EngineError, KvCommand, KvStore, NatsBroker, NatsKv};
use sc_protocol::Json;
use sc_test_support::engine::{EngineKind, EngineServer, machine_engine, unique};
use sc_test_support::logs::capture_logs;
use sc_test_support::net::free_port;
use sc_test_support::sink::{Collect, publication};

/// Options with a subject prefix of our own, so tests never see each other's traffic. The
/// bucket is the default one: tests use unique keys in it (and a private server for
/// `getAll`/`removeAll`).
fn options() -> NatsOptions {
    NatsOptions {
        subject_prefix: format!("{}.", unique("sctest")),
        ..NatsOptions::default()
    }
}

async fn instance(url: &str, options: &NatsOptions) -> (NatsBroker, NatsKv, Arc<Collect>) {
    let (broker, kv) = nats::connect(url, options.clone()).await.expect("connect");
    let sink = Collect::new();
    broker.attach(sink.clone());
    (broker, kv, sink)
}

fn key(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| (*s).to_owned()).collect()
}

fn json(text: &str) -> Json {
    Json::from_text(text).unwrap()
}

async fn run(kv: &impl KvStore, command: KvCommand) -> String {
    kv.execute(command)
        .await
        .expect("kv command")
        .get()
        .to_owned()
}

#[tokio::test]
async fn limits_and_connect_errors() {
    let (url, _guard) = machine_engine(EngineKind::Nats);
    let (a, kv, _) = instance(&url, &options()).await;
    // The server's max_payload (1 MiB by default) caps our 8 MiB default.
    let big = format!("\"{}\"", "x".repeat(2 * 1024 * 1024));
    let err = a.publish(publication("big", &big)).await.unwrap_err();
    assert!(matches!(err, BrokerError::TooLarge { .. }), "{err:?}");
    let err = kv
        .execute(KvCommand::Set {
            key: key(&[&unique("big")]),
            value: json(&big),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::TooLarge { .. }), "{err:?}");
    let small = NatsOptions {
        max_message_size: 1024,
        ..options()
    };
    let (small, _kv, _) = instance(&url, &small).await;
    let err = small
        .publish(publication("big", &format!("\"{}\"", "x".repeat(2000))))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert!(a.describe().starts_with("nats nats://"));

    let err = NatsBroker::connect("nats://127.0.0.1:notaport", options())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::InvalidUrl { .. }), "{err:?}");
    let closed = free_port();
    let err = NatsBroker::connect(&format!("nats://127.0.0.1:{closed}"), options())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err:?}");

    let secured = EngineServer::start(EngineKind::NatsPlain, &["--user", "u", "--pass", "s3cret"]);
    let wrong = format!("nats://u:wrong@127.0.0.1:{}", secured.port);
    let err = NatsBroker::connect(&wrong, options()).await.err().unwrap();
    assert!(matches!(err, EngineError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong"), "password leaked: {err}");
    let right = format!("nats://u:s3cret@127.0.0.1:{}", secured.port);
    let broker = NatsBroker::connect(&right, options()).await.unwrap();
    assert!(broker.is_connected());
    // No JetStream on that server: the store says so.
    let err = NatsKv::connect(&right, options()).await.err().unwrap();
    assert!(matches!(err, EngineError::Setup { .. }), "{err:?}");

    // The factory picks NATS by scheme.
    let (broker, kv) = sc_broker::connect_engine(&url).await.unwrap();
    assert!(broker.describe().starts_with("nats"));
    let k = unique("factory");
    kv.execute(KvCommand::Set {
        key: vec![k.clone()],
        value: json("7"),
    })
    .await
    .unwrap();
    assert_eq!(
        kv.execute(KvCommand::Remove { key: vec![k] })
            .await
            .unwrap()
            .get(),
        "7"
    );
}

#[tokio::test]
async fn survives_an_outage_without_resubscribing() {
    let (_logging, logs) = capture_logs();
    let mut server = EngineServer::start(EngineKind::Nats, &[]);
    let url = server.url();
    let opts = options();
    let (a, kv_a, sink_a) = instance(&url, &opts).await;
    let (b, _kv_b, _) = instance(&url, &opts).await;
    a.subscribe("news").await.unwrap();
    a.subscribe("temp").await.unwrap();
    run(
        &kv_a,
        KvCommand::Set {
            key: key(&["kept"]),
            value: json("1"),
        },
    )
    .await;
    for i in 0..10 {
        b.publish(publication("news", &i.to_string()))
            .await
            .unwrap();
    }
    assert!(sink_a.wait_for(10, Duration::from_secs(5)).await);

    server.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.is_connected() || b.is_connected() {
        assert!(Instant::now() < deadline, "outage not detected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let err = b.publish(publication("news", "99")).await.unwrap_err();
    assert!(matches!(err, BrokerError::Unavailable(_)), "{err:?}");
    let err = a.subscribe("other").await.unwrap_err();
    assert!(matches!(err, BrokerError::Unavailable(_)), "{err:?}");
    let err = kv_a
        .execute(KvCommand::Get {
            key: key(&["kept"]),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "not fast: {:?}",
        started.elapsed()
    );
    a.unsubscribe("temp").await.unwrap();
    // Stay down long enough for the reconnect backoff to reach its 1 s cap.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    server.restart();
    let back = Instant::now();
    let mut i = 100;
    loop {
        if b.publish(publication("news", &i.to_string())).await.is_ok()
            && sink_a.wait_for(11, Duration::from_millis(20)).await
        {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "delivery did not resume"
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resumed = back.elapsed();
    assert!(
        resumed < Duration::from_millis(1500),
        "resumed after {resumed:?}"
    );
    assert!(
        !sink_a.data().contains(&"99".to_owned()),
        "a publication made while down arrived"
    );
    eprintln!("nats: delivery resumed {resumed:?} after the restart");

    b.publish(publication("temp", r#""unwanted""#))
        .await
        .unwrap();
    a.subscribe("other").await.unwrap();
    b.publish(publication("other", r#""wanted""#))
        .await
        .unwrap();
    let got = sink_a
        .wait_until(Duration::from_secs(5), |d| {
            d.iter().any(|x| x == r#""wanted""#)
        })
        .await;
    assert!(
        got,
        "a {} b {} data {:?}\n{}",
        a.is_connected(),
        b.is_connected(),
        sink_a.data(),
        logs.text()
    );
    assert!(!sink_a.data().iter().any(|x| x == r#""unwanted""#));
    // The bucket lives in the server's store directory: the data survived the restart.
    assert_eq!(
        run(
            &kv_a,
            KvCommand::Get {
                key: key(&["kept"])
            }
        )
        .await,
        "1"
    );
    assert_eq!(logs.count("WARN", "engine connection lost"), 2);
    assert_eq!(logs.count("INFO", "engine connection restored"), 2);
}
