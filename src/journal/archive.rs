//! Journal archives: ranges of records written out before retention drops them from the
//! state database (`docs/journal-format.md`, "Retention and archive").
//!
//! This module owns the archive's name (`journal-<first>-<last>.jsonl.gz`), the durable
//! write (temp file in the same directory, fsync, atomic publish, fsync of the directory:
//! once [`write_archive`] returns, the records may be dropped) and opening an archive for
//! reading. The content is exactly the portable form of `super::file`, gzip-compressed;
//! reading it line by line and verifying it are `file`'s. Deciding what to archive and
//! when is retention's, not this module's.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::file::{Header, Writer, check_header};
use super::record::Record;

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: already exists with different content ({detail}); refusing to overwrite it",
        path.display()
    )]
    Conflict { path: PathBuf, detail: String },
    #[error("archive {first}..{last}: {detail}")]
    Inconsistent {
        first: u64,
        last: u64,
        detail: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The file name of the archive of `first..=last`.
pub fn archive_name(first_seq: u64, last_seq: u64) -> String {
    format!("journal-{first_seq}-{last_seq}.jsonl.gz")
}

/// Writes `records` as a gzip-compressed export (the header line, then one line per
/// record) to `dir/journal-<first>-<last>.jsonl.gz` and makes it durable: temp file in
/// `dir`, fsync, publish under the final name, fsync `dir`.
///
/// The records must be exactly `header.first_seq..=header.last_seq`, in order (the name
/// and header promise that range). An existing archive of the same name is never
/// replaced: with the same content this is a no-op that returns its path (a retried
/// retention run), with different content it is [`ArchiveError::Conflict`].
pub fn write_archive(
    dir: &Path,
    header: &Header,
    records: &[(String, Record)],
) -> Result<PathBuf, ArchiveError> {
    check_range(header, records)?;
    let content = export(header, records)?;
    let name = archive_name(header.first_seq, header.last_seq);
    let path = dir.join(&name);
    // An empty `dir` means the current directory; fsync needs a name to open.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };

    match existing(&path, &content)? {
        Existing::Absent => {}
        Existing::Same => return keep(dir, path),
        Existing::Different(detail) => return Err(ArchiveError::Conflict { path, detail }),
    }
    let tmp = write_temp(dir, &name, &content)?;
    let published = publish(&tmp, &path);
    if !matches!(published, Ok(true)) {
        let _ = fs::remove_file(&tmp);
    }
    match published {
        Ok(true) => {}
        // Someone published the same name while we wrote (another process sharing the
        // directory): theirs stands, ours was only a temp file.
        Ok(false) => {
            return match existing(&path, &content)? {
                Existing::Same => keep(dir, path),
                Existing::Different(detail) => Err(ArchiveError::Conflict { path, detail }),
                Existing::Absent => Err(ArchiveError::Conflict {
                    path,
                    detail: "it appeared while writing and vanished again".into(),
                }),
            };
        }
        Err(source) => return Err(ArchiveError::Io { path, source }),
    }
    sync_dir(dir).map_err(io_error(dir))?;
    Ok(path)
}

/// Opens an archive (or a plain export) for reading: a `BufRead` of the uncompressed
/// export, for [`file::Reader`](super::file::Reader) and [`file::verify`](super::file::verify).
/// Gzip is recognised by its magic bytes, not the name; concatenated gzip members are
/// read as one stream, and bytes after the last member are an error rather than ignored.
/// A damaged compressed stream shows up as an I/O error while reading.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, ArchiveError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(io_error(path))?;
    if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(BufReader::new(MultiGzDecoder::new(reader))))
    } else {
        Ok(Box::new(reader))
    }
}

/// The records must be the header's range exactly, or the name would lie.
fn check_range(header: &Header, records: &[(String, Record)]) -> Result<(), ArchiveError> {
    let (first, last) = (header.first_seq, header.last_seq);
    let inconsistent = |detail: String| ArchiveError::Inconsistent {
        first,
        last,
        detail,
    };
    check_header(header).map_err(|detail| inconsistent(format!("header: {detail}")))?;
    // check_header guarantees first <= last + 1 and last < u64::MAX.
    let expected = last + 1 - first;
    if records.len() as u64 != expected {
        return Err(inconsistent(format!(
            "{} records given for a range of {expected}",
            records.len()
        )));
    }
    for (seq, (_, record)) in (first..=last).zip(records) {
        if record.seq != seq {
            return Err(inconsistent(format!(
                "record {} where {seq} was expected",
                record.seq
            )));
        }
    }
    Ok(())
}

/// The uncompressed export.
fn export(header: &Header, records: &[(String, Record)]) -> Result<Vec<u8>, ArchiveError> {
    let inconsistent = |e: io::Error| ArchiveError::Inconsistent {
        first: header.first_seq,
        last: header.last_seq,
        detail: e.to_string(),
    };
    let mut writer = Writer::new(Vec::new(), header).map_err(inconsistent)?;
    for (hash, record) in records {
        writer.write(hash, record).map_err(inconsistent)?;
    }
    writer.finish().map_err(inconsistent)
}

/// What is already under an archive's name.
enum Existing {
    Absent,
    Same,
    /// Anything else, with how it differs.
    Different(String),
}

fn existing(path: &Path, content: &[u8]) -> Result<Existing, ArchiveError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(io_error(path)(e)),
    };
    Ok(differs(file, content).map_or(Existing::Same, Existing::Different))
}

/// Accepts an existing archive with our content, making it durable again first: the run
/// that wrote it may have died between its rename and its directory fsync.
fn keep(dir: &Path, path: PathBuf) -> Result<PathBuf, ArchiveError> {
    sync_existing(&path).map_err(io_error(&path))?;
    sync_dir(dir).map_err(io_error(dir))?;
    Ok(path)
}

/// How the gzip file `file` differs from `content` once uncompressed; `None` if it does
/// not. An unreadable file differs: it is not ours to replace either.
fn differs(file: File, content: &[u8]) -> Option<String> {
    let decoder = MultiGzDecoder::new(BufReader::new(file));
    let mut existing = Vec::new();
    // One byte more than ours is enough to tell "longer" without reading it all.
    let limit = (content.len() as u64).saturating_add(1);
    if let Err(e) = decoder.take(limit).read_to_end(&mut existing) {
        return Some(format!("it cannot be read back: {e}"));
    }
    if existing == content {
        return None;
    }
    let at = existing
        .iter()
        .zip(content)
        .position(|(a, b)| a != b)
        .unwrap_or(existing.len().min(content.len()));
    Some(format!(
        "its uncompressed export differs from these records at byte {at}"
    ))
}

/// Writes the compressed `content` to a new temp file next to the archive and fsyncs it.
fn write_temp(dir: &Path, name: &str, content: &[u8]) -> Result<PathBuf, ArchiveError> {
    // Unique per process and call; a name left by a crashed run is skipped, not reused.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempt = 0;
    let (tmp, file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(io_error(&tmp)(e)),
        }
    };
    let written = (|| {
        let mut encoder = GzEncoder::new(BufWriter::new(file), Compression::default());
        encoder.write_all(content)?;
        let file = encoder.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    match written {
        Ok(()) => Ok(tmp),
        Err(source) => {
            let _ = fs::remove_file(&tmp);
            Err(ArchiveError::Io { path: tmp, source })
        }
    }
}

/// Puts the finished temp file under its final name without ever replacing a file
/// there: `Ok(true)` when published, `Ok(false)` when the name was taken.
///
/// A hard link fails if the name exists, atomically, which a rename cannot promise (it
/// replaces silently), so two installs mistakenly sharing an archive directory cannot
/// clobber each other. File systems without hard links fall back to a rename after a
/// last look at the name.
fn publish(tmp: &Path, path: &Path) -> io::Result<bool> {
    match fs::hard_link(tmp, path) {
        Ok(()) => {
            fs::remove_file(tmp)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => {
            if fs::symlink_metadata(path).is_ok() {
                return Ok(false);
            }
            fs::rename(tmp, path)?;
            Ok(true)
        }
    }
}

/// Makes a directory's entries (a new or renamed name) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    // Directories cannot be opened as files elsewhere; NTFS journals its metadata.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn sync_existing(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        // fsync through a read-only descriptor is enough on unix.
        File::open(path)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        OpenOptions::new().write(true).open(path)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::journal::file::{FORMAT, FileReport, Reader, VERSION, verify};
    use crate::journal::record::ZERO_HASH;
    use crate::journal::record::fixtures::chain_from;

    fn header(first: u64, last: u64, prev: &str, origin: &str) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            origin: origin.into(),
            first_seq: first,
            last_seq: last,
            prev: prev.into(),
            exported_at: "2025-03-02T09:30:00.000Z".into(),
        }
    }

    fn records() -> Vec<(String, Record)> {
        chain_from(11, 1, ZERO_HASH, 20)
    }

    fn entries_of(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("dir lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn verified(path: &Path) -> FileReport {
        verify(open(path).expect("opens"), false).expect("reads")
    }

    #[test]
    fn an_archive_round_trips_through_gzip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let records = records();
        let header = header(1, 20, ZERO_HASH, "origin-a");
        let path = write_archive(dir.path(), &header, &records).expect("written");
        assert_eq!(path, dir.path().join("journal-1-20.jsonl.gz"));

        let raw = fs::read(&path).expect("reads");
        assert!(raw.starts_with(&GZIP_MAGIC), "compressed");

        let (reader, read_header) = Reader::new(open(&path).expect("opens")).expect("header");
        assert_eq!(read_header, header);
        let read: Vec<(String, Record)> = reader
            .map(|e| e.map(|e| (e.hash, e.record)))
            .collect::<Result<_, _>>()
            .expect("every line reads");
        assert_eq!(read, records);

        let report = verified(&path);
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.last_intact, Some(20));
    }

    #[test]
    fn an_archive_of_a_later_range_links_to_the_records_before_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let all = records();
        let header = header(8, 20, &all[6].0, "origin-a");
        let path = write_archive(dir.path(), &header, &all[7..]).expect("written");
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some("journal-8-20.jsonl.gz")
        );
        assert!(verified(&path).is_intact());
    }

    #[test]
    fn rewriting_the_same_archive_is_a_no_op() {
        let dir = tempfile::tempdir().expect("temp dir");
        let records = records();
        let header = header(1, 20, ZERO_HASH, "origin-a");
        let first = write_archive(dir.path(), &header, &records).expect("written");
        let bytes = fs::read(&first).expect("reads");
        let again = write_archive(dir.path(), &header, &records).expect("same content is fine");
        assert_eq!(again, first);
        assert_eq!(fs::read(&again).expect("reads"), bytes);
        assert_eq!(
            entries_of(dir.path()),
            ["journal-1-20.jsonl.gz"],
            "no temp files left"
        );
    }

    #[test]
    fn an_existing_archive_with_different_content_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let records = records();
        let path = write_archive(dir.path(), &header(1, 20, ZERO_HASH, "origin-a"), &records)
            .expect("written");
        let bytes = fs::read(&path).expect("reads");

        let err = write_archive(dir.path(), &header(1, 20, ZERO_HASH, "origin-b"), &records)
            .expect_err("a different archive of the same range is refused");
        assert!(matches!(&err, ArchiveError::Conflict { path: p, .. } if *p == path));
        let text = err.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(
            text.contains("differs from these records at byte "),
            "{text}"
        );
        assert!(text.ends_with("refusing to overwrite it"), "{text}");

        assert_eq!(fs::read(&path).expect("reads"), bytes, "left untouched");
        assert_eq!(entries_of(dir.path()), ["journal-1-20.jsonl.gz"]);
    }

    #[test]
    fn an_unreadable_file_under_the_archive_name_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal-1-20.jsonl.gz");
        fs::write(&path, b"not gzip at all").expect("writes");
        let err = write_archive(
            dir.path(),
            &header(1, 20, ZERO_HASH, "origin-a"),
            &records(),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("cannot be read back"), "{err}");
        assert_eq!(fs::read(&path).expect("reads"), b"not gzip at all");
    }

    #[test]
    fn records_that_are_not_the_header_range_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let records = records();
        let err = write_archive(dir.path(), &header(1, 21, ZERO_HASH, "o"), &records)
            .expect_err("one short");
        assert_eq!(
            err.to_string(),
            "archive 1..21: 20 records given for a range of 21"
        );
        let mut shuffled = records.clone();
        shuffled.swap(3, 4);
        let err = write_archive(dir.path(), &header(1, 20, ZERO_HASH, "o"), &shuffled)
            .expect_err("out of order");
        assert_eq!(
            err.to_string(),
            "archive 1..20: record 5 where 4 was expected"
        );
        let err = write_archive(dir.path(), &header(0, 20, ZERO_HASH, "o"), &records)
            .expect_err("bad header");
        assert!(
            err.to_string()
                .starts_with("archive 0..20: header: first_seq 0"),
            "{err}"
        );
        assert!(entries_of(dir.path()).is_empty(), "nothing written");
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope");
        let err = write_archive(&missing, &header(1, 20, ZERO_HASH, "o"), &records())
            .expect_err("no directory");
        assert!(matches!(err, ArchiveError::Io { .. }));
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn open_passes_a_plain_export_through() {
        let dir = tempfile::tempdir().expect("temp dir");
        let header = header(1, 20, ZERO_HASH, "origin-a");
        let plain = export(&header, &records()).expect("exports");
        let path = dir.path().join("export.jsonl");
        fs::write(&path, &plain).expect("writes");
        let mut read = Vec::new();
        open(&path)
            .expect("opens")
            .read_to_end(&mut read)
            .expect("reads");
        assert_eq!(read, plain);
        assert!(verified(&path).is_intact());
    }

    #[test]
    fn a_truncated_or_padded_archive_fails_to_read_instead_of_passing_as_shorter() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path =
            write_archive(dir.path(), &header(1, 20, ZERO_HASH, "o"), &records()).expect("written");
        let bytes = fs::read(&path).expect("reads");

        let cut = dir.path().join("cut.jsonl.gz");
        fs::write(&cut, &bytes[..bytes.len() / 2]).expect("writes");
        assert!(matches!(
            verify(open(&cut).expect("opens"), true),
            Err(crate::journal::file::FileError::Io(_))
        ));

        let padded = dir.path().join("padded.jsonl.gz");
        let mut with_junk = bytes.clone();
        with_junk.extend_from_slice(b"junk after the gzip stream");
        fs::write(&padded, &with_junk).expect("writes");
        assert!(matches!(
            verify(open(&padded).expect("opens"), true),
            Err(crate::journal::file::FileError::Io(_))
        ));
    }

    #[test]
    fn an_empty_range_can_be_archived() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path =
            write_archive(dir.path(), &header(21, 20, &"a".repeat(64), "o"), &[]).expect("written");
        assert_eq!(path, dir.path().join("journal-21-20.jsonl.gz"));
        let report = verified(&path);
        assert_eq!(report.records, 0);
        assert!(report.is_intact());
    }
}
