//! `docs/benchmarks/chaos.md`: the figures of a full run, one row per fault
//! kind, with the machine's load, the date and the commit.

use std::fmt::Write as _;

use super::Outcome;

/// The report's Markdown.
pub fn markdown(outcomes: &[Outcome], command: &str) -> String {
    let date = time::OffsetDateTime::now_utc().date();
    let commit = switchyard_build_info::GIT_COMMIT;
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Chaos: faults under steady load\n\n\
         Issue 16's chaos suite, full version: the production topology on one machine \
         (a 3-node NATS cluster with R3 streams, PostgreSQL behind a proxy the driver cuts, \
         2 ingest, 3 router and 3 sender replicas as processes of their own, the WA Bridges \
         simulator as the provider, echoing every send as `from_me`), steady webhook \
         traffic, and one kind of fault per run at random moments. Every event in is counted \
         by the driver (each POST and its status), every send out by the simulator; a reply \
         names its event and tenant, so double and cross-tenant sends are seen directly.\n\n\
         Measured {date}, commit `{commit}`, {cores} cores, {profile} build; command: `{command}`. \
         The test command runs the short version of each row (`chaos::*`, 2 faults each) \
         and asserts the goals.\n"
    );
    let _ = writeln!(
        md,
        "| fault | faults | posted | accepted (2xx) | non-2xx at ingest | answered | lost | \
         sent twice (in the documented window) | wrong bridge | dead letters | \
         recovery after each fault, s: max (median) | latency p50 / p99, ms | machine busy (stolen) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let f = &o.figures;
        let mut recoveries = f.recovery_ms.clone();
        recoveries.sort_unstable();
        let median = recoveries.get(recoveries.len() / 2).copied().unwrap_or(0);
        let non_2xx = if f.non_2xx() == 0 {
            "0".to_owned()
        } else {
            let statuses: Vec<String> = f
                .refused
                .iter()
                .map(|(s, n)| format!("{n}× {s}"))
                .chain((f.no_answer > 0).then(|| format!("{}× no answer", f.no_answer)))
                .collect();
            statuses.join(", ")
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {:.1} ({:.1}) | {} / {} | {:.0} % ({:.0} %) |",
            o.plan
                .faults
                .first()
                .map_or_else(|| o.plan.kind.name().to_owned(), |f| f.describe()),
            o.injected.len(),
            f.posted,
            f.accepted,
            non_2xx,
            f.answered,
            f.lost.len(),
            f.sent_twice.len(),
            f.sent_twice_in_window,
            f.wrong_bridge,
            f.dead_letters,
            f.max_recovery_ms() as f64 / 1000.0,
            median as f64 / 1000.0,
            f.latency_p50_ms,
            f.latency_p99_ms,
            o.machine_busy_percent,
            o.machine_steal_percent,
        );
    }
    let _ = writeln!(
        md,
        "\n**How to read it.** *Accepted*: ingest answered 2xx, so the event must be answered. \
         *Non-2xx*: ingest refused it, or the connection broke under a killed replica \
         (\"no answer\", what the provider would see; it does not retry). *Lost*: accepted, \
         never answered after the drain (every accepted event answered and every consumer idle, \
         or the drain's deadline). *Sent twice*: one event's reply accepted by the provider more \
         than once; *in the documented window* when a sender replica was killed between the \
         copies (invariant 5, `docs/architecture.md`). *Recovery*: for each fault, the longest an \
         event accepted from 2 s before it until the next fault waited for its reply after the \
         kill (crashes) or after the outage's end (PostgreSQL, bridges); an event posted later \
         counts its whole latency, so this is the time until every tenant's replies flow again \
         at their usual pace. The overload run (2,000 events/s over 1,000 tenants) is planned \
         (`switchyard-chaos overload`) and not part of this report yet.\n"
    );
    for o in outcomes {
        let _ = writeln!(
            md,
            "- `{}` (seed {}, {} events/s over {} tenants, {:.0?}): {}",
            o.plan.kind.name(),
            o.plan.seed,
            o.plan.rate.events_per_second,
            o.plan.tenants,
            o.wall,
            o.injected
                .iter()
                .zip(&o.figures.recovery_ms)
                .zip(&o.figures.after_leaders_ms)
                .map(|((i, r), after)| {
                    let leaders = match (i.leaders_back_ms, after) {
                        (Some(back), Some(after)) => format!(
                            " (NATS leaders back {:.1} s after the kill; an event waited up to {:.1} s after that)",
                            back.saturating_sub(i.began_ms) as f64 / 1000.0,
                            *after as f64 / 1000.0
                        ),
                        _ => String::new(),
                    };
                    format!("{} → {:.1} s{leaders}", i.what, *r as f64 / 1000.0)
                })
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    for o in outcomes.iter().filter(|o| !o.diagnosis.is_empty()) {
        let lines: Vec<&str> = o.diagnosis.lines().take(40).collect();
        let _ = writeln!(
            md,
            "\n### `{}`: the slowest events' path (and where unanswered events were, if any)\n\n```text\n{}\n```",
            o.plan.kind.name(),
            lines.join("\n")
        );
    }
    md
}
