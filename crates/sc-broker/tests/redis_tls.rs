//! The Redis engine over TLS against private TLS-only `redis-server`s (`--port 0 --tls-port`)
//! whose certificates the test makes with a CA of its own (`openssl`): `rediss://` with
//! `?tls_ca=` (the way a user trusts a private CA), a client certificate for
//! `tls-auth-clients yes`, and a `rediss-cluster://` Redis Cluster (`tls-cluster yes`).
//! Passwords never appear in errors or logs.
#![cfg(feature = "redis")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sc_broker::redis::{self, RedisOptions};
use sc_broker::{Broker, EngineError, KvCommand, KvStore, RedisBroker, RedisKv};
use sc_protocol::Json;
use sc_test_support::certs::{make_certificates, make_client_certificate};
use sc_test_support::engine::unique;
use sc_test_support::logs::capture_logs;
use sc_test_support::net::{free_port, listening};
use sc_test_support::sink::{Collect, publication};

const PASSWORD: &str = "t1s-s3cret";

/// A TLS-only `redis-server` (killed when dropped) on a free port, with `extra` arguments.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl TlsRedis {
    fn start(certs: &Path, dir: &Path, extra: &[&str]) -> TlsRedis {
        let port = free_port();
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(certs.join("server.pem"))
            .arg("--tls-key-file")
            .arg(certs.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(certs.join("ca.pem"))
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (is it installed?)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(port) {
            assert!(
                Instant::now() < deadline,
                "redis-server (TLS) did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        TlsRedis { port, child }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory with a CA, a server certificate for 127.0.0.1 and a client certificate.
fn certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("sc-redis-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    make_client_certificate(&dir);
    dir
}

fn options() -> RedisOptions {
    RedisOptions {
        prefix: format!("{}:", unique("sctls")),
        ..RedisOptions::default()
    }
}

async fn instance(url: &str, options: &RedisOptions) -> (RedisBroker, RedisKv, Arc<Collect>) {
    let (broker, kv) = redis::connect(url, options.clone())
        .await
        .expect("connect over TLS");
    let sink = Collect::new();
    broker.attach(sink.clone());
    (broker, kv, sink)
}

/// Publishes on `b`, received by `a`; a key set through one store is read through the other.
async fn exchange(
    a: &RedisBroker,
    sink_a: &Collect,
    b: &RedisBroker,
    kv_a: &RedisKv,
    kv_b: &RedisKv,
) {
    let channel = unique("tls room");
    a.subscribe(&channel).await.expect("subscribe");
    for i in 0..20 {
        b.publish(publication(&channel, &i.to_string()))
            .await
            .expect("publish");
    }
    assert!(
        sink_a.wait_for(20, Duration::from_secs(5)).await,
        "{}",
        sink_a.len()
    );
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(sink_a.data(), expected);
    let key = vec![unique("k"), "nested".to_owned()];
    kv_a.execute(KvCommand::Set {
        key: key.clone(),
        value: Json::from_text("{\"n\":1}").unwrap(),
    })
    .await
    .expect("set");
    let value = kv_b.execute(KvCommand::Get { key }).await.expect("get");
    assert_eq!(value.get(), "{\"n\":1}");
}

#[tokio::test]
async fn rediss_with_a_private_ca_carries_pubsub_and_kv_and_hides_the_password() {
    let (_logs_guard, logs) = capture_logs();
    let certs = certificates();
    let server = TlsRedis::start(
        &certs,
        &certs.join("plain"),
        &["--tls-auth-clients", "no", "--requirepass", PASSWORD],
    );
    let ca = certs
        .join("ca.pem")
        .display()
        .to_string()
        .replace(' ', "%20");
    let url = format!("rediss://:{PASSWORD}@127.0.0.1:{}?tls_ca={ca}", server.port);
    let opts = options();
    let (a, kv_a, sink_a) = instance(&url, &opts).await;
    let (b, kv_b, _sink_b) = instance(&url, &opts).await;
    assert!(a.is_connected());
    assert!(
        a.health().nodes.iter().all(|n| !n.addr.contains(PASSWORD)),
        "{:?}",
        a.health()
    );
    exchange(&a, &sink_a, &b, &kv_a, &kv_b).await;

    // Without our CA the server's certificate is not trusted (the system's roots do not know it).
    let untrusted = format!("rediss://:{PASSWORD}@127.0.0.1:{}", server.port);
    let err = redis::connect(&untrusted, opts.clone())
        .await
        .expect_err("untrusted");
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(PASSWORD), "{err}");
    // A wrong password over TLS: refused credentials, neither password shown.
    let wrong = format!("rediss://:wr0ng-pw@127.0.0.1:{}?tls_ca={ca}", server.port);
    let err = redis::connect(&wrong, opts.clone())
        .await
        .expect_err("refused");
    assert!(matches!(err, EngineError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wr0ng-pw"), "{err}");
    // A CA file that does not exist is named in a clear error.
    let missing = format!(
        "rediss://:{PASSWORD}@127.0.0.1:{}?tls_ca=/nonexistent/ca.pem",
        server.port
    );
    let err = redis::connect(&missing, opts.clone())
        .await
        .expect_err("missing CA");
    assert!(
        matches!(&err, EngineError::InvalidUrl { reason, .. } if reason.contains("/nonexistent/ca.pem")),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(PASSWORD), "{err}");
    // tls_ca on a plain scheme is a mistake, not silently ignored.
    let plain = format!("redis://:{PASSWORD}@127.0.0.1:{}?tls_ca={ca}", server.port);
    let err = sc_broker::connect_engine(&plain)
        .await
        .err()
        .expect("plain scheme");
    assert!(matches!(err, EngineError::InvalidUrl { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(PASSWORD), "{err}");

    drop((a, b, kv_a, kv_b));
    assert!(!logs.text().contains(PASSWORD), "a password in the logs");
    assert!(!logs.text().contains("wr0ng-pw"), "a password in the logs");
    let _ = std::fs::remove_dir_all(&certs);
}

#[tokio::test]
async fn rediss_with_a_client_certificate_for_mutual_tls() {
    let certs = certificates();
    let server = TlsRedis::start(
        &certs,
        &certs.join("mutual"),
        &["--tls-auth-clients", "yes"],
    );
    let d = certs.display();
    let opts = options();
    let url = format!(
        "rediss://127.0.0.1:{}?tls_ca={d}/ca.pem&tls_cert={d}/client.pem&tls_key={d}/client.key",
        server.port
    );
    let (a, kv_a, sink_a) = instance(&url, &opts).await;
    let (b, kv_b, _sink_b) = instance(&url, &opts).await;
    exchange(&a, &sink_a, &b, &kv_a, &kv_b).await;
    // The server demands a client certificate: the CA alone does not get in.
    let err = redis::connect(
        &format!("rediss://127.0.0.1:{}?tls_ca={d}/ca.pem", server.port),
        opts.clone(),
    )
    .await
    .expect_err("no client certificate");
    assert!(
        matches!(
            err,
            EngineError::Unreachable { .. } | EngineError::Setup { .. }
        ),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&certs);
}

/// Runs `redis-cli` over TLS (our CA) against `port`.
fn cli_tls(certs: &Path, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(certs.join("ca.pem"))
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn rediss_cluster_with_a_private_ca() {
    let certs = certificates();
    let nodes: Vec<TlsRedis> = (0..3)
        .map(|i| {
            let bus = free_port().to_string();
            TlsRedis::start(
                &certs,
                &certs.join(format!("node{i}")),
                &[
                    "--tls-auth-clients",
                    "no",
                    "--tls-cluster",
                    "yes",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ],
            )
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let status = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(certs.join("ca.pem"))
        .args(["--cluster", "create"])
        .args(&addrs)
        .arg("--cluster-yes")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli --cluster create");
    assert!(status.success(), "cluster create over TLS failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes
        .iter()
        .all(|n| cli_tls(&certs, n.port, &["cluster", "info"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "the TLS cluster never became ok");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!(
        "rediss-cluster://{}?tls_ca={}/ca.pem",
        addrs.join(","),
        certs.display()
    );
    let opts = options();
    let (a, kv_a, sink_a) = instance(&url, &opts).await;
    let (b, kv_b, _sink_b) = instance(&url, &opts).await;
    let health = a.health();
    assert_eq!(health.nodes.len(), 3, "{health:?}");
    assert!(health.all_up(), "{health:?}");
    exchange(&a, &sink_a, &b, &kv_a, &kv_b).await;
    // Keys on every shard: getAll scans each master over TLS.
    for i in 0..10 {
        kv_a.execute(KvCommand::Set {
            key: vec![format!("k{i}")],
            value: Json::from_text(&i.to_string()).unwrap(),
        })
        .await
        .unwrap();
    }
    let all = kv_b.execute(KvCommand::GetAll).await.unwrap();
    let all: serde_json::Value = serde_json::from_str(all.get()).unwrap();
    assert_eq!(all.as_object().unwrap().len(), 11, "{all}");
    // Without the CA, the cluster's certificates are not trusted.
    let err = redis::connect(
        &format!("rediss-cluster://{}", addrs.join(",")),
        opts.clone(),
    )
    .await
    .expect_err("untrusted cluster");
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err:?}");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&certs);
}
