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
/// Tenants held until an operator resumes them, by `reason` (e.g. `restricted`).
pub const TENANT_HELD: &str = "switchyard_sender_tenant_held_total";
/// How long a bridge was disconnected, recorded when it connects again.
pub const BRIDGE_DOWN_SECONDS: &str = "switchyard_sender_bridge_down_seconds";
/// Bridges down for longer than the grace period (one alert per disconnection).
pub const BRIDGE_DOWN_ALERTS: &str = "switchyard_sender_bridge_down_alerts_total";
