//! The setup most pipeline tests share: tenants with bridges on the
//! simulator, the streams, and the environment a sender under test needs
//! (fast retries and refreshes, the simulator as the provider).

use std::time::Duration;

use sqlx::PgPool;
use switchyard_bridge_sim::{Limits, SimConfig, SimHandle};
use switchyard_shared::{
    config::{Env, NatsSettings},
    ids::{BridgeId, TenantId},
    streams,
    tenants::{self, NewTenant},
};

use crate::services;

/// The API key every test simulator accepts.
pub const SIM_API_KEY: &str = "sk_test_fixture";

/// A simulator with the provider's limits lifted (tests that exercise the
/// limits configure their own).
pub async fn start_sim() -> SimHandle {
    let mut config = SimConfig::new(SIM_API_KEY);
    config.limits = Limits::unlimited();
    SimHandle::start(config).await.expect("simulator")
}

/// A tenant id from a literal.
pub fn tenant(raw: &str) -> TenantId {
    TenantId::parse(raw).expect("valid tenant id")
}

/// Inserts a tenant (defaults, then `customize`); panics if it exists.
pub async fn add_tenant(pool: &PgPool, id: &str, customize: impl FnOnce(&mut NewTenant)) {
    let mut new = NewTenant::with_defaults(tenant(id));
    customize(&mut new);
    assert!(
        tenants::insert(pool, &new).await.expect("insert tenant"),
        "tenant {id} exists already"
    );
}

/// Inserts a tenant whose own budget is out of the way, gives it a bridge on
/// the simulator and records that bridge on its row. The bridge's webhooks go
/// nowhere (see [`add_tenant_with_bridge_posting_to`] for a running ingest).
pub async fn add_tenant_with_bridge(
    pool: &PgPool,
    sim: &SimHandle,
    id: &str,
    customize: impl FnOnce(&mut NewTenant),
) {
    add_tenant_with_bridge_posting_to(pool, sim, id, "http://127.0.0.1:9/hook/unused", customize)
        .await;
}

/// [`add_tenant_with_bridge`], with a bridge that posts its webhooks (the
/// simulator's events, echoes, state changes) to `webhook_url`.
pub async fn add_tenant_with_bridge_posting_to(
    pool: &PgPool,
    sim: &SimHandle,
    id: &str,
    webhook_url: &str,
    customize: impl FnOnce(&mut NewTenant),
) {
    add_tenant(pool, id, |new| {
        new.limits.sends_per_minute = 100_000;
        new.limits.send_burst = 1000;
        customize(new);
    })
    .await;
    let bridge = sim.seed_bridge(id, webhook_url);
    tenants::set_bridge(
        pool,
        &tenant(id),
        BridgeId::new(bridge.id).expect("bridge id"),
        &switchyard_shared::bridge_state::BridgeState::Connected,
    )
    .await
    .expect("set bridge");
}

/// A JetStream context with every stream created as `settings` declare them
/// (R3 on a cluster), on a connection named `client_name`. A cluster that
/// has just formed may time out its first creates: retried for `deadline`.
pub async fn jetstream_with_streams_on_cluster(
    settings: &NatsSettings,
    client_name: &str,
    deadline: Duration,
) -> async_nats::jetstream::Context {
    crate::poll::until("the cluster to create the streams", deadline, || async {
        let client = switchyard_shared::nats::connect(settings, client_name)
            .await
            .ok()?;
        let js = streams::context(client, Duration::from_secs(5));
        streams::ensure_streams(&js, settings).await.ok()?;
        Some(js)
    })
    .await
}

/// A JetStream context on `nats_url` with every stream created for `partitions`.
pub async fn jetstream_with_streams(
    nats_url: &str,
    partitions: u16,
) -> (async_nats::Client, async_nats::jetstream::Context) {
    let client = async_nats::connect(nats_url).await.expect("connect");
    let js = streams::context(client.clone(), Duration::from_secs(5));
    let partitions = partitions.to_string();
    let settings = NatsSettings::from_env(&Env::from_map([(
        "SWITCHYARD_PARTITIONS",
        partitions.as_str(),
    )]))
    .expect("nats settings");
    streams::ensure_streams(&js, &settings)
        .await
        .expect("streams");
    (client, js)
}

/// The environment of a sender (or router, or ingest) under test, used by
/// every suite that starts one: the simulator of [`start_sim`] as the
/// provider, a local fleet budget far above what tests send, fast retries
/// and refreshes; `extra` comes last and wins.
pub fn sender_env(nats_url: &str, db_url: &str, sim: &SimHandle, extra: &[(&str, &str)]) -> Env {
    let base_url = sim.base_url();
    let mut vars = vec![
        ("WA_API_URL", base_url.as_str()),
        ("WA_API_KEY", SIM_API_KEY),
        ("SWITCHYARD_FLEET_MODE", "local"),
        ("SWITCHYARD_FLEET_CALLS_PER_MINUTE", "600000"),
        ("SWITCHYARD_SEND_RETRY_MIN_DELAY", "50ms"),
        ("SWITCHYARD_SEND_RETRY_MAX_DELAY", "200ms"),
        ("SWITCHYARD_TENANT_REFRESH", "1s"),
        // The services' default (30 s) leans on announcements; tests that
        // change a row by SQL, without one, get the old short bound.
        ("SWITCHYARD_TENANT_CACHE_TTL", "2s"),
    ];
    vars.extend_from_slice(extra);
    services::env(nats_url, db_url, &vars)
}
