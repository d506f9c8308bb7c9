//! Replayed signed webhooks: a Standard Webhooks signature stays valid for
//! five minutes, so a captured request can be sent again within them. A
//! second delivery under the same `webhook-id` is answered "duplicate" and
//! publishes nothing, on the replica that took the first or on another one
//! (the idempotency keys in PostgreSQL are shared); a real second state change
//! comes under a new `webhook-id` and is stored.

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
