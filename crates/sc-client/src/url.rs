//! Turning the user's URL and `query` option into the WebSocket request URI (docs/protocol.md §1).

use http::Uri;

use crate::error::ClientError;

/// The default SocketCluster path, used when the URL has none.
pub const DEFAULT_PATH: &str = "/socketcluster/";

/// Parses `url` (`ws://host[:port][/path][?query]`), applies the default path when there is
/// none, and appends `query` form-encoded (as `URLSearchParams` does).
pub(crate) fn build_uri(url: &str, query: &[(String, String)]) -> Result<Uri, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = url.trim();
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| invalid("expected ws://host:port/path"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "ws" => {}
        _ => {
            return Err(ClientError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        }
    }
    // Drop any fragment: it never travels.
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    if authority.is_empty() {
        return Err(invalid("missing host"));
    }
    let mut target = if tail.starts_with('/') {
        tail.to_owned()
    } else {
        format!("{DEFAULT_PATH}{tail}")
    };
    if !query.is_empty() {
        let encoded = query
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        if !target.contains('?') {
            target.push('?');
        } else if !(target.ends_with('?') || target.ends_with('&')) {
            target.push('&');
        }
        target.push_str(&encoded);
    }
    finish(url, scheme, authority, &target)
}

fn finish(url: &str, scheme: &str, authority: &str, target: &str) -> Result<Uri, ClientError> {
    let full = format!("{}://{authority}{target}", scheme.to_ascii_lowercase());
    let uri: Uri = full
        .parse()
        .map_err(|e: http::uri::InvalidUri| ClientError::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let port = match host_port.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .strip_prefix(':'),
        None => host_port.split_once(':').map(|(_, port)| port),
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(invalid("the port is not a number between 0 and 65535"));
    }
    Ok(uri)
}

/// `application/x-www-form-urlencoded`, the `URLSearchParams` way: `*-._` and alphanumerics
/// stay, space becomes `+`, everything else is percent-encoded.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_path_and_query() {
        assert_eq!(
            build_uri("ws://127.0.0.1:8000", &[]).unwrap().to_string(),
            "ws://127.0.0.1:8000/socketcluster/"
        );
        assert_eq!(
            build_uri(
                "ws://localhost:8000/socketcluster/",
                &q(&[("foo", "bar"), ("arr", "x"), ("arr", "y")])
            )
            .unwrap()
            .to_string(),
            "ws://localhost:8000/socketcluster/?foo=bar&arr=x&arr=y"
        );
        assert_eq!(
            build_uri("WS://h/custom?a=1#frag", &q(&[("b", "x y/é")]))
                .unwrap()
                .to_string(),
            "ws://h/custom?a=1&b=x+y%2F%C3%A9"
        );
        assert_eq!(
            build_uri("ws://h:1?t=1", &[]).unwrap().to_string(),
            "ws://h:1/socketcluster/?t=1"
        );
    }

    #[test]
    fn bad_urls_are_typed_errors() {
        for url in [
            "",
            "localhost:8000",
            "ws://",
            "ws:///path",
            "ws://host:notaport/",
            "ws://host:70000/",
            "ws://ho st/",
        ] {
            assert!(
                matches!(build_uri(url, &[]), Err(ClientError::InvalidUrl { .. })),
                "{url:?}"
            );
        }
        for url in ["wss://host/", "http://host/", "ftp://host/"] {
            assert!(
                matches!(
                    build_uri(url, &[]),
                    Err(ClientError::UnsupportedScheme { .. })
                ),
                "{url:?}"
            );
        }
    }
}
