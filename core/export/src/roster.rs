//! The `roster_history` dataset: one row per student x class x teacher stay, so growth can be
//! attributed to the right class, teacher and school after transfers.
//!
//! A row's `valid_from` / `valid_to` is the intersection of the student's stay in the class and
//! the teacher's stay in it (`valid_to` empty while both are still open). A stay with no teacher
//! overlapping it gives one row without teacher columns. Rows are those whose valid range
//! overlaps the period; archived students and classes keep their rows.

use tokio::sync::mpsc;

use super::ExportError;
use super::file::{
    BatchWriter, Cells, Column, Kind, Output, Settings, Value, Written, micros, text,
};
use super::source::{Job, Param, ReadStop, Source};
use rosterflow_store::db::timestamp as db_timestamp;

/// The roster history columns, in file order. The data dictionary is in `pipelines/README.md`.
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
        name: "grade",
        kind: Kind::Dict,
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
        name: "class_source_id",
        kind: Kind::Dict,
    },
    Column {
        name: "class_sis_id",
        kind: Kind::Dict,
    },
    Column {
        name: "class_name",
        kind: Kind::Dict,
    },
    Column {
        name: "class_subject",
        kind: Kind::Dict,
    },
    Column {
        name: "class_period",
        kind: Kind::Dict,
    },
    Column {
        name: "membership_source",
        kind: Kind::Dict,
    },
    Column {
        name: "teacher_source_id",
        kind: Kind::Dict,
    },
    Column {
        name: "teacher_sis_id",
        kind: Kind::Dict,
    },
    Column {
        name: "teacher_name",
        kind: Kind::Dict,
    },
    Column {
        name: "teacher_role",
        kind: Kind::Dict,
    },
    Column {
        name: "valid_from",
        kind: Kind::Time,
    },
    Column {
        name: "valid_to",
        kind: Kind::Time,
    },
];

/// A page of the district's student ids.
const STUDENT_IDS_SQL: &str = "\
SELECT s.id FROM students s WHERE s.district_id = $1 AND s.id > $2 ORDER BY s.id LIMIT $3";

/// The stays of a page of students in classes, each joined with the teacher stays that overlap
/// it (stays are half-open: `[started_at, ended_at)`, an open end sorting after every instant).
const STAYS_SQL: &str = "\
SELECT s.source_id, s.sis_id, s.state_id, s.student_number, s.archived_at, s.grade, \
       sc.sis_id, sc.name, c.source_id, c.sis_id, c.name, c.subject, c.period, cs.source, \
       t.source_id, t.sis_id, t.first_name, t.last_name, ct.role, \
       cs.started_at, cs.ended_at, ct.started_at, ct.ended_at \
FROM students s \
JOIN class_students cs ON cs.student_id = s.id \
JOIN classes c ON c.id = cs.class_id \
LEFT JOIN schools sc ON sc.id = c.school_id \
LEFT JOIN class_teachers ct ON ct.class_id = cs.class_id \
     AND ct.started_at < COALESCE(cs.ended_at, '9999-12-31T23:59:59.999999Z') \
     AND cs.started_at < COALESCE(ct.ended_at, '9999-12-31T23:59:59.999999Z') \
LEFT JOIN teachers t ON t.id = ct.teacher_id \
WHERE s.district_id = $1 AND s.id >= $2 AND s.id <= $3 \
  AND cs.started_at < $4 AND (cs.ended_at IS NULL OR cs.ended_at > $5) \
ORDER BY s.id, cs.started_at, cs.class_id, ct.started_at, ct.teacher_id";

/// One row of the dataset.
#[derive(Debug, Default)]
pub(crate) struct Stay {
    student_source_id: Option<String>,
    student_sis_id: Option<String>,
    student_state_id: Option<String>,
    student_number: Option<String>,
    student_archived_at: Option<i64>,
    grade: Option<String>,
    school_sis_id: Option<String>,
    school_name: Option<String>,
    class_source_id: Option<String>,
    class_sis_id: Option<String>,
    class_name: Option<String>,
    class_subject: Option<String>,
    class_period: Option<String>,
    membership_source: Option<String>,
    teacher_source_id: Option<String>,
    teacher_sis_id: Option<String>,
    teacher_name: Option<String>,
    teacher_role: Option<String>,
    valid_from: i64,
    valid_to: Option<i64>,
}

/// A stay with what every row shares.
struct StayRow<'a> {
    stay: &'a Stay,
    district_name: &'a str,
}

impl Cells for StayRow<'_> {
    fn cell(&self, column: usize) -> Value<'_> {
        let s = self.stay;
        Value::Text(match column {
            0 => text(&s.student_source_id),
            1 => text(&s.student_sis_id),
            2 => text(&s.student_state_id),
            3 => text(&s.student_number),
            4 => return Value::Time(s.student_archived_at),
            5 => text(&s.grade),
            6 => (!self.district_name.is_empty()).then_some(self.district_name),
            7 => text(&s.school_sis_id),
            8 => text(&s.school_name),
            9 => text(&s.class_source_id),
            10 => text(&s.class_sis_id),
            11 => text(&s.class_name),
            12 => text(&s.class_subject),
            13 => text(&s.class_period),
            14 => text(&s.membership_source),
            15 => text(&s.teacher_source_id),
            16 => text(&s.teacher_sis_id),
            17 => text(&s.teacher_name),
            18 => text(&s.teacher_role),
            19 => return Value::Time(Some(s.valid_from)),
            20 => return Value::Time(s.valid_to),
            _ => None,
        })
    }
}

/// What the reader sends the encoder.
pub(crate) struct Chunk {
    stays: Vec<Stay>,
}

/// The reader thread: pages through the district's students and sends their stays.
pub(crate) fn read(
    source: &mut Source,
    job: &Job,
    sender: mpsc::Sender<Chunk>,
) -> Result<(), ReadStop> {
    let district = job.district.id;
    let start = job.period.start.timestamp_micros();
    let end = job.period.end.timestamp_micros();
    let mut after = 0i64;
    loop {
        let mut ids = Vec::new();
        source.query(
            "students",
            STUDENT_IDS_SQL,
            &[
                Param::Int(district),
                Param::Int(after),
                Param::Int(job.chunk_students),
            ],
            |row| {
                ids.push(row.int(0)?.unwrap_or_default());
                Ok(())
            },
        )?;
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            return Ok(());
        };
        after = last;
        let mut stays = Vec::new();
        source.query(
            "class stays",
            STAYS_SQL,
            &[
                Param::Int(district),
                Param::Int(first),
                Param::Int(last),
                Param::Text(db_timestamp(job.period.end)),
                Param::Text(db_timestamp(job.period.start)),
            ],
            |row| {
                let time = |i: usize| -> Result<Option<i64>, ExportError> {
                    Ok(row.text(i)?.and_then(micros))
                };
                let Some(student_from) = time(19)? else {
                    return Ok(());
                };
                let student_to = time(20)?;
                let teacher_from = time(21)?;
                let teacher_to = time(22)?;
                let valid_from = student_from.max(teacher_from.unwrap_or(i64::MIN));
                let valid_to = match (student_to, teacher_to) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                // Only what overlaps the period.
                if valid_from >= end || valid_to.is_some_and(|to| to <= start) {
                    return Ok(());
                }
                let name = [row.text(16)?, row.text(17)?]
                    .into_iter()
                    .flatten()
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                stays.push(Stay {
                    student_source_id: row.string(0)?,
                    student_sis_id: row.string(1)?,
                    student_state_id: row.string(2)?,
                    student_number: row.string(3)?,
                    student_archived_at: time(4)?,
                    grade: row.string(5)?,
                    school_sis_id: row.string(6)?,
                    school_name: row.string(7)?,
                    class_source_id: row.string(8)?,
                    class_sis_id: row.string(9)?,
                    class_name: row.string(10)?,
                    class_subject: row.string(11)?,
                    class_period: row.string(12)?,
                    membership_source: row.string(13)?,
                    teacher_source_id: row.string(14)?,
                    teacher_sis_id: row.string(15)?,
                    teacher_name: Some(name).filter(|n| !n.is_empty()),
                    teacher_role: row.string(18)?,
                    valid_from,
                    valid_to,
                });
                Ok(())
            },
        )?;
        sender
            .blocking_send(Chunk { stays })
            .map_err(|_| ReadStop::EncoderGone)?;
    }
}

/// The encoder thread: writes the stays.
pub(crate) fn encode(
    mut receiver: mpsc::Receiver<Chunk>,
    output: Output,
    settings: &Settings,
    job: &Job,
) -> Result<Written, ExportError> {
    let mut writer = BatchWriter::new(output, settings)?;
    let district_name = job.district.name.as_str();
    while let Some(chunk) = receiver.blocking_recv() {
        for stay in &chunk.stays {
            writer.push(&StayRow {
                stay,
                district_name,
            })?;
        }
    }
    writer.close()
}
