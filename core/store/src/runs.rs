//! Run history (`sync_runs`): what each run of a pipeline did, runs held for an admin with the
//! roster they were planned from, discarding a held run, and recording a run that failed.
//!
//! A held run keeps its transformed snapshot (zstd-compressed JSON) and the run whose state it
//! was planned against: an approval plans again from that snapshot, and since the DB has not
//! moved, gets the very plan the admin reviewed (see `rosterflow_pipeline::sync::approve`).

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use crate::db::{Db, timestamp};
use crate::{Checkpoint, RunStart};
use rosterflow_model::{Snapshot, packed};
use rosterflow_plan::Summary;

/// Why reading or writing run history failed.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("database error while {step}")]
    Sql {
        step: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("run {run} does not exist")]
    NoSuchRun { run: i64 },
    #[error("run {run} is {status}, not held: only a held run can be {action}")]
    NotHeld {
        run: i64,
        status: String,
        action: &'static str,
    },
    #[error("run {run} belongs to pipeline {owner}, not {pipeline}")]
    OtherPipeline {
        run: i64,
        owner: String,
        pipeline: String,
    },
    #[error(
        "held run {run} was stored without its roster (by an older rosterflow): discard it and run the pipeline again"
    )]
    NoSnapshot { run: i64 },
    #[error("cannot store or read the roster of a held run")]
    Snapshot(#[source] std::io::Error),
}

/// The run bookkeeping both backends write inside a run's transaction, written once. Every
/// parameter is `$n`, numbered in order of first use, which SQLite and PostgreSQL read alike.
pub(crate) mod sql {
    /// The district's row, created on its first run: ($1 key, $2 name, $3 source kind,
    /// $4 source id, $5 now).
    pub const ENSURE_DISTRICT: &str = "INSERT INTO districts (key, name, source_kind, source_id, \
        created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (key) DO NOTHING";
    /// The row id of district $1.
    pub const DISTRICT_ID: &str = "SELECT id FROM districts WHERE key = $1";
    /// The row id of district $1 and the source its rows came from.
    pub const DISTRICT_SOURCE: &str = "SELECT id, source_kind FROM districts WHERE key = $1";
    /// The last run that changed district $1.
    pub const LAST_COMMITTED_RUN: &str = "SELECT MAX(id) FROM sync_runs \
        WHERE district_id = $1 AND status IN ('committed', 'approved')";
    /// A committed run's row, returning its id.
    pub const INSERT_COMMITTED: &str = "INSERT INTO sync_runs (district_id, pipeline, status, started_at, \
        finished_at, changes, quarantined, counts, source_kind, event_cursor, source_note, skipped, \
        scheduled_for, requested_by) \
        VALUES ($1, $2, 'committed', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id";
    /// Approves held run $3 at $1 by $2; changes no row if it is not held.
    pub const APPROVE_HELD: &str = "UPDATE sync_runs SET status = 'approved', finished_at = $1, \
        snapshot = NULL, decided_by = $2 WHERE id = $3 AND status = 'held'";
    /// Run $1's status.
    pub const STATUS: &str = "SELECT status FROM sync_runs WHERE id = $1";
    /// District $2 was made by run $1.
    pub const DISTRICT_MADE_BY: &str = "UPDATE districts SET created_run = $1 WHERE id = $2";
    /// Run $2 finished at $1.
    pub const FINISH: &str = "UPDATE sync_runs SET finished_at = $1 WHERE id = $2";
    /// An events run's checkpoint: (district, run, cursor, roster, full sync at, saved at).
    pub const SAVE_CHECKPOINT: &str = "INSERT INTO source_checkpoints \
        (district_id, run_id, event_cursor, roster, full_sync_at, saved_at) VALUES ($1, $2, $3, $4, $5, $6) \
        ON CONFLICT (district_id) DO UPDATE SET run_id = excluded.run_id, event_cursor = excluded.event_cursor, \
        roster = excluded.roster, full_sync_at = excluded.full_sync_at, saved_at = excluded.saved_at";
    /// Approving held run $2 of district $1 makes the checkpoint its pull made the district's.
    pub const ADOPT_HELD_CHECKPOINT: &str = "INSERT INTO source_checkpoints \
        (district_id, run_id, event_cursor, roster, full_sync_at, saved_at) \
        SELECT $1, run_id, event_cursor, roster, full_sync_at, saved_at FROM held_checkpoints WHERE run_id = $2 \
        ON CONFLICT (district_id) DO UPDATE SET run_id = excluded.run_id, event_cursor = excluded.event_cursor, \
        roster = excluded.roster, full_sync_at = excluded.full_sync_at, saved_at = excluded.saved_at";
    /// Held run $1's checkpoint, once the run is decided.
    pub const FORGET_HELD_CHECKPOINT: &str = "DELETE FROM held_checkpoints WHERE run_id = $1";
}

fn sql(step: &'static str) -> impl FnOnce(sqlx::Error) -> RunsError {
    move |source| RunsError::Sql { step, source }
}

/// A run held for approval, with what it was planned from.
#[derive(Debug)]
pub struct HeldRun {
    pub run: i64,
    pub pipeline: String,
    /// The district's Clever id.
    pub district: String,
    /// The last committed run when it was planned.
    pub based_on_run: Option<i64>,
    pub snapshot: Snapshot,
    /// Why it was held.
    pub reasons: Option<String>,
}

/// Stores a plan's snapshot without applying it, for an admin to approve or discard.
pub async fn hold(
    db: &Db,
    start: RunStart<'_>,
    snapshot: &Snapshot,
    summary: &Summary,
    based_on_run: Option<i64>,
    reasons: &[String],
    checkpoint: Option<Checkpoint<'_>>,
) -> Result<i64, RunsError> {
    let compressed =
        rosterflow_model::blocking(|| packed::pack(snapshot)).map_err(RunsError::Snapshot)?;
    let now = timestamp(Utc::now());
    let mut tx = db.pool.begin().await.map_err(sql("holding the run"))?;
    sqlx::query(sql::ENSURE_DISTRICT)
        .bind(snapshot.district.id.as_str())
        .bind(&snapshot.district.name)
        .bind(snapshot.district.source.as_str())
        .bind(snapshot.district.source_id.as_str())
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(sql("holding the run"))?;
    let run: i64 = sqlx::query_scalar(
        "INSERT INTO sync_runs (district_id, pipeline, status, started_at, finished_at, changes, quarantined, counts, error, based_on_run, snapshot, skipped, scheduled_for, requested_by) \
         SELECT d.id, $2, 'held', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM districts d WHERE d.key = $1 RETURNING id",
    )
    .bind(snapshot.district.id.as_str())
    .bind(start.pipeline)
    .bind(timestamp(start.started_at))
    .bind(&now)
    .bind(summary.change_count() as i64)
    .bind(summary.quarantined as i64)
    .bind(serde_json::to_string(summary.counts()).expect("counts serialise"))
    .bind(reasons.join("; "))
    .bind(based_on_run)
    .bind(compressed)
    .bind(serde_json::to_string(&summary.skipped).expect("counts serialise"))
    .bind(start.scheduled_for.map(timestamp))
    .bind(start.requested_by)
    .fetch_one(&mut *tx)
    .await
    .map_err(sql("recording the held run"))?;
    if let Some(checkpoint) = checkpoint {
        sqlx::query(
            "INSERT INTO held_checkpoints (run_id, event_cursor, roster, full_sync_at, saved_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(run)
        .bind(checkpoint.cursor)
        .bind(checkpoint.roster)
        .bind(timestamp(checkpoint.full_sync_at))
        .bind(timestamp(checkpoint.saved_at))
        .execute(&mut *tx)
        .await
        .map_err(sql("keeping the held run's checkpoint"))?;
    }
    tx.commit().await.map_err(sql("holding the run"))?;
    Ok(run)
}

/// A held run of `pipeline`, with its snapshot.
pub async fn held(
    db: &Db,
    pipeline: &str,
    run: i64,
    action: &'static str,
) -> Result<HeldRun, RunsError> {
    type Row = (
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<Vec<u8>>,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT r.status, r.pipeline, d.key, r.based_on_run, r.snapshot, r.error \
         FROM sync_runs r LEFT JOIN districts d ON d.id = r.district_id WHERE r.id = $1",
    )
    .bind(run)
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("reading the held run"))?;
    let Some((status, owner, district, based_on_run, snapshot, reasons)) = row else {
        return Err(RunsError::NoSuchRun { run });
    };
    if owner != pipeline {
        return Err(RunsError::OtherPipeline {
            run,
            owner,
            pipeline: pipeline.to_owned(),
        });
    }
    if status != "held" {
        return Err(RunsError::NotHeld {
            run,
            status,
            action,
        });
    }
    let (Some(district), Some(snapshot)) = (district, snapshot) else {
        return Err(RunsError::NoSnapshot { run });
    };
    let snapshot =
        rosterflow_model::blocking(|| packed::unpack(&snapshot)).map_err(RunsError::Snapshot)?;
    Ok(HeldRun {
        run,
        pipeline: owner,
        district,
        based_on_run,
        snapshot,
        reasons,
    })
}

/// Drops a held run of `pipeline`; nothing of it is applied.
pub async fn discard(db: &Db, pipeline: &str, run: i64, by: Option<&str>) -> Result<(), RunsError> {
    let mut tx = db.pool.begin().await.map_err(sql("discarding the run"))?;
    let discarded = sqlx::query(
        "UPDATE sync_runs SET status = 'discarded', finished_at = $1, snapshot = NULL, decided_by = $4 \
         WHERE id = $2 AND status = 'held' AND pipeline = $3",
    )
    .bind(timestamp(Utc::now()))
    .bind(run)
    .bind(pipeline)
    .bind(by)
    .execute(&mut *tx)
    .await
    .map_err(sql("discarding the run"))?;
    if discarded.rows_affected() == 1 {
        // A source read past changes that were then discarded (a OneRoster delta is sent once):
        // the district's checkpoint no longer describes its rows, so the next run pulls whole
        // (a delta feed is refused until a bulk one comes).
        sqlx::query(
            "DELETE FROM source_checkpoints WHERE district_id = (SELECT district_id FROM sync_runs WHERE id = $1) \
             AND EXISTS (SELECT 1 FROM held_checkpoints WHERE run_id = $1)",
        )
        .bind(run)
        .execute(&mut *tx)
        .await
        .map_err(sql("dropping the discarded run's checkpoint"))?;
        sqlx::query(sql::FORGET_HELD_CHECKPOINT)
            .bind(run)
            .execute(&mut *tx)
            .await
            .map_err(sql("dropping the discarded run's checkpoint"))?;
        tx.commit().await.map_err(sql("discarding the run"))?;
        return Ok(());
    }
    drop(tx);
    let found: Option<(String, String)> =
        sqlx::query_as("SELECT status, pipeline FROM sync_runs WHERE id = $1")
            .bind(run)
            .fetch_optional(&db.pool)
            .await
            .map_err(sql("discarding the run"))?;
    match found {
        None => Err(RunsError::NoSuchRun { run }),
        Some((_, owner)) if owner != pipeline => Err(RunsError::OtherPipeline {
            run,
            owner,
            pipeline: pipeline.to_owned(),
        }),
        Some((status, _)) => Err(RunsError::NotHeld {
            run,
            status,
            action: "discarded",
        }),
    }
}

/// Fails unless run `run` is held, naming its status: an approval is queued only for a held run.
pub async fn expect_held(db: &Db, run: i64, action: &'static str) -> Result<(), RunsError> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM sync_runs WHERE id = $1")
        .bind(run)
        .fetch_optional(&db.pool)
        .await
        .map_err(sql("reading the run"))?;
    match status.as_deref() {
        None => Err(RunsError::NoSuchRun { run }),
        Some("held") => Ok(()),
        Some(status) => Err(RunsError::NotHeld {
            run,
            status: status.to_owned(),
            action,
        }),
    }
}

/// Keeps why an approval of held run `run` was refused on the run, which stays held.
pub async fn note_refusal(db: &Db, run: i64, reason: &str) -> Result<(), RunsError> {
    sqlx::query("UPDATE sync_runs SET error = $1 WHERE id = $2 AND status = 'held'")
        .bind(format!("approval refused: {reason}"))
        .bind(run)
        .execute(&db.pool)
        .await
        .map(drop)
        .map_err(sql("noting the refused approval"))
}

/// Records a run that failed before it could commit, so history shows it.
pub async fn record_failure(
    db: &Db,
    start: RunStart<'_>,
    district: Option<&str>,
    error: &str,
) -> Result<i64, RunsError> {
    const STEP: &str = "recording the failed run";
    // A run that failed because its database went away does not wait for it to come back only
    // to say so (the pool would try for its whole timeout): a few seconds, then the failure is
    // only logged.
    let mut connection = tokio::time::timeout(FAILURE_RECORD_WAIT, db.pool.acquire())
        .await
        .map_err(|_| RunsError::Sql {
            step: STEP,
            source: sqlx::Error::PoolTimedOut,
        })?
        .map_err(sql(STEP))?;
    sqlx::query_scalar(
        "INSERT INTO sync_runs (district_id, pipeline, status, started_at, finished_at, error, scheduled_for, requested_by) \
         VALUES ((SELECT id FROM districts WHERE key = $1), $2, 'failed', $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(district)
    .bind(start.pipeline)
    .bind(timestamp(start.started_at))
    .bind(timestamp(Utc::now()))
    .bind(error)
    .bind(start.scheduled_for.map(timestamp))
    .bind(start.requested_by)
    .fetch_one(&mut *connection)
    .await
    .map_err(sql(STEP))
}

/// How long a failed run waits for a connection to record its failure.
const FAILURE_RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a run of `pipeline` for the scheduled time `at` was applied or held: such a time
/// has had its run, whichever process ran it.
pub async fn ran_for(db: &Db, pipeline: &str, at: DateTime<Utc>) -> Result<bool, RunsError> {
    let runs: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sync_runs WHERE pipeline = $1 AND scheduled_for = $2 AND status <> 'failed'",
    )
    .bind(pipeline)
    .bind(timestamp(at))
    .fetch_one(&db.pool)
    .await
    .map_err(sql("reading scheduled runs"))?;
    Ok(runs > 0)
}

/// The pipeline a run belongs to.
pub async fn pipeline_of(db: &Db, run: i64) -> Result<Option<String>, RunsError> {
    sqlx::query_scalar("SELECT pipeline FROM sync_runs WHERE id = $1")
        .bind(run)
        .fetch_optional(&db.pool)
        .await
        .map_err(sql("reading run history"))
}

/// The key of the district run `run` is of (none for a run that failed before it knew).
pub async fn district_of(db: &Db, run: i64) -> Result<Option<String>, RunsError> {
    sqlx::query_scalar(
        "SELECT d.key FROM sync_runs r JOIN districts d ON d.id = r.district_id WHERE r.id = $1",
    )
    .bind(run)
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("reading run history"))
}

/// When the newest run of `pipeline` started, whatever its outcome.
pub async fn last_started(db: &Db, pipeline: &str) -> Result<Option<DateTime<Utc>>, RunsError> {
    let started: Option<String> =
        sqlx::query_scalar("SELECT MAX(started_at) FROM sync_runs WHERE pipeline = $1")
            .bind(pipeline)
            .fetch_one(&db.pool)
            .await
            .map_err(sql("reading run history"))?;
    Ok(started.as_deref().and_then(crate::db::parse_timestamp))
}

/// One line of run history.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunSummary {
    pub id: i64,
    pub status: String,
    pub started_at: String,
    /// When it ended: committed, held, failed; none while it runs.
    pub finished_at: Option<String>,
    pub changes: i64,
    pub quarantined: i64,
    pub error: Option<String>,
    /// How the run read its source: `full` or `events`.
    pub source_kind: Option<String>,
    /// The newest event it applied, for an events sync.
    pub event_cursor: Option<String>,
    /// Why it pulled whole, or what its events were.
    pub source_note: Option<String>,
    /// Who asked for it, and who approved or discarded it.
    pub requested_by: Option<String>,
    pub decided_by: Option<String>,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {:>5}  {:<9}  {}  {} changes, {} quarantined",
            self.id, self.status, self.started_at, self.changes, self.quarantined
        )?;
        if let Some(kind) = &self.source_kind {
            write!(f, "  [{kind} sync")?;
            if let Some(cursor) = &self.event_cursor {
                write!(f, ", at event {cursor}")?;
            }
            if let Some(note) = &self.source_note {
                write!(f, ": {note}")?;
            }
            write!(f, "]")?;
        }
        if let Some(by) = &self.requested_by {
            write!(f, "  by {by}")?;
        }
        if let Some(by) = &self.decided_by {
            write!(f, ", {} by {by}", self.status)?;
        }
        if let Some(error) = &self.error {
            write!(f, "  ({error})")?;
        }
        Ok(())
    }
}

/// The columns of a [`RunSummary`].
/// The runs that synced the source (all but those of a teacher created at sign-in).
pub(crate) const A_SYNC: &str = "COALESCE(source_kind, '') <> 'sign-in'";

const SUMMARY_COLUMNS: &str = "id, status, started_at, finished_at, changes, quarantined, error, source_kind, event_cursor, source_note, requested_by, decided_by";

/// The pipeline's most recent runs, newest first.
pub async fn history(db: &Db, pipeline: &str, limit: i64) -> Result<Vec<RunSummary>, RunsError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {SUMMARY_COLUMNS} FROM sync_runs WHERE pipeline = $1 ORDER BY id DESC LIMIT $2"
    )))
    .bind(pipeline)
    .bind(limit)
    .fetch_all(&db.pool)
    .await
    .map_err(sql("reading run history"))
}

/// The pipeline's latest run that changed something or waits for approval: what an admin
/// asking "what happened?" means, past the nightly runs that found nothing to do. None if no
/// run did.
pub async fn last_change(db: &Db, pipeline: &str) -> Result<Option<i64>, RunsError> {
    sqlx::query_scalar(
        "SELECT MAX(id) FROM sync_runs WHERE pipeline = $1 AND (changes > 0 OR status = 'held')",
    )
    .bind(pipeline)
    .fetch_one(&db.pool)
    .await
    .map_err(sql("reading run history"))
}

/// The district the pipeline's latest run loaded (none if it has not run).
pub async fn latest_district(db: &Db, pipeline: &str) -> Result<Option<String>, RunsError> {
    sqlx::query_scalar(
        "SELECT d.key FROM sync_runs r JOIN districts d ON d.id = r.district_id \
         WHERE r.pipeline = $1 ORDER BY r.id DESC LIMIT 1",
    )
    .bind(pipeline)
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("reading run history"))
}

/// Where a pipeline stands: what `rosterflow status` prints.
#[derive(Debug, Clone)]
pub struct PipelineStatus {
    /// The latest run, whatever its outcome.
    pub last: Option<RunSummary>,
    /// When the latest committed or approved run started.
    pub last_applied_at: Option<String>,
    /// Runs waiting for an admin to approve or discard them.
    pub held: Vec<RunSummary>,
    /// Records quarantined by the latest run that read the source.
    pub quarantined: i64,
    /// Welcome emails queued and not yet sent.
    pub emails_pending: i64,
}

impl PipelineStatus {
    /// Whether an admin has something to look at.
    pub fn needs_attention(&self) -> bool {
        !self.held.is_empty()
            || self.quarantined > 0
            || self.last.as_ref().is_some_and(|run| run.status == "failed")
    }
}

impl std::fmt::Display for PipelineStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.last {
            None => writeln!(f, "never run")?,
            Some(run) => writeln!(f, "last {run}")?,
        }
        if let Some(at) = &self.last_applied_at {
            writeln!(f, "  last applied run started {at}")?;
        }
        for run in &self.held {
            writeln!(f, "  held, waiting for approve or discard: {run}")?;
        }
        if self.quarantined > 0 {
            writeln!(
                f,
                "  {} quarantined record(s) in the latest run: see `rosterflow report`",
                self.quarantined
            )?;
        }
        if self.emails_pending > 0 {
            writeln!(
                f,
                "  {} welcome email(s) queued: `rosterflow email send` delivers them",
                self.emails_pending
            )?;
        }
        Ok(())
    }
}

/// The pipeline's status.
pub async fn status(db: &Db, pipeline: &str) -> Result<PipelineStatus, RunsError> {
    // The last sync: a teacher created at sign-in is a run of its own, but says nothing of how
    // the pipeline's syncs go.
    let last = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {SUMMARY_COLUMNS} FROM sync_runs WHERE pipeline = $1 AND {A_SYNC} ORDER BY id DESC LIMIT 1"
    )))
    .bind(pipeline)
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("reading the last run"))?;
    let held = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {SUMMARY_COLUMNS} FROM sync_runs WHERE pipeline = $1 AND status = 'held' ORDER BY id"
    )))
    .bind(pipeline)
    .fetch_all(&db.pool)
    .await
    .map_err(sql("reading held runs"))?;
    let (last_applied_at, quarantined): (Option<String>, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT MAX(CASE WHEN status IN ('committed', 'approved') THEN started_at END), \
                (SELECT quarantined FROM sync_runs WHERE pipeline = $1 AND status <> 'failed' AND {A_SYNC} ORDER BY id DESC LIMIT 1) \
         FROM sync_runs WHERE pipeline = $1 AND {A_SYNC}"
    )))
    .bind(pipeline)
    .fetch_one(&db.pool)
    .await
    .map_err(sql("reading run history"))?;
    let emails_pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM email_outbox o WHERE o.status = 'pending' AND o.district_id IN \
         (SELECT district_id FROM sync_runs WHERE pipeline = $1 AND district_id IS NOT NULL)",
    )
    .bind(pipeline)
    .fetch_one(&db.pool)
    .await
    .map_err(sql("counting queued welcome emails"))?;
    Ok(PipelineStatus {
        last,
        last_applied_at,
        held,
        quarantined: quarantined.unwrap_or_default(),
        emails_pending,
    })
}

/// An events sync's checkpoint as stored (see `rosterflow_extract::events`).
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub cursor: Option<String>,
    pub roster: Vec<u8>,
    pub full_sync_at: String,
    pub saved_at: String,
}

/// The district's events checkpoint, if an events sync has committed.
pub async fn checkpoint(db: &Db, district: &str) -> Result<Option<StoredCheckpoint>, RunsError> {
    let row: Option<(Option<String>, Vec<u8>, String, String)> = sqlx::query_as(
        "SELECT c.event_cursor, c.roster, c.full_sync_at, c.saved_at FROM source_checkpoints c \
         JOIN districts d ON d.id = c.district_id WHERE d.key = $1",
    )
    .bind(district)
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("reading the events checkpoint"))?;
    Ok(row.map(
        |(cursor, roster, full_sync_at, saved_at)| StoredCheckpoint {
            cursor,
            roster,
            full_sync_at,
            saved_at,
        },
    ))
}
