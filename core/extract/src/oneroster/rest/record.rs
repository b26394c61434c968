//! A REST record (JSON) flattened to the columns of the CSV binding, so that the CSV source's
//! records read it by the same rules ([`Cells`]).
//!
//! | JSON | column |
//! |---|---|
//! | a GUIDRef `{"sourcedId": ...}` (`parent`, `org`, `course`, `school`, `class`, `user`, `primaryOrg`, `schoolYear`) | `<name>SourcedId` |
//! | a list of GUIDRefs (`terms`, `orgs`) | `termSourcedIds`, `orgSourcedIds` |
//! | a list of strings (`grades`, `subjects`, `subjectCodes`, `periods`) | the same column, a value each |
//! | `userIds: [{"type", "identifier"}]` | `userIds` |
//! | any other string, number or boolean | the same column, as text |
//!
//! Read tolerantly: a GUIDRef may be a bare id, a list a comma-separated string, `enabledUser`
//! and `primary` booleans or strings, `schoolYear` a number; null is absent. A 1.2 user's
//! `roles` become records of `roles` (ids `<user>#roles/<n>`, their origin the user's URL
//! with that fragment). A user of the other version's shape is read too: 1.1 takes its role
//! from `roles` (the primary one) when it has no `role`; 1.2 makes a role of `role` at each of
//! `orgs` when it has no `roles`. A `password` never reaches quarantine.

use serde_json::{Map, Value};

use super::{Service, record_url, role_id};
use crate::oneroster::feed::{Cells, Problem};
use crate::oneroster::manifest::{CsvFile, Version};
use crate::oneroster::usable_id;
use rosterflow_model::Id;

/// A cell: text, or a list of values.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(String),
    /// The values, and them comma-joined (for [`Cells::raw`]).
    List(Vec<String>, String),
}

/// Where a record was served.
#[derive(Debug, Clone, Copy)]
pub(super) struct Place<'a> {
    pub service: &'a Service,
    pub file: CsvFile,
    /// The page's URL.
    pub page: &'a str,
    /// Its index in the page.
    pub index: usize,
    /// Its place in the collection, from 1.
    pub line: u64,
}

/// One record as the CSV binding's columns.
#[derive(Debug)]
pub(super) struct Flat<'a> {
    /// The record as served, for quarantine.
    object: Option<&'a Map<String, Value>>,
    cells: Vec<(&'static str, Cell)>,
    user_ids: Vec<(String, String)>,
    at: Place<'a>,
}

/// A JSON value as text: a string, a number or a boolean.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A record's `sourcedId`, as text.
pub(super) fn sourced_id(value: &Value) -> Option<String> {
    value.get("sourcedId").and_then(scalar)
}

/// A GUIDRef's id: `{"sourcedId": ...}`, or a bare id.
fn guid(value: &Value) -> Option<String> {
    match value {
        Value::Object(object) => object.get("sourcedId").and_then(scalar),
        other => scalar(other),
    }
}

/// A list of values (each trimmed, blanks dropped): an array, or a comma-separated string.
fn values(value: &Value, each: impl Fn(&Value) -> Option<String>) -> Vec<String> {
    let items: Vec<String> = match value {
        Value::Array(items) => items.iter().filter_map(each).collect(),
        Value::String(text) => text.split(',').map(str::to_owned).collect(),
        Value::Null => Vec::new(),
        other => each(other).into_iter().collect(),
    };
    items
        .into_iter()
        .map(|item| item.replace('\0', "").trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// `userIds`: `[{"type", "identifier"}]`, or a CSV-style `{type:id},...` string.
fn user_ids(value: Option<&Value>) -> Vec<(String, String)> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| {
                let kind = scalar(item.get("type")?)?;
                let id = scalar(item.get("identifier")?)?;
                let (kind, id) = (kind.trim(), id.trim());
                (!kind.is_empty() && !id.is_empty()).then(|| (kind.to_owned(), id.to_owned()))
            })
            .collect(),
        Some(Value::String(text)) => crate::oneroster::feed::user_ids(text),
        _ => Vec::new(),
    }
}

/// Builds the cells of one record.
struct Builder<'a> {
    object: &'a Map<String, Value>,
    cells: Vec<(&'static str, Cell)>,
}

impl<'a> Builder<'a> {
    fn new(object: &'a Map<String, Value>) -> Builder<'a> {
        let mut builder = Builder {
            object,
            cells: Vec::with_capacity(16),
        };
        builder.texts(&["sourcedId", "status", "dateLastModified"]);
        builder
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    fn put(&mut self, column: &'static str, text: Option<String>) {
        if let Some(text) = text {
            self.cells.push((column, Cell::Text(text)));
        }
    }

    fn put_list(&mut self, column: &'static str, items: Vec<String>) {
        if !items.is_empty() {
            let joined = items.join(",");
            self.cells.push((column, Cell::List(items, joined)));
        }
    }

    /// Fields copied as they are.
    fn texts(&mut self, fields: &[&'static str]) {
        for field in fields {
            let text = self.get(field).and_then(scalar);
            self.put(field, text);
        }
    }

    /// Fields that are lists of strings.
    fn lists(&mut self, fields: &[&'static str]) {
        for field in fields {
            let items = self
                .get(field)
                .map(|v| values(v, scalar))
                .unwrap_or_default();
            self.put_list(field, items);
        }
    }

    /// A GUIDRef field as `column`.
    fn reference(&mut self, field: &str, column: &'static str) {
        let id = self.get(field).and_then(guid);
        self.put(column, id);
    }

    /// A list of GUIDRefs as `column`.
    fn references(&mut self, field: &str, column: &'static str) {
        let ids = self.get(field).map(|v| values(v, guid)).unwrap_or_default();
        self.put_list(column, ids);
    }
}

/// The record at `at`, flattened; a problem when it is not a JSON object.
pub(super) fn flat<'a>(
    at: Place<'a>,
    value: &'a Value,
    version: Version,
) -> Result<Flat<'a>, Box<Problem>> {
    let Value::Object(object) = value else {
        return Err(Box::new(Problem {
            id: None,
            origin: page_origin(&at),
            reason: "the record is not a JSON object".to_owned(),
            fix: Some("correct the record in the service's source".to_owned()),
            record: value.to_string(),
            unreadable: false,
        }));
    };
    let mut b = Builder::new(object);
    let mut ids = Vec::new();
    match at.file {
        CsvFile::Orgs => {
            b.texts(&["name", "type", "identifier"]);
            b.reference("parent", "parentSourcedId");
        }
        CsvFile::AcademicSessions => {
            b.texts(&["title", "type", "startDate", "endDate", "schoolYear"]);
            b.reference("parent", "parentSourcedId");
        }
        CsvFile::Courses => {
            b.texts(&["title", "courseCode"]);
            b.reference("org", "orgSourcedId");
            b.reference("schoolYear", "schoolYearSourcedId");
            b.lists(&["grades", "subjects", "subjectCodes"]);
        }
        CsvFile::Classes => {
            b.texts(&["title", "classCode", "classType", "location"]);
            b.reference("course", "courseSourcedId");
            b.reference("school", "schoolSourcedId");
            b.references("terms", "termSourcedIds");
            b.lists(&["grades", "subjects", "subjectCodes", "periods"]);
        }
        CsvFile::Users => {
            b.texts(&[
                "enabledUser",
                "username",
                "givenName",
                "familyName",
                "middleName",
                "identifier",
                "email",
            ]);
            b.lists(&["grades"]);
            b.reference("primaryOrg", "primaryOrgSourcedId");
            ids = user_ids(b.get("userIds"));
            if version == Version::V1_1 {
                user_role_1_1(&mut b);
            }
        }
        CsvFile::Enrollments => {
            b.texts(&["role", "primary"]);
            b.reference("class", "classSourcedId");
            b.reference("school", "schoolSourcedId");
            b.reference("user", "userSourcedId");
        }
        // Roles come with their users: see `roles`.
        CsvFile::Roles => {}
    }
    Ok(Flat {
        object: Some(object),
        cells: b.cells,
        user_ids: ids,
        at,
    })
}

/// A 1.1 user's `role` and `orgSourcedIds`, from `role` and `orgs`, or else from `roles`.
fn user_role_1_1(b: &mut Builder<'_>) {
    let roles: Vec<&Map<String, Value>> = b
        .get("roles")
        .and_then(Value::as_array)
        .map(|roles| roles.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let is_primary = |role: &Map<String, Value>| {
        role.get("roleType")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("primary"))
    };
    let role = b.get("role").and_then(scalar).or_else(|| {
        let primary = roles
            .iter()
            .copied()
            .find(|r| is_primary(r))
            .or(roles.first().copied())?;
        primary.get("role").and_then(scalar)
    });
    b.put("role", role);
    match b.get("orgs") {
        Some(_) => b.references("orgs", "orgSourcedIds"),
        None => {
            // Primary roles' orgs first: the first school is the user's.
            let (primary, other): (Vec<_>, Vec<_>) =
                roles.iter().copied().partition(|r| is_primary(r));
            let orgs = primary
                .into_iter()
                .chain(other)
                .filter_map(|r| r.get("org").and_then(guid))
                .collect();
            b.put_list("orgSourcedIds", orgs);
        }
    }
}

/// The roles of a 1.2 user (whose id is `user`) as records of `roles`: its `roles`, or else
/// its `role` at each of its `orgs`. `line` counts the roles of the collection.
pub(super) fn roles<'a>(
    at: Place<'a>,
    user: &str,
    object: &'a Map<String, Value>,
    line: &mut u64,
) -> Vec<Flat<'a>> {
    let mut flats = Vec::new();
    let mut push = |object: Option<&'a Map<String, Value>>, cells: Vec<(&'static str, Cell)>| {
        *line += 1;
        let n = flats.len();
        let mut all = vec![
            ("sourcedId", Cell::Text(role_id(user, n))),
            ("userSourcedId", Cell::Text(user.to_owned())),
        ];
        all.extend(cells);
        flats.push(Flat {
            object,
            cells: all,
            user_ids: Vec::new(),
            at: Place {
                file: CsvFile::Roles,
                line: *line,
                ..at
            },
        });
    };
    match object.get("roles").filter(|r| !r.is_null()) {
        Some(roles) => {
            for role in roles.as_array().into_iter().flatten() {
                let Value::Object(role) = role else { continue };
                let mut b = Builder {
                    object: role,
                    cells: Vec::new(),
                };
                b.texts(&["roleType", "role"]);
                b.reference("org", "orgSourcedId");
                push(Some(role), b.cells);
            }
        }
        None => {
            let role = object.get("role").and_then(scalar);
            let orgs = object
                .get("orgs")
                .map(|v| values(v, guid))
                .unwrap_or_default();
            for org in orgs {
                let mut cells = vec![("roleType", Cell::Text("primary".into()))];
                cells.extend(role.clone().map(|r| ("role", Cell::Text(r))));
                cells.push(("orgSourcedId", Cell::Text(org)));
                push(None, cells);
            }
        }
    }
    flats
}

/// A record's name in JSON for a column, for messages.
fn field_name(column: &str) -> &str {
    match column {
        "parentSourcedId" => "parent.sourcedId",
        "orgSourcedId" => "org.sourcedId",
        "schoolYearSourcedId" => "schoolYear.sourcedId",
        "courseSourcedId" => "course.sourcedId",
        "schoolSourcedId" => "school.sourcedId",
        "classSourcedId" => "class.sourcedId",
        "userSourcedId" => "user.sourcedId",
        "primaryOrgSourcedId" => "primaryOrg.sourcedId",
        "termSourcedIds" => "terms",
        "orgSourcedIds" => "orgs",
        other => other,
    }
}

/// Where a record without a usable id was: its page, and its place there.
fn page_origin(at: &Place<'_>) -> String {
    format!("{} (record {} of the page)", at.page, at.index + 1)
}

impl Flat<'_> {
    fn cell(&self, column: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|(c, _)| *c == column)
            .map(|(_, cell)| cell)
    }

    /// The field's name in messages: `school.sourcedId`, `roles[].org.sourcedId`.
    fn name(&self, column: &str) -> String {
        match self.at.file {
            CsvFile::Roles => format!("roles[].{}", field_name(column)),
            _ => field_name(column).to_owned(),
        }
    }
}

impl Cells for Flat<'_> {
    fn raw(&self, column: &str) -> Option<&str> {
        match self.cell(column)? {
            Cell::Text(text) => (!text.trim().is_empty()).then_some(text.as_str()),
            Cell::List(items, joined) => (!items.is_empty()).then_some(joined.as_str()),
        }
    }

    fn text(&self, column: &str) -> Option<String> {
        let mut text = self.raw(column)?.to_owned();
        text.retain(|c| c != '\0');
        (!text.trim().is_empty()).then_some(text)
    }

    fn required(&self, column: &str) -> Result<String, String> {
        self.text(column).ok_or_else(|| self.blank(column))
    }

    fn id(&self, column: &str) -> Result<Id, String> {
        let id = self.raw(column).ok_or_else(|| self.blank(column))?;
        usable_id(id).map_err(|why| format!("{} {why}", self.name(column)))?;
        Ok(Id::from(id))
    }

    fn optional_id(&self, column: &str) -> Result<Option<Id>, String> {
        match self.raw(column) {
            None => Ok(None),
            Some(_) => self.id(column).map(Some),
        }
    }

    fn list(&self, column: &str) -> Vec<String> {
        match self.cell(column) {
            Some(Cell::List(items, _)) => items.clone(),
            Some(Cell::Text(text)) => values(&Value::String(text.clone()), scalar),
            None => Vec::new(),
        }
    }

    fn ids(&self, column: &str) -> Vec<Id> {
        self.list(column)
            .into_iter()
            .filter(|id| usable_id(id).is_ok())
            .map(Id::from)
            .collect()
    }

    fn user_ids(&self) -> Vec<(String, String)> {
        self.user_ids.clone()
    }

    fn blank(&self, column: &str) -> String {
        format!("required field {} is missing or blank", self.name(column))
    }

    fn line(&self) -> u64 {
        self.at.line
    }

    fn origin(&self) -> String {
        match self.raw("sourcedId").filter(|id| usable_id(id).is_ok()) {
            Some(id) => record_url(&self.at.service.base, self.at.file, id),
            None => page_origin(&self.at),
        }
    }

    fn origin_at(&self, file: CsvFile, line: u64) -> String {
        format!("record {line} of {}", self.at.service.collection_url(file))
    }

    fn place(&self, file: CsvFile) -> String {
        format!("the {} collection", file.name())
    }

    fn json(&self) -> String {
        match self.object {
            Some(object) => {
                let mut object = object.clone();
                object.remove("password");
                Value::Object(object).to_string()
            }
            None => {
                let object: Map<String, Value> = self
                    .cells
                    .iter()
                    .map(|(column, cell)| {
                        let value = match cell {
                            Cell::Text(text) => Value::from(text.as_str()),
                            Cell::List(_, joined) => Value::from(joined.as_str()),
                        };
                        ((*column).to_owned(), value)
                    })
                    .collect();
                Value::Object(object).to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::oneroster::feed::{
        Batch, Class, Enrollment, Read, Reader, Record, Records, RoleRecord, User,
    };
    use crate::oneroster::manifest::Mode;
    use crate::oneroster::vocab::{EnrollmentRole, Role, RoleType};

    fn service(version: Version) -> Service {
        Service::new(
            "https://sis.example.org/ims/oneroster/rostering/v1p2/",
            version,
        )
        .expect("service")
    }

    fn place(service: &Service, file: CsvFile) -> Place<'_> {
        Place {
            service,
            file,
            page: "https://sis.example.org/page",
            index: 2,
            line: 7,
        }
    }

    /// The records of a batch, and its problems.
    fn loaded<R: Record>(batch: Batch<R>) -> Records<R> {
        let mut records = Records::default();
        records.load_batch(batch, Mode::Bulk);
        records
    }

    /// The first record of a batch, or else its first problem.
    fn first<R: Record>(batch: Batch<R>) -> Result<R, Box<Problem>> {
        let mut records = loaded(batch);
        match records.rows.is_empty() {
            false => Ok(records.rows.swap_remove(0)),
            true => Err(Box::new(records.problems.swap_remove(0))),
        }
    }

    /// Reads one record of `file` (`R`) as a bulk row.
    fn read_one<R: Record>(version: Version, value: &Value) -> (Read, Result<R, Box<Problem>>) {
        let service = service(version);
        let mut reader = Reader::<R>::new(Mode::Bulk, version);
        let read = reader.push(flat(place(&service, R::FILE), value, version).map_err(|p| *p));
        let batch = reader.finish();
        (read, first(batch))
    }

    #[test]
    fn a_class_reads_its_references_lists_and_codes() {
        let class = json!({
            "sourcedId": "k1", "status": "active", "dateLastModified": "2026-01-01T00:00:00Z",
            "title": "Math 3", "classCode": "M3-1", "classType": "scheduled",
            "course": {"href": "https://x/courses/c1", "sourcedId": "c1", "type": "course"},
            "school": "s1",
            "terms": [{"sourcedId": "t2"}, {"sourcedId": "t1"}],
            "grades": ["03", " 04 "], "subjects": "Algebra, Geometry", "periods": [2, 3]
        });
        let (read, class) = read_one::<Class>(Version::V1_2, &class);
        assert_eq!(read, Read::Record);
        let class = class.expect("a class");
        assert_eq!(class.course.as_deref(), Some("c1"));
        assert_eq!(class.school, "s1", "a bare GUIDRef");
        assert_eq!(class.terms, ["t2", "t1"]);
        assert_eq!(class.grades, ["03", "04"]);
        assert_eq!(class.subjects, ["Algebra", "Geometry"]);
        assert_eq!(class.periods, ["2", "3"]);
        assert_eq!(class.code.as_deref(), Some("M3-1"));
    }

    #[test]
    fn a_missing_reference_names_the_json_field_and_the_records_url() {
        let class = json!({"sourcedId": "a/b c", "title": "X", "classType": "scheduled",
                           "terms": [{"sourcedId": "t1"}], "password": "hunter2"});
        let (read, problem) = read_one::<Class>(Version::V1_2, &class);
        assert_eq!(read, Read::Refused);
        let problem = problem.expect_err("no school");
        assert_eq!(
            problem.reason,
            "required field school.sourcedId is missing or blank"
        );
        assert_eq!(
            problem.origin,
            "https://sis.example.org/ims/oneroster/rostering/v1p2/classes/a%2Fb%20c"
        );
        assert!(problem.unreadable);
        assert!(!problem.record.contains("hunter2"), "{}", problem.record);
        let (_, problem) = read_one::<Class>(Version::V1_2, &json!("not an object"));
        let problem = problem.expect_err("not an object");
        assert_eq!(
            problem.origin,
            "https://sis.example.org/page (record 3 of the page)"
        );
    }

    #[test]
    fn users_of_either_shape_are_read_in_either_version() {
        let v1_1 = json!({
            "sourcedId": "u1", "status": "active", "enabledUser": "true", "username": "ana",
            "givenName": "Ana", "familyName": "Lopez", "role": "student",
            "orgs": [{"sourcedId": "s2"}, {"sourcedId": "s1"}],
            "userIds": [{"type": "studentNumber", "identifier": "1001"}, {"type": "", "identifier": "x"}],
            "grades": ["03"], "password": "hunter2"
        });
        let v1_2 = json!({
            "sourcedId": "u1", "status": "active", "enabledUser": true, "username": "ana",
            "givenName": "Ana", "familyName": "Lopez",
            "roles": [
                {"roleType": "secondary", "role": "teacher", "org": {"sourcedId": "s1"}},
                {"roleType": "primary", "role": "student", "org": {"sourcedId": "s2"}}
            ],
            "primaryOrg": {"sourcedId": "s2"}
        });
        for value in [&v1_1, &v1_2] {
            let (_, user) = read_one::<User>(Version::V1_1, value);
            let user = user.expect("a 1.1 user");
            assert_eq!(user.role, Some(Role::Student), "{value}");
            assert_eq!(user.orgs, ["s2", "s1"], "{value}");
            assert!(user.enabled);
        }
        let (_, user) = read_one::<User>(Version::V1_1, &v1_1);
        assert_eq!(
            user.expect("user").user_ids,
            [("studentNumber".to_owned(), "1001".to_owned())]
        );
        let (_, user) = read_one::<User>(Version::V1_2, &v1_2);
        let user = user.expect("a 1.2 user");
        assert_eq!((user.role, user.primary_org.as_deref()), (None, Some("s2")));

        let service = service(Version::V1_2);
        let at = place(&service, CsvFile::Users);
        for (value, expected) in [
            (
                &v1_2,
                vec![
                    (RoleType::Secondary, Role::Teacher, "s1"),
                    (RoleType::Primary, Role::Student, "s2"),
                ],
            ),
            (
                &v1_1,
                vec![
                    (RoleType::Primary, Role::Student, "s2"),
                    (RoleType::Primary, Role::Student, "s1"),
                ],
            ),
        ] {
            let mut line = 0;
            let mut reader = Reader::<RoleRecord>::new(Mode::Bulk, Version::V1_2);
            let object = value.as_object().expect("object");
            for role in roles(at, "u1", object, &mut line) {
                assert_eq!(reader.push(Ok::<_, Problem>(role)), Read::Record);
            }
            let batch = reader.finish();
            let got: Vec<(RoleType, Role, String, String)> = loaded(batch)
                .rows
                .into_iter()
                .map(|r| (r.role_type, r.role, r.org.to_string(), r.id.to_string()))
                .collect();
            let expected: Vec<(RoleType, Role, String, String)> = expected
                .into_iter()
                .enumerate()
                .map(|(n, (t, r, o))| (t, r, o.to_owned(), format!("u1#roles/{n}")))
                .collect();
            assert_eq!(got, expected, "{value}");
            assert_eq!(line, 2);
        }
    }

    #[test]
    fn a_bad_role_is_quarantined_at_its_users_url() {
        let user = json!({"sourcedId": "u|1", "roles": [{"roleType": "primary", "role": "wizard",
                          "org": {"sourcedId": "s1"}}]});
        let service = service(Version::V1_2);
        let mut line = 0;
        let object = user.as_object().expect("object");
        let mut reader = Reader::<RoleRecord>::new(Mode::Bulk, Version::V1_2);
        for role in roles(place(&service, CsvFile::Users), "u|1", object, &mut line) {
            assert_eq!(reader.push(Ok::<_, Problem>(role)), Read::Refused);
        }
        let problem = first(reader.finish()).expect_err("wizard is no role");
        assert!(problem.reason.starts_with("role \"wizard\""), "{problem:?}");
        assert_eq!(
            problem.origin,
            "https://sis.example.org/ims/oneroster/rostering/v1p2/users/u|1#roles/0"
        );
        assert_eq!(problem.id.as_deref(), Some("u|1#roles/0"));
    }

    #[test]
    fn enrollments_read_booleans_and_strings() {
        for primary in [json!(true), json!("true"), json!("TRUE")] {
            let value = json!({"sourcedId": "e1", "role": "teacher", "primary": primary,
                               "class": {"sourcedId": "k1"}, "school": {"sourcedId": "s1"},
                               "user": {"sourcedId": "u1"}});
            let (_, enrollment) = read_one::<Enrollment>(Version::V1_1, &value);
            let enrollment = enrollment.expect("an enrollment");
            assert!(enrollment.primary);
            assert_eq!(enrollment.role, EnrollmentRole::Teacher);
            assert_eq!(
                (enrollment.class.as_str(), enrollment.user.as_str()),
                ("k1", "u1")
            );
        }
    }

    #[test]
    fn a_tobedeleted_record_is_a_removal_and_a_duplicate_names_the_first() {
        let service = service(Version::V1_2);
        let mut reader = Reader::<Enrollment>::new(Mode::Delta, Version::V1_2);
        let gone = json!({"sourcedId": "e1", "status": "tobedeleted",
                          "dateLastModified": "2026-02-01T00:00:00Z"});
        let at = place(&service, CsvFile::Enrollments);
        let read = reader.push(flat(at, &gone, Version::V1_2).map_err(|p| *p));
        assert_eq!(read, Read::Removal);
        let again = Place { line: 9, ..at };
        let read = reader.push(flat(again, &gone, Version::V1_2).map_err(|p| *p));
        assert_eq!(read, Read::Refused);
        let problem = first(reader.finish()).expect_err("a duplicate");
        assert_eq!(
            problem.origin,
            "https://sis.example.org/ims/oneroster/rostering/v1p2/enrollments/e1 (first at record 7 of https://sis.example.org/ims/oneroster/rostering/v1p2/enrollments)"
        );
        assert!(
            problem
                .reason
                .starts_with("another record of the enrollments collection"),
            "{problem:?}"
        );
    }
}
