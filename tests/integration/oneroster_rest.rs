//! Districts on a OneRoster REST service (the simulator, 1.1 and 1.2): the same district as from
//! Clever leaves the same Freckle DB; a token that expires mid-pull is renewed; pages without
//! a count are followed to the end; rate limits and server errors are waited out; a delta pull
//! equals a fresh full load; a refused client secret is a configuration error.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use rosterflow_tests::district::{Collection, Dataset, GenSpec, OneRosterVersion, Role, generate};
use rosterflow_tests::oneroster_sim::{Fault, OneRosterOptions, OneRosterSim};

use crate::util::{Backend, TestDb, pipeline, pipeline_text, replay_source, rosterflow, run};
use rosterflow_pipeline::config::Pipeline;
use rosterflow_pipeline::sync::RunOptions;

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

/// Fails naming the first table that differs, and how.
fn assert_same(what: &str, want: &[Vec<String>], got: &[Vec<String>]) {
    for (sql, (want, got)) in COMPARED.iter().zip(want.iter().zip(got)) {
        let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(3).collect();
        let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(3).collect();
        assert!(
            missing.is_empty() && extra.is_empty() && want.len() == got.len(),
            "{what}, {sql}: {} rows expected, {} loaded; missing {missing:?}, extra {extra:?}",
            want.len(),
            got.len()
        );
    }
}

/// The `[source]` lines for the simulator's `version` service, with fast retries.
fn rest_source(sim: &OneRosterSim, version: OneRosterVersion, secret: &str, extra: &str) -> String {
    format!(
        "type = \"oneroster_rest\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\n\
         client_secret = \"{secret}\"\ntimeout_secs = 5\nmax_attempts = 6\nbackoff_base_ms = 20\n\
         backoff_max_secs = 3\n{extra}",
        sim.api_url(version),
        sim.token_url(),
        sim.client_id(),
    )
}

/// Writes a pipeline reading `source` into `db` under the key `springfield`; returns its path.
fn write_pipeline(db: &TestDb, name: &str, source: &str) -> std::path::PathBuf {
    let text = pipeline_text(name, source, &db.url, "").replacen(
        "[pipeline]\n",
        "[pipeline]\ndistrict_id = \"springfield\"\n",
        1,
    );
    let path = db.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// A pipeline reading the simulator's `version` service into `db`; `extra` adds source lines.
fn rest_pipeline(
    db: &TestDb,
    sim: &OneRosterSim,
    version: OneRosterVersion,
    extra: &str,
) -> Pipeline {
    let source = rest_source(sim, version, &sim.client_secret(), extra);
    let path = write_pipeline(db, "rest", &source);
    rosterflow_pipeline::config::load(&path, &Default::default()).expect("a valid pipeline")
}

/// The district loaded from Clever (a recording of `dataset`) into a fresh database.
async fn from_clever(backend: Backend, dataset: &Dataset) -> Vec<Vec<String>> {
    let clever = TestDb::new(backend).await;
    let recording = clever.dir.path().join("recording");
    dataset.write_recording(&recording, 100).expect("record");
    let file = pipeline(
        clever.dir.path(),
        "clever",
        &replay_source(&recording),
        &clever.url,
        "",
    );
    run(&file, &RunOptions::default())
        .await
        .expect("load from Clever");
    compared(&clever).await
}

/// Loads `dataset` from Clever and from the REST service in 1.1 and 1.2: all read back the
/// same.
async fn the_same_district_from_clever_and_oneroster_rest(backend: Backend) {
    let dataset = generate(GenSpec::new(400));
    let expected = from_clever(backend, &dataset).await;
    assert!(expected[0].len() >= 400, "the district's students loaded");
    let sim = OneRosterSim::start(dataset, OneRosterOptions::default()).await;
    for version in OneRosterVersion::ALL {
        let db = TestDb::new(backend).await;
        let file = rest_pipeline(&db, &sim, version, "limit = 100");
        let result = run(&file, &RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{version:?}: {}", rosterflow_model::error_chain(&e)));
        assert_eq!(result.plan.quarantined, 0, "{version:?}: {}", result.plan);
        assert_same(&format!("{version:?}"), &expected, &compared(&db).await);
        assert_eq!(
            db.rows("SELECT key, source_kind FROM districts").await,
            ["springfield|oneroster"]
        );
        assert_eq!(db.rows("SELECT source_kind FROM sync_runs").await, ["full"]);
    }
    assert_eq!(sim.tokens_issued(), 2, "one token a pull");
}

/// Every token expires while the collections are being read: the pull renews its token and
/// finishes whole.
async fn a_token_that_expires_mid_pull_is_renewed(backend: Backend) {
    let dataset = generate(GenSpec::new(300));
    let students = dataset.ids_with_role(Role::Student).len() as i64;
    let sim = OneRosterSim::start(dataset, OneRosterOptions::default()).await;
    let db = TestDb::new(backend).await;
    let file = rest_pipeline(&db, &sim, OneRosterVersion::V1_2, "limit = 25");
    let expire = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while sim.request_count() < 10 {
            assert!(Instant::now() < deadline, "the pull never got going");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sim.expire_tokens();
    };
    let options = RunOptions::default();
    let (result, ()) = tokio::join!(run(&file, &options), expire);
    result.unwrap_or_else(|e| panic!("{}", rosterflow_model::error_chain(&e)));
    assert!(sim.tokens_issued() >= 2, "{} tokens", sim.tokens_issued());
    let requests = sim.requests();
    assert!(
        requests.iter().any(|r| r.status == 401),
        "an expired token was refused once"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.path() == "/oauth/token")
            .all(|r| r.status == 200)
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM students WHERE archived_at IS NULL")
            .await,
        students
    );
}

/// A service that sends neither `X-Total-Count` nor `Link`, and serves 40 records a page
/// whatever `limit` asks for: every page is read all the same.
async fn paging_without_a_total_count_is_complete(backend: Backend) {
    let dataset = generate(GenSpec::new(200));
    let expected = from_clever(backend, &dataset).await;
    let options = OneRosterOptions {
        total_count_header: false,
        link_header: false,
        max_limit: Some(40),
        ..OneRosterOptions::default()
    };
    let sim = OneRosterSim::start(dataset, options).await;
    let db = TestDb::new(backend).await;
    let file = rest_pipeline(&db, &sim, OneRosterVersion::V1_1, "limit = 100");
    let result = run(&file, &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", rosterflow_model::error_chain(&e)));
    assert_eq!(result.plan.quarantined, 0, "{}", result.plan);
    assert_same("capped pages", &expected, &compared(&db).await);
    let users = format!("{}/users?", OneRosterVersion::V1_1.base_path());
    let offsets: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.uri.starts_with(&users))
        .filter_map(|r| r.uri.split("offset=").nth(1).map(|o| o.to_owned()))
        .collect();
    assert!(
        offsets.len() > 3 && offsets[..3] == ["0", "40", "80"],
        "pages of 40: {offsets:?}"
    );
}

/// A 429 with `Retry-After`, a 500, a 503 and a token endpoint that fails once: each is
/// retried and the district loads whole.
async fn a_rate_limit_and_server_errors_are_retried(backend: Backend) {
    let dataset = generate(GenSpec::new(200));
    let expected = from_clever(backend, &dataset).await;
    let sim = OneRosterSim::start(dataset, OneRosterOptions::default()).await;
    let base = OneRosterVersion::V1_2.base_path();
    sim.inject_on("/oauth/token", Fault::Status(503));
    sim.inject_on(
        &format!("{base}/users"),
        Fault::RateLimited {
            retry_after_secs: 1,
        },
    );
    sim.inject_on(&format!("{base}/classes"), Fault::Status(500));
    sim.inject_on(&format!("{base}/enrollments"), Fault::Status(503));
    sim.inject_on(&format!("{base}/orgs"), Fault::TruncatedJson);
    let db = TestDb::new(backend).await;
    let file = rest_pipeline(&db, &sim, OneRosterVersion::V1_2, "limit = 100");
    let started = Instant::now();
    run(&file, &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", rosterflow_model::error_chain(&e)));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was waited for"
    );
    assert_same("after retries", &expected, &compared(&db).await);
    let requests = sim.requests();
    for (prefix, status) in [
        ("/oauth/token", 503),
        ("/users", 429),
        ("/classes", 500),
        ("/enrollments", 503),
    ] {
        let path = if prefix == "/oauth/token" {
            prefix.to_owned()
        } else {
            format!("{base}{prefix}")
        };
        let answers: Vec<u16> = requests
            .iter()
            .filter(|r| r.path() == path)
            .map(|r| r.status)
            .collect();
        assert_eq!(answers.first(), Some(&status), "{path}: {answers:?}");
        assert!(answers[1..].contains(&200), "{path} retried: {answers:?}");
    }
}

/// A delta pull after a student left and another was renamed leaves the DB a fresh full load
/// of the changed district leaves; it asks only for the changes.
async fn a_delta_pull_equals_a_fresh_full_load(backend: Backend) {
    let stamp = |offset: chrono::Duration| {
        (Utc::now() + offset).to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    let options = OneRosterOptions {
        time: Some(stamp(-chrono::Duration::days(1))),
        ..OneRosterOptions::default()
    };
    let sim = OneRosterSim::start(generate(GenSpec::new(300)), options).await;
    let db = TestDb::new(backend).await;
    let file = rest_pipeline(
        &db,
        &sim,
        OneRosterVersion::V1_2,
        "limit = 100\nsync = \"delta\"",
    );
    run(&file, &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", rosterflow_model::error_chain(&e)));

    // Changes made after the first pull: stamped later than it started.
    sim.set_time(&stamp(chrono::Duration::hours(1)));
    let (gone, renamed) = sim.update(|d| {
        let students = d.ids_with_role(Role::Student);
        let (gone, renamed) = (students[0].clone(), students[1].clone());
        assert!(d.remove_user(&gone));
        assert!(d.edit(Collection::Users, &renamed, |u| {
            u["name"]["first"] = "Renamed".into()
        }));
        (gone, renamed)
    });
    sim.clear_requests();
    run(&file, &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", rosterflow_model::error_chain(&e)));
    let requests = sim.requests();
    let api: Vec<&str> = requests
        .iter()
        .filter(|r| r.path() != "/oauth/token")
        .map(|r| r.uri.as_str())
        .collect();
    assert_eq!(api.len(), 6, "one page per collection: {api:?}");
    assert!(
        api.iter()
            .all(|uri| uri.contains("filter=dateLastModified%3E%27")),
        "{api:?}"
    );
    assert_eq!(
        db.rows("SELECT source_kind FROM sync_runs ORDER BY id")
            .await,
        ["full", "delta"]
    );
    assert_eq!(
        db.rows(&format!(
            "SELECT first_name FROM students WHERE source_id = '{renamed}'"
        ))
        .await,
        ["Renamed"]
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM students WHERE source_id = '{gone}' AND archived_at IS NOT NULL"
        ))
        .await,
        1
    );

    let fresh = TestDb::new(backend).await;
    let changed = OneRosterSim::start(sim.read(Dataset::clone), OneRosterOptions::default()).await;
    run(
        &rest_pipeline(&fresh, &changed, OneRosterVersion::V1_2, "limit = 100"),
        &RunOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{}", rosterflow_model::error_chain(&e)));
    // The student who left is archived here, and was never loaded there.
    let mut after_delta = compared(&db).await;
    after_delta[0].retain(|row| !row.ends_with("|archived"));
    assert_same("delta", &compared(&fresh).await, &after_delta);
    let live = "SELECT source_id FROM students WHERE archived_at IS NULL ORDER BY source_id";
    assert_eq!(db.rows(live).await, fresh.rows(live).await);

    // Nothing changed since: the next delta plans nothing.
    let again = run(&file, &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", rosterflow_model::error_chain(&e)));
    assert_eq!(again.plan.change_count(), 0, "{}", again.plan);
}

/// A client secret the token endpoint refuses stops the run at once as a configuration error
/// (exit 78), without the secret in what is shown, and loads nothing.
async fn a_refused_client_secret_is_a_configuration_error(backend: Backend) {
    let sim = OneRosterSim::start(generate(GenSpec::new(20)), OneRosterOptions::default()).await;
    let db = TestDb::new(backend).await;
    let source = rest_source(
        &sim,
        OneRosterVersion::V1_1,
        "${ONEROSTER_SECRET}",
        "limit = 100",
    );
    let path = write_pipeline(&db, "refused", &source);
    let (code, _, stderr) = rosterflow(
        &["run", path.to_str().expect("utf-8")],
        &[("ONEROSTER_SECRET", "not-the-secret")],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("refused the client (401: invalid_client"),
        "{stderr}"
    );
    assert!(stderr.contains("client_secret"), "{stderr}");
    assert!(
        !stderr.contains("not-the-secret"),
        "the secret leaked: {stderr}"
    );
    assert_eq!(sim.request_count(), 1, "a refused client is not retried");
    assert_eq!(sim.tokens_issued(), 0);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM students").await, 0);
    assert_eq!(db.rows("SELECT status FROM sync_runs").await, ["failed"]);
}

crate::on_both_backends!(
    the_same_district_from_clever_and_oneroster_rest,
    a_token_that_expires_mid_pull_is_renewed,
    paging_without_a_total_count_is_complete,
    a_rate_limit_and_server_errors_are_retried,
    a_delta_pull_equals_a_fresh_full_load,
    a_refused_client_secret_is_a_configuration_error,
);
