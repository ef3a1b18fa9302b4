//! Stage two for `target:` and `mapping:`: compiles the attribute mapping (paths,
//! expressions, constants, policies) and the target's table layout, reporting every
//! problem at its YAML node: unknown attributes with a did-you-mean, unknown functions,
//! wrong arity, type mismatches, unknown columns, bad identifiers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::raw::{
    RawColumn, RawDisableEntry, RawLdapTarget, RawMapping, RawMemberships, RawPassword,
    RawResourceMap, RawSecret, RawTarget, RawText,
};
use super::validate::{Checker, parse_duration};
use super::{Environment, Secret, TargetConfig, TargetKind};
use crate::mapping::expr::{Expr, Type, Value};
use crate::mapping::model::{
    ColumnMap, DeletePolicy, KindResolver, Mapping, ResourceMap, Src, to_cell,
};
use crate::mapping::source::SourcePath;
use crate::scim::schema::ResourceKind;
use crate::target::{
    ColumnSpec, ColumnType, EntrySpec, LdapSchema, LdapSettings, MemberSpec, MemberValue,
    MembershipSpec, OnExisting, PasswordEncoding, PasswordSpec, TableSpec, TargetSchema,
};

/// Table and column names: plain SQL identifiers, so every application can name them
/// without quoting.
fn identifier_problem(text: &str) -> Option<String> {
    let mut chars = text.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.len() <= 64;
    (!ok).then(|| {
        format!("'{text}' is not a plain identifier (letters, digits and _, starting with a letter or _; at most 64)")
    })
}

fn identifier(
    checker: &mut Checker<'_>,
    path: &str,
    text: Option<String>,
    default: &str,
) -> String {
    let text = text.unwrap_or_else(|| default.to_string());
    if let Some(p) = identifier_problem(&text) {
        checker.report(path, p);
    }
    text
}

pub(super) fn flag(checker: &mut Checker<'_>, path: &str, text: Option<&str>) -> bool {
    match text.map(str::trim) {
        None => false,
        Some(t) if t.eq_ignore_ascii_case("true") => true,
        Some(t) if t.eq_ignore_ascii_case("false") => false,
        Some(t) => {
            checker.report(path, format!("'{t}' is not true or false"));
            false
        }
    }
}

/// Compiles `target:` + `mapping:`; `None` when neither is present or either is invalid.
pub(super) fn target(
    checker: &mut Checker<'_>,
    raw_target: Option<RawTarget>,
    raw_mapping: Option<RawMapping>,
    state_dir: &Path,
    env: &dyn Environment,
) -> Option<TargetConfig> {
    let (raw_target, raw_mapping) = match (raw_target, raw_mapping) {
        (None, None) => return None,
        (Some(_), None) => {
            checker.report(
                "target",
                "a target needs a 'mapping:' section saying what to write into it".into(),
            );
            return None;
        }
        (None, Some(_)) => {
            checker.report("mapping", "a mapping needs a 'target:' section saying where to write (e.g. target: {sqlite: {path: ./state/directory.db}})".into());
            return None;
        }
        (Some(t), Some(m)) => (t, m),
    };
    let before = checker.problem_count();
    let sync_delivery = match raw_target.delivery.as_deref().map(str::trim) {
        None | Some("async") => false,
        Some("sync") => true,
        Some(other) => {
            checker.report("target.delivery", format!("'{other}' is not async or sync"));
            false
        }
    };
    let (kind, base) = match (raw_target.sqlite, raw_target.ldap) {
        (Some(_), Some(_)) => {
            checker.report("target", "give one target: 'sqlite:' or 'ldap:'".into());
            return None;
        }
        (Some(s), None) => {
            let path = match s.path {
                Some(p) if p.is_empty() => {
                    checker.report(
                        "target.sqlite.path",
                        "'' is empty; give a file (e.g. ./state/directory.db)".into(),
                    );
                    state_dir.join("directory.db")
                }
                Some(p) => p.into(),
                None => state_dir.join("directory.db"),
            };
            (TargetKind::Sqlite { path }, None)
        }
        (None, Some(l)) => {
            let (settings, base) = ldap_settings(checker, l, state_dir, env);
            (TargetKind::Ldap(Box::new(settings)), Some(base))
        }
        (None, None) => {
            checker.report(
                "target",
                "no target kind given; use 'sqlite:' (with 'path:') or 'ldap:'".into(),
            );
            return None;
        }
    };
    let ldap = base.as_deref();
    let users = raw_mapping
        .users
        .map(|raw| resource_map(checker, "mapping.users", ResourceKind::User, raw, ldap));
    let groups = raw_mapping
        .groups
        .map(|raw| resource_map(checker, "mapping.groups", ResourceKind::Group, raw, ldap));
    if users.is_none() && groups.is_none() {
        checker.report(
            "mapping",
            "the mapping maps nothing; add 'users:' and/or 'groups:'".into(),
        );
    }
    let memberships = raw_mapping.memberships.map(|m| memberships(checker, m));
    if memberships.is_some() && ldap.is_some() {
        checker.report("mapping.memberships", "an LDAP target writes memberships in the group entries ('members:' under mapping.groups)".into());
    }
    if memberships.is_some() && groups.is_none() {
        checker.report(
            "mapping.memberships",
            "memberships need 'mapping.groups' (they are written when groups are)".into(),
        );
    }
    if let Some(users) = &users
        && !users.map.default_groups.is_empty()
        && memberships.is_none()
        && ldap.is_none()
    {
        checker.report(
            "mapping.users.default_groups",
            "default groups need a 'mapping.memberships' table to be written to".into(),
        );
    }
    if let (Some(users), Some(groups)) = (&users, &groups)
        && let (Some(u), Some(g)) = (&users.entry, &groups.entry)
        && let Some(MemberSpec {
            value: MemberValue::Attribute(attr),
            ..
        }) = &g.members
        && !u
            .attributes
            .iter()
            .any(|a| a.name.eq_ignore_ascii_case(attr))
    {
        checker.report(
            "mapping.groups.members.value",
            format!("'{attr}' is not an attribute of mapping.users; groups list the value the users' entries get"),
        );
    }
    if checker.problem_count() > before {
        return None;
    }
    let schema = TargetSchema {
        users: users
            .as_ref()
            .filter(|_| ldap.is_none())
            .map(|u| u.map.table.clone()),
        groups: groups
            .as_ref()
            .filter(|_| ldap.is_none())
            .map(|g| g.map.table.clone()),
        memberships,
    };
    let entry = |m: &Option<Compiled>| m.as_ref().and_then(|m| m.entry.clone());
    let ldap_schema = LdapSchema {
        base: ldap.unwrap_or_default().to_string(),
        users: entry(&users),
        groups: entry(&groups),
    };
    Some(TargetConfig {
        sync_delivery,
        kind,
        mapping: Arc::new(Mapping {
            users: users.map(|u| u.map),
            groups: groups.map(|g| g.map),
            schema,
            ldap: ldap_schema,
        }),
    })
}

/// Resolves a setting that may come from the file, the environment or a file.
fn text_setting(
    checker: &mut Checker<'_>,
    path: &str,
    raw: Option<RawText>,
    env: &dyn Environment,
) -> Option<String> {
    match raw? {
        RawText::Plain(t) if t.trim().is_empty() => {
            checker.report(path, "'' is empty".into());
            None
        }
        RawText::Plain(t) => Some(t),
        RawText::From(secret) => {
            from_source(checker, path, secret, env).map(|s| s.expose().to_string())
        }
    }
}

fn from_source(
    checker: &mut Checker<'_>,
    path: &str,
    raw: RawSecret,
    env: &dyn Environment,
) -> Option<Secret> {
    match (raw.env, raw.file, raw.value) {
        (Some(var), None, None) => match env.var(&var) {
            Some(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                checker.report(path, format!("environment variable {var} is not set"));
                None
            }
        },
        (None, Some(file), None) => match env.read_file(Path::new(&file)) {
            Ok(text) => Some(Secret::new(text.trim_end_matches(['\n', '\r']).to_string())),
            Err(e) => {
                checker.report(path, format!("cannot read {file}: {e}"));
                None
            }
        },
        (None, None, Some(v)) => Some(Secret::new(v)),
        _ => {
            checker.report(path, "give exactly one of env:, file: or value:".into());
            None
        }
    }
}

fn duration_setting(
    checker: &mut Checker<'_>,
    path: &str,
    raw: Option<String>,
    default: std::time::Duration,
) -> std::time::Duration {
    match raw {
        None => default,
        Some(text) => parse_duration(&text)
            .filter(|d| !d.is_zero())
            .unwrap_or_else(|| {
                checker.report(path, format!("'{text}' is not a duration (e.g. 5s)"));
                default
            }),
    }
}

fn ldap_settings(
    checker: &mut Checker<'_>,
    raw: RawLdapTarget,
    state_dir: &Path,
    env: &dyn Environment,
) -> (LdapSettings, String) {
    let mut urls = Vec::new();
    for (i, u) in raw.urls.unwrap_or_default().into_iter().enumerate() {
        let path = format!("target.ldap.urls[{i}]");
        if let Some(url) = text_setting(checker, &path, Some(u), env) {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("ldap://") || lower.starts_with("ldaps://")) {
                checker.report(&path, format!("'{url}' is not an ldap:// or ldaps:// URL"));
            }
            urls.push(url);
        }
    }
    if urls.is_empty() {
        checker.report(
            "target.ldap",
            "an LDAP target needs 'urls:' (e.g. [ldaps://ldap.example.com])".into(),
        );
    }
    let bind_dn =
        text_setting(checker, "target.ldap.bind_dn", raw.bind_dn, env).unwrap_or_default();
    let bind_password = match raw.bind_password {
        Some(p) => from_source(checker, "target.ldap.bind_password", p, env)
            .unwrap_or_else(|| Secret::new(String::new())),
        None => Secret::new(String::new()),
    };
    let client_cert = raw.client_cert.map(|c| {
        let mut file = |key: &str, value: Option<String>| match value {
            Some(v) if !v.trim().is_empty() => std::path::PathBuf::from(v),
            _ => {
                checker.report(
                    &format!("target.ldap.client_cert.{key}"),
                    format!("a client certificate needs '{key}:' (a PEM file)"),
                );
                std::path::PathBuf::new()
            }
        };
        crate::target::ClientCert {
            cert_file: file("cert_file", c.cert_file),
            key_file: file("key_file", c.key_file),
        }
    });
    if client_cert.is_some() && !(bind_dn.is_empty() && bind_password.expose().is_empty()) {
        checker.report(
            "target.ldap.client_cert",
            "a client certificate binds with SASL EXTERNAL (the directory maps the certificate to its identity); remove bind_dn and bind_password".into(),
        );
    } else if client_cert.is_none() && bind_dn.is_empty() != bind_password.expose().is_empty() {
        checker.report(
            "target.ldap",
            "give both bind_dn and bind_password (or neither, for an anonymous bind)".into(),
        );
    }
    let base = text_setting(checker, "target.ldap.base", raw.base, env).unwrap_or_else(|| {
        checker.report(
            "target.ldap",
            "an LDAP target needs 'base:' (e.g. dc=example,dc=com)".into(),
        );
        String::new()
    });
    let starttls = flag(checker, "target.ldap.starttls", raw.starttls.as_deref());
    let pool_size = match raw.pool_size.as_deref().map(str::trim) {
        None => 4,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => {
                checker.report(
                    "target.ldap.pool_size",
                    format!("'{t}' is not a number from 1 to 64"),
                );
                4
            }
        },
    };
    let settings = LdapSettings {
        urls,
        bind_dn,
        bind_password,
        starttls,
        ca_file: raw.ca_file.map(Into::into),
        client_cert,
        connect_timeout: duration_setting(
            checker,
            "target.ldap.connect_timeout",
            raw.connect_timeout,
            std::time::Duration::from_secs(5),
        ),
        operation_timeout: duration_setting(
            checker,
            "target.ldap.operation_timeout",
            raw.operation_timeout,
            std::time::Duration::from_secs(10),
        ),
        give_up_after: duration_setting(
            checker,
            "target.ldap.give_up_after",
            raw.give_up_after,
            std::time::Duration::from_secs(120),
        ),
        pool_size,
        links_path: state_dir.join("ldap-links.db"),
    };
    (settings, base)
}

fn memberships(checker: &mut Checker<'_>, raw: RawMemberships) -> MembershipSpec {
    let name = match raw.table {
        Some(t) => identifier(checker, "mapping.memberships.table", Some(t), ""),
        None => {
            checker.report("mapping.memberships", "memberships need a 'table:'".into());
            String::new()
        }
    };
    MembershipSpec {
        name,
        group_column: identifier(
            checker,
            "mapping.memberships.group_column",
            raw.group_column,
            "group_id",
        ),
        member_column: identifier(
            checker,
            "mapping.memberships.member_column",
            raw.member_column,
            "member_id",
        ),
        origin_column: identifier(
            checker,
            "mapping.memberships.origin_column",
            raw.origin_column,
            "origin",
        ),
    }
}

fn column_type(checker: &mut Checker<'_>, path: &str, text: Option<&str>) -> ColumnType {
    match text.map(str::trim) {
        None => ColumnType::Text,
        Some("text") => ColumnType::Text,
        Some("integer") => ColumnType::Integer,
        Some("boolean") => ColumnType::Boolean,
        Some("timestamp") => ColumnType::Timestamp,
        Some(other) => {
            checker.report(
                path,
                format!("'{other}' is not a column type; use text, integer, boolean or timestamp"),
            );
            ColumnType::Text
        }
    }
}

/// A constant from the file, typed for its column.
fn constant(ty: ColumnType, text: &str) -> Value {
    match ty {
        ColumnType::Boolean if text.eq_ignore_ascii_case("true") => Value::Bool(true),
        ColumnType::Boolean if text.eq_ignore_ascii_case("false") => Value::Bool(false),
        ColumnType::Integer | ColumnType::Boolean => text
            .trim()
            .parse()
            .map_or_else(|_| Value::Str(text.into()), Value::Int),
        _ => Value::Str(text.into()),
    }
}

fn compile_expr(
    checker: &mut Checker<'_>,
    path: &str,
    kind: ResourceKind,
    text: &str,
) -> Option<Expr> {
    match Expr::compile(text, &KindResolver(kind)) {
        Ok(e) => Some(e),
        Err(e) => {
            checker.report(
                path,
                format!(
                    "{} (at character {} of the expression)",
                    e.message,
                    e.offset + 1
                ),
            );
            None
        }
    }
}

fn column(
    checker: &mut Checker<'_>,
    at: &str,
    kind: ResourceKind,
    name: &str,
    raw: RawColumn,
    sql_identifier: bool,
) -> Option<ColumnMap> {
    if sql_identifier && let Some(p) = identifier_problem(name) {
        checker.report(at, p);
    }
    let ty = column_type(checker, &format!("{at}.type"), raw.ty.as_deref());
    let required = flag(checker, &format!("{at}.required"), raw.required.as_deref());
    let create_only = flag(
        checker,
        &format!("{at}.create_only"),
        raw.create_only.as_deref(),
    );
    let multi = flag(checker, &format!("{at}.multi"), raw.multi.as_deref());
    let unique = flag(checker, &format!("{at}.unique"), raw.unique.as_deref());
    let keep_when_empty = match raw.when_empty.as_deref().map(str::trim) {
        None | Some("clear") => false,
        Some("keep") => true,
        Some(other) => {
            checker.report(
                &format!("{at}.when_empty"),
                format!("'{other}' is not clear or keep"),
            );
            false
        }
    };
    let dn_reference = match raw.reference.as_deref().map(str::trim) {
        None => false,
        Some("dn") if !sql_identifier => true,
        Some("dn") => {
            checker.report(
                &format!("{at}.reference"),
                "reference: dn is for LDAP attributes (e.g. manager)".into(),
            );
            false
        }
        Some(other) => {
            checker.report(
                &format!("{at}.reference"),
                format!("'{other}' is not a reference kind; use dn"),
            );
            false
        }
    };
    let spec = ColumnSpec {
        name: name.to_string(),
        ty,
        unique,
        create_only,
        keep_when_empty,
        dn_reference,
    };
    let source = match (raw.source, raw.expr, raw.value) {
        (Some(path), None, None) => match SourcePath::compile(kind, path.trim()) {
            Ok(p) => {
                if multi && !p.is_multi() {
                    checker.report(
                        &format!("{at}.multi"),
                        format!("'{}' is single-valued; drop 'multi'", p.text()),
                    );
                }
                if multi && ty != ColumnType::Text {
                    checker.report(
                        &format!("{at}.type"),
                        "a multi-valued column is stored as a JSON array: use type text".into(),
                    );
                }
                if ty == ColumnType::Boolean && p.value_type() != Type::Bool {
                    checker.report(&format!("{at}.type"), format!("'{}' is a string; a boolean column needs a boolean source (e.g. active)", p.text()));
                }
                Src::Path(p)
            }
            Err(e) => {
                checker.report(&format!("{at}.source"), e);
                return None;
            }
        },
        (None, Some(text), None) => {
            let e = compile_expr(checker, &format!("{at}.expr"), kind, &text)?;
            match (e.result_type(), ty) {
                (Type::List, ColumnType::Text) | (Type::Any, _) | (Type::Str, _) => {}
                (Type::Bool, ColumnType::Boolean | ColumnType::Text | ColumnType::Integer) => {}
                (Type::Int, ColumnType::Integer | ColumnType::Text | ColumnType::Boolean) => {}
                (found, _) => checker.report(
                    &format!("{at}.expr"),
                    format!(
                        "the expression gives a {found:?} value, which a {ty:?} column cannot hold"
                    ),
                ),
            }
            Src::Expr(e)
        }
        (None, None, Some(text)) => Src::Const(constant(ty, &text)),
        (None, None, None) => {
            checker.report(at, "a column needs one of 'source:' (an attribute path), 'expr:' (an expression) or 'value:' (a constant)".into());
            return None;
        }
        _ => {
            checker.report(
                at,
                "give only one of 'source:', 'expr:' and 'value:'".into(),
            );
            return None;
        }
    };
    if let Src::Const(v) = &source
        && let Err(e) = to_cell(&spec, v)
    {
        checker.report(&format!("{at}.value"), e);
    }
    let default = raw.default.map(|d| constant(ty, &d));
    if let Some(d) = &default
        && let Err(e) = to_cell(&spec, d)
    {
        checker.report(&format!("{at}.default"), e);
    }
    Some(ColumnMap {
        spec,
        source,
        required,
        default,
        multi,
    })
}

/// A compiled resource mapping and, for an LDAP target, its entry layout.
struct Compiled {
    map: ResourceMap,
    entry: Option<EntrySpec>,
}

/// LDAP attribute descriptions: a letter, then letters, digits and hyphens.
fn ldap_attr_problem(text: &str) -> Option<String> {
    let mut chars = text.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
        && text.len() <= 128;
    (!ok).then(|| {
        format!(
            "'{text}' is not an LDAP attribute name (letters, digits and -, starting with a letter)"
        )
    })
}

/// `mapping.users.password`: the attribute the SCIM password is written to, and how.
fn password_spec(
    checker: &mut Checker<'_>,
    at: &str,
    kind: ResourceKind,
    raw: RawPassword,
    attributes: Option<&std::collections::BTreeMap<String, RawColumn>>,
) -> Option<PasswordSpec> {
    let path = format!("{at}.password");
    if kind != ResourceKind::User {
        checker.report(&path, "only users have a password".into());
        return None;
    }
    let Some(attribute) = raw.attribute else {
        checker.report(
            &path,
            "a password needs 'attribute:' (userPassword; unicodePwd for Active Directory)".into(),
        );
        return None;
    };
    if let Some(p) = ldap_attr_problem(&attribute) {
        checker.report(&format!("{path}.attribute"), p);
        return None;
    }
    if attributes.is_some_and(|a| a.keys().any(|k| k.eq_ignore_ascii_case(&attribute))) {
        checker.report(
            &format!("{path}.attribute"),
            format!("'{attribute}' is also under {at}.attributes; the password is its only source"),
        );
        return None;
    }
    let encoding = match raw.encoding.as_deref().map(str::trim) {
        None => PasswordEncoding::for_attribute(&attribute),
        Some("text") => PasswordEncoding::Text,
        Some("ad-unicode") => PasswordEncoding::AdUnicodePwd,
        Some(other) => {
            checker.report(
                &format!("{path}.encoding"),
                format!("'{other}' is not text or ad-unicode"),
            );
            return None;
        }
    };
    Some(PasswordSpec {
        attribute,
        encoding,
    })
}

fn resource_map(
    checker: &mut Checker<'_>,
    at: &str,
    kind: ResourceKind,
    mut raw: RawResourceMap,
    ldap_base: Option<&str>,
) -> Compiled {
    let mut dn = None;
    let mut entry = None;
    let mut archive_parent = None;
    if let Some(base) = ldap_base {
        for (given, name) in [
            (raw.table.is_some(), "table"),
            (raw.columns.is_some(), "columns"),
            (raw.key.is_some(), "key"),
        ] {
            if given {
                checker.report(&format!("{at}.{name}"), format!("'{name}' is for a SQLite target; an LDAP mapping has dn, object_classes and attributes"));
            }
        }
        dn = match raw.dn.take() {
            Some(t) => match crate::mapping::dn::DnTemplate::compile(kind, &t, base) {
                Ok(d) => Some(d),
                Err(e) => {
                    checker.report(&format!("{at}.dn"), e);
                    None
                }
            },
            None => {
                checker.report(
                    at,
                    "an LDAP mapping needs 'dn:' (e.g. uid={userName},ou=people,{base})".into(),
                );
                None
            }
        };
        let object_classes = raw.object_classes.take().unwrap_or_default();
        if object_classes.is_empty() {
            checker.report(at, "an LDAP mapping needs 'object_classes:' (e.g. [inetOrgPerson, organizationalPerson, person, top])".into());
        }
        for (i, oc) in object_classes.iter().enumerate() {
            if let Some(p) = ldap_attr_problem(oc) {
                checker.report(
                    &format!("{at}.object_classes[{i}]"),
                    p.replace("attribute name", "object class name"),
                );
            }
        }
        let members = raw.members.take().map(|m| MemberSpec {
            attribute: m.attribute.unwrap_or_else(|| "member".into()),
            value: match m.value.as_deref().map(str::trim) {
                None | Some("dn") => MemberValue::Dn,
                Some(attr) => {
                    if let Some(p) = ldap_attr_problem(attr) {
                        checker.report(
                            &format!("{at}.members.value"),
                            format!("{p}; give dn, or the user attribute groups list (e.g. uid for memberUid)"),
                        );
                    }
                    MemberValue::Attribute(attr.to_string())
                }
            },
            placeholder: m.placeholder.map(|p| p.replace("{base}", base)),
        });
        if members.is_some() && kind == ResourceKind::User {
            checker.report(&format!("{at}.members"), "members belong to groups".into());
        }
        let on_existing = match raw.on_existing.as_deref().map(str::trim) {
            None | Some("adopt") => OnExisting::Adopt,
            Some("conflict") => OnExisting::Conflict,
            Some(other) => {
                checker.report(
                    &format!("{at}.on_existing"),
                    format!("'{other}' is not adopt or conflict"),
                );
                OnExisting::Adopt
            }
        };
        archive_parent = raw.archive_to.take().map(|p| p.replace("{base}", base));
        let password = raw
            .password
            .take()
            .and_then(|p| password_spec(checker, at, kind, p, raw.attributes.as_ref()));
        raw.table = Some("ldap".into());
        raw.columns = raw.attributes.take();
        entry = Some(EntrySpec {
            object_classes,
            attributes: Vec::new(),
            members,
            create_parents: flag(
                checker,
                &format!("{at}.create_parents"),
                raw.create_parents.as_deref(),
            ),
            match_attrs: raw.match_attrs.take().unwrap_or_default(),
            on_existing,
            disable_bits: Vec::new(),
            initial_bits: Vec::new(),
            disable_drops_memberships: false,
            password,
        });
    } else {
        for (given, name) in [
            (raw.dn.is_some(), "dn"),
            (raw.object_classes.is_some(), "object_classes"),
            (raw.attributes.is_some(), "attributes"),
            (raw.members.is_some(), "members"),
            (raw.create_parents.is_some(), "create_parents"),
            (raw.match_attrs.is_some(), "match"),
            (raw.on_existing.is_some(), "on_existing"),
            (raw.archive_to.is_some(), "archive_to"),
        ] {
            if given {
                checker.report(
                    &format!("{at}.{name}"),
                    format!(
                        "'{name}' is for an LDAP target; a SQLite mapping has table and columns"
                    ),
                );
            }
        }
        if raw.password.is_some() {
            checker.report(
                &format!("{at}.password"),
                "passwords are written only to an LDAP directory (userPassword, unicodePwd); a SQLite target never stores them".into(),
            );
        }
    }
    let columns_key = if ldap_base.is_some() {
        "attributes"
    } else {
        "columns"
    };
    let table = match raw.table {
        Some(t) => identifier(checker, &format!("{at}.table"), Some(t), ""),
        None => {
            checker.report(at, "a mapping needs a 'table:'".into());
            String::new()
        }
    };
    let key_column = identifier(checker, &format!("{at}.key"), raw.key, "scim_id");
    let scope = raw.scope.and_then(|text| {
        let e = compile_expr(checker, &format!("{at}.scope"), kind, &text)?;
        if !matches!(e.result_type(), Type::Bool | Type::Any) {
            checker.report(&format!("{at}.scope"), "a scope must be a condition (true or false), e.g. IsPresent([emails[type eq \"work\"].value])".into());
        }
        Some(e)
    });
    let mut columns = Vec::new();
    let raw_columns: BTreeMap<String, RawColumn> = raw.columns.unwrap_or_default();
    if raw_columns.is_empty() {
        checker.report(at, format!("a mapping needs '{columns_key}:'"));
    }
    for (name, raw_col) in raw_columns {
        if ldap_base.is_some() {
            if let Some(p) = ldap_attr_problem(&name) {
                checker.report(&format!("{at}.attributes.{name}"), p);
                continue;
            }
            if let Some(c) = column(
                checker,
                &format!("{at}.attributes.{name}"),
                kind,
                &name,
                raw_col,
                false,
            ) {
                columns.push(c);
            }
            continue;
        }
        if name == key_column {
            checker.report(
                &format!("{at}.columns.{name}"),
                format!("'{name}' is the key column (the SCIM id); name the column differently"),
            );
            continue;
        }
        if let Some(c) = column(
            checker,
            &format!("{at}.columns.{name}"),
            kind,
            &name,
            raw_col,
            true,
        ) {
            columns.push(c);
        }
    }
    let on_delete = match raw.on_delete.as_deref().map(str::trim) {
        None | Some("delete") => DeletePolicy::Delete,
        Some("disable") => DeletePolicy::Disable,
        Some("archive") => DeletePolicy::Archive,
        Some(other) => {
            checker.report(
                &format!("{at}.on_delete"),
                format!("'{other}' is not delete, disable or archive"),
            );
            DeletePolicy::Delete
        }
    };
    let purge_after = raw
        .purge_after
        .and_then(|text| match parse_duration(&text) {
            Some(d) => Some(d),
            None => {
                checker.report(
                    &format!("{at}.purge_after"),
                    format!("'{text}' is not a duration (e.g. 30d)"),
                );
                None
            }
        });
    if purge_after.is_some() && on_delete != DeletePolicy::Archive {
        checker.report(
            &format!("{at}.purge_after"),
            "purge_after applies to on_delete: archive only".into(),
        );
    }
    let archive_column = (on_delete == DeletePolicy::Archive).then(|| {
        identifier(
            checker,
            &format!("{at}.archive_column"),
            raw.archive_column.clone(),
            "archived_at",
        )
    });
    let mut set = BTreeMap::new();
    let mut bits = BTreeMap::new();
    let mut initial = BTreeMap::new();
    let mut move_to = None;
    let mut remove_memberships = None;
    let mut set_path = format!("{at}.on_disable");
    for (key, entry) in raw.on_disable.unwrap_or_default() {
        let path = format!("{at}.on_disable.{key}");
        match (key.as_str(), entry) {
            ("set", RawDisableEntry::Map(values)) => {
                set_path = path;
                set.extend(values.into_iter().map(|(k, v)| (k, v.0)));
            }
            ("bits", RawDisableEntry::Map(values)) => {
                bits.extend(values.into_iter().map(|(k, v)| (k, v.0)));
            }
            ("initial", RawDisableEntry::Map(values)) => {
                initial.extend(values.into_iter().map(|(k, v)| (k, v.0)));
            }
            ("move_to", RawDisableEntry::Value(v)) => move_to = Some(v.0),
            ("remove_memberships", RawDisableEntry::Value(v)) => remove_memberships = Some(v.0),
            ("set" | "bits" | "initial", RawDisableEntry::Value(_)) => checker.report(
                &path,
                format!("'{key}' takes a map (e.g. {key}: {{ userAccountControl: 2 }})"),
            ),
            (_, RawDisableEntry::Map(_)) => checker.report(
                &path,
                format!("'{key}' takes one value; a map belongs under 'set:' or 'bits:'"),
            ),
            (_, RawDisableEntry::Value(v)) => {
                set.insert(key, v.0);
            }
        }
    }
    let mut on_disable = Vec::new();
    for (column, value) in set {
        let at_value = format!("{set_path}.{column}");
        let known = columns
            .iter()
            .find(|c| c.spec.name.eq_ignore_ascii_case(&column))
            .map(|c| c.spec.clone());
        let spec = match known {
            Some(spec) => spec,
            None if ldap_base.is_some() => {
                // An attribute only a disabled entry has (pwdAccountLockedTime,
                // nsAccountLock): owned by the mapping, absent while enabled.
                if let Some(p) = ldap_attr_problem(&column) {
                    checker.report(&at_value, p);
                    continue;
                }
                let spec = ColumnSpec {
                    name: column.clone(),
                    ty: ColumnType::Text,
                    unique: false,
                    create_only: false,
                    keep_when_empty: false,
                    dn_reference: false,
                };
                columns.push(ColumnMap {
                    spec: spec.clone(),
                    source: Src::Const(Value::Null),
                    required: false,
                    default: None,
                    multi: false,
                });
                spec
            }
            None => {
                let known: Vec<&str> = columns.iter().map(|c| c.spec.name.as_str()).collect();
                let hint = super::locate::did_you_mean(&column, known.iter().copied())
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                checker.report(
                    &at_value,
                    format!("unknown column '{column}'{hint}; on_disable sets mapped columns"),
                );
                continue;
            }
        };
        let v = constant(spec.ty, &value);
        if let Err(e) = to_cell(&spec, &v) {
            checker.report(&at_value, e);
        }
        on_disable.push((spec.name.clone(), v));
    }
    let mut disable_bits = Vec::new();
    for (attr, mask) in bits {
        let at_bits = format!("{at}.on_disable.bits.{attr}");
        if let Some(p) = ldap_attr_problem(&attr) {
            checker.report(&at_bits, p);
            continue;
        }
        let trimmed = mask.trim();
        let parsed = match trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
        {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => trimmed.parse::<u64>().ok(),
        };
        match parsed {
            Some(m) if m != 0 && m <= i64::MAX as u64 => {
                if ldap_base.is_some()
                    && !columns
                        .iter()
                        .any(|c| c.spec.name.eq_ignore_ascii_case(&attr))
                {
                    // Owned by the policy: the bits change, other bits stay as they are.
                    columns.push(ColumnMap {
                        spec: ColumnSpec {
                            name: attr.clone(),
                            ty: ColumnType::Text,
                            unique: false,
                            create_only: false,
                            keep_when_empty: true,
                            dn_reference: false,
                        },
                        source: Src::Const(Value::Null),
                        required: false,
                        default: None,
                        multi: false,
                    });
                }
                disable_bits.push((attr, m))
            }
            _ => checker.report(
                &at_bits,
                format!(
                    "'{mask}' is not a bit mask (a positive integer, e.g. 2 for ACCOUNTDISABLE)"
                ),
            ),
        }
    }
    // `initial`: what a flag attribute of `bits` holds when the entry is added (AD: 544,
    // NORMAL_ACCOUNT | PASSWD_NOTREQD), so the add carries it and the directory's own
    // default need not be read back and converged with a second write.
    let mut initial_bits = Vec::new();
    for (attr, value) in initial {
        let at_initial = format!("{at}.on_disable.initial.{attr}");
        if !disable_bits
            .iter()
            .any(|(a, _): &(String, u64)| a.eq_ignore_ascii_case(&attr))
        {
            checker.report(
                &at_initial,
                format!("'{attr}' is not under 'bits:'; initial gives the starting value of a flag attribute there"),
            );
            continue;
        }
        match value.trim().parse::<i64>() {
            Ok(n) if n >= 0 => initial_bits.push((attr, n)),
            _ => checker.report(
                &at_initial,
                format!("'{value}' is not a non-negative integer (e.g. 544)"),
            ),
        }
    }
    let disabled_parent = move_to.map(|p| match ldap_base {
        Some(base) => p.replace("{base}", base),
        None => p,
    });
    let drops_memberships = flag(
        checker,
        &format!("{at}.on_disable.remove_memberships"),
        remove_memberships.as_deref(),
    );
    if ldap_base.is_none() {
        for (given, name) in [
            (!disable_bits.is_empty(), "bits"),
            (disabled_parent.is_some(), "move_to"),
            (drops_memberships, "remove_memberships"),
        ] {
            if given {
                checker.report(
                    &format!("{at}.on_disable.{name}"),
                    format!("'{name}' is for an LDAP target; a SQLite mapping sets column values"),
                );
            }
        }
    } else if kind == ResourceKind::Group
        && (!disable_bits.is_empty() || disabled_parent.is_some() || drops_memberships)
    {
        checker.report(
            &format!("{at}.on_disable"),
            "groups are never disabled; bits, move_to and remove_memberships apply to users".into(),
        );
    }
    if archive_parent.is_some() && on_delete != DeletePolicy::Archive {
        checker.report(
            &format!("{at}.archive_to"),
            "archive_to applies to on_delete: archive only".into(),
        );
    }
    if kind == ResourceKind::Group && !on_disable.is_empty() && on_delete == DeletePolicy::Delete {
        checker.report(
            &format!("{at}.on_disable"),
            "groups are never disabled; on_disable applies with on_delete: disable or archive"
                .into(),
        );
    }
    // For an LDAP target, default groups are group DNs ({base} allowed).
    let default_groups: Vec<String> = raw
        .default_groups
        .unwrap_or_default()
        .into_iter()
        .map(|g| match ldap_base {
            Some(base) => g.replace("{base}", base),
            None => g,
        })
        .collect();
    if kind == ResourceKind::Group && !default_groups.is_empty() {
        checker.report(
            &format!("{at}.default_groups"),
            "default_groups belong to users".into(),
        );
    }
    if let Some(e) = &mut entry {
        e.attributes = columns.iter().map(|c| c.spec.clone()).collect();
        e.disable_bits = disable_bits;
        e.initial_bits = initial_bits;
        e.disable_drops_memberships = drops_memberships;
        for (i, name) in e.match_attrs.iter().enumerate() {
            if !e
                .attributes
                .iter()
                .any(|a| a.name.eq_ignore_ascii_case(name))
            {
                let known: Vec<&str> = e.attributes.iter().map(|a| a.name.as_str()).collect();
                let hint = super::locate::did_you_mean(name, known.iter().copied())
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                checker.report(
                    &format!("{at}.match[{i}]"),
                    format!("'{name}' is not a mapped attribute{hint}; match compares the values the mapping writes"),
                );
            }
        }
    }
    Compiled {
        map: ResourceMap {
            kind,
            table: TableSpec {
                name: table,
                key_column,
                columns: columns.iter().map(|c| c.spec.clone()).collect(),
                archive_column,
            },
            scope,
            columns,
            default_groups,
            on_disable,
            on_delete,
            purge_after,
            dn,
            disabled_parent,
            archive_parent,
        },
        entry,
    }
}
