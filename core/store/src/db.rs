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
        let url = match backend {
            // Create the file on first use (sqlx's SQLite defaults already give WAL journaling
            // and enforced foreign keys).
            Backend::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            Backend::Sqlite | Backend::Postgres => url.to_owned(),
        };
        let pool = pool(
            backend,
            &url,
            match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => 4,
            },
        )
        .await?;
        backend
            .migrator()
            .run(&pool)
            .await
            .map_err(|source| DbError::Migrate { backend, source })?;
        Ok(Db { pool, backend })
    }

    /// Opens the database at `url` for reading only, as it is (no migration): a SQLite file
    /// with `mode=ro`, a PostgreSQL session whose transactions are read-only from its start
    /// (`options=-c default_transaction_read_only=on`). `None` when there is nothing to read: a
    /// SQLite file that does not exist (it is not created), or an in-memory SQLite database.
    pub async fn open_read_only(url: &str) -> Result<Option<Db>, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let connect = |source| DbError::Connect { backend, source };
        let parsed = url::Url::parse(url)
            .map_err(|error| connect(sqlx::Error::Configuration(error.into())))?;
        let url = match backend {
            Backend::Sqlite => match sqlite_file(&parsed) {
                Some(path) if path.is_file() => with_query(parsed, "mode", |_| "ro".to_owned()),
                _ => return Ok(None),
            },
            Backend::Postgres => with_query(parsed, "options", |options| {
                let read_only = "-c default_transaction_read_only=on";
                match options {
                    Some(options) => format!("{options} {read_only}"),
                    None => read_only.to_owned(),
                }
            }),
        };
        Ok(Some(Db {
            pool: pool(backend, &url, 2).await?,
            backend,
        }))
    }

    /// The version of the latest migration applied to the database; `None` when none is.
    pub async fn applied_migration(&self) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
    }

    /// The file of a SQLite database; none for PostgreSQL or an in-memory SQLite.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        sqlite_file(&self.pool.connect_options().database_url)
    }
}

impl Backend {
    /// The migrations of this backend's schema, as this binary knows them.
    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// The version of the latest migration this binary knows for the backend.
    pub fn latest_migration(self) -> i64 {
        self.migrator()
            .iter()
            .map(|migration| migration.version)
            .max()
            .unwrap_or_default()
    }
}

/// A pool of up to `connections` on `url`, after one connection that says at once why a
/// database cannot be reached ("connection refused"), where the pool would retry until its
/// timeout.
async fn pool(backend: Backend, url: &str, connections: u32) -> Result<AnyPool, DbError> {
    let connect = |source| DbError::Connect { backend, source };
    let options = AnyConnectOptions::from_str(url)
        .map_err(connect)?
        .disable_statement_logging();
    sqlx::AnyConnection::connect_with(&options)
        .await
        .map_err(connect)?
        .close()
        .await
        .map_err(connect)?;
    AnyPoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await
        .map_err(connect)
}

/// `url` with its query parameter `key` set to what `value` makes of the one it had.
fn with_query(
    mut url: url::Url,
    key: &str,
    value: impl FnOnce(Option<String>) -> String,
) -> String {
    let mut old = None;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == key {
                old = Some(v.into_owned());
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    let new = value(old);
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(key, &new);
    url.to_string()
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_read_only_url_keeps_its_other_parameters() {
        let parse = |url: &str| url::Url::parse(url).expect("a URL");
        assert_eq!(
            super::with_query(parse("sqlite:///tmp/f.db"), "mode", |_| "ro".into()),
            "sqlite:///tmp/f.db?mode=ro"
        );
        assert_eq!(
            super::with_query(parse("sqlite://f.db?mode=rwc&cache=shared"), "mode", |_| {
                "ro".into()
            }),
            "sqlite://f.db?cache=shared&mode=ro"
        );
        assert_eq!(
            super::with_query(
                parse("postgres://u@h/x?options=-c%20search_path%3Ds"),
                "options",
                |old| format!("{} -c x=on", old.unwrap_or_default())
            ),
            "postgres://u@h/x?options=-c+search_path%3Ds+-c+x%3Don"
        );
    }
}
