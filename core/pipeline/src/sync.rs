//! One run of a pipeline, stage by stage: take the district's run lock, pull the district from
//! its source and transform it while the district's state is read from the Freckle DB, plan,
//! check the plan's safety, then apply it in one transaction (or hold it for an admin, or only
//! print it on a dry run). Welcome emails are queued by the run and delivered by
//! `rosterflow email send`; an `[export]` with `after_sync` runs once the run has committed.

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::config::Pipeline;
use crate::failure::exit;
use rosterflow_extract::config::{OneRosterCsvConfig, OneRosterRestConfig, SourceConfig, SyncMode};
use rosterflow_extract::events::{self, PullKind};
use rosterflow_extract::oneroster;
use rosterflow_extract::{self as extract, ExtractError};
use rosterflow_model::Clock;
use rosterflow_model::Snapshot;
use rosterflow_plan::safety;
use rosterflow_plan::state::State;
use rosterflow_plan::switch::SourceSwitch;
use rosterflow_plan::{Plan, Summary};
use rosterflow_store::db::{Db, parse_timestamp};
use rosterflow_store::runs::{self, RunsError};
use rosterflow_store::{
    Checkpoint, LockOptions, RunOutcome, RunRecord, RunStart, SourceRun, Store, StoreError,
};
use rosterflow_transform::plugin::Plugins;
use rosterflow_transform::{TransformError, Transforms};

/// What the runs of one process share, held once and lent to each run: the Freckle DB's pool,
/// the plugin host (one wasmtime engine), and the clock.
#[derive(Clone)]
pub struct Runner {
    db: Db,
    plugins: Plugins,
    clock: Clock,
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Plan and print, write nothing.
    pub dry_run: bool,
    /// How to take and keep the district's lock.
    pub lock: LockOptions,
    /// The scheduled time this run is for (`rosterflow serve`): at most one run per pipeline
    /// and time is applied or held.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Who asked for the run, recorded with it: `schedule`, `console:<name>`, `cli:<user>`.
    pub requested_by: Option<String>,
}

impl RunOptions {
    /// The record of a run of `pipeline` started at `started_at` with these options.
    fn start<'r>(&'r self, pipeline: &'r str, started_at: DateTime<Utc>) -> RunStart<'r> {
        RunStart {
            pipeline,
            started_at,
            scheduled_for: self.scheduled_for,
            requested_by: self.requested_by.as_deref(),
        }
    }
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

/// What a run did: its status and its plan in numbers.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub status: RunStatus,
    pub plan: Summary,
}

impl RunResult {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            RunStatus::Held { .. } => exit::HELD,
            _ if self.plan.quarantined > 0 => exit::QUARANTINED,
            _ => exit::OK,
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
    #[error("pipeline {pipeline}: loading failed, nothing was applied")]
    Store {
        pipeline: String,
        #[source]
        source: StoreError,
    },
    #[error("pipeline {pipeline}: held run {run} cannot be approved")]
    Outdated {
        pipeline: String,
        run: i64,
        #[source]
        source: StoreError,
    },
    #[error("pipeline {pipeline}: run history")]
    Runs {
        pipeline: String,
        #[source]
        source: RunsError,
    },
}

impl Runner {
    /// Runs on `db`, loading plugins through `plugins`, on the system's clock.
    pub fn new(db: Db, plugins: Plugins) -> Runner {
        Runner {
            db,
            plugins,
            clock: Clock::System,
        }
    }

    /// The same runner on another clock.
    pub fn with_clock(self, clock: Clock) -> Runner {
        Runner { clock, ..self }
    }

    /// The Freckle DB the runs write.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs `pipeline` once.
    pub async fn run(
        &self,
        pipeline: &Pipeline,
        options: &RunOptions,
    ) -> Result<RunResult, SyncError> {
        let name = pipeline.name().to_owned();
        let began = self.clock.now();
        let result = self.plan_and_load(pipeline, options).await;
        tracing::info!(target: rosterflow_model::PROGRESS, "");
        match &result {
            Ok(RunResult {
                status: RunStatus::Committed { .. },
                plan,
            }) => self.export_after_sync(pipeline, &plan.district).await,
            Err(error) if !options.dry_run && !error.is_busy() => {
                let message = rosterflow_model::error_chain(error);
                let start = options.start(&name, began);
                if let Err(record) =
                    runs::record_failure(&self.db, start, pipeline.district_id(), &message).await
                {
                    tracing::error!(pipeline = %name, error = %rosterflow_model::error_chain(&record), "could not record the failed run");
                }
            }
            _ => {}
        }
        result
    }

    /// Applies a held run: plans again from the snapshot it was held with against the current
    /// state, which must be the state it was planned against, so the plan is the one reviewed.
    /// `by` is recorded as who approved it.
    pub async fn approve(
        &self,
        pipeline: &Pipeline,
        run: i64,
        lock: LockOptions,
        by: Option<&str>,
    ) -> Result<RunOutcome, SyncError> {
        let db = &self.db;
        let name = pipeline.name().to_owned();
        let store_error = |source| SyncError::Store {
            pipeline: name.clone(),
            source,
        };
        let held = runs::held(db, &name, run, "approved")
            .await
            .map_err(|source| SyncError::Runs {
                pipeline: name.clone(),
                source,
            })?;
        let mut store = Store::lock(db, &held.district, lock)
            .await
            .map_err(store_error)?;
        let mut state = store.read_state().await.map_err(store_error)?;
        if state.last_run != held.based_on_run {
            return Err(SyncError::Outdated {
                pipeline: name,
                run,
                source: StoreError::Stale {
                    planned: held.based_on_run,
                    now: state.last_run,
                },
            });
        }
        match_new_source(&mut store, &held.snapshot, &mut state)
            .await
            .map_err(store_error)?;
        let plan = rosterflow_model::blocking(|| Plan::compute(&held.snapshot, &state));
        let outcome = store
            .apply(&plan, RunRecord::Approve { run, by })
            .await
            .map_err(store_error)?;
        tracing::info!(pipeline = %name, run, changes = outcome.changes, "held run approved");
        self.export_after_sync(pipeline, &held.district).await;
        Ok(outcome)
    }

    async fn plan_and_load(
        &self,
        pipeline: &Pipeline,
        options: &RunOptions,
    ) -> Result<RunResult, SyncError> {
        let db = &self.db;
        let name = pipeline.name().to_owned();
        let store_error = |source| SyncError::Store {
            pipeline: name.clone(),
            source,
        };
        let transforms =
            Transforms::build(&pipeline.file.transform, &self.plugins).map_err(|source| {
                SyncError::Transform {
                    pipeline: name.clone(),
                    source,
                }
            })?;
        let roster = async {
            let began = Instant::now();
            let (mut snapshot, source) = self.pull(pipeline).await?;
            tracing::debug!(pipeline = %name, elapsed_ms = began.elapsed().as_millis(), "source pulled");
            tracing::info!(
                pipeline = %name,
                district = %snapshot.district.id,
                source = source.kind,
                schools = snapshot.schools.len(),
                sections = snapshot.sections.len(),
                students = snapshot.students.len(),
                teachers = snapshot.teachers.len(),
                quarantined = snapshot.quarantine.len(),
                "roster pulled"
            );
            rosterflow_model::blocking(|| transforms.apply(&mut snapshot)).map_err(|source| {
                SyncError::Transform {
                    pipeline: name.clone(),
                    source,
                }
            })?;
            Ok::<_, SyncError>((snapshot, source))
        };
        // With the district known up front, its state is read while the roster is pulled.
        let (pulled_roster, mut store, state) = match &pipeline.file.pipeline.district_id {
            Some(district) => {
                let store = Store::lock(db, district, options.lock)
                    .await
                    .map_err(store_error)?;
                let reading = tokio::spawn(read_state(store));
                let pulled = roster.await;
                let (store, state) = reading.await.map_err(|e| store_error(e.into()))?;
                (pulled?, store, state.map_err(store_error)?)
            }
            None => {
                let pulled = roster.await?;
                let snapshot = &pulled.0;
                let store = Store::lock(db, &snapshot.district.id, options.lock)
                    .await
                    .map_err(store_error)?;
                let (store, state) = read_state(store).await;
                (pulled, store, state.map_err(store_error)?)
            }
        };
        // A run is recorded as started once it holds its district, not while it waits for the lock:
        // the runs of a district never overlap in its history.
        let started_at = self.clock.now();
        let (snapshot, source) = pulled_roster;
        let mut state = state;
        match_new_source(&mut store, &snapshot, &mut state)
            .await
            .map_err(store_error)?;
        tracing::info!(target: rosterflow_model::PROGRESS, "planning");
        let began = Instant::now();
        let plan = rosterflow_model::blocking(|| Plan::compute(&snapshot, &state));
        let summary = plan.summary();
        tracing::info!(pipeline = %name, changes = summary.change_count(), "plan computed");
        for (change, count) in summary.counts() {
            tracing::debug!(pipeline = %name, change = %change, count, "planned");
        }
        tracing::debug!(pipeline = %name, elapsed_ms = began.elapsed().as_millis(), "planning took");
        if options.dry_run {
            return Ok(RunResult {
                status: RunStatus::DryRun,
                plan: summary,
            });
        }
        let start = options.start(&name, started_at);
        let checkpoint = source.checkpoint.as_ref().map(|c| Checkpoint {
            cursor: c.cursor.as_deref(),
            roster: &c.roster,
            full_sync_at: c.full_sync_at,
            saved_at: c.saved_at,
        });
        let reasons = safety::check(&plan, &pipeline.file.safety, started_at.date_naive());
        if !reasons.is_empty() {
            // The checkpoint waits with the run: approving it moves the district's along.
            let based_on = state.last_run;
            let run_id = runs::hold(
                db, start, &snapshot, &summary, based_on, &reasons, checkpoint,
            )
            .await
            .map_err(|source| SyncError::Runs {
                pipeline: name.clone(),
                source,
            })?;
            tracing::warn!(pipeline = %name, run = run_id, reasons = %reasons.join("; "), "run held for approval");
            return Ok(RunResult {
                status: RunStatus::Held { run_id, reasons },
                plan: summary,
            });
        }
        tracing::info!(pipeline = %name, changes = summary.change_count(), "applying plan");
        tracing::info!(target: rosterflow_model::PROGRESS, "applying {} changes", summary.change_count());
        let run = RunRecord::New {
            start,
            source: SourceRun {
                kind: source.kind,
                note: source.note.as_deref(),
                checkpoint,
            },
        };
        let began = Instant::now();
        let outcome = store.apply(&plan, run).await.map_err(store_error)?;
        tracing::debug!(pipeline = %name, elapsed_ms = began.elapsed().as_millis(), "plan written");
        tracing::info!(pipeline = %name, run = outcome.run_id, changes = outcome.changes, quarantined = outcome.quarantined, "run committed");
        Ok(RunResult {
            status: RunStatus::Committed {
                run_id: outcome.run_id,
            },
            plan: summary,
        })
    }

    /// Pulls the pipeline's district as a run would, and nothing else: for `rosterflow doctor`,
    /// which only reads.
    pub(crate) async fn pull_roster(&self, pipeline: &Pipeline) -> Result<Snapshot, SyncError> {
        self.pull(pipeline).await.map(|(snapshot, _)| snapshot)
    }

    /// Pulls the pipeline's district and gives it its key in the Freckle DB: the one the pipeline
    /// names, or else (a Clever source) the district's Clever id.
    async fn pull(&self, pipeline: &Pipeline) -> Result<(Snapshot, Source), SyncError> {
        let (mut snapshot, source) = self.pull_source(pipeline).await?;
        if let Some(key) = pipeline.district_id() {
            snapshot.district.id = key.into();
        }
        Ok((snapshot, source))
    }

    /// Pulls the pipeline's district: whole, or by the changes since the district's checkpoint
    /// (Clever's events, a OneRoster delta).
    async fn pull_source(&self, pipeline: &Pipeline) -> Result<(Snapshot, Source), SyncError> {
        let name = pipeline.name();
        let extract_error = |source| SyncError::Extract {
            pipeline: name.to_owned(),
            source,
        };
        if let (SourceConfig::OneRosterCsv(config), Some(district)) =
            (&pipeline.file.source, pipeline.district_id())
        {
            return self.pull_oneroster(pipeline, config, district).await;
        }
        if let (SourceConfig::OneRosterRest(config), Some(district)) =
            (&pipeline.file.source, pipeline.district_id())
        {
            return self.pull_oneroster_rest(pipeline, config, district).await;
        }
        let source_district = pipeline.source_district();
        let (SourceConfig::Clever(config), Some(district), Some(clever_district)) = (
            &pipeline.file.source,
            pipeline.district_id(),
            source_district,
        ) else {
            let snapshot = extract::pull(&pipeline.file.source, source_district, None)
                .await
                .map_err(extract_error)?;
            return Ok((snapshot, full_source()));
        };
        if config.sync != SyncMode::Events {
            let snapshot = extract::pull(&pipeline.file.source, source_district, None)
                .await
                .map_err(extract_error)?;
            return Ok((snapshot, full_source()));
        }
        let stored = runs::checkpoint(&self.db, district)
            .await
            .map_err(|source| SyncError::Runs {
                pipeline: name.to_owned(),
                source,
            })?;
        // A OneRoster roster is not a Clever events checkpoint: a full pull starts one.
        let stored =
            stored.filter(|stored| stored.cursor.as_deref() != Some(oneroster::CHECKPOINT_CURSOR));
        let previous = stored.and_then(|stored| {
            Some(events::Checkpoint {
                cursor: stored.cursor,
                roster: stored.roster,
                full_sync_at: parse_timestamp(&stored.full_sync_at)?,
                saved_at: parse_timestamp(&stored.saved_at)?,
            })
        });
        let pulled = events::pull(config, clever_district, previous, self.clock.now())
            .await
            .map_err(extract_error)?;
        tracing::info!(pipeline = name, kind = pulled.kind.as_str(), note = %pulled.note, "source read");
        Ok((
            pulled.snapshot,
            Source {
                kind: pulled.kind.as_str(),
                note: Some(pulled.note),
                checkpoint: Some(pulled.checkpoint),
            },
        ))
    }

    /// Pulls a OneRoster CSV feed: a delta applies to the raw roster the district's last run
    /// saved, and the roster after it is saved with this run.
    async fn pull_oneroster(
        &self,
        pipeline: &Pipeline,
        config: &OneRosterCsvConfig,
        district: &str,
    ) -> Result<(Snapshot, Source), SyncError> {
        let name = pipeline.name();
        let stored = runs::checkpoint(&self.db, district)
            .await
            .map_err(|source| SyncError::Runs {
                pipeline: name.to_owned(),
                source,
            })?
            // A Clever events checkpoint is not a OneRoster roster.
            .filter(|stored| stored.cursor.as_deref() == Some(oneroster::CHECKPOINT_CURSOR));
        let pulled = oneroster::pull_csv(config, stored.as_ref().map(|s| s.roster.as_slice()))
            .await
            .map_err(|source| SyncError::Extract {
                pipeline: name.to_owned(),
                source,
            })?;
        tracing::info!(pipeline = name, kind = pulled.kind.as_str(), note = %pulled.note, "source read");
        let now = self.clock.now();
        Ok((
            pulled.snapshot,
            Source {
                kind: pulled.kind.as_str(),
                note: Some(pulled.note),
                checkpoint: Some(events::Checkpoint {
                    cursor: Some(oneroster::CHECKPOINT_CURSOR.to_owned()),
                    roster: pulled.roster,
                    full_sync_at: now,
                    saved_at: now,
                }),
            },
        ))
    }

    /// Pulls a OneRoster REST service: whole, or (`sync = "delta"`) the changes since the pull
    /// whose raw roster the district's last run saved. The roster after it is saved with this
    /// run, with the time the pull started (and when the district was last pulled whole).
    async fn pull_oneroster_rest(
        &self,
        pipeline: &Pipeline,
        config: &OneRosterRestConfig,
        district: &str,
    ) -> Result<(Snapshot, Source), SyncError> {
        let name = pipeline.name();
        let stored = runs::checkpoint(&self.db, district)
            .await
            .map_err(|source| SyncError::Runs {
                pipeline: name.to_owned(),
                source,
            })?
            // A Clever events checkpoint is not a OneRoster roster.
            .filter(|stored| stored.cursor.as_deref() == Some(oneroster::CHECKPOINT_CURSOR));
        let previous = stored.as_ref().and_then(|stored| {
            Some(oneroster::RestPrevious {
                roster: &stored.roster,
                full_sync_at: parse_timestamp(&stored.full_sync_at)?,
            })
        });
        let started = self.clock.now();
        let pulled = oneroster::pull_rest(config, previous, started)
            .await
            .map_err(|source| SyncError::Extract {
                pipeline: name.to_owned(),
                source,
            })?;
        tracing::info!(pipeline = name, kind = pulled.kind.as_str(), note = %pulled.note, "source read");
        Ok((
            pulled.snapshot,
            Source {
                kind: pulled.kind.as_str(),
                note: Some(pulled.note),
                checkpoint: Some(events::Checkpoint {
                    cursor: Some(oneroster::CHECKPOINT_CURSOR.to_owned()),
                    roster: pulled.roster,
                    full_sync_at: pulled.full_sync_at,
                    saved_at: started,
                }),
            },
        ))
    }

    /// Writes the pipeline's exports once a run has committed, when it asks for that. A failed
    /// export is reported, not a failed run: the sync has committed.
    async fn export_after_sync(&self, pipeline: &Pipeline, district: &str) {
        let Some(export) = pipeline.file.export.as_ref().filter(|e| e.after_sync) else {
            return;
        };
        match rosterflow_export::run(&self.db, district, export, self.clock.now()).await {
            Ok(report) => {
                tracing::info!(pipeline = %pipeline.name(), files = report.files.len(), "exported after sync")
            }
            Err(error) => {
                tracing::error!(pipeline = %pipeline.name(), error = %rosterflow_model::error_chain(&error), "export after sync failed")
            }
        }
    }
}

/// How a run read its source.
struct Source {
    /// How the source was read, as stored with the run (`full`, `events`, `bulk`, `delta`;
    /// OneRoster REST: `full`, `delta`).
    kind: &'static str,
    note: Option<String>,
    /// An events sync's new checkpoint, saved with the run.
    checkpoint: Option<events::Checkpoint>,
}

fn full_source() -> Source {
    Source {
        kind: PullKind::Full.as_str(),
        note: None,
        checkpoint: None,
    }
}

/// Reads the state through `store` and hands the store back.
async fn read_state(mut store: Store) -> (Store, Result<State, StoreError>) {
    let began = Instant::now();
    let state = store.read_state().await;
    if let Ok(state) = &state {
        tracing::debug!(
            last_run = state.last_run,
            elapsed_ms = began.elapsed().as_millis(),
            "district state read"
        );
    }
    (store, state)
}

/// When the roster comes from another source than the district's rows (a district moving from
/// Clever to OneRoster, or back), matches the rows to the new records by SIS id, so the plan keeps
/// them (see [`rosterflow_plan::switch`]).
async fn match_new_source(
    store: &mut Store,
    snapshot: &Snapshot,
    state: &mut State,
) -> Result<(), StoreError> {
    let Some(from) = state
        .source
        .filter(|_| state.switches_to(snapshot.district.source))
    else {
        return Ok(());
    };
    let rows = store.read_sis_rows().await?;
    let switch =
        rosterflow_model::blocking(|| SourceSwitch::match_by_sis_id(snapshot, state, from, &rows));
    tracing::warn!(
        district = %snapshot.district.id,
        from = %from,
        to = %snapshot.district.source,
        matched = switch.matches.len(),
        unmatched = switch.unmatched.len(),
        "the district's source changes: rows matched by SIS id"
    );
    state.switch_source(switch);
    Ok(())
}
