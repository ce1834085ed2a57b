//! The live admin page, `/admin`: off unless `adminToken` is set (then 404 without it).
//!
//! The page is built on our browser client (`public/socketcluster.js`, served beside it so a
//! custom `publicDir` does not lose it). It invokes the reserved procedure [`PROCEDURE`] with the
//! token once a second; only the right token opens it. The answer covers the whole instance (the
//! worker asks the master, which asks every process), and the page keeps the last minutes for
//! its chart.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use http::header;
use sc_protocol::ScError;
use sc_server::{Reply, Request, Server};
use serde::Deserialize;

use super::metrics::InstanceReport;
use crate::cluster::BoxFuture;

/// The reserved procedure the page invokes: `{"token": …}` → the instance report.
pub const PROCEDURE: &str = "sc-admin/stats";

const PAGE: &str = include_str!("admin.html");
const CLIENT: &str = include_str!("../../../../public/socketcluster.js");

/// Asks for the whole instance's numbers.
pub type Gather = Arc<dyn Fn() -> BoxFuture<Result<InstanceReport, String>> + Send + Sync>;

/// The page and its script.
pub fn router() -> Router {
    Router::new()
        .route("/admin", get(|| async { Html(PAGE) }))
        .route("/admin/", get(|| async { Html(PAGE) }))
        .route(
            "/admin/socketcluster.js",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/javascript; charset=utf-8",
                    )],
                    CLIENT,
                )
                    .into_response()
            }),
        )
}

#[derive(Deserialize)]
struct Ask {
    token: String,
}

/// Registers [`PROCEDURE`] on `server`, opened by `token` only.
pub fn register(server: &Server, token: String, gather: Gather) {
    let token: Arc<str> = token.into();
    let registered = server.on(PROCEDURE, move |req: Request| {
        let (token, gather) = (token.clone(), gather.clone());
        async move {
            let ask: Ask = req.parse().map_err(|_| forbidden("send {\"token\": …}"))?;
            if !same(ask.token.as_bytes(), token.as_bytes()) {
                tracing::warn!(socket = %req.socket().id(), "admin page: wrong token");
                return Err(forbidden("wrong admin token"));
            }
            let report = gather().await.map_err(|e| ScError::new("AdminError", e))?;
            Reply::json(&view(&report))
        }
    });
    registered.expect("PROCEDURE is not a reserved event name");
}

fn forbidden(message: &str) -> ScError {
    ScError::new("ForbiddenError", message)
}

/// Compares without an early exit (the time does not tell how much of the token matched).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the page reads.
pub fn view(report: &InstanceReport) -> serde_json::Value {
    let mut channels: HashMap<&str, u64> = HashMap::new();
    for (_, s) in &report.workers {
        for (name, n) in &s.top_channels {
            *channels.entry(name.as_str()).or_default() += n;
        }
    }
    let mut top: Vec<(&str, u64)> = channels.into_iter().collect();
    top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    top.truncate(10);
    let engine_up = report.workers.iter().all(|(_, s)| s.engine_up)
        && report.brokers.iter().all(|(_, up)| *up != Some(false));
    let workers: Vec<serde_json::Value> = report
        .workers
        .iter()
        .map(|(id, s)| {
            serde_json::json!({
                "id": id,
                "connections": s.connections,
                "framesIn": s.frames_in,
                "framesOut": s.frames_out,
                "slow": s.slow_consumer_disconnects(),
                "channels": s.channels,
                "engineUp": s.engine_up,
            })
        })
        .collect();
    serde_json::json!({
        "workers": workers,
        "workerRestarts": report.worker_restarts,
        "brokerRestarts": report.broker_restarts,
        "engineUp": engine_up,
        "topChannels": top,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_server::metrics::MetricsSnapshot;

    #[test]
    fn view_sums_channels_across_workers() {
        let worker = |n| MetricsSnapshot {
            connections: n,
            engine_up: true,
            top_channels: vec![("a".into(), n), ("b".into(), 1)],
            ..Default::default()
        };
        let report = InstanceReport {
            workers: vec![(0, worker(2)), (1, worker(3))],
            brokers: vec![(0, None)],
            worker_restarts: 1,
            ..Default::default()
        };
        let v = view(&report);
        assert_eq!(v["topChannels"][0], serde_json::json!(["a", 5]));
        assert_eq!(v["topChannels"][1], serde_json::json!(["b", 2]));
        assert_eq!(v["engineUp"], true);
        assert_eq!(v["workers"][1]["connections"], 3);
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
