//! Reading the Freckle DB for an export: one consistent snapshot, queried from the blocking
//! reader thread, a chunk of students at a time.
//!
//! A SQLite file is read through its own read-only rusqlite connection (the same bundled SQLite
//! as sqlx): per-row overhead there is a fraction of sqlx's, which is what lets 10M growth rows
//! export in seconds, and the pool's single connection stays free. PostgreSQL (and in-memory
//! SQLite) is read through the pool, inside a read-only repeatable-read transaction. Both take
//! SQL text with `$1`-style placeholders; a reader may pick a query shape by [`Source::in_process`].

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::Row as _;
use sqlx::any::{Any, AnyRow};
use tokio::runtime::Handle;

use super::{ExportError, Period};
use rosterflow_store::db::{Backend, Db};

/// The district being exported.
#[derive(Debug, Clone)]
pub(crate) struct District {
    pub id: i64,
    pub key: String,
    pub name: String,
}

/// What a dataset reader needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub district: District,
    pub period: Period,
    /// The instant "current" teachers are taken at: the end of the period, or now if earlier.
    pub as_of: DateTime<Utc>,
    pub chunk_students: i64,
}

/// Why a reader stopped early.
#[derive(Debug)]
pub(crate) enum ReadStop {
    /// Reading failed.
    Failed(ExportError),
    /// The encoder hung up (it failed; its error is the one to report).
    EncoderGone,
}

impl From<ExportError> for ReadStop {
    fn from(error: ExportError) -> Self {
        ReadStop::Failed(error)
    }
}

/// A bound query parameter.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
}

/// One result row, whichever driver produced it.
pub(crate) struct Row<'a> {
    what: &'static str,
    inner: RowInner<'a>,
}

enum RowInner<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pool(&'a AnyRow),
}

impl Row<'_> {
    fn bad(&self, column: usize, detail: impl ToString) -> ExportError {
        ExportError::BadValue {
            what: self.what,
            column,
            detail: detail.to_string(),
        }
    }

    pub fn int(&self, i: usize) -> Result<Option<i64>, ExportError> {
        match &self.inner {
            RowInner::Sqlite(row) => match row.get_ref(i).map_err(|e| self.bad(i, e))? {
                rusqlite::types::ValueRef::Null => Ok(None),
                rusqlite::types::ValueRef::Integer(v) => Ok(Some(v)),
                other => Err(self.bad(
                    i,
                    format!("expected an integer, found {:?}", other.data_type()),
                )),
            },
            RowInner::Pool(row) => row.try_get::<Option<i64>, _>(i).map_err(|e| self.bad(i, e)),
        }
    }

    pub fn real(&self, i: usize) -> Result<Option<f64>, ExportError> {
        match &self.inner {
            RowInner::Sqlite(row) => match row.get_ref(i).map_err(|e| self.bad(i, e))? {
                rusqlite::types::ValueRef::Null => Ok(None),
                rusqlite::types::ValueRef::Real(v) => Ok(Some(v)),
                rusqlite::types::ValueRef::Integer(v) => Ok(Some(v as f64)),
                other => Err(self.bad(
                    i,
                    format!("expected a number, found {:?}", other.data_type()),
                )),
            },
            RowInner::Pool(row) => row.try_get::<Option<f64>, _>(i).map_err(|e| self.bad(i, e)),
        }
    }

    pub fn text(&self, i: usize) -> Result<Option<&str>, ExportError> {
        match &self.inner {
            RowInner::Sqlite(row) => match row.get_ref(i).map_err(|e| self.bad(i, e))? {
                rusqlite::types::ValueRef::Null => Ok(None),
                rusqlite::types::ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                    .map(Some)
                    .map_err(|e| self.bad(i, e)),
                other => Err(self.bad(i, format!("expected text, found {:?}", other.data_type()))),
            },
            RowInner::Pool(row) => row
                .try_get::<Option<&str>, _>(i)
                .map_err(|e| self.bad(i, e)),
        }
    }

    /// A text column, owned (`None` for NULL).
    pub fn string(&self, i: usize) -> Result<Option<String>, ExportError> {
        Ok(self.text(i)?.map(str::to_owned))
    }
}

/// A read-only snapshot of the Freckle DB.
pub(crate) struct Source {
    kind: Kind,
}

enum Kind {
    Sqlite(rusqlite::Connection),
    Pool {
        tx: sqlx::Transaction<'static, Any>,
        handle: Handle,
    },
}

impl Source {
    /// Opens the snapshot: a read transaction on a new read-only connection (SQLite file), or on
    /// a pool connection.
    pub async fn open(db: &Db) -> Result<Source, ExportError> {
        if db.backend == Backend::Sqlite
            && let Some(path) = db.sqlite_file().filter(|path| path.is_file())
        {
            let connection = tokio::task::spawn_blocking(move || open_sqlite(&path))
                .await
                .map_err(|_| ExportError::Worker {
                    dataset: super::Dataset::Growth,
                    stage: "reader",
                })??;
            return Ok(Source {
                kind: Kind::Sqlite(connection),
            });
        }
        let database = |source| ExportError::Database {
            what: "a snapshot",
            source,
        };
        let mut tx = db.pool.begin().await.map_err(database)?;
        if db.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(database)?;
        }
        Ok(Source {
            kind: Kind::Pool {
                tx,
                handle: Handle::current(),
            },
        })
    }

    /// Looks the district up by its key.
    pub async fn district(&mut self, key: &str) -> Result<District, ExportError> {
        const SQL: &str = "SELECT id, name FROM districts WHERE key = $1";
        let found = match &mut self.kind {
            Kind::Sqlite(connection) => {
                let mut statement =
                    connection
                        .prepare_cached(SQL)
                        .map_err(|source| ExportError::Sqlite {
                            what: "the district",
                            source,
                        })?;
                let mut rows = statement
                    .query([key])
                    .map_err(|source| ExportError::Sqlite {
                        what: "the district",
                        source,
                    })?;
                match rows.next().map_err(|source| ExportError::Sqlite {
                    what: "the district",
                    source,
                })? {
                    Some(row) => {
                        let row = Row {
                            what: "the district",
                            inner: RowInner::Sqlite(row),
                        };
                        Some((row.int(0)?, row.string(1)?))
                    }
                    None => None,
                }
            }
            Kind::Pool { tx, .. } => {
                let row = sqlx::query(SQL)
                    .bind(key)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(|source| ExportError::Database {
                        what: "the district",
                        source,
                    })?;
                match row {
                    Some(row) => {
                        let row = Row {
                            what: "the district",
                            inner: RowInner::Pool(&row),
                        };
                        Some((row.int(0)?, row.string(1)?))
                    }
                    None => None,
                }
            }
        };
        match found {
            Some((Some(id), name)) => Ok(District {
                id,
                key: key.to_owned(),
                name: name.unwrap_or_default(),
            }),
            _ => Err(ExportError::UnknownDistrict {
                district: key.to_owned(),
            }),
        }
    }

    /// Whether the snapshot is a SQLite file read in process, where streaming rows costs
    /// little, rather than a server whose rows cross a connection.
    pub fn in_process(&self) -> bool {
        matches!(self.kind, Kind::Sqlite(_))
    }

    /// Runs `sql` with `params` (`$1`, `$2`, ... in order) and hands each row to `on_row`.
    /// Blocking: call it from the reader thread only.
    pub fn query(
        &mut self,
        what: &'static str,
        sql: &'static str,
        params: &[Param],
        mut on_row: impl FnMut(&Row<'_>) -> Result<(), ReadStop>,
    ) -> Result<(), ReadStop> {
        match &mut self.kind {
            Kind::Sqlite(connection) => {
                let sqlite = |source| ExportError::Sqlite { what, source };
                let mut statement = connection.prepare_cached(sql).map_err(sqlite)?;
                for (i, param) in params.iter().enumerate() {
                    let name = format!("${}", i + 1);
                    let index = statement
                        .parameter_index(&name)
                        .map_err(sqlite)?
                        .ok_or_else(|| {
                            sqlite(rusqlite::Error::InvalidParameterName(name.clone()))
                        })?;
                    match param {
                        Param::Int(v) => statement.raw_bind_parameter(index, v),
                        Param::Text(v) => statement.raw_bind_parameter(index, v),
                    }
                    .map_err(sqlite)?;
                }
                let mut rows = statement.raw_query();
                while let Some(row) = rows.next().map_err(sqlite)? {
                    on_row(&Row {
                        what,
                        inner: RowInner::Sqlite(row),
                    })?;
                }
                Ok(())
            }
            Kind::Pool { tx, handle } => handle.block_on(async {
                let mut query = sqlx::query(sql);
                for param in params {
                    query = match param {
                        Param::Int(v) => query.bind(*v),
                        Param::Text(v) => query.bind(v.clone()),
                    };
                }
                let mut rows = query.fetch(&mut **tx);
                while let Some(row) = rows
                    .try_next()
                    .await
                    .map_err(|source| ExportError::Database { what, source })?
                {
                    on_row(&Row {
                        what,
                        inner: RowInner::Pool(&row),
                    })?;
                }
                Ok(())
            }),
        }
    }

    /// Ends the snapshot.
    pub async fn close(self) {
        match self.kind {
            Kind::Sqlite(connection) => drop(connection),
            Kind::Pool { tx, .. } => {
                // Read only: nothing to commit. A failed rollback only means the connection
                // is gone, and the pool discards it.
                if let Err(error) = tx.rollback().await {
                    tracing::debug!(error = %error, "export snapshot rollback failed");
                }
            }
        }
    }
}

fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, ExportError> {
    let sqlite = |source| ExportError::Sqlite {
        what: "a snapshot",
        source,
    };
    let connection = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sqlite)?;
    // Every query of the export runs inside this read transaction: one snapshot (WAL mode
    // lets the sync keep writing meanwhile).
    connection.execute_batch("BEGIN").map_err(sqlite)?;
    Ok(connection)
}
