//! History and presence on the NATS engine (JetStream), two brokers sharing one server: one
//! gap-free sequence per channel under concurrent publishers, live deliveries carrying the
//! acknowledged positions in offset order, history reads (last N, since a position, bounded by
//! `size`), and presence with join/leave events across instances.
#![cfg(feature = "nats")]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sc_broker::nats::{self, NatsOptions};
use sc_broker::{
    Broker, DeliverySink, HistoryPolicy, HistoryRead, NatsBroker, Position, PresenceMember,
};
use sc_protocol::Publication;
use sc_test_support::engine::{EngineKind, machine_engine, unique};
use sc_test_support::sink::publication;

const WAIT: Duration = Duration::from_secs(10);

/// Keeps every delivery.
#[derive(Default)]
struct Sink(Mutex<Vec<Publication>>);

impl DeliverySink for Sink {
    fn deliver(&self, publication: Publication) {
        self.0.lock().push(publication);
    }
}

impl Sink {
    fn on(&self, channel: &str) -> Vec<Publication> {
        self.0
            .lock()
            .iter()
            .filter(|p| p.channel() == channel)
            .cloned()
            .collect()
    }

    async fn wait_for(&self, channel: &str, n: usize) -> Vec<Publication> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.on(channel);
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn broker(url: &str, options: &NatsOptions) -> (NatsBroker, Arc<Sink>) {
    let (broker, _kv) = nats::connect(url, options.clone()).await.expect("connect");
    let sink = Arc::new(Sink::default());
    broker.attach(sink.clone());
    (broker, sink)
}

fn policy(size: usize) -> HistoryPolicy {
    HistoryPolicy {
        size,
        ttl: Duration::from_secs(600),
    }
}

fn offsets(publications: &[Publication]) -> Vec<u64> {
    publications
        .iter()
        .map(|p| p.position().expect("a position").offset)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_share_one_sequence_and_the_history() {
    let (url, _guard) = machine_engine(EngineKind::Nats);
    let options = NatsOptions {
        subject_prefix: format!("{}.", unique("scst")),
        ..NatsOptions::default()
    };
    let (a, sink_a) = broker(&url, &options).await;
    let (b, sink_b) = broker(&url, &options).await;
    let channel = "room/seq";
    let policy = policy(30);

    // Before any publication: offset 0, and the epoch the first publication will carry.
    let empty = a
        .read_history(channel, policy, HistoryRead::Last(10))
        .await
        .unwrap();
    assert_eq!(empty.position.offset, 0);
    assert!(empty.publications.is_empty());
    a.subscribe(channel).await.unwrap();
    b.subscribe(channel).await.unwrap();

    // 20 publishers on each broker at once: 40 distinct gap-free offsets, one epoch.
    fn publish<'a>(
        broker: &'a NatsBroker,
        channel: &str,
        i: usize,
        policy: HistoryPolicy,
    ) -> sc_broker::BoxFuture<'a, Result<Position, sc_broker::BrokerError>> {
        broker.publish_stored(publication(channel, &i.to_string()), policy)
    }
    let mut acks: Vec<Position> = Vec::new();
    let (from_a, from_b) = tokio::join!(
        futures_util::future::join_all((0..20).map(|i| publish(&a, channel, i, policy))),
        futures_util::future::join_all((20..40).map(|i| publish(&b, channel, i, policy))),
    );
    for ack in from_a.into_iter().chain(from_b) {
        acks.push(ack.expect("stored"));
    }
    assert!(acks.iter().all(|p| p.epoch == empty.position.epoch));
    let mut sorted: Vec<u64> = acks.iter().map(|p| p.offset).collect();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=40).collect::<Vec<u64>>());

    // Both brokers' subscribers get every publication, in offset order, with the acked positions.
    for sink in [&sink_a, &sink_b] {
        let got = sink.wait_for(channel, 40).await;
        assert_eq!(offsets(&got), (1..=40).collect::<Vec<u64>>());
        for p in &got {
            let position = p.position().unwrap();
            assert!(acks.contains(position));
        }
    }

    // History: bounded by size (30), last N, since a position.
    let last = b
        .read_history(channel, policy, HistoryRead::Last(5))
        .await
        .unwrap();
    assert_eq!(last.position.offset, 40);
    assert_eq!(offsets(&last.publications), (36..=40).collect::<Vec<u64>>());
    let all = b
        .read_history(channel, policy, HistoryRead::Last(1000))
        .await
        .unwrap();
    assert_eq!(offsets(&all.publications), (11..=40).collect::<Vec<u64>>());
    let epoch = &last.position.epoch;
    let since = a
        .read_history(
            channel,
            policy,
            HistoryRead::Since(Position::new(25, epoch)),
        )
        .await
        .unwrap();
    assert!(since.recovered);
    assert_eq!(
        offsets(&since.publications),
        (26..=40).collect::<Vec<u64>>()
    );
    let too_old = a
        .read_history(channel, policy, HistoryRead::Since(Position::new(2, epoch)))
        .await
        .unwrap();
    assert!(!too_old.recovered, "offsets 3..=10 are no longer retained");
    assert_eq!(
        offsets(&too_old.publications),
        (11..=40).collect::<Vec<u64>>()
    );
    let other_epoch = a
        .read_history(
            channel,
            policy,
            HistoryRead::Since(Position::new(5, "nope")),
        )
        .await
        .unwrap();
    assert!(!other_epoch.recovered);
    assert!(other_epoch.publications.is_empty());
    let ahead = a
        .read_history(
            channel,
            policy,
            HistoryRead::Since(Position::new(41, epoch)),
        )
        .await
        .unwrap();
    assert!(!ahead.recovered);

    // A fresh channel published to from both brokers at once, with no read before: one epoch,
    // offsets 1..=N, and a later read agrees.
    let (x, y) = tokio::join!(
        futures_util::future::join_all((0..10).map(|i| publish(&a, "room/fresh", i, policy))),
        futures_util::future::join_all((10..20).map(|i| publish(&b, "room/fresh", i, policy))),
    );
    let acks: Vec<Position> = x.into_iter().chain(y).map(|r| r.unwrap()).collect();
    let mut sorted: Vec<u64> = acks.iter().map(|p| p.offset).collect();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=20).collect::<Vec<u64>>());
    let read = a
        .read_history("room/fresh", policy, HistoryRead::Last(0))
        .await
        .unwrap();
    assert!(acks.iter().all(|p| p.epoch == read.position.epoch));
    assert_eq!(read.position.offset, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_publishers_on_one_channel() {
    let (url, _guard) = machine_engine(EngineKind::Nats);
    let options = NatsOptions {
        subject_prefix: format!("{}.", unique("scsc")),
        ..NatsOptions::default()
    };
    let (a, sink) = broker(&url, &options).await;
    let channel = "room/busy";
    a.subscribe(channel).await.unwrap();
    let policy = policy(1000);
    let acks = futures_util::future::join_all(
        (0..1000).map(|i| a.publish_stored(publication(channel, &i.to_string()), policy)),
    )
    .await;
    let mut offsets_acked: Vec<u64> = acks.into_iter().map(|r| r.unwrap().offset).collect();
    offsets_acked.sort_unstable();
    assert_eq!(offsets_acked, (1..=1000).collect::<Vec<u64>>());
    let got = sink.wait_for(channel, 1000).await;
    assert_eq!(offsets(&got), (1..=1000).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_history_starts_a_new_epoch() {
    let (url, _guard) = machine_engine(EngineKind::Nats);
    let options = NatsOptions {
        subject_prefix: format!("{}.", unique("scse")),
        ..NatsOptions::default()
    };
    let (a, _sink) = broker(&url, &options).await;
    let short = HistoryPolicy {
        size: 10,
        ttl: Duration::from_secs(1),
    };
    let first = a
        .publish_stored(publication("room/ttl", "1"), short)
        .await
        .unwrap();
    assert_eq!(first.offset, 1);
    // Once the publication (and the epoch marker) expired: nothing retained, a new epoch at
    // offset 0, and a client holding the old position is told it did not recover.
    let deadline = tokio::time::Instant::now() + WAIT;
    let page = loop {
        let page = a
            .read_history("room/ttl", short, HistoryRead::Since(first.clone()))
            .await
            .unwrap();
        if page.position.epoch != first.epoch {
            break page;
        }
        assert_eq!(page.position.offset, 1, "{page:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the history never expired"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(page.position.offset, 0);
    assert!(!page.recovered);
    assert!(page.publications.is_empty());
    let next = a
        .publish_stored(publication("room/ttl", "2"), short)
        .await
        .unwrap();
    assert_eq!(next, Position::new(1, &page.position.epoch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_and_announced() {
    let (url, _guard) = machine_engine(EngineKind::Nats);
    let options = NatsOptions {
        subject_prefix: format!("{}.", unique("scsp")),
        ..NatsOptions::default()
    };
    let (a, sink_a) = broker(&url, &options).await;
    let (b, _sink_b) = broker(&url, &options).await;
    let channel = "room/p";
    let events = sc_broker::stream::presence_channel(channel);
    a.subscribe(&events).await.unwrap();
    let alice = PresenceMember {
        id: "s1".into(),
        user: Some("alice".into()),
    };
    let anon = PresenceMember {
        id: "s.2".into(),
        user: None,
    };
    a.presence_join(channel, alice.clone()).await.unwrap();
    b.presence_join(channel, anon.clone()).await.unwrap();
    // Joining again (same socket) is not a new member.
    b.presence_join(channel, anon.clone()).await.unwrap();
    let info = b.presence(channel).await.unwrap();
    assert_eq!(info.count, 2);
    let mut ids: Vec<String> = info.clients.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec!["s.2".to_owned(), "s1".to_owned()]);
    assert!(info.clients.contains(&alice));

    b.presence_leave(channel, &anon.id).await.unwrap();
    assert_eq!(a.presence(channel).await.unwrap().clients, vec![alice]);
    let frames: Vec<String> = sink_a
        .wait_for(&events, 3)
        .await
        .iter()
        .map(|p| String::from_utf8_lossy(p.frame()).into_owned())
        .collect();
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert!(frames[0].contains("#presenceJoin") && frames[0].contains("\"s1\""));
    assert!(frames[1].contains("#presenceJoin") && frames[1].contains("\"s.2\""));
    assert!(frames[2].contains("#presenceLeave") && frames[2].contains("\"s.2\""));

    // A broker that goes away without a word: its members leave once its lease expires.
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        if b.presence(channel).await.unwrap().count == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped broker's member never left"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
