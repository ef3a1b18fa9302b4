//! Integration tests: one binary, one module per area. Each test starts the real
//! `scim-bridge` daemon through `harness::Daemon` and talks HTTP to it.

mod entra;
mod harness;
