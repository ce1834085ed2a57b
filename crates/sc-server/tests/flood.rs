//! Issue 12, defect 1: one client flooding events must not get other clients disconnected or make
//! unrelated channels lose messages; and `inboundHandlerLimit` bounds one socket's running
//! handlers, the server reading nothing more from that socket while every slot is taken.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Client, Received, TestServer, start_server, v2};
use sc_protocol::ScError;
use sc_server::{Reply, Request, Server, ServerOptions};
use tokio::sync::Semaphore;

/// The boilerplate's `ping`: every ping publishes the running count on `pong`.
fn boilerplate_ping(server: &Server) {
    let exchange = server.exchange();
    let count = Arc::new(AtomicU64::new(0));
    server
        .on("ping", move |_req: Request| {
            let (exchange, count) = (exchange.clone(), count.clone());
            async move {
                let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                exchange.publish("pong", &n).await.map_err(ScError::from)
            }
        })
        .unwrap();
}

/// Reads until `expected` publications on `channel` arrived; anything else but heartbeats and
/// other text frames (a close, the end) is an error, reported with the count so far.
async fn read_publications(
    mut client: Client,
    channel: &'static str,
    expected: usize,
) -> Result<Client, String> {
    let needle = format!(r#""channel":"{channel}""#);
    let mut count = 0;
    while count < expected {
        match client.recv_within(Duration::from_secs(30)).await {
            Some(Received::Text(text)) if text.contains(&needle) => count += 1,
            Some(Received::Text(_)) => {}
            other => {
                return Err(format!(
                    "after {count} of {expected} on {channel}: {other:?}"
                ));
            }
        }
    }
    Ok(client)
}

/// The issue's steps: an anonymous client sends 20,000 boilerplate `ping` events in 4 batch
/// frames while others read `pong`, and others publish and read another channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_neither_cuts_readers_nor_loses_other_channels_messages() {
    const BATCHES: usize = 4;
    const PER_BATCH: usize = 5_000;
    const NEWS: usize = 2_000;
    let ts = start_server(v2(), boilerplate_ping).await;

    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut client = ts.client().await;
        client.subscribe("pong", 2).await;
        readers.push(tokio::spawn(read_publications(
            client,
            "pong",
            BATCHES * PER_BATCH,
        )));
        let mut client = ts.client().await;
        client.subscribe("news", 2).await;
        readers.push(tokio::spawn(read_publications(client, "news", NEWS)));
    }

    let mut attacker = ts.client().await;
    let ping = r#"{"event":"ping","data":{"some":"data"}}"#;
    let batch = format!("[{}]", vec![ping; PER_BATCH].join(","));
    let mut publisher = ts.client().await;
    let publishing = tokio::spawn(async move {
        for i in 0..NEWS {
            publisher
                .send_text(&format!(
                    r##"{{"event":"#publish","data":{{"channel":"news","data":{i}}},"cid":{}}}"##,
                    i + 10
                ))
                .await;
        }
        let mut acks = 0;
        while acks < NEWS {
            match publisher.recv_within(Duration::from_secs(30)).await {
                Some(Received::Text(text)) if text.starts_with(r#"{"rid":"#) => {
                    assert!(!text.contains("error"), "publish refused: {text}");
                    acks += 1;
                }
                Some(Received::Text(_)) => {}
                other => panic!("publisher after {acks} acks: {other:?}"),
            }
        }
        publisher
    });
    for _ in 0..BATCHES {
        attacker.send_text(&batch).await;
    }
    attacker.expect_nothing_before_echo(99).await;

    let _publisher = publishing.await.expect("every publish acknowledged");
    let mut clients = Vec::new();
    for reader in readers {
        match reader.await.expect("reader task") {
            Ok(client) => clients.push(client),
            Err(error) => panic!("a reader that keeps up lost out: {error}"),
        }
    }
    assert_eq!(ts.server.clients_count(), 10, "nobody was disconnected");
}

/// `inboundHandlerLimit` handlers at most run at once per socket; while every slot is taken the
/// socket's next events wait (an `echo` sent after them is answered only once a slot frees).
#[tokio::test]
async fn handlers_in_flight_are_bounded_per_socket_and_reading_waits_for_a_slot() {
    const LIMIT: usize = 2;
    let gate = Arc::new(Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let options = ServerOptions {
        inbound_handler_limit: LIMIT,
        ..v2()
    };
    let ts: TestServer = start_server(options, |server| {
        let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
        server
            .on("slow", move |req: Request| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    gate.acquire().await.expect("gate open").forget();
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ScError>(Reply::from(req.data().cloned()))
                }
            })
            .unwrap();
    })
    .await;
    let mut client = ts.client().await;
    for i in 0..5 {
        client
            .send_text(&format!(
                r#"{{"event":"slow","data":{i},"cid":{}}}"#,
                i + 10
            ))
            .await;
    }
    client
        .send_text(r#"{"event":"echo","data":"after","cid":2}"#)
        .await;
    // Two handlers run; the third waits for a slot, and so does everything read after it.
    assert_eq!(client.recv_within(Duration::from_millis(300)).await, None);
    assert_eq!(running.load(Ordering::SeqCst), LIMIT);

    // Each finished handler frees a slot for the next: three finish, the last two take the
    // slots, and the echo still waits for one.
    gate.add_permits(3);
    let mut answers = client.recv_texts(3).await;
    answers.sort();
    assert_eq!(
        answers,
        [
            r#"{"rid":10,"data":0}"#,
            r#"{"rid":11,"data":1}"#,
            r#"{"rid":12,"data":2}"#
        ]
    );
    assert_eq!(client.recv_within(Duration::from_millis(300)).await, None);
    gate.add_permits(2);
    let rest = client.recv_texts(3).await;
    assert_ne!(
        rest[0], r#"{"rid":2,"data":"after"}"#,
        "the echo waited for a slot"
    );
    let mut rest = rest;
    rest.sort();
    assert_eq!(
        rest,
        [
            r#"{"rid":13,"data":3}"#,
            r#"{"rid":14,"data":4}"#,
            r#"{"rid":2,"data":"after"}"#
        ]
    );
    assert_eq!(
        most.load(Ordering::SeqCst),
        LIMIT,
        "never more than the limit at once"
    );
}

/// The number after `"n":` in a delivery.
fn sequence_number(text: &str) -> usize {
    let rest = &text[text.find(r#""n":"#).expect("a numbered delivery") + 4..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().expect("a number")
}

/// A subscriber that reads more slowly than two publishers publish (a client's `#publish` and the
/// server's `exchange.publish`), but keeps reading, is not cut off as a slow consumer even with a
/// small outbound queue: every publish waits while the subscriber is half a queue behind. It gets
/// every publication in order, every publish succeeds, and nobody is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_that_keeps_reading_paces_the_publishers_and_is_not_cut_off() {
    const LIMIT: usize = 16;
    const EACH: usize = 300;
    let ts = start_server(
        ServerOptions {
            outbound_queue_limit: LIMIT,
            ..v2()
        },
        |_| {},
    )
    .await;
    let mut reader = ts.client().await;
    reader.subscribe("big", 2).await;
    // 64 KiB each: the loopback buffers hold only a few dozen, the rest waits in the queue.
    let padding = "x".repeat(64 * 1024);

    let exchange = ts.server.exchange();
    let pad = padding.clone();
    let server_side = tokio::spawn(async move {
        for n in 0..EACH {
            let data = sc_protocol::Json::from_text(&format!(
                r#"{{"from":"server","n":{n},"p":"{pad}"}}"#
            ))
            .unwrap();
            exchange
                .publish_json("big", Some(&data))
                .await
                .expect("a paced publish still succeeds");
        }
    });
    let mut publisher = ts.client().await;
    let client_side = tokio::spawn(async move {
        for n in 0..EACH {
            publisher
                .send_text(&format!(
                    r##"{{"event":"#publish","data":{{"channel":"big","data":{{"from":"client","n":{n},"p":"{padding}"}}}},"cid":{}}}"##,
                    n + 10
                ))
                .await;
        }
        let mut acks = 0;
        while acks < EACH {
            match publisher.recv_within(Duration::from_secs(30)).await {
                Some(Received::Text(text)) if text.starts_with(r#"{"rid":"#) => {
                    assert!(!text.contains("error"), "publish refused: {text}");
                    acks += 1;
                }
                Some(Received::Text(_)) => {}
                other => panic!("publisher after {acks} acks: {other:?}"),
            }
        }
        publisher
    });

    // About a millisecond per publication: far slower than the publishers.
    let mut next = [0; 2];
    while next[0] + next[1] < 2 * EACH {
        match reader.recv_within(Duration::from_secs(30)).await {
            Some(Received::Text(text)) if text.contains(r#""channel":"big""#) => {
                let from = usize::from(text.contains(r#""from":"client""#));
                assert_eq!(
                    sequence_number(&text),
                    next[from],
                    "each publisher's publications arrive in order, none lost"
                );
                next[from] += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Some(Received::Text(_)) => {}
            other => panic!("the reader was cut off after {next:?}: {other:?}"),
        }
    }
    server_side.await.expect("server-side publisher");
    let _publisher = client_side.await.expect("client publisher");
    assert_eq!(ts.server.clients_count(), 2, "nobody was disconnected");
}
