//! Provider trouble per tenant, logged once per episode. The first failed
//! call after a success opens an episode: one `warn` with the tenant and the
//! error class (its sends are held, backing off). Later failures are only
//! counted (`switchyard_sender_attempts_total{result}` counts every one). The
//! first success closes it: one `info` (resumed, after how many failures and
//! how long). A bridge that times out for 90 s is then one warning and one
//! resume line, neither silence nor a line per retry.
//!
//! Memory: one entry per tenant in trouble right now.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use switchyard_shared::ids::TenantId;

/// The open episodes of this sender.
#[derive(Debug, Default)]
pub struct TroubleLog {
    open: Mutex<HashMap<TenantId, Episode>>,
}

#[derive(Debug)]
struct Episode {
    since: Instant,
    failures: u64,
}

/// What [`TroubleLog::succeeded`] closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    pub failures: u64,
    pub lasted: Duration,
}

impl TroubleLog {
    /// A failed call for `tenant`; logs the hold when it opens an episode.
    /// Returns whether it did.
    pub fn failed(
        &self,
        tenant: &TenantId,
        class: &'static str,
        retry_in: Option<Duration>,
    ) -> bool {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(episode) = open.get_mut(tenant) {
            episode.failures += 1;
            return false;
        }
        open.insert(
            tenant.clone(),
            Episode {
                since: Instant::now(),
                failures: 1,
            },
        );
        drop(open);
        tracing::warn!(
            tenant.id = %tenant,
            wa.error = class,
            retry.in_ms = retry_in.map(|d| d.as_millis() as u64),
            "provider calls for this tenant fail; its sends are held and retried with backoff (logged once until they succeed again)"
        );
        true
    }

    /// Whether `tenant` is in an episode now (its failures were logged).
    pub fn is_open(&self, tenant: &TenantId) -> bool {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(tenant)
    }

    /// A successful call for `tenant`; logs the resume when it closes an episode.
    pub fn succeeded(&self, tenant: &TenantId) -> Option<Closed> {
        let episode = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(tenant)?;
        let closed = Closed {
            failures: episode.failures,
            lasted: episode.since.elapsed(),
        };
        tracing::info!(
            tenant.id = %tenant,
            trouble.failures = closed.failures,
            trouble.seconds = closed.lasted.as_secs_f64(),
            "provider calls for this tenant succeed again; sending resumed"
        );
        Some(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn an_episode_is_opened_once_and_closed_once() {
        let log = TroubleLog::default();

        let opened: Vec<bool> = (0..50)
            .map(|_| log.failed(&tenant("acme"), "timeout", None))
            .collect();
        let closed = log.succeeded(&tenant("acme"));
        let again = log.succeeded(&tenant("acme"));

        assert_eq!(opened.iter().filter(|o| **o).count(), 1);
        assert!(opened[0]);
        assert_eq!(closed.map(|c| c.failures), Some(50));
        assert_eq!(again, None, "a success outside an episode logs nothing");
    }

    #[test]
    fn tenants_have_episodes_of_their_own() {
        let log = TroubleLog::default();
        log.failed(&tenant("acme"), "timeout", None);

        assert!(log.failed(&tenant("globex"), "timeout", None));
        assert!(log.succeeded(&tenant("acme")).is_some());
        assert!(!log.failed(&tenant("globex"), "timeout", None));
    }
}
