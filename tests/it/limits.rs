//! Request limits, each answered with a SCIM error: JSON nesting depth, filter length,
//! header size, and the per-request timeout.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::Daemon;

#[tokio::test(flavor = "multi_thread")]
async fn a_body_nested_deeper_than_max_json_depth_is_a_400_invalid_syntax() {
    let d = Daemon::start_with("server:\n  max_json_depth: 8\n");
    let mut deep = String::from("\"x\"");
    for _ in 0..20 {
        deep = format!("[{deep}]");
    }
    let body = format!(r#"{{"userName": "deep", "nickName": "a [{{ in a string", "x": {deep}}}"#);
    let r = d.post("/Users", &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["scimType"], "invalidSyntax", "{}", r.text);
    assert!(r.text.contains("max_json_depth"), "{}", r.text);
    // Brackets inside strings do not count; a shallow body passes.
    let ok = d
        .post(
            "/Users",
            &json!({"userName": "shallow", "nickName": "[[[[[[[[[[[[{{{{{{{{{{"}).to_string(),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_longer_than_max_filter_bytes_is_a_400_invalid_filter() {
    let d = Daemon::start_with("server:\n  max_filter_bytes: 100\n");
    let long = format!("userName eq \"{}\"", "a".repeat(200));
    let r = d
        .get(&format!(
            "/Users?filter={}",
            form_urlencoded::byte_serialize(long.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["scimType"], "invalidFilter", "{}", r.text);
    assert!(r.text.contains("max_filter_bytes"), "{}", r.text);
    let short = d.get("/Users?filter=userName+eq+%22a%22").await;
    assert_eq!(short.status, 200, "{}", short.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_larger_than_max_header_bytes_are_refused() {
    let d = Daemon::start_with("server:\n  max_header_bytes: 8192\n");
    let r = d
        .request(Method::GET, "/Users")
        .header("x-padding", "p".repeat(20_000))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 431, "too large headers"),
        // hyper may also close the connection after the 431 before the client reads it.
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    assert_eq!(d.get("/Users").await.status, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_slower_than_request_timeout_is_a_503_with_retry_after() {
    // A directory that accepts connections and never answers: with sync delivery, a write
    // waits for it.
    let blackhole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ldap://{}", blackhole.local_addr().expect("addr"));
    let d = Daemon::start_with(&format!(
        "server:
  request_timeout: 1s
target:
  delivery: sync
  ldap:
    urls: [{url}]
    base: dc=example,dc=com
    connect_timeout: 5s
    operation_timeout: 30s
mapping:
  users:
    dn: 'uid={{userName}},{{base}}'
    object_classes: [inetOrgPerson]
    attributes:
      uid: {{ source: userName }}
"
    ));
    let started = Instant::now();
    let r = d
        .post("/Users", &json!({"userName": "slow"}).to_string())
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("request_timeout"), "{}", r.text);
    assert!(r.header("retry-after").is_some(), "Retry-After");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    drop(blackhole);
}
