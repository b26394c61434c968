//! The conversion from a Clever-shaped district to OneRoster records, version-neutral where the
//! versions agree and with both versions' user roles where they do not (1.1: one role and its
//! orgs; 1.2: role rows). Ids are renamed here, once, by [`Ids`].

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{Ids, ceds_grade};
use crate::district::{Collection, Dataset};

/// An org's type (the generator's districts have no others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OrgType {
    District,
    School,
}

impl OrgType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            OrgType::District => "district",
            OrgType::School => "school",
        }
    }
}

/// `orgs`: the district or a school.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Org {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: OrgType,
    pub(crate) identifier: String,
    pub(crate) parent: Option<String>,
    /// The district's schools (REST `children`; no CSV column).
    pub(crate) children: Vec<String>,
}

/// `academicSessions`: a Clever term, of type `term`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) start_date: String,
    pub(crate) end_date: String,
    pub(crate) school_year: String,
}

/// `courses`: a district course.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Course {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) code: String,
    pub(crate) org: String,
}

/// `classes`: a Clever section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) grades: Vec<String>,
    pub(crate) course: String,
    pub(crate) code: String,
    pub(crate) class_type: &'static str,
    pub(crate) school: String,
    pub(crate) terms: Vec<String>,
    pub(crate) subjects: Vec<String>,
    pub(crate) periods: Vec<String>,
}

/// One Clever role of a user, in the order roles are ranked (the first is the primary role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoleKind {
    Student,
    Teacher,
    DistrictAdmin,
    /// Clever staff: a principal (by title) or anyone else (a counselor in 1.2).
    Staff {
        principal: bool,
    },
    Contact,
}

impl RoleKind {
    /// The user role in OneRoster 1.1.
    pub(crate) fn name_1_1(self) -> &'static str {
        match self {
            RoleKind::Student => "student",
            RoleKind::Teacher => "teacher",
            RoleKind::DistrictAdmin => "administrator",
            RoleKind::Staff { .. } => "aide",
            RoleKind::Contact => "guardian",
        }
    }

    /// The user role in OneRoster 1.2.
    pub(crate) fn name_1_2(self) -> &'static str {
        match self {
            RoleKind::Student => "student",
            RoleKind::Teacher => "teacher",
            RoleKind::DistrictAdmin => "districtAdministrator",
            RoleKind::Staff { principal: true } => "principal",
            RoleKind::Staff { principal: false } => "counselor",
            RoleKind::Contact => "guardian",
        }
    }
}

/// A 1.2 role: one user's role at one org (a row of `roles.csv`, an entry of a user's `roles`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoleRow {
    pub(crate) id: String,
    pub(crate) user: String,
    /// `primary` (one per user) or `secondary`.
    pub(crate) role_type: &'static str,
    pub(crate) role: &'static str,
    pub(crate) org: String,
}

/// `users`, with both versions' roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) username: String,
    /// `(type, identifier)` pairs: `studentNumber`, `teacherNumber`, `stateId`.
    pub(crate) user_ids: Vec<(&'static str, String)>,
    pub(crate) given_name: String,
    pub(crate) family_name: String,
    pub(crate) middle_name: String,
    pub(crate) identifier: String,
    pub(crate) email: String,
    pub(crate) phone: String,
    pub(crate) agents: Vec<String>,
    pub(crate) grades: Vec<String>,
    /// Every Clever role the user holds, ranked.
    pub(crate) kinds: Vec<RoleKind>,
    /// 1.1: the role of the first kind, and its orgs (primary school first).
    pub(crate) role_1_1: &'static str,
    pub(crate) orgs_1_1: Vec<String>,
    /// 1.2: one row per role and org, the first `primary`.
    pub(crate) roles_1_2: Vec<RoleRow>,
    pub(crate) primary_org: String,
}

impl User {
    /// Whether the user holds the 1.1 or 1.2 user role `role` (`student`, `teacher`).
    pub(crate) fn has_role(&self, role: &str, v1_1: bool) -> bool {
        if v1_1 {
            self.role_1_1 == role
        } else {
            self.roles_1_2.iter().any(|r| r.role == role)
        }
    }
}

/// `enrollments`: a section's student or teacher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Enrollment {
    pub(crate) id: String,
    pub(crate) class: String,
    pub(crate) school: String,
    pub(crate) user: String,
    pub(crate) role: &'static str,
    pub(crate) primary: bool,
}

/// A district as OneRoster records, each collection in the order it is written.
#[derive(Clone, Debug, Default)]
pub(crate) struct Feed {
    pub(crate) orgs: Vec<Org>,
    pub(crate) sessions: Vec<Session>,
    pub(crate) courses: Vec<Course>,
    pub(crate) classes: Vec<Class>,
    pub(crate) users: Vec<User>,
    pub(crate) enrollments: Vec<Enrollment>,
}

/// A string field of a Clever object ("" when absent or not a string).
fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A date as `YYYY-MM-DD` (Clever writes dates, some sources timestamps).
fn date(clever: &str) -> String {
    clever.get(..10).unwrap_or(clever).to_string()
}

fn non_empty(s: String) -> Vec<String> {
    if s.is_empty() { Vec::new() } else { vec![s] }
}

impl Feed {
    /// Converts every record of `dataset` (records that are not valid JSON are skipped).
    pub(crate) fn from_dataset(dataset: &Dataset, ids: &Ids) -> Feed {
        let mut feed = Feed::default();
        let district = dataset
            .records(Collection::Districts)
            .first()
            .and_then(|r| r.value());
        let district_clever = district.as_ref().map(|d| text(d, "id")).unwrap_or_default();
        let district_id = ids.apply(&district_clever);
        let schools = dataset.all(Collection::Schools);
        if let Some(d) = &district {
            feed.orgs.push(Org {
                id: district_id.clone(),
                name: text(d, "name"),
                kind: OrgType::District,
                identifier: String::new(),
                parent: None,
                children: schools.iter().map(|s| ids.apply(&text(s, "id"))).collect(),
            });
        }
        for s in &schools {
            feed.orgs.push(Org {
                id: ids.apply(&text(s, "id")),
                name: text(s, "name"),
                kind: OrgType::School,
                identifier: text(s, "sis_id"),
                parent: district.is_some().then(|| district_id.clone()),
                children: Vec::new(),
            });
        }
        for t in dataset.all(Collection::Terms) {
            let end_date = date(&text(&t, "end_date"));
            feed.sessions.push(Session {
                id: ids.apply(&text(&t, "id")),
                title: text(&t, "name"),
                start_date: date(&text(&t, "start_date")),
                school_year: end_date.get(..4).unwrap_or_default().to_string(),
                end_date,
            });
        }
        for c in dataset.all(Collection::Courses) {
            feed.courses.push(Course {
                id: ids.apply(&text(&c, "id")),
                title: text(&c, "name"),
                code: text(&c, "number"),
                org: district_id.clone(),
            });
        }
        let sections = dataset.all(Collection::Sections);
        for s in &sections {
            let subject = text(s, "subject");
            let rename = |key: &str| {
                let id = text(s, key);
                if id.is_empty() { id } else { ids.apply(&id) }
            };
            feed.classes.push(Class {
                id: ids.apply(&text(s, "id")),
                title: text(s, "name"),
                grades: non_empty(ceds_grade(&text(s, "grade")).to_string()),
                course: rename("course"),
                code: text(s, "sis_id"),
                class_type: if subject == "homeroom/advisory" {
                    "homeroom"
                } else {
                    "scheduled"
                },
                school: rename("school"),
                terms: non_empty(rename("term_id")),
                subjects: non_empty(subject),
                periods: non_empty(text(s, "period")),
            });
        }
        let users = dataset.all(Collection::Users);
        let contacts_of = contacts_by_student(&users);
        for u in &users {
            if let Some(user) = user(u, &district_clever, ids, &contacts_of) {
                feed.users.push(user);
            }
        }
        for s in &sections {
            feed.enrollments_of(s, ids);
        }
        feed
    }

    /// A section's enrollments: its students, then its teachers (the first primary).
    fn enrollments_of(&mut self, section: &Value, ids: &Ids) {
        let class_clever = text(section, "id");
        let class = ids.apply(&class_clever);
        let school_clever = text(section, "school");
        let school = if school_clever.is_empty() {
            school_clever
        } else {
            ids.apply(&school_clever)
        };
        let mut seen = HashSet::new();
        let students = strings(section, "students");
        let teachers = strings(section, "teachers");
        let members = students.iter().map(|u| (u, "student", false)).chain(
            teachers
                .iter()
                .enumerate()
                .map(|(i, u)| (u, "teacher", i == 0)),
        );
        for (user, role, primary) in members {
            // A user listed twice (student and teacher) keeps one id per role.
            let derived = if seen.insert(user.as_str()) {
                format!("{class_clever}-{user}")
            } else {
                format!("{class_clever}-{user}-{role}")
            };
            self.enrollments.push(Enrollment {
                id: ids.apply(&derived),
                class: class.clone(),
                school: school.clone(),
                user: ids.apply(user),
                role,
                primary,
            });
        }
    }

    /// Every 1.2 role row, user by user.
    pub(crate) fn roles(&self) -> impl Iterator<Item = &RoleRow> {
        self.users.iter().flat_map(|u| u.roles_1_2.iter())
    }
}

/// Clever id of each student to the Clever ids of its contacts, in user order.
fn contacts_by_student(users: &[Value]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for u in users {
        let Some(rels) = u
            .pointer("/roles/contact/student_relationships")
            .and_then(Value::as_array)
        else {
            continue;
        };
        for rel in rels {
            let student = text(rel, "student");
            if !student.is_empty() {
                map.entry(student).or_default().push(text(u, "id"));
            }
        }
    }
    map
}

/// A role's orgs as Clever ids: its `school` first, then its other `schools`.
fn role_schools(role: &Value) -> Vec<String> {
    let mut schools = non_empty(text(role, "school"));
    for s in strings(role, "schools") {
        if !schools.contains(&s) {
            schools.push(s);
        }
    }
    schools
}

/// Converts one Clever user; `None` when it holds no role this mapping knows.
fn user(
    u: &Value,
    district: &str,
    ids: &Ids,
    contacts_of: &HashMap<String, Vec<String>>,
) -> Option<User> {
    let clever_id = text(u, "id");
    let roles = u.get("roles").and_then(Value::as_object)?;
    // Each kind with its orgs as Clever ids.
    let mut kinds: Vec<(RoleKind, Vec<String>)> = Vec::new();
    let or_district = |schools: Vec<String>| {
        if schools.is_empty() {
            non_empty(district.to_string())
        } else {
            schools
        }
    };
    if let Some(r) = roles.get("student") {
        kinds.push((RoleKind::Student, or_district(role_schools(r))));
    }
    if let Some(r) = roles.get("teacher") {
        kinds.push((RoleKind::Teacher, or_district(role_schools(r))));
    }
    if roles.contains_key("district_admin") {
        kinds.push((RoleKind::DistrictAdmin, non_empty(district.to_string())));
    }
    if let Some(r) = roles.get("staff") {
        let principal = text(r, "title").to_lowercase().contains("principal");
        kinds.push((RoleKind::Staff { principal }, or_district(role_schools(r))));
    }
    if roles.contains_key("contact") {
        kinds.push((RoleKind::Contact, non_empty(district.to_string())));
    }
    let (first_kind, first_orgs) = kinds.first().cloned()?;

    let role_text = |role: &str, key: &str| {
        roles
            .get(role)
            .map(|r| text(r, key))
            .filter(|s| !s.is_empty())
    };
    let identifier = role_text("student", "sis_id")
        .or_else(|| role_text("teacher", "sis_id"))
        .or_else(|| role_text("staff", "staff_id"))
        .or_else(|| role_text("contact", "sis_id"))
        .unwrap_or_default();
    let mut user_ids: Vec<(&'static str, String)> = Vec::new();
    if let Some(n) = role_text("student", "student_number") {
        user_ids.push(("studentNumber", n));
    }
    if let Some(n) = role_text("teacher", "teacher_number") {
        user_ids.push(("teacherNumber", n));
    }
    for role in ["student", "teacher"] {
        if let Some(state) = role_text(role, "state_id")
            && !user_ids.iter().any(|(t, v)| *t == "stateId" && *v == state)
        {
            user_ids.push(("stateId", state));
        }
    }

    let name = u.get("name").cloned().unwrap_or(Value::Null);
    let (mut given_name, mut family_name) = (text(&name, "first"), text(&name, "last"));
    if given_name.is_empty()
        && let Some((first, rest)) = family_name.clone().split_once(' ')
    {
        // Clever keeps a contact's full name in `last`.
        given_name = first.to_string();
        family_name = rest.trim().to_string();
    }
    let email = text(u, "email");
    let id = ids.apply(&clever_id);
    let username = [email.clone(), identifier.clone(), id.clone()]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_default();

    let mut agents: Vec<String> = contacts_of.get(&clever_id).cloned().unwrap_or_default();
    if let Some(rels) = u
        .pointer("/roles/contact/student_relationships")
        .and_then(Value::as_array)
    {
        agents.extend(rels.iter().map(|r| text(r, "student")));
    }
    agents.retain(|a| !a.is_empty());

    let mut roles_1_2 = Vec::new();
    for (kind, orgs) in &kinds {
        for org in orgs {
            let role = kind.name_1_2();
            roles_1_2.push(RoleRow {
                id: ids.apply(&format!("{clever_id}-{role}-{org}")),
                user: id.clone(),
                role_type: if roles_1_2.is_empty() {
                    "primary"
                } else {
                    "secondary"
                },
                role,
                org: ids.apply(org),
            });
        }
    }
    Some(User {
        username,
        user_ids,
        given_name,
        family_name,
        middle_name: text(&name, "middle"),
        identifier,
        email,
        phone: role_text("contact", "phone").unwrap_or_default(),
        agents: agents.iter().map(|a| ids.apply(a)).collect(),
        grades: role_text("student", "grade")
            .map(|g| non_empty(ceds_grade(&g).to_string()))
            .unwrap_or_default(),
        kinds: kinds.iter().map(|(k, _)| *k).collect(),
        role_1_1: first_kind.name_1_1(),
        orgs_1_1: first_orgs.iter().map(|o| ids.apply(o)).collect(),
        primary_org: first_orgs.first().map(|o| ids.apply(o)).unwrap_or_default(),
        roles_1_2,
        id,
    })
}
