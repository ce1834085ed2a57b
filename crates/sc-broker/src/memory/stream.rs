//! In-process history and presence: [`MemoryHistory`] and [`MemoryPresence`], kept by the
//! in-process engine ([`MemoryBroker`](crate::MemoryBroker)) and by each broker process for the
//! channels it owns.
//!
//! Memory is bounded: a channel holds at most `size` publications (shared frames, so a retained
//! publication costs its frame once, however many subscribers got it), each for `ttl`; a channel
//! with nothing retained and no subscriber is forgotten by [`MemoryHistory::sweep`] once its
//! `ttl` has passed since it was last used. A forgotten channel starts over with a new epoch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sc_protocol::Publication;

use crate::stream::{
    HistoryPage, HistoryPolicy, HistoryRead, PRESENCE_LIST_LIMIT, Position, PresenceInfo,
    PresenceMember, new_epoch, recovers,
};

/// Shards of the history table (channels hash onto them; one lock each).
const SHARDS: usize = 16;

/// How often the background sweeper looks for expired publications and forgettable channels.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

type Shard = Mutex<HashMap<Arc<str>, ChannelHistory>>;

/// The history of every channel with history, in this process.
pub struct MemoryHistory {
    shards: Box<[Shard]>,
}

struct ChannelHistory {
    epoch: Arc<str>,
    offset: u64,
    /// Retained publications (with positions) and when each expires, oldest first.
    retained: VecDeque<(Publication, Instant)>,
    policy: HistoryPolicy,
    /// Last publish or read: the channel is kept at least `ttl` after it.
    touched: Instant,
}

impl ChannelHistory {
    fn new(policy: HistoryPolicy, now: Instant) -> ChannelHistory {
        ChannelHistory {
            epoch: Arc::from(new_epoch()),
            offset: 0,
            retained: VecDeque::new(),
            policy,
            touched: now,
        }
    }

    fn position(&self) -> Position {
        Position {
            offset: self.offset,
            epoch: self.epoch.clone(),
        }
    }

    fn prune(&mut self, now: Instant) {
        while self.retained.front().is_some_and(|(_, at)| *at <= now) {
            self.retained.pop_front();
        }
        while self.retained.len() > self.policy.size {
            self.retained.pop_front();
        }
    }
}

impl Default for MemoryHistory {
    fn default() -> Self {
        MemoryHistory {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl MemoryHistory {
    /// An empty history.
    pub fn new() -> MemoryHistory {
        MemoryHistory::default()
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[sc_protocol::hash::hash_key(channel, SHARDS)]
    }

    /// Gives `publication` the channel's next position, retains it, and hands the positioned
    /// publication to `deliver` while the channel is still locked, so that deliveries leave in
    /// offset order.
    pub fn append(
        &self,
        publication: &Publication,
        policy: HistoryPolicy,
        deliver: impl FnOnce(&Publication),
    ) -> Position {
        let now = Instant::now();
        let mut shard = self.shard(publication.channel()).lock();
        let entry = shard
            .entry(publication.channel_arc().clone())
            .or_insert_with(|| ChannelHistory::new(policy, now));
        entry.policy = policy;
        entry.touched = now;
        entry.offset += 1;
        let position = entry.position();
        let placed = publication.with_position(position.clone());
        entry.retained.push_back((placed.clone(), now + policy.ttl));
        entry.prune(now);
        deliver(&placed);
        position
    }

    /// Reads `channel`'s history (creating its epoch if it has none).
    pub fn read(&self, channel: &str, policy: HistoryPolicy, read: &HistoryRead) -> HistoryPage {
        let now = Instant::now();
        let mut shard = self.shard(channel).lock();
        let entry = shard
            .entry(Arc::from(channel))
            .or_insert_with(|| ChannelHistory::new(policy, now));
        entry.policy = policy;
        entry.touched = now;
        entry.prune(now);
        let position = entry.position();
        let first = entry
            .retained
            .front()
            .and_then(|(p, _)| p.position().map(|p| p.offset));
        match read {
            HistoryRead::Since(since) => {
                let recovered = recovers(since, &position, first);
                let publications = if since.epoch == position.epoch {
                    entry
                        .retained
                        .iter()
                        .filter(|(p, _)| p.position().is_some_and(|p| p.offset > since.offset))
                        .map(|(p, _)| p.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                HistoryPage {
                    position,
                    publications,
                    recovered,
                }
            }
            HistoryRead::Last(n) => {
                let skip = entry.retained.len().saturating_sub(*n);
                HistoryPage {
                    position,
                    publications: entry
                        .retained
                        .iter()
                        .skip(skip)
                        .map(|(p, _)| p.clone())
                        .collect(),
                    recovered: true,
                }
            }
        }
    }

    /// Drops expired publications and forgets channels with nothing retained, no subscriber
    /// (`subscribed` says) and no use for their `ttl`. Returns how many channels were forgotten.
    pub fn sweep(&self, subscribed: &dyn Fn(&str) -> bool) -> usize {
        let now = Instant::now();
        let mut forgotten = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.retain(|channel, entry| {
                entry.prune(now);
                let keep = !entry.retained.is_empty()
                    || entry.touched + entry.policy.ttl > now
                    || subscribed(channel);
                forgotten += usize::from(!keep);
                keep
            });
            if shard.capacity() > 64 && shard.capacity() > 4 * shard.len() {
                shard.shrink_to_fit();
            }
        }
        forgotten
    }

    /// Number of channels with history held right now.
    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Runs [`sweep`](Self::sweep) every [`SWEEP_INTERVAL`] in a background task until `self`
    /// is dropped. Does nothing outside a Tokio runtime.
    pub fn spawn_sweeper(self: &Arc<Self>, subscribed: Arc<dyn Fn(&str) -> bool + Send + Sync>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<MemoryHistory> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(history) = weak.upgrade() else { break };
                history.sweep(&*subscribed);
            }
        });
    }
}

/// Who is in each presence channel, in this process, with the connection that registered each
/// member (so that a lost connection's members can be removed at once).
#[derive(Default)]
pub struct MemoryPresence {
    channels: Mutex<HashMap<Arc<str>, Members>>,
}

/// Socket id → (user, owning connection).
type Members = HashMap<String, (Option<String>, u64)>;

impl MemoryPresence {
    /// Empty.
    pub fn new() -> MemoryPresence {
        MemoryPresence::default()
    }

    /// Adds or updates `member` (registered by `owner`); true when it was not there before.
    pub fn join(&self, channel: &str, member: PresenceMember, owner: u64) -> bool {
        let mut channels = self.channels.lock();
        let members = channels.entry(Arc::from(channel)).or_default();
        members.insert(member.id, (member.user, owner)).is_none()
    }

    /// Removes the member `id`; returns it if it was there.
    pub fn leave(&self, channel: &str, id: &str) -> Option<PresenceMember> {
        let mut channels = self.channels.lock();
        let members = channels.get_mut(channel)?;
        let (user, _) = members.remove(id)?;
        if members.is_empty() {
            channels.remove(channel);
        }
        Some(PresenceMember {
            id: id.to_owned(),
            user,
        })
    }

    /// Removes every member registered by `owner`; returns them with their channels.
    pub fn remove_owner(&self, owner: u64) -> Vec<(String, PresenceMember)> {
        let mut removed = Vec::new();
        let mut channels = self.channels.lock();
        channels.retain(|channel, members| {
            members.retain(|id, (user, by)| {
                if *by == owner {
                    removed.push((
                        channel.to_string(),
                        PresenceMember {
                            id: id.clone(),
                            user: user.clone(),
                        },
                    ));
                    false
                } else {
                    true
                }
            });
            !members.is_empty()
        });
        removed
    }

    /// Who is in `channel`.
    pub fn query(&self, channel: &str) -> PresenceInfo {
        let channels = self.channels.lock();
        let Some(members) = channels.get(channel) else {
            return PresenceInfo::default();
        };
        PresenceInfo {
            count: members.len(),
            clients: members
                .iter()
                .take(PRESENCE_LIST_LIMIT)
                .map(|(id, (user, _))| PresenceMember {
                    id: id.clone(),
                    user: user.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_protocol::Json;

    fn policy(size: usize, ttl_ms: u64) -> HistoryPolicy {
        HistoryPolicy {
            size,
            ttl: Duration::from_millis(ttl_ms),
        }
    }

    #[test]
    fn offsets_count_and_history_is_bounded() {
        let history = MemoryHistory::new();
        let data = Json::from_text("1").unwrap();
        let mut delivered = Vec::new();
        for _ in 0..5 {
            history.append(
                &Publication::new("c", Some(&data)),
                policy(3, 60_000),
                |p| delivered.push(p.position().unwrap().offset),
            );
        }
        assert_eq!(delivered, vec![1, 2, 3, 4, 5]);
        let epoch = history
            .read("c", policy(3, 60_000), &HistoryRead::Last(0))
            .position
            .epoch;
        let page = history.read(
            "c",
            policy(3, 60_000),
            &HistoryRead::Since(Position::new(1, &epoch)),
        );
        assert!(!page.recovered, "2 fell out of a size-3 history");
        let offsets: Vec<u64> = page
            .publications
            .iter()
            .map(|p| p.position().unwrap().offset)
            .collect();
        assert_eq!(offsets, vec![3, 4, 5]);
        let page = history.read(
            "c",
            policy(3, 60_000),
            &HistoryRead::Since(Position::new(2, &epoch)),
        );
        assert!(page.recovered);
        let page = history.read("c", policy(3, 60_000), &HistoryRead::Last(2));
        assert_eq!(page.publications.len(), 2);
        assert_eq!(page.position.offset, 5);
    }

    #[test]
    fn expired_channels_are_forgotten_unless_subscribed() {
        let history = MemoryHistory::new();
        for i in 0..100 {
            history.append(
                &Publication::new(&format!("c{i}"), None),
                policy(10, 1),
                |_| {},
            );
        }
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(history.sweep(&|c| c == "c7"), 99);
        assert_eq!(history.channel_count(), 1);
        let old = history
            .read("c7", policy(10, 1), &HistoryRead::Last(0))
            .position;
        assert_eq!(old.offset, 1);
    }

    #[test]
    fn presence_members() {
        let presence = MemoryPresence::new();
        let m = |id: &str| PresenceMember {
            id: id.into(),
            user: None,
        };
        assert!(presence.join("c", m("a"), 1));
        assert!(!presence.join("c", m("a"), 1));
        assert!(presence.join("c", m("b"), 2));
        assert_eq!(presence.query("c").count, 2);
        assert_eq!(presence.remove_owner(2).len(), 1);
        assert_eq!(presence.leave("c", "a"), Some(m("a")));
        assert_eq!(presence.query("c"), PresenceInfo::default());
    }
}
