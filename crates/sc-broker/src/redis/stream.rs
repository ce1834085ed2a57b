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

/// `script` with its `PUBLISH` calls made `SPUBLISH` on a Redis Cluster (sharded pub/sub: the
/// channel is in the slot of the script's keys).
fn for_link(link: &RedisLink, script: &str) -> Script {
    super::connection::script(
        &script.replace("'PUBLISH'", &format!("'{}'", link.publish_command())),
    )
}

fn publish_script(link: &RedisLink) -> Script {
    for_link(
        link,
        &format!(
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
        ),
    )
}

fn history_script() -> Script {
    super::connection::script(&format!(
        "{NOW}{ENSURE_EPOCH}{PRUNE}\
redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset')) \
return {{offset, epoch, redis.call('LRANGE', KEYS[2], 0, -1)}}"
    ))
}

/// KEYS: presence hash, companion pub/sub key; ARGV: id, value, event frame. (The channel set is
/// in another slot on a Redis Cluster, so it is added to after the script.)
const JOIN: &str = "local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) \
if new == 1 then redis.call('PUBLISH', KEYS[2], ARGV[3]) end return new";

/// KEYS: presence hash, companion pub/sub key; ARGV: id, event head, event tail, owner ('' any).
const LEAVE: &str = "local v = redis.call('HGET', KEYS[1], ARGV[1]) \
if not v then return 0 end \
local bar = string.find(v, '|', 1, true) \
if ARGV[4] ~= '' and string.sub(v, 1, bar - 1) ~= ARGV[4] then return 0 end \
redis.call('HDEL', KEYS[1], ARGV[1]) \
redis.call('PUBLISH', KEYS[2], ARGV[2] .. string.sub(v, bar + 1) .. ARGV[3]) return 1";

fn meta_key(link: &RedisLink, channel: &str) -> String {
    link.key("h", channel)
}

fn list_key(link: &RedisLink, channel: &str) -> String {
    link.key("hl", channel)
}

fn presence_key(link: &RedisLink, channel: &str) -> String {
    link.key("p", channel)
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
    let script = publish_script(link);
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
    // The owner's lease first: a member is never seen (or swept by another process) before its
    // owner's lease exists. (It lives in another slot on a Redis Cluster, so not in the script.)
    write_lease(link, owner).await?;
    let event = presence_event(PresenceChange::Join, channel, member);
    let value = format!("{owner}|{}", member_json(member));
    let script = for_link(link, JOIN);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(presence_key(link, channel))
        .key(link.channel_key(&presence_channel(channel)))
        .arg(&member.id)
        .arg(value)
        .arg(&event.frame()[..]);
    link.with_connection("presence join", |mut conn| async move {
        invocation.invoke_async::<i64>(&mut conn).await
    })
    .await?;
    // After the member is in (see `forget_channel` for why this order).
    let set = presence_set(link);
    let name = channel.to_owned();
    link.with_connection("presence join", |mut conn| async move {
        ::redis::cmd("SADD")
            .arg(set)
            .arg(name)
            .query_async::<i64>(&mut conn)
            .await
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
    let script = for_link(link, LEAVE);
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

/// Writes (or renews) `owner`'s presence lease for [`LEASE_TTL`].
async fn write_lease(link: &RedisLink, owner: &str) -> Result<(), BrokerError> {
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
    .await
}

async fn keep_lease(link: &RedisLink, owner: &str) -> Result<(), BrokerError> {
    write_lease(link, owner).await?;
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
            forget_channel(link, &channel).await?;
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

/// Removes an empty presence channel from the channel set. The set and the channel's hash are in
/// different slots on a Redis Cluster, so this is not one script: `SREM`, then look again. A
/// member whose `HSET` came before that look puts the channel back here; one whose `HSET` came
/// after does its own `SADD` (always after its `HSET`) after our `SREM`.
async fn forget_channel(link: &RedisLink, channel: &str) -> Result<(), BrokerError> {
    let srem = ::redis::cmd("SREM")
        .arg(presence_set(link))
        .arg(channel)
        .to_owned();
    link.with_connection("presence sweep", |mut conn| async move {
        srem.query_async::<i64>(&mut conn).await
    })
    .await?;
    let key = presence_key(link, channel);
    let len: i64 = link
        .with_connection("presence sweep", |mut conn| async move {
            ::redis::cmd("HLEN").arg(key).query_async(&mut conn).await
        })
        .await?;
    if len > 0 {
        let sadd = ::redis::cmd("SADD")
            .arg(presence_set(link))
            .arg(channel)
            .to_owned();
        link.with_connection("presence sweep", |mut conn| async move {
            sadd.query_async::<i64>(&mut conn).await
        })
        .await?;
    }
    Ok(())
}
