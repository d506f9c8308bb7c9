//! What ingest answers when it refuses a delivery: one enum, one status per
//! variant, a short public reason and a metric label. Handlers return it with
//! `?`; the HTTP shape of every refusal is decided here and nowhere else.
//!
//! Authentication failures all answer the same `401 {"error":"unauthorized"}`
//! so an attacker learns nothing about which part was wrong; validation
//! failures name the problem precisely, because only an authenticated bridge
//! (or the operator debugging it) can see them.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::metrics::Reason;

/// A refused delivery.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("tenant in the URL is not a valid tenant id")]
    InvalidTenant,
    #[error("token does not match the tenant")]
    BadToken,
    #[error("Standard Webhooks signature refused: {0}")]
    BadSignature(String),
    #[error("body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Malformed(String),
    #[error("customer_ref in the body does not match the tenant of the webhook URL")]
    TenantMismatch,
    #[error("webhook-id was already delivered to another tenant's URL; replay refused")]
    ReplayedElsewhere,
    #[error(
        "tenant over its admission limit ({per_second} events/s, burst {burst}); event not accepted"
    )]
    Throttled {
        per_second: u32,
        burst: u32,
        /// Whole seconds until the tenant may send again (at least 1).
        retry_after_secs: u64,
    },
    #[error("event could not be made durable; not accepted")]
    Unavailable,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::InvalidTenant | Rejection::BadToken | Rejection::BadSignature(_) => {
                StatusCode::UNAUTHORIZED
            }
            Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Malformed(_) | Rejection::TenantMismatch => StatusCode::BAD_REQUEST,
            Rejection::ReplayedElsewhere => StatusCode::CONFLICT,
            Rejection::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            Rejection::InvalidTenant => Reason::InvalidTenant,
            Rejection::BadToken => Reason::BadToken,
            Rejection::BadSignature(_) => Reason::BadSignature,
            Rejection::TooLarge { .. } => Reason::TooLarge,
            Rejection::Malformed(_) => Reason::Malformed,
            Rejection::TenantMismatch => Reason::TenantMismatch,
            Rejection::ReplayedElsewhere => Reason::ReplayedElsewhere,
            Rejection::Throttled { .. } => Reason::Throttled,
            Rejection::Unavailable => Reason::Unavailable,
        }
    }

    /// The text a caller sees: nothing about authentication internals.
    fn public_message(&self) -> String {
        match self {
            Rejection::InvalidTenant | Rejection::BadToken | Rejection::BadSignature(_) => {
                "unauthorized".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.public_message() });
        let mut response = (self.status(), Json(body)).into_response();
        if let Rejection::Throttled {
            retry_after_secs, ..
        } = self
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        if matches!(self, Rejection::Unavailable) {
            // Tells a gateway in front of us (not WA Bridges, which never retries) to try again.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
