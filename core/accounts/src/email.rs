//! Welcome emails: delivering a district's `email_outbox` after its run commits, each message
//! exactly once in every case but one, with a fresh single-use password-set link.
//!
//! The load writes one `welcome` row per new Clever teacher inside the run's transaction, so
//! only committed runs ever have rows here (held and dry runs write none). A run only queues:
//! [`deliver_pending`] runs on its own (`rosterflow email send`), throttled, and finishes
//! whatever a crash or an unreachable server left behind. [`resend`] queues one more email for
//! a teacher whose link was lost or expired.
//!
//! # One row, one message
//!
//! For each due row, in order:
//! 1. **claim**, in one transaction: count the attempt, set `next_attempt_at` (the earliest
//!    retry; it also keeps an overlapping pass off the row), and store the SHA-256 of a fresh
//!    token in `teacher_accounts` (replacing any earlier one);
//! 2. **send** the message through SMTP;
//! 3. **mark**, in one transaction: the row `sent` with `sent_at`, the account's `invited_at`.
//!
//! The one window for a second message: the server accepted the message (2) but the mark (3)
//! never committed: the process died, or the DB failed, in between. The row is then still
//! `pending` and is sent again once its `next_attempt_at` passes, with a new token; the first
//! email's link stops working, and both carry the same Message-ID. No other path sends twice:
//! a crash before (2) only leaves an unused token hash behind, and a failure in (2) is retried.
//! SMTP has no way to close this window; keeping (3) right after (2) keeps it to milliseconds.
//!
//! # Failures
//!
//! - A row that can never be sent (no recipient, an address that does not parse, no teacher or
//!   account, an account that is no longer `invited`) is marked `failed` with the reason in
//!   `last_error` at once, never dropped silently.
//! - The server answered with an error (4xx/5xx): the attempt is counted, `last_error` keeps
//!   the server's answer, the row waits `retry_backoff_secs`, doubling per attempt up to
//!   `retry_backoff_max_secs`, and becomes `failed` after `max_attempts`.
//! - The server could not be reached (connection, TLS, timeout): the same, and the pass stops:
//!   every remaining due row gets the attempt counted with the same reason rather than waiting
//!   out one timeout each.
//!
//! Messages are spaced by `throttle_per_minute`. Dropping the future is like a crash: rows
//! already marked stay marked, and at most the row being sent falls into the window above.

mod config;
mod message;
mod outbox;

use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

pub use config::{EmailConfig, TlsMode};
pub use message::WELCOME_SUBJECT;

use crate::account::{AccountError, TeacherId};
use outbox::{Claim, DueRow};
use rosterflow_store::db::{self, Db};

/// What one delivery pass did with a district's pending welcome emails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages the SMTP server accepted.
    pub sent: u64,
    /// Messages that failed this time and stay `pending` for a later pass.
    pub retrying: u64,
    /// Messages marked `failed` for good (their reasons are in `problems`).
    pub failed: u64,
    /// Pending messages that were not yet due when the pass began (waiting out a backoff).
    pub waiting: u64,
    /// Why each message counted in `retrying` or `failed` did not go.
    pub problems: Vec<DeliveryProblem>,
}

/// One message that did not go, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryProblem {
    /// The `email_outbox` row.
    pub outbox_id: i64,
    /// The teacher it was for, when the row names one.
    pub teacher_id: Option<TeacherId>,
    /// What went wrong, as stored in `last_error`.
    pub reason: String,
    /// Whether the row is now `failed` (otherwise it will be tried again).
    pub gave_up: bool,
}

/// Why a delivery pass stopped. Failures of single messages are not errors: they are recorded
/// on their rows and listed in the [`DeliveryReport`].
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("the [email] table is not valid: {}", problems.join("; "))]
    Config { problems: Vec<String> },
    #[error("cannot set up the SMTP transport to {host}:{port}")]
    Transport {
        host: String,
        port: u16,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("cannot {operation} in the freckle db")]
    Db {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot issue a password-set token")]
    Account {
        #[source]
        source: AccountError,
    },
}

/// Sends the district's due welcome emails through the SMTP server in `config`, recording on
/// each `email_outbox` row how it went (see the module documentation for the guarantees).
/// `now` is when the pass starts; time spent sending is added to it for the timestamps written.
/// A district that has not been loaded yet has nothing to send.
pub async fn deliver_pending(
    db: &Db,
    district_key: &str,
    config: &EmailConfig,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, EmailError> {
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(EmailError::Config { problems });
    }
    let from: Mailbox = config.from.parse().map_err(|error| EmailError::Config {
        problems: vec![format!("email.from: {error}")],
    })?;
    let mut report = DeliveryReport::default();
    let Some(district_id) = outbox::district_id(db, district_key).await? else {
        tracing::debug!(
            district = district_key,
            "district not loaded yet: no welcome emails to send"
        );
        return Ok(report);
    };
    let started = Clock::new(now);
    let now_text = db::timestamp(now);
    report.waiting = outbox::waiting(db, district_id, &now_text).await?;
    let due = outbox::due(db, district_id, &now_text).await?;
    if due.is_empty() {
        return Ok(report);
    }
    let transport = transport(config)?;
    let interval = config.send_interval();
    let mut next_send: Option<tokio::time::Instant> = None;
    let mut rows = due.into_iter();
    while let Some(row) = rows.next() {
        let (teacher_id, recipient) = match sendable(&row, config) {
            Ok(ready) => ready,
            Err(reason) => {
                outbox::give_up(db, row.id, &reason).await?;
                report.problem(&row, reason, true);
                continue;
            }
        };
        if let Some(at) = next_send {
            tokio::time::sleep_until(at).await;
        }
        next_send = Some(tokio::time::Instant::now() + interval);

        let attempt = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
        let claimed_at = started.now();
        let retry_at = later(claimed_at, config.backoff_after(attempt));
        let token = match outbox::claim(
            db,
            &row,
            teacher_id,
            claimed_at,
            retry_at,
            config.token_ttl(),
        )
        .await?
        {
            Claim::Claimed(token) => token,
            Claim::Taken => {
                tracing::debug!(
                    outbox_id = row.id,
                    "welcome email taken by another delivery pass"
                );
                continue;
            }
            Claim::Unusable(error) => {
                let reason = error.to_string();
                outbox::give_up(db, row.id, &reason).await?;
                report.problem(&row, reason, true);
                continue;
            }
        };
        let message = message::Welcome {
            from: &from,
            to: recipient,
            first_name: row.first_name.as_deref(),
            app_base_url: config.app_base_url(),
            token: &token,
            token_ttl_hours: config.token_ttl_hours,
            outbox_id: row.id,
        }
        .build();
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                let reason = format!("cannot compose the message: {error}");
                outbox::attempt_failed(db, row.id, &reason, true).await?;
                report.problem(&row, reason, true);
                continue;
            }
        };
        drop(token);
        match transport.send(message).await {
            Ok(_) => {
                outbox::mark_sent(db, &row, teacher_id, started.now()).await?;
                report.sent += 1;
                tracing::info!(
                    district = district_key,
                    outbox_id = row.id,
                    teacher_id = teacher_id.0,
                    attempt,
                    "welcome email sent"
                );
            }
            Err(error) if error.status().is_some() => {
                // The server answered: this message failed, the next may not.
                let give_up = attempt >= config.max_attempts;
                let reason = failure_reason(
                    format!("the SMTP server refused the message: {error}"),
                    attempt,
                    give_up,
                );
                outbox::attempt_failed(db, row.id, &reason, give_up).await?;
                log_failure(district_key, &row, attempt, give_up, &reason);
                report.problem(&row, reason, give_up);
            }
            Err(error) => {
                let cause = format!(
                    "cannot reach the SMTP server {}:{}: {error}",
                    config.host,
                    config.port()
                );
                let give_up = attempt >= config.max_attempts;
                let reason = failure_reason(cause.clone(), attempt, give_up);
                outbox::attempt_failed(db, row.id, &reason, give_up).await?;
                log_failure(district_key, &row, attempt, give_up, &reason);
                report.problem(&row, reason, give_up);
                skip_rest(db, config, &mut report, rows, &cause, started.now()).await?;
                break;
            }
        }
    }
    Ok(report)
}

/// Why a welcome link could not be issued again.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error(transparent)]
    Roster(#[from] rosterflow_store::roster::RosterError),
    #[error(transparent)]
    Email(#[from] EmailError),
    #[error(
        "teacher {teacher} has no invited account (archived, never loaded, or already signed up): no welcome email to send"
    )]
    NotInvited { teacher: String },
}

/// Queues a new welcome email for `teacher` (a Clever id or SIS id) of the district, for a lost
/// or expired link: the next delivery pass sends it with a new single-use token, which voids
/// the old link.
pub async fn resend(db: &Db, district_key: &str, teacher: &str) -> Result<(), ResendError> {
    let teacher_row =
        rosterflow_store::roster::find(db, "teachers", "teacher", district_key, teacher).await?;
    let district_id = outbox::district_id(db, district_key)
        .await?
        .ok_or_else(|| ResendError::NotInvited {
            teacher: teacher.to_owned(),
        })?;
    let now = db::timestamp(Utc::now());
    if outbox::requeue(db, district_id, TeacherId(teacher_row), &now).await? {
        Ok(())
    } else {
        Err(ResendError::NotInvited {
            teacher: teacher.to_owned(),
        })
    }
}

/// The teacher and parsed recipient of a row, or why the row can never be sent.
fn sendable(row: &DueRow, config: &EmailConfig) -> Result<(TeacherId, Mailbox), String> {
    let Some(teacher_id) = row.teacher_id else {
        return Err("the welcome email names no teacher".to_owned());
    };
    if !row.teacher_found {
        return Err(format!("teacher {teacher_id} is not in this district"));
    }
    match row.login_state.as_deref() {
        None => return Err(format!("teacher {teacher_id} has no account row")),
        Some("invited") => {}
        Some(state) => {
            return Err(format!(
                "teacher {teacher_id}'s account is {state}, not invited"
            ));
        }
    }
    let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX);
    if attempts >= config.max_attempts {
        return Err(format!(
            "gave up after {attempts} attempts (max_attempts is {}): {}",
            config.max_attempts,
            row.last_error.as_deref().unwrap_or("no error recorded")
        ));
    }
    let Some(address) = row
        .recipient
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    else {
        return Err(
            "no email address: Clever gave none for this teacher; add one in the SIS".to_owned(),
        );
    };
    address
        .parse::<lettre::Address>()
        .map(|address| (teacher_id, Mailbox::new(None, address)))
        .map_err(|error| format!("the recipient is not a valid email address ({error})"))
}

/// After the server could not be reached: counts an attempt on every remaining due row, with
/// the same cause, so that a dead server costs one timeout per pass, not one per teacher.
async fn skip_rest(
    db: &Db,
    config: &EmailConfig,
    report: &mut DeliveryReport,
    rows: impl Iterator<Item = DueRow>,
    cause: &str,
    at: DateTime<Utc>,
) -> Result<(), EmailError> {
    for row in rows {
        if let Err(reason) = sendable(&row, config) {
            outbox::give_up(db, row.id, &reason).await?;
            report.problem(&row, reason, true);
            continue;
        }
        let attempt = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
        let give_up = attempt >= config.max_attempts;
        let reason = failure_reason(format!("not tried: {cause}"), attempt, give_up);
        let retry_at = later(at, config.backoff_after(attempt));
        if outbox::attempt_skipped(db, &row, &reason, give_up, retry_at).await? {
            report.problem(&row, reason, give_up);
        }
    }
    Ok(())
}

fn failure_reason(cause: String, attempt: u32, give_up: bool) -> String {
    if give_up {
        format!("gave up after {attempt} attempts: {cause}")
    } else {
        format!("attempt {attempt} failed: {cause}")
    }
}

fn log_failure(district: &str, row: &DueRow, attempt: u32, give_up: bool, reason: &str) {
    if give_up {
        tracing::warn!(
            district,
            outbox_id = row.id,
            attempt,
            reason,
            "welcome email failed for good"
        );
    } else {
        tracing::warn!(
            district,
            outbox_id = row.id,
            attempt,
            reason,
            "welcome email failed; will retry"
        );
    }
}

impl DeliveryReport {
    fn problem(&mut self, row: &DueRow, reason: String, gave_up: bool) {
        if gave_up {
            self.failed += 1;
        } else {
            self.retrying += 1;
        }
        self.problems.push(DeliveryProblem {
            outbox_id: row.id,
            teacher_id: row.teacher_id,
            reason,
            gave_up,
        });
    }
}

/// The SMTP transport for `config`. Credentials go only to lettre; TLS uses rustls with the
/// Mozilla root certificates.
fn transport(config: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
    let host = config.host.trim();
    let port = config.port();
    let tls_error = |source| EmailError::Transport {
        host: host.to_owned(),
        port,
        source,
    };
    let tls = match config.tls {
        TlsMode::None => Tls::None,
        TlsMode::Starttls => Tls::Required(TlsParameters::new(host.to_owned()).map_err(tls_error)?),
        TlsMode::Tls => Tls::Wrapper(TlsParameters::new(host.to_owned()).map_err(tls_error)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(config.timeout_secs)));
    if let (Some(username), Some(password)) = (&config.username, &config.password) {
        builder = builder.credentials(Credentials::new(
            username.clone(),
            password.expose().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// `at + wait`, saturating at the end of time rather than overflowing.
fn later(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|wait| at.checked_add_signed(wait))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The pass's notion of the time: the `now` it was given, plus the time it has run.
struct Clock {
    start: tokio::time::Instant,
    now: DateTime<Utc>,
}

impl Clock {
    fn new(now: DateTime<Utc>) -> Clock {
        Clock {
            start: tokio::time::Instant::now(),
            now,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        later(self.now, self.start.elapsed())
    }
}
