//! Object stores by URL: where a OneRoster feed is read from and where exports are written.
//! `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` and `file:///path` go
//! through one code path. Credentials come from the standard `AWS_*`, `GOOGLE_*` and `AZURE_*`
//! environment variables, never from a pipeline file (which is shared and versioned): a URL or
//! a storage option that holds one is refused.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use url::Url;

pub use object_store;

/// An object store's URL, checked but not connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    url: Url,
    scheme: Scheme,
}

/// The kinds of store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    S3,
    Gcs,
    Azure,
    File,
}

/// Object-store settings that are secrets.
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

impl StoreUrl {
    /// Reads `text` as a store URL; `None` when it is no URL at all (a local path). The error
    /// is the problem to report.
    pub fn parse(text: &str) -> Option<Result<StoreUrl, String>> {
        text.contains("://").then(|| StoreUrl::parse_url(text))
    }

    fn parse_url(text: &str) -> Result<StoreUrl, String> {
        // Not quoted: a text that is no URL may still hold a password.
        let url = Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
        let scheme = match url.scheme() {
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" | "azure" | "abfs" | "abfss" | "adl" => Scheme::Azure,
            "file" => Scheme::File,
            other => {
                return Err(format!(
                    "unsupported scheme {other}://: use a local path, s3://, gs://, az:// or file://"
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials do not belong in the URL: use the AWS_*, GOOGLE_* or AZURE_* environment variables"
                    .to_owned(),
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            // A query is where a SAS token would sit, and URLs are shown in logs and errors.
            return Err(
                "a store URL takes no query or fragment: credentials come from the environment, settings from storage_options"
                    .to_owned(),
            );
        }
        if scheme == Scheme::File && url.to_file_path().is_err() {
            return Err(format!(
                "{:?} is not an absolute file:// path",
                rosterflow_model::secret::shown_url(text)
            ));
        }
        Ok(StoreUrl { url, scheme })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The URL as logs and errors show it.
    pub fn shown(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// Checks storage options, by their `object_store` names: each must be a setting of this
    /// store, and never a credential.
    pub fn check_options(&self, options: &BTreeMap<String, String>) -> Result<(), String> {
        for key in options.keys() {
            // The setting's canonical name, whichever alias the file used.
            let canonical: Option<String> = match self.scheme {
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
                    self.url.scheme()
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
        Ok(())
    }

    /// Builds the store client with `options` (credentials from the environment) and the path
    /// the URL names in it: a bucket or container is the URL's host, the rest of its path is
    /// the key or prefix. Nothing is contacted yet.
    pub fn open(
        &self,
        options: &BTreeMap<String, String>,
    ) -> Result<(Arc<dyn ObjectStore>, StorePath), object_store::Error> {
        install_crypto_provider();
        macro_rules! configured {
            ($builder:expr) => {{
                let mut builder = $builder.with_url(self.url.as_str());
                for (key, value) in options {
                    if let Ok(key) = key.parse() {
                        builder = builder.with_config(key, value);
                    }
                }
                Arc::new(builder.build()?)
            }};
        }
        let store: Arc<dyn ObjectStore> = match self.scheme {
            Scheme::S3 => configured!(object_store::aws::AmazonS3Builder::from_env()),
            Scheme::Gcs => configured!(object_store::gcp::GoogleCloudStorageBuilder::from_env()),
            Scheme::Azure => configured!(object_store::azure::MicrosoftAzureBuilder::from_env()),
            Scheme::File => Arc::new(object_store::local::LocalFileSystem::new()),
        };
        let path = match self.scheme {
            Scheme::File => {
                let file = self.url.to_file_path().unwrap_or_default();
                StorePath::from_absolute_path(file)?
            }
            _ => StorePath::from_url_path(self.url.path())?,
        };
        Ok((store, path))
    }
}

/// reqwest is built without a default TLS crypto provider (the workspace picks ring): make
/// sure one is installed before a store client is built.
fn install_crypto_provider() {
    // An error means a provider is already installed, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_no_urls_and_bad_urls_say_why() {
        assert!(StoreUrl::parse("out/exports").is_none());
        let problem = |text| StoreUrl::parse(text).expect("a URL").expect_err("refused");
        assert!(problem("ftp://host/x").contains("unsupported scheme ftp://"));
        assert!(problem("s3://key:secret@bucket/x").contains("credentials do not belong"));
        assert!(problem("file://relative/x").contains("absolute file://"));
        assert!(problem("az://container/feed.zip?sig=secret").contains("no query"));
        for url in [
            "file://u:secretpw/x",
            "file://h/x?password=secretpw",
            "s3://b/x?token=secret",
        ] {
            assert!(!problem(url).contains("secret"), "{url}");
        }
    }

    #[test]
    fn options_are_the_stores_settings_and_never_credentials() {
        let url = StoreUrl::parse("s3://bucket/prefix/")
            .expect("a URL")
            .expect("valid");
        let options = |key: &str| BTreeMap::from([(key.to_owned(), "x".to_owned())]);
        assert!(url.check_options(&options("aws_region")).is_ok());
        let secret = url
            .check_options(&options("aws_secret_access_key"))
            .expect_err("a credential");
        assert!(
            secret.contains("set AWS_SECRET_ACCESS_KEY in the environment"),
            "{secret}"
        );
        assert!(url.check_options(&options("colour")).is_err());
        assert_eq!(url.shown(), "s3://bucket/prefix");
    }

    #[test]
    fn a_file_url_opens_at_its_absolute_path() {
        let url = StoreUrl::parse("file:///srv/feeds/district.zip")
            .expect("a URL")
            .expect("valid");
        let (_, path) = url.open(&BTreeMap::new()).expect("opens");
        assert_eq!(path.as_ref(), "srv/feeds/district.zip");
    }
}
