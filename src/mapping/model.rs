//! The compiled mapping and what it does with a journal record: compute the target
//! [`Change`] for the resource's image. Pure: the same record always gives the same
//! change, so delivery and replay can repeat it safely.

use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::journal::record::{Op, Record};
use crate::mapping::expr::{self, Expr, Value};
use crate::mapping::source::SourcePath;
use crate::scim::resource::parse_datetime;
use crate::scim::schema::ResourceKind;
use crate::target::{Cell, Change, ColumnSpec, ColumnType, Members, TableSpec, TargetSchema};

/// Where a column's value comes from.
#[derive(Debug, Clone)]
pub enum Src {
    Path(SourcePath),
    Expr(Expr),
    Const(Value),
}

#[derive(Debug, Clone)]
pub struct ColumnMap {
    pub spec: ColumnSpec,
    pub source: Src,
    pub required: bool,
    pub default: Option<Value>,
    /// All values of a multi-valued source, stored as a JSON array.
    pub multi: bool,
}

/// What a DELETE does in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePolicy {
    /// Delete the row.
    Delete,
    /// Keep the row, with the `on_disable` values.
    Disable,
    /// Keep the row with the `on_disable` values and an archive time; purge later.
    Archive,
}

/// The mapping of one resource type.
#[derive(Debug, Clone)]
pub struct ResourceMap {
    pub kind: ResourceKind,
    pub table: TableSpec,
    pub scope: Option<Expr>,
    pub columns: Vec<ColumnMap>,
    pub default_groups: Vec<String>,
    /// Column values set when a user is disabled (`active: false`) or, for the disable and
    /// archive delete policies, deleted.
    pub on_disable: Vec<(String, Value)>,
    pub on_delete: DeletePolicy,
    pub purge_after: Option<Duration>,
    /// LDAP: the entry's DN.
    pub dn: Option<crate::mapping::dn::DnTemplate>,
    /// LDAP: where a disabled user's entry goes (its RDN under this DN).
    pub disabled_parent: Option<String>,
    /// LDAP: where an archived entry goes (its RDN under this DN).
    pub archive_parent: Option<String>,
}

/// The whole compiled mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub users: Option<ResourceMap>,
    pub groups: Option<ResourceMap>,
    /// What a SQLite target stores.
    pub schema: TargetSchema,
    /// What an LDAP target writes.
    pub ldap: crate::target::LdapSchema,
}

/// Evaluation source over one document. A path a column reads is taken compiled from
/// `columns` (a few; searched in order: cheaper than building a map per document), any
/// other is compiled when asked for.
struct Doc<'a> {
    kind: ResourceKind,
    doc: &'a Map<String, Json>,
    columns: &'a [ColumnMap],
}

impl expr::Source for Doc<'_> {
    fn value_of(&self, path: &str) -> Value {
        let compiled = self.columns.iter().find_map(|c| match &c.source {
            Src::Path(p) if p.text() == path => Some(p),
            _ => None,
        });
        match compiled {
            Some(p) => p.single(self.kind, self.doc),
            None => match SourcePath::compile(self.kind, path) {
                Ok(p) => p.single(self.kind, self.doc),
                Err(_) => Value::Null,
            },
        }
    }
}

/// The source a mapping evaluates expressions over: attribute paths read from one
/// document. For the fuzz targets (`crate::fuzzing`), which evaluate expressions exactly
/// as a mapping does.
pub(crate) fn doc_source(kind: ResourceKind, doc: &Map<String, Json>) -> impl expr::Source + '_ {
    Doc {
        kind,
        doc,
        columns: &[],
    }
}

/// Resolver for compile-time checks of expressions over a resource kind.
pub struct KindResolver(pub ResourceKind);

impl expr::Resolver for KindResolver {
    fn type_of(&self, path: &str) -> Result<expr::Type, String> {
        SourcePath::compile(self.0, path).map(|p| p.value_type())
    }
}

/// Converts a value to the cell a column stores. Errors name the column.
pub fn to_cell(spec: &ColumnSpec, v: &Value) -> Result<Cell, String> {
    let text = |v: &Value| v.as_text();
    Ok(match (spec.ty, v) {
        (_, Value::Null) => Cell::Null,
        (ColumnType::Text, Value::List(items)) => {
            Cell::Text(serde_json::to_string(items).unwrap_or_default())
        }
        (ColumnType::Text, Value::Bool(b)) => {
            Cell::Text(if *b { "true".into() } else { "false".into() })
        }
        (ColumnType::Text, v) => text(v).map_or(Cell::Null, Cell::Text),
        (ColumnType::Integer, Value::Int(n)) => Cell::Integer(*n),
        (ColumnType::Integer, Value::Bool(b)) => Cell::Integer(i64::from(*b)),
        (ColumnType::Integer, Value::Str(s)) => Cell::Integer(
            s.trim()
                .parse()
                .map_err(|_| format!("column '{}': '{s}' is not an integer", spec.name))?,
        ),
        (ColumnType::Boolean, Value::Bool(b)) => Cell::Integer(i64::from(*b)),
        (ColumnType::Boolean, Value::Int(n)) => Cell::Integer(i64::from(*n != 0)),
        (ColumnType::Boolean, Value::Str(s)) if s.eq_ignore_ascii_case("true") => Cell::Integer(1),
        (ColumnType::Boolean, Value::Str(s)) if s.eq_ignore_ascii_case("false") => Cell::Integer(0),
        (ColumnType::Timestamp, Value::Str(s)) => Cell::Text(
            parse_datetime(s)
                .map(crate::journal::timestamp)
                .ok_or_else(|| {
                    format!("column '{}': '{s}' is not an RFC 3339 date-time", spec.name)
                })?,
        ),
        (_, v) => {
            return Err(format!(
                "column '{}': {v:?} cannot be stored as {:?}",
                spec.name, spec.ty
            ));
        }
    })
}

impl ResourceMap {
    fn source<'a>(&'a self, doc: &'a Map<String, Json>) -> Doc<'a> {
        Doc {
            kind: self.kind,
            doc,
            columns: &self.columns,
        }
    }

    /// Whether a resource is in scope (no scope: everything is).
    pub fn in_scope(&self, doc: &Map<String, Json>) -> bool {
        let Some(scope) = &self.scope else {
            return true;
        };
        match scope.eval(&self.source(doc)) {
            Value::Bool(b) => b,
            Value::Str(s) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    /// The row a resource maps to. Err: the resource cannot be written (a required value
    /// is missing, a value does not fit its column): the target rejects it.
    pub fn cells(&self, doc: &Map<String, Json>) -> Result<Vec<(String, Cell)>, String> {
        let src = self.source(doc);
        let disabled = self.is_disabled(doc);
        let mut out = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let value = match &c.source {
                Src::Path(p) if c.multi => {
                    let all = p.all(self.kind, doc);
                    if all.is_empty() {
                        Value::Null
                    } else {
                        Value::List(all)
                    }
                }
                Src::Path(p) => p.single(self.kind, doc),
                Src::Expr(e) => e.eval(&src),
                Src::Const(v) => v.clone(),
            };
            let value = match (&value, &c.default) {
                (v, Some(d)) if !v.is_present() => d.clone(),
                _ => value,
            };
            if c.required && !value.is_present() {
                let from = match &c.source {
                    Src::Path(p) => format!("{} is absent", p.text()),
                    Src::Expr(e) => format!("{} gives no value", e.text()),
                    Src::Const(_) => "the constant is empty".into(),
                };
                return Err(format!("column '{}' is required, but {from}", c.spec.name));
            }
            out.push((c.spec.name.clone(), to_cell(&c.spec, &value)?));
        }
        if disabled {
            self.apply_disable(&mut out)?;
        }
        Ok(out)
    }

    fn apply_disable(&self, cells: &mut Vec<(String, Cell)>) -> Result<(), String> {
        for (column, value) in &self.on_disable {
            let Some(spec) = self.table.columns.iter().find(|c| &c.name == column) else {
                return Err(format!("on_disable: unknown column '{column}'"));
            };
            let cell = to_cell(spec, value)?;
            match cells.iter_mut().find(|(n, _)| n == column) {
                Some(slot) => slot.1 = cell,
                None => cells.push((column.clone(), cell)),
            }
        }
        Ok(())
    }

    fn disabled_cells(&self) -> Result<Vec<(String, Cell)>, String> {
        let mut cells = Vec::new();
        self.apply_disable(&mut cells)?;
        Ok(cells)
    }

    fn members(doc: &Map<String, Json>) -> Vec<String> {
        doc.get("members")
            .and_then(Json::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(|x| x.get("value")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn render_dn(&self, doc: &Map<String, Json>) -> Result<Option<String>, String> {
        self.dn
            .as_ref()
            .map(|t| t.render(self.kind, doc))
            .transpose()
    }

    /// The DN of a disabled resource: under `disabled_parent` when the policy moves it.
    fn disabled_dn(&self, doc: &Map<String, Json>) -> Result<Option<String>, String> {
        let dn = self.render_dn(doc)?;
        Ok(match (&self.disabled_parent, dn) {
            (Some(parent), Some(dn)) => Some(crate::mapping::dn::under(&dn, parent)),
            (_, dn) => dn,
        })
    }

    /// Whether the image is a disabled user.
    fn is_disabled(&self, doc: &Map<String, Json>) -> bool {
        self.kind == ResourceKind::User && doc.get("active") == Some(&Json::Bool(false))
    }

    /// The change a journal record asks of the target.
    pub fn change(&self, record: &Record) -> Result<Change, String> {
        let Json::Object(doc) = &record.image else {
            return Err(format!("record {}: the image is not an object", record.seq));
        };
        let key = record.id.clone();
        match record.op {
            Op::Purge => Ok(Change::Remove {
                kind: self.kind,
                key,
            }),
            Op::Delete => match self.on_delete {
                DeletePolicy::Delete => Ok(Change::Remove {
                    kind: self.kind,
                    key,
                }),
                DeletePolicy::Disable if self.in_scope(doc) => {
                    let mut cells = self.cells(doc)?;
                    self.apply_disable(&mut cells)?;
                    Ok(Change::Upsert {
                        kind: self.kind,
                        key,
                        dn: self.disabled_dn(doc)?,
                        cells,
                        members: (self.kind == ResourceKind::Group)
                            .then(|| Members::All(Vec::new())),
                        default_groups: Vec::new(),
                        disabled: true,
                        password: None,
                    })
                }
                DeletePolicy::Archive => Ok(Change::Archive {
                    kind: self.kind,
                    key,
                    dn: match &self.archive_parent {
                        Some(parent) => self
                            .render_dn(doc)?
                            .map(|dn| crate::mapping::dn::under(&dn, parent)),
                        None => None,
                    },
                    cells: self.disabled_cells()?,
                    at: record.time.clone(),
                }),
                DeletePolicy::Disable => Ok(Change::Remove {
                    kind: self.kind,
                    key,
                }),
            },
            Op::Create | Op::Replace | Op::Patch => {
                if !self.in_scope(doc) {
                    // Outside the scope: not written, and removed if it was there.
                    return Ok(Change::Remove {
                        kind: self.kind,
                        key,
                    });
                }
                let disabled = self.is_disabled(doc);
                Ok(Change::Upsert {
                    kind: self.kind,
                    key,
                    dn: if disabled {
                        self.disabled_dn(doc)?
                    } else {
                        self.render_dn(doc)?
                    },
                    cells: self.cells(doc)?,
                    members: (self.kind == ResourceKind::Group).then(|| {
                        match &record.member_delta {
                            Some(delta) => Members::Delta {
                                added: delta.added_ids().map(str::to_string).collect(),
                                removed: delta.removed.clone(),
                            },
                            None => Members::All(Self::members(doc)),
                        }
                    }),
                    default_groups: self.default_groups.clone(),
                    disabled,
                    password: None,
                })
            }
        }
    }
}

impl Mapping {
    pub fn for_kind(&self, kind: ResourceKind) -> Option<&ResourceMap> {
        match kind {
            ResourceKind::User => self.users.as_ref(),
            ResourceKind::Group => self.groups.as_ref(),
        }
    }

    /// The change for a record; `Change::Nothing` when the kind is not mapped.
    pub fn change(&self, record: &Record) -> Result<Change, String> {
        let Some(kind) = ResourceKind::from_name(&record.kind) else {
            return Err(format!(
                "record {}: unknown kind '{}'",
                record.seq, record.kind
            ));
        };
        match self.for_kind(kind) {
            Some(map) => map.change(record),
            None => Ok(Change::Nothing),
        }
    }
}
