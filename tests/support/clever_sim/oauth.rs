//! Clever Instant Login (SSO), the OAuth 2.0 authorization code grant as Clever documents it
//! (dev.clever.com `oauth-implementation`, `il-troubleshooting`, `the-userinfo-endpoint`,
//! `links`; `shared/reference/clever-sso.md`): the registered app ([`SsoApp`]), who is signed
//! in to Clever in the one simulated browser ([`Login`]), `GET /oauth/authorize`,
//! `POST /oauth/tokens`, and what a login token may read (`/me`, `/userinfo`, its own
//! `/users/{id}` and `/districts/{id}`).
//!
//! Codes live [`super::SimOptions::code_lifetime`] (Clever: one minute) and work once; each is
//! bound to the client and the redirect URI it was issued for. Login tokens do not expire.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

use super::handler::{Answer, decode, single};
use super::{Shared, lock};
use crate::district::{Collection, Dataset};

/// The title (and heading) of the page `/oauth/authorize` shows when it will not issue a code
/// (nobody signed in, or a login of another district than the one asked for): what a test looks
/// for in a response body.
pub const SIGN_IN_PAGE: &str = "Clever sign-in page";

/// The `user_type` values of a login, as Clever's `/userinfo` and OIDC claims spell them.
const LOGIN_ROLES: [&str; 6] = [
    "teacher",
    "student",
    "district_admin",
    "school_admin",
    "staff",
    "contact",
];

/// What a login token may not read: Clever's message for a token used outside its scopes.
const OUT_OF_SCOPE: &str = "Resource not in token's scopes";

/// A Clever app registered for Instant Login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoApp {
    /// The app's OAuth client id.
    pub client_id: String,
    /// Its client secret, sent with the id as HTTP Basic to `/oauth/tokens`.
    pub client_secret: String,
    /// The registered redirect URIs, matched exactly; the first is where Clever-started logins
    /// (the portal, Instant Login links) arrive.
    pub redirect_uris: Vec<String>,
}

/// Who is signed in to Clever in the (one, simulated) browser, and as which role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    id: String,
    role: &'static str,
    /// `None`: a user of the simulated district; `Some(district)`: of another district.
    foreign_district: Option<String>,
}

impl Login {
    /// A user of the simulated district, signing in as `role` (a user with several roles signs
    /// in as one of them): `teacher`, `student`, `district_admin`, `school_admin` (held as the
    /// `staff` role in v3 records), `staff` or `contact`.
    ///
    /// # Panics
    /// On another role name; and, when the simulator uses the login
    /// ([`super::CleverSim::sign_in_as`], [`super::CleverSim::portal_login_url`]), if the
    /// district has no such user or the user does not hold the role: a bug in the test.
    pub fn user(id: &str, role: &str) -> Login {
        Login {
            id: id.to_string(),
            role: login_role(role),
            foreign_district: None,
        }
    }

    /// A user of another district, unknown to the data API: `/me`, `/userinfo` and
    /// `/users/{id}` with its login token answer for it (a minimal v3.0 user record with that
    /// role), and `/districts/{district}` with a minimal district.
    ///
    /// # Panics
    /// On a role name that is not one of [`Login::user`]'s.
    pub fn foreign(id: &str, district: &str, role: &str) -> Login {
        Login {
            id: id.to_string(),
            role: login_role(role),
            foreign_district: Some(district.to_string()),
        }
    }

    /// The Clever user id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The role this login is for (`/userinfo`'s `user_type`).
    pub fn role(&self) -> &str {
        self.role
    }
}

fn login_role(role: &str) -> &'static str {
    LOGIN_ROLES
        .into_iter()
        .find(|r| *r == role)
        .unwrap_or_else(|| panic!("unknown Clever login role {role:?}: one of {LOGIN_ROLES:?}"))
}

/// The key of a v3 user's `roles` object that a login role needs: school admins are `staff`
/// users in v3.
fn record_role(role: &str) -> &str {
    match role {
        "school_admin" => "staff",
        other => other,
    }
}

/// A login checked against the district: whose, where, as what.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    user: String,
    role: &'static str,
    district: String,
    foreign: bool,
}

/// Checks `login` against the simulated district.
///
/// # Panics
/// If a [`Login::user`] names no user of `dataset` or one without the login's role.
pub(crate) fn identify(login: &Login, dataset: &Dataset) -> Identity {
    if let Some(district) = &login.foreign_district {
        return Identity {
            user: login.id.clone(),
            role: login.role,
            district: district.clone(),
            foreign: true,
        };
    }
    let Some(user) = dataset.get(Collection::Users, &login.id) else {
        panic!(
            "Login::user({:?}, {:?}): the simulated district has no such user",
            login.id, login.role
        );
    };
    let held: Vec<&str> = user["roles"]
        .as_object()
        .map(|roles| roles.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let needed = record_role(login.role);
    assert!(
        held.contains(&needed),
        "Login::user({:?}, {:?}): the user does not hold the {needed} role (its roles: {held:?})",
        login.id,
        login.role,
    );
    let district = user["district"]
        .as_str()
        .map(str::to_string)
        .or_else(|| dataset.ids(Collection::Districts).into_iter().next())
        .unwrap_or_else(|| panic!("user {} has no district", login.id));
    Identity {
        user: login.id.clone(),
        role: login.role,
        district,
        foreign: false,
    }
}

/// An issued authorization code.
#[derive(Debug)]
struct Code {
    identity: Identity,
    client_id: String,
    redirect_uri: String,
    issued: Instant,
    used: bool,
}

/// The simulator's Instant Login state.
#[derive(Debug, Default)]
pub(crate) struct OAuthState {
    app: Option<SsoApp>,
    signed_in: Option<Identity>,
    /// Every code issued, the used and expired ones too (to refuse them).
    codes: HashMap<String, Code>,
    /// Login tokens and whose they are.
    tokens: HashMap<String, Identity>,
    exchanged: usize,
    refused: usize,
}

impl OAuthState {
    pub(crate) fn register_app(&mut self, app: SsoApp) {
        self.app = Some(app);
    }

    pub(crate) fn sign_in(&mut self, identity: Option<Identity>) {
        self.signed_in = identity;
    }

    /// The first registered redirect URI with a fresh code for `identity`, no state.
    ///
    /// # Panics
    /// Without a registered app, or one without redirect URIs.
    pub(crate) fn portal_login_url(&mut self, identity: Identity) -> String {
        let app = self
            .app
            .as_ref()
            .expect("register_app before portal_login_url");
        let (client_id, redirect_uri) = (
            app.client_id.clone(),
            app.redirect_uris
                .first()
                .expect("the registered app has a redirect URI")
                .clone(),
        );
        let code = self.issue_code(identity, client_id, redirect_uri.clone());
        with_params(&redirect_uri, &[("code", &code)])
    }

    pub(crate) fn code_exchanges(&self) -> (usize, usize) {
        (self.exchanged, self.refused)
    }

    /// Whose login token `token` is, if it is one.
    pub(crate) fn identity(&self, token: &str) -> Option<Identity> {
        self.tokens.get(token).cloned()
    }

    fn issue_code(
        &mut self,
        identity: Identity,
        client_id: String,
        redirect_uri: String,
    ) -> String {
        let code = format!("{:024x}", rand::random::<u128>() >> 32);
        self.codes.insert(
            code.clone(),
            Code {
                identity,
                client_id,
                redirect_uri,
                issued: Instant::now(),
                used: false,
            },
        );
        code
    }
}

/// `GET /oauth/authorize`: a 400 page for a request Clever cannot trust (unknown client,
/// unregistered redirect URI, a response type other than `code`), the sign-in page when nobody
/// (or nobody of the asked `district_id`) is signed in, else a 302 to the redirect URI with a
/// fresh `code` and the `state`, if given.
pub(super) fn authorize(sim: &Shared, method: &Method, query: &str) -> Answer {
    if method != Method::GET {
        return page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "The authorize endpoint takes GET.",
        );
    }
    let params = parse_pairs(query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut state = lock(&sim.oauth);
    let Some(app) = state
        .app
        .as_ref()
        .filter(|app| param("client_id") == Some(app.client_id.as_str()))
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "Invalid client",
            "The client_id is not a registered Clever application.",
        );
    };
    // Without a redirect_uri, Clever uses the app's first one.
    let redirect_uri = match param("redirect_uri") {
        None => app.redirect_uris.first().cloned(),
        Some(uri) => app.redirect_uris.iter().find(|r| *r == uri).cloned(),
    };
    let Some(redirect_uri) = redirect_uri else {
        return page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect_uri",
            "The redirect_uri is not one registered for this application.",
        );
    };
    if param("response_type") != Some("code") {
        return page(
            StatusCode::BAD_REQUEST,
            "Invalid response_type",
            "Clever supports response_type=code only.",
        );
    }
    let client_id = app.client_id.clone();
    let identity = state
        .signed_in
        .clone()
        .filter(|who| param("district_id").is_none_or(|d| d == who.district));
    let Some(identity) = identity else {
        return page(
            StatusCode::OK,
            SIGN_IN_PAGE,
            "Log in to your district with Clever to continue.",
        );
    };
    let code = state.issue_code(identity, client_id, redirect_uri.clone());
    let mut location = vec![("code", code.as_str())];
    if let Some(s) = param("state") {
        location.push(("state", s));
    }
    let mut answer = Answer::empty(StatusCode::FOUND);
    answer.content_type = super::handler::HTML;
    answer.location = Some(with_params(&redirect_uri, &location));
    answer
}

/// `/oauth/tokens`: `POST` exchanges a code (counted as exchanged or refused); `GET` (the
/// district tokens listing) is not simulated.
pub(super) fn tokens(sim: &Shared, method: &Method, headers: &HeaderMap, body: &[u8]) -> Answer {
    if method == Method::GET {
        return Answer::message(
            StatusCode::NOT_IMPLEMENTED,
            "this endpoint is not simulated",
        );
    }
    if method != Method::POST {
        return oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "the token endpoint takes POST",
        );
    }
    let lifetime = lock(&sim.options).code_lifetime;
    let mut state = lock(&sim.oauth);
    match exchange(&mut state, lifetime, headers, body) {
        Ok(answer) => {
            state.exchanged += 1;
            answer
        }
        Err(answer) => {
            state.refused += 1;
            answer
        }
    }
}

fn exchange(
    state: &mut OAuthState,
    lifetime: std::time::Duration,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Answer, Answer> {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(crate::base64::decode)
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let client_id = match (
        &state.app,
        credentials.as_deref().and_then(|c| c.split_once(':')),
    ) {
        (Some(app), Some((id, secret))) if id == app.client_id && secret == app.client_secret => {
            app.client_id.clone()
        }
        _ => {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "invalid client credentials",
            ));
        }
    };

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let fields: Vec<(String, String)> = if content_type.starts_with("application/json") {
        let object: Option<serde_json::Map<String, Value>> = serde_json::from_slice(body).ok();
        let Some(object) = object else {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body is not a JSON object",
            ));
        };
        object
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
            .collect()
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        parse_pairs(&String::from_utf8_lossy(body))
    } else {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid content type: send application/json or application/x-www-form-urlencoded",
        ));
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match field("grant_type") {
        Some("authorization_code") => {}
        None => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            ));
        }
        Some(_) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only authorization_code is supported",
            ));
        }
    }
    let (Some(code), Some(redirect_uri)) = (field("code"), field("redirect_uri")) else {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code and redirect_uri are required",
        ));
    };
    let invalid = |why: &str| {
        Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            &format!("invalid code: {why}"),
        ))
    };
    let Some(issued) = state.codes.get_mut(code) else {
        return invalid("unknown");
    };
    if issued.used {
        return invalid("already used");
    }
    if issued.issued.elapsed() > lifetime {
        return invalid("expired");
    }
    if issued.client_id != client_id {
        return invalid("issued to another client");
    }
    if issued.redirect_uri != redirect_uri {
        return invalid("issued for another redirect_uri");
    }
    issued.used = true;
    let identity = issued.identity.clone();
    let token = format!(
        "{:032x}{:08x}",
        rand::random::<u128>(),
        rand::random::<u32>()
    );
    state.tokens.insert(token.clone(), identity);
    Ok(Answer::json(
        StatusCode::OK,
        json!({"access_token": token, "token_type": "bearer"}).to_string(),
    ))
}

/// What a login token gets at `path` (rate limiting done): `/me`, `/userinfo`, its own user and
/// its own district; 403 elsewhere.
pub(super) fn login_api(dataset: &Dataset, who: &Identity, method: &Method, path: &str) -> Answer {
    if method != Method::GET {
        return Answer::message(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["userinfo"] => userinfo(dataset, who),
        ["me"] | ["v3.0" | "v3.1", "me"] => me(who),
        [version @ ("v3.0" | "v3.1"), "users", id] if *id == who.user => {
            if who.foreign {
                envelope(version, "users", id, &foreign_user(who))
            } else {
                single(dataset, version, Collection::Users, id)
            }
        }
        [version @ ("v3.0" | "v3.1"), "districts", id] if *id == who.district => {
            if who.foreign {
                envelope(version, "districts", id, &foreign_district(&who.district))
            } else {
                single(dataset, version, Collection::Districts, id)
            }
        }
        _ => Answer::message(StatusCode::FORBIDDEN, OUT_OF_SCOPE),
    }
}

/// `/me`: the token's owner, with links to the user and the district (the `self` link is
/// `/me`, as in Clever's documented example).
fn me(who: &Identity) -> Answer {
    let body = json!({
        "data": {
            "id": who.user,
            "district": who.district,
            "type": "user",
            "authorized_by": "district",
        },
        "links": [
            {"rel": "self", "uri": "/me"},
            {"rel": "canonical", "uri": format!("/v3.0/users/{}", who.user)},
            {"rel": "district", "uri": format!("/v3.0/districts/{}", who.district)},
        ],
    });
    Answer::json(StatusCode::OK, body.to_string())
}

/// `/userinfo`: the user's identity in this login's role only.
fn userinfo(dataset: &Dataset, who: &Identity) -> Answer {
    let user = if who.foreign {
        Some(foreign_user(who))
    } else {
        dataset.get(Collection::Users, &who.user)
    };
    let Some(user) = user else {
        return Answer::message(StatusCode::NOT_FOUND, "Resource not found");
    };
    let role = &user["roles"][record_role(who.role)];
    let name_part = |part: &str| user["name"][part].as_str().unwrap_or_default().to_string();
    let schools = match (&role["schools"], &role["school"]) {
        (Value::Array(schools), _) => Value::Array(schools.clone()),
        (_, Value::String(school)) => json!([school]),
        _ => json!([]),
    };
    let mut body = json!({
        "sub": who.user,
        "user_id": role["legacy_id"].as_str().unwrap_or(&who.user),
        "multi_role_user_id": who.user,
        "user_type": who.role,
        "district_id": who.district,
        "district": who.district,
        "name": {
            "first": name_part("first"),
            "last": name_part("last"),
            "middle": name_part("middle"),
        },
        "schools": schools,
        "given_name": name_part("first"),
        "family_name": name_part("last"),
        "email_verified": false,
        "authorized_by": "district",
    });
    if let Some(email) = user["email"].as_str() {
        body["email"] = json!(email);
    }
    Answer::json(StatusCode::OK, body.to_string())
}

/// The v3.0 record of a user of another district: the guaranteed fields and the login's role.
fn foreign_user(who: &Identity) -> Value {
    let role = match record_role(who.role) {
        "student" => json!({"sis_id": format!("F-{}", who.user), "school": "", "schools": []}),
        "teacher" => json!({"sis_id": format!("F-{}", who.user), "school": "", "schools": []}),
        "staff" => json!({"staff_id": format!("F-{}", who.user), "schools": []}),
        "district_admin" => json!({"title": ""}),
        _ => json!({"student_relationships": []}),
    };
    json!({
        "id": who.user,
        "district": who.district,
        "created": "2025-01-01T00:00:00.000Z",
        "last_modified": "2025-01-01T00:00:00.000Z",
        "name": {"first": "Foreign", "last": "User"},
        "roles": {record_role(who.role): role},
    })
}

/// The v3.0 record of another district: its guaranteed fields.
fn foreign_district(id: &str) -> Value {
    json!({
        "id": id,
        "name": "Another District",
        "sis_type": "sftp",
        "portal_url": format!("https://clever.com/in/{id}"),
        "launch_date": "2025-01-01",
        "login_methods": ["Clever Badges"],
        "error": "",
    })
}

/// `{"data":..,"links":[{"rel":"self",..}]}` for a record not in the dataset.
fn envelope(version: &str, collection: &str, id: &str, record: &Value) -> Answer {
    let body = json!({
        "data": record,
        "links": [{"rel": "self", "uri": format!("/{version}/{collection}/{id}")}],
    });
    Answer::json(StatusCode::OK, body.to_string())
}

/// An RFC 6749 §5.2 error body, as Clever's auth API sends them.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Answer {
    Answer::json(
        status,
        json!({"error": error, "error_description": description}).to_string(),
    )
}

/// A small HTML page titled `title`.
fn page(status: StatusCode, title: &str, text: &str) -> Answer {
    let mut answer = Answer::html(status);
    answer.body = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>\n"
    );
    answer
}

/// `k=v` pairs of a query string or form body, percent-decoded.
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `uri` with `params` appended to its query (kept if it has one).
fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = uri.to_string();
    let mut separator = match uri.find('?') {
        None => "?",
        Some(_) if uri.ends_with('?') || uri.ends_with('&') => "",
        Some(_) => "&",
    };
    for (name, value) in params {
        out.push_str(separator);
        out.push_str(&encode(name));
        out.push('=');
        out.push_str(&encode(value));
        separator = "&";
    }
    out
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clever_sim::tests::{Reply, send};
    use crate::clever_sim::{CleverSim, DEFAULT_TOKEN, Fault, SimOptions};
    use crate::district::{GenSpec, Role, generate};
    use std::time::Duration;

    const CLIENT_ID: &str = "5d3f1a2b4c6e8f0a1b2c";
    const SECRET: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
    /// The app's redirect URIs: the first (portal logins), and one with its own query.
    const FIRST: &str = "https://app.example/auth/clever";
    const SECOND: &str = "https://app.example/auth/clever?from=button";
    const OTHER_DISTRICT: &str = "64ef5e6c8d6b17762d094e48";

    async fn sim_with_app(dataset: Dataset) -> CleverSim {
        let sim = CleverSim::start(dataset, SimOptions::default()).await;
        sim.register_app(SsoApp {
            client_id: CLIENT_ID.into(),
            client_secret: SECRET.into(),
            redirect_uris: vec![FIRST.into(), SECOND.into()],
        });
        sim
    }

    async fn authorize_with(sim: &CleverSim, query: &str) -> Reply {
        send(sim, "GET", &format!("/oauth/authorize?{query}"), &[], "").await
    }

    /// The authorize query for the app, `redirect_uri` percent-encoded.
    fn authorize_query(redirect_uri: &str) -> String {
        format!(
            "response_type=code&client_id={CLIENT_ID}&redirect_uri={}",
            encode(redirect_uri)
        )
    }

    /// A query parameter of a redirect's `Location`, decoded.
    fn location_param(reply: &Reply, name: &str) -> Option<String> {
        let location = reply.header("location")?;
        let (_, query) = location.split_once('?')?;
        parse_pairs(query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Exchanges `code` as a form, with `secret` as the client's.
    async fn exchange_with(sim: &CleverSim, code: &str, redirect_uri: &str, secret: &str) -> Reply {
        let basic = format!(
            "Basic {}",
            crate::base64::encode(format!("{CLIENT_ID}:{secret}").as_bytes())
        );
        let body = format!(
            "code={code}&grant_type=authorization_code&redirect_uri={}",
            encode(redirect_uri)
        );
        let headers = [
            ("Authorization", basic.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        send(sim, "POST", "/oauth/tokens", &headers, &body).await
    }

    async fn exchange(sim: &CleverSim, code: &str, redirect_uri: &str) -> Reply {
        exchange_with(sim, code, redirect_uri, SECRET).await
    }

    /// A code for whoever is signed in, through `/oauth/authorize` with the first redirect URI.
    async fn code(sim: &CleverSim) -> String {
        let reply = authorize_with(sim, &authorize_query(FIRST)).await;
        assert_eq!(reply.status, Some(302));
        location_param(&reply, "code").expect("a code")
    }

    /// A login token for `login`, from a portal login.
    async fn login_token(sim: &CleverSim, login: &Login) -> String {
        let url = sim.portal_login_url(login);
        let code = url.split("code=").nth(1).expect("a code").to_string();
        let reply = exchange(sim, &code, FIRST).await;
        assert_eq!(reply.status, Some(200));
        reply.json()["access_token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    async fn get_as(sim: &CleverSim, token: &str, uri: &str) -> Reply {
        let auth = format!("Bearer {token}");
        send(sim, "GET", uri, &[("Authorization", auth.as_str())], "").await
    }

    #[test]
    fn redirect_parameters_are_encoded_after_the_uris_own_query() {
        assert_eq!(
            with_params(SECOND, &[("code", "c0de"), ("state", "a b&c=d/é")]),
            "https://app.example/auth/clever?from=button&code=c0de&state=a%20b%26c%3Dd%2F%C3%A9"
        );
        assert_eq!(
            with_params(FIRST, &[("code", "x")]),
            format!("{FIRST}?code=x")
        );
    }

    #[tokio::test]
    async fn the_whole_flow_from_authorize_to_the_users_record() {
        let sim = sim_with_app(Dataset::demo()).await;
        let (teacher, record) = sim.read(|d| {
            let id = d.ids_with_role(Role::Teacher)[0].clone();
            let record = d.get(Collection::Users, &id).expect("teacher");
            (id, record)
        });
        let district = record["district"].as_str().expect("district").to_string();
        sim.sign_in_as(Some(Login::user(&teacher, "teacher")));

        let state = "csrf/one two&three";
        let reply = authorize_with(
            &sim,
            &format!(
                "{}&state={}&district_id={district}&nonce=n1",
                authorize_query(FIRST),
                encode(state)
            ),
        )
        .await;
        assert_eq!(reply.status, Some(302));
        let location = reply.header("location").expect("Location").to_string();
        assert!(
            location.starts_with(&format!("{FIRST}?code=")),
            "{location}"
        );
        assert_eq!(location_param(&reply, "state").as_deref(), Some(state));
        let code = location_param(&reply, "code").expect("code");

        let basic = format!(
            "Basic {}",
            crate::base64::encode(format!("{CLIENT_ID}:{SECRET}").as_bytes())
        );
        let body = json!({"code": code, "grant_type": "authorization_code", "redirect_uri": FIRST});
        let headers = [
            ("Authorization", basic.as_str()),
            ("Content-Type", "application/json"),
        ];
        let reply = send(&sim, "POST", "/oauth/tokens", &headers, &body.to_string()).await;
        assert_eq!(reply.status, Some(200));
        let tokens = reply.json();
        assert_eq!(tokens["token_type"], "bearer");
        let token = tokens["access_token"].as_str().expect("access_token");
        assert_ne!(token, DEFAULT_TOKEN);
        assert_eq!(sim.code_exchanges(), (1, 0));

        let me = get_as(&sim, token, "/v3.0/me").await;
        assert_eq!(me.status, Some(200));
        assert!(me.header("x-ratelimit-remaining").is_some());
        assert_eq!(
            me.json(),
            json!({
                "data": {
                    "id": teacher,
                    "district": district,
                    "type": "user",
                    "authorized_by": "district",
                },
                "links": [
                    {"rel": "self", "uri": "/me"},
                    {"rel": "canonical", "uri": format!("/v3.0/users/{teacher}")},
                    {"rel": "district", "uri": format!("/v3.0/districts/{district}")},
                ],
            })
        );

        let info = get_as(&sim, token, "/userinfo").await.json();
        assert_eq!(info["sub"], teacher.as_str());
        assert_eq!(info["multi_role_user_id"], teacher.as_str());
        assert_eq!(info["user_id"], record["roles"]["teacher"]["legacy_id"]);
        assert_ne!(info["user_id"], info["sub"]);
        assert_eq!(info["user_type"], "teacher");
        assert_eq!(info["district_id"], district.as_str());
        assert_eq!(info["district"], district.as_str());
        assert_eq!(info["email"], record["email"]);
        assert_eq!(info["name"]["first"], record["name"]["first"]);
        assert_eq!(info["given_name"], record["name"]["first"]);
        assert_eq!(info["family_name"], record["name"]["last"]);
        assert_eq!(info["email_verified"], false);
        assert_eq!(info["authorized_by"], "district");
        assert_eq!(info["schools"], record["roles"]["teacher"]["schools"]);

        let user = get_as(&sim, token, &format!("/v3.0/users/{teacher}")).await;
        assert_eq!(user.status, Some(200));
        let user = user.json();
        assert_eq!(user["data"], record);
        assert_eq!(
            user["links"],
            json!([{"rel": "self", "uri": format!("/v3.0/users/{teacher}")}])
        );
        let own = get_as(&sim, token, &format!("/v3.0/districts/{district}")).await;
        assert_eq!(own.status, Some(200));
        assert_eq!(own.json()["data"]["id"], district.as_str());

        // A redirect URI with its own query, and no state: none comes back.
        let reply = authorize_with(&sim, &authorize_query(SECOND)).await;
        let location = reply.header("location").expect("Location");
        assert!(
            location.starts_with(&format!("{SECOND}&code=")),
            "{location}"
        );
        assert!(location_param(&reply, "state").is_none());
        let code = location_param(&reply, "code").expect("code");
        assert_eq!(exchange(&sim, &code, SECOND).await.status, Some(200));
        assert_eq!(sim.code_exchanges(), (2, 0));
        assert!(sim.requests().iter().any(|r| r.path() == "/oauth/tokens"));
    }

    #[tokio::test]
    async fn a_code_works_once_and_for_code_lifetime_only() {
        let sim = sim_with_app(Dataset::demo()).await;
        let student = sim.read(|d| d.ids_with_role(Role::Student)[0].clone());
        sim.sign_in_as(Some(Login::user(&student, "student")));

        let code = code(&sim).await;
        assert_eq!(exchange(&sim, &code, FIRST).await.status, Some(200));
        let again = exchange(&sim, &code, FIRST).await;
        assert_eq!(again.status, Some(400));
        assert_eq!(again.json()["error"], "invalid_grant");
        assert!(again.json()["error_description"].is_string());
        assert_eq!(sim.code_exchanges(), (1, 1));

        let unknown = exchange(&sim, "0123456789abcdef01234567", FIRST).await;
        assert_eq!(unknown.json()["error"], "invalid_grant");

        sim.configure(|o| o.code_lifetime = Duration::from_millis(150));
        let code = self::code(&sim).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let expired = exchange(&sim, &code, FIRST).await;
        assert_eq!(expired.status, Some(400));
        assert_eq!(expired.json()["error"], "invalid_grant");
        assert_eq!(sim.code_exchanges(), (1, 3));
    }

    #[tokio::test]
    async fn wrong_client_secret_or_redirect_uri_is_refused() {
        let sim = sim_with_app(Dataset::demo()).await;
        let student = sim.read(|d| d.ids_with_role(Role::Student)[0].clone());
        sim.sign_in_as(Some(Login::user(&student, "student")));
        let code = code(&sim).await;

        let wrong = exchange_with(&sim, &code, FIRST, "not-the-secret").await;
        assert_eq!(wrong.status, Some(401));
        assert_eq!(wrong.json()["error"], "invalid_client");
        let anonymous = send(
            &sim,
            "POST",
            "/oauth/tokens",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &format!("code={code}&grant_type=authorization_code&redirect_uri={FIRST}"),
        )
        .await;
        assert_eq!(anonymous.status, Some(401));
        let elsewhere = exchange(&sim, &code, SECOND).await;
        assert_eq!(elsewhere.status, Some(400));
        assert_eq!(elsewhere.json()["error"], "invalid_grant");
        assert_eq!(exchange(&sim, &code, FIRST).await.status, Some(200));
        assert_eq!(sim.code_exchanges(), (1, 3));

        // Authorize does not redirect to what it cannot trust.
        for query in [
            authorize_query("https://evil.example/auth/clever"),
            authorize_query(&format!("{FIRST}/")),
            authorize_query(FIRST).replace(CLIENT_ID, "someone-else"),
            authorize_query(FIRST).replace("response_type=code", "response_type=token"),
        ] {
            let reply = authorize_with(&sim, &query).await;
            assert_eq!(reply.status, Some(400), "{query}");
            assert!(reply.header("location").is_none());
            assert!(
                reply
                    .header("content-type")
                    .is_some_and(|c| c.starts_with("text/html"))
            );
        }
    }

    #[tokio::test]
    async fn the_sign_in_page_when_nobody_or_another_district_is_signed_in() {
        let sim = sim_with_app(Dataset::demo()).await;
        let shows_sign_in = |reply: Reply| {
            reply.status == Some(200)
                && reply.header("location").is_none()
                && String::from_utf8_lossy(&reply.body).contains(SIGN_IN_PAGE)
        };
        assert!(shows_sign_in(
            authorize_with(&sim, &authorize_query(FIRST)).await
        ));

        let (admin, district) = sim.read(|d| {
            let id = d.ids_with_role(Role::DistrictAdmin)[0].clone();
            (id, d.ids(Collection::Districts)[0].clone())
        });
        sim.sign_in_as(Some(Login::user(&admin, "district_admin")));
        let other = format!("{}&district_id={OTHER_DISTRICT}", authorize_query(FIRST));
        assert!(shows_sign_in(authorize_with(&sim, &other).await));
        let own = format!("{}&district_id={district}", authorize_query(FIRST));
        assert_eq!(authorize_with(&sim, &own).await.status, Some(302));

        sim.sign_in_as(None);
        assert!(shows_sign_in(authorize_with(&sim, &own).await));
    }

    #[tokio::test]
    async fn a_portal_login_has_a_code_for_the_first_redirect_uri_and_no_state() {
        let sim = sim_with_app(Dataset::demo()).await;
        let student = sim.read(|d| d.ids_with_role(Role::Student)[0].clone());
        let url = sim.portal_login_url(&Login::user(&student, "student"));
        let (uri, query) = url.split_once('?').expect("a query");
        assert_eq!(uri, FIRST);
        let params = parse_pairs(query);
        assert_eq!(params.len(), 1, "{url}");
        assert_eq!(params[0].0, "code");
        assert!(!url.contains("state"));
        assert!(
            shows_nobody(&sim).await,
            "a portal login does not sign anyone in"
        );
        assert_eq!(exchange(&sim, &params[0].1, SECOND).await.status, Some(400));
        assert_eq!(exchange(&sim, &params[0].1, FIRST).await.status, Some(200));
    }

    async fn shows_nobody(sim: &CleverSim) -> bool {
        let reply = authorize_with(sim, &authorize_query(FIRST)).await;
        String::from_utf8_lossy(&reply.body).contains(SIGN_IN_PAGE)
    }

    #[tokio::test]
    async fn a_foreign_login_answers_for_its_own_district() {
        let sim = sim_with_app(Dataset::demo()).await;
        let user = "64f0e2926b100a053fc08e14";
        let login = Login::foreign(user, OTHER_DISTRICT, "teacher");
        sim.sign_in_as(Some(login));
        let code = code(&sim).await;
        let reply = exchange(&sim, &code, FIRST).await;
        let token = reply.json()["access_token"]
            .as_str()
            .expect("token")
            .to_string();

        let me = get_as(&sim, &token, "/v3.0/me").await.json();
        assert_eq!(me["data"]["id"], user);
        assert_eq!(me["data"]["district"], OTHER_DISTRICT);
        let info = get_as(&sim, &token, "/userinfo").await.json();
        assert_eq!(info["user_type"], "teacher");
        assert_eq!(info["district_id"], OTHER_DISTRICT);
        let record = get_as(&sim, &token, &format!("/v3.0/users/{user}")).await;
        assert_eq!(record.status, Some(200));
        let record = record.json();
        assert_eq!(record["data"]["district"], OTHER_DISTRICT);
        assert!(record["data"]["roles"]["teacher"].is_object());
        assert!(record["data"]["name"]["last"].is_string());
        let district = get_as(&sim, &token, &format!("/v3.0/districts/{OTHER_DISTRICT}")).await;
        assert_eq!(district.json()["data"]["id"], OTHER_DISTRICT);
        let simulated = sim.read(|d| d.ids(Collection::Districts)[0].clone());
        let reply = get_as(&sim, &token, &format!("/v3.0/districts/{simulated}")).await;
        assert_eq!(reply.status, Some(403));
        // The data API does not know this user.
        assert_eq!(
            get_as(&sim, DEFAULT_TOKEN, &format!("/v3.0/users/{user}"))
                .await
                .status,
            Some(404)
        );
    }

    #[tokio::test]
    async fn a_login_token_reads_only_its_own_records() {
        let sim = sim_with_app(generate(GenSpec::new(300))).await;
        let (coach, other) = sim.read(|d| {
            let staff = d.ids_with_role(Role::Staff);
            let coach = d
                .ids_with_role(Role::Teacher)
                .into_iter()
                .find(|t| staff.contains(t))
                .expect("a teacher who is also staff");
            (coach, d.ids_with_role(Role::Student)[0].clone())
        });
        let token = login_token(&sim, &Login::user(&coach, "school_admin")).await;

        let info = get_as(&sim, &token, "/userinfo").await.json();
        assert_eq!(info["user_type"], "school_admin", "only this login's role");
        let user = get_as(&sim, &token, &format!("/v3.0/users/{coach}"))
            .await
            .json();
        assert!(user["data"]["roles"]["teacher"].is_object(), "every role");
        assert!(user["data"]["roles"]["staff"].is_object());

        for uri in [
            "/v3.0/users".to_string(),
            "/v3.0/users?role=teacher".to_string(),
            "/v3.0/sections".to_string(),
            "/v3.0/districts".to_string(),
            format!("/v3.0/users/{other}"),
            format!("/v3.0/users/{coach}/sections"),
        ] {
            let reply = get_as(&sim, &token, &uri).await;
            assert_eq!(reply.status, Some(403), "{uri}");
            assert_eq!(reply.json()["message"], OUT_OF_SCOPE);
        }
        assert_eq!(get_as(&sim, "made-up", "/v3.0/me").await.status, Some(401));
        assert_eq!(
            get_as(&sim, DEFAULT_TOKEN, "/v3.0/users?limit=5")
                .await
                .status,
            Some(200),
            "the district token still reads the data API"
        );
    }

    #[tokio::test]
    async fn faults_and_rate_limits_cover_the_login_paths() {
        let sim = sim_with_app(Dataset::demo()).await;
        let student = sim.read(|d| d.ids_with_role(Role::Student)[0].clone());
        sim.sign_in_as(Some(Login::user(&student, "student")));
        let code = code(&sim).await;

        sim.inject_on("/oauth/tokens", Fault::Status(503));
        assert_eq!(exchange(&sim, &code, FIRST).await.status, Some(503));
        let reply = exchange(&sim, &code, FIRST).await;
        assert_eq!(
            reply.status,
            Some(200),
            "the failed request did not use the code"
        );
        assert_eq!(sim.code_exchanges(), (1, 0));
        let logged = sim.requests();
        let tokens: Vec<_> = logged
            .iter()
            .filter(|r| r.path() == "/oauth/tokens")
            .map(|r| (r.method.as_str(), r.status, r.fault.clone()))
            .collect();
        assert_eq!(
            tokens,
            vec![
                ("POST", Some(503), Some(Fault::Status(503))),
                ("POST", Some(200), None)
            ]
        );

        let token = reply.json()["access_token"]
            .as_str()
            .expect("token")
            .to_string();
        sim.configure(|o| o.rate_limit = 2);
        assert_eq!(get_as(&sim, &token, "/v3.0/me").await.status, Some(200));
        assert_eq!(get_as(&sim, &token, "/userinfo").await.status, Some(200));
        let limited = get_as(&sim, &token, "/v3.0/me").await;
        assert_eq!(limited.status, Some(429));
        assert!(limited.body.is_empty());
        assert_eq!(
            get_as(&sim, DEFAULT_TOKEN, "/v3.0/districts").await.status,
            Some(200),
            "each token has its own window"
        );
    }

    #[tokio::test]
    #[should_panic(expected = "does not hold the teacher role")]
    async fn signing_in_with_a_role_the_user_lacks_is_a_test_bug() {
        let sim = sim_with_app(Dataset::demo()).await;
        let student = sim.read(|d| d.ids_with_role(Role::Student)[0].clone());
        sim.sign_in_as(Some(Login::user(&student, "teacher")));
    }
}
