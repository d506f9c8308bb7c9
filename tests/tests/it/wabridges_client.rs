//! The WA Bridges client against the in-process simulator, over real HTTP:
//! the control plane, sends, chat normalisation, auth and pairing.

use std::time::Duration;

use secrecy::SecretString;
use switchyard_bridge_sim::{Session, SimConfig, SimHandle};
use switchyard_shared::{
    ids::TenantId,
    wabridges::{BridgeState, WaBridgesClient, WaBridgesSettings, WaError},
};

const KEY: &str = "sk_test_client";

async fn sim() -> SimHandle {
    SimHandle::start(SimConfig::new(KEY)).await.unwrap()
}

fn client(sim: &SimHandle) -> WaBridgesClient {
    WaBridgesClient::new(sim.client_settings()).unwrap()
}

fn tenant(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

fn hook(t: &str) -> String {
    format!("http://127.0.0.1:9/hook/{t}/token")
}

#[tokio::test]
async fn provisioning_the_same_tenant_twice_returns_one_bridge() {
    let sim = sim().await;
    let wa = client(&sim);

    let first = wa.provision(&tenant("acme"), &hook("acme")).await.unwrap();
    let second = wa.provision(&tenant("acme"), &hook("acme")).await.unwrap();

    assert_eq!(first.id, second.id);
    assert_eq!(first.state, BridgeState::Running);
    assert_eq!(first.customer_ref, "acme");
    assert_eq!(sim.bridges().len(), 1);
}

#[tokio::test]
async fn a_repeated_provisioning_keeps_the_first_webhook_url_by_default() {
    let sim = sim().await;
    let wa = client(&sim);

    wa.provision(&tenant("acme"), &hook("acme")).await.unwrap();
    wa.provision(&tenant("acme"), "http://127.0.0.1:9/hook/acme/other")
        .await
        .unwrap();

    assert_eq!(sim.bridge("acme").unwrap().webhook_url, hook("acme"));
}

#[tokio::test]
async fn bridges_can_be_listed_inspected_and_deleted() {
    let sim = sim().await;
    let wa = client(&sim);
    let acme = wa.provision(&tenant("acme"), &hook("acme")).await.unwrap();
    let globex = wa
        .provision(&tenant("globex"), &hook("globex"))
        .await
        .unwrap();

    let listed = wa.list().await.unwrap();
    let refs: Vec<_> = listed.iter().map(|b| b.customer_ref.as_str()).collect();
    assert_eq!(refs, ["acme", "globex"]);
    assert!(listed.iter().all(|b| b.created_at.is_some()));

    let detail = wa.get(acme.id).await.unwrap();
    assert_eq!(detail.bridge.id, acme.id);
    assert_eq!(detail.manager.health.as_deref(), Some("healthy"));
    assert_eq!(detail.manager.fail_count, Some(0));
    assert!(detail.manager.started_at.is_some());

    wa.delete(acme.id).await.unwrap();
    let remaining = wa.list().await.unwrap();
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].id, globex.id);
    let gone = wa.get(acme.id).await.unwrap_err();
    assert!(
        matches!(gone, WaError::Rejected { status: 404, .. }),
        "{gone:?}"
    );
    assert!(matches!(
        wa.delete(acme.id).await,
        Err(WaError::Rejected { status: 404, .. })
    ));
}

#[tokio::test]
async fn a_send_lands_on_its_tenants_bridge_and_is_recorded_with_the_returned_id() {
    let sim = sim().await;
    let wa = client(&sim);
    let acme = wa.provision(&tenant("acme"), &hook("acme")).await.unwrap();
    wa.provision(&tenant("globex"), &hook("globex"))
        .await
        .unwrap();

    let receipt = wa
        .send_text(&tenant("acme"), "15559876543", "Hello")
        .await
        .unwrap();

    let sends = sim.wait_for_sends(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].bridge_id, acme.id.get());
    assert_eq!(sends[0].customer_ref, "acme");
    assert_eq!(sends[0].chat, "15559876543");
    assert_eq!(sends[0].body, "Hello");
    assert_eq!(sends[0].message_id, receipt.message_id.as_str());
    assert!(receipt.timestamp.is_some());
    assert!(sim.sends_for("globex").is_empty());
}

#[tokio::test]
async fn a_person_jid_is_sent_as_bare_digits_and_a_group_jid_as_is() {
    let sim = sim().await;
    let wa = client(&sim);
    wa.provision(&tenant("acme"), &hook("acme")).await.unwrap();

    wa.send_text(&tenant("acme"), "15559876543@s.whatsapp.net", "a")
        .await
        .unwrap();
    wa.send_text(&tenant("acme"), "120363025246125486@g.us", "b")
        .await
        .unwrap();

    let chats: Vec<_> = sim.sends().into_iter().map(|s| s.chat).collect();
    assert_eq!(chats, ["15559876543", "120363025246125486@g.us"]);
}

#[tokio::test]
async fn an_invalid_chat_is_refused_before_any_call() {
    let sim = sim().await;
    let wa = client(&sim);
    wa.provision(&tenant("acme"), &hook("acme")).await.unwrap();

    let err = wa
        .send_text(&tenant("acme"), "status@broadcast", "hi")
        .await
        .unwrap_err();

    assert!(matches!(err, WaError::InvalidChat { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(sim.attempts().is_empty());
}

#[tokio::test]
async fn sending_to_a_tenant_without_a_bridge_is_rejected_as_not_found() {
    let sim = sim().await;
    let wa = client(&sim);

    let err = wa
        .send_text(&tenant("nobody"), "15559876543", "hi")
        .await
        .unwrap_err();

    assert!(
        matches!(err, WaError::Rejected { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_api_key_is_refused_and_classified_unauthorized() {
    let sim = sim().await;
    let wrong = WaBridgesClient::new(WaBridgesSettings::new(
        sim.base_url(),
        SecretString::from("sk_wrong"),
    ))
    .unwrap();

    let err = wrong.list().await.unwrap_err();
    assert_eq!(err, WaError::Unauthorized { status: 401 });
    assert!(!err.is_retryable() && !err.spends_attempt());

    let raw = reqwest::get(format!("{}/api/instances", sim.base_url()))
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn a_connected_bridge_reports_its_phone_jid_and_name() {
    let sim = sim().await;
    let wa = client(&sim);
    wa.provision(&tenant("acme"), &hook("acme")).await.unwrap();

    let status = wa.status(&tenant("acme")).await.unwrap();

    assert!(status.is_connected());
    let phone = status.phone.unwrap();
    assert_eq!(status.jid.unwrap(), format!("{phone}@s.whatsapp.net"));
    assert!(status.name.is_some());
}

#[tokio::test]
async fn an_unpaired_bridge_shows_a_qr_code_and_connects_once_paired() {
    let mut config = SimConfig::new(KEY);
    config.auto_connect = false;
    let sim = SimHandle::start(config).await.unwrap();
    let wa = client(&sim);
    wa.provision(&tenant("acme"), &hook("acme")).await.unwrap();

    let before = wa.status(&tenant("acme")).await.unwrap();
    assert!(!before.is_connected());
    assert_eq!(before.phone, None);
    let png = wa.qr(&tenant("acme")).await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let refused = wa.send_text(&tenant("acme"), "15559876543", "hi").await;
    assert!(
        matches!(refused, Err(WaError::Disconnected { .. })),
        "{refused:?}"
    );

    let code = wa.pair(&tenant("acme"), "15550001234").await.unwrap();
    assert_eq!(code.code.len(), 9);

    let after = wa.status(&tenant("acme")).await.unwrap();
    assert!(after.is_connected());
    assert_eq!(after.phone.as_deref(), Some("15550001234"));
    assert!(matches!(
        wa.qr(&tenant("acme")).await,
        Err(WaError::Rejected { status: 409, .. })
    ));

    wa.logout(&tenant("acme")).await.unwrap();
    assert_eq!(sim.bridge("acme").unwrap().session, Session::Unpaired);
}
