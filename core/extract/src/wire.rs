//! Clever's JSON as it really arrives (Data API v3.0, with v3.1 fields), read tolerantly:
//! unknown fields are ignored, `""` means absent, every enum is kept as text, optional fields
//! are optional. [`parse_page`] turns a page into records and [`SnapshotBuilder`] gathers the
//! pages into the [`Snapshot`] of one district, with one rule for whatever cannot be used:
//! - a record that cannot be read, or that nothing can be done with, is quarantined; when it
//!   has an id, its Freckle row and memberships are left exactly as they are
//!   ([`Snapshot::unreadable`]);
//! - a record whose id is not a Clever id (24 hex digits) is quarantined and never loaded, and
//!   a reference that is not a Clever id (a section's school, students or teachers) is treated
//!   as a reference to a record the source does not have;
//! - a Clever id listed twice in a collection: the first record is used, later ones quarantined;
//! - records of another district than the pipeline's are counted and skipped;
//! - users who are only contacts or staff are counted, not loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use rustc_hash::FxHashSet;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::{Collection, ExtractError};
use rosterflow_model::is_clever_id;
use rosterflow_model::text::quoted as shown_id;
use rosterflow_model::{
    Admin, Course, District, Entity, Id, Name, Quarantined, School, Section, Skipped,
    SkippedRecord, Snapshot, Source, SourceKind, Student, Teacher, Term, USERS,
};

/// One list response: `{"data":[{"data":{..},"uri":".."}],"links":[{"rel":"next","uri":".."}]}`.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow, default)]
    data: Vec<Item<'a>>,
    #[serde(default)]
    links: Vec<Link>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    rel: String,
    #[serde(default)]
    uri: String,
}

/// A text field as Clever sends it: `""` and `null` both mean absent, a number or a boolean
/// where text was expected keeps its text, and an object or array keeps its JSON.
fn blank<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: for<'s> From<&'s str> + From<String>,
{
    struct Blank<T>(PhantomData<T>);

    impl<'de, T: for<'s> From<&'s str> + From<String>> Visitor<'de> for Blank<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("text")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            if text.contains('\0') {
                return self.visit_string(text.to_owned());
            }
            Ok((!text.trim().is_empty()).then(|| T::from(text)))
        }
        fn visit_string<E: de::Error>(self, mut text: String) -> Result<Self::Value, E> {
            // No database stores a NUL in text the same way (PostgreSQL refuses it): drop it.
            text.retain(|c| c != '\0');
            Ok((!text.trim().is_empty()).then(|| T::from(text)))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(T::from(n.to_string())))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(T::from(n.to_string())))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
            Ok(Some(T::from(serde_json::Value::from(n).to_string())))
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Ok(Some(T::from(b.to_string())))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
            Ok(Some(T::from(value.to_string())))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
            Ok(Some(T::from(value.to_string())))
        }
    }

    deserializer.deserialize_any(Blank(PhantomData))
}

/// A list of ids: nulls and blanks dropped.
fn ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Id>, D::Error> {
    let value: Option<Vec<Option<Id>>> = Option::deserialize(deserializer)?;
    Ok(value
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter(|id| !id.is_empty())
        .collect())
}

/// Just a record's id and district, when the rest of it cannot be read.
#[derive(Deserialize)]
struct WireKey {
    #[serde(default, deserialize_with = "blank")]
    id: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    district: Option<Id>,
}

#[derive(Deserialize)]
struct WireDistrict {
    #[serde(default, deserialize_with = "blank")]
    id: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireSchool {
    #[serde(default, deserialize_with = "blank")]
    id: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    district: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    name: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    sis_id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    school_number: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    state_id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    low_grade: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    high_grade: Option<String>,
}

#[derive(Deserialize)]
struct WireTerm {
    #[serde(default, deserialize_with = "blank")]
    id: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    district: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    name: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    start_date: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    end_date: Option<String>,
}

#[derive(Deserialize)]
struct WireCourse {
    #[serde(default, deserialize_with = "blank")]
    id: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    district: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    name: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    number: Option<String>,
}

#[derive(Deserialize)]
struct WireSection {
    #[serde(default, deserialize_with = "blank")]
    id: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    district: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    school: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    name: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    sis_id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    subject: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    grade: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    period: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    section_number: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    term_id: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    course: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    teacher: Option<Id>,
    #[serde(default, deserialize_with = "ids")]
    teachers: Vec<Id>,
    #[serde(default, deserialize_with = "ids")]
    students: Vec<Id>,
    #[serde(default)]
    ext: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize, Default)]
struct WireName {
    #[serde(default, deserialize_with = "blank")]
    first: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    middle: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    last: Option<String>,
}

#[derive(Deserialize)]
struct WireUser {
    #[serde(default, deserialize_with = "blank")]
    id: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    district: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    email: Option<String>,
    #[serde(default)]
    name: Option<WireName>,
    #[serde(default)]
    roles: WireRoles,
}

#[derive(Deserialize, Default)]
struct WireRoles {
    #[serde(default)]
    student: Option<WireStudent>,
    #[serde(default)]
    teacher: Option<WireTeacher>,
    #[serde(default)]
    district_admin: Option<WireAdmin>,
    #[serde(default)]
    staff: Option<de::IgnoredAny>,
    #[serde(default)]
    contact: Option<de::IgnoredAny>,
}

#[derive(Deserialize)]
struct WireStudent {
    #[serde(default, deserialize_with = "blank")]
    sis_id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    state_id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    student_number: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    grade: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    school: Option<Id>,
    #[serde(default, deserialize_with = "blank")]
    email: Option<String>,
}

#[derive(Deserialize)]
struct WireTeacher {
    #[serde(default, deserialize_with = "blank")]
    sis_id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    state_id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    teacher_number: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    title: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    school: Option<Id>,
}

#[derive(Deserialize)]
struct WireAdmin {
    #[serde(default, deserialize_with = "blank")]
    title: Option<String>,
}

/// What a page said about the list it belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageInfo {
    /// Records on the page.
    pub records: usize,
    /// The `next` link, if any. A page with no records ends the list whatever it links to.
    pub next: Option<String>,
}

/// The records of one page, parsed on their own: pages can be parsed on several threads and
/// merged in any order of collections, but in page order within one.
#[derive(Debug, Default)]
pub struct Part {
    records: Snapshot,
    districts: Vec<District>,
    skips: Vec<Skip>,
    pub info: PageInfo,
}

/// A record the roster does not load, kept by id so that a later event can replace it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Skip {
    collection: Collection,
    id: Id,
    why: SkipWhy,
    /// What names the record, kept for the first few of another district of each page (the
    /// doctor's examples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    named: Option<(Option<String>, Option<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum SkipWhy {
    Contact,
    Staff,
    OtherDistrict,
}

/// Parses one page of `collection`. Records of a district other than `district` are counted
/// and skipped; records that cannot be read are quarantined.
pub fn parse_page(
    collection: Collection,
    body: &[u8],
    origin: &str,
    district: Option<&str>,
) -> Result<Part, ExtractError> {
    let page: Page = serde_json::from_slice(body).map_err(|error| ExtractError::Page {
        origin: origin.to_owned(),
        reason: format!("not a Clever list page: {}", brief(&error)),
        snippet: snippet(body),
    })?;
    let mut part = Part::default();
    for item in &page.data {
        part.add_record(collection, item.data, district);
    }
    let next = page
        .links
        .into_iter()
        .find(|link| link.rel == "next" && !link.uri.is_empty())
        .map(|link| link.uri);
    part.info = PageInfo {
        records: page.data.len(),
        next: if page.data.is_empty() { None } else { next },
    };
    Ok(part)
}

/// The teacher one Clever user record describes (the `data` of `/v3.0/users/{id}`), read as a
/// sync reads it: a sign-in creates a teacher the nightly sync has not loaded yet, and the next
/// sync finds the same row. `Ok(None)` when the record is of another district or holds no
/// teacher role; an error says why a record cannot be read.
pub fn teacher_of_user(json: &str, district: &str) -> Result<Option<Teacher>, String> {
    let raw: &RawValue = serde_json::from_str(json).map_err(|error| error.to_string())?;
    let mut part = Part::default();
    part.add_record(Collection::Users, raw, Some(district));
    if let Some(unreadable) = part.records.quarantine.pop() {
        return Err(unreadable.reason);
    }
    Ok(part.records.teachers.pop())
}

impl Part {
    fn add_record(&mut self, collection: Collection, raw: &RawValue, district: Option<&str>) {
        let json = raw.get();
        let kind = collection.record_kind();
        let of_other_district = |theirs: &Option<Id>| matches!((district, theirs), (Some(ours), Some(theirs)) if ours != theirs.as_str());
        let result = match collection {
            Collection::Districts => parse(json).map(|d: WireDistrict| {
                let id = d.id?;
                self.districts.push(District {
                    name: d.name.unwrap_or_else(|| id.to_string()),
                    source: SourceKind::Clever,
                    source_id: id.clone(),
                    id,
                });
                Some(())
            }),
            Collection::Schools => parse(json).map(|s: WireSchool| {
                let id = s.id?;
                if !of_other_district(&s.district) {
                    if !self.clever_id(collection, &id, json) {
                        return Some(());
                    }
                    self.records.schools.push(School {
                        name: s.name.unwrap_or_else(|| id.to_string()),
                        id,
                        sis_id: s.sis_id,
                        school_number: s.school_number,
                        state_id: s.state_id,
                        low_grade: s.low_grade,
                        high_grade: s.high_grade,
                        synthesized: false,
                    });
                } else {
                    self.skip_other(collection, id, s.name, s.sis_id);
                }
                Some(())
            }),
            Collection::Terms => parse(json).map(|t: WireTerm| {
                let id = t.id?;
                if !of_other_district(&t.district) {
                    if !self.clever_id(collection, &id, json) {
                        return Some(());
                    }
                    self.records.terms.push(Term {
                        id,
                        name: t.name,
                        start_date: t.start_date,
                        end_date: t.end_date,
                        synthesized: false,
                    });
                } else {
                    self.skip_other(collection, id, t.name, None);
                }
                Some(())
            }),
            Collection::Courses => parse(json).map(|c: WireCourse| {
                let id = c.id?;
                if !of_other_district(&c.district) {
                    if !self.clever_id(collection, &id, json) {
                        return Some(());
                    }
                    self.records.courses.push(Course {
                        id,
                        name: c.name,
                        number: c.number,
                        synthesized: false,
                    });
                } else {
                    self.skip_other(collection, id, c.name, None);
                }
                Some(())
            }),
            Collection::Sections => parse(json).map(|s: WireSection| {
                let id = s.id?;
                if of_other_district(&s.district) {
                    self.skip_other(collection, id, s.name, s.sis_id);
                    return Some(());
                }
                if !self.clever_id(collection, &id, json) {
                    return Some(());
                }
                let Some(school) = s.school else {
                    self.unreadable(collection, id, "section has no school", json);
                    return Some(());
                };
                if !is_clever_id(&school) {
                    let reason = format!(
                        "section names school {} that is not a Clever id (24 hex digits)",
                        shown_id(&school)
                    );
                    self.records.quarantine.push(Quarantined {
                        origin: None,
                        kind: kind.to_owned(),
                        id: Some(id),
                        reason,
                        suggested_fix: Some(NOT_A_CLEVER_ID_FIX.to_owned()),
                        record: json.to_owned(),
                    });
                    return Some(());
                }
                let mut teachers = s.teachers;
                // The primary teacher comes first, as Clever documents; repair feeds that differ.
                if let Some(primary) = s.teacher {
                    teachers.retain(|t| *t != primary);
                    teachers.insert(0, primary);
                }
                dedup(&mut teachers);
                let mut students = s.students;
                dedup(&mut students);
                self.clever_members(&id, "teacher", &mut teachers);
                self.clever_members(&id, "student", &mut students);
                self.records.sections.push(Section {
                    name: s.name.unwrap_or_else(|| id.to_string()),
                    id,
                    school,
                    sis_id: s.sis_id,
                    subject: s.subject,
                    grade: s.grade,
                    period: s.period,
                    section_number: s.section_number,
                    // A term or course that cannot be one is unknown, as one not shared is.
                    term: s.term_id.filter(|t| is_clever_id(t)),
                    course: s.course.filter(|c| is_clever_id(c)),
                    teachers,
                    students,
                    ext: flatten_ext(s.ext),
                    source: Source::Sis,
                    member_sources: BTreeMap::new(),
                });
                Some(())
            }),
            Collection::Users => parse(json).map(|u: WireUser| {
                if of_other_district(&u.district) {
                    let name = u.name.as_ref().map(|n| {
                        [n.first.as_deref(), n.last.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" ")
                    });
                    let sis_id = u
                        .roles
                        .student
                        .as_ref()
                        .and_then(|r| r.sis_id.clone())
                        .or_else(|| u.roles.teacher.as_ref().and_then(|r| r.sis_id.clone()));
                    self.skip_other(collection, u.id?, name, sis_id);
                    return Some(());
                }
                self.add_user(u, json)
            }),
        };
        match result {
            Ok(Some(())) => {}
            Ok(None) => self.quarantine(kind, None, "record has no id", json),
            Err(reason) => match parse::<WireKey>(json)
                .ok()
                .and_then(|key| Some((key.id?, key.district)))
            {
                Some((id, theirs)) if of_other_district(&theirs) => {
                    self.skip_other(collection, id, None, None);
                }
                Some((id, _)) => self.unreadable(collection, id, &reason, json),
                None => self.quarantine(kind, None, &reason, json),
            },
        }
    }

    fn add_user(&mut self, user: WireUser, json: &str) -> Option<()> {
        let id = user.id?;
        let name = user.name.unwrap_or_default();
        let name = Name {
            first: name.first,
            middle: name.middle,
            last: name.last,
        };
        let roles = user.roles;
        let loads =
            roles.student.is_some() || roles.teacher.is_some() || roles.district_admin.is_some();
        if loads && !self.clever_id(Collection::Users, &id, json) {
            return Some(());
        }
        // A school that cannot be one is unknown, as one not shared is.
        let school = |school: Option<Id>| school.filter(|s| is_clever_id(s));
        let mut used = false;
        if let Some(student) = roles.student {
            used = true;
            self.records.students.push(Student {
                id: id.clone(),
                name: name.clone(),
                email: user.email.clone().or(student.email),
                sis_id: student.sis_id,
                state_id: student.state_id,
                student_number: student.student_number,
                grade: student.grade,
                school: school(student.school),
            });
        }
        if let Some(teacher) = roles.teacher {
            used = true;
            self.records.teachers.push(Teacher {
                id: id.clone(),
                name: name.clone(),
                email: user.email.clone(),
                sis_id: teacher.sis_id,
                state_id: teacher.state_id,
                teacher_number: teacher.teacher_number,
                title: teacher.title,
                school: school(teacher.school),
            });
        }
        if let Some(admin) = roles.district_admin {
            used = true;
            self.records.admins.push(Admin {
                id: id.clone(),
                name,
                email: user.email,
                title: admin.title,
            });
        }
        if !used {
            if roles.contact.is_some() {
                self.skip(Collection::Users, id, SkipWhy::Contact);
            } else if roles.staff.is_some() {
                self.skip(Collection::Users, id, SkipWhy::Staff);
            } else {
                self.unreadable(
                    Collection::Users,
                    id,
                    "user holds no role rosterflow knows",
                    json,
                );
            }
        }
        Some(())
    }

    fn skip(&mut self, collection: Collection, id: Id, why: SkipWhy) {
        self.skips.push(Skip {
            collection,
            id,
            why,
            named: None,
        });
    }

    /// Skips a record of another district, keeping what names the first few of the page.
    fn skip_other(
        &mut self,
        collection: Collection,
        id: Id,
        name: Option<String>,
        sis_id: Option<String>,
    ) {
        let named = self
            .skips
            .iter()
            .filter(|skip| skip.named.is_some())
            .take(Skipped::EXAMPLES)
            .count();
        self.skips.push(Skip {
            collection,
            id,
            why: SkipWhy::OtherDistrict,
            named: (named < Skipped::EXAMPLES).then_some((name, sis_id)),
        });
    }

    /// Quarantines a record that arrived with an id but cannot be used: its Freckle row, if
    /// any, stays exactly as it is.
    fn unreadable(&mut self, collection: Collection, id: Id, reason: &str, json: &str) {
        // An id that cannot be one names no Freckle row to leave as it is.
        if !self.clever_id(collection, &id, json) {
            return;
        }
        self.quarantine(collection.record_kind(), Some(&id), reason, json);
        let entities: &[Entity] = match collection {
            Collection::Districts => &[Entity::District],
            Collection::Schools => &[Entity::School],
            Collection::Terms => &[Entity::Term],
            Collection::Courses => &[Entity::Course],
            Collection::Sections => &[Entity::Class],
            Collection::Users => &USERS,
        };
        let unreadable = entities.iter().map(|&entity| (entity, id.clone()));
        self.records.unreadable.extend(unreadable);
    }

    /// Whether `id` is a Clever id; if not, the record is quarantined (without the id, which
    /// names nothing) and never loaded.
    fn clever_id(&mut self, collection: Collection, id: &str, json: &str) -> bool {
        if is_clever_id(id) {
            return true;
        }
        self.records.quarantine.push(Quarantined {
            origin: None,
            kind: collection.record_kind().to_owned(),
            id: None,
            reason: format!(
                "its id {} is not a Clever id (24 hex digits): not loaded",
                shown_id(id)
            ),
            suggested_fix: Some(NOT_A_CLEVER_ID_FIX.to_owned()),
            record: json.to_owned(),
        });
        false
    }

    /// Keeps the members of section `section` whose ids are Clever ids; each other one is
    /// quarantined as a member the roster does not have.
    fn clever_members(&mut self, section: &Id, role: &str, members: &mut Vec<Id>) {
        if members.iter().all(|member| is_clever_id(member)) {
            return;
        }
        let quarantine = &mut self.records.quarantine;
        members.retain(|member| {
            let ok = is_clever_id(member);
            if !ok {
                quarantine.push(Quarantined {
                    origin: None,
                    kind: format!("section.{role}s"),
                    id: Some(section.clone()),
                    reason: format!(
                        "section {section} names {role} {} whose id is not a Clever id (24 hex digits)",
                        shown_id(member)
                    ),
                    suggested_fix: Some(NOT_A_CLEVER_ID_FIX.to_owned()),
                    record: serde_json::json!({ "section": section, role: member }).to_string(),
                });
            }
            ok
        });
    }

    fn quarantine(&mut self, kind: &str, id: Option<&str>, reason: &str, json: &str) {
        self.records.quarantine.push(Quarantined {
            origin: None,
            kind: kind.to_owned(),
            id: id.map(Id::from),
            reason: reason.to_owned(),
            suggested_fix: None,
            record: json.to_owned(),
        });
    }
}

/// Accumulates parsed pages into the snapshot of one district. It is also the raw roster an
/// events run starts from: serialised before [`SnapshotBuilder::finish`], with every record
/// as the source sent it (references not yet checked, duplicates not yet removed).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SnapshotBuilder {
    snapshot: Snapshot,
    districts: Vec<District>,
    seen: BTreeSet<Collection>,
    skips: Vec<Skip>,
    /// The district the pipeline names, if it names one.
    expected: Option<Id>,
}

impl SnapshotBuilder {
    /// A builder for the district `expected`, or for the only district the source holds.
    pub fn new(expected: Option<&str>) -> SnapshotBuilder {
        SnapshotBuilder {
            expected: expected.map(Id::from),
            ..SnapshotBuilder::default()
        }
    }

    /// The district that records must belong to: the expected one, or else the only one the
    /// districts collection holds (none while that is unknown or ambiguous).
    pub fn district(&self) -> Option<Id> {
        self.expected
            .clone()
            .or_else(|| match self.districts.as_slice() {
                [only] => Some(only.id.clone()),
                _ => None,
            })
    }

    /// Parses one page of `collection` and adds its records.
    pub fn add_page(
        &mut self,
        collection: Collection,
        body: &[u8],
        origin: &str,
    ) -> Result<PageInfo, ExtractError> {
        let part = parse_page(collection, body, origin, self.district().as_deref())?;
        let info = part.info.clone();
        self.merge(collection, part);
        Ok(info)
    }

    /// Adds a parsed page of `collection`; pages of one collection come in page order.
    pub fn merge(&mut self, collection: Collection, part: Part) {
        self.seen.insert(collection);
        append(&mut self.districts, part.districts);
        append(&mut self.skips, part.skips);
        self.absorb_records(part.records);
    }

    /// Adds everything another builder gathered (the pages of other collections).
    pub fn absorb(&mut self, other: SnapshotBuilder) {
        self.seen.extend(other.seen);
        append(&mut self.districts, other.districts);
        append(&mut self.skips, other.skips);
        self.absorb_records(other.snapshot);
    }

    /// Removes every record, skip and quarantine entry of the given ids, per collection: what
    /// an event replaces or deletes.
    pub(super) fn remove(&mut self, ids: &BTreeMap<Collection, FxHashSet<Id>>) {
        let touched = |collection: Collection, id: &Id| {
            ids.get(&collection).is_some_and(|ids| ids.contains(id))
        };
        if let Some(district) = ids.get(&Collection::Districts) {
            self.districts.retain(|d| !district.contains(&d.id));
        }
        let records = &mut self.snapshot;
        records
            .schools
            .retain(|r| !touched(Collection::Schools, &r.id));
        records.terms.retain(|r| !touched(Collection::Terms, &r.id));
        records
            .courses
            .retain(|r| !touched(Collection::Courses, &r.id));
        records
            .sections
            .retain(|r| !touched(Collection::Sections, &r.id));
        records
            .students
            .retain(|r| !touched(Collection::Users, &r.id));
        records
            .teachers
            .retain(|r| !touched(Collection::Users, &r.id));
        records
            .admins
            .retain(|r| !touched(Collection::Users, &r.id));
        // `section.students` is about the section it names.
        let kind_of = |kind: &str| {
            let kind = kind.split('.').next().unwrap_or_default();
            Collection::ALL
                .into_iter()
                .find(|c| c.record_kind() == kind)
        };
        records
            .quarantine
            .retain(|q| match (kind_of(&q.kind), &q.id) {
                (Some(collection), Some(id)) => !touched(collection, id),
                // A record quarantined without its id (one that is no Clever id) is known by
                // the id its JSON holds.
                (Some(collection), None) => {
                    record_id(&q.record).is_none_or(|id| !touched(collection, &id))
                }
                _ => true,
            });
        records.unreadable.retain(|(_, id)| {
            !Collection::ALL
                .into_iter()
                .any(|collection| touched(collection, id))
        });
        self.skips
            .retain(|skip| !touched(skip.collection, &skip.id));
    }

    /// Puts every collection in Clever's order (by id), as a full pull serves them.
    pub(super) fn sort_by_id(&mut self) {
        let records = &mut self.snapshot;
        records.schools.sort_by(|a, b| a.id.cmp(&b.id));
        records.terms.sort_by(|a, b| a.id.cmp(&b.id));
        records.courses.sort_by(|a, b| a.id.cmp(&b.id));
        records.sections.sort_by(|a, b| a.id.cmp(&b.id));
        records.students.sort_by(|a, b| a.id.cmp(&b.id));
        records.teachers.sort_by(|a, b| a.id.cmp(&b.id));
        records.admins.sort_by(|a, b| a.id.cmp(&b.id));
        self.districts.sort_by(|a, b| a.id.cmp(&b.id));
    }

    fn absorb_records(&mut self, from: Snapshot) {
        let into = &mut self.snapshot;
        append(&mut into.schools, from.schools);
        append(&mut into.terms, from.terms);
        append(&mut into.courses, from.courses);
        append(&mut into.sections, from.sections);
        append(&mut into.students, from.students);
        append(&mut into.teachers, from.teachers);
        append(&mut into.admins, from.admins);
        append(&mut into.quarantine, from.quarantine);
        append(&mut into.unreadable, from.unreadable);
    }

    /// Whether any page of `collection` arrived (an empty list counts).
    pub fn has(&self, collection: Collection) -> bool {
        self.seen.contains(&collection)
    }

    /// The snapshot of the district: the expected one, or the only one.
    pub fn finish(mut self, synthesize_missing: bool) -> Result<Snapshot, ExtractError> {
        let district = match &self.expected {
            Some(expected) => self
                .districts
                .iter()
                .find(|d| d.id == *expected)
                .cloned()
                .ok_or_else(|| ExtractError::WrongDistrict {
                    expected: expected.to_string(),
                    found: self.districts.iter().map(|d| d.id.to_string()).collect(),
                })?,
            None => match self.districts.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(ExtractError::WrongDistrict {
                        expected: "a district".to_owned(),
                        found: Vec::new(),
                    });
                }
                found => {
                    return Err(ExtractError::SeveralDistricts {
                        found: found.iter().map(|d| d.id.to_string()).collect(),
                    });
                }
            },
        };
        // The district's id names lock files and export paths: only a Clever id may.
        if !is_clever_id(&district.id) {
            return Err(ExtractError::NotACleverId {
                id: district.id.to_string(),
            });
        }
        self.snapshot.district = district;
        self.snapshot.other_district_examples = self
            .skips
            .iter()
            .filter(|skip| skip.why == SkipWhy::OtherDistrict)
            .filter_map(|skip| {
                let (name, sis_id) = skip.named.clone()?;
                Some(SkippedRecord {
                    kind: skip.collection.record_kind().to_owned(),
                    id: skip.id.clone(),
                    name,
                    sis_id,
                })
            })
            .take(Skipped::EXAMPLES)
            .collect();
        for skip in &self.skips {
            let count = match skip.why {
                SkipWhy::Contact => &mut self.snapshot.skipped.contacts,
                SkipWhy::Staff => &mut self.snapshot.skipped.staff,
                SkipWhy::OtherDistrict => &mut self.snapshot.skipped.other_district,
            };
            *count += 1;
        }
        if synthesize_missing {
            self.synthesize_missing();
        }
        let mut snapshot = self.snapshot;
        quarantine_duplicates(&mut snapshot);
        readable_wins(&mut snapshot);
        snapshot.quarantine_dangling_references();
        Ok(snapshot)
    }

    /// Supplies schools, terms and courses that sections refer to but the recording lacks (the
    /// real Clever demo district has only districts, users and sections), marked synthesized.
    fn synthesize_missing(&mut self) {
        let snapshot = &mut self.snapshot;
        let suffix = |id: &Id| {
            let start = id.char_indices().rev().nth(5).map_or(0, |(i, _)| i);
            id[start..].to_owned()
        };
        if !self.seen.contains(&Collection::Schools) {
            // Sections name only Clever ids by now (see `Part::add_record`).
            let ids: BTreeSet<&Id> = snapshot.sections.iter().map(|s| &s.school).collect();
            snapshot.schools = ids
                .into_iter()
                .map(|id| School {
                    id: id.clone(),
                    name: format!("School {}", suffix(id)),
                    synthesized: true,
                    ..School::default()
                })
                .collect();
        }
        if !self.seen.contains(&Collection::Terms) {
            let ids: BTreeSet<&Id> = snapshot.sections.iter().flat_map(|s| &s.term).collect();
            snapshot.terms = ids
                .into_iter()
                .map(|id| Term {
                    id: id.clone(),
                    name: Some(format!("Term {}", suffix(id))),
                    synthesized: true,
                    ..Term::default()
                })
                .collect();
        }
        if !self.seen.contains(&Collection::Courses) {
            let ids: BTreeSet<&Id> = snapshot.sections.iter().flat_map(|s| &s.course).collect();
            snapshot.courses = ids
                .into_iter()
                .map(|id| Course {
                    id: id.clone(),
                    synthesized: true,
                    ..Course::default()
                })
                .collect();
        }
    }
}

/// What an admin can do about an id that is not a Clever id.
const NOT_A_CLEVER_ID_FIX: &str =
    "Clever ids are 24 hex digits: ask Clever support about the record, or fix the recording";

/// The id of a record's JSON, however much of the rest is readable.
pub fn record_id(json: &str) -> Option<Id> {
    parse::<WireKey>(json).ok()?.id
}

/// Moves `from` onto the end of `into`, without a copy when `into` is empty.
fn append<T>(into: &mut Vec<T>, mut from: Vec<T>) {
    if into.is_empty() {
        *into = from;
    } else {
        into.append(&mut from);
    }
}

/// What a page says about its list, read without building its records: whether it is a whole
/// Clever list page (so a garbled one is fetched again), how many records it has, its `next`.
pub fn outline(body: &[u8], origin: &str) -> Result<PageInfo, ExtractError> {
    #[derive(Deserialize)]
    struct Outline {
        #[serde(default)]
        data: Vec<de::IgnoredAny>,
        #[serde(default)]
        links: Vec<Link>,
    }
    let page: Outline = serde_json::from_slice(body).map_err(|error| ExtractError::Page {
        origin: origin.to_owned(),
        reason: format!("not a Clever list page: {}", brief(&error)),
        snippet: snippet(body),
    })?;
    let next = page
        .links
        .into_iter()
        .find(|link| link.rel == "next" && !link.uri.is_empty())
        .map(|link| link.uri);
    Ok(PageInfo {
        records: page.data.len(),
        next: if page.data.is_empty() { None } else { next },
    })
}

/// One rule for a Clever id listed twice in a collection, whatever reads the snapshot later:
/// the first record is used and every later one is quarantined.
fn quarantine_duplicates(snapshot: &mut Snapshot) {
    fn first_only<T: Serialize>(
        records: &mut Vec<T>,
        kind: &str,
        id: impl Fn(&T) -> &Id,
        quarantine: &mut Vec<Quarantined>,
    ) {
        let mut seen: FxHashSet<Id> = FxHashSet::default();
        seen.reserve(records.len());
        records.retain(|record| {
            let first = seen.insert(id(record).clone());
            if !first {
                quarantine.push(Quarantined {
                    origin: None,
                    kind: kind.to_owned(),
                    id: Some(id(record).clone()),
                    reason: format!(
                        "another {kind} record has the same Clever id: the first one is used"
                    ),
                    suggested_fix: Some("ask Clever support why the id is listed twice".to_owned()),
                    record: serde_json::to_string(record).unwrap_or_default(),
                });
            }
            first
        });
    }
    let quarantine = &mut snapshot.quarantine;
    first_only(&mut snapshot.schools, "school", |s| &s.id, quarantine);
    first_only(&mut snapshot.terms, "term", |t| &t.id, quarantine);
    first_only(&mut snapshot.courses, "course", |c| &c.id, quarantine);
    first_only(&mut snapshot.sections, "section", |s| &s.id, quarantine);
    first_only(&mut snapshot.students, "student", |s| &s.id, quarantine);
    first_only(&mut snapshot.teachers, "teacher", |t| &t.id, quarantine);
    first_only(&mut snapshot.admins, "admin", |a| &a.id, quarantine);
}

/// An id that came both readable and unreadable (listed twice) is the readable record's.
fn readable_wins(snapshot: &mut Snapshot) {
    if snapshot.unreadable.is_empty() {
        return;
    }
    let readable: FxHashSet<&Id> = snapshot
        .schools
        .iter()
        .map(|r| &r.id)
        .chain(snapshot.terms.iter().map(|r| &r.id))
        .chain(snapshot.courses.iter().map(|r| &r.id))
        .chain(snapshot.sections.iter().map(|r| &r.id))
        .chain(snapshot.students.iter().map(|r| &r.id))
        .chain(snapshot.teachers.iter().map(|r| &r.id))
        .chain(snapshot.admins.iter().map(|r| &r.id))
        .collect();
    let keep: Vec<bool> = snapshot
        .unreadable
        .iter()
        .map(|(_, id)| !readable.contains(id))
        .collect();
    let mut keep = keep.into_iter();
    snapshot.unreadable.retain(|_| keep.next().unwrap_or(true));
}

fn parse<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|error| format!("unreadable record: {}", brief(&error)))
}

fn dedup(ids: &mut Vec<Id>) {
    let mut seen = FxHashSet::default();
    ids.retain(|id| seen.insert(id.clone()));
}

fn flatten_ext(ext: Option<BTreeMap<String, serde_json::Value>>) -> BTreeMap<String, String> {
    ext.unwrap_or_default()
        .into_iter()
        .filter_map(|(key, value)| match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) if s.is_empty() => None,
            serde_json::Value::String(s) => Some((key, s)),
            other => Some((key, other.to_string())),
        })
        .collect()
}

/// A JSON error as a message shows it: cut short in the middle, since it may quote a whole
/// field of the input; its end says where.
pub(crate) fn brief(error: &serde_json::Error) -> String {
    const HEAD: usize = 200;
    const TAIL: usize = 80;
    let text = error.to_string();
    let count = text.chars().count();
    if count <= HEAD + TAIL + 3 {
        return text;
    }
    let head: String = text.chars().take(HEAD).collect();
    let tail: String = text.chars().skip(count - TAIL).collect();
    format!("{head}...{tail}")
}

/// The start of a body, for an error message (never more than 200 characters).
pub(crate) fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

#[cfg(test)]
pub(crate) mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    const DISTRICT: &str = r#"{"data":[{"data":{"id":"5a0c91b95c7cc000010d417c","name":"Demo"},"uri":"/v3.0/districts/x"}],"links":[]}"#;

    fn build(collection: Collection, page: &str) -> Snapshot {
        let mut builder = SnapshotBuilder::new(None);
        builder
            .add_page(Collection::Districts, DISTRICT.as_bytes(), "districts")
            .expect("district page");
        builder
            .add_page(collection, page.as_bytes(), "test")
            .expect("page");
        builder.finish(false).expect("snapshot")
    }

    #[test]
    fn blank_strings_are_absent_and_unknown_fields_ignored() {
        let snapshot = build(
            Collection::Users,
            r#"{"data":[{"data":{"id":"0000000000000000000000a1","email":"","surprise":{"x":1},"name":{"first":"A","last":""},
                "roles":{"teacher":{"sis_id":"","title":"Teacher","school":"0000000000000000000000d1","new_field":true}}}}],"links":[]}"#,
        );
        let teacher = &snapshot.teachers[0];
        assert_eq!(teacher.email, None);
        assert_eq!(teacher.sis_id, None);
        assert_eq!(teacher.name.last, None);
        assert_eq!(teacher.title.as_deref(), Some("Teacher"));
    }

    #[test]
    fn contacts_are_counted_not_loaded_and_a_user_without_id_is_quarantined() {
        let snapshot = build(
            Collection::Users,
            r#"{"data":[{"data":{"id":"0000000000000000000000c1","roles":{"contact":{"phone":""}}}},
                        {"data":{"name":{"first":"Nobody"},"roles":{"student":{}}}}],"links":[]}"#,
        );
        assert_eq!(snapshot.skipped.contacts, 1);
        assert!(snapshot.students.is_empty());
        assert_eq!(snapshot.quarantine.len(), 1);
        assert_eq!(snapshot.quarantine[0].reason, "record has no id");
    }

    #[test]
    fn an_empty_page_ends_the_list_even_with_a_next_link() {
        let mut builder = SnapshotBuilder::new(None);
        let info = builder
            .add_page(
                Collection::Users,
                br#"{"data":[],"links":[{"rel":"next","uri":"/v3.0/users?starting_after=x"}]}"#,
                "users",
            )
            .expect("page");
        assert_eq!(
            info,
            PageInfo {
                records: 0,
                next: None
            }
        );
    }

    #[test]
    fn an_html_body_is_a_clear_error() {
        let mut builder = SnapshotBuilder::new(None);
        let error = builder
            .add_page(Collection::Users, b"<html>Oops</html>", "GET /v3.0/users")
            .expect_err("not json");
        assert!(error.to_string().contains("GET /v3.0/users"), "{error}");
    }

    fn builder_with(districts: &[&str], expected: Option<&str>) -> SnapshotBuilder {
        let items: Vec<String> = districts
            .iter()
            .map(|id| format!(r#"{{"data":{{"id":"{id}","name":"D"}}}}"#))
            .collect();
        let page = format!(r#"{{"data":[{}],"links":[]}}"#, items.join(","));
        let mut builder = SnapshotBuilder::new(expected);
        builder
            .add_page(Collection::Districts, page.as_bytes(), "districts")
            .expect("district page");
        builder
    }

    const OURS: &str = "5a0c91b95c7cc000010d417c";
    const THEIRS: &str = "5a0c91b95c7cc000010d4100";

    #[test]
    fn a_record_that_cannot_be_read_is_quarantined_and_its_id_kept_unreadable() {
        let snapshot = build(
            Collection::Users,
            r#"{"data":[{"data":{"id":"0000000000000000000000a1","roles":{"student":"oops"}}},
                        {"data":{"id":"0000000000000000000000a2","roles":{}}},
                        {"data":{"id":"0000000000000000000000a3","roles":{"staff":{"title":"Principal"}}}}],"links":[]}"#,
        );
        assert!(snapshot.students.is_empty());
        let unreadable_students: Vec<&str> = snapshot
            .unreadable
            .iter()
            .filter(|(entity, _)| *entity == Entity::Student)
            .map(|(_, id)| id.as_str())
            .collect();
        assert_eq!(
            unreadable_students,
            ["0000000000000000000000a1", "0000000000000000000000a2"]
        );
        assert_eq!(snapshot.unreadable.len(), 6, "a user is each kind of user");
        assert_eq!(snapshot.quarantine.len(), 2);
        assert!(
            snapshot.quarantine[0]
                .reason
                .starts_with("unreadable record")
        );
        assert_eq!(snapshot.skipped.staff, 1, "staff-only users are counted");
    }

    #[test]
    fn a_duplicate_id_keeps_the_first_record_and_quarantines_the_others() {
        let snapshot = build(
            Collection::Users,
            r#"{"data":[{"data":{"id":"0000000000000000000000b1","name":{"first":"First"},"roles":{"teacher":{}}}},
                        {"data":{"id":"0000000000000000000000b1","name":{"first":"Second"},"roles":{"teacher":{}}}}],"links":[]}"#,
        );
        assert_eq!(snapshot.teachers.len(), 1);
        assert_eq!(snapshot.teachers[0].name.first.as_deref(), Some("First"));
        assert_eq!(snapshot.quarantine.len(), 1);
        assert_eq!(snapshot.quarantine[0].kind, "teacher");
        assert_eq!(
            snapshot.quarantine[0].id.as_deref(),
            Some("0000000000000000000000b1")
        );
    }

    #[test]
    fn records_of_another_district_are_counted_and_skipped() {
        let mut builder = builder_with(&[OURS, THEIRS], Some(OURS));
        let page = format!(
            r#"{{"data":[{{"data":{{"id":"0000000000000000000000d1","district":"{OURS}","roles":{{"student":{{}}}}}}}},
                        {{"data":{{"id":"0000000000000000000000d2","district":"{THEIRS}","name":{{"first":"Ann","last":"Other"}},"roles":{{"student":{{"sis_id":"77"}}}}}}}},
                        {{"data":{{"id":"0000000000000000000000d3","district":"{THEIRS}","roles":{{"student":"bad"}}}}}}],"links":[]}}"#
        );
        builder
            .add_page(Collection::Users, page.as_bytes(), "users")
            .expect("page");
        let snapshot = builder.finish(false).expect("snapshot");
        assert_eq!(snapshot.district.id, OURS);
        let ids: Vec<&str> = snapshot.students.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["0000000000000000000000d1"]);
        assert_eq!(snapshot.skipped.other_district, 2);
        // The doctor's examples: what names them, where it could be read.
        let examples: Vec<(&str, &str, Option<&str>, Option<&str>)> = snapshot
            .other_district_examples
            .iter()
            .map(|r| {
                (
                    r.kind.as_str(),
                    r.id.as_str(),
                    r.name.as_deref(),
                    r.sis_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            examples,
            [
                (
                    "user",
                    "0000000000000000000000d2",
                    Some("Ann Other"),
                    Some("77")
                ),
                ("user", "0000000000000000000000d3", None, None),
            ]
        );
        assert!(snapshot.quarantine.is_empty() && snapshot.unreadable.is_empty());
    }

    #[test]
    fn a_token_that_sees_several_districts_needs_a_district_id() {
        let error = builder_with(&[OURS, THEIRS], None)
            .finish(false)
            .expect_err("ambiguous");
        assert!(
            error.to_string().contains("set pipeline.district_id"),
            "{error}"
        );
    }

    #[test]
    fn a_district_id_that_is_not_a_clever_id_is_refused() {
        let error = builder_with(&["../../etc"], None)
            .finish(false)
            .expect_err("refused");
        assert!(error.to_string().contains("not a Clever id"), "{error}");
    }

    #[test]
    fn a_nul_in_text_is_dropped_and_a_readable_copy_wins_over_an_unreadable_one() {
        let snapshot = build(
            Collection::Users,
            r#"{"data":[{"data":{"id":"0000000000000000000000d1","name":{"first":"A\u0000na"},"roles":{"student":{}}}},
                        {"data":{"id":"0000000000000000000000d1","roles":{"student":"oops"}}}],"links":[]}"#,
        );
        assert_eq!(snapshot.students[0].name.first.as_deref(), Some("Ana"));
        assert!(snapshot.unreadable.is_empty(), "{:?}", snapshot.unreadable);
    }
}
