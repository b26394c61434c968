//! Parquet exports of a district's growth data and roster history, for analysts' BI tools.
//!
//! [`run`] writes one file per dataset under Hive-style partitions,
//! `<dir>/<dataset>/district=<district Clever id>/school_year=<yyyy-yy>/<dataset>.parquet`:
//!
//! - `growth`: one row per student, subject and domain for the period, keyed by the student's SIS
//!   id (starting and current level, sessions, questions, accuracy, minutes, last active, and the
//!   student's current teachers);
//! - `roster_history`: one row per student x class x teacher stay, with `valid_from` / `valid_to`
//!   (the intersection of the student's and the teacher's stays), archived students included, so
//!   growth stays attributable after transfers.
//!
//! The schema and data dictionary are in `pipelines/README.md` (`## Export schema`).
//!
//! How a file is made: a reader thread pages through the district's students in id order (a few
//! thousand at a time, one consistent snapshot of the DB) and sends each chunk over a bounded
//! channel to an encoder thread, which turns it into fixed-size Arrow record batches and writes
//! them with explicit [`parquet::file::properties::WriterProperties`] (zstd, dictionary-encoded
//! strings, microsecond UTC timestamps) into a temporary file. Memory is bounded by the chunk, the
//! batch and one row group, never by the table. The finished file is renamed into place (a local
//! directory) or uploaded in one put (an object store), so readers never see half a file.
//!
//! Modules: [`config`] (the `[export]` table), `source` (reading the Freckle DB), `growth` and
//! `roster` (the two datasets), `file` (Arrow batches and the Parquet writer), `destination`
//! (local directory or object store), [`spreadsheet`] (a file as CSV, for the console's downloads).

pub mod config;
mod destination;
mod file;
mod growth;
mod roster;
mod source;
pub mod spreadsheet;

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use config::{ExportConfig, Period};
use destination::Destination;
use rosterflow_store::db::Db;
use source::Source;

/// Students read per chunk: the unit of memory between the reader and the encoder.
const CHUNK_STUDENTS: i64 = 2_000;

/// Chunks in flight between the reader and the encoder thread.
const CHANNEL_CHUNKS: usize = 2;

/// One of the exported datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    /// Per student, subject and domain for the period.
    Growth,
    /// Student x class x teacher with valid_from / valid_to.
    RosterHistory,
}

impl Dataset {
    /// Both datasets, in the order they are written.
    pub const ALL: [Dataset; 2] = [Dataset::Growth, Dataset::RosterHistory];

    /// The dataset's name: its folder and file name.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Growth => "growth",
            Dataset::RosterHistory => "roster_history",
        }
    }

    /// Every column the dataset can write, in file order (the allow-list picks among them).
    pub fn column_names(self) -> Vec<&'static str> {
        self.catalog().iter().map(|c| c.name).collect()
    }

    fn catalog(self) -> &'static [file::Column] {
        match self {
            Dataset::Growth => growth::COLUMNS,
            Dataset::RosterHistory => roster::COLUMNS,
        }
    }

    /// The catalog indices of the columns the allow-list lets through.
    fn allowed(self, allow: Option<&[String]>) -> Vec<usize> {
        self.catalog()
            .iter()
            .enumerate()
            .filter(|(_, c)| allow.is_none_or(|names| names.iter().any(|n| n == c.name)))
            .map(|(i, _)| i)
            .collect()
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    /// The district's Clever id (the `district=` partition).
    pub district: String,
    /// The period covered.
    pub school_year: String,
    /// First instant of the period (UTC).
    pub period_start: DateTime<Utc>,
    /// First instant after the period (UTC).
    pub period_end: DateTime<Utc>,
    /// One entry per file written, in the order of `datasets`.
    pub files: Vec<ExportedFile>,
}

/// One finished Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedFile {
    /// Which dataset it holds.
    pub dataset: Dataset,
    /// Where it is: a local path or an object-store URL.
    pub location: String,
    /// Rows written.
    pub rows: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The columns written (after the allow-list).
    pub columns: Vec<String>,
}

/// Why an export failed. Nothing is left half-written: a failed file is never renamed or
/// uploaded, and its temporary file is removed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("invalid [export] table: {}", problems.join("; "))]
    InvalidConfig { problems: Vec<String> },
    #[error("district {district} is not in the Freckle DB")]
    UnknownDistrict { district: String },
    #[error("cannot read {what} from the Freckle DB")]
    Database {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot read {what} from the SQLite Freckle DB")]
    Sqlite {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("unexpected value in {what}, column {column}: {detail}")]
    BadValue {
        what: &'static str,
        column: usize,
        detail: String,
    },
    #[error("cannot encode the {dataset} Parquet file")]
    Encode {
        dataset: Dataset,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("cannot build the {dataset} record batch")]
    Batch {
        dataset: Dataset,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the object store at {url}")]
    StoreConfig {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot upload {url}")]
    Upload {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the {dataset} export {stage} thread stopped unexpectedly")]
    Worker {
        dataset: Dataset,
        stage: &'static str,
    },
}

/// Writes the configured datasets of district `district_key` for the period `config`
/// selects at `now`, and reports the files.
///
/// Reads one consistent snapshot of the Freckle DB and only the district's rows. On SQLite, file
/// databases are read through a separate read-only connection (so the export does not hold the
/// pool's only connection); PostgreSQL and in-memory SQLite are read through `db.pool` inside a
/// read-only repeatable-read transaction.
pub async fn run(
    db: &Db,
    district_key: &str,
    config: &ExportConfig,
    now: DateTime<Utc>,
) -> Result<ExportReport, ExportError> {
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(ExportError::InvalidConfig { problems });
    }
    let period = config
        .period(now)
        .ok_or_else(|| ExportError::InvalidConfig {
            problems: vec!["export: the period cannot be resolved".to_owned()],
        })?;
    let destination = Destination::parse(&config.dir, &config.storage_options)
        .map_err(|problem| ExportError::InvalidConfig {
            problems: vec![format!("export.dir: {problem}")],
        })?
        .open()?;

    let mut source = Source::open(db).await?;
    let district = source.district(district_key).await?;
    let as_of = now.min(period.end);
    let mut files = Vec::new();
    for &dataset in &config.datasets {
        let columns = dataset.allowed(config.columns.as_deref());
        let key = format!(
            "{dataset}/district={}/school_year={}/{dataset}.parquet",
            district.key, period.school_year
        );
        let staged = destination.stage(&key)?;
        let job = source::Job {
            district: district.clone(),
            period: period.clone(),
            as_of,
            chunk_students: CHUNK_STUDENTS,
        };
        let settings = file::Settings::from_config(config, dataset, columns.clone());
        let output = staged.writer()?;
        let (returned, written) = match dataset {
            Dataset::Growth => {
                produce(source, job, settings, output, growth::read, growth::encode).await
            }
            Dataset::RosterHistory => {
                produce(source, job, settings, output, roster::read, roster::encode).await
            }
        };
        source = returned.ok_or(ExportError::Worker {
            dataset,
            stage: "reader",
        })?;
        let written = written?;
        let location = destination.commit(staged, &key).await?;
        tracing::info!(
            district = %district.key,
            dataset = %dataset,
            rows = written.rows,
            bytes = written.bytes,
            %location,
            "export file written"
        );
        files.push(ExportedFile {
            dataset,
            location,
            rows: written.rows,
            bytes: written.bytes,
            columns: columns
                .iter()
                .map(|&i| dataset.catalog()[i].name.to_owned())
                .collect(),
        });
    }
    source.close().await;
    Ok(ExportReport {
        district: district.key,
        school_year: period.school_year,
        period_start: period.start,
        period_end: period.end,
        files,
    })
}

/// Runs a dataset's reader and encoder threads side by side, joined by a bounded channel, and
/// hands the snapshot back (unless the reader thread died).
async fn produce<C: Send + 'static>(
    mut source: Source,
    job: source::Job,
    settings: file::Settings,
    output: file::Output,
    read: fn(&mut Source, &source::Job, mpsc::Sender<C>) -> Result<(), source::ReadStop>,
    encode: fn(
        mpsc::Receiver<C>,
        file::Output,
        &file::Settings,
        &source::Job,
    ) -> Result<file::Written, ExportError>,
) -> (Option<Source>, Result<file::Written, ExportError>) {
    let dataset = settings.dataset;
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let reader = {
        let job = job.clone();
        tokio::task::spawn_blocking(move || {
            let result = read(&mut source, &job, sender);
            (source, result)
        })
    };
    let encoder = tokio::task::spawn_blocking(move || encode(receiver, output, &settings, &job));
    let (reader, encoder) = tokio::join!(reader, encoder);
    let encoded = encoder.unwrap_or(Err(ExportError::Worker {
        dataset,
        stage: "encoder",
    }));
    let Ok((source, read)) = reader else {
        return (
            None,
            Err(ExportError::Worker {
                dataset,
                stage: "reader",
            }),
        );
    };
    // A reader that stopped because the encoder failed reports the encoder's error; an encoder
    // that finished after a failed read wrote an incomplete file, which is discarded.
    let written = match (read, encoded) {
        (Err(source::ReadStop::Failed(error)), _) => Err(error),
        (_, Err(error)) => Err(error),
        (Err(source::ReadStop::EncoderGone), Ok(_)) => Err(ExportError::Worker {
            dataset,
            stage: "encoder",
        }),
        (Ok(()), Ok(written)) => Ok(written),
    };
    (Some(source), written)
}
