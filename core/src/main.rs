//! The `rosterflow` binary: logging to stderr, then the command line in [`rosterflow::cli`].

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("ROSTERFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    rosterflow::cli::main(rosterflow::cli::Cli::parse()).await
}
