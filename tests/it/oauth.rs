//! The OAuth 2.0 token endpoint (client credentials, RFC 6749 §4.4): a configured client
//! trades its id and secret for a short-lived bearer token at `<base_path>/oauth/token`,
//! and that token authenticates SCIM requests on that endpoint only, as the client, until
//! it expires or the client is removed.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use crate::harness::{Daemon, Resp, SCIM_JSON, TOKEN, send};

const OKTA_SECRET: &str = "it-okta-client-secret-0123456789abcdefghij";
const AUDIT_SECRET: &str = "it-audit-client-secret-0123456789abcdefghi";
const FAB_SECRET: &str = "it-fabrikam-client-secret-0123456789abcdef";
const FORM: &str = "application/x-www-form-urlencoded";
const GRANT: &str = "grant_type=client_credentials";

/// The okta client's lines under `clients:` (removed again by the reload test).
const OKTA_CLIENT: &str = "      - client_id: okta
        secret:
          value: it-okta-client-secret-0123456789abcdefghij
";

/// `auth.oauth` with two clients: `okta` (read-write) and `audit-app` (read-only, named
/// `auditor`), tokens valid for `lifetime`.
fn oauth_yaml(lifetime: &str) -> String {
    format!(
        "auth:
  oauth:
    token_lifetime: {lifetime}
    clients:
{OKTA_CLIENT}      - client_id: audit-app
        name: auditor
        read_only: true
        secret:
          value: {AUDIT_SECRET}
"
    )
}

fn daemon() -> Daemon {
    Daemon::start_with(&oauth_yaml("1h"))
}

/// `POST <token_url>` with `body` (a form) and, when given, HTTP Basic credentials.
async fn token_request(d: &Daemon, url: &str, basic: Option<(&str, &str)>, body: &str) -> Resp {
    let mut rb = d
        .request_unauthenticated(Method::POST, url)
        .header(CONTENT_TYPE, FORM)
        .body(body.to_owned());
    if let Some((id, secret)) = basic {
        rb = rb.basic_auth(id, Some(secret));
    }
    send(rb).await
}

/// A token for `id`/`secret` from the default endpoint, with HTTP Basic.
async fn token_for(d: &Daemon, id: &str, secret: &str) -> String {
    let r = token_request(d, "/oauth/token", Some((id, secret)), GRANT).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {}", r.text))
        .to_owned()
}

/// `method url` with `token` as the bearer, and `body` as SCIM JSON if given.
async fn scim(d: &Daemon, token: &str, method: Method, url: &str, body: Option<&str>) -> Resp {
    let mut rb = d.request_unauthenticated(method, url).bearer_auth(token);
    if let Some(body) = body {
        rb = rb.header(CONTENT_TYPE, SCIM_JSON).body(body.to_owned());
    }
    send(rb).await
}

fn assert_oauth_error(r: &Resp, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"], error, "{}", r.text);
    assert_eq!(r.media_type().as_deref(), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_gets_a_token_with_basic_auth_and_it_authenticates_scim_requests_as_the_client() {
    let d = daemon();
    let r = token_request(&d, "/oauth/token", Some(("okta", OKTA_SECRET)), GRANT).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.media_type().as_deref(), Some("application/json"));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3600);
    let token = r.body["access_token"].as_str().expect("access_token");
    assert_eq!(token.len(), 64, "{token}");
    assert_ne!(token, OKTA_SECRET);

    let r = scim(&d, token, Method::GET, "/Users", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = json!({"userName": "made.by.okta@example.com"}).to_string();
    let r = scim(&d, token, Method::POST, "/Users", Some(&body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The client secret itself is not a bearer token.
    let r = scim(&d, OKTA_SECRET, Method::GET, "/Users", None).await;
    assert_eq!(r.status, 401, "{}", r.text);

    // The journal records the client's name as the actor.
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(d.dir())
        .args(["journal", "list", "--actor", "okta", "--config"])
        .arg(&d.config_path)
        .arg("--state-dir")
        .arg(&d.state_dir)
        .output()
        .expect("run journal list");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listing.lines().filter(|l| l.contains(" create ")).count(),
        1,
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_gets_a_token_with_client_id_and_client_secret_form_fields() {
    let d = daemon();
    let body = format!("{GRANT}&client_id=okta&client_secret={OKTA_SECRET}&scope=scim");
    let r = token_request(&d, "/oauth/token", None, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["token_type"], "Bearer");
    let token = r.body["access_token"].as_str().expect("access_token");
    let r = scim(&d, token, Method::GET, "/Users", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The static token keeps working next to it.
    assert_eq!(
        scim(&d, TOKEN, Method::GET, "/Users", None).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_client_secret_is_401_invalid_client() {
    let d = daemon();
    let r = token_request(&d, "/oauth/token", Some(("okta", AUDIT_SECRET)), GRANT).await;
    assert_oauth_error(&r, 401, "invalid_client");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Basic"), "{challenge:?}");
    assert!(!r.text.contains(AUDIT_SECRET), "{}", r.text);
    let body = format!("{GRANT}&client_id=okta&client_secret=it-wrong-secret-0123456789abcdef");
    let r = token_request(&d, "/oauth/token", None, &body).await;
    assert_oauth_error(&r, 401, "invalid_client");
    // No credentials at all.
    let r = token_request(&d, "/oauth/token", None, GRANT).await;
    assert_oauth_error(&r, 401, "invalid_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_grant_type_is_400_unsupported_grant_type() {
    let d = daemon();
    let r = token_request(
        &d,
        "/oauth/token",
        Some(("okta", OKTA_SECRET)),
        "grant_type=password&username=a&password=b",
    )
    .await;
    assert_oauth_error(&r, 400, "unsupported_grant_type");
    // Not a form at all.
    let r = send(
        d.request_unauthenticated(Method::POST, "/oauth/token")
            .basic_auth("okta", Some(OKTA_SECRET))
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"grant_type": "client_credentials"}).to_string()),
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_401() {
    let d = Daemon::start_with(&oauth_yaml("1s"));
    let r = token_request(&d, "/oauth/token", Some(("okta", OKTA_SECRET)), GRANT).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["expires_in"], 1);
    let token = r.body["access_token"].as_str().expect("access_token");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = scim(&d, token, Method::GET, "/Users", None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    // A new one works.
    let token = token_for(&d, "okta", OKTA_SECRET).await;
    assert_eq!(
        scim(&d, &token, Method::GET, "/Users", None).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_clients_token_can_read_but_not_post() {
    let d = daemon();
    let token = token_for(&d, "audit-app", AUDIT_SECRET).await;
    let r = scim(&d, &token, Method::GET, "/Users", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = json!({"userName": "not.allowed@example.com"}).to_string();
    let r = scim(&d, &token, Method::POST, "/Users", Some(&body)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("auditor"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_one_endpoint_is_401_on_another() {
    let d = Daemon::start_with(&format!(
        "{}endpoints:
  - name: fabrikam
    auth:
      oauth:
        clients:
          - client_id: fabrikam-okta
            secret:
              value: {FAB_SECRET}
",
        oauth_yaml("1h")
    ));
    let fabrikam = |path: &str| format!("http://{}/scim/fabrikam/v2{path}", d.addr);

    let default_token = token_for(&d, "okta", OKTA_SECRET).await;
    let r = token_request(
        &d,
        &fabrikam("/oauth/token"),
        Some(("fabrikam-okta", FAB_SECRET)),
        GRANT,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fab_token = r.body["access_token"].as_str().expect("access_token");

    let status = |r: Resp| r.status;
    assert_eq!(
        status(scim(&d, fab_token, Method::GET, &fabrikam("/Users"), None).await),
        200
    );
    assert_eq!(
        status(scim(&d, &default_token, Method::GET, &fabrikam("/Users"), None).await),
        401
    );
    assert_eq!(
        status(scim(&d, fab_token, Method::GET, "/Users", None).await),
        401
    );
    // A client of one endpoint is unknown at the other's token endpoint.
    let r = token_request(
        &d,
        &fabrikam("/oauth/token"),
        Some(("okta", OKTA_SECRET)),
        GRANT,
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
}

/// Waits (bounded) until `GET /Users` with `token` answers `want`.
async fn wait_for_status(d: &Daemon, token: &str, want: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = scim(d, token, Method::GET, "/Users", None).await.status;
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

#[tokio::test(flavor = "multi_thread")]
async fn after_the_client_is_removed_and_the_config_reloaded_its_token_is_refused() {
    let d = daemon();
    let okta_token = token_for(&d, "okta", OKTA_SECRET).await;
    let audit_token = token_for(&d, "audit-app", AUDIT_SECRET).await;
    wait_for_status(&d, &okta_token, 200, "the okta token before the reload").await;

    let text = d.config_text();
    assert!(text.contains(OKTA_CLIENT), "{text}");
    std::fs::write(&d.config_path, text.replace(OKTA_CLIENT, "")).expect("rewrite the config");
    d.signal("HUP");
    wait_for_status(
        &d,
        &okta_token,
        401,
        "the removed client's token after a reload",
    )
    .await;
    // The remaining client's token survives the reload, and the removed client can get
    // no new one.
    assert_eq!(
        scim(&d, &audit_token, Method::GET, "/Users", None)
            .await
            .status,
        200
    );
    let r = token_request(&d, "/oauth/token", Some(("okta", OKTA_SECRET)), GRANT).await;
    assert_oauth_error(&r, 401, "invalid_client");
}
