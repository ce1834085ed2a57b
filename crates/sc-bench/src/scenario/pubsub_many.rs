//! `pubsub-many`: N clients, client `i` subscribed to its own channel `<prefix>-i` and publishing M
//! messages to its neighbour's channel `<prefix>-(i+1 mod N)`. Measures delivered messages per
//! second, end-to-end latency and correctness (each channel has exactly one publisher).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sc_protocol::Frame;
use tokio::sync::watch;

use super::fanout::COUNTER_BATCH;
use super::{
    Context, DeliveryEnd, Inbox, InboxTotals, Outbox, await_deliveries, close_all, random_channel,
};
use crate::cli::PubsubManyArgs;
use crate::client::{Client, ClientError, Heartbeats};
use crate::report::Report;
use crate::stats::{SharedLatency, rate};
use crate::sys::CpuMeter;

/// Runs the scenario.
pub async fn run(ctx: &Context, args: &PubsubManyArgs) -> anyhow::Result<Report> {
    let prefix: Arc<str> = Arc::from(random_channel());
    let channel_of = {
        let prefix = prefix.clone();
        move |i: u64| -> Arc<str> { Arc::from(format!("{prefix}-{i}")) }
    };
    let subscribe_to = channel_of.clone();
    let clients = ctx
        .open_many(args.clients, 0, "subscribing", move |index, mut client| {
            let channel = subscribe_to(index);
            async move {
                client.subscribe(&channel).await?;
                Ok(client)
            }
        })
        .await?;

    let server_before = ctx.server_cpu();
    let cpu = CpuMeter::start();
    let deadline = Instant::now() + ctx.common.timeout;
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let latency = SharedLatency::new();
    let publishers_left = Arc::new(AtomicU64::new(args.clients));
    let tasks: Vec<_> = (0..args.clients)
        .zip(clients)
        .map(|(i, client)| {
            let inbox = Inbox::new(channel_of(i), args.messages, &latency);
            let neighbour = channel_of((i + 1) % args.clients);
            let outbox = Outbox::new(&neighbour, args.messages, args.size, args.window);
            let shared = Shared {
                delivered: delivered.clone(),
                publishers_left: publishers_left.clone(),
            };
            tokio::spawn(pubsub(client, inbox, outbox, shared, stopped.clone()))
        })
        .collect();

    let expected = args.clients * args.messages;
    let bar = ctx.progress(expected, "delivering");
    let publishing_done = || publishers_left.load(Ordering::Relaxed) == 0;
    let end = await_deliveries(&delivered, expected, &bar, deadline, publishing_done).await;
    bar.finish_and_clear();
    let server_rss = ctx.server_rss();
    let _ = stop.send(true);

    let mut totals = InboxTotals::default();
    let mut published: Option<Outbox> = None;
    let mut heartbeats = Heartbeats::default();
    let mut failures = Vec::new();
    let mut clients = Vec::new();
    for task in tasks {
        let (client, inbox, outbox, error) = task.await?;
        totals.add(inbox);
        match &mut published {
            Some(total) => total.merge(&outbox),
            None => published = Some(outbox),
        }
        heartbeats.add(client.heartbeats());
        failures.extend(error);
        clients.push(client);
    }
    let cpu = cpu.finish();

    let mut report = Report::new("pubsub-many");
    ctx.report_settings(&mut report);
    report.count("clients", "clients", args.clients);
    report.count("messages", "messages per client", args.messages);
    report.count("size", "payload bytes", args.size as u64);
    report.count("window", "publish window", args.window);
    let start = published
        .as_ref()
        .and_then(|p| p.first_publish)
        .unwrap_or_else(Instant::now);
    let elapsed = totals
        .last_delivery
        .map(|last| last.duration_since(start))
        .unwrap_or_default();
    report.rate(
        "delivered_per_s",
        "delivered",
        rate(totals.correctness.received, elapsed),
        "msg",
    );
    report.duration("elapsed_s", "first publish → last delivery", elapsed);
    report.latency("latency", "end-to-end latency", &latency.snapshot());
    report.correctness(&totals.correctness);
    ctx.check_heartbeats(&mut report, heartbeats);
    report.cpu(&cpu);
    ctx.report_server_cpu(
        &mut report,
        server_before,
        totals.correctness.received,
        "deliveries",
    );
    ctx.report_server_memory(&mut report, server_rss, 0);

    if let Some(published) = &published {
        published.report_problems("publishers", &mut report);
    }
    if let Some(error) = failures.first() {
        report.problem(format!("{} clients failed, first: {error}", failures.len()));
    }
    match end {
        DeliveryEnd::Complete => {}
        DeliveryEnd::Stalled => report.note("deliveries stalled after the last acknowledgement"),
        DeliveryEnd::TimedOut => report.problem(format!(
            "deliveries not complete within --timeout {:?}",
            ctx.common.timeout
        )),
    }
    close_all(clients).await;
    Ok(report)
}

/// Counters every client task updates.
struct Shared {
    /// Deliveries so far, for progress and completion.
    delivered: Arc<AtomicU64>,
    /// Clients whose publishes are not all answered yet.
    publishers_left: Arc<AtomicU64>,
}

/// One client: publishes its outbox while reading its inbox, until both are complete or the run
/// stops.
async fn pubsub(
    mut client: Client,
    mut inbox: Inbox,
    mut outbox: Outbox,
    shared: Shared,
    mut stopped: watch::Receiver<bool>,
) -> (Client, Inbox, Outbox, Option<ClientError>) {
    let mut unreported = 0;
    let mut publishing = true;
    let result: Result<(), ClientError> = async {
        loop {
            outbox.fill(&mut client).await?;
            if publishing && outbox.is_done() {
                publishing = false;
                shared.publishers_left.fetch_sub(1, Ordering::Relaxed);
            }
            if !publishing && inbox.is_complete() {
                return Ok(());
            }
            let frame = tokio::select! {
                biased;
                frame = client.recv() => frame?,
                _ = stopped.changed() => return Ok(()),
            };
            if let Frame::Packets(packets) = frame {
                for packet in &packets {
                    if inbox.take(packet) {
                        unreported += 1;
                    } else {
                        outbox.take(&mut client, packet);
                    }
                }
            }
            if unreported >= COUNTER_BATCH {
                shared.delivered.fetch_add(unreported, Ordering::Relaxed);
                unreported = 0;
            }
        }
    }
    .await;
    shared.delivered.fetch_add(unreported, Ordering::Relaxed);
    if publishing {
        shared.publishers_left.fetch_sub(1, Ordering::Relaxed);
    }
    (client, inbox, outbox, result.err())
}
