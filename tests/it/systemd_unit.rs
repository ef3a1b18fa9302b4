//! The production systemd unit, `systemd/scim-bridge.service`: systemd itself accepts it
//! (`systemd-analyze verify`, with the unit's binary path pointed at the binary under
//! test), its command lines use flags the binary has, and it keeps the directives the
//! README's install section and the daemon's sd-notify protocol rely on.

use std::process::Command;

const UNIT: &str = include_str!("../../systemd/scim-bridge.service");
const UNIT_NAME: &str = "scim-bridge.service";
const INSTALLED_BINARY: &str = "/usr/local/bin/scim-bridge";

/// The `Key=value` lines of one section, in order, comments and blank lines left out.
fn section(name: &str) -> Vec<(&'static str, &'static str)> {
    let header = format!("[{name}]");
    let mut inside = false;
    let mut out = Vec::new();
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
        } else if inside && !line.is_empty() && !line.starts_with(['#', ';']) {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{UNIT_NAME}: not a Key=value line: {line}"));
            out.push((key.trim(), value.trim()));
        }
    }
    out
}

/// Every value `key` has in `[Service]`.
fn service(key: &str) -> Vec<&'static str> {
    section("Service")
        .into_iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The one value `key` has in `[Service]`.
fn single(key: &str) -> &'static str {
    match service(key).as_slice() {
        [value] => value,
        values => panic!("{UNIT_NAME}: expected exactly one {key}=, found {values:?}"),
    }
}

/// Runs `systemd-analyze verify` on `unit_text` written to a temporary directory and
/// returns its output lines about this unit (it may print noise about other units of the
/// machine it runs on).
fn verify(unit_text: &str) -> (Vec<String>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(UNIT_NAME);
    std::fs::write(&path, unit_text).expect("write the unit copy");
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "systemd-analyze is not installed, so the systemd unit cannot be verified: \
             install systemd (bash tests/run.sh does)"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    };
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let about_unit = all
        .lines()
        .filter(|l| l.contains(UNIT_NAME))
        .map(str::to_owned)
        .collect();
    (about_unit, format!("exit {:?}\n{all}", out.status.code()))
}

/// The unit as installed, but running the binary under test.
fn unit_with_test_binary() -> String {
    assert!(
        UNIT.contains(INSTALLED_BINARY),
        "{UNIT_NAME} no longer runs {INSTALLED_BINARY}"
    );
    UNIT.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_scim-bridge"))
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_without_a_warning() {
    let (about_unit, output) = verify(&unit_with_test_binary());
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify has something to say about {UNIT_NAME}:\n{}\n\nfull output: {output}",
        about_unit.join("\n")
    );
}

#[test]
fn systemd_analyze_verify_would_report_a_broken_unit() {
    // Guards the test above: a bad directive and a missing binary must be seen as
    // problems, so an empty result really means "accepted".
    let broken = unit_with_test_binary()
        .replace("Type=notify", "Type=bogus")
        .replace(
            env!("CARGO_BIN_EXE_scim-bridge"),
            "/nonexistent/scim-bridge",
        );
    let (about_unit, output) = verify(&broken);
    assert!(about_unit.iter().any(|l| l.contains("bogus")), "{output}");
    assert!(
        about_unit
            .iter()
            .any(|l| l.contains("/nonexistent/scim-bridge")),
        "{output}"
    );
}

#[test]
fn the_unit_s_command_lines_use_flags_the_binary_accepts() {
    for key in ["ExecStartPre", "ExecStart"] {
        let line = single(key);
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some(INSTALLED_BINARY), "{key}={line}");
        // clap rejects an unknown flag before it reaches the trailing --help.
        let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
            .args(words)
            .arg("--help")
            .output()
            .expect("run scim-bridge");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{key}={line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_daemon_reports_readiness_and_watchdog_pings_to_systemd() {
    assert_eq!(single("Type"), "notify");
    assert_eq!(single("NotifyAccess"), "main");
    let watchdog = single("WatchdogSec");
    assert!(
        !watchdog.is_empty() && !watchdog.starts_with('0'),
        "WatchdogSec={watchdog}"
    );
}

#[test]
fn the_daemon_runs_unprivileged_with_its_own_state_and_configuration_directories() {
    let dynamic = service("DynamicUser") == ["yes"];
    let user = service("User");
    assert!(
        dynamic || (user.len() == 1 && !["root", "0"].contains(&user[0])),
        "the service needs DynamicUser=yes or a non-root User="
    );
    assert_eq!(single("StateDirectory"), "scim-bridge");
    assert_eq!(single("ConfigurationDirectory"), "scim-bridge");
    let exec_start = single("ExecStart");
    assert!(
        exec_start.contains(" serve ")
            && exec_start.contains("--config /etc/scim-bridge/config.yaml")
            && exec_start.contains("--state-dir /var/lib/scim-bridge"),
        "ExecStart={exec_start}"
    );
}

#[test]
fn the_bearer_token_comes_from_a_systemd_credential() {
    let credentials = service("LoadCredential");
    assert!(
        credentials.contains(&"entra-token:/etc/scim-bridge/credentials/entra-token"),
        "LoadCredential={credentials:?}"
    );
    // The header's configuration snippet reads the token where systemd puts it.
    assert!(UNIT.contains("file: /run/credentials/scim-bridge.service/entra-token"));
}

#[test]
fn the_configuration_is_checked_before_start_and_reloaded_on_sighup() {
    let pre = single("ExecStartPre");
    assert!(
        pre.contains(" check-config --config /etc/scim-bridge/config.yaml"),
        "ExecStartPre={pre}"
    );
    let reload = single("ExecReload");
    assert!(reload.contains("kill -HUP $MAINPID"), "ExecReload={reload}");
    assert_eq!(single("Restart"), "on-failure");
}

#[test]
fn the_service_is_sandboxed_without_capabilities() {
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"),
        ("SystemCallArchitectures", "native"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("UMask", "0077"),
        // Empty: no capability in the bounding set, none ambient.
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ] {
        assert_eq!(service(key), [value], "{key}=");
    }
    let filters = service("SystemCallFilter");
    assert!(filters.contains(&"@system-service"), "{filters:?}");
    assert!(
        filters
            .iter()
            .any(|f| f.starts_with('~') && f.contains("@privileged")),
        "{filters:?}"
    );
}
