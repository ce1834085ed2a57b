//! A burst of publications that reaches the client at once: a subscriber that reads as fast as
//! it is scheduled gets every one of them (the background task gives it turns while it
//! delivers, rather than filling its buffer and dropping the rest).

mod common;

use std::collections::HashSet;

use common::fake::FakeServer;
use common::{connected_client, options, within};
use futures_util::StreamExt;
use sc_client::ProtocolVersion;

/// Far more than the channel buffer (1024 by default).
const BURST: usize = 20_000;

/// A single-threaded runtime: the reader only runs when the client's task gives it a turn.
#[tokio::test(flavor = "current_thread")]
async fn a_reader_that_keeps_up_gets_a_whole_burst() {
    let mut fake = FakeServer::start().await;
    let url = fake.url();
    let server = tokio::spawn(async move {
        let mut conn = fake.next_conn().await;
        conn.handshake("burst", 30_000, false).await;
        let subscribe = conn.recv_json().await;
        assert_eq!(subscribe["event"], "#subscribe", "{subscribe}");
        let cid = subscribe["cid"].as_u64().expect("subscribe cid");
        conn.send(&format!(r#"{{"rid":{cid}}}"#)).await;
        conn.send_burst((0..BURST).map(|i| {
            format!(r##"{{"event":"#publish","data":{{"channel":"burst","data":{i}}}}}"##)
        }))
        .await;
        (fake, conn)
    });
    let (client, _events) = connected_client(&url, options(ProtocolVersion::V2)).await;
    let mut channel = client.subscribe("burst").await.expect("subscribe");
    let mut seen = HashSet::new();
    within("the whole burst", async {
        while seen.len() < BURST {
            let publication = channel.next().await.expect("channel open");
            seen.insert(publication.data.get().to_owned());
            assert_eq!(
                channel.dropped(),
                0,
                "dropped for a reader that keeps up, after {} received",
                seen.len()
            );
        }
    })
    .await;
    assert_eq!(seen.len(), BURST);
    let _keep = within("the fake", server).await.expect("fake server");
}
