//! The client's side of EXTENSIONS.md on the wire, against a scripted server: positions from
//! acks and deliveries, `recover` on every resubscribe, history on join, the recovery events,
//! and presence.

mod common;

use common::fake::FakeServer;
use common::{connected_client, next_event, options, within};
use futures_util::StreamExt;
use sc_client::{
    ClientEvent, PresenceChange, ProtocolVersion, Recovery, StreamPosition, SubscribeOptions,
};
use serde_json::json;

/// Reads the next `#subscribe` and returns its cid and data.
async fn read_subscribe(conn: &mut common::fake::FakeConn) -> (u64, serde_json::Value) {
    let frame = conn.recv_json().await;
    assert_eq!(frame["event"], "#subscribe", "{frame}");
    (frame["cid"].as_u64().expect("cid"), frame["data"].clone())
}

#[tokio::test]
async fn positions_recover_and_report() {
    let mut fake = FakeServer::start().await;
    let url = fake.url();
    let connecting =
        tokio::spawn(async move { connected_client(&url, options(ProtocolVersion::V2)).await });
    let mut first = fake.next_conn().await;
    first.handshake("s1", 20_000, false).await;
    let (client, mut client_events) = within("connect", connecting).await.expect("task");
    let conn = &mut first;

    // History on join: the first subscribe asks for the last 2 publications.
    let mut room = client
        .subscribe_with(
            "room/1",
            SubscribeOptions {
                history: Some(2),
                data: Some(sc_client::Json::from_text(r#"{"app":1}"#).unwrap()),
                ..SubscribeOptions::default()
            },
        )
        .await
        .expect("subscribe");
    let (cid, data) = read_subscribe(conn).await;
    assert_eq!(
        data,
        json!({"channel":"room/1","data":{"app":1,"history":{"limit":2}}})
    );
    conn.send(
        r##"{"event":"#publish","data":{"channel":"room/1","data":"a","offset":4,"epoch":"E1"}}"##,
    )
    .await;
    conn.send(
        r##"{"event":"#publish","data":{"channel":"room/1","data":"b","offset":5,"epoch":"E1"}}"##,
    )
    .await;
    conn.send(&format!(
        r#"{{"rid":{cid},"data":{{"offset":5,"epoch":"E1"}}}}"#
    ))
    .await;
    within("subscribed", room.subscribed())
        .await
        .expect("subscribed");
    for (text, offset) in [("\"a\"", 4), ("\"b\"", 5)] {
        let item = within("a replayed publication", room.next())
            .await
            .expect("item");
        assert_eq!(item.get(), text);
        assert_eq!(item.position, Some(StreamPosition::new(offset, "E1")));
    }
    // A live one, and a duplicate of it (dropped).
    let live =
        r##"{"event":"#publish","data":{"channel":"room/1","data":"c","offset":6,"epoch":"E1"}}"##;
    conn.send(live).await;
    conn.send(live).await;
    let item = within("live", room.next()).await.expect("item");
    assert_eq!((item.get(), item.offset()), ("\"c\"", Some(6)));
    assert_eq!(room.position(), Some(StreamPosition::new(6, "E1")));

    // The server drops the connection; the resubscribe recovers from 6 (without history).
    conn.close(4321, "dropped").await;
    let mut conn = fake.next_conn().await;
    conn.handshake("s2", 20_000, false).await;
    let (cid, data) = read_subscribe(&mut conn).await;
    assert_eq!(
        data,
        json!({"channel":"room/1","data":{"app":1,"recover":{"offset":6,"epoch":"E1"}}})
    );
    conn.send(
        r##"{"event":"#publish","data":{"channel":"room/1","data":"d","offset":7,"epoch":"E1"}}"##,
    )
    .await;
    conn.send(&format!(
        r#"{{"rid":{cid},"data":{{"recovered":true,"offset":7,"epoch":"E1"}}}}"#
    ))
    .await;
    let item = within("recovered", room.next()).await.expect("item");
    assert_eq!((item.get(), item.offset()), ("\"d\"", Some(7)));
    let event = next_event(&mut client_events, "Recovery", |e| {
        matches!(e, ClientEvent::Recovery { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::Recovery {
            channel: "room/1".into(),
            recovery: Recovery::Recovered {
                from: StreamPosition::new(6, "E1")
            },
            position: StreamPosition::new(7, "E1"),
        }
    );

    // A live delivery with a new epoch: the history was lost under us.
    conn.send(
        r##"{"event":"#publish","data":{"channel":"room/1","data":"x","offset":1,"epoch":"E2"}}"##,
    )
    .await;
    let event = next_event(&mut client_events, "Recovery", |e| {
        matches!(e, ClientEvent::Recovery { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::Recovery {
            channel: "room/1".into(),
            recovery: Recovery::NotRecovered {
                from: Some(StreamPosition::new(7, "E1"))
            },
            position: StreamPosition::new(1, "E2"),
        }
    );
    let item = within("new epoch", room.next()).await.expect("item");
    assert_eq!(item.position, Some(StreamPosition::new(1, "E2")));

    // Next reconnect: the server answers `recovered: false`.
    conn.close(4321, "dropped").await;
    let mut conn = fake.next_conn().await;
    conn.handshake("s3", 20_000, false).await;
    let (cid, data) = read_subscribe(&mut conn).await;
    assert_eq!(data["data"]["recover"], json!({"offset":1,"epoch":"E2"}));
    conn.send(&format!(
        r#"{{"rid":{cid},"data":{{"recovered":false,"offset":0,"epoch":"E3"}}}}"#
    ))
    .await;
    let event = next_event(&mut client_events, "Recovery", |e| {
        matches!(e, ClientEvent::Recovery { .. })
    })
    .await;
    assert!(
        matches!(&event, ClientEvent::Recovery { recovery: Recovery::NotRecovered { .. }, position, .. } if *position == StreamPosition::new(0, "E3")),
        "{event:?}"
    );

    // Presence: the query, its answer, and the join/leave stream.
    let mut presence_events = client.presence_events();
    let asking = tokio::spawn({
        let client = client.clone();
        async move { client.presence("room/1").await }
    });
    let frame = conn.recv_json().await;
    assert_eq!(frame["event"], "#presence");
    assert_eq!(frame["data"], json!({"channel":"room/1"}));
    let cid = frame["cid"].as_u64().expect("cid");
    conn.send(&format!(
        r#"{{"rid":{cid},"data":{{"count":2,"clients":[{{"id":"s3","user":null}},{{"id":"o","user":"alice"}}]}}}}"#
    ))
    .await;
    let presence = within("presence", asking)
        .await
        .expect("task")
        .expect("answer");
    assert_eq!(presence.count, 2);
    assert_eq!(presence.clients[1].user.as_deref(), Some("alice"));
    conn.send(r##"{"event":"#presenceJoin","data":{"channel":"room/1","client":{"id":"b","user":"bob"}}}"##)
        .await;
    conn.send(r##"{"event":"#presenceLeave","data":{"channel":"room/1","client":{"id":"b","user":"bob"}}}"##)
        .await;
    let join = within("join", presence_events.next()).await.expect("join");
    let leave = within("leave", presence_events.next())
        .await
        .expect("leave");
    assert_eq!(
        (join.change, leave.change),
        (PresenceChange::Join, PresenceChange::Leave)
    );
    assert_eq!(join.client.user.as_deref(), Some("bob"));

    // A refused query is the server's error.
    let asking = tokio::spawn({
        let client = client.clone();
        async move { client.presence("elsewhere").await }
    });
    let cid = conn.recv_json().await["cid"].as_u64().expect("cid");
    conn.send(&format!(
        r#"{{"rid":{cid},"error":{{"name":"PresenceError","message":"Not subscribed to elsewhere"}}}}"#
    ))
    .await;
    let error = within("refusal", asking).await.expect("task").unwrap_err();
    assert!(error.to_string().contains("elsewhere"), "{error}");
}

/// A subscribe refused with `BrokerError` (the channel's store is down) stays pending and is
/// sent again, still recovering from the position held.
#[tokio::test]
async fn broker_error_is_retried() {
    let mut fake = FakeServer::start().await;
    let url = fake.url();
    let connecting =
        tokio::spawn(async move { connected_client(&url, options(ProtocolVersion::V2)).await });
    let mut conn = fake.next_conn().await;
    conn.handshake("s1", 20_000, false).await;
    let (client, mut events) = within("connect", connecting).await.expect("task");
    let room = client
        .subscribe_with(
            "room/1",
            SubscribeOptions {
                recover: Some(StreamPosition::new(9, "E1")),
                ..SubscribeOptions::default()
            },
        )
        .await
        .expect("subscribe");
    let (cid, data) = read_subscribe(&mut conn).await;
    assert_eq!(data["data"]["recover"], json!({"offset":9,"epoch":"E1"}));
    conn.send(&format!(
        r#"{{"rid":{cid},"error":{{"name":"BrokerError","message":"engine down"}}}}"#
    ))
    .await;
    let (cid, data) = read_subscribe(&mut conn).await;
    assert_eq!(
        data["data"]["recover"],
        json!({"offset":9,"epoch":"E1"}),
        "retried"
    );
    assert_eq!(room.state(), sc_client::ChannelState::Pending);
    conn.send(&format!(
        r#"{{"rid":{cid},"data":{{"recovered":true,"offset":9,"epoch":"E1"}}}}"#
    ))
    .await;
    within("subscribed", room.subscribed())
        .await
        .expect("subscribed");
    let event = next_event(&mut events, "Recovery", |e| {
        matches!(
            e,
            ClientEvent::Recovery { .. } | ClientEvent::SubscribeFail { .. }
        )
    })
    .await;
    assert!(
        matches!(&event, ClientEvent::Recovery { recovery, .. } if recovery.is_recovered()),
        "{event:?}"
    );
}
