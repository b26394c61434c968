//! Filters that drop sections or teachers a district does not want in Freckle: specials such as
//! PE, Art and Music, non-instructional staff, named people.
//!
//! Clever's subject enum spells the specials `PE and health` and `arts and music`, but many SIS
//! feeds leave the subject empty, so sections also match by name or course-name pattern.
//! Dropping a teacher drops the sections only they teach (a section with another teacher stays,
//! without them: its co-teacher stays a co-teacher when the primary teacher is dropped), and
//! users left with no section follow their sections out, each role on its own.

use std::collections::HashSet;

use regex::{Regex, RegexSet};
use serde::Deserialize;

use super::{
    TransformError, decision, drop_orphaned_users, drop_sections, members, remove_teachers,
};
use rosterflow_model::{Entity, Id, Snapshot};

/// A `type = "filter"` stage. Every list is optional; a record matching any entry is dropped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Names the stage in decisions and reports (`filter:<name>`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Drop sections whose Clever subject is one of these (e.g. `"PE and health"`,
    /// `"arts and music"`). Compared ignoring case.
    #[serde(default)]
    pub section_subjects: Vec<String>,
    /// Drop sections whose name matches one of these regular expressions
    /// (e.g. `"(?i)^(PE|Art|Music|Band|Chorus)\\b"`).
    #[serde(default)]
    pub section_name_patterns: Vec<String>,
    /// Drop sections whose course name matches one of these regular expressions.
    #[serde(default)]
    pub course_name_patterns: Vec<String>,
    /// Drop sections with these SIS ids.
    #[serde(default)]
    pub section_sis_ids: Vec<String>,
    /// Drop teachers whose title matches one of these regular expressions
    /// (e.g. `"(?i)physical education|art teacher|music"`).
    #[serde(default)]
    pub teacher_title_patterns: Vec<String>,
    /// Drop teachers with these SIS ids.
    #[serde(default)]
    pub teacher_sis_ids: Vec<String>,
    /// Drop teachers with these emails (compared ignoring case).
    #[serde(default)]
    pub teacher_emails: Vec<String>,
}

fn default_name() -> String {
    "filter".to_owned()
}

impl FilterConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, patterns) in self.patterns() {
            for pattern in patterns {
                if let Err(error) = Regex::new(pattern) {
                    problems.push(format!("filter {}: {field}: {error}", self.name));
                }
            }
        }
        let lists = [
            self.section_subjects.len(),
            self.section_name_patterns.len(),
            self.course_name_patterns.len(),
            self.section_sis_ids.len(),
            self.teacher_title_patterns.len(),
            self.teacher_sis_ids.len(),
            self.teacher_emails.len(),
        ];
        if lists.iter().all(|n| *n == 0) {
            problems.push(format!(
                "filter {}: drops nothing: give at least one list",
                self.name
            ));
        }
        problems
    }

    fn patterns(&self) -> [(&'static str, &Vec<String>); 3] {
        [
            ("section_name_patterns", &self.section_name_patterns),
            ("course_name_patterns", &self.course_name_patterns),
            ("teacher_title_patterns", &self.teacher_title_patterns),
        ]
    }
}

/// What one entry of a filter stage matches (see [`Filter::matches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMatch {
    /// The entry's list: `section_subjects`, `teacher_emails`...
    pub list: &'static str,
    /// Its place in the list.
    pub index: usize,
    /// The entry as written.
    pub entry: String,
    /// Whether it matches sections (else teachers).
    pub sections: bool,
    /// The sections (or teachers) it matches.
    pub matched: Vec<Id>,
}

/// How the filter compares subjects: ignoring ASCII case.
fn subject_key(subject: &str) -> String {
    subject.to_ascii_lowercase()
}

/// How the filter compares emails: ignoring case.
fn email_key(email: &str) -> String {
    email.to_lowercase()
}

/// A compiled filter stage.
pub struct Filter {
    config: FilterConfig,
    author: String,
    subjects: HashSet<String>,
    section_names: RegexSet,
    course_names: RegexSet,
    section_sis_ids: HashSet<String>,
    teacher_titles: RegexSet,
    teacher_sis_ids: HashSet<String>,
    teacher_emails: HashSet<String>,
}

impl Filter {
    pub fn new(config: &FilterConfig) -> Result<Filter, TransformError> {
        let compile = |patterns: &Vec<String>| {
            RegexSet::new(patterns).map_err(|source| TransformError::Pattern {
                stage: format!("filter:{}", config.name),
                pattern: patterns.join(" | "),
                source,
            })
        };
        Ok(Filter {
            config: config.clone(),
            author: format!("filter:{}", config.name),
            subjects: config
                .section_subjects
                .iter()
                .map(|s| subject_key(s))
                .collect(),
            section_names: compile(&config.section_name_patterns)?,
            course_names: compile(&config.course_name_patterns)?,
            section_sis_ids: config.section_sis_ids.iter().cloned().collect(),
            teacher_titles: compile(&config.teacher_title_patterns)?,
            teacher_sis_ids: config.teacher_sis_ids.iter().cloned().collect(),
            teacher_emails: config.teacher_emails.iter().map(|e| email_key(e)).collect(),
        })
    }

    /// What each entry matches of `snapshot`, matched as [`Filter::apply`] matches it, in the
    /// order of the config's lists: the sections each section entry names, the teachers each
    /// teacher entry names. (A section the stage drops because each of its teachers was
    /// dropped is not counted for any entry.)
    pub fn matches(&self, snapshot: &Snapshot) -> Vec<EntryMatch> {
        let config = &self.config;
        let mut out = Vec::new();
        let mut list = |name: &'static str, entries: &[String], sections: bool| {
            let start = out.len();
            out.extend(entries.iter().enumerate().map(|(index, entry)| EntryMatch {
                list: name,
                index,
                entry: entry.clone(),
                sections,
                matched: Vec::new(),
            }));
            start
        };
        let subjects = list("section_subjects", &config.section_subjects, true);
        let names = list("section_name_patterns", &config.section_name_patterns, true);
        let courses = list("course_name_patterns", &config.course_name_patterns, true);
        let section_sis = list("section_sis_ids", &config.section_sis_ids, true);
        let titles = list(
            "teacher_title_patterns",
            &config.teacher_title_patterns,
            false,
        );
        let teacher_sis = list("teacher_sis_ids", &config.teacher_sis_ids, false);
        let emails = list("teacher_emails", &config.teacher_emails, false);
        let course_names: std::collections::HashMap<&str, &str> = snapshot
            .courses
            .iter()
            .filter_map(|c| Some((c.id.as_str(), c.name.as_deref()?)))
            .collect();
        let subject_keys: Vec<String> = config
            .section_subjects
            .iter()
            .map(|s| subject_key(s))
            .collect();
        for section in &snapshot.sections {
            let mut hit = |at: usize| out[at].matched.push(section.id.clone());
            if let Some(subject) = section.subject.as_deref().map(subject_key) {
                for (index, _) in subject_keys
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| **w == subject)
                {
                    hit(subjects + index);
                }
            }
            for index in self.section_names.matches(&section.name) {
                hit(names + index);
            }
            if let Some(course) = section.course.as_deref().and_then(|c| course_names.get(c)) {
                for index in self.course_names.matches(course) {
                    hit(courses + index);
                }
            }
            if let Some(sis_id) = &section.sis_id {
                for (index, _) in config
                    .section_sis_ids
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| *w == sis_id)
                {
                    hit(section_sis + index);
                }
            }
        }
        let email_keys: Vec<String> = config.teacher_emails.iter().map(|e| email_key(e)).collect();
        for teacher in &snapshot.teachers {
            let mut hit = |at: usize| out[at].matched.push(teacher.id.clone());
            if let Some(title) = teacher.title.as_deref() {
                for index in self.teacher_titles.matches(title) {
                    hit(titles + index);
                }
            }
            if let Some(sis_id) = &teacher.sis_id {
                for (index, _) in config
                    .teacher_sis_ids
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| *w == sis_id)
                {
                    hit(teacher_sis + index);
                }
            }
            if let Some(email) = teacher.email.as_deref().map(email_key) {
                for (index, _) in email_keys.iter().enumerate().filter(|(_, w)| **w == email) {
                    hit(emails + index);
                }
            }
        }
        out
    }

    pub fn apply(&self, snapshot: &mut Snapshot) {
        let had_sections = members(snapshot);

        // Teachers first, so that sections left without a teacher go with them. Teachers who
        // are in the roster, or could not be read, teach; other ids in a section's list only
        // keep a dropped primary teacher's place (see `remove_teachers`).
        let teaching: HashSet<Id> = snapshot
            .teachers
            .iter()
            .map(|t| t.id.clone())
            .chain(
                snapshot
                    .unreadable
                    .iter()
                    .filter(|(entity, _)| *entity == Entity::Teacher)
                    .map(|(_, id)| id.clone()),
            )
            .collect();
        let mut dropped_teachers = HashSet::new();
        let mut decisions = Vec::new();
        snapshot.teachers.retain(|teacher| {
            let why = if let Some(title) = teacher
                .title
                .as_deref()
                .filter(|t| self.teacher_titles.is_match(t))
            {
                Some(format!("title {title:?} matches teacher_title_patterns"))
            } else if teacher
                .sis_id
                .as_ref()
                .is_some_and(|id| self.teacher_sis_ids.contains(id))
            {
                Some("SIS id is in teacher_sis_ids".to_owned())
            } else if teacher
                .email
                .as_ref()
                .is_some_and(|e| self.teacher_emails.contains(&email_key(e)))
            {
                Some("email is in teacher_emails".to_owned())
            } else {
                None
            };
            match why {
                Some(detail) => {
                    decisions.push(decision(Entity::Teacher, &teacher.id, &self.author, detail));
                    dropped_teachers.insert(teacher.id.clone());
                    false
                }
                None => true,
            }
        });
        snapshot.decisions.extend(decisions);

        let course_names: std::collections::HashMap<&str, &str> = snapshot
            .courses
            .iter()
            .filter_map(|c| Some((c.id.as_str(), c.name.as_deref()?)))
            .collect();
        let verdicts: Vec<Option<String>> = snapshot
            .sections
            .iter()
            .map(|section| {
                if let Some(subject) = section
                    .subject
                    .as_deref()
                    .filter(|s| self.subjects.contains(&subject_key(s)))
                {
                    return Some(format!("subject {subject:?} is in section_subjects"));
                }
                if self.section_names.is_match(&section.name) {
                    return Some(format!(
                        "name {:?} matches section_name_patterns",
                        section.name
                    ));
                }
                if let Some(course) = section
                    .course
                    .as_deref()
                    .and_then(|c| course_names.get(c))
                    .filter(|name| self.course_names.is_match(name))
                {
                    return Some(format!("course {course:?} matches course_name_patterns"));
                }
                if section
                    .sis_id
                    .as_ref()
                    .is_some_and(|id| self.section_sis_ids.contains(id))
                {
                    return Some("SIS id is in section_sis_ids".to_owned());
                }
                let mut taught_by = section.teachers.iter().filter(|t| teaching.contains(*t));
                let taught_only_by_dropped = taught_by.clone().next().is_some()
                    && taught_by.all(|t| dropped_teachers.contains(t));
                if taught_only_by_dropped {
                    return Some("every teacher of the section was dropped".to_owned());
                }
                None
            })
            .collect();
        let mut verdicts = verdicts.into_iter();
        drop_sections(snapshot, &self.author, |_| {
            verdicts.next().expect("one verdict per section")
        });
        for section in &mut snapshot.sections {
            remove_teachers(section, &dropped_teachers);
        }
        drop_orphaned_users(snapshot, &had_sections, &self.author);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosterflow_model::{Id, Section, Student, Teacher};

    fn snapshot() -> Snapshot {
        let section =
            |id: &str, name: &str, subject: &str, teachers: &[&str], students: &[&str]| Section {
                id: id.into(),
                name: name.into(),
                subject: (!subject.is_empty()).then(|| subject.into()),
                teachers: teachers.iter().map(|t| Id::from(*t)).collect(),
                students: students.iter().map(|s| Id::from(*s)).collect(),
                ..Section::default()
            };
        Snapshot {
            sections: vec![
                section("math", "Math 7", "math", &["t-math", "t-music"], &["s1"]),
                section("gym", "PE 7", "", &["t-gym"], &["s1", "s2"]),
                section("band", "Band", "arts and music", &["t-music"], &["s2"]),
            ],
            teachers: vec![
                Teacher {
                    id: "t-math".into(),
                    ..Teacher::default()
                },
                Teacher {
                    id: "t-gym".into(),
                    title: Some("PE Teacher".into()),
                    ..Teacher::default()
                },
                Teacher {
                    id: "t-music".into(),
                    ..Teacher::default()
                },
            ],
            students: ["s1", "s2"]
                .map(|id| Student {
                    id: id.into(),
                    ..Student::default()
                })
                .to_vec(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn specials_go_by_subject_or_name_and_their_teachers_follow() {
        let config: FilterConfig = toml::from_str(
            r#"
            name = "specials"
            section_subjects = ["Arts and Music", "PE and health"]
            section_name_patterns = ["(?i)^PE\\b"]
            "#,
        )
        .expect("valid filter");
        let mut snapshot = snapshot();
        Filter::new(&config).expect("compiles").apply(&mut snapshot);
        let sections: Vec<_> = snapshot.sections.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(sections, ["math"]);
        let teachers: Vec<_> = snapshot.teachers.iter().map(|t| t.id.as_str()).collect();
        // The music teacher co-teaches math, so stays; the gym teacher had only gym.
        assert_eq!(teachers, ["t-math", "t-music"]);
        let students: Vec<_> = snapshot.students.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(students, ["s1"]);
        assert!(
            snapshot
                .decisions
                .iter()
                .all(|d| d.author == "filter:specials")
        );
    }

    #[test]
    fn dropping_a_teacher_drops_the_sections_only_they_teach() {
        let config: FilterConfig =
            toml::from_str(r#"teacher_title_patterns = ["(?i)pe teacher"]"#).expect("valid");
        let mut snapshot = snapshot();
        Filter::new(&config).expect("compiles").apply(&mut snapshot);
        let sections: Vec<_> = snapshot.sections.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(sections, ["math", "band"]);
        assert!(snapshot.teachers.iter().all(|t| t.id != "t-gym"));
    }

    /// Found by the property tests: dropping the primary teacher of a co-taught section made
    /// its co-teacher the primary teacher, because the role is the place in the list.
    #[test]
    fn a_dropped_primary_teacher_keeps_its_place_so_the_co_teacher_stays_co() {
        let config: FilterConfig =
            toml::from_str(r#"teacher_sis_ids = ["T-MATH"]"#).expect("valid");
        let mut snapshot = snapshot();
        snapshot.teachers[0].sis_id = Some("T-MATH".into());
        Filter::new(&config).expect("compiles").apply(&mut snapshot);
        assert!(snapshot.teachers.iter().all(|t| t.id != "t-math"));
        let math = &snapshot.sections[0];
        // The primary's id keeps its place, which the plan passes over: t-music is still second.
        assert_eq!(math.teachers, [Id::from("t-math"), Id::from("t-music")]);

        // A later stage that drops the co-teacher too leaves nobody to teach: the section goes.
        let config: FilterConfig = toml::from_str(
            r#"name = "music"
teacher_emails = ["music@example.org"]"#,
        )
        .expect("valid");
        snapshot.teachers[1].email = Some("music@example.org".into());
        Filter::new(&config).expect("compiles").apply(&mut snapshot);
        let sections: Vec<_> = snapshot.sections.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(sections, ["gym"]);
    }

    /// Found by the property tests: a student who also teaches kept their teacher role when the
    /// only section they taught was dropped, because they were still a student somewhere.
    #[test]
    fn a_student_who_teaches_follows_each_role_apart() {
        let config: FilterConfig =
            toml::from_str(r#"section_subjects = ["PE and health"]"#).expect("valid");
        let mut snapshot = snapshot();
        snapshot.sections[1].subject = Some("PE and health".into());
        // s1 learns math and co-teaches gym.
        snapshot.sections[1].teachers.push("s1".into());
        snapshot.teachers.push(Teacher {
            id: "s1".into(),
            ..Teacher::default()
        });
        Filter::new(&config).expect("compiles").apply(&mut snapshot);
        assert!(snapshot.students.iter().any(|s| s.id == "s1"));
        assert!(snapshot.teachers.iter().all(|t| t.id != "s1"));
        assert!(
            snapshot
                .decisions
                .iter()
                .any(|d| d.entity == Entity::Teacher
                    && d.id == "s1"
                    && d.detail == "all of their sections were dropped")
        );
    }

    #[test]
    fn a_bad_pattern_is_a_validation_problem() {
        let config: FilterConfig =
            toml::from_str(r#"section_name_patterns = ["(unclosed"]"#).expect("parses");
        assert_eq!(config.validate().len(), 1);
    }
}
