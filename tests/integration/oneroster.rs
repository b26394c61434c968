//! Districts on OneRoster CSV: the same district loaded from Clever and from OneRoster 1.1 and
//! 1.2 files leaves the same Freckle DB, ids aside; a delta feed applied to the bulk equals the
//! next bulk; two districts whose feeds share sourcedIds live side by side.

use rosterflow_tests::district::{
    Dataset, GenSpec, Ids, OneRosterVersion, OneRosterWrite, generate,
};

use crate::util::{Backend, TestDb, pipeline, replay_source, run};
use rosterflow_pipeline::sync::{RunOptions, RunStatus};

/// What OneRoster carries of a district, by SIS id and name (ids differ between sources).
const COMPARED: [&str; 5] = [
    "SELECT sis_id, first_name, last_name, email, grade, CASE WHEN archived_at IS NULL THEN 'live' ELSE 'archived' END FROM students",
    "SELECT sis_id, first_name, last_name, email FROM teachers",
    "SELECT c.sis_id, c.name, COALESCE(c.subject, ''), COALESCE(c.grade, ''), COALESCE(c.period, ''), s.name \
     FROM classes c JOIN schools s ON s.id = c.school_id",
    "SELECT c.sis_id, s.sis_id FROM class_students m JOIN classes c ON c.id = m.class_id \
     JOIN students s ON s.id = m.student_id WHERE m.ended_at IS NULL",
    "SELECT c.sis_id, t.sis_id, m.role FROM class_teachers m JOIN classes c ON c.id = m.class_id \
     JOIN teachers t ON t.id = m.teacher_id WHERE m.ended_at IS NULL",
];

async fn compared(db: &TestDb) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    for sql in COMPARED {
        let mut rows = db.rows(sql).await;
        rows.sort();
        tables.push(rows);
    }
    tables
}

fn oneroster_source(dir: &std::path::Path) -> String {
    format!("type = \"oneroster_csv\"\npath = \"{}\"", dir.display())
}

fn with_key(key: &str) -> String {
    format!("[pipeline]\ndistrict_id = \"{key}\"\n")
}

/// Loads `dataset` from a Clever recording and from OneRoster 1.1 and 1.2 files into three
/// databases: the three read back the same.
async fn the_same_district_from_clever_and_oneroster(backend: Backend) {
    let dataset = generate(GenSpec::new(400));
    let clever = TestDb::new(backend).await;
    let recording = clever.dir.path().join("recording");
    dataset.write_recording(&recording, 100).expect("record");
    let from_clever = pipeline(
        clever.dir.path(),
        "clever",
        &replay_source(&recording),
        &clever.url,
        "",
    );
    run(&from_clever, &RunOptions::default())
        .await
        .expect("load from Clever");
    let expected = compared(&clever).await;
    assert!(
        expected[0].len() >= 400,
        "the district's students were loaded"
    );
    for version in [OneRosterVersion::V1_1, OneRosterVersion::V1_2] {
        let db = TestDb::new(backend).await;
        let feed = db.dir.path().join("feed");
        dataset
            .write_oneroster(&feed, &OneRosterWrite::new(version))
            .expect("write the feed");
        let file = pipeline_with_key(&db, &feed, "springfield");
        let result = run(&file, &RunOptions::default())
            .await
            .expect("load from OneRoster");
        assert_eq!(result.plan.quarantined, 0, "{version:?}: {}", result.plan);
        let loaded = compared(&db).await;
        for (sql, (want, got)) in COMPARED.iter().zip(expected.iter().zip(&loaded)) {
            let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(3).collect();
            let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(3).collect();
            assert!(
                missing.is_empty() && extra.is_empty() && want.len() == got.len(),
                "{version:?}, {sql}: {} rows from Clever, {} from OneRoster; missing {missing:?}, extra {extra:?}",
                want.len(),
                got.len()
            );
        }
        assert_eq!(
            db.rows("SELECT key, source_kind FROM districts").await,
            ["springfield|oneroster"]
        );
    }
}

/// A pipeline reading the feed at `feed` into `db` under the district key `key`.
fn pipeline_with_key(
    db: &TestDb,
    feed: &std::path::Path,
    key: &str,
) -> rosterflow_pipeline::config::Pipeline {
    let text = crate::util::pipeline_text(key, &oneroster_source(feed), &db.url, "").replacen(
        "[pipeline]\n",
        &with_key(key),
        1,
    );
    let path = db.dir.path().join(format!("{key}.toml"));
    std::fs::write(&path, text).expect("write pipeline");
    rosterflow_pipeline::config::load(&path, &Default::default()).expect("a valid pipeline")
}

/// A bulk, then the delta to a changed district: the DB equals a bulk load of the changed one.
async fn a_delta_applied_to_the_bulk_equals_the_next_bulk(backend: Backend) {
    let before = generate(GenSpec::new(200));
    let mut after: Dataset = before.clone();
    let students = after.ids_with_role(rosterflow_tests::district::Role::Student);
    for student in &students[..5] {
        after.remove_user(student);
    }
    let ids = Ids::sequential("s");
    let options = OneRosterWrite::new(OneRosterVersion::V1_2)
        .with_ids(ids)
        .at("2026-12-01T02:00:00Z");
    let db = TestDb::new(backend).await;
    let bulk = db.dir.path().join("bulk");
    let delta = db.dir.path().join("delta");
    before.write_oneroster(&bulk, &options).expect("bulk");
    Dataset::write_oneroster_delta(&before, &after, &delta, &options).expect("delta");
    let first = pipeline_with_key(&db, &bulk, "springfield");
    run(&first, &RunOptions::default()).await.expect("the bulk");
    let second = pipeline_with_key(&db, &delta, "springfield");
    run(&second, &RunOptions::default())
        .await
        .expect("the delta");

    let fresh = TestDb::new(backend).await;
    let next = fresh.dir.path().join("next");
    after
        .write_oneroster(&next, &options)
        .expect("the next bulk");
    run(
        &pipeline_with_key(&fresh, &next, "springfield"),
        &RunOptions::default(),
    )
    .await
    .expect("the next bulk");
    let live = "SELECT source_id FROM students WHERE archived_at IS NULL ORDER BY source_id";
    assert_eq!(db.rows(live).await, fresh.rows(live).await);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM students WHERE archived_at IS NOT NULL")
            .await,
        5
    );
    let kinds = db
        .rows("SELECT source_kind FROM sync_runs ORDER BY id")
        .await;
    assert_eq!(kinds, ["bulk", "delta"]);

    // A delta with no bulk before it is refused, and loads nothing.
    let empty = TestDb::new(backend).await;
    let refused = run(
        &pipeline_with_key(&empty, &delta, "springfield"),
        &RunOptions::default(),
    )
    .await;
    let message = rosterflow_model::error_chain(&refused.expect_err("a delta needs a bulk"));
    assert!(message.contains("bulk"), "{message}");
}

/// Two districts whose feeds both number their records from 1 share one DB.
async fn two_districts_with_the_same_sourced_ids(backend: Backend) {
    let db = TestDb::new(backend).await;
    for (key, seed) in [("north", 1), ("south", 2)] {
        let dataset = generate(GenSpec::new(100).with_seed(seed));
        let feed = db.dir.path().join(key);
        dataset
            .write_oneroster(
                &feed,
                &OneRosterWrite::new(OneRosterVersion::V1_1).with_ids(Ids::sequential("")),
            )
            .expect("write the feed");
        run(&pipeline_with_key(&db, &feed, key), &RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("load {key}: {}", rosterflow_model::error_chain(&e)));
    }
    let shared = db
        .scalar(
            "SELECT COUNT(*) FROM students a JOIN students b ON a.source_id = b.source_id \
             AND a.district_id < b.district_id",
        )
        .await;
    assert!(shared > 0, "the two feeds share sourcedIds");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM districts").await, 2);
}

/// A district loaded from Clever moves to OneRoster under the same key: the run that switches is
/// held, a dry run lists every match, and once approved every student keeps their row (and with
/// it their history and growth data) under the new id.
async fn a_district_that_moves_from_clever_to_oneroster_keeps_its_students(backend: Backend) {
    let dataset = generate(GenSpec::new(300));
    let key = dataset.ids(rosterflow_tests::district::Collection::Districts)[0].clone();
    let db = TestDb::new(backend).await;
    let recording = db.dir.path().join("recording");
    dataset.write_recording(&recording, 100).expect("record");
    let clever = pipeline(
        db.dir.path(),
        "clever",
        &replay_source(&recording),
        &db.url,
        "",
    );
    run(&clever, &RunOptions::default())
        .await
        .expect("load from Clever");
    let rows_before = db.rows("SELECT id, sis_id FROM students ORDER BY id").await;

    let feed = db.dir.path().join("feed");
    let options = OneRosterWrite::new(OneRosterVersion::V1_2).with_ids(Ids::sequential("or-"));
    dataset
        .write_oneroster(&feed, &options)
        .expect("write the feed");
    let oneroster = pipeline_with_key(&db, &feed, &key);
    let dry = run(
        &oneroster,
        &RunOptions {
            dry_run: true,
            ..RunOptions::default()
        },
    )
    .await
    .expect("a dry run");
    let listing = dry
        .plan
        .source_switch
        .clone()
        .expect("the dry run lists the switch");
    assert_eq!(
        listing.matches("  matched    student ").count(),
        rows_before.len(),
        "{listing}"
    );
    let held = run(&oneroster, &RunOptions::default())
        .await
        .expect("the switch");
    let RunStatus::Held { run_id, reasons } = held.status else {
        panic!("a change of source is held: {:?}", held.status);
    };
    assert!(
        reasons[0].starts_with("the district's source changes from clever to oneroster"),
        "{reasons:?}"
    );
    crate::util::approve(&oneroster, &db.open().await, run_id)
        .await
        .expect("approve the switch");

    assert_eq!(
        db.rows("SELECT id, sis_id FROM students ORDER BY id").await,
        rows_before,
        "every student keeps their row"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM students WHERE source_id NOT LIKE 'or-%'")
            .await,
        0,
        "every student is keyed by their OneRoster id"
    );
    assert_eq!(
        db.rows("SELECT key, source_kind FROM districts").await,
        [format!("{key}|oneroster")]
    );
    let again = run(&oneroster, &RunOptions::default())
        .await
        .expect("a resync");
    assert!(again.plan.is_empty(), "{}", again.plan);
}

/// Through the binary: a record that cannot be used is quarantined, and the run's report names
/// the file and line it came from; a feed without its manifest is refused and loads nothing.
async fn bad_feeds_are_quarantined_or_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let feed = db.dir.path().join("feed");
    generate(GenSpec::new(100))
        .write_oneroster(&feed, &OneRosterWrite::new(OneRosterVersion::V1_1))
        .expect("write the feed");
    let enrollments = feed.join("enrollments.csv");
    let mut text = std::fs::read_to_string(&enrollments).expect("read enrollments");
    let line = text.lines().count() + 1;
    text.push_str("bad-enrollment,,,no-such-class,no-such-school,no-such-user,student,,,\r\n");
    std::fs::write(&enrollments, text).expect("plant a bad enrollment");
    let file = pipeline_with_key(&db, &feed, "springfield");
    let path = file.path.to_string_lossy().into_owned();
    let (code, _, stderr) = crate::util::rosterflow(&["run", &path], &[]);
    assert_eq!(code, 1, "applied with a quarantined record: {stderr}");
    let (code, report, stderr) = crate::util::rosterflow(&["report", &path, "1"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        report.contains(&format!("\"origin\": \"enrollments.csv:{line}\"")),
        "{report}"
    );

    std::fs::remove_file(feed.join("manifest.csv")).expect("remove the manifest");
    let empty = TestDb::new(backend).await;
    let refused = pipeline_with_key(&empty, &feed, "springfield");
    let path = refused.path.to_string_lossy().into_owned();
    let (code, _, stderr) = crate::util::rosterflow(&["run", &path], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("has no manifest.csv"), "{stderr}");
    assert_eq!(empty.scalar("SELECT COUNT(*) FROM students").await, 0);
}

/// A delta that trips a safety hold keeps the roster it read with the held run: approving it
/// moves the district's checkpoint along, so the next delta applies over it; discarding it
/// drops the checkpoint, so the next delta is refused until a bulk feed comes.
async fn a_held_delta_moves_the_checkpoint_when_approved(backend: Backend) {
    let first = generate(GenSpec::new(200));
    let students = first.ids_with_role(rosterflow_tests::district::Role::Student);
    let mut second = first.clone();
    for student in &students[..80] {
        second.remove_user(student);
    }
    let mut third = second.clone();
    third.remove_user(&students[100]);
    let options = OneRosterWrite::new(OneRosterVersion::V1_2)
        .with_ids(Ids::sequential("s"))
        .at("2026-12-01T02:00:00Z");
    let db = TestDb::new(backend).await;
    let feed = |name: &str| db.dir.path().join(name);
    first
        .write_oneroster(&feed("bulk"), &options)
        .expect("bulk");
    Dataset::write_oneroster_delta(&first, &second, &feed("delta1"), &options).expect("delta 1");
    Dataset::write_oneroster_delta(&second, &third, &feed("delta2"), &options).expect("delta 2");
    run(
        &pipeline_with_key(&db, &feed("bulk"), "springfield"),
        &RunOptions::default(),
    )
    .await
    .expect("the bulk");
    let delta1 = pipeline_with_key(&db, &feed("delta1"), "springfield");
    let held = run(&delta1, &RunOptions::default()).await.expect("delta 1");
    let RunStatus::Held { run_id, .. } = held.status else {
        panic!("archiving 40% of the students is held: {:?}", held.status);
    };
    crate::util::approve(&delta1, &db.open().await, run_id)
        .await
        .expect("approve delta 1");
    run(
        &pipeline_with_key(&db, &feed("delta2"), "springfield"),
        &RunOptions::default(),
    )
    .await
    .expect("delta 2");
    let live = "SELECT COUNT(*) FROM students WHERE archived_at IS NULL";
    assert_eq!(
        db.scalar(live).await as usize,
        third
            .ids_with_role(rosterflow_tests::district::Role::Student)
            .len(),
        "delta 2 applied over the roster delta 1 left"
    );

    let other = TestDb::new(backend).await;
    run(
        &pipeline_with_key(&other, &feed("bulk"), "springfield"),
        &RunOptions::default(),
    )
    .await
    .expect("the bulk");
    let delta1 = pipeline_with_key(&other, &feed("delta1"), "springfield");
    let held = run(&delta1, &RunOptions::default()).await.expect("delta 1");
    let run_id = held.status.run_id().expect("held");
    rosterflow_store::runs::discard(&other.open().await, "springfield", run_id, None)
        .await
        .expect("discard delta 1");
    let refused = run(
        &pipeline_with_key(&other, &feed("delta2"), "springfield"),
        &RunOptions::default(),
    )
    .await;
    let message =
        rosterflow_model::error_chain(&refused.expect_err("a delta over a discarded one"));
    assert!(message.contains("bulk"), "{message}");
}

/// And back: a district that began on OneRoster under its own key moves to the Clever API,
/// naming its Clever district in `source.district_id`; every student keeps their row.
async fn a_district_that_moves_from_oneroster_to_clever_keeps_its_students(backend: Backend) {
    let dataset = generate(GenSpec::new(200));
    let clever_district = dataset.ids(rosterflow_tests::district::Collection::Districts)[0].clone();
    let db = TestDb::new(backend).await;
    let feed = db.dir.path().join("feed");
    dataset
        .write_oneroster(
            &feed,
            &OneRosterWrite::new(OneRosterVersion::V1_1).with_ids(Ids::sequential("or-")),
        )
        .expect("write the feed");
    run(
        &pipeline_with_key(&db, &feed, "springfield"),
        &RunOptions::default(),
    )
    .await
    .expect("load from OneRoster");
    let rows_before = db.rows("SELECT id, sis_id FROM students ORDER BY id").await;

    let sim = rosterflow_tests::clever_sim::CleverSim::start(dataset, Default::default()).await;
    let source = format!(
        "{}\ndistrict_id = \"{clever_district}\"",
        crate::util::sim_source(&sim.base_url(), &sim.token(), 1000)
    );
    let text = crate::util::pipeline_text("springfield-clever", &source, &db.url, "").replacen(
        "[pipeline]\n",
        &with_key("springfield"),
        1,
    );
    let path = db.dir.path().join("springfield-clever.toml");
    std::fs::write(&path, text).expect("write pipeline");
    let clever =
        rosterflow_pipeline::config::load(&path, &Default::default()).expect("a valid pipeline");
    let held = run(&clever, &RunOptions::default())
        .await
        .expect("the switch");
    let run_id = held.status.run_id().expect("held");
    assert!(
        matches!(held.status, RunStatus::Held { .. }),
        "{:?}",
        held.status
    );
    crate::util::approve(&clever, &db.open().await, run_id)
        .await
        .expect("approve the switch");
    assert_eq!(
        db.rows("SELECT id, sis_id FROM students ORDER BY id").await,
        rows_before,
        "every student keeps their row"
    );
    assert_eq!(
        db.rows("SELECT key, source_kind, source_id FROM districts")
            .await,
        [format!("springfield|clever|{clever_district}")]
    );
    sim.stop().await;
}

crate::on_both_backends!(
    a_district_that_moves_from_oneroster_to_clever_keeps_its_students,
    a_held_delta_moves_the_checkpoint_when_approved,
    bad_feeds_are_quarantined_or_refused,
    a_district_that_moves_from_clever_to_oneroster_keeps_its_students,
    the_same_district_from_clever_and_oneroster,
    a_delta_applied_to_the_bulk_equals_the_next_bulk,
    two_districts_with_the_same_sourced_ids,
);
