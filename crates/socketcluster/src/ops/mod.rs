//! Production operations: TLS, Prometheus metrics, the admin page, log format, drain.
//!
//! - [`OpsConfig`]: the options (`tlsCert`, `tlsKey`, `metrics`, `metricsAddr`, `adminToken`,
//!   `logFormat`, `drainDuration`), flattened into [`ClusterConfig`](crate::config::ClusterConfig).
//! - [`metrics`]: per-process snapshots rendered with `prometheus-client`, merged by the master
//!   into one scrape of the whole instance.
//! - [`admin`]: the `/admin` page and its token-guarded procedure.
//! - [`logging`]: `pretty` or `json` lines naming their process.
//! - [`drain`]: staggered close of every socket on SIGTERM.
//! - [`process`]: this process's CPU and memory from `/proc`.

use std::path::PathBuf;
use std::sync::Arc;

use sc_server::{TlsError, TlsSettings};
use serde::{Deserialize, Serialize};

pub mod admin;
pub mod drain;
pub mod logging;
pub mod metrics;
pub mod process;

pub use logging::LogFormat;

/// Operations options, flattened into the cluster configuration (same TOML level, same
/// `SOCKETCLUSTER_*` environment names: `SOCKETCLUSTER_TLS_CERT`, `SOCKETCLUSTER_ADMIN_TOKEN`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OpsConfig {
    /// PEM certificate chain: serve HTTPS and WSS on the port (with `tlsKey`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tlsCert`.
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics (`GET /metrics` on the port, or on `metricsAddr`).
    pub metrics: bool,
    /// Serve metrics on this address (e.g. `127.0.0.1:9100`) instead of the main port.
    pub metrics_addr: Option<String>,
    /// Turns on `/admin`; the page asks for this token.
    pub admin_token: Option<String>,
    /// Log lines: `pretty` (default) or `json`.
    pub log_format: LogFormat,
    /// How long a SIGTERM drain spreads the closing of clients over (ms).
    pub drain_duration: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            tls_cert: None,
            tls_key: None,
            metrics: true,
            metrics_addr: None,
            admin_token: None,
            log_format: LogFormat::Pretty,
            drain_duration: 5_000,
        }
    }
}

impl OpsConfig {
    /// Checks the values and loads the TLS files (so a bad certificate fails at start, naming
    /// the file).
    pub fn validate(&self) -> Result<(), String> {
        self.tls()?;
        if let Some(addr) = &self.metrics_addr {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("metricsAddr {addr:?} is not an address: {e}"))?;
        }
        if self.admin_token.as_deref().is_some_and(str::is_empty) {
            return Err("adminToken must not be empty".into());
        }
        if self.drain_duration > i32::MAX as u64 {
            return Err("drainDuration must be at most 2147483647 ms".into());
        }
        Ok(())
    }

    /// The TLS settings, when both files are given.
    pub fn tls(&self) -> Result<Option<Arc<TlsSettings>>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => TlsSettings::load(cert, key)
                .map(|t| Some(Arc::new(t)))
                .map_err(|e: TlsError| e.to_string()),
            (Some(_), None) => Err("tlsCert is set but tlsKey is not (--tls-key)".into()),
            (None, Some(_)) => Err("tlsKey is set but tlsCert is not (--tls-cert)".into()),
        }
    }
}

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use sc_protocol::Json;
use sc_server::Server;

use crate::cluster::ipc::{IpcPeer, MessageHandler};
use metrics::{ChildReport, InstanceReport};

/// Answers the master's [`metrics::SCRAPE`] with `report()`; passes everything else to `handler`.
pub(crate) fn with_scrape(
    handler: MessageHandler,
    report: impl Fn() -> ChildReport + Send + Sync + 'static,
) -> MessageHandler {
    Arc::new(move |data: Json| {
        if data.get() != metrics::SCRAPE {
            return handler(data);
        }
        let answer = serde_json::to_value(report())
            .map(Json::from)
            .map_err(|e| e.to_string());
        Box::pin(async move { answer })
    })
}

/// A worker's answer to a scrape.
pub(crate) fn worker_report(id: usize, server: &Server) -> ChildReport {
    let snapshot = server.metrics();
    ChildReport {
        text: metrics::render_worker(id, &snapshot, process::read()),
        snapshot: Some(snapshot),
        engine_up: None,
    }
}

/// Asks the master for the whole instance's numbers (over the worker's IPC link).
pub(crate) fn gatherer(master: IpcPeer) -> admin::Gather {
    Arc::new(move || {
        let master = master.clone();
        Box::pin(async move {
            let probe = Json::from_text(metrics::GATHER).map_err(|e| e.to_string())?;
            let answer = master.request(probe).await.map_err(|e| e.to_string())?;
            answer.parse::<InstanceReport>().map_err(|e| e.to_string())
        })
    })
}

/// A worker's HTTP app: the server's own (SocketCluster path, `/health`, `/health/ready`,
/// static files) plus `/metrics` and `/admin` when configured.
pub(crate) fn worker_app(
    server: &Server,
    public_dir: std::path::PathBuf,
    ops: &OpsConfig,
    gather: admin::Gather,
) -> Router {
    let mut app = server.app(Some(public_dir));
    if ops.metrics && ops.metrics_addr.is_none() {
        app = app.merge(metrics_router(gather.clone()));
    }
    if let Some(token) = &ops.admin_token {
        admin::register(server, token.clone(), gather);
        app = app.merge(admin::router());
    }
    app
}

/// `GET /metrics`: the whole instance, one scrape.
pub(crate) fn metrics_router(gather: admin::Gather) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let gather = gather.clone();
            async move {
                match gather().await {
                    Ok(report) => (
                        [(http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                        report.text,
                    )
                        .into_response(),
                    Err(error) => {
                        tracing::warn!(%error, "metrics scrape failed");
                        (http::StatusCode::SERVICE_UNAVAILABLE, error).into_response()
                    }
                }
            }
        }),
    )
}

/// Reloads the certificate on SIGHUP, and when its files change (checked every 2 s).
pub(crate) fn watch_tls(tls: Arc<TlsSettings>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut poll = tokio::time::interval(std::time::Duration::from_secs(2));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(()) = hangup.recv() => {
                    if let Err(error) = tls.reload() {
                        tracing::error!(%error, "SIGHUP: cannot reload the TLS certificate; keeping the old one");
                    }
                }
                _ = poll.tick() => {
                    tls.reload_if_changed();
                }
            }
        }
    });
    Ok(())
}
