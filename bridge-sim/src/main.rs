//! `wabridges-sim`: the WA Bridges simulator as a process, for demos and load
//! tests, optionally with the Cloud API simulator beside it (`--cloud-addr`).
//! Every flag can also be set through the environment; the API key, the app
//! secret and the verify token are never printed.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use switchyard_bridge_sim::{
    EchoMode, Limits, SimConfig, SimHandle,
    cloud::{CloudClock, CloudSim, CloudSimConfig},
};
use switchyard_shared::config::LogFormat;
use tokio_util::sync::CancellationToken;

/// Serve a simulated WA Bridges API.
#[derive(Parser)]
#[command(name = "wabridges-sim", version = switchyard_build_info::version!(), about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "WABRIDGES_SIM_ADDR", default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    /// The one valid API key (`Authorization: Bearer <key>`).
    #[arg(long, env = "WA_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Provisioning calls per window (0: unlimited).
    #[arg(long, env = "WABRIDGES_SIM_PROVISION_LIMIT", default_value_t = 10)]
    provision_limit: u32,
    /// Proxy (session and send) calls per window (0: unlimited).
    #[arg(long, env = "WABRIDGES_SIM_PROXY_LIMIT", default_value_t = 120)]
    proxy_limit: u32,
    /// Other /api calls per window (0: unlimited).
    #[arg(long, env = "WABRIDGES_SIM_API_LIMIT", default_value_t = 120)]
    api_limit: u32,
    /// Calls per client IP per window (0: unlimited).
    #[arg(long, env = "WABRIDGES_SIM_IP_LIMIT", default_value_t = 300)]
    ip_limit: u32,
    /// Rate-limit window, e.g. 60s.
    #[arg(long, env = "WABRIDGES_SIM_WINDOW", default_value = "60s", value_parser = humantime_duration)]
    window: Duration,
    /// New bridges start unpaired (they need /pair before sends work).
    #[arg(long, env = "WABRIDGES_SIM_NO_AUTO_CONNECT")]
    no_auto_connect: bool,
    /// Leave `customer_ref` out of webhook bodies.
    #[arg(long, env = "WABRIDGES_SIM_NO_WEBHOOK_CUSTOMER_REF")]
    no_webhook_customer_ref: bool,
    /// Echo every accepted send as a `from_me` webhook: off, before or after.
    #[arg(long, env = "WABRIDGES_SIM_ECHO", default_value = "off", value_parser = echo_mode)]
    echo: EchoMode,
    /// Let a repeated provisioning call replace the stored webhook_url.
    #[arg(long, env = "WABRIDGES_SIM_UPDATE_WEBHOOK")]
    update_webhook_on_reprovision: bool,
    /// Also serve the Cloud API simulator on this address (off when unset).
    #[arg(long, env = "CLOUD_SIM_ADDR")]
    cloud_addr: Option<SocketAddr>,
    /// Our Meta app's id (the Embedded Signup exchange's `client_id`).
    #[arg(long, env = "SWITCHYARD_CLOUD_APP_ID", default_value = "sim-app")]
    cloud_app_id: String,
    /// The app secret that signs Cloud webhooks (required with --cloud-addr).
    #[arg(long, env = "SWITCHYARD_CLOUD_APP_SECRET", hide_env_values = true)]
    cloud_app_secret: Option<String>,
    /// Where Cloud webhooks go (settable later through /_sim/cloud/webhook).
    #[arg(long, env = "CLOUD_SIM_WEBHOOK_URL")]
    cloud_webhook_url: Option<String>,
    /// The verify token of the GET handshake.
    #[arg(
        long,
        env = "SWITCHYARD_CLOUD_VERIFY_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    cloud_verify_token: String,
    /// Meta's real durations (24 h window, 6 s pair rate, redeliveries over 7 days)
    /// instead of the compressed test clock.
    #[arg(long, env = "CLOUD_SIM_REAL_CLOCK")]
    cloud_real_clock: bool,
    /// Log format: human or json.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "human")]
    log_format: LogFormat,
    /// Log filter (`EnvFilter` directives, e.g. `info,switchyard_bridge_sim=debug`).
    #[arg(long, env = "SWITCHYARD_LOG", default_value = "info", value_parser = log_filter)]
    log: String,
}

fn humantime_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| e.to_string())
}

fn log_filter(raw: &str) -> Result<String, String> {
    switchyard_shared::telemetry::parse_filter(raw).map(|_| raw.to_owned())
}

fn echo_mode(raw: &str) -> Result<EchoMode, String> {
    match raw {
        "off" => Ok(EchoMode::Off),
        "before" => Ok(EchoMode::Before),
        "after" => Ok(EchoMode::After),
        other => Err(format!("expected off, before or after (got {other:?})")),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // The simulator logs; it exports no spans of its own.
    let _telemetry = switchyard_shared::telemetry::init(
        "switchyard-bridge-sim",
        args.log_format,
        &args.log,
        &switchyard_shared::telemetry::TraceSettings::default(),
    );
    let mut config = SimConfig::new(args.api_key.clone());
    config.bind = args.addr;
    config.limits = Limits {
        provision: args.provision_limit,
        proxy: args.proxy_limit,
        api: args.api_limit,
        per_ip: args.ip_limit,
        window_ms: u64::try_from(args.window.as_millis()).unwrap_or(u64::MAX),
    };
    config.auto_connect = !args.no_auto_connect;
    config.webhook_customer_ref = !args.no_webhook_customer_ref;
    config.echo = args.echo;
    config.update_webhook_on_reprovision = args.update_webhook_on_reprovision;

    let cloud = match start_cloud(&args).await {
        Ok(cloud) => cloud,
        Err(message) => {
            eprintln!("wabridges-sim: {message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let sim = match SimHandle::start(config).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("wabridges-sim: cannot listen on {}: {e}", args.addr);
            return std::process::ExitCode::FAILURE;
        }
    };
    let stop = CancellationToken::new();
    switchyard_shared::shutdown::cancel_on_signal(stop.clone());
    stop.cancelled().await;
    sim.stop().await;
    if let Some(cloud) = cloud {
        cloud.shutdown().await;
    }
    std::process::ExitCode::SUCCESS
}

/// Starts the Cloud API simulator when `--cloud-addr` is set. Errors never
/// carry the secret.
async fn start_cloud(args: &Args) -> Result<Option<CloudSim>, String> {
    let Some(addr) = args.cloud_addr else {
        return Ok(None);
    };
    let Some(secret) = args.cloud_app_secret.clone().filter(|s| !s.is_empty()) else {
        return Err("--cloud-addr needs --cloud-app-secret (SWITCHYARD_CLOUD_APP_SECRET)".into());
    };
    let mut config = CloudSimConfig::new(
        args.cloud_app_id.clone(),
        secret,
        args.cloud_verify_token.clone(),
    );
    config.bind = addr;
    config.webhook_url = args.cloud_webhook_url.clone();
    if args.cloud_real_clock {
        config.clock = CloudClock::meta();
    }
    CloudSim::start(config)
        .await
        .map(Some)
        .map_err(|e| format!("cannot listen on {addr} for the Cloud simulator: {e}"))
}
