#![no_main]
//! See `scim_bridge::fuzzing::journal` for the input format and the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| scim_bridge::fuzzing::journal(data));
