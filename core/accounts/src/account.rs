//! Teacher accounts' password-set tokens: issued for a welcome email, stored only as a hash,
//! redeemed once before they expire.
//!
//! A token is 32 random bytes from a cryptographic generator, written as 64 hex digits (safe in
//! a URL as is). The DB keeps its SHA-256 hash (`teacher_accounts.password_token_hash`) and its
//! expiry; the raw token exists only in memory while the email is composed, and in the email.
//! Because a redeem looks the account up by the hash, there is no secret comparison to time.
//! A teacher holds at most one live token: issuing a new one replaces the old, so only the link
//! in the latest email works.

use std::fmt;

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use rosterflow_store::db::{self, Db};

/// A teacher's row id in the Freckle DB (`teachers.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TeacherId(pub i64);

impl fmt::Display for TeacherId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A raw password-set token. It never prints: `Debug` shows a placeholder, and there is no
/// `Display`; [`PasswordToken::expose`] is for the email body only.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordToken(String);

impl PasswordToken {
    /// A fresh token: 32 random bytes from the thread-local CSPRNG, as 64 hex digits.
    pub fn generate() -> PasswordToken {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        PasswordToken(hex::encode(bytes))
    }

    /// The token as it goes into the password-set link.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The form the DB stores.
    pub fn hash(&self) -> String {
        hash_token(&self.0)
    }
}

impl fmt::Debug for PasswordToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordToken(***)")
    }
}

/// The SHA-256 of a raw token, as 64 lowercase hex digits: what `password_token_hash` holds.
pub fn hash_token(raw_token: &str) -> String {
    hex::encode(Sha256::digest(raw_token.as_bytes()))
}

/// Why a token could not be issued or redeemed. Messages never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "the password-set link is not valid: it was never issued, was already used, or was replaced by a newer one"
    )]
    InvalidToken,
    #[error("the password-set link of teacher {teacher_id} expired at {expired_at}")]
    Expired {
        teacher_id: TeacherId,
        expired_at: String,
    },
    #[error("teacher {teacher_id} has no account row")]
    NoAccount { teacher_id: TeacherId },
    #[error("teacher {teacher_id}'s account is {state}, not invited")]
    NotInvited {
        teacher_id: TeacherId,
        state: String,
    },
    #[error("cannot {operation} in the freckle db")]
    Db {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

fn db_error(operation: &'static str) -> impl FnOnce(sqlx::Error) -> AccountError {
    move |source| AccountError::Db { operation, source }
}

/// Issues a fresh token for an invited teacher, valid for `ttl` from `now`, and stores its hash
/// on `conn` (pass a transaction to tie it to other writes). Any earlier token stops working.
pub async fn issue_password_token(
    conn: &mut AnyConnection,
    teacher_id: TeacherId,
    now: DateTime<Utc>,
    ttl: chrono::Duration,
) -> Result<PasswordToken, AccountError> {
    let token = PasswordToken::generate();
    let updated = sqlx::query(
        "UPDATE teacher_accounts SET password_token_hash = $1, password_token_expires_at = $2 \
         WHERE teacher_id = $3 AND login_state = 'invited'",
    )
    .bind(token.hash())
    .bind(db::timestamp(now + ttl))
    .bind(teacher_id.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error("store a password-set token"))?;
    if updated.rows_affected() == 1 {
        return Ok(token);
    }
    let state: Option<(String,)> =
        sqlx::query_as("SELECT login_state FROM teacher_accounts WHERE teacher_id = $1")
            .bind(teacher_id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error("read a teacher account"))?;
    Err(match state {
        None => AccountError::NoAccount { teacher_id },
        Some((state,)) => AccountError::NotInvited { teacher_id, state },
    })
}

/// Redeems a password-set token: if it is the teacher's current token and has not expired, it is
/// consumed (a second redeem fails with [`AccountError::InvalidToken`]), the account becomes
/// `active` with `password_set_at = now`, and the teacher is returned so the caller can store
/// the new password.
pub async fn redeem_password_token(
    db: &Db,
    raw_token: &str,
    now: DateTime<Utc>,
) -> Result<TeacherId, AccountError> {
    let hash = hash_token(raw_token.trim());
    let mut tx = db
        .pool
        .begin()
        .await
        .map_err(db_error("begin a transaction"))?;
    let found: Option<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT teacher_id, login_state, password_token_expires_at FROM teacher_accounts \
         WHERE password_token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error("look up a password-set token"))?;
    let Some((teacher_id, state, expires_at)) = found else {
        return Err(AccountError::InvalidToken);
    };
    let teacher_id = TeacherId(teacher_id);
    if state != "invited" {
        return Err(AccountError::NotInvited { teacher_id, state });
    }
    // A token without a readable expiry is treated as expired: fail closed.
    let expired_at = expires_at.clone().unwrap_or_default();
    match expires_at.as_deref().and_then(db::parse_timestamp) {
        Some(expiry) if expiry > now => {}
        _ => {
            return Err(AccountError::Expired {
                teacher_id,
                expired_at,
            });
        }
    }
    // Conditional on the hash: of two concurrent redeems, only one updates the row.
    let consumed = sqlx::query(
        "UPDATE teacher_accounts SET password_token_hash = NULL, \
         password_token_expires_at = NULL, login_state = 'active', password_set_at = $1 \
         WHERE teacher_id = $2 AND password_token_hash = $3",
    )
    .bind(db::timestamp(now))
    .bind(teacher_id.0)
    .bind(&hash)
    .execute(&mut *tx)
    .await
    .map_err(db_error("consume a password-set token"))?;
    if consumed.rows_affected() != 1 {
        return Err(AccountError::InvalidToken);
    }
    tx.commit()
        .await
        .map_err(db_error("commit a password-set token redeem"))?;
    tracing::info!(teacher_id = teacher_id.0, "password-set token redeemed");
    Ok(teacher_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let a = PasswordToken::generate();
        let b = PasswordToken::generate();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_sha256_hex_and_not_the_token() {
        let token = PasswordToken::generate();
        assert_eq!(token.hash().len(), 64);
        assert_ne!(token.hash(), token.expose());
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = PasswordToken::generate();
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
