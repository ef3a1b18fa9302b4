//! The command line contract: `check-config` exit codes and messages.

use std::process::Command;

fn check_config(text: &str, token: Option<&str>) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bridge.yaml");
    std::fs::write(&path, text).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scim-bridge"));
    cmd.arg("check-config")
        .arg("--config")
        .arg(&path)
        .env_remove("SCIM_BRIDGE_TOKEN");
    if let Some(t) = token {
        cmd.env("SCIM_BRIDGE_TOKEN", t);
    }
    let out = cmd.output().expect("run scim-bridge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const EXAMPLE: &str = include_str!("../../config.example.yaml");

#[test]
fn check_config_accepts_the_example_with_a_token() {
    let (code, stdout, stderr) = check_config(EXAMPLE, Some("0123456789abcdef0123456789abcdef"));
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn check_config_reports_every_problem_with_line_and_column_and_exits_1() {
    let text = "server:\n  listen: nowhere\n  page_size: 0\nauth:\n  tokens:\n    - name: entra\n      secret:\n        env: SCIM_BRIDGE_TOKEN\n";
    let (code, _, stderr) = check_config(text, None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(":2:11: server.listen"), "{stderr}");
    assert!(stderr.contains(":3:14: server.page_size"), "{stderr}");
    assert!(stderr.contains("SCIM_BRIDGE_TOKEN is not set"), "{stderr}");
}

#[test]
fn check_config_on_an_unreadable_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["check-config", "--config", "/nonexistent/scim-bridge.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/scim-bridge.yaml"));
}

#[test]
fn serve_refuses_to_start_on_an_invalid_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "auth:\n  tokens: []\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml:"), "{stderr}");
}

#[test]
fn check_config_accepts_the_ldap_example_with_its_environment_and_names_what_is_missing() {
    let run = |with_env: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scim-bridge"));
        cmd.args([
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ldap-openldap.yaml"),
        ]);
        for var in [
            "SCIM_BRIDGE_TOKEN",
            "LDAP_URL",
            "LDAP_BIND_DN",
            "LDAP_BIND_PASSWORD",
            "LDAP_BASE_DN",
        ] {
            cmd.env_remove(var);
        }
        if with_env {
            cmd.env("SCIM_BRIDGE_TOKEN", "0123456789abcdef0123456789abcdef")
                .env("LDAP_URL", "ldaps://ldap.example.com")
                .env("LDAP_BIND_DN", "cn=bridge,dc=example,dc=com")
                .env("LDAP_BIND_PASSWORD", "secret")
                .env("LDAP_BASE_DN", "dc=example,dc=com");
        }
        cmd.output().expect("run")
    };
    let ok = run(true);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = run(false);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    for var in [
        "LDAP_URL",
        "LDAP_BIND_DN",
        "LDAP_BIND_PASSWORD",
        "LDAP_BASE_DN",
    ] {
        assert!(
            stderr.contains(&format!("environment variable {var} is not set")),
            "{stderr}"
        );
    }
}
