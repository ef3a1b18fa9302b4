//! The links file: which directory entry each SCIM resource became.
//!
//! A small SQLite database owned by the target (`LdapSettings::links_path`), two tables:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS links (kind TEXT NOT NULL, id TEXT PRIMARY KEY, dn TEXT NOT NULL)
//! CREATE TABLE IF NOT EXISTS pending_refs (id TEXT NOT NULL, attribute TEXT NOT NULL,
//!     target TEXT NOT NULL, PRIMARY KEY (id, attribute))
//! ```
//!
//! `kind` is `User` or `Group`, `id` the SCIM id, `dn` the DN the entry was last converged
//! to, as the mapping wrote it (RFC 4514-escaped). A `pending_refs` row is a reference
//! attribute (`dn_reference`, e.g. `manager`) of the entry of `id` that names the SCIM id
//! `target`, not linked yet: written once `target` is. Opened with `journal_mode=WAL` and
//! `synchronous=FULL`: a link lost in a crash would make the next rename add a second
//! entry instead of moving the first.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::scim::schema::ResourceKind;
use crate::target::TargetError;

pub(super) struct Links {
    conn: Mutex<Connection>,
}

impl Links {
    pub(super) fn open(path: &Path) -> Result<Links, TargetError> {
        let open_error = |detail: String| TargetError::Open {
            path: path.display().to_string(),
            detail: format!("the LDAP links file: {detail}"),
        };
        let conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| open_error(e.to_string()))?;
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
        conn.execute(
            "CREATE TABLE IF NOT EXISTS links (kind TEXT NOT NULL, id TEXT PRIMARY KEY, dn TEXT NOT NULL)",
            [],
        )
        .map_err(|e| open_error(e.to_string()))?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS pending_refs (id TEXT NOT NULL, attribute TEXT NOT NULL, \
             target TEXT NOT NULL, PRIMARY KEY (id, attribute))",
            [],
        )
        .map_err(|e| open_error(e.to_string()))?;
        Ok(Links {
            conn: Mutex::new(conn),
        })
    }

    /// A panic while the lock was held cannot leave a statement half-done (each is
    /// atomic), so a poisoned lock is still usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The DN linked to `id`.
    pub(super) fn get(&self, id: &str) -> rusqlite::Result<Option<String>> {
        self.conn()
            .prepare_cached("SELECT dn FROM links WHERE id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()
    }

    pub(super) fn set(&self, kind: ResourceKind, id: &str, dn: &str) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO links (kind, id, dn) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, dn = excluded.dn \
                 WHERE kind IS NOT excluded.kind OR dn IS NOT excluded.dn",
            )?
            .execute([kind.name(), id, dn])?;
        Ok(())
    }

    pub(super) fn remove(&self, id: &str) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM links WHERE id = ?1")?
            .execute([id])?;
        Ok(())
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
