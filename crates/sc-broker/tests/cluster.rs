//! The process cluster's worker ↔ broker link over real Unix sockets, brokers running in-process
//! as tasks. Every wait is bounded.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use sc_broker::process::protocol::{BrokerMessage, WorkerMessage, codec, solo_reply};
use sc_broker::process::{BrokerLinkConfig, BrokerServer, ClusterBroker, MapIndex, MessageHandler};
use sc_broker::{
    BoxFuture, Broker, BrokerError, DeliverySink, KvCommand, KvStore, MemoryBroker, MemoryKv,
    PublishDone, PublishStart,
};
use sc_protocol::{Json, Publication};
use sc_test_support::wait::eventually;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::Framed;

const WAIT: Duration = Duration::from_secs(5);

/// A fresh directory for broker sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sc-cluster-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn socket(&self, index: usize) -> PathBuf {
        self.0.join(format!("b{index}"))
    }

    fn sockets(&self, n: usize) -> Vec<PathBuf> {
        (0..n).map(|i| self.socket(i)).collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Collects deliveries into a channel the test reads with timeouts.
struct Collect(mpsc::UnboundedSender<Publication>);

impl DeliverySink for Collect {
    fn deliver(&self, publication: Publication) {
        let _ = self.0.send(publication);
    }
}

fn collector(broker: &dyn Broker) -> mpsc::UnboundedReceiver<Publication> {
    let (tx, rx) = mpsc::unbounded_channel();
    broker.attach(Arc::new(Collect(tx)));
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Publication>) -> Publication {
    timeout(WAIT, rx.recv())
        .await
        .expect("no publication in time")
        .expect("sink closed")
}

async fn nothing_more(rx: &mut mpsc::UnboundedReceiver<Publication>) {
    if let Ok(Some(p)) = timeout(Duration::from_millis(100), rx.recv()).await {
        panic!("unexpected publication on {}: {:?}", p.channel(), p.data());
    }
}

fn json(text: &str) -> Json {
    Json::from_text(text).unwrap()
}

fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

fn fast_config() -> BrokerLinkConfig {
    BrokerLinkConfig {
        request_timeout: Duration::from_secs(2),
        connect_timeout: WAIT,
        ..BrokerLinkConfig::default()
    }
}

/// Broker `id` answering messages with `{"brokerId":id}`, its store returned beside it.
async fn start_broker(id: usize, path: &Path) -> (BrokerServer, Arc<MemoryKv>) {
    let kv = Arc::new(MemoryKv::new());
    let handler: MessageHandler = Arc::new(move |data: Json| {
        Box::pin(async move {
            if data.get() == r#""fail""# {
                return Err("refused".to_owned());
            }
            Ok(json(&format!(r#"{{"brokerId":{id}}}"#)))
        })
    });
    let server = BrokerServer::builder(id, kv.clone())
        .with_message_handler(handler)
        .bind(path)
        .await
        .unwrap();
    (server, kv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_cross_workers_exactly_once_in_order_and_route_by_sc_hasher() {
    let dir = TempDir::new("pubsub");
    let (b0, _) = start_broker(0, &dir.socket(0)).await;
    let (b1, _) = start_broker(1, &dir.socket(1)).await;
    let a = ClusterBroker::connect(dir.sockets(2), fast_config())
        .await
        .unwrap();
    let b = ClusterBroker::connect(dir.sockets(2), fast_config())
        .await
        .unwrap();
    let mut a_rx = collector(&a);
    let mut b_rx = collector(&b);

    for channel in ["news", "chan-a", "worker-channel", "private"] {
        a.subscribe(channel).await.unwrap();
    }
    // docs/protocol.md §14.3 with two brokers: news → 1, private → 1, chan-a → 0, worker-channel → 0.
    assert_eq!(b0.channels(), vec!["chan-a", "worker-channel"]);
    assert_eq!(b1.channels(), vec!["news", "private"]);
    assert_eq!(a.broker_for("news"), 1);
    assert_eq!(b0.connection_count(), 2);

    for i in 0..1000 {
        let data = json(&format!(r#"{{"n" : {i}}}"#));
        b.publish(Publication::new("news", Some(&data)))
            .await
            .unwrap();
    }
    for i in 0..1000 {
        let p = next(&mut a_rx).await;
        assert_eq!(p.channel(), "news");
        // The payload crossed both hops byte for byte.
        assert_eq!(p.data().unwrap().get(), format!(r#"{{"n" : {i}}}"#));
    }
    nothing_more(&mut a_rx).await;
    nothing_more(&mut b_rx).await;

    // The other broker's channels work too, and the publisher gets its own subscription's copy.
    b.subscribe("chan-a").await.unwrap();
    assert_eq!(b0.subscriber_count("chan-a"), 2);
    b.publish(Publication::new("chan-a", Some(&json("1"))))
        .await
        .unwrap();
    assert_eq!(next(&mut a_rx).await.channel(), "chan-a");
    assert_eq!(next(&mut b_rx).await.channel(), "chan-a");

    // After unsubscribe returns, nothing more arrives.
    a.unsubscribe("news").await.unwrap();
    assert_eq!(b1.channels(), vec!["private"]);
    b.publish(Publication::new("news", None)).await.unwrap();
    nothing_more(&mut a_rx).await;

    // A worker going away releases its subscriptions.
    drop(a);
    eventually("worker A's subscriptions to go", WAIT, || {
        b1.channels().is_empty() && b0.channels() == vec!["chan-a"]
    })
    .await;
}

#[tokio::test]
async fn publish_without_ack_keeps_order() {
    let dir = TempDir::new("noack");
    let (_b0, _) = start_broker(0, &dir.socket(0)).await;
    let (_b1, _) = start_broker(1, &dir.socket(1)).await;
    let config = BrokerLinkConfig {
        publish_ack: false,
        ..fast_config()
    };
    let a = ClusterBroker::connect(dir.sockets(2), config.clone())
        .await
        .unwrap();
    let b = ClusterBroker::connect(dir.sockets(2), config)
        .await
        .unwrap();
    let mut rx = collector(&a);
    a.subscribe("chan-b").await.unwrap();
    for i in 0..500 {
        b.publish(Publication::new("chan-b", Some(&json(&i.to_string()))))
            .await
            .unwrap();
    }
    for i in 0..500 {
        assert_eq!(next(&mut rx).await.data().unwrap().get(), i.to_string());
    }
}

#[tokio::test]
async fn key_value_is_shared_by_workers_and_routed_by_first_segment() {
    let dir = TempDir::new("kv");
    let (_b0, kv0) = start_broker(0, &dir.socket(0)).await;
    let (_b1, kv1) = start_broker(1, &dir.socket(1)).await;
    let a_broker = ClusterBroker::connect(dir.sockets(2), fast_config())
        .await
        .unwrap();
    let a = a_broker.kv();
    let b = ClusterBroker::connect(dir.sockets(2), fast_config())
        .await
        .unwrap()
        .kv();

    // "news" hashes to broker 1, "list" and "chan-a" to broker 0.
    a.execute(KvCommand::Set {
        key: key(&["news", "bob"]),
        value: json(r#"{"age":5}"#),
    })
    .await
    .unwrap();
    let got = b
        .execute(KvCommand::Get {
            key: key(&["news"]),
        })
        .await
        .unwrap();
    assert_eq!(got.get(), r#"{"bob":{"age":5}}"#);
    assert_eq!(
        a.execute(KvCommand::Add {
            key: key(&["list"]),
            value: json(r#""i1""#)
        })
        .await
        .unwrap()
        .get(),
        "0"
    );
    assert_eq!(
        b.execute(KvCommand::Add {
            key: key(&["list"]),
            value: json(r#""i2""#)
        })
        .await
        .unwrap()
        .get(),
        "1"
    );
    assert_eq!(
        a.execute(KvCommand::Count {
            key: key(&["list"])
        })
        .await
        .unwrap()
        .get(),
        "2"
    );

    // Each key lives on its owner only.
    let on0 = kv0.execute(KvCommand::GetAll).await.unwrap();
    let on1 = kv1.execute(KvCommand::GetAll).await.unwrap();
    assert_eq!(on0.get(), r#"{"list":["i1","i2"]}"#);
    assert_eq!(on1.get(), r#"{"news":{"bob":{"age":5}}}"#);

    // GetAll merges every broker's map (documented choice; the reference asks broker 0 only).
    let all: serde_json::Value = b.execute(KvCommand::GetAll).await.unwrap().parse().unwrap();
    assert_eq!(
        all,
        serde_json::json!({"list": ["i1", "i2"], "news": {"bob": {"age": 5}}})
    );

    // Expire splits its keys by owner: both go, each on its own broker.
    a.execute(KvCommand::Expire {
        keys: vec![key(&["news"]), key(&["list"])],
        seconds: 0,
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for k in ["news", "list"] {
        let has = b
            .execute(KvCommand::HasKey { key: key(&[k]) })
            .await
            .unwrap();
        assert_eq!(has.get(), "false", "{k} expired");
    }

    // RemoveAll reaches every broker.
    a.execute(KvCommand::Set {
        key: key(&["chan-a"]),
        value: json("1"),
    })
    .await
    .unwrap();
    a.execute(KvCommand::Set {
        key: key(&["news"]),
        value: json("2"),
    })
    .await
    .unwrap();
    b.execute(KvCommand::RemoveAll).await.unwrap();
    assert_eq!(a.execute(KvCommand::GetAll).await.unwrap().get(), "{}");

    // Broker controller messages.
    let controllers = a_broker.controllers();
    let answers = controllers
        .send(json(r#"{"hello":1}"#), MapIndex::All)
        .await
        .unwrap();
    let answers: Vec<&str> = answers.iter().map(Json::get).collect();
    assert_eq!(answers, [r#"{"brokerId":0}"#, r#"{"brokerId":1}"#]);
    let one = controllers
        .send(Json::NULL, MapIndex::Key("news".into()))
        .await
        .unwrap();
    assert_eq!(one[0].get(), r#"{"brokerId":1}"#);
    let keyed = controllers
        .send(
            Json::NULL,
            MapIndex::Keys(vec!["news".into(), "private".into(), "chan-a".into()]),
        )
        .await
        .unwrap();
    assert_eq!(keyed.len(), 2, "each broker once");
    let numbered = controllers
        .send(Json::NULL, MapIndex::Number(-3))
        .await
        .unwrap();
    assert_eq!(numbered[0].get(), r#"{"brokerId":1}"#);
    let refused = controllers.send(json(r#""fail""#), MapIndex::All).await;
    assert_eq!(refused, Err(BrokerError::Engine("refused".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_fails_fast_then_resubscribes_and_resumes() {
    let dir = TempDir::new("restart");
    let (_b0, _) = start_broker(0, &dir.socket(0)).await;
    let (b1, _) = start_broker(1, &dir.socket(1)).await;
    let a = ClusterBroker::connect(dir.sockets(2), fast_config())
        .await
        .unwrap();
    let b = ClusterBroker::connect(dir.sockets(2), fast_config())
        .await
        .unwrap();
    let mut rx = collector(&a);
    a.subscribe("news").await.unwrap(); // broker 1
    a.subscribe("private").await.unwrap(); // broker 1
    a.subscribe("chan-a").await.unwrap(); // broker 0

    // The broker "crashes": its task and connections vanish.
    drop(b1);
    eventually("workers to notice", WAIT, || {
        a.connected() == [true, false] && b.connected() == [true, false]
    })
    .await;
    assert!(!a.is_connected());

    // Operations routed to the dead broker fail at once with a typed error; the live one works.
    let started = Instant::now();
    let publish = b.publish(Publication::new("news", None)).await;
    assert!(
        matches!(publish, Err(BrokerError::Unavailable(_))),
        "{publish:?}"
    );
    let subscribe = b.subscribe("private").await;
    assert!(
        matches!(subscribe, Err(BrokerError::Unavailable(_))),
        "{subscribe:?}"
    );
    let get = b
        .kv()
        .execute(KvCommand::Get {
            key: key(&["news"]),
        })
        .await;
    assert!(matches!(get, Err(BrokerError::Unavailable(_))), "{get:?}");
    let all = b.kv().execute(KvCommand::GetAll).await;
    assert!(matches!(all, Err(BrokerError::Unavailable(_))), "{all:?}");
    assert!(started.elapsed() < Duration::from_millis(500));
    b.publish(Publication::new("chan-a", Some(&json("0"))))
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await.channel(), "chan-a");

    // Unsubscribing while down needs no broker: the channel is simply not re-subscribed.
    a.unsubscribe("private").await.unwrap();

    // A new broker on the same path: the worker reconnects and re-subscribes on its own.
    let (b1, _) = start_broker(1, &dir.socket(1)).await;
    eventually("re-subscription", WAIT, || b1.channels() == vec!["news"]).await;
    eventually("publisher reconnect", WAIT, || b.is_connected()).await;
    b.publish(Publication::new("news", Some(&json(r#""back""#))))
        .await
        .unwrap();
    let p = next(&mut rx).await;
    assert_eq!(
        (p.channel(), p.data().unwrap().get()),
        ("news", r#""back""#)
    );
    b.publish(Publication::new("private", None)).await.unwrap();
    nothing_more(&mut rx).await;
}

#[tokio::test]
async fn a_broker_that_never_answers_times_out() {
    let dir = TempDir::new("mute");
    let path = dir.socket(0);
    // Says ready, then reads and ignores everything.
    let listener = UnixListener::bind(&path).unwrap();
    let mute = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, codec());
        framed
            .send(BrokerMessage::Ready { broker_id: 0 }.encode())
            .await
            .unwrap();
        while framed.next().await.is_some() {}
    });
    let config = BrokerLinkConfig {
        request_timeout: Duration::from_millis(200),
        ..fast_config()
    };
    let worker = ClusterBroker::connect(vec![path], config).await.unwrap();
    let started = Instant::now();
    assert_eq!(
        worker.subscribe("news").await,
        Err(BrokerError::Timeout {
            action: "subscribe"
        })
    );
    assert_eq!(
        worker.publish(Publication::new("news", None)).await,
        Err(BrokerError::Timeout { action: "publish" })
    );
    // A publish answered through a callback times out by the link's sweep, once.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut make_done = || -> PublishDone {
        let done_tx = done_tx.clone();
        Box::new(move |result| {
            let _ = done_tx.send(result);
        })
    };
    let start = worker.start_publish_then(Publication::new("news", None), &mut make_done);
    assert!(matches!(start, PublishStart::Pending));
    assert_eq!(
        timeout(WAIT, done_rx.recv()).await.unwrap(),
        Some(Err(BrokerError::Timeout { action: "publish" }))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(done_tx);
    assert_eq!(done_rx.recv().await, None, "the callback ran once");
    mute.abort();
}

#[tokio::test]
async fn connect_reports_missing_brokers() {
    let dir = TempDir::new("missing");
    let (_b0, _) = start_broker(0, &dir.socket(0)).await;
    let config = BrokerLinkConfig {
        connect_timeout: Duration::from_millis(300),
        ..fast_config()
    };
    let result = ClusterBroker::connect(dir.sockets(2), config).await;
    let Err(BrokerError::Unavailable(message)) = result else {
        panic!("expected unavailable");
    };
    assert!(message.contains("1 ("), "{message}");
}

/// An engine shared by several brokers ("machines"), each through its own handle, counting the
/// subscribe calls it gets.
#[derive(Default)]
struct Engine {
    handles: Mutex<Vec<Arc<Handle>>>,
}

#[derive(Default)]
struct Handle {
    sink: Mutex<Option<Arc<dyn DeliverySink>>>,
    channels: Mutex<HashSet<String>>,
    subscribes: AtomicUsize,
    engine: Mutex<Option<Arc<Engine>>>,
}

struct EngineHandle(Arc<Handle>);

impl Engine {
    fn handle(self: &Arc<Self>) -> Arc<EngineHandle> {
        let handle = Arc::new(Handle::default());
        *handle.engine.lock() = Some(self.clone());
        self.handles.lock().push(handle.clone());
        Arc::new(EngineHandle(handle))
    }
}

impl Broker for EngineHandle {
    fn attach(&self, sink: Arc<dyn DeliverySink>) {
        *self.0.sink.lock() = Some(sink);
    }
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.0.subscribes.fetch_add(1, Ordering::SeqCst);
        self.0.channels.lock().insert(channel.to_owned());
        Box::pin(async { Ok(()) })
    }
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.0.channels.lock().remove(channel);
        Box::pin(async { Ok(()) })
    }
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<(), BrokerError>> {
        let engine = self.0.engine.lock().clone().unwrap();
        let handles = engine.handles.lock().clone();
        for handle in handles {
            if handle.channels.lock().contains(publication.channel()) {
                let sink = handle.sink.lock().clone();
                if let Some(sink) = sink {
                    sink.deliver(publication.clone());
                }
            }
        }
        Box::pin(async { Ok(()) })
    }
    fn describe(&self) -> String {
        "test engine".into()
    }
}

#[tokio::test]
async fn upstream_memory_broker_relays_through_the_engine() {
    let dir = TempDir::new("upstream");
    let server = BrokerServer::builder(0, Arc::new(MemoryKv::new()))
        .with_upstream(Arc::new(MemoryBroker::new()))
        .bind(dir.socket(0))
        .await
        .unwrap();
    let a = ClusterBroker::connect(dir.sockets(1), fast_config())
        .await
        .unwrap();
    let b = ClusterBroker::connect(dir.sockets(1), fast_config())
        .await
        .unwrap();
    let mut a_rx = collector(&a);
    let mut b_rx = collector(&b);
    a.subscribe("news").await.unwrap();
    b.subscribe("news").await.unwrap();
    for i in 0..100 {
        b.publish(Publication::new("news", Some(&json(&i.to_string()))))
            .await
            .unwrap();
    }
    for i in 0..100 {
        assert_eq!(next(&mut a_rx).await.data().unwrap().get(), i.to_string());
        assert_eq!(next(&mut b_rx).await.data().unwrap().get(), i.to_string());
    }
    // The last local unsubscribe releases the engine's subscription.
    a.unsubscribe("news").await.unwrap();
    b.unsubscribe("news").await.unwrap();
    assert!(server.channels().is_empty());
    a.subscribe("other").await.unwrap();
    b.publish(Publication::new("news", None)).await.unwrap();
    nothing_more(&mut a_rx).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_engine_joins_instances_with_one_subscription_per_channel() {
    let dir = TempDir::new("engine");
    let engine = Arc::new(Engine::default());
    let handle_1 = engine.handle();
    let handle_2 = engine.handle();
    let machine_1 = BrokerServer::builder(0, Arc::new(MemoryKv::new()))
        .with_upstream(handle_1.clone())
        .bind(dir.socket(0))
        .await
        .unwrap();
    let machine_2 = BrokerServer::builder(0, Arc::new(MemoryKv::new()))
        .with_upstream(handle_2.clone())
        .bind(dir.socket(1))
        .await
        .unwrap();
    // Two workers on machine 1, one on machine 2.
    let w1 = ClusterBroker::connect(vec![dir.socket(0)], fast_config())
        .await
        .unwrap();
    let w2 = ClusterBroker::connect(vec![dir.socket(0)], fast_config())
        .await
        .unwrap();
    let w3 = ClusterBroker::connect(vec![dir.socket(1)], fast_config())
        .await
        .unwrap();
    let mut rx1 = collector(&w1);
    let mut rx2 = collector(&w2);
    let _rx3 = collector(&w3);
    let (s1, s2) = tokio::join!(w1.subscribe("news"), w2.subscribe("news"));
    s1.unwrap();
    s2.unwrap();
    assert_eq!(handle_1.0.subscribes.load(Ordering::SeqCst), 1);
    assert_eq!(machine_1.subscriber_count("news"), 2);

    w3.publish(Publication::new("news", Some(&json(r#""hi""#))))
        .await
        .unwrap();
    assert_eq!(next(&mut rx1).await.data().unwrap().get(), r#""hi""#);
    assert_eq!(next(&mut rx2).await.data().unwrap().get(), r#""hi""#);

    w1.unsubscribe("news").await.unwrap();
    assert!(handle_1.0.channels.lock().contains("news"));
    w2.unsubscribe("news").await.unwrap();
    assert!(handle_1.0.channels.lock().is_empty());
    drop(machine_2);
}

/// A raw worker connection speaking the wire protocol directly.
async fn raw_worker(path: &Path) -> Framed<UnixStream, tokio_util::codec::LengthDelimitedCodec> {
    let stream = UnixStream::connect(path).await.unwrap();
    let mut framed = Framed::new(stream, codec());
    let ready = timeout(WAIT, framed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        BrokerMessage::decode(ready.freeze()).unwrap(),
        BrokerMessage::Ready { broker_id: 7 }
    );
    framed
}

#[tokio::test]
async fn raw_protocol_and_slow_consumer_is_dropped() {
    let dir = TempDir::new("raw");
    let server = BrokerServer::builder(7, Arc::new(MemoryKv::new()))
        .with_outbound_capacity(8)
        .with_stall_timeout(Duration::from_millis(300))
        .bind(dir.socket(0))
        .await
        .unwrap();

    // Subscribe and get the reply (the first subscriber of a channel is its solo subscriber); a
    // publish comes back as the same frame.
    let mut fast = raw_worker(&dir.socket(0)).await;
    let subscribe = WorkerMessage::Subscribe {
        id: 5,
        channel: "x".into(),
    };
    fast.send(subscribe.encode()).await.unwrap();
    let reply = timeout(WAIT, fast.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        BrokerMessage::decode(reply.freeze()).unwrap(),
        BrokerMessage::Reply {
            id: 5,
            result: Ok(solo_reply())
        }
    );
    let p = Publication::new("x", Some(&json("[1, 2]")));
    fast.send(WorkerMessage::publish(0, &p).encode())
        .await
        .unwrap();
    let pushed = timeout(WAIT, fast.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        BrokerMessage::decode(pushed.freeze()).unwrap(),
        BrokerMessage::Delivery {
            channel: "x".into(),
            frame: p.frame().clone()
        }
    );

    // A worker that subscribes and never reads: its queue fills, makes no room within the stall
    // timeout, and the broker drops it.
    let mut slow = raw_worker(&dir.socket(0)).await;
    slow.send(
        WorkerMessage::Subscribe {
            id: 0,
            channel: "big".into(),
        }
        .encode(),
    )
    .await
    .unwrap();
    eventually("slow subscription", WAIT, || {
        server.subscriber_count("big") == 1
    })
    .await;
    let big = Publication::new("big", Some(&Json::string(&"z".repeat(256 * 1024))));
    let mut publisher = raw_worker(&dir.socket(0)).await;
    for _ in 0..64 {
        publisher
            .send(WorkerMessage::publish(0, &big).encode())
            .await
            .unwrap();
        if server.subscriber_count("big") == 0 {
            break;
        }
    }
    eventually("slow consumer dropped", WAIT, || {
        server.subscriber_count("big") == 0
    })
    .await;
    assert_eq!(server.subscriber_count("x"), 1, "others unaffected");

    // Garbage closes the sender's connection.
    fast.send(Bytes::from_static(&[0x42, 1, 2])).await.unwrap();
    let end = timeout(WAIT, async { while let Some(Ok(_)) = fast.next().await {} }).await;
    assert!(end.is_ok(), "connection closed after garbage");
    eventually("garbage sender removed", WAIT, || {
        server.subscriber_count("x") == 0
    })
    .await;
}

#[tokio::test]
async fn bind_replaces_stale_sockets_refuses_live_ones_and_shutdown_cleans_up() {
    let dir = TempDir::new("bind");
    let path = dir.socket(0);
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves a stale file
    assert!(path.exists());
    let (server, _) = start_broker(0, &path).await;
    let taken = BrokerServer::builder(0, Arc::new(MemoryKv::new()))
        .bind(&path)
        .await;
    assert_eq!(
        taken.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::AddrInUse)
    );

    let worker = ClusterBroker::connect(vec![path.clone()], fast_config())
        .await
        .unwrap();
    worker.subscribe("a").await.unwrap();
    timeout(WAIT, server.shutdown()).await.unwrap();
    assert!(!path.exists(), "socket file removed");
    eventually("worker to notice shutdown", WAIT, || {
        worker.connected() == [false]
    })
    .await;
    assert!(matches!(
        worker.publish(Publication::new("a", None)).await,
        Err(BrokerError::Unavailable(_))
    ));
}

/// Reads the next message of a raw worker connection.
async fn read_raw(
    framed: &mut Framed<UnixStream, tokio_util::codec::LengthDelimitedCodec>,
) -> BrokerMessage {
    let body = timeout(WAIT, framed.next())
        .await
        .expect("no message in time")
        .expect("connection closed")
        .unwrap();
    BrokerMessage::decode(body.freeze()).unwrap()
}

#[tokio::test]
async fn a_second_subscriber_is_answered_once_the_solo_holder_shares() {
    let dir = TempDir::new("solo-raw");
    let _server = BrokerServer::builder(7, Arc::new(MemoryKv::new()))
        .bind(dir.socket(0))
        .await
        .unwrap();
    let mut holder = raw_worker(&dir.socket(0)).await;
    holder
        .send(
            WorkerMessage::Subscribe {
                id: 1,
                channel: "room".into(),
            }
            .encode(),
        )
        .await
        .unwrap();
    assert_eq!(
        read_raw(&mut holder).await,
        BrokerMessage::Reply {
            id: 1,
            result: Ok(solo_reply())
        }
    );

    let mut second = raw_worker(&dir.socket(0)).await;
    second
        .send(
            WorkerMessage::Subscribe {
                id: 2,
                channel: "room".into(),
            }
            .encode(),
        )
        .await
        .unwrap();
    let BrokerMessage::Shared { token, channel } = read_raw(&mut holder).await else {
        panic!("the solo holder was not told to share");
    };
    assert_eq!(channel, "room");
    // Not answered while the holder may still deliver its publications by itself.
    assert!(
        timeout(Duration::from_millis(300), second.next())
            .await
            .is_err(),
        "second subscriber answered before the holder shared"
    );
    holder
        .send(WorkerMessage::SharedAck { token }.encode())
        .await
        .unwrap();
    assert_eq!(
        read_raw(&mut second).await,
        BrokerMessage::Reply {
            id: 2,
            result: Ok(Json::NULL)
        }
    );

    // Shared now, for good: a third subscriber is answered at once, and nobody is solo.
    let mut third = raw_worker(&dir.socket(0)).await;
    third
        .send(
            WorkerMessage::Subscribe {
                id: 3,
                channel: "room".into(),
            }
            .encode(),
        )
        .await
        .unwrap();
    assert_eq!(
        read_raw(&mut third).await,
        BrokerMessage::Reply {
            id: 3,
            result: Ok(Json::NULL)
        }
    );
    assert!(
        timeout(Duration::from_millis(100), holder.next())
            .await
            .is_err()
    );
}

/// A worker that sends many publishes at once (one write) gets every delivery, in order, and
/// the acknowledgements batched: after the deliveries they acknowledge, each id once, in order,
/// in fewer messages than publishes, at most `MAX_ACKS` ids each. Any other answer comes after
/// the acknowledgements of the publishes sent before its request.
#[tokio::test]
async fn acknowledgements_are_batched_after_their_deliveries() {
    let dir = TempDir::new("acks");
    let _server = BrokerServer::builder(7, Arc::new(MemoryKv::new()))
        .bind(dir.socket(0))
        .await
        .unwrap();
    let mut worker = raw_worker(&dir.socket(0)).await;
    worker
        .send(
            WorkerMessage::Subscribe {
                id: 1,
                channel: "c".into(),
            }
            .encode(),
        )
        .await
        .unwrap();
    assert!(matches!(
        read_raw(&mut worker).await,
        BrokerMessage::Reply { id: 1, .. }
    ));

    const COUNT: u64 = 1000;
    for id in 2..COUNT + 2 {
        let p = Publication::new("c", Some(&json(&format!(r#"{{"n":{}}}"#, id - 2))));
        worker
            .feed(WorkerMessage::publish(id, &p).encode())
            .await
            .unwrap();
    }
    SinkExt::<Bytes>::flush(&mut worker).await.unwrap();

    let mut delivered = 0;
    let mut acked = Vec::new();
    let mut ack_messages = 0;
    while acked.len() < COUNT as usize {
        match read_raw(&mut worker).await {
            BrokerMessage::Delivery { channel, frame } => {
                assert_eq!(channel, "c");
                let p = Publication::from_channel_and_frame(&channel, frame).unwrap();
                assert_eq!(sequence(&p), delivered, "deliveries in order");
                delivered += 1;
            }
            BrokerMessage::Acks { ids } => {
                assert!(ids.len() <= sc_broker::process::protocol::MAX_ACKS);
                ack_messages += 1;
                for id in ids {
                    assert!(
                        id - 2 < delivered,
                        "publish {id} acknowledged before its delivery"
                    );
                    acked.push(id);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        acked,
        (2..COUNT + 2).collect::<Vec<_>>(),
        "each id once, in order"
    );
    assert_eq!(delivered, COUNT);
    assert!(
        ack_messages < COUNT / 2,
        "acknowledgements were not batched: {ack_messages} messages for {COUNT} publishes"
    );

    // A request right behind a publish: the publish is acknowledged first.
    let p = Publication::new("c", None);
    worker
        .feed(WorkerMessage::publish(5000, &p).encode())
        .await
        .unwrap();
    worker
        .feed(
            WorkerMessage::Unsubscribe {
                id: 5001,
                channel: "c".into(),
            }
            .encode(),
        )
        .await
        .unwrap();
    SinkExt::<Bytes>::flush(&mut worker).await.unwrap();
    assert!(matches!(
        read_raw(&mut worker).await,
        BrokerMessage::Delivery { .. }
    ));
    assert_eq!(
        read_raw(&mut worker).await,
        BrokerMessage::Acks { ids: vec![5000] }
    );
    assert_eq!(
        read_raw(&mut worker).await,
        BrokerMessage::Reply {
            id: 5001,
            result: Ok(Json::NULL)
        }
    );
}

/// Publication number `n` of `room` (read back with [`sequence`]).
fn numbered(n: u64) -> Publication {
    Publication::new("room", Some(&json(&format!(r#"{{"n":{n}}}"#))))
}

/// The `n` of a `{"n":…}` publication.
fn sequence(publication: &Publication) -> u64 {
    let value: serde_json::Value = publication.data().unwrap().parse().unwrap();
    value["n"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_worker_publishes_locally_and_a_new_subscriber_misses_nothing_after_joining() {
    let dir = TempDir::new("solo");
    let (_b0, _) = start_broker(0, &dir.socket(0)).await;
    let solo = BrokerLinkConfig {
        solo_delivery: true,
        ..fast_config()
    };
    let a = Arc::new(
        ClusterBroker::connect(dir.sockets(1), solo.clone())
            .await
            .unwrap(),
    );
    let b = ClusterBroker::connect(dir.sockets(1), solo).await.unwrap();
    let mut a_rx = collector(&*a);
    let mut b_rx = collector(&b);

    a.subscribe("room").await.unwrap();
    // A keeps publishing while B joins: A gets every publication once, in order; B gets, in
    // order and once, a contiguous run that includes everything published after its subscribe
    // returned. A stops only `AFTER` publications after B's subscribe returned, so B always joins
    // mid-stream however the two tasks are scheduled (bounded by `LIMIT`).
    const AFTER: u64 = 500;
    const LIMIT: u64 = 1_000_000;
    let publisher = a.clone();
    let published = Arc::new(AtomicU64::new(0));
    let stop_at = Arc::new(AtomicU64::new(LIMIT));
    let (counter, stop) = (published.clone(), stop_at.clone());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let publishing = tokio::spawn(async move {
        let mut started = Some(started_tx);
        let mut n = 0;
        while n < stop.load(Ordering::SeqCst) {
            publisher.publish(numbered(n)).await.unwrap();
            n += 1;
            counter.store(n, Ordering::SeqCst);
            if n == 300 {
                let _ = started.take().map(|s| s.send(()));
            }
            if n % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        n
    });
    started_rx.await.unwrap();
    b.subscribe("room").await.unwrap();
    // Everything A publishes from now on must reach B: publication `joined_by` at the latest
    // (the one in progress may go either way).
    let joined_by = published.load(Ordering::SeqCst) + 1;
    stop_at.store(joined_by + AFTER, Ordering::SeqCst);
    let total = publishing.await.unwrap();
    assert!(
        joined_by < total && total < LIMIT,
        "B joined mid-stream: joined by {joined_by}, published {total}"
    );

    for n in 0..total {
        let p = next(&mut a_rx).await;
        assert_eq!(
            sequence(&p),
            n,
            "A's own publications, each once and in order"
        );
    }
    nothing_more(&mut a_rx).await;
    let first = sequence(&next(&mut b_rx).await);
    assert!(
        first <= joined_by,
        "B missed publications made after it joined: first {first}, joined by {joined_by}"
    );
    for n in first + 1..total {
        assert_eq!(sequence(&next(&mut b_rx).await), n, "B's run is contiguous");
    }
    nothing_more(&mut b_rx).await;

    // Shared from now on: publications from either side reach both, once.
    let data = json(r#"{"n":0}"#);
    b.publish(Publication::new("room", Some(&data)))
        .await
        .unwrap();
    a.publish(Publication::new("room", Some(&data)))
        .await
        .unwrap();
    for rx in [&mut a_rx, &mut b_rx] {
        next(rx).await;
        next(rx).await;
        nothing_more(rx).await;
    }
}

/// Two workers subscribed to `room` on one broker: `a` with a link queue of 8 (so that a burst
/// of publishes fills it), `b` with the default, each with its collected publications.
struct Room {
    _broker: BrokerServer,
    a: ClusterBroker,
    b: ClusterBroker,
    a_rx: mpsc::UnboundedReceiver<Publication>,
    b_rx: mpsc::UnboundedReceiver<Publication>,
}

impl Room {
    /// Starts broker 0 in `dir` and connects both workers to it.
    async fn join(dir: &TempDir) -> Room {
        let (broker, _) = start_broker(0, &dir.socket(0)).await;
        let small_queue = BrokerLinkConfig {
            outbound_capacity: 8,
            ..fast_config()
        };
        let a = ClusterBroker::connect(dir.sockets(1), small_queue)
            .await
            .unwrap();
        let b = ClusterBroker::connect(dir.sockets(1), fast_config())
            .await
            .unwrap();
        let a_rx = collector(&a);
        let b_rx = collector(&b);
        a.subscribe("room").await.unwrap();
        b.subscribe("room").await.unwrap();
        Room {
            _broker: broker,
            a,
            b,
            a_rx,
            b_rx,
        }
    }
}

/// Checks that `rx` got publications `0..count` (by their `n`), each once and in order, and
/// nothing more.
async fn in_order(rx: &mut mpsc::UnboundedReceiver<Publication>, count: u64) {
    for n in 0..count {
        assert_eq!(sequence(&next(rx).await), n);
    }
    nothing_more(rx).await;
}

/// Publishes started one after the other without waiting ([`Broker::start_publish`]), more of
/// them than the link's queue holds, so that some are given back and published the slow way in
/// between: every subscriber on both workers gets each exactly once, in start order, and every
/// outcome is `Ok`.
#[tokio::test]
async fn started_publishes_keep_their_order_across_a_full_link_queue() {
    let dir = TempDir::new("started");
    let Room {
        _broker,
        a,
        b: _b,
        mut a_rx,
        mut b_rx,
    } = Room::join(&dir).await;

    const COUNT: u64 = 2000;
    let mut outcomes = Vec::new();
    let mut given_back = 0;
    for n in 0..COUNT {
        let publication = numbered(n);
        // This single-threaded runtime runs nothing else until we wait: the queue (8) fills.
        match a.start_publish(publication) {
            Ok(outcome) => outcomes.push(outcome),
            Err(publication) => {
                given_back += 1;
                a.publish(publication).await.unwrap();
            }
        }
    }
    assert!(
        given_back > 0,
        "the link's queue never filled: no batch boundary was crossed"
    );
    assert!(
        outcomes.len() > 100,
        "most publishes were started: {}",
        outcomes.len()
    );
    // Outcomes awaited last-first: the order was fixed when they started.
    for outcome in outcomes.into_iter().rev() {
        timeout(WAIT, outcome).await.unwrap().unwrap();
    }
    for rx in [&mut a_rx, &mut b_rx] {
        in_order(rx, COUNT).await;
    }
}

/// Publishes started with a callback ([`Broker::start_publish_then`]), more of them than the
/// link's queue holds: each callback runs exactly once, with `Ok`, and every subscriber on both
/// workers gets each publication exactly once, in start order.
#[tokio::test]
async fn publishes_answered_by_callback_keep_their_order_and_answer_once() {
    let dir = TempDir::new("callbacks");
    let Room {
        _broker,
        a,
        b: _b,
        mut a_rx,
        mut b_rx,
    } = Room::join(&dir).await;

    const COUNT: u64 = 2000;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut pending = 0;
    for n in 0..COUNT {
        let publication = numbered(n);
        let mut make_done = || -> PublishDone {
            let done_tx = done_tx.clone();
            Box::new(move |result| {
                let _ = done_tx.send((n, result));
            })
        };
        match a.start_publish_then(publication, &mut make_done) {
            PublishStart::Pending => pending += 1,
            PublishStart::Done(result) => result.unwrap(),
            PublishStart::Refused(publication) => a.publish(publication).await.unwrap(),
        }
    }
    assert!(pending > 100, "most publishes were started: {pending}");
    drop(done_tx);
    let mut answered = HashSet::new();
    while let Some((n, result)) = timeout(WAIT, done_rx.recv()).await.unwrap() {
        result.unwrap();
        assert!(answered.insert(n), "publish {n} answered twice");
    }
    assert_eq!(answered.len(), pending);
    for rx in [&mut a_rx, &mut b_rx] {
        in_order(rx, COUNT).await;
    }
}
