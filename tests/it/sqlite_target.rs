//! The SQLite target end to end: Entra's requests go in over HTTP, the application tables
//! are checked with SQL, as the applications that read them would.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Daemon, fill, fixture};

/// The example configuration's target and mapping. The daemon runs in its own temporary
/// directory, so the relative database path lands there.
pub(crate) fn example_mapping(purge_after: &str) -> String {
    let example = include_str!("../../config.example.yaml");
    let start = example.find("\ntarget:").expect("target section") + 1;
    example[start..]
        .replace("./state/directory.db", "./directory.db")
        .replace("purge_after: 30d", &format!("purge_after: {purge_after}"))
}

fn db_path(d: &Daemon) -> std::path::PathBuf {
    d.dir().join("directory.db")
}

fn start(purge_after: &str) -> Daemon {
    Daemon::start_with(&example_mapping(purge_after))
}

fn query(d: &Daemon, sql: &str, arg: &str) -> Vec<Vec<Value>> {
    let conn = rusqlite::Connection::open_with_flags(
        db_path(d),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the application database");
    let mut stmt = conn.prepare(sql).expect("prepare");
    let n = stmt.column_count();
    let rows = stmt
        .query_map(
            rusqlite::params_from_iter([arg].iter().take(sql.matches('?').count())),
            |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(v) => json!(v),
                            rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                            other => json!(format!("{other:?}")),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            },
        )
        .expect("query");
    rows.collect::<Result<Vec<_>, _>>().expect("rows")
}

fn user_row(d: &Daemon, id: &str) -> Option<Value> {
    let conn = rusqlite::Connection::open_with_flags(
        db_path(d),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    let mut stmt = conn
        .prepare("SELECT * FROM app_users WHERE scim_id = ?1")
        .ok()?;
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    stmt.query_row([id], |r| {
        let mut m = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            let v = match r.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(v) => json!(v),
                rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                other => json!(format!("{other:?}")),
            };
            m.insert(n.clone(), v);
        }
        Ok(Value::Object(m))
    })
    .ok()
}

/// Waits until the user's row is present (or gone), failing with `what` after `secs`.
async fn wait_for_row(d: &Daemon, id: &str, present: bool, secs: u64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while user_row(d, id).is_some() != present {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn patch(ops: Value) -> String {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_create_patch_disable_delete_land_in_the_application_tables() {
    let d = start("30d");
    let r = d
        .post("/Users", &fixture("entra/1.1-create-user.json"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let uid = r.body["id"].as_str().expect("id").to_string();
    let row = user_row(&d, &uid).expect("the user is written before the 201");
    assert_eq!(
        row["username"],
        "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
    );
    assert_eq!(row["enabled"], 1);
    assert_eq!(
        row["email"],
        "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com"
    );
    assert_eq!(row["first_name"], "givenName");
    assert_eq!(
        row["description"], "givenName familyName",
        "Coalesce falls back to Join"
    );
    assert_eq!(row["external_id"], "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef");
    assert_eq!(row["archived_at"], Value::Null);
    assert_eq!(
        query(
            &d,
            "SELECT group_id, origin FROM app_group_members WHERE user_id = ?1",
            &uid
        ),
        vec![vec![json!("all-users"), json!("default")]],
        "new users join the default group"
    );

    // Entra's multi-op PATCH, then a userName change: username is create-only.
    let body = fill(&fixture("entra/1.5-patch-user-mixed-ops.json"), &[]);
    assert_eq!(d.patch(&format!("/Users/{uid}"), &body).await.status, 200);
    let r = d
        .patch(
            &format!("/Users/{uid}"),
            &fill(&fixture("entra/1.6-patch-username.json"), &[]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let row = user_row(&d, &uid).expect("row");
    assert_eq!(row["email"], "AdeleV2@REDACTED.onmicrosoft.com");
    assert_eq!(row["department"], "Retail");
    assert_eq!(
        row["username"], "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
        "create-only"
    );

    // Disable (Entra's default dialect): on_disable sets enabled = 0.
    let r = d
        .patch(
            &format!("/Users/{uid}"),
            &fixture("entra/2.1-disable-default.json"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(user_row(&d, &uid).expect("row")["enabled"], 0);

    // Delete with the archive policy: the row stays, disabled, with its archive time, and
    // leaves its groups.
    assert_eq!(d.delete(&format!("/Users/{uid}")).await.status, 204);
    let row = user_row(&d, &uid).expect("archived row");
    assert_eq!(row["enabled"], 0);
    assert!(
        row["archived_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{row}"
    );
    assert!(
        query(
            &d,
            "SELECT * FROM app_group_members WHERE user_id = ?1",
            &uid
        )
        .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn phones_take_the_primary_else_the_only_one_and_scope_adds_and_removes_rows() {
    let d = start("30d");
    let r = d
        .post(
            "/Users",
            &json!({"userName": "phones", "emails": [{"type": "work", "value": "p@example.com"}],
            "phoneNumbers": [
                {"type": "work", "value": "+1 111", "primary": true},
                {"type": "mobile", "value": "+1 222"}
            ]})
            .to_string(),
        )
        .await;
    let uid = r.body["id"].as_str().expect("id").to_string();
    let row = user_row(&d, &uid).expect("row");
    assert_eq!(row["phone_work"], "+1 111");
    assert_eq!(row["phone_mobile"], "+1 222");

    // No work email: out of scope, stored in SCIM but not written.
    let r = d
        .post("/Users", &json!({"userName": "nomail"}).to_string())
        .await;
    assert_eq!(r.status, 201);
    let nid = r.body["id"].as_str().expect("id").to_string();
    assert!(user_row(&d, &nid).is_none());
    // Into the scope: written.
    let add = patch(
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "n@example.com"}]),
    );
    assert_eq!(d.patch(&format!("/Users/{nid}"), &add).await.status, 200);
    assert_eq!(
        user_row(&d, &nid).expect("now in scope")["email"],
        Value::Null,
        "not primary: no email column"
    );
    // Out of the scope again: removed.
    let remove = patch(json!([{"op": "Remove", "path": "emails"}]));
    assert_eq!(d.patch(&format!("/Users/{nid}"), &remove).await.status, 200);
    assert!(user_row(&d, &nid).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn group_membership_rows_follow_entra_member_patches() {
    let d = start("30d");
    let mut users = Vec::new();
    for i in 0..3 {
        let r = d
            .post("/Users", &json!({"userName": format!("g{i}"), "emails": [{"type": "work", "value": format!("g{i}@example.com")}]}).to_string())
            .await;
        users.push(r.body["id"].as_str().expect("id").to_string());
    }
    let g = d
        .post("/Groups", &fixture("entra/1.9-create-group.json"))
        .await;
    assert_eq!(g.status, 201, "{}", g.text);
    let gid = g.body["id"].as_str().expect("id").to_string();
    let add = fill(
        &fixture("entra/1.13-add-members-multi.json"),
        &[
            ("MEMBER1", &users[0]),
            ("MEMBER2", &users[1]),
            ("MEMBER3", &users[2]),
        ],
    );
    assert_eq!(d.patch(&format!("/Groups/{gid}"), &add).await.status, 204);
    let members = |d: &Daemon| -> Vec<String> {
        query(d, "SELECT user_id FROM app_group_members WHERE group_id = ?1 AND origin = 'scim' ORDER BY user_id", &gid)
            .into_iter()
            .map(|r| r[0].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let mut expected = users.clone();
    expected.sort();
    assert_eq!(members(&d), expected);
    let remove = fill(
        &fixture("entra/1.14-remove-member-value-array.json"),
        &[("MEMBER_ID", &users[1])],
    );
    assert_eq!(
        d.patch(&format!("/Groups/{gid}"), &remove).await.status,
        204
    );
    assert!(!members(&d).contains(&users[1]));
    assert_eq!(members(&d).len(), 2);
    assert_eq!(
        query(&d, "SELECT name FROM app_groups WHERE scim_id = ?1", &gid),
        vec![vec![json!("displayName")]]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_rows_are_purged_after_their_retention_and_the_purge_is_journaled() {
    let mut d = start("1s");
    let r = d
        .post(
            "/Users",
            &json!({"userName": "gone", "emails": [{"type": "work", "value": "g@example.com"}]})
                .to_string(),
        )
        .await;
    let uid = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(d.delete(&format!("/Users/{uid}")).await.status, 204);
    assert!(user_row(&d, &uid).is_some(), "archived, not yet purged");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // The purge task runs at start (then hourly).
    d.restart();
    wait_for_row(&d, &uid, false, 10, "the archived row was not purged").await;
    d.stop();
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["journal", "list", "--state-dir"])
        .arg(&d.state_dir)
        .args(["--resource", &uid])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().last().is_some_and(|l| l.contains("purge")
            && l.contains("retention")
            && l.contains("applied")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_rejection_is_a_400_with_its_diagnostic_and_the_resource_is_left_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("t.db");
    let d = Daemon::start_with(&format!(
        "target:\n  sqlite:\n    path: {}\nmapping:\n  users:\n    table: people\n    columns:\n      login:\n        source: userName\n      mail:\n        source: 'emails[type eq \"work\"].value'\n        unique: true\n",
        db.display()
    ));
    let first = d
        .post(
            "/Users",
            &json!({"userName": "a", "emails": [{"type": "work", "value": "same@example.com"}]})
                .to_string(),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let second = d
        .post(
            "/Users",
            &json!({"userName": "b", "emails": [{"type": "work", "value": "same@example.com"}]})
                .to_string(),
        )
        .await;
    assert_eq!(second.status, 400, "{}", second.text);
    assert!(
        second.body["detail"]
            .as_str()
            .is_some_and(|s| s.contains("UNIQUE")),
        "{}",
        second.text
    );
    let r = d.get("/Users?filter=userName+eq+%22b%22").await;
    assert_eq!(
        r.body["totalResults"], 0,
        "the rejected create left nothing behind"
    );
    // A rejected update is reverted to the content it had.
    let bid = d
        .post(
            "/Users",
            &json!({"userName": "b", "emails": [{"type": "work", "value": "b@example.com"}]})
                .to_string(),
        )
        .await;
    let bid = bid.body["id"].as_str().expect("id").to_string();
    let clash = patch(
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "same@example.com"}]),
    );
    let r = d.patch(&format!("/Users/{bid}"), &clash).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = d.get(&format!("/Users/{bid}")).await;
    assert_eq!(r.body["emails"][0]["value"], "b@example.com");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let mail: String = conn
        .query_row("SELECT mail FROM people WHERE scim_id = ?1", [&bid], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(mail, "b@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_replay_into_the_target_rebuilds_a_lost_application_database() {
    let mut d = start("30d");
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = d
            .post("/Users", &json!({"userName": format!("r{i}"), "title": "T", "emails": [{"type": "work", "value": format!("r{i}@example.com"), "primary": true}]}).to_string())
            .await;
        ids.push(r.body["id"].as_str().expect("id").to_string());
    }
    let before: Vec<Option<Value>> = ids.iter().map(|id| user_row(&d, id)).collect();
    d.stop();
    let db = db_path(&d);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
            .current_dir(d.dir())
            .args(["journal", "replay", "--into", "target", "--config"])
            .arg(&d.config_path)
            .arg("--state-dir")
            .arg(&d.state_dir)
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let after: Vec<Option<Value>> = ids.iter().map(|id| user_row(&d, id)).collect();
        assert_eq!(after, before, "replaying (twice) rebuilds the same rows");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_the_application_database_lost_in_a_crash_are_delivered_again_at_start() {
    let mut d = start("30d");
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = d
            .post("/Users", &json!({"userName": format!("c{i}"), "emails": [{"type": "work", "value": format!("c{i}@example.com")}]}).to_string())
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["id"].as_str().expect("id").to_string());
    }
    d.stop();
    // What a power cut after the last two rounds would leave (delivery commits without
    // waiting for the disk): their rows gone, the cursor two records back, while the
    // journal still says they were applied.
    let through: i64 = {
        let conn = rusqlite::Connection::open(db_path(&d)).expect("open");
        let through: i64 = conn
            .query_row(
                "SELECT through FROM scim_bridge_delivery WHERE endpoint = 'default'",
                [],
                |r| r.get(0),
            )
            .expect("the delivery cursor is kept in the application database");
        for id in &ids[1..] {
            conn.execute("DELETE FROM app_users WHERE scim_id = ?1", [id])
                .expect("delete");
        }
        conn.execute(
            "UPDATE scim_bridge_delivery SET through = ?1",
            [through - 2],
        )
        .expect("rewind");
        through
    };
    assert!(user_row(&d, &ids[1]).is_none());
    d.start_again();
    for id in &ids[1..] {
        wait_for_row(&d, id, true, 30, "the lost delivery was not made again").await;
    }
    let conn = rusqlite::Connection::open(db_path(&d)).expect("open");
    let now: i64 = conn
        .query_row("SELECT through FROM scim_bridge_delivery", [], |r| r.get(0))
        .expect("cursor");
    assert_eq!(now, through, "the cursor is back where it was");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_target_keeps_records_pending_the_write_succeeds_and_delivery_catches_up() {
    let d = start("30d");
    // A first user creates the tables.
    let r = d
        .post(
            "/Users",
            &json!({"userName": "first", "emails": [{"type": "work", "value": "f@example.com"}]})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, 201);
    // Another program holds a write lock on the application database: the target is down.
    let locker = rusqlite::Connection::open(db_path(&d)).expect("open");
    locker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let r = d
        .post(
            "/Users",
            &json!({"userName": "during", "emails": [{"type": "work", "value": "d@example.com"}]})
                .to_string(),
        )
        .await;
    assert_eq!(
        r.status, 201,
        "an outage is not the provider's problem: {}",
        r.text
    );
    let uid = r.body["id"].as_str().expect("id").to_string();
    locker.execute_batch("ROLLBACK").expect("unlock");
    drop(locker);
    wait_for_row(&d, &uid, true, 30, "the pending record was never delivered").await;
    assert_eq!(user_row(&d, &uid).expect("row")["username"], "during");
}

#[test]
fn mapping_preview_prints_the_row_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(dir.path())
        .args(["mapping", "preview", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/entra/1.1-create-user-example2.json"
        ))
        .env("SCIM_BRIDGE_TOKEN", "0123456789abcdef0123456789abcdef")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("description   = \"Joy Young\""), "{text}");
    assert!(
        text.contains("username      = \"jyoung@testuser.com\""),
        "{text}"
    );
    assert!(!dir.path().join("state").exists(), "preview wrote nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_sync_delivery_an_unwritable_target_is_a_503_with_retry_after_and_the_change_is_kept()
{
    let d = Daemon::start_with(&example_mapping("30d").replacen(
        "target:\n",
        "target:\n  delivery: sync\n",
        1,
    ));
    let r = d
        .post(
            "/Users",
            &json!({"userName": "first", "emails": [{"type": "work", "value": "f@example.com"}]})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let locker = rusqlite::Connection::open(db_path(&d)).expect("open");
    locker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let r = d
        .post(
            "/Users",
            &json!({"userName": "blocked", "emails": [{"type": "work", "value": "b@example.com"}]})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    locker.execute_batch("ROLLBACK").expect("unlock");
    drop(locker);
    // The change was kept (journaled, pending) and is delivered: Entra's retry finds it.
    let found = d.get("/Users?filter=userName+eq+%22blocked%22").await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.text);
    let uid = found.body["Resources"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_for_row(&d, &uid, true, 30, "the kept change was never delivered").await;
}
