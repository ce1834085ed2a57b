//! [`NatsKv`]: the exchange's key/value store kept in a NATS JetStream key/value bucket, shared by
//! every instance.
//!
//! # Layout in the bucket
//!
//! The bucket ([`NatsOptions::bucket`], default `sc_kv`, created on first use with history 1
//! and file storage) holds one entry per top-level key, `k.<token>` (the key's name written with
//! [`encode_token`]), whose value is the JSON of that key. Nested paths are read and changed by
//! loading the entry and running the shared [`kv_ops`] rules on it; a change is written back
//! with JetStream's compare-and-set on the entry's revision (retried when another instance got
//! in between), so concurrent instances never lose each other's updates.
//!
//! # Expiry
//!
//! The NATS server this was built against (2.9) has no per-key TTL (it arrived in 2.11, and a
//! bucket's `max_age` applies to every key alike). So deadlines are stored in the bucket itself,
//! in the entry `_expiry` (a JSON map from key path to deadline in Unix milliseconds, updated
//! with compare-and-set), and every instance sweeps the due ones every
//! [`NatsOptions::expiry_sweep_interval`] — and before any command once a deadline it knows of
//! has passed. As in sc-broker, a deadline belongs to the path, top-level or nested, not to the
//! value: setting the key again does not cancel it; `unexpire` does. Deadlines use the
//! machines' wall clocks.
//!
//! `getAll` and `removeAll` list the bucket's keys: they are not atomic with respect to
//! concurrent writers, and `getAll` lists top-level keys in the bucket's order.

use std::sync::{Arc, Weak};

use async_nats::jetstream::kv::{Operation, Store, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use bytes::Bytes;
use futures_util::TryStreamExt;
use sc_protocol::Json;
use serde_json::{Map, Value};

use super::link::{NatsLink, NatsOptions, encode_token};
use crate::error::EngineError;
use crate::kv::{KeyPath, KvCommand, KvStore};
use crate::kv_cas::{self, DocumentStore, MAX_CAS_ATTEMPTS};
use crate::kv_ops::{self, KvOpError};
use crate::support::{AbortOnDrop, DueHint, now_ms};
use crate::{BoxFuture, BrokerError};

/// The entry holding the expiry table.
const EXPIRY_KEY: &str = "_expiry";
/// Prefix of top-level key entries.
const DATA_PREFIX: &str = "k.";
/// Room left in the server's `max_payload` for the headers of a compare-and-set write.
const HEADER_ROOM: usize = 1024;

/// The key/value store in a JetStream bucket (see the [module](self) documentation).
pub struct NatsKv {
    inner: Arc<Inner>,
    _sweeper: AbortOnDrop,
}

struct Inner {
    link: Arc<NatsLink>,
    store: Store,
    hint: DueHint,
}

impl std::fmt::Debug for NatsKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsKv")
            .field("link", &self.inner.link)
            .finish_non_exhaustive()
    }
}

impl NatsKv {
    /// Connects a store alone (see [`connect`](crate::nats::connect) for a broker and a store on
    /// one connection).
    pub async fn connect(url: &str, options: NatsOptions) -> Result<NatsKv, EngineError> {
        NatsKv::with_link(NatsLink::connect(url, options).await?).await
    }

    /// A store on an existing link: opens the bucket (creating it if missing) and starts the
    /// expiry sweeper.
    pub async fn with_link(link: Arc<NatsLink>) -> Result<NatsKv, EngineError> {
        let options = link.options().clone();
        let setup = |reason: String| EngineError::Setup {
            engine: "nats",
            target: link.target().to_owned(),
            reason,
        };
        let mut jetstream = async_nats::jetstream::new(link.client().clone());
        jetstream.set_timeout(options.op_timeout);
        let store = match jetstream.get_key_value(&options.bucket).await {
            Ok(store) => store,
            Err(_) => {
                // The bucket's stream, as `create_key_value` would make it. (async-nats 0.46's
                // `create_key_value` first reads the account info, whose reply from a 2.9 server
                // it cannot parse, so we create the stream ourselves.)
                let config = stream::Config {
                    name: format!("KV_{}", options.bucket),
                    description: Some("SocketCluster exchange key/value store".to_owned()),
                    subjects: vec![format!("$KV.{}.>", options.bucket)],
                    max_messages_per_subject: 1,
                    storage: StorageType::File,
                    num_replicas: link.replicas(),
                    allow_rollup: true,
                    deny_delete: true,
                    // (read-your-writes on replicated buckets: see `direct_gets`)
                    allow_direct: super::stream::direct_gets(link.replicas()),
                    discard: DiscardPolicy::New,
                    ..Default::default()
                };
                // Creating an identical stream twice succeeds, so racing instances are fine.
                let created = jetstream.get_or_create_stream(config).await;
                match jetstream.get_key_value(&options.bucket).await {
                    Ok(store) => store,
                    Err(open_error) => {
                        let reason = match created {
                            Err(create_error) => create_error.to_string(),
                            Ok(_) => open_error.to_string(),
                        };
                        return Err(setup(format!(
                            "cannot open or create the JetStream bucket {:?} (is JetStream enabled, nats-server -js?): {reason}",
                            options.bucket
                        )));
                    }
                }
            }
        };
        let inner = Arc::new(Inner {
            link,
            store,
            hint: DueHint::new(),
        });
        let sweeper = tokio::spawn(sweep_periodically(
            Arc::downgrade(&inner),
            options.expiry_sweep_interval,
        ));
        Ok(NatsKv {
            inner,
            _sweeper: AbortOnDrop(sweeper),
        })
    }
}

impl KvStore for NatsKv {
    fn execute(&self, command: KvCommand) -> BoxFuture<'_, Result<Json, BrokerError>> {
        Box::pin(async move {
            let action = kv_ops::action_name(&command);
            self.inner.link.ensure_connected()?;
            self.inner
                .link
                .bounded(action, self.inner.execute(command))
                .await?
        })
    }
}

async fn sweep_periodically(inner: Weak<Inner>, interval: std::time::Duration) {
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
        let timeout = inner.link.options().op_timeout;
        match tokio::time::timeout(timeout, inner.sweep()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(engine = "nats", %error, "expiry sweep failed; retrying at the next tick")
            }
            Err(_) => tracing::debug!(
                engine = "nats",
                "expiry sweep timed out; retrying at the next tick"
            ),
        }
    }
}

/// A bucket entry as read: its value (if it holds one) and the revision to compare against.
struct Read {
    value: Option<Bytes>,
    revision: u64,
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
                let deadline = now_ms().saturating_add(seconds.saturating_mul(1000));
                self.update_expiry(&keys, Some(deadline)).await?;
                self.hint.note(deadline);
                Ok(Json::NULL)
            }
            KvCommand::Unexpire { keys } => {
                self.update_expiry(&keys, None).await.map(|()| Json::NULL)
            }
            KvCommand::Set { key, value } if key.len() == 1 => {
                self.check_size(value.as_bytes().len())?;
                self.store
                    .put(data_key(&key[0]), value.to_bytes())
                    .await
                    .map_err(|e| self.failed(action, e))?;
                Ok(value)
            }
            command => kv_cas::execute_on_document(self, &command).await,
        }
    }

    /// Maps a client error: `Unavailable` if the connection is down, `Engine` otherwise.
    fn failed(&self, action: &str, error: impl std::fmt::Display) -> BrokerError {
        if self.link.is_connected() {
            BrokerError::Engine(format!("nats kv {action}: {error}"))
        } else {
            self.link.unavailable()
        }
    }

    async fn read(&self, key: &str) -> Result<Read, BrokerError> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|e| self.failed("get", e))?;
        Ok(match entry {
            None => Read {
                value: None,
                revision: 0,
            },
            Some(entry) if entry.operation == Operation::Put => Read {
                value: Some(entry.value),
                revision: entry.revision,
            },
            Some(tombstone) => Read {
                value: None,
                revision: tombstone.revision,
            },
        })
    }

    /// Writes `value` (or deletes, for `None`) if the entry is still at `revision`. Returns
    /// whether it was written.
    async fn write_if(
        &self,
        key: &str,
        value: Option<Bytes>,
        revision: u64,
    ) -> Result<bool, BrokerError> {
        let outcome = match value {
            Some(value) => self.store.update(key, value, revision).await.map(drop),
            None => self.store.delete_expect_revision(key, Some(revision)).await,
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(error) => Err(self.failed("write", error)),
        }
    }

    /// Every top-level key entry name in the bucket.
    async fn data_keys(&self) -> Result<Vec<String>, BrokerError> {
        let keys = self
            .store
            .keys()
            .await
            .map_err(|e| self.failed("keys", e))?;
        let keys: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|e| self.failed("keys", e))?;
        Ok(keys
            .into_iter()
            .filter(|k| k.starts_with(DATA_PREFIX))
            .collect())
    }

    async fn get_all(&self) -> Result<Value, BrokerError> {
        let mut root = Map::new();
        for key in self.data_keys().await? {
            let Some(top) = decode_token(&key[DATA_PREFIX.len()..]) else {
                continue;
            };
            if let Some(bytes) = self.read(&key).await?.value {
                root.insert(
                    top.clone(),
                    serde_json::from_slice(&bytes).map_err(|_| not_json(&top))?,
                );
            }
        }
        Ok(Value::Object(root))
    }

    async fn remove_all(&self) -> Result<(), BrokerError> {
        let mut keys = self.data_keys().await?;
        keys.push(EXPIRY_KEY.to_owned());
        for key in keys {
            self.store
                .purge(&key)
                .await
                .map_err(|e| self.failed("removeAll", e))?;
        }
        self.hint.reset(None);
        Ok(())
    }

    /// Reads the expiry table.
    async fn expiry_table(&self) -> Result<(Map<String, Value>, u64), BrokerError> {
        let read = self.read(EXPIRY_KEY).await?;
        let table = match &read.value {
            Some(bytes) => serde_json::from_slice(bytes).unwrap_or_default(),
            None => Map::new(),
        };
        Ok((table, read.revision))
    }

    /// Sets (`Some(deadline)`) or clears (`None`) the deadline of each of `keys`.
    async fn update_expiry(
        &self,
        keys: &[KeyPath],
        deadline: Option<u64>,
    ) -> Result<(), BrokerError> {
        if keys.iter().any(Vec::is_empty) {
            let action = if deadline.is_some() {
                "expire"
            } else {
                "unexpire"
            };
            return Err(KvOpError::EmptyKey { action }.into());
        }
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (mut table, revision) = self.expiry_table().await?;
            for key in keys {
                let member = serde_json::to_string(key).unwrap_or_default();
                match deadline {
                    Some(deadline) => table.insert(member, Value::from(deadline)),
                    None => table.shift_remove(&member),
                };
            }
            let bytes = Bytes::from(Value::Object(table).to_string());
            if self.write_if(EXPIRY_KEY, Some(bytes), revision).await? {
                return Ok(());
            }
        }
        Err(BrokerError::Engine(
            "kv expire: too many concurrent writers, gave up".to_owned(),
        ))
    }

    /// Removes the paths whose deadline has passed and refreshes the hint. The instance whose
    /// compare-and-set takes them out of the table removes them.
    async fn sweep(&self) -> Result<(), BrokerError> {
        let now = now_ms();
        let (mut table, revision) = self.expiry_table().await?;
        let due: Vec<String> = table
            .iter()
            .filter(|(_, deadline)| deadline.as_u64().is_none_or(|d| d <= now))
            .map(|(member, _)| member.clone())
            .collect();
        let next = |table: &Map<String, Value>| table.values().filter_map(Value::as_u64).min();
        if due.is_empty() {
            self.hint.reset(next(&table));
            return Ok(());
        }
        for member in &due {
            table.shift_remove(member);
        }
        let remaining_next = next(&table);
        let bytes = Bytes::from(Value::Object(table).to_string());
        if !self.write_if(EXPIRY_KEY, Some(bytes), revision).await? {
            return Ok(()); // another instance is sweeping; the hint stays due, we look again
        }
        for member in due {
            match serde_json::from_str::<KeyPath>(&member) {
                Ok(path) if !path.is_empty() => {
                    kv_cas::execute_on_document(self, &KvCommand::Remove { key: path }).await?;
                }
                _ => tracing::debug!(engine = "nats", %member, "ignored a malformed expiry entry"),
            }
        }
        self.hint.reset(remaining_next);
        Ok(())
    }
}

/// The bucket entry of top-level key `top`.
fn data_key(top: &str) -> String {
    format!("{DATA_PREFIX}{}", encode_token(top))
}

/// The inverse of [`encode_token`] (`None` if `token` is not one of its outputs).
fn decode_token(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'=' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

impl DocumentStore for Inner {
    /// The entry's revision.
    type Version = u64;

    async fn read_document(&self, top: &str) -> Result<(Option<Bytes>, u64), BrokerError> {
        let read = self.read(&data_key(top)).await?;
        Ok((read.value, read.revision))
    }

    async fn write_document_if(
        &self,
        _action: &'static str,
        top: &str,
        new: Option<Bytes>,
        revision: u64,
    ) -> Result<bool, BrokerError> {
        self.write_if(&data_key(top), new, revision).await
    }

    fn check_size(&self, size: usize) -> Result<(), BrokerError> {
        let limit = self.link.payload_limit().saturating_sub(HEADER_ROOM);
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
    BrokerError::Engine(format!("kv value of {top:?} in NATS is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for name in ["", "user", "a.b c", "=", "ü/é", "k.x"] {
            assert_eq!(decode_token(&encode_token(name)).as_deref(), Some(name));
        }
        assert_eq!(data_key("user"), "k.user");
        assert_eq!(decode_token("=4"), None);
    }
}
