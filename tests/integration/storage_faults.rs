//! The Freckle DB's storage failing under a run, through the binary: each run leaves the
//! database as it was before it (or after it), says why, and exits with the right code; under
//! `serve` a run is tried again once the database is back. Faults land at a chosen point of the
//! write: a proxy in front of PostgreSQL acts when the run sends its first `COPY` into
//! `class_students` (in the middle of the run's one transaction, every table before it
//! written), and SQLite meets a file-size limit when it commits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rosterflow_tests::district::{Collection, GenSpec, demo_dir, generate};
use rosterflow_tests::pg_server::{self, PgServer};
use rosterflow_tests::tcp_proxy::{Fault, Message, TcpProxy};

use crate::serve::{Service, free_port};
use crate::util::{
    Backend, TestDb, eventually, pipeline_text, replay_source, rosterflow, rosterflow_bin,
};

/// A SQLite Freckle DB opened read-only (`?mode=ro`) is never written: a run fails, says why,
/// and leaves the database as it was.
#[test]
fn a_database_opened_read_only_is_never_written() {
    let work = tempfile::tempdir().expect("a directory");
    let file = work.path().join("freckle.db");
    let write = |name: &str, database: &str| {
        let path = work.path().join(format!("{name}.toml"));
        let text = pipeline_text(name, &replay_source(&demo_dir()), database, "").replacen(
            "[pipeline]\n",
            "[pipeline]\ndistrict_id = \"5a0c91b95c7cc000010d417c\"\n",
            1,
        );
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let writable = write("writable", &format!("sqlite://{}", file.display()));
    let read_only = write("read_only", &format!("sqlite://{}?mode=ro", file.display()));
    let (code, out, err) = rosterflow(&["run", &writable], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let before = std::fs::read(&file).expect("the database");
    let (code, out, err) = rosterflow(&["run", &read_only], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("readonly database"), "{err}");
    assert_eq!(
        std::fs::read(&file).expect("the database"),
        before,
        "unchanged"
    );
}

/// A database that cannot be reached: the run says so at once ("connection refused", not a pool
/// timeout), without the URL's password, and exits 2.
#[test]
fn an_unreachable_database_is_said_at_once() {
    let work = tempfile::tempdir().expect("a directory");
    let path = work.path().join("unreachable.toml");
    let text = pipeline_text(
        "unreachable",
        &replay_source(&demo_dir()),
        "postgres://u:secretpw@127.0.0.1:1/x",
        "",
    );
    std::fs::write(&path, text).expect("write");
    let started = std::time::Instant::now();
    let (code, out, err) = rosterflow(&["run", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!format!("{out}{err}").contains("secretpw"), "{out}{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// The run's write half done: its `COPY` into `class_students`, after every table it loads
/// before memberships.
fn memberships_copy(message: &Message<'_>) -> bool {
    message
        .sql()
        .is_some_and(|sql| sql.starts_with("COPY class_students "))
}

/// `url` with a password no output may show, the password, and the URL as rosterflow may show
/// it: the server's own password if the URL has one (`tests/pg.sh` gives its role one), else
/// one that a server trusting its clients ignores.
fn secret_url(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, host) = rest.split_once('@').expect("a user");
    let (user, password) = user.split_once(':').unwrap_or((user, "secretpw"));
    (
        format!("{scheme}://{user}:{password}@{host}"),
        password.to_owned(),
        format!("{scheme}://***@{host}"),
    )
}

/// A generated district large enough that its first load on PostgreSQL bulk-loads (indexes and
/// foreign keys dropped and rebuilt inside the run's transaction), recorded under `dir`: the
/// recording and the district's id.
fn large_district(dir: &Path) -> (PathBuf, String) {
    let dataset = generate(GenSpec::new(1500).with_seed(21));
    let recording = dir.join("recording");
    dataset
        .write_recording(&recording, 1000)
        .expect("write the recording");
    let district = dataset.ids(Collection::Districts)[0].clone();
    (recording, district)
}

/// Writes pipeline `name` into `dir`: `district` from `recording` into `database`.
fn write_pipeline(
    dir: &Path,
    name: &str,
    recording: &Path,
    district: &str,
    database: &str,
) -> String {
    let path = dir.join(format!("{name}.toml"));
    let text = pipeline_text(name, &replay_source(recording), database, "").replacen(
        "[pipeline]\n",
        &format!("[pipeline]\ndistrict_id = \"{district}\"\n"),
        1,
    );
    std::fs::write(&path, text).expect("write the pipeline");
    path.display().to_string()
}

/// What a run printed before its last line (`run N committed`, `dry run: ...`): its plan.
fn plan_of(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    lines[..lines.len().saturating_sub(1)].join("\n")
}

/// Runs `rosterflow run FILE` as a child process, its output piped.
fn start_run(file: &str, scratch: &Path) -> std::process::Child {
    Command::new(rosterflow_bin())
        .current_dir(scratch)
        .args(["run", file])
        // With the store's detail: whether the load is a bulk one.
        .env("ROSTERFLOW_LOG", "warn,rosterflow_store=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rosterflow run")
}

/// A first load on PostgreSQL (through `proxy` to the database at `direct`) that `fault` stops
/// in the middle of its write, `meanwhile` run while the proxy holds or has cut it: the run
/// exits 2 with an error that names the database (its password hidden) and says what happened,
/// the database is exactly as before the run (its one transaction rolled back, bulk-load DDL
/// included), and once `recover` has brought the database back, the next run applies the whole
/// plan.
fn first_load_interrupted(
    direct: &str,
    proxy: &TcpProxy,
    fault: Fault,
    meanwhile: impl FnOnce(),
    recover: impl FnOnce(),
) {
    let work = tempfile::tempdir().expect("a directory");
    let (recording, district) = large_district(work.path());
    let (proxied, password, shown) = secret_url(&proxy.url(direct));
    let file = write_pipeline(work.path(), "faults", &recording, &district, &proxied);
    // The whole change, planned without writing (which also creates the schema): the database
    // before the run is a migrated, empty one.
    let (code, planned, err) = rosterflow(&["run", "--dry-run", &file], &[]);
    assert_eq!(code, 0, "{planned}{err}");
    let before = pg_server::dump(direct);

    proxy.on(fault, memberships_copy);
    let child = start_run(&file, work.path());
    let fired = proxy.wait_fired(Duration::from_secs(120));
    eprintln!("the proxy acted on {fired}");
    meanwhile();
    let output = child.wait_with_output().expect("the run");
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains(&format!(
            "the connection to the PostgreSQL database {shown} failed while writing starts of \
             class_students"
        )),
        "the error names the database and the step:\n{err}"
    );
    assert!(!format!("{out}{err}").contains(&password), "{out}{err}");
    assert!(
        err.lines()
            .any(|line| line.contains("bulk load") && line.contains("class_students")),
        "class_students was bulk-loaded: its indexes and keys were dropped in the transaction:\n{err}"
    );

    recover();
    assert_eq!(
        pg_server::dump(direct),
        before,
        "the database is as it was before the run"
    );
    let (code, out, err) = rosterflow(&["run", &file], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(plan_of(&out), plan_of(&planned), "the whole change, again");
    assert!(out.trim_end().ends_with("committed"), "{out}");
}

/// PostgreSQL stopped by its administrator (`pg_ctl stop -m fast`) while a first load writes:
/// the server ends the run's session and rolls its transaction back; the run fails, and after
/// the server is started again the next run loads the district whole.
#[test]
fn postgresql_stopped_in_the_middle_of_a_write() {
    let server = PgServer::start(&[54334, 54336, 54337, 54338, 54339]);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::postgres::PgConnection::connect(&server.url("postgres"))
            .await
            .expect("the server");
        // A server that a killed test left behind is taken over, its database made anew.
        for sql in [
            "DROP DATABASE IF EXISTS stopped WITH (FORCE)",
            "CREATE DATABASE stopped",
        ] {
            sqlx::query(sql).execute(&mut admin).await.expect(sql);
        }
    });
    let proxy = TcpProxy::start(server.address());
    first_load_interrupted(
        &server.url("stopped"),
        &proxy,
        // The run's messages wait at the proxy while the server stops under it; then they go
        // on, to a server that is gone.
        Fault::Hold,
        || {
            server.stop();
            proxy.release();
        },
        || server.start_again(),
    );
}

/// The connection cut in the middle of a first load's write, and the database unreachable
/// until it is back: the run fails, leaving the database as it was, and the next run loads it.
#[test]
fn a_connection_cut_in_the_middle_of_a_write() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let db = runtime.block_on(TestDb::new(Backend::Postgres));
    let proxy = TcpProxy::start(db.address());
    first_load_interrupted(&db.url, &proxy, Fault::Cut, || {}, || proxy.accept());
}

/// SQLite out of space during a first load: the process may not write files larger than 1 MiB
/// (`ulimit -f`, with SIGXFSZ ignored so that the write fails instead of killing it), less than
/// the load needs. The run fails saying the database is full, the database is as it was before
/// (its WAL consistent), and without the limit the next run loads the whole district.
#[test]
fn sqlite_full_during_a_first_load() {
    let work = tempfile::tempdir().expect("a directory");
    let file = work.path().join("freckle.db");
    let pipeline = write_pipeline(
        work.path(),
        "full",
        &demo_dir(),
        "5a0c91b95c7cc000010d417c",
        &format!("sqlite://{}", file.display()),
    );
    let (code, planned, err) = rosterflow(&["run", "--dry-run", &pipeline], &[]);
    assert_eq!(code, 0, "{planned}{err}");
    let before = sqlite_dump(&file);
    let limit_kib = 1024;
    assert!(std::fs::metadata(&file).expect("the database").len() < limit_kib * 1024 / 2);

    // bash counts `ulimit -f` in KiB.
    let output = Command::new("bash")
        .args([
            "-c",
            &format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" \"$@\""),
        ])
        .arg(rosterflow_bin())
        .args(["run", &pipeline])
        .current_dir(work.path())
        .env("ROSTERFLOW_LOG", "warn")
        .output()
        .expect("run rosterflow under a file-size limit");
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains(&format!("SQLite database {}", file.display())),
        "the error names the database:\n{err}"
    );
    assert!(
        err.contains("disk is full") && err.contains("size limit"),
        "the error says the disk or a limit is full:\n{err}"
    );

    // As it was, but for the failed run's record, which fits in the file (a run's
    // record of its failure is written after its transaction rolled back).
    let (failures, after): (Vec<_>, Vec<_>) = sqlite_dump(&file)
        .lines()
        .map(str::to_owned)
        .partition(|line| {
            line.starts_with("INSERT INTO \"sync_runs\" VALUES(1,NULL,'full','failed'")
        });
    assert_eq!(
        after.join("\n"),
        before.trim_end(),
        "the database is as it was"
    );
    assert!(
        failures.len() == 1
            && failures[0].contains("could not be written while committing the run"),
        "{failures:?}"
    );
    let (code, out, err) = rosterflow(&["run", &pipeline], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(plan_of(&out), plan_of(&planned), "the whole change");
    assert_eq!(out.lines().last(), Some("run 2 committed"), "{out}");
}

/// A SQLite database's schema and rows (Python's `iterdump`, SQLite's own reading of the file
/// and its WAL), after an integrity check that must pass.
fn sqlite_dump(file: &Path) -> String {
    let script = "import sqlite3, sys\n\
        db = sqlite3.connect(sys.argv[1])\n\
        check = db.execute('PRAGMA integrity_check').fetchone()[0]\n\
        assert check == 'ok', check\n\
        print('\\n'.join(db.iterdump()))\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// `rosterflow serve` on PostgreSQL whose database goes away in the middle of a run's write (a
/// run queued from the console) and stays away for longer than the job queue waits for it: the run fails and is to be
/// tried again, the service stays up and says why its worker stopped, and once the database is
/// back the worker starts again and the run commits, all without restarting the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_again_once_the_database_is_back() {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = TcpProxy::start(db.address());
    let (proxied, password, shown) = secret_url(&proxy.url(&db.url));
    let work = tempfile::tempdir().expect("a directory");
    let pipelines = work.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("the pipeline directory");
    write_pipeline(
        &pipelines,
        "queued",
        &demo_dir(),
        "5a0c91b95c7cc000010d417c",
        &proxied,
    );
    let token = "storage-faults-admin-token";
    let service = Service::start_at(
        free_port(),
        work.path(),
        &proxied,
        "faults",
        &["--retries", "4", "--retry-backoff-secs", "1"],
        &[("ROSTERFLOW_ADMIN_TOKEN", token)],
    );

    proxy.on(Fault::Cut, memberships_copy);
    // The run is queued from the console ("run now"), once the service serves the pipeline.
    let cookie = service.sign_in("ops", token);
    let (status, _, page) = service.request("GET", "/pipelines/queued", Some(&cookie), None);
    assert_eq!(status, 200, "{page}");
    let (status, _, _) = service.request(
        "POST",
        "/pipelines/queued/run",
        Some(&cookie),
        Some(&format!("csrf={}", crate::doctor::csrf_of(&page))),
    );
    assert_eq!(status, 303, "the run is queued: {}", service.log());

    let log = || service.log();
    let fired = tokio::task::block_in_place(|| proxy.wait_fired(Duration::from_secs(60)));
    eprintln!("the proxy cut the connections on {fired}");
    let says = |text: &'static str| {
        let service = &service;
        move || {
            let log = service.log();
            async move { log.contains(text) }
        }
    };
    eventually(
        "the run failed, to be tried again",
        Duration::from_secs(30),
        log,
        says("run failed; it will be tried again"),
    )
    .await;
    assert!(
        log()
            .lines()
            .any(|line| line.contains("run failed; it will be tried again")
                && line.contains(&format!(
                    "the connection to the PostgreSQL database {shown} failed"
                ))),
        "the failure names the database:\n{}",
        log()
    );
    // The database stays away: the job queue's heartbeats fail, and the worker stops.
    eventually(
        "the service said its worker lost the database",
        Duration::from_secs(60),
        log,
        says("the job queue's database cannot be reached"),
    )
    .await;
    assert_eq!(service.get("/healthz").0, 200, "{}", log());
    assert!(db.fingerprint().await.is_empty(), "nothing was loaded");

    proxy.accept();
    eventually(
        "the run committed once the database was back",
        Duration::from_secs(90),
        log,
        || async {
            db.scalar(
                "SELECT COUNT(*) FROM sync_runs WHERE pipeline = 'queued' \
                 AND status = 'committed' AND requested_by = 'console:ops'",
            )
            .await
                == 1
        },
    )
    .await;
    assert_eq!(service.get("/readyz").0, 200, "{}", log());
    assert_eq!(db.scalar("SELECT COUNT(*) FROM students").await, 1004);
    let mut service = service;
    assert_eq!(service.stop(), 0, "{}", service.log());
    let log = service.log();
    assert!(log.contains("worker back"), "{log}");
    assert!(!log.contains(&password), "{log}");
}
