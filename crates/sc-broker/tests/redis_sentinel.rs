//! The Redis engine behind Redis Sentinel (a private master, one replica and three sentinels on
//! free ports): the master is found through the sentinels, and when it is killed and the
//! sentinels promote the replica, both instances resubscribe and delivery resumes.
#![cfg(feature = "redis")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sc_broker::redis::{self, RedisOptions};
use sc_broker::{Broker, EngineError, RedisBroker};
use sc_test_support::engine::unique;
use sc_test_support::net::{free_port, listening};
use sc_test_support::sink::{Collect, publication};

/// A process killed when dropped.
struct Proc {
    port: u16,
    child: Option<Child>,
}

impl Proc {
    fn spawn(port: u16, command: &mut Command) -> Proc {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (is it installed?)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(port) {
            assert!(Instant::now() < deadline, "port {port} did not open");
            std::thread::sleep(Duration::from_millis(10));
        }
        Proc {
            port,
            child: Some(child),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A master, its replica and three sentinels (`down-after-milliseconds` 1000).
struct Sentinels {
    master: Proc,
    replica: Proc,
    sentinels: Vec<Proc>,
    dir: PathBuf,
}

fn redis(port: u16, extra: &[&str]) -> Proc {
    Proc::spawn(
        port,
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra),
    )
}

impl Sentinels {
    fn start() -> Sentinels {
        let dir = std::env::temp_dir().join(unique("sc-redis-sentinel"));
        std::fs::create_dir_all(&dir).unwrap();
        let master = redis(free_port(), &[]);
        let replica = redis(
            free_port(),
            &["--replicaof", "127.0.0.1", &master.port.to_string()],
        );
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                let conf = dir.join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\n\
                         sentinel monitor mymaster 127.0.0.1 {} 2\n\
                         sentinel down-after-milliseconds mymaster 1000\n\
                         sentinel failover-timeout mymaster 3000\n\
                         sentinel parallel-syncs mymaster 1\n",
                        master.port
                    ),
                )
                .unwrap();
                Proc::spawn(
                    port,
                    Command::new("redis-server").arg(&conf).arg("--sentinel"),
                )
            })
            .collect();
        let set = Sentinels {
            master,
            replica,
            sentinels,
            dir,
        };
        // Ready when every sentinel knows the replica and the other two sentinels.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = set.sentinels.iter().all(|s| {
                let info = cli(s.port, &["sentinel", "master", "mymaster"]);
                let field = |name: &str| {
                    let lines: Vec<&str> = info.lines().collect();
                    lines
                        .iter()
                        .position(|l| *l == name)
                        .and_then(|i| lines.get(i + 1).copied())
                        .unwrap_or("")
                        .to_owned()
                };
                field("num-slaves") == "1" && field("num-other-sentinels") == "2"
            });
            if ready {
                return set;
            }
            assert!(Instant::now() < deadline, "sentinels never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis-sentinel://{}/mymaster", hosts.join(","))
    }

    /// The master's port according to the first sentinel.
    fn master_port(&self) -> Option<u16> {
        cli(
            self.sentinels[0].port,
            &["sentinel", "get-master-addr-by-name", "mymaster"],
        )
        .lines()
        .nth(1)?
        .parse()
        .ok()
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            s.kill();
        }
        self.master.kill();
        self.replica.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn options() -> RedisOptions {
    RedisOptions {
        prefix: format!("{}:", unique("scs")),
        ..RedisOptions::default()
    }
}

async fn instance(url: &str) -> (RedisBroker, Arc<Collect>) {
    let (broker, _kv) = redis::connect(url, options_shared())
        .await
        .expect("connect");
    let sink = Collect::new();
    broker.attach(sink.clone());
    (broker, sink)
}

fn options_shared() -> RedisOptions {
    static PREFIX: std::sync::OnceLock<RedisOptions> = std::sync::OnceLock::new();
    PREFIX.get_or_init(options).clone()
}

#[tokio::test]
async fn failover_resumes_delivery_on_the_promoted_master() {
    let mut set = Sentinels::start();
    let url = set.url();
    let (a, sink_a) = instance(&url).await;
    let (b, sink_b) = instance(&url).await;
    let health = a.health();
    assert!(
        health
            .nodes
            .iter()
            .any(|n| n.role == "master" && n.addr == format!("127.0.0.1:{}", set.master.port)),
        "{health:?}"
    );
    assert_eq!(
        health.nodes.iter().filter(|n| n.role == "sentinel").count(),
        3
    );
    let channel = unique("failover");
    a.subscribe(&channel).await.unwrap();
    b.subscribe(&channel).await.unwrap();

    // A 200 msg/s stream from A; a publish that fails is not retried (at most once).
    const TOTAL: usize = 1600; // 8 s
    let a = Arc::new(a);
    let publisher = {
        let a = a.clone();
        let channel = channel.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut ticks = tokio::time::interval(Duration::from_millis(5));
            for i in 0..TOTAL {
                ticks.tick().await;
                if let Ok(Ok(())) = tokio::time::timeout(
                    Duration::from_secs(1),
                    a.publish(publication(&channel, &i.to_string())),
                )
                .await
                {
                    acked.push(i);
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let old = set.master.port;
    set.master.kill();
    let killed = Instant::now();
    let seen_at_kill = sink_b.len();
    // The sentinels promote the replica.
    let promoted = loop {
        if set.master_port() == Some(set.replica.port) {
            break Instant::now();
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "no failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(set.master_port(), Some(old));
    let resumed = sink_b
        .wait_until(Duration::from_secs(10), |d| d.len() > seen_at_kill + 5)
        .await;
    assert!(resumed, "delivery did not resume after the promotion");
    // The first publication after the gap: when it arrived relative to the promotion.
    let resume = promoted.elapsed();
    let acked = publisher.await.unwrap();
    println!(
        "sentinel failover: promoted {:?} after the kill, delivery resumed within {resume:?} of the promotion; acked {} of {TOTAL}",
        promoted - killed,
        acked.len()
    );
    assert!(
        resume < Duration::from_secs(5),
        "resumed {resume:?} after the promotion"
    );
    assert!(a.is_connected() && b.is_connected());
    assert!(
        a.health()
            .nodes
            .iter()
            .any(|n| n.role == "master" && n.addr == format!("127.0.0.1:{}", set.replica.port))
    );
    // Nothing doubled, in order; and after both reconnected, nothing acked is lost.
    let last = *acked.last().unwrap();
    for sink in [&sink_a, &sink_b] {
        assert!(
            sink.wait_until(Duration::from_secs(10), |d| d.last()
                == Some(&last.to_string()))
                .await
        );
        let got: Vec<usize> = sink.data().iter().map(|d| d.parse().unwrap()).collect();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "doubled or reordered");
        let tail: Vec<usize> = acked
            .iter()
            .copied()
            .filter(|i| *i + 400 >= TOTAL)
            .collect();
        for i in tail {
            assert!(
                got.binary_search(&i).is_ok(),
                "acked {i} lost after recovery"
            );
        }
    }
}

#[tokio::test]
async fn unknown_master_and_dead_sentinels_are_clear_errors() {
    let set = Sentinels::start();
    let url = set.url().replace("/mymaster", "/nosuch");
    let err = redis::connect(&url, options()).await.err().unwrap();
    assert!(
        matches!(&err, EngineError::Unreachable { reason, .. } if reason.contains("nosuch")),
        "{err}"
    );
    let dead = format!(
        "redis-sentinel://:hunter2@127.0.0.1:{}/mymaster",
        free_port()
    );
    let err = redis::connect(&dead, options()).await.err().unwrap();
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
