//! A Cloud API tenant's send limits, from what Meta says of its number
//! (docs/cloud-api.md section 6): one pure function, [`effective`], used by
//! the sender to schedule the tenant and by `switchyard status` to show
//! why the limit is what it is.
//!
//! - The rate is the tenant's own plan (`tenants.sends_per_minute`), never
//!   above the number's `cloud_channels.mps` (per second, default 20). The
//!   WA Bridges fleet budget does not apply: Meta limits each number.
//! - The number's quality rating scales it: `GREEN` (or none reported) keeps
//!   it, `YELLOW` halves it, `RED` quarters it and stops the tenant's bulk
//!   lane (replays, recovery) altogether. Quality is "based on how messages
//!   have been received over the past seven days" (Meta): a number sending
//!   less while it is rated low is what a careful person would do, and what
//!   keeps a number from the next downgrade. Live replies inside the window
//!   keep going, slower.
//! - The messaging-limit tier bounds the customers a business reaches
//!   outside their service window in a moving 24 hours; Switchyard's only
//!   such send is the fallback template, so [`template_room`] stops it at
//!   90 % of the tier ([`TIER_SHARE_PERCENT`]), leaving room for Meta's
//!   own count to differ from ours. A tier not reported yet, `TIER_UNLIMITED`
//!   or a value Meta did not document sets no cap.
//! - Meta's names are kept: `HIGH`/`MEDIUM`/`LOW` (the ratings' display
//!   names) read as `GREEN`/`YELLOW`/`RED`; `FLAGGED` (the quality webhook's
//!   event for a number at risk) reads as `RED`; any other value is shown as
//!   it is and changes nothing (the full list is not published).

use std::fmt;

use crate::tenants::SendLimits;

/// A number's messages per second when none is recorded (`cloud_channels.mps`'s default).
pub const DEFAULT_MPS: u32 = 20;

/// A number's quality rating, as far as limits are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quality {
    /// `GREEN`, `HIGH`, or nothing reported yet.
    Green,
    /// `YELLOW`, `MEDIUM`.
    Yellow,
    /// `RED`, `LOW`, `FLAGGED`.
    Red,
    /// A value Meta did not document: kept, changes nothing.
    Other(String),
}

impl Quality {
    /// Reads a stored rating (`None`: not reported: `Green`).
    pub fn parse(raw: Option<&str>) -> Self {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Quality::Green;
        };
        match raw.to_ascii_uppercase().as_str() {
            "GREEN" | "HIGH" => Quality::Green,
            "YELLOW" | "MEDIUM" => Quality::Yellow,
            "RED" | "LOW" | "FLAGGED" => Quality::Red,
            _ => Quality::Other(raw.to_owned()),
        }
    }

    /// The share of the tenant's rate kept at this rating, in percent.
    pub fn rate_percent(&self) -> u32 {
        match self {
            Quality::Green | Quality::Other(_) => 100,
            Quality::Yellow => 50,
            Quality::Red => 25,
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quality::Green => f.write_str("GREEN"),
            Quality::Yellow => f.write_str("YELLOW"),
            Quality::Red => f.write_str("RED"),
            Quality::Other(raw) => f.write_str(raw),
        }
    }
}

/// The share of the messaging-limit tier the fallback template may use.
pub const TIER_SHARE_PERCENT: u64 = 90;

/// The unique customers a tier allows outside the window in 24 hours
/// (`TIER_250`, `TIER_2K`, `TIER_10K`, `TIER_100K`, or bare digits);
/// `None`: no cap (unlimited, not reported, not understood).
pub fn tier_customers(tier: Option<&str>) -> Option<u64> {
    let tier = tier?.trim().to_ascii_uppercase();
    let raw = tier.strip_prefix("TIER_").unwrap_or(&tier);
    let (digits, scale) = match raw.strip_suffix('K') {
        Some(d) => (d, 1_000),
        None => (raw, 1),
    };
    digits.parse::<u64>().ok().map(|n| n.saturating_mul(scale))
}

/// Whether one more customer may get a template outside the window, with
/// `reached` other customers reached so in the last 24 hours; `Err` says why not.
pub fn template_room(tier: Option<&str>, reached: i64) -> Result<(), String> {
    let Some(customers) = tier_customers(tier) else {
        return Ok(());
    };
    let cap = customers * TIER_SHARE_PERCENT / 100;
    let reached = u64::try_from(reached).unwrap_or(0);
    if reached < cap {
        Ok(())
    } else {
        Err(format!(
            "the messaging limit {} allows {customers} customers outside the window in 24 h; \
             {reached} were reached, and Switchyard stops at {TIER_SHARE_PERCENT} % ({cap})",
            tier.unwrap_or_default()
        ))
    }
}

/// What a Cloud tenant may send, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudLimits {
    /// The limits to schedule the tenant with.
    pub limits: SendLimits,
    /// The rate before the quality scaled it (plan capped by the number's mps).
    pub base_per_minute: u32,
    /// The rating that scaled it.
    pub quality: Quality,
    /// `RED`: the tenant's bulk lane does not send at all.
    pub bulk_stopped: bool,
}

impl CloudLimits {
    /// One line for an operator: `15/min (quality RED: 25 % of 60/min)`.
    pub fn explain(&self) -> String {
        let percent = self.quality.rate_percent();
        if percent == 100 {
            format!("{}/min", self.limits.sends_per_minute)
        } else {
            format!(
                "{}/min (quality {}: {percent} % of {}/min{})",
                self.limits.sends_per_minute,
                self.quality,
                self.base_per_minute,
                if self.bulk_stopped {
                    "; bulk stopped"
                } else {
                    ""
                }
            )
        }
    }
}

/// The limits of a Cloud tenant whose plan is `plan`, whose number may send
/// `mps` messages a second, rated `quality`.
pub fn effective(plan: SendLimits, mps: u32, quality: Option<&str>) -> CloudLimits {
    let quality = Quality::parse(quality);
    let number_per_minute = mps.max(1).saturating_mul(60);
    let base_per_minute = plan.sends_per_minute.min(number_per_minute);
    let percent = quality.rate_percent();
    let scale = |v: u32| {
        let scaled = u64::from(v) * u64::from(percent) / 100;
        u32::try_from(scaled).unwrap_or(u32::MAX).max(1)
    };
    let per_minute = if base_per_minute == 0 {
        0
    } else {
        scale(base_per_minute)
    };
    CloudLimits {
        limits: SendLimits {
            weight: plan.weight,
            sends_per_minute: per_minute,
            send_burst: scale(plan.send_burst.min(mps.max(1))),
            max_in_flight: plan.max_in_flight,
        },
        base_per_minute,
        bulk_stopped: quality == Quality::Red,
        quality,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sends_per_minute: u32, send_burst: u32) -> SendLimits {
        SendLimits {
            weight: 3,
            sends_per_minute,
            send_burst,
            max_in_flight: 4,
        }
    }

    #[test]
    fn the_number_caps_the_plan_and_green_keeps_it() {
        let l = effective(plan(6_000, 50), 20, Some("GREEN"));
        assert_eq!(
            l.limits.sends_per_minute, 1_200,
            "20 mps caps a 6,000/min plan"
        );
        assert_eq!(
            l.limits.send_burst, 20,
            "no burst above the number's second"
        );
        assert_eq!((l.limits.weight, l.limits.max_in_flight), (3, 4));
        assert!(!l.bulk_stopped);
        assert_eq!(l.explain(), "1200/min");
        let unrated = effective(plan(120, 10), 20, None);
        assert_eq!(
            unrated.limits.sends_per_minute, 120,
            "a smaller plan stands"
        );
        assert_eq!(unrated.quality, Quality::Green);
    }

    #[test]
    fn a_downgrade_lowers_the_rate_and_red_stops_bulk() {
        let yellow = effective(plan(120, 10), 20, Some("YELLOW"));
        assert_eq!(yellow.limits.sends_per_minute, 60);
        assert_eq!(yellow.limits.send_burst, 5);
        assert!(!yellow.bulk_stopped);
        let red = effective(plan(120, 10), 20, Some("red"));
        assert_eq!(red.limits.sends_per_minute, 30);
        assert_eq!(red.limits.send_burst, 2);
        assert!(red.bulk_stopped);
        assert_eq!(
            red.explain(),
            "30/min (quality RED: 25 % of 120/min; bulk stopped)"
        );
        for (raw, expected) in [
            ("MEDIUM", Quality::Yellow),
            ("LOW", Quality::Red),
            ("FLAGGED", Quality::Red),
            ("HIGH", Quality::Green),
        ] {
            assert_eq!(Quality::parse(Some(raw)), expected, "{raw}");
        }
    }

    #[test]
    fn the_fallback_stops_at_ninety_percent_of_the_tier() {
        assert_eq!(tier_customers(Some("TIER_250")), Some(250));
        assert_eq!(tier_customers(Some("TIER_2K")), Some(2_000));
        assert_eq!(tier_customers(Some("tier_100k")), Some(100_000));
        assert_eq!(tier_customers(Some("1000")), Some(1_000));
        for none in [None, Some("TIER_UNLIMITED"), Some("TIER_?"), Some("")] {
            assert_eq!(tier_customers(none), None, "{none:?}");
        }
        assert!(template_room(Some("TIER_250"), 224).is_ok());
        let full = template_room(Some("TIER_250"), 225).unwrap_err();
        assert!(
            full.contains("TIER_250") && full.contains("(225)"),
            "{full}"
        );
        assert!(template_room(Some("TIER_UNLIMITED"), 1_000_000).is_ok());
        assert!(template_room(None, 1_000_000).is_ok());
    }

    #[test]
    fn odd_inputs_never_give_a_zero_rate_by_accident() {
        // A tiny plan at RED still sends (1/min), a zero plan stays zero
        // (an operator stopped the tenant), an unknown rating changes nothing.
        assert_eq!(
            effective(plan(2, 1), 20, Some("RED"))
                .limits
                .sends_per_minute,
            1
        );
        assert_eq!(
            effective(plan(0, 1), 20, Some("GREEN"))
                .limits
                .sends_per_minute,
            0
        );
        let odd = effective(plan(120, 10), 0, Some("PURPLE"));
        assert_eq!(odd.limits.sends_per_minute, 60, "mps 0 is read as 1");
        assert_eq!(odd.quality, Quality::Other("PURPLE".to_owned()));
        assert_eq!(odd.quality.to_string(), "PURPLE");
        assert_eq!(Quality::parse(Some("  ")), Quality::Green);
    }
}
