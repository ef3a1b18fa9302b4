//! `scim-bridge journal …`: the operator's view of the journal. Exit codes: 0 ok, 1 the
//! command found problems (damage, a missing record, records it could not replay),
//! 2 an error.

use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use scim_bridge::config::{self, Environment, ProcessEnv};
use scim_bridge::journal::archive;
use scim_bridge::journal::ops;
use scim_bridge::store::Store;
use scim_bridge::store::journal::{ChainReport, JournalQuery};

use crate::{JournalCommand, ReplayInto};

/// Secrets are not needed to read the journal: a missing one is replaced by a
/// placeholder so operators can run these commands without the daemon's credentials.
struct WithoutSecrets;

impl Environment for WithoutSecrets {
    fn var(&self, name: &str) -> Option<String> {
        ProcessEnv
            .var(name)
            .or_else(|| Some(format!("placeholder-secret-env-{name}")))
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        ProcessEnv
            .read_file(path)
            .or_else(|_| Ok(format!("placeholder-secret-file-{}", path.display())))
    }
}

/// The configuration (secrets not needed) with `--state-dir` applied. Without
/// `--config`, the embedded example's settings apply.
pub fn load_config(
    config_path: Option<&Path>,
    state_dir: Option<&Path>,
) -> anyhow::Result<config::Config> {
    let mut cfg = match config_path {
        Some(path) => config::load(path, &WithoutSecrets),
        None => config::parse(
            config::EMBEDDED_EXAMPLE,
            "config.example.yaml (embedded)",
            &WithoutSecrets,
        ),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(dir) = state_dir {
        cfg.state.dir = dir.to_path_buf();
    }
    Ok(cfg)
}

/// The configuration for the tools of one endpoint (see `Config::for_endpoint`).
pub fn endpoint_config(cfg: config::Config, name: &str) -> anyhow::Result<config::Config> {
    cfg.for_endpoint(name).ok_or_else(|| {
        let known: Vec<String> = cfg
            .all_endpoints()
            .iter()
            .map(|e| e.name.to_string())
            .collect();
        anyhow::anyhow!(
            "no endpoint named '{name}' in the configuration (endpoints: {})",
            known.join(", ")
        )
    })
}

/// Where archives go: `journal.archive_dir`, else `<state dir>/archive`.
pub fn archive_dir(cfg: &config::Config) -> PathBuf {
    cfg.journal
        .archive_dir
        .clone()
        .unwrap_or_else(|| cfg.state.dir.join("archive"))
}

fn open(dir: &Path, create: bool) -> anyhow::Result<Store> {
    if !create && !dir.join("state.db").exists() {
        anyhow::bail!(
            "{}: no state database here (state.db); pass --state-dir or --config",
            dir.display()
        );
    }
    Store::open(dir).with_context(|| format!("while opening the state store in {}", dir.display()))
}

/// One line saying where the damage starts.
pub fn describe_damage(report: &ChainReport) -> String {
    let mut parts = Vec::new();
    if !report.integrity.is_empty() {
        parts.push(format!(
            "database integrity check failed: {}",
            report.integrity.join("; ")
        ));
    }
    if let Some(d) = &report.damage {
        parts.push(format!(
            "{d}; last intact record: {}",
            report.last_intact.map_or("none".into(), |s| s.to_string())
        ));
    }
    parts.join("; ")
}

pub fn run(
    config: Option<&Path>,
    dir: Option<&Path>,
    endpoint: Option<&str>,
    command: JournalCommand,
) -> anyhow::Result<ExitCode> {
    // An export file is verified without any state directory.
    if let JournalCommand::Verify {
        file: Some(path),
        allow_torn_tail,
    } = &command
    {
        return verify_file(path, *allow_torn_tail);
    }
    let cfg = match endpoint {
        Some(name) => {
            let cfg = endpoint_config(load_config(config, None)?, name)?;
            match dir {
                Some(d) => config::Config {
                    state: config::StateConfig {
                        dir: d.to_path_buf(),
                    },
                    ..cfg
                },
                None => cfg,
            }
        }
        None => load_config(config, dir)?,
    };
    let dir = cfg.state.dir.clone();
    // Replaying a file may start from an empty state directory (a rebuild); a dry run
    // of that works on a throw-away copy so it creates nothing.
    let replays_file = matches!(&command, JournalCommand::Replay { file: Some(_), .. });
    let dry_run = matches!(&command, JournalCommand::Replay { dry_run: true, .. });
    if replays_file && dry_run && !dir.join("state.db").exists() {
        let tmp = tempfile_dir()?;
        let store = open(&tmp, true)?;
        let result = run_with(&cfg, &store, &tmp, command);
        drop(store);
        let _ = std::fs::remove_dir_all(&tmp);
        return result;
    }
    let store = open(&dir, replays_file && !dry_run)?;
    if let JournalCommand::Archive = command {
        if !cfg.journal.retention_enabled() {
            println!(
                "retention is off (no journal.max_age, max_records or max_bytes set): nothing to archive"
            );
            return Ok(ExitCode::SUCCESS);
        }
        let target = archive_dir(&cfg);
        let summary = ops::archive(
            &store,
            &cfg.journal,
            &target,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        for f in &summary.files {
            println!("archived {}", f.display());
        }
        println!(
            "dropped {} records; the journal now starts after record {}",
            summary.dropped, summary.base
        );
        return Ok(ExitCode::SUCCESS);
    }
    run_with(&cfg, &store, &dir, command)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("scim-bridge-dry-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
    Ok(dir)
}

fn run_with(
    cfg: &config::Config,
    store: &Store,
    dir: &Path,
    command: JournalCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        JournalCommand::List {
            from,
            to,
            since,
            resource,
            actor,
            pending,
            rejected,
        } => {
            let since = since
                .map(|text| {
                    scim_bridge::scim::resource::parse_datetime(&text)
                        .map(scim_bridge::journal::timestamp)
                        .ok_or_else(|| anyhow::anyhow!("--since '{text}' is not an RFC 3339 time (e.g. 2026-11-23T08:00:00Z)"))
                })
                .transpose()?;
            let q = JournalQuery {
                from,
                to,
                since,
                resource,
                actor,
                delivery: if pending {
                    Some("pending".into())
                } else if rejected {
                    Some("rejected".into())
                } else {
                    None
                },
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut failed = None;
            ops::list(store, &q, |line| {
                if failed.is_none()
                    && let Err(e) = writeln!(out, "{line}")
                {
                    failed = Some(e);
                }
            })?;
            match failed {
                Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Some(e) => return Err(e.into()),
                None => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        JournalCommand::Show { seq } => match ops::show(store, seq)? {
            Some(v) => {
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("journal: no record {seq} in {}", dir.display());
                Ok(ExitCode::from(1))
            }
        },
        JournalCommand::Verify { .. } => {
            let report = ops::verify_db(store)?;
            let range = match (report.first, report.records) {
                (Some(first), n) if n > 0 => format!("records {first}..{}", first + n - 1),
                _ => "no records".into(),
            };
            if report.is_intact() {
                println!(
                    "journal intact: {range}; last intact record: {}",
                    report.last_intact.map_or("none".into(), |s| s.to_string())
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("journal DAMAGED ({range}): {}", describe_damage(&report));
                Ok(ExitCode::from(1))
            }
        }
        JournalCommand::Export { from, to } => {
            let stdout = std::io::stdout();
            let n = ops::export(store, from, to, std::io::BufWriter::new(stdout.lock()))?;
            eprintln!("exported {n} records");
            Ok(ExitCode::SUCCESS)
        }
        JournalCommand::Archive => unreachable!("handled before opening the store"),
        JournalCommand::Replay {
            from,
            to,
            file,
            dry_run,
            allow_torn_tail,
            into,
        } => {
            if let ReplayInto::Target = into {
                return replay_into_target(
                    cfg,
                    store,
                    from,
                    to,
                    file.as_deref(),
                    dry_run,
                    allow_torn_tail,
                );
            }
            let bar = progress_bar();
            let tick = |n: u64| {
                if let Some(b) = &bar {
                    b.set_position(n);
                }
            };
            let summary = match &file {
                Some(path) => {
                    let input = archive::open(path)
                        .with_context(|| format!("while opening {}", path.display()))?;
                    ops::replay_file(store, input, from, to, dry_run, allow_torn_tail, tick)
                }
                None => ops::replay_db(store, from, to, dry_run, tick),
            };
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let summary = summary.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{}replayed {} records ({}..{}) into the store: {} applied, {} already current, {} added to the journal",
                if dry_run { "dry run: would have " } else { "" },
                summary.records,
                summary.first.map_or("-".into(), |s| s.to_string()),
                summary.last.map_or("-".into(), |s| s.to_string()),
                summary.applied,
                summary.skipped,
                summary.imported
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn replay_into_target(
    cfg: &config::Config,
    store: &Store,
    from: Option<u64>,
    to: Option<u64>,
    file: Option<&Path>,
    dry_run: bool,
    allow_torn_tail: bool,
) -> anyhow::Result<ExitCode> {
    let Some(target_cfg) = &cfg.target else {
        anyhow::bail!(
            "--into target: the configuration has no 'target:'; pass the daemon's --config"
        );
    };
    let records = match file {
        Some(path) => {
            let input =
                archive::open(path).with_context(|| format!("while opening {}", path.display()))?;
            ops::file_records(input, from, to, allow_torn_tail)
        }
        None => ops::db_records(store, from, to),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let target = scim_bridge::target::open(target_cfg)
        .with_context(|| format!("while opening the target ({})", target_cfg.describe()))?;
    let bar = progress_bar();
    let summary = ops::replay_target(
        records.into_iter().map(Ok),
        &target_cfg.mapping,
        target.as_ref(),
        dry_run,
        |n| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        },
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = summary.map_err(|e| anyhow::anyhow!("{e}"))?;
    for (seq, detail) in &summary.rejected {
        println!("record {seq}: rejected by the target: {detail}");
    }
    println!(
        "{}replayed {} records ({}..{}) into the target {}: {} applied, {} rejected, {} skipped (rejected at delivery)",
        if dry_run { "dry run: would have " } else { "" },
        summary.records,
        summary.first.map_or("-".into(), |s| s.to_string()),
        summary.last.map_or("-".into(), |s| s.to_string()),
        target_cfg.describe(),
        summary.applied,
        summary.rejected.len(),
        summary.skipped_rejected
    );
    Ok(if summary.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} replaying: {pos} records ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    Some(bar)
}

fn verify_file(path: &Path, allow_torn_tail: bool) -> anyhow::Result<ExitCode> {
    let input = archive::open(path).with_context(|| format!("while opening {}", path.display()))?;
    let report = ops::verify_file(BufReader::new(input), allow_torn_tail)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let last = report.last_intact.map_or("none".into(), |s| s.to_string());
    if let Some((line, offset)) = report.torn_tail {
        println!(
            "{}: torn last line at line {line} (byte {offset}); ignored (--allow-torn-tail)",
            path.display()
        );
    }
    match &report.damage {
        None => {
            println!(
                "{}: intact: {} records ({}..{}) from origin {}; last intact record: {last}",
                path.display(),
                report.records,
                report.header.first_seq,
                report.header.last_seq,
                report.header.origin
            );
            Ok(ExitCode::SUCCESS)
        }
        Some((line, offset, what)) => {
            println!(
                "{}: DAMAGED at line {line} (byte {offset}): {what}; last intact record: {last}",
                path.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}
