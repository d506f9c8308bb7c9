//! Fixed-window request counters, as the provider's limits are described:
//! N requests per window, then `429` with the seconds until the window resets.

use std::{collections::HashMap, hash::Hash, net::IpAddr, time::Duration};

use tokio::time::Instant;

/// Which documented limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Provision,
    Proxy,
    Api,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// Counters for the per-key scopes and per client IP.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    scopes: HashMap<Scope, Window>,
    ips: HashMap<IpAddr, Window>,
}

impl Limiter {
    /// Counts one request of `scope`; `Err` carries how long until its window resets.
    pub(crate) fn hit_scope(
        &mut self,
        scope: Scope,
        limit: u32,
        window: Duration,
    ) -> Result<(), Duration> {
        hit(&mut self.scopes, scope, limit, window, Instant::now())
    }

    pub(crate) fn hit_ip(
        &mut self,
        ip: IpAddr,
        limit: u32,
        window: Duration,
    ) -> Result<(), Duration> {
        hit(&mut self.ips, ip, limit, window, Instant::now())
    }

    /// Forgets all counts (after the limits change).
    pub(crate) fn reset(&mut self) {
        self.scopes.clear();
        self.ips.clear();
    }
}

fn hit<K: Eq + Hash>(
    windows: &mut HashMap<K, Window>,
    key: K,
    limit: u32,
    length: Duration,
    now: Instant,
) -> Result<(), Duration> {
    if limit == 0 {
        return Ok(());
    }
    let w = windows.entry(key).or_insert(Window {
        started: now,
        count: 0,
    });
    if now.duration_since(w.started) >= length {
        *w = Window {
            started: now,
            count: 0,
        };
    }
    if w.count >= limit {
        return Err((w.started + length).saturating_duration_since(now));
    }
    w.count += 1;
    Ok(())
}

/// The `Retry-After` value: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_reached_then_resets_with_the_window() {
        let mut w = HashMap::new();
        let t0 = Instant::now();
        let len = Duration::from_secs(60);
        assert!(hit(&mut w, 1, 2, len, t0).is_ok());
        assert!(hit(&mut w, 1, 2, len, t0).is_ok());
        let wait = hit(&mut w, 1, 2, len, t0 + Duration::from_secs(15)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(45));
        assert!(hit(&mut w, 1, 2, len, t0 + len).is_ok());
    }

    #[test]
    fn zero_means_unlimited_and_retry_after_rounds_up() {
        let mut w = HashMap::new();
        for _ in 0..1000 {
            assert!(hit(&mut w, 1, 0, Duration::from_secs(1), Instant::now()).is_ok());
        }
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
