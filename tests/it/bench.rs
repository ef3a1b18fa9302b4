//! `scim-bridge bench`: a small run against a daemon it starts from a SQLite-target
//! configuration (the example's target and mapping) must finish every phase without an
//! error; so must a small `--ldap` run (a throw-away slapd as the target), which also
//! prints the bridge/raw-ldap3 ratio and the journal replay rate; and a short `bench soak`
//! (every operation, every fault kind) must pass its final checks.

use std::process::Command;

/// Runs `scim-bridge bench --config <the example, quieter> <args>` in a temporary
/// directory; asserts exit 0 and returns stdout and the directory.
fn run_example_bench(args: &[&str]) -> (String, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("scim-bridge-it-bench-")
        .tempdir()
        .expect("create a temporary directory");
    let example = include_str!("../../config.example.yaml");
    let config = dir.path().join("bench.yaml");
    // The example's SQLite target under the state directory, quieter logs.
    std::fs::write(&config, example.replace("level: info", "level: warn")).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .arg("bench")
        .arg("--config")
        .arg(&config)
        .args(args)
        .env_remove("SCIM_BRIDGE_TOKEN")
        .env_remove("SCIM_BRIDGE_CONFIG")
        .current_dir(dir.path())
        .output()
        .expect("run scim-bridge bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, dir)
}

/// Every phase ran its number of requests, without an error.
fn assert_phases(stdout: &str, phases: &[(&str, usize)]) {
    for (phase, requests) in phases {
        let fields = phase_fields(stdout, phase);
        assert_eq!(
            fields.first(),
            Some(&requests.to_string().as_str()),
            "{phase}: {fields:?}"
        );
        assert_eq!(fields.last(), Some(&"0"), "errors in {phase}\n{stdout}");
    }
}

/// The fields after a phase's name on its line.
fn phase_fields<'a>(stdout: &'a str, phase: &str) -> Vec<&'a str> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(phase))
        .unwrap_or_else(|| panic!("no line for phase {phase:?}:\n{stdout}"));
    line[phase.len()..].split_whitespace().collect()
}

#[test]
fn bench_runs_every_phase_without_errors() {
    let (stdout, dir) = run_example_bench(&[
        "--state-dir",
        "state",
        "--users",
        "20",
        "--groups",
        "2",
        "--members-per-batch",
        "5",
        "--concurrency",
        "2",
        "--max-seconds",
        "60",
    ]);
    assert!(stdout.contains("machine: "), "{stdout}");
    assert!(stdout.contains("--users 20 --groups 2"), "{stdout}");
    assert_phases(
        &stdout,
        &[
            ("create users", 20),
            ("get by filter", 20),
            ("patch users", 20),
            ("create groups", 2),
            ("add members", 4),
            ("delete users", 20),
        ],
    );
    assert!(!stdout.contains("stopped:"), "{stdout}");
    assert!(stdout.contains("daemon memory: peak RSS"), "{stdout}");
    // The database the target wrote is there, and the users are gone from the live rows.
    let db = dir.path().join("state").join("directory.db");
    assert!(db.exists(), "{} missing\n{stdout}", db.display());
}

/// `bench --ldap`: a daemon whose target is a throw-away slapd (started by the bench the way
/// these tests start theirs), the `raw ldap3 add` phase beside the bridge's creates, the
/// ratio line, and the journal replayed into a second slapd. Needs slapd and ldap-utils
/// like every LDAP test: without them the bench exits 2 and says what to install, and
/// this test fails with that message (it is never skipped).
#[test]
fn bench_ldap_compares_the_bridge_with_raw_ldap3_and_replays_the_journal() {
    let stdout = bench_against("openldap");
    assert!(stdout.contains("--ldap"), "{stdout}");
    assert!(stdout.contains("ldap: throw-away slapd"), "{stdout}");
    let replay = stdout
        .lines()
        .find(|l| l.starts_with("journal replay into a second directory: "))
        .unwrap_or_else(|| panic!("no replay line:\n{stdout}"));
    assert!(replay.contains("records/s"), "{replay}");
    assert!(replay.contains(" 0 rejected"), "{replay}");
    assert!(
        stdout.contains("the replayed directory holds the same"),
        "{stdout}"
    );
    assert!(!stdout.contains("stopped:"), "{stdout}");
}

/// `--stored-users`: the state is filled before the daemon starts, a replay of it into
/// an empty store and the daemon's startup are measured, and with `--large-group` the
/// member phases run against a large group and a small one.
#[test]
fn bench_with_stored_state_measures_replay_startup_and_member_deltas() {
    let (stdout, _dir) = run_example_bench(&[
        "--users",
        "10",
        "--groups",
        "1",
        "--concurrency",
        "2",
        "--stored-users",
        "2100",
        "--stored-groups",
        "20",
        "--stored-members",
        "5",
        "--large-group",
        "100",
        "--max-seconds",
        "120",
    ]);
    assert!(
        stdout.contains("stored: 2100 users, 20 groups of 5 members, a group of 100 and one of 10 (2122 journal records)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("journal replay into an empty store: 2122 records"),
        "{stdout}"
    );
    assert!(stdout.contains("startup with that state: "), "{stdout}");
    for phase in [
        "large group +100",
        "large group -100",
        "small group +100",
        "small group -100",
    ] {
        let fields = phase_fields(&stdout, phase);
        assert_eq!(fields.first(), Some(&"20"), "{phase}: {fields:?}");
        assert_eq!(fields.last(), Some(&"0"), "errors in {phase}\n{stdout}");
    }
}

/// `bench soak`: a few seconds of the mixed traffic against a daemon writing into a
/// throw-away slapd, with one fault of each kind scheduled early (slapd stopped, the state
/// store locked, slapd killed and started again, the daemon killed and started again),
/// must end with every final check passed: nothing acknowledged lost, the backlog drained,
/// the journal intact and equal to the state when replayed, no drift in the directory.
#[test]
fn bench_soak_survives_every_fault_kind_and_passes_the_final_checks() {
    let dir = tempfile::Builder::new()
        .prefix("scim-bridge-it-bench-soak-")
        .tempdir()
        .expect("create a temporary directory");
    let example = include_str!("../../config.example.yaml");
    let config = dir.path().join("soak.yaml");
    std::fs::write(&config, example.replace("level: info", "level: warn")).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["bench", "soak", "--config"])
        .arg(&config)
        .args([
            "--seconds",
            "9",
            "--fault-every",
            "2",
            "--fault-seconds",
            "0.8",
            "--concurrency",
            "3",
        ])
        .env_remove("SCIM_BRIDGE_TOKEN")
        .env_remove("SCIM_BRIDGE_CONFIG")
        .current_dir(dir.path())
        .output()
        .expect("run scim-bridge bench soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "scim-bridge bench soak failed (slapd and ldap-utils must be installed: \
         `bash tests/run.sh` installs them)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for kind in ["slapd-stop", "store-lock", "slapd-kill", "daemon-kill"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("fault at t=") && l.contains(&format!(": {kind} ("))),
            "no {kind} fault injected:\n{stdout}"
        );
    }
    assert!(stdout.contains("faults injected: 4"), "{stdout}");
    for check in [
        "reads served through every fault",
        "acknowledged writes are what GET returns",
        "delivery backlog drained",
        "journal verify",
        "no journal record pending delivery",
        "the state equals a replay of the journal",
        "reconcile --dry-run finds no drift in the directory",
    ] {
        assert!(
            stdout.contains(&format!("[ok]     {check}: ")),
            "check {check:?} did not pass:\n{stdout}"
        );
    }
    assert!(!stdout.contains("[FAILED]"), "{stdout}");
    assert!(stdout.contains("soak: PASSED"), "{stdout}");
    for op in [
        "create user",
        "get by id",
        "get by filter",
        "patch user",
        "put user",
        "rename user",
        "delete user",
        "add members",
    ] {
        let fields = phase_fields(&stdout, op);
        let requests: usize = fields
            .first()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{op}: {fields:?}"));
        assert!(requests > 0, "no {op} request:\n{stdout}");
    }
}

/// `bench --ldap --directory <kind>`: every phase without an error and the ratio line.
fn bench_against(directory: &str) -> String {
    let (stdout, _dir) = run_example_bench(&[
        "--ldap",
        "--directory",
        directory,
        "--users",
        "20",
        "--groups",
        "2",
        "--members-per-batch",
        "5",
        "--concurrency",
        "2",
        "--max-seconds",
        "60",
    ]);
    assert_phases(
        &stdout,
        &[
            ("create users", 20),
            ("raw ldap3 add", 20),
            ("get by filter", 20),
            ("patch users", 20),
            ("create groups", 2),
            ("add members", 4),
            ("delete users", 20),
        ],
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ldap overhead: bridge creates ") && l.contains("/s, ratio ")),
        "{stdout}"
    );
    stdout
}

#[test]
fn bench_ldap_runs_against_389_ds_and_replays_into_a_second_one() {
    let stdout = bench_against("389ds");
    assert!(stdout.contains("ldap: throw-away 389-DS"), "{stdout}");
    assert!(
        stdout.contains("the replayed directory holds the same"),
        "{stdout}"
    );
}

mod samba {
    #[test]
    fn bench_ldap_runs_against_a_samba_ad_dc() {
        let stdout = super::bench_against("ad");
        assert!(stdout.contains("ldap: throw-away Samba AD DC"), "{stdout}");
        assert!(
            stdout.contains("examples/ldap-ad.yaml's target and mapping"),
            "{stdout}"
        );
    }
}
