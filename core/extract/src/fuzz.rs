//! What the fuzz tests of every source share: how many cases a run tries, the odd values
//! outside input is made of, and the promises a snapshot keeps whatever the source sent.
//!
//! Each reader's fuzz tests sit beside it (`wire/fuzz.rs`, `events/fuzz.rs`,
//! `clever/fuzz.rs`, `oneroster/fuzz.rs`). A normal run tries a fixed, small number of cases;
//! `PROPTEST_CASES=10000 cargo test -p rosterflow-extract fuzz` tries more. A failing case is
//! kept in `proptest-regressions/` and tried first from then on.

use std::collections::HashSet;

use proptest::prelude::*;
use rosterflow_model::{Entity, Snapshot};

/// `cases` per test, unless `PROPTEST_CASES` says otherwise.
pub(crate) fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Text as outside input brings it: empty, blank, escapes, other scripts, control characters,
/// path tricks, near-ids, long.
pub(crate) fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        Just("\u{0}".to_owned()),
        Just("a\u{0}b".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("\u{202e}é漢🦀".to_owned()),
        Just("../..".to_owned()),
        Just("/".to_owned()),
        Just("a|b".to_owned()),
        Just("\"".to_owned()),
        Just(",".to_owned()),
        Just("plugin:x:y".to_owned()),
        Just("5a0c91b95c7cc000010d417c".to_owned()),
        Just("5A0C91B95C7CC000010D417C".to_owned()),
        Just("5a0c91b95c7cc000010d417".to_owned()),
        Just("5a0c91b95c7cc000010d417cc".to_owned()),
        Just("zzzzzzzzzzzzzzzzzzzzzzzz".to_owned()),
        (1usize..5000).prop_map(|n| "x".repeat(n)),
        (1usize..300).prop_map(|n| "é".repeat(n)),
        any::<String>(),
    ]
}

/// A JSON value of any type, odd text included: what a field of the wrong type brings.
pub(crate) fn odd_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|n| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)),
        Just(json!(1e308)),
        odd_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(odd_text(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// The promises a snapshot keeps whatever its source sent: ids that `is_id` accepts and that
/// are unique per collection, every reference resolved (or to a record left unreadable), and
/// quarantine entries that say why in a line of bounded length.
pub(crate) fn check_snapshot(
    snapshot: &Snapshot,
    is_id: impl Fn(&str) -> bool,
) -> Result<(), TestCaseError> {
    fn unique<'a>(
        what: &str,
        ids: impl Iterator<Item = &'a str>,
        is_id: &impl Fn(&str) -> bool,
    ) -> Result<HashSet<&'a str>, TestCaseError> {
        let mut seen = HashSet::new();
        for id in ids {
            prop_assert!(is_id(id), "{} {:?} is not an id", what, id);
            prop_assert!(seen.insert(id), "{} {:?} is loaded twice", what, id);
        }
        Ok(seen)
    }
    let s = snapshot;
    let schools = unique("school", s.schools.iter().map(|r| r.id.as_str()), &is_id)?;
    let terms = unique("term", s.terms.iter().map(|r| r.id.as_str()), &is_id)?;
    let courses = unique("course", s.courses.iter().map(|r| r.id.as_str()), &is_id)?;
    unique("section", s.sections.iter().map(|r| r.id.as_str()), &is_id)?;
    let students = unique("student", s.students.iter().map(|r| r.id.as_str()), &is_id)?;
    let teachers = unique("teacher", s.teachers.iter().map(|r| r.id.as_str()), &is_id)?;
    unique("admin", s.admins.iter().map(|r| r.id.as_str()), &is_id)?;
    let unreadable: HashSet<(Entity, &str)> = s
        .unreadable
        .iter()
        .map(|(entity, id)| (*entity, id.as_str()))
        .collect();
    for (_, id) in &s.unreadable {
        prop_assert!(is_id(id), "unreadable {:?} is not an id", id);
    }
    for section in &s.sections {
        prop_assert!(
            schools.contains(section.school.as_str()),
            "section {} names school {:?} that is not loaded",
            section.id,
            section.school
        );
        for student in &section.students {
            prop_assert!(
                students.contains(student.as_str())
                    || unreadable.contains(&(Entity::Student, student.as_str())),
                "section {} names student {:?} that is not loaded",
                section.id,
                student
            );
        }
        for teacher in &section.teachers {
            prop_assert!(
                teachers.contains(teacher.as_str())
                    || unreadable.contains(&(Entity::Teacher, teacher.as_str())),
                "section {} names teacher {:?} that is not loaded",
                section.id,
                teacher
            );
        }
        let mut members = HashSet::new();
        prop_assert!(section.students.iter().all(|m| members.insert(("s", m))));
        prop_assert!(section.teachers.iter().all(|m| members.insert(("t", m))));
        if let Some(term) = &section.term {
            prop_assert!(terms.contains(term.as_str()), "term {:?}", term);
        }
        if let Some(course) = &section.course {
            prop_assert!(courses.contains(course.as_str()), "course {:?}", course);
        }
    }
    let user_schools = s
        .students
        .iter()
        .map(|r| &r.school)
        .chain(s.teachers.iter().map(|r| &r.school));
    for school in user_schools.flatten() {
        prop_assert!(schools.contains(school.as_str()), "school {:?}", school);
    }
    for q in &s.quarantine {
        prop_assert!(!q.kind.is_empty());
        prop_assert!(!q.reason.trim().is_empty(), "{:?}", q);
        prop_assert!(
            q.reason.len() <= 1000,
            "a reason of {} bytes: {}...",
            q.reason.len(),
            &q.reason[..q.reason.floor_char_boundary(200)]
        );
        prop_assert!(
            !q.reason.contains(['\n', '\r']),
            "a reason on several lines: {:?}",
            q.reason
        );
        if let Some(id) = &q.id {
            prop_assert!(is_id(id), "quarantined under id {:?}", id);
        }
    }
    Ok(())
}
