//! Reading SCIM values for the mapping: attribute paths (with value filters and
//! sub-attributes, extension URNs, `manager.value`, `id`, `externalId`) resolved against a
//! canonical resource document, and their static types for the expression checker.
//!
//! A single-valued target takes, from a multi-valued source, the element marked
//! `primary`, else the only element; with several elements and none primary it takes
//! none (the mapping cannot guess which phone is "the" phone).

use serde_json::{Map, Value as Json};

use crate::mapping::expr::{Type, Value};
use crate::scim::eval::matches_element;
use crate::scim::path::{PatchPath, parse_patch_path};
use crate::scim::resource::{resolve, short};
use crate::scim::schema::{AttrDef, AttrType, COMMON_ATTRS, ResourceKind};

/// A compiled source path.
#[derive(Debug, Clone)]
pub struct SourcePath {
    text: String,
    path: PatchPath,
    leaf: &'static AttrDef,
    /// The path can denote several values (a multi-valued attribute).
    multi: bool,
}

/// Every attribute path a mapping may name for a kind, for did-you-mean suggestions.
pub fn known_paths(kind: ResourceKind) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |prefix: &str, defs: &[AttrDef]| {
        for d in defs {
            out.push(format!("{prefix}{}", d.name));
            for s in d.sub {
                out.push(format!("{prefix}{}.{}", d.name, s.name));
            }
        }
    };
    add("", COMMON_ATTRS);
    add("", kind.attrs());
    for ext in kind.extensions() {
        add(&format!("{}:", ext.urn), ext.attrs);
    }
    out
}

fn suggest(kind: ResourceKind, text: &str) -> String {
    let known = known_paths(kind);
    match crate::suggest::did_you_mean(text, known.iter().map(String::as_str)) {
        Some(b) => format!(" (did you mean '{b}'?)"),
        None => String::new(),
    }
}

impl SourcePath {
    /// Compiles a path for a resource kind; the error names the path and what is wrong.
    pub fn compile(kind: ResourceKind, text: &str) -> Result<SourcePath, String> {
        let path = parse_patch_path(text)
            .map_err(|e| format!("'{text}' is not an attribute path: {e}"))?;
        let Some(target) = resolve(kind, &path.attr) else {
            return Err(format!(
                "unknown {} attribute '{}'{}",
                kind.name(),
                text,
                suggest(kind, text)
            ));
        };
        let def = target.def;
        let sub_name = path.attr.sub_attr.as_deref().or(path.sub_attr.as_deref());
        if path.filter.is_some() && !(def.is_complex() && def.multi) {
            return Err(format!(
                "'{text}': a value filter [...] needs a multi-valued complex attribute"
            ));
        }
        let leaf = match sub_name {
            Some(sub) => def.sub_attr(sub).ok_or_else(|| {
                format!(
                    "'{text}': {} has no sub-attribute '{sub}'{}",
                    def.name,
                    suggest(kind, text)
                )
            })?,
            None if def.is_complex() => def.sub_attr("value").ok_or_else(|| {
                format!(
                    "'{text}': {} is complex; name one of its sub-attributes (e.g. {}.{})",
                    def.name,
                    def.name,
                    def.sub.first().map_or("value", |s| s.name)
                )
            })?,
            None => def,
        };
        if def.name == "password" {
            return Err(format!("'{text}': password is write-only and never stored"));
        }
        Ok(SourcePath {
            text: text.to_string(),
            path,
            leaf,
            multi: def.multi,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The expression type of the single value this path yields.
    pub fn value_type(&self) -> Type {
        match self.leaf.ty {
            AttrType::Boolean => Type::Bool,
            _ => Type::Str,
        }
    }

    pub fn is_multi(&self) -> bool {
        self.multi
    }

    /// Every value the path denotes, with the element it came from (for `primary`).
    fn collect<'a>(
        &self,
        kind: ResourceKind,
        doc: &'a Map<String, Json>,
    ) -> Vec<(&'a Json, Option<&'a Map<String, Json>>)> {
        let Some(target) = resolve(kind, &self.path.attr) else {
            return Vec::new();
        };
        let Some(value) = target.get(doc) else {
            return Vec::new();
        };
        let def = target.def;
        let sub = self
            .path
            .attr
            .sub_attr
            .as_deref()
            .or(self.path.sub_attr.as_deref())
            .and_then(|s| def.sub_attr(s))
            .or_else(|| {
                if def.is_complex() {
                    def.sub_attr("value")
                } else {
                    None
                }
            });
        match value {
            Json::Array(items) => items
                .iter()
                .filter_map(Json::as_object)
                .filter(|e| {
                    self.path
                        .filter
                        .as_ref()
                        .is_none_or(|f| matches_element(def, f, e))
                })
                .filter_map(|e| Some((e.get(sub?.name)?, Some(e))))
                .chain(
                    // A multi-valued simple attribute (none in the core schemas, but keep it total).
                    items.iter().filter(|i| !i.is_object()).map(|i| (i, None)),
                )
                .collect(),
            Json::Object(obj) => match sub {
                Some(s) => obj
                    .get(s.name)
                    .map(|v| vec![(v, Some(obj))])
                    .unwrap_or_default(),
                None => Vec::new(),
            },
            v => vec![(v, None)],
        }
    }

    /// The single value: the primary element's, else the only one's.
    pub fn single(&self, kind: ResourceKind, doc: &Map<String, Json>) -> Value {
        let all = self.collect(kind, doc);
        let chosen = match all.len() {
            0 => None,
            1 => all.first().map(|(v, _)| *v),
            _ => all
                .iter()
                .find(|(_, e)| e.is_some_and(|e| e.get("primary") == Some(&Json::Bool(true))))
                .map(|(v, _)| *v),
        };
        chosen.map_or(Value::Null, to_value)
    }

    /// All values, as text (for multi-valued columns).
    pub fn all(&self, kind: ResourceKind, doc: &Map<String, Json>) -> Vec<String> {
        self.collect(kind, doc)
            .into_iter()
            .filter_map(|(v, _)| to_value(v).as_text())
            .collect()
    }
}

fn to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::String(s) if s.is_empty() => Value::Null,
        Json::String(s) => Value::Str(s.clone()),
        Json::Number(n) => n
            .as_i64()
            .map_or_else(|| Value::Str(n.to_string()), Value::Int),
        other => Value::Str(short(other)),
    }
}
