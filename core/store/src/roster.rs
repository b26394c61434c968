//! Edits Freckle users make by hand, and the rules that guard them: a class managed by Clever
//! has a locked roster (it follows the SIS), yet any teacher may share a student with another
//! teacher. Manual memberships and shares are never touched by a sync, which owns only `sis`
//! and `plugin:` memberships.
//!
//! Students, teachers and classes are named by Clever id or SIS id, within one district.

use chrono::Utc;
use sqlx::AssertSqlSafe;

use crate::db::{Db, timestamp};

/// Why a manual edit was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error(
        "class {class} ({name}) is managed by Clever: its roster follows the SIS and cannot be edited in Freckle. Ask your Clever administrator to change it in the SIS, or share the student with a teacher instead (`rosterflow share`)"
    )]
    Locked { class: String, name: String },
    #[error("no {kind} {id} in district {district}")]
    NotFound {
        kind: &'static str,
        id: String,
        district: String,
    },
    #[error("{id} names more than one {kind} in district {district}: use the Clever id")]
    Ambiguous {
        kind: &'static str,
        id: String,
        district: String,
    },
    #[error("student {student} is not in class {class}")]
    NotMember { student: String, class: String },
    #[error("student {student} is not shared with teacher {teacher}")]
    NotShared { student: String, teacher: String },
    #[error("database error while {step}")]
    Sql {
        step: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

fn sql(step: &'static str) -> impl FnOnce(sqlx::Error) -> RosterError {
    move |source| RosterError::Sql { step, source }
}

/// Whether an edit added something new or found it already in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    AlreadySo,
}

impl Outcome {
    /// The outcome of an insert that does nothing when the row is already there.
    fn of_insert(result: &sqlx::any::AnyQueryResult) -> Outcome {
        if result.rows_affected() == 1 {
            Outcome::Done
        } else {
            Outcome::AlreadySo
        }
    }
}

/// Finds the row id of a student, teacher or class by Clever id, or else by SIS id, in a district.
pub async fn find(
    db: &Db,
    table: &'static str,
    kind: &'static str,
    district: &str,
    id: &str,
) -> Result<i64, RosterError> {
    for column in ["source_id", "sis_id"] {
        let ids: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT t.id FROM {table} t JOIN districts d ON d.id = t.district_id \
             WHERE d.key = $1 AND t.{column} = $2"
        )))
        .bind(district)
        .bind(id)
        .fetch_all(&db.pool)
        .await
        .map_err(sql("looking a record up"))?;
        match ids.as_slice() {
            [] => continue,
            [only] => return Ok(*only),
            [..] => {
                return Err(RosterError::Ambiguous {
                    kind,
                    id: id.to_owned(),
                    district: district.to_owned(),
                });
            }
        }
    }
    Err(RosterError::NotFound {
        kind,
        id: id.to_owned(),
        district: district.to_owned(),
    })
}

/// Refuses an edit to a class whose roster Clever manages.
async fn unlocked_class(db: &Db, district: &str, class: &str) -> Result<i64, RosterError> {
    let id = find(db, "classes", "class", district, class).await?;
    let (managed_by, name): (String, String) =
        sqlx::query_as("SELECT managed_by, name FROM classes WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .map_err(sql("reading the class"))?;
    if managed_by == "sis" {
        return Err(RosterError::Locked {
            class: class.to_owned(),
            name,
        });
    }
    Ok(id)
}

/// Adds a student to a manually managed class.
pub async fn add_student(
    db: &Db,
    district: &str,
    class: &str,
    student: &str,
) -> Result<Outcome, RosterError> {
    let class_id = unlocked_class(db, district, class).await?;
    let student_id = find(db, "students", "student", district, student).await?;
    let inserted = sqlx::query(
        "INSERT INTO class_students (class_id, student_id, source, started_at) VALUES ($1, $2, 'manual', $3) \
         ON CONFLICT (class_id, student_id) WHERE ended_at IS NULL DO NOTHING",
    )
    .bind(class_id)
    .bind(student_id)
    .bind(timestamp(Utc::now()))
    .execute(&db.pool)
    .await
    .map_err(sql("adding the student"))?;
    Ok(Outcome::of_insert(&inserted))
}

/// Removes a student from a manually managed class (the stay ends; history stays).
pub async fn remove_student(
    db: &Db,
    district: &str,
    class: &str,
    student: &str,
) -> Result<(), RosterError> {
    let class_id = unlocked_class(db, district, class).await?;
    let student_id = find(db, "students", "student", district, student).await?;
    let ended = sqlx::query(
        "UPDATE class_students SET ended_at = $1, ended_reason = 'removed by hand' \
         WHERE class_id = $2 AND student_id = $3 AND ended_at IS NULL",
    )
    .bind(timestamp(Utc::now()))
    .bind(class_id)
    .bind(student_id)
    .execute(&db.pool)
    .await
    .map_err(sql("removing the student"))?;
    if ended.rows_affected() == 0 {
        return Err(RosterError::NotMember {
            student: student.to_owned(),
            class: class.to_owned(),
        });
    }
    Ok(())
}

/// Shares a student with a teacher, from `owner` (the sharing teacher) when given. Works for
/// students in any class, Clever-managed or not.
pub async fn share(
    db: &Db,
    district: &str,
    student: &str,
    teacher: &str,
    owner: Option<&str>,
) -> Result<Outcome, RosterError> {
    let student_id = find(db, "students", "student", district, student).await?;
    let teacher_id = find(db, "teachers", "teacher", district, teacher).await?;
    let owner_id = match owner {
        Some(owner) => Some(find(db, "teachers", "teacher", district, owner).await?),
        None => None,
    };
    let inserted = sqlx::query(
        "INSERT INTO student_shares (student_id, owner_teacher_id, teacher_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (student_id, teacher_id) WHERE revoked_at IS NULL DO NOTHING",
    )
    .bind(student_id)
    .bind(owner_id)
    .bind(teacher_id)
    .bind(timestamp(Utc::now()))
    .execute(&db.pool)
    .await
    .map_err(sql("sharing the student"))?;
    Ok(Outcome::of_insert(&inserted))
}

/// Ends a share.
pub async fn unshare(
    db: &Db,
    district: &str,
    student: &str,
    teacher: &str,
) -> Result<(), RosterError> {
    let student_id = find(db, "students", "student", district, student).await?;
    let teacher_id = find(db, "teachers", "teacher", district, teacher).await?;
    let revoked = sqlx::query(
        "UPDATE student_shares SET revoked_at = $1 WHERE student_id = $2 AND teacher_id = $3 AND revoked_at IS NULL",
    )
    .bind(timestamp(Utc::now()))
    .bind(student_id)
    .bind(teacher_id)
    .execute(&db.pool)
    .await
    .map_err(sql("ending the share"))?;
    if revoked.rows_affected() == 0 {
        return Err(RosterError::NotShared {
            student: student.to_owned(),
            teacher: teacher.to_owned(),
        });
    }
    Ok(())
}
