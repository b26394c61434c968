//! The `[source]` table of a pipeline file: where a district's roster is read from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rosterflow_model::Secret;
use rosterflow_model::tagged;
use serde::Deserialize;

/// Where a pipeline reads its roster from: a `[source]` table starting with `type = ...`.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// The Clever Data API v3.0.
    Clever(CleverSourceConfig),
    /// A directory of recorded Clever pages (`rosterflow pull --record DIR`), replayed byte for byte.
    CleverReplay(ReplaySourceConfig),
    /// A OneRoster CSV feed (1.1 or 1.2, bulk or delta): a folder, a `.zip`, or an object store.
    OneRosterCsv(OneRosterCsvConfig),
    /// A OneRoster REST service (1.1 or 1.2) behind OAuth 2 client credentials.
    OneRosterRest(OneRosterRestConfig),
}

impl tagged::TaggedTable for SourceConfig {
    const WHAT: &'static str = "source";
    const KINDS: &'static [&'static str] =
        &["clever", "clever_replay", "oneroster_csv", "oneroster_rest"];

    fn build<'de, D: serde::Deserializer<'de>>(
        kind: &str,
        rest: D,
    ) -> Option<Result<Self, D::Error>> {
        Some(match kind {
            "clever" => CleverSourceConfig::deserialize(rest).map(SourceConfig::Clever),
            "clever_replay" => {
                ReplaySourceConfig::deserialize(rest).map(SourceConfig::CleverReplay)
            }
            "oneroster_csv" => {
                OneRosterCsvConfig::deserialize(rest).map(SourceConfig::OneRosterCsv)
            }
            "oneroster_rest" => {
                OneRosterRestConfig::deserialize(rest).map(SourceConfig::OneRosterRest)
            }
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        tagged::deserialize(deserializer)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleverSourceConfig {
    /// The API host, without a version path.
    #[serde(default = "default_clever_base_url")]
    pub base_url: String,
    /// The district's bearer token, normally `"${CLEVER_TOKEN}"`. Never logged.
    pub token: Secret,
    /// The Clever district to read, when the pipeline's `district_id` (the district's key) is
    /// not its Clever id: a district that came to Clever from another source keeps its key.
    #[serde(default)]
    pub district_id: Option<String>,
    /// Records per page (Clever allows at most 10000).
    #[serde(default = "default_page_limit")]
    pub limit: u32,
    /// How long one request may take before it is retried.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// How many times one request is tried before the pull fails (rate-limit waits included).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The first retry delay; it doubles on each retry, with jitter.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// The longest retry delay, and the longest wait for a rate-limit reset.
    #[serde(default = "default_backoff_max_secs")]
    pub backoff_max_secs: u64,
    /// How runs read the district: `full` pulls every collection each run; `events` pulls the
    /// whole district once, then only the changes since the last run (Clever's Events API),
    /// with a full pull every `full_sync_every_days` and whenever Clever no longer knows the
    /// last event. Needs `pipeline.district_id`.
    #[serde(default)]
    pub sync: SyncMode,
    /// With `sync = "events"`: a full pull at least this often, to catch any drift.
    #[serde(default = "default_full_sync_every_days")]
    pub full_sync_every_days: u32,
}

/// How a Clever source is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every collection, every run.
    #[default]
    Full,
    /// The changes since the last run, from the Events API.
    Events,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySourceConfig {
    /// The recording's directory, relative to the pipeline file.
    pub dir: PathBuf,
}

/// A OneRoster CSV feed, read whole on every run (see the `oneroster` module for the mapping).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneRosterCsvConfig {
    /// Where the feed is: a local folder or `.zip` (relative to the pipeline file), or an
    /// object-store URL: `s3://bucket/feed.zip`, `s3://bucket/prefix/` (a folder ends with
    /// `/`), `gs://...`, `az://...`, `file:///absolute/path/`. Credentials come from the
    /// standard `AWS_*`, `GOOGLE_*` and `AZURE_*` environment variables, never from this file.
    pub path: String,
    /// Extra object-store settings, by their `object_store` names (for example `aws_region`,
    /// `aws_endpoint`, `aws_allow_http`); credentials are refused (they come from the
    /// environment). Only for an object-store `path`.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// Where a user's SIS id comes from: `"identifier"` (the default), or
    /// `{ user_id_type = "SIS" }` for the `userIds` entry of that type.
    #[serde(default)]
    pub sis_id: SisIdSource,
    /// The `sourcedId` of the district org to load, when the feed holds several. Without it,
    /// the feed must hold exactly one.
    #[serde(default)]
    pub district: Option<String>,
}

/// A OneRoster REST service, read whole or (`sync = "delta"`) by the changes since the last
/// pull (see the `oneroster::rest` module; the mapping is the CSV source's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneRosterRestConfig {
    /// The service's API root, without a collection:
    /// `https://sis.example.org/ims/oneroster/rostering/v1p2` (1.2) or
    /// `https://sis.example.org/ims/oneroster/v1p1` (1.1). The version is read from its last
    /// segment (`v1p1`, `v1p2`) unless `version` says it.
    pub base_url: String,
    /// `"1.1"` or `"1.2"`, when `base_url` does not end with `v1p1` or `v1p2`, or when a
    /// service serves the other version's records at its path.
    #[serde(default)]
    pub version: Option<RestVersion>,
    /// The OAuth 2 token endpoint (client credentials grant).
    pub token_url: String,
    /// The OAuth 2 client id.
    pub client_id: String,
    /// The OAuth 2 client secret, normally `"${ONEROSTER_SECRET}"`. Never logged.
    pub client_secret: Secret,
    /// The scopes to ask for, space-separated (for 1.2 usually
    /// `https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly`). Without it none
    /// is asked for, and the service grants its default.
    #[serde(default)]
    pub scope: Option<String>,
    /// Records per page (`limit`). A service that serves fewer per page is followed all the
    /// same.
    #[serde(default = "default_page_limit")]
    pub limit: u32,
    /// How long one request may take before it is retried.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// How many times one request is tried before the pull fails (rate-limit waits included).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The first retry delay; it doubles on each retry, with jitter.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// The longest retry delay, and the longest wait a `Retry-After` may ask for.
    #[serde(default = "default_backoff_max_secs")]
    pub backoff_max_secs: u64,
    /// Where a user's SIS id comes from: `"identifier"` (the default), or
    /// `{ user_id_type = "SIS" }` for the `userIds` entry of that type.
    #[serde(default)]
    pub sis_id: SisIdSource,
    /// The `sourcedId` of the district org to load, when the service holds several. Without
    /// it, the service must hold exactly one.
    #[serde(default)]
    pub district: Option<String>,
    /// How runs read the service: `full` pulls every collection each run; `delta` pulls the
    /// whole district once, then only the records changed since the last pull
    /// (`filter=dateLastModified>...`; `tobedeleted` records remove), with a full pull every
    /// `full_sync_every_days`.
    #[serde(default)]
    pub sync: RestSyncMode,
    /// With `sync = "delta"`: a full pull at least this often, which also catches deletions
    /// a service does not serve.
    #[serde(default = "default_full_sync_every_days")]
    pub full_sync_every_days: u32,
}

/// The OneRoster version a REST service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RestVersion {
    #[serde(rename = "1.1")]
    V1_1,
    #[serde(rename = "1.2")]
    V1_2,
}

impl RestVersion {
    /// The version written as `version`, or else the one `base_url` ends with.
    pub fn of(config: &OneRosterRestConfig) -> Option<RestVersion> {
        config.version.or_else(|| {
            let url = url::Url::parse(&config.base_url).ok()?;
            let last = url.path_segments()?.rev().find(|s| !s.is_empty())?;
            match last.to_ascii_lowercase().as_str() {
                "v1p1" => Some(RestVersion::V1_1),
                "v1p2" => Some(RestVersion::V1_2),
                _ => None,
            }
        })
    }
}

/// How a OneRoster REST source is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestSyncMode {
    /// Every collection, every run.
    #[default]
    Full,
    /// The records changed since the last pull, with a full pull now and then.
    Delta,
}

/// Where a OneRoster user's SIS id comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SisIdSetting")]
pub enum SisIdSource {
    /// The user's `identifier`.
    #[default]
    Identifier,
    /// The user's `userIds` entry of this type (compared in any case): `{SIS:12345}`.
    UserIdType(String),
}

/// `sis_id` as written: `"identifier"` or `{ user_id_type = "..." }`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "\"identifier\" or a table { user_id_type = \"...\" }"
)]
enum SisIdSetting {
    Named(String),
    Table(UserIdTypeTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserIdTypeTable {
    user_id_type: String,
}

impl TryFrom<SisIdSetting> for SisIdSource {
    type Error = String;

    fn try_from(setting: SisIdSetting) -> Result<Self, Self::Error> {
        match setting {
            SisIdSetting::Named(name) if name == "identifier" => Ok(SisIdSource::Identifier),
            SisIdSetting::Named(other) => Err(format!(
                "sis_id {other:?}: use \"identifier\" or {{ user_id_type = \"SIS\" }}"
            )),
            SisIdSetting::Table(table) => Ok(SisIdSource::UserIdType(table.user_id_type)),
        }
    }
}

fn default_clever_base_url() -> String {
    "https://api.clever.com".to_owned()
}
fn default_page_limit() -> u32 {
    1000
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_max_attempts() -> u32 {
    8
}
fn default_backoff_base_ms() -> u64 {
    500
}
fn default_backoff_max_secs() -> u64 {
    60
}
fn default_full_sync_every_days() -> u32 {
    7
}

impl SourceConfig {
    /// Makes the paths written in the pipeline file relative to `base`, the file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        match self {
            SourceConfig::CleverReplay(replay) => replay.dir = base.join(&replay.dir),
            // A URL stays as it is. (A pipeline directory that is not UTF-8 would be shown
            // lossily; its files would then not be found, which the pull reports.)
            SourceConfig::OneRosterCsv(feed) if !feed.path.contains("://") => {
                feed.path = base.join(&feed.path).to_string_lossy().into_owned();
            }
            SourceConfig::Clever(_)
            | SourceConfig::OneRosterCsv(_)
            | SourceConfig::OneRosterRest(_) => {}
        }
    }

    /// What is wrong with values that parse but cannot work, each message starting with its key.
    /// `district_id` is the pipeline's, which an events sync needs.
    pub fn validate(&self, district_id: Option<&str>) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            SourceConfig::Clever(clever) => {
                if clever.sync == SyncMode::Events && district_id.is_none() {
                    problems.push(
                        "source.sync: \"events\" needs pipeline.district_id (the district whose events are followed)"
                            .into(),
                    );
                }
                if let Some(id) = &clever.district_id
                    && !rosterflow_model::is_clever_id(id)
                {
                    problems.push(format!(
                        "source.district_id: {id:?} is not a Clever id (24 hex digits)"
                    ));
                }
                if clever.full_sync_every_days == 0 {
                    problems.push("source.full_sync_every_days: must be at least 1".into());
                }
                if !(1..=10_000).contains(&clever.limit) {
                    problems.push(format!(
                        "source.limit: {} is out of range: Clever serves 1 to 10000 records a page",
                        clever.limit
                    ));
                }
                problems.extend(check_http_url(
                    "source.base_url",
                    &clever.base_url,
                    "the token",
                ));
                if clever.token.expose().trim().is_empty() {
                    problems.push("source.token: is empty".into());
                }
                if clever.max_attempts == 0 {
                    problems.push("source.max_attempts: must be at least 1".into());
                }
                if clever.timeout_secs == 0 {
                    problems.push("source.timeout_secs: must be at least 1".into());
                }
            }
            SourceConfig::CleverReplay(replay) => {
                if !replay.dir.is_dir() {
                    problems.push(format!(
                        "source.dir: {} is not a directory",
                        replay.dir.display()
                    ));
                }
            }
            SourceConfig::OneRosterCsv(feed) => feed.validate(&mut problems),
            SourceConfig::OneRosterRest(rest) => rest.validate(&mut problems),
        }
        problems
    }
}

/// `sis_id` and `district`, as both OneRoster sources have them.
fn check_sis_id_and_district(
    sis_id: &SisIdSource,
    district: Option<&str>,
    problems: &mut Vec<String>,
) {
    if let SisIdSource::UserIdType(kind) = sis_id
        && kind.trim().is_empty()
    {
        problems.push("source.sis_id: user_id_type must not be empty".into());
    }
    if let Some(district) = district
        && let Err(why) = crate::oneroster::usable_id(district)
    {
        problems.push(format!("source.district: the sourcedId {why}"));
    }
}

/// What is wrong with `url` (the value of `key`) as an address to request: it must be http(s),
/// without credentials (they belong in `instead`), a query or a fragment. The URL is shown
/// without what may be credentials.
fn check_http_url(key: &str, url: &str, instead: &str) -> Option<String> {
    let shown = rosterflow_model::secret::shown_url(url);
    if !url.starts_with("https://") && !url.starts_with("http://") {
        return Some(format!(
            "{key}: {shown:?} must start with https:// (or http:// for a local simulator)"
        ));
    }
    match url::Url::parse(url) {
        Err(error) => Some(format!("{key}: {shown:?} is not a valid URL: {error}")),
        Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => Some(
            format!("{key}: credentials do not belong in the URL: use {instead}"),
        ),
        Ok(parsed) if parsed.query().is_some() || parsed.fragment().is_some() => Some(format!(
            "{key}: {shown:?} must not carry a query or a fragment"
        )),
        Ok(_) => None,
    }
}

impl OneRosterRestConfig {
    /// Adds what is wrong with the table to `problems`, each starting with its key.
    fn validate(&self, problems: &mut Vec<String>) {
        let base_url = check_http_url(
            "source.base_url",
            &self.base_url,
            "client_id and client_secret",
        );
        let base_ok = base_url.is_none();
        problems.extend(base_url);
        if base_ok && RestVersion::of(self).is_none() {
            problems.push(format!(
                "source.version: {:?} does not end with v1p1 or v1p2: set version = \"1.1\" or \"1.2\"",
                self.base_url
            ));
        }
        problems.extend(check_http_url(
            "source.token_url",
            &self.token_url,
            "client_id and client_secret",
        ));
        if self.client_id.trim().is_empty() {
            problems.push("source.client_id: is empty".into());
        }
        if self.client_secret.expose().trim().is_empty() {
            problems.push("source.client_secret: is empty".into());
        }
        if self.scope.as_deref().is_some_and(|s| s.trim().is_empty()) {
            problems.push(
                "source.scope: is blank: leave it out to get the service's default scopes".into(),
            );
        }
        if !(1..=10_000).contains(&self.limit) {
            problems.push(format!(
                "source.limit: {} is out of range: ask for 1 to 10000 records a page",
                self.limit
            ));
        }
        if self.timeout_secs == 0 {
            problems.push("source.timeout_secs: must be at least 1".into());
        }
        if self.max_attempts == 0 {
            problems.push("source.max_attempts: must be at least 1".into());
        }
        if self.full_sync_every_days == 0 {
            problems.push("source.full_sync_every_days: must be at least 1".into());
        }
        check_sis_id_and_district(&self.sis_id, self.district.as_deref(), problems);
    }
}

impl OneRosterCsvConfig {
    /// Adds what is wrong with the table to `problems`, each starting with its key.
    fn validate(&self, problems: &mut Vec<String>) {
        if let Err(problem) = self.check_path() {
            problems.push(problem);
        }
        check_sis_id_and_district(&self.sis_id, self.district.as_deref(), problems);
    }

    /// `path` and its `storage_options`. A local path that does not exist yet is fine: feeds
    /// are often dropped just before a run.
    fn check_path(&self) -> Result<(), String> {
        use crate::oneroster::files::Location;
        if self.path.trim().is_empty() {
            return Err("source.path: must not be empty".into());
        }
        let location = Location::parse(&self.path).map_err(|p| format!("source.path: {p}"))?;
        location
            .check_options(&self.storage_options)
            .map_err(|p| format!("source.storage_options: {p}"))?;
        match &location {
            Location::Zip(path) if path.is_dir() => Err(format!(
                "source.path: {} is a directory, not a .zip",
                path.display()
            )),
            Location::Dir(path) if path.exists() && !path.is_dir() => Err(format!(
                "source.path: {} is a file but not a .zip: name a folder or a .zip",
                path.display()
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a `[source]` table written as JSON after its `type` (in order: `type` first).
    fn parse(fields: &str) -> Result<SourceConfig, String> {
        serde_json::from_str(&format!(r#"{{"type": "oneroster_csv", {fields}}}"#))
            .map_err(|e| e.to_string())
    }

    fn problems(fields: &str) -> Vec<String> {
        parse(fields).expect("parses").validate(Some("springfield"))
    }

    fn feed(fields: &str) -> OneRosterCsvConfig {
        match parse(fields).expect("parses") {
            SourceConfig::OneRosterCsv(feed) => feed,
            other => panic!("not a OneRoster source: {other:?}"),
        }
    }

    #[test]
    fn a_oneroster_source_reads_its_fields_and_defaults() {
        let plain = feed(r#""path": "feeds/today.zip""#);
        assert_eq!(plain.sis_id, SisIdSource::Identifier);
        assert_eq!(plain.district, None);
        let full = feed(
            r#""path": "s3://b/f/", "sis_id": {"user_id_type": "SIS"}, "district": "d-1",
               "storage_options": {"aws_region": "us-east-1"}"#,
        );
        assert_eq!(full.sis_id, SisIdSource::UserIdType("SIS".into()));
        assert_eq!(full.district.as_deref(), Some("d-1"));
        assert_eq!(full.storage_options.len(), 1);
        assert_eq!(
            feed(r#""path": "x", "sis_id": "identifier""#).sis_id,
            SisIdSource::Identifier
        );
    }

    #[test]
    fn unknown_fields_and_bad_sis_ids_are_refused() {
        assert!(parse(r#""path": "x", "folder": "y""#).is_err());
        let error = parse(r#""path": "x", "sis_id": "username""#).expect_err("bad sis_id");
        assert!(error.contains("user_id_type"), "{error}");
        assert!(parse(r#""path": "x", "sis_id": {"user_id": "SIS"}"#).is_err());
    }

    #[test]
    fn every_problem_starts_with_its_key() {
        let found = problems(
            r#""path": "s3://bucket/feed", "sis_id": {"user_id_type": " "}, "district": "a\u0007b""#,
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("source.path: "), "{found:?}");
        assert!(found[1].starts_with("source.sis_id: "), "{found:?}");
        assert!(found[2].starts_with("source.district: "), "{found:?}");
        let found = problems(r#""path": "local/dir", "storage_options": {"aws_region": "x"}"#);
        assert!(
            found[0].starts_with("source.storage_options: "),
            "{found:?}"
        );
        let found = problems(
            r#""path": "s3://b/f.zip", "storage_options": {"aws_secret_access_key": "x"}"#,
        );
        assert!(found[0].contains("AWS_SECRET_ACCESS_KEY"), "{found:?}");
        assert!(problems(r#""path": "s3://b/f.zip""#).is_empty());
        assert_eq!(
            problems(r#""path": " ""#),
            ["source.path: must not be empty"]
        );
    }

    fn rest(fields: &str) -> Result<OneRosterRestConfig, String> {
        let source: SourceConfig = serde_json::from_str(&format!(
            r#"{{"type": "oneroster_rest", "token_url": "https://sis.example.org/oauth/token",
                "client_id": "rosterflow", "client_secret": "s3cret", {fields}}}"#
        ))
        .map_err(|e| e.to_string())?;
        match source {
            SourceConfig::OneRosterRest(rest) => Ok(rest),
            other => panic!("not a OneRoster REST source: {other:?}"),
        }
    }

    fn rest_problems(fields: &str) -> Vec<String> {
        SourceConfig::OneRosterRest(rest(fields).expect("parses")).validate(Some("springfield"))
    }

    #[test]
    fn a_oneroster_rest_source_reads_its_fields_and_defaults() {
        let plain = rest(r#""base_url": "https://sis.example.org/ims/oneroster/rostering/v1p2""#)
            .expect("parses");
        assert_eq!(plain.limit, 1000);
        assert_eq!(plain.sync, RestSyncMode::Full);
        assert_eq!(plain.full_sync_every_days, 7);
        assert_eq!(plain.sis_id, SisIdSource::Identifier);
        assert_eq!(plain.scope, None);
        assert_eq!(RestVersion::of(&plain), Some(RestVersion::V1_2));
        assert!(
            !format!("{plain:?}").contains("s3cret"),
            "the secret stays out of debug output"
        );
        let v1p1 =
            rest(r#""base_url": "https://sis.example.org/ims/oneroster/v1p1/""#).expect("parses");
        assert_eq!(RestVersion::of(&v1p1), Some(RestVersion::V1_1));
        let told = rest(
            r#""base_url": "https://sis.example.org/ims/oneroster/v1p1", "version": "1.2",
               "sync": "delta", "full_sync_every_days": 3, "scope": "a b", "limit": 500,
               "sis_id": {"user_id_type": "SIS"}, "district": "d-1""#,
        )
        .expect("parses");
        assert_eq!(
            RestVersion::of(&told),
            Some(RestVersion::V1_2),
            "version wins"
        );
        assert_eq!(told.sync, RestSyncMode::Delta);
        assert_eq!(told.sis_id, SisIdSource::UserIdType("SIS".into()));
        assert!(rest_problems(r#""base_url": "https://h/ims/oneroster/v1p1""#).is_empty());
        assert!(rest(r#""base_url": "https://h/x/v1p2", "secret": "x""#).is_err());
        assert!(rest(r#""base_url": "https://h/x/v1p2", "version": "2.0""#).is_err());
        assert!(rest(r#""base_url": "https://h/x/v1p2", "sync": "events""#).is_err());
    }

    /// A URL in a problem never shows what may be a password, even when it does not parse.
    #[test]
    fn a_url_in_a_problem_shows_no_credentials() {
        for url in [
            "ftp://u:hunter22@h/x",
            "https://u:hunter22@h/x y",
            "https://u:hun/ter22@h/x",
            "https://u:hunter22@h/x?q=1",
            "u:hunter22@h",
            "https://h/x?password=hunter22",
            "https://u:hunter22/h/x",
        ] {
            let url = serde_json::to_string(url).expect("JSON");
            let clever: SourceConfig = serde_json::from_str(&format!(
                r#"{{"type": "clever", "token": "t", "base_url": {url}}}"#
            ))
            .expect("parses");
            let found = clever.validate(None).join("\n");
            assert!(found.starts_with("source.base_url: "), "{url}: {found}");
            assert!(!found.contains("hunter22"), "{url}: {found}");
        }
    }

    #[test]
    fn every_rest_problem_starts_with_its_key() {
        let found = rest_problems(
            r#""base_url": "ftp://h/v1p2", "limit": 0, "timeout_secs": 0, "max_attempts": 0,
               "full_sync_every_days": 0, "scope": " ", "sis_id": {"user_id_type": ""},
               "district": """#,
        );
        let keys: Vec<&str> = found
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "source.base_url",
                "source.scope",
                "source.limit",
                "source.timeout_secs",
                "source.max_attempts",
                "source.full_sync_every_days",
                "source.sis_id",
                "source.district"
            ],
            "{found:?}"
        );
        let found = SourceConfig::OneRosterRest(OneRosterRestConfig {
            client_id: " ".into(),
            client_secret: Secret::new(""),
            token_url: "https://user:pw@h/token".into(),
            ..rest(r#""base_url": "https://h/api/v1p2?x=1""#).expect("parses")
        })
        .validate(None);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].starts_with("source.base_url: "), "{found:?}");
        assert!(
            found[1].starts_with("source.token_url: credentials"),
            "{found:?}"
        );
        assert!(!found[1].contains("pw"), "{found:?}");
        assert!(found[2].starts_with("source.client_id: "), "{found:?}");
        assert!(found[3].starts_with("source.client_secret: "), "{found:?}");
        let found = rest_problems(r#""base_url": "https://h/api""#);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("source.version: "), "{found:?}");
    }

    #[test]
    fn a_local_path_is_taken_from_the_pipeline_file_and_a_url_kept() {
        let resolved = |path: &str| {
            let mut source = parse(&format!(r#""path": "{path}""#)).expect("parses");
            source.resolve_paths(Path::new("/etc/rosterflow"));
            match source {
                SourceConfig::OneRosterCsv(feed) => feed.path,
                other => panic!("not a OneRoster source: {other:?}"),
            }
        };
        assert_eq!(
            resolved("feeds/today.zip"),
            "/etc/rosterflow/feeds/today.zip"
        );
        assert_eq!(resolved("/srv/feeds/"), "/srv/feeds/");
        assert_eq!(resolved("s3://b/f.zip"), "s3://b/f.zip");
    }
}
