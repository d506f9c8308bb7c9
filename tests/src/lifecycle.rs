//! Process-level checks every binary must pass: it starts against real
//! dependencies, answers `/healthz`, `/readyz` and `/metrics`, exits 0 on
//! SIGTERM, and refuses a nats-server older than 2.12.5.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use crate::{nats_server::NatsServer, poll};

/// The database binaries use in these checks (they only need it reachable).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Starts `binary`, waits for readiness, checks metrics, sends SIGTERM and
/// expects a clean exit.
pub async fn assert_starts_and_stops(binary: &str) {
    let nats = NatsServer::start();
    let ops_port = crate::nats_server::free_port();
    let mut child = Command::new(binary)
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", database_url())
        .env("SWITCHYARD_OPS_ADDR", format!("127.0.0.1:{ops_port}"))
        .env("SWITCHYARD_HTTP_ADDR", "127.0.0.1:0")
        .env("SWITCHYARD_WEBHOOK_SECRET", "lifecycle-test-secret")
        .env("WA_API_KEY", "sk_lifecycle")
        .env("SWITCHYARD_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn binary");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{ops_port}");
    poll::until(
        "the service to report ready",
        Duration::from_secs(30),
        || {
            let http = http.clone();
            let url = format!("{base}/readyz");
            async move {
                let resp = http.get(url).send().await.ok()?;
                resp.status().is_success().then_some(())
            }
        },
    )
    .await;
    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        !metrics.contains("<html"),
        "metrics must be Prometheus text"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = poll::until(
        "the process to exit after SIGTERM",
        Duration::from_secs(15),
        || {
            let exited = child.try_wait().expect("try_wait");
            async move { exited }
        },
    )
    .await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// Points `binary` at a server that reports version 2.9.10 and expects it to
/// exit non-zero, naming the required version.
pub async fn assert_refuses_old_nats(binary: &str) {
    let url = crate::old_nats::start("2.9.10").await;
    let output = tokio::task::spawn_blocking({
        let binary = binary.to_owned();
        move || {
            Command::new(binary)
                .env("NATS_URL", url)
                .env("DATABASE_URL", database_url())
                .env("SWITCHYARD_OPS_ADDR", "127.0.0.1:0")
                .env("SWITCHYARD_HTTP_ADDR", "127.0.0.1:0")
                .env("SWITCHYARD_WEBHOOK_SECRET", "lifecycle-test-secret")
                .env("WA_API_KEY", "sk_lifecycle")
                .output()
                .expect("run binary")
        }
    })
    .await
    .expect("join");
    assert!(!output.status.success(), "a 2.9 server must be refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("2.12.5") && stderr.contains("2.9.10"),
        "the error must name the required and found versions; stderr:\n{stderr}"
    );
}
