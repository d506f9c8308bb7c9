//! Who wrote a message, from the tenant's point of view: ordered, explicit
//! passes over the tenant's own records for the sender's phone, the first
//! that recognises the sender wins:
//!
//! 1. staff: the tenant's staff records (with or without a resource);
//! 2. legacy: `bot_config.staff_phones`, the older staff list (see
//!    [`switchyard_shared::bot_config::BotConfig::legacy_staff_phones`] for
//!    the condition of its removal);
//! 3. customer: the tenant's customer records: one resource, or several
//!    (ambiguous: the bot asks which one);
//! 4. otherwise unknown.
//!
//! The records are read within the tenant only (one query, under row-level
//! security), so a phone that is staff in one tenant and a customer in
//! another gets each tenant's own answer. A sender known only by a `@lid`
//! id matches no phone record and no legacy entry: it is unknown, never
//! guessed. Callers match [`SenderRole`] exhaustively, so adding a role
//! forces every caller to decide.

use serde::Serialize;
use switchyard_shared::{
    bot_config::BotConfig,
    contacts::{Contact, ContactRole, PhoneNumber, ResourceId, SenderAddress},
    ids::TenantId,
    tenants::Tenant,
};

/// The role of a message's author within the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum SenderRole {
    /// Staff with the resources of their records (sorted, at least one).
    Staff { resources: Vec<ResourceId> },
    /// Staff with no resource (a staff record without one, or the legacy list).
    StaffWithoutResource,
    /// A customer with one resource, or none (a record without one).
    Customer { resource: Option<ResourceId> },
    /// A customer with several resources: which one is meant must be asked
    /// (sorted, so the picker's numbering is the same every time).
    Ambiguous { candidates: Vec<ResourceId> },
    /// Not in the tenant's records (or known only by a `@lid` id).
    Unknown,
}

impl SenderRole {
    /// The resources the sender may act on in this tenant: an option id
    /// naming any other is refused.
    pub fn resources(&self) -> &[ResourceId] {
        match self {
            Self::Staff { resources } => resources,
            Self::Customer { resource } => resource.as_slice(),
            Self::Ambiguous { candidates } => candidates,
            Self::StaffWithoutResource | Self::Unknown => &[],
        }
    }

    /// Whether the sender is one of the tenant's own people.
    pub fn is_staff(&self) -> bool {
        match self {
            Self::Staff { .. } | Self::StaffWithoutResource => true,
            Self::Customer { .. } | Self::Ambiguous { .. } | Self::Unknown => false,
        }
    }
}

/// What the passes look at: the sender's records in this tenant and the
/// tenant's legacy staff list.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    pub phone: &'a PhoneNumber,
    pub records: &'a [Contact],
    pub legacy_staff: &'a [PhoneNumber],
}

type Pass = fn(&Known<'_>) -> Option<SenderRole>;

/// The passes, in order.
const PASSES: &[(&str, Pass)] = &[
    ("staff", staff_pass),
    ("legacy_staff_phones", legacy_pass),
    ("customer", customer_pass),
];

/// Resolves the role from what is known (pure: the passes only).
pub fn resolve_known(known: &Known<'_>) -> SenderRole {
    PASSES
        .iter()
        .find_map(|(_, pass)| pass(known))
        .unwrap_or(SenderRole::Unknown)
}

/// The author of a message within `tenant`, from the sender's records in
/// this tenant (read with the conversation:
/// [`crate::conversations::read_turn`]); a `@lid` or unreadable sender is
/// unknown whatever the records say.
pub fn role_of(tenant: &Tenant, address: &SenderAddress, records: &[Contact]) -> SenderRole {
    let Some(phone) = address.phone() else {
        return SenderRole::Unknown;
    };
    resolve_known(&Known {
        phone,
        records,
        legacy_staff: legacy_staff_of(tenant),
    })
}

/// The tenant's legacy staff list (empty when its bot configuration does not parse).
fn legacy_staff_of(tenant: &Tenant) -> &[PhoneNumber] {
    tenant
        .bot
        .as_ref()
        .map_or(&[][..], |b: &BotConfig| &b.legacy_staff_phones)
}

/// The distinct resources of the records of one role, sorted.
fn resources_of(records: &[Contact], role: ContactRole) -> Option<Vec<ResourceId>> {
    let mut of_role = records.iter().filter(|r| r.role == role).peekable();
    of_role.peek()?;
    let mut resources: Vec<ResourceId> = of_role.filter_map(|r| r.resource.clone()).collect();
    resources.sort();
    resources.dedup();
    Some(resources)
}

fn staff_pass(known: &Known<'_>) -> Option<SenderRole> {
    let resources = resources_of(known.records, ContactRole::Staff)?;
    Some(if resources.is_empty() {
        SenderRole::StaffWithoutResource
    } else {
        SenderRole::Staff { resources }
    })
}

fn legacy_pass(known: &Known<'_>) -> Option<SenderRole> {
    known
        .legacy_staff
        .contains(known.phone)
        .then_some(SenderRole::StaffWithoutResource)
}

fn customer_pass(known: &Known<'_>) -> Option<SenderRole> {
    let mut resources = resources_of(known.records, ContactRole::Customer)?;
    Some(match resources.len() {
        0 => SenderRole::Customer { resource: None },
        1 => SenderRole::Customer {
            resource: resources.pop(),
        },
        _ => SenderRole::Ambiguous {
            candidates: resources,
        },
    })
}

/// The tenant a role was resolved in, for logs (never the phone).
pub fn log_resolved(tenant: &TenantId, role: &SenderRole) {
    let kind = match role {
        SenderRole::Staff { .. } => "staff",
        SenderRole::StaffWithoutResource => "staff_without_resource",
        SenderRole::Customer { .. } => "customer",
        SenderRole::Ambiguous { .. } => "ambiguous",
        SenderRole::Unknown => "unknown",
    };
    tracing::debug!(tenant.id = %tenant, sender.role = kind, "sender resolved");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(raw: &str) -> PhoneNumber {
        PhoneNumber::parse(raw).unwrap()
    }

    fn record(role: ContactRole, resource: Option<&str>) -> Contact {
        Contact {
            id: 1,
            role,
            phone: phone("15550001234"),
            resource: resource.map(|r| ResourceId::parse(r).unwrap()),
            name: String::new(),
        }
    }

    fn role_of(records: &[Contact], legacy: &[PhoneNumber]) -> SenderRole {
        resolve_known(&Known {
            phone: &phone("15550001234"),
            records,
            legacy_staff: legacy,
        })
    }

    fn r(raw: &str) -> ResourceId {
        ResourceId::parse(raw).unwrap()
    }

    #[test]
    fn each_pass_gives_its_variant_and_the_first_that_matches_wins() {
        use ContactRole::{Customer, Staff};
        let legacy = [phone("+1 555 000 1234")];
        assert_eq!(
            role_of(&[record(Staff, Some("p2")), record(Staff, Some("p1"))], &[]),
            SenderRole::Staff {
                resources: vec![r("p1"), r("p2")]
            }
        );
        assert_eq!(
            role_of(&[record(Staff, None), record(Customer, Some("o1"))], &[]),
            SenderRole::StaffWithoutResource,
            "staff comes before customer"
        );
        assert_eq!(
            role_of(&[record(Customer, Some("o1"))], &legacy),
            SenderRole::StaffWithoutResource,
            "the legacy list comes before customer records"
        );
        assert_eq!(
            role_of(&[record(Customer, Some("o1"))], &[]),
            SenderRole::Customer {
                resource: Some(r("o1"))
            }
        );
        assert_eq!(
            role_of(&[record(Customer, None)], &[]),
            SenderRole::Customer { resource: None }
        );
        assert_eq!(
            role_of(
                &[record(Customer, Some("o2")), record(Customer, Some("o1"))],
                &[]
            ),
            SenderRole::Ambiguous {
                candidates: vec![r("o1"), r("o2")]
            }
        );
        assert_eq!(role_of(&[], &[phone("15550009999")]), SenderRole::Unknown);
    }
}
