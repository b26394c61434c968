//! Welcome emails delivered to a real SMTP server on loopback (Python's aiosmtpd, started per
//! test), on SQLite and PostgreSQL, each test on a fresh database.
//!
//! The DB is filled with plain INSERTs of the contract rows the load writes for a new Clever
//! teacher (a teacher, an `invited` account, a pending `welcome` outbox row), per district.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::Rng;
use rosterflow_accounts::account::{self, AccountError, TeacherId};
use rosterflow_accounts::email::{self, EmailConfig, TlsMode};
use rosterflow_store::db::{self, Db};
use tempfile::TempDir;

use crate::on_both_backends;
use crate::util::{Backend, TestDb};

/// A loopback SMTP server (tests/integration/smtp_sink.py) that keeps every message it accepts.
/// Killed when dropped.
pub(crate) struct SmtpSink {
    child: Child,
    pub(crate) port: u16,
    dir: TempDir,
}

/// One message as the sink received it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Received {
    pub(crate) rcpt_tos: Vec<String>,
    from: String,
    pub(crate) subject: String,
    message_id: String,
    content_type: String,
    body: String,
}

impl SmtpSink {
    pub(crate) fn start() -> SmtpSink {
        SmtpSink::start_refusing(&[])
    }

    /// A sink that answers RCPT TO for each of `refused` with 550.
    fn start_refusing(refused: &[&str]) -> SmtpSink {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/smtp_sink.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for address in refused {
            command.arg("--refuse").arg(address);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python} {}: {e}", script.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the sink's port");
        let Ok(port) = line.trim().parse() else {
            let _ = child.kill();
            panic!(
                "the SMTP sink did not start (printed {line:?}); it needs aiosmtpd: \
                 `pip install aiosmtpd`"
            );
        };
        SmtpSink { child, port, dir }
    }

    pub(crate) fn messages(&self) -> Vec<Received> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read the sink dir")
            .map(|entry| entry.expect("dir entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|path| {
                serde_json::from_slice(&std::fs::read(path).expect("read a message"))
                    .expect("a message record")
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port with nothing listening on it.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// An `[email]` table for the sink at `port`, parsed the way the pipeline file's is (serde).
fn config(port: u16) -> EmailConfig {
    let config: EmailConfig = serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "from": "Freckle <no-reply@freckle.example>",
        "app_url": "https://app.freckle.example/",
        "throttle_per_minute": 6000,
        "max_attempts": 3,
        "retry_backoff_secs": 60,
        "retry_backoff_max_secs": 600,
        "token_ttl_hours": 72,
        "timeout_secs": 5,
    }))
    .expect("an [email] table");
    assert_eq!(config.tls, TlsMode::None);
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    config
}

fn clever_id() -> String {
    let bytes: [u8; 12] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A UTC time from its text form (this binary names chrono's types only through rosterflow).
macro_rules! at {
    ($text:literal) => {
        db::parse_timestamp($text).expect("a timestamp")
    };
}

/// A district with one new Clever teacher per entry (first name, email), as the load leaves
/// it after a committed run.
struct District {
    key: String,
    teachers: Vec<TeacherId>,
    outbox: Vec<i64>,
}

async fn seed(db: &Db, teachers: &[(&str, Option<&str>)]) -> District {
    let created = "2026-11-30T00:00:00.000000Z";
    let clever = clever_id();
    let (district_id,): (i64,) = sqlx::query_as(
        "INSERT INTO districts (key, name, created_at, updated_at) \
         VALUES ($1, 'Email Test District', $2, $2) RETURNING id",
    )
    .bind(&clever)
    .bind(created)
    .fetch_one(&db.pool)
    .await
    .expect("insert district");
    let (run_id,): (i64,) = sqlx::query_as(
        "INSERT INTO sync_runs (district_id, pipeline, status, started_at, finished_at) \
         VALUES ($1, 'email-test', 'committed', $2, $2) RETURNING id",
    )
    .bind(district_id)
    .bind(created)
    .fetch_one(&db.pool)
    .await
    .expect("insert run");
    let mut district = District {
        key: clever,
        teachers: Vec::new(),
        outbox: Vec::new(),
    };
    for (first_name, email) in teachers {
        let (teacher_id,): (i64,) = sqlx::query_as(
            "INSERT INTO teachers (district_id, source_id, email, first_name, last_name, \
             managed_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'Teacher', 'sis', $5, $5) RETURNING id",
        )
        .bind(district_id)
        .bind(clever_id())
        .bind(*email)
        .bind(*first_name)
        .bind(created)
        .fetch_one(&db.pool)
        .await
        .expect("insert teacher");
        sqlx::query(
            "INSERT INTO teacher_accounts (teacher_id, login_state, created_at) \
             VALUES ($1, 'invited', $2)",
        )
        .bind(teacher_id)
        .bind(created)
        .execute(&db.pool)
        .await
        .expect("insert account");
        let (outbox_id,): (i64,) = sqlx::query_as(
            "INSERT INTO email_outbox (district_id, run_id, kind, teacher_id, recipient, status, \
             created_at) VALUES ($1, $2, 'welcome', $3, $4, 'pending', $5) RETURNING id",
        )
        .bind(district_id)
        .bind(run_id)
        .bind(teacher_id)
        .bind(*email)
        .bind(created)
        .fetch_one(&db.pool)
        .await
        .expect("insert outbox row");
        district.teachers.push(TeacherId(teacher_id));
        district.outbox.push(outbox_id);
    }
    district
}

/// An outbox row as the tests check it.
#[derive(Debug)]
struct OutboxRow {
    status: String,
    attempts: i64,
    last_error: Option<String>,
    sent_at: Option<String>,
}

async fn outbox_row(db: &Db, id: i64) -> OutboxRow {
    let (status, attempts, last_error, sent_at): (String, i64, Option<String>, Option<String>) =
        sqlx::query_as(
            "SELECT status, attempts, last_error, sent_at FROM email_outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .expect("outbox row");
    OutboxRow {
        status,
        attempts,
        last_error,
        sent_at,
    }
}

/// (login_state, password_token_hash, invited_at, password_set_at)
async fn account_row(
    db: &Db,
    teacher: TeacherId,
) -> (String, Option<String>, Option<String>, Option<String>) {
    sqlx::query_as(
        "SELECT login_state, password_token_hash, invited_at, password_set_at \
         FROM teacher_accounts WHERE teacher_id = $1",
    )
    .bind(teacher.0)
    .fetch_one(&db.pool)
    .await
    .expect("account row")
}

/// The token in a welcome email's password-set link.
fn token_in(message: &Received) -> String {
    let link = "https://app.freckle.example/set-password?token=";
    let start = message.body.find(link).expect("a password-set link") + link.len();
    message.body[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

async fn welcome_email_reaches_each_new_teacher_once(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let sink = SmtpSink::start();
    let mut config = config(sink.port);
    config.throttle_per_minute = 600; // one message per 100 ms
    let district = seed(
        &db,
        &[
            ("Ada", Some("ada@school.example")),
            ("Grace", Some("grace@school.example")),
            ("Alan", Some("alan@school.example")),
            ("Nomail", None),
        ],
    )
    .await;
    let other = seed(&db, &[("Other", Some("other@elsewhere.example"))]).await;
    let now = at!("2026-12-01T08:00:00Z");

    let started = std::time::Instant::now();
    let report = email::deliver_pending(&db, &district.key, &config, now)
        .await
        .expect("deliver");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "three messages at 600/min take at least 200 ms"
    );
    assert_eq!(
        (report.sent, report.failed, report.retrying),
        (3, 1, 0),
        "{report:#?}"
    );
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].teacher_id, Some(district.teachers[3]));
    assert!(
        report.problems[0].reason.contains("no email address"),
        "{report:#?}"
    );

    let messages = sink.messages();
    let recipients: Vec<&str> = messages.iter().map(|m| m.rcpt_tos[0].as_str()).collect();
    assert_eq!(
        recipients,
        [
            "ada@school.example",
            "grace@school.example",
            "alan@school.example"
        ]
    );
    for (message, name) in messages.iter().zip(["Ada", "Grace", "Alan"]) {
        assert_eq!(message.rcpt_tos.len(), 1);
        assert_eq!(message.subject, "Welcome to Freckle");
        assert_eq!(message.from, "Freckle <no-reply@freckle.example>");
        assert_eq!(message.content_type, "text/plain");
        assert!(
            message.body.starts_with(&format!("Hello {name},")),
            "{}",
            message.body
        );
        assert_eq!(token_in(message).len(), 64, "{}", message.body);
        assert!(message.message_id.contains("rosterflow.welcome."));
    }
    for (&outbox_id, &teacher) in district.outbox.iter().zip(&district.teachers).take(3) {
        let row = outbox_row(&db, outbox_id).await;
        assert_eq!((row.status.as_str(), row.attempts), ("sent", 1), "{row:?}");
        assert!(row.sent_at.is_some());
        let (state, hash, invited_at, _) = account_row(&db, teacher).await;
        assert_eq!(state, "invited");
        assert!(hash.is_some() && invited_at.is_some());
    }
    let no_mail = outbox_row(&db, district.outbox[3]).await;
    assert_eq!(
        no_mail.status, "failed",
        "never silently dropped: {no_mail:?}"
    );
    assert!(
        no_mail
            .last_error
            .is_some_and(|e| e.contains("no email address"))
    );
    // Another district's outbox is not this pipeline's to send.
    let untouched = outbox_row(&db, other.outbox[0]).await;
    assert_eq!(
        (untouched.status.as_str(), untouched.attempts),
        ("pending", 0)
    );

    // Re-delivery, now and much later, sends nothing more.
    for later in ["2026-12-01T08:00:00Z", "2026-12-09T08:00:00Z"] {
        let again = email::deliver_pending(
            &db,
            &district.key,
            &config,
            db::parse_timestamp(later).expect("a timestamp"),
        )
        .await
        .expect("deliver again");
        assert_eq!(again, email::DeliveryReport::default());
    }
    assert_eq!(sink.messages().len(), 3);
}

async fn unreachable_server_leaves_rows_pending_and_a_later_pass_delivers(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let district = seed(
        &db,
        &[
            ("Ada", Some("ada@school.example")),
            ("Grace", Some("grace@school.example")),
        ],
    )
    .await;
    let now = at!("2026-12-01T08:00:00Z");

    let down = config(dead_port());
    let report = email::deliver_pending(&db, &district.key, &down, now)
        .await
        .expect("a dead server is not an error of the pass");
    assert_eq!(
        (report.sent, report.retrying, report.failed),
        (0, 2, 0),
        "{report:#?}"
    );
    for &id in &district.outbox {
        let row = outbox_row(&db, id).await;
        assert_eq!(
            (row.status.as_str(), row.attempts),
            ("pending", 1),
            "{row:?}"
        );
        let error = row.last_error.expect("a reason");
        assert!(
            error.contains("cannot reach the SMTP server 127.0.0.1"),
            "{error}"
        );
        assert!(row.sent_at.is_none());
    }

    // Within the backoff, a pass leaves the rows alone, even with a working server.
    let sink = SmtpSink::start();
    let up = config(sink.port);
    let waiting = email::deliver_pending(&db, &district.key, &up, now)
        .await
        .expect("deliver within the backoff");
    assert_eq!((waiting.sent, waiting.waiting), (0, 2), "{waiting:#?}");
    assert!(sink.messages().is_empty());
    assert_eq!(outbox_row(&db, district.outbox[0]).await.attempts, 1);

    // After it, the next pass delivers each message once.
    let later = now + Duration::from_secs(120);
    let report = email::deliver_pending(&db, &district.key, &up, later)
        .await
        .expect("deliver after the backoff");
    assert_eq!(
        (report.sent, report.retrying, report.failed),
        (2, 0, 0),
        "{report:#?}"
    );
    assert_eq!(sink.messages().len(), 2);
    for &id in &district.outbox {
        let row = outbox_row(&db, id).await;
        assert_eq!((row.status.as_str(), row.attempts), ("sent", 2), "{row:?}");
    }
    let again = email::deliver_pending(&db, &district.key, &up, later)
        .await
        .expect("deliver again");
    assert_eq!(again.sent, 0);
    assert_eq!(sink.messages().len(), 2);
}

async fn refused_recipient_is_retried_with_backoff_then_failed_with_the_reason(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let sink = SmtpSink::start_refusing(&["gone@school.example"]);
    let config = config(sink.port); // max_attempts = 3, backoff 60 s doubling
    let district = seed(
        &db,
        &[
            ("Gone", Some("gone@school.example")),
            ("Ada", Some("ada@school.example")),
        ],
    )
    .await;
    let refused = district.outbox[0];
    let t0 = at!("2026-12-01T08:00:00Z");

    let first = email::deliver_pending(&db, &district.key, &config, t0)
        .await
        .expect("deliver");
    assert_eq!(
        (first.sent, first.retrying, first.failed),
        (1, 1, 0),
        "{first:#?}"
    );
    let row = outbox_row(&db, refused).await;
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 1));
    let error = row.last_error.expect("a reason");
    assert!(
        error.contains("refused") && error.contains("550"),
        "{error}"
    );

    // Attempt 2 is due 60 s after attempt 1; attempt 3 only 120 s after attempt 2.
    let t1 = t0 + Duration::from_secs(61);
    let second = email::deliver_pending(&db, &district.key, &config, t1)
        .await
        .expect("deliver");
    assert_eq!((second.sent, second.retrying), (0, 1), "{second:#?}");
    let early = email::deliver_pending(&db, &district.key, &config, t1 + Duration::from_secs(60))
        .await
        .expect("deliver");
    assert_eq!((early.retrying, early.waiting), (0, 1), "{early:#?}");
    let third = email::deliver_pending(&db, &district.key, &config, t1 + Duration::from_secs(121))
        .await
        .expect("deliver");
    assert_eq!((third.failed, third.retrying), (1, 0), "{third:#?}");
    assert!(third.problems[0].gave_up);
    let row = outbox_row(&db, refused).await;
    assert_eq!((row.status.as_str(), row.attempts), ("failed", 3));
    let error = row.last_error.expect("a reason");
    assert!(error.starts_with("gave up after 3 attempts"), "{error}");

    let after = email::deliver_pending(
        &db,
        &district.key,
        &config,
        t1 + Duration::from_secs(86_400),
    )
    .await
    .expect("deliver");
    assert_eq!(after, email::DeliveryReport::default());
    assert_eq!(sink.messages().len(), 1, "only Ada's message was accepted");
}

async fn password_link_redeems_once_and_only_once(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let sink = SmtpSink::start();
    let district = seed(&db, &[("Ada", Some("ada@school.example"))]).await;
    let teacher = district.teachers[0];
    let now = at!("2026-12-01T08:00:00Z");
    email::deliver_pending(&db, &district.key, &config(sink.port), now)
        .await
        .expect("deliver");
    let token = token_in(&sink.messages()[0]);

    let (_, stored, _, _) = account_row(&db, teacher).await;
    let stored = stored.expect("a stored hash");
    assert_ne!(stored, token, "the DB never holds the token itself");
    assert!(!stored.contains(&token));
    assert_eq!(stored, account::hash_token(&token));

    let redeemed = account::redeem_password_token(&db, &token, now + Duration::from_secs(3600))
        .await
        .expect("the link works");
    assert_eq!(redeemed, teacher);
    let (state, hash, _, password_set_at) = account_row(&db, teacher).await;
    assert_eq!(state, "active");
    assert!(hash.is_none() && password_set_at.is_some());

    let again = account::redeem_password_token(&db, &token, now + Duration::from_secs(3700)).await;
    assert!(
        matches!(again, Err(AccountError::InvalidToken)),
        "{again:?}"
    );
    let forged = account::redeem_password_token(&db, &stored, now).await;
    assert!(
        matches!(forged, Err(AccountError::InvalidToken)),
        "the hash is not a token"
    );
}

async fn expired_password_link_fails(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let sink = SmtpSink::start();
    let district = seed(&db, &[("Ada", Some("ada@school.example"))]).await;
    let now = at!("2026-12-01T08:00:00Z");
    email::deliver_pending(&db, &district.key, &config(sink.port), now)
        .await
        .expect("deliver");
    let token = token_in(&sink.messages()[0]);

    // token_ttl_hours = 72
    let expired = account::redeem_password_token(&db, &token, at!("2026-12-04T08:00:01Z")).await;
    match expired {
        Err(AccountError::Expired { teacher_id, .. }) => {
            assert_eq!(teacher_id, district.teachers[0]);
        }
        other => panic!("expected an expired link, got {other:?}"),
    }
    let (state, _, _, password_set_at) = account_row(&db, district.teachers[0]).await;
    assert_eq!(state, "invited");
    assert!(password_set_at.is_none());
    // Just before expiry it still works.
    account::redeem_password_token(&db, &token, at!("2026-12-04T07:59:00Z"))
        .await
        .expect("valid until expiry");
}

/// The one documented window: the server took the message but the `sent` mark never committed
/// (a crash). The row is sent again after its backoff, with a fresh link; the first link dies.
async fn lost_sent_mark_resends_once_with_a_fresh_link(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let sink = SmtpSink::start();
    let config = config(sink.port);
    let district = seed(&db, &[("Ada", Some("ada@school.example"))]).await;
    let now = at!("2026-12-01T08:00:00Z");
    email::deliver_pending(&db, &district.key, &config, now)
        .await
        .expect("deliver");
    // Undo the mark as a crash between send and mark would have left it: claimed, pending.
    sqlx::query(
        "UPDATE email_outbox SET status = 'pending', sent_at = NULL, \
         next_attempt_at = '2026-12-01T08:01:00.000000Z' WHERE id = $1",
    )
    .bind(district.outbox[0])
    .execute(&db.pool)
    .await
    .expect("simulate the crash");

    let within = email::deliver_pending(&db, &district.key, &config, now)
        .await
        .expect("deliver");
    assert_eq!(
        within.sent, 0,
        "a claimed row is left alone until its lease ends"
    );
    let after = email::deliver_pending(&db, &district.key, &config, now + Duration::from_secs(120))
        .await
        .expect("deliver");
    assert_eq!(after.sent, 1);
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].message_id, messages[1].message_id);
    let (first, second) = (token_in(&messages[0]), token_in(&messages[1]));
    assert_ne!(first, second);
    let old = account::redeem_password_token(&db, &first, now).await;
    assert!(matches!(old, Err(AccountError::InvalidToken)), "{old:?}");
    account::redeem_password_token(&db, &second, now)
        .await
        .expect("the newest link works");
}

/// Two delivery passes over the same outbox at once (say, after a commit and at the start of
/// the next run): each message still goes out once.
async fn overlapping_passes_send_each_message_once(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let sink = SmtpSink::start();
    let config = config(sink.port);
    let district = seed(
        &db,
        &[
            ("Ada", Some("ada@school.example")),
            ("Grace", Some("grace@school.example")),
            ("Alan", Some("alan@school.example")),
            ("Edsger", Some("edsger@school.example")),
            ("Barbara", Some("barbara@school.example")),
        ],
    )
    .await;
    let now = at!("2026-12-01T08:00:00Z");
    let (a, b) = tokio::join!(
        email::deliver_pending(&db, &district.key, &config, now),
        email::deliver_pending(&db, &district.key, &config, now),
    );
    let (a, b) = (a.expect("pass a"), b.expect("pass b"));
    assert_eq!(a.sent + b.sent, 5, "{a:#?} {b:#?}");
    let mut recipients: Vec<String> = sink
        .messages()
        .into_iter()
        .map(|m| m.rcpt_tos[0].clone())
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 5);
    assert_eq!(sink.messages().len(), 5);
}

/// A pass that is cut off (the process stopped, the future dropped) after some messages went
/// out is finished by the next pass, which sends only the rest.
async fn interrupted_pass_is_finished_by_the_next_without_repeats(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let sink = SmtpSink::start();
    let mut config = config(sink.port);
    config.throttle_per_minute = 30; // one message every 2 s
    let district = seed(
        &db,
        &[
            ("Ada", Some("ada@school.example")),
            ("Grace", Some("grace@school.example")),
            ("Alan", Some("alan@school.example")),
        ],
    )
    .await;
    let now = at!("2026-12-01T08:00:00Z");
    let cut = tokio::time::timeout(
        Duration::from_millis(1000),
        email::deliver_pending(&db, &district.key, &config, now),
    )
    .await;
    assert!(
        cut.is_err(),
        "the pass is cut off while it waits to send the second message"
    );
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(outbox_row(&db, district.outbox[0]).await.status, "sent");

    config.throttle_per_minute = 6000;
    let rest = email::deliver_pending(&db, &district.key, &config, now)
        .await
        .expect("deliver the rest");
    assert_eq!(rest.sent, 2, "{rest:#?}");
    let recipients: Vec<String> = sink
        .messages()
        .into_iter()
        .map(|m| m.rcpt_tos[0].clone())
        .collect();
    assert_eq!(
        recipients,
        [
            "ada@school.example",
            "grace@school.example",
            "alan@school.example"
        ]
    );
}

/// Only committed runs release email: a row that names a held run (the load writes none; this
/// guards against one that did) stays pending and unsent.
async fn rows_of_a_held_run_are_not_sent(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    let sink = SmtpSink::start();
    let district = seed(&db, &[("Ada", Some("ada@school.example"))]).await;
    let (held,): (i64,) = sqlx::query_as(
        "INSERT INTO sync_runs (district_id, pipeline, status, started_at) \
         SELECT district_id, 'email-test', 'held', '2026-11-30T01:00:00.000000Z' \
         FROM email_outbox WHERE id = $1 RETURNING id",
    )
    .bind(district.outbox[0])
    .fetch_one(&db.pool)
    .await
    .expect("insert a held run");
    sqlx::query("UPDATE email_outbox SET run_id = $1 WHERE id = $2")
        .bind(held)
        .bind(district.outbox[0])
        .execute(&db.pool)
        .await
        .expect("point the row at the held run");

    let now = at!("2026-12-01T08:00:00Z");
    let report = email::deliver_pending(&db, &district.key, &config(sink.port), now)
        .await
        .expect("deliver");
    assert_eq!(report, email::DeliveryReport::default());
    assert!(sink.messages().is_empty());
    let row = outbox_row(&db, district.outbox[0]).await;
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 0));
}

on_both_backends!(
    welcome_email_reaches_each_new_teacher_once,
    unreachable_server_leaves_rows_pending_and_a_later_pass_delivers,
    refused_recipient_is_retried_with_backoff_then_failed_with_the_reason,
    password_link_redeems_once_and_only_once,
    expired_password_link_fails,
    lost_sent_mark_resends_once_with_a_fresh_link,
    overlapping_passes_send_each_message_once,
    interrupted_pass_is_finished_by_the_next_without_repeats,
    rows_of_a_held_run_are_not_sent,
);
