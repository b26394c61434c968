//! The `growth` dataset: one row per student, subject and domain for the period.
//!
//! Rows: every (student, subject, domain) of the district's students (archived ones included)
//! with a practice session in the period or a level measured before its end. Sessions, questions,
//! correct answers and minutes add up the sessions started in the period; `accuracy` is
//! correct / questions; the starting level is the latest measured at or before the period start
//! (or, without one, the first measured in the period), the current level the latest measured
//! before the period end. Current teachers are those of the student's classes at the end of the
//! period (or now, if earlier), preferring classes of the row's subject.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use super::ExportError;
use super::file::{
    BatchWriter, Cells, Column, Kind, Output, Settings, Value, Written, micros, text,
};
use super::source::{Job, Param, ReadStop, Row, Source};
use rosterflow_store::db::timestamp as db_timestamp;

/// The growth columns, in file order. The data dictionary is in `pipelines/README.md`.
pub(crate) const COLUMNS: &[Column] = &[
    Column {
        name: "student_source_id",
        kind: Kind::Text,
    },
    Column {
        name: "student_sis_id",
        kind: Kind::Text,
    },
    Column {
        name: "student_state_id",
        kind: Kind::Text,
    },
    Column {
        name: "student_number",
        kind: Kind::Text,
    },
    Column {
        name: "student_archived_at",
        kind: Kind::Time,
    },
    Column {
        name: "district_name",
        kind: Kind::Dict,
    },
    Column {
        name: "school_sis_id",
        kind: Kind::Dict,
    },
    Column {
        name: "school_name",
        kind: Kind::Dict,
    },
    Column {
        name: "grade",
        kind: Kind::Dict,
    },
    Column {
        name: "teacher_sis_ids",
        kind: Kind::Dict,
    },
    Column {
        name: "teacher_names",
        kind: Kind::Dict,
    },
    Column {
        name: "subject",
        kind: Kind::Dict,
    },
    Column {
        name: "domain",
        kind: Kind::Dict,
    },
    Column {
        name: "period_start",
        kind: Kind::Time,
    },
    Column {
        name: "period_end",
        kind: Kind::Time,
    },
    Column {
        name: "starting_level",
        kind: Kind::Float,
    },
    Column {
        name: "starting_level_at",
        kind: Kind::Time,
    },
    Column {
        name: "current_level",
        kind: Kind::Float,
    },
    Column {
        name: "current_level_at",
        kind: Kind::Time,
    },
    Column {
        name: "level_growth",
        kind: Kind::Float,
    },
    Column {
        name: "sessions",
        kind: Kind::Int,
    },
    Column {
        name: "questions",
        kind: Kind::Int,
    },
    Column {
        name: "correct",
        kind: Kind::Int,
    },
    Column {
        name: "accuracy",
        kind: Kind::Float,
    },
    Column {
        name: "minutes",
        kind: Kind::Int,
    },
    Column {
        name: "last_active_at",
        kind: Kind::Time,
    },
];

/// A page of the district's students, in id order, with their school.
pub(crate) const STUDENTS_SQL: &str = "\
SELECT s.id, s.source_id, s.sis_id, s.state_id, s.student_number, s.grade, s.archived_at, \
       sc.sis_id, sc.name \
FROM students s LEFT JOIN schools sc ON sc.id = s.school_id \
WHERE s.district_id = $1 AND s.id > $2 \
ORDER BY s.id LIMIT $3";

/// Practice sessions started in the period, one row each in key order (student, subject, domain),
/// shaped like a sum over one session. The reader folds consecutive sessions of a key.
///
/// This is the SQLite query: its VM spends about 350 ns per group on the `GROUP BY` below, more
/// than streaming the sessions in index order and summing them here until keys reach about ten
/// sessions each, and little less beyond (10M sessions: 3.0 s streamed against 6.5 s grouped at
/// one session per key, 2.7 s against 2.5 s at ten).
const PRACTICE_SESSIONS_SQL: &str = "\
SELECT s.id, p.subject, p.domain, 1, p.minutes, p.questions, p.correct, p.started_at \
FROM students s JOIN practice_sessions p ON p.student_id = s.id \
WHERE s.district_id = $1 AND s.id >= $2 AND s.id <= $3 \
  AND p.started_at >= $4 AND p.started_at < $5 \
ORDER BY s.id, p.subject, p.domain";

/// The same rows summed per key by the server: what a PostgreSQL connection carries, so only one
/// row per key crosses it.
const PRACTICE_SUMS_SQL: &str = "\
SELECT s.id, p.subject, p.domain, COUNT(*), CAST(SUM(p.minutes) AS BIGINT), \
       CAST(SUM(p.questions) AS BIGINT), CAST(SUM(p.correct) AS BIGINT), MAX(p.started_at) \
FROM students s JOIN practice_sessions p ON p.student_id = s.id \
WHERE s.district_id = $1 AND s.id >= $2 AND s.id <= $3 \
  AND p.started_at >= $4 AND p.started_at < $5 \
GROUP BY s.id, p.subject, p.domain \
ORDER BY s.id, p.subject, p.domain";

/// Level measurements before the period end, oldest first per student, subject and domain.
const LEVELS_SQL: &str = "\
SELECT s.id, l.subject, l.domain, l.measured_at, l.level \
FROM students s JOIN domain_levels l ON l.student_id = s.id \
WHERE s.district_id = $1 AND s.id >= $2 AND s.id <= $3 AND l.measured_at < $4 \
ORDER BY s.id, l.subject, l.domain, l.measured_at";

/// The classes each student belongs to at the as-of instant.
const MEMBERSHIPS_SQL: &str = "\
SELECT s.id, cs.class_id \
FROM students s JOIN class_students cs ON cs.student_id = s.id \
WHERE s.district_id = $1 AND s.id >= $2 AND s.id <= $3 \
  AND cs.started_at <= $4 AND (cs.ended_at IS NULL OR cs.ended_at > $4) \
ORDER BY s.id, cs.class_id";

/// The district's classes with their teachers at the as-of instant, primary teachers first.
const CLASS_TEACHERS_SQL: &str = "\
SELECT c.id, c.subject, t.sis_id, t.first_name, t.last_name, ct.role \
FROM classes c \
JOIN class_teachers ct ON ct.class_id = c.id \
JOIN teachers t ON t.id = ct.teacher_id \
WHERE c.district_id = $1 AND ct.started_at <= $2 AND (ct.ended_at IS NULL OR ct.ended_at > $2) \
ORDER BY c.id, CASE WHEN ct.role = 'primary' THEN 0 ELSE 1 END, t.last_name, t.first_name, t.id";

/// A student as the growth rows show them.
#[derive(Debug)]
pub(crate) struct Student {
    pub id: i64,
    pub source_id: Option<String>,
    pub sis_id: Option<String>,
    pub state_id: Option<String>,
    pub student_number: Option<String>,
    pub grade: Option<String>,
    pub archived_at: Option<i64>,
    pub school_sis_id: Option<String>,
    pub school_name: Option<String>,
}

impl Student {
    pub fn from_row(row: &Row<'_>) -> Result<Student, ExportError> {
        Ok(Student {
            id: row.int(0)?.unwrap_or_default(),
            source_id: row.string(1)?,
            sis_id: row.string(2)?,
            state_id: row.string(3)?,
            student_number: row.string(4)?,
            grade: row.string(5)?,
            archived_at: row.text(6)?.and_then(micros),
            school_sis_id: row.string(7)?,
            school_name: row.string(8)?,
        })
    }
}

/// Practice summed over sessions.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    sessions: i64,
    minutes: i64,
    questions: i64,
    correct: i64,
    last_active: Option<i64>,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.sessions += other.sessions;
        self.minutes += other.minutes;
        self.questions += other.questions;
        self.correct += other.correct;
        self.last_active = self.last_active.max(other.last_active);
    }
}

/// A student's practice in one subject and domain.
#[derive(Debug)]
struct Practice {
    student: i64,
    subject: Name,
    domain: Name,
    totals: Totals,
}

#[derive(Debug)]
struct Level {
    student: i64,
    subject: Name,
    domain: Name,
    at: i64,
    level: f64,
}

#[derive(Debug, Default)]
struct ClassInfo {
    subject: Option<String>,
    /// (SIS id, "First Last", primary), primary teachers first.
    teachers: Vec<(Option<String>, String, bool)>,
}

/// How many rows of each kind the last chunk held.
#[derive(Debug, Default, Clone, Copy)]
struct Capacity {
    practice: usize,
    levels: usize,
    memberships: usize,
}

/// What the reader sends the encoder: a page of students and everything their rows need.
pub(crate) struct Chunk {
    students: Vec<Student>,
    practice: Vec<Practice>,
    levels: Vec<Level>,
    memberships: Vec<(i64, i64)>,
    classes: Arc<HashMap<i64, ClassInfo>>,
    subjects: Arc<Vec<Box<str>>>,
    domains: Arc<Vec<Box<str>>>,
}

/// A subject or domain, by its number in the reader's [`Names`].
type Name = usize;

/// The subjects (or domains) seen so far, numbered in order of first sight. Rows carry numbers,
/// not strings: nothing is copied per row, and no reference count is touched per row by both the
/// reader and the encoder thread. Rows come in key order, so a text is often the one before:
/// that one is checked first.
#[derive(Default)]
struct Names {
    numbers: FxHashMap<Box<str>, Name>,
    /// Texts by number, shared with the encoder (copied if one is added while it holds them).
    texts: Arc<Vec<Box<str>>>,
    last: Option<Name>,
}

impl Names {
    fn number(&mut self, text: &str) -> Name {
        if let Some(last) = self.last
            && *self.texts[last] == *text
        {
            return last;
        }
        let number = match self.numbers.get(text) {
            Some(&number) => number,
            None => {
                let number = self.texts.len();
                Arc::make_mut(&mut self.texts).push(text.into());
                self.numbers.insert(text.into(), number);
                number
            }
        };
        self.last = Some(number);
        number
    }
}

/// Appends a key's practice, or adds it to the last row when that is the same key: sessions
/// streamed in key order become one row per key.
fn add_practice(practice: &mut Vec<Practice>, row: Practice) {
    match practice.last_mut() {
        Some(last)
            if (last.student, last.subject, last.domain)
                == (row.student, row.subject, row.domain) =>
        {
            last.totals.add(row.totals)
        }
        _ => practice.push(row),
    }
}

/// The reader thread: pages through the district's students and sends chunks.
pub(crate) fn read(
    source: &mut Source,
    job: &Job,
    sender: mpsc::Sender<Chunk>,
) -> Result<(), ReadStop> {
    let district = job.district.id;
    let as_of = db_timestamp(job.as_of);
    let start = db_timestamp(job.period.start);
    let end = db_timestamp(job.period.end);

    let mut classes: HashMap<i64, ClassInfo> = HashMap::new();
    source.query(
        "class teachers",
        CLASS_TEACHERS_SQL,
        &[Param::Int(district), Param::Text(as_of.clone())],
        |row| {
            let class = classes.entry(row.int(0)?.unwrap_or_default()).or_default();
            class.subject = row.string(1)?;
            let name = [row.text(3)?, row.text(4)?]
                .into_iter()
                .flatten()
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            class
                .teachers
                .push((row.string(2)?, name, row.text(5)? == Some("primary")));
            Ok(())
        },
    )?;
    let classes = Arc::new(classes);

    let practice_sql = if source.in_process() {
        PRACTICE_SESSIONS_SQL
    } else {
        PRACTICE_SUMS_SQL
    };
    let (mut subjects, mut domains) = (Names::default(), Names::default());
    // The next chunk is sized like the last: its vectors rarely grow.
    let mut capacity = Capacity::default();
    let mut after = 0i64;
    loop {
        let mut students = Vec::new();
        source.query(
            "students",
            STUDENTS_SQL,
            &[
                Param::Int(district),
                Param::Int(after),
                Param::Int(job.chunk_students),
            ],
            |row| {
                students.push(Student::from_row(row)?);
                Ok(())
            },
        )?;
        let (Some(first), Some(last)) = (students.first(), students.last()) else {
            return Ok(());
        };
        let (first, last) = (first.id, last.id);
        after = last;
        let range = [Param::Int(district), Param::Int(first), Param::Int(last)];

        let mut practice: Vec<Practice> = Vec::with_capacity(capacity.practice);
        let mut params = range.to_vec();
        params.extend([Param::Text(start.clone()), Param::Text(end.clone())]);
        source.query("practice sessions", practice_sql, &params, |row| {
            let student = row.int(0)?.unwrap_or_default();
            let (subject, domain) = (
                row.text(1)?.unwrap_or_default(),
                row.text(2)?.unwrap_or_default(),
            );
            let totals = Totals {
                sessions: row.int(3)?.unwrap_or_default(),
                minutes: row.int(4)?.unwrap_or_default(),
                questions: row.int(5)?.unwrap_or_default(),
                correct: row.int(6)?.unwrap_or_default(),
                last_active: row.text(7)?.and_then(micros),
            };
            let row = Practice {
                student,
                subject: subjects.number(subject),
                domain: domains.number(domain),
                totals,
            };
            add_practice(&mut practice, row);
            Ok(())
        })?;

        let mut levels = Vec::with_capacity(capacity.levels);
        let mut params = range.to_vec();
        params.push(Param::Text(end.clone()));
        source.query("domain levels", LEVELS_SQL, &params, |row| {
            let Some(at) = row.text(3)?.and_then(micros) else {
                return Ok(());
            };
            levels.push(Level {
                student: row.int(0)?.unwrap_or_default(),
                subject: subjects.number(row.text(1)?.unwrap_or_default()),
                domain: domains.number(row.text(2)?.unwrap_or_default()),
                at,
                level: row.real(4)?.unwrap_or_default(),
            });
            Ok(())
        })?;

        let mut memberships = Vec::with_capacity(capacity.memberships);
        let mut params = range.to_vec();
        params.push(Param::Text(as_of.clone()));
        source.query("class memberships", MEMBERSHIPS_SQL, &params, |row| {
            memberships.push((
                row.int(0)?.unwrap_or_default(),
                row.int(1)?.unwrap_or_default(),
            ));
            Ok(())
        })?;

        capacity = Capacity {
            practice: practice.len(),
            levels: levels.len(),
            memberships: memberships.len(),
        };
        let chunk = Chunk {
            students,
            practice,
            levels,
            memberships,
            classes: classes.clone(),
            subjects: subjects.texts.clone(),
            domains: domains.texts.clone(),
        };
        sender
            .blocking_send(chunk)
            .map_err(|_| ReadStop::EncoderGone)?;
    }
}

/// Per subject and domain, what a student did and reached.
#[derive(Debug, Default)]
struct Growth {
    practice: Totals,
    /// Latest level measured at or before the period start.
    baseline: Option<(i64, f64)>,
    /// First level measured in the period.
    first: Option<(i64, f64)>,
    /// Latest level measured before the period end.
    current: Option<(i64, f64)>,
}

impl Growth {
    /// Takes in a level measurement, in any order (the SQL orders them as text, which is time
    /// order only for timestamps in the canonical form).
    fn measured(&mut self, at: i64, level: f64, period_start: i64) {
        let measured = Some((at, level));
        let later = |kept: Option<(i64, f64)>| kept.is_none_or(|(kept, _)| at >= kept);
        if at <= period_start {
            if later(self.baseline) {
                self.baseline = measured;
            }
        } else if self.first.is_none_or(|(first, _)| at < first) {
            self.first = measured;
        }
        if later(self.current) {
            self.current = measured;
        }
    }

    fn starting(&self) -> Option<(i64, f64)> {
        self.baseline.or(self.first)
    }
}

/// One output row, borrowing from the chunk.
struct GrowthRow<'a> {
    student: &'a Student,
    district_name: &'a str,
    teachers: &'a (String, String),
    subject: &'a str,
    domain: &'a str,
    period: (i64, i64),
    growth: &'a Growth,
}

impl Cells for GrowthRow<'_> {
    fn cell(&self, column: usize) -> Value<'_> {
        let s = self.student;
        let g = self.growth;
        let p = &g.practice;
        match column {
            0 => Value::Text(text(&s.source_id)),
            1 => Value::Text(text(&s.sis_id)),
            2 => Value::Text(text(&s.state_id)),
            3 => Value::Text(text(&s.student_number)),
            4 => Value::Time(s.archived_at),
            5 => Value::Text(non_empty(self.district_name)),
            6 => Value::Text(text(&s.school_sis_id)),
            7 => Value::Text(text(&s.school_name)),
            8 => Value::Text(text(&s.grade)),
            9 => Value::Text(non_empty(&self.teachers.0)),
            10 => Value::Text(non_empty(&self.teachers.1)),
            11 => Value::Text(Some(self.subject)),
            12 => Value::Text(Some(self.domain)),
            13 => Value::Time(Some(self.period.0)),
            14 => Value::Time(Some(self.period.1)),
            15 => Value::Float(g.starting().map(|(_, l)| l)),
            16 => Value::Time(g.starting().map(|(at, _)| at)),
            17 => Value::Float(g.current.map(|(_, l)| l)),
            18 => Value::Time(g.current.map(|(at, _)| at)),
            19 => Value::Float(match (g.starting(), g.current) {
                (Some((_, from)), Some((_, to))) => Some(round_level(to - from)),
                _ => None,
            }),
            20 => Value::Int(Some(p.sessions)),
            21 => Value::Int(Some(p.questions)),
            22 => Value::Int(Some(p.correct)),
            23 => Value::Float((p.questions > 0).then(|| p.correct as f64 / p.questions as f64)),
            24 => Value::Int(Some(p.minutes)),
            25 => Value::Time(p.last_active),
            _ => Value::Text(None),
        }
    }
}

fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

/// Level differences are reported to 1/1000 of a grade, without float noise (3.3 - 3.1).
fn round_level(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Whether a class's subject (Clever's subject enum, free text in practice) is the practice
/// subject `subject` (`math` or `ela`).
fn same_subject(subject: &str, class_subject: Option<&str>) -> bool {
    let Some(class_subject) = class_subject else {
        return false;
    };
    let class_subject = class_subject.to_ascii_lowercase();
    match subject {
        "math" => class_subject == "math" || class_subject.starts_with("math"),
        "ela" => matches!(
            class_subject.as_str(),
            "english/language arts" | "ela" | "english" | "reading" | "language arts"
        ),
        _ => false,
    }
}

/// The student's teachers for `subject`: those of the classes of that subject, or, if none is,
/// of all their classes. SIS ids and names, `; `-separated, primary teachers first.
fn teachers(
    subject: &str,
    class_ids: &[i64],
    classes: &HashMap<i64, ClassInfo>,
) -> (String, String) {
    let mine: Vec<&ClassInfo> = class_ids.iter().filter_map(|id| classes.get(id)).collect();
    let matching: Vec<&ClassInfo> = mine
        .iter()
        .copied()
        .filter(|c| same_subject(subject, c.subject.as_deref()))
        .collect();
    let chosen = if matching.is_empty() { mine } else { matching };
    let mut list: Vec<&(Option<String>, String, bool)> =
        chosen.iter().flat_map(|c| c.teachers.iter()).collect();
    list.sort_by_key(|t| !t.2);
    let mut seen = HashSet::new();
    list.retain(|t| seen.insert((&t.0, &t.1)));
    let ids = list
        .iter()
        .filter_map(|t| t.0.as_deref())
        .collect::<Vec<_>>()
        .join("; ");
    let names = list
        .iter()
        .map(|t| t.1.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    (ids, names)
}

/// Teacher strings by class set, then subject.
type TeacherCache = FxHashMap<Vec<i64>, Vec<(Name, Arc<(String, String)>)>>;

/// The encoder thread: turns chunks into growth rows and writes them.
pub(crate) fn encode(
    mut receiver: mpsc::Receiver<Chunk>,
    output: Output,
    settings: &Settings,
    job: &Job,
) -> Result<Written, ExportError> {
    let mut writer = BatchWriter::new(output, settings)?;
    let period = (
        job.period.start.timestamp_micros(),
        job.period.end.timestamp_micros(),
    );
    let district_name = job.district.name.as_str();
    // Classmates share their teachers: the strings are built once per subject and class set
    // (and, being the same strings, cost the dictionary columns no hashing).
    let mut teacher_cache = TeacherCache::default();
    while let Some(chunk) = receiver.blocking_recv() {
        if teacher_cache.len() > 100_000 {
            teacher_cache.clear();
        }
        let (mut practice, mut levels, mut memberships) = (
            chunk.practice.as_slice(),
            chunk.levels.as_slice(),
            chunk.memberships.as_slice(),
        );
        let (subjects, domains) = (chunk.subjects.as_slice(), chunk.domains.as_slice());
        for student in &chunk.students {
            let rows = student_growth(
                take_student(&mut practice, student.id, |r| r.student),
                take_student(&mut levels, student.id, |r| r.student),
                period.0,
                (subjects, domains),
            );
            let class_ids: Vec<i64> = take_student(&mut memberships, student.id, |m| m.0)
                .iter()
                .map(|m| m.1)
                .collect();
            let mut by_subject: Vec<(Name, Arc<(String, String)>)> = Vec::new();
            for &(subject, domain, ref growth) in &rows {
                let index = match by_subject.iter().position(|(s, _)| *s == subject) {
                    Some(index) => index,
                    None => {
                        let cached = teacher_cache
                            .get(class_ids.as_slice())
                            .and_then(|v| v.iter().find(|(s, _)| *s == subject))
                            .map(|(_, found)| found.clone());
                        let found = cached.unwrap_or_else(|| {
                            let text = &subjects[subject];
                            let found = Arc::new(teachers(text, &class_ids, &chunk.classes));
                            teacher_cache
                                .entry(class_ids.clone())
                                .or_default()
                                .push((subject, found.clone()));
                            found
                        });
                        by_subject.push((subject, found));
                        by_subject.len() - 1
                    }
                };
                writer.push(&GrowthRow {
                    student,
                    district_name,
                    teachers: &by_subject[index].1,
                    subject: &subjects[subject],
                    domain: &domains[domain],
                    period,
                    growth,
                })?;
            }
        }
    }
    writer.close()
}

/// Splits the rows of `student` off the front of `rows` (sorted by student id), dropping any
/// rows of earlier students.
fn take_student<'a, T>(rows: &mut &'a [T], student: i64, id: impl Fn(&T) -> i64) -> &'a [T] {
    let from = rows.partition_point(|row| id(row) < student);
    let (mine, rest) =
        rows[from..].split_at(rows[from..].partition_point(|row| id(row) == student));
    *rows = rest;
    mine
}

/// One student's growth per subject and domain, in the order of their texts.
fn student_growth(
    practice: &[Practice],
    levels: &[Level],
    period_start: i64,
    (subjects, domains): (&[Box<str>], &[Box<str>]),
) -> Vec<(Name, Name, Growth)> {
    fn entry(rows: &mut Vec<(Name, Name, Growth)>, subject: Name, domain: Name) -> &mut Growth {
        let at = match rows
            .iter()
            .rposition(|&(s, d, _)| (s, d) == (subject, domain))
        {
            Some(at) => at,
            None => {
                rows.push((subject, domain, Growth::default()));
                rows.len() - 1
            }
        };
        &mut rows[at].2
    }
    let mut rows = Vec::with_capacity(practice.len());
    for row in practice {
        entry(&mut rows, row.subject, row.domain)
            .practice
            .add(row.totals);
    }
    for row in levels {
        entry(&mut rows, row.subject, row.domain).measured(row.at, row.level, period_start);
    }
    rows.sort_by_key(|&(s, d, _)| (&subjects[s], &domains[d]));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_clever_class_subjects() {
        assert!(same_subject("math", Some("math")));
        assert!(same_subject("ela", Some("english/language arts")));
        assert!(!same_subject("ela", Some("language")));
        assert!(!same_subject("math", Some("science")));
        assert!(!same_subject("math", None));
    }

    #[test]
    fn teachers_prefer_the_subject_and_put_primaries_first() {
        let mut classes = HashMap::new();
        classes.insert(
            1,
            ClassInfo {
                subject: Some("math".into()),
                teachers: vec![
                    (Some("T2".into()), "Co Teacher".into(), false),
                    (Some("T1".into()), "Main Teacher".into(), true),
                ],
            },
        );
        classes.insert(
            2,
            ClassInfo {
                subject: Some("science".into()),
                teachers: vec![(Some("T3".into()), "Sci Teacher".into(), true)],
            },
        );
        assert_eq!(
            teachers("math", &[1, 2], &classes),
            ("T1; T2".into(), "Main Teacher; Co Teacher".into())
        );
        // No ELA class: every current teacher.
        assert_eq!(teachers("ela", &[1, 2], &classes).0, "T1; T3; T2");
    }

    #[test]
    fn names_are_numbered_once() {
        let mut names = Names::default();
        let math = names.number("math");
        assert_eq!(names.number("math"), math, "the last text");
        let ela = names.number("ela");
        assert_ne!(ela, math);
        assert_eq!(names.number("math"), math, "an earlier text");
        assert_eq!(&*names.texts[ela], "ela");
        // The encoder's copy stays as it was when a name is added.
        let sent = names.texts.clone();
        names.number("science");
        assert_eq!((sent.len(), names.texts.len()), (2, 3));
    }

    #[test]
    fn streamed_sessions_become_one_row_per_key() {
        let session = |student, subject, domain, last| Practice {
            student,
            subject,
            domain,
            totals: Totals {
                sessions: 1,
                minutes: 10,
                questions: 4,
                correct: 3,
                last_active: Some(last),
            },
        };
        let mut practice = Vec::new();
        for row in [
            session(1, 0, 0, 10),
            session(1, 0, 0, 30),
            session(1, 0, 1, 20),
            session(2, 0, 1, 40),
            session(2, 0, 1, 5),
        ] {
            add_practice(&mut practice, row);
        }
        let keys: Vec<(i64, Name, i64, Option<i64>)> = practice
            .iter()
            .map(|p| (p.student, p.domain, p.totals.sessions, p.totals.last_active))
            .collect();
        assert_eq!(
            keys,
            [
                (1, 0, 2, Some(30)),
                (1, 1, 1, Some(20)),
                (2, 1, 2, Some(40))
            ]
        );
        assert_eq!(practice[0].totals.minutes, 20);
    }

    #[test]
    fn a_student_takes_only_their_own_rows() {
        let rows = [(1, 'a'), (3, 'b'), (3, 'c'), (4, 'd')];
        let mut rest = &rows[..];
        assert_eq!(take_student(&mut rest, 2, |r| r.0), &[]);
        assert_eq!(take_student(&mut rest, 3, |r| r.0), &[(3, 'b'), (3, 'c')]);
        assert_eq!(rest, &[(4, 'd')]);
        assert_eq!(take_student(&mut rest, 5, |r| r.0), &[]);
        assert!(rest.is_empty());
    }

    #[test]
    fn growth_sums_practice_and_reads_levels_per_subject_and_domain() {
        // Numbered in another order than the texts sort in.
        let (mut subjects, mut domains) = (Names::default(), Names::default());
        let (math, ela) = (subjects.number("math"), subjects.number("ela"));
        let (shapes, words) = (domains.number("Geometry"), domains.number("Vocabulary"));
        let totals = |sessions, last| Totals {
            sessions,
            minutes: 10 * sessions,
            questions: 5 * sessions,
            correct: 4 * sessions,
            last_active: Some(last),
        };
        let practice = |subject, domain, totals| Practice {
            student: 7,
            subject,
            domain,
            totals,
        };
        let level = |domain, at, level| Level {
            student: 7,
            subject: math,
            domain,
            at,
            level,
        };
        // A key in two rows and keys out of order: sums add up, rows come out in (subject,
        // domain) order.
        let practice = [
            practice(math, shapes, totals(2, 50)),
            practice(ela, words, totals(1, 40)),
            practice(math, shapes, totals(1, 30)),
        ];
        // Period starts at 100: baselines at 80 and 90, then two measurements in the period,
        // not in time order.
        let levels = [
            level(shapes, 150, 2.5),
            level(shapes, 90, 2.0),
            level(shapes, 120, 2.4),
            level(shapes, 80, 1.9),
            level(words, 130, 1.0),
        ];
        let names = (subjects.texts.as_slice(), domains.texts.as_slice());
        let rows = student_growth(&practice, &levels, 100, names);
        let keys: Vec<(&str, &str)> = rows
            .iter()
            .map(|&(s, d, _)| (&*names.0[s], &*names.1[d]))
            .collect();
        assert_eq!(
            keys,
            [
                ("ela", "Vocabulary"),
                ("math", "Geometry"),
                ("math", "Vocabulary")
            ]
        );
        let geometry = &rows[1].2;
        assert_eq!(geometry.practice.sessions, 3);
        assert_eq!(geometry.practice.minutes, 30);
        assert_eq!(geometry.practice.last_active, Some(50));
        assert_eq!(geometry.starting(), Some((90, 2.0)));
        assert_eq!(geometry.first, Some((120, 2.4)));
        assert_eq!(geometry.current, Some((150, 2.5)));
        // No baseline: the first measurement in the period is the start.
        let vocabulary = &rows[2].2;
        assert_eq!(vocabulary.practice.sessions, 0);
        assert_eq!(vocabulary.starting(), Some((130, 1.0)));
    }

    #[test]
    fn every_column_hands_out_its_kind() {
        let student = Student {
            id: 1,
            source_id: Some("c".into()),
            sis_id: Some("s".into()),
            state_id: None,
            student_number: None,
            grade: Some("3".into()),
            archived_at: None,
            school_sis_id: None,
            school_name: None,
        };
        let teachers = (String::new(), String::new());
        let growth = Growth::default();
        let row = GrowthRow {
            student: &student,
            district_name: "d",
            teachers: &teachers,
            subject: "math",
            domain: "Geometry",
            period: (0, 1),
            growth: &growth,
        };
        for (i, column) in COLUMNS.iter().enumerate() {
            let ok = matches!(
                (column.kind, row.cell(i)),
                (Kind::Text | Kind::Dict, Value::Text(_))
                    | (Kind::Int, Value::Int(_))
                    | (Kind::Float, Value::Float(_))
                    | (Kind::Time, Value::Time(_))
            );
            assert!(ok, "column {} hands out the wrong kind", column.name);
        }
    }
}
