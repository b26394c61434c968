//! The store's contract: the two backends, each writing a plan its own way (prepared statements
//! on SQLite, `COPY` on PostgreSQL), read back the same state after the same plans.

use rosterflow_model::{Entity, Snapshot, SourceKind};
use rosterflow_plan::Plan;
use rosterflow_plan::safety::{self, SafetyConfig};
use rosterflow_plan::state::State;
use rosterflow_plan::switch::SourceSwitch;
use rosterflow_store::{LockOptions, Store};

use crate::util::{Backend, TestDb, repo};

/// A first load of the demo district, a resync where students left, a section was renamed and
/// a teacher lost a class, then the first roster again (the students return, the rest is undone).
fn rosters() -> Vec<Snapshot> {
    let demo = rosterflow_extract::replay::read_snapshot(&repo().join("pipelines/demo"))
        .expect("the demo recording");
    let mut changed = demo.clone();
    changed.students.drain(..50);
    changed.sections[0].name = "Renamed in the SIS".to_owned();
    changed.sections[1].teachers.truncate(0);
    vec![demo.clone(), changed, demo]
}

/// The state each backend reads back after each roster's plan is applied, as lines.
async fn states_after_each_plan(backend: Backend) -> Vec<Vec<String>> {
    let db = TestDb::new(backend).await;
    let handle = db.open().await;
    let mut states = Vec::new();
    for snapshot in rosters() {
        let mut store = Store::lock(&handle, &snapshot.district.id, LockOptions::default())
            .await
            .expect("lock the district");
        let state = store.read_state().await.expect("read the state");
        let plan = Plan::compute(&snapshot, &state);
        assert!(plan.change_count() > 0, "each roster changes something");
        let run = crate::util::full_run("contract");
        store.apply(&plan, run).await.expect("apply the plan");
        let after = store.read_state().await.expect("read the state back");
        assert!(
            Plan::compute(&snapshot, &after).change_count() == 0,
            "a resync of the same roster plans nothing"
        );
        states.push(lines(&after));
    }
    states
}

/// Everything the planner sees of a state: rows with their ids, archive flags, schools and
/// column fingerprints; memberships with roles and sources; decisions in force.
fn lines(state: &State) -> Vec<String> {
    let mut lines = vec![format!(
        "district {:?}, last run {:?}",
        state.district, state.last_run
    )];
    for (entity, table) in &state.tables {
        for (index, key, row) in table.iter() {
            lines.push(format!(
                "{entity:?} {key}: id {} archived {} school {:?} cells {:?}",
                row.id,
                row.archived,
                row.school,
                table.fingerprints(index)
            ));
        }
    }
    for (entity, members) in &state.memberships {
        for (position, class) in members.classes().iter().enumerate() {
            let (ids, tags) = members.of_class_at(position);
            for (member, tag) in ids.iter().zip(tags) {
                lines.push(format!(
                    "{entity:?} class {class} member {member}: {:?} {}",
                    tag.role,
                    members.source(tag.source)
                ));
            }
        }
    }
    for decision in &state.decisions {
        lines.push(format!(
            "decision {:?} {} {:?} by {}: {}",
            decision.entity, decision.key, decision.action, decision.author, decision.detail
        ));
    }
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn both_backends_read_back_the_same_state_after_the_same_plans() {
    let sqlite = states_after_each_plan(Backend::Sqlite).await;
    let postgres = states_after_each_plan(Backend::Postgres).await;
    assert_eq!(sqlite.len(), 3);
    assert!(
        sqlite[0].len() > 10_000,
        "the demo district, whole: {} lines",
        sqlite[0].len()
    );
    assert_ne!(sqlite[0], sqlite[1], "the second roster changed the state");
    for (step, (sqlite, postgres)) in sqlite.iter().zip(&postgres).enumerate() {
        let differences: Vec<_> = sqlite
            .iter()
            .zip(postgres)
            .filter(|(a, b)| a != b)
            .take(5)
            .collect();
        assert!(
            sqlite.len() == postgres.len() && differences.is_empty(),
            "after plan {step}: SQLite has {} lines, PostgreSQL {}; first differences: {differences:#?}",
            sqlite.len(),
            postgres.len()
        );
    }
}

/// The demo district as another source would send it: every record under a new id, the
/// district's source OneRoster, SIS ids unchanged.
fn from_another_source(demo: &Snapshot) -> Snapshot {
    let renamed = |id: &rosterflow_model::Id| rosterflow_model::Id::from(format!("or/{id}"));
    let mut other = demo.clone();
    other.district.source = SourceKind::OneRoster;
    other.district.source_id = "district-1".into();
    for school in &mut other.schools {
        school.id = renamed(&school.id);
    }
    for term in &mut other.terms {
        term.id = renamed(&term.id);
    }
    for course in &mut other.courses {
        course.id = renamed(&course.id);
    }
    for student in &mut other.students {
        student.id = renamed(&student.id);
        student.school = student.school.as_ref().map(renamed);
    }
    for teacher in &mut other.teachers {
        teacher.id = renamed(&teacher.id);
        teacher.school = teacher.school.as_ref().map(renamed);
    }
    for admin in &mut other.admins {
        admin.id = renamed(&admin.id);
    }
    for section in &mut other.sections {
        section.id = renamed(&section.id);
        section.school = renamed(&section.school);
        section.term = section.term.as_ref().map(renamed);
        section.course = section.course.as_ref().map(renamed);
        for member in section.students.iter_mut().chain(&mut section.teachers) {
            *member = renamed(member);
        }
    }
    other
}

/// A district that moves from Clever to OneRoster keeps the rows of every record whose SIS id
/// matches, with their memberships, on both backends; the plan that does it is held.
async fn switch_sources(backend: Backend) {
    let db = TestDb::new(backend).await;
    let handle = db.open().await;
    let demo = rosters().remove(0);
    let other = from_another_source(&demo);
    let mut store = Store::lock(&handle, &demo.district.id, LockOptions::default())
        .await
        .expect("lock the district");
    let empty = store.read_state().await.expect("read the state");
    store
        .apply(
            &Plan::compute(&demo, &empty),
            crate::util::full_run("switch"),
        )
        .await
        .expect("load from Clever");
    let before = store.read_state().await.expect("read the state");
    assert_eq!(before.source, Some(SourceKind::Clever));
    assert!(before.switches_to(SourceKind::OneRoster));

    let mut state = store.read_state().await.expect("read the state");
    let rows = store.read_sis_rows().await.expect("read SIS ids");
    let switch = SourceSwitch::match_by_sis_id(&other, &state, SourceKind::Clever, &rows);
    let students_with_sis = demo.students.iter().filter(|s| s.sis_id.is_some()).count();
    assert_eq!(
        switch.matched(Entity::Student),
        students_with_sis,
        "{switch}"
    );
    assert_eq!(
        switch.matched(Entity::Teacher),
        demo.teachers.iter().filter(|t| t.sis_id.is_some()).count()
    );
    state.switch_source(switch);
    let plan = Plan::compute(&other, &state);
    let reasons = safety::check(&plan, &SafetyConfig::default());
    assert!(
        reasons[0].starts_with("the district's source changes from clever to oneroster"),
        "{reasons:?}"
    );
    let counts = plan.summary();
    assert_eq!(counts.counts().get("student.create"), None, "{counts}");
    assert_eq!(counts.counts().get("student.archive"), None, "{counts}");
    assert_eq!(counts.counts().get("class_student.end"), None, "{counts}");
    store
        .apply(&plan, crate::util::full_run("switch"))
        .await
        .expect("apply the switch");

    let after = store.read_state().await.expect("read the state");
    assert_eq!(after.source, Some(SourceKind::OneRoster));
    for student in &demo.students {
        let old_row = before.table(Entity::Student).row_id(&student.id);
        let new_row = after
            .table(Entity::Student)
            .row_id(&format!("or/{}", student.id));
        assert_eq!(old_row, new_row, "student {} keeps its row", student.id);
    }
    assert_eq!(
        Plan::compute(&other, &after).change_count(),
        0,
        "a resync of the new source plans nothing"
    );
    let history: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sync_changes WHERE action = 'rekey' AND entity = 'student'",
    )
    .fetch_one(&handle.pool)
    .await
    .expect("count rekeys");
    assert_eq!(history as usize, students_with_sis);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_district_that_changes_source_keeps_its_rows_on_sqlite() {
    switch_sources(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_district_that_changes_source_keeps_its_rows_on_postgres() {
    switch_sources(Backend::Postgres).await;
}
