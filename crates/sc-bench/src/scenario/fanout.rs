//! `fanout`: C subscribers on one channel, one publisher publishing M messages with acks and a
//! bounded in-flight window. Measures delivered messages per second (all deliveries over the time
//! from the first publish to the last delivery), end-to-end latency, and per-subscriber
//! correctness. With `--publish-url` the publisher connects to another instance than the
//! subscribers, so that every message crosses the instances' shared engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sc_protocol::Frame;
use tokio::sync::watch;

use super::{
    Context, Deliveries, DeliveryRun, Inbox, InboxTotals, Outbox, close_all, random_channel,
};
use crate::cli::FanoutArgs;
use crate::client::{Client, ClientError};
use crate::report::Report;
use crate::stats::rate;

/// Deliveries a receiver counts locally before adding them to the shared progress counter.
pub(crate) const COUNTER_BATCH: u64 = 256;

/// Runs the scenario; `name` is the scenario's name in the report (`fanout`, `fanout-small`).
/// Steps: connect, deliver, report.
pub async fn run(ctx: &Context, args: &FanoutArgs, name: &'static str) -> anyhow::Result<Report> {
    let connected = connect(ctx, args).await?;
    let outcome = deliver(ctx, args, connected).await?;
    let report = report(ctx, args, name, &outcome);
    close_all(outcome.clients).await;
    Ok(report)
}

/// The clients of a run, connected and subscribed.
struct Connected {
    channel: Arc<str>,
    publisher: Client,
    subscribers: Vec<Client>,
}

/// Connects the publisher (to `--publish-url` if given) and the subscribers, each subscribed to
/// the channel.
async fn connect(ctx: &Context, args: &FanoutArgs) -> anyhow::Result<Connected> {
    let channel: Arc<str> = Arc::from(args.channel.clone().unwrap_or_else(random_channel));
    let publisher = match &args.publish_url {
        Some(url) => ctx.connect_to(url, 0).await?,
        None => ctx.connect(0).await?,
    };
    let subscribe_to = channel.clone();
    let subscribers = ctx
        .open_many(args.subscribers, 1, "subscribing", move |_, mut client| {
            let channel = subscribe_to.clone();
            async move {
                client.subscribe(&channel).await?;
                Ok(client)
            }
        })
        .await?;
    Ok(Connected {
        channel,
        publisher,
        subscribers,
    })
}

/// What the delivery step measured.
struct Outcome {
    /// Every client, the publisher first.
    clients: Vec<Client>,
    /// The publisher's side: first publish, acknowledgements, problems.
    outbox: Outbox,
    publish_error: Option<ClientError>,
    /// The subscribers' side.
    deliveries: Deliveries,
    /// Frame payload bytes the subscribers received.
    bytes_in: u64,
}

/// Publishes every message while the subscribers receive, until every delivery arrived, they
/// stall, or `--timeout` runs out; then stops and collects every client.
async fn deliver(
    ctx: &Context,
    args: &FanoutArgs,
    connected: Connected,
) -> anyhow::Result<Outcome> {
    let Connected {
        channel,
        publisher,
        subscribers,
    } = connected;
    let mut run = DeliveryRun::start(ctx);
    let receivers: Vec<_> = subscribers
        .into_iter()
        .map(|client| {
            let inbox = Inbox::new(channel.clone(), args.messages, &run.latency);
            tokio::spawn(receive(
                client,
                inbox,
                run.delivered.clone(),
                run.stopped.clone(),
            ))
        })
        .collect();
    let outbox = Outbox::new(&channel, args.messages, args.size, args.window).with_rate(args.rate);
    let publishing = tokio::spawn(publish(publisher, outbox, run.stopped.clone()));
    run.wait(ctx, args.subscribers * args.messages, || {
        publishing.is_finished()
    })
    .await;

    let (publisher, outbox, publish_error) = publishing.await?;
    let mut totals = InboxTotals::default();
    let mut heartbeats = publisher.heartbeats();
    let mut bytes_in = 0;
    let mut failures = Vec::new();
    let mut clients = vec![publisher];
    for receiver in receivers {
        let (client, inbox, error) = receiver.await?;
        totals.add(inbox);
        heartbeats.add(client.heartbeats());
        bytes_in += client.bytes_in();
        failures.extend(error);
        clients.push(client);
    }
    Ok(Outcome {
        clients,
        outbox,
        publish_error,
        deliveries: run.finish(totals, heartbeats, failures),
        bytes_in,
    })
}

/// The report of a run.
fn report(ctx: &Context, args: &FanoutArgs, name: &'static str, outcome: &Outcome) -> Report {
    let Outcome {
        outbox, deliveries, ..
    } = outcome;
    let totals = &deliveries.totals;
    let mut report = Report::new(name);
    ctx.report_settings(&mut report);
    if let Some(url) = &args.publish_url {
        report.text("publish_url", "publisher target", url);
    }
    report.count("subscribers", "subscribers", args.subscribers);
    report.count("messages", "messages published", args.messages);
    report.count("size", "payload bytes", args.size as u64);
    report.count("window", "publish window", args.window);
    if let Some(rate) = args.rate {
        report.text("rate", "publishes per second", &rate.to_string());
    }
    let start = outbox.first_publish.unwrap_or_else(Instant::now);
    totals.report_rate(&mut report, start);
    report.text("codec", "codec", &ctx.common.codec.to_string());
    let delivered = totals.correctness.received.max(1);
    report.count(
        "wire_bytes_per_delivery",
        "subscriber bytes in per delivery (frame payloads)",
        outcome.bytes_in / delivered,
    );
    let publish_time = outbox
        .last_ack
        .map(|last| last.duration_since(start))
        .unwrap_or_default();
    report.rate(
        "publish_acked_per_s",
        "publishes acked",
        rate(outbox.acked, publish_time),
        "msg",
    );
    deliveries.report_measures(ctx, &mut report);

    outbox.report_problems("publisher", &mut report);
    if let Some(error) = &outcome.publish_error {
        report.problem(format!("publisher: {error}"));
    }
    deliveries.report_failures(ctx, &mut report, "subscribers");
    report
}

/// Publishes every message of `outbox`, then hands everything back.
async fn publish(
    mut client: Client,
    mut outbox: Outbox,
    mut stopped: watch::Receiver<bool>,
) -> (Client, Outbox, Option<ClientError>) {
    let result: Result<(), ClientError> = async {
        loop {
            outbox.fill(&mut client).await?;
            if outbox.is_done() {
                return Ok(());
            }
            let due = outbox.next_due();
            let frame = tokio::select! {
                biased;
                frame = client.recv() => frame?,
                _ = stopped.changed() => return Ok(()),
                () = sleep_until(due) => continue,
            };
            if let Frame::Packets(packets) = frame {
                for packet in &packets {
                    outbox.take(&mut client, packet);
                }
            }
        }
    }
    .await;
    (client, outbox, result.err())
}

/// Sleeps until `due`; never returns without one.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads deliveries into `inbox` until it is complete or the run stops.
async fn receive(
    mut client: Client,
    mut inbox: Inbox,
    delivered: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) -> (Client, Inbox, Option<ClientError>) {
    let mut unreported = 0;
    let mut error = None;
    while !inbox.is_complete() {
        let frame = tokio::select! {
            biased;
            frame = client.recv() => frame,
            _ = stopped.changed() => break,
        };
        match frame {
            Ok(Frame::Packets(packets)) => {
                for packet in &packets {
                    unreported += u64::from(inbox.take(packet));
                }
            }
            Ok(_) => {}
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        if unreported >= COUNTER_BATCH {
            delivered.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
        }
    }
    delivered.fetch_add(unreported, Ordering::Relaxed);
    (client, inbox, error)
}
