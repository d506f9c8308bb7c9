//! [`TenantGauge`]: a per-tenant gauge family published from a snapshot. Only
//! tenants with a non-zero value claim a label; a named tenant that drops to
//! zero is shown at 0 (the recorder cannot forget a series), and the tenants
//! past the cap are folded into the [`OTHER`] series, which always exists.

use std::collections::{HashMap, HashSet};

use metrics::{Label, SharedString};

use super::{OTHER, TenantLabels};
use crate::ids::TenantId;

/// How the tenants past the cap are folded into [`OTHER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Added up (counts: replies waiting).
    Sum,
    /// The largest (durations: how long the longest hold has lasted).
    Max,
}

/// One gauge family with a `tenant` label and at most one more (`by`).
#[derive(Debug)]
pub struct TenantGauge {
    name: &'static str,
    by: Option<&'static str>,
    overflow: Overflow,
    /// Every (tenant label, `by` value) ever set: re-set to 0 once absent.
    shown: HashSet<(SharedString, &'static str)>,
}

impl TenantGauge {
    /// A family named `name`, with a second label `by` if given. Its
    /// [`OTHER`] series exist at once, one per value of `by` in `by_values`
    /// (or a single one), so alerts and dashboards find the family before
    /// any tenant has a value.
    pub fn new(
        name: &'static str,
        by: Option<(&'static str, &[&'static str])>,
        overflow: Overflow,
    ) -> Self {
        let mut gauge = Self {
            name,
            by: by.map(|(label, _)| label),
            overflow,
            shown: HashSet::new(),
        };
        let values = by.map_or(&[""][..], |(_, values)| values);
        for value in values {
            gauge.shown.insert((SharedString::const_str(OTHER), value));
        }
        gauge.set_all(&HashMap::new());
        gauge
    }

    /// Publishes this snapshot: `(tenant, by value, value)`, where the `by`
    /// value is ignored for a family without one. Tenants left out are 0.
    pub fn publish<'a>(
        &mut self,
        labels: &TenantLabels,
        snapshot: impl IntoIterator<Item = (&'a TenantId, &'static str, f64)>,
    ) {
        let mut values: HashMap<(SharedString, &'static str), f64> = HashMap::new();
        for (tenant, by, value) in snapshot {
            if value == 0.0 {
                continue;
            }
            let by = if self.by.is_some() { by } else { "" };
            let slot = values.entry((labels.label(tenant), by)).or_insert(0.0);
            *slot = match self.overflow {
                Overflow::Sum => *slot + value,
                Overflow::Max => slot.max(value),
            };
        }
        self.shown.extend(values.keys().cloned());
        self.set_all(&values);
    }

    fn set_all(&self, values: &HashMap<(SharedString, &'static str), f64>) {
        for key in &self.shown {
            let (tenant, by) = key;
            let mut series = vec![Label::new("tenant", tenant.clone())];
            if let Some(name) = self.by {
                series.push(Label::new(name, *by));
            }
            metrics::gauge!(self.name, series).set(values.get(key).copied().unwrap_or(0.0));
        }
    }

    /// Series this family shows (for the budget's tests).
    pub fn series(&self) -> usize {
        self.shown.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn only_tenants_with_a_value_claim_a_label_and_the_rest_fold_into_other() {
        let labels = TenantLabels::new(1);
        let mut waiting = TenantGauge::new("test_waiting", None, Overflow::Sum);
        let (quiet, busy, late) = (tenant("quiet"), tenant("busy"), tenant("late"));
        waiting.publish(
            &labels,
            [(&quiet, "", 0.0), (&busy, "", 3.0), (&late, "", 4.0)],
        );
        assert!(!labels.is_named(&quiet), "a zero value claims no label");
        assert!(labels.is_named(&busy));
        assert!(!labels.is_named(&late), "past the cap");
        // busy's own series and the other bucket (which existed from the start).
        assert_eq!(waiting.series(), 2);
        waiting.publish(&labels, []);
        assert_eq!(
            waiting.series(),
            2,
            "a tenant back at zero keeps its series, at 0"
        );
    }

    /// Runs `f` against a recorder of its own and returns what it rendered.
    fn rendered(f: impl FnOnce()) -> String {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    #[test]
    fn durations_past_the_cap_show_the_longest_and_counts_their_sum() {
        let (named, a, b) = (tenant("named"), tenant("a"), tenant("b"));
        let text = rendered(|| {
            let labels = TenantLabels::new(1);
            let mut held = TenantGauge::new(
                "test_held",
                Some(("reason", &["restricted", "unauthorized"])),
                Overflow::Max,
            );
            let mut waiting = TenantGauge::new("test_waiting", None, Overflow::Sum);
            held.publish(&labels, [(&named, "restricted", 5.0)]);
            held.publish(
                &labels,
                [(&a, "restricted", 30.0), (&b, "restricted", 90.0)],
            );
            waiting.publish(&labels, [(&a, "", 2.0), (&b, "", 3.0)]);
        });
        for line in [
            r#"test_held{tenant="_other",reason="restricted"} 90"#,
            r#"test_held{tenant="_other",reason="unauthorized"} 0"#,
            r#"test_held{tenant="named",reason="restricted"} 0"#,
            r#"test_waiting{tenant="_other"} 5"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
