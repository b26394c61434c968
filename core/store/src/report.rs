//! Run reports: every change and every quarantined record of one run, with its reason, the rule
//! or plugin responsible and, where one is known, a suggested fix. JSON for machines, CSV for
//! admins (one row per change or quarantined record).
//!
//! A committed run's changes are read from the rows it wrote: records carry the run that
//! created them, memberships the runs that started and ended them, and `sync_changes` holds
//! the rest. A held run's are what its plan would do: planned again from the roster it was
//! held with, against the district as it is now.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::AssertSqlSafe;

use crate::StoreError;
use crate::db::Db;
use crate::runs::{self, RunsError};
use rosterflow_model::{Entity, Skipped, Snapshot};
use rosterflow_plan::schema::{ENTITIES, MEMBERSHIPS, layout};
use rosterflow_plan::{ChangeRow, Plan};

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
    #[error("cannot plan the held run again")]
    Held(#[from] RunsError),
    #[error("cannot read the district")]
    Store(#[from] StoreError),
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
    /// How the run read its source: `full` or `events`, and why or what.
    pub source_kind: Option<String>,
    pub source_note: Option<String>,
    /// The newest Clever event it applied, for an events sync.
    pub event_cursor: Option<String>,
    /// What the source sent that the roster does not load: contacts, staff-only users, records
    /// of other districts.
    pub not_loaded: Option<Skipped>,
    pub rows: Vec<ReportRow>,
    /// A held run's plan in numbers: its changes per school and type.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<PlannedChanges>,
    /// A held run's district before its plan: the active records of each type per school, the
    /// base of the share of a school its plan would archive.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub active_by_school: Vec<ActiveRecords>,
}

/// How many active records of one type a school held before a held run's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveRecords {
    /// The school's name and Clever id, as in [`PlannedChanges::school`].
    pub school: String,
    /// `student`, `teacher`, `class`...
    pub entity: String,
    pub active: usize,
}

/// How many changes of one type a held run's plan makes in one school.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChanges {
    /// The school's name and Clever id; none for records of no school (terms, courses).
    pub school: Option<String>,
    /// `student.archive`, `class_student.start`...
    pub change: String,
    pub count: usize,
}

/// A change or a quarantined record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    /// `change` or `quarantine`.
    pub kind: &'static str,
    pub entity: String,
    pub source_id: Option<String>,
    /// What people call the record: a person's first and last name, a class's or school's name.
    pub name: Option<String>,
    pub member_id: Option<String>,
    /// The member's name, for a membership.
    pub member_name: Option<String>,
    pub action: String,
    pub reason: String,
    /// `sync`, or the rule, filter or plugin responsible.
    pub author: String,
    pub suggested_fix: Option<String>,
    /// The columns an update changed, or a membership's role.
    pub detail: Option<String>,
    /// Where the source sent a quarantined record, when that says more than its id: a file and
    /// line, a URL.
    pub origin: Option<String>,
}

impl ReportRow {
    fn change(
        entity: &str,
        source_id: Option<String>,
        member_id: Option<String>,
        action: &str,
        reason: String,
        author: String,
        detail: Option<String>,
    ) -> ReportRow {
        ReportRow {
            kind: "change",
            suggested_fix: suggest(action, &reason, &author),
            entity: entity.to_owned(),
            source_id,
            name: None,
            member_id,
            member_name: None,
            action: action.to_owned(),
            reason,
            author,
            detail,
            origin: None,
        }
    }
}

impl From<ChangeRow<'_>> for ReportRow {
    fn from(row: ChangeRow<'_>) -> ReportRow {
        ReportRow::change(
            row.entity.as_str(),
            Some(row.key.to_owned()),
            row.member.map(str::to_owned),
            row.action,
            row.reason.into_owned(),
            row.author.into_owned(),
            row.detail,
        )
    }
}

#[derive(sqlx::FromRow)]
struct RunRow {
    pipeline: String,
    status: String,
    started_at: String,
    finished_at: Option<String>,
    error: Option<String>,
    source_kind: Option<String>,
    source_note: Option<String>,
    event_cursor: Option<String>,
    skipped: Option<String>,
}

/// Reads run `run`'s report.
pub async fn read(db: &Db, run: i64) -> Result<RunReport, ReportError> {
    let pool = &db.pool;
    let header: Option<RunRow> = sqlx::query_as(
        "SELECT pipeline, status, started_at, finished_at, error, source_kind, source_note, event_cursor, \
         skipped FROM sync_runs WHERE id = $1",
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
        error: mut note,
        source_kind,
        source_note,
        event_cursor,
        skipped,
    }) = header
    else {
        return Err(ReportError::NoSuchRun { run });
    };
    let mut planned = Vec::new();
    let mut active_by_school = Vec::new();
    let mut rows = match status.as_str() {
        "held" => {
            let (mut rows, by_school, active, stale) = held_changes(db, &pipeline, run).await?;
            name_rows(db, run, &mut rows).await?;
            planned = by_school;
            active_by_school = active;
            if stale {
                let moved = "the district has moved since this run was held: approving it will be refused; discard it and run again";
                note = Some(match note {
                    Some(reasons) => format!("{reasons}; {moved}"),
                    None => moved.to_owned(),
                });
            }
            rows
        }
        _ => {
            let mut rows = committed_changes(db, run).await?;
            name_rows(db, run, &mut rows).await?;
            rows
        }
    };
    type Quarantined = (
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
    );
    let quarantined: Vec<Quarantined> = sqlx::query_as(
        "SELECT kind, source_id, reason, suggested_fix, origin FROM quarantine WHERE run_id = $1 ORDER BY id",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .map_err(sql("reading the run's quarantine"))?;
    rows.extend(quarantined.into_iter().map(
        |(entity, source_id, reason, suggested_fix, origin)| ReportRow {
            kind: "quarantine",
            entity,
            source_id,
            name: None,
            member_id: None,
            member_name: None,
            action: "quarantine".to_owned(),
            reason,
            author: "source".to_owned(),
            suggested_fix,
            detail: None,
            origin,
        },
    ));
    Ok(RunReport {
        run,
        pipeline,
        status,
        started_at,
        finished_at,
        note,
        source_kind,
        source_note,
        event_cursor,
        not_loaded: skipped.and_then(|json| serde_json::from_str(&json).ok()),
        rows,
        planned,
        active_by_school,
    })
}

/// The changes a committed run made: rows it created, logged changes, memberships it started
/// and ended.
async fn committed_changes(db: &Db, run: i64) -> Result<Vec<ReportRow>, ReportError> {
    let pool = &db.pool;
    let mut rows = Vec::new();
    for entity in ENTITIES {
        let layout = layout(entity);
        let author = if entity == Entity::Class {
            "CASE WHEN source = 'sis' THEN 'sync' ELSE source END"
        } else {
            "'sync'"
        };
        let created: Vec<(Option<String>, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT source_id, {author} FROM {} WHERE created_run = $1 ORDER BY id",
            layout.name
        )))
        .bind(run)
        .fetch_all(pool)
        .await
        .map_err(sql("reading the run's new rows"))?;
        rows.extend(created.into_iter().map(|(key, author)| {
            ReportRow::change(
                entity.as_str(),
                key,
                None,
                "create",
                "new in source".to_owned(),
                author,
                None,
            )
        }));
    }
    type Logged = (
        String,
        Option<String>,
        Option<String>,
        String,
        String,
        String,
        Option<String>,
    );
    let logged: Vec<Logged> = sqlx::query_as(
        "SELECT entity, source_id, member_id, action, reason, author, detail FROM sync_changes \
         WHERE run_id = $1 ORDER BY id",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .map_err(sql("reading the run's changes"))?;
    rows.extend(
        logged
            .into_iter()
            .map(|(entity, key, member, action, reason, author, detail)| {
                ReportRow::change(&entity, key, member, &action, reason, author, detail)
            }),
    );
    for table in MEMBERSHIPS {
        let role = if table.entity == Entity::ClassTeacher {
            "m.role"
        } else {
            "NULL"
        };
        let query = |when: &str| {
            format!(
                "SELECT c.source_id, u.source_id, m.source, {role}, m.ended_reason, m.ended_by \
                 FROM {} m JOIN classes c ON c.id = m.class_id JOIN {} u ON u.id = m.{} \
                 WHERE m.{when} = $1 ORDER BY m.id",
                table.name,
                layout(table.member).name,
                table.member_column
            )
        };
        type Membership = (
            Option<String>,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        for (column, action) in [("started_run", "start"), ("ended_run", "end")] {
            let found: Vec<Membership> = sqlx::query_as(AssertSqlSafe(query(column)))
                .bind(run)
                .fetch_all(pool)
                .await
                .map_err(sql("reading the run's memberships"))?;
            rows.extend(found.into_iter().map(
                |(class, member, source, role, ended_reason, ended_by)| {
                    let (reason, author) = match action {
                        "start" => (
                            "in the section in source".to_owned(),
                            if source == "sis" {
                                "sync".to_owned()
                            } else {
                                source
                            },
                        ),
                        _ => (
                            ended_reason.unwrap_or_default(),
                            ended_by.unwrap_or_else(|| "sync".to_owned()),
                        ),
                    };
                    ReportRow::change(
                        table.entity.as_str(),
                        class,
                        member,
                        action,
                        reason,
                        author,
                        role,
                    )
                },
            ));
        }
    }
    Ok(rows)
}

/// What a held run's plan would change, planned again against the district as it is now: its
/// changes, their counts per school, the active records per school before it, and whether the
/// district moved since it was held.
async fn held_changes(
    db: &Db,
    pipeline: &str,
    run: i64,
) -> Result<
    (
        Vec<ReportRow>,
        Vec<PlannedChanges>,
        Vec<ActiveRecords>,
        bool,
    ),
    ReportError,
> {
    let held = runs::held(db, pipeline, run, "reported").await?;
    let state = crate::read_state(db, &held.district).await?;
    let (rows, planned, active) = rosterflow_model::blocking(|| {
        let plan = Plan::compute(&held.snapshot, &state);
        let school_name = |id: &str| {
            let name = held.snapshot.schools.iter().find(|school| school.id == id);
            match name {
                Some(school) => format!("{} ({id})", school.name),
                None => id.to_owned(),
            }
        };
        let planned = plan
            .changes_by_school()
            .into_iter()
            .map(|((school, change), count)| PlannedChanges {
                school: school.map(school_name),
                change,
                count,
            })
            .collect();
        let active = plan
            .active_by_school
            .iter()
            .map(|(&(entity, school), &active)| ActiveRecords {
                school: school_name(plan.key_of_row(Entity::School, school).unwrap_or("?")),
                entity: entity.as_str().to_owned(),
                active,
            })
            .collect();
        let mut rows: Vec<ReportRow> = plan.change_rows().map(ReportRow::from).collect();
        // What the plan would create has no row to be named from yet: its roster names it.
        let names = snapshot_names(&held.snapshot);
        let name_of = |entity: Option<Entity>, id: &Option<String>| {
            names.get(&(entity?, id.as_deref()?)).cloned()
        };
        for row in &mut rows {
            let (record, member) = named_from(&row.entity);
            row.name = name_of(record, &row.source_id);
            row.member_name = name_of(member, &row.member_id);
        }
        (rows, planned, active)
    });
    Ok((rows, planned, active, state.last_run != held.based_on_run))
}

/// `Ada Lovelace (5a1…)`: a record by its name, with its id beside it; the id alone when it has
/// no name.
pub fn named(name: Option<&str>, id: Option<&str>) -> String {
    match (name.filter(|n| !n.is_empty()), id) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (Some(name), None) => name.to_owned(),
        (None, id) => id.unwrap_or_default().to_owned(),
    }
}

/// The tables a row's record and member are named from, by the row's entity.
fn named_from(entity: &str) -> (Option<Entity>, Option<Entity>) {
    match entity {
        "class_student" => (Some(Entity::Class), Some(Entity::Student)),
        "class_teacher" => (Some(Entity::Class), Some(Entity::Teacher)),
        other => (ENTITIES.into_iter().find(|e| e.as_str() == other), None),
    }
}

/// The names of a roster's records, by entity and id.
fn snapshot_names(snapshot: &Snapshot) -> HashMap<(Entity, &str), String> {
    let schools = snapshot
        .schools
        .iter()
        .map(|r| ((Entity::School, r.id.as_str()), r.name.clone()));
    let classes = snapshot
        .sections
        .iter()
        .map(|r| ((Entity::Class, r.id.as_str()), r.name.clone()));
    let students = snapshot
        .students
        .iter()
        .map(|r| ((Entity::Student, r.id.as_str()), r.name.full()));
    let teachers = snapshot
        .teachers
        .iter()
        .map(|r| ((Entity::Teacher, r.id.as_str()), r.name.full()));
    let admins = snapshot
        .admins
        .iter()
        .map(|r| ((Entity::Admin, r.id.as_str()), r.name.full()));
    let terms = snapshot.terms.iter().map(|r| {
        let name = r.name.clone().unwrap_or_default();
        ((Entity::Term, r.id.as_str()), name)
    });
    let courses = snapshot.courses.iter().map(|r| {
        let name = r.name.clone().unwrap_or_default();
        ((Entity::Course, r.id.as_str()), name)
    });
    schools
        .chain(classes)
        .chain(students)
        .chain(teachers)
        .chain(admins)
        .chain(terms)
        .chain(courses)
        .collect()
}

/// Gives each row the names of its record and member, as the Freckle DB holds them (archived
/// rows keep theirs) or, for what a held plan would create, as its roster has them.
async fn name_rows(db: &Db, run: i64, rows: &mut [ReportRow]) -> Result<(), ReportError> {
    let tables = named_from;
    let mut wanted: BTreeMap<Entity, HashMap<String, Option<String>>> = BTreeMap::new();
    for row in rows.iter() {
        let (record, member) = tables(&row.entity);
        for (entity, id) in [(record, &row.source_id), (member, &row.member_id)] {
            if let (Some(entity), Some(id)) = (entity, id) {
                wanted.entry(entity).or_default().insert(id.clone(), None);
            }
        }
    }
    let district: Option<i64> =
        sqlx::query_scalar("SELECT district_id FROM sync_runs WHERE id = $1")
            .bind(run)
            .fetch_one(&db.pool)
            .await
            .map_err(sql("reading the run's district"))?;
    let Some(district) = district else {
        return Ok(());
    };
    for (entity, names) in &mut wanted {
        let layout = layout(*entity);
        let name = crate::name_sql(*entity, "");
        let scope = if layout.in_district {
            "district_id = $1"
        } else {
            "id = $1"
        };
        let found: Vec<(Option<String>, Option<String>)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {key}, {name} FROM {table} WHERE {scope}",
            key = layout.key_column,
            table = layout.name,
        )))
        .bind(district)
        .fetch_all(&db.pool)
        .await
        .map_err(sql("reading the names of the run's records"))?;
        for (key, name) in found {
            if let (Some(key), Some(name)) = (key, name)
                && let Some(slot) = names.get_mut(&key)
            {
                *slot = Some(name);
            }
        }
    }
    let name_of = |entity: Option<Entity>, id: &Option<String>| {
        let names = wanted.get(&entity?)?;
        names.get(id.as_deref()?)?.clone()
    };
    for row in rows.iter_mut() {
        let (record, member) = tables(&row.entity);
        row.name = row.name.take().or_else(|| name_of(record, &row.source_id));
        row.member_name = row
            .member_name
            .take()
            .or_else(|| name_of(member, &row.member_id));
    }
    Ok(())
}

/// What an admin can do when a change is not what they expected.
/// `text` in at most `limit` characters, the cut shown.
fn cut(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

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

    /// Writes the report for a person at a terminal: the run, its changes counted by type, and
    /// one aligned line per row (long reasons and fixes cut; JSON and CSV carry them whole).
    pub fn write_table(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "run {} of {}: {}, started {}",
            self.run, self.pipeline, self.status, self.started_at
        )?;
        if let Some(kind) = &self.source_kind {
            match &self.source_note {
                Some(note) => writeln!(out, "source: {kind} ({note})")?,
                None => writeln!(out, "source: {kind}")?,
            }
        }
        if let Some(note) = &self.note {
            writeln!(out, "note: {note}")?;
        }
        let mut counts = BTreeMap::<String, usize>::new();
        for row in &self.rows {
            *counts
                .entry(format!("{} {}.{}", row.kind, row.entity, row.action))
                .or_default() += 1;
        }
        for planned in &self.planned {
            *counts
                .entry(format!("planned {}", planned.change))
                .or_default() += planned.count;
        }
        for (what, count) in &counts {
            writeln!(out, "  {what:<40} {count:>8}")?;
        }
        if self.rows.is_empty() {
            return writeln!(out, "no row-level changes or quarantined records");
        }
        const HEADER: [&str; 7] = [
            "kind", "entity", "record", "member", "action", "reason", "fix",
        ];
        let cells: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    row.kind.to_owned(),
                    row.entity.clone(),
                    named(row.name.as_deref(), row.source_id.as_deref()),
                    named(row.member_name.as_deref(), row.member_id.as_deref()),
                    row.action.clone(),
                    cut(&format!("{} ({})", row.reason, row.author), 60),
                    cut(row.suggested_fix.as_deref().unwrap_or(""), 60),
                ]
            })
            .collect();
        let right = [false; 7];
        write!(
            out,
            "{}",
            rosterflow_model::text_table(HEADER, &cells, right)
        )
    }

    /// Writes the rows as CSV with a header line, every cell defused for a spreadsheet (ids,
    /// names and reasons come from the SIS).
    pub fn write_csv(&self, out: impl std::io::Write) -> Result<(), ReportError> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record([
            "kind",
            "entity",
            "source_id",
            "name",
            "member_id",
            "member_name",
            "action",
            "reason",
            "author",
            "suggested_fix",
            "detail",
            "origin",
        ])?;
        fn optional(text: &Option<String>) -> &str {
            text.as_deref().unwrap_or_default()
        }
        for row in &self.rows {
            let cells = rosterflow_model::spreadsheet_row([
                row.kind,
                &row.entity,
                optional(&row.source_id),
                optional(&row.name),
                optional(&row.member_id),
                optional(&row.member_name),
                &row.action,
                &row.reason,
                &row.author,
                optional(&row.suggested_fix),
                optional(&row.detail),
                optional(&row.origin),
            ]);
            writer.write_record(cells.iter().map(|cell| cell.as_bytes()))?;
        }
        writer.flush().map_err(csv::Error::from)?;
        Ok(())
    }
}
