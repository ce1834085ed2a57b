//! The scenarios, and what they share: a [`Context`] (target, options, server memory probe),
//! opening many connections at bounded concurrency, and waiting for deliveries with a deadline.

pub mod conns;
pub mod fanout;
pub mod pubsub_many;
pub mod recovery_storm;
pub mod rpc;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use indicatif::ProgressBar;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::cli::{Cli, Common, Scenario};
use sc_protocol::Packet;

use crate::client::{
    Client, ClientError, Heartbeats, Probe, PublishEncoder, Target, delivered_probe,
};
use crate::report::{self, Report};
use crate::stats::{
    Correctness, Latency, LatencyRecorder, SeqTracker, SharedLatency, micros_at, now_micros, rate,
};
use crate::sys::{self, CpuMeter, CpuUse};

/// The longest wait for one handshake response, whatever `--timeout` says.
const MAX_HANDSHAKE_WAIT: Duration = Duration::from_secs(10);

/// How long deliveries may stall, once every publish is acknowledged, before the remaining
/// messages are counted as lost (capped by `--timeout`).
pub(crate) const DELIVERY_STALL: Duration = Duration::from_secs(5);

/// What every scenario needs.
#[derive(Debug)]
pub struct Context {
    /// The shared command line options.
    pub common: Common,
    /// The server.
    pub target: Arc<Target>,
    /// The server's resident memory before the run, when `--pid` was given.
    rss_before: Option<u64>,
}

/// Runs the scenario named on the command line.
pub async fn run(cli: &Cli) -> anyhow::Result<Report> {
    let ctx = Context::new(cli.common.clone()).await?;
    let mut report = match &cli.scenario {
        Scenario::Fanout(args) => fanout::run(&ctx, args, "fanout").await?,
        Scenario::FanoutSmall(args) => fanout::run(&ctx, &args.into(), "fanout-small").await?,
        Scenario::Rpc(args) => rpc::run(&ctx, args).await?,
        Scenario::Conns(args) => conns::run(&ctx, args).await?,
        Scenario::PubsubMany(args) => pubsub_many::run(&ctx, args).await?,
        Scenario::RecoveryStorm(args) => recovery_storm::run(&ctx, args).await?,
    };
    report.text("machine", "machine", &sys::machine_summary());
    if let Some(rss) = sys::own_rss() {
        report.bytes("generator_rss_bytes", "generator memory", rss);
    }
    Ok(report)
}

impl Context {
    /// Resolves the target, checks that it speaks SocketCluster (one probe connection), and reads
    /// the server's memory.
    pub async fn new(common: Common) -> anyhow::Result<Context> {
        let handshake_timeout = common.timeout.min(MAX_HANDSHAKE_WAIT);
        let mut target = Target::resolve(&common.url, handshake_timeout).await?;
        target.set_codec(common.codec);
        target.set_dialect(match common.protocol_version {
            crate::cli::Dialect::V1 => sc_protocol::HeartbeatDialect::V1,
            crate::cli::Dialect::V2 => sc_protocol::HeartbeatDialect::V2,
        });
        let source = common.source_ips.as_ref().map(|s| s.pick(0));
        let mut probe = Client::connect(&target, source)
            .await
            .with_context(|| format!("{} does not accept SocketCluster connections", common.url))?;
        let token = match (&common.auth_token, &common.login) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(username)) => Some(
                probe
                    .login(username, handshake_timeout)
                    .await
                    .with_context(|| format!("--login {username}"))?,
            ),
            (None, None) => None,
        };
        probe.close().await;
        if let Some(token) = token {
            target.set_auth_token(&token);
            // One handshake with the token first, so that a refused token stops the run here.
            Client::connect(&target, source)
                .await
                .context("a handshake with the auth token")?
                .close()
                .await;
        }
        let target = Arc::new(target);
        let rss_before = match common.pid {
            Some(pid) => {
                Some(sys::tree_rss(pid).ok_or_else(|| anyhow!("--pid {pid}: no such process"))?)
            }
            None => None,
        };
        Ok(Context {
            common,
            target,
            rss_before,
        })
    }

    /// The source address for connection number `index`, when `--source-ips` is set.
    pub fn source(&self, index: u64) -> Option<IpAddr> {
        self.common.source_ips.as_ref().map(|s| s.pick(index))
    }

    /// A progress bar (hidden with `--quiet` or without a terminal).
    pub fn progress(&self, len: u64, message: &str) -> ProgressBar {
        report::progress(len, message, !self.common.quiet)
    }

    /// Opens connection number `index`.
    pub async fn connect(&self, index: u64) -> anyhow::Result<Client> {
        Client::connect(&self.target, self.source(index))
            .await
            .with_context(|| format!("connection {index}"))
    }

    /// Opens connection number `index` to `url`, another instance of the same deployment (same
    /// handshake timeout and auth token as `--url`).
    pub async fn connect_to(&self, url: &str, index: u64) -> anyhow::Result<Client> {
        let target = self.target.sibling(url).await?;
        Client::connect(&target, self.source(index))
            .await
            .with_context(|| format!("connection {index} to {url}"))
    }

    /// Opens `count` connections, numbered from `first_index`, at most `--concurrency` at a time,
    /// and runs `setup` on each (e.g. a subscribe). The whole phase is bounded by `--timeout`; the
    /// first failure ends it. Results come back in index order.
    pub async fn open_many<T, F, Fut>(
        &self,
        count: u64,
        first_index: u64,
        what: &str,
        setup: F,
    ) -> anyhow::Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(u64, Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
    {
        let permits = Arc::new(Semaphore::new(self.common.concurrency as usize));
        let setup = Arc::new(setup);
        let bar = self.progress(count, what);
        let mut tasks = JoinSet::new();
        for index in first_index..first_index + count {
            let (permits, setup, target, source) = (
                permits.clone(),
                setup.clone(),
                self.target.clone(),
                self.source(index),
            );
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let client = Client::connect(&target, source).await;
                let result = match client {
                    Ok(client) => setup(index, client).await,
                    Err(e) => Err(e),
                };
                (index, result)
            });
        }
        let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
        let collect = async {
            while let Some(joined) = tasks.join_next().await {
                let (index, result) = joined.context("connection task panicked")?;
                let value = result.with_context(|| format!("{what}: connection {index}"))?;
                results[(index - first_index) as usize] = Some(value);
                bar.inc(1);
            }
            anyhow::Ok(())
        };
        let outcome = tokio::time::timeout(self.common.timeout, collect).await;
        bar.finish_and_clear();
        match outcome {
            Ok(Ok(())) => Ok(results.into_iter().flatten().collect()),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let done = results.iter().filter(|r| r.is_some()).count();
                bail!(
                    "{what}: only {done} of {count} connections ready within --timeout {:?}",
                    self.common.timeout
                )
            }
        }
    }

    /// The server's CPU time so far (its whole process tree), when `--pid` was given.
    pub fn server_cpu(&self) -> Option<Duration> {
        self.common.pid.and_then(sys::tree_cpu)
    }

    /// Reports the server CPU used since `before` and `per_server_cpu_s` of `work` (e.g.
    /// deliveries) per server CPU-second, when `--pid` was given.
    pub fn report_server_cpu(
        &self,
        report: &mut Report,
        before: Option<Duration>,
        work: u64,
        what: &str,
    ) {
        self.report_server_cpu_between(report, before, self.server_cpu(), work, what);
    }

    /// [`Context::report_server_cpu`] with the second reading taken by the caller (`after`).
    pub fn report_server_cpu_between(
        &self,
        report: &mut Report,
        before: Option<Duration>,
        after: Option<Duration>,
        work: u64,
        what: &str,
    ) {
        let (Some(before), Some(now)) = (before, after) else {
            return;
        };
        let used = now.saturating_sub(before);
        report.duration("server_cpu_s", "server CPU", used);
        if !used.is_zero() {
            report.rate(
                "per_server_cpu_s",
                &format!("{what} per server CPU-second"),
                work as f64 / used.as_secs_f64(),
                what,
            );
        }
    }

    /// The server's resident memory now, when `--pid` was given (`None` also if it is gone).
    pub fn server_rss(&self) -> Option<u64> {
        self.common.pid.and_then(sys::tree_rss)
    }

    /// Adds the server's memory (before the run, `loaded` as read with [`Context::server_rss`] at
    /// the busiest point, and the growth per connection when `connections` > 0) to `report`, when
    /// `--pid` was given.
    pub fn report_server_memory(&self, report: &mut Report, loaded: Option<u64>, connections: u64) {
        let (Some(pid), Some(before)) = (self.common.pid, self.rss_before) else {
            return;
        };
        let Some(loaded) = loaded else {
            report.problem(format!("server process {pid} is gone"));
            return;
        };
        report.bytes("server_rss_before_bytes", "server RSS before", before);
        report.bytes("server_rss_after_bytes", "server RSS loaded", loaded);
        if let Some(per_connection) = loaded.saturating_sub(before).checked_div(connections) {
            report.bytes(
                "server_rss_per_conn_bytes",
                "server RSS / connection",
                per_connection,
            );
        }
    }

    /// Adds the run's settings to `report`.
    pub fn report_settings(&self, report: &mut Report) {
        report.text("url", "target", self.target.url());
        if let Some(label) = &self.common.label {
            report.text("label", "label", label);
        }
        report.count(
            "protocol_version",
            "protocol version",
            u64::from(self.common.protocol_version.number()),
        );
        if self.target.has_auth_token() {
            report.text(
                "auth",
                "handshakes carry",
                "an auth token (isAuthenticated checked)",
            );
        }
    }

    /// Reports the pings answered, and notes pings of the dialect the run was not told to
    /// expect.
    pub fn check_heartbeats(&self, report: &mut Report, heartbeats: Heartbeats) {
        let (answered, mismatch) = heartbeat_mismatch(self.common.protocol_version, heartbeats);
        report.count("pings", "pings answered", answered);
        if let Some(mismatch) = mismatch {
            report.note(mismatch);
        }
    }
}

/// The pings of `dialect` in `heartbeats`, and a note when the server pinged in the other
/// dialect more than a dialect-detecting server would.
///
/// A server detecting the dialect (`protocolVersion: auto`) probes each connection once with
/// `#1` before its first v2 ping: one `#1` per connection is that, not a mismatch, even when the
/// run ends before the v2 pings come.
fn heartbeat_mismatch(
    dialect: crate::cli::Dialect,
    heartbeats: Heartbeats,
) -> (u64, Option<String>) {
    let (expected, other, other_name, probes) = match dialect {
        crate::cli::Dialect::V1 => (heartbeats.v1, heartbeats.v2, "v2 (empty frame)", 0),
        crate::cli::Dialect::V2 => (
            heartbeats.v2,
            heartbeats.v1,
            "v1 (#1)",
            heartbeats.connections,
        ),
    };
    let note = (other > expected.max(probes)).then(|| {
        format!(
            "the server pinged in the {other_name} dialect {other} times, left unanswered \
             ({expected} in the expected one): check --protocol-version"
        )
    });
    (expected, note)
}

/// Why the wait for deliveries ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryEnd {
    /// Every expected delivery arrived.
    Complete,
    /// Publishing was over and nothing arrived for a while.
    Stalled,
    /// `--timeout` ran out.
    TimedOut,
}

impl DeliveryEnd {
    /// Notes a stall in `report`, or a problem if `timeout` (`--timeout`) ran out.
    pub fn report(self, report: &mut Report, timeout: Duration) {
        match self {
            DeliveryEnd::Complete => {}
            DeliveryEnd::Stalled => {
                report.note("deliveries stalled after the last acknowledgement")
            }
            DeliveryEnd::TimedOut => report.problem(format!(
                "deliveries not complete within --timeout {timeout:?}"
            )),
        }
    }
}

/// The measuring frame of a delivery scenario (`fanout`, `pubsub-many`): started once the
/// clients are connected, it holds what the client tasks share (delivery counter, stop signal,
/// latency), waits for the deliveries and sums everything up into [`Deliveries`].
#[derive(Debug)]
pub struct DeliveryRun {
    /// Deliveries so far, for progress and completion; receivers add to it.
    pub delivered: Arc<AtomicU64>,
    /// Changes when the run stops.
    pub stopped: watch::Receiver<bool>,
    /// End-to-end latency, recorded by the inboxes.
    pub latency: SharedLatency,
    stop: watch::Sender<bool>,
    server_before: Option<Duration>,
    cpu: CpuMeter,
    deadline: Instant,
    end: DeliveryEnd,
    server_rss: Option<u64>,
}

impl DeliveryRun {
    /// Starts measuring (the server's CPU, the generator's CPU, `--timeout`).
    pub fn start(ctx: &Context) -> DeliveryRun {
        let server_before = ctx.server_cpu();
        let cpu = CpuMeter::start();
        let deadline = Instant::now() + ctx.common.timeout;
        let (stop, stopped) = watch::channel(false);
        DeliveryRun {
            delivered: Arc::new(AtomicU64::new(0)),
            stopped,
            latency: SharedLatency::new(),
            stop,
            server_before,
            cpu,
            deadline,
            end: DeliveryEnd::TimedOut,
            server_rss: None,
        }
    }

    /// Waits, showing progress, until `expected` deliveries arrived, they stall once
    /// `publishing_done` says so, or `--timeout` passes (see [`await_deliveries`]); then reads
    /// the server's memory and tells every client task to stop.
    pub async fn wait(&mut self, ctx: &Context, expected: u64, publishing_done: impl Fn() -> bool) {
        let bar = ctx.progress(expected, "delivering");
        self.end = await_deliveries(
            &self.delivered,
            expected,
            &bar,
            self.deadline,
            publishing_done,
        )
        .await;
        bar.finish_and_clear();
        self.server_rss = ctx.server_rss();
        let _ = self.stop.send(true);
    }

    /// Sums the run up, with what the client tasks handed back.
    pub fn finish(
        self,
        totals: InboxTotals,
        heartbeats: Heartbeats,
        failures: Vec<ClientError>,
    ) -> Deliveries {
        Deliveries {
            cpu: self.cpu.finish(),
            latency: self.latency.snapshot(),
            totals,
            heartbeats,
            failures,
            end: self.end,
            server_before: self.server_before,
            server_rss: self.server_rss,
        }
    }
}

/// What a delivery scenario (`fanout`, `pubsub-many`) measured on the receiving side, and how
/// the run went.
#[derive(Debug)]
pub struct Deliveries {
    /// Every inbox's counts.
    pub totals: InboxTotals,
    /// End-to-end latency.
    pub latency: Latency,
    /// Pings every client answered.
    pub heartbeats: Heartbeats,
    /// The clients that failed.
    pub failures: Vec<ClientError>,
    /// Why the wait for deliveries ended.
    pub end: DeliveryEnd,
    /// The generator's CPU use over the run.
    pub cpu: CpuUse,
    /// The server's CPU time before the run, when `--pid` was given.
    pub server_before: Option<Duration>,
    /// The server's memory once deliveries ended, when `--pid` was given.
    pub server_rss: Option<u64>,
}

impl Deliveries {
    /// Reports latency, correctness, heartbeats, the generator's CPU and the server's CPU per
    /// delivery and memory.
    pub fn report_measures(&self, ctx: &Context, report: &mut Report) {
        report.latency("latency", "end-to-end latency", &self.latency);
        report.correctness(&self.totals.correctness);
        ctx.check_heartbeats(report, self.heartbeats);
        report.cpu(&self.cpu);
        ctx.report_server_cpu(
            report,
            self.server_before,
            self.totals.correctness.received,
            "deliveries",
        );
        ctx.report_server_memory(report, self.server_rss, 0);
    }

    /// Reports the failed clients (`who`: `subscribers`, `clients`) and how the wait ended.
    pub fn report_failures(&self, ctx: &Context, report: &mut Report, who: &str) {
        if let Some(error) = self.failures.first() {
            report.problem(format!(
                "{} {who} failed, first: {error}",
                self.failures.len()
            ));
        }
        self.end.report(report, ctx.common.timeout);
    }
}

/// Waits until `delivered` reaches `expected`, showing progress; gives up when `deadline` passes
/// or, once `publishing_done` says so, when deliveries stall.
pub async fn await_deliveries(
    delivered: &AtomicU64,
    expected: u64,
    bar: &ProgressBar,
    deadline: Instant,
    publishing_done: impl Fn() -> bool,
) -> DeliveryEnd {
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    loop {
        let count = delivered.load(Ordering::Relaxed);
        bar.set_position(count);
        if count >= expected {
            return DeliveryEnd::Complete;
        }
        let now = Instant::now();
        if count != last_count {
            (last_count, last_progress) = (count, now);
        }
        if now >= deadline {
            return DeliveryEnd::TimedOut;
        }
        if publishing_done() && now.duration_since(last_progress) >= DELIVERY_STALL {
            return DeliveryEnd::Stalled;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Delivery accounting of one receiver: which probes of its channel arrived, how late, and when
/// the last one did.
#[derive(Debug)]
pub struct Inbox {
    channel: Arc<str>,
    tracker: SeqTracker,
    latency: LatencyRecorder,
    last_delivery: Option<Instant>,
}

impl Inbox {
    /// An inbox expecting probes `0..expected` on `channel`, recording latencies into `latency`.
    pub fn new(channel: Arc<str>, expected: u64, latency: &SharedLatency) -> Inbox {
        Inbox {
            channel,
            tracker: SeqTracker::new(expected),
            latency: latency.recorder(),
            last_delivery: None,
        }
    }

    /// Accounts for one packet; true if it was a `#publish` delivery (ours or not).
    pub fn take(&mut self, packet: &Packet) -> bool {
        match delivered_probe(packet, &self.channel) {
            Some(Some(probe)) => {
                // One clock read for both the latency and the end of the run.
                let now = Instant::now();
                self.tracker.record(probe.seq);
                self.latency
                    .record(micros_at(now).saturating_sub(probe.sent_micros));
                self.last_delivery = Some(now);
                true
            }
            Some(None) => {
                self.tracker.record_foreign();
                true
            }
            None => false,
        }
    }

    /// Whether every expected probe arrived.
    pub fn is_complete(&self) -> bool {
        self.tracker.is_complete()
    }
}

/// Inboxes summed up (their latencies are in the [`SharedLatency`] they recorded into).
#[derive(Debug, Default)]
pub struct InboxTotals {
    /// Correctness counters.
    pub correctness: Correctness,
    /// When the last delivery arrived, over all inboxes.
    pub last_delivery: Option<Instant>,
}

impl InboxTotals {
    /// Reports the delivery rate and the time from `start` (the first publish) to the last
    /// delivery.
    pub fn report_rate(&self, report: &mut Report, start: Instant) {
        let elapsed = self
            .last_delivery
            .map(|last| last.duration_since(start))
            .unwrap_or_default();
        report.rate(
            "delivered_per_s",
            "delivered",
            rate(self.correctness.received, elapsed),
            "msg",
        );
        report.duration("elapsed_s", "first publish → last delivery", elapsed);
    }

    /// Adds one inbox, flushing its latencies.
    pub fn add(&mut self, mut inbox: Inbox) {
        inbox.latency.flush();
        self.correctness.add(&inbox.tracker.correctness());
        self.last_delivery = self.last_delivery.max(inbox.last_delivery);
    }
}

/// Publishing state of one publisher: probes `0..messages` to one channel as `#publish` requests,
/// at most `window` of them unacknowledged (and, when paced, one per interval).
#[derive(Debug)]
pub struct Outbox {
    encoder: PublishEncoder,
    size: usize,
    messages: u64,
    window: u64,
    sent: u64,
    /// Publishes acknowledged without error.
    pub acked: u64,
    /// Publishes answered with an error.
    pub rejected: u64,
    /// The first error a publish was answered with.
    pub first_rejection: Option<String>,
    /// When the first publish was sent.
    pub first_publish: Option<Instant>,
    /// When the last acknowledgement arrived.
    pub last_ack: Option<Instant>,
    /// With a rate: the interval between publishes and when the next one is due.
    pace: Option<(Duration, Instant)>,
}

impl Outbox {
    /// An outbox publishing `messages` probes of `size` bytes to `channel`.
    pub fn new(channel: &str, messages: u64, size: usize, window: u64) -> Outbox {
        Outbox {
            encoder: PublishEncoder::new(channel),
            size,
            messages,
            window,
            sent: 0,
            acked: 0,
            rejected: 0,
            first_rejection: None,
            first_publish: None,
            last_ack: None,
            pace: None,
        }
    }

    /// Paces the publishes at `per_second` (none: as fast as the window allows).
    pub fn with_rate(mut self, per_second: Option<f64>) -> Outbox {
        self.pace = per_second
            .filter(|r| *r > 0.0)
            .map(|r| (Duration::from_secs_f64(1.0 / r), Instant::now()));
        self
    }

    /// When the next paced publish is due (`None` when not paced or all are sent).
    pub fn next_due(&self) -> Option<Instant> {
        self.pace
            .filter(|_| self.sent < self.messages)
            .map(|(_, due)| due)
    }

    /// Whether a paced publish may go now (always, unpaced); moves the due time on when it may.
    fn take_turn(&mut self) -> bool {
        match &mut self.pace {
            None => true,
            Some((interval, due)) => {
                let now = Instant::now();
                if now < *due {
                    return false;
                }
                // A late turn does not earn a burst: the next is due an interval from now.
                *due = (*due + *interval).max(now);
                true
            }
        }
    }

    /// Sends publishes until the window is full or every message is sent (or, paced, until the
    /// next one is not due yet).
    pub async fn fill(&mut self, client: &mut Client) -> Result<(), ClientError> {
        let mut fed = false;
        while self.sent < self.messages
            && self.sent - self.answered() < self.window
            && self.take_turn()
        {
            self.first_publish.get_or_insert_with(Instant::now);
            let payload = Probe {
                seq: self.sent,
                sent_micros: now_micros(),
            }
            .encode(self.size);
            client
                .feed_invoke("#publish", &self.encoder.data(&payload))
                .await?;
            self.sent += 1;
            fed = true;
        }
        if fed {
            client.flush().await?;
        }
        Ok(())
    }

    /// Accounts for one packet; true if it answered one of this client's requests.
    pub fn take(&mut self, client: &mut Client, packet: &Packet) -> bool {
        let Packet::Response(response) = packet else {
            return false;
        };
        if !client.settle(response.rid) {
            return false;
        }
        match &response.error {
            None => self.acked += 1,
            Some(error) => {
                self.first_rejection
                    .get_or_insert_with(|| error.get().to_owned());
                self.rejected += 1;
            }
        }
        self.last_ack = Some(Instant::now());
        true
    }

    /// Publishes answered, with or without error.
    pub fn answered(&self) -> u64 {
        self.acked + self.rejected
    }

    /// Whether every publish has been answered.
    pub fn is_done(&self) -> bool {
        self.answered() == self.messages
    }

    /// Adds `other`'s counters to these (to sum up many publishers).
    pub fn merge(&mut self, other: &Outbox) {
        self.messages += other.messages;
        self.sent += other.sent;
        self.acked += other.acked;
        self.rejected += other.rejected;
        if self.first_rejection.is_none() {
            self.first_rejection.clone_from(&other.first_rejection);
        }
        self.first_publish = match (self.first_publish, other.first_publish) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ack = self.last_ack.max(other.last_ack);
    }

    /// Adds the publish problems (errors, missing acknowledgements) to `report`.
    pub fn report_problems(&self, who: &str, report: &mut Report) {
        if let Some(first) = &self.first_rejection {
            report.problem(format!(
                "{who}: {} publishes rejected, first: {first}",
                self.rejected
            ));
        }
        if !self.is_done() {
            report.problem(format!(
                "{who}: only {} of {} publishes answered",
                self.answered(),
                self.messages
            ));
        }
    }
}

/// Closes every client concurrently (each waits at most a second for the server).
pub async fn close_all(clients: impl IntoIterator<Item = Client>) {
    let mut tasks = JoinSet::new();
    for client in clients {
        tasks.spawn(client.close());
    }
    while tasks.join_next().await.is_some() {}
}

/// A random channel name for a run: `bench-<16 hex digits>`.
pub fn random_channel() -> String {
    format!("bench-{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Dialect;

    fn seen(v1: u64, v2: u64, connections: u64) -> Heartbeats {
        Heartbeats {
            v1,
            v2,
            connections,
        }
    }

    #[test]
    fn one_dialect_probe_per_connection_is_not_a_mismatch() {
        // protocolVersion auto, held until the first ping: only the `#1` probes were seen.
        assert_eq!(
            heartbeat_mismatch(Dialect::V2, seen(100, 0, 100)),
            (0, None)
        );
        // Held longer: the probe, then v2 pings.
        assert_eq!(
            heartbeat_mismatch(Dialect::V2, seen(100, 300, 100)),
            (300, None)
        );
    }

    #[test]
    fn a_server_of_the_other_dialect_is_noted() {
        // A v1-only server pings every connection with `#1` again and again.
        let (answered, note) = heartbeat_mismatch(Dialect::V2, seen(300, 0, 100));
        assert_eq!(answered, 0);
        assert!(note.unwrap().contains("v1 (#1) dialect 300 times"));
        // A v2 server against a v1 run: no empty-frame ping is ever a probe.
        let (answered, note) = heartbeat_mismatch(Dialect::V1, seen(0, 3, 3));
        assert_eq!(answered, 0);
        assert!(note.unwrap().contains("v2 (empty frame) dialect 3 times"));
    }
}
