//! `tenants remove`: the offboarding path against the simulator and a real
//! NATS: asks first, dry run changes nothing, suspend → drain → bridge →
//! data, resumable (a re-run finds every step done), `--purge` erases the
//! tenant's messages and rows and nobody else's.

use std::time::Duration;

use crate::cli_support::{SIM_KEY, add_tenant, run_json, t, vars};
use async_nats::jetstream;
use sqlx::PgPool;
use switchyard_bridge_sim::{SimConfig, SimHandle};
use switchyard_cli::exit::Exit;
use switchyard_shared::{
    config::{Env, NatsSettings},
    streams, subjects,
    tenants::{self, BotKind, TenantStatus},
};
use switchyard_tests::{nats_server::NatsServer, services, traffic};

async fn jetstream_with_streams(nats: &NatsServer) -> jetstream::Context {
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    let settings =
        NatsSettings::from_env(&Env::from_map([("SWITCHYARD_PARTITIONS", "4")])).unwrap();
    streams::ensure_streams(&js, &settings).await.unwrap();
    js
}

async fn delivery(pool: &PgPool, tenant: &str, reply: &str, status: &str) {
    sqlx::query(
        "INSERT INTO deliveries (tenant_id, reply_id, chat_id, status) VALUES ($1, $2, '15550001234', $3)",
    )
    .bind(tenant)
    .bind(reply)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO inbound_event_keys (tenant_id, event_id) VALUES ($1, $2)")
        .bind(tenant)
        .bind(reply)
        .execute(pool)
        .await
        .unwrap();
}

async fn status_of(pool: &PgPool, tenant: &str, reply: &str) -> String {
    sqlx::query_scalar("SELECT status FROM deliveries WHERE tenant_id = $1 AND reply_id = $2")
        .bind(tenant)
        .bind(reply)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn outcomes(report: &serde_json::Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["step"].as_str().unwrap(),
                s["outcome"].as_str().unwrap()
            )
        })
        .collect()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn remove_suspends_drains_deletes_the_bridge_keeps_or_purges_data_and_resumes(pool: PgPool) {
    let mut config = SimConfig::new(SIM_KEY);
    config.auto_connect = false;
    let sim = SimHandle::start(config).await.unwrap();
    let nats = NatsServer::start();
    let js = jetstream_with_streams(&nats).await;
    for id in ["acme", "globex"] {
        add_tenant(&pool, id, BotKind::Echo, serde_json::json!({})).await;
    }
    let env = vars(
        &services::database_url(&pool),
        Some(&nats.url()),
        Some(&sim.base_url()),
    );
    let (exit, _) = run_json(&["fleet", "provision", "acme", "globex"], &env).await;
    assert_eq!(exit, Exit::Ok);
    delivery(&pool, "acme", "r-open", "sending").await;
    delivery(&pool, "acme", "r-done", "wired").await;
    delivery(&pool, "globex", "g-open", "sending").await;
    for tenant in ["acme", "globex"] {
        js.publish(format!("dlq.outbound.{tenant}"), "letter".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let (exit, _) = run_json(&["tenants", "remove", "acme"], &env).await;
    assert_eq!(exit, Exit::Usage, "no terminal, no --yes: refused");

    let (exit, dry) = run_json(&["tenants", "remove", "acme", "--purge", "--dry-run"], &env).await;
    assert_eq!(exit, Exit::Ok, "{dry}");
    assert_eq!(
        outcomes(&dry),
        ["suspend:would", "drain:would", "bridge:would", "data:would"]
    );
    let row = tenants::fetch(&pool, &t("acme")).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        TenantStatus::Active,
        "a dry run changes nothing"
    );
    assert_eq!(sim.bridges().len(), 2);

    let (exit, first) = run_json(
        &[
            "tenants",
            "remove",
            "acme",
            "--yes",
            "--drain-timeout",
            "300ms",
        ],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{first}");
    assert_eq!(
        outcomes(&first),
        ["suspend:done", "drain:done", "bridge:done", "data:kept"]
    );
    let row = tenants::fetch(&pool, &t("acme")).await.unwrap().unwrap();
    assert_eq!(row.status, TenantStatus::Suspended);
    assert_eq!(row.bridge_id, None);
    let left: Vec<String> = sim.bridges().into_iter().map(|b| b.customer_ref).collect();
    assert_eq!(
        left,
        ["globex"],
        "only the removed tenant's bridge is deleted"
    );
    assert_eq!(
        status_of(&pool, "acme", "r-open").await,
        "dead",
        "an attempt left open is dead"
    );
    assert_eq!(status_of(&pool, "acme", "r-done").await, "wired");
    assert_eq!(
        status_of(&pool, "globex", "g-open").await,
        "sending",
        "others untouched"
    );

    let (exit, again) = run_json(&["tenants", "remove", "acme", "--yes"], &env).await;
    assert_eq!(exit, Exit::Ok, "{again}");
    assert_eq!(
        outcomes(&again),
        [
            "suspend:already",
            "drain:already",
            "bridge:already",
            "data:kept"
        ],
        "a re-run finds every step done"
    );

    let (exit, purged) = run_json(&["tenants", "remove", "acme", "--yes", "--purge"], &env).await;
    assert_eq!(exit, Exit::Ok, "{purged}");
    assert_eq!(outcomes(&purged).last().unwrap(), "data:done");
    assert!(tenants::fetch(&pool, &t("acme")).await.unwrap().is_none());
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT tenant_id FROM inbound_event_keys ORDER BY tenant_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(keys, ["globex"]);
    let deliveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE tenant_id = 'acme'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(deliveries, 0);
    assert!(
        traffic::read_stream(&js, subjects::DLQ_STREAM, "dlq.*.acme")
            .await
            .is_empty()
    );
    assert_eq!(
        traffic::read_stream(&js, subjects::DLQ_STREAM, "dlq.*.globex")
            .await
            .len(),
        1,
        "another tenant's dead letters stay"
    );

    let (exit, _) = run_json(&["tenants", "remove", "acme", "--yes"], &env).await;
    assert_eq!(exit, Exit::Usage, "a purged tenant is gone");
}
