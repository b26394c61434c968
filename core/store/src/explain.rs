//! `rosterflow explain`: why is this student (not) in this class? Answered from the Freckle DB
//! alone: what it holds now, what the last run's transforms decided about the record, its
//! membership history and every change the sync made to it, each with reason and author.

use std::fmt;

use sqlx::AssertSqlSafe;

use crate::db::Db;
use crate::sign_in::AccountKind;
use rosterflow_model::Entity;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no {kind} {id} in district {district}: it was never in a run's source or decisions")]
    Unknown {
        kind: &'static str,
        id: String,
        district: String,
    },
    #[error("database error while {step}")]
    Sql {
        step: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot read the held run")]
    Held(#[source] Box<crate::report::ReportError>),
    #[error("cannot tell whether the record can sign in")]
    SignIn(#[source] Box<crate::sign_in::SignInError>),
}

fn sql(step: &'static str) -> impl FnOnce(sqlx::Error) -> ExplainError {
    move |source| ExplainError::Sql { step, source }
}

/// What `explain` can be asked about, by name (`student`, `class`, `teacher`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::Display, strum::VariantNames,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum Subject {
    Student,
    Class,
    Teacher,
}

impl Subject {
    fn entity(self) -> Entity {
        match self {
            Subject::Student => Entity::Student,
            Subject::Class => Entity::Class,
            Subject::Teacher => Entity::Teacher,
        }
    }

    fn table(self) -> &'static str {
        match self {
            Subject::Student => "students",
            Subject::Class => "classes",
            Subject::Teacher => "teachers",
        }
    }
}

/// Everything known about one record.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub subject: Subject,
    pub source_id: String,
    pub sis_id: Option<String>,
    /// What people call it: a person's name, a class's.
    pub name: Option<String>,
    /// `None` when the record was never loaded (dropped before it reached the DB).
    pub state: Option<Standing>,
    /// What the latest run's transforms decided about it, if anything.
    pub last_run: Option<i64>,
    pub decisions: Vec<DecisionRow>,
    /// Class memberships (of a student or teacher, or of a class's members), oldest first.
    pub memberships: Vec<MembershipRow>,
    /// Teachers a student is shared with.
    pub shares: Vec<SharedWith>,
    /// Every change the sync made to the record, oldest first.
    pub changes: Vec<HistoryEntry>,
    /// What the district's latest held run would change about the record, if a run is held.
    pub pending: Option<(i64, Vec<crate::report::ReportRow>)>,
    /// For a student or teacher: whether they can sign in with Clever, and if not, why.
    pub sign_in: Option<String>,
    /// The record as the latest run that quarantined it did: why, and what would mend it.
    pub quarantined: Vec<QuarantineRow>,
}

/// A teacher a student is shared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedWith {
    pub teacher: String,
    pub name: Option<String>,
}

/// A quarantined record of the source: kept out of the roster, with its reason.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QuarantineRow {
    pub run_id: i64,
    /// `user`, `section`, `section.students`...
    pub kind: String,
    pub reason: String,
    pub suggested_fix: Option<String>,
    /// A file and line, a URL.
    pub origin: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Standing {
    pub archived_at: Option<String>,
    pub archived_reason: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub action: String,
    pub author: String,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct MembershipRow {
    /// The class's Clever id (for a student or teacher), or the member's (for a class).
    pub other: String,
    /// The class's name, for a student or teacher.
    pub other_name: Option<String>,
    pub kind: &'static str,
    /// `primary` or `co`, for a teacher.
    pub role: Option<String>,
    pub source: String,
    pub started_at: String,
    pub started_run: Option<i64>,
    pub ended_at: Option<String>,
    pub ended_run: Option<i64>,
    pub ended_reason: Option<String>,
    pub ended_by: Option<String>,
}

/// One change the sync made to the record or to one of its memberships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub run: i64,
    pub action: String,
    /// For a membership change, the class (or member) it concerns, as the change names it.
    pub subject: Option<String>,
    pub reason: String,
    pub author: String,
    /// The columns an update changed.
    pub detail: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RecordRow {
    id: i64,
    source_id: Option<String>,
    sis_id: Option<String>,
    name: Option<String>,
    archived_at: Option<String>,
    archived_reason: Option<String>,
    created_run: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct LoggedChange {
    run_id: i64,
    action: String,
    member_id: Option<String>,
    reason: String,
    author: String,
    detail: Option<String>,
    entity: String,
}

#[derive(sqlx::FromRow)]
struct MembershipQueryRow {
    other: Option<String>,
    other_name: Option<String>,
    role: Option<String>,
    source: String,
    started_at: String,
    started_run: Option<i64>,
    ended_at: Option<String>,
    ended_run: Option<i64>,
    ended_reason: Option<String>,
    ended_by: Option<String>,
}

/// Explains the record `id` (Clever id or SIS id) of `district`.
pub async fn explain(
    db: &Db,
    district: &str,
    subject: Subject,
    id: &str,
) -> Result<Explanation, ExplainError> {
    let pool = &db.pool;
    let table = subject.table();
    let row: Option<RecordRow> =
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT t.id, t.source_id, t.sis_id, {name} AS name, t.archived_at, t.archived_reason, t.created_run FROM {table} t \
             JOIN districts d ON d.id = t.district_id WHERE d.key = $1 \
             AND (t.source_id = $2 OR t.sis_id = $2) \
             ORDER BY CASE WHEN t.source_id = $2 THEN 0 ELSE 1 END, CASE WHEN t.archived_at IS NULL THEN 0 ELSE 1 END, t.id DESC LIMIT 1",
            name = crate::name_sql(subject.entity(), "t."),
        )))
        .bind(district)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(sql("finding the record"))?;
    let last_run: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(r.id) FROM sync_runs r JOIN districts d ON d.id = r.district_id \
         WHERE d.key = $1 AND r.status IN ('committed', 'approved') \
         AND COALESCE(r.source_kind, '') <> 'sign-in'",
    )
    .bind(district)
    .fetch_one(pool)
    .await
    .map_err(sql("reading run history"))?;

    let name = row.as_ref().and_then(|row| row.name.clone());
    let (row_id, created_run, source_id, sis_id, state) = match row {
        Some(RecordRow {
            id: row_id,
            source_id,
            sis_id,
            name: _,
            archived_at,
            archived_reason,
            created_run,
        }) => {
            let source = if subject == Subject::Class {
                sqlx::query_scalar("SELECT source FROM classes WHERE id = $1")
                    .bind(row_id)
                    .fetch_one(pool)
                    .await
                    .map_err(sql("reading the class"))?
            } else {
                None
            };
            (
                Some(row_id),
                created_run,
                source_id.unwrap_or_else(|| id.to_owned()),
                sis_id,
                Some(Standing {
                    archived_at,
                    archived_reason,
                    source,
                }),
            )
        }
        None => (None, None, id.to_owned(), None, None),
    };

    // The decisions in force: what the latest run's transforms decided.
    let decisions: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT s.action, s.author, s.detail FROM sync_decisions s JOIN districts d ON d.id = s.district_id \
         WHERE d.key = $1 AND s.source_id = $2 AND s.entity = $3 AND s.ended_run IS NULL ORDER BY s.id",
    )
    .bind(district)
    .bind(source_id.clone())
    .bind(subject.entity().as_str())
    .fetch_all(pool)
    .await
    .map_err(sql("reading decisions"))?;
    // Changes to the record itself; a membership's are read off its row below.
    let entities = match subject {
        Subject::Class => vec![Entity::Class, Entity::ClassTeacher, Entity::ClassStudent],
        Subject::Student => vec![Entity::Student, Entity::ClassStudent],
        Subject::Teacher => vec![Entity::Teacher, Entity::ClassTeacher],
    };
    let logged: Vec<LoggedChange> = sqlx::query_as(
        "SELECT c.run_id, c.action, c.member_id, c.reason, c.author, c.detail, c.entity FROM sync_changes c \
         JOIN sync_runs r ON r.id = c.run_id JOIN districts d ON d.id = r.district_id \
         WHERE d.key = $1 AND (c.source_id = $2 OR c.member_id = $2) ORDER BY c.id",
    )
    .bind(district)
    .bind(source_id.clone())
    .fetch_all(pool)
    .await
    .map_err(sql("reading changes"))?
    .into_iter()
    .filter(|row: &LoggedChange| Entity::parse(&row.entity).is_some_and(|e| entities.contains(&e)))
    .collect();

    // The latest run that quarantined the record: a record that never loaded is most often one.
    let quarantined: Vec<QuarantineRow> = sqlx::query_as(
        "SELECT q.run_id, q.kind, q.reason, q.suggested_fix, q.origin FROM quarantine q \
         WHERE q.run_id = (SELECT MAX(q2.run_id) FROM quarantine q2 \
           JOIN sync_runs r ON r.id = q2.run_id JOIN districts d ON d.id = r.district_id \
           WHERE d.key = $1 AND q2.source_id = $2) \
         AND q.source_id = $2 ORDER BY q.id",
    )
    .bind(district)
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(sql("reading quarantined records"))?;

    if state.is_none() && decisions.is_empty() && logged.is_empty() && quarantined.is_empty() {
        return Err(ExplainError::Unknown {
            kind: subject.entity().as_str(),
            id: id.to_owned(),
            district: district.to_owned(),
        });
    }

    let mut memberships = Vec::new();
    let mut shares = Vec::new();
    if let Some(row_id) = row_id {
        const COLUMNS: &str = "m.source, m.started_at, m.started_run, m.ended_at, m.ended_run, m.ended_reason, m.ended_by";
        let queries: Vec<(String, &'static str)> = match subject {
            Subject::Student => vec![(
                format!(
                    "SELECT c.source_id AS other, c.name AS other_name, NULL AS role, {COLUMNS} \
                     FROM class_students m JOIN classes c ON c.id = m.class_id WHERE m.student_id = $1 ORDER BY m.started_at, m.id"
                ),
                "student of",
            )],
            Subject::Teacher => vec![(
                format!(
                    "SELECT c.source_id AS other, c.name AS other_name, m.role, {COLUMNS} \
                     FROM class_teachers m JOIN classes c ON c.id = m.class_id WHERE m.teacher_id = $1 ORDER BY m.started_at, m.id"
                ),
                "teacher of",
            )],
            Subject::Class => vec![
                (
                    format!(
                        "SELECT t.source_id AS other, {teacher} AS other_name, m.role, {COLUMNS} \
                         FROM class_teachers m JOIN teachers t ON t.id = m.teacher_id WHERE m.class_id = $1 ORDER BY m.started_at, m.id",
                        teacher = crate::name_sql(Entity::Teacher, "t."),
                    ),
                    "teacher",
                ),
                (
                    format!(
                        "SELECT s.source_id AS other, {student} AS other_name, NULL AS role, {COLUMNS} \
                         FROM class_students m JOIN students s ON s.id = m.student_id WHERE m.class_id = $1 ORDER BY m.started_at, m.id",
                        student = crate::name_sql(Entity::Student, "s."),
                    ),
                    "student",
                ),
            ],
        };
        for (query, kind) in queries {
            let rows: Vec<MembershipQueryRow> = sqlx::query_as(AssertSqlSafe(query))
                .bind(row_id)
                .fetch_all(pool)
                .await
                .map_err(sql("reading memberships"))?;
            memberships.extend(rows.into_iter().map(|row| MembershipRow {
                other: row.other.unwrap_or_default(),
                other_name: row.other_name,
                kind,
                role: row.role,
                source: row.source,
                started_at: row.started_at,
                started_run: row.started_run,
                ended_at: row.ended_at,
                ended_run: row.ended_run,
                ended_reason: row.ended_reason,
                ended_by: row.ended_by,
            }));
        }
        if subject == Subject::Student {
            let shared: Vec<(Option<String>, Option<String>)> =
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT t.source_id, {name} FROM student_shares s JOIN teachers t ON t.id = s.teacher_id \
                     WHERE s.student_id = $1 AND s.revoked_at IS NULL ORDER BY s.id",
                    name = crate::name_sql(Entity::Teacher, "t."),
                )))
                .bind(row_id)
                .fetch_all(pool)
                .await
                .map_err(sql("reading shares"))?;
            shares = shared
                .into_iter()
                .map(|(teacher, name)| SharedWith {
                    teacher: teacher.unwrap_or_default(),
                    name,
                })
                .collect();
        }
    }

    let mut changes: Vec<HistoryEntry> = Vec::new();
    if let Some(run) = created_run {
        changes.push(HistoryEntry {
            run,
            action: "create".to_owned(),
            subject: None,
            reason: "new in source".to_owned(),
            author: match &state {
                Some(Standing {
                    source: Some(source),
                    ..
                }) if source != "sis" => source.clone(),
                _ => "sync".to_owned(),
            },
            detail: None,
        });
    }
    changes.extend(logged.into_iter().map(|row| HistoryEntry {
        run: row.run_id,
        action: row.action,
        subject: row.member_id.filter(|m| *m != source_id),
        reason: row.reason,
        author: row.author,
        detail: row.detail,
    }));
    for m in &memberships {
        let subject = Some(m.describe());
        if let Some(run) = m.started_run {
            changes.push(HistoryEntry {
                run,
                action: "start".to_owned(),
                subject: subject.clone(),
                reason: "in the section in source".to_owned(),
                author: if m.source == "sis" {
                    "sync".to_owned()
                } else {
                    m.source.clone()
                },
                detail: None,
            });
        }
        if let Some(run) = m.ended_run {
            changes.push(HistoryEntry {
                run,
                action: "end".to_owned(),
                subject,
                reason: m.ended_reason.clone().unwrap_or_default(),
                author: m.ended_by.clone().unwrap_or_else(|| "sync".to_owned()),
                detail: None,
            });
        }
    }
    // In run order; within a run, the record before its memberships.
    changes.sort_by_key(|c| (c.run, c.subject.is_some()));

    let pending = pending_changes(db, district, &source_id).await?;

    let sign_in = match subject {
        Subject::Class => None,
        Subject::Student | Subject::Teacher => {
            Some(sign_in_answer(db, district, subject, &source_id).await?)
        }
    };
    Ok(Explanation {
        quarantined,
        sign_in,
        pending,
        subject,
        source_id,
        sis_id,
        name,
        state,
        last_run,
        decisions: decisions
            .into_iter()
            .map(|(action, author, detail)| DecisionRow {
                action,
                author,
                detail,
            })
            .collect(),
        memberships,
        shares,
        changes,
    })
}

/// Whether a student or teacher can sign in with Clever, in words.
async fn sign_in_answer(
    db: &Db,
    district: &str,
    subject: Subject,
    source_id: &str,
) -> Result<String, ExplainError> {
    let source: Option<String> =
        sqlx::query_scalar("SELECT source_kind FROM districts WHERE key = $1")
            .bind(district)
            .fetch_optional(&db.pool)
            .await
            .map_err(sql("reading the district"))?;
    if source.as_deref() != Some("clever") {
        return Ok("no: the district is not rostered through Clever".to_owned());
    }
    let kind = match subject {
        Subject::Teacher => AccountKind::Teacher,
        _ => AccountKind::Student,
    };
    let standing = crate::sign_in::standing(db, district, kind, source_id)
        .await
        .map_err(|error| ExplainError::SignIn(Box::new(error)))?;
    Ok(standing.describe())
}

/// What the district's latest held run would change about a record: its plan, computed again
/// against the district as it is now, narrowed to the record and its memberships.
async fn pending_changes(
    db: &Db,
    district: &str,
    source_id: &str,
) -> Result<Option<(i64, Vec<crate::report::ReportRow>)>, ExplainError> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(r.id) FROM sync_runs r JOIN districts d ON d.id = r.district_id \
         WHERE d.key = $1 AND r.status = 'held'",
    )
    .bind(district)
    .fetch_one(&db.pool)
    .await
    .map_err(sql("reading held runs"))?;
    let Some(run) = held else {
        return Ok(None);
    };
    let report = crate::report::read(db, run)
        .await
        .map_err(|error| ExplainError::Held(Box::new(error)))?;
    let rows = report
        .rows
        .into_iter()
        .filter(|row| {
            row.kind == "change"
                && (row.source_id.as_deref() == Some(source_id)
                    || row.member_id.as_deref() == Some(source_id))
        })
        .collect();
    Ok(Some((run, rows)))
}

impl MembershipRow {
    /// The class (or member) as a change names it: `class "Math 3" (5a25...) as primary`.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            "student of" | "teacher of" => "class",
            member => member,
        };
        let mut text = match self.other_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => format!("{what} {name:?} ({})", self.other),
            None => format!("{what} {}", self.other),
        };
        if let Some(role) = &self.role {
            text.push_str(&format!(" as {role}"));
        }
        text
    }
}

impl Explanation {
    /// The one-line answer: is the record in Freckle, and why (not).
    pub fn verdict(&self) -> String {
        let dropped = self.decisions.iter().find(|d| d.action == "dropped");
        let created = self.decisions.iter().find(|d| d.action == "created");
        match (&self.state, dropped) {
            (_, Some(d)) => format!(
                "in the source at run {}, but dropped by {}: {}",
                self.last_run.unwrap_or_default(),
                d.author,
                d.detail
            ),
            (None, None) => match self.quarantined.first() {
                Some(q) if Some(q.run_id) >= self.last_run => {
                    format!("quarantined by run {}: {}", q.run_id, q.reason)
                }
                Some(q) => format!(
                    "never loaded; last quarantined by run {}: {}",
                    q.run_id, q.reason
                ),
                None => "never loaded".to_owned(),
            },
            (Some(state), None) => match (&state.archived_at, created) {
                (Some(at), _) => format!(
                    "archived since {at}: {}",
                    state
                        .archived_reason
                        .as_deref()
                        .unwrap_or("no reason recorded")
                ),
                (None, Some(c)) => format!("active; created by {}: {}", c.author, c.detail),
                (None, None) => match &state.source {
                    Some(source) if source != "sis" => format!("active; created by {source}"),
                    _ => "active; in the source at the last run".to_owned(),
                },
            },
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.subject.entity().as_str();
        match self.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => write!(f, "{kind} {name:?} {}", self.source_id)?,
            None => write!(f, "{kind} {}", self.source_id)?,
        }
        if let Some(sis) = &self.sis_id {
            write!(f, " (SIS id {sis})")?;
        }
        writeln!(f, ": {}", self.verdict())?;
        if let Some(answer) = &self.sign_in {
            writeln!(f, "sign in with Clever: {answer}")?;
        }
        for q in &self.quarantined {
            write!(
                f,
                "quarantined by run {} ({}): {}",
                q.run_id, q.kind, q.reason
            )?;
            if let Some(origin) = &q.origin {
                write!(f, " [{origin}]")?;
            }
            writeln!(f)?;
            if let Some(fix) = &q.suggested_fix {
                writeln!(f, "  fix: {fix}")?;
            }
        }
        if !self.memberships.is_empty() {
            writeln!(f, "memberships:")?;
            for m in &self.memberships {
                let until = match (&m.ended_at, &m.ended_reason) {
                    (Some(at), Some(reason)) => format!("until {at} ({reason})"),
                    (Some(at), None) => format!("until {at}"),
                    (None, _) => "now".to_owned(),
                };
                let (kind, what) = match m.kind {
                    "student of" | "teacher of" => (m.kind, m.describe()),
                    _ => ("", m.describe()),
                };
                let kind = if kind.is_empty() {
                    String::new()
                } else {
                    format!("{kind} ")
                };
                writeln!(
                    f,
                    "  {kind}{what} [{}] from {} {until}",
                    m.source, m.started_at
                )?;
            }
        }
        if !self.shares.is_empty() {
            let teachers: Vec<String> = self
                .shares
                .iter()
                .map(|s| crate::report::named(s.name.as_deref(), Some(&s.teacher)))
                .collect();
            writeln!(f, "shared with teachers: {}", teachers.join(", "))?;
        }
        if !self.changes.is_empty() {
            writeln!(f, "changes:")?;
            for c in &self.changes {
                let subject = c
                    .subject
                    .as_deref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default();
                let detail = c
                    .detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                writeln!(
                    f,
                    "  run {}: {}{subject}{detail}: {} (by {})",
                    c.run, c.action, c.reason, c.author
                )?;
            }
        }
        if let Some((run, rows)) = &self.pending {
            writeln!(f, "held run {run}, if approved, would:")?;
            if rows.is_empty() {
                writeln!(f, "  change nothing here")?;
            }
            for row in rows {
                let other = match (&row.source_id, &row.member_id) {
                    (Some(class), Some(member)) if *member == self.source_id => {
                        format!(" in class {class}")
                    }
                    (_, Some(member)) => format!(" {member}"),
                    _ => String::new(),
                };
                writeln!(
                    f,
                    "  {} {}{other}: {} (by {})",
                    row.action, row.entity, row.reason, row.author
                )?;
            }
        }
        Ok(())
    }
}
