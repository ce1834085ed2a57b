//! Drain: stop taking new clients and close the open ones spread over a duration, so they
//! reconnect spread out over the other workers and instances instead of all at once.

use std::time::Duration;

use sc_server::Server;

/// How often the drain closes its next group of sockets (a pacing step, not a poll).
const TICK: Duration = Duration::from_millis(20);

/// Marks `server` as draining (`/health/ready` → 503 at once), closes its sockets with 1001
/// evenly over `spread`, then waits until they are gone or `timeout` passed since the start.
/// Returns how many sockets it closed.
pub async fn drain(server: &Server, spread: Duration, timeout: Duration) -> usize {
    server.start_draining();
    let start = tokio::time::Instant::now();
    let mut sockets = server.sockets();
    // Random order: no client is always the first to go.
    fastrand::shuffle(&mut sockets);
    let total = sockets.len();
    tracing::info!(
        sockets = total,
        spread_ms = spread.as_millis() as u64,
        "draining"
    );
    let mut closed = 0;
    while closed < total {
        let elapsed = start.elapsed();
        // Close so that by `elapsed` a share `elapsed / spread` of the sockets is gone.
        let due = if elapsed >= spread || spread.is_zero() {
            total
        } else {
            (((total as u128) * elapsed.as_nanos()) / spread.as_nanos()) as usize + 1
        };
        for socket in &sockets[closed..due.min(total)] {
            server.going_away(socket, "Worker is shutting down");
        }
        closed = due.min(total);
        if closed < total {
            tokio::time::sleep(TICK).await;
        }
    }
    // Wakes when the last socket leaves (no polling).
    server
        .wait_idle(timeout.max(spread).saturating_sub(start.elapsed()))
        .await;
    tracing::info!(
        closed = total,
        remaining = server.clients_count(),
        took_ms = start.elapsed().as_millis() as u64,
        "drained"
    );
    total
}
