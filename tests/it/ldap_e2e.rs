//! The daemon writing into a real OpenLDAP directory (and 389-DS, for the Entra replay),
//! with the shipped example's mapping: Entra's requests go in over HTTP, the entries are
//! checked with ldapsearch.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Daemon, fill, fixture};
use crate::slapd::Slapd;

/// The example LDAP config's target and mapping, pointed at this test's slapd.
fn daemon_for(slapd: &Slapd) -> Daemon {
    Daemon::start_with(&slapd.example_target_yaml())
}

fn has(ldif: &str, line: &str) -> bool {
    ldif.lines().any(|l| l.trim_end() == line)
}

/// A directory with inetOrgPerson and groupOfNames, as the tests read it back.
trait Directory {
    fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> String;
    fn base(&self) -> &str;
    /// Its shipped example's target and mapping, pointed at it.
    fn target_yaml(&self) -> String;
    fn stop(&mut self);
    /// Starts it again after `stop`, on the same port and data.
    fn start_again(&mut self);
}

impl Directory for Slapd {
    fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        self.ldapsearch(base, filter, attrs)
    }
    fn base(&self) -> &str {
        &self.base
    }
    fn target_yaml(&self) -> String {
        self.example_target_yaml()
    }
    fn stop(&mut self) {
        let server: &mut scim_bridge::slapd::Slapd = self;
        server.stop();
    }
    fn start_again(&mut self) {
        Slapd::start_again(self);
    }
}

impl Directory for scim_bridge::dirsrv::DirSrv {
    fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        self.ldapsearch(base, filter, attrs)
            .unwrap_or_else(|e| panic!("{e}"))
    }
    fn base(&self) -> &str {
        &self.base
    }
    fn target_yaml(&self) -> String {
        self.example_target_yaml()
    }
    fn stop(&mut self) {
        scim_bridge::dirsrv::DirSrv::stop(self);
    }
    fn start_again(&mut self) {
        scim_bridge::dirsrv::DirSrv::start_again(self).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_users_and_groups_are_converged_into_the_directory() {
    entra_replay(&Slapd::start()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_users_and_groups_are_converged_into_389_ds() {
    entra_replay(&scim_bridge::dirsrv::DirSrv::start().unwrap_or_else(|e| panic!("{e}"))).await;
}

/// Entra's requests (create, mixed PATCH, group, member add, rename, delete) and what the
/// directory holds after each.
async fn entra_replay(dir: &dyn Directory) {
    let d = Daemon::start_with(&dir.target_yaml());
    let people = format!("ou=people,{}", dir.base());
    let r = d
        .post("/Users", &fixture("entra/1.1-create-user.json"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let uid = r.body["id"].as_str().expect("id").to_string();
    let entry = dir.search(
        &people,
        "(uid=Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee)",
        &["cn", "sn", "mail", "givenName"],
    );
    assert!(has(&entry, "cn: givenName familyName"), "{entry}");
    assert!(has(&entry, "sn: familyName"), "{entry}");
    assert!(
        has(
            &entry,
            "mail: Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com"
        ),
        "{entry}"
    );

    // Entra's mixed PATCH: only the differing attributes change.
    let r = d
        .patch(
            &format!("/Users/{uid}"),
            &fill(&fixture("entra/1.5-patch-user-mixed-ops.json"), &[]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entry = dir.search(
        &people,
        "(uid=Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee)",
        &["mail", "departmentNumber"],
    );
    assert!(
        has(&entry, "mail: AdeleV2@REDACTED.onmicrosoft.com"),
        "{entry}"
    );
    assert!(has(&entry, "departmentNumber: Retail"), "{entry}");

    // A group with the user as member, by DN.
    let g = d
        .post("/Groups", &fixture("entra/1.9-create-group.json"))
        .await;
    assert_eq!(g.status, 201, "{}", g.text);
    let gid = g.body["id"].as_str().expect("id").to_string();
    let groups = format!("ou=groups,{}", dir.base());
    let group = dir.search(&groups, "(cn=displayName)", &["member"]);
    assert!(
        has(&group, &format!("member: cn=placeholder,{}", dir.base())),
        "an empty groupOfNames gets the placeholder: {group}"
    );
    let add = fill(
        &fixture("entra/1.13-add-member.json"),
        &[("MEMBER_ID", &uid)],
    );
    assert_eq!(d.patch(&format!("/Groups/{gid}"), &add).await.status, 204);
    let group = dir.search(&groups, "(cn=displayName)", &["member"]);
    assert!(
        group.contains("member: uid=Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee,ou=people,"),
        "{group}"
    );
    assert!(!group.contains("placeholder"), "{group}");

    // Renaming the user (Entra's userName PATCH) renames the entry and keeps the group right.
    let r = d
        .patch(
            &format!("/Users/{uid}"),
            &fill(&fixture("entra/1.6-patch-username.json"), &[]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let renamed = dir.search(
        &people,
        "(uid=5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com)",
        &["uid"],
    );
    assert!(
        renamed.contains("dn: uid=5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com,ou=people,"),
        "{renamed}"
    );
    assert!(
        dir.search(
            &people,
            "(uid=Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee)",
            &["uid"]
        )
        .trim()
        .is_empty()
    );
    let group = dir.search(&groups, "(cn=displayName)", &["member"]);
    assert!(
        group.contains("member: uid=5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com,ou=people,"),
        "{group}"
    );

    // Deleting the user deletes the entry and takes it out of the group.
    assert_eq!(d.delete(&format!("/Users/{uid}")).await.status, 204);
    assert!(
        dir.search(
            &people,
            "(uid=5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com)",
            &["uid"]
        )
        .trim()
        .is_empty()
    );
    let group = dir.search(&groups, "(cn=displayName)", &["member"]);
    assert!(
        has(&group, &format!("member: cn=placeholder,{}", dir.base())),
        "{group}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_refusal_is_a_400_with_its_diagnostic_and_nothing_is_kept() {
    let slapd = Slapd::start();
    let d = daemon_for(&slapd);
    // mail is IA5String in inetOrgPerson: a non-ASCII address is refused by the directory.
    let r = d
        .post(
            "/Users",
            &json!({"userName": "zoe", "emails": [{"type": "work", "value": "zoë@example.com"}]})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["scimType"], "invalidValue");
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|s| s.contains("invalidAttributeSyntax") || s.contains("syntax")),
        "{}",
        r.text
    );
    assert_eq!(
        d.get("/Users?filter=userName+eq+%22zoe%22").await.body["totalResults"],
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_directory_down_writes_succeed_and_are_delivered_in_order_when_it_returns() {
    outage(&mut Slapd::start()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_389_ds_down_writes_succeed_and_are_delivered_in_order_when_it_returns() {
    outage(&mut scim_bridge::dirsrv::DirSrv::start().unwrap_or_else(|e| panic!("{e}"))).await;
}

/// The directory stopped mid-run: writes succeed (kept pending) and are delivered in
/// journal order when it is back (a rename after a group listed the user), with no drift.
async fn outage(slapd: &mut dyn Directory) {
    let d = Daemon::start_with(&slapd.target_yaml());
    let first = d
        .post("/Users", &json!({"userName": "before"}).to_string())
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    slapd.stop();
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
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "title", "value": "two"}]})
    .to_string();
    assert_eq!(d.patch(&format!("/Users/{uid}"), &patch).await.status, 200);
    let group = d
        .post(
            "/Groups",
            &json!({"displayName": "outage crew", "members": [{"value": uid}]}).to_string(),
        )
        .await;
    assert_eq!(group.status, 201, "{}", group.text);
    let rename = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "userName", "value": "after"}]})
    .to_string();
    assert_eq!(d.patch(&format!("/Users/{uid}"), &rename).await.status, 200);
    slapd.start_again();
    let people = format!("ou=people,{}", slapd.base());
    let crew = format!("cn=outage crew,ou=groups,{}", slapd.base());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let entry = slapd.search(&people, "(uid=after)", &["title"]);
        let members = slapd.search(&crew, "(objectClass=*)", &["member"]);
        if has(&entry, "title: two") && has(&members, &format!("member: uid=after,{people}")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pending changes were not delivered in order: {entry}\n{members}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !slapd
            .search(&people, "(uid=during)", &["uid"])
            .contains("dn:"),
        "the rename moved the entry"
    );
    assert!(
        slapd
            .search(&people, "(uid=before)", &["uid"])
            .contains("dn:")
    );
    // Nothing lost, nothing left over: reconcile finds no drift.
    let report = d.reconcile_in_sync();
    assert!(
        report.contains("3 resources compared: 3 in sync, 0 differ, 0 orphan"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_and_renames_end_as_one_entry_per_user_at_its_last_name() {
    // Eight clients create users while the others' creates are in flight, and rename
    // every other one right after its create: a round converging new users side by side
    // takes the records committed while it runs, and a rename of a user it is still adding
    // must wait for that add, never become a second entry.
    let slapd = Slapd::start();
    let d = std::sync::Arc::new(daemon_for(&slapd));
    const CLIENTS: usize = 8;
    const USERS: usize = 30;
    let rename = |name: &str| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "userName", "value": name}]})
        .to_string()
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let d = d.clone();
            tokio::spawn(async move {
                for u in 0..USERS {
                    let created = d
                        .post(
                            "/Users",
                            &json!({"userName": format!("c{c}-u{u}")}).to_string(),
                        )
                        .await;
                    assert_eq!(created.status, 201, "{}", created.text);
                    if u % 2 == 0 {
                        let id = created.body["id"].as_str().expect("id");
                        let renamed = d
                            .patch(&format!("/Users/{id}"), &rename(&format!("c{c}-r{u}")))
                            .await;
                        assert_eq!(renamed.status, 200, "{}", renamed.text);
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("a client panicked");
    }
    // Every request heard its verdict; the rounds' verdicts are counted as they end.
    let series = |metrics: &str, name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = d.get(&format!("http://{}/metrics", d.addr)).await.text;
        let applied = series(&metrics, "scim_deliveries_total{outcome=\"applied\"}");
        if applied >= (CLIENTS * USERS * 3 / 2) as f64 || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        series(&metrics, "scim_deliveries_total{outcome=\"applied\"}"),
        (CLIENTS * USERS * 3 / 2) as f64,
        "{metrics}"
    );
    assert!(
        series(&metrics, "scim_delivery_fed_total") >= 1.0,
        "no round took records committed while it ran: {metrics}"
    );
    let people = format!("ou=people,{}", slapd.base);
    let found = slapd.ldapsearch(&people, "(uid=*)", &["uid"]);
    let mut uids: Vec<&str> = found
        .lines()
        .filter_map(|l| l.strip_prefix("uid: "))
        .collect();
    uids.sort_unstable();
    let mut want: Vec<String> = (0..CLIENTS)
        .flat_map(|c| {
            (0..USERS).map(move |u| match u % 2 {
                0 => format!("c{c}-r{u}"),
                _ => format!("c{c}-u{u}"),
            })
        })
        .collect();
    want.sort_unstable();
    assert_eq!(uids, want);
    let report = d.reconcile_in_sync();
    let total = CLIENTS * USERS;
    assert!(
        report.contains(&format!(
            "{total} resources compared: {total} in sync, 0 differ, 0 orphan"
        )),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_user_names_are_escaped_in_dns_and_stored_literally() {
    let slapd = Slapd::start();
    let d = daemon_for(&slapd);
    let people = format!("ou=people,{}", slapd.base);
    for (i, name) in [
        "Doe, John",
        "a+b=c",
        "#hash",
        " spaced ",
        "quote\"back\\slash",
        "semi;colon<angle>",
        "Zoë Åström 李",
        "*)(uid=*",
    ]
    .iter()
    .enumerate()
    {
        let r = d
            .post(
                "/Users",
                &json!({"userName": name, "name": {"familyName": format!("F{i}")}}).to_string(),
            )
            .await;
        assert_eq!(r.status, 201, "{name:?}: {}", r.text);
        // Found by its exact sn (a filter value the test escapes itself), with uid stored literally.
        let entry = slapd.ldapsearch(&people, &format!("(sn=F{i})"), &["uid"]);
        assert!(entry.contains("dn:"), "{name:?}: no entry:\n{entry}");
        let uid = entry
            .lines()
            .find_map(|l| {
                l.strip_prefix("uid: ").map(str::to_string).or_else(|| {
                    l.strip_prefix("uid:: ").map(|b| {
                        let out = Command::new("base64")
                            .arg("-d")
                            .stdin(std::process::Stdio::piped())
                            .stdout(std::process::Stdio::piped())
                            .spawn()
                            .and_then(|mut c| {
                                use std::io::Write;
                                c.stdin.take().expect("stdin").write_all(b.as_bytes())?;
                                c.wait_with_output()
                            });
                        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                            .unwrap_or_default()
                    })
                })
            })
            .unwrap_or_default();
        assert_eq!(uid, *name, "{entry}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_manager_patch_becomes_the_managers_dn() {
    let slapd = Slapd::start();
    let d = daemon_for(&slapd);
    let people = format!("ou=people,{}", slapd.base);
    // Entra creates users first, then links managers with a second PATCH.
    let report = d
        .post("/Users", &json!({"userName": "report"}).to_string())
        .await;
    let report_id = report.body["id"].as_str().expect("id").to_string();
    let boss = d
        .post("/Users", &json!({"userName": "boss"}).to_string())
        .await;
    let boss_id = boss.body["id"].as_str().expect("id").to_string();
    let body = fill(
        &fixture("entra/1.6-patch-manager-urn-string.json"),
        &[("MANAGER_ID", &boss_id)],
    );
    let r = d.patch(&format!("/Users/{report_id}"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entry = slapd.ldapsearch(&people, "(uid=report)", &["manager"]);
    assert!(
        has(&entry, &format!("manager: uid=boss,{people}")),
        "{entry}"
    );
}
