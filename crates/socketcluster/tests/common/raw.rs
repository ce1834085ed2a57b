//! A raw WebSocket client for the continuity tests: hand-written frames, heartbeats answered,
//! frames that arrive while waiting for a response kept in order for later reads.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

/// A position as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) offset: u64,
    pub(crate) epoch: String,
}

impl Pos {
    /// The position in `value` (`{"offset":…,"epoch":…}`), if any.
    pub(crate) fn of(value: &Value) -> Option<Pos> {
        Some(Pos {
            offset: value["offset"].as_u64()?,
            epoch: value["epoch"].as_str()?.to_owned(),
        })
    }
}

/// One connection speaking raw SocketCluster frames.
pub(crate) struct Raw {
    ws: WebSocketStream<TcpStream>,
    pub(crate) id: String,
    next_cid: u64,
    stash: VecDeque<Value>,
}

impl Raw {
    /// Connects and completes the handshake, or fails (the server may be restarting).
    pub(crate) async fn connect(port: u16) -> Result<Raw, String> {
        let uri = format!("ws://127.0.0.1:{port}/socketcluster/");
        let connect = async {
            let tcp = TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| e.to_string())?;
            let (ws, _) = ClientBuilder::new()
                .uri(&uri)
                .map_err(|e| e.to_string())?
                .connect_on(tcp)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(ws)
        };
        let ws = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| "connect timed out".to_owned())??;
        let mut raw = Raw {
            ws,
            id: String::new(),
            next_cid: 1,
            stash: VecDeque::new(),
        };
        let answer = raw
            .invoke("#handshake", serde_json::json!({"authToken": null}))
            .await?;
        raw.id = answer["data"]["id"]
            .as_str()
            .ok_or("no socket id")?
            .to_owned();
        Ok(raw)
    }

    /// Connects, retrying for up to 20 s.
    pub(crate) async fn connect_retrying(port: u16) -> Raw {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match Raw::connect(port).await {
                Ok(raw) => return raw,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot connect: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Sends one text frame.
    pub(crate) async fn send(&mut self, text: String) -> Result<(), String> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends an event with a cid and waits (at most 10 s) for its response; other frames are
    /// kept for [`next`](Self::next).
    pub(crate) async fn invoke(&mut self, event: &str, data: Value) -> Result<Value, String> {
        let cid = self.next_cid;
        self.next_cid += 1;
        let frame = serde_json::json!({"event": event, "data": data, "cid": cid});
        self.send(frame.to_string()).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.read(deadline).await?;
            if value["rid"].as_u64() == Some(cid) {
                return Ok(value);
            }
            self.stash.push_back(value);
        }
    }

    /// The next frame that is not a response (stashed ones first), waiting at most `wait`.
    pub(crate) async fn next(&mut self, wait: Duration) -> Result<Value, String> {
        if let Some(value) = self.stash.pop_front() {
            return Ok(value);
        }
        self.read(tokio::time::Instant::now() + wait).await
    }

    /// Takes the frames kept so far.
    pub(crate) fn take_stash(&mut self) -> Vec<Value> {
        self.stash.drain(..).collect()
    }

    async fn read(&mut self, deadline: tokio::time::Instant) -> Result<Value, String> {
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| "timed out".to_owned())?
                .ok_or("connection ended")?
                .map_err(|e| e.to_string())?;
            if message.is_close() {
                return Err("closed".into());
            }
            let Some(text) = message.as_text() else {
                continue;
            };
            match text {
                "" => self.send(String::new()).await?,
                "#1" => self.send("#2".into()).await?,
                text => return serde_json::from_str(text).map_err(|e| format!("{e}: {text}")),
            }
        }
    }
}
