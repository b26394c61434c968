//! `rosterflow doctor`: what is wrong with a district's data, who can fix it and how.
//!
//! The doctor reads the pipeline's source as a run would (the same pull, the same transforms,
//! stage by stage), and reads the Freckle DB read-only: no run lock, no write, no migration, so
//! it works while a run is under way. It never plans or applies anything.
//!
//! What it checks is in `checks` (pure functions of the roster, what each transform stage
//! matched, and the district's history); how a [`Diagnosis`] is shown (a table, JSON, CSV, a
//! text for the source's admin) is in [`render`]. Each [`Finding`] has a stable `code`, a count,
//! up to [`EXAMPLES`] examples by name and SIS id, who can fix it ([`Fixer`]) and how.

mod checks;
pub mod render;
mod stages;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Pipeline;
use crate::sync::{Runner, SyncError};
use rosterflow_model::school_year::SchoolYear;
use rosterflow_model::{Entity, SourceKind};
use rosterflow_store::db::{Db, DbError};
use rosterflow_store::doctor as store;
use rosterflow_transform::plugin::Plugins;

/// At most this many examples per finding.
pub const EXAMPLES: usize = 5;

/// The exit codes of `rosterflow doctor` (a source that cannot be read exits as a failed run
/// does: 2, or 78 when only the pipeline file can fix it).
pub mod exit {
    /// Nothing found.
    pub const CLEAN: u8 = 0;
    /// Something found: see the findings.
    pub const FINDINGS: u8 = 1;
}

/// The `[doctor]` table of a pipeline file: when the doctor reports what is a matter of degree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorConfig {
    /// Report a plugin that drops more than this percentage of the sections it receives.
    #[serde(default = "default_plugin_drop_max_percent")]
    pub plugin_drop_max_percent: f64,
    /// Report a roster with more than this percentage fewer schools, sections, students or
    /// teachers than the district's live rows in the Freckle DB (only kinds with at least
    /// `[safety] min_records` live rows).
    #[serde(default = "default_shrink_max_percent")]
    pub shrink_max_percent: f64,
}

impl Default for DoctorConfig {
    fn default() -> DoctorConfig {
        DoctorConfig {
            plugin_drop_max_percent: default_plugin_drop_max_percent(),
            shrink_max_percent: default_shrink_max_percent(),
        }
    }
}

fn default_plugin_drop_max_percent() -> f64 {
    20.0
}

fn default_shrink_max_percent() -> f64 {
    5.0
}

impl DoctorConfig {
    /// Every problem with the settings.
    pub fn validate(&self) -> Vec<String> {
        [
            ("plugin_drop_max_percent", self.plugin_drop_max_percent),
            ("shrink_max_percent", self.shrink_max_percent),
        ]
        .into_iter()
        .filter(|(_, value)| !(0.0..=100.0).contains(value))
        .map(|(name, value)| format!("doctor.{name}: {value} is not a percentage (0 to 100)"))
        .collect()
    }
}

/// Who can fix a finding. The names (`clever_admin`) are part of the JSON and CSV output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fixer {
    /// The student information system: its data, as the district's staff enter it.
    Sis,
    /// Whoever administers the district's Clever: sharing, the app's access.
    CleverAdmin,
    /// Whoever administers the district's OneRoster feed or service.
    #[serde(rename = "oneroster_admin")]
    OneRosterAdmin,
    /// Whoever keeps the pipeline file: its transforms and settings.
    PipelineFile,
}

impl Fixer {
    /// The admin of a source of this kind.
    pub fn source_admin(source: SourceKind) -> Fixer {
        match source {
            SourceKind::Clever => Fixer::CleverAdmin,
            SourceKind::OneRoster => Fixer::OneRosterAdmin,
        }
    }

    /// The name, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Fixer::Sis => "sis",
            Fixer::CleverAdmin => "clever_admin",
            Fixer::OneRosterAdmin => "oneroster_admin",
            Fixer::PipelineFile => "pipeline_file",
        }
    }

    /// Whether the fix is at the source (the SIS, Clever, the OneRoster feed), not ours.
    pub fn at_source(self) -> bool {
        self != Fixer::PipelineFile
    }
}

impl std::fmt::Display for Fixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record (or a rule) that shows a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// What it is: `student`, `teacher`, `section`, `school`, a quarantined record's kind
    /// (`user`, `section.students`...), or `rule` for a transform's rule.
    pub kind: String,
    /// The person's name, the section's or school's name, or the rule.
    pub name: String,
    pub sis_id: Option<String>,
    /// Its id at the source (a Clever id, a OneRoster `sourcedId`).
    pub source_id: Option<String>,
    /// What about it shows the finding.
    pub detail: Option<String>,
}

/// One thing wrong with the district's data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What is wrong, stable across versions (`duplicate_sis_id`): see the README's list.
    pub code: &'static str,
    /// When a code is found more than once, what this one is about: the quarantine reason,
    /// the plugin.
    pub about: Option<String>,
    /// One sentence: what is wrong, with its count.
    pub summary: String,
    /// How many records (or rules) it concerns.
    pub count: usize,
    pub fixer: Fixer,
    /// One sentence: how to fix it.
    pub fix: String,
    /// Up to [`EXAMPLES`] records that show it.
    pub examples: Vec<Example>,
}

/// The district as the doctor saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistrictSeen {
    /// Its key in the Freckle DB.
    pub key: String,
    pub name: String,
    /// `clever` or `oneroster`.
    pub source: SourceKind,
}

/// How much the roster held, after the pipeline's transforms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RosterCounts {
    pub schools: usize,
    pub sections: usize,
    pub students: usize,
    pub teachers: usize,
}

/// What the doctor found, ready to show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// The version of this output's fields: 1. Fields are only ever added.
    pub version: u32,
    pub pipeline: String,
    pub district: DistrictSeen,
    /// When the check ran: UTC, with microseconds, as the Freckle DB writes times.
    pub checked_at: String,
    /// The day terms were judged by.
    pub today: NaiveDate,
    /// The school year of `today` (July to June): `2026-27`.
    pub school_year: String,
    pub roster: RosterCounts,
    pub findings: Vec<Finding>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

impl Diagnosis {
    /// The process exit code: 0 when nothing was found, 1 otherwise. A Freckle DB that could
    /// not be read is not a finding: the source alone was judged, and `notes` say what was not
    /// checked, so it may exit 0.
    pub fn exit_code(&self) -> u8 {
        if self.findings.is_empty() {
            exit::CLEAN
        } else {
            exit::FINDINGS
        }
    }
}

/// Why the doctor could not check a district.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("the doctor could not read the district")]
    Read(#[source] SyncError),
    #[error("the doctor could not open a scratch database to pull with")]
    Scratch(#[source] DbError),
}

/// What the doctor read of the Freckle DB.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    /// The district's live rows by kind; `None` when it has not run.
    pub live: Option<store::LiveCounts>,
    /// The live rows of the kinds the roster shrank in.
    pub live_rows: Vec<(Entity, Vec<store::LiveRow>)>,
    /// Records its latest run quarantined.
    pub quarantined: Vec<store::QuarantinedRow>,
}

/// Checks the district of `pipeline`, judging terms as of `today`. Plugins load through
/// `plugins`. Reads only.
pub async fn diagnose(
    pipeline: &Pipeline,
    plugins: &Plugins,
    today: NaiveDate,
) -> Result<Diagnosis, DoctorError> {
    let checked_at = Utc::now();
    let began = std::time::Instant::now();
    let mut notes = Vec::new();
    let opened = match store::open_read_only(&pipeline.file.load.database).await {
        Ok(Some(db)) => match store::check_schema(&db).await.map(store::Schema::mismatch) {
            Ok(None) => Ok(Some(db)),
            // Another version's tables may not mean what this binary reads in them.
            Ok(Some(mismatch)) => {
                db.pool.close().await;
                notes.push(format!(
                    "{mismatch}: quarantined records and a shrinking roster were not checked, and the source was read as on a first run"
                ));
                Ok(None)
            }
            Err(error) => {
                db.pool.close().await;
                Err(rosterflow_model::error_chain(&error))
            }
        },
        Ok(None) => {
            notes.push(
                "the Freckle DB does not exist yet: quarantined records and a shrinking roster were not checked"
                    .to_owned(),
            );
            Ok(None)
        }
        Err(error) => Err(rosterflow_model::error_chain(&error)),
    };
    let db = match opened {
        Ok(Some(db)) => Some(db),
        Ok(None) => None,
        Err(error) => {
            notes.push(format!(
                "cannot read the Freckle DB ({error}): quarantined records and a shrinking roster were not checked"
            ));
            None
        }
    };
    // The pull reads the district's checkpoint (an events cursor, a OneRoster roster) from the
    // Freckle DB; without one it pulls whole, as a first run does.
    let pull_db = match &db {
        Some(db) => db.clone(),
        None => Db::open("sqlite::memory:")
            .await
            .map_err(DoctorError::Scratch)?,
    };
    let runner = Runner::new(pull_db, plugins.clone());
    let mut roster = runner
        .pull_roster(pipeline)
        .await
        .map_err(DoctorError::Read)?;
    tracing::info!(
        pipeline = %pipeline.name(),
        district = %roster.district.id,
        sections = roster.sections.len(),
        students = roster.students.len(),
        teachers = roster.teachers.len(),
        elapsed_ms = began.elapsed().as_millis(),
        "doctor: roster pulled"
    );
    let stages = stages::run(pipeline, plugins, &mut roster).map_err(|source| {
        DoctorError::Read(SyncError::Transform {
            pipeline: pipeline.name().to_owned(),
            source,
        })
    })?;
    tracing::debug!(pipeline = %pipeline.name(), elapsed_ms = began.elapsed().as_millis(), "doctor: transforms watched");
    let key = roster.district.id.to_string();
    let config = &pipeline.file.doctor;
    let min_records = pipeline.file.safety.min_records;
    let history = match &db {
        Some(db) => match read_history(db, &key, &roster, config, min_records).await {
            Ok(history) => {
                if history.live.is_none() {
                    notes.push(
                        "the district has not run yet: a shrinking roster was not checked"
                            .to_owned(),
                    );
                }
                Some(history)
            }
            Err(error) => {
                notes.push(format!(
                    "cannot read the Freckle DB ({}): quarantined records and a shrinking roster were not checked",
                    rosterflow_model::error_chain(&error)
                ));
                None
            }
        },
        None => None,
    };
    tracing::debug!(pipeline = %pipeline.name(), elapsed_ms = began.elapsed().as_millis(), "doctor: Freckle DB read");
    let findings = rosterflow_model::blocking(|| {
        checks::run(&checks::Evidence {
            roster: &roster,
            stages: &stages,
            history: history.as_ref(),
            today,
            config,
            min_records,
        })
    });
    tracing::info!(pipeline = %pipeline.name(), findings = findings.len(), elapsed_ms = began.elapsed().as_millis(), "doctor: checked");
    if let Some(db) = db {
        db.pool.close().await;
    }
    Ok(Diagnosis {
        version: 1,
        pipeline: pipeline.name().to_owned(),
        district: DistrictSeen {
            key,
            name: roster.district.name.clone(),
            source: roster.district.source,
        },
        checked_at: rosterflow_store::db::timestamp(checked_at),
        today,
        school_year: SchoolYear::of_day(today).to_string(),
        roster: RosterCounts {
            schools: roster.schools.len(),
            sections: roster.sections.len(),
            students: roster.students.len(),
            teachers: roster.teachers.len(),
        },
        findings,
        notes,
    })
}

/// Reads what the doctor needs of the district's history: its live rows (and, for the kinds the
/// roster shrank in, the rows themselves) and what its latest run quarantined.
async fn read_history(
    db: &Db,
    key: &str,
    roster: &rosterflow_model::Snapshot,
    config: &DoctorConfig,
    min_records: usize,
) -> Result<History, rosterflow_store::runs::RunsError> {
    let live = store::live_counts(db, key).await?;
    let mut live_rows = Vec::new();
    if let Some(live) = &live {
        for (entity, _, _) in checks::shrunk(roster, live, config, min_records) {
            live_rows.push((entity, store::live_rows(db, key, entity).await?));
        }
    }
    let quarantined = store::quarantined(db, key, 1).await?;
    Ok(History {
        live,
        live_rows,
        quarantined,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const PIPELINE: &str =
        "[pipeline]\nname = \"p\"\n\n[source]\ntype = \"clever\"\ntoken = \"t\"\n\n[load]\n";

    #[test]
    fn the_doctor_table_is_optional_and_takes_percentages() {
        let parse = |extra: &str| {
            crate::config::parse(
                Path::new("p.toml"),
                &format!("{PIPELINE}{extra}"),
                &Default::default(),
            )
        };
        let defaults = parse("").expect("no [doctor] table");
        assert_eq!(defaults.file.doctor.plugin_drop_max_percent, 20.0);
        assert_eq!(defaults.file.doctor.shrink_max_percent, 5.0);
        let set = parse("\n[doctor]\nplugin_drop_max_percent = 35\n").expect("a [doctor] table");
        assert_eq!(set.file.doctor.plugin_drop_max_percent, 35.0);
        let message = parse("\n[doctor]\nshrink_max_percent = 120\nplugin_drop_share = 0.2\n")
            .expect_err("refused")
            .to_string();
        assert!(
            message.contains("unknown field `plugin_drop_share`"),
            "{message}"
        );
        let message = parse("\n[doctor]\nshrink_max_percent = 120\n")
            .expect_err("refused")
            .to_string();
        assert!(
            message.contains("doctor.shrink_max_percent: 120 is not a percentage"),
            "{message}"
        );
    }
}
