//! `cargo fuzz run -s none ws_frames` (see `scripts/fuzz`); the entry point is [`sc_fuzz::ws_frames`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sc_fuzz::ws_frames(data));
