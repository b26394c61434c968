//! `drop-by-title`: a filter-style rosterflow plugin. It drops teachers whose title contains
//! one of the words in its config (substitutes, student teachers, aides...) and, unless told
//! not to, the sections that only such teachers teach: the students of those sections stay in
//! the roster through their other sections.
//!
//! ```toml
//! [[transform]]
//! type = "plugin"
//! name = "drop-substitutes"
//! path = "plugins/drop_by_title.wasm"
//!
//! [transform.config]
//! titles = ["substitute", "student teacher"]
//! drop_orphaned_sections = true
//! ```

use std::collections::HashSet;

use rosterflow_plugin_sdk as sdk;
use sdk::{Edit, Error, Info, Plugin, Snapshot, TeacherIndex, Wants};

/// The plugin.
pub struct DropByTitle;

/// The plugin's config (`[transform.config]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Words to look for in a teacher's title, case-insensitive.
    pub titles: Vec<String>,
    /// Also drop sections whose every teacher is dropped. On by default.
    #[serde(default = "default_drop_orphaned_sections")]
    pub drop_orphaned_sections: bool,
}

fn default_drop_orphaned_sections() -> bool {
    true
}

impl Plugin for DropByTitle {
    type Config = Config;

    fn info() -> Info {
        Info {
            name: "drop-by-title".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "drops teachers by title, and the sections only they teach".into(),
            wants: Wants {
                teacher_details: true,
                ..Wants::default()
            },
        }
    }

    fn check(config: &Config) -> Result<(), Error> {
        if config.titles.iter().any(|t| t.trim().is_empty()) || config.titles.is_empty() {
            return Err(Error::InvalidConfig(
                "titles must list at least one non-empty word".into(),
            ));
        }
        Ok(())
    }

    fn run(config: &Config, snapshot: &Snapshot) -> Result<Vec<Edit>, Error> {
        if snapshot.teacher_details.len() != snapshot.teachers.len() {
            return Err(Error::UnsupportedSnapshot(
                "the host sent no teacher details".into(),
            ));
        }
        let words: Vec<String> = config.titles.iter().map(|t| t.to_lowercase()).collect();
        let dropped: HashSet<TeacherIndex> = snapshot
            .teacher_details
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.title
                    .as_deref()
                    .map(str::to_lowercase)
                    .is_some_and(|title| words.iter().any(|w| title.contains(w.as_str())))
            })
            .map(|(i, _)| TeacherIndex(i as u32))
            .collect();
        let mut edits = Vec::new();
        if config.drop_orphaned_sections {
            edits.extend(
                snapshot
                    .sections_indexed()
                    .filter(|(_, s)| {
                        !s.teachers.is_empty() && s.teachers.iter().all(|t| dropped.contains(t))
                    })
                    .map(|(i, _)| Edit::DropSection(i)),
            );
        }
        let mut teachers: Vec<TeacherIndex> = dropped.into_iter().collect();
        teachers.sort();
        edits.extend(teachers.into_iter().map(Edit::DropTeacher));
        sdk::log::info(&format!("dropping {} records", edits.len()));
        Ok(edits)
    }
}

sdk::export!(DropByTitle);

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::{SchoolIndex, Section, SectionIndex, Teacher, TeacherDetails};

    #[test]
    fn drops_matching_teachers_and_the_sections_only_they_teach() {
        let details = |title: &str| TeacherDetails {
            title: Some(title.into()),
            ..TeacherDetails::default()
        };
        let section = |teachers: Vec<u32>| Section {
            id: "s".into(),
            sis_id: None,
            school: SchoolIndex(0),
            name: "S".into(),
            subject: None,
            grade: None,
            period: None,
            term: None,
            course: None,
            teachers: teachers.into_iter().map(TeacherIndex).collect(),
            students: Vec::new(),
            ext: Vec::new(),
            made_by: None,
        };
        let snapshot = Snapshot {
            teachers: vec![Teacher::default(); 3],
            teacher_details: vec![
                details("Teacher"),
                details("Long-term SUBSTITUTE"),
                details("Aide"),
            ],
            sections: vec![section(vec![1]), section(vec![0, 1]), section(vec![])],
            ..Snapshot::default()
        };
        let edits =
            sdk::run_native::<DropByTitle>(r#"{"titles":["substitute"]}"#, &snapshot).unwrap();
        assert_eq!(
            edits,
            [
                Edit::DropSection(SectionIndex(0)),
                Edit::DropTeacher(TeacherIndex(1))
            ]
        );
    }
}
