//! Partition ownership across router processes: a killed replica's partitions
//! move to a survivor within 10 s and nothing is lost; a replica stopped with
//! SIGTERM hands its partitions over in under a second.

// Test helpers may unwrap: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::PgPool;
use switchyard_shared::{
    ids::TenantId,
    streams,
    tenants::{self, BotKind, NewTenant},
};
use switchyard_tests::{
    nats_server::{NatsServer, free_port},
    poll, services, traffic,
};

const PARTITIONS: &str = "4";

struct Replica {
    child: Child,
    ops: SocketAddr,
    name: String,
}

impl Replica {
    fn start(nats: &NatsServer, db_url: &str, name: &str) -> Self {
        let ops: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard-router"))
            .env("NATS_URL", nats.url())
            .env("DATABASE_URL", db_url)
            .env("SWITCHYARD_OPS_ADDR", ops.to_string())
            .env("SWITCHYARD_PARTITIONS", PARTITIONS)
            .env("SWITCHYARD_REPLICA_ID", name)
            .env("SWITCHYARD_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            ops,
            name: name.to_owned(),
        }
    }

    async fn owned(&self) -> f64 {
        let label = format!("replica=\"{}\"", self.name);
        match reqwest::get(format!("http://{}/metrics", self.ops)).await {
            Ok(_) => traffic::metric(self.ops, "switchyard_lane_partitions_owned", &label).await,
            Err(_) => 0.0,
        }
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

async fn seed(pool: &PgPool, n: usize) -> Vec<TenantId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = TenantId::parse(&format!("tenant-{i:02}")).unwrap();
        let mut new = NewTenant::with_defaults(id.clone());
        new.bot_kind = BotKind::Echo;
        tenants::insert(pool, &new).await.unwrap();
        ids.push(id);
    }
    ids
}

async fn wait_owned(replica: &Replica, expected: f64, deadline: Duration) {
    poll::until(
        &format!("{} to own {expected} partitions", replica.name),
        deadline,
        || async { (replica.owned().await == expected).then_some(()) },
    )
    .await;
}

async fn publish_round(js: &async_nats::jetstream::Context, tenants: &[TenantId], round: &str) {
    for tenant in tenants {
        let id = format!("{round}-{tenant}");
        let body = traffic::message_body(Some(tenant.as_str()), &id, "1@s.whatsapp.net", &id);
        traffic::publish_inbound(js, tenant, &id, body).await;
    }
}

async fn wait_replies(
    js: &async_nats::jetstream::Context,
    expected: usize,
    deadline: Duration,
) -> usize {
    poll::until(&format!("{expected} replies"), deadline, || async {
        let n: usize = traffic::replies_by_tenant(js)
            .await
            .values()
            .map(Vec::len)
            .sum();
        (n >= expected).then_some(n)
    })
    .await
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_killed_replicas_partitions_move_within_10s_and_nothing_is_lost(pool: PgPool) {
    let nats = NatsServer::start();
    let tenants = seed(&pool, 12).await;
    let db_url = services::database_url(&pool);
    let mut a = Replica::start(&nats, &db_url, "a");
    wait_owned(&a, 4.0, Duration::from_secs(20)).await;
    let b = Replica::start(&nats, &db_url, "b");
    wait_owned(&b, 2.0, Duration::from_secs(20)).await;
    wait_owned(&a, 2.0, Duration::from_secs(20)).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    publish_round(&js, &tenants, "before").await;
    wait_replies(&js, tenants.len(), Duration::from_secs(20)).await;

    a.kill_hard();
    let killed = Instant::now();
    publish_round(&js, &tenants, "after").await;
    wait_owned(&b, 4.0, Duration::from_secs(10)).await;
    let total = wait_replies(&js, 2 * tenants.len(), Duration::from_secs(30)).await;
    let moved_in = killed.elapsed();
    eprintln!("partitions moved and every reply arrived {moved_in:?} after the kill");
    assert_eq!(total, 2 * tenants.len(), "no reply lost, none duplicated");
    assert!(moved_in < Duration::from_secs(10), "took {moved_in:?}");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_graceful_shutdown_hands_over_in_under_a_second(pool: PgPool) {
    let nats = NatsServer::start();
    let tenants = seed(&pool, 12).await;
    let db_url = services::database_url(&pool);
    let a = Replica::start(&nats, &db_url, "a");
    wait_owned(&a, 4.0, Duration::from_secs(20)).await;
    let b = Replica::start(&nats, &db_url, "b");
    wait_owned(&b, 2.0, Duration::from_secs(20)).await;
    wait_owned(&a, 2.0, Duration::from_secs(20)).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );

    a.terminate();
    let stopped = Instant::now();
    wait_owned(&b, 4.0, Duration::from_secs(10)).await;
    publish_round(&js, &tenants, "after").await;
    wait_replies(&js, tenants.len(), Duration::from_secs(10)).await;
    let handover = stopped.elapsed();
    eprintln!("hand-over plus one round of replies took {handover:?}");
    assert!(
        handover < Duration::from_secs(1),
        "hand-over took {handover:?}"
    );
}
