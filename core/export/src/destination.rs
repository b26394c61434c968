//! Where export files land: a local directory, or an object store (S3, GCS, Azure, or a
//! `file://` URL through the same code path) by URL.
//!
//! Every file is written to a temporary file first. In a local directory that file sits next to
//! its final name (hidden, ending in `.tmp`) and is renamed over it once complete; for an object
//! store it sits in the system temp directory and is uploaded in one put (multipart above a few
//! MB), which the store makes visible only when complete. A file that fails is never renamed or
//! uploaded, and its temporary file is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use rosterflow_storage::{Scheme, StoreUrl};
use tokio::io::AsyncWriteExt;

use super::ExportError;
use super::file::Output;

/// A destination as configured: not yet connected.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    Local(PathBuf),
    Store {
        url: StoreUrl,
        options: BTreeMap<String, String>,
    },
}

impl Destination {
    /// Reads `dir`: a store URL, or else a local path. Returns a problem to report.
    pub fn parse(dir: &str, options: &BTreeMap<String, String>) -> Result<Destination, String> {
        let Some(url) = StoreUrl::parse(dir) else {
            return Ok(Destination::Local(PathBuf::from(dir)));
        };
        let url = url?;
        url.check_options(options)?;
        Ok(Destination::Store {
            url,
            options: options.clone(),
        })
    }

    /// Builds the store client (credentials from the environment). Nothing is contacted yet.
    pub fn open(self) -> Result<OpenDestination, ExportError> {
        match self {
            Destination::Local(dir) => Ok(OpenDestination::Local(dir)),
            Destination::Store { url, options } => {
                let shown = url.shown().to_owned();
                if url.scheme() == Scheme::File {
                    let root = url.url().to_file_path().unwrap_or_default();
                    std::fs::create_dir_all(&root).map_err(|source| ExportError::Io {
                        path: root.clone(),
                        source,
                    })?;
                }
                let (store, prefix) =
                    url.open(&options)
                        .map_err(|source| ExportError::StoreConfig {
                            url: shown.clone(),
                            source,
                        })?;
                Ok(OpenDestination::Store {
                    store,
                    prefix,
                    shown,
                })
            }
        }
    }
}

/// A destination ready to take files.
pub(crate) enum OpenDestination {
    Local(PathBuf),
    Store {
        store: Arc<dyn ObjectStore>,
        prefix: StorePath,
        /// The URL as shown in reports and errors.
        shown: String,
    },
}

/// A temporary file waiting to become `key`.
pub(crate) struct Staged {
    temp: tempfile::NamedTempFile,
    /// The final local path (local destinations only).
    target: Option<PathBuf>,
}

impl Staged {
    /// A handle the encoder writes through.
    pub fn writer(&self) -> Result<Output, ExportError> {
        let path = self.temp.path().to_path_buf();
        let file = self
            .temp
            .as_file()
            .try_clone()
            .map_err(|source| ExportError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Output { file, path })
    }
}

impl OpenDestination {
    /// A new temporary file for `key` (a `/`-separated relative path).
    pub fn stage(&self, key: &str) -> Result<Staged, ExportError> {
        let (dir, target) = match self {
            OpenDestination::Local(root) => {
                let target = root.join(key);
                let dir = target.parent().unwrap_or(root).to_path_buf();
                std::fs::create_dir_all(&dir).map_err(|source| ExportError::Io {
                    path: dir.clone(),
                    source,
                })?;
                (dir, Some(target))
            }
            OpenDestination::Store { .. } => (std::env::temp_dir(), None),
        };
        let name = Path::new(key)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("export");
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|source| ExportError::Io { path: dir, source })?;
        Ok(Staged { temp, target })
    }

    /// Puts the finished file in place and says where it is.
    pub async fn commit(&self, staged: Staged, key: &str) -> Result<String, ExportError> {
        match self {
            OpenDestination::Local(_) => {
                let target = staged.target.unwrap_or_else(|| PathBuf::from(key));
                staged.temp.persist(&target).map_err(|e| ExportError::Io {
                    path: target.clone(),
                    source: e.error,
                })?;
                // Make the rename itself durable.
                if let Some(dir) = target.parent()
                    && let Ok(dir) = std::fs::File::open(dir)
                {
                    let _ = dir.sync_all();
                }
                Ok(target.display().to_string())
            }
            OpenDestination::Store {
                store,
                prefix,
                shown,
            } => {
                let url = format!("{shown}/{key}");
                let upload = |source| ExportError::Upload {
                    url: url.clone(),
                    source,
                };
                let mut location = prefix.clone();
                for part in key.split('/') {
                    location = location.join(part);
                }
                let mut file =
                    tokio::fs::File::open(staged.temp.path())
                        .await
                        .map_err(|source| ExportError::Io {
                            path: staged.temp.path().to_path_buf(),
                            source,
                        })?;
                let mut writer = object_store::buffered::BufWriter::new(store.clone(), location);
                if let Err(error) = tokio::io::copy(&mut file, &mut writer).await {
                    // Best effort: a failed abort leaves only an incomplete multipart upload,
                    // which is never visible as an object.
                    let _ = writer.abort().await;
                    return Err(upload(error));
                }
                // Shutdown puts the object or completes the multipart upload, which aborts itself
                // when that fails; the writer can no longer be aborted (object_store panics).
                writer.shutdown().await.map_err(upload)?;
                drop(staged);
                Ok(url)
            }
        }
    }
}
