//! The checks behind the fuzz targets (`fuzz/`, cargo-fuzz): one function per target that
//! takes the fuzzer's bytes, feeds them to one parser or engine and asserts the properties
//! that must hold for every input. A panic is a finding.
//!
//! The targets in `fuzz/fuzz_targets/` call these functions and nothing else, and the test
//! suite replays every file of `fuzz/corpus/<target>/` through the same functions on
//! stable Rust (`tests/it/fuzz_corpus.rs`), so the fuzzer and the replay cannot drift
//! apart. Nothing here does IO; it is part of the library only so that both can reach
//! crate-private entry points without making them public.
//!
//! Inputs that are not UTF-8 are ignored by the text targets (the HTTP layer refuses
//! them before any parser sees them); `http_body` takes raw bytes. Targets that need a
//! resource kind read it from the first line (`Group`, else `User`), so corpus files stay
//! readable text: see each function for its format.

mod http;
mod journal;
mod mapping;
mod scim;

pub use http::http_body;
pub use journal::journal;
pub use mapping::mapping_expr;
pub use scim::{filter, patch, path};

use crate::scim::schema::ResourceKind;

/// A check: the fuzzer's bytes in, a panic when a property does not hold.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (the file `fuzz/fuzz_targets/<name>.rs` and the corpus
/// directory `fuzz/corpus/<name>/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("filter", filter),
    ("path", path),
    ("patch", patch),
    ("mapping_expr", mapping_expr),
    ("journal", journal),
    ("http_body", http_body),
];

/// Splits `<kind>\n<rest>`: `Group` (any case, surrounding spaces ignored) is a group,
/// any other first line a user.
fn kind_line(text: &str) -> (ResourceKind, &str) {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let kind = if first.trim().eq_ignore_ascii_case("group") {
        ResourceKind::Group
    } else {
        ResourceKind::User
    };
    (kind, rest)
}
