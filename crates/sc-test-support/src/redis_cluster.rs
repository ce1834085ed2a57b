//! A private Redis Cluster on free loopback ports (`redis-server --cluster-enabled yes` joined
//! with `redis-cli --cluster create`, AOF with `appendfsync always`, `cluster-node-timeout`
//! 1000 ms), killed and removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::engine::unique;
use crate::net::{free_port, listening};

/// One `redis-server` of the cluster.
#[derive(Debug)]
pub struct Node {
    /// Client port.
    pub port: u16,
    bus: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts (or restarts) the node's `redis-server` and waits until it listens.
    pub fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--cluster-port", &self.bus.to_string()])
            .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "1000"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(self.port) {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the node's process (`SIGKILL`).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A 3-master Redis Cluster (optionally with replicas), killed and removed when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes: masters first as `redis-cli --cluster create` assigns them.
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

/// `redis-cli -p <port> <args>`'s standard output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    /// 3 masters, no replicas.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with_replicas(0)
    }

    /// 3 masters with `replicas` replicas each (`redis-cli --cluster create --cluster-replicas`).
    pub fn start_with_replicas(replicas: usize) -> RedisCluster {
        let dir = std::env::temp_dir().join(unique("sc-redis-cluster"));
        let mut nodes = Vec::new();
        for i in 0..3 * (1 + replicas) {
            let node_dir = dir.join(i.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let mut node = Node {
                port: free_port(),
                bus: free_port(),
                dir: node_dir,
                child: None,
            };
            node.run();
            nodes.push(node);
        }
        let cluster = RedisCluster { nodes, dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string()])
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "cluster create failed");
        cluster.wait_ok();
        cluster
    }

    /// Waits until every running node reports `cluster_state:ok` and knows every node, and
    /// every replica is in sync with its master.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                let replication = cli(n.port, &["info", "replication"]);
                cli(n.port, &["cluster", "info"]).contains("cluster_state:ok")
                    && cli(n.port, &["cluster", "nodes"])
                        .lines()
                        .filter(|l| l.contains("connected") && !l.contains("fail"))
                        .count()
                        == self.nodes.len()
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", hosts.join(","))
    }

    /// The index of the node that owns `key`'s slot.
    pub fn owner(&self, key: &str) -> usize {
        let any = self.nodes.iter().find(|n| n.child.is_some()).unwrap().port;
        let slot: u16 = cli(any, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        for line in cli(any, &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let owns = fields[8..].iter().any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
            });
            if owns {
                let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                return self.nodes.iter().position(|n| n.port == port).unwrap();
            }
        }
        panic!("no owner for slot {slot}");
    }

    /// The index of a replica of node `master`.
    pub fn replica_of(&self, master: usize) -> usize {
        let id = cli(self.nodes[master].port, &["cluster", "myid"]);
        let id = id.trim();
        for line in cli(self.nodes[master].port, &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) == Some(&id) {
                let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                return self.nodes.iter().position(|n| n.port == port).unwrap();
            }
        }
        panic!("node {master} has no replica");
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
