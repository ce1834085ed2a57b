//! `rpc`: K clients, each invoking `echo` in a closed loop (one request in flight) for T seconds.
//! Measures requests per second and request latency; every answer must carry the data sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Context, close_all};
use crate::cli::RpcArgs;
use crate::client::{Client, ClientError, Heartbeats, Probe};
use crate::report::Report;
use crate::stats::{LatencyRecorder, SharedLatency, now_micros, rate};
use crate::sys::CpuMeter;

/// Runs the scenario.
pub async fn run(ctx: &Context, args: &RpcArgs) -> anyhow::Result<Report> {
    let clients = ctx
        .open_many(args.clients, 0, "connecting", |_, client| async {
            Ok(client)
        })
        .await?;

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
    let elapsed = start.elapsed();
    let cpu = cpu.finish();
    let server_after = ctx.server_cpu();
    let latency = latency.snapshot();

    let mut report = Report::new("rpc");
    ctx.report_settings(&mut report);
    report.count("clients", "clients", args.clients);
    report.text("procedure", "procedure", &args.procedure);
    report.count("size", "payload bytes", args.size as u64);
    report.count(
        "requests",
        "requests answered",
        completed.load(Ordering::Relaxed),
    );
    report.rate(
        "requests_per_s",
        "throughput",
        rate(latency.count(), elapsed),
        "req",
    );
    report.duration("elapsed_s", "elapsed", elapsed);
    report.latency("latency", "request latency", &latency);
    report.count("mismatched", "wrong answers", mismatched);
    ctx.check_heartbeats(&mut report, heartbeats);
    report.cpu(&cpu);
    ctx.report_server_cpu_between(
        &mut report,
        server_before,
        server_after,
        completed.load(Ordering::Relaxed),
        "requests",
    );
    ctx.report_server_memory(&mut report, server_rss, 0);

    if let Some(first) = first_mismatch {
        report.problem(format!(
            "{mismatched} answers differed from the request, first: {first}"
        ));
    }
    if let Some(first) = failures.first() {
        report.problem(format!("{} clients failed, first: {first}", failures.len()));
    }
    close_all(clients).await;
    Ok(report)
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
