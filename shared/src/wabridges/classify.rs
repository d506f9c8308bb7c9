//! From an HTTP answer to an error class: a pure function, so every mapping
//! is tested without a network.
//!
//! Only `429` is documented. Restriction and "not connected" answers are not,
//! so they are recognised by configurable status codes and by substrings of
//! the `{"error":"..."}` message; `docs/wabridges.md` explains the defaults.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::error::WaError;
use crate::config::{ConfigError, Env};

/// The most of a provider error message we keep (bytes, cut at a character boundary).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 512;
/// The wait assumed when a `429` has no usable `Retry-After`: one full window.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest `Retry-After` honoured; a larger value is clamped so a bogus
/// header cannot stall the fleet for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How the undocumented answers are recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyRules {
    /// `SWITCHYARD_WA_RESTRICTED_STATUSES` (default empty): statuses that always mean
    /// "this number is restricted" (comma-separated, e.g. `451,423`).
    pub restricted_statuses: Vec<u16>,
    /// `SWITCHYARD_WA_RESTRICTED_MARKERS` (default `restricted,banned`): lowercase
    /// substrings of an error message that mean a restriction.
    pub restricted_markers: Vec<String>,
    /// `SWITCHYARD_WA_DISCONNECTED_MARKERS` (default `not connected,disconnected,not paired,logged out,not logged in`):
    /// substrings that mean the bridge's session is down.
    pub disconnected_markers: Vec<String>,
}

impl Default for ClassifyRules {
    fn default() -> Self {
        Self {
            restricted_statuses: Vec::new(),
            restricted_markers: split_markers(DEFAULT_RESTRICTED_MARKERS),
            disconnected_markers: split_markers(DEFAULT_DISCONNECTED_MARKERS),
        }
    }
}

const DEFAULT_RESTRICTED_MARKERS: &str = "restricted,banned";
const DEFAULT_DISCONNECTED_MARKERS: &str =
    "not connected,disconnected,not paired,logged out,not logged in";

impl ClassifyRules {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        const STATUSES: &str = "SWITCHYARD_WA_RESTRICTED_STATUSES";
        let restricted_statuses = env
            .string(STATUSES, "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.parse::<u16>() {
                Ok(code) if (400..=599).contains(&code) && code != 429 && code != 401 => Ok(code),
                _ => Err(ConfigError {
                    variable: STATUSES.to_owned(),
                    reason: format!(
                        "{s:?} is not an HTTP error status (400-599, except 401 and 429)"
                    ),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            restricted_statuses,
            restricted_markers: split_markers(&env.string(
                "SWITCHYARD_WA_RESTRICTED_MARKERS",
                DEFAULT_RESTRICTED_MARKERS,
            )),
            disconnected_markers: split_markers(&env.string(
                "SWITCHYARD_WA_DISCONNECTED_MARKERS",
                DEFAULT_DISCONNECTED_MARKERS,
            )),
        })
    }
}

fn split_markers(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(|m| m.trim().to_lowercase())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Classifies a non-success answer. `body` may be truncated by the caller.
///
/// Precedence: `429`, then `401`, then restriction (configured statuses, then
/// message markers), then "not connected" markers, then `403`, `408`/5xx,
/// other 4xx; anything else (1xx, 3xx) is an invalid response. Restriction is
/// checked before `403` because a banned number answered `403` must pause that
/// bridge, not stop the whole fleet.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8], rules: &ClassifyRules) -> WaError {
    let message = error_message(body);
    let is_error = (400..=599).contains(&status);
    let lowered = message.to_lowercase();
    let mentions = |markers: &[String]| markers.iter().any(|m| lowered.contains(m.as_str()));
    match status {
        429 => WaError::RateLimited {
            retry_after: retry_after(headers),
        },
        401 => WaError::Unauthorized { status },
        _ if rules.restricted_statuses.contains(&status) => WaError::Restricted { status, message },
        _ if is_error && mentions(&rules.restricted_markers) => {
            WaError::Restricted { status, message }
        }
        _ if is_error && mentions(&rules.disconnected_markers) => {
            WaError::Disconnected { status, message }
        }
        403 => WaError::Unauthorized { status },
        408 | 500..=599 => WaError::Transient {
            status: Some(status),
            message,
        },
        400..=499 => WaError::Rejected { status, message },
        _ => WaError::InvalidResponse {
            status,
            message: if message.is_empty() {
                "unexpected status".to_owned()
            } else {
                message
            },
        },
    }
}

/// `Retry-After` in seconds (the documented form), clamped to
/// `1s..=MAX_RETRY_AFTER`; absent or unreadable (including the HTTP-date form,
/// which the provider does not document) means [`DEFAULT_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Duration {
    let Some(raw) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()) else {
        return DEFAULT_RETRY_AFTER;
    };
    let raw = raw.trim();
    let seconds = raw.parse::<u64>().ok().map(|s| s as f64).or_else(|| {
        raw.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
    });
    match seconds {
        None => DEFAULT_RETRY_AFTER,
        Some(s) => Duration::from_secs_f64(s.ceil().clamp(1.0, MAX_RETRY_AFTER.as_secs_f64())),
    }
}

/// The `error` (or `message`) string of a JSON error body, else the body as
/// text; one line, at most [`MAX_ERROR_MESSAGE_BYTES`].
pub fn error_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["error", "message"]
                .iter()
                .find_map(|k| v.get(k).and_then(|e| e.as_str()).map(str::to_owned))
        });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(one_line, MAX_ERROR_MESSAGE_BYTES)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn run(status: u16, body: &str) -> WaError {
        classify(
            status,
            &headers(None),
            body.as_bytes(),
            &ClassifyRules::default(),
        )
    }

    #[test]
    fn a_429_is_rate_limited_for_the_seconds_retry_after_names() {
        let e = classify(
            429,
            &headers(Some("17")),
            br#"{"error":"rate limit exceeded"}"#,
            &ClassifyRules::default(),
        );
        assert_eq!(
            e,
            WaError::RateLimited {
                retry_after: Duration::from_secs(17)
            }
        );
        assert!(e.is_retryable() && !e.spends_attempt());
    }

    #[test]
    fn a_missing_or_garbage_retry_after_falls_back_to_one_window() {
        for h in [
            None,
            Some("soon"),
            Some(""),
            Some("-5"),
            Some("Wed, 21 Oct 2015 07:28:00 GMT"),
        ] {
            assert_eq!(retry_after(&headers(h)), DEFAULT_RETRY_AFTER, "{h:?}");
        }
    }

    #[test]
    fn retry_after_is_clamped_to_a_sane_range() {
        assert_eq!(retry_after(&headers(Some("0"))), Duration::from_secs(1));
        assert_eq!(retry_after(&headers(Some("2.2"))), Duration::from_secs(3));
        assert_eq!(retry_after(&headers(Some("99999999"))), MAX_RETRY_AFTER);
    }

    #[test]
    fn a_refused_key_is_unauthorized() {
        assert_eq!(
            run(401, r#"{"error":"invalid api key"}"#),
            WaError::Unauthorized { status: 401 }
        );
        assert_eq!(
            run(403, r#"{"error":"forbidden"}"#),
            WaError::Unauthorized { status: 403 }
        );
        // A 401 stays a key problem even if its text mentions a restriction.
        assert_eq!(
            run(401, r#"{"error":"key restricted"}"#),
            WaError::Unauthorized { status: 401 }
        );
    }

    #[test]
    fn permanent_client_errors_are_rejected_with_the_providers_message() {
        for status in [400, 404, 409, 413, 422] {
            assert_eq!(
                run(status, r#"{"error":"bad chat"}"#),
                WaError::Rejected {
                    status,
                    message: "bad chat".into()
                }
            );
        }
    }

    #[test]
    fn server_errors_and_408_are_transient() {
        for status in [408, 500, 502, 503, 504] {
            assert!(
                matches!(run(status, "<html>oops</html>"), WaError::Transient { status: Some(s), .. } if s == status)
            );
        }
    }

    #[test]
    fn a_restriction_is_recognised_by_its_message_even_under_403() {
        let e = run(403, r#"{"error":"This number is RESTRICTED by WhatsApp"}"#);
        assert!(
            matches!(e, WaError::Restricted { status: 403, .. }),
            "{e:?}"
        );
        assert!(matches!(
            run(400, r#"{"error":"account banned"}"#),
            WaError::Restricted { .. }
        ));
    }

    #[test]
    fn configured_restriction_statuses_win_over_the_generic_mapping() {
        let rules = ClassifyRules::from_env(&Env::from_map([(
            "SWITCHYARD_WA_RESTRICTED_STATUSES",
            "451, 423",
        )]))
        .unwrap();
        let e = classify(451, &headers(None), br#"{"error":"nope"}"#, &rules);
        assert_eq!(
            e,
            WaError::Restricted {
                status: 451,
                message: "nope".into()
            }
        );
        assert!(!e.is_retryable() && !e.spends_attempt());
    }

    #[test]
    fn restriction_statuses_that_would_hide_429_or_401_are_refused_at_load() {
        for bad in ["429", "401", "200", "x"] {
            let env = Env::from_map([("SWITCHYARD_WA_RESTRICTED_STATUSES", bad)]);
            assert!(ClassifyRules::from_env(&env).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_not_connected_answer_is_disconnected_not_rejected() {
        let e = run(409, r#"{"error":"bridge not connected"}"#);
        assert!(
            matches!(e, WaError::Disconnected { status: 409, .. }),
            "{e:?}"
        );
        assert!(e.is_retryable() && !e.spends_attempt());
    }

    #[test]
    fn redirects_and_informational_answers_are_invalid_responses() {
        assert!(matches!(
            run(302, ""),
            WaError::InvalidResponse { status: 302, .. }
        ));
    }

    #[test]
    fn error_messages_are_one_line_and_capped() {
        let long = format!(r#"{{"error":"{}"}}"#, "é".repeat(600));
        let m = error_message(long.as_bytes());
        assert!(m.len() <= MAX_ERROR_MESSAGE_BYTES);
        assert!(m.chars().all(|c| c == 'é'));
        assert_eq!(error_message(b"line1\nline2"), "line1 line2");
        assert_eq!(error_message(br#"{"message":"m"}"#), "m");
        assert_eq!(error_message(b"\xff\xfeplain"), "\u{fffd}\u{fffd}plain");
    }
}
