//! SocketCluster in Rust: the `socketcluster` command and the seed's boilerplate app.
//!
//! # Layout
//!
//! - [`boilerplate`]: the seed's worker logic (`ping` → count → publish to `pong`; `echo`).
//! - [`config`]: command-line flags and environment variables, mapped onto
//!   [`sc_server::ServerOptions`].

pub mod boilerplate;
pub mod config;
