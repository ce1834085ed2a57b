//! The conformance suite (`tests/conformance/mod.rs`) against the in-process engine.

mod conformance;

use std::sync::Arc;

use conformance::{BoxFuture, Engine, Instance};
use sc_broker::{MemoryBroker, MemoryKv};

/// One [`MemoryBroker`] and [`MemoryKv`]: the in-process engine has a single instance.
struct Memory(Instance);

impl Engine for Memory {
    fn instance(&self) -> BoxFuture<'_, Instance> {
        Box::pin(async { self.0.clone() })
    }

    fn distinct_instances(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

async fn memory() -> Memory {
    Memory(Instance::attach(
        Arc::new(MemoryBroker::new()),
        Arc::new(MemoryKv::new()),
    ))
}

conformance_suite!(memory);
