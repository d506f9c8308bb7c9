//! The Cloud API route of ingest (issue 22 point 3, docs/cloud-api.md 3.1–3.5),
//! in-process over a private nats-server and the test's database: Meta's
//! handshake, signatures (rotation included), a batch mixing tenants and an
//! unknown number split onto each tenant's own subject, a redelivered batch
//! absorbed, an over-limit tenant costing only itself, hostile bodies.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    cloud_support::{self, batch, cloud_tenant, sign, text},
    ingest_support::Harness,
};

async fn start(pool: PgPool, extra: &[(&str, &str)]) -> Harness {
    let mut env = cloud_support::ingest_env();
    env.extend_from_slice(extra);
    Harness::start_with(pool, &env).await
}

async fn post_signed(h: &Harness, body: &str, signature: Option<String>) -> (StatusCode, String) {
    let mut request = h
        .http
        .post(format!("{}/cloud", h.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().await.expect("ingest answers");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

async fn post(h: &Harness, body: &str) -> (StatusCode, String) {
    post_signed(h, body, Some(sign(body.as_bytes()))).await
}

/// (tenant of the subject, event, event_id) of every inbound message (the
/// stream's subjects carry a partition: `inbound.<partition>.<tenant>`).
async fn inbound(h: &Harness) -> Vec<(String, String, String)> {
    h.inbound_messages()
        .await
        .into_iter()
        .map(|m| {
            let body: Value = serde_json::from_slice(&m.payload).expect("JSON body");
            (
                m.subject.rsplit('.').next().unwrap_or_default().to_owned(),
                body["event"].as_str().unwrap_or_default().to_owned(),
                body["event_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_handshake_echoes_the_challenge_only_for_our_token(pool: PgPool) {
    let h = start(pool, &[]).await;
    let get = |query: String| {
        let url = format!("{}/cloud?{query}", h.base);
        let http = h.http.clone();
        async move {
            let r = http.get(url).send().await.expect("answer");
            (r.status(), r.text().await.unwrap_or_default())
        }
    };
    let token = cloud_support::VERIFY_TOKEN;
    let (status, body) = get(format!(
        "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}"
    ))
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "1158201444"));
    for (query, why) in [
        (
            "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong".to_owned(),
            "wrong token",
        ),
        (
            format!("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token={token}"),
            "wrong mode",
        ),
        (
            format!("hub.mode=subscribe&hub.verify_token={token}"),
            "no challenge",
        ),
        (
            format!("hub.mode=subscribe&hub.challenge=%3Cscript%3E%20x&hub.verify_token={token}"),
            "a challenge that is not a plain token",
        ),
        (
            format!(
                "hub.mode=subscribe&hub.challenge={}&hub.verify_token={token}",
                "9".repeat(300)
            ),
            "too long",
        ),
    ] {
        let (status, body) = get(query).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{why}");
        assert!(
            !body.contains("script"),
            "{why}: the challenge is never reflected: {body}"
        );
    }
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn without_cloud_settings_the_route_does_not_exist(pool: PgPool) {
    let h = Harness::start(pool).await;
    let body = batch("W", &[]);
    assert_eq!(post(&h, &body).await.0, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn unsigned_or_wrongly_signed_batches_are_refused_and_nothing_is_published(pool: PgPool) {
    let h = start(pool.clone(), &[]).await;
    cloud_tenant(&pool, "acme", "PN1", "WABA1", "tok-acme").await;
    let body = batch("WABA1", &[text("PN1", "wamid.1", "111", "hi")]);
    let wrong = switchyard_shared::cloud_api::signature::sign_with(
        &"other-secret".to_owned().into(),
        body.as_bytes(),
    );
    for (signature, why) in [
        (None, "missing"),
        (Some("sha256=abc".to_owned()), "malformed"),
        (Some(wrong), "another secret"),
        // Signed over a different body (a re-encoded one).
        (Some(sign(format!("{body} ").as_bytes())), "another body"),
    ] {
        let (status, answer) = post_signed(&h, &body, signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {answer}");
        assert!(
            answer.contains("X-Hub-Signature-256"),
            "{why}: a specific error: {answer}"
        );
    }
    assert_eq!(h.inbound_count().await, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_previous_app_secret_is_accepted_during_a_rotation(pool: PgPool) {
    // The secret the tests sign with is now the previous one.
    let h = start(
        pool.clone(),
        &[
            ("SWITCHYARD_CLOUD_APP_SECRET", "the-new-app-secret"),
            (
                "SWITCHYARD_CLOUD_APP_SECRET_PREVIOUS",
                cloud_support::APP_SECRET,
            ),
        ],
    )
    .await;
    cloud_tenant(&pool, "acme", "PN1", "WABA1", "tok-acme").await;
    let body = batch("WABA1", &[text("PN1", "wamid.1", "111", "hi")]);
    assert_eq!(post(&h, &body).await.0, StatusCode::OK);
    assert_eq!(h.inbound_count().await, 1);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_batch_mixing_three_tenants_and_an_unknown_number_lands_on_each_tenants_own_subject(
    pool: PgPool,
) {
    let h = start(pool.clone(), &[]).await;
    let acme = cloud_tenant(&pool, "acme", "PN1", "WABA1", "tok-a").await;
    let globex = cloud_tenant(&pool, "globex", "PN2", "WABA1", "tok-g").await;
    let initech = cloud_tenant(&pool, "initech", "PN3", "WABA2", "tok-i").await;
    // A suspended Cloud tenant and a number under the wrong WABA.
    cloud_tenant(&pool, "gone", "PN4", "WABA1", "tok-x").await;
    sqlx::query("UPDATE tenants SET status = 'suspended' WHERE id = 'gone'")
        .execute(&pool)
        .await
        .unwrap();
    let mut root: Value = serde_json::from_str(&batch(
        "WABA1",
        &[
            text("PN1", "wamid.a1", "111", "for acme"),
            text("PN2", "wamid.g1", "222", "for globex"),
            text("PN9", "wamid.x1", "999", "nobody's number"),
            text("PN4", "wamid.s1", "444", "suspended"),
            text("PN3", "wamid.w1", "333", "right number, wrong WABA"),
        ],
    ))
    .unwrap();
    let second: Value = serde_json::from_str(&batch(
        "WABA2",
        &[text("PN3", "wamid.i1", "333", "for initech")],
    ))
    .unwrap();
    root["entry"]
        .as_array_mut()
        .unwrap()
        .push(second["entry"][0].clone());
    // A status and a template update ride in the same POST.
    root["entry"][0]["changes"].as_array_mut().unwrap().push(json!({"field": "messages", "value": {
        "metadata": {"phone_number_id": "PN2"},
        "statuses": [{"id": "wamid.out1", "status": "read", "timestamp": "1750000001", "recipient_id": "222"}]}}));
    root["entry"][1]["changes"].as_array_mut().unwrap().push(json!({
        "field": "message_template_status_update",
        "value": {"event": "APPROVED", "message_template_name": "order_update", "message_template_language": "en_US"}}));
    let body = root.to_string();
    let (status, answer) = post(&h, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut got = inbound(&h).await;
    got.sort();
    let mut want = vec![
        (
            acme.to_string(),
            "cloud.message".to_owned(),
            "cloud:msg:PN1:wamid.a1".to_owned(),
        ),
        (
            globex.to_string(),
            "cloud.message".to_owned(),
            "cloud:msg:PN2:wamid.g1".to_owned(),
        ),
        (
            globex.to_string(),
            "cloud.status".to_owned(),
            "cloud:st:PN2:wamid.out1:read".to_owned(),
        ),
        (
            initech.to_string(),
            "cloud.message".to_owned(),
            "cloud:msg:PN3:wamid.i1".to_owned(),
        ),
    ];
    want.sort();
    let template: Vec<_> = got
        .iter()
        .filter(|(_, e, _)| e == "cloud.account")
        .cloned()
        .collect();
    got.retain(|(_, e, _)| e != "cloud.account");
    assert_eq!(got, want);
    // The template update of WABA2 goes to WABA2's tenant only.
    assert_eq!(template.len(), 1, "{template:?}");
    assert_eq!(template[0].0, initech.to_string());

    // Meta redelivers the same batch: every item is a duplicate, nothing new.
    let (status, answer) = post(&h, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.contains("\"accepted\":0"), "{answer}");
    assert_eq!(h.inbound_count().await, 5);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_tenant_over_its_limit_costs_only_its_own_items_and_keeps_their_order(pool: PgPool) {
    let h = start(
        pool.clone(),
        &[
            ("SWITCHYARD_ADMISSION_RATE", "1"),
            ("SWITCHYARD_ADMISSION_BURST", "2"),
        ],
    )
    .await;
    cloud_tenant(&pool, "flood", "PN1", "WABA1", "tok-f").await;
    cloud_tenant(&pool, "quiet", "PN2", "WABA1", "tok-q").await;
    let mut items: Vec<_> = (0..5)
        .map(|i| text("PN1", &format!("wamid.f{i}"), "111", "flood"))
        .collect();
    items.push(text("PN2", "wamid.q0", "222", "quiet"));
    let body = batch("WABA1", &items);
    let (status, answer) = post(&h, &body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    let got = inbound(&h).await;
    let ids: Vec<&str> = got.iter().map(|(_, _, id)| id.as_str()).collect();
    assert!(
        ids.contains(&"cloud:msg:PN2:wamid.q0"),
        "the quiet tenant's item is in: {ids:?}"
    );
    // The flooder's first two (its burst), in order, and nothing after them.
    let flood: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| id.contains("wamid.f"))
        .collect();
    assert_eq!(flood, ["cloud:msg:PN1:wamid.f0", "cloud:msg:PN1:wamid.f1"]);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn hostile_and_odd_bodies_get_specific_answers_and_cost_nothing_else(pool: PgPool) {
    let h = start(pool.clone(), &[("SWITCHYARD_CLOUD_MAX_BODY_BYTES", "4096")]).await;
    cloud_tenant(&pool, "acme", "PN1", "WABA1", "tok-a").await;
    // Over the route's own limit: 413.
    let big = batch(
        "WABA1",
        &[text("PN1", "wamid.big", "111", &"x".repeat(5000))],
    );
    assert_eq!(post(&h, &big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Signed but not a WhatsApp batch: answered 200 (a retry cannot fix it), dropped.
    for odd in [
        "not json",
        r#"{"object":"page","entry":[]}"#,
        r#"{"object":"whatsapp_business_account"}"#,
    ] {
        let (status, answer) = post(&h, odd).await;
        assert_eq!(status, StatusCode::OK, "{odd}");
        assert!(answer.contains("dropped"), "{answer}");
    }
    // One unreadable item beside a good one: the good one goes through.
    let mut root: Value =
        serde_json::from_str(&batch("WABA1", &[text("PN1", "wamid.ok", "111", "fine")])).unwrap();
    root["entry"][0]["changes"].as_array_mut().unwrap().push(json!({"field": "messages", "value": {
        "metadata": {"phone_number_id": "PN1"}, "messages": [{"from": "111", "text": {"body": "no id"}}]}}));
    root["entry"][0]["changes"].as_array_mut().unwrap().push(json!({"field": "messages", "value": {
        "metadata": {"phone_number_id": "PN1"}, "messages": [{"from": "", "id": "wamid.bad", "timestamp": "x"}]}}));
    assert_eq!(post(&h, &root.to_string()).await.0, StatusCode::OK);
    let ids: Vec<String> = inbound(&h).await.into_iter().map(|(_, _, id)| id).collect();
    assert!(
        ids.contains(&"cloud:msg:PN1:wamid.ok".to_owned()),
        "{ids:?}"
    );
    // A cloud.* body on a bridge's own URL is refused: only ingest writes those.
    let forged = json!({"event": "cloud.message", "event_id": "cloud:msg:PN1:wamid.forged",
        "message": {"from": "1", "id": "wamid.forged", "timestamp": "1", "type": "text"}});
    let (status, answer) = h.post("acme", forged.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.contains("Cloud API route"), "{answer}");
}
