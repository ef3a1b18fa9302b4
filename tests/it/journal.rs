//! The change journal end to end: crash safety under SIGKILL, damage detection in the
//! database and in export files, export → replay rebuilds, idempotence, and storage
//! failure (a file-size limit standing in for a full disk).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Daemon;

pub(crate) fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(args)
        .env_remove("SCIM_BRIDGE_TOKEN")
        .output()
        .expect("run scim-bridge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every resource in a state directory: id → (version, document).
pub(crate) fn state_of(dir: &Path) -> BTreeMap<String, (i64, Value)> {
    let store = scim_bridge::store::Store::open(dir).expect("open state");
    let mut out = BTreeMap::new();
    for kind in scim_bridge::scim::schema::ResourceKind::ALL {
        let q = scim_bridge::store::ListQuery {
            kind: Some(kind),
            filter: None,
            sort_by: None,
            descending: false,
            start_index: 1,
            count: 1_000_000,
        };
        let (_, all) = store.list(&q).expect("list");
        for s in all {
            out.insert(s.id.clone(), (s.version, Value::Object(s.doc)));
        }
    }
    out
}

fn patch_body(title: &str) -> String {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "title", "value": title}]})
    .to_string()
}

/// A small deterministic pseudo-random sequence (no extra dependency needed).
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn make_history(d: &Daemon) -> (String, String) {
    let u = d
        .post(
            "/Users",
            &json!({"userName": "history", "title": "damage-me"}).to_string(),
        )
        .await;
    assert_eq!(u.status, 201, "{}", u.text);
    let uid = u.body["id"].as_str().expect("id").to_string();
    for t in ["one", "two"] {
        assert_eq!(
            d.patch(&format!("/Users/{uid}"), &patch_body(t))
                .await
                .status,
            200
        );
    }
    let g = d
        .post(
            "/Groups",
            &json!({"displayName": "hist", "members": [{"value": uid}]}).to_string(),
        )
        .await;
    let gid = g.body["id"].as_str().expect("id").to_string();
    let other = d
        .post("/Users", &json!({"userName": "gone"}).to_string())
        .await;
    let oid = other.body["id"].as_str().expect("id").to_string();
    assert_eq!(d.delete(&format!("/Users/{oid}")).await.status, 204);
    (uid, gid)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_write_survives_sigkill_and_state_equals_a_replay_of_the_journal() {
    // Far beyond an identity provider's load on purpose: no rate limit.
    let mut d = Daemon::start_with(
        "rate_limit:\n  per_token:\n    per_second: 0\n  per_client:\n    per_second: 0\n",
    );
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    for round in 0..4 {
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let base = d.base_url.clone();
            let token = d.token.clone();
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0.. {
                    let name = format!("crash-{round}-{worker}-{i}");
                    let Ok(r) = client
                        .post(format!("{base}/Users"))
                        .bearer_auth(&token)
                        .header("content-type", "application/scim+json")
                        .body(json!({"userName": name}).to_string())
                        .send()
                        .await
                    else {
                        return;
                    };
                    if r.status() != 201 {
                        return;
                    }
                    let Ok(body) = r.json::<Value>().await else {
                        return;
                    };
                    let id = body["id"].as_str().unwrap_or_default().to_string();
                    acked.lock().expect("lock").push((id.clone(), 1));
                    let Ok(r) = client
                        .patch(format!("{base}/Users/{id}"))
                        .bearer_auth(&token)
                        .header("content-type", "application/scim+json")
                        .body(patch_body(&format!("t{i}")))
                        .send()
                        .await
                    else {
                        return;
                    };
                    if r.status() != 200 {
                        return;
                    }
                    acked.lock().expect("lock").push((id, 2));
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(150 + rng.next() % 350)).await;
        d.kill_hard();
        for t in tasks {
            t.await.expect("worker");
        }
        d.start_again();
        let acked_now = acked.lock().expect("lock").clone();
        assert!(
            !acked_now.is_empty(),
            "round {round}: no write was acknowledged before the kill"
        );
        for (id, version) in &acked_now {
            let r = d.get(&format!("/Users/{id}")).await;
            assert_eq!(
                r.status, 200,
                "round {round}: acknowledged user {id} is lost"
            );
            let stored: i64 = r.body["meta"]["version"]
                .as_str()
                .and_then(|v| v.trim_start_matches("W/").trim_matches('"').parse().ok())
                .expect("version");
            assert!(
                stored >= *version,
                "round {round}: user {id} lost acknowledged version {version}"
            );
        }
    }
    d.stop();
    let state = d.state_dir.clone();
    let (code, out, err) = cli(&["journal", "verify", "--state-dir", path_str(&state)]);
    assert_eq!(code, 0, "{out}{err}");

    // The state equals a replay of the journal into an empty state directory.
    let export = d.dir().join("export.jsonl");
    let (code, out, err) = cli(&["journal", "export", "--state-dir", path_str(&state)]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(&export, out).expect("write export");
    let rebuilt = d.dir().join("rebuilt");
    let (code, out, err) = cli(&[
        "journal",
        "replay",
        "--file",
        path_str(&export),
        "--into",
        "store",
        "--state-dir",
        path_str(&rebuilt),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(state_of(&state), state_of(&rebuilt));
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_replay_into_a_fresh_state_directory_reproduces_it_and_is_idempotent() {
    let mut d = Daemon::start();
    make_history(&d).await;
    d.stop();
    let state = d.state_dir.clone();
    let (code, export_text, err) = cli(&["journal", "export", "--state-dir", path_str(&state)]);
    assert_eq!(code, 0, "{err}");
    let export = d.dir().join("export.jsonl");
    std::fs::write(&export, &export_text).expect("write");
    assert_eq!(
        export_text.lines().count(),
        1 + 6,
        "header + 6 records:\n{export_text}"
    );

    let fresh = d.dir().join("fresh");
    let replay = |dry: bool| {
        let mut args = vec![
            "journal",
            "replay",
            "--file",
            path_str(&export),
            "--into",
            "store",
            "--state-dir",
            path_str(&fresh),
        ];
        if dry {
            args.push("--dry-run");
        }
        cli(&args)
    };
    let (code, out, err) = replay(true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dry run"), "{out}");
    assert!(
        !fresh.join("state.db").exists() || state_of(&fresh).is_empty(),
        "a dry run changes nothing"
    );
    let (code, out, err) = replay(false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("6 records"), "{out}");
    let once = state_of(&fresh);
    assert_eq!(
        once,
        state_of(&state),
        "same ids, versions, timestamps and documents"
    );
    let (code, out, _) = replay(false);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 applied"),
        "a second replay applies nothing: {out}"
    );
    assert_eq!(state_of(&fresh), once);
    // The rebuilt journal is the same chain: its export verifies and matches record for record.
    let (code, rebuilt_export, _) = cli(&["journal", "export", "--state-dir", path_str(&fresh)]);
    assert_eq!(code, 0);
    assert_eq!(
        rebuilt_export.lines().skip(1).collect::<Vec<_>>(),
        export_text.lines().skip(1).collect::<Vec<_>>()
    );

    // Deleting the state tables' rows and replaying the local journal restores them.
    {
        let conn = rusqlite::Connection::open(state.join("state.db")).expect("open");
        conn.execute_batch("DELETE FROM members; DELETE FROM resources;")
            .expect("wipe");
    }
    let (code, out, err) = cli(&[
        "journal",
        "replay",
        "--into",
        "store",
        "--state-dir",
        path_str(&state),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(state_of(&state), once);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_pinpoints_an_edited_a_deleted_and_a_reordered_record_and_serve_refuses_to_start() {
    let mut d = Daemon::start();
    make_history(&d).await;
    d.stop();
    let cases = [
        (
            "edited",
            "UPDATE journal SET record = replace(record, 'damage-me', 'damaged!!') WHERE seq = 1",
            "record 1",
        ),
        ("deleted", "DELETE FROM journal WHERE seq = 3", "3"),
        (
            "reordered",
            "UPDATE journal SET seq = -2 WHERE seq = 2; UPDATE journal SET seq = 2 WHERE seq = 4; UPDATE journal SET seq = 4 WHERE seq = -2",
            "2",
        ),
    ];
    for (name, sql, expected) in cases {
        let dir = d.dir().join(name);
        copy_dir(&d.state_dir, &dir);
        rusqlite::Connection::open(dir.join("state.db"))
            .expect("open")
            .execute_batch(sql)
            .expect("damage");
        let (code, out, err) = cli(&["journal", "verify", "--state-dir", path_str(&dir)]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(
            out.contains("DAMAGED") && out.contains(expected),
            "{name}: {out}"
        );
        let last_intact = match name {
            "edited" => "last intact record: none",
            "deleted" => "last intact record: 2",
            _ => "last intact record: 1",
        };
        assert!(out.contains(last_intact), "{name}: {out}");

        let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
            .args([
                "serve",
                "--config",
                path_str(&d.config_path),
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                path_str(&dir),
            ])
            .env("SCIM_BRIDGE_TOKEN", &d.token)
            .output()
            .expect("run serve");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: serve must refuse a damaged journal"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("damaged") && stderr.contains("--allow-damaged-journal"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_file_reports_a_torn_tail_and_a_bit_flip_with_line_and_offset() {
    let mut d = Daemon::start();
    make_history(&d).await;
    d.stop();
    let (_, text, _) = cli(&["journal", "export", "--state-dir", path_str(&d.state_dir)]);
    let intact = d.dir().join("intact.jsonl");
    std::fs::write(&intact, &text).expect("write");
    let (code, out, _) = cli(&["journal", "verify", "--file", path_str(&intact)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 6 records"), "{out}");

    // Torn: the last line cut in the middle.
    let torn = d.dir().join("torn.jsonl");
    let cut = text.len() - 40;
    std::fs::write(&torn, &text[..cut]).expect("write");
    let last_line_start = text[..text.len() - 1].rfind('\n').expect("newline") + 1;
    let (code, out, err) = cli(&["journal", "verify", "--file", path_str(&torn)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("line 7") && out.contains(&format!("byte {last_line_start}")),
        "{out}{err}"
    );
    let (code, out, _) = cli(&[
        "journal",
        "verify",
        "--file",
        path_str(&torn),
        "--allow-torn-tail",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("last intact record: 5"), "{out}");

    // Bit flip inside record 4 (line 5).
    let mut bytes = text.clone().into_bytes();
    let line5 = text.match_indices('\n').nth(3).expect("line 5").0 + 1;
    let target = line5 + text[line5..].find("\"actor\":\"entra\"").expect("actor") + 10;
    bytes[target] ^= 0x01;
    let flipped = d.dir().join("flipped.jsonl");
    std::fs::write(&flipped, &bytes).expect("write");
    let (code, out, err) = cli(&["journal", "verify", "--file", path_str(&flipped)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("line 5") && out.contains("last intact record: 3"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn full_storage_gives_503_keeps_reads_and_loses_nothing_and_writes_resume() {
    // RLIMIT_FSIZE stands in for a full disk: writes past the limit fail with EFBIG.
    let mut d = Daemon::start_wrapped("", &["prlimit", "--fsize=400000:unlimited"]);
    let pid = d.pid().expect("pid");
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..2000 {
        let r = d
            .post(
                "/Users",
                &json!({"userName": format!("fill-{i}"), "title": "x".repeat(2000)}).to_string(),
            )
            .await;
        match r.status {
            201 => acked.push(r.body["id"].as_str().expect("id").to_string()),
            _ => {
                refused = Some(r);
                break;
            }
        }
    }
    let refused = refused.expect("the file-size limit was never reached");
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(
        refused.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert!(!acked.is_empty());
    // Reads keep being served.
    for id in acked.iter().step_by(7) {
        assert_eq!(d.get(&format!("/Users/{id}")).await.status, 200);
    }
    assert_eq!(
        d.get("/Users?count=1").await.body["totalResults"],
        acked.len()
    );

    // Space returns: writes resume without a restart.
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--fsize=unlimited:unlimited"])
        .status()
        .expect("prlimit");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = d
            .post(
                "/Users",
                &json!({"userName": "after-space-returns"}).to_string(),
            )
            .await;
        if r.status == 201 {
            acked.push(r.body["id"].as_str().expect("id").to_string());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.kill_hard();
    d.start_again();
    for id in &acked {
        assert_eq!(
            d.get(&format!("/Users/{id}")).await.status,
            200,
            "acknowledged {id} lost"
        );
    }
    d.stop();
    let (code, out, err) = cli(&["journal", "verify", "--state-dir", path_str(&d.state_dir)]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_show_answer_who_changed_a_user_and_when() {
    let mut d = Daemon::start();
    let (uid, _) = make_history(&d).await;
    d.stop();
    let state = path_str(&d.state_dir).to_string();
    let (code, out, err) = cli(&["journal", "list", "--resource", &uid, "--state-dir", &state]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("entra") && lines[0].contains("create") && lines[0].contains("v-->v1"),
        "{out}"
    );
    assert!(
        lines[2].contains("patch") && lines[2].contains("v2->v3"),
        "{out}"
    );
    let (_, out, _) = cli(&[
        "journal",
        "list",
        "--actor",
        "nobody",
        "--state-dir",
        &state,
    ]);
    assert!(out.is_empty(), "{out}");
    let (_, out, _) = cli(&[
        "journal",
        "list",
        "--since",
        "2999-01-01T00:00:00+01:00",
        "--state-dir",
        &state,
    ]);
    assert!(out.is_empty(), "{out}");
    let (code, _, err) = cli(&[
        "journal",
        "list",
        "--since",
        "yesterday",
        "--state-dir",
        &state,
    ]);
    assert_eq!(code, 2, "{err}");
    let (_, out, _) = cli(&[
        "journal",
        "list",
        "--from",
        "2",
        "--to",
        "3",
        "--state-dir",
        &state,
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");

    let (code, out, _) = cli(&["journal", "show", "3", "--state-dir", &state]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).expect("pretty JSON");
    assert_eq!(shown["record"]["op"], "patch");
    assert_eq!(shown["record"]["actor"], "entra");
    assert_eq!(shown["record"]["client"], "127.0.0.1");
    assert_eq!(shown["record"]["image"]["title"], "two");
    assert!(
        shown["record"]["request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let (code, _, _) = cli(&["journal", "show", "99", "--state-dir", &state]);
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_then_rebuild_from_the_archives_and_the_remaining_export() {
    let archive_dir = tempfile::tempdir().expect("archive dir");
    let mut d = Daemon::start_with(&format!(
        "journal:\n  max_records: 2\n  archive_dir: {}\n",
        archive_dir.path().display()
    ));
    make_history(&d).await;
    d.stop();
    let state = path_str(&d.state_dir).to_string();
    let config = path_str(&d.config_path).to_string();
    let before = state_of(&d.state_dir);
    let (code, out, err) = cli(&[
        "journal",
        "archive",
        "--config",
        &config,
        "--state-dir",
        &state,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dropped 4 records"), "{out}");
    let archive = archive_dir.path().join("journal-1-4.jsonl.gz");
    let (code, out, _) = cli(&["journal", "verify", "--file", path_str(&archive)]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = cli(&["journal", "verify", "--state-dir", &state]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records 5..6"), "{out}");

    // Rebuild a lost state directory: the archives, then an export of what remains.
    let (code, rest, _) = cli(&["journal", "export", "--state-dir", &state]);
    assert_eq!(code, 0);
    let rest_path = d.dir().join("rest.jsonl");
    std::fs::write(&rest_path, rest).expect("write");
    let rebuilt = d.dir().join("rebuilt");
    for file in [archive.as_path(), rest_path.as_path()] {
        let (code, out, err) = cli(&[
            "journal",
            "replay",
            "--file",
            path_str(file),
            "--into",
            "store",
            "--state-dir",
            path_str(&rebuilt),
        ]);
        assert_eq!(code, 0, "{out}{err}");
    }
    assert_eq!(state_of(&rebuilt), before);
    let (code, out, _) = cli(&["journal", "verify", "--state-dir", path_str(&rebuilt)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records 1..6"), "{out}");
}
