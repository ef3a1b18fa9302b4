//! Bearer-token authentication as an extractor: a handler that takes `Authenticated`
//! runs only for a known token, and learns the token's name (the actor of its changes).
//!
//! Static tokens are kept as SHA-256 digests (from `secret:`, or given as `hash:`) and
//! compared in constant time against every configured digest, so neither the token nor
//! its position leaks through timing. With `auth.jwt`, a token shaped like a JWT that
//! validates (see `jwt`) authenticates as the JWT's configured name; any other token is
//! looked up among the static ones. With `auth.oauth`, a token the endpoint's token
//! endpoint issued (see `oauth`) authenticates as its client while it is unexpired and
//! the client is still configured.
//!
//! A read-only token passes only for reads: GET (and HEAD), and POST to a `/.search`
//! endpoint. Every other method is refused here with 403, before the body is read, so
//! no write handler can forget the check and nothing reaches the engine.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use crate::config::{AuthConfig, TokenDigest};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::jwt::JwtVerifier;
use crate::scim::error::ScimError;

/// The configured credentials: names and digests (never the secrets themselves), and the
/// JWT check when `auth.jwt` is set.
#[derive(Clone)]
pub struct TokenSet {
    tokens: Vec<StaticToken>,
    jwt: Option<JwtVerifier>,
    /// `auth.oauth`: the clients the token endpoint serves (their issued tokens are the
    /// endpoint's `oauth::Issuer`'s, checked against this list).
    oauth: Option<super::oauth::Clients>,
}

#[derive(Clone)]
struct StaticToken {
    name: String,
    digest: TokenDigest,
    read_only: bool,
}

/// Who a presented token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub name: &'a str,
    pub read_only: bool,
}

impl TokenSet {
    /// Read-write tokens from `(name, secret)` pairs (tests and tools).
    pub fn new<'a>(tokens: impl IntoIterator<Item = (&'a str, &'a str)>) -> TokenSet {
        TokenSet {
            tokens: tokens
                .into_iter()
                .map(|(name, secret)| StaticToken {
                    name: name.to_string(),
                    digest: TokenDigest::of(secret),
                    read_only: false,
                })
                .collect(),
            jwt: None,
            oauth: None,
        }
    }

    /// Everything `auth:` configures.
    pub fn from_config(auth: &AuthConfig) -> TokenSet {
        TokenSet {
            tokens: auth
                .tokens
                .iter()
                .map(|t| StaticToken {
                    name: t.name.clone(),
                    digest: t.digest,
                    read_only: t.read_only,
                })
                .collect(),
            jwt: auth.jwt.as_ref().map(JwtVerifier::new),
            oauth: auth.oauth.as_ref().map(super::oauth::Clients::from_config),
        }
    }

    /// The OAuth clients, when `auth.oauth` is configured.
    pub fn oauth(&self) -> Option<&super::oauth::Clients> {
        self.oauth.as_ref()
    }

    /// Who `presented` authenticates as, if anyone.
    pub fn identify(&self, presented: &str) -> Option<Identity<'_>> {
        if let Some(jwt) = &self.jwt
            && JwtVerifier::looks_like_jwt(presented)
        {
            match jwt.verify(presented) {
                Ok(()) => {
                    return Some(Identity {
                        name: jwt.name(),
                        read_only: jwt.read_only(),
                    });
                }
                // The reason only; the token and its claims stay out of the logs.
                Err(refusal) => {
                    tracing::debug!(reason = refusal.as_str(), "bearer JWT refused");
                }
            }
        }
        let digest = TokenDigest::of(presented);
        let mut found = None;
        // Every entry is compared, so the time taken does not say which one matched.
        for token in &self.tokens {
            if token.digest.matches(&digest) {
                found = Some(Identity {
                    name: &token.name,
                    read_only: token.read_only,
                });
            }
        }
        found
    }
}

/// A request that presented a valid bearer token; for a read-only token, the request is
/// a read.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token_name: String,
    pub read_only: bool,
    /// The endpoint the token belongs to (tokens are valid on their own endpoint only).
    pub endpoint: std::sync::Arc<str>,
}

impl FromRequestParts<AppState> for Authenticated {
    /// 401 (SCIM error) without a known token; 429 for a token past its rate limit; 403
    /// for a read-only token asking to write.
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (token_name, read_only) =
            identify(parts, state).map_err(IntoResponse::into_response)?;
        super::observe::record_actor(&parts.extensions, &token_name);
        state
            .rate_limits
            .get()
            // Token names are per endpoint: their buckets are too.
            .admit_token(&format!("{}/{token_name}", state.endpoint))
            .map_err(IntoResponse::into_response)?;
        if read_only && is_write(&parts.method, parts.uri.path()) {
            tracing::warn!(actor = %token_name, method = %parts.method, "write refused: the token is read-only");
            return Err(ApiError::from(ScimError::forbidden(format!(
                "the token '{token_name}' is read-only: it may read (GET, POST …/.search) but not {}",
                parts.method
            )))
            .into_response());
        }
        Ok(Authenticated {
            token_name,
            read_only,
            endpoint: state.endpoint.clone(),
        })
    }
}

/// Whether a request asks to change something: anything but GET/HEAD, except a search
/// (POST to `/.search` or `/<endpoint>/.search`), which only reads.
fn is_write(method: &Method, path: &str) -> bool {
    match *method {
        Method::GET | Method::HEAD => false,
        Method::POST => !path.ends_with("/.search"),
        _ => true,
    }
}

/// The name of the token the request presents, and whether it is read-only.
fn identify(parts: &Parts, state: &AppState) -> Result<(String, bool), ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(ScimError::unauthorized(
            "missing Authorization header; send 'Authorization: Bearer <token>'",
        )
        .into());
    };
    let value = value.to_str().unwrap_or_default().trim();
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(
                ScimError::unauthorized("the Authorization header is not a bearer token").into(),
            );
        }
    };
    let tokens = state.tokens.get();
    // A static token or JWT, else a token the endpoint's OAuth token endpoint issued.
    let who = tokens
        .identify(token)
        .or_else(|| state.oauth.identify(token, tokens.oauth()));
    match who {
        Some(who) => Ok((who.name.to_string(), who.read_only)),
        None => Err(ScimError::unauthorized("invalid bearer token").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of<'a>(set: &'a TokenSet, token: &str) -> Option<&'a str> {
        set.identify(token).map(|who| who.name)
    }

    #[test]
    fn tokens_are_identified_by_secret_and_unknown_ones_rejected() {
        let set = TokenSet::new([
            ("entra", "0123456789abcdef-entra"),
            ("okta", "0123456789abcdef-okta"),
        ]);
        assert_eq!(name_of(&set, "0123456789abcdef-okta"), Some("okta"));
        assert_eq!(name_of(&set, "0123456789abcdef-entra"), Some("entra"));
        assert_eq!(name_of(&set, "0123456789abcdef"), None);
        assert_eq!(name_of(&set, ""), None);
    }

    fn config(yaml: &str) -> AuthConfig {
        struct NoEnv;
        impl crate::config::Environment for NoEnv {
            fn var(&self, _: &str) -> Option<String> {
                None
            }
            fn read_file(&self, path: &std::path::Path) -> std::io::Result<String> {
                std::fs::read_to_string(path)
            }
        }
        crate::config::parse(yaml, "test.yaml", &NoEnv)
            .unwrap_or_else(|e| panic!("{e}"))
            .auth
    }

    #[test]
    fn a_hashed_token_is_identified_by_the_secret_it_is_the_hash_of() {
        let secret = "a-token-whose-hash-is-in-the-config";
        let set = TokenSet::from_config(&config(&format!(
            "auth:\n  tokens:\n    - name: hashed\n      hash: {}\n",
            TokenDigest::of(secret)
        )));
        assert_eq!(
            set.identify(secret),
            Some(Identity {
                name: "hashed",
                read_only: false
            })
        );
        // The hash itself is not a credential.
        assert_eq!(set.identify(&TokenDigest::of(secret).to_string()), None);
        assert_eq!(set.identify("a-token-whose-hash-is-in-the-confi"), None);
    }

    #[test]
    fn a_read_only_token_is_identified_as_read_only() {
        let set = TokenSet::from_config(&config(
            "auth:\n  tokens:\n    - name: auditor\n      read_only: true\n      secret: {value: 0123456789abcdef-audit}\n    - name: entra\n      secret: {value: 0123456789abcdef-entra}\n",
        ));
        assert_eq!(
            set.identify("0123456789abcdef-audit"),
            Some(Identity {
                name: "auditor",
                read_only: true
            })
        );
        assert_eq!(
            set.identify("0123456789abcdef-entra"),
            Some(Identity {
                name: "entra",
                read_only: false
            })
        );
    }

    #[test]
    fn reads_are_get_head_and_posts_to_search_everything_else_writes() {
        for (method, path) in [
            (Method::GET, "/scim/v2/Users"),
            (Method::GET, "/scim/v2/Users/1"),
            (Method::HEAD, "/scim/v2/Groups/1"),
            (Method::POST, "/scim/v2/.search"),
            (Method::POST, "/scim/v2/Users/.search"),
            (Method::POST, "/.search"),
        ] {
            assert!(!is_write(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::POST, "/scim/v2/Users"),
            (Method::POST, "/scim/v2/Users/1"),
            (Method::POST, "/scim/v2/Users/.searchx"),
            (Method::PUT, "/scim/v2/Users/1"),
            (Method::PATCH, "/scim/v2/Groups/1"),
            (Method::DELETE, "/scim/v2/Users/1"),
            (Method::DELETE, "/scim/v2/Users/.search"),
            (Method::OPTIONS, "/scim/v2/Users"),
        ] {
            assert!(is_write(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn a_static_token_shaped_like_a_jwt_still_works_when_no_jwt_is_configured() {
        let set = TokenSet::new([("dotted", "abcdefgh.ijklmnop.qrstuvwx")]);
        assert_eq!(name_of(&set, "abcdefgh.ijklmnop.qrstuvwx"), Some("dotted"));
    }
}
