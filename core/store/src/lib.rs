//! The Freckle DB as the sync reads and writes it: the synced tables (described in
//! [`rosterflow_plan::schema`]), and one implementation per backend that reads a district's
//! [`State`] and applies a plan in one transaction, set-based (prepared statements reused
//! in one transaction on SQLite, `COPY` and array statements on PostgreSQL).
//!
//! A [`Store`] is one run's hold on one district: opening it takes the district's run lock, so
//! at most one run (or approval) of a district writes at a time, across processes and machines
//! (a `flock` beside the SQLite file, a session advisory lock on PostgreSQL; both die with their
//! process). A plan is applied only if the district's last committed run is still the one its
//! state was read at, and every archive and end re-checks that its row is still open.

//!
//! # Layout
//!
//! - [`db`]: opening and migrating the Freckle DB (SQLite or PostgreSQL), timestamps.
//! - this module: a run's hold on a district ([`Store`]): its lock, its state, applying a plan;
//!   one file per backend (`sqlite.rs`, `postgres.rs`).
//! - [`runs`]: run history, held runs and their roster, events checkpoints.
//! - [`report`]: each run's changes and quarantined records, as JSON or CSV.
//! - [`explain`]: why a record is (not) in Freckle, from the decisions and history.
//! - [`doctor`]: what `rosterflow doctor` reads, read-only and without the run lock.
//! - [`roster`]: manual roster edits and shares: Clever-managed rosters are locked, shares are not.
//! - [`transient`]: which database errors may pass on another try.

mod apply;
pub mod db;
pub mod doctor;
pub mod explain;
mod postgres;
pub mod report;
pub mod roster;
pub mod runs;
pub mod sign_in;
mod sqlite;
pub mod transient;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::db::{Backend, Db};
use rosterflow_model::secret::shown_url;
use rosterflow_model::{Entity, Id, SourceKind, is_district_key};
use rosterflow_plan::Plan;
use rosterflow_plan::schema::{self, Record};
use rosterflow_plan::state::{self, State};
use rosterflow_plan::switch::SisRow;

/// Why reading or writing the Freckle DB failed. Messages name the step; when the database
/// itself failed, also the database, never its password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another run of district {district} is in progress: waited {waited_secs} s for it to finish"
    )]
    Busy { district: String, waited_secs: u64 },
    #[error("{key:?} cannot key a district: use 1 to 64 letters, digits, '-' or '_'")]
    BadKey { key: String },
    #[error("the sync needs a SQLite file: an in-memory database cannot be shared")]
    InMemory,
    #[error("cannot lock {path}")]
    Lock {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database error while {step}")]
    Sqlite {
        step: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database error while {step}")]
    Postgres {
        step: String,
        #[source]
        source: sqlx::Error,
    },
    /// The connection to PostgreSQL failed under the run: refused, cut, or ended by the server
    /// (stopped or restarted). The run's transaction is rolled back by the server.
    #[error("the connection to the PostgreSQL database {database} failed while {step}")]
    Connection {
        /// The database's URL, its password hidden.
        database: String,
        step: String,
        #[source]
        source: sqlx::Error,
    },
    /// A SQLite database could not grow: its disk is full or its file at a size limit.
    #[error(
        "the SQLite database {} could not be written while {step}: its disk is full or the file reached a size limit (a disk quota, `ulimit -f`){}",
        file.display(),
        if *certain { "" } else { ", or the disk failed" }
    )]
    Full {
        file: std::path::PathBuf,
        step: String,
        /// SQLite said the disk was full; otherwise only that a write failed, which a full
        /// quota or a file-size limit also look like.
        certain: bool,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the district moved since this plan was computed (planned against run {planned:?}, now at run {now:?}): plan again"
    )]
    Stale {
        planned: Option<i64>,
        now: Option<i64>,
    },
    #[error(
        "{entity}: {found} of {expected} row(s) were still as planned; another writer changed the rest during the run: plan again"
    )]
    Changed {
        entity: Entity,
        expected: u64,
        found: u64,
    },
    #[error("the plan names a {entity} that has no row: nothing was applied")]
    Missing { entity: Entity },
    #[error(
        "{entity} {key} of the district already has a row the sync does not manage (a manual record)"
    )]
    Taken { entity: Entity, key: String },
    #[error("run {run} is {status}, not held: only a held run can be {action}")]
    NotHeld {
        run: i64,
        status: String,
        action: &'static str,
    },
    #[error("the state read back was inconsistent")]
    State(#[from] state::OutOfOrder),
    #[error("a blocking database task failed")]
    Worker(#[from] tokio::task::JoinError),
}

impl StoreError {
    fn sqlite(step: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
        let step = step.into();
        move |source| StoreError::Sqlite { step, source }
    }

    fn postgres(step: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
        let step = step.into();
        move |source| StoreError::Postgres { step, source }
    }

    /// The same error, saying which database failed when it is the database itself that did
    /// (a lost connection, a full disk) rather than what the run asked of it: `database` is
    /// the URL of a PostgreSQL database, the file of a SQLite one.
    fn naming(self, database: &Database) -> StoreError {
        match (self, database) {
            (StoreError::Postgres { step, source }, Database::Postgres(url))
                if connection_failed(&source) =>
            {
                StoreError::Connection {
                    database: url.clone(),
                    step,
                    source,
                }
            }
            (StoreError::Sqlite { step, source }, Database::Sqlite(file)) => {
                match cannot_grow(&source) {
                    Some(certain) => StoreError::Full {
                        file: file.clone(),
                        step,
                        certain,
                        source,
                    },
                    None => StoreError::Sqlite { step, source },
                }
            }
            (error, _) => error,
        }
    }
}

/// Which database a [`Store`] works on, as its errors name it.
#[derive(Debug, Clone)]
enum Database {
    /// The URL, its password hidden.
    Postgres(String),
    Sqlite(std::path::PathBuf),
}

impl StoreError {
    /// Whether the same run may succeed later: the database was lost or busy, its disk full,
    /// or another run committed first (see [`transient`]).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Stale { .. } | StoreError::Connection { .. } | StoreError::Full { .. } => {
                true
            }
            StoreError::Postgres { source, .. } => transient::sqlx_is_transient(source),
            StoreError::Sqlite { source, .. } => transient::rusqlite_is_transient(source),
            _ => false,
        }
    }
}

impl Database {
    fn of(db: &Db) -> Database {
        match db.backend {
            Backend::Postgres => {
                Database::Postgres(shown_url(db.pool.connect_options().database_url.as_str()))
            }
            Backend::Sqlite => Database::Sqlite(db.sqlite_file().unwrap_or_default()),
        }
    }
}

/// Whether PostgreSQL was lost rather than refused a statement: the connection broke (an I/O
/// error, or after a cut what the connection read made no sense: a protocol error), or the
/// server ended the session (SQLSTATE class 57P, operator intervention: a shutdown or
/// restart) or reported a connection exception (class 08). A pool that timed out waiting for
/// a connection says nothing of why (every connection may be busy): it is not one.
fn connection_failed(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
        _ => false,
    }
}

/// Whether SQLite could not write its file for want of room: `Some(true)` when it said the disk
/// was full (`SQLITE_FULL`), `Some(false)` when a write failed (`SQLITE_IOERR_WRITE`, what a
/// full quota or a file-size limit give), `None` for anything else.
fn cannot_grow(error: &rusqlite::Error) -> Option<bool> {
    const SQLITE_IOERR_WRITE: std::ffi::c_int = 778;
    match error {
        rusqlite::Error::SqliteFailure(error, _) if error.code == rusqlite::ErrorCode::DiskFull => {
            Some(true)
        }
        rusqlite::Error::SqliteFailure(error, _) if error.extended_code == SQLITE_IOERR_WRITE => {
            Some(false)
        }
        _ => None,
    }
}

/// How a run is recorded in `sync_runs`.
#[derive(Debug, Clone, Copy)]
pub enum RunRecord<'r> {
    /// A new run of `pipeline`, committed.
    New {
        start: RunStart<'r>,
        source: SourceRun<'r>,
    },
    /// The held run `run`, approved by `by`.
    Approve { run: i64, by: Option<&'r str> },
}

/// Which pipeline a run is of and when it started, recorded with it.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'r> {
    pub pipeline: &'r str,
    pub started_at: DateTime<Utc>,
    /// The scheduled time the run is for (`rosterflow serve`).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Who asked for it: `schedule`, `console:<name>`, `cli:<user>`.
    pub requested_by: Option<&'r str>,
}

/// How a run read its source, recorded with it.
#[derive(Debug, Clone, Copy)]
pub struct SourceRun<'r> {
    /// `full` or `events`.
    pub kind: &'r str,
    /// Why a full pull happened, or what the events were.
    pub note: Option<&'r str>,
    /// For an events sync: where it now stands, saved with the run.
    pub checkpoint: Option<Checkpoint<'r>>,
}

/// An events sync's checkpoint, as stored: the newest event applied and the raw roster as of it.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint<'r> {
    pub cursor: Option<&'r str>,
    pub roster: &'r [u8],
    pub full_sync_at: DateTime<Utc>,
    pub saved_at: DateTime<Utc>,
}

/// What a committed run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub run_id: i64,
    pub changes: usize,
    pub quarantined: usize,
}

/// How a run takes and keeps its district's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// How long to wait for another run of the district to finish before giving up.
    pub wait: Duration,
    /// On PostgreSQL, how long a run may stop answering (a stopped or hung process) before the
    /// server ends its session, which frees the lock and rolls back what the run had begun. On
    /// SQLite the lock is the process's own and dies with it.
    pub lease: Duration,
}

impl LockOptions {
    /// The lease a run gets unless told otherwise.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

    /// Waiting up to `wait`, with the default lease.
    pub fn waiting(wait: Duration) -> LockOptions {
        LockOptions {
            wait,
            lease: LockOptions::DEFAULT_LEASE,
        }
    }
}

impl Default for LockOptions {
    fn default() -> LockOptions {
        LockOptions::waiting(Duration::ZERO)
    }
}

/// Says, once, that a run waits for another run of its district.
fn waiting_for_lock(district: &str, wait: Duration) {
    tracing::info!(
        district,
        wait_secs = wait.as_secs(),
        "another run of the district holds its lock: waiting"
    );
}

/// One run's hold on one district of the Freckle DB.
pub struct Store {
    inner: Inner,
    database: Database,
}

enum Inner {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Takes the run lock of `district` (its key).
    pub async fn lock(db: &Db, district: &str, options: LockOptions) -> Result<Store, StoreError> {
        // The key names the lock file beside a SQLite DB.
        if !is_district_key(district) {
            return Err(StoreError::BadKey {
                key: district.to_owned(),
            });
        }
        let LockOptions { wait, lease } = options;
        tracing::debug!(
            district,
            wait_secs = wait.as_secs(),
            "taking the district's run lock"
        );
        let url = db.pool.connect_options().database_url.clone();
        let database = Database::of(db);
        let inner = async {
            Ok(match db.backend {
                Backend::Sqlite => {
                    let district = district.to_owned();
                    Inner::Sqlite(
                        tokio::task::spawn_blocking(move || {
                            sqlite::SqliteStore::lock(&url, &district, wait)
                        })
                        .await??,
                    )
                }
                Backend::Postgres => {
                    Inner::Postgres(postgres::PgStore::lock(&url, district, wait, lease).await?)
                }
            })
        }
        .await
        .map_err(|error: StoreError| error.naming(&database))?;
        tracing::info!(district, "holding the district's run lock");
        Ok(Store { inner, database })
    }

    /// Reads the district's state. On SQLite this reads on a connection of its own, off the
    /// reactor, so that it can overlap with the pull.
    pub async fn read_state(&mut self) -> Result<State, StoreError> {
        match &mut self.inner {
            Inner::Sqlite(store) => {
                let reader = store.reader();
                tokio::task::spawn_blocking(move || reader.read_state()).await?
            }
            Inner::Postgres(store) => store.read_state().await,
        }
        .map_err(|error| error.naming(&self.database))
    }

    /// The district's live rows that have a SIS id, to match them to the records of a new
    /// source (see [`rosterflow_plan::switch`]).
    pub async fn read_sis_rows(&mut self) -> Result<Vec<SisRow>, StoreError> {
        match &mut self.inner {
            Inner::Sqlite(store) => {
                let reader = store.reader();
                tokio::task::spawn_blocking(move || reader.read_sis_rows()).await?
            }
            Inner::Postgres(store) => store.read_sis_rows().await,
        }
        .map_err(|error| error.naming(&self.database))
    }

    /// Applies `plan` in one transaction, recorded as `run`. The state the plan was computed
    /// from must still be current.
    pub async fn apply(
        &mut self,
        plan: &Plan<'_>,
        run: RunRecord<'_>,
    ) -> Result<RunOutcome, StoreError> {
        match &mut self.inner {
            Inner::Sqlite(store) => rosterflow_model::blocking(|| store.apply(plan, run)),
            Inner::Postgres(store) => store.apply(plan, run).await,
        }
        .map_err(|error| error.naming(&self.database))
    }
}

/// Reads a district's state without taking its run lock: for reports, which only look.
pub async fn read_state(db: &Db, district: &str) -> Result<State, StoreError> {
    let url = db.pool.connect_options().database_url.clone();
    async {
        match db.backend {
            Backend::Sqlite => {
                let reader = sqlite::Reader::new(&url, district)?;
                tokio::task::spawn_blocking(move || reader.read_state()).await?
            }
            Backend::Postgres => {
                postgres::PgStore::connect(&url, district)
                    .await?
                    .read_state()
                    .await
            }
        }
    }
    .await
    .map_err(|error| error.naming(&Database::of(db)))
}

/// The row ids of a snapshot's records while a plan is written, per entity and position: the
/// state's rows, then the rows the run creates.
#[derive(Default)]
struct RowIds {
    rows: BTreeMap<Entity, Vec<Option<i64>>>,
    /// Positions of the snapshot's schools, terms and courses: what references name.
    referenced: HashMap<(Entity, Id), u32>,
}

impl RowIds {
    /// The existing rows of `records`, by position; the caller fills in the ones it creates.
    fn existing<R: Record>(state: &State, records: &[R]) -> Vec<Option<i64>> {
        let table = state.table(R::TABLE.entity);
        records.iter().map(|r| table.row_id(r.key())).collect()
    }

    fn insert(&mut self, entity: Entity, rows: Vec<Option<i64>>) {
        self.rows.insert(entity, rows);
    }

    /// The row of the snapshot's record of `entity` at `position`.
    fn at(&self, entity: Entity, position: u32) -> Option<i64> {
        self.rows
            .get(&entity)
            .and_then(|rows| rows.get(position as usize).copied().flatten())
    }

    /// Ready to resolve the references of `plan`'s records.
    fn new(plan: &Plan<'_>) -> RowIds {
        let snapshot = plan.snapshot;
        let mut referenced = HashMap::new();
        let mut add = |entity: Entity, ids: &mut dyn Iterator<Item = &Id>| {
            for (position, id) in ids.enumerate() {
                referenced.insert((entity, id.clone()), position as u32);
            }
        };
        add(Entity::School, &mut snapshot.schools.iter().map(|r| &r.id));
        add(Entity::Term, &mut snapshot.terms.iter().map(|r| &r.id));
        add(Entity::Course, &mut snapshot.courses.iter().map(|r| &r.id));
        RowIds {
            rows: BTreeMap::new(),
            referenced,
        }
    }

    /// The row of a referenced record (a school, term or course), existing or created.
    fn of_key(&self, plan: &Plan<'_>, entity: Entity, key: &str) -> Option<i64> {
        if let Some(row) = plan.state.table(entity).row_id(key) {
            return Some(row);
        }
        let position = *self.referenced.get(&(entity, Id::from(key)))?;
        self.at(entity, position)
    }
}

/// The stored name of a district's source kind; an unknown name (a newer rosterflow's) reads as
/// none, which never matches a pipeline's source.
fn source_kind(name: &str) -> Option<SourceKind> {
    name.parse().ok()
}

/// What people call a row of `entity`'s table, as an expression (its columns prefixed by
/// `alias`, such as `t.`): a person's first and last name, else the row's name.
pub(crate) fn name_sql(entity: Entity, alias: &str) -> String {
    match entity {
        Entity::Student | Entity::Teacher | Entity::Admin => format!(
            "TRIM(COALESCE({alias}first_name, '') || ' ' || COALESCE({alias}last_name, ''))"
        ),
        _ => format!("{alias}name"),
    }
}

/// The date a row's school year is read from, as an expression of the state's query: for a
/// class its term's start (else end) date, else the day it was first synced; nothing for other
/// rows.
fn school_year_date(entity: Entity) -> &'static str {
    match entity {
        Entity::Class => {
            "COALESCE((SELECT COALESCE(terms.start_date, terms.end_date) FROM terms \
             WHERE terms.id = term_id), created_at)"
        }
        _ => "NULL",
    }
}

/// Reads the live, sync-managed rows of `entity` with a SIS id: (row id, key, SIS id) of
/// district `$1`.
fn sis_rows_sql(entity: Entity) -> String {
    let table = schema::layout(entity).name;
    let managed = if matches!(entity, Entity::Class | Entity::Teacher) {
        " AND managed_by = 'sis'"
    } else {
        ""
    };
    format!(
        "SELECT id, source_id, sis_id FROM {table} WHERE district_id = $1 AND archived_at IS NULL \
         AND source_id IS NOT NULL AND sis_id IS NOT NULL AND sis_id <> ''{managed} ORDER BY id"
    )
}

/// Gives row `$2` the key `$1` (a district changing source).
fn rekey_sql(entity: Entity) -> String {
    let table = schema::layout(entity).name;
    format!("UPDATE {table} SET source_id = $1 WHERE id = $2")
}

/// What the source sent that the roster does not load, as recorded on a run row.
fn skipped_json(plan: &Plan<'_>) -> String {
    serde_json::to_string(&plan.snapshot.skipped).expect("counts serialise")
}

/// The counts recorded on a run row, as JSON.
fn counts_json(plan: &Plan<'_>) -> String {
    serde_json::to_string(&plan.counts()).expect("counts serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_names_its_database_and_a_refused_statement_does_not() {
        let database = Database::Postgres("postgres://***@db.example:5432/freckle".into());
        let lost = StoreError::Postgres {
            step: "writing starts of class_students".into(),
            source: sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
        }
        .naming(&database);
        assert_eq!(
            lost.to_string(),
            "the connection to the PostgreSQL database postgres://***@db.example:5432/freckle \
             failed while writing starts of class_students"
        );
        let refused = StoreError::Postgres {
            step: "reading the district".into(),
            source: sqlx::Error::RowNotFound,
        }
        .naming(&database);
        assert!(matches!(refused, StoreError::Postgres { .. }), "{refused}");
        // Protocol errors are what a connection reads after a cut; a pool that timed out may
        // only have been busy.
        let cut = StoreError::Postgres {
            step: "writing".into(),
            source: sqlx::Error::Protocol("unexpected message".into()),
        }
        .naming(&database);
        assert!(matches!(cut, StoreError::Connection { .. }), "{cut}");
        let waited = StoreError::Postgres {
            step: "writing".into(),
            source: sqlx::Error::PoolTimedOut,
        }
        .naming(&database);
        assert!(matches!(waited, StoreError::Postgres { .. }), "{waited}");
    }

    /// sqlx takes a password in the URL's query too: the database a lost connection names
    /// hides it there as well.
    #[tokio::test]
    async fn a_database_named_in_an_error_hides_a_password_in_its_query() {
        sqlx::any::install_default_drivers();
        for url in [
            "postgres://u:secretpw@db.example:5432/freckle",
            "postgres://u@db.example:5432/freckle?password=secretpw",
        ] {
            let pool = sqlx::AnyPool::connect_lazy(url).expect("a URL");
            let db = Db {
                pool,
                backend: Backend::Postgres,
            };
            let lost = StoreError::Postgres {
                step: "writing".into(),
                source: sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
            }
            .naming(&Database::of(&db));
            let shown = format!("{lost} {lost:?}");
            assert!(!shown.contains("secretpw"), "{shown}");
            assert!(shown.contains("***@db.example:5432/freckle"), "{shown}");
        }
    }

    #[test]
    fn a_sqlite_file_that_cannot_grow_says_why() {
        let file = Database::Sqlite("/var/lib/rosterflow/freckle.db".into());
        let failure = |code| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("x".into()))
        };
        let full = StoreError::Sqlite {
            step: "committing the run".into(),
            source: failure(13), // SQLITE_FULL
        }
        .naming(&file);
        assert_eq!(
            full.to_string(),
            "the SQLite database /var/lib/rosterflow/freckle.db could not be written while \
             committing the run: its disk is full or the file reached a size limit (a disk \
             quota, `ulimit -f`)"
        );
        let write = StoreError::Sqlite {
            step: "committing the run".into(),
            source: failure(778), // SQLITE_IOERR_WRITE: EFBIG, EDQUOT, EIO
        }
        .naming(&file);
        assert!(
            write.to_string().ends_with(", or the disk failed"),
            "{write}"
        );
        let read_only = StoreError::Sqlite {
            step: "starting the run".into(),
            source: failure(8), // SQLITE_READONLY
        }
        .naming(&file);
        assert!(
            matches!(read_only, StoreError::Sqlite { .. }),
            "{read_only}"
        );
    }
}
