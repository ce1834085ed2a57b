//! Load while attacked (issue 12, proof 4): 50 normal clients run echo and pub/sub, first alone,
//! then while one client floods the server with `ping` events, publishes and WebSocket pings
//! from its own thread. The normal clients must lose nothing (every echo answered with its data,
//! every publication of their room received once, in each publisher's order) and nobody of them
//! may be disconnected. Echo latencies of both phases are printed (p50/p99), never asserted:
//! the figures go to docs/BENCHMARKS.md.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Client, Received, start_server, v2};
use futures_util::{SinkExt, StreamExt};
use sc_protocol::ScError;
use sc_server::{Request, Server};
use tokio::sync::Barrier;
use tokio_websockets::{ClientBuilder, Message};

const CLIENTS: usize = 50;
const ROOMS: usize = 5;
const ROUNDS: usize = 30;
/// No single wait of a normal client may take longer (only matters when the test fails).
const WAIT: Duration = Duration::from_secs(30);

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

/// One phase of one normal client: `ROUNDS` rounds of an echo (timed) and a publish to its room,
/// then every publication of its room. Returns the echo latencies.
async fn run_phase(client: &mut Client, me: usize, phase: usize) -> Result<Vec<Duration>, String> {
    let room = me % ROOMS;
    let members = CLIENTS / ROOMS;
    let mut latencies = Vec::with_capacity(ROUNDS);
    // Last round seen from each publisher of the room: each must arrive once, in order.
    let mut last: HashMap<u64, i64> = HashMap::new();
    let mut received = 0;
    let mut on_text = |text: &str, received: &mut usize| -> Result<(), String> {
        if !text.contains(&format!(r#""channel":"room{room}""#)) {
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let data = &value["data"]["data"];
        if data["phase"] != phase {
            return Err(format!(
                "client {me}: a publication of another phase: {text}"
            ));
        }
        let (from, round) = (
            data["from"].as_u64().unwrap_or(0),
            data["round"].as_i64().unwrap_or(-1),
        );
        let previous = last.entry(from).or_insert(-1);
        if round != *previous + 1 {
            return Err(format!(
                "client {me}: from {from} got round {round} after {previous}"
            ));
        }
        *previous = round;
        *received += 1;
        Ok(())
    };
    for round in 0..ROUNDS {
        let (echo_cid, publish_cid) = (10 + 2 * round, 11 + 2 * round);
        let started = Instant::now();
        client
            .send_text(&format!(
                r#"{{"event":"echo","data":{{"me":{me},"round":{round}}},"cid":{echo_cid}}}"#
            ))
            .await;
        client
            .send_text(&format!(
                r##"{{"event":"#publish","data":{{"channel":"room{room}","data":{{"from":{me},"round":{round},"phase":{phase}}}}},"cid":{publish_cid}}}"##
            ))
            .await;
        let (mut echoed, mut published) = (false, false);
        while !(echoed && published) {
            let text = match client.recv_within(WAIT).await {
                Some(Received::Text(text)) => text,
                other => return Err(format!("client {me} in round {round}: {other:?}")),
            };
            if text == format!(r#"{{"rid":{echo_cid},"data":{{"me":{me},"round":{round}}}}}"#) {
                latencies.push(started.elapsed());
                echoed = true;
            } else if text == format!(r#"{{"rid":{publish_cid}}}"#) {
                published = true;
            } else if text.starts_with(r#"{"rid":"#) {
                return Err(format!("client {me}: unexpected answer {text}"));
            } else {
                on_text(&text, &mut received)?;
            }
        }
    }
    while received < members * ROUNDS {
        match client.recv_within(WAIT).await {
            Some(Received::Text(text)) => on_text(&text, &mut received)?,
            other => {
                return Err(format!(
                    "client {me}: {received} of {} room messages, then {other:?}",
                    members * ROUNDS
                ));
            }
        }
    }
    Ok(latencies)
}

/// Floods from its own thread until `stop`: batches of `ping` events and of publishes, and
/// WebSocket pings; reads (and drops) whatever comes back. Returns how many frames it sent.
fn start_attacker(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let uri = format!("ws://{addr}/socketcluster/");
            let (ws, _) = ClientBuilder::new()
                .uri(&uri)
                .expect("uri")
                .connect()
                .await
                .expect("attacker connects");
            let (mut sink, mut stream) = ws.split();
            sink.send(Message::text(
                r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##.to_owned(),
            ))
            .await
            .expect("handshake");
            tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
            let pings = format!(
                "[{}]",
                vec![r#"{"event":"ping","data":{"some":"data"}}"#; 500].join(",")
            );
            let publishes = format!(
                "[{}]",
                vec![r##"{"event":"#publish","data":{"channel":"flood","data":"xxxxxxxxxxxxxxxx"}}"##; 500]
                    .join(",")
            );
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let frames = [
                    Message::text(pings.clone()),
                    Message::text(publishes.clone()),
                    Message::ping(&b"x"[..]),
                ];
                for frame in frames {
                    if sink.send(frame).await.is_err() {
                        return sent;
                    }
                    sent += 1;
                }
            }
            sent
        })
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_clients_lose_nothing_while_one_client_floods() {
    let ts = start_server(v2(), boilerplate_ping).await;
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let mut tasks = Vec::new();
    for me in 0..CLIENTS {
        let mut client = ts.client().await;
        client.subscribe(&format!("room{}", me % ROOMS), 2).await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut phases = Vec::new();
            for phase in 0..2 {
                barrier.wait().await;
                let latencies = run_phase(&mut client, me, phase).await;
                barrier.wait().await;
                phases.push(latencies?);
            }
            Ok::<_, String>((client, phases))
        }));
    }

    // Phase 0: unloaded.
    barrier.wait().await;
    barrier.wait().await;
    // Phase 1: attacked.
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = start_attacker(ts.addr, stop.clone());
    ts.eventually("the attacker is connected", |s| {
        s.clients_count() == CLIENTS + 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // the flood is under way
    barrier.wait().await;
    barrier.wait().await;
    stop.store(true, Ordering::Relaxed);
    let flood_frames = tokio::task::spawn_blocking(move || attacker.join().expect("attacker"))
        .await
        .expect("join");

    let mut unloaded = Vec::new();
    let mut attacked = Vec::new();
    let mut clients = Vec::new();
    for task in tasks {
        match task.await.expect("client task") {
            Ok((client, phases)) => {
                unloaded.extend_from_slice(&phases[0]);
                attacked.extend_from_slice(&phases[1]);
                clients.push(client);
            }
            Err(error) => panic!("a normal client lost out under attack: {error}"),
        }
    }
    assert!(
        ts.server.clients_count() >= CLIENTS,
        "no normal client was disconnected"
    );
    for client in &clients {
        assert!(
            ts.server.socket(client.id()).is_some(),
            "client {} still connected",
            client.id()
        );
    }
    unloaded.sort_unstable();
    attacked.sort_unstable();
    eprintln!(
        "echo latency, {} echoes per phase: unloaded p50 {:?} p99 {:?}; attacked p50 {:?} p99 {:?}; attacker sent {flood_frames} frames (500 events each, or a ping)",
        unloaded.len(),
        percentile(&unloaded, 0.5),
        percentile(&unloaded, 0.99),
        percentile(&attacked, 0.5),
        percentile(&attacked, 0.99),
    );
}
