//! The change journal (format: `docs/journal-format.md`): records, the hash chain, the
//! portable JSON Lines form, the archive, and replay.

pub mod archive;
pub mod file;
pub mod ops;
pub mod record;
