//! Process-wide metrics, rendered for Prometheus at `GET /metrics` (OpenMetrics text).
//!
//! One registry, created on first use and kept in a `OnceLock`; every other piece of
//! state is an atomic inside it. The rest of the crate records through the small typed
//! functions below (`http_request`, `journal_commit`, `delivery`, `delivery_backlog`,
//! `rate_limited`) and never touches prometheus-client itself, so the families, their
//! names and their label sets are all declared here.
//!
//! A labelled family appears in the output once it has a first sample; the known values
//! of `scim_deliveries_total` and `scim_rate_limited_total` are there from the start (0).
//!
//! Label values are bounded: routes are templates (never raw paths), methods outside the
//! standard set become `other`, target error codes come from a fixed list
//! ([`error_code`]), and nothing carries a token name, a resource id or any request data.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `scim_http_requests_total` | counter | `endpoint`, `method`, `status` |
//! | `scim_http_request_duration_seconds` | histogram | `endpoint`, `method` |
//! | `scim_journal_append_seconds` | histogram | (time from a write job's submission to its commit) |
//! | `scim_journal_batch_size` | histogram | (jobs per group commit) |
//! | `scim_delivery_pending` | gauge | `endpoint` (journal records not yet delivered) |
//! | `scim_delivery_oldest_pending_seconds` | gauge | `endpoint` (age of the oldest of them; 0 when none) |
//! | `scim_deliveries_total` | counter | `outcome`: applied, rejected, unavailable (per attempt) |
//! | `scim_target_errors_total` | counter | `outcome`: rejected, unavailable; `code` |
//! | `scim_rate_limited_total` | counter | `kind`: token, client |

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::target::Outcome;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request latency buckets, seconds: 1 ms to 10 s (a write waits up to 5 s for delivery).
const HTTP_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Journal append buckets, seconds: 0.5 ms to 5 s (an fsync is a few ms on a good disk).
const JOURNAL_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    endpoint: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetErrorLabels {
    outcome: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    journal_append: Histogram,
    journal_batch: Histogram,
    delivery_pending: Family<EndpointLabels, Gauge>,
    delivery_oldest: Family<EndpointLabels, Gauge<f64, AtomicU64>>,
    deliveries: Family<OutcomeLabels, Counter>,
    delivery_fed: Counter,
    target_errors: Family<TargetErrorLabels, Counter>,
    rate_limited: Family<KindLabels, Counter>,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabels, Counter>,
    journal_commit_failures: Counter,
    store_writable: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "scim_http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(http_histogram);
        registry.register_with_unit(
            "scim_http_request_duration",
            "Time from a request's arrival to its response, by route template and method",
            Unit::Seconds,
            http_duration.clone(),
        );
        let journal_append = Histogram::new(JOURNAL_BUCKETS);
        registry.register_with_unit(
            "scim_journal_append",
            "Time from a write job's submission to the durable commit of its group",
            Unit::Seconds,
            journal_append.clone(),
        );
        let journal_batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "scim_journal_batch_size",
            "Write jobs per group commit",
            journal_batch.clone(),
        );
        let delivery_pending = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "scim_delivery_pending",
            "Journal records not yet delivered to the target",
            delivery_pending.clone(),
        );
        let delivery_oldest = Family::<EndpointLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "scim_delivery_oldest_pending",
            "Age of the oldest journal record not yet delivered (0 when none)",
            Unit::Seconds,
            delivery_oldest.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "scim_deliveries",
            "Delivery attempts, by outcome (applied, rejected, unavailable)",
            deliveries.clone(),
        );
        let delivery_fed = Counter::default();
        registry.register(
            "scim_delivery_fed",
            "Records a delivery round took while it ran, as they committed, and converged beside its own (new users, into a directory)",
            delivery_fed.clone(),
        );
        let target_errors = Family::<TargetErrorLabels, Counter>::default();
        registry.register(
            "scim_target_errors",
            "Failed delivery attempts, by outcome and error code (LDAP result name or class)",
            target_errors.clone(),
        );
        let rate_limited = Family::<KindLabels, Counter>::default();
        registry.register(
            "scim_rate_limited",
            "Requests refused by a rate limit, by limit (token, client)",
            rate_limited.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "scim_http_connections_open",
            "HTTP connections open now",
            connections_open.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "scim_http_connections_refused",
            "Connections closed at once because a limit was reached (total: server.max_connections, client: server.max_connections_per_client)",
            connections_refused.clone(),
        );
        let journal_commit_failures = Counter::default();
        registry.register(
            "scim_journal_commit_failures",
            "Group commits of the state store and journal that failed (disk full, read-only, IO error, locked): their writes were refused",
            journal_commit_failures.clone(),
        );
        let store_writable = Gauge::default();
        store_writable.set(1);
        registry.register(
            "scim_store_writable",
            "1 while the last group commit of the state store and journal succeeded, 0 after a failed one until a commit succeeds",
            store_writable.clone(),
        );
        // Known label values start at 0, so rates and absence alerts work from the start.
        for outcome in ["applied", "rejected", "unavailable"] {
            deliveries.get_or_create(&OutcomeLabels { outcome }).get();
        }
        let default = EndpointLabels {
            endpoint: crate::engine::DEFAULT_ENDPOINT.to_string(),
        };
        delivery_pending.get_or_create(&default).get();
        delivery_oldest.get_or_create(&default).get();
        for kind in ["token", "client"] {
            rate_limited.get_or_create(&KindLabels { kind }).get();
        }
        for reason in ["total", "client"] {
            connections_refused
                .get_or_create(&ReasonLabels { reason })
                .get();
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            journal_append,
            journal_batch,
            delivery_pending,
            delivery_oldest,
            deliveries,
            delivery_fed,
            target_errors,
            rate_limited,
            connections_open,
            connections_refused,
            journal_commit_failures,
            store_writable,
        }
    }
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The method as a label value: the standard methods, else `other` (bounded).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

/// One answered request. `endpoint` is the route template (`/scim/v2/Users/{id}`) or
/// `unmatched`, never a raw path: the caller keeps it bounded.
pub fn http_request(endpoint: &str, method: &str, status: u16, duration: Duration) {
    let m = metrics();
    let method = method_label(method);
    m.http_requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.to_string(),
            method,
            status,
        })
        .inc();
    m.http_duration
        .get_or_create(&RouteLabels {
            endpoint: endpoint.to_string(),
            method,
        })
        .observe(duration.as_secs_f64());
}

/// One group commit of `jobs` jobs. `waits` are the committed jobs' times from
/// submission to commit (empty when the commit failed: nothing was appended).
pub fn journal_commit(jobs: usize, waits: impl IntoIterator<Item = Duration>) {
    let m = metrics();
    m.journal_batch.observe(jobs as f64);
    for wait in waits {
        m.journal_append.observe(wait.as_secs_f64());
    }
}

/// An endpoint's delivery backlog: records pending and the age of the oldest (`None`: no
/// backlog).
pub fn delivery_backlog(endpoint: &str, pending: u64, oldest: Option<Duration>) {
    let m = metrics();
    let labels = EndpointLabels {
        endpoint: endpoint.to_string(),
    };
    m.delivery_pending
        .get_or_create(&labels)
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    m.delivery_oldest
        .get_or_create(&labels)
        .set(oldest.map_or(0.0, |d| d.as_secs_f64()));
}

/// Why a delivery failed, when the failure did not come from the target itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureSource {
    /// The target answered: the code is derived from its diagnostic ([`error_code`]).
    Target,
    /// The mapping refused the record before the target saw it (`code="mapping"`).
    Mapping,
    /// The journal record could not be decoded (`code="record"`).
    Record,
}

/// One delivery attempt's verdict: `scim_deliveries_total{outcome}`, and for a failure
/// `scim_target_errors_total{outcome,code}`.
pub fn delivery(outcome: &Outcome, source: FailureSource) {
    let m = metrics();
    let (label, detail) = match outcome {
        Outcome::Applied => ("applied", None),
        Outcome::Rejected(d) => ("rejected", Some(d)),
        Outcome::Unavailable(d) => ("unavailable", Some(d)),
    };
    m.deliveries
        .get_or_create(&OutcomeLabels { outcome: label })
        .inc();
    if let Some(detail) = detail {
        let code = match source {
            FailureSource::Target => error_code(detail),
            FailureSource::Mapping => "mapping",
            FailureSource::Record => "record",
        };
        m.target_errors
            .get_or_create(&TargetErrorLabels {
                outcome: label,
                code,
            })
            .inc();
    }
}

/// A record a running delivery round took as it committed: `scim_delivery_fed_total`.
pub fn delivery_fed() {
    metrics().delivery_fed.inc();
}

/// A request refused by a rate limit: `kind` is `token` (per bearer token) or `client`
/// (per client address); anything else is counted as `other`.
pub fn rate_limited(kind: &str) {
    let kind = match kind {
        "token" => "token",
        "client" => "client",
        _ => "other",
    };
    metrics()
        .rate_limited
        .get_or_create(&KindLabels { kind })
        .inc();
}

/// The number of HTTP connections open now.
pub fn connections_open(open: usize) {
    metrics()
        .connections_open
        .set(i64::try_from(open).unwrap_or(i64::MAX));
}

/// A connection closed at once by a limit: `reason` is `total` or `client`.
pub fn connection_refused(reason: &'static str) {
    let reason = if reason == "client" {
        "client"
    } else {
        "total"
    };
    metrics()
        .connections_refused
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// The outcome of a group commit of the state store and journal.
pub fn journal_commit_outcome(ok: bool) {
    let m = metrics();
    if !ok {
        m.journal_commit_failures.inc();
    }
    m.store_writable.set(i64::from(ok));
}

/// Every family in the OpenMetrics text format (ends with `# EOF`).
pub fn render() -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &metrics().registry) {
        // Writing into a String cannot fail; keep whatever was written.
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// LDAP result code names (RFC 4511 appendix A), as the LDAP target and ldap3 write them.
const LDAP_CODES: [&str; 38] = [
    "operationsError",
    "protocolError",
    "timeLimitExceeded",
    "sizeLimitExceeded",
    "authMethodNotSupported",
    "strongerAuthRequired",
    "referral",
    "adminLimitExceeded",
    "unavailableCriticalExtension",
    "confidentialityRequired",
    "saslBindInProgress",
    "noSuchAttribute",
    "undefinedAttributeType",
    "inappropriateMatching",
    "constraintViolation",
    "attributeOrValueExists",
    "invalidAttributeSyntax",
    "noSuchObject",
    "aliasProblem",
    "invalidDNSyntax",
    "aliasDereferencingProblem",
    "inappropriateAuthentication",
    "invalidCredentials",
    "insufficientAccessRights",
    "busy",
    "unavailable",
    "unwillingToPerform",
    "loopDetect",
    "namingViolation",
    "objectClassViolation",
    "notAllowedOnNonLeaf",
    "notAllowedOnRDN",
    "entryAlreadyExists",
    "objectClassModsProhibited",
    "affectsMultipleDSAs",
    "other",
    "abandoned",
    "assertionFailed",
];

/// Code names that are also plain words: they count only as `name:` or `(name)`, the
/// shapes in which the LDAP target and ldap3 write a result code.
const LDAP_WORDS: [&str; 4] = ["busy", "unavailable", "other", "referral"];

/// Classes recognised in a diagnostic when it names no LDAP result code, checked in
/// order (lower-cased substrings). SQLite's messages first: "disk I/O error" is storage.
const CLASSES: [(&str, &str); 17] = [
    ("constraint failed", "constraint"),
    ("database is locked", "locked"),
    ("database table is locked", "locked"),
    ("database is busy", "locked"),
    ("database or disk is full", "disk_full"),
    ("readonly database", "readonly"),
    ("disk i/o error", "io"),
    ("unable to open database", "cannot_open"),
    ("datatype mismatch", "type_mismatch"),
    ("too big", "too_big"),
    ("links file", "links"),
    ("disappeared while being converged", "vanished"),
    ("tls", "tls"),
    ("timeout", "timeout"),
    ("timed out", "timeout"),
    ("cannot connect", "connect"),
    ("i/o error", "connect"),
];

/// The `code` label of a target's diagnostic: the LDAP result code name it carries
/// (`objectClassViolation: …`, `add uid=a,…: busy: …`, `rc=49 (invalidCredentials)`),
/// else a short class (`connect`, `timeout`, `tls`, `constraint`, `locked`, `disk_full`,
/// …), else `other`. Always one of a fixed set of values.
pub fn error_code(detail: &str) -> &'static str {
    if let Some(code) = ldap_code(detail) {
        return code;
    }
    let lower = detail.to_ascii_lowercase();
    if let Some((_, class)) = CLASSES.iter().find(|(needle, _)| lower.contains(needle)) {
        return class;
    }
    if [
        "connection refused",
        "connection reset",
        "broken pipe",
        "send error",
        "recv error",
    ]
    .iter()
    .any(|n| lower.contains(n))
    {
        return "connect";
    }
    "other"
}

/// The first LDAP result code name in `detail`, as a whole word.
fn ldap_code(detail: &str) -> Option<&'static str> {
    let bytes = detail.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_alphanumeric() {
            start += 1;
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_alphanumeric())
            .map_or(bytes.len(), |n| start + n);
        let word = &detail[start..end];
        if let Some(code) = LDAP_CODES.iter().find(|c| **c == word) {
            let before = start.checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(end).copied();
            let shaped = after == Some(b':') || (before == Some(b'(') && after == Some(b')'));
            if !LDAP_WORDS.contains(code) || shaped {
                return Some(code);
            }
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `prefix` (name and labels).
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.trim().split(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn render_declares_every_family_and_ends_with_eof() {
        // A labelled family is rendered once it has a first sample.
        http_request("/metrics-test/families", "GET", 200, Duration::ZERO);
        delivery(
            &Outcome::Unavailable("timeout".into()),
            FailureSource::Target,
        );
        rate_limited("token");
        let text = render();
        for family in [
            "# TYPE scim_http_requests counter",
            "# TYPE scim_http_request_duration_seconds histogram",
            "# TYPE scim_journal_append_seconds histogram",
            "# TYPE scim_journal_batch_size histogram",
            "# TYPE scim_delivery_pending gauge",
            "# TYPE scim_delivery_oldest_pending_seconds gauge",
            "# TYPE scim_deliveries counter",
            "# TYPE scim_target_errors counter",
            "# TYPE scim_rate_limited counter",
        ] {
            assert!(text.contains(family), "{family} missing in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn http_requests_count_by_template_method_and_status() {
        let endpoint = "/metrics-test/Users/{id}";
        http_request(endpoint, "GET", 200, Duration::from_millis(3));
        http_request(endpoint, "GET", 200, Duration::from_millis(30));
        http_request(endpoint, "BREW", 404, Duration::from_millis(1));
        let text = render();
        assert_eq!(
            sample(
                &text,
                r#"scim_http_requests_total{endpoint="/metrics-test/Users/{id}",method="GET",status="200"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"scim_http_requests_total{endpoint="/metrics-test/Users/{id}",method="other",status="404"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"scim_http_request_duration_seconds_count{endpoint="/metrics-test/Users/{id}",method="GET"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"scim_http_request_duration_seconds_bucket{le="0.005",endpoint="/metrics-test/Users/{id}",method="GET"}"#
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn deliveries_and_target_errors_carry_bounded_codes() {
        let before = render();
        let count = |text: &str, labels: &str| {
            sample(text, &format!("scim_target_errors_total{{{labels}}}")).unwrap_or(0.0)
        };
        delivery(
            &Outcome::Rejected(
                "objectClassViolation: object class 'inetOrgPerson' requires attribute 'sn'".into(),
            ),
            FailureSource::Target,
        );
        delivery(
            &Outcome::Unavailable("cannot connect to the LDAP directory: ldap://127.0.0.1:1: I/O error: Connection refused (os error 111)".into()),
            FailureSource::Target,
        );
        delivery(
            &Outcome::Rejected("users: 'userName' is required".into()),
            FailureSource::Mapping,
        );
        delivery(&Outcome::Applied, FailureSource::Target);
        let after = render();
        for labels in [
            r#"outcome="rejected",code="objectClassViolation""#,
            r#"outcome="unavailable",code="connect""#,
            r#"outcome="rejected",code="mapping""#,
        ] {
            assert!(
                count(&after, labels) >= count(&before, labels) + 1.0,
                "{labels}:\n{after}"
            );
        }
        assert!(
            sample(&after, r#"scim_deliveries_total{outcome="applied"}"#).unwrap_or(0.0) >= 1.0,
            "{after}"
        );
    }

    #[test]
    fn error_codes_come_from_ldap_names_then_classes() {
        let cases = [
            (
                "objectClassViolation: object class 'x' requires attribute 'sn'",
                "objectClassViolation",
            ),
            (
                "entryAlreadyExists (add uid=a,ou=people,dc=x)",
                "entryAlreadyExists",
            ),
            ("modify uid=a b,dc=x: busy: server is busy", "busy"),
            (
                "add uid=a,dc=x: rc 71 affectsMultipleDSAs: no",
                "affectsMultipleDSAs",
            ),
            (
                "cannot connect to the LDAP directory: ldap://h: bind as cn=admin: LDAP operation result: rc=49 (invalidCredentials), dn: \"\", text: \"\"",
                "invalidCredentials",
            ),
            (
                "cannot connect to the LDAP directory: ldap://h:1: I/O error: Connection refused",
                "connect",
            ),
            ("modify uid=a,dc=x: timeout: 2s", "timeout"),
            (
                "modify uid=a,dc=x: rustls error: invalid certificate",
                "tls",
            ),
            ("UNIQUE constraint failed: app_users.email", "constraint"),
            ("database is locked", "locked"),
            ("disk I/O error", "io"),
            ("the LDAP links file: permission denied", "links"),
            // Plain words that are also code names do not count outside their shapes.
            ("the other entry uid=busy,dc=x is unavailable", "other"),
            ("the target has no table for User resources", "other"),
            ("", "other"),
        ];
        for (detail, code) in cases {
            assert_eq!(error_code(detail), code, "{detail}");
        }
    }

    #[test]
    fn rate_limited_kinds_are_bounded() {
        rate_limited("token");
        rate_limited("client");
        rate_limited("client");
        rate_limited("203.0.113.9");
        let text = render();
        assert!(sample(&text, r#"scim_rate_limited_total{kind="client"}"#).unwrap_or(0.0) >= 2.0);
        assert!(sample(&text, r#"scim_rate_limited_total{kind="token"}"#).unwrap_or(0.0) >= 1.0);
        assert!(sample(&text, r#"scim_rate_limited_total{kind="other"}"#).unwrap_or(0.0) >= 1.0);
        assert!(!text.contains("203.0.113.9"), "{text}");
    }

    #[test]
    fn journal_and_backlog_families_take_values() {
        journal_commit(3, [Duration::from_millis(2); 3]);
        delivery_backlog("default", 0, None);
        let text = render();
        assert!(
            sample(&text, "scim_journal_batch_size_count").unwrap_or(0.0) >= 1.0,
            "{text}"
        );
        assert!(
            sample(&text, "scim_journal_append_seconds_count").unwrap_or(0.0) >= 3.0,
            "{text}"
        );
        assert!(text.contains("scim_delivery_pending "), "{text}");
        assert!(
            text.contains("scim_delivery_oldest_pending_seconds "),
            "{text}"
        );
    }
}
