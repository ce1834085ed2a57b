//! The project's guides (`README.md` and `docs/*.md`), included here so that `cargo doc` renders
//! them next to the API and `cargo test --doc` compiles every Rust example in them.
//!
//! Only the guides with Rust examples are included; the others (protocol, operations,
//! benchmarks, …) are read in the repository.

#[doc = include_str!("../../../README.md")]
pub mod readme {}

#[doc = include_str!("../../../docs/auth.md")]
pub mod auth {}

#[doc = include_str!("../../../docs/cluster.md")]
pub mod cluster {}

#[doc = include_str!("../../../docs/continuity.md")]
pub mod continuity {}

#[doc = include_str!("../../../docs/middleware.md")]
pub mod middleware {}

#[doc = include_str!("../../../docs/scaling.md")]
pub mod scaling {}
