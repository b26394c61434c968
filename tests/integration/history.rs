//! History end to end: a generated district A is synced, the SIS then changes it into B (moves,
//! a transfer between schools, a co-teacher promoted, renames, a student and a section gone, a
//! new student), and B is synced; then A comes back. After each run the Freckle DB must hold
//! exactly what the source holds, and its history exactly what the change implies: which
//! memberships ended and started in which run, which records were archived and restored. The
//! expected sets are computed from the served JSON, not by rosterflow.

use std::collections::{BTreeMap, BTreeSet};

use rosterflow_pipeline::sync::{RunOptions, RunStatus};
use rosterflow_tests::clever_sim::{CleverSim, SimOptions};
use rosterflow_tests::district::{Collection, Dataset, GenSpec, Role, generate};
use serde_json::Value;

use crate::on_both_backends;
use crate::util::{Backend, TestDb, pipeline, sim_source, text};

/// What a district holds, read from its Clever JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Roster {
    /// Student id to (first name, grade, school).
    students: BTreeMap<String, (String, String, String)>,
    teachers: BTreeSet<String>,
    classes: BTreeSet<String>,
    /// (class, student).
    students_in: BTreeSet<(String, String)>,
    /// (class, teacher, role).
    teachers_in: BTreeSet<(String, String, String)>,
}

fn roster(dataset: &Dataset) -> Roster {
    let students = dataset
        .ids_with_role(Role::Student)
        .into_iter()
        .map(|id| {
            let user = dataset.get(Collection::Users, &id).expect("a student");
            let facts = (
                text(&user, "/name/first"),
                text(&user, "/roles/student/grade"),
                text(&user, "/roles/student/school"),
            );
            (id, facts)
        })
        .collect();
    let mut roster = Roster {
        students,
        teachers: dataset.ids_with_role(Role::Teacher).into_iter().collect(),
        classes: BTreeSet::new(),
        students_in: BTreeSet::new(),
        teachers_in: BTreeSet::new(),
    };
    for section in dataset.all(Collection::Sections) {
        let id = text(&section, "/id");
        roster.classes.insert(id.clone());
        for student in dataset.section_students(&id) {
            roster.students_in.insert((id.clone(), student));
        }
        // Clever names the primary teacher in `teacher`; the rest are co-teachers.
        let primary = text(&section, "/teacher");
        for teacher in dataset.section_teachers(&id) {
            let role = if teacher == primary { "primary" } else { "co" };
            roster
                .teachers_in
                .insert((id.clone(), teacher, role.to_owned()));
        }
    }
    roster
}

/// What the Freckle DB holds now: active records and open memberships.
async fn loaded(db: &TestDb) -> Roster {
    let pairs = |rows: Vec<String>| -> BTreeSet<(String, String)> {
        rows.into_iter()
            .map(|row| {
                let (a, b) = row.split_once('|').expect("two columns");
                (a.to_owned(), b.to_owned())
            })
            .collect()
    };
    let students = db
        .rows(
            "SELECT s.source_id, COALESCE(s.first_name, ''), COALESCE(s.grade, ''), \
             COALESCE(sc.source_id, '') FROM students s LEFT JOIN schools sc ON sc.id = s.school_id \
             WHERE s.archived_at IS NULL",
        )
        .await
        .into_iter()
        .map(|row| {
            let fields: Vec<&str> = row.split('|').collect();
            let facts = (fields[1].into(), fields[2].into(), fields[3].into());
            (fields[0].to_owned(), facts)
        })
        .collect();
    let set = |rows: Vec<String>| rows.into_iter().collect::<BTreeSet<_>>();
    Roster {
        students,
        teachers: set(db
            .rows("SELECT source_id FROM teachers WHERE archived_at IS NULL")
            .await),
        classes: set(db
            .rows("SELECT source_id FROM classes WHERE archived_at IS NULL")
            .await),
        students_in: pairs(
            db.rows(
                "SELECT c.source_id, s.source_id FROM class_students m \
                 JOIN classes c ON c.id = m.class_id JOIN students s ON s.id = m.student_id \
                 WHERE m.ended_at IS NULL",
            )
            .await,
        ),
        teachers_in: db
            .rows(
                "SELECT c.source_id, t.source_id, m.role FROM class_teachers m \
                 JOIN classes c ON c.id = m.class_id JOIN teachers t ON t.id = m.teacher_id \
                 WHERE m.ended_at IS NULL",
            )
            .await
            .into_iter()
            .map(|row| {
                let fields: Vec<&str> = row.split('|').collect();
                (fields[0].into(), fields[1].into(), fields[2].into())
            })
            .collect(),
    }
}

/// The (class, student) memberships whose `column` (started_run or ended_run) is `run`.
async fn students_in_run(db: &TestDb, column: &str, run: i64) -> BTreeSet<(String, String)> {
    db.rows(&format!(
        "SELECT c.source_id, s.source_id FROM class_students m \
         JOIN classes c ON c.id = m.class_id JOIN students s ON s.id = m.student_id \
         WHERE m.{column} = {run}"
    ))
    .await
    .into_iter()
    .map(|row| {
        let (a, b) = row.split_once('|').expect("two columns");
        (a.to_owned(), b.to_owned())
    })
    .collect()
}

/// The clever ids of `entity` changed by `action` in `run`, from the change log.
async fn logged(db: &TestDb, entity: &str, action: &str, run: i64) -> BTreeSet<String> {
    db.rows(&format!(
        "SELECT source_id FROM sync_changes WHERE run_id = {run} AND entity = '{entity}' AND action = '{action}'"
    ))
    .await
    .into_iter()
    .collect()
}

fn minus<T: Ord + Clone>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> BTreeSet<T> {
    a.difference(b).cloned().collect()
}

fn keys<V>(map: &BTreeMap<String, V>) -> BTreeSet<String> {
    map.keys().cloned().collect()
}

/// The SIS's changes from A to B.
pub(crate) fn change(d: &mut Dataset) {
    let sections = d.ids(Collection::Sections);
    let school_of = |d: &Dataset, section: &str| {
        text(
            &d.get(Collection::Sections, section).expect("a section"),
            "/school",
        )
    };
    // A student moves between two sections of their school.
    let from = sections[0].clone();
    let mover = d.section_students(&from)[0].clone();
    let to = sections
        .iter()
        .find(|s| school_of(d, s) == school_of(d, &from) && !d.section_students(s).contains(&mover))
        .expect("another section in the school")
        .clone();
    assert!(d.move_student(&mover, &from, &to));
    // A student transfers to another school: new school, out of every section, into one there.
    let leaver = d.section_students(&sections[1])[1].clone();
    let old_school = school_of(d, &sections[1]);
    let new_section = sections
        .iter()
        .find(|s| school_of(d, s) != old_school)
        .expect("a section in another school")
        .clone();
    let new_school = school_of(d, &new_section);
    for section in d.sections_of(&leaver) {
        d.remove_student_from_section(&section, &leaver);
    }
    assert!(d.add_student_to_section(&new_section, &leaver));
    d.edit(Collection::Users, &leaver, |u| {
        u["roles"]["student"]["school"] = Value::from(new_school.as_str());
    });
    // A co-teacher is promoted to primary.
    let taught = sections
        .iter()
        .find(|s| d.section_teachers(s).len() >= 2)
        .expect("a co-taught section")
        .clone();
    let mut lineup = d.section_teachers(&taught);
    lineup.swap(0, 1);
    let lineup: Vec<&str> = lineup.iter().map(String::as_str).collect();
    d.set_section_teachers(&taught, &lineup);
    // A renamed student, a student gone from the SIS, a section dropped, a new student.
    let untouched: Vec<String> = d
        .ids_with_role(Role::Student)
        .into_iter()
        .filter(|s| *s != mover && *s != leaver)
        .collect();
    let renamed = untouched[5].clone();
    d.edit(Collection::Users, &renamed, |u| {
        u["name"]["first"] = Value::from("Renamed");
    });
    let gone = untouched[7].clone();
    assert!(d.remove_user(&gone));
    let dropped = sections.last().expect("sections").clone();
    d.remove(Collection::Sections, &dropped);
    let mut newcomer = d.get(Collection::Users, &untouched[9]).expect("a student");
    let id = d.new_id();
    newcomer["id"] = Value::from(id.as_str());
    newcomer["roles"]["student"]["sis_id"] = Value::from("NEW-1");
    d.upsert(Collection::Users, newcomer);
    assert!(d.add_student_to_section(&sections[2], &id));
}

/// A, then B, then A again: the DB always mirrors the source, and its history is exactly the
/// difference between the runs.
async fn history_is_exactly_the_change_between_runs(backend: Backend) {
    let db = TestDb::new(backend).await;
    let a = generate(GenSpec::new(1_200).with_seed(7));
    let sim = CleverSim::start(a.clone(), SimOptions::default()).await;
    let district = pipeline(
        db.dir.path(),
        "generated",
        &sim_source(&sim.base_url(), &sim.token(), 500),
        &db.url,
        "",
    );
    let run = || async {
        let report = crate::util::run(&district, &RunOptions::default())
            .await
            .expect("sync");
        let RunStatus::Committed { run_id } = report.status else {
            panic!("expected a commit, got {:?}", report.status);
        };
        run_id
    };

    let first = run().await;
    let roster_a = roster(&a);
    assert_eq!(loaded(&db).await, roster_a);
    assert_eq!(
        students_in_run(&db, "started_run", first).await,
        roster_a.students_in
    );

    sim.update(change);
    let roster_b = sim.read(roster);
    let second = run().await;
    assert_eq!(loaded(&db).await, roster_b);
    // Memberships: exactly the pairs that left ended, exactly the new ones started.
    assert_eq!(
        students_in_run(&db, "ended_run", second).await,
        minus(&roster_a.students_in, &roster_b.students_in)
    );
    assert_eq!(
        students_in_run(&db, "started_run", second).await,
        minus(&roster_b.students_in, &roster_a.students_in)
    );
    // Records: the one gone archived, the changed ones updated, the new one created.
    let (students_a, students_b) = (keys(&roster_a.students), keys(&roster_b.students));
    assert_eq!(
        logged(&db, "student", "archive", second).await,
        minus(&students_a, &students_b)
    );
    let changed: BTreeSet<String> = roster_b
        .students
        .iter()
        .filter(|(id, facts)| roster_a.students.get(*id).is_some_and(|old| old != *facts))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(changed.len(), 2, "the renamed and the transferred student");
    assert_eq!(logged(&db, "student", "update", second).await, changed);
    assert_eq!(
        db.rows(&format!(
            "SELECT source_id FROM students WHERE created_run = {second}"
        ))
        .await,
        minus(&students_b, &students_a)
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        logged(&db, "class", "archive", second).await,
        minus(&roster_a.classes, &roster_b.classes)
    );
    assert_eq!(
        logged(&db, "class_teacher", "update", second).await.len(),
        1,
        "the promoted co-teacher's section, for both of its teachers"
    );

    // A again: the gone student and section are restored, their memberships start anew and
    // the B-only ones end; history keeps both stays.
    let restored = a.clone();
    sim.update(|d| *d = restored);
    let third = run().await;
    assert_eq!(loaded(&db).await, roster_a);
    assert_eq!(
        logged(&db, "student", "restore", third).await,
        minus(&students_a, &students_b)
    );
    assert_eq!(
        students_in_run(&db, "started_run", third).await,
        minus(&roster_a.students_in, &roster_b.students_in)
    );
    assert_eq!(
        students_in_run(&db, "ended_run", third).await,
        minus(&roster_b.students_in, &roster_a.students_in)
    );
    let stays = db
        .scalar(&format!(
            "SELECT COUNT(*) FROM class_students m JOIN students s ON s.id = m.student_id \
             WHERE s.source_id = '{}'",
            minus(&students_a, &students_b)
                .first()
                .expect("a student left in B")
        ))
        .await;
    let expected_stays = roster_a
        .students_in
        .iter()
        .filter(|(_, s)| !students_b.contains(s))
        .count()
        * 2;
    assert_eq!(
        stays as usize, expected_stays,
        "one ended and one open stay per class"
    );

    // And unchanged input writes nothing: no roster row, no change row, only the run.
    let before = db.fingerprint().await;
    let fourth = run().await;
    assert_eq!(db.fingerprint().await, before);
    assert!(logged(&db, "student", "update", fourth).await.is_empty());
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM sync_changes WHERE run_id = {fourth}"
        ))
        .await,
        0
    );
}

on_both_backends!(history_is_exactly_the_change_between_runs);
