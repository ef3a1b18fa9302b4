//! OAuth 2.0 client credentials (RFC 6749 §4.4), for identity providers that fetch their
//! bearer token from a token endpoint instead of being given one (Okta, some Entra
//! configurations).
//!
//! `POST <base_path>/oauth/token` with `grant_type=client_credentials` and a configured
//! client's id and secret (HTTP Basic, `client_secret_basic`, or `client_id` and
//! `client_secret` form fields, `client_secret_post`) answers a fresh random bearer token
//! and its lifetime. Client secrets are kept as SHA-256 digests like static tokens and
//! compared in constant time against every client.
//!
//! Issued tokens live in this endpoint's [`Issuer`], in memory only, as SHA-256 digests
//! with their expiry and the client they belong to (its id and the digest of the secret
//! it authenticated with). A presented token counts only while it is unexpired *and* that
//! client is still configured with that secret: the client list is part of the endpoint's
//! `TokenSet`, which a reload (SIGHUP) replaces, so removing a client or changing its
//! secret stops its tokens at once, while other clients' tokens keep working across
//! reloads. The name and read-only flag are the client's current ones. Tokens do not
//! survive a restart: the provider gets a 401 and asks for a new one. Expired tokens and
//! those of removed clients are pruned when presented and whenever a token is issued.
//!
//! Nothing here logs a secret or a token; refusals log their reason only.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::config::{OAuthConfig, TokenDigest};
use crate::http::AppState;
use crate::http::auth::Identity;
use crate::http::error::ApiError;
use crate::scim::error::ScimError;

/// Where the token endpoint is, under each endpoint's base path.
pub const TOKEN_PATH: &str = "/oauth/token";
/// Random bytes in an issued token (written as 64 hex digits).
const TOKEN_BYTES: usize = 32;
/// The most unexpired tokens one client may hold; issuing another drops its oldest (a
/// provider needs one at a time; this bounds the memory a looping client can take).
const MAX_LIVE_PER_CLIENT: usize = 100;
/// The only grant served.
const CLIENT_CREDENTIALS: &str = "client_credentials";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// One endpoint's OAuth clients (`auth.oauth`), part of its `TokenSet`.
#[derive(Clone)]
pub struct Clients {
    clients: Vec<Client>,
    lifetime: Duration,
}

#[derive(Clone)]
struct Client {
    client_id: String,
    name: String,
    digest: TokenDigest,
    read_only: bool,
}

impl Clients {
    pub fn from_config(cfg: &OAuthConfig) -> Clients {
        Clients {
            clients: cfg
                .clients
                .iter()
                .map(|c| Client {
                    client_id: c.client_id.clone(),
                    name: c.name.clone(),
                    digest: c.digest,
                    read_only: c.read_only,
                })
                .collect(),
            lifetime: cfg.token_lifetime,
        }
    }

    /// How long a token issued now is valid.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The client one of `candidates` (id, secret) authenticates as. Every candidate's
    /// secret is compared with every client's digest, in constant time, so the time taken
    /// says neither which client matched nor how much of a secret was right.
    fn authenticate(&self, candidates: &[(String, String)]) -> Option<&Client> {
        let mut found = None;
        for (id, secret) in candidates {
            let digest = TokenDigest::of(secret);
            for client in &self.clients {
                let secret_ok = client.digest.matches(&digest);
                if secret_ok && client.client_id == *id {
                    found = Some(client);
                }
            }
        }
        found
    }

    /// The client `client_id`, if it is still configured with the secret whose digest is
    /// `digest` (a token outlives neither its client nor its client's secret).
    fn current(&self, client_id: &str, digest: &TokenDigest) -> Option<&Client> {
        self.clients
            .iter()
            .find(|c| c.client_id == client_id && c.digest.matches(digest))
    }
}

/// The tokens one endpoint issued, by the SHA-256 digest of the token.
#[derive(Default)]
pub struct Issuer {
    issued: Mutex<HashMap<[u8; 32], Issued>>,
}

struct Issued {
    client_id: String,
    /// The digest of the secret the client authenticated with.
    client_digest: TokenDigest,
    expires: Instant,
}

impl Issuer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Issued>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new token for `client`, valid for `lifetime` from `now`.
    fn issue_at(
        &self,
        client: &Client,
        lifetime: Duration,
        now: Instant,
    ) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes)?;
        let mut token = String::with_capacity(2 * TOKEN_BYTES);
        for b in bytes {
            // Writing to a String cannot fail.
            let _ = write!(token, "{b:02x}");
        }
        let mut issued = self.lock();
        issued.retain(|_, t| t.expires > now);
        let mine: Vec<([u8; 32], Instant)> = issued
            .iter()
            .filter(|(_, t)| t.client_id == client.client_id)
            .map(|(key, t)| (*key, t.expires))
            .collect();
        if mine.len() >= MAX_LIVE_PER_CLIENT
            && let Some((oldest, _)) = mine.iter().min_by_key(|(_, expires)| *expires)
        {
            issued.remove(oldest);
        }
        issued.insert(
            *TokenDigest::of(&token).as_bytes(),
            Issued {
                client_id: client.client_id.clone(),
                client_digest: client.digest,
                expires: now.checked_add(lifetime).unwrap_or(now),
            },
        );
        Ok(token)
    }

    /// Who `presented` authenticates as, if it is a token issued here, unexpired, whose
    /// client `clients` (the endpoint's current configuration) still has.
    pub fn identify<'a>(
        &self,
        presented: &str,
        clients: Option<&'a Clients>,
    ) -> Option<Identity<'a>> {
        self.identify_at(presented, clients, Instant::now())
    }

    fn identify_at<'a>(
        &self,
        presented: &str,
        clients: Option<&'a Clients>,
        now: Instant,
    ) -> Option<Identity<'a>> {
        // Issued tokens are 64 hex digits; anything else was not issued here.
        if presented.len() != 2 * TOKEN_BYTES || !presented.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        // Looked up by digest: the map's timing can only tell about digests, which are
        // useless without a preimage.
        let key = *TokenDigest::of(presented).as_bytes();
        let mut issued = self.lock();
        let token = issued.get(&key)?;
        let client = if token.expires > now {
            clients.and_then(|c| c.current(&token.client_id, &token.client_digest))
        } else {
            None
        };
        match client {
            Some(client) => Some(Identity {
                name: &client.name,
                read_only: client.read_only,
            }),
            None => {
                // Expired, or its client is gone or has a new secret: never again.
                issued.remove(&key);
                None
            }
        }
    }

    /// How many tokens are held (expired ones not yet pruned included).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().len()
    }
}

/// An error of RFC 6749 §5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    UnsupportedGrantType,
    /// The token could not be made (no randomness): not the client's fault.
    ServerError,
}

impl ErrorCode {
    fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::ServerError => "server_error",
        }
    }
}

/// A refused token request: the error and a description that never repeats what the
/// client sent (it may be a secret).
#[derive(Debug)]
struct Refusal {
    code: ErrorCode,
    status: StatusCode,
    description: &'static str,
}

impl Refusal {
    fn invalid_request(description: &'static str) -> Refusal {
        Refusal {
            code: ErrorCode::InvalidRequest,
            status: StatusCode::BAD_REQUEST,
            description,
        }
    }

    fn invalid_client(description: &'static str) -> Refusal {
        Refusal {
            code: ErrorCode::InvalidClient,
            status: StatusCode::UNAUTHORIZED,
            description,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = json_response(
            self.status,
            &json!({"error": self.code.as_str(), "error_description": self.description}),
        );
        if self.code == ErrorCode::InvalidClient {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"scim-bridge\""),
            );
        }
        response
    }
}

/// JSON that no cache keeps (RFC 6749 §5.1).
fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `POST <base_path>/oauth/token`: a bearer token for a client that authenticates, or an
/// RFC 6749 error. 404 (SCIM error) when the endpoint configures no `auth.oauth`.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let tokens = state.tokens.get();
    let Some(clients) = tokens.oauth() else {
        return ApiError::from(ScimError::not_found(
            "no OAuth token endpoint here: auth.oauth is not configured for this endpoint",
        ))
        .into_response();
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let mut refusal = Refusal::invalid_request("the request body could not be read");
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                refusal.status = status;
                refusal.description = "the request body is too large (server.max_body_bytes)";
            }
            return refusal.into_response();
        }
    };
    let header_text = |name| headers.get(name).map(|v| v.to_str().unwrap_or_default());
    let client = match exchange(
        clients,
        header_text(header::CONTENT_TYPE),
        header_text(header::AUTHORIZATION),
        &body,
    ) {
        Ok(client) => client,
        Err(refusal) => {
            tracing::warn!(
                endpoint = %state.endpoint,
                error = refusal.code.as_str(),
                reason = refusal.description,
                "OAuth token request refused"
            );
            return refusal.into_response();
        }
    };
    super::observe::record_actor(&extensions, &client.name);
    let lifetime = clients.lifetime();
    match state.oauth.issue_at(client, lifetime, Instant::now()) {
        Ok(access_token) => {
            tracing::info!(endpoint = %state.endpoint, actor = %client.name, expires_in = lifetime.as_secs(), "issued an OAuth access token");
            json_response(
                StatusCode::OK,
                &json!({
                    "access_token": access_token,
                    "token_type": "Bearer",
                    "expires_in": lifetime.as_secs(),
                }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot make an OAuth access token: no randomness from the OS");
            Refusal {
                code: ErrorCode::ServerError,
                status: StatusCode::INTERNAL_SERVER_ERROR,
                description: "the token could not be made; retry later",
            }
            .into_response()
        }
    }
}

/// Checks a token request: its form, its grant type and its client's credentials; the
/// client it authenticates.
fn exchange<'a>(
    clients: &'a Clients,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<&'a Client, Refusal> {
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    if media.as_deref() != Some(FORM_CONTENT_TYPE) {
        return Err(Refusal::invalid_request(
            "send the parameters as Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let mut grant_type = None;
    let mut client_id = None;
    let mut client_secret = None;
    for (key, value) in form_urlencoded::parse(body) {
        let slot = match key.as_ref() {
            "grant_type" => &mut grant_type,
            "client_id" => &mut client_id,
            "client_secret" => &mut client_secret,
            // Others (scope, resource) are ignored, as RFC 6749 §3.2 asks.
            _ => continue,
        };
        if slot.is_some() {
            return Err(Refusal::invalid_request(
                "a parameter is given more than once (grant_type, client_id or client_secret)",
            ));
        }
        *slot = Some(value.into_owned());
    }
    match grant_type.as_deref() {
        None | Some("") => {
            return Err(Refusal::invalid_request(
                "missing grant_type; send grant_type=client_credentials",
            ));
        }
        Some(CLIENT_CREDENTIALS) => {}
        Some(_) => {
            return Err(Refusal {
                code: ErrorCode::UnsupportedGrantType,
                status: StatusCode::BAD_REQUEST,
                description: "only grant_type=client_credentials is supported",
            });
        }
    }
    let basic = match authorization {
        None => None,
        Some(value) => {
            let value = value.trim();
            let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(Refusal::invalid_client(
                    "the Authorization header is not HTTP Basic; send the client's id and secret with Basic, or as client_id and client_secret",
                ));
            }
            Some(basic_credentials(credentials.trim()).ok_or_else(|| {
                Refusal::invalid_client(
                    "the Basic credentials are not base64 of 'client_id:client_secret'",
                )
            })?)
        }
    };
    let candidates = match (basic, client_secret) {
        (Some(_), Some(_)) => {
            return Err(Refusal::invalid_request(
                "the client authenticates both with HTTP Basic and with client_secret; use one method",
            ));
        }
        (Some(pairs), None) => {
            if let Some(id) = &client_id
                && !pairs.iter().any(|(basic_id, _)| basic_id == id)
            {
                return Err(Refusal::invalid_request(
                    "client_id differs from the client id in the Authorization header",
                ));
            }
            pairs
        }
        (None, Some(secret)) => match client_id {
            Some(id) => vec![(id, secret)],
            None => {
                return Err(Refusal::invalid_client(
                    "client_secret without client_id; send both, or use HTTP Basic",
                ));
            }
        },
        (None, None) => {
            return Err(Refusal::invalid_client(
                "client authentication is required: HTTP Basic (client_secret_basic), or client_id and client_secret in the body (client_secret_post)",
            ));
        }
    };
    clients
        .authenticate(&candidates)
        .ok_or_else(|| Refusal::invalid_client("unknown client or wrong client secret"))
}

/// The (id, secret) pairs `base64(id:secret)` may mean. RFC 6749 §2.3.1 has both parts
/// form-urlencoded before they are joined; many clients skip that, so the text as sent
/// is tried too when decoding changes it (a secret with `+` or `%` in it).
fn basic_credentials(encoded: &str) -> Option<Vec<(String, String)>> {
    let decoded = String::from_utf8(base64_decode(encoded)?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let mut out = Vec::with_capacity(2);
    if let (Some(id), Some(secret)) = (form_decode(id), form_decode(secret)) {
        out.push((id, secret));
    }
    let raw = (id.to_string(), secret.to_string());
    if !out.contains(&raw) {
        out.push(raw);
    }
    Some(out)
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, `%XX` a
/// byte. `None` for a malformed escape or a result that is not UTF-8.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let digit = |b: u8| char::from(b).to_digit(16);
                out.push(((digit(hex[0])? << 4) | digit(hex[1])?) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Standard base64 (`+/`, padding optional); `None` when it is not.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OAuthClientConfig;

    const OKTA_SECRET: &str = "okta-client-secret-0123456789abcdef";
    const AUDIT_SECRET: &str = "audit-client-secret-0123456789abcdef";
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn client(client_id: &str, name: &str, secret: &str, read_only: bool) -> OAuthClientConfig {
        OAuthClientConfig {
            client_id: client_id.to_string(),
            name: name.to_string(),
            digest: TokenDigest::of(secret),
            read_only,
        }
    }

    fn clients(list: Vec<OAuthClientConfig>) -> Clients {
        Clients::from_config(&OAuthConfig {
            clients: list,
            token_lifetime: Duration::from_secs(3600),
        })
    }

    fn two_clients() -> Clients {
        clients(vec![
            client("okta", "okta", OKTA_SECRET, false),
            client("audit-app", "auditor", AUDIT_SECRET, true),
        ])
    }

    fn basic(id: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            base64_encode(format!("{id}:{secret}").as_bytes())
        )
    }

    fn base64_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let mut n = 0u32;
            for (i, &b) in chunk.iter().enumerate() {
                n |= u32::from(b) << (16 - 8 * i);
            }
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn name_of(result: Result<&Client, Refusal>) -> Result<&str, (&'static str, u16)> {
        result
            .map(|c| c.name.as_str())
            .map_err(|r| (r.code.as_str(), r.status.as_u16()))
    }

    const GRANT: &[u8] = b"grant_type=client_credentials";

    #[test]
    fn a_client_authenticates_with_http_basic_or_with_form_fields() {
        let set = two_clients();
        let auth = basic("okta", OKTA_SECRET);
        assert_eq!(
            name_of(exchange(&set, FORM, Some(&auth), GRANT)),
            Ok("okta")
        );
        let body = format!(
            "grant_type=client_credentials&client_id=audit-app&client_secret={AUDIT_SECRET}&scope=scim"
        );
        assert_eq!(
            name_of(exchange(
                &set,
                Some("application/x-www-form-urlencoded; charset=UTF-8"),
                None,
                body.as_bytes()
            )),
            Ok("auditor")
        );
        // Basic with the client id repeated in the body is fine.
        let body = b"grant_type=client_credentials&client_id=okta";
        assert_eq!(name_of(exchange(&set, FORM, Some(&auth), body)), Ok("okta"));
    }

    #[test]
    fn a_wrong_secret_or_an_unknown_client_is_invalid_client() {
        let set = two_clients();
        for auth in [
            basic("okta", AUDIT_SECRET),
            basic("audit-app", OKTA_SECRET),
            basic("nobody", OKTA_SECRET),
            basic("okta", &OKTA_SECRET[1..]),
            basic("okta", ""),
            "Basic !!!not-base64".to_string(),
            format!("Basic {}", base64_encode(b"no-colon-here")),
            format!("Bearer {OKTA_SECRET}"),
        ] {
            assert_eq!(
                name_of(exchange(&set, FORM, Some(&auth), GRANT)),
                Err(("invalid_client", 401)),
                "{auth}"
            );
        }
        let body =
            format!("grant_type=client_credentials&client_id=okta&client_secret={AUDIT_SECRET}");
        assert_eq!(
            name_of(exchange(&set, FORM, None, body.as_bytes())),
            Err(("invalid_client", 401))
        );
        // No credentials at all, or a secret without its id.
        assert_eq!(
            name_of(exchange(&set, FORM, None, GRANT)),
            Err(("invalid_client", 401))
        );
        let body = format!("grant_type=client_credentials&client_secret={OKTA_SECRET}");
        assert_eq!(
            name_of(exchange(&set, FORM, None, body.as_bytes())),
            Err(("invalid_client", 401))
        );
    }

    #[test]
    fn the_grant_type_must_be_client_credentials() {
        let set = two_clients();
        let auth = basic("okta", OKTA_SECRET);
        for body in [
            &b"grant_type=password"[..],
            b"grant_type=authorization_code",
            b"grant_type=client_credentialsx",
        ] {
            assert_eq!(
                name_of(exchange(&set, FORM, Some(&auth), body)),
                Err(("unsupported_grant_type", 400))
            );
        }
        for body in [&b""[..], b"grant_type=", b"client_id=okta"] {
            assert_eq!(
                name_of(exchange(&set, FORM, Some(&auth), body)),
                Err(("invalid_request", 400))
            );
        }
    }

    #[test]
    fn malformed_requests_are_invalid_request() {
        let set = two_clients();
        let auth = basic("okta", OKTA_SECRET);
        // Not a form.
        for ct in [None, Some("application/json"), Some("text/plain")] {
            assert_eq!(
                name_of(exchange(&set, ct, Some(&auth), GRANT)),
                Err(("invalid_request", 400))
            );
        }
        // A parameter twice.
        let body = b"grant_type=client_credentials&grant_type=client_credentials";
        assert_eq!(
            name_of(exchange(&set, FORM, Some(&auth), body)),
            Err(("invalid_request", 400))
        );
        // Two authentication methods, or two different client ids.
        let body = format!("grant_type=client_credentials&client_secret={OKTA_SECRET}");
        assert_eq!(
            name_of(exchange(&set, FORM, Some(&auth), body.as_bytes())),
            Err(("invalid_request", 400))
        );
        let body = b"grant_type=client_credentials&client_id=audit-app";
        assert_eq!(
            name_of(exchange(&set, FORM, Some(&auth), body)),
            Err(("invalid_request", 400))
        );
    }

    #[test]
    fn basic_credentials_are_form_decoded_and_also_tried_as_sent() {
        let secret = "a+secret%with/odd=chars:0123456789";
        let set = clients(vec![client("app id", "app", secret, false)]);
        // Encoded as RFC 6749 §2.3.1 asks.
        let encoded = basic("app+id", "a%2Bsecret%25with%2Fodd%3Dchars%3A0123456789");
        assert_eq!(
            name_of(exchange(&set, FORM, Some(&encoded), GRANT)),
            Ok("app")
        );
        // And as most clients send it (the id must not contain ':', the secret may).
        let set = clients(vec![client("app-id", "app", secret, false)]);
        let raw = basic("app-id", secret);
        assert_eq!(name_of(exchange(&set, FORM, Some(&raw), GRANT)), Ok("app"));
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(
            base64_decode("b2t0YTpzZWNyZXQ="),
            Some(b"okta:secret".to_vec())
        );
        assert_eq!(
            base64_decode("b2t0YTpzZWNyZXQ"),
            Some(b"okta:secret".to_vec())
        );
        assert_eq!(base64_decode("YQ=="), Some(b"a".to_vec()));
        assert_eq!(base64_decode(""), Some(Vec::new()));
        assert_eq!(base64_decode("Y"), None);
        assert_eq!(base64_decode("b2t0-A"), None);
        for text in ["", "a", "ab", "abc", "okta:s3cr3t/+?"] {
            assert_eq!(
                base64_decode(&base64_encode(text.as_bytes())),
                Some(text.as_bytes().to_vec())
            );
        }
    }

    fn okta(set: &Clients) -> &Client {
        set.authenticate(&[("okta".into(), OKTA_SECRET.into())])
            .expect("okta authenticates")
    }

    #[test]
    fn an_issued_token_identifies_its_client_until_it_expires() {
        let set = two_clients();
        let issuer = Issuer::default();
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        let token = issuer.issue_at(okta(&set), hour, now).expect("issued");
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            issuer.identify_at(&token, Some(&set), now + hour - Duration::from_secs(1)),
            Some(Identity {
                name: "okta",
                read_only: false
            })
        );
        // Another token is not it, nor is the client's secret.
        let other = issuer.issue_at(okta(&set), hour, now).expect("issued");
        assert_ne!(other, token);
        assert_eq!(issuer.identify_at(&"0".repeat(64), Some(&set), now), None);
        assert_eq!(issuer.identify_at(OKTA_SECRET, Some(&set), now), None);
        // Expired: refused and forgotten.
        assert_eq!(issuer.held(), 2);
        assert_eq!(issuer.identify_at(&token, Some(&set), now + hour), None);
        assert_eq!(issuer.held(), 1);
        assert_eq!(issuer.identify_at(&token, Some(&set), now), None);
    }

    #[test]
    fn a_read_only_clients_token_is_read_only() {
        let set = two_clients();
        let issuer = Issuer::default();
        let auditor = set
            .authenticate(&[("audit-app".into(), AUDIT_SECRET.into())])
            .expect("authenticates");
        let token = issuer
            .issue_at(auditor, Duration::from_secs(60), Instant::now())
            .expect("issued");
        assert_eq!(
            issuer.identify(&token, Some(&set)),
            Some(Identity {
                name: "auditor",
                read_only: true
            })
        );
    }

    #[test]
    fn a_token_stops_working_when_its_client_is_removed_or_gets_a_new_secret() {
        let set = two_clients();
        let issuer = Issuer::default();
        let now = Instant::now();
        let token = issuer
            .issue_at(okta(&set), Duration::from_secs(60), now)
            .expect("issued");
        // A reload keeping the client keeps its token.
        let reloaded = two_clients();
        assert!(issuer.identify_at(&token, Some(&reloaded), now).is_some());
        // A new secret for the same client id.
        let rotated = clients(vec![client("okta", "okta", AUDIT_SECRET, false)]);
        assert_eq!(issuer.identify_at(&token, Some(&rotated), now), None);
        let token = issuer
            .issue_at(okta(&set), Duration::from_secs(60), now)
            .expect("issued");
        // The client removed, or the whole auth.oauth section.
        let without = clients(vec![client("audit-app", "auditor", AUDIT_SECRET, true)]);
        assert_eq!(issuer.identify_at(&token, Some(&without), now), None);
        assert_eq!(
            issuer.identify_at(&token, Some(&set), now),
            None,
            "forgotten"
        );
        let token = issuer
            .issue_at(okta(&set), Duration::from_secs(60), now)
            .expect("issued");
        assert_eq!(issuer.identify_at(&token, None, now), None);
    }

    #[test]
    fn issuing_prunes_expired_tokens_and_caps_each_clients_live_tokens() {
        let set = two_clients();
        let issuer = Issuer::default();
        let now = Instant::now();
        let first = issuer
            .issue_at(okta(&set), Duration::from_secs(1), now)
            .expect("issued");
        let later = now + Duration::from_secs(2);
        let mut tokens = Vec::new();
        for i in 0..MAX_LIVE_PER_CLIENT {
            let lifetime = Duration::from_secs(60 + i as u64);
            tokens.push(
                issuer
                    .issue_at(okta(&set), lifetime, later)
                    .expect("issued"),
            );
        }
        assert_eq!(
            issuer.held(),
            MAX_LIVE_PER_CLIENT,
            "the expired one is pruned"
        );
        assert_eq!(issuer.identify_at(&first, Some(&set), later), None);
        // One more drops the client's soonest-expiring token, not another client's.
        let auditor = set
            .authenticate(&[("audit-app".into(), AUDIT_SECRET.into())])
            .expect("authenticates");
        let audit = issuer
            .issue_at(auditor, Duration::from_secs(60), later)
            .expect("issued");
        issuer
            .issue_at(okta(&set), Duration::from_secs(3600), later)
            .expect("issued");
        assert_eq!(issuer.held(), MAX_LIVE_PER_CLIENT + 1);
        assert_eq!(issuer.identify_at(&tokens[0], Some(&set), later), None);
        assert!(issuer.identify_at(&tokens[1], Some(&set), later).is_some());
        assert!(issuer.identify_at(&audit, Some(&set), later).is_some());
    }
}
