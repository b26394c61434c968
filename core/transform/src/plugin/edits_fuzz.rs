//! Fuzzing what a plugin returns, on the host side: any list of edits (indices out of range or
//! at `u32::MAX`, the same record dropped twice, a member listed twice, keys reused, huge or
//! odd strings) against any small snapshot. Validation refuses it with a clear error naming
//! the edit, or it applies without a panic and leaves a snapshot whose every reference holds.
//!
//! A fixed, small number of cases per run; `PROPTEST_CASES=10000 cargo test -p
//! rosterflow-transform edits_fuzz` tries more. A failing case is kept in
//! `proptest-regressions/`.

use std::collections::HashSet;

use proptest::prelude::*;
use rosterflow_model::{School, Section, Snapshot, Student, Teacher, Term};

use super::PluginError;
use super::bindings::v0_1_0::wire;
use super::edit;

/// `cases` per test, unless `PROPTEST_CASES` says otherwise.
fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

const PLUGIN: &str = "groups";

/// A small snapshot whose references hold, one section sometimes named as a group would be.
fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        1usize..3,
        0usize..3,
        prop_oneof![1 => Just(0usize), 6 => 1usize..6],
        prop_oneof![1 => Just(0usize), 6 => 1usize..8],
        prop_oneof![1 => Just(0usize), 6 => 1usize..5],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(schools, terms, sections, students, teachers, taken)| {
            let schools: Vec<School> = (0..schools.max(1))
                .map(|i| School {
                    id: format!("sc{i}").into(),
                    ..School::default()
                })
                .collect();
            let students: Vec<Student> = (0..students)
                .map(|i| Student {
                    id: format!("st{i}").into(),
                    ..Student::default()
                })
                .collect();
            let teachers: Vec<Teacher> = (0..teachers)
                .map(|i| Teacher {
                    id: format!("te{i}").into(),
                    ..Teacher::default()
                })
                .collect();
            let sections = (0..sections)
                .map(|i| Section {
                    id: if taken && i == 0 {
                        format!("plugin:{PLUGIN}:g0").into()
                    } else {
                        format!("se{i}").into()
                    },
                    school: schools[i % schools.len()].id.clone(),
                    name: format!("Section {i}"),
                    students: students
                        .iter()
                        .step_by(i + 1)
                        .map(|s| s.id.clone())
                        .collect(),
                    teachers: teachers.iter().take(i).map(|t| t.id.clone()).collect(),
                    ..Section::default()
                })
                .collect();
            Snapshot {
                schools,
                terms: (0..terms)
                    .map(|i| Term {
                        id: format!("tm{i}").into(),
                        ..Term::default()
                    })
                    .collect(),
                sections,
                students,
                teachers,
                ..Snapshot::default()
            }
        })
}

/// The sizes of a snapshot's tables, which indices into them are drawn for.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    schools: u32,
    terms: u32,
    sections: u32,
    students: u32,
    teachers: u32,
}

impl Sizes {
    fn of(s: &Snapshot) -> Sizes {
        let len = |n: usize| u32::try_from(n).expect("a small snapshot");
        Sizes {
            schools: len(s.schools.len()),
            terms: len(s.terms.len()),
            sections: len(s.sections.len()),
            students: len(s.students.len()),
            teachers: len(s.teachers.len()),
        }
    }
}

/// An index into a table of `len` records: mostly in range, sometimes just past it or the
/// largest there is.
fn index(len: u32) -> impl Strategy<Value = u32> {
    prop_oneof![
        60 => 0..len.max(1),
        1 => len..len + 3,
        1 => Just(u32::MAX),
    ]
}

/// Text as a plugin may send it: mostly plain.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => "[A-Za-z0-9][A-Za-z0-9 ._-]{0,11}",
        1 => Just(String::new()),
        1 => Just("   ".to_owned()),
        1 => Just("a\nb".to_owned()),
        1 => Just("\u{0}".to_owned()),
        1 => Just("\u{202e}é漢🦀".to_owned()),
        1 => (1000usize..1100).prop_map(|n| "x".repeat(n)),
        1 => (1usize..100_000).prop_map(|n| "k".repeat(n)),
        1 => any::<String>(),
    ]
}

/// A group key: mostly well formed, sometimes reused.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => "[a-z0-9][a-z0-9._-]{0,8}",
        3 => prop::sample::select(vec!["g0", "g1", "a.b"]).prop_map(str::to_owned),
        1 => text(),
    ]
}

fn member(sizes: Sizes) -> impl Strategy<Value = wire::Member> {
    prop_oneof![
        index(sizes.students).prop_map(wire::Member::Student),
        index(sizes.teachers).prop_map(wire::Member::Teacher),
    ]
}

fn attribute() -> impl Strategy<Value = wire::Attribute> {
    prop_oneof![
        text().prop_map(wire::Attribute::Name),
        prop::option::of(text()).prop_map(wire::Attribute::Subject),
        prop::option::of(text()).prop_map(wire::Attribute::Grade),
        prop::option::of(text()).prop_map(wire::Attribute::Period),
        (key(), prop::option::of(text()))
            .prop_map(|(key, value)| wire::Attribute::Ext(wire::ExtField { key, value })),
    ]
}

/// A list of indices, sometimes naming one record twice.
fn indices(len: u32, most: usize) -> impl Strategy<Value = Vec<u32>> {
    prop_oneof![
        8 => prop::sample::subsequence((0..len).collect::<Vec<u32>>(), 0..=(len as usize).min(most)),
        1 => prop::collection::vec(index(len), 0..most),
    ]
}

fn edit(sizes: Sizes) -> impl Strategy<Value = wire::Edit> {
    let group = (
        (
            key(),
            text(),
            index(sizes.schools),
            prop::option::of(text()),
        ),
        (
            prop::option::of(index(sizes.terms)),
            prop::option::weighted(0.05, index(0)),
        ),
        (indices(sizes.teachers, 4), indices(sizes.students, 6)),
    )
        .prop_map(
            |((key, name, school, subject), (term, course), (teachers, students))| {
                wire::Edit::CreateGroup(wire::Group {
                    key,
                    name,
                    school,
                    subject,
                    grade: None,
                    period: Some("2".into()),
                    term,
                    course,
                    teachers,
                    students,
                })
            },
        );
    prop_oneof![
        2 => group,
        2 => (index(sizes.sections), member(sizes))
            .prop_map(|(section, member)| wire::Edit::AddMember(wire::Membership { section, member })),
        2 => (index(sizes.sections), member(sizes)).prop_map(|(section, member)| {
            wire::Edit::RemoveMember(wire::Membership { section, member })
        }),
        1 => index(sizes.sections).prop_map(wire::Edit::DropSection),
        1 => index(sizes.students).prop_map(wire::Edit::DropStudent),
        1 => index(sizes.teachers).prop_map(wire::Edit::DropTeacher),
        2 => (index(sizes.sections), attribute()).prop_map(|(section, attribute)| {
            wire::Edit::SetAttribute(wire::AttributeChange { section, attribute })
        }),
    ]
}

/// A snapshot and edits for it.
fn case() -> impl Strategy<Value = (Snapshot, Vec<wire::Edit>)> {
    snapshot().prop_flat_map(|snapshot| {
        let sizes = Sizes::of(&snapshot);
        (Just(snapshot), prop::collection::vec(edit(sizes), 0..10))
    })
}

/// After edits apply, every reference of the snapshot still holds.
fn check_references(s: &Snapshot) -> Result<(), TestCaseError> {
    let ids = |ids: Vec<&str>| -> Result<HashSet<String>, TestCaseError> {
        let set: HashSet<String> = ids.iter().map(|id| id.to_string()).collect();
        prop_assert_eq!(set.len(), ids.len(), "an id twice: {:?}", ids);
        Ok(set)
    };
    let schools = ids(s.schools.iter().map(|r| r.id.as_str()).collect())?;
    let terms = ids(s.terms.iter().map(|r| r.id.as_str()).collect())?;
    let students = ids(s.students.iter().map(|r| r.id.as_str()).collect())?;
    let teachers = ids(s.teachers.iter().map(|r| r.id.as_str()).collect())?;
    ids(s.sections.iter().map(|r| r.id.as_str()).collect())?;
    for section in &s.sections {
        prop_assert!(schools.contains(section.school.as_str()));
        prop_assert!(section.term.as_deref().is_none_or(|t| terms.contains(t)));
        prop_assert!(section.course.is_none(), "the snapshot has no courses");
        let members = ids(section.students.iter().map(|m| m.as_str()).collect())?;
        prop_assert!(members.is_subset(&students), "{:?}", section.students);
        ids(section.teachers.iter().map(|m| m.as_str()).collect())?;
        // A dropped primary teacher keeps its place (the first), which the plan passes over.
        let members: HashSet<String> = section
            .teachers
            .iter()
            .skip(1)
            .map(|m| m.to_string())
            .collect();
        prop_assert!(members.is_subset(&teachers), "{:?}", section.teachers);
        prop_assert!(!section.name.trim().is_empty());
        for id in section.member_sources.keys() {
            prop_assert!(section.students.contains(id) || section.teachers.contains(id));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn any_edits_are_refused_clearly_or_applied_whole((snapshot, edits) in case()) {
        let _ = edit::output_bytes(&edits);
        match edit::validate(PLUGIN, &edits, &snapshot) {
            Err(PluginError::InvalidEdit { plugin, index, reason }) => {
                prop_assert_eq!(plugin, PLUGIN);
                prop_assert!(index < edits.len());
                prop_assert!(!reason.trim().is_empty());
                prop_assert!(reason.len() <= 1200, "a reason of {} bytes", reason.len());
                prop_assert!(!reason.contains(['\n', '\r']), "{:?}", reason);
            }
            Err(other) => prop_assert!(false, "not an invalid edit: {other}"),
            Ok(()) => {
                let shown = edit::to_public(PLUGIN, &edits, &snapshot);
                prop_assert_eq!(shown.len(), edits.len());
                for edit in &shown {
                    let line = format!("{edit}");
                    prop_assert!(!line.contains('\n'), "{:?}", line);
                }
                let groups = edits
                    .iter()
                    .filter(|e| matches!(e, wire::Edit::CreateGroup(_)))
                    .count();
                let mut after = snapshot.clone();
                let counts = edit::apply(PLUGIN, edits, &mut after);
                prop_assert_eq!(counts.groups_created, groups);
                prop_assert_eq!(
                    after.sections.len(),
                    snapshot.sections.len() + groups - counts.sections_dropped
                );
                prop_assert_eq!(after.students.len(), snapshot.students.len() - counts.students_dropped);
                prop_assert_eq!(after.teachers.len(), snapshot.teachers.len() - counts.teachers_dropped);
                check_references(&after)?;
            }
        }
    }
}

/// A key of a megabyte is refused in a message of a line, not echoed whole.
#[test]
fn a_huge_group_key_is_refused_in_a_short_message() {
    let snapshot = Snapshot {
        schools: vec![School {
            id: "sc".into(),
            ..School::default()
        }],
        ..Snapshot::default()
    };
    let group = wire::Edit::CreateGroup(wire::Group {
        key: format!("{}\n", "k".repeat(1 << 20)),
        name: "G".into(),
        school: 0,
        subject: None,
        grade: None,
        period: None,
        term: None,
        course: None,
        teachers: Vec::new(),
        students: Vec::new(),
    });
    let error = edit::validate(PLUGIN, &[group], &snapshot).expect_err("refused");
    let message = error.to_string();
    assert!(message.len() < 300, "{} bytes", message.len());
    assert!(message.contains("group key \"kkkk"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

/// A plugin's own error and log lines reach the host's errors and logs as one line each.
#[test]
fn a_plugin_error_or_log_line_is_one_bounded_line() {
    let error = super::reported(
        PLUGIN,
        wire::PluginError::Fatal(format!("a\nb\r{}", "x".repeat(5000))),
    );
    let message = error.to_string();
    assert!(message.starts_with("plugin groups reported"), "{message}");
    assert!(message.contains("a b x"), "{message}");
    assert!(!message.contains(['\n', '\r']));
    assert!(message.chars().count() < 1100);
}
