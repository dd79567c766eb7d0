//! Fuzz target: the allowed_signers parser never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| steward_fuzz_targets::allowed_signers(data));
