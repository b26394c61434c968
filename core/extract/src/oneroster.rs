//! OneRoster CSV feeds (1.1 and 1.2), bulk or delta, from a folder, a `.zip` or an object
//! store (`[source] type = "oneroster_csv"`), and OneRoster REST services (`[source] type =
//! "oneroster_rest"`, see [`rest`]), both read into the same raw roster and mapped by the table
//! below.
//!
//! # Layout
//!
//! - `files`: where the feed is (a local folder or `.zip`, `s3://`, `gs://`, `az://`,
//!   `file://`) and reading its manifest and files into memory.
//! - `manifest`: `manifest.csv`: the version, and each file bulk, delta or absent.
//! - `table`: one CSV file read by its header.
//! - `feed`: the raw roster (the OneRoster records by file and `sourcedId`) and how bulk and
//!   delta files change it.
//! - `snapshot`: the raw roster mapped to the model, by the table below.
//! - `vocab`: OneRoster's enums, and its grades and subjects in the model's words.
//! - [`rest`]: the REST service: OAuth 2, paging, and its JSON records read into the raw
//!   roster, whole or by the changes since the last pull.
//!
//! # Reading a feed
//!
//! The manifest decides: `manifest.csv` must be there, with `oneroster.version` 1.1 or 1.2;
//! each `file.<name>` is `bulk`, `delta` or `absent` (a file it does not name is absent). A
//! file the manifest sends that is missing fails the pull; an absent one is not read. The
//! files read are `orgs`, `academicSessions`, `courses`, `classes`, `users`, `enrollments`
//! and, in 1.2, `roles`. A zip may hold them at its root or in one top-level folder.
//!
//! Headers are case-sensitive, as the spec says; a missing required column fails the pull,
//! naming the file and column. A record that cannot be used is quarantined with its file and
//! line (`users.csv:17`, the header being line 1), a reason and a fix, and the rest is loaded:
//! a required cell blank, a word outside its vocabulary, an id that is not a usable id (empty,
//! over 255 bytes, control characters; anything else, `/`, `..` or `|` included, is just a
//! string), a `sourcedId` already used in the file (the first record is used), an enrollment
//! naming a class or user the feed does not have. When an unreadable record has an id, its
//! Freckle row stays as it is until a readable version arrives ([`Snapshot::unreadable`]).
//!
//! # Bulk and delta
//!
//! A feed whose files are all bulk is the whole district. A feed with a delta file applies to
//! the raw roster of the previous load, which [`pull_csv`] returns packed
//! ([`OneRosterPull::roster`]) to be handed back next time: a delta's `active` records are
//! added or replace theirs, its `tobedeleted` records are removed, and its bulk files replace
//! their collections. A delta with no previous roster is refused. In bulk files `status` and
//! `dateLastModified` are blank (filled in, they are tolerated; `tobedeleted` is honoured).
//!
//! # The mapping
//!
//! Every record's `id` is its `sourcedId`, as is.
//!
//! | OneRoster | model |
//! |---|---|
//! | orgs `type=district` | `District { id: sourcedId, source_id: sourcedId, source: OneRoster, name }` (the pipeline later replaces `id` with the district's key) |
//! | orgs `type=school` | `School { id, name, sis_id: identifier }` (no school number, state id or grade range in OneRoster) |
//! | orgs of other types (department, local, state, national) | not loaded |
//! | academicSessions (term, semester, gradingPeriod, schoolYear) | `Term { id, name: title, start_date: startDate, end_date: endDate }` |
//! | courses | `Course { id, name: title, number: courseCode }` |
//! | classes | `Section { id, school: schoolSourcedId, name: title, sis_id: classCode, subject: mapped(subjects, subjectCodes), grade: mapped(first of grades), period: first of periods, section_number: None, term: reduced(termSourcedIds), course: courseSourcedId }` |
//! | users, role student | `Student { id, name {givenName, middleName, familyName}, email, sis_id, state_id: userIds stateId, student_number: userIds studentNumber, grade: mapped(first of grades), school: primary school }` |
//! | users, role teacher | `Teacher { id, name, email, sis_id, state_id: userIds stateId, teacher_number: userIds teacherNumber, title: None, school: primary school }` |
//! | users, role administrator at the district org (1.1) / districtAdministrator (1.2) | `Admin { id, name, email, title: None }` |
//! | guardian, parent, relative | counted in `skipped.contacts` |
//! | aide, proctor, counselor, principal, siteAdministrator, systemAdministrator, administrator of a school | counted in `skipped.staff` |
//! | `enabledUser = false` | not loaded, counted in `skipped.disabled` |
//! | enrollments, role student | the student in `section.students` |
//! | enrollments, role teacher | in `section.teachers`, those with `primary = true` first (then in feed order) |
//! | enrollments, role administrator or proctor | ignored |
//!
//! - A user with several roles (1.2 `roles.csv`) is loaded once per kind: a student and a
//!   teacher are different Freckle tables, so a user who is both becomes a `Student` and a
//!   `Teacher` with the same id. A 1.1 user has one role.
//! - Primary school: 1.2 `primaryOrgSourcedId`, else the org of the `roleType = primary`
//!   role, else the first school among the user's roles' orgs; 1.1 the first of
//!   `orgSourcedIds` that is a school.
//! - SIS id: `identifier`, or with `sis_id = { user_id_type = "SIS" }` the `userIds` entry of
//!   that type. `userIds` is a list like `{studentNumber:1234},{stateId:CA-99}` (spaces and
//!   `type:id` without braces tolerated); types compare in any case.
//! - Multi-value cells (`grades`, `termSourcedIds`, `orgSourcedIds`, `subjects`,
//!   `subjectCodes`, `periods`) are comma-separated inside one quoted cell.
//! - Several terms on a class: the one that starts first (ties: the one that ends last, then
//!   the lower id), among those the feed has; unknown term ids are ignored.
//! - Grades (CEDS code -> model): IT -> InfantToddler, PR -> Preschool, PK -> PreKindergarten,
//!   TK -> TransitionalKindergarten, KG -> Kindergarten, 01..13 -> 1..13, PS -> PostGraduate,
//!   UG -> Ungraded, Other -> Other; a model name is kept; anything else -> Other.
//! - Subjects, in the model's (Clever's) names: (1) a `subjects` entry that is one of them, in
//!   any case; (2) else the first `subjectCodes` entry by its SCED area: 01 english/language
//!   arts, 02 math, 03 science, 04 social studies, 05 arts and music, 06 language, 08 PE and
//!   health, 10 and 21 technology and engineering, others other; (3) else words in the
//!   `subjects` text, the first rule that matches: math, algebra, geometry, calculus -> math;
//!   english, ela, language arts, reading, literacy, writing -> english/language arts;
//!   science, biology, chemistry, physics -> science; social, history, civics, geography,
//!   economics -> social studies; spanish, french, german, chinese, world language, foreign
//!   language -> language; homeroom, advisory -> homeroom/advisory; intervention ->
//!   interventions/online learning; physical education, the word pe, health -> PE and health;
//!   art, music, band, chorus, orchestra, theater, theatre, drama -> arts and music; computer,
//!   technology, engineering, coding -> technology and engineering; (4) else other when there
//!   is text, none when there is not.
//! - The district: the org named by `source.district`, or the feed's only district org; a
//!   feed with none, or with several and no `source.district`, fails the pull. With several,
//!   what belongs to another district is counted in `skipped.other_district`, not loaded:
//!   schools whose `parentSourcedId` chain leads to another district org, their classes,
//!   courses of such orgs, users all of whose orgs are such; and only the sessions the loaded
//!   classes name are loaded. Records that cannot be placed are the district's.
//! - Records are in id order; members of a section that name records the snapshot lacks are
//!   quarantined as for every source ([`Snapshot::quarantine_dangling_references`]).

mod feed;
pub(crate) mod files;
mod manifest;
pub mod rest;
mod snapshot;
mod table;
mod vocab;

pub use rest::{RestPrevious, RestPull, RestPullKind, pull_rest};
pub(crate) use table::usable_id;

use chrono::{DateTime, Utc};

use crate::config::OneRosterCsvConfig;
use crate::{ExtractError, Recorder};
use manifest::Mode;
use rosterflow_model::{Snapshot, blocking, packed};

/// The cursor a OneRoster roster (of a CSV feed or a REST service: the roster says which) is
/// saved under in a district's source checkpoint, so that it is never mistaken for a Clever
/// events checkpoint (or the other way round).
pub const CHECKPOINT_CURSOR: &str = "oneroster-csv";

/// How a feed was sent. The names (`bulk`, `delta`) are stored with the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum FeedKind {
    /// Every file bulk: the whole district.
    Bulk,
    /// At least one delta file, applied to the previous load's roster.
    Delta,
}

impl FeedKind {
    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }
}

/// What a OneRoster pull brought.
#[derive(Debug)]
pub struct OneRosterPull {
    pub snapshot: Snapshot,
    pub kind: FeedKind,
    /// The raw roster after this load ([`packed`]): pass it back to the next [`pull_csv`],
    /// saved with the run that applies this pull.
    pub roster: Vec<u8>,
    /// One line for the run's history: `bulk: 1.2, 7 files`, `delta of 3 files over the
    /// roster of 2026-09-01 02:30 UTC`.
    pub note: String,
}

/// Pulls the feed `config` points at. `previous` is the roster a previous pull returned: a
/// delta feed applies to it (and is refused without it); a bulk feed does not need it.
pub async fn pull_csv(
    config: &OneRosterCsvConfig,
    previous: Option<&[u8]>,
) -> Result<OneRosterPull, ExtractError> {
    let feed = files::read(config).await?;
    // Parsing and mapping a large district takes CPU: off the reactor's other tasks.
    blocking(|| assemble(config, &feed, previous, Utc::now()))
}

/// A bulk pull, with no previous roster (a delta is refused), copying the files read into
/// `recorder` when given: what `rosterflow pull --record` and a plain run do.
pub(crate) async fn pull(
    config: &OneRosterCsvConfig,
    recorder: Option<&Recorder>,
) -> Result<Snapshot, ExtractError> {
    let feed = files::read(config).await?;
    if let Some(recorder) = recorder {
        // Recorded before it is parsed, so that a feed that fails can be reproduced.
        blocking(|| feed.record(recorder))?;
    }
    blocking(|| assemble(config, &feed, None, Utc::now())).map(|pull| pull.snapshot)
}

/// Loads `feed` (over `previous` when it is a delta) and maps it.
fn assemble(
    config: &OneRosterCsvConfig,
    feed: &files::Feed,
    previous: Option<&[u8]>,
    now: DateTime<Utc>,
) -> Result<OneRosterPull, ExtractError> {
    let loaded = feed::load(feed, previous, now)?;
    let snapshot = snapshot::build(
        &loaded.roster,
        &loaded.passing,
        config.district.as_deref(),
        &config.sis_id,
    )?;
    let roster = packed::pack(&loaded.roster).map_err(|source| ExtractError::Roster { source })?;
    let count = |mode: Mode| feed.files.iter().filter(|(_, m, _)| *m == mode).count();
    let (kind, note) = match loaded.over {
        None => (
            FeedKind::Bulk,
            format!(
                "bulk: {}, {} files",
                feed.manifest.version.as_str(),
                feed.files.len()
            ),
        ),
        Some(over) => {
            let bulk = match count(Mode::Bulk) {
                0 => String::new(),
                n => format!(" and {n} bulk"),
            };
            (
                FeedKind::Delta,
                format!(
                    "delta of {} files{bulk} over the roster of {}",
                    count(Mode::Delta),
                    over.format("%Y-%m-%d %H:%M UTC")
                ),
            )
        }
    };
    tracing::debug!(location = %feed.location, kind = kind.as_str(), "{note}");
    Ok(OneRosterPull {
        snapshot,
        kind,
        roster,
        note,
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;
    use crate::config::SisIdSource;
    use rosterflow_model::{Entity, Quarantined, SourceKind};

    const MANIFEST_1_2: &str = "propertyName,value
manifest.version,1.0
oneroster.version,1.2
file.academicSessions,bulk
file.orgs,bulk
file.courses,bulk
file.classes,bulk
file.users,bulk
file.roles,bulk
file.enrollments,bulk
file.demographics,absent
";

    const ORGS: &str = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId
d1,,,Springfield District,district,SD-1,st1
s1,,,Springfield Elementary,school,SE-100,d1
s2,,,Shelbyville West,school,,d1
dep1,,,Math Department,department,,s1
st1,,,State of Mind,state,,
";

    const SESSIONS: &str =
        "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear
y1,,,2026-27,schoolYear,2026-07-01,2027-06-30,,2027
t1,,,Fall,term,2026-08-15,2026-12-20,y1,2027
t2,,,Spring,semester,2027-01-05,2027-06-10,y1,2027
g1,,,Q1,gradingPeriod,2026-08-15,2026-10-15,t1,2027
";

    const COURSES: &str = "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes
c1,,,y1,Math 3,M3,03,d1,math,
c2,,,y1,Reading,,,s1,,
";

    const CLASSES: &str = "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods
k1,,,Math 3 - Smith,\"03,04\",c1,M3-1,scheduled,Room 1,s1,\"t2,g1,t1,zz\",Algebra,,\"2,3\"
k2,,,Homeroom,KG,,HR-1,homeroom,,s1,y1,homeroom/advisory,,
k3,,,Art,,c2,,scheduled,,s2,t1,,05153,
k4,,,Orphan,,,,scheduled,,nosuch,t1,,,
";

    const USERS_1_2: &str = "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,grades,password,primaryOrgSourcedId
u-stu,,,true,ana,\"{studentNumber:1001},{stateId:ST-1},{SIS:S-1}\",Ana,Lopez,María,ID-1,ana@example.org,03,secret,s1
u-tch,,,true,tom,\"{teacherNumber:T-9},{stateId:ST-9}\",Tom,Smith,,ID-9,tom@example.org,,,
u-co,,,true,cora,,Cora,Jones,,ID-8,,,,s1
u-both,,,true,bo,,Bo,Both,,ID-7,,,,s2
u-adm,,,true,ada,,Ada,Admin,,ID-6,ada@example.org,,,
u-par,,,true,pat,,Pat,Parent,,,,,,
u-prn,,,true,pam,,Pam,Principal,,,,,,
u-off,,,FALSE,olga,,Olga,Off,,ID-5,,,,
";

    const ROLES: &str = "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId
r1,,,u-stu,primary,student,,,s1,
r2,,,u-tch,secondary,teacher,,,s2,
r3,,,u-tch,primary,teacher,,,s1,
r4,,,u-co,primary,teacher,,,s1,
r5,,,u-both,primary,teacher,,,s2,
r6,,,u-both,secondary,student,,,s2,
r7,,,u-adm,primary,districtAdministrator,,,d1,
r8,,,u-par,primary,guardian,,,s1,
r9,,,u-prn,primary,principal,,,s1,
r10,,,u-off,primary,student,,,s1,
r11,,,ghost,primary,student,,,s1,
r12,,,u-tch,secondary,principal,,,s1,
";

    const ENROLLMENTS: &str = "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate
e1,,,k1,s1,u-co,teacher,false,,
e2,,,k1,s1,u-tch,teacher,true,,
e3,,,k1,s1,u-stu,student,,,
e4,,,k1,s1,u-both,student,,,
e5,,,k2,s1,u-stu,student,false,,
e6,,,k2,s1,u-both,teacher,true,,
e7,,,k1,s1,u-off,student,,,
e8,,,k1,s1,u-prn,administrator,,,
e9,,,nope,s1,u-stu,student,,,
e10,,,k1,s1,nobody,student,,,
e11,,,k3,s2,u-tch,student,,,
";

    /// A small 1.2 district: every row of the mapping, and a few records to quarantine.
    fn feed_1_2() -> Vec<(&'static str, String)> {
        [
            ("manifest.csv", MANIFEST_1_2),
            ("orgs.csv", ORGS),
            ("academicSessions.csv", SESSIONS),
            ("courses.csv", COURSES),
            ("classes.csv", CLASSES),
            ("users.csv", USERS_1_2),
            ("roles.csv", ROLES),
            ("enrollments.csv", ENROLLMENTS),
        ]
        .into_iter()
        .map(|(name, text)| (name, text.to_owned()))
        .collect()
    }

    const USERS_1_1: &str = "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,middleName,identifier,email,grades,password
u-stu,,,true,\"s2,s1\",student,ana,{studentNumber:1001},Ana,Lopez,,ID-1,,KG,
u-tch,,,true,\"d1,s1\",teacher,tom,,Tom,Smith,,ID-9,,,
u-adm,,,true,d1,administrator,ada,,Ada,Admin,,,,,
u-sadm,,,true,s1,administrator,sam,,Sam,Site,,,,,
u-aide,,,true,s1,aide,al,,Al,Aide,,,,,
u-g,,,true,s1,guardian,gus,,Gus,Guardian,,,,,
u-rel,,,true,s1,relative,rae,,Rae,Relative,,,,,
u-off,,,false,s1,teacher,olga,,Olga,Off,,,,,
";

    /// A small 1.1 district: users carry their role and orgs.
    fn feed_1_1() -> Vec<(&'static str, String)> {
        let manifest = "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n\
             file.orgs,bulk\nfile.academicSessions,bulk\nfile.courses,bulk\nfile.classes,bulk\n\
             file.users,bulk\nfile.enrollments,bulk\n";
        let enrollments = "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary
e1,,,k1,s1,u-tch,teacher,true
e2,,,k1,s1,u-stu,student,
e3,,,k2,s1,u-tch,teacher,
";
        [
            ("manifest.csv", manifest),
            ("orgs.csv", ORGS),
            ("academicSessions.csv", SESSIONS),
            ("courses.csv", COURSES),
            ("classes.csv", CLASSES),
            ("users.csv", USERS_1_1),
            ("enrollments.csv", enrollments),
        ]
        .into_iter()
        .map(|(name, text)| (name, text.to_owned()))
        .collect()
    }

    /// `files` with `rows` added at the end of `name`.
    fn with_rows(
        mut files: Vec<(&'static str, String)>,
        name: &str,
        rows: &str,
    ) -> Vec<(&'static str, String)> {
        let file = files
            .iter_mut()
            .find(|(n, _)| *n == name)
            .expect("a file of the feed");
        file.1.push_str(rows);
        files
    }

    fn replace(
        mut files: Vec<(&'static str, String)>,
        name: &str,
        from: &str,
        to: &str,
    ) -> Vec<(&'static str, String)> {
        let file = files
            .iter_mut()
            .find(|(n, _)| *n == name)
            .expect("a file of the feed");
        assert!(file.1.contains(from), "{name} has no {from:?}");
        file.1 = file.1.replace(from, to);
        files
    }

    fn write(dir: &Path, files: &[(&str, String)]) {
        std::fs::create_dir_all(dir).expect("feed dir");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("feed file");
        }
    }

    fn zip(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in files {
            writer.start_file(*name, options).expect("zip entry");
            writer.write_all(bytes).expect("zip write");
        }
        writer.finish().expect("zip").into_inner()
    }

    fn config(path: &Path) -> OneRosterCsvConfig {
        OneRosterCsvConfig {
            path: path.to_string_lossy().into_owned(),
            storage_options: Default::default(),
            sis_id: SisIdSource::Identifier,
            district: None,
        }
    }

    /// Pulls `files` as a folder feed, over `previous`.
    async fn pull_files(
        files: &[(&str, String)],
        previous: Option<&[u8]>,
    ) -> Result<OneRosterPull, ExtractError> {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), files);
        pull_csv(&config(dir.path()), previous).await
    }

    async fn snapshot(files: &[(&str, String)]) -> Snapshot {
        pull_files(files, None).await.expect("pull").snapshot
    }

    fn ids<T>(records: &[T], id: impl Fn(&T) -> &str) -> Vec<&str> {
        records.iter().map(id).collect()
    }

    fn origins(quarantine: &[Quarantined]) -> Vec<(&str, &str)> {
        quarantine
            .iter()
            .map(|q| {
                (
                    q.id.as_deref().unwrap_or(""),
                    q.origin.as_deref().unwrap_or(""),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_1_2_feed_maps_by_the_contract() {
        let pull = pull_files(&feed_1_2(), None).await.expect("pull");
        assert_eq!(pull.kind, FeedKind::Bulk);
        assert_eq!(pull.note, "bulk: 1.2, 7 files");
        let s = pull.snapshot;
        assert_eq!(s.district.id, "d1");
        assert_eq!(s.district.source_id, "d1");
        assert_eq!(s.district.source, SourceKind::OneRoster);
        assert_eq!(s.district.name, "Springfield District");

        // Schools only; their identifier is the SIS id.
        assert_eq!(ids(&s.schools, |r| &r.id), ["s1", "s2"]);
        assert_eq!(s.schools[0].name, "Springfield Elementary");
        assert_eq!(s.schools[0].sis_id.as_deref(), Some("SE-100"));
        assert_eq!(s.schools[1].sis_id, None);
        assert!(!s.schools[0].synthesized);

        // Every kind of session is a term.
        assert_eq!(ids(&s.terms, |r| &r.id), ["g1", "t1", "t2", "y1"]);
        let fall = &s.terms[1];
        assert_eq!(fall.name.as_deref(), Some("Fall"));
        assert_eq!(fall.start_date.as_deref(), Some("2026-08-15"));
        assert_eq!(fall.end_date.as_deref(), Some("2026-12-20"));

        assert_eq!(ids(&s.courses, |r| &r.id), ["c1", "c2"]);
        assert_eq!(s.courses[0].name.as_deref(), Some("Math 3"));
        assert_eq!(s.courses[0].number.as_deref(), Some("M3"));
        assert_eq!(s.courses[1].number, None);

        assert_eq!(ids(&s.sections, |r| &r.id), ["k1", "k2", "k3"]);
        let math = &s.sections[0];
        assert_eq!(math.school, "s1");
        assert_eq!(math.name, "Math 3 - Smith");
        assert_eq!(math.sis_id.as_deref(), Some("M3-1"));
        assert_eq!(math.subject.as_deref(), Some("math"), "by its words");
        assert_eq!(math.grade.as_deref(), Some("3"), "the first grade");
        assert_eq!(math.period.as_deref(), Some("2"), "the first period");
        assert_eq!(math.section_number, None);
        assert_eq!(
            math.term.as_deref(),
            Some("t1"),
            "starts first, and ends after g1; zz is ignored"
        );
        assert_eq!(math.course.as_deref(), Some("c1"));
        assert_eq!(
            math.teachers,
            ["u-tch", "u-co"],
            "the primary teacher first"
        );
        assert_eq!(math.students, ["u-both", "u-stu"]);
        let homeroom = &s.sections[1];
        assert_eq!(homeroom.subject.as_deref(), Some("homeroom/advisory"));
        assert_eq!(homeroom.grade.as_deref(), Some("Kindergarten"));
        assert_eq!(homeroom.term.as_deref(), Some("y1"));
        assert_eq!(homeroom.course, None);
        assert_eq!(homeroom.teachers, ["u-both"]);
        assert_eq!(homeroom.students, ["u-stu"]);
        let art = &s.sections[2];
        assert_eq!(
            art.subject.as_deref(),
            Some("arts and music"),
            "by its code"
        );
        assert_eq!((art.grade.as_deref(), art.period.as_deref()), (None, None));
        assert!(art.teachers.is_empty() && art.students.is_empty());

        // A user with two roles is a student and a teacher.
        assert_eq!(ids(&s.students, |r| &r.id), ["u-both", "u-stu"]);
        let ana = &s.students[1];
        assert_eq!(ana.name.first.as_deref(), Some("Ana"));
        assert_eq!(ana.name.middle.as_deref(), Some("María"));
        assert_eq!(ana.name.last.as_deref(), Some("Lopez"));
        assert_eq!(ana.email.as_deref(), Some("ana@example.org"));
        assert_eq!(ana.sis_id.as_deref(), Some("ID-1"));
        assert_eq!(ana.state_id.as_deref(), Some("ST-1"));
        assert_eq!(ana.student_number.as_deref(), Some("1001"));
        assert_eq!(ana.grade.as_deref(), Some("3"));
        assert_eq!(ana.school.as_deref(), Some("s1"));
        assert_eq!(
            s.students[0].school.as_deref(),
            Some("s2"),
            "primaryOrgSourcedId"
        );
        assert_eq!(ids(&s.teachers, |r| &r.id), ["u-both", "u-co", "u-tch"]);
        let tom = &s.teachers[2];
        assert_eq!(tom.sis_id.as_deref(), Some("ID-9"));
        assert_eq!(tom.state_id.as_deref(), Some("ST-9"));
        assert_eq!(tom.teacher_number.as_deref(), Some("T-9"));
        assert_eq!(tom.title, None);
        assert_eq!(tom.email.as_deref(), Some("tom@example.org"));
        assert_eq!(
            tom.school.as_deref(),
            Some("s1"),
            "the org of the primary role"
        );
        assert_eq!(ids(&s.admins, |r| &r.id), ["u-adm"]);
        assert_eq!(s.admins[0].email.as_deref(), Some("ada@example.org"));
        assert_eq!(s.admins[0].title, None);

        assert_eq!(s.skipped.contacts, 1);
        assert_eq!(
            s.skipped.staff, 1,
            "a teacher who is also a principal is a teacher"
        );
        assert_eq!(s.skipped.disabled, 1);
        assert_eq!(s.skipped.other_district, 0);
        assert_eq!(
            origins(&s.quarantine),
            [
                ("k4", "classes.csv:5"),
                ("r11", "roles.csv:12"),
                ("e9", "enrollments.csv:10"),
                ("e10", "enrollments.csv:11"),
                ("e11", "enrollments.csv:12"),
            ]
        );
        assert!(
            s.quarantine[2].reason.contains("class nope"),
            "{:?}",
            s.quarantine[2]
        );
        assert!(
            s.quarantine[4].reason.contains("no student role"),
            "{:?}",
            s.quarantine[4]
        );
        assert!(s.quarantine.iter().all(|q| q.suggested_fix.is_some()));
        assert!(s.unreadable.is_empty());
        assert!(
            !format!("{s:?}").contains("secret"),
            "a password is never kept"
        );
    }

    #[tokio::test]
    async fn a_1_1_feed_maps_by_the_contract_from_a_zip_with_a_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let entries: Vec<(String, Vec<u8>)> = feed_1_1()
            .into_iter()
            .map(|(name, text)| (format!("OneRosterv1p1/{name}"), text.into_bytes()))
            .collect();
        let entries: Vec<(&str, Vec<u8>)> = entries
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        let path = dir.path().join("feed.zip");
        std::fs::write(&path, zip(&entries)).expect("zip file");
        let pull = pull_csv(&config(&path), None).await.expect("pull");
        assert_eq!(pull.note, "bulk: 1.1, 6 files");
        assert_eq!(
            snapshot(&feed_1_1()).await,
            pull.snapshot,
            "as a folder too"
        );
        let s = pull.snapshot;
        assert_eq!(ids(&s.students, |r| &r.id), ["u-stu"]);
        let ana = &s.students[0];
        assert_eq!(
            ana.school.as_deref(),
            Some("s2"),
            "the first of orgSourcedIds"
        );
        assert_eq!(ana.grade.as_deref(), Some("Kindergarten"));
        assert_eq!(
            ana.student_number.as_deref(),
            Some("1001"),
            "userIds without quotes"
        );
        assert_eq!(ids(&s.teachers, |r| &r.id), ["u-tch"]);
        assert_eq!(
            s.teachers[0].school.as_deref(),
            Some("s1"),
            "the first org that is a school"
        );
        assert_eq!(
            ids(&s.admins, |r| &r.id),
            ["u-adm"],
            "administrator of the district"
        );
        assert_eq!(s.skipped.staff, 2, "administrator of a school, aide");
        assert_eq!(s.skipped.contacts, 2, "guardian, relative");
        assert_eq!(s.skipped.disabled, 1);
        let math = &s.sections[0];
        assert_eq!(
            (math.teachers.as_slice(), math.students.as_slice()),
            (&["u-tch".into()][..], &["u-stu".into()][..])
        );
        assert_eq!(s.sections[1].teachers, ["u-tch"]);
        assert_eq!(origins(&s.quarantine), [("k4", "classes.csv:5")]);
    }

    #[tokio::test]
    async fn the_sis_id_can_come_from_user_ids() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), &feed_1_2());
        let config = OneRosterCsvConfig {
            sis_id: SisIdSource::UserIdType("sis".into()),
            ..config(dir.path())
        };
        let s = pull_csv(&config, None).await.expect("pull").snapshot;
        assert_eq!(
            s.students[1].sis_id.as_deref(),
            Some("S-1"),
            "type in any case"
        );
        assert_eq!(s.teachers[2].sis_id, None);
    }

    #[tokio::test]
    async fn a_missing_required_column_fails_naming_file_and_column() {
        let files = replace(feed_1_2(), "roles.csv", ",roleType,", ",RoleType,");
        let error = pull_files(&files, None).await.expect_err("no roleType");
        let message = error.to_string();
        assert!(message.starts_with("roles.csv: "), "{message}");
        assert!(message.contains("roleType"), "{message}");
        assert!(matches!(error, ExtractError::MissingColumn { .. }));
    }

    #[tokio::test]
    async fn a_wrong_manifest_is_refused_clearly() {
        let without: Vec<_> = feed_1_2()
            .into_iter()
            .filter(|(n, _)| *n != "manifest.csv")
            .collect();
        let error = pull_files(&without, None).await.expect_err("no manifest");
        assert!(matches!(error, ExtractError::NoManifest { .. }), "{error}");

        let v1_0 = replace(
            feed_1_2(),
            "manifest.csv",
            "oneroster.version,1.2",
            "oneroster.version,1.0",
        );
        let error = pull_files(&v1_0, None).await.expect_err("1.0");
        assert!(
            error.to_string().contains("\"1.0\" is not supported"),
            "{error}"
        );

        let no_roles: Vec<_> = feed_1_2()
            .into_iter()
            .filter(|(n, _)| *n != "roles.csv")
            .collect();
        let error = pull_files(&no_roles, None)
            .await
            .expect_err("roles missing");
        let message = error.to_string();
        assert!(
            message.contains("marks roles.csv bulk") && message.contains("mark it absent"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_absent_file_is_not_read() {
        let files = replace(
            feed_1_2(),
            "manifest.csv",
            "file.courses,bulk",
            "file.courses,absent",
        );
        let files = replace(files, "courses.csv", "sourcedId", "garbage");
        let s = snapshot(&files).await;
        assert!(s.courses.is_empty());
        assert_eq!(
            s.sections[0].course, None,
            "a course the feed lacks is dropped"
        );
    }

    #[tokio::test]
    async fn a_bom_crlf_and_quoted_commas_and_line_breaks_read_as_plain_text() {
        let plain = snapshot(&feed_1_2()).await;
        let windows: Vec<_> = feed_1_2()
            .into_iter()
            .map(|(name, text)| (name, format!("\u{feff}{}", text.replace('\n', "\r\n"))))
            .collect();
        assert_eq!(snapshot(&windows).await, plain);

        let quoted = replace(
            feed_1_2(),
            "classes.csv",
            "k2,,,Homeroom,",
            "k2,,,\"Homeroom, \"\"B\"\"\nsecond line\",",
        );
        let s = snapshot(&quoted).await;
        assert_eq!(s.sections[1].name, "Homeroom, \"B\"\nsecond line");
        assert_eq!(
            origins(&s.quarantine)[0],
            ("k4", "classes.csv:6"),
            "lines count the line break inside a cell"
        );
    }

    #[tokio::test]
    async fn an_enrollment_naming_an_unknown_class_or_user_is_quarantined_not_fatal() {
        let files = with_rows(
            feed_1_2(),
            "enrollments.csv",
            "e12,,,k9,s1,u-stu,student,,,\n",
        );
        let s = snapshot(&files).await;
        let unknown = s
            .quarantine
            .iter()
            .find(|q| q.id.as_deref() == Some("e12"))
            .expect("e12");
        assert_eq!(unknown.kind, "enrollment");
        assert_eq!(unknown.origin.as_deref(), Some("enrollments.csv:13"));
        assert!(
            unknown
                .reason
                .contains("class k9, which is not in classes.csv"),
            "{unknown:?}"
        );
        assert!(unknown.record.contains("\"k9\""), "{unknown:?}");
        assert_eq!(
            s.sections[0].students,
            ["u-both", "u-stu"],
            "the rest is loaded"
        );
    }

    #[tokio::test]
    async fn a_duplicate_sourced_id_keeps_the_first_record() {
        let files = with_rows(
            feed_1_2(),
            "users.csv",
            "u-stu,,,true,ana2,,Other,Person,,ID-X,,,,s2\n",
        );
        let s = snapshot(&files).await;
        assert_eq!(s.students[1].name.first.as_deref(), Some("Ana"));
        let duplicate = &s.quarantine[0];
        assert_eq!(duplicate.kind, "user");
        assert_eq!(duplicate.id.as_deref(), Some("u-stu"));
        assert_eq!(
            duplicate.origin.as_deref(),
            Some("users.csv:10 (first at users.csv:2)")
        );
        assert!(s.unreadable.is_empty(), "the first record is used");
    }

    #[tokio::test]
    async fn ids_with_slashes_dots_and_pipes_are_just_ids() {
        let mut files = feed_1_2();
        for (_, text) in &mut files {
            *text = text
                .replace("u-stu", "../../etc/passwd")
                .replace("k1,", "a/b|c,")
                .replace("s1", "..");
        }
        let s = snapshot(&files).await;
        assert_eq!(ids(&s.schools, |r| &r.id), ["..", "s2"]);
        assert_eq!(s.students[0].id, "../../etc/passwd");
        assert_eq!(s.students[0].school.as_deref(), Some(".."));
        let section = s
            .sections
            .iter()
            .find(|x| x.id == "a/b|c")
            .expect("section");
        assert!(section.students.iter().any(|id| id == "../../etc/passwd"));
    }

    #[tokio::test]
    async fn unusable_ids_and_bad_cells_are_quarantined_and_the_record_left_as_it_is() {
        let long = "x".repeat(256);
        let files = with_rows(
            feed_1_2(),
            "users.csv",
            &format!(
                "{long},,,true,l,,Long,Id,,,,,,\nu-bad,,,maybe,b,,Bad,Flag,,,,,,\n\"u\tc\",,,true,c,,Ctl,Char,,,,,,\n"
            ),
        );
        let files = with_rows(files, "enrollments.csv", "e12,,,k2,s1,u-bad,student,,,\n");
        let s = snapshot(&files).await;
        let users: Vec<&Quarantined> = s.quarantine.iter().filter(|q| q.kind == "user").collect();
        assert_eq!(users.len(), 3, "{users:?}");
        assert_eq!(users[0].origin.as_deref(), Some("users.csv:10"));
        assert!(users[0].reason.contains("256 bytes"), "{:?}", users[0]);
        assert_eq!(users[0].id, None);
        assert_eq!(users[1].id.as_deref(), Some("u-bad"));
        assert!(
            users[1].reason.contains("enabledUser \"maybe\""),
            "{:?}",
            users[1]
        );
        assert!(
            users[2].reason.contains("control character"),
            "{:?}",
            users[2]
        );
        let unreadable: Vec<(Entity, &str)> = s
            .unreadable
            .iter()
            .map(|(e, id)| (*e, id.as_str()))
            .collect();
        assert_eq!(
            unreadable,
            [
                (Entity::Teacher, "u-bad"),
                (Entity::Student, "u-bad"),
                (Entity::Admin, "u-bad")
            ],
            "its Freckle row stays as it is, whatever kind of user it was"
        );
        assert!(
            s.sections[1].students.iter().any(|id| id == "u-bad"),
            "and so do its memberships"
        );
    }

    #[tokio::test]
    async fn a_zip_entry_outside_the_archive_is_refused() {
        let mut entries: Vec<(&str, Vec<u8>)> = feed_1_2()
            .into_iter()
            .map(|(name, text)| (name, text.into_bytes()))
            .collect();
        entries.push(("../evil.csv", b"x".to_vec()));
        let error = files::read_zip(zip(&entries), "feed.zip").expect_err("escaping entry");
        let message = error.to_string();
        assert!(
            message.contains("\"../evil.csv\"") && message.contains("outside"),
            "{message}"
        );
        let two_feeds = zip(&[
            ("a/manifest.csv", b"x".to_vec()),
            ("b/manifest.csv", b"x".to_vec()),
        ]);
        let error = files::read_zip(two_feeds, "feed.zip").expect_err("two feeds");
        assert!(error.to_string().contains("several feeds"), "{error}");
        let error = files::read_zip(b"not a zip".to_vec(), "feed.zip").expect_err("garbage");
        assert!(
            error
                .to_string()
                .starts_with("feed.zip: not a readable zip"),
            "{error}"
        );
    }

    /// The feed after a day of changes: a student renamed, a teacher gone, a student added, a
    /// class retitled.
    fn feed_1_2_later() -> Vec<(&'static str, String)> {
        let files = replace(feed_1_2(), "users.csv", ",Ana,Lopez,", ",Anita,Lopez,");
        let files = replace(
            files,
            "users.csv",
            "u-co,,,true,cora,,Cora,Jones,,ID-8,,,,s1\n",
            "",
        );
        let files = replace(files, "roles.csv", "r4,,,u-co,primary,teacher,,,s1,\n", "");
        let files = replace(
            files,
            "enrollments.csv",
            "e1,,,k1,s1,u-co,teacher,false,,\n",
            "",
        );
        let files = replace(files, "classes.csv", "k3,,,Art,", "k3,,,Studio Art,");
        let files = with_rows(
            files,
            "users.csv",
            "u-new,,,true,nu,,Nu,New,,ID-3,,01,,s1\n",
        );
        let files = with_rows(files, "roles.csv", "r20,,,u-new,primary,student,,,s1,\n");
        with_rows(files, "enrollments.csv", "e12,,,k2,s1,u-new,student,,,\n")
    }

    /// The delta from `feed_1_2` to `feed_1_2_later`.
    fn delta_1_2() -> Vec<(&'static str, String)> {
        let manifest = "propertyName,value\noneroster.version,1.2\nfile.orgs,absent\n\
             file.classes,delta\nfile.users,delta\nfile.roles,delta\nfile.enrollments,delta\n";
        let header = |text: &str| text.lines().next().unwrap_or_default().to_owned() + "\n";
        let day = "2026-09-02T02:00:00Z";
        vec![
            ("manifest.csv", manifest.to_owned()),
            (
                "classes.csv",
                header(CLASSES)
                    + &format!("k3,active,{day},Studio Art,,c2,,scheduled,,s2,t1,,05153,\n"),
            ),
            (
                "users.csv",
                header(USERS_1_2)
                    + &format!(
                        "u-stu,active,{day},true,ana,\"{{studentNumber:1001}},{{stateId:ST-1}},{{SIS:S-1}}\",Anita,Lopez,María,ID-1,ana@example.org,03,secret,s1\n\
                         u-co,tobedeleted,{day},true,cora,,Cora,Jones,,ID-8,,,,s1\n\
                         u-new,active,{day},true,nu,,Nu,New,,ID-3,,01,,s1\n"
                    ),
            ),
            (
                "roles.csv",
                header(ROLES)
                    + &format!(
                        "r4,tobedeleted,{day},u-co,primary,teacher,,,s1,\nr20,active,{day},u-new,primary,student,,,s1,\n"
                    ),
            ),
            (
                "enrollments.csv",
                header(ENROLLMENTS)
                    + &format!(
                        "e1,tobedeleted,{day},k1,s1,u-co,teacher,false,,\ne12,active,{day},k2,s1,u-new,student,,,\n"
                    ),
            ),
        ]
    }

    /// Origins name lines of different files (a bulk's, a delta's): everything else must agree.
    fn without_origins(mut snapshot: Snapshot) -> Snapshot {
        for q in &mut snapshot.quarantine {
            q.origin = None;
        }
        snapshot
    }

    #[tokio::test]
    async fn a_delta_applied_to_a_bulk_equals_the_bulk_of_the_later_feed() {
        let bulk = pull_files(&feed_1_2(), None).await.expect("bulk");
        let delta = pull_files(&delta_1_2(), Some(&bulk.roster))
            .await
            .expect("delta");
        assert_eq!(delta.kind, FeedKind::Delta);
        assert!(
            delta
                .note
                .starts_with("delta of 4 files over the roster of "),
            "{}",
            delta.note
        );
        let later = snapshot(&feed_1_2_later()).await;
        let ana = delta.snapshot.students.iter().find(|s| s.id == "u-stu");
        assert_eq!(ana.and_then(|s| s.name.first.as_deref()), Some("Anita"));
        assert!(delta.snapshot.teachers.iter().all(|t| t.id != "u-co"));
        assert_eq!(without_origins(delta.snapshot), without_origins(later));

        // A second delta applies to the roster the first returned.
        let again = replace(delta_1_2(), "classes.csv", "Studio Art", "Sculpture");
        let again = pull_files(&again, Some(&delta.roster))
            .await
            .expect("second delta");
        assert_eq!(again.snapshot.sections[2].name, "Sculpture");
        assert_eq!(again.snapshot.students.len(), 3);
    }

    #[tokio::test]
    async fn a_delta_without_a_previous_roster_is_refused() {
        let error = pull_files(&delta_1_2(), None).await.expect_err("no roster");
        assert!(
            error
                .to_string()
                .starts_with("a delta needs a bulk load first: "),
            "{error}"
        );
        // A plain pull (what `rosterflow run` and `pull --record` do) has no roster either.
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), &delta_1_2());
        let source = crate::config::SourceConfig::OneRosterCsv(config(dir.path()));
        let error = crate::pull(&source, Some("springfield"), None)
            .await
            .expect_err("no roster");
        assert!(
            matches!(error, ExtractError::DeltaWithoutBulk { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_delta_of_another_version_than_the_roster_is_refused() {
        let bulk = pull_files(&feed_1_1(), None).await.expect("bulk");
        let error = pull_files(&delta_1_2(), Some(&bulk.roster))
            .await
            .expect_err("1.2 over 1.1");
        assert!(error.to_string().contains("send a bulk feed"), "{error}");
    }

    /// A second district beside d1: a school, a class, a course and a user of its own.
    fn two_districts() -> Vec<(&'static str, String)> {
        let files = with_rows(
            feed_1_2(),
            "orgs.csv",
            "d2,,,Capital City,district,,st1\ns9,,,Capital High,school,,d2\n",
        );
        let files = with_rows(
            files,
            "classes.csv",
            "k9,,,Civics,,c9,,scheduled,,s9,t1,,,\n",
        );
        let files = with_rows(files, "courses.csv", "c9,,,y1,Civics,,,d2,,\n");
        let files = with_rows(files, "users.csv", "u9,,,true,nine,,Nine,Other,,,,,,\n");
        let files = with_rows(files, "roles.csv", "r99,,,u9,primary,teacher,,,s9,\n");
        with_rows(files, "enrollments.csv", "e99,,,k9,s9,u9,teacher,true,,\n")
    }

    #[tokio::test]
    async fn several_district_orgs_need_source_district() {
        let error = pull_files(&two_districts(), None)
            .await
            .expect_err("ambiguous");
        let message = error.to_string();
        assert!(
            message.contains("\"d1\"")
                && message.contains("\"d2\"")
                && message.contains("source.district"),
            "{message}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), &two_districts());
        let config = OneRosterCsvConfig {
            district: Some("d1".into()),
            ..config(dir.path())
        };
        let s = pull_csv(&config, None).await.expect("pull").snapshot;
        assert_eq!(s.district.id, "d1");
        assert_eq!(ids(&s.schools, |r| &r.id), ["s1", "s2"]);
        assert_eq!(ids(&s.sections, |r| &r.id), ["k1", "k2", "k3"]);
        assert!(s.courses.iter().all(|c| c.id != "c9"));
        assert!(s.teachers.iter().all(|t| t.id != "u9"));
        assert_eq!(
            s.skipped.other_district, 4,
            "a school, a course, a class and a user"
        );
        let kinds: Vec<&str> = s
            .other_district_examples
            .iter()
            .map(|r| r.kind.as_str())
            .collect();
        assert_eq!(kinds, ["org", "course", "class", "user"]);
        assert!(s.other_district_examples.iter().any(|r| r.id == "u9"));
        let single = snapshot(&feed_1_2()).await;
        assert_eq!(
            s.quarantine, single.quarantine,
            "nothing of d2 is quarantined"
        );

        let wrong = OneRosterCsvConfig {
            district: Some("d3".into()),
            ..config
        };
        let error = pull_csv(&wrong, None).await.expect_err("no such district");
        assert!(
            matches!(error, ExtractError::WrongDistrict { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_feed_without_a_district_org_is_refused() {
        let files = replace(
            feed_1_2(),
            "orgs.csv",
            "Springfield District,district,",
            "Springfield District,local,",
        );
        let error = pull_files(&files, None).await.expect_err("no district");
        assert!(matches!(error, ExtractError::NoDistrictOrg), "{error}");
    }

    #[tokio::test]
    async fn a_recording_reads_back_as_the_same_feed() {
        let source_dir = tempfile::tempdir().expect("temp dir");
        // Extra files are not recorded: only what the manifest sends.
        let files = with_rows(feed_1_2(), "orgs.csv", "");
        write(source_dir.path(), &files);
        std::fs::write(source_dir.path().join("demographics.csv"), "sourcedId\n").expect("extra");
        let out = tempfile::tempdir().expect("temp dir");
        let copy = out.path().join("copy");
        let recorder = Recorder::create(&copy).expect("recorder");
        let source = crate::config::SourceConfig::OneRosterCsv(config(source_dir.path()));
        let original = crate::pull(&source, None, Some(&recorder))
            .await
            .expect("pull");
        let mut names: Vec<String> = std::fs::read_dir(&copy)
            .expect("copy")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "academicSessions.csv",
                "classes.csv",
                "courses.csv",
                "enrollments.csv",
                "manifest.csv",
                "orgs.csv",
                "roles.csv",
                "users.csv"
            ]
        );
        assert_eq!(
            std::fs::read(copy.join("users.csv")).expect("copy"),
            USERS_1_2.as_bytes()
        );
        let replayed = crate::pull(
            &crate::config::SourceConfig::OneRosterCsv(config(&copy)),
            None,
            None,
        )
        .await
        .expect("replay");
        assert_eq!(replayed, original);
    }

    #[tokio::test]
    async fn an_object_store_folder_or_zip_reads_like_a_local_one() {
        let local = snapshot(&feed_1_2()).await;
        let dir = tempfile::tempdir().expect("temp dir");
        write(&dir.path().join("feed"), &feed_1_2());
        let url = url::Url::from_directory_path(dir.path().join("feed")).expect("url");
        let folder = OneRosterCsvConfig {
            path: url.to_string(),
            ..config(dir.path())
        };
        assert!(folder.path.starts_with("file:///") && folder.path.ends_with('/'));
        assert_eq!(
            pull_csv(&folder, None).await.expect("folder").snapshot,
            local
        );

        let entries: Vec<(&str, Vec<u8>)> = feed_1_2()
            .into_iter()
            .map(|(name, text)| (name, text.into_bytes()))
            .collect();
        std::fs::write(dir.path().join("feed.zip"), zip(&entries)).expect("zip");
        let url = url::Url::from_file_path(dir.path().join("feed.zip")).expect("url");
        let zipped = OneRosterCsvConfig {
            path: url.to_string(),
            ..config(dir.path())
        };
        assert_eq!(pull_csv(&zipped, None).await.expect("zip").snapshot, local);

        let missing = OneRosterCsvConfig {
            path: url.to_string().replace("feed.zip", "none.zip"),
            ..config(dir.path())
        };
        let error = pull_csv(&missing, None).await.expect_err("no object");
        assert!(error.to_string().contains("no such object"), "{error}");
    }

    /// The names are stored with each run.
    #[test]
    fn feed_kinds_and_the_checkpoint_cursor_keep_their_stored_names() {
        assert!(!rosterflow_model::is_clever_id(CHECKPOINT_CURSOR));
        assert_eq!(CHECKPOINT_CURSOR, "oneroster-csv");
        let names: Vec<&str> = <FeedKind as strum::VariantArray>::VARIANTS
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(names, ["bulk", "delta"]);
    }
}
