//! Server-initiated events: [`Receiver`] streams for transmits, procedure handlers for invokes.
//!
//! The registry is shared between the [`Client`](crate::Client) handles (which register) and
//! the background task (which dispatches). It sits behind a `parking_lot` mutex held only for
//! map look-ups and non-blocking sends, never across an `.await`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_util::Stream;
use sc_protocol::{Json, ScError};

use crate::presence::PresenceEvent;
use crate::sink::{DataSink, DataSource};

/// The future a procedure handler returns.
pub type ProcedureFuture = Pin<Box<dyn Future<Output = Result<Option<Json>, ScError>> + Send>>;

/// A boxed procedure handler.
pub(crate) type Procedure = Arc<dyn Fn(Option<Json>) -> ProcedureFuture + Send + Sync>;

/// The data of every server transmit (event without `cid`) with one name, as a [`Stream`]
/// (from [`Client::receiver`](crate::Client::receiver)).
///
/// Absent data is [`Json::NULL`]. Overflow policy as for channels: a full buffer drops new
/// messages for this receiver and counts them ([`Receiver::dropped`]). The stream ends when the
/// client shuts down.
pub struct Receiver {
    name: String,
    source: DataSource,
}

impl Receiver {
    pub(crate) fn new(name: String, source: DataSource) -> Receiver {
        Receiver { name, source }
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Messages dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.source.dropped.load(Ordering::Relaxed)
    }
}

impl Stream for Receiver {
    type Item = Json;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Json>> {
        self.source.rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Receivers and procedures by event name.
#[derive(Default)]
pub(crate) struct Registry {
    receivers: HashMap<String, Vec<DataSink>>,
    procedures: HashMap<String, Procedure>,
    presence: Vec<DataSink<PresenceEvent>>,
}

impl Registry {
    pub(crate) fn add_receiver(&mut self, name: &str, sink: DataSink) {
        self.receivers
            .entry(name.to_owned())
            .or_default()
            .push(sink);
    }

    pub(crate) fn set_procedure(&mut self, name: &str, procedure: Option<Procedure>) {
        match procedure {
            Some(p) => {
                self.procedures.insert(name.to_owned(), p);
            }
            None => {
                self.procedures.remove(name);
            }
        }
    }

    pub(crate) fn procedure(&self, name: &str) -> Option<Procedure> {
        self.procedures.get(name).cloned()
    }

    pub(crate) fn add_presence(&mut self, sink: DataSink<PresenceEvent>) {
        self.presence.push(sink);
    }

    /// Hands a presence change to every [`PresenceEvents`](crate::PresenceEvents) stream;
    /// returns whether anyone listened.
    pub(crate) fn deliver_presence(&mut self, event: &PresenceEvent) -> bool {
        self.presence
            .retain(|sink| sink.deliver(event, "presence", &event.channel));
        !self.presence.is_empty()
    }

    /// Hands a transmit to every receiver of `name`; returns whether anyone listened.
    pub(crate) fn deliver(&mut self, name: &str, data: &Json) -> bool {
        let Some(sinks) = self.receivers.get_mut(name) else {
            return false;
        };
        sinks.retain(|sink| sink.deliver(data, "receiver", name));
        if sinks.is_empty() {
            self.receivers.remove(name);
            return false;
        }
        true
    }
}
