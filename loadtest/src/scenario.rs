//! The scenarios: who sends how much, what misbehaves, under which fleet
//! budget. Pure data, built from the command-line knobs, so the report can
//! print exactly what was run.

use std::time::Duration;

use serde::Serialize;

/// What a tenant does in a scenario; decides how its figures are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Ordinary traffic: the tenants whose latency the goals protect.
    Quiet,
    /// Far more traffic than the outbound budget.
    Noisy,
    /// Its bridge answers every call after a delay.
    Slow,
    /// Its bridge never answers (the sender's request timeout fires).
    Hanging,
    /// Its bridge answers 503.
    Failing,
    /// Re-posts a few events over and over.
    Replaying,
    /// Backlogged on purpose, to read the weights.
    Weighted,
}

impl Role {
    /// Whether its accepted events must all be answered before the drain ends
    /// (the others may keep a backlog, that is the point of them).
    pub fn must_drain(self) -> bool {
        matches!(self, Role::Quiet | Role::Replaying)
    }
}

/// Which channel a tenant's events arrive on and its replies leave by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A WA Bridges bridge: one flat webhook per event on the tenant's own URL.
    Wabridges,
    /// Meta's Cloud API: signed batches on ingest's `/cloud`, replies through
    /// the tenant's own phone number id and token.
    Cloud,
}

/// `--channel`: which tenants of a scenario are on the Cloud API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ChannelMix {
    /// Every tenant on WA Bridges (the tool's original scenarios).
    Wabridges,
    /// Every tenant on the Cloud API, but those with a bridge fault.
    Cloud,
    /// Every other tenant on the Cloud API (the second, fourth, …), and the
    /// misbehaving tenant (flooder, replayer) on the Cloud API too.
    Mixed,
}

/// One tenant's load.
#[derive(Debug, Clone, Serialize)]
pub struct TenantLoad {
    pub id: String,
    pub channel: Channel,
    pub role: Role,
    /// Webhook events per second.
    pub rate: f64,
    pub weight: u32,
    /// `Some(k)`: only k distinct events, posted again and again.
    pub distinct: Option<u64>,
}

/// A bridge misbehaving for the whole run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BridgeFault {
    Latency { tenant: String, ms: u64 },
    Hang { tenant: String },
    ServerError { tenant: String, status: u16 },
}

impl BridgeFault {
    /// The tenant whose bridge misbehaves.
    pub fn tenant(&self) -> &str {
        match self {
            Self::Latency { tenant, .. }
            | Self::Hang { tenant }
            | Self::ServerError { tenant, .. } => tenant,
        }
    }

    fn tenant_mut(&mut self) -> &mut String {
        match self {
            Self::Latency { tenant, .. }
            | Self::Hang { tenant }
            | Self::ServerError { tenant, .. } => tenant,
        }
    }
}

/// One step of the front-door ramp.
#[derive(Debug, Clone, Serialize)]
pub struct RampStep {
    /// Events per second per tenant.
    pub rate_per_tenant: f64,
    pub duration: Duration,
}

/// One scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub description: String,
    pub tenants: Vec<TenantLoad>,
    pub faults: Vec<BridgeFault>,
    /// The fleet-wide send budget (`SWITCHYARD_FLEET_CALLS_PER_MINUTE`).
    pub fleet_per_minute: u32,
    pub duration: Duration,
    /// How long after the traffic stops the must-drain tenants may take.
    pub drain: Duration,
    /// The front-door ramp (saturation); empty: constant rates.
    pub ramp: Vec<RampStep>,
    /// Whether the fifo baseline runs too (the front door does not depend on it).
    pub compare_fifo: bool,
    /// The scenario whose quiet p99 this one is judged against.
    pub baseline: Option<&'static str>,
    /// Run only when named (too heavy for `all`).
    pub only_when_named: bool,
    /// The services' `SWITCHYARD_TENANT_REFRESH`: 1 s for the isolation
    /// scenarios (faults and weights set up after start are seen at once),
    /// the production default (5 s) for the cost sweep, whose per-tenant
    /// re-reads are part of what it measures.
    pub tenant_refresh: Duration,
}

impl Scenario {
    /// The same scenario with its tenants on the channels `mix` picks. A
    /// tenant with a bridge fault stays on WA Bridges (the fault is a
    /// bridge's); the description names the Cloud API tenants.
    pub fn with_channels(&self, mix: ChannelMix) -> Scenario {
        let mut mixed = self.clone();
        if mix == ChannelMix::Wabridges {
            return mixed;
        }
        let faulted: Vec<String> = self.faults.iter().map(|f| f.tenant().to_owned()).collect();
        for (i, t) in mixed.tenants.iter_mut().enumerate() {
            let cloud = match mix {
                ChannelMix::Wabridges => false,
                ChannelMix::Cloud => true,
                ChannelMix::Mixed => i % 2 == 1 || matches!(t.role, Role::Noisy | Role::Replaying),
            };
            if cloud && !faulted.contains(&t.id) {
                t.channel = Channel::Cloud;
            }
        }
        let cloud: Vec<&str> = mixed
            .tenants
            .iter()
            .filter(|t| t.channel == Channel::Cloud)
            .map(|t| t.id.as_str())
            .collect();
        let on = if cloud.len() == mixed.tenants.len() {
            "every tenant".to_owned()
        } else if cloud.len() > 8 {
            format!("{} of {} tenants", cloud.len(), mixed.tenants.len())
        } else {
            cloud.join(", ")
        };
        if !cloud.is_empty() {
            mixed.description = format!("{}; on the Cloud API: {on}", mixed.description);
        }
        mixed
    }

    /// Whether any tenant is on the Cloud API.
    pub fn has_cloud(&self) -> bool {
        self.tenants.iter().any(|t| t.channel == Channel::Cloud)
    }

    /// The same scenario with every tenant id (and every fault's) prefixed:
    /// on a deployment the tool did not start, a run gets tenants of its own.
    pub fn with_tenant_prefix(&self, prefix: &str) -> Scenario {
        let mut renamed = self.clone();
        for t in &mut renamed.tenants {
            t.id = format!("{prefix}{}", t.id);
        }
        for fault in &mut renamed.faults {
            let tenant = fault.tenant_mut();
            *tenant = format!("{prefix}{tenant}");
        }
        renamed
    }
}

/// The knobs the command line exposes.
#[derive(Debug, Clone, Serialize)]
pub struct Knobs {
    pub duration: Duration,
    pub drain: Duration,
    pub quiet_tenants: usize,
    pub quiet_rate: f64,
    pub noisy_rate: f64,
    pub steady_rate: f64,
    pub budget_per_minute: u32,
    pub slow_ms: u64,
    pub ramp: Vec<f64>,
    pub ramp_step: Duration,
    /// Tenants of the overload scenario.
    pub overload_tenants: usize,
    /// Events per second of the overload scenario, all tenants together.
    pub overload_rate: f64,
    /// How long the overload scenario may take to answer everything.
    pub overload_drain: Duration,
    /// Traffic time of each run of the `cost` sweep.
    pub cost_duration: Duration,
    /// Which tenants are on the Cloud API (`--channel`).
    pub channel: ChannelMix,
}

/// The `cost` sweep (issue 20): (name, events per second of all tenants
/// together, tenants). Fixed rates so figures compare across commits; the
/// highest rate the pipeline keeps up with is read off the sweep.
pub const COST_RUNS: &[(&str, f64, usize)] = &[
    ("cost-100x100", 100.0, 100),
    ("cost-500x100", 500.0, 100),
    ("cost-1000x100", 1000.0, 100),
    ("cost-2000x100", 2000.0, 100),
    ("cost-3000x100", 3000.0, 100),
    ("cost-100x1000", 100.0, 1000),
    ("cost-500x1000", 500.0, 1000),
    ("cost-1000x1000", 1000.0, 1000),
    ("cost-2000x1000", 2000.0, 1000),
    // No traffic: what 1,000 provisioned tenants cost while nothing happens
    // (reported as a share of a core per party, not per event).
    ("cost-idle-1000", 0.0, 1000),
];

/// Whether `scenario` is an idle run of the `cost` sweep (provisioned
/// tenants, no traffic): reported as shares of a core, never as a rate.
pub fn is_idle_cost_run(scenario: &str) -> bool {
    COST_RUNS
        .iter()
        .any(|(name, rate, _)| *name == scenario && *rate == 0.0)
}

/// Whether the command line's scenario names select `name` (`cost` selects the whole sweep).
pub fn selected(names: &[String], name: &str) -> bool {
    names
        .iter()
        .any(|n| n == name || (n == "cost" && name.starts_with("cost-")))
}

/// The isolation scenarios' tenant refresh (see [`Scenario::tenant_refresh`]).
pub const QUICK_TENANT_REFRESH: Duration = Duration::from_secs(1);
/// The services' default `SWITCHYARD_TENANT_REFRESH`, for the cost sweep.
pub const COST_TENANT_REFRESH: Duration = Duration::from_secs(30);

/// A budget high enough that the pipeline, not the budget, is the limit.
pub const UNLIMITED_BUDGET: u32 = 1_000_000;

fn quiet(knobs: &Knobs) -> Vec<TenantLoad> {
    (1..=knobs.quiet_tenants)
        .map(|i| TenantLoad {
            id: format!("quiet-{i:02}"),
            channel: Channel::Wabridges,
            role: Role::Quiet,
            rate: knobs.quiet_rate,
            weight: 1,
            distinct: None,
        })
        .collect()
}

fn one(id: &str, role: Role, rate: f64) -> TenantLoad {
    TenantLoad {
        id: id.to_owned(),
        channel: Channel::Wabridges,
        role,
        rate,
        weight: 1,
        distinct: None,
    }
}

/// Every scenario, in the order `all` runs them.
pub fn all(knobs: &Knobs) -> Vec<Scenario> {
    let budget = knobs.budget_per_minute;
    let base = |name: &'static str, description: String, extra: Vec<TenantLoad>| Scenario {
        name,
        description,
        tenants: quiet(knobs).into_iter().chain(extra).collect(),
        faults: Vec::new(),
        fleet_per_minute: budget,
        duration: knobs.duration,
        drain: knobs.drain,
        ramp: Vec::new(),
        compare_fifo: true,
        baseline: Some("baseline"),
        only_when_named: false,
        tenant_refresh: QUICK_TENANT_REFRESH,
    };
    let q = knobs.quiet_tenants;
    let qr = knobs.quiet_rate;
    let per_s = f64::from(budget) / 60.0;
    let mut steady = base(
        "steady",
        format!(
            "{} tenants at {} ev/s each, fleet budget out of the way ({UNLIMITED_BUDGET}/min)",
            q + 1,
            knobs.steady_rate
        ),
        vec![one("steady-extra", Role::Quiet, knobs.steady_rate)],
    );
    for t in &mut steady.tenants {
        t.rate = knobs.steady_rate;
    }
    steady.fleet_per_minute = UNLIMITED_BUDGET;
    steady.baseline = None;

    let mut baseline = base(
        "baseline",
        format!(
            "{q} quiet tenants at {qr} ev/s each, budget {per_s:.0} sends/s; no misbehaving tenant"
        ),
        Vec::new(),
    );
    baseline.baseline = None;

    let flood = base(
        "flood",
        format!(
            "baseline + noisy at {} ev/s ({:.1}× the budget of {per_s:.0} sends/s)",
            knobs.noisy_rate,
            knobs.noisy_rate / per_s
        ),
        vec![one("noisy", Role::Noisy, knobs.noisy_rate)],
    );
    // The same flood with the budget out of the way (issue 20): the sender is
    // no longer the bottleneck, so the flood's own cost in ingest, NATS and
    // PostgreSQL is what the quiet tenants feel.
    let mut flood_open = base(
        "flood-open",
        format!(
            "baseline + noisy at {} ev/s, fleet budget out of the way ({UNLIMITED_BUDGET}/min)",
            knobs.noisy_rate
        ),
        vec![one("noisy", Role::Noisy, knobs.noisy_rate)],
    );
    flood_open.fleet_per_minute = UNLIMITED_BUDGET;
    flood_open.compare_fifo = false;
    let mut slow = base(
        "slow-bridge",
        format!(
            "baseline + a tenant at {qr} ev/s whose bridge answers after {} ms",
            knobs.slow_ms
        ),
        vec![one("slow", Role::Slow, qr)],
    );
    slow.faults.push(BridgeFault::Latency {
        tenant: "slow".into(),
        ms: knobs.slow_ms,
    });
    let mut hang = base(
        "timeout-bridge",
        format!("baseline + a tenant at {qr} ev/s whose bridge never answers (sender timeout 5 s)"),
        vec![one("hanging", Role::Hanging, qr)],
    );
    hang.faults.push(BridgeFault::Hang {
        tenant: "hanging".into(),
    });
    let mut failing = base(
        "failing-bridge",
        format!("baseline + a tenant at {qr} ev/s whose bridge answers 503"),
        vec![one("failing", Role::Failing, qr)],
    );
    failing.faults.push(BridgeFault::ServerError {
        tenant: "failing".into(),
        status: 503,
    });
    let replay = base(
        "replay-storm",
        format!(
            "baseline + a tenant re-posting 20 events at {} ev/s (duplicates)",
            knobs.noisy_rate
        ),
        vec![TenantLoad {
            distinct: Some(20),
            ..one("replayer", Role::Replaying, knobs.noisy_rate)
        }],
    );
    let weighted_rate = per_s * 1.5;
    let weights = Scenario {
        name: "weights",
        description: format!(
            "three tenants with weights 5/3/2, each at {weighted_rate:.0} ev/s, sharing a budget of {per_s:.0} sends/s"
        ),
        tenants: [("w5", 5), ("w3", 3), ("w2", 2)]
            .into_iter()
            .map(|(id, weight)| TenantLoad {
                weight,
                ..one(id, Role::Weighted, weighted_rate)
            })
            .collect(),
        faults: Vec::new(),
        fleet_per_minute: budget,
        duration: knobs.duration,
        drain: Duration::ZERO,
        ramp: Vec::new(),
        compare_fifo: true,
        baseline: None,
        only_when_named: false,
        tenant_refresh: QUICK_TENANT_REFRESH,
    };
    let saturation = Scenario {
        name: "front-door",
        description: format!(
            "all {} tenants at once, ramping {:?} ev/s per tenant, {} s a step; budget out of the way",
            q + 1,
            knobs.ramp,
            knobs.ramp_step.as_secs()
        ),
        tenants: quiet(knobs)
            .into_iter()
            .chain([one("steady-extra", Role::Quiet, 0.0)])
            .collect(),
        faults: Vec::new(),
        fleet_per_minute: UNLIMITED_BUDGET,
        duration: knobs.ramp_step * u32::try_from(knobs.ramp.len()).unwrap_or(1),
        drain: knobs.drain * 2,
        ramp: knobs
            .ramp
            .iter()
            .map(|&rate_per_tenant| RampStep {
                rate_per_tenant,
                duration: knobs.ramp_step,
            })
            .collect(),
        compare_fifo: false,
        baseline: None,
        only_when_named: false,
        tenant_refresh: QUICK_TENANT_REFRESH,
    };
    let n = knobs.overload_tenants.max(1);
    let per_tenant = knobs.overload_rate / n as f64;
    let overload = Scenario {
        name: "overload",
        description: format!(
            "{n} tenants at {:.0} ev/s together ({per_tenant:.2} each) for {} s, more than one machine processes; budget out of the way; every accepted event must be answered within {} s after",
            knobs.overload_rate,
            knobs.duration.as_secs(),
            knobs.overload_drain.as_secs()
        ),
        tenants: (1..=n)
            .map(|i| one(&format!("t{i:04}"), Role::Quiet, per_tenant))
            .collect(),
        faults: Vec::new(),
        fleet_per_minute: UNLIMITED_BUDGET,
        duration: knobs.duration,
        drain: knobs.overload_drain,
        ramp: Vec::new(),
        compare_fifo: false,
        baseline: None,
        only_when_named: true,
        tenant_refresh: QUICK_TENANT_REFRESH,
    };
    let mut every = vec![
        steady, baseline, flood, flood_open, slow, hang, failing, replay, weights, saturation,
        overload,
    ];
    every.extend(
        COST_RUNS
            .iter()
            .map(|&(name, rate, n)| cost_run(knobs, name, rate, n)),
    );
    every
}

/// One run of the `cost` sweep: `n` echo tenants sharing `rate` events per
/// second evenly, the fleet budget out of the way, the provider answering at
/// once; what it measures is CPU and server operations per delivered event.
fn cost_run(knobs: &Knobs, name: &'static str, rate: f64, n: usize) -> Scenario {
    let per_tenant = rate / n as f64;
    let seconds = knobs.cost_duration.as_secs();
    Scenario {
        name,
        description: if rate > 0.0 {
            format!(
                "cost: {n} tenants at {rate:.0} ev/s together ({per_tenant:.2} each) for {seconds} s, budget out of the way"
            )
        } else {
            format!("cost, idle: {n} tenants provisioned, no traffic for {seconds} s")
        },
        tenants: (1..=n)
            .map(|i| one(&format!("c{i:04}"), Role::Quiet, per_tenant))
            .collect(),
        faults: Vec::new(),
        fleet_per_minute: UNLIMITED_BUDGET,
        duration: knobs.cost_duration,
        drain: knobs.drain,
        ramp: Vec::new(),
        compare_fifo: false,
        baseline: None,
        only_when_named: true,
        tenant_refresh: COST_TENANT_REFRESH,
    }
}

/// Small knobs for unit tests (1 s runs, a few tenants).
#[cfg(test)]
pub(crate) fn test_knobs() -> Knobs {
    Knobs {
        duration: Duration::from_secs(1),
        drain: Duration::from_secs(1),
        quiet_tenants: 2,
        quiet_rate: 1.0,
        noisy_rate: 10.0,
        steady_rate: 1.0,
        budget_per_minute: 600,
        slow_ms: 100,
        ramp: vec![1.0],
        ramp_step: Duration::from_secs(1),
        overload_tenants: 3,
        overload_rate: 3.0,
        overload_drain: Duration::from_secs(1),
        cost_duration: Duration::from_secs(1),
        channel: ChannelMix::Wabridges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs() -> Knobs {
        test_knobs()
    }

    fn flood() -> Scenario {
        all(&knobs())
            .into_iter()
            .find(|s| s.name == "flood")
            .unwrap()
    }

    fn cloud_ids(s: &Scenario) -> Vec<&str> {
        s.tenants
            .iter()
            .filter(|t| t.channel == Channel::Cloud)
            .map(|t| t.id.as_str())
            .collect()
    }

    #[test]
    fn by_default_every_tenant_stays_on_wa_bridges() {
        let flood = flood().with_channels(ChannelMix::Wabridges);
        assert!(!flood.has_cloud());
        assert_eq!(flood.description, self::flood().description);
    }

    #[test]
    fn mixed_puts_every_other_tenant_and_the_flooder_on_the_cloud_api() {
        let mut k = knobs();
        k.quiet_tenants = 4;
        let flood = all(&k)
            .into_iter()
            .find(|s| s.name == "flood")
            .unwrap()
            .with_channels(ChannelMix::Mixed);
        assert_eq!(cloud_ids(&flood), ["quiet-02", "quiet-04", "noisy"]);
        assert!(
            flood
                .description
                .ends_with("on the Cloud API: quiet-02, quiet-04, noisy"),
            "{}",
            flood.description
        );
    }

    #[test]
    fn cloud_puts_every_tenant_on_the_cloud_api_but_a_faulted_bridge() {
        assert_eq!(
            cloud_ids(&flood().with_channels(ChannelMix::Cloud)).len(),
            3
        );
        for scenario in all(&knobs()) {
            let cloud = scenario.with_channels(ChannelMix::Cloud);
            for fault in &cloud.faults {
                let t = cloud
                    .tenants
                    .iter()
                    .find(|t| t.id == fault.tenant())
                    .unwrap();
                assert_eq!(t.channel, Channel::Wabridges, "{}", scenario.name);
            }
        }
    }

    #[test]
    fn a_prefix_renames_every_tenant_and_every_fault_target() {
        for scenario in all(&knobs()) {
            let renamed = scenario.with_tenant_prefix("lt9-1-");
            assert_eq!(renamed.tenants.len(), scenario.tenants.len());
            for (a, b) in scenario.tenants.iter().zip(&renamed.tenants) {
                assert_eq!(b.id, format!("lt9-1-{}", a.id));
            }
            for fault in &renamed.faults {
                let tenant = fault.tenant();
                assert!(
                    renamed.tenants.iter().any(|t| t.id == tenant),
                    "{}: fault on {tenant}, not a tenant of the scenario",
                    scenario.name
                );
            }
        }
    }

    #[test]
    fn cost_names_the_whole_sweep_and_each_run_its_rate() {
        let every = all(&knobs());
        let names = vec!["cost".to_owned()];
        let sweep: Vec<&Scenario> = every.iter().filter(|s| selected(&names, s.name)).collect();
        assert_eq!(sweep.len(), COST_RUNS.len());
        for (s, &(name, rate, n)) in sweep.iter().zip(COST_RUNS) {
            assert_eq!((s.name, s.tenants.len()), (name, n));
            let total: f64 = s.tenants.iter().map(|t| t.rate).sum();
            assert!((total - rate).abs() < 1e-6, "{name}: {total}");
            assert!(s.only_when_named && !s.compare_fifo);
            assert_eq!(s.tenant_refresh, COST_TENANT_REFRESH);
        }
        assert!(!selected(&names, "flood"));
        assert!(selected(&["cost-500x100".to_owned()], "cost-500x100"));
    }
}
