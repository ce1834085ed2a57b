//! `rpc`: K clients, each invoking `echo` in a closed loop (one request in flight) for T seconds.
//! Measures requests per second and request latency; every answer must carry the data sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Context, close_all};
use crate::cli::RpcArgs;
use crate::client::{Client, ClientError, Heartbeats, Probe};
use crate::report::Report;
use crate::stats::{Latency, LatencyRecorder, SharedLatency, now_micros, rate};
use crate::sys::{CpuMeter, CpuUse};

/// Runs the scenario: connect, invoke for the duration, report.
pub async fn run(ctx: &Context, args: &RpcArgs) -> anyhow::Result<Report> {
    let clients = connect(ctx, args).await?;
    let outcome = invoke(ctx, args, clients).await?;
    let report = report(ctx, args, &outcome);
    close_all(outcome.clients).await;
    Ok(report)
}

/// Opens the clients.
async fn connect(ctx: &Context, args: &RpcArgs) -> anyhow::Result<Vec<Client>> {
    ctx.open_many(args.clients, 0, "connecting", |_, client| async {
        Ok(client)
    })
    .await
}

/// What the invoking step measured.
struct Outcome {
    /// The clients whose loops ended (the others were aborted).
    clients: Vec<Client>,
    /// Requests answered.
    completed: u64,
    elapsed: Duration,
    latency: Latency,
    heartbeats: Heartbeats,
    /// Answers that differed from the request, and the first of them.
    mismatched: u64,
    first_mismatch: Option<String>,
    /// One line per failed client.
    failures: Vec<String>,
    cpu: CpuUse,
    /// The server's CPU time before and after, when `--pid` was given.
    server_before: Option<Duration>,
    server_after: Option<Duration>,
    /// The server's memory half way through, when `--pid` was given.
    server_rss: Option<u64>,
}

/// Runs every client's closed loop for `--duration` (sampling the server's memory half way),
/// then collects the loops; one still waiting for an answer past `--timeout` is aborted.
async fn invoke(ctx: &Context, args: &RpcArgs, clients: Vec<Client>) -> anyhow::Result<Outcome> {
    let server_before = ctx.server_cpu();
    let cpu = CpuMeter::start();
    let start = Instant::now();
    let deadline = start + args.duration;
    let completed = Arc::new(AtomicU64::new(0));
    let latency = SharedLatency::new();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let caller = Caller {
                client,
                procedure: args.procedure.clone(),
                size: args.size,
                request_timeout: ctx.common.timeout,
                latency: latency.recorder(),
                mismatched: 0,
                first_mismatch: None,
                error: None,
            };
            tokio::spawn(caller.run(deadline, completed.clone()))
        })
        .collect();

    let bar = ctx.progress(args.duration.as_secs().max(1), "invoking (s)");
    let mut server_rss = None;
    let give_up = deadline + ctx.common.timeout + Duration::from_secs(1);
    while !tasks.iter().all(|t| t.is_finished()) && Instant::now() < give_up {
        bar.set_position(start.elapsed().as_secs());
        if server_rss.is_none() && start.elapsed() >= args.duration / 2 {
            server_rss = ctx.server_rss();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server_rss = server_rss.or_else(|| ctx.server_rss());
    bar.finish_and_clear();

    let mut heartbeats = Heartbeats::default();
    let mut mismatched = 0;
    let mut first_mismatch = None;
    let mut failures = Vec::new();
    let mut clients = Vec::new();
    for task in tasks {
        if !task.is_finished() {
            task.abort();
            failures.push(format!(
                "a request got no answer within --timeout {:?}",
                ctx.common.timeout
            ));
            continue;
        }
        let mut caller = task.await?;
        caller.latency.flush();
        heartbeats.add(caller.client.heartbeats());
        mismatched += caller.mismatched;
        first_mismatch = first_mismatch.or(caller.first_mismatch);
        failures.extend(caller.error.map(|e| e.to_string()));
        clients.push(caller.client);
    }
    Ok(Outcome {
        clients,
        elapsed: start.elapsed(),
        cpu: cpu.finish(),
        server_before,
        server_after: ctx.server_cpu(),
        server_rss,
        latency: latency.snapshot(),
        completed: completed.load(Ordering::Relaxed),
        heartbeats,
        mismatched,
        first_mismatch,
        failures,
    })
}

/// The report of a run.
fn report(ctx: &Context, args: &RpcArgs, outcome: &Outcome) -> Report {
    let mut report = Report::new("rpc");
    ctx.report_settings(&mut report);
    report.count("clients", "clients", args.clients);
    report.text("procedure", "procedure", &args.procedure);
    report.count("size", "payload bytes", args.size as u64);
    report.count("requests", "requests answered", outcome.completed);
    report.rate(
        "requests_per_s",
        "throughput",
        rate(outcome.latency.count(), outcome.elapsed),
        "req",
    );
    report.duration("elapsed_s", "elapsed", outcome.elapsed);
    report.latency("latency", "request latency", &outcome.latency);
    report.count("mismatched", "wrong answers", outcome.mismatched);
    ctx.check_heartbeats(&mut report, outcome.heartbeats);
    report.cpu(&outcome.cpu);
    ctx.report_server_cpu_between(
        &mut report,
        outcome.server_before,
        outcome.server_after,
        outcome.completed,
        "requests",
    );
    ctx.report_server_memory(&mut report, outcome.server_rss, 0);

    if let Some(first) = &outcome.first_mismatch {
        report.problem(format!(
            "{} answers differed from the request, first: {first}",
            outcome.mismatched
        ));
    }
    if let Some(first) = outcome.failures.first() {
        report.problem(format!(
            "{} clients failed, first: {first}",
            outcome.failures.len()
        ));
    }
    report
}

/// One client's closed loop.
struct Caller {
    client: Client,
    procedure: String,
    size: usize,
    request_timeout: Duration,
    latency: LatencyRecorder,
    mismatched: u64,
    first_mismatch: Option<String>,
    error: Option<ClientError>,
}

impl Caller {
    /// Invokes until `deadline`; each request is bounded by the request timeout.
    async fn run(mut self, deadline: Instant, completed: Arc<AtomicU64>) -> Caller {
        let mut seq = 0;
        while Instant::now() < deadline {
            let sent_micros = now_micros();
            let payload = Probe { seq, sent_micros }.encode(self.size);
            seq += 1;
            let call = self.client.call(&self.procedure, &payload);
            let response = match tokio::time::timeout(self.request_timeout, call).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    self.error = Some(e);
                    break;
                }
                Err(_) => {
                    self.error = Some(ClientError::Failed {
                        event: self.procedure.clone(),
                        error: format!("no answer within {:?}", self.request_timeout),
                    });
                    break;
                }
            };
            self.latency.record_since(sent_micros);
            completed.fetch_add(1, Ordering::Relaxed);
            let answer = response.data.as_ref().map(|d| d.get());
            if answer != Some(payload.as_str()) {
                self.mismatched += 1;
                self.first_mismatch.get_or_insert_with(|| {
                    format!("sent {payload}, got {}", answer.unwrap_or("no data"))
                });
            }
        }
        self
    }
}
