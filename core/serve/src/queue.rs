//! The queue of due runs, on apalis. On PostgreSQL it is apalis's table in the Freckle DB:
//! every `serve` process pushes the times that fall due and takes runs from it, a time is
//! queued once however many processes push it (its idempotency key), and the runs of a process
//! that stops sending heartbeats go back to the queue for the others. On SQLite, where one
//! process serves a database, it is apalis's in-memory queue.

use std::time::Duration;

use apalis::prelude::{MemorySink, MemoryStorage, RandomId, Task, TaskBuilder, TaskId};
use apalis_postgres::{Config, PgPool, PostgresStorage};
use chrono::{DateTime, Utc};
use futures_channel::mpsc::UnboundedSender;
use futures_util::SinkExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One job for a worker: a pipeline's run at a scheduled time, a run someone asked for, or the
/// approval of a held run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    pub pipeline: String,
    /// The scheduled time (not the jittered start), or when someone asked for the job.
    pub at: DateTime<Utc>,
    /// Who asked for a job outside the schedule (`console:<name>`).
    #[serde(default)]
    pub by: Option<String>,
    /// The held run to approve, for an approval; a new run otherwise.
    #[serde(default)]
    pub approve: Option<i64>,
}

impl Due {
    /// Who the run is for, as run history records it.
    pub fn requested_by(&self) -> &str {
        self.by.as_deref().unwrap_or("schedule")
    }

    /// The key under which the queue holds this job once: a time of a pipeline is run once,
    /// a held run approved once.
    fn key(&self) -> String {
        match self.approve {
            Some(run) => format!("{}#approve-{run}", self.pipeline),
            None => format!(
                "{}@{}",
                self.pipeline,
                rosterflow_store::db::timestamp(self.at)
            ),
        }
    }
}

/// The apalis queue of the runs' jobs in every `serve` process on a PostgreSQL Freckle DB.
const QUEUE: &str = "rosterflow.runs";

/// How often a worker tells the queue it is alive, and how many beats it may miss before its
/// runs are given to others.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
pub const MISSED_HEARTBEATS: usize = 5;

/// Where due runs are pushed.
#[derive(Clone)]
pub enum Queue {
    Postgres(PgPool),
    Memory(UnboundedSender<Task<Due>>),
}

/// The worker's side of a [`Queue`].
pub enum Backend {
    Postgres(PostgresStorage<Due>),
    Memory(MemoryStorage<Due>),
}

/// Whether a push added a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    AlreadyQueued,
}

impl Queue {
    /// The queue in the PostgreSQL database at `url`, its tables (schema `apalis`) created or
    /// brought up to date.
    pub async fn postgres(url: &str) -> Result<(Queue, Backend), QueueError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            // A worker that cannot beat for as long as the other services wait for its
            // heartbeats is gone to them: it stops then, rather than wait longer for the
            // database, and starts again once the database answers (see `resume`).
            .acquire_timeout(HEARTBEAT * MISSED_HEARTBEATS as u32)
            .connect(url)
            .await
            .map_err(QueueError::Connect)?;
        PostgresStorage::<()>::setup(&pool)
            .await
            .map_err(QueueError::Engine)?;
        let config = Config::default()
            .queue(QUEUE)
            // A run is long: take one at a time, so that idle processes get the rest.
            .batch_size(1)
            .heartbeat_interval(HEARTBEAT)
            .missed_heartbeats(MISSED_HEARTBEATS);
        let storage = PostgresStorage::new(&pool).with_config(config);
        Ok((Queue::Postgres(pool), Backend::Postgres(storage)))
    }

    /// A queue in this process's memory.
    pub fn memory() -> (Queue, Backend) {
        let (sender, receiver) = futures_channel::mpsc::unbounded();
        // Runs are sent straight into the channel; the worker's sink is its own. (apalis 1.0's
        // memory sink, shared, can leave a waiter that is never woken: it drops its lock
        // future while waiting.)
        let sink = Box::new(sender.clone().sink_map_err(Into::into)) as Box<_>;
        let sink = MemorySink::new(std::sync::Arc::new(futures_util::lock::Mutex::new(sink)));
        let storage = MemoryStorage::new_with(sink, Box::pin(receiver));
        (Queue::Memory(sender), Backend::Memory(storage))
    }

    /// Queues `due` unless it already is (or was).
    pub async fn push(&self, due: &Due) -> Result<Pushed, QueueError> {
        // A failed run is retried with backoff by the worker that ran it (each try counts as an
        // attempt); the queue gives a run to another worker only when it ended after fewer
        // than three attempts: stopped by a shutdown, or not known to the service that took it.
        match self {
            Queue::Postgres(pool) => {
                let args = serde_json::to_vec(due).expect("a due run serialises");
                let task = TaskBuilder::new(args)
                    .idempotency_key(due.key())
                    .max_attempts(3)
                    .build();
                let mut connection = pool.acquire().await.map_err(QueueError::Connect)?;
                match apalis_postgres::queries::push_tasks(&mut *connection, QUEUE, vec![task])
                    .await
                {
                    Ok(()) => Ok(Pushed::Queued),
                    Err(apalis_postgres::Error::Database(sqlx::Error::Database(error)))
                        if error.is_unique_violation() =>
                    {
                        Ok(Pushed::AlreadyQueued)
                    }
                    Err(error) => Err(QueueError::Engine(error)),
                }
            }
            Queue::Memory(sender) => {
                // This process is the only one that pushes: a time is pushed once.
                let task = TaskBuilder::new(due.clone())
                    .task_id(TaskId::from_string(RandomId::default()))
                    .build();
                sender
                    .unbounded_send(task)
                    .map_err(|error| QueueError::Memory(error.to_string()))?;
                Ok(Pushed::Queued)
            }
        }
    }
}

/// The name in the queue of this process's worker after `restarts` restarts: a new name each
/// time, so that the queue never takes the new worker for the one that stopped.
pub fn incarnation(worker: &str, restarts: usize) -> String {
    match restarts {
        0 => worker.to_owned(),
        n => format!("{worker}#restart-{n}"),
    }
}

/// What the worker's incarnation after `restarts` restarts does before it starts taking runs
/// from a PostgreSQL queue (`BackendExt::before_start`). A worker stops when the queue's
/// database cannot be reached (its heartbeat fails), and the runs it was running stop with it;
/// a restarted one first waits until the database answers again, then gives the runs its
/// previous incarnations held back to the queue (a stopped run's transaction never committed),
/// where it or another service takes them.
///
/// It first waits `wait` (see [`Restarts`]), and gives up when `stop` says the service is
/// stopping: a service whose database is gone still stops at once.
pub fn resume(
    worker: &str,
    restarts: usize,
    wait: Duration,
    stop: watch::Receiver<bool>,
) -> impl Fn(&mut PostgresStorage<Due>) -> BoxFuture<'static, Result<(), apalis_postgres::Error>>
+ Send
+ Sync
+ 'static {
    let name = incarnation(worker, restarts);
    let previous: Vec<String> = (0..restarts).map(|n| incarnation(worker, n)).collect();
    move |storage| {
        let pool = storage.pool().clone();
        let (name, previous) = (name.clone(), previous.clone());
        let mut stop = stop.clone();
        Box::pin(async move {
            if previous.is_empty() {
                return Ok(());
            }
            let waiting = async {
                tokio::time::sleep(wait).await;
                let mut said = false;
                loop {
                    match requeue(&pool, &previous).await {
                        Ok(runs) => {
                            tracing::warn!(worker = %name, runs_back_in_queue = runs, "the job queue's database answers again: worker back");
                            return Ok(());
                        }
                        Err(error) if !std::mem::replace(&mut said, true) => {
                            tracing::warn!(worker = %name, error = %rosterflow_model::error_chain(&error), "waiting for the job queue's database to answer");
                        }
                        Err(_) => {}
                    }
                    tokio::time::sleep(HEARTBEAT).await;
                }
            };
            tokio::select! {
                resumed = waiting => resumed,
                // The worker does not start: the service is stopping.
                _ = stop.wait_for(|stopping| *stopping) => {
                    Err(apalis_postgres::Error::Database(sqlx::Error::PoolClosed))
                }
            }
        })
    }
}

/// How a worker that ended starts again, on PostgreSQL. Only a worker whose backend failed (its
/// queue's database did not answer a heartbeat or a poll) or that hit an I/O error starts
/// again; a caught panic or a worker in a bad state does not (the service then exits with an
/// error, for its supervisor to restart it). Each restart waits longer than the one before
/// ([`FIRST_RESTART_WAIT`], doubling, at most [`LONGEST_RESTART_WAIT`]), and after
/// [`MAX_CONSECUTIVE_RESTARTS`] restarts without [`RESTARTS_FORGOTTEN_AFTER`] of work between
/// two of them the worker is not started again.
#[derive(Debug, Default)]
pub struct Restarts {
    /// Restarts in a row, and when the last one was.
    state: std::sync::Mutex<(u32, Option<std::time::Instant>)>,
}

/// The wait before the first restart of a worker.
pub const FIRST_RESTART_WAIT: Duration = HEARTBEAT;
/// The longest wait before a restart.
pub const LONGEST_RESTART_WAIT: Duration = Duration::from_secs(60);
/// Restarts in a row after which a worker stays stopped.
pub const MAX_CONSECUTIVE_RESTARTS: u32 = 20;
/// A worker that ran this long since its last restart has its restarts in a row forgotten.
pub const RESTARTS_FORGOTTEN_AFTER: Duration = Duration::from_secs(600);

impl Restarts {
    /// Whether a worker that ended with `error` starts again (counting the restart), and if
    /// not, why not.
    pub fn allow(&self, error: &apalis::prelude::WorkerError) -> Result<(), String> {
        use apalis::prelude::WorkerError;
        match error {
            WorkerError::BackendError(_) | WorkerError::IoError(_) => {}
            WorkerError::PanicError(_) => return Err("the worker panicked".to_owned()),
            _ => return Err("the worker is in a state it cannot start from".to_owned()),
        }
        let mut state = self.state.lock().expect("restarts lock");
        let now = std::time::Instant::now();
        if state
            .1
            .is_some_and(|last| now.duration_since(last) >= RESTARTS_FORGOTTEN_AFTER)
        {
            state.0 = 0;
        }
        if state.0 >= MAX_CONSECUTIVE_RESTARTS {
            return Err(format!(
                "the worker stopped {MAX_CONSECUTIVE_RESTARTS} times in a row"
            ));
        }
        *state = (state.0 + 1, Some(now));
        Ok(())
    }

    /// How long the next incarnation waits before it starts: growing with the restarts in a
    /// row.
    pub fn wait(&self) -> Duration {
        let consecutive = self.state.lock().expect("restarts lock").0;
        let doublings = consecutive.saturating_sub(1).min(16);
        (FIRST_RESTART_WAIT * 2u32.pow(doublings)).min(LONGEST_RESTART_WAIT)
    }
}

/// Puts the runs that `workers` (stopped) had taken back in the queue; how many there were.
async fn requeue(pool: &PgPool, workers: &[String]) -> Result<u64, sqlx::Error> {
    // What apalis does for the runs of a worker whose heartbeats stopped, for these workers now.
    let requeued = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Pending', done_at = NULL, lock_by = NULL, lock_at = NULL \
         WHERE job_type = $1 AND lock_by = ANY($2) AND status IN ('Queued', 'Running')",
    )
    .bind(QUEUE)
    .bind(workers)
    .execute(pool)
    .await?;
    Ok(requeued.rows_affected())
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot reach the job queue's database")]
    Connect(#[source] sqlx::Error),
    #[error("the job queue failed")]
    Engine(#[source] apalis_postgres::Error),
    #[error("the in-process job queue failed: {0}")]
    Memory(String),
}

#[cfg(test)]
mod tests {
    use apalis::prelude::WorkerError;

    use super::*;

    fn lost_database() -> WorkerError {
        WorkerError::BackendError(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }

    /// A caught panic is a bug: starting the worker again would hide it.
    #[test]
    fn a_worker_that_panicked_is_not_restarted() {
        let restarts = Restarts::default();
        let why = restarts
            .allow(&WorkerError::PanicError("boom".into()))
            .expect_err("declined");
        assert!(why.contains("panicked"), "{why}");
        assert!(restarts.allow(&lost_database()).is_ok());
    }

    #[test]
    fn restarts_wait_longer_each_time_and_stop_after_a_cap() {
        let restarts = Restarts::default();
        let mut waits = Vec::new();
        for _ in 0..MAX_CONSECUTIVE_RESTARTS {
            restarts.allow(&lost_database()).expect("restarted");
            waits.push(restarts.wait());
        }
        assert_eq!(waits[0], FIRST_RESTART_WAIT);
        assert_eq!(waits[1], FIRST_RESTART_WAIT * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(waits.last(), Some(&LONGEST_RESTART_WAIT));
        let why = restarts.allow(&lost_database()).expect_err("capped");
        assert!(why.contains("in a row"), "{why}");
    }
}
