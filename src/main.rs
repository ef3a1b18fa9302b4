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
use scim_bridge::store::Store;

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
    },
    /// Validate a configuration file and print every problem with its line:column.
    CheckConfig {
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve {
            config,
            listen,
            state_dir,
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
            if let Some(listen) = listen {
                cfg.server.listen = listen;
            }
            if let Some(dir) = state_dir {
                cfg.state.dir = dir;
            }
            match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("scim-bridge: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match config::load(path, &ProcessEnv) {
        Ok(_) => {
            println!("{}: configuration is valid", path.display());
            ExitCode::SUCCESS
        }
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

fn init_logging(cfg: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .with_context(|| format!("log.level '{}' is not a valid filter", cfg.log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

fn run(cfg: Config) -> anyhow::Result<()> {
    init_logging(&cfg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let store = Store::open(&cfg.state.dir).with_context(|| {
        format!(
            "while opening the state store in {}",
            cfg.state.dir.display()
        )
    })?;
    tracing::info!(path = %store.path().display(), "state store open");
    let state = AppState {
        engine: Engine::new(Arc::new(store)),
        tokens: TokenSet::new(
            cfg.auth
                .tokens
                .iter()
                .map(|t| (t.name.as_str(), t.secret.expose())),
        ),
        settings: Arc::new(Settings {
            base_path: cfg.server.base_path.clone(),
            public_url: cfg.server.public_url.clone(),
            max_body_bytes: cfg.server.max_body_bytes,
            page_size: cfg.server.page_size,
            max_page_size: cfg.server.max_page_size,
        }),
    };
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("while binding {}", cfg.server.listen))?;
    let addr = listener
        .local_addr()
        .context("while reading the bound address")?;
    tracing::info!(%addr, base_path = %cfg.server.base_path, "listening");
    // A machine-readable readiness line on stdout, for scripts and the test harness.
    println!("listening on {addr}");
    std::io::stdout().flush().ok();
    axum::serve(listener, http::app(state).into_make_service())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("while serving")?;
    tracing::info!("stopped");
    Ok(())
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
}
