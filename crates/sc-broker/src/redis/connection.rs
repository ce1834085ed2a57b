//! [`RedisConnection`]: the command connection of a Redis link (one server or a Redis Cluster),
//! and the Lua scripts it runs (re-sent with `EVAL` to a cluster node that lost them).

use std::collections::HashMap;
use std::sync::Arc;

use ::redis::aio::ConnectionLike;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// The command connection of a Redis link: one server, or a Redis Cluster. Both run any command
/// (`ConnectionLike`); the cluster routes each by its key's slot.
#[derive(Clone)]
pub enum RedisConnection {
    /// One server (directly, or the master Sentinel names).
    Single(::redis::aio::MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Single(_) => "RedisConnection::Single",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

/// The text of every Lua script we run, by SHA1 (see [`script`]).
static SCRIPTS: std::sync::LazyLock<parking_lot::Mutex<HashMap<String, Arc<str>>>> =
    std::sync::LazyLock::new(Default::default);

/// A Lua script, remembered so that a Redis Cluster node that lost its script cache (a
/// restarted master) gets the script with `EVAL`, routed by the script's key like `EVALSHA`.
/// (The `redis` crate's fallback, `SCRIPT LOAD`, goes to every node and fails while any node is
/// unreachable, which left a channel's publications failing after a master restart.)
pub(super) fn script(text: &str) -> ::redis::Script {
    let script = ::redis::Script::new(text);
    SCRIPTS
        .lock()
        .entry(script.get_hash().to_owned())
        .or_insert_with(|| Arc::from(text));
    script
}

/// `EVAL <text> …` for an `EVALSHA <sha> …` command whose script we know.
fn eval_instead(cmd: &Cmd) -> Option<Cmd> {
    let mut args = cmd.args_iter().map(|arg| match arg {
        ::redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    if !args.next()??.eq_ignore_ascii_case(b"EVALSHA") {
        return None;
    }
    let sha = std::str::from_utf8(args.next()??).ok()?;
    let text = SCRIPTS.lock().get(sha)?.clone();
    let mut eval = ::redis::cmd("EVAL");
    eval.arg(&*text);
    for arg in args {
        eval.arg(arg?);
    }
    Some(eval)
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_command(cmd),
            RedisConnection::Cluster(conn) => Box::pin(async move {
                match conn.req_packed_command(cmd).await {
                    Err(error)
                        if error.kind()
                            == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
                    {
                        match eval_instead(cmd) {
                            Some(eval) => conn.req_packed_command(&eval).await,
                            None => Err(error),
                        }
                    }
                    other => other,
                }
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(conn) => conn.get_db(),
            RedisConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

impl RedisConnection {
    /// Runs `cmd` on one node (`host`, `port`) of a cluster, or on the server.
    pub(super) async fn query_on<T: FromRedisValue>(
        &mut self,
        node: Option<&(String, u16)>,
        cmd: Cmd,
    ) -> RedisResult<T> {
        match (self, node) {
            (RedisConnection::Cluster(conn), Some((host, port))) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let value = conn.route_command(cmd, routing).await?;
                T::from_redis_value(value).map_err(Into::into)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}
