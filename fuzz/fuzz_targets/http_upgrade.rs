//! `cargo fuzz run -s none http_upgrade` (see `scripts/fuzz`); the entry point is [`sc_fuzz::http_upgrade`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sc_fuzz::http_upgrade(data));
