//! One conformance suite for the documented guarantees of [`Broker`] and [`KvStore`], run
//! against every engine. Each engine's test file (`tests/conformance_<engine>.rs`) implements
//! [`Engine`] and invokes [`conformance_suite!`]; engine-specific behaviour (reconnects with a
//! private server, URL parsing, credentials, limits) stays in that engine's own test file.
//!
//! Guarantees checked (from the trait docs in `src/lib.rs` and `src/kv.rs`), one function each:
//!
//! | function | guarantee |
//! |---|---|
//! | [`delivery_crosses_instances_in_order_exactly_once`] | after `subscribe` returns `Ok`, every later publication by anyone sharing the engine reaches the sink; one publisher's publications arrive in publish order; nothing arrives twice (at most once) |
//! | [`unsubscribe_stops_delivery`] | nothing arrives after `unsubscribe` returns `Ok`, on the instance that unsubscribed |
//! | [`publications_arrive_unchanged_on_their_own_channel`] | the payload arrives byte for byte, on its channel only, whatever characters the name holds |
//! | [`engine_reports_itself`] | `describe` names the engine; a reachable engine `is_connected` |
//! | [`stored_publications_are_positioned_delivered_and_read_back`] | `publish_stored` gives gap-free offsets in one epoch, delivers each publication with its position in offset order, and `read_history` returns the last `size` of them, or everything after a position |
//! | [`presence_is_shared_and_announced`] | `presence_join` / `presence_leave` are seen by every instance and announced once each on the companion channel |
//! | [`kv_document_operations`] | every [`KvCommand`] returns what its documentation says, and one instance's writes are read by the other |
//! | [`kv_concurrent_writes_lose_nothing`] | read-modify-writes of one key from two instances at once all land |
//! | [`kv_expiry`] | `expire` removes top-level and nested paths after the delay (even for an instance that never saw the command), setting the key again does not cancel it, `unexpire` does |
//! | [`kv_whole_store`] | `getAll` returns the whole store as one map, `removeAll` empties it |
//! | [`kv_rejects_an_empty_key`] | a command without a key path fails with a typed error and changes nothing |
//!
//! It runs against memory, broker processes, Redis, Redis Cluster and NATS
//! (`tests/conformance_*.rs`). Adding an engine: a new `tests/conformance_<engine>.rs` with an
//! [`Engine`] implementation and one line, `conformance_suite!(<factory>);`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sc_broker::stream::presence_channel;
use sc_broker::{
    Broker, BrokerError, HistoryPolicy, HistoryRead, KvCommand, KvStore, Position, PresenceMember,
};
use sc_protocol::{Json, Publication};
use sc_test_support::engine::unique;
use sc_test_support::sink::{Collect, publication};

/// How long any one delivery may take before the suite gives up.
const WAIT: Duration = Duration::from_secs(10);
/// Room for an unwanted (duplicate or late) delivery to show up before asserting its absence.
const QUIET: Duration = Duration::from_millis(200);

/// A boxed future (the [`Engine`] trait is object-safe).
pub(crate) use sc_broker::BoxFuture;

/// One instance of an engine, as a worker holds it: its broker (with a collecting sink
/// attached) and its key/value store.
#[derive(Clone)]
pub(crate) struct Instance {
    /// The broker.
    pub(crate) broker: Arc<dyn Broker>,
    /// The key/value store.
    pub(crate) kv: Arc<dyn KvStore>,
    /// What the broker delivered.
    pub(crate) sink: Arc<Collect>,
}

impl Instance {
    /// An instance of `broker` and `kv`, with a fresh sink attached to the broker.
    pub(crate) fn attach(broker: Arc<dyn Broker>, kv: Arc<dyn KvStore>) -> Instance {
        let sink = Collect::new();
        broker.attach(sink.clone());
        Instance { broker, kv, sink }
    }
}

/// An engine under test: everything one test needs, private to that test (own prefix, bucket,
/// sockets or store), so tests never see each other's channels or keys.
pub(crate) trait Engine: Send + Sync {
    /// Another instance sharing this engine (a second worker or machine). An in-process engine
    /// that cannot have two instances returns the same one again and says so in
    /// [`Engine::distinct_instances`].
    fn instance(&self) -> BoxFuture<'_, Instance>;

    /// Whether [`Engine::instance`] returns distinct instances.
    fn distinct_instances(&self) -> bool {
        true
    }

    /// What [`Broker::describe`] starts with.
    fn name(&self) -> &'static str;

    /// Releases what the engine left on a shared server (called after the test passed).
    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Generates one `#[tokio::test]` per guarantee for the engine that `$factory` (an async fn
/// returning an [`Engine`]) builds.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@tests $factory;
            delivery_crosses_instances_in_order_exactly_once,
            unsubscribe_stops_delivery,
            publications_arrive_unchanged_on_their_own_channel,
            engine_reports_itself,
            stored_publications_are_positioned_delivered_and_read_back,
            presence_is_shared_and_announced,
            kv_document_operations,
            kv_concurrent_writes_lose_nothing,
            kv_expiry,
            kv_whole_store,
            kv_rejects_an_empty_key,
        );
    };
    (@tests $factory:path; $($guarantee:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $guarantee() {
                let engine = $factory().await;
                $crate::conformance::$guarantee(&engine).await;
                $crate::conformance::Engine::finish(&engine).await;
            }
        )*
    };
}

/// Two instances `(a, b)` of `engine`; `b` is `a` when the engine has only one.
async fn pair(engine: &dyn Engine) -> (Instance, Instance) {
    let a = engine.instance().await;
    let b = engine.instance().await;
    (a, b)
}

/// Subscribes both instances to `channel` (once when they are the same one).
async fn subscribe_both(engine: &dyn Engine, a: &Instance, b: &Instance, channel: &str) {
    a.broker.subscribe(channel).await.unwrap();
    if engine.distinct_instances() {
        b.broker.subscribe(channel).await.unwrap();
    }
}

/// A key path.
pub(crate) fn key(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| (*s).to_owned()).collect()
}

/// JSON from its text.
pub(crate) fn json(text: &str) -> Json {
    Json::from_text(text).unwrap()
}

/// Runs `command`, which must succeed, and returns its result as JSON text.
pub(crate) async fn run(kv: &dyn KvStore, command: KvCommand) -> String {
    let shown = format!("{command:?}");
    kv.execute(command)
        .await
        .unwrap_or_else(|e| panic!("{shown} failed: {e}"))
        .get()
        .to_owned()
}

/// After `subscribe` returns, every publication made afterwards reaches the sink, in publish
/// order, exactly once, on every subscribed instance, including the publisher's own.
pub(crate) async fn delivery_crosses_instances_in_order_exactly_once(engine: &dyn Engine) {
    let (a, b) = pair(engine).await;
    let channel = unique("ordered");
    subscribe_both(engine, &a, &b, &channel).await;

    for i in 0..1000 {
        b.broker
            .publish(publication(&channel, &i.to_string()))
            .await
            .unwrap();
    }
    for (name, instance) in [("A", &a), ("B", &b)] {
        assert!(
            instance.sink.wait_for(1000, WAIT).await,
            "{name} got {}",
            instance.sink.len()
        );
    }
    tokio::time::sleep(QUIET).await;
    let expected: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    assert_eq!(a.sink.data(), expected, "A: in order, exactly once");
    assert_eq!(b.sink.data(), expected, "B: in order, exactly once");
}

/// After `unsubscribe` returns, nothing more of that channel arrives there, while the other
/// subscriber still gets it.
pub(crate) async fn unsubscribe_stops_delivery(engine: &dyn Engine) {
    let (a, b) = pair(engine).await;
    let channel = unique("unsub");
    let witness = unique("witness");
    a.broker.subscribe(&channel).await.unwrap();
    a.broker.subscribe(&witness).await.unwrap();
    b.broker.publish(publication(&channel, "1")).await.unwrap();
    assert!(a.sink.wait_for(1, WAIT).await, "subscribed: delivered");

    a.broker.unsubscribe(&channel).await.unwrap();
    b.broker.publish(publication(&channel, "2")).await.unwrap();
    // A later publication on a channel still subscribed proves the unwanted one had its chance.
    b.broker.publish(publication(&witness, "3")).await.unwrap();
    assert!(a.sink.wait_for(2, WAIT).await);
    tokio::time::sleep(QUIET).await;
    assert_eq!(a.sink.data(), ["1", "3"], "nothing after unsubscribe");

    // Subscribing again resumes delivery.
    a.broker.subscribe(&channel).await.unwrap();
    b.broker.publish(publication(&channel, "4")).await.unwrap();
    assert!(a.sink.wait_for(3, WAIT).await);
    assert_eq!(a.sink.data(), ["1", "3", "4"]);
}

/// The frame arrives byte for byte, on its own channel only, whatever characters the channel
/// name holds (spaces, dots, wildcards of subject-based engines, and an escaped look-alike).
pub(crate) async fn publications_arrive_unchanged_on_their_own_channel(engine: &dyn Engine) {
    let (a, b) = pair(engine).await;
    let odd = unique("chan with spaces.and*wild>cards");
    let lookalike = odd.replace(' ', "=20");
    let unsubscribed = unique("chan with spaces.and*wild>cards.more");
    a.broker.subscribe(&lookalike).await.unwrap();
    a.broker.subscribe(&odd).await.unwrap();

    b.broker
        .publish(publication(&unsubscribed, r#""not subscribed""#))
        .await
        .unwrap();
    b.broker
        .publish(publication(&lookalike, r#"{"a" : 1.50, "b":[true,null]}"#))
        .await
        .unwrap();
    b.broker
        .publish(publication(&odd, r#"[ "odd" ]"#))
        .await
        .unwrap();
    assert!(a.sink.wait_for(2, WAIT).await, "got {:?}", a.sink.data());
    tokio::time::sleep(QUIET).await;
    // Order is only promised within one channel: compare as a set of (channel, data).
    let mut got: Vec<(String, String)> = a.sink.channels().into_iter().zip(a.sink.data()).collect();
    got.sort();
    let mut expected = vec![
        (lookalike, r#"{"a" : 1.50, "b":[true,null]}"#.to_owned()),
        (odd, r#"[ "odd" ]"#.to_owned()),
    ];
    expected.sort();
    assert_eq!(got, expected);
}

/// `describe` names the engine, and a reachable engine is connected.
pub(crate) async fn engine_reports_itself(engine: &dyn Engine) {
    let a = engine.instance().await;
    assert!(
        a.broker.describe().starts_with(engine.name()),
        "{}",
        a.broker.describe()
    );
    assert!(a.broker.is_connected());
}

/// The offsets of `publications`, in order.
fn offsets(publications: &[Publication]) -> Vec<u64> {
    publications
        .iter()
        .map(|p| {
            p.position()
                .expect("a stored publication has a position")
                .offset
        })
        .collect()
}

/// `publish_stored` gives each publication the next offset of the channel's one epoch, delivers
/// it with that position in offset order, and `read_history` returns the retained ones (the
/// last `size`): the last N, or everything after a position (recovered when complete).
pub(crate) async fn stored_publications_are_positioned_delivered_and_read_back(
    engine: &dyn Engine,
) {
    let (a, b) = pair(engine).await;
    let channel = unique("history");
    let policy = HistoryPolicy {
        size: 5,
        ttl: Duration::from_secs(60),
    };
    let empty = a
        .broker
        .read_history(&channel, policy, HistoryRead::Last(10))
        .await
        .unwrap();
    assert_eq!(empty.position.offset, 0, "a new channel starts at offset 0");
    assert!(empty.publications.is_empty());
    subscribe_both(engine, &a, &b, &channel).await;

    let mut acks: Vec<Position> = Vec::new();
    for i in 1..=8 {
        let ack = b
            .broker
            .publish_stored(publication(&channel, &i.to_string()), policy)
            .await
            .unwrap();
        acks.push(ack);
    }
    assert!(
        acks.iter().all(|p| p.epoch == empty.position.epoch),
        "one epoch"
    );
    let acked: Vec<u64> = acks.iter().map(|p| p.offset).collect();
    assert_eq!(acked, (1..=8).collect::<Vec<u64>>(), "gap-free offsets");
    for (name, instance) in [("A", &a), ("B", &b)] {
        assert!(instance.sink.wait_for(8, WAIT).await, "{name}");
        let got = instance.sink.publications();
        assert_eq!(offsets(&got), acked, "{name}: delivered in offset order");
        let positions: Vec<&Position> = got.iter().filter_map(Publication::position).collect();
        assert_eq!(positions, acks.iter().collect::<Vec<_>>(), "{name}");
    }

    let last = a
        .broker
        .read_history(&channel, policy, HistoryRead::Last(3))
        .await
        .unwrap();
    assert_eq!(last.position, acks[7]);
    assert_eq!(offsets(&last.publications), [6, 7, 8]);
    let data: Vec<&str> = last
        .publications
        .iter()
        .map(|p| p.data().unwrap().get())
        .collect();
    assert_eq!(data, ["6", "7", "8"]);
    let all = a
        .broker
        .read_history(&channel, policy, HistoryRead::Last(100))
        .await
        .unwrap();
    assert_eq!(
        offsets(&all.publications),
        [4, 5, 6, 7, 8],
        "the last `size`"
    );
    let since = a
        .broker
        .read_history(&channel, policy, HistoryRead::Since(acks[4].clone()))
        .await
        .unwrap();
    assert!(since.recovered);
    assert_eq!(offsets(&since.publications), [6, 7, 8]);
    let too_old = a
        .broker
        .read_history(&channel, policy, HistoryRead::Since(acks[0].clone()))
        .await
        .unwrap();
    assert!(!too_old.recovered, "offsets 2 and 3 are no longer retained");
    let other_epoch = Position::new(5, "another epoch");
    let other = a
        .broker
        .read_history(&channel, policy, HistoryRead::Since(other_epoch))
        .await
        .unwrap();
    assert!(!other.recovered);
    assert!(other.publications.is_empty());
}

/// Members joined and left on one instance are seen by the other; each new member and each
/// leave is announced once on the presence channel's companion channel.
pub(crate) async fn presence_is_shared_and_announced(engine: &dyn Engine) {
    let (a, b) = pair(engine).await;
    let channel = unique("room");
    let events = presence_channel(&channel);
    a.broker.subscribe(&events).await.unwrap();
    let alice = PresenceMember {
        id: "s1".into(),
        user: Some("alice".into()),
    };
    let anon = PresenceMember {
        id: "s.2".into(),
        user: None,
    };
    a.broker
        .presence_join(&channel, alice.clone())
        .await
        .unwrap();
    b.broker
        .presence_join(&channel, anon.clone())
        .await
        .unwrap();
    // Joining again (same socket) is not a new member.
    b.broker
        .presence_join(&channel, anon.clone())
        .await
        .unwrap();
    let info = b.broker.presence(&channel).await.unwrap();
    assert_eq!(info.count, 2);
    let mut ids: Vec<&str> = info.clients.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["s.2", "s1"]);
    assert!(info.clients.contains(&alice));

    b.broker.presence_leave(&channel, &anon.id).await.unwrap();
    let info = a.broker.presence(&channel).await.unwrap();
    assert_eq!((info.count, info.clients), (1, vec![alice.clone()]));
    assert!(a.sink.wait_for(3, WAIT).await, "{:?}", a.sink.data());
    tokio::time::sleep(QUIET).await;
    let frames: Vec<String> = a
        .sink
        .publications()
        .iter()
        .map(|p| String::from_utf8_lossy(p.frame()).into_owned())
        .collect();
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert!(frames[0].contains("#presenceJoin") && frames[0].contains(r#""s1""#));
    assert!(frames[1].contains("#presenceJoin") && frames[1].contains(r#""s.2""#));
    assert!(frames[2].contains("#presenceLeave") && frames[2].contains(r#""s.2""#));
    a.broker.presence_leave(&channel, &alice.id).await.unwrap();
    assert_eq!(b.broker.presence(&channel).await.unwrap().count, 0);
}

/// Every command returns what `KvCommand`'s documentation says; writes by one instance are
/// read by the other (docs/protocol.md §14.4's captured session, and more).
pub(crate) async fn kv_document_operations(engine: &dyn Engine) {
    let (a, b) = pair(engine).await;
    let (a, b) = (&*a.kv, &*b.kv);
    let user = unique("user.with dots");
    let list = unique("list");
    let scalar = unique("scalar");

    // set creates intermediate maps and returns the value; get reads it back.
    let set = KvCommand::Set {
        key: key(&[&user, "bob"]),
        value: json(r#"{"age":5}"#),
    };
    assert_eq!(run(a, set).await, r#"{"age":5}"#);
    let get_user = || KvCommand::Get { key: key(&[&user]) };
    assert_eq!(run(b, get_user()).await, r#"{"bob":{"age":5}}"#);
    let missing = KvCommand::Get {
        key: key(&[&unique("nope")]),
    };
    assert_eq!(run(b, missing).await, "null");

    // add appends and returns the new item's index.
    let add = |value: &str| KvCommand::Add {
        key: key(&[&list]),
        value: json(value),
    };
    assert_eq!(run(a, add(r#""i1""#)).await, "0");
    assert_eq!(run(b, add(r#""i2""#)).await, "1");
    let range = KvCommand::GetRange {
        key: key(&[&list]),
        from: 0,
        to: Some(1),
    };
    assert_eq!(run(a, range).await, r#"["i1"]"#);
    let tail = KvCommand::GetRange {
        key: key(&[&list]),
        from: 1,
        to: None,
    };
    assert_eq!(run(a, tail).await, r#"["i2"]"#);
    assert_eq!(run(b, KvCommand::Count { key: key(&[&list]) }).await, "2");
    let has = |path: &str| KvCommand::HasKey { key: key(&[path]) };
    assert_eq!(run(a, has(&unique("nope"))).await, "false");
    assert_eq!(run(a, has(&list)).await, "true");
    // pop removes the last item and returns it in a list.
    assert_eq!(
        run(b, KvCommand::Pop { key: key(&[&list]) }).await,
        r#"["i2"]"#
    );

    // removeRange removes [from, to) and returns it; remove returns what it removed.
    let abc = KvCommand::Set {
        key: key(&[&list]),
        value: json(r#"["a","b","c"]"#),
    };
    run(a, abc).await;
    let middle = KvCommand::RemoveRange {
        key: key(&[&list]),
        from: 1,
        to: Some(2),
    };
    assert_eq!(run(b, middle).await, r#"["b"]"#);
    let remove_list = KvCommand::Remove { key: key(&[&list]) };
    assert_eq!(run(a, remove_list).await, r#"["a","c"]"#);
    assert_eq!(run(b, has(&list)).await, "false");
    let nested = KvCommand::Remove {
        key: key(&[&user, "bob", "age"]),
    };
    assert_eq!(run(b, nested).await, "5");
    assert_eq!(run(a, get_user()).await, r#"{"bob":{}}"#);

    // A scalar counts as 1; adding to it makes it a list.
    let one = KvCommand::Set {
        key: key(&[&scalar]),
        value: json("1"),
    };
    run(a, one).await;
    let count_scalar = || KvCommand::Count {
        key: key(&[&scalar]),
    };
    assert_eq!(run(b, count_scalar()).await, "1");
    let two = KvCommand::Add {
        key: key(&[&scalar]),
        value: json("2"),
    };
    assert_eq!(run(b, two).await, "1");
    let get_scalar = KvCommand::Get {
        key: key(&[&scalar]),
    };
    assert_eq!(run(a, get_scalar).await, "[1,2]");
    let count_missing = KvCommand::Count {
        key: key(&[&unique("nope")]),
    };
    assert_eq!(run(a, count_missing).await, "0");

    for top in [&user, &scalar] {
        run(a, KvCommand::Remove { key: key(&[top]) }).await;
        assert_eq!(run(b, has(top)).await, "false");
    }
}

/// Read-modify-writes of one key from both instances at once lose nothing.
pub(crate) async fn kv_concurrent_writes_lose_nothing(engine: &dyn Engine) {
    let (a, b) = pair(engine).await;
    let log = unique("log");
    let adds = (0..40).map(|i| {
        let kv = if i % 2 == 0 { &a.kv } else { &b.kv };
        kv.execute(KvCommand::Add {
            key: key(&[&log, "entries"]),
            value: json(&i.to_string()),
        })
    });
    let indexes = futures_util::future::try_join_all(adds).await.unwrap();
    let mut indexes: Vec<u64> = indexes.iter().map(|j| j.get().parse().unwrap()).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..40).collect::<Vec<u64>>());
    let count = KvCommand::Count {
        key: key(&[&log, "entries"]),
    };
    assert_eq!(run(&*b.kv, count).await, "40");
    let entries: Vec<u64> = serde_json::from_str(
        &run(
            &*a.kv,
            KvCommand::Get {
                key: key(&[&log, "entries"]),
            },
        )
        .await,
    )
    .unwrap();
    let mut entries = entries;
    entries.sort_unstable();
    assert_eq!(entries, (0..40).collect::<Vec<u64>>(), "every value landed");
    run(&*a.kv, KvCommand::Remove { key: key(&[&log]) }).await;
}

/// `expire` removes top-level and nested paths after the delay, also for an instance that
/// never saw the command; setting a key again does not cancel its expiry; `unexpire` does.
pub(crate) async fn kv_expiry(engine: &dyn Engine) {
    let (a, b) = pair(engine).await;
    let (a, b) = (&*a.kv, &*b.kv);
    let session = unique("session");
    let kept = unique("kept");
    let user = unique("user");
    let set = |path: &[&str], value: &str| KvCommand::Set {
        key: key(path),
        value: json(value),
    };
    run(a, set(&[&session], "1")).await;
    run(a, set(&[&kept], "1")).await;
    run(a, set(&[&user, "bob"], r#"{"age":5}"#)).await;
    run(a, set(&[&user, "amy"], "2")).await;
    let expire = KvCommand::Expire {
        keys: vec![key(&[&session]), key(&[&kept]), key(&[&user, "bob"])],
        seconds: 1,
    };
    run(a, expire).await;
    let unexpire = KvCommand::Unexpire {
        keys: vec![key(&[&kept])],
    };
    run(b, unexpire).await;
    // Setting the key again does not cancel its expiry.
    run(b, set(&[&session], "2")).await;
    let get = |path: &str| KvCommand::Get { key: key(&[path]) };
    assert_eq!(run(b, get(&session)).await, "2");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let seen = (
            run(b, get(&session)).await,
            run(b, get(&kept)).await,
            run(b, get(&user)).await,
        );
        if seen == ("null".into(), "1".into(), r#"{"amy":2}"#.into()) {
            break;
        }
        assert!(Instant::now() < deadline, "not expired: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(run(a, get(&user)).await, r#"{"amy":2}"#);
    assert_eq!(run(a, get(&session)).await, "null");
    for top in [&kept, &user] {
        run(a, KvCommand::Remove { key: key(&[top]) }).await;
    }
}

/// `getAll` returns the whole store as one map (written by both instances), `removeAll`
/// empties it for everyone.
pub(crate) async fn kv_whole_store(engine: &dyn Engine) {
    let (a, b) = pair(engine).await;
    let (a, b) = (&*a.kv, &*b.kv);
    let set = |path: &[&str], value: &str| KvCommand::Set {
        key: key(path),
        value: json(value),
    };
    run(a, set(&["session"], "1")).await;
    run(b, set(&["user", "bob"], r#"{"age":5}"#)).await;
    run(a, set(&["user", "amy"], "2")).await;
    run(b, set(&["list"], r#"["x"]"#)).await;
    run(a, set(&[""], "0")).await; // an empty segment is a key like any other
    let all: serde_json::Value = serde_json::from_str(&run(b, KvCommand::GetAll).await).unwrap();
    assert_eq!(
        all,
        serde_json::json!({"session": 1, "user": {"bob": {"age": 5}, "amy": 2}, "list": ["x"], "": 0})
    );
    assert_eq!(run(b, KvCommand::RemoveAll).await, "null");
    assert_eq!(run(a, KvCommand::GetAll).await, "{}");
    let gone = KvCommand::HasKey {
        key: key(&["user"]),
    };
    assert_eq!(run(a, gone).await, "false");
}

/// A command without a key path fails with a typed error and changes nothing.
pub(crate) async fn kv_rejects_an_empty_key(engine: &dyn Engine) {
    let a = engine.instance().await;
    let kept = unique("kept");
    let set = KvCommand::Set {
        key: key(&[&kept]),
        value: json("1"),
    };
    run(&*a.kv, set).await;
    for command in [
        KvCommand::Get { key: vec![] },
        KvCommand::Set {
            key: vec![],
            value: json("2"),
        },
        KvCommand::Remove { key: vec![] },
    ] {
        let shown = format!("{command:?}");
        let err = a.kv.execute(command).await.unwrap_err();
        assert!(matches!(err, BrokerError::Engine(_)), "{shown}: {err:?}");
    }
    let get = KvCommand::Get { key: key(&[&kept]) };
    assert_eq!(run(&*a.kv, get).await, "1", "nothing changed");
    run(&*a.kv, KvCommand::Remove { key: key(&[&kept]) }).await;
}
