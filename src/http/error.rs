//! The one place errors become HTTP responses: every failure leaves as a SCIM Error body
//! (RFC 7644 §3.12) with `Content-Type: application/scim+json`. Internal causes are
//! logged with the request id; clients get a generic detail.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::engine::EngineError;
use crate::scim::error::ScimError;
use crate::store::StoreError;

pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// The longest `detail` a response carries, in characters: details quote the client's
/// input (a path, a value), which may be as long as a body; the rest is elided.
const MAX_DETAIL_CHARS: usize = 1024;

fn shorten_detail(detail: &mut String) {
    if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL_CHARS) {
        let elided = detail.len() - cut;
        detail.truncate(cut);
        detail.push_str(&format!("… ({elided} more bytes elided)"));
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub ScimError);

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        ApiError(e)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Scim(e) => ApiError(e),
            // The unique index caught a duplicate the engine's own check could not see.
            EngineError::Store(StoreError::Duplicate { kind, value }) => ApiError(
                ScimError::uniqueness(format!("{kind} '{value}' is already taken")),
            ),
            EngineError::Store(e) if e.is_unavailable() => {
                tracing::error!(error = %e, "state store cannot take writes now");
                ApiError(ScimError::unavailable(
                    "the state store cannot take writes right now (storage full, read-only or failing); nothing was changed, retry later",
                ))
            }
            EngineError::Store(e) => {
                tracing::error!(error = %e, "state store failed");
                ApiError(ScimError::internal())
            }
            EngineError::Task(e) => {
                tracing::error!(error = %e, "worker task failed");
                ApiError(ScimError::internal())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut error = self.0;
        shorten_detail(&mut error.detail);
        let mut response = (status, error.to_json().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::shorten_detail;

    #[test]
    fn a_long_detail_is_cut_at_a_character_boundary_and_says_so() {
        let mut detail = format!("path 'é{}' is invalid", "x".repeat(5000));
        shorten_detail(&mut detail);
        assert_eq!(detail.chars().take_while(|c| *c != '…').count(), 1024);
        assert!(detail.ends_with("more bytes elided)"), "{detail}");
        let mut short = String::from("fine");
        shorten_detail(&mut short);
        assert_eq!(short, "fine");
    }
}
