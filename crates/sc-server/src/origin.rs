//! The `origins` check made before the upgrade (docs/protocol.md §1.3).

/// Whether a request with this `Origin` header may connect, given the `origins` option
/// (`*:*`, or entries `host:port`, `host:*`, `*:port` in any separated list).
///
/// ```text
/// assert!(origin_allowed("*:*", None));
/// assert!(origin_allowed("allowed.com:443", Some("https://allowed.com")));
/// assert!(!origin_allowed("allowed.com:443", Some("http://evil.com")));
/// ```
pub(crate) fn origin_allowed(origins: &str, origin: Option<&str>) -> bool {
    if origins.contains("*:*") {
        return true;
    }
    let Some(origin) = origin.filter(|o| *o != "null") else {
        return false;
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port))
            if !port.contains(']')
                && port.chars().all(|c| c.is_ascii_digit())
                && !port.is_empty() =>
        {
            (host, port.to_owned())
        }
        _ => (
            authority,
            if scheme.eq_ignore_ascii_case("https") {
                "443".to_owned()
            } else {
                "80".to_owned()
            },
        ),
    };
    let host = host.to_ascii_lowercase();
    [
        format!("{host}:{port}"),
        format!("{host}:*"),
        format!("*:{port}"),
    ]
    .iter()
    .any(|entry| origins.contains(entry.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_rules() {
        assert!(origin_allowed("*:*", None));
        assert!(origin_allowed("*:*", Some("http://evil.com")));
        assert!(!origin_allowed("allowed.com:443", None));
        assert!(!origin_allowed("allowed.com:443", Some("null")));
        assert!(origin_allowed(
            "allowed.com:443",
            Some("https://allowed.com")
        ));
        assert!(!origin_allowed(
            "allowed.com:443",
            Some("http://allowed.com")
        ));
        assert!(!origin_allowed("allowed.com:443", Some("http://evil.com")));
        assert!(origin_allowed(
            "a.com:*, b.com:8080",
            Some("http://b.com:8080")
        ));
        assert!(origin_allowed(
            "a.com:*, b.com:8080",
            Some("http://a.com:1234/")
        ));
        assert!(origin_allowed("*:3000", Some("http://localhost:3000")));
    }
}
