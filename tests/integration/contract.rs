//! The store's contract: the two backends, each writing a plan its own way (prepared statements
//! on SQLite, `COPY` on PostgreSQL), read back the same state after the same plans.

use rosterflow_model::Snapshot;
use rosterflow_plan::Plan;
use rosterflow_plan::state::State;
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
