//! Every metric emitted by shared code (the lanes both workers run, the WA
//! Bridges client), named once here so dashboards and docs have one list.
//! Call sites use the names through `use crate::metrics as m;` and the
//! `metrics` facade's macros (`metrics::counter!(m::DEAD_LETTERS, …)`).

/// Partitions this replica reads, by `direction` and `replica`.
pub const LANE_PARTITIONS_OWNED: &str = "switchyard_lane_partitions_owned";
/// Changes of this replica's partition assignment.
pub const LANE_ASSIGNMENT_CHANGES: &str = "switchyard_lane_assignment_changes_total";
/// Messages with an invalid tenant token in their subject (terminated), by `direction`.
pub const LANE_INVALID_SUBJECT: &str = "switchyard_lane_invalid_subject_total";
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
