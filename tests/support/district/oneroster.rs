//! A [`Dataset`] (a Clever-shaped district) as OneRoster 1.1 or 1.2: bulk and delta CSV feeds
//! (`manifest.csv` and one file per collection) and the REST JSON objects that
//! [`crate::oneroster_sim`] serves.
//!
//! The mapping follows the shared contract (`briefs/mapping.md`, last bullets), which the
//! OneRoster reader implements in reverse: district and schools -> `orgs`; terms ->
//! `academicSessions` (type `term`, `schoolYear` the year of `endDate`); courses (at the
//! district); sections -> `classes` (`classCode` = sis_id, `homeroom` for homeroom/advisory,
//! Clever's subject name as is, CEDS grades); users (`identifier` = sis_id, `userIds`
//! `{studentNumber|teacherNumber:..},{stateId:..}`, `username` = email or sis_id or id, schools
//! primary first); district admins -> `administrator` (1.1) / `districtAdministrator` (1.2) at the
//! district; staff -> `aide` (1.1) / `principal` or `counselor` (1.2); contacts -> `guardian`;
//! a teacher who is also staff -> `teacher` (1.1) / both roles (1.2); one enrollment per section
//! student and teacher (the first teacher `primary`).
//!
//! Every sourcedId goes through [`Ids`], so tests can give two districts the same short ids or
//! ids with `/`, `..` and `|`. Derived records have stable ids: an enrollment is
//! `<class>-<user>`, a 1.2 role `<user>-<role>-<org>` (Clever ids, then renamed).
//!
//! # Layout
//! - `oneroster.rs`: the public API ([`OneRosterWrite`], [`Ids`], the `Dataset` methods);
//! - `oneroster/feed.rs`: the conversion from Clever objects to OneRoster records;
//! - `oneroster/entity.rs`: each record as CSV cells and as REST JSON, per version;
//! - `oneroster/files.rs`: the CSV files, bulk and delta.
//!
//! Not written: `demographics.csv`, `userProfiles.csv` and the gradebook and resources files
//! (all `absent` in the manifest), and zip archives (no zip crate in the workspace: tests zip the
//! directory themselves when they need one).

pub(crate) mod entity;
pub(crate) mod feed;
mod files;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::Dataset;
use entity::Entity;
use feed::Feed;

/// A OneRoster version: its CSV headers, user roles and REST paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OneRosterVersion {
    /// OneRoster 1.1: one `role` and `orgSourcedIds` per user; REST at `/ims/oneroster/v1p1`.
    V1_1,
    /// OneRoster 1.2: `roles.csv` (users carry `roles` in REST); REST at
    /// `/ims/oneroster/rostering/v1p2`.
    V1_2,
}

impl OneRosterVersion {
    /// Both versions.
    pub const ALL: [OneRosterVersion; 2] = [OneRosterVersion::V1_1, OneRosterVersion::V1_2];

    /// `1.1` or `1.2`, as `manifest.csv` writes it.
    pub fn number(self) -> &'static str {
        match self {
            OneRosterVersion::V1_1 => "1.1",
            OneRosterVersion::V1_2 => "1.2",
        }
    }

    /// The REST base path: `/ims/oneroster/v1p1` or `/ims/oneroster/rostering/v1p2`.
    pub fn base_path(self) -> &'static str {
        match self {
            OneRosterVersion::V1_1 => "/ims/oneroster/v1p1",
            OneRosterVersion::V1_2 => "/ims/oneroster/rostering/v1p2",
        }
    }

    /// The data files the version's manifest lists (each `file.<name>`), in the manifest's order.
    pub fn manifest_files(self) -> &'static [&'static str] {
        match self {
            OneRosterVersion::V1_1 => &[
                "academicSessions",
                "categories",
                "classes",
                "classResources",
                "courses",
                "courseResources",
                "demographics",
                "enrollments",
                "lineItems",
                "orgs",
                "resources",
                "results",
                "users",
            ],
            OneRosterVersion::V1_2 => &[
                "academicSessions",
                "categories",
                "classes",
                "classResources",
                "courses",
                "courseResources",
                "demographics",
                "enrollments",
                "lineItemLearningObjectiveIds",
                "lineItems",
                "lineItemScoreScales",
                "orgs",
                "resources",
                "resultLearningObjectiveIds",
                "results",
                "resultScoreScales",
                "roles",
                "scoreScales",
                "userProfiles",
                "userResources",
                "users",
            ],
        }
    }
}

/// A OneRoster rostering collection: a CSV file and (but for `roles`) a REST collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OneRosterFile {
    /// `orgs.csv`, `/orgs`: the district and its schools.
    Orgs,
    /// `academicSessions.csv`, `/academicSessions`: the terms.
    AcademicSessions,
    /// `courses.csv`, `/courses`.
    Courses,
    /// `classes.csv`, `/classes`: the sections.
    Classes,
    /// `users.csv`, `/users`.
    Users,
    /// `roles.csv` (1.2 only; REST embeds roles in users).
    Roles,
    /// `enrollments.csv`, `/enrollments`.
    Enrollments,
}

impl OneRosterFile {
    /// Every file, in the order a reader loads them.
    pub const ALL: [OneRosterFile; 7] = [
        OneRosterFile::Orgs,
        OneRosterFile::AcademicSessions,
        OneRosterFile::Courses,
        OneRosterFile::Classes,
        OneRosterFile::Users,
        OneRosterFile::Roles,
        OneRosterFile::Enrollments,
    ];

    /// `orgs`, `academicSessions`, ...: the file's stem, the manifest's `file.<name>` and the REST
    /// collection (and response key).
    pub fn name(self) -> &'static str {
        match self {
            OneRosterFile::Orgs => "orgs",
            OneRosterFile::AcademicSessions => "academicSessions",
            OneRosterFile::Courses => "courses",
            OneRosterFile::Classes => "classes",
            OneRosterFile::Users => "users",
            OneRosterFile::Roles => "roles",
            OneRosterFile::Enrollments => "enrollments",
        }
    }

    /// `orgs.csv`, ...
    pub fn file_name(self) -> String {
        format!("{}.csv", self.name())
    }

    /// Whether the version has this file (`roles.csv` is 1.2 only).
    pub fn in_version(self, version: OneRosterVersion) -> bool {
        self != OneRosterFile::Roles || version == OneRosterVersion::V1_2
    }

    /// The exact header row of the file in that version.
    pub fn headers(self, version: OneRosterVersion) -> &'static [&'static str] {
        entity::headers(self, version)
    }
}

/// A function renaming ids.
type Rename = dyn Fn(&str) -> String + Send + Sync;

/// How every sourcedId is written: as the Clever id (the default), or renamed consistently by a
/// function. Clones share the function (and a [`Ids::sequential`] numbering).
#[derive(Clone, Default)]
pub struct Ids {
    rename: Option<Arc<Rename>>,
}

impl Ids {
    /// Clever ids as they are (24 hex digits); derived ids as `<class>-<user>`.
    pub fn clever() -> Ids {
        Ids::default()
    }

    /// Each id renamed by `f`, which must be injective (two ids, two names).
    pub fn with(f: impl Fn(&str) -> String + Send + Sync + 'static) -> Ids {
        Ids {
            rename: Some(Arc::new(f)),
        }
    }

    /// `<prefix>1`, `<prefix>2`, ... in the order ids are first met (the district, its schools,
    /// terms, courses, classes, users with their 1.2 roles, enrollments). Two districts written
    /// with two fresh `sequential("")` get the same short ids; one district written twice (a
    /// bulk and a delta, or a simulator's updates) with clones of one keeps its ids.
    pub fn sequential(prefix: &str) -> Ids {
        let prefix = prefix.to_string();
        let names: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
        Ids::with(move |id| {
            let mut names = names.lock().unwrap_or_else(PoisonError::into_inner);
            let next = names.len() + 1;
            names
                .entry(id.to_string())
                .or_insert_with(|| format!("{prefix}{next}"))
                .clone()
        })
    }

    /// The sourcedId of the record with Clever id (or derived id) `id`.
    pub fn apply(&self, id: &str) -> String {
        match &self.rename {
            Some(f) => f(id),
            None => id.to_string(),
        }
    }
}

impl fmt::Debug for Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.rename.is_some() {
            "Ids::with(..)"
        } else {
            "Ids::clever()"
        })
    }
}

/// How to write a district as OneRoster.
#[derive(Clone, Debug)]
pub struct OneRosterWrite {
    /// 1.1 or 1.2.
    pub version: OneRosterVersion,
    /// How sourcedIds are written.
    pub ids: Ids,
    /// The `dateLastModified` of delta rows and JSON objects (RFC 3339, UTC); `None` for the
    /// current time.
    pub date_last_modified: Option<String>,
}

impl OneRosterWrite {
    /// Clever ids, the current time.
    pub fn new(version: OneRosterVersion) -> OneRosterWrite {
        OneRosterWrite {
            version,
            ids: Ids::clever(),
            date_last_modified: None,
        }
    }

    /// The same with other ids.
    pub fn with_ids(mut self, ids: Ids) -> OneRosterWrite {
        self.ids = ids;
        self
    }

    /// The same with a fixed `dateLastModified`.
    pub fn at(mut self, date_last_modified: &str) -> OneRosterWrite {
        self.date_last_modified = Some(date_last_modified.to_string());
        self
    }

    fn timestamp(&self) -> String {
        self.date_last_modified
            .clone()
            .unwrap_or_else(super::json::now_timestamp)
    }
}

impl Dataset {
    /// Writes the district as a OneRoster bulk feed in `dir` (created if needed): `manifest.csv`
    /// (every file of the version listed, the written ones `bulk`, the others `absent`) and
    /// `orgs.csv`, `academicSessions.csv`, `courses.csv`, `classes.csv`, `users.csv`,
    /// `enrollments.csv` (and `roles.csv` for 1.2), each with the spec's header row even when
    /// empty, `status` and `dateLastModified` blank, RFC 4180 quoting and CRLF line ends. Other
    /// files in `dir` are left as they are.
    pub fn write_oneroster(&self, dir: &Path, options: &OneRosterWrite) -> io::Result<()> {
        let feed = Feed::from_dataset(self, &options.ids);
        files::write_bulk(&feed, dir, options.version)
    }

    /// Writes a OneRoster delta feed from `before` to `after` in `dir`: every record new or
    /// changed in `after` (its row in that version differs) with `status` `active`, every record
    /// of `before` missing from `after` (enrollments and roles included) with `status`
    /// `tobedeleted` and its last values, all with `options`' `dateLastModified`. The manifest
    /// marks a file `delta` when it has rows and `absent` (and it is not written) when nothing in
    /// it changed.
    pub fn write_oneroster_delta(
        before: &Dataset,
        after: &Dataset,
        dir: &Path,
        options: &OneRosterWrite,
    ) -> io::Result<()> {
        let old = Feed::from_dataset(before, &options.ids);
        let new = Feed::from_dataset(after, &options.ids);
        files::write_delta(&old, &new, dir, options.version, &options.timestamp())
    }

    /// The district's records of one collection as OneRoster REST JSON objects (`status`
    /// `active`), with GUID references (`{"href","sourcedId","type"}`) whose `href`s start with
    /// `base_url` (`http://host:port`, or "" for bare paths). [`OneRosterFile::Roles`] gives
    /// nothing: REST users carry their roles.
    pub fn oneroster_json(
        &self,
        file: OneRosterFile,
        options: &OneRosterWrite,
        base_url: &str,
    ) -> Vec<Value> {
        let feed = Feed::from_dataset(self, &options.ids);
        let when = options.timestamp();
        let refs = entity::Refs::new(base_url, options.version);
        let json = |e: &dyn Entity| e.json(&refs, "active", &when);
        match file {
            OneRosterFile::Orgs => feed.orgs.iter().map(|e| json(e)).collect(),
            OneRosterFile::AcademicSessions => feed.sessions.iter().map(|e| json(e)).collect(),
            OneRosterFile::Courses => feed.courses.iter().map(|e| json(e)).collect(),
            OneRosterFile::Classes => feed.classes.iter().map(|e| json(e)).collect(),
            OneRosterFile::Users => feed.users.iter().map(|e| json(e)).collect(),
            OneRosterFile::Enrollments => feed.enrollments.iter().map(|e| json(e)).collect(),
            OneRosterFile::Roles => Vec::new(),
        }
    }
}

/// Maps a Clever grade name to its CEDS code (`Kindergarten` -> `KG`, `3` -> `03`); blank stays
/// blank; anything unknown is `Other`.
pub fn ceds_grade(clever: &str) -> &'static str {
    const NUMBERED: [&str; 13] = [
        "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13",
    ];
    match clever {
        "" => "",
        "InfantToddler" => "IT",
        "Preschool" => "PR",
        "PreKindergarten" => "PK",
        "TransitionalKindergarten" => "TK",
        "Kindergarten" => "KG",
        "PostGraduate" => "PS",
        "Ungraded" => "UG",
        other => match other.parse::<usize>() {
            Ok(n @ 1..=13) => NUMBERED[n - 1],
            _ => "Other",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::district::{Collection, GenSpec, Role, generate};
    use std::collections::{HashMap, HashSet};
    use std::fs;

    /// A CSV file read back with the csv crate: its header and its rows by column name.
    fn read(dir: &Path, name: &str) -> (Vec<String>, Vec<HashMap<String, String>>) {
        let mut reader =
            ::csv::Reader::from_path(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
        let header: Vec<String> = reader
            .headers()
            .expect("header row")
            .iter()
            .map(str::to_string)
            .collect();
        let rows = reader
            .records()
            .map(|r| {
                let r = r.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(r.len(), header.len(), "{name}: row width");
                header
                    .iter()
                    .cloned()
                    .zip(r.iter().map(str::to_string))
                    .collect()
            })
            .collect();
        (header, rows)
    }

    fn manifest(dir: &Path) -> HashMap<String, String> {
        let (header, rows) = read(dir, "manifest.csv");
        assert_eq!(header, ["propertyName", "value"]);
        rows.into_iter()
            .map(|r| (r["propertyName"].clone(), r["value"].clone()))
            .collect()
    }

    /// How many 1.2 role rows a Clever user gives: one per school of a student, teacher or
    /// staff role, one at the district for an admin or contact role.
    fn role_rows(user: &Value) -> usize {
        let roles = user["roles"].as_object().expect("roles");
        roles
            .iter()
            .map(|(name, r)| match name.as_str() {
                "student" | "teacher" | "staff" => {
                    let mut schools: Vec<&str> = r["schools"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    schools.extend(r["school"].as_str());
                    schools.sort_unstable();
                    schools.dedup();
                    schools.len().max(1)
                }
                _ => 1,
            })
            .sum()
    }

    #[test]
    fn bulk_feeds_have_every_record_and_parse_back() {
        let d = generate(GenSpec::new(200));
        let sections = d.all(Collection::Sections);
        let members: usize = sections
            .iter()
            .map(|s| {
                s["students"].as_array().map_or(0, Vec::len)
                    + s["teachers"].as_array().map_or(0, Vec::len)
            })
            .sum();
        let users = d.all(Collection::Users);
        let expected = [
            ("orgs", 1 + d.len(Collection::Schools)),
            ("academicSessions", d.len(Collection::Terms)),
            ("courses", d.len(Collection::Courses)),
            ("classes", d.len(Collection::Sections)),
            ("users", d.len(Collection::Users)),
            ("enrollments", members),
            ("roles", users.iter().map(role_rows).sum()),
        ];
        let coach = d
            .all(Collection::Users)
            .into_iter()
            .find(|u| u["roles"].get("teacher").is_some() && u["roles"].get("staff").is_some())
            .expect("a teacher who is also staff");
        let coach = coach["id"].as_str().expect("id");
        let student = d
            .get(Collection::Users, &d.ids_with_role(Role::Student)[0])
            .expect("student");

        for version in OneRosterVersion::ALL {
            let tmp = tempfile::tempdir().expect("temp dir");
            let dir = tmp.path();
            d.write_oneroster(dir, &OneRosterWrite::new(version))
                .expect("write");
            let m = manifest(dir);
            assert_eq!(m["manifest.version"], "1.0");
            assert_eq!(m["oneroster.version"], version.number());
            assert_eq!(m["file.demographics"], "absent");
            assert_eq!(m.len(), 2 + version.manifest_files().len());
            for (name, count) in expected {
                let file = OneRosterFile::ALL
                    .into_iter()
                    .find(|f| f.name() == name)
                    .expect("file");
                if !file.in_version(version) {
                    assert!(
                        !dir.join(file.file_name()).exists(),
                        "{name} in {version:?}"
                    );
                    assert_eq!(m.get(&format!("file.{name}")), None);
                    continue;
                }
                assert_eq!(m[&format!("file.{name}")], "bulk", "{name}");
                let (header, rows) = read(dir, &file.file_name());
                assert_eq!(header, file.headers(version), "{name} header");
                assert_eq!(rows.len(), count, "{name} rows in {version:?}");
                for r in &rows {
                    assert_eq!(
                        (r["status"].as_str(), r["dateLastModified"].as_str()),
                        ("", "")
                    );
                    assert!(!r["sourcedId"].is_empty());
                }
                let ids: HashSet<&str> = rows.iter().map(|r| r["sourcedId"].as_str()).collect();
                assert_eq!(ids.len(), rows.len(), "{name}: unique sourcedIds");
            }

            let (_, users_csv) = read(dir, "users.csv");
            let row = |id: &str| {
                users_csv
                    .iter()
                    .find(|r| r["sourcedId"] == id)
                    .expect("user row")
            };
            let s = row(student["id"].as_str().expect("id"));
            let sis = student["roles"]["student"]["sis_id"]
                .as_str()
                .expect("sis_id");
            assert_eq!(s["identifier"], sis);
            assert_eq!(
                s["userIds"],
                format!(
                    "{{studentNumber:{}}},{{stateId:{}}}",
                    student["roles"]["student"]["student_number"]
                        .as_str()
                        .expect("number"),
                    student["roles"]["student"]["state_id"]
                        .as_str()
                        .expect("state id"),
                )
            );
            assert_eq!(s["enabledUser"], "true");
            let school = student["roles"]["student"]["school"]
                .as_str()
                .expect("school");
            match version {
                OneRosterVersion::V1_1 => {
                    assert_eq!(s["role"], "student");
                    assert_eq!(s["orgSourcedIds"], school);
                    assert_eq!(row(coach)["role"], "teacher");
                }
                OneRosterVersion::V1_2 => {
                    assert_eq!(s["primaryOrgSourcedId"], school);
                    let (_, roles) = read(dir, "roles.csv");
                    let coach_roles: Vec<(&str, &str)> = roles
                        .iter()
                        .filter(|r| r["userSourcedId"] == coach)
                        .map(|r| (r["roleType"].as_str(), r["role"].as_str()))
                        .collect();
                    assert_eq!(
                        coach_roles,
                        [("primary", "teacher"), ("secondary", "counselor")]
                    );
                    assert!(roles.iter().any(|r| r["role"] == "principal"));
                    assert!(roles.iter().any(|r| r["role"] == "districtAdministrator"));
                    assert!(roles.iter().any(|r| r["role"] == "guardian"));
                }
            }
            let raw = fs::read_to_string(dir.join("users.csv")).expect("users.csv");
            assert!(
                raw.contains("\r\n") && raw.contains("\"{studentNumber:"),
                "CRLF, quoted lists"
            );

            let (_, classes) = read(dir, "classes.csv");
            assert!(
                classes
                    .iter()
                    .any(|c| c["classType"] == "homeroom" && c["subjects"] == "homeroom/advisory")
            );
            assert!(
                classes
                    .iter()
                    .all(|c| !c["termSourcedIds"].is_empty() && !c["courseSourcedId"].is_empty())
            );
            let (_, enrollments) = read(dir, "enrollments.csv");
            let section = &sections[0];
            let teachers = section["teachers"].as_array().expect("teachers");
            let first = teachers[0].as_str().expect("teacher");
            let primary = enrollments
                .iter()
                .find(|e| {
                    e["classSourcedId"] == section["id"].as_str().expect("id")
                        && e["userSourcedId"] == first
                })
                .expect("primary teacher enrollment");
            assert_eq!(
                (primary["role"].as_str(), primary["primary"].as_str()),
                ("teacher", "true")
            );
        }
    }

    #[test]
    fn a_delta_to_itself_is_empty() {
        let d = generate(GenSpec::new(200));
        for version in OneRosterVersion::ALL {
            let tmp = tempfile::tempdir().expect("temp dir");
            Dataset::write_oneroster_delta(&d, &d, tmp.path(), &OneRosterWrite::new(version))
                .expect("write");
            let m = manifest(tmp.path());
            for name in version.manifest_files() {
                assert_eq!(m[&format!("file.{name}")], "absent", "{name}");
            }
            let files: Vec<_> = fs::read_dir(tmp.path()).expect("dir").collect();
            assert_eq!(files.len(), 1, "only the manifest");
        }
    }

    #[test]
    fn a_removed_student_is_tobedeleted_with_its_enrollments() {
        let before = generate(GenSpec::new(200));
        let mut after = before.clone();
        let student = before.ids_with_role(Role::Student)[0].clone();
        let sections = after.sections_of(&student);
        assert!(!sections.is_empty());
        assert!(after.remove_user(&student));
        let when = "2026-02-01T12:00:00.000Z";
        for version in OneRosterVersion::ALL {
            let tmp = tempfile::tempdir().expect("temp dir");
            let dir = tmp.path();
            let options = OneRosterWrite::new(version).at(when);
            Dataset::write_oneroster_delta(&before, &after, dir, &options).expect("write");
            let m = manifest(dir);
            assert_eq!(m["file.users"], "delta");
            assert_eq!(m["file.enrollments"], "delta");
            for unchanged in ["orgs", "academicSessions", "courses", "classes"] {
                assert_eq!(m[&format!("file.{unchanged}")], "absent", "{unchanged}");
                assert!(!dir.join(format!("{unchanged}.csv")).exists());
            }

            let (_, users) = read(dir, "users.csv");
            let deleted: Vec<&str> = users
                .iter()
                .filter(|u| u["status"] == "tobedeleted")
                .map(|u| u["sourcedId"].as_str())
                .collect();
            assert_eq!(deleted, [student.as_str()]);
            for u in &users {
                assert_eq!(u["dateLastModified"], when);
                if u["status"] == "active" {
                    // Only the student's contacts changed: they lost an agent.
                    let clever = before
                        .get(Collection::Users, &u["sourcedId"])
                        .expect("user");
                    assert!(clever["roles"].get("contact").is_some(), "{u:?}");
                    assert!(!u["agentSourcedIds"].contains(student.as_str()));
                }
            }

            let (_, enrollments) = read(dir, "enrollments.csv");
            let mut gone: Vec<&str> = enrollments
                .iter()
                .inspect(|e| assert_eq!(e["status"], "tobedeleted", "{e:?}"))
                .map(|e| e["sourcedId"].as_str())
                .collect();
            gone.sort_unstable();
            let mut expected: Vec<String> =
                sections.iter().map(|s| format!("{s}-{student}")).collect();
            expected.sort_unstable();
            assert_eq!(gone, expected);
            assert!(
                enrollments
                    .iter()
                    .all(|e| e["userSourcedId"] == student && e["role"] == "student")
            );

            if version == OneRosterVersion::V1_2 {
                let (_, roles) = read(dir, "roles.csv");
                assert!(
                    roles
                        .iter()
                        .any(|r| r["userSourcedId"] == student && r["status"] == "tobedeleted")
                );
            }
        }
    }

    #[test]
    fn renamed_ids_are_consistent_and_references_resolve() {
        let a = generate(GenSpec::new(200).with_seed(1));
        let b = generate(GenSpec::new(200).with_seed(2));
        let first_org = |d: &Dataset, ids: Ids| {
            let tmp = tempfile::tempdir().expect("temp dir");
            d.write_oneroster(
                tmp.path(),
                &OneRosterWrite::new(OneRosterVersion::V1_1).with_ids(ids),
            )
            .expect("write");
            let (_, orgs) = read(tmp.path(), "orgs.csv");
            orgs[0]["sourcedId"].clone()
        };
        assert_eq!(first_org(&a, Ids::sequential("")), "1");
        assert_eq!(
            first_org(&b, Ids::sequential("")),
            "1",
            "two districts, the same short ids"
        );

        let odd = Ids::with(|id| format!("a/../{id}|x"));
        for version in OneRosterVersion::ALL {
            let tmp = tempfile::tempdir().expect("temp dir");
            let dir = tmp.path();
            a.write_oneroster(dir, &OneRosterWrite::new(version).with_ids(odd.clone()))
                .expect("write");
            let ids = |file: &str| -> HashSet<String> {
                read(dir, file)
                    .1
                    .into_iter()
                    .map(|r| r["sourcedId"].clone())
                    .collect()
            };
            let (orgs, users, classes) = (ids("orgs.csv"), ids("users.csv"), ids("classes.csv"));
            assert!(
                users
                    .iter()
                    .all(|u| u.starts_with("a/../") && u.ends_with("|x"))
            );
            for e in read(dir, "enrollments.csv").1 {
                assert!(users.contains(&e["userSourcedId"]), "{e:?}");
                assert!(classes.contains(&e["classSourcedId"]), "{e:?}");
                assert!(orgs.contains(&e["schoolSourcedId"]), "{e:?}");
                assert!(e["sourcedId"].starts_with("a/../"));
            }
            for c in read(dir, "classes.csv").1 {
                assert!(orgs.contains(&c["schoolSourcedId"]));
            }
            // No Clever id is left bare.
            for file in fs::read_dir(dir).expect("dir") {
                let text = fs::read_to_string(file.expect("entry").path()).expect("text");
                for cell in text.split([',', '\r', '\n', '"', '{', '}', ':']) {
                    if super::super::json::parse_hex_id(cell).is_some() {
                        panic!("bare Clever id {cell}");
                    }
                }
            }
        }
    }

    #[test]
    fn json_objects_use_each_versions_shapes() {
        let d = generate(GenSpec::new(50));
        let ids = Ids::with(|id| format!("x/{id}"));
        let v11 = OneRosterWrite::new(OneRosterVersion::V1_1)
            .with_ids(ids.clone())
            .at("2026-01-01T00:00:00.000Z");
        let v12 = OneRosterWrite {
            version: OneRosterVersion::V1_2,
            ..v11.clone()
        };
        let student = d.ids_with_role(Role::Student)[0].clone();
        let find = |users: Vec<Value>| {
            users
                .into_iter()
                .find(|u| u["sourcedId"] == format!("x/{student}"))
                .expect("student")
        };
        let u = find(d.oneroster_json(OneRosterFile::Users, &v11, "http://h"));
        assert_eq!(u["role"], "student");
        assert_eq!(u["enabledUser"], "true");
        assert_eq!(u["status"], "active");
        assert_eq!(u["dateLastModified"], "2026-01-01T00:00:00.000Z");
        assert_eq!(u["orgs"][0]["type"], "org");
        let href = u["orgs"][0]["href"].as_str().expect("href");
        assert!(
            href.starts_with("http://h/ims/oneroster/v1p1/orgs/x%2F"),
            "{href}"
        );
        assert!(u.get("roles").is_none());
        assert_eq!(u["userIds"][0]["type"], "studentNumber");

        let u = find(d.oneroster_json(OneRosterFile::Users, &v12, "http://h"));
        assert!(u.get("role").is_none() && u.get("orgs").is_none());
        assert_eq!(u["roles"][0]["roleType"], "primary");
        assert_eq!(u["roles"][0]["role"], "student");
        assert_eq!(
            u["primaryOrg"]["sourcedId"],
            u["roles"][0]["org"]["sourcedId"]
        );
        assert!(
            u["primaryOrg"]["href"]
                .as_str()
                .is_some_and(|h| h.starts_with("http://h/ims/oneroster/rostering/v1p2/orgs/"))
        );

        let e = &d.oneroster_json(OneRosterFile::Enrollments, &v12, "")[0];
        assert!(e["primary"] == "true" || e["primary"] == "false");
        assert_eq!(e["class"]["type"], "class");
        let c = &d.oneroster_json(OneRosterFile::Classes, &v12, "")[0];
        assert_eq!(c["terms"][0]["type"], "academicSession");
        assert!(c["grades"][0].is_string());
        assert!(d.oneroster_json(OneRosterFile::Roles, &v12, "").is_empty());
        let sessions = d.oneroster_json(OneRosterFile::AcademicSessions, &v11, "");
        for s in &sessions {
            assert_eq!(s["type"], "term");
            assert_eq!(
                s["schoolYear"].as_str(),
                s["endDate"].as_str().and_then(|e| e.get(..4))
            );
        }
    }

    #[test]
    fn grades_map_to_ceds() {
        let cases = [
            ("Kindergarten", "KG"),
            ("3", "03"),
            ("12", "12"),
            ("PreKindergarten", "PK"),
            ("", ""),
            ("Grade 5", "Other"),
        ];
        for (clever, ceds) in cases {
            assert_eq!(ceds_grade(clever), ceds, "{clever}");
        }
    }
}
