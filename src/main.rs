//! The `scim-bridge` command line: `serve` runs the daemon, `check-config` validates a
//! configuration file. Exit codes: 0 ok, 1 the check found problems, 2 an error.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use scim_bridge::config::{self, Config, ConfigError, LogFormat, ProcessEnv};
use scim_bridge::engine::Engine;
use scim_bridge::http::{self, AppState, Settings, auth::TokenSet};
use scim_bridge::logline;
use scim_bridge::store::Store;

/// The daemon allocates and frees small buffers on every request (JSON values, SQL
/// parameters, log fields): malloc and free were a quarter of its instructions under
/// glibc (callgrind, 2026-11-24). mimalloc keeps per-thread free lists (built without
/// transparent huge pages, which doubled the daemon's memory: see Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench_cli;
mod bench_soak;
mod bench_store;
mod journal_cli;
mod mapping_cli;
mod reconcile_cli;
mod token_cli;

#[derive(Parser)]
#[command(
    name = "scim-bridge",
    version,
    about = "SCIM 2.0 service provider bridging identity providers to directories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Configuration file; without it, the embedded config.example.yaml is used.
        #[arg(long, short = 'c', env = "SCIM_BRIDGE_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, overriding `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// State directory, overriding `state.dir`.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Start even when the journal's chain or the database is damaged (the damage is
        /// logged at every start).
        #[arg(long)]
        allow_damaged_journal: bool,
    },
    /// Validate a configuration file and print every problem with its line:column.
    CheckConfig {
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Also read the LDAP directory's subschema and check the mapping against it
        /// (unknown object classes and attributes, MUST attributes not filled).
        #[arg(long)]
        online: bool,
    },
    /// Compare every stored resource with the target and converge the drift.
    Reconcile {
        #[arg(long, short = 'c', env = "SCIM_BRIDGE_CONFIG")]
        config: PathBuf,
        /// Print what differs (LDIF for a directory) without writing; exit 1 on drift.
        #[arg(long)]
        dry_run: bool,
        /// The endpoint to reconcile (`endpoints:` in the config); default: the top-level one.
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Inspect the attribute mapping.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Make bearer tokens (`token new`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Audit, verify, export and replay the change journal.
    Journal {
        #[command(flatten)]
        place: StatePlace,
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Drive a daemon with Entra-shaped traffic; print throughput, latency and memory.
    Bench(bench_cli::BenchArgs),
}

/// Where the state directory is: `--state-dir`, else the config's `state.dir`.
#[derive(clap::Args)]
struct StatePlace {
    /// Configuration file (only `state.dir` is read; secrets need not be available).
    #[arg(long, short = 'c', global = true, env = "SCIM_BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// State directory, overriding the config's `state.dir`.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// The endpoint whose journal to use (`endpoints:` in the config); default: the
    /// top-level one.
    #[arg(long, global = true)]
    endpoint: Option<String>,
}

#[derive(Subcommand)]
enum JournalCommand {
    /// One line per record.
    List {
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
        /// Records at or after this RFC 3339 time (e.g. 2026-11-23T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Records of this resource id.
        #[arg(long)]
        resource: Option<String>,
        /// Records of this actor (token name).
        #[arg(long)]
        actor: Option<String>,
        /// Only records not yet delivered to the target.
        #[arg(long, conflicts_with = "rejected")]
        pending: bool,
        /// Only records the target rejected.
        #[arg(long)]
        rejected: bool,
    },
    /// The whole record, as pretty JSON.
    Show { seq: u64 },
    /// Check every hash, the chain and the sequence; exit 1 on damage.
    Verify {
        /// Verify an export file instead of the state directory's journal.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Accept a torn last line (report it, verify what precedes it).
        #[arg(long)]
        allow_torn_tail: bool,
    },
    /// Write records as JSON Lines on stdout.
    Export {
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
    },
    /// Apply retention now: archive records beyond the configured limits, then drop them.
    Archive,
    /// Apply records to the state (idempotent).
    Replay {
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
        /// Replay an export file (also adds its records to this journal).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Report what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay what precedes a torn last line of the file.
        #[arg(long)]
        allow_torn_tail: bool,
        /// Where to: the state store, or the configured target.
        #[arg(long, value_enum)]
        into: ReplayInto,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new random bearer token once, and the `auth.tokens` entry (its SHA-256
    /// hash) to paste into the configuration; the token is not stored anywhere.
    New {
        /// The token's name in the configuration (the actor in logs and the journal).
        #[arg(long, default_value = "entra")]
        name: String,
    },
}

#[derive(Subcommand)]
enum MappingCommand {
    /// Print the target row a SCIM resource (a JSON file) produces and what would change
    /// against the stored row. Writes nothing.
    Preview {
        #[arg(long, short = 'c', env = "SCIM_BRIDGE_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, value_enum, default_value = "user")]
        resource: PreviewKind,
        file: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PreviewKind {
    User,
    Group,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReplayInto {
    Store,
    Target,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config, online } => check_config(&config, online),
        Command::Bench(args) => bench_cli::run(args),
        Command::Mapping {
            command:
                MappingCommand::Preview {
                    config,
                    endpoint,
                    resource,
                    file,
                },
        } => {
            let kind = match resource {
                PreviewKind::User => scim_bridge::scim::schema::ResourceKind::User,
                PreviewKind::Group => scim_bridge::scim::schema::ResourceKind::Group,
            };
            let result = journal_cli::load_config(Some(&config), None)
                .and_then(|cfg| match &endpoint {
                    Some(name) => journal_cli::endpoint_config(cfg, name),
                    None => Ok(cfg),
                })
                .and_then(|cfg| mapping_cli::preview(&cfg, kind, &file));
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("scim-bridge: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Reconcile {
            config,
            dry_run,
            endpoint,
        } => {
            let result = journal_cli::load_config(Some(&config), None)
                .and_then(|cfg| match &endpoint {
                    Some(name) => journal_cli::endpoint_config(cfg, name),
                    None => Ok(cfg),
                })
                .and_then(|cfg| reconcile_cli::run(&cfg, dry_run));
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("scim-bridge: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Token {
            command: TokenCommand::New { name },
        } => token_cli::new(&name).unwrap_or_else(|e| {
            eprintln!("scim-bridge: {e:#}");
            ExitCode::from(2)
        }),
        Command::Journal { place, command } => {
            match journal_cli::run(
                place.config.as_deref(),
                place.state_dir.as_deref(),
                place.endpoint.as_deref(),
                command,
            ) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("scim-bridge: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve {
            config,
            listen,
            state_dir,
            allow_damaged_journal,
        } => {
            let loaded = match &config {
                Some(path) => config::load(path, &ProcessEnv),
                None => config::parse(
                    config::EMBEDDED_EXAMPLE,
                    "config.example.yaml (embedded)",
                    &ProcessEnv,
                ),
            };
            let mut cfg = match loaded {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!(
                        "scim-bridge: refusing to start: the configuration is not usable\n{e}"
                    );
                    return ExitCode::from(2);
                }
            };
            let overrides = Overrides { listen, state_dir };
            overrides.apply(&mut cfg);
            match run(cfg, config, overrides, allow_damaged_journal) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("scim-bridge: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn check_config(path: &std::path::Path, online: bool) -> ExitCode {
    match config::load(path, &ProcessEnv) {
        Ok(cfg) if !online => {
            let findings = scim_bridge::target::ldap::subschema::check_settings(&cfg);
            for f in &findings {
                eprintln!("{f}");
            }
            if findings.iter().any(|f| f.is_error()) {
                println!(
                    "{}: configuration is valid, but {} setting(s) will fail",
                    path.display(),
                    findings.len()
                );
                return ExitCode::from(1);
            }
            println!("{}: configuration is valid", path.display());
            ExitCode::SUCCESS
        }
        Ok(cfg) => match scim_bridge::target::ldap::subschema::check_online(&cfg) {
            Err(e) => {
                eprintln!("scim-bridge: {e}");
                ExitCode::from(2)
            }
            Ok(findings) => {
                for f in &findings {
                    eprintln!("{f}");
                }
                let errors = findings.iter().filter(|f| f.is_error()).count();
                println!(
                    "{}: configuration is valid; the directory's schema: {} error(s), {} warning(s)",
                    path.display(),
                    errors,
                    findings.len() - errors
                );
                if errors > 0 {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
        },
        Err(e @ ConfigError::Invalid(_)) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("scim-bridge: {e}");
            ExitCode::from(2)
        }
    }
}

/// Changes the log filter of the running process (a reload).
type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

fn init_logging(cfg: &Config) -> anyhow::Result<SetLogLevel> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .with_context(|| format!("log.level '{}' is not a valid filter", cfg.log.level))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    fn setter<L, S>(handle: tracing_subscriber::reload::Handle<L, S>) -> SetLogLevel
    where
        L: From<tracing_subscriber::EnvFilter> + Send + Sync + 'static,
        S: 'static,
    {
        Box::new(move |level: &str| {
            let filter =
                tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        })
    }
    let init_error = |e| anyhow::anyhow!("cannot initialise logging: {e}");
    match cfg.log.format {
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(|| logline::Escaping::new(std::io::stderr(), false))
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().map_err(init_error)?;
            Ok(setter(handle))
        }
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(move || logline::Escaping::new(std::io::stderr(), ansi))
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().map_err(init_error)?;
            Ok(setter(handle))
        }
        LogFormat::Journald => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .without_time()
                .with_writer(|| logline::Escaping::new(std::io::stderr(), false))
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().map_err(init_error)?;
            Ok(setter(handle))
        }
    }
}

/// Command-line settings that win over the file's, at start and at every reload.
#[derive(Clone)]
struct Overrides {
    listen: Option<SocketAddr>,
    state_dir: Option<PathBuf>,
}

impl Overrides {
    fn apply(&self, cfg: &mut Config) {
        if let Some(listen) = self.listen {
            cfg.server.listen = listen;
        }
        if let Some(dir) = &self.state_dir {
            cfg.set_state_dir(dir.clone());
        }
    }
}

fn run(
    cfg: Config,
    path: Option<PathBuf>,
    overrides: Overrides,
    allow_damaged_journal: bool,
) -> anyhow::Result<()> {
    let set_log_level = init_logging(&cfg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    let result = runtime.block_on(serve(
        cfg,
        path,
        overrides,
        set_log_level,
        allow_damaged_journal,
    ));
    if let Err(e) = &result {
        notify(&[sd_notify::NotifyState::Status(&format!("failed: {e:#}"))]);
    }
    result
}

/// Tells systemd (when it started us with `Type=notify`) about the service's state.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

async fn serve(
    cfg: Config,
    path: Option<PathBuf>,
    overrides: Overrides,
    set_log_level: SetLogLevel,
    allow_damaged_journal: bool,
) -> anyhow::Result<()> {
    ignore_file_size_signal();
    let settings = Arc::new(Settings {
        base_path: cfg.server.base_path.clone(),
        public_url: cfg.server.public_url.clone(),
        scheme: if cfg.server.tls.is_some() {
            "https"
        } else {
            "http"
        },
        max_body_bytes: cfg.server.max_body_bytes,
        page_size: cfg.server.page_size,
        max_page_size: cfg.server.max_page_size,
        max_json_depth: cfg.server.max_json_depth,
        max_filter_bytes: cfg.server.max_filter_bytes,
        request_timeout: cfg.server.request_timeout,
        ready_max_pending: cfg.server.ready_max_pending,
        trusted_proxies: trusted_proxies(&cfg),
    });
    let rate_limits = Arc::new(http::Shared::new(http::ratelimit::RateLimits::new(
        &cfg.rate_limit,
    )));
    let mut states = Vec::new();
    for endpoint in cfg.all_endpoints() {
        let engine = open_endpoint(&cfg, &endpoint, allow_damaged_journal)?;
        states.push(AppState {
            endpoint: Arc::from(endpoint.name),
            engine,
            tokens: Arc::new(http::Shared::new(TokenSet::from_config(endpoint.auth))),
            settings: Arc::new(Settings {
                base_path: endpoint.base_path.to_string(),
                ..(*settings).clone()
            }),
            rate_limits: rate_limits.clone(),
            // Issued OAuth tokens: in memory only, so a restart makes providers ask again.
            oauth: Arc::new(http::oauth::Issuer::default()),
        });
    }
    let tls = match &cfg.server.tls {
        Some(t) => Some(
            http::server::tls_acceptor(&t.cert_file, &t.key_file)
                .map_err(|e| anyhow::anyhow!("server.tls: {e}"))?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("while binding {}", cfg.server.listen))?;
    let addr = listener
        .local_addr()
        .context("while reading the bound address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut listeners = vec![http::server::Listener::Tcp(listener, tls)];
    #[cfg(unix)]
    if let Some(path) = &cfg.server.unix_socket {
        // A socket left by a previous run would make the bind fail.
        if std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            std::fs::remove_file(path)
                .with_context(|| format!("while removing the old socket {}", path.display()))?;
        }
        let unix = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("while binding the Unix socket {}", path.display()))?;
        tracing::info!(path = %path.display(), "listening on the Unix socket");
        listeners.push(http::server::Listener::Unix(unix));
    }
    tracing::info!(%addr, scheme, base_path = %cfg.server.base_path, "listening");
    // A machine-readable readiness line on stdout, for scripts and the test harness.
    println!("listening on {addr}");
    std::io::stdout().flush().ok();
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("serving on {addr}")),
    ]);
    spawn_watchdog();
    let options = http::server::ServeOptions {
        drain: cfg_drain(),
        max_header_bytes: cfg.server.max_header_bytes,
        header_read_timeout: cfg.server.header_read_timeout,
        max_connections: cfg.server.max_connections,
        max_connections_per_client: cfg.server.max_connections_per_client,
        shared_peers: trusted_proxies(&cfg),
    };
    spawn_reload(path, overrides, cfg, states.clone(), set_log_level);
    let drained =
        http::server::serve(listeners, http::app_for(states), options, shutdown_signal()).await;
    tracing::info!(drained, "stopped");
    Ok(())
}

/// How long in-flight requests may take to finish at shutdown: below systemd's
/// `TimeoutStopSec=30s`.
fn cfg_drain() -> std::time::Duration {
    std::time::Duration::from_secs(20)
}

/// The configured trusted proxies, plus the Unix socket's peer when there is one: only a
/// local reverse proxy can reach that socket.
fn trusted_proxies(cfg: &Config) -> Vec<config::IpNet> {
    let mut out = cfg.server.trusted_proxies.clone();
    if cfg.server.unix_socket.is_some()
        && let Some(unix) = config::IpNet::parse(&http::server::UNIX_PEER.ip().to_string())
    {
        out.push(unix);
    }
    out
}

/// The state directories this daemon serves, locked against a second daemon.
static DAEMON_LOCKS: std::sync::Mutex<Vec<scim_bridge::store::DaemonLock>> =
    std::sync::Mutex::new(Vec::new());

/// Opens one endpoint: its state store (journal verified), its target and delivery
/// worker, the purge and retention tasks; the engine that serves it.
fn open_endpoint(
    cfg: &Config,
    endpoint: &config::EndpointView<'_>,
    allow_damaged_journal: bool,
) -> anyhow::Result<Engine> {
    let name = endpoint.name;
    let lock = scim_bridge::store::DaemonLock::acquire(endpoint.state_dir)
        .with_context(|| format!("endpoint {name}"))?;
    // Held until the process exits.
    DAEMON_LOCKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(lock);
    let store = Store::open(endpoint.state_dir).with_context(|| {
        format!(
            "endpoint {name}: while opening the state store in {}",
            endpoint.state_dir.display()
        )
    })?;
    let report = store
        .verify_at_start()
        .with_context(|| format!("endpoint {name}: while verifying the journal"))?;
    if !report.is_intact() {
        let what = journal_cli::describe_damage(&report);
        if allow_damaged_journal {
            tracing::error!(endpoint = name, damage = %what, "the journal is damaged; serving anyway (--allow-damaged-journal)");
        } else {
            anyhow::bail!(
                "the journal in {} is damaged: {what}\nrun 'scim-bridge journal verify' for details; start with --allow-damaged-journal to serve anyway",
                store.path().display()
            );
        }
    }
    tracing::info!(endpoint = name, base_path = endpoint.base_path, path = %store.path().display(), records = report.records, "state store open, journal verified");
    store
        .checkpoint_in_background(std::time::Duration::from_millis(250))
        .with_context(|| {
            format!("endpoint {name}: while starting the state store's checkpoints")
        })?;
    let store = Arc::new(store);
    let mut engine = Engine::new(store.clone());
    if let Some(target_cfg) = endpoint.target {
        let target = scim_bridge::target::open(target_cfg).with_context(|| {
            format!(
                "endpoint {name}: while opening the target ({})",
                target_cfg.describe()
            )
        })?;
        let delivery = scim_bridge::engine::delivery::Delivery::start_for(
            name,
            store.clone(),
            target_cfg.mapping.clone(),
            target,
        )
        .context("while starting delivery")?;
        tracing::info!(endpoint = name, target = %target_cfg.describe(), "delivering to the target");
        if let scim_bridge::engine::delivery::PasswordPolicy::Refuse(reason) =
            delivery.password_policy()
        {
            tracing::warn!(endpoint = name, reason = %reason, "the mapping writes passwords, but requests with a password will be refused");
        }
        spawn_purge(store.clone(), delivery.clone());
        engine = engine.with_delivery(delivery, target_cfg.sync_delivery);
    }
    if cfg.journal.retention_enabled() {
        let archive = match (&cfg.journal.archive_dir, name) {
            (_, scim_bridge::engine::DEFAULT_ENDPOINT) => journal_cli::archive_dir(cfg),
            (Some(dir), _) => dir.join(name),
            (None, _) => endpoint.state_dir.join("archive"),
        };
        spawn_retention(store, cfg.journal.clone(), archive);
    }
    Ok(engine)
}

/// Pings systemd's watchdog from the runtime at half its interval, while the runtime
/// serves (a wedged runtime stops the pings and systemd restarts the service).
fn spawn_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled().filter(|d| !d.is_zero()) else {
        return;
    };
    let every = interval / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
    });
}

/// On SIGHUP: reads the configuration again and applies what can change while serving
/// (tokens, rate limits, log level; each endpoint's mapping and target, reopened — a
/// mapping its target cannot take, e.g. a destructive table change, is logged and the
/// running one kept) atomically; a file that does not load is logged and the running
/// configuration keeps serving. Settings that need a restart (listen address, server
/// limits, endpoints added or removed, state directories, a target added or removed)
/// are reported when they differ.
fn spawn_reload(
    path: Option<PathBuf>,
    overrides: Overrides,
    running: Config,
    states: Vec<AppState>,
    set_log_level: SetLogLevel,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot catch SIGHUP; reloading is off");
                return;
            }
        };
        let mut running = running;
        while hup.recv().await.is_some() {
            notify(&[
                sd_notify::NotifyState::Reloading,
                sd_notify::NotifyState::monotonic_usec_now()
                    .unwrap_or(sd_notify::NotifyState::Status("reloading")),
            ]);
            let loaded = match &path {
                Some(path) => config::load(path, &ProcessEnv),
                None => config::parse(
                    config::EMBEDDED_EXAMPLE,
                    "config.example.yaml (embedded)",
                    &ProcessEnv,
                ),
            };
            match loaded {
                Err(e) => {
                    tracing::error!(error = %e, "reload refused: the configuration does not load; the running one keeps serving");
                }
                Ok(mut new) => {
                    overrides.apply(&mut new);
                    if let Err(e) = set_log_level(&new.log.level) {
                        tracing::error!(error = %e, "reload: log.level not applied");
                    }
                    for state in &states {
                        match new.endpoint(&state.endpoint) {
                            Some(endpoint) => {
                                state.tokens.set(TokenSet::from_config(endpoint.auth))
                            }
                            None => {
                                tracing::warn!(endpoint = %state.endpoint, "reload: the endpoint is gone from the file; it keeps serving until a restart")
                            }
                        }
                    }
                    for state in &states {
                        let (Some(delivery), Some(endpoint)) = (
                            state.engine.delivery().cloned(),
                            new.endpoint(&state.endpoint),
                        ) else {
                            continue;
                        };
                        let Some(target_cfg) = endpoint.target.cloned() else {
                            continue;
                        };
                        let name = state.endpoint.clone();
                        let opened = tokio::task::spawn_blocking(move || {
                            scim_bridge::target::open(&target_cfg)
                                .map(|target| (target_cfg.mapping.clone(), target))
                        })
                        .await;
                        match opened {
                            Ok(Ok((mapping, target))) => {
                                delivery.replace(mapping, target);
                                tracing::info!(endpoint = %name, "reload: mapping and target applied");
                            }
                            Ok(Err(e)) => {
                                tracing::error!(endpoint = %name, error = %e, "reload: the new mapping or target cannot be opened; the running ones keep delivering")
                            }
                            Err(e) => {
                                tracing::error!(endpoint = %name, error = %e, "reload: opening the target failed")
                            }
                        }
                    }
                    if new.rate_limit != running.rate_limit
                        && let Some(first) = states.first()
                    {
                        // New buckets: the counts start over with the new limits (the
                        // endpoints share them).
                        first
                            .rate_limits
                            .set(http::ratelimit::RateLimits::new(&new.rate_limit));
                    }
                    let needs_restart = restart_needed(&running, &new);
                    if !needs_restart.is_empty() {
                        tracing::warn!(settings = ?needs_restart, "reload: these settings change only with a restart");
                    }
                    tracing::info!(tokens = new.auth.tokens.len(), "configuration reloaded");
                    running = new;
                }
            }
            notify(&[sd_notify::NotifyState::Ready]);
        }
    });
}

/// The settings that differ between two configurations and need a restart to apply.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.server.listen != new.server.listen {
        out.push("server.listen");
    }
    if old.server.base_path != new.server.base_path
        || old.server.public_url != new.server.public_url
        || old.server.max_body_bytes != new.server.max_body_bytes
        || old.server.page_size != new.server.page_size
        || old.server.max_page_size != new.server.max_page_size
    {
        out.push("server");
    }
    if old.state.dir != new.state.dir {
        out.push("state.dir");
    }
    let describe = |c: &Config| {
        c.all_endpoints()
            .iter()
            .map(|e| {
                (
                    e.name.to_string(),
                    e.base_path.to_string(),
                    e.state_dir.to_path_buf(),
                    e.target.is_some(),
                    e.target.map(|t| t.sync_delivery),
                )
            })
            .collect::<Vec<_>>()
    };
    if describe(old) != describe(new) {
        out.push("endpoints (names, paths, state directories, a target added or removed, target.delivery)");
    }
    out
}

/// Journals a purge for every target row archived longer than its retention period;
/// delivery then removes the rows (so purges are in the journal like any change).
fn spawn_purge(store: Arc<Store>, delivery: Arc<scim_bridge::engine::delivery::Delivery>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let (store, delivery) = (store.clone(), delivery.clone());
            let result = tokio::task::spawn_blocking(move || {
                delivery.journal_purges(&store, time::OffsetDateTime::now_utc())
            })
            .await;
            match result {
                Ok(Ok(n)) if n > 0 => {
                    tracing::info!(purged = n, "journaled purges of archived rows")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "purging archived rows failed"),
                Err(e) => tracing::error!(error = %e, "purge task failed"),
            }
        }
    });
}

/// How often retention runs while serving.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs journal retention at start and then periodically, off the async threads.
fn spawn_retention(store: Arc<Store>, cfg: scim_bridge::config::JournalConfig, dir: PathBuf) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETENTION_EVERY);
        loop {
            tick.tick().await;
            let (store, cfg, dir) = (store.clone(), cfg.clone(), dir.clone());
            let result = tokio::task::spawn_blocking(move || {
                scim_bridge::journal::ops::archive(
                    &store,
                    &cfg,
                    &dir,
                    time::OffsetDateTime::now_utc(),
                )
            })
            .await;
            match result {
                Ok(Ok(s)) if s.dropped > 0 => {
                    tracing::info!(
                        dropped = s.dropped,
                        base = s.base,
                        files = s.files.len(),
                        "journal retention archived records"
                    )
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "journal retention failed; records are kept")
                }
                Err(e) => tracing::error!(error = %e, "journal retention task failed"),
            }
        }
    });
}

/// A write past `RLIMIT_FSIZE` raises SIGXFSZ, whose default action kills the process.
/// Catching it turns the write into an EFBIG error, which the store reports as storage
/// failure (503) like a full disk, and the daemon keeps serving reads.
fn ignore_file_size_signal() {
    #[cfg(target_os = "linux")]
    {
        const SIGXFSZ: i32 = 25;
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ)) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        tracing::error!("a write exceeded the file-size limit (SIGXFSZ)");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot catch SIGXFSZ"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
    notify(&[sd_notify::NotifyState::Stopping]);
}
