//! The `[source]` table of a pipeline file: where a district's roster is read from.

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
}

impl tagged::TaggedTable for SourceConfig {
    const WHAT: &'static str = "source";
    const KINDS: &'static [&'static str] = &["clever", "clever_replay"];

    fn build<'de, D: serde::Deserializer<'de>>(
        kind: &str,
        rest: D,
    ) -> Option<Result<Self, D::Error>> {
        Some(match kind {
            "clever" => CleverSourceConfig::deserialize(rest).map(SourceConfig::Clever),
            "clever_replay" => {
                ReplaySourceConfig::deserialize(rest).map(SourceConfig::CleverReplay)
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
        if let SourceConfig::CleverReplay(replay) = self {
            replay.dir = base.join(&replay.dir);
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
        }
        problems
    }
}
