//! `scim-bridge mapping preview`: what target row a SCIM resource produces, and what
//! would change against the stored row. Writes nothing (the target database, if it
//! exists, is opened read-only).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rusqlite::OpenFlags;
use scim_bridge::config;
use scim_bridge::mapping::model::ResourceMap;
use scim_bridge::scim::resource::{normalize_resource, validate};
use scim_bridge::scim::schema::ResourceKind;
use scim_bridge::target::Cell;
use serde_json::Value;

/// The LDAP preview: the entry's LDIF, then the LDIF of what converging it would send to
/// the directory as it is now (read-only: nothing is written, the links file is only
/// read). A directory out of reach only drops the second part.
fn preview_ldap(
    settings: &scim_bridge::target::LdapSettings,
    mapping: &scim_bridge::mapping::model::Mapping,
    kind: ResourceKind,
    key: &str,
    doc: serde_json::Map<String, Value>,
) -> anyhow::Result<ExitCode> {
    use scim_bridge::journal::record::{Op, Record};
    use scim_bridge::target::{Change, Outcome};
    let record = Record {
        seq: 0,
        prev: String::new(),
        time: scim_bridge::journal::timestamp(time::OffsetDateTime::now_utc()),
        endpoint: scim_bridge::engine::DEFAULT_ENDPOINT.to_string(),
        actor: "preview".into(),
        client: None,
        request_id: None,
        op: Op::Replace,
        kind: kind.name().to_string(),
        id: key.to_string(),
        version_before: None,
        version_after: None,
        image: Value::Object(doc),
        member_delta: None,
    };
    let change = match mapping.change(&record) {
        Ok(change) => change,
        Err(reason) => {
            println!("the target would reject it: {reason}");
            return Ok(ExitCode::from(1));
        }
    };
    let target = scim_bridge::target::ldap::LdapTarget::open_for_preview(
        settings.clone(),
        mapping.ldap.clone(),
    )?;
    if let Change::Upsert { dn: Some(dn), .. } = &change {
        println!("dn: {dn}");
    }
    match target.entry_ldif(&change) {
        Ok(ldif) => {
            println!("\n# the entry\n{ldif}");
        }
        Err(reason) => {
            println!("the target would reject it: {reason}");
            return Ok(ExitCode::from(1));
        }
    }
    match target.plan(&change) {
        Ok(plan) if plan.is_empty() => {
            println!("# the directory's entry matches: nothing would be written");
        }
        Ok(plan) => {
            println!("# what converging it would send to the directory now");
            for block in plan {
                println!("{block}");
            }
        }
        Err(Outcome::Rejected(detail)) => {
            println!("# the directory would refuse it: {detail}");
            return Ok(ExitCode::from(1));
        }
        Err(Outcome::Unavailable(e)) => {
            println!("# the directory cannot be read now ({e}): the changes are not shown");
        }
        Err(Outcome::Applied) => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn show(cell: &Cell) -> String {
    match cell {
        Cell::Null => "NULL".into(),
        Cell::Integer(n) => n.to_string(),
        Cell::Text(t) => serde_json::to_string(t).unwrap_or_default(),
    }
}

fn stored_row(
    path: &Path,
    map: &ResourceMap,
    key: &str,
) -> anyhow::Result<Option<Vec<(String, Cell)>>> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("while opening {} read-only", path.display()))?;
    // Table and column names are plain identifiers (checked when the config loads).
    let sql = format!(
        "SELECT * FROM \"{}\" WHERE \"{}\" = ?1",
        map.table.name, map.table.key_column
    );
    let Ok(mut stmt) = conn.prepare(&sql) else {
        return Ok(None);
    };
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let row = stmt.query_row([key], |r| {
        let mut cells = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let cell = match r.get_ref(i)? {
                rusqlite::types::ValueRef::Integer(v) => Cell::Integer(v),
                rusqlite::types::ValueRef::Text(t) => {
                    Cell::Text(String::from_utf8_lossy(t).into_owned())
                }
                rusqlite::types::ValueRef::Null => Cell::Null,
                other => Cell::Text(format!("{other:?}")),
            };
            cells.push((n.clone(), cell));
        }
        Ok(cells)
    });
    match row {
        Ok(cells) => Ok(Some(cells)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `cfg` is the configuration as seen for the endpoint previewed (see
/// `Config::for_endpoint`).
pub fn preview(cfg: &config::Config, kind: ResourceKind, file: &Path) -> anyhow::Result<ExitCode> {
    let Some(target) = &cfg.target else {
        anyhow::bail!("the configuration has no 'target:' and 'mapping:'; nothing to preview");
    };
    let Some(map) = target.mapping.for_kind(kind) else {
        println!(
            "{}s are not mapped: nothing is written for them",
            kind.name()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("while reading {}", file.display()))?;
    let body: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let mut doc =
        normalize_resource(kind, &body).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if let Err(e) = validate(kind, &doc) {
        println!(
            "{}: the service would refuse this resource: {e}",
            file.display()
        );
        return Ok(ExitCode::from(1));
    }
    let key = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("(new id)")
        .to_string();
    doc.insert("id".into(), Value::String(key.clone()));
    println!(
        "{} {} → table {} (key {} = {key})",
        kind.name(),
        file.display(),
        map.table.name,
        map.table.key_column
    );
    if !map.in_scope(&doc) {
        println!("out of scope: not written (and removed from the target if it is there)");
        return Ok(ExitCode::SUCCESS);
    }
    let cells = match map.cells(&doc) {
        Ok(c) => c,
        Err(reason) => {
            println!("the target would reject it: {reason}");
            return Ok(ExitCode::from(1));
        }
    };
    if let config::TargetKind::Ldap(settings) = &target.kind {
        return preview_ldap(settings, &target.mapping, kind, &key, doc);
    }
    let stored = match target.sqlite_path() {
        Some(path) => stored_row(path, map, &key)?,
        None => None,
    };
    let width = cells.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, cell) in &cells {
        let spec = map.table.columns.iter().find(|c| &c.name == name);
        let note = match stored
            .as_ref()
            .and_then(|row| row.iter().find(|(n, _)| n == name))
        {
            None => "new".to_string(),
            Some((_, old)) if old == cell => "unchanged".into(),
            Some(_) if spec.is_some_and(|s| s.create_only) => "kept (create-only)".into(),
            Some(_) if spec.is_some_and(|s| s.keep_when_empty) && *cell == Cell::Null => {
                "kept (when_empty: keep)".into()
            }
            Some((_, old)) => format!("changes from {}", show(old)),
        };
        println!("  {name:<width$} = {:<40} {note}", show(cell));
    }
    if stored.is_none() {
        println!("(no stored row: it would be inserted)");
    }
    Ok(ExitCode::SUCCESS)
}
