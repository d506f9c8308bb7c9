//! What one run measured, as the JSON report stores it.

use std::collections::BTreeMap;

use serde::Serialize;

use switchyard_tests::procstat::Usage;

use crate::{
    scenario::{Channel, Role},
    stats::Percentiles,
};

/// One tenant's figures in one run.
#[derive(Debug, Clone, Serialize)]
pub struct TenantResult {
    pub id: String,
    pub channel: Channel,
    pub role: Role,
    pub weight: u32,
    /// Webhook requests scheduled.
    pub offered: u64,
    /// Answered 200 by ingest.
    pub accepted: u64,
    /// Any other answer, or no answer.
    pub refused: u64,
    /// Distinct events answered on the bridge.
    pub replied: u64,
    /// Accepted events without a reply when the run ended. For tenants that
    /// must drain (quiet, replaying) these are losses or stragglers past the
    /// drain deadline; for the others, their backlog.
    pub unanswered: u64,
    /// Events answered more than once.
    pub duplicate_sends: u64,
    /// Sends that arrived on another tenant's bridge.
    pub misrouted: u64,
    /// Webhook request start → reply arriving at the bridge.
    pub latency: Percentiles,
    /// Unanswered events of must-drain tenants counted at the run's end as a
    /// lower bound (so a stuck tenant cannot look fast).
    pub censored: u64,
    /// Ingest's answer time.
    pub http_latency: Percentiles,
    /// Sends per second inside the measurement window.
    pub throughput_per_s: f64,
    /// This tenant's fraction of all sends inside the window.
    pub share: f64,
}

/// One step of the front-door ramp.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub rate_per_tenant: f64,
    pub offered_per_s: f64,
    /// Requests actually started per second (the client caps requests in flight).
    pub started_per_s: f64,
    pub accepted_per_s: f64,
    pub refused: u64,
    pub http_latency: Percentiles,
    pub latency: Percentiles,
}

/// One scenario under one scheduler.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub scenario: String,
    pub scheduler: String,
    pub fleet_per_minute: u32,
    pub traffic_seconds: f64,
    /// Where shares and throughput are counted: `[start, end]` seconds after the traffic began.
    pub window_seconds: (f64, f64),
    pub drain_seconds: f64,
    pub tenants: Vec<TenantResult>,
    /// All quiet tenants' latencies together.
    pub quiet_latency: Percentiles,
    /// Jain's index over weight-normalised throughput of the tenants backlogged
    /// on purpose (noisy, weighted); `None` with fewer than two of them.
    pub jain_backlogged: Option<f64>,
    /// Noisy sends in the window / (budget in the window − everyone else's sends).
    pub noisy_share_of_leftover: Option<f64>,
    pub services: BTreeMap<String, Usage>,
    pub steps: Vec<StepResult>,
    /// End-to-end latency of the replied events by the second they were
    /// posted in (from the traffic's start, warm-up included): where in the
    /// run a tail came from, a cold start, a stall or a steady backlog.
    pub by_second: Vec<Percentiles>,
    /// Messages the router and the sender dead-lettered during the run
    /// (their `switchyard_dead_letters_total`, read at its end).
    pub dead_letters: u64,
    /// CPU and server operations per delivered event.
    pub cost: crate::cost::Cost,
}

impl RunResult {
    /// Whether anything went to the wrong bridge or was sent twice.
    pub fn isolation_breaches(&self) -> u64 {
        self.tenants
            .iter()
            .map(|t| t.misrouted + t.duplicate_sends)
            .sum()
    }
}
