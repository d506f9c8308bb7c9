//! Replayed signed webhooks: a Standard Webhooks signature stays valid for
//! five minutes, so a captured request can be sent again within them. A
//! second delivery under the same `webhook-id` is answered "duplicate" and
//! publishes nothing, on the replica that took the first or on another one
//! (the idempotency keys in PostgreSQL are shared); a real second state change
//! comes under a new `webhook-id` and is stored.
//!
//! Every tenant's webhooks are signed with the same secret and the signature
//! does not cover the URL, so the same captured request also verifies on
//! another tenant's URL: ingest binds a `webhook-id` to the first tenant that
//! presented it and refuses it (409) on every other tenant's URL. Outside the
//! timestamp tolerance the signature itself is refused (401).

use crate::ingest_support::{Harness, message, tenant};
use reqwest::StatusCode;
use sqlx::PgPool;
use switchyard_shared::standard_webhooks::SigningSecret;

const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DOWN: &str = r#"{"event":"disconnected"}"#;

/// Posts `body` to `url` signed under `webhook_id` at `timestamp`.
async fn post_signed(
    h: &Harness,
    url: &str,
    webhook_id: &str,
    timestamp: i64,
    body: &str,
) -> (StatusCode, String) {
    let secret = SigningSecret::parse(&SIGNING.into()).unwrap();
    let response = h
        .http
        .post(url)
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            secret.sign(webhook_id, timestamp, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn accepted() -> (StatusCode, String) {
    (StatusCode::OK, r#"{"status":"accepted"}"#.to_owned())
}

fn duplicate() -> (StatusCode, String) {
    (StatusCode::OK, r#"{"status":"duplicate"}"#.to_owned())
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_replayed_signed_disconnect_is_a_duplicate_and_a_new_one_is_stored(db: PgPool) {
    let h = Harness::start_with(db, &[("SWITCHYARD_SIGNING_SECRET", SIGNING)]).await;
    let url = h.hook_url("acme");
    let signed_at = now();

    let first = post_signed(&h, &url, "msg_down_1", signed_at, DOWN).await;
    // The same captured request, a little later but inside the tolerance.
    let replayed = post_signed(&h, &url, "msg_down_1", signed_at, DOWN).await;
    let second_drop = post_signed(&h, &url, "msg_down_2", now(), DOWN).await;

    assert_eq!(first, accepted());
    assert_eq!(replayed, duplicate());
    assert_eq!(second_drop, accepted());
    assert_eq!(h.inbound_count().await, 2);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_signed_request_replayed_to_another_replica_is_a_duplicate(db: PgPool) {
    let signing = [("SWITCHYARD_SIGNING_SECRET", SIGNING)];
    let h = Harness::start_with(db.clone(), &signing).await;
    let other = h.start_replica(db, &signing).await;
    let token = h.keys.token_for(&tenant("acme"));
    let there = format!("{other}/hook/acme/{token}");
    let signed_at = now();
    let chat = message("REPLAYED-1");

    let first = post_signed(&h, &h.hook_url("acme"), "msg_a", signed_at, DOWN).await;
    let first_message = post_signed(&h, &h.hook_url("acme"), "msg_b", signed_at, &chat).await;
    let replayed = post_signed(&h, &there, "msg_a", signed_at, DOWN).await;
    let replayed_message = post_signed(&h, &there, "msg_b", signed_at, &chat).await;

    assert_eq!((first, first_message), (accepted(), accepted()));
    assert_eq!((replayed, replayed_message), (duplicate(), duplicate()));
    assert_eq!(h.inbound_count().await, 2);
}

fn replayed_elsewhere() -> (StatusCode, String) {
    (
        StatusCode::CONFLICT,
        r#"{"error":"webhook-id was already delivered to another tenant's URL; replay refused"}"#
            .to_owned(),
    )
}

fn unauthorized() -> (StatusCode, String) {
    (
        StatusCode::UNAUTHORIZED,
        r#"{"error":"unauthorized"}"#.to_owned(),
    )
}

/// Messages the inbound stream holds for `tenant_raw`.
async fn inbound_of(h: &Harness, tenant_raw: &str) -> usize {
    let suffix = format!(".{tenant_raw}");
    h.inbound_messages()
        .await
        .iter()
        .filter(|m| m.subject.as_str().ends_with(&suffix))
        .count()
}

/// The `reason` sample of the rejection counter in this process.
fn rejected_total(reason: &str) -> f64 {
    let text = switchyard_shared::ops_server::metrics_handle().render();
    let prefix = format!("switchyard_ingest_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_signed_request_replayed_to_another_tenants_url_is_refused(db: PgPool) {
    let signing = [("SWITCHYARD_SIGNING_SECRET", SIGNING)];
    let h = Harness::start_with(db.clone(), &signing).await;
    // The other tenant's URL on another replica: the binding is fleet-wide.
    let other = h.start_replica(db, &signing).await;
    let globex_elsewhere = format!(
        "{other}/hook/globex/{}",
        h.keys.token_for(&tenant("globex"))
    );
    let signed_at = now();
    // No customer_ref, as the provider's reference shows its bodies: nothing
    // in the body names the tenant.
    let chat = message("CAPTURED-1");
    let refused_before = rejected_total("replayed_elsewhere");

    let originals = [
        post_signed(&h, &h.hook_url("acme"), "msg_down", signed_at, DOWN).await,
        post_signed(&h, &h.hook_url("acme"), "msg_chat", signed_at, &chat).await,
    ];
    let onto_globex = [
        post_signed(&h, &h.hook_url("globex"), "msg_down", signed_at, DOWN).await,
        post_signed(&h, &h.hook_url("globex"), "msg_chat", signed_at, &chat).await,
        post_signed(&h, &globex_elsewhere, "msg_chat", signed_at, &chat).await,
    ];
    let same_url_again = post_signed(&h, &h.hook_url("acme"), "msg_chat", signed_at, &chat).await;
    // Globex's own deliveries, with their own ids, are untouched.
    let globex_own = post_signed(&h, &h.hook_url("globex"), "msg_g", now(), DOWN).await;

    assert_eq!(originals, [accepted(), accepted()]);
    assert_eq!(
        onto_globex,
        [
            replayed_elsewhere(),
            replayed_elsewhere(),
            replayed_elsewhere()
        ]
    );
    assert_eq!(same_url_again, duplicate());
    assert_eq!(globex_own, accepted());
    assert_eq!(inbound_of(&h, "acme").await, 2);
    assert_eq!(inbound_of(&h, "globex").await, 1, "only globex's own event");
    assert!(
        rejected_total("replayed_elsewhere") >= refused_before + 3.0,
        "each refusal is counted"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_signed_request_outside_the_timestamp_tolerance_is_refused(db: PgPool) {
    let h = Harness::start_with(db, &[("SWITCHYARD_SIGNING_SECRET", SIGNING)]).await;
    let tolerance = switchyard_shared::standard_webhooks::DEFAULT_TOLERANCE.as_secs() as i64;
    let chat = message("STALE-1");

    // A request captured long ago, replayed on its own URL and on another's
    // (its id never seen: the guard does not help, the timestamp does).
    let stale = now() - tolerance - 5;
    let on_its_url = post_signed(&h, &h.hook_url("acme"), "msg_old", stale, &chat).await;
    let elsewhere = post_signed(&h, &h.hook_url("globex"), "msg_old", stale, &chat).await;
    let from_the_future = post_signed(
        &h,
        &h.hook_url("acme"),
        "msg_new",
        now() + tolerance + 5,
        &chat,
    )
    .await;

    assert_eq!(on_its_url, unauthorized());
    assert_eq!(elsewhere, unauthorized());
    assert_eq!(from_the_future, unauthorized());
    assert_eq!(h.inbound_count().await, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn webhook_ids_are_forgotten_once_their_signatures_cannot_verify(db: PgPool) {
    let h = Harness::start_with(db.clone(), &[("SWITCHYARD_SIGNING_SECRET", SIGNING)]).await;
    let signed_at = now();
    let (status, _) = post_signed(&h, &h.hook_url("acme"), "msg_kept", signed_at, DOWN).await;
    assert_eq!(status, StatusCode::OK);
    sqlx::query(
        "INSERT INTO signed_webhook_ids (webhook_id_sha256, tenant_id, expires_at) \
         VALUES (sha256('msg_gone'), 'acme', now() - interval '1 second')",
    )
    .execute(&db)
    .await
    .unwrap();

    let pruned = switchyard_ingest::prune::prune_webhook_ids(&db)
        .await
        .unwrap();

    let left: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM signed_webhook_ids")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(left, vec!["acme"], "the live id stays bound");
}
