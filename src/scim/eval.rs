//! Filter evaluation against canonical resource documents (RFC 7644 §3.4.2.2 semantics).
//!
//! One evaluator serves both list queries (the state store calls it as an SQL function,
//! after narrowing by index) and PATCH value paths, so a filter means the same thing
//! everywhere. Comparison follows the schema: `caseExact: false` strings compare
//! case-insensitively, date-times chronologically, booleans accept `"True"`/`"False"`.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::scim::error::{ScimError, ScimResult};
use crate::scim::filter::{CompValue, CompareOp, Filter, Test};
use crate::scim::path::AttrPath;
use crate::scim::resource::{fold, parse_datetime, resolve};
use crate::scim::schema::{AttrDef, AttrType, ResourceKind};

/// Where the attribute paths of a filter are resolved: at the top of a resource, or
/// inside one element of a multi-valued complex attribute (`emails[type eq "work"]`).
#[derive(Clone, Copy)]
enum Scope {
    Resource(ResourceKind),
    Element(&'static AttrDef),
}

/// Whether the resource matches the filter.
pub fn matches(kind: ResourceKind, filter: &Filter, doc: &Map<String, Value>) -> bool {
    eval(Scope::Resource(kind), filter, doc)
}

/// Whether one element of the multi-valued attribute `parent` matches a value filter.
pub fn matches_element(
    parent: &'static AttrDef,
    filter: &Filter,
    element: &Map<String, Value>,
) -> bool {
    eval(Scope::Element(parent), filter, element)
}

/// Rejects filters that are well-formed but meaningless for the schema: ordering
/// comparisons on booleans or on complex attributes (RFC 7644 §3.4.2.2: 400 invalidFilter).
pub fn check(kind: ResourceKind, filter: &Filter) -> ScimResult<()> {
    check_scope(Scope::Resource(kind), filter)
}

fn check_scope(scope: Scope, filter: &Filter) -> ScimResult<()> {
    match filter {
        Filter::Attr { path, test } => {
            if let Scope::Resource(ResourceKind::User) = scope
                && resolve_scope(scope, path).is_some_and(|d| d.name == "groups")
            {
                // A user's groups are derived from group membership, not stored with
                // the user: say so rather than silently match nothing.
                return Err(ScimError::invalid_filter(format!(
                    "{path}: Users cannot be filtered by groups; filter Groups by members.value instead"
                )));
            }
            if let Test::Compare(op, _) = test {
                match leaf_def(scope, path) {
                    Some(def) => check_op(def, *op, &path.to_string())?,
                    None if resolve_scope(scope, path).is_some_and(|d| d.is_complex())
                        && path.sub_attr.is_none() =>
                    {
                        return Err(ScimError::invalid_filter(format!(
                            "{path}: a complex attribute without a 'value' can only be tested with 'pr'; compare one of its sub-attributes"
                        )));
                    }
                    None => {}
                }
            }
            Ok(())
        }
        Filter::ValuePath { attr, filter, sub } => {
            let Some(target) = resolve_scope(scope, attr) else {
                return Ok(());
            };
            if !target.is_complex() {
                return Err(ScimError::invalid_filter(format!(
                    "{attr}: a value filter [...] needs a complex attribute"
                )));
            }
            check_scope(Scope::Element(target), filter)?;
            if let Some((name, Test::Compare(op, _))) = sub
                && let Some(def) = target.sub_attr(name)
            {
                check_op(def, *op, &format!("{attr}.{name}"))?;
            }
            Ok(())
        }
        Filter::Not(inner) => check_scope(scope, inner),
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_scope(scope, a)?;
            check_scope(scope, b)
        }
    }
}

fn check_op(def: &AttrDef, op: CompareOp, at: &str) -> ScimResult<()> {
    let ordering = matches!(
        op,
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
    );
    if ordering
        && matches!(
            def.ty,
            AttrType::Boolean | AttrType::Binary | AttrType::Complex
        )
    {
        return Err(ScimError::invalid_filter(format!(
            "{at}: '{op}' cannot order a {} attribute",
            match def.ty {
                AttrType::Boolean => "boolean",
                AttrType::Binary => "binary",
                _ => "complex",
            }
        )));
    }
    Ok(())
}

fn resolve_scope(scope: Scope, path: &AttrPath) -> Option<&'static AttrDef> {
    match scope {
        Scope::Resource(kind) => resolve(kind, path).map(|t| t.def),
        Scope::Element(parent) => parent.sub_attr(&path.attr),
    }
}

/// The definition that compared values obey: the sub-attribute when one is named, the
/// `value` sub-attribute of a complex attribute, else the attribute itself.
fn leaf_def(scope: Scope, path: &AttrPath) -> Option<&'static AttrDef> {
    let def = resolve_scope(scope, path)?;
    match &path.sub_attr {
        Some(sub) => def.sub_attr(sub),
        None if def.is_complex() => def.sub_attr("value"),
        None => Some(def),
    }
}

fn holder<'a>(
    scope: Scope,
    path: &AttrPath,
    doc: &'a Map<String, Value>,
) -> Option<(&'static AttrDef, &'a Value)> {
    match scope {
        Scope::Resource(kind) => {
            let target = resolve(kind, path)?;
            Some((target.def, target.get(doc)?))
        }
        Scope::Element(parent) => {
            let def = parent.sub_attr(&path.attr)?;
            Some((def, doc.get(def.name)?))
        }
    }
}

/// The values an attribute path denotes in a document (a multi-valued attribute
/// contributes one value per element).
fn values<'a>(scope: Scope, path: &AttrPath, doc: &'a Map<String, Value>) -> Vec<&'a Value> {
    let Some((def, value)) = holder(scope, path, doc) else {
        return Vec::new();
    };
    let sub = match &path.sub_attr {
        Some(sub) => match def.sub_attr(sub) {
            Some(d) => Some(d.name),
            None => return Vec::new(),
        },
        // A complex attribute compares by its `value`; one without (`name`, `addresses`)
        // stands for itself, so `name pr` tests the attribute.
        None if def.is_complex() && def.sub_attr("value").is_some() => Some("value"),
        None => None,
    };
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    };
    match sub {
        None => items,
        Some(sub) => items
            .into_iter()
            .filter_map(|item| item.as_object()?.get(sub))
            .collect(),
    }
}

fn eval(scope: Scope, filter: &Filter, doc: &Map<String, Value>) -> bool {
    match filter {
        Filter::Attr { path, test } => {
            let def = leaf_def(scope, path);
            test_values(def, &values(scope, path, doc), test)
        }
        Filter::ValuePath { attr, filter, sub } => {
            let Some((def, value)) = holder(scope, attr, doc) else {
                return match sub {
                    Some((_, test)) => test_values(None, &[], test),
                    None => false,
                };
            };
            let elements: Vec<&Map<String, Value>> = match value {
                Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
                Value::Object(m) => vec![m],
                _ => Vec::new(),
            };
            let matched = elements
                .into_iter()
                .filter(|e| eval(Scope::Element(def), filter, e));
            match sub {
                None => matched.count() > 0,
                Some((name, test)) => {
                    let sub_def = def.sub_attr(name);
                    let vals: Vec<&Value> = match sub_def {
                        Some(d) => matched.filter_map(|e| e.get(d.name)).collect(),
                        None => Vec::new(),
                    };
                    test_values(sub_def, &vals, test)
                }
            }
        }
        Filter::Not(inner) => !eval(scope, inner, doc),
        Filter::And(a, b) => eval(scope, a, doc) && eval(scope, b, doc),
        Filter::Or(a, b) => eval(scope, a, doc) || eval(scope, b, doc),
    }
}

fn test_values(def: Option<&AttrDef>, vals: &[&Value], test: &Test) -> bool {
    match test {
        Test::Present => vals.iter().any(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        }),
        Test::Compare(CompareOp::Eq, CompValue::Null) => vals.is_empty(),
        Test::Compare(CompareOp::Ne, CompValue::Null) => !vals.is_empty(),
        Test::Compare(CompareOp::Ne, comp) => {
            !vals.iter().any(|v| compare(def, v, CompareOp::Eq, comp))
        }
        Test::Compare(op, comp) => vals.iter().any(|v| compare(def, v, *op, comp)),
    }
}

fn compare(def: Option<&AttrDef>, value: &Value, op: CompareOp, comp: &CompValue) -> bool {
    match value {
        Value::String(s) => {
            let text = match comp {
                CompValue::Str(c) => c.clone(),
                CompValue::Num(n) => n.to_string(),
                CompValue::Bool(b) => b.to_string(),
                CompValue::Null => return false,
            };
            if def.is_some_and(|d| d.ty == AttrType::DateTime)
                && let (Some(a), Some(b)) = (parse_datetime(s), parse_datetime(&text))
            {
                return order_matches(op, a.cmp(&b)) || substring_op(op, s, &text);
            }
            let case_exact = def.is_some_and(|d| d.case_exact);
            let (a, b) = if case_exact {
                (s.clone(), text)
            } else {
                (fold(s), fold(&text))
            };
            substring_op(op, &a, &b) || order_matches(op, a.as_str().cmp(b.as_str()))
        }
        Value::Bool(b) => {
            let c = match comp {
                CompValue::Bool(c) => *c,
                CompValue::Str(s) if s.eq_ignore_ascii_case("true") => true,
                CompValue::Str(s) if s.eq_ignore_ascii_case("false") => false,
                _ => return false,
            };
            op == CompareOp::Eq && *b == c
        }
        Value::Number(n) => {
            let c = match comp {
                CompValue::Num(c) => c.as_f64(),
                CompValue::Str(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match (n.as_f64(), c) {
                (Some(a), Some(b)) => a.partial_cmp(&b).is_some_and(|o| order_matches(op, o)),
                _ => false,
            }
        }
        _ => false,
    }
}

fn substring_op(op: CompareOp, a: &str, b: &str) -> bool {
    match op {
        CompareOp::Co => a.contains(b),
        CompareOp::Sw => a.starts_with(b),
        CompareOp::Ew => a.ends_with(b),
        _ => false,
    }
}

fn order_matches(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Ne | CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::filter::parse_filter;
    use serde_json::json;

    fn doc() -> Map<String, Value> {
        json!({
            "id": "2819c223",
            "externalId": "Ext-1",
            "userName": "Bjensen@Example.com",
            "name": {"familyName": "Employee", "givenName": "Barbara"},
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "m1"}},
            "meta": {"created": "2026-01-01T10:00:00.000Z", "lastModified": "2026-01-02T10:00:00Z", "resourceType": "User"}
        })
        .as_object()
        .cloned()
        .expect("object")
    }

    fn hit(filter: &str) -> bool {
        let f = parse_filter(filter).expect("parses");
        check(ResourceKind::User, &f).expect("valid");
        matches(ResourceKind::User, &f, &doc())
    }

    #[test]
    fn username_compares_case_insensitively_but_external_id_exactly() {
        assert!(hit(r#"userName eq "bjensen@example.com""#));
        assert!(hit(r#"USERNAME Eq "BJENSEN@EXAMPLE.COM""#));
        assert!(hit(r#"externalId eq "Ext-1""#));
        assert!(!hit(r#"externalId eq "ext-1""#));
        assert!(!hit(r#"id eq "2819C223""#));
    }

    #[test]
    fn value_path_with_sub_attribute_selects_the_typed_element() {
        assert!(hit(
            r#"emails[type eq "work"].value eq "bjensen@example.com""#
        ));
        assert!(!hit(
            r#"emails[type eq "home"].value eq "bjensen@example.com""#
        ));
        assert!(hit(r#"emails[type eq "work" and primary eq true]"#));
        assert!(hit(r#"emails[type eq "work" and primary eq "True"]"#));
    }

    #[test]
    fn multi_valued_attribute_matches_when_any_value_matches() {
        assert!(hit(r#"emails co "jensen.org""#));
        assert!(hit(r#"emails.value ew "example.com""#));
        assert!(hit(
            r#"name.FamilyName eq Employee and (emails.Value co example.com or emails.Value co example.org)"#
        ));
    }

    #[test]
    fn date_times_compare_chronologically_across_offsets() {
        assert!(hit("meta.Created gt 2015-10-10T14:38:21.8617979-07:00"));
        assert!(hit(r#"meta.created eq "2026-01-01T11:00:00+01:00""#));
        assert!(!hit(r#"meta.lastModified lt "2026-01-01T00:00:00Z""#));
    }

    #[test]
    fn extension_attributes_match_with_or_without_urn() {
        assert!(hit(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#
        ));
        assert!(hit(r#"employeeNumber sw "70""#));
        assert!(hit(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1""#
        ));
    }

    #[test]
    fn presence_negation_and_inequality() {
        assert!(!hit("title pr"));
        assert!(hit("not (title pr)"));
        assert!(hit(r#"userName ne "someone""#));
        assert!(hit("active eq true"));
        assert!(!hit("active eq false"));
        assert!(hit(r#"userName gt "a" and userName lt "c""#));
    }

    #[test]
    fn ordering_a_boolean_is_an_invalid_filter() {
        let f = parse_filter("active gt true").expect("parses");
        let err = check(ResourceKind::User, &f).expect_err("invalid");
        assert_eq!(
            err.scim_type,
            Some(crate::scim::error::ScimType::InvalidFilter)
        );
    }

    #[test]
    fn presence_of_a_complex_attribute_without_value_tests_the_attribute_itself() {
        assert!(hit("name pr"));
        assert!(!hit("addresses pr"));
        assert!(!hit("not (name pr)"));
        let f = parse_filter(r#"name eq "x""#).expect("parses");
        assert!(check(ResourceKind::User, &f).is_err());
    }

    #[test]
    fn filtering_users_by_groups_is_refused_not_silently_empty() {
        let f = parse_filter(r#"groups.value eq "g1""#).expect("parses");
        let err = check(ResourceKind::User, &f).expect_err("refused");
        assert!(err.detail.contains("members.value"), "{}", err.detail);
    }

    #[test]
    fn unknown_attributes_match_nothing() {
        assert!(!hit(r#"nosuch eq "x""#));
    }
}
