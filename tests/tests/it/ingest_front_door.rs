//! Ingest as the front door an attacker sees: every refusal gets its
//! documented answer (docs/ingest.md) and nothing refused is ever published;
//! what the provider documents is accepted.

use std::time::Duration;

use crate::{
    ingest_support::{self, DOC_MESSAGE, Harness, message, tenant},
    log_capture::LogBuffer,
};
use futures::StreamExt as _;
use reqwest::StatusCode;
use sqlx::PgPool;
use switchyard_shared::{standard_webhooks::SigningSecret, subjects, webhook_auth::WebhookKeys};
use switchyard_tests::poll;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Sends a request with exactly this path (no client-side normalisation), as an
/// attacker would, and returns the status code.
async fn raw_post(base: &str, path: &str, body: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// Subscribes to everything, runs `act`, then publishes a fence event and
/// returns every non-internal subject seen up to the fence. Publishes from one
/// connection reach a subscriber in order, so anything `act` caused to be
/// published shows up before the fence.
async fn subjects_published_during<F: std::future::Future<Output = ()>>(
    h: &Harness,
    act: F,
) -> Vec<String> {
    let watcher = async_nats::connect(h.nats.url()).await.expect("watcher");
    let mut everything = watcher.subscribe(">").await.expect("subscribe >");
    watcher.flush().await.expect("flush");
    act.await;
    let (status, _) = h.post("fence", message("FENCE-1")).await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = everything.next().await {
            let subject = m.subject.to_string();
            if subject.starts_with('$') || subject.starts_with("_INBOX") {
                continue;
            }
            let fence = subject == subjects::inbound(&tenant("fence"));
            seen.push(subject);
            if fence {
                break;
            }
        }
    })
    .await
    .expect("the fence event arrives");
    seen
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_bad_token_is_answered_401_and_nothing_is_published(db: PgPool) {
    let h = Harness::start(db).await;
    let acme_token = h.keys.token_for(&tenant("acme"));
    let other_secret = WebhookKeys::new("not-our-secret".into(), None);

    let answers = vec![
        // Another tenant's token.
        h.post_to(
            &format!("{}/hook/globex/{acme_token}", h.base),
            message("M1"),
        )
        .await,
        // A token under a secret we never had.
        h.post_to(
            &other_secret.webhook_url(&h.base, &tenant("acme")),
            message("M2"),
        )
        .await,
        // Garbage and truncated tokens.
        h.post_to(&format!("{}/hook/acme/garbage", h.base), message("M3"))
            .await,
        h.post_to(
            &format!(
                "{}/hook/acme/{}",
                h.base,
                &acme_token[..acme_token.len() - 1]
            ),
            message("M4"),
        )
        .await,
    ];

    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body, r#"{"error":"unauthorized"}"#,
            "no detail for attackers"
        );
    }
    assert_eq!(h.inbound_count().await, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn hostile_customer_refs_in_the_url_are_refused_and_never_published_anywhere(db: PgPool) {
    let h = Harness::start(db).await;
    let token = h.keys.token_for(&tenant("acme"));
    let too_long = "a".repeat(64);
    let hostile_paths = [
        format!("/hook/./{token}"),
        format!("/hook/*/{token}"),
        format!("/hook/%3E/{token}"),
        format!("/hook/a.b/{token}"),
        format!("/hook/a.%3E/{token}"),
        format!("/hook/%20/{token}"),
        format!("/hook/a%09b/{token}"),
        format!("/hook/$SYS/{token}"),
        format!("/hook/%C3%A9/{token}"),
        format!("/hook/%FF/{token}"),
        format!("/hook/ACME/{token}"),
        format!("/hook/{too_long}/{token}"),
        format!("/hook//{token}"),
        "/hook/acme".to_owned(),
        format!("/hook/acme/{token}/extra"),
    ];
    let body = message("HOSTILE-1");

    let mut statuses = Vec::new();
    let seen = subjects_published_during(&h, async {
        for path in &hostile_paths {
            statuses.push((path.clone(), raw_post(&h.base, path, &body).await));
        }
    })
    .await;

    for (path, status) in statuses {
        assert_eq!(status, 401, "{path}");
    }
    assert_eq!(
        seen,
        vec!["inbound.fence".to_owned()],
        "only the fence was published"
    );
    assert_eq!(h.inbound_count().await, 1);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn hostile_customer_refs_in_the_body_are_refused_and_never_published_anywhere(db: PgPool) {
    let h = Harness::start(db).await;
    let too_long = "a".repeat(64);
    let hostile = [
        ".", "*", ">", "a.b", "acme.>", " ", "acme ", "\t", "$SYS", "é", "ACME", &too_long, "",
    ];

    let mut answers = Vec::new();
    let seen = subjects_published_during(&h, async {
        for customer_ref in hostile {
            let body = serde_json::json!({
                "event": "message", "customer_ref": customer_ref, "message_id": "HOSTILE-2",
                "chat_id": "15550001234@s.whatsapp.net", "from_me": false, "timestamp": 1777180605
            });
            answers.push((customer_ref, h.post("acme", body.to_string()).await));
        }
    })
    .await;

    for (customer_ref, (status, text)) in answers {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{customer_ref:?}");
        assert!(text.contains("customer_ref"), "{customer_ref:?}: {text}");
    }
    assert_eq!(seen, vec!["inbound.fence".to_owned()]);
    assert_eq!(h.inbound_count().await, 1);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_body_naming_another_tenant_is_answered_400_and_not_published(db: PgPool) {
    let h = Harness::start(db).await;

    let (status, text) = h.post("acme", DOC_MESSAGE).await; // names cust_8842

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("does not match"), "{text}");
    assert_eq!(h.inbound_count().await, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_body_over_the_limit_is_answered_413_and_one_at_the_limit_is_accepted(db: PgPool) {
    let h = Harness::start_with(db, &[("SWITCHYARD_MAX_BODY_BYTES", "1024")]).await;
    let padded = |id: &str, len: usize| {
        let base = message(id);
        let pad = len - base.len() - r#","pad":"""#.len();
        format!(
            r#"{},"pad":"{}"}}"#,
            &base[..base.len() - 1],
            "x".repeat(pad)
        )
    };
    let at_limit = padded("FITS", 1024);
    let over = padded("TOO-BIG", 1025);
    assert_eq!((at_limit.len(), over.len()), (1024, 1025));

    let (over_status, over_text) = h.post("acme", over).await;
    let (fits_status, _) = h.post("acme", at_limit).await;
    let (huge_status, _) = h.post("acme", "x".repeat(2_000_000)).await;

    assert_eq!(over_status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(over_text.contains("1024"), "{over_text}");
    assert_eq!(huge_status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(fits_status, StatusCode::OK);
    assert_eq!(h.inbound_count().await, 1);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_default_body_limit_is_64_kib(db: PgPool) {
    let h = Harness::start(db).await;
    let body = format!(r#"{{"event":"x","pad":"{}"}}"#, "x".repeat(64 * 1024));

    let (status, _) = h.post("acme", body).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.inbound_count().await, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn malformed_bodies_are_answered_400_with_the_precise_reason(db: PgPool) {
    let h = Harness::start(db).await;
    let cases = [
        ("{not json", "not valid JSON"),
        ("[1,2]", "\\\"event\\\""),
        (r#"{"no_event":1}"#, "event"),
        (
            r#"{"event":"message","message_id":"M1","from_me":false,"timestamp":1}"#,
            "chat_id",
        ),
        (
            r#"{"event":"message","message_id":"M1","chat_id":"c","timestamp":1}"#,
            "from_me",
        ),
        (
            r#"{"event":"message","message_id":"a b","chat_id":"c","from_me":false,"timestamp":1}"#,
            "message_id",
        ),
        ("", "not valid JSON"),
    ];

    for (body, reason) in cases {
        let (status, text) = h.post("acme", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            text.contains(reason),
            "{body}: {text} should mention {reason}"
        );
    }
    assert_eq!(h.inbound_count().await, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_documented_wa_bridges_examples_are_accepted(db: PgPool) {
    let h = Harness::start(db).await;
    let examples = [
        ("cust_8842", DOC_MESSAGE.to_owned()),
        ("cust_8842", r#"{"event":"connected","phone":"15550001234"}"#.to_owned()),
        ("cust_8842", r#"{"event":"disconnected"}"#.to_owned()),
        (
            "cust_8842",
            r#"{"event":"poll_vote","contact_id":"15550001234@s.whatsapp.net","phone":"15550001234","chat_id":"15550001234@s.whatsapp.net","poll_id":"P1","message_id":"PV1","name":"Alice","from_me":false,"timestamp":1777180606,"options":["Yes"]}"#.to_owned(),
        ),
        // Events without customer_ref in the body take the tenant from the URL.
        ("acme", message("ACME-1")),
        // Undocumented event types are kept: the router decides.
        ("acme", r#"{"event":"call_offer","from":"15550001234"}"#.to_owned()),
    ];

    for (tenant_raw, body) in &examples {
        let (status, text) = h.post(tenant_raw, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}: {text}");
        assert_eq!(text, r#"{"status":"accepted"}"#);
    }

    let stored = h.inbound_messages().await;
    assert_eq!(stored.len(), examples.len());
    for (m, (tenant_raw, body)) in stored.iter().zip(&examples) {
        assert_eq!(subjects::tenant_of(&m.subject), Some(tenant(tenant_raw)));
        assert_eq!(
            &m.payload[..],
            body.as_bytes(),
            "published exactly as received"
        );
    }
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn typing_events_are_dropped_at_the_edge_by_default(db: PgPool) {
    let h = Harness::start(db).await;
    let typing = r#"{"event":"typing","contact_id":"1@s.whatsapp.net","chat_id":"1@s.whatsapp.net","state":"composing","mode":"text"}"#;

    let (status, text) = h.post("acme", typing).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, r#"{"status":"dropped"}"#);
    assert_eq!(h.inbound_count().await, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn typing_events_are_published_when_dropping_is_turned_off(db: PgPool) {
    let h = Harness::start_with(db, &[("SWITCHYARD_DROP_TYPING", "false")]).await;
    let typing = r#"{"event":"typing","chat_id":"1@s.whatsapp.net","state":"paused"}"#;

    let (status, _) = h.post("acme", typing).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.inbound_count().await, 1);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_token_from_the_previous_secret_is_accepted_during_rotation(db: PgPool) {
    let h = Harness::start_with(
        db,
        &[
            ("SWITCHYARD_WEBHOOK_SECRET", "the-new-secret"),
            ("SWITCHYARD_WEBHOOK_SECRET_PREVIOUS", ingest_support::SECRET),
        ],
    )
    .await;
    let new_keys = WebhookKeys::new("the-new-secret".into(), None);
    let older_keys = WebhookKeys::new("an-even-older-secret".into(), None);

    let (previous, _) = h.post("acme", message("ROT-1")).await; // h.keys: the previous secret
    let (current, _) = h
        .post_to(
            &new_keys.webhook_url(&h.base, &tenant("acme")),
            message("ROT-2"),
        )
        .await;
    let (older, _) = h
        .post_to(
            &older_keys.webhook_url(&h.base, &tenant("acme")),
            message("ROT-3"),
        )
        .await;

    assert_eq!(previous, StatusCode::OK);
    assert_eq!(current, StatusCode::OK);
    assert_eq!(older, StatusCode::UNAUTHORIZED);
    assert_eq!(h.inbound_count().await, 2);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn with_a_signing_secret_only_correctly_signed_webhooks_are_accepted(db: PgPool) {
    const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let h = Harness::start_with(db, &[("SWITCHYARD_SIGNING_SECRET", SIGNING)]).await;
    let secret = SigningSecret::parse(&SIGNING.into()).unwrap();
    let wrong = SigningSecret::parse(&"whsec_AAAAAAAAAAAAAAAAAAAAAAAA".into()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let send = |body: String, id: &str, ts: i64, signer: &SigningSecret| {
        let request = h
            .http
            .post(h.hook_url("acme"))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signer.sign(id, ts, body.as_bytes()))
            .body(body);
        async move { request.send().await.unwrap().status() }
    };

    let signed = send(message("SIG-1"), "msg_1", now, &secret).await;
    let wrong_key = send(message("SIG-2"), "msg_2", now, &wrong).await;
    let stale = send(message("SIG-3"), "msg_3", now - 301, &secret).await;
    let (unsigned, text) = h.post("acme", message("SIG-4")).await;
    let tampered = {
        let body = message("SIG-5");
        h.http
            .post(h.hook_url("acme"))
            .header("webhook-id", "msg_5")
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", secret.sign("msg_5", now, b"{}"))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    };

    assert_eq!(signed, StatusCode::OK);
    for refused in [wrong_key, stale, unsigned, tampered] {
        assert_eq!(refused, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(text, r#"{"error":"unauthorized"}"#);
    assert_eq!(h.inbound_count().await, 1);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_openapi_document_describes_the_hook(db: PgPool) {
    let h = Harness::start(db).await;

    let response = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/hook/{tenant}/{token}"]["post"].is_object());
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn refusals_and_acceptances_are_counted(db: PgPool) {
    let h = Harness::start(db).await;

    h.post_to(&format!("{}/hook/acme/nope", h.base), message("C1"))
        .await;
    h.post("acme", "{oops").await;
    h.post("acme", message("C2")).await;

    let rendered = poll::until("the counters to render", Duration::from_secs(5), || async {
        let text = switchyard_shared::ops_server::metrics_handle().render();
        let has = |needle: &str| text.contains(needle);
        (has(r#"switchyard_ingest_rejected_total{reason="bad_token"}"#)
            && has(r#"switchyard_ingest_rejected_total{reason="malformed"}"#)
            && has(r#"switchyard_ingest_accepted_total{event="message"}"#)
            && has("switchyard_ingest_request_seconds")
            && has("switchyard_ingest_publish_seconds")
            && has("switchyard_ingest_claim_seconds_count 1"))
        .then_some(text)
    })
    .await;
    assert!(!rendered.contains("nope"), "tokens never become labels");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_flood_of_refusals_is_counted_exactly_and_logged_a_bounded_number_of_times(db: PgPool) {
    // Ingest runs on this (current-thread) runtime: its lines land here.
    let logs = LogBuffer::default();
    let _capture = logs.capture();
    let h = Harness::start(db).await;
    let bad_token = format!("{}/hook/acme/not-a-token", h.base);
    let bad_path = format!("{}/hook/acme", h.base);
    const FLOOD: usize = 400;
    let started = std::time::Instant::now();

    for _ in 0..FLOOD / 50 {
        let bad_tokens = futures::future::join_all((0..50).map(|_| h.post_to(&bad_token, "{}")));
        let bad_paths = futures::future::join_all((0..50).map(|_| h.post_to(&bad_path, "{}")));
        let (tokens, paths) = tokio::join!(bad_tokens, bad_paths);
        assert!(
            tokens
                .iter()
                .chain(&paths)
                .all(|(s, _)| *s == StatusCode::UNAUTHORIZED)
        );
    }

    let elapsed = started.elapsed();
    // Every refusal counted: the counter is not rate-limited.
    poll::until("exact refusal counts", Duration::from_secs(5), || async {
        let text = switchyard_shared::ops_server::metrics_handle().render();
        (text.contains(&format!(
            r#"switchyard_ingest_rejected_total{{reason="bad_token"}} {FLOOD}"#
        )) && text.contains(&format!(
            r#"switchyard_ingest_rejected_total{{reason="invalid_tenant"}} {FLOOD}"#
        )))
        .then_some(())
    })
    .await;
    // At most one line per reason per 10 s window the flood touched.
    let windows = 1 + elapsed.as_secs() as usize / 10;
    let log = logs.text();
    let lines = |reason: &str| {
        log.lines()
            .filter(|l| l.contains("webhook refused") && l.contains(reason))
            .count()
    };
    for reason in ["bad_token", "invalid_tenant"] {
        let n = lines(reason);
        assert!((1..=windows).contains(&n), "{reason}: {n} lines\n{log}");
    }
    assert!(!log.contains("not-a-token"), "tokens never appear in logs");
}
