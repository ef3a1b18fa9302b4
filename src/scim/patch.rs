//! The PATCH engine (RFC 7644 §3.5.2) with Entra's dialect.
//!
//! `parse_request` turns a PatchOp body into operations; `apply` runs them in order on a
//! copy of the canonical document and returns the result, so a failing operation leaves
//! the stored resource untouched (the whole request is atomic). Entra's quirks are
//! handled here and nowhere else: op names in any case, path-less values with dotted and
//! URN-prefixed keys, `"True"`/`"False"` booleans, manager in every shape, member `Remove`
//! with a value array selecting only those members, and `Replace` on
//! `emails[type eq "work"].value` creating the work email when it is missing.

use serde_json::{Map, Value};

use crate::scim::error::{ScimError, ScimResult};
use crate::scim::eval::matches_element;
use crate::scim::filter::{CompValue, CompareOp, Filter, Test};
use crate::scim::path::{AttrPath, PatchPath, parse_attr_path, parse_patch_path};
use crate::scim::resource::{
    exclusive_primary, merge_multi, normalize_input, normalize_single, normalize_value,
    prune_extensions, push_with_primary, resolve, same_element, short,
};
use crate::scim::schema::{AttrDef, Mutability, PATCH_URN, ResourceKind};

/// At most this many operations in one request; Entra sends a handful.
pub const MAX_OPERATIONS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Parses a PatchOp request body.
pub fn parse_request(body: &Value) -> ScimResult<Vec<Operation>> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax(
            "a PATCH body must be a JSON object",
        ));
    };
    if let Some(schemas) = get_ci(obj, "schemas") {
        let ok = schemas.as_array().is_some_and(|s| {
            s.iter().any(|u| {
                u.as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_URN))
            })
        });
        if !ok {
            return Err(ScimError::invalid_syntax(format!(
                "schemas: a PATCH body must list {PATCH_URN}"
            )));
        }
    }
    let Some(Value::Array(ops)) = get_ci(obj, "Operations") else {
        return Err(ScimError::invalid_syntax(
            "Operations: a PATCH body needs an 'Operations' array",
        ));
    };
    if ops.is_empty() {
        return Err(ScimError::invalid_syntax("Operations: the array is empty"));
    }
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::too_many(format!(
            "Operations: {} operations, at most {MAX_OPERATIONS} are accepted",
            ops.len()
        )));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| parse_operation(i, op))
        .collect()
}

fn parse_operation(i: usize, op: &Value) -> ScimResult<Operation> {
    let Value::Object(obj) = op else {
        return Err(ScimError::invalid_syntax(format!(
            "Operations[{i}]: an operation must be a JSON object"
        )));
    };
    let kind = match get_ci(obj, "op").and_then(Value::as_str) {
        Some(s) if s.eq_ignore_ascii_case("add") => OpKind::Add,
        Some(s) if s.eq_ignore_ascii_case("replace") => OpKind::Replace,
        Some(s) if s.eq_ignore_ascii_case("remove") => OpKind::Remove,
        Some(s) => {
            return Err(ScimError::invalid_syntax(format!(
                "Operations[{i}].op: '{s}' is not add, replace or remove"
            )));
        }
        None => {
            return Err(ScimError::invalid_syntax(format!(
                "Operations[{i}].op: missing (expected add, replace or remove)"
            )));
        }
    };
    let path = match get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(parse_patch_path(p).map_err(|e| {
            ScimError::invalid_path(format!(
                "Operations[{i}].path: '{p}' is not a valid path: {e}"
            ))
        })?),
        Some(other) => {
            return Err(ScimError::invalid_path(format!(
                "Operations[{i}].path: {} is not a string",
                short(other)
            )));
        }
    };
    Ok(Operation {
        op: kind,
        path,
        value: get_ci(obj, "value").cloned(),
    })
}

/// An incremental change of a group's members, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    /// Member objects to add (normalized; each has a string `value`).
    Add(Vec<Value>),
    /// Member ids to remove.
    Remove(Vec<String>),
}

/// Splits a group PATCH into its member operations and the other operations, when every
/// operation on `members` adds members (`add members`, a path-less `add` with a `members`
/// key) or removes listed ones (`remove members` with a value array, `remove
/// members[value eq "id"]`, `or`-ed value tests). Such a request can be applied to a large
/// group in time proportional to the members it names. `Ok(None)`: some operation needs
/// the whole member list (`replace members`, `remove members` without a value, another
/// filter or a sub-attribute path); apply the request to the whole document instead.
pub fn split_member_ops(ops: &[Operation]) -> ScimResult<Option<(Vec<Operation>, Vec<MemberOp>)>> {
    let Some(def) = group_members_def() else {
        return Ok(None);
    };
    let mut rest = Vec::with_capacity(ops.len());
    let mut members = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let at = |e: ScimError| {
            let mut e = e;
            e.detail = format!("Operations[{i}]: {}", e.detail);
            e
        };
        match &op.path {
            Some(path) if names_members(&path.attr) => {
                if path.attr.sub_attr.is_some() || path.sub_attr.is_some() {
                    return Ok(None);
                }
                let value = op.value.as_ref().unwrap_or(&Value::Null);
                match (op.op, &path.filter) {
                    (OpKind::Add, None) => {
                        let items = normalize_value(def, value, "members").map_err(at)?;
                        members.push(MemberOp::Add(member_items(items).map_err(at)?));
                    }
                    (OpKind::Remove, None) if !value.is_null() => {
                        let items = normalize_value(def, value, "members").map_err(at)?;
                        let mut ids = Vec::new();
                        for item in member_items(items).map_err(at)? {
                            if let Some(id) = item.get("value").and_then(Value::as_str) {
                                ids.push(id.to_string());
                            }
                        }
                        members.push(MemberOp::Remove(ids));
                    }
                    (OpKind::Remove, Some(filter)) => {
                        let mut ids = Vec::new();
                        if !value_tests(filter, &mut ids) {
                            return Ok(None);
                        }
                        members.push(MemberOp::Remove(ids));
                    }
                    _ => return Ok(None),
                }
            }
            Some(_) => rest.push(op.clone()),
            None => {
                let Some(Value::Object(obj)) = &op.value else {
                    rest.push(op.clone());
                    continue;
                };
                let mut others = Map::new();
                for (key, v) in obj {
                    match parse_patch_path(key) {
                        Ok(path) if names_members(&path.attr) => {
                            if op.op != OpKind::Add
                                || path.filter.is_some()
                                || path.attr.sub_attr.is_some()
                            {
                                return Ok(None);
                            }
                            let items = normalize_value(def, v, "members").map_err(at)?;
                            members.push(MemberOp::Add(member_items(items).map_err(at)?));
                        }
                        _ => {
                            others.insert(key.clone(), v.clone());
                        }
                    }
                }
                if !others.is_empty() {
                    rest.push(Operation {
                        op: op.op,
                        path: None,
                        value: Some(Value::Object(others)),
                    });
                }
            }
        }
    }
    Ok(Some((rest, members)))
}

/// The `members` attribute of groups.
fn group_members_def() -> Option<&'static AttrDef> {
    crate::scim::schema::GROUP_ATTRS
        .iter()
        .find(|a| a.name == "members")
}

/// Whether a path's attribute is the groups' `members`.
fn names_members(attr: &AttrPath) -> bool {
    resolve(ResourceKind::Group, attr).is_some_and(|t| t.def.name == "members")
}

/// The member objects of a normalized `members` value; each needs a string `value`.
fn member_items(items: Option<Value>) -> ScimResult<Vec<Value>> {
    let items = match items {
        Some(Value::Array(items)) => items,
        Some(single) => vec![single],
        None => Vec::new(),
    };
    for item in &items {
        if item.get("value").and_then(Value::as_str).is_none() {
            return Err(ScimError::invalid_value(
                "members: every member needs a 'value' (the member's id)",
            ));
        }
    }
    Ok(items)
}

/// Collects the ids of a member filter made only of `value eq "id"` tests joined by
/// `or`; false when it is anything else.
fn value_tests(filter: &Filter, ids: &mut Vec<String>) -> bool {
    match filter {
        Filter::Or(a, b) => value_tests(a, ids) && value_tests(b, ids),
        Filter::Attr {
            path,
            test: Test::Compare(CompareOp::Eq, CompValue::Str(id)),
        } if path.urn.is_none()
            && path.sub_attr.is_none()
            && path.attr.eq_ignore_ascii_case("value") =>
        {
            ids.push(id.clone());
            true
        }
        _ => false,
    }
}

/// Applies the operations in order to a copy of `doc` and returns the new document.
pub fn apply(
    kind: ResourceKind,
    doc: &Map<String, Value>,
    ops: &[Operation],
) -> ScimResult<Map<String, Value>> {
    let mut out = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_one(kind, &mut out, op).map_err(|mut e| {
            e.detail = format!("Operations[{i}]: {}", e.detail);
            e
        })?;
    }
    prune_extensions(kind, &mut out);
    Ok(out)
}

fn apply_one(kind: ResourceKind, doc: &mut Map<String, Value>, op: &Operation) -> ScimResult<()> {
    let null = Value::Null;
    let value = op.value.as_ref().unwrap_or(&null);
    match (&op.path, op.op) {
        (None, OpKind::Remove) => Err(ScimError::no_target("remove needs a path")),
        (None, _) => {
            let Value::Object(obj) = value else {
                return Err(ScimError::invalid_value(format!(
                    "an operation without a path needs a JSON object value, not {}",
                    short(value)
                )));
            };
            for (key, v) in obj {
                // Keys are attribute paths of their own: `name.givenName`, or
                // `urn:…:enterprise:2.0:User:employeeNumber`. Keys that are no path
                // at all are unknown attributes, ignored like unknown body attributes.
                let Ok(path) = parse_patch_path(key) else {
                    continue;
                };
                apply_path(kind, doc, op.op, &path, v, false)?;
            }
            Ok(())
        }
        (Some(path), _) => apply_path(kind, doc, op.op, path, value, true),
    }
}

fn apply_path(
    kind: ResourceKind,
    doc: &mut Map<String, Value>,
    op: OpKind,
    path: &PatchPath,
    value: &Value,
    explicit: bool,
) -> ScimResult<()> {
    if path.filter.is_none()
        && path.attr.urn.is_none()
        && path.attr.sub_attr.is_none()
        && let Some(ext) = kind.extension(&path.attr.attr)
    {
        return match op {
            OpKind::Remove => {
                doc.remove(ext.urn);
                Ok(())
            }
            OpKind::Add | OpKind::Replace => match value {
                Value::Object(obj) => {
                    for (key, v) in obj {
                        let Ok(mut attr) = parse_attr_path(key) else {
                            continue;
                        };
                        attr.urn = Some(ext.urn.to_string());
                        let inner = PatchPath {
                            attr,
                            filter: None,
                            sub_attr: None,
                        };
                        apply_path(kind, doc, op, &inner, v, false)?;
                    }
                    Ok(())
                }
                Value::Null => {
                    doc.remove(ext.urn);
                    Ok(())
                }
                other => Err(ScimError::invalid_value(format!(
                    "{}: {} is not a JSON object",
                    ext.urn,
                    short(other)
                ))),
            },
        };
    }
    let Some(target) = resolve(kind, &path.attr) else {
        // Unknown attributes are ignored, in PATCH as in POST/PUT bodies.
        return Ok(());
    };
    let def = target.def;
    if matches!(def.mutability, Mutability::ReadOnly) {
        return if explicit {
            Err(ScimError::mutability(format!(
                "{}: the attribute is read-only",
                path_text(path)
            )))
        } else {
            Ok(())
        };
    }
    if def.mutability == Mutability::WriteOnly && op != OpKind::Remove {
        // `password` is accepted and never stored.
        return Ok(());
    }
    let holder = target.holder_mut(doc);
    match &path.filter {
        None => match &path.attr.sub_attr {
            None => apply_attr(def, holder, op, value, path),
            Some(sub) => apply_sub(def, holder, op, sub, value, path, explicit),
        },
        Some(filter) => apply_filtered(
            def,
            holder,
            op,
            filter,
            path.sub_attr.as_deref(),
            value,
            path,
        ),
    }
}

fn path_text(path: &PatchPath) -> String {
    path.to_string()
}

/// `op` on a whole attribute: `displayName`, `emails`, `members`, `name`, `manager`.
fn apply_attr(
    def: &'static AttrDef,
    holder: &mut Map<String, Value>,
    op: OpKind,
    value: &Value,
    path: &PatchPath,
) -> ScimResult<()> {
    let at = path_text(path);
    match op {
        OpKind::Remove => {
            let selection = if def.multi && !value.is_null() {
                normalize_value(def, value, &at)?
            } else {
                None
            };
            match selection {
                // Entra's default job: `Remove members` with a value array removes only
                // the listed members, never the whole attribute.
                Some(Value::Array(listed)) => {
                    if let Some(Value::Array(items)) = holder.get_mut(def.name) {
                        items.retain(|item| !listed.iter().any(|l| same_element(def, item, l)));
                        if items.is_empty() {
                            holder.remove(def.name);
                        }
                    }
                }
                _ if def.multi && !value.is_null() => {}
                _ => {
                    holder.remove(def.name);
                }
            }
            Ok(())
        }
        OpKind::Add | OpKind::Replace => {
            let new = normalize_value(def, value, &at)?;
            if def.multi {
                match (op, new) {
                    (OpKind::Replace, None) => {
                        holder.remove(def.name);
                    }
                    (_, None) => {}
                    (OpKind::Replace, Some(v)) => {
                        let Value::Array(items) = v else {
                            unreachable!("multi-valued normalizes to an array")
                        };
                        let mut merged = Vec::new();
                        merge_multi(def, &mut merged, items);
                        holder.insert(def.name.into(), Value::Array(merged));
                    }
                    (_, Some(v)) => {
                        let Value::Array(items) = v else {
                            unreachable!("multi-valued normalizes to an array")
                        };
                        let mut existing = match holder.remove(def.name) {
                            Some(Value::Array(e)) => e,
                            _ => Vec::new(),
                        };
                        merge_multi(def, &mut existing, items);
                        holder.insert(def.name.into(), Value::Array(existing));
                    }
                }
                return Ok(());
            }
            match new {
                None => {
                    holder.remove(def.name);
                }
                Some(Value::Object(new_obj)) if def.is_complex() && def.name != "manager" => {
                    // RFC 7644 §3.5.2.1/3: sub-attributes not named are left unchanged.
                    match holder.get_mut(def.name) {
                        Some(Value::Object(existing)) => existing.extend(new_obj),
                        _ => {
                            holder.insert(def.name.into(), Value::Object(new_obj));
                        }
                    }
                }
                Some(v) => {
                    holder.insert(def.name.into(), v);
                }
            }
            Ok(())
        }
    }
}

/// `op` on `attr.sub` without a filter: `name.givenName`, `manager.value`, `emails.value`.
fn apply_sub(
    def: &'static AttrDef,
    holder: &mut Map<String, Value>,
    op: OpKind,
    sub: &str,
    value: &Value,
    path: &PatchPath,
    explicit: bool,
) -> ScimResult<()> {
    let at = path_text(path);
    if !def.is_complex() {
        return Err(ScimError::invalid_path(format!(
            "{at}: {} has no sub-attributes",
            def.name
        )));
    }
    let Some(sub_def) = def.sub_attr(sub) else {
        return Ok(());
    };
    if sub_def.mutability == Mutability::ReadOnly {
        return if explicit {
            Err(ScimError::mutability(format!(
                "{at}: the attribute is read-only"
            )))
        } else {
            Ok(())
        };
    }
    let new = match op {
        OpKind::Remove => None,
        OpKind::Add | OpKind::Replace => normalize_input(sub_def, value, &at)?,
    };
    if def.multi {
        let mut items = match holder.remove(def.name) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        if items.is_empty()
            && let Some(v) = &new
        {
            let mut element = Map::new();
            element.insert(sub_def.name.into(), v.clone());
            items.push(Value::Object(element));
        } else {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                set_or_remove(item, sub_def.name, new.clone());
            }
        }
        items.retain(|item| !is_hollow(def, item));
        if !items.is_empty() {
            holder.insert(def.name.into(), Value::Array(items));
        }
        return Ok(());
    }
    let mut obj = match holder.remove(def.name) {
        Some(Value::Object(obj)) => obj,
        _ => Map::new(),
    };
    set_or_remove(&mut obj, sub_def.name, new);
    if !is_hollow(def, &Value::Object(obj.clone())) {
        holder.insert(def.name.into(), Value::Object(obj));
    }
    Ok(())
}

/// `op` on `attr[filter]` or `attr[filter].sub`.
fn apply_filtered(
    def: &'static AttrDef,
    holder: &mut Map<String, Value>,
    op: OpKind,
    filter: &Filter,
    sub: Option<&str>,
    value: &Value,
    path: &PatchPath,
) -> ScimResult<()> {
    let at = path_text(path);
    if !def.is_complex() || !def.multi {
        return Err(ScimError::invalid_path(format!(
            "{at}: a value filter [...] needs a multi-valued complex attribute"
        )));
    }
    let sub_def = match sub {
        None => None,
        Some(name) => match def.sub_attr(name) {
            Some(d) => Some(d),
            None => return Ok(()),
        },
    };
    let mut items = match holder.remove(def.name) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| {
            item.as_object()
                .is_some_and(|m| matches_element(def, filter, m))
        })
        .map(|(i, _)| i)
        .collect();
    let result = (|| -> ScimResult<()> {
        match (op, sub_def) {
            (OpKind::Remove, None) => {
                retain_unmatched(&mut items, &matched);
            }
            (OpKind::Remove, Some(sd)) => {
                for &i in &matched {
                    if let Some(item) = items[i].as_object_mut() {
                        item.remove(sd.name);
                    }
                }
            }
            (_, Some(sd)) => {
                let new = normalize_input(sd, value, &at)?;
                if matched.is_empty() {
                    if let Some(v) = new {
                        let mut element = element_from_filter(def, filter, &at)?;
                        element.insert(sd.name.into(), v);
                        push_with_primary(&mut items, Value::Object(element));
                    }
                } else {
                    for &i in &matched {
                        if let Some(item) = items[i].as_object_mut() {
                            set_or_remove(item, sd.name, new.clone());
                        }
                    }
                    exclusive_primary(&mut items, &matched);
                }
            }
            (_, None) => {
                let new = normalize_single(def, value, &at)?;
                let Some(Value::Object(new)) = new else {
                    // `Replace emails[type eq "work"]` with null: the element goes.
                    retain_unmatched(&mut items, &matched);
                    return Ok(());
                };
                if matched.is_empty() {
                    let mut element = element_from_filter(def, filter, &at)?;
                    element.extend(new);
                    push_with_primary(&mut items, Value::Object(element));
                } else {
                    for &i in &matched {
                        if let Some(item) = items[i].as_object_mut() {
                            item.extend(new.clone());
                        }
                    }
                    exclusive_primary(&mut items, &matched);
                }
            }
        }
        Ok(())
    })();
    items.retain(|item| !is_hollow(def, item));
    if !items.is_empty() {
        holder.insert(def.name.into(), Value::Array(items));
    }
    result
}

/// Builds the element a value filter describes (`type eq "work"` → `{"type":"work"}`), so
/// `Replace emails[type eq "work"].value` can create the work email (Entra expects it).
fn element_from_filter(
    def: &'static AttrDef,
    filter: &Filter,
    at: &str,
) -> ScimResult<Map<String, Value>> {
    let mut element = Map::new();
    collect_equalities(def, filter, &mut element).ok_or_else(|| {
        ScimError::no_target(format!(
            "{at}: no value matches the filter, and it is not a conjunction of 'eq' tests that could describe a new one"
        ))
    })?;
    Ok(element)
}

fn collect_equalities(
    def: &'static AttrDef,
    filter: &Filter,
    out: &mut Map<String, Value>,
) -> Option<()> {
    match filter {
        Filter::And(a, b) => {
            collect_equalities(def, a, out)?;
            collect_equalities(def, b, out)
        }
        Filter::Attr {
            path:
                AttrPath {
                    attr,
                    sub_attr: None,
                    ..
                },
            test: Test::Compare(CompareOp::Eq, comp),
        } => {
            let sub = def.sub_attr(attr)?;
            let raw = match comp {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Num(n) => Value::Number(n.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Null => return None,
            };
            let v = normalize_single(sub, &raw, attr).ok()??;
            out.insert(sub.name.into(), v);
            Some(())
        }
        _ => None,
    }
}

/// Drops the elements at the (ascending) indexes in `matched`, in one pass.
fn retain_unmatched(items: &mut Vec<Value>, matched: &[usize]) {
    let mut drop = vec![false; items.len()];
    for &i in matched {
        drop[i] = true;
    }
    let mut i = 0;
    items.retain(|_| {
        let keep = !drop[i];
        i += 1;
        keep
    });
}

fn set_or_remove(obj: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            obj.insert(key.into(), v);
        }
        None => {
            obj.remove(key);
        }
    }
}

/// An element that carries nothing but labels (`type`, `primary`, `display`), or a
/// manager without its id, means nothing and is dropped.
fn is_hollow(def: &AttrDef, item: &Value) -> bool {
    let Some(obj) = item.as_object() else {
        return false;
    };
    if def.name == "manager" {
        return obj
            .get("value")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
    }
    obj.keys()
        .all(|k| matches!(k.as_str(), "type" | "primary" | "display"))
}

#[cfg(test)]
mod tests;
