//! The links file: which directory entry each SCIM resource became.
//!
//! A small SQLite database owned by the target (`LdapSettings::links_path`), three tables:
//!
//! ```sql
//! CREATE TABLE links (kind TEXT NOT NULL, id TEXT PRIMARY KEY, dn TEXT NOT NULL,
//!     value TEXT, disabled INTEGER NOT NULL DEFAULT 0, archived TEXT,
//!     fresh INTEGER NOT NULL DEFAULT 0, moving_from TEXT)
//! CREATE TABLE pending_refs (id TEXT NOT NULL, attribute TEXT NOT NULL,
//!     target TEXT NOT NULL, PRIMARY KEY (id, attribute))
//! CREATE TABLE wanted_members (group_id TEXT NOT NULL, member_id TEXT NOT NULL,
//!     PRIMARY KEY (group_id, member_id))
//! ```
//!
//! `kind` is `User` or `Group`, `id` the SCIM id, `dn` the DN the entry was last converged
//! to, as the mapping wrote it (RFC 4514-escaped); `value` the value groups list for it
//! when they list an attribute rather than DNs (`memberUid`: its `uid`); `disabled` 1
//! while a user is disabled under a policy that drops its memberships; `archived` the
//! archive time of an entry deleted under the archive policy; `fresh` 1 between linking
//! a new entry ahead of its add (so a retry knows the entry is its own) and the end of
//! its first converge. `wanted_members` holds each group's SCIM member ids as last
//! converged: a member linked, or enabled, later joins the groups that want it. The
//! columns after `dn` and `wanted_members` came with `user_version` 1; `default_members`
//! (the default groups each user joined, kept through the groups' own converges) with 2;
//! `moving_from` (the DN a rename in progress moves the entry from, see [`MOVING_FROM`])
//! with 3;
//! older files are migrated when opened. A `pending_refs` row is a reference
//! attribute (`dn_reference`, e.g. `manager`) of the entry of `id` that names the SCIM id
//! `target`, not linked yet: written once `target` is. Opened with `journal_mode=WAL` and
//! `synchronous=FULL`: a link lost in a crash would make the next rename add a second
//! entry instead of moving the first.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::scim::schema::ResourceKind;
use crate::target::TargetError;

pub(super) struct Links {
    conn: Mutex<Connection>,
    /// The parents of the linked DNs by kind (canonical form → as written), read once and
    /// kept up to date by `set`: where the entries that may reference an entry live. A
    /// parent stays after its last entry is gone (one search too many, never one too
    /// few).
    parents: Mutex<HashMap<&'static str, HashMap<String, String>>>,
}

/// What the links file knows of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Link {
    pub(super) kind: String,
    pub(super) dn: String,
    pub(super) value: Option<String>,
    pub(super) disabled: bool,
    pub(super) archived: Option<String>,
    pub(super) fresh: bool,
    /// The DN a rename in progress moves the entry away from (see [`MOVING_FROM`]).
    pub(super) moving_from: Option<String>,
}

impl Link {
    /// The DN groups and references may still name: the one a rename in progress left,
    /// else the linked one.
    pub(super) fn previous_dn(&self) -> &str {
        self.moving_from.as_deref().unwrap_or(&self.dn)
    }
}

/// Creates the tables, or brings an older file up to date, in one transaction.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version >= 3 {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    if version == 2 {
        tx.execute_batch(MOVING_FROM)?;
        return tx.commit();
    }
    if version == 1 {
        tx.execute_batch(DEFAULT_MEMBERS)?;
        tx.execute_batch(MOVING_FROM)?;
        return tx.commit();
    }
    tx.execute(
        "CREATE TABLE IF NOT EXISTS links (kind TEXT NOT NULL, id TEXT PRIMARY KEY, dn TEXT NOT NULL)",
        [],
    )?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS pending_refs (id TEXT NOT NULL, attribute TEXT NOT NULL, \
         target TEXT NOT NULL, PRIMARY KEY (id, attribute))",
        [],
    )?;
    tx.execute_batch(
        "ALTER TABLE links ADD COLUMN value TEXT;
         ALTER TABLE links ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE links ADD COLUMN archived TEXT;
         ALTER TABLE links ADD COLUMN fresh INTEGER NOT NULL DEFAULT 0;
         CREATE TABLE wanted_members (group_id TEXT NOT NULL, member_id TEXT NOT NULL,
             PRIMARY KEY (group_id, member_id));
         CREATE INDEX wanted_members_member ON wanted_members (member_id);",
    )?;
    tx.execute_batch(DEFAULT_MEMBERS)?;
    tx.execute_batch(MOVING_FROM)?;
    tx.commit()
}

/// Version 3: `moving_from`, the DN an entry is being renamed away from. Set, durably,
/// before the modifyDN, with `dn` already the new DN; cleared once the rename's
/// consequences (groups, references) are written. A crash anywhere in between leaves
/// the entry at one of the two DNs, and the next converge looks at both: never a second
/// entry at the old DN, never groups left naming it.
const MOVING_FROM: &str = "ALTER TABLE links ADD COLUMN moving_from TEXT;
 PRAGMA user_version = 3;";

/// Version 2: the default groups each user joined (`group_key`: the group's DN in
/// comparable form, see `dn::canonical`).
const DEFAULT_MEMBERS: &str = "CREATE TABLE default_members (member_id TEXT NOT NULL,
     group_key TEXT NOT NULL, PRIMARY KEY (member_id, group_key));
 CREATE INDEX default_members_group ON default_members (group_key);
 PRAGMA user_version = 2;";

impl Links {
    pub(super) fn open(path: &Path) -> Result<Links, TargetError> {
        let open_error = |detail: String| TargetError::Open {
            path: path.display().to_string(),
            detail: format!("the LDAP links file: {detail}"),
        };
        let conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| open_error(e.to_string()))?;
        conn.set_prepared_statement_cache_capacity(crate::wal::STATEMENT_CACHE);
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| open_error(e.to_string()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_error(format!(
                "cannot switch to WAL journal mode (it stays in '{mode}' mode); WAL needs a local file system"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| open_error(e.to_string()))?;
        migrate(&conn).map_err(|e| open_error(e.to_string()))?;
        conn.execute_batch("CREATE INDEX IF NOT EXISTS links_dn ON links (dn)")
            .map_err(|e| open_error(e.to_string()))?;
        Ok(Links {
            conn: Mutex::new(conn),
            parents: Mutex::default(),
        })
    }

    /// The links file opened read-only, for previews: the daemon's file when it exists
    /// (and is up to date), else an empty in-memory one. Nothing is ever written to disk.
    pub(super) fn open_read_only(path: &Path) -> Result<Links, TargetError> {
        let open_error = |detail: String| TargetError::Open {
            path: path.display().to_string(),
            detail: format!("the LDAP links file: {detail}"),
        };
        let conn = if path.exists() {
            let conn =
                Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map_err(|e| open_error(e.to_string()))?;
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(|e| open_error(e.to_string()))?;
            if version < 2 {
                return Err(open_error(
                    "written by an older version; start the daemon once to migrate it".into(),
                ));
            }
            conn
        } else {
            let conn = Connection::open_in_memory().map_err(|e| open_error(e.to_string()))?;
            migrate(&conn).map_err(|e| open_error(e.to_string()))?;
            conn
        };
        Ok(Links {
            conn: Mutex::new(conn),
            parents: Mutex::default(),
        })
    }

    /// Starts a batch: the writes until [`end_batch`](Self::end_batch) share one
    /// transaction (one fsync instead of one per write). A transaction left open (by a
    /// panic in a batch) is committed first.
    pub(super) fn begin_batch(&self) -> rusqlite::Result<()> {
        let conn = self.conn();
        if !conn.is_autocommit() {
            conn.execute_batch("COMMIT")?;
        }
        conn.execute_batch("BEGIN IMMEDIATE")
    }

    /// Commits the batch's writes.
    pub(super) fn end_batch(&self) -> rusqlite::Result<()> {
        let conn = self.conn();
        if conn.is_autocommit() {
            return Ok(());
        }
        conn.execute_batch("COMMIT")
    }

    /// Makes the writes so far durable now, inside a batch or not (a link that must be on
    /// disk before the directory is written).
    pub(super) fn sync_now(&self) -> rusqlite::Result<()> {
        let conn = self.conn();
        if conn.is_autocommit() {
            return Ok(());
        }
        conn.execute_batch("COMMIT; BEGIN IMMEDIATE")
    }

    /// A panic while the lock was held cannot leave a statement half-done (each is
    /// atomic), so a poisoned lock is still usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Before renaming the entry of `id` from `from` to `to`: links it to `to` and
    /// remembers `from`, durably (see [`MOVING_FROM`]).
    pub(super) fn begin_move(
        &self,
        kind: ResourceKind,
        id: &str,
        from: &str,
        to: &str,
    ) -> rusqlite::Result<()> {
        self.set(kind, id, to)?;
        self.conn()
            .prepare_cached("UPDATE links SET moving_from = ?2 WHERE id = ?1")?
            .execute([id, from])?;
        self.sync_now()
    }

    /// The rename of `id`'s entry failed: it is still at `from`.
    pub(super) fn undo_move(
        &self,
        kind: ResourceKind,
        id: &str,
        from: &str,
    ) -> rusqlite::Result<()> {
        self.set(kind, id, from)?;
        self.end_move(id)
    }

    /// The rename of `id`'s entry and its consequences are written.
    pub(super) fn end_move(&self, id: &str) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE links SET moving_from = NULL WHERE id = ?1 AND moving_from IS NOT NULL",
            )?
            .execute([id])?;
        Ok(())
    }

    /// The DN linked to `id`.
    pub(super) fn get(&self, id: &str) -> rusqlite::Result<Option<String>> {
        self.conn()
            .prepare_cached("SELECT dn FROM links WHERE id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()
    }

    /// Everything known of `id`.
    pub(super) fn link(&self, id: &str) -> rusqlite::Result<Option<Link>> {
        self.conn()
            .prepare_cached(
                "SELECT kind, dn, value, disabled, archived, fresh, moving_from FROM links WHERE id = ?1",
            )?
            .query_row([id], |row| {
                Ok(Link {
                    kind: row.get(0)?,
                    dn: row.get(1)?,
                    value: row.get(2)?,
                    disabled: row.get(3)?,
                    archived: row.get(4)?,
                    fresh: row.get(5)?,
                    moving_from: row.get(6)?,
                })
            })
            .optional()
    }

    /// The id linked to the entry at `dn` (compared as written, then by `same`).
    pub(super) fn id_at(&self, dn: &str) -> rusqlite::Result<Option<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT id, dn FROM links")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (id, linked) = row?;
            if super::dn::same(&linked, dn) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Records the state of a converged entry: its member value, whether it is disabled
    /// (memberships dropped) and its archive time; clears `fresh`.
    pub(super) fn set_state(
        &self,
        id: &str,
        value: Option<&str>,
        disabled: bool,
        archived: Option<&str>,
    ) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE links SET value = ?2, disabled = ?3, archived = ?4, fresh = 0 \
                 WHERE id = ?1 AND (value IS NOT ?2 OR disabled IS NOT ?3 \
                 OR archived IS NOT ?4 OR fresh != 0)",
            )?
            .execute(rusqlite::params![id, value, disabled, archived])?;
        Ok(())
    }

    /// Links `id` to `dn` before its entry is added, marked fresh (see the module doc).
    pub(super) fn set_fresh(&self, kind: ResourceKind, id: &str, dn: &str) -> rusqlite::Result<()> {
        self.set(kind, id, dn)?;
        self.conn()
            .prepare_cached("UPDATE links SET fresh = 1 WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// The ids of the resources of `kind` archived before `before` (fixed-width RFC 3339).
    pub(super) fn archived_before(
        &self,
        kind: ResourceKind,
        before: &str,
    ) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM links WHERE kind = ?1 AND archived IS NOT NULL AND archived < ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map([kind.name(), before], |row| row.get(0))?;
        rows.collect()
    }

    /// Remembers the SCIM member ids of group `group` as last converged.
    pub(super) fn set_wanted(&self, group: &str, members: &[String]) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        // A savepoint: inside a batch's transaction as well as on its own.
        let tx = conn.savepoint()?;
        let have: std::collections::HashSet<String> = {
            let mut stmt =
                tx.prepare_cached("SELECT member_id FROM wanted_members WHERE group_id = ?1")?;
            let rows = stmt.query_map([group], |row| row.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let want: std::collections::HashSet<&str> = members.iter().map(String::as_str).collect();
        for gone in have.iter().filter(|m| !want.contains(m.as_str())) {
            tx.prepare_cached("DELETE FROM wanted_members WHERE group_id = ?1 AND member_id = ?2")?
                .execute([group, gone])?;
        }
        for new in want.iter().filter(|m| !have.contains(**m)) {
            tx.prepare_cached("INSERT INTO wanted_members (group_id, member_id) VALUES (?1, ?2)")?
                .execute([group, new])?;
        }
        tx.commit()
    }

    /// Whether `group` wants at least one member that is linked (so listed), stopping at
    /// the first: cheap for a group of any size.
    pub(super) fn wants_a_linked_member(&self, group: &str) -> rusqlite::Result<bool> {
        self.conn()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM wanted_members w JOIN links l ON l.id = w.member_id \
                 WHERE w.group_id = ?1 AND l.archived IS NULL AND l.disabled = 0)",
            )?
            .query_row([group], |row| row.get(0))
    }

    /// Applies a member delta to the SCIM member ids remembered for `group`.
    pub(super) fn change_wanted(
        &self,
        group: &str,
        added: &[String],
        removed: &[String],
    ) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        // A savepoint: inside a batch's transaction as well as on its own.
        let tx = conn.savepoint()?;
        for gone in removed {
            tx.prepare_cached("DELETE FROM wanted_members WHERE group_id = ?1 AND member_id = ?2")?
                .execute([group, gone])?;
        }
        for new in added {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO wanted_members (group_id, member_id) VALUES (?1, ?2)",
            )?
            .execute([group, new])?;
        }
        tx.commit()
    }

    /// Whether `member` joined the group at `group_dn` as its default group.
    pub(super) fn is_default(&self, member: &str, group_dn: &str) -> rusqlite::Result<bool> {
        let conn = self.conn();
        let found = conn
            .prepare_cached(
                "SELECT 1 FROM default_members WHERE member_id = ?1 AND group_key = ?2",
            )?
            .query_row([member, &super::dn::canonical(group_dn)], |_| Ok(()))
            .optional()?;
        Ok(found.is_some())
    }

    /// The groups whose SCIM members include `member`, sorted.
    pub(super) fn groups_wanting(&self, member: &str) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT group_id FROM wanted_members WHERE member_id = ?1 ORDER BY group_id",
        )?;
        let rows = stmt.query_map([member], |row| row.get(0))?;
        rows.collect()
    }

    /// The ids of the resources of `kind` linked and not archived, sorted.
    pub(super) fn held(&self, kind: ResourceKind) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM links WHERE kind = ?1 AND archived IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([kind.name()], |row| row.get(0))?;
        rows.collect()
    }

    pub(super) fn set(&self, kind: ResourceKind, id: &str, dn: &str) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO links (kind, id, dn) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, dn = excluded.dn \
                 WHERE kind IS NOT excluded.kind OR dn IS NOT excluded.dn",
            )?
            .execute([kind.name(), id, dn])?;
        if let Some(parent) = super::dn::parent(dn)
            && let Some(known) = self
                .parents
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_mut(kind.name())
        {
            known
                .entry(super::dn::canonical(parent))
                .or_insert_with(|| parent.to_string());
        }
        Ok(())
    }

    /// The parents of the DNs linked to resources of `kind` (see the field).
    pub(super) fn parents_of(&self, kind: ResourceKind) -> rusqlite::Result<Vec<String>> {
        let mut parents = self
            .parents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !parents.contains_key(kind.name()) {
            let mut known = HashMap::new();
            for dn in self.dns_of(kind)? {
                if let Some(parent) = super::dn::parent(&dn) {
                    known
                        .entry(super::dn::canonical(parent))
                        .or_insert_with(|| parent.to_string());
                }
            }
            parents.insert(kind.name(), known);
        }
        Ok(parents
            .get(kind.name())
            .map(|known| known.values().cloned().collect())
            .unwrap_or_default())
    }

    /// Whether some resource is linked to the entry at `dn` (an indexed lookup when the
    /// DN is written as it was linked, else a comparison with every link).
    pub(super) fn is_linked_dn(&self, dn: &str) -> rusqlite::Result<bool> {
        let exact = self
            .conn()
            .prepare_cached("SELECT 1 FROM links WHERE dn = ?1 LIMIT 1")?
            .query_row([dn], |_| Ok(()))
            .optional()?
            .is_some();
        Ok(exact || self.id_at(dn)?.is_some())
    }

    /// Forgets `id`: its link, and the members it wants if it is a group.
    pub(super) fn remove(&self, id: &str) -> rusqlite::Result<()> {
        let conn = self.conn();
        conn.prepare_cached("DELETE FROM links WHERE id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM wanted_members WHERE group_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM default_members WHERE member_id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// Remembers that `member` joined the default group at `group_dn`.
    pub(super) fn add_default(&self, member: &str, group_dn: &str) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT OR IGNORE INTO default_members (member_id, group_key) VALUES (?1, ?2)",
            )?
            .execute([member, &super::dn::canonical(group_dn)])?;
        Ok(())
    }

    /// The members that joined the group at `group_dn` as their default group, sorted.
    pub(super) fn default_members(&self, group_dn: &str) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT member_id FROM default_members WHERE group_key = ?1 ORDER BY member_id",
        )?;
        let rows = stmt.query_map([super::dn::canonical(group_dn)], |row| row.get(0))?;
        rows.collect()
    }

    /// The DNs linked to resources of `kind`, sorted.
    pub(super) fn dns_of(&self, kind: ResourceKind) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT dn FROM links WHERE kind = ?1 ORDER BY dn")?;
        let rows = stmt.query_map([kind.name()], |row| row.get(0))?;
        rows.collect()
    }

    /// Remembers that attribute `attribute` of the entry of `id` references `target`, not
    /// linked yet.
    pub(super) fn set_pending(
        &self,
        id: &str,
        attribute: &str,
        target: &str,
    ) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO pending_refs (id, attribute, target) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id, attribute) DO UPDATE SET target = excluded.target \
                 WHERE target IS NOT excluded.target",
            )?
            .execute([id, attribute, target])?;
        Ok(())
    }

    /// Forgets the pending reference of attribute `attribute` of the entry of `id`.
    pub(super) fn clear_pending(&self, id: &str, attribute: &str) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM pending_refs WHERE id = ?1 AND attribute = ?2")?
            .execute([id, attribute])?;
        Ok(())
    }

    /// Forgets every pending reference held by the entry of `id`.
    pub(super) fn clear_pending_of(&self, id: &str) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM pending_refs WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// The pending references `(id, attribute, target)` held by `key` or naming it as
    /// their target, sorted.
    pub(super) fn pending_involving(
        &self,
        key: &str,
    ) -> rusqlite::Result<Vec<(String, String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, attribute, target FROM pending_refs WHERE id = ?1 OR target = ?1 \
             ORDER BY id, attribute",
        )?;
        let rows = stmt.query_map([key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect()
    }

    /// Forgets the pending reference of `attribute` of the entry of `id` if it still
    /// names `target`.
    pub(super) fn resolved_pending(
        &self,
        id: &str,
        attribute: &str,
        target: &str,
    ) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "DELETE FROM pending_refs WHERE id = ?1 AND attribute = ?2 AND target = ?3",
            )?
            .execute([id, attribute, target])?;
        Ok(())
    }
}
