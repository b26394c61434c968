//! `rosterflow serve` through the binary, against the simulator: pipelines run on their
//! schedules and are picked up as their files change; `/metrics` parses as Prometheus text; a
//! second service on one SQLite database is refused; SIGTERM leaves the database before or
//! after a run; on PostgreSQL two services share the schedule with each time run once and no
//! district's runs overlapping, a killed service's run is taken over, and a stopped one that
//! wakes up commits nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rosterflow_tests::clever_sim::{CleverSim, Fault, SimOptions};
use rosterflow_tests::district::{Collection, GenSpec, Role, generate};

use rosterflow_pipeline::sync::RunStatus;

use crate::email::SmtpSink;
use crate::util::{Backend, TestDb, eventually, pipeline_text, rosterflow, rosterflow_bin};

/// A `rosterflow serve` process, killed if the test ends without stopping it.
pub(crate) struct Service {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
}

impl Service {
    fn start(dir: &Path, database: &str, name: &str, extra: &[&str]) -> Service {
        Service::start_with(dir, database, name, extra, &[])
    }

    fn start_with(
        dir: &Path,
        database: &str,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        Service::start_at(free_port(), dir, database, name, extra, env)
    }

    /// Starts a service listening on `port` (with `pipelines/` of `dir`, logging to
    /// `dir/<name>.log`), and waits until it answers.
    pub(crate) fn start_at(
        port: u16,
        dir: &Path,
        database: &str,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        let log = dir.join(format!("{name}.log"));
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(rosterflow_bin())
            .current_dir(dir)
            .args([
                "-v",
                "serve",
                "--pipelines",
                "pipelines",
                "--database",
                database,
            ])
            .args(["--listen", &listen, "--worker", name, "--rescan-secs", "1"])
            .args(extra)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("start rosterflow serve");
        let service = Service { child, port, log };
        service.wait_until_listening();
        service
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.get("/healthz").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "serve never listened:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A GET on the service's HTTP port: (status, body); status 0 when nothing answers.
    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = self.request("GET", path, None, None);
        (status, body)
    }

    /// A request with an optional cookie and form body: (status, headers, body).
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&str>,
    ) -> (u16, String, String) {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new(), String::new());
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(cookie) = cookie {
            request.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        let form = form.unwrap_or("");
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ));
        if stream.write_all(request.as_bytes()).is_err() {
            return (0, String::new(), String::new());
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        crate::util::assert_no_canary(&response);
        let (headers, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        (status, headers.to_owned(), body.to_owned())
    }

    /// Signs in to the console as `user` with the admin token: the session cookie to send.
    pub(crate) fn sign_in(&self, user: &str, token: &str) -> String {
        let form = format!("user={user}&token={token}");
        let (status, headers, _) = self.request("POST", "/login", None, Some(&form));
        assert_eq!(status, 303, "signing in as {user}: {}", self.log());
        headers
            .lines()
            .find_map(|line| line.strip_prefix("set-cookie: "))
            .and_then(|value| value.split(';').next())
            .expect("a session cookie")
            .to_owned()
    }

    pub(crate) fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        crate::util::assert_no_canary(&log);
        log
    }

    /// The log's lines so far.
    fn log_lines(&self) -> Vec<String> {
        self.log().lines().map(str::to_owned).collect()
    }

    /// One sample of `/metrics`, by name and labels (some or all of them), from the text.
    pub(crate) fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (_, text) = self.get("/metrics");
        text.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let sent = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(sent, 0, "signal {signal}");
    }

    /// Waits for the process to exit and returns its exit code.
    fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code.
    pub(crate) fn stop(&mut self) -> i32 {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(60))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A small generated district served by its own simulator.
struct District {
    sim: CleverSim,
    id: String,
    students: usize,
}

impl District {
    async fn start(seed: u64, token: &str) -> District {
        let dataset = generate(GenSpec::new(60).with_seed(seed));
        let id = dataset.ids(Collection::Districts)[0].clone();
        let students = dataset.count_role(Role::Student);
        let sim = CleverSim::start(dataset, SimOptions::with_token(token)).await;
        District { sim, id, students }
    }

    /// Writes `<name>.toml` into `dir`: this district into `database` on `cron`.
    fn pipeline(&self, dir: &Path, name: &str, database: &str, cron: &str) {
        self.pipeline_with(dir, name, database, cron, "");
    }

    /// The same, with more tables (`[email]`...).
    fn pipeline_with(&self, dir: &Path, name: &str, database: &str, cron: &str, more: &str) {
        // A slow page is waited for, not timed out: the tests stop runs in the middle of one.
        let source = format!(
            "type = \"clever\"\nbase_url = \"{}\"\ntoken = \"{}\"\nlimit = 1000\ntimeout_secs = 60\n\
             max_attempts = 2\nbackoff_base_ms = 10",
            self.sim.base_url(),
            self.sim.token()
        );
        let extra = format!("[schedule]\ncron = \"{cron}\"\n\n{more}");
        let text = pipeline_text(name, &source, database, &extra).replacen(
            "[pipeline]\n",
            &format!("[pipeline]\ndistrict_id = \"{}\"\n", self.id),
            1,
        );
        std::fs::create_dir_all(dir).expect("the pipeline directory");
        std::fs::write(dir.join(format!("{name}.toml")), text).expect("write the pipeline");
    }
}

/// A daily time a few seconds from now, as a cron pattern with seconds (UTC): a schedule with
/// one time in the test, run when it falls due.
fn soon() -> (String, DateTime<Utc>) {
    use chrono::Timelike;
    let at = (Utc::now() + chrono::Duration::seconds(3))
        .with_nanosecond(0)
        .expect("a time");
    (daily_at(at), at)
}

/// The cron pattern, with seconds (UTC), of `at` every day.
fn daily_at(at: DateTime<Utc>) -> String {
    use chrono::Timelike;
    format!("{} {} {} * * *", at.second(), at.minute(), at.hour())
}

/// One row of `sync_runs`.
#[derive(Debug, Clone)]
struct Run {
    status: String,
    scheduled_for: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
}

async fn runs_of(db: &TestDb, pipeline: &str) -> Vec<Run> {
    let time = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .expect("a timestamp")
            .with_timezone(&Utc)
    };
    db.rows(&format!(
        "SELECT status, scheduled_for, started_at, finished_at FROM sync_runs \
         WHERE pipeline = '{pipeline}' ORDER BY started_at"
    ))
    .await
    .into_iter()
    .map(|row| {
        let fields: Vec<&str> = row.split('|').collect();
        Run {
            status: fields[0].to_owned(),
            scheduled_for: (fields[1] != "NULL").then(|| time(fields[1])),
            started_at: time(fields[2]),
            finished_at: time(fields[3]),
        }
    })
    .collect()
}

/// Whether `district`'s simulator has been asked for a page of users (answered or not).
fn asked_for_users(district: &District) -> bool {
    district
        .sim
        .received()
        .iter()
        .any(|uri| uri.starts_with("/v3.0/users"))
}

/// The services' logs, to show when a wait times out.
fn logs(services: &[&Service]) -> String {
    let logs: Vec<String> = services.iter().map(|service| service.log()).collect();
    logs.join("\n---\n")
}

/// Whether a line of the service's log says `message` (the whole of it) about `pipeline`.
fn says(line: &str, message: &str, pipeline: &str) -> bool {
    line.contains(&format!(": {message} "))
        && line
            .split_whitespace()
            .any(|field| field == format!("pipeline={pipeline}"))
}

/// How many lines of `lines` say `message` about `pipeline`.
fn count(lines: &[String], message: &str, pipeline: &str) -> usize {
    lines
        .iter()
        .filter(|line| says(line, message, pipeline))
        .count()
}

/// Parses `/metrics` with the Prometheus project's own text-format parser:
/// `name{labels}` -> value, for every sample.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        samples[f"{sample.name}{{{labels}}}"] = sample.value
print(json.dumps(samples))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with prometheus-client) on PATH");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics");
    let output = child.wait_with_output().expect("the parser");
    assert!(
        output.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the parser's JSON")
}

/// One service on SQLite: each pipeline runs at each of its times, a bad file is reported while
/// the others run, a file added later is picked up, welcome emails are delivered between runs
/// (once each), `/metrics` parses, a second service on the same database is refused, and
/// SIGTERM exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_runs_each_pipeline_at_each_of_its_times() {
    let db = TestDb::new(Backend::Sqlite).await;
    let work = db.dir.path();
    let pipelines = work.join("pipelines");
    let every_two = District::start(1, "token-a").await;
    let added_later = District::start(2, "token-b").await;
    let smtp = SmtpSink::start();
    let email = format!(
        "[email]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"Freckle <no-reply@freckle.example>\"\napp_url = \"https://app.freckle.example/\"\n\
         throttle_per_minute = 6000\n",
        smtp.port
    );
    every_two.pipeline_with(&pipelines, "every-two", &db.url, "*/2 * * * * *", &email);
    std::fs::write(
        pipelines.join("bad-zone.toml"),
        format!("[pipeline]\nname = \"bad\"\n[source]\ntype = \"clever_replay\"\ndir = \".\"\n\
         [load]\ndatabase = \"{}\"\n[schedule]\ncron = \"0 2 * * *\"\ntimezone = \"Mars/Olympus\"\n",
        db.url
    ))
    .expect("write a bad file");

    let mut service = Service::start(work, &db.url, "solo", &["--email-every-secs", "1"]);
    let started = Utc::now();
    let (code, _, stderr) = rosterflow(
        &[
            "serve",
            "--pipelines",
            pipelines.to_str().expect("utf-8"),
            "--database",
            &db.url,
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(
        code, 75,
        "a second service on one SQLite database: {stderr}"
    );
    assert!(stderr.contains("already serves"), "{stderr}");

    added_later.pipeline(&pipelines, "added-later", &db.url, "*/2 * * * * *");
    eventually(
        "the added pipeline has run",
        Duration::from_secs(30),
        || logs(&[&service]),
        || async { runs_of(&db, "added-later").await.len() >= 2 },
    )
    .await;
    // A removed file is no longer scheduled. Its runs are counted once the service has read the
    // directory without it, every run of it that had started has its row, and the service has
    // started a run of the other pipeline since.
    std::fs::remove_file(pipelines.join("added-later.toml")).expect("remove a pipeline file");
    let removed = "pipeline removed: no longer scheduled";
    eventually(
        "the service has dropped the removed pipeline and moved on",
        Duration::from_secs(30),
        || logs(&[&service]),
        || async {
            let lines = service.log_lines();
            let Some(at) = lines
                .iter()
                .position(|line| says(line, removed, "added-later"))
            else {
                return false;
            };
            let moved_on = count(&lines[at..], "run starting", "every-two") > 0;
            let started = count(&lines, "run starting", "added-later");
            moved_on && runs_of(&db, "added-later").await.len() == started
        },
    )
    .await;
    let after_removal = runs_of(&db, "added-later").await.len();
    eventually(
        "six times have run",
        Duration::from_secs(30),
        || logs(&[&service]),
        || async { runs_of(&db, "every-two").await.len() >= 6 },
    )
    .await;
    assert_eq!(runs_of(&db, "added-later").await.len(), after_removal);

    assert_eq!(service.get("/readyz"), (200, "ready\n".to_owned()));
    let metrics = parse_metrics(&service.get("/metrics").1);
    let committed = metrics[r#"rosterflow_runs_total{outcome="committed",pipeline="every-two"}"#];
    assert!(committed >= 6.0, "{metrics:#?}");
    assert_eq!(metrics["rosterflow_pipeline_files_invalid{}"], 1.0);
    let next = metrics[r#"rosterflow_next_run_timestamp_seconds{pipeline="every-two"}"#];
    assert!(next > started.timestamp() as f64, "{metrics:#?}");
    assert!(metrics.contains_key(r#"rosterflow_run_duration_seconds_count{pipeline="every-two"}"#));

    assert_eq!(service.stop(), 0, "{}", service.log());
    let log = service.log();
    assert!(
        log.contains("Mars/Olympus"),
        "the bad file is reported:\n{log}"
    );
    let lines = service.log_lines();
    let at = lines
        .iter()
        .position(|line| says(line, removed, "added-later"))
        .expect("the removal is logged");
    assert_eq!(
        count(&lines[at..], "run queued", "added-later"),
        0,
        "nothing queued for a removed pipeline:\n{log}"
    );

    // Each time from the second on had exactly one run, none missed.
    let runs = runs_of(&db, "every-two").await;
    assert!(
        runs.iter().all(|run| run.status == "committed"),
        "{runs:#?}"
    );
    let mut times: Vec<DateTime<Utc>> = runs.iter().filter_map(|run| run.scheduled_for).collect();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), runs.len(), "one run per time: {runs:#?}");
    for pair in times[1..].windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(2), "{times:?}");
    }
    let students = db.scalar("SELECT COUNT(*) FROM students").await as usize;
    assert_eq!(students, every_two.students + added_later.students);

    // Every welcome email of the pipeline with an [email] table went out once; the other
    // pipeline's wait in the outbox.
    let outbox = |district: &str, status: &str| {
        format!(
            "SELECT COUNT(*) FROM email_outbox o JOIN districts d ON d.id = o.district_id \
             WHERE d.key = '{district}' AND o.status = '{status}'"
        )
    };
    let sent = db.scalar(&outbox(&every_two.id, "sent")).await;
    assert!(sent > 0);
    assert_eq!(db.scalar(&outbox(&every_two.id, "pending")).await, 0);
    assert_eq!(db.scalar(&outbox(&added_later.id, "sent")).await, 0);
    let messages = smtp.messages();
    assert_eq!(messages.len() as i64, sent);
    let mut recipients: Vec<&String> = messages.iter().flat_map(|m| &m.rcpt_tos).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), messages.len(), "one email per teacher");
    assert!(
        metrics[r#"rosterflow_welcome_emails_total{outcome="sent",pipeline="every-two"}"#] > 0.0
    );
}

/// A time missed while no service ran is run once at start-up, within the catch-up window,
/// and not again by the next start; with no window it waits for the next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_time_runs_once_at_start_up() {
    use chrono::Timelike;
    let db = TestDb::new(Backend::Sqlite).await;
    let work = db.dir.path();
    let pipelines = work.join("pipelines");
    let missed = (Utc::now() - chrono::Duration::seconds(30))
        .with_nanosecond(0)
        .expect("a time");
    let cron = format!(
        "{} {} {} * * *",
        missed.second(),
        missed.minute(),
        missed.hour()
    );
    let caught_up = District::start(4, "token-d").await;
    let not_caught_up = District::start(5, "token-e").await;
    caught_up.pipeline(&pipelines, "caught-up", &db.url, &cron);
    not_caught_up.pipeline_with(
        &pipelines,
        "not-caught-up",
        &db.url,
        &cron,
        "catch_up_mins = 0\n",
    );
    for start in 0..2 {
        let ran_before = runs_of(&db, "caught-up").await.len();
        let mut service = Service::start(work, &db.url, "solo", &[]);
        eventually(
            "the missed time has run",
            Duration::from_secs(30),
            || logs(&[&service]),
            || async { !runs_of(&db, "caught-up").await.is_empty() },
        )
        .await;
        // The scheduler decides at its first turn whether to catch up, and sets each pipeline's
        // next-time gauge at the end of that turn; then every run it queued is waited out.
        eventually(
            "the scheduler's first turn is over and what it queued has run",
            Duration::from_secs(30),
            || logs(&[&service]),
            || async {
                let turned = ["caught-up", "not-caught-up"].iter().all(|pipeline| {
                    service
                        .sample(
                            "rosterflow_next_run_timestamp_seconds",
                            &[("pipeline", pipeline)],
                        )
                        .is_some()
                });
                let lines = service.log_lines();
                let started = count(&lines, "run starting", "caught-up");
                let handled = started + count(&lines, "this time has had its run", "caught-up");
                turned
                    && count(&lines, "run queued", "caught-up") == handled
                    && runs_of(&db, "caught-up").await.len() == ran_before + started
            },
        )
        .await;
        assert_eq!(service.stop(), 0);
        let catch_ups = service.log().matches("catching up a run").count();
        assert_eq!(
            catch_ups,
            usize::from(start == 0),
            "start {start}:\n{}",
            service.log()
        );
        let runs = runs_of(&db, "caught-up").await;
        assert_eq!(runs.len(), 1, "start {start}: {runs:#?}");
        assert_eq!(runs[0].scheduled_for, Some(missed));
        assert!(runs_of(&db, "not-caught-up").await.is_empty());
    }
}

/// A run that fails for a transient reason (Clever answering 503 past the client's own retries)
/// is tried again with backoff and commits; one whose token Clever refuses is not tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_a_refused_token_is_not() {
    let db = TestDb::new(Backend::Sqlite).await;
    let work = db.dir.path();
    let pipelines = work.join("pipelines");
    let flaky = District::start(10, "token-flaky").await;
    flaky.sim.inject_on("/v3.0/districts", Fault::Status(503));
    flaky.sim.inject_on("/v3.0/districts", Fault::Status(503));
    let refused = District::start(11, "token-refused").await;
    refused.sim.configure(|options| options.forbidden = true);
    // One run at a time, a retry (and its backoff) inside its run's turn: the refused run, due a
    // second before the flaky one, has had every attempt it will get once the flaky one commits.
    // The files come once the service runs, so that neither time passes before it starts (a
    // time missed at start-up is caught up, in the order of the pipelines' names).
    std::fs::create_dir_all(&pipelines).expect("the pipeline directory");
    let mut service = Service::start(
        work,
        &db.url,
        "solo",
        &["--retry-backoff-secs", "1", "--max-runs", "1"],
    );
    let (refused_cron, refused_at) = soon();
    let at = refused_at + chrono::Duration::seconds(1);
    refused.pipeline(&pipelines, "refused", &db.url, &refused_cron);
    flaky.pipeline(&pipelines, "flaky", &db.url, &daily_at(at));
    eventually(
        "the flaky run has committed",
        Duration::from_secs(60),
        || logs(&[&service]),
        || async {
            runs_of(&db, "flaky")
                .await
                .iter()
                .any(|run| run.status == "committed")
        },
    )
    .await;
    let metrics = parse_metrics(&service.get("/metrics").1);
    assert_eq!(service.stop(), 0);

    let flaky_runs = runs_of(&db, "flaky").await;
    let statuses: Vec<&str> = flaky_runs.iter().map(|run| run.status.as_str()).collect();
    assert_eq!(statuses, ["failed", "committed"], "{flaky_runs:#?}");
    assert!(flaky_runs.iter().all(|run| run.scheduled_for == Some(at)));
    let refused_runs = runs_of(&db, "refused").await;
    assert_eq!(refused_runs.len(), 1, "tried once: {refused_runs:#?}");
    assert_eq!(refused_runs[0].status, "failed");
    assert_eq!(refused_runs[0].scheduled_for, Some(refused_at));
    assert!(
        refused_runs[0].finished_at <= flaky_runs[0].started_at,
        "the refused run's turn came first: {refused_runs:#?} {flaky_runs:#?}"
    );
    assert_eq!(
        metrics[r#"rosterflow_runs_total{outcome="retrying",pipeline="flaky"}"#],
        1.0
    );
    assert_eq!(
        metrics[r#"rosterflow_runs_total{outcome="config_error",pipeline="refused"}"#],
        1.0
    );
    assert!(
        metrics["rosterflow_http_retries_total{}"] >= 1.0,
        "{metrics:#?}"
    );
}

/// SIGTERM while a run waits on Clever: with a short drain the run is abandoned and nothing of
/// it is in the database; with a long one it finishes and commits. Either way the exit is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_the_database_before_or_after_a_run() {
    for (drain, committed) in [("1", false), ("30", true)] {
        let db = TestDb::new(Backend::Sqlite).await;
        let work = db.dir.path();
        let district = District::start(3, "token-c").await;
        district
            .sim
            .inject_on("/v3.0/users", Fault::Slow(Duration::from_secs(4)));
        let (cron, _) = soon();
        district.pipeline(&work.join("pipelines"), "slow", &db.url, &cron);
        let mut service = Service::start(work, &db.url, "solo", &["--drain-secs", drain]);
        // The run waits on the slow users page.
        eventually(
            "the run waits on Clever",
            Duration::from_secs(30),
            || logs(&[&service]),
            || async { service.log().contains("run starting") && asked_for_users(&district) },
        )
        .await;
        assert_eq!(service.stop(), 0, "{}", service.log());
        let runs = runs_of(&db, "slow").await;
        let students = db.scalar("SELECT COUNT(*) FROM students").await as usize;
        if committed {
            assert_eq!(runs.len(), 1, "{runs:#?}");
            assert_eq!(runs[0].status, "committed");
            assert_eq!(students, district.students);
        } else {
            assert!(
                runs.is_empty(),
                "an abandoned run records nothing: {runs:#?}"
            );
            assert_eq!(students, 0);
        }
    }
}

/// Two services on one PostgreSQL, ten districts every three seconds: every time of every
/// pipeline runs exactly once, both services take runs, and no district's runs overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_run_each_time_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let work = db.dir.path();
    let mut districts = Vec::new();
    for seed in 0..10 {
        let district = District::start(100 + seed, &format!("token-{seed}")).await;
        district.pipeline(
            &work.join("pipelines"),
            &format!("district-{seed}"),
            &db.url,
            "*/3 * * * * *",
        );
        districts.push(district);
    }
    let mut a = Service::start(work, &db.url, "a", &[]);
    let mut b = Service::start(work, &db.url, "b", &[]);
    let from = Utc::now() + chrono::Duration::seconds(2);
    // The window: from `from` to the last time every district has run, once each has run four
    // times in it (about 12 s of the schedule).
    let committed_since_from = |runs: Vec<Run>| -> Vec<DateTime<Utc>> {
        runs.into_iter()
            .filter(|run| run.status == "committed")
            .filter_map(|run| run.scheduled_for)
            .filter(|at| *at >= from)
            .collect()
    };
    eventually(
        "every district has run four times",
        Duration::from_secs(90),
        || logs(&[&a, &b]),
        || async {
            for seed in 0..districts.len() {
                let runs = runs_of(&db, &format!("district-{seed}")).await;
                if committed_since_from(runs).len() < 4 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let mut until = DateTime::<Utc>::MAX_UTC;
    for seed in 0..districts.len() {
        let runs = runs_of(&db, &format!("district-{seed}")).await;
        let last = committed_since_from(runs).into_iter().max();
        until = until.min(last.expect("the district has run"));
    }
    assert_eq!(a.stop(), 0, "{}", a.log());
    assert_eq!(b.stop(), 0, "{}", b.log());

    for (seed, district) in districts.iter().enumerate() {
        let name = format!("district-{seed}");
        let runs = runs_of(&db, &name).await;
        let mut times: Vec<DateTime<Utc>> = runs
            .iter()
            .filter(|run| run.status == "committed")
            .filter_map(|run| run.scheduled_for)
            .collect();
        times.sort();
        let expected: Vec<DateTime<Utc>> = times
            .iter()
            .copied()
            .filter(|at| *at >= from && *at <= until)
            .collect();
        assert!(expected.len() >= 3, "{name}: {runs:#?}");
        for pair in expected.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                chrono::Duration::seconds(3),
                "{name}: a time missed or doubled: {times:?}"
            );
        }
        let mut unique = times.clone();
        unique.dedup();
        assert_eq!(unique, times, "{name}: a time ran twice");
        for pair in runs.windows(2) {
            assert!(
                pair[1].started_at >= pair[0].finished_at,
                "{name}: runs overlap: {pair:#?}"
            );
        }
        let students = db
            .scalar(&format!(
                "SELECT COUNT(*) FROM students s JOIN districts d ON d.id = s.district_id \
                 WHERE d.key = '{}'",
                district.id
            ))
            .await as usize;
        assert_eq!(students, district.students, "{name}");
    }
    let workers = db
        .scalar("SELECT COUNT(DISTINCT lock_by) FROM apalis.jobs WHERE status = 'Done'")
        .await;
    assert_eq!(workers, 2, "both services took runs");
}

/// A district on PostgreSQL whose first users page is slow, a pipeline with one time a few
/// seconds away, and service `a` running that time, waiting on the page (its lock taken).
struct Taken {
    db: TestDb,
    district: District,
    at: DateTime<Utc>,
    a: Service,
}

impl Taken {
    async fn start(seed: u64, slow: Duration, options: &[&str]) -> Taken {
        let db = TestDb::new(Backend::Postgres).await;
        let district = District::start(seed, &format!("token-{seed}")).await;
        district.sim.inject_on("/v3.0/users", Fault::Slow(slow));
        let (cron, at) = soon();
        district.pipeline(&db.dir.path().join("pipelines"), "taken", &db.url, &cron);
        let a = Service::start(db.dir.path(), &db.url, "a", options);
        // The lock is taken before the pull, which then waits on the slow page.
        eventually(
            "a's run holds the district's lock and waits on Clever",
            Duration::from_secs(30),
            || logs(&[&a]),
            || async {
                a.log_lines().iter().any(|line| {
                    line.contains(": holding the district's run lock ")
                        && line.contains(&format!("district=\"{}\"", district.id))
                }) && asked_for_users(&district)
            },
        )
        .await;
        Taken {
            db,
            district,
            at,
            a,
        }
    }

    /// Service `b` beside `a`, once it has committed the run `a` held.
    async fn taken_over_by_b(&self, options: &[&str]) -> Service {
        let b = Service::start(self.db.dir.path(), &self.db.url, "b", options);
        eventually(
            "b has run the time a held",
            Duration::from_secs(60),
            || logs(&[&self.a, &b]),
            || async {
                runs_of(&self.db, "taken")
                    .await
                    .iter()
                    .any(|run| run.status == "committed")
            },
        )
        .await;
        b
    }

    /// The one run applied for the time, started after `after`, and the district loaded once.
    async fn applied_once_after(&self, after: DateTime<Utc>) -> Vec<Run> {
        let runs = runs_of(&self.db, "taken").await;
        let applied: Vec<&Run> = runs.iter().filter(|run| run.status != "failed").collect();
        assert_eq!(applied.len(), 1, "{runs:#?}");
        assert_eq!(applied[0].scheduled_for, Some(self.at));
        assert!(applied[0].started_at > after, "b's run: {runs:#?}");
        let students = self.db.scalar("SELECT COUNT(*) FROM students").await as usize;
        assert_eq!(students, self.district.students);
        runs
    }
}

/// A service killed in the middle of a run: the other takes the run over once the first's
/// heartbeats stop, and the district is loaded exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_services_run_is_taken_over() {
    let mut taken = Taken::start(7, Duration::from_secs(30), &[]).await;
    taken.a.signal(libc::SIGKILL);
    taken.a.wait(Duration::from_secs(10));
    let killed_at = Utc::now();
    let mut b = taken.taken_over_by_b(&[]).await;
    assert_eq!(b.stop(), 0, "{}", b.log());
    let runs = taken.applied_once_after(killed_at).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
}

/// A service stopped (SIGSTOP) while it holds a district's lock: PostgreSQL ends its silent
/// session after the lease, the other service runs the district, and when the first wakes up
/// nothing it writes commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_that_wakes_commits_nothing() {
    // Longer than the queue's hand-over (heartbeats missed for 10 s): b takes the run first and
    // waits for the lock until PostgreSQL ends a's silent session.
    let lease = ["--lease-secs", "12"];
    let mut taken = Taken::start(8, Duration::from_secs(8), &lease).await;
    taken.a.signal(libc::SIGSTOP);
    let stopped_at = Utc::now();
    let mut b = taken.taken_over_by_b(&lease).await;
    taken.a.signal(libc::SIGCONT);
    // a's page arrives, it plans, and its write finds its session gone.
    eventually(
        "a has given up its run",
        Duration::from_secs(30),
        || logs(&[&taken.a, &b]),
        || async { taken.a.log().contains("another service ran this time") },
    )
    .await;
    assert_eq!(taken.a.stop(), 0, "{}", taken.a.log());
    assert_eq!(b.stop(), 0, "{}", b.log());
    // a's attempt failed, and is recorded so; b's run is the one applied.
    let runs = taken.applied_once_after(stopped_at).await;
    assert!(
        runs.iter()
            .any(|run| run.status == "failed" && run.started_at < stopped_at),
        "a's run is recorded as failed: {runs:#?}"
    );
}

/// The admin console in headless Chromium: sign in, read the dashboard, the pipeline's page and
/// the held run's page on a laptop and on a phone (screenshots in `target/console-screenshots/`),
/// find the held run, read its plan's changes, approve it, see it applied, with the approval
/// recorded under the admin's name. Requests
/// without a session, or without the session's CSRF token, change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_approves_a_held_run_in_a_browser() {
    let db = TestDb::new(Backend::Sqlite).await;
    let work = db.dir.path();
    let district = District::start(9, "token-console").await;
    let pipelines = work.join("pipelines");
    // New York's time zone: the console shows its times in it.
    district.pipeline_with(
        &pipelines,
        "console-demo",
        &db.url,
        "0 3 1 1 *",
        "timezone = \"America/New_York\"\n",
    );
    let pipeline = rosterflow_pipeline::config::load(
        &pipelines.join("console-demo.toml"),
        &Default::default(),
    )
    .expect("the pipeline");
    let run = |pipeline| async move {
        crate::util::run(pipeline, &rosterflow_pipeline::sync::RunOptions::default())
            .await
            .expect("a run")
            .status
    };
    assert!(matches!(run(&pipeline).await, RunStatus::Committed { .. }));
    // A third of the students leave: the next run archives more than the safety limit allows.
    let leaving: Vec<String> = district.sim.read(|d| d.ids_with_role(Role::Student))[..20].to_vec();
    district.sim.update(|d| {
        for student in &leaving {
            d.remove_user(student);
        }
    });
    let RunStatus::Held { run_id: held, .. } = run(&pipeline).await else {
        panic!("the second run is held");
    };

    let token = "console-test-token";
    let mut service = Service::start_with(
        work,
        &db.url,
        "console",
        &[],
        &[("ROSTERFLOW_ADMIN_TOKEN", token)],
    );
    let approve = format!("/runs/{held}/approve");
    let (status, _, _) = service.request("POST", &approve, None, Some("csrf=whatever"));
    assert_eq!(status, 403, "no session");
    let cookie = service.sign_in("mallory", token);
    let (status, _, _) = service.request("POST", &approve, Some(&cookie), Some(""));
    assert_eq!(status, 403, "no CSRF token");
    let (status, _, _) = service.request("POST", &approve, Some(&cookie), Some("csrf=00ff"));
    assert_eq!(status, 403, "a wrong CSRF token");
    let (status, _, _) = service.request("POST", "/login", None, Some("user=mallory&token=guess"));
    assert_eq!(status, 401, "a wrong admin token");
    let status_of_held = format!("SELECT status FROM sync_runs WHERE id = {held}");
    assert_eq!(db.rows(&status_of_held).await, ["held"]);

    // Screenshots for a person to look at, kept after the test (not committed).
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::util::repo().join("target"))
        .join("console-screenshots");
    println!("console screenshots: {}", shots.display());
    let output = Command::new("python3")
        .arg(crate::util::repo().join("tests/integration/console.py"))
        .args([&format!("http://127.0.0.1:{}", service.port), token, &held.to_string()])
        .arg(&shots)
        .output()
        .expect("python3 with selenium, and Debian's chromium and chromedriver (tests/run installs them)");
    assert!(
        output.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        service.log()
    );
    assert_eq!(service.stop(), 0);
    assert_eq!(
        db.rows(&format!(
            "SELECT status, decided_by FROM sync_runs WHERE id = {held}"
        ))
        .await,
        ["approved|console:Alice Admin"]
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM students WHERE archived_at IS NOT NULL")
            .await,
        20
    );
}
