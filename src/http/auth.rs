//! Bearer-token authentication as an extractor: a handler that takes `Authenticated`
//! runs only for a known token, and learns the token's name (the actor of its changes).
//!
//! Tokens are kept as SHA-256 digests and compared in constant time against every
//! configured digest, so neither the token nor its position leaks through timing.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::AppState;
use crate::http::error::ApiError;
use crate::scim::error::ScimError;

/// The configured tokens: names and digests, never the secrets themselves.
#[derive(Clone)]
pub struct TokenSet {
    tokens: Vec<(String, [u8; 32])>,
}

impl TokenSet {
    pub fn new<'a>(tokens: impl IntoIterator<Item = (&'a str, &'a str)>) -> TokenSet {
        TokenSet {
            tokens: tokens
                .into_iter()
                .map(|(name, secret)| (name.to_string(), Sha256::digest(secret.as_bytes()).into()))
                .collect(),
        }
    }

    /// The name of the token whose secret is `presented`.
    pub fn identify(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, known) in &self.tokens {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// A request that presented a valid bearer token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token_name: String,
}

impl FromRequestParts<AppState> for Authenticated {
    /// 401 (SCIM error) without a known token; 429 for a token past its rate limit.
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token_name = identify(parts, state).map_err(IntoResponse::into_response)?;
        super::observe::record_actor(&parts.extensions, &token_name);
        state
            .rate_limits
            .get()
            .admit_token(&token_name)
            .map_err(IntoResponse::into_response)?;
        Ok(Authenticated { token_name })
    }
}

/// The name of the token the request presents.
fn identify(parts: &Parts, state: &AppState) -> Result<String, ApiError> {
    {
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
                return Err(ScimError::unauthorized(
                    "the Authorization header is not a bearer token",
                )
                .into());
            }
        };
        match state.tokens.get().identify(token) {
            Some(name) => Ok(name.to_string()),
            None => Err(ScimError::unauthorized("invalid bearer token").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_identified_by_secret_and_unknown_ones_rejected() {
        let set = TokenSet::new([
            ("entra", "0123456789abcdef-entra"),
            ("okta", "0123456789abcdef-okta"),
        ]);
        assert_eq!(set.identify("0123456789abcdef-okta"), Some("okta"));
        assert_eq!(set.identify("0123456789abcdef-entra"), Some("entra"));
        assert_eq!(set.identify("0123456789abcdef"), None);
        assert_eq!(set.identify(""), None);
    }
}
