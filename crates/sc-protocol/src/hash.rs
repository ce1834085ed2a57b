//! `sc-hasher`: which broker owns a channel or key (docs/protocol.md §14.3), bit-exact.

/// Maps `key` onto one of `n` brokers exactly as sc-hasher 1.0.1 does for string keys
/// (Java-style 31-multiplier hash over UTF-16 code units, wrapping 32-bit arithmetic).
///
/// ```
/// assert_eq!(sc_protocol::hash::hash_key("news", 2), 1);
/// assert_eq!(sc_protocol::hash::hash_key("chan-a", 2), 0);
/// ```
pub fn hash_key(key: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    ((i64::from(string_hash(key))).unsigned_abs() % n as u64) as usize
}

/// The raw 32-bit hash of a string key.
pub fn string_hash(key: &str) -> i32 {
    key.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_shl(5)
            .wrapping_sub(h)
            .wrapping_add(i32::from(unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        let table: &[(&str, i32, [usize; 6])] = &[
            ("news", 3377875, [1, 1, 3, 0, 4, 3]),
            ("private", -314497661, [1, 2, 1, 1, 2, 13]),
            ("chan-a", -1361638234, [0, 1, 2, 4, 5, 10]),
            ("chan-b", -1361638233, [1, 0, 1, 3, 4, 9]),
            ("worker-channel", -408005196, [0, 0, 0, 1, 4, 12]),
            ("a", 97, [1, 1, 1, 2, 6, 1]),
            ("list", 3322014, [0, 0, 2, 4, 3, 14]),
            ("", 0, [0, 0, 0, 0, 0, 0]),
            ("user/123", -267638290, [0, 1, 2, 0, 3, 2]),
            ("Ünïcode", 1055301514, [0, 1, 2, 4, 1, 10]),
            ("😀emoji", -1233692477, [1, 2, 1, 2, 3, 13]),
            (
                "a-very-long-channel-name-that-overflows-int32-many-times",
                60426631,
                [1, 1, 3, 1, 6, 7],
            ),
        ];
        for (key, h, expected) in table {
            assert_eq!(string_hash(key), *h, "{key}");
            for (n, want) in [2, 3, 4, 5, 7, 16].iter().zip(expected) {
                assert_eq!(hash_key(key, *n), *want, "{key} mod {n}");
            }
        }
    }
}
