//! Test support for the workspace's integration tests (`publish = false`; a dev-dependency of
//! the crates whose tests use it, as `mini-redis` and `axum` keep theirs).
//!
//! Everything a test needs from outside the crate under test lives here once:
//!
//! | module | what it gives a test |
//! |---|---|
//! | [`net`] | a free loopback port, whether something listens, waiting until it does |
//! | [`wait`] | bounded waits ([`wait::within`], [`wait::eventually`]) so a failing test fails instead of hanging |
//! | [`engine`] | private `redis-server` / `nats-server` processes on free ports (restart, kill, wipe), or the machine's own engine; [`engine::unique`] names |
//! | [`nats_cluster`] | a private 3-node NATS cluster with JetStream, of the machine's `nats-server` or a newer one ([`nats_cluster::modern_nats_server`]) |
//! | [`redis_cluster`] | a private Redis Cluster (3 masters, optionally with replicas) |
//! | [`certs`] | a private CA, server and client certificates made with `openssl` |
//! | [`process`] | child processes that print `LISTENING <port>` (the `socketcluster` binary, fixture examples, the Node reference); [`process::example_path`] |
//! | [`raw`] | raw WebSocket clients: [`raw::RawClient`] (exact frames in and out), [`raw::JsonClient`] (JSON frames, heartbeats answered) |
//! | [`http`] | raw HTTP/1.1 requests and responses |
//! | [`server`] | an in-process `sc-server` on an ephemeral port ([`server::TestServer`]) |
//! | [`interop`] | the interop fixture's demo handlers and middleware, the one copy the `interop_fixture` example and the in-process tests share |
//! | [`client`] | `sc-client` options with short timeouts and fast reconnects |
//! | [`sink`] | a broker sink that collects deliveries ([`sink::Collect`]) |
//! | [`logs`] | captured `tracing` output ([`logs::Logs`]) |
//!
//! A test file imports what it uses, e.g. `use sc_test_support::engine::{EngineKind,
//! machine_engine};`. What only one crate's tests need stays in that crate's `tests/common/`
//! (the client's scripted fake server and TCP proxy, the server's option presets, the cluster
//! tests' `cluster_fixture` instance) or, for the broker's trait conformance suite, in
//! `crates/sc-broker/tests/conformance/`.
//!
//! Helpers panic on failure, with a message saying what was expected: they are for tests only.

pub mod certs;
pub mod client;
pub mod engine;
pub mod http;
pub mod interop;
pub mod logs;
pub mod nats_cluster;
pub mod net;
pub mod process;
pub mod raw;
pub mod redis_cluster;
pub mod server;
pub mod sink;
pub mod wait;
