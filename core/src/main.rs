//! The `rosterflow` binary: logging to stderr, then the command line in [`rosterflow::cli`].

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use rosterflow::cli::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    rosterflow::cli::main(cli).await
}

/// Logs go to stderr, so that what a command prints on stdout (a plan, a report) stays readable
/// and parseable. By default only warnings and errors; `-v` adds progress, `-vv` detail.
/// Colours only on a terminal, and never with `NO_COLOR` set.
fn init_logging(cli: &Cli) {
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_env("ROSTERFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init()
        }
    }
}
