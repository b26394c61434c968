//! The pipeline's transforms, run stage by stage as a run runs them, each one watched: what
//! each sharing rule and filter entry matches of the roster the stage receives, which sections a
//! plugin drops, and which teachers lose every section to a stage.
//!
//! Filter entries are matched here as the filter matches them (subjects and emails ignoring
//! case, patterns as regular expressions); sharing rules are matched by the sharing stage itself,
//! one rule at a time, on a copy of the sections without their students.

use std::collections::BTreeMap;

use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};

use super::Example;
use super::checks::{section_example, teacher_example};
use crate::config::Pipeline;
use rosterflow_model::{Id, Section, Snapshot};
use rosterflow_transform::filter::FilterConfig;
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
    /// Teachers of a filter or plugin stage who had sections, lost every one of them to the
    /// stage, and were not dropped themselves.
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
        let (label, kind, items, dropped) = match config {
            TransformConfig::SharingRules(config) => (
                format!("transform[{index}] sharing_rules:{}", config.name),
                StageKind::SharingRules,
                rosterflow_model::blocking(|| sharing_items(config, roster)),
                FxHashSet::default(),
            ),
            TransformConfig::Filter(config) => {
                let (items, dropped) = rosterflow_model::blocking(|| filter_items(config, roster));
                (
                    format!("transform[{index}] filter:{}", config.name),
                    StageKind::Filter,
                    items,
                    dropped,
                )
            }
            TransformConfig::Plugin(config) => (
                format!("transform[{index}] plugin:{}", config.name),
                StageKind::Plugin,
                Vec::new(),
                FxHashSet::default(),
            ),
        };
        let sections_in = roster.sections.len();
        let watch = (kind != StageKind::SharingRules)
            .then(|| Watch::before(roster, kind == StageKind::Plugin));
        rosterflow_model::blocking(|| stage.apply(roster))?;
        let (dropped_sections, orphaned_teachers) = match watch {
            Some(watch) => watch.after(roster, kind, &dropped),
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

/// The roster a stage received, as much as is needed to tell what it dropped.
struct Watch {
    /// Each teacher in a section, with the sections they are in.
    teachers: Vec<(Example, Vec<Id>)>,
    /// The sections, for a plugin stage.
    sections: Vec<(Id, Example)>,
}

impl Watch {
    fn before(roster: &Snapshot, plugin: bool) -> Watch {
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
        let sections = if plugin {
            roster
                .sections
                .iter()
                .map(|section| (section.id.clone(), section_example(section, None)))
                .collect()
        } else {
            Vec::new()
        };
        Watch { teachers, sections }
    }

    /// The sections a plugin dropped, and the teachers who lost every section (and were not
    /// dropped themselves: by a filter's teacher entries, `dropped`, or by a plugin).
    fn after(
        self,
        roster: &Snapshot,
        kind: StageKind,
        dropped: &FxHashSet<Id>,
    ) -> (Vec<Example>, Vec<Example>) {
        let sections: FxHashSet<&str> = roster.sections.iter().map(|s| s.id.as_str()).collect();
        let teachers: FxHashSet<&str> = roster.teachers.iter().map(|t| t.id.as_str()).collect();
        let orphaned = self
            .teachers
            .into_iter()
            .filter(|(teacher, their)| {
                let id = teacher.source_id.as_deref().unwrap_or_default();
                let dropped_themselves = match kind {
                    StageKind::Plugin => !teachers.contains(id),
                    _ => dropped.contains(id),
                };
                !dropped_themselves && their.iter().all(|s| !sections.contains(s.as_str()))
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

/// What each school entry and rule of a sharing stage matches.
fn sharing_items(config: &SharingRulesConfig, roster: &Snapshot) -> Vec<ItemMatch> {
    let mut items = Vec::new();
    let mut shared_schools = FxHashSet::default();
    for (index, wanted) in config.schools.iter().enumerate() {
        let named: Vec<&str> = roster
            .schools
            .iter()
            .filter(|school| {
                [
                    Some(school.id.as_str()),
                    Some(school.name.as_str()),
                    school.sis_id.as_deref(),
                ]
                .into_iter()
                .flatten()
                .any(|value| value.eq_ignore_ascii_case(wanted))
            })
            .map(|school| school.id.as_str())
            .collect();
        items.push(ItemMatch {
            item: format!("schools[{index}]"),
            rule: format!("{wanted:?}"),
            matched: named.len(),
            of: roster.schools.len(),
            unit: "schools",
            nothing: Some("names no school"),
            everything: None,
        });
        shared_schools.extend(named);
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
    if config.sections.is_empty() && config.except.is_empty() {
        return items;
    }
    let probe = probe_of(roster);
    let lists = [
        (
            "sections",
            &config.sections,
            "shares no section",
            "shares every section",
        ),
        (
            "except",
            &config.except,
            "excepts no section",
            "excepts every section: the stage shares none",
        ),
    ];
    for (list, rules, nothing, everything) in lists {
        for (index, rule) in rules.iter().enumerate() {
            items.push(ItemMatch {
                item: format!("{list}[{index}]"),
                rule: describe_rule(rule),
                matched: sections_matching(&probe, rule),
                of: roster.sections.len(),
                unit: "sections",
                nothing: Some(nothing),
                everything: Some(everything),
            });
        }
    }
    items
}

/// The sections of `roster` that `rule` matches, counted by the sharing stage itself.
fn sections_matching(probe: &Snapshot, rule: &Rule) -> usize {
    let only = SharingRules::new(&SharingRulesConfig {
        name: "doctor".to_owned(),
        schools: Vec::new(),
        sections: vec![rule.clone()],
        except: Vec::new(),
    });
    let mut probe = probe.clone();
    only.apply(&mut probe);
    probe.sections.len()
}

/// What a sharing rule sees of a roster (the sections without their students, and what
/// conditions name: schools, courses, terms, teachers).
fn probe_of(roster: &Snapshot) -> Snapshot {
    Snapshot {
        district: roster.district.clone(),
        schools: roster.schools.clone(),
        terms: roster.terms.clone(),
        courses: roster.courses.clone(),
        teachers: roster.teachers.clone(),
        sections: roster
            .sections
            .iter()
            .map(|s| Section {
                id: s.id.clone(),
                school: s.school.clone(),
                name: s.name.clone(),
                sis_id: s.sis_id.clone(),
                subject: s.subject.clone(),
                grade: s.grade.clone(),
                period: s.period.clone(),
                section_number: s.section_number.clone(),
                term: s.term.clone(),
                course: s.course.clone(),
                teachers: s.teachers.clone(),
                students: Vec::new(),
                ext: s.ext.clone(),
                source: s.source.clone(),
                member_sources: BTreeMap::new(),
            })
            .collect(),
        ..Snapshot::default()
    }
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

/// What each entry of a filter stage matches, and the teachers its teacher entries drop.
fn filter_items(config: &FilterConfig, roster: &Snapshot) -> (Vec<ItemMatch>, FxHashSet<Id>) {
    let sections = roster.sections.len();
    let teachers = roster.teachers.len();
    let mut items = Vec::new();
    let mut push =
        |list: &str, index: usize, entry: &str, matched: usize, sections_not_teachers| {
            let (of, unit, nothing, everything) = if sections_not_teachers {
                (
                    sections,
                    "sections",
                    "drops no section",
                    "drops every section",
                )
            } else {
                (
                    teachers,
                    "teachers",
                    "drops no teacher",
                    "drops every teacher",
                )
            };
            items.push(ItemMatch {
                item: format!("{list}[{index}]"),
                rule: format!("{entry:?}"),
                matched,
                of,
                unit,
                nothing: Some(nothing),
                everything: Some(everything),
            });
        };
    let mut subjects: FxHashMap<String, usize> = FxHashMap::default();
    let mut section_sis_ids: FxHashMap<&str, usize> = FxHashMap::default();
    for section in &roster.sections {
        if let Some(subject) = &section.subject {
            *subjects.entry(subject.to_lowercase()).or_default() += 1;
        }
        if let Some(sis_id) = &section.sis_id {
            *section_sis_ids.entry(sis_id).or_default() += 1;
        }
    }
    for (index, subject) in config.section_subjects.iter().enumerate() {
        let matched = subjects
            .get(&subject.to_lowercase())
            .copied()
            .unwrap_or_default();
        push("section_subjects", index, subject, matched, true);
    }
    for (index, pattern) in config.section_name_patterns.iter().enumerate() {
        let matched = Regex::new(pattern).map_or(0, |regex| {
            roster
                .sections
                .iter()
                .filter(|s| regex.is_match(&s.name))
                .count()
        });
        push("section_name_patterns", index, pattern, matched, true);
    }
    let course_names: FxHashMap<&str, &str> = roster
        .courses
        .iter()
        .filter_map(|c| Some((c.id.as_str(), c.name.as_deref()?)))
        .collect();
    for (index, pattern) in config.course_name_patterns.iter().enumerate() {
        let matched = Regex::new(pattern).map_or(0, |regex| {
            roster
                .sections
                .iter()
                .filter_map(|s| course_names.get(s.course.as_deref()?))
                .filter(|name| regex.is_match(name))
                .count()
        });
        push("course_name_patterns", index, pattern, matched, true);
    }
    for (index, sis_id) in config.section_sis_ids.iter().enumerate() {
        let matched = section_sis_ids
            .get(sis_id.as_str())
            .copied()
            .unwrap_or_default();
        push("section_sis_ids", index, sis_id, matched, true);
    }
    let mut dropped = FxHashSet::default();
    for (index, pattern) in config.teacher_title_patterns.iter().enumerate() {
        let matching: Vec<&Id> = Regex::new(pattern).map_or_else(
            |_| Vec::new(),
            |regex| {
                roster
                    .teachers
                    .iter()
                    .filter(|t| {
                        t.title
                            .as_deref()
                            .is_some_and(|title| regex.is_match(title))
                    })
                    .map(|t| &t.id)
                    .collect()
            },
        );
        push(
            "teacher_title_patterns",
            index,
            pattern,
            matching.len(),
            false,
        );
        dropped.extend(matching.into_iter().cloned());
    }
    let mut by_sis_id: FxHashMap<&str, Vec<&Id>> = FxHashMap::default();
    let mut by_email: FxHashMap<String, Vec<&Id>> = FxHashMap::default();
    for teacher in &roster.teachers {
        if let Some(sis_id) = &teacher.sis_id {
            by_sis_id.entry(sis_id).or_default().push(&teacher.id);
        }
        if let Some(email) = &teacher.email {
            by_email
                .entry(email.to_lowercase())
                .or_default()
                .push(&teacher.id);
        }
    }
    for (index, sis_id) in config.teacher_sis_ids.iter().enumerate() {
        let matching = by_sis_id.get(sis_id.as_str()).cloned().unwrap_or_default();
        push("teacher_sis_ids", index, sis_id, matching.len(), false);
        dropped.extend(matching.into_iter().cloned());
    }
    for (index, email) in config.teacher_emails.iter().enumerate() {
        let matching = by_email
            .get(&email.to_lowercase())
            .cloned()
            .unwrap_or_default();
        push("teacher_emails", index, email, matching.len(), false);
        dropped.extend(matching.into_iter().cloned());
    }
    (items, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosterflow_model::{Course, School, Teacher};

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
        let (items, dropped) = filter_items(&config, &roster());
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
        let mut dropped: Vec<&str> = dropped.iter().map(Id::as_str).collect();
        dropped.sort();
        assert_eq!(dropped, ["t1", "t2"]);
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
