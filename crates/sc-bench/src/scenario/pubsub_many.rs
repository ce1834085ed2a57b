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
    Context, Deliveries, DeliveryRun, Inbox, InboxTotals, Outbox, close_all, random_channel,
};
use crate::cli::PubsubManyArgs;
use crate::client::{Client, ClientError, Heartbeats};
use crate::report::Report;

/// Runs the scenario: connect, deliver, report.
pub async fn run(ctx: &Context, args: &PubsubManyArgs) -> anyhow::Result<Report> {
    let channels = Channels(Arc::from(random_channel()));
    let clients = connect(ctx, args, &channels).await?;
    let outcome = deliver(ctx, args, &channels, clients).await?;
    let report = report(ctx, args, &outcome);
    close_all(outcome.clients).await;
    Ok(report)
}

/// The channels of a run: client `i` subscribes to `<prefix>-i`.
#[derive(Clone)]
struct Channels(Arc<str>);

impl Channels {
    /// The channel of client `i`.
    fn of(&self, i: u64) -> Arc<str> {
        Arc::from(format!("{}-{i}", self.0))
    }
}

/// Opens the clients, each subscribed to its own channel.
async fn connect(
    ctx: &Context,
    args: &PubsubManyArgs,
    channels: &Channels,
) -> anyhow::Result<Vec<Client>> {
    let channels = channels.clone();
    ctx.open_many(args.clients, 0, "subscribing", move |index, mut client| {
        let channel = channels.of(index);
        async move {
            client.subscribe(&channel).await?;
            Ok(client)
        }
    })
    .await
}

/// What the delivery step measured.
struct Outcome {
    clients: Vec<Client>,
    /// Every client's publishing, merged (`None` without clients).
    published: Option<Outbox>,
    /// Every client's receiving.
    deliveries: Deliveries,
}

/// Every client publishes to its neighbour's channel while reading its own, until every
/// delivery arrived, they stall, or `--timeout` runs out; then stops and collects the clients.
async fn deliver(
    ctx: &Context,
    args: &PubsubManyArgs,
    channels: &Channels,
    clients: Vec<Client>,
) -> anyhow::Result<Outcome> {
    let mut run = DeliveryRun::start(ctx);
    let publishers_left = Arc::new(AtomicU64::new(args.clients));
    let tasks: Vec<_> = (0..args.clients)
        .zip(clients)
        .map(|(i, client)| {
            let inbox = Inbox::new(channels.of(i), args.messages, &run.latency);
            let neighbour = channels.of((i + 1) % args.clients);
            let outbox = Outbox::new(&neighbour, args.messages, args.size, args.window);
            let shared = Shared {
                delivered: run.delivered.clone(),
                publishers_left: publishers_left.clone(),
            };
            tokio::spawn(pubsub(client, inbox, outbox, shared, run.stopped.clone()))
        })
        .collect();
    let publishing_done = || publishers_left.load(Ordering::Relaxed) == 0;
    run.wait(ctx, args.clients * args.messages, publishing_done)
        .await;

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
    Ok(Outcome {
        clients,
        published,
        deliveries: run.finish(totals, heartbeats, failures),
    })
}

/// The report of a run.
fn report(ctx: &Context, args: &PubsubManyArgs, outcome: &Outcome) -> Report {
    let mut report = Report::new("pubsub-many");
    ctx.report_settings(&mut report);
    report.count("clients", "clients", args.clients);
    report.count("messages", "messages per client", args.messages);
    report.count("size", "payload bytes", args.size as u64);
    report.count("window", "publish window", args.window);
    let start = outcome
        .published
        .as_ref()
        .and_then(|p| p.first_publish)
        .unwrap_or_else(Instant::now);
    let deliveries = &outcome.deliveries;
    deliveries.totals.report_rate(&mut report, start);
    deliveries.report_measures(ctx, &mut report);

    if let Some(published) = &outcome.published {
        published.report_problems("publishers", &mut report);
    }
    deliveries.report_failures(ctx, &mut report, "clients");
    report
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
