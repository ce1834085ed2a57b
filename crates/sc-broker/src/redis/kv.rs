//! [`RedisKv`]: the exchange's key/value store kept in Redis, shared by every instance.
//!
//! # Layout in Redis
//!
//! Each top-level key is one Redis string holding its JSON value: `["user", "bob"]` lives
//! inside the JSON of `<prefix>kv:user`. Nested paths are read and changed by loading that
//! value and running the shared [`kv_ops`] rules on it. A change is written back with an
//! optimistic compare-and-set (a small Lua script: write only if the value is still the one we
//! read; otherwise read again and retry), so concurrent instances never lose each other's
//! updates. `set` and `remove` of a whole top-level key are single Redis commands.
//!
//! # Expiry
//!
//! - A **top-level** key (`expire([["user"]], 10)`) uses Redis' own `EXPIRE`: exact, handled by
//!   Redis even if every instance is down. As in Redis, it applies to the value stored now: a
//!   key that does not exist yet is not affected, and `remove` (or `removeAll`) clears it;
//!   `set` keeps it (`KEEPTTL`, Redis ≥ 6.0). `unexpire` is `PERSIST`.
//! - A **nested** path (`expire([["user", "bob"]], 10)`) is recorded in the sorted set
//!   `<prefix>kvx` (member: the JSON path, score: the deadline in Unix milliseconds). Every
//!   instance sweeps the due ones every [`RedisOptions::expiry_sweep_interval`] (the one whose
//!   `ZREM` succeeds removes the path), and before any command once a deadline it knows of has
//!   passed. As in sc-broker, such a deadline belongs to the path, not to the value: setting the
//!   path again does not cancel it. Deadlines use the machines' wall clocks.
//!
//! `getAll` and `removeAll` walk the prefix with `SCAN` (on every master of a Redis Cluster):
//! they are not atomic with respect to concurrent writers, and `getAll` lists top-level keys in
//! Redis' order.

use std::sync::{Arc, Weak};

use ::redis::Script;
use bytes::Bytes;
use sc_protocol::Json;
use serde_json::{Map, Value};

use super::link::{RedisLink, RedisOptions};
use crate::error::EngineError;
use crate::kv::{KeyPath, KvCommand, KvStore};
use crate::kv_cas::{self, DocumentStore};
use crate::kv_ops::{self, KvOpError};
use crate::support::{AbortOnDrop, DueHint, now_ms};
use crate::{BoxFuture, BrokerError};

/// Write `ARGV[4]` (or delete, when `ARGV[3]` is `0`) only if the key still holds `ARGV[2]`
/// (or, when `ARGV[1]` is `0`, still does not exist). Keeps the key's TTL.
const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL')
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// The key/value store in Redis (see the [module](self) documentation).
pub struct RedisKv {
    inner: Arc<Inner>,
    _sweeper: AbortOnDrop,
}

struct Inner {
    link: Arc<RedisLink>,
    /// `<prefix>kv:`
    data_prefix: String,
    /// `<prefix>kvx`
    expiry_key: String,
    compare_and_set: Script,
    hint: DueHint,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("link", &self.inner.link)
            .finish_non_exhaustive()
    }
}

impl RedisKv {
    /// Connects a store alone (see [`connect`](crate::redis::connect) for a broker and a store
    /// on one link).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisKv, EngineError> {
        Ok(RedisKv::with_link(RedisLink::connect(url, options).await?))
    }

    /// A store on an existing link. Starts the expiry sweeper (needs a Tokio runtime).
    pub fn with_link(link: Arc<RedisLink>) -> RedisKv {
        let prefix = &link.options().prefix;
        let inner = Arc::new(Inner {
            data_prefix: format!("{prefix}kv:"),
            expiry_key: format!("{prefix}kvx"),
            compare_and_set: super::connection::script(COMPARE_AND_SET),
            hint: DueHint::new(),
            link,
        });
        let sweeper = tokio::spawn(sweep_periodically(Arc::downgrade(&inner)));
        RedisKv {
            inner,
            _sweeper: AbortOnDrop(sweeper),
        }
    }
}

impl KvStore for RedisKv {
    fn execute(&self, command: KvCommand) -> BoxFuture<'_, Result<Json, BrokerError>> {
        Box::pin(async move {
            let action = kv_ops::action_name(&command);
            let timeout = self.inner.link.options().op_timeout;
            match tokio::time::timeout(timeout, self.inner.execute(command)).await {
                Ok(result) => result,
                Err(_) => Err(BrokerError::Timeout { action }),
            }
        })
    }
}

async fn sweep_periodically(inner: Weak<Inner>) {
    let Some(interval) = inner
        .upgrade()
        .map(|i| i.link.options().expiry_sweep_interval)
    else {
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if !inner.link.is_connected() {
            continue;
        }
        if let Err(error) = inner.sweep().await {
            tracing::debug!(engine = "redis", %error, "expiry sweep failed; retrying at the next tick");
        }
    }
}

impl Inner {
    async fn execute(&self, command: KvCommand) -> Result<Json, BrokerError> {
        if self.hint.is_due(now_ms()) {
            self.sweep().await?;
        }
        let action = kv_ops::action_name(&command);
        match command {
            KvCommand::GetAll => self.get_all().await.map(Json::from),
            KvCommand::RemoveAll => self.remove_all().await.map(|()| Json::NULL),
            KvCommand::Expire { keys, seconds } => {
                self.expire(keys, seconds).await.map(|()| Json::NULL)
            }
            KvCommand::Unexpire { keys } => self.unexpire(keys).await.map(|()| Json::NULL),
            KvCommand::Set { key, value } if key.len() == 1 => {
                self.check_size(value.as_bytes().len())?;
                let redis_key = self.data_key(&key[0]);
                let text = value.get().to_owned();
                self.link()
                    .with_connection(action, |mut conn| async move {
                        ::redis::cmd("SET")
                            .arg(redis_key)
                            .arg(text)
                            .arg("KEEPTTL")
                            .query_async::<()>(&mut conn)
                            .await
                    })
                    .await?;
                Ok(value)
            }
            KvCommand::Remove { key } if key.len() == 1 => {
                let redis_key = self.data_key(&key[0]);
                let old: Option<String> = self
                    .link()
                    .with_connection(action, |mut conn| async move {
                        ::redis::cmd("GETDEL")
                            .arg(redis_key)
                            .query_async(&mut conn)
                            .await
                    })
                    .await?;
                match old {
                    Some(text) => Json::from_text(&text).map_err(|_| not_json(&key[0])),
                    None => Ok(Json::NULL),
                }
            }
            command => kv_cas::execute_on_document(self, &command).await,
        }
    }

    fn link(&self) -> &RedisLink {
        &self.link
    }

    fn data_key(&self, top: &str) -> String {
        format!("{}{top}", self.data_prefix)
    }

    async fn get_all(&self) -> Result<Value, BrokerError> {
        let mut root = Map::new();
        for keys in self.scan_keys().await? {
            let values: Vec<Option<String>> = self
                .link()
                .with_connection("getAll", |mut conn| {
                    let keys = keys.clone();
                    async move { ::redis::cmd("MGET").arg(keys).query_async(&mut conn).await }
                })
                .await?;
            for (key, text) in keys.iter().zip(values) {
                let (Some(top), Some(text)) = (key.strip_prefix(&self.data_prefix), text) else {
                    continue;
                };
                root.insert(
                    top.to_owned(),
                    serde_json::from_str(&text).map_err(|_| not_json(top))?,
                );
            }
        }
        Ok(Value::Object(root))
    }

    async fn remove_all(&self) -> Result<(), BrokerError> {
        for mut keys in self.scan_keys().await? {
            keys.push(self.expiry_key.clone());
            self.link()
                .with_connection("removeAll", |mut conn| async move {
                    ::redis::cmd("UNLINK")
                        .arg(keys)
                        .query_async::<i64>(&mut conn)
                        .await
                })
                .await?;
        }
        let expiry_key = self.expiry_key.clone();
        self.link()
            .with_connection("removeAll", |mut conn| async move {
                ::redis::cmd("DEL")
                    .arg(expiry_key)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await?;
        self.hint.reset(None);
        Ok(())
    }

    /// Every data key, in `SCAN` batches (on every master of a Redis Cluster).
    async fn scan_keys(&self) -> Result<Vec<Vec<String>>, BrokerError> {
        let pattern = format!("{}*", glob_escape(&self.data_prefix));
        let mut batches = Vec::new();
        for node in super::sharded::masters(self.link()).await? {
            let mut cursor = 0u64;
            loop {
                let scan = ::redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .to_owned();
                let node = node.clone();
                let (next, keys): (u64, Vec<String>) = self
                    .link()
                    .with_connection("scan", |mut conn| async move {
                        conn.query_on(node.as_ref(), scan).await
                    })
                    .await?;
                if !keys.is_empty() {
                    batches.push(keys);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(batches)
    }

    async fn expire(&self, keys: Vec<KeyPath>, seconds: u64) -> Result<(), BrokerError> {
        let deadline = now_ms().saturating_add(seconds.saturating_mul(1000));
        for key in keys {
            match key.len() {
                0 => return Err(KvOpError::EmptyKey { action: "expire" }.into()),
                1 => {
                    let redis_key = self.data_key(&key[0]);
                    self.link()
                        .with_connection("expire", |mut conn| async move {
                            ::redis::cmd("EXPIRE")
                                .arg(redis_key)
                                .arg(seconds)
                                .query_async::<i64>(&mut conn)
                                .await
                        })
                        .await?;
                }
                _ => {
                    let (expiry_key, member) = (self.expiry_key.clone(), path_member(&key));
                    self.link()
                        .with_connection("expire", |mut conn| async move {
                            ::redis::cmd("ZADD")
                                .arg(expiry_key)
                                .arg(deadline)
                                .arg(member)
                                .query_async::<i64>(&mut conn)
                                .await
                        })
                        .await?;
                    self.hint.note(deadline);
                }
            }
        }
        Ok(())
    }

    async fn unexpire(&self, keys: Vec<KeyPath>) -> Result<(), BrokerError> {
        for key in keys {
            let (command, redis_key, member) = match key.len() {
                0 => return Err(KvOpError::EmptyKey { action: "unexpire" }.into()),
                1 => ("PERSIST", self.data_key(&key[0]), None),
                _ => ("ZREM", self.expiry_key.clone(), Some(path_member(&key))),
            };
            self.link()
                .with_connection("unexpire", |mut conn| async move {
                    ::redis::cmd(command)
                        .arg(redis_key)
                        .arg(member)
                        .query_async::<i64>(&mut conn)
                        .await
                })
                .await?;
        }
        Ok(())
    }

    /// Removes the nested paths whose deadline has passed, then refreshes the hint with the next
    /// deadline Redis holds.
    async fn sweep(&self) -> Result<(), BrokerError> {
        let now = now_ms();
        let expiry_key = self.expiry_key.clone();
        let due: Vec<String> = self
            .link()
            .with_connection("expire", |mut conn| async move {
                ::redis::cmd("ZRANGEBYSCORE")
                    .arg(expiry_key)
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(256)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        for member in due {
            let expiry_key = self.expiry_key.clone();
            let claim = member.clone();
            let won: i64 = self
                .link()
                .with_connection("expire", |mut conn| async move {
                    ::redis::cmd("ZREM")
                        .arg(expiry_key)
                        .arg(claim)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            if won != 1 {
                continue; // another instance took it
            }
            match serde_json::from_str::<KeyPath>(&member) {
                Ok(path) if !path.is_empty() => {
                    kv_cas::execute_on_document(self, &KvCommand::Remove { key: path }).await?;
                }
                _ => tracing::debug!(engine = "redis", %member, "ignored a malformed expiry entry"),
            }
        }
        let expiry_key = self.expiry_key.clone();
        let next: Vec<(String, f64)> = self
            .link()
            .with_connection("expire", |mut conn| async move {
                ::redis::cmd("ZRANGE")
                    .arg(expiry_key)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        self.hint
            .reset(next.first().map(|(_, score)| *score as u64));
        Ok(())
    }
}

/// The sorted-set member naming a path: its JSON array.
fn path_member(path: &KeyPath) -> String {
    serde_json::to_string(path).unwrap_or_default()
}

impl DocumentStore for Inner {
    /// The text read (`None`: the key did not exist), compared by the write's Lua script.
    type Version = Option<Bytes>;

    async fn read_document(
        &self,
        top: &str,
    ) -> Result<(Option<Bytes>, Option<Bytes>), BrokerError> {
        let redis_key = self.data_key(top);
        let text: Option<Vec<u8>> = self
            .link()
            .with_connection("get", |mut conn| async move {
                ::redis::cmd("GET")
                    .arg(redis_key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let text = text.map(Bytes::from);
        Ok((text.clone(), text))
    }

    async fn write_document_if(
        &self,
        action: &'static str,
        top: &str,
        new: Option<Bytes>,
        old: Option<Bytes>,
    ) -> Result<bool, BrokerError> {
        let mut invocation = self.compare_and_set.key(self.data_key(top));
        invocation
            .arg(if old.is_some() { "1" } else { "0" })
            .arg(old.as_deref().unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" })
            .arg(new.as_deref().unwrap_or_default());
        let written: i64 = self
            .link()
            .with_connection(action, |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        Ok(written == 1)
    }

    fn check_size(&self, size: usize) -> Result<(), BrokerError> {
        let limit = self.link.options().max_message_size;
        if size > limit {
            Err(BrokerError::TooLarge { size, limit })
        } else {
            Ok(())
        }
    }

    fn not_json(&self, top: &str) -> BrokerError {
        not_json(top)
    }
}

fn not_json(top: &str) -> BrokerError {
    BrokerError::Engine(format!("kv value of {top:?} in Redis is not JSON"))
}

/// Escapes Redis `MATCH` glob characters.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_globs_and_names_paths() {
        assert_eq!(glob_escape("sc:kv:"), "sc:kv:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(
            path_member(&vec!["user".into(), "bob".into()]),
            r#"["user","bob"]"#
        );
    }
}
