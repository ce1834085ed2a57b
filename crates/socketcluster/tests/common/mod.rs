//! What only the cluster tests share: the `cluster_fixture` example as a real master process,
//! and client options with reconnects within about a second. Engines, raw clients, ports and
//! process helpers are `sc_test_support`'s.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sc_client::options::AutoReconnectOptions;
use sc_client::{Channel, Client, ClientOptions};
use sc_test_support::client::fast_reconnect;
use sc_test_support::http::get_blocking;
use sc_test_support::process::{example_path, spawn_listening};

/// How long a test waits for something the cluster is expected to do.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A running cluster instance (master, workers, brokers), stopped when dropped.
pub(crate) struct Instance {
    pub(crate) master: Child,
    pub(crate) port: u16,
}

impl Instance {
    /// Starts the fixture with `--port 0` and `args`; waits for its `LISTENING <port>` line.
    pub(crate) fn start(args: &[&str]) -> Instance {
        let mut command = Command::new(fixture_path());
        command
            .args(["--port", "0"])
            .args(args)
            .stderr(Stdio::null());
        let (master, port) = spawn_listening(&mut command, String::new);
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
        let response = get_blocking(self.port, "/health");
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
    example_path("cluster_fixture")
}

/// Client options with a 5 s ack timeout and reconnects within about a second (100–200 ms
/// first, at most 1 s).
pub(crate) fn client_options() -> ClientOptions {
    ClientOptions {
        ack_timeout: Duration::from_secs(5),
        auto_reconnect_options: AutoReconnectOptions {
            randomness: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..fast_reconnect()
        },
        ..ClientOptions::default()
    }
}

/// Subscribes `client` to `channel` and waits (at most [`WAIT`]) until the server confirms it.
pub(crate) async fn subscribed(client: &Client, channel: &str) -> Channel {
    let channel = client.subscribe(channel).await.expect("subscribe");
    tokio::time::timeout(WAIT, channel.subscribed())
        .await
        .expect("in time")
        .expect("subscribed");
    channel
}

/// The next publication on `channel` (within [`WAIT`]), parsed as JSON.
pub(crate) async fn next_value(channel: &mut Channel) -> serde_json::Value {
    let item = tokio::time::timeout(WAIT, channel.next())
        .await
        .expect("a message in time")
        .expect("channel open");
    item.parse().expect("json")
}
