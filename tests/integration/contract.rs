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
    let reasons = safety::check(
        &plan,
        &SafetyConfig::default(),
        chrono::Utc::now().date_naive(),
    );
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

/// Migration 0007 keys rows by their source id within their district: a Freckle DB made before
/// it keeps every row and id, manual rows stay manual, and foreign keys are enforced after it.
async fn migrating_keeps_every_row(backend: Backend) {
    let db = TestDb::new(backend).await;
    sqlx::any::install_default_drivers();
    let (url, mut migrator) = match backend {
        Backend::Sqlite => (
            format!("{}?mode=rwc", db.url),
            sqlx::migrate!("../core/store/migrations/sqlite"),
        ),
        Backend::Postgres => (
            db.url.clone(),
            sqlx::migrate!("../core/store/migrations/postgres"),
        ),
    };
    let before: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < 7)
        .cloned()
        .collect();
    migrator.migrations = std::borrow::Cow::Owned(before);
    let old = sqlx::AnyPool::connect(&url).await.expect("connect");
    migrator
        .run(&old)
        .await
        .expect("the migrations before 0007");
    sqlx::raw_sql(
        "INSERT INTO districts (id, clever_id, name, created_at, updated_at) \
             VALUES (7, '5a0c91b95c7cc000010d417c', 'Demo', 't', 't'); \
         INSERT INTO schools (id, district_id, clever_id, name, created_at, updated_at) \
             VALUES (3, 7, '5a25ff950a5f621109000004', 'School', 't', 't'); \
         INSERT INTO teachers (id, district_id, clever_id, school_id, managed_by, created_at, updated_at) \
             VALUES (5, 7, '5a25ff950a5f621109000005', 3, 'clever', 't', 't'), \
                    (6, 7, NULL, 3, 'manual', 't', 't'); \
         INSERT INTO students (id, district_id, clever_id, sis_id, school_id, created_at, updated_at) \
             VALUES (9, 7, '5a25ff950a5f621109000009', '1001', 3, 't', 't'); \
         INSERT INTO sync_runs (id, district_id, pipeline, status, started_at) \
             VALUES (1, 7, 'demo', 'committed', 't'); \
         INSERT INTO quarantine (id, run_id, kind, clever_id, reason, record) \
             VALUES (1, 1, 'user', 'x', 'why', '{}');",
    )
    .execute(&old)
    .await
    .expect("rows as the old contract had them");
    old.close().await;

    let handle = db.open().await;
    let rows = |sql: &'static str| db.rows(sql);
    assert_eq!(
        rows("SELECT id, key, source_kind, source_id FROM districts").await,
        ["7|5a0c91b95c7cc000010d417c|clever|5a0c91b95c7cc000010d417c"]
    );
    assert_eq!(
        rows("SELECT id, source_id, managed_by FROM teachers ORDER BY id").await,
        ["5|5a25ff950a5f621109000005|sis", "6|NULL|manual"]
    );
    assert_eq!(
        rows("SELECT id, source_id, sis_id, school_id FROM students").await,
        ["9|5a25ff950a5f621109000009|1001|3"]
    );
    assert_eq!(
        rows("SELECT source_id, origin FROM quarantine").await,
        ["x|NULL"]
    );
    let insert = |sql: &'static str| sqlx::raw_sql(sql).execute(&handle.pool);
    insert(
        "INSERT INTO districts (id, key, source_kind, source_id, name, created_at, updated_at) \
         VALUES (8, 'springfield', 'oneroster', '1', 'Springfield', 't', 't')",
    )
    .await
    .expect("a OneRoster district");
    insert(
        "INSERT INTO students (district_id, source_id, created_at, updated_at) \
         VALUES (8, '5a25ff950a5f621109000009', 't', 't')",
    )
    .await
    .expect("another district may use the same source id");
    assert!(
        insert(
            "INSERT INTO students (district_id, source_id, created_at, updated_at) \
             VALUES (7, '5a25ff950a5f621109000009', 't', 't')"
        )
        .await
        .is_err(),
        "a source id is unique within its district"
    );
    assert!(
        insert(
            "INSERT INTO students (district_id, source_id, school_id, created_at, updated_at) \
             VALUES (7, 'new', 999, 't', 't')"
        )
        .await
        .is_err(),
        "foreign keys are enforced after the migration"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migrating_to_source_keys_keeps_every_row_on_sqlite() {
    migrating_keeps_every_row(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migrating_to_source_keys_keeps_every_row_on_postgres() {
    migrating_keeps_every_row(Backend::Postgres).await;
}
