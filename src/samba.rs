//! A throw-away Samba 4.17 Active Directory domain controller (LDAP service only) for the
//! tests: [`SambaDc::start`] gives a fresh domain `EXAMPLE.COM` (NetBIOS `EXAMPLE`, DC
//! `DC1`) answering on `ldap://127.0.0.1:389` and `ldaps://127.0.0.1:636`, with
//! `OU=people` and `OU=groups` under `DC=example,DC=com`, in a temporary directory that
//! dropping the [`SambaDc`] removes (after stopping the server). It has the API of
//! [`crate::slapd::Slapd`] and [`crate::dirsrv::DirSrv`] (`url`, `base`, `admin_dn`,
//! `admin_password`, `stop`/`start_again`/`restart`, the ldap-utils helpers); nothing in
//! the daemon uses it.
//!
//! ```no_run
//! # fn main() -> Result<(), scim_bridge::slapd::DirectoryError> {
//! use scim_bridge::samba::SambaDc;
//! let ad = SambaDc::start()?;
//! ad.ldapadd("dn: CN=Alice Liddell,OU=people,DC=example,DC=com\nobjectClass: user\nsAMAccountName: alice\n")?;
//! let ldif = ad.ldapsearch(&ad.base, "(sAMAccountName=alice)", &["userAccountControl"])?;
//! # Ok(()) }
//! ```
//!
//! ## One at a time
//! Samba's ports are fixed (389, 636, and the global catalog's 3268/3269): one instance per
//! machine. [`SambaDc::start`] therefore takes an exclusive `flock` on
//! `$TMPDIR/scim-bridge-samba-dc.lock` for the instance's lifetime (flock locks belong to
//! the open file, so two instances in one process exclude each other as two processes do),
//! waiting up to 10 minutes for the holder. The file records the running server's pid and
//! configuration, so a server orphaned by a killed test process is killed by the next
//! start. Tests that start one should also run one at a time, so they do not queue on the
//! lock while their timeouts run: `.config/nextest.toml` puts every test whose name
//! contains `::samba::` (e.g. `directories_smoke::samba::…`, `contract::samba::…`)
//! in the test group `samba` with `max-threads = 1`. Name such modules `samba`.
//!
//! ## How an instance comes to be
//! `samba-tool domain provision` (`--dns-backend=NONE`, `server services = ldap`,
//! interfaces 127.0.0.1 only) takes ~9 s, so it runs once per machine, user and Samba
//! version, into a template under `$TMPDIR/scim-bridge-<uid>/samba-<version>-t<format>/`
//! (guarded by a lock file next to it, rebuilt when its `READY` marker or a file it needs
//! is missing; delete it to force a rebuild). Each start copies the template's `dc/` (~34
//! MB of ldb files) into its own temporary directory, rewrites the paths in `smb.conf` (the
//! only file that holds them) and adds:
//! - `ldap server require strong auth = no`: otherwise a simple bind over plain LDAP fails
//!   with "Strong(er) authentication required" (over LDAPS it works either way);
//! - `old password allowed period = 0`: a replaced password stops working at once (the
//!   default keeps it valid for 60 minutes, as AD's OldPasswordAllowedPeriod does);
//! - `pid directory` and the socket directories inside the instance (the defaults are under
//!   /run/samba, where a pidfile would make a second server refuse to start);
//! - `tls keyfile`/`tls certfile`/`tls cafile`: a throw-away CA and a server certificate for
//!   `IP:127.0.0.1` and `DNS:localhost` from [`crate::slapd::test_certificates`]. Samba's
//!   own self-signed certificate (generated at first start in `private/tls/`, RSA, ~5 s)
//!   names only `CN=DC1.example.com` and has no subjectAltName, which rustls (the bridge's
//!   TLS) never accepts for `127.0.0.1`; with ours a client trusts [`SlapdTls::ca_file`].
//!
//! Then it runs `samba -s SMB_CONF -F --debug-stdout` (foreground: the harness owns the
//! child; its output goes to `samba.log` in the instance directory), waits until a search
//! as the admin succeeds, and adds the two OUs. SIGTERM stops the root process and its
//! prefork workers together.
//!
//! ## Measured (2-core machine shared with other builds, Samba 4.17.12)
//! Quiet figures first, then at a load average of ~9:
//! - provisioning the template (the first start on a machine): ~9 s / ~19 s;
//! - [`SambaDc::start`] from the template (copy ~34 MB, certificates, start, OUs): ~1 s /
//!   1–2.7 s; the server itself answers ~0.65 s after it is spawned;
//! - [`SambaDc::stop`]: 0.03–0.08 s (SIGTERM ends the root process and its workers);
//! - [`SambaDc::start_again`]: ~0.7 s / 0.9–3 s.
//!
//! ## What the tests observed (facts for the AD target)
//! - A user added with `objectClass: user` and no password gets `userAccountControl: 546`
//!   (NORMAL_ACCOUNT 512 + ACCOUNTDISABLE 2 + PASSWD_NOTREQD 32); the server adds
//!   `top`, `person`, `organizationalPerson` to its object classes.
//! - A second entry with a `sAMAccountName` already in use is refused with resultCode 68
//!   (entryAlreadyExists), "samldb: samAccountName 'alice' already in use!".
//! - Delete leaves a tombstone: the entry moves to `CN=Alice Liddell\0ADEL:<GUID>,CN=Deleted
//!   Objects,DC=example,DC=com` with `isDeleted: TRUE` and `lastKnownParent`, visible only
//!   with the show-deleted control (1.2.840.113556.1.4.417); a new entry can take the old
//!   DN and sAMAccountName at once.
//! - A subtree search from `DC=example,DC=com` returns, besides the entries, a search result
//!   reference `ldap://example.com/CN=Configuration,DC=example,DC=com` (no DNS partitions
//!   with `--dns-backend=NONE`), and resultCode 0. `ldapsearch` prints it as a
//!   `# refldap://…` comment; ldap3 returns it among the `ResultEntry` values of
//!   `search(…).success()` with `is_ref() == true`, and `SearchEntry::construct` on it
//!   panics: a client must drop references before constructing entries. A search based at
//!   `OU=people,…` returns none.
//! - Simple binds as `CN=Administrator,CN=Users,DC=example,DC=com` work on plain LDAP (with
//!   the option above) and on LDAPS.
//!
//! It needs `samba` (package `samba`, with `samba-ad-dc` for the DC services), `samba-tool`
//! and the schema files of `samba-ad-provision`, and the ldap-utils tools; `bash
//! tests/run.sh` installs them. Binding ports below 1024 needs root (or
//! CAP_NET_BIND_SERVICE). Everything is synchronous.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dirsrv::{
    Owner, copy_tree, daemon_alive, lock_file, program_version, reap_orphans, require_ldap_utils,
    signal, templates_root, wait_gone,
};
use crate::slapd::{
    Admin, SBIN_DIRS, find_program, io, read_from, run, tail, terminate, test_certificates,
};
pub use crate::slapd::{DirectoryError, SlapdTls};

/// The domain's naming context.
pub const BASE: &str = "DC=example,DC=com";
/// The Kerberos realm / DNS domain.
pub const REALM: &str = "EXAMPLE.COM";
/// The NetBIOS domain name.
pub const DOMAIN: &str = "EXAMPLE";
/// The domain controller's host name.
pub const HOST_NAME: &str = "DC1";
/// The domain administrator: simple bind with this DN.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=example,DC=com";
/// The administrator's password (it meets AD's complexity rules).
pub const ADMIN_PASSWORD: &str = "It-Samba-Admin-12345";
/// Where users go.
pub const PEOPLE_DN: &str = "OU=people,DC=example,DC=com";
/// Where groups go.
pub const GROUPS_DN: &str = "OU=groups,DC=example,DC=com";
/// Plain LDAP (`url`).
pub const LDAP_PORT: u16 = 389;
/// LDAPS (`tls().ldaps_url`).
pub const LDAPS_PORT: u16 = 636;
/// Every port the LDAP service binds: LDAP, LDAPS and the global catalog's two.
const PORTS: [u16; 4] = [LDAP_PORT, LDAPS_PORT, 3268, 3269];
/// The name of an instance's temporary directory (`samba-XXXXXX`).
const INSTANCE_PREFIX: &str = "samba-";
/// The machine-wide instance lock, in the temporary directory.
pub const INSTANCE_LOCK: &str = "scim-bridge-samba-dc.lock";

/// Bumped when the template's layout changes, so an old template is not reused.
const TEMPLATE_FORMAT: u32 = 1;
/// Where samba-ad-provision installs the AD schema that provisioning reads.
const AD_SCHEMA_DIR: &str = "/usr/share/samba/setup/ad-schema";
/// How long a start waits for another instance to end.
const INSTANCE_LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a start waits for another process that provisions the template.
const TEMPLATE_LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long provisioning may take.
const PROVISION_TIMEOUT: Duration = Duration::from_secs(300);
/// How long samba may take to answer a search after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM may take before samba is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the ports may stay bound after samba's root process exited (its workers go a
/// moment later).
const PORTS_FREE_TIMEOUT: Duration = Duration::from_secs(10);

const INSTALL_SAMBA: &str = "Install it with `apt-get install --no-install-recommends samba \
     samba-ad-dc samba-ad-provision winbind ldap-utils` (Debian packages), or run the test \
     suite with `bash tests/run.sh`, which installs them.";

/// The installed programs a [`SambaDc`] runs.
#[derive(Debug, Clone)]
pub struct SambaPrograms {
    /// The server (`/usr/sbin/samba`).
    pub samba: PathBuf,
    /// The administration tool (`/usr/bin/samba-tool`), run only to provision the
    /// template.
    pub samba_tool: PathBuf,
}

impl SambaPrograms {
    /// Finds samba and samba-tool on PATH or in /usr/sbin and the like; the error names
    /// what is missing and how to install it.
    pub fn find() -> Result<SambaPrograms, DirectoryError> {
        match (
            find_program("samba", SBIN_DIRS),
            find_program("samba-tool", SBIN_DIRS),
        ) {
            (Some(samba), Some(samba_tool)) => Ok(SambaPrograms { samba, samba_tool }),
            (samba, samba_tool) => {
                let missing: Vec<&str> = [("samba", samba), ("samba-tool", samba_tool)]
                    .into_iter()
                    .filter(|(_, found)| found.is_none())
                    .map(|(name, _)| name)
                    .collect();
                Err(DirectoryError::Missing(format!(
                    "a throw-away Samba AD DC needs samba and samba-tool, but {} not found \
                     (on PATH or in {SBIN_DIRS:?}). {INSTALL_SAMBA}",
                    missing.join(" and ") + if missing.len() == 1 { " was" } else { " were" }
                )))
            }
        }
    }

    /// Every program is an existing file, the AD schema is installed and the ldap-utils
    /// tools are on PATH.
    fn check(&self) -> Result<(), DirectoryError> {
        for (name, path) in [("samba", &self.samba), ("samba-tool", &self.samba_tool)] {
            if !path.is_file() {
                return Err(DirectoryError::Missing(format!(
                    "{}: no such program; a throw-away Samba AD DC needs {name}. {INSTALL_SAMBA}",
                    path.display()
                )));
            }
        }
        if !Path::new(AD_SCHEMA_DIR).is_dir() {
            return Err(DirectoryError::Missing(format!(
                "{AD_SCHEMA_DIR}: not found; provisioning a Samba AD DC needs the AD schema of \
                 the Debian package samba-ad-provision. {INSTALL_SAMBA}"
            )));
        }
        require_ldap_utils("a throw-away Samba AD DC")
    }
}

/// A running Samba AD DC on `ldap://127.0.0.1` (port 389) and `ldaps://127.0.0.1` (636).
/// It holds the machine-wide instance lock until dropped; dropping it stops samba and
/// removes its temporary directory.
pub struct SambaDc {
    /// `ldap://127.0.0.1:389`, no trailing slash.
    pub url: String,
    /// `DC=example,DC=com`
    pub base: String,
    /// `CN=Administrator,CN=Users,DC=example,DC=com`
    pub admin_dn: String,
    pub admin_password: String,
    child: Option<Child>,
    tls: SlapdTls,
    samba: PathBuf,
    dir: tempfile::TempDir,
    /// The claim on `dir`, released once it is removed.
    _owner: Owner,
    // Declared last: released once samba is stopped and its directory removed.
    lock: File,
}

impl SambaDc {
    /// Takes the instance lock (waiting up to 10 min for another instance to end), starts
    /// a fresh domain with `OU=people` and `OU=groups`, and waits until it answers a search.
    ///
    /// The first start on a machine (per Samba version) also provisions the template (see
    /// the module doc), ~9 s; later ones take ~1 s. Fails if Samba or the ldap-utils tools
    /// are not installed, if a port is taken by another program, or if samba does not come
    /// up (with the end of its output in the message).
    pub fn start() -> Result<SambaDc, DirectoryError> {
        SambaDc::start_with(SambaPrograms::find()?)
    }

    /// Like [`SambaDc::start`], with these programs instead of the installed ones.
    pub fn start_with(programs: SambaPrograms) -> Result<SambaDc, DirectoryError> {
        programs.check()?;
        let lock = lock_file(
            &std::env::temp_dir().join(INSTANCE_LOCK),
            INSTANCE_LOCK_TIMEOUT,
            "the Samba AD DC instance lock (one instance per machine: its ports are fixed)",
        )?;
        kill_orphan(&lock);
        reap_orphans(INSTANCE_PREFIX, "samba.pid", |dir| {
            dir.join("dc/etc/smb.conf").display().to_string()
        });
        let dir = tempfile::Builder::new()
            .prefix(INSTANCE_PREFIX)
            .tempdir()
            .map_err(io("cannot create a temporary directory for Samba"))?;
        let owner = Owner::claim(dir.path())?;
        copy_template(&programs, dir.path())?;
        let mut tls = test_certificates(&dir.path().join("tls"))?;
        tls.set_port(LDAPS_PORT);
        let conf_path = dir.path().join("dc/etc/smb.conf");
        let conf = std::fs::read_to_string(&conf_path)
            .map_err(io(format!("cannot read {}", conf_path.display())))?;
        std::fs::write(
            &conf_path,
            instance_conf(
                &conf,
                dir.path(),
                [&tls.server_key_file, &tls.server_cert_file, &tls.ca_file],
            ),
        )
        .map_err(io(format!("cannot write {}", conf_path.display())))?;
        for sub in ["run", "run/ncalrpc", "run/winbindd", "run/ntp_signd"] {
            let path = dir.path().join(sub);
            std::fs::create_dir_all(&path)
                .map_err(io(format!("cannot create {}", path.display())))?;
        }

        let mut dc = SambaDc {
            url: format!("ldap://127.0.0.1:{LDAP_PORT}"),
            base: BASE.to_owned(),
            admin_dn: ADMIN_DN.to_owned(),
            admin_password: ADMIN_PASSWORD.to_owned(),
            child: None,
            tls,
            samba: programs.samba,
            dir,
            _owner: owner,
            lock,
        };
        dc.launch()?;
        dc.ldapadd(&format!(
            "dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n"
        ))?;
        Ok(dc)
    }

    /// Stops samba: SIGTERM, up to 10 s for it to exit, then kill; then waits (up to 10 s)
    /// until its workers have released the ports. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, SHUTDOWN_TIMEOUT);
            let _ = wait_ports_free(PORTS_FREE_TIMEOUT);
            self.record("");
        }
    }

    /// Stops samba (if running) and starts it again on the same database.
    pub fn restart(&mut self) -> Result<(), DirectoryError> {
        self.stop();
        self.start_again()
    }

    /// Starts samba again after [`SambaDc::stop`], on the same database.
    pub fn start_again(&mut self) -> Result<(), DirectoryError> {
        if self.child.is_some() {
            return Err(DirectoryError::Failed(format!(
                "{}: start_again() while samba is still running; stop() it first",
                self.url
            )));
        }
        self.launch()
    }

    /// Whether samba is running (started, not stopped, and has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The root samba process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The plain LDAP port: always 389.
    pub fn port(&self) -> u16 {
        LDAP_PORT
    }

    /// The TLS side: `ldaps://127.0.0.1:636` and the throw-away CA that signed the server's
    /// certificate (`ca_file`), plus the rest of [`SlapdTls`] (an unknown CA, a client
    /// certificate Samba does not use).
    pub fn tls(&self) -> &SlapdTls {
        &self.tls
    }

    /// The temporary directory: `dc/` (smb.conf in `dc/etc/`, the ldb databases in
    /// `dc/private/`), `tls/`, `samba.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What samba printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `ldapsearch -LLL` (subtree) as the admin: the LDIF text, lines unwrapped, with the
    /// search result references as `# refldap://…` comment lines (a search from the domain
    /// root has one, see the module doc). A base that does not exist gives `""`.
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

    /// `ldapdelete` of one entry as the admin; any error fails. The entry becomes a
    /// tombstone under `CN=Deleted Objects`.
    pub fn ldapdelete(&self, dn: &str) -> Result<(), DirectoryError> {
        self.admin().ldapdelete(dn)
    }

    /// The `target:` section of a configuration pointed at this server over plain LDAP
    /// (URL, bind DN and password, base as values; connect 1 s, operation 2 s). There is no
    /// AD mapping in `examples/ldap-openldap.yaml` (its `uid=` DNs are not valid AD names), so
    /// a test adds its own `mapping:`.
    pub fn target_yaml(&self) -> String {
        format!(
            "target:\n  ldap:\n    urls:\n      - value: {}\n    bind_dn:\n      value: {}\n    \
             bind_password:\n      value: {}\n    base:\n      value: {}\n    pool_size: 2\n    \
             connect_timeout: 1s\n    operation_timeout: 2s\n",
            self.url, self.admin_dn, self.admin_password, self.base
        )
    }

    fn admin(&self) -> Admin<'_> {
        Admin {
            url: &self.url,
            dn: &self.admin_dn,
            password: &self.admin_password,
            server: "Samba",
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("samba.log")
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("dc/etc/smb.conf")
    }

    /// Writes `text` into the instance lock file, for the next holder to find an orphan.
    fn record(&self, text: &str) {
        let mut lock = &self.lock;
        let _ = lock.set_len(0);
        let _ = std::io::Seek::rewind(&mut lock);
        let _ = lock.write_all(text.as_bytes());
    }

    /// Spawns samba in the foreground and waits until it answers a base search as the
    /// admin.
    fn launch(&mut self) -> Result<(), DirectoryError> {
        check_ports_free()?;
        let log_path = self.log_path();
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(io(format!("cannot open {}", log_path.display())))
        };
        let (log, log_err) = (open_log()?, open_log()?);
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let conf = self.conf_path();
        let child = Command::new(&self.samba)
            .arg("-s")
            .arg(&conf)
            .args(["-F", "--debug-stdout"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                DirectoryError::Failed(format!("cannot run {}: {e}", self.samba.display()))
            })?;
        self.record(&format!("pid={}\nconf={}\n", child.id(), conf.display()));
        self.child = Some(child);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                self.record("");
                return Err(self.launch_failed(&format!("samba exited ({status})"), log_start));
            }
            if self.admin().answers(&self.base) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(self.launch_failed(
                    &format!(
                        "samba did not answer a search on {} within {STARTUP_TIMEOUT:?}",
                        self.url
                    ),
                    log_start,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn launch_failed(&self, why: &str, log_start: u64) -> DirectoryError {
        DirectoryError::Failed(format!(
            "{why}\n--- end of samba's output ({}):\n{}",
            self.log_path().display(),
            tail(&read_from(&self.log_path(), log_start), 40)
        ))
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills a samba that the lock file says a previous holder started and that still runs
/// (its test process was killed before it could stop it): it holds the fixed ports.
fn kill_orphan(lock: &File) {
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut &*lock, &mut text);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let pid = field("pid").and_then(|p| p.parse::<u32>().ok());
    if let (Some(pid), Some(conf)) = (pid, field("conf"))
        && daemon_alive(pid, &conf)
    {
        signal(pid, "KILL");
        wait_gone(pid, &conf, Duration::from_secs(5));
        let _ = wait_ports_free(PORTS_FREE_TIMEOUT);
    }
}

/// Fails unless every port of [`PORTS`] can be bound on 127.0.0.1, naming the reason.
fn check_ports_free() -> Result<(), DirectoryError> {
    for port in PORTS {
        if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => format!(
                    "another program listens on it (a system slapd, 389-DS or samba? \
                     `ss -ltnp 'sport = :{port}'` shows which); the Samba AD DC harness needs \
                     ports {PORTS:?}"
                ),
                std::io::ErrorKind::PermissionDenied => "binding a port below 1024 needs root \
                     (or CAP_NET_BIND_SERVICE): run the Samba tests as root"
                    .to_owned(),
                _ => String::new(),
            };
            return Err(DirectoryError::Failed(format!(
                "127.0.0.1:{port}: cannot start a Samba AD DC: {e}; {hint}"
            )));
        }
    }
    Ok(())
}

/// Waits up to `timeout` until the ports can be bound; whether they can.
fn wait_ports_free(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check_ports_free().is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The provisioned template's smb.conf with its paths moved to the instance directory `dir`
/// and the harness's options added to `[global]` (see the module doc).
/// `tls` is the server's key, certificate and CA files.
fn instance_conf(template_conf: &str, dir: &Path, tls: [&Path; 3]) -> String {
    let d = dir.display();
    let extra = format!(
        "\t# Added by scim_bridge::samba (src/samba.rs)\n\
         \tldap server require strong auth = no\n\
         \told password allowed period = 0\n\
         \tpid directory = {d}/run\n\
         \tncalrpc dir = {d}/run/ncalrpc\n\
         \twinbindd socket directory = {d}/run/winbindd\n\
         \tntp signd socket directory = {d}/run/ntp_signd\n\
         \ttls enabled = yes\n\
         \ttls keyfile = {}\n\
         \ttls certfile = {}\n\
         \ttls cafile = {}\n",
        tls[0].display(),
        tls[1].display(),
        tls[2].display(),
    );
    let mut out = String::new();
    for line in template_conf.lines() {
        out += line;
        out.push('\n');
        if line.trim() == "[global]" {
            out += &extra;
        }
    }
    out
}

/// Provisions the template if it is missing or damaged, and copies its `dc/` into `dir`
/// with the paths in smb.conf rewritten, all under the template lock.
fn copy_template(programs: &SambaPrograms, dir: &Path) -> Result<(), DirectoryError> {
    let root = templates_root()?;
    let version = program_version(&programs.samba, &["-V"], "Version ");
    let template = root.join(format!("samba-{version}-t{TEMPLATE_FORMAT}"));
    let _lock = lock_file(
        &root.join("samba.lock"),
        TEMPLATE_LOCK_TIMEOUT,
        "the Samba template lock",
    )?;
    let ready = template.join("READY").is_file()
        && template.join("dc/etc/smb.conf").is_file()
        && template.join("dc/private/sam.ldb").is_file();
    if !ready {
        provision(programs, &template)?;
    }
    let target = dir.join("dc");
    std::fs::create_dir(&target).map_err(io(format!("cannot create {}", target.display())))?;
    copy_tree(&template.join("dc"), &target, &[]).map_err(io(format!(
        "cannot copy {} to {}",
        template.display(),
        target.display()
    )))?;
    let conf = target.join("etc/smb.conf");
    let text =
        std::fs::read_to_string(&conf).map_err(io(format!("cannot read {}", conf.display())))?;
    let (from, to) = (template.join("dc"), target);
    std::fs::write(
        &conf,
        text.replace(&from.display().to_string(), &to.display().to_string()),
    )
    .map_err(io(format!("cannot write {}", conf.display())))
}

/// `samba-tool domain provision` into `template/dc`, then the `READY` marker.
fn provision(programs: &SambaPrograms, template: &Path) -> Result<(), DirectoryError> {
    if template.exists() {
        std::fs::remove_dir_all(template).map_err(io(format!(
            "cannot remove the damaged template {}",
            template.display()
        )))?;
    }
    std::fs::create_dir_all(template)
        .map_err(io(format!("cannot create {}", template.display())))?;
    // An empty configuration, so the system's /etc/samba/smb.conf plays no part.
    let empty = template.join("empty.conf");
    std::fs::write(&empty, "").map_err(io(format!("cannot write {}", empty.display())))?;
    let mut command = Command::new(&programs.samba_tool);
    command
        .args(["domain", "provision", "-s"])
        .arg(&empty)
        .arg(format!("--targetdir={}", template.join("dc").display()))
        .arg(format!("--realm={REALM}"))
        .arg(format!("--domain={DOMAIN}"))
        .arg(format!("--host-name={HOST_NAME}"))
        .arg("--dns-backend=NONE")
        .arg(format!("--adminpass={ADMIN_PASSWORD}"))
        .args([
            "--option=interfaces = 127.0.0.1",
            "--option=bind interfaces only = yes",
            "--option=server services = ldap",
        ])
        .current_dir(template);
    let out = run(command, None, PROVISION_TIMEOUT).map_err(DirectoryError::Failed)?;
    if !out.status.success() {
        return Err(DirectoryError::Failed(format!(
            "samba-tool domain provision into {} failed ({}):\n{}",
            template.display(),
            out.status,
            tail(
                &(String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)),
                40
            )
        )));
    }
    let ready = template.join("READY");
    std::fs::write(&ready, format!("{}\n", template.display()))
        .map_err(io(format!("cannot write {}", ready.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_conf_adds_the_harness_options_to_global_only() {
        let template =
            "# Global parameters\n[global]\n\tworkgroup = EXAMPLE\n\n[sysvol]\n\tpath = /x\n";
        let conf = instance_conf(
            template,
            Path::new("/i"),
            [
                Path::new("/i/tls/server.key"),
                Path::new("/i/tls/server.pem"),
                Path::new("/i/tls/ca.pem"),
            ],
        );
        let global = conf.split("[sysvol]").next().unwrap_or_default();
        for line in [
            "\tldap server require strong auth = no\n",
            "\tpid directory = /i/run\n",
            "\ttls certfile = /i/tls/server.pem\n",
            "\ttls cafile = /i/tls/ca.pem\n",
            "\tworkgroup = EXAMPLE\n",
        ] {
            assert!(global.contains(line), "{line:?} missing in:\n{conf}");
        }
        assert!(conf.ends_with("[sysvol]\n\tpath = /x\n"), "{conf}");
    }
}
