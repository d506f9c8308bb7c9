//! Process-level checks every binary must pass: it starts against real
//! dependencies, answers `/healthz`, `/readyz` and `/metrics`, exits 0 on
//! SIGTERM, refuses a nats-server older than 2.12.5, prints its version and
//! git commit (`--version`), and checks its own readiness (`--probe`).

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

/// Starts `binary` with what every service needs, its ops server on `ops_port`.
fn spawn_service(binary: &str, nats: &NatsServer, ops_port: u16) -> std::process::Child {
    Command::new(binary)
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
        .expect("spawn binary")
}

/// Waits until `/readyz` on `ops_port` answers 200.
async fn wait_ready(http: &reqwest::Client, ops_port: u16) {
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
}

/// Sends SIGTERM and expects exit status 0 within 15 s.
async fn terminate(child: &mut std::process::Child) {
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

/// Starts `binary`, waits for readiness, checks metrics, sends SIGTERM and
/// expects a clean exit.
pub async fn assert_starts_and_stops(binary: &str) {
    let nats = NatsServer::start();
    let ops_port = crate::nats_server::free_port();
    let mut child = spawn_service(binary, &nats, ops_port);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{ops_port}");
    wait_ready(&http, ops_port).await;
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
    terminate(&mut child).await;
}

/// Runs `binary --probe` with only `SWITCHYARD_OPS_ADDR` set (the probe needs
/// no other setting); returns its exit code and stderr.
async fn run_probe(binary: &str, ops_addr: &str) -> (Option<i32>, String) {
    let binary = binary.to_owned();
    let ops_addr = ops_addr.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .arg("--probe")
            .env_clear()
            .env("SWITCHYARD_OPS_ADDR", ops_addr)
            .output()
            .expect("run --probe")
    })
    .await
    .expect("join");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `binary --probe` exits 0 while a running instance is ready (also when it
/// listens on `0.0.0.0`, probed on loopback), and 1 once nothing listens.
pub async fn assert_probe_follows_readiness(binary: &str) {
    let nats = NatsServer::start();
    let ops_port = crate::nats_server::free_port();
    let mut child = spawn_service(binary, &nats, ops_port);
    wait_ready(&reqwest::Client::new(), ops_port).await;

    let (code, stderr) = run_probe(binary, &format!("127.0.0.1:{ops_port}")).await;
    assert_eq!(
        code,
        Some(0),
        "--probe against a ready instance; stderr:\n{stderr}"
    );
    let (code, stderr) = run_probe(binary, &format!("0.0.0.0:{ops_port}")).await;
    assert_eq!(
        code,
        Some(0),
        "--probe with an unspecified listen address; stderr:\n{stderr}"
    );

    terminate(&mut child).await;
    let (code, stderr) = run_probe(binary, &format!("127.0.0.1:{ops_port}")).await;
    assert_eq!(code, Some(1), "--probe against nothing; stderr:\n{stderr}");
    assert!(
        stderr.contains("not ready"),
        "the reason goes to stderr: {stderr}"
    );
}

/// `binary --version` prints `<name> <crate version> (commit <sha>)` and exits 0.
pub fn assert_prints_version(binary: &str, name: &str, crate_version: &str) {
    let output = Command::new(binary)
        .arg("--version")
        .env_clear()
        .output()
        .expect("run --version");
    assert!(output.status.success(), "--version must exit 0: {output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.trim();
    let prefix = format!("{name} {crate_version} (commit ");
    let commit = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("expected {prefix:?}<sha>), got {line:?}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "not a commit id: {commit:?}"
    );
    assert_eq!(commit, switchyard_build_info::GIT_COMMIT);
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
