//! PATCH engine specification, one behaviour per test (checklist numbers refer to
//! shared/entra/behaviour.md §6).

use super::*;
use crate::scim::schema::ENTERPRISE_URN;
use proptest::prelude::*;
use serde_json::json;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

fn patch(kind: ResourceKind, doc: Value, body: Value) -> ScimResult<Value> {
    let ops = parse_request(&body)?;
    apply(kind, &obj(doc), &ops).map(Value::Object)
}

fn ops(list: Value) -> Value {
    json!({"schemas": [PATCH_URN], "Operations": list})
}

fn user() -> Value {
    json!({
        "userName": "u@example.com",
        "name": {"givenName": "Given", "familyName": "Family", "formatted": "Given Family"},
        "active": true,
        "emails": [{"value": "w@example.com", "type": "work", "primary": true}, {"value": "h@example.com", "type": "home"}]
    })
}

fn user_patch(list: Value) -> Value {
    patch(ResourceKind::User, user(), ops(list)).expect("patch applies")
}

#[test]
fn op_names_match_in_any_case() {
    // checklist 7
    for name in ["Replace", "replace", "REPLACE"] {
        let out = user_patch(json!([{"op": name, "path": "title", "value": "Boss"}]));
        assert_eq!(out["title"], "Boss");
    }
}

#[test]
fn string_booleans_are_stored_as_booleans() {
    // checklist 8
    for (v, expected) in [
        (json!("False"), false),
        (json!("false"), false),
        (json!(false), false),
        (json!("True"), true),
    ] {
        let out = user_patch(json!([{"op": "Replace", "path": "active", "value": v}]));
        assert_eq!(out["active"], json!(expected));
    }
}

#[test]
fn pathless_value_with_dotted_keys_updates_sub_attributes() {
    // checklist 9
    let out = user_patch(
        json!([{"op": "replace", "value": {"name.givenName": "Kkom", "name.familyName": "Unua", "displayName": "Bjfe"}}]),
    );
    assert_eq!(
        out["name"],
        json!({"givenName": "Kkom", "familyName": "Unua", "formatted": "Given Family"})
    );
    assert_eq!(out["displayName"], "Bjfe");
    assert!(out.get("name.givenName").is_none());
}

#[test]
fn pathless_value_with_urn_prefixed_keys_updates_the_extension() {
    // checklist 10
    let out = user_patch(json!([{"op": "replace", "value": {
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Aklq"
    }}]));
    assert_eq!(out[ENTERPRISE_URN]["employeeNumber"], "Aklq");
}

#[test]
fn pathless_add_replaces_single_valued_attributes() {
    // checklist 11
    let doc = json!({"userName": "a", "title": "Old"});
    let out = patch(
        ResourceKind::User,
        doc,
        ops(json!([{"op": "add", "value": {"title": "New", "name.formatted": "F"}}])),
    )
    .expect("applies");
    assert_eq!(out["title"], "New");
    assert_eq!(out["name"]["formatted"], "F");
}

#[test]
fn enterprise_urn_paths_work_for_add_and_replace() {
    // checklist 12
    for attr in [
        "department",
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
    ] {
        for op in ["Add", "Replace"] {
            let out = user_patch(
                json!([{"op": op, "path": format!("{ENTERPRISE_URN}:{attr}"), "value": "V"}]),
            );
            assert_eq!(out[ENTERPRISE_URN][attr], "V");
        }
    }
}

#[test]
fn replace_on_typed_value_path_updates_that_type_only() {
    // checklist 13
    let out = user_patch(
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@example.com"}]),
    );
    assert_eq!(
        out["emails"],
        json!([{"value": "new@example.com", "type": "work", "primary": true}, {"value": "h@example.com", "type": "home"}])
    );
}

#[test]
fn replace_on_typed_value_path_creates_the_element_when_missing() {
    // checklist 13
    let out = user_patch(json!([
        {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"},
        {"op": "Add", "path": "addresses[type eq \"work\"].formatted", "value": "18/2111"}
    ]));
    assert_eq!(
        out["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1 555"}])
    );
    assert_eq!(
        out["addresses"],
        json!([{"type": "work", "formatted": "18/2111"}])
    );
}

#[test]
fn add_of_an_existing_type_replaces_that_element() {
    // checklist 14
    let out = user_patch(
        json!([{"op": "Add", "path": "emails", "value": [{"type": "work", "value": "x@example.com"}]}]),
    );
    let emails = out["emails"].as_array().expect("array");
    assert_eq!(emails.len(), 2);
    assert_eq!(emails.iter().filter(|e| e["type"] == "work").count(), 1);
    assert_eq!(emails[0]["value"], "x@example.com");
}

#[test]
fn manager_accepts_all_forms_and_empty_forms_remove_it() {
    // checklist 15
    let set_forms = [
        json!({"op": "Add", "path": "manager", "value": [{"$ref": "http://x/Users/m1", "value": "m1"}]}),
        json!({"op": "add", "path": format!("{ENTERPRISE_URN}:manager"), "value": "m1"}),
        json!({"op": "replace", "path": format!("{ENTERPRISE_URN}:manager"), "value": {"value": "m1"}}),
        json!({"op": "replace", "path": format!("{ENTERPRISE_URN}:manager.value"), "value": "m1"}),
    ];
    for form in set_forms {
        let out = user_patch(json!([form]));
        assert_eq!(
            out[ENTERPRISE_URN]["manager"],
            json!({"value": "m1"}),
            "{form}"
        );
    }
    let managed = user_patch(
        json!([{"op": "add", "path": format!("{ENTERPRISE_URN}:manager"), "value": "m1"}]),
    );
    let clear_forms = [
        json!({"op": "Replace", "path": format!("{ENTERPRISE_URN}:manager"), "value": ""}),
        json!({"op": "Replace", "path": format!("{ENTERPRISE_URN}:manager"), "value": null}),
        json!({"op": "Replace", "path": format!("{ENTERPRISE_URN}:manager"), "value": {"value": ""}}),
        json!({"op": "Remove", "path": format!("{ENTERPRISE_URN}:manager")}),
        json!({"op": "Remove", "path": "manager"}),
    ];
    for form in clear_forms {
        let out = patch(
            ResourceKind::User,
            managed.clone(),
            ops(json!([form.clone()])),
        )
        .expect("applies");
        assert!(out.get(ENTERPRISE_URN).is_none(), "{form} left {out}");
    }
}

fn group() -> Value {
    json!({"displayName": "g", "members": [{"value": "a"}, {"value": "b"}, {"value": "c"}]})
}

fn group_patch(list: Value) -> Value {
    patch(ResourceKind::Group, group(), ops(list)).expect("patch applies")
}

fn member_ids(doc: &Value) -> Vec<&str> {
    doc.get("members")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(|x| x["value"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn add_members_with_an_array_adds_all_idempotently() {
    // checklist 16
    let out = group_patch(json!([{"op": "Add", "path": "members", "value": [
        {"$ref": null, "value": "d"}, {"value": "a", "display": "A"}, {"value": "e"}, {"value": "d"}
    ]}]));
    assert_eq!(member_ids(&out), ["a", "b", "c", "d", "e"]);
    assert!(out["members"][3].get("$ref").is_none());
}

#[test]
fn patch_remove_with_value_array_removes_only_listed_members() {
    // checklist 17
    let out = group_patch(
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "b"}]}]),
    );
    assert_eq!(member_ids(&out), ["a", "c"]);
}

#[test]
fn remove_with_member_value_filter_removes_that_member() {
    // checklist 18
    let out = group_patch(json!([{"op": "remove", "path": "members[value eq \"c\"]"}]));
    assert_eq!(member_ids(&out), ["a", "b"]);
}

#[test]
fn remove_members_without_value_removes_all() {
    // checklist 19
    let out = group_patch(json!([{"op": "remove", "path": "members"}]));
    assert!(out.get("members").is_none());
}

#[test]
fn empty_string_and_null_clear_optional_attributes() {
    let doc = json!({"userName": "a", "title": "T", "nickName": "N"});
    let out = patch(
        ResourceKind::User,
        doc,
        ops(json!([
            {"op": "Replace", "path": "title", "value": ""},
            {"op": "Replace", "path": "nickName", "value": null}
        ])),
    )
    .expect("applies");
    assert_eq!(out, json!({"userName": "a"}));
}

#[test]
fn roles_add_parses_json_encoded_values_and_replace_sets_the_whole_list() {
    // checklist 30
    let out = user_patch(
        json!([{"op": "Add", "path": "roles", "value": [{"value": "{\"id\":\"06b0\",\"value\":\"25\",\"displayName\":\"Role1234\"}"}]}]),
    );
    assert_eq!(
        out["roles"],
        json!([{"value": "25", "display": "Role1234"}])
    );
    let replaced = patch(ResourceKind::User, out, ops(json!([{"op": "replace", "path": "roles", "value": [
        {"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": "User", "value": "User"},
        {"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": "Test", "value": "Test"}
    ]}]))).expect("applies");
    assert_eq!(replaced["roles"].as_array().map(Vec::len), Some(2));
    assert_eq!(replaced["roles"][1]["value"], "Test");
}

#[test]
fn value_path_filter_accepts_string_booleans() {
    // checklist 31
    let doc = json!({"userName": "a", "roles": [{"primary": true, "value": "Admin"}]});
    let out = patch(
        ResourceKind::User,
        doc,
        ops(
            json!([{"op": "replace", "path": "roles[primary eq \"True\"].value", "value": "User"}]),
        ),
    )
    .expect("applies");
    assert_eq!(out["roles"], json!([{"primary": true, "value": "User"}]));
}

#[test]
fn operations_apply_in_order() {
    // checklist 41
    let out = user_patch(json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "AdeleV2@example.com"},
        {"op": "Replace", "path": "addresses[type eq \"work\"].formatted", "value": "18/2111"},
        {"op": "Add", "path": format!("{ENTERPRISE_URN}:department"), "value": "Retail"},
        {"op": "Replace", "path": "title", "value": "one"},
        {"op": "Replace", "path": "title", "value": "two"}
    ]));
    assert_eq!(out["title"], "two");
    assert_eq!(out[ENTERPRISE_URN]["department"], "Retail");
}

#[test]
fn remove_without_path_is_no_target() {
    let err = patch(ResourceKind::User, user(), ops(json!([{"op": "remove"}]))).expect_err("fails");
    assert_eq!(err.scim_type, Some(crate::scim::error::ScimType::NoTarget));
}

#[test]
fn malformed_path_is_invalid_path() {
    let err = patch(
        ResourceKind::User,
        user(),
        ops(json!([{"op": "replace", "path": "emails[type eq", "value": "x"}])),
    )
    .expect_err("fails");
    assert_eq!(
        err.scim_type,
        Some(crate::scim::error::ScimType::InvalidPath)
    );
}

#[test]
fn read_only_attributes_cannot_be_patched_by_path() {
    let err = patch(
        ResourceKind::User,
        user(),
        ops(json!([{"op": "replace", "path": "id", "value": "x"}])),
    )
    .expect_err("fails");
    assert_eq!(
        err.scim_type,
        Some(crate::scim::error::ScimType::Mutability)
    );
    // …but a path-less value carrying `id` (Okta's group rename) ignores it.
    let out = patch(
        ResourceKind::Group,
        group(),
        ops(json!([{"op": "replace", "value": {"id": "x", "displayName": "new"}}])),
    )
    .expect("applies");
    assert_eq!(out["displayName"], "new");
    assert!(out.get("id").is_none());
}

#[test]
fn unknown_op_and_missing_operations_are_invalid_syntax() {
    for body in [
        json!({"schemas": [PATCH_URN], "Operations": [{"op": "move", "path": "title"}]}),
        json!({"schemas": [PATCH_URN]}),
        json!({"schemas": [PATCH_URN], "Operations": []}),
        json!({"schemas": ["urn:wrong"], "Operations": [{"op": "add", "path": "title", "value": "x"}]}),
        json!([1, 2]),
    ] {
        let err = parse_request(&body).expect_err("invalid");
        assert_eq!(err.status, 400, "{body}");
    }
}

#[test]
fn unknown_attributes_are_ignored() {
    let out = user_patch(
        json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:custom:2.0:User:x", "value": "1"}, {"op": "replace", "path": "nosuch", "value": "1"}]),
    );
    assert_eq!(out, Value::Object(obj(user())));
}

#[test]
fn type_errors_are_invalid_value() {
    let err = patch(
        ResourceKind::User,
        user(),
        ops(json!([{"op": "replace", "path": "active", "value": "maybe"}])),
    )
    .expect_err("fails");
    assert_eq!(
        err.scim_type,
        Some(crate::scim::error::ScimType::InvalidValue)
    );
    assert!(err.detail.starts_with("Operations[0]:"), "{}", err.detail);
}

#[test]
fn filter_on_a_single_valued_attribute_is_invalid_path() {
    let err = patch(
        ResourceKind::User,
        user(),
        ops(
            json!([{"op": "replace", "path": "name[givenName eq \"x\"].familyName", "value": "y"}]),
        ),
    )
    .expect_err("fails");
    assert_eq!(
        err.scim_type,
        Some(crate::scim::error::ScimType::InvalidPath)
    );
}

#[test]
fn new_primary_value_clears_the_previous_primary() {
    let out = user_patch(
        json!([{"op": "add", "path": "emails", "value": [{"type": "other", "value": "o@example.com", "primary": true}]}]),
    );
    let primaries: Vec<_> = out["emails"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["primary"] == true)
        .collect();
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0]["type"], "other");
}

fn arb_op() -> impl Strategy<Value = Value> {
    let paths = prop::sample::select(vec![
        "title",
        "nickName",
        "active",
        "name.givenName",
        "emails",
        "emails[type eq \"work\"].value",
        "phoneNumbers[type eq \"mobile\"].value",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "roles",
        "members",
        "displayName",
        "addresses[type eq \"work\"].formatted",
    ]);
    let values = prop::sample::select(vec![
        json!("x"),
        json!(""),
        Value::Null,
        json!(true),
        json!("False"),
        json!([{"value": "v", "type": "work"}]),
        json!({"value": "m"}),
        json!(3),
    ]);
    let ops = prop::sample::select(vec!["add", "Replace", "remove"]);
    (ops, paths, values)
        .prop_map(|(op, path, value)| json!({"op": op, "path": path, "value": value}))
}

proptest! {
    /// A request whose last operation fails yields an error, whatever came before it, and
    /// the input document is never modified: the caller keeps the resource as it was.
    #[test]
    fn a_failing_patch_leaves_the_resource_unchanged(list in prop::collection::vec(arb_op(), 0..8)) {
        let before = obj(user());
        let mut all = list.clone();
        all.push(json!({"op": "replace", "path": "id", "value": "x"}));
        let parsed = parse_request(&ops(Value::Array(all))).expect("parses");
        let snapshot = before.clone();
        prop_assert!(apply(ResourceKind::User, &before, &parsed).is_err());
        prop_assert_eq!(before, snapshot);
    }

    /// Applying the same request twice gives the same document as applying it once when
    /// every operation is a replace (replace is idempotent).
    #[test]
    fn replace_only_requests_are_idempotent(list in prop::collection::vec(arb_op(), 1..6)) {
        let list: Vec<Value> = list.into_iter().map(|mut o| { o["op"] = json!("replace"); o }).collect();
        let Ok(parsed) = parse_request(&ops(Value::Array(list))) else { return Ok(()) };
        let doc = obj(user());
        if let Ok(once) = apply(ResourceKind::User, &doc, &parsed) {
            let twice = apply(ResourceKind::User, &once, &parsed).expect("second apply");
            prop_assert_eq!(once, twice);
        }
    }
}

fn split(list: Value) -> Option<(Vec<Operation>, Vec<MemberOp>)> {
    let ops = parse_request(&ops(list)).expect("parses");
    split_member_ops(&ops).expect("splits")
}

#[test]
fn member_adds_and_listed_removes_split_into_a_member_delta() {
    let (rest, members) = split(json!([
        {"op": "Add", "path": "members", "value": [{"value": "a"}, {"value": "b", "display": "B"}]},
        {"op": "Replace", "path": "displayName", "value": "New"},
        {"op": "Remove", "path": "members", "value": [{"value": "c"}]},
        {"op": "Remove", "path": "members[value eq \"d\" or value eq \"e\"]"},
        {"op": "add", "value": {"members": [{"value": "f"}], "externalId": "x"}}
    ]))
    .expect("a delta");
    assert_eq!(rest.len(), 2, "displayName and the path-less externalId");
    assert_eq!(rest[1].value, Some(json!({"externalId": "x"})));
    assert_eq!(
        members,
        vec![
            MemberOp::Add(vec![
                json!({"value": "a"}),
                json!({"value": "b", "display": "B"})
            ]),
            MemberOp::Remove(vec!["c".into()]),
            MemberOp::Remove(vec!["d".into(), "e".into()]),
            MemberOp::Add(vec![json!({"value": "f"})]),
        ]
    );
}

#[test]
fn operations_that_need_the_whole_member_list_are_not_split() {
    for list in [
        json!([{"op": "Replace", "path": "members", "value": [{"value": "a"}]}]),
        json!([{"op": "Remove", "path": "members"}]),
        json!([{"op": "Remove", "path": "members[display eq \"A\"]"}]),
        json!([{"op": "Replace", "path": "members[value eq \"a\"].display", "value": "A"}]),
        json!([{"op": "Replace", "value": {"members": [{"value": "a"}]}}]),
    ] {
        assert!(split(list.clone()).is_none(), "{list}");
    }
}

#[test]
fn a_member_without_a_value_adds_nothing_as_in_the_whole_document_engine() {
    let (_, members) = split(json!([
        {"op": "Add", "path": "members", "value": [{"display": "no id"}]}
    ]))
    .expect("a delta");
    assert_eq!(members, vec![MemberOp::Add(Vec::new())]);
    let whole = patch(
        ResourceKind::Group,
        json!({"displayName": "G"}),
        ops(json!([{"op": "Add", "path": "members", "value": [{"display": "no id"}]}])),
    )
    .expect("applies");
    assert!(whole.get("members").is_none(), "{whole}");
}
