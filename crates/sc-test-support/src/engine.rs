//! Private engine processes (`redis-server`, `nats-server`) on free ports, and the machine's own
//! engines when they answer.
//!
//! Tests that only need *an* engine call [`machine_engine`]: the machine's (127.0.0.1:6379 /
//! :4222) when it answers, otherwise a private one, so they run on any machine that has the
//! `redis-server` and `nats-server` binaries. Tests that stop, restart or wipe the engine always
//! start their own [`EngineServer`], and never touch the machine's.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::net::{free_port, listening, wait_for_port};

/// A name no other test (or earlier run) uses: `name-<pid>-<counter>-<nanos>`.
pub fn unique(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    format!("{name}-{}-{n}-{nanos:x}", std::process::id())
}

/// Which engine an [`EngineServer`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// `redis-server` without persistence.
    Redis,
    /// `nats-server` with JetStream, storing in the server's own directory.
    Nats,
    /// `nats-server` without JetStream.
    NatsPlain,
}

/// A private engine process on its own port, killed (and its directory removed) when dropped.
#[derive(Debug)]
pub struct EngineServer {
    kind: EngineKind,
    /// The client port on 127.0.0.1.
    pub port: u16,
    extra: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl EngineServer {
    /// Starts `kind` on a free port with extra arguments (e.g. a password or a config file).
    pub fn start(kind: EngineKind, extra: &[&str]) -> EngineServer {
        let dir = std::env::temp_dir().join(unique("sc-engine-test"));
        std::fs::create_dir_all(&dir).expect("engine directory");
        let mut server = EngineServer {
            kind,
            port: free_port(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// Starts the process again on the same port (and, for NATS, the same JetStream directory,
    /// unless [`wipe`](Self::wipe)d); returns once it listens.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{:?} already runs", self.kind);
        let port = self.port.to_string();
        let mut command = match self.kind {
            EngineKind::Redis => {
                let mut c = Command::new("redis-server");
                c.args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                c.arg("--dir").arg(&self.dir);
                c
            }
            EngineKind::Nats => {
                let mut c = Command::new("nats-server");
                c.args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
                    .arg(&self.dir);
                c
            }
            EngineKind::NatsPlain => {
                let mut c = Command::new("nats-server");
                c.args(["-a", "127.0.0.1", "-p", &port]);
                c
            }
        };
        command
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?} (is it installed?): {e}", self.kind));
        self.child = Some(child);
        wait_for_port(
            self.port,
            Duration::from_secs(10),
            &format!("{:?}", self.kind),
        );
    }

    /// Kills the process (SIGKILL) and waits for it. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Forgets everything the engine stored on disk (call while stopped; Redis keeps nothing
    /// there). The next [`restart`](Self::restart) starts empty.
    pub fn wipe(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("engine directory");
    }

    /// `redis://127.0.0.1:<port>` or `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match self.kind {
            EngineKind::Redis => format!("redis://127.0.0.1:{}", self.port),
            EngineKind::Nats | EngineKind::NatsPlain => format!("nats://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for EngineServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The machine's engine when it answers on its default port, else a private one (kept alive by
/// the returned guard). `SC_TEST_PRIVATE_ENGINES=1` always starts private ones.
pub fn machine_engine(kind: EngineKind) -> (String, Option<EngineServer>) {
    let (port, url) = match kind {
        EngineKind::Redis => (6379, "redis://127.0.0.1:6379"),
        EngineKind::Nats | EngineKind::NatsPlain => (4222, "nats://127.0.0.1:4222"),
    };
    if std::env::var_os("SC_TEST_PRIVATE_ENGINES").is_none() && listening(port) {
        (url.to_owned(), None)
    } else {
        let server = EngineServer::start(kind, &[]);
        (server.url(), Some(server))
    }
}
