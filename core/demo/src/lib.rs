//! Growth data in the Freckle DB: practice sessions and domain levels (tables
//! `practice_sessions` and `domain_levels`, migration `0002_growth.sql`), and the demo seeder.
//!
//! The Freckle app writes growth data; rosterflow only reads it (see the `rosterflow-export` crate). The one
//! writer here, [`seed_demo_practice`], is for demos only: it invents realistic practice for a
//! district's students so that a demo export is not empty. It is never part of a pipeline run,
//! and its rows are marked `source = 'demo'` so a re-run replaces them and nothing else.

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::Any;

use rosterflow_store::db::{Db, timestamp};

/// The practice subjects (the `subject` column).
pub const SUBJECTS: [&str; 2] = ["math", "ela"];

/// The math domains the demo practices (Common Core domains, grades K-5).
pub const MATH_DOMAINS: [&str; 5] = [
    "Counting & Cardinality",
    "Operations & Algebraic Thinking",
    "Number & Operations in Base Ten",
    "Measurement & Data",
    "Geometry",
];

/// The ELA domains the demo practices.
pub const ELA_DOMAINS: [&str; 5] = [
    "Reading: Literature",
    "Reading: Informational Text",
    "Foundational Skills",
    "Vocabulary",
    "Language Conventions",
];

/// Rows per INSERT statement: well under both backends' bind-parameter limits.
const INSERT_ROWS: usize = 500;

/// How much practice the demo seeder invents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedOptions {
    /// The seed: the same seed, roster and `until` give the same rows.
    pub seed: u64,
    /// How many weeks of practice, ending at `until`.
    pub weeks: u32,
    /// Sessions per student, subject and week.
    pub sessions_per_week: u32,
    /// When the invented practice ends (typically now).
    pub until: DateTime<Utc>,
}

impl SeedOptions {
    /// Eight weeks of three sessions per subject and week, ending at `until`, seed 42.
    pub fn ending_at(until: DateTime<Utc>) -> SeedOptions {
        SeedOptions {
            seed: 42,
            weeks: 8,
            sessions_per_week: 3,
            until,
        }
    }
}

/// What the seeder wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SeedReport {
    /// Students who got practice (every student of the district, archived ones excepted).
    pub students: u64,
    /// Practice sessions written.
    pub sessions: u64,
    /// Domain level measurements written.
    pub levels: u64,
    /// Earlier demo rows (sessions and levels) replaced.
    pub replaced: u64,
}

/// Why the seeder failed. Nothing is written then: it runs in one transaction.
#[derive(Debug, thiserror::Error)]
pub enum GrowthError {
    #[error("district {district} is not in the Freckle DB")]
    UnknownDistrict { district: String },
    #[error("invalid demo options: {problem}")]
    InvalidOptions { problem: String },
    #[error("cannot {what} in the Freckle DB")]
    Database {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

fn database(what: &'static str) -> impl FnOnce(sqlx::Error) -> GrowthError {
    move |source| GrowthError::Database { what, source }
}

/// Demo only: replaces the district's demo practice with `options.weeks` weeks of invented
/// sessions (math and ELA, every domain) and weekly level measurements that grow, for every
/// student of district `district_key` who is not archived. Deterministic from
/// `options.seed`. Never call this from a pipeline run.
pub async fn seed_demo_practice(
    db: &Db,
    district_key: &str,
    options: &SeedOptions,
) -> Result<SeedReport, GrowthError> {
    if options.weeks == 0 || options.weeks > 60 {
        return Err(GrowthError::InvalidOptions {
            problem: format!("weeks must be between 1 and 60, not {}", options.weeks),
        });
    }
    if options.sessions_per_week > 20 {
        return Err(GrowthError::InvalidOptions {
            problem: format!(
                "sessions_per_week must be at most 20, not {}",
                options.sessions_per_week
            ),
        });
    }
    let district: Option<i64> = sqlx::query_scalar("SELECT id FROM districts WHERE key = $1")
        .bind(district_key)
        .fetch_optional(&db.pool)
        .await
        .map_err(database("look up the district"))?;
    let Some(district) = district else {
        return Err(GrowthError::UnknownDistrict {
            district: district_key.to_owned(),
        });
    };

    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(database("start a transaction"))?;
    let mut replaced = 0;
    for sql in [
        "DELETE FROM practice_sessions WHERE source = 'demo' \
         AND student_id IN (SELECT id FROM students WHERE district_id = $1)",
        "DELETE FROM domain_levels WHERE source = 'demo' \
         AND student_id IN (SELECT id FROM students WHERE district_id = $1)",
    ] {
        replaced += sqlx::query(sql)
            .bind(district)
            .execute(&mut *tx)
            .await
            .map_err(database("replace earlier demo practice"))?
            .rows_affected();
    }
    let students: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT id, grade FROM students WHERE district_id = $1 AND archived_at IS NULL ORDER BY id",
    )
    .bind(district)
    .fetch_all(&mut *tx)
    .await
    .map_err(database("read the district's students"))?;

    let created = timestamp(options.until);
    let mut report = SeedReport {
        students: students.len() as u64,
        sessions: 0,
        levels: 0,
        replaced,
    };
    let mut sessions = Vec::new();
    let mut levels = Vec::new();
    for (student, grade) in &students {
        invent(
            *student,
            grade.as_deref(),
            options,
            &mut sessions,
            &mut levels,
        );
        if sessions.len() >= INSERT_ROWS * 8 {
            report.sessions += insert_sessions(&mut tx, &sessions, &created).await?;
            sessions.clear();
        }
        if levels.len() >= INSERT_ROWS * 8 {
            report.levels += insert_levels(&mut tx, &levels).await?;
            levels.clear();
        }
    }
    report.sessions += insert_sessions(&mut tx, &sessions, &created).await?;
    report.levels += insert_levels(&mut tx, &levels).await?;
    tx.commit()
        .await
        .map_err(database("commit the demo practice"))?;
    tracing::info!(
        district = district_key,
        students = report.students,
        sessions = report.sessions,
        levels = report.levels,
        "demo practice seeded"
    );
    Ok(report)
}

/// One invented practice session.
#[derive(Debug, Clone, PartialEq)]
struct Session {
    student: i64,
    subject: &'static str,
    domain: &'static str,
    started_at: String,
    minutes: i64,
    questions: i64,
    correct: i64,
}

/// One invented level measurement.
#[derive(Debug, Clone, PartialEq)]
struct Level {
    student: i64,
    subject: &'static str,
    domain: &'static str,
    level: f64,
    measured_at: String,
}

/// A student's generator: the seed's key, in the student's own stream, so that a student's
/// practice depends only on the seed and the student. ChaCha8 is a named algorithm: its stream
/// is the same on every platform (unlike `StdRng` or `SmallRng`, which may change).
fn student_rng(seed: u64, student: i64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(student as u64);
    rng
}

/// The grade as a level (kindergarten 0); unknown grades practice at grade 3.
fn grade_level(grade: Option<&str>) -> f64 {
    match grade.map(str::trim) {
        Some("Kindergarten" | "K" | "KG") => 0.0,
        Some(g) => g
            .parse::<f64>()
            .ok()
            .filter(|g| (0.0..=12.0).contains(g))
            .unwrap_or(3.0),
        None => 3.0,
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// A student's weeks of practice: a baseline level per domain at the start, `sessions_per_week`
/// sessions per subject each school day of a week (cycling through the domains), and a new level
/// for each domain practised at the end of each week, a little higher than the last.
fn invent(
    student: i64,
    grade: Option<&str>,
    options: &SeedOptions,
    sessions: &mut Vec<Session>,
    levels: &mut Vec<Level>,
) {
    let mut rng = student_rng(options.seed, student);
    let start = options.until - Duration::weeks(i64::from(options.weeks));
    let grade = grade_level(grade);
    let weekly_growth = 0.03 + rng.random::<f64>() * 0.12;
    let skill = 0.55 + rng.random::<f64>() * 0.4;
    for (subject, domains) in [("math", &MATH_DOMAINS), ("ela", &ELA_DOMAINS)] {
        let mut current = [0.0; 5];
        for (i, domain) in domains.iter().enumerate() {
            current[i] = round1((grade - 0.8 + rng.random::<f64>() * 1.2).max(0.0));
            levels.push(Level {
                student,
                subject,
                domain,
                level: current[i],
                measured_at: timestamp(start),
            });
        }
        let mut next_domain = rng.random_range(0..domains.len());
        for week in 0..options.weeks {
            let week_start = start + Duration::weeks(i64::from(week));
            let mut practised = [false; 5];
            for k in 0..options.sessions_per_week {
                let d = next_domain;
                next_domain = (next_domain + 1) % domains.len();
                practised[d] = true;
                let day = i64::from(k % 5);
                let at = week_start
                    + Duration::days(day)
                    + Duration::hours(rng.random_range(1..=7))
                    + Duration::minutes(rng.random_range(0..=59))
                    + Duration::seconds(rng.random_range(0..=59));
                let questions = rng.random_range(5..=25);
                let accuracy = (skill + (rng.random::<f64>() - 0.5) * 0.3).clamp(0.2, 1.0);
                sessions.push(Session {
                    student,
                    subject,
                    domain: domains[d],
                    started_at: timestamp(at),
                    minutes: rng.random_range(5..=30),
                    questions,
                    correct: ((questions as f64) * accuracy).round() as i64,
                });
            }
            let week_end =
                (week_start + Duration::weeks(1) - Duration::seconds(1)).min(options.until);
            for (d, was) in practised.iter().enumerate() {
                if *was {
                    current[d] = round1(current[d] + weekly_growth * (0.5 + rng.random::<f64>()));
                    levels.push(Level {
                        student,
                        subject,
                        domain: domains[d],
                        level: current[d],
                        measured_at: timestamp(week_end),
                    });
                }
            }
        }
    }
}

/// `INSERT ... VALUES ($1, $2, ...), (...)` for `rows` rows of `columns` values: numbered
/// placeholders, which both backends accept (sqlx's `QueryBuilder<Any>` writes `?`, which
/// PostgreSQL does not).
fn insert_sql(head: &str, columns: usize, rows: usize) -> String {
    let mut sql = String::from(head);
    sql.push_str(" VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * columns + column + 1));
        }
        sql.push(')');
    }
    sql
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// Inserts `rows` in statements of up to `INSERT_ROWS` rows: `head` is the `INSERT INTO table
/// (columns)` part, and `bind` binds one row's `columns` values.
async fn insert_rows<T>(
    tx: &mut sqlx::Transaction<'static, Any>,
    (head, columns): (&str, usize),
    rows: &[T],
    what: &'static str,
    bind: impl for<'q> Fn(AnyQuery<'q>, &T) -> AnyQuery<'q>,
) -> Result<u64, GrowthError> {
    let mut written = 0;
    for batch in rows.chunks(INSERT_ROWS) {
        // Only placeholders are generated: every value is bound.
        let sql = insert_sql(head, columns, batch.len());
        let insert = batch
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), &bind);
        written += insert
            .execute(&mut **tx)
            .await
            .map_err(database(what))?
            .rows_affected();
    }
    Ok(written)
}

async fn insert_sessions(
    tx: &mut sqlx::Transaction<'static, Any>,
    rows: &[Session],
    created: &str,
) -> Result<u64, GrowthError> {
    let head = "INSERT INTO practice_sessions \
        (student_id, subject, domain, started_at, minutes, questions, correct, source, created_at)";
    insert_rows(
        tx,
        (head, 9),
        rows,
        "write demo practice sessions",
        |insert, s| {
            insert
                .bind(s.student)
                .bind(s.subject)
                .bind(s.domain)
                .bind(s.started_at.clone())
                .bind(s.minutes)
                .bind(s.questions)
                .bind(s.correct)
                .bind("demo")
                .bind(created.to_owned())
        },
    )
    .await
}

async fn insert_levels(
    tx: &mut sqlx::Transaction<'static, Any>,
    rows: &[Level],
) -> Result<u64, GrowthError> {
    let head =
        "INSERT INTO domain_levels (student_id, subject, domain, level, measured_at, source)";
    insert_rows(
        tx,
        (head, 6),
        rows,
        "write demo domain levels",
        |insert, l| {
            insert
                .bind(l.student)
                .bind(l.subject)
                .bind(l.domain)
                .bind(l.level)
                .bind(l.measured_at.clone())
                .bind("demo")
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn options() -> SeedOptions {
        SeedOptions::ending_at(Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap())
    }

    #[test]
    fn invented_practice_is_deterministic_and_grows() {
        let (mut s1, mut l1, mut s2, mut l2) = (vec![], vec![], vec![], vec![]);
        invent(7, Some("3"), &options(), &mut s1, &mut l1);
        invent(7, Some("3"), &options(), &mut s2, &mut l2);
        assert_eq!(s1, s2);
        assert_eq!(l1, l2);
        assert_eq!(s1.len(), 2 * 8 * 3);
        for session in &s1 {
            assert!(session.correct <= session.questions);
            assert!(session.started_at < timestamp(options().until));
        }
        // Every domain has a baseline, and the last level of a practised domain is higher.
        for domain in MATH_DOMAINS.iter().chain(&ELA_DOMAINS) {
            let mine: Vec<&Level> = l1.iter().filter(|l| l.domain == *domain).collect();
            assert!(!mine.is_empty());
            assert!(mine.last().unwrap().level >= mine[0].level);
        }
        let mut other = (vec![], vec![]);
        invent(8, Some("3"), &options(), &mut other.0, &mut other.1);
        assert_ne!(s1, other.0);
    }

    #[test]
    fn inserts_number_their_placeholders() {
        assert_eq!(
            insert_sql("INSERT INTO t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
    }

    #[test]
    fn grades_become_levels() {
        assert_eq!(grade_level(Some("Kindergarten")), 0.0);
        assert_eq!(grade_level(Some("5")), 5.0);
        assert_eq!(grade_level(Some("PreKindergarten")), 3.0);
        assert_eq!(grade_level(None), 3.0);
    }
}
