//! Every metric the sender emits, named once here so dashboards and docs have
//! one list. Call sites use the names through `use crate::metrics as m;` and
//! the `metrics` facade's macros (`metrics::counter!(m::DROPPED, …)`).

/// Time of one send call to the provider, whatever its result.
pub const SEND_SECONDS: &str = "switchyard_sender_send_seconds";
/// Send attempts, by `result` (`ok` or the provider error's class).
pub const ATTEMPTS: &str = "switchyard_sender_attempts_total";
/// End-to-end latency: webhook received by ingest → provider accepted the reply.
pub const END_TO_END_SECONDS: &str = "switchyard_end_to_end_seconds";
/// Replies whose tenant disagrees with their subject's tenant (dead-lettered).
pub const TENANT_MISMATCH: &str = "switchyard_sender_tenant_mismatch_total";
/// Replies dead-lettered because the chat reached the per-contact hourly cap.
pub const CONTACT_CAP: &str = "switchyard_sender_contact_cap_total";
/// Replies acked without a send, by `reason` (the tenant's refusal).
pub const DROPPED: &str = "switchyard_sender_dropped_total";
/// Replies the delivery ledger already records as sent (acked, not re-sent).
pub const ALREADY_SENT: &str = "switchyard_sender_already_sent_total";
/// Cloud API replies sent as the tenant's fallback template once the
/// customer-service window had closed, by `outcome` (`sent`, `failed`).
pub const CLOUD_FALLBACK: &str = "switchyard_sender_cloud_fallback_total";
/// Tenants held until an operator resumes them, by `reason` (e.g. `restricted`).
pub const TENANT_HELD: &str = "switchyard_sender_tenant_held_total";
/// How long a bridge was disconnected, recorded when it connects again.
pub const BRIDGE_DOWN_SECONDS: &str = "switchyard_sender_bridge_down_seconds";
/// Bridges down for longer than the grace period (one alert per disconnection).
pub const BRIDGE_DOWN_ALERTS: &str = "switchyard_sender_bridge_down_alerts_total";
/// Provider-wide outages noticed (consecutive failures across tenants).
pub const PROVIDER_OUTAGES: &str = "switchyard_sender_provider_outages_total";
/// 1 while this replica holds every send for a provider-wide outage, else 0.
pub const PROVIDER_DOWN: &str = "switchyard_sender_provider_down";
/// How long provider-wide outages lasted, from trip to the first answered probe.
pub const PROVIDER_OUTAGE_SECONDS: &str = "switchyard_sender_provider_outage_seconds";
/// Ledger writes after an accepted send that failed (retried before the ack).
pub const LEDGER_WRITE_FAILURES: &str = "switchyard_sender_ledger_write_failures_total";
/// Accepted sends whose ledger write outlasted its retries (message back to the lane unacked).
pub const LEDGER_WRITE_DEFERRED: &str = "switchyard_sender_ledger_write_deferred_total";
/// In-doubt ledger rows (lease expired or call timed out), by `resolution` (`resent`, `echo_found`).
pub const IN_DOUBT: &str = "switchyard_sender_in_doubt_total";
/// Messages put back because another sender holds the reply's live lease.
pub const LEASE_WAITS: &str = "switchyard_sender_lease_waits_total";
/// Tenants this replica holds, by `reason` (a `PauseReason`; not capped: at
/// most one series per reason).
pub const TENANTS_HELD: &str = "switchyard_sender_tenants_held";
/// Milliseconds this replica was told to wait by the shared fleet budget, by
/// `reason` (`exhausted`: the window's calls are spent; `paused`: a 429 paused
/// the fleet). Milliseconds because a counter counts whole units.
pub const FLEET_BUDGET_WAIT_MS: &str = "switchyard_sender_fleet_budget_wait_milliseconds_total";
/// Leases taken locally because the shared fleet budget could not be reached.
pub const FLEET_BUDGET_UNREACHABLE: &str = "switchyard_sender_fleet_budget_unreachable_total";
/// Silent-bridge watchdog `/status` probes, by `result` (`connected`,
/// `disconnected`, `other`, `error`).
pub const WATCHDOG_PROBES: &str = "switchyard_sender_watchdog_probes_total";
/// Silent bridges the watchdog found disconnected (and held).
pub const WATCHDOG_FOUND_DISCONNECTED: &str = "switchyard_sender_watchdog_found_disconnected_total";
/// Cloud API number health checks (`GET /{phone_number_id}?fields=…`), by
/// `result`: `checked`, `skipped` (no channel or token not active), `failed`,
/// `merged` (asked for while the tenant's check waited for its turn: that
/// check answers it).
pub const CLOUD_HEALTH_CHECKS: &str = "switchyard_sender_cloud_health_checks_total";
/// Tenant notifications the notifier finished or tried, by `outcome`:
/// `delivered` (2xx), `failed` (one attempt failed; retried), `dead_lettered`
/// (limit reached or URL refused), `off` (the tenant has no URL; dropped).
pub const NOTIFICATIONS: &str = "switchyard_sender_notifications_total";
/// Time of one notification POST, whatever its result.
pub const NOTIFICATION_SECONDS: &str = "switchyard_sender_notification_seconds";

/// Provider calls per tenant, by `tenant` (capped) and `outcome` (`sent`, `failed`).
pub const TENANT_SENDS: &str = "switchyard_tenant_sends_total";
/// End-to-end latency per tenant, by `tenant` (capped; its buckets are set
/// where the recorder is built).
pub use switchyard_shared::metrics::TENANT_REPLY_SECONDS;
/// Replies this replica holds ready to send (live and bulk), by `tenant`
/// (capped; tenants past the cap summed in `_other`).
pub const TENANT_REPLIES_WAITING: &str = "switchyard_tenant_replies_waiting";
/// How long each hold of a tenant has lasted so far, by `tenant` (capped;
/// the longest past the cap in `_other`) and `reason`; 0 when not held.
pub const TENANT_HELD_SECONDS: &str = "switchyard_tenant_held_seconds";

/// Registers, at 0, what alerts and dashboards expect before the first event.
pub fn register() {
    switchyard_shared::notifications::publish::register_metrics();
    use switchyard_shared::tenant_metrics::OTHER;
    for outcome in ["sent", "failed"] {
        metrics::counter!(TENANT_SENDS, "tenant" => OTHER, "outcome" => outcome).absolute(0);
    }
    let _ = metrics::histogram!(TENANT_REPLY_SECONDS, "tenant" => OTHER);
    let _ = metrics::histogram!(END_TO_END_SECONDS);
    for reason in ["exhausted", "paused"] {
        metrics::counter!(FLEET_BUDGET_WAIT_MS, "reason" => reason).absolute(0);
    }
    metrics::gauge!(PROVIDER_DOWN).set(0.0);
    metrics::counter!(BRIDGE_DOWN_ALERTS).absolute(0);
    metrics::counter!(WATCHDOG_FOUND_DISCONNECTED).absolute(0);
    for outcome in ["delivered", "failed", "dead_lettered", "off"] {
        metrics::counter!(NOTIFICATIONS, "outcome" => outcome).absolute(0);
    }
}
