//! `recovery-storm`: N clients subscribe to a channel with history and note its position,
//! disconnect; M messages are published; then all N reconnect at once and subscribe with
//! `recover` (EXTENSIONS.md E3). Measures the time until every client has its M messages and a
//! `recovered: true` acknowledgement, and (with `--pid`) the server's CPU over that storm.

use std::time::Instant;

use sc_protocol::{Frame, Packet};

use super::{Context, close_all};
use crate::cli::RecoveryStormArgs;
use crate::client::{Client, ClientError};
use crate::report::Report;
use crate::stats::rate;
use crate::sys::CpuMeter;

/// Runs the scenario.
pub async fn run(ctx: &Context, args: &RecoveryStormArgs) -> anyhow::Result<Report> {
    let mut publisher = ctx.connect(0).await?;
    let channel = args.channel.clone();
    let subscribe = format!(r#"{{"channel":{}}}"#, serde_json::to_string(&channel)?);
    // Where the channel is before the outage (every client starts from here).
    let ack = publisher.call("#subscribe", &subscribe).await?;
    let start: serde_json::Value = ack
        .data
        .as_ref()
        .map(|d| d.parse())
        .transpose()?
        .unwrap_or_default();
    let (Some(offset), Some(epoch)) = (start["offset"].as_u64(), start["epoch"].as_str()) else {
        anyhow::bail!(
            "{channel} keeps no history on this server (no position in the subscribe ack)"
        );
    };
    let recover = format!(
        r#"{{"channel":{},"data":{{"recover":{{"offset":{offset},"epoch":{}}}}}}}"#,
        serde_json::to_string(&channel)?,
        serde_json::to_string(epoch)?
    );
    publisher
        .call("#unsubscribe", &serde_json::to_string(&channel)?)
        .await?;
    let payload = format!(r#""{}""#, "x".repeat(args.size));
    let publish = format!(
        r#"{{"channel":{},"data":{payload}}}"#,
        serde_json::to_string(&channel)?
    );
    for _ in 0..args.messages {
        publisher.call("#publish", &publish).await?;
    }

    let server_before = ctx.server_cpu();
    let cpu = CpuMeter::start();
    let started = Instant::now();
    let recovered = ctx
        .open_many(args.clients, 1, "recovering", move |_, client| {
            let recover = recover.clone();
            async move { recover_all(client, &recover).await }
        })
        .await?;
    let elapsed = started.elapsed();
    let cpu = cpu.finish();

    let mut report = Report::new("recovery-storm");
    ctx.report_settings(&mut report);
    report.text("channel", "channel", &channel);
    report.count("clients", "clients", args.clients);
    report.count("messages", "messages missed (each)", args.messages);
    report.count("size", "payload bytes", args.size as u64);
    let mut total = 0;
    let mut clients = vec![publisher];
    let mut short = 0;
    let mut not_recovered = 0;
    for (client, got, flag) in recovered {
        total += got;
        short += u64::from(got != args.messages);
        not_recovered += u64::from(!flag);
        clients.push(client);
    }
    report.duration("elapsed_s", "reconnect → all recovered", elapsed);
    report.rate("replayed_per_s", "replayed", rate(total, elapsed), "msg");
    report.count("replayed", "publications replayed", total);
    report.cpu(&cpu);
    ctx.report_server_cpu(&mut report, server_before, total, "replayed");
    if short > 0 {
        report.problem(format!(
            "{short} clients did not get exactly {} messages",
            args.messages
        ));
    }
    if not_recovered > 0 {
        report.problem(format!(
            "{not_recovered} clients were told recovered: false"
        ));
    }
    close_all(clients).await;
    Ok(report)
}

/// Subscribes with `recover` and counts the replayed publications up to the acknowledgement.
async fn recover_all(
    mut client: Client,
    recover: &str,
) -> Result<(Client, u64, bool), ClientError> {
    let cid = client.feed_invoke("#subscribe", recover).await?;
    client.flush().await?;
    let mut got = 0;
    loop {
        let Frame::Packets(packets) = client.recv().await? else {
            continue;
        };
        for packet in packets {
            match packet {
                Packet::Event(event) if event.event == "#publish" => got += 1,
                Packet::Response(response) if response.rid == cid => {
                    client.settle(cid);
                    if let Some(error) = response.error {
                        return Err(ClientError::Failed {
                            event: "#subscribe".into(),
                            error: error.get().to_owned(),
                        });
                    }
                    let recovered = response
                        .data
                        .as_ref()
                        .is_some_and(|d| d.get().contains(r#""recovered":true"#));
                    return Ok((client, got, recovered));
                }
                _ => {}
            }
        }
    }
}
