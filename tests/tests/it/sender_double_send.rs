//! The sender's double-send paths, closed (issue 16, point 3), against real
//! NATS, PostgreSQL and the bridge simulator:
//! - a send slower than `ack_wait` is kept alive: sent once, never redelivered;
//! - a partition that moves to a new replica during slow sends: each reply once;
//! - a reply whose ledger row another sender holds under a live lease waits,
//!   and is acked without a send once that sender records it;
//! - an attempt left in doubt (its sender died mid-send, or its call timed
//!   out but went out) is settled by its echo when one was recorded (through
//!   the real router, for the timeout), and resent only without one;
//! - a ledger write that fails after the provider accepted a send (PostgreSQL
//!   cut under the sender) is retried before the ack: one send, and a replay
//!   of the reply afterwards sends nothing.
//!
//! Every wait is a poll with a deadline; "nothing more happens" is checked
//! only once every copy of every message is acked (the consumers hold
//! nothing pending), so a late duplicate cannot slip past the assertions.

use std::{net::SocketAddr, time::Duration};

use async_nats::jetstream::{self, consumer::pull};
use sqlx::PgPool;
use switchyard_bridge_sim::{EchoMode, SimHandle};
use switchyard_shared::{
    config::Env,
    deliveries::{self, Claim, EchoOrigin, Failure, Lease},
    ids::TenantId,
    message_ids::{ChatId, ProviderMessageId, ReplyId},
    replies::OutboundReply,
    subjects::{self, Direction},
};
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

const CHAT: &str = "15550001111@s.whatsapp.net";

fn t(raw: &str) -> TenantId {
    fixtures::tenant(raw)
}

/// The reply id `traffic::publish_replies` gives its `i`-th reply.
fn reply_id(prefix: &str, i: usize) -> ReplyId {
    let event = switchyard_shared::ids::EventId::parse(&format!("{prefix}-{i}")).unwrap();
    OutboundReply::reply_id_for(&event, 0)
}

struct Rig {
    nats: NatsServer,
    sim: SimHandle,
    js: jetstream::Context,
    pool: PgPool,
    partitions: u16,
}

impl Rig {
    async fn new(pool: &PgPool, tenants: &[&str], partitions: u16) -> Self {
        let nats = NatsServer::start();
        let sim = fixtures::start_sim().await;
        for id in tenants {
            fixtures::add_tenant_with_bridge(pool, &sim, id, |_| {}).await;
        }
        let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), partitions).await;
        Self {
            nats,
            sim,
            js,
            pool: pool.clone(),
            partitions,
        }
    }

    /// A sender's environment: short `ack_wait` (so a redelivery would come
    /// quickly), this rig's partitions, `extra` last.
    fn env(&self, db_url: &str, extra: &[(&str, &str)]) -> Env {
        let partitions = self.partitions.to_string();
        let mut vars = vec![
            ("SWITCHYARD_PARTITIONS", partitions.as_str()),
            ("SWITCHYARD_ACK_WAIT", "2s"),
        ];
        vars.extend_from_slice(extra);
        fixtures::sender_env(&self.nats.url(), db_url, &self.sim, &vars)
    }

    fn db_url(&self) -> String {
        services::database_url(&self.pool)
    }

    async fn reply(&self, tenant: &str, prefix: &str, body: &str) {
        traffic::publish_replies(&self.js, &t(tenant), prefix, CHAT, [body.to_owned()]).await;
    }

    async fn settled(&self) -> bool {
        outbound_settled(&self.js, self.partitions).await
    }

    async fn wait_settled(&self, what: &str, deadline: Duration) {
        poll::until(what, deadline, || async {
            self.settled().await.then_some(())
        })
        .await;
    }

    /// How often the partition consumers delivered messages, redeliveries
    /// included (0 for a consumer the sender has not created yet: the test
    /// does not wait for its readiness).
    async fn deliveries_made(&self) -> u64 {
        let stream = self.js.get_stream(subjects::OUTBOUND_STREAM).await.unwrap();
        let mut total = 0;
        for p in 0..self.partitions {
            let name = subjects::partition_consumer(Direction::Outbound, p);
            let Ok(mut consumer) = stream.get_consumer::<pull::Config>(&name).await else {
                continue;
            };
            total += consumer.info().await.unwrap().delivered.consumer_sequence;
        }
        total
    }
}

/// Every partition consumer of `OUTBOUND` exists and holds nothing pending
/// or unacked: every copy of every message is finished.
async fn outbound_settled(js: &jetstream::Context, partitions: u16) -> bool {
    let Ok(stream) = js.get_stream(subjects::OUTBOUND_STREAM).await else {
        return false;
    };
    for p in 0..partitions {
        let name = subjects::partition_consumer(Direction::Outbound, p);
        let Ok(mut consumer) = stream.get_consumer::<pull::Config>(&name).await else {
            return false;
        };
        let Ok(info) = consumer.info().await else {
            return false;
        };
        if info.num_ack_pending > 0 || info.num_pending > 0 {
            return false;
        }
    }
    true
}

/// A reply's ledger row as the table holds it (read as the owner, past RLS).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct Row {
    status: String,
    lease_owner: Option<String>,
    provider_message_id: Option<String>,
    echo_message_id: Option<String>,
}

async fn row(pool: &PgPool, tenant: &str, reply: &ReplyId) -> Option<Row> {
    sqlx::query_as(
        "SELECT status, lease_owner, provider_message_id, echo_message_id \
         FROM deliveries WHERE tenant_id = $1 AND reply_id = $2",
    )
    .bind(tenant)
    .bind(reply.as_str())
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Each body sent exactly once, and how many bodies there were.
fn assert_each_sent_once(sim: &SimHandle) -> usize {
    let mut bodies: Vec<String> = sim.sends().into_iter().map(|s| s.body).collect();
    let total = bodies.len();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), total, "a reply was sent twice: {bodies:?}");
    total
}

fn lease(owner: &str, duration: Duration) -> Lease {
    Lease {
        owner: owner.to_owned(),
        duration,
    }
}

fn chat() -> ChatId {
    ChatId::parse(CHAT).unwrap()
}

// ----- the sender, end to end ------------------------------------------------

/// At the default `ack_wait` (5 s) a held message gets a progress ack only
/// every third of it (`lanes::message::keep_alive_spacing`), not every
/// second: a send of 8 s is still never redelivered.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_send_longer_than_the_default_ack_wait_is_kept_alive_at_its_spacing_and_sent_once(
    pool: PgPool,
) {
    let rig = Rig::new(&pool, &["alpha"], 1).await;
    rig.sim
        .set_latency("alpha", Duration::from_millis(8000))
        .unwrap();
    let sender = services::start_sender(&rig.env(
        &rig.db_url(),
        &[
            ("SWITCHYARD_ACK_WAIT", "5s"),
            ("SWITCHYARD_WA_TIMEOUT", "15s"),
        ],
    ))
    .await;
    rig.reply("alpha", "long", "alpha:long").await;
    rig.sim
        .wait_for_sends(1, Duration::from_secs(30))
        .await
        .unwrap();
    rig.wait_settled("the long send to be acked", Duration::from_secs(30))
        .await;
    assert_eq!(assert_each_sent_once(&rig.sim), 1);
    assert_eq!(
        rig.deliveries_made().await,
        1,
        "kept alive through an 8 s send at a 5 s ack_wait: never delivered again"
    );
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_send_slower_than_ack_wait_is_sent_once_and_never_redelivered(pool: PgPool) {
    let steps = deliveries::SendSteps::start(
        &pool,
        switchyard_shared::group_commit::Shape::WORKER_STEP.linger,
    );
    let rig = Rig::new(&pool, &["alpha"], 1).await;
    // Twice the ack wait (2 s), within the provider call's timeout (10 s).
    rig.sim
        .set_latency("alpha", Duration::from_millis(4500))
        .unwrap();
    // A lease shorter than the call: renewed while it runs.
    let sender =
        services::start_sender(&rig.env(&rig.db_url(), &[("SWITCHYARD_SEND_LEASE", "2s")])).await;

    rig.reply("alpha", "slow", "alpha:slow").await;
    let id = reply_id("slow", 0);
    poll::until(
        "the lease to be renewed during the call",
        Duration::from_secs(10),
        || async {
            let (renewed,): (bool,) = sqlx::query_as(
                "SELECT coalesce(lease_until > last_attempt_at + interval '2 s', false) \
                 FROM deliveries WHERE tenant_id = 'alpha' AND reply_id = $1",
            )
            .bind(id.as_str())
            .fetch_optional(&pool)
            .await
            .unwrap()?;
            renewed.then_some(())
        },
    )
    .await;
    let other = lease("sender-other/1", Duration::from_secs(60));
    let claim = deliveries::claim(&pool, &steps, &t("alpha"), &id, &chat(), &other)
        .await
        .unwrap();
    assert!(
        matches!(claim, Claim::Leased { .. }),
        "another sender may not take a reply whose send is under way: {claim:?}"
    );
    rig.sim
        .wait_for_sends(1, Duration::from_secs(20))
        .await
        .unwrap();
    rig.wait_settled("the slow reply to be acked", Duration::from_secs(20))
        .await;

    assert_eq!(assert_each_sent_once(&rig.sim), 1);
    assert_eq!(
        rig.deliveries_made().await,
        1,
        "kept alive for the whole send: JetStream never delivered it again"
    );
    let row = row(&pool, "alpha", &id).await.unwrap();
    assert_eq!(row.status, "wired");
    assert_eq!(row.lease_owner, None, "a recorded send ends its lease");
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn replies_whose_partition_moves_to_a_new_replica_during_slow_sends_are_each_sent_once(
    pool: PgPool,
) {
    let names = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let rig = Rig::new(&pool, &names, 2).await;
    for name in names {
        rig.sim.set_latency(name, Duration::from_secs(5)).unwrap();
    }
    let a =
        services::start_sender(&rig.env(&rig.db_url(), &[("SWITCHYARD_REPLICA_ID", "sender-a")]))
            .await;
    for name in names {
        rig.reply(name, "move", &format!("{name}:move")).await;
    }
    // The tenants whose partition will move: with two members, sorted ids,
    // partition 1 goes to sender-b.
    let stream = rig.js.get_stream(subjects::OUTBOUND_STREAM).await.unwrap();
    let mut moving = Vec::new();
    for name in names {
        let subject = format!("outbound.1.{name}");
        if stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .is_ok()
        {
            moving.push(name);
        }
    }
    assert!(
        !moving.is_empty(),
        "no tenant on partition 1: pick other names"
    );
    // Every send is under way on A (claimed under A's lease) ...
    poll::until(
        "every reply claimed by sender-a",
        Duration::from_secs(20),
        || async {
            let mut claimed = 0;
            for name in names {
                let r = row(&pool, name, &reply_id("move", 0)).await;
                if r.and_then(|r| r.lease_owner)
                    .is_some_and(|o| o.starts_with("sender-a/"))
                {
                    claimed += 1;
                }
            }
            (claimed == names.len()).then_some(())
        },
    )
    .await;
    // ... when B joins and partition 1 moves to it.
    let b =
        services::start_sender(&rig.env(&rig.db_url(), &[("SWITCHYARD_REPLICA_ID", "sender-b")]))
            .await;
    let members = rig
        .js
        .get_key_value(switchyard_shared::lanes::assignment::bucket_name(
            Direction::Outbound,
        ))
        .await
        .unwrap();
    poll::until("sender-b to join", Duration::from_secs(10), || async {
        let keys: Vec<String> = futures::TryStreamExt::try_collect(members.keys().await.ok()?)
            .await
            .ok()?;
        (keys.len() == 2).then_some(())
    })
    .await;
    assert!(
        rig.sim.sends().len() < names.len(),
        "the partition must move while sends are still under way"
    );

    rig.sim
        .wait_for_sends(names.len(), Duration::from_secs(30))
        .await
        .unwrap();
    rig.wait_settled("every reply acked", Duration::from_secs(30))
        .await;
    assert_eq!(assert_each_sent_once(&rig.sim), names.len());
    // B serves the moved partition from now on, and sends nothing twice.
    for name in &moving {
        rig.reply(name, "after", &format!("{name}:after")).await;
    }
    rig.sim
        .wait_for_sends(names.len() + moving.len(), Duration::from_secs(30))
        .await
        .unwrap();
    rig.wait_settled("the later replies acked", Duration::from_secs(30))
        .await;
    assert_eq!(assert_each_sent_once(&rig.sim), names.len() + moving.len());
    a.stop().await;
    b.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_reply_another_sender_is_sending_waits_and_is_acked_unsent_once_that_sender_records_it(
    pool: PgPool,
) {
    let steps = deliveries::SendSteps::start(
        &pool,
        switchyard_shared::group_commit::Shape::WORKER_STEP.linger,
    );
    let rig = Rig::new(&pool, &["alpha"], 1).await;
    let tenant = t("alpha");
    let id = reply_id("held", 0);
    // Another sender has claimed the reply and is (still) sending it.
    let other = lease("sender-other/1", Duration::from_secs(60));
    let claim = deliveries::claim(&pool, &steps, &tenant, &id, &chat(), &other)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Send { attempts: 0, .. }));
    let sender = services::start_sender(&rig.env(&rig.db_url(), &[])).await;

    rig.reply("alpha", "held", "alpha:held").await;
    // The message reaches the sender, which finds the lease and waits.
    poll::until(
        "the sender to take the message",
        Duration::from_secs(10),
        || async { (rig.deliveries_made().await >= 1).then_some(()) },
    )
    .await;
    poll::until(
        "the sender to meet the lease",
        Duration::from_secs(10),
        || async {
            let waits =
                traffic::metric(sender.ops_addr, "switchyard_sender_lease_waits_total", "").await;
            (waits >= 1.0).then_some(())
        },
    )
    .await;
    assert!(
        rig.sim.sends().is_empty(),
        "sent while another sender held it"
    );

    // The other sender's answer comes: recorded as wired.
    let theirs = ProviderMessageId::parse("THEIRS-1").unwrap();
    deliveries::mark_wired(&steps, &tenant, &id, Some(&theirs))
        .await
        .unwrap();
    rig.wait_settled("the waiting copy to be acked", Duration::from_secs(10))
        .await;
    assert!(
        rig.sim.sends().is_empty(),
        "a recorded reply was sent again"
    );
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_lease_whose_sender_died_is_taken_over_only_when_it_ends(pool: PgPool) {
    let steps = deliveries::SendSteps::start(
        &pool,
        switchyard_shared::group_commit::Shape::WORKER_STEP.linger,
    );
    let rig = Rig::new(&pool, &["alpha"], 1).await;
    let tenant = t("alpha");
    let id = reply_id("orphan", 0);
    let dead = lease("sender-dead/1", Duration::from_secs(4));
    // The database stamps the lease with its own `now()` during the claim, so
    // the lease ends no earlier than this instant taken just before it.
    let claimed_from = std::time::SystemTime::now();
    deliveries::claim(&pool, &steps, &tenant, &id, &chat(), &dead)
        .await
        .unwrap();
    let lease_ends = claimed_from + dead.duration;
    let sender = services::start_sender(&rig.env(&rig.db_url(), &[])).await;

    rig.reply("alpha", "orphan", "alpha:orphan").await;
    let sends = rig
        .sim
        .wait_for_sends(1, Duration::from_secs(20))
        .await
        .unwrap();
    // The simulator records whole milliseconds (truncated): the send happened
    // within the millisecond after `at_ms`.
    let sent_at = std::time::UNIX_EPOCH + Duration::from_millis(sends[0].at_ms + 1);
    assert!(
        sent_at >= lease_ends,
        "sent {:?} before the dead sender's lease ended",
        lease_ends.duration_since(sent_at).unwrap_or_default()
    );
    rig.wait_settled("the reply acked", Duration::from_secs(10))
        .await;
    assert_eq!(assert_each_sent_once(&rig.sim), 1);
    let resent = traffic::metric(
        sender.ops_addr,
        "switchyard_sender_in_doubt_total",
        "resolution=\"resent\"",
    )
    .await;
    assert_eq!(resent, 1.0, "the takeover is counted as a possible repeat");
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_attempt_left_in_doubt_whose_echo_arrived_is_recorded_and_not_sent_again(pool: PgPool) {
    let steps = deliveries::SendSteps::start(
        &pool,
        switchyard_shared::group_commit::Shape::WORKER_STEP.linger,
    );
    let rig = Rig::new(&pool, &["alpha"], 1).await;
    let tenant = t("alpha");
    let id = reply_id("echoed", 0);
    // A sender claimed the reply and sent it; the provider's echo of the send
    // reached the router (which asks the ledger about every `from_me`
    // event) before the sender died, without recording its answer.
    let dead = lease("sender-dead/1", Duration::from_secs(1));
    deliveries::claim(&pool, &steps, &tenant, &id, &chat(), &dead)
        .await
        .unwrap();
    let echo = ProviderMessageId::parse("ECHO-OF-THE-DEAD").unwrap();
    let origin = deliveries::echo_origin(&pool, &tenant, &chat(), &echo, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(origin, EchoOrigin::Undecided);
    assert_eq!(
        row(&pool, "alpha", &id).await.unwrap().echo_message_id,
        Some("ECHO-OF-THE-DEAD".to_owned())
    );
    let sender = services::start_sender(&rig.env(&rig.db_url(), &[])).await;

    rig.reply("alpha", "echoed", "alpha:echoed").await;
    rig.wait_settled("the reply acked", Duration::from_secs(20))
        .await;
    poll::until(
        "the ledger to record it",
        Duration::from_secs(5),
        || async {
            let r = row(&pool, "alpha", &id).await?;
            (r.status == "wired").then_some(())
        },
    )
    .await;
    assert!(rig.sim.sends().is_empty(), "sent again despite its echo");
    let r = row(&pool, "alpha", &id).await.unwrap();
    assert_eq!(r.provider_message_id.as_deref(), Some("ECHO-OF-THE-DEAD"));
    assert_eq!(r.lease_owner, None);
    // The router now knows the echo as ours.
    let origin = deliveries::echo_origin(&pool, &tenant, &chat(), &echo, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(origin, EchoOrigin::Ours);
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_ledger_write_that_fails_after_the_send_is_retried_before_the_ack_and_a_replay_sends_nothing(
    pool: PgPool,
) {
    let rig = Rig::new(&pool, &["alpha"], 1).await;
    rig.sim
        .set_latency("alpha", Duration::from_millis(1500))
        .unwrap();
    // The sender reaches PostgreSQL only through a gate the test can close.
    let gate = Gate::start(&pool).await;
    let sender = services::start_sender(&rig.env(
        &gate.database_url(&rig.db_url()),
        // Past this bound the message goes back to its lane unacked; a
        // refused connection is given up on quickly.
        &[
            ("SWITCHYARD_SEND_LEDGER_RETRY", "1s"),
            ("SWITCHYARD_DB_ACQUIRE_TIMEOUT", "200ms"),
        ],
    ))
    .await;
    let id = reply_id("cut", 0);

    rig.reply("alpha", "cut", "alpha:cut").await;
    // The call is under way (1.5 s of latency), so its claim is done and
    // answered (closing the gate while the claim's commit was on its way back
    // failed the claim instead, under load): PostgreSQL goes away before the
    // provider accepts it, so the ledger write after it fails.
    rig.sim
        .wait_for_send_requests(1, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        row(&pool, "alpha", &id)
            .await
            .unwrap()
            .lease_owner
            .is_some()
    );
    gate.close();
    rig.sim
        .wait_for_sends(1, Duration::from_secs(10))
        .await
        .unwrap();
    // Down for longer than the write is retried in place: the message goes
    // back to its lane, unacked, and comes round again meanwhile.
    poll::until(
        "the message to come round twice, writing the ledger only",
        Duration::from_secs(15),
        || async {
            let deferred = traffic::metric(
                sender.ops_addr,
                "switchyard_sender_ledger_write_deferred_total",
                "",
            )
            .await;
            (deferred >= 2.0).then_some(())
        },
    )
    .await;
    assert_eq!(row(&pool, "alpha", &id).await.unwrap().status, "sending");
    assert!(
        !rig.settled().await,
        "acked before the ledger held the send"
    );
    gate.open();

    rig.wait_settled("the reply acked once recorded", Duration::from_secs(20))
        .await;
    let r = row(&pool, "alpha", &id).await.unwrap();
    assert_eq!(r.status, "wired");
    assert_eq!(
        r.provider_message_id.as_deref(),
        Some(rig.sim.sends()[0].message_id.as_str()),
        "the provider's id of the one send is recorded"
    );
    assert_eq!(assert_each_sent_once(&rig.sim), 1);

    // A replay of the same reply (an operator's, under a new message id).
    let stream_reply = OutboundReply {
        tenant: t("alpha"),
        reply_id: id.clone(),
        event_id: switchyard_shared::ids::EventId::parse("cut-0").unwrap(),
        chat_id: chat(),
        body: "alpha:cut".into(),
        part: 0,
        parts: 1,
        priority: Default::default(),
        received_at_ms: None,
        menu: None,
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "replay:1");
    rig.js
        .publish_with_headers(
            subjects::outbound(&t("alpha")),
            headers,
            serde_json::to_vec(&stream_reply).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    poll::until(
        "the replay to be taken",
        Duration::from_secs(10),
        || async { (rig.deliveries_made().await >= 2).then_some(()) },
    )
    .await;
    rig.wait_settled("the replay acked", Duration::from_secs(10))
        .await;
    assert_eq!(
        assert_each_sent_once(&rig.sim),
        1,
        "the replay sent it again"
    );
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_send_that_timed_out_but_went_out_is_settled_by_its_echo_through_the_router(
    pool: PgPool,
) {
    // The whole pipeline: simulator, ingest, router (which sees the echo), sender.
    let nats = NatsServer::start();
    let sim = fixtures::start_sim().await;
    let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), 4).await;
    let db_url = services::database_url(&pool);
    let env = |extra: &[(&str, &str)]| {
        let mut vars = vec![
            ("SWITCHYARD_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("SWITCHYARD_HTTP_ADDR", "127.0.0.1:0"),
            ("SWITCHYARD_TENANT_CACHE_TTL", "500ms"),
            ("SWITCHYARD_RETRY_DELAY", "50ms"),
        ];
        vars.extend_from_slice(extra);
        fixtures::sender_env(&nats.url(), &db_url, &sim, &vars)
    };
    let (_ingest, ingest_addr) = services::start_ingest(&env(&[])).await;
    // The bridge's webhooks pass a relay that hands them to ingest at once but
    // answers the provider 3 s late. The simulator posts a send's echo before
    // answering the send: so the send is accepted, its echo ingested, and the
    // answer comes after the sender's 2 s timeout.
    let relay = LateRelay::start(format!("http://{ingest_addr}"), Duration::from_secs(3)).await;
    let keys = switchyard_shared::webhook_auth::WebhookKeys::new(WEBHOOK_SECRET.into(), None);
    let hook = keys.webhook_url(&relay.base_url(), &t("alpha"));
    fixtures::add_tenant_with_bridge_posting_to(&pool, &sim, "alpha", &hook, |new| {
        new.bot_kind = switchyard_shared::tenants::BotKind::Echo;
    })
    .await;
    sim.set_echo("alpha", EchoMode::Before).unwrap();
    let _router = services::start_router(&env(&[])).await;
    let sender = services::start_sender(&env(&[
        ("SWITCHYARD_WA_TIMEOUT", "2s"),
        // The retry comes 3-6 s after the timeout, as in production.
        ("SWITCHYARD_SEND_RETRY_MIN_DELAY", "3s"),
        ("SWITCHYARD_SEND_RETRY_MAX_DELAY", "5m"),
    ]))
    .await;

    let hello = switchyard_bridge_sim::events::TextMessage::new("15550002222", "hello");
    sim.post_webhook("alpha", hello.to_json()).await.unwrap();
    poll::until(
        "the timed-out send to be settled by its echo",
        Duration::from_secs(20),
        || async {
            let found = traffic::metric(
                sender.ops_addr,
                "switchyard_sender_in_doubt_total",
                "resolution=\"echo_found\"",
            )
            .await;
            (found >= 1.0).then_some(())
        },
    )
    .await;
    poll::until("the reply to be acked", Duration::from_secs(10), || async {
        outbound_settled(&js, 4).await.then_some(())
    })
    .await;

    let sends = sim.sends_for("alpha");
    assert_eq!(
        sends.len(),
        1,
        "the timed-out send went out; it was sent again"
    );
    let (status, provider_id): (String, Option<String>) = sqlx::query_as(
        "SELECT status, provider_message_id FROM deliveries WHERE tenant_id = 'alpha'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "wired");
    assert_eq!(provider_id.as_deref(), Some(sends[0].message_id.as_str()));
}

const WEBHOOK_SECRET: &str = "double-send-test-secret";

/// A webhook relay in front of ingest: forwards each request at once and
/// answers with ingest's status only after `hold`.
struct LateRelay {
    addr: SocketAddr,
}

impl LateRelay {
    async fn start(upstream: String, hold: Duration) -> Self {
        let client = reqwest::Client::new();
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let forwarded = client
                        .post(format!("{upstream}{uri}"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    tokio::time::sleep(hold).await;
                    match forwarded {
                        Ok(answer) => axum::http::StatusCode::from_u16(answer.status().as_u16())
                            .unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
                        Err(_) => axum::http::StatusCode::BAD_GATEWAY,
                    }
                }
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

// ----- the ledger's leases ---------------------------------------------------

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_ledger_lease_keeps_other_senders_off_until_an_outcome_or_its_end(pool: PgPool) {
    let steps = deliveries::SendSteps::start(
        &pool,
        switchyard_shared::group_commit::Shape::WORKER_STEP.linger,
    );
    fixtures::add_tenant(&pool, "alpha", |_| {}).await;
    let tenant = t("alpha");
    let id = ReplyId::parse("e1:0").unwrap();
    let a = lease("sender-a/1", Duration::from_secs(60));
    let b = lease("sender-b/1", Duration::from_secs(60));
    let claim = |l: &Lease| {
        let (pool, steps, tenant, id, l) = (
            pool.clone(),
            steps.clone(),
            tenant.clone(),
            id.clone(),
            l.clone(),
        );
        async move {
            deliveries::claim(&pool, &steps, &tenant, &id, &chat(), &l)
                .await
                .unwrap()
        }
    };

    assert!(matches!(
        claim(&a).await,
        Claim::Send {
            attempts: 0,
            in_doubt: false,
            ..
        }
    ));
    assert!(
        matches!(claim(&b).await, Claim::Leased { expires_in } if expires_in > Duration::from_secs(50))
    );
    // A known failure (a 5xx) ends A's lease: B sends, nothing in doubt.
    let known = Failure {
        spent: true,
        in_doubt: false,
    };
    deliveries::record_failure(&pool, &tenant, &id, &a.owner, known, "503")
        .await
        .unwrap();
    assert!(matches!(
        claim(&b).await,
        Claim::Send {
            attempts: 1,
            in_doubt: false,
            ..
        }
    ));
    // Renewed while B's attempt runs; not by A, whose lease ended.
    assert!(deliveries::renew(&pool, &tenant, &id, &b).await.unwrap());
    assert!(!deliveries::renew(&pool, &tenant, &id, &a).await.unwrap());
    // B's call times out: the row is in doubt, open to anyone at once, and
    // a late renewal of B's cannot close it again.
    let timed_out = Failure {
        spent: true,
        in_doubt: true,
    };
    deliveries::record_failure(&pool, &tenant, &id, &b.owner, timed_out, "timeout")
        .await
        .unwrap();
    assert!(!deliveries::renew(&pool, &tenant, &id, &b).await.unwrap());
    assert!(matches!(
        claim(&a).await,
        Claim::Send {
            attempts: 2,
            in_doubt: true,
            ..
        }
    ));
    // A stops before its call (our own trouble): B still waits for nothing.
    deliveries::release(&pool, &tenant, &id, &a.owner, false)
        .await
        .unwrap();
    assert!(matches!(
        claim(&b).await,
        Claim::Send {
            in_doubt: false,
            ..
        }
    ));
    deliveries::mark_wired(&steps, &tenant, &id, None)
        .await
        .unwrap();
    assert_eq!(claim(&a).await, Claim::AlreadyDone);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_echo_is_written_only_on_the_chats_one_attempt_under_way(pool: PgPool) {
    let steps = deliveries::SendSteps::start(
        &pool,
        switchyard_shared::group_commit::Shape::WORKER_STEP.linger,
    );
    fixtures::add_tenant(&pool, "alpha", |_| {}).await;
    let tenant = t("alpha");
    let window = Duration::from_secs(30);
    let a = lease("sender-a/1", Duration::from_secs(60));
    let first = ReplyId::parse("e1:0").unwrap();
    let second = ReplyId::parse("e2:0").unwrap();
    let echo = |id: &str| ProviderMessageId::parse(id).unwrap();

    // No attempt under way: a person answered from the phone; nothing written.
    deliveries::claim(&pool, &steps, &tenant, &first, &chat(), &a)
        .await
        .unwrap();
    let known = Failure {
        spent: true,
        in_doubt: false,
    };
    deliveries::record_failure(&pool, &tenant, &first, &a.owner, known, "503")
        .await
        .unwrap();
    deliveries::echo_origin(&pool, &tenant, &chat(), &echo("H1"), window)
        .await
        .unwrap();
    assert_eq!(
        row(&pool, "alpha", &first).await.unwrap().echo_message_id,
        None
    );

    // One attempt under way: the unknown echo is written on it, once.
    deliveries::claim(&pool, &steps, &tenant, &first, &chat(), &a)
        .await
        .unwrap();
    for _ in 0..2 {
        deliveries::echo_origin(&pool, &tenant, &chat(), &echo("E1"), window)
            .await
            .unwrap();
    }
    assert_eq!(
        row(&pool, "alpha", &first).await.unwrap().echo_message_id,
        Some("E1".to_owned())
    );

    // Two attempts under way in one chat: an echo is ambiguous, written nowhere.
    deliveries::mark_wired(&steps, &tenant, &first, Some(&echo("E1")))
        .await
        .unwrap();
    let third = ReplyId::parse("e3:0").unwrap();
    for id in [&second, &third] {
        deliveries::claim(&pool, &steps, &tenant, id, &chat(), &a)
            .await
            .unwrap();
    }
    deliveries::echo_origin(&pool, &tenant, &chat(), &echo("E2"), window)
        .await
        .unwrap();
    for id in [&second, &third] {
        assert_eq!(row(&pool, "alpha", id).await.unwrap().echo_message_id, None);
    }
}

// ----- a gate in front of PostgreSQL -------------------------------------------

/// A loopback forwarder to PostgreSQL that the test closes and opens again:
/// closed, it cuts every forwarded connection and refuses new ones (the
/// connection is accepted and dropped at once), as a server gone away would.
/// (`switchyard_tests::tcp_proxy` cuts for good; this one comes back.)
struct Gate {
    addr: SocketAddr,
    closed: watch::Sender<bool>,
    upstream: String,
}

impl Gate {
    async fn start(pool: &PgPool) -> Self {
        let options = pool.connect_options();
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        let target = tokio::net::lookup_host(&upstream)
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed, watching) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if *watching.borrow() {
                    drop(client);
                    continue;
                }
                tokio::spawn(forward(client, target, watching.clone()));
            }
        });
        Self {
            addr,
            closed,
            upstream,
        }
    }

    /// `url` with the gate in place of the server's address.
    fn database_url(&self, url: &str) -> String {
        let start = url.find("://").map_or(0, |i| i + 3);
        let end = url[start..].find('/').map_or(url.len(), |i| start + i);
        let authority = &url[start..end];
        let host_at = authority.rfind('@').map_or(0, |i| i + 1);
        let host = &authority[host_at..];
        assert!(
            self.upstream
                .starts_with(host.split(':').next().unwrap_or(host)),
            "{host} is not {}",
            self.upstream
        );
        format!("{}{}{}", &url[..start + host_at], self.addr, &url[end..])
    }

    fn close(&self) {
        self.closed.send_replace(true);
    }

    fn open(&self) {
        self.closed.send_replace(false);
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut closed: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = closed.wait_for(|c| *c) => {} // both sockets close here, mid-conversation
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}
