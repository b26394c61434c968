//! Property tests of the core promise: generated districts and generated histories of change.
//!
//! Each case is a small generated district (one to five schools, tens of students), a pipeline
//! that may share one school and the math sections and may filter specials or named teachers,
//! and a history of syncs of a replayed recording. Before each sync the SIS changes (students
//! added, removed, back with the same id, moving sections and schools; a co-teacher promoted, a
//! primary teacher replaced or leaving the section; sections renamed, moved to another school,
//! split, removed and back; a school no longer shared, and back; a teacher's email changed,
//! perhaps to one the filter drops; two students with one SIS id; a student who also teaches),
//! the export may be garbled for that sync only (a user that cannot be read, a section without
//! its school, a record without an id, a user listed twice, a section naming a student who does
//! not exist, a page that is not JSON), and after it Freckle users act (a teacher shares a class
//! with another teacher, a class made by hand, an account activated, a refused manual edit of a
//! Clever class).
//!
//! After every sync the Freckle DB holds exactly what a model of the documented rules says,
//! computed here from the served JSON, not by rosterflow: the live records and open memberships
//! with their roles; every membership's stays with the runs that started and ended them; each
//! record's creating run, its archives and restores; what could not be read left as it was. A
//! resync plans nothing, shares, manual classes and accounts survive, and every teacher has one
//! account and had one welcome email, queued by the run that made them. At the end the live
//! roster equals a fresh sync of the last export into an empty DB, table by table (row ids,
//! timestamps, history, archived rows, manual edits and shares set aside).
//!
//! A normal run tries [`SQLITE_CASES`] and [`POSTGRES_CASES`] new cases and prints how many
//! histories and syncs it ran; `PROPTEST_CASES=500` runs more on both, `PROPTEST_RNG_SEED`
//! repeats a run. A failing case is shrunk to a short history, printed with its seed, and saved
//! in `tests/proptest-regressions/properties.txt`, which every run replays first: commit it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngSeed, TestCaseError, TestError, TestRunner,
};
use rosterflow_pipeline::sync::{RunOptions, RunResult, RunStatus, SyncError};
use rosterflow_store::roster::{self, RosterError};
use rosterflow_tests::district::{Collection, Dataset, GenSpec, Role, generate};
use serde_json::{Value, json};

use crate::util::{Backend, TestDb, pipeline, replay_source, text};

/// New cases in a normal run, per backend (`PROPTEST_CASES` sets both): a case takes about
/// 0.6 s on SQLite and 3.5 s on PostgreSQL on two cores, whose every sync writes more.
const SQLITE_CASES: u32 = 32;
const POSTGRES_CASES: u32 = 16;
/// Where failing cases are kept and replayed from, beside the integration tests.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/properties.txt"
);
/// Records per page of the recordings: several pages per collection.
const PAGE: usize = 25;

// ---------------------------------------------------------------------------------------------
// What a case is made of.

/// One generated case: a district, the pipeline's filter, and the history of syncs.
#[derive(Debug, Clone)]
struct Case {
    district: DistrictSpec,
    sharing: Option<SharingSpec>,
    filter: Option<FilterSpec>,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
struct DistrictSpec {
    seed: u64,
    students: usize,
    students_per_school: usize,
    class_size: usize,
    co_teacher_percent: u32,
}

impl DistrictSpec {
    fn generate(&self) -> Dataset {
        let mut spec = GenSpec::new(self.students).with_seed(self.seed);
        spec.students_per_school = self.students_per_school;
        spec.class_size = self.class_size;
        spec.co_teacher_percent = self.co_teacher_percent;
        spec.contact_percent = 10;
        spec.second_contact_percent = 0;
        spec.district_admins = 1;
        generate(spec)
    }
}

/// A `type = "sharing_rules"` stage: a school shared whole, and math sections.
#[derive(Debug, Clone)]
struct SharingSpec {
    school: Option<Index>,
    math: bool,
}

/// A `type = "filter"` stage: specials by subject, and teachers by email (the primary teacher of
/// a co-taught section, and any teacher), chosen in the first district.
#[derive(Debug, Clone)]
struct FilterSpec {
    specials: bool,
    primary_of_co_taught: Option<Index>,
    teacher: Option<Index>,
}

/// What happens before one sync: the SIS's changes, what garbles the export this time only, and
/// what Freckle users do once the sync has run.
#[derive(Debug, Clone)]
struct Step {
    changes: Vec<Change>,
    garbles: Vec<Garble>,
    freckle: Vec<FreckleEdit>,
}

/// A change in the SIS. Indices pick among the records there are when it applies; a change
/// with nothing to pick does nothing.
#[derive(Debug, Clone)]
enum Change {
    /// A new student (shaped like another), in up to two sections of their school.
    AddStudent {
        like: Index,
        sections: [Index; 2],
    },
    /// A student or teacher leaves the SIS (every section loses them).
    RemoveUser {
        user: Index,
        teacher: bool,
    },
    /// A user who left comes back with the same id, into the sections they had.
    ReturnUser(Index),
    /// A student moves from one of their sections to another section.
    MoveStudent {
        student: Index,
        from: Index,
        to: Index,
    },
    /// A student transfers to another school: out of every section, into one there.
    TransferSchool {
        student: Index,
        school: Index,
        section: Index,
    },
    /// A co-taught section's co-teacher becomes its primary teacher.
    PromoteCoTeacher(Index),
    /// A co-taught section's primary teacher leaves it: the co-teacher is now primary.
    PrimaryLeavesSection(Index),
    /// Another teacher becomes a section's primary teacher; the old one stays as co-teacher.
    NewPrimary {
        section: Index,
        teacher: Index,
    },
    AddCoTeacher {
        section: Index,
        teacher: Index,
    },
    RenameSection(Index),
    MoveSectionToSchool {
        section: Index,
        school: Index,
    },
    /// A new section takes every other student of a section.
    SplitSection(Index),
    RemoveSection(Index),
    /// A removed section comes back with the same id.
    ReturnSection(Index),
    RenameStudent(Index),
    /// A school leaves (Clever no longer shares it): its sections go, its users stay without it.
    RemoveSchool(Index),
    ReturnSchool(Index),
    /// A teacher's email changes, to one the filter drops when `filtered` (and it drops any).
    NewTeacherEmail {
        teacher: Index,
        filtered: bool,
    },
    /// A student gets another student's SIS id (SIS ids are unique only by convention).
    ShareSisId {
        from: Index,
        to: Index,
    },
    /// A student also becomes a teacher (a student teacher) and co-teaches a section, a
    /// special one (PE) when `specials`.
    StudentTeaches {
        student: Index,
        section: Index,
        specials: bool,
    },
}

/// What garbles one sync's export; the next sync sees the clean records again.
#[derive(Debug, Clone)]
enum Garble {
    /// A student or teacher record that cannot be read (its name is not an object).
    UnreadableUser(Index),
    /// A section without its required school.
    SectionWithoutSchool(Index),
    /// A section naming a student who does not exist.
    UnknownStudentInSection(Index),
    /// A student record without an id.
    UserWithoutId,
    /// A student or teacher listed twice with the same Clever id: the first record is used.
    DuplicateUser(Index),
    /// A page of users that is not JSON: the run fails and changes nothing.
    BrokenPage,
}

/// What a Freckle user does between syncs.
#[derive(Debug, Clone)]
enum FreckleEdit {
    /// A teacher shares the students of a class with another teacher.
    ShareClass { class: Index, teacher: Index },
    /// A class made in Freckle by hand, with some students.
    ManualClass { students: Vec<Index> },
    /// A teacher sets their password: the account is active.
    ActivateAccount(Index),
    /// An edit of a Clever class's roster, which is locked.
    LockedEdit { class: Index, student: Index },
}

fn case() -> impl Strategy<Value = Case> {
    let district = (
        any::<u64>(),
        12usize..=40,
        8usize..=25,
        3usize..=8,
        0u32..=60,
    )
        .prop_map(
            |(seed, students, students_per_school, class_size, co_teacher_percent)| DistrictSpec {
                seed,
                students,
                students_per_school,
                class_size,
                co_teacher_percent,
            },
        );
    let sharing = option::weighted(
        0.3,
        (option::of(any::<Index>()), any::<bool>())
            .prop_map(|(school, math)| SharingSpec { school, math }),
    );
    let filter = option::weighted(
        0.5,
        (
            any::<bool>(),
            option::of(any::<Index>()),
            option::of(any::<Index>()),
        )
            .prop_map(|(specials, primary_of_co_taught, teacher)| FilterSpec {
                specials,
                primary_of_co_taught,
                teacher,
            }),
    );
    let step = (
        vec(change(), 0..=6),
        option::weighted(0.3, vec(garble(), 1..=2)).prop_map(Option::unwrap_or_default),
        vec(freckle_edit(), 0..=2),
    )
        .prop_map(|(changes, garbles, freckle)| Step {
            changes,
            garbles,
            freckle,
        });
    (district, sharing, filter, vec(step, 1..=6)).prop_map(|(district, sharing, filter, steps)| {
        Case {
            district,
            sharing,
            filter,
            steps,
        }
    })
}

fn change() -> impl Strategy<Value = Change> {
    let i = any::<Index>;
    prop_oneof![
        (i(), [i(), i()]).prop_map(|(like, sections)| Change::AddStudent { like, sections }),
        (i(), any::<bool>()).prop_map(|(user, teacher)| Change::RemoveUser { user, teacher }),
        i().prop_map(Change::ReturnUser),
        (i(), i(), i()).prop_map(|(student, from, to)| Change::MoveStudent { student, from, to }),
        (i(), i(), i()).prop_map(|(student, school, section)| Change::TransferSchool {
            student,
            school,
            section
        }),
        i().prop_map(Change::PromoteCoTeacher),
        i().prop_map(Change::PrimaryLeavesSection),
        (i(), i()).prop_map(|(section, teacher)| Change::NewPrimary { section, teacher }),
        (i(), i()).prop_map(|(section, teacher)| Change::AddCoTeacher { section, teacher }),
        i().prop_map(Change::RenameSection),
        (i(), i()).prop_map(|(section, school)| Change::MoveSectionToSchool { section, school }),
        i().prop_map(Change::SplitSection),
        i().prop_map(Change::RemoveSection),
        i().prop_map(Change::ReturnSection),
        i().prop_map(Change::RenameStudent),
        i().prop_map(Change::RemoveSchool),
        i().prop_map(Change::ReturnSchool),
        (i(), any::<bool>())
            .prop_map(|(teacher, filtered)| Change::NewTeacherEmail { teacher, filtered }),
        (i(), i()).prop_map(|(from, to)| Change::ShareSisId { from, to }),
        (i(), i(), any::<bool>()).prop_map(|(student, section, specials)| {
            Change::StudentTeaches {
                student,
                section,
                specials,
            }
        }),
    ]
}

fn garble() -> impl Strategy<Value = Garble> {
    let i = any::<Index>;
    prop_oneof![
        i().prop_map(Garble::UnreadableUser),
        i().prop_map(Garble::SectionWithoutSchool),
        i().prop_map(Garble::UnknownStudentInSection),
        Just(Garble::UserWithoutId),
        i().prop_map(Garble::DuplicateUser),
        Just(Garble::BrokenPage),
    ]
}

fn freckle_edit() -> impl Strategy<Value = FreckleEdit> {
    let i = any::<Index>;
    prop_oneof![
        (i(), i()).prop_map(|(class, teacher)| FreckleEdit::ShareClass { class, teacher }),
        vec(i(), 1..=3).prop_map(|students| FreckleEdit::ManualClass { students }),
        i().prop_map(FreckleEdit::ActivateAccount),
        (i(), i()).prop_map(|(class, student)| FreckleEdit::LockedEdit { class, student }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The SIS: a dataset the changes edit.

fn pick<'a>(items: &'a [String], index: &Index) -> Option<&'a str> {
    (!items.is_empty()).then(|| items[index.index(items.len())].as_str())
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value[key]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A user who left the SIS, to come back with the same id.
#[derive(Debug, Clone)]
struct Left {
    user: Value,
    /// Sections they were a student of, and taught.
    sections: Vec<String>,
    taught: Vec<String>,
}

/// The district as the SIS holds it, and what left it.
struct Sis {
    d: Dataset,
    left: Vec<Left>,
    removed_sections: Vec<Value>,
    removed_schools: Vec<Value>,
    /// The emails the pipeline's filter drops.
    filtered_emails: Vec<String>,
    /// A counter for new names and SIS ids.
    made: u32,
}

impl Sis {
    fn students(&self) -> Vec<String> {
        self.d.ids_with_role(Role::Student)
    }

    fn teachers(&self) -> Vec<String> {
        self.d.ids_with_role(Role::Teacher)
    }

    /// Students and teachers, the users a Freckle DB holds.
    fn rostered(&self) -> Vec<String> {
        let mut users = self.students();
        users.extend(self.teachers());
        users.sort();
        users.dedup();
        users
    }

    fn schools(&self) -> Vec<String> {
        self.d.ids(Collection::Schools)
    }

    fn sections_where(&self, keep: impl Fn(&Value) -> bool) -> Vec<String> {
        self.d
            .all(Collection::Sections)
            .iter()
            .filter(|s| keep(s))
            .map(|s| text(s, "/id"))
            .collect()
    }

    fn user(&self, id: &str) -> Value {
        self.d.get(Collection::Users, id).expect("a user")
    }

    fn next(&mut self) -> u32 {
        self.made += 1;
        self.made
    }

    /// Appends `teacher` to a section's teachers (the primary one if it had none).
    fn add_teacher(&mut self, section: &str, teacher: &str) {
        let mut teachers = self.d.section_teachers(section);
        if !teachers.iter().any(|t| t == teacher) {
            teachers.push(teacher.to_owned());
            let list: Vec<&str> = teachers.iter().map(String::as_str).collect();
            self.d.set_section_teachers(section, &list);
        }
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::AddStudent { like, sections } => {
                let Some(like) = pick(&self.students(), like).map(str::to_owned) else {
                    return;
                };
                let n = self.next();
                let id = self.d.new_id();
                let mut user = self.user(&like);
                user["id"] = json!(id);
                user["name"]["first"] = json!(format!("New{n}"));
                user["email"] = json!(format!("new{n}@students.example.org"));
                let student = &mut user["roles"]["student"];
                student["email"] = json!(format!("new{n}@students.example.org"));
                student["sis_id"] = json!(format!("N{n}"));
                student["student_number"] = json!(format!("N{n}"));
                student["state_id"] = json!(format!("S{n}"));
                let school = text(student, "/school");
                if let Some(roles) = user["roles"].as_object_mut() {
                    roles.retain(|role, _| role == "student");
                }
                self.d.upsert(Collection::Users, user);
                let here = self.sections_where(|s| text(s, "/school") == school);
                for index in sections {
                    if let Some(section) = pick(&here, index) {
                        self.d.add_student_to_section(section, &id);
                    }
                }
            }
            Change::RemoveUser { user, teacher } => {
                let users = if *teacher {
                    self.teachers()
                } else {
                    self.students()
                };
                let Some(id) = pick(&users, user).map(str::to_owned) else {
                    return;
                };
                let sections = self.sections_where(|s| strings(s, "students").contains(&id));
                let taught = self.sections_where(|s| strings(s, "teachers").contains(&id));
                let user = self.user(&id);
                self.d.remove_user(&id);
                self.left.push(Left {
                    user,
                    sections,
                    taught,
                });
            }
            Change::ReturnUser(index) => {
                if self.left.is_empty() {
                    return;
                }
                let back = self.left.remove(index.index(self.left.len()));
                let id = text(&back.user, "/id");
                self.d.upsert(Collection::Users, back.user);
                for section in &back.sections {
                    self.d.add_student_to_section(section, &id);
                }
                for section in &back.taught {
                    if self.d.contains(Collection::Sections, section) {
                        self.add_teacher(section, &id);
                    }
                }
            }
            Change::MoveStudent { student, from, to } => {
                let Some(id) = pick(&self.students(), student).map(str::to_owned) else {
                    return;
                };
                let theirs = self.sections_where(|s| strings(s, "students").contains(&id));
                let others = self.sections_where(|s| !strings(s, "students").contains(&id));
                if let (Some(from), Some(to)) = (pick(&theirs, from), pick(&others, to)) {
                    self.d.move_student(&id, from, to);
                }
            }
            Change::TransferSchool {
                student,
                school,
                section,
            } => {
                let Some(id) = pick(&self.students(), student).map(str::to_owned) else {
                    return;
                };
                let current = text(&self.user(&id), "/roles/student/school");
                let others: Vec<String> = self
                    .schools()
                    .into_iter()
                    .filter(|s| *s != current)
                    .collect();
                let Some(new_school) = pick(&others, school).map(str::to_owned) else {
                    return;
                };
                for old in self.sections_where(|s| strings(s, "students").contains(&id)) {
                    self.d.remove_student_from_section(&old, &id);
                }
                self.d.edit(Collection::Users, &id, |u| {
                    u["roles"]["student"]["school"] = json!(new_school);
                    u["roles"]["student"]["schools"] = json!([new_school]);
                });
                let there = self.sections_where(|s| text(s, "/school") == new_school);
                if let Some(target) = pick(&there, section) {
                    self.d.add_student_to_section(target, &id);
                }
            }
            Change::PromoteCoTeacher(section) => {
                let co_taught = self.sections_where(|s| strings(s, "teachers").len() >= 2);
                if let Some(id) = pick(&co_taught, section) {
                    let mut teachers = self.d.section_teachers(id);
                    teachers.swap(0, 1);
                    let list: Vec<&str> = teachers.iter().map(String::as_str).collect();
                    self.d.set_section_teachers(id, &list);
                }
            }
            Change::PrimaryLeavesSection(section) => {
                let co_taught = self.sections_where(|s| strings(s, "teachers").len() >= 2);
                if let Some(id) = pick(&co_taught, section) {
                    let teachers = self.d.section_teachers(id);
                    let rest: Vec<&str> = teachers[1..].iter().map(String::as_str).collect();
                    self.d.set_section_teachers(id, &rest);
                }
            }
            Change::NewPrimary { section, teacher } => {
                let sections = self.d.ids(Collection::Sections);
                let (Some(id), Some(new)) = (
                    pick(&sections, section),
                    pick(&self.teachers(), teacher).map(str::to_owned),
                ) else {
                    return;
                };
                let mut teachers = self.d.section_teachers(id);
                teachers.retain(|t| *t != new);
                teachers.insert(0, new);
                let list: Vec<&str> = teachers.iter().map(String::as_str).collect();
                self.d.set_section_teachers(id, &list);
            }
            Change::AddCoTeacher { section, teacher } => {
                let sections = self.d.ids(Collection::Sections);
                if let (Some(id), Some(new)) = (
                    pick(&sections, section).map(str::to_owned),
                    pick(&self.teachers(), teacher).map(str::to_owned),
                ) {
                    self.add_teacher(&id, &new);
                }
            }
            Change::RenameSection(section) => {
                let sections = self.d.ids(Collection::Sections);
                if let Some(id) = pick(&sections, section).map(str::to_owned) {
                    let n = self.next();
                    self.d.edit(Collection::Sections, &id, |s| {
                        s["name"] = json!(format!("Renamed section {n}"));
                    });
                }
            }
            Change::MoveSectionToSchool { section, school } => {
                let sections = self.d.ids(Collection::Sections);
                let Some(id) = pick(&sections, section).map(str::to_owned) else {
                    return;
                };
                let current = text(
                    &self.d.get(Collection::Sections, &id).expect("a section"),
                    "/school",
                );
                let others: Vec<String> = self
                    .schools()
                    .into_iter()
                    .filter(|s| *s != current)
                    .collect();
                if let Some(new_school) = pick(&others, school) {
                    self.d.edit(Collection::Sections, &id, |s| {
                        s["school"] = json!(new_school);
                    });
                }
            }
            Change::SplitSection(section) => {
                let big = self.sections_where(|s| strings(s, "students").len() >= 2);
                let Some(id) = pick(&big, section).map(str::to_owned) else {
                    return;
                };
                let n = self.next();
                let new_id = self.d.new_id();
                let mut original = self.d.get(Collection::Sections, &id).expect("a section");
                let students = strings(&original, "students");
                let (stay, go): (Vec<_>, Vec<_>) =
                    students.iter().enumerate().partition(|(i, _)| i % 2 == 0);
                let ids = |part: Vec<(usize, &String)>| -> Vec<String> {
                    part.into_iter().map(|(_, s)| s.clone()).collect()
                };
                let mut split = original.clone();
                split["id"] = json!(new_id);
                split["sis_id"] = json!(format!("SPLIT{n}"));
                split["name"] = json!(format!("{} (split {n})", text(&original, "/name")));
                split["students"] = json!(ids(go));
                original["students"] = json!(ids(stay));
                self.d.upsert(Collection::Sections, original);
                self.d.upsert(Collection::Sections, split);
            }
            Change::RemoveSection(section) => {
                let sections = self.d.ids(Collection::Sections);
                if let Some(id) = pick(&sections, section).map(str::to_owned)
                    && let Some(removed) = self.d.remove(Collection::Sections, &id)
                {
                    self.removed_sections.push(removed);
                }
            }
            Change::ReturnSection(index) => {
                if self.removed_sections.is_empty() {
                    return;
                }
                let mut back = self
                    .removed_sections
                    .remove(index.index(self.removed_sections.len()));
                // Back as the SIS has it now: only members who are still there.
                let (students, teachers) = (self.students(), self.teachers());
                let mut kept = strings(&back, "students");
                kept.retain(|s| students.contains(s));
                back["students"] = json!(kept);
                let mut kept = strings(&back, "teachers");
                kept.retain(|t| teachers.contains(t));
                back["teacher"] = json!(kept.first().cloned().unwrap_or_default());
                back["teachers"] = json!(kept);
                self.d.upsert(Collection::Sections, back);
            }
            Change::RenameStudent(student) => {
                if let Some(id) = pick(&self.students(), student).map(str::to_owned) {
                    let n = self.next();
                    self.d.edit(Collection::Users, &id, |u| {
                        u["name"]["first"] = json!(format!("Renamed{n}"));
                    });
                }
            }
            Change::RemoveSchool(school) => {
                let schools = self.schools();
                if schools.len() >= 2
                    && let Some(id) = pick(&schools, school).map(str::to_owned)
                    && let Some(removed) = self.d.remove(Collection::Schools, &id)
                {
                    self.removed_schools.push(removed);
                }
            }
            Change::ReturnSchool(index) => {
                if !self.removed_schools.is_empty() {
                    let back = self
                        .removed_schools
                        .remove(index.index(self.removed_schools.len()));
                    self.d.upsert(Collection::Schools, back);
                }
            }
            Change::NewTeacherEmail { teacher, filtered } => {
                let Some(id) = pick(&self.teachers(), teacher).map(str::to_owned) else {
                    return;
                };
                let n = self.next();
                let email = match self.filtered_emails.first() {
                    Some(email) if *filtered => email.clone(),
                    _ => format!("changed{n}@district.example.org"),
                };
                self.d
                    .edit(Collection::Users, &id, |u| u["email"] = json!(email));
            }
            Change::ShareSisId { from, to } => {
                let students = self.students();
                if let (Some(from), Some(to)) = (pick(&students, from), pick(&students, to))
                    && from != to
                {
                    let sis_id = text(&self.user(from), "/roles/student/sis_id");
                    self.d.edit(Collection::Users, to, |u| {
                        u["roles"]["student"]["sis_id"] = json!(sis_id);
                    });
                }
            }
            Change::StudentTeaches {
                student,
                section,
                specials,
            } => {
                let teachers = self.teachers();
                let students: Vec<String> = self
                    .students()
                    .into_iter()
                    .filter(|s| !teachers.contains(s))
                    .collect();
                let Some(id) = pick(&students, student).map(str::to_owned) else {
                    return;
                };
                let pe = self.sections_where(|s| text(s, "/subject") == "PE and health");
                let candidates = if *specials && !pe.is_empty() {
                    pe
                } else {
                    self.d.ids(Collection::Sections)
                };
                let Some(target) = pick(&candidates, section).map(str::to_owned) else {
                    return;
                };
                let n = self.next();
                self.d.edit(Collection::Users, &id, |u| {
                    let school = text(u, "/roles/student/school");
                    u["roles"]["teacher"] = json!({
                        "school": school,
                        "schools": [school],
                        "sis_id": format!("TA{n}"),
                        "title": "Student Teacher",
                    });
                    if text(u, "/email").is_empty() {
                        u["email"] = json!(format!("ta{n}@district.example.org"));
                    }
                });
                self.add_teacher(&target, &id);
            }
        }
    }

    /// The export one sync reads: the SIS's records, garbled by `garbles`.
    fn serve(&self, garbles: &[Garble]) -> Export {
        let mut served = self.d.clone();
        let mut unreadable = Unreadable::default();
        let mut breaks = false;
        for garble in garbles {
            self.garble(garble, &mut served, &mut unreadable, &mut breaks);
        }
        // Whether a record was garbled (a garble with nothing to pick garbles nothing).
        let garbled = Collection::DATA.iter().any(|&c| {
            served.ids(c) != self.d.ids(c)
                || served
                    .ids(c)
                    .iter()
                    .any(|id| served.raw(c, id) != self.d.raw(c, id))
        });
        Export {
            dataset: served,
            unreadable,
            garbled,
            breaks,
        }
    }

    fn garble(
        &self,
        garble: &Garble,
        served: &mut Dataset,
        unreadable: &mut Unreadable,
        breaks: &mut bool,
    ) {
        match garble {
            Garble::UnreadableUser(index) => {
                if let Some(id) = pick(&self.rostered(), index) {
                    served.edit(Collection::Users, id, |u| u["name"] = json!("garbled"));
                    unreadable.users.insert(id.to_owned());
                }
            }
            Garble::SectionWithoutSchool(index) => {
                let sections = self.d.ids(Collection::Sections);
                if let Some(id) = pick(&sections, index) {
                    served.edit(Collection::Sections, id, |s| {
                        s.as_object_mut().map(|s| s.remove("school"));
                    });
                    unreadable.sections.insert(id.to_owned());
                }
            }
            Garble::UnknownStudentInSection(index) => {
                let sections = self.d.ids(Collection::Sections);
                if let Some(id) = pick(&sections, index) {
                    let nobody = served.new_id();
                    served.add_student_to_section(id, &nobody);
                }
            }
            Garble::UserWithoutId => {
                let district = self.d.ids(Collection::Districts)[0].clone();
                served.insert_raw(
                    Collection::Users,
                    "",
                    &json!({
                        "district": district,
                        "name": {"first": "No", "last": "Id"},
                        "roles": {"student": {"sis_id": "NO-ID"}},
                    })
                    .to_string(),
                );
            }
            Garble::DuplicateUser(index) => {
                if let Some(id) = pick(&self.rostered(), index) {
                    let mut copy = self.user(id);
                    copy["name"]["first"] = json!("Duplicate");
                    // Sorted right after the original, so served second.
                    served.insert_raw(Collection::Users, &format!("{id}~"), &copy.to_string());
                }
            }
            Garble::BrokenPage => {
                served.insert_raw(
                    Collection::Users,
                    "ffffffffffffffffffffffff",
                    r#"{"id": "ffff"#,
                );
                *breaks = true;
            }
        }
    }
}

/// What one sync reads.
struct Export {
    dataset: Dataset,
    /// Records that cannot be read.
    unreadable: Unreadable,
    /// Whether a record was garbled: the run quarantines it.
    garbled: bool,
    /// Whether the export cannot be read at all: the run fails.
    breaks: bool,
}

/// Records of one export that cannot be read.
#[derive(Debug, Default)]
struct Unreadable {
    users: BTreeSet<String>,
    sections: BTreeSet<String>,
}

// ---------------------------------------------------------------------------------------------
// The model: what the Freckle DB should hold, from the served JSON and the rules.

/// Live records and open memberships, by source id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Roster {
    students: BTreeSet<String>,
    teachers: BTreeSet<String>,
    classes: BTreeSet<String>,
    /// (class, student)
    class_students: BTreeSet<(String, String)>,
    /// (class, teacher) and the teacher's role
    class_teachers: BTreeMap<(String, String), String>,
}

/// A section as the roster reads it: teachers primary first, references to users who are not
/// there left out (those who could not be read keep their place).
#[derive(Debug)]
struct ServedSection {
    id: String,
    school: String,
    subject: String,
    teachers: Vec<String>,
    students: Vec<String>,
}

/// A user's role as the roster reads it.
#[derive(Debug, Clone)]
struct ServedUser {
    email: String,
    /// The primary school, when it is one of the export's schools.
    school: Option<String>,
}

/// The readable records of an export.
#[derive(Debug, Default)]
struct Served {
    students: BTreeMap<String, ServedUser>,
    teachers: BTreeMap<String, ServedUser>,
    sections: Vec<ServedSection>,
}

/// Reads an export as the rules read it: the first record of an id wins; unreadable records are
/// set aside; sections of schools that are not there are left out, and so is a user's school
/// that is not there.
fn read_served(d: &Dataset, unreadable: &Unreadable) -> Served {
    let mut served = Served::default();
    let schools: BTreeSet<String> = d.ids(Collection::Schools).into_iter().collect();
    let mut seen = BTreeSet::new();
    for user in d.all(Collection::Users) {
        let id = text(&user, "/id");
        if id.is_empty() || !seen.insert(id.clone()) || unreadable.users.contains(&id) {
            continue;
        }
        let role = |name: &str| {
            user.pointer(&format!("/roles/{name}"))
                .map(|role| ServedUser {
                    email: text(&user, "/email"),
                    school: Some(text(role, "/school")).filter(|s| schools.contains(s)),
                })
        };
        if let Some(student) = role("student") {
            served.students.insert(id.clone(), student);
        }
        if let Some(teacher) = role("teacher") {
            served.teachers.insert(id, teacher);
        }
    }
    let mut seen = BTreeSet::new();
    for section in d.all(Collection::Sections) {
        let id = text(&section, "/id");
        let school = text(&section, "/school");
        if !seen.insert(id.clone())
            || unreadable.sections.contains(&id)
            || !schools.contains(&school)
        {
            continue;
        }
        let known = |list: Vec<String>, role: &BTreeMap<String, ServedUser>| -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for member in list {
                if (role.contains_key(&member) || unreadable.users.contains(&member))
                    && !out.contains(&member)
                {
                    out.push(member);
                }
            }
            out
        };
        let mut teachers = strings(&section, "teachers");
        let primary = text(&section, "/teacher");
        if !primary.is_empty() {
            teachers.retain(|t| *t != primary);
            teachers.insert(0, primary);
        }
        let teachers = known(teachers, &served.teachers);
        let students = known(strings(&section, "students"), &served.students);
        served.sections.push(ServedSection {
            teachers,
            students,
            school,
            subject: text(&section, "/subject"),
            id,
        });
    }
    served
}

/// The sharing rules stage as documented: a section is shared when its school is shared whole
/// or it matches a rule; each role of a user follows its own shared sections, unless the user's
/// school is shared whole.
fn apply_sharing(served: &mut Served, rule: &SharingRule) {
    let shared_school = |school: &str| rule.school.as_deref() == Some(school);
    served.sections.retain(|s| {
        shared_school(&s.school) || (rule.math && s.subject.eq_ignore_ascii_case("math"))
    });
    let still_students: BTreeSet<String> = served
        .sections
        .iter()
        .flat_map(|s| s.students.iter().cloned())
        .collect();
    let still_teachers: BTreeSet<String> = served
        .sections
        .iter()
        .flat_map(|s| s.teachers.iter().cloned())
        .collect();
    let kept = |still: &BTreeSet<String>, id: &String, user: &ServedUser| {
        still.contains(id) || user.school.as_deref().is_some_and(shared_school)
    };
    served
        .students
        .retain(|id, user| kept(&still_students, id, user));
    served
        .teachers
        .retain(|id, user| kept(&still_teachers, id, user));
}

/// The filter stage as documented: it drops the teachers it names and the sections it names or
/// whose every teacher it dropped; students and teachers who had sections and have none left
/// follow them out, each role on its own. A dropped primary teacher's co-teacher stays a
/// co-teacher.
fn apply_filter(served: &mut Served, specials: bool, emails: &BTreeSet<String>) {
    let had_students: BTreeSet<String> = served
        .sections
        .iter()
        .flat_map(|s| s.students.iter().cloned())
        .collect();
    let had_teachers: BTreeSet<String> = served
        .sections
        .iter()
        .flat_map(|s| s.teachers.iter().cloned())
        .collect();
    let dropped: BTreeSet<String> = served
        .teachers
        .iter()
        .filter(|(_, teacher)| emails.contains(&teacher.email.to_lowercase()))
        .map(|(id, _)| id.clone())
        .collect();
    served.teachers.retain(|id, _| !dropped.contains(id));
    served.sections.retain(|s| {
        let special = specials && s.subject.eq_ignore_ascii_case("PE and health");
        let untaught = !s.teachers.is_empty() && s.teachers.iter().all(|t| dropped.contains(t));
        !special && !untaught
    });
    let still_students: BTreeSet<&String> =
        served.sections.iter().flat_map(|s| &s.students).collect();
    let still_teachers: BTreeSet<&String> =
        served.sections.iter().flat_map(|s| &s.teachers).collect();
    let orphaned_students: Vec<String> = served
        .students
        .keys()
        .filter(|s| had_students.contains(*s) && !still_students.contains(s))
        .cloned()
        .collect();
    let orphaned_teachers: Vec<String> = served
        .teachers
        .keys()
        .filter(|t| had_teachers.contains(*t) && !still_teachers.contains(t))
        .cloned()
        .collect();
    for s in orphaned_students {
        served.students.remove(&s);
    }
    for t in orphaned_teachers {
        served.teachers.remove(&t);
    }
}

/// The roster after a sync of `served` into a DB that held `before`: records that could not be
/// read stay exactly as they were, with their memberships, and so do the members of classes that
/// could not be read.
fn expected(before: &Roster, served: &Served, unreadable: &Unreadable) -> Roster {
    let frozen_class = |c: &String| unreadable.sections.contains(c);
    let frozen_user = |u: &String| unreadable.users.contains(u);
    let mut after = Roster::default();
    for section in &served.sections {
        after.classes.insert(section.id.clone());
        for student in &section.students {
            if served.students.contains_key(student) {
                after
                    .class_students
                    .insert((section.id.clone(), student.clone()));
            }
        }
        for (index, teacher) in section.teachers.iter().enumerate() {
            if served.teachers.contains_key(teacher) {
                let role = if index == 0 { "primary" } else { "co" };
                after
                    .class_teachers
                    .insert((section.id.clone(), teacher.clone()), role.to_owned());
            }
        }
    }
    after
        .classes
        .extend(before.classes.iter().filter(|c| frozen_class(c)).cloned());
    after.class_students.extend(
        before
            .class_students
            .iter()
            .filter(|(c, s)| frozen_class(c) || frozen_user(s))
            .cloned(),
    );
    after.class_teachers.extend(
        before
            .class_teachers
            .iter()
            .filter(|((c, t), _)| frozen_class(c) || frozen_user(t))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let held_students: BTreeSet<&String> = before
        .class_students
        .iter()
        .filter(|(c, _)| frozen_class(c))
        .map(|(_, s)| s)
        .collect();
    let held_teachers: BTreeSet<&String> = before
        .class_teachers
        .keys()
        .filter(|(c, _)| frozen_class(c))
        .map(|(_, t)| t)
        .collect();
    after.students = served.students.keys().cloned().collect();
    after.students.extend(
        before
            .students
            .iter()
            .filter(|s| frozen_user(s) || held_students.contains(s))
            .cloned(),
    );
    after.teachers = served.teachers.keys().cloned().collect();
    after.teachers.extend(
        before
            .teachers
            .iter()
            .filter(|t| frozen_user(t) || held_teachers.contains(t))
            .cloned(),
    );
    after
}

/// Stays of a membership: (class, member, started_run, ended_run).
type Stays = BTreeSet<(String, String, i64, Option<i64>)>;

/// The stays the runs imply: a pair's stay starts in the first run it is live in and ends in the
/// first run it is not.
fn expected_stays(
    runs: &[(i64, Roster)],
    pairs: impl Fn(&Roster) -> BTreeSet<(String, String)>,
) -> Stays {
    let mut open: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut stays = Stays::new();
    for (run, roster) in runs {
        let now = pairs(roster);
        open.retain(|pair, started| {
            let live = now.contains(pair);
            if !live {
                stays.insert((pair.0.clone(), pair.1.clone(), *started, Some(*run)));
            }
            live
        });
        for pair in now {
            open.entry(pair).or_insert(*run);
        }
    }
    for ((class, member), started) in open {
        stays.insert((class, member, started, None));
    }
    stays
}

/// Per record ever live: the run that created it and whether it is live now; and every archive
/// and restore as (id, action, run).
#[allow(clippy::type_complexity)]
fn expected_records(
    runs: &[(i64, Roster)],
    entity: &str,
) -> (
    BTreeMap<String, (i64, bool)>,
    BTreeSet<(String, String, i64)>,
) {
    let mut rows: BTreeMap<String, (i64, bool)> = BTreeMap::new();
    let mut changes = BTreeSet::new();
    for (run, roster) in runs {
        let live = match entity {
            "student" => &roster.students,
            "teacher" => &roster.teachers,
            _ => &roster.classes,
        };
        for (id, (_, was_live)) in rows.iter_mut() {
            let is_live = live.contains(id);
            if *was_live && !is_live {
                changes.insert((id.clone(), "archive".to_owned(), *run));
            } else if !*was_live && is_live {
                changes.insert((id.clone(), "restore".to_owned(), *run));
            }
            *was_live = is_live;
        }
        for id in live {
            rows.entry(id.clone()).or_insert((*run, true));
        }
    }
    (rows, changes)
}

/// What Freckle users did, which every sync must leave alone.
#[derive(Debug, Default)]
struct FreckleSide {
    /// (student, teacher) shares.
    shares: BTreeSet<(String, String)>,
    /// Manual class (by SIS id) to its students.
    manual: BTreeMap<String, BTreeSet<String>>,
    /// Teachers whose accounts are active.
    active: BTreeSet<String>,
    /// Every account seen so far: teacher to its creation time.
    accounts: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------------
// Reading the Freckle DB.

type Check = Result<(), String>;

fn same<T: Ord + Debug>(what: &str, expected: &BTreeSet<T>, actual: &BTreeSet<T>) -> Check {
    if expected == actual {
        return Ok(());
    }
    let missing: Vec<&T> = expected.difference(actual).collect();
    let unexpected: Vec<&T> = actual.difference(expected).collect();
    Err(format!(
        "{what}: missing {missing:?}; unexpected {unexpected:?}"
    ))
}

fn pairs(rows: Vec<String>) -> BTreeSet<(String, String)> {
    rows.into_iter()
        .map(|row| {
            let (a, b) = row.split_once('|').expect("two columns");
            (a.to_owned(), b.to_owned())
        })
        .collect()
}

fn run_number(field: &str) -> Option<i64> {
    (field != "NULL").then(|| field.parse().expect("a run id"))
}

/// The live roster the DB holds, as the model describes it.
async fn loaded(db: &TestDb) -> Roster {
    let set = |rows: Vec<String>| rows.into_iter().collect::<BTreeSet<_>>();
    Roster {
        students: set(db
            .rows("SELECT source_id FROM students WHERE archived_at IS NULL")
            .await),
        teachers: set(db
            .rows("SELECT source_id FROM teachers WHERE archived_at IS NULL AND managed_by = 'sis'")
            .await),
        classes: set(db
            .rows("SELECT source_id FROM classes WHERE archived_at IS NULL AND managed_by = 'sis'")
            .await),
        class_students: pairs(
            db.rows(
                "SELECT c.source_id, s.source_id FROM class_students m \
                 JOIN classes c ON c.id = m.class_id JOIN students s ON s.id = m.student_id \
                 WHERE m.ended_at IS NULL AND m.source <> 'manual'",
            )
            .await,
        ),
        class_teachers: db
            .rows(
                "SELECT c.source_id, t.source_id, m.role FROM class_teachers m \
                 JOIN classes c ON c.id = m.class_id JOIN teachers t ON t.id = m.teacher_id \
                 WHERE m.ended_at IS NULL AND m.source <> 'manual'",
            )
            .await
            .into_iter()
            .map(|row| {
                let f: Vec<&str> = row.split('|').collect();
                ((f[0].to_owned(), f[1].to_owned()), f[2].to_owned())
            })
            .collect(),
    }
}

/// Every stay the DB records in `table` (`class_students` or `class_teachers`), `member` being
/// the members' table.
async fn stays(db: &TestDb, table: &str, member: &str) -> Stays {
    db.rows(&format!(
        "SELECT c.source_id, u.source_id, m.started_run, m.ended_run FROM {table} m \
         JOIN classes c ON c.id = m.class_id JOIN {member} u ON u.id = m.{}_id \
         WHERE m.source <> 'manual'",
        &member[..member.len() - 1]
    ))
    .await
    .into_iter()
    .map(|row| {
        let f: Vec<&str> = row.split('|').collect();
        (
            f[0].to_owned(),
            f[1].to_owned(),
            run_number(f[2]).expect("a started run"),
            run_number(f[3]),
        )
    })
    .collect()
}

/// Checks the DB against the model after a committed sync.
async fn check_roster(db: &TestDb, runs: &[(i64, Roster)]) -> Check {
    let (_, want) = runs.last().expect("a run");
    let have = loaded(db).await;
    same("live students", &want.students, &have.students)?;
    same("live teachers", &want.teachers, &have.teachers)?;
    same("live classes", &want.classes, &have.classes)?;
    same(
        "open class_students",
        &want.class_students,
        &have.class_students,
    )?;
    let roles = |m: &BTreeMap<(String, String), String>| -> BTreeSet<(String, String, String)> {
        m.iter()
            .map(|((c, t), r)| (c.clone(), t.clone(), r.clone()))
            .collect()
    };
    same(
        "open class_teachers (class, teacher, role)",
        &roles(&want.class_teachers),
        &roles(&have.class_teachers),
    )?;

    // History: every stay of every membership, with the runs that started and ended it.
    same(
        "class_students stays (class, student, started_run, ended_run)",
        &expected_stays(runs, |r| r.class_students.clone()),
        &stays(db, "class_students", "students").await,
    )?;
    same(
        "class_teachers stays (class, teacher, started_run, ended_run)",
        &expected_stays(runs, |r| r.class_teachers.keys().cloned().collect()),
        &stays(db, "class_teachers", "teachers").await,
    )?;
    // Records: created once, archived when they leave, restored when they come back.
    for (entity, table) in [
        ("student", "students"),
        ("teacher", "teachers"),
        ("class", "classes"),
    ] {
        let (rows, changes) = expected_records(runs, entity);
        let want: BTreeSet<String> = rows
            .iter()
            .map(|(id, (created, live))| format!("{id}|{created}|{}", live_word(*live)))
            .collect();
        let have: BTreeSet<String> = db
            .rows(&format!(
                "SELECT source_id, created_run, CASE WHEN archived_at IS NULL THEN 'live' ELSE 'archived' END \
                 FROM {table} WHERE source_id IS NOT NULL"
            ))
            .await
            .into_iter()
            .collect();
        same(
            &format!("{table} rows (id|created_run|state)"),
            &want,
            &have,
        )?;
        let have: BTreeSet<(String, String, i64)> = db
            .rows(&format!(
                "SELECT source_id, action, run_id FROM sync_changes \
                 WHERE entity = '{entity}' AND action IN ('archive', 'restore')"
            ))
            .await
            .into_iter()
            .map(|row| {
                let f: Vec<&str> = row.split('|').collect();
                (
                    f[0].to_owned(),
                    f[1].to_owned(),
                    f[2].parse().expect("a run"),
                )
            })
            .collect();
        same(&format!("{entity} archives and restores"), &changes, &have)?;
    }
    Ok(())
}

fn live_word(live: bool) -> &'static str {
    if live { "live" } else { "archived" }
}

/// Shares, manual classes and accounts are as Freckle users left them; every teacher the sync
/// made has one account and has had one welcome email, queued by the run that made them.
async fn check_freckle_side(db: &TestDb, freckle: &mut FreckleSide) -> Check {
    let shares = pairs(
        db.rows(
            "SELECT s.source_id, t.source_id FROM student_shares sh \
             JOIN students s ON s.id = sh.student_id JOIN teachers t ON t.id = sh.teacher_id \
             WHERE sh.revoked_at IS NULL",
        )
        .await,
    );
    same("shares", &freckle.shares, &shares)?;
    let want: BTreeSet<(String, String)> = freckle
        .manual
        .iter()
        .flat_map(|(class, students)| students.iter().map(|s| (class.clone(), s.clone())))
        .collect();
    let have = pairs(
        db.rows(
            "SELECT c.sis_id, s.source_id FROM class_students m \
             JOIN classes c ON c.id = m.class_id JOIN students s ON s.id = m.student_id \
             WHERE m.source = 'manual' AND m.ended_at IS NULL",
        )
        .await,
    );
    same("manual memberships", &want, &have)?;
    let want: BTreeSet<String> = freckle.manual.keys().cloned().collect();
    let have: BTreeSet<String> = db
        .rows("SELECT sis_id FROM classes WHERE managed_by = 'manual' AND archived_at IS NULL")
        .await
        .into_iter()
        .collect();
    same("manual classes", &want, &have)?;

    let teachers: Vec<String> = db
        .rows("SELECT source_id, created_run FROM teachers WHERE managed_by = 'sis' ORDER BY 1")
        .await;
    let welcomes: Vec<String> = db
        .rows(
            "SELECT t.source_id, o.run_id FROM email_outbox o JOIN teachers t ON t.id = o.teacher_id \
             WHERE o.kind = 'welcome' ORDER BY 1",
        )
        .await;
    if welcomes != teachers {
        return Err(format!(
            "welcome emails (teacher|run) {welcomes:?} are not one per teacher, queued by the run that made them: {teachers:?}"
        ));
    }
    let accounts: BTreeMap<String, (String, String)> = db
        .rows(
            "SELECT t.source_id, a.login_state, a.created_at FROM teacher_accounts a \
             JOIN teachers t ON t.id = a.teacher_id",
        )
        .await
        .into_iter()
        .map(|row| {
            let f: Vec<&str> = row.split('|').collect();
            (f[0].to_owned(), (f[1].to_owned(), f[2].to_owned()))
        })
        .collect();
    let with_account: Vec<String> = accounts.keys().cloned().collect();
    let made: Vec<String> = teachers
        .iter()
        .map(|row| row.split('|').next().expect("an id").to_owned())
        .collect();
    if with_account != made {
        return Err(format!(
            "teacher accounts {with_account:?} are not one per teacher {made:?}"
        ));
    }
    for (teacher, created) in &freckle.accounts {
        let (state, now_created) = &accounts[teacher];
        if now_created != created {
            return Err(format!("the account of {teacher} was made again"));
        }
        let want = if freckle.active.contains(teacher) {
            "active"
        } else {
            "invited"
        };
        if state != want {
            return Err(format!("the account of {teacher} is {state}, not {want}"));
        }
    }
    freckle.accounts = accounts
        .into_iter()
        .map(|(teacher, (_, created))| (teacher, created))
        .collect();
    Ok(())
}

/// What a fresh sync must also hold: live rows of every synced table, their references by
/// source id, and no row ids, timestamps, history, archived rows or manual data.
async fn live_tables(db: &TestDb) -> BTreeSet<String> {
    const TABLES: &[(&str, &str)] = &[
        (
            "district",
            "SELECT key, source_kind, source_id, sis_id, name FROM districts",
        ),
        (
            "school",
            "SELECT source_id, sis_id, name, school_number, state_id, low_grade, high_grade, \
             CASE WHEN synthesized THEN 'synthesized' ELSE 'served' END FROM schools WHERE archived_at IS NULL",
        ),
        (
            "term",
            "SELECT source_id, name, start_date, end_date, \
             CASE WHEN synthesized THEN 'synthesized' ELSE 'served' END FROM terms WHERE archived_at IS NULL",
        ),
        (
            "course",
            "SELECT source_id, name, number, \
             CASE WHEN synthesized THEN 'synthesized' ELSE 'served' END FROM courses WHERE archived_at IS NULL",
        ),
        (
            "teacher",
            "SELECT t.source_id, t.sis_id, t.email, t.first_name, t.middle_name, t.last_name, t.title, \
             t.teacher_number, t.state_id, sc.source_id, t.managed_by FROM teachers t \
             LEFT JOIN schools sc ON sc.id = t.school_id WHERE t.archived_at IS NULL",
        ),
        (
            "student",
            "SELECT s.source_id, s.sis_id, s.state_id, s.student_number, s.email, s.first_name, \
             s.middle_name, s.last_name, s.grade, sc.source_id FROM students s \
             LEFT JOIN schools sc ON sc.id = s.school_id WHERE s.archived_at IS NULL",
        ),
        (
            "admin",
            "SELECT source_id, email, first_name, middle_name, last_name, title FROM admins \
             WHERE archived_at IS NULL",
        ),
        (
            "class",
            "SELECT c.source_id, c.sis_id, sc.source_id, c.name, c.subject, c.grade, c.period, \
             c.section_number, c.term, tm.source_id, co.source_id, c.managed_by, c.source FROM classes c \
             LEFT JOIN schools sc ON sc.id = c.school_id LEFT JOIN terms tm ON tm.id = c.term_id \
             LEFT JOIN courses co ON co.id = c.course_id \
             WHERE c.archived_at IS NULL AND c.managed_by = 'sis'",
        ),
        (
            "class_teacher",
            "SELECT c.source_id, t.source_id, m.role, m.source FROM class_teachers m \
             JOIN classes c ON c.id = m.class_id JOIN teachers t ON t.id = m.teacher_id \
             WHERE m.ended_at IS NULL AND m.source <> 'manual'",
        ),
        (
            "class_student",
            "SELECT c.source_id, s.source_id, m.source FROM class_students m \
             JOIN classes c ON c.id = m.class_id JOIN students s ON s.id = m.student_id \
             WHERE m.ended_at IS NULL AND m.source <> 'manual'",
        ),
        (
            "teacher_account",
            "SELECT t.source_id FROM teacher_accounts a JOIN teachers t ON t.id = a.teacher_id \
             WHERE t.archived_at IS NULL",
        ),
        (
            "email_outbox",
            "SELECT t.source_id, o.kind FROM email_outbox o JOIN teachers t ON t.id = o.teacher_id \
             WHERE t.archived_at IS NULL",
        ),
    ];
    let mut all = BTreeSet::new();
    for (table, sql) in TABLES {
        for row in db.rows(sql).await {
            all.insert(format!("{table}: {row}"));
        }
    }
    all
}

// ---------------------------------------------------------------------------------------------
// One case.

/// Counts over a whole run of the property, for its summary line.
#[derive(Default)]
struct Tally {
    cases: AtomicUsize,
    syncs: AtomicUsize,
    changes: AtomicUsize,
    garbled: AtomicUsize,
    freckle: AtomicUsize,
}

fn options(dry_run: bool) -> RunOptions {
    RunOptions {
        dry_run,
        ..RunOptions::default()
    }
}

/// The sharing rules a pipeline applies, for the model: a school shared whole, math sections.
#[derive(Debug)]
struct SharingRule {
    school: Option<String>,
    math: bool,
}

/// The filter a pipeline applies, for the model: specials by subject, teachers by email.
#[derive(Debug)]
struct FilterRule {
    specials: bool,
    emails: BTreeSet<String>,
}

/// The transforms of a case's pipeline, in their order.
#[derive(Debug, Default)]
struct Rules {
    sharing: Option<SharingRule>,
    filter: Option<FilterRule>,
}

impl Rules {
    /// The case's rules, resolved in its first district.
    fn of(case: &Case, d: &Dataset) -> Rules {
        let sharing = case.sharing.as_ref().and_then(|sharing| {
            let school = sharing
                .school
                .as_ref()
                .and_then(|index| pick(&d.ids(Collection::Schools), index).map(str::to_owned));
            (school.is_some() || sharing.math).then_some(SharingRule {
                school,
                math: sharing.math,
            })
        });
        let filter = case.filter.as_ref().and_then(|filter| {
            let email =
                |id: &str| text(&d.get(Collection::Users, id).expect("a teacher"), "/email");
            let mut emails = BTreeSet::new();
            if let Some(index) = &filter.primary_of_co_taught {
                let primaries: Vec<String> = d
                    .all(Collection::Sections)
                    .iter()
                    .filter(|s| strings(s, "teachers").len() >= 2)
                    .map(|s| text(s, "/teacher"))
                    .collect();
                if let Some(teacher) = pick(&primaries, index) {
                    emails.insert(email(teacher).to_lowercase());
                }
            }
            if let Some(index) = &filter.teacher
                && let Some(teacher) = pick(&d.ids_with_role(Role::Teacher), index)
            {
                emails.insert(email(teacher).to_lowercase());
            }
            (filter.specials || !emails.is_empty()).then_some(FilterRule {
                specials: filter.specials,
                emails,
            })
        });
        Rules { sharing, filter }
    }

    /// The pipeline's `[[transform]]` and `[safety]` lines (safety holds off: the generated
    /// changes are small districts' big changes, and a held run is another test's topic).
    fn pipeline_lines(&self) -> String {
        let mut lines = String::from(
            "[safety]\narchive_max_percent = 100\nupdate_max_percent = 100\nmin_records = 1000000\n",
        );
        if let Some(sharing) = &self.sharing {
            lines.push_str(&format!(
                "\n[[transform]]\ntype = \"sharing_rules\"\nname = \"generated\"\nschools = {:?}\n",
                sharing.school.iter().collect::<Vec<_>>()
            ));
            if sharing.math {
                lines.push_str(
                    "[[transform.sections]]\nwhere = [{ field = \"subject\", is = \"math\" }]\n",
                );
            }
        }
        if let Some(filter) = &self.filter {
            let subjects: &[&str] = if filter.specials {
                &["PE and health"]
            } else {
                &[]
            };
            lines.push_str(&format!(
                "\n[[transform]]\ntype = \"filter\"\nname = \"generated\"\nsection_subjects = {subjects:?}\nteacher_emails = {:?}\n",
                filter.emails.iter().collect::<Vec<_>>()
            ));
        }
        lines
    }

    /// What the pipeline's transforms make of an export, as documented.
    fn apply(&self, served: &mut Served) {
        if let Some(sharing) = &self.sharing {
            apply_sharing(served, sharing);
        }
        if let Some(filter) = &self.filter {
            apply_filter(served, filter.specials, &filter.emails);
        }
    }
}

fn write_recording(d: &Dataset, dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("remove the old recording");
    }
    d.write_recording(dir, PAGE).expect("write the recording");
}

fn committed(result: &RunResult) -> Result<i64, String> {
    match &result.status {
        RunStatus::Committed { run_id } => Ok(*run_id),
        other => Err(format!("expected a committed run, got {other:?}")),
    }
}

/// A fresh, empty database; on SQLite a copy of `template`, an empty Freckle DB already migrated
/// (migrating a new SQLite file takes longer than a small district's sync).
async fn empty_db(backend: Backend, template: Option<&Path>) -> TestDb {
    let db = TestDb::new(backend).await;
    if let Some(template) = template {
        std::fs::copy(template, db.dir.path().join("freckle.db")).expect("copy the template");
    }
    db
}

/// Runs a case's history on `backend` and checks every promise after every sync.
async fn history(backend: Backend, case: &Case, tally: &Tally, template: Option<&Path>) -> Check {
    tally.cases.fetch_add(1, Ordering::Relaxed);
    let db = empty_db(backend, template).await;
    let mut sis = Sis {
        d: case.district.generate(),
        left: Vec::new(),
        removed_sections: Vec::new(),
        removed_schools: Vec::new(),
        filtered_emails: Vec::new(),
        made: 0,
    };
    let district = sis.d.ids(Collection::Districts)[0].clone();
    let rules = Rules::of(case, &sis.d);
    sis.filtered_emails = rules
        .filter
        .iter()
        .flat_map(|f| f.emails.iter().cloned())
        .collect();
    let extra = rules.pipeline_lines();
    let recording = db.dir.path().join("recording");
    write_recording(&sis.d, &recording);
    let district_pipeline = pipeline(
        db.dir.path(),
        "district",
        &replay_source(&recording),
        &db.url,
        &extra,
    );
    let mut runs: Vec<(i64, Roster)> = Vec::new();
    let mut freckle = FreckleSide::default();

    let mut steps: Vec<&Step> = case.steps.iter().collect();
    // A history ends with a clean export, so that its last sync can be compared to a fresh one.
    let settle = Step {
        changes: Vec::new(),
        garbles: Vec::new(),
        freckle: Vec::new(),
    };
    if case.steps.last().is_some_and(|s| !s.garbles.is_empty()) {
        steps.push(&settle);
    }
    for (n, step) in steps.iter().enumerate() {
        let at = |e: String| format!("sync {} of the history: {e}", n + 1);
        for change in &step.changes {
            sis.apply(change);
            tally.changes.fetch_add(1, Ordering::Relaxed);
        }
        let Export {
            dataset: served,
            unreadable,
            garbled,
            breaks,
        } = sis.serve(&step.garbles);
        if garbled {
            tally.garbled.fetch_add(1, Ordering::Relaxed);
        }
        write_recording(&served, &recording);
        let before = if breaks {
            db.fingerprint().await
        } else {
            Vec::new()
        };
        let result = crate::util::run(&district_pipeline, &options(false)).await;
        tally.syncs.fetch_add(1, Ordering::Relaxed);
        if breaks {
            match result {
                Err(SyncError::Extract { .. }) => {}
                other => {
                    return Err(at(format!(
                        "a page that is not JSON must fail the pull, got {other:?}"
                    )));
                }
            }
            if db.fingerprint().await != before {
                return Err(at("a failed run changed the roster".into()));
            }
        } else {
            let result = result.map_err(|e| {
                at(format!(
                    "the sync failed: {}",
                    rosterflow_model::error_chain(&e)
                ))
            })?;
            let run = committed(&result).map_err(at)?;
            if garbled && result.plan.quarantined == 0 {
                return Err(at(format!(
                    "the garbled records of {:?} were not quarantined",
                    step.garbles
                )));
            }
            let mut view = read_served(&served, &unreadable);
            rules.apply(&mut view);
            let before = runs.last().map(|(_, r)| r.clone()).unwrap_or_default();
            runs.push((run, expected(&before, &view, &unreadable)));
            check_roster(&db, &runs).await.map_err(at)?;

            // A resync of the same export plans nothing.
            let again = crate::util::run(&district_pipeline, &options(true))
                .await
                .map_err(|e| {
                    at(format!(
                        "the resync failed: {}",
                        rosterflow_model::error_chain(&e)
                    ))
                })?;
            if !again.plan.is_empty() || again.plan.new_accounts != 0 {
                return Err(at(format!(
                    "a resync of the same export plans changes:\n{}",
                    again.plan
                )));
            }
        }
        check_freckle_side(&db, &mut freckle).await.map_err(at)?;
        for edit in &step.freckle {
            freckle_edit_apply(&db, &district, edit, &mut freckle)
                .await
                .map_err(at)?;
            tally.freckle.fetch_add(1, Ordering::Relaxed);
        }
    }

    // The live roster is what a fresh sync of the last export loads into an empty DB.
    let fresh = empty_db(backend, template).await;
    let fresh_pipeline = pipeline(
        fresh.dir.path(),
        "district",
        &replay_source(&recording),
        &fresh.url,
        &extra,
    );
    let result = crate::util::run(&fresh_pipeline, &options(false))
        .await
        .map_err(|e| {
            format!(
                "the fresh sync failed: {}",
                rosterflow_model::error_chain(&e)
            )
        })?;
    committed(&result)?;
    tally.syncs.fetch_add(1, Ordering::Relaxed);
    same(
        "the live roster against a fresh sync of the last export",
        &live_tables(&fresh).await,
        &live_tables(&db).await,
    )
}

/// Does what a Freckle user does, through the roster module the app's actions use, and notes it
/// in the model.
async fn freckle_edit_apply(
    db: &TestDb,
    district: &str,
    edit: &FreckleEdit,
    freckle: &mut FreckleSide,
) -> Check {
    let handle = db.open().await;
    let live = |table: &str| {
        format!(
            "SELECT source_id FROM {table} WHERE archived_at IS NULL AND managed_by = 'sis' ORDER BY source_id"
        )
    };
    let students = db
        .rows("SELECT source_id FROM students WHERE archived_at IS NULL ORDER BY source_id")
        .await;
    let teachers = db.rows(&live("teachers")).await;
    let classes = db.rows(&live("classes")).await;
    match edit {
        FreckleEdit::ShareClass { class, teacher } => {
            let (Some(class), Some(teacher)) = (pick(&classes, class), pick(&teachers, teacher))
            else {
                return Ok(());
            };
            let members = db
                .rows(&format!(
                    "SELECT s.source_id FROM class_students m JOIN classes c ON c.id = m.class_id \
                     JOIN students s ON s.id = m.student_id \
                     WHERE c.source_id = '{class}' AND m.ended_at IS NULL"
                ))
                .await;
            for student in members {
                roster::share(&handle, district, &student, teacher, None)
                    .await
                    .map_err(|e| format!("sharing {student} with {teacher}: {e}"))?;
                freckle.shares.insert((student, teacher.to_owned()));
            }
        }
        FreckleEdit::ManualClass { students: chosen } => {
            let class = format!("manual-{}", freckle.manual.len() + 1);
            let made = sqlx::query(
                "INSERT INTO classes (district_id, sis_id, name, managed_by, source, created_at, updated_at) \
                 SELECT id, $1, 'Made in Freckle', 'manual', 'manual', $2, $2 FROM districts",
            )
            .bind(&class)
            .bind("2026-01-01T00:00:00.000000Z")
            .execute(&handle.pool)
            .await
            .map_err(|e| format!("making a manual class: {e}"))?;
            if made.rows_affected() == 0 {
                // No district yet: its first sync failed.
                return Ok(());
            }
            let members = freckle.manual.entry(class.clone()).or_default();
            for index in chosen {
                if let Some(student) = pick(&students, index) {
                    roster::add_student(&handle, district, &class, student)
                        .await
                        .map_err(|e| format!("adding {student} to {class}: {e}"))?;
                    members.insert(student.to_owned());
                }
            }
        }
        FreckleEdit::ActivateAccount(teacher) => {
            if let Some(teacher) = pick(&teachers, teacher) {
                sqlx::query(
                    "UPDATE teacher_accounts SET login_state = 'active', password_set_at = $1 \
                     WHERE teacher_id = (SELECT id FROM teachers WHERE source_id = $2)",
                )
                .bind("2026-01-02T00:00:00.000000Z")
                .bind(teacher)
                .execute(&handle.pool)
                .await
                .map_err(|e| format!("activating {teacher}: {e}"))?;
                freckle.active.insert(teacher.to_owned());
            }
        }
        FreckleEdit::LockedEdit { class, student } => {
            if let (Some(class), Some(student)) = (pick(&classes, class), pick(&students, student))
            {
                match roster::add_student(&handle, district, class, student).await {
                    Err(RosterError::Locked { .. }) => {}
                    other => {
                        return Err(format!(
                            "adding {student} to the Clever class {class} by hand: {other:?}, not refused as locked"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The property, on each backend.

/// The seeds of the failing cases saved so far (`cc <seed>` lines).
fn saved_seeds() -> BTreeSet<String> {
    std::fs::read_to_string(REGRESSIONS)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("cc "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Runs the property on `backend`: `cases` new cases (or `PROPTEST_CASES`), after the saved
/// regressions.
fn property(backend: Backend, cases: u32) {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    // A seed of our own, printed, unless `PROPTEST_RNG_SEED` gives one.
    let seed = match config.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => rand::random(),
    };
    config.rng_seed = RngSeed::Fixed(seed);
    let persist = std::env::var_os("PROPTEST_DISABLE_FAILURE_PERSISTENCE").is_none();
    if persist {
        config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS)));
    }
    // A failing case is shrunk to a short history, within bounds.
    if std::env::var_os("PROPTEST_MAX_SHRINK_TIME").is_none() {
        config.max_shrink_time = 180_000;
    }
    if std::env::var_os("PROPTEST_MAX_SHRINK_ITERS").is_none() {
        config.max_shrink_iters = 4096;
    }
    let cases = config.cases;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let template = match backend {
        Backend::Sqlite => Some(runtime.block_on(async {
            let template = TestDb::new(backend).await;
            template.open().await;
            template.scalar("PRAGMA wal_checkpoint(TRUNCATE)").await;
            template
        })),
        Backend::Postgres => None,
    };
    let template_file = template.as_ref().map(|t| t.dir.path().join("freckle.db"));
    let saved_before = saved_seeds();
    let tally = Tally::default();
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        runtime
            .block_on(history(backend, &case, &tally, template_file.as_deref()))
            .map_err(TestCaseError::fail)
    });
    drop(template);
    let histories = tally.cases.load(Ordering::Relaxed);
    let summary = format!(
        "properties on {backend:?}: {histories} histories of generated districts ({cases} new \
         cases; the rest saved regressions, or shrinking), {} syncs, {} SIS changes, {} garbled \
         exports, {} Freckle edits, in {:.0?}; PROPTEST_RNG_SEED={seed} repeats this run",
        tally.syncs.load(Ordering::Relaxed),
        tally.changes.load(Ordering::Relaxed),
        tally.garbled.load(Ordering::Relaxed),
        tally.freckle.load(Ordering::Relaxed),
        started.elapsed(),
    );
    // Straight to stderr, past the test harness's capture: the counts are the point.
    let _ = writeln!(std::io::stderr(), "{summary}");
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, case)) => {
            let saved = if persist {
                match saved_seeds().difference(&saved_before).next() {
                    Some(seed) => format!(
                        "its seed, cc {seed}, is saved in {REGRESSIONS}, which every run replays \
                         first: commit the file"
                    ),
                    None => format!("it is a saved regression of {REGRESSIONS} that fails again"),
                }
            } else {
                "not saved (PROPTEST_DISABLE_FAILURE_PERSISTENCE)".to_owned()
            };
            panic!(
                "{summary}\nthe promise failed: {why}\n{saved}\nthe minimal failing case:\n{case:#?}"
            )
        }
        Err(TestError::Abort(why)) => panic!("{summary}\naborted: {why}"),
    }
}

#[test]
fn generated_histories_keep_the_promise_on_sqlite() {
    property(Backend::Sqlite, SQLITE_CASES);
}

#[test]
fn generated_histories_keep_the_promise_on_postgres() {
    property(Backend::Postgres, POSTGRES_CASES);
}

// ---------------------------------------------------------------------------------------------
// What the property found, each as a test of its own.

/// A district with co-taught sections, its recording, and a pipeline with `filter` lines.
async fn filtered_district(
    backend: Backend,
    edit: impl FnOnce(&mut Dataset) -> String,
) -> (TestDb, Dataset, String) {
    let db = TestDb::new(backend).await;
    let mut spec = GenSpec::new(24).with_seed(11);
    spec.students_per_school = 24;
    spec.class_size = 6;
    spec.co_teacher_percent = 100;
    spec.blank_subject_percent = 0;
    let mut d = generate(spec);
    let filter = edit(&mut d);
    let recording = db.dir.path().join("recording");
    write_recording(&d, &recording);
    let district = pipeline(
        db.dir.path(),
        "district",
        &replay_source(&recording),
        &db.url,
        &format!("[[transform]]\ntype = \"filter\"\n{filter}\n"),
    );
    let result = crate::util::run(&district, &options(false))
        .await
        .expect("the sync");
    committed(&result).expect("committed");
    (db, d, filter)
}

/// A filter that drops a co-taught section's primary teacher leaves its co-teacher a
/// co-teacher: the SIS says who is primary, not the filter.
async fn a_filter_dropping_the_primary_teacher_leaves_the_co_teacher_co(backend: Backend) {
    let mut section = String::new();
    let mut co = String::new();
    let (db, _, _) = filtered_district(backend, |d| {
        let s = d
            .all(Collection::Sections)
            .into_iter()
            .find(|s| strings(s, "teachers").len() == 2)
            .expect("a co-taught section");
        section = text(&s, "/id");
        co = strings(&s, "teachers")[1].clone();
        let primary = text(&s, "/teacher");
        let email = text(
            &d.get(Collection::Users, &primary).expect("a teacher"),
            "/email",
        );
        format!("teacher_emails = [{email:?}]")
    })
    .await;
    let roles = db
        .rows(&format!(
            "SELECT t.source_id, m.role FROM class_teachers m JOIN classes c ON c.id = m.class_id \
             JOIN teachers t ON t.id = m.teacher_id WHERE c.source_id = '{section}' AND m.ended_at IS NULL"
        ))
        .await;
    assert_eq!(roles, [format!("{co}|co")]);
}

/// A student who also teaches, only a section the filter drops, is loaded as a student and not
/// as a teacher: each role follows its own sections.
async fn a_student_who_teaches_only_a_dropped_section_is_no_teacher(backend: Backend) {
    let mut student = String::new();
    let (db, _, _) = filtered_district(backend, |d| {
        let pe = d
            .all(Collection::Sections)
            .into_iter()
            .find(|s| text(s, "/subject") == "PE and health")
            .expect("a PE section");
        let pe = text(&pe, "/id");
        student = d.ids_with_role(Role::Student)[0].clone();
        d.edit(Collection::Users, &student, |u| {
            u["roles"]["teacher"] = json!({"sis_id": "TA1", "title": "Student Teacher"});
            u["email"] = json!("ta1@district.example.org");
        });
        let mut teachers = d.section_teachers(&pe);
        teachers.push(student.clone());
        let teachers: Vec<&str> = teachers.iter().map(String::as_str).collect();
        d.set_section_teachers(&pe, &teachers);
        r#"section_subjects = ["PE and health"]"#.to_owned()
    })
    .await;
    let count = |table: &str| {
        format!(
            "SELECT COUNT(*) FROM {table} WHERE source_id = '{student}' AND archived_at IS NULL"
        )
    };
    assert_eq!(db.scalar(&count("students")).await, 1, "a student");
    assert_eq!(db.scalar(&count("teachers")).await, 0, "not a teacher");
}

crate::on_both_backends!(
    a_filter_dropping_the_primary_teacher_leaves_the_co_teacher_co,
    a_student_who_teaches_only_a_dropped_section_is_no_teacher,
);
