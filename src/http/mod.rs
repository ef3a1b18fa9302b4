//! The HTTP edge: routes, request decoding, response shaping.
//!
//! `app(state)` is the whole router, so tests drive it directly and `serve` binds it.
//! Handlers are thin: extract (authentication, body, query), call the engine, render.
//! Every response carries `Content-Type: application/scim+json`; every failure is a SCIM
//! Error body (see `error`).

pub mod auth;
pub mod client;
pub mod error;
mod json;
pub mod jwt;
pub mod oauth;
mod observe;
mod query;
pub mod ratelimit;
mod render;
pub mod server;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::engine::{Actor, Engine, Resource, etag_matches};
use crate::scim::error::ScimError;
use crate::scim::schema::{self, LIST_URN, ResourceKind};
use auth::{Authenticated, TokenSet};
use error::{ApiError, SCIM_CONTENT_TYPE};
use query::ListParams;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The endpoint's name (`default` for the top-level one).
    pub endpoint: Arc<str>,
    pub engine: Engine,
    /// Replaced as a whole when the configuration is reloaded (SIGHUP).
    pub tokens: Arc<Shared<TokenSet>>,
    pub settings: Arc<Settings>,
    /// Request rate limits (`rate_limit`): per client here, per token in `auth`.
    pub rate_limits: Arc<Shared<ratelimit::RateLimits>>,
    /// The tokens this endpoint's OAuth token endpoint issued (kept across reloads; each
    /// is checked against the current `tokens`' clients when presented).
    pub oauth: Arc<oauth::Issuer>,
}

/// A value replaced as a whole while requests read it (a reload): readers take the
/// current `Arc` and keep it for their request.
pub struct Shared<T>(std::sync::RwLock<Arc<T>>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(std::sync::RwLock::new(Arc::new(value)))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        // Only `set` writes, and it cannot panic while holding the lock.
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the value; requests already holding the old one finish with it.
    pub fn set(&self, value: T) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(value);
    }
}

/// The HTTP settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `/scim/v2`: where the SCIM endpoints live.
    pub base_path: String,
    /// Absolute base URL for `meta.location`; derived from `Host` (or what a trusted
    /// proxy forwards) when absent.
    pub public_url: Option<String>,
    /// `https` when the listener serves TLS itself, else `http`.
    pub scheme: &'static str,
    pub max_body_bytes: usize,
    pub page_size: usize,
    pub max_page_size: usize,
    /// The deepest nesting of arrays and objects a JSON body may have.
    pub max_json_depth: usize,
    /// The longest `filter` accepted.
    pub max_filter_bytes: usize,
    /// A request taking longer is answered 503.
    pub request_timeout: std::time::Duration,
    /// `/readyz` fails while the target is unreachable and more are pending.
    pub ready_max_pending: u64,
    /// Peers whose forwarding headers name the client (`server.trusted_proxies`).
    pub trusted_proxies: Vec<crate::config::IpNet>,
}

/// The whole router.
pub fn app(state: AppState) -> Router {
    app_for(vec![state])
}

/// The router of several endpoints, each at its own base path with its own state
/// (tokens, engine); the server-wide layers (limits, proxies, rate limits, probes) take
/// their settings from the first.
pub fn app_for(states: Vec<AppState>) -> Router {
    let Some(first) = states.first().cloned() else {
        return Router::new().fallback(not_found);
    };
    let mut router = Router::new();
    for state in &states {
        router = router.merge(scim_router(state.clone()));
    }
    let engines = states
        .iter()
        .map(|s| (s.endpoint.to_string(), s.engine.clone()))
        .collect();
    let settings = &first.settings;
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            settings.request_timeout,
            request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            ratelimit::ClientLimit::new(first.rate_limits.clone(), &settings.trusted_proxies),
            ratelimit::limit_clients,
        ))
        .layer(middleware::from_fn_with_state(
            std::sync::Arc::<[crate::config::IpNet]>::from(settings.trusted_proxies.as_slice()),
            client::forwarded_origin,
        ))
        // Merged after those layers: probes are never rate-limited nor timed out.
        .merge(observe::ops_router(engines, settings.ready_max_pending))
        // Inside request_envelope, so the log line carries the same request id.
        .layer(middleware::from_fn(observe::observe))
        .layer(middleware::from_fn(request_envelope))
}

/// One endpoint's SCIM routes, nested at its base path.
fn scim_router(state: AppState) -> Router {
    let scim = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema_by_id))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type_by_id))
        .route("/.search", post(search_root))
        // No `Authenticated`: the client authenticates with its id and secret.
        .route(oauth::TOKEN_PATH, post(oauth::token))
        .route("/{endpoint}", get(list).post(create))
        .route(
            "/{endpoint}/{id}",
            get(get_one)
                .put(replace)
                .patch(patch)
                .delete(delete)
                .post(search_endpoint),
        )
        .method_not_allowed_fallback(method_not_allowed);
    let base = state.settings.base_path.clone();
    let router = if base.is_empty() || base == "/" {
        scim
    } else {
        Router::new().nest(&base, scim)
    };
    router.with_state(state)
}

/// Answers 503 (SCIM error, `Retry-After`) when a request takes longer than
/// `server.request_timeout`. A write cut off this way may still complete; the provider
/// retries and meets the result (409 for a create, the same state for a replace).
async fn request_timeout(
    State(limit): State<std::time::Duration>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout = ?limit, "request timed out");
            ApiError::from(ScimError::unavailable(format!(
                "the request took longer than {} s (server.request_timeout); retry",
                limit.as_secs()
            )))
            .into_response()
        }
    }
}

/// One request id per request (taken from `X-Request-Id` when the proxy set one) and
/// the SCIM content type on every response; the request's log line and metrics are
/// `observe`'s.
async fn request_envelope(mut req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let span = tracing::info_span!("request", id = %request_id);
    let mut response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = response.status();
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_TYPE) && status != StatusCode::NOT_MODIFIED {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

#[derive(Debug, Clone)]
struct RequestId(String);

fn actor(auth: &Authenticated, ext: &axum::http::Extensions) -> Actor {
    Actor {
        name: auth.token_name.clone(),
        endpoint: auth.endpoint.to_string(),
        request_id: ext.get::<RequestId>().map(|r| r.0.clone()),
        // The client behind a trusted proxy, else the peer.
        client: ext
            .get::<client::ClientAddr>()
            .map(|c| c.0.to_string())
            .or_else(|| {
                ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip().to_string())
            }),
    }
}

/// Path parameters whose rejection (e.g. invalid UTF-8 in an id) is a SCIM error.
pub struct ScimPath<T>(pub T);

impl<T> axum::extract::FromRequestParts<AppState> for ScimPath<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ScimPath(v)),
            Err(rejection) => Err(ScimError::not_found(format!(
                "{}: {}",
                parts.uri.path(),
                rejection.body_text()
            ))
            .into()),
        }
    }
}

/// A SCIM request body: JSON, with a SCIM or plain JSON content type.
pub struct ScimBody(pub Value);

/// The offset where `json` first nests arrays/objects deeper than `max` (brackets inside
/// strings do not count); `None` when it never does. Checked before parsing, so a hostile
/// body costs one pass over its bytes, not a deep recursion.
fn json_depth_over(json: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

impl FromRequest<AppState> for ScimBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let media = ct
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if media != "application/scim+json" && media != "application/json" {
                return Err(ScimError::unsupported_media_type(format!(
                    "Content-Type '{media}' is not accepted; send application/scim+json or application/json"
                ))
                .into());
            }
        }
        let too_large = || {
            ScimError::payload_too_large(format!(
                "the request body is larger than {} bytes (server.max_body_bytes)",
                state.settings.max_body_bytes
            ))
        };
        // A declared length over the limit is refused before any of the body is read
        // (a client announcing a gigabyte and sending nothing is not waited for).
        if let Some(declared) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            && declared > state.settings.max_body_bytes as u64
        {
            return Err(too_large().into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ScimError::invalid_syntax(format!(
                    "the request body could not be read: {rejection}"
                ))
            }
        })?;
        Ok(ScimBody(decode_json_body(
            &bytes,
            state.settings.max_json_depth,
        )?))
    }
}

/// Decodes a request body that is within the size limit: nesting checked before parsing
/// (`max_depth`: `server.max_json_depth`), then JSON with no member named twice, not even
/// in another case (`json`). Pure, so it is fuzzed alone (`crate::fuzzing`).
pub(crate) fn decode_json_body(bytes: &[u8], max_depth: usize) -> Result<Value, ScimError> {
    if let Some(depth) = json_depth_over(bytes, max_depth) {
        return Err(ScimError::invalid_syntax(format!(
            "the request body nests arrays and objects deeper than {max_depth} levels (at byte {depth}; server.max_json_depth)"
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::invalid_syntax(
            "the request body is empty; a JSON object is expected",
        ));
    }
    json::from_slice_strict(bytes).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            ScimError::invalid_syntax(format!("the request body is ambiguous: {e}"))
        } else {
            ScimError::invalid_syntax(format!("the request body is not valid JSON: {e}"))
        }
    })
}

fn kind_of(endpoint: &str) -> Result<ResourceKind, ApiError> {
    ResourceKind::from_endpoint(endpoint).ok_or_else(|| {
        ScimError::not_found(format!(
            "no endpoint '/{endpoint}'; this service provider serves /Users and /Groups"
        ))
        .into()
    })
}

/// The absolute SCIM base URL for `meta.location` and `$ref`.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings.public_url {
        return url.trim_end_matches('/').to_string();
    }
    if let Some(origin) = headers
        .get(client::ORIGIN_HEADER)
        .and_then(|h| h.to_str().ok())
    {
        return format!("{origin}{}", state.settings.base_path);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!(
        "{}://{host}{}",
        state.settings.scheme, state.settings.base_path
    )
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    // Serialized straight into bytes: `to_string` goes through `Display`, which checks
    // every piece it writes as UTF-8 (3 % of a request's instructions).
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| body.to_string().into_bytes());
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    response
}

fn with_etag(mut response: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn resource_response(
    status: StatusCode,
    resource: &Resource,
    base: &str,
    params: &ListParams,
) -> Response {
    let body = render::resource(resource, base, &params.projection);
    with_etag(scim_json(status, &body), &resource.stored.etag())
}

async fn not_found(req: Request) -> ApiError {
    ScimError::not_found(format!("no such endpoint: {}", req.uri().path())).into()
}

async fn method_not_allowed(req: Request) -> ApiError {
    ScimError::method_not_allowed(format!(
        "{} is not supported on {}",
        req.method(),
        req.uri().path()
    ))
    .into()
}

fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_URN],
            "totalResults": total,
            "Resources": resources,
            "startIndex": start_index,
            "itemsPerPage": resources.len(),
        }),
    )
}

async fn run_list(
    state: &AppState,
    headers: &HeaderMap,
    kind: Option<ResourceKind>,
    params: ListParams,
) -> Result<Response, ApiError> {
    let base = base_url(state, headers);
    let start_index = params.start_index;
    let projection = params.projection.clone();
    let members = projection.keeps(ResourceKind::Group, "members");
    let (total, page) = state
        .engine
        .list_with(params.into_query(kind), members)
        .await?;
    let resources = page
        .iter()
        .map(|r| render::resource(r, &base, &projection))
        .collect();
    Ok(list_response(total, start_index, resources))
}

async fn list(
    State(state): State<AppState>,
    _auth: Authenticated,
    ScimPath(endpoint): ScimPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = kind_of(&endpoint)?;
    let params = ListParams::from_query(query.as_deref(), Some(kind), &state.settings)?;
    run_list(&state, &headers, Some(kind), params).await
}

async fn search_root(
    State(state): State<AppState>,
    _auth: Authenticated,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let params = ListParams::from_search_body(&body, None, &state.settings)?;
    run_list(&state, &headers, None, params).await
}

async fn search_endpoint(
    State(state): State<AppState>,
    _auth: Authenticated,
    ScimPath((endpoint, id)): ScimPath<(String, String)>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let kind = kind_of(&endpoint)?;
    if id != ".search" {
        return Err(ScimError::method_not_allowed(format!(
            "POST is not supported on /{endpoint}/{id}; use PUT or PATCH"
        ))
        .into());
    }
    let params = ListParams::from_search_body(&body, Some(kind), &state.settings)?;
    run_list(&state, &headers, Some(kind), params).await
}

async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    ScimPath(endpoint): ScimPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    req_ext: axum::http::Extensions,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let kind = kind_of(&endpoint)?;
    let params = ListParams::from_query(query.as_deref(), Some(kind), &state.settings)?;
    let written = state
        .engine
        .create(kind, body, &actor(&auth, &req_ext))
        .await?;
    tracing::info!(actor = %auth.token_name, kind = kind.name(), id = %written.resource.stored.id, "created");
    let base = base_url(&state, &headers);
    let mut response = resource_response(StatusCode::CREATED, &written.resource, &base, &params);
    let location = format!("{base}/{}/{}", kind.endpoint(), written.resource.stored.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

async fn get_one(
    State(state): State<AppState>,
    _auth: Authenticated,
    ScimPath((endpoint, id)): ScimPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = kind_of(&endpoint)?;
    let params = ListParams::from_query(query.as_deref(), Some(kind), &state.settings)?;
    let members = params.projection.keeps(kind, "members");
    let resource = state.engine.get_with(kind, &id, members).await?;
    let etag = resource.stored.etag();
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && etag_matches(inm, &etag)
    {
        let response = StatusCode::NOT_MODIFIED.into_response();
        return Ok(with_etag(response, &etag));
    }
    Ok(resource_response(
        StatusCode::OK,
        &resource,
        &base_url(&state, &headers),
        &params,
    ))
}

async fn replace(
    State(state): State<AppState>,
    auth: Authenticated,
    ScimPath((endpoint, id)): ScimPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    req_ext: axum::http::Extensions,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let kind = kind_of(&endpoint)?;
    let params = ListParams::from_query(query.as_deref(), Some(kind), &state.settings)?;
    let written = state
        .engine
        .replace(kind, &id, body, if_match(&headers), &actor(&auth, &req_ext))
        .await?;
    tracing::info!(actor = %auth.token_name, kind = kind.name(), id = %id, changed = written.changed, "replaced");
    Ok(resource_response(
        StatusCode::OK,
        &written.resource,
        &base_url(&state, &headers),
        &params,
    ))
}

async fn patch(
    State(state): State<AppState>,
    auth: Authenticated,
    ScimPath((endpoint, id)): ScimPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    req_ext: axum::http::Extensions,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let kind = kind_of(&endpoint)?;
    let params = ListParams::from_query(query.as_deref(), Some(kind), &state.settings)?;
    let written = state
        .engine
        .patch(kind, &id, body, if_match(&headers), &actor(&auth, &req_ext))
        .await?;
    tracing::info!(actor = %auth.token_name, kind = kind.name(), id = %id, changed = written.changed, "patched");
    match kind {
        // Entra expects 204 for group PATCH: member lists can be large.
        ResourceKind::Group => Ok(with_etag(
            StatusCode::NO_CONTENT.into_response(),
            &written.resource.stored.etag(),
        )),
        ResourceKind::User => Ok(resource_response(
            StatusCode::OK,
            &written.resource,
            &base_url(&state, &headers),
            &params,
        )),
    }
}

async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    ScimPath((endpoint, id)): ScimPath<(String, String)>,
    headers: HeaderMap,
    req_ext: axum::http::Extensions,
) -> Result<Response, ApiError> {
    let kind = kind_of(&endpoint)?;
    state
        .engine
        .delete(kind, &id, if_match(&headers), &actor(&auth, &req_ext))
        .await?;
    tracing::info!(actor = %auth.token_name, kind = kind.name(), id = %id, "deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn service_provider_config(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url(&state, &headers);
    scim_json(
        StatusCode::OK,
        &schema::service_provider_config(
            &base,
            state.settings.max_page_size,
            state.settings.max_body_bytes,
        ),
    )
}

async fn schemas(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let docs = schema::schema_documents(&base_url(&state, &headers));
    list_response(docs.len(), 1, docs)
}

async fn schema_by_id(
    State(state): State<AppState>,
    ScimPath(id): ScimPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    schema::schema_documents(&base_url(&state, &headers))
        .into_iter()
        .find(|d| {
            d["id"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(&id))
        })
        .map(|d| scim_json(StatusCode::OK, &d))
        .ok_or_else(|| ScimError::not_found(format!("schema {id} not found")).into())
}

async fn resource_types(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let docs = schema::resource_type_documents(&base_url(&state, &headers));
    list_response(docs.len(), 1, docs)
}

async fn resource_type_by_id(
    State(state): State<AppState>,
    ScimPath(id): ScimPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    schema::resource_type_documents(&base_url(&state, &headers))
        .into_iter()
        .find(|d| {
            d["id"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(&id))
        })
        .map(|d| scim_json(StatusCode::OK, &d))
        .ok_or_else(|| ScimError::not_found(format!("resource type {id} not found")).into())
}
