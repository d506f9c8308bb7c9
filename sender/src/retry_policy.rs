//! What a WA Bridges answer means for the message it was about: the
//! provider-specific classification of one send's result, as data plus one
//! pure function, [`SendPolicy::decide`]. The schedule and limits of the
//! retries themselves are the shared [`RetryPolicy`].
//!
//! The send loop maps the returned [`Action`] to what it does with the
//! message (ack, put it back at the head of its tenant's lane with the tenant
//! paused, dead-letter it) and scheduler calls (fleet pause, tenant pause)
//! and nothing else, so every branch is tested here without a clock, a
//! network or a server. Jitter comes from a seed the caller derives from the
//! message (its id), so a decision is reproducible, yet replicas that fail
//! together spread their retries.
//!
//! Only failures the message could be at fault for spend an attempt and age
//! towards the dead-letter queue. Waits imposed on us (429, a refused key, a
//! restricted or disconnected bridge) keep the message, untouched, in its
//! tenant's lane: burning messages because the provider or an operator said
//! "wait" would lose them.

use std::time::Duration;

pub use switchyard_shared::retry::AttemptContext;
use switchyard_shared::{
    cloud_api::{CloudError, HoldReason, Outcome, error::WINDOW_CLOSED},
    config::{ConfigError, Env},
    lanes::dead_letter::DeadLetterCode,
    retry::{Exhausted, NextAttempt, RetryPolicy},
    wabridges::WaError,
};

use crate::fair_share::PauseReason;

/// The sender's retry knobs (environment variables and defaults in parentheses).
#[derive(Debug, Clone, PartialEq)]
pub struct SendPolicy {
    /// Schedule and limits of the retries of a failed send:
    /// `min_delay` (`SWITCHYARD_SEND_RETRY_MIN_DELAY`, default 2s),
    /// `max_delay` before jitter, which adds up to as much again
    /// (`SWITCHYARD_SEND_RETRY_MAX_DELAY`, default 5m), doubling, with jitter;
    /// `max_attempts` that may fail before the message is dead-lettered
    /// (`SWITCHYARD_SEND_MAX_ATTEMPTS`, default 8); `max_age` past which no
    /// retry is scheduled and a reply this late is dead-lettered
    /// (`SWITCHYARD_SEND_MAX_AGE`, default 1h); `max_retry_after`, the longest
    /// Retry-After honoured (`SWITCHYARD_SEND_MAX_RETRY_AFTER`, default 5m).
    pub retry: RetryPolicy,
    /// How long a tenant whose bridge reported "not connected" on a send is
    /// held before one probe send, in case the `connected` event is lost
    /// (`SWITCHYARD_SEND_DISCONNECTED_HOLD`, default 2m).
    pub disconnected_hold: Duration,
    /// How long a claim on a reply part's ledger row keeps other senders off
    /// it (`SWITCHYARD_SEND_LEASE`, default 5s, at least [`MIN_LEASE`]); the
    /// sender renews it every third of that while the attempt runs, so a
    /// sender that dies mid-send holds its replies at most this long before
    /// another takes them over.
    pub lease: Duration,
    /// How long the ledger write after an accepted send is retried before
    /// the message goes back to its lane unacked (`SWITCHYARD_SEND_LEDGER_RETRY`,
    /// default 30s); see `deliver::ledger`.
    pub ledger_retry_for: Duration,
    /// When failures look provider-wide rather than one bridge's, and how
    /// the sender probes for the provider's return.
    pub outage: OutagePolicy,
}

/// Provider-wide trouble (`dispatcher::provider_outage`): after
/// `trip_after` consecutive provider failures (5xx, 408, timeouts, connection
/// errors; any other answer resets the count) from at least `min_tenants`
/// different tenants, every send of this replica is held and one probe send
/// goes out every `probe_every`; the first answer that is not a provider
/// failure resumes every tenant at once, paced by the fleet budget.
/// Probes spend no attempts: the provider being down is no message's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutagePolicy {
    /// `SWITCHYARD_OUTAGE_TRIP_AFTER` (default 5).
    pub trip_after: u32,
    /// `SWITCHYARD_OUTAGE_MIN_TENANTS` (default 3): one tenant's failing
    /// bridge, however often it fails, never holds the others.
    pub min_tenants: u32,
    /// `SWITCHYARD_OUTAGE_PROBE_EVERY` (default 3s).
    pub probe_every: Duration,
}

impl Default for OutagePolicy {
    fn default() -> Self {
        Self {
            trip_after: 5,
            min_tenants: 3,
            probe_every: Duration::from_secs(3),
        }
    }
}

impl OutagePolicy {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let policy = Self {
            trip_after: env.bounded("SWITCHYARD_OUTAGE_TRIP_AFTER", d.trip_after, 1..=10_000)?,
            min_tenants: env.bounded("SWITCHYARD_OUTAGE_MIN_TENANTS", d.min_tenants, 2..=10_000)?,
            probe_every: env.duration("SWITCHYARD_OUTAGE_PROBE_EVERY", d.probe_every)?,
        };
        if policy.probe_every < Duration::from_millis(100) {
            return Err(ConfigError {
                variable: "SWITCHYARD_OUTAGE_PROBE_EVERY".to_owned(),
                reason: format!("{:?} is below 100ms", policy.probe_every),
            });
        }
        Ok(policy)
    }
}

/// The shortest lease allowed: renewed every third of it, a shorter one
/// would lapse on one slow database round trip.
pub const MIN_LEASE: Duration = Duration::from_secs(2);

impl Default for SendPolicy {
    fn default() -> Self {
        Self {
            retry: RetryPolicy {
                jitter: true,
                max_attempts: 8,
                max_age: Duration::from_secs(3600),
                max_retry_after: Duration::from_secs(300),
                ..RetryPolicy::exponential(Duration::from_secs(2), Duration::from_secs(300))
            },
            disconnected_hold: Duration::from_secs(120),
            lease: Duration::from_secs(5),
            ledger_retry_for: Duration::from_secs(30),
            outage: OutagePolicy::default(),
        }
    }
}

impl SendPolicy {
    /// The defaults, overridden by the environment.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let retry = RetryPolicy {
            min_delay: env.duration("SWITCHYARD_SEND_RETRY_MIN_DELAY", d.retry.min_delay)?,
            max_delay: env.duration("SWITCHYARD_SEND_RETRY_MAX_DELAY", d.retry.max_delay)?,
            max_attempts: env.bounded(
                "SWITCHYARD_SEND_MAX_ATTEMPTS",
                d.retry.max_attempts,
                1..=100,
            )?,
            max_age: env.duration("SWITCHYARD_SEND_MAX_AGE", d.retry.max_age)?,
            max_retry_after: env
                .duration("SWITCHYARD_SEND_MAX_RETRY_AFTER", d.retry.max_retry_after)?,
            ..d.retry
        };
        let disconnected_hold =
            env.duration("SWITCHYARD_SEND_DISCONNECTED_HOLD", d.disconnected_hold)?;
        if retry.min_delay.is_zero() || retry.min_delay > retry.max_delay {
            return Err(ConfigError {
                variable: "SWITCHYARD_SEND_RETRY_MIN_DELAY".to_owned(),
                reason: format!(
                    "{:?} must be above zero and at most SWITCHYARD_SEND_RETRY_MAX_DELAY ({:?})",
                    retry.min_delay, retry.max_delay
                ),
            });
        }
        let lease = env.duration("SWITCHYARD_SEND_LEASE", d.lease)?;
        if lease < MIN_LEASE {
            return Err(ConfigError {
                variable: "SWITCHYARD_SEND_LEASE".to_owned(),
                reason: format!(
                    "{lease:?} is below {MIN_LEASE:?}: it is renewed every third of it"
                ),
            });
        }
        let ledger_retry_for = env.duration("SWITCHYARD_SEND_LEDGER_RETRY", d.ledger_retry_for)?;
        Ok(Self {
            retry,
            disconnected_hold,
            lease,
            ledger_retry_for,
            outage: OutagePolicy::from_env(env)?,
        })
    }
}

/// What the send loop does with the message (and the fleet, and the tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Sent: record it in the ledger, ack. `confirmed` is false when the
    /// provider answered 2xx with a body we could not read: it most likely
    /// went out, and sending again would duplicate it.
    Done { confirmed: bool },
    /// 429: put the message back at the head of its tenant's queue without
    /// spending an attempt, and pause every replica for `pause_fleet_for`.
    Requeue { pause_fleet_for: Duration },
    /// Put the message back at the head of its tenant's lane and pause the
    /// tenant for `delay` (the lane keeps its order); `attempt` is the number
    /// the next try will carry.
    Retry { delay: Duration, attempt: u32 },
    /// Pause the tenant for `reason` and keep the message (no attempt spent):
    /// it waits in the tenant's lane. `for_at_most: None` lasts until lifted
    /// (an operator, or the bridge's `connected` event); `alert` asks for an
    /// operator to be told.
    HoldTenant {
        reason: PauseReason,
        for_at_most: Option<Duration>,
        alert: bool,
    },
    /// Publish to the dead-letter queue with the reason, then terminate it.
    DeadLetter { reason: GiveUp },
}

/// Why the sender gives a message up (it is then dead-lettered with
/// [`GiveUp::code`]), with the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUp {
    /// The provider refused this request (400/404/422, other 4xx) or we
    /// could not build one (an invalid chat): it will never succeed.
    Rejected { status: Option<u16> },
    /// An answer that was neither a success nor an error we know (a
    /// redirect, an unreadable non-2xx body).
    UnexpectedAnswer { status: u16 },
    /// `attempts` failed tries, the limit.
    AttemptsExhausted { attempts: u32 },
    /// The next retry would fall past the age limit.
    TooOld { age: Duration },
    /// A free-form Cloud API reply outside the customer-service window:
    /// refused before the call, or by Meta (`131047`).
    WindowClosed,
}

impl GiveUp {
    /// The dead letter's code (its header, metric label and CLI filter).
    pub fn code(&self) -> DeadLetterCode {
        match self {
            GiveUp::Rejected { .. } => DeadLetterCode::Rejected,
            GiveUp::UnexpectedAnswer { .. } => DeadLetterCode::UnexpectedAnswer,
            GiveUp::AttemptsExhausted { .. } => DeadLetterCode::AttemptsExhausted,
            GiveUp::TooOld { .. } => DeadLetterCode::TooOld,
            GiveUp::WindowClosed => DeadLetterCode::WindowClosed,
        }
    }
}

impl SendPolicy {
    /// The action for the result of one send attempt.
    pub fn decide(&self, result: Result<(), &WaError>, ctx: AttemptContext) -> Action {
        let Err(error) = result else {
            return Action::Done { confirmed: true };
        };
        match error {
            WaError::RateLimited { retry_after } => Action::Requeue {
                pause_fleet_for: self.retry.clamp_retry_after(*retry_after),
            },
            WaError::Unauthorized { .. } => Action::HoldTenant {
                reason: PauseReason::Unauthorized,
                for_at_most: None,
                alert: true,
            },
            WaError::Restricted { .. } => Action::HoldTenant {
                reason: PauseReason::Restricted,
                for_at_most: None,
                alert: true,
            },
            WaError::Disconnected { .. } => Action::HoldTenant {
                reason: PauseReason::BridgeDisconnected,
                for_at_most: Some(self.disconnected_hold),
                alert: false,
            },
            WaError::Rejected { status, .. } => Action::DeadLetter {
                reason: GiveUp::Rejected {
                    status: Some(*status),
                },
            },
            WaError::InvalidChat { .. } => Action::DeadLetter {
                reason: GiveUp::Rejected { status: None },
            },
            WaError::InvalidResponse { status, .. } if (200..300).contains(status) => {
                Action::Done { confirmed: false }
            }
            WaError::InvalidResponse { status, .. } => Action::DeadLetter {
                reason: GiveUp::UnexpectedAnswer { status: *status },
            },
            WaError::Transient { .. } | WaError::Timeout { .. } => {
                self.retry_or_give_up(ctx, error.retry_after())
            }
        }
    }

    /// The action for a failed Cloud API send (docs/cloud-api.md section 5):
    /// a rate limit pauses this tenant only (Meta's limits are per number,
    /// never the fleet's), an account problem holds this tenant only, the
    /// message's own fault dead-letters it with Meta's reason in the detail.
    pub fn decide_cloud(&self, error: &CloudError, ctx: AttemptContext) -> Action {
        match error.outcome() {
            Outcome::Retry { at_most } => match at_most {
                Some(limit) if ctx.attempt >= limit => Action::DeadLetter {
                    reason: GiveUp::AttemptsExhausted {
                        attempts: ctx.attempt,
                    },
                },
                _ => self.retry_or_give_up(ctx, None),
            },
            Outcome::SlowDown { pause, .. } => Action::HoldTenant {
                reason: PauseReason::Backoff,
                for_at_most: Some(pause),
                alert: false,
            },
            Outcome::Hold(HoldReason::Unauthorized | HoldReason::Permission) => {
                Action::HoldTenant {
                    reason: PauseReason::Unauthorized,
                    for_at_most: None,
                    alert: true,
                }
            }
            Outcome::Hold(_) => Action::HoldTenant {
                reason: PauseReason::Restricted,
                for_at_most: None,
                alert: true,
            },
            Outcome::DeadLetter(WINDOW_CLOSED) => Action::DeadLetter {
                reason: GiveUp::WindowClosed,
            },
            Outcome::DeadLetter(_) => match error {
                CloudError::InvalidResponse { status, .. } if (200..300).contains(status) => {
                    Action::Done { confirmed: false }
                }
                CloudError::InvalidResponse { status, .. } => Action::DeadLetter {
                    reason: GiveUp::UnexpectedAnswer { status: *status },
                },
                CloudError::Api { status, .. } => Action::DeadLetter {
                    reason: GiveUp::Rejected {
                        status: Some(*status),
                    },
                },
                _ => Action::DeadLetter {
                    reason: GiveUp::Rejected { status: None },
                },
            },
        }
    }

    /// A failure that spends an attempt: retry with backoff while attempts
    /// and age allow.
    fn retry_or_give_up(&self, ctx: AttemptContext, retry_after: Option<Duration>) -> Action {
        match self.retry.after_failure(ctx, retry_after) {
            NextAttempt::Retry { delay, attempt } => Action::Retry { delay, attempt },
            NextAttempt::GiveUp(Exhausted::Attempts { attempts }) => Action::DeadLetter {
                reason: GiveUp::AttemptsExhausted { attempts },
            },
            NextAttempt::GiveUp(Exhausted::Age { age }) => Action::DeadLetter {
                reason: GiveUp::TooOld { age },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(attempt: u32) -> AttemptContext {
        AttemptContext {
            attempt,
            age: Duration::from_secs(10),
            jitter_seed: 42,
        }
    }

    fn policy() -> SendPolicy {
        SendPolicy::default()
    }

    fn msg() -> String {
        "x".to_owned()
    }

    fn transient() -> WaError {
        WaError::Transient {
            status: Some(503),
            message: msg(),
        }
    }

    #[test]
    fn a_reply_outside_the_window_is_dead_lettered_window_closed_whoever_noticed() {
        let before_the_call = CloudError::WindowClosed {
            detail: "x".to_owned(),
        };
        let by_meta = CloudError::Api {
            status: 400,
            code: 131_047,
            details: msg(),
        };
        for error in [before_the_call, by_meta] {
            let action = policy().decide_cloud(&error, ctx(1));
            assert_eq!(
                action,
                Action::DeadLetter {
                    reason: GiveUp::WindowClosed
                },
                "{error}"
            );
            let Action::DeadLetter { reason } = action else {
                unreachable!()
            };
            assert_eq!(reason.code(), DeadLetterCode::WindowClosed);
        }
        // Another message fault keeps its generic code.
        let opted_out = CloudError::Api {
            status: 400,
            code: 131_050,
            details: msg(),
        };
        assert_eq!(
            policy().decide_cloud(&opted_out, ctx(1)),
            Action::DeadLetter {
                reason: GiveUp::Rejected { status: Some(400) }
            }
        );
    }

    #[test]
    fn the_lease_and_the_ledger_retry_are_read_and_a_lease_too_short_to_renew_is_refused() {
        let env = Env::from_map([
            ("SWITCHYARD_SEND_LEASE", "4s"),
            ("SWITCHYARD_SEND_LEDGER_RETRY", "45s"),
        ]);
        let p = SendPolicy::from_env(&env).unwrap();
        assert_eq!(p.lease, Duration::from_secs(4));
        assert_eq!(p.ledger_retry_for, Duration::from_secs(45));
        let short = Env::from_map([("SWITCHYARD_SEND_LEASE", "1s")]);
        let e = SendPolicy::from_env(&short).unwrap_err();
        assert_eq!(e.variable, "SWITCHYARD_SEND_LEASE");
    }

    #[test]
    fn a_2xx_is_done() {
        assert_eq!(
            policy().decide(Ok(()), ctx(1)),
            Action::Done { confirmed: true }
        );
    }

    #[test]
    fn a_429_requeues_without_an_attempt_and_pauses_the_fleet_for_retry_after() {
        let e = WaError::RateLimited {
            retry_after: Duration::from_secs(37),
        };
        // Even on the last attempt: a 429 is not the message's fault.
        assert_eq!(
            policy().decide(Err(&e), ctx(8)),
            Action::Requeue {
                pause_fleet_for: Duration::from_secs(37)
            }
        );
    }

    #[test]
    fn a_huge_retry_after_is_clamped() {
        let e = WaError::RateLimited {
            retry_after: Duration::from_secs(86_400),
        };
        assert_eq!(
            policy().decide(Err(&e), ctx(1)),
            Action::Requeue {
                pause_fleet_for: Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn a_5xx_is_retried_later_spending_an_attempt() {
        let Action::Retry { delay, attempt } = policy().decide(Err(&transient()), ctx(1)) else {
            panic!("expected a retry");
        };
        assert_eq!(attempt, 2);
        assert!(
            delay >= Duration::from_secs(2) && delay < Duration::from_secs(4),
            "{delay:?}"
        );
    }

    #[test]
    fn a_timeout_or_a_lost_connection_is_retried_like_a_5xx() {
        for e in [
            WaError::Timeout {
                timeout: Duration::from_secs(10),
            },
            WaError::Transient {
                status: None,
                message: "connection refused".into(),
            },
        ] {
            assert!(
                matches!(
                    policy().decide(Err(&e), ctx(3)),
                    Action::Retry { attempt: 4, .. }
                ),
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_400_404_or_422_is_dead_lettered_at_once() {
        for status in [400, 404, 422] {
            let e = WaError::Rejected {
                status,
                message: msg(),
            };
            assert_eq!(
                policy().decide(Err(&e), ctx(1)),
                Action::DeadLetter {
                    reason: GiveUp::Rejected {
                        status: Some(status)
                    }
                }
            );
        }
        let e = WaError::InvalidChat { reason: msg() };
        assert!(matches!(
            policy().decide(Err(&e), ctx(1)),
            Action::DeadLetter {
                reason: GiveUp::Rejected { status: None }
            }
        ));
    }

    #[test]
    fn a_401_or_403_stops_the_tenant_alerts_and_keeps_the_message() {
        for status in [401, 403] {
            let e = WaError::Unauthorized { status };
            assert_eq!(
                policy().decide(Err(&e), ctx(8)),
                Action::HoldTenant {
                    reason: PauseReason::Unauthorized,
                    for_at_most: None,
                    alert: true
                }
            );
        }
    }

    #[test]
    fn a_restriction_pauses_the_tenant_alerts_and_keeps_the_message() {
        let e = WaError::Restricted {
            status: 403,
            message: "number restricted".into(),
        };
        assert_eq!(
            policy().decide(Err(&e), ctx(1)),
            Action::HoldTenant {
                reason: PauseReason::Restricted,
                for_at_most: None,
                alert: true
            }
        );
    }

    #[test]
    fn a_disconnected_bridge_holds_the_tenant_for_a_while_and_keeps_the_message() {
        let e = WaError::Disconnected {
            status: 409,
            message: "not connected".into(),
        };
        assert_eq!(
            policy().decide(Err(&e), ctx(1)),
            Action::HoldTenant {
                reason: PauseReason::BridgeDisconnected,
                for_at_most: Some(Duration::from_secs(120)),
                alert: false
            }
        );
    }

    #[test]
    fn an_unreadable_success_counts_as_sent_so_it_is_never_sent_twice() {
        let e = WaError::InvalidResponse {
            status: 200,
            message: msg(),
        };
        assert_eq!(
            policy().decide(Err(&e), ctx(1)),
            Action::Done { confirmed: false }
        );
        let e = WaError::InvalidResponse {
            status: 302,
            message: msg(),
        };
        assert!(matches!(
            policy().decide(Err(&e), ctx(1)),
            Action::DeadLetter {
                reason: GiveUp::UnexpectedAnswer { status: 302 }
            }
        ));
    }

    #[test]
    fn past_the_attempt_limit_it_is_dead_lettered() {
        assert_eq!(
            policy().decide(Err(&transient()), ctx(8)),
            Action::DeadLetter {
                reason: GiveUp::AttemptsExhausted { attempts: 8 }
            }
        );
        assert!(matches!(
            policy().decide(Err(&transient()), ctx(7)),
            Action::Retry { attempt: 8, .. }
        ));
    }

    #[test]
    fn a_retry_that_would_land_past_the_age_limit_is_dead_lettered() {
        let old = AttemptContext {
            attempt: 2,
            age: Duration::from_secs(3599),
            jitter_seed: 1,
        };
        assert_eq!(
            policy().decide(Err(&transient()), old),
            Action::DeadLetter {
                reason: GiveUp::TooOld {
                    age: Duration::from_secs(3599)
                }
            }
        );
    }

    #[test]
    fn waits_imposed_on_us_ignore_the_age_limit() {
        let ancient = AttemptContext {
            attempt: 1,
            age: Duration::from_secs(86_400),
            jitter_seed: 1,
        };
        let e = WaError::RateLimited {
            retry_after: Duration::from_secs(5),
        };
        assert!(matches!(
            policy().decide(Err(&e), ancient),
            Action::Requeue { .. }
        ));
    }

    #[test]
    fn settings_come_from_the_environment_and_are_checked() {
        let env = Env::from_map([
            ("SWITCHYARD_SEND_MAX_ATTEMPTS", "3"),
            ("SWITCHYARD_SEND_RETRY_MIN_DELAY", "500ms"),
            ("SWITCHYARD_SEND_MAX_AGE", "10m"),
        ]);
        let p = SendPolicy::from_env(&env).unwrap();
        assert_eq!(p.retry.max_attempts, 3);
        assert_eq!(p.retry.min_delay, Duration::from_millis(500));
        assert_eq!(p.retry.max_age, Duration::from_secs(600));

        let bad = Env::from_map([("SWITCHYARD_SEND_RETRY_MIN_DELAY", "10m")]);
        let err = SendPolicy::from_env(&bad).unwrap_err();
        assert_eq!(err.variable, "SWITCHYARD_SEND_RETRY_MIN_DELAY");
    }
}
