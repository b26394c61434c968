//! Each OneRoster record as CSV cells and as REST JSON, per version, and the scalar fields that
//! REST filters and sorts read.
//!
//! JSON follows the spec's bindings: references are GUIDRefs `{"href","sourcedId","type"}`,
//! `enabledUser` and `primary` are the strings `"true"`/`"false"` in both versions, multi-value
//! fields are arrays, optional fields are left out when blank.

use serde_json::{Map, Value, json};

use super::feed::{Class, Course, Enrollment, Org, RoleRow, Session, User};
use super::{OneRosterFile, OneRosterVersion};

/// The header row of a file (the first three columns are common to every file).
pub(crate) fn headers(file: OneRosterFile, version: OneRosterVersion) -> &'static [&'static str] {
    match (file, version) {
        (OneRosterFile::Orgs, _) => &[
            "sourcedId",
            "status",
            "dateLastModified",
            "name",
            "type",
            "identifier",
            "parentSourcedId",
        ],
        (OneRosterFile::AcademicSessions, _) => &[
            "sourcedId",
            "status",
            "dateLastModified",
            "title",
            "type",
            "startDate",
            "endDate",
            "parentSourcedId",
            "schoolYear",
        ],
        (OneRosterFile::Courses, _) => &[
            "sourcedId",
            "status",
            "dateLastModified",
            "schoolYearSourcedId",
            "title",
            "courseCode",
            "grades",
            "orgSourcedId",
            "subjects",
            "subjectCodes",
        ],
        (OneRosterFile::Classes, _) => &[
            "sourcedId",
            "status",
            "dateLastModified",
            "title",
            "grades",
            "courseSourcedId",
            "classCode",
            "classType",
            "location",
            "schoolSourcedId",
            "termSourcedIds",
            "subjects",
            "subjectCodes",
            "periods",
        ],
        (OneRosterFile::Users, OneRosterVersion::V1_1) => &[
            "sourcedId",
            "status",
            "dateLastModified",
            "enabledUser",
            "orgSourcedIds",
            "role",
            "username",
            "userIds",
            "givenName",
            "familyName",
            "middleName",
            "identifier",
            "email",
            "sms",
            "phone",
            "agentSourcedIds",
            "grades",
            "password",
        ],
        (OneRosterFile::Users, OneRosterVersion::V1_2) => &[
            "sourcedId",
            "status",
            "dateLastModified",
            "enabledUser",
            "username",
            "userIds",
            "givenName",
            "familyName",
            "middleName",
            "identifier",
            "email",
            "sms",
            "phone",
            "agentSourcedIds",
            "grades",
            "password",
            "userMasterIdentifier",
            "preferredGivenName",
            "preferredMiddleName",
            "preferredFamilyName",
            "primaryOrgSourcedId",
            "pronouns",
        ],
        (OneRosterFile::Roles, _) => &[
            "sourcedId",
            "status",
            "dateLastModified",
            "userSourcedId",
            "roleType",
            "role",
            "beginDate",
            "endDate",
            "orgSourcedId",
            "userProfileSourcedId",
        ],
        (OneRosterFile::Enrollments, _) => &[
            "sourcedId",
            "status",
            "dateLastModified",
            "classSourcedId",
            "schoolSourcedId",
            "userSourcedId",
            "role",
            "primary",
            "beginDate",
            "endDate",
        ],
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for ids in paths and
/// query values).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds GUIDRefs for one version at one server.
pub(crate) struct Refs {
    /// `http://host:port/ims/oneroster/...`
    base: String,
    pub(crate) version: OneRosterVersion,
}

impl Refs {
    pub(crate) fn new(base_url: &str, version: OneRosterVersion) -> Refs {
        Refs {
            base: format!("{}{}", base_url.trim_end_matches('/'), version.base_path()),
            version,
        }
    }

    /// `{"href": "<base>/<collection>/<id>", "sourcedId": id, "type": kind}`
    fn guid(&self, collection: &str, kind: &str, id: &str) -> Value {
        json!({
            "href": format!("{}/{collection}/{}", self.base, percent_encode(id)),
            "sourcedId": id,
            "type": kind,
        })
    }

    fn org(&self, id: &str) -> Value {
        self.guid("orgs", "org", id)
    }

    fn user(&self, id: &str) -> Value {
        self.guid("users", "user", id)
    }
}

/// One OneRoster record.
pub(crate) trait Entity {
    /// Its sourcedId.
    fn id(&self) -> &str;
    /// Its CSV cells after `sourcedId,status,dateLastModified`, in header order.
    fn cells(&self, version: OneRosterVersion) -> Vec<String>;
    /// Its REST JSON object.
    fn json(&self, refs: &Refs, status: &str, date_last_modified: &str) -> Value;
    /// A scalar field a REST filter or sort may name (`sourcedId` included, but not `status`
    /// and `dateLastModified`, which the store keeps); `None` when there is no such field.
    fn field(&self, name: &str, version: OneRosterVersion) -> Option<String>;
    /// The names [`Entity::field`] knows in that version.
    fn field_names(version: OneRosterVersion) -> &'static [&'static str]
    where
        Self: Sized;
}

/// A JSON object started with the fields every entity has.
fn base(id: &str, status: &str, date_last_modified: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("sourcedId".into(), id.into());
    map.insert("status".into(), status.into());
    map.insert("dateLastModified".into(), date_last_modified.into());
    map
}

/// Inserts a string unless it is blank (an optional field left out).
fn put(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.into(), value.into());
    }
}

/// Inserts a list unless it is empty.
fn put_list(map: &mut Map<String, Value>, key: &str, values: Vec<Value>) {
    if !values.is_empty() {
        map.insert(key.into(), Value::Array(values));
    }
}

fn texts(values: &[String]) -> Vec<Value> {
    values.iter().map(|v| Value::from(v.as_str())).collect()
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// A multi-value cell: the values comma-separated (the writer quotes the cell).
fn joined(values: &[String]) -> String {
    values.join(",")
}

impl Entity for Org {
    fn id(&self) -> &str {
        &self.id
    }

    fn cells(&self, _: OneRosterVersion) -> Vec<String> {
        vec![
            self.name.clone(),
            self.kind.name().into(),
            self.identifier.clone(),
            self.parent.clone().unwrap_or_default(),
        ]
    }

    fn json(&self, refs: &Refs, status: &str, modified: &str) -> Value {
        let mut m = base(&self.id, status, modified);
        m.insert("name".into(), self.name.as_str().into());
        m.insert("type".into(), self.kind.name().into());
        put(&mut m, "identifier", &self.identifier);
        if let Some(parent) = &self.parent {
            m.insert("parent".into(), refs.org(parent));
        }
        put_list(
            &mut m,
            "children",
            self.children.iter().map(|c| refs.org(c)).collect(),
        );
        Value::Object(m)
    }

    fn field(&self, name: &str, _: OneRosterVersion) -> Option<String> {
        Some(match name {
            "sourcedId" => self.id.clone(),
            "name" => self.name.clone(),
            "type" => self.kind.name().into(),
            "identifier" => self.identifier.clone(),
            _ => return None,
        })
    }

    fn field_names(_: OneRosterVersion) -> &'static [&'static str] {
        &["sourcedId", "name", "type", "identifier"]
    }
}

impl Entity for Session {
    fn id(&self) -> &str {
        &self.id
    }

    fn cells(&self, _: OneRosterVersion) -> Vec<String> {
        vec![
            self.title.clone(),
            "term".into(),
            self.start_date.clone(),
            self.end_date.clone(),
            String::new(),
            self.school_year.clone(),
        ]
    }

    fn json(&self, _: &Refs, status: &str, modified: &str) -> Value {
        let mut m = base(&self.id, status, modified);
        m.insert("title".into(), self.title.as_str().into());
        m.insert("type".into(), "term".into());
        m.insert("startDate".into(), self.start_date.as_str().into());
        m.insert("endDate".into(), self.end_date.as_str().into());
        m.insert("schoolYear".into(), self.school_year.as_str().into());
        Value::Object(m)
    }

    fn field(&self, name: &str, _: OneRosterVersion) -> Option<String> {
        Some(match name {
            "sourcedId" => self.id.clone(),
            "title" => self.title.clone(),
            "type" => "term".into(),
            "startDate" => self.start_date.clone(),
            "endDate" => self.end_date.clone(),
            "schoolYear" => self.school_year.clone(),
            _ => return None,
        })
    }

    fn field_names(_: OneRosterVersion) -> &'static [&'static str] {
        &[
            "sourcedId",
            "title",
            "type",
            "startDate",
            "endDate",
            "schoolYear",
        ]
    }
}

impl Entity for Course {
    fn id(&self) -> &str {
        &self.id
    }

    fn cells(&self, _: OneRosterVersion) -> Vec<String> {
        vec![
            String::new(),
            self.title.clone(),
            self.code.clone(),
            String::new(),
            self.org.clone(),
            String::new(),
            String::new(),
        ]
    }

    fn json(&self, refs: &Refs, status: &str, modified: &str) -> Value {
        let mut m = base(&self.id, status, modified);
        m.insert("title".into(), self.title.as_str().into());
        m.insert("courseCode".into(), self.code.as_str().into());
        if !self.org.is_empty() {
            m.insert("org".into(), refs.org(&self.org));
        }
        Value::Object(m)
    }

    fn field(&self, name: &str, _: OneRosterVersion) -> Option<String> {
        Some(match name {
            "sourcedId" => self.id.clone(),
            "title" => self.title.clone(),
            "courseCode" => self.code.clone(),
            _ => return None,
        })
    }

    fn field_names(_: OneRosterVersion) -> &'static [&'static str] {
        &["sourcedId", "title", "courseCode"]
    }
}

impl Entity for Class {
    fn id(&self) -> &str {
        &self.id
    }

    fn cells(&self, _: OneRosterVersion) -> Vec<String> {
        vec![
            self.title.clone(),
            joined(&self.grades),
            self.course.clone(),
            self.code.clone(),
            self.class_type.into(),
            String::new(),
            self.school.clone(),
            joined(&self.terms),
            joined(&self.subjects),
            String::new(),
            joined(&self.periods),
        ]
    }

    fn json(&self, refs: &Refs, status: &str, modified: &str) -> Value {
        let mut m = base(&self.id, status, modified);
        m.insert("title".into(), self.title.as_str().into());
        put(&mut m, "classCode", &self.code);
        m.insert("classType".into(), self.class_type.into());
        put_list(&mut m, "grades", texts(&self.grades));
        put_list(&mut m, "subjects", texts(&self.subjects));
        m.insert(
            "course".into(),
            refs.guid("courses", "course", &self.course),
        );
        m.insert("school".into(), refs.org(&self.school));
        m.insert(
            "terms".into(),
            Value::Array(
                self.terms
                    .iter()
                    .map(|t| refs.guid("academicSessions", "academicSession", t))
                    .collect(),
            ),
        );
        put_list(&mut m, "periods", texts(&self.periods));
        Value::Object(m)
    }

    fn field(&self, name: &str, _: OneRosterVersion) -> Option<String> {
        Some(match name {
            "sourcedId" => self.id.clone(),
            "title" => self.title.clone(),
            "classCode" => self.code.clone(),
            "classType" => self.class_type.into(),
            "location" => String::new(),
            _ => return None,
        })
    }

    fn field_names(_: OneRosterVersion) -> &'static [&'static str] {
        &["sourcedId", "title", "classCode", "classType", "location"]
    }
}

impl User {
    /// The `userIds` cell: `{type:identifier},{type:identifier}`.
    fn user_ids_cell(&self) -> String {
        self.user_ids
            .iter()
            .map(|(t, id)| format!("{{{t}:{id}}}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Entity for User {
    fn id(&self) -> &str {
        &self.id
    }

    fn cells(&self, version: OneRosterVersion) -> Vec<String> {
        let blank = String::new;
        match version {
            OneRosterVersion::V1_1 => vec![
                "true".into(),
                joined(&self.orgs_1_1),
                self.role_1_1.into(),
                self.username.clone(),
                self.user_ids_cell(),
                self.given_name.clone(),
                self.family_name.clone(),
                self.middle_name.clone(),
                self.identifier.clone(),
                self.email.clone(),
                blank(),
                self.phone.clone(),
                joined(&self.agents),
                joined(&self.grades),
                blank(),
            ],
            OneRosterVersion::V1_2 => vec![
                "true".into(),
                self.username.clone(),
                self.user_ids_cell(),
                self.given_name.clone(),
                self.family_name.clone(),
                self.middle_name.clone(),
                self.identifier.clone(),
                self.email.clone(),
                blank(),
                self.phone.clone(),
                joined(&self.agents),
                joined(&self.grades),
                blank(),
                blank(),
                blank(),
                blank(),
                blank(),
                self.primary_org.clone(),
                blank(),
            ],
        }
    }

    fn json(&self, refs: &Refs, status: &str, modified: &str) -> Value {
        let mut m = base(&self.id, status, modified);
        m.insert("username".into(), self.username.as_str().into());
        m.insert(
            "userIds".into(),
            Value::Array(
                self.user_ids
                    .iter()
                    .map(|(t, id)| json!({"type": t, "identifier": id}))
                    .collect(),
            ),
        );
        m.insert("enabledUser".into(), "true".into());
        m.insert("givenName".into(), self.given_name.as_str().into());
        m.insert("familyName".into(), self.family_name.as_str().into());
        put(&mut m, "middleName", &self.middle_name);
        match refs.version {
            OneRosterVersion::V1_1 => {
                m.insert("role".into(), self.role_1_1.into());
            }
            OneRosterVersion::V1_2 => {
                let roles = self
                    .roles_1_2
                    .iter()
                    .map(|r| {
                        json!({
                            "roleType": r.role_type,
                            "role": r.role,
                            "org": refs.org(&r.org),
                        })
                    })
                    .collect();
                m.insert("roles".into(), Value::Array(roles));
                if !self.primary_org.is_empty() {
                    m.insert("primaryOrg".into(), refs.org(&self.primary_org));
                }
            }
        }
        put(&mut m, "identifier", &self.identifier);
        put(&mut m, "email", &self.email);
        put(&mut m, "phone", &self.phone);
        put_list(
            &mut m,
            "agents",
            self.agents.iter().map(|a| refs.user(a)).collect(),
        );
        if refs.version == OneRosterVersion::V1_1 {
            m.insert(
                "orgs".into(),
                Value::Array(self.orgs_1_1.iter().map(|o| refs.org(o)).collect()),
            );
        }
        put_list(&mut m, "grades", texts(&self.grades));
        Value::Object(m)
    }

    fn field(&self, name: &str, version: OneRosterVersion) -> Option<String> {
        Some(match name {
            "sourcedId" => self.id.clone(),
            "username" => self.username.clone(),
            "enabledUser" => "true".into(),
            "givenName" => self.given_name.clone(),
            "familyName" => self.family_name.clone(),
            "middleName" => self.middle_name.clone(),
            "identifier" => self.identifier.clone(),
            "email" => self.email.clone(),
            "sms" => String::new(),
            "phone" => self.phone.clone(),
            "role" if version == OneRosterVersion::V1_1 => self.role_1_1.into(),
            _ => return None,
        })
    }

    fn field_names(version: OneRosterVersion) -> &'static [&'static str] {
        const COMMON: [&str; 10] = [
            "sourcedId",
            "username",
            "enabledUser",
            "givenName",
            "familyName",
            "middleName",
            "identifier",
            "email",
            "sms",
            "phone",
        ];
        const V1_1: [&str; 11] = [
            "sourcedId",
            "username",
            "enabledUser",
            "givenName",
            "familyName",
            "middleName",
            "identifier",
            "email",
            "sms",
            "phone",
            "role",
        ];
        match version {
            OneRosterVersion::V1_1 => &V1_1,
            OneRosterVersion::V1_2 => &COMMON,
        }
    }
}

impl Entity for RoleRow {
    fn id(&self) -> &str {
        &self.id
    }

    fn cells(&self, _: OneRosterVersion) -> Vec<String> {
        vec![
            self.user.clone(),
            self.role_type.into(),
            self.role.into(),
            String::new(),
            String::new(),
            self.org.clone(),
            String::new(),
        ]
    }

    fn json(&self, refs: &Refs, _: &str, _: &str) -> Value {
        json!({"roleType": self.role_type, "role": self.role, "org": refs.org(&self.org)})
    }

    fn field(&self, name: &str, _: OneRosterVersion) -> Option<String> {
        Some(match name {
            "sourcedId" => self.id.clone(),
            "roleType" => self.role_type.into(),
            "role" => self.role.into(),
            _ => return None,
        })
    }

    fn field_names(_: OneRosterVersion) -> &'static [&'static str] {
        &["sourcedId", "roleType", "role"]
    }
}

impl Entity for Enrollment {
    fn id(&self) -> &str {
        &self.id
    }

    fn cells(&self, _: OneRosterVersion) -> Vec<String> {
        vec![
            self.class.clone(),
            self.school.clone(),
            self.user.clone(),
            self.role.into(),
            bool_text(self.primary).into(),
            String::new(),
            String::new(),
        ]
    }

    fn json(&self, refs: &Refs, status: &str, modified: &str) -> Value {
        let mut m = base(&self.id, status, modified);
        m.insert("user".into(), refs.user(&self.user));
        m.insert("class".into(), refs.guid("classes", "class", &self.class));
        m.insert("school".into(), refs.org(&self.school));
        m.insert("role".into(), self.role.into());
        m.insert("primary".into(), bool_text(self.primary).into());
        Value::Object(m)
    }

    fn field(&self, name: &str, _: OneRosterVersion) -> Option<String> {
        Some(match name {
            "sourcedId" => self.id.clone(),
            "role" => self.role.into(),
            "primary" => bool_text(self.primary).into(),
            "beginDate" | "endDate" => String::new(),
            _ => return None,
        })
    }

    fn field_names(_: OneRosterVersion) -> &'static [&'static str] {
        &["sourcedId", "role", "primary", "beginDate", "endDate"]
    }
}
