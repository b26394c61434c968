//! Clever-style sharing: whole schools, or sections matching rules, minus exceptions.
//!
//! A section is shared when its school is listed in `schools`, or it matches every condition
//! of at least one `[[transform.sections]]` rule; and it matches no `[[transform.except]]` rule.
//! Students and teachers follow their sections; those whose primary school is shared whole stay
//! too, as Clever's "Share Schools" shares everyone in the school.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::{decision, members};
use rosterflow_model::{Entity, Id, School, Section, Snapshot};

/// A `type = "sharing_rules"` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingRulesConfig {
    /// Names the stage in decisions and reports (`sharing_rules:<name>`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Schools shared whole, by Clever id, SIS id or name.
    #[serde(default)]
    pub schools: Vec<String>,
    /// Rules sharing the sections that match all of a rule's conditions.
    #[serde(default)]
    pub sections: Vec<Rule>,
    /// Rules for sections never shared, even in a shared school.
    #[serde(default)]
    pub except: Vec<Rule>,
}

fn default_name() -> String {
    "sharing".to_owned()
}

/// Conditions that must all hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "where")]
    pub conditions: Vec<Condition>,
}

/// `{ field = "subject", is = "math" }`: one test on a section field. Exactly one of `is`,
/// `is_not`, `contains` and `in` is given. Text comparisons ignore case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// `school`, `subject`, `grade`, `course`, `term`, `name`, `period`, `teacher`, `sis_id`,
    /// `section_number`, or `ext.<field>`. A school, course, term or teacher matches by any of
    /// its Clever id, SIS id, name (or teacher email).
    pub field: String,
    #[serde(default)]
    pub is: Option<String>,
    #[serde(default)]
    pub is_not: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<String>>,
}

const FIELDS: &[&str] = &[
    "school",
    "subject",
    "grade",
    "course",
    "term",
    "name",
    "period",
    "teacher",
    "sis_id",
    "section_number",
];

impl SharingRulesConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.schools.is_empty() && self.sections.is_empty() {
            problems.push(format!(
                "sharing_rules {}: shares nothing: list `schools` or add `[[transform.sections]]` rules",
                self.name
            ));
        }
        for (kind, rules) in [("sections", &self.sections), ("except", &self.except)] {
            for (index, rule) in rules.iter().enumerate() {
                if rule.conditions.is_empty() {
                    problems.push(format!(
                        "{kind}[{index}]: a rule needs at least one condition"
                    ));
                }
                for condition in &rule.conditions {
                    if !FIELDS.contains(&condition.field.as_str())
                        && !condition.field.starts_with("ext.")
                    {
                        problems.push(format!(
                            "{kind}[{index}]: unknown field {:?} (use one of {} or ext.<name>)",
                            condition.field,
                            FIELDS.join(", ")
                        ));
                    }
                    let operators = [
                        condition.is.is_some(),
                        condition.is_not.is_some(),
                        condition.contains.is_some(),
                        condition.one_of.is_some(),
                    ];
                    if operators.iter().filter(|set| **set).count() != 1 {
                        problems.push(format!(
                            "{kind}[{index}]: condition on {:?} needs exactly one of is, is_not, contains, in",
                            condition.field
                        ));
                    }
                }
            }
        }
        problems
    }
}

/// What each entry of a sharing stage matches (see [`SharingRules::matches`]), in the order of
/// the stage's lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharingMatches {
    /// The schools each `schools` entry names.
    pub schools: Vec<Vec<Id>>,
    /// How many sections each `sections` rule matches.
    pub sections: Vec<usize>,
    /// How many sections each `except` rule matches.
    pub except: Vec<usize>,
}

/// Whether a `schools` entry names `school`: by its id, name or SIS id, ignoring case.
fn names_school(wanted: &str, school: &School) -> bool {
    [
        Some(school.id.as_str()),
        Some(school.name.as_str()),
        school.sis_id.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|value| value.eq_ignore_ascii_case(wanted))
}

/// A compiled sharing stage.
pub struct SharingRules {
    config: SharingRulesConfig,
    author: String,
}

impl SharingRules {
    pub fn new(config: &SharingRulesConfig) -> SharingRules {
        SharingRules {
            author: format!("sharing_rules:{}", config.name),
            config: config.clone(),
        }
    }

    /// What each entry of the stage matches of `snapshot`, matched as [`SharingRules::apply`]
    /// matches them: the schools each `schools` entry names, and how many sections each
    /// `sections` rule and each `except` rule matches.
    pub fn matches(&self, snapshot: &Snapshot) -> SharingMatches {
        let lookup = Lookup::new(snapshot);
        let schools = self
            .config
            .schools
            .iter()
            .map(|wanted| {
                snapshot
                    .schools
                    .iter()
                    .filter(|school| names_school(wanted, school))
                    .map(|school| school.id.clone())
                    .collect()
            })
            .collect();
        let count = |rules: &[Rule]| -> Vec<usize> {
            let mut counts = vec![0; rules.len()];
            for section in &snapshot.sections {
                for (count, rule) in counts.iter_mut().zip(rules) {
                    if rule.matches(section, &lookup) {
                        *count += 1;
                    }
                }
            }
            counts
        };
        SharingMatches {
            schools,
            sections: count(&self.config.sections),
            except: count(&self.config.except),
        }
    }

    pub fn apply(&self, snapshot: &mut Snapshot) {
        let lookup = Lookup::new(snapshot);
        let shared_schools: HashSet<Id> = snapshot
            .schools
            .iter()
            .filter(|school| {
                self.config
                    .schools
                    .iter()
                    .any(|wanted| names_school(wanted, school))
            })
            .map(|school| school.id.clone())
            .collect();
        let verdicts: Vec<Option<String>> = snapshot
            .sections
            .iter()
            .map(|section| self.verdict(section, &shared_schools, &lookup))
            .collect();
        let had_sections = members(snapshot);
        let mut verdicts = verdicts.into_iter();
        let mut decisions = Vec::new();
        snapshot.sections.retain(|section| {
            match verdicts.next().expect("one verdict per section") {
                Some(detail) => {
                    decisions.push(decision(Entity::Class, &section.id, &self.author, detail));
                    false
                }
                None => true,
            }
        });
        // Users follow their sections, each role its own (a student who teaches stays a teacher
        // only through a shared section they teach), except those a whole shared school keeps.
        let still = members(snapshot);
        let kept = |still: &HashSet<Id>, id: &Id, school: &Option<Id>| {
            still.contains(id) || school.as_ref().is_some_and(|s| shared_schools.contains(s))
        };
        let detail = |had: bool| {
            if had {
                "none of their sections is shared".to_owned()
            } else {
                "in no shared section or school".to_owned()
            }
        };
        snapshot.students.retain(|s| {
            let keep = kept(&still.students, &s.id, &s.school);
            if !keep {
                let why = detail(had_sections.students.contains(&s.id));
                decisions.push(decision(Entity::Student, &s.id, &self.author, why));
            }
            keep
        });
        snapshot.teachers.retain(|t| {
            let keep = kept(&still.teachers, &t.id, &t.school);
            if !keep {
                let why = detail(had_sections.teachers.contains(&t.id));
                decisions.push(decision(Entity::Teacher, &t.id, &self.author, why));
            }
            keep
        });
        snapshot.decisions.extend(decisions);
    }

    /// `None` to share the section, or why it is not shared.
    fn verdict(
        &self,
        section: &Section,
        shared_schools: &HashSet<Id>,
        lookup: &Lookup,
    ) -> Option<String> {
        if let Some(index) = self
            .config
            .except
            .iter()
            .position(|rule| rule.matches(section, lookup))
        {
            return Some(format!("matches exception rule except[{index}]"));
        }
        if shared_schools.contains(&section.school) {
            return None;
        }
        if self
            .config
            .sections
            .iter()
            .any(|rule| rule.matches(section, lookup))
        {
            return None;
        }
        Some("its school is not shared and it matches no sharing rule".to_owned())
    }
}

impl Rule {
    fn matches(&self, section: &Section, lookup: &Lookup) -> bool {
        self.conditions
            .iter()
            .all(|condition| condition.matches(&lookup.values(section, &condition.field)))
    }
}

impl Condition {
    /// Tests the condition against every way the field can be named (id, SIS id, name...).
    fn matches(&self, values: &[&str]) -> bool {
        let equals = |wanted: &str| values.iter().any(|v| v.eq_ignore_ascii_case(wanted));
        if let Some(wanted) = &self.is {
            return equals(wanted);
        }
        if let Some(wanted) = &self.is_not {
            return !equals(wanted);
        }
        if let Some(part) = &self.contains {
            let part = part.to_lowercase();
            return values.iter().any(|v| v.to_lowercase().contains(&part));
        }
        if let Some(options) = &self.one_of {
            return options.iter().any(|wanted| equals(wanted));
        }
        false
    }
}

/// The names of schools, courses, terms and teachers, by Clever id.
struct Lookup {
    names: HashMap<String, Vec<String>>,
}

impl Lookup {
    fn new(snapshot: &Snapshot) -> Lookup {
        let mut names: HashMap<String, Vec<String>> = HashMap::new();
        let mut add = |id: &str, values: Vec<Option<&String>>| {
            names.insert(
                id.to_owned(),
                values.into_iter().flatten().cloned().collect(),
            );
        };
        for s in &snapshot.schools {
            add(&s.id, vec![Some(&s.name), s.sis_id.as_ref()]);
        }
        for c in &snapshot.courses {
            add(&c.id, vec![c.name.as_ref(), c.number.as_ref()]);
        }
        for t in &snapshot.terms {
            add(&t.id, vec![t.name.as_ref()]);
        }
        for t in &snapshot.teachers {
            add(&t.id, vec![t.sis_id.as_ref(), t.email.as_ref()]);
        }
        Lookup { names }
    }

    /// Every value a condition on `field` may match for this section.
    fn values<'a>(&'a self, section: &'a Section, field: &str) -> Vec<&'a str> {
        let with_names = |id: &'a str| {
            std::iter::once(id).chain(self.names.get(id).into_iter().flatten().map(String::as_str))
        };
        let text = |value: &'a Option<String>| value.as_deref().into_iter().collect();
        match field {
            "school" => with_names(&section.school).collect(),
            "course" => section
                .course
                .as_deref()
                .into_iter()
                .flat_map(with_names)
                .collect(),
            "term" => section
                .term
                .as_deref()
                .into_iter()
                .flat_map(with_names)
                .collect(),
            "teacher" => section
                .teachers
                .iter()
                .flat_map(|t| with_names(t))
                .collect(),
            "subject" => text(&section.subject),
            "grade" => text(&section.grade),
            "period" => text(&section.period),
            "sis_id" => text(&section.sis_id),
            "section_number" => text(&section.section_number),
            "name" => vec![section.name.as_str()],
            ext => ext
                .strip_prefix("ext.")
                .and_then(|key| section.ext.get(key))
                .map(String::as_str)
                .into_iter()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosterflow_model::{School, Student, Teacher};

    fn section(id: &str, school: &str, subject: &str, grade: &str, students: &[&str]) -> Section {
        Section {
            id: id.into(),
            school: school.into(),
            name: format!("{subject} {grade}"),
            subject: Some(subject.into()),
            grade: Some(grade.into()),
            teachers: vec![format!("t-{id}").into()],
            students: students.iter().map(|s| Id::from(*s)).collect(),
            ..Section::default()
        }
    }

    fn snapshot() -> Snapshot {
        let sections = vec![
            section("m3", "north", "math", "3", &["s1"]),
            section("m7", "north", "math", "7", &["s2"]),
            section("e3", "south", "english/language arts", "3", &["s1", "s3"]),
            section("m4", "south", "math", "4", &["s3"]),
        ];
        Snapshot {
            schools: ["north", "south"]
                .map(|id| School {
                    id: id.into(),
                    name: format!("{id} elementary"),
                    ..School::default()
                })
                .to_vec(),
            teachers: sections
                .iter()
                .map(|s| Teacher {
                    id: format!("t-{}", s.id).into(),
                    school: Some(s.school.clone()),
                    ..Teacher::default()
                })
                .collect(),
            students: ["s1", "s2", "s3", "s4"]
                .map(|id| Student {
                    id: id.into(),
                    school: Some(if id == "s4" { "south" } else { "north" }.into()),
                    ..Student::default()
                })
                .to_vec(),
            sections,
            ..Snapshot::default()
        }
    }

    fn config(text: &str) -> SharingRulesConfig {
        toml::from_str(text).expect("valid sharing rules")
    }

    fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
        items.iter().map(|i| id(i).to_owned()).collect()
    }

    #[test]
    fn math_in_grades_three_to_six_except_one_school() {
        let rules = config(
            r#"
            [[sections]]
            where = [{ field = "subject", is = "Math" }, { field = "grade", in = ["3", "4", "5", "6"] }]
            [[except]]
            where = [{ field = "school", is = "south elementary" }]
            "#,
        );
        let mut snapshot = snapshot();
        SharingRules::new(&rules).apply(&mut snapshot);
        assert_eq!(ids(&snapshot.sections, |s| &s.id), ["m3"]);
        assert_eq!(ids(&snapshot.students, |s| &s.id), ["s1"]);
        assert_eq!(ids(&snapshot.teachers, |t| &t.id), ["t-m3"]);
        let dropped: Vec<_> = snapshot.decisions.iter().map(|d| d.id.as_str()).collect();
        assert!(
            dropped.contains(&"m7") && dropped.contains(&"s4"),
            "{dropped:?}"
        );
    }

    #[test]
    fn a_whole_school_keeps_its_users_without_sections() {
        let rules = config(r#"schools = ["south"]"#);
        let mut snapshot = snapshot();
        SharingRules::new(&rules).apply(&mut snapshot);
        assert_eq!(ids(&snapshot.sections, |s| &s.id), ["e3", "m4"]);
        // s1 follows e3 from the north school; s4 is in the shared school with no section.
        assert_eq!(ids(&snapshot.students, |s| &s.id), ["s1", "s3", "s4"]);
    }

    /// A student who also teaches follows each role's own sections: s1 learns in shared m3 and
    /// teaches in m7, which is not shared, so s1 stays a student and is no teacher.
    #[test]
    fn a_student_who_teaches_keeps_only_the_shared_role() {
        let rules = config(
            r#"schools = ["south"]
[[sections]]
where = [{ field = "grade", is = "3" }]"#,
        );
        let mut snapshot = snapshot();
        snapshot.sections[1].teachers.push("s1".into());
        snapshot.teachers.push(Teacher {
            id: "s1".into(),
            school: Some("north".into()),
            ..Teacher::default()
        });
        SharingRules::new(&rules).apply(&mut snapshot);
        assert_eq!(ids(&snapshot.sections, |s| &s.id), ["m3", "e3", "m4"]);
        assert!(snapshot.students.iter().any(|s| s.id == "s1"));
        assert!(snapshot.teachers.iter().all(|t| t.id != "s1"));
    }

    #[test]
    fn a_rule_with_two_operators_is_rejected() {
        let rules = config(
            r#"
            [[sections]]
            where = [{ field = "subject", is = "math", contains = "ma" }, { field = "colour", is = "red" }]
            "#,
        );
        assert_eq!(rules.validate().len(), 2, "{:?}", rules.validate());
    }
}
