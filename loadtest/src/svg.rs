//! A hand-rolled SVG bar chart: per scenario and scheduler, the quiet
//! tenants' p99 beside the misbehaving tenant's, on a log scale (a plotting
//! crate would cost more build time than these hundred lines).

use std::fmt::Write as _;

use crate::{results::RunResult, scenario::Role};

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 90.0;
const TOP: f64 = 50.0;
const QUIET: &str = "#2b8cbe";
const OTHER: &str = "#e34a33";

/// (label, quiet p99, the other tenant's p99 if any).
fn bars(runs: &[RunResult]) -> Vec<(String, u64, Option<u64>)> {
    runs.iter()
        .filter(|r| r.steps.is_empty() && r.quiet_latency.count > 0)
        .map(|r| {
            let other = r
                .tenants
                .iter()
                .filter(|t| t.role != Role::Quiet && t.latency.count > 0)
                .map(|t| t.latency.p99_ms)
                .max();
            (
                format!("{} / {}", r.scenario, r.scheduler),
                r.quiet_latency.p99_ms,
                other,
            )
        })
        .collect()
}

fn y_of(ms: u64, max_log: f64) -> f64 {
    let plot = HEIGHT - TOP - BOTTOM;
    let v = (ms.max(1) as f64).log10() / max_log;
    HEIGHT - BOTTOM - v * plot
}

/// The chart as an SVG document.
pub fn latency_chart(runs: &[RunResult]) -> String {
    let data = bars(runs);
    let max = data
        .iter()
        .map(|(_, q, o)| (*q).max(o.unwrap_or(0)))
        .max()
        .unwrap_or(1)
        .max(10);
    let max_log = (max as f64).log10().ceil().max(1.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">p99 latency, webhook → bridge (ms, log scale): quiet tenants vs the misbehaving one</text>"#,
        WIDTH / 2.0
    );
    for decade in 0..=(max_log as u32) {
        let ms = 10u64.pow(decade);
        let y = y_of(ms, max_log);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{ms}</text>"##,
            WIDTH - 10.0,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let slot = (WIDTH - LEFT - 10.0) / data.len().max(1) as f64;
    let bar = (slot * 0.35).min(30.0);
    for (i, (label, quiet, other)) in data.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot / 2.0;
        for (value, colour, dx) in [(Some(*quiet), QUIET, -bar), (*other, OTHER, 0.0)] {
            let Some(v) = value else { continue };
            let y = y_of(v, max_log);
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{y:.1}" width="{bar:.1}" height="{:.1}" fill="{colour}"><title>{label}: {v} ms</title></rect>"#,
                x + dx,
                HEIGHT - BOTTOM - y
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{v}</text>"#,
                x + dx + bar / 2.0,
                y - 3.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text transform="translate({x:.1},{:.1}) rotate(35)" font-size="10">{label}</text>"#,
            HEIGHT - BOTTOM + 14.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="32" width="10" height="10" fill="{QUIET}"/><text x="{}" y="41">quiet tenants (all together)</text><rect x="{}" y="32" width="10" height="10" fill="{OTHER}"/><text x="{}" y="41">noisy / slow / failing / replaying tenant</text>"#,
        LEFT + 14.0,
        LEFT + 200.0,
        LEFT + 214.0
    );
    s.push_str("</svg>\n");
    s
}
