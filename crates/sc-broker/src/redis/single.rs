//! One Redis server, directly or behind Sentinel: the two connections of a session (pub/sub and
//! commands) and the supervisor task that reopens them, re-subscribes every held channel and,
//! behind sentinels, follows the master (see [`link`](super::link) for the failure behaviour).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ::redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use ::redis::{AsyncConnectionConfig, Client};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use parking_lot::RwLock;
use sc_protocol::Publication;
use tokio::sync::mpsc;

use super::connection::RedisConnection;
use super::failure::{OpenFailure, is_connection_error};
use super::link::{CommandCounts, Ctl, RedisLink, Shared};
use super::options::{ENGINE, RedisOptions};
use super::sentinel::ClientSource;
use crate::BrokerError;
use crate::error::EngineError;
use crate::support::reconnect_backoff;

/// Opens a link to one server (`redis://`, `rediss://`) or to the master behind sentinels
/// (`redis-sentinel://`), and starts its supervisor.
pub(super) async fn connect(
    url: &str,
    options: RedisOptions,
    target: String,
) -> Result<Arc<RedisLink>, EngineError> {
    let source = ClientSource::from_url(url, &target)?;
    let session = open_checked(&source, &options, 1, &[])
        .await
        .map_err(|failure| failure.into_engine_error(&target))?;
    let shared = Arc::new(Shared {
        options,
        target,
        connected: AtomicBool::new(true),
        command: RwLock::new(Some((
            session.generation,
            RedisConnection::Single(session.command.clone()),
        ))),
        sink: RwLock::new(None),
        cluster: false,
        health: RwLock::new(source.health(true)),
        commands: CommandCounts::default(),
    });
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    tokio::spawn(supervise(shared.clone(), source, ctl_rx, session));
    Ok(Arc::new(RedisLink { shared, ctl }))
}

/// Both connections of one connected period.
struct Session {
    generation: u64,
    sink: PubSubSink,
    stream: PubSubStream,
    command: MultiplexedConnection,
}

/// Asks `source` for the server, opens a session on it and, behind sentinels, checks that the
/// server is a master.
async fn open_checked(
    source: &ClientSource,
    options: &RedisOptions,
    generation: u64,
    channels: &[String],
) -> Result<Session, OpenFailure> {
    let client = source.client(options).await?;
    let session = open_session(&client, options, generation, channels).await?;
    if source.is_sentinel() {
        super::sentinel::check_master(&session.command, options).await?;
    }
    Ok(session)
}

/// Opens both connections and subscribes `channels` on the pub/sub one.
async fn open_session(
    client: &Client,
    options: &RedisOptions,
    generation: u64,
    channels: &[String],
) -> Result<Session, OpenFailure> {
    let pubsub =
        match tokio::time::timeout(options.connect_timeout, client.get_async_pubsub()).await {
            Ok(result) => result.map_err(OpenFailure::Redis)?,
            Err(_) => return Err(OpenFailure::TimedOut("pub/sub connection")),
        };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.op_timeout));
    let command = match tokio::time::timeout(
        options.connect_timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(result) => result.map_err(OpenFailure::Redis)?,
        Err(_) => return Err(OpenFailure::TimedOut("command connection")),
    };
    // A PING proves the server accepts our commands (a server with a password answers NOAUTH
    // only now, not when the connection opens).
    let mut probe = command.clone();
    match tokio::time::timeout(
        options.op_timeout,
        ::redis::cmd("PING").query_async::<String>(&mut probe),
    )
    .await
    {
        Ok(result) => result.map_err(OpenFailure::Redis)?,
        Err(_) => return Err(OpenFailure::TimedOut("ping")),
    };
    let (sink, stream) = pubsub.split();
    // One SUBSCRIBE per channel, all in flight at once (the pub/sub connection pipelines them and
    // answers in order).
    let subscribes = channels.iter().map(|channel| {
        let mut sink = sink.clone();
        let key = format!("{}ch:{channel}", options.prefix);
        async move { sink.subscribe(key).await }
    });
    match tokio::time::timeout(options.op_timeout, try_join_all(subscribes)).await {
        Ok(result) => result.map_err(OpenFailure::Redis)?,
        Err(_) => return Err(OpenFailure::TimedOut("re-subscribing")),
    };
    Ok(Session {
        generation,
        sink,
        stream,
        command,
    })
}

/// The supervisor: runs sessions, and between them reconnects with backoff. Ends when every
/// handle of the link is dropped.
async fn supervise(
    shared: Arc<Shared>,
    source: ClientSource,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    first: Session,
) {
    let mut held: HashSet<String> = HashSet::new();
    let mut session = Some(first);
    let mut generation = session.as_ref().map_or(0, |s| s.generation);
    let mut outage: Option<(Instant, u32)> = None; // since when, failed attempts
    loop {
        let current = match session.take() {
            Some(current) => current,
            None => {
                let (since, attempts) = outage.get_or_insert((Instant::now(), 0));
                let delay = reconnect_backoff(shared.options.max_reconnect_delay).delay(*attempts);
                *attempts += 1;
                if serve_while_down(&mut ctl, &mut held, tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    return;
                }
                generation += 1;
                let snapshot: Vec<String> = held.iter().cloned().collect();
                let opening = open_checked(&source, &shared.options, generation, &snapshot);
                let Some(result) = serve_while_down(&mut ctl, &mut held, opening).await else {
                    return;
                };
                match result {
                    Ok(mut opened) => {
                        // Channels unsubscribed while we were connecting: drop them again.
                        for channel in snapshot.iter().filter(|c| !held.contains(*c)) {
                            let key = format!("{}ch:{channel}", shared.options.prefix);
                            let _ = tokio::time::timeout(
                                shared.options.op_timeout,
                                opened.sink.unsubscribe(key),
                            )
                            .await;
                        }
                        tracing::info!(
                            engine = ENGINE,
                            target = %shared.target,
                            downtime_ms = since.elapsed().as_millis() as u64,
                            channels = held.len(),
                            "engine connection restored; channel subscriptions restored"
                        );
                        opened
                    }
                    Err(failure) => {
                        tracing::debug!(engine = ENGINE, target = %shared.target, attempt = *attempts, error = %failure.reason(), "reconnect attempt failed");
                        continue;
                    }
                }
            }
        };
        *shared.command.write() = Some((
            current.generation,
            RedisConnection::Single(current.command.clone()),
        ));
        shared.connected.store(true, Ordering::Release);
        *shared.health.write() = source.health(true);

        let lost = run_session(&shared, &source, &mut ctl, &mut held, current).await;
        shared.connected.store(false, Ordering::Release);
        *shared.command.write() = None;
        *shared.health.write() = source.health(false);
        let Some(reason) = lost else {
            return; // every handle is gone
        };
        tracing::warn!(
            engine = ENGINE,
            target = %shared.target,
            error = %reason,
            channels = held.len(),
            "engine connection lost; publish and subscribe fail with Unavailable until it is back, reconnecting"
        );
        outage = Some((Instant::now(), 0));
    }
}

/// Serves requests while the link is down, until `until` completes; returns its output, or
/// `None` if every handle of the link was dropped meanwhile.
async fn serve_while_down<F: Future>(
    ctl: &mut mpsc::UnboundedReceiver<Ctl>,
    held: &mut HashSet<String>,
    until: F,
) -> Option<F::Output> {
    tokio::pin!(until);
    loop {
        tokio::select! {
            output = &mut until => return Some(output),
            request = ctl.recv() => match request {
                None => return None,
                Some(Ctl::Subscribe(_, reply)) => {
                    let _ = reply.send(Err(BrokerError::Unavailable("redis is not connected".to_owned())));
                }
                Some(Ctl::Unsubscribe(channel, reply)) => {
                    held.remove(&channel);
                    let _ = reply.send(Ok(()));
                }
                Some(Ctl::Broken(_)) => {}
            },
        }
    }
}

/// Runs one connected period: delivers messages, serves requests, pings. Returns why the
/// session ended (`None`: every handle was dropped).
async fn run_session(
    shared: &Shared,
    source: &ClientSource,
    ctl: &mut mpsc::UnboundedReceiver<Ctl>,
    held: &mut HashSet<String>,
    session: Session,
) -> Option<String> {
    let Session {
        generation,
        mut sink,
        mut stream,
        command,
    } = session;
    let prefix = format!("{}ch:", shared.options.prefix);
    let op_timeout = shared.options.op_timeout;
    let mut ping = tokio::time::interval(shared.options.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Some("pub/sub connection closed".to_owned());
                };
                let Some(channel) = message.get_channel_name().strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if !held.contains(channel) {
                    continue; // unsubscribed meanwhile: deliver nothing after unsubscribe returned
                }
                match Publication::from_frame(Bytes::copy_from_slice(message.get_payload_bytes())) {
                    Ok(publication) => {
                        let sink = shared.sink.read().clone();
                        if let Some(sink) = sink {
                            sink.deliver(publication);
                        }
                    }
                    Err(_) => tracing::debug!(engine = ENGINE, channel, "ignored a message that is not a #publish frame"),
                }
            }
            request = ctl.recv() => match request {
                None => return None,
                Some(Ctl::Subscribe(channel, reply)) => {
                    if held.contains(&channel) {
                        let _ = reply.send(Ok(()));
                        continue;
                    }
                    held.insert(channel.clone());
                    let outcome = tokio::time::timeout(op_timeout, sink.subscribe(format!("{prefix}{channel}"))).await;
                    match outcome {
                        Ok(Ok(())) => {
                            let _ = reply.send(Ok(()));
                        }
                        Ok(Err(error)) => {
                            held.remove(&channel);
                            let broken = is_connection_error(&error);
                            let _ = reply.send(Err(if broken {
                                BrokerError::Unavailable(format!("redis: {error}"))
                            } else {
                                BrokerError::Engine(format!("redis subscribe: {error}"))
                            }));
                            if broken {
                                return Some(error.to_string());
                            }
                        }
                        Err(_) => {
                            held.remove(&channel);
                            let _ = reply.send(Err(BrokerError::Timeout { action: "subscribe" }));
                            return Some("subscribe timed out".to_owned());
                        }
                    }
                }
                Some(Ctl::Unsubscribe(channel, reply)) => {
                    // Delivery stops now (the held set filters); Redis is told next.
                    let was_held = held.remove(&channel);
                    let _ = reply.send(Ok(()));
                    if was_held {
                        match tokio::time::timeout(op_timeout, sink.unsubscribe(format!("{prefix}{channel}"))).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) if is_connection_error(&error) => return Some(error.to_string()),
                            Ok(Err(error)) => tracing::debug!(engine = ENGINE, %channel, %error, "unsubscribe refused"),
                            Err(_) => return Some("unsubscribe timed out".to_owned()),
                        }
                    }
                }
                Some(Ctl::Broken(failed)) => {
                    if failed == generation {
                        return Some("command connection failed".to_owned());
                    }
                }
            },
            _ = ping.tick() => {
                match tokio::time::timeout(op_timeout, sink.ping::<::redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Some(format!("ping failed: {error}")),
                    Err(_) => return Some("ping timed out".to_owned()),
                }
                if source.is_sentinel()
                    && let Err(failure) = super::sentinel::check_master(&command, &shared.options).await
                {
                    return Some(failure.reason());
                }
            }
        }
    }
}
