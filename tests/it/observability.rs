//! Observability of the running daemon: `/healthz`, `/readyz` and `/metrics` outside the
//! SCIM base path and without a token, request metrics under route templates, readiness
//! that fails while the directory is down and the backlog exceeds
//! `server.ready_max_pending`, and the one request log line (JSON format): request id,
//! actor, method, path, status, duration; never a body, a query string or a secret.
//!
//! The `endpoint` label is the matched route template with the resource type filled in
//! (`/scim/v2/{endpoint}` → `/scim/v2/Users`, `/scim/v2/{endpoint}/{id}` →
//! `/scim/v2/Users/{id}`), so Users and Groups count apart and ids never become labels.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Daemon, Resp, TOKEN, send};
use crate::slapd::Slapd;

/// `GET http://ADDR{path}` without a token (the ops routes sit outside the base path).
async fn get_root(d: &Daemon, path: &str) -> Resp {
    send(d.request_unauthenticated(Method::GET, &format!("http://{}{path}", d.addr))).await
}

/// The value of the sample whose name and labels are exactly `series`; 0 when absent
/// (a labelled counter appears once it was first incremented).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn user(name: &str) -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "name": {"givenName": "Obs", "familyName": "Ervability"},
        "emails": [{"type": "work", "value": format!("{name}@example.com"), "primary": true}],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_ok_without_a_token() {
    let d = Daemon::start();
    let r = get_root(&d, "/healthz").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text.trim(), "ok");
    // The SCIM endpoints still need one.
    let r = send(d.request_unauthenticated(Method::GET, "/Users")).await;
    assert_eq!(r.status, 401, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_ready_with_the_store_open_and_the_journal_writable() {
    let d = Daemon::start();
    let r = get_root(&d, "/readyz").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.media_type().as_deref(), Some("application/json"));
    assert_eq!(r.body["status"], "ready", "{}", r.text);
    assert_eq!(r.body["checks"]["store"], "ok", "{}", r.text);
    assert_eq!(r.body["checks"]["journal"], "ok", "{}", r.text);
    // The harness's daemon has no target: nothing to deliver, nothing to check.
    assert_eq!(r.body["checks"].get("delivery"), None, "{}", r.text);
    assert_eq!(r.body["failed"], json!([]), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_under_their_route_template() {
    let d = Daemon::start();
    let users = r#"scim_http_requests_total{endpoint="/scim/v2/Users",method="GET",status="200"}"#;
    let one =
        r#"scim_http_requests_total{endpoint="/scim/v2/Users/{id}",method="GET",status="404"}"#;
    let before = get_root(&d, "/metrics").await;
    assert_eq!(before.status, 200, "{before:?}");
    let content_type = before.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    // Unlabelled families and the known label values are always there; the others once
    // a first sample exists (scim_target_errors_total: see the LDAP test).
    for family in [
        "# TYPE scim_journal_append_seconds histogram",
        "# TYPE scim_journal_batch_size histogram",
        "# TYPE scim_delivery_pending gauge",
        "# TYPE scim_delivery_oldest_pending_seconds gauge",
        "# TYPE scim_deliveries counter",
        "# TYPE scim_rate_limited counter",
    ] {
        assert!(before.text.contains(family), "{family}:\n{}", before.text);
    }
    assert!(
        before
            .text
            .contains("scim_rate_limited_total{kind=\"client\"} 0\n"),
        "{}",
        before.text
    );
    assert!(before.text.ends_with("# EOF\n"), "{}", before.text);

    for _ in 0..2 {
        assert_eq!(d.get("/Users").await.status, 200);
    }
    assert_eq!(
        d.get("/Users/2819c223-7f76-453a-919d-413861904646")
            .await
            .status,
        404
    );
    assert_eq!(d.post("/Users", &user("metrics.probe")).await.status, 201);

    let after = get_root(&d, "/metrics").await;
    for family in [
        "# TYPE scim_http_requests counter",
        "# TYPE scim_http_request_duration_seconds histogram",
    ] {
        assert!(after.text.contains(family), "{family}:\n{}", after.text);
    }
    assert_eq!(
        sample(&after.text, users) - sample(&before.text, users),
        2.0,
        "{}",
        after.text
    );
    assert_eq!(
        sample(&after.text, one) - sample(&before.text, one),
        1.0,
        "{}",
        after.text
    );
    let latency =
        r#"scim_http_request_duration_seconds_count{endpoint="/scim/v2/Users",method="GET"}"#;
    assert!(sample(&after.text, latency) >= 2.0, "{}", after.text);
    // The create went through the journal's group commit.
    assert!(sample(&after.text, "scim_journal_append_seconds_count") >= 1.0);
    assert!(sample(&after.text, "scim_journal_batch_size_count") >= 1.0);
    // No id, user name or token ever becomes a label value.
    for secret in ["2819c223", "metrics.probe", TOKEN, "entra"] {
        assert!(!after.text.contains(secret), "{secret} in:\n{}", after.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_request_line_with_id_actor_method_path_status_and_duration_and_no_body() {
    let logs = tempfile::tempdir().expect("a directory for the daemon's log");
    let log_path = logs.path().join("stderr.log");
    let script = format!("exec \"$@\" 2>>'{}'", log_path.display());
    let d = Daemon::start_wrapped(
        "log:\n  level: info\n  format: json\n",
        &["sh", "-c", &script, "sh"],
    );
    let name = "body.secret.adele@contoso.com";
    let created = d.post("/Users", &user(name)).await;
    assert_eq!(created.status, 201, "{created:?}");
    let request_id = created.header("x-request-id").expect("X-Request-Id");
    let listed = d
        .get("/Users?filter=userName%20eq%20%22query.secret.adele%40contoso.com%22")
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let list_id = listed.header("x-request-id").expect("X-Request-Id");

    // The line is written before the response leaves; allow the pipe a moment anyway.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (text, lines) = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["fields"]["message"] == "request")
            .collect();
        let of = |id: &str| {
            lines
                .iter()
                .filter(|l| l["fields"]["request_id"] == id || l["span"]["id"] == id)
                .count()
        };
        if (of(&request_id) >= 1 && of(&list_id) >= 1) || Instant::now() > deadline {
            break (text, lines);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let of = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["fields"]["request_id"] == id || l["span"]["id"] == id)
            .collect()
    };
    let create = of(&request_id);
    assert_eq!(
        create.len(),
        1,
        "exactly one request line per request:\n{text}"
    );
    let f = &create[0]["fields"];
    assert_eq!(f["request_id"], request_id.as_str(), "{text}");
    assert_eq!(f["actor"], "entra", "{text}");
    assert_eq!(f["method"], "POST", "{text}");
    assert_eq!(f["path"], "/scim/v2/Users", "{text}");
    assert_eq!(f["status"], 201, "{text}");
    assert!(
        f["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{text}"
    );
    assert_eq!(create[0]["level"], "INFO", "{text}");

    let list = of(&list_id);
    assert_eq!(list.len(), 1, "{text}");
    assert_eq!(
        list[0]["fields"]["path"], "/scim/v2/Users",
        "no query string: {text}"
    );

    for secret in ["body.secret", "query.secret", "Ervability", TOKEN] {
        assert!(!text.contains(secret), "{secret} was logged:\n{text}");
    }
}

/// The example LDAP config's target and mapping, pointed at `slapd`, short timeouts.
fn ldap_daemon(slapd: &Slapd, extra: &str) -> Daemon {
    Daemon::start_with(&format!("{extra}{}", slapd.example_target_yaml()))
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_while_the_directory_is_down_and_the_backlog_exceeds_the_limit() {
    let mut slapd = Slapd::start();
    let d = ldap_daemon(&slapd, "server:\n  ready_max_pending: 1\n");
    let r = get_root(&d, "/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["delivery"]["pending"], 0, "{}", r.text);

    slapd.stop();
    for name in ["down.one", "down.two"] {
        let r = d.post("/Users", &user(name)).await;
        assert_eq!(r.status, 201, "async delivery keeps the change: {r:?}");
    }
    let r = get_root(&d, "/readyz").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["status"], "not ready", "{}", r.text);
    assert_eq!(r.body["checks"]["delivery"], "failed", "{}", r.text);
    assert_eq!(r.body["checks"]["store"], "ok", "{}", r.text);
    assert_eq!(r.body["checks"]["journal"], "ok", "{}", r.text);
    assert_eq!(r.body["failed"][0]["check"], "delivery", "{}", r.text);
    let detail = r.body["failed"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("backlog of 2") && detail.contains("ready_max_pending"),
        "{detail}"
    );
    assert_eq!(r.body["delivery"]["pending"], 2, "{}", r.text);
    assert_eq!(r.body["delivery"]["target_reachable"], false, "{}", r.text);
    // Unauthenticated: no entry names, no directory URL, no error text.
    for leak in ["down.one", "uid=", &slapd.url] {
        assert!(!r.text.contains(leak), "{leak} in {}", r.text);
    }
    let m = get_root(&d, "/metrics").await;
    assert_eq!(
        sample(&m.text, "scim_delivery_pending{endpoint=\"default\"}"),
        2.0,
        "{}",
        m.text
    );
    assert!(
        sample(
            &m.text,
            "scim_delivery_oldest_pending_seconds{endpoint=\"default\"}"
        ) > 0.0
    );
    assert!(
        sample(
            &m.text,
            r#"scim_target_errors_total{outcome="unavailable",code="connect"}"#
        ) >= 1.0,
        "{}",
        m.text
    );
    assert!(sample(&m.text, r#"scim_deliveries_total{outcome="unavailable"}"#) >= 1.0);
    // Liveness is not readiness.
    assert_eq!(get_root(&d, "/healthz").await.status, 200);

    // The directory returns: the backlog drains and the daemon is ready again.
    slapd.start_again();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = get_root(&d, "/readyz").await;
        if r.status == 200 && r.body["delivery"]["pending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {}", r.text);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let m = get_root(&d, "/metrics").await;
    assert!(sample(&m.text, r#"scim_deliveries_total{outcome="applied"}"#) >= 2.0);
    assert_eq!(
        sample(&m.text, "scim_delivery_pending{endpoint=\"default\"}"),
        0.0,
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn journald_log_lines_have_no_timestamp_and_no_colour() {
    let logs = tempfile::tempdir().expect("a directory for the daemon's log");
    let log_path = logs.path().join("stderr.log");
    let script = format!("exec \"$@\" 2>>'{}'", log_path.display());
    let d = Daemon::start_wrapped(
        "log:\n  level: info\n  format: journald\n",
        &["sh", "-c", &script, "sh"],
    );
    assert_eq!(d.get("/Users").await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.lines().any(|l| l.contains("request")) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = text
        .lines()
        .find(|l| l.contains("request") && l.contains("status=200"))
        .unwrap_or_else(|| panic!("a request line:\n{text}"));
    assert!(
        line.trim_start().starts_with("INFO"),
        "level first, no timestamp: {line}"
    );
    assert!(!line.contains('\u{1b}'), "no ANSI colour: {line}");
}
