//! Entry point of switchyard-sender: configuration from the environment, then
//! [`switchyard_sender::run`]; `--version` and `--probe` are handled by `run_main`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    switchyard_shared::service::run_main(
        "switchyard-sender",
        switchyard_build_info::version!(),
        switchyard_sender::DEFAULT_OPS_PORT,
        switchyard_sender::Settings::from_env,
        switchyard_sender::run,
    )
    .await
}
