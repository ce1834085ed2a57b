//! `cargo fuzz run -s none min_bin` (see `scripts/fuzz`); the entry point is [`sc_fuzz::min_bin`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sc_fuzz::min_bin(data));
