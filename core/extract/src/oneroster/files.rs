//! Where a feed is, and reading its files: a local directory or `.zip`, or an object store by
//! URL (`s3://bucket/feed.zip`, `s3://bucket/prefix/` for a folder, `gs://`, `az://`,
//! `file:///`). The manifest is read first; then every file it marks bulk or delta, and only
//! those. Everything is read into memory: a zip is never extracted to disk, and an archive
//! with an entry whose name would leave it (`../x`, `/etc/x`) is refused whole.

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use rosterflow_storage::StoreUrl;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use super::manifest::{self, CsvFile, MANIFEST, Manifest, Mode};
use crate::config::OneRosterCsvConfig;
use crate::{ExtractError, Recorder};

/// A feed's files, read.
#[derive(Debug)]
pub(crate) struct Feed {
    /// Where it was read from, for messages.
    pub location: String,
    pub manifest: Manifest,
    /// `manifest.csv` as read, for a recording.
    pub manifest_bytes: Vec<u8>,
    /// Each file the manifest sends, as read, in [`CsvFile::ALL`] order.
    pub files: Vec<(CsvFile, Mode, Vec<u8>)>,
}

impl Feed {
    /// Copies the manifest and every file read into `recorder`'s directory, byte for byte:
    /// pointing `source.path` at it reads the same feed again.
    pub(crate) fn record(&self, recorder: &Recorder) -> Result<(), ExtractError> {
        recorder.save_file(MANIFEST, &self.manifest_bytes)?;
        for (file, _, bytes) in &self.files {
            recorder.save_file(file.file_name(), bytes)?;
        }
        Ok(())
    }
}

/// Where `source.path` points, parsed without any I/O.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    Dir(PathBuf),
    Zip(PathBuf),
    Store {
        url: StoreUrl,
        /// An archive (`.zip`), or else a folder (the URL ends with `/`).
        zip: bool,
    },
}

fn is_zip_name(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".zip")
}

impl Location {
    /// Reads `path`: a store URL, or else a local path (a `.zip` or a directory). Returns the
    /// problem to report.
    pub(crate) fn parse(path: &str) -> Result<Location, String> {
        let Some(url) = StoreUrl::parse(path) else {
            let path = PathBuf::from(path);
            return Ok(if is_zip_name(&path.to_string_lossy()) {
                Location::Zip(path)
            } else {
                Location::Dir(path)
            });
        };
        let url = url?;
        let zip = is_zip_name(url.url().path());
        if !zip && !url.url().path().ends_with('/') {
            return Err(format!(
                "{path:?} names neither a .zip nor a folder: end a folder's URL with /"
            ));
        }
        Ok(Location::Store { url, zip })
    }

    /// Checks `storage_options` for this location: settings of its store, never credentials.
    pub(crate) fn check_options(&self, options: &BTreeMap<String, String>) -> Result<(), String> {
        match self {
            Location::Store { url, .. } => url.check_options(options),
            Location::Dir(_) | Location::Zip(_) if options.is_empty() => Ok(()),
            Location::Dir(_) | Location::Zip(_) => {
                Err("only apply to an object-store URL (s3://, gs://, az://)".to_owned())
            }
        }
    }
}

/// Reads the feed `config` points at: its manifest, then each file the manifest sends. Local
/// files are read off the reactor.
pub(crate) async fn read(config: &OneRosterCsvConfig) -> Result<Feed, ExtractError> {
    let location = Location::parse(&config.path)
        .and_then(|location| {
            location
                .check_options(&config.storage_options)
                .map_err(|problem| format!("storage_options: {problem}"))?;
            Ok(location)
        })
        .map_err(|reason| ExtractError::Location {
            path: config.path.clone(),
            reason,
        })?;
    match location {
        Location::Dir(dir) => rosterflow_model::blocking(|| read_dir(&dir)),
        Location::Zip(path) => rosterflow_model::blocking(|| {
            let bytes = std::fs::read(&path).map_err(|source| ExtractError::Io {
                path: path.clone(),
                source,
            })?;
            read_zip(bytes, &path.display().to_string())
        }),
        Location::Store { url, zip } => {
            let shown = url.url().as_str().to_owned();
            let (store, path) =
                url.open(&config.storage_options)
                    .map_err(|error| ExtractError::Location {
                        path: shown.clone(),
                        reason: error.to_string(),
                    })?;
            if zip {
                let bytes = get(store.as_ref(), &path, &shown).await?.ok_or_else(|| {
                    ExtractError::Location {
                        path: shown.clone(),
                        reason: "no such object".to_owned(),
                    }
                })?;
                rosterflow_model::blocking(|| read_zip(bytes, &shown))
            } else {
                read_store_folder(store.as_ref(), &path, &shown).await
            }
        }
    }
}

/// Reads the manifest (`None`: there is none) and, through `fetch`, each file it sends.
fn assemble(
    location: &str,
    manifest_bytes: Option<Vec<u8>>,
    mut fetch: impl FnMut(&'static str) -> Result<Option<Vec<u8>>, ExtractError>,
) -> Result<Feed, ExtractError> {
    let manifest_bytes = manifest_bytes.ok_or_else(|| ExtractError::NoManifest {
        location: location.to_owned(),
    })?;
    let manifest = manifest::parse(&manifest_bytes, location)?;
    let mut files = Vec::with_capacity(manifest.files.len());
    for &(file, mode) in &manifest.files {
        let bytes = fetch(file.file_name())?.ok_or_else(|| ExtractError::MissingFile {
            location: location.to_owned(),
            file: file.file_name(),
            mode: mode.as_str(),
        })?;
        files.push((file, mode, bytes));
    }
    Ok(Feed {
        location: location.to_owned(),
        manifest,
        manifest_bytes,
        files,
    })
}

fn read_dir(dir: &Path) -> Result<Feed, ExtractError> {
    let read = |name: &str| {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ExtractError::Io { path, source }),
        }
    };
    assemble(&dir.display().to_string(), read(MANIFEST)?, read)
}

/// The most one file of a zipped feed may inflate to: a 1M-student district's enrollments are
/// well under 1 GiB.
const MAX_ENTRY_BYTES: u64 = 2 << 30;

/// Reads a feed zipped, from memory. The files may sit at the archive's root or in one
/// top-level folder (`feed/manifest.csv`), as zipping a folder makes them.
pub(crate) fn read_zip(bytes: Vec<u8>, location: &str) -> Result<Feed, ExtractError> {
    let refuse = |reason: String| ExtractError::Zip {
        location: location.to_owned(),
        reason,
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|error| refuse(format!("not a readable zip archive ({error})")))?;
    if let Some(name) = archive.file_names().find(|name| escapes(name)) {
        return Err(refuse(format!(
            "the entry {name:?} would lie outside the archive: refusing the archive"
        )));
    }
    let folder = manifest_folder(&archive).map_err(refuse)?;
    let mut read = |name: &str| {
        let entry = format!("{folder}{name}");
        let mut file = match archive.by_name(&entry) {
            Ok(file) => file,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(error) => return Err(refuse(format!("cannot read {entry}: {error}"))),
        };
        // The declared size is a hint only: never trust it for more than a start, and stop an
        // entry that inflates past what any district's file holds (a zip bomb).
        let mut bytes = Vec::with_capacity(file.size().min(1 << 26) as usize);
        file.by_ref()
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| refuse(format!("cannot read {entry}: {error}")))?;
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return Err(refuse(format!(
                "{entry} inflates to more than {} GiB: refusing the archive",
                MAX_ENTRY_BYTES >> 30
            )));
        }
        Ok(Some(bytes))
    };
    let manifest = read(MANIFEST)?;
    assemble(location, manifest, read)
}

/// Whether a zip entry's name leaves the archive: absolute, a drive, or a `..` part.
fn escapes(name: &str) -> bool {
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    name.starts_with(['/', '\\']) || drive || name.split(['/', '\\']).any(|part| part == "..")
}

/// The folder (`""` or `"name/"`) that holds `manifest.csv`: the root, or else the one
/// top-level folder that has one.
fn manifest_folder<R: Read + std::io::Seek>(
    archive: &zip::ZipArchive<R>,
) -> Result<String, String> {
    let mut folders: Vec<&str> = Vec::new();
    for name in archive.file_names() {
        if name == MANIFEST {
            return Ok(String::new());
        }
        if let Some((folder, MANIFEST)) = name.split_once('/')
            && !folder.is_empty()
            && folder != "__MACOSX"
        {
            folders.push(folder);
        }
    }
    match folders.as_slice() {
        [] | [_] => Ok(folders.first().map(|f| format!("{f}/")).unwrap_or_default()),
        several => Err(format!(
            "holds several feeds ({}): zip one feed per archive",
            several.join(", ")
        )),
    }
}

/// One object, or `None` when there is none.
async fn get(
    store: &dyn ObjectStore,
    path: &StorePath,
    shown: &str,
) -> Result<Option<Vec<u8>>, ExtractError> {
    let error = |source| ExtractError::Store {
        url: shown.to_owned(),
        source,
    };
    match store.get(path).await {
        Ok(found) => Ok(Some(found.bytes().await.map_err(error)?.to_vec())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(error(source)),
    }
}

/// A feed in an object-store folder: the manifest, then each file it sends.
async fn read_store_folder(
    store: &dyn ObjectStore,
    prefix: &StorePath,
    shown: &str,
) -> Result<Feed, ExtractError> {
    let object = |name: &str| (prefix.clone().join(name), format!("{shown}{name}"));
    let (path, url) = object(MANIFEST);
    let manifest_bytes = get(store, &path, &url).await?;
    let mut fetched: HashMap<&'static str, Vec<u8>> = HashMap::new();
    if let Some(bytes) = &manifest_bytes {
        let manifest = manifest::parse(bytes, shown)?;
        for (file, _) in manifest.files {
            let (path, url) = object(file.file_name());
            if let Some(bytes) = get(store, &path, &url).await? {
                fetched.insert(file.file_name(), bytes);
            }
        }
    }
    rosterflow_model::blocking(|| assemble(shown, manifest_bytes, |name| Ok(fetched.remove(name))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_folders_zips_or_store_urls() {
        assert!(matches!(
            Location::parse("feeds/today"),
            Ok(Location::Dir(_))
        ));
        assert!(matches!(
            Location::parse("feeds/Today.ZIP"),
            Ok(Location::Zip(_))
        ));
        assert!(matches!(
            Location::parse("s3://bucket/feeds/today.zip"),
            Ok(Location::Store { zip: true, .. })
        ));
        assert!(matches!(
            Location::parse("s3://bucket/feeds/today/"),
            Ok(Location::Store { zip: false, .. })
        ));
        for (path, expected) in [
            ("s3://bucket/feeds/today", "end a folder's URL with /"),
            ("ftp://host/feed.zip", "unsupported scheme"),
            (
                "s3://key:secret@bucket/feed.zip",
                "credentials do not belong",
            ),
        ] {
            let problem = Location::parse(path).expect_err(path);
            assert!(problem.contains(expected), "{path}: {problem}");
        }
    }

    #[test]
    fn storage_options_are_store_settings_but_never_credentials() {
        let check = |path: &str, key: &str| {
            let options = BTreeMap::from([(key.to_owned(), "x".to_owned())]);
            Location::parse(path)
                .expect("a location")
                .check_options(&options)
        };
        assert!(check("s3://b/f.zip", "aws_region").is_ok());
        let problem = check("s3://b/f.zip", "secret_access_key").expect_err("a credential");
        assert!(
            problem.contains("set AWS_SECRET_ACCESS_KEY in the environment"),
            "{problem}"
        );
        assert!(check("s3://b/f.zip", "colour").is_err());
        assert!(check("file:///srv/f.zip", "aws_region").is_err());
        assert!(check("local/dir", "aws_region").is_err());
    }

    #[test]
    fn zip_entries_that_leave_the_archive_are_recognised() {
        for bad in [
            "../x.csv",
            "a/../../x.csv",
            "/etc/passwd",
            "\\x.csv",
            "C:\\x.csv",
            "a\\..\\x",
        ] {
            assert!(escapes(bad), "{bad}");
        }
        for good in [
            "users.csv",
            "feed/users.csv",
            "a..b.csv",
            "feed/..x/users.csv",
        ] {
            assert!(!escapes(good), "{good}");
        }
    }
}
