//! `switchyard`: the operator's command line. `main` only parses the
//! arguments and hands them to the library (`switchyard_cli::run`), which
//! tests drive in-process.

use clap::Parser as _;
use switchyard_cli::{Cli, output::Output, run};
use switchyard_shared::config::Env;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut out = Output::stdout(cli.json);
    let exit = run(cli, Env::from_process(), &mut out).await;
    std::process::ExitCode::from(exit.code())
}
