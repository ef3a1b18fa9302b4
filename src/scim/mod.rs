//! Pure SCIM 2.0 protocol: schemas, attribute paths, filters, PATCH, list queries and
//! errors. No IO lives here, so everything is unit-tested and fuzzed alone.

pub mod error;
pub mod eval;
pub mod filter;
pub mod password;
pub mod patch;
pub mod path;
pub mod resource;
pub mod schema;
