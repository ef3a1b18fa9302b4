//! The daemon as a service: SIGHUP reloads the configuration (tokens, log level) without
//! dropping a request and refuses a broken file; SIGTERM drains in-flight requests, loses
//! no acknowledged write and exits 0.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Daemon, TOKEN};

const SECOND_TOKEN: &str = "it-second-token-0123456789abcdefghijklmnop";

/// The status of `GET /Users` with `token`.
async fn status_with(d: &Daemon, token: &str) -> u16 {
    d.request_unauthenticated(Method::GET, "/Users?count=1")
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits (bounded) until `GET /Users` with `token` answers `want`.
async fn wait_for_status(d: &Daemon, token: &str, want: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = status_with(d, token).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tokens_yaml(with_env_token: bool, with_second: bool) -> String {
    let mut out = String::from("  tokens:\n");
    if with_env_token {
        out.push_str("    - name: entra\n      secret:\n        env: SCIM_BRIDGE_TOKEN\n");
    }
    if with_second {
        out.push_str(&format!(
            "    - name: second\n      secret:\n        value: {SECOND_TOKEN}\n"
        ));
    }
    out
}

/// The daemon's config file with its `auth.tokens` replaced.
fn rewrite_tokens(d: &Daemon, tokens: &str) {
    let text = d.config_text();
    let start = text.find("  tokens:\n").expect("a tokens list");
    let end = text[start..]
        .find("\nlog:")
        .map(|i| start + i + 1)
        .expect("log after auth");
    let new = format!("{}{}{}", &text[..start], tokens, &text[end..]);
    std::fs::write(&d.config_path, new).expect("rewrite the config");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_new_tokens_and_a_broken_file_leaves_the_running_ones() {
    let d = Daemon::start();
    assert_eq!(status_with(&d, TOKEN).await, 200);
    assert_eq!(status_with(&d, SECOND_TOKEN).await, 401);

    rewrite_tokens(&d, &tokens_yaml(true, true));
    d.signal("HUP");
    wait_for_status(&d, SECOND_TOKEN, 200, "the added token after a reload").await;
    assert_eq!(status_with(&d, TOKEN).await, 200);

    // A file that does not load is refused: both tokens keep working.
    std::fs::write(&d.config_path, "auth:\n  tokens: [oops\n").expect("break the config");
    d.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_with(&d, TOKEN).await, 200, "still serving");
    assert_eq!(status_with(&d, SECOND_TOKEN).await, 200);

    // A token removed from the file stops working.
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  base_path: /scim/v2\nstate:\n  dir: ./state\nauth:\n{}log:\n  level: warn\n",
        tokens_yaml(false, true)
    );
    std::fs::write(&d.config_path, text).expect("rewrite the config");
    d.signal("HUP");
    wait_for_status(&d, TOKEN, 401, "the removed token after a reload").await;
    assert_eq!(status_with(&d, SECOND_TOKEN).await, 200);
}

/// A create's status (0: no answer) and the id it returned.
type Answer = (u16, Option<String>);

/// `clients` tasks, each creating `per_client` users `<prefix>-<c>-<i>` one after
/// another; each answers (status, id) per request, 0 for no answer. `stop_at_failure`:
/// a client stops at its first answer that is not 201.
fn creators(
    d: &Daemon,
    prefix: &'static str,
    clients: usize,
    per_client: usize,
    stop_at_failure: bool,
) -> Vec<tokio::task::JoinHandle<Vec<Answer>>> {
    (0..clients)
        .map(|c| {
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client");
            let url = d.url("/Users");
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..per_client {
                    let r = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/scim+json")
                        .body(json!({"userName": format!("{prefix}-{c}-{i}")}).to_string())
                        .send()
                        .await;
                    let answer = match r {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            (status, body["id"].as_str().map(str::to_string))
                        }
                        Err(_) => (0, None),
                    };
                    let failed = answer.0 != 201;
                    answers.push(answer);
                    if failed && stop_at_failure {
                        break;
                    }
                }
                answers
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reloading_under_load_loses_no_request() {
    let d = Daemon::start();
    rewrite_tokens(&d, &tokens_yaml(true, true));
    let clients = creators(&d, "load", 4, 40, false);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        d.signal("HUP");
    }
    for client in clients {
        let answers = client.await.expect("client task");
        assert!(
            answers.iter().all(|(s, _)| *s == 201),
            "every request answered 201 across reloads: {answers:?}"
        );
    }
    let list = d.get("/Users?count=1").await;
    assert_eq!(list.body["totalResults"], 160);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_writes_loses_no_acknowledged_write_and_exits_0() {
    let mut d = Daemon::start();
    // Refused or cut off once the listener closed: not acknowledged (each client stops
    // at its first failure).
    let writers = creators(&d, "term", 4, 200, true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(25));
    let mut acknowledged = Vec::new();
    for w in writers {
        let answers = w.await.expect("writer task");
        acknowledged.extend(
            answers
                .into_iter()
                .filter_map(|(s, id)| id.filter(|_| s == 201)),
        );
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM exits 0 after draining"
    );
    assert!(!acknowledged.is_empty(), "some writes were acknowledged");
    d.start_again();
    for id in &acknowledged {
        let r = d.get(&format!("/Users/{id}")).await;
        assert_eq!(r.status, 200, "acknowledged write {id} kept");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_mapping_to_the_changes_that_follow() {
    let mapping = |extra: &str| {
        format!(
            "target:
  sqlite:
    path: ./app.db
mapping:
  users:
    table: people
    columns:
      login:
        source: userName
{extra}"
        )
    };
    let d = Daemon::start_with(&mapping(""));
    let r = d
        .post(
            "/Users",
            &json!({"userName": "before", "displayName": "Before"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The same file with one more column.
    let text = d.config_text();
    let with_display = text.replace(
        "      login:\n        source: userName\n",
        "      login:\n        source: userName\n      display:\n        source: displayName\n",
    );
    assert_ne!(text, with_display);
    std::fs::write(&d.config_path, with_display).expect("rewrite the config");
    d.signal("HUP");
    let db = d.dir().join("app.db");
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        let r = d
            .post(
                "/Users",
                &json!({"userName": format!("after-{attempt}"), "displayName": "After"})
                    .to_string(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let conn = rusqlite::Connection::open(&db).expect("open");
        let filled: i64 = conn
            .query_row(
                "SELECT count(*) FROM people WHERE display = 'After'",
                [],
                |row| row.get(0),
            )
            .unwrap_or(0);
        if filled > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new column was never written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
