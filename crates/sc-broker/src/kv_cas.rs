//! The read-modify-write loop of the stores kept outside the process ([`RedisKv`], [`NatsKv`]).
//!
//! Both keep each top-level key as one JSON document. A command on a path inside it loads the
//! document, runs the shared [`kv_ops`] rules on it and writes it back by compare-and-set
//! (write only if nobody wrote since the read; otherwise read again and retry), so concurrent
//! instances never lose each other's updates. Each engine supplies the read and the conditional
//! write ([`DocumentStore`]); [`execute_on_document`] is the loop.
//!
//! [`RedisKv`]: crate::RedisKv
//! [`NatsKv`]: crate::NatsKv

use std::future::Future;

use bytes::Bytes;
use sc_protocol::Json;
use serde_json::{Map, Value};

use crate::BrokerError;
use crate::kv::KvCommand;
use crate::kv_ops::{self, KvOpError};

/// How many times a read-modify-write is retried when other writers keep changing the key.
pub(crate) const MAX_CAS_ATTEMPTS: usize = 64;

/// A store keeping each top-level key as one JSON document, written by compare-and-set.
pub(crate) trait DocumentStore: Sync {
    /// What a read remembers so the write can tell whether anyone wrote since (the old text
    /// for Redis, the entry's revision for NATS).
    type Version: Send;

    /// Reads top-level key `top`: its JSON text (`None` when absent) and its version.
    fn read_document(
        &self,
        top: &str,
    ) -> impl Future<Output = Result<(Option<Bytes>, Self::Version), BrokerError>> + Send;

    /// Writes `new` (deletes the key, for `None`) only if `top` is still at `version`, for the
    /// command named `action`. `Ok(false)` means another writer got in between.
    fn write_document_if(
        &self,
        action: &'static str,
        top: &str,
        new: Option<Bytes>,
        version: Self::Version,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send;

    /// Refuses a document of `size` bytes the engine cannot store ([`BrokerError::TooLarge`]).
    fn check_size(&self, size: usize) -> Result<(), BrokerError>;

    /// The error for a stored document of `top` that is not JSON.
    fn not_json(&self, top: &str) -> BrokerError;
}

/// Runs `command`, which addresses a path inside one top-level key (not `getAll`, `removeAll`,
/// `expire` or `unexpire`): a read-only command reads the document once, any other changes it
/// by compare-and-set, retried at most [`MAX_CAS_ATTEMPTS`] times.
pub(crate) async fn execute_on_document<S: DocumentStore>(
    store: &S,
    command: &KvCommand,
) -> Result<Json, BrokerError> {
    let action = kv_ops::action_name(command);
    let Some(top) = kv_ops::command_path(command).and_then(|p| p.first()) else {
        return Err(KvOpError::EmptyKey { action }.into());
    };
    if kv_ops::is_read_only(command) {
        let (mut root, _, _) = load(store, top).await?;
        return Ok(Json::from(kv_ops::apply(&mut root, command)?));
    }
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (mut root, old, version) = load(store, top).await?;
        let result = kv_ops::apply(&mut root, command)?;
        let new = match root.get(top.as_str()) {
            Some(value) => Some(Bytes::from(
                serde_json::to_vec(value).map_err(|e| BrokerError::Engine(e.to_string()))?,
            )),
            None => None,
        };
        if new == old {
            return Ok(Json::from(result)); // nothing changed (e.g. removing a missing path)
        }
        if let Some(new) = &new {
            store.check_size(new.len())?;
        }
        if store.write_document_if(action, top, new, version).await? {
            return Ok(Json::from(result));
        }
    }
    Err(BrokerError::Engine(format!(
        "kv {action} on {top:?}: too many concurrent writers, gave up"
    )))
}

/// Reads top-level key `top` as a one-entry store, with the text read and its version.
async fn load<S: DocumentStore>(
    store: &S,
    top: &str,
) -> Result<(Value, Option<Bytes>, S::Version), BrokerError> {
    let (text, version) = store.read_document(top).await?;
    let mut root = Map::new();
    if let Some(text) = &text {
        root.insert(
            top.to_owned(),
            serde_json::from_slice(text).map_err(|_| store.not_json(top))?,
        );
    }
    Ok((Value::Object(root), text, version))
}
