//! The master process: starts brokers, then workers; reboots what crashes; drains on SIGTERM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parking_lot::Mutex;
use sc_protocol::{Backoff, Json};
use tokio::net::UnixListener;
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::ipc::{Envelope, IpcError, IpcPeer, MessageHandler};
use super::listener::{claim_port, resolve};
use super::{BoxFuture, ClusterError, MasterController, ProcessRole, env};
use crate::config::ClusterConfig;

/// How long children get to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

type ChildKey = (ProcessRole, usize);
type RoleHandler = Arc<dyn Fn(usize, Json) -> BoxFuture<Result<Json, String>> + Send + Sync>;

/// The master's handle, given to the master controller: talk to workers and brokers.
#[derive(Clone)]
pub struct Master {
    shared: Arc<Shared>,
}

struct Shared {
    links: Mutex<HashMap<ChildKey, IpcPeer>>,
    pids: Mutex<HashMap<ChildKey, u32>>,
    handlers: Mutex<HashMap<ProcessRole, RoleHandler>>,
    port: u16,
    /// Worker processes restarted (crash reboots and rolling restarts).
    worker_restarts: std::sync::atomic::AtomicU64,
    /// Broker processes restarted.
    broker_restarts: std::sync::atomic::AtomicU64,
}

impl Master {
    /// Sends `data` to worker `id` (its `on_master_message` handler) and waits for the reply.
    pub async fn send_to_worker(&self, id: usize, data: Json) -> Result<Json, IpcError> {
        self.send((ProcessRole::Worker, id), data).await
    }

    /// Sends `data` to broker `id` and waits for the reply.
    pub async fn send_to_broker(&self, id: usize, data: Json) -> Result<Json, IpcError> {
        self.send((ProcessRole::Broker, id), data).await
    }

    async fn send(&self, key: ChildKey, data: Json) -> Result<Json, IpcError> {
        let peer = self
            .shared
            .links
            .lock()
            .get(&key)
            .cloned()
            .ok_or(IpcError::NotConnected)?;
        peer.request(data).await
    }

    /// Answers workers' `send_to_master` calls: `handler(worker_id, data)`.
    pub fn on_worker_message<F, Fut>(&self, handler: F)
    where
        F: Fn(usize, Json) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Json, String>> + Send + 'static,
    {
        self.shared.handlers.lock().insert(
            ProcessRole::Worker,
            Arc::new(move |id, data| Box::pin(handler(id, data))),
        );
    }

    /// Answers brokers' `send_to_master` calls: `handler(broker_id, data)`.
    pub fn on_broker_message<F, Fut>(&self, handler: F)
    where
        F: Fn(usize, Json) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Json, String>> + Send + 'static,
    {
        self.shared.handlers.lock().insert(
            ProcessRole::Broker,
            Arc::new(move |id, data| Box::pin(handler(id, data))),
        );
    }

    /// Process ids of the running workers, by worker id.
    pub fn worker_pids(&self) -> HashMap<usize, u32> {
        let pids = self.shared.pids.lock();
        pids.iter()
            .filter(|((role, _), _)| *role == ProcessRole::Worker)
            .map(|((_, id), pid)| (*id, *pid))
            .collect()
    }

    /// Process ids of the running brokers, by broker id.
    pub fn broker_pids(&self) -> HashMap<usize, u32> {
        let pids = self.shared.pids.lock();
        pids.iter()
            .filter(|((role, _), _)| *role == ProcessRole::Broker)
            .map(|((_, id), pid)| (*id, *pid))
            .collect()
    }

    /// The port the workers share.
    pub fn port(&self) -> u16 {
        self.shared.port
    }
}

enum Event {
    Hello(ChildKey, u32),
    Ready(ChildKey),
    Exited {
        key: ChildKey,
        pid: u32,
        status: std::io::Result<ExitStatus>,
    },
}

pub(crate) async fn run(
    mut config: ClusterConfig,
    controller: Option<MasterController>,
) -> Result<(), ClusterError> {
    let address = resolve(&config.host, config.port).map_err(|source| ClusterError::Listen {
        address: format!("{}:{}", config.host, config.port),
        source,
    })?;
    config.port = claim_port(address).map_err(|source| ClusterError::Listen {
        address: address.to_string(),
        source,
    })?;
    let dir = socket_dir(&config)?;
    let listener = UnixListener::bind(dir.join("master.sock"))?;
    let master = Master {
        shared: Arc::new(Shared {
            links: Mutex::default(),
            pids: Mutex::default(),
            handlers: Mutex::default(),
            port: config.port,
            worker_restarts: Default::default(),
            broker_restarts: Default::default(),
        }),
    };
    if config.ops.metrics
        && let Some(addr) = &config.ops.metrics_addr
    {
        let addr: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| ClusterError::Config(format!("metricsAddr {addr:?}: {e}")))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ClusterError::Listen {
                address: addr.to_string(),
                source,
            })?;
        let gather: crate::ops::admin::Gather = {
            let master = master.clone();
            Arc::new(move || {
                let master = master.clone();
                Box::pin(async move { Ok(gather_all(&master).await) })
            })
        };
        let app = crate::ops::metrics_router(gather);
        tracing::info!(%addr, "metrics on a separate address");
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "metrics server stopped");
            }
        });
    }
    let (events, mut inbox) = mpsc::unbounded_channel();
    tokio::spawn(accept_children(listener, master.clone(), events.clone()));
    share_auth_key(&mut config);
    let config_json =
        serde_json::to_string(&config).map_err(|e| ClusterError::Config(e.to_string()))?;
    let spawner = Spawner {
        config_json,
        dir: dir.clone(),
        events: events.clone(),
        master: master.clone(),
    };

    let mut started_at: HashMap<ChildKey, Instant> = HashMap::new();
    let mut waiting: Vec<ChildKey> = (0..config.brokers)
        .map(|id| (ProcessRole::Broker, id))
        .collect();
    for key in &waiting {
        spawner.spawn(*key)?;
        started_at.insert(*key, Instant::now());
    }
    wait_ready(&mut inbox, &mut waiting, &spawner).await?;
    let mut waiting: Vec<ChildKey> = (0..config.workers)
        .map(|id| (ProcessRole::Worker, id))
        .collect();
    for key in &waiting {
        spawner.spawn(*key)?;
        started_at.insert(*key, Instant::now());
    }
    wait_ready(&mut inbox, &mut waiting, &spawner).await?;
    tracing::info!(
        port = config.port,
        workers = config.workers,
        brokers = config.brokers,
        "cluster ready"
    );
    // Handlers first: a signal right after LISTENING must not find the default action (exit).
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut user2 = signal(SignalKind::user_defined2())?;
    let mut hangup = signal(SignalKind::hangup())?;
    println!("LISTENING {}", config.port);
    if let Some(controller) = controller {
        let master = master.clone();
        tokio::spawn(async move {
            if let Err(error) = controller(master).await {
                tracing::error!(%error, "master controller failed");
            }
        });
    }

    let mut supervisor = Supervisor {
        master: &master,
        spawner: &spawner,
        config: &config,
        started_at,
        quick_deaths: HashMap::new(),
        restarts: Vec::new(),
        rolling: Rolling::default(),
    };
    loop {
        // A restart waiting for its backoff is a deadline here, never a sleep inside an arm:
        // a signal is handled the moment it arrives.
        let restart_due = supervisor.next_restart();
        tokio::select! {
            Some(event) = inbox.recv() => supervisor.on_event(event),
            () = sleep_until_some(restart_due) => supervisor.restart_due(),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = user2.recv() => {
                if config.kill_master_on_signal {
                    break;
                }
                supervisor.rolling_restart();
            }
            _ = hangup.recv() => {
                // Only TLS workers handle SIGHUP; for the others it would be fatal.
                if config.ops.tls_cert.is_none() {
                    tracing::info!("SIGHUP ignored: no TLS certificate to reload");
                    continue;
                }
                tracing::info!("SIGHUP: workers reload their TLS certificate");
                for (key, pid) in master.shared.pids.lock().iter() {
                    if key.0 == ProcessRole::Worker {
                        signal_pid(*pid, Signal::SIGHUP);
                    }
                }
            }
        }
    }
    shutdown(&master, &mut inbox, &config).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The delay before restarting a process that died right after starting: 100 ms after its first
/// such quick death, doubling with every further one, at most 5 s.
const CRASH_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(5));

/// A process that dies sooner than this after its start died "right after starting".
const QUICK_DEATH: Duration = Duration::from_secs(2);

/// Keeps the cluster's processes running: reacts to their events (ready, exited) and restarts
/// what crashed, after a backoff for processes that die right after starting.
struct Supervisor<'a> {
    master: &'a Master,
    spawner: &'a Spawner,
    config: &'a ClusterConfig,
    /// When each process was (re)started.
    started_at: HashMap<ChildKey, Instant>,
    /// How many times in a row each process died right after starting (its backoff attempt).
    quick_deaths: HashMap<ChildKey, u32>,
    /// Restarts waiting for their backoff: when, and which process.
    restarts: Vec<(tokio::time::Instant, ChildKey)>,
    rolling: Rolling,
}

impl Supervisor<'_> {
    /// One event from a child process.
    fn on_event(&mut self, event: Event) {
        match event {
            Event::Hello(key, pid) => {
                tracing::debug!(role = %key.0, id = key.1, pid, "process connected");
            }
            Event::Ready(key) => {
                tracing::info!(role = %key.0, id = key.1, "process ready");
                self.rolling
                    .on_ready(key, self.spawner, &mut self.started_at);
            }
            Event::Exited { key, pid, .. } if self.rolling.retired(pid) => {
                tracing::info!(role = %key.0, id = key.1, pid, "replaced worker stopped");
            }
            Event::Exited { key, pid, status } => self.on_exit(key, pid, status),
        }
    }

    /// A process exited unexpectedly: forgets it and, if it is to be rebooted, restarts it now
    /// or (if it died right after starting) schedules the restart after its backoff.
    fn on_exit(&mut self, key: ChildKey, pid: u32, status: std::io::Result<ExitStatus>) {
        let shared = &self.master.shared;
        // Only forget the process if it is still the one registered under its key.
        let current = shared.pids.lock().get(&key) == Some(&pid);
        if current {
            shared.links.lock().remove(&key);
            shared.pids.lock().remove(&key);
        }
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        tracing::warn!(role = %key.0, id = key.1, pid, %status, "process exited unexpectedly");
        let reboot = key.0 == ProcessRole::Broker || self.config.reboot_worker_on_crash;
        if !(current && reboot) {
            return;
        }
        let quick = self
            .started_at
            .get(&key)
            .is_some_and(|t| t.elapsed() < QUICK_DEATH);
        if !quick {
            self.quick_deaths.remove(&key);
            self.restart(key);
            return;
        }
        let deaths = self.quick_deaths.entry(key).or_insert(0);
        let delay = CRASH_BACKOFF.delay(*deaths);
        *deaths = deaths.saturating_add(1);
        tracing::info!(role = %key.0, id = key.1, delay_ms = delay.as_millis() as u64, "restart after a backoff");
        self.restarts
            .push((tokio::time::Instant::now() + delay, key));
    }

    /// When the next scheduled restart is due, if one is.
    fn next_restart(&self) -> Option<tokio::time::Instant> {
        self.restarts.iter().map(|(due, _)| *due).min()
    }

    /// Runs the scheduled restarts that are due.
    fn restart_due(&mut self) {
        let now = tokio::time::Instant::now();
        let (due, later) = std::mem::take(&mut self.restarts)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.restarts = later;
        for (_, key) in due {
            self.restart(key);
        }
    }

    /// Starts `key`'s process again.
    fn restart(&mut self, key: ChildKey) {
        match self.spawner.spawn(key) {
            Ok(pid) => {
                self.started_at.insert(key, Instant::now());
                self.master.shared.count_restart(key.0);
                tracing::info!(role = %key.0, id = key.1, pid, "process restarted");
            }
            Err(error) => {
                tracing::error!(role = %key.0, id = key.1, %error, "cannot restart process");
            }
        }
    }

    /// SIGUSR2: replaces every worker in turn.
    fn rolling_restart(&mut self) {
        self.rolling
            .start(self.master, self.spawner, &mut self.started_at);
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Stops workers (they drain their sockets), then brokers; kills what outlives the timeout.
/// Without `authKey` or a key pair, every worker would sign with a random key of its own and
/// refuse the tokens of the others (SocketCluster's master shares one key the same way): pick
/// one key for the whole run.
fn share_auth_key(config: &mut ClusterConfig) {
    let server = &mut config.server;
    if server.auth_key.is_none() && server.auth_private_key.is_none() {
        server.auth_key = Some(sc_server::auth::random_key());
    }
}

async fn shutdown(
    master: &Master,
    inbox: &mut mpsc::UnboundedReceiver<Event>,
    config: &ClusterConfig,
) {
    let timeout = Duration::from_millis(config.process_term_timeout.max(config.ops.drain_duration))
        + Duration::from_secs(1);
    // Exits seen in any phase: a broker that got the SIGTERM too (e.g. sent to the whole process
    // group) may exit while the workers are being stopped; its exit must still count.
    let mut exited: Vec<ChildKey> = Vec::new();
    for role in [ProcessRole::Worker, ProcessRole::Broker] {
        let pids: Vec<(ChildKey, u32)> = master
            .shared
            .pids
            .lock()
            .iter()
            .filter(|(k, _)| k.0 == role)
            .map(|(k, p)| (*k, *p))
            .collect();
        tracing::info!(role = %role, count = pids.len(), "stopping processes");
        for (_, pid) in &pids {
            signal_pid(*pid, Signal::SIGTERM);
        }
        let mut alive: Vec<ChildKey> = pids
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !exited.contains(k))
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        while !alive.is_empty() {
            match tokio::time::timeout_at(deadline, inbox.recv()).await {
                Ok(Some(Event::Exited { key, .. })) => {
                    alive.retain(|k| *k != key);
                    exited.push(key);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        for (key, pid) in pids {
            if alive.contains(&key) {
                tracing::warn!(role = %key.0, id = key.1, pid, "did not stop in time; killing");
                signal_pid(pid, Signal::SIGKILL);
            }
        }
    }
    tracing::info!("cluster stopped");
}

fn signal_pid(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

async fn wait_ready(
    inbox: &mut mpsc::UnboundedReceiver<Event>,
    waiting: &mut Vec<ChildKey>,
    spawner: &Spawner,
) -> Result<(), ClusterError> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while !waiting.is_empty() {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some(Event::Ready(key))) => {
                waiting.retain(|k| *k != key);
                tracing::info!(role = %key.0, id = key.1, "process ready");
            }
            Ok(Some(Event::Hello(..))) => {}
            Ok(Some(Event::Exited { key, status, .. })) => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                spawner.stop_all();
                return Err(ClusterError::Controller(format!(
                    "{} {} exited while starting ({status})",
                    key.0, key.1
                )));
            }
            Ok(None) | Err(_) => {
                spawner.stop_all();
                return Err(ClusterError::Controller(format!(
                    "{} process(es) did not start in time",
                    waiting.len()
                )));
            }
        }
    }
    Ok(())
}

struct Spawner {
    config_json: String,
    dir: PathBuf,
    events: mpsc::UnboundedSender<Event>,
    master: Master,
}

impl Spawner {
    /// Starts `key`'s process (this same binary, same arguments) and watches it.
    fn spawn(&self, key: ChildKey) -> std::io::Result<u32> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(env::ROLE, format!("{}:{}", key.0, key.1))
            .env(env::CONFIG, &self.config_json)
            .env(env::DIR, &self.dir)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        self.master.shared.pids.lock().insert(key, pid);
        let events = self.events.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = events.send(Event::Exited { key, pid, status });
        });
        Ok(pid)
    }

    fn stop_all(&self) {
        for pid in self.master.shared.pids.lock().values() {
            signal_pid(*pid, Signal::SIGKILL);
        }
    }
}

/// Accepts children's IPC connections and routes their messages to the master's handlers.
async fn accept_children(
    listener: UnixListener,
    master: Master,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let identity: Arc<Mutex<Option<ChildKey>>> = Arc::default();
        let handler: MessageHandler = {
            let (identity, master) = (identity.clone(), master.clone());
            Arc::new(move |data: Json| {
                if data.get() == crate::ops::metrics::GATHER {
                    let master = master.clone();
                    return Box::pin(async move {
                        let report = gather_all(&master).await;
                        serde_json::to_value(report)
                            .map(Json::from)
                            .map_err(|e| e.to_string())
                    });
                }
                let key = *identity.lock();
                let handler = key.and_then(|k| {
                    master
                        .shared
                        .handlers
                        .lock()
                        .get(&k.0)
                        .cloned()
                        .map(|h| (h, k.1))
                });
                Box::pin(async move {
                    match handler {
                        Some((handler, id)) => handler(id, data).await,
                        None => Ok(Json::NULL),
                    }
                })
            })
        };
        let (peer, driver) = IpcPeer::new(stream);
        let on_other = {
            let (identity, events, master, peer) = (
                identity.clone(),
                events.clone(),
                master.clone(),
                peer.clone(),
            );
            move |envelope: Envelope| match envelope {
                Envelope::Hello { role, id, pid } => {
                    *identity.lock() = Some((role, id));
                    master.shared.links.lock().insert((role, id), peer.clone());
                    let _ = events.send(Event::Hello((role, id), pid));
                }
                Envelope::Ready => {
                    if let Some(key) = *identity.lock() {
                        let _ = events.send(Event::Ready(key));
                    }
                }
                _ => {}
            }
        };
        driver.spawn(handler, on_other);
    }
}

/// A fresh directory for this cluster's sockets.
fn socket_dir(config: &ClusterConfig) -> Result<PathBuf, ClusterError> {
    let dir = match &config.socket_root {
        Some(root) => root.clone(),
        None => {
            let app = config.server.app_name.as_deref().unwrap_or("app");
            let app: String = app
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(13)
                .collect();
            std::env::temp_dir()
                .join("socketcluster")
                .join(format!("{app}_{}", std::process::id()))
        }
    };
    if dir.exists() {
        clear_dir(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    if config.socket_root.is_none() {
        // The broker and master sockets trust whoever connects: only this user may reach them.
        // A `socketRoot` of the user's choosing keeps the permissions the user gave it.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    }
    Ok(dir)
}

fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none() || path.extension().is_some_and(|e| e == "sock") {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(())
}

impl Shared {
    fn count_restart(&self, role: ProcessRole) {
        let counter = match role {
            ProcessRole::Worker => &self.worker_restarts,
            ProcessRole::Broker => &self.broker_restarts,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long the master waits for one process's numbers in a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks every worker and broker for its numbers and merges them with the master's own: one
/// scrape of the whole instance. A process that does not answer in time is left out.
pub(crate) async fn gather_all(master: &Master) -> crate::ops::metrics::InstanceReport {
    use crate::ops::metrics::{ChildReport, InstanceReport, SCRAPE, merge, render_master};
    let mut links: Vec<(ChildKey, IpcPeer)> = master
        .shared
        .links
        .lock()
        .iter()
        .map(|(k, p)| (*k, p.clone()))
        .collect();
    links.sort_by_key(|(k, _)| (k.0 == ProcessRole::Broker, k.1));
    let probe = Json::from_text(SCRAPE).unwrap_or(Json::NULL);
    let answers = futures_util::future::join_all(links.iter().map(|(key, peer)| {
        let probe = probe.clone();
        async move {
            let answer = tokio::time::timeout(SCRAPE_TIMEOUT, peer.request(probe)).await;
            (*key, answer)
        }
    }))
    .await;
    let mut report = InstanceReport {
        worker_restarts: master
            .shared
            .worker_restarts
            .load(std::sync::atomic::Ordering::Relaxed),
        broker_restarts: master
            .shared
            .broker_restarts
            .load(std::sync::atomic::Ordering::Relaxed),
        ..Default::default()
    };
    let mut texts = Vec::new();
    for (key, answer) in answers {
        let child = match answer {
            Ok(Ok(json)) => json.parse::<ChildReport>().ok(),
            _ => None,
        };
        let Some(child) = child else {
            tracing::debug!(role = %key.0, id = key.1, "no metrics from process");
            continue;
        };
        texts.push(child.text);
        match key.0 {
            ProcessRole::Worker => {
                if let Some(snapshot) = child.snapshot {
                    report.workers.push((key.1, snapshot));
                }
            }
            ProcessRole::Broker => report.brokers.push((key.1, child.engine_up)),
        }
    }
    texts.push(render_master(
        report.worker_restarts,
        report.broker_restarts,
        crate::ops::process::read(),
    ));
    report.text = merge(texts.iter().map(String::as_str));
    report
}

/// A rolling restart (SIGUSR2): each worker in turn is replaced by a new process with the same
/// id; the old one is told to drain only once the new one listens, and the next worker's turn
/// comes then. The port is served throughout, even with a single worker.
#[derive(Default)]
struct Rolling {
    queue: std::collections::VecDeque<usize>,
    /// The worker being replaced: (id, old pid).
    current: Option<(usize, u32)>,
    /// Old processes told to drain: their exit is expected.
    retiring: std::collections::HashSet<u32>,
}

impl Rolling {
    fn start(
        &mut self,
        master: &Master,
        spawner: &Spawner,
        started: &mut HashMap<ChildKey, Instant>,
    ) {
        if self.current.is_some() {
            tracing::warn!("SIGUSR2: a rolling restart is already running");
            return;
        }
        let mut ids: Vec<usize> = master.worker_pids().into_keys().collect();
        ids.sort_unstable();
        tracing::info!(workers = ids.len(), "SIGUSR2: rolling restart");
        self.queue = ids.into();
        self.next(master, spawner, started);
    }

    fn next(
        &mut self,
        master: &Master,
        spawner: &Spawner,
        started: &mut HashMap<ChildKey, Instant>,
    ) {
        while let Some(id) = self.queue.pop_front() {
            let key = (ProcessRole::Worker, id);
            let Some(old) = master.shared.pids.lock().get(&key).copied() else {
                continue;
            };
            match spawner.spawn(key) {
                Ok(pid) => {
                    started.insert(key, Instant::now());
                    tracing::info!(
                        id,
                        old_pid = old,
                        pid,
                        "rolling restart: new worker starting"
                    );
                    self.current = Some((id, old));
                    return;
                }
                Err(error) => tracing::error!(id, %error, "rolling restart: cannot start a worker"),
            }
        }
        tracing::info!("rolling restart done");
    }

    fn on_ready(
        &mut self,
        key: ChildKey,
        spawner: &Spawner,
        started: &mut HashMap<ChildKey, Instant>,
    ) {
        let Some((id, old)) = self.current else {
            return;
        };
        if key != (ProcessRole::Worker, id) {
            return;
        }
        self.current = None;
        self.retiring.insert(old);
        signal_pid(old, Signal::SIGTERM);
        spawner.master.shared.count_restart(ProcessRole::Worker);
        tracing::info!(
            id,
            old_pid = old,
            "rolling restart: new worker listens; old one drains"
        );
        let master = spawner.master.clone();
        self.next(&master, spawner, started);
    }

    fn retired(&mut self, pid: u32) -> bool {
        self.retiring.remove(&pid)
    }
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").finish_non_exhaustive()
    }
}
