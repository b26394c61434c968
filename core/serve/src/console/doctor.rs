//! The console's doctor page of a pipeline, `/pipelines/{name}/doctor`: the last check of the
//! district's data (`rosterflow doctor`: each finding with its count, examples, who fixes it and
//! how, and the message for the Clever or OneRoster admin), and a "Check now" button.
//!
//! "Check now" queues a job on the service's own queue of checks ([`Checks`], a field of the
//! [`Service`]): apalis's job queue carries runs ([`crate::queue::Due`]), on PostgreSQL to
//! whichever service takes them, while a check's result is shown by the service that was
//! asked. One worker ([`work`]) takes the checks in the order asked, one at a time (each reads
//! the whole district: one at a time bounds the memory they take), until the service stops. A
//! pipeline has at most one check queued or running: a second "Check now" meanwhile queues
//! nothing. A check waits while this service runs the same pipeline (the page says so), so that
//! a run's snapshot and a check's are never in memory together; it takes no run lock and writes
//! nothing. The last result of each pipeline, or why the check failed (an error, or a panic),
//! is kept by the service, not in the Freckle DB: a restarted service shows none until the next
//! check.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::FutureExt;
use maud::html;
use tokio::sync::mpsc;

use super::{Admin, Csrf, Service, page, post_button, poster, time, visible_pipeline};
use rosterflow_pipeline::doctor::{self, Diagnosis, render};
use rosterflow_transform::plugin::Plugins;

/// At most this many checks wait in the queue (at most one per pipeline).
const QUEUED_MAX: usize = 256;

/// A check asked for, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    /// Who asked (`console:<name>`), and when.
    by: String,
    at: String,
    /// Whether it waits for the pipeline's run to end.
    waiting_for_run: bool,
}

/// The last check that ended: who asked, when it ended, and what it found or why it failed.
#[derive(Debug, Clone)]
struct Ended {
    by: String,
    at: String,
    result: Result<Diagnosis, String>,
}

/// A pipeline's checks as this service knows them.
#[derive(Debug, Clone, Default)]
struct Pipeline {
    pending: Option<Pending>,
    last: Option<Ended>,
}

/// One check for the worker.
#[derive(Debug)]
pub(crate) struct Job {
    pipeline: String,
}

/// Whether "Check now" queued a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    Queued,
    /// One is queued or running already: nothing more was queued.
    AlreadyPending,
    /// The queue is full, or its worker stopped.
    Refused,
}

/// The service's checks: each pipeline's state, and the queue its worker takes checks from.
pub(crate) struct Checks {
    pipelines: Mutex<HashMap<String, Pipeline>>,
    queue: mpsc::Sender<Job>,
}

impl Checks {
    /// The checks, and the receiving end of their queue for [`work`].
    pub(crate) fn new() -> (Checks, mpsc::Receiver<Job>) {
        let (queue, receiver) = mpsc::channel(QUEUED_MAX);
        let checks = Checks {
            pipelines: Mutex::default(),
            queue,
        };
        (checks, receiver)
    }

    fn state(&self, pipeline: &str) -> Pipeline {
        self.pipelines
            .lock()
            .expect("doctor checks lock")
            .get(pipeline)
            .cloned()
            .unwrap_or_default()
    }

    fn update(&self, pipeline: &str, change: impl FnOnce(&mut Pipeline)) {
        let mut pipelines = self.pipelines.lock().expect("doctor checks lock");
        change(pipelines.entry(pipeline.to_owned()).or_default());
    }

    /// Queues a check of `pipeline` asked for by `by` at `at`, unless one is pending.
    pub(crate) fn ask(&self, pipeline: &str, by: &str, at: &str) -> Asked {
        let mut pipelines = self.pipelines.lock().expect("doctor checks lock");
        let state = pipelines.entry(pipeline.to_owned()).or_default();
        if state.pending.is_some() {
            return Asked::AlreadyPending;
        }
        let job = Job {
            pipeline: pipeline.to_owned(),
        };
        if self.queue.try_send(job).is_err() {
            return Asked::Refused;
        }
        state.pending = Some(Pending {
            by: by.to_owned(),
            at: at.to_owned(),
            waiting_for_run: false,
        });
        Asked::Queued
    }

    /// Runs `check` of `pipeline` to its end, and keeps what it found or why it failed, a panic
    /// included; the pipeline's check is no longer pending then.
    async fn run(
        &self,
        pipeline: &str,
        ended_at: impl FnOnce() -> String,
        check: impl Future<Output = Result<Diagnosis, String>>,
    ) {
        let result = match std::panic::AssertUnwindSafe(check).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                Err(format!("the check stopped unexpectedly (a bug: {why})"))
            }
        };
        match &result {
            Ok(diagnosis) => {
                tracing::info!(
                    pipeline,
                    findings = diagnosis.findings.len(),
                    "doctor check done"
                )
            }
            Err(error) => tracing::warn!(pipeline, error = %error, "doctor check failed"),
        }
        let at = ended_at();
        self.update(pipeline, |state| {
            let by = state
                .pending
                .take()
                .map(|pending| pending.by)
                .unwrap_or_default();
            state.last = Some(Ended { by, at, result });
        });
    }
}

/// The checks' worker: takes the queued checks in order, one at a time, until the service
/// stops (a check under way then is abandoned: it wrote nothing).
pub(crate) async fn work(service: Arc<Service>, mut queue: mpsc::Receiver<Job>) {
    let mut stop = service.stop.clone();
    loop {
        let job = tokio::select! {
            job = queue.recv() => job,
            _ = stop.wait_for(|stopping| *stopping) => None,
        };
        let Some(job) = job else {
            return;
        };
        let name = job.pipeline;
        let check = check(&service, &name);
        tokio::select! {
            () = service.doctor.run(&name, || rosterflow_store::db::timestamp(service.clock.now()), check) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// A check of pipeline `name`, once this service runs none of it.
async fn check(service: &Service, name: &str) -> Result<Diagnosis, String> {
    let Some(served) = service.pipeline(name) else {
        return Err(format!(
            "no pipeline named {name:?} is served any more in {}",
            service.options.dir.display()
        ));
    };
    let gate = service.run_gate(name);
    let _running_none = match gate.try_lock() {
        Ok(guard) => guard,
        Err(_) => {
            service.doctor.update(name, |state| {
                if let Some(pending) = &mut state.pending {
                    pending.waiting_for_run = true;
                }
            });
            tracing::info!(pipeline = %name, "doctor check waits for the pipeline's run to end");
            let guard = gate.lock().await;
            service.doctor.update(name, |state| {
                if let Some(pending) = &mut state.pending {
                    pending.waiting_for_run = false;
                }
            });
            guard
        }
    };
    let plugins = Plugins::new(service.options.plugin_cache.clone());
    let today = service.clock.now().date_naive();
    doctor::diagnose(&served.pipeline, &plugins, today)
        .await
        .map_err(|error| rosterflow_model::error_chain(&error))
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
    let shown = |at: &str| time::stored(at, zone, now);
    let state = service.doctor.state(&name);
    let body = html! {
        p { a href={ "/pipelines/" (name) } { "Back to " (name) } }
        p { "What is wrong with the district's data, read from its source as a run reads it. \
             A check changes nothing." }
        @if let Some(pending) = &state.pending {
            @if pending.waiting_for_run {
                p.notice { "A check asked for by " (pending.by) " at " (shown(&pending.at)) " waits for the pipeline's run to end: reload this page to see its result." }
            } @else {
                p.notice { "A check asked for by " (pending.by) " at " (shown(&pending.at)) " is queued or running: reload this page to see its result." }
            }
        } @else {
            (post_button(&format!("/pipelines/{name}/doctor"), "Check now", &admin))
        }
        @match &state.last {
            None => p { "No check yet." },
            Some(Ended { by, at, result: Err(error) }) => {
                p.problem { "The check asked for by " (by) " failed at " (shown(at)) ": " (error) }
            },
            Some(Ended { by, at, result: Ok(diagnosis) }) => {
                p { "Checked at " (shown(at)) " for " (by) " (terms judged as of " (diagnosis.today)
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
pub(super) async fn check_now(
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
    let by = admin.author();
    let asked = rosterflow_store::db::timestamp(service.clock.now());
    match service.doctor.ask(&name, &by, &asked) {
        Asked::Queued => {
            tracing::info!(pipeline = %name, by = %by, "doctor check requested from the console")
        }
        Asked::AlreadyPending => {
            tracing::info!(pipeline = %name, by = %by, "doctor check requested from the console: one is pending already")
        }
        Asked::Refused => {
            return super::failure(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Some(&admin),
                "The service takes no more checks now (it is stopping, or too many are queued): try again later.".to_owned(),
            );
        }
    }
    Redirect::to(&format!("/pipelines/{name}/doctor")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_check_while_one_is_pending_queues_nothing() {
        let (checks, mut queue) = Checks::new();
        assert_eq!(checks.ask("p", "console:dana", "t1"), Asked::Queued);
        assert_eq!(checks.ask("p", "console:eve", "t2"), Asked::AlreadyPending);
        assert_eq!(checks.ask("q", "console:eve", "t2"), Asked::Queued);
        let queued: Vec<String> = std::iter::from_fn(|| queue.try_recv().ok())
            .map(|job| job.pipeline)
            .collect();
        assert_eq!(queued, ["p", "q"]);
        assert_eq!(
            checks.state("p").pending.map(|p| p.by).as_deref(),
            Some("console:dana")
        );
    }

    #[tokio::test]
    async fn a_check_that_fails_or_panics_shows_why_and_is_no_longer_pending() {
        let (checks, _queue) = Checks::new();
        checks.ask("p", "console:dana", "t1");
        checks
            .run("p", || "t2".to_owned(), async {
                Err("cannot read the source".to_owned())
            })
            .await;
        let state = checks.state("p");
        assert!(state.pending.is_none());
        let last = state.last.expect("ended");
        assert_eq!((last.by.as_str(), last.at.as_str()), ("console:dana", "t2"));
        assert_eq!(last.result.expect_err("failed"), "cannot read the source");

        assert_eq!(checks.ask("p", "console:dana", "t3"), Asked::Queued);
        let panicking = async {
            if checks.state("p").pending.is_some() {
                panic!("a check's bug");
            }
            Err("not reached".to_owned())
        };
        checks.run("p", || "t4".to_owned(), panicking).await;
        let state = checks.state("p");
        assert!(state.pending.is_none(), "the button comes back");
        let error = state.last.expect("ended").result.expect_err("failed");
        assert!(error.contains("a check's bug"), "{error}");
        assert_eq!(checks.ask("p", "console:dana", "t5"), Asked::Queued);
    }
}
