//! The console's doctor page of a pipeline, `/pipelines/{name}/doctor`: the last check of the
//! district's data (`rosterflow doctor`: each finding with its count, examples, who fixes it and
//! how, and the message for the Clever or OneRoster admin), and a "Check now" button.
//!
//! A check is queued like "run now": the service runs the checks one at a time (each reads the
//! whole district: one at a time bounds the memory they take), at most one per pipeline queued
//! or running, each reading only (no run lock, no write; a run may go on meanwhile). The last
//! result of each pipeline is kept by the process, not in the Freckle DB: a restarted service
//! shows none until the next check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use tokio::sync::Semaphore;

use super::{Admin, Csrf, Service, page, poster, time, visible_pipeline};
use rosterflow_pipeline::doctor::{self, Diagnosis, render};
use rosterflow_transform::plugin::Plugins;

/// A pipeline's checks as this process knows them.
#[derive(Debug, Clone, Default)]
struct Checks {
    /// The check queued or running: who asked, and when.
    pending: Option<(String, String)>,
    /// The last check that ended: who asked, when it ended, and what it found or why it failed.
    last: Option<(String, String, Result<Diagnosis, String>)>,
}

/// The checks of every pipeline, by database and pipeline name.
fn checks() -> &'static Mutex<HashMap<(String, String), Checks>> {
    static CHECKS: OnceLock<Mutex<HashMap<(String, String), Checks>>> = OnceLock::new();
    CHECKS.get_or_init(Mutex::default)
}

/// One check runs at a time; the others wait their turn.
fn turn() -> &'static Semaphore {
    static TURN: OnceLock<Semaphore> = OnceLock::new();
    TURN.get_or_init(|| Semaphore::new(1))
}

fn key(service: &Service, name: &str) -> (String, String) {
    (service.database.clone(), name.to_owned())
}

fn state_of(service: &Service, name: &str) -> Checks {
    checks()
        .lock()
        .expect("doctor checks lock")
        .get(&key(service, name))
        .cloned()
        .unwrap_or_default()
}

/// `GET /pipelines/{name}/doctor`: the last check, and the button for a new one.
pub(super) async fn show(
    State(service): State<Arc<Service>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Response {
    let zone = match visible_pipeline(&service, &admin, &name).await {
        Ok(served) => time::zone_of(served.pipeline.file.schedule.as_ref()),
        Err(refusal) => return refusal,
    };
    let now = service.clock.now();
    let at = |at: &str| time::stored(at, zone, now);
    let state = state_of(&service, &name);
    let body = html! {
        p { a href={ "/pipelines/" (name) } { "Back to " (name) } }
        p { "What is wrong with the district's data, read from its source as a run reads it. \
             A check changes nothing and may run while a run is under way." }
        @if let Some((by, asked)) = &state.pending {
            p.notice { "A check asked for by " (by) " at " (at(asked)) " is queued or running: reload this page to see its result." }
        } @else {
            form method="post" action={ "/pipelines/" (name) "/doctor" } class="inline" {
                input type="hidden" name="csrf" value=(admin.csrf);
                button { "Check now" }
            }
        }
        @match &state.last {
            None => p { "No check yet." },
            Some((by, ended, Err(error))) => {
                p.problem { "The check asked for by " (by) " failed at " (at(ended)) ": " (error) }
            },
            Some((by, ended, Ok(diagnosis))) => {
                p { "Checked at " (at(ended)) " for " (by) " (terms judged as of " (diagnosis.today)
                    ", school year " (diagnosis.school_year) "): "
                    (diagnosis.roster.schools) " schools, " (diagnosis.roster.sections) " sections, "
                    (diagnosis.roster.students) " students, " (diagnosis.roster.teachers) " teachers after the transforms." }
                @if diagnosis.findings.is_empty() {
                    p.notice { "Nothing found." }
                } @else {
                    div.scroll { table {
                        thead { tr { th { "Count" } th { "Finding" } th { "Who fixes it" } th { "What" } } }
                        tbody { @for finding in &diagnosis.findings { tr {
                            td { (finding.count) }
                            td { code { (finding.code) } }
                            td { (finding.fixer.as_str()) }
                            td { (finding.summary) }
                        } } }
                    } }
                    @for finding in &diagnosis.findings {
                        h2 { (finding.summary) }
                        @if !finding.examples.is_empty() {
                            ul { @for example in &finding.examples { li {
                                (example.kind) " " strong { (example.name) }
                                @if let Some(sis_id) = &example.sis_id { " · SIS id " (sis_id) }
                                @if let Some(id) = &example.source_id { " · id " (id) }
                                @if let Some(detail) = &example.detail { br; (detail) }
                            } } }
                        }
                        p { "To fix (" (finding.fixer.as_str()) "): " (finding.fix) }
                    }
                    h2 { "Message for the source's admin" }
                    pre { (render::text(diagnosis)) }
                }
                @for note in &diagnosis.notes { p.problem { (note) } }
            },
        }
    };
    page(&format!("Doctor: {name}"), Some(&admin), body).into_response()
}

/// `POST /pipelines/{name}/doctor`: queues a check of the pipeline's district, unless one is
/// queued or running.
pub(super) async fn check(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<Csrf>,
) -> Response {
    let admin = match poster(&service, &headers, &form.csrf).await {
        Ok(admin) => admin,
        Err(refusal) => return refusal.into_response(),
    };
    let served = match visible_pipeline(&service, &admin, &name).await {
        Ok(served) => served,
        Err(refusal) => return refusal,
    };
    let by = admin.author();
    let asked = rosterflow_store::db::timestamp(service.clock.now());
    {
        let mut checks = checks().lock().expect("doctor checks lock");
        let checks = checks.entry(key(&service, &name)).or_default();
        if checks.pending.is_some() {
            return Redirect::to(&format!("/pipelines/{name}/doctor")).into_response();
        }
        checks.pending = Some((by.clone(), asked));
    }
    tracing::info!(pipeline = %name, by = %by, "doctor check requested from the console");
    let plugins = Plugins::new(service.options.plugin_cache.clone());
    let key = key(&service, &name);
    let service = Arc::clone(&service);
    tokio::spawn(async move {
        let result = match turn().acquire().await {
            Ok(_turn) => {
                let today = service.clock.now().date_naive();
                doctor::diagnose(&served.pipeline, &plugins, today)
                    .await
                    .map_err(|error| rosterflow_model::error_chain(&error))
            }
            Err(_) => Err("the service is stopping".to_owned()),
        };
        match &result {
            Ok(diagnosis) => {
                tracing::info!(pipeline = %served.pipeline.name(), findings = diagnosis.findings.len(), "doctor check done")
            }
            Err(error) => {
                tracing::warn!(pipeline = %served.pipeline.name(), error = %error, "doctor check failed")
            }
        }
        let ended = rosterflow_store::db::timestamp(service.clock.now());
        let mut checks = checks().lock().expect("doctor checks lock");
        let checks = checks.entry(key).or_default();
        checks.pending = None;
        checks.last = Some((by, ended, result));
    });
    Redirect::to(&format!("/pipelines/{name}/doctor")).into_response()
}
