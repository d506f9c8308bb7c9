//! Entry point of switchyard-sender: configuration from the environment, then [`switchyard_sender::run`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    switchyard_shared::service::run_main(
        "switchyard-sender",
        switchyard_sender::DEFAULT_OPS_PORT,
        switchyard_sender::Settings::from_env,
        switchyard_sender::run,
    )
    .await
}
