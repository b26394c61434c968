//! Signing in with Clever, as the Freckle DB sees it: who a Clever user is here (keyed by their
//! Clever id within their Clever district, never by email or SIS id), the teacher a sign-in may
//! create before the nightly sync does, and the service's sign-in records: the states of the
//! logins it started, the codes already exchanged, the grants handed to the Freckle app, and a log
//! of every sign-in and refusal. A state, a code or a grant is kept only as its SHA-256 hash.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::AssertSqlSafe;

use crate::Store;
use crate::db::{Db, timestamp};
use crate::runs::sql as run_sql;
use rosterflow_model::{Entity, Snapshot, Teacher};
use rosterflow_plan::schema::{self, Kind, Lookups, Record, Value};

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("database error while {step}")]
    Sql {
        step: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("district {0} has no row in the Freckle DB: it has not been synced")]
    NoDistrict(String),
}

fn sql(step: &'static str) -> impl FnOnce(sqlx::Error) -> SignInError {
    move |source| SignInError::Sql { step, source }
}

/// The SHA-256 of a secret a browser or the app presents, as stored.
fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The kinds of account a Clever user signs in to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum AccountKind {
    Teacher,
    Student,
    /// A district administrator: the admin console, for their own district.
    Admin,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn table(self) -> &'static str {
        match self {
            AccountKind::Teacher => "teachers",
            AccountKind::Student => "students",
            AccountKind::Admin => "admins",
        }
    }

    fn entity(self) -> Entity {
        match self {
            AccountKind::Teacher => Entity::Teacher,
            AccountKind::Student => Entity::Student,
            AccountKind::Admin => Entity::Admin,
        }
    }
}

/// A Freckle account a Clever user signs in to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub kind: AccountKind,
    /// The row id in the account's table.
    pub id: i64,
    /// The Clever user id.
    pub clever_id: String,
    pub sis_id: Option<String>,
    pub district: AccountDistrict,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountDistrict {
    /// The district's key (its pipeline's `district_id`).
    pub key: String,
    /// The district's Clever id.
    pub clever_id: String,
    pub name: String,
}

/// Whether a Clever user of a synced district can sign in, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Active(Account),
    /// The sync archived the account (the user left the roster).
    Archived {
        since: String,
        reason: Option<String>,
    },
    /// The district's filters, sharing rules or a plugin left the user out.
    Filtered {
        by: String,
        detail: String,
    },
    /// The sync never loaded the user.
    NotSynced,
}

impl Standing {
    /// The answer in words, for `explain` and the service's log.
    pub fn describe(&self) -> String {
        match self {
            Standing::Active(_) => "yes".to_owned(),
            Standing::Archived { since, reason } => format!(
                "no: archived since {since} ({})",
                reason.as_deref().unwrap_or("no reason recorded")
            ),
            Standing::Filtered { by, detail } => format!("no: left out by {by}: {detail}"),
            Standing::NotSynced => "no: not synced".to_owned(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: i64,
    source_id: Option<String>,
    sis_id: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    archived_at: Option<String>,
    archived_reason: Option<String>,
    district_key: String,
    district_source: Option<String>,
    district_name: String,
}

impl AccountRow {
    fn account(self, kind: AccountKind) -> Account {
        Account {
            kind,
            id: self.id,
            clever_id: self.source_id.unwrap_or_default(),
            sis_id: self.sis_id,
            district: AccountDistrict {
                key: self.district_key,
                clever_id: self.district_source.unwrap_or_default(),
                name: self.district_name,
            },
            first_name: self.first_name,
            last_name: self.last_name,
            email: self.email,
        }
    }
}

/// The account columns of `kind`'s table (admins have no SIS id).
fn account_query(kind: AccountKind, condition: &str) -> String {
    let sis = match kind {
        AccountKind::Admin => "NULL",
        _ => "a.sis_id",
    };
    format!(
        "SELECT a.id, a.source_id, {sis} AS sis_id, a.first_name, a.last_name, a.email, \
         a.archived_at, a.archived_reason, d.key AS district_key, d.source_id AS district_source, \
         d.name AS district_name \
         FROM {} a JOIN districts d ON d.id = a.district_id WHERE {condition}",
        kind.table()
    )
}

/// The key of the district whose Clever id is `clever_district`, if it has been synced from
/// Clever.
pub async fn clever_district(
    db: &Db,
    clever_district: &str,
) -> Result<Option<String>, SignInError> {
    sqlx::query_scalar("SELECT key FROM districts WHERE source_kind = 'clever' AND source_id = $1")
        .bind(clever_district)
        .fetch_optional(&db.pool)
        .await
        .map_err(sql("finding the district"))
}

/// Whether the Clever user `clever_id` of district `district_key` can sign in as `kind`.
pub async fn standing(
    db: &Db,
    district_key: &str,
    kind: AccountKind,
    clever_id: &str,
) -> Result<Standing, SignInError> {
    let row: Option<AccountRow> = sqlx::query_as(AssertSqlSafe(account_query(
        kind,
        "d.key = $1 AND d.source_kind = 'clever' AND a.source_id = $2",
    )))
    .bind(district_key)
    .bind(clever_id)
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("finding the account"))?;
    let row = match row {
        Some(row) if row.archived_at.is_none() => return Ok(Standing::Active(row.account(kind))),
        row => row,
    };
    // A decision in force says why the sync left the user out (or archived them).
    let dropped: Option<(String, String)> = sqlx::query_as(
        "SELECT s.author, s.detail FROM sync_decisions s JOIN districts d ON d.id = s.district_id \
         WHERE d.key = $1 AND s.entity = $2 AND s.source_id = $3 AND s.action = 'dropped' \
         AND s.ended_run IS NULL ORDER BY s.id DESC LIMIT 1",
    )
    .bind(district_key)
    .bind(kind.entity().as_str())
    .bind(clever_id)
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("reading the decisions"))?;
    Ok(match (dropped, row) {
        (Some((by, detail)), _) => Standing::Filtered { by, detail },
        (None, Some(row)) => Standing::Archived {
            since: row.archived_at.unwrap_or_default(),
            reason: row.archived_reason,
        },
        (None, None) => Standing::NotSynced,
    })
}

/// The account of row `id` of `kind`'s table, if it is still active.
pub async fn account(db: &Db, kind: AccountKind, id: i64) -> Result<Option<Account>, SignInError> {
    let row: Option<AccountRow> = sqlx::query_as(AssertSqlSafe(account_query(
        kind,
        "a.id = $1 AND a.archived_at IS NULL",
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("reading the account"))?;
    Ok(row.map(|row| row.account(kind)))
}

/// Creates `teacher`, whom the sync has not loaded yet, at their first sign-in: a run of its own
/// (`requested_by = sign-in:clever`) that creates the row as the sync would (so the next sync
/// finds it: no duplicate), opens their account and queues the one welcome email they get. The
/// caller hands over the district's run lock (`_lock`, released once the teacher is committed),
/// so this never interleaves with a run; a teacher a run or another sign-in made meanwhile is
/// found instead.
pub async fn create_teacher(
    db: &Db,
    _lock: Store,
    district_key: &str,
    pipeline: &str,
    teacher: &Teacher,
    now: DateTime<Utc>,
) -> Result<Created, SignInError> {
    if let Standing::Active(account) =
        standing(db, district_key, AccountKind::Teacher, &teacher.id).await?
    {
        return Ok(Created::Found(account));
    }
    let at = timestamp(now);
    let mut tx = db.pool.begin().await.map_err(sql("beginning"))?;
    let district: i64 = sqlx::query_scalar(run_sql::DISTRICT_ID)
        .bind(district_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql("finding the district"))?
        .ok_or_else(|| SignInError::NoDistrict(district_key.to_owned()))?;
    let run: i64 = sqlx::query_scalar(run_sql::INSERT_COMMITTED)
        .bind(district)
        .bind(pipeline)
        .bind(&at)
        .bind(&at)
        .bind(1_i64)
        .bind(0_i64)
        .bind(r#"{"teacher.create":1}"#)
        .bind("sign-in")
        .bind(None::<String>)
        .bind(Some(
            "a teacher signed in with Clever before the sync loaded them (just_in_time)",
        ))
        .bind(None::<String>)
        .bind(None::<String>)
        .bind("sign-in:clever")
        .fetch_one(&mut *tx)
        .await
        .map_err(sql("recording the sign-in's run"))?;

    // The row as the sync writes it: the synced columns of the schema, a school by its id.
    let nothing = Snapshot::default();
    let lookups = Lookups::new(&nothing);
    let columns = Teacher::TABLE.columns;
    let mut names = vec![
        "district_id",
        "source_id",
        "created_at",
        "updated_at",
        "created_run",
    ];
    let mut values = vec![
        "$1".to_owned(),
        "$2".to_owned(),
        "$3".to_owned(),
        "$3".to_owned(),
        "$4".to_owned(),
    ];
    for (i, column) in columns.iter().enumerate() {
        let n = i + 5;
        names.push(column.name);
        values.push(match column.kind {
            Kind::Ref(entity) => format!(
                "(SELECT id FROM {} WHERE district_id = $1 AND source_id = ${n})",
                schema::layout(entity).name
            ),
            Kind::Text | Kind::Flag => format!("${n}"),
        });
    }
    let insert = format!(
        "INSERT INTO teachers ({}) VALUES ({}) RETURNING id",
        names.join(", "),
        values.join(", ")
    );
    let mut query = sqlx::query_scalar::<_, i64>(AssertSqlSafe(insert))
        .bind(district)
        .bind(teacher.id.as_str())
        .bind(&at)
        .bind(run);
    for column in columns {
        query = match (column.value)(teacher, &lookups) {
            Value::Text(text) => query.bind(text.map(|text| text.into_owned())),
            Value::Ref(id) => query.bind(id.map(str::to_owned)),
            Value::Flag(flag) => query.bind(flag),
        };
    }
    let row = query
        .fetch_one(&mut *tx)
        .await
        .map_err(sql("creating the teacher"))?;
    sqlx::query(
        "INSERT INTO sync_changes (run_id, entity, source_id, member_id, action, reason, author, detail) \
         VALUES ($1, 'teacher', $2, NULL, 'create', $3, 'sign-in', NULL)",
    )
    .bind(run)
    .bind(teacher.id.as_str())
    .bind("signed in with Clever before the sync loaded them (just_in_time)")
    .execute(&mut *tx)
    .await
    .map_err(sql("recording the change"))?;
    sqlx::query(
        "INSERT INTO teacher_accounts (teacher_id, login_state, created_at) VALUES ($1, 'invited', $2) \
         ON CONFLICT (teacher_id) DO NOTHING",
    )
    .bind(row)
    .bind(&at)
    .execute(&mut *tx)
    .await
    .map_err(sql("opening the account"))?;
    sqlx::query(
        "INSERT INTO email_outbox (district_id, run_id, kind, teacher_id, recipient, status, created_at) \
         SELECT $1, $2, 'welcome', t.id, t.email, 'pending', $3 FROM teachers t WHERE t.id = $4 \
         ON CONFLICT (kind, teacher_id) DO NOTHING",
    )
    .bind(district)
    .bind(run)
    .bind(&at)
    .bind(row)
    .execute(&mut *tx)
    .await
    .map_err(sql("queueing the welcome email"))?;
    tx.commit().await.map_err(sql("committing"))?;
    let account = account(db, AccountKind::Teacher, row)
        .await?
        .ok_or_else(|| SignInError::NoDistrict(district_key.to_owned()))?;
    Ok(Created::Created(account))
}

/// What [`create_teacher`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created(Account),
    /// The teacher was there when the lock was taken (a run or another sign-in made them).
    Found(Account),
}

/// How a sign-in ended, as logged and counted (`rosterflow_sso_logins_total{outcome}`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// A synced teacher or student, handed to the Freckle app.
    SignedIn,
    /// A teacher created at this first sign-in (`just_in_time`), handed to the app.
    Created,
    /// A district administrator, signed in to the console.
    Console,
    /// The user's district has no pipeline in this service.
    UnknownDistrict,
    /// A role Freckle has no account for (school admins, staff, contacts).
    RoleNotServed,
    NotSynced,
    Filtered,
    Archived,
    /// The district's run held its lock for longer than a sign-in waits.
    Busy,
    /// The `state` was missing, wrong or expired.
    BadState,
    /// The code had been exchanged already, or Clever refused it.
    CodeRefused,
    /// Clever could not be asked (down, or an answer that could not be read).
    CleverError,
    /// The Freckle DB could not be read or written.
    Unavailable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One sign-in or refusal, as logged.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    pub clever_user: Option<String>,
    pub clever_district: Option<String>,
    pub district_key: Option<String>,
    /// The role this login was for at Clever.
    pub role: Option<String>,
    pub account: Option<(AccountKind, i64)>,
    pub detail: Option<String>,
}

impl Attempt {
    /// The attempt, with why it ended as it did.
    pub fn with_detail(mut self, detail: &str) -> Attempt {
        self.detail = Some(detail.to_owned());
        self
    }
}

/// Logs a sign-in or refusal; returns its id.
pub async fn log(
    db: &Db,
    outcome: Outcome,
    attempt: &Attempt,
    now: DateTime<Utc>,
) -> Result<i64, SignInError> {
    sqlx::query_scalar(
        "INSERT INTO sign_ins (at, outcome, clever_user, clever_district, district_id, role, \
         account_kind, account_id, detail) \
         VALUES ($1, $2, $3, $4, (SELECT id FROM districts WHERE key = $5), $6, $7, $8, $9) RETURNING id",
    )
    .bind(timestamp(now))
    .bind(outcome.as_str())
    .bind(attempt.clever_user.clone())
    .bind(attempt.clever_district.clone())
    .bind(attempt.district_key.clone())
    .bind(attempt.role.clone())
    .bind(attempt.account.map(|(kind, _)| kind.as_str()))
    .bind(attempt.account.map(|(_, id)| id))
    .bind(attempt.detail.clone())
    .fetch_one(&db.pool)
    .await
    .map_err(sql("logging the sign-in"))
}

/// A logged sign-in, for the console.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Logged {
    pub at: String,
    pub outcome: String,
    pub clever_user: Option<String>,
    pub clever_district: Option<String>,
    pub district_key: Option<String>,
    pub role: Option<String>,
    pub account_kind: Option<String>,
    pub account_id: Option<i64>,
    pub name: Option<String>,
    pub detail: Option<String>,
}

/// The latest `limit` sign-ins, newest first; of one district when `district_key` is given.
pub async fn recent(
    db: &Db,
    district_key: Option<&str>,
    limit: i64,
) -> Result<Vec<Logged>, SignInError> {
    let name = |table: &str, kind: &str| {
        format!(
            "WHEN '{kind}' THEN (SELECT COALESCE(x.first_name, '') || ' ' || COALESCE(x.last_name, '') \
             FROM {table} x WHERE x.id = s.account_id)"
        )
    };
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT s.at, s.outcome, s.clever_user, s.clever_district, d.key AS district_key, s.role, \
         s.account_kind, s.account_id, CASE s.account_kind {} {} {} END AS name, s.detail \
         FROM sign_ins s LEFT JOIN districts d ON d.id = s.district_id \
         WHERE (CAST($1 AS TEXT) IS NULL OR d.key = $1) ORDER BY s.id DESC LIMIT $2",
        name("teachers", "teacher"),
        name("students", "student"),
        name("admins", "admin"),
    )))
    .bind(district_key)
    .bind(limit)
    .fetch_all(&db.pool)
    .await
    .map_err(sql("reading the sign-ins"))
}

/// Keeps the `state` of a login the service starts, with the app's own value for it, until
/// `expires`.
pub async fn save_state(
    db: &Db,
    state: &str,
    app_state: Option<&str>,
    expires: DateTime<Utc>,
) -> Result<(), SignInError> {
    sqlx::query(
        "INSERT INTO sign_in_states (state_hash, app_state, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(hash(state))
    .bind(app_state)
    .bind(timestamp(expires))
    .execute(&db.pool)
    .await
    .map_err(sql("saving the state"))?;
    Ok(())
}

/// A login's state, used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The app's own value for the login, if it gave one.
    pub app_state: Option<String>,
}

/// Uses up `state`: the login it started, if it was saved and has not expired (each state
/// works once).
pub async fn take_state(
    db: &Db,
    state: &str,
    now: DateTime<Utc>,
) -> Result<Option<Taken>, SignInError> {
    let taken: Option<(Option<String>,)> = sqlx::query_as(
        "DELETE FROM sign_in_states WHERE state_hash = $1 AND expires_at > $2 RETURNING app_state",
    )
    .bind(hash(state))
    .bind(timestamp(now))
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("checking the state"))?;
    Ok(taken.map(|(app_state,)| Taken { app_state }))
}

/// Marks `code` exchanged, kept until `expires` (past the code's own life at Clever); false if
/// it was exchanged before: a replay.
pub async fn spend_code(db: &Db, code: &str, expires: DateTime<Utc>) -> Result<bool, SignInError> {
    let spent = sqlx::query(
        "INSERT INTO sign_in_codes (code_hash, expires_at) VALUES ($1, $2) ON CONFLICT (code_hash) DO NOTHING",
    )
    .bind(hash(code))
    .bind(timestamp(expires))
    .execute(&db.pool)
    .await
    .map_err(sql("recording the code"))?;
    Ok(spent.rows_affected() == 1)
}

/// Keeps a grant for sign-in `sign_in` (with the app's value for the login) until `expires`.
pub async fn save_grant(
    db: &Db,
    grant: &str,
    sign_in: i64,
    app_state: Option<&str>,
    expires: DateTime<Utc>,
) -> Result<(), SignInError> {
    sqlx::query(
        "INSERT INTO sign_in_grants (grant_hash, sign_in_id, app_state, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash(grant))
    .bind(sign_in)
    .bind(app_state)
    .bind(timestamp(expires))
    .execute(&db.pool)
    .await
    .map_err(sql("saving the grant"))?;
    Ok(())
}

/// What a grant hands the Freckle app: the account, and the app's own value for the login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Handed {
    #[serde(flatten)]
    pub account: Account,
    pub app_state: Option<String>,
}

/// Uses up `grant`: what it hands over, if it exists, has not expired and the account is still
/// active. A grant works once.
pub async fn take_grant(
    db: &Db,
    grant: &str,
    now: DateTime<Utc>,
) -> Result<Option<Handed>, SignInError> {
    let taken: Option<(Option<String>, Option<i64>, Option<String>)> = sqlx::query_as(
        "DELETE FROM sign_in_grants WHERE grant_hash = $1 AND expires_at > $2 \
         RETURNING (SELECT account_kind FROM sign_ins WHERE id = sign_in_id), \
                   (SELECT account_id FROM sign_ins WHERE id = sign_in_id), app_state",
    )
    .bind(hash(grant))
    .bind(timestamp(now))
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("taking the grant"))?;
    let Some((Some(kind), Some(id), app_state)) = taken else {
        return Ok(None);
    };
    let Ok(kind) = kind.parse::<AccountKind>() else {
        return Ok(None);
    };
    Ok(account(db, kind, id)
        .await?
        .map(|account| Handed { account, app_state }))
}

/// Deletes the states, spent codes, grants and console sessions that have expired.
pub async fn purge(db: &Db, now: DateTime<Utc>) -> Result<u64, SignInError> {
    let now = timestamp(now);
    let mut purged = 0;
    for table in [
        "sign_in_states",
        "sign_in_codes",
        "sign_in_grants",
        "console_sessions",
    ] {
        purged += sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE expires_at <= $1"
        )))
        .bind(&now)
        .execute(&db.pool)
        .await
        .map_err(sql("purging expired sign-in records"))?
        .rows_affected();
    }
    Ok(purged)
}

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsoleSession {
    pub id: i64,
    pub user_name: String,
    /// The district a district administrator's session is limited to (its key); `None` for
    /// the operator's.
    pub district_key: Option<String>,
    pub created_at: String,
    pub expires_at: String,
}

/// Starts a console session for `user`, limited to district `district_key` (a district
/// administrator, `admin` their row) or not (the operator), known by `token` until `expires`.
pub async fn open_console_session(
    db: &Db,
    token: &str,
    user: &str,
    district: Option<(&str, i64)>,
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
) -> Result<(), SignInError> {
    let (district_key, admin) = district.unzip();
    sqlx::query(
        "INSERT INTO console_sessions (session_hash, user_name, district_id, admin_id, created_at, expires_at) \
         VALUES ($1, $2, (SELECT id FROM districts WHERE key = $3), $4, $5, $6)",
    )
    .bind(hash(token))
    .bind(user)
    .bind(district_key)
    .bind(admin)
    .bind(timestamp(now))
    .bind(timestamp(expires))
    .execute(&db.pool)
    .await
    .map_err(sql("starting a console session"))?;
    Ok(())
}

const SESSION_COLUMNS: &str =
    "s.id, s.user_name, d.key AS district_key, s.created_at, s.expires_at";

/// The live console session `token` stands for. A district administrator's session ends when
/// their admin row is archived.
pub async fn console_session(
    db: &Db,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<ConsoleSession>, SignInError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {SESSION_COLUMNS} FROM console_sessions s LEFT JOIN districts d ON d.id = s.district_id \
         LEFT JOIN admins a ON a.id = s.admin_id \
         WHERE s.session_hash = $1 AND s.expires_at > $2 \
         AND (s.admin_id IS NULL OR a.archived_at IS NULL)"
    )))
    .bind(hash(token))
    .bind(timestamp(now))
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("reading the console session"))
}

/// The live console sessions, newest first.
pub async fn console_sessions(
    db: &Db,
    now: DateTime<Utc>,
) -> Result<Vec<ConsoleSession>, SignInError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {SESSION_COLUMNS} FROM console_sessions s LEFT JOIN districts d ON d.id = s.district_id \
         WHERE s.expires_at > $1 ORDER BY s.id DESC"
    )))
    .bind(timestamp(now))
    .fetch_all(&db.pool)
    .await
    .map_err(sql("reading the console sessions"))
}

/// Ends the console session `token` stands for (signing out).
pub async fn close_console_session(db: &Db, token: &str) -> Result<(), SignInError> {
    sqlx::query("DELETE FROM console_sessions WHERE session_hash = $1")
        .bind(hash(token))
        .execute(&db.pool)
        .await
        .map_err(sql("ending the console session"))?;
    Ok(())
}

/// Ends console session `id` (the operator ending someone's session); whether it was live.
pub async fn end_console_session(db: &Db, id: i64) -> Result<bool, SignInError> {
    let ended = sqlx::query("DELETE FROM console_sessions WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .map_err(sql("ending a console session"))?;
    Ok(ended.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_796_000_000 + seconds, 0).expect("a time")
    }

    #[tokio::test]
    async fn states_codes_and_grants_work_once_until_they_expire_and_are_purged() {
        let db = Db::open("sqlite::memory:").await.expect("a database");
        save_state(&db, "state-a", Some("app-1"), at(600))
            .await
            .unwrap();
        save_state(&db, "state-b", None, at(600)).await.unwrap();
        assert_eq!(
            take_state(&db, "state-x", at(0)).await.unwrap(),
            None,
            "unknown"
        );
        let taken = take_state(&db, "state-a", at(0)).await.unwrap();
        assert_eq!(taken.unwrap().app_state.as_deref(), Some("app-1"));
        assert_eq!(
            take_state(&db, "state-a", at(1)).await.unwrap(),
            None,
            "used once"
        );
        assert_eq!(
            take_state(&db, "state-b", at(600)).await.unwrap(),
            None,
            "expired"
        );

        assert!(spend_code(&db, "code-1", at(600)).await.unwrap());
        assert!(
            !spend_code(&db, "code-1", at(600)).await.unwrap(),
            "a replay"
        );

        let logged = log(&db, Outcome::SignedIn, &Attempt::default(), at(0))
            .await
            .unwrap();
        save_grant(&db, "grant-1", logged, None, at(60))
            .await
            .unwrap();
        save_grant(&db, "grant-2", logged, None, at(60))
            .await
            .unwrap();
        // The attempt names no account: the grant is used up, and hands over nothing.
        assert_eq!(take_grant(&db, "grant-1", at(0)).await.unwrap(), None);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sign_in_grants")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(left, 1, "grant-1 is gone");

        // Only hashes are stored.
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT state_hash FROM sign_in_states UNION ALL SELECT code_hash FROM sign_in_codes \
             UNION ALL SELECT grant_hash FROM sign_in_grants",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert_eq!(stored.len(), 3);
        assert!(
            stored
                .iter()
                .all(|hash| hash.len() == 64 && !hash.contains('-'))
        );

        // At 600 s everything has expired: purged.
        assert_eq!(purge(&db, at(59)).await.unwrap(), 0);
        assert_eq!(purge(&db, at(600)).await.unwrap(), 3);
    }
}
