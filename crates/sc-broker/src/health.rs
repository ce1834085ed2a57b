//! The state of an engine's nodes, for `/health` and `/metrics`: [`EngineHealth`] and
//! [`NodeHealth`]. Engine-neutral: Redis (single, Sentinel, Cluster) and NATS (one server or a
//! cluster) report the same shape.

use serde::{Deserialize, Serialize};

/// Every node of an engine we know of, and whether it is up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineHealth {
    /// The nodes, the one(s) we talk to first.
    pub nodes: Vec<NodeHealth>,
}

impl EngineHealth {
    /// Whether every node is up (vacuously true without nodes).
    pub fn all_up(&self) -> bool {
        self.nodes.iter().all(|n| n.up)
    }
}

/// One engine node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// `host:port`, never with credentials.
    pub addr: String,
    /// What the node is to us, engine-specific: for NATS `connected` (the server our connection
    /// is on) or `peer` (another server of the cluster, used on reconnect); for Redis e.g.
    /// `master`, `replica`, `sentinel`.
    pub role: String,
    /// Whether the node answers: for the node we are connected to, whether the connection is
    /// up; for the others, whether they accept a TCP connection right now.
    pub up: bool,
}

impl NodeHealth {
    /// A node.
    pub fn new(addr: impl Into<String>, role: impl Into<String>, up: bool) -> NodeHealth {
        NodeHealth {
            addr: addr.into(),
            role: role.into(),
            up,
        }
    }
}
