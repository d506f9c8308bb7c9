//! Every metric the router emits, named once here so dashboards and docs have
//! one list. Call sites use the names through `use crate::metrics as m;` and
//! the `metrics` facade's macros (`metrics::counter!(m::DROPPED, …)`).

/// Events answered without a bot turn, by `reason` (`typing`, `poll_vote`,
/// `unknown_event`, `group_chat`, `silenced`, `channel_mismatch`,
/// `cloud_notice`, `status_other`, `window_closed`: a Cloud API message
/// already older than the customer-service window).
pub const DROPPED: &str = "switchyard_router_dropped_total";
/// Time to process one lane message or one gathered turn, outcome included.
pub const STEP_SECONDS: &str = "switchyard_router_step_seconds";
/// Time of one phase of a message's step, by `phase`: `tenant` (the row,
/// cached), `read` (conversation and sender role, one transaction), `bot`
/// (the bot's turn, its budget wait included), `publish` (the replies
/// stored in JetStream), `record` (the conversation written).
pub const STEP_PHASE_SECONDS: &str = "switchyard_router_step_phase_seconds";
/// Messages in a gathered turn (a chat's burst answered as one).
pub const TURN_MESSAGES: &str = "switchyard_router_turn_messages";
/// Events whose payload `customer_ref` disagrees with the subject's tenant
/// (dead-lettered).
pub const TENANT_MISMATCH: &str = "switchyard_router_tenant_mismatch_total";
/// Replies published to `outbound.<tenant>` (one per reply part).
pub const REPLIES: &str = "switchyard_router_replies_total";
/// Cloud API delivery statuses, by `status` and what the ledger made of it
/// (`recorded`: `moved`, `stale`, `unknown`).
pub const RECIPIENT_STATUS: &str = "switchyard_router_recipient_status_total";
/// Cloud API account notices acted on, by `action` (`token_lost`, `hold`,
/// `limits`, `template_status`, and `template_unknown` for a review event
/// about a template the tenant does not hold); the others are counted as
/// `dropped{reason="cloud_notice"}`.
pub const CLOUD_NOTICES: &str = "switchyard_router_cloud_notices_total";
/// Bridge state changes recorded, by `state`.
pub const BRIDGE_STATE: &str = "switchyard_router_bridge_state_total";
/// `from_me` messages, by `origin` (`ours`, `assumed_ours`, `human`).
pub const FROM_ME: &str = "switchyard_router_from_me_total";
/// Menu choices naming an id that is not one of the tenant's options.
pub const FOREIGN_MENU_IDS: &str = "switchyard_router_foreign_menu_ids_total";
/// 1 while the last finished try in this process met trouble in our own
/// infrastructure (intake slowed), else 0.
pub const BACKPRESSURE: &str = "switchyard_router_backpressure";
/// Tries held back by our own infrastructure's trouble (never a message's attempt).
pub const BACKPRESSURE_TOTAL: &str = "switchyard_router_backpressure_total";
/// HTTP bot answers refused, by `reason` (`contract`, `too_large`, `egress`).
pub const BOT_ANSWERS_REFUSED: &str = "switchyard_router_bot_answers_refused_total";
/// Bot calls that waited for a place in their tenant's bot budget
/// (`SWITCHYARD_BOT_CONCURRENCY_PER_TENANT`).
pub const BOT_BUDGET_WAITS: &str = "switchyard_router_bot_budget_waits_total";
/// How long those calls waited.
pub const BOT_BUDGET_WAIT_SECONDS: &str = "switchyard_router_bot_budget_wait_seconds";
/// Extra chats backlogged tenants may run at once in this replica now
/// (`crate::spare`: grows while every tenant's steps keep their time).
pub const SPARE_CHATS_LIMIT: &str = "switchyard_router_spare_chats_limit";
/// Extra chats of backlogged tenants running now (above the limit for a
/// while after it was lowered: running turns keep their permit).
pub const SPARE_CHATS_IN_USE: &str = "switchyard_router_spare_chats_in_use";
/// Spare permits taken: turns of backlogged tenants that ran past their floor.
pub const SPARE_CHATS_TAKEN: &str = "switchyard_router_spare_chats_taken_total";

/// What the spare pool judged by at its last judgement, in seconds, by
/// `signal` (`steps`: the p90 of every tenant's step phases in PostgreSQL
/// and JetStream; `waits`: the p90 of the neighbours' way from the server to
/// their worker) and `of` (`interval`: the last judged interval's,
/// `reference`: the figure without extra chats it is compared with).
pub const SPARE_SIGNAL_SECONDS: &str = "switchyard_router_spare_signal_seconds";

/// Sets one of the spare pool's signal gauges.
pub fn spare_signal(signal: &'static str, of: &'static str, value: std::time::Duration) {
    metrics::gauge!(SPARE_SIGNAL_SECONDS, "signal" => signal, "of" => of).set(value.as_secs_f64());
}

/// Sets the spare pool's gauges.
pub fn spare_chats(limit: usize, in_use: usize) {
    metrics::gauge!(SPARE_CHATS_LIMIT).set(limit as f64);
    metrics::gauge!(SPARE_CHATS_IN_USE).set(in_use as f64);
}

/// Registers, at 0, what alerts and dashboards expect before the first event:
/// the drops of events whose `customer_ref` has no tenant or an inactive one
/// (the reasons of `switchyard_shared::admission::Admission::drop_reason`).
pub fn register() {
    switchyard_shared::notifications::publish::register_metrics();
    for reason in ["unknown_tenant", "inactive_tenant"] {
        metrics::counter!(DROPPED, "reason" => reason).absolute(0);
    }
    metrics::counter!(REPLIES).absolute(0);
    metrics::gauge!(BACKPRESSURE).set(0.0);
    metrics::counter!(SPARE_CHATS_TAKEN).absolute(0);
    let _ = metrics::histogram!(STEP_SECONDS);
}
