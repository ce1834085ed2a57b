//! The in-process engine: [`MemoryBroker`], [`MemoryKv`], and the in-process history and
//! presence ([`stream`]), which the broker processes of the process cluster use too.

pub mod broker;
pub mod kv;
pub mod stream;

pub use broker::MemoryBroker;
pub use kv::MemoryKv;
