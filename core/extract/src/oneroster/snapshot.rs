//! The raw roster mapped to the model, by the table in the [module docs](super): one district
//! org, its schools, terms, courses, classes with their members, and its users by role.

use std::collections::{HashMap, HashSet};

use super::feed::{Class, Org, Problem, Roster, User};
use super::manifest::{CsvFile, Version};
use super::vocab::{self, EnrollmentRole, OrgType, Role, RoleKind, RoleType};
use crate::ExtractError;
use crate::config::SisIdSource;
use rosterflow_model::{
    Admin, Course, District, Entity, Id, Name, Quarantined, School, Section, Skipped,
    SkippedRecord, Snapshot, Source, SourceKind, Student, Teacher, Term, USERS,
};

/// Builds the snapshot of the district `selected` (or the feed's only one) from `roster`;
/// `passing` are this load's problems that the roster does not keep.
pub(crate) fn build(
    roster: &Roster,
    passing: &[(CsvFile, Problem)],
    selected: Option<&str>,
    sis_id: &SisIdSource,
) -> Result<Snapshot, ExtractError> {
    let district = pick_district(&roster.orgs.rows, selected)?;
    let mut mapper = Mapper {
        roster,
        district,
        sis_id,
        orgs: roster
            .orgs
            .rows
            .iter()
            .map(|o| (o.id.as_str(), o))
            .collect(),
        single: roster
            .orgs
            .rows
            .iter()
            .filter(|o| o.kind == OrgType::District)
            .count()
            == 1,
        unreadable: HashSet::new(),
        snapshot: Snapshot {
            district: District {
                id: district.id.clone(),
                name: district.name.clone(),
                source: SourceKind::OneRoster,
                source_id: district.id.clone(),
            },
            ..Snapshot::default()
        },
    };
    for (file, problem) in roster.problems() {
        mapper.quarantine_problem(file, problem);
    }
    for (file, problem) in passing {
        mapper.quarantine_problem(*file, problem);
    }
    let schools = mapper.schools();
    mapper.courses();
    let classes = mapper.sections(&schools);
    mapper.terms();
    let users = mapper.users();
    mapper.members(&classes, &users);
    Ok(mapper.finish())
}

/// The district org to load: the one named, or the feed's only one.
fn pick_district<'r>(orgs: &'r [Org], selected: Option<&str>) -> Result<&'r Org, ExtractError> {
    let districts: Vec<&Org> = orgs
        .iter()
        .filter(|o| o.kind == OrgType::District)
        .collect();
    let ids = || districts.iter().map(|d| d.id.to_string()).collect();
    match selected {
        Some(id) => districts
            .iter()
            .find(|d| d.id == id)
            .copied()
            .ok_or_else(|| ExtractError::WrongDistrict {
                expected: id.to_owned(),
                found: ids(),
            }),
        None => match districts.as_slice() {
            [only] => Ok(only),
            [] => Err(ExtractError::NoDistrictOrg),
            _ => Err(ExtractError::SeveralDistrictOrgs { found: ids() }),
        },
    }
}

/// A role a user holds, at an org.
struct Held<'r> {
    role: Role,
    /// `roleType = primary` (1.1 roles count as primary).
    primary: bool,
    org: Option<&'r Id>,
}

/// What became of a user, for their enrollments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserFate {
    Loaded {
        student: bool,
        teacher: bool,
    },
    /// `enabledUser = false`: not loaded, nor their memberships.
    Disabled,
    /// Only a contact, staff or an admin.
    NotLoaded,
    OtherDistrict,
    /// Could not be read: their memberships stay as they are.
    Unreadable,
}

/// What became of a class, for its enrollments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClassFate {
    /// At this index of the snapshot's sections.
    Loaded(usize),
    /// Of another district, or quarantined already.
    Elsewhere,
}

struct Mapper<'r> {
    roster: &'r Roster,
    district: &'r Org,
    sis_id: &'r SisIdSource,
    orgs: HashMap<&'r str, &'r Org>,
    /// The feed has one district: every record is its.
    single: bool,
    /// Records that could not be read, by the file they came from (a sourcedId is unique
    /// within its file only).
    unreadable: HashSet<(CsvFile, Id)>,
    snapshot: Snapshot,
}

impl<'r> Mapper<'r> {
    /// Whether `org` is another district's: with several districts in the feed, whether its
    /// `parentSourcedId` chain leads to another district org. What cannot be placed is the
    /// district's.
    fn theirs(&self, org: &str) -> bool {
        if self.single {
            return false;
        }
        let mut at = org;
        // Each step climbs one org; more steps than orgs means a cycle.
        for _ in 0..=self.orgs.len() {
            let Some(found) = self.orgs.get(at) else {
                return false;
            };
            if found.kind == OrgType::District {
                return found.id != self.district.id;
            }
            match found.parent.as_deref() {
                Some(parent) => at = parent,
                None => return false,
            }
        }
        false
    }

    fn is_school(&self, org: &str) -> bool {
        self.orgs
            .get(org)
            .is_some_and(|o| o.kind == OrgType::School)
    }

    fn quarantine_problem(&mut self, file: CsvFile, problem: &Problem) {
        if problem.unreadable
            && file != CsvFile::Enrollments
            && file != CsvFile::Roles
            && let Some(id) = &problem.id
        {
            self.unreadable.insert((file, id.clone()));
        }
        self.snapshot.quarantine.push(Quarantined {
            kind: file.record_kind().to_owned(),
            id: problem.id.clone(),
            reason: problem.reason.clone(),
            origin: Some(problem.origin.clone()),
            suggested_fix: problem.fix.clone(),
            record: problem.record.clone(),
        });
    }

    /// Quarantines a record that refers to something it cannot, at its file and line.
    fn quarantine_reference(
        &mut self,
        file: CsvFile,
        id: &Id,
        line: u64,
        reason: String,
        fix: &str,
        record: serde_json::Value,
    ) {
        self.snapshot.quarantine.push(Quarantined {
            kind: file.record_kind().to_owned(),
            id: Some(id.clone()),
            reason,
            origin: Some(self.roster.origin_of(file, id, line)),
            suggested_fix: Some(fix.to_owned()),
            record: record.to_string(),
        });
    }

    /// Counts a record of another district, keeping the first few as examples.
    fn other_district(&mut self, kind: &str, id: &Id, name: Option<&str>, sis_id: Option<String>) {
        self.snapshot.skipped.other_district += 1;
        let examples = &mut self.snapshot.other_district_examples;
        if examples.len() < Skipped::EXAMPLES {
            examples.push(SkippedRecord {
                kind: kind.to_owned(),
                id: id.clone(),
                name: name.map(str::to_owned),
                sis_id,
            });
        }
    }

    /// The district's schools, by id.
    fn schools(&mut self) -> HashSet<&'r str> {
        let mut loaded = HashSet::new();
        for org in self
            .roster
            .orgs
            .rows
            .iter()
            .filter(|o| o.kind == OrgType::School)
        {
            if self.theirs(&org.id) {
                self.other_district("org", &org.id, Some(&org.name), org.identifier.clone());
                continue;
            }
            loaded.insert(org.id.as_str());
            self.snapshot.schools.push(School {
                id: org.id.clone(),
                name: org.name.clone(),
                sis_id: org.identifier.clone(),
                ..School::default()
            });
        }
        loaded
    }

    fn courses(&mut self) {
        for course in &self.roster.courses.rows {
            if self.theirs(&course.org) {
                self.other_district("course", &course.id, Some(&course.title), None);
                continue;
            }
            self.snapshot.courses.push(Course {
                id: course.id.clone(),
                name: Some(course.title.clone()),
                number: course.code.clone(),
                synthesized: false,
            });
        }
    }

    /// The district's classes as sections without members yet.
    fn sections(&mut self, schools: &HashSet<&str>) -> HashMap<&'r str, ClassFate> {
        let sessions: HashMap<&str, (&str, &str)> = self
            .roster
            .sessions
            .rows
            .iter()
            .map(|s| (s.id.as_str(), (s.start.as_str(), s.end.as_str())))
            .collect();
        let mut fates = HashMap::new();
        for class in &self.roster.classes.rows {
            if self.theirs(&class.school) {
                self.other_district("class", &class.id, Some(&class.title), class.code.clone());
                fates.insert(class.id.as_str(), ClassFate::Elsewhere);
                continue;
            }
            if !schools.contains(class.school.as_str())
                && !self
                    .unreadable
                    .contains(&(CsvFile::Orgs, class.school.clone()))
            {
                self.quarantine_reference(
                    CsvFile::Classes,
                    &class.id,
                    class.line,
                    format!(
                        "class names school {}, which orgs.csv does not list as a school",
                        class.school
                    ),
                    "add the school to orgs.csv (type school), or correct schoolSourcedId",
                    serde_json::json!({ "sourcedId": class.id, "schoolSourcedId": class.school }),
                );
                fates.insert(class.id.as_str(), ClassFate::Elsewhere);
                continue;
            }
            fates.insert(
                class.id.as_str(),
                ClassFate::Loaded(self.snapshot.sections.len()),
            );
            self.snapshot.sections.push(section(class, &sessions));
        }
        fates
    }

    /// Terms: every session when the feed has one district; else those its classes name.
    fn terms(&mut self) {
        let named: HashSet<&str> = self
            .roster
            .classes
            .rows
            .iter()
            .filter(|c| !self.theirs(&c.school))
            .flat_map(|c| c.terms.iter().map(Id::as_str))
            .collect();
        for session in &self.roster.sessions.rows {
            if self.single || named.contains(session.id.as_str()) {
                self.snapshot.terms.push(Term {
                    id: session.id.clone(),
                    name: Some(session.title.clone()),
                    start_date: Some(session.start.clone()),
                    end_date: Some(session.end.clone()),
                    synthesized: false,
                });
            }
        }
    }

    /// Students, teachers and admins; contacts, staff and disabled users counted.
    fn users(&mut self) -> HashMap<&'r str, UserFate> {
        let mut roles: HashMap<&str, Vec<Held<'r>>> = HashMap::new();
        for role in &self.roster.roles.rows {
            roles.entry(role.user.as_str()).or_default().push(Held {
                role: role.role,
                primary: role.role_type == RoleType::Primary,
                org: Some(&role.org),
            });
        }
        let mut fates = HashMap::new();
        for user in &self.roster.users.rows {
            let held: Vec<Held> = match (self.roster.version, user.role) {
                // A 1.1 user holds their one role at each of their orgs.
                (Version::V1_1, Some(role)) if user.orgs.is_empty() => vec![Held {
                    role,
                    primary: true,
                    org: None,
                }],
                (Version::V1_1, Some(role)) => user
                    .orgs
                    .iter()
                    .map(|org| Held {
                        role,
                        primary: true,
                        org: Some(org),
                    })
                    .collect(),
                _ => roles.remove(user.id.as_str()).unwrap_or_default(),
            };
            let fate = self.user(user, &held);
            fates.insert(user.id.as_str(), fate);
        }
        for role in &self.roster.roles.rows {
            if !fates.contains_key(role.user.as_str()) {
                self.quarantine_reference(
                    CsvFile::Roles,
                    &role.id,
                    role.line,
                    format!("role names user {}, who is not in users.csv", role.user),
                    "add the user to users.csv, or remove the role",
                    serde_json::json!({ "sourcedId": role.id, "userSourcedId": role.user }),
                );
            }
        }
        fates
    }

    fn user(&mut self, user: &'r User, held: &[Held<'r>]) -> UserFate {
        let mut orgs = held
            .iter()
            .filter_map(|h| h.org)
            .chain(&user.primary_org)
            .peekable();
        let theirs = orgs.peek().is_some() && orgs.all(|org| self.theirs(org));
        if theirs {
            let name = format!("{} {}", user.given_name, user.family_name);
            let sis_id = match self.sis_id {
                SisIdSource::Identifier => user.identifier.clone(),
                SisIdSource::UserIdType(kind) => user_id(user, kind),
            };
            self.other_district("user", &user.id, Some(name.trim()), sis_id);
            return UserFate::OtherDistrict;
        }
        if !user.enabled {
            self.snapshot.skipped.disabled += 1;
            return UserFate::Disabled;
        }
        if held.is_empty() {
            self.quarantine_reference(
                CsvFile::Users,
                &user.id,
                user.line,
                "user holds no role: roles.csv names none for them".to_owned(),
                "give the user a role in roles.csv",
                serde_json::json!({ "sourcedId": user.id }),
            );
            self.unreadable.insert((CsvFile::Users, user.id.clone()));
            return UserFate::Unreadable;
        }
        let kinds: Vec<RoleKind> = held
            .iter()
            .map(|h| {
                h.role
                    .kind(h.org.is_some_and(|org| *org == self.district.id))
            })
            .collect();
        let is = |kind| kinds.contains(&kind);
        let (student, teacher, admin) = (
            is(RoleKind::Student),
            is(RoleKind::Teacher),
            is(RoleKind::Admin),
        );
        if !(student || teacher || admin) {
            let skipped = &mut self.snapshot.skipped;
            if is(RoleKind::Contact) {
                skipped.contacts += 1;
            } else {
                skipped.staff += 1;
            }
            return UserFate::NotLoaded;
        }
        let name = Name {
            first: Some(user.given_name.clone()),
            middle: user.middle_name.clone(),
            last: Some(user.family_name.clone()),
        };
        let school = self.primary_school(user, held);
        let sis_id = match self.sis_id {
            SisIdSource::Identifier => user.identifier.clone(),
            SisIdSource::UserIdType(kind) => user_id(user, kind),
        };
        if student {
            self.snapshot.students.push(Student {
                id: user.id.clone(),
                name: name.clone(),
                email: user.email.clone(),
                sis_id: sis_id.clone(),
                state_id: user_id(user, "stateId"),
                student_number: user_id(user, "studentNumber"),
                grade: user.grades.first().map(|g| vocab::grade(g)),
                school: school.clone(),
            });
        }
        if teacher {
            self.snapshot.teachers.push(Teacher {
                id: user.id.clone(),
                name: name.clone(),
                email: user.email.clone(),
                sis_id,
                state_id: user_id(user, "stateId"),
                teacher_number: user_id(user, "teacherNumber"),
                title: None,
                school,
            });
        }
        if admin {
            self.snapshot.admins.push(Admin {
                id: user.id.clone(),
                name,
                email: user.email.clone(),
                title: None,
            });
        }
        UserFate::Loaded { student, teacher }
    }

    /// 1.2: `primaryOrgSourcedId`, else the org of a primary role, else the first of the
    /// user's orgs; 1.1: the first of `orgSourcedIds`. Only a school counts.
    fn primary_school(&self, user: &User, held: &[Held]) -> Option<Id> {
        let primary_roles = held.iter().filter(|h| h.primary).filter_map(|h| h.org);
        let any_role = held.iter().filter_map(|h| h.org);
        user.primary_org
            .iter()
            .chain(primary_roles)
            .chain(any_role)
            .find(|org| self.is_school(org))
            .cloned()
    }

    /// Puts each enrollment's user in their section: students, then teachers with the
    /// primary ones first, each in feed order.
    fn members(&mut self, classes: &HashMap<&str, ClassFate>, users: &HashMap<&str, UserFate>) {
        let mut teachers: Vec<Vec<(bool, Id)>> = vec![Vec::new(); self.snapshot.sections.len()];
        for enrollment in &self.roster.enrollments.rows {
            let role = match enrollment.role {
                EnrollmentRole::Student => "student",
                EnrollmentRole::Teacher => "teacher",
                EnrollmentRole::Administrator | EnrollmentRole::Proctor => continue,
            };
            let record = || {
                serde_json::json!({
                    "sourcedId": enrollment.id,
                    "classSourcedId": enrollment.class,
                    "userSourcedId": enrollment.user,
                    "role": role,
                })
            };
            let at = match classes.get(enrollment.class.as_str()) {
                Some(ClassFate::Loaded(at)) => *at,
                Some(ClassFate::Elsewhere) => continue,
                None if self
                    .unreadable
                    .contains(&(CsvFile::Classes, enrollment.class.clone())) =>
                {
                    continue;
                }
                None => {
                    self.quarantine_reference(
                        CsvFile::Enrollments,
                        &enrollment.id,
                        enrollment.line,
                        format!(
                            "enrollment names class {}, which is not in classes.csv",
                            enrollment.class
                        ),
                        "add the class to classes.csv, or remove the enrollment",
                        record(),
                    );
                    continue;
                }
            };
            let holds_role = match users.get(enrollment.user.as_str()) {
                Some(UserFate::Loaded { student, teacher }) => {
                    if role == "student" {
                        *student
                    } else {
                        *teacher
                    }
                }
                Some(UserFate::Unreadable) => true,
                None if self
                    .unreadable
                    .contains(&(CsvFile::Users, enrollment.user.clone())) =>
                {
                    true
                }
                Some(UserFate::Disabled) => continue,
                Some(UserFate::NotLoaded) => false,
                Some(UserFate::OtherDistrict) => {
                    self.quarantine_reference(
                        CsvFile::Enrollments,
                        &enrollment.id,
                        enrollment.line,
                        format!(
                            "enrollment names user {}, who belongs to another district",
                            enrollment.user
                        ),
                        "correct the enrollment's userSourcedId or the user's orgs",
                        record(),
                    );
                    continue;
                }
                None => {
                    self.quarantine_reference(
                        CsvFile::Enrollments,
                        &enrollment.id,
                        enrollment.line,
                        format!(
                            "enrollment names user {}, who is not in users.csv",
                            enrollment.user
                        ),
                        "add the user to users.csv, or remove the enrollment",
                        record(),
                    );
                    continue;
                }
            };
            if !holds_role {
                self.quarantine_reference(
                    CsvFile::Enrollments,
                    &enrollment.id,
                    enrollment.line,
                    format!(
                        "enrollment names user {} as a {role}, but the user holds no {role} role",
                        enrollment.user
                    ),
                    "give the user the role (users.csv role, or roles.csv), or correct the enrollment",
                    record(),
                );
                continue;
            }
            let section = &mut self.snapshot.sections[at];
            match enrollment.role {
                EnrollmentRole::Student => section.students.push(enrollment.user.clone()),
                _ => teachers[at].push((enrollment.primary, enrollment.user.clone())),
            }
        }
        for (section, mut teachers) in self.snapshot.sections.iter_mut().zip(teachers) {
            // Stable: primary teachers first, each group in feed order.
            teachers.sort_by_key(|(primary, _)| !primary);
            section.teachers = teachers.into_iter().map(|(_, id)| id).collect();
            dedup(&mut section.teachers);
            // A membership is a set: sorted, it does not depend on the order deltas left.
            section.students.sort();
            section.students.dedup();
        }
    }

    fn finish(mut self) -> Snapshot {
        let mut unreadable: Vec<(Entity, Id)> = self
            .unreadable
            .into_iter()
            .flat_map(|(file, id)| {
                let entities: &[Entity] = match file {
                    CsvFile::Orgs => &[Entity::School],
                    CsvFile::AcademicSessions => &[Entity::Term],
                    CsvFile::Courses => &[Entity::Course],
                    CsvFile::Classes => &[Entity::Class],
                    CsvFile::Users => &USERS,
                    CsvFile::Roles | CsvFile::Enrollments => &[],
                };
                entities.iter().map(move |&entity| (entity, id.clone()))
            })
            .collect();
        unreadable.sort();
        let snapshot = &mut self.snapshot;
        snapshot.unreadable = unreadable;
        // In id order, as the Clever source serves them.
        snapshot.schools.sort_by(|a, b| a.id.cmp(&b.id));
        snapshot.terms.sort_by(|a, b| a.id.cmp(&b.id));
        snapshot.courses.sort_by(|a, b| a.id.cmp(&b.id));
        snapshot.sections.sort_by(|a, b| a.id.cmp(&b.id));
        snapshot.students.sort_by(|a, b| a.id.cmp(&b.id));
        snapshot.teachers.sort_by(|a, b| a.id.cmp(&b.id));
        snapshot.admins.sort_by(|a, b| a.id.cmp(&b.id));
        self.snapshot.quarantine_dangling_references();
        self.snapshot
    }
}

/// A class as a section, without members.
fn section(class: &Class, sessions: &HashMap<&str, (&str, &str)>) -> Section {
    Section {
        id: class.id.clone(),
        school: class.school.clone(),
        name: class.title.clone(),
        sis_id: class.code.clone(),
        subject: vocab::subject(&class.subjects, &class.subject_codes),
        grade: class.grades.first().map(|g| vocab::grade(g)),
        period: class.periods.first().cloned(),
        section_number: None,
        term: term_of(&class.terms, sessions),
        course: class.course.clone(),
        teachers: Vec::new(),
        students: Vec::new(),
        ext: Default::default(),
        source: Source::Sis,
        member_sources: Default::default(),
    }
}

/// The class's term among several: the one that starts first, then the one that ends last,
/// then the lowest id; ids of no session are ignored.
fn term_of(terms: &[Id], sessions: &HashMap<&str, (&str, &str)>) -> Option<Id> {
    terms
        .iter()
        .filter_map(|id| sessions.get(id.as_str()).map(|dates| (id, *dates)))
        .min_by(|(a, (a_start, a_end)), (b, (b_start, b_end))| {
            a_start.cmp(b_start).then(b_end.cmp(a_end)).then(a.cmp(b))
        })
        .map(|(id, _)| id.clone())
}

/// The id of `kind` in the user's `userIds` (kinds compared in any case).
fn user_id(user: &User, kind: &str) -> Option<String> {
    user.user_ids
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(kind))
        .map(|(_, id)| id.clone())
}

fn dedup(ids: &mut Vec<Id>) {
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
}
