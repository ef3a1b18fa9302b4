//! One regression test per bug found in review, named after the bug.

use serde_json::{Value, json};

use crate::harness::Daemon;

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_attribute_names_do_not_crash_the_handler() {
    let d = Daemon::start();
    let r = d
        .post("/Users", r#"{"userName":"x","abcé":1,"é":2,"ü":{"a":1}}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_in_a_path_id_is_a_scim_error() {
    let d = Daemon::start();
    let r = d.get("/Users/%FF").await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.media_type().as_deref(), Some("application/scim+json"));
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn post_keeps_one_element_per_type_and_one_primary() {
    let d = Daemon::start();
    let r = d
        .post(
            "/Users",
            &json!({"userName": "a", "emails": [
                {"type": "work", "value": "x@example.com", "primary": true},
                {"type": "work", "value": "y@example.com", "primary": true},
                {"type": "home", "value": "h@example.com", "primary": true}
            ]})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let emails = r.body["emails"].as_array().expect("emails");
    assert_eq!(emails.len(), 2, "{}", r.text);
    assert_eq!(emails.iter().filter(|e| e["type"] == "work").count(), 1);
    assert_eq!(
        emails.iter().filter(|e| e["primary"] == true).count(),
        1,
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn name_pr_tests_the_complex_attribute_itself() {
    let d = Daemon::start();
    d.post(
        "/Users",
        &json!({"userName": "named", "name": {"familyName": "F"}}).to_string(),
    )
    .await;
    d.post("/Users", &json!({"userName": "nameless"}).to_string())
        .await;
    let r = d.get("/Users?filter=name+pr").await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.text);
    let r = d.get("/Users?filter=not+(name+pr)").await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.text);
    let r = d.get("/Users?filter=groups.value+eq+%22x%22").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["scimType"], "invalidFilter");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_extension_urn_in_attributes_returns_the_whole_extension() {
    let d = Daemon::start();
    let r = d
        .post("/Users", &json!({"userName": "ext", "title": "T", ENTERPRISE: {"department": "D", "costCenter": "C"}}).to_string())
        .await;
    let uid = id(&r.body);
    let r = d
        .get(&format!("/Users/{uid}?attributes={ENTERPRISE}"))
        .await;
    assert_eq!(
        r.body[ENTERPRISE],
        json!({"department": "D", "costCenter": "C"}),
        "{}",
        r.text
    );
    assert!(r.body.get("title").is_none());
    let r = d
        .get(&format!("/Users/{uid}?excludedAttributes={ENTERPRISE}"))
        .await;
    assert!(r.body.get(ENTERPRISE).is_none(), "{}", r.text);
    assert_eq!(r.body["title"], "T");
}

#[tokio::test(flavor = "multi_thread")]
async fn excluding_the_only_sub_attribute_leaves_no_empty_object() {
    let d = Daemon::start();
    let r = d
        .post(
            "/Users",
            &json!({"userName": "f", "name": {"familyName": "F"}}).to_string(),
        )
        .await;
    let r = d
        .get(&format!(
            "/Users/{}?excludedAttributes=name.familyName",
            id(&r.body)
        ))
        .await;
    assert!(r.body.get("name").is_none(), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn group_cycles_are_refused() {
    let d = Daemon::start();
    let g1 = id(&d
        .post("/Groups", &json!({"displayName": "g1"}).to_string())
        .await
        .body);
    let g2 = d
        .post(
            "/Groups",
            &json!({"displayName": "g2", "members": [{"value": g1}]}).to_string(),
        )
        .await;
    assert_eq!(g2.status, 201, "{}", g2.text);
    let g2 = id(&g2.body);
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"value": g2}]}]})
    .to_string();
    let r = d.patch(&format!("/Groups/{g1}"), &patch).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["scimType"], "invalidValue");
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|s| s.contains("cycle")),
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_manager_clears_the_reference_of_the_users_it_managed() {
    let d = Daemon::start();
    let boss = id(&d
        .post("/Users", &json!({"userName": "boss"}).to_string())
        .await
        .body);
    let worker = d
        .post("/Users", &json!({"userName": "worker", ENTERPRISE: {"manager": {"value": boss}, "department": "D"}}).to_string())
        .await;
    let worker = id(&worker.body);
    assert_eq!(d.delete(&format!("/Users/{boss}")).await.status, 204);
    let r = d.get(&format!("/Users/{worker}")).await;
    assert!(r.body[ENTERPRISE].get("manager").is_none(), "{}", r.text);
    assert_eq!(r.body[ENTERPRISE]["department"], "D");
    assert_eq!(r.body["meta"]["version"], "W/\"2\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_a_role_that_exists_merges_instead_of_dropping_its_other_fields() {
    let d = Daemon::start();
    let r = d
        .post("/Users", &json!({"userName": "r", "roles": [{"value": "User", "type": "WindowsAzureActiveDirectoryRole", "primary": false}]}).to_string())
        .await;
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "roles", "value": [{"value": "User", "display": "User"}]}]})
    .to_string();
    let r = d.patch(&format!("/Users/{}", id(&r.body)), &patch).await;
    assert_eq!(
        r.body["roles"],
        json!([{"value": "User", "display": "User", "type": "WindowsAzureActiveDirectoryRole", "primary": false}]),
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_members_to_a_large_group_checks_only_the_new_ones() {
    let d = Daemon::start();
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(id(&d
            .post("/Users", &json!({"userName": format!("m{i}")}).to_string())
            .await
            .body));
    }
    let members: Vec<Value> = ids[..299].iter().map(|i| json!({"value": i})).collect();
    let g = d
        .post(
            "/Groups",
            &json!({"displayName": "big", "members": members}).to_string(),
        )
        .await;
    assert_eq!(g.status, 201, "{}", g.text);
    let gid = id(&g.body);
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"value": ids[299]}, {"value": ids[0]}]}]})
    .to_string();
    assert_eq!(d.patch(&format!("/Groups/{gid}"), &patch).await.status, 204);
    let r = d.get(&format!("/Groups/{gid}")).await;
    assert_eq!(r.body["members"].as_array().map(Vec::len), Some(300));
    assert_eq!(r.body["members"][299]["type"], "User");
}
