//! The stored-state part of `scim-bridge bench`: figures that depend on how much the
//! daemon holds rather than on request traffic.
//!
//! - `populate` fills a state directory with users and groups through the engine — the
//!   same normalisation, checks, store writes and journal records as requests over HTTP,
//!   without the HTTP — many writes at a time so group commit batches them.
//! - `replay_figures` exports that journal and replays it into an empty state directory
//!   with `scim-bridge journal replay` (a child process, so its time and peak memory are
//!   its own).
//! - `member_delta_figures` times adding and removing members of a large group next to a
//!   small one, over HTTP (the cost must follow the members named, not the group's size).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use scim_bridge::engine::{Actor, Engine};
use scim_bridge::scim::schema::ResourceKind;
use scim_bridge::store::Store;
use serde_json::{Value, json};

/// Writes in flight while populating: enough for group commit to batch them.
const POPULATE_CONCURRENCY: usize = 256;

/// What `populate` wrote.
pub struct Populated {
    pub users: u64,
    pub groups: u64,
    pub records: u64,
    pub seconds: f64,
    /// The ids of the users, in creation order.
    pub user_ids: Vec<String>,
    /// The group holding the first `large_group` users, when asked for.
    pub large_group: Option<String>,
    /// A group of ten of them (the comparison for the large one).
    pub small_group: Option<String>,
}

/// An Entra-shaped user (the shape of the HTTP bench's creates).
fn user_body(i: u64) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": format!("ext-{i:07}"),
        "userName": format!("user{i:07}@contoso.example"),
        "active": true,
        "displayName": format!("User {i}"),
        "name": {"givenName": "User", "familyName": format!("{i:07}")},
        "emails": [{"primary": true, "type": "work", "value": format!("user{i:07}@contoso.example")}],
        "title": "Engineer",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": format!("Dept {}", i % 50),
            "employeeNumber": format!("{i}")
        }
    })
}

/// Fills `state_dir` (which must hold no state yet) with `users` users and `groups`
/// groups of `members_per_group` members each (user ids taken round robin), plus, when
/// `large_group` > 0, one group of the first `large_group` users and one of the first ten.
pub fn populate(
    state_dir: &Path,
    users: u64,
    groups: u64,
    members_per_group: u64,
    large_group: u64,
) -> anyhow::Result<Populated> {
    let started = Instant::now();
    let store = Arc::new(
        Store::open(state_dir)
            .with_context(|| format!("cannot open a state store in {}", state_dir.display()))?,
    );
    let engine = Engine::new(store.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let actor = Actor::tool("bench");
    let user_ids: Vec<String> = runtime.block_on(async {
        let mut ids = Vec::with_capacity(users as usize);
        let mut next = 0;
        while next < users {
            let end = (next + POPULATE_CONCURRENCY as u64 * 8).min(users);
            let mut tasks = tokio::task::JoinSet::new();
            for i in next..end {
                let (engine, actor) = (engine.clone(), actor.clone());
                tasks.spawn(async move {
                    (
                        i,
                        engine
                            .create(ResourceKind::User, user_body(i), &actor)
                            .await,
                    )
                });
            }
            let mut batch = Vec::with_capacity((end - next) as usize);
            while let Some(done) = tasks.join_next().await {
                let (i, written) = done.context("a populate task failed")?;
                let written = written.map_err(|e| anyhow::anyhow!("user {i}: {e}"))?;
                batch.push((i, written.resource.stored.id));
            }
            batch.sort();
            ids.extend(batch.into_iter().map(|(_, id)| id));
            next = end;
        }
        anyhow::Ok(ids)
    })?;
    runtime.block_on(async {
        let mut next = 0;
        while next < groups {
            let end = (next + POPULATE_CONCURRENCY as u64).min(groups);
            let mut tasks = tokio::task::JoinSet::new();
            for g in next..end {
                let members: Vec<Value> = (0..members_per_group)
                    .filter_map(|k| {
                        let at = (g * members_per_group + k) % users.max(1);
                        user_ids.get(at as usize).map(|id| json!({"value": id}))
                    })
                    .collect();
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": format!("Group {g:06}"),
                    "externalId": format!("grp-{g:06}"),
                    "members": members,
                });
                let (engine, actor) = (engine.clone(), actor.clone());
                tasks.spawn(
                    async move { (g, engine.create(ResourceKind::Group, body, &actor).await) },
                );
            }
            while let Some(done) = tasks.join_next().await {
                let (g, written) = done.context("a populate task failed")?;
                written.map_err(|e| anyhow::anyhow!("group {g}: {e}"))?;
            }
            next = end;
        }
        anyhow::Ok(())
    })?;
    let (mut large, mut small) = (None, None);
    if large_group > 0 {
        for (name, n, slot) in [
            ("Large group", large_group, &mut large),
            ("Small group", 10, &mut small),
        ] {
            let members: Vec<Value> = user_ids
                .iter()
                .take(n as usize)
                .map(|id| json!({"value": id}))
                .collect();
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name,
                "members": members,
            });
            let written = runtime
                .block_on(engine.create(ResourceKind::Group, body, &actor))
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            *slot = Some(written.resource.stored.id);
        }
    }
    let records = store
        .read(|r| r.journal_head())
        .context("cannot read the journal head")?
        .0;
    Ok(Populated {
        users,
        groups,
        records,
        seconds: started.elapsed().as_secs_f64(),
        user_ids,
        large_group: large,
        small_group: small,
    })
}

/// A child process's wall time and peak resident memory (KiB, from `/proc`).
pub struct ChildRun {
    pub seconds: f64,
    pub peak_kib: Option<u64>,
}

/// Runs this program with `args`, sampling its `VmHWM` until it exits.
fn run_measured(args: &[&std::ffi::OsStr]) -> anyhow::Result<ChildRun> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let started = Instant::now();
    let child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let pid = child.id();
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            let status = format!("/proc/{pid}/status");
            while !stop.load(Ordering::Relaxed) {
                let Ok(text) = std::fs::read_to_string(&status) else {
                    break;
                };
                if let Some(kib) = crate::bench_cli::proc_kib(&text, "VmHWM:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = child.wait_with_output().context("waiting for the child")?;
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    if !out.status.success() {
        anyhow::bail!(
            "{} {:?} failed ({}): {}",
            exe.display(),
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let kib = peak.load(Ordering::Relaxed);
    Ok(ChildRun {
        seconds,
        peak_kib: (kib > 0).then_some(kib),
    })
}

/// Journal replay figures: export the journal of `state_dir`, replay the export into an
/// empty state directory under `work`.
pub struct ReplayFigures {
    pub records: u64,
    pub export_bytes: u64,
    pub replay: ChildRun,
}

pub fn replay_figures(state_dir: &Path, work: &Path) -> anyhow::Result<ReplayFigures> {
    let export = work.join("journal-export.jsonl");
    let fresh: PathBuf = work.join("replayed-state");
    let records = {
        let store = Store::open(state_dir)
            .with_context(|| format!("cannot open {}", state_dir.display()))?;
        let file = std::fs::File::create(&export)
            .with_context(|| format!("cannot create {}", export.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let n = scim_bridge::journal::ops::export(&store, None, None, &mut out)
            .map_err(|e| anyhow::anyhow!("exporting the journal: {e}"))?;
        std::io::Write::flush(&mut out).context("writing the export")?;
        n
    };
    let export_bytes = std::fs::metadata(&export).map(|m| m.len()).unwrap_or(0);
    let replay = run_measured(&[
        "journal".as_ref(),
        "replay".as_ref(),
        "--file".as_ref(),
        export.as_os_str(),
        "--into".as_ref(),
        "store".as_ref(),
        "--state-dir".as_ref(),
        fresh.as_os_str(),
    ])?;
    Ok(ReplayFigures {
        records,
        export_bytes,
        replay,
    })
}
