//! Injection: values carrying SQL, filter or control characters are stored and written
//! literally, never interpreted, and never forge a log line. (DN and LDAP filter
//! metacharacters against slapd and SQL metacharacters against the SQLite target: the
//! contract's `hostile_user_names_round_trip_literally`, run on both targets.)

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Daemon;
use crate::slapd::Slapd;

const SQLITE_TARGET: &str = "target:
  sqlite:
    path: ./directory.db
mapping:
  users:
    table: people
    key: scim_id
    columns:
      user_name:
        source: userName
        required: true
      title:
        source: title
";

fn wire(filter: &str) -> String {
    form_urlencoded::byte_serialize(filter.as_bytes()).collect()
}

async fn create(d: &Daemon, doc: Value) -> Value {
    let r = d.post("/Users", &doc.to_string()).await;
    assert_eq!(r.status, 201, "{doc}: {}", r.text);
    r.body
}

async fn names_matching(d: &Daemon, filter: &str) -> Vec<String> {
    let r = d
        .get(&format!("/Users?count=1000&filter={}", wire(filter)))
        .await;
    assert_eq!(r.status, 200, "{filter}: {}", r.text);
    let mut names: Vec<String> = r.body["Resources"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u["userName"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_values_with_sql_and_pattern_metacharacters_match_only_literally() {
    let d = Daemon::start();
    for name in [
        "alice",
        "bob",
        "50%off",
        "under_score",
        "a' OR '1'='1",
        "back\\slash",
    ] {
        create(&d, json!({"userName": name})).await;
    }
    let cases: &[(&str, &[&str])] = &[
        (r#"userName eq "a' OR '1'='1""#, &["a' OR '1'='1"]),
        (r#"userName eq "x' OR '1'='1""#, &[]),
        (
            r#"userName eq "alice\" or userName pr or userName eq \"""#,
            &[],
        ),
        (r#"userName co "%""#, &["50%off"]),
        (r#"userName sw "_""#, &[]),
        (r#"userName co "_""#, &["under_score"]),
        (r#"userName ew "%""#, &[]),
        (r#"userName co "*""#, &[]),
        (r#"userName co "\\""#, &["back\\slash"]),
        (r#"userName eq "alice'--""#, &[]),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            names_matching(&d, filter).await,
            expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{filter}"
        );
    }
    // Everything is still there.
    assert_eq!(names_matching(&d, "userName pr").await.len(), 6);
}

/// The daemon's stderr, which `start_logged` sends to a file.
fn read_log(path: &Path, until: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if until(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_logged(format: &str, log: &Path) -> Daemon {
    let script = format!("exec \"$@\" 2>>'{}'", log.display());
    Daemon::start_wrapped(
        &format!("log:\n  level: info\n  format: {format}\n{SQLITE_TARGET}"),
        &["sh", "-c", &script, "sh"],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn values_with_cr_lf_and_control_characters_never_forge_a_log_line() {
    const FORGED: &str = "INFO scim_bridge: FORGED token rotated by admin";
    for format in ["text", "journald", "json"] {
        let logs = tempfile::tempdir().expect("tempdir");
        let log = logs.path().join("stderr.log");
        let d = start_logged(format, &log);
        // The reading application's own rule refuses some names, quoting the name in its
        // message: the diagnostic travels to the provider and into the daemon's log.
        assert_eq!(
            d.post("/Users", r#"{"userName":"first"}"#).await.status,
            201
        );
        let db = rusqlite::Connection::open(d.dir().join("directory.db")).expect("target db");
        db.execute_batch(
            "CREATE TRIGGER refuse_evil BEFORE INSERT ON people WHEN NEW.user_name LIKE 'evil%' \
             BEGIN SELECT RAISE(ABORT, 'refused ' || NEW.user_name); END;",
        )
        .expect("trigger");
        // (No NUL here: SQLite's RAISE message is a C string and would end at it.)
        let name = format!("evil\n{FORGED}\r\u{1b}[2K\u{7}end");
        let r = d
            .post("/Users", &json!({"userName": name}).to_string())
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(&name),
            "the provider sees the diagnostic with the name as sent: {}",
            r.text
        );
        let text = read_log(&log, |t| t.contains("rejected"));
        assert!(
            text.contains("rejected"),
            "{format}: no rejection logged:\n{text}"
        );
        for line in text.lines() {
            assert!(
                !line.trim_start().starts_with(FORGED) && !line.starts_with("FORGED"),
                "{format}: a forged line: {line:?}\n{text}"
            );
            assert!(
                !line.contains('\r') && !line.contains('\u{7}') && !line.contains('\u{1b}'),
                "{format}: a raw control character: {line:?}"
            );
            if format == "json" {
                assert!(
                    serde_json::from_str::<Value>(line).is_ok(),
                    "{format}: not one JSON object per line: {line:?}"
                );
            }
        }
        let rejected = text
            .lines()
            .find(|l| l.contains("rejected"))
            .expect("rejection line");
        assert!(rejected.contains("FORGED"), "{rejected}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_character_reaches_the_sqlite_target_whole() {
    let d = Daemon::start_with(SQLITE_TARGET);
    let name = "nul\u{0}byte";
    let id = create(
        &d,
        json!({"userName": name, "title": "a\u{0}b\u{1}c\u{7f}"}),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let got = d.get(&format!("/Users/{id}")).await;
    assert_eq!(got.body["userName"], name, "{}", got.text);
    let db = rusqlite::Connection::open(d.dir().join("directory.db")).expect("target db");
    let (stored, title, length): (Vec<u8>, Vec<u8>, i64) = db
        .query_row(
            "SELECT CAST(user_name AS BLOB), CAST(title AS BLOB), length(CAST(user_name AS BLOB)) FROM people WHERE scim_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the row");
    assert_eq!(stored, name.as_bytes(), "not cut at the NUL");
    assert_eq!(length, 8);
    assert_eq!(title, "a\u{0}b\u{1}c\u{7f}".as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn control_characters_reach_slapd_literally_or_are_refused_whole() {
    let slapd = Slapd::start();
    let d = Daemon::start_with(&slapd.example_target_yaml());
    let people = format!("ou=people,{}", slapd.base);
    // CR, LF, tab and ESC: valid UTF-8 in a directory string, written as they are.
    let name = "ctl\r\n\t\u{1b}[0m";
    let created = create(
        &d,
        json!({"userName": name, "name": {"familyName": "sn-ctl"}}),
    )
    .await;
    assert!(created["id"].is_string());
    let entry = slapd.ldapsearch(&people, "(sn=sn-ctl)", &["uid"]);
    let encoded = entry
        .lines()
        .find_map(|l| l.strip_prefix("uid:: "))
        .unwrap_or_else(|| panic!("uid is base64 (not plain) in LDIF:\n{entry}"));
    assert_eq!(
        crate::harness::base64_bytes(encoded),
        name.as_bytes(),
        "{entry}"
    );
    // NUL: the directory may refuse it; then the provider gets a 400 with the
    // directory's reason and nothing is stored. It is never cut short.
    let r = d
        .post(
            "/Users",
            &json!({"userName": "nul\u{0}cut", "name": {"familyName": "sn-nul"}}).to_string(),
        )
        .await;
    let entry = slapd.ldapsearch(&people, "(sn=sn-nul)", &["uid"]);
    match r.status {
        201 => {
            let encoded = entry
                .lines()
                .find_map(|l| l.strip_prefix("uid:: "))
                .unwrap_or_else(|| panic!("{entry}"));
            assert_eq!(
                crate::harness::base64_bytes(encoded),
                "nul\u{0}cut".as_bytes()
            );
        }
        400 => {
            assert!(!entry.contains("dn:"), "refused but written:\n{entry}");
            let all = d
                .get(&format!(
                    "/Users?filter={}",
                    wire(r#"name.familyName eq "sn-nul""#)
                ))
                .await;
            assert_eq!(all.body["totalResults"], 0, "{}", all.text);
        }
        other => panic!("{other}: {}", r.text),
    }
    assert!(
        !slapd
            .ldapsearch(&people, "(uid=nul)", &["uid"])
            .contains("dn:"),
        "a value cut at the NUL"
    );
}
