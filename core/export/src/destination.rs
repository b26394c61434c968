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
use std::str::FromStr;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use tokio::io::AsyncWriteExt;
use url::Url;

use super::ExportError;
use super::file::Output;

/// A destination as configured: not yet connected.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    Local(PathBuf),
    Store {
        url: Url,
        scheme: Scheme,
        options: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    S3,
    Gcs,
    Azure,
    File,
}

/// Object-store settings that are secrets: they come from the environment, never from a pipeline
/// file that is shared and versioned.
const CREDENTIALS: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_sse_customer_key_base64",
    "google_service_account_key",
    "google_bearer_token",
    "azure_storage_account_key",
    "azure_storage_client_secret",
    "azure_storage_sas_key",
    "azure_storage_token",
    "azure_fabric_session_token",
    "azure_storage_encryption_key",
];

impl Destination {
    /// Reads `dir`: a URL with a known scheme, or else a local path. Returns a problem to report.
    pub fn parse(dir: &str, options: &BTreeMap<String, String>) -> Result<Destination, String> {
        if !dir.contains("://") {
            return Ok(Destination::Local(PathBuf::from(dir)));
        }
        let url = Url::parse(dir).map_err(|e| format!("{dir:?} is not a valid URL: {e}"))?;
        let scheme = match url.scheme() {
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" | "azure" | "abfs" | "abfss" | "adl" => Scheme::Azure,
            "file" => Scheme::File,
            other => {
                return Err(format!(
                    "unsupported scheme {other}://: use a local directory, s3://, gs://, az:// or file://"
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials do not belong in the URL: use the AWS_*, GOOGLE_* or AZURE_* environment variables"
                    .to_owned(),
            );
        }
        if scheme == Scheme::File && url.to_file_path().is_err() {
            return Err(format!("{dir:?} is not an absolute file:// path"));
        }
        for key in options.keys() {
            // The setting's canonical name, whichever alias the file used.
            let canonical: Option<String> = match scheme {
                Scheme::S3 => object_store::aws::AmazonS3ConfigKey::from_str(key)
                    .ok()
                    .map(|k| k.as_ref().to_owned()),
                Scheme::Gcs => object_store::gcp::GoogleConfigKey::from_str(key)
                    .ok()
                    .map(|k| k.as_ref().to_owned()),
                Scheme::Azure => object_store::azure::AzureConfigKey::from_str(key)
                    .ok()
                    .map(|k| k.as_ref().to_owned()),
                Scheme::File => None,
            };
            let Some(canonical) = canonical else {
                return Err(format!(
                    "storage option {key:?} is not a setting of the {} store",
                    url.scheme()
                ));
            };
            if CREDENTIALS.contains(&canonical.as_str()) {
                return Err(format!(
                    "storage option {key:?} is a credential: set {} in the environment, not in \
                     the pipeline file",
                    canonical.to_ascii_uppercase()
                ));
            }
        }
        Ok(Destination::Store {
            url,
            scheme,
            options: options.clone(),
        })
    }

    /// Builds the store client (credentials from the environment). Nothing is contacted yet.
    pub fn open(self) -> Result<OpenDestination, ExportError> {
        match self {
            Destination::Local(dir) => Ok(OpenDestination::Local(dir)),
            Destination::Store {
                url,
                scheme,
                options,
            } => {
                let shown = url.as_str().trim_end_matches('/').to_owned();
                let config = |source| ExportError::StoreConfig {
                    url: shown.clone(),
                    source,
                };
                install_crypto_provider();
                let store: Arc<dyn ObjectStore> = match scheme {
                    Scheme::S3 => {
                        let mut builder =
                            object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str());
                        for (key, value) in &options {
                            if let Ok(key) = key.parse() {
                                builder = builder.with_config(key, value);
                            }
                        }
                        Arc::new(builder.build().map_err(config)?)
                    }
                    Scheme::Gcs => {
                        let mut builder = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                            .with_url(url.as_str());
                        for (key, value) in &options {
                            if let Ok(key) = key.parse() {
                                builder = builder.with_config(key, value);
                            }
                        }
                        Arc::new(builder.build().map_err(config)?)
                    }
                    Scheme::Azure => {
                        let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                            .with_url(url.as_str());
                        for (key, value) in &options {
                            if let Ok(key) = key.parse() {
                                builder = builder.with_config(key, value);
                            }
                        }
                        Arc::new(builder.build().map_err(config)?)
                    }
                    Scheme::File => {
                        let root = url.to_file_path().unwrap_or_default();
                        std::fs::create_dir_all(&root).map_err(|source| ExportError::Io {
                            path: root.clone(),
                            source,
                        })?;
                        Arc::new(
                            object_store::local::LocalFileSystem::new_with_prefix(&root)
                                .map_err(config)?,
                        )
                    }
                };
                // Buckets and containers are the URL's host; the rest of the path is a prefix.
                let prefix = match scheme {
                    Scheme::File => StorePath::ROOT,
                    _ => StorePath::from_url_path(url.path()).map_err(|e| config(e.into()))?,
                };
                Ok(OpenDestination::Store {
                    store,
                    prefix,
                    shown,
                })
            }
        }
    }
}

/// reqwest is built without a default TLS crypto provider (the workspace picks ring): make
/// sure one is installed before a store client is built.
fn install_crypto_provider() {
    // An error means a provider is already installed, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
