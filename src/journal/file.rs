//! The portable form of the journal: JSON Lines (`docs/journal-format.md`, "The portable
//! form"), as `journal export` writes it and `journal replay --file` / `journal verify
//! --file` read it.
//!
//! This module owns the header, the record line, the [`Writer`], the [`Reader`] and
//! [`verify`]. It treats every file as hostile: lines are read with a length limit, bytes
//! are checked for UTF-8 before parsing, and a file that ends in the middle of a line (a
//! torn tail: the export or copy was cut short) is told apart from a line damaged in the
//! middle. The chain itself is checked by [`record::ChainCheck`](super::record); opening
//! compressed archives is `super::archive`'s.

use std::io::{self, BufRead, Read, Write};
use std::iter::FusedIterator;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::error::Category;

use super::record::{ChainCheck, Members, Record, RecordHead, ZERO_HASH, is_hash};

/// `format` of every export header.
pub const FORMAT: &str = "scim-bridge-journal";
/// The newest header `version` this build reads and the one it writes.
pub const VERSION: u32 = 2;

/// The longest line read; anything longer is damage, not something to buffer. Records
/// carry one resource image each, far below this.
const MAX_LINE: u64 = 64 * 1024 * 1024;

/// What a header line is called in error details.
const HEADER: &str = "a journal header";

/// Error details quote at most this many characters of the input.
const EXCERPT_CHARS: usize = 120;

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written by this build.
    pub version: u32,
    /// The state directory's random id, telling exports of different installs apart.
    pub origin: String,
    pub first_seq: u64,
    /// `first_seq - 1` for an empty range.
    pub last_seq: u64,
    /// Hash of record `first_seq - 1`, or 64 zeros when `first_seq` is 1.
    pub prev: String,
    pub exported_at: String,
}

/// What is wrong with an export, as far as reading it goes (chain damage is reported by
/// [`verify`] in a [`FileReport`] instead).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    #[error("line {line} (byte {offset}): torn tail: the file ends in the middle of this line")]
    TornTail { line: u64, offset: u64 },
    #[error("line {line} (byte {offset}): {detail}")]
    BadLine {
        line: u64,
        offset: u64,
        detail: String,
    },
    #[error("line 1 (header): {detail}")]
    BadHeader { detail: String },
    #[error(
        "header version {found} is newer than this build understands (up to {supported}); \
         use a newer scim-bridge"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("the file is empty: no header line")]
    Empty,
}

/// One record line as read: where it is, and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// 1-based line number; the header is line 1.
    pub line: u64,
    /// Byte offset of the start of the line.
    pub offset: u64,
    pub hash: String,
    pub record: Record,
}

/// A record line whose record is certainly in canonical form (see
/// [`RecordHead::from_canonical`]): kept as its text, without building the record. Its
/// text is exactly what was hashed if the file is intact, so the chain check hashes it
/// as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEntry {
    pub line: u64,
    pub offset: u64,
    pub hash: String,
    /// The record's canonical text, as it stands in the line.
    pub text: String,
    pub head: RecordHead,
    /// The members of the image, as spans of `text`, when the image is an object.
    pub image: Option<Members>,
}

/// A record line as [`Reader::next_read`] gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordRead {
    /// The usual case: the line is exactly the line this program writes for a record.
    Text(TextEntry),
    /// Anything else that is a record line, parsed (its text is then the record written
    /// again in canonical form, which the chain check hashes).
    Parsed(Entry),
}

/// The bytes of a record line around its hash and its record.
const LINE_HEAD: &str = "{\"hash\":\"";
const LINE_MIDDLE: &str = "\",\"record\":";

/// Splits a line of the exact form [`record_line`] writes into its hash and record text.
fn split_line(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(LINE_HEAD)?;
    let hash = rest.get(..64).filter(|h| is_hash(h))?;
    let record = rest
        .get(64..)?
        .strip_prefix(LINE_MIDDLE)?
        .strip_suffix('}')?;
    Some((hash, record))
}

/// A record line as it parses, before any check of its content.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine {
    hash: String,
    record: Record,
}

/// One record line: `{"hash":..,"record":{..}}`, keys sorted, the record canonical, no
/// final newline.
pub fn record_line(hash: &str, record: &Record) -> String {
    format!(
        "{{\"hash\":{},\"record\":{}}}",
        Value::String(hash.to_owned()),
        record.canonical_json()
    )
}

/// Checks what a header promises, for the writer, the reader and the archiver; the
/// error is a detail for a message.
pub(crate) fn check_header(header: &Header) -> Result<(), String> {
    if header.format != FORMAT {
        return Err(format!(
            "format {} is not {FORMAT:?}",
            excerpt(&format!("{:?}", header.format))
        ));
    }
    if header.version == 0 || header.version > VERSION {
        return Err(format!(
            "version {} is not one this build writes",
            header.version
        ));
    }
    if header.first_seq == 0 {
        return Err("first_seq 0: sequence numbers start at 1".into());
    }
    // An empty range is first_seq = last_seq + 1; anything emptier is nonsense. u64::MAX
    // is refused so that `last_seq + 1` always exists.
    if header.last_seq == u64::MAX || header.first_seq > header.last_seq + 1 {
        return Err(format!(
            "first_seq {} and last_seq {} are not a range",
            header.first_seq, header.last_seq
        ));
    }
    if !is_hash(&header.prev) {
        return Err(format!(
            "prev {} is not a hash (64 lowercase hex digits)",
            excerpt(&format!("{:?}", header.prev))
        ));
    }
    if header.first_seq == 1 && header.prev != ZERO_HASH {
        return Err("prev must be 64 zeros when first_seq is 1".into());
    }
    Ok(())
}

/// Parses and checks the header line. The format and version are looked at before the
/// members, so a newer export is refused as newer rather than as having unknown members.
fn parse_header(text: &str) -> Result<Header, FileError> {
    let bad = |detail: String| FileError::BadHeader { detail };
    let value: Value = serde_json::from_str(text).map_err(|e| bad(json_detail(&e, HEADER)))?;
    let Some(members) = value.as_object() else {
        return Err(bad("not a JSON object".into()));
    };
    match members.get("format") {
        Some(Value::String(format)) if format == FORMAT => {}
        Some(other) => {
            return Err(bad(format!(
                "format {} is not {FORMAT:?}: not a scim-bridge journal export",
                excerpt(&other.to_string())
            )));
        }
        None => return Err(bad("no 'format': not a scim-bridge journal export".into())),
    }
    match members.get("version").and_then(Value::as_u64) {
        Some(v) if v > u64::from(VERSION) => {
            return Err(FileError::UnsupportedVersion {
                found: u32::try_from(v).unwrap_or(u32::MAX),
                supported: VERSION,
            });
        }
        Some(_) => {}
        None => return Err(bad("'version' is missing or not a whole number".into())),
    }
    let header: Header = serde_json::from_value(value).map_err(|e| bad(json_detail(&e, HEADER)))?;
    check_header(&header).map_err(bad)?;
    Ok(header)
}

/// Writes an export: the header line at once, then one line per [`write`](Self::write).
/// Hand it a buffered writer; it writes whole lines.
pub struct Writer<W: Write> {
    inner: W,
}

impl<W: Write> Writer<W> {
    /// Writes the header line. A header this module would refuse to read is refused here
    /// (`InvalidInput`) rather than written.
    pub fn new(mut inner: W, header: &Header) -> io::Result<Self> {
        check_header(header).map_err(|detail| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("header: {detail}"))
        })?;
        let mut line = serde_json::to_string(header).map_err(io::Error::other)?;
        line.push('\n');
        inner.write_all(line.as_bytes())?;
        Ok(Writer { inner })
    }

    /// Writes one record line.
    pub fn write(&mut self, hash: &str, record: &Record) -> io::Result<()> {
        let mut line = record_line(hash, record);
        line.push('\n');
        self.inner.write_all(line.as_bytes())
    }

    /// Flushes and hands back the underlying writer (for the caller to fsync).
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// How one raw line ended.
enum RawLine {
    /// No bytes left.
    Eof,
    /// A whole line, terminated by `\n` (now in `buf`, without it).
    Line,
    /// Bytes, then the end of the file without a `\n`.
    Torn,
    /// More than the limit without a `\n`.
    TooLong,
}

/// Reads an export: the header on [`new`](Self::new), then the record lines as an
/// iterator of entries. The iterator stops after the first error.
///
/// The reader checks the form of each line (complete, UTF-8, a record line), not the
/// chain: that is [`verify`]'s.
pub struct Reader<R: BufRead> {
    inner: R,
    max_line: u64,
    /// The current line's bytes, without its `\n`.
    buf: Vec<u8>,
    /// Number of the last line read.
    line: u64,
    /// Byte offset of the next line.
    offset: u64,
    done: bool,
}

impl<R: BufRead> Reader<R> {
    /// Reads and checks the header: format, version (newer ones refused), a consistent
    /// range and `prev`.
    pub fn new(r: R) -> Result<(Self, Header), FileError> {
        Self::with_max_line(r, MAX_LINE)
    }

    fn with_max_line(inner: R, max_line: u64) -> Result<(Self, Header), FileError> {
        let mut reader = Reader {
            inner,
            max_line,
            buf: Vec::new(),
            line: 0,
            offset: 0,
            done: false,
        };
        let header = match reader.read_raw()? {
            RawLine::Eof => return Err(FileError::Empty),
            RawLine::TooLong => {
                return Err(FileError::BadHeader {
                    detail: format!("longer than {}", describe_size(max_line)),
                });
            }
            RawLine::Torn => return Err(FileError::TornTail { line: 1, offset: 0 }),
            RawLine::Line => {
                let text = std::str::from_utf8(&reader.buf).map_err(|e| FileError::BadHeader {
                    detail: utf8_detail(&e),
                })?;
                parse_header(text)?
            }
        };
        Ok((reader, header))
    }

    /// Reads the next line into `buf`, never more than the limit.
    fn read_raw(&mut self) -> io::Result<RawLine> {
        self.buf.clear();
        // One byte more than the limit leaves room for the '\n' of a line exactly at it.
        let limit = self.max_line.saturating_add(1);
        let n = (&mut self.inner)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(RawLine::Eof);
        }
        self.line += 1;
        self.offset += n as u64;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            Ok(RawLine::Line)
        } else if n as u64 >= limit {
            Ok(RawLine::TooLong)
        } else {
            Ok(RawLine::Torn)
        }
    }

    /// The next record line; `Ok(None)` at the end of the file or after an error.
    fn read_entry(&mut self) -> Result<Option<Entry>, FileError> {
        Ok(match self.read(false)? {
            Some(RecordRead::Parsed(entry)) => Some(entry),
            // Not asked for: reparse the text the slow way.
            Some(RecordRead::Text(e)) => Some(self.parsed(e.line, e.offset)?),
            None => None,
        })
    }

    /// The next record line, as text when it is exactly a canonical record line (no
    /// record built), else parsed; `None` at the end of the file or after an error. The
    /// same lines are accepted and refused, with the same errors, as by the iterator.
    pub fn next_read(&mut self) -> Option<Result<RecordRead, FileError>> {
        self.read(true).transpose()
    }

    fn read(&mut self, as_text: bool) -> Result<Option<RecordRead>, FileError> {
        if self.done {
            return Ok(None);
        }
        let result = self.parse_next(as_text);
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    /// The current line parsed into an entry (it is a record line).
    fn parsed(&self, line: u64, offset: u64) -> Result<Entry, FileError> {
        let RecordLine { hash, record } =
            serde_json::from_str(self.current_line()).map_err(|e| FileError::BadLine {
                line,
                offset,
                detail: json_detail(&e, "a record line"),
            })?;
        Ok(Entry {
            line,
            offset,
            hash,
            record,
        })
    }

    fn parse_next(&mut self, as_text: bool) -> Result<Option<RecordRead>, FileError> {
        let offset = self.offset;
        let raw = self.read_raw()?;
        let line = self.line;
        let bad = |detail: String| FileError::BadLine {
            line,
            offset,
            detail,
        };
        match raw {
            RawLine::Eof => return Ok(None),
            RawLine::Torn => return Err(FileError::TornTail { line, offset }),
            RawLine::TooLong => {
                return Err(bad(format!("longer than {}", describe_size(self.max_line))));
            }
            RawLine::Line => {}
        }
        let text = std::str::from_utf8(&self.buf).map_err(|e| bad(utf8_detail(&e)))?;
        if as_text
            && let Some((hash, record)) = split_line(text)
            && let Some((head, _, image)) = RecordHead::from_canonical(record)
        {
            return Ok(Some(RecordRead::Text(TextEntry {
                line,
                offset,
                hash: hash.to_owned(),
                text: record.to_owned(),
                head,
                image,
            })));
        }
        match serde_json::from_str::<RecordLine>(text) {
            Ok(RecordLine { hash, record }) => Ok(Some(RecordRead::Parsed(Entry {
                line,
                offset,
                hash,
                record,
            }))),
            // JSON that stops short on the last line is a write that was cut off after a
            // newline was already there (or a newline-terminated fragment): torn, not
            // damaged. A syntax error is damage wherever it is.
            Err(e) if e.classify() == Category::Eof && self.inner.fill_buf()?.is_empty() => {
                Err(FileError::TornTail { line, offset })
            }
            Err(e) => Err(bad(json_detail(&e, "a record line"))),
        }
    }

    /// The text of the line last returned as an entry (valid UTF-8 by then).
    fn current_line(&self) -> &str {
        std::str::from_utf8(&self.buf).unwrap_or_default()
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Entry, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_entry().transpose()
    }
}

impl<R: BufRead> FusedIterator for Reader<R> {}

/// The result of verifying an export.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    pub header: Header,
    /// Record lines read (all of them, also those after damage, up to the end of the
    /// file or the first unreadable line).
    pub records: u64,
    /// Seq of the last record of the intact prefix of the chain.
    pub last_intact: Option<u64>,
    /// Where damage starts: (line, byte offset, description).
    pub damage: Option<(u64, u64, String)>,
    /// (line, byte offset) of a torn last line, whether or not it counts as damage.
    pub torn_tail: Option<(u64, u64)>,
}

impl FileReport {
    /// Nothing is wrong (a torn tail allowed by the caller aside).
    pub fn is_intact(&self) -> bool {
        self.damage.is_none()
    }
}

/// Where the first damage was found; chain damage is described at the end, once any
/// later record has had the chance to show a gap was really a reordering.
enum Found {
    Chain { line: u64, offset: u64 },
    Other(u64, u64, String),
}

/// Verifies an export: each record line's form, the chain (hashes, `prev` links, gap-free
/// order from the header's `first_seq` and `prev`), and that the records cover exactly
/// `first_seq..=last_seq`. With `allow_torn_tail`, a torn last line is reported in
/// `torn_tail` but is not damage, and the records may end before `last_seq` because of
/// it.
///
/// `Err` only when the file cannot be read or its header is unusable; everything else is
/// in the report.
pub fn verify(r: impl BufRead, allow_torn_tail: bool) -> Result<FileReport, FileError> {
    let (mut reader, header) = Reader::new(r)?;
    let mut check = ChainCheck::new(Some(header.first_seq), &header.prev);
    let mut records = 0;
    let mut found: Option<Found> = None;
    let mut torn_tail = None;
    loop {
        let entry = match reader.read_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(FileError::TornTail { line, offset }) => {
                torn_tail = Some((line, offset));
                if !allow_torn_tail && found.is_none() {
                    found = Some(Found::Other(
                        line,
                        offset,
                        "torn tail: the file ends in the middle of this line".into(),
                    ));
                }
                break;
            }
            Err(FileError::BadLine {
                line,
                offset,
                detail,
            }) => {
                found.get_or_insert(Found::Other(line, offset, detail));
                break;
            }
            Err(e) => return Err(e),
        };
        records += 1;
        if found.is_some() {
            if check.damaged() {
                // A failed check only watches the seqs, so a gap can still turn out to be
                // a reordering; the text does not matter any more.
                let _ = check.feed(&entry.hash, "", &entry.record);
            }
            continue;
        }
        let reached_end = check
            .last_intact()
            .map_or(header.first_seq > header.last_seq, |s| s >= header.last_seq);
        if reached_end {
            found = Some(Found::Other(
                entry.line,
                entry.offset,
                format!(
                    "record {} is beyond the end of the header's range {}..{}",
                    entry.record.seq, header.first_seq, header.last_seq
                ),
            ));
            continue;
        }
        // The text that was hashed is the record as it stands in the line; a line that is
        // not exactly the canonical line is fed as a whole, which the check then reports
        // as not canonical (one byte changed to an equivalent escape is still damage).
        let canonical = entry.record.canonical_json();
        let line = reader.current_line();
        let text = if line == record_line(&entry.hash, &entry.record) {
            canonical.as_str()
        } else {
            line
        };
        if check.feed(&entry.hash, text, &entry.record).is_err() {
            found = Some(Found::Chain {
                line: entry.line,
                offset: entry.offset,
            });
        }
    }
    let damage = match found {
        Some(Found::Other(line, offset, detail)) => Some((line, offset, detail)),
        Some(Found::Chain { line, offset }) => check
            .damage()
            .map(|damage| (line, offset, damage.to_string())),
        None => {
            let next = check.last_intact().map_or(header.first_seq, |s| s + 1);
            let cut_short = torn_tail.is_some() && allow_torn_tail;
            (next <= header.last_seq && !cut_short).then(|| {
                (
                    reader.line + 1,
                    reader.offset,
                    format!(
                        "records {next}..{} are missing: the file ends before the header's \
                         last_seq {}",
                        header.last_seq, header.last_seq
                    ),
                )
            })
        }
    };
    Ok(FileReport {
        header,
        records,
        last_intact: check.last_intact(),
        damage,
        torn_tail,
    })
}

/// A serde_json error as a line-local detail: its column, without the "at line 1" that
/// means nothing inside a single line. `what` names what the line should have been.
fn json_detail(e: &serde_json::Error, what: &str) -> String {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = excerpt(full.strip_suffix(&position).unwrap_or(&full));
    match (e.classify(), e.line()) {
        // Errors from a parsed value (no position) are about its members.
        (Category::Data, 0) => format!("not {what}: {message}"),
        (Category::Data, _) => format!("not {what}: {message} (column {})", e.column()),
        _ => format!("invalid JSON at column {}: {message}", e.column()),
    }
}

fn utf8_detail(e: &std::str::Utf8Error) -> String {
    format!("not UTF-8 (at byte {} of the line)", e.valid_up_to())
}

fn describe_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// At most [`EXCERPT_CHARS`] of untrusted text, for an error message.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(EXCERPT_CHARS).collect();
    if s.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::journal::record::fixtures::{chain, chain_from};

    fn header_for(first: u64, last: u64, prev: &str) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            origin: "b8d3c1e2-5a4f-4c1e-9d77-0c7d2a1f9e31".into(),
            first_seq: first,
            last_seq: last,
            prev: prev.into(),
            exported_at: "2025-03-02T09:30:00.000Z".into(),
        }
    }

    fn export_with(header: &Header, chain: &[(String, Record)]) -> Vec<u8> {
        let mut writer = Writer::new(Vec::new(), header).expect("header is valid");
        for (hash, record) in chain {
            writer.write(hash, record).expect("writes to memory");
        }
        writer.finish().expect("flushes")
    }

    /// An export of records 1..=n.
    fn export(n: u64) -> Vec<u8> {
        let chain = chain(n);
        export_with(&header_for(1, n, ZERO_HASH), &chain)
    }

    fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn offset_of_line(bytes: &[u8], line: usize) -> u64 {
        lines(bytes)[..line - 1]
            .iter()
            .map(|l| l.len() as u64)
            .sum()
    }

    fn verified(bytes: &[u8], allow_torn_tail: bool) -> FileReport {
        verify(bytes, allow_torn_tail).expect("header is readable")
    }

    #[test]
    fn an_export_round_trips_through_writer_and_reader() {
        let chain = chain(20);
        let header = header_for(1, 20, ZERO_HASH);
        let bytes = export_with(&header, &chain);
        let (reader, read_header) = Reader::new(&bytes[..]).expect("header reads");
        assert_eq!(read_header, header);
        let entries: Vec<Entry> = reader.collect::<Result<_, _>>().expect("every line reads");
        assert_eq!(entries.len(), 20);
        for (i, (entry, (hash, record))) in entries.iter().zip(&chain).enumerate() {
            assert_eq!(entry.line, i as u64 + 2);
            assert_eq!(entry.offset, offset_of_line(&bytes, i + 2));
            assert_eq!(&entry.hash, hash);
            assert_eq!(&entry.record, record);
        }
    }

    #[test]
    fn the_header_line_is_written_in_the_documented_member_order() {
        let bytes = export(0);
        let text = String::from_utf8(bytes).expect("UTF-8");
        assert_eq!(
            text,
            format!(
                "{{\"format\":\"scim-bridge-journal\",\"version\":2,\
                 \"origin\":\"b8d3c1e2-5a4f-4c1e-9d77-0c7d2a1f9e31\",\"first_seq\":1,\
                 \"last_seq\":0,\"prev\":\"{ZERO_HASH}\",\
                 \"exported_at\":\"2025-03-02T09:30:00.000Z\"}}\n"
            )
        );
    }

    #[test]
    fn a_record_line_is_the_hash_then_the_canonical_record() {
        let (hash, record) = chain(1).remove(0);
        let line = record_line(&hash, &record);
        assert_eq!(
            line,
            format!(
                "{{\"hash\":\"{hash}\",\"record\":{}}}",
                record.canonical_json()
            )
        );
        assert!(!line.contains('\n'), "escapes keep a record on one line");
    }

    #[test]
    fn the_writer_refuses_a_header_it_would_not_read_back() {
        let mut header = header_for(1, 0, ZERO_HASH);
        header.first_seq = 3;
        let err = Writer::new(Vec::new(), &header).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn verify_accepts_an_intact_export() {
        let report = verified(&export(20), false);
        assert_eq!(report.records, 20);
        assert_eq!(report.last_intact, Some(20));
        assert_eq!(report.damage, None);
        assert_eq!(report.torn_tail, None);
        assert!(report.is_intact());
    }

    #[test]
    fn verify_accepts_an_empty_range() {
        let report = verified(&export(0), false);
        assert_eq!((report.records, report.last_intact), (0, None));
        assert!(report.is_intact());
    }

    #[test]
    fn verify_accepts_an_export_that_starts_after_archived_records() {
        let full = chain(20);
        let tail = &full[12..];
        let header = header_for(13, 20, &full[11].0);
        let report = verified(&export_with(&header, tail), false);
        assert_eq!(report.last_intact, Some(20));
        assert!(report.is_intact());
    }

    #[test]
    fn verify_reports_a_torn_tail_with_its_line_and_byte_offset() {
        let bytes = export(20);
        let start = offset_of_line(&bytes, 21); // record 20
        let cut = &bytes[..usize::try_from(start).expect("small") + 40];
        let report = verified(cut, false);
        assert_eq!(report.torn_tail, Some((21, start)));
        let (line, offset, detail) = report.damage.expect("a torn tail is damage by default");
        assert_eq!((line, offset), (21, start));
        assert!(detail.contains("torn tail"), "{detail}");
        assert_eq!(report.last_intact, Some(19));
    }

    #[test]
    fn verify_with_allow_torn_tail_accepts_the_records_before_a_torn_line() {
        let bytes = export(20);
        let start = offset_of_line(&bytes, 18); // record 17
        let cut = &bytes[..usize::try_from(start).expect("small") + 1];
        let report = verified(cut, true);
        assert_eq!(report.torn_tail, Some((18, start)));
        assert_eq!(report.damage, None, "records 1..16 are intact");
        assert_eq!(report.last_intact, Some(16));
        assert_eq!(report.records, 16);
    }

    #[test]
    fn a_missing_final_newline_is_a_torn_tail_even_when_the_last_line_parses() {
        let bytes = export(20);
        let cut = &bytes[..bytes.len() - 1];
        let start = offset_of_line(&bytes, 21);
        let (reader, _) = Reader::new(cut).expect("header reads");
        let last = reader.last().expect("some lines");
        assert!(
            matches!(last, Err(FileError::TornTail { line: 21, offset }) if offset == start),
            "{last:?}"
        );
        let report = verified(cut, true);
        assert_eq!(report.torn_tail, Some((21, start)));
        assert_eq!(report.last_intact, Some(19));
        assert!(report.is_intact());
    }

    #[test]
    fn a_last_line_of_incomplete_json_is_a_torn_tail_even_with_a_newline() {
        let mut bytes = export(5);
        bytes.extend_from_slice(b"{\"hash\":\"ab\n");
        let report = verified(&bytes, false);
        let start = offset_of_line(&bytes, 7);
        assert_eq!(report.torn_tail, Some((7, start)));
        assert_eq!(report.last_intact, Some(5));
        assert!(
            report
                .damage
                .is_some_and(|(line, _, d)| line == 7 && d.contains("torn"))
        );
    }

    #[test]
    fn a_syntax_error_in_the_last_line_is_damage_not_a_torn_tail() {
        let mut bytes = export(5);
        bytes.extend_from_slice(b"{\"hash\" \"ab\"}\n");
        let report = verified(&bytes, true);
        assert_eq!(report.torn_tail, None);
        let (line, _, detail) = report.damage.expect("damage");
        assert_eq!(line, 7);
        assert!(detail.starts_with("invalid JSON at column 9"), "{detail}");
    }

    #[test]
    fn incomplete_json_in_the_middle_of_the_file_is_a_bad_line() {
        let bytes = export(6);
        let mut parts = lines(&bytes);
        parts[3] = b"{\"hash\":\"ab\n".to_vec();
        let report = verified(&parts.concat(), true);
        assert_eq!(report.torn_tail, None);
        assert_eq!(report.damage.map(|d| d.0), Some(4));
        assert_eq!(report.last_intact, Some(2));
    }

    #[test]
    fn verify_reports_a_bit_flip_at_its_line() {
        let bytes = export(20);
        let text = String::from_utf8(bytes.clone()).expect("UTF-8");
        // Inside the image of record 9 (line 10): a name loses a bit.
        let line_start = offset_of_line(&bytes, 10) as usize;
        let at = line_start + text[line_start..].find("\"userName\":\"").expect("user") + 13;
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x01;
        let report = verified(&flipped, false);
        let (line, offset, detail) = report.damage.expect("damage");
        assert_eq!((line, offset), (10, line_start as u64));
        assert!(detail.starts_with("record 9: hash mismatch"), "{detail}");
        assert_eq!(report.last_intact, Some(8));
        assert_eq!(report.records, 20);
    }

    #[test]
    fn verify_reports_a_deleted_line_as_missing_records() {
        let bytes = export(20);
        let mut parts = lines(&bytes);
        parts.remove(9); // line 10: record 9
        let report = verified(&parts.concat(), false);
        let (line, _, detail) = report.damage.expect("damage");
        assert_eq!(line, 10);
        assert_eq!(
            detail,
            "record 9 is missing (found 10 where 9 was expected)"
        );
        assert_eq!(report.last_intact, Some(8));
    }

    #[test]
    fn verify_reports_a_reordered_pair_at_the_first_out_of_order_line() {
        let bytes = export(20);
        let mut parts = lines(&bytes);
        parts.swap(12, 13); // lines 13 and 14: records 12 and 13
        let swapped = parts.concat();
        let report = verified(&swapped, false);
        let (line, offset, detail) = report.damage.expect("damage");
        assert_eq!((line, offset), (13, offset_of_line(&swapped, 13)));
        assert_eq!(detail, "record 13 is out of order (expected 12)");
        assert_eq!(report.last_intact, Some(11));
    }

    #[test]
    fn verify_reports_a_header_whose_range_ends_after_the_records() {
        let chain = chain(20);
        let bytes = export_with(&header_for(1, 22, ZERO_HASH), &chain);
        let report = verified(&bytes, false);
        let (line, offset, detail) = report.damage.expect("damage");
        assert_eq!((line, offset), (22, bytes.len() as u64));
        assert_eq!(
            detail,
            "records 21..22 are missing: the file ends before the header's last_seq 22"
        );
        assert_eq!(report.last_intact, Some(20));
        // A torn tail does not excuse a shortfall unless the caller allows it.
        let report = verified(&bytes[..bytes.len() - 1], true);
        assert!(report.is_intact());
    }

    #[test]
    fn verify_reports_records_beyond_the_header_range() {
        let chain = chain(20);
        let bytes = export_with(&header_for(1, 18, ZERO_HASH), &chain);
        let report = verified(&bytes, false);
        let (line, _, detail) = report.damage.expect("damage");
        assert_eq!(line, 20);
        assert_eq!(
            detail,
            "record 19 is beyond the end of the header's range 1..18"
        );
        assert_eq!(report.last_intact, Some(18));
    }

    #[test]
    fn verify_reports_records_that_do_not_start_where_the_header_says() {
        let full = chain(20);
        let tail = &full[5..];
        let bytes = export_with(&header_for(5, 20, &full[3].0), tail);
        let report = verified(&bytes, false);
        assert_eq!(
            report.damage.map(|d| (d.0, d.2)),
            Some((
                2,
                "record 5 is missing (found 6 where 5 was expected)".into()
            ))
        );
        let bytes = export_with(&header_for(6, 20, ZERO_HASH), tail);
        let report = verified(&bytes, false);
        let (line, _, detail) = report.damage.expect("damage");
        assert_eq!(line, 2);
        assert!(
            detail.starts_with("record 6: 'prev' does not link to record 5"),
            "{detail}"
        );
    }

    #[test]
    fn a_line_that_means_the_same_record_in_other_bytes_is_not_canonical() {
        let bytes = export(20);
        let text = String::from_utf8(bytes).expect("UTF-8");
        // Record 9 carries an ESC, written "\u001b"; the same escape in upper case, a
        // space, or CRLF line ends parse to the same record but are not what was hashed.
        assert!(text.contains("\\u001b"));
        for edited in [
            text.replacen("\\u001b", "\\u001B", 1),
            text.replacen("\"seq\":3,", "\"seq\":3 ,", 1),
            text.replace('\n', "\r\n"),
        ] {
            let report = verified(edited.as_bytes(), false);
            let detail = report.damage.expect("damage").2;
            assert!(detail.contains("not the canonical form"), "{detail}");
        }
    }

    #[test]
    fn a_newer_version_is_refused() {
        let text = format!(
            "{{\"format\":\"scim-bridge-journal\",\"version\":3,\"new_member\":true,\
             \"prev\":\"{ZERO_HASH}\"}}\n"
        );
        let err = verify(text.as_bytes(), false).expect_err("refused");
        assert!(
            matches!(
                err,
                FileError::UnsupportedVersion {
                    found: 3,
                    supported: 2
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "header version 3 is newer than this build understands (up to 2); \
             use a newer scim-bridge"
        );
    }

    #[test]
    fn a_header_that_is_not_ours_or_is_inconsistent_is_refused() {
        let good = serde_json::to_value(header_for(3, 9, &"a".repeat(64))).expect("value");
        let cases: Vec<(&str, Value, &str)> = vec![
            ("format", Value::from("other"), "format \"other\" is not"),
            ("version", Value::from(0), "version 0"),
            ("version", Value::from("1"), "'version' is missing"),
            ("first_seq", Value::from(11), "first_seq 11 and last_seq 9"),
            ("first_seq", Value::from(0), "first_seq 0"),
            ("prev", Value::from("ABC"), "prev \"ABC\" is not a hash"),
            ("extra", Value::from(1), "unknown field `extra`"),
        ];
        for (member, value, expected) in cases {
            let mut header = good.clone();
            header[member] = value;
            let text = format!("{header}\n");
            match verify(text.as_bytes(), false) {
                Err(FileError::BadHeader { detail }) => {
                    assert!(detail.contains(expected), "{member}: {detail}");
                }
                other => panic!("{member}: expected a bad header, got {other:?}"),
            }
        }
        let mut header = good;
        header["first_seq"] = Value::from(1);
        let text = format!("{header}\n");
        assert!(matches!(
            verify(text.as_bytes(), false),
            Err(FileError::BadHeader { detail }) if detail.contains("64 zeros")
        ));
        assert!(matches!(
            verify(&b"[1,2]\n"[..], false),
            Err(FileError::BadHeader { .. })
        ));
    }

    #[test]
    fn an_empty_file_and_a_torn_header_are_refused() {
        assert!(matches!(verify(&b""[..], true), Err(FileError::Empty)));
        let bytes = export(0);
        assert!(matches!(
            verify(&bytes[..bytes.len() - 1], true),
            Err(FileError::TornTail { line: 1, offset: 0 })
        ));
    }

    #[test]
    fn invalid_utf8_in_a_line_is_a_bad_line() {
        let bytes = export(5);
        let mut parts = lines(&bytes);
        parts[2][30] = 0xff;
        let broken = parts.concat();
        let report = verified(&broken, true);
        assert_eq!(
            report.damage,
            Some((
                3,
                offset_of_line(&broken, 3),
                "not UTF-8 (at byte 30 of the line)".into()
            ))
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_is_a_bad_line_and_is_not_read_whole() {
        let mut bytes = export(2);
        let start = bytes.len() as u64;
        bytes.extend(std::iter::repeat_n(b'x', 10_000));
        bytes.push(b'\n');
        let (reader, _) = Reader::with_max_line(&bytes[..], 4096).expect("header fits");
        let mut reader = reader;
        assert!(reader.next().is_some_and(|e| e.is_ok()));
        assert!(reader.next().is_some_and(|e| e.is_ok()));
        match reader.next() {
            Some(Err(FileError::BadLine {
                line,
                offset,
                detail,
            })) => {
                assert_eq!((line, offset), (4, start));
                assert_eq!(detail, "longer than 4096 bytes");
            }
            other => panic!("expected a bad line, got {other:?}"),
        }
        assert!(reader.buf.len() <= 4097, "read at most the limit");
        assert_eq!(describe_size(MAX_LINE), "64 MiB");
    }

    #[test]
    fn the_reader_stops_after_the_first_error() {
        let bytes = export(6);
        let mut parts = lines(&bytes);
        parts[2] = b"not json\n".to_vec();
        let joined = parts.concat();
        let (reader, _) = Reader::new(&joined[..]).expect("header reads");
        let results: Vec<_> = reader.collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        let err = results[1].as_ref().expect_err("an error");
        assert_eq!(
            err.to_string(),
            format!(
                "line 3 (byte {}): invalid JSON at column 2: expected ident",
                offset_of_line(&joined, 3)
            )
        );
    }

    #[test]
    fn a_line_that_is_json_but_not_a_record_line_is_a_bad_line() {
        let bytes = export(3);
        let mut parts = lines(&bytes);
        parts[2] = b"{\"hash\":\"00\",\"record\":{\"seq\":2},\"x\":1}\n".to_vec();
        let report = verified(&parts.concat(), false);
        let detail = report.damage.expect("damage").2;
        assert!(detail.starts_with("not a record line: "), "{detail}");
    }

    /// What a reader yields, whichever way it reads: (line, offset, hash, record) or the
    /// error's text.
    fn outcomes(bytes: &[u8], as_text: bool) -> Vec<Result<(u64, u64, String, Record), String>> {
        let (mut reader, _) = Reader::new(bytes).expect("header reads");
        let mut out = Vec::new();
        loop {
            let next = if as_text {
                reader.next_read().map(|r| {
                    r.map(|read| match read {
                        RecordRead::Text(e) => {
                            let record: Record = serde_json::from_str(&e.text).expect("parses");
                            assert_eq!(record.canonical_json(), e.text, "read as it stands");
                            (e.line, e.offset, e.hash, record)
                        }
                        RecordRead::Parsed(e) => (e.line, e.offset, e.hash, e.record),
                    })
                })
            } else {
                reader
                    .next()
                    .map(|r| r.map(|e| (e.line, e.offset, e.hash, e.record)))
            };
            match next {
                Some(r) => out.push(r.map_err(|e| e.to_string())),
                None => return out,
            }
        }
    }

    #[test]
    fn reading_lines_as_text_accepts_and_refuses_exactly_what_parsing_them_does() {
        let bytes = export(20);
        let (mut reader, _) = Reader::new(&bytes[..]).expect("header reads");
        let mut texts = 0;
        while let Some(read) = reader.next_read() {
            assert!(matches!(read, Ok(RecordRead::Text(_))), "{read:?}");
            texts += 1;
        }
        assert_eq!(texts, 20);
        let text = String::from_utf8(bytes.clone()).expect("UTF-8");
        let mut lines_of = lines(&bytes);
        lines_of[3] = b"not json\n".to_vec();
        let mut cases = vec![
            bytes.clone(),
            lines_of.concat(),
            bytes[..bytes.len() - 1].to_vec(),
            // Equivalent but other bytes: parsed, not taken as text.
            text.replacen("\\u001b", "\\u001B", 1).into_bytes(),
            text.replacen("\"seq\":3,", "\"seq\":3 ,", 1).into_bytes(),
            text.replacen("{\"hash\":", "{ \"hash\":", 1).into_bytes(),
        ];
        let mut flipped = bytes.clone();
        flipped[offset_of_line(&bytes, 5) as usize + 100] ^= 0x20;
        cases.push(flipped);
        for case in cases {
            assert_eq!(outcomes(&case, true), outcomes(&case, false));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any change to any one byte of any record line (its newline included) is seen:
        /// as chain damage, a bad line or a torn tail, never silently, never a panic.
        #[test]
        fn changing_any_byte_of_a_record_line_is_always_reported(
            seed in any::<u64>(),
            n in 1u64..12,
            which in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let chain = chain_from(seed, 1, ZERO_HASH, n);
            let bytes = export_with(&header_for(1, n, ZERO_HASH), &chain);
            let parts = lines(&bytes);
            let line = 1 + which.index(parts.len() - 1);
            let start = offset_of_line(&bytes, line + 1) as usize;
            let pos = start + at.index(parts[line].len());
            let mut flipped = bytes.clone();
            flipped[pos] ^= mask;
            for allow_torn_tail in [false, true] {
                let report = verify(&flipped[..], allow_torn_tail);
                prop_assert!(report.is_ok(), "the header is untouched: {report:?}");
                if let Ok(report) = report {
                    prop_assert!(
                        report.damage.is_some() || report.torn_tail.is_some(),
                        "byte {pos} ^ {mask:#x} of line {} went unnoticed", line + 1
                    );
                }
            }
        }
    }
}
