//! The per-tenant admission limit at ingest, through the whole pipeline
//! (bridge simulator → ingest → router → sender → simulator): one tenant
//! flooding its webhook far over its limit beside quiet tenants. The quiet
//! tenants' webhooks are all answered 200 and all answered by their bot; the
//! flooder gets 429 for its excess, and every event of it that was answered
//! 2xx is answered by the bot exactly once, none that was refused.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use sqlx::PgPool;
use switchyard_bridge_sim::events::TextMessage;
use switchyard_tests::pipeline::{Pipeline, TenantSpec};

const WITHIN: Duration = Duration::from_secs(60);
/// Small limits so the flood is short: 10 events/s after a burst of 20.
const RATE: u32 = 10;
const BURST: u32 = 20;
const FLOOD: usize = 200;
const QUIET: [&str; 3] = ["quiet-a", "quiet-b", "quiet-c"];
const QUIET_EACH: usize = 10;

/// Posts `count` messages from distinct chats to `tenant`'s bridge webhook,
/// `concurrency` at once; returns each body with ingest's status.
async fn post_many(
    p: &Pipeline,
    tenant: &str,
    count: usize,
    concurrency: usize,
) -> Vec<(String, Option<u16>)> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            let body = format!("{tenant} #{i}");
            let from = format!("1555{:07}", i);
            let status = p
                .post(tenant, TextMessage::new(from, body.clone()).to_json())
                .await;
            (body, status)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_flooding_tenant_is_throttled_and_the_quiet_tenants_are_all_answered(pool: PgPool) {
    let mut tenants = vec![TenantSpec::echo("flood")];
    tenants.extend(QUIET.iter().map(|id| TenantSpec::echo(id)));
    let rate = RATE.to_string();
    let burst = BURST.to_string();
    let p = Pipeline::start_with_ingest_env(
        &pool,
        &tenants,
        &[
            ("SWITCHYARD_ADMISSION_RATE", &rate),
            ("SWITCHYARD_ADMISSION_BURST", &burst),
        ],
    )
    .await;

    // The flood and the quiet tenants' traffic at the same time.
    let started = Instant::now();
    let (flood, quiet) = tokio::join!(post_many(&p, "flood", FLOOD, 16), async {
        let mut all = Vec::new();
        for tenant in QUIET {
            all.push((tenant, post_many(&p, tenant, QUIET_EACH, 2).await));
        }
        all
    });
    let flood_secs = started.elapsed().as_secs_f64();

    let admitted: Vec<&String> = flood
        .iter()
        .filter(|(_, status)| *status == Some(200))
        .map(|(body, _)| body)
        .collect();
    let throttled: Vec<&String> = flood
        .iter()
        .filter(|(_, status)| *status == Some(429))
        .map(|(body, _)| body)
        .collect();
    let expected_sends = admitted.len() + QUIET.len() * QUIET_EACH;
    p.sim
        .wait_for_sends(expected_sends, WITHIN)
        .await
        .expect("every accepted event answered");
    p.settled(WITHIN).await;
    let mut answers: BTreeMap<(String, String), usize> = BTreeMap::new();
    for send in p.sends() {
        *answers.entry((send.customer_ref, send.body)).or_default() += 1;
    }
    let answered = |tenant: &str, body: &str| {
        answers
            .get(&(tenant.to_owned(), format!("echo: {body}")))
            .copied()
            .unwrap_or(0)
    };
    eprintln!(
        "flood: {} posted in {flood_secs:.2}s, {} admitted, {} throttled; {} sends in all",
        FLOOD,
        admitted.len(),
        throttled.len(),
        p.sends().len()
    );

    for (tenant, posted) in &quiet {
        for (body, status) in posted {
            assert_eq!(*status, Some(200), "{tenant}: {body}");
            assert_eq!(answered(tenant, body), 1, "{tenant}: {body} answered once");
        }
    }
    assert_eq!(
        admitted.len() + throttled.len(),
        FLOOD,
        "every flood event was answered 200 or 429: {flood:?}"
    );
    assert!(admitted.len() >= BURST as usize, "the burst passes");
    let allowance = BURST as f64 + RATE as f64 * (flood_secs + 1.0);
    assert!(
        (admitted.len() as f64) <= allowance,
        "{} admitted, at most {allowance:.0} allowed in {flood_secs:.2}s",
        admitted.len()
    );
    assert!(!throttled.is_empty(), "the excess is refused");
    for body in &admitted {
        assert_eq!(answered("flood", body), 1, "{body}: a 2xx answered once");
    }
    for body in &throttled {
        assert_eq!(answered("flood", body), 0, "{body}: a 429 never answered");
    }
    assert_eq!(p.sends().len(), expected_sends, "nothing else was sent");
}
