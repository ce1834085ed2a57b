//! History and presence kept in NATS JetStream, for [`NatsBroker`](crate::NatsBroker).
//!
//! # History
//!
//! Channels with the same [`HistoryPolicy`] share one stream, `SC_H_<prefix>_<size>_<ttl ms>`
//! (created on first use, file storage), whose limits are the policy: `max_msgs_per_subject =
//! size`, `max_age = ttl`. In it, per channel (`<tok>` is the channel's [`encode_token`]):
//! - `schist.<prefix>.<size>.<ttl>.d.<tok>`: the retained publications, each stored as its
//!   positioned `#publish` frame;
//! - `schist.<prefix>.<size>.<ttl>.e.<tok>`: the epoch marker, the epoch of the channel's
//!   current history, written once (compare-and-set on an empty subject) when a channel without
//!   retained publications is first read or published to.
//!
//! A publish reads the last stored publication of the channel (its offset and epoch; with none,
//! offset 0 and the marker's epoch), and appends offset + 1 with JetStream's
//! `Nats-Expected-Last-Subject-Sequence`: when another instance appended meanwhile the append is
//! refused and retried, so offsets are gap-free and unique across instances. The stream
//! *republishes* every stored publication to the channel's core subject (`<subject prefix><tok>`),
//! in stream order: live deliveries carry the same position as the acknowledgement, in offset
//! order, and only stored publications are ever delivered.
//!
//! Epochs: the marker expires with the stream's `max_age` (the policy's `ttl`) like the
//! publications, and it is older than every publication of its epoch, so the channel's last
//! publication can only expire after its marker did: a channel with nothing retained either has
//! its epoch's marker (no publication yet, so a subscribe acknowledgement's epoch is the one the
//! first publication carries) or none (NATS restarted empty, or the history expired) and gets a
//! new epoch.

//! # Presence
//!
//! Stream `SC_P_<prefix>` keeps one message per member on
//! `scpres.<prefix>.m.<channel tok>.<owner>.<socket tok>` (value: the member's JSON), where the
//! owner is one process; stream `SC_L_<prefix>` (`max_age` = [`LEASE_TTL`]) keeps each owner's
//! lease on `scpres.<prefix>.l.<owner>`, refreshed every [`LEASE_REFRESH`]. Every process sweeps
//! the members every [`LEASE_REFRESH`] and removes (announcing `#presenceLeave`) those whose
//! owner's lease expired: a killed instance leaves everyone's presence within [`LEASE_TTL`] +
//! [`LEASE_REFRESH`]. Joins and leaves are announced on the companion channel's core subject.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{
    self as js, DirectGetErrorKind, DiscardPolicy, Republish, StorageType, Stream,
};
use bytes::Bytes;
use futures_util::TryStreamExt;
use parking_lot::Mutex;
use sc_protocol::Publication;

use super::link::{NatsLink, encode_token};
use crate::BrokerError;
use crate::stream::{
    HistoryPage, HistoryPolicy, HistoryRead, PRESENCE_LIST_LIMIT, Position, PresenceChange,
    PresenceInfo, PresenceMember, new_epoch, presence_channel, presence_event,
};
use crate::support::AbortOnDrop;

/// Lifetime of a process's presence lease.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a process refreshes its lease and sweeps expired owners' members.
pub const LEASE_REFRESH: Duration = Duration::from_secs(3);
/// Compare-and-set attempts before giving up on a contended channel.
const MAX_ATTEMPTS: usize = 200;

/// Why a JetStream step failed.
enum Failure {
    /// Another instance wrote first: read again and retry.
    Conflict,
    /// The stream may be gone (NATS restarted empty): recreate it and retry once.
    Gone(String),
    /// Anything else.
    Broker(BrokerError),
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Failure {
        Failure::Broker(e)
    }
}

/// History and presence state of one [`NatsBroker`](crate::NatsBroker).
pub(crate) struct NatsStreams {
    link: Arc<NatsLink>,
    jetstream: async_nats::jetstream::Context,
    /// `encode_token(subject prefix)`, part of every name so deployments sharing a server with
    /// different prefixes stay apart.
    scope: String,
    streams: Mutex<HashMap<String, Stream>>,
    /// Per channel data subject being published to: the publish gate and the last stored
    /// (stream sequence, position).
    gates: Mutex<HashMap<String, Gate>>,
    owner: String,
    lease: Mutex<Option<AbortOnDrop>>,
}

/// A channel's publish gate and the last position it stored.
type Gate = Arc<tokio::sync::Mutex<Option<(u64, Position)>>>;

/// Forgets a channel's gate when its last user is done (also when a publish is cancelled).
struct Release<'a> {
    streams: &'a NatsStreams,
    gate: Gate,
    key: &'a str,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut gates = self.streams.gates.lock();
        // Clones are only made under this lock: 2 = the map's and ours, so nobody else waits.
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(self.key);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Reverses [`encode_token`].
fn decode_token(token: &str) -> String {
    if token == "=" {
        return String::new();
    }
    crate::url::unescape_hex(token, b'=')
}

impl NatsStreams {
    pub(crate) fn new(link: Arc<NatsLink>) -> NatsStreams {
        let mut jetstream = async_nats::jetstream::new(link.client().clone());
        jetstream.set_timeout(link.options().op_timeout);
        let scope = encode_token(&link.options().subject_prefix);
        NatsStreams {
            link,
            jetstream,
            scope,
            streams: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            owner: new_epoch(),
            lease: Mutex::new(None),
        }
    }

    fn history_base(&self, policy: HistoryPolicy) -> String {
        format!(
            "schist.{}.{}.{}",
            self.scope,
            policy.size,
            millis(policy.ttl)
        )
    }

    fn history_config(&self, policy: HistoryPolicy) -> js::Config {
        let base = self.history_base(policy);
        let ttl = Duration::from_millis(millis(policy.ttl));
        js::Config {
            name: format!("SC_H_{}_{}_{}", self.scope, policy.size, millis(policy.ttl)),
            description: Some("SocketCluster channel history".to_owned()),
            subjects: vec![format!("{base}.d.>"), format!("{base}.e.>")],
            max_messages_per_subject: i64::try_from(policy.size.max(1)).unwrap_or(i64::MAX),
            max_age: ttl,
            duplicate_window: ttl.min(Duration::from_secs(120)),
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            allow_direct: direct_gets(self.link.replicas()),
            num_replicas: self.link.replicas(),
            republish: Some(Republish {
                source: format!("{base}.d.>"),
                destination: format!("{}>", self.link.options().subject_prefix),
                headers_only: false,
            }),
            ..Default::default()
        }
    }

    fn members_config(&self) -> js::Config {
        js::Config {
            name: format!("SC_P_{}", self.scope),
            description: Some("SocketCluster presence members".to_owned()),
            subjects: vec![format!("scpres.{}.m.>", self.scope)],
            max_messages_per_subject: 1,
            storage: StorageType::File,
            allow_direct: direct_gets(self.link.replicas()),
            num_replicas: self.link.replicas(),
            ..Default::default()
        }
    }

    fn leases_config(&self) -> js::Config {
        js::Config {
            name: format!("SC_L_{}", self.scope),
            description: Some("SocketCluster presence leases".to_owned()),
            subjects: vec![format!("scpres.{}.l.>", self.scope)],
            max_messages_per_subject: 1,
            max_age: LEASE_TTL,
            duplicate_window: LEASE_TTL / 2,
            storage: StorageType::Memory,
            allow_direct: direct_gets(self.link.replicas()),
            num_replicas: self.link.replicas(),
            ..Default::default()
        }
    }

    /// The stream of `config`, created if missing (cached).
    async fn stream(&self, config: js::Config) -> Result<Stream, BrokerError> {
        self.link.ensure_connected()?;
        if let Some(stream) = self.streams.lock().get(&config.name) {
            return Ok(stream.clone());
        }
        let name = config.name.clone();
        let mut stream = self
            .jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|e| {
                BrokerError::Unavailable(format!(
                    "nats: cannot open or create the JetStream stream {name} (is JetStream enabled, nats-server -js?): {e}"
                ))
            })?;
        // A replicated stream another instance is creating at this very moment exists before
        // its leader is elected; until then nothing answers its publishes and gets, which would
        // wait out the whole operation timeout. Wait for the leader (bounded by the caller).
        let leaderless = |info: &js::Info| {
            info.cluster
                .as_ref()
                .is_some_and(|cluster| info.config.num_replicas > 1 && cluster.leader.is_none())
        };
        while leaderless(stream.cached_info()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Err(e) = stream.info().await {
                tracing::debug!(engine = "nats", stream = %name, error = %e, "stream info");
            }
        }
        self.streams.lock().insert(name, stream.clone());
        Ok(stream)
    }

    /// Runs `op` on the stream of `config`; when the stream seems gone, recreates it and runs
    /// `op` again (up to 4 times, waiting 50, 100, 200 ms: in a cluster a stream just created
    /// reaches the other servers a moment later).
    async fn on_stream<T, F, Fut>(
        &self,
        action: &'static str,
        config: impl Fn() -> js::Config,
        op: F,
    ) -> Result<T, BrokerError>
    where
        F: Fn(Stream) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let run = async {
            let mut last = String::new();
            for attempt in 0..4u32 {
                let config = config();
                let name = config.name.clone();
                let stream = self.stream(config).await?;
                match op(stream).await {
                    Ok(value) => return Ok(value),
                    Err(Failure::Gone(reason)) => {
                        self.streams.lock().remove(&name);
                        last = reason;
                        if attempt < 3 {
                            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        }
                    }
                    Err(Failure::Conflict) => {
                        return Err(BrokerError::Engine(format!(
                            "nats {action}: too many concurrent writers, gave up"
                        )));
                    }
                    Err(Failure::Broker(e)) => return Err(e),
                }
            }
            Err(BrokerError::Unavailable(format!("nats {action}: {last}")))
        };
        self.link.bounded(action, run).await?
    }

    /// Publishes and waits for the stream's acknowledgement; `expect` is the subject's expected
    /// last sequence (0: empty), `None` for no check.
    async fn append(
        &self,
        subject: String,
        payload: Bytes,
        expect: Option<u64>,
    ) -> Result<u64, Failure> {
        let mut message = PublishMessage::build().payload(payload);
        if let Some(seq) = expect {
            message = message.expected_last_subject_sequence(seq);
        }
        let classify = |kind: PublishErrorKind, text: String| match kind {
            PublishErrorKind::WrongLastSequence => Failure::Conflict,
            PublishErrorKind::StreamNotFound => Failure::Gone(text),
            _ => Failure::Broker(BrokerError::Unavailable(format!("nats publish: {text}"))),
        };
        let ack = self
            .jetstream
            .send_publish(subject, message)
            .await
            .map_err(|e| classify(e.kind(), e.to_string()))?;
        let ack = ack.await.map_err(|e| classify(e.kind(), e.to_string()))?;
        Ok(ack.sequence)
    }

    /// Publishes with history (see the module documentation).
    pub(crate) async fn publish(
        &self,
        publication: &Publication,
        policy: HistoryPolicy,
    ) -> Result<Position, BrokerError> {
        let limit = self.link.payload_limit();
        // The stored frame is the given one plus the position (offset and epoch).
        let size = publication.frame().len() + 64;
        if size > limit {
            return Err(BrokerError::TooLarge { size, limit });
        }
        let token = encode_token(publication.channel());
        let base = self.history_base(policy);
        let data = format!("{base}.d.{token}");
        let marker = format!("{base}.e.{token}");
        // One publish at a time per channel in this process (they would only conflict with each
        // other), remembering where the last one went: the next append expects it, without
        // reading first, and reads again only when another instance got in between.
        let release = Release {
            streams: self,
            gate: self.gate(&data),
            key: &data,
        };
        let mut last = release.gate.lock().await;
        let hint = last.clone();
        let (seq, position) = self
            .on_stream(
                "publish",
                || self.history_config(policy),
                |stream| {
                    let (data, marker, mut hint) = (data.clone(), marker.clone(), hint.clone());
                    async move {
                        let mut conflicted = false;
                        for _ in 0..MAX_ATTEMPTS {
                            let (seq, position) = match hint.take() {
                                Some((seq, p)) => (seq, Position::new(p.offset + 1, &p.epoch)),
                                None => match last_read(&stream, &data, conflicted).await? {
                                    Some(message) => {
                                        let p = stored_position(&message)?;
                                        (message.sequence, Position::new(p.offset + 1, &p.epoch))
                                    }
                                    None => {
                                        let epoch = self.epoch(&stream, &marker).await?;
                                        (0, Position::new(1, &epoch))
                                    }
                                },
                            };
                            let frame = publication.with_position(position.clone()).frame().clone();
                            match self.append(data.clone(), frame, Some(seq)).await {
                                Ok(stored) => return Ok((stored, position)),
                                Err(Failure::Conflict) => {
                                    conflicted = true;
                                    tokio::task::yield_now().await;
                                }
                                Err(other) => return Err(other),
                            }
                        }
                        Err(Failure::Conflict)
                    }
                },
            )
            .await
            .inspect_err(|_| *last = None)?;
        *last = Some((seq, position.clone()));
        Ok(position)
    }

    /// The publish gate of a channel's data subject (created if missing).
    fn gate(&self, key: &str) -> Gate {
        self.gates.lock().entry(key.to_owned()).or_default().clone()
    }

    /// The epoch of a channel with no retained publication: the marker's, or a new one written
    /// with compare-and-set (see the module documentation).
    async fn epoch(&self, stream: &Stream, marker: &str) -> Result<String, Failure> {
        let mut conflicted = false;
        for _ in 0..MAX_ATTEMPTS {
            if let Some(current) = last_read(stream, marker, conflicted).await? {
                if let Ok(epoch) = std::str::from_utf8(&current.payload) {
                    if !epoch.is_empty() {
                        return Ok(epoch.to_owned());
                    }
                }
            }
            let epoch = new_epoch();
            match self
                .append(marker.to_owned(), Bytes::from(epoch.clone()), Some(0))
                .await
            {
                Ok(_) => return Ok(epoch),
                Err(Failure::Conflict) => {
                    conflicted = true;
                    tokio::task::yield_now().await;
                }
                Err(other) => return Err(other),
            }
        }
        Err(Failure::Conflict)
    }

    /// Reads history (see the module documentation).
    pub(crate) async fn read(
        &self,
        channel: &str,
        policy: HistoryPolicy,
        read: &HistoryRead,
    ) -> Result<HistoryPage, BrokerError> {
        let token = encode_token(channel);
        let base = self.history_base(policy);
        let data = format!("{base}.d.{token}");
        let marker = format!("{base}.e.{token}");
        let (position, retained) = self
            .on_stream(
                "history",
                || self.history_config(policy),
                |stream| {
                    let (data, marker) = (data.clone(), marker.clone());
                    async move {
                        let Some(last) = last_on(&stream, &data).await? else {
                            let epoch = self.epoch(&stream, &marker).await?;
                            return Ok((Position::new(0, &epoch), Vec::new()));
                        };
                        let position = stored_position(&last)?;
                        let wanted = match read {
                            HistoryRead::Last(0) => false,
                            HistoryRead::Since(since) => {
                                since.epoch == position.epoch && since.offset < position.offset
                            }
                            HistoryRead::Last(_) => true,
                        };
                        let mut retained = Vec::new();
                        let mut next = 1;
                        while wanted && next <= last.sequence {
                            let Some(message) = next_on(&stream, &data, next).await? else {
                                break;
                            };
                            next = message.sequence + 1;
                            match Publication::from_frame(message.payload) {
                                Ok(p) if p.position().is_some() => retained.push(p),
                                _ => tracing::warn!(%channel, "malformed history entry in nats; skipped"),
                            }
                        }
                        Ok((position, retained))
                    }
                },
            )
            .await?;
        Ok(HistoryPage::from_retained(read, position, retained))
    }

    fn member_subject(&self, channel: &str, owner: &str, id: &str) -> String {
        format!(
            "scpres.{}.m.{}.{owner}.{}",
            self.scope,
            encode_token(channel),
            encode_token(id)
        )
    }

    fn lease_subject(&self, owner: &str) -> String {
        format!("scpres.{}.l.{owner}", self.scope)
    }

    /// Announces a presence change on the companion channel's core subject.
    async fn announce(
        &self,
        change: PresenceChange,
        channel: &str,
        member: &PresenceMember,
    ) -> Result<(), BrokerError> {
        let event = presence_event(change, channel, member);
        let subject = format!(
            "{}{}",
            self.link.options().subject_prefix,
            encode_token(&presence_channel(channel))
        );
        self.link
            .client()
            .publish(subject, event.frame().clone())
            .await
            .map_err(|e| BrokerError::Unavailable(format!("nats presence event: {e}")))
    }

    /// Starts the lease keeper once (on the first join).
    pub(crate) fn start_lease(self: &Arc<Self>) {
        let mut lease = self.lease.lock();
        if lease.is_none() {
            *lease = Some(AbortOnDrop(tokio::spawn(keep_leases(Arc::downgrade(self)))));
        }
    }

    async fn refresh_lease(&self) -> Result<(), BrokerError> {
        let subject = self.lease_subject(&self.owner);
        self.on_stream(
            "presence lease",
            || self.leases_config(),
            |_| {
                let subject = subject.clone();
                async move { self.append(subject, Bytes::from_static(b"1"), None).await }
            },
        )
        .await
        .map(drop)
    }

    /// Adds or updates a member owned by this process; a new one is announced.
    pub(crate) async fn join(
        &self,
        channel: &str,
        member: &PresenceMember,
    ) -> Result<(), BrokerError> {
        self.refresh_lease().await?;
        let subject = self.member_subject(channel, &self.owner, &member.id);
        let value = Bytes::from(serde_json::to_vec(member).unwrap_or_default());
        let new = self
            .on_stream(
                "presence join",
                || self.members_config(),
                |_| {
                    let (subject, value) = (subject.clone(), value.clone());
                    async move {
                        match self.append(subject.clone(), value.clone(), Some(0)).await {
                            Ok(_) => Ok(true),
                            Err(Failure::Conflict) => {
                                self.append(subject, value, None).await.map(|_| false)
                            }
                            Err(other) => Err(other),
                        }
                    }
                },
            )
            .await?;
        if new {
            self.announce(PresenceChange::Join, channel, member).await?;
        }
        Ok(())
    }

    /// Removes the member stored on `subject`, announcing it; false if it was not there.
    async fn remove(&self, channel: &str, subject: &str) -> Result<bool, BrokerError> {
        let removed = self
            .on_stream(
                "presence leave",
                || self.members_config(),
                |stream| async move {
                    let Some(last) = last_on(&stream, subject).await? else {
                        return Ok(None);
                    };
                    stream.purge().filter(subject).await.map_err(|e| {
                        Failure::Broker(BrokerError::Unavailable(format!("nats purge: {e}")))
                    })?;
                    Ok(serde_json::from_slice::<PresenceMember>(&last.payload).ok())
                },
            )
            .await?;
        match removed {
            Some(member) => {
                self.announce(PresenceChange::Leave, channel, &member)
                    .await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Removes a member of this process, announcing it.
    pub(crate) async fn leave(&self, channel: &str, id: &str) -> Result<(), BrokerError> {
        let subject = self.member_subject(channel, &self.owner, id);
        self.remove(channel, &subject).await.map(drop)
    }

    /// Member subjects matching `filter`: (channel token, owner, subject).
    async fn member_subjects(
        &self,
        filter: String,
    ) -> Result<Vec<(String, String, String)>, BrokerError> {
        self.on_stream(
            "presence",
            || self.members_config(),
            |stream| {
                let filter = filter.clone();
                async move {
                    let subjects: Vec<(String, usize)> = match stream
                        .info_with_subjects(&filter)
                        .await
                    {
                        Ok(info) => info.try_collect().await.map_err(|e| {
                            Failure::Broker(BrokerError::Unavailable(format!("nats presence: {e}")))
                        })?,
                        Err(e) => return Err(Failure::Gone(e.to_string())),
                    };
                    Ok(subjects
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .filter_map(|(subject, _)| {
                            let mut parts = subject.rsplitn(3, '.');
                            let _id = parts.next()?;
                            let owner = parts.next()?.to_owned();
                            let rest = parts.next()?;
                            let channel = rest.rsplit('.').next()?.to_owned();
                            Some((channel, owner, subject))
                        })
                        .collect())
                }
            },
        )
        .await
    }

    /// The owners among `owners` whose lease is alive.
    async fn live_owners(&self, owners: &[String]) -> Result<Vec<String>, BrokerError> {
        let mut alive = Vec::new();
        for owner in owners {
            let subject = self.lease_subject(owner);
            let found = self
                .on_stream(
                    "presence",
                    || self.leases_config(),
                    |stream| {
                        let subject = subject.clone();
                        async move { Ok(last_on(&stream, &subject).await?.is_some()) }
                    },
                )
                .await?;
            if found {
                alive.push(owner.clone());
            }
        }
        Ok(alive)
    }

    /// Who is in `channel` (members of live owners only).
    pub(crate) async fn query(&self, channel: &str) -> Result<PresenceInfo, BrokerError> {
        let filter = format!("scpres.{}.m.{}.*.*", self.scope, encode_token(channel));
        let subjects = self.member_subjects(filter).await?;
        let mut owners: Vec<String> = subjects.iter().map(|(_, o, _)| o.clone()).collect();
        owners.sort();
        owners.dedup();
        let alive = self.live_owners(&owners).await?;
        let live: Vec<&String> = subjects
            .iter()
            .filter(|(_, o, _)| alive.contains(o))
            .map(|(_, _, s)| s)
            .collect();
        let mut clients = Vec::new();
        for subject in live.iter().take(PRESENCE_LIST_LIMIT) {
            let member = self
                .on_stream(
                    "presence",
                    || self.members_config(),
                    |stream| async move { last_on(&stream, subject).await },
                )
                .await?;
            if let Some(member) = member.and_then(|m| serde_json::from_slice(&m.payload).ok()) {
                clients.push(member);
            }
        }
        Ok(PresenceInfo {
            count: live.len(),
            clients,
        })
    }

    /// Refreshes this process's lease and removes the members of expired owners.
    async fn sweep(&self) -> Result<(), BrokerError> {
        self.refresh_lease().await?;
        let subjects = self
            .member_subjects(format!("scpres.{}.m.>", self.scope))
            .await?;
        let mut owners: Vec<String> = subjects.iter().map(|(_, o, _)| o.clone()).collect();
        owners.sort();
        owners.dedup();
        let alive = self.live_owners(&owners).await?;
        for (channel, _, subject) in subjects.iter().filter(|(_, o, _)| !alive.contains(o)) {
            self.remove(&decode_token(channel), subject).await?;
        }
        Ok(())
    }
}

async fn keep_leases(streams: Weak<NatsStreams>) {
    let mut tick = tokio::time::interval(LEASE_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(streams) = streams.upgrade() else {
            break;
        };
        if !streams.link.is_connected() {
            continue;
        }
        if let Err(error) = streams.sweep().await {
            tracing::debug!(%error, "presence lease refresh failed");
        }
    }
}

/// The position a stored publication carries.
fn stored_position(message: &StreamMessage) -> Result<Position, Failure> {
    Publication::from_frame(message.payload.clone())
        .ok()
        .and_then(|p| p.position().cloned())
        .ok_or_else(|| {
            Failure::Broker(BrokerError::Engine(format!(
                "nats: stored message {} on {} is not a positioned publication",
                message.sequence, message.subject
            )))
        })
}

fn direct_failure(
    kind: DirectGetErrorKind,
    text: String,
) -> Result<Option<StreamMessage>, Failure> {
    match kind {
        DirectGetErrorKind::NotFound => Ok(None),
        _ => Err(Failure::Gone(text)),
    }
}

/// Whether a direct get found no server to answer it: a replicated stream's servers answer
/// direct gets only once they are current, which takes a moment after the stream is created
/// or a server restarts (seen with nats-server 2.10 and 3 replicas). The stream's leader then
/// answers through the JetStream API (`$JS.API.STREAM.MSG.GET`).
fn no_responders(kind: &DirectGetErrorKind) -> bool {
    matches!(kind, DirectGetErrorKind::ErrorResponse(status, _)
        if *status == async_nats::StatusCode::NO_RESPONDERS)
}

/// The answer of a message get through the JetStream API (see [`no_responders`]).
fn api_answer(
    answer: Result<StreamMessage, js::RawMessageError>,
) -> Result<Option<StreamMessage>, Failure> {
    match answer {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.kind() == js::RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(Failure::Gone(e.to_string())),
    }
}

/// Whether the streams we create with `replicas` replicas allow direct gets. Any of a
/// replicated stream's servers answers a direct get, also a follower that has not applied the
/// latest write yet: a read right after a write could miss it. So only single-replica streams
/// allow them; replicated ones are read through their leader (`$JS.API.STREAM.MSG.GET`).
pub(crate) fn direct_gets(replicas: usize) -> bool {
    replicas <= 1
}

/// The last message on `subject`, if any.
async fn last_on(stream: &Stream, subject: &str) -> Result<Option<StreamMessage>, Failure> {
    if !stream.cached_info().config.allow_direct {
        return api_answer(stream.get_last_raw_message_by_subject(subject).await);
    }
    match stream.direct_get_last_for_subject(subject).await {
        Ok(message) => Ok(Some(message)),
        Err(e) if no_responders(&e.kind()) => {
            api_answer(stream.get_last_raw_message_by_subject(subject).await)
        }
        Err(e) => direct_failure(e.kind(), e.to_string()),
    }
}

/// The last message on `subject`, if any: by direct get, or from the stream's leader when
/// `from_leader` (after a compare-and-set conflict: on a replicated stream any server may answer
/// a direct get, and a follower that has not applied the latest write yet would give the same
/// stale answer again and again).
async fn last_read(
    stream: &Stream,
    subject: &str,
    from_leader: bool,
) -> Result<Option<StreamMessage>, Failure> {
    if from_leader {
        api_answer(stream.get_last_raw_message_by_subject(subject).await)
    } else {
        last_on(stream, subject).await
    }
}

/// The first message on `subject` at or after stream sequence `from`, if any.
async fn next_on(
    stream: &Stream,
    subject: &str,
    from: u64,
) -> Result<Option<StreamMessage>, Failure> {
    // Through the stream's leader (`$JS.API.STREAM.MSG.GET`).
    let from_leader = || async {
        api_answer(
            stream
                .raw_message_builder()
                .sequence(from)
                .next_by_subject(subject.to_owned())
                .send()
                .await,
        )
    };
    if !stream.cached_info().config.allow_direct {
        return from_leader().await;
    }
    match stream
        .direct_get_next_for_subject(subject, Some(from))
        .await
    {
        Ok(message) => Ok(Some(message)),
        Err(e) if no_responders(&e.kind()) => from_leader().await,
        Err(e) => direct_failure(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_decode() {
        for name in ["", "room/1", "a.b c>*", "ü", "x=y"] {
            assert_eq!(decode_token(&encode_token(name)), name);
        }
    }
}
