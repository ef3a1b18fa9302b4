//! SCIM protocol behaviour beyond Entra's replay: errors, preconditions, paging, sorting,
//! searching, projections, content negotiation and referential integrity.

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, IF_MATCH, IF_NONE_MATCH};
use serde_json::{Value, json};

use crate::harness::{Daemon, send};

async fn create_user(d: &Daemon, user_name: &str) -> Value {
    let r = d
        .post(
            "/Users",
            &json!({"userName": user_name, "active": true}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

fn assert_scim_error(r: &crate::harness::Resp, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.media_type().as_deref(), Some("application/scim+json"));
    assert_eq!(
        r.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(r.body["status"], json!(status.to_string()));
    assert!(
        r.body["detail"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        r.text
    );
    match scim_type {
        Some(t) => assert_eq!(r.body["scimType"], t, "{}", r.text),
        None => assert!(r.body.get("scimType").is_none(), "{}", r.text),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_invalid_syntax_and_changes_nothing() {
    let d = Daemon::start();
    let r = d.post("/Users", r#"{"userName": "a",, }"#).await;
    assert_scim_error(&r, 400, Some("invalidSyntax"));
    let r = d.post("/Users", "").await;
    assert_scim_error(&r, 400, Some("invalidSyntax"));
    let r = d.post("/Users", r#"["not", "an", "object"]"#).await;
    assert_scim_error(&r, 400, Some("invalidSyntax"));
    let list = d.get("/Users").await;
    assert_eq!(list.body["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_the_configured_limit_is_413() {
    let d = Daemon::start_with("server:\n  max_body_bytes: 2048\n");
    let big = json!({"userName": "a", "title": "x".repeat(4096)}).to_string();
    let r = d.post("/Users", &big).await;
    assert_scim_error(&r, 413, None);
    let small = json!({"userName": "a", "title": "x".repeat(100)}).to_string();
    assert_eq!(d.post("/Users", &small).await.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_content_type_is_415_and_json_variants_are_accepted() {
    let d = Daemon::start();
    let body = json!({"userName": "ct"}).to_string();
    let r = send(
        d.request(Method::POST, "/Users")
            .header(CONTENT_TYPE, "text/plain")
            .body(body.clone()),
    )
    .await;
    assert_scim_error(&r, 415, None);
    for (i, ct) in [
        "application/json",
        "application/scim+json; charset=utf-8",
        "application/json; charset=UTF-8",
    ]
    .iter()
    .enumerate()
    {
        let body = json!({"userName": format!("ct{i}")}).to_string();
        let r = send(
            d.request(Method::POST, "/Users")
                .header(CONTENT_TYPE, *ct)
                .body(body),
        )
        .await;
        assert_eq!(r.status, 201, "{ct}: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_mismatch_is_412_and_leaves_the_resource_unchanged() {
    let d = Daemon::start();
    let user = create_user(&d, "etag").await;
    let path = format!("/Users/{}", id(&user));
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "T"}]})
    .to_string();
    let r = send(
        d.request(Method::PATCH, &path)
            .header(CONTENT_TYPE, "application/scim+json")
            .header(IF_MATCH, "W/\"999\"")
            .body(patch.clone()),
    )
    .await;
    assert_scim_error(&r, 412, None);
    assert_eq!(d.get(&path).await.body["meta"]["version"], "W/\"1\"");

    let r = send(
        d.request(Method::PATCH, &path)
            .header(CONTENT_TYPE, "application/scim+json")
            .header(IF_MATCH, "W/\"1\"")
            .body(patch),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("etag").as_deref(), Some("W/\"2\""));
    assert_eq!(r.body["meta"]["version"], "W/\"2\"");

    let r = send(d.request(Method::DELETE, &path).header(IF_MATCH, "W/\"1\"")).await;
    assert_scim_error(&r, 412, None);
    let r = send(
        d.request(Method::GET, &path)
            .header(IF_NONE_MATCH, "W/\"2\""),
    )
    .await;
    assert_eq!(r.status, 304);
    let r = send(
        d.request(Method::GET, &path)
            .header(IF_NONE_MATCH, "W/\"1\""),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_ids_are_time_ordered_version_7_uuids_in_creation_order() {
    let d = Daemon::start();
    let mut ids = Vec::new();
    for i in 0..5 {
        let user = create_user(&d, &format!("ordered{i}")).await;
        ids.push(id(&user).to_string());
    }
    for id in &ids {
        let uuid = uuid::Uuid::parse_str(id).expect("the id is a UUID");
        assert_eq!(uuid.get_version_num(), 7, "{id}");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids sort in creation order");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_that_changes_nothing_keeps_the_version() {
    let d = Daemon::start();
    let user = create_user(&d, "same").await;
    let path = format!("/Users/{}", id(&user));
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": "True"}]})
    .to_string();
    let r = d.patch(&path, &patch).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["meta"]["version"], "W/\"1\"");
    assert_eq!(r.body["meta"]["lastModified"], user["meta"]["lastModified"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_is_stable_and_echoes_start_index() {
    let d = Daemon::start();
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(id(&create_user(&d, &format!("page{i:02}")).await));
    }
    let mut seen = Vec::new();
    for start in [1, 6, 11] {
        let r = d.get(&format!("/Users?startIndex={start}&count=5")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["startIndex"], start);
        assert_eq!(r.body["totalResults"], 12);
        let page: Vec<String> = r.body["Resources"]
            .as_array()
            .expect("array")
            .iter()
            .map(id)
            .collect();
        assert_eq!(r.body["itemsPerPage"], page.len());
        seen.extend(page);
    }
    assert_eq!(seen, ids);
    let r = d.get("/Users?count=0").await;
    assert_eq!(r.body["totalResults"], 12);
    assert_eq!(r.body["Resources"], json!([]));
    let r = d.get("/Users?startIndex=0&count=-3").await;
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(r.body["itemsPerPage"], 0);
    let r = d.get("/Users?startIndex=abc").await;
    assert_scim_error(&r, 400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sort_by_orders_case_insensitively_both_ways() {
    let d = Daemon::start();
    for name in ["bravo", "Alpha", "charlie"] {
        create_user(&d, name).await;
    }
    let names = |r: &crate::harness::Resp| -> Vec<String> {
        r.body["Resources"]
            .as_array()
            .expect("array")
            .iter()
            .map(|u| u["userName"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let r = d.get("/Users?sortBy=userName").await;
    assert_eq!(names(&r), ["Alpha", "bravo", "charlie"]);
    let r = d.get("/Users?sortBy=userName&sortOrder=descending").await;
    assert_eq!(names(&r), ["charlie", "bravo", "Alpha"]);
    let r = d.get("/Users?sortOrder=sideways").await;
    assert_scim_error(&r, 400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread")]
async fn search_endpoints_take_a_search_request_body() {
    let d = Daemon::start();
    create_user(&d, "searched").await;
    create_user(&d, "other").await;
    let g = d
        .post(
            "/Groups",
            &json!({"displayName": "searched-group"}).to_string(),
        )
        .await;
    assert_eq!(g.status, 201);
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "userName sw \"sea\"", "attributes": ["userName"], "startIndex": 1, "count": 10})
    .to_string();
    let r = d.post("/Users/.search", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totalResults"], 1);
    let only = r.body["Resources"][0].as_object().expect("object");
    let mut keys: Vec<&str> = only.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "schemas", "userName"]);

    let body =
        json!({"filter": "displayName sw \"searched\" or userName sw \"searched\""}).to_string();
    let r = d.post("/.search", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totalResults"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_filters_are_400_invalid_filter() {
    let d = Daemon::start();
    for f in [
        "userName+eq",
        "userName+like+%22x%22",
        "(userName+eq+%22a%22",
        "active+gt+true",
        "emails[type+eq+%22work%22",
    ] {
        let r = d.get(&format!("/Users?filter={f}")).await;
        assert_scim_error(&r, 400, Some("invalidFilter"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_endpoints_and_methods_get_scim_errors() {
    let d = Daemon::start();
    assert_scim_error(&d.get("/Widgets").await, 404, None);
    assert_scim_error(&d.get("/Users/no-such-id").await, 404, None);
    let r = send(d.request(Method::DELETE, "/Users")).await;
    assert_scim_error(&r, 405, None);
    let r = d.post("/Users/some-id", "{}").await;
    assert_scim_error(&r, 405, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn members_must_exist_and_deleting_a_user_removes_it_from_every_group() {
    let d = Daemon::start();
    let u1 = id(&create_user(&d, "m1").await);
    let u2 = id(&create_user(&d, "m2").await);
    let r = d
        .post(
            "/Groups",
            &json!({"displayName": "bad", "members": [{"value": "no-such-user"}]}).to_string(),
        )
        .await;
    assert_scim_error(&r, 400, Some("invalidValue"));

    let mut groups = Vec::new();
    for name in ["g1", "g2"] {
        let r = d
            .post(
                "/Groups",
                &json!({"displayName": name, "members": [{"value": u1}, {"value": u2}]})
                    .to_string(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["members"][0]["type"], "User");
        assert!(
            r.body["members"][0]["$ref"]
                .as_str()
                .is_some_and(|s| s.ends_with(&format!("/Users/{u1}")))
        );
        groups.push(id(&r.body));
    }
    let user = d.get(&format!("/Users/{u1}")).await;
    assert_eq!(
        user.body["groups"].as_array().map(Vec::len),
        Some(2),
        "{}",
        user.text
    );

    assert_eq!(d.delete(&format!("/Users/{u1}")).await.status, 204);
    for g in &groups {
        let r = d.get(&format!("/Groups/{g}")).await;
        let members: Vec<&str> = r.body["members"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|m| m["value"].as_str())
            .collect();
        assert_eq!(members, [u2.as_str()]);
        assert_eq!(r.body["meta"]["version"], "W/\"2\"");
    }
    let r = d
        .get(&format!("/Groups?filter=members.value+eq+%22{u1}%22"))
        .await;
    assert_eq!(r.body["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_is_accepted_but_never_returned_or_stored() {
    let d = Daemon::start();
    let r = d
        .post(
            "/Users",
            &json!({"userName": "pw", "password": "Secret-Passw0rd!"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(!r.text.contains("Secret-Passw0rd!"));
    let got = d.get(&format!("/Users/{}", id(&r.body))).await;
    assert!(!got.text.contains("Secret-Passw0rd!"));
    let db = std::fs::read(d.state_dir.join("state.db")).expect("state db");
    let wal = std::fs::read(d.state_dir.join("state.db-wal")).unwrap_or_default();
    let needle = b"Secret-Passw0rd!";
    assert!(!db.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test(flavor = "multi_thread")]
async fn put_replaces_every_writable_attribute_and_keeps_id_and_created() {
    let d = Daemon::start();
    let r = d
        .post(
            "/Users",
            &json!({"userName": "put", "title": "Old", "nickName": "N"}).to_string(),
        )
        .await;
    let uid = id(&r.body);
    let put = d
        .put(&format!("/Users/{uid}"), &json!({"id": "ignored", "userName": "put", "title": "New", "meta": {"created": "1999-01-01T00:00:00Z"}}).to_string())
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["id"], uid.as_str());
    assert_eq!(put.body["title"], "New");
    assert!(put.body.get("nickName").is_none());
    assert_eq!(put.body["meta"]["created"], r.body["meta"]["created"]);
    let missing = d
        .put(&format!("/Users/{uid}"), &json!({"title": "x"}).to_string())
        .await;
    assert_scim_error(&missing, 400, Some("invalidValue"));
    let other = d
        .put("/Users/nope", &json!({"userName": "x"}).to_string())
        .await;
    assert_scim_error(&other, 404, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn renaming_into_a_taken_username_is_409_by_put_and_patch() {
    let d = Daemon::start();
    create_user(&d, "Taken").await;
    let mine = id(&create_user(&d, "mine").await);
    let r = d
        .put(
            &format!("/Users/{mine}"),
            &json!({"userName": "TAKEN"}).to_string(),
        )
        .await;
    assert_scim_error(&r, 409, Some("uniqueness"));
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "userName", "value": "taken"}]})
    .to_string();
    assert_scim_error(
        &d.patch(&format!("/Users/{mine}"), &patch).await,
        409,
        Some("uniqueness"),
    );
    assert_eq!(
        d.get(&format!("/Users/{mine}")).await.body["userName"],
        "mine"
    );
}
