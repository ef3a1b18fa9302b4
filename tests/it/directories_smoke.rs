//! The harnesses of the two other real directories — `scim_bridge::dirsrv::DirSrv` (389
//! Directory Server) and `scim_bridge::samba::SambaDc` (Samba AD DC) — and the directory
//! facts the LDAP target relies on: a fresh server with the base entries, admin writes
//! visible to searches, data that survives a stop and a start, account locking, and a
//! missing program named in the error. The `samba` tests run one at a time (nextest test
//! group `samba`, `.config/nextest.toml`): Samba's ports are fixed.

use std::path::Path;

use scim_bridge::slapd::DirectoryError;

/// The value, or a panic with the harness's message (what is missing, or the server's log).
fn ok<T>(result: Result<T, DirectoryError>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// A simple bind as `dn` and a read of the root DSE (`ldapsearch`; Samba has no WhoAmI
/// operation): the exit code, which is the failing result code (49 invalidCredentials, 53
/// unwillingToPerform, …), or 255 when it cannot connect (e.g. an untrusted certificate).
/// With `ca_file`, LDAPS trusts that CA only (`LDAPTLS_CACERT`, which `LDAPNOINIT` would
/// ignore).
fn bind(url: &str, dn: &str, password: &str, ca_file: Option<&Path>) -> Option<i32> {
    let mut command = std::process::Command::new("ldapsearch");
    match ca_file {
        Some(ca_file) => command.env("LDAPTLS_CACERT", ca_file),
        None => command.env("LDAPNOINIT", "1"),
    };
    command
        .args([
            "-x",
            "-o",
            "nettimeout=5",
            "-H",
            url,
            "-D",
            dn,
            "-w",
            password,
        ])
        .args(["-s", "base", "-b", "", "(objectClass=*)", "1.1"])
        .output()
        .expect("run ldapsearch")
        .status
        .code()
}

mod dirsrv {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use scim_bridge::dirsrv::{DirSrv, DirSrvPrograms, GROUPS_DN, PEOPLE_DN};
    use scim_bridge::slapd::DirectoryError;

    use super::{bind, ok};

    const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=com";
    const ALICE: &str = "\
dn: uid=alice,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@example.com
userPassword: alice-password
";

    #[test]
    fn starts_with_the_suffix_people_and_groups_on_a_free_loopback_port() {
        let ds = ok(DirSrv::start());
        assert_ne!(ds.port(), 0);
        assert_eq!(ds.url, format!("ldap://127.0.0.1:{}", ds.port()));
        assert_eq!(ds.base, "dc=example,dc=com");
        assert_eq!(ds.admin_dn, "cn=Directory Manager");
        assert!(ds.is_running());
        assert!(ds.pid().is_some());

        let tree = ok(ds.ldapsearch(&ds.base, "(objectClass=*)", &["1.1"]));
        for dn in ["dc=example,dc=com", PEOPLE_DN, GROUPS_DN] {
            assert!(
                tree.contains(&format!("dn: {dn}\n")),
                "{dn} missing in:\n{tree}"
            );
        }
        assert_eq!(
            ok(ds.ldapsearch(PEOPLE_DN, "(objectClass=inetOrgPerson)", &[])),
            ""
        );
        assert_eq!(
            ok(ds.ldapsearch("ou=nowhere,dc=example,dc=com", "(objectClass=*)", &[])),
            ""
        );
        let yaml = ds.example_target_yaml();
        assert!(yaml.starts_with("target:\n"), "{yaml}");
        assert!(yaml.contains(&format!("- value: {}\n", ds.url)), "{yaml}");
        assert!(yaml.contains("value: cn=Directory Manager\n"), "{yaml}");
    }

    #[test]
    fn an_entry_added_with_ldapadd_survives_stop_and_start_again() {
        let mut ds = ok(DirSrv::start());
        ok(ds.ldapadd(ALICE));
        let found = ok(ds.ldapsearch(&ds.base, "(uid=alice)", &["cn", "entryUUID", "objectClass"]));
        assert!(found.contains(&format!("dn: {ALICE_DN}\n")), "{found}");
        assert!(found.contains("cn: Alice Liddell\n"), "{found}");
        assert!(
            found.contains("entryUUID: "),
            "389-DS has the entryuuid plugin:\n{found}"
        );
        assert!(
            found.contains("objectClass: top\n"),
            "the server adds top:\n{found}"
        );

        let url = ds.url.clone();
        ds.stop();
        assert!(!ds.is_running());
        assert!(ds.pid().is_none());
        assert!(
            ds.ldapsearch(&ds.base, "(uid=alice)", &[]).is_err(),
            "389-DS still answers after stop()"
        );

        ok(ds.start_again());
        assert!(ds.is_running());
        assert_eq!(ds.url, url, "the same port after start_again()");
        let found = ok(ds.ldapsearch(PEOPLE_DN, "(uid=alice)", &["mail"]));
        assert!(found.contains("mail: alice@example.com\n"), "{found}");

        ok(ds.ldapmodify(&format!(
            "dn: {ALICE_DN}\nchangetype: modify\nreplace: mail\nmail: alice@example.org\n"
        )));
        ok(ds.restart());
        let found = ok(ds.ldapsearch(PEOPLE_DN, "(uid=alice)", &["mail"]));
        assert!(found.contains("mail: alice@example.org\n"), "{found}");
        ok(ds.ldapdelete(ALICE_DN));
        assert_eq!(ok(ds.ldapsearch(&ds.base, "(uid=alice)", &[])), "");
    }

    #[test]
    fn a_user_with_ns_account_lock_true_cannot_bind_until_it_is_removed() {
        let ds = ok(DirSrv::start());
        ok(ds.ldapadd(ALICE));
        assert_eq!(bind(&ds.url, ALICE_DN, "alice-password", None), Some(0));
        let stored = ok(ds.ldapsearch(PEOPLE_DN, "(uid=alice)", &["userPassword"]));
        assert!(
            !stored.contains("alice-password"),
            "a cleartext userPassword is stored hashed:\n{stored}"
        );

        ok(ds.ldapmodify(&format!(
            "dn: {ALICE_DN}\nchangetype: modify\nadd: nsAccountLock\nnsAccountLock: TRUE\n"
        )));
        assert_eq!(
            bind(&ds.url, ALICE_DN, "alice-password", None),
            Some(53),
            "a locked account's bind is unwillingToPerform (\"Account inactivated\")"
        );
        let locked = ok(ds.ldapsearch(PEOPLE_DN, "(nsAccountLock=TRUE)", &["1.1"]));
        assert!(locked.contains(&format!("dn: {ALICE_DN}\n")), "{locked}");

        ok(ds.ldapmodify(&format!(
            "dn: {ALICE_DN}\nchangetype: modify\ndelete: nsAccountLock\n"
        )));
        assert_eq!(bind(&ds.url, ALICE_DN, "alice-password", None), Some(0));
    }

    #[test]
    fn start_tls_adds_ldaps_on_a_second_port_trusted_with_the_harness_ca_only() {
        let ds = ok(DirSrv::start_tls());
        let tls = ds.tls().expect("start_tls() has a TLS side");
        assert_ne!(tls.ldaps_port(), ds.port());
        assert_eq!(
            tls.ldaps_url,
            format!("ldaps://127.0.0.1:{}", tls.ldaps_port())
        );
        let (url, dn, password) = (&tls.ldaps_url, &ds.admin_dn, &ds.admin_password);
        assert_eq!(
            bind(url, dn, password, Some(&tls.ca_file)),
            Some(0),
            "{}",
            ds.log()
        );
        assert_eq!(
            bind(url, dn, password, Some(&tls.unknown_ca_file)),
            Some(255),
            "a CA that signed nothing of the server's must not be enough"
        );
        // The plain port still works, and a plain start has no TLS side.
        assert_eq!(bind(&ds.url, dn, password, None), Some(0));
        assert!(ok(DirSrv::start()).tls().is_none());
    }

    #[test]
    fn an_instance_left_by_a_killed_test_process_is_reaped_by_the_next_start() {
        // What a killed test leaves: an instance directory whose owner.lock nobody holds,
        // and a server (here a shell with the config directory on its command line). It is
        // made under another name and renamed into place, so the reaper of a test running
        // in parallel never sees it half made.
        let orphan = std::env::temp_dir().join(format!("389-orphan-{}", std::process::id()));
        let staging =
            std::env::temp_dir().join(format!("staging-389-orphan-{}", std::process::id()));
        std::fs::create_dir_all(staging.join("run")).expect("create the orphan directory");
        std::fs::write(staging.join("owner.lock"), "").expect("write owner.lock");
        let config_dir = orphan.join("etc/dirsrv/slapd-it").display().to_string();
        // `read` is a builtin: one process, waiting on the pipe until it is killed.
        let mut server = std::process::Command::new("sh")
            .args(["-c", "read line", &config_dir])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the orphan server");
        std::fs::write(staging.join("run/slapd.pid"), server.id().to_string())
            .expect("write the pidfile");
        std::fs::rename(&staging, &orphan).expect("move the orphan directory into place");

        let _ds = ok(DirSrv::start());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            match server.try_wait().expect("wait for the orphan server") {
                Some(status) => break status,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                None => {
                    let _ = server.kill();
                    panic!(
                        "the orphan server still runs (its directory {}, owner.lock {}, pidfile {:?})",
                        if orphan.exists() {
                            "is still there"
                        } else {
                            "is gone"
                        },
                        if orphan.join("owner.lock").exists() {
                            "is still there"
                        } else {
                            "is gone"
                        },
                        std::fs::read_to_string(orphan.join("run/slapd.pid")).ok()
                    );
                }
            }
        };
        assert!(!status.success(), "killed, not exited: {status}");
        assert!(!orphan.exists(), "{} is still there", orphan.display());
    }

    #[test]
    fn a_missing_ns_slapd_is_named_in_the_error() {
        let programs = DirSrvPrograms {
            ns_slapd: PathBuf::from("/nonexistent/ns-slapd"),
            dscreate: PathBuf::from("/nonexistent/dscreate"),
        };
        match DirSrv::start_with(programs) {
            Err(DirectoryError::Missing(message)) => {
                assert!(message.contains("/nonexistent/ns-slapd"), "{message}");
                assert!(message.contains("389-ds-base"), "{message}");
            }
            Err(other) => panic!("expected Missing, got: {other}"),
            Ok(ds) => panic!("started without ns-slapd on {}", ds.url),
        }
    }
}

mod samba {
    use std::path::PathBuf;
    use std::time::Duration;

    use ldap3::{LdapConn, LdapConnSettings, Scope, SearchEntry};
    use scim_bridge::samba::{GROUPS_DN, PEOPLE_DN, SambaDc, SambaPrograms};
    use scim_bridge::slapd::DirectoryError;

    use super::{bind, ok};

    const ALICE_DN: &str = "CN=Alice Liddell,OU=people,DC=example,DC=com";
    const ALICE: &str = "\
dn: CN=Alice Liddell,OU=people,DC=example,DC=com
objectClass: user
sAMAccountName: alice
userPrincipalName: alice@example.com
givenName: Alice
sn: Liddell
";

    #[test]
    fn starts_with_people_and_groups_on_the_fixed_ports() {
        let mut ad = ok(SambaDc::start());
        assert_eq!(ad.url, "ldap://127.0.0.1:389");
        assert_eq!(ad.port(), 389);
        assert_eq!(ad.tls().ldaps_url, "ldaps://127.0.0.1:636");
        assert_eq!(ad.base, "DC=example,DC=com");
        assert_eq!(ad.admin_dn, "CN=Administrator,CN=Users,DC=example,DC=com");
        assert!(ad.is_running());

        let ous = ok(ad.ldapsearch(&ad.base, "(objectClass=organizationalUnit)", &["1.1"]));
        for dn in [
            PEOPLE_DN,
            GROUPS_DN,
            "OU=Domain Controllers,DC=example,DC=com",
        ] {
            assert!(
                ous.contains(&format!("dn: {dn}\n")),
                "{dn} missing in:\n{ous}"
            );
        }
        assert_eq!(ok(ad.ldapsearch(PEOPLE_DN, "(objectClass=user)", &[])), "");
        let yaml = ad.target_yaml();
        assert!(yaml.contains("- value: ldap://127.0.0.1:389\n"), "{yaml}");
    }

    #[test]
    fn an_entry_added_with_ldapadd_survives_stop_and_start_again() {
        let mut ad = ok(SambaDc::start());
        ok(ad.ldapadd(ALICE));
        let found = ok(ad.ldapsearch(PEOPLE_DN, "(sAMAccountName=alice)", &["objectGUID"]));
        assert!(found.contains(&format!("dn: {ALICE_DN}\n")), "{found}");

        ad.stop();
        assert!(!ad.is_running());
        assert!(
            ad.ldapsearch(PEOPLE_DN, "(sAMAccountName=alice)", &[])
                .is_err(),
            "samba still answers after stop()"
        );
        ok(ad.start_again());
        assert!(ad.is_running());
        let found = ok(ad.ldapsearch(PEOPLE_DN, "(sAMAccountName=alice)", &["userPrincipalName"]));
        assert!(
            found.contains("userPrincipalName: alice@example.com\n"),
            "{found}"
        );
    }

    #[test]
    fn a_user_added_without_a_password_gets_user_account_control_546() {
        let ad = ok(SambaDc::start());
        ok(ad.ldapadd(ALICE));
        let found = ok(ad.ldapsearch(
            PEOPLE_DN,
            "(sAMAccountName=alice)",
            &["userAccountControl", "objectClass"],
        ));
        // 512 NORMAL_ACCOUNT + 2 ACCOUNTDISABLE + 32 PASSWD_NOTREQD.
        assert!(found.contains("userAccountControl: 546\n"), "{found}");
        for class in ["top", "person", "organizationalPerson", "user"] {
            assert!(
                found.contains(&format!("objectClass: {class}\n")),
                "{found}"
            );
        }
    }

    #[test]
    fn a_second_user_with_the_same_sam_account_name_is_refused() {
        let ad = ok(SambaDc::start());
        ok(ad.ldapadd(ALICE));
        let twin = "dn: CN=Other Alice,OU=people,DC=example,DC=com\nobjectClass: user\n\
                    sAMAccountName: alice\n";
        let message = match ad.ldapadd(twin) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("a duplicate sAMAccountName was accepted"),
        };
        assert!(message.contains("Already exists (68)"), "{message}");
        assert!(message.contains("already in use"), "{message}");
    }

    #[test]
    fn a_deleted_user_leaves_a_tombstone_and_frees_its_name() {
        let ad = ok(SambaDc::start());
        ok(ad.ldapadd(ALICE));
        ok(ad.ldapdelete(ALICE_DN));
        assert_eq!(
            ok(ad.ldapsearch(PEOPLE_DN, "(sAMAccountName=alice)", &[])),
            ""
        );
        let tombstone = std::process::Command::new("ldapsearch")
            .env("LDAPNOINIT", "1")
            .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &ad.url])
            .args(["-D", &ad.admin_dn, "-w", &ad.admin_password])
            // The show-deleted control.
            .args(["-E", "!1.2.840.113556.1.4.417", "-b", &ad.base])
            .args(["(sAMAccountName=alice)", "isDeleted", "lastKnownParent"])
            .output()
            .expect("run ldapsearch");
        let tombstone = String::from_utf8_lossy(&tombstone.stdout);
        assert!(
            tombstone.contains("dn: CN=Alice Liddell\\0ADEL:"),
            "{tombstone}"
        );
        assert!(
            tombstone.contains(",CN=Deleted Objects,DC=example,DC=com\n"),
            "{tombstone}"
        );
        assert!(tombstone.contains("isDeleted: TRUE\n"), "{tombstone}");
        assert!(
            tombstone.contains(&format!("lastKnownParent: {PEOPLE_DN}\n")),
            "{tombstone}"
        );
        // The name and the DN are free again at once.
        ok(ad.ldapadd(ALICE));
    }

    #[test]
    fn a_subtree_search_from_the_domain_root_returns_a_reference_to_the_configuration() {
        const CONFIGURATION: &str = "ldap://example.com/CN=Configuration,DC=example,DC=com";
        let ad = ok(SambaDc::start());
        let printed = ok(ad.ldapsearch(&ad.base, "(objectClass=organizationalUnit)", &["1.1"]));
        assert!(
            printed.contains(&format!("# ref{CONFIGURATION}")),
            "{printed}"
        );

        let settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(5));
        let mut ldap = LdapConn::with_settings(settings, &ad.url).expect("connect to samba");
        ldap.simple_bind(&ad.admin_dn, &ad.admin_password)
            .and_then(|r| r.success())
            .expect("bind as the administrator");

        // ldap3's search(): the reference lands in the result's `refs`, the entries are
        // entries only, and the result is a success.
        let (entries, result) = ldap
            .search(
                &ad.base,
                Scope::Subtree,
                "(objectClass=organizationalUnit)",
                vec!["1.1"],
            )
            .and_then(|r| r.success())
            .expect("a search with references still succeeds");
        assert_eq!(result.rc, 0);
        assert_eq!(result.refs, vec![CONFIGURATION.to_owned()]);
        assert!(entries.iter().all(|e| !e.is_ref()), "{entries:?}");
        let mut dns: Vec<String> = entries
            .into_iter()
            .map(|e| SearchEntry::construct(e).dn)
            .collect();
        dns.sort();
        assert_eq!(
            dns,
            [
                "OU=Domain Controllers,DC=example,DC=com",
                GROUPS_DN,
                PEOPLE_DN
            ]
        );

        // ldap3's streaming_search(): the reference is a ResultEntry with is_ref(), which
        // SearchEntry::construct cannot parse (it panics): a client must skip it.
        let mut stream = ldap
            .streaming_search(
                &ad.base,
                Scope::Subtree,
                "(objectClass=organizationalUnit)",
                vec!["1.1"],
            )
            .expect("start a streaming search");
        let mut references = 0;
        let mut found = 0;
        while let Some(entry) = stream.next().expect("next search item") {
            if entry.is_ref() {
                references += 1;
            } else {
                found += 1;
            }
        }
        assert_eq!(stream.result().rc, 0);
        assert_eq!((references, found), (1, 3));

        // Based below the root: no references.
        let (_, result) = ldap
            .search(PEOPLE_DN, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
            .and_then(|r| r.success())
            .expect("search OU=people");
        assert!(result.refs.is_empty(), "{result:?}");
        let _ = ldap.unbind();
    }

    #[test]
    fn ldaps_on_636_is_trusted_with_the_harness_ca_only() {
        let ad = ok(SambaDc::start());
        let tls = ad.tls();
        let (url, dn, password) = (&tls.ldaps_url, &ad.admin_dn, &ad.admin_password);
        assert_eq!(bind(url, dn, password, Some(&tls.ca_file)), Some(0));
        assert_eq!(
            bind(url, dn, password, Some(&tls.unknown_ca_file)),
            Some(255),
            "a CA that signed nothing of samba's must not be enough"
        );
    }

    #[test]
    fn a_port_held_by_another_program_is_named_in_the_error() {
        // The global catalog's LDAPS port: the last one samba would need.
        let squatter = std::net::TcpListener::bind("127.0.0.1:3269").expect("bind 3269");
        let message = match SambaDc::start() {
            Err(e) => e.to_string(),
            Ok(ad) => panic!("samba started on {} with port 3269 taken", ad.url),
        };
        assert!(message.starts_with("127.0.0.1:3269: "), "{message}");
        assert!(
            message.contains("another program listens on it"),
            "{message}"
        );
        drop(squatter);
        // The failed start left nothing behind that stops the next one.
        let ad = ok(SambaDc::start());
        assert_eq!(ok(ad.ldapsearch(PEOPLE_DN, "(objectClass=user)", &[])), "");
    }

    #[test]
    fn a_missing_samba_is_named_in_the_error() {
        let programs = SambaPrograms {
            samba: PathBuf::from("/nonexistent/samba"),
            samba_tool: PathBuf::from("/nonexistent/samba-tool"),
        };
        match SambaDc::start_with(programs) {
            Err(DirectoryError::Missing(message)) => {
                assert!(message.contains("/nonexistent/samba"), "{message}");
                assert!(message.contains("samba-ad-dc"), "{message}");
            }
            Err(other) => panic!("expected Missing, got: {other}"),
            Ok(ad) => panic!("started without samba on {}", ad.url),
        }
    }
}
