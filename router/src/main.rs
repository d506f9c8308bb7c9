//! Entry point of switchyard-router: configuration from the environment, then
//! [`switchyard_router::run`]; `--version` and `--probe` are handled by `run_main`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    switchyard_shared::service::run_main(
        "switchyard-router",
        switchyard_build_info::version!(),
        switchyard_router::DEFAULT_OPS_PORT,
        switchyard_router::Settings::from_env,
        switchyard_router::run,
    )
    .await
}
