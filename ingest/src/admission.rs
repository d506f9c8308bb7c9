//! Per-tenant admission: how many events one tenant may hand to the shared
//! pipeline, so that one tenant's flood (a bot loop, a compromised bridge, a
//! leaked URL) cannot take the capacity and storage every tenant shares.
//!
//! A keyed GCRA limiter (`governor`): a sustained rate and a burst per
//! tenant, per ingest replica (the fleet's limit is the replicas' sum). It
//! runs after authentication and verification, before the idempotency key
//! is written, so only events that would be stored count (forged requests
//! are refused earlier, `typing` is dropped earlier) and a refused event
//! leaves no key behind: the same event sent again later is a new delivery.
//!
//! Over the limit the event is refused (`429`, `Retry-After`), counted per
//! tenant, and not stored: nothing answered 2xx is ever dropped. WA Bridges
//! does not retry, so the tenant loses what it sent over its limit; the
//! defaults are set far above what one number's human traffic can reach,
//! so only a flood meets them (docs/ingest.md, "Admission limit").

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use switchyard_shared::ids::TenantId;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

/// How often idle tenants' limiter state is dropped.
const SHED_IDLE_EVERY: Duration = Duration::from_secs(60);

/// The limit every tenant gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// Events per second a tenant may send for ever.
    pub per_second: NonZeroU32,
    /// Events a tenant may send at once after a quiet while.
    pub burst: NonZeroU32,
}

/// Over the limit: when the next event would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
    pub policy: AdmissionPolicy,
}

/// The limiter, shared by every request of this replica.
#[derive(Clone)]
pub struct Admission {
    limiter: Arc<DefaultKeyedRateLimiter<TenantId>>,
    policy: AdmissionPolicy,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("policy", &self.policy)
            .field("tenants", &self.limiter.len())
            .finish()
    }
}

impl Admission {
    pub fn new(policy: AdmissionPolicy) -> Self {
        let quota = Quota::per_second(policy.per_second).allow_burst(policy.burst);
        Self {
            limiter: Arc::new(RateLimiter::keyed(quota)),
            policy,
        }
    }

    /// Takes one event of `tenant`'s allowance, or says when there is one.
    pub fn admit(&self, tenant: &TenantId) -> Result<(), Throttled> {
        self.limiter.check_key(tenant).map_err(|not_until| {
            m::throttled(tenant);
            Throttled {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
                policy: self.policy,
            }
        })
    }

    /// Drops the state of tenants whose allowance is full again (they are
    /// indistinguishable from new ones), until `shutdown`: memory follows
    /// the tenants active lately, not every tenant ever seen.
    pub async fn shed_idle(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SHED_IDLE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    self.limiter.retain_recent();
                    self.limiter.shrink_to_fit();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(per_second: u32, burst: u32) -> AdmissionPolicy {
        AdmissionPolicy {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    fn tenant(raw: &str) -> TenantId {
        TenantId::parse(raw).unwrap()
    }

    #[test]
    fn a_tenant_over_its_burst_is_throttled_and_the_others_are_not() {
        let admission = Admission::new(policy(1, 3));
        let flooder = tenant("flood");

        let admitted = (0..10)
            .filter(|_| admission.admit(&flooder).is_ok())
            .count();
        let refused = admission.admit(&flooder).unwrap_err();
        let quiet = (0..3)
            .filter(|_| admission.admit(&tenant("quiet")).is_ok())
            .count();

        assert_eq!(
            admitted, 3,
            "the burst, then nothing within the same second"
        );
        assert!(
            refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(1)
        );
        assert_eq!(quiet, 3, "another tenant has its own allowance");
    }
}
