//! The opening every worker step shares: the tenant comes from the subject
//! token; a payload that names another tenant is refused; the tenant is
//! resolved from the tenants table; an unknown or inactive tenant is never
//! served (and never replaced by a default). Router and sender both start
//! each message with [`admit`], and map its answer to their own outcomes
//! (dead letter, drop, retry).

use std::sync::Arc;

use crate::{ids::TenantId, tenant_cache::TenantCache, tenants::Tenant};

/// What a worker may do with one message addressed to a tenant.
#[derive(Debug)]
pub enum Admission {
    /// Serve it, for this active tenant.
    Serve(Arc<Tenant>),
    /// The payload names another tenant than the subject: never served,
    /// dead-lettered (an invariant broke upstream).
    Mismatch,
    /// No such tenant: dropped.
    Unknown,
    /// Suspended: dropped.
    Inactive,
    /// The lookup failed: our own trouble, never the message's.
    LookupFailed(sqlx::Error),
}

impl Admission {
    /// The metric label of a drop (`unknown_tenant`, `inactive_tenant`).
    pub fn drop_reason(&self) -> Option<&'static str> {
        match self {
            Admission::Unknown => Some("unknown_tenant"),
            Admission::Inactive => Some("inactive_tenant"),
            _ => None,
        }
    }
}

/// Checks the payload's tenant (`claimed`, when it names one) against the
/// subject's, then resolves and checks the subject's tenant.
pub async fn admit(tenants: &TenantCache, subject: &TenantId, claimed: Option<&str>) -> Admission {
    if claimed.is_some_and(|claimed| claimed != subject.as_str()) {
        return Admission::Mismatch;
    }
    match tenants.resolve(subject).await {
        Ok(Some(row)) if row.is_active() => Admission::Serve(row),
        Ok(Some(_)) => Admission::Inactive,
        Ok(None) => Admission::Unknown,
        Err(e) => Admission::LookupFailed(e),
    }
}
