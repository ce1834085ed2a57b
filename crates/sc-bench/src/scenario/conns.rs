//! `conns`: N idle connections, opened (handshake done) at bounded concurrency and held until
//! every one has received a heartbeat ping (or for `--hold`). Measures handshakes per second,
//! handshake latency and, with `--pid`, the server's resident memory per connection.
//!
//! Every connection lives in its own task from the start, answering pings while the others are
//! still being opened, so a slow opening phase cannot make the server time connections out.
//!
//! For the 100k run (`scripts/bench-100k`): `--subscribe` gives every connection a channel of its
//! own, `--probe-rate` publishes to random ones of them while they are held (latency, no loss, no
//! duplicate, per-channel order), the server's CPU over the hold is reported as idle cores, and
//! `--shard K/N` with `--barrier DIR` spreads one run over N generator processes that hold over
//! the same window.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sc_protocol::{Frame, Packet};
use tokio::sync::{Semaphore, watch};

use super::{Context, DELIVERY_STALL, close_all};
use crate::cli::{ConnsArgs, Shard};
use crate::client::{
    Client, ClientError, Heartbeats, Probe, PublishEncoder, Target, delivered_probe,
};
use crate::report::Report;
use crate::stall::{StallMeter, Stalls};
use crate::stats::{Latency, micros_at, now_micros, rate};
use crate::sys::{CpuMeter, CpuUse};

/// Payload size of a probe publication.
const PROBE_SIZE: usize = 64;

/// Counters shared by the connection tasks.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    /// When the last handshake completed, in [`now_micros`] time.
    last_opened_micros: AtomicU64,
    pinged: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    /// The first connection failure, as text.
    first_failure: Mutex<Option<String>>,
    /// Probes received with a sequence number not above the channel's previous one.
    misordered: AtomicU64,
    /// `#publish` deliveries that were not a probe of the connection's channel.
    foreign: AtomicU64,
    /// Every probe received on a connection's own channel, in arrival order: the probe figures
    /// and the `--probe-log` timeline.
    probes_seen: Mutex<Vec<ProbeSeen>>,
}

impl Tally {
    /// How many probes have arrived so far.
    fn probes_delivered(&self) -> u64 {
        lock(&self.probes_seen).len() as u64
    }

    /// The delivery latency of the probes that arrived.
    fn probe_latency(&self) -> Latency {
        let mut latency = Latency::new();
        for probe in lock(&self.probes_seen).iter() {
            latency.record(probe.latency_micros);
        }
        latency
    }
}

/// One delivered probe.
#[derive(Debug, Clone, Copy)]
struct ProbeSeen {
    seq: u64,
    /// When it was sent, [`now_micros`] scale.
    sent_micros: u64,
    latency_micros: u64,
}

/// What one connection task hands back.
struct Held {
    client: Client,
    handshake_micros: u64,
    error: Option<ClientError>,
}

/// Runs the scenario. Steps: plan, open every connection, hold them, collect, report.
pub async fn run(ctx: &Context, args: &ConnsArgs) -> anyhow::Result<Report> {
    let plan = Plan::new(args)?;
    let tally = Arc::new(Tally::default());
    let (stop, stopped) = watch::channel(false);
    let cpu = CpuMeter::start();
    let (tasks, open_time) = open(ctx, args, &plan, &tally, stopped).await?;
    let holding = hold_all(ctx, args, &plan, &tally).await?;
    let _ = stop.send(true);
    let held = join(tasks).await;
    let outcome = Outcome {
        open_time,
        holding,
        held,
        cpu: cpu.finish(),
    };
    let mut report = report(ctx, args, &plan, &tally, &outcome);
    if let Some(path) = &args.probe_log
        && let Err(e) = write_probe_log(path, &tally, &outcome.holding)
    {
        report.problem(format!("--probe-log {}: {e}", path.display()));
    }
    close_all(outcome.held.into_iter().map(|h| h.client)).await;
    Ok(report)
}

/// Which connections this process opens.
struct Plan {
    /// Connections of the whole run (all shards).
    total: u64,
    shard: Shard,
    /// The numbers of this shard's connections.
    indices: Arc<Vec<u64>>,
    /// How many of them.
    n: u64,
    /// Prefix of the connections' own channels.
    prefix: Arc<str>,
}

impl Plan {
    /// This shard's share of `--connections`; fails when it is empty.
    fn new(args: &ConnsArgs) -> anyhow::Result<Plan> {
        let total = args.connections;
        let shard = args.shard.unwrap_or(Shard { index: 0, count: 1 });
        let indices: Arc<Vec<u64>> = Arc::new(shard.indices(total).collect());
        let n = indices.len() as u64;
        if n == 0 {
            bail!(
                "shard {}/{} has no connections of {total}",
                shard.index,
                shard.count
            );
        }
        Ok(Plan {
            total,
            shard,
            indices,
            n,
            prefix: format!("conns-{:016x}", fastrand::u64(..)).into(),
        })
    }
}

/// One connection task's work.
type ConnectionTask = tokio::task::JoinHandle<Option<Held>>;

/// Opens every connection of the plan in a task of its own (at most `--concurrency` opening at
/// once) and waits until all are open, then (with `--barrier`) for the other shards. Returns
/// the tasks and the opening time (first start → last handshake); fails on the first
/// connection failure or at `--timeout`, aborting the tasks.
async fn open(
    ctx: &Context,
    args: &ConnsArgs,
    plan: &Plan,
    tally: &Arc<Tally>,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Vec<ConnectionTask>, Duration)> {
    let permits = Arc::new(Semaphore::new(ctx.common.concurrency as usize));
    let start = Instant::now();
    let start_micros = now_micros();
    let tasks: Vec<_> = plan
        .indices
        .iter()
        .map(|&index| {
            let (target, source) = (ctx.target.clone(), ctx.source(index));
            let (tally, permits, stopped) = (tally.clone(), permits.clone(), stopped.clone());
            let channel = args.subscribe.then(|| channel_name(&plan.prefix, index));
            tokio::spawn(async move {
                let permit = permits.acquire_owned().await;
                let began = Instant::now();
                let client = open_one(&target, source, index, channel.as_deref(), &tally).await?;
                drop(permit);
                let handshake_micros =
                    u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally
                    .last_opened_micros
                    .fetch_max(now_micros(), Ordering::Relaxed);
                tally.opened.fetch_add(1, Ordering::Relaxed);
                Some(hold(client, channel, handshake_micros, &tally, stopped).await)
            })
        })
        .collect();

    let n = plan.n;
    let bar = ctx.progress(n, "connecting");
    let open_deadline = start + ctx.common.timeout;
    let failure = loop {
        let (opened, failed) = (
            tally.opened.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
        );
        bar.set_position(opened);
        if failed > 0 {
            break lock(&tally.first_failure).clone();
        }
        if opened == n {
            break None;
        }
        if Instant::now() >= open_deadline {
            break Some(format!(
                "only {opened} of {n} connections open within --timeout {:?}",
                ctx.common.timeout
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let last_opened = tally.last_opened_micros.load(Ordering::Relaxed);
    let open_time = Duration::from_micros(last_opened.saturating_sub(start_micros));
    bar.finish_and_clear();
    if let Some(failure) = failure {
        // Tasks still waiting to connect must not go on; open connections just drop.
        tasks.iter().for_each(|task| task.abort());
        bail!("{failure}{}", hint(&failure));
    }
    if let Some(dir) = &args.barrier {
        let deadline = Instant::now() + ctx.common.timeout;
        if let Err(e) = await_shards(dir, plan.shard, deadline).await {
            tasks.iter().for_each(|task| task.abort());
            return Err(e);
        }
    }
    Ok((tasks, open_time))
}

/// Connects connection `index` and subscribes it to `channel`, if given; a failure is counted
/// in `tally` (the first one kept as text).
async fn open_one(
    target: &Target,
    source: Option<IpAddr>,
    index: u64,
    channel: Option<&str>,
    tally: &Tally,
) -> Option<Client> {
    let connected = match Client::connect(target, source).await {
        Ok(mut client) => match channel {
            Some(channel) => client.subscribe(channel).await.map(|()| client),
            None => Ok(client),
        },
        Err(e) => Err(e),
    };
    match connected {
        Ok(client) => Some(client),
        Err(e) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = lock(&tally.first_failure);
            first.get_or_insert_with(|| format!("connection {index}: {:#}", anyhow::Error::new(e)));
            None
        }
    }
}

/// What the holding step measured.
struct Holding {
    held_for: Duration,
    /// The server's CPU time over the hold, when `--pid` was given.
    server_idle_cpu: Option<Duration>,
    /// The server's memory at the end of the hold, when `--pid` was given.
    server_rss: Option<u64>,
    /// What the probe publisher did, with `--probe-rate`.
    probes: Option<Probes>,
    /// The host stalls seen while holding, with `--probe-rate`.
    stalls: Option<Stalls>,
    /// When the hold began, [`now_micros`] scale.
    began_micros: u64,
}

/// Holds the open connections (publishing probes with `--probe-rate`) for `--hold`, or until
/// every one was pinged, one is dropped, or `--timeout` passes; then stops the probes and waits
/// for the acknowledged ones to arrive.
async fn hold_all(
    ctx: &Context,
    args: &ConnsArgs,
    plan: &Plan,
    tally: &Tally,
) -> anyhow::Result<Holding> {
    let n = plan.n;
    let (stop_probes, probes_stopped) = watch::channel(false);
    let prober = if args.probe_rate > 0.0 {
        // Numbered past every held connection, so its source address is the next in turn.
        let client = ctx
            .connect(plan.total)
            .await
            .context("the probe publisher")?;
        let (prefix, indices) = (plan.prefix.clone(), plan.indices.clone());
        let rate = args.probe_rate;
        Some(tokio::spawn(publish_probes(
            client,
            prefix,
            indices,
            rate,
            probes_stopped,
        )))
    } else {
        None
    };
    let stall_meter = match prober {
        Some(_) => Some(StallMeter::start().context("the stall meter's thread")?),
        None => None,
    };
    let server_cpu_before = ctx.server_cpu();
    let hold_start = Instant::now();
    let (goal, label) = match args.hold {
        Some(hold) => (hold.as_millis() as u64, "holding (ms)"),
        None => (n, "awaiting pings"),
    };
    let bar = ctx.progress(goal, label);
    let hold_deadline = hold_start + args.hold.unwrap_or(ctx.common.timeout);
    while Instant::now() < hold_deadline {
        match args.hold {
            Some(_) => bar.set_position(hold_start.elapsed().as_millis() as u64),
            None => {
                let pinged = tally.pinged.load(Ordering::Relaxed);
                bar.set_position(pinged);
                if pinged == n {
                    break;
                }
            }
        }
        if tally.dropped.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    let held_for = hold_start.elapsed();
    let server_idle_cpu = server_cpu_before
        .zip(ctx.server_cpu())
        .map(|(before, after)| after.saturating_sub(before));

    let server_rss = ctx.server_rss();
    let stalls = stall_meter.map(StallMeter::finish);
    let _ = stop_probes.send(true);
    let probes = match prober {
        Some(task) => {
            let probes = task.await.context("the probe publisher panicked")?;
            await_probes(tally, probes.acked).await;
            Some(probes)
        }
        None => None,
    };
    Ok(Holding {
        held_for,
        server_idle_cpu,
        server_rss,
        probes,
        stalls,
        began_micros: micros_at(hold_start),
    })
}

/// Everything measured, for the report.
struct Outcome {
    /// First connection started → last handshake done.
    open_time: Duration,
    holding: Holding,
    /// The connections that were held to the end.
    held: Vec<Held>,
    cpu: CpuUse,
}

/// The report of a run.
fn report(
    ctx: &Context,
    args: &ConnsArgs,
    plan: &Plan,
    tally: &Tally,
    outcome: &Outcome,
) -> Report {
    let Plan {
        total, shard, n, ..
    } = *plan;
    let Holding {
        held_for,
        server_idle_cpu,
        server_rss,
        ref probes,
        ref stalls,
        ..
    } = outcome.holding;
    let mut latency = Latency::new();
    let mut heartbeats = Heartbeats::default();
    let mut first_error = None;
    for h in &outcome.held {
        latency.record(h.handshake_micros);
        heartbeats.add(h.client.heartbeats());
        if first_error.is_none() {
            first_error = h.error.as_ref().map(ToString::to_string);
        }
    }
    let pinged = tally.pinged.load(Ordering::Relaxed);
    let dropped = tally.dropped.load(Ordering::Relaxed);

    let mut report = Report::new("conns");
    ctx.report_settings(&mut report);
    report.count("connections", "connections", n);
    if shard.count > 1 {
        report.text(
            "shard",
            "shard",
            &format!("{}/{} of {total} connections", shard.index, shard.count),
        );
        report.count("connections_all_shards", "connections, all shards", total);
    }
    report.text(
        "subscribed",
        "each subscribed to its own channel",
        if args.subscribe { "yes" } else { "no" },
    );
    report.count(
        "concurrency",
        "opened concurrently",
        u64::from(ctx.common.concurrency),
    );
    let open_time = outcome.open_time;
    report.rate("handshakes_per_s", "handshakes", rate(n, open_time), "conn");
    report.duration("open_s", "opening time", open_time);
    report.latency("handshake", "connect + handshake", &latency);
    report.duration("held_s", "held for", held_for);
    report.count("pinged", "connections pinged", pinged);
    report.count("dropped", "dropped by the server", dropped);
    ctx.check_heartbeats(&mut report, heartbeats);
    report.cpu(&outcome.cpu);
    // Behind a barrier every shard reads the memory while all of them hold their connections.
    let held_by_server = if args.barrier.is_some() { total } else { n };
    ctx.report_server_memory(&mut report, server_rss, held_by_server);
    if let Some(used) = server_idle_cpu {
        report.duration("server_hold_cpu_s", "server CPU while holding", used);
        if !held_for.is_zero() {
            report.cores(
                "server_idle_cores",
                "server CPU while holding (idle)",
                used.as_secs_f64() / held_for.as_secs_f64(),
            );
        }
    }
    if let Some(probes) = probes {
        probes.report(tally, &mut report);
    }
    if let Some(stalls) = stalls {
        report.latency(
            "host_stall",
            "host stall (lateness of a 1 ms sleep)",
            &stalls.lateness,
        );
        report.count(
            "host_stalls_notable",
            "host stalls of 5 ms or more",
            stalls.notable.len() as u64,
        );
    }
    let foreign = tally.foreign.load(Ordering::Relaxed);
    if foreign > 0 {
        report.problem(format!(
            "{foreign} deliveries that are not a probe of the receiving connection's channel"
        ));
    }

    if let Some(error) = first_error {
        report.problem(format!(
            "{dropped} connections dropped while held, first: {error}"
        ));
    }
    if args.hold.is_none() && pinged < n {
        report.problem(format!(
            "only {pinged} of {n} connections received a ping within --timeout {:?}",
            ctx.common.timeout
        ));
    }
    report
}

/// Writes the `--probe-log` timeline: every delivered probe and every notable host stall, in
/// time order, times in milliseconds since the hold began.
fn write_probe_log(
    path: &std::path::Path,
    tally: &Tally,
    holding: &Holding,
) -> std::io::Result<()> {
    let ms = |micros: u64| micros as f64 / 1000.0;
    let since_hold = |micros: u64| (micros as f64 - holding.began_micros as f64) / 1000.0;
    let mut lines: Vec<(u64, String)> = lock(&tally.probes_seen)
        .iter()
        .map(|p| {
            let line = format!(
                "probe {:.3} {:.3} {}",
                since_hold(p.sent_micros),
                ms(p.latency_micros),
                p.seq
            );
            (p.sent_micros, line)
        })
        .collect();
    let stalls = holding.stalls.iter().flat_map(|s| &s.notable);
    lines.extend(
        stalls.map(|&(at, length)| (at, format!("stall {:.3} {:.3}", since_hold(at), ms(length)))),
    );
    lines.sort_by_key(|(at, _)| *at);
    let mut text = String::new();
    for (_, line) in lines {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// Locks `mutex`, poisoned or not: the tallies stay meaningful after a task panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The channel of connection number `index`.
fn channel_name(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index}")
}

/// Keeps one connection alive (answering pings) until the run stops or the server drops it;
/// accounts for the probes that arrive on its `channel`.
async fn hold(
    mut client: Client,
    channel: Option<String>,
    handshake_micros: u64,
    tally: &Tally,
    mut stopped: watch::Receiver<bool>,
) -> Held {
    let mut pinged = false;
    let mut error = None;
    let mut last_seq = None;
    loop {
        if !pinged && client.heartbeats().total() > 0 {
            pinged = true;
            tally.pinged.fetch_add(1, Ordering::Relaxed);
        }
        let frame = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            frame = client.recv() => frame,
        };
        match frame {
            Ok(Frame::Packets(packets)) => {
                for packet in &packets {
                    let Some(probe) = delivered_probe(packet, channel.as_deref().unwrap_or(""))
                    else {
                        continue;
                    };
                    let Some(probe) = probe else {
                        tally.foreign.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let latency_micros = now_micros().saturating_sub(probe.sent_micros);
                    lock(&tally.probes_seen).push(ProbeSeen {
                        seq: probe.seq,
                        sent_micros: probe.sent_micros,
                        latency_micros,
                    });
                    if last_seq.is_some_and(|last| probe.seq <= last) {
                        tally.misordered.fetch_add(1, Ordering::Relaxed);
                    }
                    last_seq = Some(probe.seq);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tally.dropped.fetch_add(1, Ordering::Relaxed);
                error = Some(e);
                break;
            }
        }
    }
    Held {
        client,
        handshake_micros,
        error,
    }
}

/// What the probe publisher did.
#[derive(Debug, Default)]
struct Probes {
    sent: u64,
    acked: u64,
    rejected: u64,
    first_rejection: Option<String>,
    /// Why the publisher's connection ended early.
    error: Option<String>,
}

impl Probes {
    /// Adds the probe figures, and what went wrong with them, to `report`.
    fn report(&self, tally: &Tally, report: &mut Report) {
        let delivered = tally.probes_delivered();
        let misordered = tally.misordered.load(Ordering::Relaxed);
        report.count("probes_sent", "probe publications", self.sent);
        report.count("probes_delivered", "probes delivered", delivered);
        report.latency(
            "probe_latency",
            "probe publish → delivery",
            &tally.probe_latency(),
        );
        if let Some(error) = &self.error {
            report.problem(format!("the probe publisher's connection failed: {error}"));
        }
        if let Some(first) = &self.first_rejection {
            report.problem(format!(
                "{} probe publications rejected, first: {first}",
                self.rejected
            ));
        }
        if self.acked + self.rejected < self.sent {
            report.problem(format!(
                "only {} of {} probe publications answered",
                self.acked + self.rejected,
                self.sent
            ));
        }
        if delivered < self.acked {
            report.problem(format!(
                "{} of {} acknowledged probes never arrived",
                self.acked - delivered,
                self.acked
            ));
        }
        if delivered > self.sent {
            report.problem(format!(
                "{delivered} probes delivered for {} sent: duplicates",
                self.sent
            ));
        }
        if misordered > 0 {
            report.problem(format!(
                "{misordered} probes arrived after a later one of the same channel (duplicated or out of order)"
            ));
        }
    }
}

/// Publishes `rate` probes per second, each to the channel of a random one of `indices`, until
/// `stop`; then waits (at most [`DELIVERY_STALL`]) for the outstanding acknowledgements.
async fn publish_probes(
    mut client: Client,
    prefix: Arc<str>,
    indices: Arc<Vec<u64>>,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> Probes {
    let mut probes = Probes::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping: Option<Instant> = None;
    loop {
        if let Some(since) = stopping
            && (probes.acked + probes.rejected >= probes.sent || since.elapsed() > DELIVERY_STALL)
        {
            break;
        }
        let publish = stopping.is_none();
        let frame = tokio::select! {
            biased;
            _ = stop.changed(), if publish => {
                stopping = Some(Instant::now());
                continue;
            }
            _ = tick.tick(), if publish => {
                let index = indices[fastrand::usize(..indices.len())];
                let encoder = PublishEncoder::new(&channel_name(&prefix, index));
                let payload = Probe { seq: probes.sent, sent_micros: now_micros() }.encode(PROBE_SIZE);
                let sent = async {
                    client.feed_invoke("#publish", &encoder.data(&payload)).await?;
                    client.flush().await
                };
                if let Err(e) = sent.await {
                    probes.error = Some(e.to_string());
                    break;
                }
                probes.sent += 1;
                continue;
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if !publish => continue,
            frame = client.recv() => frame,
        };
        match frame {
            Ok(Frame::Packets(packets)) => {
                for packet in packets {
                    let Packet::Response(response) = packet else {
                        continue;
                    };
                    if !client.settle(response.rid) {
                        continue;
                    }
                    match response.error {
                        None => probes.acked += 1,
                        Some(error) => {
                            probes.rejected += 1;
                            probes
                                .first_rejection
                                .get_or_insert_with(|| error.get().to_owned());
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                probes.error = Some(e.to_string());
                break;
            }
        }
    }
    client.close().await;
    probes
}

/// Waits until `acked` probes have been delivered, or deliveries stall for [`DELIVERY_STALL`].
async fn await_probes(tally: &Tally, acked: u64) {
    let mut last = (tally.probes_delivered(), Instant::now());
    loop {
        let delivered = tally.probes_delivered();
        if delivered >= acked {
            return;
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if last.1.elapsed() >= DELIVERY_STALL {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `--barrier`: leaves this shard's marker in `dir`, then waits for the markers of all shards.
async fn await_shards(
    dir: &std::path::Path,
    shard: Shard,
    deadline: Instant,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("--barrier {}", dir.display()))?;
    let marker = dir.join(format!("ready-{}", shard.index));
    std::fs::write(&marker, b"").with_context(|| format!("--barrier {}", marker.display()))?;
    loop {
        let ready = std::fs::read_dir(dir)
            .with_context(|| format!("--barrier {}", dir.display()))?
            .filter_map(Result::ok)
            .filter(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.strip_prefix("ready-"))
                    .and_then(|k| k.parse::<u64>().ok())
                    .is_some_and(|k| k < shard.count)
            })
            .count() as u64;
        if ready >= shard.count {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "--barrier {}: only {ready} of {} shards ready within --timeout",
                dir.display(),
                shard.count
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for every connection task; failed ones are left out.
async fn join(tasks: Vec<ConnectionTask>) -> Vec<Held> {
    let mut held = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(Some(h)) = task.await {
            held.push(h);
        }
    }
    held
}

/// Advice for the usual causes of mass connection failures.
fn hint(failure: &str) -> &'static str {
    if failure.contains("Cannot assign requested address") {
        " (out of ephemeral ports on this source address: spread connections with --source-ips 127.0.0.1-127.0.0.254)"
    } else if failure.contains("Too many open files") {
        " (out of file descriptors: raise the hard limit, `ulimit -Hn`, of the generator and the server)"
    } else {
        ""
    }
}
