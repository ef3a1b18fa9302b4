//! Schema checks at open: the identifiers of a [`TargetSchema`] validated, then the
//! database's tables created or migrated to it (DDL in the parent module's doc).
//!
//! Migration is additive only. Everything is first planned by comparing the schema with
//! `pragma_table_info`; if any table needs a change that could lose or reinterpret data,
//! every such problem is reported in one [`TargetError::Destructive`] and nothing is
//! executed. Otherwise the plan runs in one transaction, so a failure (e.g. a new unique
//! index over duplicate values) leaves the database as it was.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::quote;
use crate::target::{MembershipSpec, TableSpec, TargetError, TargetSchema};

/// The name of the unique index of `column` (ours: dropped when no longer unique).
pub(super) fn unique_index(table: &str, column: &str) -> String {
    format!("{table}_{column}_unique")
}

/// The name of the index on the member column of the membership table.
pub(super) fn member_index(table: &str, member_column: &str) -> String {
    format!("{table}_{member_column}_index")
}

/// Checks the identifiers of `schema`: non-empty, no NUL, not reserved by SQLite, and
/// distinct where SQLite needs them distinct (it compares identifiers ignoring ASCII
/// case; tables and indexes share one namespace).
pub(super) fn validate(schema: &TargetSchema) -> Result<(), String> {
    // Every table and index name, with what it is, to find collisions.
    let mut objects: Vec<(String, String)> = Vec::new();
    for (what, table) in [("users", &schema.users), ("groups", &schema.groups)] {
        let Some(t) = table else { continue };
        identifier(&format!("the {what} table name"), &t.name)?;
        table_name(&t.name)?;
        objects.push((t.name.clone(), format!("the {what} table")));
        let mut columns: Vec<&str> = Vec::new();
        identifier(
            &format!("the key column of table {}", t.name),
            &t.key_column,
        )?;
        columns.push(&t.key_column);
        for c in &t.columns {
            identifier(&format!("a column name of table {}", t.name), &c.name)?;
            columns.push(&c.name);
            if c.unique {
                objects.push((
                    unique_index(&t.name, &c.name),
                    format!(
                        "the unique index of column '{}' of table {}",
                        c.name, t.name
                    ),
                ));
            }
        }
        if let Some(a) = &t.archive_column {
            identifier(&format!("the archive column of table {}", t.name), a)?;
            columns.push(a);
        }
        distinct(&format!("table {}", t.name), &columns)?;
    }
    if let Some(m) = &schema.memberships {
        identifier("the membership table name", &m.name)?;
        table_name(&m.name)?;
        objects.push((m.name.clone(), "the membership table".into()));
        let columns = [&m.group_column, &m.member_column, &m.origin_column];
        for (what, c) in ["group", "member", "origin"].into_iter().zip(columns) {
            identifier(&format!("the {what} column of table {}", m.name), c)?;
        }
        distinct(&format!("table {}", m.name), &columns.map(String::as_str))?;
        objects.push((
            member_index(&m.name, &m.member_column),
            format!("the member index of table {}", m.name),
        ));
    }
    objects.push((
        super::CURSOR_TABLE.into(),
        "scim-bridge's delivery cursor table".into(),
    ));
    for (i, (name, what)) in objects.iter().enumerate() {
        if let Some((_, other)) = objects[..i]
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Err(format!("{other} and {what} are both named '{name}'"));
        }
    }
    Ok(())
}

fn identifier(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.contains('\0') {
        return Err(format!(
            "{what} '{}' contains a NUL character",
            name.escape_debug()
        ));
    }
    Ok(())
}

fn table_name(name: &str) -> Result<(), String> {
    // SQLite refuses to create these ("object name reserved for internal use").
    if name
        .get(..7)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("sqlite_"))
    {
        return Err(format!(
            "table name '{name}' is reserved by SQLite (it starts with 'sqlite_')"
        ));
    }
    Ok(())
}

fn distinct(what: &str, names: &[&str]) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if names[..i].iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "{what}: column '{name}' is named twice (SQLite ignores case in names)"
            ));
        }
    }
    Ok(())
}

/// A column as the database declares it.
struct DbColumn {
    name: String,
    ty: String,
    /// 0 when not part of the primary key, else its 1-based position in it.
    pk: i64,
}

/// Creates or migrates every table of `schema` in one transaction.
pub(super) fn migrate(
    conn: &mut Connection,
    schema: &TargetSchema,
    path: &Path,
) -> Result<(), TargetError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut ddl: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for table in [&schema.users, &schema.groups].into_iter().flatten() {
        plan_table(&tx, table, &mut ddl, &mut problems)?;
    }
    if let Some(m) = &schema.memberships {
        plan_memberships(&tx, m, &mut ddl, &mut problems)?;
    }
    if !problems.is_empty() {
        // Dropping `tx` rolls back: nothing was executed anyway.
        return Err(TargetError::Destructive(problems.join("\n")));
    }
    for statement in &ddl {
        tx.execute(statement, [])?;
    }
    for table in [&schema.users, &schema.groups].into_iter().flatten() {
        for c in &table.columns {
            let index = quote(&unique_index(&table.name, &c.name));
            if !c.unique {
                tx.execute(&format!("DROP INDEX IF EXISTS {index}"), [])?;
                continue;
            }
            let sql = format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {} ({})",
                quote(&table.name),
                quote(&c.name)
            );
            tx.execute(&sql, []).map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => TargetError::Open {
                    path: path.display().to_string(),
                    detail: format!(
                        "table {}: column '{}' cannot be made unique, rows already share a value ({e}) — \
                         resolve the duplicates, or remove 'unique' from the column in the mapping",
                        table.name, c.name
                    ),
                },
                _ => TargetError::Sqlite(e),
            })?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The declared columns of `table`, or `None` when it does not exist.
fn db_columns(
    conn: &Connection,
    table: &str,
) -> rusqlite::Result<Option<Result<Vec<DbColumn>, String>>> {
    let ty: Option<String> = conn
        .query_row(
            "SELECT type FROM sqlite_master WHERE name = ?1 COLLATE NOCASE AND type IN ('table', 'view')",
            [table],
            |row| row.get(0),
        )
        .optional()?;
    match ty.as_deref() {
        None => Ok(None),
        Some("table") => {
            let mut stmt = conn.prepare("SELECT name, type, pk FROM pragma_table_info(?1)")?;
            let columns = stmt
                .query_map([table], |row| {
                    Ok(DbColumn {
                        name: row.get(0)?,
                        ty: row.get(1)?,
                        pk: row.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(Ok(columns)))
        }
        Some(other) => Ok(Some(Err(format!(
            "table {table}: the database has a {other} of that name, not a table — rename the table in the mapping, \
             or drop the {other} yourself: DROP {} {}",
            other.to_ascii_uppercase(),
            quote(table)
        )))),
    }
}

fn plan_table(
    conn: &Connection,
    t: &TableSpec,
    ddl: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> rusqlite::Result<()> {
    // The non-key columns the schema wants, with their SQL types.
    let wanted: Vec<(&str, &str)> = t
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.ty.sql()))
        .chain(t.archive_column.as_deref().map(|a| (a, "TEXT")))
        .collect();
    let existing = match db_columns(conn, &t.name)? {
        Some(Ok(columns)) => columns,
        Some(Err(problem)) => {
            problems.push(problem);
            return Ok(());
        }
        None => {
            let columns: Vec<String> = std::iter::once(format!(
                "{} TEXT PRIMARY KEY NOT NULL",
                quote(&t.key_column)
            ))
            .chain(
                wanted
                    .iter()
                    .map(|(name, ty)| format!("{} {ty}", quote(name))),
            )
            .collect();
            ddl.push(format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                quote(&t.name),
                columns.join(", ")
            ));
            return Ok(());
        }
    };
    let key: Vec<&DbColumn> = existing.iter().filter(|c| c.pk > 0).collect();
    match key.as_slice() {
        [k] if k.name.eq_ignore_ascii_case(&t.key_column) => {
            if !k.ty.eq_ignore_ascii_case("TEXT") {
                problems.push(format!(
                    "table {}: the key column '{}' is declared {} in the database, but the key holds SCIM ids (TEXT) — \
                     rebuild the table yourself with \"{}\" TEXT PRIMARY KEY",
                    t.name,
                    k.name,
                    declared(&k.ty),
                    t.key_column
                ));
            }
        }
        _ => {
            let found = match key.as_slice() {
                [] => "the table has no primary key".to_string(),
                [k] => format!("the key column is '{}' in the database", k.name),
                many => format!(
                    "the primary key is ({}) in the database",
                    many.iter()
                        .map(|k| k.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let back = match key.as_slice() {
                [k] => format!("set the mapping's key back to '{}', or ", k.name),
                _ => String::new(),
            };
            problems.push(format!(
                "table {}: {found} but '{}' in the mapping; the key of existing rows cannot be changed in place — \
                 {back}rebuild the table yourself",
                t.name, t.key_column
            ));
        }
    }
    for c in existing.iter().filter(|c| c.pk == 0) {
        if c.name.eq_ignore_ascii_case(&t.key_column) {
            continue; // reported with the key
        }
        match wanted.iter().find(|(name, _)| name.eq_ignore_ascii_case(&c.name)) {
            None => problems.push(format!(
                "table {}: column '{}' exists in the database but not in the mapping; removing it would lose data — \
                 add it back to the mapping, or drop it yourself: ALTER TABLE {} DROP COLUMN {}",
                t.name,
                c.name,
                quote(&t.name),
                quote(&c.name)
            )),
            Some((name, ty)) if !c.ty.eq_ignore_ascii_case(ty) => {
                let back = if t.archive_column.as_deref() == Some(*name) {
                    "the archive column holds RFC 3339 text: rename the archive column in the mapping, or".to_string()
                } else {
                    match c.ty.to_ascii_uppercase().as_str() {
                        "TEXT" => "set the column's type in the mapping back to text or timestamp, or".to_string(),
                        "INTEGER" => "set the column's type in the mapping back to integer or boolean, or".to_string(),
                        _ => "rename the column in the mapping, or".to_string(),
                    }
                };
                problems.push(format!(
                    "table {}: column '{}' is declared {} in the database but {ty} in the mapping; converting it could \
                     change or lose data — {back} convert the column yourself (SQLite cannot retype a column in place: \
                     rebuild the table)",
                    t.name,
                    c.name,
                    declared(&c.ty)
                ));
            }
            Some(_) => {}
        }
    }
    for (name, ty) in &wanted {
        if !existing.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
            ddl.push(format!(
                "ALTER TABLE {} ADD COLUMN {} {ty}",
                quote(&t.name),
                quote(name)
            ));
        }
    }
    Ok(())
}

fn plan_memberships(
    conn: &Connection,
    m: &MembershipSpec,
    ddl: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let (g, mb, o) = (
        quote(&m.group_column),
        quote(&m.member_column),
        quote(&m.origin_column),
    );
    let wanted = [&m.group_column, &m.member_column, &m.origin_column];
    let existing = match db_columns(conn, &m.name)? {
        Some(Ok(columns)) => columns,
        Some(Err(problem)) => {
            problems.push(problem);
            return Ok(());
        }
        None => {
            ddl.push(format!(
                "CREATE TABLE IF NOT EXISTS {t} ({g} TEXT NOT NULL, {mb} TEXT NOT NULL, {o} TEXT NOT NULL, PRIMARY KEY ({g}, {mb}))",
                t = quote(&m.name)
            ));
            ddl.push(index_ddl(m));
            return Ok(());
        }
    };
    for c in &existing {
        match wanted.iter().find(|w| w.eq_ignore_ascii_case(&c.name)) {
            None => problems.push(format!(
                "table {}: column '{}' exists in the database but not in the mapping; removing it would lose data — \
                 add it back to the mapping, or drop it yourself: ALTER TABLE {} DROP COLUMN {}",
                m.name,
                c.name,
                quote(&m.name),
                quote(&c.name)
            )),
            Some(_) if !c.ty.eq_ignore_ascii_case("TEXT") => problems.push(format!(
                "table {}: column '{}' is declared {} in the database but the membership columns are TEXT — \
                 convert the column yourself (rebuild the table)",
                m.name,
                c.name,
                declared(&c.ty)
            )),
            Some(_) => {}
        }
    }
    for w in wanted {
        if !existing.iter().any(|c| c.name.eq_ignore_ascii_case(w)) {
            problems.push(format!(
                "table {}: column '{w}' is in the mapping but not in the database; a membership table cannot gain a \
                 column in place (its columns are NOT NULL) — rename the column in the mapping to the database's, \
                 or rebuild the table yourself",
                m.name
            ));
        }
    }
    let mut key: Vec<&DbColumn> = existing.iter().filter(|c| c.pk > 0).collect();
    key.sort_by_key(|c| c.pk);
    let key_matches = key.len() == 2
        && key[0].name.eq_ignore_ascii_case(&m.group_column)
        && key[1].name.eq_ignore_ascii_case(&m.member_column);
    if !key_matches {
        problems.push(format!(
            "table {}: the primary key is ({}) in the database but ({}, {}) in the mapping — rebuild the table yourself",
            m.name,
            key.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", "),
            m.group_column,
            m.member_column
        ));
    }
    ddl.push(index_ddl(m));
    Ok(())
}

fn index_ddl(m: &MembershipSpec) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
        quote(&member_index(&m.name, &m.member_column)),
        quote(&m.name),
        quote(&m.member_column)
    )
}

/// A declared type for messages (a column may be declared without one).
fn declared(ty: &str) -> &str {
    if ty.is_empty() { "without a type" } else { ty }
}
