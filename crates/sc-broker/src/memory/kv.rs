//! [`MemoryKv`]: the in-process key/value store (one process, nothing shared).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sc_protocol::Json;
use serde_json::Value;

use crate::kv::{KeyPath, KvCommand, KvStore};
use crate::{BoxFuture, BrokerError, kv_ops};

/// The key/value store of one process: a JSON tree behind a mutex, with SocketCluster's
/// `fleximap` rules (see [`kv_ops`]).
///
/// # Expiry
///
/// As in sc-broker, an expiry belongs to a key *path*, not to the value stored there:
/// `expire(keys, s)` removes whatever is at each path `s` seconds later (setting the key again
/// does not cancel it; `unexpire` does, and a second `expire` moves the deadline). There is no
/// sweep task: every command first removes the paths whose deadline has passed, so an expired
/// key is never seen (the reference sweeps once a second), and the memory of an expired value
/// is reclaimed at the next command.
///
/// ```
/// use sc_broker::{KvCommand, KvStore, MemoryKv};
/// use sc_protocol::Json;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let kv = MemoryKv::new();
/// let key = vec!["user".to_owned(), "bob".to_owned()];
/// kv.execute(KvCommand::Set { key, value: Json::from_text(r#"{"age":5}"#).unwrap() }).await.unwrap();
/// let user = kv.execute(KvCommand::Get { key: vec!["user".to_owned()] }).await.unwrap();
/// assert_eq!(user.get(), r#"{"bob":{"age":5}}"#);
/// # });
/// ```
#[derive(Default)]
pub struct MemoryKv {
    // A plain mutex: every operation is short and synchronous, and never held across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    root: Value,
    expiry: ExpiryQueue,
}

/// Deadlines by path, and paths by deadline (to find the due ones without a scan).
#[derive(Default)]
struct ExpiryQueue {
    deadline_of: HashMap<KeyPath, Instant>,
    due_at: BTreeMap<Instant, Vec<KeyPath>>,
}

impl ExpiryQueue {
    fn expire(&mut self, path: KeyPath, deadline: Instant) {
        self.unexpire(&path);
        self.due_at.entry(deadline).or_default().push(path.clone());
        self.deadline_of.insert(path, deadline);
    }

    fn unexpire(&mut self, path: &KeyPath) {
        let Some(deadline) = self.deadline_of.remove(path) else {
            return;
        };
        if let Some(paths) = self.due_at.get_mut(&deadline) {
            paths.retain(|p| p != path);
            if paths.is_empty() {
                self.due_at.remove(&deadline);
            }
        }
    }

    /// Takes the paths due at `now`.
    fn take_due(&mut self, now: Instant) -> Vec<KeyPath> {
        let mut due = Vec::new();
        while let Some(entry) = self.due_at.first_entry() {
            if *entry.key() > now {
                break;
            }
            for path in entry.remove() {
                self.deadline_of.remove(&path);
                due.push(path);
            }
        }
        due
    }
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> MemoryKv {
        MemoryKv::default()
    }

    /// Runs `command` as if the clock read `now` (the store's only notion of time).
    pub(crate) fn execute_at(
        &self,
        command: &KvCommand,
        now: Instant,
    ) -> Result<Value, BrokerError> {
        let mut state = self.state.lock();
        let State { root, expiry } = &mut *state;
        for path in expiry.take_due(now) {
            kv_ops::remove(root, &path);
        }
        match command {
            KvCommand::Expire { keys, seconds } => {
                let deadline = now + Duration::from_secs(*seconds);
                for key in keys {
                    expiry.expire(key.clone(), deadline);
                }
                Ok(Value::Null)
            }
            KvCommand::Unexpire { keys } => {
                for key in keys {
                    expiry.unexpire(key);
                }
                Ok(Value::Null)
            }
            _ => Ok(kv_ops::apply(root, command)?),
        }
    }
}

impl KvStore for MemoryKv {
    fn execute(&self, command: KvCommand) -> BoxFuture<'_, Result<Json, BrokerError>> {
        let result = self.execute_at(&command, Instant::now()).map(Json::from);
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(segments: &[&str]) -> KeyPath {
        segments.iter().map(|s| (*s).to_owned()).collect()
    }

    fn j(text: &str) -> Json {
        Json::from_text(text).unwrap()
    }

    #[tokio::test]
    async fn captured_session_through_the_trait() {
        let kv = MemoryKv::new();
        let run = |c: KvCommand| kv.execute(c);
        assert_eq!(
            run(KvCommand::Set {
                key: p(&["user", "bob"]),
                value: j(r#"{"age":5}"#)
            })
            .await
            .unwrap()
            .get(),
            r#"{"age":5}"#
        );
        assert_eq!(
            run(KvCommand::Get { key: p(&["user"]) })
                .await
                .unwrap()
                .get(),
            r#"{"bob":{"age":5}}"#
        );
        assert_eq!(
            run(KvCommand::Add {
                key: p(&["list"]),
                value: j(r#""i1""#)
            })
            .await
            .unwrap()
            .get(),
            "0"
        );
        assert_eq!(
            run(KvCommand::Add {
                key: p(&["list"]),
                value: j(r#""i2""#)
            })
            .await
            .unwrap()
            .get(),
            "1"
        );
        assert_eq!(
            run(KvCommand::GetRange {
                key: p(&["list"]),
                from: 0,
                to: Some(1)
            })
            .await
            .unwrap()
            .get(),
            r#"["i1"]"#
        );
        assert_eq!(
            run(KvCommand::Count { key: p(&["list"]) })
                .await
                .unwrap()
                .get(),
            "2"
        );
        assert_eq!(
            run(KvCommand::HasKey { key: p(&["nope"]) })
                .await
                .unwrap()
                .get(),
            "false"
        );
        assert_eq!(
            run(KvCommand::Pop { key: p(&["list"]) })
                .await
                .unwrap()
                .get(),
            r#"["i2"]"#
        );
        assert_eq!(
            run(KvCommand::RemoveRange {
                key: p(&["list"]),
                from: 0,
                to: None
            })
            .await
            .unwrap()
            .get(),
            r#"["i1"]"#
        );
        assert_eq!(
            run(KvCommand::Remove { key: p(&["list"]) })
                .await
                .unwrap()
                .get(),
            "[]"
        );
        assert_eq!(
            run(KvCommand::GetAll).await.unwrap().get(),
            r#"{"user":{"bob":{"age":5}}}"#
        );
        assert_eq!(run(KvCommand::RemoveAll).await.unwrap().get(), "null");
        assert_eq!(run(KvCommand::GetAll).await.unwrap().get(), "{}");
        let err = run(KvCommand::Get { key: vec![] }).await.unwrap_err();
        assert!(matches!(err, BrokerError::Engine(_)), "{err:?}");
    }

    #[test]
    fn expiry_removes_the_path_at_its_deadline() {
        let kv = MemoryKv::new();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let run = |c: KvCommand, now| kv.execute_at(&c, now).unwrap();
        run(
            KvCommand::Set {
                key: p(&["user", "bob"]),
                value: j(r#"{"age":5}"#),
            },
            t0,
        );
        run(
            KvCommand::Set {
                key: p(&["user", "amy"]),
                value: j("1"),
            },
            t0,
        );
        run(
            KvCommand::Expire {
                keys: vec![p(&["user", "bob"])],
                seconds: 1,
            },
            t0,
        );
        assert_eq!(
            run(
                KvCommand::HasKey {
                    key: p(&["user", "bob"])
                },
                t0
            ),
            json!(true)
        );
        // the deadline belongs to the path: setting again does not cancel it
        run(
            KvCommand::Set {
                key: p(&["user", "bob"]),
                value: j("2"),
            },
            at(0),
        );
        assert_eq!(
            run(
                KvCommand::Get {
                    key: p(&["user", "bob"])
                },
                at(1)
            ),
            Value::Null
        );
        assert_eq!(
            run(KvCommand::Get { key: p(&["user"]) }, at(1)),
            json!({"amy": 1})
        );

        // unexpire cancels; a second expire moves the deadline
        run(
            KvCommand::Expire {
                keys: vec![p(&["user"])],
                seconds: 5,
            },
            at(1),
        );
        run(
            KvCommand::Unexpire {
                keys: vec![p(&["user"])],
            },
            at(2),
        );
        assert_eq!(
            run(KvCommand::HasKey { key: p(&["user"]) }, at(10)),
            json!(true)
        );
        run(
            KvCommand::Expire {
                keys: vec![p(&["user"])],
                seconds: 1,
            },
            at(10),
        );
        run(
            KvCommand::Expire {
                keys: vec![p(&["user"])],
                seconds: 3,
            },
            at(10),
        );
        assert_eq!(
            run(KvCommand::HasKey { key: p(&["user"]) }, at(12)),
            json!(true)
        );
        assert_eq!(
            run(KvCommand::HasKey { key: p(&["user"]) }, at(13)),
            json!(false)
        );
        assert!(kv.state.lock().expiry.deadline_of.is_empty());
        assert!(kv.state.lock().expiry.due_at.is_empty());
    }
}
