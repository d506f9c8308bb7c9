//! An inbound event's id across the fleet, `<tenant>:<event id>`: the
//! `Nats-Msg-Id` and `Switchyard-Event-Id` ingest publishes it under (one
//! stream holds every tenant, and provider ids are unique per account only).
//!
//! The router derives reply ids, and so the outbound stream's
//! `Nats-Msg-Id`s, from it: an id naming another tenant than the message's
//! subject would make one tenant's reply collide with, and be deduplicated
//! against, another tenant's. So reading one back checks its tenant
//! ([`ScopedEventId::parse_for`]); ingest builds them ([`ScopedEventId::new`]).

use std::fmt;

use crate::ids::TenantId;

/// `<tenant>:<event id>`; a tenant id never holds `:`, so the first `:` ends it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScopedEventId(String);

/// Why a header's event id cannot be this message's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopedIdError {
    #[error("the event id {shown:?} is not <tenant>:<event id>")]
    Unscoped { shown: String },
    #[error("the event id names tenant {named:?}, not the subject's tenant {expected}")]
    OtherTenant { named: String, expected: TenantId },
}

/// Most characters of a foreign value an error repeats.
const SHOWN_MAX: usize = 80;

impl ScopedEventId {
    /// The id of `event` (an [`crate::ids::EventId`]'s text) of `tenant`.
    pub fn new(tenant: &TenantId, event: &str) -> Self {
        Self(format!("{tenant}:{event}"))
    }

    /// Reads an id back (a message's header) for a message whose subject
    /// names `tenant`: refused unless it is scoped to that very tenant.
    pub fn parse_for(tenant: &TenantId, raw: &str) -> Result<Self, ScopedIdError> {
        let shown = || raw.chars().take(SHOWN_MAX).collect::<String>();
        let Some((named, event)) = raw.split_once(':') else {
            return Err(ScopedIdError::Unscoped { shown: shown() });
        };
        if event.is_empty() {
            return Err(ScopedIdError::Unscoped { shown: shown() });
        }
        if named != tenant.as_str() {
            return Err(ScopedIdError::OtherTenant {
                named: named.chars().take(SHOWN_MAX).collect(),
                expected: tenant.clone(),
            });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScopedEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ScopedEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopedEventId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn an_id_built_for_a_tenant_reads_back_for_it() {
        let id = ScopedEventId::new(&acme(), "poll_vote:M1");
        assert_eq!(id.as_str(), "acme:poll_vote:M1");
        assert_eq!(ScopedEventId::parse_for(&acme(), id.as_str()), Ok(id));
    }

    #[test]
    fn an_id_naming_another_tenant_or_none_is_refused() {
        let globex = ScopedEventId::parse_for(&acme(), "globex:M1").unwrap_err();
        assert_eq!(
            globex.to_string(),
            r#"the event id names tenant "globex", not the subject's tenant acme"#
        );
        // A prefix of the tenant is another tenant.
        assert!(ScopedEventId::parse_for(&acme(), "acm:M1").is_err());
        assert!(ScopedEventId::parse_for(&acme(), "acme-2:M1").is_err());
        for unscoped in ["M1", "acme:", ""] {
            assert!(
                matches!(
                    ScopedEventId::parse_for(&acme(), unscoped),
                    Err(ScopedIdError::Unscoped { .. })
                ),
                "{unscoped:?}"
            );
        }
    }
}
