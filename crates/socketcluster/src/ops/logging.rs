//! Log lines an operator can use: `pretty` or `json`, each naming its process (`master`,
//! `worker 1`, `broker 0`), filtered by `RUST_LOG` as usual. The server logs events (a socket
//! blocked, a worker restarted), never one line per message.

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, one line per event, prefixed with the process (`[worker 1]`).
    #[default]
    Pretty,
    /// One JSON object per line: `timestamp`, `level`, `process`, `target`, `message`, fields.
    Json,
}

/// The name of this process in logs: `master`, `worker N` or `broker N`.
pub fn process_name() -> String {
    match std::env::var(crate::cluster::role_env()).ok() {
        Some(role) => role.replacen(':', " ", 1),
        None => "master".to_owned(),
    }
}

/// Installs the global subscriber (`RUST_LOG`, default `info,async_nats=warn`) on stderr.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,async_nats=warn".into());
    let process = process_name();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder
            .event_format(Named {
                process,
                inner: format::Format::default(),
            })
            .try_init(),
        LogFormat::Json => builder.event_format(JsonLine { process }).try_init(),
    };
}

/// The default format with the process name in front.
struct Named<F> {
    process: String,
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for Named<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "[{}] ", self.process)?;
        self.inner.format_event(ctx, writer, event)
    }
}

/// One JSON object per event.
struct JsonLine {
    process: String,
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = serde_json::Map::new();
        fields.insert(
            "timestamp".into(),
            humantime::format_rfc3339_millis(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        fields.insert("level".into(), meta.level().as_str().into());
        fields.insert("process".into(), self.process.clone().into());
        fields.insert("target".into(), meta.target().into());
        let mut visitor = JsonVisitor(&mut fields);
        event.record(&mut visitor);
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<serde_json::Value> = scope
                .from_root()
                .map(|span| {
                    let ext = span.extensions();
                    let recorded = ext
                        .get::<FormattedFields<N>>()
                        .map(|f| f.fields.as_str().to_owned())
                        .unwrap_or_default();
                    serde_json::json!({ "name": span.name(), "fields": recorded })
                })
                .collect();
            if !spans.is_empty() {
                fields.insert("spans".into(), spans.into());
            }
        }
        let line = serde_json::Value::Object(fields).to_string();
        writer.write_str(&line)?;
        writer.write_char('\n')
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}
