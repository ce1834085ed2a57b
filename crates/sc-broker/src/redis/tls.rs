//! TLS options of a Redis engine URL: a private CA and a client certificate.
//!
//! ```text
//! rediss://[user:pass@]host[:port][/db]?tls_ca=/path/ca.pem[&tls_cert=/path/c.pem&tls_key=/path/k.pem]
//! rediss-sentinel://…/<master>?tls_ca=…      rediss-cluster://h1:p1,h2:p2?tls_ca=…
//! ```
//!
//! - `tls_ca=/path/ca.pem`: verify the servers' certificates against the CA(s) in this PEM file
//!   **instead of** the system's roots (what the `redis` crate does with a root certificate; a
//!   private Redis is usually signed by a private CA, as with `redis-cli --cacert`).
//! - `tls_cert=/path/cert.pem&tls_key=/path/key.pem`: a client certificate (for servers with
//!   `tls-auth-clients yes`), together or not at all.
//!
//! Values are `%XX`-escaped. The options need a TLS scheme (`rediss…`); an unknown option whose
//! name starts with `tls`, a missing value or an unreadable file is an
//! [`EngineError::InvalidUrl`] naming the option and the file. Other options are left to the
//! `redis` crate as before (e.g. `protocol=resp3`). The files are read once, at start-up.

use ::redis::{ClientTlsConfig, TlsCertificates};

use crate::error::EngineError;

/// `url` without our TLS options, and the certificates they name (`None`: no option given).
/// `target` is the URL with its password redacted, for errors.
pub(super) fn split_tls_options(
    url: &str,
    target: &str,
) -> Result<(String, Option<TlsCertificates>), EngineError> {
    let invalid = |reason: String| EngineError::InvalidUrl {
        url: target.to_owned(),
        reason,
    };
    let (base, fragment) = match url.find('#') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let Some((base, query)) = base.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let (mut ca, mut cert, mut key) = (None, None, None);
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "tls_ca" => &mut ca,
            "tls_cert" => &mut cert,
            "tls_key" => &mut key,
            _ if name.starts_with("tls") => {
                return Err(invalid(format!(
                    "unknown option {name:?} (known TLS options: tls_ca, tls_cert, tls_key)"
                )));
            }
            _ => {
                kept.push(pair);
                continue;
            }
        };
        let value = crate::url::percent_decode(value);
        if value.is_empty() {
            return Err(invalid(format!("option {name:?} has no value")));
        }
        let bytes = std::fs::read(&value)
            .map_err(|e| invalid(format!("option {name}: cannot read {value:?}: {e}")))?;
        *slot = Some(bytes);
    }
    let mut rest = base.to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    rest.push_str(fragment);
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok((rest, None));
    }
    let scheme = base.split_once("://").map_or("", |(s, _)| s);
    if !scheme.to_ascii_lowercase().starts_with("rediss") {
        return Err(invalid(format!(
            "tls_ca, tls_cert and tls_key need a TLS scheme (rediss://, rediss-sentinel://, rediss-cluster://), not {scheme}://"
        )));
    }
    let client_tls = match (cert, key) {
        (Some(client_cert), Some(client_key)) => Some(ClientTlsConfig {
            client_cert,
            client_key,
        }),
        (None, None) => None,
        _ => return Err(invalid("tls_cert and tls_key go together".to_owned())),
    };
    Ok((
        rest,
        Some(TlsCertificates {
            client_tls,
            root_cert: ca,
        }),
    ))
}

/// A client for `url` (no TLS options left in it), with `certs` when given.
pub(super) fn client(
    url: &str,
    certs: Option<&TlsCertificates>,
) -> ::redis::RedisResult<::redis::Client> {
    match certs {
        Some(certs) => ::redis::Client::build_with_tls(url, certs.clone()),
        None => ::redis::Client::open(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_and_files_read() {
        let dir = std::env::temp_dir().join(format!("sc-redis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca x.pem");
        std::fs::write(&ca, b"CA").unwrap();
        let path = ca.display().to_string().replace(' ', "%20");

        let (url, certs) = split_tls_options(
            &format!("rediss://:pw@h:1/2?protocol=resp3&tls_ca={path}#insecure"),
            "t",
        )
        .unwrap();
        assert_eq!(url, "rediss://:pw@h:1/2?protocol=resp3#insecure");
        let certs = certs.unwrap();
        assert_eq!(certs.root_cert.as_deref(), Some(&b"CA"[..]));
        assert!(certs.client_tls.is_none());

        let (url, certs) = split_tls_options(
            &format!("rediss-cluster://a:1,b:2?tls_ca={path}&tls_cert={path}&tls_key={path}"),
            "t",
        )
        .unwrap();
        assert_eq!(url, "rediss-cluster://a:1,b:2");
        assert!(certs.unwrap().client_tls.is_some());

        let (url, certs) = split_tls_options("redis://h:1/0", "t").unwrap();
        assert_eq!((url.as_str(), certs.is_none()), ("redis://h:1/0", true));

        for (bad, why) in [
            (format!("redis://h?tls_ca={path}"), "need a TLS scheme"),
            (
                "rediss://h?tls_ca=/nonexistent/ca.pem".to_owned(),
                "cannot read \"/nonexistent/ca.pem\"",
            ),
            ("rediss://h?tls_ca=".to_owned(), "has no value"),
            (format!("rediss://h?tls_cert={path}"), "go together"),
            (format!("rediss://h?tls_cafile={path}"), "unknown option"),
        ] {
            match split_tls_options(&bad, "redacted") {
                Err(EngineError::InvalidUrl { url, reason }) => {
                    assert_eq!(url, "redacted");
                    assert!(reason.contains(why), "{bad}: {reason}");
                }
                other => panic!("{bad}: {:?}", other.map(|(u, _)| u)),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
