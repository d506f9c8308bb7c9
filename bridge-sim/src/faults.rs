//! What a simulated bridge can be told to do wrong, and how each misbehaviour
//! answers. Faults apply to every data-plane call of that bridge (a broken
//! bridge is broken for status checks too); latency applies before them.

use axum::{
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::http::error_response;

/// A misbehaviour of one bridge's data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer a 5xx with `{"error":"internal error"}`.
    ServerError {
        #[serde(default = "default_server_status")]
        status: u16,
    },
    /// Never answer (until the simulator stops): the client must time out.
    Hang,
    /// Answer a 4xx with the given message.
    Reject {
        #[serde(default = "default_reject_status")]
        status: u16,
        #[serde(default = "default_reject_message")]
        message: String,
    },
    /// Answer as for a restricted number (the real code is undocumented;
    /// default `403 {"error":"this number is restricted by WhatsApp"}`).
    Restricted {
        #[serde(default = "default_restricted_status")]
        status: u16,
        #[serde(default = "default_restricted_message")]
        message: String,
    },
    /// Answer `429` with `Retry-After: retry_after_secs`.
    RateLimit {
        #[serde(default = "default_retry_after")]
        retry_after_secs: u64,
    },
}

fn default_server_status() -> u16 {
    503
}
fn default_reject_status() -> u16 {
    422
}
fn default_reject_message() -> String {
    "rejected by the simulator".to_owned()
}
fn default_restricted_status() -> u16 {
    403
}
fn default_restricted_message() -> String {
    "this number is restricted by WhatsApp".to_owned()
}
fn default_retry_after() -> u64 {
    30
}

impl Fault {
    /// The answer this fault gives (`Hang` is handled by the caller).
    pub(crate) fn response(&self) -> Response {
        let status =
            |code: u16, fallback: StatusCode| StatusCode::from_u16(code).unwrap_or(fallback);
        match self {
            Fault::ServerError { status: code } => error_response(
                status(*code, StatusCode::SERVICE_UNAVAILABLE),
                "internal error",
            ),
            Fault::Hang => {
                // Given only after the hang ends (at shutdown); marked so the caller hangs first.
                let mut r = error_response(StatusCode::GATEWAY_TIMEOUT, "timed out");
                r.extensions_mut().insert(Hanging);
                r
            }
            Fault::Reject {
                status: code,
                message,
            } => error_response(status(*code, StatusCode::UNPROCESSABLE_ENTITY), message),
            Fault::Restricted {
                status: code,
                message,
            } => error_response(status(*code, StatusCode::FORBIDDEN), message),
            Fault::RateLimit { retry_after_secs } => {
                let mut r = error_response(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                r.into_response()
            }
        }
    }

    /// The status this fault answers with (recorded with the attempt).
    pub(crate) fn status(&self) -> u16 {
        self.response().status().as_u16()
    }
}

/// Marks the answer of [`Fault::Hang`]: hold the request before giving it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hanging;

/// An active fault and how many more calls it affects (`None`: until cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultPlan {
    #[serde(flatten)]
    pub fault: Fault,
    #[serde(default)]
    pub times: Option<u32>,
}

/// Whether (and when) an accepted send is echoed as a `from_me` webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EchoMode {
    /// No echo.
    #[default]
    Off,
    /// The echo is delivered before the send call answers (the race at its worst).
    Before,
    /// The echo is posted concurrently with the answer; either may arrive first.
    After,
}
