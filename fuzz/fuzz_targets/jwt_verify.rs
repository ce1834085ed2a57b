//! `cargo fuzz run -s none jwt_verify` (see `scripts/fuzz`); the entry point is [`sc_fuzz::jwt_verify`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sc_fuzz::jwt_verify(data));
