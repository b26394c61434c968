//! One run of a pipeline: pull the district from its source, transform it, plan against the
//! Freckle DB, check the plan's safety, then load it in one transaction (or hold it, or only
//! print it on a dry run).

use std::path::PathBuf;

use chrono::Utc;

use crate::config::Pipeline;
use crate::db::{Db, DbError};
use crate::email;
use crate::extract::{self, ExtractError};
use crate::load::{self, LoadError};
use crate::plan::Plan;
use crate::safety;
use crate::transform::{TransformError, Transforms};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Plan and print, write nothing.
    pub dry_run: bool,
    /// Where compiled plugins are cached between runs.
    pub plugin_cache: Option<PathBuf>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    /// The plan was applied as run `run_id`.
    Committed { run_id: i64 },
    /// The plan tripped a safety check and waits for `rosterflow approve`.
    Held { run_id: i64, reasons: Vec<String> },
    /// Nothing was written.
    DryRun,
}

impl RunStatus {
    /// The run recorded in the DB, if any.
    pub fn run_id(&self) -> Option<i64> {
        match self {
            RunStatus::Committed { run_id } | RunStatus::Held { run_id, .. } => Some(*run_id),
            RunStatus::DryRun => None,
        }
    }
}

/// What a run did: its status and its plan.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub status: RunStatus,
    pub plan: Plan,
}

impl RunReport {
    /// The process exit code: 0 clean, 1 held or with quarantined records.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            RunStatus::Held { .. } => 1,
            _ if !self.plan.quarantine.is_empty() => 1,
            _ => 0,
        }
    }
}

/// Why a run failed. Nothing of a failed run is applied.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("pipeline {pipeline}: pulling the roster failed")]
    Extract {
        pipeline: String,
        #[source]
        source: ExtractError,
    },
    #[error("pipeline {pipeline}: a transform failed, so nothing was loaded")]
    Transform {
        pipeline: String,
        #[source]
        source: TransformError,
    },
    #[error("pipeline {pipeline}: the Freckle DB is unavailable")]
    Db {
        pipeline: String,
        #[source]
        source: DbError,
    },
    #[error("pipeline {pipeline}: loading failed, nothing was applied")]
    Load {
        pipeline: String,
        #[source]
        source: LoadError,
    },
}

/// Runs `pipeline` once.
pub async fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunReport, SyncError> {
    let name = pipeline.name().to_owned();
    let started_at = Utc::now();
    let db = Db::open(&pipeline.file.load.database)
        .await
        .map_err(|source| SyncError::Db {
            pipeline: name.clone(),
            source,
        })?;
    // Finish what an earlier run left in the outbox (a crash between commit and delivery).
    if !options.dry_run
        && let Some(district) = &pipeline.file.pipeline.district_id
    {
        deliver_email(pipeline, &db, district).await;
    }
    let result = plan_and_load(pipeline, options, &db, started_at).await;
    if let Ok(RunReport {
        status: RunStatus::Committed { .. },
        plan,
    }) = &result
    {
        deliver_email(pipeline, &db, &plan.district).await;
        if let Some(export) = pipeline.file.export.as_ref().filter(|e| e.after_sync) {
            // The sync has committed; a failed export is reported, not a failed run.
            match crate::export::run(&db, &plan.district, export, Utc::now()).await {
                Ok(report) => {
                    tracing::info!(pipeline = %pipeline.name(), files = report.files.len(), "exported after sync")
                }
                Err(error) => {
                    tracing::error!(pipeline = %pipeline.name(), error = %crate::error_chain(&error), "export after sync failed")
                }
            }
        }
    }
    if let Err(error) = &result
        && !options.dry_run
    {
        let message = crate::error_chain(error);
        if let Err(record) = load::record_failure(
            &db,
            &name,
            pipeline.file.pipeline.district_id.as_deref(),
            started_at,
            &message,
        )
        .await
        {
            tracing::error!(pipeline = %name, error = %crate::error_chain(&record), "could not record the failed run");
        }
    }
    result
}

/// Sends the district's pending welcome emails, when the pipeline has an `[email]` table. A
/// delivery problem never fails the run: the rows stay in the outbox for the next pass.
pub async fn deliver_email(pipeline: &Pipeline, db: &Db, district: &str) {
    let Some(config) = &pipeline.file.email else {
        return;
    };
    match email::deliver_pending(db, district, config, Utc::now()).await {
        Ok(report) => tracing::info!(
            pipeline = %pipeline.name(),
            sent = report.sent,
            retrying = report.retrying,
            failed = report.failed,
            waiting = report.waiting,
            "welcome emails delivered"
        ),
        Err(error) => tracing::error!(
            pipeline = %pipeline.name(),
            error = %crate::error_chain(&error),
            "welcome emails could not be delivered; they stay in the outbox"
        ),
    }
}

async fn plan_and_load(
    pipeline: &Pipeline,
    options: &RunOptions,
    db: &Db,
    started_at: chrono::DateTime<Utc>,
) -> Result<RunReport, SyncError> {
    let name = pipeline.name().to_owned();
    let transforms =
        Transforms::build(pipeline, options.plugin_cache.clone()).map_err(|source| {
            SyncError::Transform {
                pipeline: name.clone(),
                source,
            }
        })?;
    let mut snapshot =
        extract::pull(pipeline, None)
            .await
            .map_err(|source| SyncError::Extract {
                pipeline: name.clone(),
                source,
            })?;
    tracing::info!(
        pipeline = %name,
        district = %snapshot.district.id,
        schools = snapshot.schools.len(),
        sections = snapshot.sections.len(),
        students = snapshot.students.len(),
        teachers = snapshot.teachers.len(),
        quarantined = snapshot.quarantine.len(),
        "roster pulled"
    );
    // Plugins are CPU-bound and synchronous: keep them off the reactor's other tasks.
    let transformed = tokio::task::block_in_place(|| transforms.apply(&mut snapshot));
    transformed.map_err(|source| SyncError::Transform {
        pipeline: name.clone(),
        source,
    })?;
    let load_error = |source| SyncError::Load {
        pipeline: name.clone(),
        source,
    };
    let state = load::read_state(db, &snapshot.district.id)
        .await
        .map_err(load_error)?;
    let plan = Plan::compute(&snapshot, &state);
    tracing::info!(pipeline = %name, changes = plan.change_count(), "plan computed");
    if options.dry_run {
        return Ok(RunReport {
            status: RunStatus::DryRun,
            plan,
        });
    }
    let reasons = safety::check(&plan, &pipeline.file.safety);
    if !reasons.is_empty() {
        let run_id = load::hold(db, &name, &plan, started_at, &reasons)
            .await
            .map_err(load_error)?;
        tracing::warn!(pipeline = %name, run = run_id, reasons = %reasons.join("; "), "run held for approval");
        return Ok(RunReport {
            status: RunStatus::Held { run_id, reasons },
            plan,
        });
    }
    tracing::info!(pipeline = %name, changes = plan.change_count(), "applying plan");
    let outcome = load::apply(db, &name, &plan, started_at)
        .await
        .map_err(load_error)?;
    tracing::info!(pipeline = %name, run = outcome.run_id, changes = outcome.changes, quarantined = outcome.quarantined, "run committed");
    Ok(RunReport {
        status: RunStatus::Committed {
            run_id: outcome.run_id,
        },
        plan,
    })
}
