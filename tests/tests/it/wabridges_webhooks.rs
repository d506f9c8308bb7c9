//! The simulator playing the provider's side of webhooks: documented event
//! shapes posted to the bridge's own URL, once, and `from_me` echoes of sends;
//! plus the `/_sim` HTTP control API that scripts and load tests use.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::post,
};
use serde_json::{Value, json};
use switchyard_bridge_sim::{EchoMode, SimConfig, SimHandle, events};
use switchyard_shared::{ids::TenantId, wabridges::WaBridgesClient};
use switchyard_tests::poll;

const KEY: &str = "sk_test_webhooks";

/// One webhook as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    tenant: String,
    token: String,
    body: Value,
}

/// A tiny ingest stand-in: records `/hook/<tenant>/<token>` posts and answers `status`.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(status: StatusCode) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/hook/{tenant}/{token}", post(record))
            .with_state((Arc::clone(&seen), status));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, seen }
    }

    fn url(&self, tenant: &str) -> String {
        format!("http://{}/hook/{tenant}/tok-{tenant}", self.addr)
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Received> {
        poll::until("webhooks to arrive", Duration::from_secs(5), || {
            let seen = self.seen();
            async move { (seen.len() >= n).then_some(seen) }
        })
        .await
    }
}

async fn record(
    State((seen, status)): State<(Arc<Mutex<Vec<Received>>>, StatusCode)>,
    Path((tenant, token)): Path<(String, String)>,
    body: Bytes,
) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push(Received {
        tenant,
        token,
        body,
    });
    status
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn every_documented_event_reaches_the_bridges_own_url_in_its_documented_shape() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = SimHandle::start(SimConfig::new(KEY)).await.unwrap();
    sim.seed_bridge("acme", &receiver.url("acme"));
    sim.seed_bridge("globex", &receiver.url("globex"));

    let message = events::TextMessage::new("15550001234", "Hello!");
    for event in [
        message.to_json(),
        events::connected("15550001234"),
        events::disconnected(),
        events::typing("15550001234", "composing", "text"),
        events::poll_vote("15550001234", "POLL1", &["Yes"]),
    ] {
        let delivery = sim.post_webhook("acme", event).await.unwrap();
        assert_eq!(delivery.status, Some(200));
    }

    let seen = receiver.wait_for(5).await;
    assert!(
        seen.iter()
            .all(|r| r.tenant == "acme" && r.token == "tok-acme")
    );
    assert!(seen.iter().all(|r| r.body["customer_ref"] == "acme"));
    let msg = &seen[0].body;
    assert_eq!(
        keys(msg),
        [
            "body",
            "chat_id",
            "contact_id",
            "customer_ref",
            "event",
            "from_me",
            "is_group",
            "media_type",
            "message_id",
            "name",
            "phone",
            "timestamp",
            "type"
        ]
    );
    assert_eq!(msg["event"], "message");
    assert_eq!(msg["message_id"], message.message_id.as_str());
    assert_eq!(msg["chat_id"], "15550001234@s.whatsapp.net");
    assert_eq!(msg["from_me"], false);
    assert!(msg["timestamp"].is_i64());
    assert_eq!(
        seen[1].body,
        json!({"event":"connected","phone":"15550001234","customer_ref":"acme"})
    );
    assert_eq!(
        seen[2].body,
        json!({"event":"disconnected","customer_ref":"acme"})
    );
    assert_eq!(
        keys(&seen[3].body),
        [
            "chat_id",
            "contact_id",
            "customer_ref",
            "event",
            "mode",
            "state"
        ]
    );
    assert_eq!(seen[4].body["event"], "poll_vote");
    assert_eq!(seen[4].body["poll_id"], "POLL1");

    // Every body the simulator builds is one our own parser accepts.
    for r in &seen {
        let raw = serde_json::to_vec(&r.body).unwrap();
        switchyard_shared::events::parse(&raw, switchyard_shared::events::Delivery::Unnamed(0))
            .unwrap();
    }
    assert_eq!(sim.webhooks().len(), 5);
}

#[tokio::test]
async fn customer_ref_can_be_left_out_of_webhook_bodies() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let mut config = SimConfig::new(KEY);
    config.webhook_customer_ref = false;
    let sim = SimHandle::start(config).await.unwrap();
    sim.seed_bridge("acme", &receiver.url("acme"));

    sim.post_webhook("acme", events::disconnected())
        .await
        .unwrap();

    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].body, json!({"event": "disconnected"}));
    assert_eq!(seen[0].tenant, "acme");
}

#[tokio::test]
async fn a_failed_webhook_is_not_retried() {
    let receiver = Receiver::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let sim = SimHandle::start(SimConfig::new(KEY)).await.unwrap();
    sim.seed_bridge("acme", &receiver.url("acme"));

    let delivery = sim
        .post_webhook(
            "acme",
            events::TextMessage::new("15550001234", "hi").to_json(),
        )
        .await
        .unwrap();

    assert_eq!(delivery.status, Some(500));
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn a_webhook_to_an_unreachable_url_is_dropped_and_recorded() {
    let sim = SimHandle::start(SimConfig::new(KEY)).await.unwrap();
    let port = switchyard_tests::nats_server::free_port();
    sim.seed_bridge(
        "acme",
        &format!("http://127.0.0.1:{port}/hook/acme/secret-token"),
    );

    let delivery = sim
        .post_webhook("acme", events::disconnected())
        .await
        .unwrap();

    assert_eq!(delivery.status, None);
    let error = delivery.error.unwrap();
    assert!(
        !error.contains("secret-token"),
        "the URL's secret must not leak: {error}"
    );
}

#[tokio::test]
async fn with_echo_before_the_from_me_event_arrives_before_the_send_returns() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = SimHandle::start(SimConfig::new(KEY)).await.unwrap();
    sim.seed_bridge("acme", &receiver.url("acme"));
    sim.set_echo("acme", EchoMode::Before).unwrap();
    let wa = WaBridgesClient::new(sim.client_settings()).unwrap();

    let receipt = wa
        .send_text(
            &TenantId::parse("acme").unwrap(),
            "15559876543@s.whatsapp.net",
            "Hi",
        )
        .await
        .unwrap();

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "the echo must already be there");
    let echo = &seen[0].body;
    assert_eq!(echo["from_me"], true);
    assert_eq!(echo["message_id"], receipt.message_id.as_str());
    assert_eq!(echo["chat_id"], "15559876543@s.whatsapp.net");
    assert_eq!(echo["body"], "Hi");
}

#[tokio::test]
async fn with_echo_after_the_from_me_event_follows_the_send() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = SimHandle::start(SimConfig::new(KEY)).await.unwrap();
    sim.seed_bridge("acme", &receiver.url("acme"));
    sim.set_echo("acme", EchoMode::After).unwrap();
    let wa = WaBridgesClient::new(sim.client_settings()).unwrap();

    let receipt = wa
        .send_text(&TenantId::parse("acme").unwrap(), "15559876543", "Hi")
        .await
        .unwrap();

    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].body["message_id"], receipt.message_id.as_str());
    assert_eq!(seen[0].body["from_me"], true);
}

#[tokio::test]
async fn the_sim_control_api_steers_bridges_and_shows_sends_over_http() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = SimHandle::start(SimConfig::new(KEY)).await.unwrap();
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let wa = WaBridgesClient::new(sim.client_settings()).unwrap();
    let acme = TenantId::parse("acme").unwrap();

    let seeded: Value = http
        .post(format!("{base}/_sim/bridges"))
        .json(&json!({"customer_ref": "acme", "webhook_url": receiver.url("acme")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seeded["customer_ref"], "acme");

    let put = http
        .put(format!("{base}/_sim/bridges/acme/fault"))
        .json(&json!({"kind": "server_error", "status": 500, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert!(wa.send_text(&acme, "15559876543", "one").await.is_err());
    wa.send_text(&acme, "15559876543", "two").await.unwrap();

    let sends: Value = http
        .get(format!("{base}/_sim/sends?customer_ref=acme"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sends.as_array().unwrap().len(), 1);
    assert_eq!(sends[0]["body"], "two");
    let attempts: Value = http
        .get(format!("{base}/_sim/attempts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(attempts.as_array().unwrap().len(), 2);

    let connection = http
        .put(format!("{base}/_sim/bridges/acme/connection"))
        .json(&json!({"connected": false, "notify": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(connection.status(), 200);
    assert!(!wa.status(&acme).await.unwrap().is_connected());

    let delivery: Value = http
        .post(format!("{base}/_sim/bridges/acme/webhook"))
        .json(&json!({"event": "call_offer", "from": "15550001234"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(delivery["status"], 200);
    let seen = receiver.wait_for(2).await;
    assert_eq!(seen[0].body["event"], "disconnected");
    assert_eq!(seen[1].body["event"], "call_offer");

    let unknown = http
        .put(format!("{base}/_sim/bridges/nobody/latency"))
        .json(&json!({"ms": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let cleared = http
        .delete(format!("{base}/_sim/sends"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert!(sim.sends().is_empty());
}

#[tokio::test]
async fn a_silent_bridge_posts_nothing_and_only_its_status_tells() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = SimHandle::start(SimConfig::new(KEY)).await.unwrap();
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let wa = WaBridgesClient::new(sim.client_settings()).unwrap();
    let acme = TenantId::parse("acme").unwrap();
    sim.seed_bridge("acme", &receiver.url("acme"));
    assert!(wa.status(&acme).await.unwrap().is_connected());

    let put = http
        .put(format!("{base}/_sim/bridges/acme/silence"))
        .json(&json!({"silent": true, "drop_session": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let delivery = sim
        .post_webhook(
            "acme",
            events::TextMessage::new("15550001234", "lost").to_json(),
        )
        .await
        .unwrap();
    assert_eq!(delivery.status, None, "{delivery:?}");
    assert_eq!(
        delivery.error.as_deref(),
        Some(switchyard_bridge_sim::SILENT)
    );
    assert!(!wa.status(&acme).await.unwrap().is_connected());
    let view = sim.bridge("acme").unwrap();
    assert!(view.silent);
    assert_eq!(view.status_calls, 2);

    // Unmuted, it posts again (the session stays as it was).
    let put = http
        .put(format!("{base}/_sim/bridges/acme/silence"))
        .json(&json!({"silent": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    sim.set_connected("acme", true, true).await.unwrap();
    let seen = receiver.wait_for(1).await;
    assert_eq!(
        seen.len(),
        1,
        "the silent bridge's message was posted: {seen:?}"
    );
    assert_eq!(seen[0].body["event"], "connected");
}
