//! `conns`: N idle connections, opened (handshake done) at bounded concurrency and held until
//! every one has received a heartbeat ping (or for `--hold`). Measures handshakes per second,
//! handshake latency and, with `--pid`, the server's resident memory per connection.
//!
//! Every connection lives in its own task from the start, answering pings while the others are
//! still being opened, so a slow opening phase cannot make the server time connections out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::{Semaphore, watch};

use super::{Context, close_all};
use crate::cli::ConnsArgs;
use crate::client::{Client, ClientError, Heartbeats};
use crate::report::Report;
use crate::stats::{Latency, now_micros, rate};
use crate::sys::CpuMeter;

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
}

/// What one connection task hands back.
struct Held {
    client: Client,
    handshake_micros: u64,
    error: Option<ClientError>,
}

/// Runs the scenario.
pub async fn run(ctx: &Context, args: &ConnsArgs) -> anyhow::Result<Report> {
    let n = args.connections;
    let tally = Arc::new(Tally::default());
    let permits = Arc::new(Semaphore::new(ctx.common.concurrency as usize));
    let (stop, stopped) = watch::channel(false);

    let cpu = CpuMeter::start();
    let start = Instant::now();
    let start_micros = now_micros();
    let tasks: Vec<_> = (0..n)
        .map(|index| {
            let (target, source) = (ctx.target.clone(), ctx.source(index));
            let (tally, permits, stopped) = (tally.clone(), permits.clone(), stopped.clone());
            tokio::spawn(async move {
                let permit = permits.acquire_owned().await;
                let began = Instant::now();
                let client = match Client::connect(&target, source).await {
                    Ok(client) => client,
                    Err(e) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        let mut first = tally
                            .first_failure
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert_with(|| {
                            format!("connection {index}: {:#}", anyhow::Error::new(e))
                        });
                        return None;
                    }
                };
                drop(permit);
                let handshake_micros =
                    u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally
                    .last_opened_micros
                    .fetch_max(now_micros(), Ordering::Relaxed);
                tally.opened.fetch_add(1, Ordering::Relaxed);
                Some(hold(client, handshake_micros, &tally, stopped).await)
            })
        })
        .collect();

    // Opening phase.
    let bar = ctx.progress(n, "connecting");
    let open_deadline = start + ctx.common.timeout;
    let failure = loop {
        let (opened, failed) = (
            tally.opened.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
        );
        bar.set_position(opened);
        if failed > 0 {
            break tally
                .first_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
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

    // Holding phase.
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

    let server_rss = ctx.server_rss();
    let _ = stop.send(true);
    let held = join(tasks).await;
    let cpu = cpu.finish();
    let mut latency = Latency::new();
    let mut heartbeats = Heartbeats::default();
    let mut first_error = None;
    for h in &held {
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
    report.count(
        "concurrency",
        "opened concurrently",
        u64::from(ctx.common.concurrency),
    );
    report.rate("handshakes_per_s", "handshakes", rate(n, open_time), "conn");
    report.duration("open_s", "opening time", open_time);
    report.latency("handshake", "connect + handshake", &latency);
    report.duration("held_s", "held for", held_for);
    report.count("pinged", "connections pinged", pinged);
    report.count("dropped", "dropped by the server", dropped);
    ctx.check_heartbeats(&mut report, heartbeats);
    report.cpu(&cpu);
    ctx.report_server_memory(&mut report, server_rss, n);

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
    close_all(held.into_iter().map(|h| h.client)).await;
    Ok(report)
}

/// Keeps one connection alive (answering pings) until the run stops or the server drops it.
async fn hold(
    mut client: Client,
    handshake_micros: u64,
    tally: &Tally,
    mut stopped: watch::Receiver<bool>,
) -> Held {
    let mut pinged = false;
    let mut error = None;
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
        if let Err(e) = frame {
            tally.dropped.fetch_add(1, Ordering::Relaxed);
            error = Some(e);
            break;
        }
    }
    Held {
        client,
        handshake_micros,
        error,
    }
}

/// Waits for every connection task; failed ones are left out.
async fn join(tasks: Vec<tokio::task::JoinHandle<Option<Held>>>) -> Vec<Held> {
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
