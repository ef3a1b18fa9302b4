//! TLS between the LDAP target and the directory, against a real slapd
//! (`Slapd::start_tls`: a throw-away CA, a server certificate for 127.0.0.1, a client
//! certificate that slapd maps to the admin): StartTLS and `ldaps://` verified against the
//! `ca_file`, a client certificate binding with SASL EXTERNAL, a server the trusted CAs did
//! not sign refused (the change stays pending), TLS files that cannot be used refused at
//! open. Entries are read back with the harness's ldapsearch (plain `ldap://`, the admin).

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::harness::{Daemon, fixture};
use crate::ldap_target::{person, schema, settings, user_dn};
use crate::slapd::{ADMIN_DN, ADMIN_PASSWORD, PEOPLE_DN, Slapd};
use scim_bridge::config::Secret;
use scim_bridge::target::ldap::LdapTarget;
use scim_bridge::target::{ClientCert, LdapSettings, Outcome, Target, TargetError};

/// Settings for a target writing to `url` as the admin (simple bind), trusting the test CA.
fn tls_settings(ldap: &Slapd, dir: &tempfile::TempDir, url: &str, starttls: bool) -> LdapSettings {
    LdapSettings {
        starttls,
        ca_file: Some(ldap.tls().ca_file.clone()),
        ..settings(ldap, dir, vec![url.to_string()])
    }
}

/// The same, binding with the test client certificate (SASL EXTERNAL) instead.
fn client_cert_settings(
    ldap: &Slapd,
    dir: &tempfile::TempDir,
    url: &str,
    starttls: bool,
) -> LdapSettings {
    let tls = ldap.tls();
    LdapSettings {
        bind_dn: String::new(),
        bind_password: Secret::new(String::new()),
        client_cert: Some(ClientCert {
            cert_file: tls.client_cert_file.clone(),
            key_file: tls.client_key_file.clone(),
        }),
        ..tls_settings(ldap, dir, url, starttls)
    }
}

fn open(settings: LdapSettings) -> LdapTarget {
    LdapTarget::open(settings, schema()).expect("the target opens")
}

fn open_error(settings: LdapSettings) -> TargetError {
    match LdapTarget::open(settings, schema()) {
        Ok(_) => panic!("the target opens"),
        Err(e) => e,
    }
}

/// Who created the entry of `uid` (slapd's `creatorsName`, normalized); `None`: no entry.
fn creator(ldap: &Slapd, uid: &str) -> Option<String> {
    let ldif = ldap.ldapsearch(PEOPLE_DN, &format!("(uid={uid})"), &["creatorsName"]);
    if ldif.trim().is_empty() {
        return None;
    }
    let creator = ldif
        .lines()
        .find_map(|l| l.strip_prefix("creatorsName: "))
        .unwrap_or_else(|| panic!("no creatorsName in {ldif}"));
    Some(creator.to_ascii_lowercase())
}

/// Applies a new user `uid` and checks the admin wrote it.
fn writes_a_user(target: &LdapTarget, ldap: &Slapd, uid: &str) {
    let change = person(&format!("id-{uid}"), uid);
    assert_eq!(Target::apply(target, &change), Outcome::Applied);
    assert_eq!(creator(ldap, uid).as_deref(), Some(ADMIN_DN));
    assert_eq!(target.linked_dn(&format!("id-{uid}")), Some(user_dn(uid)));
}

#[test]
fn plain_ldap_without_starttls_still_writes_an_entry() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = open(settings(&ldap, &dir, vec![ldap.url.clone()]));
    writes_a_user(&target, &ldap, "plain");
}

#[test]
fn starttls_with_the_test_ca_writes_an_entry() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = open(tls_settings(&ldap, &dir, &ldap.url, true));
    writes_a_user(&target, &ldap, "starttls");
}

#[test]
fn ldaps_with_the_test_ca_writes_an_entry() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = open(tls_settings(&ldap, &dir, &ldap.tls().ldaps_url, false));
    writes_a_user(&target, &ldap, "ldaps");
    // The pooled connection is reused for the next change.
    writes_a_user(&target, &ldap, "ldaps-again");
}

#[test]
fn ldaps_by_host_name_is_verified_against_the_name_too() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("ldaps://localhost:{}", ldap.tls().ldaps_port());
    let target = open(tls_settings(&ldap, &dir, &url, false));
    writes_a_user(&target, &ldap, "by-name");
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused_and_the_change_stays_unavailable() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut unknown = tls_settings(&ldap, &dir, &ldap.url, true);
    unknown.urls.push(ldap.tls().ldaps_url.clone());
    unknown.ca_file = Some(ldap.tls().unknown_ca_file.clone());
    // Out of reach is no error at open: changes stay pending until it can be reached.
    let target = open(unknown);
    match Target::apply(&target, &person("id-refused", "refused")) {
        Outcome::Unavailable(e) => {
            assert!(e.contains(&ldap.url), "{e}");
            assert!(e.contains(&ldap.tls().ldaps_url), "{e}");
            assert!(e.contains("certificate"), "{e}");
            assert!(!e.contains(ADMIN_PASSWORD), "the password leaks: {e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(creator(&ldap, "refused"), None, "nothing is written");
    assert_eq!(target.linked_dn("id-refused"), None);
}

#[test]
fn without_a_ca_file_only_the_system_roots_are_trusted() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    // The test CA is no system root: the default configuration (ldap3's) and ours (a
    // client certificate, no ca_file) both refuse the server.
    let system = LdapSettings {
        ca_file: None,
        ..tls_settings(&ldap, &dir, &ldap.tls().ldaps_url, false)
    };
    let with_cert = LdapSettings {
        ca_file: None,
        links_path: dir.path().join("other-links.db"),
        ..client_cert_settings(&ldap, &dir, &ldap.tls().ldaps_url, false)
    };
    for settings in [system, with_cert] {
        let target = open(settings);
        match Target::apply(&target, &person("id-system", "system")) {
            Outcome::Unavailable(e) => assert!(e.contains("certificate"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(creator(&ldap, "system"), None, "nothing is written");
}

#[test]
fn client_certificate_binds_with_sasl_external_and_writes() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    // No bind DN, no password: only the certificate, mapped by slapd to the admin, can
    // write (anonymous may only read).
    let target = open(client_cert_settings(
        &ldap,
        &dir,
        &ldap.tls().ldaps_url,
        false,
    ));
    writes_a_user(&target, &ldap, "external");
}

#[test]
fn client_certificate_binds_over_starttls_too() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = open(client_cert_settings(&ldap, &dir, &ldap.url, true));
    writes_a_user(&target, &ldap, "external-starttls");
}

#[test]
fn a_client_certificate_for_plain_ldap_is_refused_at_open() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut s = client_cert_settings(&ldap, &dir, &ldap.tls().ldaps_url, false);
    s.urls.push(ldap.url.clone());
    let e = open_error(s).to_string();
    assert!(e.contains(&ldap.url), "{e}");
    assert!(e.contains("starttls"), "{e}");
}

#[test]
fn an_unreadable_ca_file_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("no-such-ca.pem");
    let mut s = unreachable_settings(&dir);
    s.ca_file = Some(missing.clone());
    let e = open_error(s).to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("cannot read"), "{e}");
}

#[test]
fn tls_files_without_a_certificate_or_a_matching_key_are_refused_at_open() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    let tls = ldap.tls();
    let named = |e: TargetError, file: &std::path::Path| {
        let e = e.to_string();
        assert!(e.contains(&file.display().to_string()), "{file:?}: {e}");
        e
    };

    // A key where the CA certificates should be.
    let mut s = tls_settings(&ldap, &dir, &tls.ldaps_url, false);
    s.ca_file = Some(tls.client_key_file.clone());
    let e = named(open_error(s), &tls.client_key_file);
    assert!(e.contains("no PEM CA certificate"), "{e}");

    // A client certificate file holding no certificate, and a missing key file.
    let mut s = client_cert_settings(&ldap, &dir, &tls.ldaps_url, false);
    s.client_cert = Some(ClientCert {
        cert_file: tls.client_key_file.clone(),
        key_file: tls.client_key_file.clone(),
    });
    named(open_error(s), &tls.client_key_file);
    let missing_key = dir.path().join("no-such-key.pem");
    let mut s = client_cert_settings(&ldap, &dir, &tls.ldaps_url, false);
    s.client_cert = Some(ClientCert {
        cert_file: tls.client_cert_file.clone(),
        key_file: missing_key.clone(),
    });
    named(open_error(s), &missing_key);

    // A key that is not the certificate's (the server's).
    let other_key = tls.server_key_file.clone();
    let mut s = client_cert_settings(&ldap, &dir, &tls.ldaps_url, false);
    s.client_cert = Some(ClientCert {
        cert_file: tls.client_cert_file.clone(),
        key_file: other_key.clone(),
    });
    let e = named(open_error(s), &tls.client_cert_file);
    assert!(e.contains(&other_key.display().to_string()), "{e}");
}

#[test]
fn the_bind_password_is_never_logged() {
    let ldap = Slapd::start_tls();
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(log.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let target = open(tls_settings(&ldap, &dir, &ldap.url, true));
        writes_a_user(&target, &ldap, "logged");
        // A refused bind is logged as an error, with the bind DN only.
        let wrong = LdapSettings {
            bind_password: Secret::new(format!("{ADMIN_PASSWORD}-wrong")),
            links_path: dir.path().join("other-links.db"),
            ..tls_settings(&ldap, &dir, &ldap.url, true)
        };
        let target = open(wrong);
        match Target::apply(&target, &person("id-wrong", "wrong")) {
            Outcome::Unavailable(e) => assert!(!e.contains(ADMIN_PASSWORD), "{e}"),
            other => panic!("{other:?}"),
        }
    });
    let text = log.text();
    assert!(text.contains("bound to the LDAP directory"), "{text}");
    assert!(text.contains("refuses the bind"), "{text}");
    assert!(
        !text.contains(ADMIN_PASSWORD),
        "the password is logged:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_writes_over_ldaps_with_the_configured_ca_and_client_certificate() {
    let ldap = Slapd::start_tls();
    let tls = ldap.tls();
    let example = include_str!("../../examples/ldap-openldap.yaml");
    let start = example.find("\ntarget:").expect("target section") + 1;
    let yaml = example[start..]
        .replace(
            "      - env: LDAP_URL\n",
            &format!(
                "      - value: {}\n    ca_file: {}\n    client_cert:\n      cert_file: {}\n      key_file: {}\n",
                tls.ldaps_url,
                tls.ca_file.display(),
                tls.client_cert_file.display(),
                tls.client_key_file.display()
            ),
        )
        .replace(
            "    bind_dn:\n      env: LDAP_BIND_DN\n",
            "",
        )
        .replace(
            "    bind_password:                    # never logged\n      env: LDAP_BIND_PASSWORD\n",
            "",
        )
        .replace("env: LDAP_BASE_DN", &format!("value: {}", ldap.base))
        .replace("operation_timeout: 10s", "operation_timeout: 2s")
        .replace("connect_timeout: 5s", "connect_timeout: 1s");
    assert!(
        !yaml.contains("bind_dn") && !yaml.contains("env: LDAP_BIND_PASSWORD"),
        "the example config changed:\n{yaml}"
    );
    let d = Daemon::start_with(&yaml);
    let r = d
        .post("/Users", &fixture("entra/1.1-create-user.json"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        creator(&ldap, "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee").as_deref(),
        Some(ADMIN_DN),
        "written by the client certificate's identity"
    );
}

/// Settings that never need a directory (refused before connecting).
fn unreachable_settings(dir: &tempfile::TempDir) -> LdapSettings {
    LdapSettings {
        urls: vec!["ldaps://127.0.0.1:1".into()],
        bind_dn: ADMIN_DN.into(),
        bind_password: Secret::new(ADMIN_PASSWORD.into()),
        starttls: false,
        ca_file: None,
        client_cert: None,
        connect_timeout: std::time::Duration::from_secs(1),
        operation_timeout: std::time::Duration::from_secs(1),
        give_up_after: std::time::Duration::from_secs(120),
        pool_size: 1,
        links_path: dir.path().join("ldap-links.db"),
    }
}

/// Everything a tracing subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}
