//! Helpers shared by the engine tests: real Redis / NATS servers, and a collecting sink.
//!
//! Tests that only need *an* engine use the machine's (127.0.0.1:6379 / :4222) when it answers,
//! and otherwise start a private one, so they run on any machine that has the `redis-server` and
//! `nats-server` binaries. Tests that kill the engine always start a private one on a free port.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sc_broker::DeliverySink;
use sc_protocol::{Json, Publication};
use tokio::sync::Notify;

/// A name no other test (or earlier run) uses.
pub(crate) fn unique(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{}-{n}-{nanos:x}", std::process::id())
}

/// Collects every delivered publication.
#[derive(Default)]
pub(crate) struct Collect {
    items: Mutex<Vec<Publication>>,
    changed: Notify,
}

impl DeliverySink for Collect {
    fn deliver(&self, publication: Publication) {
        self.items.lock().push(publication);
        self.changed.notify_waiters();
    }
}

impl Collect {
    pub(crate) fn new() -> Arc<Collect> {
        Arc::new(Collect::default())
    }

    pub(crate) fn len(&self) -> usize {
        self.items.lock().len()
    }

    /// The data of every publication, as text.
    pub(crate) fn data(&self) -> Vec<String> {
        self.items
            .lock()
            .iter()
            .map(|p| p.data().map_or("-".to_owned(), |d| d.get().to_owned()))
            .collect()
    }

    /// Every publication, in arrival order.
    pub(crate) fn publications(&self) -> Vec<Publication> {
        self.items.lock().clone()
    }

    /// The channel of every publication.
    pub(crate) fn channels(&self) -> Vec<String> {
        self.items
            .lock()
            .iter()
            .map(|p| p.channel().to_owned())
            .collect()
    }

    /// Waits until `predicate` holds on the data, at most `within`.
    pub(crate) async fn wait_until(
        &self,
        within: Duration,
        predicate: impl Fn(&[String]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if predicate(&self.data()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return predicate(&self.data());
            }
        }
    }

    /// Waits until at least `n` publications arrived, at most `within`.
    pub(crate) async fn wait_for(&self, n: usize, within: Duration) -> bool {
        self.wait_until(within, |d| d.len() >= n).await
    }
}

/// A publication of `data` (JSON text) on `channel`.
pub(crate) fn publication(channel: &str, data: &str) -> Publication {
    Publication::new(channel, Some(&Json::from_text(data).unwrap()))
}

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something listens on 127.0.0.1:`port`.
pub(crate) fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Which engine a [`Server`] runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Redis,
    /// NATS with JetStream.
    Nats,
    /// NATS without JetStream.
    NatsPlain,
}

/// A private engine process on its own port, killed when dropped.
pub(crate) struct Server {
    kind: Kind,
    pub(crate) port: u16,
    extra: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Starts `kind` on a free port with extra arguments (e.g. a password).
    pub(crate) fn start(kind: Kind, extra: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(unique("sc-broker-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Server {
            kind,
            port: free_port(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// Starts the process again on the same port (and, for NATS, the same JetStream directory).
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let mut command = match self.kind {
            Kind::Redis => {
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
            Kind::Nats => {
                let mut c = Command::new("nats-server");
                c.args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
                    .arg(&self.dir);
                c
            }
            Kind::NatsPlain => {
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(self.port) {
            assert!(
                Instant::now() < deadline,
                "{:?} did not start on port {}",
                self.kind,
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `scheme://127.0.0.1:port`.
    pub(crate) fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Nats | Kind::NatsPlain => format!("nats://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The machine's engine when it answers on its default port, else a private one (kept alive by
/// the returned guard). `SC_TEST_PRIVATE_ENGINES=1` always starts private ones.
pub(crate) fn machine_engine(kind: Kind) -> (String, Option<Server>) {
    let (port, url) = match kind {
        Kind::Redis => (6379, "redis://127.0.0.1:6379"),
        Kind::Nats | Kind::NatsPlain => (4222, "nats://127.0.0.1:4222"),
    };
    if std::env::var_os("SC_TEST_PRIVATE_ENGINES").is_none() && listening(port) {
        (url.to_owned(), None)
    } else {
        let server = Server::start(kind, &[]);
        (server.url(), Some(server))
    }
}

/// Log lines written while the returned guard lives (this thread's subscriber: the tests'
/// current-thread runtime runs the engine tasks on it too).
pub(crate) fn capture_logs() -> (tracing::subscriber::DefaultGuard, Logs) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), logs)
}

/// Captured log output.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// The lines at `level` (e.g. `WARN`) containing `text`.
    pub(crate) fn count(&self, level: &str, text: &str) -> usize {
        let bytes = self.0.lock().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(level) && l.contains(text))
            .count()
    }
}

impl Logs {
    /// Everything captured.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
/// A CA (`ca.pem`, `ca.key`) and a server certificate for 127.0.0.1 (`server.pem`,
/// `server.key`) in `dir`, made with the `openssl` command.
pub(crate) fn make_certificates(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
}

/// A client certificate (`client.pem`, `client.key`) signed by the CA [`make_certificates`]
/// made in `dir`.
pub(crate) fn make_client_certificate(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=sc-client",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
    );
    // (with an extension, so the certificate is X.509 v3: rustls refuses v1 certificates)
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.cnf",
            "-out",
            "client.pem",
        ],
    );
}

/// Runs `openssl args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

pub(crate) mod nats_cluster;
