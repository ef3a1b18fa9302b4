//! The change journal (format: `docs/journal-format.md`): records, the hash chain, the
//! portable JSON Lines form, the archive, and replay.

pub mod archive;
pub mod file;
pub mod ops;
pub mod record;

/// The one timestamp format of resources (`meta.*`) and journal records: RFC 3339, UTC,
/// milliseconds, `Z`. Fixed width, so timestamps also compare correctly as text (the
/// journal's `--since` and retention by age rely on that).
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}
