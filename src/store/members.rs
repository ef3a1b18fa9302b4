//! Group memberships: the `members` table is where a group's members live; the stored
//! group document has no `members` (docs/journal-format.md, "Membership deltas").
//!
//! A row is one member of one group, with the member's `type` and the `display` the client
//! sent; `pos` keeps the order members were added in. Reading a whole group assembles
//! `members` from its rows; adding or removing k members touches k rows, whatever the
//! group's size.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::{Reader, StoreError, Stored, WriteTx};
use crate::journal::record::MemberDelta;
use crate::scim::schema::ResourceKind;

/// Migration 4: the members table gets `type`, `display` and `pos`, and every stored group
/// document's `members` moves into it.
pub(super) fn migrate_4(tx: &Connection) -> Result<(), StoreError> {
    tx.execute_batch(
        "CREATE TABLE members_v4 (
             pos       INTEGER PRIMARY KEY,  -- the order members were added in
             group_id  TEXT NOT NULL,
             member_id TEXT NOT NULL,
             type      TEXT,                 -- 'User' | 'Group'
             display   TEXT,
             UNIQUE (group_id, member_id)
         );",
    )?;
    let groups: Vec<(String, String)> = {
        let mut stmt =
            tx.prepare("SELECT id, body FROM resources WHERE kind = 'Group' ORDER BY seq")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, body) in groups {
        let mut doc: Map<String, Value> =
            serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                id: id.clone(),
                detail: e.to_string(),
            })?;
        let Some(Value::Array(members)) = doc.remove("members") else {
            continue;
        };
        let mut insert = tx.prepare(
            "INSERT OR IGNORE INTO members_v4 (group_id, member_id, type, display) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for member in &members {
            if let Some(member_id) = member.get("value").and_then(Value::as_str) {
                insert.execute(params![
                    id,
                    member_id,
                    member.get("type").and_then(Value::as_str),
                    member.get("display").and_then(Value::as_str),
                ])?;
            }
        }
        tx.execute(
            "UPDATE resources SET body = ?2 WHERE id = ?1",
            params![id, Value::Object(doc).to_string()],
        )?;
    }
    tx.execute_batch(
        "DROP TABLE members;
         ALTER TABLE members_v4 RENAME TO members;
         CREATE INDEX members_by_member ON members(member_id, group_id);",
    )?;
    Ok(())
}

/// Inserts one member object's row unless the pair is there already.
fn insert_row(conn: &Connection, group_id: &str, member: &Value) -> Result<bool, StoreError> {
    let Some(member_id) = member.get("value").and_then(Value::as_str) else {
        return Ok(false);
    };
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO members (group_id, member_id, type, display) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            group_id,
            member_id,
            member.get("type").and_then(Value::as_str),
            member.get("display").and_then(Value::as_str),
        ])?;
    Ok(n > 0)
}

/// A member object as the document shows it.
fn member_object(id: String, kind: Option<String>, display: Option<String>) -> Value {
    let mut obj = Map::new();
    if let Some(display) = display {
        obj.insert("display".into(), Value::String(display));
    }
    if let Some(kind) = kind {
        obj.insert("type".into(), Value::String(kind));
    }
    obj.insert("value".into(), Value::String(id));
    Value::Object(obj)
}

/// SQL for a stored row's document with its `members` (for `scim_match` and sorting
/// over groups): the body itself when the group has none, or for users.
pub(super) const BODY_WITH_MEMBERS: &str = "CASE WHEN kind = 'Group' AND EXISTS \
     (SELECT 1 FROM members mb WHERE mb.group_id = resources.id) \
     THEN json_set(body, '$.members', json((SELECT json_group_array(json_patch( \
         json_object('value', mb.member_id, 'type', mb.type), \
         CASE WHEN mb.display IS NULL THEN '{}' ELSE json_object('display', mb.display) END)) \
       FROM (SELECT * FROM members WHERE group_id = resources.id ORDER BY pos) mb))) \
     ELSE body END";

impl Reader<'_> {
    /// The members of a group, as member objects, in the order they were added.
    pub fn members_of(&self, group_id: &str) -> Result<Vec<Value>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT member_id, type, display FROM members WHERE group_id = ?1 ORDER BY pos",
        )?;
        let rows = stmt.query_map([group_id], |r| {
            Ok(member_object(r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether `member_id` is a direct member of `group_id`.
    pub fn is_member(&self, group_id: &str, member_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM members WHERE group_id = ?1 AND member_id = ?2")?
            .query_row(params![group_id, member_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Puts a group's `members` into its stored document (no-op for users and for groups
    /// without members).
    pub(super) fn with_members(&self, mut stored: Stored) -> Result<Stored, StoreError> {
        if stored.kind == ResourceKind::Group {
            let members = self.members_of(&stored.id)?;
            if !members.is_empty() {
                stored.doc.insert("members".into(), Value::Array(members));
            }
        }
        Ok(stored)
    }
}

impl WriteTx<'_> {
    /// Makes a group's rows match the `members` of its document (inserted or replaced
    /// whole): rows of members no longer listed go, new ones come; members that stay keep
    /// their row and order, with their `type` and `display` updated.
    pub(super) fn sync_members(&self, res: &Stored) -> Result<(), StoreError> {
        if res.kind != ResourceKind::Group {
            return Ok(());
        }
        let listed: Vec<&Value> = res
            .doc
            .get("members")
            .and_then(Value::as_array)
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        let wanted: std::collections::HashSet<&str> = listed
            .iter()
            .filter_map(|m| m.get("value").and_then(Value::as_str))
            .collect();
        let have: Vec<String> = {
            let mut stmt = self
                .tx
                .prepare_cached("SELECT member_id FROM members WHERE group_id = ?1")?;
            let rows = stmt.query_map([&res.id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut del = self
            .tx
            .prepare_cached("DELETE FROM members WHERE group_id = ?1 AND member_id = ?2")?;
        for gone in have.iter().filter(|id| !wanted.contains(id.as_str())) {
            del.execute(params![res.id, gone])?;
        }
        let mut upd = self.tx.prepare_cached(
            "UPDATE members SET type = ?3, display = ?4 WHERE group_id = ?1 AND member_id = ?2 \
             AND (type IS NOT ?3 OR display IS NOT ?4)",
        )?;
        for member in listed {
            if !insert_row(self.tx, &res.id, member)?
                && let Some(id) = member.get("value").and_then(Value::as_str)
            {
                upd.execute(params![
                    res.id,
                    id,
                    member.get("type").and_then(Value::as_str),
                    member.get("display").and_then(Value::as_str),
                ])?;
            }
        }
        Ok(())
    }

    /// Applies a member delta to a group's rows: O(size of the delta).
    pub fn apply_member_delta(
        &self,
        group_id: &str,
        delta: &MemberDelta,
    ) -> Result<(), StoreError> {
        let mut del = self
            .tx
            .prepare_cached("DELETE FROM members WHERE group_id = ?1 AND member_id = ?2")?;
        for gone in &delta.removed {
            del.execute(params![group_id, gone])?;
        }
        for member in &delta.added {
            insert_row(self.tx, group_id, member)?;
        }
        Ok(())
    }

    /// Replaces a group's document and bookkeeping without touching its members (the
    /// document has none): the other half of a delta write.
    pub fn update_without_members(&self, res: &Stored, actor: &str) -> Result<(), StoreError> {
        self.write_row(res, actor)
    }

    /// Removes every membership row naming `id` as the member (a deleted resource).
    pub(super) fn drop_memberships_of(&self, id: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM members WHERE member_id = ?1")?
            .execute([id])?;
        self.tx
            .prepare_cached("DELETE FROM members WHERE group_id = ?1")?
            .execute([id])?;
        Ok(())
    }
}
