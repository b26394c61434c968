//! Trustworthy syncs: safety holds, locked rosters with shares that survive, and `explain`.

use rosterflow_store::explain::{Subject, explain};

use rosterflow_pipeline::failure::exit;
use rosterflow_pipeline::sync::{RunOptions, RunStatus, SyncError};
use rosterflow_store::roster::{self, RosterError};
use rosterflow_store::runs::{self, RunsError};
use rosterflow_tests::clever_sim::{CleverSim, SimOptions};
use rosterflow_tests::district::{Collection, Dataset, Role};

use crate::on_both_backends;
use crate::util::{Backend, TestDb, pipeline, sim_source};

const DISTRICT: &str = "5a0c91b95c7cc000010d417c";

/// The demo district served by the simulator and loaded once.
pub(crate) async fn demo_through_the_api(
    backend: Backend,
) -> (TestDb, CleverSim, rosterflow_pipeline::config::Pipeline) {
    let db = TestDb::new(backend).await;
    let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
    let demo = pipeline(
        db.dir.path(),
        "demo",
        &sim_source(&sim.base_url(), &sim.token(), 2000),
        &db.url,
        "",
    );
    crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("first load");
    (db, sim, demo)
}

/// Half the students vanish from Clever: the run is held, nothing is applied and no email is
/// queued; an approval applies it; a later hold can be discarded.
async fn half_the_students_vanishing_is_held_then_approved(backend: Backend) {
    let (db, sim, demo) = demo_through_the_api(backend).await;
    let before = db.fingerprint().await;
    let students = sim.read(|d| d.ids_with_role(Role::Student));
    sim.update(|d| {
        for student in students.iter().step_by(2) {
            d.remove_user(student);
        }
        // A new teacher arrives in the same export: no account or email while held.
        let mut teacher = d
            .get(Collection::Users, &d.ids_with_role(Role::Teacher)[0])
            .expect("a teacher");
        teacher["id"] = d.new_id().into();
        teacher["email"] = "new.teacher@example.net".into();
        d.upsert(Collection::Users, teacher);
    });
    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("run");
    let RunStatus::Held { run_id, reasons } = &report.status else {
        panic!("expected a hold, got {:?}", report.status);
    };
    assert_eq!(report.exit_code(), exit::HELD);
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("student: would archive or end 502 of 1004")),
        "{reasons:?}"
    );
    assert_eq!(db.fingerprint().await, before, "a held run applies nothing");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM email_outbox").await, 89);

    let db_handle = db.open().await;
    let outcome = crate::util::approve(&demo, &db_handle, *run_id)
        .await
        .expect("approve");
    assert_eq!(outcome.changes, report.plan.change_count());
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM students WHERE archived_at IS NOT NULL")
            .await,
        502
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM email_outbox").await, 90);
    assert!(matches!(
        crate::util::approve(&demo, &db_handle, *run_id).await,
        Err(SyncError::Runs {
            source: RunsError::NotHeld { .. },
            ..
        })
    ));

    // The rest vanish too: held again, and discarded.
    sim.update(|d| {
        for student in students.iter().skip(1).step_by(2) {
            d.remove_user(student);
        }
    });
    let before = db.fingerprint().await;
    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("run");
    let run_id = report.status.run_id().expect("a recorded run");
    assert!(matches!(report.status, RunStatus::Held { .. }));
    runs::discard(&db_handle, demo.name(), run_id, None)
        .await
        .expect("discard");
    assert_eq!(db.fingerprint().await, before);
    assert_eq!(
        db.rows("SELECT status FROM sync_runs ORDER BY id").await,
        ["committed", "approved", "discarded"]
    );
}

/// A plan computed before another run committed cannot be approved.
async fn a_stale_hold_cannot_be_approved(backend: Backend) {
    let (db, sim, demo) = demo_through_the_api(backend).await;
    let sections = sim.read(|d| d.ids(Collection::Sections));
    sim.update(|d| {
        for section in sections.iter().take(100) {
            d.remove(Collection::Sections, section);
        }
    });
    let held = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("run");
    let run_id = held.status.run_id().expect("held");
    assert!(matches!(held.status, RunStatus::Held { .. }));
    // Another run commits in between (the sections came back, so nothing is held).
    let restored = Dataset::demo();
    sim.update(|d| *d = restored);
    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("run");
    assert!(matches!(report.status, RunStatus::Committed { .. }));
    let db_handle = db.open().await;
    let error = crate::util::approve(&demo, &db_handle, run_id)
        .await
        .expect_err("stale");
    let message = rosterflow_model::error_chain(&error);
    assert!(message.contains("moved since"), "{message}");
}

/// Clever answers 200 with no sections at all: a successful failure, held.
async fn an_empty_collection_is_held(backend: Backend) {
    let (db, sim, demo) = demo_through_the_api(backend).await;
    let before = db.fingerprint().await;
    sim.update(|d| {
        for section in d.ids(Collection::Sections) {
            d.remove(Collection::Sections, &section);
        }
    });
    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("run");
    let RunStatus::Held { reasons, .. } = &report.status else {
        panic!("expected a hold");
    };
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("class: the source returned none")),
        "{reasons:?}"
    );
    assert_eq!(db.fingerprint().await, before);
}

/// A share survives ten syncs, one of which moves the student to another section; manual
/// roster edits on Clever classes are refused, on manual classes they stick.
async fn shares_and_manual_rosters_survive_syncs(backend: Backend) {
    let (db, sim, demo) = demo_through_the_api(backend).await;
    let db_handle = db.open().await;
    let (section, other, student) = sim.read(|d| {
        let sections = d.ids(Collection::Sections);
        let student = d.section_students(&sections[0])[0].clone();
        let other = sections
            .iter()
            .find(|s| !d.section_students(s).contains(&student))
            .expect("a section without the student")
            .clone();
        (sections[0].clone(), other, student)
    });
    let teacher = sim.read(|d| d.section_teachers(&other)[0].clone());
    assert_eq!(
        roster::share(&db_handle, DISTRICT, &student, &teacher, None)
            .await
            .expect("share"),
        roster::Outcome::Done
    );

    // Locked: a Clever class refuses manual edits, naming the class and why.
    let error = roster::add_student(&db_handle, DISTRICT, &other, &student)
        .await
        .expect_err("locked");
    assert!(matches!(error, RosterError::Locked { .. }));
    let message = error.to_string();
    assert!(
        message.contains(&other) && message.contains("managed by Clever"),
        "{message}"
    );

    // A class made in Freckle by hand takes manual members.
    let now = "2026-01-01T00:00:00.000000Z";
    let manual = db_handle.pool.clone();
    sqlx::query(
        "INSERT INTO classes (district_id, sis_id, name, managed_by, source, created_at, updated_at) \
         SELECT id, 'tutoring-1', 'After-school tutoring', 'manual', 'manual', $1, $1 FROM districts",
    )
    .bind(now)
    .execute(&manual)
    .await
    .expect("manual class");
    roster::add_student(&db_handle, DISTRICT, "tutoring-1", &student)
        .await
        .expect("manual edit");

    for run in 0..10 {
        if run == 4 {
            sim.update(|d| d.move_student(&student, &section, &other));
        }
        crate::util::run(&demo, &RunOptions::default())
            .await
            .expect("sync");
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM student_shares WHERE revoked_at IS NULL")
                .await,
            1,
            "share after sync {run}"
        );
        assert_eq!(
            db.scalar(
                "SELECT COUNT(*) FROM class_students WHERE source = 'manual' AND ended_at IS NULL"
            )
            .await,
            1,
            "manual membership after sync {run}"
        );
    }
    let explained = explain(&db_handle, DISTRICT, Subject::Student, &student)
        .await
        .expect("explain");
    let shared: Vec<&str> = explained
        .shares
        .iter()
        .map(|s| s.teacher.as_str())
        .collect();
    assert_eq!(shared, [teacher.as_str()]);
    assert!(
        explained.shares[0]
            .name
            .as_ref()
            .is_some_and(|n| !n.is_empty()),
        "the teacher is named: {explained}"
    );
    roster::unshare(&db_handle, DISTRICT, &student, &teacher)
        .await
        .expect("unshare");
    assert!(matches!(
        roster::unshare(&db_handle, DISTRICT, &student, &teacher).await,
        Err(RosterError::NotShared { .. })
    ));
}

/// `explain` for a student who transferred and one a filter dropped.
async fn explain_answers_transfers_and_filters(backend: Backend) {
    let (db, sim, demo) = demo_through_the_api(backend).await;
    let db_handle = db.open().await;
    let (from, to, mover) = sim.read(|d| {
        let sections = d.ids(Collection::Sections);
        let mover = d.section_students(&sections[0])[0].clone();
        let to = sections
            .iter()
            .find(|s| !d.section_students(s).contains(&mover))
            .expect("another section")
            .clone();
        (sections[0].clone(), to, mover)
    });
    sim.update(|d| d.move_student(&mover, &from, &to));
    crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("sync");
    let transferred = explain(&db_handle, DISTRICT, Subject::Student, &mover)
        .await
        .expect("explain");
    let ended: Vec<_> = transferred
        .memberships
        .iter()
        .filter(|m| m.other.starts_with(&from))
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        ended[0].ended_reason.as_deref(),
        Some("no longer in the section in source")
    );
    assert!(
        transferred
            .memberships
            .iter()
            .any(|m| m.other.starts_with(&to) && m.ended_at.is_none())
    );
    assert_eq!(
        transferred.verdict(),
        "active; in the source at the last run"
    );
    // The SIS id finds the same student.
    let sis_id = transferred.sis_id.clone().expect("a SIS id");
    let by_sis = explain(&db_handle, DISTRICT, Subject::Student, &sis_id)
        .await
        .expect("explain by SIS id");
    assert_eq!(by_sis.source_id, mover);

    // A filter drops every section of one student: they follow their sections out.
    let dropped = sim.read(|d| d.section_students(&to)[1].clone());
    let their_sections: Vec<String> = sim.read(|d| {
        d.sections_of(&dropped)
            .iter()
            .map(|s| {
                d.get(Collection::Sections, s).expect("section")["sis_id"]
                    .as_str()
                    .expect("sis id")
                    .to_owned()
            })
            .collect()
    });
    let filtered = pipeline(
        db.dir.path(),
        "demo",
        &sim_source(&sim.base_url(), &sim.token(), 2000),
        &db.url,
        &format!(
            "[[transform]]\ntype = \"filter\"\nname = \"drop-some\"\nsection_sis_ids = {:?}\n\n[safety]\narchive_max_percent = 100",
            their_sections
        ),
    );
    crate::util::run(&filtered, &RunOptions::default())
        .await
        .expect("filtered sync");
    let explained = explain(&db_handle, DISTRICT, Subject::Student, &dropped)
        .await
        .expect("explain");
    let verdict = explained.verdict();
    assert!(
        verdict.contains("dropped by filter:drop-some: all of their sections were dropped"),
        "{verdict}"
    );
    assert!(
        explained
            .state
            .as_ref()
            .and_then(|s| s.archived_reason.as_deref())
            .is_some_and(|r| r.starts_with("filtered")),
        "{explained}"
    );
    let class = explain(&db_handle, DISTRICT, Subject::Class, &their_sections[0])
        .await
        .expect("explain class");
    assert!(
        class.verdict().contains("dropped by filter:drop-some"),
        "{}",
        class.verdict()
    );
}

on_both_backends!(
    half_the_students_vanishing_is_held_then_approved,
    a_stale_hold_cannot_be_approved,
    an_empty_collection_is_held,
    shares_and_manual_rosters_survive_syncs,
    explain_answers_transfers_and_filters,
);
