//! Captured `tracing` output, for tests that assert what a component logged.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// Log lines written on this thread while the returned guard lives, at `DEBUG` and above. With a
/// current-thread runtime the tasks under test run on this thread too; a multi-threaded test
/// installs a global subscriber with [`Logs`] as its writer instead.
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, Logs) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), logs)
}

/// Captured log output: a `std::io::Write` a subscriber writes to, shared by its clones.
#[derive(Clone, Debug, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// The number of lines at `level` (e.g. `WARN`) containing `text`.
    pub fn count(&self, level: &str, text: &str) -> usize {
        self.text()
            .lines()
            .filter(|l| l.contains(level) && l.contains(text))
            .count()
    }

    /// Everything captured.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }

    /// Waits until the captured text contains `needle`; fails the test (printing the log) after
    /// `limit`.
    pub async fn wait_for(&self, needle: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.text().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {needle:?}; log:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
