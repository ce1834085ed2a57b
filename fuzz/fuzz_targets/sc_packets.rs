//! `cargo fuzz run -s none sc_packets` (see `scripts/fuzz`); the entry point is [`sc_fuzz::sc_packets`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sc_fuzz::sc_packets(data));
