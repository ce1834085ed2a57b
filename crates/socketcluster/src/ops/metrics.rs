//! Prometheus metrics of a whole instance.
//!
//! Every process renders its own numbers with `prometheus-client` (OpenMetrics text), each series
//! carrying the process's label (`worker="0"`, `broker="1"`, `process="master"`). The master asks
//! every child over IPC (`{"$scOps":"scrape"}`) and [`merge`]s the texts family by family, so one scrape of
//! any worker (workers share the port) shows every process. No label takes unbounded values:
//! close codes outside a fixed list count as `other`, middleware points are a fixed list, and
//! channel names never appear (the admin page shows the top channels, not `/metrics`).

use std::borrow::Cow;
use std::collections::HashMap;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use sc_server::metrics::{MetricsSnapshot, RPC_BUCKETS};
use serde::{Deserialize, Serialize};

use super::process::ProcessStats;

/// Master → child: "your numbers" (answered before user handlers).
pub(crate) const SCRAPE: &str = r#"{"$scOps":"scrape"}"#;
/// Worker → master: "everyone's numbers" (answered before user handlers).
pub(crate) const GATHER: &str = r#"{"$scOps":"gather"}"#;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a child answers to the master's scrape request (`{"$scOps":"scrape"}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildReport {
    /// Its series, OpenMetrics text.
    pub text: String,
    /// A worker's server numbers (for the admin page).
    pub snapshot: Option<MetricsSnapshot>,
    /// A broker's engine state (`None` without an engine).
    pub engine_up: Option<bool>,
}

/// What the master answers to a worker's gather request (`{"$scOps":"gather"}`): the whole
/// instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceReport {
    /// The merged scrape.
    pub text: String,
    /// Every worker's numbers, by worker id.
    pub workers: Vec<(usize, MetricsSnapshot)>,
    /// Brokers' engine states, by broker id.
    pub brokers: Vec<(usize, Option<bool>)>,
    /// Restarts of worker processes since the master started (crashes and reboots).
    pub worker_restarts: u64,
    /// Restarts of broker processes.
    pub broker_restarts: u64,
}

enum Value {
    Counter(u64),
    CounterF(f64),
    Gauge(i64),
    Histogram { sum: f64, buckets: Vec<(f64, u64)> },
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Option<(&'static str, String)>, Value)>,
}

/// A set of families to encode; the `Collector` that hands them to prometheus-client.
#[derive(Default)]
struct Families(Vec<Family>);

impl std::fmt::Debug for Families {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Families({})", self.0.len())
    }
}

impl Families {
    fn one(&mut self, name: &'static str, help: &'static str, value: Value) {
        let kind = kind_of(&value);
        self.0.push(Family {
            name,
            help,
            kind,
            samples: vec![(None, value)],
        });
    }

    fn labelled(
        &mut self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, Value)>,
    ) {
        let samples: Vec<_> = values
            .into_iter()
            .map(|(l, v)| (Some((label, l)), v))
            .collect();
        let kind = samples
            .first()
            .map_or(MetricType::Counter, |(_, v)| kind_of(v));
        self.0.push(Family {
            name,
            help,
            kind,
            samples,
        });
    }

    /// `socketcluster_engine_node_up{node="host:port"}`, one sample per engine node (none for an
    /// engine without nodes).
    fn engine_nodes(&mut self, nodes: &[sc_broker::NodeHealth]) {
        if !nodes.is_empty() {
            self.labelled(
                "socketcluster_engine_node_up",
                "1 when an engine node (Redis Cluster / Sentinel node, NATS server) is up, by address.",
                "node",
                nodes
                    .iter()
                    .map(|n| (n.addr.clone(), Value::Gauge(i64::from(n.up)))),
            );
        }
    }

    fn process(&mut self, stats: ProcessStats) {
        self.one(
            "socketcluster_process_cpu_seconds",
            "CPU time (user + system) of the process.",
            Value::CounterF(stats.cpu_seconds),
        );
        self.one(
            "socketcluster_process_resident_memory_bytes",
            "Resident memory of the process.",
            Value::Gauge(clamp(stats.resident_bytes)),
        );
        self.one(
            "socketcluster_process_open_fds",
            "Open file descriptors of the process (sockets included).",
            Value::Gauge(clamp(stats.open_fds)),
        );
    }

    /// Encodes with `label="id"` on every series.
    fn render(self, label: &'static str, id: String) -> String {
        let mut registry =
            Registry::with_labels(std::iter::once((Cow::Borrowed(label), Cow::Owned(id))));
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

fn kind_of(value: &Value) -> MetricType {
    match value {
        Value::Counter(_) | Value::CounterF(_) => MetricType::Counter,
        Value::Gauge(_) => MetricType::Gauge,
        Value::Histogram { .. } => MetricType::Histogram,
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl prometheus_client::collector::Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (label, value) in &family.samples {
                match label {
                    Some((key, value_text)) => {
                        let labels = [(*key, value_text.as_str())];
                        encode_value(value, metric.encode_family(&labels)?)?;
                    }
                    None => {
                        let no_labels: [(&str, &str); 0] = [];
                        encode_value(value, metric.encode_family(&no_labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn encode_value(
    value: &Value,
    mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    match value {
        Value::Counter(v) => ConstCounter::new(*v).encode(encoder),
        Value::CounterF(v) => ConstCounter::new(*v).encode(encoder),
        Value::Gauge(v) => ConstGauge::new(*v).encode(encoder),
        Value::Histogram { sum, buckets } => {
            let count = buckets.iter().map(|(_, n)| n).sum();
            encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                *sum, count, buckets, None,
            )
        }
    }
}

/// A worker's series.
pub fn render_worker(id: usize, s: &MetricsSnapshot, stats: ProcessStats) -> String {
    let mut f = Families::default();
    f.one(
        "socketcluster_connections",
        "Open client sockets (handshake done).",
        Value::Gauge(clamp(s.connections)),
    );
    f.one(
        "socketcluster_handshakes",
        "Successful SocketCluster handshakes.",
        Value::Counter(s.handshakes),
    );
    f.labelled(
        "socketcluster_disconnects",
        "Closed sockets by close code (codes outside the known list count as other).",
        "code",
        s.disconnects
            .iter()
            .map(|(c, n)| (c.clone(), Value::Counter(*n))),
    );
    f.one(
        "socketcluster_messages_received",
        "WebSocket messages received from clients.",
        Value::Counter(s.frames_in),
    );
    f.one(
        "socketcluster_messages_sent",
        "WebSocket messages sent to clients.",
        Value::Counter(s.frames_out),
    );
    f.one(
        "socketcluster_bytes_received",
        "Bytes received from clients on WebSocket connections.",
        Value::Counter(s.bytes_in),
    );
    f.one(
        "socketcluster_bytes_sent",
        "Bytes sent to clients on WebSocket connections.",
        Value::Counter(s.bytes_out),
    );
    f.one(
        "socketcluster_publications",
        "Publications delivered to this worker's channel table.",
        Value::Counter(s.publications),
    );
    f.one(
        "socketcluster_subscriptions",
        "Socket subscriptions (one per socket per channel).",
        Value::Gauge(clamp(s.subscriptions)),
    );
    f.one(
        "socketcluster_channels",
        "Channels with at least one subscribed socket.",
        Value::Gauge(clamp(s.channels)),
    );
    f.one(
        "socketcluster_slow_consumer_disconnects",
        "Sockets closed because their outbound queue filled up (code 4100).",
        Value::Counter(s.slow_consumer_disconnects()),
    );
    f.labelled(
        "socketcluster_middleware_rejections",
        "Actions blocked by middleware, by middleware point.",
        "point",
        s.rejections
            .iter()
            .map(|(p, n)| (p.clone(), Value::Counter(*n))),
    );
    let buckets = RPC_BUCKETS
        .iter()
        .copied()
        .chain(std::iter::once(f64::MAX))
        .zip(s.rpc_buckets.iter().copied())
        .collect();
    f.one(
        "socketcluster_rpc_duration_seconds",
        "Time spent in application event handlers.",
        Value::Histogram {
            sum: s.rpc_sum_seconds,
            buckets,
        },
    );
    f.one(
        "socketcluster_engine_up",
        "1 when the worker's broker link (or engine) is connected.",
        Value::Gauge(i64::from(s.engine_up)),
    );
    f.engine_nodes(&s.engine_nodes);
    f.process(stats);
    f.render("worker", id.to_string())
}

/// A broker's series.
pub fn render_broker(
    id: usize,
    engine_up: Option<bool>,
    nodes: &sc_broker::EngineHealth,
    stats: ProcessStats,
) -> String {
    let mut f = Families::default();
    if let Some(up) = engine_up {
        f.one(
            "socketcluster_engine_up",
            "1 when the broker's cluster engine (Redis, NATS) is connected.",
            Value::Gauge(i64::from(up)),
        );
    }
    f.engine_nodes(&nodes.nodes);
    f.process(stats);
    f.render("broker", id.to_string())
}

/// The master's series.
pub fn render_master(worker_restarts: u64, broker_restarts: u64, stats: ProcessStats) -> String {
    let mut restarts = Families::default();
    restarts.labelled(
        "socketcluster_process_restarts",
        "Worker and broker processes restarted by the master (crash or reboot).",
        "role",
        [
            ("worker".to_owned(), Value::Counter(worker_restarts)),
            ("broker".to_owned(), Value::Counter(broker_restarts)),
        ],
    );
    let mut text = restarts.render("instance", "0".into());
    // The restart counters describe the instance; keep their label set to `role` alone.
    text = text.replace("instance=\"0\",", "");
    let mut own = Families::default();
    own.process(stats);
    text.push_str(&own.render("process", "master".into()));
    text
}

/// Merges OpenMetrics texts of several processes into one: each family once (its `# HELP`,
/// `# TYPE`, `# UNIT` lines from the first text that has it), followed by every process's
/// samples of it, and one `# EOF`.
pub fn merge<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut order: Vec<String> = Vec::new();
    // Which text introduced each family: only its descriptor lines are kept.
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut heads: HashMap<String, Vec<&'a str>> = HashMap::new();
    let mut samples: HashMap<String, Vec<&'a str>> = HashMap::new();
    for (index, text) in texts.into_iter().enumerate() {
        let mut family = String::new();
        for line in text.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let name = rest.split(' ').nth(1).unwrap_or_default().to_owned();
                if *owner.entry(name.clone()).or_insert_with(|| {
                    order.push(name.clone());
                    index
                }) == index
                {
                    heads.entry(name.clone()).or_default().push(line);
                }
                family = name;
            } else {
                samples.entry(family.clone()).or_default().push(line);
            }
        }
    }
    let mut out = String::new();
    for name in order {
        for line in heads.get(&name).into_iter().flatten() {
            out.push_str(line);
            out.push('\n');
        }
        for line in samples.get(&name).into_iter().flatten() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> MetricsSnapshot {
        MetricsSnapshot {
            connections: 3,
            handshakes: 5,
            disconnects: vec![("1000".into(), 1), ("4100".into(), 2), ("other".into(), 0)],
            frames_in: 10,
            rejections: vec![("subscribe".into(), 4)],
            rpc_buckets: vec![1; RPC_BUCKETS.len() + 1],
            rpc_sum_seconds: 0.5,
            engine_up: true,
            engine_nodes: vec![
                sc_broker::NodeHealth::new("10.0.0.1:7001", "master", true),
                sc_broker::NodeHealth::new("10.0.0.2:7002", "master", false),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn two_workers_merge_into_one_family_each() {
        let a = render_worker(0, &snapshot(), ProcessStats::default());
        let b = render_worker(1, &snapshot(), ProcessStats::default());
        let m = render_master(2, 1, ProcessStats::default());
        let text = merge([a.as_str(), b.as_str(), m.as_str()]);
        assert_eq!(
            text.matches("# TYPE socketcluster_connections gauge")
                .count(),
            1
        );
        assert!(
            text.contains("socketcluster_connections{worker=\"0\"} 3"),
            "{text}"
        );
        assert!(text.contains("socketcluster_connections{worker=\"1\"} 3"));
        assert!(text.contains("socketcluster_handshakes_total{worker=\"1\"} 5"));
        assert!(text.contains("socketcluster_disconnects_total{worker=\"0\",code=\"4100\"} 2"));
        assert!(text.contains("socketcluster_slow_consumer_disconnects_total{worker=\"0\"} 2"));
        assert!(text.contains(
            "socketcluster_middleware_rejections_total{worker=\"0\",point=\"subscribe\"} 4"
        ));
        assert!(
            text.contains("socketcluster_rpc_duration_seconds_bucket{worker=\"0\",le=\"+Inf\"} 13")
        );
        assert!(
            text.contains("socketcluster_process_restarts_total{role=\"worker\"} 2"),
            "{text}"
        );
        assert!(text.contains("socketcluster_process_resident_memory_bytes{process=\"master\"}"));
        assert!(
            text.contains("socketcluster_engine_node_up{worker=\"0\",node=\"10.0.0.1:7001\"} 1")
        );
        assert!(
            text.contains("socketcluster_engine_node_up{worker=\"1\",node=\"10.0.0.2:7002\"} 0")
        );
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
        // Every sample line follows its family's TYPE line.
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.iter().any(|t| name.starts_with(t.as_str())), "{line}");
            }
        }
    }
}
