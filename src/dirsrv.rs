//! A throw-away 389 Directory Server (`ns-slapd` of the Debian package `389-ds-base`, 2.3)
//! for the tests: [`DirSrv::start`] gives a fresh instance on a free loopback port with the
//! suffix `dc=example,dc=com`, `ou=people` and `ou=groups`, in a temporary directory that
//! dropping the [`DirSrv`] removes (after stopping the server). It is the 389 twin of
//! [`crate::slapd::Slapd`], with the same kind of API (`url`, `base`, `admin_dn`,
//! `admin_password`, `stop`/`start_again`/`restart`, the ldap-utils helpers,
//! [`DirSrv::example_target_yaml`]); nothing in the daemon uses it.
//!
//! ```no_run
//! # fn main() -> Result<(), scim_bridge::slapd::DirectoryError> {
//! use scim_bridge::dirsrv::DirSrv;
//! let ds = DirSrv::start()?;
//! ds.ldapadd("dn: uid=alice,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice\nsn: Liddell\n")?;
//! let ldif = ds.ldapsearch(&ds.base, "(uid=alice)", &["cn"])?;
//! # Ok(()) }
//! ```
//!
//! ## How an instance comes to be
//! `dscreate` normally wants systemd and system paths. lib389 honours a `PREFIX`
//! environment variable and then reads `$PREFIX/share/dirsrv/inf/defaults.inf`: a copy of
//! the installed `defaults.inf` with `with_systemd = 0`, the current user as `user`/`group`
//! and every config/state/run/log path moved under one directory puts a whole instance
//! there. `dscreate from-file` then builds it (instance name `it`, backend `userroot` with
//! the suffix entry, `db_lib = mdb`, no self-signed certificate); it starts and stops the
//! server once on the port of its INF file. That takes ~5–6 s, so it is done once per
//! machine and 389-DS version, into a template under
//! `$TMPDIR/scim-bridge-<uid>/389ds-<version>-t<format>/` (guarded by a lock file next to
//! it, rebuilt when its `READY` marker or a file it needs is missing): the template is
//! then edited offline (`nsslapd-listenhost: 127.0.0.1`, the LDAPI socket off), started
//! once to add `ou=people` and `ou=groups`, and stopped. Each [`DirSrv::start`] copies the
//! template into its own temporary directory (`389-XXXXXX`, ~0.4 MB), rewrites the template's
//! paths and the port in the unfolded `dse.ldif`, and runs `ns-slapd -D CONFIG_DIR -i
//! PIDFILE`. To rebuild the template, delete its directory.
//!
//! Why mdb and not 389's default bdb: the bdb environment writes the database's absolute
//! path into its transaction log (a copy would recover into the template's files), and a
//! bdb server takes 2–5 s to stop (waiting for its checkpoint threads); an mdb database is
//! two files with no paths in them and the server stops in ~0.2 s. The LDAP behaviour the
//! tests see is the same.
//!
//! `ns-slapd` forks: the launcher binds the port, detaches and exits (status 1 with the
//! reason on stderr when it cannot bind), and the daemon writes the pidfile. The harness
//! therefore tracks the daemon by its pid (checked against `/proc/PID/cmdline`, so a reused
//! pid is never signalled) rather than as a child. `ns-slapd -d 0` would stay in the
//! foreground, but then logs nothing at all — not even why it failed to start.
//!
//! A daemon outlives a test process that is killed (a nextest timeout): each instance
//! therefore holds a `flock` on `owner.lock` in its directory while it lives, and every
//! start removes the `389-*` directories in `$TMPDIR` whose lock it can take, after killing
//! the server their pidfile names (if it still runs with that directory on its command
//! line). [`crate::samba`] reaps its `samba-*` directories the same way.
//!
//! With the LDAPI socket off the temporary directory's length is unconstrained (a unix
//! socket path is limited to ~107 bytes, ~77 characters of directory for 389's layout);
//! only the template build uses the socket, under the short `$TMPDIR/scim-bridge-<uid>/`.
//!
//! [`DirSrv::start_tls`] starts one that also speaks TLS: LDAPS on a second free port
//! (`nsslapd-security: on`, `nsslapd-securePort`, `nsslapd-securelistenhost: 127.0.0.1`)
//! and StartTLS on `url`, with the throw-away CA and server certificate of
//! [`crate::slapd::test_certificates`] (for `IP:127.0.0.1`, `DNS:localhost`) imported into
//! the instance's NSS database (`cert9.db` in the config directory) with `pk12util` as
//! `Server-Cert`, the name the template's `cn=RSA,cn=encryption,cn=config` already uses. A
//! client trusts [`SlapdTls::ca_file`]. No client certificate is configured. This adds
//! ~0.3 s of openssl and NSS tools to a start.
//!
//! ## Measured (2-core machine shared with other builds, 389-ds-base 2.3.1)
//! Quiet figures first, then at a load average of ~9:
//! - template build (the first start on a machine): ~7 s / 8.3 s (dscreate ~5–6 s, the
//!   base entries and a stop);
//! - [`DirSrv::start`] from the template (copy ~0.4 MB, start, first answer): ~1.1 s /
//!   1.2–1.5 s;
//! - [`DirSrv::stop`] (SIGTERM until the process is gone): ~0.2 s / 0.5–0.9 s;
//! - [`DirSrv::start_again`]: ~0.9 s / 0.6–1.2 s.
//!
//! ## What the tests observed (facts for the 389 target)
//! - The suffix entry is `objectClass: domain` (`dc: example`), not dcObject/organization.
//! - Same inetOrgPerson/groupOfNames schema as OpenLDAP; `objectClass: top` is added to an
//!   inetOrgPerson by the server. `entryUUID` (the entryuuid plugin) and `nsUniqueId` are
//!   operational attributes every entry has.
//! - `userPassword` sent in cleartext is stored hashed (`{PBKDF2-SHA512}…`).
//! - `nsAccountLock: TRUE` locks an account: its bind fails with resultCode 53
//!   (unwillingToPerform, "Account inactivated. Contact system administrator."), not 49;
//!   deleting the attribute unlocks it.
//! - The root DN `cn=Directory Manager`'s password is PBKDF2-hashed: every bind costs ~7 ms
//!   of CPU, so bind once per pooled connection.
//!
//! It needs `ns-slapd` and `dscreate` (Debian package `389-ds-base`) and the ldap-utils
//! tools, which `bash tests/run.sh` installs; without them [`DirSrv::start`] fails with
//! [`DirectoryError::Missing`] naming what is missing. Everything is synchronous.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::slapd::{
    Admin, SBIN_DIRS, TOOL_TIMEOUT, find_program, free_port, io, read_from, run, tail,
    test_certificates,
};
pub use crate::slapd::{DirectoryError, SlapdTls};

/// The suffix of the directory.
pub const BASE: &str = "dc=example,dc=com";
/// The root DN: not subject to access control or size limits.
pub const ADMIN_DN: &str = "cn=Directory Manager";
/// The root DN's password (dscreate wants at least 8 characters).
pub const ADMIN_PASSWORD: &str = "it-389ds-admin-secret";
/// Where users go.
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=com";
/// Where groups go.
pub const GROUPS_DN: &str = "ou=groups,dc=example,dc=com";

/// The example LDAP configuration, whose target and mapping
/// [`DirSrv::example_target_yaml`] points at a throw-away server.
const LDAP_EXAMPLE: &str = include_str!("../examples/ldap-389ds.yaml");

/// The name of an instance's temporary directory (`389-XXXXXX`).
const INSTANCE_PREFIX: &str = "389-";
/// The instance name (`slapd-it`): part of the config directory's path.
const INSTANCE: &str = "it";
/// Bumped when the template's layout changes, so an old template is not reused.
const TEMPLATE_FORMAT: u32 = 3;
/// Where `defaults.inf` is installed (Debian/Fedora, a local build).
const DEFAULTS_INF: &[&str] = &[
    "/usr/share/dirsrv/inf/defaults.inf",
    "/usr/local/share/dirsrv/inf/defaults.inf",
];

/// How long the server may take to answer a search after it is launched.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM may take before the server is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long dscreate may take (it starts and stops a server).
const DSCREATE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a start waits for another process that builds the template.
const TEMPLATE_LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How many free ports `start` tries when the server cannot bind the one it picked.
const PORT_ATTEMPTS: usize = 5;
/// How long `start_again` keeps retrying its old port if something else holds it.
const REBIND_TIMEOUT: Duration = Duration::from_secs(3);

/// The installed programs a [`DirSrv`] runs.
#[derive(Debug, Clone)]
pub struct DirSrvPrograms {
    /// The server (`/usr/sbin/ns-slapd`).
    pub ns_slapd: PathBuf,
    /// The instance installer (`/usr/sbin/dscreate`, python3-lib389), run only to build the
    /// template.
    pub dscreate: PathBuf,
}

impl DirSrvPrograms {
    /// Finds ns-slapd and dscreate on PATH or in /usr/sbin and the like; the error names
    /// what is missing and how to install it.
    pub fn find() -> Result<DirSrvPrograms, DirectoryError> {
        match (
            find_program("ns-slapd", SBIN_DIRS),
            find_program("dscreate", SBIN_DIRS),
        ) {
            (Some(ns_slapd), Some(dscreate)) => Ok(DirSrvPrograms { ns_slapd, dscreate }),
            (ns_slapd, dscreate) => {
                let missing: Vec<&str> = [("ns-slapd", ns_slapd), ("dscreate", dscreate)]
                    .into_iter()
                    .filter(|(_, found)| found.is_none())
                    .map(|(name, _)| name)
                    .collect();
                Err(DirectoryError::Missing(format!(
                    "a throw-away 389 Directory Server needs ns-slapd and dscreate, but {} not \
                     found (on PATH or in {SBIN_DIRS:?}). {INSTALL_389}",
                    missing.join(" and ") + if missing.len() == 1 { " was" } else { " were" }
                )))
            }
        }
    }

    /// Every program is an existing file and the ldap-utils tools are on PATH.
    fn check(&self) -> Result<(), DirectoryError> {
        for (name, path) in [("ns-slapd", &self.ns_slapd), ("dscreate", &self.dscreate)] {
            if !path.is_file() {
                return Err(DirectoryError::Missing(format!(
                    "{}: no such program; a throw-away 389 Directory Server needs {name}. \
                     {INSTALL_389}",
                    path.display()
                )));
            }
        }
        require_ldap_utils("a throw-away 389 Directory Server")
    }
}

const INSTALL_389: &str = "Install it with `apt-get install --no-install-recommends \
     389-ds-base ldap-utils` (Debian packages), or run the test suite with `bash \
     tests/run.sh`, which installs them.";

/// A running 389 Directory Server on `ldap://127.0.0.1:PORT`. Dropping it stops the server
/// and removes its temporary directory (config, database and logs).
pub struct DirSrv {
    /// `ldap://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// `dc=example,dc=com`
    pub base: String,
    /// `cn=Directory Manager`
    pub admin_dn: String,
    pub admin_password: String,
    /// The daemon's pid while it runs (it is not our child: ns-slapd forks).
    pid: Option<u32>,
    port: u16,
    /// The TLS side, when started with [`DirSrv::start_tls`].
    tls: Option<SlapdTls>,
    ns_slapd: PathBuf,
    // Declared after the pid so it is removed after the server is gone.
    dir: Root,
    /// The claim on `dir` (none for the template's own server), released last.
    _owner: Option<Owner>,
}

enum Launch {
    /// The server could not bind its port (another process took it).
    AddressInUse,
    /// The server exited or did not answer; the reason.
    Failed(String),
}

impl DirSrv {
    /// Starts a fresh instance with the base entries and waits until it answers a search.
    ///
    /// The first start on a machine (per 389-DS version) also builds the template (see the
    /// module doc), which takes ~7 s; later ones ~1 s. Fails if 389-ds-base or the
    /// ldap-utils tools are not installed, or if the server does not come up (with the end
    /// of its error log in the message).
    pub fn start() -> Result<DirSrv, DirectoryError> {
        DirSrv::start_with(DirSrvPrograms::find()?)
    }

    /// Like [`DirSrv::start`], with these programs instead of the installed ones.
    pub fn start_with(programs: DirSrvPrograms) -> Result<DirSrv, DirectoryError> {
        DirSrv::start_inner(programs, false)
    }

    /// Like [`DirSrv::start`], with LDAPS as well: a second listener on
    /// `ldaps://127.0.0.1:PORT2` ([`SlapdTls::ldaps_url`]) and StartTLS on `url`, with a
    /// throw-away CA and a server certificate for `IP:127.0.0.1` and `DNS:localhost`
    /// ([`crate::slapd::test_certificates`]) imported into the instance's NSS database as
    /// `Server-Cert`. Client certificates are not configured.
    ///
    /// Fails also if `openssl`, `pk12util` or `certutil` (libnss3-tools, which 389-ds-base
    /// pulls in) are missing or fail.
    pub fn start_tls() -> Result<DirSrv, DirectoryError> {
        DirSrv::start_inner(DirSrvPrograms::find()?, true)
    }

    fn start_inner(programs: DirSrvPrograms, tls: bool) -> Result<DirSrv, DirectoryError> {
        programs.check()?;
        reap_orphans(INSTANCE_PREFIX, "slapd.pid", |dir| {
            config_dir(dir).display().to_string()
        });
        let dir = tempfile::Builder::new()
            .prefix(INSTANCE_PREFIX)
            .tempdir()
            .map_err(io("cannot create a temporary directory for 389-DS"))?;
        let owner = Owner::claim(dir.path())?;
        Template::copy_into(&programs, dir.path())?;
        let tls = if tls {
            let tls = test_certificates(&dir.path().join("tls"))?;
            import_server_certificate(&config_dir(dir.path()), &tls)?;
            Some(tls)
        } else {
            None
        };
        let mut ds = DirSrv {
            url: String::new(),
            base: BASE.to_owned(),
            admin_dn: ADMIN_DN.to_owned(),
            admin_password: ADMIN_PASSWORD.to_owned(),
            pid: None,
            port: 0,
            tls,
            ns_slapd: programs.ns_slapd,
            dir: Root::Temp(dir),
            _owner: Some(owner),
        };
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let mut secure_port = None;
            if let Some(tls) = ds.tls.as_mut() {
                let mut ldaps = free_port()?;
                while ldaps == port {
                    ldaps = free_port()?;
                }
                tls.set_port(ldaps);
                secure_port = Some(ldaps);
            }
            set_dse_ports(&ds.config_dir(), port, secure_port)?;
            ds.set_port(port);
            match ds.launch() {
                Ok(()) => return Ok(ds),
                Err(Launch::AddressInUse) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(ds.launch_failed(e)),
            }
        }
    }

    /// Stops the server: SIGTERM, wait up to 20 s for the process to end, then kill. Does
    /// nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            stop_daemon(pid, &self.marker(), SHUTDOWN_TIMEOUT);
        }
    }

    /// Stops the server (if running) and starts it again on the SAME port and database, so
    /// `url` stays valid and the data survives.
    pub fn restart(&mut self) -> Result<(), DirectoryError> {
        self.stop();
        self.start_again()
    }

    /// Starts the server again after [`DirSrv::stop`], on the same port and database.
    pub fn start_again(&mut self) -> Result<(), DirectoryError> {
        if self.pid.is_some() {
            return Err(DirectoryError::Failed(format!(
                "{}: start_again() while 389-DS is still running; stop() it first",
                self.url
            )));
        }
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(Launch::AddressInUse) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => return Err(self.launch_failed(e)),
            }
        }
    }

    /// Whether the server is running (started, not stopped, and its process is alive).
    pub fn is_running(&self) -> bool {
        self.pid
            .is_some_and(|pid| daemon_alive(pid, &self.marker()))
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS side: the `ldaps://` URL and the certificate files; `None` unless the server
    /// was started with [`DirSrv::start_tls`].
    pub fn tls(&self) -> Option<&SlapdTls> {
        self.tls.as_ref()
    }

    /// The temporary directory: `etc/dirsrv/slapd-it/` (dse.ldif, schema), `db/`, `log/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's error log so far (startup, shutdown and errors), and what its launcher
    /// printed.
    pub fn log(&self) -> String {
        let mut log =
            std::fs::read_to_string(self.dir.path().join("log/errors")).unwrap_or_default();
        let launcher = std::fs::read_to_string(self.launcher_log()).unwrap_or_default();
        if !launcher.trim().is_empty() {
            log += "\n--- ns-slapd's own output:\n";
            log += &launcher;
        }
        log
    }

    /// `ldapsearch -LLL` (subtree) as the admin: the LDIF text, lines unwrapped. `attrs`
    /// empty means all user attributes. A base that does not exist gives an empty string.
    pub fn ldapsearch(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<String, DirectoryError> {
        self.admin().ldapsearch(base, filter, attrs)
    }

    /// `ldapmodify` as the admin (LDIF with `changetype:` records); any error fails.
    pub fn ldapmodify(&self, ldif: &str) -> Result<(), DirectoryError> {
        self.admin().ldapmodify(ldif)
    }

    /// `ldapadd` as the admin (LDIF entries); any error fails.
    pub fn ldapadd(&self, ldif: &str) -> Result<(), DirectoryError> {
        self.admin().ldapadd(ldif)
    }

    /// `ldapdelete` of one entry as the admin; any error fails (including noSuchObject).
    pub fn ldapdelete(&self, dn: &str) -> Result<(), DirectoryError> {
        self.admin().ldapdelete(dn)
    }

    /// `examples/ldap-389ds.yaml` from its `target:` section on (the target and the
    /// mapping: inetOrgPerson users under `ou=people`, groupOfNames under `ou=groups`,
    /// nsAccountLock for disabled accounts), pointed at this server with short timeouts
    /// (connect 1 s, operation 2 s), like [`crate::slapd::Slapd::example_target_yaml`].
    pub fn example_target_yaml(&self) -> String {
        let start = LDAP_EXAMPLE.find("\ntarget:").map_or(0, |at| at + 1);
        LDAP_EXAMPLE[start..]
            .replace("- env: LDAP_URL", &format!("- value: {}", self.url))
            .replace("env: LDAP_BIND_DN", &format!("value: {}", self.admin_dn))
            .replace(
                "env: LDAP_BIND_PASSWORD",
                &format!("value: {}", self.admin_password),
            )
            .replace("env: LDAP_BASE_DN", &format!("value: {}", self.base))
            .replace("operation_timeout: 10s", "operation_timeout: 2s")
            .replace("connect_timeout: 5s", "connect_timeout: 1s")
    }

    fn admin(&self) -> Admin<'_> {
        Admin {
            url: &self.url,
            dn: &self.admin_dn,
            password: &self.admin_password,
            server: "389-DS",
        }
    }

    fn config_dir(&self) -> PathBuf {
        config_dir(self.dir.path())
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("run/slapd.pid")
    }

    fn launcher_log(&self) -> PathBuf {
        self.dir.path().join("ns-slapd.out")
    }

    /// What the daemon's command line contains: its config directory.
    fn marker(&self) -> String {
        self.config_dir().display().to_string()
    }

    fn set_port(&mut self, port: u16) {
        self.port = port;
        self.url = format!("ldap://127.0.0.1:{port}");
    }

    /// Runs ns-slapd (which forks), reads the daemon's pid from the pidfile and waits until
    /// it answers a base search as the admin.
    fn launch(&mut self) -> Result<(), Launch> {
        if self.pid.is_some() {
            return Err(Launch::Failed("389-DS is already running".to_owned()));
        }
        let pidfile = self.pidfile();
        // A pidfile left by a stopped server must not pass for the new one's.
        let _ = std::fs::remove_file(&pidfile);
        let launcher_log = self.launcher_log();
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&launcher_log)
                .map_err(|e| Launch::Failed(format!("cannot open {}: {e}", launcher_log.display())))
        };
        let (out, err) = (open_log()?, open_log()?);
        let log_start = out.metadata().map(|m| m.len()).unwrap_or(0);
        let mut launcher = Command::new(&self.ns_slapd)
            .arg("-D")
            .arg(self.config_dir())
            .arg("-i")
            .arg(&pidfile)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Launch::Failed(format!("cannot run {}: {e}", self.ns_slapd.display())))?;

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        // The launcher binds the port, then forks the daemon and exits.
        let status = loop {
            match launcher.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = launcher.kill();
                    let _ = launcher.wait();
                    return Err(Launch::Failed(format!(
                        "{} did not detach within {STARTUP_TIMEOUT:?}",
                        self.ns_slapd.display()
                    )));
                }
            }
        };
        if !status.success() {
            let output = read_from(&launcher_log, log_start);
            return Err(if output.contains("address is in use") {
                Launch::AddressInUse
            } else {
                Launch::Failed(format!("ns-slapd exited ({status})"))
            });
        }

        let marker = self.marker();
        loop {
            let pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok());
            if let Some(pid) = pid {
                if !daemon_alive(pid, &marker) {
                    return Err(Launch::Failed(format!(
                        "ns-slapd (pid {pid}) exited after it started"
                    )));
                }
                self.pid = Some(pid);
                if self.admin().answers(&self.base) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(Launch::Failed(format!(
                    "389-DS did not answer a search on {} within {STARTUP_TIMEOUT:?}",
                    self.url
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The error for a launch that failed for good: why, and the end of the server's logs.
    fn launch_failed(&self, e: Launch) -> DirectoryError {
        let why = match e {
            Launch::AddressInUse => match &self.tls {
                Some(tls) => format!(
                    "389-DS could not bind 127.0.0.1:{} or {}",
                    self.port, tls.ldaps_url
                ),
                None => format!("389-DS could not bind 127.0.0.1:{}", self.port),
            },
            Launch::Failed(why) => why,
        };
        DirectoryError::Failed(format!(
            "{why}\n--- end of 389-DS's error log and output ({}):\n{}",
            self.dir.path().join("log/errors").display(),
            tail(&self.log(), 40),
        ))
    }
}

impl Drop for DirSrv {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `etc/dirsrv/slapd-it` under an instance (or template) directory.
fn config_dir(root: &Path) -> PathBuf {
    root.join("etc/dirsrv").join(format!("slapd-{INSTANCE}"))
}

/// The template: one dscreate'd, stopped instance with the base entries, per machine, user
/// and 389-DS version.
struct Template;

impl Template {
    /// Builds the template if it is missing or damaged, and copies it into `dir` with its
    /// paths rewritten, all under the template lock.
    fn copy_into(programs: &DirSrvPrograms, dir: &Path) -> Result<(), DirectoryError> {
        let root = templates_root()?;
        let version = program_version(&programs.ns_slapd, &["-v"], "389-Directory/");
        let template = root.join(format!("389ds-{version}-t{TEMPLATE_FORMAT}"));
        let _lock = lock_file(
            &root.join("389ds.lock"),
            TEMPLATE_LOCK_TIMEOUT,
            "the 389-DS template lock",
        )?;
        if !Template::is_ready(&template) {
            Template::build(programs, &template)?;
        }
        copy_tree(&template, dir, &["READY", OWNER_LOCK]).map_err(io(format!(
            "cannot copy {} to {}",
            template.display(),
            dir.display()
        )))?;
        let dse = config_dir(dir).join("dse.ldif");
        let text =
            std::fs::read_to_string(&dse).map_err(io(format!("cannot read {}", dse.display())))?;
        let from = template.display().to_string();
        let to = dir.display().to_string();
        let text = unfold_ldif(&text).replace(&from, &to);
        std::fs::write(&dse, text).map_err(io(format!("cannot write {}", dse.display())))?;
        let pkcs11 = config_dir(dir).join("pkcs11.txt");
        if let Ok(text) = std::fs::read_to_string(&pkcs11) {
            std::fs::write(&pkcs11, text.replace(&from, &to))
                .map_err(io(format!("cannot write {}", pkcs11.display())))?;
        }
        Ok(())
    }

    fn is_ready(template: &Path) -> bool {
        template.join("READY").is_file()
            && config_dir(template).join("dse.ldif").is_file()
            && template.join("db/data.mdb").is_file()
    }

    fn build(programs: &DirSrvPrograms, template: &Path) -> Result<(), DirectoryError> {
        if template.exists() {
            std::fs::remove_dir_all(template).map_err(io(format!(
                "cannot remove the damaged template {}",
                template.display()
            )))?;
        }
        let inf_dir = template.join("share/dirsrv/inf");
        std::fs::create_dir_all(&inf_dir)
            .map_err(io(format!("cannot create {}", inf_dir.display())))?;
        let defaults_path = DEFAULTS_INF
            .iter()
            .map(Path::new)
            .find(|path| path.is_file())
            .ok_or_else(|| {
                DirectoryError::Missing(format!(
                    "389-DS's defaults.inf was not found (looked in {DEFAULTS_INF:?}), which \
                     dscreate needs. {INSTALL_389}"
                ))
            })?;
        let defaults = std::fs::read_to_string(defaults_path)
            .map_err(io(format!("cannot read {}", defaults_path.display())))?;
        let (user, group) = (id("-un")?, id("-gn")?);
        std::fs::write(
            inf_dir.join("defaults.inf"),
            prefixed_defaults(&defaults, template, &user, &group),
        )
        .map_err(io(format!("cannot write {}", inf_dir.display())))?;
        let port = free_port()?;
        let mut secure_port = free_port()?;
        while secure_port == port {
            secure_port = free_port()?;
        }
        let inf_path = template.join("instance.inf");
        std::fs::write(&inf_path, instance_inf(port, secure_port, &user, &group))
            .map_err(io(format!("cannot write {}", inf_path.display())))?;

        let mut dscreate = Command::new(&programs.dscreate);
        dscreate
            .arg("from-file")
            .arg(&inf_path)
            .env("PREFIX", template)
            // dscreate checks that a non-root caller is the instance's user by name.
            .env("USER", &user)
            .env("LOGNAME", &user)
            .current_dir(template);
        let out = run(dscreate, None, DSCREATE_TIMEOUT).map_err(DirectoryError::Failed)?;
        if !out.status.success() {
            return Err(DirectoryError::Failed(format!(
                "dscreate from-file {} (PREFIX={}) failed ({}):\n{}{}\n--- end of the \
                 instance's error log:\n{}",
                inf_path.display(),
                template.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail(
                    &std::fs::read_to_string(template.join("log/errors")).unwrap_or_default(),
                    30
                ),
            )));
        }

        // Offline edits: loopback only, no LDAPI socket (its path length is limited), and
        // the USN plugin on: every write then bumps the entry's `entryusn`, which tests
        // watch to see whether something was written (OpenLDAP's entryCSN).
        let dse = config_dir(template).join("dse.ldif");
        let text =
            std::fs::read_to_string(&dse).map_err(io(format!("cannot read {}", dse.display())))?;
        let text =
            unfold_ldif(&text).replace("nsslapd-ldapilisten: on", "nsslapd-ldapilisten: off");
        let text = enable_plugin(&text, "cn=USN,cn=plugins,cn=config");
        // 389-DS refuses non-ASCII uid and mail values by default (the "7-bit check"
        // plugin: constraintViolation "The value is not 7-bit clean"); directories that
        // hold international names turn it off, as here (the bridge passes the refusal
        // on as a 400 where it is on).
        let text = set_plugin_enabled(&text, "cn=7-bit check,cn=plugins,cn=config", false);
        let text = set_config_attribute(&text, "nsslapd-listenhost", "127.0.0.1");
        std::fs::write(&dse, text).map_err(io(format!("cannot write {}", dse.display())))?;

        // Start it once for the base entries.
        let mut ds = DirSrv {
            url: String::new(),
            base: BASE.to_owned(),
            admin_dn: ADMIN_DN.to_owned(),
            admin_password: ADMIN_PASSWORD.to_owned(),
            pid: None,
            port: 0,
            tls: None,
            ns_slapd: programs.ns_slapd.clone(),
            dir: Root::Template(template.to_owned()),
            _owner: None,
        };
        ds.set_port(port);
        ds.launch().map_err(|e| ds.launch_failed(e))?;
        ds.ldapadd(&base_ldif())?;
        ds.stop();
        drop(ds);

        // What a stopped server leaves that a copy must not inherit.
        for stale in [
            "run/slapd.pid",
            "run/slapd.socket",
            "db/lock.mdb",
            "etc/dirsrv/slapd-it/dse.ldif.startOK",
            "etc/dirsrv/slapd-it/dse.ldif.bak",
            "etc/dirsrv/slapd-it/dse.ldif.tmp",
            "ns-slapd.out",
        ] {
            let _ = std::fs::remove_file(template.join(stale));
        }
        if let Ok(logs) = std::fs::read_dir(template.join("log")) {
            for log in logs.flatten() {
                let _ = File::create(log.path());
            }
        }
        std::fs::write(template.join("READY"), format!("{}\n", template.display())).map_err(io(
            format!("cannot write {}", template.join("READY").display()),
        ))
    }
}

/// Where an instance lives: its own temporary directory, or (while the template is built)
/// the template's directory, which outlives the server.
enum Root {
    Temp(tempfile::TempDir),
    Template(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Root::Temp(dir) => dir.path(),
            Root::Template(dir) => dir,
        }
    }
}

/// `ou=people` and `ou=groups` under the suffix entry that dscreate made.
fn base_ldif() -> String {
    format!(
        "dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n"
    )
}

/// The installed `defaults.inf` with systemd off, `user`/`group` set and every path of the
/// instance under `root` (`sysconf_dir` stays: dscreate copies the stock schema from it).
fn prefixed_defaults(defaults: &str, root: &Path, user: &str, group: &str) -> String {
    let root = root.display();
    let instance_dir = format!("{root}/etc/dirsrv/slapd-{{instance_name}}");
    let value = |key: &str| -> Option<String> {
        Some(match key {
            "with_systemd" => "0".to_owned(),
            "user" => user.to_owned(),
            "group" => group.to_owned(),
            "config_dir" | "cert_dir" => instance_dir.clone(),
            "schema_dir" => format!("{instance_dir}/schema"),
            "initconfig_dir" => format!("{root}/etc/default"),
            "local_state_dir" => format!("{root}/var"),
            "run_dir" => format!("{root}/run"),
            "ldapi" => format!("{root}/run/slapd.socket"),
            "pid_file" => format!("{root}/run/slapd.pid"),
            "tmpfiles_d" => format!("{root}/tmpfiles.d"),
            "inst_dir" => format!("{root}/inst"),
            "lock_dir" => format!("{root}/lock"),
            "log_dir" => format!("{root}/log"),
            "access_log" => format!("{root}/log/access"),
            "audit_log" => format!("{root}/log/audit"),
            "error_log" => format!("{root}/log/errors"),
            "security_log" => format!("{root}/log/security"),
            "db_dir" | "db_home_dir" => format!("{root}/db"),
            "backup_dir" => format!("{root}/bak"),
            "ldif_dir" => format!("{root}/ldif"),
            _ => return None,
        })
    };
    let mut out = String::from("; Generated by scim_bridge::dirsrv (src/dirsrv.rs)\n");
    for line in defaults.lines() {
        let replaced = line
            .split_once('=')
            .and_then(|(key, _)| value(key.trim()).map(|v| format!("{} = {v}", key.trim())));
        out += replaced.as_deref().unwrap_or(line);
        out.push('\n');
    }
    out
}

/// dscreate's INF file for the template instance.
fn instance_inf(port: u16, secure_port: u16, user: &str, group: &str) -> String {
    format!(
        "; Generated by scim_bridge::dirsrv (src/dirsrv.rs)\n\
         [general]\n\
         config_version = 2\n\
         full_machine_name = localhost\n\
         strict_host_checking = False\n\
         systemd = False\n\
         start = False\n\
         [slapd]\n\
         instance_name = {INSTANCE}\n\
         port = {port}\n\
         secure_port = {secure_port}\n\
         root_dn = {ADMIN_DN}\n\
         root_password = {ADMIN_PASSWORD}\n\
         self_sign_cert = False\n\
         db_lib = mdb\n\
         user = {user}\n\
         group = {group}\n\
         [backend-userroot]\n\
         suffix = {BASE}\n\
         create_suffix_entry = True\n"
    )
}

/// The LDIF text with its folded lines (continuations start with one space) joined, so a
/// path can be replaced wherever the fold fell; 389-DS reads unfolded LDIF as well.
fn unfold_ldif(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.strip_prefix(' ') {
            Some(rest) if !out.is_empty() => {
                out.pop(); // the newline of the line it continues
                out += rest;
            }
            _ => out += line,
        }
        out.push('\n');
    }
    out
}

/// Turns the plugin entry `dn` of an unfolded dse.ldif on.
fn enable_plugin(dse: &str, dn: &str) -> String {
    set_plugin_enabled(dse, dn, true)
}

/// Turns the plugin entry `dn` of an unfolded dse.ldif on or off.
fn set_plugin_enabled(dse: &str, dn: &str, on: bool) -> String {
    let mut out = String::with_capacity(dse.len());
    let mut inside = false;
    for line in dse.lines() {
        if let Some(entry) = line.strip_prefix("dn: ") {
            inside = entry.eq_ignore_ascii_case(dn);
        }
        if inside
            && line
                .to_ascii_lowercase()
                .starts_with("nsslapd-pluginenabled:")
        {
            out.push_str(if on {
                "nsslapd-pluginEnabled: on\n"
            } else {
                "nsslapd-pluginEnabled: off\n"
            });
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Sets `attr: value` in the `cn=config` entry of an unfolded dse.ldif (replacing the
/// attribute's value, or adding it after the DN).
fn set_config_attribute(dse: &str, attr: &str, value: &str) -> String {
    let mut lines: Vec<String> = dse.lines().map(str::to_owned).collect();
    let Some(start) = lines
        .iter()
        .position(|l| l.eq_ignore_ascii_case("dn: cn=config"))
    else {
        return dse.to_owned();
    };
    let prefix = format!("{}:", attr.to_ascii_lowercase());
    let end = lines[start..]
        .iter()
        .position(|l| l.is_empty())
        .map_or(lines.len(), |at| start + at);
    let line = format!("{attr}: {value}");
    match lines[start..end]
        .iter()
        .position(|l| l.to_ascii_lowercase().starts_with(&prefix))
    {
        Some(at) => lines[start + at] = line,
        None => lines.insert(start + 1, line),
    }
    lines.join("\n") + "\n"
}

/// Sets the LDAP port in `config_dir/dse.ldif`, and with `secure_port` turns LDAPS on there
/// (on 127.0.0.1 only).
fn set_dse_ports(
    config_dir: &Path,
    port: u16,
    secure_port: Option<u16>,
) -> Result<(), DirectoryError> {
    let dse = config_dir.join("dse.ldif");
    let text =
        std::fs::read_to_string(&dse).map_err(io(format!("cannot read {}", dse.display())))?;
    let mut text = set_config_attribute(&text, "nsslapd-port", &port.to_string());
    if let Some(secure_port) = secure_port {
        text = set_config_attribute(&text, "nsslapd-security", "on");
        text = set_config_attribute(&text, "nsslapd-securePort", &secure_port.to_string());
        text = set_config_attribute(&text, "nsslapd-securelistenhost", "127.0.0.1");
    }
    std::fs::write(&dse, text).map_err(io(format!("cannot write {}", dse.display())))
}

/// Imports the server certificate and key of `tls` into the instance's NSS database as
/// `Server-Cert` (the name `cn=RSA,cn=encryption,cn=config` already gives), and its CA as
/// trusted. The database's password is in `pwdfile.txt` (dscreate wrote it, and `pin.txt`
/// for the server).
fn import_server_certificate(config_dir: &Path, tls: &SlapdTls) -> Result<(), DirectoryError> {
    const P12_PASSWORD: &str = "it-389ds-p12";
    let tool = |name: &str, args: &[&std::ffi::OsStr]| -> Result<(), DirectoryError> {
        let program = find_program(name, SBIN_DIRS).ok_or_else(|| {
            DirectoryError::Missing(format!(
                "{name} was not found on PATH; a 389-DS with TLS needs openssl and the NSS                  tools pk12util and certutil (Debian packages openssl and libnss3-tools,                  which 389-ds-base pulls in). {INSTALL_389}"
            ))
        })?;
        let mut command = Command::new(program);
        command.args(args).current_dir(config_dir);
        let out = run(command, None, TOOL_TIMEOUT).map_err(DirectoryError::Failed)?;
        if out.status.success() {
            return Ok(());
        }
        Err(DirectoryError::Failed(format!(
            "{name} {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let p12 = config_dir.join("server.p12");
    let db = std::ffi::OsString::from(format!("sql:{}", config_dir.display()));
    let pwdfile = config_dir.join("pwdfile.txt");
    let p12_pass = format!("pass:{P12_PASSWORD}");
    tool(
        "openssl",
        &[
            os("pkcs12"),
            os("-export"),
            os("-in"),
            tls.server_cert_file.as_os_str(),
            os("-inkey"),
            tls.server_key_file.as_os_str(),
            os("-name"),
            os("Server-Cert"),
            os("-out"),
            p12.as_os_str(),
            os("-passout"),
            std::ffi::OsStr::new(&p12_pass),
        ],
    )?;
    tool(
        "pk12util",
        &[
            os("-i"),
            p12.as_os_str(),
            os("-d"),
            &db,
            os("-k"),
            pwdfile.as_os_str(),
            os("-W"),
            os(P12_PASSWORD),
        ],
    )?;
    tool(
        "certutil",
        &[
            os("-A"),
            os("-d"),
            &db,
            os("-f"),
            pwdfile.as_os_str(),
            os("-n"),
            os("scim-bridge test CA"),
            os("-t"),
            os("CT,,"),
            os("-a"),
            os("-i"),
            tls.ca_file.as_os_str(),
        ],
    )?;
    let _ = std::fs::remove_file(&p12);
    Ok(())
}

/// `id -un` or `id -gn`: the current user's or group's name.
fn id(flag: &str) -> Result<String, DirectoryError> {
    let mut command = Command::new("id");
    command.arg(flag);
    let out = run(command, None, TOOL_TIMEOUT).map_err(DirectoryError::Failed)?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || name.is_empty() {
        return Err(DirectoryError::Failed(format!(
            "`id {flag}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(name)
}

// ---- Shared with `crate::samba`: the template cache, locks, daemons, the admin tools. ----

/// `$TMPDIR/scim-bridge-<uid>/` (created, mode 0700): where templates and their locks live,
/// one per user, so one user's template is never half-readable by another.
pub(crate) fn templates_root() -> Result<PathBuf, DirectoryError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // /proc/self belongs to the process's effective user: its uid without libc.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(io("cannot stat /proc/self to learn the user id"))?;
    let root = std::env::temp_dir().join(format!("scim-bridge-{uid}"));
    std::fs::create_dir_all(&root).map_err(io(format!("cannot create {}", root.display())))?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).map_err(io(
        format!("cannot restrict {} to its owner", root.display()),
    ))?;
    Ok(root)
}

/// The version `program args` prints after `prefix` (e.g. `389-Directory/` → `2.3.1
/// B2025.016.1616`), made safe for a directory name; `unknown` if there is none.
pub(crate) fn program_version(program: &Path, args: &[&str], prefix: &str) -> String {
    let mut command = Command::new(program);
    command.args(args);
    let Ok(out) = run(command, None, TOOL_TIMEOUT) else {
        return "unknown".to_owned();
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let version = text
        .lines()
        .find_map(|line| {
            line.split_once(prefix)
                .map(|(_, rest)| rest.trim().to_owned())
        })
        .unwrap_or_default();
    let safe: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    if safe.is_empty() {
        "unknown".to_owned()
    } else {
        safe
    }
}

/// An exclusive `flock` on `path` (created), waited for up to `timeout`. flock locks belong
/// to the open file, so two opens in one process exclude each other as two processes do;
/// the kernel drops the lock when the file is closed or its process dies.
pub(crate) fn lock_file(
    path: &Path,
    timeout: Duration,
    what: &str,
) -> Result<File, DirectoryError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(format!("cannot open {what} {}", path.display())))?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = (&file).read_to_string(&mut holder);
                return Err(DirectoryError::Failed(format!(
                    "{}: {what} is still held by another process after {timeout:?}{}",
                    path.display(),
                    if holder.trim().is_empty() {
                        String::new()
                    } else {
                        format!(" (it last recorded: {})", holder.trim())
                    }
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(DirectoryError::Io {
                    what: format!("cannot lock {what} {}", path.display()),
                    source: e,
                });
            }
        }
    }
}

/// Copies the tree `from` into the existing directory `to` (regular files, directories with
/// their permissions, symlinks), leaving out the top-level names in `skip`.
pub(crate) fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if skip.iter().any(|name| entry.file_name() == *name) {
            continue;
        }
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&source, &target, &[])?;
            std::fs::set_permissions(&target, entry.metadata()?.permissions())?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target)?;
        }
        // Sockets and fifos (a server's leftovers) are not copied: they cannot be.
    }
    Ok(())
}

/// The file in an instance directory whose `flock` the instance holds while it lives.
const OWNER_LOCK: &str = "owner.lock";

/// An instance's claim on its directory: an exclusive `flock` on `DIR/owner.lock`, held until
/// the instance is dropped, or released by the kernel when its process dies. A directory
/// whose lock can be taken has no owner: [`reap_orphans`] removes it.
pub(crate) struct Owner(#[allow(dead_code)] File);

impl Owner {
    /// Claims `dir`. The lock is taken on a file of another name and then renamed into
    /// place, so a reaper never sees an `owner.lock` that is not yet locked.
    pub(crate) fn claim(dir: &Path) -> Result<Owner, DirectoryError> {
        let fresh = dir.join("owner.lock.new");
        let file =
            File::create(&fresh).map_err(io(format!("cannot create {}", fresh.display())))?;
        file.try_lock().map_err(|e| {
            DirectoryError::Failed(format!("{}: cannot lock a new file: {e}", fresh.display()))
        })?;
        std::fs::rename(&fresh, dir.join(OWNER_LOCK))
            .map_err(io(format!("cannot rename {}", fresh.display())))?;
        Ok(Owner(file))
    }
}

/// Removes the instance directories `$TMPDIR/<prefix>…` that no live instance owns (their
/// test process was killed before it could drop them), first killing the server whose pid
/// is in their `run/<pidfile>` if it still runs with `marker(dir)` on its command line.
/// Directories without an `owner.lock`, or of other users, are left alone.
pub(crate) fn reap_orphans(prefix: &str, pidfile: &str, marker: impl Fn(&Path) -> String) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let dir = entry.path();
        let Ok(lock) = File::open(dir.join(OWNER_LOCK)) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // its owner lives
        }
        let marker = marker(&dir);
        let pid = std::fs::read_to_string(dir.join("run").join(pidfile))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        // The pidfile's process, and any other still running with the instance on its
        // command line (a pidfile not written yet, or removed by a reaper racing us).
        let mut pids: Vec<u32> = pid.into_iter().collect();
        pids.extend(pids_running_with(&marker));
        // A server that survives (the `kill` tool could not even be started, on a loaded
        // machine) keeps its directory, so the next start tries again.
        if pids.into_iter().all(|pid| kill_and_wait(pid, &marker)) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// SIGKILLs `pid` (if it runs with `marker`) until it is gone: three tries of up to 5 s.
/// Whether it is gone.
fn kill_and_wait(pid: u32, marker: &str) -> bool {
    for _ in 0..3 {
        if !daemon_alive(pid, marker) {
            return true;
        }
        signal(pid, "KILL");
        if wait_gone(pid, marker, Duration::from_secs(5)) {
            return true;
        }
    }
    !daemon_alive(pid, marker)
}

/// The processes whose command line contains `marker` (from `/proc`).
fn pids_running_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id() && daemon_alive(pid, marker))
        .collect()
}

/// Whether process `pid` is alive (not a zombie) and its command line contains `marker`, so
/// a pid the kernel reused for another program does not count.
pub(crate) fn daemon_alive(pid: u32, marker: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last ')', as comm may hold one.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, None | Some('Z' | 'X' | 'x')) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
}

/// Sends `signal` (`TERM`, `KILL`) to `pid` through `kill` (this crate has no unsafe code).
pub(crate) fn signal(pid: u32, signal: &str) {
    // Spawning `kill` can fail for a moment on a loaded machine (EAGAIN): tried again.
    for _ in 0..3 {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if sent.is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a daemon that is not our child: SIGTERM, up to `timeout` for it to go, then
/// SIGKILL and up to 5 s more.
pub(crate) fn stop_daemon(pid: u32, marker: &str, timeout: Duration) {
    if !daemon_alive(pid, marker) {
        return;
    }
    signal(pid, "TERM");
    if wait_gone(pid, marker, timeout) {
        return;
    }
    signal(pid, "KILL");
    wait_gone(pid, marker, Duration::from_secs(5));
}

/// Waits up to `timeout` for the daemon to be gone; whether it is.
pub(crate) fn wait_gone(pid: u32, marker: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while daemon_alive(pid, marker) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Fails with what is missing unless the ldap-utils tools are on PATH.
pub(crate) fn require_ldap_utils(server: &str) -> Result<(), DirectoryError> {
    let missing: Vec<&str> = ["ldapsearch", "ldapadd", "ldapmodify", "ldapdelete"]
        .into_iter()
        .filter(|tool| find_program(tool, &[]).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(DirectoryError::Missing(format!(
        "{server} is checked with the OpenLDAP command-line tools, but {} not found on \
         PATH. Install them with `apt-get install ldap-utils` (Debian package), or run the \
         test suite with `bash tests/run.sh`, which installs them.",
        missing.join(", ") + if missing.len() == 1 { " was" } else { " were" }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfold_ldif_joins_continuation_lines() {
        assert_eq!(
            unfold_ldif("dn: cn=a\nnsslapd-x: /tmp/a/b\n c/d\nz: 1\n"),
            "dn: cn=a\nnsslapd-x: /tmp/a/bc/d\nz: 1\n"
        );
    }

    #[test]
    fn set_config_attribute_replaces_or_adds_in_the_config_entry_only() {
        let dse = "dn: cn=config\ncn: config\nnsslapd-port: 389\n\ndn: cn=other\nnsslapd-port: 1\n";
        let replaced = set_config_attribute(dse, "nsslapd-port", "4000");
        assert!(
            replaced.contains("dn: cn=config\ncn: config\nnsslapd-port: 4000\n"),
            "{replaced}"
        );
        assert!(
            replaced.contains("dn: cn=other\nnsslapd-port: 1\n"),
            "{replaced}"
        );
        let added = set_config_attribute(dse, "nsslapd-listenhost", "127.0.0.1");
        assert!(
            added.starts_with("dn: cn=config\nnsslapd-listenhost: 127.0.0.1\n"),
            "{added}"
        );
    }

    #[test]
    fn prefixed_defaults_moves_every_instance_path_under_the_root() {
        let defaults = "[slapd]\nwith_systemd = 1\nsysconf_dir = /etc\nrun_dir = /run/dirsrv\n\
                        db_dir = /var/lib/dirsrv/slapd-{instance_name}/db\nuser = dirsrv\n";
        let out = prefixed_defaults(defaults, Path::new("/tmp/t"), "me", "us");
        assert!(out.contains("with_systemd = 0\n"), "{out}");
        assert!(out.contains("sysconf_dir = /etc\n"), "{out}");
        assert!(out.contains("run_dir = /tmp/t/run\n"), "{out}");
        assert!(out.contains("db_dir = /tmp/t/db\n"), "{out}");
        assert!(out.contains("user = me\n"), "{out}");
    }
}
