//! The directory of pipeline files a service runs, read again and again: a changed, added or
//! removed file is picked up without a restart, and a bad one is reported while the others run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rosterflow_model::secret::shown_url as shown;
use rosterflow_pipeline::config::{self, Pipeline};
use rosterflow_pipeline::schedule::Schedule;

/// A pipeline the service knows, with its compiled schedule.
#[derive(Debug, Clone)]
pub struct Served {
    pub pipeline: Pipeline,
    pub schedule: Option<Schedule>,
    /// The file's text, to tell a changed file from an unchanged one.
    text: String,
}

impl Served {
    /// Whether `other` is the same file, unchanged.
    pub fn same_as(&self, other: &Served) -> bool {
        self.text == other.text && self.pipeline.path == other.pipeline.path
    }
}

/// One reading of the directory.
#[derive(Debug, Default)]
pub struct Scan {
    /// The good pipelines, by name.
    pub pipelines: BTreeMap<String, Served>,
    /// The files that cannot be served, and why.
    pub problems: BTreeMap<PathBuf, String>,
}

/// Reads every `*.toml` file of `dir`. Each must be a valid pipeline that loads into `database`
/// (the service's own) under a name no other file of the directory uses.
pub fn scan(dir: &Path, database: Option<&str>) -> std::io::Result<Scan> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut scan = Scan::default();
    for path in config::files_in(dir)? {
        match read(&path, &env) {
            Err(problem) => {
                scan.problems.insert(path, problem);
            }
            Ok(served) => {
                let name = served.pipeline.name().to_owned();
                let loads_into = &served.pipeline.file.load.database;
                if let Some(database) = database.filter(|database| *database != loads_into) {
                    let problem = format!(
                        "pipeline {name} loads into {}, but this service serves {}",
                        shown(loads_into),
                        shown(database)
                    );
                    scan.problems.insert(path, problem);
                } else if let Some(first) = scan.pipelines.get(&name) {
                    let problem = format!(
                        "pipeline name {name:?} is already used by {}",
                        first.pipeline.path.display()
                    );
                    scan.problems.insert(path, problem);
                } else {
                    scan.pipelines.insert(name, served);
                }
            }
        }
    }
    Ok(scan)
}

fn read(path: &Path, env: &BTreeMap<String, String>) -> Result<Served, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
    let pipeline = config::parse(path, &text, env).map_err(|error| error.to_string())?;
    let schedule = match &pipeline.file.schedule {
        Some(config) => Some(config.schedule()?),
        None => None,
    };
    Ok(Served {
        pipeline,
        schedule,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(name: &str, database: &str, schedule: &str) -> String {
        format!(
            "[pipeline]\nname = \"{name}\"\n[source]\ntype = \"clever_replay\"\ndir = \".\"\n\
             [load]\ndatabase = \"{database}\"\n{schedule}"
        )
    }

    #[test]
    fn good_files_are_served_and_bad_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let write = |file: &str, text: &str| std::fs::write(dir.path().join(file), text).unwrap();
        write(
            "a.toml",
            &pipeline("a", "sqlite://f.db", "[schedule]\ncron = \"0 2 * * *\"\n"),
        );
        write("b.toml", &pipeline("b", "sqlite://f.db", ""));
        write("same-name.toml", &pipeline("a", "sqlite://f.db", ""));
        write("elsewhere.toml", &pipeline("c", "sqlite://other.db", ""));
        write(
            "bad-zone.toml",
            &pipeline(
                "d",
                "sqlite://f.db",
                "[schedule]\ncron = \"0 2 * * *\"\ntimezone = \"Nowhere\"\n",
            ),
        );
        write("broken.toml", "[pipeline\n");
        write("notes.txt", "not a pipeline");

        let scan = scan(dir.path(), Some("sqlite://f.db")).unwrap();
        assert_eq!(scan.pipelines.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(scan.pipelines["a"].schedule.is_some());
        assert!(scan.pipelines["b"].schedule.is_none());
        let problem = |file: &str| scan.problems[&dir.path().join(file)].clone();
        assert_eq!(scan.problems.len(), 4, "{:?}", scan.problems);
        assert!(problem("same-name.toml").contains("already used by"));
        assert!(problem("elsewhere.toml").contains("this service serves sqlite://f.db"));
        assert!(problem("bad-zone.toml").contains("schedule.timezone"));
        assert!(problem("broken.toml").contains("broken.toml:1"));
    }
}
