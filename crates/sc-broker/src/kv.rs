//! The exchange's key/value store (SocketCluster's broker data, docs/protocol.md §14.5).
//!
//! Keys are paths ("key chains"): `["user", "bob"]` addresses the `bob` entry of the `user` map,
//! and nested maps are created on demand. Values are JSON. Each operation is a [`KvCommand`]
//! value, so the same command can run in-process, be sent to a broker process, or be executed
//! against Redis or NATS.

use serde::{Deserialize, Serialize};

use sc_protocol::Json;

use crate::{BoxFuture, BrokerError};

/// A key path: one or more segments.
pub type KeyPath = Vec<String>;

/// One key/value operation. Results are JSON values (`null` when there is nothing to return).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum KvCommand {
    /// Stores `value` at `key` (creating intermediate maps). Returns the value.
    Set {
        /// Where.
        key: KeyPath,
        /// What.
        value: Json,
    },
    /// The value at `key`, or `null`.
    Get {
        /// Where.
        key: KeyPath,
    },
    /// For a list: items `[from, to)`; for a map: the entries from the key named `from` up to
    /// (excluding) the key named `to`, in insertion order.
    GetRange {
        /// Where.
        key: KeyPath,
        /// First index.
        from: usize,
        /// End index (exclusive); `None` for the end.
        to: Option<usize>,
    },
    /// The whole store as one map.
    GetAll,
    /// Number of entries at `key` (1 for a scalar, 0 if missing).
    Count {
        /// Where.
        key: KeyPath,
    },
    /// Appends `value` to the list at `key` (a scalar becomes `[scalar, value]`). Returns the
    /// new item's index.
    Add {
        /// Where.
        key: KeyPath,
        /// What.
        value: Json,
    },
    /// Removes `key`. Returns the removed value.
    Remove {
        /// Where.
        key: KeyPath,
    },
    /// Removes items `[from, to)` of the list at `key`. Returns them.
    RemoveRange {
        /// Where.
        key: KeyPath,
        /// First index.
        from: usize,
        /// End index (exclusive); `None` for the end.
        to: Option<usize>,
    },
    /// Removes every key.
    RemoveAll,
    /// Removes the last item of the list at `key`. Returns `[item]`.
    Pop {
        /// Where.
        key: KeyPath,
    },
    /// Whether `key` exists.
    HasKey {
        /// Where.
        key: KeyPath,
    },
    /// Deletes each of `keys` after `seconds`.
    Expire {
        /// Which keys.
        keys: Vec<KeyPath>,
        /// After how long.
        seconds: u64,
    },
    /// Cancels the expiry of each of `keys`.
    Unexpire {
        /// Which keys.
        keys: Vec<KeyPath>,
    },
}

impl KvCommand {
    /// The key that decides which broker owns the command (`None`: all brokers / broker 0, see
    /// docs/protocol.md §14.3). Only the first path segment counts, so a whole sub-tree lives on one
    /// broker.
    pub fn routing_key(&self) -> Option<&str> {
        match self {
            KvCommand::Expire { keys, .. } | KvCommand::Unexpire { keys } => {
                keys.first().and_then(|k| k.first()).map(String::as_str)
            }
            command => command.path()?.first().map(String::as_str),
        }
    }

    /// The key path a single-key document command works on (`None` for `getAll`, `removeAll`,
    /// `expire` and `unexpire`).
    pub fn path(&self) -> Option<&KeyPath> {
        match self {
            KvCommand::Set { key, .. }
            | KvCommand::Get { key }
            | KvCommand::GetRange { key, .. }
            | KvCommand::Count { key }
            | KvCommand::Add { key, .. }
            | KvCommand::Remove { key }
            | KvCommand::RemoveRange { key, .. }
            | KvCommand::Pop { key }
            | KvCommand::HasKey { key } => Some(key),
            KvCommand::GetAll
            | KvCommand::RemoveAll
            | KvCommand::Expire { .. }
            | KvCommand::Unexpire { .. } => None,
        }
    }
}

/// A key/value store behind the exchange: in-process, in broker processes, Redis or NATS.
pub trait KvStore: Send + Sync + 'static {
    /// Runs one command.
    fn execute(&self, command: KvCommand) -> BoxFuture<'_, Result<Json, BrokerError>>;
}
