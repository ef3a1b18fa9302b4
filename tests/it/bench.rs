//! `scim-bridge bench`: a small run against a daemon it starts from a SQLite-target
//! configuration (the example's target and mapping) must finish every phase without an
//! error.

use std::process::Command;

#[test]
fn bench_runs_every_phase_without_errors() {
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
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args([
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
        ])
        .env_remove("SCIM_BRIDGE_TOKEN")
        .env_remove("SCIM_BRIDGE_CONFIG")
        .current_dir(dir.path())
        .output()
        .expect("run scim-bridge bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("machine: "), "{stdout}");
    assert!(stdout.contains("--users 20 --groups 2"), "{stdout}");
    for (phase, requests) in [
        ("create users", 20),
        ("get by filter", 20),
        ("patch users", 20),
        ("create groups", 2),
        ("add members", 4),
        ("delete users", 20),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(phase))
            .unwrap_or_else(|| panic!("no line for phase {phase:?}:\n{stdout}"));
        let fields: Vec<&str> = line[phase.len()..].split_whitespace().collect();
        assert_eq!(
            fields.first(),
            Some(&requests.to_string().as_str()),
            "{line}"
        );
        assert_eq!(fields.last(), Some(&"0"), "errors in {line}\n{stdout}");
    }
    assert!(!stdout.contains("stopped:"), "{stdout}");
    assert!(stdout.contains("daemon memory: peak RSS"), "{stdout}");
    // The database the target wrote is there, and the users are gone from the live rows.
    let db = dir.path().join("state").join("directory.db");
    assert!(db.exists(), "{} missing\n{stdout}", db.display());
}
