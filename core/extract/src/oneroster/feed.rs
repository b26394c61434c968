//! The raw roster: the OneRoster records rosterflow uses, by file and `sourcedId`, as the feed
//! sent them (read and checked, not yet mapped to the model), with the records that could not
//! be read. It is kept, packed, with the run that loaded it, so that the next delta applies to
//! it, as an events sync applies Clever's events to its checkpoint.
//!
//! - A bulk file replaces its collection; a delta file adds or replaces its `active` records
//!   and removes its `tobedeleted` ones (`status` and `dateLastModified` required). A feed
//!   with no delta file starts from nothing (a file it marks absent is empty); a feed with one
//!   applies to the roster of the previous load, and its absent files change nothing.
//! - A record that cannot be read (a required cell blank, a word outside its vocabulary, an
//!   id that is not usable) is a [`Problem`] of its file and line, and is quarantined; when
//!   it has an id, the record it would replace is gone and the id is *unreadable*: its Freckle
//!   row stays as it is until a readable version arrives.
//! - A `sourcedId` twice in one file: the first record is used, the later ones quarantined.
//! - Records keep the feed's order (a delta's new records go last): enrollments' order decides
//!   which teacher comes first after the primary ones.
//! - The REST source (`super::rest`) builds the same roster: its records are read through
//!   [`Cells`] by the same rules, flattened to the CSV binding's columns, and its roster
//!   remembers the service ([`Binding::Rest`]) so that a record's origin is its URL.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::files::Feed;
use super::manifest::{CsvFile, Mode, Version};
use super::rest;
use super::table::{Row, Sheet};
use super::vocab::{
    ClassType, EnrollmentRole, OrgType, Role, RoleType, SessionType, Status, parse_bool, parse_word,
};
use crate::ExtractError;
use rosterflow_model::{Id, packed};

/// A record that could not be used, with where it was and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Problem {
    /// Its `sourcedId`, when that was usable.
    pub id: Option<Id>,
    /// `users.csv:17`.
    pub origin: String,
    pub reason: String,
    pub fix: Option<String>,
    /// The record as JSON (column to cell).
    pub record: String,
    /// The record with this id could not be read, so what was loaded of it stays as it is
    /// (rather than a record that is merely a duplicate).
    pub unreadable: bool,
}

impl Problem {
    /// A line that could not be read as a record at all.
    pub(super) fn unreadable_line(origin: String, reason: String) -> Problem {
        Problem {
            id: None,
            origin,
            reason,
            fix: Some(FIX_RECORD.to_owned()),
            record: String::new(),
            unreadable: false,
        }
    }
}

/// The records of one file, in feed order, and its problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Records<R> {
    pub rows: Vec<R>,
    pub problems: Vec<Problem>,
}

impl<R> Default for Records<R> {
    fn default() -> Self {
        Records {
            rows: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// Where a roster's records were sent from, which says where each was (its origin).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) enum Binding {
    /// CSV files: a record's origin is its file and line.
    #[default]
    Csv,
    /// A REST service at this API root: a record's origin is its URL.
    Rest { base_url: String },
}

/// Every file's records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Roster {
    pub version: Version,
    /// When the feed that last changed this roster was read (for the REST source: when the
    /// pull started, which the next delta pull asks for changes since).
    pub read_at: DateTime<Utc>,
    /// Rosters saved before the REST source are CSV ones.
    #[serde(default)]
    pub binding: Binding,
    pub orgs: Records<Org>,
    pub sessions: Records<Session>,
    pub courses: Records<CourseRecord>,
    pub classes: Records<Class>,
    pub users: Records<User>,
    pub roles: Records<RoleRecord>,
    pub enrollments: Records<Enrollment>,
}

/// `orgs.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Org {
    pub id: Id,
    pub line: u64,
    pub name: String,
    pub kind: OrgType,
    pub identifier: Option<String>,
    pub parent: Option<Id>,
}

/// `academicSessions.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub id: Id,
    pub line: u64,
    pub title: String,
    pub start: String,
    pub end: String,
}

/// `courses.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CourseRecord {
    pub id: Id,
    pub line: u64,
    pub title: String,
    pub code: Option<String>,
    pub org: Id,
}

/// `classes.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Class {
    pub id: Id,
    pub line: u64,
    pub title: String,
    pub code: Option<String>,
    pub course: Option<Id>,
    pub school: Id,
    pub terms: Vec<Id>,
    pub subjects: Vec<String>,
    pub subject_codes: Vec<String>,
    pub grades: Vec<String>,
    pub periods: Vec<String>,
}

/// `users.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct User {
    pub id: Id,
    pub line: u64,
    pub enabled: bool,
    pub given_name: String,
    pub middle_name: Option<String>,
    pub family_name: String,
    pub identifier: Option<String>,
    pub email: Option<String>,
    /// `userIds`: (type, id) pairs.
    pub user_ids: Vec<(String, String)>,
    pub grades: Vec<String>,
    /// 1.1: the user's one role.
    pub role: Option<Role>,
    /// 1.1: the user's orgs.
    pub orgs: Vec<Id>,
    /// 1.2: `primaryOrgSourcedId`.
    pub primary_org: Option<Id>,
}

/// `roles.csv` (1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RoleRecord {
    pub id: Id,
    pub line: u64,
    pub user: Id,
    pub role_type: RoleType,
    pub role: Role,
    pub org: Id,
}

/// `enrollments.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Enrollment {
    pub id: Id,
    pub line: u64,
    pub class: Id,
    pub user: Id,
    pub role: EnrollmentRole,
    pub primary: bool,
}

/// One record's cells by the CSV binding's column names: a row of a CSV file, or a REST
/// record flattened to the same columns. Records are read through it, so that both bindings
/// are held to the same rules.
pub(crate) trait Cells {
    /// The cell of `column` as sent; `None` when it is absent or blank.
    fn raw(&self, column: &str) -> Option<&str>;
    /// The text of `column`, without NULs.
    fn text(&self, column: &str) -> Option<String>;
    /// The text of a required `column`.
    fn required(&self, column: &str) -> Result<String, String>;
    /// The id in a required `column`.
    fn id(&self, column: &str) -> Result<Id, String>;
    /// The id in an optional `column`; one that is there must be usable.
    fn optional_id(&self, column: &str) -> Result<Option<Id>, String>;
    /// The values of a multi-value `column`, blanks dropped.
    fn list(&self, column: &str) -> Vec<String>;
    /// The usable ids of a multi-value `column`.
    fn ids(&self, column: &str) -> Vec<Id>;
    /// `userIds`: (type, id) pairs.
    fn user_ids(&self) -> Vec<(String, String)>;
    /// Why a required `column` cannot be read: it is blank.
    fn blank(&self, column: &str) -> String {
        format!("required cell {column} is blank")
    }
    /// The record's place in its file, counted from 1 (a CSV line).
    fn line(&self) -> u64;
    /// Where the record was: `users.csv:17`, or a URL.
    fn origin(&self) -> String;
    /// Where the record of `file` at `line` (an earlier one) was.
    fn origin_at(&self, file: CsvFile, line: u64) -> String {
        format!("{}:{line}", file.file_name())
    }
    /// The file's name in messages: `users.csv`.
    fn place(&self, file: CsvFile) -> String {
        file.file_name().to_owned()
    }
    /// The record as JSON, for quarantine (never a password).
    fn json(&self) -> String;
}

impl Cells for Row {
    fn raw(&self, column: &str) -> Option<&str> {
        Row::raw(self, column)
    }
    fn text(&self, column: &str) -> Option<String> {
        Row::text(self, column)
    }
    fn required(&self, column: &str) -> Result<String, String> {
        Row::required(self, column)
    }
    fn id(&self, column: &str) -> Result<Id, String> {
        Row::id(self, column)
    }
    fn optional_id(&self, column: &str) -> Result<Option<Id>, String> {
        Row::optional_id(self, column)
    }
    fn list(&self, column: &str) -> Vec<String> {
        Row::list(self, column)
    }
    fn ids(&self, column: &str) -> Vec<Id> {
        Row::ids(self, column)
    }
    fn user_ids(&self) -> Vec<(String, String)> {
        Row::text(self, "userIds")
            .map(|t| user_ids(&t))
            .unwrap_or_default()
    }
    fn line(&self) -> u64 {
        Row::line(self)
    }
    fn origin(&self) -> String {
        Row::origin(self)
    }
    fn json(&self) -> String {
        Row::json(self)
    }
}

/// A record of one file, read from an `active` row.
pub(crate) trait Record: Sized {
    const FILE: CsvFile;
    fn id(&self) -> &Id;
    /// Reads the row whose (usable) `sourcedId` is `id`; the error says what is wrong.
    fn read<C: Cells>(id: Id, row: &C, version: Version) -> Result<Self, String>;
}

/// A required cell holding one of `T`'s words.
fn word<T: std::str::FromStr + strum::VariantNames>(
    row: &impl Cells,
    column: &str,
) -> Result<T, String> {
    let value = row.raw(column).ok_or_else(|| row.blank(column))?;
    parse_word(column, value)
}

impl Record for Org {
    const FILE: CsvFile = CsvFile::Orgs;
    fn id(&self) -> &Id {
        &self.id
    }
    fn read<C: Cells>(id: Id, row: &C, _: Version) -> Result<Self, String> {
        Ok(Org {
            id,
            line: row.line(),
            name: row.required("name")?,
            kind: word(row, "type")?,
            identifier: row.text("identifier"),
            parent: row.optional_id("parentSourcedId")?,
        })
    }
}

impl Record for Session {
    const FILE: CsvFile = CsvFile::AcademicSessions;
    fn id(&self) -> &Id {
        &self.id
    }
    fn read<C: Cells>(id: Id, row: &C, _: Version) -> Result<Self, String> {
        let _: SessionType = word(row, "type")?;
        row.required("schoolYear")?;
        Ok(Session {
            id,
            line: row.line(),
            title: row.required("title")?,
            start: row.required("startDate")?,
            end: row.required("endDate")?,
        })
    }
}

impl Record for CourseRecord {
    const FILE: CsvFile = CsvFile::Courses;
    fn id(&self) -> &Id {
        &self.id
    }
    fn read<C: Cells>(id: Id, row: &C, _: Version) -> Result<Self, String> {
        Ok(CourseRecord {
            id,
            line: row.line(),
            title: row.required("title")?,
            code: row.text("courseCode"),
            org: row.id("orgSourcedId")?,
        })
    }
}

impl Record for Class {
    const FILE: CsvFile = CsvFile::Classes;
    fn id(&self) -> &Id {
        &self.id
    }
    fn read<C: Cells>(id: Id, row: &C, _: Version) -> Result<Self, String> {
        let _: ClassType = word(row, "classType")?;
        row.required("termSourcedIds")?;
        Ok(Class {
            id,
            line: row.line(),
            title: row.required("title")?,
            code: row.text("classCode"),
            course: row.optional_id("courseSourcedId")?,
            school: row.id("schoolSourcedId")?,
            terms: row.ids("termSourcedIds"),
            subjects: row.list("subjects"),
            subject_codes: row.list("subjectCodes"),
            grades: row.list("grades"),
            periods: row.list("periods"),
        })
    }
}

impl Record for User {
    const FILE: CsvFile = CsvFile::Users;
    fn id(&self) -> &Id {
        &self.id
    }
    fn read<C: Cells>(id: Id, row: &C, version: Version) -> Result<Self, String> {
        let enabled = parse_bool(
            "enabledUser",
            row.raw("enabledUser")
                .ok_or_else(|| row.blank("enabledUser"))?,
        )?;
        row.required("username")?;
        let (role, orgs) = match version {
            Version::V1_1 => {
                row.required("orgSourcedIds")?;
                (Some(word(row, "role")?), row.ids("orgSourcedIds"))
            }
            Version::V1_2 => (None, Vec::new()),
        };
        Ok(User {
            id,
            line: row.line(),
            enabled,
            given_name: row.required("givenName")?,
            middle_name: row.text("middleName"),
            family_name: row.required("familyName")?,
            identifier: row.text("identifier"),
            email: row.text("email"),
            user_ids: row.user_ids(),
            grades: row.list("grades"),
            role,
            orgs,
            primary_org: match version {
                Version::V1_1 => None,
                Version::V1_2 => row.optional_id("primaryOrgSourcedId")?,
            },
        })
    }
}

impl Record for RoleRecord {
    const FILE: CsvFile = CsvFile::Roles;
    fn id(&self) -> &Id {
        &self.id
    }
    fn read<C: Cells>(id: Id, row: &C, _: Version) -> Result<Self, String> {
        Ok(RoleRecord {
            id,
            line: row.line(),
            user: row.id("userSourcedId")?,
            role_type: word(row, "roleType")?,
            role: word(row, "role")?,
            org: row.id("orgSourcedId")?,
        })
    }
}

impl Record for Enrollment {
    const FILE: CsvFile = CsvFile::Enrollments;
    fn id(&self) -> &Id {
        &self.id
    }
    fn read<C: Cells>(id: Id, row: &C, _: Version) -> Result<Self, String> {
        row.id("schoolSourcedId")?;
        Ok(Enrollment {
            id,
            line: row.line(),
            class: row.id("classSourcedId")?,
            user: row.id("userSourcedId")?,
            role: word(row, "role")?,
            primary: match row.raw("primary") {
                None => false,
                Some(value) => parse_bool("primary", value)?,
            },
        })
    }
}

/// A `userIds` cell: `{studentNumber:1234},{stateId:CA-99}`; spaces and missing braces
/// (`type:id`) tolerated, entries without a `:` ignored.
pub(crate) fn user_ids(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return pairs;
        }
        let (entry, after) = match rest.strip_prefix('{') {
            Some(inside) => inside.split_once('}').unwrap_or((inside, "")),
            None => rest.split_once(',').unwrap_or((rest, "")),
        };
        rest = after;
        if let Some((kind, id)) = entry.split_once(':') {
            let (kind, id) = (kind.trim(), id.trim());
            if !kind.is_empty() && !id.is_empty() {
                pairs.push((kind.to_owned(), id.to_owned()));
            }
        }
    }
}

/// One file's rows as read: (id, record) in file order, `None` for a record to delete.
pub(crate) struct Batch<R> {
    entries: Vec<(Id, Option<R>)>,
    problems: Vec<Problem>,
}

impl<R> Batch<R> {
    /// Every id the batch names: its records, its removals and its problems that have one.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &Id> {
        self.entries
            .iter()
            .map(|(id, _)| id)
            .chain(self.problems.iter().filter_map(|p| p.id.as_ref()))
    }

    /// How many rows it holds, read or not.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() + self.problems.len()
    }
}

const FIX_RECORD: &str = "correct the record in the feed's source and send the feed again";

/// What became of a row given to a [`Reader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Read: an `active` record.
    Record,
    /// A `tobedeleted` row.
    Removal,
    /// Could not be used: a problem.
    Refused,
}

/// Reads the rows of one file into a [`Batch`], one at a time (a REST collection arrives page
/// by page): ids checked, a `sourcedId` seen before quarantined, `tobedeleted` rows removals.
pub(crate) struct Reader<R> {
    mode: Mode,
    version: Version,
    batch: Batch<R>,
    /// The line each id was first read at.
    first_lines: HashMap<Id, u64>,
}

impl<R: Record> Reader<R> {
    pub(crate) fn new(mode: Mode, version: Version) -> Reader<R> {
        Reader {
            mode,
            version,
            batch: Batch {
                entries: Vec::new(),
                problems: Vec::new(),
            },
            first_lines: HashMap::new(),
        }
    }

    /// Reads one row (or keeps the problem that made it unreadable).
    pub(crate) fn push<C: Cells>(&mut self, row: Result<C, Problem>) -> Read {
        let row = match row {
            Ok(row) => row,
            Err(problem) => {
                self.batch.problems.push(problem);
                return Read::Refused;
            }
        };
        let problem = |id: Option<Id>, reason: String, unreadable: bool| Problem {
            id,
            origin: row.origin(),
            reason,
            fix: Some(FIX_RECORD.to_owned()),
            record: row.json(),
            unreadable,
        };
        let id = match row.id("sourcedId") {
            Ok(id) => id,
            Err(reason) => {
                self.batch.problems.push(problem(None, reason, false));
                return Read::Refused;
            }
        };
        if let Some(&first) = self.first_lines.get(&id) {
            self.batch.problems.push(Problem {
                origin: format!(
                    "{} (first at {})",
                    row.origin(),
                    row.origin_at(R::FILE, first)
                ),
                reason: format!(
                    "another record of {} has sourcedId {id}: the first one is used",
                    row.place(R::FILE)
                ),
                fix: Some("give every record of a file its own sourcedId".to_owned()),
                ..problem(Some(id), String::new(), false)
            });
            return Read::Refused;
        }
        self.first_lines.insert(id.clone(), row.line());
        match entry::<R>(id.clone(), &row, self.mode, self.version) {
            Ok(entry) => {
                let read = if entry.is_some() {
                    Read::Record
                } else {
                    Read::Removal
                };
                self.batch.entries.push((id, entry));
                read
            }
            Err(reason) => {
                self.batch.problems.push(problem(Some(id), reason, true));
                Read::Refused
            }
        }
    }

    pub(crate) fn finish(self) -> Batch<R> {
        self.batch
    }
}

/// Reads a whole file.
fn read_batch<R: Record>(
    bytes: &[u8],
    mode: Mode,
    version: Version,
) -> Result<Batch<R>, ExtractError> {
    let file = R::FILE.file_name();
    let mut required = R::FILE.required_columns(version).to_vec();
    if mode == Mode::Delta {
        required.extend(["status", "dateLastModified"]);
    }
    let sheet = Sheet::open(file, bytes, &required, version.as_str())?;
    let mut reader = Reader::new(mode, version);
    for row in sheet.rows() {
        reader.push(row);
    }
    Ok(reader.finish())
}

/// What a row asks for: its record, or (`tobedeleted`) its removal.
fn entry<R: Record>(
    id: Id,
    row: &impl Cells,
    mode: Mode,
    version: Version,
) -> Result<Option<R>, String> {
    let status = match mode {
        // Bulk files leave status blank; one that fills it in is taken at its word.
        Mode::Bulk => row
            .raw("status")
            .and_then(|s| parse_word::<Status>("status", s).ok()),
        Mode::Delta => {
            row.required("dateLastModified")?;
            Some(word::<Status>(row, "status")?)
        }
    };
    if status == Some(Status::Tobedeleted) {
        return Ok(None);
    }
    R::read(id, row, version).map(Some)
}

impl<R: Record> Records<R> {
    /// Reads `bytes` and replaces (bulk) or changes (delta) the collection. Problems of a
    /// delta that have no id are returned: they belong to this load only.
    fn load(
        &mut self,
        bytes: &[u8],
        mode: Mode,
        version: Version,
    ) -> Result<Vec<Problem>, ExtractError> {
        let batch = read_batch::<R>(bytes, mode, version)?;
        Ok(self.load_batch(batch, mode))
    }

    /// Replaces the collection with `batch` (bulk), or applies it (delta). Problems of a
    /// delta that have no id are returned: they belong to this load only.
    pub(crate) fn load_batch(&mut self, batch: Batch<R>, mode: Mode) -> Vec<Problem> {
        match mode {
            Mode::Bulk => {
                self.rows = batch.entries.into_iter().filter_map(|(_, r)| r).collect();
                self.problems = batch.problems;
                Vec::new()
            }
            Mode::Delta => self.apply(batch),
        }
    }

    /// Applies a delta: each id it names is replaced, added or removed, and its earlier
    /// problems are forgotten.
    fn apply(&mut self, batch: Batch<R>) -> Vec<Problem> {
        let touched: HashSet<&Id> = batch
            .entries
            .iter()
            .map(|(id, _)| id)
            .chain(batch.problems.iter().filter_map(|p| p.id.as_ref()))
            .collect();
        self.problems
            .retain(|p| p.id.as_ref().is_none_or(|id| !touched.contains(id)));
        let mut index: HashMap<Id, usize> = self
            .rows
            .iter()
            .enumerate()
            .map(|(at, record)| (record.id().clone(), at))
            .collect();
        let mut keep = vec![true; self.rows.len()];
        // A new version that cannot be read replaces the old one all the same.
        for problem in batch.problems.iter().filter(|p| p.unreadable) {
            if let Some(&at) = problem.id.as_ref().and_then(|id| index.get(id)) {
                keep[at] = false;
            }
        }
        for (id, record) in batch.entries {
            match (index.get(&id).copied(), record) {
                (Some(at), Some(record)) => {
                    self.rows[at] = record;
                    keep[at] = true;
                }
                (Some(at), None) => keep[at] = false,
                (None, Some(record)) => {
                    index.insert(id, self.rows.len());
                    self.rows.push(record);
                    keep.push(true);
                }
                (None, None) => {}
            }
        }
        let mut keep = keep.into_iter();
        self.rows.retain(|_| keep.next().unwrap_or(true));
        let (kept, passing) = batch.problems.into_iter().partition(|p| p.id.is_some());
        let mut kept: Vec<Problem> = kept;
        self.problems.append(&mut kept);
        passing
    }
}

/// A roster loaded from a feed.
pub(crate) struct Loaded {
    pub roster: Roster,
    /// Problems of this load's delta rows that have no id: reported once, not kept.
    pub passing: Vec<(CsvFile, Problem)>,
    /// When the roster the deltas applied to was read (none for a bulk load).
    pub over: Option<DateTime<Utc>>,
}

/// Loads `feed`: from nothing, or (when it holds a delta) over `previous`, the packed roster
/// of the last load.
pub(crate) fn load(
    feed: &Feed,
    previous: Option<&[u8]>,
    now: DateTime<Utc>,
) -> Result<Loaded, ExtractError> {
    let version = feed.manifest.version;
    let (mut roster, over) = if feed.manifest.has_delta() {
        let Some(previous) = previous else {
            let files: Vec<&str> = feed
                .manifest
                .files
                .iter()
                .filter(|(_, mode)| *mode == Mode::Delta)
                .map(|(file, _)| file.file_name())
                .collect();
            return Err(ExtractError::DeltaWithoutBulk {
                files: files.join(", "),
            });
        };
        let roster: Roster =
            packed::unpack(previous).map_err(|source| ExtractError::Roster { source })?;
        // A delta file changes the files of the last feed, not what a REST service served.
        if roster.binding != Binding::Csv {
            return Err(ExtractError::VersionChanged {
                roster: "REST",
                feed: version.as_str(),
            });
        }
        if roster.version != version {
            return Err(ExtractError::VersionChanged {
                roster: roster.version.as_str(),
                feed: version.as_str(),
            });
        }
        let over = roster.read_at;
        (roster, Some(over))
    } else {
        (Roster::new(version, now, Binding::Csv), None)
    };
    roster.read_at = now;
    let mut passing = Vec::new();
    for (file, mode, bytes) in &feed.files {
        let (mode, bytes) = (*mode, bytes.as_slice());
        let problems = match file {
            CsvFile::Orgs => roster.orgs.load(bytes, mode, version)?,
            CsvFile::AcademicSessions => roster.sessions.load(bytes, mode, version)?,
            CsvFile::Courses => roster.courses.load(bytes, mode, version)?,
            CsvFile::Classes => roster.classes.load(bytes, mode, version)?,
            CsvFile::Users => roster.users.load(bytes, mode, version)?,
            CsvFile::Roles => roster.roles.load(bytes, mode, version)?,
            CsvFile::Enrollments => roster.enrollments.load(bytes, mode, version)?,
        };
        passing.extend(problems.into_iter().map(|p| (*file, p)));
    }
    Ok(Loaded {
        roster,
        passing,
        over,
    })
}

impl Roster {
    /// An empty roster, read at `now`.
    pub(crate) fn new(version: Version, now: DateTime<Utc>, binding: Binding) -> Roster {
        Roster {
            version,
            read_at: now,
            binding,
            orgs: Records::default(),
            sessions: Records::default(),
            courses: Records::default(),
            classes: Records::default(),
            users: Records::default(),
            roles: Records::default(),
            enrollments: Records::default(),
        }
    }

    /// Where the record `id` of `file`, at `line` of its file, was sent from: `users.csv:17`,
    /// or (REST) the record's URL.
    pub(crate) fn origin_of(&self, file: CsvFile, id: &str, line: u64) -> String {
        match &self.binding {
            Binding::Csv => format!("{}:{line}", file.file_name()),
            Binding::Rest { base_url } => rest::record_url(base_url, file, id),
        }
    }

    /// Every file's problems, in file order.
    pub(crate) fn problems(&self) -> impl Iterator<Item = (CsvFile, &Problem)> {
        fn of(file: CsvFile, problems: &[Problem]) -> impl Iterator<Item = (CsvFile, &Problem)> {
            problems.iter().map(move |p| (file, p))
        }
        of(CsvFile::Orgs, &self.orgs.problems)
            .chain(of(CsvFile::AcademicSessions, &self.sessions.problems))
            .chain(of(CsvFile::Courses, &self.courses.problems))
            .chain(of(CsvFile::Classes, &self.classes.problems))
            .chain(of(CsvFile::Users, &self.users.problems))
            .chain(of(CsvFile::Roles, &self.roles.problems))
            .chain(of(CsvFile::Enrollments, &self.enrollments.problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch<R: Record>(text: &str, mode: Mode) -> Batch<R> {
        read_batch::<R>(text.as_bytes(), mode, Version::V1_2).expect("readable file")
    }

    const ORGS: &str = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n";

    #[test]
    fn user_ids_read_with_braces_spaces_or_neither() {
        assert_eq!(
            user_ids("{studentNumber:1234},{stateId:CA-99}"),
            [
                ("studentNumber".to_owned(), "1234".to_owned()),
                ("stateId".to_owned(), "CA-99".to_owned())
            ]
        );
        assert_eq!(
            user_ids(" { SIS : 12345 } , stateId:X-1,nonsense,{:x}"),
            [
                ("SIS".to_owned(), "12345".to_owned()),
                ("stateId".to_owned(), "X-1".to_owned())
            ]
        );
        assert!(user_ids("").is_empty());
        assert!(user_ids("{unclosed").is_empty());
    }

    #[test]
    fn a_bad_row_is_a_problem_of_its_line_and_its_id_is_unreadable() {
        let batch = batch::<Org>(
            &format!(
                "{ORGS}d1,,,District,district,,\ns1,,,,school,,d1\ns2,,,School,campus,,d1\n,,,Nameless,school,,\n"
            ),
            Mode::Bulk,
        );
        assert_eq!(batch.entries.len(), 1);
        let origins: Vec<&str> = batch.problems.iter().map(|p| p.origin.as_str()).collect();
        assert_eq!(origins, ["orgs.csv:3", "orgs.csv:4", "orgs.csv:5"]);
        assert_eq!(batch.problems[0].reason, "required cell name is blank");
        assert!(
            batch.problems[1].reason.contains("\"campus\""),
            "{}",
            batch.problems[1].reason
        );
        assert!(batch.problems[0].unreadable && batch.problems[1].unreadable);
        assert_eq!(batch.problems[2].id, None, "a blank id is no id");
        assert!(!batch.problems[2].unreadable);
    }

    #[test]
    fn a_duplicate_id_keeps_the_first_record_and_names_both_lines() {
        let batch = batch::<Org>(
            &format!("{ORGS}s1,,,First,school,,\ns2,,,Other,school,,\ns1,,,Second,school,,\n"),
            Mode::Bulk,
        );
        let names: Vec<&str> = batch
            .entries
            .iter()
            .filter_map(|(_, o)| o.as_ref())
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["First", "Other"]);
        assert_eq!(batch.problems.len(), 1);
        assert_eq!(batch.problems[0].origin, "orgs.csv:4 (first at orgs.csv:2)");
        assert_eq!(batch.problems[0].id.as_deref(), Some("s1"));
        assert!(
            !batch.problems[0].unreadable,
            "the id's first record is used"
        );
    }

    #[test]
    fn delta_rows_need_a_status_and_a_date() {
        let batch = batch::<Org>(
            &format!(
                "{ORGS}s1,active,2026-01-02,A,school,,\ns2,,2026-01-02,B,school,,\ns3,active,,C,school,,\n\
                 s4,tobedeleted,2026-01-02,,,,\ns5,gone,2026-01-02,E,school,,\n"
            ),
            Mode::Delta,
        );
        let entries: Vec<(&str, bool)> = batch
            .entries
            .iter()
            .map(|(id, r)| (id.as_str(), r.is_some()))
            .collect();
        assert_eq!(
            entries,
            [("s1", true), ("s4", false)],
            "a deletion needs no other cell"
        );
        let reasons: Vec<&str> = batch.problems.iter().map(|p| p.reason.as_str()).collect();
        assert_eq!(reasons[0], "required cell status is blank");
        assert_eq!(reasons[1], "required cell dateLastModified is blank");
        assert!(reasons[2].starts_with("status \"gone\""), "{reasons:?}");
        let error = read_batch::<Org>(
            b"sourcedId,name,type\ns1,A,school\n",
            Mode::Delta,
            Version::V1_2,
        )
        .err()
        .expect("a delta file without status");
        assert!(error.to_string().contains("status"), "{error}");
    }

    #[test]
    fn a_delta_replaces_adds_and_removes_in_place() {
        let mut orgs = Records::<Org>::default();
        orgs.load(
            format!("{ORGS}a,,,A,school,,\nb,,,B,school,,\nc,,,C,school,,\nd,,,D,school,,\n")
                .as_bytes(),
            Mode::Bulk,
            Version::V1_2,
        )
        .expect("bulk");
        let passing = orgs
            .load(
                format!(
                    "{ORGS}b,active,2026-01-02,B2,school,,\ne,active,2026-01-02,E,school,,\n\
                     c,tobedeleted,2026-01-02,C,school,,\nd,active,2026-01-02,,school,,\n\
                     ,active,2026-01-02,X,school,,\n"
                )
                .as_bytes(),
                Mode::Delta,
                Version::V1_2,
            )
            .expect("delta");
        let names: Vec<&str> = orgs.rows.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            ["A", "B2", "E"],
            "d's new version cannot be read: d is gone"
        );
        assert_eq!(orgs.problems.len(), 1);
        assert_eq!(orgs.problems[0].id.as_deref(), Some("d"));
        assert_eq!(passing.len(), 1, "the row without an id is reported once");
        // A later good version of d clears its problem.
        orgs.load(
            format!("{ORGS}d,active,2026-01-03,D,school,,\n").as_bytes(),
            Mode::Delta,
            Version::V1_2,
        )
        .expect("delta");
        assert!(orgs.problems.is_empty());
        assert_eq!(orgs.rows.last().map(|o| o.name.as_str()), Some("D"));
    }
}
