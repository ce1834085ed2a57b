//! `cargo fuzz run -s none inflate` (see `scripts/fuzz`); the entry point is [`sc_fuzz::inflate`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sc_fuzz::inflate(data));
