//! The `rosterflow` command: parses arguments, runs the library, prints what happened and maps
//! the outcome to an exit code (0 ok, 1 finished with quarantined records or held, 2 failed,
//! 78 bad config).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, ConfigError, Pipeline};
use crate::db::Db;
use crate::extract::{self, Recorder};
use crate::load;
use crate::sync::{self, RunOptions, RunStatus};

/// Exit code for a bad pipeline file (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for a run that failed.
pub const EXIT_FAILED: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "rosterflow", version, about = "Keeps a district's Clever roster in the Freckle DB, exactly and safely.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check pipeline files without touching any source or database.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Sync a pipeline's district into the Freckle DB.
    Run {
        pipeline: PathBuf,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where compiled plugins are cached.
        #[arg(long, env = "ROSTERFLOW_PLUGIN_CACHE")]
        plugin_cache: Option<PathBuf>,
    },
    /// Pull a pipeline's source and record its raw pages for replay, loading nothing.
    Pull {
        pipeline: PathBuf,
        /// An empty (or new) directory for the recording.
        #[arg(long)]
        record: PathBuf,
    },
    /// Apply a held run's plan.
    Approve { pipeline: PathBuf, run: i64 },
    /// Drop a held run's plan.
    Discard { pipeline: PathBuf, run: i64 },
    /// Show a pipeline's recent runs.
    History {
        pipeline: PathBuf,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

/// Runs the command line and returns the process's exit code.
pub async fn main(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            let config = error.chain().any(|cause| cause.is::<ConfigError>());
            ExitCode::from(if config { EXIT_CONFIG } else { EXIT_FAILED })
        }
    }
}

fn environment() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

fn load_pipeline(path: &Path) -> anyhow::Result<Pipeline> {
    Ok(config::load(path, &environment())?)
}

async fn open_db(pipeline: &Pipeline) -> anyhow::Result<Db> {
    Db::open(&pipeline.file.load.database)
        .await
        .with_context(|| format!("pipeline {}", pipeline.name()))
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate { files } => {
            let env = environment();
            let mut failed = false;
            for file in &files {
                match config::load(file, &env) {
                    Ok(_) => println!("{}: ok", file.display()),
                    Err(error) => {
                        failed = true;
                        eprintln!("{error}");
                    }
                }
            }
            Ok(if failed { EXIT_CONFIG } else { 0 })
        }
        Command::Run {
            pipeline,
            dry_run,
            plugin_cache,
        } => {
            let pipeline = load_pipeline(&pipeline)?;
            let options = RunOptions {
                dry_run,
                plugin_cache,
            };
            let report = sync::run(&pipeline, &options).await?;
            print!("{}", report.plan);
            match &report.status {
                RunStatus::Committed { run_id } => println!("run {run_id} committed"),
                RunStatus::Held { run_id, reasons } => {
                    println!("run {run_id} held for approval:");
                    for reason in reasons {
                        println!("  - {reason}");
                    }
                    println!(
                        "approve with `rosterflow approve {} {run_id}` or discard with `rosterflow discard {} {run_id}`",
                        pipeline.path.display(),
                        pipeline.path.display()
                    );
                }
                RunStatus::DryRun => println!("dry run: nothing was written"),
            }
            Ok(report.exit_code())
        }
        Command::Pull { pipeline, record } => {
            let pipeline = load_pipeline(&pipeline)?;
            let recorder = Recorder::create(&record)?;
            let snapshot = extract::pull(&pipeline, Some(&recorder)).await?;
            println!(
                "recorded district {} into {}: {} schools, {} sections, {} students, {} teachers",
                snapshot.district.id,
                record.display(),
                snapshot.schools.len(),
                snapshot.sections.len(),
                snapshot.students.len(),
                snapshot.teachers.len()
            );
            Ok(0)
        }
        Command::Approve { pipeline, run } => {
            let pipeline = load_pipeline(&pipeline)?;
            let db = open_db(&pipeline).await?;
            let outcome = load::approve(&db, run).await?;
            println!("run {run} approved: {} changes applied", outcome.changes);
            Ok(0)
        }
        Command::Discard { pipeline, run } => {
            let pipeline = load_pipeline(&pipeline)?;
            let db = open_db(&pipeline).await?;
            load::discard(&db, run).await?;
            println!("run {run} discarded: nothing was applied");
            Ok(0)
        }
        Command::History { pipeline, limit } => {
            let pipeline = load_pipeline(&pipeline)?;
            let db = open_db(&pipeline).await?;
            for run in load::history(&db, pipeline.name(), limit).await? {
                println!("{run}");
            }
            Ok(0)
        }
    }
}
