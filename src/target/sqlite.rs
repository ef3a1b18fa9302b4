//! The SQLite target: the tables other on-premises applications read, kept converged with
//! the users and groups the provider pushes.
//!
//! Owns one database file (created when missing) and, in it, only the tables named by
//! the [`TargetSchema`]: other tables, views and triggers of the reading applications
//! are left alone. Edges: the delivery worker calls [`SqliteTarget::apply`] with changes
//! computed by the mapping; the purge job calls [`SqliteTarget::archived_before`] and
//! [`SqliteTarget::purge_archived`]; previews and tests read with
//! [`SqliteTarget::read_row`] and [`SqliteTarget::memberships`].
//!
//! # Tables (a stable contract: other programs read them)
//!
//! Opened with `journal_mode=WAL` (readers never block the daemon, nor it them),
//! `synchronous=FULL` (delivery rounds: `NORMAL`, see [`SqliteTarget::deliver`]), a lock
//! held by a reading application waited for up to 5 s (retried every 100 µs, see
//! [`crate::wal::wait_finely`]), and checkpoints on a background thread
//! ([`crate::wal`]). Every identifier comes from the
//! configuration and is written as a quoted SQL identifier (`"name"`, `"` doubled);
//! every value is a bound parameter. For the users and for the groups table:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS "<table>" ("<key>" TEXT PRIMARY KEY NOT NULL, "<column>" <TYPE>, …, "<archive_column>" TEXT)
//! CREATE UNIQUE INDEX IF NOT EXISTS "<table>_<column>_unique" ON "<table>" ("<column>")   -- each unique column
//! ```
//!
//! `<TYPE>` is `TEXT` (text, timestamp) or `INTEGER` (integer, boolean); the archive
//! column exists only when the mapping archives deleted resources. Stored values: NULL
//! means absent, booleans 0/1, timestamps RFC 3339 text (`YYYY-MM-DDTHH:MM:SS.mmmZ`),
//! multi-valued columns a JSON array as text. For the membership table:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS "<table>" ("<group>" TEXT NOT NULL, "<member>" TEXT NOT NULL, "<origin>" TEXT NOT NULL, PRIMARY KEY ("<group>", "<member>"))
//! CREATE INDEX IF NOT EXISTS "<table>_<member>_index" ON "<table>" ("<member>")
//! ```
//!
//! `<origin>` is `scim` for memberships the provider sent and `default` for the default
//! groups given to new users; converging a group's members touches only `scim` rows. And
//! scim-bridge's own delivery cursor, one row per endpoint (no mapped table may take its
//! name):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS scim_bridge_delivery (endpoint TEXT PRIMARY KEY NOT NULL, through INTEGER NOT NULL)
//! ```
//!
//! # Migration
//!
//! At open the tables are compared with the schema (`pragma_table_info`). A column the
//! schema has and the table lacks is added (`ALTER TABLE … ADD COLUMN`, with its unique
//! index). Anything that would lose or reinterpret data — a column the table has and the
//! schema lacks, a different declared type, a different key — is refused with
//! [`TargetError::Destructive`] naming every offending table and column and how to
//! proceed. The unique index of a column no longer marked unique (named as above, so it
//! is ours) is dropped. The whole migration is one transaction: a refused one changes
//! nothing.
//!
//! # Invariants
//!
//! * Every change is one IMMEDIATE transaction; on any error it rolls back, so nothing
//!   is ever half-applied.
//! * Converging is idempotent: a row is written only where a stored value differs (the
//!   comparison is SQLite's own `IS`, under the column's affinity, so `5` stored in a
//!   TEXT column equals the cell `Integer(5)`), and an unchanged row issues no UPDATE —
//!   the reading applications' triggers see real changes only.
//! * A change naming a column the schema does not have is rejected before anything is
//!   written: a mapping bug must not write half a row.

mod migrate;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params_from_iter};

use super::{
    Cell, Change, ColumnSpec, Members, MembershipSpec, Outcome, TableSpec, TargetError,
    TargetSchema,
};
use crate::scim::schema::ResourceKind;

/// The origin of a membership the provider sent (a group's `members`).
const ORIGIN_SCIM: &str = "scim";
/// The origin of a membership the mapping gives new users (`default_groups`).
const ORIGIN_DEFAULT: &str = "default";

/// The SQLite target. One connection behind a mutex: changes are applied one at a time
/// by the delivery worker anyway, and the readers are other processes.
pub struct SqliteTarget {
    schema: TargetSchema,
    conn: Mutex<Connection>,
    /// Held while the target is open: its background checkpoint thread stops once this
    /// is dropped (the thread holds a weak reference).
    alive: std::sync::Arc<()>,
    /// The SQL of the statements built from a table's columns (see [`SqlTexts`]).
    sql: SqlTexts,
}

/// Which statement a [`SqlTexts`] entry is.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Statement {
    /// [`existing`]'s SELECT.
    Existing,
    /// [`insert_row`]'s INSERT.
    Insert,
}

/// The SQL text of the statements built from a table's columns, by statement, kind and
/// set of columns (a bitmask of their positions in the table): built once instead of for
/// every change (formatting it was a twentieth of the daemon's instructions, callgrind
/// 2026-11-24). Columns given out of the table's order, or beyond its 128th, are built
/// each time.
#[derive(Default)]
struct SqlTexts(Mutex<std::collections::HashMap<(Statement, ResourceKind, u128), Arc<str>>>);

impl SqlTexts {
    fn get(
        &self,
        statement: Statement,
        kind: ResourceKind,
        table: &TableSpec,
        cells: &[(&ColumnSpec, &Cell)],
        build: impl FnOnce() -> String,
    ) -> Arc<str> {
        let Some(mask) = column_mask(table, cells) else {
            return build().into();
        };
        let mut texts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        texts
            .entry((statement, kind, mask))
            .or_insert_with(|| build().into())
            .clone()
    }
}

/// The positions of `cells`' columns in `table` as a bitmask, when they are in the
/// table's order and among its first 128 columns.
fn column_mask(table: &TableSpec, cells: &[(&ColumnSpec, &Cell)]) -> Option<u128> {
    let mut mask = 0u128;
    let mut from = 0;
    for (spec, _) in cells {
        let at = from
            + table.columns[from..]
                .iter()
                .position(|c| c.name == spec.name)?;
        if at >= 128 {
            return None;
        }
        mask |= 1 << at;
        from = at + 1;
    }
    Some(mask)
}

/// The table holding each endpoint's delivery cursor (see [`SqliteTarget::deliver`]).
pub const CURSOR_TABLE: &str = "scim_bridge_delivery";

/// How often the background thread moves the write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Why a change was not applied, before it becomes an [`Outcome`].
enum Fail {
    /// The change itself is wrong for this target (e.g. an unmapped column).
    Reject(String),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail::Sql(e)
    }
}

/// The stored state of an existing row, as far as converging needs it.
struct Existing {
    /// The archive time, when the table has an archive column and the row is archived.
    archived: Option<String>,
    /// Indexes (into the cells compared) of the values that differ from the stored ones.
    differing: Vec<usize>,
}

impl SqliteTarget {
    /// Opens (creating) the database at `path` in WAL mode (`journal_mode=WAL`,
    /// `synchronous=FULL`, locks waited for up to 5 s) so reading applications never block the
    /// daemon, and creates/migrates the tables of `schema` (see the module doc).
    pub fn open(path: &Path, schema: TargetSchema) -> Result<SqliteTarget, TargetError> {
        let open_error = |detail: String| TargetError::Open {
            path: path.display().to_string(),
            detail,
        };
        migrate::validate(&schema)
            .map_err(|e| open_error(format!("invalid target schema: {e}")))?;
        let mut conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        crate::wal::wait_finely(&mut conn, false).map_err(|e| open_error(e.to_string()))?;
        conn.set_prepared_statement_cache_capacity(crate::wal::STATEMENT_CACHE);
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| open_error(format!("cannot switch to WAL journal mode: {e}")))?;
        // Without WAL a long read by another application would block every write (and
        // our writes its reads): refuse rather than run degraded without saying so.
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_error(format!(
                "cannot switch to WAL journal mode (the database stays in '{mode}' mode); \
                 WAL needs a local file system"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| open_error(e.to_string()))?;
        migrate::migrate(&mut conn, &schema, path)?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {CURSOR_TABLE} \
             (endpoint TEXT PRIMARY KEY NOT NULL, through INTEGER NOT NULL)"
        ))
        .map_err(|e| open_error(format!("cannot create the delivery cursor table: {e}")))?;
        // Checkpoints mostly run on a connection of their own (`checkpoint_in_background`):
        // the commit crossing SQLite's threshold only finishes them (see `crate::wal`).
        crate::wal::writer_settings(&conn).map_err(|e| open_error(e.to_string()))?;
        let target = SqliteTarget {
            schema,
            conn: Mutex::new(conn),
            alive: std::sync::Arc::new(()),
            sql: SqlTexts::default(),
        };
        target.checkpoint_in_background(path, CHECKPOINT_EVERY)?;
        Ok(target)
    }

    /// Starts the thread that checkpoints the database every `every` (see
    /// [`crate::wal`]), until the target is dropped; the last connection to close
    /// checkpoints what is left.
    fn checkpoint_in_background(&self, path: &Path, every: Duration) -> Result<(), TargetError> {
        let open_error = |detail: String| TargetError::Open {
            path: path.display().to_string(),
            detail,
        };
        let conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        crate::wal::spawn_checkpoints(
            conn,
            every,
            std::sync::Arc::downgrade(&self.alive),
            "scim-bridge-target-checkpoint",
            "SQLite target",
        )
        .map_err(|e| open_error(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(())
    }

    pub fn schema(&self) -> &TargetSchema {
        &self.schema
    }

    /// Converges one change in one transaction. Idempotent: applying it again changes
    /// nothing. Constraint violations (UNIQUE, NOT NULL, CHECK, a trigger's ABORT) are
    /// `Rejected` with SQLite's message; a busy, locked, full, read-only or failing
    /// database is `Unavailable` (retry later).
    pub fn apply(&self, change: &Change) -> Outcome {
        if matches!(change, Change::Nothing) {
            return Outcome::Applied;
        }
        let mut conn = self.conn();
        match self.converge(&mut conn, change, true) {
            Ok(()) => Outcome::Applied,
            Err(Fail::Reject(detail)) => Outcome::Rejected(detail),
            Err(Fail::Sql(e)) => verdict(e),
        }
    }

    /// Converges several changes in one transaction (one commit, one fsync): each in its
    /// own savepoint, so a rejected one leaves the others. The outcomes, in order; when
    /// the database cannot be written, every change is `Unavailable` and nothing of the
    /// batch is kept.
    pub fn apply_batch(&self, changes: &[Change]) -> Vec<Outcome> {
        self.batch(&mut self.conn(), changes, None)
    }

    /// A delivery round of `endpoint` (see [`crate::target::Target::deliver`]): the
    /// changes as [`Self::apply_batch`], and the cursor row of `endpoint` in
    /// [`CURSOR_TABLE`] set to the last of `seqs`, in the same transaction. Committed with
    /// `synchronous=NORMAL`, without waiting for the disk: a crash of the machine may
    /// lose the last rounds, cursor included, and the delivery worker then delivers them
    /// again at start ([`Self::delivered_through`]); the background checkpoint makes them
    /// durable within a quarter of a second. Other writes stay `synchronous=FULL`.
    pub fn deliver(&self, endpoint: &str, changes: &[Change], seqs: &[u64]) -> Vec<Outcome> {
        let mut conn = self.conn();
        let through = seqs.iter().copied().max();
        if let Err(e) = conn.execute_batch("PRAGMA synchronous = NORMAL") {
            let outcome = verdict(e);
            return changes.iter().map(|_| outcome.clone()).collect();
        }
        let outcomes = self.batch(&mut conn, changes, through.map(|t| (endpoint, t)));
        if let Err(e) = conn.execute_batch("PRAGMA synchronous = FULL") {
            tracing::warn!(error = %e, "cannot set the SQLite target back to synchronous=FULL");
        }
        outcomes
    }

    /// The last journal record of `endpoint` delivered here (its cursor row), if any.
    pub fn delivered_through(&self, endpoint: &str) -> Result<Option<u64>, TargetError> {
        let conn = self.conn();
        let through: Option<i64> = conn
            .prepare_cached(&format!(
                "SELECT through FROM {CURSOR_TABLE} WHERE endpoint = ?1"
            ))?
            .query_row([endpoint], |r| r.get(0))
            .optional()?;
        Ok(through.map(|t| t.max(0) as u64))
    }

    /// `changes` in one transaction, with `cursor` (endpoint, last record) set in it
    /// when the transaction commits.
    fn batch(
        &self,
        conn: &mut Connection,
        changes: &[Change],
        cursor: Option<(&str, u64)>,
    ) -> Vec<Outcome> {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let outcome = verdict(e);
            return changes.iter().map(|_| outcome.clone()).collect();
        }
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut failed = None;
        for change in changes {
            if matches!(change, Change::Nothing) {
                outcomes.push(Outcome::Applied);
                continue;
            }
            match self.converge(conn, change, true) {
                Ok(()) => outcomes.push(Outcome::Applied),
                Err(Fail::Reject(detail)) => outcomes.push(Outcome::Rejected(detail)),
                Err(Fail::Sql(e)) => match verdict(e) {
                    Outcome::Unavailable(detail) => {
                        failed = Some(Outcome::Unavailable(detail));
                        break;
                    }
                    other => outcomes.push(other),
                },
            }
        }
        let committed = match (&failed, cursor) {
            (None, None) => conn.execute_batch("COMMIT").map_err(verdict),
            (None, Some((endpoint, through))) => conn
                .prepare_cached(&format!(
                    "INSERT INTO {CURSOR_TABLE} (endpoint, through) VALUES (?1, ?2) \
                     ON CONFLICT (endpoint) DO UPDATE SET through = excluded.through"
                ))
                .and_then(|mut stmt| stmt.execute(rusqlite::params![endpoint, through as i64]))
                .and_then(|_| conn.execute_batch("COMMIT"))
                .map_err(verdict),
            (Some(outcome), _) => Err(outcome.clone()),
        };
        match committed {
            Ok(()) => outcomes,
            Err(outcome) => {
                let _ = conn.execute_batch("ROLLBACK");
                changes.iter().map(|_| outcome.clone()).collect()
            }
        }
    }

    /// What applying `change` would write, without writing: the change is converged in
    /// a transaction that is rolled back, and the rows it touched are described. Empty:
    /// the table already matches.
    pub fn plan(&self, change: &Change) -> Result<Vec<String>, Outcome> {
        if matches!(change, Change::Nothing) {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let before = conn.total_changes();
        let result = self.converge(&mut conn, change, false);
        let written = conn.total_changes() - before;
        match result {
            Ok(()) if written == 0 => Ok(Vec::new()),
            Ok(()) => {
                let (kind, key) = match change {
                    Change::Upsert { kind, key, .. }
                    | Change::Remove { kind, key }
                    | Change::Archive { kind, key, .. } => (*kind, key.as_str()),
                    Change::Nothing => return Ok(Vec::new()),
                };
                let table = self.schema.table(kind).map_or("?", |t| t.name.as_str());
                let what = match change {
                    Change::Remove { .. } => "delete",
                    Change::Archive { .. } => "archive",
                    _ => "insert or update",
                };
                Ok(vec![format!(
                    "# {} {key}: {what} in table {table} ({written} row write(s), memberships included)",
                    kind.name()
                )])
            }
            Err(Fail::Reject(detail)) => Err(Outcome::Rejected(detail)),
            Err(Fail::Sql(e)) => Err(verdict(e)),
        }
    }

    /// The keys of the rows of `kind` that are not archived, sorted.
    pub fn held(&self, kind: ResourceKind) -> Result<Vec<String>, TargetError> {
        let Some(table) = self.schema.table(kind) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {k} FROM {t}{w} ORDER BY {k}",
            k = quote(&table.key_column),
            t = quote(&table.name),
            w = table
                .archive_column
                .as_deref()
                .map(|a| format!(" WHERE {} IS NULL", quote(a)))
                .unwrap_or_default(),
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let keys = stmt.query_map([], |row| row.get::<_, Value>(0).map(to_text))?;
        Ok(keys.collect::<Result<_, _>>()?)
    }

    /// The keys of the rows of `kind` archived before `before` (RFC 3339, compared as
    /// text: the archive column holds the same fixed-width format), sorted. Empty when
    /// the kind has no table or its table no archive column.
    pub fn archived_before(
        &self,
        kind: ResourceKind,
        before: &str,
    ) -> Result<Vec<String>, TargetError> {
        let Some((table, archive)) = self.archive_of(kind) else {
            return Ok(Vec::new());
        };
        let conn = self.conn();
        Ok(archived_keys(&conn, table, archive, before)?)
    }

    /// Deletes the rows of `kind` archived before `before` (as [`Self::archived_before`]),
    /// with their memberships, in one transaction; returns the keys of the purged rows,
    /// sorted.
    pub fn purge_archived(
        &self,
        kind: ResourceKind,
        before: &str,
    ) -> Result<Vec<String>, TargetError> {
        let Some((table, archive)) = self.archive_of(kind) else {
            return Ok(Vec::new());
        };
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let keys = archived_keys(&tx, table, archive, before)?;
        for key in &keys {
            delete_row(&tx, table, key)?;
            self.drop_memberships(&tx, kind, key)?;
        }
        tx.commit()?;
        Ok(keys)
    }

    /// The stored row (column → cell: the key column, the mapped columns in schema
    /// order, then the archive column), for previews and tests. `None` when the row (or
    /// the kind's table) does not exist. REAL and BLOB values, which this target never
    /// writes, read as text.
    pub fn read_row(
        &self,
        kind: ResourceKind,
        key: &str,
    ) -> Result<Option<Vec<(String, Cell)>>, TargetError> {
        let Some(table) = self.schema.table(kind) else {
            return Ok(None);
        };
        let names: Vec<&str> = std::iter::once(table.key_column.as_str())
            .chain(table.columns.iter().map(|c| c.name.as_str()))
            .chain(table.archive_column.as_deref())
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = ?1",
            names
                .iter()
                .map(|n| quote(n))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&table.name),
            quote(&table.key_column),
        );
        let conn = self.conn();
        let row = conn
            .prepare_cached(&sql)?
            .query_row([key], |row| {
                let mut out = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    out.push((name.to_string(), to_cell(row.get::<_, Value>(i)?)));
                }
                Ok(out)
            })
            .optional()?;
        Ok(row)
    }

    /// The membership rows (group key, member key, origin), sorted; empty when the schema
    /// has no membership table.
    pub fn memberships(&self) -> Result<Vec<(String, String, String)>, TargetError> {
        let Some(m) = &self.schema.memberships else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {g}, {mb}, {o} FROM {t} ORDER BY {g}, {mb}, {o}",
            g = quote(&m.group_column),
            mb = quote(&m.member_column),
            o = quote(&m.origin_column),
            t = quote(&m.name),
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([], |row| {
            Ok((
                to_text(row.get::<_, Value>(0)?),
                to_text(row.get::<_, Value>(1)?),
                to_text(row.get::<_, Value>(2)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The connection. A panic while it was held cannot leave it mid-transaction (the
    /// transaction rolls back when dropped), so a poisoned lock is still usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn archive_of(&self, kind: ResourceKind) -> Option<(&TableSpec, &str)> {
        let table = self.schema.table(kind)?;
        Some((table, table.archive_column.as_deref()?))
    }

    fn table(&self, kind: ResourceKind) -> Result<&TableSpec, Fail> {
        self.schema.table(kind).ok_or_else(|| {
            Fail::Reject(format!(
                "the target has no table for {} resources",
                kind.name()
            ))
        })
    }

    fn converge(&self, conn: &mut Connection, change: &Change, commit: bool) -> Result<(), Fail> {
        match change {
            Change::Nothing => Ok(()),
            Change::Upsert {
                kind,
                key,
                cells,
                members,
                default_groups,
                ..
            } => {
                let table = self.table(*kind)?;
                let cells = checked_cells(table, cells)?;
                let tx = conn.savepoint()?;
                let fresh = upsert_row(&tx, &self.sql, *kind, table, key, &cells)?;
                if let Some(m) = &self.schema.memberships {
                    // A restored user lost its memberships when archived: it gets its
                    // default groups back like a new one (the provider re-sends the
                    // `scim` ones).
                    if *kind == ResourceKind::User && fresh {
                        for group in default_groups {
                            add_membership(&tx, m, group, key, ORIGIN_DEFAULT)?;
                        }
                    }
                    match (kind, members) {
                        (ResourceKind::Group, Some(Members::All(members))) => {
                            converge_members(&tx, m, key, members)?;
                        }
                        (ResourceKind::Group, Some(Members::Delta { added, removed })) => {
                            for gone in removed {
                                remove_membership(&tx, m, key, gone)?;
                            }
                            for new in added {
                                add_membership(&tx, m, key, new, ORIGIN_SCIM)?;
                            }
                        }
                        _ => {}
                    }
                }
                Ok(finish(tx, commit)?)
            }
            Change::Remove { kind, key } => {
                let table = self.table(*kind)?;
                let tx = conn.savepoint()?;
                delete_row(&tx, table, key)?;
                self.drop_memberships(&tx, *kind, key)?;
                Ok(finish(tx, commit)?)
            }
            Change::Archive {
                kind,
                key,
                cells,
                at,
                ..
            } => {
                let table = self.table(*kind)?;
                if table.archive_column.is_none() {
                    return Err(Fail::Reject(format!(
                        "table {} has no archive column (the mapping does not archive {} resources)",
                        table.name,
                        kind.name()
                    )));
                }
                let cells = checked_cells(table, cells)?;
                let tx = conn.savepoint()?;
                self.archive(&tx, *kind, table, key, &cells, at)?;
                Ok(finish(tx, commit)?)
            }
        }
    }

    fn archive(
        &self,
        tx: &Connection,
        kind: ResourceKind,
        table: &TableSpec,
        key: &str,
        cells: &[(&ColumnSpec, &Cell)],
        at: &str,
    ) -> Result<(), Fail> {
        let updatable = updatable(cells);
        let Some(row) = existing(tx, &self.sql, kind, table, key, &updatable)? else {
            // Nothing to archive: the row was never written (or was removed by hand).
            return Ok(());
        };
        let mut sets: Vec<(&str, Value)> = row
            .differing
            .iter()
            .map(|&i| (updatable[i].0.name.as_str(), value(updatable[i].1)))
            .collect();
        // Archiving again must not restart the retention clock: the earliest time wins.
        let keep = matches!(&row.archived, Some(earlier) if earlier.as_str() <= at);
        if let (false, Some(archive)) = (keep, &table.archive_column) {
            sets.push((archive, Value::Text(at.to_string())));
        }
        update_row(tx, table, key, &sets)?;
        self.drop_memberships(tx, kind, key)?;
        Ok(())
    }

    /// Deletes the membership rows `key` takes part in: as a member (users and groups)
    /// and, for a group, as the group.
    fn drop_memberships(
        &self,
        conn: &Connection,
        kind: ResourceKind,
        key: &str,
    ) -> rusqlite::Result<()> {
        let Some(m) = &self.schema.memberships else {
            return Ok(());
        };
        let sql = match kind {
            ResourceKind::User => format!(
                "DELETE FROM {} WHERE {} = ?1",
                quote(&m.name),
                quote(&m.member_column)
            ),
            ResourceKind::Group => format!(
                "DELETE FROM {} WHERE {} = ?1 OR {} = ?1",
                quote(&m.name),
                quote(&m.group_column),
                quote(&m.member_column)
            ),
        };
        conn.prepare_cached(&sql)?.execute([key])?;
        Ok(())
    }
}

/// `name` as an SQL identifier: `"name"`, with `"` doubled.
fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The cells of a change matched with their column specs. Rejects a cell naming a
/// column the table does not map (a mapping bug) or naming one twice.
fn checked_cells<'a>(
    table: &'a TableSpec,
    cells: &'a [(String, Cell)],
) -> Result<Vec<(&'a ColumnSpec, &'a Cell)>, Fail> {
    let mut out: Vec<(&ColumnSpec, &Cell)> = Vec::with_capacity(cells.len());
    for (name, cell) in cells {
        let Some(spec) = table.columns.iter().find(|c| &c.name == name) else {
            return Err(Fail::Reject(format!(
                "column '{name}' is not a mapped column of table {}",
                table.name
            )));
        };
        if out.iter().any(|(c, _)| c.name == spec.name) {
            return Err(Fail::Reject(format!(
                "column '{name}' of table {} is given twice",
                table.name
            )));
        }
        out.push((spec, cell));
    }
    Ok(out)
}

/// The cells an update may write: create-only columns are never changed after insert,
/// and an absent value leaves a keep-when-empty column as it is.
fn updatable<'a>(cells: &[(&'a ColumnSpec, &'a Cell)]) -> Vec<(&'a ColumnSpec, &'a Cell)> {
    cells
        .iter()
        .copied()
        .filter(|(spec, cell)| {
            let kept = spec.keep_when_empty && **cell == Cell::Null;
            !spec.create_only && !kept
        })
        .collect()
}

fn value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(s) => Value::Text(s.clone()),
        Cell::Integer(i) => Value::Integer(*i),
    }
}

fn to_cell(v: Value) -> Cell {
    match v {
        Value::Null => Cell::Null,
        Value::Integer(i) => Cell::Integer(i),
        Value::Text(s) => Cell::Text(s),
        Value::Real(r) => Cell::Text(r.to_string()),
        Value::Blob(b) => Cell::Text(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// A stored value as text (NULL as empty): the membership and archive columns hold text,
/// but another application may have written something else by hand.
fn to_text(v: Value) -> String {
    match to_cell(v) {
        Cell::Null => String::new(),
        Cell::Text(s) => s,
        Cell::Integer(i) => i.to_string(),
    }
}

/// Whether the row exists and, if so, its archive time and which of `cells` differ from
/// the stored values. The comparison is SQLite's `IS` so that the column's affinity
/// applies to the value exactly as it would when stored.
fn existing(
    conn: &Connection,
    texts: &SqlTexts,
    kind: ResourceKind,
    table: &TableSpec,
    key: &str,
    cells: &[(&ColumnSpec, &Cell)],
) -> rusqlite::Result<Option<Existing>> {
    let sql = texts.get(Statement::Existing, kind, table, cells, || {
        let mut select = vec![
            table
                .archive_column
                .as_deref()
                .map_or("NULL".to_string(), quote),
        ];
        for (i, (spec, _)) in cells.iter().enumerate() {
            select.push(format!("({} IS ?{})", quote(&spec.name), i + 2));
        }
        format!(
            "SELECT {} FROM {} WHERE {} = ?1",
            select.join(", "),
            quote(&table.name),
            quote(&table.key_column)
        )
    });
    let params: Vec<Value> = std::iter::once(Value::Text(key.to_string()))
        .chain(cells.iter().map(|(_, cell)| value(cell)))
        .collect();
    conn.prepare_cached(&sql)?
        .query_row(params_from_iter(params), |row| {
            let archived = match row.get::<_, Value>(0)? {
                Value::Null => None,
                other => Some(to_text(other)),
            };
            let mut differing = Vec::new();
            for i in 0..cells.len() {
                if row.get::<_, i64>(i + 1)? == 0 {
                    differing.push(i);
                }
            }
            Ok(Existing {
                archived,
                differing,
            })
        })
        .optional()
}

/// Inserts the row, or updates the columns that differ and restores it when archived.
/// True when the row is new or restored (it has no memberships of its own yet).
fn upsert_row(
    tx: &Connection,
    texts: &SqlTexts,
    kind: ResourceKind,
    table: &TableSpec,
    key: &str,
    cells: &[(&ColumnSpec, &Cell)],
) -> rusqlite::Result<bool> {
    let updatable = updatable(cells);
    let Some(row) = existing(tx, texts, kind, table, key, &updatable)? else {
        insert_row(tx, texts, kind, table, key, cells)?;
        return Ok(true);
    };
    let mut sets: Vec<(&str, Value)> = row
        .differing
        .iter()
        .map(|&i| (updatable[i].0.name.as_str(), value(updatable[i].1)))
        .collect();
    let restored = row.archived.is_some();
    if let (true, Some(archive)) = (restored, &table.archive_column) {
        sets.push((archive, Value::Null));
    }
    update_row(tx, table, key, &sets)?;
    Ok(restored)
}

fn insert_row(
    conn: &Connection,
    texts: &SqlTexts,
    kind: ResourceKind,
    table: &TableSpec,
    key: &str,
    cells: &[(&ColumnSpec, &Cell)],
) -> rusqlite::Result<()> {
    let sql = texts.get(Statement::Insert, kind, table, cells, || {
        let columns: Vec<String> = std::iter::once(quote(&table.key_column))
            .chain(cells.iter().map(|(spec, _)| quote(&spec.name)))
            .collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&table.name),
            columns.join(", "),
            placeholders.join(", ")
        )
    });
    let params: Vec<Value> = std::iter::once(Value::Text(key.to_string()))
        .chain(cells.iter().map(|(_, cell)| value(cell)))
        .collect();
    conn.prepare_cached(&sql)?
        .execute(params_from_iter(params))?;
    Ok(())
}

/// Sets `sets` on the row; issues no statement at all when there is nothing to set, so
/// an unchanged row is not touched (nor are the readers' UPDATE triggers fired).
fn update_row(
    conn: &Connection,
    table: &TableSpec,
    key: &str,
    sets: &[(&str, Value)],
) -> rusqlite::Result<()> {
    if sets.is_empty() {
        return Ok(());
    }
    let assignments: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, (name, _))| format!("{} = ?{}", quote(name), i + 2))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = ?1",
        quote(&table.name),
        assignments.join(", "),
        quote(&table.key_column)
    );
    let params: Vec<Value> = std::iter::once(Value::Text(key.to_string()))
        .chain(sets.iter().map(|(_, v)| v.clone()))
        .collect();
    conn.prepare_cached(&sql)?
        .execute(params_from_iter(params))?;
    Ok(())
}

fn delete_row(conn: &Connection, table: &TableSpec, key: &str) -> rusqlite::Result<()> {
    let sql = format!(
        "DELETE FROM {} WHERE {} = ?1",
        quote(&table.name),
        quote(&table.key_column)
    );
    conn.prepare_cached(&sql)?.execute([key])?;
    Ok(())
}

/// Commits the transaction, or rolls it back (a plan).
fn finish(mut tx: rusqlite::Savepoint<'_>, commit: bool) -> rusqlite::Result<()> {
    if commit { tx.commit() } else { tx.rollback() }
}

fn archived_keys(
    conn: &Connection,
    table: &TableSpec,
    archive: &str,
    before: &str,
) -> rusqlite::Result<Vec<String>> {
    let sql = format!(
        "SELECT {k} FROM {t} WHERE {a} IS NOT NULL AND {a} < ?1 ORDER BY {k}",
        k = quote(&table.key_column),
        t = quote(&table.name),
        a = quote(archive),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let keys = stmt.query_map([before], |row| row.get::<_, Value>(0).map(to_text))?;
    keys.collect()
}

/// Adds a membership unless the pair is already there (whatever its origin: a default
/// membership the provider also sends stays `default`).
fn add_membership(
    conn: &Connection,
    m: &MembershipSpec,
    group: &str,
    member: &str,
    origin: &str,
) -> rusqlite::Result<()> {
    let sql = format!(
        "INSERT INTO {} ({}, {}, {}) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        quote(&m.name),
        quote(&m.group_column),
        quote(&m.member_column),
        quote(&m.origin_column)
    );
    conn.prepare_cached(&sql)?
        .execute([group, member, origin])?;
    Ok(())
}

/// Removes a `scim` membership (a `default` one is not the provider's to remove).
fn remove_membership(
    conn: &Connection,
    m: &MembershipSpec,
    group: &str,
    member: &str,
) -> rusqlite::Result<()> {
    let delete = format!(
        "DELETE FROM {} WHERE {} = ?1 AND {} = ?2 AND {} = ?3",
        quote(&m.name),
        quote(&m.group_column),
        quote(&m.member_column),
        quote(&m.origin_column)
    );
    conn.prepare_cached(&delete)?
        .execute([group, member, ORIGIN_SCIM])?;
    Ok(())
}

/// Makes the `scim` memberships of `group` exactly `members`; `default` rows are not
/// the provider's to remove.
fn converge_members(
    conn: &Connection,
    m: &MembershipSpec,
    group: &str,
    members: &[String],
) -> rusqlite::Result<()> {
    let wanted: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    let select = format!(
        "SELECT {} FROM {} WHERE {} = ?1 AND {} = ?2",
        quote(&m.member_column),
        quote(&m.name),
        quote(&m.group_column),
        quote(&m.origin_column)
    );
    let stored: BTreeSet<String> = conn
        .prepare_cached(&select)?
        .query_map([group, ORIGIN_SCIM], |row| {
            row.get::<_, Value>(0).map(to_text)
        })?
        .collect::<rusqlite::Result<_>>()?;
    for gone in stored.iter().filter(|s| !wanted.contains(s.as_str())) {
        remove_membership(conn, m, group, gone)?;
    }
    for new in wanted.iter().filter(|w| !stored.contains(**w)) {
        add_membership(conn, m, group, new, ORIGIN_SCIM)?;
    }
    Ok(())
}

/// The outcome of a failed change. The data's fault (a constraint, a value of the wrong
/// type for a STRICT table, a value too big) is a rejection the provider hears about; the
/// database's (busy, locked, full, read-only, IO) is retried later. Anything else is
/// unexpected: retried too, but logged as an error for the operator.
fn verdict(e: rusqlite::Error) -> Outcome {
    use rusqlite::ErrorCode as C;
    let code = match &e {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.code),
        _ => None,
    };
    match code {
        Some(C::ConstraintViolation | C::TypeMismatch | C::TooBig) => {
            Outcome::Rejected(e.to_string())
        }
        Some(
            C::DatabaseBusy
            | C::DatabaseLocked
            | C::DiskFull
            | C::ReadOnly
            | C::SystemIoFailure
            | C::CannotOpen
            | C::FileLockingProtocolFailed
            | C::OutOfMemory,
        ) => Outcome::Unavailable(e.to_string()),
        _ => {
            tracing::error!(error = %e, "unexpected error from the SQLite target; the change will be retried");
            Outcome::Unavailable(e.to_string())
        }
    }
}
