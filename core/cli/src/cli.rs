//! The `rosterflow` command: parses arguments, runs the library, prints what happened and maps
//! the outcome to an exit code (see [`rosterflow_pipeline::failure::exit`]: 0 ok, 1 applied with quarantined
//! records, 2 failed, 3 held, 75 another run in progress, 78 bad config).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use strum::VariantNames;

use rosterflow_demo as growth;
use rosterflow_export as export;
use rosterflow_extract::{self as extract, Recorder};
use rosterflow_model::Clock;
use rosterflow_pipeline::config::{self, Pipeline};
use rosterflow_pipeline::doctor;
use rosterflow_pipeline::failure::{Failure, exit};
use rosterflow_pipeline::sync::{RunOptions, RunStatus, Runner};
use rosterflow_serve as serve;
use rosterflow_store::LockOptions;
use rosterflow_store::db::Db;
use rosterflow_store::{explain, report, roster, runs};
use rosterflow_transform::plugin::{self, PluginHost, Plugins};

#[derive(Debug, Parser)]
#[command(
    name = "rosterflow",
    version,
    about = "Keeps a district's Clever roster in the Freckle DB, exactly and safely."
)]
pub struct Cli {
    /// More log lines on stderr: -v for progress (info), -vv for detail (debug).
    /// `ROSTERFLOW_LOG` (e.g. `warn,rosterflow=debug`) overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// How log lines are written: text for people, json for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
        /// Also write the run's report as `run-<id>.json` and `run-<id>.csv` into this directory.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Wait this long for another run of the same district to finish (else exit 75).
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
    /// Pull a pipeline's source and record its raw pages for replay, loading nothing.
    Pull {
        pipeline: PathBuf,
        /// An empty (or new) directory for the recording.
        #[arg(long)]
        record: PathBuf,
    },
    /// Apply a held run's plan.
    Approve {
        pipeline: PathBuf,
        run: i64,
        /// Wait this long for another run of the same district to finish (else exit 75).
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
    /// Drop a held run's plan.
    Discard { pipeline: PathBuf, run: i64 },
    /// Explain why a student, teacher or class is (not) in Freckle, from recorded decisions.
    Explain {
        pipeline: PathBuf,
        #[arg(value_parser = PossibleValuesParser::new(explain::Subject::VARIANTS)
            .try_map(|name| name.parse::<explain::Subject>()))]
        subject: explain::Subject,
        /// Clever id or SIS id.
        id: String,
    },
    /// List what is wrong with the district's data, read from the source as a run would (with
    /// the source's secrets) and changing nothing: each finding with its count, examples, who
    /// can fix it and how. Exit 0 when nothing is found, 1 when something is, 2 when the source
    /// cannot be read. A Freckle DB that cannot be read (or does not exist yet) does not change
    /// the exit code: the source alone is judged (0 if it is clean) and a note says what was
    /// not checked (quarantined records, a shrinking roster).
    Doctor {
        pipeline: PathBuf,
        /// A table on a terminal, JSON otherwise, unless given; `text` is a message for the
        /// source's admin listing what to fix at the source.
        #[arg(long, value_enum)]
        format: Option<DoctorFormat>,
        /// Judge terms as of this day (YYYY-MM-DD) rather than today (UTC).
        #[arg(long)]
        today: Option<chrono::NaiveDate>,
        /// Where compiled plugins are cached.
        #[arg(long, env = "ROSTERFLOW_PLUGIN_CACHE")]
        plugin_cache: Option<PathBuf>,
    },
    /// Edit the roster of a manually managed class (Clever-managed classes are locked).
    Roster {
        pipeline: PathBuf,
        #[command(subcommand)]
        edit: RosterEdit,
    },
    /// Share a student with another teacher (works for any class).
    Share {
        pipeline: PathBuf,
        /// The student's Clever id or SIS id.
        student: String,
        /// The teacher who gets access.
        #[arg(long = "with")]
        teacher: String,
        /// The teacher who shares.
        #[arg(long)]
        from: Option<String>,
    },
    /// End a share.
    Unshare {
        pipeline: PathBuf,
        student: String,
        #[arg(long = "with")]
        teacher: String,
    },
    /// Print a run's report (by default the latest run that changed something or is held).
    Report {
        pipeline: PathBuf,
        run: Option<i64>,
        /// A table on a terminal, JSON otherwise, unless given.
        #[arg(long, value_enum)]
        format: Option<ReportFormat>,
    },
    /// Write the pipeline's Parquet exports (growth data and roster history).
    Export { pipeline: PathBuf },
    /// Demo helpers; never part of a production pipeline.
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
    /// Inspect or try a WASM plugin.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Deliver queued welcome emails, or queue a new one for a teacher.
    Email {
        #[command(subcommand)]
        command: EmailCommand,
    },
    /// For each pipeline (a file, or every `*.toml` of a directory): its last run and outcome,
    /// runs held for approval, quarantined records.
    Status {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
    /// Show a pipeline's recent runs.
    History {
        pipeline: PathBuf,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Run every pipeline of a directory on its `[schedule]`, deliver welcome emails between
    /// runs, and answer /healthz, /readyz and /metrics, until SIGTERM.
    Serve(Box<ServeArgs>),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The directory of pipeline files (read again every --rescan-secs).
    #[arg(long)]
    pipelines: PathBuf,
    /// The Freckle DB served; by default the one database the pipelines load into.
    #[arg(long)]
    database: Option<String>,
    /// Where HTTP listens.
    #[arg(long, default_value = "127.0.0.1:9187")]
    listen: std::net::SocketAddr,
    /// Runs at once in this process.
    #[arg(long, default_value_t = 2)]
    max_runs: usize,
    /// After SIGTERM, how long running runs may finish before they are abandoned (rolled back).
    #[arg(long, default_value_t = 300)]
    drain_secs: u64,
    /// On PostgreSQL, how long a run may stop answering before its district's lock is taken
    /// back and what it began is rolled back.
    #[arg(long, default_value_t = 60)]
    lease_secs: u64,
    /// How often the pipeline directory is read again.
    #[arg(long, default_value_t = 10)]
    rescan_secs: u64,
    /// How often queued welcome emails are delivered.
    #[arg(long, default_value_t = 60)]
    email_every_secs: u64,
    /// How many times a run that failed for a transient reason is tried again.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(0..=20))]
    retries: u64,
    /// The first wait before a retry; each next one doubles.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    retry_backoff_secs: u64,
    /// Where compiled plugins are cached.
    #[arg(long, env = "ROSTERFLOW_PLUGIN_CACHE")]
    plugin_cache: Option<PathBuf>,
    /// This process's name among the services of a database (default: host and process id).
    #[arg(long)]
    worker: Option<String>,
    /// The token that signs in to the admin console (off without it).
    #[arg(long, env = "ROSTERFLOW_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Signing in with Clever: the Clever app's client id (off without it). Its secret is read
    /// from ROSTERFLOW_CLEVER_CLIENT_SECRET, and the Freckle app's from ROSTERFLOW_APP_SECRET.
    #[arg(long, env = "ROSTERFLOW_CLEVER_CLIENT_ID")]
    clever_client_id: Option<String>,
    /// The redirect URI registered with Clever (the first one): this service's
    /// `/sign-in/clever/callback`, as browsers reach it.
    #[arg(long, env = "ROSTERFLOW_CLEVER_REDIRECT_URI")]
    clever_redirect_uri: Option<url::Url>,
    /// Where the Freckle app receives a signed-in person (`?grant=...` is added).
    #[arg(long, env = "ROSTERFLOW_APP_LANDING_URL")]
    app_landing_url: Option<url::Url>,
    /// Where the Freckle app starts a login with its own `app_state`: logins Clever starts are
    /// sent there (without it, straight back to Clever).
    #[arg(long, env = "ROSTERFLOW_APP_START_URL")]
    app_start_url: Option<url::Url>,
    /// Clever's OAuth server.
    #[arg(long, default_value = "https://clever.com")]
    clever_oauth_url: url::Url,
    /// Clever's API.
    #[arg(long, default_value = "https://api.clever.com")]
    clever_api_url: url::Url,
}

impl ServeArgs {
    /// The sign-in settings, when a Clever client id is given: every other one is then needed.
    fn sign_in(&self) -> anyhow::Result<Option<serve::sign_in::SignInOptions>> {
        let Some(client_id) = self.clever_client_id.clone().filter(|id| !id.is_empty()) else {
            return Ok(None);
        };
        let secret = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let client_secret = secret("ROSTERFLOW_CLEVER_CLIENT_SECRET");
        let app_secret = secret("ROSTERFLOW_APP_SECRET");
        let missing: Vec<&str> = [
            ("ROSTERFLOW_CLEVER_CLIENT_SECRET", client_secret.is_none()),
            ("--clever-redirect-uri", self.clever_redirect_uri.is_none()),
            ("--app-landing-url", self.app_landing_url.is_none()),
            ("ROSTERFLOW_APP_SECRET", app_secret.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
        let (Some(client_secret), Some(redirect_uri), Some(landing_url), Some(app_secret)) = (
            client_secret,
            self.clever_redirect_uri.clone(),
            self.app_landing_url.clone(),
            app_secret,
        ) else {
            anyhow::bail!(
                "signing in with Clever (--clever-client-id) also needs {}",
                missing.join(", ")
            );
        };
        Ok(Some(serve::sign_in::SignInOptions {
            clever: serve::sign_in::clever::CleverApp {
                client_id,
                client_secret: rosterflow_model::Secret::new(client_secret),
                redirect_uri,
                oauth_url: self.clever_oauth_url.clone(),
                api_url: self.clever_api_url.clone(),
            },
            landing_url,
            app_start_url: self.app_start_url.clone(),
            app_secret: rosterflow_model::Secret::new(app_secret),
        }))
    }

    fn options(self) -> serve::ServeOptions {
        let worker = self.worker.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_owned())
                .unwrap_or_else(|_| "rosterflow".to_owned());
            format!("{host}-{}", std::process::id())
        });
        serve::ServeOptions {
            dir: self.pipelines,
            database: self.database,
            max_runs: self.max_runs.max(1),
            drain: Duration::from_secs(self.drain_secs),
            lease: Duration::from_secs(self.lease_secs.max(1)),
            rescan: Duration::from_secs(self.rescan_secs.max(1)),
            email_every: Duration::from_secs(self.email_every_secs.max(1)),
            retries: self.retries as usize,
            retry_backoff: Duration::from_secs(self.retry_backoff_secs.max(1)),
            plugin_cache: self.plugin_cache,
            worker,
            // An empty variable (`ROSTERFLOW_ADMIN_TOKEN=` in an environment file) leaves the
            // console off, as an unset one does.
            admin_token: self
                .admin_token
                .filter(|token| !token.is_empty())
                .map(rosterflow_model::Secret::new),
            sign_in: None,
        }
    }
}

#[derive(Debug, Subcommand)]
enum RosterEdit {
    /// Add a student to a class.
    Add {
        #[arg(long)]
        class: String,
        #[arg(long)]
        student: String,
    },
    /// Remove a student from a class.
    Remove {
        #[arg(long)]
        class: String,
        #[arg(long)]
        student: String,
    },
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Invent realistic practice for every student of the pipeline's district, so that the
    /// demo export is not empty. Replaces earlier demo practice.
    SeedPractice {
        pipeline: PathBuf,
        #[arg(long, default_value_t = 8)]
        weeks: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
enum EmailCommand {
    /// Send the district's due welcome emails through the pipeline's `[email]` server,
    /// throttled as configured.
    Send { pipeline: PathBuf },
    /// Queue a new welcome email for a teacher whose link was lost or expired (Clever id or
    /// SIS id); the next `email send` delivers it with a new link, and the old one stops working.
    Resend { pipeline: PathBuf, teacher: String },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Check a component: interface version, exports, default limits.
    Check { wasm: PathBuf },
    /// Run a component on a recorded snapshot and print the edits it proposes.
    Test {
        wasm: PathBuf,
        /// A recording (`rosterflow pull --record DIR`, or `pipelines/demo`).
        #[arg(long)]
        snapshot: PathBuf,
        /// The plugin's config as JSON (its `[transform.config]` table).
        #[arg(long, default_value = "{}")]
        config: String,
        /// The plugin's name, as a pipeline would give it.
        #[arg(long, default_value = "test")]
        name: String,
        #[arg(long, env = "ROSTERFLOW_PLUGIN_CACHE")]
        plugin_cache: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    /// Aligned columns, for a person at a terminal.
    Table,
    Json,
    Csv,
}

/// The run `report` shows when none is named: the latest that changed something or waits for
/// approval, else the latest, so that a quiet night's empty run does not hide what happened.
async fn last_report(db: &Db, pipeline: &str) -> anyhow::Result<i64> {
    let latest = runs::history(db, pipeline, 1)
        .await?
        .first()
        .map(|run| run.id)
        .context("the pipeline has no runs yet")?;
    Ok(match runs::last_change(db, pipeline).await? {
        Some(changed) if changed != latest => {
            eprintln!(
                "run {changed}, the latest that changed something (run {latest}, the latest, changed nothing): `rosterflow report FILE {latest}` shows it"
            );
            changed
        }
        _ => latest,
    })
}

/// How `doctor` shows what it found.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DoctorFormat {
    /// Aligned columns, then each finding's examples and fix.
    Table,
    /// The fields documented in the README.
    Json,
    /// One row per example, for a spreadsheet.
    Csv,
    /// A message for the Clever (or OneRoster) admin: what to fix at the source.
    Text,
}

/// Runs the command line and returns the process's exit code.
pub async fn main(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(Failure::of(error.as_ref()).exit_code())
        }
    }
}

/// The exit code of a service that stopped: a second service of a SQLite database is told
/// apart, as another run of a district is.
fn serve_outcome(result: Result<(), serve::ServeError>) -> anyhow::Result<u8> {
    match result {
        Ok(()) => Ok(exit::OK),
        Err(error @ serve::ServeError::AlreadyServed { .. }) => {
            eprintln!("error: {error}");
            Ok(exit::BUSY)
        }
        Err(error @ serve::ServeError::Setup(_)) => {
            eprintln!("error: {error}");
            Ok(exit::CONFIG)
        }
        Err(error) => Err(error.into()),
    }
}

/// Who the command line acts for, recorded in run history: `cli:<login>`.
fn cli_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

fn environment() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Loads a pipeline for a command that pulls from its source: every variable must be set.
fn load_pipeline(path: &Path) -> anyhow::Result<Pipeline> {
    Ok(config::load(path, &environment())?)
}

/// Loads a pipeline for a command that only reads or writes the Freckle DB: the source's
/// secrets (`token = "${CLEVER_TOKEN}"`) need not be set.
fn load_for_db(path: &Path) -> anyhow::Result<Pipeline> {
    Ok(config::load_with(
        path,
        &environment(),
        config::Secrets::SourceDeferred,
    )?)
}

async fn open_db(pipeline: &Pipeline) -> anyhow::Result<Db> {
    Db::open(&pipeline.file.load.database)
        .await
        .with_context(|| format!("pipeline {}", pipeline.name()))
}

/// The pipeline's district: the one it names, or the one its runs have loaded.
async fn district_of(pipeline: &Pipeline, db: &Db) -> anyhow::Result<String> {
    pipeline.district(db).await?.with_context(|| {
        format!(
            "pipeline {} names no district_id and has not run yet",
            pipeline.name()
        )
    })
}

fn write_report(report: &report::RunReport, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join(format!("run-{}.json", report.run));
    std::fs::write(&json, report.to_json())
        .with_context(|| format!("writing {}", json.display()))?;
    let csv = dir.join(format!("run-{}.csv", report.run));
    let file = std::fs::File::create(&csv).with_context(|| format!("writing {}", csv.display()))?;
    report.write_csv(file)?;
    Ok(())
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
            Ok(if failed { exit::CONFIG } else { exit::OK })
        }
        Command::Run {
            pipeline,
            dry_run,
            plugin_cache,
            report: report_dir,
            wait_secs,
        } => {
            let pipeline = load_pipeline(&pipeline)?;
            let runner = Runner::new(open_db(&pipeline).await?, Plugins::new(plugin_cache));
            let options = RunOptions {
                dry_run,
                lock: LockOptions::waiting(Duration::from_secs(wait_secs)),
                scheduled_for: None,
                requested_by: Some(cli_user()),
            };
            let report = runner.run(&pipeline, &options).await?;
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
            if let (Some(dir), Some(run)) = (report_dir, report.status.run_id()) {
                write_report(&report::read(runner.db(), run).await?, &dir)?;
            }
            Ok(report.exit_code())
        }
        Command::Pull { pipeline, record } => {
            let pipeline = load_pipeline(&pipeline)?;
            let recorder = Recorder::create(&record)?;
            let snapshot = extract::pull(
                &pipeline.file.source,
                pipeline.source_district(),
                Some(&recorder),
            )
            .await?;
            println!(
                "recorded district {} into {}: {} schools, {} sections, {} students, {} teachers",
                snapshot.district.id,
                record.display(),
                snapshot.schools.len(),
                snapshot.sections.len(),
                snapshot.students.len(),
                snapshot.teachers.len()
            );
            Ok(exit::OK)
        }
        Command::Approve {
            pipeline,
            run,
            wait_secs,
        } => {
            let pipeline = load_for_db(&pipeline)?;
            let runner = Runner::new(open_db(&pipeline).await?, Plugins::default());
            let outcome = runner
                .approve(
                    &pipeline,
                    run,
                    LockOptions::waiting(Duration::from_secs(wait_secs)),
                    Some(&cli_user()),
                )
                .await?;
            println!("run {run} approved: {} changes applied", outcome.changes);
            Ok(exit::OK)
        }
        Command::Discard { pipeline, run } => {
            let pipeline = load_for_db(&pipeline)?;
            let db = open_db(&pipeline).await?;
            runs::discard(&db, pipeline.name(), run, Some(&cli_user())).await?;
            println!("run {run} discarded: nothing was applied");
            Ok(exit::OK)
        }
        Command::Explain {
            pipeline,
            subject,
            id,
        } => {
            let pipeline = load_for_db(&pipeline)?;
            let db = open_db(&pipeline).await?;
            let district = district_of(&pipeline, &db).await?;
            print!("{}", explain::explain(&db, &district, subject, &id).await?);
            Ok(exit::OK)
        }
        Command::Doctor {
            pipeline,
            format,
            today,
            plugin_cache,
        } => {
            let pipeline = load_pipeline(&pipeline)?;
            let today = today.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let diagnosis = doctor::diagnose(&pipeline, &Plugins::new(plugin_cache), today).await?;
            let stdout = std::io::stdout();
            let format = format.unwrap_or(if stdout.is_terminal() {
                DoctorFormat::Table
            } else {
                DoctorFormat::Json
            });
            match format {
                DoctorFormat::Table => print!("{}", doctor::render::table(&diagnosis)),
                DoctorFormat::Json => println!("{}", doctor::render::json(&diagnosis)),
                DoctorFormat::Csv => doctor::render::write_csv(&diagnosis, stdout.lock())?,
                DoctorFormat::Text => print!("{}", doctor::render::text(&diagnosis)),
            }
            Ok(diagnosis.exit_code())
        }
        Command::Roster { pipeline, edit } => {
            let pipeline = load_for_db(&pipeline)?;
            let db = open_db(&pipeline).await?;
            let district = district_of(&pipeline, &db).await?;
            match edit {
                RosterEdit::Add { class, student } => {
                    match roster::add_student(&db, &district, &class, &student).await? {
                        roster::Outcome::Done => println!("added {student} to {class}"),
                        roster::Outcome::AlreadySo => println!("{student} is already in {class}"),
                    }
                }
                RosterEdit::Remove { class, student } => {
                    roster::remove_student(&db, &district, &class, &student).await?;
                    println!("removed {student} from {class}");
                }
            }
            Ok(exit::OK)
        }
        Command::Share {
            pipeline,
            student,
            teacher,
            from,
        } => {
            let pipeline = load_for_db(&pipeline)?;
            let db = open_db(&pipeline).await?;
            let district = district_of(&pipeline, &db).await?;
            match roster::share(&db, &district, &student, &teacher, from.as_deref()).await? {
                roster::Outcome::Done => println!("shared {student} with {teacher}"),
                roster::Outcome::AlreadySo => {
                    println!("{student} is already shared with {teacher}")
                }
            }
            Ok(exit::OK)
        }
        Command::Unshare {
            pipeline,
            student,
            teacher,
        } => {
            let pipeline = load_for_db(&pipeline)?;
            let db = open_db(&pipeline).await?;
            let district = district_of(&pipeline, &db).await?;
            roster::unshare(&db, &district, &student, &teacher).await?;
            println!("{student} is no longer shared with {teacher}");
            Ok(exit::OK)
        }
        Command::Report {
            pipeline,
            run,
            format,
        } => {
            let pipeline = load_for_db(&pipeline)?;
            let db = open_db(&pipeline).await?;
            let run = match run {
                Some(run) => run,
                None => last_report(&db, pipeline.name()).await?,
            };
            let report = report::read(&db, run).await?;
            let stdout = std::io::stdout().lock();
            let format = format.unwrap_or(if stdout.is_terminal() {
                ReportFormat::Table
            } else {
                ReportFormat::Json
            });
            match format {
                ReportFormat::Table => report.write_table(stdout)?,
                ReportFormat::Json => println!("{}", report.to_json()),
                ReportFormat::Csv => report.write_csv(stdout)?,
            }
            Ok(exit::OK)
        }
        Command::Export { pipeline } => {
            let pipeline = load_for_db(&pipeline)?;
            let config =
                pipeline.file.export.clone().with_context(|| {
                    format!("{} has no [export] table", pipeline.path.display())
                })?;
            let db = open_db(&pipeline).await?;
            let district = district_of(&pipeline, &db).await?;
            let report = export::run(&db, &district, &config, chrono::Utc::now()).await?;
            for file in &report.files {
                println!(
                    "{}: {} rows, {} bytes -> {}",
                    file.dataset, file.rows, file.bytes, file.location
                );
            }
            Ok(exit::OK)
        }
        Command::Demo {
            command:
                DemoCommand::SeedPractice {
                    pipeline,
                    weeks,
                    seed,
                },
        } => {
            let pipeline = load_for_db(&pipeline)?;
            let db = open_db(&pipeline).await?;
            let district = district_of(&pipeline, &db).await?;
            let options = growth::SeedOptions {
                seed,
                weeks,
                ..growth::SeedOptions::ending_at(chrono::Utc::now())
            };
            let report = growth::seed_demo_practice(&db, &district, &options).await?;
            println!(
                "invented {} practice sessions and {} level measurements for {} students",
                report.sessions, report.levels, report.students
            );
            Ok(exit::OK)
        }
        Command::Plugin {
            command: PluginCommand::Check { wasm },
        } => {
            let host = PluginHost::new(None)?;
            println!("{}", plugin::check(&host, &wasm)?);
            Ok(exit::OK)
        }
        Command::Plugin {
            command:
                PluginCommand::Test {
                    wasm,
                    snapshot,
                    config,
                    name,
                    plugin_cache,
                },
        } => {
            let host = PluginHost::new(plugin_cache)?;
            let plugin = host.load(&wasm)?;
            let snapshot = extract::replay::read_snapshot(&snapshot)?;
            let edits =
                plugin.propose(&name, &config, &plugin::PluginLimits::default(), &snapshot)?;
            for edit in &edits {
                println!("{edit}");
            }
            println!("{} edit(s)", edits.len());
            Ok(exit::OK)
        }
        Command::Email {
            command: EmailCommand::Send { pipeline },
        } => {
            let pipeline = load_for_db(&pipeline)?;
            let config = pipeline.file.email.clone().with_context(|| {
                format!(
                    "{} has no [email] table: welcome emails wait in the outbox",
                    pipeline.path.display()
                )
            })?;
            let db = open_db(&pipeline).await?;
            let district = district_of(&pipeline, &db).await?;
            let report = rosterflow_accounts::email::deliver_pending(
                &db,
                &district,
                &config,
                chrono::Utc::now(),
            )
            .await?;
            println!(
                "welcome emails: {} sent, {} to retry, {} failed, {} waiting",
                report.sent, report.retrying, report.failed, report.waiting
            );
            for problem in &report.problems {
                println!("  outbox row {}: {}", problem.outbox_id, problem.reason);
            }
            // Like a run with quarantined records: done, with something for an admin to fix.
            Ok(if report.failed + report.retrying > 0 {
                exit::QUARANTINED
            } else {
                exit::OK
            })
        }
        Command::Email {
            command: EmailCommand::Resend { pipeline, teacher },
        } => {
            let pipeline = load_for_db(&pipeline)?;
            let db = open_db(&pipeline).await?;
            let district = district_of(&pipeline, &db).await?;
            rosterflow_accounts::email::resend(&db, &district, &teacher).await?;
            println!(
                "a new welcome email for {teacher} is queued: `rosterflow email send {}` delivers it",
                pipeline.path.display()
            );
            Ok(exit::OK)
        }
        Command::Status { pipelines } => {
            let mut code = exit::OK;
            let mut files = Vec::new();
            for path in pipelines {
                if path.is_dir() {
                    let found = config::files_in(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    anyhow::ensure!(
                        !found.is_empty(),
                        "{} has no *.toml pipeline file",
                        path.display()
                    );
                    files.extend(found);
                } else {
                    files.push(path);
                }
            }
            for path in &files {
                let pipeline = load_for_db(path)?;
                let db = open_db(&pipeline).await?;
                let status = runs::status(&db, pipeline.name()).await?;
                print!("{}: {status}", pipeline.name());
                if status.needs_attention() {
                    code = exit::QUARANTINED;
                }
            }
            Ok(code)
        }
        Command::Serve(args) => {
            let sign_in = match args.sign_in() {
                Ok(sign_in) => sign_in,
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(exit::CONFIG);
                }
            };
            let listen = args.listen;
            let listener = serve::http::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let metrics = serve::http::install_recorder().map_err(anyhow::Error::msg)?;
            let served = serve::serve(
                serve::ServeOptions {
                    sign_in,
                    ..args.options()
                },
                listener,
                metrics,
                Clock::System,
                serve::shutdown_signal(),
            );
            serve_outcome(served.await)
        }
        Command::History { pipeline, limit } => {
            let pipeline = load_for_db(&pipeline)?;
            let db = open_db(&pipeline).await?;
            for run in runs::history(&db, pipeline.name(), limit).await? {
                println!("{run}");
            }
            Ok(exit::OK)
        }
    }
}
