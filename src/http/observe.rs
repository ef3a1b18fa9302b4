//! Observability at the HTTP edge: the per-request middleware and the operations routes.
//!
//! [`observe`] wraps every route: it records `scim_http_requests_total` and
//! `scim_http_request_duration_seconds` under the matched route template (never the raw
//! path; see [`endpoint_label`]) and writes the one log line of each request: request id,
//! actor (the bearer token's name), method, path without the query string (filters carry
//! personal data), status and duration. No body, header or secret is ever logged.
//!
//! The actor is only known inside the handler, once the `Authenticated` extractor has
//! checked the token; the middleware hands the request an [`ActorSlot`] that the
//! extractor fills through [`record_actor`].
//!
//! [`ops_router`] serves `GET /healthz` (the process serves), `GET /readyz` (the store
//! answers, the journal takes durable writes, the target is reachable or its backlog is
//! small) and `GET /metrics` (OpenMetrics text). They live outside the SCIM base path
//! and need no token: they expose counts and states, never identities or error texts.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::RequestId;
use crate::engine::Engine;
use crate::metrics;
use crate::scim::schema::ResourceKind;

/// The endpoint label of a request no route matched (404 fallback).
pub const UNMATCHED: &str = "unmatched";
/// The operations routes, logged at debug level while they succeed (probes every few
/// seconds would drown the request log).
const OPS_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
/// How long a readiness probe may wait for the store or the writer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Paths longer than this are cut in the log line.
const MAX_LOGGED_PATH: usize = 512;

/// Where the `Authenticated` extractor leaves the token name for the request log line.
/// [`observe`] puts one in every request's extensions.
#[derive(Debug, Clone, Default)]
pub struct ActorSlot(Arc<OnceLock<String>>);

impl ActorSlot {
    /// The token name, once the request authenticated.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// Records the authenticated token's name for the request log line; for the
/// `Authenticated` extractor: `observe::record_actor(&parts.extensions, name);`.
/// Does nothing when the request did not pass through [`observe`].
pub fn record_actor(extensions: &Extensions, token_name: &str) {
    if let Some(slot) = extensions.get::<ActorSlot>() {
        let _ = slot.0.set(token_name.to_string());
    }
}

/// The middleware: metrics and the one log line per request (see the module doc).
///
/// It reuses the request id an outer layer put in the extensions (`request_envelope`);
/// without one, it takes a well-formed `X-Request-Id` from the request or makes a UUID,
/// puts it in the extensions (handlers journal it) and on the response.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let endpoint = endpoint_label(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
        &path,
    );
    let (request_id, assigned_here) = match req.extensions().get::<RequestId>() {
        Some(id) => (id.0.clone(), false),
        None => {
            let id = incoming_request_id(req.headers())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            req.extensions_mut().insert(RequestId(id.clone()));
            (id, true)
        }
    };
    let actor = ActorSlot::default();
    req.extensions_mut().insert(actor.clone());

    let mut response = next.run(req).await;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if assigned_here
        && !response.headers().contains_key("x-request-id")
        && let Ok(v) = HeaderValue::from_str(&request_id)
    {
        response.headers_mut().insert("x-request-id", v);
    }
    metrics::http_request(&endpoint, method.as_str(), status, elapsed);
    let path = loggable_path(&path);
    let actor = actor.get().unwrap_or("-");
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    if OPS_PATHS.contains(&endpoint.as_str()) && response.status().is_success() {
        tracing::debug!(request_id = %request_id, actor, method = %method, path, status, duration_ms, "request");
    } else {
        tracing::info!(request_id = %request_id, actor, method = %method, path, status, duration_ms, "request");
    }
    response
}

/// A proxy's `X-Request-Id`, when it is short printable ASCII (it reaches logs and the
/// journal).
fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
}

/// The path for the log line, cut at `MAX_LOGGED_PATH` bytes (on a character boundary).
fn loggable_path(path: &str) -> &str {
    if path.len() <= MAX_LOGGED_PATH {
        return path;
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// The `endpoint` label: the matched route template, with two bounded refinements so
/// Users and Groups count apart: `{endpoint}` becomes the resource type's endpoint when
/// the path names one (`/scim/v2/{endpoint}/{id}` → `/scim/v2/Users/{id}`), and `{id}`
/// becomes `.search` for `POST …/Users/.search`. An unknown resource type keeps the
/// template (`/scim/v2/{endpoint}`); no route at all is [`UNMATCHED`].
pub fn endpoint_label(template: Option<&str>, path: &str) -> String {
    let Some(template) = template else {
        return UNMATCHED.to_string();
    };
    if !template.contains("{endpoint}") && !template.contains("{id}") {
        return template.to_string();
    }
    let wanted: Vec<&str> = template.split('/').collect();
    let given: Vec<&str> = path.split('/').collect();
    if wanted.len() != given.len() {
        return template.to_string();
    }
    wanted
        .iter()
        .zip(&given)
        .map(|(&t, &p)| match t {
            "{endpoint}" => ResourceKind::from_endpoint(p).map_or(t, |k| k.endpoint()),
            "{id}" if p == ".search" => ".search",
            _ => t,
        })
        .collect::<Vec<&str>>()
        .join("/")
}

/// What the operations routes need.
#[derive(Clone)]
struct Ops {
    /// Every endpoint's engine, the default one first.
    engines: Vec<(String, Engine)>,
    ready_max_pending: u64,
}

/// `GET /healthz`, `GET /readyz` and `GET /metrics`, with their own state, for
/// `Router::merge` into the application's router (any state type `S`). No authentication.
pub fn ops_router<S>(engines: Vec<(String, Engine)>, ready_max_pending: u64) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Ops {
            engines,
            ready_max_pending,
        })
}

fn uncached(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Liveness: answering at all is the whole test.
async fn healthz() -> Response {
    uncached(
        (StatusCode::OK, "ok\n").into_response(),
        "text/plain; charset=utf-8",
    )
}

/// Readiness: 200 or 503, with a JSON body naming every check and what failed.
async fn readyz(State(ops): State<Ops>) -> Response {
    let report = readiness(&ops).await;
    let status = if report.failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    uncached(
        (status, report.to_json().to_string()).into_response(),
        "application/json",
    )
}

/// `GET /metrics`: the backlog gauges are read fresh, then every family is rendered.
async fn metrics_text(State(ops): State<Ops>) -> Response {
    for delivery in ops
        .engines
        .iter()
        .filter_map(|(_, e)| e.delivery().cloned())
    {
        let read = tokio::time::timeout(
            PROBE_TIMEOUT,
            tokio::task::spawn_blocking(move || delivery.backlog()),
        )
        .await;
        if !matches!(read, Ok(Ok(Ok(_)))) {
            tracing::warn!(
                "cannot read the delivery backlog for /metrics; the gauges may be stale"
            );
        }
    }
    uncached(
        (StatusCode::OK, metrics::render()).into_response(),
        metrics::CONTENT_TYPE,
    )
}

/// The outcome of the readiness checks.
#[derive(Debug, Default)]
struct Readiness {
    /// `store`, `journal` and, with a target, `delivery`, in that order.
    checks: Vec<&'static str>,
    /// The failed checks, with why (no entry names or error texts: no authentication).
    failed: Vec<(&'static str, String)>,
    /// The delivery backlog, when a target is configured and it could be read.
    delivery: Option<Value>,
}

impl Readiness {
    fn fail(&mut self, check: &'static str, detail: impl Into<String>) {
        self.failed.push((check, detail.into()));
    }

    fn to_json(&self) -> Value {
        let checks: serde_json::Map<String, Value> = self
            .checks
            .iter()
            .map(|c| {
                let ok = !self.failed.iter().any(|(f, _)| f == c);
                (c.to_string(), json!(if ok { "ok" } else { "failed" }))
            })
            .collect();
        let failed: Vec<Value> = self
            .failed
            .iter()
            .map(|(check, detail)| json!({"check": check, "detail": detail}))
            .collect();
        let mut body = json!({
            "status": if self.failed.is_empty() { "ready" } else { "not ready" },
            "checks": checks,
            "failed": failed,
        });
        if let Some(delivery) = &self.delivery {
            body["delivery"] = delivery.clone();
        }
        body
    }
}

/// Every endpoint's readiness in one report: the default endpoint's as is, the others'
/// failures named by endpoint.
async fn readiness(ops: &Ops) -> Readiness {
    let mut report = Readiness::default();
    for (i, (name, engine)) in ops.engines.iter().enumerate() {
        let one = readiness_of(engine, ops.ready_max_pending).await;
        for check in one.checks {
            if !report.checks.contains(&check) {
                report.checks.push(check);
            }
        }
        for (check, detail) in one.failed {
            let detail = if i == 0 {
                detail
            } else {
                format!("endpoint {name}: {detail}")
            };
            report.failed.push((check, detail));
        }
        if i == 0 {
            report.delivery = one.delivery;
        }
    }
    report
}

async fn readiness_of(engine: &Engine, ready_max_pending: u64) -> Readiness {
    let mut report = Readiness {
        checks: vec!["store", "journal"],
        ..Readiness::default()
    };
    let probe = engine.clone();
    let reads = tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            let engine = probe;
            let store = engine.store().read(|r| r.journal_head()).map(|_| ());
            let delivery = engine
                .delivery()
                .map(|d| (d.backlog(), d.target_down(), d.last_error_code()));
            (store, delivery)
        }),
    )
    .await;
    let delivery = match reads {
        Ok(Ok((Ok(()), delivery))) => delivery,
        Ok(Ok((Err(e), delivery))) => {
            tracing::error!(error = %e, "readiness: the state store cannot be read");
            report.fail("store", "the state store cannot be read (see the log)");
            delivery
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "readiness: the store check failed");
            report.fail("store", "the state store check failed (see the log)");
            None
        }
        Err(_) => {
            report.fail(
                "store",
                format!(
                    "the state store did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                ),
            );
            None
        }
    };

    if let Some(detail) = journal_problem(engine).await {
        report.fail("journal", detail);
    }

    if engine.delivery().is_some() {
        report.checks.push("delivery");
        match delivery {
            Some((Ok(backlog), down, code)) => {
                report.delivery = Some(json!({
                    "pending": backlog.pending,
                    "oldest_pending_seconds": backlog.oldest_age.map_or(0.0, |d| d.as_secs_f64()),
                    "target_reachable": !down,
                }));
                if down && backlog.pending > ready_max_pending {
                    report.fail(
                        "delivery",
                        format!(
                            "the target is unreachable ({}) and the backlog of {} changes pending delivery is more than server.ready_max_pending ({})",
                            code.unwrap_or("other"),
                            backlog.pending,
                            ready_max_pending
                        ),
                    );
                }
            }
            Some((Err(e), _, _)) => {
                tracing::error!(error = %e, "readiness: cannot read the delivery backlog");
                report.fail(
                    "delivery",
                    "the delivery backlog cannot be read (see the log)",
                );
            }
            // The store check failed or timed out and said so.
            None => report.fail("delivery", "not checked: the state store did not answer"),
        }
    }
    report
}

/// Why the journal cannot take durable writes now, if it cannot. Cheap while the last
/// commit succeeded; after a failed one, a probe write (`meta.ready_probe`) tells whether
/// the storage has recovered, so readiness returns without waiting for client traffic.
async fn journal_problem(engine: &Engine) -> Option<String> {
    let health = engine.store().writer_health();
    if !health.running {
        return Some("the journal writer has stopped; restart the daemon (see the log)".into());
    }
    if health.last_commit_ok {
        return None;
    }
    let now = crate::journal::timestamp(time::OffsetDateTime::now_utc());
    let probe = tokio::time::timeout(
        PROBE_TIMEOUT,
        engine
            .store()
            .write(move |tx| tx.meta_set("ready_probe", &now)),
    )
    .await;
    match probe {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "readiness: the journal probe write failed");
            Some("the journal cannot be written: the last commit and a probe write failed (storage full, read-only or failing; see the log)".into())
        }
        Err(_) => Some(format!(
            "the journal writer did not commit a probe write within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::extract::FromRequestParts;
    use axum::http::request::Parts;
    use axum::middleware;
    use tower::ServiceExt;

    use super::*;
    use crate::engine::delivery::Delivery;
    use crate::journal::record::Op;
    use crate::mapping::model::Mapping;
    use crate::store::{NewRecord, Store};
    use crate::target::{Change, Outcome, Target, TargetError};

    #[test]
    fn endpoint_labels_are_templates_with_the_resource_type() {
        let cases = [
            (None, "/nowhere", "unmatched"),
            (Some("/healthz"), "/healthz", "/healthz"),
            (
                Some("/scim/v2/{endpoint}"),
                "/scim/v2/Users",
                "/scim/v2/Users",
            ),
            (
                Some("/scim/v2/{endpoint}"),
                "/scim/v2/groups",
                "/scim/v2/Groups",
            ),
            (
                Some("/scim/v2/{endpoint}"),
                "/scim/v2/Devices",
                "/scim/v2/{endpoint}",
            ),
            (
                Some("/scim/v2/{endpoint}/{id}"),
                "/scim/v2/Users/2819c223-7f76-453a-919d-413861904646",
                "/scim/v2/Users/{id}",
            ),
            (
                Some("/scim/v2/{endpoint}/{id}"),
                "/scim/v2/Groups/.search",
                "/scim/v2/Groups/.search",
            ),
            (
                Some("/scim/v2/Schemas/{id}"),
                "/scim/v2/Schemas/urn:x",
                "/scim/v2/Schemas/{id}",
            ),
            (Some("/{endpoint}/{id}"), "/Users/a", "/Users/{id}"),
        ];
        for (template, path, want) in cases {
            assert_eq!(endpoint_label(template, path), want, "{template:?} {path}");
        }
    }

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let path = format!("/{}", "é".repeat(400));
        let cut = loggable_path(&path);
        assert!(cut.len() <= MAX_LOGGED_PATH && path.starts_with(cut));
        assert_eq!(loggable_path("/Users"), "/Users");
    }

    /// Stands in for `Authenticated`: records the actor the way auth.rs does.
    struct FakeAuth;

    impl<S: Send + Sync> FromRequestParts<S> for FakeAuth {
        type Rejection = StatusCode;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
            match parts.headers.get(header::AUTHORIZATION) {
                Some(_) => {
                    record_actor(&parts.extensions, "entra");
                    Ok(FakeAuth)
                }
                None => Err(StatusCode::UNAUTHORIZED),
            }
        }
    }

    async fn scim_handler(_: FakeAuth) -> &'static str {
        "{}"
    }

    fn open_engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).expect("open the store");
        (dir, Engine::new(Arc::new(store)))
    }

    /// The application's shape: SCIM routes nested under a base path, the ops routes
    /// merged at the root, a fallback, and `observe` around it all.
    fn app(base: &str, engine: Engine, ready_max_pending: u64) -> Router {
        let scim = Router::new()
            .route("/{endpoint}", get(scim_handler))
            .route("/{endpoint}/{id}", get(scim_handler).post(scim_handler));
        Router::new()
            .nest(base, scim)
            .merge(ops_router(
                vec![("default".to_string(), engine)],
                ready_max_pending,
            ))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(middleware::from_fn(observe))
    }

    async fn call(app: &Router, method: &str, uri: &str, token: bool) -> Response {
        let mut req = Request::builder().method(method).uri(uri);
        if token {
            req = req.header(header::AUTHORIZATION, "Bearer x");
        }
        app.clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.trim().split(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn requests_count_under_their_route_template_and_log_one_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (_dir, engine) = open_engine();
        let app = app("/observe-test/v2", engine, 10);
        for _ in 0..2 {
            let r = call(
                &app,
                "GET",
                "/observe-test/v2/Users?filter=userName%20eq%20%22adele%22",
                true,
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK);
            assert!(r.headers().contains_key("x-request-id"));
        }
        let r = call(&app, "GET", "/observe-test/v2/Groups/42", false).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = call(&app, "GET", "/observe-test/nothing/here/at/all", true).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        let r = call(&app, "GET", "/metrics", false).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], metrics::CONTENT_TYPE);
        let text = body_text(r).await;
        assert_eq!(
            sample(
                &text,
                r#"scim_http_requests_total{endpoint="/observe-test/v2/Users",method="GET",status="200"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"scim_http_requests_total{endpoint="/observe-test/v2/Groups/{id}",method="GET",status="401"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert!(
            sample(
                &text,
                r#"scim_http_requests_total{endpoint="unmatched",method="GET",status="404"}"#
            )
            .is_some(),
            "{text}"
        );

        let logged = String::from_utf8_lossy(
            &captured
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned();
        let lines: Vec<Value> = logged
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["fields"]["message"] == "request")
            .collect();
        let users: Vec<&Value> = lines
            .iter()
            .filter(|l| l["fields"]["path"] == "/observe-test/v2/Users")
            .collect();
        assert_eq!(users.len(), 2, "one line per request:\n{logged}");
        let f = &users[0]["fields"];
        assert_eq!(f["actor"], "entra", "{logged}");
        assert_eq!(f["method"], "GET");
        assert_eq!(f["status"], 200);
        assert!(f["duration_ms"].as_f64().is_some(), "{logged}");
        assert_eq!(f["request_id"].as_str().map(str::len), Some(36), "{logged}");
        assert!(
            !logged.contains("adele"),
            "the query string is never logged:\n{logged}"
        );
        let anonymous = lines
            .iter()
            .find(|l| l["fields"]["status"] == 401)
            .expect("the 401 is logged");
        assert_eq!(anonymous["fields"]["actor"], "-");
        let metrics_line = lines
            .iter()
            .find(|l| l["fields"]["path"] == "/metrics")
            .expect("the scrape is logged");
        assert_eq!(metrics_line["level"], "DEBUG", "probes log at debug");
    }

    #[tokio::test]
    async fn a_request_id_from_the_proxy_is_kept() {
        let (_dir, engine) = open_engine();
        let app = app("/observe-id/v2", engine, 10);
        let req = Request::builder()
            .uri("/observe-id/v2/Users")
            .header(header::AUTHORIZATION, "Bearer x")
            .header("x-request-id", "proxy-7")
            .body(Body::empty())
            .expect("request");
        let r = app.oneshot(req).await.expect("infallible");
        assert_eq!(r.headers()["x-request-id"], "proxy-7");
    }

    #[tokio::test]
    async fn healthz_and_readyz_answer_without_a_target() {
        let (_dir, engine) = open_engine();
        let app = app("/observe-ready/v2", engine, 10);
        let r = call(&app, "GET", "/healthz", false).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body_text(r).await, "ok\n");
        let r = call(&app, "GET", "/readyz", false).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = serde_json::from_str(&body_text(r).await).expect("JSON");
        assert_eq!(
            body,
            json!({"status": "ready", "checks": {"store": "ok", "journal": "ok"}, "failed": []})
        );
    }

    /// A target that is never reachable.
    struct DownTarget;

    impl Target for DownTarget {
        fn apply(&self, _: &Change) -> Outcome {
            Outcome::Unavailable(
                "cannot connect to the LDAP directory: ldap://127.0.0.1:9: I/O error: Connection refused (os error 111)".into(),
            )
        }
        fn plan(&self, _: &Change) -> Result<Vec<String>, Outcome> {
            Err(self.apply(&Change::Nothing))
        }
        fn held(&self, _: ResourceKind) -> Result<Vec<String>, TargetError> {
            Ok(Vec::new())
        }
        fn archived_before(&self, _: ResourceKind, _: &str) -> Result<Vec<String>, TargetError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn readyz_fails_while_the_target_is_down_and_the_backlog_too_large() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Arc::new(Store::open(dir.path()).expect("open the store"));
        let mapping = Arc::new(Mapping {
            users: None,
            groups: None,
            schema: Default::default(),
            ldap: Default::default(),
        });
        let delivery =
            Delivery::start(store.clone(), mapping, Arc::new(DownTarget)).expect("start delivery");
        for id in ["a", "b"] {
            store
                .write(move |tx| {
                    tx.journal_append(
                        NewRecord {
                            time: crate::journal::timestamp(time::OffsetDateTime::now_utc()),
                            endpoint: "default".into(),
                            actor: "test".into(),
                            client: None,
                            request_id: None,
                            op: Op::Create,
                            kind: ResourceKind::User,
                            id: id.into(),
                            version_before: None,
                            version_after: Some(1),
                            image: json!({"id": id, "userName": id}),
                            member_delta: None,
                        },
                        "pending",
                    )
                    .map(|_| ())
                })
                .await
                .expect("append a pending record");
        }
        delivery.notify();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !delivery.target_down() {
            assert!(
                Instant::now() < deadline,
                "the worker never tried the target"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let engine = Engine::new(store.clone()).with_delivery(delivery, false);

        let strict = app("/observe-down/v2", engine.clone(), 1);
        let r = call(&strict, "GET", "/readyz", false).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = serde_json::from_str(&body_text(r).await).expect("JSON");
        assert_eq!(body["status"], "not ready", "{body}");
        assert_eq!(body["checks"]["delivery"], "failed", "{body}");
        assert_eq!(body["checks"]["store"], "ok", "{body}");
        assert_eq!(body["failed"][0]["check"], "delivery", "{body}");
        let detail = body["failed"][0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("backlog of 2"), "{detail}");
        assert!(detail.contains("(connect)"), "{detail}");
        assert_eq!(body["delivery"]["pending"], 2, "{body}");
        assert_eq!(body["delivery"]["target_reachable"], false, "{body}");

        let lenient = app("/observe-down2/v2", engine, 2);
        let r = call(&lenient, "GET", "/readyz", false).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "a backlog up to the limit is ready"
        );

        let r = call(&lenient, "GET", "/metrics", false).await;
        let text = body_text(r).await;
        assert!(
            text.contains("scim_delivery_pending{endpoint=\"default\"} "),
            "{text}"
        );
        assert!(
            sample(
                &text,
                r#"scim_target_errors_total{outcome="unavailable",code="connect"}"#
            )
            .unwrap_or(0.0)
                >= 1.0,
            "{text}"
        );
    }
}
