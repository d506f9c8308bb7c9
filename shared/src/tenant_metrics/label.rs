//! [`TenantLabels`]: a tenant's own label while places are left, [`OTHER`]
//! beyond. A tenant keeps its place for the life of the process, so its
//! counters stay monotonic and a series never changes whom it counts.

use std::{
    collections::HashSet,
    sync::{OnceLock, RwLock},
};

use metrics::SharedString;

use crate::ids::TenantId;

/// The label of every tenant past the cap. A tenant id cannot start with `_`
/// ([`TenantId`]), so no tenant can be mistaken for the bucket.
pub const OTHER: &str = "_other";

/// Tenants a process names in its metrics unless
/// `SWITCHYARD_METRICS_TENANT_CAP` says otherwise.
pub const DEFAULT_CAP: usize = 500;

/// Hands out `tenant` label values: the first `cap` tenants to ask get their
/// own id, every later one [`OTHER`].
#[derive(Debug)]
pub struct TenantLabels {
    cap: usize,
    named: RwLock<HashSet<TenantId>>,
}

impl TenantLabels {
    /// At most `cap` tenants named (0: every tenant is [`OTHER`]).
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            named: RwLock::new(HashSet::new()),
        }
    }

    /// The label for `tenant`, naming it if a place is left.
    pub fn label(&self, tenant: &TenantId) -> SharedString {
        if self.is_named(tenant) {
            return SharedString::from_owned(tenant.as_str().to_owned());
        }
        let mut named = self.named.write().unwrap_or_else(|e| e.into_inner());
        // Checked again under the write lock: another thread may have named it.
        if named.contains(tenant) || named.len() < self.cap {
            named.insert(tenant.clone());
            SharedString::from_owned(tenant.as_str().to_owned())
        } else {
            SharedString::const_str(OTHER)
        }
    }

    /// Whether `tenant` already has a label of its own.
    pub fn is_named(&self, tenant: &TenantId) -> bool {
        self.named
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(tenant)
    }

    /// How many tenants have a label of their own.
    pub fn named(&self) -> usize {
        self.named.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The cap this instance was made with.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

static LABELS: OnceLock<TenantLabels> = OnceLock::new();

/// Sets the process's cap (the service start-up calls it with
/// `SWITCHYARD_METRICS_TENANT_CAP`). The first call wins: services started in
/// one test process share one recorder, and so one budget.
pub fn install(cap: usize) -> &'static TenantLabels {
    LABELS.get_or_init(|| TenantLabels::new(cap))
}

/// The process's labels ([`DEFAULT_CAP`] if [`install`] was not called).
pub fn labels() -> &'static TenantLabels {
    install(DEFAULT_CAP)
}

/// The process-wide label for `tenant`.
pub fn label(tenant: &TenantId) -> SharedString {
    labels().label(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn tenants_past_the_cap_share_the_other_label_and_the_first_keep_theirs() {
        let labels = TenantLabels::new(2);
        assert_eq!(&*labels.label(&tenant("acme")), "acme");
        assert_eq!(&*labels.label(&tenant("globex")), "globex");
        assert_eq!(&*labels.label(&tenant("initech")), OTHER);
        assert_eq!(&*labels.label(&tenant("umbrella")), OTHER);
        // A named tenant keeps its label however many others came since.
        assert_eq!(&*labels.label(&tenant("acme")), "acme");
        assert_eq!(labels.named(), 2);
    }

    #[test]
    fn a_cap_of_zero_names_nobody() {
        let labels = TenantLabels::new(0);
        assert_eq!(&*labels.label(&tenant("acme")), OTHER);
        assert!(!labels.is_named(&tenant("acme")));
    }

    #[test]
    fn no_tenant_id_can_be_the_other_label() {
        assert!(TenantId::parse(OTHER).is_err());
        let labels = TenantLabels::new(10);
        assert_eq!(&*labels.label(&tenant("other")), "other");
    }

    #[test]
    fn concurrent_callers_never_name_more_than_the_cap() {
        let labels = std::sync::Arc::new(TenantLabels::new(50));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let labels = std::sync::Arc::clone(&labels);
                std::thread::spawn(move || {
                    for i in 0..100 {
                        labels.label(&tenant(&format!("t{t}-{i}")));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(labels.named(), 50);
    }
}
