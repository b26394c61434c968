//! Incremental sync through Clever's Events API, against the simulator's events feed: a
//! generated district A is synced whole, the SIS turns it into B (each edit appending its
//! event), and an events run must leave the Freckle DB exactly as a fresh full sync of B does,
//! with and without transforms; a killed events run loses and repeats nothing; a cursor Clever
//! no longer knows falls back to a full sync and says so.

use std::time::Duration;

use rosterflow_pipeline::sync::{RunOptions, RunStatus};
use rosterflow_tests::clever_sim::{CleverSim, Fault, SimOptions, UnknownCursor};
use rosterflow_tests::district::{Collection, GenSpec, generate};

use crate::on_both_backends;
use crate::util::{Backend, TestDb, eventually, pipeline_text, rosterflow, sim_source};

/// Transforms that see the whole district: specials dropped by name, and plugin groups.
fn transforms() -> String {
    format!(
        "[[transform]]\ntype = \"filter\"\nname = \"specials\"\n\
         section_name_patterns = [\"(?i)^(PE|Art|Music)\"]\n\n\
         [[transform]]\ntype = \"plugin\"\nname = \"flex-groups\"\npath = \"{}\"\n\
         timeout_ms = 5000\nmemory_mb = 128\n\n[transform.config]\n\
         bands = [{{ key = \"k2\", name = \"K-2 group\", grades = [\"Kindergarten\", \"1\", \"2\"], max_size = 12 }}]\n",
        crate::plugins::plugin_wasm("flex-groups").display()
    )
}

struct World {
    sim: CleverSim,
    district: String,
}

impl World {
    async fn start() -> World {
        let dataset = generate(GenSpec::new(1_200).with_seed(11));
        let district = dataset.ids(Collection::Districts)[0].clone();
        let sim = CleverSim::start(dataset, SimOptions::default()).await;
        World { sim, district }
    }

    /// A pipeline into `db`: `sync` is `events` or `full`.
    fn pipeline(
        &self,
        db: &TestDb,
        sync: &str,
        extra: &str,
    ) -> rosterflow_pipeline::config::Pipeline {
        let source = format!(
            "{}\nsync = \"{sync}\"",
            sim_source(&self.sim.base_url(), &self.sim.token(), 400)
        );
        let extra = format!("[safety]\narchive_max_percent = 100\n\n{extra}");
        let text = pipeline_text(sync, &source, &db.url, &extra).replacen(
            "[pipeline]\n",
            &format!("[pipeline]\ndistrict_id = \"{}\"\n", self.district),
            1,
        );
        let path = db.dir.path().join(format!("{sync}.toml"));
        std::fs::write(&path, text).expect("write the pipeline");
        rosterflow_pipeline::config::load(&path, &Default::default()).expect("a valid pipeline")
    }
}

async fn committed(pipeline: &rosterflow_pipeline::config::Pipeline) -> i64 {
    let report = crate::util::run(pipeline, &RunOptions::default())
        .await
        .expect("sync");
    let RunStatus::Committed { run_id } = report.status else {
        panic!("expected a commit, got {:?}", report.status);
    };
    run_id
}

/// Every active record and open membership, by Clever ids, with the synced values: what two
/// DBs must agree on, their history aside.
async fn roster(db: &TestDb) -> Vec<String> {
    let mut all = Vec::new();
    for (what, sql) in [
        (
            "student",
            "SELECT s.source_id, s.sis_id, s.first_name, s.last_name, s.grade, s.email, sc.source_id \
             FROM students s LEFT JOIN schools sc ON sc.id = s.school_id WHERE s.archived_at IS NULL",
        ),
        (
            "teacher",
            "SELECT t.source_id, t.sis_id, t.email, t.first_name, t.last_name, t.title \
             FROM teachers t WHERE t.archived_at IS NULL",
        ),
        (
            "class",
            "SELECT c.source_id, c.name, c.subject, c.grade, c.source, s.source_id FROM classes c \
             JOIN schools s ON s.id = c.school_id WHERE c.archived_at IS NULL",
        ),
        (
            "school",
            "SELECT source_id, name FROM schools WHERE archived_at IS NULL",
        ),
        (
            "member",
            "SELECT c.source_id, s.source_id, m.source FROM class_students m \
             JOIN classes c ON c.id = m.class_id JOIN students s ON s.id = m.student_id \
             WHERE m.ended_at IS NULL",
        ),
        (
            "teaches",
            "SELECT c.source_id, t.source_id, m.role, m.source FROM class_teachers m \
             JOIN classes c ON c.id = m.class_id JOIN teachers t ON t.id = m.teacher_id \
             WHERE m.ended_at IS NULL",
        ),
        (
            "account",
            "SELECT t.source_id, o.kind FROM email_outbox o JOIN teachers t ON t.id = o.teacher_id",
        ),
    ] {
        all.extend(
            db.rows(sql)
                .await
                .into_iter()
                .map(|row| format!("{what}: {row}")),
        );
    }
    all.sort();
    all
}

/// A full sync of A, then an events run for the changes to B, equals a full sync of B.
async fn an_events_run_equals_a_full_sync(backend: Backend, extra: &str) {
    let world = World::start().await;
    let db = TestDb::new(backend).await;
    let events = world.pipeline(&db, "events", extra);
    let first = committed(&events).await;
    assert_eq!(
        db.rows(&format!(
            "SELECT source_kind FROM sync_runs WHERE id = {first}"
        ))
        .await,
        ["full"]
    );

    world.sim.update(|d| {
        d.set_emit_events(true);
        crate::history::change(d);
        // An event rosterflow does not use is counted and skipped.
        d.push_event("resources.created", serde_json::json!({"id": "r1"}), None);
    });
    let events_in_feed = world.sim.read(|d| d.events().len());
    assert!(events_in_feed > 10, "the change made events");
    world.sim.clear_requests();
    let second = committed(&events).await;
    let paths: std::collections::BTreeSet<String> = world
        .sim
        .requests()
        .iter()
        .map(|r| r.path().to_owned())
        .collect();
    assert_eq!(
        paths.into_iter().collect::<Vec<_>>(),
        ["/v3.0/events"],
        "an events run pulls no collection"
    );
    let run = db
        .rows(&format!(
            "SELECT source_kind, event_cursor, source_note FROM sync_runs WHERE id = {second}"
        ))
        .await;
    let last_event = world.sim.read(|d| d.last_event_id()).expect("events");
    assert_eq!(
        run,
        [format!(
            "events|{last_event}|{} event(s) applied, 1 of unused types skipped",
            events_in_feed - 1
        )]
    );

    let fresh = TestDb::new(backend).await;
    committed(&world.pipeline(&fresh, "full", extra)).await;
    let expected = roster(&fresh).await;
    assert_eq!(roster(&db).await, expected);
    assert!(
        expected.len() > 5_000,
        "a whole district: {}",
        expected.len()
    );
    if !extra.is_empty() {
        assert!(expected.iter().any(|r| r.contains("|plugin:flex-groups")));
        let specials: Vec<&String> = expected
            .iter()
            .filter(|r| {
                r.starts_with("class: ")
                    && r.split('|')
                        .nth(1)
                        .is_some_and(|name| name.starts_with("PE "))
            })
            .collect();
        assert!(
            specials.is_empty(),
            "{:?}",
            &specials[..specials.len().min(3)]
        );
    }

    // Nothing new: an events run changes nothing.
    let before = db.fingerprint().await;
    committed(&events).await;
    assert_eq!(db.fingerprint().await, before);
}

async fn an_events_run_equals_a_full_sync_of_the_same_data(backend: Backend) {
    an_events_run_equals_a_full_sync(backend, "").await;
}

async fn an_events_run_with_transforms_equals_a_full_sync(backend: Backend) {
    an_events_run_equals_a_full_sync(backend, &transforms()).await;
}

/// An events run killed while Clever is slow to answer leaves the DB and the checkpoint as they
/// were; the rerun applies each event once, and a teacher hired in between gets one account.
async fn a_killed_events_run_loses_and_repeats_nothing(backend: Backend) {
    let world = World::start().await;
    let db = TestDb::new(backend).await;
    let events = world.pipeline(&db, "events", "");
    committed(&events).await;
    let hired = world.sim.update(|d| {
        d.set_emit_events(true);
        crate::history::change(d);
        crate::welcome::hire(d, "Noor", "noor.newhire@example.net")
    });
    let before = db.fingerprint().await;
    let checkpoint = db
        .rows("SELECT run_id, event_cursor FROM source_checkpoints")
        .await;
    world
        .sim
        .inject_on("/v3.0/events", Fault::Slow(Duration::from_secs(30)));
    let file = events.path.to_str().expect("path").to_owned();
    let mut child = std::process::Command::new(crate::util::rosterflow_bin())
        .args(["run", &file])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Killed while it waits for the events page.
    eventually(
        "the run asks for the events page",
        Duration::from_secs(60),
        || {
            let uris: Vec<String> = world.sim.requests().into_iter().map(|r| r.uri).collect();
            format!("the requests so far: {uris:#?}")
        },
        || async {
            world
                .sim
                .requests()
                .iter()
                .any(|r| r.path() == "/v3.0/events")
        },
    )
    .await;
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert_eq!(db.fingerprint().await, before);
    assert_eq!(
        db.rows("SELECT run_id, event_cursor FROM source_checkpoints")
            .await,
        checkpoint
    );
    world.sim.clear_faults();

    let (code, stdout, stderr) = rosterflow(&["run", &file], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let fresh = TestDb::new(backend).await;
    committed(&world.pipeline(&fresh, "full", "")).await;
    assert_eq!(roster(&db).await, roster(&fresh).await);
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM email_outbox o JOIN teachers t ON t.id = o.teacher_id WHERE t.source_id = '{hired}'"
        ))
        .await,
        1
    );
    // The same events again (a checkpoint rolled back by hand) change nothing.
    let after = db.fingerprint().await;
    let (code, ..) = rosterflow(&["run", &file], &[]);
    assert_eq!(code, 0);
    assert_eq!(db.fingerprint().await, after);
}

/// Clever no longer knows the cursor: the run falls back to a full sync, says so in its history,
/// and the roster is still exact.
async fn an_expired_cursor_falls_back_to_a_full_sync(backend: Backend) {
    let world = World::start().await;
    let db = TestDb::new(backend).await;
    let events = world.pipeline(&db, "events", "");
    world.sim.update(|d| {
        d.set_emit_events(true);
        d.push_event("resources.created", serde_json::json!({"id": "r0"}), None);
    });
    committed(&events).await;
    world.sim.update(|d| {
        crate::history::change(d);
        let newest = d.last_event_id().expect("events");
        d.expire_events_before(&newest);
    });
    world
        .sim
        .configure(|o| o.unknown_event_cursor = UnknownCursor::NotFound);
    let run = committed(&events).await;
    let history = db
        .rows(&format!(
            "SELECT source_kind, source_note FROM sync_runs WHERE id = {run}"
        ))
        .await;
    assert!(
        history[0].starts_with("full|Clever no longer knows event"),
        "{history:?}"
    );
    let (_, stdout, _) = rosterflow(&["history", events.path.to_str().expect("path")], &[]);
    assert!(stdout.contains("[full sync, at event"), "{stdout}");
    let fresh = TestDb::new(backend).await;
    committed(&world.pipeline(&fresh, "full", "")).await;
    assert_eq!(roster(&db).await, roster(&fresh).await);
}

/// An events run that trips a safety check is held and leaves the checkpoint; once approved,
/// the next events run applies the same events again and finds nothing left to change.
async fn a_held_events_run_is_approved_then_caught_up(backend: Backend) {
    let world = World::start().await;
    let db = TestDb::new(backend).await;
    let source = format!(
        "{}\nsync = \"events\"",
        sim_source(&world.sim.base_url(), &world.sim.token(), 400)
    );
    let text = pipeline_text("held", &source, &db.url, "").replacen(
        "[pipeline]\n",
        &format!("[pipeline]\ndistrict_id = \"{}\"\n", world.district),
        1,
    );
    let path = db.dir.path().join("held.toml");
    std::fs::write(&path, text).expect("write the pipeline");
    let events =
        rosterflow_pipeline::config::load(&path, &Default::default()).expect("a valid pipeline");
    committed(&events).await;
    let checkpoint = db
        .rows("SELECT event_cursor, run_id FROM source_checkpoints")
        .await;
    world.sim.update(|d| {
        d.set_emit_events(true);
        let students = d.ids_with_role(rosterflow_tests::district::Role::Student);
        for student in students.iter().step_by(3) {
            d.remove_user(student);
        }
    });
    let report = crate::util::run(&events, &RunOptions::default())
        .await
        .expect("run");
    let RunStatus::Held { run_id, .. } = report.status else {
        panic!("expected a hold, got {:?}", report.status);
    };
    assert_eq!(
        db.rows("SELECT event_cursor, run_id FROM source_checkpoints")
            .await,
        checkpoint,
        "a held run moves no checkpoint"
    );
    let handle = db.open().await;
    crate::util::approve(&events, &handle, run_id)
        .await
        .expect("approve");
    let report = crate::util::run(&events, &RunOptions::default())
        .await
        .expect("run");
    assert!(report.plan.is_empty(), "caught up: {}", report.plan);
    let fresh = TestDb::new(backend).await;
    committed(&world.pipeline(&fresh, "full", "")).await;
    assert_eq!(roster(&db).await, roster(&fresh).await);
}

on_both_backends!(
    an_events_run_equals_a_full_sync_of_the_same_data,
    an_events_run_with_transforms_equals_a_full_sync,
    a_killed_events_run_loses_and_repeats_nothing,
    an_expired_cursor_falls_back_to_a_full_sync,
    a_held_events_run_is_approved_then_caught_up,
);
