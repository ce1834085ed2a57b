//! The outbound side: the queue of events waiting for an open connection, the requests waiting
//! for a response, their ack timers, and the call-id counter (docs/protocol.md §5.2, §15.4).

use std::collections::{BTreeSet, HashMap, VecDeque};

use sc_protocol::Json;
use tokio::time::Instant;

use crate::command::Reply;

/// An event waiting for the connection to open. Its ack timer runs from the moment it was
/// queued, as in the reference.
pub(super) struct Queued {
    seq: u64,
    pub(super) event: String,
    pub(super) data: Option<Json>,
    pub(super) reply: Option<Reply>,
    pub(super) deadline: Instant,
}

/// What a sent request's response is for.
pub(super) enum Awaiting {
    /// An application `invoke` or `authenticate`.
    Reply(Reply),
    /// The `#handshake` of the current connection.
    Handshake,
    /// A `#subscribe` (no timeout: it waits until answered or the connection drops).
    Subscribe { channel: String },
}

/// A request sent with a `cid`, waiting for `{"rid":cid,…}`.
pub(super) struct InFlight {
    pub(super) event: String,
    pub(super) awaiting: Awaiting,
    deadline: Option<Instant>,
}

/// A timer: which entry it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Queued(u64),
    InFlight(u64),
}

/// Something whose ack timer fired.
pub(super) enum Expired {
    /// Still queued: it was never sent.
    Queued(Queued),
    /// Sent, unanswered.
    InFlight(InFlight),
}

/// Queue, requests in flight and timers. Call ids start at 1 and keep counting across
/// reconnects (one counter per client).
pub(super) struct Outbound {
    next_cid: u64,
    next_seq: u64,
    queue: VecDeque<Queued>,
    in_flight: HashMap<u64, InFlight>,
    /// Ordered by deadline; every queued entry and every in-flight entry with a deadline has
    /// exactly one timer here.
    timers: BTreeSet<(Instant, TimerKey)>,
}

impl Outbound {
    pub(super) fn new() -> Outbound {
        Outbound {
            next_cid: 1,
            next_seq: 0,
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            timers: BTreeSet::new(),
        }
    }

    /// The next call id.
    pub(super) fn cid(&mut self) -> u64 {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        cid
    }

    /// Queues an event until the connection is open.
    pub(super) fn enqueue(
        &mut self,
        event: String,
        data: Option<Json>,
        reply: Option<Reply>,
        deadline: Instant,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.timers.insert((deadline, TimerKey::Queued(seq)));
        self.queue.push_back(Queued {
            seq,
            event,
            data,
            reply,
            deadline,
        });
    }

    /// Takes the oldest queued event (its timer is dropped; [`Outbound::track`] re-arms it for
    /// a request).
    pub(super) fn pop_queued(&mut self) -> Option<Queued> {
        let item = self.queue.pop_front()?;
        self.timers
            .remove(&(item.deadline, TimerKey::Queued(item.seq)));
        Some(item)
    }

    /// Records a sent request.
    pub(super) fn track(
        &mut self,
        cid: u64,
        event: String,
        awaiting: Awaiting,
        deadline: Option<Instant>,
    ) {
        if let Some(deadline) = deadline {
            self.timers.insert((deadline, TimerKey::InFlight(cid)));
        }
        if let Some(old) = self.in_flight.insert(
            cid,
            InFlight {
                event,
                awaiting,
                deadline,
            },
        ) {
            // Only possible after 2^64 calls; never leave a stale timer behind.
            if let Some(deadline) = old.deadline {
                self.timers.remove(&(deadline, TimerKey::InFlight(cid)));
            }
        }
    }

    /// Takes the request answered by `rid`, if it is still waiting.
    pub(super) fn take(&mut self, rid: u64) -> Option<InFlight> {
        let flight = self.in_flight.remove(&rid)?;
        if let Some(deadline) = flight.deadline {
            self.timers.remove(&(deadline, TimerKey::InFlight(rid)));
        }
        Some(flight)
    }

    /// The earliest ack deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns everything whose deadline is at or before `now`, earliest first.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Vec<Expired> {
        let mut expired = Vec::new();
        while let Some(&(deadline, key)) = self.timers.first() {
            if deadline > now {
                break;
            }
            self.timers.pop_first();
            match key {
                TimerKey::Queued(seq) => {
                    if let Some(i) = self.queue.iter().position(|q| q.seq == seq) {
                        if let Some(item) = self.queue.remove(i) {
                            expired.push(Expired::Queued(item));
                        }
                    }
                }
                TimerKey::InFlight(cid) => {
                    if let Some(flight) = self.in_flight.remove(&cid) {
                        expired.push(Expired::InFlight(flight));
                    }
                }
            }
        }
        expired
    }

    /// Empties everything (the connection is gone): queued events, then requests in flight.
    pub(super) fn drain(&mut self) -> (Vec<Queued>, Vec<InFlight>) {
        self.timers.clear();
        let queued = self.queue.drain(..).collect();
        let mut in_flight: Vec<(u64, InFlight)> = self.in_flight.drain().collect();
        in_flight.sort_by_key(|(cid, _)| *cid);
        (queued, in_flight.into_iter().map(|(_, f)| f).collect())
    }

    /// Whether nothing is queued.
    #[cfg(test)]
    pub(super) fn queue_is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cids_count_from_one() {
        let mut out = Outbound::new();
        assert_eq!((out.cid(), out.cid(), out.cid()), (1, 2, 3));
    }

    #[test]
    fn timers_follow_entries() {
        let now = Instant::now();
        let mut out = Outbound::new();
        out.enqueue("a".into(), None, None, now + Duration::from_millis(10));
        out.enqueue("b".into(), None, None, now + Duration::from_millis(5));
        assert_eq!(out.next_deadline(), Some(now + Duration::from_millis(5)));

        let a = out.pop_queued().unwrap();
        assert_eq!(a.event, "a");
        out.track(1, a.event, Awaiting::Handshake, Some(a.deadline));
        out.track(
            2,
            "#subscribe".into(),
            Awaiting::Subscribe {
                channel: "c".into(),
            },
            None,
        );

        let expired = out.pop_expired(now + Duration::from_millis(5));
        assert!(matches!(&expired[..], [Expired::Queued(q)] if q.event == "b"));
        assert!(out.queue_is_empty());
        assert_eq!(out.next_deadline(), Some(now + Duration::from_millis(10)));

        assert!(out.take(1).is_some());
        assert_eq!(out.next_deadline(), None);
        assert!(out.take(1).is_none());
        let (queued, in_flight) = out.drain();
        assert!(queued.is_empty());
        assert!(matches!(&in_flight[..], [f] if f.event == "#subscribe"));
    }
}
