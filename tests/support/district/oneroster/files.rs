//! The CSV files of a OneRoster feed: bulk (every record, `status` and `dateLastModified`
//! blank) and delta (the records that changed), and `manifest.csv`. RFC 4180 through the `csv`
//! crate (quoted when needed), CRLF line ends.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use super::entity::{Entity, headers};
use super::feed::Feed;
use super::{OneRosterFile, OneRosterVersion};

/// The records of one file.
fn entities(feed: &Feed, file: OneRosterFile) -> Vec<&dyn Entity> {
    fn all<T: Entity>(records: &[T]) -> Vec<&dyn Entity> {
        records.iter().map(|r| r as &dyn Entity).collect()
    }
    match file {
        OneRosterFile::Orgs => all(&feed.orgs),
        OneRosterFile::AcademicSessions => all(&feed.sessions),
        OneRosterFile::Courses => all(&feed.courses),
        OneRosterFile::Classes => all(&feed.classes),
        OneRosterFile::Users => all(&feed.users),
        OneRosterFile::Roles => feed.roles().map(|r| r as &dyn Entity).collect(),
        OneRosterFile::Enrollments => all(&feed.enrollments),
    }
}

/// The files a feed of that version writes.
fn files(version: OneRosterVersion) -> impl Iterator<Item = OneRosterFile> {
    OneRosterFile::ALL
        .into_iter()
        .filter(move |f| f.in_version(version))
}

fn writer(path: &Path) -> io::Result<csv::Writer<fs::File>> {
    Ok(csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_path(path)?)
}

/// Writes one data file: the header row, then `sourcedId,status,dateLastModified,cells...` per
/// row.
fn write_file(
    dir: &Path,
    file: OneRosterFile,
    version: OneRosterVersion,
    rows: &[(&str, &str, &str, Vec<String>)],
) -> io::Result<()> {
    let mut out = writer(&dir.join(file.file_name()))?;
    out.write_record(headers(file, version))?;
    for (id, status, modified, cells) in rows {
        out.write_record(
            [*id, *status, *modified]
                .into_iter()
                .chain(cells.iter().map(String::as_str)),
        )?;
    }
    out.flush()
}

/// Writes `manifest.csv`: the versions and each of the version's files with its mode.
fn write_manifest(
    dir: &Path,
    version: OneRosterVersion,
    modes: &HashMap<&'static str, &'static str>,
) -> io::Result<()> {
    let mut out = writer(&dir.join("manifest.csv"))?;
    out.write_record(["propertyName", "value"])?;
    out.write_record(["manifest.version", "1.0"])?;
    out.write_record(["oneroster.version", version.number()])?;
    for name in version.manifest_files() {
        let mode = modes.get(name).copied().unwrap_or("absent");
        out.write_record([format!("file.{name}").as_str(), mode])?;
    }
    out.flush()
}

pub(crate) fn write_bulk(feed: &Feed, dir: &Path, version: OneRosterVersion) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut modes = HashMap::new();
    for file in files(version) {
        let rows: Vec<_> = entities(feed, file)
            .into_iter()
            .map(|e| (e.id(), "", "", e.cells(version)))
            .collect();
        write_file(dir, file, version, &rows)?;
        modes.insert(file.name(), "bulk");
    }
    write_manifest(dir, version, &modes)
}

pub(crate) fn write_delta(
    old: &Feed,
    new: &Feed,
    dir: &Path,
    version: OneRosterVersion,
    modified: &str,
) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut modes = HashMap::new();
    for file in files(version) {
        let before = entities(old, file);
        let after = entities(new, file);
        let old_rows: HashMap<&str, Vec<String>> =
            before.iter().map(|e| (e.id(), e.cells(version))).collect();
        let kept: HashSet<&str> = after.iter().map(|e| e.id()).collect();
        let mut rows = Vec::new();
        for e in &after {
            let cells = e.cells(version);
            if old_rows.get(e.id()) != Some(&cells) {
                rows.push((e.id(), "active", modified, cells));
            }
        }
        for e in &before {
            if !kept.contains(e.id()) {
                rows.push((e.id(), "tobedeleted", modified, e.cells(version)));
            }
        }
        if !rows.is_empty() {
            write_file(dir, file, version, &rows)?;
            modes.insert(file.name(), "delta");
        }
    }
    write_manifest(dir, version, &modes)
}
