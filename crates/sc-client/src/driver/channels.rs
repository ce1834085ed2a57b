//! The channel table: subscribe / unsubscribe, the `#subscribe` answer, kick-outs, delivery of
//! publications, and re-subscription after reconnects (docs/protocol.md §7.6, §15.1).
//!
//! History channels (EXTENSIONS.md E2–E4, E7): each entry remembers the channel's last
//! position, from the subscribe acknowledgement and from every delivery. Every `#subscribe`
//! after the first carries `{"recover":{offset,epoch}}` in its `data`; the acknowledgement's
//! `recovered` (and an epoch change on a live delivery) becomes a
//! [`ClientEvent::Recovery`]. A delivery at or below the highest offset already delivered in
//! the same epoch is a duplicate and is dropped.

use std::collections::HashMap;

use std::time::Duration;

use sc_protocol::error::names;
use sc_protocol::{Json, ScError, encode};
use tokio::sync::watch;

use super::Driver;
use super::outbound::Awaiting;
use crate::events::{AuthState, ClientEvent};
use crate::position::{Publication, Recovery, StreamPosition, SubscribeAck};
use crate::sink::DataSink;
use crate::subscription::{ChannelState, ChannelStatus, SubscribeOptions, UnsubscribeReason};

/// How long a channel refused with `BrokerError` waits before the next `#subscribe`.
const BROKER_RETRY: Duration = Duration::from_secs(1);

/// One wanted channel (pending or subscribed). Unsubscribed channels are removed.
struct Entry {
    options: SubscribeOptions,
    state: ChannelState,
    status: watch::Sender<ChannelStatus>,
    sinks: Vec<DataSink<Publication>>,
    /// The cid of the `#subscribe` in flight (at most one per channel).
    pending_cid: Option<u64>,
    /// Creation order, to keep equal priorities in subscription order.
    seq: u64,
    /// The last known position (history channels only): where a resubscribe recovers from.
    position: Option<StreamPosition>,
    /// The highest offset handed to the consumers in `position`'s epoch (0: none yet).
    delivered: u64,
    /// The position sent as `recover` in the `#subscribe` in flight.
    recovering_from: Option<StreamPosition>,
    /// A delivery changed the epoch while that `#subscribe` was in flight (its answer reports).
    epoch_changed_in_flight: bool,
}

impl Entry {
    fn set_state(&mut self, state: ChannelState) {
        self.state = state;
        self.status.send_modify(|s| {
            s.state = state;
            s.reason = None;
        });
    }

    /// Records a new position without waking [`Channel::changed`](crate::Channel::changed).
    fn set_position(&mut self, position: StreamPosition) {
        let shown = position.clone();
        self.position = Some(position);
        self.status.send_if_modified(|s| {
            s.position = Some(shown);
            false
        });
    }

    /// Marks every handle unsubscribed; dropping the entry then ends their streams.
    fn finish(self, reason: UnsubscribeReason) {
        self.status
            .send_replace(ChannelStatus::unsubscribed(reason, self.position));
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
        sink: DataSink<Publication>,
    ) -> watch::Receiver<ChannelStatus> {
        if let Some(entry) = self.channels.map.get_mut(&name) {
            if entry.position.is_none() {
                if let Some(position) = options.recover.clone() {
                    entry.set_position(position);
                }
            }
            entry.options = options;
            entry.sinks.push(sink);
            return entry.status.subscribe();
        }
        let position = options.recover.clone();
        let (status, rx) = watch::channel(ChannelStatus {
            position: position.clone(),
            ..ChannelStatus::PENDING
        });
        let seq = self.channels.next_seq;
        self.channels.next_seq += 1;
        let entry = Entry {
            options,
            state: ChannelState::Pending,
            status,
            sinks: vec![sink],
            pending_cid: None,
            seq,
            position,
            delivered: 0,
            recovering_from: None,
            epoch_changed_in_flight: false,
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
        entry.epoch_changed_in_flight = false;
        let (data, recovering_from) = subscribe_data(
            &self.shared.options.decorate(name),
            &entry.options,
            entry.position.as_ref(),
        );
        entry.recovering_from = recovering_from;
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
    pub(super) fn on_subscribe_response(
        &mut self,
        name: &str,
        rid: u64,
        data: Option<&Json>,
        error: Option<Json>,
    ) {
        let authenticated = self.auth_state == AuthState::Authenticated;
        let Some(entry) = self.channels.map.get_mut(name) else {
            return;
        };
        if entry.pending_cid != Some(rid) {
            return; // an answer to a request that was cancelled (unsubscribed meanwhile)
        }
        entry.pending_cid = None;
        let recovering_from = entry.recovering_from.take();
        let Some(error) = error else {
            let recovery = entry.on_ack(SubscribeAck::parse(data), recovering_from);
            if let Some((recovery, position)) = recovery {
                self.emit(ClientEvent::Recovery {
                    channel: name.to_owned(),
                    recovery,
                    position,
                });
            }
            let Some(entry) = self.channels.map.get_mut(name) else {
                return;
            };
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
        if error.name() == Some(names::BROKER) {
            // The channel's store is unavailable (an engine outage): stay pending, try again.
            tracing::warn!(channel = %name, "subscribe failed with BrokerError; retrying in {BROKER_RETRY:?}");
            self.resubscribe_at = Some(super::deadline_after(BROKER_RETRY));
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
    /// `position` is the delivery's `offset` and `epoch`, on history channels.
    pub(super) fn deliver_publication(
        &mut self,
        channel: &str,
        data: Json,
        position: Option<(u64, &str)>,
    ) {
        let Some(entry) = self.channels.map.get_mut(channel) else {
            tracing::debug!(%channel, "publication for a channel that is not subscribed; dropped");
            return;
        };
        let mut lost = None;
        let position = match position {
            None => None,
            Some((offset, epoch)) => match entry.on_delivery(channel, offset, epoch) {
                Delivery::Duplicate => return,
                Delivery::Next(position) => Some(position),
                Delivery::NewEpoch { position, from } => {
                    lost = from.map(|from| (from, position.clone()));
                    Some(position)
                }
            },
        };
        let publication = Publication { data, position };
        entry
            .sinks
            .retain(|sink| sink.deliver(&publication, "channel", channel));
        if let Some((from, position)) = lost {
            tracing::warn!(%channel, %from, %position, "the channel's history was lost (new epoch on a live delivery)");
            self.emit(ClientEvent::Recovery {
                channel: channel.to_owned(),
                recovery: Recovery::NotRecovered { from: Some(from) },
                position,
            });
        }
    }

    /// The client is shutting down: every channel ends.
    pub(super) fn close_all_channels(&mut self) {
        for (_, entry) in self.channels.map.drain() {
            entry.finish(UnsubscribeReason::ClientClosed);
        }
    }
}

/// What a delivery on a history channel means for its stream.
enum Delivery {
    /// Already delivered (same epoch, offset not above the highest delivered): dropped.
    Duplicate,
    /// The next publication.
    Next(StreamPosition),
    /// The first publication of a new epoch; `from` is the position held in the old one (to
    /// report, unless a recovering `#subscribe` is in flight and its answer will).
    NewEpoch {
        position: StreamPosition,
        from: Option<StreamPosition>,
    },
}

impl Entry {
    /// Tracks the position of a delivery.
    fn on_delivery(&mut self, channel: &str, offset: u64, epoch: &str) -> Delivery {
        match &self.position {
            Some(held) if *held.epoch == *epoch => {
                if offset <= self.delivered {
                    tracing::debug!(%channel, offset, "duplicate publication dropped");
                    return Delivery::Duplicate;
                }
                if offset > held.offset + 1 && self.delivered > 0 {
                    tracing::warn!(%channel, from = held.offset, to = offset, "gap in a history channel's offsets");
                }
                let position = StreamPosition {
                    offset,
                    epoch: held.epoch.clone(),
                };
                self.delivered = offset;
                if offset > held.offset {
                    self.set_position(position.clone());
                }
                Delivery::Next(position)
            }
            held => {
                let from = held.clone();
                let position = StreamPosition::new(offset, epoch);
                self.delivered = offset;
                self.set_position(position.clone());
                let report = if self.recovering_from.is_some() {
                    self.epoch_changed_in_flight = true;
                    None
                } else {
                    from
                };
                Delivery::NewEpoch {
                    position,
                    from: report,
                }
            }
        }
    }

    /// Tracks the position of a successful `#subscribe` answer; returns the recovery outcome to
    /// report when the `#subscribe` asked to recover (or the epoch changed).
    fn on_ack(
        &mut self,
        ack: Option<SubscribeAck>,
        recovering_from: Option<StreamPosition>,
    ) -> Option<(Recovery, StreamPosition)> {
        let changed_in_flight = std::mem::take(&mut self.epoch_changed_in_flight);
        let Some(ack) = ack else {
            if let Some(from) = recovering_from {
                // The server no longer keeps history for this channel: positions end here.
                tracing::warn!(%from, "a recovering subscribe was answered without a position");
                self.position = None;
                self.delivered = 0;
                self.status.send_if_modified(|s| {
                    s.position = None;
                    false
                });
            }
            return None;
        };
        let same_epoch = self
            .position
            .as_ref()
            .is_some_and(|held| held.epoch == ack.position.epoch);
        if same_epoch {
            if self
                .position
                .as_ref()
                .is_some_and(|held| ack.position.offset > held.offset)
            {
                self.set_position(ack.position.clone());
            }
        } else {
            self.delivered = 0;
            self.set_position(ack.position.clone());
        }
        let position = self.position.clone().unwrap_or(ack.position);
        let recovered = ack.recovered;
        match recovering_from {
            Some(from) => {
                let ok =
                    recovered == Some(true) && !changed_in_flight && *from.epoch == *position.epoch;
                let recovery = if ok {
                    Recovery::Recovered { from }
                } else {
                    Recovery::NotRecovered { from: Some(from) }
                };
                Some((recovery, position))
            }
            None => None,
        }
    }
}

/// `{"channel":…[,"waitForAuth":true][,"data":…]}`, keys in the reference order, and the
/// position sent as `recover`.
///
/// On a channel with a known `position` the data carries `"recover":{offset,epoch}`; otherwise
/// `history` asks for `"history":{"limit":n}`. These keys are merged into the application's
/// `data` when it is an object (replacing keys of the same name) or stand alone when it is
/// absent or falsy; other data (a string, a number, an array) is sent as it is, without them.
fn subscribe_data(
    name: &str,
    options: &SubscribeOptions,
    position: Option<&StreamPosition>,
) -> (String, Option<StreamPosition>) {
    let mut out = format!(r#"{{"channel":{}"#, Json::string(name));
    if options.wait_for_auth {
        out.push_str(r#","waitForAuth":true"#);
    }
    let app_data = options.data.as_ref().filter(|d| is_truthy(d));
    let extension = match (position, options.history) {
        (Some(position), _) => Some(("recover", position.to_json_text())),
        (None, Some(limit)) => Some(("history", format!(r#"{{"limit":{limit}}}"#))),
        (None, None) => None,
    };
    let mut recovering_from = None;
    let data = match (app_data, extension) {
        (app, None) => app.map(|d| d.get().to_owned()),
        (None, Some((key, value))) => {
            recovering_from = position.cloned();
            Some(format!(r#"{{"{key}":{value}}}"#))
        }
        (Some(app), Some((key, value))) => {
            match app.parse::<serde_json::Map<String, serde_json::Value>>() {
                Ok(mut map) => {
                    let value: serde_json::Value =
                        serde_json::from_str(&value).unwrap_or(serde_json::Value::Null);
                    map.insert(key.to_owned(), value);
                    recovering_from = position.cloned();
                    serde_json::to_string(&map).ok()
                }
                Err(_) => {
                    tracing::debug!(channel = %name, "subscribe data is not an object: sent without `{key}`");
                    Some(app.get().to_owned())
                }
            }
        }
    };
    if let Some(data) = data {
        out.push_str(r#","data":"#);
        out.push_str(&data);
    }
    out.push('}');
    (out, recovering_from)
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
            driver.deliver_publication("a", Json::encode(&n).unwrap(), None);
        }
        assert_eq!(source.rx.try_recv().unwrap().get(), "1");
        assert_eq!(source.dropped.load(Ordering::Relaxed), 1);

        // Only the answer to the request in flight counts.
        driver.channels.map.get_mut("a").unwrap().pending_cid = Some(5);
        driver.on_subscribe_response("a", 4, None, None);
        assert_eq!(status.borrow().state, ChannelState::Pending);
        driver.on_subscribe_response("a", 5, None, None);
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
        driver.on_subscribe_response("p", 6, None, refusal());
        assert_eq!(private.borrow().state, ChannelState::Pending);
        driver.auth_state = AuthState::Authenticated;
        driver.channels.map.get_mut("p").unwrap().pending_cid = Some(7);
        driver.on_subscribe_response("p", 7, None, refusal());
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
        driver.deliver_publication("a", Json::NULL, None);
        assert!(drain(&mut events).is_empty());
    }

    fn json(text: &str) -> Json {
        Json::from_text(text).unwrap()
    }

    #[test]
    fn subscribe_data_like_the_reference() {
        assert_eq!(
            subscribe_data("news", &SubscribeOptions::default(), None).0,
            r#"{"channel":"news"}"#
        );
        let options = SubscribeOptions {
            wait_for_auth: true,
            data: Some(json(r#"{"sub":"extra"}"#)),
            priority: 0,
            ..SubscribeOptions::default()
        };
        assert_eq!(
            subscribe_data("private", &options, None).0,
            r#"{"channel":"private","waitForAuth":true,"data":{"sub":"extra"}}"#
        );
        for falsy in ["0", "\"\"", "false", "null", "0.0"] {
            let options = SubscribeOptions {
                data: Some(json(falsy)),
                ..SubscribeOptions::default()
            };
            assert_eq!(
                subscribe_data("c", &options, None).0,
                r#"{"channel":"c"}"#,
                "{falsy}"
            );
        }
    }

    #[test]
    fn subscribe_data_carries_positions() {
        let at = StreamPosition::new(41, "k3Vq9");
        let plain = SubscribeOptions::default();
        assert_eq!(
            subscribe_data("room/1", &plain, Some(&at)),
            (
                r#"{"channel":"room/1","data":{"recover":{"offset":41,"epoch":"k3Vq9"}}}"#
                    .to_owned(),
                Some(at.clone())
            )
        );
        let join = SubscribeOptions {
            history: Some(50),
            data: Some(json(r#"{"sub":"extra","recover":1}"#)),
            ..SubscribeOptions::default()
        };
        assert_eq!(
            subscribe_data("room/1", &join, None),
            (
                r#"{"channel":"room/1","data":{"sub":"extra","recover":1,"history":{"limit":50}}}"#
                    .to_owned(),
                None
            )
        );
        // A position wins over history, and replaces the application's key of that name.
        assert_eq!(
            subscribe_data("room/1", &join, Some(&at)).0,
            r#"{"channel":"room/1","data":{"sub":"extra","recover":{"offset":41,"epoch":"k3Vq9"}}}"#
        );
        // Data that is not an object is sent as it is.
        let string = SubscribeOptions {
            data: Some(json(r#""token""#)),
            ..SubscribeOptions::default()
        };
        assert_eq!(
            subscribe_data("room/1", &string, Some(&at)),
            (r#"{"channel":"room/1","data":"token"}"#.to_owned(), None)
        );
    }

    /// Positions from acks and deliveries, duplicates, and the recovery outcome.
    #[tokio::test]
    async fn positions_and_recovery() {
        let (mut driver, mut events) = test_driver();
        let (sink, mut source) = sink::buffer(16);
        let status = driver
            .subscribe("room/1".into(), SubscribeOptions::default(), sink)
            .await;
        let entry = driver.channels.map.get_mut("room/1").unwrap();
        entry.pending_cid = Some(1);
        driver.on_subscribe_response(
            "room/1",
            1,
            Some(&json(r#"{"offset":4,"epoch":"e1"}"#)),
            None,
        );
        assert_eq!(status.borrow().position, Some(StreamPosition::new(4, "e1")));

        driver.deliver_publication("room/1", json("5"), Some((5, "e1")));
        driver.deliver_publication("room/1", json("5"), Some((5, "e1")));
        driver.deliver_publication("room/1", json("6"), Some((6, "e1")));
        let got: Vec<_> = std::iter::from_fn(|| source.rx.try_recv().ok()).collect();
        assert_eq!(
            got.iter()
                .map(|p| (p.get().to_owned(), p.offset()))
                .collect::<Vec<_>>(),
            [("5".to_owned(), Some(5)), ("6".to_owned(), Some(6))],
            "the duplicate is dropped"
        );
        assert_eq!(status.borrow().position, Some(StreamPosition::new(6, "e1")));
        assert_eq!(
            drain(&mut events),
            [ClientEvent::Subscribe {
                channel: "room/1".into()
            }]
        );

        // Reconnect: the resubscribe recovers from 6; the server replays 7 and says recovered.
        driver.suspend_subscriptions();
        let entry = driver.channels.map.get_mut("room/1").unwrap();
        let (data, from) = subscribe_data("room/1", &entry.options, entry.position.as_ref());
        assert!(
            data.contains(r#""recover":{"offset":6,"epoch":"e1"}"#),
            "{data}"
        );
        entry.recovering_from = from;
        entry.pending_cid = Some(2);
        driver.deliver_publication("room/1", json("7"), Some((7, "e1")));
        driver.on_subscribe_response(
            "room/1",
            2,
            Some(&json(r#"{"recovered":true,"offset":7,"epoch":"e1"}"#)),
            None,
        );
        let events_now = drain(&mut events);
        assert!(
            events_now.contains(&ClientEvent::Recovery {
                channel: "room/1".into(),
                recovery: Recovery::Recovered {
                    from: StreamPosition::new(6, "e1")
                },
                position: StreamPosition::new(7, "e1"),
            }),
            "{events_now:?}"
        );

        // A new epoch on a live delivery: reported once, and the stream goes on from there.
        driver.deliver_publication("room/1", json("1"), Some((1, "e2")));
        assert_eq!(
            drain(&mut events),
            [ClientEvent::Recovery {
                channel: "room/1".into(),
                recovery: Recovery::NotRecovered {
                    from: Some(StreamPosition::new(7, "e1"))
                },
                position: StreamPosition::new(1, "e2"),
            }]
        );
        assert_eq!(
            source.rx.try_recv().unwrap().position,
            Some(StreamPosition::new(7, "e1"))
        );
        assert_eq!(
            source.rx.try_recv().unwrap().position,
            Some(StreamPosition::new(1, "e2"))
        );

        // A resubscribe answered `recovered: false` (the epoch changed meanwhile), with a live
        // delivery of the new epoch before the answer: reported once, by the answer.
        driver.suspend_subscriptions();
        let entry = driver.channels.map.get_mut("room/1").unwrap();
        entry.recovering_from = entry.position.clone();
        entry.pending_cid = Some(3);
        driver.deliver_publication("room/1", json("\"x\""), Some((1, "e3")));
        assert!(
            !drain(&mut events)
                .iter()
                .any(|e| matches!(e, ClientEvent::Recovery { .. }))
        );
        driver.on_subscribe_response(
            "room/1",
            3,
            Some(&json(r#"{"recovered":false,"offset":1,"epoch":"e3"}"#)),
            None,
        );
        let recoveries: Vec<_> = drain(&mut events)
            .into_iter()
            .filter(|e| matches!(e, ClientEvent::Recovery { .. }))
            .collect();
        assert_eq!(
            recoveries,
            [ClientEvent::Recovery {
                channel: "room/1".into(),
                recovery: Recovery::NotRecovered {
                    from: Some(StreamPosition::new(1, "e2"))
                },
                position: StreamPosition::new(1, "e3"),
            }]
        );
    }
}
