//! Where the Redis engine connects: a fixed server, or the master that Redis Sentinel names.
//!
//! `redis-sentinel://[user:pass@]s1:26379,s2:26379/<master name>[/db]` (`rediss-sentinel://`
//! for TLS to the sentinels and the master). Every (re)connect asks the sentinels in turn
//! (`SENTINEL get-master-addr-by-name`) and connects to the master they name with the URL's
//! credentials and database; the session is then checked with `ROLE`, and so is every ping, so
//! after a failover the link lands on the promoted master, and a demoted one is left.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, TlsCertificates, Value};

use super::failure::OpenFailure;
use super::options::RedisOptions;
use crate::error::EngineError;
use crate::health::{EngineHealth, NodeHealth};

/// How the supervisor finds the server to (re)connect to.
pub(super) enum ClientSource {
    /// One server, always the same.
    Fixed {
        client: Client,
        /// `host:port` (no credentials), for health.
        addr: String,
    },
    /// The master named by the sentinels.
    Sentinel(Sentinels),
}

/// A sentinel URL, parsed.
pub(super) struct Sentinels {
    /// `redis://host:port` (or `rediss://`) of every sentinel.
    sentinels: Vec<(String, String)>,
    /// The master's name.
    master: String,
    /// `redis` or `rediss`.
    scheme: &'static str,
    /// `user:pass@`, as written in the URL (may be empty).
    user_info: String,
    /// `/db`, or empty.
    db: String,
    /// `tls_ca` / `tls_cert` / `tls_key` of the URL, for the sentinels and the master.
    certs: Option<TlsCertificates>,
    /// The master last found (`host:port`), for health.
    last: parking_lot::Mutex<Option<String>>,
    /// Which sentinels answered the last lookup (one per sentinel), for health.
    answered: parking_lot::Mutex<Vec<bool>>,
}

impl ClientSource {
    /// Parses a `redis://`, `rediss://`, `redis-sentinel://` or `rediss-sentinel://` URL
    /// (`target` is the URL with its password redacted, for errors), with its TLS options (see
    /// [`tls`](super::tls)).
    pub(super) fn from_url(url: &str, target: &str) -> Result<ClientSource, EngineError> {
        let (url, certs) = super::tls::split_tls_options(url, target)?;
        let url = url.as_str();
        let invalid = |reason: String| EngineError::InvalidUrl {
            url: target.to_owned(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected <scheme>://…".to_owned()))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "redis-sentinel" && scheme != "rediss-sentinel" {
            let client =
                super::tls::client(url, certs.as_ref()).map_err(|e| invalid(e.to_string()))?;
            let addr = client.get_connection_info().addr().to_string();
            return Ok(ClientSource::Fixed { client, addr });
        }
        let (user_info, rest) = match rest.rfind('@') {
            Some(at) => (format!("{}@", &rest[..at]), &rest[at + 1..]),
            None => (String::new(), rest),
        };
        let (hosts, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("expected …/<master name> after the sentinels".to_owned()))?;
        let (master, db) = match path.split_once('/') {
            Some((master, db)) => (master, db),
            None => (path, ""),
        };
        if master.is_empty() {
            return Err(invalid("the master name is empty".to_owned()));
        }
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(invalid(format!("the database {db:?} is not a number")));
        }
        let plain = if scheme == "rediss-sentinel" {
            "rediss"
        } else {
            "redis"
        };
        let sentinels = hosts
            .split(',')
            .map(|host| {
                if host.is_empty() {
                    return Err(invalid("an empty sentinel address".to_owned()));
                }
                let host = if host.contains(':') {
                    host.to_owned()
                } else {
                    format!("{host}:26379")
                };
                Ok((format!("{plain}://{host}"), host))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClientSource::Sentinel(Sentinels {
            sentinels,
            master: master.to_owned(),
            scheme: plain,
            user_info,
            db: if db.is_empty() {
                String::new()
            } else {
                format!("/{db}")
            },
            certs,
            last: parking_lot::Mutex::new(None),
            answered: parking_lot::Mutex::new(Vec::new()),
        }))
    }

    /// Whether the server is found through sentinels.
    pub(super) fn is_sentinel(&self) -> bool {
        matches!(self, ClientSource::Sentinel(_))
    }

    /// A client for the server to connect to now.
    pub(super) async fn client(&self, options: &RedisOptions) -> Result<Client, OpenFailure> {
        match self {
            ClientSource::Fixed { client, .. } => Ok(client.clone()),
            ClientSource::Sentinel(sentinels) => sentinels.master_client(options).await,
        }
    }

    /// The nodes, the server marked up or down.
    pub(super) fn health(&self, up: bool) -> EngineHealth {
        match self {
            ClientSource::Fixed { addr, .. } => EngineHealth {
                nodes: vec![NodeHealth::new(addr.clone(), "master", up)],
            },
            ClientSource::Sentinel(sentinels) => {
                let mut nodes: Vec<NodeHealth> = Vec::new();
                if let Some(master) = sentinels.last.lock().clone() {
                    nodes.push(NodeHealth::new(master, "master", up));
                }
                let answered = sentinels.answered.lock().clone();
                nodes.extend(
                    sentinels
                        .sentinels
                        .iter()
                        .enumerate()
                        .map(|(i, (_, host))| {
                            // Up: answered the last lookup (asked in turn: those after the one that
                            // named the master were not asked, and count as up).
                            NodeHealth::new(
                                host.clone(),
                                "sentinel",
                                answered.get(i) != Some(&false),
                            )
                        }),
                );
                EngineHealth { nodes }
            }
        }
    }
}

impl Sentinels {
    /// Asks each sentinel in turn for the master's address; the first answer wins.
    async fn master_client(&self, options: &RedisOptions) -> Result<Client, OpenFailure> {
        let mut reasons = Vec::new();
        let mut answered = Vec::new();
        for (url, host) in &self.sentinels {
            let answer = self.ask(url, options).await;
            answered.push(answer.is_ok());
            *self.answered.lock() = answered.clone();
            match answer {
                Ok(Some((ip, port))) => {
                    let host_port = if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    };
                    *self.last.lock() = Some(host_port.clone());
                    let master =
                        format!("{}://{}{host_port}{}", self.scheme, self.user_info, self.db);
                    return super::tls::client(&master, self.certs.as_ref())
                        .map_err(OpenFailure::Redis);
                }
                Ok(None) => reasons.push(format!("{host}: unknown master {:?}", self.master)),
                Err(reason) => reasons.push(format!("{host}: {reason}")),
            }
        }
        Err(OpenFailure::NoMaster(format!(
            "no sentinel named master {:?} ({})",
            self.master,
            reasons.join("; ")
        )))
    }

    async fn ask(
        &self,
        url: &str,
        options: &RedisOptions,
    ) -> Result<Option<(String, u16)>, String> {
        let client = super::tls::client(url, self.certs.as_ref()).map_err(|e| e.to_string())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.op_timeout));
        let question = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            ::redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.master)
                .query_async::<Option<(String, u16)>>(&mut conn)
                .await
        };
        match tokio::time::timeout(options.connect_timeout + options.op_timeout, question).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }
}

/// Fails unless the server of `command` is a master (`ROLE`).
pub(super) async fn check_master(
    command: &MultiplexedConnection,
    options: &RedisOptions,
) -> Result<(), OpenFailure> {
    let mut conn = command.clone();
    let role = match tokio::time::timeout(
        options.op_timeout.min(Duration::from_secs(2)),
        ::redis::cmd("ROLE").query_async::<Vec<Value>>(&mut conn),
    )
    .await
    {
        Ok(result) => result.map_err(OpenFailure::Redis)?,
        Err(_) => return Err(OpenFailure::TimedOut("role check")),
    };
    match role.first() {
        Some(Value::BulkString(kind)) if kind.as_slice() == b"master" => Ok(()),
        Some(Value::SimpleString(kind)) if kind == "master" => Ok(()),
        _ => Err(OpenFailure::NoMaster(
            "the server the sentinels named is not a master (any more)".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinels(url: &str) -> Sentinels {
        match ClientSource::from_url(url, "x").ok().unwrap() {
            ClientSource::Sentinel(s) => s,
            ClientSource::Fixed { .. } => panic!("not a sentinel URL"),
        }
    }

    #[test]
    fn parses_sentinel_urls() {
        let s = sentinels("redis-sentinel://u:p@a:1,b,c:3/mymaster/2");
        let hosts: Vec<&str> = s.sentinels.iter().map(|(_, h)| h.as_str()).collect();
        assert_eq!(hosts, ["a:1", "b:26379", "c:3"]);
        assert_eq!(s.sentinels[0].0, "redis://a:1");
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.user_info, "u:p@");
        assert_eq!(s.db, "/2");
        let tls = sentinels("rediss-sentinel://a:1/m");
        assert_eq!(tls.sentinels[0].0, "rediss://a:1");
        assert_eq!(tls.user_info, "");
        for bad in [
            "redis-sentinel://a:1",
            "redis-sentinel://a:1/",
            "redis-sentinel://a:1,/m",
            "redis-sentinel://a:1/m/x",
        ] {
            assert!(
                matches!(
                    ClientSource::from_url(bad, "x"),
                    Err(EngineError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
