//! The Redis engine's own behaviour against real Redis servers: limits, connect errors (URLs,
//! TLS, passwords never shown), and an outage in the middle of traffic. What every engine
//! guarantees (delivery, order, key/value, expiry, history, presence) is checked by the
//! conformance suite, `tests/conformance_redis.rs`.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sc_broker::redis::{self, RedisOptions};
use sc_broker::{Broker, BrokerError, EngineError, KvCommand, KvStore, RedisBroker, RedisKv};
use sc_protocol::Json;
use sc_test_support::engine::{EngineKind, EngineServer, machine_engine, unique};
use sc_test_support::logs::capture_logs;
use sc_test_support::net::free_port;
use sc_test_support::sink::{Collect, publication};

/// Options with a prefix of our own, so tests never see each other's data.
fn options() -> RedisOptions {
    RedisOptions {
        prefix: format!("{}:", unique("sctest")),
        ..RedisOptions::default()
    }
}

async fn instance(url: &str, options: &RedisOptions) -> (RedisBroker, RedisKv, Arc<Collect>) {
    let (broker, kv) = redis::connect(url, options.clone()).await.expect("connect");
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
    let (url, _guard) = machine_engine(EngineKind::Redis);
    let opts = RedisOptions {
        max_message_size: 1024,
        ..options()
    };
    let (a, kv, _) = instance(&url, &opts).await;
    let big = format!("\"{}\"", "x".repeat(2000));
    let err = a.publish(publication("big", &big)).await.unwrap_err();
    assert!(
        matches!(err, BrokerError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    let err = kv
        .execute(KvCommand::Set {
            key: key(&["big"]),
            value: json(&big),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::TooLarge { .. }), "{err:?}");
    let err = kv
        .execute(KvCommand::Set {
            key: key(&["big", "nested"]),
            value: json(&big),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::TooLarge { .. }), "{err:?}");
    assert!(a.describe().starts_with("redis redis://"));

    let err = RedisBroker::connect("redis://127.0.0.1:notaport", options())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::InvalidUrl { .. }), "{err:?}");
    let closed = free_port();
    let err = RedisBroker::connect(&format!("redis://127.0.0.1:{closed}"), options())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err:?}");

    // TLS is compiled in: a TLS handshake against a plain server fails cleanly.
    let plain = EngineServer::start(EngineKind::Redis, &[]);
    let tls = format!("rediss://127.0.0.1:{}", plain.port);
    let err = RedisBroker::connect(
        &tls,
        RedisOptions {
            connect_timeout: Duration::from_millis(500),
            ..options()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err:?}");

    let secured = EngineServer::start(EngineKind::Redis, &["--requirepass", "s3cret"]);
    let wrong = format!("redis://:wrong@127.0.0.1:{}", secured.port);
    let err = RedisBroker::connect(&wrong, options()).await.err().unwrap();
    assert!(matches!(err, EngineError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong"), "password leaked: {err}");
    let missing = RedisBroker::connect(&secured.url(), options())
        .await
        .err()
        .unwrap();
    assert!(matches!(missing, EngineError::Auth { .. }), "{missing:?}");
    let right = format!("redis://:s3cret@127.0.0.1:{}", secured.port);
    let broker = RedisBroker::connect(&right, options()).await.unwrap();
    assert!(broker.is_connected());

    // The factory picks Redis by scheme.
    let (broker, kv) = sc_broker::connect_engine(&url).await.unwrap();
    assert!(broker.describe().starts_with("redis"));
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
    let mut server = EngineServer::start(EngineKind::Redis, &[]);
    let url = server.url();
    let opts = options();
    let (a, kv_a, sink_a) = instance(&url, &opts).await;
    let (b, _kv_b, _) = instance(&url, &opts).await;
    a.subscribe("news").await.unwrap();
    a.subscribe("temp").await.unwrap();
    for i in 0..10 {
        b.publish(publication("news", &i.to_string()))
            .await
            .unwrap();
    }
    assert!(sink_a.wait_for(10, Duration::from_secs(5)).await);

    server.kill();
    // Detected at once (the connection closes); then everything fails fast and typed.
    let deadline = Instant::now() + Duration::from_secs(3);
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
        .execute(KvCommand::Get { key: key(&["x"]) })
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "not fast: {:?}",
        started.elapsed()
    );
    // Unsubscribing while down works, and that channel is not restored.
    a.unsubscribe("temp").await.unwrap();
    // Stay down long enough for the reconnect backoff to reach its 1 s cap.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    server.restart();
    let back = Instant::now();
    // Delivery resumes with no subscribe call: publish until A sees one published after restart.
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
    assert!(a.is_connected());
    assert!(
        !sink_a.data().contains(&"99".to_owned()),
        "a publication made while down arrived"
    );
    eprintln!("redis: delivery resumed {resumed:?} after the restart");
    b.publish(publication("temp", r#""unwanted""#))
        .await
        .unwrap();
    // New subscriptions and the store work again.
    a.subscribe("other").await.unwrap();
    b.publish(publication("other", r#""wanted""#))
        .await
        .unwrap();
    assert!(
        sink_a
            .wait_until(Duration::from_secs(5), |d| d
                .iter()
                .any(|x| x == r#""wanted""#))
            .await
    );
    assert!(!sink_a.data().iter().any(|x| x == r#""unwanted""#));
    // One warning per link for the outage, one line when it is back; the retries are debug.
    assert_eq!(logs.count("WARN", "engine connection lost"), 2);
    assert_eq!(logs.count("INFO", "engine connection restored"), 2);
    assert!(logs.count("DEBUG", "reconnect attempt failed") >= 4);
    assert_eq!(
        run(&kv_a, KvCommand::Get { key: key(&["x"]) }).await,
        "null"
    );
}
