#![no_main]
//! See `scim_bridge::fuzzing::mapping_expr` for the input format and the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| scim_bridge::fuzzing::mapping_expr(data));
