//! Request rate limits: token buckets (GCRA, `governor`) per client address before
//! authentication and per bearer token after it, both from `rate_limit` in the config.
//!
//! The per-client limit is a middleware ([`limit_clients`]) in front of everything, so a
//! flood of unauthenticated requests is refused before it costs a token check; the client
//! address is the proxy-reported one from `server.trusted_proxies` only
//! ([`super::client::client_addr`]), so a client cannot pick a fresh bucket by sending
//! `X-Forwarded-For`. IPv6 clients are counted per /64, the block one host usually holds.
//! The per-token limit is checked by the authentication extractor once it knows the
//! token's name ([`RateLimits::admit_token`]). A refused request gets 429 with
//! `Retry-After` and a SCIM Error body; nothing about it reaches the engine.
//!
//! The defaults (100/s with a burst of 1000 per token, 200/s with 2000 per client) are
//! far above what Entra sends (about 25 requests/s per tenant): Entra's handling of 429 is
//! not dependable, so the limits exist to stop a runaway client, never a provisioning
//! cycle.
//!
//! Memory: a keyed limiter keeps one entry per key it has seen. Every
//! [`HOUSEKEEPING_EVERY`] checks of a limiter, the checking request also drops the keys
//! whose bucket has refilled completely (they are indistinguishable from new ones) and
//! shrinks the map, so it holds about the keys active in the last burst-refill period
//! (burst ÷ rate: 10 s by default) however many addresses have come and gone.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::rejection::ExtensionRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::{IpNet, Rate, RateLimitConfig};
use crate::http::client::{ClientAddr, client_addr};
use crate::http::error::SCIM_CONTENT_TYPE;
use crate::scim::schema::ERROR_URN;

/// How many checks of one limiter pass between two sweeps of its stale keys.
pub const HOUSEKEEPING_EVERY: u64 = 4096;

/// The governor quota for a configured rate: `per_second` cells per second, `burst` at
/// once. `None` when the rate is 0 (no limit).
pub fn quota(rate: Rate) -> Option<Quota> {
    let per_second = NonZeroU32::new(rate.per_second)?;
    let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
    Some(Quota::per_second(per_second).allow_burst(burst))
}

/// The configured limits, shared by every request.
pub struct RateLimits {
    per_token: Option<Keyed<String>>,
    per_client: Option<Keyed<IpAddr>>,
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> RateLimits {
        RateLimits {
            per_token: config.per_token.and_then(Keyed::new),
            per_client: config.per_client.and_then(Keyed::new),
        }
    }

    /// Takes one request from the client's bucket; `Err` holds how long until one would
    /// be allowed. IPv6 addresses share a bucket per /64.
    pub fn check_client(&self, ip: IpAddr) -> Result<(), Duration> {
        match &self.per_client {
            Some(limiter) => limiter.check(&client_key(ip)),
            None => Ok(()),
        }
    }

    /// Takes one request from the bucket of the token named `token`; `Err` holds how long
    /// until one would be allowed.
    pub fn check_token(&self, token: &str) -> Result<(), Duration> {
        match &self.per_token {
            // The map owns its keys; a name is a few bytes to copy.
            Some(limiter) => limiter.check(&token.to_string()),
            None => Ok(()),
        }
    }

    /// [`check_token`](Self::check_token) for the authentication extractor: a refusal is
    /// counted and logged, and answers 429 as a response.
    pub fn admit_token(&self, token: &str) -> Result<(), TooManyRequests> {
        self.check_token(token).map_err(|wait| {
            count_refusal("token");
            tracing::debug!(token, retry_after = ?wait, "per-token rate limit reached");
            TooManyRequests {
                retry_after: wait,
                limit: Limit::Token,
            }
        })
    }
}

/// One keyed limiter and its check counter (for housekeeping).
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(rate: Rate) -> Option<Keyed<K>> {
        Some(Keyed {
            limiter: DefaultKeyedRateLimiter::keyed(quota(rate)?),
            checks: AtomicU64::new(0),
        })
    }

    fn check(&self, key: &K) -> Result<(), Duration> {
        let outcome = self
            .limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()));
        if self.checks.fetch_add(1, Ordering::Relaxed) % HOUSEKEEPING_EVERY
            == HOUSEKEEPING_EVERY - 1
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        outcome
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// The bucket key of a client address: IPv4 as is (IPv4-mapped IPv6 included), IPv6 cut
/// to its /64, since one host (or one attacker) usually holds a whole /64 and could
/// otherwise take a fresh bucket per request.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// The state of [`limit_clients`]: the limits and the proxies whose forwarding headers
/// name the client.
#[derive(Clone)]
pub struct ClientLimit {
    limits: Arc<crate::http::Shared<RateLimits>>,
    trusted: Arc<[IpNet]>,
}

impl ClientLimit {
    pub fn new(
        limits: Arc<crate::http::Shared<RateLimits>>,
        trusted_proxies: &[IpNet],
    ) -> ClientLimit {
        ClientLimit {
            limits,
            trusted: trusted_proxies.into(),
        }
    }
}

/// Middleware: refuses a request with 429 when its client has used up its bucket, and
/// records the client address in the request's extensions ([`ClientAddr`]).
///
/// Without a peer address (the router driven without `ConnectInfo`, as in-process tests
/// do) there is no client to count and the request passes.
pub async fn limit_clients(
    State(gate): State<ClientLimit>,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let Ok(ConnectInfo(peer)) = peer else {
        return next.run(req).await;
    };
    let client = client_addr(peer, req.headers(), &gate.trusted);
    req.extensions_mut().insert(ClientAddr(client));
    match gate.limits.get().check_client(client) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            count_refusal("client");
            tracing::debug!(%client, retry_after = ?wait, "per-client rate limit reached");
            TooManyRequests {
                retry_after: wait,
                limit: Limit::Client,
            }
            .into_response()
        }
    }
}

/// A request refused by a rate limit: 429 with `Retry-After` (whole seconds, at least 1)
/// and a SCIM Error body (RFC 7644 §3.12; no `scimType` fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRequests {
    /// How long until the bucket would take a request.
    pub retry_after: Duration,
    limit: Limit,
}

/// Which limit refused the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Client,
    Token,
}

impl IntoResponse for TooManyRequests {
    fn into_response(self) -> Response {
        let secs = retry_after_secs(self.retry_after);
        let whose = match self.limit {
            Limit::Client => "from this client",
            Limit::Token => "with this token",
        };
        let body = serde_json::json!({
            "schemas": [ERROR_URN],
            "status": "429",
            "detail": format!("too many requests {whose}; retry after {secs} s"),
        });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        response
    }
}

/// The 429 answer to a token that has used up its bucket.
pub fn too_many(retry_after: Duration) -> Response {
    TooManyRequests {
        retry_after,
        limit: Limit::Token,
    }
    .into_response()
}

/// `Retry-After` in whole seconds: the wait rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Counts a refused request in the metrics, by the kind of limit.
fn count_refusal(kind: &'static str) {
    crate::metrics::rate_limited(kind);
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn limits(per_token: Option<(u32, u32)>, per_client: Option<(u32, u32)>) -> RateLimits {
        let rate = |(per_second, burst)| Rate { per_second, burst };
        RateLimits::new(&RateLimitConfig {
            per_token: per_token.map(rate),
            per_client: per_client.map(rate),
        })
    }

    #[test]
    fn the_default_quotas_are_what_the_config_says() {
        let defaults = RateLimitConfig::default();
        let token = defaults.per_token.and_then(quota).expect("a token quota");
        assert_eq!(token.replenish_interval(), Duration::from_millis(10));
        assert_eq!(token.burst_size().get(), 1000);
        assert_eq!(token.burst_size_replenished_in(), Duration::from_secs(10));
        let client = defaults.per_client.and_then(quota).expect("a client quota");
        assert_eq!(client.replenish_interval(), Duration::from_millis(5));
        assert_eq!(client.burst_size().get(), 2000);
        assert_eq!(
            quota(Rate {
                per_second: 0,
                burst: 5
            }),
            None
        );
    }

    #[test]
    fn a_token_gets_its_burst_then_waits_and_other_tokens_are_independent() {
        let l = limits(Some((1, 3)), None);
        for i in 0..3 {
            assert_eq!(l.check_token("entra"), Ok(()), "request {i}");
        }
        let wait = l.check_token("entra").expect_err("the 4th is refused");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(l.check_token("okta"), Ok(()));
        // The client limit is off.
        for _ in 0..10_000 {
            assert_eq!(l.check_client(IpAddr::from([192, 0, 2, 1])), Ok(()));
        }
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_and_other_clients_are_independent() {
        let l = limits(None, Some((2, 5)));
        let a = IpAddr::from([192, 0, 2, 1]);
        for _ in 0..5 {
            assert_eq!(l.check_client(a), Ok(()));
        }
        let wait = l.check_client(a).expect_err("the 6th is refused");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert_eq!(l.check_client(IpAddr::from([192, 0, 2, 2])), Ok(()));
        // IPv4-mapped IPv6 is the same client.
        assert!(
            l.check_client("::ffff:192.0.2.1".parse().expect("ip"))
                .is_err()
        );
        // The token limit is off.
        for _ in 0..10_000 {
            assert_eq!(l.check_token("entra"), Ok(()));
        }
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let l = limits(None, Some((1, 2)));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(l.check_client(ip("2001:db8:1:2::1")), Ok(()));
        assert_eq!(l.check_client(ip("2001:db8:1:2:ffff::9")), Ok(()));
        assert!(l.check_client(ip("2001:db8:1:2::abcd")).is_err());
        assert_eq!(l.check_client(ip("2001:db8:1:3::1")), Ok(()));
    }

    #[test]
    fn no_limit_means_unlimited() {
        let l = limits(None, None);
        for _ in 0..100_000 {
            assert_eq!(l.check_token("entra"), Ok(()));
            assert_eq!(l.check_client(IpAddr::from([192, 0, 2, 1])), Ok(()));
        }
    }

    #[test]
    fn a_bucket_refills_at_the_configured_rate() {
        let l = limits(Some((20, 1)), None);
        assert_eq!(l.check_token("entra"), Ok(()));
        let wait = l.check_token("entra").expect_err("burst of 1 used");
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        std::thread::sleep(wait + Duration::from_millis(5));
        assert_eq!(l.check_token("entra"), Ok(()));
    }

    #[test]
    fn the_default_burst_holds_and_refuses_one_more() {
        let l = RateLimits::new(&RateLimitConfig::default());
        // A burst far beyond a provisioning cycle, sent at once, passes: 1000 per token,
        // 2000 per client; the next one waits a bucket refill of one request.
        for _ in 0..1000 {
            assert_eq!(l.check_token("entra"), Ok(()));
        }
        assert!(l.check_token("entra").is_err());
        let a = IpAddr::from([192, 0, 2, 1]);
        for _ in 0..2000 {
            assert_eq!(l.check_client(a), Ok(()));
        }
        assert!(l.check_client(a).is_err());
    }

    #[test]
    fn stale_keys_are_swept_every_so_many_checks() {
        // 1000/s, burst 1: a bucket is full again 1 ms after its one request.
        let l = limits(None, Some((1000, 1)));
        let per_client = l.per_client.as_ref().expect("a client limiter");
        for i in 0..(HOUSEKEEPING_EVERY - 1) {
            let ip = IpAddr::from(u32::try_from(i).expect("small").to_be_bytes());
            assert_eq!(l.check_client(ip), Ok(()));
        }
        assert_eq!(per_client.len() as u64, HOUSEKEEPING_EVERY - 1);
        std::thread::sleep(Duration::from_millis(20));
        // This check is the HOUSEKEEPING_EVERY-th: it sweeps every key but its own.
        assert_eq!(l.check_client(IpAddr::from([203, 0, 113, 1])), Ok(()));
        assert!(per_client.len() <= 1, "{} keys left", per_client.len());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
    }

    async fn call(app: &Router, peer: &str, xff: Option<&str>) -> Response {
        let mut req = Request::builder().uri("/x");
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        let mut req = req.body(Body::empty()).expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().expect("peer")));
        app.clone().oneshot(req).await.expect("infallible")
    }

    fn app(per_client: (u32, u32), trusted: &[&str]) -> Router {
        let trusted: Vec<IpNet> = trusted
            .iter()
            .map(|s| IpNet::parse(s).expect("net"))
            .collect();
        let gate = ClientLimit::new(
            Arc::new(crate::http::Shared::new(limits(None, Some(per_client)))),
            &trusted,
        );
        Router::new()
            .route(
                "/x",
                get(|ext: axum::http::Extensions| async move {
                    match ext.get::<ClientAddr>() {
                        Some(ClientAddr(ip)) => ip.to_string(),
                        None => "none".to_string(),
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(gate, limit_clients))
    }

    #[tokio::test]
    async fn the_middleware_answers_429_with_retry_after_and_a_scim_error() {
        let app = app((1, 2), &[]);
        for _ in 0..2 {
            assert_eq!(
                call(&app, "192.0.2.1:1000", None).await.status(),
                StatusCode::OK
            );
        }
        // A spoofed X-Forwarded-For from an untrusted peer gets no fresh bucket.
        let refused = call(&app, "192.0.2.1:1001", Some("198.51.100.1")).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            refused.headers()[header::CONTENT_TYPE],
            "application/scim+json"
        );
        let body = axum::body::to_bytes(refused.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "429",
                "detail": "too many requests from this client; retry after 1 s",
            })
        );
        // Another client is unaffected.
        assert_eq!(
            call(&app, "192.0.2.2:1000", None).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn behind_a_trusted_proxy_each_forwarded_client_has_its_bucket() {
        let app = app((1, 1), &["127.0.0.1"]);
        let ok = |r: Response| r.status() == StatusCode::OK;
        let first = call(&app, "127.0.0.1:1", Some("198.51.100.1")).await;
        let body = axum::body::to_bytes(first.into_body(), 64)
            .await
            .expect("body");
        assert_eq!(
            &body[..],
            b"198.51.100.1",
            "the client address is passed on"
        );
        assert!(ok(call(&app, "127.0.0.1:1", Some("198.51.100.2")).await));
        assert!(!ok(call(&app, "127.0.0.1:1", Some("198.51.100.1")).await));
        // Without ConnectInfo the request passes (no client to count).
        let req = Request::builder()
            .uri("/x")
            .body(Body::empty())
            .expect("request");
        let r = app.clone().oneshot(req).await.expect("infallible");
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn the_token_refusal_is_a_scim_429() {
        let l = limits(Some((1, 1)), None);
        assert!(l.admit_token("entra").is_ok());
        let refused = l.admit_token("entra").expect_err("refused");
        assert!(refused.retry_after > Duration::ZERO);
        let r = refused.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = too_many(Duration::from_millis(2500));
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
