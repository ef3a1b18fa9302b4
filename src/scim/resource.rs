//! Resource documents: turning client JSON into the canonical stored form, resolving
//! attribute paths against the schema, validation, and shaping responses
//! (`attributes`/`excludedAttributes`, `meta.location`, `$ref`s).
//!
//! The canonical form is a JSON object with schema-cased attribute names, no `null`s, no
//! empty arrays or objects, no read-only or write-only input, and booleans as booleans.
//! Values are otherwise kept exactly as the client sent them (no email or phone
//! normalisation, no derived `name.formatted`): Entra compares what it reads back.

use serde_json::{Map, Value};

use crate::scim::error::{ScimError, ScimResult};
use crate::scim::path::AttrPath;
use crate::scim::schema::{
    AttrDef, AttrType, COMMON_ATTRS, Extension, Mutability, ResourceKind, find_attr,
};

/// Where an attribute lives in the document: at the top level, or inside an extension
/// object keyed by its URN.
#[derive(Debug, Clone, Copy)]
pub enum Container {
    Core,
    Extension(&'static Extension),
}

/// A resolved top-level attribute.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub container: Container,
    pub def: &'static AttrDef,
}

impl Target {
    /// The object that holds this attribute, if present.
    pub fn holder<'a>(&self, doc: &'a Map<String, Value>) -> Option<&'a Map<String, Value>> {
        match self.container {
            Container::Core => Some(doc),
            Container::Extension(ext) => doc.get(ext.urn).and_then(Value::as_object),
        }
    }
    /// The object that holds this attribute, created when missing.
    pub fn holder_mut<'a>(&self, doc: &'a mut Map<String, Value>) -> &'a mut Map<String, Value> {
        match self.container {
            Container::Core => doc,
            Container::Extension(ext) => {
                let slot = doc
                    .entry(ext.urn.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                match slot {
                    Value::Object(m) => m,
                    _ => unreachable!("slot was just made an object"),
                }
            }
        }
    }
    pub fn get<'a>(&self, doc: &'a Map<String, Value>) -> Option<&'a Value> {
        self.holder(doc).and_then(|h| h.get(self.def.name))
    }
}

/// Drops an extension object that became empty, so documents stay canonical.
pub fn prune_extensions(kind: ResourceKind, doc: &mut Map<String, Value>) {
    for ext in kind.extensions() {
        if doc
            .get(ext.urn)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            doc.remove(ext.urn);
        }
    }
}

fn is_urn(s: &str) -> bool {
    s.len() > 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// Resolves the top-level attribute a path names. Unqualified names are looked up among
/// the common attributes, the core schema, then the extensions (clients often omit the
/// URN of enterprise attributes in filters).
pub fn resolve(kind: ResourceKind, path: &AttrPath) -> Option<Target> {
    match &path.urn {
        Some(urn) if urn.eq_ignore_ascii_case(kind.schema_urn()) => find_core(kind, &path.attr),
        Some(urn) => {
            let ext = kind.extension(urn)?;
            Some(Target {
                container: Container::Extension(ext),
                def: find_attr(ext.attrs, &path.attr)?,
            })
        }
        None => find_core(kind, &path.attr).or_else(|| {
            kind.extensions().iter().find_map(|ext| {
                Some(Target {
                    container: Container::Extension(ext),
                    def: find_attr(ext.attrs, &path.attr)?,
                })
            })
        }),
    }
}

fn find_core(kind: ResourceKind, name: &str) -> Option<Target> {
    let def = find_attr(COMMON_ATTRS, name).or_else(|| find_attr(kind.attrs(), name))?;
    Some(Target {
        container: Container::Core,
        def,
    })
}

/// Normalises a whole client-sent resource (POST/PUT body) into canonical form.
/// `id`, `meta`, `schemas` and read-only attributes are ignored; unknown attributes are
/// dropped; `null` means absent.
pub fn normalize_resource(kind: ResourceKind, input: &Value) -> ScimResult<Map<String, Value>> {
    let Value::Object(obj) = input else {
        return Err(ScimError::invalid_syntax(
            "the request body must be a JSON object",
        ));
    };
    let mut out = Map::new();
    for (key, value) in obj {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
        {
            continue;
        }
        if is_urn(key) {
            if let Some(ext) = kind.extension(key) {
                match value {
                    Value::Null => {}
                    Value::Object(ext_obj) => {
                        let normalized = normalize_attrs(ext.attrs, ext_obj, ext.urn)?;
                        if !normalized.is_empty() {
                            out.insert(ext.urn.to_string(), Value::Object(normalized));
                        }
                    }
                    _ => {
                        return Err(ScimError::invalid_value(format!(
                            "{key}: the extension must be a JSON object"
                        )));
                    }
                }
            }
            continue;
        }
        let Some(def) = find_attr(COMMON_ATTRS, key).or_else(|| find_attr(kind.attrs(), key))
        else {
            continue;
        };
        if let Some(v) = normalize_input(def, value, def.name)? {
            out.insert(def.name.to_string(), v);
        }
    }
    Ok(out)
}

fn normalize_attrs(
    defs: &'static [AttrDef],
    obj: &Map<String, Value>,
    at: &str,
) -> ScimResult<Map<String, Value>> {
    let mut out = Map::new();
    for (key, value) in obj {
        let Some(def) = find_attr(defs, key) else {
            continue;
        };
        if let Some(v) = normalize_input(def, value, &format!("{at}:{}", def.name))? {
            out.insert(def.name.to_string(), v);
        }
    }
    Ok(out)
}

/// Normalises a client-sent value for `def`, dropping it (`None`) when the client may not
/// write it (read-only, or write-only like `password`, which is never stored).
pub fn normalize_input(def: &AttrDef, value: &Value, at: &str) -> ScimResult<Option<Value>> {
    match def.mutability {
        Mutability::ReadOnly | Mutability::WriteOnly => Ok(None),
        Mutability::ReadWrite | Mutability::Immutable => normalize_value(def, value, at),
    }
}

/// Normalises a value for `def`: `None` means absent (`null`, `""` for a manager, an
/// empty array or object).
pub fn normalize_value(def: &AttrDef, value: &Value, at: &str) -> ScimResult<Option<Value>> {
    if value.is_null() {
        return Ok(None);
    }
    if def.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = normalize_single(def, item, at)? {
                out.push(v);
            }
        }
        if def.is_complex() {
            // The same rules as PATCH add: one element per type for contact attributes,
            // members as a set, `primary: true` at most once (the last one wins).
            let mut merged = Vec::with_capacity(out.len());
            merge_multi(def, &mut merged, out);
            out = merged;
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    normalize_single(def, value, at)
}

/// Normalises one value (one element of a multi-valued attribute).
pub fn normalize_single(def: &AttrDef, value: &Value, at: &str) -> ScimResult<Option<Value>> {
    if value.is_null() {
        return Ok(None);
    }
    match def.ty {
        AttrType::Complex => normalize_complex(def, value, at),
        AttrType::Boolean => match value {
            Value::Bool(b) => Ok(Some(Value::Bool(*b))),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
            other => Err(ScimError::invalid_value(format!(
                "{at}: {} is not a boolean (expected true or false)",
                short(other)
            ))),
        },
        AttrType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(value.clone())),
            other => Err(ScimError::invalid_value(format!(
                "{at}: {} is not an integer",
                short(other)
            ))),
        },
        AttrType::Decimal => match value {
            Value::Number(_) => Ok(Some(value.clone())),
            other => Err(ScimError::invalid_value(format!(
                "{at}: {} is not a number",
                short(other)
            ))),
        },
        AttrType::DateTime => match value {
            Value::String(s) if parse_datetime(s).is_some() => Ok(Some(value.clone())),
            other => Err(ScimError::invalid_value(format!(
                "{at}: {} is not an RFC 3339 date-time",
                short(other)
            ))),
        },
        AttrType::String | AttrType::Reference | AttrType::Binary => match value {
            // An empty string is how Entra's validators clear an attribute.
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(_) => Ok(Some(value.clone())),
            // Some clients send numeric identifiers (employeeNumber) as JSON numbers;
            // the schema says string, and the digits are what they mean.
            Value::Number(n) => Ok(Some(Value::String(n.to_string()))),
            other => Err(ScimError::invalid_value(format!(
                "{at}: {} is not a string",
                short(other)
            ))),
        },
    }
}

fn normalize_complex(def: &AttrDef, value: &Value, at: &str) -> ScimResult<Option<Value>> {
    if def.name == "manager" {
        return normalize_manager(def, value, at);
    }
    let obj = match value {
        Value::Object(obj) => obj.clone(),
        // A bare value where a complex one belongs means its `value` sub-attribute:
        // `"members": ["id"]`, `"emails": ["a@b.c"]`.
        Value::String(_) | Value::Number(_) | Value::Bool(_) if def.sub_attr("value").is_some() => {
            let mut m = Map::new();
            m.insert("value".into(), value.clone());
            m
        }
        other => {
            return Err(ScimError::invalid_value(format!(
                "{at}: {} is not a complex value (expected a JSON object)",
                short(other)
            )));
        }
    };
    let mut out = normalize_attrs(def.sub, &obj, at)?;
    if def.name == "roles" {
        expand_encoded_role(&mut out);
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// Entra's default job sends app-role assignments in PATCH as a JSON-encoded string inside
/// `value`: `{"value":"{\"id\":\"…\",\"value\":\"25\",\"displayName\":\"Role1234\"}"}`.
/// Unpack it into a role, so POST and PATCH shapes end up the same.
fn expand_encoded_role(role: &mut Map<String, Value>) {
    let Some(Value::String(text)) = role.get("value") else {
        return;
    };
    if !text.trim_start().starts_with('{') {
        return;
    }
    let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let Some(value) = inner.get("value").filter(|v| !v.is_null()) else {
        return;
    };
    let value = match value {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    };
    role.insert("value".into(), value);
    let display = inner
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("displayName") || k.eq_ignore_ascii_case("display"))
        .and_then(|(_, v)| v.as_str());
    if let Some(display) = display {
        role.insert("display".into(), Value::String(display.to_string()));
    }
}

/// The manager reference in every shape Entra and its validators send: a bare id string,
/// `{"value": id}`, `[{"$ref": …, "value": id}]`; `""`, `{"value": ""}` and `[]` mean none.
fn normalize_manager(def: &AttrDef, value: &Value, at: &str) -> ScimResult<Option<Value>> {
    match value {
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => {
            let mut m = Map::new();
            m.insert("value".into(), Value::String(s.clone()));
            Ok(Some(Value::Object(m)))
        }
        Value::Array(items) => match items.first() {
            None => Ok(None),
            Some(first) => normalize_manager(def, first, at),
        },
        Value::Object(obj) => {
            let mut out = normalize_attrs(def.sub, obj, at)?;
            // The server derives `$ref` from the id when it renders the manager.
            out.remove("$ref");
            match out.get("value") {
                None => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(_) => Ok(Some(Value::Object(out))),
            }
        }
        other => Err(ScimError::invalid_value(format!(
            "{at}: {} is not a manager reference (expected an id or {{\"value\": id}})",
            short(other)
        ))),
    }
}

/// Multi-valued attributes that keep at most one element per `type` (Entra addresses
/// `emails[type eq "work"]` as if it were a single slot).
pub(crate) const ONE_PER_TYPE: &[&str] = &["emails", "phoneNumbers", "addresses", "ims", "photos"];

pub(crate) fn is_primary(item: &Value) -> bool {
    item.get("primary") == Some(&Value::Bool(true))
}

pub(crate) fn push_with_primary(items: &mut Vec<Value>, item: Value) {
    items.push(item);
    let last = items.len() - 1;
    exclusive_primary(items, &[last]);
}

/// RFC 7643 §2.4: `primary: true` appears at most once; the newest one wins.
pub(crate) fn exclusive_primary(items: &mut [Value], changed: &[usize]) {
    let Some(&winner) = changed.iter().rev().find(|&&i| is_primary(&items[i])) else {
        return;
    };
    for (i, item) in items.iter_mut().enumerate() {
        if i != winner
            && is_primary(item)
            && let Some(obj) = item.as_object_mut()
        {
            obj.insert("primary".into(), Value::Bool(false));
        }
    }
}

/// Whether a listed element (from a `Remove` value, or an `Add`) denotes an existing one:
/// the same `value` when it has one, else the same content.
pub(crate) fn same_element(def: &AttrDef, existing: &Value, listed: &Value) -> bool {
    match (existing.get("value"), listed.get("value")) {
        (Some(a), Some(b)) => {
            a == b
                && (def.name == "members"
                    || listed.get("type").is_none()
                    || existing
                        .get("type")
                        .map(|t| t.as_str().map(str::to_lowercase))
                        == listed
                            .get("type")
                            .map(|t| t.as_str().map(str::to_lowercase)))
        }
        _ => existing == listed,
    }
}

/// Adds elements to a multi-valued attribute: members are a set (by id); typed contact
/// attributes keep one element per type; an element that denotes an existing one is
/// merged into it (its other sub-attributes stay); anything else is appended.
pub(crate) fn merge_multi(def: &AttrDef, existing: &mut Vec<Value>, new: Vec<Value>) {
    if def.name == "members" {
        // Groups can be large: index the ids so adding k members costs O(k).
        let mut index: std::collections::HashMap<String, usize> = existing
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((m.get("value")?.as_str()?.to_string(), i)))
            .collect();
        for item in new {
            let Some(id) = item
                .get("value")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            match index.get(&id) {
                // Idempotent: an id already present stays; a newer `display` is kept.
                Some(&i) => {
                    if let (Some(e), Some(d)) = (existing[i].as_object_mut(), item.get("display")) {
                        e.insert("display".into(), d.clone());
                    }
                }
                None => {
                    index.insert(id, existing.len());
                    existing.push(item);
                }
            }
        }
        return;
    }
    let typed = ONE_PER_TYPE.contains(&def.name);
    for item in new {
        let slot = existing.iter().position(|e| {
            if typed && let (Some(a), Some(b)) = (type_of(e), type_of(&item)) {
                return a.eq_ignore_ascii_case(b);
            }
            same_element(def, e, &item)
        });
        match slot {
            Some(i) => {
                match (existing[i].as_object_mut(), item) {
                    (Some(e), Value::Object(n)) => e.extend(n),
                    (_, item) => existing[i] = item,
                }
                exclusive_primary(existing, &[i]);
            }
            None => push_with_primary(existing, item),
        }
    }
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

/// Checks the invariants of a complete resource: required attributes present and non-empty.
pub fn validate(kind: ResourceKind, doc: &Map<String, Value>) -> ScimResult<()> {
    for def in kind.attrs().iter().filter(|d| d.required) {
        match doc.get(def.name) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(Value::String(_)) | None => {
                return Err(ScimError::invalid_value(format!(
                    "{}: a {} must have a non-empty {}",
                    def.name,
                    kind.name(),
                    def.name
                )));
            }
            Some(other) => {
                return Err(ScimError::invalid_value(format!(
                    "{}: {} is not a string",
                    def.name,
                    short(other)
                )));
            }
        }
    }
    Ok(())
}

/// A short, safe rendering of a client value for error details.
pub fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// Parses an RFC 3339 date-time (any number of fraction digits, any offset).
pub fn parse_datetime(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Case-insensitive string comparison key for attributes with `caseExact: false`.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// Which attributes a response carries (RFC 7644 §3.4.2.5).
#[derive(Debug, Clone, Default)]
pub struct Projection {
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
}

impl Projection {
    /// Parses the comma-separated `attributes` / `excludedAttributes` parameters.
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> ScimResult<Projection> {
        Ok(Projection {
            attributes: parse_attr_list(attributes)?,
            excluded: parse_attr_list(excluded)?,
        })
    }

    /// Whether the rendered resource keeps any of the core attribute `name` (so a reader
    /// can skip loading what nobody will see: a large group's `members` under Entra's
    /// `excludedAttributes=members`).
    pub fn keeps(&self, kind: ResourceKind, name: &str) -> bool {
        let names = |path: &AttrPath| resolve(kind, path).is_some_and(|t| t.def.name == name);
        if self
            .excluded
            .iter()
            .any(|p| p.sub_attr.is_none() && names(p))
        {
            return false;
        }
        self.attributes.is_empty()
            || self
                .attributes
                .iter()
                .any(|p| names(p) || matches!(bare_schema(kind, p), Some(Container::Core)))
    }

    /// Applies the projection to a rendered resource.
    pub fn apply(&self, kind: ResourceKind, doc: &mut Map<String, Value>) {
        if !self.attributes.is_empty() {
            let mut kept = Map::new();
            for key in ["schemas", "id"] {
                if let Some(v) = doc.remove(key) {
                    kept.insert(key.into(), v);
                }
            }
            for path in &self.attributes {
                // A bare schema URN names the whole schema (RFC 7644 §3.10).
                if let Some(container) = bare_schema(kind, path) {
                    match container {
                        Container::Extension(ext) => {
                            if let Some(v) = doc.get(ext.urn) {
                                kept.insert(ext.urn.into(), v.clone());
                            }
                        }
                        Container::Core => {
                            for (k, v) in doc.iter() {
                                if !is_urn(k) {
                                    kept.insert(k.clone(), v.clone());
                                }
                            }
                        }
                    }
                    continue;
                }
                let Some(target) = resolve(kind, path) else {
                    continue;
                };
                let Some(value) = target.get(doc) else {
                    continue;
                };
                let value = match (&path.sub_attr, value) {
                    (None, v) => v.clone(),
                    (Some(sub), Value::Object(m)) => match pick_sub(target.def, m, sub) {
                        Some(v) => v,
                        None => continue,
                    },
                    (Some(sub), Value::Array(items)) => Value::Array(
                        items
                            .iter()
                            .filter_map(|item| item.as_object())
                            .filter_map(|m| pick_sub(target.def, m, sub))
                            .collect(),
                    ),
                    (Some(_), _) => continue,
                };
                merge_into(target, &mut kept, value);
            }
            *doc = kept;
        }
        for path in &self.excluded {
            if let Some(Container::Extension(ext)) = bare_schema(kind, path) {
                doc.remove(ext.urn);
                continue;
            }
            let Some(target) = resolve(kind, path) else {
                continue;
            };
            if target.def.returned == crate::scim::schema::Returned::Always {
                continue;
            }
            let holder = match target.container {
                Container::Core => Some(&mut *doc),
                Container::Extension(ext) => doc.get_mut(ext.urn).and_then(Value::as_object_mut),
            };
            let Some(holder) = holder else { continue };
            match &path.sub_attr {
                None => {
                    holder.remove(target.def.name);
                }
                Some(sub) => {
                    let Some(sub_def) = target.def.sub_attr(sub) else {
                        continue;
                    };
                    let now_empty = match holder.get_mut(target.def.name) {
                        Some(Value::Object(m)) => {
                            m.remove(sub_def.name);
                            m.is_empty()
                        }
                        Some(Value::Array(items)) => {
                            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                                item.remove(sub_def.name);
                            }
                            items.retain(|i| i.as_object().is_none_or(|m| !m.is_empty()));
                            items.is_empty()
                        }
                        _ => false,
                    };
                    // No `"name": {}` left behind.
                    if now_empty {
                        holder.remove(target.def.name);
                    }
                }
            }
        }
        prune_extensions(kind, doc);
    }
}

/// The schema a bare URN path names, if it is one of the resource's schemas.
fn bare_schema(kind: ResourceKind, path: &AttrPath) -> Option<Container> {
    if path.urn.is_some() || path.sub_attr.is_some() || !is_urn(&path.attr) {
        return None;
    }
    if path.attr.eq_ignore_ascii_case(kind.schema_urn()) {
        return Some(Container::Core);
    }
    kind.extension(&path.attr).map(Container::Extension)
}

fn pick_sub(def: &AttrDef, obj: &Map<String, Value>, sub: &str) -> Option<Value> {
    let sub_def = def.sub_attr(sub)?;
    let v = obj.get(sub_def.name)?;
    let mut m = Map::new();
    m.insert(sub_def.name.into(), v.clone());
    Some(Value::Object(m))
}

fn merge_into(target: Target, doc: &mut Map<String, Value>, value: Value) {
    let holder = target.holder_mut(doc);
    match (holder.get_mut(target.def.name), value) {
        (Some(Value::Object(existing)), Value::Object(new)) => existing.extend(new),
        (Some(Value::Array(existing)), Value::Array(new)) if existing.len() == new.len() => {
            for (e, n) in existing.iter_mut().zip(new) {
                if let (Value::Object(e), Value::Object(n)) = (e, n) {
                    e.extend(n);
                }
            }
        }
        (_, value) => {
            holder.insert(target.def.name.into(), value);
        }
    }
}

fn parse_attr_list(list: Option<&str>) -> ScimResult<Vec<AttrPath>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            // `emails[type eq "work"]` selects the attribute; the filter narrows nothing
            // in a projection, so only the attribute part matters.
            let plain = match item.find('[') {
                Some(open) => {
                    let close = item.rfind(']').unwrap_or(item.len());
                    format!("{}{}", &item[..open], item.get(close + 1..).unwrap_or(""))
                }
                None => item.to_string(),
            };
            crate::scim::path::parse_attr_path(&plain).map_err(|e| {
                ScimError::invalid_value(format!(
                    "attributes: '{item}' is not an attribute path: {e}"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::ENTERPRISE_URN;
    use serde_json::json;

    fn user(v: Value) -> Map<String, Value> {
        normalize_resource(ResourceKind::User, &v).expect("normalizes")
    }

    #[test]
    fn attribute_names_are_canonicalised_and_unknown_ones_dropped() {
        let doc = user(json!({"USERNAME": "a", "Name": {"GivenName": "A"}, "adreses": [1]}));
        assert_eq!(
            Value::Object(doc),
            json!({"userName": "a", "name": {"givenName": "A"}})
        );
    }

    #[test]
    fn string_booleans_become_booleans() {
        for (input, expected) in [
            ("True", true),
            ("False", false),
            ("true", true),
            ("false", false),
        ] {
            let doc = user(json!({"userName": "a", "active": input}));
            assert_eq!(doc["active"], json!(expected));
        }
        let err = normalize_resource(
            ResourceKind::User,
            &json!({"userName": "a", "active": "yes"}),
        )
        .expect_err("not a boolean");
        assert_eq!(err.status, 400);
    }

    #[test]
    fn nulls_read_only_input_and_password_are_not_stored() {
        let doc = user(json!({
            "userName": "a", "addresses": null, "title": null, "id": "x", "meta": {"resourceType": "User"},
            "groups": [{"value": "g"}], "password": "secret", "roles": []
        }));
        assert_eq!(Value::Object(doc), json!({"userName": "a"}));
    }

    #[test]
    fn manager_accepts_every_shape_entra_sends() {
        let shapes = [
            json!("m1"),
            json!({"value": "m1"}),
            json!([{"$ref": "http://x/Users/m1", "value": "m1"}]),
        ];
        for shape in shapes {
            let doc = user(json!({"userName": "a", ENTERPRISE_URN: {"manager": shape}}));
            assert_eq!(doc[ENTERPRISE_URN]["manager"]["value"], "m1");
        }
        for empty in [json!(""), json!({"value": ""}), json!([]), Value::Null] {
            let doc = user(json!({"userName": "a", ENTERPRISE_URN: {"manager": empty}}));
            assert!(doc.get(ENTERPRISE_URN).is_none());
        }
    }

    #[test]
    fn json_encoded_role_values_are_unpacked() {
        let doc = user(
            json!({"userName": "a", "roles": [{"value": "{\"id\":\"06b0\",\"value\":\"25\",\"displayName\":\"Role1234\"}"}]}),
        );
        assert_eq!(
            doc["roles"],
            json!([{"value": "25", "display": "Role1234"}])
        );
    }

    #[test]
    fn required_attribute_missing_is_invalid_value() {
        let err =
            validate(ResourceKind::User, &user(json!({"displayName": "x"}))).expect_err("required");
        assert_eq!(
            err.scim_type,
            Some(crate::scim::error::ScimType::InvalidValue)
        );
        let err =
            validate(ResourceKind::User, &user(json!({"userName": "  "}))).expect_err("empty");
        assert_eq!(err.status, 400);
    }

    #[test]
    fn a_projection_says_whether_members_will_be_shown() {
        let keeps = |attributes: Option<&str>, excluded: Option<&str>| {
            Projection::parse(attributes, excluded)
                .expect("parses")
                .keeps(ResourceKind::Group, "members")
        };
        assert!(keeps(None, None));
        assert!(!keeps(None, Some("members")));
        assert!(!keeps(None, Some("displayName,Members")));
        assert!(
            keeps(None, Some("members.display")),
            "only a sub-attribute goes"
        );
        assert!(!keeps(Some("displayName"), None));
        assert!(keeps(Some("members.value"), None));
        assert!(keeps(
            Some("urn:ietf:params:scim:schemas:core:2.0:Group"),
            None
        ));
    }

    #[test]
    fn projection_keeps_id_and_schemas_and_excludes_members() {
        let mut doc =
            json!({"schemas": ["s"], "id": "1", "displayName": "g", "members": [{"value": "u"}]})
                .as_object()
                .cloned()
                .expect("object");
        Projection::parse(None, Some("members"))
            .expect("parses")
            .apply(ResourceKind::Group, &mut doc);
        assert!(doc.get("members").is_none());
        let mut user_doc = json!({"schemas": ["s"], "id": "1", "userName": "u", "name": {"givenName": "g", "familyName": "f"}, "emails": [{"type": "work", "value": "e"}]})
            .as_object()
            .cloned()
            .expect("object");
        Projection::parse(Some("name.givenName,emails[type eq \"work\"]"), None)
            .expect("parses")
            .apply(ResourceKind::User, &mut user_doc);
        assert_eq!(
            Value::Object(user_doc),
            json!({"schemas": ["s"], "id": "1", "name": {"givenName": "g"}, "emails": [{"type": "work", "value": "e"}]})
        );
    }
}
