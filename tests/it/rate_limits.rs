//! Rate limits: per bearer token after authentication, per client address before it
//! (the proxy-reported address only from `server.trusted_proxies`), each refusal a 429
//! with `Retry-After` and a SCIM Error body; and the defaults never throttle Entra.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Daemon, Resp, SCIM_JSON, send};

const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// A second token's secret, for a token that is not the throttled one.
const OKTA_TOKEN: &str = "it-okta-0123456789abcdefghijklmnopqrstuvwxyz";

/// Asserts `r` is the rate limits' 429 and returns its `Retry-After` in seconds.
fn assert_throttled(r: &Resp, whose: &str) -> u64 {
    assert_eq!(r.status, 429, "{}", r.text);
    let retry_after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in whole seconds: {:?}", r.headers));
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert_eq!(r.media_type().as_deref(), Some(SCIM_JSON));
    assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{}", r.text);
    assert_eq!(r.body["status"], "429", "{}", r.text);
    assert!(r.body.get("scimType").is_none(), "{}", r.text);
    assert_eq!(
        r.body["detail"],
        format!("too many requests {whose}; retry after {retry_after} s"),
        "{}",
        r.text
    );
    retry_after
}

async fn unauthenticated(d: &Daemon, forwarded_for: Option<&str>) -> Resp {
    let mut rb = d.request_unauthenticated(Method::GET, "/Users");
    if let Some(xff) = forwarded_for {
        rb = rb.header("x-forwarded-for", xff);
    }
    send(rb).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_past_its_burst_gets_429_with_retry_after_and_a_scim_error() {
    let d = Daemon::start_with(&format!(
        "rate_limit:\n  per_token:\n    per_second: 1\n    burst: 3\n\
         auth:\n  tokens:\n    - name: entra\n      secret:\n        env: SCIM_BRIDGE_TOKEN\n\
         \x20   - name: okta\n      secret:\n        value: {OKTA_TOKEN}\n"
    ));
    for i in 0..3 {
        let r = d.get("/Users?count=1").await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
    }
    let r = d.get("/Users?count=1").await;
    let retry_after = assert_throttled(&r, "with this token");

    // Another token has its own bucket; endpoints without authentication are not
    // counted against a token.
    let okta = send(
        d.request_unauthenticated(Method::GET, "/Users?count=1")
            .bearer_auth(OKTA_TOKEN),
    )
    .await;
    assert_eq!(okta.status, 200, "{}", okta.text);
    let spc = d.get("/ServiceProviderConfig").await;
    assert_eq!(spc.status, 200, "{}", spc.text);

    // After the advertised wait the token is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let r = d.get("/Users?count=1").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unauthenticated_flood_from_one_client_hits_the_per_client_limit() {
    let d = Daemon::start_with("rate_limit:\n  per_client:\n    per_second: 1\n    burst: 5\n");
    for i in 0..5 {
        let r = unauthenticated(&d, None).await;
        assert_eq!(r.status, 401, "request {i}: {}", r.text);
    }
    let r = unauthenticated(&d, None).await;
    assert_throttled(&r, "from this client");
    // The client limit comes before authentication: a valid token does not help.
    let r = d.get("/Users").await;
    assert_throttled(&r, "from this client");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_gets_no_fresh_bucket() {
    // The test client (127.0.0.1) is not a trusted proxy.
    let d = Daemon::start_with(
        "server:\n  trusted_proxies:\n    - 192.0.2.1\n\
         rate_limit:\n  per_client:\n    per_second: 1\n    burst: 5\n",
    );
    for i in 0..5 {
        let r = unauthenticated(&d, Some(&format!("198.51.100.{i}"))).await;
        assert_eq!(r.status, 401, "request {i}: {}", r.text);
    }
    let r = unauthenticated(&d, Some("203.0.113.99")).await;
    assert_throttled(&r, "from this client");
    let r = send(
        d.request_unauthenticated(Method::GET, "/Users")
            .header("forwarded", "for=203.0.113.98"),
    )
    .await;
    assert_throttled(&r, "from this client");
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let d = Daemon::start_with(
        "server:\n  trusted_proxies:\n    - 127.0.0.1\n\
         rate_limit:\n  per_client:\n    per_second: 1\n    burst: 3\n",
    );
    for i in 0..3 {
        let r = unauthenticated(&d, Some("198.51.100.1")).await;
        assert_eq!(r.status, 401, "request {i}: {}", r.text);
    }
    let r = unauthenticated(&d, Some("198.51.100.1")).await;
    assert_throttled(&r, "from this client");
    // A hop prepended by the client is never read: the proxy appended 198.51.100.1.
    let r = unauthenticated(&d, Some("198.51.100.77, 198.51.100.1")).await;
    assert_throttled(&r, "from this client");
    // Another forwarded client, and the proxy itself, have their own buckets.
    let r = unauthenticated(&d, Some("198.51.100.2")).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = unauthenticated(&d, None).await;
    assert_eq!(r.status, 401, "{}", r.text);
}

/// Entra sends about 25 requests/s per tenant, in bursts (behaviour.md §3.4): 30 at once,
/// every second for 3 s, from one client with one token, must all be served on the
/// default limits.
#[tokio::test(flavor = "multi_thread")]
async fn entras_documented_load_is_never_throttled_by_the_defaults() {
    let d = Daemon::start();
    let started = Instant::now();
    let mut statuses = Vec::new();
    for second in 0..3u32 {
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let rb = d.request(
                    Method::GET,
                    &format!("/Users?filter=userName+eq+%22user-{second}-{i}%40contoso.com%22"),
                );
                tokio::spawn(send(rb))
            })
            .collect();
        for task in tasks {
            let r = task.await.expect("request task");
            statuses.push((r.status, r.text));
        }
        let next = started + Duration::from_secs(u64::from(second) + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    assert_eq!(statuses.len(), 90);
    for (status, text) in &statuses {
        assert_eq!(*status, 200, "{text}");
    }
}
