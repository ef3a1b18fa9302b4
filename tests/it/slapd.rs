//! The tests' throw-away OpenLDAP server: [`scim_bridge::slapd`] (the same one
//! `scim-bridge bench --ldap` starts), wrapped so a test reads as a specification: every
//! call that can fail panics with the library's message (what is missing and how to
//! install it, or slapd's output) instead of returning a `Result`. Everything else (the
//! fields `url`, `base`, `admin_dn`, `admin_password`, and `stop`, `is_running`, `port`,
//! `dir`, `log`, `example_target_yaml`) is the library's, through `Deref`.
//!
//! ```ignore
//! let ldap = Slapd::start();
//! ldap.ldapadd("dn: uid=alice,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\n...");
//! let ldif = ldap.ldapsearch(&ldap.base, "(uid=alice)", &["cn"]);
//! let tls = Slapd::start_tls().tls(); // ldaps_url, ca_file, client_cert_file, …
//! ```
//!
//! It needs `slapd` and the OpenLDAP command-line tools (Debian packages `slapd` and
//! `ldap-utils`), and `openssl` for TLS, which `bash tests/run.sh` installs; a missing one
//! fails the test with that message, it is never skipped.
#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::path::Path;

// The whole constant set of the server, whether or not a test names each one today.
#[allow(unused_imports)]
pub use scim_bridge::slapd::{
    ADMIN_DN, ADMIN_PASSWORD, BASE, CLIENT_SUBJECT, GROUPS_DN, PEOPLE_DN, PPOLICY_DN, SlapdTls,
};

/// A running slapd (see [`scim_bridge::slapd::Slapd`]); dropping it stops slapd and
/// removes its directory.
pub struct Slapd(scim_bridge::slapd::Slapd);

/// The value, or a panic with the library's message.
fn or_panic<T>(result: Result<T, scim_bridge::slapd::SlapdError>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

impl Slapd {
    /// Starts a fresh slapd with the base entries; panics if it cannot.
    pub fn start() -> Slapd {
        Slapd(or_panic(scim_bridge::slapd::Slapd::start()))
    }

    /// Like [`Slapd::start`], with StartTLS on `url` and `ldaps://` on a second port.
    pub fn start_tls() -> Slapd {
        Slapd(or_panic(scim_bridge::slapd::Slapd::start_tls()))
    }

    /// Stops slapd (if running) and starts it again on the same port and database.
    pub fn restart(&mut self) {
        or_panic(self.0.restart());
    }

    /// Starts slapd again after `stop()`, on the same port and database.
    pub fn start_again(&mut self) {
        or_panic(self.0.start_again());
    }

    /// The TLS side; panics unless slapd was started with [`Slapd::start_tls`].
    pub fn tls(&self) -> &SlapdTls {
        self.0
            .tls()
            .expect("this slapd has no TLS: start it with Slapd::start_tls()")
    }

    /// `ldapsearch -LLL` (subtree) as the admin: the LDIF, lines unwrapped; `""` when the
    /// base does not exist.
    pub fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        or_panic(self.0.ldapsearch(base, filter, attrs))
    }

    /// `ldapmodify` as the admin (LDIF with `changetype:` records).
    pub fn ldapmodify(&self, ldif: &str) {
        or_panic(self.0.ldapmodify(ldif));
    }

    /// `ldapadd` as the admin (LDIF entries).
    pub fn ldapadd(&self, ldif: &str) {
        or_panic(self.0.ldapadd(ldif));
    }

    /// `ldapdelete` of one entry as the admin.
    pub fn ldapdelete(&self, dn: &str) {
        or_panic(self.0.ldapdelete(dn));
    }
}

impl Deref for Slapd {
    type Target = scim_bridge::slapd::Slapd;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Slapd {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// A test CA with a server certificate for 127.0.0.1/localhost (and the rest of
/// [`SlapdTls`]) generated in `dir` (created), for TLS tests that need no slapd.
pub fn test_certificates(dir: &Path) -> SlapdTls {
    or_panic(scim_bridge::slapd::test_certificates(dir))
}
