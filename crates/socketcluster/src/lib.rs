//! SocketCluster in Rust: the process cluster, the `socketcluster` command and the seed's
//! boilerplate app.
//!
//! # Layout
//!
//! - [`cluster`]: master, worker and broker processes ([`cluster::SocketCluster`]).
//! - [`config`]: [`config::ClusterConfig`], SocketCluster's options from file, environment and
//!   flags.
//! - [`boilerplate`]: the seed's worker logic (`ping` → `pong`, `echo`, the sign-in tour).
//! - [`ops`]: TLS, Prometheus metrics, the admin page, log format, drain.
//! - [`scaffold`]: `socketcluster new myapp`.
//! - [`cli`]: the command line.
//!
//! The crates it builds on are re-exported: [`sc_server`], [`sc_protocol`], [`sc_broker`].

#![warn(missing_debug_implementations)]

pub mod boilerplate;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod ops;
pub mod scaffold;

pub use sc_broker;
pub use sc_protocol;
pub use sc_server;
