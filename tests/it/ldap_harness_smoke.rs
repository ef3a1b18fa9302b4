//! The OpenLDAP test harness (`slapd::Slapd`) itself: a fresh server per test with the
//! base entries, admin writes visible to searches, and a restart that keeps the data and
//! the URL.

use crate::slapd::{GROUPS_DN, PEOPLE_DN, Slapd};

const ALICE: &str = "\
dn: uid=alice,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
givenName: Alice
mail: alice@example.com
userPassword: alice-password
";

#[test]
fn slapd_starts_with_the_base_entries_on_a_free_port() {
    let a = Slapd::start();
    let b = Slapd::start();
    assert_ne!(a.port(), 0);
    assert_ne!(a.port(), b.port(), "each test gets its own server");
    assert_eq!(a.url, format!("ldap://127.0.0.1:{}", a.port()));
    assert_eq!(a.base, "dc=example,dc=com");
    assert_eq!(a.admin_dn, "cn=admin,dc=example,dc=com");

    let base = a.ldapsearch(&a.base, "(objectClass=*)", &["1.1"]);
    for dn in ["dc=example,dc=com", PEOPLE_DN, GROUPS_DN] {
        assert!(
            base.contains(&format!("dn: {dn}\n")),
            "{dn} missing in:\n{base}"
        );
    }
    let root = a.ldapsearch(&a.base, "(dc=example)", &["objectClass", "o"]);
    assert!(root.contains("objectClass: dcObject"), "{root}");
    assert!(root.contains("objectClass: organization"), "{root}");
    // The directory starts without users or groups.
    assert_eq!(
        a.ldapsearch(PEOPLE_DN, "(objectClass=inetOrgPerson)", &[]),
        ""
    );
    // A base that does not exist is an empty answer, not a panic.
    assert_eq!(
        a.ldapsearch("ou=nowhere,dc=example,dc=com", "(objectClass=*)", &[]),
        ""
    );
}

#[test]
fn an_inet_org_person_added_with_ldapadd_is_found_by_ldapsearch() {
    let ldap = Slapd::start();
    ldap.ldapadd(ALICE);

    let found = ldap.ldapsearch(&ldap.base, "(uid=alice)", &["cn", "mail", "entryUUID"]);
    assert!(
        found.contains("dn: uid=alice,ou=people,dc=example,dc=com\n"),
        "{found}"
    );
    assert!(found.contains("cn: Alice Liddell\n"), "{found}");
    assert!(found.contains("mail: alice@example.com\n"), "{found}");
    assert!(found.contains("entryUUID: "), "{found}");

    ldap.ldapmodify(
        "dn: uid=alice,ou=people,dc=example,dc=com\nchangetype: modify\n\
         replace: mail\nmail: alice@example.org\n",
    );
    let modified = ldap.ldapsearch(PEOPLE_DN, "(uid=alice)", &["mail"]);
    assert!(modified.contains("mail: alice@example.org\n"), "{modified}");

    ldap.ldapdelete("uid=alice,ou=people,dc=example,dc=com");
    assert_eq!(ldap.ldapsearch(&ldap.base, "(uid=alice)", &[]), "");
}

#[test]
fn restart_keeps_the_data_and_the_same_url() {
    let mut ldap = Slapd::start();
    ldap.ldapadd(ALICE);
    let url = ldap.url.clone();

    ldap.stop();
    assert!(!ldap.is_running());
    let refused = std::process::Command::new("ldapsearch")
        .env("LDAPNOINIT", "1")
        .args(["-x", "-H", &url, "-b", &ldap.base, "-s", "base"])
        .output()
        .expect("run ldapsearch");
    assert!(
        !refused.status.success(),
        "slapd still answers after stop()"
    );

    ldap.restart();
    assert!(ldap.is_running());
    assert_eq!(ldap.url, url);
    let found = ldap.ldapsearch(PEOPLE_DN, "(uid=alice)", &["sn"]);
    assert!(found.contains("sn: Liddell\n"), "{found}");

    // A restart of a running server works too.
    ldap.restart();
    assert_eq!(ldap.url, url);
    assert!(
        ldap.ldapsearch(PEOPLE_DN, "(uid=alice)", &["1.1"])
            .contains("dn: uid=alice,")
    );
}

#[test]
fn a_user_with_pwd_account_locked_time_cannot_bind() {
    let ldap = Slapd::start();
    ldap.ldapadd(ALICE);
    let bind = || {
        std::process::Command::new("ldapwhoami")
            .env("LDAPNOINIT", "1")
            .args([
                "-x",
                "-H",
                &ldap.url,
                "-D",
                "uid=alice,ou=people,dc=example,dc=com",
            ])
            .args(["-w", "alice-password"])
            .output()
            .expect("run ldapwhoami")
            .status
    };
    assert!(bind().success(), "alice binds before she is locked");

    ldap.ldapmodify(
        "dn: uid=alice,ou=people,dc=example,dc=com\nchangetype: modify\n\
         add: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n",
    );
    assert_eq!(
        bind().code(),
        Some(49),
        "a locked user gets invalidCredentials"
    );

    ldap.ldapmodify(
        "dn: uid=alice,ou=people,dc=example,dc=com\nchangetype: modify\n\
         delete: pwdAccountLockedTime\n",
    );
    assert!(bind().success(), "alice binds again once unlocked");
}
