//! The key/value document operations, pure: SocketCluster's `fleximap` semantics on a
//! [`serde_json::Value`] tree.
//!
//! Every [`KvStore`](crate::KvStore) runs the same functions: [`MemoryKv`](crate::MemoryKv) on
//! its whole tree, the Redis and NATS stores on a one-entry tree holding the top-level key they
//! just read (then write it back with compare-and-set). Keeping the rules here, without I/O,
//! makes every engine answer alike.
//!
//! # The rules (sc-broker 6 with fleximap 1.x, docs/protocol.md §14.4)
//!
//! - The store is a map. A key path walks maps by key and lists by index (`"0"`, `"1"`, … —
//!   canonical decimal, so `"01"` is not an index).
//! - [`set`] creates missing intermediate maps, and replaces a scalar met on the way by a map.
//!   Setting index `len` of a list appends; setting any other non-index key of a list (or an
//!   index past the end) turns the list into a map keyed `"0"`, `"1"`, …, as JavaScript would.
//! - [`add`] appends to a list and returns the new item's index: a missing (or `null`) target
//!   becomes `[value]` (index 0), a scalar becomes `[scalar, value]` (index 1), a map gets the
//!   key one past its largest integer key.
//! - [`count`]: entries of a list or map, 1 for a truthy scalar, 0 for a missing key or a falsy
//!   scalar (`null`, `false`, `0`, `""`).
//! - [`get_range`]: items `[from, to)` of a list; for a map, the entries from the key named
//!   `from` up to (excluding) the key named `to`, in order; `{}` for anything else.
//! - [`remove`] deletes one entry and returns it. Removing an item *inside a list* leaves a hole
//!   (JavaScript `delete`), so the list becomes a map of the remaining indexes — use
//!   [`remove_range`] or [`pop`] to shorten a list.
//! - [`remove_range`] cuts items `[from, to)` out of a list (or the key range out of a map, as
//!   [`get_range`] selects it) and returns them.
//! - [`pop`] removes the last item of a list and returns `[item]` (`[]` when there is none).
//! - Maps keep insertion order (JavaScript would list integer-like keys first).
//!
//! Paths must not be empty, except for the whole-store commands `getAll` and `removeAll`.
//! `expire` and `unexpire` are not document operations: each store keeps its own expiry table
//! (see the store's documentation) and removes due paths with [`remove`].

use serde_json::{Map, Value};

use crate::kv::{KeyPath, KvCommand};

/// A key/value command cannot run on the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvOpError {
    /// The command needs a key path and got an empty one.
    #[error("kv {action}: the key path is empty")]
    EmptyKey {
        /// The command's action name.
        action: &'static str,
    },
    /// A value sent with the command is not valid JSON.
    #[error("kv {action}: invalid JSON value: {reason}")]
    InvalidValue {
        /// The command's action name.
        action: &'static str,
        /// What the parser said.
        reason: String,
    },
}

impl From<KvOpError> for crate::BrokerError {
    fn from(error: KvOpError) -> Self {
        crate::BrokerError::Engine(error.to_string())
    }
}

/// The action name of a command, as on the wire (`set`, `getRange`, …).
pub fn action_name(command: &KvCommand) -> &'static str {
    match command {
        KvCommand::Set { .. } => "set",
        KvCommand::Get { .. } => "get",
        KvCommand::GetRange { .. } => "getRange",
        KvCommand::GetAll => "getAll",
        KvCommand::Count { .. } => "count",
        KvCommand::Add { .. } => "add",
        KvCommand::Remove { .. } => "remove",
        KvCommand::RemoveRange { .. } => "removeRange",
        KvCommand::RemoveAll => "removeAll",
        KvCommand::Pop { .. } => "pop",
        KvCommand::HasKey { .. } => "hasKey",
        KvCommand::Expire { .. } => "expire",
        KvCommand::Unexpire { .. } => "unexpire",
    }
}

/// Whether the command only reads the document.
pub fn is_read_only(command: &KvCommand) -> bool {
    matches!(
        command,
        KvCommand::Get { .. }
            | KvCommand::GetRange { .. }
            | KvCommand::GetAll
            | KvCommand::Count { .. }
            | KvCommand::HasKey { .. }
    )
}

/// The key path a single-key document command works on (`None` for `getAll`, `removeAll`,
/// `expire` and `unexpire`); see [`KvCommand::path`].
pub fn command_path(command: &KvCommand) -> Option<&KeyPath> {
    command.path()
}

/// Runs one document command on `root` (a JSON object: the store, or the part of it the engine
/// loaded) and returns its result. `expire`/`unexpire` do nothing here and return `null`.
pub fn apply(root: &mut Value, command: &KvCommand) -> Result<Value, KvOpError> {
    ensure_object(root);
    let action = action_name(command);
    if command_path(command).is_some_and(|path| path.is_empty()) {
        return Err(KvOpError::EmptyKey { action });
    }
    let parse = |value: &sc_protocol::Json| -> Result<Value, KvOpError> {
        value
            .parse()
            .map_err(|e: sc_protocol::json::JsonError| KvOpError::InvalidValue {
                action,
                reason: e.to_string(),
            })
    };
    Ok(match command {
        KvCommand::Set { key, value } => set(root, key, parse(value)?),
        KvCommand::Get { key } => get(root, key).cloned().unwrap_or(Value::Null),
        KvCommand::GetRange { key, from, to } => get_range(root, key, *from, *to),
        KvCommand::GetAll => root.clone(),
        KvCommand::Count { key } => Value::from(count(root, key)),
        KvCommand::Add { key, value } => Value::from(add(root, key, parse(value)?)),
        KvCommand::Remove { key } => remove(root, key).unwrap_or(Value::Null),
        KvCommand::RemoveRange { key, from, to } => remove_range(root, key, *from, *to),
        KvCommand::RemoveAll => {
            *root = Value::Object(Map::new());
            Value::Null
        }
        KvCommand::Pop { key } => pop(root, key),
        KvCommand::HasKey { key } => Value::Bool(has_key(root, key)),
        KvCommand::Expire { .. } | KvCommand::Unexpire { .. } => Value::Null,
    })
}

/// The value at `path`, if any.
pub fn get<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(root, |node, segment| child(node, segment))
}

/// Whether something (even `null`) is stored at `path`.
pub fn has_key(root: &Value, path: &[String]) -> bool {
    get(root, path).is_some()
}

/// Stores `value` at `path`, creating intermediate maps. Returns the value.
pub fn set(root: &mut Value, path: &[String], value: Value) -> Value {
    let Some((last, parents)) = path.split_last() else {
        return value;
    };
    let mut node = root;
    for segment in parents {
        let slot = child_slot(node, segment);
        if !is_container(slot) {
            *slot = Value::Object(Map::new());
        }
        node = slot;
    }
    *child_slot(node, last) = value.clone();
    value
}

/// Appends `value` to the list at `path`; returns the new item's index (see the module rules).
pub fn add(root: &mut Value, path: &[String], value: Value) -> usize {
    match get(root, path) {
        None | Some(Value::Null) => {
            set(root, path, Value::Array(vec![value]));
            0
        }
        Some(Value::Array(items)) => {
            let index = items.len();
            if let Some(Value::Array(items)) = get_mut(root, path) {
                items.push(value);
            }
            index
        }
        Some(Value::Object(map)) => {
            let index = next_map_index(map);
            let mut item_path = path.to_vec();
            item_path.push(index.to_string());
            set(root, &item_path, value);
            index
        }
        Some(scalar) => {
            let list = Value::Array(vec![scalar.clone(), value]);
            set(root, path, list);
            1
        }
    }
}

/// Number of entries at `path` (see the module rules).
pub fn count(root: &Value, path: &[String]) -> usize {
    match get(root, path) {
        None => 0,
        Some(Value::Array(items)) => items.len(),
        Some(Value::Object(map)) => map.len(),
        Some(scalar) if is_truthy(scalar) => 1,
        Some(_) => 0,
    }
}

/// Items `[from, to)` of the list at `path`, or the key range of a map (see the module rules).
pub fn get_range(root: &Value, path: &[String], from: usize, to: Option<usize>) -> Value {
    match get(root, path) {
        Some(Value::Array(items)) => {
            let end = to.map_or(items.len(), |to| to.min(items.len()));
            Value::Array(
                items
                    .get(from..end)
                    .map(<[Value]>::to_vec)
                    .unwrap_or_default(),
            )
        }
        Some(Value::Object(map)) => {
            let range = map_range(map, from, to)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(range)
        }
        _ => Value::Object(Map::new()),
    }
}

/// Removes the entry at `path`; returns it (`None` if there was none).
pub fn remove(root: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let parent = get_mut(root, parents)?;
    match parent {
        Value::Object(map) => map.shift_remove(last.as_str()),
        Value::Array(items) => {
            let index = index_of(last).filter(|&i| i < items.len())?;
            // JavaScript `delete list[i]` leaves a hole: the list reads back as a map.
            let mut map = array_to_map(std::mem::take(items));
            let removed = map.shift_remove(&index.to_string());
            *parent = Value::Object(map);
            removed
        }
        _ => None,
    }
}

/// Cuts items `[from, to)` out of the list at `path` (or a key range out of a map) and returns
/// them.
pub fn remove_range(root: &mut Value, path: &[String], from: usize, to: Option<usize>) -> Value {
    match get_mut(root, path) {
        Some(Value::Array(items)) => {
            let end = to.map_or(items.len(), |to| to.min(items.len()));
            if from < end {
                Value::Array(items.drain(from..end).collect())
            } else {
                Value::Array(Vec::new())
            }
        }
        Some(Value::Object(map)) => {
            let doomed: Vec<String> = map_range(map, from, to).map(|(k, _)| k.clone()).collect();
            let removed = doomed
                .into_iter()
                .filter_map(|k| map.shift_remove(&k).map(|v| (k, v)))
                .collect();
            Value::Object(removed)
        }
        _ => Value::Object(Map::new()),
    }
}

/// Removes the last item of the list at `path`; returns `[item]`, or `[]` if there is none.
pub fn pop(root: &mut Value, path: &[String]) -> Value {
    let popped = match get_mut(root, path) {
        Some(Value::Array(items)) => items.pop(),
        Some(Value::Object(map)) => match map.keys().filter_map(|k| index_of(k)).max() {
            Some(last) => map.shift_remove(&last.to_string()),
            None => None,
        },
        _ => None,
    };
    Value::Array(popped.into_iter().collect())
}

/// Turns anything but an object into an empty object (the store's root is always a map).
fn ensure_object(root: &mut Value) {
    if !root.is_object() {
        *root = Value::Object(Map::new());
    }
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Object(_) | Value::Array(_))
}

/// JavaScript truthiness of a scalar.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The list index a key segment names: canonical decimal only (`"0"`, `"17"`, not `"01"`).
fn index_of(segment: &str) -> Option<usize> {
    let canonical = !segment.is_empty()
        && segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    if canonical {
        segment.parse().ok()
    } else {
        None
    }
}

/// One past the largest integer key of a map (JavaScript array `length`), 0 if none.
fn next_map_index(map: &Map<String, Value>) -> usize {
    map.keys()
        .filter_map(|k| index_of(k))
        .max()
        .map_or(0, |max| max + 1)
}

fn array_to_map(items: Vec<Value>) -> Map<String, Value> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i.to_string(), v))
        .collect()
}

/// The entries of `map` from the key named `from` up to (excluding) the key named `to`.
fn map_range(
    map: &Map<String, Value>,
    from: usize,
    to: Option<usize>,
) -> impl Iterator<Item = (&String, &Value)> {
    let from = from.to_string();
    let to = to.map(|t| t.to_string());
    map.iter()
        .skip_while(move |(k, _)| **k != from)
        .take_while(move |(k, _)| to.as_deref() != Some(k.as_str()))
}

fn child<'a>(node: &'a Value, segment: &str) -> Option<&'a Value> {
    match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => index_of(segment).and_then(|i| items.get(i)),
        _ => None,
    }
}

fn get_mut<'a>(root: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(root, |node, segment| match node {
        Value::Object(map) => map.get_mut(segment.as_str()),
        Value::Array(items) => index_of(segment).and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

/// The slot for `segment` inside the container `node`, created (as `null`) when missing. A list
/// asked for a key it cannot hold as a list (a non-index, or an index past the end) becomes a
/// map first.
fn child_slot<'a>(node: &'a mut Value, segment: &str) -> &'a mut Value {
    if let Value::Array(items) = node {
        match index_of(segment) {
            Some(i) if i < items.len() => {}
            Some(i) if i == items.len() => items.push(Value::Null),
            _ => *node = Value::Object(array_to_map(std::mem::take(items))),
        }
    }
    match node {
        Value::Array(items) => {
            let i = index_of(segment).unwrap_or_default();
            &mut items[i]
        }
        Value::Object(map) => map.entry(segment.to_owned()).or_insert(Value::Null),
        other => {
            // Callers only pass containers; a scalar is replaced by a map to stay total.
            *other = Value::Object(Map::new());
            match other {
                Value::Object(map) => map.entry(segment.to_owned()).or_insert(Value::Null),
                _ => unreachable!("just replaced by an object"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(segments: &[&str]) -> KeyPath {
        segments.iter().map(|s| (*s).to_owned()).collect()
    }

    fn store() -> Value {
        json!({})
    }

    /// The captured sc-broker 6 session of docs/protocol.md §14.4, step by step.
    #[test]
    fn captured_broker_session() {
        let mut s = store();
        assert_eq!(
            set(&mut s, &p(&["user", "bob"]), json!({"age": 5})),
            json!({"age": 5})
        );
        assert_eq!(get(&s, &p(&["user"])), Some(&json!({"bob": {"age": 5}})));
        assert_eq!(add(&mut s, &p(&["list"]), json!("i1")), 0);
        assert_eq!(add(&mut s, &p(&["list"]), json!("i2")), 1);
        assert_eq!(get_range(&s, &p(&["list"]), 0, Some(1)), json!(["i1"]));
        assert_eq!(count(&s, &p(&["list"])), 2);
        assert!(!has_key(&s, &p(&["nope"])));
        assert_eq!(pop(&mut s, &p(&["list"])), json!(["i2"]));
        // (splice and concat are not KvCommands; rebuild the list they left: ["a","b","c"])
        set(&mut s, &p(&["list"]), json!(["a", "b", "c"]));
        assert_eq!(
            remove_range(&mut s, &p(&["list"]), 1, Some(2)),
            json!(["b"])
        );
        assert_eq!(remove(&mut s, &p(&["list"])), Some(json!(["a", "c"])));
        assert_eq!(s, json!({"user": {"bob": {"age": 5}}}));
    }

    /// The worker-side capture of docs/protocol.md §14.5.
    #[test]
    fn captured_exchange_session() {
        let mut s = store();
        set(&mut s, &p(&["a", "b"]), json!({"c": 1}));
        assert_eq!(get(&s, &p(&["a"])), Some(&json!({"b": {"c": 1}})));
        assert_eq!(add(&mut s, &p(&["list"]), json!("item1")), 0);
        assert_eq!(add(&mut s, &p(&["list"]), json!("item2")), 1);
        assert_eq!(count(&s, &p(&["list"])), 2);
        assert_eq!(s, json!({"a": {"b": {"c": 1}}, "list": ["item1", "item2"]}));
    }

    #[test]
    fn set_creates_and_replaces_intermediates() {
        let mut s = store();
        set(&mut s, &p(&["x"]), json!(3));
        set(&mut s, &p(&["x", "y", "z"]), json!(true));
        assert_eq!(s, json!({"x": {"y": {"z": true}}}));
        // into a list: replace, append, then a non-index key turns it into a map
        set(&mut s, &p(&["l"]), json!([1, 2]));
        set(&mut s, &p(&["l", "0"]), json!(10));
        set(&mut s, &p(&["l", "2"]), json!(30));
        assert_eq!(get(&s, &p(&["l"])), Some(&json!([10, 2, 30])));
        set(&mut s, &p(&["l", "k"]), json!("v"));
        assert_eq!(
            get(&s, &p(&["l"])),
            Some(&json!({"0": 10, "1": 2, "2": 30, "k": "v"}))
        );
        // an index past the end leaves a hole: map as well
        set(&mut s, &p(&["m"]), json!(["a"]));
        set(&mut s, &p(&["m", "5"]), json!("f"));
        assert_eq!(get(&s, &p(&["m"])), Some(&json!({"0": "a", "5": "f"})));
        // lists are walked by index
        set(&mut s, &p(&["n"]), json!([{"a": 1}]));
        set(&mut s, &p(&["n", "0", "b"]), json!(2));
        assert_eq!(get(&s, &p(&["n", "0"])), Some(&json!({"a": 1, "b": 2})));
        assert_eq!(get(&s, &p(&["n", "00"])), None);
    }

    #[test]
    fn add_rules() {
        let mut s = store();
        set(&mut s, &p(&["scalar"]), json!("first"));
        assert_eq!(add(&mut s, &p(&["scalar"]), json!("second")), 1);
        assert_eq!(get(&s, &p(&["scalar"])), Some(&json!(["first", "second"])));
        set(&mut s, &p(&["nul"]), Value::Null);
        assert_eq!(add(&mut s, &p(&["nul"]), json!(1)), 0);
        assert_eq!(get(&s, &p(&["nul"])), Some(&json!([1])));
        set(&mut s, &p(&["map"]), json!({"x": 1, "3": "three"}));
        assert_eq!(add(&mut s, &p(&["map"]), json!("four")), 4);
        assert_eq!(get(&s, &p(&["map", "4"])), Some(&json!("four")));
        assert_eq!(add(&mut s, &p(&["deep", "er"]), json!(0)), 0);
        assert_eq!(s["deep"], json!({"er": [0]}));
    }

    #[test]
    fn count_rules() {
        let mut s = store();
        for (key, value) in [
            ("zero", json!(0)),
            ("false", json!(false)),
            ("empty", json!("")),
            ("null", Value::Null),
            ("one", json!(1)),
            ("text", json!("t")),
            ("list", json!([1, 2, 3])),
            ("map", json!({"a": 1, "b": 2})),
            ("emptylist", json!([])),
        ] {
            set(&mut s, &p(&[key]), value);
        }
        let counts: Vec<usize> = [
            "zero",
            "false",
            "empty",
            "null",
            "one",
            "text",
            "list",
            "map",
            "emptylist",
            "missing",
        ]
        .iter()
        .map(|k| count(&s, &p(&[k])))
        .collect();
        assert_eq!(counts, [0, 0, 0, 0, 1, 1, 3, 2, 0, 0]);
        assert!(has_key(&s, &p(&["null"])));
    }

    #[test]
    fn ranges_on_lists_and_maps() {
        let mut s = store();
        set(&mut s, &p(&["l"]), json!([0, 1, 2, 3, 4]));
        assert_eq!(get_range(&s, &p(&["l"]), 1, Some(3)), json!([1, 2]));
        assert_eq!(get_range(&s, &p(&["l"]), 3, None), json!([3, 4]));
        assert_eq!(get_range(&s, &p(&["l"]), 4, Some(99)), json!([4]));
        assert_eq!(get_range(&s, &p(&["l"]), 9, None), json!([]));
        assert_eq!(get_range(&s, &p(&["l"]), 3, Some(1)), json!([]));
        assert_eq!(get_range(&s, &p(&["missing"]), 0, None), json!({}));
        set(
            &mut s,
            &p(&["m"]),
            json!({"a": 1, "1": "x", "2": "y", "b": 2}),
        );
        assert_eq!(get_range(&s, &p(&["m"]), 1, Some(2)), json!({"1": "x"}));
        assert_eq!(
            get_range(&s, &p(&["m"]), 2, None),
            json!({"2": "y", "b": 2})
        );
        assert_eq!(get_range(&s, &p(&["m"]), 7, None), json!({}));

        assert_eq!(remove_range(&mut s, &p(&["l"]), 1, Some(3)), json!([1, 2]));
        assert_eq!(get(&s, &p(&["l"])), Some(&json!([0, 3, 4])));
        assert_eq!(remove_range(&mut s, &p(&["l"]), 1, None), json!([3, 4]));
        assert_eq!(remove_range(&mut s, &p(&["l"]), 5, None), json!([]));
        assert_eq!(get(&s, &p(&["l"])), Some(&json!([0])));
        assert_eq!(
            remove_range(&mut s, &p(&["m"]), 1, Some(2)),
            json!({"1": "x"})
        );
        assert_eq!(
            get(&s, &p(&["m"])),
            Some(&json!({"a": 1, "2": "y", "b": 2}))
        );
        assert_eq!(remove_range(&mut s, &p(&["missing"]), 0, None), json!({}));
        assert!(!has_key(&s, &p(&["missing"])));
    }

    #[test]
    fn remove_and_pop() {
        let mut s = store();
        set(&mut s, &p(&["user", "bob"]), json!({"age": 5}));
        assert_eq!(remove(&mut s, &p(&["user", "bob", "age"])), Some(json!(5)));
        assert_eq!(remove(&mut s, &p(&["user", "nobody"])), None);
        assert_eq!(remove(&mut s, &p(&["nothing", "here"])), None);
        assert_eq!(s, json!({"user": {"bob": {}}}));
        // an item removed from inside a list leaves a hole (JavaScript delete)
        set(&mut s, &p(&["l"]), json!(["a", "b", "c"]));
        assert_eq!(remove(&mut s, &p(&["l", "1"])), Some(json!("b")));
        assert_eq!(get(&s, &p(&["l"])), Some(&json!({"0": "a", "2": "c"})));
        assert_eq!(pop(&mut s, &p(&["l"])), json!(["c"]));
        assert_eq!(pop(&mut s, &p(&["l"])), json!(["a"]));
        assert_eq!(pop(&mut s, &p(&["l"])), json!([]));
        set(&mut s, &p(&["q"]), json!([1]));
        assert_eq!(pop(&mut s, &p(&["q"])), json!([1]));
        assert_eq!(pop(&mut s, &p(&["q"])), json!([]));
        assert_eq!(get(&s, &p(&["q"])), Some(&json!([])));
        assert_eq!(pop(&mut s, &p(&["missing"])), json!([]));
        set(&mut s, &p(&["scalar"]), json!(1));
        assert_eq!(pop(&mut s, &p(&["scalar"])), json!([]));
    }

    #[test]
    fn apply_dispatches_and_checks_paths() {
        let mut s = store();
        let j = |text: &str| sc_protocol::Json::from_text(text).unwrap();
        let set_bob = KvCommand::Set {
            key: p(&["user", "bob"]),
            value: j(r#"{"age":5}"#),
        };
        assert_eq!(apply(&mut s, &set_bob), Ok(json!({"age": 5})));
        assert_eq!(
            apply(&mut s, &KvCommand::Get { key: p(&["user"]) }),
            Ok(json!({"bob": {"age": 5}}))
        );
        assert_eq!(
            apply(&mut s, &KvCommand::Get { key: p(&["nope"]) }),
            Ok(Value::Null)
        );
        assert_eq!(
            apply(
                &mut s,
                &KvCommand::Add {
                    key: p(&["list"]),
                    value: j(r#""i1""#)
                }
            ),
            Ok(json!(0))
        );
        assert_eq!(
            apply(&mut s, &KvCommand::HasKey { key: p(&["list"]) }),
            Ok(json!(true))
        );
        assert_eq!(
            apply(&mut s, &KvCommand::Count { key: p(&["list"]) }),
            Ok(json!(1))
        );
        assert_eq!(
            apply(&mut s, &KvCommand::GetAll),
            Ok(json!({"user": {"bob": {"age": 5}}, "list": ["i1"]}))
        );
        assert_eq!(apply(&mut s, &KvCommand::RemoveAll), Ok(Value::Null));
        assert_eq!(s, json!({}));
        assert_eq!(
            apply(
                &mut s,
                &KvCommand::Set {
                    key: vec![],
                    value: j("1")
                }
            ),
            Err(KvOpError::EmptyKey { action: "set" })
        );
        assert!(is_read_only(&KvCommand::GetAll));
        assert!(!is_read_only(&KvCommand::Pop { key: p(&["x"]) }));
    }

    #[test]
    fn maps_keep_insertion_order() {
        let mut s = store();
        for key in ["zeta", "alpha", "mid"] {
            set(&mut s, &p(&["m", key]), json!(key));
        }
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"m":{"zeta":"zeta","alpha":"alpha","mid":"mid"}}"#
        );
        remove(&mut s, &p(&["m", "zeta"]));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"m":{"alpha":"alpha","mid":"mid"}}"#
        );
    }
}
