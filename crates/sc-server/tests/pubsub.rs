//! Channels: `#subscribe`, `#unsubscribe`, `#publish`, `#kickOut`, limits and cleanup
//! (docs/protocol.md §7, TV-17, TV-26).

mod common;

use common::{start_server, v1, v2};
use futures_util::StreamExt;
use sc_protocol::Json;
use sc_server::ServerOptions;

const NEWS: &str = r##"{"event":"#publish","data":{"channel":"news","data":{"headline":"x"}}}"##;

#[tokio::test]
async fn publish_with_ack_reaches_every_subscriber_including_the_publisher() {
    let ts = start_server(v2(), |_| {}).await;
    let mut publisher = ts.client().await;
    let mut subscriber = ts.client().await;
    let mut bystander = ts.client().await;
    publisher.subscribe("news", 2).await;
    subscriber.subscribe("news", 2).await;

    publisher
        .send_text(
            r##"{"event":"#publish","data":{"channel":"news","data":{"headline":"x"}},"cid":3}"##,
        )
        .await;
    // The ack and the publisher's own delivery may come in either order (docs/protocol.md §5.3).
    let mut frames = publisher.recv_texts(2).await;
    frames.sort();
    assert_eq!(frames, [NEWS, r#"{"rid":3}"#]);
    assert_eq!(subscriber.recv_text().await, NEWS);
    bystander.expect_nothing_before_echo(2).await;
    subscriber.expect_nothing_before_echo(3).await;
}

#[tokio::test]
async fn publish_without_cid_is_delivered_and_not_acknowledged() {
    let ts = start_server(v2(), |_| {}).await;
    let mut publisher = ts.client().await;
    let mut subscriber = ts.client().await;
    publisher.subscribe("news", 2).await;
    subscriber.subscribe("news", 2).await;
    publisher
        .send_text(r##"{"event":"#publish","data":{"channel":"news","data":"no callback"}}"##)
        .await;
    let expected = r##"{"event":"#publish","data":{"channel":"news","data":"no callback"}}"##;
    assert_eq!(publisher.recv_text().await, expected);
    assert_eq!(subscriber.recv_text().await, expected);
    publisher.expect_nothing_before_echo(3).await;
}

#[tokio::test]
async fn published_data_is_forwarded_verbatim() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    client.subscribe("odd", 2).await;
    client
        .send_text(
            r##"{"event":"#publish","data":{"channel":"odd","data":{"a" : 1.50, "b":"\u00e9"}}}"##,
        )
        .await;
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"odd","data":{"a" : 1.50, "b":"\u00e9"}}}"##
    );
    // No data at all: the delivery has no data key, as JSON.stringify leaves out undefined.
    client
        .send_text(r##"{"event":"#publish","data":{"channel":"odd"}}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"odd"}}"##
    );
}

#[tokio::test]
async fn publishes_of_every_shape_are_delivered_as_json_stringify_writes_them() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    // `aA"é/😀`, subscribed to as JSON.stringify writes it.
    client
        .send_text(r##"{"event":"#subscribe","data":{"channel":"aA\"é/😀"},"cid":2}"##)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":2}"#);
    let delivery = r##"{"event":"#publish","data":{"channel":"aA\"é/😀","data":[1, "\u0041"]}}"##;
    for (publish, ack) in [
        // As JSON.stringify writes it (read in one pass).
        (
            r##"{"event":"#publish","data":{"channel":"aA\"é/😀","data":[1, "\u0041"]},"cid":3}"##,
            Some(r#"{"rid":3}"#),
        ),
        // The same channel written with other escapes: delivered with JSON.stringify's.
        (
            r##"{"event":"#publish","data":{"channel":"a\u0041\"\u00e9\/\ud83d\ude00","data":[1, "\u0041"]},"cid":4}"##,
            Some(r#"{"rid":4}"#),
        ),
        // Keys in another order, extra keys, a string cid (no ack), leading space (generic path).
        (
            r##"{"cid":"x","data":{"x":1,"data":[1, "\u0041"],"channel":"aA\"é/😀"},"event":"#publish"}"##,
            None,
        ),
        (
            r##" {"event":"#publish","data":{"data":[1, "\u0041"],"channel":"aA\"é/😀"},"cid":5}"##,
            Some(r#"{"rid":5}"#),
        ),
    ] {
        client.send_text(publish).await;
        let mut frames = client.recv_texts(1 + usize::from(ack.is_some())).await;
        frames.sort();
        let mut expected: Vec<&str> = ack.into_iter().chain([delivery]).collect();
        expected.sort();
        assert_eq!(frames, expected, "{publish}");
    }
    // Malformed publishes in the one-pass shape are answered as before.
    client
        .send_text(r##"{"event":"#publish","data":null,"cid":6}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":6,"error":{"message":"Publish channel name was malformatted","name":"InvalidActionError"}}"#
    );
    client
        .send_text(r##"{"event":"#publish","data":{"channel":"c","channel":"d"},"cid":7}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":7,"error":{"message":"Publish channel name was malformatted","name":"InvalidActionError"}}"#
    );
    client.expect_nothing_before_echo(8).await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    let mut publisher = ts.client().await;
    client.subscribe("news", 2).await;
    client.subscribe("other", 3).await;
    // Reference clients send no cid: no answer.
    client
        .send_text(r##"{"event":"#unsubscribe","data":"news"}"##)
        .await;
    client.expect_nothing_before_echo(4).await;
    assert!(!ts.socket(&client).is_subscribed("news"));

    publisher
        .send_text(r##"{"event":"#publish","data":{"channel":"news","data":1}}"##)
        .await;
    publisher
        .send_text(r##"{"event":"#publish","data":{"channel":"other","data":2}}"##)
        .await;
    publisher.expect_nothing_before_echo(2).await;
    // The delivery on "other" proves the one on "news" would have arrived first.
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"other","data":2}}"##
    );

    // With a cid, the unsubscribe is acknowledged.
    client
        .send_text(r##"{"event":"#unsubscribe","data":"other","cid":71}"##)
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":71}"#);
    assert_eq!(ts.server.exchange().subscriber_count("other"), 0);
}

#[tokio::test]
async fn unsubscribe_from_a_channel_not_subscribed_is_a_broker_error() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    client
        .send_text(r##"{"event":"#unsubscribe","data":"notsubscribed","cid":7}"##)
        .await;
    let expected = format!(
        r#"{{"rid":7,"error":{{"message":"Failed to unsubscribe socket from the notsubscribed channel - InvalidActionError: Socket {} tried to unsubscribe from a channel which it is not subscribed to","name":"BrokerError"}}}}"#,
        client.id()
    );
    assert_eq!(client.recv_text().await, expected);
    client.expect_nothing_before_echo(8).await;
}

#[tokio::test]
async fn malformed_channel_actions_are_invalid_action_errors() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    let cases = [
        (
            r##"{"event":"#subscribe","data":"stringchannel","cid":5}"##,
            r#"{"rid":5,"error":{"message":"Subscribe channel name was malformatted","name":"InvalidActionError"}}"#,
        ),
        (
            r##"{"event":"#subscribe","data":{"channel":123},"cid":6}"##,
            r#"{"rid":6,"error":{"message":"Subscribe channel name was malformatted","name":"InvalidActionError"}}"#,
        ),
        (
            r##"{"event":"#subscribe","cid":61}"##,
            r#"{"rid":61,"error":{"message":"Subscribe channel name was malformatted","name":"InvalidActionError"}}"#,
        ),
        (
            r##"{"event":"#unsubscribe","data":42,"cid":72}"##,
            r#"{"rid":72,"error":{"message":"Unsubscribe channel name was malformatted","name":"InvalidActionError"}}"#,
        ),
        (
            r##"{"event":"#publish","data":{"channel":456,"data":"x"},"cid":8}"##,
            r#"{"rid":8,"error":{"message":"Publish channel name was malformatted","name":"InvalidActionError"}}"#,
        ),
        (
            r##"{"event":"#publish","cid":81}"##,
            r#"{"rid":81,"error":{"message":"Publish channel name was malformatted","name":"InvalidActionError"}}"#,
        ),
    ];
    for (request, response) in cases {
        client.send_text(request).await;
        assert_eq!(client.recv_text().await, response, "for {request}");
    }
    assert!(ts.socket(&client).subscriptions().is_empty());
    assert!(ts.server.exchange().channels().is_empty());
}

#[tokio::test]
async fn socket_channel_limit() {
    let ts = start_server(
        ServerOptions {
            socket_channel_limit: Some(2),
            ..v2()
        },
        |_| {},
    )
    .await;
    let mut client = ts.client().await;
    client.subscribe("c0", 2).await;
    client.subscribe("c1", 3).await;
    client
        .send_text(r##"{"event":"#subscribe","data":{"channel":"c2"},"cid":4}"##)
        .await;
    let id = client.id().to_owned();
    let limit_error = |cid: u64, channel: &str| {
        format!(
            r#"{{"rid":{cid},"error":{{"message":"Failed to subscribe socket to the {channel} channel - InvalidActionError: Socket {} tried to exceed the channel subscription limit of 2","name":"BrokerError"}}}}"#,
            id
        )
    };
    assert_eq!(client.recv_text().await, limit_error(4, "c2"));
    // The limit is checked before "already subscribed" (docs/protocol.md §7.2 note).
    client
        .send_text(r##"{"event":"#subscribe","data":{"channel":"c0"},"cid":5}"##)
        .await;
    assert_eq!(client.recv_text().await, limit_error(5, "c0"));
    assert_eq!(ts.server.exchange().subscriber_count("c2"), 0);

    // The socket still works and keeps its two channels.
    client
        .send_text(r##"{"event":"#publish","data":{"channel":"c0","data":"x"}}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"c0","data":"x"}}"##
    );
    // Leaving a channel frees a slot.
    client
        .send_text(r##"{"event":"#unsubscribe","data":"c1"}"##)
        .await;
    client.subscribe("c2", 6).await;
}

#[tokio::test]
async fn client_publish_can_be_disabled() {
    let ts = start_server(
        ServerOptions {
            allow_client_publish: false,
            ..v2()
        },
        |_| {},
    )
    .await;
    let mut client = ts.client().await;
    client.subscribe("c0", 2).await;
    client
        .send_text(r##"{"event":"#publish","data":{"channel":"c0","data":"x"},"cid":10}"##)
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"rid":10,"error":{"message":"Client publish feature is disabled","name":"InvalidActionError"}}"#
    );
    // Without a cid: no reply, and nothing is delivered.
    client
        .send_text(r##"{"event":"#publish","data":{"channel":"c0","data":"y"}}"##)
        .await;
    client.expect_nothing_before_echo(11).await;
    // Server code may still publish.
    ts.server
        .exchange()
        .publish("c0", "from server")
        .await
        .unwrap();
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"c0","data":"from server"}}"##
    );
}

#[tokio::test]
async fn batch_subscribe_is_answered_in_a_batch() {
    let ts = start_server(v1(), |_| {}).await;
    let mut client = ts.client().await;
    client
        .send_text(
            r##"[{"event":"#subscribe","data":{"channel":"batched","batch":true},"cid":5}]"##,
        )
        .await;
    assert_eq!(client.recv_text().await, r#"[{"rid":5}]"#);
    // Even outside an array (TV-18).
    client
        .send_text(r##"{"event":"#subscribe","data":{"channel":"b1","batch":true},"cid":4}"##)
        .await;
    assert_eq!(client.recv_text().await, r#"[{"rid":4}]"#);
    assert!(ts.socket(&client).is_subscribed("batched"));
    assert!(ts.socket(&client).is_subscribed("b1"));
}

#[tokio::test]
async fn subscribing_twice_counts_once() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    client.subscribe("a", 2).await;
    client.subscribe("a", 3).await;
    assert_eq!(ts.server.exchange().subscriber_count("a"), 1);
    assert_eq!(ts.socket(&client).subscriptions(), ["a"]);
    ts.server.exchange().publish("a", &1).await.unwrap();
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"a","data":1}}"##
    );
    client.expect_nothing_before_echo(4).await;
}

#[tokio::test]
async fn exchange_publish_reaches_sockets() {
    let ts = start_server(v2(), |_| {}).await;
    let mut a = ts.client().await;
    let mut b = ts.client().await;
    a.subscribe("news", 2).await;
    b.subscribe("news", 2).await;
    let exchange = ts.server.exchange();
    exchange
        .publish("news", &serde_json::json!({ "headline": "x" }))
        .await
        .unwrap();
    exchange
        .publish_json("news", Some(&Json::from_text(r#"[1, 2.0 ]"#).unwrap()))
        .await
        .unwrap();
    for client in [&mut a, &mut b] {
        assert_eq!(client.recv_text().await, NEWS);
        assert_eq!(
            client.recv_text().await,
            r##"{"event":"#publish","data":{"channel":"news","data":[1, 2.0 ]}}"##
        );
    }
    // Nobody subscribed: publishing succeeds and reaches no one.
    exchange.publish("empty", &1).await.unwrap();
    a.expect_nothing_before_echo(3).await;
}

#[tokio::test]
async fn exchange_subscribe_receives_client_publishes() {
    let ts = start_server(v2(), |_| {}).await;
    let exchange = ts.server.exchange();
    let mut stream = exchange.subscribe("news").await.unwrap();
    assert_eq!(stream.channel(), "news");
    assert_eq!(exchange.subscriber_count("news"), 1);
    let mut client = ts.client().await;
    client
        .send_text(
            r##"{"event":"#publish","data":{"channel":"news","data":{"headline":"x"}},"cid":2}"##,
        )
        .await;
    assert_eq!(client.recv_text().await, r#"{"rid":2}"#);
    let publication = tokio::time::timeout(common::WAIT, stream.next())
        .await
        .unwrap()
        .expect("a publication");
    assert_eq!(publication.channel(), "news");
    assert_eq!(
        publication.data().map(Json::get),
        Some(r#"{"headline":"x"}"#)
    );
    assert_eq!(&publication.frame()[..], NEWS.as_bytes());

    // Dropping the stream unsubscribes it.
    drop(stream);
    ts.eventually("the stream is unsubscribed", |s| {
        s.exchange().subscriber_count("news") == 0
    })
    .await;
}

#[tokio::test]
async fn kick_out_tells_the_client_and_stops_delivery() {
    let ts = start_server(v2(), |_| {}).await;
    let mut client = ts.client().await;
    client.subscribe("kickchan", 2).await;
    client.subscribe("news", 3).await;
    ts.socket(&client)
        .kick_out(Some("kickchan"), "you are kicked")
        .await;
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#kickOut","data":{"channel":"kickchan","message":"you are kicked"}}"##
    );
    assert!(!ts.socket(&client).is_subscribed("kickchan"));
    assert_eq!(ts.server.exchange().subscriber_count("kickchan"), 0);

    let exchange = ts.server.exchange();
    exchange.publish("kickchan", &1).await.unwrap();
    exchange.publish("news", &2).await.unwrap();
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"news","data":2}}"##
    );

    // Kicking a channel the socket is not in sends nothing.
    ts.socket(&client).kick_out(Some("nothere"), "x").await;
    client.expect_nothing_before_echo(4).await;
}

#[tokio::test]
async fn kick_out_of_every_channel_on_v1_uses_v14_key_order() {
    let ts = start_server(v1(), |_| {}).await;
    let mut client = ts.client().await;
    client.subscribe("only", 2).await;
    ts.socket(&client).kick_out(None, "bye").await;
    assert_eq!(
        client.recv_text().await,
        r##"{"event":"#kickOut","data":{"message":"bye","channel":"only"}}"##
    );
    assert!(ts.socket(&client).subscriptions().is_empty());
}

#[tokio::test]
async fn closing_a_socket_releases_all_its_subscriptions() {
    let ts = start_server(v2(), |_| {}).await;
    let mut a = ts.client().await;
    let mut b = ts.client().await;
    for (cid, channel) in [(2, "x"), (3, "y"), (4, "z")] {
        a.subscribe(channel, cid).await;
    }
    b.subscribe("x", 2).await;
    let exchange = ts.server.exchange();
    assert_eq!(exchange.subscriber_count("x"), 2);
    assert_eq!(exchange.subscriber_count("y"), 1);

    a.close().await;
    ts.eventually("a's channels are released", |s| {
        let e = s.exchange();
        e.subscriber_count("x") == 1 && e.subscriber_count("y") == 0 && e.subscriber_count("z") == 0
    })
    .await;
    // b still gets x.
    exchange.publish("x", &1).await.unwrap();
    assert_eq!(
        b.recv_text().await,
        r##"{"event":"#publish","data":{"channel":"x","data":1}}"##
    );

    // A dropped TCP connection (no close frame) releases them too.
    drop(b);
    ts.eventually("every channel is released", |s| {
        s.exchange().channels().is_empty()
    })
    .await;
    assert_eq!(ts.server.clients_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_keeps_each_subscribers_order() {
    const SUBSCRIBERS: usize = 20;
    const MESSAGES: usize = 100;
    let ts = start_server(v2(), |_| {}).await;
    let mut clients = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut client = ts.client().await;
        client.subscribe("fan", 2).await;
        clients.push(client);
    }
    assert_eq!(ts.server.exchange().subscriber_count("fan"), SUBSCRIBERS);
    let mut publisher = ts.client().await;
    for n in 0..MESSAGES {
        publisher
            .send_text(&format!(
                r##"{{"event":"#publish","data":{{"channel":"fan","data":{n}}}}}"##
            ))
            .await;
    }
    let readers = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            for n in 0..MESSAGES {
                let expected =
                    format!(r##"{{"event":"#publish","data":{{"channel":"fan","data":{n}}}}}"##);
                assert_eq!(client.recv_text().await, expected);
            }
            client.expect_nothing_before_echo(3).await;
        })
    });
    for reader in readers.collect::<Vec<_>>() {
        reader
            .await
            .expect("every subscriber got every message in order");
    }
}
