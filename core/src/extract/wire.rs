//! Clever's JSON as it really arrives (Data API v3.0, with v3.1 fields), read tolerantly:
//! unknown fields are ignored, `""` means absent, every enum is kept as text, optional fields
//! are optional. [`SnapshotBuilder`] turns pages of it into a [`Snapshot`], one page at a time,
//! quarantining the records it cannot use.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::{Collection, ExtractError};
use crate::model::{
    Admin, Course, District, Name, Quarantined, School, Section, Snapshot, Source, Student,
    Teacher, Term,
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

/// `""` and `null` both mean absent.
fn blank<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value: Option<serde_json::Value> = Option::deserialize(deserializer)?;
    Ok(match value {
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Null) | None => None,
        // A number where text was expected (grades, periods): keep its text.
        Some(other) => Some(other.to_string()),
    })
}

fn ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let value: Option<Vec<Option<String>>> = Option::deserialize(deserializer)?;
    Ok(value
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter(|id| !id.is_empty())
        .collect())
}

#[derive(Deserialize)]
struct WireDistrict {
    #[serde(default, deserialize_with = "blank")]
    id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireSchool {
    #[serde(default, deserialize_with = "blank")]
    id: Option<String>,
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
    id: Option<String>,
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
    id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    name: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    number: Option<String>,
}

#[derive(Deserialize)]
struct WireSection {
    #[serde(default, deserialize_with = "blank")]
    id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    school: Option<String>,
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
    term_id: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    course: Option<String>,
    #[serde(default, deserialize_with = "blank")]
    teacher: Option<String>,
    #[serde(default, deserialize_with = "ids")]
    teachers: Vec<String>,
    #[serde(default, deserialize_with = "ids")]
    students: Vec<String>,
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
    id: Option<String>,
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
    staff: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    contact: Option<serde::de::IgnoredAny>,
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
    school: Option<String>,
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
    school: Option<String>,
}

#[derive(Deserialize)]
struct WireAdmin {
    #[serde(default, deserialize_with = "blank")]
    title: Option<String>,
}

/// What a page said about the list it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct PageInfo {
    /// Records on the page.
    pub records: usize,
    /// The `next` link, if any. A page with no records ends the list whatever it links to.
    pub next: Option<String>,
}

/// Accumulates pages into a snapshot.
#[derive(Default)]
pub struct SnapshotBuilder {
    snapshot: Snapshot,
    districts: Vec<District>,
    seen: BTreeSet<Collection>,
}

impl SnapshotBuilder {
    /// Parses one page of `collection` and adds its records.
    pub fn add_page(
        &mut self,
        collection: Collection,
        body: &[u8],
        origin: &str,
    ) -> Result<PageInfo, ExtractError> {
        let page: Page = serde_json::from_slice(body).map_err(|error| ExtractError::Page {
            origin: origin.to_owned(),
            reason: format!("not a Clever list page: {error}"),
            snippet: snippet(body),
        })?;
        self.seen.insert(collection);
        for item in &page.data {
            self.add_record(collection, item.data);
        }
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

    fn add_record(&mut self, collection: Collection, raw: &RawValue) {
        let json = raw.get();
        let result = match collection {
            Collection::Districts => parse(json).map(|d: WireDistrict| {
                let id = d.id?;
                self.districts.push(District {
                    name: d.name.unwrap_or_else(|| id.clone()),
                    id,
                });
                Some(())
            }),
            Collection::Schools => parse(json).map(|s: WireSchool| {
                self.snapshot.schools.push(School {
                    name: s
                        .name
                        .clone()
                        .unwrap_or_else(|| s.id.clone().unwrap_or_default()),
                    id: s.id?,
                    sis_id: s.sis_id,
                    school_number: s.school_number,
                    state_id: s.state_id,
                    low_grade: s.low_grade,
                    high_grade: s.high_grade,
                    synthesized: false,
                });
                Some(())
            }),
            Collection::Terms => parse(json).map(|t: WireTerm| {
                self.snapshot.terms.push(Term {
                    id: t.id?,
                    name: t.name,
                    start_date: t.start_date,
                    end_date: t.end_date,
                    synthesized: false,
                });
                Some(())
            }),
            Collection::Courses => parse(json).map(|c: WireCourse| {
                self.snapshot.courses.push(Course {
                    id: c.id?,
                    name: c.name,
                    number: c.number,
                    synthesized: false,
                });
                Some(())
            }),
            Collection::Sections => parse(json).map(|s: WireSection| {
                let id = s.id?;
                let Some(school) = s.school else {
                    self.quarantine("section", Some(&id), "section has no school", json);
                    return Some(());
                };
                let mut teachers = s.teachers;
                // The primary teacher comes first, as Clever documents; repair feeds that differ.
                if let Some(primary) = s.teacher {
                    teachers.retain(|t| *t != primary);
                    teachers.insert(0, primary);
                }
                dedup(&mut teachers);
                let mut students = s.students;
                dedup(&mut students);
                self.snapshot.sections.push(Section {
                    name: s.name.unwrap_or_else(|| id.clone()),
                    id,
                    school,
                    sis_id: s.sis_id,
                    subject: s.subject,
                    grade: s.grade,
                    period: s.period,
                    section_number: s.section_number,
                    term: s.term_id,
                    course: s.course,
                    teachers,
                    students,
                    ext: flatten_ext(s.ext),
                    source: Source::Sis,
                    member_sources: BTreeMap::new(),
                });
                Some(())
            }),
            Collection::Users => parse(json).map(|u: WireUser| self.add_user(u, json)),
        };
        match result {
            Ok(Some(())) => {}
            Ok(None) => self.quarantine(collection.record_kind(), None, "record has no id", json),
            Err(reason) => self.quarantine(collection.record_kind(), None, &reason, json),
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
        let mut used = false;
        if let Some(student) = roles.student {
            used = true;
            self.snapshot.students.push(Student {
                id: id.clone(),
                name: name.clone(),
                email: user.email.clone().or(student.email),
                sis_id: student.sis_id,
                state_id: student.state_id,
                student_number: student.student_number,
                grade: student.grade,
                school: student.school,
            });
        }
        if let Some(teacher) = roles.teacher {
            used = true;
            self.snapshot.teachers.push(Teacher {
                id: id.clone(),
                name: name.clone(),
                email: user.email.clone(),
                sis_id: teacher.sis_id,
                state_id: teacher.state_id,
                teacher_number: teacher.teacher_number,
                title: teacher.title,
                school: teacher.school,
            });
        }
        if let Some(admin) = roles.district_admin {
            used = true;
            self.snapshot.admins.push(Admin {
                id: id.clone(),
                name,
                email: user.email,
                title: admin.title,
            });
        }
        if !used {
            if roles.contact.is_some() {
                self.snapshot.contacts_skipped += 1;
            } else if roles.staff.is_none() {
                self.quarantine(
                    "user",
                    Some(&id),
                    "user holds no role rosterflow knows",
                    json,
                );
            }
        }
        Some(())
    }

    fn quarantine(&mut self, kind: &str, id: Option<&str>, reason: &str, json: &str) {
        self.snapshot.quarantine.push(Quarantined {
            kind: kind.to_owned(),
            id: id.map(str::to_owned),
            reason: reason.to_owned(),
            suggested_fix: None,
            record: json.to_owned(),
        });
    }

    /// Whether any page of `collection` arrived (an empty list counts).
    pub fn has(&self, collection: Collection) -> bool {
        self.seen.contains(&collection)
    }

    /// The snapshot of `district` (the only one, unless `expected` names another).
    pub fn finish(
        mut self,
        expected: Option<&str>,
        synthesize_missing: bool,
    ) -> Result<Snapshot, ExtractError> {
        let district = match expected {
            Some(expected) => self
                .districts
                .iter()
                .find(|d| d.id == expected)
                .cloned()
                .ok_or_else(|| ExtractError::WrongDistrict {
                    expected: expected.to_owned(),
                    found: self.districts.iter().map(|d| d.id.clone()).collect(),
                })?,
            None => match self.districts.as_slice() {
                [only] => only.clone(),
                found => {
                    return Err(ExtractError::WrongDistrict {
                        expected: "exactly one district".to_owned(),
                        found: found.iter().map(|d| d.id.clone()).collect(),
                    });
                }
            },
        };
        self.snapshot.district = district;
        if synthesize_missing {
            self.synthesize_missing();
        }
        let mut snapshot = self.snapshot;
        snapshot.quarantine_dangling_references();
        Ok(snapshot)
    }

    /// Supplies schools, terms and courses that sections refer to but the recording lacks (the
    /// real Clever demo district has only districts, users and sections), marked synthesized.
    fn synthesize_missing(&mut self) {
        let snapshot = &mut self.snapshot;
        if !self.seen.contains(&Collection::Schools) {
            let ids: BTreeSet<&String> = snapshot.sections.iter().map(|s| &s.school).collect();
            snapshot.schools = ids
                .into_iter()
                .map(|id| School {
                    id: id.clone(),
                    name: format!("School {}", &id[id.len().saturating_sub(6)..]),
                    synthesized: true,
                    ..School::default()
                })
                .collect();
        }
        if !self.seen.contains(&Collection::Terms) {
            let ids: BTreeSet<&String> = snapshot.sections.iter().flat_map(|s| &s.term).collect();
            snapshot.terms = ids
                .into_iter()
                .map(|id| Term {
                    id: id.clone(),
                    name: Some(format!("Term {}", &id[id.len().saturating_sub(6)..])),
                    synthesized: true,
                    ..Term::default()
                })
                .collect();
        }
        if !self.seen.contains(&Collection::Courses) {
            let ids: BTreeSet<&String> = snapshot.sections.iter().flat_map(|s| &s.course).collect();
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

fn parse<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|error| format!("unreadable record: {error}"))
}

fn dedup(ids: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
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

/// The start of a body, for an error message (never more than 200 characters).
pub(crate) fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISTRICT: &str = r#"{"data":[{"data":{"id":"5a0c91b95c7cc000010d417c","name":"Demo"},"uri":"/v3.0/districts/x"}],"links":[]}"#;

    fn build(collection: Collection, page: &str) -> Snapshot {
        let mut builder = SnapshotBuilder::default();
        builder
            .add_page(Collection::Districts, DISTRICT.as_bytes(), "districts")
            .expect("district page");
        builder
            .add_page(collection, page.as_bytes(), "test")
            .expect("page");
        builder.finish(None, false).expect("snapshot")
    }

    #[test]
    fn blank_strings_are_absent_and_unknown_fields_ignored() {
        let snapshot = build(
            Collection::Users,
            r#"{"data":[{"data":{"id":"u1","email":"","surprise":{"x":1},"name":{"first":"A","last":""},
                "roles":{"teacher":{"sis_id":"","title":"Teacher","school":"s1","new_field":true}}}}],"links":[]}"#,
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
            r#"{"data":[{"data":{"id":"c1","roles":{"contact":{"phone":""}}}},
                        {"data":{"name":{"first":"Nobody"},"roles":{"student":{}}}}],"links":[]}"#,
        );
        assert_eq!(snapshot.contacts_skipped, 1);
        assert!(snapshot.students.is_empty());
        assert_eq!(snapshot.quarantine.len(), 1);
        assert_eq!(snapshot.quarantine[0].reason, "record has no id");
    }

    #[test]
    fn an_empty_page_ends_the_list_even_with_a_next_link() {
        let mut builder = SnapshotBuilder::default();
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
        let mut builder = SnapshotBuilder::default();
        let error = builder
            .add_page(Collection::Users, b"<html>Oops</html>", "GET /v3.0/users")
            .expect_err("not json");
        assert!(error.to_string().contains("GET /v3.0/users"), "{error}");
    }
}
