//! What `rosterflow doctor` reads of the Freckle DB, and how it reads it: read-only, without
//! the district's run lock and without migrating, so that it can look while a run is under way
//! and never changes a byte.
//!
//! It opens the database with [`Db::open_read_only`]: a SQLite file with `mode=ro` (one that
//! does not exist yet is not created: there is nothing to read), a PostgreSQL session whose
//! transactions are read-only from its start.

use crate::db::{Db, DbError};
use crate::runs::RunsError;
use rosterflow_model::Entity;

/// Opens the Freckle DB at `url` for reading only, as it is (see [`Db::open_read_only`]).
pub async fn open_read_only(url: &str) -> Result<Option<Db>, DbError> {
    Db::open_read_only(url).await
}

/// How the database's schema compares with this binary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// The latest migration the binary knows is the latest applied.
    Current,
    /// The database lacks migrations this binary has (an older database: a run migrates it).
    Behind { applied: Option<i64>, binary: i64 },
    /// The database has migrations this binary does not know (a newer rosterflow wrote it).
    Ahead { applied: i64, binary: i64 },
}

impl Schema {
    /// Why the database cannot be judged by this binary; `None` when it can.
    pub fn mismatch(self) -> Option<String> {
        match self {
            Schema::Current => None,
            Schema::Behind { applied, binary } => Some(format!(
                "the Freckle DB's schema is older than this rosterflow's (migration {} applied, {binary} known): a run brings it up to date",
                applied.map_or_else(|| "none".to_owned(), |v| v.to_string())
            )),
            Schema::Ahead { applied, binary } => Some(format!(
                "the Freckle DB's schema is newer than this rosterflow's (migration {applied} applied, {binary} known): use the rosterflow that writes it"
            )),
        }
    }
}

/// Compares the database's latest applied migration with the latest this binary knows (a new
/// PostgreSQL database may have none).
pub async fn check_schema(db: &Db) -> Result<Schema, RunsError> {
    let applied = db
        .applied_migration()
        .await
        .map_err(sql("reading the Freckle DB's migrations"))?;
    let binary = db.backend.latest_migration();
    Ok(match applied {
        Some(applied) if applied == binary => Schema::Current,
        Some(applied) if applied > binary => Schema::Ahead { applied, binary },
        applied => Schema::Behind { applied, binary },
    })
}

fn sql(step: &'static str) -> impl FnOnce(sqlx::Error) -> RunsError {
    move |source| RunsError::Sql { step, source }
}

/// How many live rows a district holds, of the kinds a roster can shrink in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCounts {
    pub schools: i64,
    /// Classes the sync manages (the SIS's and its plugins').
    pub classes: i64,
    pub students: i64,
    /// Teachers the sync manages.
    pub teachers: i64,
}

impl LiveCounts {
    /// The count of `entity`, for the four kinds counted.
    pub fn of(&self, entity: Entity) -> Option<i64> {
        match entity {
            Entity::School => Some(self.schools),
            Entity::Class => Some(self.classes),
            Entity::Student => Some(self.students),
            Entity::Teacher => Some(self.teachers),
            _ => None,
        }
    }
}

/// The filter that keeps the live rows of a table the sync manages (`$1` is the district's key).
fn live_rows_of(entity: Entity) -> Option<(&'static str, &'static str)> {
    // (table, extra condition)
    match entity {
        Entity::School => Some(("schools", "")),
        Entity::Class => Some(("classes", " AND managed_by = 'sis'")),
        Entity::Student => Some(("students", "")),
        Entity::Teacher => Some(("teachers", " AND managed_by = 'sis'")),
        _ => None,
    }
}

/// The live rows of district `key`, by kind; `None` when the district has no row (it never ran).
pub async fn live_counts(db: &Db, key: &str) -> Result<Option<LiveCounts>, RunsError> {
    let count = |entity| {
        let (table, managed) = live_rows_of(entity).expect("a counted kind");
        format!(
            "(SELECT COUNT(*) FROM {table} t WHERE t.district_id = d.id AND t.archived_at IS NULL{managed})"
        )
    };
    let query = format!(
        "SELECT {}, {}, {}, {} FROM districts d WHERE d.key = $1",
        count(Entity::School),
        count(Entity::Class),
        count(Entity::Student),
        count(Entity::Teacher),
    );
    let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(key)
        .fetch_optional(&db.pool)
        .await
        .map_err(sql("counting the district's live rows"))?;
    Ok(
        row.map(|(schools, classes, students, teachers)| LiveCounts {
            schools,
            classes,
            students,
            teachers,
        }),
    )
}

/// A live row, as an example names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRow {
    /// Its key: the record's id at the source.
    pub key: String,
    /// The person's first and last name, or the class's or school's name.
    pub name: String,
    pub sis_id: Option<String>,
}

/// The live rows of one kind (a school, class, student or teacher) of district `key`.
pub async fn live_rows(db: &Db, key: &str, entity: Entity) -> Result<Vec<LiveRow>, RunsError> {
    let Some((table, managed)) = live_rows_of(entity) else {
        return Ok(Vec::new());
    };
    let name = match entity {
        Entity::Student | Entity::Teacher => {
            "COALESCE(t.first_name, '') || ' ' || COALESCE(t.last_name, '')"
        }
        _ => "t.name",
    };
    let query = format!(
        "SELECT t.source_id, {name}, t.sis_id FROM {table} t JOIN districts d ON d.id = t.district_id \
         WHERE d.key = $1 AND t.archived_at IS NULL AND t.source_id IS NOT NULL{managed} ORDER BY t.id"
    );
    let rows: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(key)
            .fetch_all(&db.pool)
            .await
            .map_err(sql("reading the district's live rows"))?;
    Ok(rows
        .into_iter()
        .map(|(key, name, sis_id)| LiveRow {
            key,
            name: name.unwrap_or_default().trim().to_owned(),
            sis_id,
        })
        .collect())
}

/// A record a run quarantined.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QuarantinedRow {
    pub run: i64,
    /// What kind of record it was (`user`, `section`, `section.students`...).
    pub kind: String,
    /// Its id at the source, when it had one.
    pub source_id: Option<String>,
    pub reason: String,
    pub suggested_fix: Option<String>,
    /// Where the source sent it (a file and line), when known.
    pub origin: Option<String>,
}

/// The records quarantined by the last `runs` runs that loaded district `key` (committed or
/// approved, sign-ins aside), newest run first.
pub async fn quarantined(db: &Db, key: &str, runs: i64) -> Result<Vec<QuarantinedRow>, RunsError> {
    sqlx::query_as(
        "SELECT q.run_id AS run, q.kind, q.source_id, q.reason, q.suggested_fix, q.origin \
         FROM quarantine q WHERE q.run_id IN (SELECT r.id FROM sync_runs r \
         JOIN districts d ON d.id = r.district_id WHERE d.key = $1 \
         AND r.status IN ('committed', 'approved') AND COALESCE(r.source_kind, '') <> 'sign-in' \
         ORDER BY r.id DESC LIMIT $2) ORDER BY q.run_id DESC, q.id",
    )
    .bind(key)
    .bind(runs)
    .fetch_all(&db.pool)
    .await
    .map_err(sql("reading quarantined records"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_that_does_not_exist_is_not_created() {
        let file = scratch_file("absent");
        let url = format!("sqlite://{}", file.display());
        assert!(open_read_only(&url).await.expect("opens").is_none());
        assert!(!file.exists(), "nothing was created");
        assert!(
            open_read_only("sqlite::memory:")
                .await
                .expect("opens")
                .is_none()
        );
    }

    #[tokio::test]
    async fn an_existing_database_is_read_and_never_written() {
        let file = scratch_file("existing");
        let url = format!("sqlite://{}", file.display());
        Db::open(&url).await.expect("created").pool.close().await;
        let before = std::fs::read(&file).expect("the file");
        let db = open_read_only(&url)
            .await
            .expect("opens")
            .expect("it exists");
        assert_eq!(check_schema(&db).await.expect("reads"), Schema::Current);
        assert_eq!(live_counts(&db, "d").await.expect("reads"), None);
        assert!(quarantined(&db, "d", 3).await.expect("reads").is_empty());
        let written = sqlx::query("DELETE FROM sync_runs").execute(&db.pool).await;
        assert!(written.is_err(), "a read-only database refuses writes");
        db.pool.close().await;
        assert_eq!(std::fs::read(&file).expect("the file"), before);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }

    #[tokio::test]
    async fn a_database_of_another_version_is_said_to_be() {
        let file = scratch_file("versions");
        let url = format!("sqlite://{}", file.display());
        let db = Db::open(&url).await.expect("created");
        let latest = db.backend.latest_migration();
        sqlx::query("UPDATE _sqlx_migrations SET version = version + 1000000 WHERE version = $1")
            .bind(latest)
            .execute(&db.pool)
            .await
            .expect("a newer migration");
        let schema = check_schema(&db).await.expect("reads");
        assert!(matches!(schema, Schema::Ahead { .. }), "{schema:?}");
        assert!(schema.mismatch().expect("a note").contains("newer"));
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version > $1")
            .bind(latest - 1)
            .execute(&db.pool)
            .await
            .expect("an older schema");
        let schema = check_schema(&db).await.expect("reads");
        assert!(matches!(schema, Schema::Behind { .. }), "{schema:?}");
        assert!(schema.mismatch().expect("a note").contains("older"));
        db.pool.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }

    /// A file name of this test process that no other test uses.
    fn scratch_file(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "rosterflow-doctor-{name}-{}.db",
            std::process::id()
        ))
    }
}
