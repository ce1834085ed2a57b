//! [`DataSink`]: the sending half of a bounded per-consumer buffer, with the overflow policy
//! shared by channels and receivers.
//!
//! Policy: the background task never waits for a consumer. When a consumer's buffer is full
//! the *new* message is dropped for that consumer only, counted (see
//! [`Channel::dropped`](crate::Channel::dropped)) and logged with `tracing::warn!`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sc_protocol::Json;
use tokio::sync::mpsc;

/// Where messages for one consumer go.
pub(crate) struct DataSink<T = Json> {
    tx: mpsc::Sender<T>,
    dropped: Arc<AtomicU64>,
}

/// The consumer's half: the buffer and the shared drop counter.
pub(crate) struct DataSource<T = Json> {
    pub(crate) rx: mpsc::Receiver<T>,
    pub(crate) dropped: Arc<AtomicU64>,
}

/// A bounded buffer of `capacity` messages.
pub(crate) fn buffer<T>(capacity: usize) -> (DataSink<T>, DataSource<T>) {
    let (tx, rx) = mpsc::channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        DataSink {
            tx,
            dropped: dropped.clone(),
        },
        DataSource { rx, dropped },
    )
}

impl<T: Clone> DataSink<T> {
    /// Offers `data` without waiting. Returns `false` once the consumer is gone (the sink can
    /// then be forgotten).
    pub(crate) fn deliver(&self, data: &T, what: &str, name: &str) -> bool {
        match self.tx.try_send(data.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(%name, total, "{what} buffer full: message dropped for a slow consumer");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_newest_when_full_and_notices_closed_consumer() {
        let (sink, mut source) = buffer::<Json>(1);
        assert!(sink.deliver(&Json::encode(&1).unwrap(), "channel", "c"));
        assert!(sink.deliver(&Json::encode(&2).unwrap(), "channel", "c"));
        assert_eq!(source.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(source.rx.try_recv().unwrap().get(), "1");
        drop(source);
        assert!(!sink.deliver(&Json::NULL, "channel", "c"));
    }
}
