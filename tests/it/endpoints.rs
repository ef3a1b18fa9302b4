//! Several SCIM endpoints in one daemon: each with its own tokens, mapping, target, state
//! and journal; a token is valid on its own endpoint only.

use std::process::Command;

use reqwest::Method;
use serde_json::json;

use crate::harness::{Daemon, TOKEN};

const FAB_TOKEN: &str = "it-fabrikam-token-0123456789abcdefghijklmno";

fn two_endpoints() -> Daemon {
    Daemon::start_with(&format!(
        "endpoints:
  - name: fabrikam
    auth:
      tokens:
        - name: fabrikam-entra
          secret:
            value: {FAB_TOKEN}
    target:
      sqlite:
        path: ./fabrikam.db
    mapping:
      users:
        table: people
        columns:
          login:
            source: userName
"
    ))
}

async fn status(d: &Daemon, method: Method, url: &str, token: &str, body: Option<&str>) -> u16 {
    let mut req = d
        .request_unauthenticated(method, url)
        .bearer_auth(token)
        .header("content-type", "application/scim+json");
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

fn fabrikam(d: &Daemon, path: &str) -> String {
    format!("http://{}/scim/fabrikam/v2{path}", d.addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_valid_on_its_own_endpoint_only() {
    let d = two_endpoints();
    assert_eq!(status(&d, Method::GET, "/Users", TOKEN, None).await, 200);
    assert_eq!(
        status(&d, Method::GET, "/Users", FAB_TOKEN, None).await,
        401
    );
    assert_eq!(
        status(&d, Method::GET, &fabrikam(&d, "/Users"), FAB_TOKEN, None).await,
        200
    );
    assert_eq!(
        status(&d, Method::GET, &fabrikam(&d, "/Users"), TOKEN, None).await,
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_endpoint_has_its_own_resources_target_and_journal() {
    let d = two_endpoints();
    let body = json!({"userName": "same.name@example.com"}).to_string();
    assert_eq!(
        status(&d, Method::POST, "/Users", TOKEN, Some(&body)).await,
        201
    );
    assert_eq!(
        status(
            &d,
            Method::POST,
            &fabrikam(&d, "/Users"),
            FAB_TOKEN,
            Some(&body)
        )
        .await,
        201,
        "the same userName on another endpoint is another user"
    );
    let other = json!({"userName": "only.fabrikam@example.com"}).to_string();
    assert_eq!(
        status(
            &d,
            Method::POST,
            &fabrikam(&d, "/Users"),
            FAB_TOKEN,
            Some(&other)
        )
        .await,
        201
    );
    assert_eq!(d.get("/Users").await.body["totalResults"], 1);

    // Its target: the fabrikam mapping's table in its own database.
    let db = rusqlite::Connection::open(d.dir().join("fabrikam.db")).expect("open");
    let mut logins: Vec<String> = db
        .prepare("SELECT login FROM people ORDER BY login")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    logins.sort();
    assert_eq!(
        logins,
        ["only.fabrikam@example.com", "same.name@example.com"]
    );

    // Its journal: records name the endpoint, under its own state directory.
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(d.dir())
        .args(["journal", "list", "--endpoint", "fabrikam", "--config"])
        .arg(&d.config_path)
        .output()
        .expect("run journal list");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        listing.lines().filter(|l| l.contains(" create ")).count(),
        2,
        "{listing}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(d.dir())
        .args(["journal", "show", "1", "--endpoint", "fabrikam", "--config"])
        .arg(&d.config_path)
        .output()
        .expect("run journal show");
    let record = String::from_utf8_lossy(&out.stdout);
    assert!(record.contains("\"endpoint\": \"fabrikam\""), "{record}");
    assert!(record.contains("fabrikam-entra"), "{record}");
    assert!(d.dir().join("state/endpoints/fabrikam/state.db").exists());
}

#[test]
fn endpoints_with_a_taken_name_or_an_overlapping_path_are_refused_at_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "auth:
  tokens:
    - name: t
      secret:
        value: 0123456789abcdef0123456789abcdef
endpoints:
  - name: default
    auth:
      tokens:
        - name: a
          secret:
            value: 1123456789abcdef0123456789abcdef
  - name: b
    base_path: /scim/v2/b
    auth:
      tokens: []
",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    let report = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("endpoints[0].name") && report.contains("is taken"),
        "{report}"
    );
    assert!(
        report.contains("endpoints[1].base_path") && report.contains("overlaps"),
        "{report}"
    );
    assert!(report.contains("endpoints[1].auth.tokens"), "{report}");
}
