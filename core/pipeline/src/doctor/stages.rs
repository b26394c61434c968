//! The pipeline's transforms, run stage by stage as a run runs them, each one watched: what
//! each sharing rule and filter entry matches of the roster the stage receives, which sections a
//! plugin drops, and which teachers lose every section to a plugin.
//!
//! What each sharing rule and filter entry matches is counted by the stage itself
//! ([`SharingRules::matches`], [`Filter::matches`]), so the doctor can never match otherwise than
//! a run. A filter's teachers who lose every section are not watched: the filter drops them with
//! their sections, on purpose (a specials filter), as a run does.

use rustc_hash::{FxHashMap, FxHashSet};

use super::Example;
use super::checks::{section_example, teacher_example};
use crate::config::Pipeline;
use rosterflow_model::{Id, Snapshot};
use rosterflow_transform::filter::{Filter, FilterConfig};
use rosterflow_transform::plugin::Plugins;
use rosterflow_transform::sharing_rules::{Condition, Rule, SharingRules, SharingRulesConfig};
use rosterflow_transform::{TransformConfig, TransformError, Transforms};

/// The kind of a transform stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StageKind {
    SharingRules,
    Filter,
    Plugin,
}

/// What one stage did to the roster it received.
#[derive(Debug, Clone)]
pub(crate) struct StageReport {
    /// `transform[0] filter:specials`
    pub label: String,
    pub kind: StageKind,
    /// What each rule or entry of a sharing or filter stage matches.
    pub items: Vec<ItemMatch>,
    /// Sections the stage received.
    pub sections_in: usize,
    /// The sections a plugin stage dropped (none are listed for other stages).
    pub dropped_sections: Vec<Example>,
    /// Teachers of a plugin stage who had sections, lost every one of them to the stage, and
    /// were not dropped themselves.
    pub orphaned_teachers: Vec<Example>,
}

/// What one rule or entry of a stage matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemMatch {
    /// Where it is in its stage: `sections[0]`, `section_subjects[1]`.
    pub item: String,
    /// The rule or entry, as written: `subject is "math"`, `"PE and health"`.
    pub rule: String,
    pub matched: usize,
    /// Of how many (sections, teachers, schools) the stage received.
    pub of: usize,
    /// `sections`, `teachers` or `schools`.
    pub unit: &'static str,
    /// What matching nothing means, when that is worth reporting: `shares no section`.
    pub nothing: Option<&'static str>,
    /// What matching everything means, when that is worth reporting: `drops every section`.
    pub everything: Option<&'static str>,
}

/// Runs the pipeline's transforms on `roster`, stage by stage, as a run would.
pub(crate) fn run(
    pipeline: &Pipeline,
    plugins: &Plugins,
    roster: &mut Snapshot,
) -> Result<Vec<StageReport>, TransformError> {
    let mut reports = Vec::new();
    for (index, config) in pipeline.file.transform.iter().enumerate() {
        let stage = Transforms::build(std::slice::from_ref(config), plugins)?;
        let (label, kind, items) = match config {
            TransformConfig::SharingRules(config) => (
                format!("transform[{index}] sharing_rules:{}", config.name),
                StageKind::SharingRules,
                rosterflow_model::blocking(|| sharing_items(config, roster)),
            ),
            TransformConfig::Filter(config) => (
                format!("transform[{index}] filter:{}", config.name),
                StageKind::Filter,
                rosterflow_model::blocking(|| filter_items(config, roster))?,
            ),
            TransformConfig::Plugin(config) => (
                format!("transform[{index}] plugin:{}", config.name),
                StageKind::Plugin,
                Vec::new(),
            ),
        };
        let sections_in = roster.sections.len();
        let watch = (kind == StageKind::Plugin).then(|| Watch::before(roster));
        rosterflow_model::blocking(|| stage.apply(roster))?;
        let (dropped_sections, orphaned_teachers) = match watch {
            Some(watch) => watch.after(roster),
            None => Default::default(),
        };
        reports.push(StageReport {
            label,
            kind,
            items,
            sections_in,
            dropped_sections,
            orphaned_teachers,
        });
    }
    Ok(reports)
}

/// The roster a plugin stage received, as much as is needed to tell what it dropped.
struct Watch {
    /// Each teacher in a section, with the sections they are in.
    teachers: Vec<(Example, Vec<Id>)>,
    /// The sections.
    sections: Vec<(Id, Example)>,
}

impl Watch {
    fn before(roster: &Snapshot) -> Watch {
        let mut of_teacher: FxHashMap<&str, Vec<Id>> = FxHashMap::default();
        for section in &roster.sections {
            for teacher in &section.teachers {
                of_teacher
                    .entry(teacher.as_str())
                    .or_default()
                    .push(section.id.clone());
            }
        }
        let teachers = roster
            .teachers
            .iter()
            .filter_map(|teacher| {
                let sections = of_teacher.remove(teacher.id.as_str())?;
                Some((teacher_example(teacher, None), sections))
            })
            .collect();
        let sections = roster
            .sections
            .iter()
            .map(|section| (section.id.clone(), section_example(section, None)))
            .collect();
        Watch { teachers, sections }
    }

    /// The sections the plugin dropped, and the teachers who lost every section (and were not
    /// dropped themselves).
    fn after(self, roster: &Snapshot) -> (Vec<Example>, Vec<Example>) {
        let sections: FxHashSet<&str> = roster.sections.iter().map(|s| s.id.as_str()).collect();
        let teachers: FxHashSet<&str> = roster.teachers.iter().map(|t| t.id.as_str()).collect();
        let orphaned = self
            .teachers
            .into_iter()
            .filter(|(teacher, their)| {
                let id = teacher.source_id.as_deref().unwrap_or_default();
                teachers.contains(id) && their.iter().all(|s| !sections.contains(s.as_str()))
            })
            .map(|(mut teacher, their)| {
                teacher.detail = Some(format!(
                    "{} of theirs dropped",
                    super::checks::plural(their.len(), "section", "sections")
                ));
                teacher
            })
            .collect();
        let dropped_sections = self
            .sections
            .into_iter()
            .filter(|(id, _)| !sections.contains(id.as_str()))
            .map(|(_, example)| example)
            .collect();
        (dropped_sections, orphaned)
    }
}

/// What each school entry and rule of a sharing stage matches, as the stage counts it.
fn sharing_items(config: &SharingRulesConfig, roster: &Snapshot) -> Vec<ItemMatch> {
    let matches = SharingRules::new(config).matches(roster);
    let mut items = Vec::new();
    let mut shared_schools: FxHashSet<&str> = FxHashSet::default();
    for (index, (wanted, named)) in config.schools.iter().zip(&matches.schools).enumerate() {
        items.push(ItemMatch {
            item: format!("schools[{index}]"),
            rule: format!("{wanted:?}"),
            matched: named.len(),
            of: roster.schools.len(),
            unit: "schools",
            nothing: Some("names no school"),
            everything: None,
        });
        shared_schools.extend(named.iter().map(Id::as_str));
    }
    if !config.schools.is_empty() {
        let in_shared = roster
            .sections
            .iter()
            .filter(|s| shared_schools.contains(s.school.as_str()))
            .count();
        items.push(ItemMatch {
            item: "schools".to_owned(),
            rule: format!("{:?}", config.schools),
            matched: in_shared,
            of: roster.sections.len(),
            unit: "sections",
            nothing: None,
            everything: Some("shares every section, whole schools"),
        });
    }
    let lists = [
        (
            "sections",
            &config.sections,
            &matches.sections,
            "shares no section",
            "shares every section",
        ),
        (
            "except",
            &config.except,
            &matches.except,
            "excepts no section",
            "excepts every section: the stage shares none",
        ),
    ];
    for (list, rules, counts, nothing, everything) in lists {
        for (index, (rule, matched)) in rules.iter().zip(counts).enumerate() {
            items.push(ItemMatch {
                item: format!("{list}[{index}]"),
                rule: describe_rule(rule),
                matched: *matched,
                of: roster.sections.len(),
                unit: "sections",
                nothing: Some(nothing),
                everything: Some(everything),
            });
        }
    }
    items
}

/// A rule as a person reads it: `subject is "math" and grade in ["3", "4"]`.
fn describe_rule(rule: &Rule) -> String {
    let describe = |c: &Condition| {
        let field = &c.field;
        if let Some(value) = &c.is {
            format!("{field} is {value:?}")
        } else if let Some(value) = &c.is_not {
            format!("{field} is not {value:?}")
        } else if let Some(value) = &c.contains {
            format!("{field} contains {value:?}")
        } else if let Some(values) = &c.one_of {
            format!("{field} in {values:?}")
        } else {
            field.clone()
        }
    };
    rule.conditions
        .iter()
        .map(describe)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// What each entry of a filter stage matches, as the filter counts it.
fn filter_items(
    config: &FilterConfig,
    roster: &Snapshot,
) -> Result<Vec<ItemMatch>, TransformError> {
    let filter = Filter::new(config)?;
    Ok(filter
        .matches(roster)
        .into_iter()
        .map(|entry| {
            let (of, unit, nothing, everything) = if entry.sections {
                (
                    roster.sections.len(),
                    "sections",
                    "drops no section",
                    "drops every section",
                )
            } else {
                (
                    roster.teachers.len(),
                    "teachers",
                    "drops no teacher",
                    "drops every teacher",
                )
            };
            ItemMatch {
                item: format!("{}[{}]", entry.list, entry.index),
                rule: format!("{:?}", entry.entry),
                matched: entry.matched.len(),
                of,
                unit,
                nothing: Some(nothing),
                everything: Some(everything),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosterflow_model::{Course, School, Section, Teacher};

    fn roster() -> Snapshot {
        let section = |id: &str, name: &str, subject: &str, teacher: &str| Section {
            id: id.into(),
            school: "sch1".into(),
            name: name.into(),
            sis_id: Some(format!("SIS-{id}")),
            subject: Some(subject.into()),
            course: Some("c1".into()),
            teachers: vec![teacher.into()],
            students: vec!["st1".into()],
            ..Section::default()
        };
        Snapshot {
            schools: vec![School {
                id: "sch1".into(),
                name: "Lincoln Elementary".into(),
                sis_id: Some("100".into()),
                ..School::default()
            }],
            courses: vec![Course {
                id: "c1".into(),
                name: Some("Math 3".into()),
                ..Course::default()
            }],
            sections: vec![
                section("s1", "Math 3 - Lee", "math", "t1"),
                section("s2", "PE 3 - Ortiz", "PE and health", "t2"),
            ],
            teachers: vec![
                Teacher {
                    id: "t1".into(),
                    title: Some("Teacher".into()),
                    email: Some("Lee@x.org".into()),
                    ..Teacher::default()
                },
                Teacher {
                    id: "t2".into(),
                    title: Some("PE Teacher".into()),
                    ..Teacher::default()
                },
            ],
            ..Snapshot::default()
        }
    }

    fn matched(items: &[ItemMatch]) -> Vec<(String, usize, usize)> {
        items
            .iter()
            .map(|i| (i.item.clone(), i.matched, i.of))
            .collect()
    }

    #[test]
    fn each_filter_entry_is_matched_as_the_filter_matches_it() {
        let config: FilterConfig = toml::from_str(
            r#"
            section_subjects = ["pe AND health", "Physical Education"]
            section_name_patterns = [".*"]
            course_name_patterns = ["^Math"]
            section_sis_ids = ["SIS-s1", "nope"]
            teacher_title_patterns = ["(?i)^pe "]
            teacher_emails = ["LEE@X.ORG"]
            "#,
        )
        .expect("a filter");
        let items = filter_items(&config, &roster()).expect("compiles");
        assert_eq!(
            matched(&items),
            [
                ("section_subjects[0]".to_owned(), 1, 2),
                ("section_subjects[1]".to_owned(), 0, 2),
                ("section_name_patterns[0]".to_owned(), 2, 2),
                ("course_name_patterns[0]".to_owned(), 2, 2),
                ("section_sis_ids[0]".to_owned(), 1, 2),
                ("section_sis_ids[1]".to_owned(), 0, 2),
                ("teacher_title_patterns[0]".to_owned(), 1, 2),
                ("teacher_emails[0]".to_owned(), 1, 2),
            ]
        );
    }

    /// Found in review: the doctor matched subjects ignoring Unicode case where the filter
    /// ignores only ASCII case, so it counted sections the filter keeps.
    #[test]
    fn a_subject_is_matched_as_the_filter_matches_it_ascii_case_only() {
        let config: FilterConfig =
            toml::from_str(r#"section_subjects = ["éducation PHYSIQUE"]"#).expect("a filter");
        let mut roster = roster();
        roster.sections[1].subject = Some("Éducation physique".into());
        let items = filter_items(&config, &roster).expect("compiles");
        assert_eq!(matched(&items), [("section_subjects[0]".to_owned(), 0, 2)]);
        Filter::new(&config).expect("compiles").apply(&mut roster);
        assert_eq!(roster.sections.len(), 2, "the filter keeps it too");
    }

    #[test]
    fn each_sharing_rule_is_matched_by_the_sharing_stage() {
        let config: SharingRulesConfig = toml::from_str(
            r#"
            schools = ["lincoln elementary", "Lincon Elementary"]
            [[sections]]
            where = [{ field = "subject", is = "maths" }]
            [[sections]]
            where = [{ field = "name", is_not = "no such section" }]
            [[except]]
            where = [{ field = "teacher", in = ["lee@x.org"] }]
            "#,
        )
        .expect("sharing rules");
        let items = sharing_items(&config, &roster());
        assert_eq!(
            matched(&items),
            [
                ("schools[0]".to_owned(), 1, 1),
                ("schools[1]".to_owned(), 0, 1),
                ("schools".to_owned(), 2, 2),
                ("sections[0]".to_owned(), 0, 2),
                ("sections[1]".to_owned(), 2, 2),
                ("except[0]".to_owned(), 1, 2),
            ]
        );
        assert_eq!(items[3].rule, "subject is \"maths\"");
        assert_eq!(items[5].rule, "teacher in [\"lee@x.org\"]");
    }
}
