//! Shared helpers: a fresh Freckle DB per test on either backend, pipeline files, the
//! `rosterflow` binary and its log, waiting for a condition, queries for assertions, and the heap
//! a thread holds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use rosterflow_pipeline::config::{self, Pipeline};
use rosterflow_pipeline::sync::{RunOptions, RunResult, Runner, SyncError};
use rosterflow_store::db::Db;
use rosterflow_store::{LockOptions, RunOutcome, RunRecord, RunStart, SourceRun};
use rosterflow_tests::binary::{self, Profile};
use rosterflow_transform::plugin::Plugins;
use sqlx::{AssertSqlSafe, Connection};

pub use rosterflow_tests::binary::repo;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database: a SQLite file in a temporary directory, or a new database on the
/// PostgreSQL server that `DATABASE_URL` names, dropped with the test.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    /// The server and database name of a PostgreSQL test database.
    postgres: Option<(String, String)>,
    /// The database, opened and migrated on first use; its pool serves every query of the test.
    /// Each query reads what is committed when it runs (PostgreSQL's read committed, SQLite's
    /// WAL), so it sees what other processes wrote since.
    db: tokio::sync::OnceCell<Db>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, postgres) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("freckle.db").display()),
                None,
            ),
            Backend::Postgres => {
                let server = std::env::var("DATABASE_URL").expect(
                    "PostgreSQL tests need DATABASE_URL: eval \"$(bash tests/pg.sh start)\" (tests/run does it)",
                );
                let name = format!("rf_{}", rand_suffix());
                let mut admin = sqlx::postgres::PgConnection::connect(&server)
                    .await
                    .expect("connect to DATABASE_URL");
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create a test database");
                let base = server
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .expect("DATABASE_URL ends with /<database>");
                (format!("{base}/{name}"), Some((server, name)))
            }
        };
        TestDb {
            url,
            dir,
            postgres,
            db: tokio::sync::OnceCell::new(),
        }
    }

    /// The database, opened and migrated on the first call; later calls share its pool.
    pub async fn open(&self) -> Db {
        self.db
            .get_or_init(|| async { Db::open(&self.url).await.expect("open the test database") })
            .await
            .clone()
    }

    /// A single number from SQL such as `SELECT COUNT(*) FROM students`.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let db = self.open().await;
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of a query, each as text columns joined by `|`, for comparing whole tables.
    pub async fn rows(&self, sql: &str) -> Vec<String> {
        use sqlx::Row;
        let db = self.open().await;
        let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i)
                            .map(|v| v.unwrap_or_else(|| "NULL".into()))
                            .or_else(|_| {
                                row.try_get::<Option<i64>, _>(i)
                                    .map(|v| v.map_or_else(|| "NULL".into(), |n| n.to_string()))
                            })
                            .unwrap_or_else(|e| panic!("{sql} column {i}: {e}"))
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    /// The address of a PostgreSQL test database's server.
    pub fn address(&self) -> std::net::SocketAddr {
        let url = url::Url::parse(&self.url).expect("a database URL");
        let host = url.host_str().expect("a PostgreSQL URL names its host");
        let port = url.port().unwrap_or(5432);
        std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .expect("the server's address")
            .next()
            .expect("an address")
    }

    /// The URL of a PostgreSQL test database with its password in the query
    /// (`postgres://user@host/db?password=...`), as sqlx also takes it.
    pub fn url_with_password_in_query(&self) -> String {
        let mut url = url::Url::parse(&self.url).expect("a database URL");
        let password = url
            .password()
            .expect("the test server's password")
            .to_owned();
        url.set_password(None).expect("a URL with a host");
        url.query_pairs_mut().append_pair("password", &password);
        url.to_string()
    }

    /// The demo pipeline (Clever's demo district, replayed) into this database.
    pub fn demo_pipeline(&self) -> Pipeline {
        pipeline(
            self.dir.path(),
            "demo",
            &replay_source(&repo().join("pipelines/demo")),
            &self.url,
            "",
        )
    }

    /// What every synced table holds, to show that a run changed nothing: any write to a row
    /// moves its `updated_at` (or, for memberships, its `ended_at`).
    pub async fn fingerprint(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (table, columns) in [
            (
                "districts",
                "id, key, source_kind, source_id, name, updated_at",
            ),
            ("schools", "id, source_id, name, updated_at, archived_at"),
            ("terms", "id, source_id, updated_at, archived_at"),
            ("courses", "id, source_id, updated_at, archived_at"),
            ("teachers", "id, source_id, updated_at, archived_at"),
            (
                "students",
                "id, source_id, school_id, updated_at, archived_at",
            ),
            ("admins", "id, source_id, updated_at, archived_at"),
            ("classes", "id, source_id, updated_at, archived_at"),
            (
                "class_teachers",
                "id, class_id, teacher_id, role, source, started_at, ended_at",
            ),
            (
                "class_students",
                "id, class_id, student_id, source, started_at, ended_at",
            ),
            ("teacher_accounts", "teacher_id, login_state, invited_at"),
            ("email_outbox", "id, teacher_id, status"),
        ] {
            let rows = self
                .rows(&format!("SELECT {columns} FROM {table} ORDER BY 1"))
                .await;
            all.extend(rows.into_iter().map(|row| format!("{table}: {row}")));
        }
        all
    }
}

impl Drop for TestDb {
    /// Drops a PostgreSQL test database (its connections with it, the pool's first). On a thread
    /// of its own: the test's runtime may be shutting down.
    fn drop(&mut self) {
        drop(self.db.take());
        // What the test's runs wrote (the database, exports, logs) shows no secret.
        let check = !std::thread::panicking();
        if check {
            assert_no_canary_in_files(self.dir.path());
        }
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        let url = self.url.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let shown = if check {
                    Some(secret_in_postgres(&url).await)
                } else {
                    None
                };
                let dropped = async {
                    let mut admin = sqlx::postgres::PgConnection::connect(&server).await?;
                    sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await
                }
                .await;
                (shown, dropped)
            })
        })
        .join();
        let Ok((shown, dropped)) = dropped else {
            return;
        };
        if let Err(error) = dropped {
            eprintln!("could not drop a test database: {error}");
        }
        match shown {
            Some(Ok(Some(column))) => panic!("the test database's {column} shows a secret"),
            // A search that could not run proves nothing: the test fails rather than pass.
            Some(Err(error)) => panic!("could not search the test database for secrets: {error}"),
            Some(Ok(None)) | None => {}
        }
    }
}

/// The first column (`schema.table.column`) of the PostgreSQL database at `url` whose text
/// shows one of the [`SECRETS`], if any: what runs stored for reports must not. A database
/// that cannot be searched is an error, never a database without secrets.
async fn secret_in_postgres(url: &str) -> Result<Option<String>, sqlx::Error> {
    let mut db = sqlx::postgres::PgConnection::connect(url).await?;
    let selects: Vec<String> = sqlx::query_scalar(
        "SELECT format('SELECT %L FROM %I.%I WHERE %I::text LIKE %L OR %I::text LIKE %L', \
                table_schema || '.' || table_name || '.' || column_name, table_schema, \
                table_name, column_name, '%' || $1 || '%', column_name, '%' || $2 || '%') \
         FROM information_schema.columns \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
           AND data_type IN ('text', 'character varying', 'json', 'jsonb')",
    )
    .bind(SECRETS[0])
    .bind(SECRETS[1])
    .fetch_all(&mut db)
    .await?;
    if selects.is_empty() {
        return Ok(None);
    }
    let union = format!("{} LIMIT 1", selects.join(" UNION ALL "));
    sqlx::query_scalar(AssertSqlSafe(union))
        .fetch_optional(&mut db)
        .await
}

fn rand_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

/// Runs `pipeline` once on its own database, as `rosterflow run` does.
pub async fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunResult, SyncError> {
    let db = Db::open(&pipeline.file.load.database)
        .await
        .expect("open the pipeline's database");
    let result = Runner::new(db, Plugins::default())
        .run(pipeline, options)
        .await;
    match &result {
        Ok(run) => assert_no_canary(&format!("{run:?}")),
        Err(error) => assert_no_canary(&format!("{error:#} {error:?}")),
    }
    result
}

/// The record of a new run of `pipeline` that read its source whole, started now, for tests
/// that apply plans to a store directly.
pub fn full_run(pipeline: &str) -> RunRecord<'_> {
    RunRecord::New {
        start: RunStart {
            pipeline,
            started_at: chrono::Utc::now(),
            scheduled_for: None,
            requested_by: None,
        },
        source: SourceRun {
            kind: "full",
            note: None,
            checkpoint: None,
        },
    }
}

/// Approves held run `run` of `pipeline` on `db`, not waiting for another run's lock.
pub async fn approve(pipeline: &Pipeline, db: &Db, run: i64) -> Result<RunOutcome, SyncError> {
    Runner::new(db.clone(), Plugins::default())
        .approve(pipeline, run, LockOptions::default(), None)
        .await
}

/// Writes a pipeline file into `dir` and loads it as the CLI would.
pub fn pipeline(dir: &Path, name: &str, source: &str, database: &str, extra: &str) -> Pipeline {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, pipeline_text(name, source, database, extra)).expect("write pipeline");
    config::load(&path, &Default::default()).expect("a valid pipeline")
}

pub fn pipeline_text(name: &str, source: &str, database: &str, extra: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\n\n[source]\n{source}\n\n[load]\ndatabase = \"{database}\"\n\n{extra}\n"
    )
}

/// The `[source]` lines of a replay of `dir`.
pub fn replay_source(dir: &Path) -> String {
    format!("type = \"clever_replay\"\ndir = \"{}\"", dir.display())
}

/// The `[source]` lines for the simulator, with fast retries so tests stay quick.
pub fn sim_source(base_url: &str, token: &str, limit: usize) -> String {
    format!(
        "type = \"clever\"\nbase_url = \"{base_url}\"\ntoken = \"{token}\"\nlimit = {limit}\n\
         timeout_secs = 2\nmax_attempts = 6\nbackoff_base_ms = 20\nbackoff_max_secs = 3"
    )
}

/// The debug `rosterflow` binary, built once per test process.
pub fn rosterflow_bin() -> PathBuf {
    binary::rosterflow_bin(Profile::Debug)
}

/// Runs the binary in a scratch working directory (where a pipeline's relative outputs, such as
/// exports, land) and returns (exit code, stdout, stderr).
pub fn rosterflow(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let output = Command::new(rosterflow_bin())
        .current_dir(scratch.path())
        .args(args)
        .envs(env.iter().copied())
        .env("ROSTERFLOW_LOG", "warn")
        .output()
        .expect("run rosterflow");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert_no_canary(&stdout);
    assert_no_canary(&stderr);
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

/// Waits until `done` holds, checking every 50 ms. After `limit`, fails the test naming `what`,
/// with `context()` (a log, say) to show why.
pub async fn eventually<F: Future<Output = bool>>(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !done().await {
        if Instant::now() >= deadline {
            panic!(
                "timed out after {limit:?} waiting until {what}:\n{}",
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stderr of a child process, read line by line on a thread of its own (to its end, so the
/// child never blocks on a full pipe), for a test to wait for a line of its log.
pub struct ChildLog {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl ChildLog {
    /// Reads `child`'s stderr, which must be piped.
    pub fn of(child: &mut Child) -> ChildLog {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("the child's stderr is piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                // Once the test stops listening, the rest is read and dropped.
                let _ = send.send(line);
            }
        });
        ChildLog {
            lines,
            seen: Vec::new(),
        }
    }

    /// Blocks until a line containing `text` arrives, and returns it. Fails the test, with the
    /// log so far, if none does within `limit` or the log ends first.
    pub fn wait_for(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    assert_no_canary(&line);
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return self.seen.last().expect("just pushed").clone();
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no log line with {text:?} within {limit:?}; the log so far:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the log ended without a line with {text:?}:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The whole log, once the child has closed its stderr (exited).
    pub fn finish(mut self) -> String {
        self.seen.extend(self.lines.iter());
        let log = self.seen.join("\n");
        assert_no_canary(&log);
        log
    }
}

/// A password no output may ever show: the test PostgreSQL's (`tests/pg.sh` gives its role this
/// password, so every PostgreSQL test's database URL carries it) and the secrets of test
/// pipelines (tokens, SMTP and OAuth passwords given through `${VAR}`).
pub const CANARY: &str = "rf-canary-7d1e";

/// What no output may show: the [`CANARY`], and the bearer token the Clever simulator accepts
/// by default (every test against the simulator carries it).
const SECRETS: [&str; 2] = [CANARY, rosterflow_tests::clever_sim::DEFAULT_TOKEN];

/// Fails the test if `output` (of the binary, a run, a page, a report) shows one of the
/// [`SECRETS`]. The one check for every output the tests capture: the helpers that capture
/// call it.
#[track_caller]
pub fn assert_no_canary(output: &str) {
    for secret in SECRETS {
        if let Some(at) = output.find(secret) {
            let start = output.floor_char_boundary(at.saturating_sub(300));
            let end = output.ceil_char_boundary((at + secret.len() + 300).min(output.len()));
            panic!(
                "an output shows the secret {secret:?}:\n...{}...",
                &output[start..end]
            );
        }
    }
}

/// Fails the test if any file under `dir` (a SQLite database, exports, reports, logs a run
/// wrote; pipeline files, which are input, aside) shows a secret.
#[track_caller]
pub fn assert_no_canary_in_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_no_canary_in_files(&path);
        } else if path.extension().is_some_and(|e| e == "toml") {
            // A pipeline file is input: it holds its database URL and secrets by design.
        } else if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            if SECRETS.iter().any(|secret| text.contains(secret)) {
                panic!("{} shows a secret", path.display());
            }
        }
    }
}

/// The records of one collection of the demo recording (`pipelines/demo/<collection>/0001.json`),
/// straight from Clever's JSON.
pub fn demo_records(collection: &str) -> Vec<serde_json::Value> {
    let path = repo()
        .join("pipelines/demo")
        .join(collection)
        .join("0001.json");
    let page: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("demo page")).expect("demo JSON");
    page["data"]
        .as_array()
        .expect("a list page")
        .iter()
        .map(|item| item["data"].clone())
        .collect()
}

/// Copies a recording so a test can edit it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy file");
        }
    }
}

/// Runs each scenario `async fn name(backend: Backend)` as one test per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::util::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::util::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The system allocator, counting the heap each thread holds so that a test can bound what one
/// call allocates on its thread (the plugin host copies a plugin's output on the calling
/// thread; a plugin's own linear memory is mapped by wasmtime, not allocated here).
struct CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

thread_local! {
    /// Bytes allocated on this thread and not freed on it (negative when it frees more than it
    /// allocated, such as memory another thread allocated).
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: a thread's locals are gone while it exits, and it still frees.
    let _ = HELD.try_with(|held| {
        let now = held.get() + delta;
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed to `System` unchanged; counting touches only const-initialised
// thread locals without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }
}

/// Runs `f` and returns what it returned and the most heap this thread held at once while it
/// ran, beyond what it held before.
pub fn peak_heap_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, (peak - before).max(0) as usize)
}

/// The text at `pointer` of a record's JSON (empty when there is none): a field of the
/// simulator's Clever records.
pub fn text(value: &serde_json::Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
