//! The Node.js reference server (`tests/interop/fixtures/node-server.js`, socketcluster-server
//! 20) as a child process.
//!
//! Node is required: if `node` is missing the tests fail with an explanation; if
//! `tests/interop/node_modules` is missing it is installed with `npm ci` first. Nothing is ever
//! skipped silently.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use sc_test_support::process::spawn_listening;

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
        let mut command = Command::new("node");
        command
            .arg("fixtures/node-server.js")
            .args(["--port", "0"])
            .args(flags)
            .current_dir(interop_dir())
            .stderr(Stdio::inherit());
        let flags = format!("{flags:?}");
        let (child, port) = tokio::task::spawn_blocking(move || {
            spawn_listening(&mut command, || format!(" (flags {flags})"))
        })
        .await
        .expect("the Node fixture started");
        NodeServer { child, port }
    }

    /// The fixture's SocketCluster URL.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/socketcluster/", self.port)
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
