//! The Node.js reference server (`tests/interop/fixtures/node-server.js`, socketcluster-server
//! 20) as a child process.
//!
//! Node is required: if `node` is missing the tests fail with an explanation; if
//! `tests/interop/node_modules` is missing it is installed with `npm ci` first. Nothing is ever
//! skipped silently.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::within;

/// A running fixture; killed when dropped.
pub struct NodeServer {
    child: Child,
    port: u16,
}

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// Checks `node` and installs the fixture's packages once per test binary.
fn ensure_node() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let result = READY.get_or_init(|| {
        let node = std::process::Command::new("node").arg("--version").output();
        match node {
            Ok(out) if out.status.success() => {}
            _ => {
                return Err("`node` (Node.js >= 20) is required for the interop tests against the reference \
                            server; install it and re-run"
                    .to_owned());
            }
        }
        let dir = interop_dir();
        if !dir.join("node_modules/socketcluster-server/package.json").exists() {
            eprintln!("installing the interop fixture's packages: npm ci in {}", dir.display());
            let status = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .map_err(|e| format!("could not run `npm ci` in {}: {e}", dir.display()))?;
            if !status.success() {
                return Err(format!("`npm ci` failed in {} ({status})", dir.display()));
            }
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

impl NodeServer {
    /// Starts the fixture on an ephemeral port with extra flags (e.g. `--protocol-version 1`).
    pub async fn start(flags: &[&str]) -> NodeServer {
        ensure_node();
        let dir = interop_dir();
        let mut child = Command::new("node")
            .arg("fixtures/node-server.js")
            .args(["--port", "0"])
            .args(flags)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start the Node fixture in {}: {e}", dir.display())
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = within("the Node fixture to print LISTENING <port>", async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(port) = line.strip_prefix("LISTENING ") {
                            return port
                                .trim()
                                .parse::<u16>()
                                .expect("a port number after LISTENING");
                        }
                    }
                    Ok(None) | Err(_) => {
                        panic!("the Node fixture exited before listening (flags {flags:?})")
                    }
                }
            }
        })
        .await;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        NodeServer { child, port }
    }

    /// The fixture's SocketCluster URL.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/socketcluster/", self.port)
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
