//! Results: a [`Report`] is a list of rows, printed as a human table and as one JSON line, plus the
//! problems that make a run INVALID. Progress bars live here too.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};

use crate::stats::{Correctness, Latency};
use crate::sys::CpuUse;

/// One line of the human table, backed by one or more JSON fields.
#[derive(Debug, Clone)]
struct Row {
    label: String,
    text: String,
}

/// The outcome of one scenario run.
#[derive(Debug, Clone)]
pub struct Report {
    scenario: &'static str,
    rows: Vec<Row>,
    fields: Map<String, Value>,
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &'static str) -> Report {
        let mut fields = Map::new();
        fields.insert("scenario".to_owned(), Value::from(scenario));
        Report {
            scenario,
            rows: Vec::new(),
            fields,
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn row(&mut self, label: &str, text: String) {
        self.rows.push(Row {
            label: label.to_owned(),
            text,
        });
    }

    fn field(&mut self, key: &str, value: impl Into<Value>) {
        self.fields.insert(key.to_owned(), value.into());
    }

    /// A text value.
    pub fn text(&mut self, key: &str, label: &str, value: &str) {
        self.field(key, value);
        self.row(label, value.to_owned());
    }

    /// A count.
    pub fn count(&mut self, key: &str, label: &str, value: u64) {
        self.field(key, value);
        self.row(label, group_digits(value));
    }

    /// A rate per second.
    pub fn rate(&mut self, key: &str, label: &str, per_second: f64, unit: &str) {
        self.field(key, round(per_second, 1));
        self.row(
            label,
            format!("{} {unit}/s", group_digits(per_second.round() as u64)),
        );
    }

    /// A duration, in seconds in JSON.
    pub fn duration(&mut self, key: &str, label: &str, value: Duration) {
        self.field(key, round(value.as_secs_f64(), 3));
        self.row(label, format!("{:.3} s", value.as_secs_f64()));
    }

    /// CPU use in cores (CPU-seconds per second).
    pub fn cores(&mut self, key: &str, label: &str, cores: f64) {
        self.field(key, round(cores, 4));
        self.row(label, format!("{cores:.3} cores"));
    }

    /// A size in bytes.
    pub fn bytes(&mut self, key: &str, label: &str, value: u64) {
        self.field(key, value);
        self.row(label, human_bytes(value as f64));
    }

    /// p50 / p99 / max (and mean, JSON only) of a latency distribution, in milliseconds in JSON:
    /// `<key>_p50_ms`, `<key>_p99_ms`, `<key>_max_ms`, `<key>_mean_ms`, `<key>_samples`.
    pub fn latency(&mut self, key: &str, label: &str, latency: &Latency) {
        let ms = |micros: u64| round(micros as f64 / 1000.0, 3);
        self.field(&format!("{key}_p50_ms"), ms(latency.percentile(50.0)));
        self.field(&format!("{key}_p99_ms"), ms(latency.percentile(99.0)));
        self.field(&format!("{key}_max_ms"), ms(latency.max()));
        self.field(&format!("{key}_mean_ms"), round(latency.mean() / 1000.0, 3));
        self.field(&format!("{key}_samples"), latency.count());
        let text = format!(
            "p50 {}  p99 {}  max {}  ({} samples)",
            human_micros(latency.percentile(50.0)),
            human_micros(latency.percentile(99.0)),
            human_micros(latency.max()),
            group_digits(latency.count()),
        );
        self.row(label, text);
    }

    /// Delivery correctness; any non-zero counter makes the run INVALID.
    pub fn correctness(&mut self, correctness: &Correctness) {
        let c = correctness;
        self.field("expected", c.expected);
        self.field("received", c.received);
        self.field("lost", c.lost);
        self.field("duplicated", c.duplicated);
        self.field("out_of_order", c.out_of_order);
        self.field("foreign", c.foreign);
        self.row(
            "deliveries",
            format!(
                "{} of {} expected",
                group_digits(c.received),
                group_digits(c.expected)
            ),
        );
        self.row(
            "lost / dup / out-of-order",
            format!(
                "{} / {} / {}  (foreign {})",
                c.lost, c.duplicated, c.out_of_order, c.foreign
            ),
        );
        if !c.is_valid() {
            self.problem(format!(
                "delivery errors: {} lost, {} duplicated, {} out of order, {} foreign",
                c.lost, c.duplicated, c.out_of_order, c.foreign
            ));
        }
    }

    /// The generator's own CPU use over the measured phase. Near-saturation earns a note: the
    /// figures may then describe the generator rather than the server.
    pub fn cpu(&mut self, cpu: &CpuUse) {
        let cores = cpu.cores();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.field(
            "generator_cpu_user_s",
            round(cpu.times.user.as_secs_f64(), 3),
        );
        self.field(
            "generator_cpu_sys_s",
            round(cpu.times.system.as_secs_f64(), 3),
        );
        self.field("generator_cpu_cores", round(cores, 3));
        self.row(
            "generator CPU",
            format!(
                "{:.2} cores of {cpus} ({:.2} s user + {:.2} s sys over {:.2} s)",
                cores,
                cpu.times.user.as_secs_f64(),
                cpu.times.system.as_secs_f64(),
                cpu.wall.as_secs_f64()
            ),
        );
        if cores > 0.8 * cpus as f64 {
            self.note(format!(
                "the generator used {cores:.2} of {cpus} cores: it may be the bottleneck (the server shares this machine)"
            ));
        }
    }

    /// Marks the run INVALID for `problem`.
    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// Adds a remark that does not invalidate the run.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Whether the run is valid (no problems).
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// The human table.
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
        let mut out = String::new();
        let verdict = if self.is_valid() { "VALID" } else { "INVALID" };
        let _ = writeln!(out, "sc-bench {}: {verdict}", self.scenario);
        for row in &self.rows {
            let _ = writeln!(out, "  {:<width$}  {}", row.label, row.text);
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        for problem in &self.problems {
            let _ = writeln!(out, "  INVALID: {problem}");
        }
        out
    }

    /// The JSON line: every field, plus `valid`, `problems` and `notes`.
    pub fn json(&self) -> String {
        let mut fields = self.fields.clone();
        fields.insert("valid".to_owned(), Value::from(self.is_valid()));
        fields.insert("problems".to_owned(), Value::from(self.problems.clone()));
        fields.insert("notes".to_owned(), Value::from(self.notes.clone()));
        Value::Object(fields).to_string()
    }
}

/// A progress bar on stderr, hidden when `enabled` is false or stderr is not a terminal.
pub fn progress(len: u64, message: &str, enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{msg:>14} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_owned());
    bar
}

fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// `1234567` → `1 234 567`.
fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn human_micros(micros: u64) -> String {
    match micros {
        0..1_000 => format!("{micros} µs"),
        1_000..1_000_000 => format!("{:.2} ms", micros as f64 / 1e3),
        _ => format!("{:.3} s", micros as f64 / 1e6),
    }
}

fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_helpers() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_234_567), "1 234 567");
        assert_eq!(human_micros(850), "850 µs");
        assert_eq!(human_micros(1_500), "1.50 ms");
        assert_eq!(human_micros(2_500_000), "2.500 s");
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
    }

    #[test]
    fn invalid_runs_show_in_table_and_json() {
        let mut r = Report::new("fanout");
        r.count("subscribers", "subscribers", 1000);
        r.correctness(&Correctness {
            expected: 10,
            received: 9,
            lost: 1,
            ..Correctness::default()
        });
        assert!(!r.is_valid());
        assert!(r.table().starts_with("sc-bench fanout: INVALID"));
        let json: Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(json["valid"], false);
        assert_eq!(json["lost"], 1);
        assert_eq!(json["subscribers"], 1000);

        let mut ok = Report::new("rpc");
        let mut l = Latency::new();
        l.record(1500);
        ok.latency("latency", "latency", &l);
        ok.rate("requests_per_s", "requests", 12345.67, "req");
        let json: Value = serde_json::from_str(&ok.json()).unwrap();
        assert_eq!(json["valid"], true);
        assert_eq!(json["latency_p50_ms"], 1.5);
        assert_eq!(json["requests_per_s"], 12345.7);
        assert!(ok.table().contains("12 346 req/s"));
    }
}
