//! The journal table (docs/journal-format.md): appending records in the writer's
//! transaction, reading them back, verifying the chain, and applying a record's image to
//! the state tables (replay).

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::{Reader, StoreError, Stored, WriteTx, meta_get};
use crate::journal::record::{ChainCheck, Damage, MemberDelta, Op, Record, ZERO_HASH, hash_text};
use crate::scim::schema::ResourceKind;

/// What the engine knows about a change; the store adds `seq`, `prev` and the hash.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub time: String,
    pub endpoint: String,
    pub actor: String,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub op: Op,
    pub kind: ResourceKind,
    pub id: String,
    pub version_before: Option<i64>,
    pub version_after: Option<i64>,
    pub image: Value,
    pub member_delta: Option<MemberDelta>,
}

/// A record as stored, with its delivery state.
#[derive(Debug, Clone)]
pub struct JournalRow {
    pub seq: u64,
    pub hash: String,
    pub text: String,
    pub delivery: String,
    pub delivery_detail: Option<String>,
}

impl JournalRow {
    pub fn record(&self) -> Result<Record, StoreError> {
        serde_json::from_str(&self.text)
            .map_err(|e| StoreError::Journal(format!("record {} does not parse: {e}", self.seq)))
    }
}

/// A parsed journal row.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub row: JournalRow,
    pub record: Record,
}

/// Selection for `journal list` / `export`.
#[derive(Debug, Clone, Default)]
pub struct JournalQuery {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub since: Option<String>,
    pub resource: Option<String>,
    pub actor: Option<String>,
    pub delivery: Option<String>,
}

/// The result of verifying the journal table.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub records: u64,
    pub first: Option<u64>,
    pub last_intact: Option<u64>,
    pub damage: Option<Damage>,
    /// `PRAGMA quick_check` problems, if any.
    pub integrity: Vec<String>,
}

impl ChainReport {
    pub fn is_intact(&self) -> bool {
        self.damage.is_none() && self.integrity.is_empty()
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JournalRow> {
    Ok(JournalRow {
        seq: r.get::<_, i64>(0)? as u64,
        hash: r.get(1)?,
        text: r.get(2)?,
        delivery: r.get(3)?,
        delivery_detail: r.get(4)?,
    })
}

const ROW_COLUMNS: &str = "seq, hash, record, delivery, delivery_detail";

impl Reader<'_> {
    /// `(seq, hash)` of the last record, or the base the chain continues from.
    pub fn journal_head(&self) -> Result<(u64, String), StoreError> {
        let last: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match last {
            Some((seq, hash)) => Ok((seq as u64, hash)),
            None => self.journal_base(),
        }
    }

    /// The record the table starts after: `(0, zeros)` unless older records were archived.
    pub fn journal_base(&self) -> Result<(u64, String), StoreError> {
        let seq = meta_get(self.conn, "journal_base_seq")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let hash = meta_get(self.conn, "journal_base_hash")?.unwrap_or_else(|| ZERO_HASH.into());
        Ok((seq, hash))
    }

    pub fn journal_get(&self, seq: u64) -> Result<Option<JournalRow>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM journal WHERE seq = ?1"))?
            .query_row([seq as i64], row)
            .optional()?)
    }

    /// Rows matching a query, in sequence order, handed to `each` one by one (exports can
    /// be larger than memory).
    pub fn journal_scan(
        &self,
        q: &JournalQuery,
        mut each: impl FnMut(JournalRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut clauses = vec!["seq >= ?1".to_string(), "seq <= ?2".to_string()];
        let mut args: Vec<rusqlite::types::Value> = vec![
            (q.from.unwrap_or(0) as i64).into(),
            (q.to
                .map(|t| t.min(i64::MAX as u64) as i64)
                .unwrap_or(i64::MAX))
            .into(),
        ];
        for (column, value) in [
            ("time >= ", &q.since),
            ("resource_id = ", &q.resource),
            ("actor = ", &q.actor),
            ("delivery = ", &q.delivery),
        ] {
            if let Some(v) = value {
                args.push(v.clone().into());
                clauses.push(format!("{column}?{}", args.len()));
            }
        }
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM journal WHERE {} ORDER BY seq",
            clauses.join(" AND ")
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row)?;
        for r in rows {
            each(r?)?;
        }
        Ok(())
    }

    /// Whether the journal holds a deletion of the record's resource after the record.
    pub fn deleted_later(&self, record: &Record) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM journal WHERE resource_id = ?1 AND seq > ?2 \
                 AND json_extract(record, '$.op') IN ('delete', 'purge') LIMIT 1",
            )?
            .query_row(params![record.id, record.seq as i64], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Checks the database (`PRAGMA quick_check`) and the whole chain: every record's hash,
    /// its `prev` link, gap-free sequence numbers, that its text is canonical, and the
    /// derived columns.
    pub fn journal_verify(&self) -> Result<ChainReport, StoreError> {
        let integrity = self.quick_check()?;
        let mut report = self.journal_chain(true)?;
        report.integrity = integrity;
        Ok(report)
    }

    /// `PRAGMA quick_check`: the problems it lists (none when the database is sound).
    pub fn quick_check(&self) -> Result<Vec<String>, StoreError> {
        let mut integrity = Vec::new();
        let mut stmt = self.conn.prepare("PRAGMA quick_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for r in rows {
            let line = r?;
            if line != "ok" {
                integrity.push(line);
            }
        }
        Ok(integrity)
    }

    /// Walks the chain. `canonical`: also check that each text is the canonical form of
    /// its record (a full parse and re-serialisation per record); without it, only what a
    /// record's head says is read (`seq`, `prev` and the copied columns) and its text is
    /// trusted to be as this program wrote it, which its hash then proves.
    pub fn journal_chain(&self, canonical: bool) -> Result<ChainReport, StoreError> {
        let (base_seq, base_hash) = self.journal_base()?;
        let mut check = ChainCheck::new(Some(base_seq + 1), &base_hash);
        let mut records = 0;
        let mut first = None;
        let report = |records, first, check: &ChainCheck, damage| ChainReport {
            records,
            first,
            last_intact: check.last_intact(),
            damage: Some(damage),
            integrity: Vec::new(),
        };
        let mut stmt = self.conn.prepare(
            "SELECT seq, hash, record, time, resource_id, actor FROM journal ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, i64>(0)? as u64;
            let hash = text_at(r, 1)?;
            let text = text_at(r, 2)?;
            records += 1;
            first.get_or_insert(seq);
            let head: Head<'_> = match serde_json::from_str(text) {
                Ok(head) => head,
                Err(_) => {
                    return Ok(report(records, first, &check, Damage::NotCanonical { seq }));
                }
            };
            if head.seq != seq {
                let what = format!(
                    "the row's seq {seq} differs from the record's seq {}",
                    head.seq
                );
                return Ok(report(
                    records,
                    first,
                    &check,
                    Damage::Mismatch { seq, what },
                ));
            }
            let fed = if canonical {
                match serde_json::from_str::<Record>(text) {
                    Ok(record) => check.feed(hash, text, &record),
                    Err(_) => Err(Damage::NotCanonical { seq }),
                }
            } else {
                check.feed_stored(hash, text, seq, &head.prev)
            };
            if let Err(damage) = fed {
                return Ok(report(records, first, &check, damage));
            }
            let (time, resource_id, actor) = (text_at(r, 3)?, text_at(r, 4)?, text_at(r, 5)?);
            if time != head.time || resource_id != head.id || actor != head.actor {
                let damage = Damage::Mismatch {
                    seq,
                    what: "the time/resource/actor columns differ from the record".into(),
                };
                let mut out = report(records, first, &check, damage);
                out.last_intact = Some(seq - 1).filter(|s| *s > base_seq);
                return Ok(out);
            }
        }
        Ok(ChainReport {
            records,
            first,
            last_intact: check.last_intact(),
            damage: None,
            integrity: Vec::new(),
        })
    }
}

/// A TEXT column of a journal row, borrowed.
fn text_at<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    row.get_ref(i)?
        .as_str()
        .map_err(|e| StoreError::Journal(format!("a journal row's column {i}: {e}")))
}

/// What the chain check reads of a record: its head (the image is skipped, not built).
#[derive(serde::Deserialize)]
struct Head<'a> {
    seq: u64,
    #[serde(borrow)]
    prev: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    actor: std::borrow::Cow<'a, str>,
}

impl super::Store {
    /// The check at startup: `PRAGMA quick_check` and the chain without re-serialising
    /// records ([`Reader::journal_chain`]), the two at once on two connections.
    pub fn verify_at_start(&self) -> Result<ChainReport, StoreError> {
        std::thread::scope(|scope| {
            let integrity = scope.spawn(|| self.read(|r| r.quick_check()));
            let chain = self.read(|r| r.journal_chain(false));
            let integrity = integrity.join().map_err(|_| {
                StoreError::Journal("the database check failed unexpectedly".into())
            })??;
            let mut report = chain?;
            report.integrity = integrity;
            Ok(report)
        })
    }
}

impl Reader<'_> {
    /// The oldest records still pending delivery, in order (a restart resumes here).
    pub fn journal_pending(&self, limit: usize) -> Result<Vec<JournalRow>, StoreError> {
        self.journal_pending_after(0, limit)
    }

    /// The oldest records still pending delivery after record `after`, in order.
    pub fn journal_pending_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM journal WHERE delivery = 'pending' AND seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![after as i64, limit as i64], row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The last record that retention may drop: the largest prefix beyond any limit,
    /// stopped before the first record still pending delivery.
    pub fn retention_cutoff(
        &self,
        older_than: Option<&str>,
        max_records: Option<u64>,
        max_bytes: Option<u64>,
    ) -> Result<u64, StoreError> {
        let (base, _) = self.journal_base()?;
        let mut cutoff = base;
        if let Some(time) = older_than {
            let by_age: Option<i64> = self.conn.query_row(
                "SELECT max(seq) FROM journal WHERE time < ?1",
                [time],
                |r| r.get(0),
            )?;
            cutoff = cutoff.max(by_age.unwrap_or(0) as u64);
        }
        let (count, bytes): (i64, i64) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(length(record)), 0) FROM journal",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if let Some(max) = max_records
            && count as u64 > max
        {
            let drop = count as u64 - max;
            let by_count: i64 = self.conn.query_row(
                "SELECT seq FROM journal ORDER BY seq LIMIT 1 OFFSET ?1",
                [drop as i64 - 1],
                |r| r.get(0),
            )?;
            cutoff = cutoff.max(by_count as u64);
        }
        if let Some(max) = max_bytes
            && bytes as u64 > max
        {
            let mut excess = bytes as u64 - max;
            let mut stmt = self
                .conn
                .prepare("SELECT seq, length(record) FROM journal ORDER BY seq")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let (seq, len): (i64, i64) = (r.get(0)?, r.get(1)?);
                cutoff = cutoff.max(seq as u64);
                excess = excess.saturating_sub(len as u64);
                if excess == 0 {
                    break;
                }
            }
        }
        let first_pending: Option<i64> = self.conn.query_row(
            "SELECT min(seq) FROM journal WHERE delivery = 'pending'",
            [],
            |r| r.get(0),
        )?;
        if let Some(p) = first_pending {
            cutoff = cutoff.min((p as u64).saturating_sub(1));
        }
        Ok(cutoff.max(base))
    }
}

impl WriteTx<'_> {
    /// Records a target's verdict on a record (the durable delivery cursor).
    pub fn journal_mark(
        &self,
        seq: u64,
        delivery: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let n = self
            .tx
            .prepare_cached(
                "UPDATE journal SET delivery = ?2, delivery_detail = ?3 WHERE seq = ?1",
            )?
            .execute(params![seq as i64, delivery, detail])?;
        if n == 0 {
            return Err(StoreError::Journal(format!(
                "no record {seq} to mark {delivery}"
            )));
        }
        Ok(())
    }

    /// Makes the records after `through` that are marked `applied` pending again (the
    /// target lost them: its delivery cursor is at `through`); returns how many.
    pub fn journal_redeliver_after(&self, through: u64) -> Result<u64, StoreError> {
        let n = self
            .tx
            .prepare_cached(
                "UPDATE journal SET delivery = 'pending', delivery_detail = NULL \
                 WHERE seq > ?1 AND delivery = 'applied'",
            )?
            .execute([through as i64])?;
        Ok(n as u64)
    }

    /// Drops records up to `last` (already archived), keeping the chain verifiable from
    /// the new base. Refuses when any of them is pending delivery.
    pub fn journal_drop_through(&self, last: u64) -> Result<u64, StoreError> {
        let r = self.reader();
        let pending: i64 = self.tx.query_row(
            "SELECT count(*) FROM journal WHERE seq <= ?1 AND delivery = 'pending'",
            [last as i64],
            |row| row.get(0),
        )?;
        if pending > 0 {
            return Err(StoreError::Journal(format!(
                "records up to {last} include {pending} pending delivery; they are kept"
            )));
        }
        let Some(boundary) = r.journal_get(last)? else {
            return Err(StoreError::Journal(format!(
                "no record {last} to drop through"
            )));
        };
        let n = self
            .tx
            .execute("DELETE FROM journal WHERE seq <= ?1", [last as i64])?;
        self.meta_set("journal_base_seq", &last.to_string())?;
        self.meta_set("journal_base_hash", &boundary.hash)?;
        Ok(n as u64)
    }

    /// Appends one record after the current head; returns its sequence number and hash.
    /// A `pending` record is also kept for the commit listener ([`super::Store::on_commit`]).
    pub fn journal_append(
        &self,
        new: NewRecord,
        delivery: &str,
    ) -> Result<(u64, String), StoreError> {
        let (last_seq, last_hash) = self.reader().journal_head()?;
        let record = Record {
            seq: last_seq + 1,
            prev: last_hash,
            time: new.time,
            endpoint: new.endpoint,
            actor: new.actor,
            client: new.client,
            request_id: new.request_id,
            op: new.op,
            kind: new.kind.name().to_string(),
            id: new.id,
            version_before: new.version_before,
            version_after: new.version_after,
            image: new.image,
            member_delta: new.member_delta,
        };
        let text = record.canonical_json();
        let hash = hash_text(&text);
        self.journal_insert(Copies::of(&record), &text, &hash, delivery)?;
        let seq = record.seq;
        if delivery == "pending" {
            self.appended.borrow_mut().push(record);
        }
        Ok((seq, hash))
    }

    fn journal_insert(
        &self,
        copies: Copies<'_>,
        text: &str,
        hash: &str,
        delivery: &str,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO journal (seq, record, hash, time, resource_id, actor, delivery) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                copies.seq as i64,
                text,
                hash,
                copies.time,
                copies.id,
                copies.actor,
                delivery
            ])?;
        Ok(())
    }

    /// Makes the local journal hold `record` (replay of an export): appended verbatim when
    /// it continues the chain, accepted when the same record is already there, refused
    /// when a different history holds its place. An empty journal may start anywhere.
    /// `text` is the record's canonical JSON (as the caller checked it against `hash`;
    /// the hash is checked again here, cheaply, so a mismatch is never stored).
    pub fn journal_import(
        &self,
        hash: &str,
        text: &str,
        record: &Record,
    ) -> Result<bool, StoreError> {
        let r = self.reader();
        if let Some(existing) = r.journal_get(record.seq)? {
            if existing.hash == hash {
                return Ok(false);
            }
            return Err(StoreError::Journal(format!(
                "record {} differs from the local journal's record {} (another history); replay into an empty state directory",
                record.seq, record.seq
            )));
        }
        let (head_seq, head_hash) = r.journal_head()?;
        let empty = self
            .tx
            .prepare_cached("SELECT 1 FROM journal LIMIT 1")?
            .query_row([], |_| Ok(()))
            .optional()?
            .is_none();
        if empty && head_seq == 0 && record.seq > 1 {
            // A rebuilt store that starts from an export of a later range.
            self.meta_set("journal_base_seq", &(record.seq - 1).to_string())?;
            self.meta_set("journal_base_hash", &record.prev)?;
        } else if record.seq != head_seq + 1 || record.prev != head_hash {
            return Err(StoreError::Journal(format!(
                "record {} does not continue the local journal (its head is record {head_seq})",
                record.seq
            )));
        }
        if hash_text(text) != hash {
            return Err(StoreError::Journal(format!(
                "record {}: hash mismatch",
                record.seq
            )));
        }
        self.journal_insert(Copies::of(record), text, hash, "none")?;
        Ok(true)
    }

    pub fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
            .execute(params![key, value])?;
        Ok(())
    }

    /// Brings the state tables to a record's image. Returns false when the resource is
    /// already at that version or later (replay is idempotent).
    pub fn apply_image(&self, record: Record) -> Result<bool, StoreError> {
        self.apply_record(record, true)
    }

    /// [`apply_image`](Self::apply_image); `later_known`: the journal may hold records
    /// after this one, so a later deletion is looked for. False for a record that was
    /// just appended at the journal's head: nothing later is there.
    pub fn apply_record(&self, record: Record, later_known: bool) -> Result<bool, StoreError> {
        let kind = ResourceKind::from_name(&record.kind).ok_or_else(|| {
            StoreError::Journal(format!(
                "record {}: unknown kind '{}'",
                record.seq, record.kind
            ))
        })?;
        let r = self.reader();
        let current = r.get_without_members(kind, &record.id)?;
        match record.op {
            Op::Delete | Op::Purge => match current {
                // A resource re-created later has a newer version than the deleted one.
                Some(c) if record.version_before.is_none_or(|v| c.version <= v) => {
                    self.delete(&record.id)?;
                    Ok(true)
                }
                _ => Ok(false),
            },
            Op::Create | Op::Replace | Op::Patch => {
                let version = record.version_after.ok_or_else(|| {
                    StoreError::Journal(format!("record {}: no version_after", record.seq))
                })?;
                if current.as_ref().is_some_and(|c| c.version >= version) {
                    return Ok(false);
                }
                if current.is_none() && later_known && r.deleted_later(&record)? {
                    // The journal already holds this resource's deletion: re-creating it
                    // only to delete it again would be churn, not replay.
                    return Ok(false);
                }
                if let Some(delta) = &record.member_delta {
                    // Needs the members before it, which an in-order replay has.
                    if current.is_none() {
                        return Err(StoreError::Journal(format!(
                            "record {}: a member change of group {} that the state does not hold (replay the journal from the group's creation)",
                            record.seq, record.id
                        )));
                    }
                    self.apply_member_delta(&record.id, delta)?;
                    let actor = record.actor.clone();
                    let stored = stored_from_image(record, kind, version)?;
                    self.update_without_members(&stored, &actor)?;
                    return Ok(true);
                }
                let actor = record.actor.clone();
                let stored = stored_from_image(record, kind, version)?;
                match current {
                    Some(_) => self.update(&stored, &actor)?,
                    None => self.insert(&stored, &actor)?,
                }
                Ok(true)
            }
        }
    }
}

/// The stored resource a record's image describes, at `version`.
fn stored_from_image(
    record: Record,
    kind: ResourceKind,
    version: i64,
) -> Result<Stored, StoreError> {
    let Value::Object(doc) = record.image else {
        return Err(StoreError::Journal(format!(
            "record {}: image is not an object",
            record.seq
        )));
    };
    let meta = |k: &str| {
        doc.get("meta")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                StoreError::Journal(format!("record {}: image has no meta.{k}", record.seq))
            })
    };
    Ok(Stored {
        kind,
        id: record.id,
        version,
        created: meta("created")?,
        last_modified: meta("lastModified")?,
        doc,
    })
}

/// A resource row as a record's canonical image text gives it, without building the
/// image: the same columns [`WriteTx::apply_record`] derives from the parsed image
/// (`stored_from_image`, `insert`), read from the text's members.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    kind: ResourceKind,
    unique_key: String,
    /// The unique attribute as sent (for the error naming a duplicate).
    unique_value: String,
    external_id: Option<String>,
    created: String,
    last_modified: String,
    /// The `body` column: the image without `members`, still canonical.
    body: String,
    /// A group's `members` as listed (id, `type`, `display`), those with a string
    /// `value`, in order.
    members: Vec<(String, Option<String>, Option<String>)>,
}

impl ImageRow {
    /// The row of an image whose members `image` lists as spans of `text` (the record's
    /// canonical text). `None` when the image is unusual (an unknown kind, no
    /// `meta.created`/`lastModified` strings): the record then takes the general path,
    /// which says what is wrong.
    pub fn from_canonical(
        kind: &str,
        text: &str,
        image: &crate::journal::record::Members,
    ) -> Option<ImageRow> {
        let kind = ResourceKind::from_name(kind)?;
        let meta_text = image.raw(text, "meta")?;
        let (meta, _) = crate::journal::record::canonical_object(meta_text, None)?;
        let unique_value = image
            .str(text, kind.unique_attr())
            .map(std::borrow::Cow::into_owned)
            .unwrap_or_default();
        let members = match image.raw(text, "members") {
            Some(raw) if kind == ResourceKind::Group => {
                let listed: Value = serde_json::from_str(raw).ok()?;
                let text_of =
                    |m: &Value, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
                listed
                    .as_array()
                    .map(|listed| {
                        listed
                            .iter()
                            .filter_map(|m| {
                                Some((
                                    text_of(m, "value")?,
                                    text_of(m, "type"),
                                    text_of(m, "display"),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let mut body = String::with_capacity(text.len());
        body.push('{');
        for member in image.iter() {
            let whole = text.get(member.whole.clone())?;
            if whole.starts_with("\"members\":") {
                continue;
            }
            if body.len() > 1 {
                body.push(',');
            }
            body.push_str(whole);
        }
        body.push('}');
        Some(ImageRow {
            kind,
            unique_key: crate::scim::resource::fold(&unique_value),
            unique_value,
            external_id: image
                .str(text, "externalId")
                .map(std::borrow::Cow::into_owned),
            created: meta.str(meta_text, "created")?.into_owned(),
            last_modified: meta.str(meta_text, "lastModified")?.into_owned(),
            body,
            members,
        })
    }
}

/// A replay of an export inside one write transaction ([`super::Store::bulk_load`]):
/// [`journal_import`](WriteTx::journal_import) and [`apply_record`](WriteTx::apply_record)
/// per record, with what they look up per record kept in memory instead. The journal's
/// head is known (only this replay writes), so a record that continues it is appended
/// without reading the table; and when the store held no resource at the start, a
/// resource this replay has not touched yet does not exist, so a record creating it is
/// inserted from its [`ImageRow`] without reading, parsing or re-serialising anything.
/// Every other record takes the general path, unchanged.
pub struct BulkImport {
    head: (u64, String),
    /// The journal table has no rows (none when the load began, none appended since).
    journal_empty: bool,
    /// Ids of every resource a record named so far; `None` when the store held resources
    /// at the start (then nothing is known to be absent).
    touched: Option<std::collections::HashSet<String>>,
    /// The indexes the general path needs and a bulk load drops were built again: before
    /// the first deletion (`members_by_member`), before the first record not appended
    /// (`journal_by_resource`, for `deleted_later`).
    members_indexed: bool,
    journal_indexed: bool,
}

/// One record for [`BulkImport::import`]: the checked hash and canonical text, the head,
/// and the image's row or the record itself (either may be missing; the record is then
/// parsed from the text when the general path needs it).
pub struct BulkRecord<'a> {
    pub hash: &'a str,
    pub text: &'a str,
    pub head: &'a crate::journal::record::RecordHead,
    pub row: Option<&'a ImageRow>,
    pub record: Option<Record>,
}

impl BulkImport {
    /// Starts a bulk import in `tx`, reading the journal's head and whether the store
    /// holds anything.
    pub fn start(tx: &WriteTx<'_>) -> Result<BulkImport, StoreError> {
        let r = tx.reader();
        let (resources, journal): (bool, bool) = tx.tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM resources), EXISTS (SELECT 1 FROM journal)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok(BulkImport {
            head: r.journal_head()?,
            journal_empty: !journal,
            touched: (!resources).then(std::collections::HashSet::new),
            members_indexed: false,
            journal_indexed: false,
        })
    }

    /// Imports one record and applies it, as `journal_import` then `apply_record` would:
    /// returns (appended to the journal, applied to the state). The record's hash must
    /// have been checked against its text (the chain check of the reader), which is not
    /// repeated here.
    pub fn import(
        &mut self,
        tx: &WriteTx<'_>,
        item: BulkRecord<'_>,
    ) -> Result<(bool, bool), StoreError> {
        let BulkRecord {
            hash,
            text,
            head,
            row,
            mut record,
        } = item;
        let parse = |record: &mut Option<Record>| -> Result<Record, StoreError> {
            match record.take() {
                Some(r) => Ok(r),
                None => serde_json::from_str(text).map_err(|e| {
                    StoreError::Journal(format!("record {} does not parse: {e}", head.seq))
                }),
            }
        };
        let continues = head.seq == self.head.0.wrapping_add(1) && head.prev == self.head.1;
        let starts_later = self.journal_empty && self.head.0 == 0 && head.seq > 1;
        let appended = if continues || starts_later {
            if starts_later {
                tx.meta_set("journal_base_seq", &(head.seq - 1).to_string())?;
                tx.meta_set("journal_base_hash", &head.prev)?;
            }
            tx.journal_insert(Copies::of_head(head), text, hash, "none")?;
            true
        } else {
            let parsed = parse(&mut record)?;
            let appended = tx.journal_import(hash, text, &parsed)?;
            record = Some(parsed);
            appended
        };
        if appended {
            self.head = (head.seq, hash.to_owned());
            self.journal_empty = false;
        }
        let absent = self
            .touched
            .as_mut()
            .is_some_and(|touched| touched.insert(head.id.clone()));
        let writes_image = matches!(head.op, Op::Create | Op::Replace | Op::Patch)
            && !head.member_delta
            && head.version_after.is_some();
        match (row, head.version_after) {
            (Some(row), Some(version)) if appended && absent && writes_image => {
                tx.insert_image_row(&head.id, version, row, &head.actor)?;
                Ok((true, true))
            }
            _ => {
                if matches!(head.op, Op::Delete | Op::Purge) && !self.members_indexed {
                    tx.tx.execute_batch(super::MEMBERS_BY_MEMBER)?;
                    self.members_indexed = true;
                }
                if !appended && !self.journal_indexed {
                    tx.tx.execute_batch(super::JOURNAL_BY_RESOURCE)?;
                    self.journal_indexed = true;
                }
                let parsed = parse(&mut record)?;
                Ok((appended, tx.apply_record(parsed, !appended)?))
            }
        }
    }
}

impl WriteTx<'_> {
    /// Inserts a resource known not to exist from its image's row (a bulk import):
    /// what [`insert`](Self::insert) does with the `Stored` the image describes.
    fn insert_image_row(
        &self,
        id: &str,
        version: i64,
        row: &ImageRow,
        actor: &str,
    ) -> Result<(), StoreError> {
        let result = self.insert_row(super::NewRow {
            kind: row.kind,
            id,
            unique_key: &row.unique_key,
            external_id: row.external_id.as_deref(),
            version,
            created: &row.created,
            last_modified: &row.last_modified,
            actor,
            body: &row.body,
        });
        match result {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::Duplicate {
                    kind: row.kind.unique_attr(),
                    value: row.unique_value.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        // What `sync_members` does for a group without rows yet: each listed member is
        // added; one listed twice keeps its first place and takes its last type/display.
        if !row.members.is_empty() {
            let mut insert = self.tx.prepare_cached(
                "INSERT OR IGNORE INTO members (group_id, member_id, type, display) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut update = self.tx.prepare_cached(
                "UPDATE members SET type = ?3, display = ?4 WHERE group_id = ?1 AND member_id = ?2 \
                 AND (type IS NOT ?3 OR display IS NOT ?4)",
            )?;
            for (member, kind, display) in &row.members {
                if insert.execute(params![id, member, kind, display])? == 0 {
                    update.execute(params![id, member, kind, display])?;
                }
            }
        }
        Ok(())
    }
}

/// The journal table's copies of a record's head (`seq`, `time`, `resource_id`, `actor`).
struct Copies<'a> {
    seq: u64,
    time: &'a str,
    id: &'a str,
    actor: &'a str,
}

impl<'a> Copies<'a> {
    fn of(record: &'a Record) -> Copies<'a> {
        Copies {
            seq: record.seq,
            time: &record.time,
            id: &record.id,
            actor: &record.actor,
        }
    }

    fn of_head(head: &'a crate::journal::record::RecordHead) -> Copies<'a> {
        Copies {
            seq: head.seq,
            time: &head.time,
            id: &head.id,
            actor: &head.actor,
        }
    }
}
