//! Concurrency and restart: uniqueness holds under parallel writers, and everything
//! acknowledged survives a restart unchanged.

use serde_json::{Value, json};

use crate::harness::{Daemon, send};

#[tokio::test(flavor = "multi_thread")]
async fn fifty_parallel_posts_of_one_username_give_one_201_and_49_409() {
    let d = Daemon::start();
    let mut tasks = Vec::new();
    for i in 0..50 {
        // The same userName in different cases: uniqueness is case-insensitive.
        let name: String = "parallel.user@example.com"
            .chars()
            .enumerate()
            .map(|(j, c)| {
                if (i >> (j % 6)) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let rb = d
            .request(reqwest::Method::POST, "/Users")
            .header("content-type", "application/scim+json")
            .body(json!({"userName": name}).to_string());
        tasks.push(tokio::spawn(send(rb)));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            201 => created += 1,
            409 => {
                assert_eq!(r.body["scimType"], "uniqueness", "{}", r.text);
                conflicts += 1;
            }
            other => panic!("unexpected status {other}: {}", r.text),
        }
    }
    assert_eq!((created, conflicts), (1, 49));
    let list = d
        .get("/Users?filter=userName+eq+%22PARALLEL.USER@EXAMPLE.COM%22")
        .await;
    assert_eq!(list.body["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_survive_a_restart_unchanged() {
    let mut d = Daemon::start();
    let u = d
        .post("/Users", &json!({"userName": "durable", "name": {"givenName": "D"}, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}}).to_string())
        .await;
    assert_eq!(u.status, 201);
    let uid = u.body["id"].as_str().expect("id").to_string();
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})
    .to_string();
    assert_eq!(d.patch(&format!("/Users/{uid}"), &patch).await.status, 200);
    let g = d
        .post(
            "/Groups",
            &json!({"displayName": "durable-group", "members": [{"value": uid}]}).to_string(),
        )
        .await;
    let gid = g.body["id"].as_str().expect("id").to_string();

    let strip_location = |mut v: Value| {
        // The port changes across restarts; everything else must not.
        v["meta"]["location"] = Value::Null;
        if let Some(members) = v["members"].as_array_mut() {
            for m in members {
                m["$ref"] = Value::Null;
            }
        }
        if let Some(groups) = v["groups"].as_array_mut() {
            for m in groups {
                m["$ref"] = Value::Null;
            }
        }
        v
    };
    let before_user = strip_location(d.get(&format!("/Users/{uid}")).await.body);
    let before_group = strip_location(d.get(&format!("/Groups/{gid}")).await.body);
    d.restart();
    let after_user = strip_location(d.get(&format!("/Users/{uid}")).await.body);
    let after_group = strip_location(d.get(&format!("/Groups/{gid}")).await.body);
    assert_eq!(before_user, after_user);
    assert_eq!(before_group, after_group);
    assert_eq!(after_user["meta"]["version"], "W/\"2\"");
    assert_eq!(after_user["active"], false);
}
