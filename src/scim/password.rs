//! The `password` a provider sends (RFC 7643 §4.1.1: write-only, never returned). The
//! store never keeps it; when the mapping writes passwords, the engine takes it from the
//! request with these functions and hands it, sealed, to delivery.

use serde_json::{Map, Value};

use crate::scim::error::{ScimError, ScimResult};
use crate::scim::patch::{OpKind, Operation};
use crate::scim::schema::USER_URN;

/// Whether `key` names the core User's `password` (plain or URN-qualified).
fn is_password_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("password")
        || key
            .get(..USER_URN.len())
            .is_some_and(|urn| urn.eq_ignore_ascii_case(USER_URN))
            && key[USER_URN.len()..].eq_ignore_ascii_case(":password")
}

/// The password `value` gives: a non-empty string; `null` means none was sent.
fn password_value(value: &Value) -> ScimResult<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Err(ScimError::invalid_value(
            "password: an empty password cannot be set",
        )),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ScimError::invalid_value("password: must be a string")),
    }
}

/// The password in the members of `obj` (the last one named, should a body name it
/// twice in different spellings).
fn in_object(obj: &Map<String, Value>) -> ScimResult<Option<String>> {
    let mut found = None;
    for (key, value) in obj {
        if is_password_key(key)
            && let Some(p) = password_value(value)?
        {
            found = Some(p);
        }
    }
    Ok(found)
}

/// The password a POST or PUT body sets.
pub fn from_body(body: &Value) -> ScimResult<Option<String>> {
    match body {
        Value::Object(obj) => in_object(obj),
        _ => Ok(None),
    }
}

/// The password a PATCH sets: the value of the last `add`/`replace` whose path is
/// `password`, or whose value object (no path) holds one. A `remove` of the password is
/// no change: a directory password is replaced, never cleared by the provider.
pub fn from_patch(ops: &[Operation]) -> ScimResult<Option<String>> {
    let mut found = None;
    for op in ops {
        if op.op == OpKind::Remove {
            continue;
        }
        let Some(value) = &op.value else { continue };
        let set = match &op.path {
            Some(path) => {
                let named = match &path.attr.urn {
                    Some(urn) => urn.eq_ignore_ascii_case(USER_URN),
                    None => true,
                };
                if named
                    && path.attr.attr.eq_ignore_ascii_case("password")
                    && path.attr.sub_attr.is_none()
                    && path.filter.is_none()
                {
                    password_value(value)?
                } else {
                    None
                }
            }
            None => match value {
                Value::Object(obj) => in_object(obj)?,
                _ => None,
            },
        };
        if set.is_some() {
            found = set;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::patch::parse_request;

    fn patch(ops: Value) -> Option<String> {
        let body = json!({"schemas": [crate::scim::schema::PATCH_URN], "Operations": ops});
        from_patch(&parse_request(&body).expect("a valid PatchOp")).expect("a valid password")
    }

    #[test]
    fn a_post_body_password_is_found_in_any_case_and_urn_qualified() {
        assert_eq!(
            from_body(&json!({"userName": "a", "password": "P1!"})).unwrap(),
            Some("P1!".into())
        );
        assert_eq!(
            from_body(&json!({"PassWord": "P2!"})).unwrap(),
            Some("P2!".into())
        );
        assert_eq!(
            from_body(&json!({"urn:ietf:params:scim:schemas:core:2.0:User:password": "P3!"}))
                .unwrap(),
            Some("P3!".into())
        );
        assert_eq!(from_body(&json!({"userName": "a"})).unwrap(), None);
        assert_eq!(from_body(&json!({"password": null})).unwrap(), None);
    }

    #[test]
    fn a_password_that_is_not_a_non_empty_string_is_invalid() {
        for bad in [
            json!({"password": 12}),
            json!({"password": ""}),
            json!({"password": ["x"]}),
        ] {
            let e = from_body(&bad).expect_err("refused");
            assert_eq!(e.to_json()["scimType"], "invalidValue", "{bad}");
        }
    }

    #[test]
    fn patch_replace_with_path_password_sets_it() {
        assert_eq!(
            patch(json!([{"op": "replace", "path": "password", "value": "N3w!"}])),
            Some("N3w!".into())
        );
        assert_eq!(
            patch(
                json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:core:2.0:User:password", "value": "N4w!"}])
            ),
            Some("N4w!".into())
        );
    }

    #[test]
    fn patch_without_path_takes_the_password_from_the_value_object() {
        assert_eq!(
            patch(json!([{"op": "replace", "value": {"displayName": "A", "password": "V4l!"}}])),
            Some("V4l!".into())
        );
    }

    #[test]
    fn patch_takes_the_last_password_and_ignores_removes_and_other_paths() {
        assert_eq!(
            patch(json!([
                {"op": "replace", "path": "password", "value": "first"},
                {"op": "replace", "path": "displayName", "value": "password"},
                {"op": "replace", "path": "password", "value": "second"},
                {"op": "remove", "path": "password"}
            ])),
            Some("second".into())
        );
        assert_eq!(
            patch(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
            None
        );
    }
}
