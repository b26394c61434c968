//! `manifest.csv` (`propertyName,value`): the feed's OneRoster version and, for each file,
//! whether it is `bulk` (the whole collection), `delta` (changes) or `absent`.

use serde::{Deserialize, Serialize};

use super::table::Sheet;
use crate::ExtractError;

/// The name of the manifest in a feed.
pub(crate) const MANIFEST: &str = "manifest.csv";

/// The OneRoster versions rosterflow reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Version {
    #[serde(rename = "1.1")]
    V1_1,
    #[serde(rename = "1.2")]
    V1_2,
}

impl Version {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// `1.1` or `1.2`, with or without a patch number (`1.1.1`, the CSV binding's own version).
    fn parse(text: &str) -> Option<Version> {
        let mut parts = text.trim().split('.');
        let version = match (parts.next(), parts.next()) {
            (Some("1"), Some("1")) => Version::V1_1,
            (Some("1"), Some("2")) => Version::V1_2,
            _ => return None,
        };
        let patch_ok = parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        patch_ok.then_some(version)
    }
}

/// The files rosterflow reads, in the order it reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum CsvFile {
    Orgs,
    AcademicSessions,
    Courses,
    Classes,
    Users,
    Roles,
    Enrollments,
}

impl CsvFile {
    pub(crate) const ALL: [CsvFile; 7] = [
        CsvFile::Orgs,
        CsvFile::AcademicSessions,
        CsvFile::Courses,
        CsvFile::Classes,
        CsvFile::Users,
        CsvFile::Roles,
        CsvFile::Enrollments,
    ];

    /// The name in the manifest's `file.<name>`.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            CsvFile::Orgs => "orgs",
            CsvFile::AcademicSessions => "academicSessions",
            CsvFile::Courses => "courses",
            CsvFile::Classes => "classes",
            CsvFile::Users => "users",
            CsvFile::Roles => "roles",
            CsvFile::Enrollments => "enrollments",
        }
    }

    /// The file's name in the feed.
    pub(crate) const fn file_name(self) -> &'static str {
        match self {
            CsvFile::Orgs => "orgs.csv",
            CsvFile::AcademicSessions => "academicSessions.csv",
            CsvFile::Courses => "courses.csv",
            CsvFile::Classes => "classes.csv",
            CsvFile::Users => "users.csv",
            CsvFile::Roles => "roles.csv",
            CsvFile::Enrollments => "enrollments.csv",
        }
    }

    /// What one record is called in quarantine.
    pub(crate) const fn record_kind(self) -> &'static str {
        match self {
            CsvFile::Orgs => "org",
            CsvFile::AcademicSessions => "academicSession",
            CsvFile::Courses => "course",
            CsvFile::Classes => "class",
            CsvFile::Users => "user",
            CsvFile::Roles => "role",
            CsvFile::Enrollments => "enrollment",
        }
    }

    /// Whether a feed of `version` has this file: `roles.csv` came with 1.2 (1.1 users carry
    /// their role).
    pub(crate) fn in_version(self, version: Version) -> bool {
        self != CsvFile::Roles || version == Version::V1_2
    }

    /// The columns a file must have (besides `status` and `dateLastModified`, which delta files
    /// must have). `classes.csv` `courseSourcedId` is tolerated missing, as feeds differ.
    pub(crate) fn required_columns(self, version: Version) -> &'static [&'static str] {
        match (self, version) {
            (CsvFile::Orgs, _) => &["sourcedId", "name", "type"],
            (CsvFile::AcademicSessions, _) => &[
                "sourcedId",
                "title",
                "type",
                "startDate",
                "endDate",
                "schoolYear",
            ],
            (CsvFile::Courses, _) => &["sourcedId", "title", "orgSourcedId"],
            (CsvFile::Classes, _) => &[
                "sourcedId",
                "title",
                "classType",
                "schoolSourcedId",
                "termSourcedIds",
            ],
            (CsvFile::Users, Version::V1_1) => &[
                "sourcedId",
                "enabledUser",
                "orgSourcedIds",
                "role",
                "username",
                "givenName",
                "familyName",
            ],
            (CsvFile::Users, Version::V1_2) => &[
                "sourcedId",
                "enabledUser",
                "username",
                "givenName",
                "familyName",
            ],
            (CsvFile::Roles, _) => &[
                "sourcedId",
                "userSourcedId",
                "roleType",
                "role",
                "orgSourcedId",
            ],
            (CsvFile::Enrollments, _) => &[
                "sourcedId",
                "classSourcedId",
                "schoolSourcedId",
                "userSourcedId",
                "role",
            ],
        }
    }
}

/// How a file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The whole collection: it replaces what was loaded before.
    Bulk,
    /// Changes: `active` records are added or replaced, `tobedeleted` ones removed.
    Delta,
}

impl Mode {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Mode::Bulk => "bulk",
            Mode::Delta => "delta",
        }
    }
}

/// What a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub version: Version,
    /// The files rosterflow reads that the feed sends, in [`CsvFile::ALL`] order.
    pub files: Vec<(CsvFile, Mode)>,
}

impl Manifest {
    /// Whether any file is a delta.
    pub(crate) fn has_delta(&self) -> bool {
        self.files.iter().any(|(_, mode)| *mode == Mode::Delta)
    }
}

/// Reads `manifest.csv` of the feed at `location` (named in errors).
pub(crate) fn parse(bytes: &[u8], location: &str) -> Result<Manifest, ExtractError> {
    let problem = |reason: String| ExtractError::Manifest {
        location: location.to_owned(),
        reason,
    };
    let sheet = Sheet::open(MANIFEST, bytes, &["propertyName", "value"], "1.1 and 1.2")?;
    let mut properties: Vec<(String, String, String)> = Vec::new();
    for row in sheet.rows() {
        let row = row.map_err(|p| problem(format!("{}: {}", p.origin, p.reason)))?;
        let Some(name) = row.text("propertyName") else {
            continue;
        };
        let name = name.trim().to_owned();
        let value = row.text("value").unwrap_or_default().trim().to_owned();
        if let Some((_, earlier, _)) = properties
            .iter()
            .find(|(n, v, _)| *n == name && *v != value)
        {
            return Err(problem(format!(
                "{name} is given twice ({earlier:?} and {value:?}): keep one"
            )));
        }
        properties.push((name, value, row.origin()));
    }
    let property = |name: &str| {
        properties
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    };
    let version = match property("oneroster.version") {
        None => {
            return Err(problem(
                "has no oneroster.version: add the row oneroster.version,1.1 (or 1.2)".to_owned(),
            ));
        }
        Some(text) => Version::parse(text).ok_or_else(|| {
            problem(format!(
                "oneroster.version {text:?} is not supported: rosterflow reads OneRoster 1.1 and 1.2"
            ))
        })?,
    };
    let mut files = Vec::new();
    for file in CsvFile::ALL {
        if !file.in_version(version) {
            continue;
        }
        let key = format!("file.{}", file.name());
        let mode = match property(&key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("absent" | "") => continue,
            Some("bulk") => Mode::Bulk,
            Some("delta") => Mode::Delta,
            Some(_) => {
                return Err(problem(format!(
                    "{key} is {:?}: use bulk, delta or absent",
                    property(&key).unwrap_or_default()
                )));
            }
        };
        files.push((file, mode));
    }
    // A feed that sends nothing rosterflow reads is a mistake, not an empty district.
    if files.is_empty() {
        return Err(problem(
            "marks every roster file absent: mark orgs, users, classes... bulk or delta".to_owned(),
        ));
    }
    Ok(Manifest { version, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Manifest, ExtractError> {
        parse(text.as_bytes(), "feed")
    }

    #[test]
    fn the_version_and_each_file_mode_are_read() {
        let manifest = parse_text(
            "propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\n\
             file.orgs,bulk\nfile.users,DELTA\nfile.roles,delta\nfile.courses,absent\n\
             file.demographics,bulk\n",
        )
        .expect("manifest");
        assert_eq!(manifest.version, Version::V1_2);
        assert_eq!(
            manifest.files,
            [
                (CsvFile::Orgs, Mode::Bulk),
                (CsvFile::Users, Mode::Delta),
                (CsvFile::Roles, Mode::Delta)
            ]
        );
        assert!(manifest.has_delta());
    }

    #[test]
    fn a_1_1_manifest_has_no_roles_file() {
        let manifest = parse_text(
            "propertyName,value\noneroster.version,1.1\nfile.users,bulk\nfile.roles,bulk\n",
        )
        .expect("manifest");
        assert_eq!(manifest.version, Version::V1_1);
        assert_eq!(manifest.files, [(CsvFile::Users, Mode::Bulk)]);
    }

    #[test]
    fn versions_other_than_1_1_and_1_2_are_refused_clearly() {
        for version in ["1.0", "2.0", "1.3", "one", "1.1.x", ""] {
            let error = parse_text(&format!(
                "propertyName,value\noneroster.version,{version}\nfile.users,bulk\n"
            ))
            .expect_err(version);
            assert!(error.to_string().contains("oneroster.version"), "{error}");
        }
        assert!(
            parse_text("propertyName,value\noneroster.version,1.1.1\nfile.users,bulk\n").is_ok()
        );
        let error = parse_text("propertyName,value\nfile.users,bulk\n").expect_err("no version");
        assert!(
            error.to_string().contains("has no oneroster.version"),
            "{error}"
        );
    }

    #[test]
    fn a_wrong_mode_or_header_or_nothing_to_read_is_refused() {
        let error = parse_text("propertyName,value\noneroster.version,1.1\nfile.users,full\n")
            .expect_err("bad mode");
        assert!(
            error.to_string().contains("file.users is \"full\""),
            "{error}"
        );
        let error = parse_text("name,value\noneroster.version,1.1\n").expect_err("bad header");
        assert!(error.to_string().contains("propertyName"), "{error}");
        let error = parse_text("propertyName,value\noneroster.version,1.1\nfile.users,absent\n")
            .expect_err("nothing");
        assert!(error.to_string().contains("absent"), "{error}");
    }
}
