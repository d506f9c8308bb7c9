//! Every metric emitted by shared code (the lanes both workers run, the WA
//! Bridges client), named once here so dashboards and docs have one list.
//! Call sites use the names through `use crate::metrics as m;` and the
//! `metrics` facade's macros (`metrics::counter!(m::DEAD_LETTERS, …)`).

use crate::{lanes::dead_letter::DeadLetterCode, subjects::Direction};

/// Partitions this replica reads, by `direction` and `replica`.
pub const LANE_PARTITIONS_OWNED: &str = "switchyard_lane_partitions_owned";
/// Changes of this replica's partition assignment.
pub const LANE_ASSIGNMENT_CHANGES: &str = "switchyard_lane_assignment_changes_total";
/// Partition pulls made again after their request was lost (missed heartbeats), by `direction`.
pub const LANE_PULL_RENEWED: &str = "switchyard_lane_pull_renewed_total";
/// Acks whose confirmation did not come within `ACK_CONFIRM_WAIT`.
pub const LANE_ACK_UNCONFIRMED: &str = "switchyard_lane_ack_unconfirmed_total";
/// Messages with an invalid tenant token in their subject (terminated), by `direction`.
pub const LANE_INVALID_SUBJECT: &str = "switchyard_lane_invalid_subject_total";
/// Time a partition reader spends handing one message to its tenant's lane
/// (opening the lane on first sight included), by `direction`: the reader
/// dispatches one message at a time, so this is what its partition waits.
pub const LANE_DISPATCH_SECONDS: &str = "switchyard_lane_dispatch_seconds";
/// How old a message was (since the server stored it) when a partition
/// reader took it (`at="taken"`) and when its handling began (`at="handled"`:
/// each try of the router's step of a single message, each try of the
/// sender's send; a gathered burst is not counted, it waited on purpose), by
/// `direction`: the difference is its wait in the process (lane, worker,
/// scheduler). Spilled messages count from their spill. Across hosts it
/// includes their clocks' skew.
pub const LANE_MESSAGE_AGE_SECONDS: &str = "switchyard_lane_message_age_seconds";
/// Time to open a tenant-scoped transaction (`db::begin_for_tenant`: a
/// pooled connection acquired, checked, and `BEGIN` answered).
pub const DB_TENANT_BEGIN_SECONDS: &str = "switchyard_db_tenant_begin_seconds";
/// Time to ask JetStream whether a tenant whose lane opens has a spill
/// backlog, by `direction` (only when the partition's snapshot of backlogs
/// could not be taken; see [`LANE_OPENED`]).
pub const LANE_OPEN_SECONDS: &str = "switchyard_lane_open_seconds";
/// Tenant lanes opened, by `direction` and how their spill backlog was known
/// (`backlog`: `known` from the snapshot taken when the partition was gained
/// or from a backlog scan, `asked` from a request of its own).
pub const LANE_OPENED: &str = "switchyard_lane_opened_total";
/// Tenant lanes that passed their queue bound and began spilling, by `direction`.
pub const LANE_SPILL_STARTED: &str = "switchyard_lane_spill_started_total";
/// Spill backlogs found with no lane reading them and adopted, by `direction`.
pub const LANE_BACKLOG_ADOPTED: &str = "switchyard_lane_backlog_adopted_total";
/// Messages moved to a tenant's own spill lane, by `direction`.
pub const LANE_SPILLED: &str = "switchyard_lane_spilled_total";
/// Messages dead-lettered, by `direction` and `reason` (the dead-letter code).
pub const DEAD_LETTERS: &str = "switchyard_dead_letters_total";
/// WA Bridges API calls, by `op` and `outcome` (`ok` or the error class).
pub const WA_REQUESTS: &str = "switchyard_wa_requests_total";
/// Time of one WA Bridges API call, by `op`.
pub const WA_REQUEST_DURATION_SECONDS: &str = "switchyard_wa_request_duration_seconds";
/// Dead letters per tenant, by `tenant` (capped, `docs/operations.md`) and `direction`.
pub const TENANT_DEAD_LETTERS: &str = "switchyard_tenant_dead_letters_total";
/// End-to-end latency per tenant (webhook in → reply accepted), by `tenant`
/// (capped); coarse buckets ([`TENANT_REPLY_BUCKETS`]) keep it cheap.
pub const TENANT_REPLY_SECONDS: &str = "switchyard_tenant_reply_seconds";
/// Buckets of [`TENANT_REPLY_SECONDS`]: with `+Inf`, the sum and the count,
/// 10 series per tenant.
pub const TENANT_REPLY_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Messages of a partition consumer not yet delivered (its lag), by `stream`
/// and `partition`; reported by the replica that reads the partition (0 elsewhere).
pub const LANE_PARTITION_PENDING: &str = "switchyard_lane_partition_pending";
/// Messages waiting in the tenants' spill lanes, by `direction`; reported by
/// the replica that reads partition 0 (0 elsewhere).
pub const LANE_SPILL_PENDING: &str = "switchyard_lane_spill_pending";
/// Tenant notifications stored in `NOTIFY`, by `type`.
pub const NOTIFICATIONS_PUBLISHED: &str = "switchyard_notifications_published_total";
/// Tenant notifications that could not be stored in `NOTIFY` (lost), by `type`.
pub const NOTIFICATIONS_NOT_PUBLISHED: &str = "switchyard_notifications_not_published_total";

/// Items per group-committed step statement, by `step`
/// (`crate::group_commit`): how many events one round trip served.
pub const DB_STEP_BATCH_SIZE: &str = "switchyard_db_step_batch_size";

/// How long a call of a group-committed step took, by `step`: its wait in
/// the queue and for company, its statement, its answer (every call,
/// answered or failed). What one event's step costs it in time, where
/// [`DB_STEP_BATCH_SIZE`] says what it cost the database.
pub const DB_STEP_SECONDS: &str = "switchyard_db_step_seconds";

/// One group-committed statement of `step` served `size` items.
pub fn group_commit_batch(step: &'static str, size: usize) {
    metrics::histogram!(DB_STEP_BATCH_SIZE, "step" => step).record(size as f64);
}

/// Registers, at 0, the series alerts and dashboards expect before anything
/// happened (a counter first seen at 1 hides its first increase from
/// `increase()`). Called once by every service at start-up.
pub fn register() {
    for direction in [Direction::Inbound, Direction::Outbound] {
        for code in DeadLetterCode::KNOWN {
            metrics::counter!(DEAD_LETTERS, "direction" => direction.as_str(), "reason" => code.as_str().to_owned())
                .absolute(0);
        }
    }
    for direction in [Direction::Inbound, Direction::Outbound] {
        metrics::counter!(TENANT_DEAD_LETTERS, "tenant" => crate::tenant_metrics::OTHER, "direction" => direction.as_str())
            .absolute(0);
    }
}
