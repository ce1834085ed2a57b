//! The accept loop of [`crate::Server::serve`] (and of its TLS and graceful-stop variants):
//! HTTP/1 connections with a header-read timeout, an idle timeout and a cap until they upgrade
//! to WebSocket (a TLS handshake counts as part of the header wait), and an accept loop that
//! survives running out of file descriptors. [`crate::Server::serve_io`] serves one connection of
//! any transport the same way.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sc_protocol::Backoff;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::tls::TlsSettings;

/// Limits for connections that did not upgrade (yet).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest wait for a request's complete header (from the moment the server waits for one).
    pub(crate) header_timeout: Duration,
    /// Longest time without a byte read or written while no request is being handled.
    pub(crate) idle_timeout: Duration,
    /// Most such connections at once; more are closed as soon as accepted.
    pub(crate) max_pending: usize,
}

/// At most one log line per this interval about accept failures or the connection cap.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Pause after failed accepts in a row: 10 ms, doubling, at most 1 s.
const ACCEPT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(10), 2.0, Duration::from_secs(1));

/// Accepts connections on `listener` (over TLS with `tls`) and serves `app` on them until
/// `shutdown` completes; then stops accepting, asks open HTTP connections to finish the request
/// they are handling and waits for them (upgraded WebSockets are not waited for).
///
/// Stopping loses no connection a client already made: the ones the kernel queued on the
/// listener are accepted before it closes (closing would reset them; with `SO_REUSEPORT` the
/// other listeners of the port take the new ones), and a connection whose request has not
/// arrived yet gets [`STOP_GRACE`] to send it.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<TlsSettings>>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let pending = Arc::new(Semaphore::new(limits.max_pending));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut failures = Throttled::default();
    let mut refusals = Throttled::default();
    let mut failed_accepts: u32 = 0;
    let mut start = |tcp: tokio::net::TcpStream, remote: SocketAddr| {
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            if let Some(suppressed) = refusals.ready() {
                tracing::warn!(
                    limit = limits.max_pending,
                    suppressed,
                    "closing a new connection: maxPendingConnections connections are waiting \
                     for their HTTP request or upgrade"
                );
            }
            return;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        let stopping = stopping.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(tcp, remote, app, limits, stopping).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => serve_connection(tls, remote, app, limits, stopping).await,
                        Ok(Err(error)) => tracing::debug!(%remote, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    };
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of file descriptors (EMFILE, ENFILE) or memory: open connections keep
                // being served by their own tasks; accepting resumes once the pause is over.
                let pause = ACCEPT_BACKOFF.delay(failed_accepts);
                failed_accepts = failed_accepts.saturating_add(1);
                if let Some(suppressed) = failures.ready() {
                    tracing::error!(
                        %error,
                        suppressed,
                        retry_ms = pause.as_millis() as u64,
                        "cannot accept connections ({}); open connections are still served, \
                         retrying",
                        cause(&error)
                    );
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        if failed_accepts != 0 {
            tracing::info!("accepting connections again");
            failed_accepts = 0;
            failures = Throttled::default();
        }
        start(tcp, remote);
    }
    // Take what the kernel already queued (the reactor may not have reported it yet), straight
    // from the socket, then close it.
    let listener = listener.into_std()?;
    loop {
        match listener.accept() {
            Ok((tcp, remote)) => {
                let tcp = tcp
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(tcp));
                if let Ok(tcp) = tcp {
                    start(tcp, remote);
                }
            }
            Err(error) if is_connection_error(&error) => {}
            Err(_) => break, // WouldBlock: the queue is empty
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every permit back: no connection is still before its upgrade.
    let all = u32::try_from(limits.max_pending).unwrap_or(u32::MAX);
    let _ = pending.acquire_many(all).await;
    Ok(())
}

/// How long a connection accepted before the server stopped may take to send its request (it
/// is closed once that request is answered, or after this without one).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection that did not come from our accept loop ([`crate::Server::serve_io`]):
/// the same HTTP limits, and no stop signal.
pub(crate) async fn serve_io<S>(stream: S, remote: SocketAddr, app: Router, limits: Limits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (_never_stops, stopping) = tokio::sync::watch::channel(false);
    serve_connection(stream, remote, app, limits, stopping).await;
}

/// Serves one connection until it closes, times out, or upgrades (the WebSocket then lives in a
/// task of its own, see [`crate::http`]).
async fn serve_connection<S>(
    stream: S,
    remote: SocketAddr,
    app: Router,
    limits: Limits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(Watch {
        watching: AtomicBool::new(true),
        ..Watch::default()
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        watch: Some(watch.clone()),
    });
    let busy = watch.clone();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        let app = app.clone();
        let busy = busy.clone();
        async move {
            busy.in_flight.fetch_add(1, Ordering::Relaxed);
            let response = app.oneshot(request).await;
            busy.in_flight.fetch_sub(1, Ordering::Relaxed);
            busy.touch();
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    // The server stops: once the request has arrived (or STOP_GRACE passed without one), answer
    // the request in flight and close. Closing at once would drop a request still on its way.
    let mut asked_to_stop = *stopping.borrow();
    let mut stop_by = asked_to_stop.then(|| Instant::now() + STOP_GRACE);
    loop {
        if let Some(by) = stop_by
            && (watch.received.load(Ordering::Relaxed) || Instant::now() >= by)
        {
            stop_by = None;
            connection.as_mut().graceful_shutdown();
        }
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "HTTP connection ended");
                }
                break;
            }
            () = watch.idle(limits.idle_timeout) => {
                tracing::debug!(%remote, "closing an idle HTTP connection");
                break;
            }
            _ = stopping.changed(), if !asked_to_stop => {
                asked_to_stop = true;
                stop_by = Some(Instant::now() + STOP_GRACE);
            }
            () = tokio::time::sleep(Duration::from_millis(10)), if stop_by.is_some() => {}
        }
    }
    // Upgraded (or gone): the WebSocket layer has its own timeouts.
    watch.watching.store(false, Ordering::Relaxed);
}

/// Activity of one connection before its upgrade.
#[derive(Default)]
struct Watch {
    /// Milliseconds since [`epoch`] of the last byte read or written.
    last_activity: AtomicU64,
    /// Requests being handled.
    in_flight: AtomicUsize,
    /// Set once the client sent its first bytes.
    received: AtomicBool,
    /// Cleared once the connection upgraded: the WebSocket does not pay for the watch.
    watching: AtomicBool,
}

impl Watch {
    fn touch(&self) {
        self.last_activity.store(now_ms(), Ordering::Relaxed);
    }

    /// Resolves once the connection has been idle for `timeout` with no request being handled.
    async fn idle(&self, timeout: Duration) {
        self.touch();
        loop {
            let last = self.last_activity.load(Ordering::Relaxed);
            let deadline = epoch() + Duration::from_millis(last) + timeout;
            tokio::time::sleep_until(deadline).await;
            let quiet = self.last_activity.load(Ordering::Relaxed) == last;
            if quiet && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            if quiet {
                self.touch();
            }
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// A TCP stream that records when bytes last moved, until the connection upgrades.
struct Watched<S> {
    inner: S,
    /// Let go at the first read or write after the upgrade (the WebSocket keeps this stream for
    /// its whole life, and needs no watch).
    watch: Option<Arc<Watch>>,
}

impl<S> Watched<S> {
    fn moved(&mut self, moved: bool) {
        let Some(watch) = &self.watch else {
            return;
        };
        if !watch.watching.load(Ordering::Relaxed) {
            self.watch = None;
        } else if moved {
            watch.touch();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        if moved
            && let Some(watch) = &self.watch
            && !watch.received.load(Ordering::Relaxed)
        {
            watch.received.store(true, Ordering::Relaxed);
        }
        self.moved(moved);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.moved(matches!(result, Poll::Ready(Ok(n)) if n > 0));
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.moved(matches!(result, Poll::Ready(Ok(n)) if n > 0));
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Errors about one connection that went away before it was accepted (keep accepting).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// A short explanation of an accept error for the log.
fn cause(error: &io::Error) -> &'static str {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux numbering; the message names it too).
    match error.raw_os_error() {
        Some(24) => "the process is out of file descriptors: raise `ulimit -n`",
        Some(23) => "the system is out of file descriptors",
        Some(12 | 105) => "out of memory for sockets",
        _ => "accept failed",
    }
}

/// Lets one event through per [`LOG_INTERVAL`] and counts the others.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// `Some(events suppressed since the last one)` if this one may be logged.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + LOG_INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}
