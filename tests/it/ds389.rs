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

#[test]
fn check_config_online_accepts_the_389_example_and_flags_what_389_ds_does_not_know() {
    let ds = DirSrv::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |target_and_mapping: &str| {
        crate::harness::check_config_online(dir.path(), target_and_mapping)
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
