//! Socket ids in the reference format.

use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A new socket id: URL-safe base64 of 12 random bytes and the low 3 bytes of a per-process
/// sequence number, 20 characters (the socketcluster-server format).
pub(crate) fn new_socket_id() -> Box<str> {
    let mut bytes = [0u8; 15];
    fastrand::fill(&mut bytes[..12]);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    bytes[12..].copy_from_slice(&n[1..]);
    URL_SAFE_NO_PAD.encode(bytes).into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_url_safe_chars_and_unique() {
        let a = new_socket_id();
        let b = new_socket_id();
        assert_eq!(a.len(), 20);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
    }
}
