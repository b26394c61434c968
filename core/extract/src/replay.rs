//! Replays a recording: a directory of raw Clever pages, `DIR/<collection>/0001.json`, ...,
//! read in order and parsed exactly as if they had come over the network.
//!
//! A recording may lack whole collections: Clever's own demo district has only districts,
//! users and sections. The schools, terms and courses its sections refer to are then
//! synthesised from the references and marked `synthesized`.

use std::path::{Path, PathBuf};

use super::wire::SnapshotBuilder;
use super::{Collection, ExtractError, Recorder};
use rosterflow_model::Snapshot;

/// The file name of page `number` (from 1) in a recording.
pub fn page_file_name(number: usize) -> String {
    format!("{number:04}.json")
}

/// Reads the recording in `dir`; copies every page to `recorder` when given.
pub fn read(
    dir: &Path,
    district: Option<&str>,
    recorder: Option<&Recorder>,
) -> Result<Snapshot, ExtractError> {
    let mut builder = SnapshotBuilder::new(district);
    for collection in Collection::ALL {
        for (number, path) in pages(&dir.join(collection.name()))?.into_iter().enumerate() {
            let body = std::fs::read(&path).map_err(|source| ExtractError::Io {
                path: path.clone(),
                source,
            })?;
            builder.add_page(collection, &body, &path.display().to_string())?;
            if let Some(recorder) = recorder {
                recorder.save(collection, number + 1, &body)?;
            }
        }
    }
    if !builder.has(Collection::Districts) {
        return Err(ExtractError::NotARecording {
            dir: dir.to_owned(),
        });
    }
    builder.finish(true)
}

/// Reads a recording as a snapshot, for tools such as `rosterflow plugin test`.
pub fn read_snapshot(dir: &Path) -> Result<Snapshot, ExtractError> {
    read(dir, None, None)
}

/// The page files of one collection, in page order; none when the collection was not recorded.
fn pages(dir: &Path) -> Result<Vec<PathBuf>, ExtractError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let io = |source| ExtractError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "json") {
            pages.push(path);
        }
    }
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/demo")
    }

    #[test]
    fn the_demo_district_replays_with_synthesised_schools() {
        let snapshot = read_snapshot(&demo()).expect("demo replays");
        assert_eq!(snapshot.district.name, "#DEMO_DISTRICT");
        assert_eq!(snapshot.schools.len(), 3);
        assert!(snapshot.schools.iter().all(|s| s.synthesized));
        assert_eq!(snapshot.terms.len(), 5);
        assert_eq!(snapshot.sections.len(), 378);
        assert_eq!(snapshot.students.len(), 1004);
        assert_eq!(snapshot.teachers.len(), 89);
        assert_eq!(snapshot.admins.len(), 3);
        assert_eq!(snapshot.skipped.contacts, 1002);
        assert!(snapshot.quarantine.is_empty(), "{:?}", snapshot.quarantine);
    }

    #[test]
    fn a_recording_copies_byte_for_byte() {
        let out = tempfile::tempdir().expect("temp dir");
        let copy = out.path().join("copy");
        let recorder = Recorder::create(&copy).expect("recorder");
        read(&demo(), None, Some(&recorder)).expect("demo replays");
        for collection in ["districts", "users", "sections"] {
            let original = std::fs::read(demo().join(collection).join("0001.json"));
            let copied = std::fs::read(copy.join(collection).join("0001.json"));
            assert_eq!(original.expect("original"), copied.expect("copy"));
        }
    }
}
