//! Shared by the cluster tests: starting the `cluster_fixture` example as a real master process,
//! and client options with short reconnect delays.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sc_client::ClientOptions;
use sc_client::options::AutoReconnectOptions;

/// A running cluster instance (master, workers, brokers), stopped when dropped.
pub(crate) struct Instance {
    pub(crate) master: Child,
    pub(crate) port: u16,
}

impl Instance {
    /// Starts the fixture with `--port 0` and `args`; waits for its `LISTENING <port>` line.
    pub(crate) fn start(args: &[&str]) -> Instance {
        let exe = fixture_path();
        let mut master = Command::new(&exe)
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let stdout = master.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("LISTENING ") {
                    let _ = tx.send(port.trim().parse::<u16>().expect("port"));
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the cluster did not report LISTENING");
        Instance { master, port }
    }

    /// The WebSocket URL.
    pub(crate) fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/socketcluster/", self.port)
    }

    /// Sends `signal` to the master.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.master.id() as i32), signal).expect("signal the master");
    }

    /// `GET /health`, parsed.
    pub(crate) fn health(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            stream,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let body = response.split("\r\n\r\n").nth(1).expect("body");
        serde_json::from_str(body).expect("health JSON")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.master.id() as i32), Signal::SIGTERM);
        for _ in 0..100 {
            if self.master.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.master.kill();
    }
}

/// `target/<profile>/examples/cluster_fixture`, next to the test binary.
pub(crate) fn fixture_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    profile_dir.join("examples").join("cluster_fixture")
}

/// Client options with a 5 s ack timeout and reconnects within about a second.
pub(crate) fn client_options() -> ClientOptions {
    ClientOptions {
        ack_timeout: Duration::from_secs(5),
        auto_reconnect_options: AutoReconnectOptions {
            initial_delay: Duration::from_millis(100),
            randomness: Duration::from_millis(100),
            multiplier: 1.5,
            max_delay: Duration::from_secs(1),
        },
        ..ClientOptions::default()
    }
}
pub(crate) mod raw;
