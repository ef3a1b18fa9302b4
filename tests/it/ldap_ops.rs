//! Operating an LDAP target through the daemon and the CLI: the disable and archive
//! policies from the config file, `reconcile` (dry run and converge), `mapping preview`'s
//! LDIF and `check-config --online`, against a real slapd.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::{Daemon, fill, fixture};
use crate::slapd::Slapd;

/// The example LDAP config pointed at `slapd`, with `edit` applied to its text.
fn ldap_yaml(slapd: &Slapd, edit: impl Fn(String) -> String) -> String {
    edit(slapd.example_target_yaml())
}

/// The example's users mapping with a disable policy that locks, moves and drops
/// memberships, and an archive delete policy.
fn with_policies(yaml: String) -> String {
    yaml.replace(
        "    on_delete: delete                 # delete | disable\n",
        "    create_parents: true
    on_disable:
      set:
        pwdAccountLockedTime: \"000001010000Z\"
      move_to: 'ou=disabled,{base}'
      remove_memberships: true
    on_delete: archive
    archive_to: 'ou=archive,{base}'
    purge_after: 2s
",
    )
}

/// Runs the CLI in the config's directory (its `state.dir` is relative to it, as for the
/// daemon).
fn cli(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(config.parent().expect("the config's directory"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run scim-bridge")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn has(ldif: &str, line: &str) -> bool {
    ldif.lines().any(|l| l.trim_end() == line)
}

const USER_NAME: &str = "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee";

async fn create_user_in_group(d: &Daemon) -> (String, String) {
    let r = d
        .post("/Users", &fixture("entra/1.1-create-user.json"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let uid = r.body["id"].as_str().expect("id").to_string();
    let g = d
        .post("/Groups", &fixture("entra/1.9-create-group.json"))
        .await;
    assert_eq!(g.status, 201, "{}", g.text);
    let gid = g.body["id"].as_str().expect("id").to_string();
    let r = d
        .patch(
            &format!("/Groups/{gid}"),
            &fill(
                &fixture("entra/1.13-add-member.json"),
                &[("MEMBER_ID", &uid)],
            ),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    (uid, gid)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_user_is_locked_moved_and_leaves_its_groups_until_enabled_again() {
    let slapd = Slapd::start();
    let d = Daemon::start_with(&ldap_yaml(&slapd, with_policies));
    let (uid, _gid) = create_user_in_group(&d).await;
    let group = format!("cn=displayName,ou=groups,{}", slapd.base);
    let member = format!("uid={USER_NAME},ou=people,{}", slapd.base);
    let moved = format!("uid={USER_NAME},ou=disabled,{}", slapd.base);
    assert!(has(
        &slapd.ldapsearch(&group, "(objectClass=*)", &["member"]),
        &format!("member: {member}")
    ));

    let r = d
        .patch(
            &format!("/Users/{uid}"),
            &fixture("entra/1.7-disable-bool.json"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entry = slapd.ldapsearch(&moved, "(objectClass=*)", &["pwdAccountLockedTime"]);
    assert!(
        has(&entry, "pwdAccountLockedTime: 000001010000Z"),
        "locked and moved under ou=disabled (created): {entry}"
    );
    let members = slapd.ldapsearch(&group, "(objectClass=*)", &["member"]);
    assert!(!members.contains(USER_NAME), "left the group: {members}");
    assert!(
        has(&members, &format!("member: cn=placeholder,{}", slapd.base)),
        "the placeholder stands in: {members}"
    );

    let enable = fixture("entra/1.7-disable-bool.json").replace("false", "true");
    let r = d.patch(&format!("/Users/{uid}"), &enable).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entry = slapd.ldapsearch(&member, "(objectClass=*)", &["pwdAccountLockedTime"]);
    assert!(entry.contains(&format!("dn: {member}")), "back: {entry}");
    assert!(!entry.contains("pwdAccountLockedTime"), "unlocked: {entry}");
    let members = slapd.ldapsearch(&group, "(objectClass=*)", &["member"]);
    assert!(
        has(&members, &format!("member: {member}")),
        "rejoined the group that lists it: {members}"
    );
    assert!(!members.contains("placeholder"), "{members}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_user_is_archived_out_of_its_groups_then_purged_after_its_retention() {
    let slapd = Slapd::start();
    let mut d = Daemon::start_with(&ldap_yaml(&slapd, with_policies));
    let (uid, _gid) = create_user_in_group(&d).await;
    let r = d.delete(&format!("/Users/{uid}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let archived = format!("uid={USER_NAME},ou=archive,{}", slapd.base);
    let entry = slapd.ldapsearch(&archived, "(objectClass=*)", &["pwdAccountLockedTime"]);
    assert!(
        has(&entry, "pwdAccountLockedTime: 000001010000Z"),
        "archived and locked: {entry}"
    );
    let group = format!("cn=displayName,ou=groups,{}", slapd.base);
    let members = slapd.ldapsearch(&group, "(objectClass=*)", &["member"]);
    assert!(!members.contains(USER_NAME), "{members}");

    // The purge runs at start; the retention is 2 s.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    d.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = slapd.ldapsearch(&slapd.base, &format!("(uid={USER_NAME})"), &["uid"]);
        if !left.contains("dn:") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the archived entry was not purged: {left}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_reports_hand_edits_as_ldif_and_converges_them() {
    let slapd = Slapd::start();
    let d = Daemon::start_with(&ldap_yaml(&slapd, |y| y));
    let (_uid, _gid) = create_user_in_group(&d).await;
    let config = d.config_path.clone();

    let out = cli(&["reconcile", "--dry-run"], &config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("2 resources compared: 2 in sync, 0 differ"),
        "{}",
        text(&out)
    );

    // Drift: a value changed by hand, a mapped value deleted, the group entry deleted.
    let member = format!("uid={USER_NAME},ou=people,{}", slapd.base);
    slapd.ldapmodify(&format!(
        "dn: {member}\nchangetype: modify\nreplace: cn\ncn: edited by hand\n-\ndelete: givenName\n"
    ));
    let group = format!("cn=displayName,ou=groups,{}", slapd.base);
    slapd.ldapdelete(&group);

    let out = cli(&["reconcile", "--dry-run"], &config);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "drift is exit 1: {report}");
    assert!(report.contains("changetype: modify"), "{report}");
    assert!(has(&report, "replace: cn"), "{report}");
    assert!(has(&report, "cn: givenName familyName"), "{report}");
    assert!(has(&report, "replace: givenName"), "{report}");
    assert!(has(&report, &format!("dn: {group}")), "{report}");
    assert!(has(&report, "changetype: add"), "{report}");
    let entry = slapd.ldapsearch(&member, "(objectClass=*)", &["cn"]);
    assert!(
        has(&entry, "cn: edited by hand"),
        "a dry run writes nothing: {entry}"
    );

    let out = cli(&["reconcile"], &config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let entry = slapd.ldapsearch(&member, "(objectClass=*)", &["cn", "givenName"]);
    assert!(has(&entry, "cn: givenName familyName"), "{entry}");
    assert!(has(&entry, "givenName: givenName"), "{entry}");
    let members = slapd.ldapsearch(&group, "(objectClass=*)", &["member"]);
    assert!(has(&members, &format!("member: {member}")), "{members}");

    let out = cli(&["reconcile", "--dry-run"], &config);
    assert_eq!(out.status.code(), Some(0), "no drift left: {}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn mapping_preview_prints_the_entry_and_the_modify_as_ldif() {
    let slapd = Slapd::start();
    let d = Daemon::start_with(&ldap_yaml(&slapd, |y| y));
    let r = d
        .post("/Users", &fixture("entra/1.1-create-user.json"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut changed = r.body.clone();
    changed["displayName"] = serde_json::json!("A New Name");
    let file = d.dir().join("user.json");
    std::fs::write(&file, changed.to_string()).expect("write the resource");
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(d.dir())
        .args(["mapping", "preview", "--config"])
        .arg(&d.config_path)
        .args(["--resource", "user"])
        .arg(&file)
        .output()
        .expect("run");
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    let dn = format!("uid={USER_NAME},ou=people,{}", slapd.base);
    assert!(has(&report, &format!("dn: {dn}")), "{report}");
    assert!(has(&report, "changetype: add"), "the entry: {report}");
    assert!(has(&report, "objectClass: inetOrgPerson"), "{report}");
    assert!(has(&report, "changetype: modify"), "the modify: {report}");
    assert!(has(&report, "replace: displayName"), "{report}");
    assert!(has(&report, "displayName: A New Name"), "{report}");
    assert!(has(&report, "replace: cn"), "{report}");
    let entry = slapd.ldapsearch(&dn, "(objectClass=*)", &["displayName"]);
    assert!(
        !entry.contains("A New Name"),
        "a preview writes nothing: {entry}"
    );
}

#[test]
fn check_config_online_flags_what_the_directory_schema_does_not_know() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = format!(
        "auth:\n  tokens:\n    - name: t\n      secret:\n        value: 0123456789abcdef0123456789abcdef\nstate:\n  dir: {}\n{}",
        dir.path().join("state").display(),
        ldap_yaml(&slapd, |y| y)
    );
    let path = dir.path().join("good.yaml");
    std::fs::write(&path, &good).expect("write");
    let out = cli(&["check-config", "--online"], &path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("0 error(s)"), "{}", text(&out));

    let bad = good.replace(
        "object_classes: [inetOrgPerson, organizationalPerson, person, top]",
        "object_classes: [inetOrgPersn, organizationalPerson, person, top]",
    );
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, &bad).expect("write");
    let out = cli(&["check-config", "--online"], &path);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("inetOrgPersn"), "{report}");
    assert!(report.contains("did you mean"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_the_directory_keeps_answering_unexpectedly_is_given_up_and_the_ones_behind_it_are_delivered()
 {
    let slapd = Slapd::start();
    // Users titled "Remote" go under a referral: slapd answers every operation there
    // with resultCode 10 (referral), which retrying does not change.
    slapd.ldapadd(
        "dn: ou=elsewhere,dc=example,dc=com\nobjectClass: referral\nobjectClass: extensibleObject\n\
         ou: elsewhere\nref: ldap://127.0.0.1:9/ou=elsewhere,dc=example,dc=com\n",
    );
    let yaml = ldap_yaml(&slapd, |y| {
        y.replace(
            "dn: 'uid={userName},ou=people,{base}'",
            "dn: 'uid={userName},ou={Switch([title], \"people\", \"Remote\", \"elsewhere\")},{base}'",
        )
        .replace("    operation_timeout: 2s\n", "    operation_timeout: 2s\n    give_up_after: 1s\n")
    });
    assert!(
        yaml.contains("give_up_after: 1s") && yaml.contains("Switch"),
        "{yaml}"
    );
    let d = std::sync::Arc::new(Daemon::start_with(&yaml));
    let stuck = {
        let d = d.clone();
        tokio::spawn(async move {
            d.post(
                "/Users",
                r#"{"userName":"far","title":"Remote","name":{"familyName":"Far"}}"#,
            )
            .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let behind = d
        .post(
            "/Users",
            r#"{"userName":"near","name":{"familyName":"Near"}}"#,
        )
        .await;
    assert_eq!(behind.status, 201, "{}", behind.text);
    let stuck = stuck.await.expect("the first request");
    // The first is refused with the directory's answer and why it was given up; the one
    // behind it waited only for that, then reached the directory.
    assert_eq!(stuck.status, 400, "{}", stuck.text);
    let detail = stuck.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("referral") && detail.contains("given up"),
        "{detail}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let near = slapd.ldapsearch("ou=people,dc=example,dc=com", "(uid=near)", &["uid"]);
    assert!(near.contains("uid: near"), "{near}");
    // The refused create was undone in the state store too.
    let far = d.get("/Users?filter=userName%20eq%20%22far%22").await;
    assert_eq!(far.body["totalResults"], 0, "{}", far.text);
}
