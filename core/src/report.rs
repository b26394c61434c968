//! Run reports: every change and every quarantined record of one run, with its reason, the rule
//! or plugin responsible and, where one is known, a suggested fix. JSON for machines, CSV for
//! admins (one row per change or quarantined record).

use serde::Serialize;

use crate::db::Db;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("run {run} does not exist")]
    NoSuchRun { run: i64 },
    #[error("database error while {step}")]
    Sql {
        step: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot write the report")]
    Write(#[from] csv::Error),
}

fn sql(step: &'static str) -> impl FnOnce(sqlx::Error) -> ReportError {
    move |source| ReportError::Sql { step, source }
}

/// One run's report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: i64,
    pub pipeline: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Why the run was held or failed, when it was.
    pub note: Option<String>,
    pub rows: Vec<ReportRow>,
}

/// A change or a quarantined record.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    /// `change` or `quarantine`.
    pub kind: &'static str,
    pub entity: String,
    pub clever_id: Option<String>,
    pub member_id: Option<String>,
    pub action: String,
    pub reason: String,
    /// `sync`, or the rule, filter or plugin responsible.
    pub author: String,
    pub suggested_fix: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RunRow {
    pipeline: String,
    status: String,
    started_at: String,
    finished_at: Option<String>,
    error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ChangeQueryRow {
    entity: String,
    clever_id: Option<String>,
    member_id: Option<String>,
    action: String,
    reason: String,
    author: String,
}

/// Reads run `run`'s report.
pub async fn read(db: &Db, run: i64) -> Result<RunReport, ReportError> {
    let pool = &db.pool;
    let header: Option<RunRow> = sqlx::query_as(
        "SELECT pipeline, status, started_at, finished_at, error FROM sync_runs WHERE id = $1",
    )
    .bind(run)
    .fetch_optional(pool)
    .await
    .map_err(sql("reading the run"))?;
    let Some(RunRow {
        pipeline,
        status,
        started_at,
        finished_at,
        error: note,
    }) = header
    else {
        return Err(ReportError::NoSuchRun { run });
    };
    let changes: Vec<ChangeQueryRow> =
        sqlx::query_as(
            "SELECT entity, clever_id, member_id, action, reason, author FROM sync_changes WHERE run_id = $1 ORDER BY id",
        )
        .bind(run)
        .fetch_all(pool)
        .await
        .map_err(sql("reading the run's changes"))?;
    let quarantined: Vec<(String, Option<String>, String, Option<String>)> = sqlx::query_as(
        "SELECT kind, clever_id, reason, suggested_fix FROM quarantine WHERE run_id = $1 ORDER BY id",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .map_err(sql("reading the run's quarantine"))?;
    let mut rows: Vec<ReportRow> = changes
        .into_iter()
        .map(|change| ReportRow {
            kind: "change",
            suggested_fix: suggest(&change.action, &change.reason, &change.author),
            entity: change.entity,
            clever_id: change.clever_id,
            member_id: change.member_id,
            action: change.action,
            reason: change.reason,
            author: change.author,
        })
        .collect();
    rows.extend(
        quarantined
            .into_iter()
            .map(|(entity, clever_id, reason, suggested_fix)| ReportRow {
                kind: "quarantine",
                entity,
                clever_id,
                member_id: None,
                action: "quarantine".to_owned(),
                reason,
                author: "source".to_owned(),
                suggested_fix,
            }),
    );
    Ok(RunReport {
        run,
        pipeline,
        status,
        started_at,
        finished_at,
        note,
        rows,
    })
}

/// What an admin can do when a change is not what they expected.
fn suggest(action: &str, reason: &str, author: &str) -> Option<String> {
    if reason.starts_with("filtered") {
        return Some(format!(
            "if this record belongs in Freckle, change `{author}` in the pipeline file"
        ));
    }
    match action {
        "archive" | "end" if reason.contains("absent from source") => Some(
            "if this is wrong, check that the record is still in the SIS and shared with Freckle in Clever"
                .to_owned(),
        ),
        _ => None,
    }
}

impl RunReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialise")
    }

    /// Writes the rows as CSV with a header line.
    pub fn write_csv(&self, out: impl std::io::Write) -> Result<(), ReportError> {
        let mut writer = csv::Writer::from_writer(out);
        if self.rows.is_empty() {
            writer.write_record([
                "kind",
                "entity",
                "clever_id",
                "member_id",
                "action",
                "reason",
                "author",
                "suggested_fix",
            ])?;
        }
        for row in &self.rows {
            writer.serialize(row)?;
        }
        writer.flush().map_err(csv::Error::from)?;
        Ok(())
    }
}
