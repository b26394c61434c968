//! Transforms that edit a snapshot between extract and plan, run in the order the pipeline
//! lists them: Clever-style sharing rules, filters (specials such as PE, Art and Music), and
//! district WASM plugins.
//!
//! Every transform records a [`Decision`] for each record it drops or creates, so a run report
//! and `rosterflow explain` can say which rule did what. Users follow their sections: one who
//! had sections before a stage and has none after it is dropped with the stage as the author.

pub mod filter;
pub mod plugin;
pub mod sharing_rules;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use rosterflow_model::tagged::{self, TaggedTable};
use rosterflow_model::{Decision, DecisionAction, Entity, Id, Snapshot};

/// One `[[transform]]` stage as written in the pipeline file, starting with `type = ...`.
#[derive(Debug, Clone)]
pub enum TransformConfig {
    /// Share whole schools, or sections matching rules, as a district does in Clever.
    SharingRules(sharing_rules::SharingRulesConfig),
    /// Drop sections or teachers (PE, Art, Music...) by subject, pattern, title, SIS id or email.
    Filter(filter::FilterConfig),
    /// A district WASM component.
    Plugin(PluginStageConfig),
}

impl TaggedTable for TransformConfig {
    const WHAT: &'static str = "transform";
    const KINDS: &'static [&'static str] = &["sharing_rules", "filter", "plugin"];

    fn build<'de, D: serde::Deserializer<'de>>(
        kind: &str,
        rest: D,
    ) -> Option<Result<Self, D::Error>> {
        Some(match kind {
            "sharing_rules" => Deserialize::deserialize(rest).map(TransformConfig::SharingRules),
            "filter" => Deserialize::deserialize(rest).map(TransformConfig::Filter),
            "plugin" => Deserialize::deserialize(rest).map(TransformConfig::Plugin),
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for TransformConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        tagged::deserialize(deserializer)
    }
}

/// A `type = "plugin"` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginStageConfig {
    /// The plugin's name: its classes and memberships carry `source = "plugin:<name>"`.
    pub name: String,
    /// The component (`.wasm`), relative to the pipeline file.
    pub path: PathBuf,
    /// Wall-clock budget for one call into the plugin.
    #[serde(default = "default_plugin_timeout_ms")]
    pub timeout_ms: u64,
    /// The most linear memory the plugin may grow to.
    #[serde(default = "default_plugin_memory_mb")]
    pub memory_mb: u64,
    /// The largest output (edits) the plugin may return.
    #[serde(default = "default_plugin_max_output_mb")]
    pub max_output_mb: u64,
    /// The plugin's own settings, handed to it as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_plugin_timeout_ms() -> u64 {
    plugin::PluginLimits::default().timeout_ms
}
fn default_plugin_memory_mb() -> u64 {
    plugin::PluginLimits::default().memory_mb
}
fn default_plugin_max_output_mb() -> u64 {
    plugin::PluginLimits::default().max_output_mb
}

impl TransformConfig {
    /// Makes the plugin's path, as written in the pipeline file, relative to `base`, the file's
    /// directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let TransformConfig::Plugin(config) = self {
            config.path = base.join(&config.path);
        }
    }

    /// Every problem with this stage's settings.
    pub fn validate(&self) -> Vec<String> {
        match self {
            TransformConfig::SharingRules(config) => config.validate(),
            TransformConfig::Filter(config) => config.validate(),
            TransformConfig::Plugin(config) => {
                let mut problems = Vec::new();
                let path = &config.path;
                if !path.is_file() {
                    problems.push(format!(
                        "plugin {}: {} does not exist (build it with `cargo build --target wasm32-wasip2`)",
                        config.name,
                        path.display()
                    ));
                }
                if config.name.is_empty() || config.name.contains(char::is_whitespace) {
                    problems.push(format!(
                        "plugin name {:?} must be one word without spaces",
                        config.name
                    ));
                }
                if config.timeout_ms == 0 || config.memory_mb == 0 || config.max_output_mb == 0 {
                    problems.push(format!(
                        "plugin {}: timeout_ms, memory_mb and max_output_mb must be above 0",
                        config.name
                    ));
                }
                problems
            }
        }
    }
}

/// Why a transform stage failed. A failed stage fails the run: nothing is loaded.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("transform {stage}: invalid pattern {pattern:?}")]
    Pattern {
        stage: String,
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error(transparent)]
    Plugin(#[from] plugin::PluginError),
}

/// The pipeline's transforms, ready to run: patterns compiled, plugins loaded.
pub struct Transforms {
    stages: Vec<Stage>,
}

enum Stage {
    SharingRules(sharing_rules::SharingRules),
    Filter(filter::Filter),
    Plugin {
        name: String,
        plugin: plugin::Plugin,
        limits: plugin::PluginLimits,
        config_json: String,
    },
}

impl Transforms {
    /// Readies a pipeline's stages; plugins are loaded through the process's `plugins`.
    pub fn build(
        configs: &[TransformConfig],
        plugins: &plugin::Plugins,
    ) -> Result<Transforms, TransformError> {
        let mut host = None;
        let mut stages = Vec::new();
        for stage in configs {
            stages.push(match stage {
                TransformConfig::SharingRules(config) => {
                    Stage::SharingRules(sharing_rules::SharingRules::new(config))
                }
                TransformConfig::Filter(config) => Stage::Filter(filter::Filter::new(config)?),
                TransformConfig::Plugin(config) => {
                    let host = match &mut host {
                        Some(host) => host,
                        None => host.insert(plugins.host()?),
                    };
                    Stage::Plugin {
                        name: config.name.clone(),
                        plugin: host.load(&config.path)?,
                        limits: plugin::PluginLimits {
                            timeout_ms: config.timeout_ms,
                            memory_mb: config.memory_mb,
                            max_output_mb: config.max_output_mb,
                        },
                        config_json: serde_json::to_string(&config.config)
                            .expect("a TOML table is valid JSON"),
                    }
                }
            });
        }
        Ok(Transforms { stages })
    }

    /// Runs every stage in order on `snapshot`.
    pub fn apply(&self, snapshot: &mut Snapshot) -> Result<(), TransformError> {
        for stage in &self.stages {
            let began = std::time::Instant::now();
            let (sections, users) = (snapshot.sections.len(), user_count(snapshot));
            match stage {
                Stage::SharingRules(rules) => rules.apply(snapshot),
                Stage::Filter(filter) => filter.apply(snapshot),
                Stage::Plugin {
                    name,
                    plugin,
                    limits,
                    config_json,
                } => {
                    let report = plugin.run(name, config_json, limits, snapshot)?;
                    tracing::info!(plugin = %name, "{report}");
                }
            }
            tracing::debug!(
                stage = stage.name(),
                sections_before = sections,
                sections_after = snapshot.sections.len(),
                users_before = users,
                users_after = user_count(snapshot),
                decisions = snapshot.decisions.len(),
                elapsed_ms = began.elapsed().as_millis(),
                "transform stage applied"
            );
        }
        Ok(())
    }
}

impl Stage {
    /// The stage as an admin names it in the pipeline file: its kind, or the plugin's name.
    fn name(&self) -> &str {
        match self {
            Stage::SharingRules(_) => "sharing_rules",
            Stage::Filter(_) => "filter",
            Stage::Plugin { name, .. } => name,
        }
    }
}

fn user_count(snapshot: &Snapshot) -> usize {
    snapshot.students.len() + snapshot.teachers.len()
}

/// Removes sections for which `drop` says why, then the users who followed only those sections.
/// Records each removal as a decision by `author`.
pub(crate) fn drop_sections(
    snapshot: &mut Snapshot,
    author: &str,
    mut drop: impl FnMut(&rosterflow_model::Section) -> Option<String>,
) {
    let had_sections = members(snapshot);
    let mut decisions = Vec::new();
    snapshot.sections.retain(|section| match drop(section) {
        Some(detail) => {
            decisions.push(decision(Entity::Class, &section.id, author, detail));
            false
        }
        None => true,
    });
    snapshot.decisions.extend(decisions);
    drop_orphaned_users(snapshot, &had_sections, author);
}

/// Who is a member of some section: students and teachers apart, so that a user who is both
/// (a student teacher) keeps each role only through that role's own sections.
#[derive(Debug, Default)]
pub(crate) struct Members {
    pub(crate) students: HashSet<Id>,
    pub(crate) teachers: HashSet<Id>,
}

/// The students and the teachers of every section.
pub(crate) fn members(snapshot: &Snapshot) -> Members {
    Members {
        students: snapshot
            .sections
            .iter()
            .flat_map(|s| &s.students)
            .cloned()
            .collect(),
        teachers: snapshot
            .sections
            .iter()
            .flat_map(|s| &s.teachers)
            .cloned()
            .collect(),
    }
}

/// Drops users who were members of a section before a stage (`had_sections`) and are in none
/// now: they followed their sections out of the roster. Each role follows its own sections: a
/// student who teaches keeps the student role through the sections they learn in, and the
/// teacher role only through those they teach.
pub(crate) fn drop_orphaned_users(snapshot: &mut Snapshot, had_sections: &Members, author: &str) {
    let still = members(snapshot);
    let orphaned =
        |had: &HashSet<Id>, still: &HashSet<Id>, id: &Id| had.contains(id) && !still.contains(id);
    let detail = "all of their sections were dropped";
    let mut decisions = Vec::new();
    snapshot.students.retain(|s| {
        let drop = orphaned(&had_sections.students, &still.students, &s.id);
        if drop {
            decisions.push(decision(Entity::Student, &s.id, author, detail.into()));
        }
        !drop
    });
    snapshot.teachers.retain(|t| {
        let drop = orphaned(&had_sections.teachers, &still.teachers, &t.id);
        if drop {
            decisions.push(decision(Entity::Teacher, &t.id, author, detail.into()));
        }
        !drop
    });
    snapshot.decisions.extend(decisions);
}

/// Takes the `dropped` teachers out of a section's teachers, except a dropped primary teacher:
/// the plan gives the primary role by place (the first teacher) and passes over ids that are
/// not in the roster, so the primary's id keeps its place and a co-teacher stays a co-teacher
/// (the SIS, not a filter, says who is primary). References to teachers who could not be read
/// keep their places the same way.
pub(crate) fn remove_teachers(section: &mut rosterflow_model::Section, dropped: &HashSet<Id>) {
    let mut primary = true;
    section
        .teachers
        .retain(|t| std::mem::take(&mut primary) || !dropped.contains(t));
}

pub(crate) fn decision(entity: Entity, id: &str, author: &str, detail: String) -> Decision {
    Decision {
        entity,
        id: id.into(),
        action: DecisionAction::Dropped,
        author: author.to_owned(),
        detail,
    }
}
