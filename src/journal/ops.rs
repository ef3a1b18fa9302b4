//! Operator actions on the journal, shared by the CLI and tests: list, show, verify,
//! export and replay. Each returns data; printing and exit codes belong to `main`.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

use crate::journal::file::{self, FileReport, Header};
use crate::journal::record::{ChainCheck, Record, ZERO_HASH};
use crate::store::journal::{ChainReport, JournalQuery, JournalRow};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    File(#[from] file::FileError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// One line per record: `SEQ TIME ACTOR OP KIND ID vBEFORE->vAFTER DELIVERY`.
pub fn list_line(row: &JournalRow) -> String {
    match row.record() {
        Ok(r) => format!(
            "{:>8}  {}  {:<12} {:<7} {:<5} {}  v{}->v{}  {}{}",
            r.seq,
            r.time,
            r.actor,
            format!("{:?}", r.op).to_lowercase(),
            r.kind,
            r.id,
            r.version_before.map_or("-".into(), |v| v.to_string()),
            r.version_after.map_or("-".into(), |v| v.to_string()),
            row.delivery,
            row.delivery_detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        Err(e) => format!("{:>8}  <unreadable record: {e}>", row.seq),
    }
}

pub fn list(store: &Store, q: &JournalQuery, mut out: impl FnMut(String)) -> Result<u64, OpsError> {
    let mut n = 0;
    store.read(|r| {
        r.journal_scan(q, |row| {
            n += 1;
            out(list_line(&row));
            Ok(())
        })
    })?;
    Ok(n)
}

/// The whole record with its hash and delivery state.
pub fn show(store: &Store, seq: u64) -> Result<Option<Value>, OpsError> {
    let Some(row) = store.read(|r| r.journal_get(seq))? else {
        return Ok(None);
    };
    let record: Value = serde_json::from_str(&row.text).unwrap_or(Value::String(row.text.clone()));
    Ok(Some(json!({
        "seq": row.seq,
        "hash": row.hash,
        "delivery": row.delivery,
        "delivery_detail": row.delivery_detail,
        "record": record,
    })))
}

pub fn verify_db(store: &Store) -> Result<ChainReport, OpsError> {
    Ok(store.read(|r| r.journal_verify())?)
}

pub fn verify_file(input: impl BufRead, allow_torn_tail: bool) -> Result<FileReport, OpsError> {
    Ok(file::verify(input, allow_torn_tail)?)
}

/// Writes records `from..=to` as JSON Lines (header first). Returns the number written.
pub fn export(
    store: &Store,
    from: Option<u64>,
    to: Option<u64>,
    out: impl Write,
) -> Result<u64, OpsError> {
    store
        .read(|r| {
            let (base_seq, base_hash) = r.journal_base()?;
            let (head_seq, _) = r.journal_head()?;
            let first = from.unwrap_or(base_seq + 1).max(base_seq + 1);
            let last = to.unwrap_or(head_seq).min(head_seq);
            let prev = if first <= base_seq + 1 {
                base_hash
            } else {
                r.journal_get(first - 1)?
                    .map(|row| row.hash)
                    .unwrap_or_else(|| ZERO_HASH.into())
            };
            let header = Header {
                format: file::FORMAT.into(),
                version: file::VERSION,
                origin: store.origin().to_string(),
                first_seq: first,
                last_seq: last.max(first.saturating_sub(1)),
                prev,
                exported_at: now(),
            };
            let mut writer =
                file::Writer::new(out, &header).map_err(|e| StoreError::Journal(e.to_string()))?;
            let mut n = 0;
            let q = JournalQuery {
                from: Some(first),
                to: Some(last),
                ..Default::default()
            };
            r.journal_scan(&q, |row| {
                let record = row.record()?;
                writer
                    .write(&row.hash, &record)
                    .map_err(|e| StoreError::Journal(format!("writing the export: {e}")))?;
                n += 1;
                Ok(())
            })?;
            writer
                .finish()
                .map_err(|e| StoreError::Journal(format!("writing the export: {e}")))?;
            Ok(n)
        })
        .map_err(OpsError::from)
}

/// What retention did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Records archived and dropped from the table.
    pub dropped: u64,
    pub files: Vec<std::path::PathBuf>,
    /// The new base: the table now starts after this record.
    pub base: u64,
}

/// At most this many records per archive file (bounds memory and file size).
const ARCHIVE_CHUNK: u64 = 100_000;

/// Applies retention: archives the records beyond the limits to `archive_dir` (each file
/// durable before anything is dropped), then drops them. Records pending delivery, and
/// everything after the first of them, are kept.
pub fn archive(
    store: &Store,
    cfg: &crate::config::JournalConfig,
    archive_dir: &std::path::Path,
    now: time::OffsetDateTime,
) -> Result<ArchiveSummary, OpsError> {
    let older_than = cfg.max_age.map(|age| crate::journal::timestamp(now - age));
    let cutoff = store
        .read(|r| r.retention_cutoff(older_than.as_deref(), cfg.max_records, cfg.max_bytes))?;
    let mut summary = ArchiveSummary::default();
    std::fs::create_dir_all(archive_dir)?;
    loop {
        let (base, base_hash) = store.read(|r| r.journal_base())?;
        summary.base = base;
        if base >= cutoff {
            return Ok(summary);
        }
        let last = cutoff.min(base + ARCHIVE_CHUNK);
        let mut records = Vec::new();
        store.read(|r| {
            let q = JournalQuery {
                from: Some(base + 1),
                to: Some(last),
                ..Default::default()
            };
            r.journal_scan(&q, |row| {
                records.push((row.hash.clone(), row.record()?));
                Ok(())
            })
        })?;
        let header = Header {
            format: file::FORMAT.into(),
            version: file::VERSION,
            origin: store.origin().to_string(),
            first_seq: base + 1,
            last_seq: last,
            prev: base_hash,
            exported_at: now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        let path = crate::journal::archive::write_archive(archive_dir, &header, &records).map_err(
            |e| OpsError::Invalid(format!("archiving records {}..{last}: {e}", base + 1)),
        )?;
        let dropped = store.write_blocking(move |tx| tx.journal_drop_through(last))?;
        summary.dropped += dropped;
        summary.files.push(path);
        summary.base = last;
    }
}

/// What a replay did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub records: u64,
    /// Records whose image changed the state.
    pub applied: u64,
    /// Records the state already reflected (same or newer version).
    pub skipped: u64,
    /// Records added to the local journal (replay from a file).
    pub imported: u64,
    pub first: Option<u64>,
    pub last: Option<u64>,
}

/// Records per write transaction during replay: large enough to amortise the commit.
const REPLAY_CHUNK: usize = 5000;

/// One record to replay: its hash, its canonical text (what the local journal stores),
/// and the record.
struct Item {
    hash: String,
    text: String,
    record: Record,
}

/// Applies chunks of records on a thread of their own while the caller reads and checks
/// the next chunk (two cores: reading and writing overlap). `produce` hands each chunk to
/// its argument, in order; the chunks are applied in that order, each in one write
/// transaction.
fn replay_chunks(
    store: &Store,
    import: bool,
    dry_run: bool,
    mut progress: impl FnMut(u64),
    produce: impl FnOnce(&mut dyn FnMut(Vec<Item>) -> Result<(), OpsError>) -> Result<(), OpsError>,
) -> Result<ReplaySummary, OpsError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Item>>(1);
        let applier = scope.spawn(move || -> Result<ReplaySummary, OpsError> {
            let mut summary = ReplaySummary::default();
            for chunk in rx {
                apply_chunk(store, chunk, import, dry_run, &mut summary)?;
            }
            Ok(summary)
        });
        let mut read = 0u64;
        let (mut first, mut last) = (None, None);
        let produced = produce(&mut |chunk: Vec<Item>| {
            if let (Some(a), Some(b)) = (chunk.first(), chunk.last()) {
                first.get_or_insert(a.record.seq);
                last = Some(b.record.seq);
            }
            read += chunk.len() as u64;
            // A closed channel: the applier stopped on an error, which its join reports.
            if tx.send(chunk).is_ok() {
                progress(read);
            }
            Ok(())
        });
        drop(tx);
        let applied = applier
            .join()
            .map_err(|_| OpsError::Invalid("the replay's writer failed unexpectedly".into()))?;
        let mut summary = applied?;
        produced?;
        summary.first = first;
        summary.last = last;
        Ok(summary)
    })
}

fn apply_chunk(
    store: &Store,
    chunk: Vec<Item>,
    import: bool,
    dry_run: bool,
    summary: &mut ReplaySummary,
) -> Result<(), OpsError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let n = chunk.len() as u64;
    let (applied, imported) = if dry_run {
        let applied = store.read(|r| {
            let mut applied = 0;
            for item in &chunk {
                if would_apply(r, &item.record)? {
                    applied += 1;
                }
            }
            Ok(applied)
        })?;
        (applied, 0)
    } else {
        store.write_blocking(move |tx| -> Result<(u64, u64), StoreError> {
            let (mut applied, mut imported) = (0, 0);
            for item in chunk {
                // A record just appended at the journal's head has nothing after it there.
                let appended = import && tx.journal_import(&item.hash, &item.text, &item.record)?;
                if appended {
                    imported += 1;
                }
                if tx.apply_record(item.record, !appended)? {
                    applied += 1;
                }
            }
            Ok((applied, imported))
        })?
    };
    summary.records += n;
    summary.applied += applied;
    summary.skipped += n - applied;
    summary.imported += imported;
    Ok(())
}

fn would_apply(r: &crate::store::Reader<'_>, rec: &Record) -> Result<bool, StoreError> {
    use crate::journal::record::Op;
    let Some(kind) = crate::scim::schema::ResourceKind::from_name(&rec.kind) else {
        return Ok(false);
    };
    let current = r.get(kind, &rec.id)?;
    Ok(match rec.op {
        Op::Delete | Op::Purge => {
            current.is_some_and(|c| rec.version_before.is_none_or(|v| c.version <= v))
        }
        _ => match current {
            Some(c) => rec.version_after.is_some_and(|v| c.version < v),
            None => !r.deleted_later(rec)?,
        },
    })
}

/// Replays the local journal's records `from..=to` into the state tables, reading them
/// a chunk at a time.
pub fn replay_db(
    store: &Store,
    from: Option<u64>,
    to: Option<u64>,
    dry_run: bool,
    progress: impl FnMut(u64),
) -> Result<ReplaySummary, OpsError> {
    replay_chunks(store, false, dry_run, progress, |apply| {
        let mut cursor = from.unwrap_or(0);
        loop {
            let last = cursor.saturating_add(REPLAY_CHUNK as u64 - 1);
            let q = JournalQuery {
                from: Some(cursor),
                to: Some(to.map_or(last, |t| t.min(last))),
                ..Default::default()
            };
            let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
            store.read(|r| {
                r.journal_scan(&q, |row| {
                    let record = row.record()?;
                    chunk.push(Item {
                        hash: row.hash,
                        text: String::new(),
                        record,
                    });
                    Ok(())
                })
            })?;
            let more = to.is_none_or(|t| last < t) && store.read(|r| r.journal_head())?.0 > last;
            if !chunk.is_empty() {
                apply(chunk)?;
            }
            if !more {
                return Ok(());
            }
            cursor = last + 1;
        }
    })
}

/// An export read record by record, its chain checked as it goes: yields `(hash,
/// record)` within `from..=to`; stops at a torn tail when that is allowed.
struct Checked<R: BufRead> {
    reader: file::Reader<R>,
    header: Header,
    check: ChainCheck,
    from: Option<u64>,
    to: Option<u64>,
    allow_torn_tail: bool,
}

impl<R: BufRead> Checked<R> {
    fn new(
        input: R,
        from: Option<u64>,
        to: Option<u64>,
        allow_torn_tail: bool,
    ) -> Result<Self, OpsError> {
        let (reader, header) = file::Reader::new(input)?;
        let check = ChainCheck::new(Some(header.first_seq), &header.prev);
        Ok(Checked {
            reader,
            header,
            check,
            from,
            to,
            allow_torn_tail,
        })
    }

    /// The last record read whose chain checked out.
    fn read_through(&self) -> u64 {
        self.check
            .last_intact()
            .unwrap_or(self.header.first_seq.saturating_sub(1))
    }

    /// Fails when the records stopped short of the header's range (without a tolerated torn tail).
    fn finish(&self, replayed: u64) -> Result<(), OpsError> {
        let read_through = self.read_through();
        if read_through < self.header.last_seq && !self.allow_torn_tail {
            return Err(OpsError::Invalid(format!(
                "the file ends after record {read_through} but its header lists records up to {}; the {replayed} records read were replayed",
                self.header.last_seq
            )));
        }
        Ok(())
    }
}

impl<R: BufRead> Iterator for Checked<R> {
    type Item = Result<Item, OpsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = match self.reader.next()? {
                Ok(e) => e,
                Err(file::FileError::TornTail { .. }) if self.allow_torn_tail => return None,
                Err(e) => return Some(Err(e.into())),
            };
            // The record is read from its line and written again in canonical form: that
            // text is what is hashed (and what the local journal stores), so it is
            // canonical by construction.
            let text = entry.record.canonical_json();
            let record = &entry.record;
            if let Err(d) = self
                .check
                .feed_stored(&entry.hash, &text, record.seq, &record.prev)
            {
                return Some(Err(OpsError::Invalid(format!(
                    "line {} (byte {}): {d}; nothing after record {} was replayed",
                    entry.line,
                    entry.offset,
                    self.check
                        .last_intact()
                        .map_or("(none)".into(), |s| s.to_string())
                ))));
            }
            let seq = entry.record.seq;
            if self.from.is_some_and(|f| seq < f) || self.to.is_some_and(|t| seq > t) {
                continue;
            }
            return Some(Ok(Item {
                hash: entry.hash,
                text,
                record: entry.record,
            }));
        }
    }
}

/// Replays an export file into this state directory: verifies the chain as it reads,
/// adds the records to the local journal, and applies their images. With
/// `allow_torn_tail`, a torn last line ends the replay instead of failing it.
pub fn replay_file(
    store: &Store,
    input: impl BufRead,
    from: Option<u64>,
    to: Option<u64>,
    dry_run: bool,
    allow_torn_tail: bool,
    progress: impl FnMut(u64),
) -> Result<ReplaySummary, OpsError> {
    let mut records = Checked::new(input, from, to, allow_torn_tail)?;
    let bulk = !dry_run && store.is_empty()?;
    let replay = |records: &mut Checked<_>| {
        replay_chunks(store, true, dry_run, progress, |apply| {
            let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
            for item in records.by_ref() {
                match item {
                    Ok(item) => chunk.push(item),
                    Err(e) => {
                        // The records before the damage are intact: they are replayed, as
                        // the error says.
                        apply(chunk)?;
                        return Err(e);
                    }
                }
                if chunk.len() == REPLAY_CHUNK {
                    apply(std::mem::replace(
                        &mut chunk,
                        Vec::with_capacity(REPLAY_CHUNK),
                    ))?;
                }
            }
            apply(chunk)
        })
    };
    let summary = if bulk {
        store.bulk_load(|| replay(&mut records))?
    } else {
        replay(&mut records)?
    };
    records.finish(summary.records)?;
    Ok(summary)
}

/// What a replay into the target did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetReplaySummary {
    pub records: u64,
    pub applied: u64,
    /// Records the target refused, with its diagnostic.
    pub rejected: Vec<(u64, String)>,
    /// Records skipped because delivery had already rejected them (DB replays).
    pub skipped_rejected: u64,
    pub first: Option<u64>,
    pub last: Option<u64>,
}

/// Converges records into a target, in order (idempotent: converging twice is a no-op).
/// Stops at the first unavailability, naming the record to resume from.
pub fn replay_target(
    records: impl Iterator<Item = Result<(Record, bool), OpsError>>,
    mapping: &crate::mapping::model::Mapping,
    target: &dyn crate::target::Target,
    dry_run: bool,
    mut progress: impl FnMut(u64),
) -> Result<TargetReplaySummary, OpsError> {
    let mut summary = TargetReplaySummary::default();
    // Changes go to the target a batch at a time (one commit of its own bookkeeping per
    // batch where it can), still in order.
    let mut batch: Vec<(u64, crate::target::Change)> = Vec::with_capacity(TARGET_BATCH);
    for item in records {
        let (record, was_rejected) = item?;
        summary.records += 1;
        summary.first.get_or_insert(record.seq);
        summary.last = Some(record.seq);
        if was_rejected {
            summary.skipped_rejected += 1;
            continue;
        }
        let change = match mapping.change(&record) {
            Ok(c) => c,
            Err(detail) => {
                summary.rejected.push((record.seq, detail));
                continue;
            }
        };
        if dry_run {
            summary.applied += 1;
            continue;
        }
        batch.push((record.seq, change));
        if batch.len() == TARGET_BATCH {
            apply_target_batch(target, std::mem::take(&mut batch), &mut summary)?;
            progress(summary.records);
        }
    }
    apply_target_batch(target, batch, &mut summary)?;
    progress(summary.records);
    Ok(summary)
}

/// Changes per `Target::apply_batch` during a replay into the target.
const TARGET_BATCH: usize = 256;

fn apply_target_batch(
    target: &dyn crate::target::Target,
    batch: Vec<(u64, crate::target::Change)>,
    summary: &mut TargetReplaySummary,
) -> Result<(), OpsError> {
    use crate::target::Outcome;
    if batch.is_empty() {
        return Ok(());
    }
    let changes: Vec<crate::target::Change> = batch.iter().map(|(_, c)| c.clone()).collect();
    let outcomes = target.apply_batch(&changes);
    for ((seq, _), outcome) in batch.iter().zip(outcomes) {
        match outcome {
            Outcome::Applied => summary.applied += 1,
            Outcome::Rejected(detail) => summary.rejected.push((*seq, detail)),
            Outcome::Unavailable(e) => {
                return Err(OpsError::Invalid(format!(
                    "the target is unavailable at record {seq}: {e}; records before it were applied, resume with --from {seq}"
                )));
            }
        }
    }
    Ok(())
}

/// The records of the local journal `from..=to` with their "rejected" flag.
pub fn db_records(
    store: &Store,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<Vec<(Record, bool)>, OpsError> {
    let mut out = Vec::new();
    store.read(|r| {
        r.journal_scan(
            &JournalQuery {
                from,
                to,
                ..Default::default()
            },
            |row| {
                out.push((row.record()?, row.delivery == "rejected"));
                Ok(())
            },
        )
    })?;
    Ok(out)
}

/// The records of an export file, chain-checked as they are read.
pub fn file_records(
    input: impl BufRead,
    from: Option<u64>,
    to: Option<u64>,
    allow_torn_tail: bool,
) -> Result<Vec<(Record, bool)>, OpsError> {
    let mut records = Checked::new(input, from, to, allow_torn_tail)?;
    let out = records
        .by_ref()
        .map(|item| item.map(|i| (i.record, false)))
        .collect::<Result<Vec<_>, _>>()?;
    records.finish(out.len() as u64)?;
    Ok(out)
}
