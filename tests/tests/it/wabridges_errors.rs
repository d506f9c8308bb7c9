//! How provider failures reach the sender: each simulated misbehaviour, seen
//! through the real client over HTTP, lands in the right error class.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use switchyard_bridge_sim::{Fault, Limits, SimConfig, SimHandle};
use switchyard_shared::{
    ids::TenantId,
    wabridges::{WaBridgesClient, WaBridgesSettings, WaError},
};

const KEY: &str = "sk_live_DO_NOT_LEAK_4242";

async fn sim_with(limits: Limits) -> SimHandle {
    let mut config = SimConfig::new(KEY);
    config.limits = limits;
    SimHandle::start(config).await.unwrap()
}

/// A simulator with one bridge for tenant `acme`, and a client with `timeout`.
async fn acme(timeout: Duration) -> (SimHandle, WaBridgesClient) {
    let sim = sim_with(Limits::default()).await;
    sim.seed_bridge("acme", "http://127.0.0.1:9/hook/acme/t");
    let mut settings = sim.client_settings();
    settings.timeout = timeout;
    (sim, WaBridgesClient::new(settings).unwrap())
}

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

async fn send(wa: &WaBridgesClient) -> Result<(), WaError> {
    wa.send_text(&tenant(), "15559876543", "hi").await.map(drop)
}

#[tokio::test]
async fn going_over_the_proxy_limit_answers_429_with_retry_after_and_is_rate_limited() {
    let sim = sim_with(Limits {
        proxy: 2,
        ..Limits::default()
    })
    .await;
    sim.seed_bridge("acme", "http://127.0.0.1:9/hook/acme/t");
    let wa = WaBridgesClient::new(sim.client_settings()).unwrap();

    send(&wa).await.unwrap();
    wa.status(&tenant()).await.unwrap();
    let err = send(&wa).await.unwrap_err();

    let WaError::RateLimited { retry_after } = err else {
        panic!("expected RateLimited, got {err:?}");
    };
    assert!(
        (Duration::from_secs(58)..=Duration::from_secs(60)).contains(&retry_after),
        "{retry_after:?}"
    );
    assert!(err.is_retryable() && !err.spends_attempt());
    assert_eq!(sim.sends().len(), 1, "a rate-limited send must not go out");

    // The raw answer is the documented one.
    let raw = reqwest::Client::new()
        .get(format!(
            "{}/api/instances/acme/proxy/status",
            sim.base_url()
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 429);
    let seconds: u64 = raw.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((58..=60).contains(&seconds), "{seconds}");
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"error": "rate limit exceeded"}));
}

#[tokio::test]
async fn the_provisioning_limit_is_separate_from_the_proxy_limit() {
    let sim = sim_with(Limits {
        provision: 1,
        ..Limits::default()
    })
    .await;
    let wa = WaBridgesClient::new(sim.client_settings()).unwrap();

    wa.provision(&tenant(), "http://127.0.0.1:9/hook/acme/t")
        .await
        .unwrap();
    let second = wa
        .provision(
            &TenantId::parse("globex").unwrap(),
            "http://127.0.0.1:9/hook/globex/t",
        )
        .await;

    assert!(
        matches!(second, Err(WaError::RateLimited { .. })),
        "{second:?}"
    );
    send(&wa).await.unwrap();
    wa.list().await.unwrap();
}

#[tokio::test]
async fn the_per_ip_limit_covers_every_api_call_and_raising_limits_lifts_it() {
    let sim = sim_with(Limits {
        per_ip: 2,
        ..Limits::default()
    })
    .await;
    sim.seed_bridge("acme", "http://127.0.0.1:9/hook/acme/t");
    let wa = WaBridgesClient::new(sim.client_settings()).unwrap();

    wa.list().await.unwrap();
    send(&wa).await.unwrap();
    assert!(matches!(wa.list().await, Err(WaError::RateLimited { .. })));

    sim.set_limits(Limits::unlimited());
    wa.list().await.unwrap();
}

#[tokio::test]
async fn a_bridge_answering_5xx_is_a_transient_failure_that_spends_an_attempt() {
    let (sim, wa) = acme(Duration::from_secs(5)).await;
    sim.set_fault("acme", Fault::ServerError { status: 502 }, None)
        .unwrap();

    let err = send(&wa).await.unwrap_err();

    assert!(
        matches!(
            err,
            WaError::Transient {
                status: Some(502),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable() && err.spends_attempt());
    assert_eq!(sim.attempts()[0].status, 502);
    assert!(sim.sends().is_empty());
}

#[tokio::test]
async fn a_fault_limited_to_a_count_clears_itself() {
    let (sim, wa) = acme(Duration::from_secs(5)).await;
    sim.set_fault("acme", Fault::ServerError { status: 503 }, Some(2))
        .unwrap();

    assert!(send(&wa).await.is_err());
    assert!(send(&wa).await.is_err());
    send(&wa).await.unwrap();

    let statuses: Vec<_> = sim.attempts().iter().map(|a| a.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn a_bridge_answering_4xx_is_rejected_with_the_providers_message() {
    let (sim, wa) = acme(Duration::from_secs(5)).await;
    sim.set_fault(
        "acme",
        Fault::Reject {
            status: 422,
            message: "chat does not exist".into(),
        },
        None,
    )
    .unwrap();

    let err = send(&wa).await.unwrap_err();

    assert_eq!(
        err,
        WaError::Rejected {
            status: 422,
            message: "chat does not exist".into()
        }
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_restricted_number_is_classified_restricted_not_unauthorized() {
    let (sim, wa) = acme(Duration::from_secs(5)).await;
    sim.set_fault(
        "acme",
        Fault::Restricted {
            status: 403,
            message: "this number is restricted by WhatsApp".into(),
        },
        None,
    )
    .unwrap();

    let err = send(&wa).await.unwrap_err();

    assert!(
        matches!(err, WaError::Restricted { status: 403, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable() && !err.spends_attempt());
}

#[tokio::test]
async fn a_bridge_that_hangs_times_out_at_the_client_timeout() {
    let (sim, wa) = acme(Duration::from_millis(300)).await;
    sim.set_fault("acme", Fault::Hang, None).unwrap();

    let started = Instant::now();
    let err = send(&wa).await.unwrap_err();

    assert_eq!(
        err,
        WaError::Timeout {
            timeout: Duration::from_millis(300)
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.is_retryable() && err.spends_attempt());
    sim.stop().await;
}

#[tokio::test]
async fn a_slow_bridge_still_answers_within_the_timeout() {
    let (sim, wa) = acme(Duration::from_secs(5)).await;
    sim.set_latency("acme", Duration::from_millis(200)).unwrap();

    let started = Instant::now();
    send(&wa).await.unwrap();

    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_disconnected_bridge_says_so_and_its_sends_wait_without_spending_attempts() {
    let (sim, wa) = acme(Duration::from_secs(5)).await;
    sim.set_connected("acme", false, false).await.unwrap();

    let status = wa.status(&tenant()).await.unwrap();
    assert!(!status.is_connected());
    assert_eq!(status.status.as_str(), "disconnected");
    assert_eq!(status.phone, None);
    let err = send(&wa).await.unwrap_err();
    assert!(
        matches!(err, WaError::Disconnected { status: 409, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable() && !err.spends_attempt());

    sim.set_connected("acme", true, false).await.unwrap();
    send(&wa).await.unwrap();
    assert_eq!(sim.sends().len(), 1);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_transient_failure_without_status() {
    let port = switchyard_tests::nats_server::free_port();
    let wa = WaBridgesClient::new(WaBridgesSettings::new(
        format!("http://127.0.0.1:{port}"),
        SecretString::from(KEY),
    ))
    .unwrap();

    let err = wa.list().await.unwrap_err();

    assert!(
        matches!(err, WaError::Transient { status: None, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_api_key_never_appears_in_debug_output_or_error_messages() {
    let (sim, wa) = acme(Duration::from_millis(300)).await;
    let mut errors = Vec::new();
    for fault in [
        Fault::ServerError { status: 500 },
        Fault::Reject {
            status: 400,
            message: format!("bad key {KEY}"),
        },
        Fault::Restricted {
            status: 403,
            message: format!("restricted {KEY}"),
        },
        Fault::RateLimit {
            retry_after_secs: 3,
        },
        Fault::Hang,
    ] {
        sim.set_fault("acme", fault, Some(1)).unwrap();
        errors.push(send(&wa).await.unwrap_err());
    }
    let unreachable = WaBridgesClient::new(WaBridgesSettings::new(
        "http://127.0.0.1:1",
        SecretString::from(KEY),
    ))
    .unwrap();
    errors.push(unreachable.list().await.unwrap_err());

    let mut shown = format!("{wa:?} {:?} {:?}", sim.client_settings(), unreachable);
    for e in &errors {
        shown.push_str(&format!("{e} {e:?} "));
    }
    assert!(!shown.contains(KEY), "{shown}");
    assert!(
        errors[1].to_string().contains("bad key [redacted]"),
        "an echoed key is scrubbed, the rest of the message kept: {}",
        errors[1]
    );
    assert!(
        matches!(errors[3], WaError::RateLimited { retry_after } if retry_after == Duration::from_secs(3))
    );
}
