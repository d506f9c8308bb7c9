//! The fleet's lifecycle commands against the WA Bridges simulator: `fleet
//! pair` (link code here, the QR code in `cli_fleet_pair_qr`; only for
//! bridges that need it), `fleet stuck` (awaiting pairing or disconnected
//! beyond a threshold), and `fleet delete --orphan` (only bridges no tenant
//! owns, checked right before deleting, paced under the provider's limit, dry
//! run first).

use crate::cli_support::{SIM_KEY, add_tenant, run, run_json, t, vars};
use sqlx::PgPool;
use switchyard_bridge_sim::{Limits, Session, SimConfig, SimHandle};
use switchyard_cli::exit::Exit;
use switchyard_shared::{
    bridge_state::BridgeState,
    tenants::{self, BotKind},
};
use switchyard_tests::services;

/// A simulator whose new bridges wait for pairing, as real ones do.
pub(crate) async fn unpaired_sim() -> SimHandle {
    let mut config = SimConfig::new(SIM_KEY);
    config.auto_connect = false;
    SimHandle::start(config).await.unwrap()
}

pub(crate) async fn tenants_named(pool: &PgPool, ids: &[&str]) {
    for id in ids {
        add_tenant(pool, id, BotKind::Echo, serde_json::json!({})).await;
    }
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn pair_by_link_code_pairs_an_unpaired_bridge_and_refuses_a_connected_one(pool: PgPool) {
    let sim = unpaired_sim().await;
    tenants_named(&pool, &["acme", "fresh"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    let (exit, _) = run_json(&["fleet", "provision", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok);

    let (exit, dry) = run_json(
        &[
            "fleet",
            "pair",
            "acme",
            "--phone",
            "+1 555 000 1234",
            "--dry-run",
        ],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{dry}");
    assert_eq!(dry["method"], "dry_run");
    assert_eq!(dry["session"], "unpaired");
    assert_eq!(sim.bridge("acme").unwrap().session, Session::Unpaired);

    let (exit, paired) = run_json(
        &["fleet", "pair", "acme", "--phone", "+1 555 000 1234"],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{paired}");
    assert_eq!(paired["method"], "link_code");
    assert_eq!(paired["phone"], "15550001234");
    let code = paired["code"].as_str().unwrap();
    assert!(
        code.len() == 9 && code.as_bytes()[4] == b'-',
        "a link code like ABCD-EFGH: {code}"
    );
    let bridge = sim.bridge("acme").unwrap();
    assert_eq!(bridge.session, Session::Connected);
    assert_eq!(bridge.phone.as_deref(), Some("15550001234"));

    let (exit, text) = run(&["fleet", "pair", "acme", "--phone", "15550001234"], &env).await;
    assert_eq!(
        exit,
        Exit::Usage,
        "a connected bridge needs no pairing: {text}"
    );
    let (exit, _) = run(&["fleet", "pair", "fresh", "--phone", "15550001234"], &env).await;
    assert_eq!(
        exit,
        Exit::Usage,
        "a tenant without a bridge is told to provision"
    );
    let (exit, _) = run(&["fleet", "pair", "nobody", "--phone", "15550001234"], &env).await;
    assert_eq!(exit, Exit::Usage, "an unknown tenant is refused");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn pair_waits_out_the_providers_rate_limit(pool: PgPool) {
    let sim = unpaired_sim().await;
    tenants_named(&pool, &["acme"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "acme"], &env).await;
    // One data-plane call per window: the status check uses it, pairing waits.
    sim.set_limits(Limits {
        proxy: 1,
        window_ms: 400,
        ..Limits::unlimited()
    });
    let (exit, paired) = run_json(&["fleet", "pair", "acme", "--phone", "15550001234"], &env).await;
    assert_eq!(exit, Exit::Ok, "{paired}");
    assert!(
        paired["rate_limited_waits"].as_u64().unwrap() >= 1,
        "{paired}"
    );
    assert_eq!(sim.bridge("acme").unwrap().session, Session::Connected);
}

async fn set_state_since(pool: &PgPool, tenant: &str, state: &BridgeState, ago: &str) {
    sqlx::query(
        "UPDATE tenants SET bridge_state = $2, bridge_state_at = now() - $3::interval WHERE id = $1",
    )
    .bind(tenant)
    .bind(state.as_str())
    .bind(ago)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn stuck_lists_unpaired_and_disconnected_bridges_beyond_the_threshold(pool: PgPool) {
    let sim = unpaired_sim().await;
    let ids = ["healthy", "unscanned", "dropped", "recent", "odd", "none"];
    tenants_named(&pool, &ids).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(
        &[
            "fleet",
            "provision",
            "healthy",
            "unscanned",
            "dropped",
            "recent",
            "odd",
        ],
        &env,
    )
    .await;
    set_state_since(&pool, "healthy", &BridgeState::Connected, "3 days").await;
    set_state_since(&pool, "unscanned", &BridgeState::Running, "2 days").await;
    set_state_since(&pool, "dropped", &BridgeState::Disconnected, "30 hours").await;
    tenants::mark_paired(&pool, &t("dropped")).await.unwrap();
    set_state_since(&pool, "recent", &BridgeState::Disconnected, "2 hours").await;
    set_state_since(
        &pool,
        "odd",
        &BridgeState::Other("unpaired".into()),
        "25 hours",
    )
    .await;
    // No provider address: listing reads the tenants table only.
    let env = vars(&services::database_url(&pool), None, None);

    let (exit, report) = run_json(&["fleet", "stuck"], &env).await;
    assert_eq!(exit, Exit::Drift, "stuck bridges exist: {report}");
    let found: Vec<(&str, &str)> = report["stuck"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["tenant"].as_str().unwrap(), s["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        found,
        [
            ("unscanned", "awaiting_pairing"),
            ("dropped", "disconnected"),
            ("odd", "awaiting_pairing")
        ],
        "longest first; connected, recent and bridgeless tenants are not stuck"
    );
    let dropped = &report["stuck"][1];
    assert_eq!(dropped["ever_paired"], true);
    let secs = dropped["for_seconds"].as_u64().unwrap();
    assert!((30 * 3600..31 * 3600).contains(&secs), "{secs}");
    assert_eq!(report["older_than_seconds"], 24 * 3600);

    let (exit, report) = run_json(&["fleet", "stuck", "--older-than", "1h"], &env).await;
    assert_eq!(exit, Exit::Drift);
    assert_eq!(report["stuck"].as_array().unwrap().len(), 4);
    let (exit, text) = run(&["fleet", "stuck", "--older-than", "7d"], &env).await;
    assert_eq!(exit, Exit::Ok, "{text}");
    assert!(text.contains("0 bridge(s) stuck"), "{text}");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn delete_orphan_deletes_only_bridges_no_tenant_owns(pool: PgPool) {
    let sim = unpaired_sim().await;
    tenants_named(&pool, &["acme", "renamed"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "acme"], &env).await;
    let ghost = sim.seed_bridge("ghost", "https://old.example/hook").id;
    let other = sim.seed_bridge("old-ref", "https://old.example/hook").id;
    // A tenant row that holds a bridge under another customer_ref owns it too.
    sqlx::query("UPDATE tenants SET bridge_id = $1 WHERE id = 'renamed'")
        .bind(other)
        .execute(&pool)
        .await
        .unwrap();
    let acme = sim.bridge("acme").unwrap().id;
    let ids = [ghost, acme, other, 999].map(|i| i.to_string());
    let mut args = vec!["fleet", "delete", "--orphan"];
    args.extend(ids.iter().map(String::as_str));

    let (exit, _) = run_json(&args, &env).await;
    assert_eq!(
        exit,
        Exit::Usage,
        "no terminal and no --yes: refused before any call"
    );
    assert_eq!(sim.bridges().len(), 3);

    let mut dry = args.clone();
    dry.push("--dry-run");
    let (exit, report) = run_json(&dry, &env).await;
    assert_eq!(exit, Exit::Partial, "owned bridges are refused: {report}");
    assert_eq!(report["rows"][0]["outcome"], "would_delete");
    assert_eq!(report["monthly_saving_cents"], 300);
    assert_eq!(sim.bridges().len(), 3, "a dry run deletes nothing");

    let mut real = args.clone();
    real.push("--yes");
    let (exit, report) = run_json(&real, &env).await;
    assert_eq!(exit, Exit::Partial, "{report}");
    let outcomes: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["deleted", "refused", "refused", "gone"]);
    assert_eq!(report["rows"][1]["owner"], "acme");
    assert_eq!(report["rows"][2]["owner"], "renamed");
    let mut left: Vec<String> = sim.bridges().into_iter().map(|b| b.customer_ref).collect();
    left.sort();
    assert_eq!(left, ["acme", "old-ref"]);

    let (exit, text) = run(
        &["fleet", "delete", "--orphan", &ghost.to_string(), "--yes"],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "re-running is harmless: {text}");
    assert!(text.contains("gone"), "{text}");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn delete_orphan_is_paced_under_the_providers_limit(pool: PgPool) {
    let sim = unpaired_sim().await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    let ids: Vec<String> = (0..3)
        .map(|i| {
            sim.seed_bridge(&format!("ghost{i}"), "https://old.example/hook")
                .id
                .to_string()
        })
        .collect();
    sim.set_limits(Limits {
        api: 2,
        window_ms: 300,
        ..Limits::unlimited()
    });
    let mut args = vec!["fleet", "delete", "--yes", "--orphan"];
    args.extend(ids.iter().map(String::as_str));
    let (exit, report) = run_json(&args, &env).await;
    assert_eq!(exit, Exit::Ok, "{report}");
    assert!(
        report["rate_limited_waits"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(sim.bridges().is_empty());
    assert_eq!(report["monthly_saving_cents"], 900);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn summary_and_reconcile_price_orphans_and_suspended_tenants_running_bridges(pool: PgPool) {
    let sim = unpaired_sim().await;
    tenants_named(&pool, &["served", "paused"]).await;
    let env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    run_json(&["fleet", "provision", "served", "paused"], &env).await;
    tenants::set_status(&pool, &t("paused"), tenants::TenantStatus::Suspended)
        .await
        .unwrap();
    sim.seed_bridge("ghost", "https://old.example/hook");
    let paused_bridge = sim.bridge("paused").unwrap().id;

    let (exit, s) = run_json(&["fleet", "summary"], &env).await;
    assert_eq!(exit, Exit::Ok, "{s}");
    assert_eq!(s["active_bridges"], 3);
    assert_eq!(s["monthly_cost_cents"], 900);
    assert_eq!(s["orphaned"], 1);
    assert_eq!(s["suspended_running"], 1);
    assert_eq!(s["wasted_monthly_cents"], 600);
    let (_, text) = run(&["fleet", "summary"], &env).await;
    assert!(
        text.contains("of which $6.00/month on bridges serving nobody"),
        "{text}"
    );

    let (exit, report) = run_json(&["fleet", "reconcile"], &env).await;
    assert_eq!(exit, Exit::Drift, "the orphan is drift: {report}");
    assert_eq!(
        report["spending"],
        serde_json::json!({
            "orphans_running": 1,
            "suspended_running": [{"tenant": "paused", "bridge_id": paused_bridge}],
            "wasted_monthly_cents": 600
        })
    );
    let (_, text) = run(&["fleet", "reconcile"], &env).await;
    assert!(text.contains("= $6.00/month"), "{text}");
    assert!(text.contains("suspended, running"), "{text}");
}

/// `env` with the webhook secret rotated to `secret`.
fn rotated(env: &[(String, String)], secret: &str) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| {
            if k == "SWITCHYARD_WEBHOOK_SECRET" {
                (k.clone(), secret.to_owned())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn repoint_resends_the_new_url_and_says_what_to_do_when_the_provider_keeps_the_old(
    pool: PgPool,
) {
    use switchyard_shared::webhook_auth::WebhookKeys;
    // This simulator behaves like a provider that updates the URL on a repeat POST.
    let mut config = SimConfig::new(SIM_KEY);
    config.update_webhook_on_reprovision = true;
    let updating = SimHandle::start(config).await.unwrap();
    // And this one (the default) like one that keeps the first URL.
    let keeping = unpaired_sim().await;
    tenants_named(&pool, &["acme", "nobridge"]).await;
    let db = services::database_url(&pool);
    let new_keys = WebhookKeys::new("whsec-rotated".into(), None);
    let new_url = new_keys.webhook_url("https://ingest.example", &t("acme"));

    for (sim, updates) in [(&updating, true), (&keeping, false)] {
        let env = vars(&db, None, Some(&sim.base_url()));
        sqlx::query("UPDATE tenants SET bridge_id = NULL")
            .execute(&pool)
            .await
            .unwrap();
        run_json(&["fleet", "provision", "acme"], &env).await;
        let old_url = sim.bridge("acme").unwrap().webhook_url;
        let env = rotated(&env, "whsec-rotated");

        let (exit, dry) = run_json(&["fleet", "repoint", "--all", "--dry-run"], &env).await;
        assert_eq!(exit, Exit::Ok, "{dry}");
        assert_eq!(dry["rows"][0]["outcome"], "would_resend");
        assert_eq!(sim.bridge("acme").unwrap().webhook_url, old_url);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("urls.tsv");
        let (exit, report) = run_json(
            &[
                "fleet",
                "repoint",
                "acme",
                "nobridge",
                "--urls-to",
                file.to_str().unwrap(),
            ],
            &env,
        )
        .await;
        assert_eq!(exit, Exit::Ok, "{report}");
        assert_eq!(report["rows"][0]["outcome"], "resent");
        assert!(
            report["rows"][0]["operator_action"]
                .as_str()
                .unwrap()
                .contains("dashboard"),
            "{report}"
        );
        assert_eq!(report["rows"][1]["outcome"], "skipped");
        let printed = report.to_string();
        assert!(
            !printed.contains(&new_keys.token_for(&t("acme"))),
            "the new token is never printed"
        );
        let bridge = sim.bridge("acme").unwrap();
        let written = std::fs::read_to_string(&file).unwrap();
        assert_eq!(written, format!("{}\tacme\t{new_url}\n", bridge.id));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the URL file is the owner's only");
        }
        let expected = if updates { &new_url } else { &old_url };
        assert_eq!(&bridge.webhook_url, expected, "updates: {updates}");
        assert_eq!(sim.bridges().len(), 1, "repointing never creates a bridge");
    }
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn stuck_notify_tells_each_stuck_tenant_with_a_url_once_a_day(pool: PgPool) {
    use switchyard_shared::{notifications::target, subjects};
    let sim = unpaired_sim().await;
    let nats = switchyard_tests::nats_server::NatsServer::start();
    let (_client, js) = switchyard_tests::fixtures::jetstream_with_streams(&nats.url(), 1).await;
    tenants_named(&pool, &["unscanned", "quiet", "healthy"]).await;
    let env = vars(
        &services::database_url(&pool),
        Some(&nats.url()),
        Some(&sim.base_url()),
    );
    run_json(
        &["fleet", "provision", "unscanned", "quiet", "healthy"],
        &env,
    )
    .await;
    set_state_since(&pool, "unscanned", &BridgeState::Running, "2 days").await;
    set_state_since(&pool, "quiet", &BridgeState::Disconnected, "3 days").await;
    set_state_since(&pool, "healthy", &BridgeState::Connected, "3 days").await;
    for tenant in ["unscanned", "healthy"] {
        target::set_url(
            &pool,
            &t(tenant),
            "https://hooks.example/switchyard",
            &target::generate_secret(),
        )
        .await
        .unwrap();
    }

    // Listing alone tells nobody.
    run_json(&["fleet", "stuck"], &env).await;
    let stream = js.get_stream(subjects::NOTIFY_STREAM).await.unwrap();
    assert_eq!(stream.get_info().await.unwrap().state.messages, 0);

    for _ in 0..2 {
        let (exit, report) = run_json(&["fleet", "stuck", "--notify"], &env).await;
        assert_eq!(exit, Exit::Drift, "{report}");
        assert_eq!(
            report["notified"]["told"],
            serde_json::json!(["unscanned"]),
            "{report}"
        );
        assert_eq!(report["notified"]["no_url"], serde_json::json!(["quiet"]));
        assert_eq!(report["notified"]["failed"], serde_json::json!([]));
    }
    let state = js
        .get_stream(subjects::NOTIFY_STREAM)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state;
    assert_eq!(
        state.messages, 1,
        "told once for the episode and the day, however often it runs"
    );
    // Stored under the stream's partitioned subject; the message is the one there is.
    let stored = stream.get_raw_message(state.first_sequence).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(body["type"], "pairing.stuck", "{body}");
    assert_eq!(body["tenant"], "unscanned");
    assert_eq!(body["data"]["kind"], "awaiting_pairing");
    assert!(body["data"]["for_seconds"].as_u64().unwrap() >= 2 * 86_400 - 60);
    let (_, text) = run(&["fleet", "stuck", "--notify"], &env).await;
    assert!(text.contains("told (pairing.stuck): unscanned"), "{text}");
    assert!(
        text.contains("not told, no notification URL: quiet"),
        "{text}"
    );
}
