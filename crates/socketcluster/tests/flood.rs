//! Issue 12, defect 1, in a real cluster (master, a worker and a broker process): an anonymous
//! client sends 20,000 boilerplate `ping` events in 4 batch frames. Every `pong` reader must get
//! every count without being cut off, readers of another channel must lose nothing, and the
//! publishes of a legitimate client must all succeed (no "broker unavailable").

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Instance, client_options};
use futures_util::{SinkExt, StreamExt};
use sc_client::Client;
use tokio::time::timeout;
use tokio_websockets::{ClientBuilder, Message};

const BATCHES: usize = 4;
const PER_BATCH: usize = 5_000;
const NEWS: usize = 1_000;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_cuts_no_reader_and_loses_nothing_across_processes() {
    let cluster = Instance::start(&["--workers", "1", "--brokers", "1"]);
    let mut readers = Vec::new();
    for channel in ["pong", "pong", "news", "news"] {
        let client = Client::connect(&cluster.url(), client_options())
            .await
            .expect("connect");
        let mut messages = client.subscribe(channel).await.expect("subscribe");
        let expected = if channel == "pong" {
            BATCHES * PER_BATCH
        } else {
            NEWS
        };
        readers.push(tokio::spawn(async move {
            let mut seen = HashSet::new();
            while seen.len() < expected {
                match timeout(WAIT, messages.next()).await {
                    Ok(Some(data)) => {
                        seen.insert(data.get().to_owned());
                    }
                    other => {
                        return Err(format!(
                            "{channel}: {} of {expected}, then {other:?}",
                            seen.len()
                        ));
                    }
                }
            }
            Ok(client)
        }));
    }

    let publisher = Client::connect(&cluster.url(), client_options())
        .await
        .expect("connect");
    let publishing = tokio::spawn(async move {
        for i in 0..NEWS {
            if let Err(error) = publisher.invoke_publish("news", i).await {
                return Err(format!("publish {i} failed: {error}"));
            }
        }
        Ok(publisher)
    });

    let (mut attacker, _) = ClientBuilder::new()
        .uri(&cluster.url())
        .expect("uri")
        .connect()
        .await
        .expect("attacker connects");
    attacker
        .send(Message::text(
            r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##.to_owned(),
        ))
        .await
        .expect("handshake");
    let batch = format!(
        "[{}]",
        vec![r#"{"event":"ping","data":{"some":"data"}}"#; PER_BATCH].join(",")
    );
    for _ in 0..BATCHES {
        attacker
            .send(Message::text(batch.clone()))
            .await
            .expect("flood");
    }
    attacker
        .send(Message::text(
            r#"{"event":"echo","data":"done","cid":2}"#.to_owned(),
        ))
        .await
        .expect("echo");
    let echoed = timeout(WAIT, async {
        while let Some(Ok(message)) = attacker.next().await {
            if message.as_text() == Some(r#"{"rid":2,"data":"done"}"#) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(echoed, Ok(true), "the flooding client is served in order");

    let _publisher = publishing
        .await
        .expect("publisher task")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut clients = Vec::new();
    for reader in readers {
        match reader.await.expect("reader task") {
            Ok(client) => clients.push(client),
            Err(error) => panic!("a reader that keeps up lost out: {error}"),
        }
    }
    let health = cluster.health();
    assert_eq!(
        health["clients"], 6,
        "all six clients still connected: {health}"
    );
}
