//! Operator actions on the journal, shared by the CLI and tests: list, show, verify,
//! export and replay. Each returns data; printing and exit codes belong to `main`.

use std::io::{BufRead, Write};
use std::sync::mpsc::{Receiver, Sender};

use serde_json::{Value, json};

use crate::journal::file::{self, FileReport, Header};
use crate::journal::record::{ChainCheck, Record, RecordHead, ZERO_HASH};
use crate::store::journal::{
    BulkImport, BulkRecord, ChainReport, ImageRow, JournalQuery, JournalRow,
};
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
/// its head, and either the record or, when the text was read as it stands (the usual
/// case for an export), the row its image gives.
struct Item {
    hash: String,
    text: String,
    head: RecordHead,
    content: Content,
}

enum Content {
    Record(Record),
    /// Read as text: the record is parsed from it only where the general path needs it.
    Text(Option<ImageRow>),
}

impl Item {
    fn of_record(hash: String, text: String, record: Record) -> Item {
        Item {
            hash,
            text,
            head: RecordHead::of(&record),
            content: Content::Record(record),
        }
    }

    fn record(self) -> Result<Record, StoreError> {
        match self.content {
            Content::Record(record) => Ok(record),
            Content::Text(_) => serde_json::from_str(&self.text).map_err(|e| {
                StoreError::Journal(format!("record {} does not parse: {e}", self.head.seq))
            }),
        }
    }
}

/// What consumes the chunks of a replay (on a thread of its own). It may hand chunks it
/// is done with back, to be freed by the thread that allocated them (the reader, which
/// has time to spare: a free from another thread costs the busy writer more).
type Applier<'s> = Box<
    dyn FnOnce(Receiver<Vec<Item>>, Sender<Vec<Item>>) -> Result<ReplaySummary, OpsError>
        + Send
        + 's,
>;

/// Applies chunks of records on a thread of their own while the caller reads and checks
/// the next chunk (two cores: reading and writing overlap). `produce` hands each chunk to
/// its argument, in order; the chunks are applied in that order, each in one write
/// transaction.
fn replay_chunks(
    store: &Store,
    import: bool,
    dry_run: bool,
    progress: impl FnMut(u64),
    produce: impl FnOnce(&mut dyn FnMut(Vec<Item>) -> Result<(), OpsError>) -> Result<(), OpsError>,
) -> Result<ReplaySummary, OpsError> {
    let apply: Applier<'_> = Box::new(move |rx, _| {
        let mut summary = ReplaySummary::default();
        for chunk in rx {
            apply_chunk(store, chunk, import, dry_run, &mut summary)?;
        }
        Ok(summary)
    });
    overlap(apply, progress, produce)
}

/// Replays into a store that is empty: every chunk goes into one write transaction, a
/// bulk load ([`Store::bulk_load`], [`BulkImport`]), which leaves the store empty again
/// should it fail.
fn replay_bulk(
    store: &Store,
    progress: impl FnMut(u64),
    produce: impl FnOnce(&mut dyn FnMut(Vec<Item>) -> Result<(), OpsError>) -> Result<(), OpsError>,
) -> Result<ReplaySummary, OpsError> {
    let apply: Applier<'_> = Box::new(move |rx, spent| {
        Ok(store.bulk_load(move |tx| {
            let mut bulk = BulkImport::start(tx)?;
            let mut summary = ReplaySummary::default();
            for chunk in rx {
                for item in &chunk {
                    let (row, record) = match &item.content {
                        Content::Record(record) => (None, Some(record.clone())),
                        Content::Text(row) => (row.as_ref(), None),
                    };
                    let (imported, applied) = bulk.import(
                        tx,
                        BulkRecord {
                            hash: &item.hash,
                            text: &item.text,
                            head: &item.head,
                            row,
                            record,
                        },
                    )?;
                    summary.records += 1;
                    summary.imported += u64::from(imported);
                    summary.applied += u64::from(applied);
                    summary.skipped += u64::from(!applied);
                }
                // The reader may have stopped (then it frees nothing more).
                let _ = spent.send(chunk);
            }
            Ok(summary)
        })?)
    });
    overlap(apply, progress, produce)
}

/// Runs `apply` on a thread of its own, handing it the chunks `produce` makes here.
fn overlap(
    apply: Applier<'_>,
    mut progress: impl FnMut(u64),
    produce: impl FnOnce(&mut dyn FnMut(Vec<Item>) -> Result<(), OpsError>) -> Result<(), OpsError>,
) -> Result<ReplaySummary, OpsError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Item>>(1);
        let (spent_tx, spent) = std::sync::mpsc::channel::<Vec<Item>>();
        let applier = scope.spawn(move || apply(rx, spent_tx));
        let mut read = 0u64;
        let (mut first, mut last) = (None, None);
        let produced = produce(&mut |chunk: Vec<Item>| {
            if let (Some(a), Some(b)) = (chunk.first(), chunk.last()) {
                first.get_or_insert(a.head.seq);
                last = Some(b.head.seq);
            }
            read += chunk.len() as u64;
            // A closed channel: the applier stopped on an error, which its join reports.
            if tx.send(chunk).is_ok() {
                progress(read);
            }
            spent.try_iter().for_each(drop);
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
            for item in chunk {
                if would_apply(r, &item.record()?)? {
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
                let (hash, text) = (item.hash.clone(), item.text.clone());
                let record = item.record()?;
                // A record just appended at the journal's head has nothing after it there.
                let appended = import && tx.journal_import(&hash, &text, &record)?;
                if appended {
                    imported += 1;
                }
                if tx.apply_record(record, !appended)? {
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
                    chunk.push(Item::of_record(row.hash, String::new(), record));
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
            let read = match self.reader.next_read()? {
                Ok(e) => e,
                Err(file::FileError::TornTail { .. }) if self.allow_torn_tail => return None,
                Err(e) => return Some(Err(e.into())),
            };
            let (line, offset, item) = match read {
                // The line is exactly what this program writes, its record text
                // canonical: that text is what was hashed, as it stands.
                file::RecordRead::Text(e) => {
                    let row = e
                        .image
                        .as_ref()
                        .and_then(|image| ImageRow::from_canonical(&e.head.kind, &e.text, image));
                    let item = Item {
                        hash: e.hash,
                        text: e.text,
                        head: e.head,
                        content: Content::Text(row),
                    };
                    (e.line, e.offset, item)
                }
                // Any other line: the record is written again in canonical form, and
                // that text is what is hashed (and what the local journal stores), so it
                // is canonical by construction.
                file::RecordRead::Parsed(e) => {
                    let text = e.record.canonical_json();
                    (e.line, e.offset, Item::of_record(e.hash, text, e.record))
                }
            };
            if let Err(d) =
                self.check
                    .feed_stored(&item.hash, &item.text, item.head.seq, &item.head.prev)
            {
                return Some(Err(OpsError::Invalid(format!(
                    "line {line} (byte {offset}): {d}; nothing after record {} was replayed",
                    self.check
                        .last_intact()
                        .map_or("(none)".into(), |s| s.to_string())
                ))));
            }
            let seq = item.head.seq;
            if self.from.is_some_and(|f| seq < f) || self.to.is_some_and(|t| seq > t) {
                continue;
            }
            return Some(Ok(item));
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
    let bulk = !dry_run && store.is_empty()?;
    replay_file_with(
        store,
        input,
        from,
        to,
        dry_run,
        allow_torn_tail,
        bulk,
        progress,
    )
}

/// [`replay_file`]; `bulk`: as one bulk load ([`replay_bulk`]; the store must be empty).
#[allow(clippy::too_many_arguments)]
fn replay_file_with(
    store: &Store,
    input: impl BufRead,
    from: Option<u64>,
    to: Option<u64>,
    dry_run: bool,
    allow_torn_tail: bool,
    bulk: bool,
    progress: impl FnMut(u64),
) -> Result<ReplaySummary, OpsError> {
    let mut records = Checked::new(input, from, to, allow_torn_tail)?;
    let records_ref = &mut records;
    let produce = |apply: &mut dyn FnMut(Vec<Item>) -> Result<(), OpsError>| {
        let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
        for item in records_ref.by_ref() {
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
    };
    let summary = if bulk {
        replay_bulk(store, progress, produce)?
    } else {
        replay_chunks(store, true, dry_run, progress, produce)?
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
        .map(|item| item.and_then(|i| Ok((i.record()?, false))))
        .collect::<Result<Vec<_>, _>>()?;
    records.finish(out.len() as u64)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::journal::record::{MemberDelta, Op};

    fn user(id: &str, user_name: &str, version: i64, extra: Value) -> Value {
        let mut image = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": id,
            "userName": user_name,
            "name": {"givenName": "Zoë \"Q\"\u{1}\t", "familyName": "Ångström\u{2028}"},
            "meta": {
                "resourceType": "User",
                "created": "2026-01-02T03:04:05.678Z",
                "lastModified": format!("2026-01-02T03:04:{:02}.000Z", version),
                "version": format!("W/\"{version}\"")
            }
        });
        if let (Some(image), Value::Object(extra)) = (image.as_object_mut(), extra) {
            image.extend(extra);
        }
        image
    }

    fn group(id: &str, name: &str, version: i64, members: Option<Value>) -> Value {
        let mut image = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": id,
            "displayName": name,
            "meta": {
                "resourceType": "Group",
                "created": "2026-01-02T03:04:05.678Z",
                "lastModified": format!("2026-01-02T03:05:{:02}.000Z", version),
                "version": format!("W/\"{version}\"")
            }
        });
        if let (Some(image), Some(members)) = (image.as_object_mut(), members) {
            image.insert("members".into(), members);
        }
        image
    }

    /// (op, kind, id, version_before, version_after, image, member_delta) of a record.
    type Step = (
        Op,
        &'static str,
        &'static str,
        Option<i64>,
        Option<i64>,
        Value,
        Option<MemberDelta>,
    );

    /// A history with every kind of record: creates, replaces, patches, a member delta,
    /// a delete, a purge, a member listed twice, escapes and non-ASCII text.
    fn history() -> Vec<(String, Record)> {
        let m = |id: &str| json!({"value": id, "type": "User"});
        let steps: Vec<Step> = vec![
            (
                Op::Create,
                "User",
                "u1",
                None,
                Some(1),
                user("u1", "zoë@example.com", 1, json!({"externalId": "e\"1"})),
                None,
            ),
            (
                Op::Create,
                "User",
                "u2",
                None,
                Some(1),
                user(
                    "u2",
                    "Two@Example.com",
                    1,
                    json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "u1"}}}),
                ),
                None,
            ),
            (
                Op::Create,
                "Group",
                "g1",
                None,
                Some(1),
                group(
                    "g1",
                    "Ingénieurs \"R&D\"",
                    1,
                    Some(
                        json!([{"value": "u1", "type": "User", "display": "Zoë"}, m("u2"), m("u1")]),
                    ),
                ),
                None,
            ),
            (
                Op::Patch,
                "User",
                "u1",
                Some(1),
                Some(2),
                user(
                    "u1",
                    "zoe@example.com",
                    2,
                    json!({"active": false, "costCenter": 4130.5}),
                ),
                None,
            ),
            (
                Op::Create,
                "User",
                "u3",
                None,
                Some(1),
                user("u3", "three@example.com", 1, json!({})),
                None,
            ),
            (
                Op::Patch,
                "Group",
                "g1",
                Some(1),
                Some(2),
                group("g1", "Ingénieurs", 2, None),
                Some(MemberDelta {
                    added: vec![m("u3")],
                    removed: vec!["u2".into()],
                }),
            ),
            (
                Op::Delete,
                "User",
                "u2",
                Some(1),
                None,
                user("u2", "Two@Example.com", 1, json!({})),
                None,
            ),
            (
                Op::Replace,
                "Group",
                "g1",
                Some(2),
                Some(3),
                group("g1", "Ingénieurs", 3, Some(json!([m("u3"), m("u1")]))),
                None,
            ),
            (
                Op::Create,
                "Group",
                "g2",
                None,
                Some(1),
                group("g2", "Empty", 1, None),
                None,
            ),
            (
                Op::Purge,
                "Group",
                "g2",
                Some(1),
                None,
                group("g2", "Empty", 1, None),
                None,
            ),
            (
                Op::Create,
                "User",
                "u4",
                None,
                Some(1),
                user("u4", "two-again@example.com", 1, json!({})),
                None,
            ),
            (
                Op::Create,
                "Group",
                "g3",
                None,
                Some(1),
                group(
                    "g3",
                    "Nested",
                    1,
                    Some(json!([{"value": "g1", "type": "Group"}, m("u2")])),
                ),
                None,
            ),
        ];
        let mut prev = ZERO_HASH.to_string();
        let mut out = Vec::new();
        for (i, (op, kind, id, version_before, version_after, image, member_delta)) in
            steps.into_iter().enumerate()
        {
            let seq = i as u64 + 1;
            let record = Record {
                seq,
                prev: prev.clone(),
                time: format!("2026-01-02T03:06:{seq:02}.000Z"),
                endpoint: "default".into(),
                actor: if seq.is_multiple_of(3) {
                    "cli"
                } else {
                    "entra \"prod\""
                }
                .into(),
                client: seq.is_multiple_of(2).then(|| "10.0.0.1".into()),
                request_id: (!seq.is_multiple_of(2)).then(|| format!("req-{seq}")),
                op,
                kind: kind.into(),
                id: id.into(),
                version_before,
                version_after,
                image,
                member_delta,
            };
            prev = record.hash();
            out.push((prev.clone(), record));
        }
        out
    }

    fn export(records: &[(String, Record)]) -> Vec<u8> {
        let header = Header {
            format: file::FORMAT.into(),
            version: file::VERSION,
            origin: "test".into(),
            first_seq: 1,
            last_seq: records.len() as u64,
            prev: ZERO_HASH.into(),
            exported_at: "2026-01-02T03:07:00.000Z".into(),
        };
        let mut writer = file::Writer::new(Vec::new(), &header).expect("header is valid");
        for (hash, record) in records {
            writer.write(hash, record).expect("writes to memory");
        }
        writer.finish().expect("flushes")
    }

    /// Every row of every table but the store's own origin, as text.
    fn dump(store: &Store) -> Vec<String> {
        let conn = rusqlite::Connection::open(store.path()).expect("opens");
        let mut out = Vec::new();
        for sql in [
            "SELECT * FROM journal ORDER BY seq",
            "SELECT * FROM resources ORDER BY seq",
            "SELECT * FROM members ORDER BY pos",
            "SELECT * FROM meta WHERE key <> 'origin' ORDER BY key",
            "SELECT name FROM sqlite_master ORDER BY name",
        ] {
            let mut stmt = conn.prepare(sql).expect("prepares");
            let columns = stmt.column_count();
            let rows = stmt
                .query_map([], |row| {
                    (0..columns)
                        .map(|i| Ok(format!("{:?}", row.get_ref(i)?)))
                        .collect::<Result<Vec<_>, rusqlite::Error>>()
                })
                .expect("queries");
            for row in rows {
                out.push(row.expect("row").join(" | "));
            }
        }
        out
    }

    fn replay(store: &Store, bytes: &[u8], bulk: bool) -> Result<ReplaySummary, OpsError> {
        replay_file_with(store, bytes, None, None, false, false, bulk, |_| {})
    }

    #[test]
    fn a_replay_into_an_empty_store_equals_the_general_replay_row_for_row() {
        let bytes = export(&history());
        let (bulk_dir, general_dir) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let bulk = Store::open(bulk_dir.path()).expect("opens");
        let general = Store::open(general_dir.path()).expect("opens");
        let summary = replay(&bulk, &bytes, true).expect("replays");
        assert_eq!(summary, replay(&general, &bytes, false).expect("replays"));
        assert_eq!(
            (summary.records, summary.imported, summary.applied),
            (12, 12, 12)
        );
        assert_eq!(dump(&bulk), dump(&general));
        let mode: String = rusqlite::Connection::open(bulk.path())
            .and_then(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .expect("reads the journal mode");
        assert_eq!(mode, "wal", "the bulk load leaves the store in WAL mode");
        assert!(
            bulk.read(|r| r.journal_verify())
                .expect("verifies")
                .is_intact()
        );
        // Replaying again (the store is not empty: the general path) changes nothing.
        let again = replay(&bulk, &bytes, false).expect("replays");
        assert_eq!((again.applied, again.imported, again.skipped), (0, 0, 12));
        assert_eq!(dump(&bulk), dump(&general));
    }

    #[test]
    fn a_line_in_an_equivalent_but_not_canonical_form_is_replayed_as_before() {
        let records = history();
        let text = String::from_utf8(export(&records)).expect("UTF-8");
        assert!(text.contains("\\t"));
        // Same records, other bytes: the record is rebuilt and hashed in canonical form.
        let edited = text
            .replacen("\\t", "\\u0009", 1)
            .replacen("\"seq\":2,", "\"seq\": 2,", 1);
        assert_ne!(edited, text);
        let (a, b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (a, b) = (
            Store::open(a.path()).expect("opens"),
            Store::open(b.path()).expect("opens"),
        );
        replay(&a, text.as_bytes(), true).expect("replays");
        replay(&b, edited.as_bytes(), true).expect("replays the equivalent line");
        assert_eq!(dump(&a), dump(&b));
    }

    #[test]
    fn a_tampered_record_is_refused_with_its_line_and_the_records_before_it_are_replayed() {
        let bytes = export(&history());
        let text = String::from_utf8(bytes.clone()).expect("UTF-8");
        // Line 5 is record 4: its userName loses a bit.
        let start: usize = text.split_inclusive('\n').take(4).map(str::len).sum();
        let at = start + text[start..].find("zoe@").expect("the name");
        let mut tampered = bytes;
        tampered[at] ^= 0x01;
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("opens");
        let err = replay(&store, &tampered, true)
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with(&format!("line 5 (byte {start}): record 4: hash mismatch")),
            "{err}"
        );
        assert!(
            err.ends_with("nothing after record 3 was replayed"),
            "{err}"
        );
        let journal = store.read(|r| r.journal_head()).expect("reads");
        assert_eq!(journal.0, 3);
        assert_eq!(
            store
                .read(|r| r.journal_verify())
                .expect("verifies")
                .last_intact,
            Some(3)
        );
    }

    #[test]
    fn a_failed_bulk_replay_leaves_the_store_empty() {
        let mut records = history();
        // Record 5 creates a second user named like record 4's (which renamed u1).
        if let Some(Value::Object(image)) = records.get_mut(4).map(|r| &mut r.1.image) {
            image.insert("userName".into(), Value::from("ZOE@example.com"));
        }
        let mut prev = ZERO_HASH.to_string();
        for (hash, record) in &mut records {
            record.prev = prev;
            *hash = record.hash();
            prev = hash.clone();
        }
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("opens");
        let err = replay(&store, &export(&records), true)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("'ZOE@example.com' is already taken"), "{err}");
        assert!(store.is_empty().expect("reads"), "all or nothing");
        assert_eq!(
            dump(&store),
            dump(&Store::open(tempfile::tempdir().expect("dir").path()).expect("opens"))
        );
    }
}
