//! `sc-ceiling`: the benchmark's ceiling, a minimal raw WebSocket fan-out server.
//!
//! It speaks just enough of the SocketCluster protocol for `sc-bench` to drive it (the
//! `#handshake` response, `#subscribe`, `#publish` fanned out to the channel's subscribers, and
//! any other request echoed back as its response), and nothing else: no authentication, no
//! heartbeats, no bounds, no middleware, one process. A publication is encoded once and the same
//! bytes are queued to every subscriber. `scripts/bench-compare` runs it next to ours and the
//! Node reference to show what the machine allows: how close ours gets is the figure that counts.
//!
//! Usage: `sc-ceiling [--port N]` (0 = any free port); prints `LISTENING <port>` once it serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use sc_protocol::frame::{PublishData, SubscribeData};
use sc_protocol::{Frame, Packet, encode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_websockets::{Message, ServerBuilder};

/// The channel table: channel → the subscribers' outbound queues (a std mutex: held for map
/// edits and unbounded sends only).
#[derive(Default)]
struct Table(Mutex<Channels>);

/// Channel → (connection id, outbound queue) of each subscriber.
type Channels = HashMap<Arc<str>, Vec<(u64, Outbound)>>;

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subscribe(&self, channel: &str, id: u64, tx: &Outbound) {
        self.lock()
            .entry(Arc::from(channel))
            .or_default()
            .push((id, tx.clone()));
    }

    fn unsubscribe(&self, channel: &str, id: u64) {
        let mut table = self.lock();
        if let Some(subscribers) = table.get_mut(channel) {
            subscribers.retain(|(s, _)| *s != id);
            if subscribers.is_empty() {
                table.remove(channel);
            }
        }
    }

    fn publish(&self, channel: &str, frame: &Bytes) {
        if let Some(subscribers) = self.lock().get(channel) {
            for (_, tx) in subscribers {
                let _ = tx.send(frame.clone());
            }
        }
    }
}

/// One connection's outbound queue (unbounded: the ceiling has no bounds).
type Outbound = mpsc::UnboundedSender<Bytes>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other} (usage: sc-ceiling [--port N])"),
        }
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    let table = Arc::new(Table::default());
    let mut next_id = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        next_id += 1;
        tokio::spawn(serve(stream, next_id, table.clone()));
    }
}

/// One connection: a reader (this task) and a writer task draining the outbound queue.
async fn serve(stream: TcpStream, id: u64, table: Arc<Table>) {
    let _ = stream.set_nodelay(true);
    let Ok((_request, ws)) = ServerBuilder::new().accept(stream).await else {
        return;
    };
    let (mut write, mut read) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if write.feed(text(first)).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if write.feed(text(more)).await.is_err() {
                    return;
                }
            }
            if write.flush().await.is_err() {
                return;
            }
        }
    });
    let mut channels: Vec<String> = Vec::new();
    while let Some(Ok(message)) = read.next().await {
        if !message.is_text() {
            if message.is_close() {
                break;
            }
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
            match event.event.as_str() {
                "#handshake" => {
                    let data =
                        format!(r#"{{"id":"c{id}","pingTimeout":20000,"isAuthenticated":false}}"#);
                    respond(&tx, event.cid, Some(&data));
                }
                "#subscribe" => {
                    if let Some(subscribe) = SubscribeData::parse(event.data.as_ref()) {
                        table.subscribe(&subscribe.channel, id, &tx);
                        channels.push(subscribe.channel);
                    }
                    respond(&tx, event.cid, None);
                }
                "#unsubscribe" => {
                    if let Some(channel) = event.data.as_ref().and_then(|d| d.as_string()) {
                        table.unsubscribe(&channel, id);
                        channels.retain(|c| *c != channel);
                    }
                    respond(&tx, event.cid, None);
                }
                "#publish" => {
                    if let Some(publish) = PublishData::parse(event.data.as_ref()) {
                        table.publish(&publish.channel, &delivery(&publish));
                    }
                    respond(&tx, event.cid, None);
                }
                _ => {
                    let data = event.data.as_ref().map(|d| d.get().to_owned());
                    respond(&tx, event.cid, data.as_deref());
                }
            }
        }
    }
    for channel in channels {
        table.unsubscribe(&channel, id);
    }
    drop(tx);
    let _ = writer.await;
}

/// Queues the response to a request (nothing when it carried no cid).
fn respond(tx: &Outbound, cid: Option<u64>, data: Option<&str>) {
    if let Some(cid) = cid {
        let _ = tx.send(encode::response(cid, data));
    }
}

/// The `#publish` delivery every subscriber gets, encoded once.
fn delivery(publish: &PublishData) -> Bytes {
    let data = publish.data.as_ref().map_or("null", |d| d.get());
    let mut out = BytesMut::with_capacity(48 + publish.channel.len() + data.len());
    out.put_slice(br##"{"event":"#publish","data":{"channel":"##);
    encode::write_json_string(&mut out, &publish.channel);
    out.put_slice(br#","data":"#);
    out.put_slice(data.as_bytes());
    out.put_slice(b"}}");
    out.freeze()
}

/// A text message over shared bytes (they are UTF-8: built from JSON text).
fn text(bytes: Bytes) -> Message {
    Message::text(bytes)
}
