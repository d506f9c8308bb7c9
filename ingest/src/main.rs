//! Entry point of switchyard-ingest: configuration from the environment, then [`switchyard_ingest::run`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    switchyard_shared::service::run_main(
        "switchyard-ingest",
        switchyard_ingest::DEFAULT_OPS_PORT,
        switchyard_ingest::Settings::from_env,
        switchyard_ingest::run,
    )
    .await
}
