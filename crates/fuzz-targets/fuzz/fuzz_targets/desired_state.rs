//! Fuzz target: the desired-state parser never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| steward_fuzz_targets::desired_state(data));
