//! Engine URL handling: redacting passwords for logs and errors, and decoding escapes.
//!
//! Depends on nothing else in the crate.

/// `url` with the password of its user info replaced by `***` (for logs and errors). Every
/// `,`-separated URL of a list is redacted.
pub(crate) fn redact(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user_info = &rest[..at];
    let hidden = match user_info.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{hidden}{}", &rest[at..])
}

/// Decodes `%XX` escapes of a URL's user info (or an option's value).
#[cfg(any(feature = "nats", feature = "redis"))]
pub(crate) fn percent_decode(text: &str) -> String {
    unescape_hex(text, b'%')
}

/// Replaces every `escape` followed by two hex digits with that byte; anything else is kept.
#[cfg(any(feature = "nats", feature = "redis"))]
pub(crate) fn unescape_hex(text: &str, escape: u8) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (byte, Some(decoded)) if byte == escape => {
                out.push(decoded);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact("redis://:secret@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("redis://user:secret@h"), "redis://user:***@h");
        assert_eq!(
            redact("nats://token@h:4222,nats://u:p@g"),
            "nats://***@h:4222,nats://u:***@g"
        );
        assert_eq!(redact("redis://h:6379/0?x=a@b"), "redis://h:6379/0?x=a@b");
        assert_eq!(redact("memory://"), "memory://");
    }

    #[test]
    #[cfg(feature = "nats")]
    fn decodes_user_info() {
        assert_eq!(percent_decode("p%40ss%3Aw"), "p@ss:w");
        assert_eq!(percent_decode("plain%"), "plain%");
    }
}
