//! Where an event's time goes (issue 20: the p50 at 500 events/s is twice
//! its goal, and the end-to-end figure alone does not say which hop holds
//! it). Every service times its own stages in `/metrics` histograms; the mean
//! of each between two reads is the difference of its `_sum` over the
//! difference of its `_count`. A mean is not a median (one slow event weighs
//! on it), but it names the stages a median is made of, where the histograms'
//! coarse buckets could not.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_shared::metrics::LANE_MESSAGE_AGE_SECONDS;
use switchyard_tests::traffic::metric_sum;

/// One stage a service times: a histogram, narrowed by label fragments.
#[derive(Debug)]
pub struct Stage {
    /// What the report calls it.
    pub name: &'static str,
    metric: &'static str,
    /// The series' labels as rendered, in the order its code gives them.
    labels: &'static str,
}

const fn stage(name: &'static str, metric: &'static str, labels: &'static str) -> Stage {
    Stage {
        name,
        metric,
        labels,
    }
}

/// The stages in the order an event meets them. The ages are measured from
/// the server storing the message, so each "stored → taken" is the hop
/// through JetStream to the reader, and "taken → handled" (the difference of
/// the two ages) the wait in the process.
pub const STAGES: &[Stage] = &[
    stage(
        "ingest: webhook answered",
        switchyard_ingest::metrics::REQUEST_SECONDS,
        "",
    ),
    stage(
        "ingest: key claimed",
        switchyard_ingest::metrics::CLAIM_SECONDS,
        "",
    ),
    stage(
        "ingest: stored in JetStream",
        switchyard_ingest::metrics::PUBLISH_SECONDS,
        "",
    ),
    stage(
        "router: stored → taken",
        LANE_MESSAGE_AGE_SECONDS,
        "direction=\"inbound\",at=\"taken\"",
    ),
    stage(
        "router: stored → handled",
        LANE_MESSAGE_AGE_SECONDS,
        "direction=\"inbound\",at=\"handled\"",
    ),
    stage(
        "router: read",
        switchyard_router::metrics::STEP_PHASE_SECONDS,
        "phase=\"read\"",
    ),
    stage(
        "router: bot",
        switchyard_router::metrics::STEP_PHASE_SECONDS,
        "phase=\"bot\"",
    ),
    stage(
        "router: replies stored",
        switchyard_router::metrics::STEP_PHASE_SECONDS,
        "phase=\"publish\"",
    ),
    stage(
        "router: record",
        switchyard_router::metrics::STEP_PHASE_SECONDS,
        "phase=\"record\"",
    ),
    stage(
        "sender: stored → taken",
        LANE_MESSAGE_AGE_SECONDS,
        "direction=\"outbound\",at=\"taken\"",
    ),
    stage(
        "sender: stored → handled",
        LANE_MESSAGE_AGE_SECONDS,
        "direction=\"outbound\",at=\"handled\"",
    ),
    stage(
        "sender: ledger claim (group-committed)",
        switchyard_shared::metrics::DB_STEP_SECONDS,
        "step=\"claim_new\"",
    ),
    stage(
        "sender: provider call",
        switchyard_sender::metrics::SEND_SECONDS,
        "",
    ),
    stage(
        "end to end (ingest's receipt → provider accepted)",
        switchyard_sender::metrics::END_TO_END_SECONDS,
        "",
    ),
];

/// Every stage's summed seconds and sample count over the services read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTotals(BTreeMap<&'static str, (f64, f64)>);

/// One stage's mean over a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageMean {
    pub stage: String,
    pub mean_ms: f64,
    pub count: u64,
}

impl StageTotals {
    /// Adds up the stages in `/metrics` texts (one per service).
    pub fn read<'a>(rendered: impl IntoIterator<Item = &'a str>) -> Self {
        let mut totals = BTreeMap::new();
        for text in rendered {
            for stage in STAGES {
                let sum = sample_sum(text, stage, "_sum");
                let count = sample_sum(text, stage, "_count");
                let entry = totals.entry(stage.name).or_insert((0.0, 0.0));
                entry.0 += sum;
                entry.1 += count;
            }
        }
        Self(totals)
    }

    /// Reads the services' ops endpoints (`http://host:port`); `None`
    /// unless every one answered.
    pub async fn scrape(ops: &[String]) -> Option<Self> {
        let mut texts = Vec::with_capacity(ops.len());
        for base in ops {
            let url = format!("{}/metrics", base.trim_end_matches('/'));
            texts.push(reqwest::get(url).await.ok()?.text().await.ok()?);
        }
        Some(Self::read(texts.iter().map(String::as_str)))
    }

    /// Each stage's mean between `before` and `after`, in [`STAGES`]' order;
    /// stages without samples meanwhile are left out.
    pub fn means(before: &Self, after: &Self) -> Vec<StageMean> {
        STAGES
            .iter()
            .filter_map(|stage| {
                let (sum_after, count_after) = after.0.get(stage.name).copied()?;
                let (sum_before, count_before) =
                    before.0.get(stage.name).copied().unwrap_or_default();
                let count = count_after - count_before;
                (count >= 1.0).then(|| StageMean {
                    stage: stage.name.to_owned(),
                    mean_ms: (sum_after - sum_before) / count * 1e3,
                    count: count as u64,
                })
            })
            .collect()
    }
}

/// The sum of `stage`'s histogram series `suffix` (`_sum`, `_count`).
fn sample_sum(rendered: &str, stage: &Stage, suffix: &str) -> f64 {
    metric_sum(rendered, &format!("{}{suffix}", stage.metric), stage.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: &str = "\
# TYPE switchyard_lane_message_age_seconds histogram
switchyard_lane_message_age_seconds_bucket{direction=\"inbound\",at=\"taken\",le=\"0.001\"} 3
switchyard_lane_message_age_seconds_sum{direction=\"inbound\",at=\"taken\"} 0.004
switchyard_lane_message_age_seconds_count{direction=\"inbound\",at=\"taken\"} 4
switchyard_lane_message_age_seconds_sum{direction=\"inbound\",at=\"handled\"} 0.012
switchyard_lane_message_age_seconds_count{direction=\"inbound\",at=\"handled\"} 4
switchyard_lane_message_age_seconds_sum{direction=\"outbound\",at=\"taken\"} 9
switchyard_lane_message_age_seconds_count{direction=\"outbound\",at=\"taken\"} 1
switchyard_router_step_phase_seconds_sum{phase=\"read\"} 0.002
switchyard_router_step_phase_seconds_count{phase=\"read\"} 2
";

    #[test]
    fn a_stage_mean_is_the_difference_of_its_sums_over_that_of_its_counts() {
        let before = StageTotals::read([ROUTER]);
        let later = ROUTER
            .replace("at=\"taken\"} 0.004", "at=\"taken\"} 0.024")
            .replace("at=\"taken\"} 4", "at=\"taken\"} 14");
        // Two replicas: the second's samples add to the first's.
        let other = "switchyard_lane_message_age_seconds_sum{direction=\"inbound\",at=\"taken\"} 0.010\n\
                     switchyard_lane_message_age_seconds_count{direction=\"inbound\",at=\"taken\"} 10\n";
        let after = StageTotals::read([later.as_str(), other]);
        let means = StageTotals::means(&before, &after);
        assert_eq!(means.len(), 1, "only the stage that had samples: {means:?}");
        assert_eq!(means[0].stage, "router: stored → taken");
        assert_eq!(means[0].count, 20);
        assert!(
            (means[0].mean_ms - 1.5).abs() < 1e-9,
            "(0.020 + 0.010) s over 20: {means:?}"
        );
    }

    #[test]
    fn labels_and_series_names_are_matched_whole() {
        let totals = StageTotals::read([ROUTER]);
        let means = StageTotals::means(&StageTotals::default(), &totals);
        let by_name: BTreeMap<&str, f64> = means
            .iter()
            .map(|m| (m.stage.as_str(), m.mean_ms))
            .collect();
        // The outbound age is not the inbound one, and the bucket line is
        // not the sum.
        assert!((by_name["router: stored → taken"] - 1.0).abs() < 1e-9);
        assert!((by_name["router: stored → handled"] - 3.0).abs() < 1e-9);
        assert!((by_name["sender: stored → taken"] - 9_000.0).abs() < 1e-9);
        assert!((by_name["router: read"] - 1.0).abs() < 1e-9);
        assert!(!by_name.contains_key("router: bot"), "no samples: left out");
    }
}
