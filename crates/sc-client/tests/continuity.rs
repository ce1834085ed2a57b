//! Continuity against the real server (`sc-server` in-process, with history and presence on
//! `room/*`), through a TCP proxy that cuts connections: every acknowledged publication reaches
//! a recovering subscriber exactly once and in order, an epoch change is reported as
//! `NotRecovered`, history on join, and presence with login names.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::proxy::Proxy;
use common::{WAIT, connected_client, next_event, options, within};
use futures_util::StreamExt;
use sc_client::{
    Channel, Client, ClientEvent, PresenceChange, ProtocolVersion, Publication, Recovery,
    SubscribeOptions,
};
use sc_server::ServerOptions;
use sc_server::options::HistoryOption;
use sc_test_support::interop;
use sc_test_support::server::TestServer;
use serde_json::json;

/// Publications in the mid-stream test.
const STREAM: u64 = 600;

async fn server() -> TestServer {
    interop::start(ServerOptions {
        history: vec![HistoryOption {
            pattern: "room/*".to_owned(),
            size: 1000,
            ttl: 600,
        }],
        presence: vec!["room/*".to_owned()],
        ..ServerOptions::default()
    })
    .await
}

async fn subscribed(client: &Client, name: &str, options: SubscribeOptions) -> Channel {
    let channel = client
        .subscribe_with(name, options)
        .await
        .expect("subscribe");
    within("the subscription", channel.subscribed())
        .await
        .expect("subscribed");
    channel
}

fn number(item: &Publication) -> u64 {
    item.parse::<u64>().expect("a number")
}

/// A publisher streams `STREAM` numbers while the subscriber's connection is cut twice: the
/// subscriber ends up with every acknowledged number exactly once, in order, with consecutive
/// offsets, and each reconnect reports `Recovered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_lose_nothing_and_double_nothing() {
    let server = server().await;
    let proxy = Proxy::start(server.addr).await;
    let (subscriber, mut events) =
        connected_client(&proxy.url(), options(ProtocolVersion::V2)).await;
    let (publisher, _) = connected_client(&server.url(), options(ProtocolVersion::V2)).await;
    let mut room = subscribed(&subscriber, "room/stream", SubscribeOptions::default()).await;
    assert_eq!(
        room.position().map(|p| p.offset),
        Some(0),
        "a fresh channel"
    );

    let publishing = tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        for n in 1..=STREAM {
            if let Ok(Some(position)) = publisher.invoke_publish_position("room/stream", n).await {
                assert_eq!(
                    position.offset, n,
                    "one publisher: offsets follow the numbers"
                );
                acked.insert(n);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        acked
    });

    let mut received = Vec::new();
    let mut offsets = Vec::new();
    let mut cuts = 0;
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while received.len() < STREAM as usize {
        let item = tokio::time::timeout_at(deadline, room.next())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} items", received.len()))
            .expect("the channel stays open");
        received.push(number(&item));
        offsets.push(
            item.offset()
                .expect("a history channel's items have offsets"),
        );
        if (received.len() == 150 && cuts == 0) || (received.len() == 400 && cuts == 1) {
            proxy.cut();
            cuts += 1;
            let event = next_event(&mut events, "the recovery", |e| {
                matches!(e, ClientEvent::Recovery { .. })
            })
            .await;
            assert!(
                matches!(&event, ClientEvent::Recovery { channel, recovery: Recovery::Recovered { .. }, .. } if channel == "room/stream"),
                "{event:?}"
            );
        }
    }
    let acked = within("the publisher", publishing).await.expect("task");
    assert_eq!(
        acked.len() as u64,
        STREAM,
        "the server stayed up: every publish acked"
    );
    assert_eq!(cuts, 2);
    assert_eq!(
        received,
        (1..=STREAM).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    assert_eq!(offsets, (1..=STREAM).collect::<Vec<_>>());
    assert_eq!(room.dropped(), 0);
}

/// A server restarted empty has a new epoch: the resubscribe says `NotRecovered` and the stream
/// continues in the new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_a_new_epoch() {
    let first = server().await;
    let proxy = Proxy::start(first.addr).await;
    let (subscriber, mut events) =
        connected_client(&proxy.url(), options(ProtocolVersion::V1)).await;
    let mut room = subscribed(&subscriber, "room/restart", SubscribeOptions::default()).await;
    let (publisher, _) = connected_client(&first.url(), options(ProtocolVersion::V2)).await;
    for n in 1..=3 {
        publisher
            .invoke_publish("room/restart", n)
            .await
            .expect("publish");
    }
    for n in 1..=3 {
        assert_eq!(
            number(&within("an item", room.next()).await.expect("open")),
            n
        );
    }
    let before = room.position().expect("a position");
    assert_eq!(before.offset, 3);

    drop(publisher);
    drop(first);
    let second = server().await;
    proxy.set_target(second.addr);
    proxy.cut();
    let event = next_event(&mut events, "the recovery", |e| {
        matches!(e, ClientEvent::Recovery { .. })
    })
    .await;
    let ClientEvent::Recovery {
        channel,
        recovery,
        position,
    } = event
    else {
        unreachable!()
    };
    assert_eq!(channel, "room/restart");
    assert_eq!(
        recovery,
        Recovery::NotRecovered {
            from: Some(before.clone())
        }
    );
    assert_ne!(position.epoch, before.epoch, "a new epoch");

    let (publisher, _) = connected_client(&second.url(), options(ProtocolVersion::V2)).await;
    publisher
        .invoke_publish("room/restart", "fresh")
        .await
        .expect("publish");
    let item = within("the new epoch's first", room.next())
        .await
        .expect("open");
    assert_eq!(item.get(), r#""fresh""#);
    assert_eq!(
        item.position.as_ref().map(|p| &p.epoch),
        Some(&position.epoch)
    );
}

/// History on join replays the last `limit` publications before the acknowledgement; presence
/// lists subscribers with their login names and streams joins and leaves.
#[tokio::test]
async fn history_on_join_and_presence() {
    let server = server().await;
    let (alice, _) = connected_client(&server.url(), options(ProtocolVersion::V2)).await;
    alice
        .invoke("login", json!({"username": "alice"}))
        .await
        .expect("login");
    let mut alice_room = subscribed(&alice, "room/chat", SubscribeOptions::default()).await;
    for n in 1..=5 {
        alice.invoke_publish("room/chat", n).await.expect("publish");
    }
    for n in 1..=5 {
        assert_eq!(
            number(&within("own", alice_room.next()).await.expect("open")),
            n
        );
    }
    let mut joins = alice.presence_events();

    let (bob, _) = connected_client(&server.url(), options(ProtocolVersion::V1)).await;
    let mut bob_room = subscribed(
        &bob,
        "room/chat",
        SubscribeOptions {
            history: Some(3),
            ..SubscribeOptions::default()
        },
    )
    .await;
    let replayed: Vec<u64> = vec![
        number(&within("history", bob_room.next()).await.expect("open")),
        number(&within("history", bob_room.next()).await.expect("open")),
        number(&within("history", bob_room.next()).await.expect("open")),
    ];
    assert_eq!(replayed, [3, 4, 5], "the last three, oldest first");
    assert_eq!(bob_room.position().map(|p| p.offset), Some(5));

    let join = within("bob's join", joins.next()).await.expect("open");
    assert_eq!(join.change, PresenceChange::Join);
    assert_eq!(join.channel, "room/chat");
    assert_eq!(join.client.id, bob.id().expect("bob's id"));
    assert_eq!(join.client.user, None);

    let presence = bob_room.presence().await.expect("presence");
    assert_eq!(presence.count, 2);
    let mut users: Vec<_> = presence
        .clients
        .iter()
        .map(|c| c.user.clone().unwrap_or_default())
        .collect();
    users.sort();
    assert_eq!(users, ["", "alice"]);

    // Not subscribed: a PresenceError.
    let error = bob.presence("room/elsewhere").await.unwrap_err();
    assert!(error.to_string().contains("room/elsewhere"), "{error}");

    bob_room.unsubscribe().await.expect("unsubscribe");
    let leave = within("bob's leave", joins.next()).await.expect("open");
    assert_eq!(
        (leave.change, leave.client.id.as_str()),
        (PresenceChange::Leave, join.client.id.as_str())
    );
}
