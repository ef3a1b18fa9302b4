//! Passwords: the SCIM `password` written as `userPassword` (OpenLDAP, 389-DS: the server
//! hashes it) or `unicodePwd` (Active Directory: the quoted password in UTF-16LE), over TLS
//! only, never journaled in clear and never logged (docs/passwords.md).
//!
//! Every directory runs the same scenario over LDAPS ([`sent_passwords_let_the_user_bind`]):
//! the user binds with the password it was created with, then with the one a PATCH and a
//! PUT set (the old one stops working), while the state directory, the journal export and
//! the daemon's log never hold the password in any encoding. The proof is a real bind as
//! the user (`ldapwhoami` over LDAPS), not a read of the attribute (AD never returns
//! `unicodePwd`). The rest runs on slapd alone: the refusal over a plain connection (in
//! check-config and in the 400), and a password that waits, sealed, through a directory
//! outage and a daemon restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Daemon;
use crate::journal::cli;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Passwords complex enough for AD's default policy (Samba provisions with complexity on).
const FIRST: &str = "Correct-Horse-7!battery";
const SECOND: &str = "Tr0ub4dor&3-staple";
const THIRD: &str = "Third-Pa55word?rotated";
/// How long delivery may take to settle.
const SETTLE: Duration = Duration::from_secs(15);

/// inetOrgPerson users under `ou=people` (OpenLDAP and 389-DS), with their password.
const INET_ORG_PERSON: &str = r#"
mapping:
  users:
    dn: 'uid={userName},ou=people,{base}'
    object_classes: [inetOrgPerson, organizationalPerson, person, top]
    attributes:
      uid:
        source: userName
      cn:
        expr: 'Coalesce([displayName], [userName])'
      sn:
        source: name.familyName
        default: "-"
    password:
      attribute: userPassword
"#;

/// A directory the scenario writes to over LDAPS.
struct Directory {
    name: &'static str,
    ldaps_url: String,
    ca_file: PathBuf,
    admin_dn: String,
    admin_password: String,
    base: String,
    /// The `mapping:` section.
    mapping: String,
    /// Whether the stored password can be read back (AD never returns `unicodePwd`).
    reads_back: bool,
}

impl Directory {
    /// The target section: LDAPS to the directory, trusting the test CA.
    fn target_yaml(&self, url: &str) -> String {
        format!(
            "target:\n  ldap:\n    urls:\n      - value: {url}\n    ca_file: {}\n    \
             bind_dn:\n      value: {}\n    bind_password:\n      value: {}\n    \
             base:\n      value: {}\n    pool_size: 2\n    connect_timeout: 1s\n    \
             operation_timeout: 5s\n{}",
            self.ca_file.display(),
            self.admin_dn,
            self.admin_password,
            self.base,
            self.mapping
        )
    }

    fn daemon(&self) -> Daemon {
        start_logged(&self.target_yaml(&self.ldaps_url))
    }

    /// An ldap-utils tool over LDAPS, trusting the test CA (the environment wins over
    /// ldap.conf; `LDAPNOINIT` would drop the CA too).
    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(name);
        c.env("LDAPTLS_CACERT", &self.ca_file)
            .env("LDAPTLS_REQCERT", "demand")
            .args(["-x", "-H", &self.ldaps_url]);
        c
    }

    /// Whether `dn` binds with `password` (over LDAPS): a bind, then a read of the root
    /// DSE (Samba has no WhoAmI operation).
    fn binds(&self, dn: &str, password: &str) -> bool {
        let out = self
            .tool("ldapsearch")
            .args([
                "-D",
                dn,
                "-w",
                password,
                "-b",
                "",
                "-s",
                "base",
                "(objectClass=*)",
                "1.1",
            ])
            .output()
            .expect("run ldapsearch (Debian package ldap-utils)");
        match out.status.code() {
            Some(0) => true,
            Some(49) => false,
            _ => panic!(
                "[{}] a bind as {dn} failed unexpectedly: {}{}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// The DN of the one entry under the base whose `attr` is `value` (as the admin).
    fn dn_of(&self, attr: &str, value: &str) -> String {
        let out = self
            .tool("ldapsearch")
            .args(["-LLL", "-o", "ldif-wrap=no", "-D", &self.admin_dn, "-w"])
            .arg(&self.admin_password)
            .args(["-b", &self.base, &format!("({attr}={value})"), "1.1"])
            .output()
            .expect("run ldapsearch");
        let text = String::from_utf8_lossy(&out.stdout);
        let dns: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("dn: "))
            .collect();
        assert_eq!(
            dns.len(),
            1,
            "[{}] entries with {attr}={value}: {text}{}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        dns[0].to_string()
    }

    /// The stored `userPassword` of `dn`, decoded (ldapsearch always prints it base64).
    fn stored_password(&self, dn: &str) -> String {
        let out = self
            .tool("ldapsearch")
            .args(["-LLL", "-o", "ldif-wrap=no", "-D", &self.admin_dn, "-w"])
            .arg(&self.admin_password)
            .args(["-b", dn, "-s", "base", "(objectClass=*)", "userPassword"])
            .output()
            .expect("run ldapsearch");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("userpassword:"))
            .unwrap_or_else(|| panic!("[{}] no userPassword at {dn}: {text}", self.name));
        match line.split_once(":: ") {
            Some((_, b64)) => {
                String::from_utf8_lossy(&crate::harness::base64_bytes(b64)).into_owned()
            }
            None => line
                .split_once(": ")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default(),
        }
    }
}

/// A daemon whose stderr (at debug level) goes to `daemon.log` in its directory (the
/// daemon runs there), beside the state directory.
fn start_logged(target_and_mapping: &str) -> Daemon {
    Daemon::start_wrapped(
        &format!("log:\n  level: debug\n{target_and_mapping}"),
        &["sh", "-c", "exec \"$@\" 2>>daemon.log", "sh"],
    )
}

fn log_of(d: &Daemon) -> String {
    std::fs::read_to_string(d.dir().join("daemon.log")).unwrap_or_default()
}

/// Waits until no journal record is pending (delivery has its verdicts).
async fn settled(d: &Daemon) {
    let deadline = Instant::now() + SETTLE;
    loop {
        if pending(d) == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "delivery did not settle within {SETTLE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state_db(d: &Daemon) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(
        d.state_dir.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open state.db");
    c.busy_timeout(Duration::from_secs(2))
        .expect("busy timeout");
    c
}

fn pending(d: &Daemon) -> i64 {
    state_db(d)
        .query_row(
            "SELECT count(*) FROM journal WHERE delivery = 'pending'",
            [],
            |r| r.get(0),
        )
        .expect("count pending records")
}

fn sealed_waiting(d: &Daemon) -> i64 {
    state_db(d)
        .query_row("SELECT count(*) FROM secrets", [], |r| r.get(0))
        .expect("count sealed passwords")
}

/// Every encoding of `password` a leak could take: UTF-8, UTF-16LE (unicodePwd), base64.
fn encodings(password: &str) -> Vec<(String, Vec<u8>)> {
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let b64 = scim_bridge::target::ldap::ldif::base64(password.as_bytes());
    vec![
        ("UTF-8".into(), password.as_bytes().to_vec()),
        ("UTF-16LE".into(), utf16),
        ("base64".into(), b64.into_bytes()),
    ]
}

/// Fails when any file under `dir` holds one of `passwords` in any encoding.
fn assert_nowhere_in(dir: &Path, passwords: &[&str]) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for password in passwords {
                for (how, needle) in encodings(password) {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                        "{} holds a password ({how})",
                        path.display()
                    );
                }
            }
        }
    }
}

/// Fails when the journal export or the daemon's log holds one of `passwords`.
fn assert_never_journaled_or_logged(d: &Daemon, passwords: &[&str]) {
    let (code, export, err) = cli(&[
        "journal",
        "export",
        "--state-dir",
        d.state_dir.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(code, 0, "{err}");
    let log = log_of(d);
    assert!(
        log.contains("LDAP modify (password)"),
        "the password write is not in the debug log at all:\n{log}"
    );
    for password in passwords {
        for (how, needle) in encodings(password) {
            let needle = String::from_utf8_lossy(&needle).to_string();
            assert!(
                !export.contains(&needle),
                "the journal export holds a password ({how})"
            );
            assert!(
                !log.contains(&needle),
                "the daemon's log holds a password ({how})"
            );
        }
    }
}

/// POSTs a user named `user_name` with `password`.
async fn post_user(d: &Daemon, user_name: &str, password: &str) -> crate::harness::Resp {
    d.post(
        "/Users",
        &json!({"userName": user_name, "password": password}).to_string(),
    )
    .await
}

async fn patch_user(d: &Daemon, id: &str, ops: Value) -> crate::harness::Resp {
    d.patch(
        &format!("/Users/{id}"),
        &json!({"schemas": [PATCH_OP], "Operations": ops}).to_string(),
    )
    .await
}

/// The user at `dn` binds with `now` and no longer with `before`.
fn assert_binds_only_with(dir: &Directory, dn: &str, now: &str, before: &str, what: &str) {
    assert!(
        dir.binds(dn, now),
        "[{}] {what}: the new password does not bind",
        dir.name
    );
    assert!(
        !dir.binds(dn, before),
        "[{}] {what}: the previous password still binds",
        dir.name
    );
}

/// The scenario every directory runs: create with a password, change it by PATCH (alone:
/// nothing stored changes) and by PUT; each time the new one binds and the old one not.
async fn sent_passwords_let_the_user_bind(dir: &Directory, user_dn_attr: (&str, &str)) {
    let d = dir.daemon();
    let r = d
        .post(
            "/Users",
            &json!({"userName": "pat.doe", "name": {"familyName": "Doe"}, "displayName": "Pat Doe", "password": FIRST})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.body.get("password").is_none(),
        "the password is returned: {}",
        r.text
    );
    let id = r.body["id"].as_str().expect("id").to_string();
    settled(&d).await;
    let dn = dir.dn_of(user_dn_attr.0, user_dn_attr.1);
    assert_binds_only_with(dir, &dn, FIRST, SECOND, "created with a password");
    if dir.reads_back {
        let stored = dir.stored_password(&dn);
        assert!(
            stored.starts_with('{') && !stored.contains(FIRST),
            "[{}] stored in clear: {stored}",
            dir.name
        );
    }
    assert_eq!(sealed_waiting(&d), 0, "a delivered password is still kept");

    // A PATCH that changes only the password: a new version, a record, a delivery.
    let version = r.body["meta"]["version"]
        .as_str()
        .expect("version")
        .to_string();
    let r = patch_user(
        &d,
        &id,
        json!([{"op": "replace", "path": "password", "value": SECOND}]),
    )
    .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let after = d.get(&format!("/Users/{id}")).await;
    assert_ne!(
        after.body["meta"]["version"].as_str(),
        Some(version.as_str()),
        "a password change is no new version"
    );
    settled(&d).await;
    assert_binds_only_with(dir, &dn, SECOND, FIRST, "a PATCH of the password");

    // A PUT carrying a password sets it too.
    let r = d
        .put(
            &format!("/Users/{id}"),
            &json!({"userName": "pat.doe", "name": {"familyName": "Doe"}, "displayName": "Pat Doe", "password": THIRD})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    settled(&d).await;
    assert_binds_only_with(dir, &dn, THIRD, SECOND, "a PUT with a password");

    // A PATCH of other attributes leaves the password alone.
    let r = patch_user(
        &d,
        &id,
        json!([{"op": "replace", "path": "title", "value": "Engineer"}]),
    )
    .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    settled(&d).await;
    assert!(
        dir.binds(&dn, THIRD),
        "[{}] a PATCH without a password changed it",
        dir.name
    );

    assert_nowhere_in(&d.state_dir, &[FIRST, SECOND, THIRD]);
    assert_never_journaled_or_logged(&d, &[FIRST, SECOND, THIRD]);
}

fn slapd_directory(slapd: &crate::slapd::Slapd) -> Directory {
    let tls = slapd.tls();
    Directory {
        name: "slapd",
        ldaps_url: tls.ldaps_url.clone(),
        ca_file: tls.ca_file.clone(),
        admin_dn: slapd.admin_dn.clone(),
        admin_password: slapd.admin_password.clone(),
        base: slapd.base.clone(),
        mapping: INET_ORG_PERSON.into(),
        reads_back: true,
    }
}

mod slapd {
    use super::*;
    use crate::slapd::Slapd;

    #[tokio::test(flavor = "multi_thread")]
    async fn passwords_reach_openldap_over_ldaps_hashed_and_never_journaled_or_logged() {
        let ldap = Slapd::start_tls();
        sent_passwords_let_the_user_bind(&slapd_directory(&ldap), ("uid", "pat.doe")).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn passwords_reach_openldap_over_starttls() {
        let ldap = Slapd::start_tls();
        let dir = slapd_directory(&ldap);
        let d = start_logged(&dir.target_yaml(&ldap.url).replace(
            "    pool_size: 2\n",
            "    pool_size: 2\n    starttls: true\n",
        ));
        let r = post_user(&d, "sam", FIRST).await;
        assert_eq!(r.status, 201, "{}", r.text);
        settled(&d).await;
        assert!(dir.binds(&dir.dn_of("uid", "sam"), FIRST));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn over_a_plain_connection_a_password_is_refused_with_a_400_and_check_config_says_why() {
        let ldap = Slapd::start_tls();
        let dir = slapd_directory(&ldap);
        let yaml = dir.target_yaml(&ldap.url);
        let d = start_logged(&yaml);

        let r = post_user(&d, "plain", FIRST).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.body["scimType"], "invalidValue", "{}", r.text);
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("over TLS only") && detail.contains(&ldap.url),
            "{detail}"
        );
        // Nothing was accepted: no resource, no record.
        let list = d.get("/Users").await;
        assert_eq!(list.body["totalResults"], 0, "{}", list.text);
        let records: i64 = state_db(&d)
            .query_row("SELECT count(*) FROM journal", [], |r| r.get(0))
            .expect("count records");
        assert_eq!(records, 0);
        // Requests without a password go through; a PATCH setting one is refused too.
        let r = d.post("/Users", r#"{"userName":"plain"}"#).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.body["id"].as_str().expect("id").to_string();
        let r = patch_user(
            &d,
            &id,
            json!([{"op": "replace", "path": "password", "value": SECOND}]),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.text);
        settled(&d).await;
        assert!(
            log_of(&d).contains("requests with a password will be refused"),
            "{}",
            log_of(&d)
        );
        assert_nowhere_in(&d.state_dir, &[FIRST, SECOND]);

        // check-config (offline) names the problem and fails; over LDAPS it passes.
        let (code, text) = crate::harness::check_config(d.dir(), &yaml, false);
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains("mapping.users.password") && text.contains("over TLS only"),
            "{text}"
        );
        let (code, text) =
            crate::harness::check_config(d.dir(), &dir.target_yaml(&dir.ldaps_url), false);
        assert_eq!(code, Some(0), "{text}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_password_waits_sealed_through_an_outage_and_a_restart_then_reaches_the_directory() {
        let mut ldap = Slapd::start_tls();
        let dir = slapd_directory(&ldap);
        let mut d = dir.daemon();
        ldap.stop();
        let r = post_user(&d, "late", FIRST).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.body["id"].as_str().expect("id").to_string();
        let r = patch_user(
            &d,
            &id,
            json!([{"op": "replace", "path": "password", "value": SECOND}]),
        )
        .await;
        assert!(r.status == 200 || r.status == 204, "{}", r.text);
        assert_eq!(pending(&d), 2);
        assert_eq!(
            sealed_waiting(&d),
            2,
            "each record keeps its own sealed password"
        );
        assert_nowhere_in(&d.state_dir, &[FIRST, SECOND]);

        // The daemon dies while the directory is down; both come back.
        d.kill_hard();
        ldap.start_again();
        d.start_again();
        settled(&d).await;
        let dn = dir.dn_of("uid", "late");
        assert_binds_only_with(&dir, &dn, SECOND, FIRST, "the last password sent");
        assert_eq!(sealed_waiting(&d), 0, "delivered passwords are still kept");
        assert_nowhere_in(&d.state_dir, &[FIRST, SECOND]);
        assert_never_journaled_or_logged(&d, &[FIRST, SECOND]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn without_a_password_mapping_a_sent_password_is_accepted_and_dropped() {
        let ldap = Slapd::start_tls();
        let dir = slapd_directory(&ldap);
        let yaml = dir
            .target_yaml(&ldap.url)
            .replace("    password:\n      attribute: userPassword\n", "");
        let d = start_logged(&yaml);
        let r = post_user(&d, "nopw", FIRST).await;
        assert_eq!(r.status, 201, "{}", r.text);
        settled(&d).await;
        let dn = dir.dn_of("uid", "nopw");
        assert!(!dir.binds(&dn, FIRST));
        assert_eq!(sealed_waiting(&d), 0);
        assert!(
            !d.state_dir.join("secrets.key").exists(),
            "a key made for nothing"
        );
        assert_nowhere_in(&d.state_dir, &[FIRST]);
    }
}

mod ds389 {
    use super::*;
    use scim_bridge::dirsrv::DirSrv;

    #[tokio::test(flavor = "multi_thread")]
    async fn passwords_reach_389ds_over_ldaps_hashed_and_never_journaled_or_logged() {
        let ds = DirSrv::start_tls().unwrap_or_else(|e| panic!("{e}"));
        let tls = ds.tls().expect("started with TLS");
        let dir = Directory {
            name: "389-DS",
            ldaps_url: tls.ldaps_url.clone(),
            ca_file: tls.ca_file.clone(),
            admin_dn: ds.admin_dn.clone(),
            admin_password: ds.admin_password.clone(),
            base: ds.base.clone(),
            mapping: INET_ORG_PERSON.into(),
            reads_back: true,
        };
        sent_passwords_let_the_user_bind(&dir, ("uid", "pat.doe")).await;
    }
}

/// Samba's ports are fixed: the `samba` module runs one test at a time (nextest group).
mod samba {
    use super::*;
    use scim_bridge::samba::SambaDc;

    const EXAMPLE: &str = include_str!("../../examples/ldap-ad.yaml");

    /// The shipped AD example's mapping with its password lines uncommented.
    fn example_mapping_with_passwords() -> String {
        let mapping = &EXAMPLE[EXAMPLE.find("\nmapping:").expect("a mapping section") + 1..];
        let enabled = mapping.replace(
            "    # password:\n    #   attribute: unicodePwd\n",
            "    password:\n      attribute: unicodePwd\n",
        );
        assert_ne!(
            enabled, mapping,
            "the example has no commented password block"
        );
        enabled
    }

    fn directory(dc: &SambaDc) -> Directory {
        Directory {
            name: "Samba AD",
            ldaps_url: dc.tls().ldaps_url.clone(),
            ca_file: dc.tls().ca_file.clone(),
            admin_dn: dc.admin_dn.clone(),
            admin_password: dc.admin_password.clone(),
            base: dc.base.clone(),
            mapping: example_mapping_with_passwords(),
            reads_back: false,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn passwords_reach_active_directory_as_unicode_pwd_over_ldaps() {
        let dc = SambaDc::start().unwrap_or_else(|e| panic!("{e}"));
        sent_passwords_let_the_user_bind(&directory(&dc), ("userPrincipalName", "pat.doe")).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_password_ad_policy_refuses_is_a_400_with_the_directorys_reason() {
        let dc = SambaDc::start().unwrap_or_else(|e| panic!("{e}"));
        let dir = directory(&dc);
        let d = dir.daemon();
        let r = d
            .post(
                "/Users",
                &json!({"userName": "weak@example.com", "password": "abc"}).to_string(),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("refused the password"), "{detail}");
        settled(&d).await;
        // The create was reverted: no user in SCIM, none left in AD.
        assert_eq!(d.get("/Users").await.body["totalResults"], 0);
        let out = dir
            .tool("ldapsearch")
            .args([
                "-LLL",
                "-D",
                &dir.admin_dn,
                "-w",
                &dir.admin_password,
                "-b",
                &dir.base,
            ])
            .arg("(userPrincipalName=weak@example.com)")
            .arg("1.1")
            .output()
            .expect("run ldapsearch");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("dn:"),
            "the refused user is in AD: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(sealed_waiting(&d), 0);
    }
}
