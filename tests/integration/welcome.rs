//! Welcome emails end to end: the `rosterflow` binary syncs Clever's demo district (89 teachers,
//! 87 of them with a usable email address), which queues one email per new teacher, and
//! `rosterflow email send` delivers them to a real SMTP server on loopback
//! (tests/integration/smtp_sink.py), on SQLite and PostgreSQL. Every new teacher gets exactly one
//! email across reruns, across a delivery killed mid-send, and across a held run that is
//! approved later; a held run queues nothing; an archived teacher gets none; `email resend`
//! sends one more with a new link.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rosterflow_store::db;
use rosterflow_tests::district::{Collection, Dataset, Role};
use serde_json::Value;

use crate::email::SmtpSink;
use crate::on_both_backends;
use crate::util::{
    Backend, TestDb, copy_dir, pipeline_text, replay_source, repo, rosterflow, rosterflow_bin,
};

/// The demo district's Clever id.
const DISTRICT: &str = "5a0c91b95c7cc000010d417c";

/// The demo district's teachers.
const DEMO_TEACHERS: usize = 89;

/// The two demo teachers whose Clever `email` is not an address (a stray quote in one, no `@` in
/// the other). Their welcome emails are marked `failed` with the reason at once, never sent and
/// never retried.
const UNDELIVERABLE: [&str; 2] = ["hauc\"k.haylie@example.com", "seth_schoen.example.org"];

/// The demo teachers who can get an email.
const DEMO_DELIVERABLE: usize = DEMO_TEACHERS - UNDELIVERABLE.len();

/// The recipient of every welcome message the sink accepted so far, in the order they arrived.
fn received(sink: &SmtpSink) -> Vec<String> {
    sink.messages()
        .into_iter()
        .map(|message| {
            assert_eq!(message.subject, "Welcome to Freckle");
            assert_eq!(message.rcpt_tos.len(), 1, "one recipient per message");
            message.rcpt_tos[0].clone()
        })
        .collect()
}

/// A loopback port whose connections the kernel completes but nobody accepts, so no SMTP
/// greeting ever comes: a client connects, then waits for the greeting until its timeout. No
/// message can get through it, however the test and the process under test are scheduled.
struct MuteServer {
    listener: TcpListener,
}

impl MuteServer {
    fn bind() -> MuteServer {
        MuteServer {
            listener: TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"),
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().expect("local addr").port()
    }

    /// Waits until `run` connects, which it does only to send a message it has claimed, and
    /// returns the connection. Keep it open until `run` is killed: closing it would fail the
    /// send instead.
    fn wait_for_client(&self, run: &mut Running) -> TcpStream {
        self.listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(status) = run.0.try_wait().expect("poll rosterflow") {
                        panic!("rosterflow ended ({status}) without connecting to the SMTP server");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

/// A running `rosterflow` process, killed when dropped so that a failing test leaves none.
struct Running(Child);

impl Running {
    /// Starts `rosterflow ARGS...`.
    fn start(args: &[&str]) -> Running {
        Running(
            Command::new(rosterflow_bin())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn rosterflow"),
        )
    }

    /// SIGKILL, after checking the process had not ended by itself.
    fn kill(mut self) {
        assert!(
            self.0.try_wait().expect("poll rosterflow").is_none(),
            "rosterflow ended before it was killed"
        );
        self.0.kill().expect("SIGKILL rosterflow");
        self.0.wait().expect("reap rosterflow");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One test's world: a fresh DB, a recording the test may edit, and a pipeline file that
/// replays it into the DB with `[pipeline] district_id` and an `[email]` table.
struct Demo {
    db: TestDb,
    recording: PathBuf,
    pipeline: PathBuf,
}

impl Demo {
    /// `recording` is replayed as it is; with `None`, a copy of `pipelines/demo` the test may edit.
    async fn new(backend: Backend, recording: Option<PathBuf>) -> Demo {
        let db = TestDb::new(backend).await;
        let recording = recording.unwrap_or_else(|| {
            let copy = db.dir.path().join("recording");
            copy_dir(&repo().join("pipelines/demo"), &copy);
            copy
        });
        let pipeline = db.dir.path().join("demo.toml");
        Demo {
            db,
            recording,
            pipeline,
        }
    }

    /// (Re)writes the pipeline file, its `[email]` table pointing at `smtp_port` on loopback.
    fn point_email_at(&self, smtp_port: u16) {
        let email = format!(
            "[email]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n\
             from = \"Freckle <no-reply@freckle.example>\"\n\
             app_url = \"https://app.freckle.example\"\n\
             throttle_per_minute = 60000\nretry_backoff_secs = 1\ntimeout_secs = 120"
        );
        let text = pipeline_text(
            "demo",
            &replay_source(&self.recording),
            &self.db.url,
            &email,
        )
        .replacen(
            "[pipeline]\n",
            &format!("[pipeline]\ndistrict_id = \"{DISTRICT}\"\n"),
            1,
        );
        std::fs::write(&self.pipeline, text).expect("write the pipeline file");
    }

    fn path(&self) -> &str {
        self.pipeline.to_str().expect("a UTF-8 path")
    }

    /// `rosterflow run` to the end: (exit code, stdout, stderr).
    fn run(&self) -> (i32, String, String) {
        rosterflow(&["run", self.path()], &[])
    }

    /// A clean run: exit code 0.
    fn run_ok(&self) {
        let (code, stdout, stderr) = self.run();
        assert_eq!(code, 0, "{stdout}\n{stderr}");
    }

    /// `rosterflow email send`: the exit code (0 all went, 1 some could not) and stdout.
    fn send(&self) -> (i32, String) {
        let (code, stdout, stderr) = rosterflow(&["email", "send", self.path()], &[]);
        assert!(matches!(code, 0 | 1), "{stdout}\n{stderr}");
        (code, stdout)
    }

    /// The addresses of the recording's teachers that can get an email, sorted.
    fn deliverable(&self) -> Vec<String> {
        let all = self.teacher_emails();
        for bad in UNDELIVERABLE {
            assert!(all.iter().any(|email| email == bad), "{bad} left the demo");
        }
        all.into_iter()
            .filter(|email| !UNDELIVERABLE.contains(&email.as_str()))
            .collect()
    }

    /// The teachers' addresses in the recording, sorted.
    fn teacher_emails(&self) -> Vec<String> {
        let dataset = Dataset::from_recording(&self.recording).expect("read the recording");
        let mut emails: Vec<String> = dataset
            .ids_with_role(Role::Teacher)
            .iter()
            .map(|id| {
                let user = dataset.get(Collection::Users, id).expect("a teacher");
                user["email"].as_str().expect("an email").to_owned()
            })
            .collect();
        emails.sort();
        emails
    }

    /// Edits the recording through the simulator's dataset and writes it back in the demo's
    /// layout.
    fn edit_recording(&self, edit: impl FnOnce(&mut Dataset)) {
        let mut dataset = Dataset::from_recording(&self.recording).expect("read the recording");
        edit(&mut dataset);
        std::fs::remove_dir_all(&self.recording).expect("clear the recording");
        dataset
            .write_recording(&self.recording, 10_000)
            .expect("write the recording");
        // Like the demo, leave out the collections it lacks: a replay then synthesises the
        // schools, terms and courses that sections name, where an empty page would say the
        // district has none.
        for collection in Collection::DATA {
            if dataset.is_empty(collection) {
                std::fs::remove_dir_all(self.recording.join(collection.name()))
                    .expect("drop an empty collection");
            }
        }
    }

    /// (rows, sent, pending, failed) of the welcome outbox.
    async fn outbox(&self) -> (i64, i64, i64, i64) {
        let count = |status: &str| {
            format!(
                "SELECT COUNT(*) FROM email_outbox WHERE kind = 'welcome' AND status = '{status}'"
            )
        };
        (
            self.db.scalar("SELECT COUNT(*) FROM email_outbox").await,
            self.db.scalar(&count("sent")).await,
            self.db.scalar(&count("pending")).await,
            self.db.scalar(&count("failed")).await,
        )
    }

    /// The recipients of the welcome emails marked `failed`, sorted, after checking each says
    /// why and was never tried.
    async fn failed_recipients(&self) -> Vec<String> {
        let rows = self
            .db
            .rows(
                "SELECT recipient, attempts, last_error FROM email_outbox \
                 WHERE status = 'failed' ORDER BY recipient",
            )
            .await;
        rows.iter()
            .map(|row| {
                let mut fields = row.splitn(3, '|');
                let recipient = fields.next().expect("recipient");
                assert_eq!(fields.next(), Some("0"), "never tried: {row}");
                let reason = fields.next().expect("last_error");
                assert!(reason.contains("not a valid email address"), "{row}");
                recipient.to_owned()
            })
            .collect()
    }

    /// A delivery pass, as `rosterflow email send` makes, at the end of the claims still on
    /// pending welcome emails (or now, if later). A pass that dies mid-send leaves its row
    /// claimed until `next_attempt_at` (`retry_backoff_secs` later), so that an overlapping pass
    /// leaves it alone; only a pass after that may take it. In this process: the command reads
    /// the system's clock, the library takes the time.
    async fn send_after_claims(&self) {
        let claims = self
            .db
            .rows(
                "SELECT next_attempt_at FROM email_outbox \
                 WHERE status = 'pending' AND next_attempt_at IS NOT NULL",
            )
            .await;
        let now = claims
            .iter()
            .map(|claim| db::parse_timestamp(claim).expect("a timestamp"))
            .fold(chrono::Utc::now(), std::cmp::Ord::max);
        let pipeline = rosterflow_pipeline::config::load(&self.pipeline, &Default::default())
            .expect("the pipeline");
        let config = pipeline.file.email.expect("an [email] table");
        let db = self.db.open().await;
        rosterflow_accounts::email::deliver_pending(&db, DISTRICT, &config, now)
            .await
            .expect("a delivery pass");
    }
}

/// Adds a teacher to the dataset, a copy of an existing one under a new id, name and address.
pub(crate) fn hire(dataset: &mut Dataset, first: &str, email: &str) -> String {
    let template = dataset.ids_with_role(Role::Teacher)[0].clone();
    let mut teacher = dataset
        .get(Collection::Users, &template)
        .expect("a teacher");
    let id = dataset.new_id();
    teacher["id"] = Value::from(id.as_str());
    teacher["email"] = Value::from(email);
    teacher["name"] = serde_json::json!({ "first": first, "last": "Newhire" });
    let role = &mut teacher["roles"]["teacher"];
    role["sis_id"] = Value::from(format!("new-{first}"));
    role["credentials"]["district_username"] = Value::from(first.to_lowercase());
    if let Some(role) = role.as_object_mut() {
        for field in ["state_id", "teacher_number", "legacy_id"] {
            role.remove(field);
        }
    }
    assert!(dataset.upsert(Collection::Users, teacher).is_none());
    id
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

/// The demo loads, then reruns twice, each run followed by a delivery: one email per teacher,
/// and a failed row with the reason for each of the two whose address is unusable. A resend
/// brings one teacher one more email, with a new link that voids the old one.
async fn welcome_emails_reach_each_new_teacher_once_across_reruns(backend: Backend) {
    let demo = Demo::new(backend, Some(repo().join("pipelines/demo"))).await;
    let sink = SmtpSink::start();
    demo.point_email_at(sink.port);
    assert_eq!(demo.teacher_emails().len(), DEMO_TEACHERS);
    let deliverable = demo.deliverable();

    demo.run_ok();
    assert!(received(&sink).is_empty(), "a run only queues");
    assert_eq!(demo.outbox().await, (89, 0, 89, 0));
    let (code, stdout) = demo.send();
    assert_eq!(code, 1, "two addresses are unusable: {stdout}");
    assert!(stdout.contains("87 sent"), "{stdout}");
    assert_eq!(sorted(received(&sink)), deliverable);
    for run in 2..=3 {
        demo.run_ok();
        assert_eq!(demo.send().0, 0);
        assert_eq!(sorted(received(&sink)), deliverable, "after run {run}");
    }
    assert_eq!(demo.outbox().await, (89, 87, 0, 2));
    assert_eq!(demo.failed_recipients().await, UNDELIVERABLE);
    assert_eq!(
        demo.db
            .scalar("SELECT COUNT(*) FROM email_outbox WHERE status = 'sent' AND attempts <> 1")
            .await,
        0,
        "each sent message went on its first attempt"
    );
    assert_eq!(
        demo.db
            .rows("SELECT status FROM sync_runs ORDER BY id")
            .await,
        ["committed", "committed", "committed"]
    );

    // A lost link: the teacher gets one new email, and the new token replaces the old one.
    let address = &deliverable[0];
    let token_of = format!(
        "SELECT a.password_token_hash FROM teacher_accounts a JOIN teachers t ON t.id = a.teacher_id \
         WHERE t.email = '{address}'"
    );
    let old_token = demo.db.rows(&token_of).await;
    let source_id = demo
        .db
        .rows(&format!(
            "SELECT source_id FROM teachers WHERE email = '{address}'"
        ))
        .await;
    let (code, stdout, stderr) = rosterflow(&["email", "resend", demo.path(), &source_id[0]], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(demo.send().0, 0);
    let recipients = received(&sink);
    assert_eq!(recipients.len(), DEMO_DELIVERABLE + 1);
    assert_eq!(&recipients[DEMO_DELIVERABLE], address);
    assert_ne!(demo.db.rows(&token_of).await, old_token, "a new link");
    let (code, _, stderr) = rosterflow(&["email", "resend", demo.path(), "no-such-teacher"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no teacher no-such-teacher"), "{stderr}");
}

/// A delivery is killed in the middle of sending (it has claimed a message and connected to a
/// server that never answers). The next delivery, the server up, sends each email once; a
/// teacher who appears later gets exactly one too, and one archived before delivery gets none.
async fn a_crash_between_commit_and_delivery_still_sends_each_email_once(backend: Backend) {
    let demo = Demo::new(backend, None).await;
    let mute = MuteServer::bind();
    demo.point_email_at(mute.port());
    demo.run_ok();
    assert_eq!(demo.outbox().await, (89, 0, 89, 0));

    let claimed = "SELECT COUNT(*) FROM email_outbox WHERE attempts > 0";
    let mut send = Running::start(&["email", "send", demo.path()]);
    let connection = mute.wait_for_client(&mut send);
    send.kill();
    drop(connection);
    let (_, sent, _, _) = demo.outbox().await;
    assert_eq!(sent, 0);
    assert!(
        demo.db.scalar(claimed).await >= 1,
        "a message was in flight"
    );

    let sink = SmtpSink::start();
    demo.point_email_at(sink.port);
    demo.send_after_claims().await;
    assert_eq!(sorted(received(&sink)), demo.deliverable());
    assert_eq!(demo.outbox().await, (89, 87, 0, 2));
    assert_eq!(demo.failed_recipients().await, UNDELIVERABLE);

    demo.edit_recording(|dataset| {
        hire(dataset, "Noor", "noor.newhire@example.net");
    });
    demo.run_ok();
    assert_eq!(demo.send().0, 0);
    let recipients = received(&sink);
    assert_eq!(recipients.len(), DEMO_DELIVERABLE + 1);
    assert_eq!(recipients[DEMO_DELIVERABLE..], ["noor.newhire@example.net"]);
    assert_eq!(sorted(recipients), demo.deliverable());
    assert_eq!(demo.outbox().await, (90, 88, 0, 2));

    // Hired and gone again before any delivery: the email waits, and is never sent.
    let gone = std::cell::RefCell::new(String::new());
    demo.edit_recording(|dataset| {
        *gone.borrow_mut() = hire(dataset, "Omar", "omar.newhire@example.net");
    });
    demo.run_ok();
    let gone = gone.into_inner();
    demo.edit_recording(|dataset| {
        assert!(dataset.remove_user(&gone));
    });
    demo.run_ok();
    assert_eq!(demo.send().0, 0);
    assert_eq!(
        received(&sink).len(),
        DEMO_DELIVERABLE + 1,
        "no email once archived"
    );
    assert_eq!(demo.outbox().await, (91, 88, 1, 2));
}

/// After the demo loads, a replay loses half the students and brings two new teachers: the run
/// is held (exit 3), queues nothing and changes no roster. Approving it queues one email for
/// each new teacher, which the next delivery sends.
async fn a_held_run_sends_no_email_until_it_is_approved(backend: Backend) {
    let demo = Demo::new(backend, None).await;
    let sink = SmtpSink::start();
    demo.point_email_at(sink.port);
    demo.run_ok();
    demo.send();
    assert_eq!(received(&sink).len(), DEMO_DELIVERABLE);
    let before = demo.db.fingerprint().await;

    let hired = ["ines.newhire@example.net", "tomas.newhire@example.net"];
    demo.edit_recording(|dataset| {
        let students = dataset.ids_with_role(Role::Student);
        for student in students.iter().step_by(2) {
            assert!(dataset.remove_user(student));
        }
        hire(dataset, "Ines", hired[0]);
        hire(dataset, "Tomas", hired[1]);
    });
    let (code, stdout, stderr) = demo.run();
    assert_eq!(code, 3, "held: {stdout}\n{stderr}");
    let run: i64 = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("run ")?
                .strip_suffix(" held for approval:")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no held run in:\n{stdout}"));
    assert!(stdout.contains("2 new teacher account(s)"), "{stdout}");
    assert_eq!(demo.send().0, 0);
    assert_eq!(
        received(&sink).len(),
        DEMO_DELIVERABLE,
        "a held run sends nothing"
    );
    assert_eq!(demo.outbox().await, (89, 87, 0, 2), "nor queues anything");
    assert_eq!(
        demo.db.fingerprint().await,
        before,
        "nor changes the roster"
    );

    let (code, stdout, stderr) = rosterflow(&["approve", demo.path(), &run.to_string()], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("run {run} approved")), "{stdout}");
    assert_eq!(demo.send().0, 0);
    let recipients = received(&sink);
    assert_eq!(recipients.len(), DEMO_DELIVERABLE + 2);
    assert_eq!(sorted(recipients[DEMO_DELIVERABLE..].to_vec()), hired);
    assert_eq!(sorted(recipients), demo.deliverable());
    assert_eq!(demo.outbox().await, (91, 89, 0, 2));
    assert_eq!(
        demo.db
            .scalar(&format!(
                "SELECT COUNT(*) FROM email_outbox WHERE run_id = {run}"
            ))
            .await,
        2
    );

    // The approved state is the source's: a rerun changes nothing and sends nothing.
    demo.run_ok();
    assert_eq!(demo.send().0, 0);
    assert_eq!(received(&sink).len(), DEMO_DELIVERABLE + 2);
}

on_both_backends!(
    welcome_emails_reach_each_new_teacher_once_across_reruns,
    a_crash_between_commit_and_delivery_still_sends_each_email_once,
    a_held_run_sends_no_email_until_it_is_approved,
);
