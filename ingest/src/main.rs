//! Entry point of switchyard-ingest: configuration from the environment, then
//! [`switchyard_ingest::run`]; `--version` and `--probe` are handled by `run_main`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    switchyard_shared::service::run_main(
        "switchyard-ingest",
        switchyard_build_info::version!(),
        switchyard_ingest::DEFAULT_OPS_PORT,
        switchyard_ingest::Settings::from_env,
        switchyard_ingest::run,
    )
    .await
}
