//! What a Cloud API call can end in, and what Switchyard makes of Meta's
//! error codes (docs/cloud-api.md section 5): decided by `code`, never by
//! the title (to be deprecated) or the subcode (gone since v16), and by the
//! HTTP status only when no code came back.

use std::time::Duration;

/// A failed Cloud API call. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// Meta answered with its error body.
    #[error("Cloud API error {code} (HTTP {status}): {details}")]
    Api {
        status: u16,
        code: i64,
        details: String,
    },
    /// No readable error: a 5xx, a 429 without a body, a connection failure
    /// (`status: None`: the request may or may not have arrived).
    #[error("Cloud API unavailable (HTTP {status:?}): {message}")]
    Transient {
        status: Option<u16>,
        message: String,
    },
    #[error("Cloud API call timed out after {timeout:?}")]
    Timeout { timeout: Duration },
    /// An answer that is neither a success nor an error we can read; a 2xx
    /// without a message id most likely sent the message.
    #[error("unexpected Cloud API answer (HTTP {status}): {message}")]
    InvalidResponse { status: u16, message: String },
    /// Refused before any call: the message breaks a documented limit, or
    /// the tenant has no usable token.
    #[error("not sent: {reason}")]
    NotSendable { reason: String },
    /// A free-form reply after the customer-service window closed (or with
    /// no message of the customer known): not attempted, since Meta would
    /// refuse it with `131047` (docs/cloud-api.md section 7).
    #[error("the customer-service window is closed ({detail}); not sent")]
    WindowClosed { detail: String },
    /// No usable credential for the tenant (no channel connected, the token
    /// revoked or refused by Meta, no key to open it): nothing was called.
    #[error("no usable Cloud API credential: {reason}")]
    NoCredential { reason: String },
    /// Our own store could not be read before the call (the tenant's
    /// channel row): nothing was called, and it is not the message's fault,
    /// so it spends no attempt; the tenant waits a moment and tries again.
    #[error("not sent: our own store is unavailable: {message}")]
    OursUnavailable { message: String },
}

/// The dead-letter reason of a free-form reply outside the window, whether
/// refused before the call or by Meta (`131047`).
pub const WINDOW_CLOSED: &str = "window_closed";

/// Why a tenant is held (a metric label and what the operator is told).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// The token expired or was revoked (`0`, `190`).
    Unauthorized,
    /// A permission is missing (`3`, `10`, `200`–`299`, `131005`).
    Permission,
    /// The account or number is restricted, locked or blocked.
    Restricted,
    /// The phone number was deleted (`33`).
    NumberGone,
    /// A payment problem (`131042`).
    Billing,
    /// Onboarding is unfinished (`131037`, a display name).
    Onboarding,
    /// The number is not registered (`131045`, `133010`).
    NotRegistered,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Unauthorized => "unauthorized",
            HoldReason::Permission => "permission",
            HoldReason::Restricted => "restricted",
            HoldReason::NumberGone => "number_gone",
            HoldReason::Billing => "billing",
            HoldReason::Onboarding => "onboarding",
            HoldReason::NotRegistered => "not_registered",
        }
    }
}

/// What to do with the message after a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Transient: back off and try again, spending an attempt; `at_most`
    /// caps the attempts for this code (`1`: three tries).
    Retry { at_most: Option<u32> },
    /// A rate limit of this tenant's number (or of one of its chats): pause
    /// the tenant this long, spending no attempt.
    SlowDown { pause: Duration, chat_only: bool },
    /// An account problem: hold this tenant only until an operator (or the
    /// matching good news) lifts it; the message waits.
    Hold(HoldReason),
    /// The message's own fault: dead-letter it with this reason.
    DeadLetter(&'static str),
}

impl CloudError {
    /// Meta's error code, when the answer carried one.
    pub fn code(&self) -> Option<i64> {
        match self {
            CloudError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The outcome of this failure (docs/cloud-api.md's table).
    pub fn outcome(&self) -> Outcome {
        match self {
            CloudError::Api { status, code, .. } => by_code(*code, *status),
            CloudError::Transient { .. } | CloudError::Timeout { .. } => {
                Outcome::Retry { at_most: None }
            }
            CloudError::InvalidResponse { .. } => Outcome::DeadLetter("unexpected_answer"),
            CloudError::NotSendable { .. } => Outcome::DeadLetter("invalid_request"),
            CloudError::WindowClosed { .. } => Outcome::DeadLetter(WINDOW_CLOSED),
            CloudError::NoCredential { .. } => Outcome::Hold(HoldReason::Unauthorized),
            CloudError::OursUnavailable { .. } => slow(1),
        }
    }

    /// Whether the message may have gone out although no success came back
    /// (so the next attempt is in doubt).
    pub fn may_have_sent(&self) -> bool {
        matches!(
            self,
            CloudError::Timeout { .. } | CloudError::Transient { status: None, .. }
        ) || matches!(self, CloudError::InvalidResponse { status, .. } if (200..300).contains(status))
    }

    /// A short label for metrics.
    pub fn class(&self) -> &'static str {
        if matches!(self, CloudError::OursUnavailable { .. }) {
            return "local_trouble";
        }
        match self.outcome() {
            Outcome::Retry { .. } => "cloud_transient",
            Outcome::SlowDown { .. } => "cloud_rate_limited",
            Outcome::Hold(_) => "cloud_held",
            Outcome::DeadLetter(_) => "cloud_rejected",
        }
    }
}

fn slow(seconds: u64) -> Outcome {
    Outcome::SlowDown {
        pause: Duration::from_secs(seconds),
        chat_only: false,
    }
}

fn by_code(code: i64, status: u16) -> Outcome {
    match code {
        0 | 190 => Outcome::Hold(HoldReason::Unauthorized),
        3 | 10 | 200..=299 | 131_005 => Outcome::Hold(HoldReason::Permission),
        4 | 80_007 => slow(60),
        130_429 => slow(1),
        131_048 => slow(300),
        131_056 => Outcome::SlowDown {
            pause: Duration::from_secs(4),
            chat_only: true,
        },
        131_057 | 2_494_100 => slow(60),
        131_064 | 368 | 131_031 => Outcome::Hold(HoldReason::Restricted),
        33 => Outcome::Hold(HoldReason::NumberGone),
        131_042 => Outcome::Hold(HoldReason::Billing),
        131_037 => Outcome::Hold(HoldReason::Onboarding),
        131_045 | 133_010 => Outcome::Hold(HoldReason::NotRegistered),
        1 => Outcome::Retry { at_most: Some(3) },
        2 | 131_000 | 131_016 | 133_004 => Outcome::Retry { at_most: None },
        131_053 => Outcome::Retry { at_most: Some(2) },
        131_047 => Outcome::DeadLetter(WINDOW_CLOSED),
        131_026 => Outcome::DeadLetter("undeliverable"),
        131_049 => Outcome::DeadLetter("ecosystem_limit"),
        131_050 => Outcome::DeadLetter("opted_out"),
        130_403 => Outcome::DeadLetter("blocked_user"),
        130_472 => Outcome::DeadLetter("experiment"),
        130_497 => Outcome::DeadLetter("country_restricted"),
        131_021 | 100 | 131_008 | 131_009 | 135_000 | 131_051 => {
            Outcome::DeadLetter("invalid_request")
        }
        132_000 | 132_012 | 132_018 => Outcome::DeadLetter("template_params"),
        132_001 | 131_063 => Outcome::DeadLetter("template_unavailable"),
        132_005 | 132_007 => Outcome::DeadLetter("template_rejected"),
        132_015 => Outcome::DeadLetter("template_paused"),
        132_016 => Outcome::DeadLetter("template_disabled"),
        _ if status == 429 => slow(1),
        _ if status >= 500 => Outcome::Retry { at_most: None },
        _ => Outcome::DeadLetter("unknown_code"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64, status: u16) -> CloudError {
        CloudError::Api {
            status,
            code,
            details: String::new(),
        }
    }

    #[test]
    fn codes_decide_whatever_the_http_status() {
        // A token error is a hold even when Meta answers 400 or 500.
        for status in [400, 401, 500] {
            assert_eq!(
                api(190, status).outcome(),
                Outcome::Hold(HoldReason::Unauthorized)
            );
        }
        assert_eq!(api(130_429, 400).outcome(), slow(1));
        assert_eq!(
            api(131_047, 400).outcome(),
            Outcome::DeadLetter("window_closed")
        );
        assert_eq!(
            api(131_056, 400).outcome(),
            Outcome::SlowDown {
                pause: Duration::from_secs(4),
                chat_only: true
            }
        );
        assert_eq!(
            api(250, 403).outcome(),
            Outcome::Hold(HoldReason::Permission)
        );
        assert_eq!(
            api(368, 400).outcome(),
            Outcome::Hold(HoldReason::Restricted)
        );
        assert_eq!(api(1, 400).outcome(), Outcome::Retry { at_most: Some(3) });
    }

    #[test]
    fn unknown_codes_fall_back_to_the_status() {
        assert_eq!(api(999_999, 429).outcome(), slow(1));
        assert_eq!(
            api(999_999, 503).outcome(),
            Outcome::Retry { at_most: None }
        );
        assert_eq!(
            api(999_999, 400).outcome(),
            Outcome::DeadLetter("unknown_code")
        );
    }

    #[test]
    fn our_own_store_failing_spends_no_attempt_and_holds_nobody() {
        let ours = CloudError::OursUnavailable {
            message: "pool timed out".to_owned(),
        };
        assert!(matches!(
            ours.outcome(),
            Outcome::SlowDown {
                chat_only: false,
                ..
            }
        ));
        assert!(!ours.may_have_sent());
        assert_eq!(ours.class(), "local_trouble");
    }

    #[test]
    fn only_calls_that_may_have_arrived_are_in_doubt() {
        assert!(
            CloudError::Timeout {
                timeout: Duration::from_secs(1)
            }
            .may_have_sent()
        );
        assert!(
            CloudError::Transient {
                status: None,
                message: String::new()
            }
            .may_have_sent()
        );
        assert!(
            !CloudError::Transient {
                status: Some(503),
                message: String::new()
            }
            .may_have_sent()
        );
        assert!(!api(131_047, 400).may_have_sent());
        assert!(
            CloudError::InvalidResponse {
                status: 200,
                message: String::new()
            }
            .may_have_sent()
        );
    }
}
