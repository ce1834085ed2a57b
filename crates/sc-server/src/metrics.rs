//! Counters for operations: what `/metrics` and the admin page show about one server.
//!
//! Plain relaxed atomics, each hot one on its own cache line. The hot paths touch them once per
//! inbound frame, once per writer flush (a whole batch), once per I/O call for bytes and once
//! per publication reaching this server: never once per subscriber. Rendering (Prometheus text,
//! JSON) lives with whoever serves them; here there is only the
//! [`MetricsSnapshot`] that [`Server::metrics`](crate::Server::metrics) returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds (seconds) of the handler-duration histogram buckets.
pub const RPC_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.1, 1.0, 10.0,
];

/// Close codes that get their own `code` label; every other code counts as `other`, so the label
/// stays bounded whatever clients send.
pub const KNOWN_CLOSE_CODES: [u16; 17] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 4000, 4001, 4002, 4003, 4005, 4008,
    4100,
];

/// Middleware points, the values of the `point` label (counted by the
/// [`Middleware`](crate::Middleware) itself).
pub const MIDDLEWARE_POINTS: [&str; 8] = [
    "handshakeWS",
    "handshakeSC",
    "transmit",
    "invoke",
    "subscribe",
    "publishIn",
    "authenticate",
    "inboundRaw",
];

/// One atomic alone on its cache line: counters bumped by different cores do not share a line.
#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

/// The live counters of one [`Server`](crate::Server).
#[derive(Default)]
pub struct ServerMetrics {
    /// Set when counting is turned off ([`Server::disable_metrics`](crate::Server::disable_metrics)):
    /// the hot-path counters then cost one relaxed load.
    off: std::sync::atomic::AtomicBool,
    frames_in: Padded,
    bytes_in: Padded,
    frames_out: Padded,
    bytes_out: Padded,
    handshakes: AtomicU64,
    disconnects: [AtomicU64; KNOWN_CLOSE_CODES.len() + 1],
    rpc_buckets: [AtomicU64; RPC_BUCKETS.len() + 1],
    rpc_sum_nanos: AtomicU64,
}

impl ServerMetrics {
    #[inline]
    fn on(&self) -> bool {
        !self.off.load(Ordering::Relaxed)
    }

    pub(crate) fn disable(&self) {
        self.off.store(true, Ordering::Relaxed);
    }

    pub(crate) fn frame_in(&self) {
        if !self.on() {
            return;
        }
        self.frames_in.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn frames_out(&self, frames: u64) {
        if frames > 0 && self.on() {
            self.frames_out.0.fetch_add(frames, Ordering::Relaxed);
        }
    }

    pub(crate) fn bytes_in(&self, bytes: usize) {
        if !self.on() {
            return;
        }
        self.bytes_in.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn bytes_out(&self, bytes: usize) {
        if !self.on() {
            return;
        }
        self.bytes_out.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn handshake(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn disconnect(&self, code: u16) {
        let slot = KNOWN_CLOSE_CODES
            .iter()
            .position(|c| *c == code)
            .unwrap_or(KNOWN_CLOSE_CODES.len());
        self.disconnects[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handler_time(&self, elapsed: Duration) {
        if !self.on() {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        let slot = RPC_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(RPC_BUCKETS.len());
        self.rpc_buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.rpc_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counters now (gauges are filled in by [`Server::metrics`](crate::Server::metrics)).
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let disconnects = KNOWN_CLOSE_CODES
            .iter()
            .map(|c| c.to_string())
            .chain(std::iter::once("other".to_owned()))
            .zip(self.disconnects.iter().map(load))
            .collect();
        MetricsSnapshot {
            handshakes: load(&self.handshakes),
            frames_in: load(&self.frames_in.0),
            frames_out: load(&self.frames_out.0),
            bytes_in: load(&self.bytes_in.0),
            bytes_out: load(&self.bytes_out.0),
            disconnects,
            rpc_buckets: self.rpc_buckets.iter().map(load).collect(),
            rpc_sum_seconds: load(&self.rpc_sum_nanos) as f64 / 1e9,
            ..MetricsSnapshot::default()
        }
    }
}

/// One server's numbers at one moment: counters since start and current gauges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSnapshot {
    /// Open sockets (handshake done).
    pub connections: u64,
    /// Successful handshakes.
    pub handshakes: u64,
    /// Closed sockets by close code (`other` for codes outside [`KNOWN_CLOSE_CODES`]).
    pub disconnects: Vec<(String, u64)>,
    /// WebSocket messages received.
    pub frames_in: u64,
    /// WebSocket messages sent.
    pub frames_out: u64,
    /// Bytes read from clients (after TLS, WebSocket framing included).
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Publications that reached this server's channel table.
    pub publications: u64,
    /// Socket subscriptions (a socket on a channel counts once).
    pub subscriptions: u64,
    /// Channels with at least one subscriber here.
    pub channels: u64,
    /// Middleware blocks by point ([`MIDDLEWARE_POINTS`]).
    pub rejections: Vec<(String, u64)>,
    /// Handler durations per bucket of [`RPC_BUCKETS`] (not cumulative; one extra for `+Inf`).
    pub rpc_buckets: Vec<u64>,
    /// Total handler time.
    pub rpc_sum_seconds: f64,
    /// Whether the broker engine is connected.
    pub engine_up: bool,
    /// Each engine node's state (Redis Cluster / Sentinel nodes, NATS servers; empty for the
    /// in-process engine).
    #[serde(default)]
    pub engine_nodes: Vec<sc_broker::NodeHealth>,
    /// Channels with the most subscribers here, most first (at most 10).
    pub top_channels: Vec<(String, u64)>,
}

impl MetricsSnapshot {
    /// Sockets closed as slow consumers (code 4100).
    pub fn slow_consumer_disconnects(&self) -> u64 {
        self.disconnects
            .iter()
            .find(|(code, _)| code == "4100")
            .map_or(0, |(_, n)| *n)
    }
}

/// An I/O stream that counts the bytes it moves into [`ServerMetrics`] (one add per read or
/// write call, which the writer already batches).
pub(crate) struct Counted<S> {
    inner: S,
    metrics: std::sync::Arc<ServerMetrics>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, metrics: std::sync::Arc<ServerMetrics>) -> Counted<S> {
        Counted { inner, metrics }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.metrics.bytes_in(read);
        }
        poll
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = poll {
            self.metrics.bytes_out(n);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = poll {
            self.metrics.bytes_out(n);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded_and_buckets_fill() {
        let m = ServerMetrics::default();
        m.disconnect(4100);
        m.disconnect(4999);
        m.disconnect(12345);
        m.handler_time(Duration::from_micros(30));
        m.handler_time(Duration::from_secs(60));
        let s = m.snapshot();
        assert_eq!(s.slow_consumer_disconnects(), 1);
        assert_eq!(s.disconnects.len(), KNOWN_CLOSE_CODES.len() + 1);
        assert_eq!(s.disconnects.last().unwrap(), &("other".to_owned(), 2));
        assert_eq!(s.rpc_buckets[0], 1);
        assert_eq!(*s.rpc_buckets.last().unwrap(), 1);
        assert!(s.rpc_sum_seconds > 59.0);
    }
}
