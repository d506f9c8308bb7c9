//! Driving the operator CLI in-process: parse real arguments, run them with
//! the test's own environment, capture what it prints.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use clap::Parser as _;
use sqlx::PgPool;
use switchyard_cli::{Cli, exit::Exit, output::Output};
use switchyard_shared::{
    config::Env,
    ids::TenantId,
    tenants::{self, BotKind, NewTenant},
};

/// A writer whose bytes the test reads back.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `switchyard <args>` with `vars` as its whole environment.
pub async fn run(args: &[&str], vars: &[(String, String)]) -> (Exit, String) {
    let cli = Cli::try_parse_from(std::iter::once("switchyard").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("arguments {args:?} do not parse: {e}"));
    let captured = Captured::default();
    let mut out = Output::new(cli.json, Box::new(captured.clone()));
    let exit = switchyard_cli::run(cli, Env::from_map(vars.to_vec()), &mut out).await;
    (exit, captured.text())
}

/// `run`, also giving back the error the CLI would write to stderr.
pub async fn run_with_error(
    args: &[&str],
    vars: &[(String, String)],
) -> (Exit, String, Option<String>) {
    let cli = Cli::try_parse_from(std::iter::once("switchyard").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("arguments {args:?} do not parse: {e}"));
    let captured = Captured::default();
    let mut out = Output::new(cli.json, Box::new(captured.clone()));
    match switchyard_cli::try_run(cli, Env::from_map(vars.to_vec()), &mut out).await {
        Ok(exit) => (exit, captured.text(), None),
        Err(e) => (e.exit(), captured.text(), Some(e.to_string())),
    }
}

/// `run_with_error` with `stdin` as the command's standard input (a token
/// for `--token-stdin`, a code for `--signup-code-stdin`).
pub async fn run_with_stdin(
    args: &[&str],
    vars: &[(String, String)],
    stdin: &str,
) -> (Exit, String, Option<String>) {
    let cli = Cli::try_parse_from(std::iter::once("switchyard").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("arguments {args:?} do not parse: {e}"));
    let captured = Captured::default();
    let mut out = Output::new(cli.json, Box::new(captured.clone()));
    let input = Box::new(std::io::Cursor::new(stdin.as_bytes().to_vec()));
    match switchyard_cli::try_run_with_stdin(cli, Env::from_map(vars.to_vec()), input, &mut out)
        .await
    {
        Ok(exit) => (exit, captured.text(), None),
        Err(e) => (e.exit(), captured.text(), Some(e.to_string())),
    }
}

/// `run` with `--json`, parsed.
pub async fn run_json(args: &[&str], vars: &[(String, String)]) -> (Exit, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (exit, text) = run(&all, vars).await;
    let value = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (exit, value)
}

/// The environment the CLI reads.
pub fn vars(
    database_url: &str,
    nats_url: Option<&str>,
    sim_url: Option<&str>,
) -> Vec<(String, String)> {
    let mut v = vec![
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
        (
            "SWITCHYARD_WEBHOOK_SECRET".to_owned(),
            "whsec-test-secret".to_owned(),
        ),
        (
            "SWITCHYARD_PUBLIC_URL".to_owned(),
            "https://ingest.example".to_owned(),
        ),
        ("WA_API_KEY".to_owned(), SIM_KEY.to_owned()),
        ("SWITCHYARD_PARTITIONS".to_owned(), "4".to_owned()),
    ];
    // Unreachable by default, so a test never talks to a machine-wide server.
    v.push((
        "NATS_URL".to_owned(),
        nats_url.unwrap_or("nats://127.0.0.1:1").to_owned(),
    ));
    if let Some(url) = sim_url {
        v.push(("WA_API_URL".to_owned(), url.to_owned()));
    }
    v
}

/// The simulator's API key in these tests.
pub const SIM_KEY: &str = "sk_cli_test";

pub fn t(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

pub async fn add_tenant(pool: &PgPool, id: &str, bot: BotKind, config: serde_json::Value) {
    let mut new = NewTenant::with_defaults(t(id));
    new.bot_kind = bot;
    new.bot_config = config;
    assert!(tenants::insert(pool, &new).await.unwrap());
}

/// A bot endpoint that always answers 500 (transient: retried, then dead-lettered).
pub async fn failing_bot() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bot", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/bot",
        axum::routing::post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
