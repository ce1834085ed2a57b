//! End-to-end runs of the `sc-bench` binary against a small in-process SocketCluster server, one
//! that behaves and one that duplicates or drops messages, to check the verdicts and exit codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sc_protocol::frame::PublishData;
use sc_protocol::{Frame, Packet, Publication, encode};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_websockets::{Message, ServerBuilder};

/// How the fake server treats publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Every 10th publication is delivered twice.
    Duplicate,
    /// Every 10th publication is not delivered at all.
    Drop,
}

type Subscribers = Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Bytes>>>>>;

/// Starts the fake server on an ephemeral loopback port, on its own thread.
fn start_server(fault: Fault) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let subscribers = Subscribers::default();
            let published = Arc::new(AtomicU64::new(0));
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(stream, fault, subscribers.clone(), published.clone()));
            }
        });
    });
    rx.recv().unwrap()
}

/// One connection: the handshake (followed by one v2 ping), `#subscribe`, `#publish`, `echo`.
async fn serve(
    stream: tokio::net::TcpStream,
    fault: Fault,
    subscribers: Subscribers,
    published: Arc<AtomicU64>,
) {
    let Ok((_, mut ws)) = ServerBuilder::new().accept(stream).await else {
        return;
    };
    let (deliver, mut deliveries) = mpsc::unbounded_channel::<Bytes>();
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            Some(frame) = deliveries.recv() => {
                if ws.send(Message::text(frame)).await.is_err() { return }
                continue;
            }
        };
        let Some(Ok(message)) = message else { return };
        if !message.is_text() {
            continue;
        }
        let Frame::Packets(packets) = Frame::decode_bytes(Bytes::from(message.into_payload()))
        else {
            continue;
        };
        for packet in packets {
            let Packet::Event(event) = packet else {
                continue;
            };
            let mut replies = Vec::new();
            match event.event.as_str() {
                "#handshake" => {
                    let data = r#"{"id":"fake","pingTimeout":20000,"isAuthenticated":false}"#;
                    replies.push(encode::response(event.cid.unwrap_or(0), Some(data)));
                    replies.push(Bytes::new());
                }
                "#subscribe" => {
                    let data = event
                        .data
                        .as_ref()
                        .and_then(|d| d.parse::<serde_json::Value>().ok());
                    let channel = data
                        .as_ref()
                        .and_then(|d| d["channel"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    subscribers
                        .lock()
                        .unwrap()
                        .entry(channel)
                        .or_default()
                        .push(deliver.clone());
                    replies.push(encode::response(event.cid.unwrap_or(0), None));
                }
                "#publish" => {
                    let publish = PublishData::parse(event.data.as_ref()).unwrap();
                    let frame = Publication::new(&publish.channel, publish.data.as_ref())
                        .frame()
                        .clone();
                    let n = published.fetch_add(1, Ordering::Relaxed);
                    let copies = match fault {
                        Fault::Duplicate if n % 10 == 9 => 2,
                        Fault::Drop if n % 10 == 9 => 0,
                        _ => 1,
                    };
                    for subscriber in subscribers
                        .lock()
                        .unwrap()
                        .get(&publish.channel)
                        .into_iter()
                        .flatten()
                    {
                        for _ in 0..copies {
                            let _ = subscriber.send(frame.clone());
                        }
                    }
                    replies.push(encode::response(event.cid.unwrap_or(0), None));
                }
                "echo" => replies.push(encode::response(
                    event.cid.unwrap_or(0),
                    event.data.as_ref().map(|d| d.get()),
                )),
                _ => {}
            }
            for reply in replies {
                if ws.send(Message::text(reply)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `sc-bench <args> --url <server> --json --quiet` and returns its output and JSON result.
fn bench(addr: SocketAddr, args: &[&str]) -> (Output, serde_json::Value) {
    let url = format!("ws://{addr}/socketcluster/");
    let output = Command::new(env!("CARGO_BIN_EXE_sc-bench"))
        .args(args)
        .args(["--url", &url, "--json", "--quiet", "--timeout", "20s"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (output, json)
}

#[test]
fn fanout_against_a_correct_server_is_valid() {
    let addr = start_server(Fault::None);
    let (output, json) = bench(
        addr,
        &[
            "fanout", "-c", "5", "-m", "200", "--window", "8", "--size", "100",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json["valid"], true);
    assert_eq!(json["received"], 1000);
    assert_eq!(json["lost"], 0);
    assert!(json["delivered_per_s"].as_f64().unwrap() > 0.0);
    assert!(
        json["pings"].as_u64().unwrap() >= 6,
        "handshake pings are answered: {json}"
    );
}

#[test]
fn duplicates_make_the_run_invalid() {
    let addr = start_server(Fault::Duplicate);
    let (output, json) = bench(addr, &["fanout", "-c", "3", "-m", "95"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json["valid"], false);
    assert_eq!(
        json["duplicated"], 27,
        "publishes 9, 19 … 89 twice to 3 subscribers"
    );
    assert_eq!(json["lost"], 0);
    assert!(String::from_utf8_lossy(&output.stderr).contains("INVALID"));
}

#[test]
fn losses_make_the_run_invalid() {
    let addr = start_server(Fault::Drop);
    let (output, json) = bench(addr, &["pubsub-many", "-n", "4", "-m", "10"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json["lost"], 4);
    assert_eq!(json["expected"], 40);
}

#[test]
fn rpc_conns_and_pubsub_many_are_valid() {
    let addr = start_server(Fault::None);
    let (output, json) = bench(addr, &["rpc", "-k", "3", "-t", "300ms"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(json["requests"].as_u64().unwrap() > 0);
    assert_eq!(json["mismatched"], 0);

    let (output, json) = bench(
        addr,
        &[
            "conns",
            "-n",
            "50",
            "--concurrency",
            "10",
            "--pid",
            &std::process::id().to_string(),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json["pinged"], 50);
    assert!(json["server_rss_after_bytes"].as_u64().unwrap() > 0);

    let (output, json) = bench(
        addr,
        &[
            "--protocol-version",
            "1",
            "pubsub-many",
            "-n",
            "10",
            "-m",
            "30",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json["received"], 300);
    assert!(
        json["notes"].to_string().contains("dialect"),
        "a v2 ping is reported under v1: {json}"
    );
}

#[test]
fn unreachable_target_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (output, _) = bench(addr, &["rpc", "-k", "1", "-t", "1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}

/// Starts `sc-bench <args> --url <server> --json --quiet` without waiting for it.
fn spawn_bench(addr: SocketAddr, args: &[&str]) -> std::process::Child {
    let url = format!("ws://{addr}/socketcluster/");
    Command::new(env!("CARGO_BIN_EXE_sc-bench"))
        .args(args)
        .args(["--url", &url, "--json", "--quiet", "--timeout", "20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The exit status and JSON result of a spawned run.
fn finish(child: std::process::Child) -> (Output, serde_json::Value) {
    let output = child.wait_with_output().unwrap();
    let json = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (output, json)
}

#[test]
fn conns_shards_meet_at_the_barrier_and_probes_arrive() {
    let addr = start_server(Fault::None);
    let barrier = std::env::temp_dir().join(format!(
        "sc-bench-barrier-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    let barrier = barrier.to_str().unwrap();
    let pid = std::process::id().to_string();
    let common = [
        "conns",
        "-n",
        "21",
        "--subscribe",
        "--hold",
        "1s",
        "--barrier",
        barrier,
        "--pid",
        &pid,
    ];
    let first = spawn_bench(
        addr,
        &[&common[..], &["--shard", "0/2", "--probe-rate", "40"]].concat(),
    );
    let second = spawn_bench(addr, &[&common[..], &["--shard", "1/2"]].concat());
    let (output, json) = finish(first);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(json["connections"], 11, "numbers 0, 2, … 20");
    assert_eq!(json["connections_all_shards"], 21);
    let sent = json["probes_sent"].as_u64().unwrap();
    assert!(sent >= 10, "40/s for a second: {json}");
    assert_eq!(json["probes_delivered"], sent);
    assert!(json["probe_latency_p99_ms"].as_f64().unwrap() > 0.0);
    assert!(json["server_idle_cores"].as_f64().is_some(), "{json}");
    let (output, json) = finish(second);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json["connections"], 10);
    assert!(json.get("probes_sent").is_none(), "only shard 0 probes");
    let _ = std::fs::remove_dir_all(barrier);
}

#[test]
fn conns_probe_losses_make_the_run_invalid() {
    let addr = start_server(Fault::Drop);
    let (output, json) = bench(
        addr,
        &[
            "conns",
            "-n",
            "5",
            "--subscribe",
            "--hold",
            "1s",
            "--probe-rate",
            "40",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json["valid"], false);
    assert!(
        json["problems"].to_string().contains("never arrived"),
        "{json}"
    );
}

/// A number that differs between test runs, for unique paths.
fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
