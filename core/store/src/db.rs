//! The Freckle DB connection: one URL opens SQLite (embedded, the default) or PostgreSQL through
//! sqlx's `Any` driver, applies that backend's migrations, and names the time format every
//! table uses.
//!
//! Queries use `$1` placeholders, which both backends accept. Timestamps are stored as UTC text
//! with microseconds (see [`timestamp`]) so they compare and sort the same on both.

use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Connection};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Errors opening or migrating the Freckle DB. The URL is never included: it may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL scheme {scheme:?}: use sqlite:// or postgres://")]
    UnsupportedScheme { scheme: String },
    #[error("cannot open the {backend} database")]
    Connect {
        backend: Backend,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the {backend} database")]
    Migrate {
        backend: Backend,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Backend, DbError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(DbError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            }),
        }
    }
}

/// An open, migrated Freckle DB.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// Opens the database at `url` (creating a SQLite file if missing) and brings its schema up
    /// to date.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let connect = |source| DbError::Connect { backend, source };
        let options = match backend {
            // Create the file on first use (sqlx's SQLite defaults already give WAL journaling
            // and enforced foreign keys).
            Backend::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                AnyConnectOptions::from_str(&format!("{url}{separator}mode=rwc"))
                    .map_err(connect)?
            }
            Backend::Sqlite | Backend::Postgres => {
                AnyConnectOptions::from_str(url).map_err(connect)?
            }
        }
        .disable_statement_logging();
        // One connection first, so that a database that cannot be reached says why at once
        // ("connection refused"), where the pool would retry until its timeout.
        sqlx::AnyConnection::connect_with(&options)
            .await
            .map_err(connect)?
            .close()
            .await
            .map_err(connect)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => 4,
            })
            .connect_with(options)
            .await
            .map_err(connect)?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| DbError::Migrate { backend, source })?;
        Ok(Db { pool, backend })
    }

    /// The file of a SQLite database; none for PostgreSQL or an in-memory SQLite.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        sqlite_file(&self.pool.connect_options().database_url)
    }
}

/// The file of a `sqlite://` URL; none for an in-memory database.
pub fn sqlite_file(url: &url::Url) -> Option<PathBuf> {
    if url.query_pairs().any(|(k, v)| k == "mode" && v == "memory") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url.as_str()).ok()?;
    let path = options.get_filename().to_path_buf();
    (path.as_os_str() != ":memory:" && !path.as_os_str().is_empty()).then_some(path)
}

/// The one text form of a timestamp in the Freckle DB: `2026-11-30T08:15:00.123456Z`.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads a timestamp written by [`timestamp`].
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
