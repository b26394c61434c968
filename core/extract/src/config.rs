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
}

impl tagged::TaggedTable for SourceConfig {
    const WHAT: &'static str = "source";
    const KINDS: &'static [&'static str] = &["clever", "clever_replay", "oneroster_csv"];

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
            SourceConfig::Clever(_) | SourceConfig::OneRosterCsv(_) => {}
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
                if clever.full_sync_every_days == 0 {
                    problems.push("source.full_sync_every_days: must be at least 1".into());
                }
                if !(1..=10_000).contains(&clever.limit) {
                    problems.push(format!(
                        "source.limit: {} is out of range: Clever serves 1 to 10000 records a page",
                        clever.limit
                    ));
                }
                if !clever.base_url.starts_with("https://")
                    && !clever.base_url.starts_with("http://")
                {
                    problems.push(format!(
                        "source.base_url: {:?} must start with https:// (or http:// for a local simulator)",
                        clever.base_url
                    ));
                }
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
        }
        problems
    }
}

impl OneRosterCsvConfig {
    /// Adds what is wrong with the table to `problems`, each starting with its key.
    fn validate(&self, problems: &mut Vec<String>) {
        if let Err(problem) = self.check_path() {
            problems.push(problem);
        }
        if let SisIdSource::UserIdType(kind) = &self.sis_id
            && kind.trim().is_empty()
        {
            problems.push("source.sis_id: user_id_type must not be empty".into());
        }
        if let Some(district) = &self.district
            && let Err(why) = crate::oneroster::usable_id(district)
        {
            problems.push(format!("source.district: the sourcedId {why}"));
        }
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
