//! How fast `rosterflow run` syncs a large district, and how much memory it takes.
//!
//! `cargo bench -p rosterflow-tests --bench sync_scale` builds the release `rosterflow` binary,
//! generates districts of 100k and 1M students ([`generate`]), serves each from the Clever
//! simulator ([`CleverSim`], in this process, on 127.0.0.1) and, per district size and Freckle DB
//! backend, runs `rosterflow run PIPELINE.toml` as a child process three times:
//! 1. a first sync into an empty DB;
//! 2. a resync with nothing changed;
//! 3. a resync after about 1% of the students and sections changed through the dataset's editing
//!    API (renames, grade changes, moves between sections, removed and new students, new
//!    teachers), printed as it is made. Archives stay far below the 10% safety hold.
//!
//! Before them, the same district is written as a OneRoster 1.2 CSV feed and loaded into an
//! empty DB of its own: the time to compare with the first sync from Clever.
//!
//! Each run prints its wall time, rows per second (rows = users + sections + memberships served:
//! what the sync reads), the child's peak RSS, its exit code, and a check of the Freckle DB
//! against the served district: active students, teachers and classes, and open class-student
//! and class-teacher memberships (distinct section-member pairs in the source). Mismatches are
//! printed loudly; a markdown table ends the output. Times are never asserted: the bench exits 1
//! only when a run fails or a check mismatches. Targets are in the README.
//!
//! Up to 100k students, each step is also run by `benches/plain_sync.py`, a plain
//! standard-library Python sync into a SQLite schema of its own (no history), measured and
//! checked the same way: at 100k, rosterflow's target is at most half of its time.
//!
//! Measurement: the peak RSS is `ru_maxrss` from `wait4`, exact rather than sampled. Linux counts
//! the address space a child was forked from in the child's `ru_maxrss` (exec keeps its
//! high-water mark), and this process holds the whole district (about a gigabyte at 1M), so every
//! measured command is started by a freshly executed copy of this binary (about 3.5 MB, the
//! floor of every figure) that waits for it and reports its exit code, peak RSS and wall time.
//!
//! The simulator keeps its defaults (`SimOptions::default()`): 1200 requests a minute per token,
//! pages of at most 10000 records, an empty page after the last. One sync at `limit = 10000`
//! makes about 40 requests at 100k students and 300 at 1M, so the limit never binds within a
//! run; the window is reset before each measured run (production runs are hours apart) so that
//! back-to-back runs do not wait on a 429 and measure the limiter. The simulator shares the
//! machine's cores with the measured child; the `serve` line per size times it alone (every
//! page, sequentially, over one keep-alive connection, unparsed), which bounds its share.
//!
//! Knobs: `ROSTERFLOW_BENCH_STUDENTS` (default `100000,1000000`), `ROSTERFLOW_BENCH_BACKENDS`
//! (`sqlite,postgres`; default SQLite, plus PostgreSQL when `DATABASE_URL` is set), and
//! `ROSTERFLOW_BENCH_BIN` (a `rosterflow` binary to use instead of building the release one).
//! Each size and backend gets a fresh DB: a SQLite file in a temporary directory, or a database
//! `rf_bench_<random>` on the `DATABASE_URL` server; both go when that run ends, with the
//! simulator.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rosterflow_tests::binary::{self, Profile, repo};
use rosterflow_tests::clever_sim::{CleverSim, SimOptions};
use rosterflow_tests::district::{
    Collection, Dataset, GenSpec, OneRosterVersion, OneRosterWrite, Role, generate,
};
use serde::Deserialize;
use serde_json::json;
use sqlx::{AnyConnection, AssertSqlSafe, Connection};
use tokio::runtime::{Handle, Runtime};

/// Records per page, in the pipeline and the baseline (Clever's maximum).
const LIMIT: usize = 10_000;
/// Set (to a report file) in the environment of the copy of this binary that starts a measured
/// command.
const MEASURE_REPORT: &str = "ROSTERFLOW_BENCH_MEASURE_REPORT";
/// The largest district the Python baseline runs on.
const PLAIN_MAX_STUDENTS: usize = 100_000;

fn main() {
    if let Some(report) = std::env::var_os(MEASURE_REPORT) {
        measure::start_and_report(report);
    }
    let sizes: Vec<usize> = list_env("ROSTERFLOW_BENCH_STUDENTS", "100000,1000000")
        .iter()
        .map(|s| s.parse().expect("ROSTERFLOW_BENCH_STUDENTS: numbers"))
        .collect();
    let backends = backends();
    let bin = rosterflow_bin();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    sqlx::any::install_default_drivers();
    println!(
        "sync_scale: {} with {}; rows = users + sections + memberships (distinct section-student \
         and section-teacher pairs) served, i.e. what a sync reads",
        bin.display(),
        backends
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    );

    let mut results = Vec::new();
    for &students in &sizes {
        for (n, &backend) in backends.iter().enumerate() {
            let bench = Bench {
                runtime: &runtime,
                bin: &bin,
                students,
                backend,
                first_of_size: n == 0,
            };
            results.extend(bench.run());
        }
    }

    println!();
    println!(
        "| students | backend | step | wall (s) | rows | rows/s | peak RSS (MB) | exit | check |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|---|");
    for r in &results {
        println!(
            "| {} | {} | {} | {:.1} | {} | {:.0} | {} | {} | {} |",
            r.students,
            r.runner,
            r.step,
            r.measured.wall.as_secs_f64(),
            r.rows,
            r.rows as f64 / r.measured.wall.as_secs_f64(),
            r.measured.peak_rss_kb / 1024,
            r.measured.exit,
            if r.mismatches.is_empty() {
                "ok".to_string()
            } else {
                format!("MISMATCH: {}", r.mismatches.join("; "))
            },
        );
    }
    if results
        .iter()
        .any(|r| r.measured.exit != 0 || !r.mismatches.is_empty())
    {
        println!("\nFAILED: a run exited non-zero or left the DB out of step with the source");
        std::process::exit(1);
    }
}

/// A Freckle DB backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

fn backends() -> Vec<Backend> {
    let default = if std::env::var_os("DATABASE_URL").is_some() {
        "sqlite,postgres"
    } else {
        "sqlite"
    };
    list_env("ROSTERFLOW_BENCH_BACKENDS", default)
        .iter()
        .map(|b| match b.as_str() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => panic!("ROSTERFLOW_BENCH_BACKENDS: unknown backend {other:?}"),
        })
        .collect()
}

/// A comma-separated environment variable, or its default.
fn list_env(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `ROSTERFLOW_BENCH_BIN`, or the release `rosterflow` binary, built now.
fn rosterflow_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ROSTERFLOW_BENCH_BIN") {
        return std::path::absolute(&bin).expect("ROSTERFLOW_BENCH_BIN: a path");
    }
    binary::rosterflow_bin(Profile::Release)
}

/// The measured syncs: three full ones, then the pipeline switched to `sync = "events"` (its
/// first run pulls whole and saves the checkpoint) and a run applying 1000 events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    First,
    NoChange,
    OnePercent,
    EventsCheckpoint,
    Events,
    /// The same district (before any change) as OneRoster 1.2 CSV, into an empty DB.
    OneRosterFirst,
}

impl Step {
    const ALL: [Step; 5] = [
        Step::First,
        Step::NoChange,
        Step::OnePercent,
        Step::EventsCheckpoint,
        Step::Events,
    ];

    /// Whether the step runs the events pipeline (the plain script has no such mode).
    fn is_events(self) -> bool {
        matches!(self, Step::EventsCheckpoint | Step::Events)
    }
}

/// Students renamed, one event each, before [`Step::Events`].
const EVENTS: usize = 1000;

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::First => "first sync",
            Step::NoChange => "no-change resync",
            Step::OnePercent => "1% change resync",
            Step::EventsCheckpoint => "events mode: first (full) run",
            Step::Events => "1000 events",
            Step::OneRosterFirst => "OneRoster CSV: first load",
        })
    }
}

/// One measured run and its check.
struct Outcome {
    students: usize,
    /// `sqlite`, `postgres` or `plain.py (sqlite)`.
    runner: String,
    step: Step,
    rows: u64,
    measured: measure::Measured,
    mismatches: Vec<String>,
}

/// One district size on one backend.
struct Bench<'a> {
    runtime: &'a Runtime,
    bin: &'a Path,
    students: usize,
    backend: Backend,
    /// The first backend of a size also times the simulator alone and runs the baseline.
    first_of_size: bool,
}

impl Bench<'_> {
    fn run(&self) -> Vec<Outcome> {
        let scratch = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let dataset = generate(GenSpec::new(self.students));
        let district = dataset.ids(Collection::Districts)[0].clone();
        println!(
            "\n## {} students, {}: generated {} users, {} sections in {:.1} s",
            self.students,
            self.backend,
            dataset.len(Collection::Users),
            dataset.len(Collection::Sections),
            started.elapsed().as_secs_f64()
        );
        let db = FreckleDb::create(self.backend, scratch.path(), self.runtime.handle());
        let sim = self
            .runtime
            .block_on(CleverSim::start(dataset, SimOptions::default()));
        if self.first_of_size {
            let (pages, bytes, elapsed) = serve_alone(sim.addr(), &sim.token());
            println!(
                "serve: the simulator alone serves all {pages} pages ({:.0} MB) in {:.2} s",
                bytes as f64 / 1e6,
                elapsed.as_secs_f64()
            );
        }
        let pipeline = scratch.path().join("bench.toml");
        std::fs::write(
            &pipeline,
            format!(
                "[pipeline]\nname = \"bench\"\n\n[source]\ntype = \"clever\"\nbase_url = \"{}\"\n\
                 token = \"{}\"\nlimit = {LIMIT}\n\n[load]\ndatabase = \"{}\"\n",
                sim.base_url(),
                sim.token(),
                db.url
            ),
        )
        .expect("write the pipeline");
        let events_pipeline = scratch.path().join("bench-events.toml");
        std::fs::write(
            &events_pipeline,
            std::fs::read_to_string(&pipeline)
                .expect("read the pipeline")
                .replace(
                    "[pipeline]\n",
                    &format!("[pipeline]\ndistrict_id = \"{district}\"\n"),
                )
                .replace("[load]", "sync = \"events\"\n\n[load]"),
        )
        .expect("write the events pipeline");
        let plain_db = scratch.path().join("plain.db");
        let plain = self.first_of_size && self.students <= PLAIN_MAX_STUDENTS;

        let mut outcomes = vec![self.oneroster_first_load(&sim, &district, scratch.path())];
        for step in Step::ALL {
            if step == Step::OnePercent {
                let started = Instant::now();
                let change = sim.update(change_one_percent);
                println!(
                    "change (made in {:.1} s): {change}",
                    started.elapsed().as_secs_f64()
                );
            }
            if step == Step::Events {
                sim.update(rename_with_events);
                println!("change: {EVENTS} students renamed, one event each");
            }
            let source = sim.read(Counts::of_source);
            sim.reset_rate_limit();
            let file = if step.is_events() {
                &events_pipeline
            } else {
                &pipeline
            };
            let measured = measure::run(
                self.bin.as_os_str(),
                &["run".into(), file.clone().into()],
                scratch.path(),
                &format!("rosterflow-{}", step as u8),
            );
            let in_db = self.runtime.block_on(Counts::of_freckle_db(&db.url));
            outcomes.push(self.outcome(self.backend.to_string(), step, &source, measured, in_db));
            if plain && !step.is_events() {
                sim.reset_rate_limit();
                let measured = measure::run(
                    "python3".as_ref(),
                    &[
                        repo().join("tests/benches/plain_sync.py").into(),
                        sim.base_url().into(),
                        sim.token().into(),
                        plain_db.clone().into(),
                        LIMIT.to_string().into(),
                    ],
                    scratch.path(),
                    &format!("plain-{}", step as u8),
                );
                let url = format!("sqlite://{}", plain_db.display());
                let in_db = self.runtime.block_on(Counts::of_plain_db(&url));
                outcomes.push(self.outcome(
                    "plain.py (sqlite)".into(),
                    step,
                    &source,
                    measured,
                    in_db,
                ));
            }
        }
        self.runtime.block_on(sim.stop());
        outcomes
    }

    /// Loads the district as a OneRoster 1.2 CSV feed (written to disk first, not timed) into
    /// an empty DB of its own: the time to compare with the first sync from Clever.
    fn oneroster_first_load(&self, sim: &CleverSim, district: &str, scratch: &Path) -> Outcome {
        let dir = scratch.join("oneroster");
        let feed = dir.join("feed");
        std::fs::create_dir_all(&dir).expect("a directory for the OneRoster load");
        let started = Instant::now();
        sim.read(|d| d.write_oneroster(&feed, &OneRosterWrite::new(OneRosterVersion::V1_2)))
            .expect("write the OneRoster feed");
        println!(
            "oneroster: the feed written in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let db = FreckleDb::create(self.backend, &dir, self.runtime.handle());
        let pipeline = dir.join("bench-oneroster.toml");
        std::fs::write(
            &pipeline,
            format!(
                "[pipeline]\nname = \"bench-oneroster\"\ndistrict_id = \"{district}\"\n\n\
                 [source]\ntype = \"oneroster_csv\"\npath = \"{}\"\n\n[load]\ndatabase = \"{}\"\n",
                feed.display(),
                db.url
            ),
        )
        .expect("write the OneRoster pipeline");
        let source = sim.read(Counts::of_source);
        let measured = measure::run(
            self.bin.as_os_str(),
            &["run".into(), pipeline.into()],
            &dir,
            "rosterflow-oneroster",
        );
        let in_db = self.runtime.block_on(Counts::of_freckle_db(&db.url));
        self.outcome(
            self.backend.to_string(),
            Step::OneRosterFirst,
            &source,
            measured,
            in_db,
        )
    }

    /// Prints one run's figures and what it printed (with its log's tail when it failed), and
    /// checks its counts.
    fn outcome(
        &self,
        runner: String,
        step: Step,
        source: &Counts,
        measured: measure::Measured,
        in_db: Result<Counts, sqlx::Error>,
    ) -> Outcome {
        let mismatches = match in_db {
            Ok(in_db) => in_db.mismatches(source),
            Err(e) => vec![format!("cannot count the DB: {e}")],
        };
        println!(
            "{runner} {step}: {:.1} s, {} rows, {:.0} rows/s, peak RSS {} MB, exit {}, {}",
            measured.wall.as_secs_f64(),
            source.rows,
            source.rows as f64 / measured.wall.as_secs_f64(),
            measured.peak_rss_kb / 1024,
            measured.exit,
            if mismatches.is_empty() {
                "counts match the source".to_string()
            } else {
                format!("counts MISMATCH: {}", mismatches.join("; "))
            }
        );
        print_tail(&measured.out, 30);
        if !mismatches.is_empty() {
            println!("!!!!!!!! {runner} {step}: the DB is out of step with the source !!!!!!!!");
        }
        if measured.exit != 0 {
            println!(
                "!!!!!!!! {runner} {step} exited {}; the end of its output ({}):",
                measured.exit,
                measured.log.display()
            );
            print_tail(&measured.log, 20);
        }
        Outcome {
            students: self.students,
            runner,
            step,
            rows: source.rows,
            measured,
            mismatches,
        }
    }
}

fn print_tail(path: &Path, lines: usize) {
    let all: Vec<String> = File::open(path)
        .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
        .unwrap_or_default();
    for line in &all[all.len().saturating_sub(lines)..] {
        println!("    {line}");
    }
}

/// The Freckle DB of one run: a SQLite file in the scratch directory, or a fresh database on the
/// PostgreSQL server `DATABASE_URL` names, dropped with this value.
struct FreckleDb {
    url: String,
    /// The server's URL, the database's name, and where to run the `DROP DATABASE`.
    postgres: Option<(String, String, Handle)>,
}

impl FreckleDb {
    fn create(backend: Backend, scratch: &Path, runtime: &Handle) -> FreckleDb {
        match backend {
            Backend::Sqlite => FreckleDb {
                url: format!("sqlite://{}", scratch.join("freckle.db").display()),
                postgres: None,
            },
            Backend::Postgres => {
                let server =
                    std::env::var("DATABASE_URL").expect("the postgres backend needs DATABASE_URL");
                let base = server
                    .rsplit_once('/')
                    .map(|(base, _)| base.to_string())
                    .expect("DATABASE_URL ends with /<database>");
                let name = format!("rf_bench_{:016x}", rand::random::<u64>());
                runtime
                    .block_on(admin(&server, &format!("CREATE DATABASE {name}")))
                    .expect("create the bench database");
                FreckleDb {
                    url: format!("{base}/{name}"),
                    postgres: Some((server, name, runtime.clone())),
                }
            }
        }
    }
}

impl Drop for FreckleDb {
    fn drop(&mut self) {
        if let Some((server, name, runtime)) = self.postgres.take() {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(e) = runtime.block_on(admin(&server, &sql)) {
                eprintln!("could not drop the bench database {name}: {e}");
            }
        }
    }
}

/// Runs one statement on the PostgreSQL server.
async fn admin(server: &str, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::postgres::PgConnection::connect(server).await?;
    sqlx::query(AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// What a synced DB should hold, counted in the served district or in the DB.
#[derive(Debug)]
struct Counts {
    students: u64,
    teachers: u64,
    classes: u64,
    class_students: u64,
    class_teachers: u64,
    /// Users + sections + memberships (source counts only; 0 for a DB).
    rows: u64,
}

/// The members of a section, as served.
#[derive(Deserialize)]
struct Members {
    #[serde(default)]
    students: Vec<String>,
    #[serde(default)]
    teachers: Vec<String>,
    #[serde(default)]
    teacher: String,
    #[serde(default)]
    school: String,
}

impl Members {
    fn of(d: &Dataset, section: &str) -> Members {
        let raw = d
            .raw(Collection::Sections, section)
            .expect("a served section");
        serde_json::from_str(raw).expect("a generated section parses")
    }

    /// Distinct students, distinct teachers (`teacher` included).
    fn distinct(&self) -> (usize, usize) {
        let students: HashSet<&str> = self.students.iter().map(String::as_str).collect();
        let teachers: HashSet<&str> = self
            .teachers
            .iter()
            .map(String::as_str)
            .chain(Some(self.teacher.as_str()).filter(|t| !t.is_empty()))
            .collect();
        (students.len(), teachers.len())
    }
}

impl Counts {
    /// Students and teachers are users with that role, classes are sections.
    fn of_source(d: &Dataset) -> Counts {
        let (mut class_students, mut class_teachers) = (0, 0);
        for section in d.ids(Collection::Sections) {
            let (students, teachers) = Members::of(d, &section).distinct();
            class_students += students as u64;
            class_teachers += teachers as u64;
        }
        let sections = d.len(Collection::Sections) as u64;
        Counts {
            students: d.count_role(Role::Student) as u64,
            teachers: d.count_role(Role::Teacher) as u64,
            classes: sections,
            class_students,
            class_teachers,
            rows: d.len(Collection::Users) as u64 + sections + class_students + class_teachers,
        }
    }

    /// Active students, teachers and classes; open memberships.
    async fn of_freckle_db(url: &str) -> Result<Counts, sqlx::Error> {
        Counts::query(
            url,
            [
                "SELECT COUNT(*) FROM students WHERE archived_at IS NULL",
                "SELECT COUNT(*) FROM teachers WHERE archived_at IS NULL",
                "SELECT COUNT(*) FROM classes WHERE archived_at IS NULL",
                "SELECT COUNT(*) FROM class_students WHERE ended_at IS NULL",
                "SELECT COUNT(*) FROM class_teachers WHERE ended_at IS NULL",
            ],
        )
        .await
    }

    /// The same in the baseline's schema.
    async fn of_plain_db(url: &str) -> Result<Counts, sqlx::Error> {
        Counts::query(
            url,
            [
                "SELECT COUNT(*) FROM users WHERE is_student",
                "SELECT COUNT(*) FROM users WHERE is_teacher",
                "SELECT COUNT(*) FROM sections",
                "SELECT COUNT(*) FROM section_students",
                "SELECT COUNT(*) FROM section_teachers",
            ],
        )
        .await
    }

    async fn query(url: &str, sql: [&str; 5]) -> Result<Counts, sqlx::Error> {
        let mut conn = AnyConnection::connect(url).await?;
        let mut n = [0u64; 5];
        for (count, sql) in n.iter_mut().zip(sql) {
            let value: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await?;
            *count = value as u64;
        }
        conn.close().await?;
        let [students, teachers, classes, class_students, class_teachers] = n;
        Ok(Counts {
            students,
            teachers,
            classes,
            class_students,
            class_teachers,
            rows: 0,
        })
    }

    /// `what: DB n, source m` for each count that differs.
    fn mismatches(&self, source: &Counts) -> Vec<String> {
        [
            ("active students", self.students, source.students),
            ("active teachers", self.teachers, source.teachers),
            ("active classes", self.classes, source.classes),
            (
                "open class_students",
                self.class_students,
                source.class_students,
            ),
            (
                "open class_teachers",
                self.class_teachers,
                source.class_teachers,
            ),
        ]
        .into_iter()
        .filter(|(_, db, src)| db != src)
        .map(|(what, db, src)| format!("{what}: DB {db}, source {src}"))
        .collect()
    }
}

/// What [`change_one_percent`] did.
#[derive(Debug, Default)]
struct Change {
    renamed: usize,
    regraded: usize,
    moved: usize,
    removed: usize,
    added: usize,
    retaught: usize,
    students: usize,
    sections: usize,
    sections_touched: usize,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users = self.renamed + self.regraded + self.moved + self.removed + self.added;
        write!(
            f,
            "{} students renamed, {} regraded, {} moved to another section of their school, \
             {} removed, {} added (into their template's sections), {} sections given another \
             section's teachers: {users} students ({:.2}% of {}) and {} sections ({:.2}% of {}) \
             touched",
            self.renamed,
            self.regraded,
            self.moved,
            self.removed,
            self.added,
            self.retaught,
            100.0 * users as f64 / self.students as f64,
            self.students,
            self.sections_touched,
            100.0 * self.sections_touched as f64 / self.sections as f64,
            self.sections,
        )
    }
}

/// Changes about 1% of the district, spread evenly over its schools (students and sections are
/// picked by stride, in id order): of the students, 1 in 250 renamed, 1 in 250 given the next
/// grade, 1 in 1000 moved from one of their sections to the next section of their school, and
/// ten removed (`remove_user`); ten students are copied into new students (new ids and numbers)
/// placed in the same sections; and 1 in 500 sections takes the teachers of the next section of
/// its school. About 1% of the students and 1.3% of the sections change.
/// Renames [`EVENTS`] students, spread over the district, each edit appending its event.
fn rename_with_events(d: &mut Dataset) {
    d.set_emit_events(true);
    let students = d.ids_with_role(Role::Student);
    let every = (students.len() / EVENTS).max(1);
    for (n, id) in students.iter().step_by(every).take(EVENTS).enumerate() {
        d.edit(Collection::Users, id, |u| {
            u["name"]["first"] = json!(format!("Evented{n}"));
        });
    }
    d.set_emit_events(false);
}

fn change_one_percent(d: &mut Dataset) -> Change {
    let students = d.ids_with_role(Role::Student);
    let pick = |every: usize, offset: usize| -> Vec<String> {
        students
            .iter()
            .skip(offset)
            .step_by(every)
            .cloned()
            .collect()
    };
    // Disjoint picks: the offsets differ modulo every stride (each a multiple of the last). Ten
    // removals at any size: `remove_user` scans the whole district, 0.4 s a user at 1M.
    let few = (students.len() / 10_000).max(1) * 1000;
    let renamed = pick(250, 0);
    let regraded = pick(250, 125);
    let moved = pick(1000, 50);
    let removed = pick(few, 60);
    let templates = pick(few, 70);

    // One pass over the sections: each section's school and teachers, and the sections of the
    // students to move, remove or copy.
    let wanted: HashSet<&str> = moved
        .iter()
        .chain(&removed)
        .chain(&templates)
        .map(String::as_str)
        .collect();
    let sections = d.ids(Collection::Sections);
    let mut schools = Vec::with_capacity(sections.len());
    let mut teachers = Vec::with_capacity(sections.len());
    let mut sections_of: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, id) in sections.iter().enumerate() {
        let members = Members::of(d, id);
        for student in members
            .students
            .iter()
            .filter(|s| wanted.contains(s.as_str()))
        {
            sections_of.entry(student.clone()).or_default().push(i);
        }
        schools.push(members.school);
        teachers.push(members.teachers);
    }
    // The next section of the same school after `i` for which `fits` holds.
    let next_in_school = |i: usize, fits: &dyn Fn(usize) -> bool| {
        (i + 1..sections.len())
            .take_while(|&j| schools[j] == schools[i])
            .find(|&j| fits(j))
    };

    let mut change = Change {
        students: students.len(),
        sections: sections.len(),
        ..Change::default()
    };
    let mut touched: HashSet<usize> = HashSet::new();
    for id in &renamed {
        d.edit(Collection::Users, id, |u| {
            u["name"]["first"] = json!("Jordan")
        });
        change.renamed += 1;
    }
    for id in &regraded {
        d.edit(Collection::Users, id, |u| {
            let grade = &mut u["roles"]["student"]["grade"];
            let next = match grade.as_str() {
                Some("Kindergarten") => 1,
                Some(g) => g
                    .parse::<u32>()
                    .map_or(1, |g| if g < 12 { g + 1 } else { 11 }),
                None => 1,
            };
            *grade = json!(next.to_string());
        });
        change.regraded += 1;
    }
    for id in &moved {
        let Some(&from) = sections_of.get(id).and_then(|s| s.first()) else {
            continue;
        };
        let to = next_in_school(from, &|j| !d.section_students(&sections[j]).contains(id));
        if let Some(to) = to
            && d.move_student(id, &sections[from], &sections[to])
        {
            touched.extend([from, to]);
            change.moved += 1;
        }
    }
    for id in &removed {
        if d.remove_user(id) {
            touched.extend(sections_of.get(id).into_iter().flatten());
            change.removed += 1;
        }
    }
    for (k, template) in templates.iter().enumerate() {
        let Some(mut user) = d.get(Collection::Users, template) else {
            continue;
        };
        let id = d.new_id();
        let number = format!("{}", 900_000_000 + k);
        user["id"] = json!(id);
        user["name"]["first"] = json!("Avery");
        user["email"] = json!(format!("new.student{k}@students.example.org"));
        let role = &mut user["roles"]["student"];
        role["sis_id"] = json!(number);
        role["student_number"] = json!(number);
        role["state_id"] = json!(format!("9{number}"));
        role["email"] = json!(format!("new.student{k}@students.example.org"));
        role["credentials"]["district_username"] = json!(format!("new.student{k}"));
        d.upsert(Collection::Users, user);
        for &i in sections_of.get(template).into_iter().flatten() {
            if d.add_student_to_section(&sections[i], &id) {
                touched.insert(i);
            }
        }
        change.added += 1;
    }
    for i in (0..sections.len()).step_by(500) {
        let Some(j) = next_in_school(i, &|j| {
            !teachers[j].is_empty() && teachers[j] != teachers[i]
        }) else {
            continue;
        };
        let new: Vec<&str> = teachers[j].iter().map(String::as_str).collect();
        if d.set_section_teachers(&sections[i], &new) {
            touched.insert(i);
            change.retaught += 1;
        }
    }
    change.sections_touched = touched.len();
    change
}

/// Pages every Data API collection as rosterflow does (`limit`, then each `next` link) over one
/// keep-alive connection, reading each body whole without parsing it: the simulator's own cost.
/// Returns (pages, bytes, time).
fn serve_alone(addr: SocketAddr, token: &str) -> (usize, usize, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect to the simulator");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut reader = BufReader::new(stream.try_clone().expect("clone the connection"));
    let (mut pages, mut bytes) = (0, 0);
    for collection in Collection::DATA {
        let mut uri = Some(format!("/v3.0/{}?limit={LIMIT}", collection.name()));
        while let Some(path) = uri {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
            );
            stream
                .write_all(request.as_bytes())
                .expect("send a request");
            let body = read_response(&mut reader);
            pages += 1;
            bytes += body.len();
            uri = next_link(&body);
        }
    }
    (pages, bytes, started.elapsed())
}

/// Reads one HTTP/1.1 response with a `Content-Length` and returns its body.
fn read_response(reader: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut status = String::new();
    reader.read_line(&mut status).expect("read a status line");
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "the simulator answered {status:?}"
    );
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
    let mut body = vec![0; length.expect("a Content-Length")];
    reader.read_exact(&mut body).expect("read a response body");
    body
}

/// The `next` link of a list page (the links close the page).
fn next_link(body: &[u8]) -> Option<String> {
    const NEXT: &str = "{\"rel\":\"next\",\"uri\":\"";
    let tail = String::from_utf8_lossy(&body[body.len().saturating_sub(4096)..]);
    let start = tail.rfind(NEXT)? + NEXT.len();
    let end = start + tail[start..].find('"')?;
    Some(tail[start..end].to_string())
}

/// Measured commands: each is started by a fresh copy of this binary, whose own address space is
/// a few MB, so the command's `ru_maxrss` is its own peak (see the module docs).
mod measure {
    use super::*;

    /// What one measured command did.
    pub(crate) struct Measured {
        pub(crate) exit: i32,
        pub(crate) wall: Duration,
        pub(crate) peak_rss_kb: u64,
        /// Its stdout.
        pub(crate) out: PathBuf,
        /// Its stderr.
        pub(crate) log: PathBuf,
    }

    /// Runs `program args` in `dir`, its stdout into `dir/<name>.out` and its stderr into
    /// `dir/<name>.log`, and measures it.
    pub(crate) fn run(program: &OsStr, args: &[OsString], dir: &Path, name: &str) -> Measured {
        let out = dir.join(format!("{name}.out"));
        let log = dir.join(format!("{name}.log"));
        let report = dir.join(format!("{name}.measure"));
        let status = Command::new(std::env::current_exe().expect("this binary's path"))
            .arg(program)
            .args(args)
            .env(MEASURE_REPORT, &report)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create an output file"))
            .stderr(File::create(&log).expect("create a log file"))
            .status()
            .expect("start the measuring process");
        assert!(
            status.success(),
            "the measuring process failed ({status}): {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let text = std::fs::read_to_string(&report).expect("read the measure report");
        let numbers: Vec<i64> = text
            .split_whitespace()
            .map(|n| n.parse().expect("a number"))
            .collect();
        let [exit, peak_rss_kb, wall_us] = numbers[..] else {
            panic!("a bad measure report: {text:?}");
        };
        Measured {
            exit: exit as i32,
            wall: Duration::from_micros(wall_us as u64),
            peak_rss_kb: peak_rss_kb as u64,
            out,
            log,
        }
    }

    /// The measuring process: starts `argv[1..]`, waits for it with `wait4` and writes
    /// `<exit code> <peak RSS in KB> <wall time in µs>` to the file `report` names.
    pub(crate) fn start_and_report(report: OsString) -> ! {
        let mut args = std::env::args_os().skip(1);
        let program = args.next().expect("a program to measure");
        let started = Instant::now();
        let child = Command::new(&program)
            .args(args)
            .env_remove(MEASURE_REPORT)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.to_string_lossy()));
        let (exit, peak_rss_kb) = wait4(child.id());
        let wall = started.elapsed();
        std::fs::write(
            &report,
            format!("{exit} {peak_rss_kb} {}", wall.as_micros()),
        )
        .expect("write the measure report");
        std::process::exit(0)
    }

    /// Reaps `pid`: its exit code (128 + signal when killed) and peak RSS in KB.
    fn wait4(pid: u32) -> (i32, i64) {
        let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
        let mut status = 0;
        // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: both pointers are to live, writable locals of the right types.
            let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if reaped == pid {
                break;
            }
            let error = std::io::Error::last_os_error();
            assert!(
                error.kind() == std::io::ErrorKind::Interrupted,
                "wait4: {error}"
            );
        }
        let exit = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        // Linux reports ru_maxrss in kilobytes.
        (exit, usage.ru_maxrss)
    }
}
