//! The admin console: server-rendered pages (no scripts) that work on a phone.
//!
//! - `/`: every pipeline with its schedule, last and next run, outcome and counts, runs held,
//!   and a "run now" button; pipeline files that cannot be served, and why.
//! - `/pipelines/{name}`: its recent runs, held runs to approve or discard, and a search box
//!   that explains a student, teacher or class by SIS id or Clever id.
//! - `/runs/{id}`: a run's changes by type and its quarantined records with reasons and
//!   suggested fixes (a held run's: what its plan would change), downloadable as CSV.
//! - `/sign-ins`: the latest sign-ins with Clever and refusals: who, as what, and why.
//!
//! Signing in takes the admin token (`ROSTERFLOW_ADMIN_TOKEN`) and a name; every action is
//! recorded in run history as `console:<name>`. Every POST carries its session's CSRF token.

pub mod session;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use maud::{DOCTYPE, Markup, html};
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
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/report.csv", get(run_csv))
        .route("/runs/{id}/{decision}", post(decide))
        .route("/explain", get(explain_page))
        .route("/sign-ins", get(sign_ins_page))
}

/// A signed-in request, or the response that refuses it.
struct Admin {
    session: Session,
    csrf: String,
}

/// Why a request does not reach the console.
enum Refusal {
    /// No admin token was given to the service.
    ConsoleOff,
    /// A page asked for without a session: the browser is sent to sign in.
    SignIn,
    /// A POST without a session or without its CSRF token.
    Forbidden(&'static str),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::ConsoleOff => (
                StatusCode::NOT_FOUND,
                "The console is off: start `rosterflow serve` with ROSTERFLOW_ADMIN_TOKEN set.\n",
            )
                .into_response(),
            Refusal::SignIn => Redirect::to("/login").into_response(),
            Refusal::Forbidden(why) => {
                (StatusCode::FORBIDDEN, format!("refused: {why}\n")).into_response()
            }
        }
    }
}

/// Checks the session cookie.
fn admin(service: &Service, headers: &HeaderMap) -> Result<Admin, Refusal> {
    let keys = service.console.as_ref().ok_or(Refusal::ConsoleOff)?;
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == session::COOKIE)
        .map(|(_, value)| value);
    let session = cookie
        .and_then(|cookie| keys.session(cookie, Utc::now()))
        .ok_or(Refusal::SignIn)?;
    Ok(Admin {
        csrf: keys.csrf(&session),
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
    }
}

/// Checks the session and the form's CSRF token of a POST.
fn poster(service: &Service, headers: &HeaderMap, csrf: &str) -> Result<Admin, Refusal> {
    let admin = admin(service, headers).map_err(|refusal| match refusal {
        Refusal::SignIn => Refusal::Forbidden("sign in to the console first"),
        other => other,
    })?;
    let keys = service.console.as_ref().ok_or(Refusal::ConsoleOff)?;
    if !keys.csrf_matches(&admin.session, csrf) {
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
                    style { (STYLE) }
                }
                body {
                    header {
                        a href="/" { "rosterflow" }
                        @if let Some(admin) = admin {
                            form method="post" action="/logout" class="inline" {
                                input type="hidden" name="csrf" value=(admin.csrf);
                                span { (admin.session.user) " " }
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f}\
header{display:flex;justify-content:space-between;align-items:center;padding:.6rem 1rem;background:#eef2f7}\
header a{font-weight:600;text-decoration:none;color:inherit}main{padding:0 1rem 2rem}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}\
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
.inline{display:inline}button{padding:.35rem .8rem;margin:.1rem}.held{color:#a15c00}\
.failed{color:#b00020}.notice{background:#e8f5e9;padding:.5rem;border-radius:4px}\
.problem{background:#fdecea;padding:.5rem;border-radius:4px}pre{white-space:pre-wrap}\
input[type=text],input[type=password],select{padding:.35rem;max-width:100%}";

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
    let pipelines = service.pipelines();
    let next = service.next_runs.read().expect("next runs lock").clone();
    let problems = service.problems.read().expect("problems lock").clone();
    let mut statuses = BTreeMap::new();
    for name in pipelines.keys() {
        match runs::status(service.db(), name).await {
            Ok(status) => statuses.insert(name.clone(), status),
            Err(error) => return server_error(&admin, &error),
        };
    }
    let body = html! {
        @if let Some(notice) = notice.text() { p.notice { (notice) } }
        div.scroll { table {
            thead { tr {
                th { "Pipeline" } th { "Schedule" } th { "Next run" } th { "Last run" }
                th { "Changes" } th { "Quarantined" } th { "Held" } th {}
            } }
            tbody {
                @for (name, served) in pipelines.iter() {
                    @let status = &statuses[name];
                    tr {
                        td { a href={ "/pipelines/" (name) } { (name) } }
                        td { @match &served.pipeline.file.schedule {
                            Some(schedule) => { (schedule.cron) " " (schedule.timezone) },
                            None => "on demand",
                        } }
                        td { @match next.get(name) { Some(at) => (at.to_rfc3339()), None => "—" } }
                        td { @match &status.last {
                            Some(run) => { a href={ "/runs/" (run.id) } { "run " (run.id) } " "
                                span class=(run.status) { (run.status) } " " (run.started_at) },
                            None => "never",
                        } }
                        td { @if let Some(run) = &status.last { (run.changes) } }
                        td { (status.quarantined) }
                        td.held { @if !status.held.is_empty() { (status.held.len()) } }
                        td { (run_now_button(name, &admin)) }
                    }
                }
            }
        } }
        @if service.sign_in.is_some() { p { a href="/sign-ins" { "Sign-ins with Clever" } } }
        @if !problems.is_empty() {
            h2 { "Pipeline files that cannot be served" }
            @for (path, problem) in &problems {
                p.problem { strong { (path.display()) } br; (problem) }
            }
        }
    };
    page("Pipelines", Some(&admin), body).into_response()
}

fn run_now_button(pipeline: &str, admin: &Admin) -> Markup {
    html! {
        form method="post" action={ "/pipelines/" (pipeline) "/run" } class="inline" {
            input type="hidden" name="csrf" value=(admin.csrf);
            button { "Run now" }
        }
    }
}

async fn login_page(State(service): State<Arc<Service>>) -> Response {
    if service.console.is_none() {
        return Refusal::ConsoleOff.into_response();
    }
    page("Sign in", None, login_form(None)).into_response()
}

fn login_form(problem: Option<&str>) -> Markup {
    html! {
        @if let Some(problem) = problem { p.problem { (problem) } }
        form method="post" action="/login" {
            p { label { "Your name" br; input type="text" name="user" autocomplete="username" required; } }
            p { label { "Admin token" br; input type="password" name="token" autocomplete="current-password" required; } }
            button { "Sign in" }
        }
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
    token: String,
}

async fn login(State(service): State<Arc<Service>>, Form(login): Form<Login>) -> Response {
    let Some(keys) = &service.console else {
        return Refusal::ConsoleOff.into_response();
    };
    if !keys.admits(&login.token) {
        tracing::warn!(user = %login.user, "console sign-in refused: wrong admin token");
        // Slows down guessing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let body = login_form(Some("That is not the admin token."));
        return (StatusCode::UNAUTHORIZED, page("Sign in", None, body)).into_response();
    }
    let Some(session) = keys.sign_in(login.user.trim(), Utc::now()) else {
        let body = login_form(Some(
            "A name is 1 to 64 letters, digits, '.', '_', '-' or '@'.",
        ));
        return (StatusCode::BAD_REQUEST, page("Sign in", None, body)).into_response();
    };
    tracing::info!(user = %session.user, "signed in to the console");
    (
        [(header::SET_COOKIE, session.set_cookie())],
        Redirect::to("/"),
    )
        .into_response()
}

async fn logout(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Form(form): Form<Csrf>,
) -> Response {
    if let Err(refusal) = poster(&service, &headers, &form.csrf) {
        return refusal.into_response();
    }
    (
        [(header::SET_COOKIE, Session::clear_cookie())],
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
    if service.pipeline(&name).is_none() {
        return failure(
            StatusCode::NOT_FOUND,
            Some(&admin),
            format!("No pipeline named {name:?} is served."),
        );
    }
    let history = match runs::history(service.db(), &name, 50).await {
        Ok(history) => history,
        Err(error) => return server_error(&admin, &error),
    };
    let held: Vec<&RunSummary> = history.iter().filter(|run| run.status == "held").collect();
    let body = html! {
        @if let Some(notice) = notice.text() { p.notice { (notice) } }
        p { (run_now_button(&name, &admin)) }
        @if !held.is_empty() {
            h2 { "Held for approval" }
            @for run in &held {
                p.held {
                    a href={ "/runs/" (run.id) } { "Run " (run.id) } ", " (run.changes) " changes: "
                    (run.error.as_deref().unwrap_or(""))
                }
                (decision_buttons(run.id, &admin))
            }
        }
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
        h2 { "Recent runs" }
        div.scroll { table {
            thead { tr { th { "Run" } th { "Status" } th { "Started" } th { "Changes" } th { "Quarantined" } th { "By" } th { "Note" } } }
            tbody { @for run in &history { tr {
                td { a href={ "/runs/" (run.id) } { (run.id) } }
                td class=(run.status) { (run.status) }
                td { (run.started_at) }
                td { (run.changes) }
                td { (run.quarantined) }
                td { (run.requested_by.as_deref().unwrap_or("")) @if let Some(by) = &run.decided_by { br; (run.status) " by " (by) } }
                td { (run.error.as_deref().or(run.source_note.as_deref()).unwrap_or("")) }
            } } }
        } }
    };
    page(&format!("Pipeline {name}"), Some(&admin), body).into_response()
}

fn decision_buttons(run: i64, admin: &Admin) -> Markup {
    html! {
        form method="post" action={ "/runs/" (run) "/approve" } class="inline" {
            input type="hidden" name="csrf" value=(admin.csrf);
            button { "Approve" }
        }
        form method="post" action={ "/runs/" (run) "/discard" } class="inline" {
            input type="hidden" name="csrf" value=(admin.csrf);
            button { "Discard" }
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

async fn run_page(
    State(service): State<Arc<Service>>,
    admin: Admin,
    Path(id): Path<i64>,
    Query(notice): Query<Notice>,
) -> Response {
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
    let body = html! {
        @if let Some(notice) = notice.text() { p.notice { (notice) } }
        p {
            "Pipeline " a href={ "/pipelines/" (report.pipeline) } { (report.pipeline) } ", "
            span class=(report.status) { (report.status) } ", started " (report.started_at)
            @if let Some(finished) = &report.finished_at { ", finished " (finished) }
            @if let Some(kind) = &report.source_kind { ", " (kind) " sync" }
        }
        @if let Some(note) = &report.note { p class=(report.status) { (note) } }
        @if held {
            p { "Nothing of this run is applied yet: below is what its plan would change." }
            (decision_buttons(report.run, &admin))
            h2 { "Changes per school" }
            div.scroll { table {
                thead { tr { th { "School" } th { "Type" } th { "Count" } } }
                tbody { @for planned in &report.planned { tr {
                    td { (planned.school.as_deref().unwrap_or("(no school)")) }
                    td { (planned.change) }
                    td { (planned.count) }
                } } }
            } }
        }
        h2 { "Changes by type" }
        div.scroll { table {
            thead { tr { th { "Type" } th { "Count" } } }
            tbody { @for (kind, count) in changes_by_type(&report) { tr { td { (kind) } td { (count) } } } }
        } }
        p { a href={ "/runs/" (report.run) "/report.csv" } download { "Download every change and quarantined record (CSV)" } }
        h2 { "Quarantined records (" (quarantined.len()) ")" }
        div.scroll { table {
            thead { tr { th { "Record" } th { "Reason" } th { "Suggested fix" } } }
            tbody { @for row in quarantined.iter().take(LISTED) { tr {
                td { (row.entity) " " (row.source_id.as_deref().unwrap_or(""))
                    @if let Some(origin) = &row.origin { br; small { (origin) } } }
                td { (row.reason) }
                td { (row.suggested_fix.as_deref().unwrap_or("")) }
            } } }
        } }
        h2 { "Changes (" (changes.len()) ")" }
        @if changes.len() > LISTED { p { "The first " (LISTED) "; the CSV has them all." } }
        div.scroll { table {
            thead { tr { th { "Record" } th { "Change" } th { "Reason" } th { "By" } } }
            tbody { @for row in changes.iter().take(LISTED) { tr {
                td { (row.entity) " " (row.source_id.as_deref().unwrap_or(""))
                    @if let Some(member) = &row.member_id { " · " (member) } }
                td { (row.action) @if let Some(detail) = &row.detail { " (" (detail) ")" } }
                td { (row.reason) }
                td { (row.author) }
            } } }
        } }
    };
    page(&format!("Run {id}"), Some(&admin), body).into_response()
}

async fn run_csv(
    State(service): State<Arc<Service>>,
    admin: Admin,
    Path(id): Path<i64>,
) -> Response {
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
    let district = match service.pipeline(&query.pipeline) {
        Some(served) => match served.pipeline.district(service.db()).await {
            Ok(district) => district,
            Err(error) => return server_error(&admin, &error),
        },
        None => None,
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
    let admin = match poster(&service, &headers, &form.csrf) {
        Ok(admin) => admin,
        Err(refusal) => return refusal.into_response(),
    };
    if service.pipeline(&name).is_none() {
        return failure(
            StatusCode::NOT_FOUND,
            Some(&admin),
            format!("No pipeline named {name:?} is served."),
        );
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
    let admin = match poster(&service, &headers, &form.csrf) {
        Ok(admin) => admin,
        Err(refusal) => return refusal.into_response(),
    };
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
    let logged = match rosterflow_store::sign_in::recent(service.db(), None, 200).await {
        Ok(logged) => logged,
        Err(error) => return server_error(&admin, &error),
    };
    let body = html! {
        @if service.sign_in.is_none() { p.problem { "Signing in with Clever is off in this service." } }
        div.scroll { table {
            thead { tr {
                th { "When" } th { "Outcome" } th { "District" } th { "Role" } th { "Account" }
                th { "Clever user" } th { "Why" }
            } }
            tbody { @for row in &logged { tr {
                td { (row.at) }
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
