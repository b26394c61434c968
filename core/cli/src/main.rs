//! The `rosterflow` binary: logging to stderr, then the command line in [`cli`], which composes
//! the stages' crates into commands.

mod cli;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, LogFormat};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    cli::main(cli).await
}

/// Logs go to stderr, so that what a command prints on stdout (a plan, a report) stays readable
/// and parseable. By default only warnings and errors; `-v` adds progress, `-vv` detail.
/// Colours only on a terminal, and never with `NO_COLOR` set. On a terminal, a status line
/// shows what a long step is doing; it never reaches a log.
fn init_logging(cli: &Cli) {
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let directives = std::env::var("ROSTERFLOW_LOG").unwrap_or_else(|_| level.to_owned());
    let filter = EnvFilter::new(format!("{directives},{}=off", rosterflow_model::PROGRESS));
    let terminal = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match cli.log_format {
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
        LogFormat::Text => {
            let colour = terminal && std::env::var_os("NO_COLOR").is_none();
            logs.with_ansi(colour).with_filter(filter).boxed()
        }
    };
    let progress = (terminal && cli.log_format == LogFormat::Text).then(|| {
        StatusLine.with_filter(Targets::new().with_target(rosterflow_model::PROGRESS, Level::INFO))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(progress)
        .init();
}

/// Shows the latest progress report on one line of the terminal, overwritten in place.
struct StatusLine;

impl<S: Subscriber> Layer<S> for StatusLine {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    let _ = write!(self.0, "{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let mut stderr = std::io::stderr().lock();
        // Return to the line's start and clear it; an empty report leaves it clear.
        let _ = write!(stderr, "\r\x1b[2K{}", message.0);
        let _ = stderr.flush();
    }
}
