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

/// Connects a raw WebSocket client and handshakes.
async fn raw_client(
    cluster: &Instance,
) -> tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut ws, _) = ClientBuilder::new()
        .uri(&cluster.url())
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    ws.send(Message::text(
        r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##.to_owned(),
    ))
    .await
    .expect("handshake");
    ws
}

/// The number after `"n":` in a delivery.
fn sequence_number(text: &str) -> usize {
    let rest = &text[text.find(r#""n":"#).expect("a numbered delivery") + 4..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().expect("a number")
}

/// The worker is the solo subscriber of `big`, so its publications never cross the broker: a
/// publishing client that is far faster than the only reader is slowed down to that reader's pace
/// (the local path's backpressure), instead of getting a reader that keeps reading cut off as a
/// slow consumer. Every publication arrives in order and every publish is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_channel_paces_its_publisher_to_a_slow_reader() {
    const EACH: usize = 300;
    let cluster = Instance::start(&[
        "--workers",
        "1",
        "--brokers",
        "1",
        "--outbound-queue-limit",
        "16",
    ]);
    let mut reader = raw_client(&cluster).await;
    reader
        .send(Message::text(
            r##"{"event":"#subscribe","data":{"channel":"big"},"cid":2}"##.to_owned(),
        ))
        .await
        .expect("subscribe");
    let subscribed = timeout(WAIT, async {
        while let Some(Ok(message)) = reader.next().await {
            if message.as_text() == Some(r#"{"rid":2}"#) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(subscribed, Ok(true), "subscribed");

    let mut publisher = raw_client(&cluster).await;
    let publishing = tokio::spawn(async move {
        // 64 KiB each: the loopback buffers hold only a few dozen, the rest waits in the queue.
        let padding = "x".repeat(64 * 1024);
        for n in 0..EACH {
            let publish = format!(
                r##"{{"event":"#publish","data":{{"channel":"big","data":{{"n":{n},"p":"{padding}"}}}},"cid":{}}}"##,
                n + 10
            );
            publisher
                .send(Message::text(publish))
                .await
                .expect("publish");
        }
        let mut acks = 0;
        while acks < EACH {
            match timeout(WAIT, publisher.next()).await {
                Ok(Some(Ok(message))) => {
                    let text = message.as_text().unwrap_or_default();
                    // Not the handshake's answer (`{"rid":1,"data":…}`).
                    if text.starts_with(r#"{"rid":"#) && !text.starts_with(r#"{"rid":1,"#) {
                        assert!(!text.contains("error"), "publish refused: {text}");
                        acks += 1;
                    }
                }
                other => panic!("publisher after {acks} acks: {other:?}"),
            }
        }
        publisher
    });

    // About a millisecond per publication: far slower than the publisher.
    let mut next = 0;
    while next < EACH {
        match timeout(WAIT, reader.next()).await {
            Ok(Some(Ok(message))) => {
                let text = message.as_text().unwrap_or_default();
                if text.contains(r#""channel":"big""#) {
                    assert_eq!(sequence_number(text), next, "in order, none lost");
                    next += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            other => panic!("the reader was cut off after {next} publications: {other:?}"),
        }
    }
    let _publisher = publishing.await.expect("publisher task");
    let health = cluster.health();
    assert_eq!(health["clients"], 2, "nobody was disconnected: {health}");
}
