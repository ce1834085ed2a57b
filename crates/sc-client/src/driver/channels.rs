//! The channel table and the client channel state machine (PROTOCOL.md §7.6, §7.7).

use std::collections::HashMap;

use sc_protocol::{Json, ScError, encode};
use tokio::sync::watch;

use super::Driver;
use super::outbound::Awaiting;
use crate::channel::{ChannelState, ChannelStatus, SubscribeOptions, UnsubscribeReason};
use crate::events::{AuthState, ClientEvent};
use crate::sink::DataSink;

/// One wanted channel (pending or subscribed). Unsubscribed channels are removed.
struct Entry {
    options: SubscribeOptions,
    state: ChannelState,
    status: watch::Sender<ChannelStatus>,
    sinks: Vec<DataSink>,
    /// The cid of the `#subscribe` in flight (at most one per channel).
    pending_cid: Option<u64>,
    /// Creation order, to keep equal priorities in subscription order.
    seq: u64,
}

impl Entry {
    fn set_state(&mut self, state: ChannelState) {
        self.state = state;
        let status = match state {
            ChannelState::Subscribed => ChannelStatus::SUBSCRIBED,
            _ => ChannelStatus::PENDING,
        };
        self.status.send_replace(status);
    }

    /// Marks every handle unsubscribed; dropping the entry then ends their streams.
    fn finish(self, reason: UnsubscribeReason) {
        self.status
            .send_replace(ChannelStatus::unsubscribed(reason));
    }
}

/// Channels by name.
#[derive(Default)]
pub(super) struct Channels {
    map: HashMap<String, Entry>,
    next_seq: u64,
}

impl Driver {
    /// `subscribe(name, options)`: creates the channel as pending (or updates its options) and
    /// attaches one more consumer. Returns the status watch for the new handle.
    pub(super) async fn subscribe(
        &mut self,
        name: String,
        options: SubscribeOptions,
        sink: DataSink,
    ) -> watch::Receiver<ChannelStatus> {
        if let Some(entry) = self.channels.map.get_mut(&name) {
            entry.options = options;
            entry.sinks.push(sink);
            return entry.status.subscribe();
        }
        let (status, rx) = watch::channel(ChannelStatus::PENDING);
        let seq = self.channels.next_seq;
        self.channels.next_seq += 1;
        let entry = Entry {
            options,
            state: ChannelState::Pending,
            status,
            sinks: vec![sink],
            pending_cid: None,
            seq,
        };
        self.channels.map.insert(name.clone(), entry);
        self.try_subscribe(&name).await;
        rx
    }

    /// Sends `#subscribe` if the connection is open, the channel has no request in flight, and
    /// its auth requirement is met; otherwise the channel stays pending.
    async fn try_subscribe(&mut self, name: &str) {
        if !self.phase.is_open() || self.preparing_subscriptions {
            return;
        }
        let authenticated = self.auth_state == AuthState::Authenticated;
        let Some(entry) = self.channels.map.get_mut(name) else {
            return;
        };
        if entry.pending_cid.is_some() || (entry.options.wait_for_auth && !authenticated) {
            return;
        }
        let cid = self.out.cid();
        entry.pending_cid = Some(cid);
        let data = subscribe_data(&self.shared.options.decorate(name), &entry.options);
        self.out.track(
            cid,
            "#subscribe".to_owned(),
            Awaiting::Subscribe {
                channel: name.to_owned(),
            },
            None,
        );
        self.write(encode::event("#subscribe", Some(&data), Some(cid)))
            .await;
    }

    /// Subscribes every pending channel, highest priority first.
    pub(super) async fn process_pending_subscriptions(&mut self) {
        let mut pending: Vec<(i64, u64, String)> = self
            .channels
            .map
            .iter()
            .filter(|(_, e)| e.state == ChannelState::Pending && e.pending_cid.is_none())
            .map(|(name, e)| (e.options.priority, e.seq, name.clone()))
            .collect();
        pending.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, name) in pending {
            self.try_subscribe(&name).await;
        }
    }

    /// The answer to a `#subscribe`.
    pub(super) fn on_subscribe_response(&mut self, name: &str, rid: u64, error: Option<Json>) {
        let authenticated = self.auth_state == AuthState::Authenticated;
        let Some(entry) = self.channels.map.get_mut(name) else {
            return;
        };
        if entry.pending_cid != Some(rid) {
            return; // an answer to a request that was cancelled (unsubscribed meanwhile)
        }
        entry.pending_cid = None;
        let Some(error) = error else {
            if entry.state != ChannelState::Subscribed {
                entry.set_state(ChannelState::Subscribed);
                self.emit(ClientEvent::Subscribe {
                    channel: name.to_owned(),
                });
            }
            return;
        };
        let error = ScError::from_json(&error);
        if entry.options.wait_for_auth && !authenticated {
            // Refused only for lack of auth: stay pending until authenticated.
            return;
        }
        if let Some(entry) = self.channels.map.remove(name) {
            entry.finish(UnsubscribeReason::SubscribeFailed(error.clone()));
        }
        self.emit(ClientEvent::SubscribeFail {
            channel: name.to_owned(),
            error,
        });
    }

    /// `unsubscribe(name)`: gone at once locally; `#unsubscribe` (no cid) if connected.
    pub(super) async fn unsubscribe(&mut self, name: &str) {
        let Some(entry) = self.remove_channel(name) else {
            return;
        };
        entry.finish(UnsubscribeReason::Unsubscribed);
        if self.phase.is_open() {
            let data = Json::string(&self.shared.options.decorate(name));
            self.write(encode::event("#unsubscribe", Some(data.get()), None))
                .await;
        }
    }

    /// `#kickOut`: the server already dropped the subscription; no `#unsubscribe` is sent.
    pub(super) fn on_kick_out(&mut self, data: Option<&Json>) {
        #[derive(serde::Deserialize)]
        struct KickOut {
            channel: String,
            #[serde(default)]
            message: Option<serde_json::Value>,
        }
        let Some(mut kick) = data.and_then(|d| d.parse::<KickOut>().ok()) else {
            return;
        };
        kick.channel = self.shared.options.undecorate(&kick.channel).to_owned();
        if !self.channels.map.contains_key(&kick.channel) {
            return;
        }
        let message = kick.message.filter(|m| !m.is_null()).map(|m| match m {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        self.emit(ClientEvent::KickOut {
            channel: kick.channel.clone(),
            message: message.clone(),
        });
        if let Some(entry) = self.remove_channel(&kick.channel) {
            entry.finish(UnsubscribeReason::KickedOut { message });
        }
    }

    /// Removes a channel, cancelling its `#subscribe` in flight; emits `Unsubscribe` if it was
    /// subscribed.
    fn remove_channel(&mut self, name: &str) -> Option<Entry> {
        let entry = self.channels.map.remove(name)?;
        if let Some(cid) = entry.pending_cid {
            self.out.take(cid);
        }
        if entry.state == ChannelState::Subscribed {
            self.emit(ClientEvent::Unsubscribe {
                channel: name.to_owned(),
            });
        }
        Some(entry)
    }

    /// The connection closed: every channel becomes pending (to be re-subscribed).
    pub(super) fn suspend_subscriptions(&mut self) {
        let mut unsubscribed = Vec::new();
        for (name, entry) in &mut self.channels.map {
            entry.pending_cid = None;
            if entry.state == ChannelState::Subscribed {
                unsubscribed.push(name.clone());
            }
            entry.set_state(ChannelState::Pending);
        }
        unsubscribed.sort();
        for channel in unsubscribed {
            self.emit(ClientEvent::Unsubscribe { channel });
        }
    }

    /// `#publish` from the server: handed to the channel's consumers if it is pending or
    /// subscribed, dropped otherwise.
    pub(super) fn deliver_publication(&mut self, channel: &str, data: &Json) {
        let Some(entry) = self.channels.map.get_mut(channel) else {
            tracing::debug!(%channel, "publication for a channel that is not subscribed; dropped");
            return;
        };
        entry
            .sinks
            .retain(|sink| sink.deliver(data, "channel", channel));
    }

    /// The client is shutting down: every channel ends.
    pub(super) fn close_all_channels(&mut self) {
        for (_, entry) in self.channels.map.drain() {
            entry.finish(UnsubscribeReason::ClientClosed);
        }
    }
}

/// `{"channel":…[,"waitForAuth":true][,"data":…]}`, keys in the reference order.
fn subscribe_data(name: &str, options: &SubscribeOptions) -> String {
    let mut out = format!(r#"{{"channel":{}"#, Json::string(name));
    if options.wait_for_auth {
        out.push_str(r#","waitForAuth":true"#);
    }
    if let Some(data) = options.data.as_ref().filter(|d| is_truthy(d)) {
        out.push_str(r#","data":"#);
        out.push_str(data.get());
    }
    out.push('}');
    out
}

/// JavaScript truthiness of a JSON value (the clients omit falsy subscription data).
fn is_truthy(value: &Json) -> bool {
    match value.parse::<serde_json::Value>() {
        Ok(serde_json::Value::Null) | Err(_) => false,
        Ok(serde_json::Value::Bool(b)) => b,
        Ok(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Ok(serde_json::Value::String(s)) => !s.is_empty(),
        Ok(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tokio::sync::broadcast;

    use super::*;
    use crate::driver::test_driver;
    use crate::sink;

    fn drain(events: &mut broadcast::Receiver<ClientEvent>) -> Vec<ClientEvent> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    /// The §7.6 state machine, driven directly (no connection: nothing is written).
    #[tokio::test]
    async fn channel_state_machine() {
        let (mut driver, mut events) = test_driver();
        let (sink, mut source) = sink::buffer(2);
        let status = driver
            .subscribe("a".into(), SubscribeOptions::default(), sink)
            .await;
        assert_eq!(status.borrow().state, ChannelState::Pending);
        // Closed: nothing was sent, so no request is in flight.
        assert_eq!(driver.channels.map["a"].pending_cid, None);

        // Publications reach pending channels; a full buffer drops the newest.
        for n in 1..=3 {
            driver.deliver_publication("a", &Json::encode(&n).unwrap());
        }
        assert_eq!(source.rx.try_recv().unwrap().get(), "1");
        assert_eq!(source.dropped.load(Ordering::Relaxed), 1);

        // Only the answer to the request in flight counts.
        driver.channels.map.get_mut("a").unwrap().pending_cid = Some(5);
        driver.on_subscribe_response("a", 4, None);
        assert_eq!(status.borrow().state, ChannelState::Pending);
        driver.on_subscribe_response("a", 5, None);
        assert_eq!(status.borrow().state, ChannelState::Subscribed);
        assert_eq!(
            drain(&mut events),
            [ClientEvent::Subscribe {
                channel: "a".into()
            }]
        );

        // A disconnect makes it pending again.
        driver.suspend_subscriptions();
        assert_eq!(status.borrow().state, ChannelState::Pending);
        assert_eq!(
            drain(&mut events),
            [ClientEvent::Unsubscribe {
                channel: "a".into()
            }]
        );

        // A waitForAuth channel refused while unauthenticated stays pending; once
        // authenticated, a refusal removes it.
        let (sink, _private) = sink::buffer(2);
        let options = SubscribeOptions {
            wait_for_auth: true,
            ..SubscribeOptions::default()
        };
        let private = driver.subscribe("p".into(), options, sink).await;
        let refusal =
            || Some(Json::from_text(r#"{"message":"no","name":"ForbiddenChannelError"}"#).unwrap());
        driver.channels.map.get_mut("p").unwrap().pending_cid = Some(6);
        driver.on_subscribe_response("p", 6, refusal());
        assert_eq!(private.borrow().state, ChannelState::Pending);
        driver.auth_state = AuthState::Authenticated;
        driver.channels.map.get_mut("p").unwrap().pending_cid = Some(7);
        driver.on_subscribe_response("p", 7, refusal());
        assert_eq!(private.borrow().state, ChannelState::Unsubscribed);
        assert!(
            matches!(private.borrow().reason, Some(UnsubscribeReason::SubscribeFailed(ref e)) if e.message() == "no")
        );
        assert!(!driver.channels.map.contains_key("p"));
        assert!(
            matches!(&drain(&mut events)[..], [ClientEvent::SubscribeFail { channel, .. }] if channel == "p")
        );

        // #kickOut removes the channel for good and ends its stream.
        let kick = Json::from_text(r#"{"channel":"a","message":"you are kicked"}"#).unwrap();
        driver.on_kick_out(Some(&kick));
        assert_eq!(
            status.borrow().reason,
            Some(UnsubscribeReason::KickedOut {
                message: Some("you are kicked".into())
            })
        );
        assert_eq!(
            drain(&mut events),
            [ClientEvent::KickOut {
                channel: "a".into(),
                message: Some("you are kicked".into())
            }]
        );
        assert_eq!(
            source
                .rx
                .recv()
                .await
                .map(|j| j.get().to_owned())
                .as_deref(),
            Some("2"),
            "buffered data stays"
        );
        assert!(source.rx.recv().await.is_none(), "then the stream ends");

        // Unknown channels are ignored.
        driver.on_kick_out(Some(&kick));
        driver.deliver_publication("a", &Json::NULL);
        assert!(drain(&mut events).is_empty());
    }

    fn json(text: &str) -> Json {
        Json::from_text(text).unwrap()
    }

    #[test]
    fn subscribe_data_like_the_reference() {
        assert_eq!(
            subscribe_data("news", &SubscribeOptions::default()),
            r#"{"channel":"news"}"#
        );
        let options = SubscribeOptions {
            wait_for_auth: true,
            data: Some(json(r#"{"sub":"extra"}"#)),
            priority: 0,
        };
        assert_eq!(
            subscribe_data("private", &options),
            r#"{"channel":"private","waitForAuth":true,"data":{"sub":"extra"}}"#
        );
        for falsy in ["0", "\"\"", "false", "null", "0.0"] {
            let options = SubscribeOptions {
                data: Some(json(falsy)),
                ..SubscribeOptions::default()
            };
            assert_eq!(
                subscribe_data("c", &options),
                r#"{"channel":"c"}"#,
                "{falsy}"
            );
        }
    }
}
