//! `switchyard fleet` against the WA Bridges simulator: provisioning is
//! idempotent and resumable under the provider's rate limit; reconcile finds
//! orphans, tenants without a bridge and drift, records state, deletes
//! nothing, and serves its counts on /metrics; summary counts and prices the
//! fleet; delete removes exactly the named tenant's bridge.

use std::time::Duration;

use crate::cli_support::{SIM_KEY, add_tenant, run_json, t, vars};
use sqlx::PgPool;
use switchyard_bridge_sim::{Limits, SimConfig, SimHandle};
use switchyard_cli::{
    context::WebhookTarget,
    exit::Exit,
    fleet::{provision, reconcile},
    output::Output,
};
use switchyard_shared::{
    config::Env,
    ids::{BridgeId, TenantId},
    tenants::{self, BotKind},
    wabridges::WaBridgesClient,
    webhook_auth::WebhookKeys,
};
use switchyard_tests::{nats_server, poll, services};
use tokio_util::sync::CancellationToken;

async fn sim() -> SimHandle {
    SimHandle::start(SimConfig::new(SIM_KEY)).await.unwrap()
}

async fn tenants_named(pool: &PgPool, ids: &[&str]) {
    for id in ids {
        add_tenant(pool, id, BotKind::Echo, serde_json::json!({})).await;
    }
}

async fn row(pool: &PgPool, id: &str) -> tenants::Tenant {
    tenants::fetch(pool, &t(id)).await.unwrap().unwrap()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn provisioning_twice_leaves_one_bridge_with_the_tenants_own_webhook_url(pool: PgPool) {
    let sim = sim().await;
    tenants_named(&pool, &["acme"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));

    let (exit, first) = run_json(&["fleet", "provision", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok, "{first}");
    assert_eq!(first["rows"][0]["outcome"], "provisioned");
    let (exit, second) = run_json(&["fleet", "provision", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok);
    assert_eq!(second["rows"][0]["outcome"], "skipped");
    // A crash after the provider answered but before the row was written:
    // the re-run calls again and the provider returns the same bridge.
    sqlx::query("UPDATE tenants SET bridge_id = NULL WHERE id = 'acme'")
        .execute(&pool)
        .await
        .unwrap();
    let (exit, third) = run_json(&["fleet", "provision", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok);
    assert_eq!(third["rows"][0]["bridge_id"], first["rows"][0]["bridge_id"]);

    let bridges = sim.bridges();
    assert_eq!(bridges.len(), 1, "one bridge however often we provision");
    let keys = WebhookKeys::new("whsec-test-secret".into(), None);
    assert_eq!(
        bridges[0].webhook_url,
        keys.webhook_url("https://ingest.example", &t("acme"))
    );
    let stored = row(&pool, "acme").await;
    assert_eq!(stored.bridge_id.map(BridgeId::get), Some(bridges[0].id));
    assert_eq!(stored.bridge_state.as_str(), "running");
    let printed = serde_json::to_string(&[first, second, third]).unwrap();
    assert!(
        !printed.contains(&keys.token_for(&t("acme"))),
        "the webhook token is never printed"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn interrupted_bulk_provisioning_resumes_where_it_stopped(pool: PgPool) {
    let sim = sim().await;
    // Two provisions a minute: the third waits for Retry-After, and we interrupt it there.
    sim.set_limits(Limits {
        provision: 2,
        window_ms: 60_000,
        ..Limits::unlimited()
    });
    let ids = ["t1", "t2", "t3", "t4", "t5", "t6"];
    tenants_named(&pool, &ids).await;
    let chosen: Vec<TenantId> = ids.iter().map(|i| t(i)).collect();
    let client = WaBridgesClient::new(sim.client_settings()).unwrap();
    let target = WebhookTarget {
        keys: WebhookKeys::new("whsec-test-secret".into(), None),
        public_url: switchyard_shared::public_url::PublicUrl::parse(
            "https://ingest.example",
            false,
        )
        .unwrap(),
    };
    let stop = CancellationToken::new();
    let run = {
        let (pool, client, target, chosen, stop) = (
            pool.clone(),
            client.clone(),
            target.clone(),
            chosen.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            provision::provision(&pool, &client, &target, &chosen, &stop, |_| {}).await
        })
    };
    poll::until(
        "two tenants provisioned",
        Duration::from_secs(10),
        || async {
            let done = tenants::list(&pool)
                .await
                .unwrap()
                .iter()
                .filter(|r| r.bridge_id.is_some())
                .count();
            (done == 2).then_some(())
        },
    )
    .await;
    stop.cancel(); // Ctrl-C: between tenants or during the Retry-After wait
    let report = run.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.exit(), Exit::Interrupted);
    assert_eq!(report.not_reached.len(), 4);

    // Re-run the same command with a short window: it finishes the job.
    sim.set_limits(Limits {
        provision: 2,
        window_ms: 300,
        ..Limits::unlimited()
    });
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    let mut args = vec!["fleet", "provision"];
    args.extend(ids);
    let (exit, rerun) = run_json(&args, &env).await;
    assert_eq!(exit, Exit::Ok, "{rerun}");
    let outcomes: Vec<&str> = rerun["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "skipped",
            "skipped",
            "provisioned",
            "provisioned",
            "provisioned",
            "provisioned"
        ]
    );
    assert!(
        rerun["rate_limited_waits"].as_u64().unwrap() >= 1,
        "the limit was met and honoured"
    );
    let mut refs: Vec<String> = sim.bridges().into_iter().map(|b| b.customer_ref).collect();
    refs.sort();
    assert_eq!(refs, ids, "exactly one bridge per tenant");
    for id in ids {
        assert_eq!(
            row(&pool, id).await.bridge_id.map(BridgeId::get),
            sim.bridge(id).map(|b| b.id)
        );
    }
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn reconcile_reports_orphans_missing_bridges_and_drift_records_state_and_deletes_nothing(
    pool: PgPool,
) {
    let sim = sim().await;
    tenants_named(&pool, &["in-sync", "connected", "never", "gone", "adopt"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    let (exit, _) = run_json(&["fleet", "provision", "in-sync", "connected"], &env).await;
    assert_eq!(exit, Exit::Ok);
    tenants::set_bridge_state(
        &pool,
        &t("connected"),
        &switchyard_shared::bridge_state::BridgeState::Connected,
    )
    .await
    .unwrap();
    tenants::set_bridge(
        &pool,
        &t("gone"),
        BridgeId::new(9_999).unwrap(),
        &switchyard_shared::bridge_state::BridgeState::Connected,
    )
    .await
    .unwrap();
    let adopted = sim.seed_bridge("adopt", "https://ingest.example/hook/adopt/x");
    sim.seed_bridge("stranger", "https://elsewhere.example/hook");
    sim.seed_bridge("Legacy.Shop", "https://elsewhere.example/hook");

    let (exit, report) = run_json(&["fleet", "reconcile"], &env).await;
    assert_eq!(exit, Exit::Drift, "{report}");
    let refs = |key: &str, field: &str| -> Vec<String> {
        let mut v: Vec<String> = report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[field].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(refs("orphans", "customer_ref"), ["Legacy.Shop", "stranger"]);
    assert_eq!(refs("missing", "tenant"), ["gone", "never"]);
    assert_eq!(refs("drift", "tenant"), ["adopt"]);
    assert_eq!(report["rows_updated"], 2);
    assert_eq!(sim.bridges().len(), 5, "reconcile deletes nothing");
    assert_eq!(
        row(&pool, "adopt").await.bridge_id.map(BridgeId::get),
        Some(adopted.id)
    );
    assert_eq!(
        row(&pool, "gone").await.bridge_state,
        switchyard_shared::bridge_state::BridgeState::Missing
    );
    assert_eq!(
        row(&pool, "connected").await.bridge_state.as_str(),
        "connected",
        "session state kept"
    );

    // Twice at once: both succeed, nothing is updated twice, orphans still reported.
    let (a, b) = tokio::join!(
        run_json(&["fleet", "reconcile"], &env),
        run_json(&["fleet", "reconcile"], &env)
    );
    for (exit, again) in [a, b] {
        assert_eq!(exit, Exit::Drift);
        assert_eq!(again["drift"].as_array().unwrap().len(), 0, "{again}");
        assert_eq!(again["rows_updated"], 0);
    }
    assert_eq!(sim.bridges().len(), 5);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn reconcile_exits_zero_when_the_fleet_matches_the_table(pool: PgPool) {
    let sim = sim().await;
    tenants_named(&pool, &["a", "b"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "--all"], &env).await;
    let (exit, report) = run_json(&["fleet", "reconcile"], &env).await;
    assert_eq!(exit, Exit::Ok, "{report}");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn reconcile_watch_serves_its_counts_on_metrics_until_stopped(pool: PgPool) {
    let sim = sim().await;
    sim.seed_bridge("stranger", "https://elsewhere.example/hook");
    let port = nats_server::free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = Env::from_map([("SWITCHYARD_OPS_ADDR", addr.as_str())]);
    let client = WaBridgesClient::new(sim.client_settings()).unwrap();
    let stop = CancellationToken::new();
    let watch = {
        let (pool, stop) = (pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut out = Output::new(true, Box::new(std::io::sink()));
            reconcile::watch(
                &pool,
                &client,
                &env,
                Duration::from_millis(100),
                None,
                &stop,
                &mut out,
            )
            .await
        })
    };
    let url = format!("http://{addr}/metrics");
    poll::until(
        "the orphan gauge on /metrics",
        Duration::from_secs(10),
        || async {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            text.lines()
                .any(|l| l == "switchyard_fleet_orphans 1")
                .then_some(())
        },
    )
    .await;
    stop.cancel();
    let exit = watch.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        exit,
        Exit::Drift,
        "the last run's finding decides the exit code"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn summary_counts_bridges_by_state_and_prices_the_active_ones(pool: PgPool) {
    let sim = sim().await;
    tenants_named(&pool, &["up", "down", "new", "none"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "up", "down", "new"], &env).await;
    tenants::set_bridge_state(
        &pool,
        &t("up"),
        &switchyard_shared::bridge_state::BridgeState::Connected,
    )
    .await
    .unwrap();
    tenants::set_bridge_state(
        &pool,
        &t("down"),
        &switchyard_shared::bridge_state::BridgeState::Disconnected,
    )
    .await
    .unwrap();
    sim.seed_bridge("stranger", "https://elsewhere.example/hook");

    let (exit, s) = run_json(&["fleet", "summary"], &env).await;
    assert_eq!(exit, Exit::Ok);
    assert_eq!(
        s,
        serde_json::json!({
            "paired_healthy": 1, "awaiting_pairing": 1, "disconnected": 1, "other": 0,
            "orphaned": 1, "tenants_without_bridge": 1, "active_bridges": 4,
            "monthly_cost_cents": 1200, "suspended_running": 0, "wasted_monthly_cents": 300
        })
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn fleet_delete_removes_only_the_named_tenants_bridge(pool: PgPool) {
    let sim = sim().await;
    tenants_named(&pool, &["keep", "drop"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "keep", "drop"], &env).await;

    let (exit, _) = run_json(&["fleet", "delete", "nobody", "--yes"], &env).await;
    assert_eq!(exit, Exit::Usage, "an unknown tenant is refused");
    let (exit, report) = run_json(&["fleet", "delete", "drop", "--yes"], &env).await;
    assert_eq!(exit, Exit::Ok, "{report}");
    assert_eq!(report["deleted_at_provider"], true);
    let left: Vec<String> = sim.bridges().into_iter().map(|b| b.customer_ref).collect();
    assert_eq!(left, ["keep"]);
    let dropped = row(&pool, "drop").await;
    assert_eq!(
        (dropped.bridge_id, dropped.bridge_state.as_str()),
        (None, "unprovisioned")
    );
    assert!(row(&pool, "keep").await.bridge_id.is_some());
}

/// A Cloud API tenant has no bridge by design: the fleet commands neither
/// provision one for it (refused by name, skipped by `--all`) nor count it
/// as a tenant without a bridge.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_fleet_leaves_cloud_api_tenants_alone(pool: PgPool) {
    let sim = sim().await;
    tenants_named(&pool, &["acme"]).await;
    crate::cloud_support::cloud_tenant(&pool, "umbrella", "PN1", "WABA1", "tok-u").await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));

    let (exit, named) = run_json(&["fleet", "provision", "umbrella"], &env).await;
    assert_eq!(exit, Exit::Usage, "{named}");
    let (exit, all) = run_json(&["fleet", "provision", "--all"], &env).await;
    assert_eq!(exit, Exit::Ok, "{all}");
    let provisioned: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["tenant"].as_str())
        .collect();
    assert_eq!(provisioned, ["acme"]);
    assert!(sim.bridges().iter().all(|b| b.customer_ref != "umbrella"));
    let (_, summary) = run_json(&["fleet", "summary"], &env).await;
    assert_eq!(summary["tenants_without_bridge"], 0, "{summary}");
    let (_, report) = run_json(&["fleet", "reconcile"], &env).await;
    assert!(!report.to_string().contains("umbrella"), "{report}");
}
