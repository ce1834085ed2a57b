//! Child processes that announce their port: the `socketcluster` binary, the workspace's
//! fixture examples and the Node reference fixture all print `LISTENING <port>` on stdout once
//! they accept connections.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::logs::Logs;

/// How long a process may take to print its `LISTENING` line (a cluster starts brokers and
/// workers first).
pub const START_LIMIT: Duration = Duration::from_secs(60);

/// `target/<profile>/examples/<name>`: an example of any workspace crate, next to the running
/// test binary (`target/<profile>/deps/…`). Build it first (`cargo build --examples`).
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    profile_dir.join("examples").join(name)
}

/// Spawns `command` with stdout piped and returns the child and the port of its first
/// `LISTENING <port>` line (see [`wait_listening`]).
pub fn spawn_listening(command: &mut Command, context: impl Fn() -> String) -> (Child, u16) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let port = wait_listening(&mut child, context);
    (child, port)
}

/// The port of the first `LISTENING <port>` line on `child`'s piped stdout, which keeps being
/// drained so the child never blocks on it. If none comes within [`START_LIMIT`] (or stdout
/// ends first), kills the child and fails the test; `context` gives the message something to
/// show (e.g. the captured stderr).
pub fn wait_listening(child: &mut Child, context: impl Fn() -> String) -> u16 {
    let stdout = child.stdout.take().expect("piped stdout");
    match listening_port(stdout).recv_timeout(START_LIMIT) {
        Ok(port) => port,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no LISTENING line within {START_LIMIT:?} (or the process ended first){}",
                context()
            )
        }
    }
}

/// Collects `child`'s piped stderr on a thread, as it is written.
pub fn capture_stderr(child: &mut Child) -> Logs {
    let stderr = child.stderr.take().expect("piped stderr");
    let logs = Logs::default();
    let mut writer = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(writer, "{line}");
        }
    });
    logs
}

/// Reads `stdout` on a thread until it ends and sends the port of the first `LISTENING <port>`
/// line.
fn listening_port(stdout: ChildStdout) -> std::sync::mpsc::Receiver<u16> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line.strip_prefix("LISTENING ") {
                let _ = tx.send(port.trim().parse::<u16>().expect("a port after LISTENING"));
            }
        }
    });
    rx
}
