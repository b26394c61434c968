//! What a district admin runs by hand, through the binary: commands that only read or write
//! the Freckle DB work without the source's secrets in the environment; `explain` names the
//! class of every membership change; `status` and `report` show a held run for review; a second
//! run of a district while one is in progress exits 75 and changes nothing.

use std::process::{Command, Stdio};
use std::time::Duration;

use rosterflow_pipeline::sync::{RunOptions, RunStatus};
use rosterflow_store::{LockOptions, Store};
use rosterflow_tests::district::{Collection, Dataset, Role};

use crate::on_both_backends;
use crate::util::{Backend, ChildLog, TestDb, demo_records, rosterflow, rosterflow_bin};

const DISTRICT: &str = "5a0c91b95c7cc000010d417c";

/// The demo loaded into `db`, and a pipeline file for it whose token comes from
/// `CLEVER_TOKEN`, which the tests never set.
async fn demo_with_a_token_variable(db: &TestDb) -> String {
    crate::util::run(&db.demo_pipeline(), &RunOptions::default())
        .await
        .expect("load the demo");
    let path = db.dir.path().join("clever.toml");
    let text = format!(
        "[pipeline]\nname = \"demo\"\ndistrict_id = \"{DISTRICT}\"\n\n\
         [source]\ntype = \"clever\"\ntoken = \"${{CLEVER_TOKEN}}\"\n\n\
         [load]\ndatabase = \"{}\"\n\n\
         [export]\ndir = \"{}\"\n\n\
         [email]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nfrom = \"no-reply@freckle.example\"\n\
         app_url = \"https://app.freckle.example\"\n",
        db.url,
        db.dir.path().join("exports").display()
    );
    std::fs::write(&path, text).expect("write the pipeline");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Every command that does not pull runs without `CLEVER_TOKEN`; `run` still asks for it.
async fn admin_commands_need_no_source_secrets(backend: Backend) {
    let db = TestDb::new(backend).await;
    let file = demo_with_a_token_variable(&db).await;
    let student = demo_records("users")
        .into_iter()
        .find(|u| u["roles"].get("student").is_some())
        .expect("a student")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let class = demo_records("sections")[0]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let teacher = demo_records("users")
        .into_iter()
        .find(|u| u["roles"].get("teacher").is_some())
        .expect("a teacher")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let commands: Vec<(Vec<&str>, i32)> = vec![
        (vec!["history", &file], 0),
        (vec!["report", &file], 0),
        (vec!["explain", &file, "student", &student], 0),
        (vec!["status", &file], 0),
        (vec!["export", &file], 0),
        (vec!["share", &file, &student, "--with", &teacher], 0),
        (vec!["email", "resend", &file, &teacher], 0),
        // These fail, for their own reasons only.
        (vec!["approve", &file, "999"], 2),
        (vec!["discard", &file, "999"], 2),
        (
            vec![
                "roster",
                &file,
                "add",
                "--class",
                &class,
                "--student",
                &student,
            ],
            2,
        ),
    ];
    for (args, expected) in commands {
        let (code, stdout, stderr) = rosterflow(&args, &[]);
        assert_eq!(code, expected, "{args:?}\n{stdout}\n{stderr}");
        assert!(!stderr.contains("CLEVER_TOKEN"), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = rosterflow(&["run", &file], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("environment variable CLEVER_TOKEN is not set"),
        "{stderr}"
    );
    // A variable the command does use must still be set.
    let broken = std::fs::read_to_string(&file)
        .expect("read")
        .replace(&db.url, "${FRECKLE_DB_URL}");
    std::fs::write(&file, broken).expect("write");
    let (code, _, stderr) = rosterflow(&["history", &file], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("FRECKLE_DB_URL is not set"), "{stderr}");
    assert!(!stderr.contains("CLEVER_TOKEN"), "{stderr}");
}

/// `explain` names the class (name and id) of each membership change, and a teacher's role.
async fn explain_names_the_class_of_each_membership_change(backend: Backend) {
    let db = TestDb::new(backend).await;
    let file = demo_with_a_token_variable(&db).await;
    let section = &demo_records("sections")[0];
    let (id, name) = (
        section["id"].as_str().expect("id"),
        section["name"].as_str().expect("name"),
    );
    let student = section["students"][0].as_str().expect("a student");
    let (code, stdout, stderr) = rosterflow(&["explain", &file, "student", student], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "run 1: start class {name:?} ({id}): in the section in source"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(&format!("start {student}")), "{stdout}");
    let (code, stdout, stderr) = rosterflow(&["report", &file, "1"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["source_kind"], "full");
    assert_eq!(
        report["not_loaded"],
        serde_json::json!({"contacts": 1002, "staff": 0, "other_district": 0, "disabled": 0}),
        "what the source sent and the roster does not load is counted"
    );
    let teacher = section["teacher"].as_str().expect("a teacher");
    let (_, stdout, _) = rosterflow(&["explain", &file, "teacher", teacher], &[]);
    assert!(
        stdout.contains(&format!("start class {name:?} ({id}) as primary")),
        "{stdout}"
    );
}

/// A held run's report lists what its plan would change, `explain` what it would change about
/// one student, and `status` shows it waiting.
async fn a_held_run_can_be_reviewed_before_approval(backend: Backend) {
    let (_db, sim, demo) = crate::trust::demo_through_the_api(backend).await;
    let students = sim.read(|d| d.ids_with_role(Role::Student));
    sim.update(|d| {
        for student in students.iter().step_by(2) {
            d.remove_user(student);
        }
    });
    let report = crate::util::run(&demo, &RunOptions::default())
        .await
        .expect("run");
    let RunStatus::Held { run_id, .. } = report.status else {
        panic!("expected a hold, got {:?}", report.status);
    };
    let file = demo.path.to_str().expect("a UTF-8 path");
    let (code, stdout, stderr) = rosterflow(
        &["report", file, &run_id.to_string(), "--format", "csv"],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let archives = stdout
        .lines()
        .filter(|l| l.starts_with("change,student,") && l.contains(",archive,"))
        .count();
    assert_eq!(archives, 502, "{stdout}");
    assert_eq!(
        stdout.lines().count() - 1,
        report.plan.change_count(),
        "one row per planned change"
    );
    let (code, stdout, stderr) = rosterflow(&["explain", file, "student", &students[0]], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "held run {run_id}, if approved, would:\n  archive student: absent from source"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("  end class_student in class "), "{stdout}");
    let (code, stdout, _) = rosterflow(&["status", file], &[]);
    assert_eq!(code, 1, "something waits for an admin: {stdout}");
    assert!(
        stdout.contains(&format!(
            "held, waiting for approve or discard: run {run_id:>5}"
        )),
        "{stdout}"
    );
}

/// While a run holds the district's lock, another exits 75 at once, or waits for it with
/// `--wait-secs`; a dry run waits its turn too.
async fn a_second_run_of_a_district_waits_or_exits(backend: Backend) {
    let db = TestDb::new(backend).await;
    let file = db.demo_pipeline().path.to_str().expect("path").to_owned();
    let handle = db.open().await;
    let lock = Store::lock(&handle, DISTRICT, LockOptions::default())
        .await
        .expect("lock the district");
    let (code, stdout, stderr) = rosterflow(&["run", &file], &[]);
    assert_eq!(code, 75, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "another run of district {DISTRICT} is in progress"
        )),
        "{stderr}"
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM students").await, 0);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM sync_runs").await, 0);
    // The holder finishes within the wait: the waiting run goes ahead.
    let mut waiting = Command::new(rosterflow_bin())
        .args(["run", &file, "--wait-secs", "30"])
        .current_dir(db.dir.path())
        .env("ROSTERFLOW_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rosterflow");
    let mut log = ChildLog::of(&mut waiting);
    let line = tokio::task::block_in_place(|| {
        log.wait_for(
            "another run of the district holds its lock: waiting",
            Duration::from_secs(60),
        )
    });
    assert!(
        line.contains(DISTRICT) && line.contains("wait_secs=30"),
        "{line}"
    );
    drop(lock);
    let output = tokio::task::block_in_place(|| waiting.wait_with_output()).expect("the run");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), log.finish());
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM students").await, 1004);
}

/// Logs for machines and people: JSON lines with `--log-format json`, and no colour codes when
/// stderr is not a terminal; by default a run's output is its plan and outcome alone, `-v` adds
/// its progress and `-vv` each step's detail.
#[test]
fn logs_are_json_on_request_and_never_coloured_off_a_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("freckle.db").display());
    let demo = crate::util::repo().join("pipelines/demo.toml");
    let demo = demo.to_str().expect("a UTF-8 path");
    let env = [("FRECKLE_DB", db.as_str())];
    let run = |args: &[&str]| {
        let output = std::process::Command::new(crate::util::rosterflow_bin())
            .args(args)
            .envs(env)
            .env_remove("ROSTERFLOW_LOG")
            .current_dir(dir.path())
            .output()
            .expect("run rosterflow");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (stdout, stderr) = run(&["run", demo]);
    assert!(stdout.contains("run 1 committed"), "{stdout}");
    assert!(stderr.is_empty(), "quiet by default: {stderr}");
    let (_, stderr) = run(&["-v", "--log-format", "json", "run", demo]);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "run committed" && l["level"] == "INFO"),
        "{stderr}"
    );
    let (_, progress) = run(&["-v", "run", demo]);
    assert!(progress.contains("run committed"), "{progress}");
    assert!(!progress.contains('\x1b'), "no colour codes: {progress:?}");
    assert!(!progress.contains("DEBUG"), "{progress}");
    // -vv adds each step's detail: what it read, how long it took, what it planned.
    let (_, detail) = run(&["-vv", "run", demo]);
    for step in [
        "source pulled",
        "district state read",
        "planning took",
        "plan written",
    ] {
        assert!(detail.contains(step), "-vv names {step:?}: {detail}");
    }
    assert!(
        detail.lines().count() > progress.lines().count(),
        "{detail}"
    );
}

/// `report` without a run shows the latest run that changed something, not the quiet resync
/// after it, and as a table on request; `status` takes the directory of pipeline files.
async fn report_and_status_answer_an_admins_first_questions(backend: Backend) {
    let db = TestDb::new(backend).await;
    // The demo district, then the same without one student, each as a recording.
    let mut district = Dataset::demo();
    let recorded = |district: &Dataset| {
        let dir = tempfile::tempdir().expect("temp dir");
        district
            .write_recording(dir.path(), 100)
            .expect("write the recording");
        let source = crate::util::replay_source(dir.path());
        let pipeline = crate::util::pipeline(dir.path(), "demo", &source, &db.url, "");
        (dir, pipeline)
    };
    let (whole, pipeline) = recorded(&district);
    let file = pipeline.path.to_str().expect("a UTF-8 path").to_owned();
    for _ in 0..2 {
        crate::util::run(&pipeline, &RunOptions::default())
            .await
            .expect("load, then resync");
    }
    let (code, stdout, stderr) = rosterflow(&["report", &file], &[]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON off a terminal");
    assert_eq!(report["run"], 1, "the load, not the empty resync: {stdout}");
    assert!(stderr.contains("run 2, the latest"), "{stderr}");

    let (code, table, stderr) = rosterflow(&["report", &file, "--format", "table"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(table.starts_with("run 1 of demo: committed"), "{table}");
    let counted = table
        .lines()
        .find(|line| line.trim_start().starts_with("change student.create"));
    assert!(
        counted.is_some_and(|line| line.ends_with(" 1004")),
        "{table}"
    );

    // A student who leaves: change rows, in aligned columns.
    let student = district.ids_with_role(Role::Student)[0].clone();
    let user = district
        .get(Collection::Users, &student)
        .expect("the student");
    let name = format!(
        "{} {}",
        user["name"]["first"].as_str().expect("a first name"),
        user["name"]["last"].as_str().expect("a last name")
    );
    assert!(district.remove_user(&student));
    let (_left, pipeline) = recorded(&district);
    let outcome = crate::util::run(&pipeline, &RunOptions::default())
        .await
        .expect("a run without the student");
    assert!(
        matches!(outcome.status, RunStatus::Committed { run_id: 3 }),
        "{:?}",
        outcome.status
    );
    let (code, table, stderr) = rosterflow(&["report", &file, "--format", "table"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    let header = lines
        .iter()
        .position(|line| line.starts_with("kind"))
        .unwrap_or_else(|| panic!("a header line: {table}"));
    let archive = lines[header + 1..]
        .iter()
        .find(|line| line.contains(&student) && line.contains("archive"))
        .unwrap_or_else(|| panic!("the student's archive: {table}"));
    assert!(archive.starts_with("change"), "{table}");
    assert!(
        archive.contains(&format!("{name} ({student})")),
        "the student by name, the id beside it: {table}"
    );
    let column = |line: &str, text: &str| line.find(text).map(|at| line[..at].chars().count());
    assert_eq!(
        column(lines[header], "action"),
        column(archive, "archive"),
        "columns line up: {table}"
    );

    let (code, stdout, stderr) =
        rosterflow(&["status", whole.path().to_str().expect("UTF-8")], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("demo: last run     3  committed"),
        "{stdout}"
    );
    let empty = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = rosterflow(&["status", empty.path().to_str().expect("UTF-8")], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("has no *.toml pipeline file"), "{stderr}");
}

/// `explain` of a student the source sent unreadable says it was quarantined, by which run and
/// why, rather than that it was never in a source.
async fn explain_says_a_record_was_quarantined(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut district = Dataset::demo();
    let id = district.new_id();
    district.insert_raw(
        Collection::Users,
        &id,
        &format!(
            r#"{{"id": "{id}", "district": "{DISTRICT}", "roles": {{"student": "not an object"}}}}"#
        ),
    );
    let recording = tempfile::tempdir().expect("temp dir");
    district
        .write_recording(recording.path(), 100)
        .expect("write the recording");
    let source = crate::util::replay_source(recording.path());
    let pipeline = crate::util::pipeline(recording.path(), "demo", &source, &db.url, "");
    let outcome = crate::util::run(&pipeline, &RunOptions::default())
        .await
        .expect("a run");
    assert_eq!(outcome.exit_code(), 1, "a record quarantined");
    let file = pipeline.path.to_str().expect("a UTF-8 path");
    let (code, stdout, stderr) = rosterflow(&["explain", file, "student", &id], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "student {id}: quarantined by run 1: unreadable record"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("quarantined by run 1 (user): unreadable record"),
        "{stdout}"
    );

    // A loaded student is named, with the id beside the name, and so are their classes.
    let student = district
        .all(Collection::Users)
        .into_iter()
        .find(|u| u["roles"]["student"]["sis_id"] == "100095233")
        .expect("the demo's student 100095233");
    let (code, stdout, stderr) = rosterflow(&["explain", file, "student", "100095233"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let named = format!(
        "student \"{} {}\" {} (SIS id 100095233): active",
        student["name"]["first"].as_str().expect("a first name"),
        student["name"]["last"].as_str().expect("a last name"),
        student["id"].as_str().expect("an id"),
    );
    assert!(stdout.starts_with(&named), "{stdout}");
    assert!(stdout.contains("student of class \""), "{stdout}");
}

/// A service with no pipeline it can serve names each file and what is wrong with it, such
/// as the variable that is not set, rather than only asking for a database.
#[test]
fn serve_names_the_file_and_the_unset_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("district.toml"),
        "[pipeline]\nname = \"d\"\n[source]\ntype = \"clever\"\ntoken = \"${CLEVER_TOKEN}\"\n\
         [load]\ndatabase = \"sqlite://f.db\"\n",
    )
    .expect("write");
    let dir = dir.path().to_str().expect("a UTF-8 path");
    let (code, _, stderr) = rosterflow(
        &["serve", "--pipelines", dir, "--listen", "127.0.0.1:0"],
        &[],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("district.toml:5:10: environment variable CLEVER_TOKEN is not set"),
        "{stderr}"
    );
}

/// The store applies a plan only to the state it was computed from: a run committed since, or
/// a row another writer changed behind the lock's back, stops it with nothing applied.
async fn a_plan_is_applied_only_to_the_state_it_was_computed_from(backend: Backend) {
    use rosterflow_plan::Plan;
    use rosterflow_store::StoreError;

    let db = TestDb::new(backend).await;
    crate::util::run(&db.demo_pipeline(), &RunOptions::default())
        .await
        .expect("load the demo");
    let handle = db.open().await;
    let mut snapshot =
        rosterflow_extract::replay::read_snapshot(&crate::util::repo().join("pipelines/demo"))
            .expect("the demo recording");
    let gone = snapshot.students.remove(0).id.to_string();
    let mut store = Store::lock(&handle, DISTRICT, LockOptions::default())
        .await
        .expect("lock");
    let state = store.read_state().await.expect("state");
    let plan = Plan::compute(&snapshot, &state);
    assert_eq!(plan.counts().get("student.archive"), Some(&1));
    let run = || crate::util::full_run("demo");

    // Another writer archives the student first: the plan's archive finds nothing to archive.
    db.scalar(&format!(
        "UPDATE students SET archived_at = 'elsewhere' WHERE source_id = '{gone}' RETURNING 1"
    ))
    .await;
    let before = db.fingerprint().await;
    let error = store.apply(&plan, run()).await.expect_err("changed");
    assert!(
        matches!(
            error,
            StoreError::Changed {
                expected: 1,
                found: 0,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(db.fingerprint().await, before, "nothing applied");

    // A run committed since the state was read: the plan is stale.
    db.scalar(
        "INSERT INTO sync_runs (district_id, pipeline, status, started_at) \
         SELECT id, 'other', 'committed', 'now' FROM districts RETURNING 1",
    )
    .await;
    let error = store.apply(&plan, run()).await.expect_err("stale");
    assert!(matches!(error, StoreError::Stale { .. }), "{error}");
    assert_eq!(db.fingerprint().await, before, "nothing applied");
}

on_both_backends!(
    admin_commands_need_no_source_secrets,
    explain_names_the_class_of_each_membership_change,
    a_held_run_can_be_reviewed_before_approval,
    a_second_run_of_a_district_waits_or_exits,
    a_plan_is_applied_only_to_the_state_it_was_computed_from,
    report_and_status_answer_an_admins_first_questions,
    explain_says_a_record_was_quarantined,
);
