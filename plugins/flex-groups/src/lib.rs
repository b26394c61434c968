//! `flex-groups`: a rosterflow plugin that builds intervention and flexible groups the SIS never
//! records, from rules in its config:
//!
//! - **bands**: students of some grades at each school (optionally only those enrolled in a
//!   subject), cut into groups of at most N;
//! - **splits**: sections larger than N students, cut into groups that keep the section's
//!   teachers.
//!
//! Keys are deterministic (`<rule>-<school or section>-<n>`), so the same roster gives the same
//! groups and a group keeps its class id from one night to the next.
//!
//! ```toml
//! [[transform]]
//! type = "plugin"
//! name = "flex-groups"
//! path = "plugins/flex_groups.wasm"
//!
//! [[transform.config.bands]]
//! key = "math-3-5"
//! name = "Math intervention 3-5"
//! grades = ["3", "4", "5"]
//! enrolled_in_subject = "math"
//! subject = "math"
//! max_size = 12
//!
//! [[transform.config.splits]]
//! key = "split"
//! subject = "english/language arts"
//! max_size = 20
//! ```

mod rules;

use rosterflow_plugin_sdk as sdk;
use sdk::{Edit, Error, Info, Plugin, Snapshot};

pub use rules::{BandRule, Config, SplitRule};

/// The plugin.
pub struct FlexGroups;

impl Plugin for FlexGroups {
    type Config = Config;

    fn info() -> Info {
        Info {
            name: "flex-groups".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "builds intervention groups by school and grade band, and splits large \
                          sections"
                .into(),
            wants: sdk::Wants::default(),
        }
    }

    fn check(config: &Config) -> Result<(), Error> {
        rules::check(config)
    }

    fn run(config: &Config, snapshot: &Snapshot) -> Result<Vec<Edit>, Error> {
        let edits = rules::plan(config, snapshot)?;
        sdk::log::info(&format!("made {} groups", edits.len()));
        Ok(edits)
    }
}

sdk::export!(FlexGroups);

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::{GradeIndex, Group, School, SchoolIndex, Section, Student, StudentIndex};

    fn snapshot() -> Snapshot {
        let school = |id: &str, sis: &str| School {
            id: id.into(),
            sis_id: Some(sis.into()),
            name: format!("School {sis}"),
            ..School::default()
        };
        // 7 third graders at school 0, 2 fourth graders at school 1, 1 first grader at school 0.
        let mut students = vec![
            Student {
                school: Some(SchoolIndex(0)),
                grade: Some(GradeIndex(0)),
            };
            7
        ];
        students.extend(
            [Student {
                school: Some(SchoolIndex(1)),
                grade: Some(GradeIndex(1)),
            }; 2],
        );
        students.push(Student {
            school: Some(SchoolIndex(0)),
            grade: Some(GradeIndex(2)),
        });
        Snapshot {
            district: "d".into(),
            schools: vec![school("s0", "100"), school("s1", "200")],
            grades: vec!["3".into(), "4".into(), "1".into()],
            students,
            sections: vec![Section {
                id: "sec0".into(),
                sis_id: Some("M/3".into()),
                school: SchoolIndex(0),
                name: "Math 3".into(),
                subject: Some("math".into()),
                grade: Some("3".into()),
                period: None,
                term: None,
                course: None,
                teachers: vec![sdk::TeacherIndex(0)],
                students: (0..5).map(StudentIndex).collect(),
                ext: Vec::new(),
                made_by: None,
            }],
            teachers: vec![sdk::Teacher::default()],
            ..Snapshot::default()
        }
    }

    fn groups(edits: Vec<Edit>) -> Vec<Group> {
        edits
            .into_iter()
            .map(|e| match e {
                Edit::CreateGroup(g) => g,
                other => panic!("unexpected edit {other:?}"),
            })
            .collect()
    }

    #[test]
    fn bands_cut_each_school_pool_into_balanced_groups() {
        let config = r#"{"bands":[{"key":"b","name":"Band","grades":["3","4"],"max_size":3}]}"#;
        let groups = groups(sdk::run_native::<FlexGroups>(config, &snapshot()).unwrap());
        let summary: Vec<(String, usize)> = groups
            .iter()
            .map(|g| (g.key.clone(), g.students.len()))
            .collect();
        assert_eq!(
            summary,
            [
                ("b-100-1".to_string(), 3),
                ("b-100-2".to_string(), 2),
                ("b-100-3".to_string(), 2),
                ("b-200-1".to_string(), 2),
            ]
        );
        assert_eq!(groups[0].name, "Band 1");
        assert_eq!(groups[3].school, SchoolIndex(1));
    }

    #[test]
    fn enrolled_in_subject_limits_the_pool() {
        let config = r#"{"bands":[{"key":"m","name":"M","grades":["3"],
            "enrolled_in_subject":"MATH","max_size":10}]}"#;
        let groups = groups(sdk::run_native::<FlexGroups>(config, &snapshot()).unwrap());
        assert_eq!(groups.len(), 1);
        assert_eq!(
            groups[0].students,
            (0..5).map(StudentIndex).collect::<Vec<_>>()
        );
    }

    #[test]
    fn splits_keep_the_sections_teachers_and_sanitise_keys() {
        let config = r#"{"splits":[{"key":"s","subject":"math","max_size":2}]}"#;
        let groups = groups(sdk::run_native::<FlexGroups>(config, &snapshot()).unwrap());
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].key, "s-M_3-1");
        assert_eq!(groups[2].name, "Math 3 (3 of 3)");
        assert!(groups.iter().all(|g| g.teachers == [sdk::TeacherIndex(0)]));
        let sizes: Vec<usize> = groups.iter().map(|g| g.students.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[test]
    fn bad_config_is_invalid_config() {
        for config in [
            r#"{"bands":[{"key":"b","name":"B","grades":["3"],"max_size":0}]}"#,
            r#"{"bands":[{"key":"b c","name":"B","grades":["3"],"max_size":1}]}"#,
            r#"{"splits":[{"key":"a","max_size":1},{"key":"a","max_size":2}]}"#,
            r#"{"unknown":1}"#,
        ] {
            let err = sdk::run_native::<FlexGroups>(config, &snapshot()).unwrap_err();
            assert!(matches!(err, Error::InvalidConfig(_)), "{config}: {err:?}");
        }
    }
}
