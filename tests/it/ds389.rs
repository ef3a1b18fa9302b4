//! 389 Directory Server habits, against a real ns-slapd (`scim_bridge::dirsrv::DirSrv`)
//! and the shipped `examples/ldap-389ds.yaml`: accounts locked with nsAccountLock, and
//! binds that cost ~7 ms each on the server made once per pooled connection, however
//! many changes go through. (The contract suite runs on 389-DS as `contract::ds389::*`.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Daemon;
use scim_bridge::dirsrv::DirSrv;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn start() -> (DirSrv, Daemon) {
    let ds = DirSrv::start().unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start_with(&ds.example_target_yaml());
    (ds, d)
}

fn lock_of(ds: &DirSrv, uid: &str) -> Option<String> {
    let ldif = ds
        .ldapsearch(&ds.base, &format!("(uid={uid})"), &["nsAccountLock"])
        .unwrap_or_else(|e| panic!("{e}"));
    ldif.lines()
        .find_map(|l| l.strip_prefix("nsAccountLock: "))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_user_is_locked_with_ns_account_lock_and_unlocked_when_enabled() {
    let (ds, d) = start();
    let r = d
        .post("/Users", &json!({"userName": "lock.me"}).to_string())
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().expect("id");
    assert_eq!(lock_of(&ds, "lock.me"), None);
    let active = |value: &str| {
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": value}]})
            .to_string()
    };
    assert_eq!(
        d.patch(&format!("/Users/{id}"), &active("False"))
            .await
            .status,
        200
    );
    assert_eq!(lock_of(&ds, "lock.me").as_deref(), Some("TRUE"));
    assert_eq!(
        d.patch(&format!("/Users/{id}"), &active("True"))
            .await
            .status,
        200
    );
    assert_eq!(lock_of(&ds, "lock.me"), None);
}

/// The simple binds the server has answered (`cn=snmp,cn=monitor`), this search's own
/// included.
fn simple_binds(ds: &DirSrv) -> usize {
    ds.ldapsearch(
        "cn=snmp,cn=monitor",
        "(objectClass=*)",
        &["simpleAuthBinds"],
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .lines()
    .find_map(|l| l.strip_prefix("simpleAuthBinds: "))
    .and_then(|v| v.trim().parse().ok())
    .expect("simpleAuthBinds in cn=snmp,cn=monitor")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_users_cost_one_bind_per_pooled_connection() {
    let ds = DirSrv::start().unwrap_or_else(|e| panic!("{e}"));
    let before = simple_binds(&ds);
    let d = Daemon::start_with(&ds.example_target_yaml());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let client = crate::harness::send;
        let url = d.url("/Users");
        let token = d.token.clone();
        tasks.spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            for i in 0..125 {
                let r = client(
                    http.post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/scim+json")
                        .body(json!({"userName": format!("bulk-{w}-{i}")}).to_string()),
                )
                .await;
                assert_eq!(r.status, 201, "{}", r.text);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client task");
    }
    let took = started.elapsed();
    let count = ds
        .ldapsearch(&ds.base, "(uid=bulk-*)", &["1.1"])
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .filter(|l| l.starts_with("dn:"))
        .count();
    assert_eq!(count, 1000);
    drop(d);
    // Less this count's search and the two searches of `simple_binds` after `before`.
    let binds = simple_binds(&ds) - before - 2;
    println!("1,000 users in {took:?}: {binds} binds as the bridge's DN");
    // pool_size is 4 in the example, plus the reachability check at start.
    assert!(
        (1..=5).contains(&binds),
        "{binds} binds for 1,000 users: each pooled connection binds once"
    );
}

fn has_line(ldif: &str, line: &str) -> bool {
    ldif.lines().any(|l| l.trim_end() == line)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_389_ds_down_writes_succeed_and_are_delivered_in_order_when_it_returns() {
    let (mut ds, d) = start();
    let people = format!("ou=people,{}", ds.base);
    let search = |ds: &DirSrv, base: &str, filter: &str, attrs: &[&str]| {
        ds.ldapsearch(base, filter, attrs)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(
        d.post("/Users", &json!({"userName": "before"}).to_string())
            .await
            .status,
        201
    );
    ds.stop();
    let during = d
        .post(
            "/Users",
            &json!({"userName": "during", "title": "one"}).to_string(),
        )
        .await;
    assert_eq!(
        during.status, 201,
        "an outage is not the provider's problem: {}",
        during.text
    );
    let uid = during.body["id"].as_str().expect("id").to_string();
    let replace = |path: &str, value: &str| {
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": path, "value": value}]})
            .to_string()
    };
    assert_eq!(
        d.patch(&format!("/Users/{uid}"), &replace("title", "two"))
            .await
            .status,
        200
    );
    let group = d
        .post(
            "/Groups",
            &json!({"displayName": "outage crew", "members": [{"value": uid}]}).to_string(),
        )
        .await;
    assert_eq!(group.status, 201, "{}", group.text);
    assert_eq!(
        d.patch(&format!("/Users/{uid}"), &replace("userName", "after"))
            .await
            .status,
        200
    );
    ds.start_again().unwrap_or_else(|e| panic!("{e}"));
    let crew = format!("cn=outage crew,ou=groups,{}", ds.base);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let entry = search(&ds, &people, "(uid=after)", &["title"]);
        let members = search(&ds, &crew, "(objectClass=*)", &["member"]);
        if has_line(&entry, "title: two")
            && has_line(&members, &format!("member: uid=after,{people}"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pending changes were not delivered in order: {entry}\n{members}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !search(&ds, &people, "(uid=during)", &["uid"]).contains("dn:"),
        "renamed, not copied"
    );
    assert!(search(&ds, &people, "(uid=before)", &["uid"]).contains("dn:"));
    let report = d.reconcile_in_sync();
    assert!(
        report.contains("3 resources compared: 3 in sync, 0 differ, 0 orphan"),
        "{report}"
    );
}

#[test]
fn check_config_online_accepts_the_389_example_and_flags_what_389_ds_does_not_know() {
    let ds = DirSrv::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |target_and_mapping: &str| {
        let path = dir.path().join("389.yaml");
        std::fs::write(
            &path,
            format!(
                "auth:\n  tokens:\n    - name: entra\n      secret:\n        value: 0123456789abcdef0123\n{target_and_mapping}"
            ),
        )
        .expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
            .args(["check-config", "--online", "--config"])
            .arg(&path)
            .output()
            .expect("check-config");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let example = ds.example_target_yaml();
    let (code, text) = run(&example);
    assert_eq!(code, Some(0), "{text}");
    let typo = example.replacen("departmentNumber:", "departmentNumbr:", 1);
    assert_ne!(typo, example);
    let (code, text) = run(&typo);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "'departmentNumbr' is not in the directory's schema (did you mean 'departmentNumber'?)"
        ),
        "{text}"
    );
    let (code, text) = run(&example.replacen("[inetOrgPerson,", "[inetOrgPersonX,", 1));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("object class 'inetOrgPersonX' is not in the directory's schema"),
        "{text}"
    );
}
