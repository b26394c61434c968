//! Fuzzing OneRoster CSV feeds as a pull reads them, zipped: arbitrary bytes for the archive
//! and for each file; and a valid 1.2 feed whose files lose columns and rows, gain odd cells
//! (ids with `/`, `..`, `|`, empty, huge, control characters), broken quoting, a BOM, CRLF, or
//! are cut short; then a delta over it. A feed is loaded or refused with a clear error, and
//! its snapshot keeps every promise ([`check_snapshot`]).

use std::io::Write;

use chrono::TimeZone;
use proptest::prelude::*;

use super::manifest::CsvFile;
use super::*;
use crate::config::SisIdSource;
use crate::fuzz::{cases, check_snapshot, odd_text};

/// A small 1.2 district: each file as its header and rows, ids with `/`, `..` and `|`.
fn district() -> Vec<(CsvFile, Vec<Vec<String>>)> {
    let table = |text: &str| -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| {
                r.expect("a fixture row")
                    .iter()
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    };
    vec![
        (
            CsvFile::Orgs,
            table(
                "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId
d1,,,District,district,D-1,
s/1,,,School One,school,S-1,d1
s..2,,,School Two,school,,d1
",
            ),
        ),
        (
            CsvFile::AcademicSessions,
            table(
                "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear
t|1,,,Fall,term,2026-08-15,2026-12-20,,2027
y1,,,Year,schoolYear,2026-07-01,2027-06-30,,2027
",
            ),
        ),
        (
            CsvFile::Courses,
            table(
                "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes
c1,,,y1,Math,M1,03,d1,math,
",
            ),
        ),
        (
            CsvFile::Classes,
            table(
                "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods
k1,,,Math 3,\"03,04\",c1,M3,scheduled,,s/1,\"t|1,y1\",Algebra,,\"1,2\"
k2,,,Homeroom,KG,,HR,homeroom,,s..2,t|1,,05153,
",
            ),
        ),
        (
            CsvFile::Users,
            table(
                "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,grades,password,primaryOrgSourcedId
u1,,,true,ana,\"{studentNumber:1},{SIS:S-1}\",Ana,Lopez,,ID-1,ana@example.org,03,hunter2,s/1
u2,,,true,tom,{teacherNumber:T-9},Tom,Smith,,ID-2,tom@example.org,,,s/1
u3,,,true,bo,,Bo,Both,,ID-3,,,,s..2
u4,,,true,ada,,Ada,Admin,,ID-4,,,,
u5,,,false,olga,,Olga,Off,,,,,,
",
            ),
        ),
        (
            CsvFile::Roles,
            table(
                "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId
r1,,,u1,primary,student,,,s/1,
r2,,,u2,primary,teacher,,,s/1,
r3,,,u3,primary,teacher,,,s..2,
r4,,,u3,secondary,student,,,s..2,
r5,,,u4,primary,districtAdministrator,,,d1,
r6,,,u5,primary,student,,,s/1,
",
            ),
        ),
        (
            CsvFile::Enrollments,
            table(
                "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate
e1,,,k1,s/1,u2,teacher,true,,
e2,,,k1,s/1,u1,student,,,
e3,,,k2,s..2,u3,teacher,true,,
e4,,,k2,s..2,u1,student,false,,
e5,,,k1,s/1,u3,student,,,
",
            ),
        ),
    ]
}

/// A cell as a feed may bring it.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "d1", "s/1", "s..2", "t|1", "y1", "c1", "k1", "k2", "u1", "u2", "u3", "u4", "u5",
            "true", "false", "TRUE", "active", "tobedeleted", "student", "teacher",
            "districtAdministrator", "administrator", "guardian", "aide", "primary",
            "secondary", "school", "district", "department", "term", "2026-08-15", "03", "KG",
            "x".repeat(256).leak(), "plugin:p:g", "{SIS:1},{stateId}", "a,b", "\"", "\u{0}",
        ])
        .prop_map(str::to_owned),
        2 => odd_text(),
    ]
}

/// A change to one file's table (its header is row 0).
#[derive(Debug, Clone)]
enum Edit {
    /// A cell of a record.
    Set(usize, usize, String),
    /// A column's name.
    Rename(usize, String),
    RemoveColumn(usize),
    RemoveRow(usize),
    DoubleRow(usize),
    AddRow(Vec<String>),
    CutRow(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        40 => (any::<usize>(), any::<usize>(), cell()).prop_map(|(r, c, v)| Edit::Set(r, c, v)),
        1 => (any::<usize>(), cell()).prop_map(|(c, v)| Edit::Rename(c, v)),
        1 => any::<usize>().prop_map(Edit::RemoveColumn),
        3 => any::<usize>().prop_map(Edit::RemoveRow),
        3 => any::<usize>().prop_map(Edit::DoubleRow),
        3 => prop::collection::vec(cell(), 0..16).prop_map(Edit::AddRow),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(r, n)| Edit::CutRow(r, n)),
    ]
}

fn edited(mut rows: Vec<Vec<String>>, edits: &[Edit]) -> Vec<Vec<String>> {
    for edit in edits {
        let len = rows.len();
        match edit.clone() {
            Edit::Set(r, c, value) if len > 1 => {
                let row = &mut rows[1 + r % (len - 1)];
                if !row.is_empty() {
                    let at = c % row.len();
                    row[at] = value;
                }
            }
            Edit::Rename(c, name) if len > 0 && !rows[0].is_empty() => {
                let at = c % rows[0].len();
                rows[0][at] = name;
            }
            Edit::RemoveColumn(c) if len > 0 && !rows[0].is_empty() => {
                let at = c % rows[0].len();
                for row in &mut rows {
                    if at < row.len() {
                        row.remove(at);
                    }
                }
            }
            Edit::RemoveRow(r) if len > 0 => {
                rows.remove(r % len);
            }
            Edit::DoubleRow(r) if len > 0 => {
                let row = rows[r % len].clone();
                rows.insert(r % len, row);
            }
            Edit::AddRow(row) => rows.push(row),
            Edit::CutRow(r, n) if len > 0 => {
                let row = &mut rows[r % len];
                row.truncate(n % (row.len() + 1));
            }
            _ => {}
        }
    }
    rows
}

/// How a file's text is written.
#[derive(Debug, Clone)]
struct Encoding {
    bom: bool,
    crlf: bool,
    /// Cells joined by commas without quoting, as a careless export does.
    unquoted: bool,
    /// Cut after this many bytes (of any character).
    cut: Option<usize>,
    /// The whole file replaced by these bytes.
    garbage: Option<Vec<u8>>,
}

fn encoding() -> impl Strategy<Value = Encoding> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.05),
        prop::option::weighted(0.04, any::<usize>()),
        prop::option::weighted(0.02, prop::collection::vec(any::<u8>(), 0..200)),
    )
        .prop_map(|(bom, crlf, unquoted, cut, garbage)| Encoding {
            bom,
            crlf,
            unquoted,
            cut,
            garbage,
        })
}

fn written(rows: &[Vec<String>], encoding: &Encoding) -> Vec<u8> {
    if let Some(garbage) = &encoding.garbage {
        return garbage.clone();
    }
    let terminator = if encoding.crlf { "\r\n" } else { "\n" };
    let mut bytes = if encoding.bom {
        b"\xEF\xBB\xBF".to_vec()
    } else {
        Vec::new()
    };
    if encoding.unquoted {
        for row in rows {
            bytes.extend(row.join(",").bytes());
            bytes.extend(terminator.bytes());
        }
    } else {
        let mut writer = csv::WriterBuilder::new()
            .flexible(true)
            .terminator(if encoding.crlf {
                csv::Terminator::CRLF
            } else {
                csv::Terminator::Any(b'\n')
            })
            .from_writer(Vec::new());
        for row in rows {
            writer.write_record(row).expect("in memory");
        }
        bytes.extend(writer.into_inner().expect("in memory"));
    }
    if let Some(cut) = encoding.cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

/// A feed's files as bytes, by file name, `manifest.csv` first.
type Files = Vec<(String, Vec<u8>)>;

fn manifest(mode: &str, files: &[CsvFile]) -> Vec<u8> {
    let mut text = "propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\n".to_owned();
    for file in files {
        text.push_str(&format!("file.{},{mode}\n", file.name()));
    }
    text.into_bytes()
}

/// The district, changed: each file edited and written its own way, the manifest sometimes
/// changed too; `mode` is `bulk` or `delta` (delta files get a `status` of any value).
fn feed(mode: &'static str) -> impl Strategy<Value = Files> {
    let tables = district();
    let files: Vec<CsvFile> = tables.iter().map(|(file, _)| *file).collect();
    let per_file = tables
        .into_iter()
        .map(|(file, rows)| {
            (
                prop::collection::vec(edit(), 0..3),
                encoding(),
                prop::bool::weighted(0.97),
                prop::collection::vec(
                    prop::sample::select(vec!["active", "active", "tobedeleted", "", "gone"]),
                    8,
                ),
            )
                .prop_map(move |(edits, encoding, sent, statuses)| {
                    let mut rows = edited(rows.clone(), &edits);
                    if mode == "delta" {
                        for (row, status) in rows.iter_mut().skip(1).zip(&statuses) {
                            if row.len() > 2 {
                                row[1] = (*status).to_owned();
                                row[2] = "2026-09-01".to_owned();
                            }
                        }
                    }
                    (file, sent, written(&rows, &encoding))
                })
        })
        .collect::<Vec<_>>();
    let manifest_damage = prop::option::weighted(
        0.04,
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..100),
            Just(b"propertyName,value\noneroster.version,1.1\nfile.users,bulk\n".to_vec()),
            Just(b"propertyName,value\noneroster.version,1.2\nfile.users,sometimes\n".to_vec()),
            Just(b"value,propertyName\n".to_vec()),
        ],
    );
    (per_file, manifest_damage).prop_map(move |(written, damage)| {
        let sent: Vec<CsvFile> = written
            .iter()
            .filter(|(_, s, _)| *s)
            .map(|(f, _, _)| *f)
            .collect();
        let mut files: Files = vec![(
            "manifest.csv".to_owned(),
            damage.unwrap_or_else(|| manifest(mode, &files_or(&sent, &files))),
        )];
        files.extend(
            written
                .into_iter()
                .filter(|(_, sent, _)| *sent)
                .map(|(file, _, bytes)| (file.file_name().to_owned(), bytes)),
        );
        files
    })
}

/// The files sent, or all of them (a manifest must send something).
fn files_or(sent: &[CsvFile], all: &[CsvFile]) -> Vec<CsvFile> {
    if sent.is_empty() {
        all.to_vec()
    } else {
        sent.to_vec()
    }
}

fn zipped(files: &[(String, Vec<u8>)], folder: &str) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        writer
            .start_file(format!("{folder}{name}"), options)
            .expect("zip entry");
        writer.write_all(bytes).expect("zip write");
    }
    writer.finish().expect("zip").into_inner()
}

fn config(district: Option<&str>, sis_id: SisIdSource) -> OneRosterCsvConfig {
    OneRosterCsvConfig {
        path: "feed.zip".to_owned(),
        storage_options: Default::default(),
        sis_id,
        district: district.map(str::to_owned),
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 2, 30, 0)
        .single()
        .expect("a time")
}

fn is_id(id: &str) -> bool {
    usable_id(id).is_ok()
}

/// Reads `zip` as a pull does, over `previous`; a refusal must be a clear error.
fn pull(
    zip: Vec<u8>,
    config: &OneRosterCsvConfig,
    previous: Option<&[u8]>,
) -> Result<Option<OneRosterPull>, TestCaseError> {
    let refused = |error: ExtractError| -> Result<Option<OneRosterPull>, TestCaseError> {
        let message = error.to_string();
        prop_assert!(!message.trim().is_empty());
        prop_assert!(message.len() < 2000, "a message of {} bytes", message.len());
        Ok(None)
    };
    let feed = match files::read_zip(zip, "feed.zip") {
        Ok(feed) => feed,
        Err(error) => return refused(error),
    };
    match assemble(config, &feed, previous, now()) {
        Ok(pull) => {
            check_snapshot(&pull.snapshot, is_id)?;
            let roster: feed::Roster = packed::unpack(&pull.roster).expect("the roster reads back");
            prop_assert_eq!(roster.version, feed.manifest.version);
            Ok(Some(pull))
        }
        Err(error) => refused(error),
    }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn arbitrary_bytes_are_a_zip_or_a_clear_error(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        pull(bytes, &config(None, SisIdSource::Identifier), None)?;
    }

    /// A valid zip whose bytes were damaged: refused clearly, or read.
    #[test]
    fn a_damaged_zip_is_read_or_refused_clearly(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in prop::option::of(any::<usize>()),
    ) {
        let files: Files = district()
            .into_iter()
            .map(|(file, rows)| (file.file_name().to_owned(), written(&rows, &Encoding {
                bom: false, crlf: false, unquoted: false, cut: None, garbage: None,
            })))
            .collect();
        let all: Vec<CsvFile> = CsvFile::ALL.to_vec();
        let mut with_manifest = vec![("manifest.csv".to_owned(), manifest("bulk", &all))];
        with_manifest.extend(files);
        let mut zip = zipped(&with_manifest, "");
        for (at, byte) in flips {
            let i = at % zip.len();
            zip[i] = byte;
        }
        if let Some(cut) = cut {
            zip.truncate(cut % (zip.len() + 1));
        }
        pull(zip, &config(None, SisIdSource::Identifier), None)?;
    }

    /// A changed bulk feed, then a changed delta over what it loaded.
    #[test]
    fn changed_feeds_keep_the_snapshots_promises(
        bulk in feed("bulk"),
        delta in feed("delta"),
        folder in prop::sample::select(vec!["", "feed/"]),
        district in prop::option::weighted(0.2, prop::sample::select(vec!["d1", "s/1", "nope"])),
        sis_id in prop_oneof![
            Just(SisIdSource::Identifier),
            Just(SisIdSource::UserIdType("SIS".to_owned())),
        ],
    ) {
        let config = config(district, sis_id);
        if let Some(first) = pull(zipped(&bulk, folder), &config, None)? {
            pull(zipped(&delta, folder), &config, Some(&first.roster))?;
        }
    }
}

/// The district as written, read: what the changed feeds start from.
#[test]
fn the_fuzzed_district_reads_whole() {
    let files: Files = district()
        .into_iter()
        .map(|(file, rows)| {
            let encoding = Encoding {
                bom: true,
                crlf: true,
                unquoted: false,
                cut: None,
                garbage: None,
            };
            (file.file_name().to_owned(), written(&rows, &encoding))
        })
        .collect();
    let mut with_manifest = vec![("manifest.csv".to_owned(), manifest("bulk", &CsvFile::ALL))];
    with_manifest.extend(files);
    let pull = pull(
        zipped(&with_manifest, ""),
        &config(None, SisIdSource::Identifier),
        None,
    )
    .expect("the promises hold")
    .expect("a pull");
    let s = &pull.snapshot;
    assert!(s.quarantine.is_empty(), "{:?}", s.quarantine);
    let ids = |ids: Vec<&str>| ids.join(" ");
    assert_eq!(
        ids(s.schools.iter().map(|r| r.id.as_str()).collect()),
        "s..2 s/1"
    );
    assert_eq!(
        ids(s.sections.iter().map(|r| r.id.as_str()).collect()),
        "k1 k2"
    );
    assert_eq!(
        ids(s.students.iter().map(|r| r.id.as_str()).collect()),
        "u1 u3"
    );
    assert_eq!(
        ids(s.teachers.iter().map(|r| r.id.as_str()).collect()),
        "u2 u3"
    );
    assert_eq!(
        s.sections[0].term.as_deref(),
        Some("y1"),
        "the term that starts first"
    );
    assert_eq!(s.sections[0].students, ["u1", "u3"]);
}

/// Found by the fuzzer: a word outside a vocabulary was quoted whole in the record's reason,
/// however long the cell.
#[test]
fn a_long_word_outside_a_vocabulary_is_cut_short_in_its_reason() {
    let mut tables = district();
    let orgs = &mut tables[0].1;
    orgs[2][4] = "x".repeat(5000);
    let mut files = vec![("manifest.csv".to_owned(), manifest("bulk", &CsvFile::ALL))];
    let plain = Encoding {
        bom: false,
        crlf: false,
        unquoted: false,
        cut: None,
        garbage: None,
    };
    files.extend(
        tables
            .iter()
            .map(|(file, rows)| (file.file_name().to_owned(), written(rows, &plain))),
    );
    let pull = pull(
        zipped(&files, ""),
        &config(None, SisIdSource::Identifier),
        None,
    )
    .expect("the promises hold")
    .expect("a pull");
    let reason = &pull
        .snapshot
        .quarantine
        .iter()
        .find(|q| q.id.as_deref() == Some("s/1"))
        .expect("the school is quarantined")
        .reason;
    assert!(reason.starts_with("type \"xxxx"), "{reason}");
    assert!(reason.len() < 200, "{reason}");
}
