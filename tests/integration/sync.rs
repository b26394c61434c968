//! End to end: Clever (the simulator, or a recording) into the Freckle DB, on SQLite and
//! PostgreSQL. The expected figures are counted from the raw demo JSON, not from rosterflow.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rosterflow_pipeline::sync::{RunOptions, RunStatus};
use rosterflow_tests::clever_sim::{CleverSim, Fault, SimOptions};
use rosterflow_tests::district::{Collection, Dataset, GenSpec, Role, generate};
use serde_json::Value;

use crate::on_both_backends;
use crate::util::{
    Backend, ChildLog, TestDb, copy_dir, demo_records, pipeline, pipeline_text, replay_source,
    repo, rosterflow, sim_source,
};

/// What the demo district holds, counted straight from Clever's JSON.
struct DemoFacts {
    students: usize,
    teachers: usize,
    sections: usize,
    schools: usize,
    student_pairs: usize,
    teacher_pairs: usize,
    contacts: BTreeSet<String>,
    admins: usize,
}

fn demo_facts() -> DemoFacts {
    let read = demo_records;
    let users = read("users");
    let sections = read("sections");
    let with_role = |role: &str| {
        users
            .iter()
            .filter(|u| u["roles"].get(role).is_some())
            .count()
    };
    let pairs = |field: &str| -> usize {
        sections
            .iter()
            .flat_map(|s| {
                let id = s["id"].as_str().expect("id").to_owned();
                s[field]
                    .as_array()
                    .expect("member list")
                    .iter()
                    .map(move |m| (id.clone(), m.as_str().expect("member id").to_owned()))
            })
            .collect::<BTreeSet<_>>()
            .len()
    };
    DemoFacts {
        students: with_role("student"),
        teachers: with_role("teacher"),
        sections: sections.len(),
        schools: sections
            .iter()
            .map(|s| s["school"].as_str().expect("school"))
            .collect::<BTreeSet<_>>()
            .len(),
        student_pairs: pairs("students"),
        teacher_pairs: pairs("teachers"),
        contacts: users
            .iter()
            .filter(|u| u["roles"].get("contact").is_some())
            .map(|u| u["id"].as_str().expect("id").to_owned())
            .collect(),
        admins: with_role("district_admin"),
    }
}

/// Checks the demo district is loaded; `schools` is how many schools the source served (a
/// replay synthesises the 3 with sections; the simulator serves all 5 the users name).
async fn assert_demo_loaded(db: &TestDb, schools: usize) {
    let facts = demo_facts();
    assert_eq!(
        (
            facts.students,
            facts.teachers,
            facts.sections,
            facts.schools
        ),
        (1004, 89, 378, 3)
    );
    let active = |table: &str| format!("SELECT COUNT(*) FROM {table} WHERE archived_at IS NULL");
    assert_eq!(db.scalar(&active("schools")).await, schools as i64);
    assert_eq!(db.scalar(&active("teachers")).await, facts.teachers as i64);
    assert_eq!(db.scalar(&active("students")).await, facts.students as i64);
    assert_eq!(db.scalar(&active("classes")).await, facts.sections as i64);
    assert_eq!(db.scalar(&active("admins")).await, facts.admins as i64);
    let open = |table: &str| format!("SELECT COUNT(*) FROM {table} WHERE ended_at IS NULL");
    assert_eq!(
        db.scalar(&open("class_students")).await,
        facts.student_pairs as i64
    );
    assert_eq!(
        db.scalar(&open("class_teachers")).await,
        facts.teacher_pairs as i64
    );
    // Every section's primary teacher is marked primary, and only one per class.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM class_teachers WHERE role = 'primary'")
            .await,
        facts.sections as i64
    );
    // Contacts and district admins are neither students nor teachers.
    let loaded: BTreeSet<String> = db
        .rows("SELECT source_id FROM students UNION SELECT source_id FROM teachers")
        .await
        .into_iter()
        .collect();
    assert!(loaded.is_disjoint(&facts.contacts));
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM admins a JOIN teachers t ON t.source_id = a.source_id")
            .await,
        0
    );
    // Each student keeps their SIS id.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM students WHERE sis_id IS NULL")
            .await,
        0
    );
}

fn demo_facts_first_section() -> String {
    demo_records("sections")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// The README's demo command, through the binary, on a fresh database.
async fn the_demo_command_loads_the_demo_district(backend: Backend) {
    let db = TestDb::new(backend).await;
    let demo = repo().join("pipelines/demo.toml");
    let (code, stdout, stderr) = rosterflow(
        &["run", demo.to_str().expect("utf-8 path")],
        &[("FRECKLE_DB", &db.url)],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("student.create"), "{stdout}");
    assert_demo_loaded(&db, demo_facts().schools).await;

    let (code, stdout, _) = rosterflow(
        &["run", demo.to_str().expect("utf-8 path")],
        &[("FRECKLE_DB", &db.url)],
    );
    assert_eq!(code, 0);
    assert!(stdout.contains("no changes"), "{stdout}");
    assert_eq!(
        db.rows("SELECT status, changes FROM sync_runs ORDER BY id")
            .await,
        ["committed|11232", "committed|0"]
    );
}

/// A second run on unchanged input writes nothing but its run record.
async fn a_rerun_on_unchanged_input_changes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let demo = db.demo_pipeline();
    crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("first run");
    let before = db.fingerprint().await;
    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("rerun");
    assert!(report.plan.is_empty(), "{}", report.plan);
    assert_eq!(db.fingerprint().await, before);
    assert_eq!(
        db.scalar("SELECT changes FROM sync_runs ORDER BY id DESC LIMIT 1")
            .await,
        0
    );
}

/// The simulator serves the demo in small pages with 429s, 5xx and a dropped connection.
async fn the_api_pull_survives_rate_limits_and_failures(backend: Backend) {
    let db = TestDb::new(backend).await;
    let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
    sim.inject_on("/v3.0/users", Fault::RateLimited);
    sim.inject_on("/v3.0/sections", Fault::Status(500));
    sim.inject_on("/v3.0/sections", Fault::Status(503));
    sim.inject_on("/v3.0/users", Fault::DropConnection);
    sim.inject_on("/v3.0/users", Fault::TruncatedJson);
    sim.inject_every(17, Fault::Status(502));
    let demo = pipeline(
        db.dir.path(),
        "demo",
        &sim_source(&sim.base_url(), &sim.token(), 200),
        &db.url,
        "",
    );
    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("the pull retries through every fault");
    assert!(matches!(report.status, RunStatus::Committed { .. }));
    assert_eq!(report.exit_code(), 0);
    assert_demo_loaded(&db, sim.read(|d| d.len(Collection::Schools))).await;
    let requests = sim.requests();
    let status = |code: u16| requests.iter().filter(|r| r.status == Some(code)).count();
    assert!(status(429) >= 1 && status(500) >= 1 && status(503) >= 1);
    // Pages of 200: the users list takes 11 pages plus the empty page its last `next` names.
    let user_pages = requests
        .iter()
        .filter(|r| r.path() == "/v3.0/users" && r.status == Some(200) && r.fault.is_none())
        .count();
    assert_eq!(user_pages, 12, "{requests:?}");
}

/// A `next` link back to a page already fetched (a server whose paging cursor is stuck) fails
/// the pull with that page's error, where following links would fetch it forever (or, once,
/// load its records twice); nothing is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_back_to_a_fetched_page_fails_the_pull() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
    // The second page of users names itself as the next.
    sim.inject_on("/v3.0/users?limit=200&starting_after=", Fault::NextToSelf);
    let demo = pipeline(
        db.dir.path(),
        "demo",
        &sim_source(&sim.base_url(), &sim.token(), 200),
        &db.url,
        "",
    );
    let pulled = tokio::time::timeout(
        Duration::from_secs(120),
        crate::util::run(&demo, &RunOptions::default()),
    )
    .await
    .expect("the pull ends");
    let error = pulled.expect_err("a page that leads back fails the pull");
    let message = rosterflow_model::error_chain(&error);
    assert!(
        message.contains("leads back to a page already fetched"),
        "{message}"
    );
    assert!(db.fingerprint().await.is_empty(), "nothing was loaded");
    let fetched: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.fault == Some(Fault::NextToSelf))
        .map(|r| r.uri)
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
}

/// A rejected token stops the pull at once with a clear message, and loads nothing.
async fn a_rejected_token_stops_with_a_clear_error(backend: Backend) {
    let db = TestDb::new(backend).await;
    let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
    let dir = db.dir.path();
    std::fs::write(
        dir.join("bad.toml"),
        pipeline_text(
            "bad",
            &sim_source(&sim.base_url(), "${CLEVER_TOKEN}", 500),
            &db.url,
            "",
        ),
    )
    .expect("write pipeline");
    let path = dir.join("bad.toml");
    let (code, _, stderr) = rosterflow(
        &["run", path.to_str().expect("utf-8")],
        &[("CLEVER_TOKEN", "not-the-token")],
    );
    // A refused token is the admin's to fix, as `serve` counts it: a configuration error.
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("clever refused the token (401)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-token"),
        "the token leaked: {stderr}"
    );
    assert_eq!(sim.request_count(), 1, "a 401 is not retried");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM students").await, 0);
    assert_eq!(
        db.rows("SELECT status FROM sync_runs").await,
        ["failed"],
        "the failure is in the run history"
    );

    sim.configure(|options| options.forbidden = true);
    let (code, _, stderr) = rosterflow(
        &["run", path.to_str().expect("utf-8")],
        &[("CLEVER_TOKEN", &sim.token())],
    );
    assert_eq!(
        code, 78,
        "a district that withdrew its authorisation: {stderr}"
    );
    assert!(stderr.contains("(403)"), "{stderr}");
}

/// Roster changes in Clever: memberships end and restart with history; teachers are archived
/// and restored with the same account and no second welcome email.
async fn roster_changes_keep_history_and_identity(backend: Backend) {
    let db = TestDb::new(backend).await;
    let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
    let demo = pipeline(
        db.dir.path(),
        "demo",
        &sim_source(&sim.base_url(), &sim.token(), 1000),
        &db.url,
        "",
    );
    let run = || async {
        crate::util::run(&demo, &RunOptions::default())
            .await
            .expect("run")
    };
    run().await;

    let section = sim.read(|d| d.ids(Collection::Sections)[0].clone());
    let student = sim.read(|d| d.section_students(&section)[0].clone());
    let membership = format!(
        "SELECT m.started_at, m.ended_at FROM class_students m JOIN classes c ON c.id = m.class_id \
         JOIN students s ON s.id = m.student_id WHERE c.source_id = '{section}' AND s.source_id = '{student}' \
         ORDER BY m.id"
    );

    // The student leaves the section: the membership ends, the student stays.
    sim.update(|d| d.remove_student_from_section(&section, &student));
    let report = run().await;
    assert_eq!(report.plan.counts().get("class_student.end"), Some(&1));
    assert_eq!(report.plan.change_count(), 1);
    let rows = db.rows(&membership).await;
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].ends_with("|NULL"), "ended: {rows:?}");
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM students WHERE source_id = '{student}' AND archived_at IS NULL"
        ))
        .await,
        1
    );

    // Back in the section: a new stay starts; the old one stays in the history.
    sim.update(|d| d.add_student_to_section(&section, &student));
    run().await;
    let rows = db.rows(&membership).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].ends_with("|NULL"), "open again: {rows:?}");

    // A teacher leaves Clever: archived, memberships ended, account kept.
    let teacher = sim.read(|d| d.ids_with_role(Role::Teacher)[0].clone());
    let record = sim.read(|d| d.get(Collection::Users, &teacher).expect("teacher"));
    let sections = sim.read(|d| d.sections_of(&teacher));
    let lineups: Vec<Vec<String>> =
        sim.read(|d| sections.iter().map(|s| d.section_teachers(s)).collect());
    let teacher_row = format!("SELECT id FROM teachers WHERE source_id = '{teacher}'");
    let id_before = db.rows(&teacher_row).await;
    sim.update(|d| d.remove_user(&teacher));
    let report = run().await;
    assert_eq!(report.plan.counts().get("teacher.archive"), Some(&1));
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM teachers WHERE source_id = '{teacher}' AND archived_at IS NOT NULL"
        ))
        .await,
        1
    );

    // Back again: the same row is restored, with its memberships, and no second email.
    sim.update(|d| {
        d.upsert(Collection::Users, record);
        for (section, lineup) in sections.iter().zip(&lineups) {
            let lineup: Vec<&str> = lineup.iter().map(String::as_str).collect();
            d.set_section_teachers(section, &lineup);
        }
    });
    let report = run().await;
    assert_eq!(report.plan.counts().get("teacher.restore"), Some(&1));
    assert_eq!(report.plan.new_accounts, 0);
    let id_after = db.rows(&teacher_row).await;
    assert_eq!(id_before, id_after, "the same teacher row");
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM email_outbox o JOIN teachers t ON t.id = o.teacher_id WHERE t.source_id = '{teacher}'"
        ))
        .await,
        1
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM email_outbox").await, 89);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM teacher_accounts").await, 89);
}

/// A dry run prints the plan and writes nothing at all.
async fn a_dry_run_writes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let demo = db.demo_pipeline();
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let report = crate::util::run(&demo, &options).await.expect("dry run");
    assert_eq!(report.status, RunStatus::DryRun);
    assert_eq!(report.plan.counts().get("student.create"), Some(&1004));
    assert_eq!(report.plan.new_accounts, 89);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM sync_runs").await, 0);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM students").await, 0);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM email_outbox").await, 0);
}

/// Edits the records of the first page of `collection` in the recording at `dir`.
fn edit_first_page(dir: &Path, collection: &str, edit: &dyn Fn(&mut Vec<Value>)) {
    let path = dir.join(collection).join("0001.json");
    let mut page: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("page")).expect("JSON");
    edit(page["data"].as_array_mut().expect("list"));
    std::fs::write(&path, serde_json::to_vec(&page).expect("JSON")).expect("write page");
}

/// A section naming a student Clever never sent is loaded without them; the reference is
/// quarantined with its reason and the run exits 1.
async fn unusable_records_are_quarantined_not_lost(backend: Backend) {
    let db = TestDb::new(backend).await;
    let edited = db.dir.path().join("recording");
    copy_dir(&repo().join("pipelines/demo"), &edited);
    let edit_page = |collection: &str, edit: &dyn Fn(&mut Vec<Value>)| {
        edit_first_page(&edited, collection, edit)
    };
    let section = demo_facts_first_section();
    edit_page("sections", &|items| {
        items[0]["data"]["students"]
            .as_array_mut()
            .expect("students")
            .push("ffffffffffffffffffffffff".into());
    });
    edit_page("users", &|items| {
        items.push(
            serde_json::json!({"data": {"name": {"first": "No", "last": "Id"},
            "roles": {"student": {"sis_id": "1"}}}}),
        );
    });
    let demo = pipeline(db.dir.path(), "demo", &replay_source(&edited), &db.url, "");
    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("run");
    assert_eq!(report.exit_code(), 1);
    let quarantined = db
        .rows("SELECT kind, source_id, reason FROM quarantine ORDER BY kind")
        .await;
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    assert!(quarantined[0].starts_with(&format!("section.students|{section}|")));
    assert!(quarantined[0].contains("ffffffffffffffffffffffff"));
    assert_eq!(quarantined[1], "user|NULL|record has no id");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM students WHERE archived_at IS NULL")
            .await,
        1004
    );
}

/// After a clean load, a student's record arrives unreadable (a role of the wrong type), a
/// section without its school, and a teacher twice: the student and the section keep their
/// rows and memberships exactly as they were, the duplicate is quarantined with a reason, and
/// the run exits 1. When the records read again, nothing had been lost.
async fn unreadable_records_keep_their_rows_and_duplicates_are_quarantined(backend: Backend) {
    let db = TestDb::new(backend).await;
    let edited = db.dir.path().join("recording");
    copy_dir(&repo().join("pipelines/demo"), &edited);
    let demo = pipeline(db.dir.path(), "demo", &replay_source(&edited), &db.url, "");
    crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("clean load");
    let before = db.fingerprint().await;

    let page_path = |collection: &str| edited.join(collection).join("0001.json");
    let read = |collection: &str| -> Value {
        serde_json::from_slice(&std::fs::read(page_path(collection)).expect("page")).expect("JSON")
    };
    let (users, sections) = (read("users"), read("sections"));
    let mut broken_users = users.clone();
    let items = broken_users["data"].as_array_mut().expect("list");
    let student = items
        .iter()
        .position(|u| u["data"]["roles"].get("student").is_some())
        .expect("a student");
    let student_id = items[student]["data"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    items[student]["data"]["roles"]["student"] = Value::from("not an object");
    let teacher = items
        .iter()
        .find(|u| u["data"]["roles"].get("teacher").is_some())
        .expect("a teacher")
        .clone();
    let teacher_id = teacher["data"]["id"].as_str().expect("id").to_owned();
    let mut twin = teacher.clone();
    twin["data"]["name"]["first"] = Value::from("Twin");
    items.push(twin);
    let mut broken_sections = sections.clone();
    // A section whose course another section shares: the replay synthesises courses from the
    // sections that read, so a course only the unreadable section names would look gone.
    let list = broken_sections["data"].as_array().expect("list");
    let course_of = |i: usize| {
        list[i]["data"]["course"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let shared = (0..list.len())
        .find(|&i| (0..list.len()).any(|j| j != i && course_of(j) == course_of(i)))
        .expect("two sections of one course");
    let section = &mut broken_sections["data"][shared]["data"];
    let section_id = section["id"].as_str().expect("id").to_owned();
    section["school"] = Value::from("");
    let write = |collection: &str, page: &Value| {
        std::fs::write(
            page_path(collection),
            serde_json::to_vec(page).expect("JSON"),
        )
        .expect("write")
    };
    write("users", &broken_users);
    write("sections", &broken_sections);

    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("run");
    assert_eq!(report.exit_code(), 1);
    assert!(report.plan.is_empty(), "nothing changes: {}", report.plan);
    assert_eq!(db.fingerprint().await, before);
    let quarantined = db
        .rows("SELECT kind, source_id, reason FROM quarantine ORDER BY kind, source_id")
        .await;
    let reasons: Vec<&str> = quarantined.iter().map(String::as_str).collect();
    assert!(
        reasons.contains(&format!("section|{section_id}|section has no school").as_str()),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with(&format!("user|{student_id}|unreadable record"))),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(
            &format!(
                "teacher|{teacher_id}|another teacher record has the same Clever id: the first one is used"
            )
            .as_str()
        ),
        "{reasons:?}"
    );
    assert_eq!(
        db.rows(&format!(
            "SELECT first_name FROM teachers WHERE source_id = '{teacher_id}'"
        ))
        .await,
        [teacher["data"]["name"]["first"].as_str().expect("a name")],
        "the first record is the one used"
    );

    write("users", &users);
    write("sections", &sections);
    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("run");
    assert_eq!(report.exit_code(), 0);
    assert!(report.plan.is_empty(), "{}", report.plan);
}

/// `pull --record` saves what the API served; replaying it loads the same district.
async fn a_recorded_pull_replays_to_the_same_roster(backend: Backend) {
    let db = TestDb::new(backend).await;
    let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
    let dir = db.dir.path();
    std::fs::write(
        dir.join("live.toml"),
        pipeline_text(
            "live",
            &sim_source(&sim.base_url(), &sim.token(), 300),
            &db.url,
            "",
        ),
    )
    .expect("write pipeline");
    let recording = dir.join("recording");
    let (code, stdout, stderr) = rosterflow(
        &[
            "pull",
            dir.join("live.toml").to_str().expect("utf-8"),
            "--record",
            recording.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM sync_runs").await,
        0,
        "pull loads nothing"
    );
    assert!(recording.join("users/0004.json").is_file());
    let replay = pipeline(dir, "replay", &replay_source(&recording), &db.url, "");
    crate::util::run(&replay, &RunOptions::default())
        .await
        .expect("replay");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM students").await, 1004);
    // The recording's schools are real records, not synthesised ones.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM schools WHERE synthesized")
            .await,
        0
    );
}

/// A process killed in the middle of a load leaves the DB as it was; the next run completes.
async fn a_load_killed_midway_leaves_the_previous_state(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = db.dir.path();
    let mut dataset = generate(GenSpec::new(6_000));
    let first = dir.join("first");
    dataset
        .write_recording(&first, 10_000)
        .expect("write recording");
    std::fs::write(
        dir.join("district.toml"),
        pipeline_text("district", &replay_source(&first), &db.url, ""),
    )
    .expect("write pipeline");
    let (code, _, stderr) = rosterflow(
        &["run", dir.join("district.toml").to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let before = db.fingerprint().await;

    // A much larger second district replaces the first: a long load to interrupt.
    dataset = generate(GenSpec::new(15_000).with_seed(7));
    let second = dir.join("second");
    dataset
        .write_recording(&second, 10_000)
        .expect("write recording");
    std::fs::write(
        dir.join("district.toml"),
        pipeline_text(
            "district",
            &replay_source(&second),
            &db.url,
            "[safety]\narchive_max_percent = 100\nupdate_max_percent = 100",
        ),
    )
    .expect("write pipeline");
    let mut child = std::process::Command::new(crate::util::rosterflow_bin())
        .args(["run", dir.join("district.toml").to_str().expect("utf-8")])
        .env("ROSTERFLOW_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn rosterflow");
    // Killed as soon as the run reaches its load.
    let mut log = ChildLog::of(&mut child);
    tokio::task::block_in_place(|| log.wait_for("applying plan", Duration::from_secs(120)));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "the load should still be running when it is killed"
    );
    child.kill().expect("kill");
    child.wait().expect("reap");

    assert_eq!(
        db.fingerprint().await,
        before,
        "nothing of the killed run remains"
    );
    assert_eq!(db.rows("SELECT status FROM sync_runs").await, ["committed"]);
    let (code, _, stderr) = rosterflow(
        &["run", dir.join("district.toml").to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM students WHERE archived_at IS NULL AND district_id = \
             (SELECT district_id FROM sync_runs ORDER BY id DESC LIMIT 1)"
        )
        .await,
        15_000
    );
}

on_both_backends!(
    the_demo_command_loads_the_demo_district,
    a_rerun_on_unchanged_input_changes_nothing,
    the_api_pull_survives_rate_limits_and_failures,
    a_rejected_token_stops_with_a_clear_error,
    roster_changes_keep_history_and_identity,
    a_dry_run_writes_nothing,
    unusable_records_are_quarantined_not_lost,
    unreadable_records_keep_their_rows_and_duplicates_are_quarantined,
    a_recorded_pull_replays_to_the_same_roster,
    a_load_killed_midway_leaves_the_previous_state,
);

#[test]
fn validate_names_file_line_and_column_and_exits_78() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[pipeline]\nname = \"x\"\n\n[source]\ntype = \"clever\"\ntoken = \"${NO_SUCH_TOKEN_VAR}\"\nlimt = 5\n\n[load]\n",
    )
    .expect("write");
    let (code, _, stderr) = rosterflow(&["validate", path.to_str().expect("utf-8")], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("bad.toml:6:10: environment variable NO_SUCH_TOKEN_VAR is not set"),
        "{stderr}"
    );
    let (code, _, stderr) = rosterflow(
        &["validate", path.to_str().expect("utf-8")],
        // A token's value is hidden in every problem whatever its length: a realistic one.
        &[("NO_SUCH_TOKEN_VAR", "a-token-0123")],
    );
    assert_eq!(code, 78);
    assert!(
        stderr.contains("bad.toml:7:1: unknown field `limt`"),
        "{stderr}"
    );
    let demo = repo().join("pipelines/demo.toml");
    let (code, stdout, _) = rosterflow(&["validate", demo.to_str().expect("utf-8")], &[]);
    assert_eq!(
        (code, stdout.trim()),
        (0, format!("{}: ok", demo.display()).as_str())
    );
}

/// Records whose ids cannot be Clever ids (a student `../../etc/passwd`, a teacher `x|y`, a
/// section `not-an-id`) and a section naming a student `../s`, among the demo district: each
/// is quarantined with a reason that names it and never loaded, and the rest loads. The
/// report says why; a resync plans nothing.
async fn records_whose_ids_are_not_clever_ids_are_quarantined_never_loaded(backend: Backend) {
    let db = TestDb::new(backend).await;
    let edited = db.dir.path().join("recording");
    copy_dir(&repo().join("pipelines/demo"), &edited);
    let edit_page = |collection: &str, edit: &dyn Fn(&mut Vec<Value>)| {
        edit_first_page(&edited, collection, edit)
    };
    let section = demo_facts_first_section();
    let school = demo_records("sections")[0]["school"]
        .as_str()
        .expect("a school")
        .to_owned();
    edit_page("sections", &|items| {
        items[0]["data"]["students"]
            .as_array_mut()
            .expect("students")
            .push("../s".into());
        items.push(
            serde_json::json!({"data": {"id": "not-an-id", "school": school,
            "name": "Bad", "students": [], "teachers": []}}),
        );
    });
    edit_page("users", &|items| {
        items.push(serde_json::json!({"data": {"id": "../../etc/passwd",
            "name": {"first": "Path", "last": "Trick"}, "roles": {"student": {"sis_id": "666"}}}}));
        items.push(serde_json::json!({"data": {"id": "x|y", "roles": {"teacher": {}}}}));
    });
    let demo = pipeline(db.dir.path(), "demo", &replay_source(&edited), &db.url, "");
    let file = demo.path.to_str().expect("UTF-8").to_owned();
    let (code, _, stderr) = rosterflow(&["run", &file], &[]);
    assert_eq!(code, 1, "applied with quarantined records: {stderr}");

    let facts = demo_facts();
    let count = |table: &str| format!("SELECT COUNT(*) FROM {table} WHERE archived_at IS NULL");
    assert_eq!(db.scalar(&count("students")).await, facts.students as i64);
    assert_eq!(db.scalar(&count("teachers")).await, facts.teachers as i64);
    assert_eq!(db.scalar(&count("classes")).await, facts.sections as i64);
    let loaded = db
        .rows(
            "SELECT source_id FROM students WHERE source_id IN ('../../etc/passwd', 'x|y') \
             UNION ALL SELECT source_id FROM teachers WHERE source_id IN ('../../etc/passwd', 'x|y') \
             UNION ALL SELECT source_id FROM classes WHERE source_id = 'not-an-id'",
        )
        .await;
    assert!(loaded.is_empty(), "{loaded:?}");
    let quarantined = db
        .rows("SELECT kind, source_id, reason FROM quarantine ORDER BY kind, reason")
        .await;
    let not_an_id = "is not a Clever id (24 hex digits): not loaded";
    assert_eq!(
        quarantined,
        [
            format!("section|NULL|its id \"not-an-id\" {not_an_id}"),
            format!(
                "section.students|{section}|section {section} names student \"../s\" whose id is not a Clever id (24 hex digits)"
            ),
            format!("user|NULL|its id \"../../etc/passwd\" {not_an_id}"),
            format!("user|NULL|its id \"x|y\" {not_an_id}"),
        ]
    );
    let (code, report, stderr) = rosterflow(&["report", &file, "--format", "json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report.matches(not_an_id).count(), 3, "{report}");

    let resync = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("resync");
    assert_eq!(resync.exit_code(), 1);
    assert!(resync.plan.is_empty(), "{}", resync.plan);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_whose_ids_are_not_clever_ids_are_quarantined_never_loaded_on_sqlite() {
    records_whose_ids_are_not_clever_ids_are_quarantined_never_loaded(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_whose_ids_are_not_clever_ids_are_quarantined_never_loaded_on_postgres() {
    records_whose_ids_are_not_clever_ids_are_quarantined_never_loaded(Backend::Postgres).await
}

/// A pipeline whose every secret carries the canary (`crate::util::CANARY`): the Clever token
/// and the SMTP password through `${VAR}`, on PostgreSQL the database URL's password too, and
/// serve's admin token. No output shows one, whatever the binary does: validate, a run (with
/// its logs at `-vv`, as text and JSON), a dry run, status, history, report (each format),
/// explain, email send (whose server cannot be reached), a run whose token Clever refuses, a
/// file whose secret lands where it does not fit; nor serve's log, `/metrics`, `/readyz` or
/// console pages. `util::rosterflow` and the database scan of `TestDb` look for it. With
/// `password_in_query`, the PostgreSQL password is given as sqlx also takes it:
/// `postgres://user@host/db?password=...`.
async fn no_output_shows_a_secret(backend: Backend, password_in_query: bool) {
    use crate::util::CANARY;

    let db = TestDb::new(backend).await;
    let database = if password_in_query {
        db.url_with_password_in_query()
    } else {
        db.url.clone()
    };
    let token = format!("tok-{CANARY}");
    let dataset = generate(GenSpec::new(40).with_seed(11));
    let district = dataset.ids(Collection::Districts)[0].clone();
    let student = dataset.ids_with_role(Role::Student)[0].clone();
    let sim = CleverSim::start(dataset, SimOptions::with_token(&token)).await;
    let dir = db.dir.path();
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("the pipeline directory");
    let source = format!(
        "type = \"clever\"\nbase_url = \"{}\"\ntoken = \"${{CLEVER_TOKEN}}\"\ntimeout_secs = 2\n\
         max_attempts = 2\nbackoff_base_ms = 10",
        sim.base_url()
    );
    let email = "[email]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nusername = \"u\"\n\
                 password = \"${SMTP_PASSWORD}\"\nfrom = \"no-reply@example.org\"\n\
                 app_url = \"https://app.example.org\"\ntimeout_secs = 2\n\n\
                 [schedule]\ncron = \"0 0 1 1 *\"\n";
    let text = pipeline_text("canary", &source, &database, email).replacen(
        "[pipeline]\n",
        &format!("[pipeline]\ndistrict_id = \"{district}\"\n"),
        1,
    );
    let path = pipelines.join("canary.toml");
    std::fs::write(&path, &text).expect("write the pipeline");
    let file = path.to_str().expect("UTF-8");
    let smtp_password = format!("pw-{CANARY}");
    let admin_token = format!("admin-token-{CANARY}");
    let env = [
        ("CLEVER_TOKEN", token.as_str()),
        ("SMTP_PASSWORD", smtp_password.as_str()),
    ];
    // Each output is searched by `rosterflow`; the exit codes say each command did its work.
    let code = |args: &[&str]| rosterflow(args, &env).0;
    assert_eq!(code(&["validate", file]), 0);
    assert_eq!(code(&["-vv", "run", file, "--dry-run"]), 0);
    assert_eq!(code(&["-vv", "--log-format", "json", "run", file]), 0);
    assert_eq!(code(&["-vv", "run", file]), 0);
    code(&["status", file]);
    assert_eq!(code(&["history", file]), 0);
    for format in ["json", "csv"] {
        assert_eq!(code(&["report", file, "--format", format]), 0, "{format}");
    }
    assert_eq!(code(&["explain", file, "student", &student]), 0);
    assert_ne!(code(&["-vv", "email", "send", file]), 0, "no SMTP server");

    // Clever refuses another token: said without it.
    let wrong = format!("wrong-{CANARY}");
    let (refused, _, stderr) = rosterflow(
        &["-vv", "run", file],
        &[("CLEVER_TOKEN", &wrong), ("SMTP_PASSWORD", &smtp_password)],
    );
    assert_eq!(refused, 78, "{stderr}");
    assert!(stderr.contains("refused the token"), "{stderr}");

    // A secret where it does not fit: the problem names the variable, not its value.
    let misplaced = dir.join("misplaced.toml");
    std::fs::write(
        &misplaced,
        text.replace(
            "timeout_secs = 2\nmax_attempts",
            "limit = \"${CLEVER_TOKEN}\"\nmax_attempts",
        ),
    )
    .expect("write");
    let (invalid, _, stderr) = rosterflow(&["validate", misplaced.to_str().expect("UTF-8")], &env);
    assert_eq!(invalid, 78, "{stderr}");
    assert!(stderr.contains("${CLEVER_TOKEN}"), "{stderr}");

    // serve: its pages and its log.
    let mut service = crate::serve::Service::start_at(
        crate::serve::free_port(),
        dir,
        &database,
        "canary",
        &[],
        &[
            ("CLEVER_TOKEN", token.as_str()),
            ("SMTP_PASSWORD", smtp_password.as_str()),
            ("ROSTERFLOW_ADMIN_TOKEN", admin_token.as_str()),
        ],
    );
    let mut pages = Vec::new();
    for page in ["/metrics", "/readyz", "/healthz", "/login"] {
        pages.push(service.get(page).1);
    }
    let (status, headers, _) = service.request(
        "POST",
        "/login",
        None,
        Some(&format!("user=ops&token={admin_token}")),
    );
    assert!(
        status == 303 || status == 302,
        "signed in: {status} {headers}"
    );
    let cookie = headers
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie").then(|| {
                value
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .expect("a session cookie");
    for page in ["/", "/pipelines/canary", "/runs/1", "/sessions"] {
        pages.push(service.request("GET", page, Some(&cookie), None).2);
    }
    service.stop();
    pages.push(service.log());
    for page in &pages {
        crate::util::assert_no_canary(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_shows_a_secret_on_sqlite() {
    no_output_shows_a_secret(Backend::Sqlite, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_shows_a_secret_on_postgres() {
    no_output_shows_a_secret(Backend::Postgres, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_shows_a_secret_given_in_the_database_urls_query() {
    no_output_shows_a_secret(Backend::Postgres, true).await
}
