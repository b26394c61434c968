//! A district's pipeline file (`pipelines/<district>.toml`): parsed, validated, then built.
//!
//! Loading happens in three steps, each with its own failure mode:
//! 1. parse the TOML, then interpolate `${VAR}` (and `${VAR:-default}`) in its string values
//!    from an environment passed in as a map, reporting every missing variable with its line
//!    and column (a value never changes the file's structure: see `vars`);
//! 2. read the typed tables below (`deny_unknown_fields`: a misspelt key is an error naming
//!    file, line and column);
//! 3. validate the values, collecting every problem rather than stopping at the first.
//!
//! No problem shows a variable's value (it may be a secret), which it names `${VAR}` instead,
//! nor the user and password of a URL.
//!
//! Every field is documented here with `///`; `pipelines/README.md` is the user's copy.

mod vars;

#[cfg(test)]
mod fuzz;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use rosterflow_extract::config::SourceConfig;
use rosterflow_model::{is_clever_id, is_district_key};
use rosterflow_plan::safety::SafetyConfig;
use rosterflow_store::db::Db;
use rosterflow_store::runs::{self, RunsError};
use rosterflow_transform::TransformConfig;

impl PipelineFile {
    /// Makes the paths written in the file (a recording, plugins) relative to `base`, the
    /// file's directory, so that every stage can open them as they are.
    fn resolve_paths(&mut self, base: &Path) {
        self.source.resolve_paths(base);
        for stage in &mut self.transform {
            stage.resolve_paths(base);
        }
    }
}

/// One pipeline file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Who this pipeline is for.
    pub pipeline: PipelineTable,
    /// Where the roster comes from.
    pub source: SourceConfig,
    /// The transforms applied to the roster, in order.
    #[serde(default)]
    pub transform: Vec<TransformConfig>,
    /// Where the roster goes.
    pub load: LoadConfig,
    /// When a plan is held for an admin instead of applied.
    #[serde(default)]
    pub safety: SafetyConfig,
    /// How welcome emails are delivered; without it they wait in the outbox.
    #[serde(default)]
    pub email: Option<rosterflow_accounts::email::EmailConfig>,
    /// Parquet exports of growth data and roster history; without it nothing is exported.
    #[serde(default)]
    pub export: Option<rosterflow_export::ExportConfig>,
    /// When `rosterflow serve` runs the pipeline; without it, only when someone runs it.
    #[serde(default)]
    pub schedule: Option<crate::schedule::ScheduleConfig>,
    /// How the district's people sign in with Clever through `rosterflow serve`.
    #[serde(default)]
    pub sign_in: SignInTable,
    /// What `rosterflow doctor` reports as a matter of degree.
    #[serde(default)]
    pub doctor: crate::doctor::DoctorConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInTable {
    /// Whether a teacher who is in Clever but not yet synced (hired today) gets their account at
    /// their first sign-in, rather than a page asking them to come back after the next sync. The
    /// next sync finds the same row (no duplicate, no second welcome email) and archives it if
    /// the district's filters leave the teacher out. Students are never created at sign-in.
    #[serde(default)]
    pub just_in_time: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineTable {
    /// The pipeline's name, used in run history and logs (e.g. `"springfield"`).
    pub name: String,
    /// The district this pipeline syncs, as the Freckle DB keys it: its row, its run lock and
    /// its export partition. For a Clever source it is the district's Clever id: a source that
    /// returns another district is refused, and when absent the district the token sees is
    /// used. A OneRoster source must name it (1 to 64 letters, digits, `-` or `_`). A district
    /// that moves to another source keeps its key.
    #[serde(default)]
    pub district_id: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// The Freckle DB as a sqlx URL: `sqlite://freckle.db` (embedded, the default; a relative
    /// path is relative to the working directory) or `postgres://user@host/db`.
    #[serde(default = "default_database")]
    pub database: String,
}

impl std::fmt::Debug for LoadConfig {
    /// The database URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadConfig")
            .field(
                "database",
                &rosterflow_model::secret::shown_url(&self.database),
            )
            .finish()
    }
}

fn default_database() -> String {
    "sqlite://freckle.db".to_owned()
}

/// A pipeline file that is ready to run: validated, with paths resolved.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it came from.
    pub path: PathBuf,
    pub file: PipelineFile,
}

impl Pipeline {
    pub fn name(&self) -> &str {
        &self.file.pipeline.name
    }

    /// The district's key the file names, if it names one.
    pub fn district_id(&self) -> Option<&str> {
        self.file.pipeline.district_id.as_deref()
    }

    /// The district's id at its Clever source, when the file says it: the Clever source's own
    /// `district_id`, or else the pipeline's (the key of a Clever district is its Clever id).
    /// A source that returns another district is refused. None for OneRoster sources, which
    /// name their district org in their own settings.
    pub fn source_district(&self) -> Option<&str> {
        match &self.file.source {
            SourceConfig::Clever(clever) => clever.district_id.as_deref().or(self.district_id()),
            SourceConfig::CleverReplay(_) => self.district_id(),
            _ => None,
        }
    }

    /// The pipeline's district: the one it names, or else the one its latest run loaded (none
    /// if it has not run).
    pub async fn district(&self, db: &Db) -> Result<Option<String>, RunsError> {
        match self.district_id() {
            Some(district) => Ok(Some(district.to_owned())),
            None => runs::latest_district(db, self.name()).await,
        }
    }
}

/// Everything wrong with a pipeline file, each problem with its place.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One thing wrong in a pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// 1-based line and column, when the problem has a place in the text.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|problem| match problem.at {
            Some((line, column)) => {
                format!("{}:{line}:{column}: {}", path.display(), problem.message)
            }
            None => format!("{}: {}", path.display(), problem.message),
        })
        .collect();
    lines.join("\n")
}

/// Which unset environment variables a command can do without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Every variable must be set: commands that pull from the source.
    Required,
    /// Variables used only in `[source]` (the Clever token) may be unset: commands that only
    /// read or write the Freckle DB never use them. Such a field keeps its `${VAR}` reference
    /// as written.
    SourceDeferred,
}

/// Reads, interpolates, parses and validates a pipeline file, every variable set.
pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Pipeline, ConfigError> {
    load_with(path, env, Secrets::Required)
}

/// Reads, interpolates, parses and validates a pipeline file.
pub fn load_with(
    path: &Path,
    env: &BTreeMap<String, String>,
    secrets: Secrets,
) -> Result<Pipeline, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_with(path, &text, env, secrets)
}

/// The pipeline files of a directory: its `*.toml` files, in name order.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Parses and validates pipeline text, every variable set; `path` names it in errors and
/// anchors relative paths.
pub fn parse(
    path: &Path,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<Pipeline, ConfigError> {
    parse_with(path, text, env, Secrets::Required)
}

/// Parses and validates pipeline text.
pub fn parse_with(
    path: &Path,
    text: &str,
    env: &BTreeMap<String, String>,
    secrets: Secrets,
) -> Result<Pipeline, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    };
    let vars::Interpolated {
        root,
        missing,
        values,
    } = vars::interpolate(text, env).map_err(invalid)?;
    // A problem may quote the value it is about: never a variable's (it may be a secret).
    let invalid = |problems: Vec<Problem>| {
        invalid(
            problems
                .into_iter()
                .map(|problem| Problem {
                    message: vars::hide_secrets(&problem.message, &values),
                    ..problem
                })
                .collect(),
        )
    };
    let unset: Vec<Problem> = missing
        .into_iter()
        .filter(|missing| secrets == Secrets::Required || !missing.in_source)
        .map(|missing| missing.problem)
        .collect();
    if !unset.is_empty() {
        return Err(invalid(unset));
    }
    let mut file =
        PipelineFile::deserialize(toml::de::Deserializer::from(root)).map_err(|error| {
            invalid(vec![Problem {
                at: error.span().map(|span| line_column(text, span.start)),
                message: error.message().trim_end().to_owned(),
            }])
        })?;
    file.resolve_paths(path.parent().unwrap_or_else(|| Path::new(".")));
    let pipeline = Pipeline {
        path: path.to_owned(),
        file,
    };
    let problems = validate(&pipeline);
    if problems.is_empty() {
        Ok(pipeline)
    } else {
        Err(invalid(problems))
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Checks values that parse but cannot work, collecting every problem.
fn validate(pipeline: &Pipeline) -> Vec<Problem> {
    let file = &pipeline.file;
    let mut problems = Vec::new();
    let mut problem = |message: String| problems.push(Problem { at: None, message });
    if file.pipeline.name.trim().is_empty() {
        problem("pipeline.name: must not be empty".into());
    }
    let clever = matches!(
        file.source,
        SourceConfig::Clever(_) | SourceConfig::CleverReplay(_)
    );
    let own_district = matches!(&file.source, SourceConfig::Clever(c) if c.district_id.is_some());
    match &file.pipeline.district_id {
        Some(id) if clever && !own_district && !is_clever_id(id) => problem(format!(
            "pipeline.district_id: {id:?} is not a Clever id (24 hex digits): a district whose key is not its Clever id names it in source.district_id"
        )),
        Some(id) if !is_district_key(id) => problem(format!(
            "pipeline.district_id: {id:?} cannot key a district: use 1 to 64 letters, digits, '-' or '_'"
        )),
        None if !clever => problem(
            "pipeline.district_id: a OneRoster pipeline must name its district's key (for example \"springfield\"); a district that moves from Clever keeps its Clever id".into(),
        ),
        _ => {}
    }
    for message in file.source.validate(pipeline.source_district()) {
        problem(message);
    }
    if let Err(error) = rosterflow_store::db::Backend::of_url(&file.load.database) {
        problem(format!("load.database: {error}"));
    }
    for message in file.safety.validate() {
        problem(message);
    }
    for message in file.doctor.validate() {
        problem(message);
    }
    if let Some(email) = &file.email {
        for message in email.validate() {
            problem(message);
        }
    }
    if let Some(export) = &file.export {
        for message in export.validate() {
            problem(message);
        }
    }
    if let Some(schedule) = &file.schedule {
        for message in schedule.validate() {
            problem(message);
        }
    }
    for (index, stage) in file.transform.iter().enumerate() {
        for message in stage.validate() {
            problem(format!("transform[{index}]: {message}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CLEVER: &str = r#"
[pipeline]
name = "springfield"

[source]
type = "clever"
token = "${CLEVER_TOKEN}"
limit = 500

[load]
database = "sqlite://springfield.db"
"#;

    #[test]
    fn a_clever_pipeline_parses_with_defaults() {
        let pipeline = parse(
            Path::new("p.toml"),
            CLEVER,
            &env(&[("CLEVER_TOKEN", "tok")]),
        )
        .expect("valid pipeline");
        let SourceConfig::Clever(clever) = &pipeline.file.source else {
            panic!("expected a clever source");
        };
        assert_eq!(clever.token.expose(), "tok");
        assert_eq!(clever.base_url, "https://api.clever.com");
        assert_eq!(clever.limit, 500);
        assert_eq!(pipeline.file.safety.archive_max_percent, 10.0);
    }

    /// A pipeline's `district_id` is its district's key: a Clever id for a Clever source,
    /// unless the source names its Clever district itself; required for OneRoster.
    #[test]
    fn district_keys_follow_the_source() {
        let clever_id = "5a0c91b95c7cc000010d417c";
        let tok = env(&[("CLEVER_TOKEN", "tok")]);
        let with = |pipeline: &str, source: &str| {
            CLEVER
                .replace(
                    "name = \"springfield\"",
                    &format!("name = \"springfield\"\n{pipeline}"),
                )
                .replace("limit = 500", &format!("limit = 500\n{source}"))
        };
        let problems = |text: &str| match parse(Path::new("p.toml"), text, &tok) {
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        };
        assert_eq!(
            problems(&with(&format!("district_id = \"{clever_id}\""), "")),
            ""
        );
        assert!(
            problems(&with("district_id = \"springfield\"", ""))
                .contains("names it in source.district_id")
        );
        let moved = with(
            "district_id = \"springfield\"",
            &format!("district_id = \"{clever_id}\""),
        );
        assert_eq!(problems(&moved), "");
        let pipeline = parse(Path::new("p.toml"), &moved, &tok).expect("valid");
        assert_eq!(pipeline.source_district(), Some(clever_id));
        assert!(problems(&with("district_id = \"../etc\"", "")).contains("not a Clever id"));
        let oneroster = "[pipeline]\nname = \"o\"\n\n[source]\ntype = \"oneroster_csv\"\npath = \"feed\"\n\n[load]\n";
        let refused = problems(oneroster);
        assert!(
            refused.contains("a OneRoster pipeline must name its district's key"),
            "{refused}"
        );
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let pipeline = parse(
            Path::new("p.toml"),
            CLEVER,
            &env(&[("CLEVER_TOKEN", "very-secret")]),
        )
        .expect("valid pipeline");
        assert!(!format!("{pipeline:?}").contains("very-secret"));
    }

    #[test]
    fn an_unknown_key_names_its_line_and_column() {
        let text = CLEVER.replace("limit = 500", "limt = 500");
        let error = parse(
            Path::new("p.toml"),
            &text,
            &env(&[("CLEVER_TOKEN", "a-token-0123")]),
        )
        .expect_err("unknown key");
        let message = error.to_string();
        assert!(
            message.starts_with("p.toml:8:1: unknown field `limt`"),
            "{message}"
        );
    }

    #[test]
    fn a_wrong_type_names_its_line_and_column() {
        let text = CLEVER.replace("limit = 500", "limit = \"many\"");
        let message = parse(
            Path::new("p.toml"),
            &text,
            &env(&[("CLEVER_TOKEN", "a-token-0123")]),
        )
        .expect_err("wrong type")
        .to_string();
        assert!(message.starts_with("p.toml:8:9: invalid type"), "{message}");
    }

    #[test]
    fn a_missing_variable_names_its_line_and_column() {
        let message = parse(Path::new("p.toml"), CLEVER, &env(&[]))
            .expect_err("missing variable")
            .to_string();
        assert_eq!(
            message,
            "p.toml:7:10: environment variable CLEVER_TOKEN is not set"
        );
    }

    #[test]
    fn commands_that_do_not_pull_can_do_without_the_sources_secrets() {
        let deferred = |text: &str| {
            parse_with(
                Path::new("p.toml"),
                text,
                &env(&[]),
                Secrets::SourceDeferred,
            )
        };
        let pipeline = deferred(CLEVER).expect("the token is only used by pulls");
        let SourceConfig::Clever(clever) = &pipeline.file.source else {
            panic!("a clever source");
        };
        assert_eq!(clever.token.expose(), "${CLEVER_TOKEN}", "kept as written");
        // A comment names nothing; a variable the Freckle DB needs must still be set.
        let commented = format!("# set ${{NOT_USED}} one day\n{CLEVER}");
        assert!(deferred(&commented).is_ok());
        let database = CLEVER.replace("sqlite://springfield.db", "${DB_URL}");
        let message = deferred(&database).expect_err("the database").to_string();
        assert!(message.contains("DB_URL is not set"), "{message}");
        assert!(!message.contains("CLEVER_TOKEN"), "{message}");
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let text = CLEVER
            .replace("limit = 500", "limit = 20000")
            .replace("sqlite://springfield.db", "mysql://x");
        let error = parse(
            Path::new("p.toml"),
            &text,
            &env(&[("CLEVER_TOKEN", "a-token-0123")]),
        )
        .expect_err("invalid values");
        let ConfigError::Invalid { problems, .. } = error else {
            panic!("expected problems");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
