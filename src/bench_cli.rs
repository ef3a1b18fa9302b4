//! `scim-bridge bench`: drives a daemon over HTTP with Entra-shaped traffic and prints,
//! per phase, the request count, throughput, latency percentiles and errors.
//!
//! The daemon is either one already running (`--url`, `--token`) or one this command
//! starts from a configuration file (`--config`): the same binary's `serve`, on a free
//! loopback port, with a temporary state directory, its resident memory sampled every
//! 100 ms. To start it, the configuration is copied with two sections replaced: `auth`
//! (one static bearer token made up for the run) and `rate_limit` (off: the defaults would
//! answer 429 long before the daemon's own limits show); everything else (target, mapping,
//! journal, log settings) is the file's.
//!
//! The client is deliberately plain: `--concurrency` threads, each with one HTTP/1.1
//! keep-alive connection (blocking `std::net`), writing a request and reading the response
//! by its `Content-Length` (or chunks). Nothing from the network is trusted: a failed
//! connection, a malformed response or an unexpected status is counted as an error of its
//! phase, never a panic. Latency is measured from the first byte written to the last byte
//! read.
//!
//! With `--ldap`, the target is a directory: a throw-away slapd started the way the tests
//! start it ([`scim_bridge::slapd`]), with the target and mapping of
//! `examples/ldap-openldap.yaml` pointed at it in place of the configuration's own (the
//! embedded `config.example.yaml` without `--config`). Right after `create users`, a
//! `raw ldap3 add` phase adds the very entries the bridge wrote (read back from the
//! directory: same object classes and attributes) again, under a fresh `ou=raw`, with
//! ldap3 directly, as many connections as `--concurrency` (each bound once), timed like the
//! HTTP phases; the ratio of the two rates is the bridge's LDAP overhead. After the daemon
//! stops, its whole journal is replayed into a second fresh slapd through the code path
//! of `journal replay --into target` (`journal::ops::db_records` and `replay_target`), and
//! the records/s printed; the replayed directory is compared with the bench's (DNs).
//!
//! Exit codes: 0 every request succeeded, 1 some failed (the table says which) or, with
//! `--ldap`, the replay was refused records or gave another directory, 2 the daemon or
//! slapd could not be started or reached.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use ldap3::{LdapConn, LdapConnSettings, Scope};
use scim_bridge::config::{self, Environment, ProcessEnv};
use scim_bridge::journal::ops;
use scim_bridge::slapd::Slapd;
use scim_bridge::store::Store;

/// The environment variable the started daemon reads its (made-up) bearer token from.
const TOKEN_VAR: &str = "SCIM_BRIDGE_BENCH_TOKEN";
/// How long the started daemon may take to print `listening on ADDR`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request connect, read and write timeout.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the steady-rate phase runs.
const STEADY_DURATION: Duration = Duration::from_secs(10);
/// How often the daemon's resident memory is sampled.
const RSS_INTERVAL: Duration = Duration::from_millis(100);
/// The largest response accepted (a list of 1000 users is far below).
const MAX_BODY: usize = 64 << 20;
/// The `ou` the `raw ldap3 add` phase adds its entries under, below the suffix (`--ldap`).
const RAW_OU: &str = "raw";
/// How long reading a whole subtree back from slapd may take (`--ldap`).
const SEARCH_TIMEOUT: Duration = Duration::from_secs(300);
/// The bridge's create rate, as a share of raw ldap3's add rate, that issue 7 asks for.
const LDAP_RATIO_TARGET: f64 = 80.0;

pub(crate) const USER_SCHEMAS: &str = r#"["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]"#;
pub(crate) const GROUP_SCHEMAS: &str = r#"["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"]"#;
pub(crate) const PATCH_SCHEMAS: &str = r#"["urn:ietf:params:scim:api:messages:2.0:PatchOp"]"#;

/// `scim-bridge bench` options.
#[derive(clap::Args)]
#[command(
    group(
        clap::ArgGroup::new("daemon")
            .required(true)
            .multiple(true)
            .args(["url", "config", "ldap"])
    ),
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// A running daemon's SCIM base URL, e.g. http://127.0.0.1:8080/scim/v2 (plain HTTP).
    #[arg(long, conflicts_with_all = ["config", "ldap", "state_dir"])]
    url: Option<String>,
    /// The bearer token for --url.
    #[arg(long, env = "SCIM_BRIDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Start the daemon from this configuration file (auth and rate_limit replaced), on
    /// 127.0.0.1:0, and stop it at the end.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Benchmark the LDAP target: start a throw-away slapd (as the tests do: needs slapd
    /// and ldap-utils), give the daemon examples/ldap-openldap.yaml's target and mapping
    /// pointed at it (the rest from --config, or the embedded example), add a `raw ldap3
    /// add` phase and a journal replay into a second slapd, and print the ratio.
    #[arg(long)]
    ldap: bool,
    /// With --ldap: which directory to start — `openldap` (slapd), `389ds` (ns-slapd,
    /// examples/ldap-389ds.yaml) or `ad` (a Samba AD DC, examples/ldap-ad.yaml; fixed
    /// ports: one per machine, so no second one for the journal replay).
    #[arg(long, value_enum, default_value = "openldap", requires = "ldap")]
    directory: DirectoryKind,
    /// The started daemon's state directory (kept); default a temporary one (removed).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Users to create, look up, patch and delete.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    users: u64,
    /// Groups to create and fill with the users.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    groups: u64,
    /// Members added per group PATCH.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    members_per_batch: u64,
    /// Connections (one client thread each) sending requests at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Overall time limit; a phase running when it is reached stops and says so.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    max_seconds: u64,
    /// Also run a phase of this many requests per second (GET by filter and PATCH,
    /// alternately) for 10 s, before the users are deleted.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    steady_rps: Option<u32>,
    /// Before the daemon starts, store this many users in its state (through the engine,
    /// as requests would), then measure a journal replay of them into an empty store and
    /// the daemon's startup with them; the phases then run on top of them.
    #[arg(long, default_value_t = 0, conflicts_with = "url", value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    stored_users: u64,
    /// Groups stored with --stored-users, each of --stored-members of them.
    #[arg(long, default_value_t = 0, requires = "stored_users", value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    stored_groups: u64,
    /// Members of each stored group.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    stored_members: u64,
    /// Also store one group of this many of the stored users (and one of ten), and time
    /// adding and removing 100 members of each: the cost must follow the 100, not the
    /// group's size. Needs --stored-users of at least this many plus 2,000.
    #[arg(long, default_value_t = 0, requires = "stored_users", value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    large_group: u64,
}

/// `scim-bridge bench …` commands other than the benchmark itself.
#[derive(clap::Subcommand)]
enum BenchCommand {
    /// A bounded soak run against a throw-away slapd, with faults injected on a schedule
    /// (slapd stopped and killed, the daemon killed, the state store locked), ending with
    /// journal verify, a replay of the journal compared with the state, and reconcile.
    Soak(crate::bench_soak::SoakArgs),
}

/// Members added, then removed, per request of the group phases.
const DELTA: usize = 100;
/// Requests per group phase.
const DELTA_REQUESTS: usize = 20;

/// Runs the benchmark; see the module documentation for the exit codes.
pub fn run(args: BenchArgs) -> ExitCode {
    if let Some(BenchCommand::Soak(soak)) = args.command {
        return crate::bench_soak::run(soak);
    }
    match bench(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("scim-bridge bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Where requests go.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    /// The `Host` header.
    pub(crate) host: String,
    /// `/scim/v2`, no trailing `/`.
    pub(crate) base_path: String,
    pub(crate) token: String,
}

/// `Ok(true)`: no request failed.
fn bench(args: &BenchArgs) -> anyhow::Result<bool> {
    let run_id = random_hex(4).context("while reading random bytes from the system")?;
    // Declared first so they are dropped after the daemon on an early return.
    let mut _stored_dir: Option<RemoveOnDrop> = None;
    let mut slapd = None;
    let mut daemon = None;
    let mut stored: Option<crate::bench_store::Populated> = None;
    let endpoint = match &args.url {
        Some(url) => {
            let token = args
                .token
                .clone()
                .context("--url needs --token (or SCIM_BRIDGE_TOKEN)")?;
            parse_url(url, token)?
        }
        None => {
            let (mut text, mut source) = match &args.config {
                Some(path) => (
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                    path.display().to_string(),
                ),
                None => (
                    config::EMBEDDED_EXAMPLE.to_owned(),
                    "config.example.yaml (embedded)".to_owned(),
                ),
            };
            if args.ldap {
                let server = Directory::start(args.directory)?;
                text = replace_sections(&text, &["target", "mapping"], &server.target_yaml());
                source += &format!(" with {}'s target and mapping", server.example());
                slapd = Some(server);
            }
            let state_dir = match (&args.state_dir, args.stored_users) {
                (Some(dir), _) => Some(dir.clone()),
                (None, 0) => None,
                (None, _) => {
                    let dir =
                        std::env::temp_dir().join(format!("scim-bridge-bench-stored-{run_id}"));
                    _stored_dir = Some(RemoveOnDrop(dir.clone()));
                    Some(dir)
                }
            };
            if let Some(dir) = state_dir.as_deref().filter(|_| args.stored_users > 0) {
                stored = Some(store_state(args, dir)?);
            }
            let starting = Instant::now();
            let (d, endpoint) = Daemon::start(&text, source, state_dir.as_deref())?;
            if stored.is_some() {
                println!(
                    "startup with that state: {:.2} s to listening (state store opened, journal verified), RSS {}",
                    starting.elapsed().as_secs_f64(),
                    mib(Some(d.peak_rss.load(Ordering::Relaxed)))
                );
            }
            daemon = Some(d);
            endpoint
        }
    };
    let endpoint = Arc::new(endpoint);

    print_header(args, &endpoint, daemon.as_ref(), slapd.as_ref());
    let mut b = Bench {
        conns: (0..args.concurrency)
            .map(|_| Conn::new(endpoint.clone()))
            .collect(),
        deadline: Instant::now() + Duration::from_secs(args.max_seconds),
        max_seconds: args.max_seconds,
        rss: daemon.as_ref().map(|d| d.peak_rss.clone()),
        ok: true,
    };
    println!("{}", Phase::header());

    let n = args.users as usize;
    let names: Vec<String> = (0..n)
        .map(|i| format!("bench_{run_id}_{i}@contoso.example"))
        .collect();
    let user_ids: Vec<OnceLock<String>> = (0..n).map(|_| OnceLock::new()).collect();

    // (1) Create the users (Entra's §1.1 body, unique userName/externalId/email).
    let create_rate = b.phase(
        "create users",
        n,
        |i| {
            let name = &names[i];
            Some(Req::post(
                "/Users".to_owned(),
                format!(
                    r#"{{"schemas":{USER_SCHEMAS},"externalId":"{run_id}-0000-4000-8000-{i:012x}","userName":"{name}","active":true,"emails":[{{"primary":true,"type":"work","value":"{name}"}}],"meta":{{"resourceType":"User"}},"name":{{"formatted":"Given{i} Family{i}","familyName":"Family{i}","givenName":"Given{i}"}},"roles":[]}}"#
                ),
            ))
        },
        |i, body| {
            let id = resource_id(body).ok_or("no id in the response")?;
            let _ = user_ids[i].set(id);
            Ok(())
        },
    );

    // (1b) The same entries, added by ldap3 straight into the same directory.
    let raw_rate = slapd.as_ref().and_then(|server| b.raw_ldap_add(server));

    // (2) Look each one up the way Entra matches: filter on userName, form-encoded.
    b.phase(
        "get by filter",
        n,
        |i| {
            Some(Req::get(format!(
                "/Users?filter=userName+eq+%22{}%22",
                form_encode(&names[i])
            )))
        },
        |_, body| {
            if total_results(body) == Some(1) {
                Ok(())
            } else {
                Err("not exactly one result")
            }
        },
    );

    // (3) Patch each one in Entra's default dialect: string boolean, a title change.
    b.phase(
        "patch users",
        n,
        |i| {
            let id = user_ids[i].get()?;
            Some(Req::patch(format!("/Users/{id}"), user_patch(i, "False")))
        },
        |_, _| Ok(()),
    );

    // (4) Groups, then their members in batches (§1.13's multi-member form).
    let g = args.groups as usize;
    let group_ids: Vec<OnceLock<String>> = (0..g).map(|_| OnceLock::new()).collect();
    b.phase(
        "create groups",
        g,
        |j| {
            Some(Req::post(
                "/Groups".to_owned(),
                format!(
                    r#"{{"schemas":{GROUP_SCHEMAS},"externalId":"{run_id}-1111-4000-8000-{j:012x}","displayName":"bench-{run_id}-group-{j}","meta":{{"resourceType":"Group"}}}}"#
                ),
            ))
        },
        |j, body| {
            let id = resource_id(body).ok_or("no id in the response")?;
            let _ = group_ids[j].set(id);
            Ok(())
        },
    );
    let per = args.members_per_batch as usize;
    b.phase(
        "add members",
        n.div_ceil(per),
        |k| {
            let group = group_ids[k % g].get()?;
            let mut value = String::new();
            for id in user_ids[k * per..n.min((k + 1) * per)]
                .iter()
                .filter_map(OnceLock::get)
            {
                if !value.is_empty() {
                    value.push(',');
                }
                let _ = write!(value, r#"{{"value":"{id}"}}"#);
            }
            if value.is_empty() {
                return None;
            }
            Some(Req::patch(
                format!("/Groups/{group}"),
                format!(
                    r#"{{"schemas":{PATCH_SCHEMAS},"Operations":[{{"op":"Add","path":"members","value":[{value}]}}]}}"#
                ),
            ))
        },
        |_, _| Ok(()),
    );

    // Optional: a steady rate of lookups and patches, as a provisioning cycle sends them.
    if let Some(rps) = args.steady_rps {
        b.steady(rps, |k| {
            let i = (k / 2) % n;
            if k.is_multiple_of(2) {
                Some(Req::get(format!(
                    "/Users?filter=userName+eq+%22{}%22",
                    form_encode(&names[i])
                )))
            } else {
                let id = user_ids[i].get()?;
                let active = if (k / 2 / n).is_multiple_of(2) {
                    "True"
                } else {
                    "False"
                };
                Some(Req::patch(format!("/Users/{id}"), user_patch(k, active)))
            }
        });
    }

    // Optional: the cost of 100 members in and out of a large group and of a small one.
    if let Some(p) = &stored
        && let (Some(large), Some(small)) = (&p.large_group, &p.small_group)
    {
        let from = args.large_group as usize;
        for (name_in, name_out, group) in [
            ("large group +100", "large group -100", large),
            ("small group +100", "small group -100", small),
        ] {
            let batch = |k: usize| -> String {
                let mut value = String::new();
                for id in p.user_ids.iter().skip(from + k * DELTA).take(DELTA) {
                    if !value.is_empty() {
                        value.push(',');
                    }
                    let _ = write!(value, r#"{{"value":"{id}"}}"#);
                }
                value
            };
            for (phase, op) in [(name_in, "Add"), (name_out, "Remove")] {
                b.phase(
                    phase,
                    DELTA_REQUESTS,
                    |k| {
                        Some(Req::patch(
                            format!("/Groups/{group}"),
                            format!(
                                r#"{{"schemas":{PATCH_SCHEMAS},"Operations":[{{"op":"{op}","path":"members","value":[{}]}}]}}"#,
                                batch(k)
                            ),
                        ))
                    },
                    |_, _| Ok(()),
                );
            }
        }
    }

    // (5) Delete every user.
    b.phase(
        "delete users",
        n,
        |i| Some(Req::delete(format!("/Users/{}", user_ids[i].get()?))),
        |_, _| Ok(()),
    );

    if let Some(mut d) = daemon {
        let hwm = d.stop();
        let peak = d.peak_rss.load(Ordering::Relaxed);
        println!(
            "daemon memory: peak RSS {} (sampled every {} ms), VmHWM {}",
            mib(Some(peak)),
            RSS_INTERVAL.as_millis(),
            mib(hwm)
        );
        if let Some(server) = &slapd {
            print_ldap_ratio(create_rate, raw_rate);
            match replay_journal(&d, server, args.directory) {
                Ok(replay_ok) => b.ok &= replay_ok,
                Err(e) => {
                    println!("journal replay into a second directory: failed: {e:#}");
                    b.ok = false;
                }
            }
        }
        d.cleanup(b.ok);
    } else {
        println!("daemon memory: not measured (--url: the daemon is not this command's child)");
    }
    Ok(b.ok)
}

/// A directory removed when the run ends.
pub(crate) struct RemoveOnDrop(pub(crate) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stores the users and groups `--stored-*` asks for in `dir`, then measures a replay of
/// their journal into an empty store (in `dir`'s sibling, removed after).
fn store_state(args: &BenchArgs, dir: &Path) -> anyhow::Result<crate::bench_store::Populated> {
    if args.large_group > 0
        && args.stored_users < args.large_group + (DELTA * DELTA_REQUESTS) as u64
    {
        anyhow::bail!(
            "--large-group {} needs --stored-users of at least {}",
            args.large_group,
            args.large_group + (DELTA * DELTA_REQUESTS) as u64
        );
    }
    let p = crate::bench_store::populate(
        dir,
        args.stored_users,
        args.stored_groups,
        args.stored_members,
        args.large_group,
    )?;
    println!(
        "stored: {} users, {} groups of {} members{} ({} journal records) in {:.1} s, through the engine",
        p.users,
        p.groups,
        args.stored_members,
        if args.large_group > 0 {
            format!(", a group of {} and one of 10", args.large_group)
        } else {
            String::new()
        },
        p.records,
        p.seconds
    );
    let work = dir.with_extension("replay");
    let _work = RemoveOnDrop(work.clone());
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let r = crate::bench_store::replay_figures(dir, &work)?;
    println!(
        "journal replay into an empty store: {} records ({:.0} MB export) in {:.2} s = {:.0} records/s, peak RSS {} (scim-bridge journal replay --file)",
        r.records,
        r.export_bytes as f64 / 1e6,
        r.replay.seconds,
        r.records as f64 / r.replay.seconds.max(1e-9),
        mib(r.replay.peak_kib)
    );
    Ok(p)
}

/// `ldap overhead: bridge creates X/s, raw ldap3 adds Y/s, ratio Z%`, with the verdict
/// against issue 7's target.
fn print_ldap_ratio(bridge: Option<f64>, raw: Option<f64>) {
    match (bridge, raw) {
        (Some(bridge), Some(raw)) if raw > 0.0 => {
            let ratio = 100.0 * bridge / raw;
            println!(
                "ldap overhead: bridge creates {bridge:.0}/s, raw ldap3 adds {raw:.0}/s, ratio {ratio:.1}% (target >= {LDAP_RATIO_TARGET:.0}%: {})",
                if ratio >= LDAP_RATIO_TARGET {
                    "met"
                } else {
                    "not met"
                }
            );
        }
        _ => println!(
            "ldap overhead: not measured (a phase sent nothing: bridge creates {}, raw ldap3 adds {})",
            bridge.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}/s")),
            raw.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}/s")),
        ),
    }
}

/// An Entra-style user PATCH: `active` as a string boolean, and a new title.
fn user_patch(k: usize, active: &str) -> String {
    format!(
        r#"{{"schemas":{PATCH_SCHEMAS},"Operations":[{{"op":"Replace","path":"active","value":"{active}"}},{{"op":"Replace","path":"title","value":"Engineer {k}"}}]}}"#
    )
}

fn print_header(
    args: &BenchArgs,
    endpoint: &Endpoint,
    daemon: Option<&Daemon>,
    slapd: Option<&Directory>,
) {
    println!("scim-bridge bench {}", env!("CARGO_PKG_VERSION"));
    println!("machine: {}", machine());
    match daemon {
        Some(d) => println!(
            "daemon: started by bench (pid {}) from {} on http://{}{}, state {}",
            d.pid,
            d.source,
            endpoint.addr,
            endpoint.base_path,
            d.state_dir.display()
        ),
        None => println!("daemon: http://{}{}", endpoint.host, endpoint.base_path),
    }
    if let Some(server) = slapd {
        println!(
            "ldap: throw-away {} (pid {}) on {}, base {}, in {} (as the tests start it)",
            server.name(),
            server
                .pid()
                .map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
            server.url(),
            server.base(),
            server.dir().display()
        );
    }
    println!(
        "options: --users {} --groups {} --members-per-batch {} --concurrency {} --max-seconds {}{}{}",
        args.users,
        args.groups,
        args.members_per_batch,
        args.concurrency,
        args.max_seconds,
        args.steady_rps
            .map(|r| format!(" --steady-rps {r}"))
            .unwrap_or_default(),
        if args.ldap { " --ldap" } else { "" }
    );
}

/// "2 cores (model), 23.5 GiB memory, Linux 6.1.0".
pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "cpu model unknown".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| proc_kib(&t, "MemTotal:"))
        .map_or_else(
            || "memory unknown".to_owned(),
            |kib| format!("{:.1} GiB memory", kib as f64 / (1024.0 * 1024.0)),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!(", Linux {}", s.trim()))
        .unwrap_or_default();
    format!("{cores} cores ({model}), {memory}{kernel}")
}

/// The `kB` value of a `/proc/*/status` or `/proc/meminfo` line, e.g. `VmRSS:`.
pub(crate) fn proc_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

pub(crate) fn mib(kib: Option<u64>) -> String {
    match kib {
        Some(k) if k > 0 => format!("{:.1} MiB", k as f64 / 1024.0),
        _ => "unknown".to_owned(),
    }
}

/// `http://host:port/base/path` (a query, e.g. Entra's feature flags, is ignored).
fn parse_url(url: &str, token: String) -> anyhow::Result<Endpoint> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("--url {url}: only http:// is supported (start the daemon without server.tls)")
    })?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("--url {url}: cannot resolve {host}"))?
        .next()
        .with_context(|| format!("--url {url}: {host} has no address"))?;
    Ok(Endpoint {
        addr,
        host: host.to_owned(),
        base_path: path.trim_end_matches('/').to_owned(),
        token,
    })
}

/// `a@b.c` as a form-encoded query value (Entra's wire form).
pub(crate) fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The top-level `id` of a JSON resource.
pub(crate) fn resource_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithId {
        id: String,
    }
    serde_json::from_slice::<WithId>(body).ok().map(|r| r.id)
}

/// A ListResponse's `totalResults`.
pub(crate) fn total_results(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct List {
        #[serde(rename = "totalResults")]
        total_results: u64,
    }
    serde_json::from_slice::<List>(body)
        .ok()
        .map(|l| l.total_results)
}

pub(crate) fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    let mut hex = String::with_capacity(2 * bytes);
    for b in buf {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

// ---------------------------------------------------------------------------------------
// The started daemon

/// A daemon this command started, and what it left on disk.
pub(crate) struct Daemon {
    child: Option<Child>,
    pub(crate) pid: u32,
    /// Where the configuration came from, for the header.
    source: String,
    /// The configuration the daemon runs (`auth` and `rate_limit` replaced).
    pub(crate) text: String,
    /// The bearer token made up for the run (the daemon reads it from [`TOKEN_VAR`]).
    pub(crate) token: String,
    pub(crate) state_dir: PathBuf,
    /// The temporary directory (config copy, daemon log, default state directory).
    pub(crate) temp: PathBuf,
    pub(crate) log: PathBuf,
    /// The configuration copy the daemon is started with (in `temp`).
    config_copy: PathBuf,
    /// Highest VmRSS seen so far, KiB (over every start).
    pub(crate) peak_rss: Arc<AtomicU64>,
    stop_sampler: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

/// The process environment, plus the made-up token.
pub(crate) struct BenchEnv<'a>(pub(crate) &'a str);

impl Environment for BenchEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        if name == TOKEN_VAR {
            Some(self.0.to_owned())
        } else {
            ProcessEnv.var(name)
        }
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        ProcessEnv.read_file(path)
    }
}

impl Daemon {
    /// Starts `serve` from the configuration `text` (from `source`, for messages) with
    /// `auth` and `rate_limit` replaced, on a free loopback port.
    pub(crate) fn start(
        text: &str,
        source: String,
        state_dir: Option<&Path>,
    ) -> anyhow::Result<(Daemon, Endpoint)> {
        let token = random_hex(32).context("while reading random bytes from the system")?;
        let text = bench_config(text);
        let described = format!("{source} (auth and rate_limit replaced by bench)");
        let cfg = config::parse(&text, &described, &BenchEnv(&token))
            .map_err(|e| anyhow::anyhow!("the configuration is not usable\n{e}"))?;
        if cfg.server.tls.is_some() {
            anyhow::bail!(
                "{source}: server.tls is set, and bench speaks plain HTTP; remove it, or start \
                 the daemon yourself without TLS and use --url",
            );
        }

        let temp = std::env::temp_dir().join(format!(
            "scim-bridge-bench-{}-{}",
            std::process::id(),
            random_hex(4).context("while reading random bytes from the system")?
        ));
        std::fs::create_dir_all(&temp)
            .with_context(|| format!("cannot create {}", temp.display()))?;
        let copy = temp.join("bench-config.yaml");
        std::fs::write(&copy, &text).with_context(|| format!("cannot write {}", copy.display()))?;
        let state = state_dir.map_or_else(|| temp.join("state"), Path::to_path_buf);
        let log = temp.join("daemon.log");
        let mut daemon = Daemon {
            child: None,
            pid: 0,
            source,
            text,
            token: token.clone(),
            state_dir: state,
            temp,
            log,
            config_copy: copy,
            peak_rss: Arc::new(AtomicU64::new(0)),
            stop_sampler: Arc::new(AtomicBool::new(false)),
            sampler: None,
        };
        let addr = daemon.spawn(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let endpoint = Endpoint {
            addr,
            host: addr.to_string(),
            base_path: cfg.server.base_path.clone(),
            token,
        };
        Ok((daemon, endpoint))
    }

    /// Spawns `serve` on `listen` with the daemon's configuration copy and state
    /// directory (its stderr appended to the log), starts sampling its memory, and waits
    /// for its `listening on ADDR` line: that address.
    fn spawn(&mut self, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot create {}", self.log.display()))?;
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let mut child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_copy)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env(TOKEN_VAR, &self.token)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        let pid = child.id();
        self.pid = pid;

        let stop_sampler = Arc::new(AtomicBool::new(false));
        self.stop_sampler = stop_sampler.clone();
        self.sampler = Some({
            let peak = self.peak_rss.clone();
            let stop = stop_sampler;
            std::thread::spawn(move || {
                let status = format!("/proc/{pid}/status");
                while !stop.load(Ordering::Relaxed) {
                    match std::fs::read_to_string(&status) {
                        Ok(t) => {
                            if let Some(kib) = proc_kib(&t, "VmRSS:") {
                                peak.fetch_max(kib, Ordering::Relaxed);
                            }
                        }
                        Err(_) => break,
                    }
                    std::thread::sleep(RSS_INTERVAL);
                }
            })
        });

        let Some(stdout) = child.stdout.take() else {
            self.child = Some(child);
            self.stop();
            anyhow::bail!("the daemon's stdout is not available");
        };
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Reads (and drops) the daemon's stdout for its whole life, so it never blocks.
            let reader = BufReader::new(stdout);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(addr) = line
                        .trim()
                        .strip_prefix("listening on ")
                        .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                    {
                        return Ok(addr);
                    }
                }
                Err(e) => {
                    self.stop();
                    let tail = log_tail(&self.log);
                    let why = match e {
                        mpsc::RecvTimeoutError::Timeout => format!(
                            "did not print `listening on ADDR` within {}s",
                            STARTUP_TIMEOUT.as_secs()
                        ),
                        mpsc::RecvTimeoutError::Disconnected => {
                            "exited before printing `listening on ADDR`".to_owned()
                        }
                    };
                    anyhow::bail!(
                        "the daemon {why}; its log ({}):\n{tail}",
                        self.log.display()
                    );
                }
            }
        }
    }

    /// Kills the daemon with SIGKILL (no shutdown of any kind: a crash) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stop_sampler.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
    }

    /// Starts the daemon again after [`Daemon::kill`] or [`Daemon::stop`], with the same
    /// configuration, token and state directory, on `listen` (its old address, so clients
    /// keep their endpoint); waits until it listens.
    pub(crate) fn start_again(&mut self, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
        if self.child.is_some() {
            anyhow::bail!("the daemon (pid {}) is still running", self.pid);
        }
        self.spawn(listen)
    }

    /// Stops the daemon (SIGTERM, up to 20 s, then SIGKILL); its VmHWM, KiB, read just
    /// before.
    pub(crate) fn stop(&mut self) -> Option<u64> {
        let hwm = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|t| proc_kib(&t, "VmHWM:"));
        self.stop_sampler.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        hwm
    }

    /// Removes the temporary directory, or keeps it (and says where) when something
    /// failed, for its daemon log.
    pub(crate) fn cleanup(&self, ok: bool) {
        if ok {
            let _ = std::fs::remove_dir_all(&self.temp);
        } else {
            println!("daemon log kept: {}", self.log.display());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last lines of the daemon's log.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The configuration text with the top-level `auth` and `rate_limit` sections replaced:
/// one static token from [`TOKEN_VAR`], no rate limits.
fn bench_config(text: &str) -> String {
    replace_sections(
        text,
        &["auth", "rate_limit"],
        &format!(
            "auth:\n  tokens:\n    - name: bench\n      secret:\n        env: {TOKEN_VAR}\n\
             rate_limit:\n  per_token:\n    per_second: 0\n  per_client:\n    per_second: 0\n"
        ),
    )
}

/// The configuration text without its top-level sections named in `names` (each with
/// everything indented under it), and `replacement` (whole top-level sections) appended.
pub(crate) fn replace_sections(text: &str, names: &[&str], replacement: &str) -> String {
    let mut out = String::with_capacity(text.len() + replacement.len() + 1);
    let mut skipping = false;
    for line in text.lines() {
        let top_level = !line.is_empty() && !line.starts_with([' ', '\t', '#']);
        if top_level {
            let key = line.split(':').next().unwrap_or_default().trim();
            skipping = names.contains(&key);
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(replacement);
    if !replacement.ends_with('\n') {
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// The client

/// One request to send.
pub(crate) struct Req {
    pub(crate) method: &'static str,
    /// Relative to the base path: `/Users?…`.
    pub(crate) path: String,
    pub(crate) body: Option<String>,
}

impl Req {
    pub(crate) fn get(path: String) -> Req {
        Req {
            method: "GET",
            path,
            body: None,
        }
    }
    pub(crate) fn delete(path: String) -> Req {
        Req {
            method: "DELETE",
            path,
            body: None,
        }
    }
    pub(crate) fn post(path: String, body: String) -> Req {
        Req {
            method: "POST",
            path,
            body: Some(body),
        }
    }
    pub(crate) fn patch(path: String, body: String) -> Req {
        Req {
            method: "PATCH",
            path,
            body: Some(body),
        }
    }
    pub(crate) fn put(path: String, body: String) -> Req {
        Req {
            method: "PUT",
            path,
            body: Some(body),
        }
    }
}

/// One keep-alive connection, opened on first use and again after a failure.
pub(crate) struct Conn {
    endpoint: Arc<Endpoint>,
    stream: Option<BufReader<TcpStream>>,
    out: Vec<u8>,
    /// The last response's body.
    pub(crate) body: Vec<u8>,
}

/// Why a request got no HTTP response.
pub(crate) enum SendError {
    /// Nothing came back on a reused connection (the server closed it while idle): safe to
    /// send again on a new one.
    Stale(String),
    Failed(String),
}

impl Conn {
    pub(crate) fn new(endpoint: Arc<Endpoint>) -> Conn {
        Conn {
            endpoint,
            stream: None,
            out: Vec::with_capacity(4096),
            body: Vec::with_capacity(64 * 1024),
        }
    }

    /// Sends `req` and reads the response: its status; its body is in `self.body`.
    pub(crate) fn send(&mut self, req: &Req) -> Result<u16, String> {
        match self.try_send(req) {
            Err(SendError::Stale(_)) => match self.try_send(req) {
                Ok(status) => Ok(status),
                Err(SendError::Stale(e) | SendError::Failed(e)) => Err(e),
            },
            Err(SendError::Failed(e)) => Err(e),
            Ok(status) => Ok(status),
        }
    }

    /// Sends `req` once (see [`SendError`]); [`Conn::send`] retries a stale connection.
    pub(crate) fn try_send(&mut self, req: &Req) -> Result<u16, SendError> {
        let reused = self.stream.is_some();
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => BufReader::with_capacity(
                64 * 1024,
                connect(self.endpoint.addr).map_err(SendError::Failed)?,
            ),
        };
        self.out.clear();
        let e = &self.endpoint;
        let _ = write!(
            self.out,
            "{} {}{} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/scim+json\r\n",
            req.method, e.base_path, req.path, e.host, e.token
        );
        if let Some(body) = &req.body {
            let _ = write!(
                self.out,
                "Content-Type: application/scim+json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            self.out.extend_from_slice(body.as_bytes());
        } else {
            self.out.extend_from_slice(b"\r\n");
        }
        if let Err(err) = stream.get_mut().write_all(&self.out) {
            return Err(if reused {
                SendError::Stale(err.to_string())
            } else {
                SendError::Failed(err.to_string())
            });
        }
        match read_response(&mut stream, &mut self.body) {
            Ok((status, keep_alive)) => {
                if keep_alive {
                    self.stream = Some(stream);
                }
                Ok(status)
            }
            Err((nothing_read, err)) if reused && nothing_read => Err(SendError::Stale(err)),
            Err((_, err)) => Err(SendError::Failed(err)),
        }
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    Ok(stream)
}

/// Reads one response into `body`: `(status, keep-alive)`, or `(nothing was read, why)`.
fn read_response(
    stream: &mut BufReader<TcpStream>,
    body: &mut Vec<u8>,
) -> Result<(u16, bool), (bool, String)> {
    body.clear();
    let mut line = String::new();
    match stream.read_line(&mut line) {
        Ok(0) => return Err((true, "connection closed before a response".to_owned())),
        Ok(_) => {}
        Err(e) => return Err((true, format!("reading the status line: {e}"))),
    }
    let fail = |why: String| Err((false, why));
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
        return fail(format!("malformed status line {:?}", line.trim_end()));
    };
    if !version.starts_with("HTTP/1.") {
        return fail(format!("malformed status line {:?}", line.trim_end()));
    }
    let mut keep_alive = version == "HTTP/1.1";
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        match stream.read_line(&mut line) {
            Ok(0) => return fail("connection closed in the headers".to_owned()),
            Ok(_) => {}
            Err(e) => return fail(format!("reading the headers: {e}")),
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return fail(format!("malformed header {header:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) if n <= MAX_BODY => length = Some(n),
                _ => return fail(format!("bad Content-Length {value:?}")),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if chunked {
        loop {
            line.clear();
            if let Err(e) = stream.read_line(&mut line) {
                return fail(format!("reading a chunk size: {e}"));
            }
            let size_text = line.trim().split(';').next().unwrap_or_default();
            let Ok(size) = usize::from_str_radix(size_text, 16) else {
                return fail(format!("bad chunk size {:?}", line.trim()));
            };
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    match stream.read_line(&mut line) {
                        Ok(0) => return fail("connection closed in the trailers".to_owned()),
                        Ok(_) if line.trim().is_empty() => return Ok((status, keep_alive)),
                        Ok(_) => {}
                        Err(e) => return fail(format!("reading the trailers: {e}")),
                    }
                }
            }
            if body.len() + size > MAX_BODY {
                return fail("response body too large".to_owned());
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            if let Err(e) = stream.read_exact(&mut body[start..]) {
                return fail(format!("reading a chunk: {e}"));
            }
            body.truncate(start + size);
        }
    }
    match length {
        Some(n) => {
            body.resize(n, 0);
            if let Err(e) = stream.read_exact(body) {
                return fail(format!("reading the body: {e}"));
            }
        }
        None if status == 204 || status == 304 || (100..200).contains(&status) => {}
        None => {
            // Delimited by the end of the connection.
            if let Err(e) = stream.take(MAX_BODY as u64).read_to_end(body) {
                return fail(format!("reading the body: {e}"));
            }
            keep_alive = false;
        }
    }
    Ok((status, keep_alive))
}

// ---------------------------------------------------------------------------------------
// Phases

struct Bench {
    conns: Vec<Conn>,
    deadline: Instant,
    max_seconds: u64,
    rss: Option<Arc<AtomicU64>>,
    ok: bool,
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    /// Microseconds per request answered (any status).
    latencies: Vec<u32>,
    errors: BTreeMap<String, usize>,
    skipped: usize,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.skipped += other.skipped;
    }

    /// Adds `entry` with ldap3 and records the outcome like [`Tally::send`]: an answer
    /// other than success counts as an error under its result code.
    fn ldap_add(&mut self, conn: &mut LdapConn, entry: &RawEntry) {
        let attrs: Vec<(&str, HashSet<&str>)> = entry
            .attrs
            .iter()
            .map(|(name, values)| (name.as_str(), values.iter().map(String::as_str).collect()))
            .collect();
        let start = Instant::now();
        let result = conn.with_timeout(IO_TIMEOUT).add(&entry.dn, attrs);
        let micros = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
        match result {
            Ok(answer) => {
                self.latencies.push(micros);
                if answer.rc != 0 {
                    *self.errors.entry(format!("rc {}", answer.rc)).or_default() += 1;
                }
            }
            Err(_) => *self.errors.entry("io".to_owned()).or_default() += 1,
        }
    }

    /// Sends `req` and records the outcome; `check` judges a 2xx body.
    fn send(
        &mut self,
        conn: &mut Conn,
        req: &Req,
        check: impl FnOnce(&[u8]) -> Result<(), &'static str>,
    ) {
        let start = Instant::now();
        let result = conn.send(req);
        let micros = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
        match result {
            Ok(status) => {
                self.latencies.push(micros);
                if !(200..300).contains(&status) {
                    *self.errors.entry(status.to_string()).or_default() += 1;
                } else if let Err(why) = check(&conn.body) {
                    *self.errors.entry(why.to_owned()).or_default() += 1;
                }
            }
            Err(_) => *self.errors.entry("io".to_owned()).or_default() += 1,
        }
    }
}

/// One phase's result line.
struct Phase {
    name: &'static str,
    planned: usize,
    started: Instant,
    elapsed: Duration,
    tally: Tally,
    /// Stopped by `--max-seconds` with requests left.
    timed_out: bool,
}

impl Phase {
    fn header() -> String {
        format!(
            "{:<15} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9}  errors",
            "phase", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "rss MiB"
        )
    }

    fn errors(&self) -> usize {
        self.tally.errors.values().sum()
    }

    /// Requests answered or failed on the connection.
    fn requests(&self) -> usize {
        self.tally.latencies.len() + self.tally.errors.get("io").copied().unwrap_or(0)
    }

    /// Requests per second; `None` when nothing was sent.
    fn rate(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        let requests = self.requests();
        (secs > 0.0 && requests > 0).then(|| requests as f64 / secs)
    }

    fn line(&self, rss: Option<u64>) -> String {
        let mut lat = self.tally.latencies.clone();
        lat.sort_unstable();
        let pct = |q: f64| percentile_ms(&lat, q);
        let requests = self.requests();
        let rate = self
            .rate()
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"));
        let errors = self.errors();
        let mut err_text = errors.to_string();
        if errors > 0 {
            let detail: Vec<String> = self
                .tally
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = write!(err_text, " ({})", detail.join(", "));
        }
        let rss = rss.map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
        format!(
            "{:<15} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9}  {}",
            self.name,
            requests,
            rate,
            pct(0.50),
            pct(0.99),
            pct(1.0),
            rss,
            err_text
        )
    }
}

/// The `q` quantile (0.5, 0.99, 1.0 for the maximum) of `sorted` latencies in
/// microseconds, as milliseconds with two decimals (nearest rank); `-` when empty.
pub(crate) fn percentile_ms(sorted: &[u32], q: f64) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    format!("{:.2}", f64::from(sorted[rank - 1]) / 1000.0)
}

/// Runs `job(worker, i, tally)` for `i` in `0..n` on every worker at once (a thread
/// each), each taking the next `i` as soon as its previous one is done, until all are
/// done or `deadline` passes: the merged tally, and whether the deadline stopped it with
/// work left. The one loop behind every closed-loop phase, HTTP or raw LDAP.
fn drive<W, J>(workers: &mut [W], n: usize, deadline: Instant, job: J) -> (Tally, bool)
where
    W: Send,
    J: Fn(&mut W, usize, &mut Tally) + Sync,
{
    let next = AtomicUsize::new(0);
    let timed_out = AtomicBool::new(false);
    let tally = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|worker| {
                let (next, timed_out, job) = (&next, &timed_out, &job);
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    loop {
                        if Instant::now() >= deadline {
                            if next.load(Ordering::Relaxed) < n {
                                timed_out.store(true, Ordering::Relaxed);
                            }
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        job(worker, i, &mut tally);
                    }
                    tally
                })
            })
            .collect();
        let mut all = Tally::default();
        for h in handles {
            match h.join() {
                Ok(t) => all.merge(t),
                Err(_) => {
                    *all.errors.entry("client panic".to_owned()).or_default() += 1;
                }
            }
        }
        all
    });
    (tally, timed_out.load(Ordering::Relaxed))
}

impl Bench {
    /// Sends `make(i)` for `i` in `0..n` from every connection at once, as fast as the
    /// daemon answers, until done or the deadline; `make` returning `None` skips `i` (its
    /// resource was not created). `check(i, body)` judges a 2xx response. Returns the
    /// phase's rate (requests/s, as printed), `None` if nothing was sent.
    fn phase<M, C>(&mut self, name: &'static str, n: usize, make: M, check: C) -> Option<f64>
    where
        M: Fn(usize) -> Option<Req> + Sync,
        C: Fn(usize, &[u8]) -> Result<(), &'static str> + Sync,
    {
        let started = Instant::now();
        let (tally, timed_out) =
            drive(
                &mut self.conns,
                n,
                self.deadline,
                |conn, i, tally| match make(i) {
                    Some(req) => tally.send(conn, &req, |body| check(i, body)),
                    None => tally.skipped += 1,
                },
            );
        self.report(
            Phase {
                name,
                planned: n,
                started,
                elapsed: started.elapsed(),
                tally,
                timed_out,
            },
            true,
        )
    }

    /// Sends `make(k)` at `rps` requests per second (open loop: request `k` is due at
    /// `k / rps` s) for [`STEADY_DURATION`] or until the deadline.
    fn steady<M>(&mut self, rps: u32, make: M)
    where
        M: Fn(usize) -> Option<Req> + Sync,
    {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let duration = STEADY_DURATION.min(remaining);
        let n = (duration.as_secs_f64() * f64::from(rps)) as usize;
        let planned = (STEADY_DURATION.as_secs_f64() * f64::from(rps)) as usize;
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / f64::from(rps));
        let tally = std::thread::scope(|scope| {
            let workers: Vec<_> = self
                .conns
                .iter_mut()
                .map(|conn| {
                    let (next, make) = (&next, &make);
                    scope.spawn(move || {
                        let mut tally = Tally::default();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            if k >= n {
                                break;
                            }
                            let due = started + interval.mul_f64(k as f64);
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                            match make(k) {
                                Some(req) => tally.send(conn, &req, |_| Ok(())),
                                None => tally.skipped += 1,
                            }
                        }
                        tally
                    })
                })
                .collect();
            let mut all = Tally::default();
            for w in workers {
                match w.join() {
                    Ok(t) => all.merge(t),
                    Err(_) => {
                        *all.errors.entry("client panic".to_owned()).or_default() += 1;
                    }
                }
            }
            all
        });
        let name: &'static str = "steady rate";
        self.report(
            Phase {
                name,
                planned,
                started,
                elapsed: started.elapsed(),
                tally,
                timed_out: n < planned,
            },
            true,
        );
        println!(
            "  steady rate: {rps} requests/s offered for {:.1} s (GET by filter and PATCH alternately); p99 above",
            duration.as_secs_f64()
        );
    }

    /// Prints the phase's line (with the daemon's peak RSS when `daemon_rss`: a phase the
    /// daemon served) and its notes; returns its rate.
    fn report(&mut self, phase: Phase, daemon_rss: bool) -> Option<f64> {
        let rss = self
            .rss
            .as_ref()
            .filter(|_| daemon_rss)
            .map(|r| r.load(Ordering::Relaxed))
            .filter(|&k| k > 0);
        println!("{}", phase.line(rss));
        if phase.errors() > 0 {
            self.ok = false;
        }
        if phase.tally.skipped > 0 {
            println!(
                "  {} of {} skipped: their resource was not created",
                phase.tally.skipped, phase.planned
            );
        }
        if phase.timed_out {
            println!(
                "  stopped: --max-seconds {} reached {:.1} s into this phase, after {} of {} requests",
                self.max_seconds,
                phase.started.elapsed().as_secs_f64(),
                phase.requests(),
                phase.planned
            );
        }
        phase.rate()
    }
}

// ---------------------------------------------------------------------------------------
// The LDAP target (--ldap)

/// The directory `--ldap` starts (`--directory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DirectoryKind {
    /// OpenLDAP's slapd, examples/ldap-openldap.yaml.
    Openldap,
    /// 389 Directory Server, examples/ldap-389ds.yaml.
    #[value(name = "389ds")]
    Ds389,
    /// A Samba AD DC, examples/ldap-ad.yaml.
    Ad,
}

/// A throw-away directory server, started as the tests start it.
pub(crate) enum Directory {
    OpenLdap(Slapd),
    Ds389(scim_bridge::dirsrv::DirSrv),
    Ad(scim_bridge::samba::SambaDc),
}

/// The AD example, whose mapping the bench gives the daemon for `--directory ad`.
const AD_EXAMPLE: &str = include_str!("../examples/ldap-ad.yaml");

/// What the raw phase copies of the bridge's AD users (the mapped attributes).
const AD_RAW_ATTRIBUTES: &[&str] = &[
    "objectClass",
    "cn",
    "sAMAccountName",
    "userPrincipalName",
    "givenName",
    "sn",
    "displayName",
    "mail",
    "title",
    "department",
    "employeeNumber",
];

/// An AD value the raw phase adds again, made unique where AD wants it unique: the
/// logon name's first character becomes `r` (same length), the UPN gets a `raw.` prefix.
fn ad_unique_again(attribute: &str, value: String) -> String {
    if attribute.eq_ignore_ascii_case("sAMAccountName") {
        let rest: String = value.chars().skip(1).collect();
        format!("r{rest}")
    } else if attribute.eq_ignore_ascii_case("userPrincipalName") {
        format!("raw.{value}")
    } else {
        value
    }
}

impl Directory {
    fn start(kind: DirectoryKind) -> anyhow::Result<Directory> {
        Ok(match kind {
            DirectoryKind::Openldap => Directory::OpenLdap(
                Slapd::start().context("--ldap: while starting a throw-away slapd")?,
            ),
            DirectoryKind::Ds389 => Directory::Ds389(
                scim_bridge::dirsrv::DirSrv::start()
                    .context("--ldap: while starting a throw-away 389-DS")?,
            ),
            DirectoryKind::Ad => Directory::Ad(
                scim_bridge::samba::SambaDc::start()
                    .context("--ldap: while starting a throw-away Samba AD DC")?,
            ),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Directory::OpenLdap(_) => "slapd",
            Directory::Ds389(_) => "389-DS",
            Directory::Ad(_) => "Samba AD DC",
        }
    }

    /// The example configuration whose target and mapping the daemon gets.
    fn example(&self) -> &'static str {
        match self {
            Directory::OpenLdap(_) => "examples/ldap-openldap.yaml",
            Directory::Ds389(_) => "examples/ldap-389ds.yaml",
            Directory::Ad(_) => "examples/ldap-ad.yaml",
        }
    }

    fn is_ad(&self) -> bool {
        matches!(self, Directory::Ad(_))
    }

    fn url(&self) -> &str {
        match self {
            Directory::OpenLdap(s) => &s.url,
            Directory::Ds389(s) => &s.url,
            Directory::Ad(s) => &s.url,
        }
    }

    fn base(&self) -> &str {
        match self {
            Directory::OpenLdap(s) => &s.base,
            Directory::Ds389(s) => &s.base,
            Directory::Ad(s) => &s.base,
        }
    }

    fn admin_dn(&self) -> &str {
        match self {
            Directory::OpenLdap(s) => &s.admin_dn,
            Directory::Ds389(s) => &s.admin_dn,
            Directory::Ad(s) => &s.admin_dn,
        }
    }

    fn admin_password(&self) -> &str {
        match self {
            Directory::OpenLdap(s) => &s.admin_password,
            Directory::Ds389(s) => &s.admin_password,
            Directory::Ad(s) => &s.admin_password,
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Directory::OpenLdap(s) => s.pid(),
            Directory::Ds389(s) => s.pid(),
            Directory::Ad(s) => s.pid(),
        }
    }

    fn dir(&self) -> &Path {
        match self {
            Directory::OpenLdap(s) => s.dir(),
            Directory::Ds389(s) => s.dir(),
            Directory::Ad(s) => s.dir(),
        }
    }

    /// Where the example mappings put users.
    fn people_dn(&self) -> String {
        match self {
            Directory::Ad(s) => format!("OU=people,{}", s.base),
            other => format!("ou=people,{}", other.base()),
        }
    }

    /// The example's target and mapping, pointed at this server.
    fn target_yaml(&self) -> String {
        match self {
            Directory::OpenLdap(s) => s.example_target_yaml(),
            Directory::Ds389(s) => s.example_target_yaml(),
            Directory::Ad(s) => {
                let mapping = AD_EXAMPLE
                    .find("\nmapping:")
                    .map_or("", |at| &AD_EXAMPLE[at + 1..]);
                format!("{}{mapping}", s.target_yaml())
            }
        }
    }
}

/// One entry of the `raw ldap3 add` phase.
struct RawEntry {
    dn: String,
    attrs: Vec<(String, HashSet<String>)>,
}

impl Bench {
    /// The `raw ldap3 add` phase: the user entries the bridge wrote under `ou=people` are
    /// read back (untimed) and added again under `ou=raw` with the same object classes and
    /// attributes, by as many ldap3 connections as HTTP ones, each bound once before the
    /// clock starts. Returns its rate; `None` (and the run marked failed) when it could not
    /// be set up.
    fn raw_ldap_add(&mut self, slapd: &Directory) -> Option<f64> {
        let raw_dn = format!("ou={RAW_OU},{}", slapd.base());
        let setup = || -> anyhow::Result<(Vec<RawEntry>, Vec<LdapConn>)> {
            let mut conn = ldap_bind(slapd)?;
            conn.with_timeout(IO_TIMEOUT)
                .add(
                    &raw_dn,
                    vec![
                        ("objectClass", HashSet::from(["organizationalUnit"])),
                        ("ou", HashSet::from([RAW_OU])),
                    ],
                )
                .and_then(|r| r.success())
                .with_context(|| format!("{}: cannot add {raw_dn}", slapd.url()))?;
            let entries = bridge_entries(&mut conn, slapd, &slapd.people_dn(), &raw_dn)?;
            let mut conns = vec![conn];
            while conns.len() < self.conns.len() {
                conns.push(ldap_bind(slapd)?);
            }
            Ok((entries, conns))
        };
        let (entries, mut conns) = match setup() {
            Ok(setup) => setup,
            Err(e) => {
                println!("raw ldap3 add: could not be set up: {e:#}");
                self.ok = false;
                return None;
            }
        };
        let started = Instant::now();
        let (tally, timed_out) = drive(&mut conns, entries.len(), self.deadline, |conn, i, t| {
            t.ldap_add(conn, &entries[i]);
        });
        let rate = self.report(
            Phase {
                name: "raw ldap3 add",
                planned: entries.len(),
                started,
                elapsed: started.elapsed(),
                tally,
                timed_out,
            },
            false,
        );
        println!(
            "  raw ldap3 add: the {} entries the bridge wrote, added again under {raw_dn} by ldap3 ({} connections, each bound once)",
            entries.len(),
            conns.len()
        );
        for mut conn in conns {
            let _ = conn.unbind();
        }
        rate
    }
}

/// An ldap3 connection to `slapd`, bound as its admin (connect and bind timeouts set).
fn ldap_bind(slapd: &Directory) -> anyhow::Result<LdapConn> {
    let settings = LdapConnSettings::new().set_conn_timeout(IO_TIMEOUT);
    let mut conn = LdapConn::with_settings(settings, slapd.url())
        .with_context(|| format!("cannot connect to {}", slapd.url()))?;
    conn.with_timeout(IO_TIMEOUT)
        .simple_bind(slapd.admin_dn(), slapd.admin_password())
        .and_then(|r| r.success())
        .with_context(|| format!("{}: bind as {} failed", slapd.url(), slapd.admin_dn()))?;
    Ok(conn)
}

/// The entries directly under `parent`, renamed to be under `under` (same RDN), with all
/// their user attributes (object classes included) as the directory holds them.
fn bridge_entries(
    conn: &mut LdapConn,
    slapd: &Directory,
    parent: &str,
    under: &str,
) -> anyhow::Result<Vec<RawEntry>> {
    // AD answers `*` with attributes only the server may write (objectGUID, objectSid,
    // whenCreated …): the mapped ones only, with the unique ones made unique again.
    let attrs = if slapd.is_ad() {
        AD_RAW_ATTRIBUTES.to_vec()
    } else {
        vec!["*"]
    };
    let (entries, _) = conn
        .with_timeout(SEARCH_TIMEOUT)
        .search(parent, Scope::OneLevel, "(objectClass=*)", attrs)
        .and_then(|r| r.success())
        .with_context(|| format!("{}: cannot read the entries under {parent}", slapd.url()))?;
    let ad = slapd.is_ad();
    scim_bridge::target::ldap::entries_only(entries)
        .into_iter()
        .map(|entry| {
            let rdn = rdn_under(&entry.dn, parent).with_context(|| {
                format!(
                    "{}: {} is not directly under {parent}",
                    slapd.url(),
                    entry.dn
                )
            })?;
            if !entry.bin_attrs.is_empty() {
                anyhow::bail!(
                    "{}: {} has binary attributes, which the raw phase does not copy",
                    slapd.url(),
                    entry.dn
                );
            }
            Ok(RawEntry {
                dn: format!("{rdn},{under}"),
                attrs: entry
                    .attrs
                    .into_iter()
                    .map(|(name, values)| {
                        let values = values
                            .into_iter()
                            .map(|v| if ad { ad_unique_again(&name, v) } else { v })
                            .collect();
                        (name, values)
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The RDN of `dn` when it is directly under `parent` (compared ignoring ASCII case, as
/// the DNs here are written by one program and differ in case at most).
fn rdn_under<'a>(dn: &'a str, parent: &str) -> Option<&'a str> {
    let cut = dn.len().checked_sub(parent.len() + 1)?;
    let (rdn, rest) = (dn.get(..cut)?, dn.get(cut..)?);
    let tail = rest.strip_prefix(',')?;
    (tail.eq_ignore_ascii_case(parent) && !rdn.is_empty() && !rdn.ends_with('\\')).then_some(rdn)
}

/// The DNs (lower-cased) of every entry of `slapd`'s suffix, but those under `skip`.
fn directory_dns(slapd: &Directory, skip: Option<&str>) -> anyhow::Result<BTreeSet<String>> {
    let mut conn = ldap_bind(slapd)?;
    let (entries, _) = conn
        .with_timeout(SEARCH_TIMEOUT)
        .search(slapd.base(), Scope::Subtree, "(objectClass=*)", vec!["1.1"])
        .and_then(|r| r.success())
        .with_context(|| {
            format!(
                "{}: cannot list the entries of {}",
                slapd.url(),
                slapd.base()
            )
        })?;
    let _ = conn.unbind();
    let skip = skip.map(str::to_ascii_lowercase);
    Ok(scim_bridge::target::ldap::entries_only(entries)
        .into_iter()
        .map(|e| e.dn.to_ascii_lowercase())
        .filter(|dn| {
            skip.as_deref()
                .is_none_or(|s| dn != s && !dn.ends_with(&format!(",{s}")))
        })
        .collect())
}

/// Replays the stopped daemon's whole journal into a second fresh slapd through the code
/// path of `journal replay --into target` (the records read with `ops::db_records`,
/// converged by `ops::replay_target` into the target the bench configuration describes,
/// with its own links file), prints the rate, and compares the replayed directory with the
/// bench's (`ou=raw` left out). `Ok(false)`: records were refused or the two differ.
fn replay_journal(
    d: &Daemon,
    bench_slapd: &Directory,
    kind: DirectoryKind,
) -> anyhow::Result<bool> {
    if kind == DirectoryKind::Ad {
        println!(
            "journal replay into a second directory: skipped (a Samba AD DC's ports are fixed: one per machine)"
        );
        return Ok(true);
    }
    let slapd = Directory::start(kind).context("while starting a second throw-away directory")?;
    let text = replace_sections(&d.text, &["target", "mapping"], &slapd.target_yaml());
    let mut cfg = config::parse(
        &text,
        "the bench configuration with its target on the replay slapd",
        &BenchEnv(&d.token),
    )
    .map_err(|e| anyhow::anyhow!("the replay configuration is not usable\n{e}"))?;
    let state = d.temp.join("replay-state");
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create {}", state.display()))?;
    cfg.set_state_dir(state);
    let target_cfg = cfg
        .target
        .as_ref()
        .context("the replay configuration has no target")?;

    let read_started = Instant::now();
    let store = Store::open(&d.state_dir).with_context(|| {
        format!(
            "while opening the daemon's state store in {}",
            d.state_dir.display()
        )
    })?;
    let records = ops::db_records(&store, None, None).map_err(|e| {
        anyhow::anyhow!(
            "while reading the journal in {}: {e}",
            d.state_dir.display()
        )
    })?;
    drop(store);
    let read = read_started.elapsed();
    let target = scim_bridge::target::open(target_cfg)
        .with_context(|| format!("while opening the target ({})", target_cfg.describe()))?;

    let started = Instant::now();
    let summary = ops::replay_target(
        records.into_iter().map(Ok),
        &target_cfg.mapping,
        target.as_ref(),
        false,
        |_| {},
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "journal replay into a second directory: {} records in {secs:.2} s ({} records/s): {} applied, {} rejected, {} skipped (rejected at delivery); journal read in {:.2} s; into a fresh {} on {}",
        summary.records,
        if secs > 0.0 {
            format!("{:.0}", summary.records as f64 / secs)
        } else {
            "-".to_owned()
        },
        summary.applied,
        summary.rejected.len(),
        summary.skipped_rejected,
        read.as_secs_f64(),
        slapd.name(),
        slapd.url()
    );
    for (seq, detail) in summary.rejected.iter().take(5) {
        println!("  record {seq}: rejected by the target: {detail}");
    }

    let raw_dn = format!("ou={RAW_OU},{}", bench_slapd.base());
    let bench_dns = directory_dns(bench_slapd, Some(&raw_dn))?;
    let replay_dns = directory_dns(&slapd, None)?;
    let same = bench_dns == replay_dns;
    if same {
        println!(
            "  the replayed directory holds the same {} entries as the bench's ({raw_dn} left out)",
            replay_dns.len()
        );
    } else {
        let only_bench: Vec<&String> = bench_dns.difference(&replay_dns).take(3).collect();
        let only_replay: Vec<&String> = replay_dns.difference(&bench_dns).take(3).collect();
        println!(
            "  the replayed directory DIFFERS from the bench's: {} entries only in the bench's (e.g. {only_bench:?}), {} only in the replayed one (e.g. {only_replay:?})",
            bench_dns.difference(&replay_dns).count(),
            replay_dns.difference(&bench_dns).count()
        );
    }
    Ok(summary.rejected.is_empty() && same)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_config_replaces_auth_and_rate_limit() {
        let text = "server:\n  listen: 127.0.0.1:8080\nauth:\n  tokens:\n    - name: entra\n      secret:\n        env: X\n# comment\nrate_limit:\n  per_token:\n    per_second: 5\nlog:\n  level: info\n";
        let out = bench_config(text);
        assert!(out.starts_with("server:\n  listen: 127.0.0.1:8080\nlog:\n  level: info\n"));
        assert_eq!(out.matches("auth:").count(), 1);
        assert!(out.contains("env: SCIM_BRIDGE_BENCH_TOKEN"));
        assert!(!out.contains("per_second: 5"));
    }

    #[test]
    fn sections_are_replaced_whole_and_the_rest_kept_in_order() {
        let text = "server:\n  listen: x\ntarget:\n  sqlite:\n    path: a.db\n# note\nmapping:\n  users:\n    table: t\nlog:\n  level: warn\n";
        let out = replace_sections(
            text,
            &["target", "mapping"],
            "target:\n  ldap: {}\nmapping: {}",
        );
        assert_eq!(
            out,
            "server:\n  listen: x\nlog:\n  level: warn\ntarget:\n  ldap: {}\nmapping: {}\n"
        );
    }

    #[test]
    fn the_rdn_of_an_entry_directly_under_a_parent_is_found() {
        let parent = "ou=people,dc=example,dc=com";
        assert_eq!(
            rdn_under("uid=a@b.c,ou=people,dc=example,dc=com", parent),
            Some("uid=a@b.c")
        );
        assert_eq!(
            rdn_under("uid=a,OU=People,dc=example,dc=com", parent),
            Some("uid=a")
        );
        assert_eq!(rdn_under("ou=people,dc=example,dc=com", parent), None);
        assert_eq!(rdn_under("uid=a,ou=groups,dc=example,dc=com", parent), None);
        assert_eq!(
            rdn_under("cn=x\\,ou=people,dc=example,dc=com", parent),
            None
        );
        assert_eq!(
            rdn_under("é,ou=people,dc=example,dc=com", parent),
            Some("é")
        );
    }

    #[test]
    fn urls_are_split_into_address_host_and_base_path() {
        let e = parse_url(
            "http://127.0.0.1:8080/scim/v2/?aadOptscim062020",
            "t".into(),
        )
        .expect("parse");
        assert_eq!(e.addr, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(e.host, "127.0.0.1:8080");
        assert_eq!(e.base_path, "/scim/v2");
        assert!(parse_url("https://127.0.0.1/scim/v2", "t".into()).is_err());
    }

    #[test]
    fn ids_and_totals_are_read_from_json() {
        assert_eq!(
            resource_id(br#"{"schemas":[],"id":"abc","meta":{"id":"x"}}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(resource_id(b"not json"), None);
        assert_eq!(
            total_results(br#"{"totalResults":1,"Resources":[]}"#),
            Some(1)
        );
        assert_eq!(form_encode("a_b@c.d"), "a_b%40c.d");
    }
}
