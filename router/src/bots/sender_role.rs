//! Who wrote a message, from the tenant's point of view: an ordered list of
//! passes, the first that recognises the sender wins. Callers match the
//! returned enum exhaustively, so adding a role forces every caller to decide.

use switchyard_shared::{events::MessageEvent, tenants::Tenant};

/// The role of a message's author within the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderRole {
    /// One of the tenant's own staff phones (`bot_config.staff_phones`).
    Staff,
    /// Anyone else writing to the tenant's number.
    Customer,
}

type Pass = fn(&Tenant, &MessageEvent) -> Option<SenderRole>;

/// The passes, in order.
const PASSES: &[Pass] = &[staff_pass, customer_pass];

/// Resolves the author's role.
pub fn resolve(tenant: &Tenant, message: &MessageEvent) -> SenderRole {
    PASSES
        .iter()
        .find_map(|pass| pass(tenant, message))
        .unwrap_or(SenderRole::Customer)
}

fn digits(raw: &str) -> String {
    raw.split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

fn staff_pass(tenant: &Tenant, message: &MessageEvent) -> Option<SenderRole> {
    let phone = message
        .phone
        .as_deref()
        .or(message.contact_id.as_deref())
        .map(digits)?;
    let staff = tenant.bot_config.get("staff_phones")?.as_array()?;
    staff
        .iter()
        .filter_map(|p| p.as_str())
        .any(|p| !phone.is_empty() && digits(p) == phone)
        .then_some(SenderRole::Staff)
}

fn customer_pass(_: &Tenant, _: &MessageEvent) -> Option<SenderRole> {
    Some(SenderRole::Customer)
}
