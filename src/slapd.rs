//! A throw-away OpenLDAP server for tests and the benchmark: [`Slapd::start`] starts its
//! own `slapd` on a free loopback port, from a `slapd.conf` generated in a temporary
//! directory (mdb database, core/cosine/inetorgperson/nis schemas, ppolicy overlay when the
//! module is installed), with the base entries loaded by `slapadd`. Dropping the [`Slapd`]
//! stops the server and removes the directory. The integration tests (`tests/it/slapd.rs`,
//! a thin panicking wrapper) and `scim-bridge bench --ldap` both use it; nothing in the
//! daemon does.
//!
//! ```no_run
//! # fn main() -> Result<(), scim_bridge::slapd::SlapdError> {
//! use scim_bridge::slapd::Slapd;
//! let ldap = Slapd::start()?;
//! ldap.ldapadd("dn: uid=alice,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice\nsn: Liddell\n")?;
//! let ldif = ldap.ldapsearch(&ldap.base, "(uid=alice)", &["cn"])?;
//! # Ok(()) }
//! ```
//!
//! It needs `slapd` and the OpenLDAP command-line tools (Debian packages `slapd` and
//! `ldap-utils`), which `bash tests/run.sh` installs; without them every start fails with
//! [`SlapdError::Missing`], naming what is missing and how to install it. Everything here
//! is synchronous (std::process only), so it can be used from async tests and plain code
//! alike.
//!
//! The directory tree after [`Slapd::start`]:
//! - `dc=example,dc=com` (dcObject + organization)
//! - `ou=people,dc=example,dc=com`, `ou=groups,dc=example,dc=com`
//! - `ou=policies,dc=example,dc=com` with the default password policy
//!   `cn=default,ou=policies,…` (`pwdLockout: TRUE`), when the ppolicy module is
//!   installed (it is on Debian): a user with `pwdAccountLockedTime: 000001010000Z`
//!   then really cannot bind.
//!
//! [`Slapd::start_tls`] starts one that also speaks TLS: StartTLS on the `ldap://` URL and
//! a second listener on `ldaps://127.0.0.1:PORT2`, with a throw-away CA, a server
//! certificate for `IP:127.0.0.1` and `DNS:localhost`, and a client certificate (subject
//! [`CLIENT_SUBJECT`]) that SASL EXTERNAL maps to the admin, all generated with the
//! `openssl` command-line tool. Client certificates are asked for (`TLSVerifyClient try`),
//! not required. The tools ([`Slapd::ldapsearch`] and the others) stay on plain `ldap://`.
//!
//! The database is configured as the tests need it, not tuned: mdb with its default
//! durability (a sync per write transaction), `loglevel none`, equality indexes on the
//! attributes the example mapping searches.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The suffix of the directory.
pub const BASE: &str = "dc=example,dc=com";
/// The root DN (`rootdn` in slapd.conf): not subject to access control or size limits.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
/// The root DN's password, stored in cleartext in slapd.conf (`rootpw`).
pub const ADMIN_PASSWORD: &str = "it-slapd-admin-secret";
/// Where users go.
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=com";
/// Where groups go.
pub const GROUPS_DN: &str = "ou=groups,dc=example,dc=com";
/// The default password policy, present when the ppolicy module is installed.
pub const PPOLICY_DN: &str = "cn=default,ou=policies,dc=example,dc=com";
/// The subject of the client certificate of [`Slapd::start_tls`], as slapd writes it: the
/// identity SASL EXTERNAL authenticates, which `authz-regexp` maps to [`ADMIN_DN`].
pub const CLIENT_SUBJECT: &str = "cn=scim-bridge,o=Example";

/// The example LDAP configuration, whose target and mapping
/// [`Slapd::example_target_yaml`] points at a throw-away server.
const LDAP_EXAMPLE: &str = include_str!("../examples/ldap-openldap.yaml");

/// How long slapd may take to answer a base search after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERM may take before slapd is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How many free ports `start` tries when slapd cannot bind the one it picked.
const PORT_ATTEMPTS: usize = 5;
/// How long `restart` keeps retrying its old port if something else holds it.
const REBIND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one readiness search may take (a connection accepted by a listener that never
/// answers would otherwise hang it: the tools' nettimeout only covers connecting).
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `ldapsearch`/`ldapadd`/`ldapmodify`/`ldapdelete`/`openssl` may take.
pub(crate) const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Directories where distributions put slapd's dynamically loaded modules
/// (Debian/Ubuntu, Alpine/Arch, Fedora/RHEL, SUSE).
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/ldap",
    "/usr/lib/openldap",
    "/usr/lib64/openldap",
    "/usr/libexec/openldap",
];
/// Directories where distributions put the `.schema` files.
const SCHEMA_DIRS: &[&str] = &["/etc/ldap/schema", "/etc/openldap/schema"];
/// Directories searched for slapd/slapadd besides PATH (/usr/sbin is not on a user's PATH).
pub(crate) const SBIN_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin"];
/// How long the generated certificates are valid: long enough for any test run.
const CERT_DAYS: &str = "2";

/// Why a throw-away directory server (this module's slapd, [`crate::dirsrv`]'s 389
/// Directory Server or [`crate::samba`]'s Samba AD DC) could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The server, its setup tools, the ldap-utils tools or openssl are not installed;
    /// the message says which and how to install them.
    #[error("{0}")]
    Missing(String),
    /// A file or directory of the server could not be created or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The server or one of the tools ran and failed; the message carries their output.
    #[error("{0}")]
    Failed(String),
}

/// The name this error had when slapd was the only throw-away server.
pub type SlapdError = DirectoryError;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SlapdError {
    let what = what.into();
    move |source| SlapdError::Io { what, source }
}

/// A running slapd on `ldap://127.0.0.1:PORT`. Dropping it stops slapd and removes its
/// temporary directory (config, database and log).
pub struct Slapd {
    /// `ldap://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// `dc=example,dc=com`
    pub base: String,
    /// `cn=admin,dc=example,dc=com`
    pub admin_dn: String,
    pub admin_password: String,
    child: Option<Child>,
    port: u16,
    /// The TLS side, when started with [`Slapd::start_tls`].
    tls: Option<SlapdTls>,
    slapd: PathBuf,
    // Declared last so it is removed after slapd is gone.
    dir: tempfile::TempDir,
}

impl Slapd {
    /// Starts a fresh slapd with the base entries and waits until it answers a search.
    ///
    /// Fails if slapd or the ldap-utils tools are not installed, or if slapd does not come
    /// up within 15 s (with the end of slapd's output and its slapd.conf in the message).
    pub fn start() -> Result<Slapd, SlapdError> {
        Slapd::start_with(false)
    }

    /// Like [`Slapd::start`], with TLS as well (see the module doc): StartTLS on `url`,
    /// and `ldaps://` on a second port ([`SlapdTls::ldaps_url`]).
    ///
    /// Fails also if the `openssl` command-line tool is missing or fails.
    pub fn start_tls() -> Result<Slapd, SlapdError> {
        Slapd::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Slapd, SlapdError> {
        let tools = Tools::find()?;
        let dir = tempfile::Builder::new()
            .prefix("slapd-")
            .tempdir()
            .map_err(io("cannot create a temporary directory for slapd"))?;
        let db = dir.path().join("db");
        std::fs::create_dir(&db).map_err(io(format!("cannot create {}", db.display())))?;
        let tls = if tls {
            Some(SlapdTls::generate(&dir.path().join("tls"))?)
        } else {
            None
        };

        let modules = find_module_dir();
        let ppolicy = modules.as_deref().is_some_and(|m| has_module(m, "ppolicy"));
        let conf_path = dir.path().join("slapd.conf");
        let conf = slapd_conf(dir.path(), modules.as_deref(), ppolicy, tls.as_ref());
        std::fs::write(&conf_path, &conf)
            .map_err(io(format!("cannot write {}", conf_path.display())))?;
        let ldif_path = dir.path().join("base.ldif");
        std::fs::write(&ldif_path, base_ldif(ppolicy))
            .map_err(io(format!("cannot write {}", ldif_path.display())))?;

        let mut slapadd = Command::new(&tools.slapadd);
        slapadd.arg("-f").arg(&conf_path).arg("-l").arg(&ldif_path);
        let out = run(slapadd, None, TOOL_TIMEOUT).map_err(SlapdError::Failed)?;
        if !out.status.success() {
            return Err(SlapdError::Failed(format!(
                "slapadd of the base entries failed ({}):\n{}{}\nslapd.conf:\n{conf}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            )));
        }

        let mut slapd = Slapd {
            url: String::new(),
            base: BASE.to_string(),
            admin_dn: ADMIN_DN.to_string(),
            admin_password: ADMIN_PASSWORD.to_string(),
            child: None,
            port: 0,
            tls,
            slapd: tools.slapd,
            dir,
        };
        let mut attempt = 1;
        loop {
            slapd.set_port(free_port()?);
            if slapd.tls.is_some() {
                let mut ldaps = free_port()?;
                while ldaps == slapd.port {
                    ldaps = free_port()?;
                }
                if let Some(tls) = slapd.tls.as_mut() {
                    tls.set_port(ldaps);
                }
            }
            match slapd.launch() {
                Ok(()) => return Ok(slapd),
                Err(Launch::AddressInUse) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(slapd.launch_failed(e)),
            }
        }
    }

    /// Stops slapd: SIGTERM, wait up to 5 s, then kill. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, SHUTDOWN_TIMEOUT);
        }
    }

    /// Stops slapd (if running) and starts it again on the SAME port and database, so
    /// `url` stays valid and the data survives (for outage tests).
    pub fn restart(&mut self) -> Result<(), SlapdError> {
        self.stop();
        self.start_again()
    }

    /// Starts slapd again after [`Slapd::stop`], on the same port and database.
    pub fn start_again(&mut self) -> Result<(), SlapdError> {
        if self.child.is_some() {
            return Err(SlapdError::Failed(format!(
                "{}: start_again() while slapd is still running; stop() it first",
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

    /// Whether slapd is running (started and not stopped, and has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// slapd's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The TCP port slapd listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS side: the `ldaps://` URL and the certificate files; `None` unless slapd
    /// was started with [`Slapd::start_tls`].
    pub fn tls(&self) -> Option<&SlapdTls> {
        self.tls.as_ref()
    }

    /// The temporary directory with slapd.conf, the database (`db/`) and `slapd.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What slapd printed so far (startup/shutdown notices and errors; not per-operation
    /// logs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// `ldapsearch -LLL` (subtree) as the admin: the LDIF text, lines unwrapped. `attrs`
    /// empty means all user attributes; name operational ones (`+`, `entryUUID`,
    /// `pwdAccountLockedTime`) explicitly. A base that does not exist (noSuchObject, exit
    /// 32) gives an empty string; any other failure is an error with ldapsearch's stderr.
    pub fn ldapsearch(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<String, SlapdError> {
        self.admin().ldapsearch(base, filter, attrs)
    }

    /// `ldapmodify` as the admin (LDIF with `changetype:` records); any error fails.
    pub fn ldapmodify(&self, ldif: &str) -> Result<(), SlapdError> {
        self.admin().ldapmodify(ldif)
    }

    /// `ldapadd` as the admin (LDIF entries); any error fails, e.g. an entry that already
    /// exists or violates the schema.
    pub fn ldapadd(&self, ldif: &str) -> Result<(), SlapdError> {
        self.admin().ldapadd(ldif)
    }

    /// `ldapdelete` of one entry as the admin; any error fails (including noSuchObject).
    pub fn ldapdelete(&self, dn: &str) -> Result<(), SlapdError> {
        self.admin().ldapdelete(dn)
    }

    /// The ldap-utils tools bound as this slapd's admin (shared with the other
    /// directories' harnesses).
    fn admin(&self) -> Admin<'_> {
        Admin {
            url: &self.url,
            dn: &self.admin_dn,
            password: &self.admin_password,
            server: "slapd",
        }
    }

    /// `examples/ldap-openldap.yaml` from its `target:` section on (the target and the
    /// mapping), pointed at this slapd (URL, bind DN and password, base as values) with
    /// short timeouts (connect 1 s, operation 2 s, so outage tests fail fast): the YAML a
    /// test merges into the daemon's base config, and the bench's LDAP target.
    pub fn example_target_yaml(&self) -> String {
        // The example is compiled in; `slapd::tests` checks it has a target section.
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

    /// An ldap-utils command bound as the admin to this server, ignoring ldap.conf/.ldaprc.
    fn ldap_tool(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("LDAPNOINIT", "1")
            .args(["-x", "-o", "nettimeout=10", "-H", &self.url])
            .args(["-D", &self.admin_dn, "-w", &self.admin_password]);
        c
    }

    fn set_port(&mut self, port: u16) {
        self.port = port;
        self.url = format!("ldap://127.0.0.1:{port}");
    }

    /// Spawns slapd in the foreground on `self.port` and waits until it answers a base
    /// search as the admin.
    fn launch(&mut self) -> Result<(), Launch> {
        if self.child.is_some() {
            return Err(Launch::Exited("slapd is already running".to_owned()));
        }
        let log_path = self.dir.path().join("slapd.log");
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| Launch::Exited(format!("cannot open {}: {e}", log_path.display())))
        };
        let (log, log_err) = (open_log()?, open_log()?);
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        // A pidfile left by a killed slapd must not pass for the new one's.
        let _ = std::fs::remove_file(self.dir.path().join("slapd.pid"));
        // `-d 32768` (debug level "none") keeps slapd in the foreground, so it is our child
        // and a SIGTERM + wait stops it cleanly, and prints only the messages logged at
        // every level: startup, shutdown and errors such as a failed bind(2) or a bad
        // config line. `-d 0` would print nothing at all, not even errors.
        let mut listeners = format!("{}/", self.url);
        if let Some(tls) = &self.tls {
            listeners += &format!(" {}/", tls.ldaps_url);
        }
        let child = Command::new(&self.slapd)
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(listeners)
            .args(["-d", "32768"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| Launch::Exited(format!("cannot spawn {}: {e}", self.slapd.display())))?;
        let pid = child.id().to_string();
        self.child = Some(child);

        // Only a slapd that wrote its pidfile has bound the port (it binds, then opens the
        // database, then writes the pidfile): until then a search could reach whoever else
        // holds the port, e.g. another test's slapd that won the race for the same free port.
        let pidfile = self.dir.path().join("slapd.pid");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let output = read_from(&log_path, log_start);
                return Err(
                    if output.contains("errno=98") || output.contains("in use") {
                        Launch::AddressInUse
                    } else {
                        Launch::Exited(format!("slapd exited ({status})"))
                    },
                );
            }
            let ours = std::fs::read_to_string(&pidfile).is_ok_and(|text| text.trim() == pid);
            if ours && self.answers() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(Launch::Exited(format!(
                    "slapd did not answer a search on {} within {STARTUP_TIMEOUT:?}",
                    self.url
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether a base-scope search of the suffix as the admin succeeds.
    fn answers(&self) -> bool {
        let mut probe = self.ldap_tool("ldapsearch");
        probe.args([
            "-LLL",
            "-s",
            "base",
            "-b",
            &self.base,
            "(objectClass=*)",
            "1.1",
        ]);
        run(probe, None, PROBE_TIMEOUT).is_ok_and(|out| out.status.success())
    }

    /// The error for a launch that failed for good: why, the end of slapd's output, its
    /// configuration, and the AppArmor hint.
    fn launch_failed(&self, e: Launch) -> SlapdError {
        let why = match e {
            Launch::AddressInUse => match &self.tls {
                Some(tls) => format!(
                    "slapd could not bind 127.0.0.1:{} or {}",
                    self.port, tls.ldaps_url
                ),
                None => format!("slapd could not bind 127.0.0.1:{}", self.port),
            },
            Launch::Exited(why) => why,
        };
        SlapdError::Failed(format!(
            "{why}\n--- end of slapd's output ({}):\n{}\n--- slapd.conf:\n{}\n(If the output says \
             \"Permission denied\" on the temporary directory, AppArmor may confine \
             /usr/sbin/slapd: `aa-complain /usr/sbin/slapd`.)",
            self.dir.path().join("slapd.log").display(),
            tail(&self.log(), 40),
            std::fs::read_to_string(self.dir.path().join("slapd.conf")).unwrap_or_default()
        ))
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The TLS side of a slapd started with [`Slapd::start_tls`]: all files PEM, in the
/// server's temporary directory.
#[derive(Debug, Clone)]
pub struct SlapdTls {
    /// `ldaps://127.0.0.1:PORT2`, no trailing slash (a different port from `url`'s).
    pub ldaps_url: String,
    /// The test CA, which signed the server and the client certificates.
    pub ca_file: PathBuf,
    /// The client certificate (subject [`CLIENT_SUBJECT`]) and its private key.
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// Another CA, which signed nothing slapd presents: trusting only it must fail.
    pub unknown_ca_file: PathBuf,
    /// The server's certificate (for 127.0.0.1 and localhost) and its private key.
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
    ldaps_port: u16,
}

impl SlapdTls {
    /// The port of [`SlapdTls::ldaps_url`].
    pub fn ldaps_port(&self) -> u16 {
        self.ldaps_port
    }

    pub(crate) fn set_port(&mut self, port: u16) {
        self.ldaps_port = port;
        self.ldaps_url = format!("ldaps://127.0.0.1:{port}");
    }

    /// Generates in `dir` (created) the test CA, the server certificate, the client
    /// certificate and the unknown CA: P-256 keys, unencrypted, valid for [`CERT_DAYS`].
    fn generate(dir: &Path) -> Result<SlapdTls, SlapdError> {
        let openssl = find_program("openssl", &[]).ok_or_else(|| {
            SlapdError::Missing(
                "the openssl command-line tool, needed for the throw-away slapd's TLS \
                 certificates, was not found on PATH; install it (Debian package `openssl`: \
                 `apt-get install openssl`), or run the test suite with `bash tests/run.sh`, \
                 which installs it"
                    .to_owned(),
            )
        })?;
        std::fs::create_dir(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let openssl = |args: &[&str]| -> Result<(), SlapdError> {
            let mut command = Command::new(&openssl);
            command.args(args).current_dir(dir);
            let out = run(command, None, TOOL_TIMEOUT)
                .map_err(|e| SlapdError::Failed(format!("openssl {args:?}: {e}")))?;
            if out.status.success() {
                return Ok(());
            }
            Err(SlapdError::Failed(format!(
                "openssl {args:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        };
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = |name: &str, subject: &str| {
            let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec!["req", "-x509"];
            args.extend(new_key);
            args.extend(["-keyout", &key, "-out", &cert, "-days", CERT_DAYS]);
            args.extend(["-subj", subject]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&args)
        };
        // An end-entity certificate signed by the test CA, with the extensions in `ext`.
        let leaf = |name: &str, subject: &str, serial: &str, ext: &str| {
            let (key, csr, cert, ext_file) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let ext_path = dir.join(&ext_file);
            std::fs::write(
                &ext_path,
                format!(
                    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"
                ),
            )
            .map_err(io(format!("cannot write {}", ext_path.display())))?;
            let mut args = vec!["req", "-new"];
            args.extend(new_key);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
            openssl(&args)?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                CERT_DAYS,
                "-extfile",
                &ext_file,
                "-out",
                &cert,
            ])
        };
        ca("ca", "/O=Example/CN=scim-bridge test CA")?;
        ca("unknown-ca", "/O=Elsewhere/CN=an unrelated CA")?;
        leaf(
            "server",
            "/O=Example/CN=localhost",
            "2",
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        // OpenSSL's subject order is the reverse of the DN's: this is CLIENT_SUBJECT.
        leaf(
            "client",
            "/O=Example/CN=scim-bridge",
            "3",
            "extendedKeyUsage=clientAuth\n",
        )?;
        Ok(SlapdTls {
            ldaps_url: String::new(),
            ca_file: dir.join("ca.pem"),
            client_cert_file: dir.join("client.pem"),
            client_key_file: dir.join("client.key"),
            unknown_ca_file: dir.join("unknown-ca.pem"),
            server_cert_file: dir.join("server.pem"),
            server_key_file: dir.join("server.key"),
            ldaps_port: 0,
        })
    }
}

/// A test CA with a server certificate for 127.0.0.1/localhost (and the rest of
/// [`SlapdTls`]) generated in `dir` (created), for TLS tests that need no slapd.
pub fn test_certificates(dir: &Path) -> Result<SlapdTls, SlapdError> {
    SlapdTls::generate(dir)
}

enum Launch {
    /// slapd could not bind its port (another process took it).
    AddressInUse,
    /// slapd exited or did not answer; the reason.
    Exited(String),
}

/// The installed OpenLDAP programs the server needs.
struct Tools {
    slapd: PathBuf,
    slapadd: PathBuf,
}

impl Tools {
    /// Finds slapd and slapadd (also in /usr/sbin, which a user's PATH may lack) and checks
    /// the ldap-utils tools are on PATH; the error names what is missing and the fix.
    fn find() -> Result<Tools, SlapdError> {
        let slapd = find_program("slapd", SBIN_DIRS);
        let slapadd = find_program("slapadd", SBIN_DIRS);
        let missing_utils: Vec<&str> = ["ldapsearch", "ldapadd", "ldapmodify", "ldapdelete"]
            .into_iter()
            .filter(|tool| find_program(tool, &[]).is_none())
            .collect();
        match (slapd, slapadd) {
            (Some(slapd), Some(slapadd)) if missing_utils.is_empty() => {
                Ok(Tools { slapd, slapadd })
            }
            (slapd, slapadd) => {
                let mut missing: Vec<&str> = Vec::new();
                if slapd.is_none() {
                    missing.push("slapd");
                }
                if slapadd.is_none() {
                    missing.push("slapadd");
                }
                missing.extend(missing_utils);
                Err(SlapdError::Missing(format!(
                    "a throw-away slapd needs OpenLDAP's slapd and the ldap-utils tools, but {} \
                     not found (slapd and slapadd on PATH or in {SBIN_DIRS:?}, the others on \
                     PATH). Install them with `apt-get install slapd ldap-utils` (Debian \
                     packages), or run the test suite with `bash tests/run.sh`, which \
                     installs them.",
                    missing.join(", ") + if missing.len() == 1 { " was" } else { " were" }
                )))
            }
        }
    }
}

/// `name` on PATH or in one of `extra_dirs`.
pub(crate) fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The directory with slapd's loadable modules, if any (Debian builds back_mdb and ppolicy
/// as modules; a slapd with mdb built in needs none).
fn find_module_dir() -> Option<PathBuf> {
    MODULE_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| has_module(dir, "back_mdb"))
}

fn has_module(dir: &Path, name: &str) -> bool {
    dir.join(format!("{name}.la")).is_file() || dir.join(format!("{name}.so")).is_file()
}

fn schema_dir() -> &'static str {
    SCHEMA_DIRS
        .iter()
        .copied()
        .find(|dir| Path::new(dir).join("core.schema").is_file())
        .unwrap_or(SCHEMA_DIRS[0])
}

/// A slapd.conf quoted value (paths may contain spaces; `"` and `\` are escaped).
fn quoted(value: &Path) -> String {
    let s = value.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn slapd_conf(dir: &Path, modules: Option<&Path>, ppolicy: bool, tls: Option<&SlapdTls>) -> String {
    let schemas = schema_dir();
    let mut conf = String::from("# Generated by scim_bridge::slapd (src/slapd.rs)\n");
    for schema in ["core", "cosine", "inetorgperson", "nis"] {
        conf += &format!("include {schemas}/{schema}.schema\n");
    }
    if let Some(modules) = modules {
        conf += &format!("modulepath {}\nmoduleload back_mdb\n", quoted(modules));
        // OpenLDAP 2.5 ships no ppolicy.schema: the overlay module defines its schema
        // (pwdPolicy, pwdAccountLockedTime, …) when it is loaded.
        if ppolicy {
            conf += "moduleload ppolicy\n";
        }
    }
    conf += &format!(
        "pidfile {}\nargsfile {}\n\
         # Per-operation logs would go to syslog; errors are printed on stderr (-d 32768).\n\
         loglevel none\n",
        quoted(&dir.join("slapd.pid")),
        quoted(&dir.join("slapd.args")),
    );
    if let Some(tls) = tls {
        // `try`: a client certificate is asked for and, when sent, must verify; a client
        // without one (a simple bind over TLS) is fine. The EXTERNAL identity is the
        // certificate's subject, normalized (lower-cased), mapped to the root DN.
        conf += &format!(
            "TLSCACertificateFile {}\n\
             TLSCertificateFile {}\n\
             TLSCertificateKeyFile {}\n\
             TLSVerifyClient try\n\
             authz-regexp \"^{}$\" \"{ADMIN_DN}\"\n",
            quoted(&tls.ca_file),
            quoted(&tls.server_cert_file),
            quoted(&tls.server_key_file),
            CLIENT_SUBJECT.to_ascii_lowercase(),
        );
    }
    conf += &format!(
        "\n\
         database mdb\n\
         maxsize 1073741824\n\
         suffix \"{BASE}\"\n\
         rootdn \"{ADMIN_DN}\"\n\
         rootpw \"{ADMIN_PASSWORD}\"\n\
         directory {}\n\
         index objectClass,uid,cn,mail,member,uniqueMember,memberUid,manager,entryUUID eq\n",
        quoted(&dir.join("db")),
    );
    if ppolicy {
        // `ppolicy_hash_cleartext`: a cleartext userPassword written by add or modify (what
        // the bridge sends) is stored hashed ({SSHA}), as 389-DS and AD always do.
        conf +=
            &format!("overlay ppolicy\nppolicy_default \"{PPOLICY_DN}\"\nppolicy_hash_cleartext\n");
    }
    conf
}

fn base_ldif(ppolicy: bool) -> String {
    let mut ldif = format!(
        "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n"
    );
    if ppolicy {
        // ppolicy only enforces pwdAccountLockedTime for entries under a policy with
        // pwdLockout TRUE; with no policy at all a "locked" user still binds.
        ldif += &format!(
            "\ndn: ou=policies,{BASE}\nobjectClass: organizationalUnit\nou: policies\n\n\
             dn: {PPOLICY_DN}\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\n\
             cn: default\npwdAttribute: userPassword\npwdLockout: TRUE\n"
        );
    }
    ldif
}

/// A free TCP port on 127.0.0.1 (bound and released; slapd binds it right after).
pub(crate) fn free_port() -> Result<u16, SlapdError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("cannot bind 127.0.0.1:0 to find a free port"))
}

/// Stops `child`: SIGTERM (through `kill`, as this crate has no unsafe code), up to
/// `timeout` for it to exit, then SIGKILL. Also what the tests stop the daemon with.
pub fn terminate(mut child: Child, timeout: Duration) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `command` to completion, with `stdin` written from a thread and stdout/stderr read
/// by threads (so a large LDIF cannot deadlock against the tool's output). Kills it and
/// returns an error if it runs longer than `timeout`.
pub(crate) fn run(
    mut command: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<Output, String> {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {command:?}: {e}"))?;
    let writer = child.stdin.take().map(|mut pipe| {
        let input = stdin.unwrap_or_default().to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        })
    });
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} did not finish within {timeout:?}"));
            }
            Err(e) => return Err(format!("waiting for {command:?}: {e}")),
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Reads a child's pipe to the end on a thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let skipped = all.len().saturating_sub(lines);
    let mut out = if skipped > 0 {
        format!("[… {skipped} earlier lines]\n")
    } else {
        String::new()
    };
    out += &all[skipped..].join("\n");
    out
}

/// The text of `path` from byte `offset` on.
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_end(&mut text);
    }
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// The ldap-utils tools bound as a server's admin (simple bind, plain LDAP).
pub(crate) struct Admin<'a> {
    pub(crate) url: &'a str,
    pub(crate) dn: &'a str,
    pub(crate) password: &'a str,
    /// The server's name in messages (`389-DS`, `Samba`).
    pub(crate) server: &'a str,
}

impl Admin<'_> {
    /// An ldap-utils command bound as the admin, ignoring ldap.conf/.ldaprc.
    fn tool(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("LDAPNOINIT", "1")
            .args(["-x", "-o", "nettimeout=10", "-H", self.url])
            .args(["-D", self.dn, "-w", self.password]);
        c
    }

    fn run(
        &self,
        tool: &str,
        command: Command,
        stdin: Option<&str>,
    ) -> Result<Output, DirectoryError> {
        run(command, stdin, TOOL_TIMEOUT).map_err(|e| {
            DirectoryError::Failed(format!(
                "{tool} against {} ({}): {e}",
                self.url, self.server
            ))
        })
    }

    fn check(&self, tool: &str, input: &str, out: Output) -> Result<(), DirectoryError> {
        if out.status.success() {
            return Ok(());
        }
        Err(DirectoryError::Failed(format!(
            "{tool} against {} ({}) failed ({}):\n{}{}\ninput:\n{input}",
            self.url,
            self.server,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }

    /// `ldapsearch -LLL -s sub`, lines unwrapped; noSuchObject (exit 32) is `""`.
    pub(crate) fn ldapsearch(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<String, DirectoryError> {
        let mut search = self.tool("ldapsearch");
        search
            .args([
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-s",
                "sub",
                "-b",
                base,
                filter,
            ])
            .args(attrs);
        let out = self.run("ldapsearch", search, None)?;
        match out.status.code() {
            Some(0) => String::from_utf8(out.stdout).map_err(|e| {
                DirectoryError::Failed(format!(
                    "ldapsearch -b {base:?} {filter:?} against {} printed invalid UTF-8: {e}",
                    self.url
                ))
            }),
            Some(32) => Ok(String::new()),
            _ => Err(DirectoryError::Failed(format!(
                "ldapsearch -b {base:?} {filter:?} {attrs:?} against {} ({}) failed ({}):\n{}",
                self.url,
                self.server,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))),
        }
    }

    pub(crate) fn ldapmodify(&self, ldif: &str) -> Result<(), DirectoryError> {
        let out = self.run("ldapmodify", self.tool("ldapmodify"), Some(ldif))?;
        self.check("ldapmodify", ldif, out)
    }

    pub(crate) fn ldapadd(&self, ldif: &str) -> Result<(), DirectoryError> {
        let out = self.run("ldapadd", self.tool("ldapadd"), Some(ldif))?;
        self.check("ldapadd", ldif, out)
    }

    pub(crate) fn ldapdelete(&self, dn: &str) -> Result<(), DirectoryError> {
        let mut delete = self.tool("ldapdelete");
        delete.arg(dn);
        let out = self.run("ldapdelete", delete, None)?;
        self.check("ldapdelete", dn, out)
    }

    /// Whether a base-scope search of `base` as the admin succeeds.
    pub(crate) fn answers(&self, base: &str) -> bool {
        let mut probe = self.tool("ldapsearch");
        probe.args(["-LLL", "-s", "base", "-b", base, "(objectClass=*)", "1.1"]);
        run(probe, None, PROBE_TIMEOUT).is_ok_and(|out| out.status.success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ldap_example_has_a_target_section_with_the_placeholders_replaced() {
        assert!(LDAP_EXAMPLE.contains("\ntarget:\n"));
        for placeholder in [
            "- env: LDAP_URL",
            "env: LDAP_BIND_DN",
            "env: LDAP_BIND_PASSWORD",
            "env: LDAP_BASE_DN",
            "operation_timeout: 10s",
            "connect_timeout: 5s",
        ] {
            assert!(LDAP_EXAMPLE.contains(placeholder), "{placeholder}");
        }
    }

    #[test]
    fn slapd_conf_quotes_paths_and_names_the_suffix() {
        let conf = slapd_conf(Path::new("/tmp/a \"b\""), None, false, None);
        assert!(conf.contains(r#"directory "/tmp/a \"b\"/db""#), "{conf}");
        assert!(conf.contains(&format!("suffix \"{BASE}\"")), "{conf}");
        assert!(!conf.contains("ppolicy"), "{conf}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "[… 1 earlier lines]\nb\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
