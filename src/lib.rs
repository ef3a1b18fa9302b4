//! scim-bridge: a SCIM 2.0 service provider that keeps identities pushed by Entra ID,
//! Okta and other identity providers in an embedded state store, and (in later layers)
//! converges them into LDAP directories and SQLite tables.
//!
//! Layers, from the edge inwards (see `docs/architecture.md`): `http` (routes, auth,
//! decoding, rendering) → `engine` (orders every write) → `store` (SQLite state); `scim`
//! is the pure protocol (schemas, filters, paths, PATCH) and `config` the validated
//! configuration. `slapd` is no part of the daemon: a throw-away OpenLDAP server for the
//! tests and `scim-bridge bench --ldap`; nor is `fuzzing`: the checks the fuzz targets
//! (`fuzz/`) and the corpus replay in the test suite share.
#![forbid(unsafe_code)]

pub mod config;
pub mod dirsrv;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod journal;
pub mod logline;
pub mod mapping;
pub mod metrics;
pub mod passwords;
pub mod samba;
pub mod scim;
pub mod slapd;
pub mod store;
pub mod suggest;
pub mod target;
pub mod wal;
