//! The error classes of a provider call, and what the caller does with each.
//!
//! The sender branches on the class, never on a status code: 429 pauses the
//! whole key, 401 stops sending, a restriction pauses one bridge, a rejected
//! message is dead-lettered, transient failures are retried with backoff.
//! Messages are capped excerpts of the provider's `{"error":"..."}` and never
//! contain the API key.

use std::time::Duration;

/// A provider call that did not succeed, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaError {
    /// `429`: the fleet-wide key is over a limit. Pause the key (all replicas)
    /// for `retry_after`, then try again; the message keeps its attempts.
    #[error("rate limited by WA Bridges; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// `401`/`403`: the API key is refused. Stop sending and alert an operator;
    /// messages wait, they are not burned.
    #[error("WA Bridges refused the API key (HTTP {status})")]
    Unauthorized { status: u16 },
    /// The number is restricted or banned by WhatsApp. Pause this bridge and tell an
    /// operator; never retry blindly (it makes the restriction worse).
    #[error("the bridge's number is restricted (HTTP {status}): {message}")]
    Restricted { status: u16, message: String },
    /// The bridge's WhatsApp session is not connected. Hold this tenant's sends
    /// until a `connected` event; the message keeps its attempts.
    #[error("the bridge is not connected (HTTP {status}): {message}")]
    Disconnected { status: u16, message: String },
    /// `400`/`404`/`422` and other 4xx: this request will never succeed. Dead-letter it.
    #[error("WA Bridges rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// 5xx, `408`, or the connection failed: retry with backoff, spending an attempt.
    #[error("WA Bridges failed (HTTP {}): {message}", status.map_or_else(|| "none".to_owned(), |s| s.to_string()))]
    Transient {
        status: Option<u16>,
        message: String,
    },
    /// No answer within the client timeout. The provider may still have acted
    /// (a send may have gone out); retried like a transient failure.
    #[error("WA Bridges did not answer within {timeout:?}")]
    Timeout { timeout: Duration },
    /// A success (or a redirect) whose body we cannot read. Not retried: a send
    /// answered 2xx has most likely gone out, and a retry would duplicate it.
    #[error("unexpected answer from WA Bridges (HTTP {status}): {message}")]
    InvalidResponse { status: u16, message: String },
    /// The chat cannot be sent to; refused before any call.
    #[error("invalid chat: {reason}")]
    InvalidChat { reason: String },
}

impl WaError {
    /// Whether the same request may succeed later, so the message should wait
    /// or be redelivered rather than dead-lettered. `Unauthorized` and
    /// `Restricted` are not: they need an operator before anything is retried.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WaError::RateLimited { .. }
                | WaError::Disconnected { .. }
                | WaError::Transient { .. }
                | WaError::Timeout { .. }
        )
    }

    /// Whether this outcome counts against the message's attempt limit. Waits
    /// imposed by the provider or by an operator (rate limit, disconnected,
    /// refused key, restriction) do not: the message is not at fault.
    pub fn spends_attempt(&self) -> bool {
        matches!(
            self,
            WaError::Transient { .. }
                | WaError::Timeout { .. }
                | WaError::Rejected { .. }
                | WaError::InvalidResponse { .. }
                | WaError::InvalidChat { .. }
        )
    }

    /// How long the provider asked us to wait, for `RateLimited`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            WaError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            WaError::RateLimited { .. } => Some(429),
            WaError::Unauthorized { status }
            | WaError::Restricted { status, .. }
            | WaError::Disconnected { status, .. }
            | WaError::Rejected { status, .. }
            | WaError::InvalidResponse { status, .. } => Some(*status),
            WaError::Transient { status, .. } => *status,
            WaError::Timeout { .. } | WaError::InvalidChat { .. } => None,
        }
    }

    /// A short, fixed label for metrics and logs.
    pub fn class(&self) -> &'static str {
        match self {
            WaError::RateLimited { .. } => "rate_limited",
            WaError::Unauthorized { .. } => "unauthorized",
            WaError::Restricted { .. } => "restricted",
            WaError::Disconnected { .. } => "disconnected",
            WaError::Rejected { .. } => "rejected",
            WaError::Transient { .. } => "transient",
            WaError::Timeout { .. } => "timeout",
            WaError::InvalidResponse { .. } => "invalid_response",
            WaError::InvalidChat { .. } => "invalid_chat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> String {
        "x".to_owned()
    }

    #[test]
    fn only_waits_and_transient_failures_are_retryable() {
        let retryable = [
            WaError::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            WaError::Disconnected {
                status: 409,
                message: msg(),
            },
            WaError::Transient {
                status: None,
                message: msg(),
            },
            WaError::Timeout {
                timeout: Duration::from_secs(1),
            },
        ];
        let final_ = [
            WaError::Unauthorized { status: 401 },
            WaError::Restricted {
                status: 403,
                message: msg(),
            },
            WaError::Rejected {
                status: 422,
                message: msg(),
            },
            WaError::InvalidResponse {
                status: 200,
                message: msg(),
            },
            WaError::InvalidChat { reason: msg() },
        ];
        assert!(retryable.iter().all(WaError::is_retryable));
        assert!(!final_.iter().any(WaError::is_retryable));
    }

    #[test]
    fn waits_imposed_on_us_do_not_spend_an_attempt() {
        for e in [
            WaError::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            WaError::Unauthorized { status: 403 },
            WaError::Restricted {
                status: 403,
                message: msg(),
            },
            WaError::Disconnected {
                status: 409,
                message: msg(),
            },
        ] {
            assert!(!e.spends_attempt(), "{e:?}");
        }
        assert!(
            WaError::Transient {
                status: Some(503),
                message: msg()
            }
            .spends_attempt()
        );
    }

    #[test]
    fn a_transient_error_without_status_says_so() {
        let e = WaError::Transient {
            status: None,
            message: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "WA Bridges failed (HTTP none): connection refused"
        );
        assert_eq!(e.status(), None);
    }
}
