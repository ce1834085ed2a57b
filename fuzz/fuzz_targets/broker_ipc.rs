//! `cargo fuzz run -s none broker_ipc` (see `scripts/fuzz`); the entry point is [`sc_fuzz::broker_ipc`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sc_fuzz::broker_ipc(data));
