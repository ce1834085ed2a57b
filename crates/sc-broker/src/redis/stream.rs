//! History and presence kept in Redis, for [`RedisBroker`](crate::RedisBroker).
//!
//! Per history channel (prefix `sc:` by default):
//! - `<prefix>h:<channel>`: a hash with the channel's `epoch` and last `offset`;
//! - `<prefix>hl:<channel>`: a list of the retained publications, `<expiry ms>:<offset>:<frame>`.
//!
//! A publish is one Lua script: it creates the epoch if the hash is missing (Redis restarted
//! empty, flushed, or the channel expired: a new epoch, so no client mistakes the new history
//! for the old), increments the offset, builds the positioned frame, appends it, trims the list
//! to `size` and drops expired entries, then `PUBLISH`es the frame: atomic, so offsets are
//! delivered in order to every instance, and a publish is acknowledged only once it is stored.
//! The list expires `ttl` after the last publish; the hash a day later (each read refreshes it).
//!
//! Presence: `<prefix>p:<channel>` hashes socket id → `<owner>|{"id":…,"user":…}`, where the owner
//! is one process (a [`RedisLink`]) whose lease `<prefix>pl:<owner>` it refreshes every
//! [`LEASE_REFRESH`]; `<prefix>pc` lists presence channels. Every process sweeps that set every
//! [`LEASE_REFRESH`] and removes (announcing `#presenceLeave`) members whose owner's lease has
//! expired: a killed instance leaves everyone's presence within [`LEASE_TTL`] + [`LEASE_REFRESH`].

use std::sync::Arc;
use std::time::Duration;

use ::redis::Script;
use sc_protocol::Publication;

use super::link::RedisLink;
use crate::BrokerError;
use crate::stream::{
    HistoryPage, HistoryPolicy, HistoryRead, PRESENCE_LIST_LIMIT, Position, PresenceChange,
    PresenceInfo, PresenceMember, member_json, new_epoch, presence_channel, presence_event,
    presence_event_parts,
};

/// Lifetime of a process's presence lease.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a process refreshes its lease and sweeps expired owners' members.
pub const LEASE_REFRESH: Duration = Duration::from_secs(3);
/// How long a history channel's epoch outlives its last use (beyond its `ttl`).
const EPOCH_GRACE_MS: u64 = 86_400_000;

const NOW: &str = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";

const ENSURE_EPOCH: &str = "local epoch = redis.call('HGET', KEYS[1], 'epoch') \
if not epoch then epoch = ARGV[1] redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0) redis.call('DEL', KEYS[2]) end ";

const PRUNE: &str = "while true do local head = redis.call('LINDEX', KEYS[2], 0) \
if not head then break end \
local exp = tonumber(string.sub(head, 1, string.find(head, ':', 1, true) - 1)) \
if exp > now then break end redis.call('LPOP', KEYS[2]) end ";

fn publish_script() -> Script {
    Script::new(&format!(
        "{NOW}{ENSURE_EPOCH}\
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1) \
local frame = ARGV[2] .. ',\"offset\":' .. offset .. ',\"epoch\":\"' .. epoch .. '\"}}}}' \
redis.call('RPUSH', KEYS[2], (now + tonumber(ARGV[4])) .. ':' .. offset .. ':' .. frame) \
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1) \
{PRUNE}\
redis.call('PEXPIRE', KEYS[2], ARGV[4]) \
redis.call('PEXPIRE', KEYS[1], ARGV[5]) \
redis.call('PUBLISH', KEYS[3], frame) \
return {{offset, epoch}}"
    ))
}

fn history_script() -> Script {
    Script::new(&format!(
        "{NOW}{ENSURE_EPOCH}{PRUNE}\
redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset')) \
return {{offset, epoch, redis.call('LRANGE', KEYS[2], 0, -1)}}"
    ))
}

/// KEYS: presence hash, companion pub/sub key, channel set, the owner's lease; ARGV: id, value,
/// event frame, channel, lease ttl (ms). The lease is written with the member, so a member is
/// never seen (or swept by another process) before its owner's lease exists.
const JOIN: &str = "redis.call('SET', KEYS[4], 1, 'PX', ARGV[5]) \
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) \
redis.call('SADD', KEYS[3], ARGV[4]) \
if new == 1 then redis.call('PUBLISH', KEYS[2], ARGV[3]) end return new";

/// KEYS: presence hash, companion pub/sub key; ARGV: id, event head, event tail, owner ('' any).
const LEAVE: &str = "local v = redis.call('HGET', KEYS[1], ARGV[1]) \
if not v then return 0 end \
local bar = string.find(v, '|', 1, true) \
if ARGV[4] ~= '' and string.sub(v, 1, bar - 1) ~= ARGV[4] then return 0 end \
redis.call('HDEL', KEYS[1], ARGV[1]) \
redis.call('PUBLISH', KEYS[2], ARGV[2] .. string.sub(v, bar + 1) .. ARGV[3]) return 1";

fn meta_key(link: &RedisLink, channel: &str) -> String {
    format!("{}h:{channel}", link.options().prefix)
}

fn list_key(link: &RedisLink, channel: &str) -> String {
    format!("{}hl:{channel}", link.options().prefix)
}

fn presence_key(link: &RedisLink, channel: &str) -> String {
    format!("{}p:{channel}", link.options().prefix)
}

fn presence_set(link: &RedisLink) -> String {
    format!("{}pc", link.options().prefix)
}

fn lease_key(link: &RedisLink, owner: &str) -> String {
    format!("{}pl:{owner}", link.options().prefix)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Publishes with history (see the module documentation).
pub(crate) async fn publish(
    link: &RedisLink,
    publication: &Publication,
    policy: HistoryPolicy,
) -> Result<Position, BrokerError> {
    let frame = publication.frame();
    let limit = link.options().max_message_size;
    if frame.len() > limit {
        return Err(BrokerError::TooLarge {
            size: frame.len(),
            limit,
        });
    }
    let head = &frame[..frame.len() - 2];
    let ttl = millis(policy.ttl).max(1);
    let script = publish_script();
    let mut invocation = script.prepare_invoke();
    invocation
        .key(meta_key(link, publication.channel()))
        .key(list_key(link, publication.channel()))
        .key(link.channel_key(publication.channel()))
        .arg(new_epoch())
        .arg(head)
        .arg(policy.size)
        .arg(ttl)
        .arg(ttl.saturating_add(EPOCH_GRACE_MS));
    let (offset, epoch): (u64, String) = link
        .with_connection("publish", |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await?;
    Ok(Position::new(offset, &epoch))
}

/// Reads history (see the module documentation).
pub(crate) async fn read(
    link: &RedisLink,
    channel: &str,
    policy: HistoryPolicy,
    read: &HistoryRead,
) -> Result<HistoryPage, BrokerError> {
    let ttl = millis(policy.ttl).max(1);
    let script = history_script();
    let mut invocation = script.prepare_invoke();
    invocation
        .key(meta_key(link, channel))
        .key(list_key(link, channel))
        .arg(new_epoch())
        .arg(ttl.saturating_add(EPOCH_GRACE_MS));
    let (offset, epoch, entries): (u64, String, Vec<Vec<u8>>) = link
        .with_connection("history", |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await?;
    let position = Position::new(offset, &epoch);
    let mut retained = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut parts = entry.splitn(3, |b| *b == b':');
        let (_, _, Some(frame)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        match Publication::from_frame(bytes::Bytes::copy_from_slice(frame)) {
            Ok(p) if p.position().is_some() => retained.push(p),
            _ => tracing::warn!(%channel, "malformed history entry in redis; skipped"),
        }
    }
    Ok(HistoryPage::from_retained(read, position, retained))
}

/// Adds or updates a presence member owned by `owner`; a new one is announced.
pub(crate) async fn join(
    link: &RedisLink,
    owner: &str,
    channel: &str,
    member: &PresenceMember,
) -> Result<(), BrokerError> {
    let event = presence_event(PresenceChange::Join, channel, member);
    let value = format!("{owner}|{}", member_json(member));
    let script = Script::new(JOIN);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(presence_key(link, channel))
        .key(link.channel_key(&presence_channel(channel)))
        .key(presence_set(link))
        .key(lease_key(link, owner))
        .arg(&member.id)
        .arg(value)
        .arg(&event.frame()[..])
        .arg(channel)
        .arg(millis(LEASE_TTL));
    link.with_connection("presence join", |mut conn| async move {
        invocation.invoke_async::<i64>(&mut conn).await
    })
    .await
    .map(drop)
}

/// Removes a presence member (only if owned by `owner`, unless it is empty), announcing it.
pub(crate) async fn leave(
    link: &RedisLink,
    owner: &str,
    channel: &str,
    id: &str,
) -> Result<bool, BrokerError> {
    let (head, tail) = presence_event_parts(PresenceChange::Leave, channel);
    let script = Script::new(LEAVE);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(presence_key(link, channel))
        .key(link.channel_key(&presence_channel(channel)))
        .arg(id)
        .arg(head)
        .arg(tail)
        .arg(owner);
    let removed: i64 = link
        .with_connection("presence leave", |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await?;
    Ok(removed == 1)
}

/// Who is in `channel` (members of live owners only).
pub(crate) async fn query(link: &RedisLink, channel: &str) -> Result<PresenceInfo, BrokerError> {
    let members = members(link, channel).await?;
    let owners: Vec<String> = {
        let mut owners: Vec<String> = members.iter().map(|(o, _)| o.clone()).collect();
        owners.sort();
        owners.dedup();
        owners
    };
    let alive = live_owners(link, &owners).await?;
    let live: Vec<PresenceMember> = members
        .into_iter()
        .filter(|(owner, _)| alive.contains(owner))
        .map(|(_, m)| m)
        .collect();
    Ok(PresenceInfo {
        count: live.len(),
        clients: live.into_iter().take(PRESENCE_LIST_LIMIT).collect(),
    })
}

async fn members(
    link: &RedisLink,
    channel: &str,
) -> Result<Vec<(String, PresenceMember)>, BrokerError> {
    let key = presence_key(link, channel);
    let entries: Vec<(String, String)> = link
        .with_connection("presence", |mut conn| async move {
            ::redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await
        })
        .await?;
    Ok(entries
        .into_iter()
        .filter_map(|(_, value)| {
            let (owner, client) = value.split_once('|')?;
            let member: PresenceMember = serde_json::from_str(client).ok()?;
            Some((owner.to_owned(), member))
        })
        .collect())
}

async fn live_owners(link: &RedisLink, owners: &[String]) -> Result<Vec<String>, BrokerError> {
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = owners.iter().map(|o| lease_key(link, o)).collect();
    let exists: Vec<Option<String>> = link
        .with_connection("presence", |mut conn| async move {
            ::redis::cmd("MGET").arg(keys).query_async(&mut conn).await
        })
        .await?;
    Ok(owners
        .iter()
        .zip(exists)
        .filter(|(_, e)| e.is_some())
        .map(|(o, _)| o.clone())
        .collect())
}

/// Refreshes `owner`'s lease and removes the members of owners whose lease expired, every
/// [`LEASE_REFRESH`], until the link is dropped.
pub(crate) fn spawn_lease_keeper(link: &Arc<RedisLink>, owner: String) {
    let weak = Arc::downgrade(link);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LEASE_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(link) = weak.upgrade() else { break };
            if !link.is_connected() {
                continue;
            }
            if let Err(error) = keep_lease(&link, &owner).await {
                tracing::debug!(%error, "presence lease refresh failed");
            }
        }
    });
}

async fn keep_lease(link: &RedisLink, owner: &str) -> Result<(), BrokerError> {
    let key = lease_key(link, owner);
    let ttl = millis(LEASE_TTL);
    link.with_connection("presence lease", |mut conn| async move {
        ::redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .query_async::<()>(&mut conn)
            .await
    })
    .await?;
    let set = presence_set(link);
    let channels: Vec<String> = link
        .with_connection("presence sweep", |mut conn| async move {
            ::redis::cmd("SMEMBERS")
                .arg(set)
                .query_async(&mut conn)
                .await
        })
        .await?;
    for channel in channels {
        let members = members(link, &channel).await?;
        if members.is_empty() {
            let (set, key) = (presence_set(link), presence_key(link, &channel));
            let channel = channel.clone();
            // Forget the channel unless a member arrived meanwhile.
            let script = Script::new(
                "if redis.call('HLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], ARGV[1]) end return 0",
            );
            let mut invocation = script.prepare_invoke();
            invocation.key(set).key(key).arg(channel);
            link.with_connection("presence sweep", |mut conn| async move {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await?;
            continue;
        }
        let mut owners: Vec<String> = members.iter().map(|(o, _)| o.clone()).collect();
        owners.sort();
        owners.dedup();
        let alive = live_owners(link, &owners).await?;
        for (dead_owner, member) in members.iter().filter(|(o, _)| !alive.contains(o)) {
            leave(link, dead_owner, &channel, &member.id).await?;
        }
    }
    Ok(())
}
