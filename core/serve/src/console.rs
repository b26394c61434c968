//! The admin console: server-rendered pages (no scripts) that read at a glance on a laptop and
//! on a phone (one stylesheet, `console/console.css`: wide tables become a card per row on a
//! phone). Times are shown in the pipeline's time zone (`console/time.rs`).
//!
//! - `/`: every pipeline with its state (held, failed), schedule, last and next run, outcome
//!   and counts, and its actions (review a held run, run now); pipeline files that cannot be
//!   served, and why.
//! - `/pipelines/{name}`: its recent runs charted (changes and durations, `console/chart.rs`)
//!   and listed, held runs to approve or discard, and a search box that explains a student,
//!   teacher or class by SIS id or Clever id.
//! - `/pipelines/{name}/doctor`: what is wrong with the district's data (`rosterflow doctor`),
//!   checked as a queued job, and the last result (`console/doctor.rs`).
//! - `/runs/{id}`: a run's changes by type and its quarantined records with reasons and
//!   suggested fixes, downloadable as CSV; a held run's page leads with why it is held in one
//!   sentence and its Approve and Discard buttons, then what its plan would change as one row
//!   per school (`console/held.rs`).
//! - `/sign-ins`: the latest sign-ins with Clever and refusals: who, as what, and why.
//!
//! The operator signs in with the admin token (`ROSTERFLOW_ADMIN_TOKEN`) and a name, and sees
//! every district; a district administrator signs in with Clever and sees only their own
//! district's pipelines, runs, held plans, explain, sign-ins and downloads (another district's
//! pages answer 404, as if they did not exist). Every action is recorded in run history as
//! `console:<name>`. Every POST carries its session's CSRF token. Sessions are kept in the
//! Freckle DB: signing out, or the operator (`/sessions`), ends one at once.
//!
//! - `/pipelines/{name}/download/{growth|roster_history}.{csv|parquet}`: the district's growth
//!   data or roster history for the current school year, every student with their SIS id.

mod chart;
pub(crate) mod doctor;
mod held;
pub mod session;
mod time;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::Service;
use super::queue::Due;
use rosterflow_store::explain::{self, Subject};
use rosterflow_store::report::{self, RunReport};
use rosterflow_store::runs::{self, RunSummary};
use session::Session;

/// The console's routes.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/pipelines/{name}", get(pipeline_page))
        .route("/pipelines/{name}/run", post(run_now))
        .route(
            "/pipelines/{name}/doctor",
            get(doctor::show).post(doctor::check_now),
        )
        .route("/pipelines/{name}/download/{file}", get(download))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/report.csv", get(run_csv))
        .route("/runs/{id}/{decision}", post(decide))
        .route("/explain", get(explain_page))
        .route("/sign-ins", get(sign_ins_page))
        .route("/sessions", get(sessions_page))
        .route("/sessions/{id}/end", post(end_session))
}

/// A signed-in request, or the response that refuses it.
struct Admin {
    session: Session,
    csrf: String,
}

/// Why a request does not reach the console.
pub(crate) enum Refusal {
    /// Neither an admin token nor sign-in with Clever was given to the service.
    ConsoleOff,
    /// A page asked for without a session: the browser is sent to sign in.
    SignIn,
    /// The same, for a page the browser asked for by its path: it lands there once signed in
    /// (a link from an email, say).
    SignInFor(String),
    /// A POST without a session or without its CSRF token.
    Forbidden(&'static str),
    /// The sessions could not be read.
    Unavailable,
    /// Just signed in, yet the browser did not send the session cookie back.
    CookieRefused,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::ConsoleOff => (
                StatusCode::NOT_FOUND,
                "The console is off: start `rosterflow serve` with ROSTERFLOW_ADMIN_TOKEN set, or with sign-in with Clever.\n",
            )
                .into_response(),
            Refusal::SignIn => Redirect::to("/login").into_response(),
            Refusal::SignInFor(next) => {
                let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
                Redirect::to(&format!("/login?next={next}")).into_response()
            }
            Refusal::Forbidden(why) => {
                (StatusCode::FORBIDDEN, format!("refused: {why}\n")).into_response()
            }
            Refusal::CookieRefused => (
                StatusCode::BAD_REQUEST,
                page(
                    "Your browser did not keep the session",
                    None,
                    html! { p.problem { "You signed in, but your browser did not send the session cookie back. \
                        The console's cookies are Secure: reach the console over HTTPS (a TLS-terminating proxy), \
                        or on this machine as http://127.0.0.1 or http://localhost, and allow cookies for it." } },
                ),
            )
                .into_response(),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The console cannot read its sessions right now; try again in a minute.\n",
            )
                .into_response(),
        }
    }
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Checks the session cookie.
async fn admin(service: &Service, headers: &HeaderMap) -> Result<Admin, Refusal> {
    if !service.console_on() {
        return Err(Refusal::ConsoleOff);
    }
    let token = cookie(headers, session::COOKIE)
        .filter(|token| !token.is_empty())
        .ok_or(Refusal::SignIn)?;
    let stored = rosterflow_store::sign_in::console_session(service.db(), token, service.clock.now())
        .await
        .map_err(|error| {
            tracing::error!(error = %rosterflow_model::error_chain(&error), "cannot read console sessions");
            Refusal::Unavailable
        })?
        .ok_or(Refusal::SignIn)?;
    let session = Session::new(token, stored);
    Ok(Admin {
        csrf: session.csrf(),
        session,
    })
}

/// A page's admin: a request without a session is sent to sign in.
impl FromRequestParts<Arc<Service>> for Admin {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Arc<Service>,
    ) -> Result<Admin, Refusal> {
        admin(service, &parts.headers)
            .await
            .map_err(|refusal| match refusal {
                Refusal::SignIn if just_signed_in(parts.uri.query()) => Refusal::CookieRefused,
                Refusal::SignIn => match parts.uri.path_and_query().map(|p| p.as_str()) {
                    Some(next) if next != "/" => Refusal::SignInFor(next.to_owned()),
                    _ => Refusal::SignIn,
                },
                other => other,
            })
    }
}

/// Where a browser goes once signed in: the console, saying that it has just signed in, so that
/// a session cookie that did not come back is told apart from no sign-in at all.
pub(crate) const SIGNED_IN: &str = "/?signed_in=1";

fn just_signed_in(query: Option<&str>) -> bool {
    query.is_some_and(|query| query.split('&').any(|pair| pair == "signed_in=1"))
}

/// `next` when it is a path of this console: never another site (`//host`, `/\\host` and
/// schemes are refused), so a link cannot send a signed-in browser elsewhere.
pub(crate) fn local_path(next: &str) -> Option<&str> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 1024
        && !next.chars().any(|c| c == '\\' || c.is_control());
    local.then_some(next)
}

/// Where a browser goes once signed in: `next` when it is a path of this console, else the
/// dashboard; marked as just signed in either way.
pub(crate) fn signed_in_to(next: Option<&str>) -> String {
    match next.and_then(local_path) {
        Some(next) if next.contains('?') => format!("{next}&signed_in=1"),
        Some(next) => format!("{next}?signed_in=1"),
        None => SIGNED_IN.to_owned(),
    }
}

/// Checks the session and the form's CSRF token of a POST.
async fn poster(service: &Service, headers: &HeaderMap, csrf: &str) -> Result<Admin, Refusal> {
    let admin = admin(service, headers)
        .await
        .map_err(|refusal| match refusal {
            Refusal::SignIn => Refusal::Forbidden("sign in to the console first"),
            other => other,
        })?;
    if !admin.session.csrf_matches(csrf) {
        return Err(Refusal::Forbidden(
            "the form's CSRF token is missing or not this session's",
        ));
    }
    Ok(admin)
}

impl Admin {
    /// How run history names this admin.
    fn author(&self) -> String {
        format!("console:{}", self.session.user)
    }
}

/// The pipelines `admin` sees: every one for the operator, their district's for a district
/// administrator.
async fn visible_pipelines(
    service: &Service,
    admin: &Admin,
) -> Result<BTreeMap<String, super::Served>, Response> {
    let mut visible = BTreeMap::new();
    for (name, served) in service.pipelines().iter() {
        if admin.session.is_operator() {
            visible.insert(name.clone(), served.clone());
            continue;
        }
        let district = match served.pipeline.district(service.db()).await {
            Ok(district) => district,
            Err(error) => return Err(server_error(admin, &error)),
        };
        if district.is_some_and(|key| admin.session.sees(&key)) {
            visible.insert(name.clone(), served.clone());
        }
    }
    Ok(visible)
}

/// Pipeline `name`, if `admin` sees it; otherwise the page of a pipeline that is not served.
async fn visible_pipeline(
    service: &Service,
    admin: &Admin,
    name: &str,
) -> Result<super::Served, Response> {
    visible_pipelines(service, admin)
        .await?
        .remove(name)
        .ok_or_else(|| {
            failure(
                StatusCode::NOT_FOUND,
                Some(admin),
                format!("No pipeline named {name:?} is served."),
            )
        })
}

/// Whether `admin` sees run `run`; otherwise the page of a run that does not exist.
async fn visible_run(service: &Service, admin: &Admin, run: i64) -> Result<(), Response> {
    if admin.session.is_operator() {
        return Ok(());
    }
    match runs::district_of(service.db(), run).await {
        Ok(Some(key)) if admin.session.sees(&key) => Ok(()),
        Ok(_) => Err(failure(
            StatusCode::NOT_FOUND,
            Some(admin),
            format!("Run {run} does not exist."),
        )),
        Err(error) => Err(server_error(admin, &error)),
    }
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
struct Csrf {
    #[serde(default)]
    csrf: String,
}

fn page(title: &str, admin: Option<&Admin>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · rosterflow" }
                    // Ours, not escaped: `content:""` would not survive as `&quot;` in a style element.
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header {
                        a href="/" { "rosterflow" }
                        @if let Some(admin) = admin {
                            form method="post" action="/logout" class="inline" {
                                input type="hidden" name="csrf" value=(admin.csrf);
                                span { (admin.session.user)
                                    @if let Some(district) = &admin.session.district { " · district " (district) }
                                    " " }
                                button { "Sign out" }
                            }
                        }
                    }
                    main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// The stylesheet of every page, inline (the CSP allows inline styles and nothing from
/// elsewhere): phones get cards where a laptop gets tables.
const STYLE: &str = include_str!("console/console.css");

/// An error page with `status`.
fn failure(status: StatusCode, admin: Option<&Admin>, message: String) -> Response {
    let body = html! { p.problem { (message) } };
    (status, page("Something went wrong", admin, body)).into_response()
}

fn server_error(admin: &Admin, error: &dyn std::error::Error) -> Response {
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(admin),
        rosterflow_model::error_chain(error),
    )
}

/// What a page says after an action sent the browser to it (`?done=...`).
#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
}

impl Notice {
    fn text(&self) -> Option<&'static str> {
        match self.done.as_deref()? {
            "queued" => Some("A run is queued: it starts as soon as a worker is free."),
            "approval_queued" => Some(
                "Approval queued: a worker applies the plan as soon as it is free; this page shows the run approved once it is.",
            ),
            "discarded" => Some("Discarded: nothing was applied."),
            _ => None,
        }
    }
}

async fn dashboard(
    State(service): State<Arc<Service>>,
    admin: Admin,
    Query(notice): Query<Notice>,
) -> Response {
    let pipelines = match visible_pipelines(&service, &admin).await {
        Ok(pipelines) => pipelines,
        Err(refusal) => return refusal,
    };
    let next = service.next_runs.read().expect("next runs lock").clone();
    // Files that cannot be served name no district: the operator's alone.
    let problems = match admin.session.is_operator() {
        true => service.problems.read().expect("problems lock").clone(),
        false => BTreeMap::new(),
    };
    let mut statuses = BTreeMap::new();
    for name in pipelines.keys() {
        match runs::status(service.db(), name).await {
            Ok(status) => statuses.insert(name.clone(), status),
            Err(error) => return server_error(&admin, &error),
        };
    }
    let now = service.clock.now();
    let body = html! {
        @if let Some(notice) = notice.text() { p.notice { (notice) } }
        // A table on a laptop, a card per pipeline on a phone: its state and actions first.
        div.scroll { table.cards.pipelines {
            thead { tr {
                th { "Pipeline" } th { "Schedule" } th { "Next run" } th { "Last run" }
                th.num { "Changes" } th.num { "Quarantined" } th.num { "Held" } th { "Actions" }
            } }
            tbody {
                @for (name, served) in pipelines.iter() {
                    @let status = &statuses[name];
                    @let zone = time::zone_of(served.pipeline.file.schedule.as_ref());
                    @let failed = status.last.as_ref().is_some_and(|run| run.status == "failed");
                    tr {
                        th scope="row" {
                            a href={ "/pipelines/" (name) } { (name) }
                            @if !status.held.is_empty() {
                                " " span.badge.held { (status.held.len()) " held" }
                            }
                            @if failed { " " span.badge.failed { "failed" } }
                        }
                        td data-label="Schedule" { @match &served.pipeline.file.schedule {
                            Some(schedule) => { code { (schedule.cron) } " " span.muted { (schedule.timezone) } },
                            None => "on demand",
                        } }
                        td data-label="Next run" { @match next.get(name) {
                            Some(at) => (time::time(*at, zone, now)),
                            None => "—",
                        } }
                        td data-label="Last run" { @match &status.last {
                            Some(run) => { a href={ "/runs/" (run.id) } { "run " (run.id) } " "
                                span class=(run.status) { (run.status) } " " (time::stored(&run.started_at, zone, now)) },
                            None => "never",
                        } }
                        td.num data-label="Changes" { @if let Some(run) = &status.last { (run.changes) } }
                        td.num data-label="Quarantined" { (status.quarantined) }
                        td.num.held data-label="Held" { @if !status.held.is_empty() { (status.held.len()) } }
                        td data-label="Actions" { div.actions {
                            @for run in &status.held {
                                a href={ "/runs/" (run.id) } { "Review held run " (run.id) }
                            }
                            (run_now_button(name, &admin))
                        } }
                    }
                }
            }
        } }
        @if service.sign_in.is_some() { p { a href="/sign-ins" { "Sign-ins with Clever" } } }
        @if admin.session.is_operator() { p { a href="/sessions" { "Console sessions" } } }
        @if !problems.is_empty() {
            h2 { "Pipeline files that cannot be served" }
            @for (path, problem) in &problems {
                p.problem { strong { (path.display()) } br; (problem) }
            }
        }
    };
    page("Pipelines", Some(&admin), body).into_response()
}

/// A button that posts to `action` with the session's CSRF token.
fn post_button(action: &str, label: &str, admin: &Admin) -> Markup {
    html! {
        form method="post" action=(action) class="inline" {
            input type="hidden" name="csrf" value=(admin.csrf);
            button { (label) }
        }
    }
}

fn run_now_button(pipeline: &str, admin: &Admin) -> Markup {
    post_button(&format!("/pipelines/{pipeline}/run"), "Run now", admin)
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(
    State(service): State<Arc<Service>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    if !service.console_on() {
        return Refusal::ConsoleOff.into_response();
    }
    page(
        "Sign in",
        None,
        login_form(&service, None, query.next.as_deref()),
    )
    .into_response()
}

fn login_form(service: &Service, problem: Option<&str>, next: Option<&str>) -> Markup {
    html! {
        @if let Some(problem) = problem { p.problem { (problem) } }
        @if service.sign_in.is_some() {
            p { a href=(clever_start(next)) { "District administrators: sign in with Clever" } }
        }
        @if service.admin_token.is_some() {
            form method="post" action="/login" {
                p { label { "Your name" br; input type="text" name="user" autocomplete="username" required; } }
                p { label { "Admin token" br; input type="password" name="token" autocomplete="current-password" required; } }
                @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                button { "Sign in" }
            }
        }
    }
}

/// Where sign-in with Clever starts, carrying the page to land on.
fn clever_start(next: Option<&str>) -> String {
    match next.and_then(local_path) {
        Some(next) => {
            let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
            format!("/sign-in/clever?next={next}")
        }
        None => "/sign-in/clever".to_owned(),
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
    token: String,
    /// The page to land on once signed in.
    next: Option<String>,
}

async fn login(
    State(service): State<Arc<Service>>,
    ConnectInfo(client): ConnectInfo<std::net::SocketAddr>,
    Form(login): Form<Login>,
) -> Response {
    let Some(admin_token) = &service.admin_token else {
        return Refusal::ConsoleOff.into_response();
    };
    // Logged quoted and cut short: a name is the client's text.
    let named: String = login.user.chars().take(64).collect();
    let checked = {
        let mut guesses = service.guesses.lock().expect("guesses lock");
        if guesses.may_try(client.ip(), std::time::Instant::now()) {
            let admitted = admin_token.admits(&login.token);
            if !admitted {
                guesses.wrong(client.ip());
            }
            Some(admitted)
        } else {
            None
        }
    };
    match checked {
        Some(true) => {}
        Some(false) => {
            tracing::warn!(user = ?named, client = %client.ip(), "console sign-in refused: wrong admin token");
            // Slows down guessing.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let body = login_form(
                &service,
                Some("That is not the admin token."),
                login.next.as_deref(),
            );
            return (StatusCode::UNAUTHORIZED, page("Sign in", None, body)).into_response();
        }
        None => {
            tracing::warn!(user = ?named, client = %client.ip(), "console sign-in refused unchecked: too many wrong tokens");
            let body = login_form(
                &service,
                Some("Too many wrong tokens: wait a minute before you try again."),
                login.next.as_deref(),
            );
            return (StatusCode::TOO_MANY_REQUESTS, page("Sign in", None, body)).into_response();
        }
    }
    let user = login.user.trim();
    if !session::valid_user(user) {
        let body = login_form(
            &service,
            Some("Give your name, as you write it (at most 64 characters)."),
            login.next.as_deref(),
        );
        return (StatusCode::BAD_REQUEST, page("Sign in", None, body)).into_response();
    }
    match open_session(&service, user, None).await {
        Ok(cookie) => {
            tracing::info!(user, "signed in to the console");
            let landing = signed_in_to(login.next.as_deref());
            ([(header::SET_COOKIE, cookie)], Redirect::to(&landing)).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Starts a console session for `user` (of district `district`, with their admin row, for a
/// district administrator): the `Set-Cookie` value that keeps it.
pub(crate) async fn open_session(
    service: &Service,
    user: &str,
    district: Option<(&str, i64)>,
) -> Result<String, Refusal> {
    let token = super::sign_in::random_token();
    let now = service.clock.now();
    rosterflow_store::sign_in::open_console_session(
        service.db(),
        &token,
        user,
        district,
        now,
        now + session::LIFETIME,
    )
    .await
    .map_err(|error| {
        tracing::error!(error = %rosterflow_model::error_chain(&error), "cannot start a console session");
        Refusal::Unavailable
    })?;
    Ok(session::set_cookie(&token))
}

async fn logout(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Form(form): Form<Csrf>,
) -> Response {
    let admin = match poster(&service, &headers, &form.csrf).await {
        Ok(admin) => admin,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(error) =
        rosterflow_store::sign_in::close_console_session(service.db(), admin.session.token()).await
    {
        return server_error(&admin, &error);
    }
    (
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

async fn pipeline_page(
    State(service): State<Arc<Service>>,
    admin: Admin,
    Path(name): Path<String>,
    Query(notice): Query<Notice>,
) -> Response {
    let zone = match visible_pipeline(&service, &admin, &name).await {
        Ok(served) => time::zone_of(served.pipeline.file.schedule.as_ref()),
        Err(refusal) => return refusal,
    };
    let now = service.clock.now();
    let history = match runs::history(service.db(), &name, 50).await {
        Ok(history) => history,
        Err(error) => return server_error(&admin, &error),
    };
    let held: Vec<&RunSummary> = history.iter().filter(|run| run.status == "held").collect();
    let body = html! {
        @if let Some(notice) = notice.text() { p.notice { (notice) } }
        p { (run_now_button(&name, &admin)) }
        p { a href={ "/pipelines/" (name) "/doctor" } { "Doctor: what is wrong with the district's data" } }
        @if !held.is_empty() {
            h2 { "Held for approval" }
            @for run in &held {
                @let reasons = held::reasons(run.error.as_deref().unwrap_or(""));
                p.lead {
                    a href={ "/runs/" (run.id) } { "Run " (run.id) } " (" (run.changes) " changes, "
                    (time::stored(&run.started_at, zone, now)) "): " (held::headline(&reasons))
                }
                (decision_buttons(run.id, &admin))
            }
        }
        h2 { "Recent runs" }
        (chart::runs(&history[..history.len().min(CHARTED)], zone, now))
        h2 { "Downloads" }
        p { "The current school year, every student with their SIS id: growth data ("
            a href={ "/pipelines/" (name) "/download/growth.csv" } download { "CSV" } ", "
            a href={ "/pipelines/" (name) "/download/growth.parquet" } download { "Parquet" }
            ") and roster history ("
            a href={ "/pipelines/" (name) "/download/roster_history.csv" } download { "CSV" } ", "
            a href={ "/pipelines/" (name) "/download/roster_history.parquet" } download { "Parquet" }
            ")." }
        h2 { "Explain" }
        form method="get" action="/explain" {
            input type="hidden" name="pipeline" value=(name);
            select name="subject" {
                option value="student" { "Student" }
                option value="teacher" { "Teacher" }
                option value="class" { "Class" }
            }
            " "
            input type="text" name="id" placeholder="SIS id or Clever id" required;
            " "
            button { "Explain" }
        }
        h2 { "Run history" }
        div.scroll { table.cards {
            thead { tr {
                th { "Run" } th { "Status" } th { "Started" } th { "Took" } th.num { "Changes" }
                th.num { "Quarantined" } th { "By" } th { "Note" }
            } }
            tbody { @for run in &history { tr {
                th scope="row" { a href={ "/runs/" (run.id) } { "Run " (run.id) } }
                td data-label="Status" class=(run.status) { (run.status) }
                td data-label="Started" { (time::stored(&run.started_at, zone, now)) }
                td data-label="Took" { @if let Some(took) = took(run) { (time::duration(took)) } }
                td.num data-label="Changes" { (run.changes) }
                td.num data-label="Quarantined" { (run.quarantined) }
                td data-label="By" { (run.requested_by.as_deref().unwrap_or("")) @if let Some(by) = &run.decided_by { br; (run.status) " by " (by) } }
                td data-label="Note" { (run.error.as_deref().or(run.source_note.as_deref()).unwrap_or("")) }
            } } }
        } }
    };
    page(&format!("Pipeline {name}"), Some(&admin), body).into_response()
}

/// How many of the recent runs a pipeline's page charts.
const CHARTED: usize = 30;

/// How long `run` took, when its end is when it ended (not when an admin decided about it).
fn took(run: &RunSummary) -> Option<chrono::Duration> {
    match run.status.as_str() {
        "committed" | "held" | "failed" => {
            time::elapsed(&run.started_at, run.finished_at.as_deref()?)
        }
        _ => None,
    }
}

fn decision_buttons(run: i64, admin: &Admin) -> Markup {
    html! {
        div.actions {
            (post_button(&format!("/runs/{run}/approve"), "Approve", admin))
            (post_button(&format!("/runs/{run}/discard"), "Discard", admin))
        }
    }
}

/// Changes of each type (`student.archive`...), from a report's rows.
fn changes_by_type(report: &RunReport) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in report.rows.iter().filter(|row| row.kind == "change") {
        *counts
            .entry(format!("{}.{}", row.entity, row.action))
            .or_default() += 1;
    }
    counts
}

/// The most rows a run page lists; the CSV has them all.
const LISTED: usize = 200;

/// Up to this many quarantined records are listed unfolded.
const OPEN_QUARANTINED: usize = 20;

async fn run_page(
    State(service): State<Arc<Service>>,
    admin: Admin,
    Path(id): Path<i64>,
    Query(notice): Query<Notice>,
) -> Response {
    if let Err(refusal) = visible_run(&service, &admin, id).await {
        return refusal;
    }
    let report = match report::read(service.db(), id).await {
        Ok(report) => report,
        Err(error @ report::ReportError::NoSuchRun { .. }) => {
            return failure(StatusCode::NOT_FOUND, Some(&admin), error.to_string());
        }
        Err(error) => return server_error(&admin, &error),
    };
    let quarantined: Vec<_> = report
        .rows
        .iter()
        .filter(|row| row.kind == "quarantine")
        .collect();
    let changes: Vec<_> = report
        .rows
        .iter()
        .filter(|row| row.kind == "change")
        .collect();
    let held = report.status == "held";
    let served = service.pipeline(&report.pipeline);
    let zone = time::zone_of(
        served
            .as_ref()
            .and_then(|served| served.pipeline.file.schedule.as_ref()),
    );
    let threshold = served
        .as_ref()
        .map(|served| served.pipeline.file.safety.archive_max_percent);
    let now = service.clock.now();
    let reasons = held::reasons(report.note.as_deref().unwrap_or(""));
    let body = html! {
        @if let Some(notice) = notice.text() { p.notice { (notice) } }
        p {
            "Pipeline " a href={ "/pipelines/" (report.pipeline) } { (report.pipeline) } ", "
            span class={ "badge state " (report.status) } { (report.status) } ", started " (time::stored(&report.started_at, zone, now))
            @if let Some(finished) = &report.finished_at { ", finished " (time::stored(finished, zone, now)) }
            @if let Some(kind) = &report.source_kind { ", " (kind) " sync" }
        }
        @if held {
            p.lead.reason { (held::headline(&reasons)) }
            (decision_buttons(report.run, &admin))
            p { "Nothing of this run is applied yet: below is what its plan would change." }
            @if reasons.len() > 1 {
                h2 { "Why it is held" }
                ul.reasons { @for reason in &reasons { li { (reason) } } }
            }
            h2 { "Changes per school" }
            div.scroll { (held::table(&held::per_school(&report.planned, &report.active_by_school), threshold)) }
        } @else if let Some(note) = &report.note {
            p class=(report.status) { (note) }
        }
        h2 { "Changes by type" }
        div.scroll { table {
            thead { tr { th { "Type" } th { "Count" } } }
            tbody { @for (kind, count) in changes_by_type(&report) { tr { td { (kind) } td { (count) } } } }
        } }
        p { a href={ "/runs/" (report.run) "/report.csv" } download { "Download every change and quarantined record (CSV)" } }
        // The records one by one, folded: the numbers above are what a glance needs.
        details open[quarantined.len() <= OPEN_QUARANTINED] {
            summary { h2.inline { "Quarantined records (" (quarantined.len()) ")" } }
            @if quarantined.is_empty() { p { "None." } }
            @else { div.scroll { table.cards {
                thead { tr { th { "Record" } th { "Reason" } th { "Suggested fix" } } }
                tbody { @for row in quarantined.iter().take(LISTED) { tr {
                    th scope="row" { (row.entity) " " (row.source_id.as_deref().unwrap_or(""))
                        @if let Some(origin) = &row.origin { br; small { (origin) } } }
                    td data-label="Reason" { (row.reason) }
                    td data-label="Suggested fix" { (row.suggested_fix.as_deref().unwrap_or("")) }
                } } }
            } } }
        }
        details {
            summary { h2.inline { "Changes (" (changes.len()) ")" } }
            @if changes.len() > LISTED { p { "The first " (LISTED) "; the CSV has them all." } }
            div.scroll { table.cards {
                thead { tr { th { "Record" } th { "Change" } th { "Reason" } th { "By" } } }
                tbody { @for row in changes.iter().take(LISTED) { tr {
                    th scope="row" { (row.entity) " " (report::named(row.name.as_deref(), row.source_id.as_deref()))
                        @if row.member_id.is_some() { " · " (report::named(row.member_name.as_deref(), row.member_id.as_deref())) } }
                    td data-label="Change" { (row.action) @if let Some(detail) = &row.detail { " (" (detail) ")" } }
                    td data-label="Reason" { (row.reason) }
                    td data-label="By" { (row.author) }
                } } }
            } }
        }
    };
    page(&format!("Run {id}"), Some(&admin), body).into_response()
}

async fn run_csv(
    State(service): State<Arc<Service>>,
    admin: Admin,
    Path(id): Path<i64>,
) -> Response {
    if let Err(refusal) = visible_run(&service, &admin, id).await {
        return refusal;
    }
    let report = match report::read(service.db(), id).await {
        Ok(report) => report,
        Err(error) => return server_error(&admin, &error),
    };
    let mut csv = Vec::new();
    if let Err(error) = report.write_csv(&mut csv) {
        return server_error(&admin, &error);
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"run-{id}.csv\""),
            ),
        ],
        csv,
    )
        .into_response()
}

#[derive(Deserialize)]
struct ExplainQuery {
    pipeline: String,
    subject: String,
    id: String,
}

async fn explain_page(
    State(service): State<Arc<Service>>,
    admin: Admin,
    Query(query): Query<ExplainQuery>,
) -> Response {
    let Ok(subject) = query.subject.parse::<Subject>() else {
        return failure(
            StatusCode::BAD_REQUEST,
            Some(&admin),
            format!("{:?} is not student, teacher or class", query.subject),
        );
    };
    let district = match visible_pipeline(&service, &admin, &query.pipeline).await {
        Ok(served) => match served.pipeline.district(service.db()).await {
            Ok(district) => district,
            Err(error) => return server_error(&admin, &error),
        },
        Err(_) => None,
    };
    let Some(district) = district else {
        return failure(
            StatusCode::NOT_FOUND,
            Some(&admin),
            format!(
                "Pipeline {:?} is not served or has not run yet.",
                query.pipeline
            ),
        );
    };
    let text = match explain::explain(service.db(), &district, subject, query.id.trim()).await {
        Ok(explanation) => explanation.to_string(),
        Err(error) => rosterflow_model::error_chain(&error),
    };
    let body = html! {
        p { a href={ "/pipelines/" (query.pipeline) } { "Back to " (query.pipeline) } }
        pre { (text) }
    };
    page(
        &format!("Explain {} {}", query.subject, query.id),
        Some(&admin),
        body,
    )
    .into_response()
}

async fn run_now(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<Csrf>,
) -> Response {
    let admin = match poster(&service, &headers, &form.csrf).await {
        Ok(admin) => admin,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = visible_pipeline(&service, &admin, &name).await {
        return refusal;
    }
    let due = Due {
        pipeline: name.clone(),
        at: service.clock.now(),
        by: Some(admin.author()),
        approve: None,
    };
    match service.queue.push(&due).await {
        Ok(_) => {
            tracing::info!(pipeline = %name, by = %admin.author(), "run requested from the console");
            Redirect::to(&format!("/pipelines/{name}?done=queued")).into_response()
        }
        Err(error) => server_error(&admin, &error),
    }
}

/// The pipeline a run belongs to, as the service serves it.
async fn run_pipeline(
    service: &Service,
    admin: &Admin,
    run: i64,
) -> Result<super::Served, Response> {
    let name = match runs::pipeline_of(service.db(), run).await {
        Ok(Some(name)) => name,
        Ok(None) => {
            return Err(failure(
                StatusCode::NOT_FOUND,
                Some(admin),
                format!("Run {run} does not exist."),
            ));
        }
        Err(error) => return Err(server_error(admin, &error)),
    };
    service.pipeline(&name).ok_or_else(|| {
        failure(
            StatusCode::NOT_FOUND,
            Some(admin),
            format!("Pipeline {name:?} is no longer served."),
        )
    })
}

/// What an admin decides about a held run.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Approve,
    Discard,
}

async fn decide(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path((run, decision)): Path<(i64, Decision)>,
    Form(form): Form<Csrf>,
) -> Response {
    let admin = match poster(&service, &headers, &form.csrf).await {
        Ok(admin) => admin,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = visible_run(&service, &admin, run).await {
        return refusal;
    }
    let served = match run_pipeline(&service, &admin, run).await {
        Ok(served) => served,
        Err(refusal) => return refusal.into_response(),
    };
    let author = admin.author();
    let decided = match decision {
        // Applied by a worker, like any run: within the service's `--max-runs`, and whether or
        // not the browser waits for it.
        Decision::Approve => {
            if let Err(error) = runs::expect_held(service.db(), run, "approved").await {
                return failure(
                    StatusCode::CONFLICT,
                    Some(&admin),
                    rosterflow_model::error_chain(&error),
                );
            }
            let due = Due {
                pipeline: served.pipeline.name().to_owned(),
                at: service.clock.now(),
                by: Some(author.clone()),
                approve: Some(run),
            };
            service
                .queue
                .push(&due)
                .await
                .map(|_| "approval_queued")
                .map_err(|error| rosterflow_model::error_chain(&error))
        }
        Decision::Discard => {
            runs::discard(service.db(), served.pipeline.name(), run, Some(&author))
                .await
                .map(|()| "discarded")
                .map_err(|error| rosterflow_model::error_chain(&error))
        }
    };
    match decided {
        Ok(done) => {
            tracing::warn!(run, by = %author, "held run {done} from the console");
            Redirect::to(&format!("/runs/{run}?done={done}")).into_response()
        }
        Err(message) => failure(StatusCode::CONFLICT, Some(&admin), message),
    }
}

async fn sign_ins_page(State(service): State<Arc<Service>>, admin: Admin) -> Response {
    let district = admin.session.district.as_deref();
    let logged = match rosterflow_store::sign_in::recent(service.db(), district, 200).await {
        Ok(logged) => logged,
        Err(error) => return server_error(&admin, &error),
    };
    // Of every district the service serves: in UTC.
    let now = service.clock.now();
    let body = html! {
        @if service.sign_in.is_none() { p.problem { "Signing in with Clever is off in this service." } }
        div.scroll { table {
            thead { tr {
                th { "When" } th { "Outcome" } th { "District" } th { "Role" } th { "Account" }
                th { "Clever user" } th { "Why" }
            } }
            tbody { @for row in &logged { tr {
                td { (time::stored(&row.at, Tz::UTC, now)) }
                td class=(if row.outcome.as_str() == "signed_in" || row.outcome.as_str() == "created" { "" } else { "failed" }) { (row.outcome) }
                td { (row.district_key.as_deref().or(row.clever_district.as_deref()).unwrap_or("")) }
                td { (row.role.as_deref().unwrap_or("")) }
                td { @if let (Some(kind), Some(id)) = (&row.account_kind, row.account_id) {
                    (kind) " " (id) @if let Some(name) = &row.name { ": " (name) }
                } }
                td { (row.clever_user.as_deref().unwrap_or("")) }
                td { (row.detail.as_deref().unwrap_or("")) }
            } } }
        } }
    };
    page("Sign-ins with Clever", Some(&admin), body).into_response()
}

/// The files a console user may download, by name.
fn download_of(file: &str) -> Option<(rosterflow_export::Dataset, bool)> {
    use rosterflow_export::Dataset::{Growth, RosterHistory};
    Some(match file {
        "growth.csv" => (Growth, true),
        "growth.parquet" => (Growth, false),
        "roster_history.csv" => (RosterHistory, true),
        "roster_history.parquet" => (RosterHistory, false),
        _ => return None,
    })
}

/// `/pipelines/{name}/download/{file}`: the district's growth data or roster history for the
/// current school year (the pipeline's `[export]` period and columns, if it has one), made now,
/// as Parquet or CSV.
async fn download(
    State(service): State<Arc<Service>>,
    admin: Admin,
    Path((name, file)): Path<(String, String)>,
) -> Response {
    let served = match visible_pipeline(&service, &admin, &name).await {
        Ok(served) => served,
        Err(refusal) => return refusal,
    };
    let Some((dataset, as_csv)) = download_of(&file) else {
        return failure(
            StatusCode::NOT_FOUND,
            Some(&admin),
            format!("There is no download named {file:?}."),
        );
    };
    let district = match served.pipeline.district(service.db()).await {
        Ok(Some(district)) => district,
        Ok(None) => {
            return failure(
                StatusCode::NOT_FOUND,
                Some(&admin),
                format!("Pipeline {name:?} has not run yet: there is nothing to download."),
            );
        }
        Err(error) => return server_error(&admin, &error),
    };
    let scratch = match tempfile::tempdir() {
        Ok(scratch) => scratch,
        Err(error) => return server_error(&admin, &error),
    };
    let config = rosterflow_export::ExportConfig {
        dir: scratch.path().display().to_string(),
        storage_options: Default::default(),
        datasets: vec![dataset],
        ..served.pipeline.file.export.clone().unwrap_or_default()
    };
    let report =
        match rosterflow_export::run(service.db(), &district, &config, service.clock.now()).await {
            Ok(report) => report,
            Err(error) => return server_error(&admin, &error),
        };
    let Some(written) = report.files.first() else {
        return failure(
            StatusCode::NOT_FOUND,
            Some(&admin),
            "Nothing was exported.".into(),
        );
    };
    let parquet = std::path::PathBuf::from(&written.location);
    let path = if as_csv {
        let csv = scratch.path().join("download.csv");
        let (from, to) = (parquet.clone(), csv.clone());
        let converted = tokio::task::spawn_blocking(move || {
            rosterflow_export::spreadsheet::parquet_to_csv(dataset, &from, &to)
        })
        .await;
        match converted {
            Ok(Ok(_)) => csv,
            Ok(Err(error)) => return server_error(&admin, &error),
            Err(error) => return server_error(&admin, &error),
        }
    } else {
        parquet
    };
    let body = match tokio::fs::read(&path).await {
        Ok(body) => body,
        Err(error) => return server_error(&admin, &error),
    };
    tracing::info!(pipeline = %name, file = %file, by = %admin.author(), rows = written.rows, "download from the console");
    let (content_type, extension) = match as_csv {
        true => ("text/csv; charset=utf-8", "csv"),
        false => ("application/vnd.apache.parquet", "parquet"),
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{district}-{dataset}-{}.{extension}\"",
                    report.school_year
                ),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// `/sessions`: the operator's list of live console sessions, each of which they can end.
async fn sessions_page(State(service): State<Arc<Service>>, admin: Admin) -> Response {
    if !admin.session.is_operator() {
        return failure(StatusCode::NOT_FOUND, Some(&admin), "No such page.".into());
    }
    let sessions = match rosterflow_store::sign_in::console_sessions(
        service.db(),
        service.clock.now(),
    )
    .await
    {
        Ok(sessions) => sessions,
        Err(error) => return server_error(&admin, &error),
    };
    let now = service.clock.now();
    let body = html! {
        div.scroll { table {
            thead { tr { th { "Who" } th { "District" } th { "Since" } th { "Until" } th {} } }
            tbody { @for stored in &sessions { tr {
                td { (stored.user_name) }
                td { (stored.district_key.as_deref().unwrap_or("every district")) }
                td { (time::stored(&stored.created_at, Tz::UTC, now)) }
                td { (time::stored(&stored.expires_at, Tz::UTC, now)) }
                td { @if stored.id != admin.session.id {
                    form method="post" action={ "/sessions/" (stored.id) "/end" } class="inline" {
                        input type="hidden" name="csrf" value=(admin.csrf);
                        button { "End" }
                    }
                } }
            } } }
        } }
    };
    page("Console sessions", Some(&admin), body).into_response()
}

async fn end_session(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<Csrf>,
) -> Response {
    let admin = match poster(&service, &headers, &form.csrf).await {
        Ok(admin) => admin,
        Err(refusal) => return refusal.into_response(),
    };
    if !admin.session.is_operator() {
        return failure(StatusCode::NOT_FOUND, Some(&admin), "No such page.".into());
    }
    match rosterflow_store::sign_in::end_console_session(service.db(), id).await {
        Ok(_) => {
            tracing::warn!(session = id, by = %admin.author(), "console session ended by the operator");
            Redirect::to("/sessions").into_response()
        }
        Err(error) => server_error(&admin, &error),
    }
}
