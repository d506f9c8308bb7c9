//! `switchyard tenants rotate-webhook` against real ingest replicas, the
//! simulator and NATS: one tenant's URL is rotated, its old URL is accepted
//! for the window and refused after it on every replica (which learn of the
//! rotation from the announcement, not from their cache TTL, set to an hour
//! here), its bridge is re-pointed, and another tenant's URL never changes.
//! `--window 0` revokes at once. The public base URL must be `https` except
//! on loopback or in development.

use std::time::{Duration, Instant};

use crate::{
    cli_support::{SIM_KEY, add_tenant, run, run_json, t, vars},
    ingest_support::{self, Harness, message},
};
use reqwest::StatusCode;
use sqlx::PgPool;
use switchyard_bridge_sim::{SimConfig, SimHandle};
use switchyard_cli::exit::Exit;
use switchyard_shared::{
    tenants::{self, BotKind},
    webhook_auth::{Generation, WebhookKeys},
};
use switchyard_tests::{poll, services};

/// Caches that never expire within a test: only the announcement can tell a
/// replica about a rotation.
const NO_TTL: &[(&str, &str)] = &[("SWITCHYARD_TENANT_CACHE_TTL", "1h")];

/// The CLI's environment for `h`'s ingest: its secret and base URL (plain
/// http on loopback), its NATS server, the simulator.
fn cli_env(pool: &PgPool, h: &Harness, sim: Option<&SimHandle>) -> Vec<(String, String)> {
    let sim_url = sim.map(SimHandle::base_url);
    let mut env = vars(
        &services::database_url(pool),
        Some(&h.nats.url()),
        sim_url.as_deref(),
    );
    for (k, v) in &mut env {
        match k.as_str() {
            "SWITCHYARD_WEBHOOK_SECRET" => *v = ingest_support::SECRET.to_owned(),
            "SWITCHYARD_PUBLIC_URL" => *v = h.base.clone(),
            _ => {}
        }
    }
    env
}

/// A simulator that, like a provider that updates a URL on a repeated
/// provisioning call, follows the re-pointing.
async fn updating_sim() -> SimHandle {
    let mut config = SimConfig::new(SIM_KEY);
    config.update_webhook_on_reprovision = true;
    SimHandle::start(config).await.unwrap()
}

/// Posts a fresh message to `url`; the status.
async fn status_of(h: &Harness, url: &str, id: &str) -> StatusCode {
    h.post_to(url, message(id)).await.0
}

/// `url` on another replica's base.
fn on(base: &str, url: &str, h: &Harness) -> String {
    url.replacen(&h.base, base, 1)
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_rotated_url_is_accepted_beside_the_old_one_for_the_window_then_alone_and_others_are_untouched(
    pool: PgPool,
) {
    // Arrange: two ingest replicas, two tenants provisioned at the simulator.
    let h = Harness::start_with(pool.clone(), NO_TTL).await;
    let replica = h.start_replica(pool.clone(), NO_TTL).await;
    let sim = updating_sim().await;
    for id in ["acme", "globex"] {
        add_tenant(&pool, id, BotKind::Echo, serde_json::json!({})).await;
    }
    let env = cli_env(&pool, &h, Some(&sim));
    let (exit, provisioned) = run_json(&["fleet", "provision", "acme", "globex"], &env).await;
    assert_eq!(exit, Exit::Ok, "{provisioned}");
    let old_acme = sim.bridge("acme").unwrap().webhook_url;
    let globex = sim.bridge("globex").unwrap().webhook_url;
    assert_eq!(old_acme, h.hook_url("acme"), "generation 0 is today's URL");
    let mut n = 0;
    let mut next_id = || {
        n += 1;
        format!("ROT-{n}")
    };
    // Both replicas read both rows now, so their caches hold generation 0.
    for base in [&h.base, &replica] {
        for url in [&old_acme, &globex] {
            let status = status_of(&h, &on(base, url, &h), &next_id()).await;
            assert_eq!(status, StatusCode::OK, "{url} on {base} before");
        }
    }

    // A dry run changes nothing and calls nothing.
    let (exit, dry) = run_json(
        &[
            "tenants",
            "rotate-webhook",
            "acme",
            "--window",
            "5s",
            "--dry-run",
        ],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{dry}");
    assert_eq!(
        (
            dry["generation_before"].as_u64(),
            dry["generation"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(dry["bridge"]["outcome"], "would_resend");
    assert_eq!(sim.bridge("acme").unwrap().webhook_url, old_acme);
    let row = tenants::fetch(&pool, &t("acme")).await.unwrap().unwrap();
    assert_eq!(row.webhook.generation, Generation::ORIGINAL);
    // Without --yes and without a terminal, nothing happens either.
    let (exit, _) = run(&["tenants", "rotate-webhook", "acme"], &env).await;
    assert_eq!(exit, Exit::Usage);

    // Act: rotate acme with a short window.
    let window = Duration::from_secs(4);
    let rotated_at = Instant::now();
    let (exit, report) = run_json(
        &[
            "tenants",
            "rotate-webhook",
            "acme",
            "--window",
            "4s",
            "--yes",
        ],
        &env,
    )
    .await;

    // Assert: the report, the bridge and the new URL.
    assert_eq!(exit, Exit::Ok, "{report}");
    assert_eq!(report["generation"], 1);
    assert_eq!(report["bridge"]["outcome"], "resent");
    assert!(report["old_url_accepted_until"].is_string(), "{report}");
    let keys = WebhookKeys::new(ingest_support::SECRET.into(), None);
    let new_acme = keys.webhook_url_at(&h.base, &t("acme"), Generation::new(1));
    let new_token = keys.token_at(&t("acme"), Generation::new(1));
    let mac = new_token.split_once('.').unwrap().1;
    assert_eq!(
        report["url"],
        format!("{}/hook/acme/1.[redacted]", h.base),
        "the URL is printed without its token"
    );
    assert!(
        !report.to_string().contains(mac),
        "the token is never printed"
    );
    assert_ne!(new_acme, old_acme);
    assert_eq!(
        sim.bridge("acme").unwrap().webhook_url,
        new_acme,
        "the bridge is re-pointed"
    );
    assert_eq!(
        sim.bridge("globex").unwrap().webhook_url,
        globex,
        "globex's bridge untouched"
    );
    let delivered = sim
        .post_webhook(
            "acme",
            serde_json::json!({"event": "connected", "phone": "15550001234"}),
        )
        .await
        .unwrap();
    assert_eq!(
        delivered.status,
        Some(200),
        "the bridge's events arrive on the new URL"
    );

    // Within the window: new and old accepted. The second replica is shown
    // only the old URL until it refuses it (a newer token would make it
    // re-read the row by itself, hiding a lost announcement).
    assert_eq!(
        status_of(&h, &new_acme, &next_id()).await,
        StatusCode::OK,
        "new"
    );
    assert_eq!(
        status_of(&h, &old_acme, &next_id()).await,
        StatusCode::OK,
        "old within the window"
    );
    assert_eq!(
        status_of(&h, &on(&replica, &old_acme, &h), &next_id()).await,
        StatusCode::OK
    );
    assert!(
        rotated_at.elapsed() < window,
        "the checks above ran within the window"
    );

    // After the window: the old URL is refused on the second replica, whose
    // cache held generation 0 for an hour: the announcement reached it.
    let refused_at = poll::until(
        "the old URL to be refused on the replica",
        Duration::from_secs(30),
        || {
            let url = on(&replica, &old_acme, &h);
            let id = next_id();
            let h = &h;
            async move {
                let (status, body) = h.post_to(&url, message(&id)).await;
                (status == StatusCode::UNAUTHORIZED).then(|| (Instant::now(), body))
            }
        },
    )
    .await;
    assert!(
        refused_at.0.duration_since(rotated_at) + Duration::from_millis(500) >= window,
        "not refused before the window ends"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&refused_at.1).unwrap(),
        serde_json::json!({"error": "unauthorized"}),
        "the same answer as a forged token"
    );
    let (status, _) = h.post_to(&old_acme, message(&next_id())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "and on the first replica");
    for base in [&h.base, &replica] {
        for url in [&new_acme, &globex] {
            let status = status_of(&h, &on(base, url, &h), &next_id()).await;
            assert_eq!(status, StatusCode::OK, "{url} on {base} after the window");
        }
    }
    let row = tenants::fetch(&pool, &t("globex")).await.unwrap().unwrap();
    assert_eq!(
        row.webhook.generation,
        Generation::ORIGINAL,
        "globex never rotated"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn window_zero_revokes_the_old_url_at_once(pool: PgPool) {
    let h = Harness::start_with(pool.clone(), NO_TTL).await;
    add_tenant(&pool, "acme", BotKind::Echo, serde_json::json!({})).await;
    add_tenant(&pool, "globex", BotKind::Echo, serde_json::json!({})).await;
    let env = cli_env(&pool, &h, None);
    let old = h.hook_url("acme");
    assert_eq!(status_of(&h, &old, "W0-warm").await, StatusCode::OK);

    let started = Instant::now();
    let (exit, report) = run_json(
        &[
            "tenants",
            "rotate-webhook",
            "acme",
            "--window",
            "0",
            "--yes",
        ],
        &env,
    )
    .await;

    assert_eq!(exit, Exit::Ok, "{report}");
    assert!(report["old_url_accepted_until"].is_null(), "{report}");
    assert!(report["bridge"].is_null(), "acme has no bridge: {report}");
    let mut n = 0;
    poll::until("the old URL to be refused", Duration::from_secs(10), || {
        n += 1;
        let id = format!("W0-{n}");
        let (h, old) = (&h, &old);
        async move { (status_of(h, old, &id).await == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "at once, not at the cache TTL"
    );
    let new = WebhookKeys::new(ingest_support::SECRET.into(), None).webhook_url_at(
        &h.base,
        &t("acme"),
        Generation::new(1),
    );
    assert_eq!(status_of(&h, &new, "W0-new").await, StatusCode::OK);
    assert_eq!(
        status_of(&h, &h.hook_url("globex"), "W0-globex").await,
        StatusCode::OK
    );

    // Rotating again moves on one generation; the previous one gets the window.
    let (exit, again) = run_json(
        &[
            "tenants",
            "rotate-webhook",
            "acme",
            "--window",
            "1h",
            "--yes",
        ],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{again}");
    assert_eq!(again["generation"], 2);
    assert_eq!(
        status_of(&h, &new, "W0-new-again").await,
        StatusCode::OK,
        "1 is now the previous"
    );
    assert_eq!(
        status_of(&h, &old, "W0-old-again").await,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_plain_http_public_url_is_refused_outside_loopback_unless_development_allows_it(
    pool: PgPool,
) {
    let sim = updating_sim().await;
    add_tenant(&pool, "acme", BotKind::Echo, serde_json::json!({})).await;
    let mut env = vars(&services::database_url(&pool), None, Some(&sim.base_url()));
    for (k, v) in &mut env {
        if k == "SWITCHYARD_PUBLIC_URL" {
            *v = "http://ingest.example".to_owned();
        }
    }

    let (exit, _) = run(&["fleet", "provision", "acme"], &env).await;
    assert_eq!(exit, Exit::Failure, "a setting error");
    assert!(sim.bridge("acme").is_none(), "nothing was provisioned");
    let (exit, _) = run(&["tenants", "rotate-webhook", "acme", "--yes"], &env).await;
    assert_eq!(exit, Exit::Failure);
    let row = tenants::fetch(&pool, &t("acme")).await.unwrap().unwrap();
    assert_eq!(
        row.webhook.generation,
        Generation::ORIGINAL,
        "nothing rotated"
    );

    env.push((
        "SWITCHYARD_PUBLIC_URL_ALLOW_HTTP".to_owned(),
        "true".to_owned(),
    ));
    let (exit, report) = run_json(&["fleet", "provision", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok, "{report}");
    assert!(
        sim.bridge("acme")
            .unwrap()
            .webhook_url
            .starts_with("http://ingest.example/hook/acme/")
    );
}
