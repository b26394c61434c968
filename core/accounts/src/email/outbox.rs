//! The `email_outbox` rows of welcome emails: which are due, claiming one for an attempt
//! (with its fresh password-set token), and recording how the attempt ended.
//!
//! Every write is conditional on the row still being `pending` (and, for a claim, on its
//! attempt count being the one read), so two delivery passes that overlap never both send a row.

use chrono::{DateTime, Utc};
use sqlx::Any;

use super::EmailError;
use crate::account::{self, AccountError, PasswordToken, TeacherId};
use rosterflow_store::db::{self, Db};

/// A pending welcome email that is due, with what is needed to decide whether it can be sent.
#[derive(Debug)]
pub(crate) struct DueRow {
    pub id: i64,
    pub teacher_id: Option<TeacherId>,
    /// Whether the teacher exists in the row's district.
    pub teacher_found: bool,
    pub recipient: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// The teacher's account state, or `None` without an account row.
    pub login_state: Option<String>,
    pub first_name: Option<String>,
}

/// How claiming a row for an attempt ended.
pub(crate) enum Claim {
    /// The row is ours; its attempt is counted and the token's hash is stored.
    Claimed(PasswordToken),
    /// Another delivery pass got to the row first.
    Taken,
    /// The teacher's account cannot take a token (missing, or not `invited`).
    Unusable(AccountError),
}

fn db_error(operation: &'static str) -> impl FnOnce(sqlx::Error) -> EmailError {
    move |source| EmailError::Db { operation, source }
}

/// The district's row id for a Clever district id, if the district has been loaded.
pub(crate) async fn district_id(db: &Db, key: &str) -> Result<Option<i64>, EmailError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM districts WHERE key = $1")
        .bind(key)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_error("look up the district"))?;
    Ok(row.map(|(id,)| id))
}

/// The district's pending welcome emails that are due at `now`, oldest first. Only rows of
/// runs that committed (`committed`, or a held run `approved` later) count: the load writes no
/// others, and should one appear anyway it is not sent. An archived teacher's email waits: it
/// goes out only if the teacher comes back.
pub(crate) async fn due(db: &Db, district_id: i64, now: &str) -> Result<Vec<DueRow>, EmailError> {
    type Row = (
        i64,
        Option<i64>,
        Option<i64>,
        Option<String>,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT o.id, o.teacher_id, t.id, o.recipient, o.attempts, o.last_error, \
                a.login_state, t.first_name \
         FROM email_outbox o \
         LEFT JOIN teachers t ON t.id = o.teacher_id AND t.district_id = o.district_id \
         LEFT JOIN teacher_accounts a ON a.teacher_id = t.id \
         WHERE o.district_id = $1 AND o.kind = 'welcome' AND o.status = 'pending' \
           AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= $2) \
           AND (t.id IS NULL OR t.archived_at IS NULL) \
           AND EXISTS (SELECT 1 FROM sync_runs r WHERE r.id = o.run_id \
                       AND r.status IN ('committed', 'approved')) \
         ORDER BY o.id",
    )
    .bind(district_id)
    .bind(now)
    .fetch_all(&db.pool)
    .await
    .map_err(db_error("read the pending welcome emails"))?;
    Ok(rows
        .into_iter()
        .map(
            |(id, teacher_id, found, recipient, attempts, last_error, login_state, first_name)| {
                DueRow {
                    id,
                    teacher_id: teacher_id.map(TeacherId),
                    teacher_found: found.is_some(),
                    recipient,
                    attempts,
                    last_error,
                    login_state,
                    first_name,
                }
            },
        )
        .collect())
}

/// How many of the district's pending welcome emails wait for a later pass (backoff).
pub(crate) async fn waiting(db: &Db, district_id: i64, now: &str) -> Result<u64, EmailError> {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM email_outbox o \
         WHERE o.district_id = $1 AND o.kind = 'welcome' AND o.status = 'pending' \
           AND o.next_attempt_at > $2 \
           AND EXISTS (SELECT 1 FROM sync_runs r WHERE r.id = o.run_id \
                       AND r.status IN ('committed', 'approved'))",
    )
    .bind(district_id)
    .bind(now)
    .fetch_one(&db.pool)
    .await
    .map_err(db_error("count the waiting welcome emails"))?;
    Ok(u64::try_from(count).unwrap_or_default())
}

/// Claims `row` for one attempt, in one transaction: counts the attempt, sets when the next one
/// may happen (`retry_at`, which also keeps other passes off the row while this one sends), and
/// stores the hash of a fresh token for the teacher.
pub(crate) async fn claim(
    db: &Db,
    row: &DueRow,
    teacher_id: TeacherId,
    now: DateTime<Utc>,
    retry_at: DateTime<Utc>,
    token_ttl: chrono::Duration,
) -> Result<Claim, EmailError> {
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_error("begin a transaction"))?;
    let claimed = sqlx::query(
        "UPDATE email_outbox SET attempts = attempts + 1, next_attempt_at = $1 \
         WHERE id = $2 AND status = 'pending' AND attempts = $3",
    )
    .bind(db::timestamp(retry_at))
    .bind(row.id)
    .bind(row.attempts)
    .execute(&mut *tx)
    .await
    .map_err(db_error("claim a welcome email"))?;
    if claimed.rows_affected() != 1 {
        return Ok(Claim::Taken);
    }
    match account::issue_password_token(&mut tx, teacher_id, now, token_ttl).await {
        Ok(token) => {
            tx.commit()
                .await
                .map_err(db_error("commit a welcome email claim"))?;
            Ok(Claim::Claimed(token))
        }
        Err(error @ (AccountError::NoAccount { .. } | AccountError::NotInvited { .. })) => {
            rollback(tx).await?;
            Ok(Claim::Unusable(error))
        }
        Err(source) => Err(EmailError::Account { source }),
    }
}

async fn rollback(tx: sqlx::Transaction<'_, Any>) -> Result<(), EmailError> {
    tx.rollback()
        .await
        .map_err(db_error("roll back a welcome email claim"))
}

/// Records that the SMTP server accepted a claimed row: the row is `sent` and the teacher
/// `invited_at`, together.
pub(crate) async fn mark_sent(
    db: &Db,
    row: &DueRow,
    teacher_id: TeacherId,
    at: DateTime<Utc>,
) -> Result<(), EmailError> {
    let at = db::timestamp(at);
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_error("begin a transaction"))?;
    sqlx::query(
        "UPDATE email_outbox SET status = 'sent', sent_at = $1, next_attempt_at = NULL \
         WHERE id = $2 AND status = 'pending'",
    )
    .bind(&at)
    .bind(row.id)
    .execute(&mut *tx)
    .await
    .map_err(db_error("mark a welcome email sent"))?;
    sqlx::query("UPDATE teacher_accounts SET invited_at = $1 WHERE teacher_id = $2")
        .bind(&at)
        .bind(teacher_id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error("record when a teacher was invited"))?;
    tx.commit()
        .await
        .map_err(db_error("commit a sent welcome email"))
}

/// Records why a claimed attempt failed; `give_up` marks the row `failed`, otherwise it stays
/// `pending` until the `next_attempt_at` its claim set.
pub(crate) async fn attempt_failed(
    db: &Db,
    row_id: i64,
    reason: &str,
    give_up: bool,
) -> Result<(), EmailError> {
    sqlx::query(
        "UPDATE email_outbox SET last_error = $1, status = $2 WHERE id = $3 AND status = 'pending'",
    )
    .bind(reason)
    .bind(if give_up { "failed" } else { "pending" })
    .bind(row_id)
    .execute(&db.pool)
    .await
    .map_err(db_error("record a failed welcome email attempt"))?;
    Ok(())
}

/// Counts an attempt on a row that was due but not tried because the server could not be
/// reached, and sets when it may be tried again. Returns false if another pass took the row.
pub(crate) async fn attempt_skipped(
    db: &Db,
    row: &DueRow,
    reason: &str,
    give_up: bool,
    retry_at: DateTime<Utc>,
) -> Result<bool, EmailError> {
    let updated = sqlx::query(
        "UPDATE email_outbox SET attempts = attempts + 1, next_attempt_at = $1, \
         last_error = $2, status = $3 \
         WHERE id = $4 AND status = 'pending' AND attempts = $5",
    )
    .bind(db::timestamp(retry_at))
    .bind(reason)
    .bind(if give_up { "failed" } else { "pending" })
    .bind(row.id)
    .bind(row.attempts)
    .execute(&db.pool)
    .await
    .map_err(db_error("record a deferred welcome email"))?;
    Ok(updated.rows_affected() == 1)
}

/// Marks a row `failed` for a reason no retry can cure.
pub(crate) async fn give_up(db: &Db, row_id: i64, reason: &str) -> Result<(), EmailError> {
    sqlx::query(
        "UPDATE email_outbox SET status = 'failed', last_error = $1 \
         WHERE id = $2 AND status = 'pending'",
    )
    .bind(reason)
    .bind(row_id)
    .execute(&db.pool)
    .await
    .map_err(db_error("mark a welcome email failed"))?;
    Ok(())
}

/// Queues one more welcome email for a teacher whose link was lost or expired: their row is
/// pending again (the next delivery issues a new token, which voids the old link), or a new row
/// when they never had one. Returns false when the teacher has no invited account.
pub(crate) async fn requeue(
    db: &Db,
    district_id: i64,
    teacher_id: TeacherId,
    now: &str,
) -> Result<bool, EmailError> {
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_error("queue a welcome email"))?;
    let invited: Option<(String,)> = sqlx::query_as(
        "SELECT a.login_state FROM teacher_accounts a JOIN teachers t ON t.id = a.teacher_id \
         WHERE a.teacher_id = $1 AND t.district_id = $2 AND t.archived_at IS NULL \
           AND a.login_state = 'invited'",
    )
    .bind(teacher_id.0)
    .bind(district_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error("read the teacher's account"))?;
    if invited.is_none() {
        return Ok(false);
    }
    let reset = sqlx::query(
        "UPDATE email_outbox SET status = 'pending', attempts = 0, last_error = NULL, \
         next_attempt_at = NULL, sent_at = NULL, \
         recipient = (SELECT email FROM teachers WHERE id = $1) \
         WHERE kind = 'welcome' AND teacher_id = $1",
    )
    .bind(teacher_id.0)
    .execute(&mut *tx)
    .await
    .map_err(db_error("queue a welcome email"))?;
    if reset.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO email_outbox (district_id, run_id, kind, teacher_id, recipient, status, created_at) \
             SELECT $1, (SELECT MAX(id) FROM sync_runs WHERE district_id = $1 AND status IN ('committed', 'approved')), \
                    'welcome', t.id, t.email, 'pending', $3 FROM teachers t WHERE t.id = $2",
        )
        .bind(district_id)
        .bind(teacher_id.0)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error("queue a welcome email"))?;
    }
    tx.commit()
        .await
        .map_err(db_error("queue a welcome email"))?;
    Ok(true)
}
