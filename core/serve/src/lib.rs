//! `rosterflow serve`: every pipeline of a directory on its schedule, unattended.
//!
//! Four parts share one [`Service`]:
//! - the scheduler reads the directory again and again and pushes each pipeline's times onto
//!   the queue as they fall due (a time missed while no service ran is caught up once);
//! - the workers (apalis) take due runs off the queue and run them, one per district at a time
//!   (the district's run lock), retrying transient failures with backoff;
//! - the mailer delivers queued welcome emails between runs;
//! - the console's doctor checks run one at a time from the service's own queue
//!   (`console/doctor.rs`), never while the service runs the same pipeline;
//! - HTTP answers `/healthz`, `/readyz` and `/metrics`.
//!
//! On PostgreSQL any number of services, on any number of machines, share the queue; on SQLite
//! one service serves a database. SIGTERM (or Ctrl-C) stops the scheduler, lets running runs
//! finish for a while, then abandons them: a run applies in one transaction, so an abandoned run
//! leaves the database as it was before it.

pub mod console;
pub mod directory;
pub mod http;
pub mod queue;
pub mod sign_in;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use apalis::layers::retry::backoff::{ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{BackoffRetryPolicy, HasherRng, RetryIfPolicy, RetryPolicy};
use apalis::prelude::{
    AbortError, BackendExt, BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt,
    WorkerContext,
};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use directory::{Scan, Served};
use queue::{Due, Pushed, Queue, QueueError};
use rosterflow_model::Clock;
use rosterflow_model::metrics as names;
use rosterflow_pipeline::schedule::ScheduleConfig;
use rosterflow_pipeline::sync::{RunOptions, RunResult, RunStatus, Runner, SyncError};
use rosterflow_store::db::{Backend, Db, DbError};
use rosterflow_store::runs::{self, RunsError};
use rosterflow_store::{LockOptions, StoreError};
use rosterflow_transform::plugin::Plugins;

/// How a service runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The directory of pipeline files.
    pub dir: PathBuf,
    /// The Freckle DB served; by default the one database the directory's pipelines load into.
    pub database: Option<String>,
    /// Runs at once in this process.
    pub max_runs: usize,
    /// How long running runs may finish after SIGTERM before they are abandoned.
    pub drain: Duration,
    /// How long a run may stop answering before PostgreSQL takes its district's lock back.
    pub lease: Duration,
    /// How often the directory is read again.
    pub rescan: Duration,
    /// How often queued welcome emails are delivered.
    pub email_every: Duration,
    /// How many times a run that failed for a transient reason is tried again.
    pub retries: usize,
    /// The first wait before a retry; each next one doubles, up to 64 times this.
    pub retry_backoff: Duration,
    /// Where compiled plugins are cached.
    pub plugin_cache: Option<PathBuf>,
    /// This process's name in the queue (unique among the services of a database).
    pub worker: String,
    /// The token that signs in to the admin console; without it the console is off.
    pub admin_token: Option<rosterflow_model::Secret>,
    /// Signing in with Clever; without it, off.
    pub sign_in: Option<sign_in::SignInOptions>,
}

/// How much longer than the lease a scheduled run waits for its district's lock.
const LOCK_MARGIN: Duration = Duration::from_secs(5);

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the pipeline directory {}", dir.display())]
    Directory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("another `rosterflow serve` already serves {}: on SQLite one service serves a database (PostgreSQL takes any number)", path.display())]
    AlreadyServed { path: PathBuf },
    #[error("the workers stopped")]
    Workers(#[source] apalis::prelude::MonitorError),
    #[error("the job queue ended this service's worker (see the log above): stopping")]
    WorkersEnded,
}

/// What the parts of a running service share.
pub struct Service {
    options: ServeOptions,
    /// The Freckle DB's URL.
    database: String,
    /// What every run of this process shares: the Freckle DB's pool, the plugin host, the
    /// clock. The service's other parts use the same pool.
    runner: Runner,
    /// The directory's good pipelines as last read, shared whole by each reader.
    pipelines: RwLock<Arc<BTreeMap<String, Served>>>,
    problems: RwLock<BTreeMap<PathBuf, String>>,
    /// When each scheduled pipeline runs next.
    next_runs: RwLock<BTreeMap<String, DateTime<Utc>>>,
    /// Where runs are queued (the scheduler's times, and the console's "run now").
    queue: Queue,
    /// The admin token, which signs the operator in to the console; `None` when not given.
    admin_token: Option<console::session::AdminToken>,
    /// Wrong admin tokens lately, to limit guessing.
    guesses: std::sync::Mutex<console::session::Guesses>,
    /// Signing in with Clever; `None` when off.
    sign_in: Option<sign_in::SignIn>,
    metrics: PrometheusHandle,
    /// Where the scheduler, the runs and the console read the time.
    clock: Clock,
    /// When the scheduler last turned (milliseconds since the Unix epoch).
    scheduler_beat: AtomicI64,
    stop: watch::Receiver<bool>,
    /// The console's doctor checks: each pipeline's last result, and their queue.
    doctor: console::doctor::Checks,
    /// Held by each run and approval of a pipeline, and by a doctor check of it while it reads
    /// the district: the two never hold the district's roster in memory at once.
    run_gates: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Service {
    /// The Freckle DB served.
    fn db(&self) -> &Db {
        self.runner.db()
    }

    /// How a job takes its district's lock: waiting long enough for the lock of a dead or hung
    /// holder to lapse; a district busy with a live run for longer is retried later (the job is
    /// not skipped).
    fn lock_options(&self) -> LockOptions {
        LockOptions {
            wait: self.options.lease + LOCK_MARGIN,
            lease: self.options.lease,
        }
    }

    /// The gate of pipeline `name` (see `run_gates`).
    fn run_gate(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.run_gates
            .lock()
            .expect("run gates lock")
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    fn pipelines(&self) -> Arc<BTreeMap<String, Served>> {
        self.pipelines.read().expect("pipelines lock").clone()
    }

    fn pipeline(&self, name: &str) -> Option<Served> {
        self.pipelines().get(name).cloned()
    }

    async fn ping_database(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.db().pool)
            .await
            .map(|_| ())
    }

    fn scheduler_turning(&self) -> bool {
        let beat = self.scheduler_beat.load(Ordering::Relaxed);
        self.clock.now().timestamp_millis() - beat < 10_000
    }

    /// Whether the console is on: with the admin token (the operator), or with sign-in (district
    /// administrators).
    fn console_on(&self) -> bool {
        self.admin_token.is_some() || self.sign_in.is_some()
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Takes a new reading of the directory, logging what changed.
    fn update(&self, scan: Scan) {
        let mut pipelines = self.pipelines.write().expect("pipelines lock");
        for (name, served) in &scan.pipelines {
            match pipelines.get(name) {
                Some(known) if known.same_as(served) => {}
                Some(_) => tracing::info!(pipeline = %name, "pipeline file changed"),
                None => {
                    tracing::info!(pipeline = %name, file = %served.pipeline.path.display(), "pipeline added")
                }
            }
        }
        for name in pipelines.keys() {
            if !scan.pipelines.contains_key(name) {
                tracing::info!(pipeline = %name, "pipeline removed: no longer scheduled");
            }
        }
        *pipelines = Arc::new(scan.pipelines);
        let mut problems = self.problems.write().expect("problems lock");
        for (path, problem) in &scan.problems {
            if problems.get(path) != Some(problem) {
                tracing::error!(file = %path.display(), "cannot serve this pipeline file: {problem}");
            }
        }
        *problems = scan.problems;
        metrics::gauge!(names::BAD_FILES).set(problems.len() as f64);
    }
}

/// Runs the service, answering HTTP on `listener` and exporting `metrics` (the process's
/// recorder), with the time read from `clock`, until `shutdown` resolves (in the binary:
/// SIGTERM or Ctrl-C, see [`shutdown_signal`]).
pub async fn serve(
    options: ServeOptions,
    listener: TcpListener,
    metrics: PrometheusHandle,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let read_dir = |database: Option<&str>| {
        directory::scan(&options.dir, database).map_err(|source| ServeError::Directory {
            dir: options.dir.clone(),
            source,
        })
    };
    let database = match &options.database {
        Some(database) => database.clone(),
        None => the_one_database(&read_dir(None)?)?,
    };
    let first = read_dir(Some(&database))?;
    let db = Db::open(&database).await?;
    let _sole = match db.backend {
        Backend::Sqlite => Some(sole_service(&db)?),
        Backend::Postgres => None,
    };
    let (queue, backend) = match db.backend {
        Backend::Postgres => Queue::postgres(&database).await?,
        Backend::Sqlite => Queue::memory(),
    };
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |address| address.to_string());
    let (stop_sender, stop) = watch::channel(false);
    let admin_token = match &options.admin_token {
        Some(token) if token.expose().trim().len() < console::session::MIN_TOKEN_LEN => {
            return Err(ServeError::Setup(format!(
                "ROSTERFLOW_ADMIN_TOKEN is shorter than {} characters: use a long random one (e.g. `openssl rand -hex 32`)",
                console::session::MIN_TOKEN_LEN
            )));
        }
        Some(token) => Some(console::session::AdminToken::new(token.expose())),
        None => None,
    };
    let sign_in = match options.sign_in.clone() {
        Some(settings) => Some(sign_in::SignIn::new(settings).map_err(ServeError::Setup)?),
        None => None,
    };
    let runner = Runner::new(db, Plugins::new(options.plugin_cache.clone())).with_clock(clock);
    let (doctor, checks) = console::doctor::Checks::new();
    let service = Arc::new(Service {
        options,
        database,
        runner,
        pipelines: RwLock::default(),
        problems: RwLock::default(),
        next_runs: RwLock::default(),
        queue,
        admin_token,
        guesses: Default::default(),
        sign_in,
        metrics,
        clock,
        scheduler_beat: AtomicI64::new(0),
        stop: stop.clone(),
        doctor,
        run_gates: Default::default(),
    });
    if service.console_on()
        && let Ok(address) = listener.local_addr()
        && !address.ip().is_loopback()
    {
        tracing::warn!(%address, "the console listens off this machine: its cookies are Secure, so browsers need HTTPS; put a TLS-terminating proxy in front");
    }
    service.update(first);
    tracing::warn!(
        %address,
        pipelines = service.pipelines().len(),
        worker = %service.options.worker,
        "serving"
    );

    let scheduler = tokio::spawn(schedule(service.clone()));
    let mailer = tokio::spawn(deliver_emails(service.clone()));
    let checker = tokio::spawn(console::doctor::work(service.clone(), checks));
    let web = tokio::spawn(http::serve(listener, service.clone(), stopped(stop)));

    let signal = async move {
        shutdown.await;
        tracing::warn!("stopping: no new runs; running runs may finish");
        let _ = stop_sender.send(true);
        Ok(())
    };
    let monitor = Monitor::new().shutdown_timeout(service.options.drain);
    let monitor = match backend {
        queue::Backend::Postgres(storage) => {
            let stopping = service.clone();
            let service = service.clone();
            let restarts = Arc::new(queue::Restarts::default());
            let allowed = restarts.clone();
            monitor
                // The service outlives its database: a worker that lost the queue starts again
                // (see `queue::resume` and `queue::Restarts`), until the service stops.
                .should_restart(move |worker, error| {
                    if stopping.stopping() {
                        return false;
                    }
                    match allowed.allow(error) {
                        Ok(()) => {
                            tracing::error!(worker = %worker.name(), %error, "the job queue's database cannot be reached (or the queue ended this worker): its runs go back to the queue, and it starts again once the database answers");
                            true
                        }
                        Err(why) => {
                            tracing::error!(worker = %worker.name(), %error, "{why}: the worker is not started again, and the service stops");
                            false
                        }
                    }
                })
                .register(move |incarnation| {
                    let worker = &service.options.worker;
                    let resume = queue::resume(
                        worker,
                        incarnation,
                        restarts.wait(),
                        service.stop.clone(),
                    );
                    WorkerBuilder::new(queue::incarnation(worker, incarnation))
                        .backend(storage.clone().before_start(resume))
                        .data(service.clone())
                        .concurrency(service.options.max_runs)
                        .retry(retry_policy(&service.options))
                        .build(run_due)
                })
        }
        queue::Backend::Memory(storage) => {
            let storage = std::sync::Mutex::new(Some(storage));
            let service = service.clone();
            monitor.register(move |_| {
                let storage = storage
                    .lock()
                    .expect("storage lock")
                    .take()
                    .expect("the in-memory queue has one worker");
                WorkerBuilder::new(service.options.worker.clone())
                    .backend(storage)
                    .data(service.clone())
                    .concurrency(service.options.max_runs)
                    .retry(retry_policy(&service.options))
                    .build(run_due)
            })
        }
    };
    let result = monitor.run_with_signal(signal).await;
    let stopped_on_request = service.stopping();
    scheduler.abort();
    mailer.abort();
    checker.abort();
    let _ = web.await;
    result.map_err(ServeError::Workers)?;
    if !stopped_on_request {
        // The engine ended its worker (on PostgreSQL a worker that lost the queue starts
        // again, so the in-process queue's): exit with an error, so that a supervisor restarts
        // the service.
        return Err(ServeError::WorkersEnded);
    }
    tracing::warn!("stopped");
    Ok(())
}

/// The database every pipeline of the directory loads into, when there is exactly one.
fn the_one_database(scan: &Scan) -> Result<String, ServeError> {
    let databases: BTreeSet<&str> = scan
        .pipelines
        .values()
        .map(|served| served.pipeline.file.load.database.as_str())
        .collect();
    match databases.len() {
        1 => Ok(databases.into_iter().next().expect("one").to_owned()),
        // Each file that could not be read, by its place in it: an unset variable shows at once.
        0 => Err(ServeError::Setup(scan.problems.values().fold(
            "no valid pipeline in the directory names a database: give one with --database".into(),
            |message, problem| format!("{message}\n  {problem}"),
        ))),
        _ => Err(ServeError::Setup(format!(
            "the directory's pipelines load into several databases ({}): give the one this service serves with --database",
            databases
                .into_iter()
                .map(rosterflow_model::secret::shown_url)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The lock that makes this process the one service of a SQLite database, held while it runs.
fn sole_service(db: &Db) -> Result<File, ServeError> {
    let path = db
        .sqlite_file()
        .ok_or_else(|| ServeError::Setup("an in-memory SQLite database cannot be served".into()))?;
    let lock_path = PathBuf::from(format!("{}.serve.lock", path.display()));
    let setup = |error: std::io::Error| {
        ServeError::Setup(format!("cannot lock {}: {error}", lock_path.display()))
    };
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(setup)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(ServeError::AlreadyServed { path }),
        Err(TryLockError::Error(error)) => Err(setup(error)),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Resolves once the service is stopping.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Transient failures are tried again after a growing, jittered wait; the rest are not.
type Retry =
    RetryIfPolicy<BackoffRetryPolicy<ExponentialBackoff<HasherRng>>, fn(&BoxDynError) -> bool>;

fn retry_policy(options: &ServeOptions) -> Retry {
    let backoff = ExponentialBackoffMaker::new(
        options.retry_backoff,
        options.retry_backoff * 64,
        0.5,
        HasherRng::default(),
    )
    .expect("a valid backoff")
    .make_backoff();
    let transient: fn(&BoxDynError) -> bool = |error| !error.is::<AbortError>();
    RetryPolicy::retries(options.retries)
        .with_backoff(backoff)
        .retry_if(transient)
}

/// Pushes each pipeline's times onto the queue as they fall due, reading the directory again
/// every `rescan`.
async fn schedule(service: Arc<Service>) {
    let queue = &service.queue;
    // Each pipeline's next time, with the schedule it was computed from.
    let mut next: BTreeMap<String, (ScheduleConfig, DateTime<Utc>)> = BTreeMap::new();
    let mut last_scan = Instant::now();
    let mut starting = true;
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    loop {
        ticks.tick().await;
        if service.stopping() {
            return;
        }
        let now = service.clock.now();
        service
            .scheduler_beat
            .store(now.timestamp_millis(), Ordering::Relaxed);
        if last_scan.elapsed() >= service.options.rescan {
            last_scan = Instant::now();
            match directory::scan(&service.options.dir, Some(&service.database)) {
                Ok(scan) => service.update(scan),
                Err(error) => {
                    tracing::error!(dir = %service.options.dir.display(), %error, "cannot read the pipeline directory")
                }
            }
        }
        let pipelines = service.pipelines();
        // A pipeline whose schedule changed (or that is gone) starts over from now.
        next.retain(|name, (config, _)| {
            pipelines
                .get(name)
                .and_then(|served| served.pipeline.file.schedule.as_ref())
                == Some(config)
        });
        for (name, served) in pipelines.iter() {
            let (Some(schedule), Some(config)) = (&served.schedule, &served.pipeline.file.schedule)
            else {
                continue;
            };
            if !next.contains_key(name) {
                if starting && let Some(missed) = schedule.missed(now) {
                    catch_up(&service, queue, name, missed).await;
                }
                match schedule.next_after(now) {
                    Some(at) => next.insert(name.clone(), (config.clone(), at)),
                    None => continue,
                };
            }
            let at = next[name].1;
            if schedule.start_of(name, at) > now {
                continue;
            }
            // A time that could not be queued stays due, and is tried again on the next turn.
            if push(queue, name, at).await {
                match schedule.next_after(now.max(at)) {
                    Some(following) => next.insert(name.clone(), (config.clone(), following)),
                    None => next.remove(name),
                };
            }
        }
        let next_runs: BTreeMap<String, DateTime<Utc>> = next
            .iter()
            .map(|(name, (_, at))| (name.clone(), *at))
            .collect();
        for (name, at) in &next_runs {
            metrics::gauge!(names::NEXT_RUN, "pipeline" => name.clone()).set(at.timestamp() as f64);
        }
        *service.next_runs.write().expect("next runs lock") = next_runs;
        starting = false;
    }
}

/// Runs a time missed while no service ran, unless a run started after it.
async fn catch_up(service: &Service, queue: &Queue, name: &str, missed: DateTime<Utc>) {
    match runs::last_started(service.db(), name).await {
        Ok(Some(started)) if started >= missed => {}
        Ok(_) => {
            tracing::warn!(pipeline = %name, at = %missed, "catching up a run missed while no service ran");
            push(queue, name, missed).await;
        }
        Err(error) => {
            tracing::error!(pipeline = %name, error = %rosterflow_model::error_chain(&error), "cannot read run history to catch up")
        }
    }
}

/// Queues the run of `name` for `at`; whether it is queued (by this service or another).
async fn push(queue: &Queue, name: &str, at: DateTime<Utc>) -> bool {
    let due = Due {
        pipeline: name.to_owned(),
        at,
        by: None,
        approve: None,
    };
    match queue.push(&due).await {
        Ok(Pushed::Queued) => {
            tracing::info!(pipeline = %name, %at, "run queued");
            true
        }
        Ok(Pushed::AlreadyQueued) => {
            tracing::debug!(pipeline = %name, %at, "run already queued by another service");
            true
        }
        Err(error) => {
            tracing::error!(pipeline = %name, %at, error = %rosterflow_model::error_chain(&error), "cannot queue a run; trying again");
            false
        }
    }
}

/// The workers' job: one due run.
async fn run_due(
    due: Due,
    service: Data<Arc<Service>>,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    let name = due.pipeline.as_str();
    let outcome = |outcome: &'static str| {
        metrics::counter!(names::RUNS, "pipeline" => name.to_owned(), "outcome" => outcome)
            .increment(1);
    };
    let Some(served) = service.pipeline(name) else {
        // Another service may know it (its directory read more recently): the queue gives the
        // run to another attempt.
        tracing::warn!(pipeline = %name, dir = %service.options.dir.display(), "a run for a pipeline this service does not serve (removed, invalid or not read yet)");
        outcome("unknown_pipeline");
        return Err(format!(
            "no pipeline named {name:?} in {}",
            service.options.dir.display()
        )
        .into());
    };
    if let Some(run) = due.approve {
        return approve_due(&service, &served, &due, run, worker).await;
    }
    if already_ran(&service, &due).await? {
        tracing::info!(pipeline = %name, at = %due.at, "this time has had its run");
        outcome("already_ran");
        return Ok(());
    }
    if worker.is_shutting_down() {
        // Not started: the queue gives it to another attempt (another service, or this one
        // after a restart).
        return Err("the service is stopping: the run was not started".into());
    }
    let options = RunOptions {
        dry_run: false,
        lock: service.lock_options(),
        scheduled_for: Some(due.at),
        requested_by: Some(due.requested_by().to_owned()),
    };
    let started = Instant::now();
    tracing::info!(pipeline = %name, at = %due.at, "run starting");
    // A run abandoned at shutdown is this future dropped: its transaction never commits.
    let gate = service.run_gate(name);
    let running = gate.lock().await;
    let result = service.runner.run(&served.pipeline, &options).await;
    drop(running);
    metrics::histogram!(names::RUN_SECONDS, "pipeline" => name.to_owned())
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(result) => {
            record(name, &result);
            outcome(match result.status {
                RunStatus::Held { .. } => "held",
                _ if result.plan.quarantined > 0 => "quarantined",
                _ => "committed",
            });
            Ok(())
        }
        Err(error) if ran_meanwhile(&service, &due, &error).await => {
            tracing::info!(pipeline = %name, at = %due.at, error = %rosterflow_model::error_chain(&error), "another service ran this time");
            outcome("already_ran");
            Ok(())
        }
        Err(error) => {
            let failure = error.failure();
            outcome(failure.outcome());
            if failure.is_retried() {
                tracing::warn!(pipeline = %name, at = %due.at, error = %rosterflow_model::error_chain(&error), "run failed; it will be tried again");
                Err(error.into())
            } else {
                tracing::error!(pipeline = %name, at = %due.at, error = %rosterflow_model::error_chain(&error), "run failed");
                Err(AbortError::new(error).into())
            }
        }
    }
}

/// The workers' other job: a held run an admin approved in the console. A refusal (the run is
/// no longer held, or the district moved since it was planned) is kept on the held run, where
/// the console shows it.
async fn approve_due(
    service: &Service,
    served: &Served,
    due: &Due,
    run: i64,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    let name = due.pipeline.as_str();
    if worker.is_shutting_down() {
        return Err("the service is stopping: the approval was not started".into());
    }
    tracing::info!(pipeline = %name, run, by = %due.requested_by(), "approval starting");
    let gate = service.run_gate(name);
    let _running = gate.lock().await;
    let result = service
        .runner
        .approve(
            &served.pipeline,
            run,
            service.lock_options(),
            due.by.as_deref(),
        )
        .await;
    let error = match result {
        Ok(outcome) => {
            tracing::warn!(pipeline = %name, run, by = %due.requested_by(), changes = outcome.changes, "held run approved from the console");
            metrics::gauge!(names::HELD, "pipeline" => name.to_owned()).set(0.0);
            return Ok(());
        }
        Err(error) => error,
    };
    let failure = error.failure();
    let message = rosterflow_model::error_chain(&error);
    if failure.is_retried() {
        tracing::warn!(pipeline = %name, run, error = %message, "approval failed; it will be tried again");
        return Err(error.into());
    }
    tracing::error!(pipeline = %name, run, error = %message, "approval refused");
    if let Err(note) = runs::note_refusal(service.db(), run, &message).await {
        tracing::error!(pipeline = %name, run, error = %rosterflow_model::error_chain(&note), "cannot keep the approval's refusal on the run");
    }
    Err(AbortError::new(error).into())
}

/// Whether another service ran this time while this run failed with `error`. A run that lost
/// its database asks only briefly, so that its failure is said before the database comes back
/// (the next attempt looks again before it runs).
async fn ran_meanwhile(service: &Service, due: &Due, error: &SyncError) -> bool {
    let asking = already_ran(service, due);
    let lost_database = matches!(
        error,
        SyncError::Store {
            source: StoreError::Connection { .. },
            ..
        }
    );
    let answer = if lost_database {
        tokio::time::timeout(Duration::from_secs(2), asking)
            .await
            .unwrap_or(Ok(false))
    } else {
        asking.await
    };
    answer.unwrap_or(false)
}

/// Whether this time has had its run; a history that cannot be read fails the attempt (it is
/// tried again).
async fn already_ran(service: &Service, due: &Due) -> Result<bool, RunsError> {
    runs::ran_for(service.db(), &due.pipeline, due.at)
        .await
        .inspect_err(|error| {
            tracing::warn!(pipeline = %due.pipeline, at = %due.at, error = %rosterflow_model::error_chain(error), "cannot read run history; the run will be tried again")
        })
}

fn record(name: &str, result: &RunResult) {
    let pipeline = name.to_owned();
    if let RunStatus::Committed { .. } = result.status {
        metrics::counter!(names::CHANGES, "pipeline" => pipeline.clone())
            .increment(result.plan.change_count() as u64);
    }
    metrics::gauge!(names::QUARANTINED, "pipeline" => pipeline.clone())
        .set(result.plan.quarantined as f64);
    let held = matches!(result.status, RunStatus::Held { .. });
    metrics::gauge!(names::HELD, "pipeline" => pipeline).set(if held { 1.0 } else { 0.0 });
}

/// Delivers each pipeline's queued welcome emails every `email_every`, between runs.
async fn deliver_emails(service: Arc<Service>) {
    let mut ticks = tokio::time::interval(service.options.email_every);
    loop {
        ticks.tick().await;
        // The mailer's pass also clears sign-in records and console sessions that have expired.
        if let Err(error) =
            rosterflow_store::sign_in::purge(service.db(), service.clock.now()).await
        {
            tracing::error!(error = %rosterflow_model::error_chain(&error), "cannot purge expired sign-in records");
        }
        let pipelines = service.pipelines();
        for (name, served) in pipelines.iter() {
            if service.stopping() {
                return;
            }
            let Some(email) = &served.pipeline.file.email else {
                continue;
            };
            let district = match served.pipeline.district(service.db()).await {
                Ok(district) => district,
                Err(error) => {
                    tracing::error!(pipeline = %name, error = %rosterflow_model::error_chain(&error), "cannot find the pipeline's district to deliver its emails");
                    None
                }
            };
            let Some(district) = district else {
                continue; // not run yet: nothing queued
            };
            match rosterflow_accounts::email::deliver_pending(
                service.db(),
                &district,
                email,
                service.clock.now(),
            )
            .await
            {
                Ok(report) => {
                    for (outcome, count) in [
                        ("sent", report.sent),
                        ("failed", report.failed),
                        ("retrying", report.retrying),
                    ] {
                        metrics::counter!(names::EMAILS, "pipeline" => name.clone(), "outcome" => outcome)
                            .increment(count);
                    }
                    if report.sent + report.failed + report.retrying > 0 {
                        tracing::info!(pipeline = %name, sent = report.sent, failed = report.failed, retrying = report.retrying, "welcome emails delivered");
                    }
                }
                Err(error) => {
                    tracing::error!(pipeline = %name, error = %rosterflow_model::error_chain(&error), "welcome email delivery failed")
                }
            }
        }
    }
}
