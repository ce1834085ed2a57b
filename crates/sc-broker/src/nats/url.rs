//! Reading a NATS engine URL: a server list, credentials, TLS files and a credentials file.
//!
//! ```text
//! nats://[user:pass@]host[:port][,nats://host2[:port]|,host2[:port]…][?option=value&…]
//! tls://…                      (TLS to every server; `nats://` servers get TLS too if they ask)
//! ```
//!
//! - Servers are separated by `,`; a server written without a scheme takes the first one's
//!   (`nats://n1:4222,n2:4222` is `nats://n1:4222,nats://n2:4222`, as NATS tools read it). The
//!   port defaults to 4222. The client also learns the cluster's other servers from the server
//!   it connects to, so one reachable server of a cluster is enough to find the rest.
//! - `user:pass@` (user and password) or `token@` (a token), `%XX`-escaped; the first server
//!   that carries them gives them for all.
//! - Options after `?` (values `%XX`-escaped) apply to every server:
//!   - `creds=/path/user.creds`: a NATS credentials file (user JWT and NKey seed, as `nsc`
//!     writes it);
//!   - `nkey=/path/user.nk`: a file holding an NKey seed (`SU…`);
//!   - `tls_ca=/path/ca.pem`: trust this CA (PEM) in addition to the system's;
//!   - `tls_cert=/path/cert.pem&tls_key=/path/key.pem`: a client certificate (mutual TLS);
//!   - `tls=true`: require TLS from every server (what `tls://` says);
//!   - `replicas=N`: replicas of the JetStream streams we create (default: chosen from the
//!     cluster, see [`crate::nats::nodes`]).
//!
//! Anything else after `?` is refused, so a mistyped option is not silently ignored.

use std::path::PathBuf;

use async_nats::ServerAddr;

/// Who we are to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// `user:pass@`.
    UserPassword(String, String),
    /// `token@`.
    Token(String),
}

/// A parsed NATS engine URL (see the [module](self) documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NatsUrl {
    /// The servers, without credentials.
    pub(crate) servers: Vec<ServerAddr>,
    /// From the user info of the first server that has some.
    pub(crate) credentials: Option<Credentials>,
    /// `creds=`.
    pub(crate) creds_file: Option<PathBuf>,
    /// `nkey=`.
    pub(crate) nkey_file: Option<PathBuf>,
    /// `tls_ca=`.
    pub(crate) tls_ca: Option<PathBuf>,
    /// `tls_cert=` and `tls_key=`.
    pub(crate) tls_client: Option<(PathBuf, PathBuf)>,
    /// `tls://` on every server, or `tls=true`.
    pub(crate) require_tls: bool,
    /// `replicas=`.
    pub(crate) replicas: Option<usize>,
}

impl NatsUrl {
    /// Parses `url`; the error says why (it never contains a password).
    pub(crate) fn parse(url: &str) -> Result<NatsUrl, String> {
        let (list, query) = match url.split_once('?') {
            Some((list, query)) => (list, Some(query)),
            None => (url, None),
        };
        let mut parsed = NatsUrl {
            servers: Vec::new(),
            credentials: None,
            creds_file: None,
            nkey_file: None,
            tls_ca: None,
            tls_client: None,
            require_tls: false,
            replicas: None,
        };
        let mut default_scheme = None;
        for (index, item) in list.split(',').enumerate() {
            let item = item.trim();
            if item.is_empty() {
                return Err(format!("server {} of the list is empty", index + 1));
            }
            let (scheme, rest) = match item.split_once("://") {
                Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
                None => (default_scheme.clone().unwrap_or("nats".to_owned()), item),
            };
            if scheme != "nats" && scheme != "tls" {
                return Err(format!(
                    "server {} has the scheme {scheme:?} (expected nats:// or tls://)",
                    index + 1
                ));
            }
            default_scheme.get_or_insert_with(|| scheme.clone());
            let rest = rest.trim_end_matches('/');
            if rest.contains(['/', '#']) {
                return Err(format!(
                    "server {} has a path; a NATS server is host[:port]",
                    index + 1
                ));
            }
            let (user_info, host) = match rest.rsplit_once('@') {
                Some((user_info, host)) => (Some(user_info), host),
                None => (None, rest),
            };
            if host.is_empty() {
                return Err(format!("server {} has no host", index + 1));
            }
            if let Some(user_info) = user_info
                && parsed.credentials.is_none()
            {
                parsed.credentials = Some(match user_info.split_once(':') {
                    Some((user, password)) => Credentials::UserPassword(
                        crate::url::percent_decode(user),
                        crate::url::percent_decode(password),
                    ),
                    None => Credentials::Token(crate::url::percent_decode(user_info)),
                });
            }
            let addr: ServerAddr = format!("{scheme}://{host}")
                .parse()
                .map_err(|e: std::io::Error| format!("server {}: {e}", index + 1))?;
            parsed.servers.push(addr);
        }
        parsed.require_tls = parsed.servers.iter().all(ServerAddr::tls_required);
        let (mut tls_cert, mut tls_key) = (None, None);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = crate::url::percent_decode(value);
            if value.is_empty() {
                return Err(format!("option {name:?} has no value"));
            }
            let path = || Some(PathBuf::from(&value));
            match name {
                "creds" => parsed.creds_file = path(),
                "nkey" => parsed.nkey_file = path(),
                "tls_ca" => parsed.tls_ca = path(),
                "tls_cert" => tls_cert = path(),
                "tls_key" => tls_key = path(),
                "replicas" => match value.parse::<usize>() {
                    Ok(n @ 1..=5) => parsed.replicas = Some(n),
                    _ => return Err(format!("option replicas={value:?} is not 1 to 5")),
                },
                "tls" => {
                    parsed.require_tls = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => parsed.require_tls,
                        _ => return Err(format!("option tls={value:?} is not true or false")),
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown option {name:?} (known: creds, nkey, replicas, tls, tls_ca, tls_cert, tls_key)"
                    ));
                }
            }
        }
        parsed.tls_client = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("tls_cert and tls_key go together".to_owned()),
        };
        let auth_kinds = usize::from(parsed.credentials.is_some())
            + usize::from(parsed.creds_file.is_some())
            + usize::from(parsed.nkey_file.is_some());
        if auth_kinds > 1 {
            return Err(
                "give one of user:password@ (or token@), creds= and nkey=, not several".to_owned(),
            );
        }
        Ok(parsed)
    }

    /// The servers as `host:port` (for health reports and logs).
    pub(crate) fn addrs(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("{}:{}", s.host(), s.port()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &NatsUrl) -> Vec<String> {
        url.addrs()
    }

    #[test]
    fn both_list_forms_name_the_same_servers() {
        let full = NatsUrl::parse("nats://n1:4222,nats://n2:4223,nats://n3").unwrap();
        let short = NatsUrl::parse("nats://n1:4222,n2:4223,n3").unwrap();
        assert_eq!(full, short);
        assert_eq!(hosts(&full), ["n1:4222", "n2:4223", "n3:4222"]);
        assert!(!full.require_tls);
        assert_eq!(full.credentials, None);
    }

    #[test]
    fn tls_scheme_carries_to_bare_servers() {
        let url = NatsUrl::parse("tls://n1:4222,n2").unwrap();
        assert!(url.require_tls);
        assert!(url.servers.iter().all(ServerAddr::tls_required));
        let mixed = NatsUrl::parse("tls://n1,nats://n2").unwrap();
        assert!(!mixed.require_tls, "only every server tls:// requires TLS");
        let forced =
            NatsUrl::parse("nats://n1?tls=true&tls_ca=/etc/ca%20x.pem&replicas=3").unwrap();
        assert!(forced.require_tls);
        assert_eq!(forced.replicas, Some(3));
        assert_eq!(forced.tls_ca, Some(PathBuf::from("/etc/ca x.pem")));
    }

    #[test]
    fn credentials_from_user_info_and_files() {
        let url = NatsUrl::parse("nats://bob:p%40ss%3Aw@n1,nats://n2").unwrap();
        assert_eq!(
            url.credentials,
            Some(Credentials::UserPassword("bob".into(), "p@ss:w".into()))
        );
        assert_eq!(hosts(&url), ["n1:4222", "n2:4222"]);
        assert!(url.servers.iter().all(|s| s.password().is_none()));
        let token = NatsUrl::parse("nats://s3cret@n1").unwrap();
        assert_eq!(token.credentials, Some(Credentials::Token("s3cret".into())));
        let creds = NatsUrl::parse("nats://n1,n2?creds=/run/u.creds").unwrap();
        assert_eq!(creds.creds_file, Some(PathBuf::from("/run/u.creds")));
        let mtls = NatsUrl::parse("tls://n1?tls_cert=/c.pem&tls_key=/k.pem").unwrap();
        assert_eq!(
            mtls.tls_client,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        for (url, expected) in [
            ("nats://n1,,n2", "server 2 of the list is empty"),
            ("nats://n1,redis://n2", "scheme \"redis\""),
            ("nats://u:pw@n1/db", "has a path"),
            ("nats://u:pw@", "no host"),
            ("nats://n1?cred=/x", "unknown option \"cred\""),
            ("nats://n1?creds=", "has no value"),
            ("nats://n1?tls_cert=/c.pem", "go together"),
            ("nats://u:pw@n1?creds=/x", "not several"),
            ("nats://n1?tls=maybe", "not true or false"),
            ("nats://n1?replicas=0", "not 1 to 5"),
            ("nats://u:pw@n1:notaport", "server 1"),
        ] {
            let error = NatsUrl::parse(url).expect_err(url);
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("pw"), "{url}: {error}");
        }
    }
}
