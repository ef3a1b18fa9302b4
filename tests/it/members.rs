//! Group membership as a delta: adding or removing members of a group touches only the
//! members named — in the state store, the journal (`member_delta` records, see
//! docs/journal-format.md) and the target — and a replay of such a journal rebuilds the
//! same state.

use serde_json::{Value, json};

use crate::harness::Daemon;
use crate::journal::{cli, path_str, state_of};
use crate::sqlite_target::example_mapping;

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn user(d: &Daemon, name: &str) -> String {
    let r = d
        .post("/Users", &json!({"userName": name}).to_string())
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().expect("id").to_string()
}

async fn group(d: &Daemon, name: &str, members: &[&str]) -> String {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let r = d
        .post(
            "/Groups",
            &json!({"displayName": name, "members": members}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().expect("id").to_string()
}

async fn patch(d: &Daemon, gid: &str, ops: Value) -> u16 {
    let body = json!({"schemas": [PATCH], "Operations": ops});
    let r = d.patch(&format!("/Groups/{gid}"), &body.to_string()).await;
    assert!(
        r.status == 204 || r.status >= 400,
        "{} {}",
        r.status,
        r.text
    );
    r.status
}

/// The group's member ids, in the order the server lists them.
async fn members(d: &Daemon, gid: &str) -> Vec<String> {
    let r = d.get(&format!("/Groups/{gid}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x["value"].as_str().expect("value").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The last journal record, as stored.
fn last_record(d: &Daemon) -> Value {
    let conn = rusqlite::Connection::open_with_flags(
        d.state_dir.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the state database");
    let text: String = conn
        .query_row(
            "SELECT record FROM journal ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("a journal record");
    serde_json::from_str(&text).expect("JSON")
}

/// The SQLite target's membership rows of a group: member ids, sorted.
fn target_members(d: &Daemon, gid: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        d.dir().join("directory.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the application database");
    let mut stmt = conn
        .prepare("SELECT user_id FROM app_group_members WHERE group_id = ?1 ORDER BY user_id")
        .expect("prepare");
    let rows = stmt
        .query_map([gid], |r| r.get::<_, String>(0))
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_and_removing_members_journals_only_the_members_named() {
    let d = Daemon::start_with(&example_mapping("30d"));
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(user(&d, &format!("m{i}")).await);
    }
    let gid = group(&d, "Delta", &[&ids[0], &ids[1], &ids[2]]).await;

    let added = json!([{"op": "Add", "path": "members",
        "value": [{"value": ids[3]}, {"value": ids[4]}]}]);
    assert_eq!(patch(&d, &gid, added).await, 204);
    let record = last_record(&d);
    assert_eq!(record["op"], "patch");
    assert!(record["image"].get("members").is_none(), "{record}");
    assert_eq!(
        record["member_delta"],
        json!({"added": [{"type": "User", "value": ids[3]}, {"type": "User", "value": ids[4]}],
               "removed": []})
    );
    assert_eq!(
        members(&d, &gid).await,
        ids[..5].to_vec(),
        "in the order added"
    );

    // Entra's two remove forms: a value array, and a value filter.
    let removed = json!([{"op": "Remove", "path": "members", "value": [{"value": ids[0]}]},
        {"op": "Remove", "path": format!("members[value eq \"{}\"]", ids[3])}]);
    assert_eq!(patch(&d, &gid, removed).await, 204);
    assert_eq!(
        last_record(&d)["member_delta"],
        json!({"added": [], "removed": [ids[0], ids[3]]})
    );
    let expected = vec![ids[1].clone(), ids[2].clone(), ids[4].clone()];
    assert_eq!(members(&d, &gid).await, expected);
    assert_eq!(target_members(&d, &gid), sorted(expected.clone()));

    // Adding a member that is one already, or one added and removed in the same request,
    // changes nothing: no new version, no record.
    let version = d.get(&format!("/Groups/{gid}")).await.body["meta"]["version"].clone();
    let seq = last_record(&d)["seq"].clone();
    let noop = json!([{"op": "Add", "path": "members", "value": [{"value": ids[1]}]},
        {"op": "Add", "path": "members", "value": [{"value": ids[5]}]},
        {"op": "Remove", "path": "members", "value": [{"value": ids[5]}]}]);
    assert_eq!(patch(&d, &gid, noop).await, 204);
    assert_eq!(last_record(&d)["seq"], seq);
    assert_eq!(
        d.get(&format!("/Groups/{gid}")).await.body["meta"]["version"],
        version
    );

    // A member that does not exist is refused, and nothing of the request is kept.
    let bad = json!([{"op": "Replace", "path": "displayName", "value": "Renamed"},
        {"op": "Add", "path": "members", "value": [{"value": ids[5]}, {"value": "no-such-id"}]}]);
    assert_eq!(patch(&d, &gid, bad).await, 400);
    assert_eq!(members(&d, &gid).await, expected);
    assert_eq!(
        d.get(&format!("/Groups/{gid}")).await.body["displayName"],
        "Delta"
    );

    // Replacing the member list writes the complete image again.
    let replace = json!([{"op": "Replace", "path": "members", "value": [{"value": ids[5]}]}]);
    assert_eq!(patch(&d, &gid, replace).await, 204);
    let record = last_record(&d);
    assert!(record.get("member_delta").is_none(), "{record}");
    assert_eq!(record["image"]["members"][0]["value"], ids[5].as_str());
    assert_eq!(members(&d, &gid).await, vec![ids[5].clone()]);
    assert_eq!(target_members(&d, &gid), vec![ids[5].clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_leaves_its_groups_by_member_deltas() {
    let d = Daemon::start_with(&example_mapping("30d"));
    let a = user(&d, "stays").await;
    let b = user(&d, "leaves").await;
    let g1 = group(&d, "One", &[&a, &b]).await;
    let g2 = group(&d, "Two", &[&b]).await;
    assert_eq!(d.delete(&format!("/Users/{b}")).await.status, 204);
    assert_eq!(members(&d, &g1).await, vec![a.clone()]);
    assert!(members(&d, &g2).await.is_empty());
    assert_eq!(target_members(&d, &g1), vec![a.clone()]);
    assert!(target_members(&d, &g2).is_empty());
    let conn = rusqlite::Connection::open_with_flags(
        d.state_dir.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open");
    let deltas: Vec<String> = conn
        .prepare("SELECT record FROM journal WHERE record LIKE '%\"member_delta\"%' ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(deltas.len(), 2, "one per group: {deltas:?}");
    for text in deltas {
        let record: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(record["member_delta"], json!({"added": [], "removed": [b]}));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_membership_filters_entra_sends_find_members_in_the_member_table() {
    let d = Daemon::start();
    let a = user(&d, "in").await;
    let b = user(&d, "out").await;
    let gid = group(&d, "Checked", &[&a]).await;
    for (filter, member, expected) in [
        (format!("id eq \"{gid}\" and members eq \"{a}\""), &a, 1),
        (format!("id eq \"{gid}\" and members eq \"{b}\""), &b, 0),
        (format!("members.value eq \"{a}\""), &a, 1),
        (format!("members[value eq \"{a}\"]"), &a, 1),
        (format!("members[value eq \"{b}\"]"), &b, 0),
        ("members pr".to_string(), &a, 1),
        (
            "displayName eq \"Checked\" and not (members pr)".to_string(),
            &a,
            0,
        ),
    ] {
        let r = d
            .request(reqwest::Method::GET, "/Groups")
            .query(&[
                ("filter", filter.as_str()),
                ("excludedAttributes", "members"),
            ])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{filter}");
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(
            body["totalResults"], expected,
            "{filter} ({member}): {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_of_a_journal_with_member_deltas_rebuilds_the_same_state() {
    let mut d = Daemon::start();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(user(&d, &format!("r{i}")).await);
    }
    let gid = group(&d, "Replayed", &[&ids[0]]).await;
    let nested = group(&d, "Nested", &[]).await;
    assert_eq!(
        patch(
            &d,
            &gid,
            json!([{"op": "Add", "path": "members",
            "value": [{"value": ids[1]}, {"value": ids[2]}, {"value": nested, "display": "N"}]}])
        )
        .await,
        204
    );
    assert_eq!(
        patch(
            &d,
            &gid,
            json!([{"op": "Remove", "path": "members", "value": [{"value": ids[1]}]},
            {"op": "Replace", "path": "displayName", "value": "Replayed again"}])
        )
        .await,
        204
    );
    assert_eq!(d.delete(&format!("/Users/{}", ids[2])).await.status, 204);
    d.stop();
    let state = d.state_dir.clone();
    let (code, export, err) = cli(&["journal", "export", "--state-dir", path_str(&state)]);
    assert_eq!(code, 0, "{err}");
    assert!(export.contains("\"member_delta\""), "{export}");
    let file = d.dir().join("export.jsonl");
    std::fs::write(&file, &export).expect("write");
    let (code, out, err) = cli(&["journal", "verify", "--file", path_str(&file)]);
    assert_eq!(code, 0, "{out}{err}");
    let fresh = d.dir().join("fresh");
    let (code, out, err) = cli(&[
        "journal",
        "replay",
        "--file",
        path_str(&file),
        "--into",
        "store",
        "--state-dir",
        path_str(&fresh),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let rebuilt = state_of(&fresh);
    assert_eq!(rebuilt, state_of(&state));
    let (_, doc) = &rebuilt[&gid];
    assert_eq!(
        doc["members"],
        json!([{"type": "User", "value": ids[0]},
               {"display": "N", "type": "Group", "value": nested}])
    );
}
