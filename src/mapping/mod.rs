//! The attribute mapping: how a SCIM resource becomes a target record. Pure (no IO), so it
//! is unit-tested and fuzzed alone.

pub mod expr;
