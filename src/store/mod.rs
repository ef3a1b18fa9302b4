//! The SQLite state store: SCIM resources exactly as the provider sent them (canonical
//! form), with their ids, versions, timestamps and group memberships.
//!
//! One writer connection serialises every change (so uniqueness checks and writes are
//! atomic); a small pool of read connections answers queries concurrently (WAL). List
//! filters run inside SQLite: equality on `userName`/`displayName` (folded), `id` and
//! `externalId` becomes an indexed predicate, and the rest of the filter is evaluated by
//! the same Rust evaluator the PATCH engine uses, registered as the SQL function
//! `scim_match`, so a filter means one thing everywhere. Durability: `synchronous=FULL`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod journal;
mod members;
mod secrets;
mod writer;

pub use journal::{JournalEntry, JournalRow, NewRecord};
pub use writer::WriterHealth;

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::{Map, Value};

use crate::scim::eval;
use crate::scim::filter::{CompValue, CompareOp, Filter, Test, parse_filter};
use crate::scim::path::AttrPath;
use crate::scim::resource::{fold, resolve};
use crate::scim::schema::ResourceKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store holds a damaged record for {id}: {detail}")]
    Corrupt { id: String, detail: String },
    #[error(
        "state store schema version {found} is newer than this binary understands ({supported})"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("{kind} '{value}' is already taken")]
    Duplicate { kind: &'static str, value: String },
    #[error("state store writer: {0}")]
    Writer(String),
    #[error("journal: {0}")]
    Journal(String),
    #[error(
        "the state directory {} is in use by another scim-bridge daemon{}; stop it first (two daemons would deliver the same journal twice)",
        dir.display(),
        holder.as_deref().map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    InUse {
        dir: PathBuf,
        holder: Option<String>,
    },
    #[error("cannot lock the state directory {}: {source}", dir.display())]
    Lock {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running daemon's claim on its state directory: an exclusive lock on
/// `<dir>/daemon.lock` (holding the daemon's pid), released when the process exits.
#[derive(Debug)]
pub struct DaemonLock {
    _file: std::fs::File,
}

impl DaemonLock {
    /// Takes the lock, or fails at once with [`StoreError::InUse`] when another process
    /// holds it.
    pub fn acquire(dir: &Path) -> Result<DaemonLock, StoreError> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock_error = |source| StoreError::Lock {
            dir: dir.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("daemon.lock"))
            .map_err(lock_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = Some(text.trim().to_string()).filter(|t| !t.is_empty());
                return Err(StoreError::InUse {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(e)),
        }
        file.set_len(0).map_err(lock_error)?;
        file.rewind().map_err(lock_error)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_error)?;
        Ok(DaemonLock { _file: file })
    }
}

impl StoreError {
    /// Whether the failure is the storage's (disk full, read-only, IO), not the request's:
    /// the request may succeed later, so the client gets 503 with Retry-After.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::DiskFull
                    | C::ReadOnly
                    | C::SystemIoFailure
                    | C::CannotOpen
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::FileLockingProtocolFailed
                    | C::OutOfMemory
            ),
            StoreError::Writer(_) | StoreError::CreateDir { .. } => true,
            _ => false,
        }
    }

    /// A copy of the error to hand to each job of a failed batch (rusqlite errors are not
    /// `Clone`; the copy keeps the code that decides 503 vs 500).
    fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, msg)) => {
                StoreError::Sqlite(rusqlite::Error::SqliteFailure(*e, msg.clone()))
            }
            other => StoreError::Writer(other.to_string()),
        }
    }
}

/// A stored resource: the canonical document plus the bookkeeping columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub kind: ResourceKind,
    pub id: String,
    pub version: i64,
    pub created: String,
    pub last_modified: String,
    /// Canonical document, including `id`, `schemas` and `meta` (without `location`).
    pub doc: Map<String, Value>,
}

impl Stored {
    pub fn etag(&self) -> String {
        etag(self.version)
    }
}

/// The weak entity tag of a version (also `meta.version`).
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// A list query, already validated.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// `None`: every resource type (`POST /.search` at the root).
    pub kind: Option<ResourceKind>,
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
}

const SCHEMA_VERSION: i64 = 5;

/// The manager reference inside a stored user, as SQL (indexed by migration 3).
const MANAGER_EXPR: &str = "json_extract(body, '$.\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\".manager.value')";

const MIGRATION_1: &str = "
CREATE TABLE resources (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT, -- creation order: the stable list order
    kind          TEXT NOT NULL,                     -- 'User' | 'Group'
    id            TEXT NOT NULL UNIQUE,
    unique_key    TEXT NOT NULL,                     -- folded userName / group displayName
    external_id   TEXT,
    version       INTEGER NOT NULL,
    created       TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    last_actor    TEXT NOT NULL,                     -- token name of the last writer
    body          TEXT NOT NULL                      -- canonical JSON document
);
CREATE UNIQUE INDEX resources_unique_key ON resources(kind, unique_key);
CREATE INDEX resources_external_id ON resources(kind, external_id);
CREATE TABLE members (
    group_id  TEXT NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE INDEX members_by_member ON members(member_id, group_id);
";

/// The change journal (docs/journal-format.md) and the store's own metadata.
const MIGRATION_2: &str = "
CREATE TABLE journal (
    seq             INTEGER PRIMARY KEY,
    record          TEXT NOT NULL,   -- canonical JSON, exactly the hashed bytes
    hash            TEXT NOT NULL,
    time            TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    actor           TEXT NOT NULL,
    delivery        TEXT NOT NULL,   -- pending | applied | rejected | none
    delivery_detail TEXT
);
CREATE INDEX journal_by_resource ON journal(resource_id, seq);
CREATE INDEX journal_pending ON journal(seq) WHERE delivery = 'pending';
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// The SQLite state store.
pub struct Store {
    path: PathBuf,
    writer: writer::Writer,
    readers: Mutex<Vec<Connection>>,
    origin: String,
    /// Held while the store lives: background threads stop when it is gone.
    alive: Arc<()>,
}

fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    // scim_match(filter_text, kind, body): the filter evaluator over a stored document.
    conn.create_scalar_function(
        "scim_match",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let filter: Arc<Filter> = ctx.get_or_create_aux(0, |v| {
                let text = v.as_str().map_err(|e| e.to_string())?;
                parse_filter(text).map_err(|e| e.to_string())
            })?;
            let kind: String = ctx.get(1)?;
            let body = ctx.get_raw(2).as_str()?;
            let Some(kind) = ResourceKind::from_name(&kind) else {
                return Ok(false);
            };
            let doc: Map<String, Value> = serde_json::from_str(body)
                .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            Ok(eval::matches(kind, &filter, &doc))
        },
    )?;
    // scim_sort_key(path_text, kind, body): the first value an attribute path denotes,
    // folded when the attribute compares case-insensitively; NULL when absent.
    conn.create_scalar_function(
        "scim_sort_key",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let path: Arc<AttrPath> = ctx.get_or_create_aux(0, |v| {
                let text = v.as_str().map_err(|e| e.to_string())?;
                crate::scim::path::parse_attr_path(text).map_err(|e| e.to_string())
            })?;
            let kind: String = ctx.get(1)?;
            let body = ctx.get_raw(2).as_str()?;
            let Some(kind) = ResourceKind::from_name(&kind) else {
                return Ok(None);
            };
            let doc: Map<String, Value> = serde_json::from_str(body)
                .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            Ok(sort_key(kind, &path, &doc))
        },
    )
}

fn sort_key(kind: ResourceKind, path: &AttrPath, doc: &Map<String, Value>) -> Option<String> {
    let target = resolve(kind, path)?;
    let mut value = target.get(doc)?;
    if let Value::Array(items) = value {
        // RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary value, else the first.
        value = items
            .iter()
            .find(|i| i.get("primary") == Some(&Value::Bool(true)))
            .or_else(|| items.first())?;
    }
    let leaf = match &path.sub_attr {
        Some(sub) => {
            let sub_def = target.def.sub_attr(sub)?;
            (sub_def, value.get(sub_def.name)?)
        }
        None if target.def.is_complex() => (target.def.sub_attr("value")?, value.get("value")?),
        None => (target.def, value),
    };
    match leaf.1 {
        Value::String(s) if leaf.0.case_exact => Some(s.clone()),
        Value::String(s) => Some(fold(s)),
        Value::Number(n) => Some(format!("{:020.6}", n.as_f64().unwrap_or(0.0))),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    crate::wal::wait_finely(&mut conn, false)?;
    conn.set_prepared_statement_cache_capacity(crate::wal::STATEMENT_CACHE);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Plans stay fixed once prepared: with STAT4 (in the bundled build) a bound `LIMIT`,
    // `OFFSET` or join parameter otherwise makes SQLite re-prepare the cached statement on
    // every execution (a third of a filtered GET's CPU).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    register_functions(&conn)?;
    Ok(conn)
}

impl Store {
    /// Opens (creating when missing) `state.db` in `dir` and migrates it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("state.db");
        let mut conn = open_conn(&path)?;
        migrate(&mut conn)?;
        let origin = meta_get(&conn, "origin")?.unwrap_or_default();
        Ok(Store {
            path,
            writer: writer::Writer::start(conn)?,
            readers: Mutex::new(Vec::new()),
            origin,
            alive: Arc::new(()),
        })
    }

    /// The random id of this state directory (`origin` in journal exports).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the writer can make changes (and their journal records) durable now: its
    /// thread runs and its last group commit succeeded. Cheap: two atomic loads.
    pub fn writer_health(&self) -> WriterHealth {
        self.writer.health()
    }

    /// Runs `f` in the writer's next group-commit batch, inside a savepoint of its own: an
    /// `Err` rolls back only this job. Resolves once the batch's commit is durable (or
    /// failed, which fails every job of the batch).
    pub async fn write<T, E>(
        &self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.writer.submit(f).await
    }

    /// `write` without waiting: `done` is called on the writer thread with the outcome,
    /// once the batch's commit is written (or failed). For work whose caller must not
    /// block on a commit, and whose loss in a crash of the machine is harmless because it
    /// is redone (the delivery worker's verdicts: a record whose mark is lost is
    /// delivered again, idempotently): a batch of such writes alone commits without
    /// waiting for the disk (`synchronous=NORMAL`; durable with the next full commit or
    /// checkpoint).
    pub fn write_detached<T, E>(
        &self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
        done: impl FnOnce(Result<T, E>) + Send + 'static,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.writer.submit_detached(f, done)
    }

    /// Moves the write-ahead log into the database in the background (a connection of
    /// its own, every `every`: see [`crate::wal`]), so that the commit crossing the
    /// automatic checkpoint's threshold only finishes the copy instead of doing all of it
    /// (5 ms, the p99 of a steady write). For the daemon; the thread stops when the store
    /// is dropped.
    pub fn checkpoint_in_background(&self, every: std::time::Duration) -> Result<(), StoreError> {
        self.write_blocking(|tx| -> Result<(), StoreError> {
            crate::wal::writer_settings(tx.tx)?;
            Ok(())
        })?;
        let conn = open_conn(&self.path)?;
        crate::wal::spawn_checkpoints(
            conn,
            every,
            std::sync::Arc::downgrade(&self.alive),
            "scim-bridge-checkpoint",
            "state store",
        )
        .map_err(|e| StoreError::Writer(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(())
    }

    /// `write` for synchronous callers (the CLI, tests); must not run on an async runtime thread.
    /// Hands every `pending` journal record to `listener` once the transaction that
    /// appended it has committed (on the writer thread, before the writers are answered),
    /// in journal order: the delivery worker takes them from memory instead of reading
    /// them back. Records of rolled-back jobs or failed commits are never handed over.
    /// Replaces the previous listener.
    pub fn on_commit(
        &self,
        listener: impl Fn(Vec<crate::journal::record::Record>) + Send + Sync + 'static,
    ) {
        self.writer.on_commit(Box::new(listener));
    }

    pub fn write_blocking<T, E>(
        &self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.writer.submit_blocking(f)
    }

    /// Runs `f` on a read connection, inside one read transaction (a consistent snapshot).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path)?,
        };
        let result = {
            // BEGIN/COMMIT as cached statements (a `Transaction` prepares them anew).
            conn.prepare_cached("BEGIN")?.execute([])?;
            let out = f(&Reader { conn: &conn });
            conn.prepare_cached("COMMIT")?.execute([])?;
            out
        };
        let mut pool = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pool.len() < 8 {
            pool.push(conn);
        }
        result
    }

    pub fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<Stored>, StoreError> {
        self.read(|r| r.get(kind, id))
    }

    /// Group ids and display names a resource is a direct member of.
    pub fn groups_of(&self, member_id: &str) -> Result<Vec<(String, Option<String>)>, StoreError> {
        self.read(|r| r.groups_of(member_id))
    }

    pub fn list(&self, query: &ListQuery) -> Result<(usize, Vec<Stored>), StoreError> {
        self.read(|r| r.list(query))
    }

    /// Every stored resource of `kind`, in list order, `size` at a time (one read per
    /// page): for tools that walk the whole store (reconcile, the soak's final check).
    pub fn pages(
        &self,
        kind: ResourceKind,
        size: usize,
    ) -> impl Iterator<Item = Result<Vec<Stored>, StoreError>> + '_ {
        let mut start = 1;
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let page = self.list(&ListQuery {
                kind: Some(kind),
                filter: None,
                sort_by: None,
                descending: false,
                start_index: start,
                count: size,
            });
            match &page {
                Ok((_, found)) if found.is_empty() => return None,
                Ok((_, found)) => start += found.len(),
                Err(_) => done = true,
            }
            Some(page.map(|(_, found)| found))
        })
    }

    /// `EXPLAIN QUERY PLAN` of a list query: documentation and tests of index use.
    pub fn explain_list(&self, query: &ListQuery) -> Result<String, StoreError> {
        self.read(|r| {
            let (sql, args) = list_sql(query, &format!("SELECT {COLUMNS}"), true);
            let mut stmt = r.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let rows =
                stmt.query_map(params_from_iter(args.iter()), |row| row.get::<_, String>(3))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?.join("\n"))
        })
    }
}

/// The secondary indexes, as `CREATE INDEX IF NOT EXISTS` (every open makes sure they
/// are there: a bulk load that dropped them and stopped half-way leaves none missing).
fn secondary_indexes() -> String {
    format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS resources_unique_key ON resources(kind, unique_key);
         CREATE INDEX IF NOT EXISTS resources_external_id ON resources(kind, external_id);
         CREATE INDEX IF NOT EXISTS resources_manager ON resources({MANAGER_EXPR}) WHERE kind = 'User';
         {MEMBERS_BY_MEMBER};
         {JOURNAL_BY_RESOURCE};
         CREATE INDEX IF NOT EXISTS journal_pending ON journal(seq) WHERE delivery = 'pending';"
    )
}

/// The index deleting a resource needs (its memberships, by member); a bulk load builds
/// it at its first deletion.
const MEMBERS_BY_MEMBER: &str =
    "CREATE INDEX IF NOT EXISTS members_by_member ON members(member_id, group_id)";

/// The index looking for a resource's later records needs; a bulk load builds it when a
/// record is not appended at the journal's head.
const JOURNAL_BY_RESOURCE: &str =
    "CREATE INDEX IF NOT EXISTS journal_by_resource ON journal(resource_id, seq)";

/// The indexes a bulk load goes without: all but the unique ones, which keep refusing a
/// duplicate as it comes, and `journal_pending`, which costs nothing per record replayed
/// (none is pending) but a whole scan of the journal to build again.
const DROP_SECONDARY_INDEXES: &str = "DROP INDEX IF EXISTS resources_external_id;
     DROP INDEX IF EXISTS resources_manager;
     DROP INDEX IF EXISTS members_by_member;
     DROP INDEX IF EXISTS journal_by_resource;";

impl Store {
    /// Whether the store holds nothing at all: no resource and no journal record.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.read(|r| {
            Ok(r.conn
                .prepare_cached(
                    "SELECT NOT EXISTS (SELECT 1 FROM resources) AND NOT EXISTS (SELECT 1 FROM journal)",
                )?
                .query_row([], |row| row.get(0))?)
        })
    }

    /// Runs a bulk load into an empty store (a replay) as one write transaction, without
    /// the non-unique secondary indexes, which it builds once at the end (one sort
    /// instead of an insert into five more B-trees per record).
    ///
    /// One transaction, so all or nothing: until its commit nothing of the load is in
    /// the database, so a crash or an error part-way leaves the store as empty as it was
    /// (a replay then starts over) rather than a prefix of the history; and there is one
    /// commit instead of one per chunk. `load` runs on the writer thread, with the write
    /// connection to itself; nothing else writes meanwhile.
    ///
    /// The load writes each page once. In WAL mode every page would be written twice:
    /// into the log (spilled there mid-transaction, or at the commit), then by the
    /// checkpoint into the database file. So the load runs in rollback-journal mode
    /// (`journal_mode=DELETE`), where a page beyond the database's size at the start of
    /// the transaction is never journaled: every new page goes straight into the
    /// database file, and the journal holds only the few pages the store had before.
    /// That stays atomic: a crash part-way leaves a hot journal (synced before any page
    /// of the database is overwritten), which the next open rolls back, truncating the
    /// file to the empty store it was. The commit is the journal's deletion, with the
    /// directory synced (`synchronous=EXTRA`: a power loss after the commit cannot bring
    /// the journal back and undo it). The connection then goes back to WAL mode before
    /// anything else uses it, and every open sets WAL mode anyway (a crash before the
    /// switch back leaves the database in rollback mode until the next open).
    ///
    /// Leaving WAL mode needs the database to this connection alone: the pooled read
    /// connections are closed first. When another connection holds it all the same (a
    /// reader in use, the daemon's checkpoint thread, another process), the load runs in
    /// WAL mode, as it did before, only slower.
    pub fn bulk_load<T: Send + 'static>(
        &self,
        load: impl FnOnce(&WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.writer.submit_alone(move |conn| {
            let rollback_journal = leave_wal(conn)?;
            let loaded = bulk_load_in(conn, load);
            let back = if rollback_journal {
                back_to_wal(conn)
            } else {
                Ok(())
            };
            // The load's own error first: it says why nothing was loaded.
            let out = loaded?;
            back?;
            Ok(out)
        })
    }
}

/// The transaction of [`Store::bulk_load`] on the write connection, in whichever journal
/// mode it is. On an error, dropping the transaction rolls the whole load back.
fn bulk_load_in<T>(
    conn: &mut Connection,
    load: impl FnOnce(&WriteTx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let wtx = WriteTx {
        tx: &tx,
        appended: Default::default(),
    };
    tx.execute_batch(DROP_SECONDARY_INDEXES)?;
    // The unique indexes (resource ids, unique keys) take inserts in random order: a
    // cache that holds them avoids reading their pages back.
    let cache: i64 = tx.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    tx.pragma_update(None, "cache_size", BULK_CACHE_KIB)?;
    let loaded = load(&wtx).and_then(|out| {
        tx.execute_batch(&secondary_indexes())?;
        Ok(out)
    });
    let restored = tx.pragma_update(None, "cache_size", cache);
    // A replay appends no `pending` record (its records are `none`): no listener to tell.
    drop(wtx);
    let out = loaded?;
    restored?;
    tx.commit()?;
    Ok(out)
}

/// Takes the write connection out of WAL mode for a bulk load (see [`Store::bulk_load`]):
/// `journal_mode=DELETE`, `synchronous=EXTRA`. Returns false, changing nothing, when
/// another connection holds the database (the load then runs in WAL mode).
fn leave_wal(conn: &mut Connection) -> Result<bool, StoreError> {
    // Another holder is not waited for long: the load can do without.
    crate::wal::wait_finely(conn, true)?;
    let mode =
        conn.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get::<_, String>(0));
    crate::wal::wait_finely(conn, false)?;
    match mode {
        Ok(mode) if mode.eq_ignore_ascii_case("delete") => {}
        Ok(_) => return Ok(false),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = conn.pragma_update(None, "synchronous", "EXTRA") {
        back_to_wal(conn)?;
        return Err(e.into());
    }
    Ok(true)
}

/// Puts the write connection back into WAL mode at `synchronous=FULL` after
/// [`leave_wal`].
fn back_to_wal(conn: &mut Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Writer(format!(
            "the state store stayed in journal mode '{mode}' after a bulk load; reopening it sets WAL mode again"
        )));
    }
    Ok(())
}

/// `cache_size` during a bulk load: 64 MiB (negative: KiB).
const BULK_CACHE_KIB: i64 = -64 * 1024;

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATION_1)?;
        tx.pragma_update(None, "user_version", 1)?;
        tx.commit()?;
    }
    if version < 2 {
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATION_2)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('origin', ?1)",
            [uuid::Uuid::new_v4().to_string()],
        )?;
        tx.pragma_update(None, "user_version", 2)?;
        tx.commit()?;
    }
    if version < 3 {
        let tx = conn.transaction()?;
        tx.execute_batch(&format!(
            "CREATE INDEX resources_manager ON resources({MANAGER_EXPR}) WHERE kind = 'User';"
        ))?;
        tx.pragma_update(None, "user_version", 3)?;
        tx.commit()?;
    }
    if version < 4 {
        let tx = conn.transaction()?;
        members::migrate_4(&tx)?;
        tx.pragma_update(None, "user_version", 4)?;
        tx.commit()?;
    }
    if version < 5 {
        let tx = conn.transaction()?;
        tx.execute_batch(secrets::MIGRATION_5)?;
        tx.pragma_update(None, "user_version", 5)?;
        tx.commit()?;
    }
    conn.execute_batch(&secondary_indexes())?;
    Ok(())
}

const COLUMNS: &str = "kind, id, version, created, last_modified, body";

fn row_to_stored(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, i64, String, String, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn decode(raw: (String, String, i64, String, String, String)) -> Result<Stored, StoreError> {
    let (kind, id, version, created, last_modified, body) = raw;
    let kind = ResourceKind::from_name(&kind).ok_or_else(|| StoreError::Corrupt {
        id: id.clone(),
        detail: format!("unknown kind '{kind}'"),
    })?;
    let doc = match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(doc)) => doc,
        Ok(_) => {
            return Err(StoreError::Corrupt {
                id,
                detail: "body is not a JSON object".into(),
            });
        }
        Err(e) => {
            return Err(StoreError::Corrupt {
                id,
                detail: e.to_string(),
            });
        }
    };
    Ok(Stored {
        kind,
        id,
        version,
        created,
        last_modified,
        doc,
    })
}

/// Reads shared by the read pool and the write transaction.
pub struct Reader<'a> {
    conn: &'a Connection,
}

impl Reader<'_> {
    /// How many journal records wait for delivery, and the time (journal timestamp) of the
    /// oldest of them: readiness and the backlog metrics. Both use the partial index on
    /// pending records, so the cost grows with the backlog, not the journal.
    pub fn journal_backlog(&self) -> Result<(u64, Option<String>), StoreError> {
        let (count, oldest): (i64, Option<String>) = self
            .conn
            .prepare_cached(
                "SELECT count(*), (SELECT time FROM journal WHERE delivery = 'pending' ORDER BY seq LIMIT 1) \
                 FROM journal WHERE delivery = 'pending'",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((u64::try_from(count).unwrap_or(0), oldest))
    }
}

impl Reader<'_> {
    /// A resource, with its `members` when it is a group.
    pub fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<Stored>, StoreError> {
        self.get_without_members(kind, id)?
            .map(|s| self.with_members(s))
            .transpose()
    }

    /// A resource as its row stores it: a group without its `members` (they are in the
    /// members table), read in time independent of the group's size.
    pub fn get_without_members(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        let raw = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM resources WHERE id = ?1 AND kind = ?2"
            ))?
            .query_row(params![id, kind.name()], row_to_stored)
            .optional()?;
        raw.map(decode).transpose()
    }

    /// The kind of the resource with this id, if any.
    pub fn kind_of(&self, id: &str) -> Result<Option<ResourceKind>, StoreError> {
        let kind: Option<String> = self
            .conn
            .prepare_cached("SELECT kind FROM resources WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        Ok(kind.and_then(|k| ResourceKind::from_name(&k)))
    }

    /// The id of the resource of `kind` whose unique attribute folds to `key`.
    pub fn id_by_unique_key(
        &self,
        kind: ResourceKind,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM resources WHERE kind = ?1 AND unique_key = ?2")?
            .query_row(params![kind.name(), key], |r| r.get(0))
            .optional()?)
    }

    /// Whether `to` is reachable from group `from` through nested group membership.
    pub fn group_reaches(&self, from: &str, to: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "WITH RECURSIVE reach(id) AS ( \
                   SELECT member_id FROM members WHERE group_id = ?1 \
                   UNION SELECT m.member_id FROM members m JOIN reach r ON m.group_id = r.id) \
                 SELECT 1 FROM reach WHERE id = ?2 LIMIT 1",
            )?
            .query_row(params![from, to], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Ids of the users whose enterprise `manager` is `manager_id`.
    pub fn users_managed_by(&self, manager_id: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id FROM resources WHERE kind = 'User' AND {MANAGER_EXPR} = ?1"
        ))?;
        let rows = stmt.query_map([manager_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn groups_of(&self, member_id: &str) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.id, json_extract(r.body, '$.displayName') FROM members m \
             JOIN resources r ON r.id = m.group_id WHERE m.member_id = ?1 ORDER BY r.seq",
        )?;
        let rows = stmt.query_map([member_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn list(&self, query: &ListQuery) -> Result<(usize, Vec<Stored>), StoreError> {
        self.list_with(query, true)
    }

    /// A list query; groups come with their `members` only when `members` is true.
    pub fn list_with(
        &self,
        query: &ListQuery,
        members: bool,
    ) -> Result<(usize, Vec<Stored>), StoreError> {
        let count = |query: &ListQuery| -> Result<usize, StoreError> {
            let (count_sql, count_args) = list_sql(query, "SELECT count(*)", false);
            let total: i64 = self
                .conn
                .prepare_cached(&count_sql)?
                .query_row(params_from_iter(count_args.iter()), |r| r.get(0))?;
            Ok(total as usize)
        };
        if query.count == 0 {
            return Ok((count(query)?, Vec::new()));
        }
        let (sql, args) = list_sql(query, &format!("SELECT {COLUMNS}"), true);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args.iter()), row_to_stored)?;
        let mut out = Vec::new();
        for raw in rows {
            let stored = decode(raw?)?;
            out.push(if members {
                self.with_members(stored)?
            } else {
                stored
            });
        }
        // A first page that is not full holds every match: no need to count them (the
        // filtered lookups Entra sends find one user or none).
        let total = if query.start_index <= 1 && out.len() < query.count {
            out.len()
        } else {
            count(query)?
        };
        Ok((total, out))
    }
}

/// Builds a list query's SQL: indexed predicates for the equality tests that have an
/// index, `scim_match` for the filter as a whole when anything else remains.
fn list_sql(query: &ListQuery, select: &str, page: bool) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as Sql;
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    if let Some(kind) = query.kind {
        args.push(Sql::Text(kind.name().into()));
        clauses.push(format!("kind = ?{}", args.len()));
    }
    if let Some(filter) = &query.filter {
        let mut conjuncts = Vec::new();
        flatten_and(filter, &mut conjuncts);
        let mut all_indexed = true;
        for c in conjuncts {
            match indexed_predicate(query.kind, c) {
                Some((Indexed::Column(column), value)) => {
                    args.push(Sql::Text(value));
                    clauses.push(format!("{column} = ?{}", args.len()));
                }
                Some((Indexed::Member, value)) => {
                    args.push(Sql::Text(value));
                    clauses.push(format!(
                        "EXISTS (SELECT 1 FROM members mq WHERE mq.group_id = resources.id AND mq.member_id = ?{})",
                        args.len()
                    ));
                }
                None => all_indexed = false,
            }
        }
        if !all_indexed {
            args.push(Sql::Text(filter.to_string()));
            clauses.push(format!(
                "scim_match(?{}, kind, {})",
                args.len(),
                body_for(query.kind)
            ));
        }
    }
    let mut sql = format!("{select} FROM resources");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    if page {
        match &query.sort_by {
            Some(path) => {
                args.push(Sql::Text(path.to_string()));
                let dir = if query.descending { "DESC" } else { "ASC" };
                // Absent values sort last in either direction; seq keeps ties stable.
                sql.push_str(&format!(
                    " ORDER BY scim_sort_key(?{n}, kind, {body}) IS NULL, scim_sort_key(?{n}, kind, {body}) {dir}, seq",
                    n = args.len(),
                    body = body_for(query.kind)
                ));
            }
            None => sql.push_str(" ORDER BY seq"),
        }
        args.push(Sql::Integer(query.count as i64));
        args.push(Sql::Integer(query.start_index.saturating_sub(1) as i64));
        sql.push_str(&format!(
            " LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        ));
    }
    (sql, args)
}

/// The document a filter or sort sees: groups' with their members.
fn body_for(kind: Option<ResourceKind>) -> &'static str {
    match kind {
        Some(ResourceKind::User) => "body",
        _ => members::BODY_WITH_MEMBERS,
    }
}

fn flatten_and<'f>(filter: &'f Filter, out: &mut Vec<&'f Filter>) {
    match filter {
        Filter::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        other => out.push(other),
    }
}

/// What answers an indexed equality test.
enum Indexed {
    /// `column = value`.
    Column(&'static str),
    /// The group has a member with this id (`members eq "id"`, `members.value eq "id"`:
    /// Entra's membership check).
    Member,
}

/// An equality test that an index answers exactly, with the value to compare.
fn indexed_predicate(kind: Option<ResourceKind>, f: &Filter) -> Option<(Indexed, String)> {
    let Filter::Attr {
        path,
        test: Test::Compare(CompareOp::Eq, CompValue::Str(value)),
    } = f
    else {
        return None;
    };
    let kind = kind?;
    let target = resolve(kind, path)?;
    if !matches!(target.container, crate::scim::resource::Container::Core) {
        return None;
    }
    if kind == ResourceKind::Group
        && target.def.name == "members"
        && path
            .sub_attr
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("value"))
    {
        return Some((Indexed::Member, value.clone()));
    }
    if path.sub_attr.is_some() {
        return None;
    }
    match target.def.name {
        "id" => Some((Indexed::Column("id"), value.clone())),
        "externalId" => Some((Indexed::Column("external_id"), value.clone())),
        name if name == kind.unique_attr() => Some((Indexed::Column("unique_key"), fold(value))),
        _ => None,
    }
}

/// The columns of a new `resources` row.
struct NewRow<'a> {
    kind: ResourceKind,
    id: &'a str,
    unique_key: &'a str,
    external_id: Option<&'a str>,
    version: i64,
    created: &'a str,
    last_modified: &'a str,
    actor: &'a str,
    body: &'a str,
}

/// The write transaction handed to the engine (a savepoint inside the batch's
/// transaction): reads see the transaction's own writes.
pub struct WriteTx<'c> {
    tx: &'c Connection,
    /// The `pending` records this job appended, handed to the commit listener (see
    /// [`Store::on_commit`]) once they are durable.
    appended: std::cell::RefCell<Vec<crate::journal::record::Record>>,
}

impl WriteTx<'_> {
    pub fn reader(&self) -> Reader<'_> {
        Reader { conn: self.tx }
    }

    /// Inserts a new resource. A concurrent duplicate of the unique attribute is refused by
    /// the unique index even if the caller's check raced.
    pub fn insert(&self, res: &Stored, actor: &str) -> Result<(), StoreError> {
        let result = self.insert_row(NewRow {
            kind: res.kind,
            id: &res.id,
            unique_key: &unique_key(res),
            external_id: res.doc.get("externalId").and_then(Value::as_str),
            version: res.version,
            created: &res.created,
            last_modified: &res.last_modified,
            actor,
            body: &body_text(res),
        });
        map_unique(result, res)?;
        self.sync_members(res)
    }

    /// Inserts a row into `resources` (the callers map a unique violation).
    fn insert_row(&self, row: NewRow<'_>) -> rusqlite::Result<usize> {
        self.tx
            .prepare_cached(
                "INSERT INTO resources (kind, id, unique_key, external_id, version, created, last_modified, last_actor, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                row.kind.name(),
                row.id,
                row.unique_key,
                row.external_id,
                row.version,
                row.created,
                row.last_modified,
                row.actor,
                row.body
            ])
    }

    /// Replaces a stored resource's document and bookkeeping; a group's members become
    /// those of the document.
    pub fn update(&self, res: &Stored, actor: &str) -> Result<(), StoreError> {
        self.write_row(res, actor)?;
        self.sync_members(res)
    }

    /// Writes a resource's row (a group's members are not in it).
    fn write_row(&self, res: &Stored, actor: &str) -> Result<(), StoreError> {
        let body = body_text(res);
        let result = self
            .tx
            .prepare_cached(
                "UPDATE resources SET unique_key = ?2, external_id = ?3, version = ?4, last_modified = ?5, \
                 last_actor = ?6, body = ?7 WHERE id = ?1",
            )?
            .execute(params![
                res.id,
                unique_key(res),
                res.doc.get("externalId").and_then(Value::as_str),
                res.version,
                res.last_modified,
                actor,
                body
            ]);
        map_unique(result, res)
    }

    /// Removes a resource, its members (a group) and its memberships.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.drop_memberships_of(id)?;
        self.tx
            .prepare_cached("DELETE FROM resources WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }
}

fn map_unique(result: rusqlite::Result<usize>, res: &Stored) -> Result<(), StoreError> {
    match result {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Duplicate {
                kind: res.kind.unique_attr(),
                value: res
                    .doc
                    .get(res.kind.unique_attr())
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn unique_key(res: &Stored) -> String {
    fold(
        res.doc
            .get(res.kind.unique_attr())
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// The text of a resource's `body` column: its document without `members` (serialised
/// from the document in place, without a copy).
fn body_text(res: &Stored) -> String {
    struct WithoutMembers<'a>(&'a Map<String, Value>);
    impl serde::Serialize for WithoutMembers<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(None)?;
            for (k, v) in self.0.iter().filter(|(k, _)| *k != "members") {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
    // Serialising a JSON map to a string cannot fail.
    serde_json::to_string(&WithoutMembers(&res.doc)).unwrap_or_default()
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests;
