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
use serde::{Deserialize, Serialize};

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
        let pool = PgPool::connect(url).await.map_err(QueueError::Connect)?;
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

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot reach the job queue's database")]
    Connect(#[source] sqlx::Error),
    #[error("the job queue failed")]
    Engine(#[source] apalis_postgres::Error),
    #[error("the in-process job queue failed: {0}")]
    Memory(String),
}
