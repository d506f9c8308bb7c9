//! Cloud API templates end to end (issue 22 points 5 and 6;
//! docs/cloud-api.md sections 7 and 8): Meta's review event moves a stored
//! template's status, and a reply whose customer-service window has closed
//! goes as the tenant's fallback template (once per chat until the customer
//! writes again) or is dead-lettered with the reason, without a call.
//!
//! The services run with a 60 s window and a 20 s margin, as in
//! `cloud_window`: a message written 45 s ago still gets its bot turn while
//! its reply is already past `window - margin`.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use switchyard_bridge_sim::cloud::Batch;
use switchyard_shared::{
    cloud_api::{
        template_store::{self, NewTemplate},
        templates::{Category, Components, Language, TemplateName, TemplateStatus},
    },
    ids::TenantId,
    lanes::dead_letter,
    subjects,
};
use switchyard_tests::{poll, traffic};

use crate::cloud_support::{self, CloudRig, text_written_at, unix_now};

const WITHIN: Duration = Duration::from_secs(30);
const FALLBACK_BODY: &str = "We could not answer in time. Your request: {{1}}. Reply to continue.";

async fn start(pool: &PgPool) -> CloudRig {
    cloud_support::start_rig(
        pool,
        &[
            ("SWITCHYARD_CLOUD_WINDOW", "60s"),
            ("SWITCHYARD_CLOUD_WINDOW_MARGIN", "20s"),
        ],
    )
    .await
}

async fn post(rig: &CloudRig, batch: Batch) {
    let report = rig.cloud.post_batch(&batch).await.expect("post");
    assert!(
        report.first.as_ref().is_some_and(|d| d.acknowledged()),
        "{report:?}"
    );
}

/// Stores a template for `tenant` as `templates add` would after Meta's answer.
async fn store(
    pool: &PgPool,
    tenant: &str,
    name: &str,
    body: &str,
    status: &str,
    meta_id: Option<&str>,
) {
    let components = Components::parse(json!([{"type": "BODY", "text": body}])).unwrap();
    template_store::upsert(
        pool,
        &TenantId::parse(tenant).unwrap(),
        &NewTemplate {
            name: &TemplateName::parse(name).unwrap(),
            language: &Language::parse("en_US").unwrap(),
            category: Category::Utility,
            components: &components,
            status: &TemplateStatus::parse(status),
            meta_id,
        },
    )
    .await
    .expect("store the template");
}

async fn set_fallback(pool: &PgPool, tenant: &str, name: &str) {
    let set = template_store::set_fallback(
        pool,
        &TenantId::parse(tenant).unwrap(),
        Some((name, "en_US")),
    )
    .await
    .expect("set the fallback");
    assert!(set);
}

async fn ledger(pool: &PgPool, tenant: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT status, provider_message_id FROM deliveries WHERE tenant_id = $1 ORDER BY first_attempt_at, reply_id",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .expect("ledger")
}

fn calls_on(rig: &CloudRig, number: &str) -> usize {
    rig.cloud
        .sends()
        .iter()
        .filter(|s| s.phone_number_id == number)
        .count()
}

/// The dead letters of `tenant`'s replies: (reason, detail).
async fn letters(rig: &CloudRig, tenant: &str) -> Vec<(String, String)> {
    traffic::read_stream(
        &rig.p.js,
        subjects::DLQ_STREAM,
        &format!("dlq.outbound.{tenant}"),
    )
    .await
    .into_iter()
    .map(|(_, headers, _)| {
        let get = |h: &str| {
            headers
                .get(h)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        (
            get(dead_letter::HEADER_REASON),
            get(dead_letter::HEADER_LAST_ERROR),
        )
    })
    .collect()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn metas_review_event_approves_the_stored_template_of_that_tenant_only(pool: PgPool) {
    let rig = start(&pool).await;
    store(
        &pool,
        "cloud-a",
        "order_update",
        "Order {{1}} shipped",
        "PENDING",
        None,
    )
    .await;
    let at_meta = rig
        .cloud
        .seed_template_with(
            "WABA1",
            "order_update",
            "en_US",
            "PENDING",
            json!([{"type": "BODY", "text": "Order {{1}} shipped"}]),
        )
        .expect("seed");

    // cloud-b shares WABA1, so the event reaches it too: it holds no such
    // template, and none is created for it.
    let report = rig
        .cloud
        .set_template_status("WABA1", "order_update", "en_US", "APPROVED", true)
        .await
        .expect("status event")
        .expect("posted");
    assert!(
        report.first.as_ref().is_some_and(|d| d.acknowledged()),
        "{report:?}"
    );

    let row = poll::until("cloud-a's template approved", WITHIN, || async {
        let t = template_store::fetch_in(
            &pool,
            &TenantId::parse("cloud-a").unwrap(),
            "order_update",
            "en_US",
        )
        .await
        .expect("read")?;
        (t.status == TemplateStatus::Approved).then_some(t)
    })
    .await;
    assert_eq!(
        row.meta_id.as_deref(),
        Some(at_meta.id.as_str()),
        "Meta's id kept"
    );
    rig.p.settled(WITHIN).await;
    let others: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cloud_templates WHERE tenant_id <> 'cloud-a'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(others, 0, "an unknown template is never created");

    // A pause follows the same way and is kept with Meta's word.
    rig.cloud
        .set_template_status("WABA1", "order_update", "en_US", "PAUSED", true)
        .await
        .expect("pause event");
    poll::until("cloud-a's template paused", WITHIN, || async {
        let t = template_store::fetch_in(
            &pool,
            &TenantId::parse("cloud-a").unwrap(),
            "order_update",
            "en_US",
        )
        .await
        .expect("read")?;
        (t.status == TemplateStatus::Paused).then_some(())
    })
    .await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_reply_outside_the_window_goes_as_the_fallback_template_once_per_chat(pool: PgPool) {
    let rig = start(&pool).await;
    store(
        &pool,
        "cloud-a",
        "reengage",
        FALLBACK_BODY,
        "APPROVED",
        None,
    )
    .await;
    set_fallback(&pool, "cloud-a", "reengage").await;
    rig.cloud
        .seed_template_with(
            "WABA1",
            "reengage",
            "en_US",
            "APPROVED",
            json!([{"type": "BODY", "text": FALLBACK_BODY}]),
        )
        .expect("seed");

    post(
        &rig,
        Batch::new().item(text_written_at(
            "PN1",
            "wamid.late1",
            "17770101",
            "where is\nmy   order?",
            unix_now() - 45,
        )),
    )
    .await;
    let wired = poll::until("the reply wired as the fallback", WITHIN, || async {
        let rows = ledger(&pool, "cloud-a").await;
        (rows.len() == 1 && rows[0].0 == "wired").then_some(rows)
    })
    .await;

    let sends = rig.cloud.accepted_sends();
    assert_eq!(sends.len(), 1, "{sends:#?}");
    let send = &sends[0];
    assert_eq!(send.phone_number_id, "PN1");
    assert_eq!(send.kind.as_deref(), Some("template"));
    assert_eq!(
        send.token.as_ref().map(|t| t.as_str()),
        Some(rig.tenants[0].2.as_str()),
        "cloud-a's own token"
    );
    assert_eq!(send.to.as_deref(), Some("+17770101"));
    assert_eq!(send.body["template"]["name"], "reengage");
    assert_eq!(send.body["template"]["language"]["code"], "en_US");
    assert_eq!(
        send.body["template"]["components"][0]["parameters"][0]["text"], "echo: where is my order?",
        "the reply's text, flattened"
    );
    assert_eq!(
        wired[0].1, send.wamid,
        "the ledger follows the template's wamid"
    );

    // The same customer's next message (still not answered in time): the
    // fallback already went to this chat since they last wrote.
    post(
        &rig,
        Batch::new().item(text_written_at(
            "PN1",
            "wamid.late2",
            "17770101",
            "hello?",
            unix_now() - 44,
        )),
    )
    .await;
    poll::until("the second reply dead-lettered", WITHIN, || async {
        let rows = ledger(&pool, "cloud-a").await;
        (rows.iter().filter(|r| r.0 == "dead").count() == 1).then_some(())
    })
    .await;
    assert_eq!(calls_on(&rig, "PN1"), 1, "{:#?}", rig.cloud.sends());
    let dead = letters(&rig, "cloud-a").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, "window_closed");
    assert!(
        dead[0].1.contains("already sent to this chat"),
        "{}",
        dead[0].1
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn without_an_approved_fallback_a_late_reply_is_dead_lettered_with_the_reason_and_no_call(
    pool: PgPool,
) {
    let rig = start(&pool).await;
    // cloud-b's fallback is paused in our table; Meta (the simulator) would
    // still accept it, so only our own check can stop the call.
    store(&pool, "cloud-b", "reengage", FALLBACK_BODY, "PAUSED", None).await;
    set_fallback(&pool, "cloud-b", "reengage").await;
    rig.cloud
        .seed_template_with(
            "WABA1",
            "reengage",
            "en_US",
            "APPROVED",
            json!([{"type": "BODY", "text": FALLBACK_BODY}]),
        )
        .expect("seed");
    let written = unix_now() - 45;

    post(
        &rig,
        Batch::new()
            .item(text_written_at(
                "PN1", "wamid.a", "17770201", "anyone?", written,
            ))
            .item(text_written_at(
                "PN2", "wamid.b", "17770202", "anyone?", written,
            )),
    )
    .await;
    for tenant in ["cloud-a", "cloud-b"] {
        poll::until(
            &format!("{tenant}'s reply dead-lettered"),
            WITHIN,
            || async { (letters(&rig, tenant).await.len() == 1).then_some(()) },
        )
        .await;
    }

    assert_eq!(rig.cloud.sends().len(), 0, "{:#?}", rig.cloud.sends());
    let (reason_a, detail_a) = letters(&rig, "cloud-a").await.remove(0);
    let (reason_b, detail_b) = letters(&rig, "cloud-b").await.remove(0);
    assert_eq!(
        (reason_a.as_str(), reason_b.as_str()),
        ("window_closed", "window_closed")
    );
    assert!(
        detail_a.contains("no fallback template is configured"),
        "{detail_a}"
    );
    assert!(
        detail_b.contains("fallback template reengage (en_US) is not approved (status PAUSED)"),
        "{detail_b}"
    );
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM cloud_fallback_sends")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(claims, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn metas_refusal_of_the_fallback_keeps_its_outcome_and_gives_the_chat_back(pool: PgPool) {
    let rig = start(&pool).await;
    // Our table lags: Meta paused the template already.
    store(
        &pool,
        "cloud-c",
        "reengage",
        FALLBACK_BODY,
        "APPROVED",
        None,
    )
    .await;
    set_fallback(&pool, "cloud-c", "reengage").await;
    rig.cloud
        .seed_template_with(
            "WABA2",
            "reengage",
            "en_US",
            "PAUSED",
            json!([{"type": "BODY", "text": FALLBACK_BODY}]),
        )
        .expect("seed");

    post(
        &rig,
        Batch::new().item(text_written_at(
            "PN3",
            "wamid.c1",
            "17770301",
            "hi",
            unix_now() - 45,
        )),
    )
    .await;
    poll::until("cloud-c's reply dead-lettered", WITHIN, || async {
        (letters(&rig, "cloud-c").await.len() == 1).then_some(())
    })
    .await;

    let sends = rig.cloud.sends();
    assert_eq!(sends.len(), 1, "{sends:#?}");
    assert_eq!(sends[0].error_code, Some(132015));
    let (reason, detail) = letters(&rig, "cloud-c").await.remove(0);
    // Meta's code names the reason in the detail (as for every Cloud dead
    // letter but `window_closed`, which has its own code).
    assert_eq!(reason, "rejected", "{detail}");
    assert!(
        detail.starts_with("template_paused: Cloud API error 132015"),
        "{detail}"
    );
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM cloud_fallback_sends")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        claims, 0,
        "nothing was sent, so the chat may get the fallback later"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_fallback_stops_at_ninety_percent_of_the_numbers_messaging_limit(pool: PgPool) {
    let rig = start(&pool).await;
    store(
        &pool,
        "cloud-a",
        "reengage",
        FALLBACK_BODY,
        "APPROVED",
        None,
    )
    .await;
    set_fallback(&pool, "cloud-a", "reengage").await;
    rig.cloud
        .seed_template_with(
            "WABA1",
            "reengage",
            "en_US",
            "APPROVED",
            json!([{"type": "BODY", "text": FALLBACK_BODY}]),
        )
        .expect("seed");
    // PN1 is on TIER_250 (at Meta and in our row): 225 customers a day
    // outside the window at most; 224 were reached today already.
    rig.cloud
        .set_messaging_limit("PN1", "TIER_250", "DOWNGRADE", false)
        .await
        .expect("tier");
    sqlx::query(
        "UPDATE cloud_channels SET messaging_limit = 'TIER_250' WHERE tenant_id = 'cloud-a'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO cloud_fallback_sends (tenant_id, chat_id, reply_id, sent_at) \
         SELECT 'cloud-a', '1888' || n, 'earlier-' || n, now() - interval '1 hour' \
           FROM generate_series(1, 224) n",
    )
    .execute(&pool)
    .await
    .unwrap();
    let written = unix_now() - 45;

    // The 225th customer gets the fallback.
    post(
        &rig,
        Batch::new().item(text_written_at(
            "PN1", "wamid.t1", "17770301", "hello?", written,
        )),
    )
    .await;
    poll::until("the 225th customer's fallback", WITHIN, || async {
        (calls_on(&rig, "PN1") == 1).then_some(())
    })
    .await;
    let sent = rig.cloud.accepted_sends();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].kind.as_deref(), Some("template"));

    // The 226th does not: dead-lettered with the limit, no call.
    post(
        &rig,
        Batch::new().item(text_written_at(
            "PN1", "wamid.t2", "17770302", "hello?", written,
        )),
    )
    .await;
    let letter = poll::until(
        "the 226th customer's reply dead-lettered",
        WITHIN,
        || async { letters(&rig, "cloud-a").await.pop() },
    )
    .await;
    assert_eq!(letter.0, "window_closed");
    assert!(
        letter.1.contains("messaging limit TIER_250") && letter.1.contains("(225)"),
        "{}",
        letter.1
    );
    assert_eq!(calls_on(&rig, "PN1"), 1, "{:#?}", rig.cloud.sends());
}
