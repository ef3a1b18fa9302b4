//! Directory connections: a small pool of bound [`LdapConn`]s and the operations the
//! converge performs on one.
//!
//! At most `pool_size` connections exist. A connection is opened when a change needs one
//! and none is idle, trying the URLs in order (the first that connects and binds wins:
//! that is the failover), bound once — with a client certificate, a SASL EXTERNAL bind
//! (the directory maps the certificate to an identity); otherwise a simple bind with
//! `bind_dn`/`bind_password`, or none (anonymous) when `bind_dn` is empty — then reused
//! change after change. Every operation carries the operation timeout; opening carries the
//! connect timeout. A connection that failed (an I/O error, a timeout, a server going
//! away) is discarded, never returned to the pool; the next change opens a fresh one.
//!
//! TLS: `ldaps://` URLs, and `ldap://` ones upgraded with StartTLS when `starttls` is set.
//! Server certificates are always verified (chain and name): against the system roots
//! (loaded by `ldap3`) or, with a `ca_file`, against its CA certificates only. The rustls
//! configuration for a `ca_file` or a client certificate is built once, by [`Pool::new`],
//! which refuses files that cannot be read or hold nothing usable; connections share it.
//!
//! `ldap3`'s synchronous connection drives its own single-threaded Tokio runtime, which
//! must not be entered, nor dropped, on a thread that runs async code: callers run
//! directory work through [`outside_runtime`], and the pool hands idle connections to a
//! plain thread when it is dropped on one.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ldap3::{LdapConn, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::Secret;
use crate::target::{ClientCert, LdapSettings, TargetError};

/// The result code of a missing entry (or a missing search base).
pub(super) const NO_SUCH_OBJECT: u32 = 32;

/// A failed directory operation: what was attempted, on which entry, and the error.
#[derive(Debug)]
pub(super) struct OpError {
    pub(super) op: &'static str,
    pub(super) dn: String,
    pub(super) error: Box<LdapError>,
}

impl OpError {
    /// The LDAP result code, when the server answered (rather than the connection failing).
    pub(super) fn rc(&self) -> Option<u32> {
        match &*self.error {
            LdapError::LdapResult { result } => Some(result.rc),
            _ => None,
        }
    }

    /// The server's diagnostic text, when it answered with one.
    pub(super) fn server_text(&self) -> Option<String> {
        match &*self.error {
            LdapError::LdapResult { result } if !result.text.is_empty() => {
                Some(result.text.clone())
            }
            _ => None,
        }
    }
}

pub(super) struct Pool {
    urls: Vec<String>,
    bind_dn: String,
    bind_password: Secret,
    starttls: bool,
    /// The TLS configuration when the defaults (system roots, no client certificate) do
    /// not do; `None` lets `ldap3` build its default one.
    tls: Option<Arc<ClientConfig>>,
    /// Bind with SASL EXTERNAL (the TLS client certificate) instead of a simple bind.
    external: bool,
    connect_timeout: Duration,
    operation_timeout: Duration,
    size: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<LdapConn>,
    /// Connections in existence: idle, in use, or being opened.
    open: usize,
}

impl Pool {
    /// How many connections the pool opens at most.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Err ([`TargetError::Open`]): the TLS files (CA, client certificate) cannot be read
    /// or hold nothing usable (naming the file), or a client certificate is given for an
    /// `ldap://` URL without StartTLS (naming the URL: the certificate is only sent
    /// over TLS).
    pub(super) fn new(settings: &LdapSettings) -> Result<Pool, TargetError> {
        Ok(Pool {
            urls: settings.urls.clone(),
            bind_dn: settings.bind_dn.clone(),
            bind_password: settings.bind_password.clone(),
            starttls: settings.starttls,
            tls: tls_config(settings)?.map(Arc::new),
            external: settings.client_cert.is_some(),
            connect_timeout: settings.connect_timeout,
            operation_timeout: settings.operation_timeout,
            size: settings.pool_size.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        })
    }

    /// The pool's bookkeeping only: a panic while holding it leaves it consistent.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection for one change: an idle one, a new one when the pool is not full, or
    /// the next one freed. Err: no URL could be connected to and bound (the reasons for
    /// each URL, in order).
    pub(super) fn session(&self) -> Result<Session<'_>, String> {
        let mut state = self.state();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Session {
                    pool: self,
                    conn: Some(conn),
                    reused: true,
                });
            }
            if state.open < self.size {
                state.open += 1;
                break;
            }
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        drop(state);
        match self.connect() {
            Ok(conn) => Ok(Session {
                pool: self,
                conn: Some(conn),
                reused: false,
            }),
            Err(e) => {
                self.state().open -= 1;
                self.freed.notify_one();
                Err(e)
            }
        }
    }

    /// Discards every idle connection: after one turned out dead (the server restarted,
    /// or failed over), the others opened before are most likely dead too.
    pub(super) fn flush_idle(&self) {
        let idle = {
            let mut state = self.state();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        if !idle.is_empty() {
            tracing::debug!(connections = idle.len(), "discarding idle LDAP connections");
            self.freed.notify_all();
        }
        drop(idle);
    }

    /// Opens and binds a connection to the first URL that accepts one.
    fn connect(&self) -> Result<LdapConn, String> {
        let mut reasons = Vec::new();
        for url in &self.urls {
            let plain = url
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("ldap://"));
            let mut settings = LdapConnSettings::new()
                .set_conn_timeout(self.connect_timeout)
                .set_starttls(self.starttls && plain);
            if let Some(tls) = &self.tls {
                settings = settings.set_config(Arc::clone(tls));
            }
            let mut conn = match LdapConn::with_settings(settings, url) {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(url = %url, error = %e, "cannot connect to the LDAP directory");
                    reasons.push(format!("{url}: {e}"));
                    continue;
                }
            };
            let (bound, identity) = if self.external {
                let bound = conn
                    .with_timeout(self.operation_timeout)
                    .sasl_external_bind()
                    .and_then(|r| r.success());
                (bound, "SASL EXTERNAL (the client certificate)")
            } else if self.bind_dn.is_empty() {
                tracing::debug!(url = %url, "connected to the LDAP directory (anonymous)");
                return Ok(conn);
            } else {
                let bound = conn
                    .with_timeout(self.operation_timeout)
                    .simple_bind(&self.bind_dn, self.bind_password.expose())
                    .and_then(|r| r.success());
                (bound, self.bind_dn.as_str())
            };
            match bound {
                Ok(_) => {
                    tracing::debug!(url = %url, bind = identity, "connected and bound to the LDAP directory");
                    return Ok(conn);
                }
                Err(e) => {
                    if let LdapError::LdapResult { result } = &e {
                        // The directory refuses the credentials: retrying will not help
                        // until the operator fixes them.
                        tracing::error!(url = %url, bind = identity, rc = result.rc, text = %result.text, "the LDAP directory refuses the bind");
                    }
                    reasons.push(format!("{url}: bind as {identity}: {e}"));
                }
            }
        }
        Err(format!(
            "cannot connect to the LDAP directory: {}",
            reasons.join("; ")
        ))
    }
}

/// The rustls configuration for `settings`, built once: `None` when the system roots and
/// no client certificate do, as `ldap3` then builds that configuration itself. The crypto
/// provider is named (aws-lc-rs, the one `ldap3` is built with) rather than taken from a
/// process default that another dependency could make ambiguous.
fn tls_config(settings: &LdapSettings) -> Result<Option<ClientConfig>, TargetError> {
    if settings.ca_file.is_none() && settings.client_cert.is_none() {
        return Ok(None);
    }
    if settings.client_cert.is_some() && !settings.starttls {
        let plain = settings.urls.iter().find(|url| {
            url.get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("ldap://"))
        });
        if let Some(url) = plain {
            return Err(TargetError::Open {
                path: url.clone(),
                detail: "a client certificate is only sent over TLS: use ldaps:// or set starttls"
                    .into(),
            });
        }
    }
    let roots = match &settings.ca_file {
        Some(path) => ca_roots(path)?,
        None => system_roots(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError::Open {
            path: "ldap".into(),
            detail: format!("TLS configuration: {e}"),
        })?
        .with_root_certificates(roots);
    Ok(Some(match &settings.client_cert {
        None => builder.with_no_client_auth(),
        Some(ClientCert {
            cert_file,
            key_file,
        }) => {
            let chain = certificates(cert_file, "client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                pem_error(
                    key_file,
                    "private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
                    e,
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TargetError::Open {
                    path: cert_file.display().to_string(),
                    detail: format!(
                        "the client certificate cannot be used with the key in {}: {e}",
                        key_file.display()
                    ),
                })?
        }
    }))
}

/// The CA certificates in the PEM file `path`, as the only trust anchors.
fn ca_roots(path: &Path) -> Result<RootCertStore, TargetError> {
    let mut roots = RootCertStore::empty();
    let certs = certificates(path, "CA certificate")?;
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TargetError::Open {
            path: path.display().to_string(),
            detail: format!("certificate {} is not a usable CA certificate: {e}", i + 1),
        })?;
    }
    Ok(roots)
}

/// The system's trusted CA certificates, as `ldap3` loads them when it builds the
/// configuration itself; problems are logged (no usable root: every server is refused).
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(error = %error, "a system CA certificate store cannot be read");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "unusable system CA certificates ignored");
    }
    if added == 0 {
        tracing::warn!(
            "no system CA certificate found: no LDAP server certificate can be verified (set ca_file)"
        );
    }
    roots
}

/// The certificates (`BEGIN CERTIFICATE` sections) in the PEM file `path`; at least one.
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TargetError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(path, what, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, what, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

fn pem_error(path: &Path, what: &str, error: pem::Error) -> TargetError {
    let detail = match error {
        pem::Error::Io(e) => format!("cannot read the {what} file: {e}"),
        pem::Error::NoItemsFound => format!("no PEM {what} found in the file"),
        e => format!("the {what} file is not valid PEM: {e}"),
    };
    TargetError::Open {
        path: path.display().to_string(),
        detail,
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state().idle);
        if !idle.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            // Dropping a connection drops its runtime, which panics on an async thread.
            let _ = std::thread::Builder::new()
                .name("scim-bridge-ldap-close".into())
                .spawn(move || drop(idle));
        }
    }
}

/// One connection, held for one change; back to the pool when dropped (unless discarded).
pub(super) struct Session<'a> {
    pool: &'a Pool,
    conn: Option<LdapConn>,
    /// Taken from the idle connections rather than opened for this change: it may have
    /// died while idle.
    pub(super) reused: bool,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.state().idle.push(conn);
            self.pool.freed.notify_one();
        }
    }
}

fn op_error(op: &'static str, dn: &str) -> impl FnOnce(LdapError) -> OpError {
    let dn = dn.to_string();
    move |error| OpError {
        op,
        dn,
        error: Box::new(error),
    }
}

impl Session<'_> {
    /// Closes the connection instead of returning it to the pool.
    pub(super) fn discard(mut self) {
        if self.conn.take().is_some() {
            self.pool.state().open -= 1;
            self.pool.freed.notify_one();
        }
    }

    /// The connection, armed with the operation timeout for its next operation.
    fn conn(&mut self) -> &mut LdapConn {
        let timeout = self.pool.operation_timeout;
        self.conn
            .as_mut()
            .expect("a session holds its connection until dropped")
            .with_timeout(timeout)
    }

    /// The entry at `dn` with `attrs`; `None` when there is no such entry.
    pub(super) fn read(
        &mut self,
        dn: &str,
        attrs: &[&str],
    ) -> Result<Option<SearchEntry>, OpError> {
        let entries = self.search("read", dn, Scope::Base, "(objectClass=*)", attrs)?;
        Ok(entries.into_iter().next())
    }

    /// The entries directly below `base` matching `filter`; empty when `base` does not
    /// exist.
    pub(super) fn children(
        &mut self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, OpError> {
        self.search("search", base, Scope::OneLevel, filter, attrs)
    }

    /// The entries at or anywhere below `base` matching `filter`; empty when `base` does
    /// not exist.
    pub(super) fn subtree(
        &mut self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, OpError> {
        self.search("search", base, Scope::Subtree, filter, attrs)
    }

    fn search(
        &mut self,
        op: &'static str,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, OpError> {
        let result = self
            .conn()
            .search(base, scope, filter, attrs.to_vec())
            .map_err(op_error(op, base))?;
        if result.1.rc == NO_SUCH_OBJECT {
            return Ok(Vec::new());
        }
        let (entries, _) = result.success().map_err(op_error(op, base))?;
        Ok(entries_only(entries))
    }

    pub(super) fn add(
        &mut self,
        dn: &str,
        attrs: Vec<(String, HashSet<String>)>,
    ) -> Result<(), OpError> {
        tracing::debug!(dn, "LDAP add");
        self.conn()
            .add(dn, attrs)
            .and_then(|r| r.success())
            .map_err(op_error("add", dn))?;
        Ok(())
    }

    pub(super) fn modify(&mut self, dn: &str, mods: Vec<Mod<String>>) -> Result<(), OpError> {
        tracing::debug!(dn, changes = mods.len(), "LDAP modify");
        self.conn()
            .modify(dn, mods)
            .and_then(|r| r.success())
            .map_err(op_error("modify", dn))?;
        Ok(())
    }

    /// Replaces `attr` of `dn` with one binary value (a password: never logged; the
    /// error names the operation and the DN, not the value).
    pub(super) fn replace_secret(
        &mut self,
        dn: &str,
        attr: &str,
        value: Vec<u8>,
    ) -> Result<(), OpError> {
        tracing::debug!(dn, attribute = attr, "LDAP modify (password)");
        let mods = vec![Mod::Replace(
            attr.as_bytes().to_vec(),
            HashSet::from([value]),
        )];
        self.conn()
            .modify(dn, mods)
            .and_then(|r| r.success())
            .map_err(op_error("modify", dn))?;
        Ok(())
    }

    /// Renames `dn` to `rdn` (the old RDN's values removed), under `new_parent` when given.
    pub(super) fn rename(
        &mut self,
        dn: &str,
        rdn: &str,
        new_parent: Option<&str>,
    ) -> Result<(), OpError> {
        tracing::debug!(dn, rdn, new_parent, "LDAP modifyDN");
        self.conn()
            .modifydn(dn, rdn, true, new_parent)
            .and_then(|r| r.success())
            .map_err(op_error("modifyDN", dn))?;
        Ok(())
    }

    /// Deletes `dn`; an entry already gone is no error.
    pub(super) fn delete(&mut self, dn: &str) -> Result<(), OpError> {
        tracing::debug!(dn, "LDAP delete");
        let result = self.conn().delete(dn).map_err(op_error("delete", dn))?;
        if result.rc == NO_SUCH_OBJECT {
            return Ok(());
        }
        result.success().map_err(op_error("delete", dn))?;
        Ok(())
    }
}

/// Runs `f`, which uses directory connections, off any Tokio runtime thread: on a plain
/// thread it runs right here; on a runtime thread (the daemon opens its target from async
/// code) it runs on a scoped helper thread, as `ldap3`'s blocking calls would panic there.
pub(super) fn outside_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The entries of a search answer, without its continuation references and
/// intermediate messages: Active Directory (and Samba) answer a subtree search from the
/// domain root with references to other partitions (e.g. `CN=Configuration`), which are
/// not entries of ours and not errors. (`SearchEntry::construct` panics on them.)
pub fn entries_only(found: Vec<ldap3::ResultEntry>) -> Vec<SearchEntry> {
    found
        .into_iter()
        .filter(|e| !e.is_ref() && !e.is_intermediate())
        .map(SearchEntry::construct)
        .collect()
}
