//! `switchyard status` answers "why is this tenant not getting answers?":
//! tenants driven into each hold (bridge disconnected, restricted, a 429
//! pause, a human takeover, a plain backlog) across two sender replicas and
//! a router are each reported by `status TENANT --json` with the right
//! verdict, the fleet view counts them, an unknown tenant says so, and a
//! stopped replica's records expire from the bucket.

use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;
use sqlx::PgPool;
use switchyard_bridge_sim::Fault;
use switchyard_cli::exit::Exit;
use switchyard_tests::poll;

use crate::{
    cli_support,
    whatsapp_support::{Rig, WITHIN, t},
};

const CHAT: &str = "15550007001@s.whatsapp.net";

/// Fast status publishing, so holds show within a second and a stopped
/// replica's records are gone within 3 s.
const STATUS: [(&str, &str); 2] = [
    ("SWITCHYARD_STATUS_INTERVAL", "300ms"),
    ("SWITCHYARD_STATUS_MAX_AGE", "3s"),
];

struct Cli {
    vars: Vec<(String, String)>,
}

impl Cli {
    async fn status(&self, tenant: &str) -> (Exit, Value) {
        cli_support::run_json(&["status", tenant], &self.vars).await
    }

    /// Polls `status TENANT` until `ok` holds; returns that answer.
    async fn status_until(&self, tenant: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        poll::until(&format!("status {tenant}: {what}"), WITHIN, || async {
            let (_, v) = self.status(tenant).await;
            ok(&v).then_some(v)
        })
        .await
    }

    async fn fleet(&self) -> Value {
        cli_support::run_json(&["status"], &self.vars).await.1
    }
}

fn holds(v: &Value) -> BTreeSet<String> {
    v["holds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["reason"].as_str().map(str::to_owned))
        .collect()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn replicas(v: &Value) -> BTreeSet<String> {
    v["reported_by"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["service"] == "sender")
        .filter_map(|r| r["replica"].as_str().map(str::to_owned))
        .collect()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn status_reports_each_hold_across_two_sender_replicas_and_forgets_a_dead_replica(
    pool: PgPool,
) {
    let rig = Rig::start(
        &pool,
        &["fine", "disc", "restr", "slow", "human", "limited"],
    )
    .await;
    let nats_url = rig.nats.url();
    let cli = Cli {
        vars: cli_support::vars(&rig.db_url, Some(&nats_url), None),
    };
    // "slow" may send one reply a minute: the rest is a backlog, not a hold.
    sqlx::query("UPDATE tenants SET sends_per_minute = 1, send_burst = 1 WHERE id = 'slow'")
        .execute(&pool)
        .await
        .unwrap();
    rig.sim
        .set_fault(
            "restr",
            Fault::Restricted {
                status: 403,
                message: "this number is restricted by WhatsApp".into(),
            },
            None,
        )
        .unwrap();
    let _router = rig.router(&STATUS).await;
    let mut env = STATUS.to_vec();
    env.push(("SWITCHYARD_REPLICA_ID", "sender-a"));
    let sender_a = rig.sender(&env).await;
    env.pop();
    env.push(("SWITCHYARD_REPLICA_ID", "sender-b"));
    let sender_b = rig.sender(&env).await;

    // Nothing known yet: an unknown tenant says so (exit 2), a known one is idle.
    let (exit, ghost) = cli.status("ghost").await;
    assert_eq!(exit, Exit::Usage, "{ghost}");
    assert_eq!(ghost["verdict"], "unknown tenant");
    let (exit, fine) = cli.status("fine").await;
    assert_eq!(exit, Exit::Ok, "{fine}");
    assert_eq!(kind(&fine), "idle", "{fine}");

    // disc: its bridge drops (the webhook reaches the router, which records it).
    rig.sim.set_connected("disc", false, true).await.unwrap();
    poll::until("disc recorded as disconnected", WITHIN, || async {
        let row = switchyard_shared::tenants::fetch(&pool, &t("disc"))
            .await
            .unwrap()
            .unwrap();
        row.bridge_state.holds_sends().then_some(())
    })
    .await;
    // human: a person answers from the phone; the bot goes quiet in that chat.
    rig.human_answers("human", "15550007002", "I'll take this one")
        .await;
    // fine: a customer writes and gets the echo bot's reply.
    rig.customer_says("fine", "15550007003", "hello").await;
    rig.sim.wait_for_sends(1, WITHIN).await.unwrap();
    for tenant in ["disc", "restr", "slow"] {
        rig.replies(tenant, "r", CHAT, 6).await;
    }

    let disc = cli
        .status_until("disc", "held by its bridge", |v| {
            holds(v).contains("bridge_disconnected") && v["replies_waiting"] == 6
        })
        .await;
    assert_eq!(kind(&disc), "held");
    assert!(
        disc["verdict"]
            .as_str()
            .unwrap()
            .starts_with("held: bridge disconnected since "),
        "{disc}"
    );
    assert!(
        disc["verdict"]
            .as_str()
            .unwrap()
            .ends_with(", 6 replies waiting"),
        "{disc}"
    );
    assert_eq!(disc["bridge_state"], "disconnected");

    let restr = cli
        .status_until("restr", "held as restricted", |v| {
            holds(v).contains("restricted")
        })
        .await;
    assert_eq!(kind(&restr), "held", "{restr}");
    assert!(restr["replies_waiting"].as_u64().unwrap() >= 5, "{restr}");

    let slow = cli
        .status_until("slow", "a backlog nothing holds", |v| {
            kind(v) == "backlog" && v["replies_waiting"].as_u64() >= Some(4)
        })
        .await;
    assert!(holds(&slow).is_empty(), "{slow}");
    assert!(slow["replies_waiting_since"].is_string(), "{slow}");

    // The takeover is read from the database at once; the router's report of
    // the event comes with its next status publish: wait for both.
    let human = cli
        .status_until("human", "a takeover the router reported", |v| {
            v["chats_in_takeover"] == 1 && v["last_event_in"].is_string()
        })
        .await;
    assert_eq!(kind(&human), "takeover", "{human}");

    let fine = cli
        .status_until("fine", "its reply sent", |v| v["last_send_out"].is_string())
        .await;
    assert_eq!(kind(&fine), "ok", "{fine}");
    assert!(
        fine["verdict"]
            .as_str()
            .unwrap()
            .starts_with("ok: last reply sent "),
        "{fine}"
    );

    // The fleet counts them.
    let fleet = cli.fleet().await;
    assert_eq!(fleet["bridge_states"]["disconnected"], 1, "{fleet}");
    assert_eq!(fleet["held_by_reason"]["bridge_disconnected"], 1, "{fleet}");
    assert_eq!(fleet["held_by_reason"]["restricted"], 1, "{fleet}");
    let backlogs: Vec<&str> = fleet["largest_backlogs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["tenant"].as_str())
        .collect();
    for tenant in ["disc", "restr", "slow"] {
        assert!(backlogs.contains(&tenant), "{fleet}");
    }
    assert!(fleet["oldest_waiting"]["tenant"].is_string(), "{fleet}");

    // limited: the provider answers 429 with a long Retry-After: its
    // replica holds every send until then, and says so.
    rig.sim
        .set_fault(
            "limited",
            Fault::RateLimit {
                retry_after_secs: 30,
            },
            None,
        )
        .unwrap();
    rig.replies("limited", "r", CHAT, 3).await;
    let limited = cli
        .status_until("limited", "held by the 429", |v| {
            holds(v).contains("rate_limited")
        })
        .await;
    assert_eq!(kind(&limited), "held", "{limited}");
    let hold = limited["holds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["reason"] == "rate_limited")
        .unwrap();
    assert!(
        hold["until"].is_string(),
        "a 429 pause has an end: {limited}"
    );
    let fleet = cli.fleet().await;
    assert!(
        fleet["held_by_reason"]["rate_limited"].as_u64() >= Some(1),
        "{fleet}"
    );
    // What an operator reads (docs/operations.md shows a capture of this).
    for args in [&["status"][..], &["status", "disc"][..]] {
        let (_, text) = cli_support::run(args, &cli.vars).await;
        eprintln!("$ switchyard {}\n{text}", args.join(" "));
    }

    // Both replicas report what they hold (the partitions are split between
    // them, or one holds them all: either way each replica that holds a
    // tenant reports it under its own name).
    let mut seen = BTreeSet::new();
    for tenant in ["disc", "restr", "slow", "limited", "fine"] {
        seen.extend(replicas(&cli.status(tenant).await.1));
    }
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|r| r == "sender-a" || r == "sender-b"),
        "{seen:?}"
    );

    // A replica that dies stops refreshing: its records expire (max age 3 s)
    // and the tenants it held are reported by the survivor, still held.
    let (dead, survivor) = if seen.contains("sender-a") {
        (sender_a, sender_b)
    } else {
        (sender_b, sender_a)
    };
    let dead_name = if seen.contains("sender-a") {
        "sender-a"
    } else {
        "sender-b"
    };
    dead.crash();
    let disc = cli
        .status_until("disc", "only live replicas reporting", |v| {
            !replicas(v).contains(dead_name) && holds(v).contains("bridge_disconnected")
        })
        .await;
    assert_eq!(kind(&disc), "held", "{disc}");
    poll::until(
        "no record of the dead replica left",
        Duration::from_secs(20),
        || async {
            let mut left = false;
            for tenant in ["disc", "restr", "slow", "limited", "fine", "human"] {
                left |= replicas(&cli.status(tenant).await.1).contains(dead_name);
            }
            (!left).then_some(())
        },
    )
    .await;
    drop(survivor);
}
