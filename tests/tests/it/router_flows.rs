//! Stateless flows through the real router (nats-server, PostgreSQL, the
//! router in-process): an ambiguous customer gets a picker, the choice leads
//! to the tenant's chained menus and to an action, each step understood from
//! the message alone (the conversation row is deleted before every message),
//! and an id forged from another tenant's resource is refused at every step.
//! Media reach the bots with kind and caption; the HTTP bot is told the
//! resolved role, resource and action.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::PgPool;
use switchyard_shared::{
    contacts::{self, ContactRole, NewContact, PhoneNumber, ResourceId},
    replies::OutboundReply,
    streams,
    tenants::BotKind,
};
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};

const CHAT: &str = "15550001234@s.whatsapp.net";
const REFUSAL: &str = "Sorry, that option is not available.";

fn flow_config() -> serde_json::Value {
    serde_json::json!({
        "fallback": "Hello!",
        "flow": {
            "picker_title": "Which order?",
            "start": "order",
            "steps": {
                "order": {"title": "Order {resource}", "options": [
                    {"title": "Status", "next": "status"},
                    {"title": "Change", "next": "change"}]},
                "change": {"title": "Change {resource}?", "options": [
                    {"title": "Cancel it", "next": "do_cancel"}]},
                "status": {"reply": "Order {resource} ships tomorrow"},
                "do_cancel": {"reply": "Order {resource} cancelled"}
            }
        }
    })
}

async fn customer(pool: &PgPool, tenant: &str, phone: &str, resource: &str) {
    contacts::add(
        pool,
        &fixtures::tenant(tenant),
        &[NewContact {
            role: ContactRole::Customer,
            phone: PhoneNumber::parse(phone).unwrap(),
            resource: Some(ResourceId::parse(resource).unwrap()),
            name: String::new(),
        }],
    )
    .await
    .unwrap();
}

async fn replies_for(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    n: usize,
) -> Vec<OutboundReply> {
    poll::until(
        &format!("{n} replies for {tenant}"),
        Duration::from_secs(20),
        || async {
            let got = traffic::replies_by_tenant(js)
                .await
                .remove(tenant)
                .unwrap_or_default();
            (got.len() >= n).then_some(got)
        },
    )
    .await
}

struct Pipeline {
    _nats: NatsServer,
    router: services::RunningService,
    js: async_nats::jetstream::Context,
}

async fn start(pool: &PgPool) -> Pipeline {
    let nats = NatsServer::start();
    let env = services::env(&nats.url(), &services::database_url(pool), &[]);
    let router = services::start_router(&env).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    Pipeline {
        _nats: nats,
        router,
        js,
    }
}

/// Sends `body` on `tenant`'s subject and returns the reply parts it caused
/// (`sent` replies had come before).
async fn say(p: &Pipeline, tenant: &str, id: &str, event: String, sent: &mut usize) -> Vec<String> {
    traffic::publish_inbound(&p.js, &fixtures::tenant(tenant), id, event).await;
    let all = replies_for(&p.js, tenant, *sent + 1).await;
    let new: Vec<String> = all[*sent..].iter().map(|r| r.body.clone()).collect();
    *sent = all.len();
    new
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_ambiguous_customer_is_led_from_picker_to_action_with_nothing_stored_and_forged_ids_refused_at_each_step(
    pool: PgPool,
) {
    for tenant in ["alpha", "bravo"] {
        fixtures::add_tenant(&pool, tenant, |new| {
            new.bot_kind = BotKind::Rules;
            new.bot_config = flow_config();
        })
        .await;
    }
    customer(&pool, "alpha", "15550001234", "o-2").await;
    customer(&pool, "alpha", "15550001234", "o-1").await;
    // Bravo's resource, and the same person as bravo's customer: still not alpha's.
    customer(&pool, "bravo", "15550001234", "b-7").await;
    let p = start(&pool).await;
    let steps: [(&str, &str); 10] = [
        ("hello", "Which order?\n1. o-1\n2. o-2"),
        ("sel:b-7", REFUSAL),
        ("sel:o-2", "Order o-2\n1. Status\n2. Change"),
        // Typed instead of tapped, with no stored menu: the picker is recomputed.
        ("1", "Order o-1\n1. Status\n2. Change"),
        ("change:b-7", REFUSAL),
        ("change:o-2", "Change o-2?\n1. Cancel it"),
        ("do_cancel:b-7", REFUSAL),
        ("status:o-1", "Order o-1 ships tomorrow"),
        ("do_cancel:o-2", "Order o-2 cancelled"),
        ("order:o-3", REFUSAL),
    ];
    let mut sent = 0;
    let mut got = Vec::new();

    for (i, (text, _)) in steps.iter().enumerate() {
        // Nothing carries over between messages: the chat's row is gone.
        sqlx::query("DELETE FROM conversations")
            .execute(&pool)
            .await
            .unwrap();
        let id = format!("f{i}");
        let event = traffic::message_body(Some("alpha"), &id, CHAT, text);
        got.push(say(&p, "alpha", &id, event, &mut sent).await.join(" | "));
        // The router records the conversation after it publishes the reply:
        // wait for that row, or the next delete could come first and the
        // step would see this one's menu.
        poll::until(
            "the router to record the step",
            Duration::from_secs(10),
            || async {
                let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                (rows >= 1).then_some(())
            },
        )
        .await;
    }

    let expected: Vec<String> = steps.iter().map(|(_, reply)| (*reply).to_owned()).collect();
    assert_eq!(got, expected);
    assert!(
        !traffic::replies_by_tenant(&p.js)
            .await
            .contains_key("bravo"),
        "nothing reached bravo"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "only the last message's row, which nothing read");
    p.router.stop().await;
}

/// A media `message` event as WA Bridges posts it.
fn media(tenant: &str, id: &str, kind: &str, mime: &str, caption: &str) -> String {
    let mut event: serde_json::Value =
        serde_json::from_str(&traffic::message_body(Some(tenant), id, CHAT, caption)).unwrap();
    event["type"] = kind.into();
    event["media_type"] = mime.into();
    event.to_string()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn media_messages_are_answered_with_their_kind_and_caption_never_an_empty_echo(pool: PgPool) {
    fixtures::add_tenant(&pool, "echoer", |new| new.bot_kind = BotKind::Echo).await;
    fixtures::add_tenant(&pool, "ruler", |new| {
        new.bot_kind = BotKind::Rules;
        new.bot_config =
            serde_json::json!({"keywords": [{"match": "invoice", "reply": "Invoice noted"}]});
    })
    .await;
    let p = start(&pool).await;
    let (mut echoed, mut ruled) = (0, 0);

    let photo = say(
        &p,
        "echoer",
        "e1",
        media("echoer", "e1", "image", "image/jpeg", ""),
        &mut echoed,
    )
    .await;
    let captioned = say(
        &p,
        "echoer",
        "e2",
        media("echoer", "e2", "image", "image/jpeg", "look"),
        &mut echoed,
    )
    .await;
    let voice = say(
        &p,
        "ruler",
        "r1",
        media("ruler", "r1", "ptt", "audio/ogg", ""),
        &mut ruled,
    )
    .await;
    let pdf = say(
        &p,
        "ruler",
        "r2",
        media("ruler", "r2", "document", "application/pdf", "the invoice"),
        &mut ruled,
    )
    .await;

    assert_eq!(photo, vec!["echo: [image]"]);
    assert_eq!(captioned, vec!["echo: [image] look"]);
    assert_eq!(voice, vec!["Thanks, we received your audio."]);
    assert_eq!(
        pdf,
        vec!["Invoice noted"],
        "the caption is read as the text"
    );
    p.router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_http_bot_is_told_role_resource_action_and_content_and_never_sees_a_forged_id(
    pool: PgPool,
) {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bot", listener.local_addr().unwrap());
    let log = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/bot",
        axum::routing::post(move |axum::Json(request): axum::Json<serde_json::Value>| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push(request);
                axum::Json(serde_json::json!({"replies": ["ok"]}))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    for tenant in ["alpha", "bravo"] {
        let url = url.clone();
        fixtures::add_tenant(&pool, tenant, move |new| {
            new.bot_kind = BotKind::Http;
            new.bot_config = serde_json::json!({"url": url});
        })
        .await;
    }
    customer(&pool, "alpha", "15550001234", "o-1").await;
    customer(&pool, "alpha", "15550001234", "o-2").await;
    customer(&pool, "bravo", "15550009999", "b-7").await;
    let p = start(&pool).await;
    let mut sent = 0;

    let hello = say(
        &p,
        "alpha",
        "h1",
        traffic::message_body(Some("alpha"), "h1", CHAT, "hello"),
        &mut sent,
    )
    .await;
    let chosen = say(
        &p,
        "alpha",
        "h2",
        traffic::message_body(Some("alpha"), "h2", CHAT, "do_approve:o-2"),
        &mut sent,
    )
    .await;
    let forged = say(
        &p,
        "alpha",
        "h3",
        traffic::message_body(Some("alpha"), "h3", CHAT, "do_approve:b-7"),
        &mut sent,
    )
    .await;
    let photo = say(
        &p,
        "alpha",
        "h4",
        media("alpha", "h4", "image", "image/png", "receipt"),
        &mut sent,
    )
    .await;

    assert_eq!(
        (hello, chosen, forged, photo),
        (
            vec!["ok".to_owned()],
            vec!["ok".to_owned()],
            vec![REFUSAL.to_owned()],
            vec!["ok".to_owned()]
        )
    );
    let requests = seen.lock().unwrap().clone();
    assert_eq!(
        requests.len(),
        3,
        "the forged id never reached the endpoint"
    );
    let first = &requests[0];
    assert_eq!(
        first["sender"],
        serde_json::json!({"role": "ambiguous", "candidates": ["o-1", "o-2"]})
    );
    assert_eq!(first["resource"], serde_json::Value::Null);
    assert_eq!(first["action"], serde_json::Value::Null);
    assert_eq!(
        first["content"],
        serde_json::json!({"kind": "text", "text": "hello"})
    );
    assert_eq!(
        requests[1]["action"],
        serde_json::json!({"prefix": "do_approve", "id": "o-2"})
    );
    assert_eq!(requests[1]["resource"], "o-2");
    assert_eq!(
        requests[2]["content"],
        serde_json::json!({"kind": "media", "media_type": "image", "caption": "receipt"})
    );
    p.router.stop().await;
}

/// The row of one chat, once it exists: when it was last written (its
/// `xmin`) and its `last_inbound_at` as seconds since the epoch.
async fn conversation_row(pool: &PgPool, tenant: &str) -> (String, f64) {
    poll::until("the conversation row", Duration::from_secs(10), || async {
        sqlx::query_as(
            "SELECT xmin::text, extract(epoch FROM last_inbound_at)::float8 \
             FROM conversations WHERE tenant_id = $1 AND chat_id = $2",
        )
        .bind(tenant)
        .bind(CHAT)
        .fetch_optional(pool)
        .await
        .unwrap()
    })
    .await
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_turn_that_changes_nothing_writes_no_conversation_row_until_its_touch_is_an_hour_old(
    pool: PgPool,
) {
    fixtures::add_tenant(&pool, "echoer", |new| new.bot_kind = BotKind::Echo).await;
    let p = start(&pool).await;
    let mut sent = 0;
    let body = |id: &str, text: &str| traffic::message_body(Some("echoer"), id, CHAT, text);
    let mut say_echo =
        async |id: &str, text: &str| say(&p, "echoer", id, body(id, text), &mut sent).await;

    // A new chat is recorded (its next message is no longer new).
    assert_eq!(say_echo("m1", "one").await, vec!["echo: one"]);
    let first = conversation_row(&pool, "echoer").await;
    // Its next turns show no menu: answered, and the row is not written. (A
    // chat's messages are handled in order, so by m3's reply m2's step,
    // record included, is over.)
    assert_eq!(say_echo("m2", "two").await, vec!["echo: two"]);
    assert_eq!(say_echo("m3", "three").await, vec!["echo: three"]);
    assert_eq!(conversation_row(&pool, "echoer").await, first);
    // Once the touch is over an hour old, a turn writes it again.
    sqlx::query("UPDATE conversations SET last_inbound_at = now() - interval '2 hours'")
        .execute(&pool)
        .await
        .unwrap();
    let stale = conversation_row(&pool, "echoer").await;
    assert_eq!(say_echo("m4", "four").await, vec!["echo: four"]);
    let touched = poll::until(
        "the stale touch rewritten",
        Duration::from_secs(10),
        || async {
            let row = conversation_row(&pool, "echoer").await;
            (row.1 > stale.1 + 3_600.0).then_some(row)
        },
    )
    .await;
    assert_ne!(touched.0, stale.0);
    p.router.stop().await;
}
