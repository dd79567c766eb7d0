//! Fuzz target: the hub's jobs answer parser never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| steward_fuzz_targets::hub_jobs(data));
