//! `sc-bench`: the project's load generator for SocketCluster servers.
//!
//! It speaks the wire protocol over raw WebSockets with a minimal client of its own, so that the
//! generator costs little next to the server it measures, and it runs the same scenarios against
//! any server (the Node.js reference or ours):
//!
//! ```text
//! sc-bench fanout      --url ws://127.0.0.1:8000/socketcluster/ -c 1000 -m 2000 --size 64 --window 50
//! sc-bench rpc         -k 100 -t 10
//! sc-bench conns       -n 10000 --concurrency 200 --pid <server pid>
//! sc-bench pubsub-many -n 1000 -m 20
//! ```
//!
//! Each prints a table (and, with `--json`, one JSON line on stdout); a run whose correctness
//! checks fail is printed as INVALID and exits with status 1; a run that cannot be carried out
//! exits with status 2. See `docs/BENCHMARKS.md` and `scripts/bench-compare`.
//!
//! # Layout
//!
//! - [`cli`]: command line (common options, one argument set per scenario).
//! - [`client`]: the minimal SocketCluster client (handshake, the heartbeats of one dialect,
//!   subscribe, publish, invoke with cid bookkeeping) and the benchmark message ([`client::Probe`]).
//! - [`scenario`]: what the scenarios share (context, opening many connections, inbox/outbox
//!   accounting) and one module per scenario: `fanout`, `rpc`, `conns`, `pubsub_many`.
//! - [`stats`]: latency histograms, the sequence tracker behind lost / duplicated / out-of-order.
//! - [`report`]: the result table and JSON line, progress bars.
//! - [`sys`]: file descriptor limit, the generator's CPU time, the server's memory.

pub mod cli;
pub mod client;
pub mod report;
pub mod scenario;
pub mod stall;
pub mod stats;
pub mod sys;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let nofile = sys::raise_nofile_limit();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = cli.common.threads {
        runtime.worker_threads(threads as usize);
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sc-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(scenario::run(&cli));
    // Connections still open belong to finished tasks; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(report) => {
            if cli.common.json {
                eprint!("{}", report.table());
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            if report.is_valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("sc-bench {}: error: {e:#}", cli.scenario.name());
            if nofile < 1024 {
                eprintln!("sc-bench: note: only {nofile} file descriptors available");
            }
            ExitCode::from(2)
        }
    }
}
