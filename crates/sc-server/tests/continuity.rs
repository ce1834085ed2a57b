//! EXTENSIONS.md on the wire, single process: positions (E2), recovery (E3), history on join
//! (E4), presence (E5), errors (E6) and the fine points (E7), with raw frames.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Client, TestServer, start_server, v2};
use sc_server::{HistoryOption, MemoryBroker, Position, Server, ServerOptions};

fn options() -> ServerOptions {
    ServerOptions {
        history: vec![HistoryOption {
            pattern: "room/*".into(),
            size: 5,
            ttl: 600,
        }],
        presence: vec!["room/*".into(), "lounge".into()],
        ..v2()
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

/// Subscribes with `data` (raw JSON or empty) and returns the frames up to and including the ack.
async fn subscribe_with(client: &mut Client, channel: &str, data: &str, cid: u64) -> Vec<String> {
    let data = if data.is_empty() {
        String::new()
    } else {
        format!(r#","data":{data}"#)
    };
    client
        .send_text(&format!(
            r##"{{"event":"#subscribe","data":{{"channel":"{channel}"{data}}},"cid":{cid}}}"##
        ))
        .await;
    let mut frames = Vec::new();
    loop {
        let frame = client.recv_text().await;
        let done = frame.starts_with(&format!(r#"{{"rid":{cid},"#))
            || frame == format!(r#"{{"rid":{cid}}}"#);
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

/// The position in a subscribe ack (`{"rid":n,"data":{…"offset":o,"epoch":"e"}}`).
fn ack_position(ack: &str) -> Position {
    let v = json(ack);
    Position::new(
        v["data"]["offset"].as_u64().expect("offset"),
        v["data"]["epoch"].as_str().expect("epoch"),
    )
}

async fn publish_ack(client: &mut Client, channel: &str, data: &str, cid: u64) -> Position {
    client
        .send_text(&format!(
            r##"{{"event":"#publish","data":{{"channel":"{channel}","data":{data}}},"cid":{cid}}}"##
        ))
        .await;
    let ack = client.recv_text().await;
    ack_position(&ack)
}

#[tokio::test]
async fn e2_positions_on_every_delivery_and_publish_ack_and_none_on_plain_channels() {
    let ts = start_server(options(), |_| {}).await;
    let mut sub = ts.client().await;
    let mut publisher = ts.client().await;
    let frames = subscribe_with(&mut sub, "room/1", "", 2).await;
    assert_eq!(frames.len(), 1);
    let start = ack_position(&frames[0]);
    assert_eq!(
        start.offset, 0,
        "before the first publication the offset is 0"
    );
    let epoch = start.epoch.to_string();
    assert!(!epoch.is_empty());
    assert_eq!(
        frames[0],
        format!(r#"{{"rid":2,"data":{{"offset":0,"epoch":"{epoch}"}}}}"#)
    );

    publisher
        .send_text(
            r##"{"event":"#publish","data":{"channel":"room/1","data":{"text":"hi"}},"cid":2}"##,
        )
        .await;
    assert_eq!(
        publisher.recv_text().await,
        format!(r#"{{"rid":2,"data":{{"offset":1,"epoch":"{epoch}"}}}}"#)
    );
    assert_eq!(
        sub.recv_text().await,
        format!(
            r##"{{"event":"#publish","data":{{"channel":"room/1","data":{{"text":"hi"}},"offset":1,"epoch":"{epoch}"}}}}"##
        )
    );
    // Server code gets positions the same way.
    let position = ts.server.exchange().publish("room/1", &2).await.unwrap();
    assert_eq!(position, Some(Position::new(2, &epoch)));
    assert_eq!(
        sub.recv_text().await,
        format!(
            r##"{{"event":"#publish","data":{{"channel":"room/1","data":2,"offset":2,"epoch":"{epoch}"}}}}"##
        )
    );

    // A channel matching no pattern is plain SocketCluster: no extra keys anywhere.
    sub.subscribe("news", 3).await;
    publisher
        .send_text(r##"{"event":"#publish","data":{"channel":"news","data":"x"},"cid":3}"##)
        .await;
    assert_eq!(publisher.recv_text().await, r#"{"rid":3}"#);
    assert_eq!(
        sub.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"news","data":"x"}}"##
    );
    assert_eq!(
        ts.server.exchange().publish("news", &1).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn e3_recovery_replays_in_order_before_the_ack() {
    let ts = start_server(options(), |_| {}).await;
    let mut publisher = ts.client().await;
    let mut last = Position::new(0, "");
    for i in 1..=4u64 {
        last = publish_ack(&mut publisher, "room/r", &i.to_string(), 10 + i).await;
        assert_eq!(last.offset, i);
    }
    let epoch = last.epoch.to_string();

    let mut sub = ts.client().await;
    let recover = format!(r#"{{"recover":{{"offset":1,"epoch":"{epoch}"}}}}"#);
    let frames = subscribe_with(&mut sub, "room/r", &recover, 2).await;
    let expected: Vec<String> = (2..=4)
        .map(|i| {
            format!(
                r##"{{"event":"#publish","data":{{"channel":"room/r","data":{i},"offset":{i},"epoch":"{epoch}"}}}}"##
            )
        })
        .chain([format!(
            r#"{{"rid":2,"data":{{"recovered":true,"offset":4,"epoch":"{epoch}"}}}}"#
        )])
        .collect();
    assert_eq!(frames, expected);

    // Up to date: nothing to replay, recovered.
    let mut other = ts.client().await;
    let recover = format!(r#"{{"recover":{{"offset":4,"epoch":"{epoch}"}}}}"#);
    let frames = subscribe_with(&mut other, "room/r", &recover, 2).await;
    assert_eq!(
        frames,
        [format!(
            r#"{{"rid":2,"data":{{"recovered":true,"offset":4,"epoch":"{epoch}"}}}}"#
        )]
    );

    // Another epoch: nothing replayed, not recovered.
    let mut stranger = ts.client().await;
    let frames = subscribe_with(
        &mut stranger,
        "room/r",
        r#"{"recover":{"offset":1,"epoch":"old"}}"#,
        2,
    )
    .await;
    assert_eq!(
        frames,
        [format!(
            r#"{{"rid":2,"data":{{"recovered":false,"offset":4,"epoch":"{epoch}"}}}}"#
        )]
    );

    // Ahead of the channel: not recovered, nothing replayed.
    let mut ahead = ts.client().await;
    let recover = format!(r#"{{"recover":{{"offset":9,"epoch":"{epoch}"}}}}"#);
    let frames = subscribe_with(&mut ahead, "room/r", &recover, 2).await;
    assert_eq!(
        frames,
        [format!(
            r#"{{"rid":2,"data":{{"recovered":false,"offset":4,"epoch":"{epoch}"}}}}"#
        )]
    );
}

#[tokio::test]
async fn e3_recovery_beyond_the_retained_size_replays_what_is_left_and_says_so() {
    let ts = start_server(options(), |_| {}).await;
    let exchange = ts.server.exchange();
    let mut epoch = String::new();
    for i in 1..=8u64 {
        epoch = exchange
            .publish("room/big", &i)
            .await
            .unwrap()
            .unwrap()
            .epoch
            .to_string();
    }
    let mut sub = ts.client().await;
    let recover = format!(r#"{{"recover":{{"offset":1,"epoch":"{epoch}"}}}}"#);
    let frames = subscribe_with(&mut sub, "room/big", &recover, 2).await;
    let offsets: Vec<u64> = frames[..frames.len() - 1]
        .iter()
        .map(|f| json(f)["data"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![4, 5, 6, 7, 8], "size 5 keeps the last five");
    assert_eq!(
        frames.last().unwrap(),
        &format!(r#"{{"rid":2,"data":{{"recovered":false,"offset":8,"epoch":"{epoch}"}}}}"#)
    );
}

/// Recovering subscribers while a publisher keeps publishing: each gets every offset after its
/// position exactly once, in order, across the replay, the ack and the live stream.
#[tokio::test]
async fn e3_recovery_under_live_traffic_loses_and_doubles_nothing() {
    let mut opts = options();
    opts.history[0].size = 10_000;
    opts.presence.clear();
    let ts = start_server(opts, |_| {}).await;
    let exchange = ts.server.exchange();
    let epoch = exchange
        .publish("room/live", &0)
        .await
        .unwrap()
        .unwrap()
        .epoch;
    const TOTAL: u64 = 600;
    let publisher = tokio::spawn(async move {
        for i in 1..TOTAL {
            exchange.publish("room/live", &i).await.unwrap();
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut tasks = Vec::new();
    for k in 0..8u64 {
        let mut client = ts.client().await;
        let epoch = epoch.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3 * k)).await;
            let since = k * 5;
            let recover = format!(r#"{{"recover":{{"offset":{since},"epoch":"{epoch}"}}}}"#);
            let frames = subscribe_with(&mut client, "room/live", &recover, 2).await;
            let ack = json(frames.last().unwrap());
            assert_eq!(ack["data"]["recovered"], true, "{ack}");
            let mut expected = since + 1;
            for frame in &frames[..frames.len() - 1] {
                assert_eq!(json(frame)["data"]["offset"].as_u64(), Some(expected));
                expected += 1;
            }
            assert_eq!(ack["data"]["offset"].as_u64(), Some(expected - 1));
            while expected <= TOTAL {
                let frame = json(&client.recv_text().await);
                assert_eq!(frame["data"]["offset"].as_u64(), Some(expected), "{frame}");
                expected += 1;
            }
        }));
    }
    publisher.await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn e4_history_on_join_clamps_and_recover_wins() {
    let ts = start_server(options(), |_| {}).await;
    let exchange = ts.server.exchange();
    let mut epoch = String::new();
    for i in 1..=7u64 {
        epoch = exchange
            .publish("room/h", &i)
            .await
            .unwrap()
            .unwrap()
            .epoch
            .to_string();
    }
    let mut a = ts.client().await;
    let frames = subscribe_with(&mut a, "room/h", r#"{"history":{"limit":2}}"#, 2).await;
    assert_eq!(
        frames,
        [
            format!(
                r##"{{"event":"#publish","data":{{"channel":"room/h","data":6,"offset":6,"epoch":"{epoch}"}}}}"##
            ),
            format!(
                r##"{{"event":"#publish","data":{{"channel":"room/h","data":7,"offset":7,"epoch":"{epoch}"}}}}"##
            ),
            format!(r#"{{"rid":2,"data":{{"offset":7,"epoch":"{epoch}"}}}}"#),
        ]
    );
    let mut b = ts.client().await;
    let frames = subscribe_with(&mut b, "room/h", r#"{"history":{"limit":50}}"#, 2).await;
    assert_eq!(frames.len(), 6, "limit clamped to size 5: {frames:?}");
    let mut c = ts.client().await;
    let both = format!(r#"{{"history":{{"limit":5}},"recover":{{"offset":6,"epoch":"{epoch}"}}}}"#);
    let frames = subscribe_with(&mut c, "room/h", &both, 2).await;
    assert_eq!(frames.len(), 2, "recover wins: {frames:?}");
    assert_eq!(
        frames[1],
        format!(r#"{{"rid":2,"data":{{"recovered":true,"offset":7,"epoch":"{epoch}"}}}}"#)
    );
}

#[tokio::test]
async fn e6_malformed_recover_or_history_is_invalid_arguments_and_the_socket_keeps_serving() {
    let ts = start_server(options(), |_| {}).await;
    let mut client = ts.client().await;
    let cases = [
        (r#"{"recover":{"offset":-1,"epoch":"e"}}"#, "recover"),
        (r#"{"recover":{"offset":1,"epoch":""}}"#, "recover"),
        (r#"{"recover":"yes"}"#, "recover"),
        (r#"{"history":{"limit":"5"}}"#, "history"),
        (r#"{"history":{}}"#, "history"),
        (
            r#"{"recover":{"offset":1,"epoch":"e"},"history":{"limit":1.5}}"#,
            "history",
        ),
    ];
    for (i, (data, field)) in cases.iter().enumerate() {
        let cid = 10 + i as u64;
        let frames = subscribe_with(&mut client, "room/bad", data, cid).await;
        assert_eq!(
            frames,
            [format!(
                r#"{{"rid":{cid},"error":{{"message":"Invalid {field} option when subscribing to the room/bad channel","name":"InvalidArgumentsError"}}}}"#
            )],
            "{data}"
        );
    }
    assert!(!ts.socket(&client).is_subscribed("room/bad"));
    client.expect_nothing_before_echo(30).await;
    // On a channel without history the keys are the application's: plain subscribe.
    let frames = subscribe_with(&mut client, "news", r#"{"recover":"whatever"}"#, 31).await;
    assert_eq!(frames, [r#"{"rid":31}"#]);
    // The reserved companion channels are refused.
    let frames = subscribe_with(&mut client, "#presence/room/1", "", 32).await;
    assert_eq!(json(&frames[0])["error"]["name"], "InvalidActionError");
}

async fn presence_answer(client: &mut Client, channel: &str, cid: u64) -> serde_json::Value {
    client
        .send_text(&format!(
            r##"{{"event":"#presence","data":{{"channel":"{channel}"}},"cid":{cid}}}"##
        ))
        .await;
    json(&client.recv_text().await)
}

#[tokio::test]
async fn e5_presence_query_join_and_leave() {
    let ts = start_server(options(), |_| {}).await;
    let mut alice = ts.client().await;
    let mut bob = ts.client().await;
    let mut outsider = ts.client().await;
    alice.subscribe("lounge", 2).await;
    ts.socket(&alice)
        .set_auth_token(
            &serde_json::json!({"username": "alice"}),
            &Default::default(),
        )
        .unwrap();
    assert!(alice.recv_text().await.contains("#setAuthToken"));
    bob.subscribe("lounge", 2).await;
    let (a, b) = (alice.id().to_owned(), bob.id().to_owned());
    assert_eq!(
        alice.recv_text().await,
        format!(
            r##"{{"event":"#presenceJoin","data":{{"channel":"lounge","client":{{"id":"{b}","user":null}}}}}}"##
        )
    );
    bob.expect_nothing_before_echo(3).await;

    let answer = presence_answer(&mut bob, "lounge", 4).await;
    assert_eq!(answer["rid"], 4);
    assert_eq!(answer["data"]["count"], 2);
    let mut clients = answer["data"]["clients"].as_array().unwrap().clone();
    clients.sort_by_key(|c| c["id"].as_str().unwrap().to_owned());
    let mut expected = vec![
        serde_json::json!({"id": a, "user": "alice"}),
        serde_json::json!({"id": b, "user": null}),
    ];
    expected.sort_by_key(|c| c["id"].as_str().unwrap().to_owned());
    assert_eq!(
        clients, expected,
        "the login changed alice's user without an event"
    );

    // Not subscribed, not a presence channel, malformed: errors, and the socket keeps serving.
    let refused = presence_answer(&mut outsider, "lounge", 5).await;
    assert_eq!(refused["error"]["name"], "PresenceError");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lounge")
    );
    outsider.subscribe("news", 6).await;
    let refused = presence_answer(&mut outsider, "news", 7).await;
    assert_eq!(refused["error"]["name"], "PresenceError");
    outsider
        .send_text(r##"{"event":"#presence","data":{"channel":5},"cid":8}"##)
        .await;
    assert_eq!(
        json(&outsider.recv_text().await)["error"]["name"],
        "InvalidArgumentsError"
    );
    outsider.expect_nothing_before_echo(9).await;

    // A repeated subscribe sends no second join; an unsubscribe and a disconnect send leaves.
    bob.subscribe("lounge", 10).await;
    alice.expect_nothing_before_echo(11).await;
    bob.send_text(r##"{"event":"#unsubscribe","data":"lounge","cid":12}"##)
        .await;
    assert_eq!(bob.recv_text().await, r#"{"rid":12}"#);
    assert_eq!(
        alice.recv_text().await,
        format!(
            r##"{{"event":"#presenceLeave","data":{{"channel":"lounge","client":{{"id":"{b}","user":null}}}}}}"##
        )
    );
    let mut carol = ts.client().await;
    carol.subscribe("lounge", 2).await;
    let c = carol.id().to_owned();
    assert!(alice.recv_text().await.contains(&c));
    carol.close().await;
    assert_eq!(
        alice.recv_text().await,
        format!(
            r##"{{"event":"#presenceLeave","data":{{"channel":"lounge","client":{{"id":"{c}","user":null}}}}}}"##
        )
    );
    let answer = presence_answer(&mut alice, "lounge", 20).await;
    assert_eq!(answer["data"]["count"], 1);
}

#[tokio::test]
async fn e7_a_forgotten_channel_starts_over_with_a_new_epoch() {
    let mut opts = options();
    opts.history[0].ttl = 1;
    let broker = Arc::new(MemoryBroker::new());
    let server = Server::with_broker(opts, broker.clone()).unwrap();
    let exchange = server.exchange();
    let old = exchange.publish("room/once", &1).await.unwrap().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while broker.history().channel_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "channel never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = exchange
        .history("room/once", Some(old.clone()))
        .await
        .unwrap();
    assert!(!page.recovered);
    assert!(page.publications.is_empty());
    assert_eq!(page.position.offset, 0);
    assert_ne!(page.position.epoch, old.epoch);
}

/// 100k channels with history, each published once: once their ttl has passed the history
/// holds none of them (memory does not grow without bound).
#[tokio::test]
async fn e7_100k_expired_channels_are_freed() {
    let mut opts = options();
    opts.history[0].ttl = 1;
    let broker = Arc::new(MemoryBroker::new());
    let server = Server::with_broker(opts, broker.clone()).unwrap();
    let exchange = server.exchange();
    let payload = "x".repeat(100);
    for i in 0..100_000 {
        exchange
            .publish(&format!("room/{i}"), &payload)
            .await
            .unwrap();
    }
    assert!(broker.history().channel_count() > 50_000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while broker.history().channel_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired channels not freed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn exchange_history_and_presence_for_server_code() {
    let ts: TestServer = start_server(options(), |_| {}).await;
    let exchange = ts.server.exchange();
    for i in 1..=3u64 {
        exchange.publish("room/s", &i).await.unwrap();
    }
    let page = exchange.history("room/s", None).await.unwrap();
    let data: Vec<&str> = page
        .publications
        .iter()
        .map(|p| p.data().unwrap().get())
        .collect();
    assert_eq!(data, ["1", "2", "3"]);
    let since = page.publications[0].position().unwrap().clone();
    let newer = exchange.history("room/s", Some(since)).await.unwrap();
    assert!(newer.recovered);
    assert_eq!(newer.publications.len(), 2);
    assert!(exchange.history("news", None).await.is_err());
    let mut client = ts.client().await;
    client.subscribe("lounge", 2).await;
    let here = exchange.presence("lounge").await.unwrap();
    assert_eq!(here.count, 1);
    assert_eq!(here.clients[0].id, client.id());
    assert!(exchange.presence("news").await.is_err());
}
