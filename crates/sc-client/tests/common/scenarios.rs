//! Scenarios run against any server with the interop fixture's demo handlers (the Node
//! reference fixture and the Rust server).

use std::time::Duration;

use futures_util::StreamExt;
use sc_client::{
    ChannelState, ClientError, ClientEvent, ConnectionState, InvokeError, Json, ProtocolVersion,
    ScError, UnsubscribeReason,
};
use serde_json::json;

use super::{connected_client, next_event, no_event, options, value, within};

/// emit / invoke / echo, server errors hydrated, timeouts, reserved names.
pub async fn rpc(url: &str, version: ProtocolVersion) {
    let (client, _events) = connected_client(url, options(version)).await;
    assert_eq!(client.state(), ConnectionState::Open);
    assert!(client.id().is_some_and(|id| !id.is_empty()));

    let echoed = within("echo", client.invoke("echo", json!({"msg": "hi"})))
        .await
        .expect("echo answered");
    assert_eq!(echoed.as_ref().map(value), Some(json!({"msg": "hi"})));
    let echoed = within("echo of a string", client.invoke("echo", "ping-test"))
        .await
        .expect("echo answered");
    assert_eq!(
        echoed.map(|d| d.get().to_owned()).as_deref(),
        Some(r#""ping-test""#)
    );

    let failed = within("failme", client.invoke("failme", 123))
        .await
        .expect_err("failme fails");
    let error = failed.remote().expect("a server error");
    assert_eq!(error.name(), Some("CustomError"));
    assert_eq!(error.message(), "Custom failure");
    assert_eq!(error.field("extra").map(Json::get), Some("42"));

    let failed = within("failstring", client.invoke("failstring", ()))
        .await
        .expect_err("failstring fails");
    assert_eq!(
        failed.remote().map(ScError::message).as_deref(),
        Some("plain string error")
    );

    let timeout = client
        .invoke_with_timeout("noreply", 1, Duration::from_millis(300))
        .await;
    assert_eq!(
        timeout,
        Err(InvokeError::Timeout {
            event: "noreply".into()
        })
    );
    assert_eq!(
        timeout.unwrap_err().to_string(),
        "Event response for noreply event timed out"
    );

    client.emit("fire", json!({"x": 1})).await.expect("emit");
    client.transmit("fire", [1, 2]).await.expect("transmit");
    assert_eq!(
        client.emit("#handshake", ()).await,
        Err(ClientError::ReservedEvent("#handshake".into()))
    );

    // Still healthy after all that.
    let echoed = within("echo after errors", client.invoke("echo", 7))
        .await
        .expect("echo answered");
    assert_eq!(echoed.map(|d| d.get().to_owned()).as_deref(), Some("7"));
}

/// subscribe, publish with and without ack, server-side publish, the `ping` → `pong` counter,
/// unsubscribe ending the stream.
pub async fn pubsub(url: &str, version: ProtocolVersion) {
    let (client, mut events) = connected_client(url, options(version)).await;

    let mut news = client.subscribe("news").await.expect("subscribe");
    within("news subscribed", news.subscribed())
        .await
        .expect("subscription acknowledged");
    assert_eq!(news.state(), ChannelState::Subscribed);
    next_event(
        &mut events,
        "Subscribe news",
        |e| matches!(e, ClientEvent::Subscribe { channel } if channel == "news"),
    )
    .await;

    let ack = within(
        "invoke_publish",
        news.invoke_publish(json!({"headline": "x"})),
    )
    .await
    .expect("publish acked");
    assert_eq!(ack, None);
    let got = within("the published message", news.next())
        .await
        .expect("a message");
    assert_eq!(value(&got), json!({"headline": "x"}));

    client.publish("news", "no ack").await.expect("publish");
    let got = within("the unacknowledged publication", news.next())
        .await
        .expect("a message");
    assert_eq!(got.get(), r#""no ack""#);

    within(
        "serverpublish",
        client.invoke(
            "serverpublish",
            json!({"channel": "news", "data": "from server"}),
        ),
    )
    .await
    .expect("serverpublish acked");
    let got = within("the server's publication", news.next())
        .await
        .expect("a message");
    assert_eq!(got.get(), r#""from server""#);

    // The boilerplate: ping → the server publishes its counter on `pong`.
    let mut pong = client.subscribe("pong").await.expect("subscribe pong");
    within("pong subscribed", pong.subscribed())
        .await
        .expect("subscription acknowledged");
    client.emit("ping", ()).await.expect("emit ping");
    let count = within("a pong", pong.next()).await.expect("a count");
    assert!(
        value(&count).as_u64().is_some_and(|n| n >= 1),
        "pong carries a count: {count}"
    );

    // Publications to channels we are not subscribed to never arrive.
    client.publish("elsewhere", 1).await.expect("publish");

    news.unsubscribe().await.expect("unsubscribe");
    next_event(
        &mut events,
        "Unsubscribe news",
        |e| matches!(e, ClientEvent::Unsubscribe { channel } if channel == "news"),
    )
    .await;
    assert_eq!(within("the news stream to end", news.next()).await, None);
    assert_eq!(news.status().reason, Some(UnsubscribeReason::Unsubscribed));
    // Unsubscribed channels no longer receive (checked through the still-subscribed pong).
    client.publish("news", "after").await.expect("publish");
    client.emit("ping", ()).await.expect("emit ping");
    let next = within("the second pong", pong.next())
        .await
        .expect("a count");
    assert!(value(&next).as_u64() > value(&count).as_u64());
}

/// Server-initiated transmit and invoke: a receiver stream and a procedure answering
/// `serverQuestion`.
pub async fn server_invoke(url: &str, version: ProtocolVersion) {
    let (client, _events) = connected_client(url, options(version)).await;
    client.procedure("serverQuestion", |data: Option<Json>| async move {
        // Echo the question back inside the answer, so the test sees what the server asked.
        let question = data.map(|d| value(&d)).unwrap_or_default();
        Ok(Some(
            Json::encode(&json!({"a": "like this", "q": question["q"]})).expect("encodable"),
        ))
    });
    let mut pushes = client.receiver("serverPush");
    let mut answers = client.subscribe("answers").await.expect("subscribe");
    within("answers subscribed", answers.subscribed())
        .await
        .expect("acknowledged");

    within("askme", client.invoke("askme", ()))
        .await
        .expect("askme acked");
    let push = within("serverPush", pushes.next()).await.expect("a push");
    assert_eq!(value(&push), json!({"hello": "world"}));
    let answer = within("the published answer", answers.next())
        .await
        .expect("an answer");
    assert_eq!(
        value(&answer),
        json!({"answer": {"a": "like this", "q": "how?"}})
    );

    // A procedure that fails: the server sees our error.
    client.procedure("serverQuestion", |_| async move {
        Err(ScError::new("ClientError", "I refuse"))
    });
    within("askme again", client.invoke("askme", ()))
        .await
        .expect("askme acked");
    let answer = within("the published refusal", answers.next())
        .await
        .expect("an answer");
    assert_eq!(value(&answer)["error"], "I refuse");
}

/// `#kickOut`: event, channel unsubscribed for good, stream ended.
pub async fn kick_out(url: &str, version: ProtocolVersion) {
    let (client, mut events) = connected_client(url, options(version)).await;
    let mut kicked = client.subscribe("kickchan").await.expect("subscribe");
    within("kickchan subscribed", kicked.subscribed())
        .await
        .expect("acknowledged");

    client
        .emit("kickme", json!({"channel": "kickchan"}))
        .await
        .expect("emit kickme");
    let event = next_event(&mut events, "KickOut", |e| {
        matches!(e, ClientEvent::KickOut { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::KickOut {
            channel: "kickchan".into(),
            message: Some("you are kicked".into())
        }
    );
    assert_eq!(
        within("the kicked stream to end", kicked.next()).await,
        None
    );
    assert_eq!(
        kicked.status().reason,
        Some(UnsubscribeReason::KickedOut {
            message: Some("you are kicked".into())
        })
    );
}

/// `dropme` (server close 4321 with a reason): backoff reconnect, same cid counter, the
/// channel re-subscribed on the same handle.
pub async fn reconnect_after_drop(url: &str, version: ProtocolVersion) {
    let (client, mut events) = connected_client(url, options(version)).await;
    let first_id = client.id().expect("an id");
    let mut news = client.subscribe("news").await.expect("subscribe");
    within("news subscribed", news.subscribed())
        .await
        .expect("acknowledged");

    client.emit("dropme", ()).await.expect("emit dropme");
    let event = next_event(&mut events, "Disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::Disconnect {
            code: 4321,
            reason: "dropped by server".into()
        }
    );
    assert_eq!(news.state(), ChannelState::Pending);
    let event = next_event(&mut events, "ReconnectScheduled", |e| {
        matches!(e, ClientEvent::ReconnectScheduled { .. })
    })
    .await;
    let ClientEvent::ReconnectScheduled { delay, attempt } = event else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    assert!(
        (100..=150).contains(&delay.as_millis()),
        "backoff delay {delay:?} in [100, 150] ms"
    );

    next_event(&mut events, "the reconnect", |e| {
        matches!(e, ClientEvent::Connect { .. })
    })
    .await;
    assert_ne!(client.id(), Some(first_id), "a new socket id");
    next_event(
        &mut events,
        "news re-subscribed",
        |e| matches!(e, ClientEvent::Subscribe { channel } if channel == "news"),
    )
    .await;
    assert_eq!(news.state(), ChannelState::Subscribed);

    within(
        "serverpublish",
        client.invoke(
            "serverpublish",
            json!({"channel": "news", "data": "after reconnect"}),
        ),
    )
    .await
    .expect("serverpublish acked");
    let got = within("a message on the restored channel", news.next())
        .await
        .expect("a message");
    assert_eq!(got.get(), r#""after reconnect""#);
}

/// Heartbeats are answered: with pings every 100 ms and a 500 ms timeout on both sides, the
/// connection stays up.
pub async fn heartbeat_keeps_connection(url: &str, version: ProtocolVersion) {
    let (client, mut events) = connected_client(url, options(version)).await;
    no_event(
        &mut events,
        Duration::from_millis(1500),
        "disconnect",
        |e| matches!(e, ClientEvent::Disconnect { .. } | ClientEvent::Error(_)),
    )
    .await;
    assert_eq!(client.state(), ConnectionState::Open);
    within("echo", client.invoke("echo", 1))
        .await
        .expect("still answering");
}

/// A client that does not speak the server's heartbeat dialect sees the server's pings as raw
/// messages and loses the connection after `pingTimeout` (4000 from the client or 4001 from
/// the server, whichever is first); both reconnect at once.
pub async fn heartbeat_mismatch(url: &str, client_version: ProtocolVersion) {
    let (_client, mut events) = connected_client(url, options(client_version)).await;
    next_event(&mut events, "a server ping seen as a raw message", |e| {
        matches!(e, ClientEvent::Raw(_))
    })
    .await;
    let event = next_event(&mut events, "Disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { .. })
    })
    .await;
    let ClientEvent::Disconnect { code, .. } = event else {
        unreachable!()
    };
    assert!(
        code == 4000 || code == 4001,
        "ping/pong timeout, got {code}"
    );
    let event = next_event(&mut events, "ReconnectScheduled", |e| {
        matches!(e, ClientEvent::ReconnectScheduled { .. })
    })
    .await;
    assert_eq!(
        event,
        ClientEvent::ReconnectScheduled {
            delay: Duration::ZERO,
            attempt: 1
        }
    );
    next_event(&mut events, "the reconnect", |e| {
        matches!(e, ClientEvent::Connect { .. })
    })
    .await;
}

/// Events emitted while closed start a connection and are sent after the handshake; a normal
/// close does not reconnect.
pub async fn queued_until_connected_and_close(url: &str, version: ProtocolVersion) {
    let client = sc_client::Client::spawn(
        url,
        sc_client::ClientOptions {
            auto_connect: false,
            ..options(version)
        },
    )
    .expect("valid URL");
    let mut events = client.events();
    assert_eq!(client.state(), ConnectionState::Closed);
    let echoed = within("an echo sent while closed", client.invoke("echo", "queued"))
        .await
        .expect("answered");
    assert_eq!(
        echoed.map(|d| d.get().to_owned()).as_deref(),
        Some(r#""queued""#)
    );
    next_event(&mut events, "Connect", |e| {
        matches!(e, ClientEvent::Connect { .. })
    })
    .await;

    client.close().await.expect("close");
    let event = next_event(&mut events, "Disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { .. })
    })
    .await;
    assert!(
        matches!(event, ClientEvent::Disconnect { code: 1000, .. }),
        "{event:?}"
    );
    no_event(
        &mut events,
        Duration::from_millis(500),
        "reconnect after 1000",
        |e| {
            matches!(
                e,
                ClientEvent::ReconnectScheduled { .. } | ClientEvent::Connecting
            )
        },
    )
    .await;
    assert_eq!(client.state(), ConnectionState::Closed);
}

/// The min-bin codec (`codecEngine: sc-codec-min-bin`) and `channelPrefix`: RPCs, errors and
/// channels through MessagePack frames; a prefixed client sees its own names while the wire (and
/// an unprefixed client) carries the prefixed ones.
pub async fn min_bin_and_channel_prefix(url: &str, version: ProtocolVersion) {
    let min_bin = |prefix: Option<&str>| sc_client::ClientOptions {
        codec: sc_client::Codec::MinBin,
        channel_prefix: prefix.map(str::to_owned),
        ..options(version)
    };
    let (prefixed, mut events) = connected_client(url, min_bin(Some("app/"))).await;
    let (plain, _plain_events) = connected_client(url, min_bin(None)).await;

    let data = json!({"text": "héllo", "n": -42, "f": 1.5, "big": 1_099_511_627_776_u64, "list": [1, null, "x"], "t": true});
    let echoed = within("min-bin echo", prefixed.invoke("echo", data.clone()))
        .await
        .expect("echo answered");
    assert_eq!(echoed.as_ref().map(value), Some(data.clone()));
    let error = within("min-bin error", prefixed.invoke("failme", json!(null)))
        .await
        .expect_err("failme fails");
    let InvokeError::Remote(error) = error else {
        panic!("expected the server's error, got {error:?}");
    };
    assert_eq!(error.name(), Some("CustomError"));
    assert_eq!(error.message(), "Custom failure");

    let mut mine = prefixed.subscribe("news").await.expect("subscribe");
    let mut wire = plain.subscribe("app/news").await.expect("subscribe");
    within("prefixed subscribed", mine.subscribed())
        .await
        .expect("prefixed subscription acknowledged");
    within("plain subscribed", wire.subscribed())
        .await
        .expect("plain subscription acknowledged");
    next_event(
        &mut events,
        "Subscribe news (the name without prefix)",
        |e| matches!(e, ClientEvent::Subscribe { channel } if channel == "news"),
    )
    .await;

    within("publish", prefixed.invoke_publish("news", data.clone()))
        .await
        .expect("publish acked");
    for channel in [&mut mine, &mut wire] {
        let got = within("the publication", channel.next())
            .await
            .expect("a message");
        assert_eq!(value(&got), data);
    }
    within(
        "plain publish",
        plain.invoke_publish("app/news", "from plain"),
    )
    .await
    .expect("publish acked");
    for channel in [&mut mine, &mut wire] {
        let got = within("the plain publication", channel.next())
            .await
            .expect("a message");
        assert_eq!(got.get(), r#""from plain""#);
    }
    within(
        "serverpublish",
        plain.invoke("serverpublish", json!({"channel": "app/news", "data": 7})),
    )
    .await
    .expect("serverpublish acked");
    let got = within("the server's publication", mine.next())
        .await
        .expect("a message");
    assert_eq!(got.get(), "7");

    // Heartbeats keep flowing in min-bin (the server's pings, our pongs) while idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(prefixed.state(), ConnectionState::Open);
    let _ = prefixed.close().await;
    let _ = plain.close().await;
}
