//! The snapshot as a plugin receives it: `model` records turned into the interface's tables,
//! ids turned into indices. Index `i` of every table is position `i` of the same `Vec` in the
//! `model::Snapshot`, so edits come back as positions without a reverse map.

use rosterflow_model::{Id, Snapshot, Source};
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::PluginError;
use super::bindings::v0_1_0::wire;

/// Builds the interface's snapshot, filling the costly columns only when `wants` asks.
pub(crate) fn to_wire(
    plugin: &str,
    snapshot: &Snapshot,
    wants: wire::Wants,
) -> Result<wire::Snapshot, PluginError> {
    let inconsistent = |reason: String| PluginError::InconsistentSnapshot {
        plugin: plugin.to_owned(),
        reason,
    };
    let schools = index_of(snapshot.schools.iter().map(|s| s.id.as_str()));
    let terms = index_of(snapshot.terms.iter().map(|t| t.id.as_str()));
    let courses = index_of(snapshot.courses.iter().map(|c| c.id.as_str()));
    let students = index_of(snapshot.students.iter().map(|s| s.id.as_str()));
    let teachers = index_of(snapshot.teachers.iter().map(|t| t.id.as_str()));
    if [schools.len(), students.len(), teachers.len()]
        .iter()
        .zip([
            snapshot.schools.len(),
            snapshot.students.len(),
            snapshot.teachers.len(),
        ])
        .any(|(unique, all)| *unique != all)
    {
        return Err(inconsistent(
            "a school, student or teacher id appears twice".into(),
        ));
    }
    let lookup = |map: &IdMap<'_>, id: Option<&Id>| id.and_then(|id| map.get(id.as_str()).copied());

    let mut sections = Vec::with_capacity(snapshot.sections.len());
    for section in &snapshot.sections {
        let school = schools
            .get(section.school.as_str())
            .copied()
            .ok_or_else(|| {
                inconsistent(format!(
                    "section {} names school {} that is not in the snapshot",
                    section.id, section.school
                ))
            })?;
        // Members the source could not resolve were quarantined before the transforms; any
        // left are not the plugin's to see.
        let members = |ids: &[Id], map: &IdMap<'_>| -> Vec<u32> {
            ids.iter()
                .filter_map(|id| map.get(id.as_str()).copied())
                .collect()
        };
        sections.push(wire::Section {
            id: section.id.to_string(),
            sis_id: section.sis_id.clone(),
            school,
            name: section.name.clone(),
            subject: section.subject.clone(),
            grade: section.grade.clone(),
            period: section.period.clone(),
            term: lookup(&terms, section.term.as_ref()),
            course: lookup(&courses, section.course.as_ref()),
            teachers: members(&section.teachers, &teachers),
            students: members(&section.students, &students),
            ext: if wants.contains(wire::Wants::SECTION_EXT) {
                section
                    .ext
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            } else {
                Vec::new()
            },
            made_by: match &section.source {
                Source::Sis => None,
                Source::Plugin(name) => Some(name.clone()),
            },
        });
    }

    let mut grades: Vec<String> = Vec::new();
    let mut grade_index: IdMap<'_> = IdMap::default();
    let mut wire_students = Vec::with_capacity(snapshot.students.len());
    for student in &snapshot.students {
        let grade = student.grade.as_deref().map(|g| {
            *grade_index.entry(g).or_insert_with(|| {
                grades.push(g.to_owned());
                to_u32(grades.len() - 1)
            })
        });
        wire_students.push(wire::Student {
            school: lookup(&schools, student.school.as_ref()),
            grade,
        });
    }

    Ok(wire::Snapshot {
        district: snapshot.district.id.to_string(),
        schools: snapshot
            .schools
            .iter()
            .map(|s| wire::School {
                id: s.id.to_string(),
                sis_id: s.sis_id.clone(),
                school_number: s.school_number.clone(),
                name: s.name.clone(),
                low_grade: s.low_grade.clone(),
                high_grade: s.high_grade.clone(),
            })
            .collect(),
        terms: snapshot
            .terms
            .iter()
            .map(|t| wire::Term {
                id: t.id.to_string(),
                name: t.name.clone(),
                start_date: t.start_date.clone(),
                end_date: t.end_date.clone(),
            })
            .collect(),
        courses: snapshot
            .courses
            .iter()
            .map(|c| wire::Course {
                id: c.id.to_string(),
                name: c.name.clone(),
                number: c.number.clone(),
            })
            .collect(),
        sections,
        grades,
        students: wire_students,
        student_ids: if wants.contains(wire::Wants::STUDENT_IDS) {
            snapshot
                .students
                .iter()
                .map(|s| wire::StudentIds {
                    id: s.id.to_string(),
                    sis_id: s.sis_id.clone(),
                    state_id: s.state_id.clone(),
                    student_number: s.student_number.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
        teachers: snapshot
            .teachers
            .iter()
            .map(|t| wire::Teacher {
                school: lookup(&schools, t.school.as_ref()),
            })
            .collect(),
        teacher_details: if wants.contains(wire::Wants::TEACHER_DETAILS) {
            snapshot
                .teachers
                .iter()
                .map(|t| wire::TeacherDetails {
                    id: t.id.to_string(),
                    sis_id: t.sis_id.clone(),
                    state_id: t.state_id.clone(),
                    teacher_number: t.teacher_number.clone(),
                    email: t.email.clone(),
                    title: t.title.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
    })
}

/// Id to table position. Keys are Clever ids (24 hex digits) that the host, not the plugin,
/// supplies, so a fast non-keyed hash is safe; SipHash would cost a third of the conversion.
type IdMap<'a> = FxHashMap<&'a str, u32>;

fn index_of<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> IdMap<'a> {
    let mut map = IdMap::with_capacity_and_hasher(ids.len(), FxBuildHasher);
    for (i, id) in ids.enumerate() {
        map.entry(id).or_insert(to_u32(i));
    }
    map
}

/// Tables are `list<T>` indexed by `u32` in the interface; a district has far fewer records.
pub(crate) fn to_u32(i: usize) -> u32 {
    u32::try_from(i).expect("snapshot tables hold fewer than 2^32 records")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosterflow_model::{School, Section, Student, Teacher};

    fn snapshot() -> Snapshot {
        Snapshot {
            schools: vec![School {
                id: "sc".into(),
                ..School::default()
            }],
            sections: vec![Section {
                id: "se".into(),
                school: "sc".into(),
                teachers: vec!["t".into()],
                // "gone" was never shared: the plugin does not see it.
                students: vec!["b".into(), "gone".into(), "a".into()],
                ext: [("band".to_string(), "2".to_string())].into(),
                ..Section::default()
            }],
            students: [("a", "3"), ("b", "K"), ("c", "3")]
                .map(|(id, grade)| Student {
                    id: id.into(),
                    grade: Some(grade.into()),
                    school: Some("sc".into()),
                    ..Student::default()
                })
                .into(),
            teachers: vec![Teacher {
                id: "t".into(),
                ..Teacher::default()
            }],
            ..Snapshot::default()
        }
    }

    #[test]
    fn ids_become_positions_and_grades_are_interned() {
        let wire = to_wire("p", &snapshot(), wire::Wants::empty()).expect("converts");
        assert_eq!(wire.sections[0].students, [1, 0]);
        assert_eq!(wire.sections[0].teachers, [0]);
        assert_eq!(wire.grades, ["3", "K"]);
        let grades: Vec<Option<u32>> = wire.students.iter().map(|s| s.grade).collect();
        assert_eq!(grades, [Some(0), Some(1), Some(0)]);
        assert!(wire.students.iter().all(|s| s.school == Some(0)));
        // Costly columns stay empty unless wanted.
        assert!(wire.student_ids.is_empty() && wire.teacher_details.is_empty());
        assert!(wire.sections[0].ext.is_empty());
    }

    #[test]
    fn wanted_columns_are_filled() {
        let wants = wire::Wants::all();
        let wire = to_wire("p", &snapshot(), wants).expect("converts");
        assert_eq!(wire.student_ids.len(), 3);
        assert_eq!(wire.teacher_details[0].id, "t");
        assert_eq!(
            wire.sections[0].ext,
            [("band".to_string(), "2".to_string())]
        );
    }

    /// Clever ids differ only in their last few hex digits; a hash that leaves the low bits
    /// (the bucket index) depending on the low bytes alone (rustc-hash 1's) packs a district's
    /// ids into a handful of buckets and the map takes minutes.
    #[test]
    fn ids_that_differ_only_in_their_last_digits_hash_apart() {
        use std::hash::BuildHasher;
        let build = FxBuildHasher;
        let buckets: std::collections::HashSet<u64> = (0..4096usize)
            .map(|n| build.hash_one(format!("02{n:022x}").as_str()) & 0xffff)
            .collect();
        assert!(buckets.len() > 3500, "{} distinct buckets", buckets.len());
    }

    #[test]
    fn a_section_of_an_unknown_school_is_refused() {
        let mut s = snapshot();
        s.sections[0].school = "elsewhere".into();
        let err = to_wire("p", &s, wire::Wants::empty()).expect_err("inconsistent");
        assert!(err.to_string().contains("school elsewhere"), "{err}");
    }
}
