//! Signing in with Clever (Instant Login): `rosterflow serve` is the Clever login of the Freckle
//! DB. One Clever app serves every district.
//!
//! - `GET /sign-in/clever[?district=<Clever district id>][&app_state=<the app's nonce>]`
//!   `[&next=<a console path>]` starts a login: a fresh `state`, kept (hashed, with the app's
//!   nonce) in the DB and in a cookie of this browser, and a redirect to Clever's authorize URL.
//!   `next`, kept in a cookie too, is the console page a district administrator lands on.
//! - `GET /sign-in/clever/callback` is the redirect URI registered with Clever. A login Clever
//!   started (the portal, an Instant Login link) arrives without `state` and is sent back to
//!   Clever with a fresh one (or to the app's own start, when it has one); its code is not
//!   used. Otherwise the `state` must match the
//!   cookie's (in constant time) and be unused and unexpired; the code is exchanged once (a code
//!   seen before is refused without asking Clever); Clever says who signed in and as what; the
//!   Freckle DB decides who that is, by Clever user id within the user's Clever district.
//! - A teacher or student lands on the Freckle app's landing URL (from the settings only) with a
//!   grant: single-use, valid for [`GRANT_LIFETIME`], stored as a hash, which the app exchanges
//!   at `POST /sign-in/grants` (authenticated with the app secret) for the account and its nonce.
//!   A district administrator signs in to the console instead, limited to their district.
//! - Everyone else gets a page that says why, and nothing about anyone else: a district with no
//!   pipeline here, a role Freckle has no account for, a user the sync left out, archived or has
//!   not loaded. A teacher not yet synced is created when their pipeline allows it
//!   (`[sign_in] just_in_time`), under the district's run lock.
//!
//! Every sign-in and refusal is logged in `sign_ins` (the console's sign-ins page) and counted in
//! `rosterflow_sso_logins_total{outcome}` (a refusal that names no one is not stored). A Clever
//! login ends any console session of the browser: on a shared classroom device the next person
//! never inherits the last one's.

pub mod clever;

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

use super::{Service, console};
use clever::{Clever, CleverError, Identity, LoginToken};
use rosterflow_model::Secret;
use rosterflow_model::metrics as names;
use rosterflow_pipeline::config::Pipeline;
use rosterflow_store::sign_in::{self, AccountKind, Attempt, Outcome, Standing};
use rosterflow_store::{LockOptions, Store};

/// The path of the redirect URI: the registered URI must lead here.
pub const CALLBACK_PATH: &str = "/sign-in/clever/callback";
/// The cookie that binds a login's `state` to the browser that started it. SameSite=Lax, so
/// that the browser sends it on the top-level redirect back from Clever; `__Host-` (Secure,
/// `Path=/`, no domain), so that a sibling subdomain cannot plant one.
const STATE_COOKIE: &str = "__Host-rosterflow_sign_in";
/// The console page a district administrator asked for before signing in, kept by the browser
/// while it is at Clever.
const NEXT_COOKIE: &str = "__Host-rosterflow_next";
/// How long a started login may take at Clever.
const STATE_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);
/// How long the Freckle app has to exchange a grant.
pub const GRANT_LIFETIME: chrono::Duration = chrono::Duration::seconds(60);
/// How long an exchanged code is remembered: longer than Clever lets a code live (one minute).
const SPENT_CODE_MEMORY: chrono::Duration = chrono::Duration::minutes(10);
/// How long a sign-in that creates a teacher waits for a run of their district to finish.
const LOCK_WAIT: Duration = Duration::from_secs(20);

/// The service's sign-in settings.
#[derive(Debug, Clone)]
pub struct SignInOptions {
    pub clever: clever::CleverApp,
    /// Where the Freckle app receives a signed-in person (`?grant=...` is added).
    pub landing_url: Url,
    /// Where the Freckle app starts a login of its own (setting its `app_state`): logins Clever
    /// starts are sent there, so that the app can bind them to the browser too.
    pub app_start_url: Option<Url>,
    /// What the Freckle app authenticates with when it exchanges a grant.
    pub app_secret: Secret,
}

/// The shortest app secret accepted.
pub const MIN_APP_SECRET_LEN: usize = 16;

impl SignInOptions {
    /// Every problem with the settings, in words.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.clever.client_id.trim().is_empty() {
            problems.push("the Clever client id is empty".to_owned());
        }
        if self.clever.client_secret.expose().is_empty() {
            problems.push("ROSTERFLOW_CLEVER_CLIENT_SECRET is empty".to_owned());
        }
        if self.clever.redirect_uri.path() != CALLBACK_PATH {
            problems.push(format!(
                "the redirect URI {} must lead to this service's {CALLBACK_PATH}",
                self.clever.redirect_uri
            ));
        }
        for (what, url) in [
            ("redirect URI", &self.clever.redirect_uri),
            ("landing URL", &self.landing_url),
            (
                "app start URL",
                self.app_start_url.as_ref().unwrap_or(&self.landing_url),
            ),
            ("Clever OAuth URL", &self.clever.oauth_url),
            ("Clever API URL", &self.clever.api_url),
        ] {
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                problems.push(format!("the {what} {url} is not an http(s) URL"));
            }
        }
        if self.app_secret.expose().len() < MIN_APP_SECRET_LEN {
            problems.push(format!(
                "ROSTERFLOW_APP_SECRET is shorter than {MIN_APP_SECRET_LEN} characters: use a long random one (e.g. `openssl rand -hex 32`)"
            ));
        }
        problems
    }
}

/// What a running service holds for sign-ins.
pub struct SignIn {
    clever: Clever,
    landing_url: Url,
    app_start_url: Option<Url>,
    /// The app secret's SHA-256, compared with a candidate's in constant time.
    app_secret: [u8; 32],
}

impl SignIn {
    pub fn new(options: SignInOptions) -> Result<SignIn, String> {
        let problems = options.problems();
        if !problems.is_empty() {
            return Err(format!("sign-in settings: {}", problems.join("; ")));
        }
        Ok(SignIn {
            app_secret: Sha256::digest(options.app_secret.expose()).into(),
            clever: Clever::new(options.clever)?,
            landing_url: options.landing_url,
            app_start_url: options.app_start_url,
        })
    }

    fn admits_app(&self, secret: &str) -> bool {
        let candidate: [u8; 32] = Sha256::digest(secret).into();
        candidate.ct_eq(&self.app_secret).into()
    }
}

/// The sign-in routes (each answers 404 when sign-in is off).
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/sign-in/clever", get(start))
        .route(CALLBACK_PATH, get(callback))
        .route("/sign-in/grants", post(exchange_grant))
}

/// 32 random bytes as 64 hex digits.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn state_cookie(state: &str) -> String {
    format!(
        "{STATE_COOKIE}={state}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
        STATE_LIFETIME.num_seconds()
    )
}

fn clear_state_cookie() -> String {
    format!("{STATE_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0")
}

fn next_cookie(next: &str) -> String {
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!(
        "{NEXT_COOKIE}={next}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
        STATE_LIFETIME.num_seconds()
    )
}

fn clear_next_cookie() -> String {
    format!("{NEXT_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0")
}

/// The console page the browser asked for before it went to Clever, if it is one.
fn next_of(headers: &HeaderMap) -> Option<String> {
    let next = console::cookie(headers, NEXT_COOKIE)?;
    let next: String = url::form_urlencoded::parse(format!("next={next}").as_bytes())
        .next()?
        .1
        .into_owned();
    console::local_path(&next).map(str::to_owned)
}

#[derive(Deserialize)]
struct Start {
    /// The Clever district, when the login page knows it.
    district: Option<String>,
    /// The Freckle app's own value for this login (a nonce it keeps in its own cookie), handed
    /// back with the grant so that the app can tell that the browser landing is the one it sent.
    app_state: Option<String>,
    /// For a district administrator: the console page to land on.
    next: Option<String>,
}

/// The longest `app_state` kept.
const MAX_APP_STATE_LEN: usize = 256;

async fn start(State(service): State<Arc<Service>>, Query(start): Query<Start>) -> Response {
    let Some(sign_in) = &service.sign_in else {
        return off();
    };
    let district = start
        .district
        .filter(|district| rosterflow_model::is_clever_id(district));
    let app_state = start.app_state.filter(|value| !value.is_empty());
    if let Some(value) = &app_state {
        let readable = value.len() <= MAX_APP_STATE_LEN
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
        if !readable {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "app_state: at most {MAX_APP_STATE_LEN} letters, digits, '-', '.', '_' or '~'\n"
                ),
            )
                .into_response();
        }
    }
    let mut response =
        send_to_clever(&service, sign_in, district.as_deref(), app_state.as_deref()).await;
    if let Some(next) = start.next.as_deref().and_then(console::local_path)
        && let Ok(value) = next_cookie(next).parse()
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Sends the browser to Clever with a fresh `state`, bound to it by a cookie.
async fn send_to_clever(
    service: &Service,
    sign_in: &SignIn,
    district: Option<&str>,
    app_state: Option<&str>,
) -> Response {
    let state = random_token();
    let now = service.clock.now();
    let expires = now + STATE_LIFETIME;
    if let Err(error) = sign_in::save_state(service.db(), &state, app_state, expires).await {
        tracing::error!(error = %rosterflow_model::error_chain(&error), "cannot start a sign-in");
        return sorry(
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not possible right now",
            "Please try again in a minute.",
        );
    }
    let to = sign_in.clever.authorize_url(&state, district);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, state_cookie(&state)),
            (header::LOCATION, to.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let Some(sign_in) = &service.sign_in else {
        return off();
    };
    let Some(code) = callback.code.filter(|code| !code.is_empty()) else {
        let why = callback.error.unwrap_or_else(|| "no code".to_owned());
        tracing::info!(error = %why, "Clever sent a browser back without a code");
        return sorry(
            StatusCode::BAD_REQUEST,
            "Clever did not sign you in",
            "Please start again from Clever or from the sign-in page.",
        );
    };
    let Some(state) = callback.state else {
        // A login Clever started: protect it like our own by starting over with a state, through
        // the app's own start when it has one (so that the app can bind the login too).
        return match &sign_in.app_start_url {
            Some(url) => leave(Redirect::to(url.as_str()).into_response()),
            None => send_to_clever(&service, sign_in, None, None).await,
        };
    };
    let now = service.clock.now();
    let attempt = Attempt::default();
    let bound = console::cookie(&headers, STATE_COOKIE)
        .is_some_and(|cookie| bool::from(cookie.as_bytes().ct_eq(state.as_bytes())));
    let taken = match bound {
        true => match sign_in::take_state(service.db(), &state, now).await {
            Ok(taken) => taken,
            Err(error) => return database_trouble(&error),
        },
        false => None,
    };
    let Some(taken) = taken else {
        let detail = if bound {
            "state expired or already used"
        } else {
            "state does not match this browser's"
        };
        return refuse(
            &service,
            Outcome::BadState,
            attempt.with_detail(detail),
            now,
        )
        .await;
    };
    // A new Clever login replaces whoever was signed in on this browser.
    if let Some(token) = console::cookie(&headers, console::session::COOKIE)
        && let Err(error) = sign_in::close_console_session(service.db(), token).await
    {
        return database_trouble(&error);
    }
    match sign_in::spend_code(service.db(), &code, now + SPENT_CODE_MEMORY).await {
        Ok(true) => {}
        Ok(false) => {
            let attempt = attempt.with_detail("code already exchanged (replayed)");
            return refuse(&service, Outcome::CodeRefused, attempt, now).await;
        }
        Err(error) => return database_trouble(&error),
    }
    let token = match sign_in.clever.exchange(&code).await {
        Ok(token) => token,
        Err(CleverError::Refused(why)) => {
            let attempt = attempt.with_detail(&format!("Clever refused the code: {why}"));
            return refuse(&service, Outcome::CodeRefused, attempt, now).await;
        }
        Err(error) => {
            return refuse(
                &service,
                Outcome::CleverError,
                attempt.with_detail(&error.to_string()),
                now,
            )
            .await;
        }
    };
    let identity = match sign_in.clever.identity(&token).await {
        Ok(identity) => identity,
        Err(error) => {
            return refuse(
                &service,
                Outcome::CleverError,
                attempt.with_detail(&error.to_string()),
                now,
            )
            .await;
        }
    };
    let next = next_of(&headers);
    sign_in_as(&service, sign_in, &token, identity, taken, next, now).await
}

/// Decides who `identity` is in the Freckle DB, and lets them in or says why not.
async fn sign_in_as(
    service: &Service,
    sign_in: &SignIn,
    token: &LoginToken,
    identity: Identity,
    login: sign_in::Taken,
    next: Option<String>,
    now: DateTime<Utc>,
) -> Response {
    let mut attempt = Attempt {
        clever_user: Some(identity.user.clone()),
        clever_district: Some(identity.district.clone()),
        role: Some(identity.role.clone()),
        ..Attempt::default()
    };
    let (key, pipeline) = match served_district(service, &identity.district).await {
        Ok(Some(found)) => found,
        Ok(None) => return refuse(service, Outcome::UnknownDistrict, attempt, now).await,
        Err(error) => return database_trouble(&error),
    };
    attempt.district_key = Some(key.clone());
    // District administrators have the console. Clever: an app without a role for an admin
    // treats them as a teacher: a school admin signs in to their teacher account if the sync
    // made one, and nothing is created for them.
    let (kind, as_admin) = match identity.role.as_str() {
        "teacher" => (AccountKind::Teacher, false),
        "student" => (AccountKind::Student, false),
        "district_admin" => (AccountKind::Admin, false),
        "school_admin" => (AccountKind::Teacher, true),
        _ => return refuse(service, Outcome::RoleNotServed, attempt, now).await,
    };
    let standing = match sign_in::standing(service.db(), &key, kind, &identity.user).await {
        Ok(standing) => standing,
        Err(error) => return database_trouble(&error),
    };
    let (outcome, account) = match standing {
        Standing::Active(account) => (Outcome::SignedIn, account),
        _ if as_admin => return refuse(service, Outcome::RoleNotServed, attempt, now).await,
        Standing::NotSynced
            if kind == AccountKind::Teacher && pipeline.file.sign_in.just_in_time =>
        {
            match create_teacher(service, sign_in, token, &identity, &key, &pipeline, now).await {
                Ok(sign_in::Created::Created(account)) => (Outcome::Created, account),
                Ok(sign_in::Created::Found(account)) => (Outcome::SignedIn, account),
                Err((outcome, detail)) => {
                    return refuse(service, outcome, attempt.with_detail(&detail), now).await;
                }
            }
        }
        Standing::NotSynced => return refuse(service, Outcome::NotSynced, attempt, now).await,
        Standing::Archived { .. } => {
            let attempt = attempt.with_detail(&standing.describe());
            return refuse(service, Outcome::Archived, attempt, now).await;
        }
        Standing::Filtered { .. } => {
            let attempt = attempt.with_detail(&standing.describe());
            return refuse(service, Outcome::Filtered, attempt, now).await;
        }
    };
    attempt.account = Some((account.kind, account.id));
    if account.kind == AccountKind::Admin {
        return into_console(service, &attempt, &account, next.as_deref(), now).await;
    }
    // Creating a teacher may have waited: the grant's minute starts now.
    let now = service.clock.now();
    let logged = match sign_in::log(service.db(), outcome, &attempt, now).await {
        Ok(id) => id,
        Err(error) => return database_trouble(&error),
    };
    count(outcome);
    let grant = random_token();
    if let Err(error) = sign_in::save_grant(
        service.db(),
        &grant,
        logged,
        login.app_state.as_deref(),
        now + GRANT_LIFETIME,
    )
    .await
    {
        return database_trouble(&error);
    }
    tracing::info!(
        outcome = outcome.as_str(),
        district = %key,
        kind = account.kind.as_str(),
        account = account.id,
        clever_user = %identity.user,
        "signed in with Clever"
    );
    let mut landing = sign_in.landing_url.clone();
    landing.query_pairs_mut().append_pair("grant", &grant);
    leave(Redirect::to(landing.as_str()).into_response())
}

/// Signs a district administrator in to the console, limited to their district.
async fn into_console(
    service: &Service,
    attempt: &Attempt,
    account: &sign_in::Account,
    next: Option<&str>,
    now: DateTime<Utc>,
) -> Response {
    // Run history names them by email, or else by Clever id.
    let user = account
        .email
        .as_deref()
        .filter(|email| console::session::valid_user(email))
        .map_or_else(|| format!("clever-{}", account.clever_id), str::to_owned);
    let cookie = match console::open_session(
        service,
        &user,
        Some((account.district.key.as_str(), account.id)),
    )
    .await
    {
        Ok(cookie) => cookie,
        Err(refusal) => return leave(refusal.into_response()),
    };
    if let Err(error) = sign_in::log(service.db(), Outcome::Console, attempt, now).await {
        return database_trouble(&error);
    }
    count(Outcome::Console);
    tracing::info!(district = %account.district.key, user, "district administrator signed in to the console with Clever");
    // The session cookie is SameSite=Strict, and a browser does not send it on the redirect
    // chain that began at Clever: the page moves on to the console by itself, from this site.
    let landing = console::signed_in_to(next);
    let page = person_page(
        "Signed in",
        html! {
            meta http-equiv="refresh" content={ "0; url=" (landing) };
            p { "You are signed in to the rosterflow console for your district. " a href=(landing) { "Continue" } }
        },
    );
    let mut response = (
        [(header::CACHE_CONTROL, "no-store")],
        Html(page.into_string()),
    )
        .into_response();
    let headers = response.headers_mut();
    for value in [clear_state_cookie(), clear_next_cookie(), cookie] {
        if let Ok(value) = value.parse() {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The district of the Clever district `clever_district`, and its pipeline in this service.
async fn served_district(
    service: &Service,
    clever_district: &str,
) -> Result<Option<(String, Pipeline)>, sign_in::SignInError> {
    let Some(key) = sign_in::clever_district(service.db(), clever_district).await? else {
        return Ok(None);
    };
    for served in service.pipelines().values() {
        let district = served.pipeline.district(service.db()).await.ok().flatten();
        if district.as_deref() == Some(key.as_str()) {
            return Ok(Some((key, served.pipeline.clone())));
        }
    }
    Ok(None)
}

/// Creates the teacher `identity` at their first sign-in, under the district's run lock.
async fn create_teacher(
    service: &Service,
    sign_in: &SignIn,
    token: &LoginToken,
    identity: &Identity,
    key: &str,
    pipeline: &Pipeline,
    now: DateTime<Utc>,
) -> Result<sign_in::Created, (Outcome, String)> {
    let record = sign_in
        .clever
        .user_record(token, &identity.user)
        .await
        .map_err(|error| (Outcome::CleverError, error.to_string()))?;
    let teacher = match rosterflow_extract::wire::teacher_of_user(&record, &identity.district) {
        Ok(Some(teacher)) => teacher,
        Ok(None) => {
            return Err((
                Outcome::NotSynced,
                "Clever's record of the user holds no teacher role of this district".to_owned(),
            ));
        }
        Err(why) => {
            return Err((
                Outcome::CleverError,
                format!("Clever's record of the user cannot be read: {why}"),
            ));
        }
    };
    let lock = Store::lock(service.db(), key, LockOptions::waiting(LOCK_WAIT))
        .await
        .map_err(|error| match error {
            rosterflow_store::StoreError::Busy { .. } => (
                Outcome::Busy,
                "a run of the district held its lock".to_owned(),
            ),
            other => (Outcome::Unavailable, rosterflow_model::error_chain(&other)),
        })?;
    sign_in::create_teacher(service.db(), lock, key, pipeline.name(), &teacher, now)
        .await
        .map_err(|error| (Outcome::Unavailable, rosterflow_model::error_chain(&error)))
}

/// Logs and counts a refusal, and answers with the page that explains it.
async fn refuse(
    service: &Service,
    outcome: Outcome,
    attempt: Attempt,
    now: DateTime<Utc>,
) -> Response {
    count(outcome);
    tracing::warn!(
        outcome = outcome.as_str(),
        clever_user = attempt.clever_user.as_deref().unwrap_or(""),
        clever_district = attempt.clever_district.as_deref().unwrap_or(""),
        role = attempt.role.as_deref().unwrap_or(""),
        detail = attempt.detail.as_deref().unwrap_or(""),
        "Clever sign-in refused"
    );
    // A refusal before Clever said who it was (a bad state, a replayed code) names no one: it is
    // counted and logged, but not stored, so that requests made up by anyone add no rows.
    if attempt.clever_user.is_some()
        && let Err(error) = sign_in::log(service.db(), outcome, &attempt, now).await
    {
        tracing::error!(error = %rosterflow_model::error_chain(&error), "cannot log a refused sign-in");
    }
    let (status, title, text) = refusal_page(outcome);
    leave(sorry(status, title, text))
}

/// What a refused person reads: why, and what to do; never anything about someone else.
fn refusal_page(outcome: Outcome) -> (StatusCode, &'static str, &'static str) {
    use Outcome::*;
    match outcome {
        UnknownDistrict => (
            StatusCode::FORBIDDEN,
            "Your district does not use Freckle through Clever yet",
            "Your school district is not connected to Freckle here. Please ask your district's Clever administrator.",
        ),
        RoleNotServed => (
            StatusCode::FORBIDDEN,
            "Freckle has no account for this role",
            "Freckle accounts are made for teachers and students. If you also teach, sign in to Clever as a teacher.",
        ),
        NotSynced => (
            StatusCode::FORBIDDEN,
            "Your Freckle account is not ready yet",
            "Your district's roster has not reached Freckle with you in it yet. It is updated every night; please try again tomorrow, or ask your district's Clever administrator.",
        ),
        Filtered => (
            StatusCode::FORBIDDEN,
            "Your district has not shared you with Freckle",
            "Your district's settings leave you out of Freckle. If that is a mistake, please ask your district's Clever administrator.",
        ),
        Archived => (
            StatusCode::FORBIDDEN,
            "Your Freckle account is closed",
            "Your district's roster no longer lists you, so your Freckle account was closed. If that is a mistake, please ask your district's Clever administrator.",
        ),
        Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Your Freckle account is being updated",
            "Your district's roster is being updated right now. Please try again in a few minutes.",
        ),
        BadState => (
            StatusCode::BAD_REQUEST,
            "This sign-in link has expired",
            "Please start again from Clever or from the sign-in page.",
        ),
        CodeRefused => (
            StatusCode::BAD_REQUEST,
            "This sign-in link was already used",
            "Please start again from Clever or from the sign-in page.",
        ),
        Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not possible right now",
            "Please try again in a minute.",
        ),
        CleverError => (
            StatusCode::BAD_GATEWAY,
            "Clever could not be reached",
            "Please try again in a minute.",
        ),
        SignedIn | Created | Console => (StatusCode::OK, "Signed in", ""),
    }
}

fn count(outcome: Outcome) {
    metrics::counter!(names::SSO_LOGINS, "outcome" => outcome.as_str()).increment(1);
}

/// Every answer to a Clever login ends the browser's state cookie and any console session.
fn leave(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for value in [
        clear_state_cookie(),
        clear_next_cookie(),
        console::session::clear_cookie(),
    ] {
        if let Ok(value) = value.parse() {
            headers.append(header::SET_COOKIE, value);
        }
    }
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn database_trouble(error: &dyn std::error::Error) -> Response {
    tracing::error!(error = %rosterflow_model::error_chain(error), "sign-in: database error");
    leave(sorry(
        StatusCode::SERVICE_UNAVAILABLE,
        "Signing in is not possible right now",
        "Please try again in a minute.",
    ))
}

fn off() -> Response {
    (
        StatusCode::NOT_FOUND,
        "Signing in with Clever is off: start `rosterflow serve` with the sign-in settings.\n",
    )
        .into_response()
}

/// A page for a person signing in (not an admin): what happened, and what to do.
fn sorry(status: StatusCode, title: &str, text: &str) -> Response {
    (
        status,
        Html(person_page(title, html! { p { (text) } }).into_string()),
    )
        .into_response()
}

fn person_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Freckle" }
                style { "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1d1d1f}" }
            }
            body {
                h1 { (title) }
                (body)
                p { a href="/sign-in/clever" { "Sign in with Clever again" } }
            }
        }
    }
}

#[derive(Deserialize)]
struct GrantForm {
    grant: String,
}

/// `POST /sign-in/grants`: the Freckle app exchanges a grant for the account, server to server.
async fn exchange_grant(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Form(form): Form<GrantForm>,
) -> Response {
    let Some(sign_in) = &service.sign_in else {
        return off();
    };
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if !sign_in.admits_app(secret) {
        return json_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match sign_in::take_grant(service.db(), &form.grant, service.clock.now()).await {
        Ok(Some(handed)) => {
            ([(header::CACHE_CONTROL, "no-store")], axum::Json(handed)).into_response()
        }
        Ok(None) => json_error(StatusCode::BAD_REQUEST, "invalid_grant"),
        Err(error) => {
            tracing::error!(error = %rosterflow_model::error_chain(&error), "cannot exchange a grant");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
    }
}

fn json_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}
