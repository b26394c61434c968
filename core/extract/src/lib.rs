//! Sources: where a district's roster comes from. Each produces a [`Snapshot`] of one district.
//!
//! - [`config`]: the pipeline file's `[source]` table.
//! - [`clever`]: the Clever Data API v3.0 over HTTPS (paging, rate limits, retries).
//! - [`replay`]: a directory of raw pages recorded from Clever, replayed byte for byte.
//! - [`wire`]: Clever's JSON, read tolerantly, turned into the model page by page.
//! - [`events`]: incremental pulls through the Events API, from a checkpoint of the raw roster.
//! - [`oneroster`]: OneRoster CSV feeds (1.1, 1.2), bulk or delta, from a folder, a zip or an
//!   object store; its docs hold the OneRoster-to-model mapping. [`oneroster::rest`]: OneRoster
//!   REST services (1.1, 1.2), whole or by the changes since the last pull, into the same raw
//!   roster and mapping.
//!
//! Any pull can be recorded with a [`Recorder`]: for Clever the raw bytes of every page, in
//! the layout [`replay`] reads (`DIR/<collection>/0001.json`, `0002.json`, ...); for OneRoster
//! the manifest and each file read, a feed that `path = "DIR"` reads again; for OneRoster REST
//! each page as served (`DIR/users-0001.json`), for reading, not for replay.

pub mod clever;
pub mod config;
pub mod events;
pub mod oneroster;
pub mod replay;
pub mod wire;

use std::path::{Path, PathBuf};

use rosterflow_model::{Snapshot, blocking};

use crate::config::SourceConfig;

/// The Clever collections a snapshot is built from, in the order they are pulled.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::EnumCount,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum Collection {
    Districts,
    Schools,
    Terms,
    Courses,
    Sections,
    Users,
}

impl Collection {
    /// Every collection, in the order they are pulled.
    pub const ALL: [Collection; <Collection as strum::EnumCount>::COUNT] =
        *<Collection as strum::VariantArray>::VARIANTS
            .first_chunk()
            .expect("VARIANTS holds every variant");

    /// The path segment: `/v3.0/<name>`, and the recording's directory name.
    pub const fn name(self) -> &'static str {
        self.into_str()
    }

    /// The collection named by [`Collection::name`] (`users`).
    pub fn parse(name: &str) -> Option<Collection> {
        name.parse().ok()
    }

    /// What one record of the collection is called in quarantine.
    pub const fn record_kind(self) -> &'static str {
        match self {
            Collection::Districts => "district",
            Collection::Schools => "school",
            Collection::Terms => "term",
            Collection::Courses => "course",
            Collection::Sections => "section",
            Collection::Users => "user",
        }
    }
}

/// Why a pull failed. Nothing is loaded from a failed pull.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "clever refused the token ({status}) for {url}: check the pipeline's token (usually CLEVER_TOKEN) and that the district authorised the application"
    )]
    Unauthorized { status: u16, url: String },
    #[error("clever answered {status} for {url}: {message}")]
    Status {
        status: u16,
        url: String,
        message: String,
    },
    #[error("request to {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("gave up on {url} after {attempts} attempts; last error: {last}")]
    Exhausted {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("{origin}: {reason} (body starts {snippet:?})")]
    Page {
        origin: String,
        reason: String,
        snippet: String,
    },
    #[error("the source holds district(s) {found:?}, not {expected}")]
    WrongDistrict {
        expected: String,
        found: Vec<String>,
    },
    #[error(
        "the token sees several districts ({found:?}): set pipeline.district_id to the one this pipeline syncs"
    )]
    SeveralDistricts { found: Vec<String> },
    #[error("the source's district id {id:?} is not a Clever id (24 hex digits): refusing it")]
    NotACleverId { id: String },
    #[error("cannot store or read the district's raw roster")]
    Roster {
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {url:?} is not a usable URL")]
    BadUrl {
        /// `source.base_url`, or a link (a page's `next`).
        what: &'static str,
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("a page parser stopped")]
    Worker(#[from] tokio::task::JoinError),
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the recording {} has no districts page: is it a recording?", dir.display())]
    NotARecording { dir: PathBuf },
    #[error("source.path {path:?}: {reason}")]
    Location { path: String, reason: String },
    #[error("cannot read {url}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "{location} has no manifest.csv: a OneRoster CSV feed needs one (columns propertyName,value); is source.path right?"
    )]
    NoManifest { location: String },
    #[error("{location}: manifest.csv {reason}")]
    Manifest { location: String, reason: String },
    #[error(
        "manifest.csv marks {file} {mode}, but {location} has no {file}: add the file, or mark it absent"
    )]
    MissingFile {
        location: String,
        file: &'static str,
        mode: &'static str,
    },
    #[error(
        "{file}: the header has no {column} column, which OneRoster {version} requires (headers are case-sensitive)"
    )]
    MissingColumn {
        file: &'static str,
        column: &'static str,
        version: &'static str,
    },
    #[error("{file}: {reason}")]
    Csv { file: String, reason: String },
    #[error("{location}: {reason}")]
    Zip { location: String, reason: String },
    #[error(
        "a delta needs a bulk load first: manifest.csv marks {files} delta, but there is no roster from an earlier load to apply it to; send a bulk feed once"
    )]
    DeltaWithoutBulk { files: String },
    #[error(
        "a OneRoster {feed} delta cannot apply to the OneRoster {roster} roster of the last load: send a bulk feed"
    )]
    VersionChanged {
        roster: &'static str,
        feed: &'static str,
    },
    #[error(
        "the feed holds several district orgs ({found:?}): set source.district to the sourcedId of the one this pipeline loads"
    )]
    SeveralDistrictOrgs { found: Vec<String> },
    #[error("orgs.csv holds no org of type district: a OneRoster feed must include its district")]
    NoDistrictOrg,
    #[error(
        "the OneRoster token endpoint {url} refused the client ({status}: {reason}): check source.client_id and source.client_secret (usually ONEROSTER_SECRET), and source.scope"
    )]
    ClientRefused {
        url: String,
        status: u16,
        /// The endpoint's OAuth error and description (never the secret).
        reason: String,
    },
    #[error(
        "the OneRoster service refused a fresh access token ({status}) for {url}: check that the client may read this district's rosters (its scopes)"
    )]
    AccessRefused { url: String, status: u16 },
    #[error("the OneRoster service answered {status} for {url}: {message}")]
    Service {
        status: u16,
        url: String,
        message: String,
    },
}

impl ExtractError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExtractError::Status { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            ExtractError::Service { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            ExtractError::Http { .. } | ExtractError::Page { .. } => true,
            // A store that refuses the request will refuse it again; anything else (the
            // network, the service) may pass.
            ExtractError::Store { source, .. } => !matches!(
                source,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::NotFound { .. }
            ),
            _ => false,
        }
    }
}

/// Writes every page of a pull to a directory, as [`replay`] reads them.
pub struct Recorder {
    dir: PathBuf,
}

impl Recorder {
    /// Prepares `dir`, which must be empty or absent so that two pulls never mix.
    pub fn create(dir: &Path) -> Result<Recorder, ExtractError> {
        let io = |source| ExtractError::Io {
            path: dir.to_owned(),
            source,
        };
        if dir.exists() && dir.read_dir().map_err(io)?.next().is_some() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the recording directory is not empty",
            )));
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        Ok(Recorder {
            dir: dir.to_owned(),
        })
    }

    /// Saves page `number` (from 1) of `collection`, byte for byte.
    pub fn save(
        &self,
        collection: Collection,
        number: usize,
        body: &[u8],
    ) -> Result<(), ExtractError> {
        let dir = self.dir.join(collection.name());
        let path = dir.join(replay::page_file_name(number));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, body))
            .map_err(|source| ExtractError::Io { path, source })
    }

    /// Saves a file of a OneRoster feed under its name in the feed (`users.csv`), byte for
    /// byte.
    pub fn save_file(&self, name: &str, body: &[u8]) -> Result<(), ExtractError> {
        let path = self.dir.join(name);
        std::fs::write(&path, body).map_err(|source| ExtractError::Io { path, source })
    }
}

/// Pulls `district` (or the one the source sees, when `None`) from `source`, recording the
/// pages if asked. A OneRoster feed is pulled as a bulk feed (a delta is refused): deltas need
/// [`oneroster::pull_csv`] and the roster of the previous load. A OneRoster REST service is
/// pulled whole ([`oneroster::pull_rest`] pulls the changes since a previous pull).
pub async fn pull(
    source: &SourceConfig,
    district: Option<&str>,
    recorder: Option<&Recorder>,
) -> Result<Snapshot, ExtractError> {
    match source {
        SourceConfig::Clever(config) => clever::pull(config, district, recorder).await,
        // Reading files blocks; keep it off the reactor's other tasks.
        SourceConfig::CleverReplay(config) => {
            blocking(|| replay::read(&config.dir, district, recorder))
        }
        // `district` is the pipeline's key for the district, not a OneRoster id: the feed's
        // district org is `source.district`, or its only one.
        SourceConfig::OneRosterCsv(config) => oneroster::pull(config, recorder).await,
        SourceConfig::OneRosterRest(config) => oneroster::rest::pull(config, recorder).await,
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are Clever's path segments and the directories of every recording.
    #[test]
    fn every_collection_round_trips_through_its_name() {
        let names: Vec<&str> = Collection::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "districts",
                "schools",
                "terms",
                "courses",
                "sections",
                "users"
            ]
        );
        for collection in Collection::ALL {
            assert_eq!(Collection::parse(collection.name()), Some(collection));
        }
        assert_eq!(Collection::parse("user"), None);
    }
}
