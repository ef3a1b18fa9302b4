//! Directory connections: a small pool of bound [`LdapConn`]s and the operations the
//! converge performs on one.
//!
//! At most `pool_size` connections exist. A connection is opened when a change needs one
//! and none is idle, trying the URLs in order (the first that connects and binds wins:
//! that is the failover), bound once (a simple bind with `bind_dn`/`bind_password`, or
//! none — anonymous — when `bind_dn` is empty), then reused change after change. Every
//! operation carries the operation timeout; opening carries the connect timeout. A
//! connection that failed (an I/O error, a timeout, a server going away) is discarded,
//! never returned to the pool; the next change opens a fresh one.
//!
//! `ldap3`'s synchronous connection drives its own single-threaded Tokio runtime, which
//! must not be entered, nor dropped, on a thread that runs async code: callers run
//! directory work through [`outside_runtime`], and the pool hands idle connections to a
//! plain thread when it is dropped on one.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ldap3::{LdapConn, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};

use crate::config::Secret;
use crate::target::LdapSettings;

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
}

pub(super) struct Pool {
    urls: Vec<String>,
    bind_dn: String,
    bind_password: Secret,
    starttls: bool,
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
    /// Err: the TLS files (CA, client certificate) cannot be read.
    pub(super) fn new(settings: &LdapSettings) -> Result<Pool, crate::target::TargetError> {
        Ok(Pool {
            urls: settings.urls.clone(),
            bind_dn: settings.bind_dn.clone(),
            bind_password: settings.bind_password.clone(),
            starttls: settings.starttls,
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
            let settings = LdapConnSettings::new()
                .set_conn_timeout(self.connect_timeout)
                .set_starttls(self.starttls && plain);
            let mut conn = match LdapConn::with_settings(settings, url) {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(url = %url, error = %e, "cannot connect to the LDAP directory");
                    reasons.push(format!("{url}: {e}"));
                    continue;
                }
            };
            if self.bind_dn.is_empty() {
                tracing::debug!(url = %url, "connected to the LDAP directory (anonymous)");
                return Ok(conn);
            }
            let bound = conn
                .with_timeout(self.operation_timeout)
                .simple_bind(&self.bind_dn, self.bind_password.expose())
                .and_then(|r| r.success());
            match bound {
                Ok(_) => {
                    tracing::debug!(url = %url, bind_dn = %self.bind_dn, "connected and bound to the LDAP directory");
                    return Ok(conn);
                }
                Err(e) => {
                    if let LdapError::LdapResult { result } = &e {
                        // The directory refuses the credentials: retrying will not help
                        // until the operator fixes them.
                        tracing::error!(url = %url, bind_dn = %self.bind_dn, rc = result.rc, text = %result.text, "the LDAP directory refuses the bind");
                    }
                    reasons.push(format!("{url}: bind as {}: {e}", self.bind_dn));
                }
            }
        }
        Err(format!(
            "cannot connect to the LDAP directory: {}",
            reasons.join("; ")
        ))
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
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
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
