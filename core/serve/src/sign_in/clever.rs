//! Clever's side of a sign-in: the authorize URL a browser is sent to, the code exchanged for a
//! login token (once, with HTTP Basic client authentication), and who that token stands for
//! (`/v3.0/me` for the user and district, `/userinfo` for the role of this login, and
//! `/v3.0/users/{id}` for the whole record when a teacher is created at sign-in).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use url::Url;

use rosterflow_model::{Secret, is_clever_id};

/// The Clever app the service signs people in through.
#[derive(Debug, Clone)]
pub struct CleverApp {
    pub client_id: String,
    pub client_secret: Secret,
    /// The redirect URI registered with Clever (the first one: where Clever-started logins land).
    pub redirect_uri: Url,
    /// Clever's OAuth server (`https://clever.com`).
    pub oauth_url: Url,
    /// Clever's API (`https://api.clever.com`).
    pub api_url: Url,
}

/// Why Clever could not tell who signed in.
#[derive(Debug, thiserror::Error)]
pub enum CleverError {
    /// Clever refused the code: used, expired, or not issued to this app (`invalid_grant`).
    #[error("Clever refused the code ({0})")]
    Refused(String),
    /// Clever could not be reached, or answered in a way that cannot be read.
    #[error("{0}")]
    Unavailable(String),
}

/// A login token: it can read only who signed in. It never prints.
pub struct LoginToken(HeaderValue);

/// Who signed in, as Clever says.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The Clever user id.
    pub user: String,
    /// Their Clever district id.
    pub district: String,
    /// The role this login was for (`teacher`, `student`, `district_admin`, `school_admin`,
    /// `staff`, `contact`): a user with several roles signs in as one of them.
    pub role: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct Me {
    id: String,
    district: Option<String>,
}

#[derive(Deserialize)]
struct UserInfo {
    user_type: Option<String>,
}

/// Talks to Clever for one service.
pub struct Clever {
    app: CleverApp,
    http: reqwest::Client,
}

impl Clever {
    pub fn new(app: CleverApp) -> Result<Clever, String> {
        // The ring provider serves rustls; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            // A person waits on every call: 4 calls at most, each answered within seconds.
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rosterflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        Ok(Clever { app, http })
    }

    pub fn app(&self) -> &CleverApp {
        &self.app
    }

    /// Where a browser goes to sign in: Clever's authorize URL for this app, with `state` (and
    /// the district, which skips Clever's district picker, when known).
    pub fn authorize_url(&self, state: &str, district: Option<&str>) -> Url {
        let mut url = self
            .app
            .oauth_url
            .join("oauth/authorize")
            .expect("a path joins");
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.app.client_id)
                .append_pair("redirect_uri", self.app.redirect_uri.as_str())
                .append_pair("state", state);
            if let Some(district) = district {
                query.append_pair("district_id", district);
            }
        }
        url
    }

    /// Exchanges `code` for a login token.
    pub async fn exchange(&self, code: &str) -> Result<LoginToken, CleverError> {
        let url = self
            .app
            .oauth_url
            .join("oauth/tokens")
            .expect("a path joins");
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", code)
            .append_pair("grant_type", "authorization_code")
            .append_pair("redirect_uri", self.app.redirect_uri.as_str())
            .finish();
        let response = self
            .http
            .post(url)
            .basic_auth(&self.app.client_id, Some(self.app.client_secret.expose()))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|error| unavailable("Clever's token endpoint", error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| unavailable("Clever's token endpoint", error))?;
        if status == StatusCode::BAD_REQUEST {
            let error = serde_json::from_slice::<ErrorResponse>(&body)
                .ok()
                .and_then(|answer| answer.error)
                .unwrap_or_else(|| "400".to_owned());
            return Err(CleverError::Refused(error));
        }
        if !status.is_success() {
            return Err(CleverError::Unavailable(format!(
                "Clever's token endpoint answered {status}"
            )));
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            CleverError::Unavailable("Clever's token endpoint answered without a token".into())
        })?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", token.access_token))
            .map_err(|_| CleverError::Unavailable("Clever's token cannot be sent back".into()))?;
        header.set_sensitive(true);
        Ok(LoginToken(header))
    }

    /// Who `token` stands for.
    pub async fn identity(&self, token: &LoginToken) -> Result<Identity, CleverError> {
        let me: Envelope<Me> = self.get_json(token, "v3.0/me").await?;
        let info: UserInfo = self.get_json(token, "userinfo").await?;
        let district = me
            .data
            .district
            .ok_or_else(|| CleverError::Unavailable("Clever's /me named no district".to_owned()))?;
        let role = info.user_type.ok_or_else(|| {
            CleverError::Unavailable("Clever's /userinfo named no user_type".to_owned())
        })?;
        if !is_clever_id(&me.data.id) || !is_clever_id(&district) {
            return Err(CleverError::Unavailable(
                "Clever's /me named a user or district that is not a Clever id".to_owned(),
            ));
        }
        Ok(Identity {
            user: me.data.id,
            district,
            role,
        })
    }

    /// The JSON of the user's whole record (`data` of `/v3.0/users/{id}`).
    pub async fn user_record(&self, token: &LoginToken, user: &str) -> Result<String, CleverError> {
        let record: Envelope<Box<serde_json::value::RawValue>> =
            self.get_json(token, &format!("v3.0/users/{user}")).await?;
        Ok(record.data.get().to_owned())
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        token: &LoginToken,
        path: &str,
    ) -> Result<T, CleverError> {
        let what = format!("Clever's /{path}");
        let url = self.app.api_url.join(path).map_err(|_| {
            CleverError::Unavailable(format!("{what}: the user id cannot be part of a URL"))
        })?;
        let response = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, token.0.clone())
            .send()
            .await
            .map_err(|error| unavailable(&what, error))?;
        let status = response.status();
        if !status.is_success() {
            return Err(CleverError::Unavailable(format!(
                "{what} answered {status}"
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| unavailable(&what, error))?;
        serde_json::from_slice(&body)
            .map_err(|error| CleverError::Unavailable(format!("{what} cannot be read: {error}")))
    }
}

fn unavailable(what: &str, error: reqwest::Error) -> CleverError {
    let error = rosterflow_model::error_chain(&error.without_url());
    CleverError::Unavailable(format!("cannot reach {what}: {error}"))
}
