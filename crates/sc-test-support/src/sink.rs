//! A [`DeliverySink`] that collects what a broker delivers, with bounded waits on it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sc_broker::DeliverySink;
use sc_protocol::{Json, Publication};
use tokio::sync::Notify;

/// Collects every delivered publication, in arrival order.
#[derive(Debug, Default)]
pub struct Collect {
    items: Mutex<Vec<Publication>>,
    changed: Notify,
}

impl DeliverySink for Collect {
    fn deliver(&self, publication: Publication) {
        self.items.lock().push(publication);
        self.changed.notify_waiters();
    }
}

impl Collect {
    /// An empty sink, ready to attach to a broker.
    pub fn new() -> Arc<Collect> {
        Arc::new(Collect::default())
    }

    /// How many publications arrived.
    pub fn len(&self) -> usize {
        self.items.lock().len()
    }

    /// Whether nothing arrived yet.
    pub fn is_empty(&self) -> bool {
        self.items.lock().is_empty()
    }

    /// The data of every publication, as JSON text (`-` for a publication without data).
    pub fn data(&self) -> Vec<String> {
        self.items
            .lock()
            .iter()
            .map(|p| p.data().map_or("-".to_owned(), |d| d.get().to_owned()))
            .collect()
    }

    /// Every publication, in arrival order.
    pub fn publications(&self) -> Vec<Publication> {
        self.items.lock().clone()
    }

    /// The channel of every publication.
    pub fn channels(&self) -> Vec<String> {
        self.items
            .lock()
            .iter()
            .map(|p| p.channel().to_owned())
            .collect()
    }

    /// Waits until `predicate` holds on the data, at most `within`; returns whether it held.
    pub async fn wait_until(
        &self,
        within: Duration,
        predicate: impl Fn(&[String]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if predicate(&self.data()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return predicate(&self.data());
            }
        }
    }

    /// Waits until at least `n` publications arrived, at most `within`; returns whether they did.
    pub async fn wait_for(&self, n: usize, within: Duration) -> bool {
        self.wait_until(within, |d| d.len() >= n).await
    }
}

/// A publication of `data` (JSON text) on `channel`.
pub fn publication(channel: &str, data: &str) -> Publication {
    Publication::new(
        channel,
        Some(&Json::from_text(data).expect("valid JSON text")),
    )
}
