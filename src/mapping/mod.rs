//! The attribute mapping: how a SCIM resource becomes a target record. Pure (no IO), so it
//! is unit-tested and fuzzed alone.

pub mod dn;
pub mod expr;
pub mod model;
pub mod source;

#[cfg(test)]
mod tests;
