//! Which database errors may pass on another try, decided once for both backends: what makes a
//! failed run worth trying again (`rosterflow serve`) rather than a failure to fix.
//!
//! Transient: the database could not be reached or was lost (I/O, a cut connection, SQLSTATE
//! classes 08 and 57P), a transaction lost a race (40001 serialization failure, 40P01
//! deadlock), a lock was not granted in time (55P03, SQLite busy or locked), or there was no
//! room (53100 disk full, 53300 too many connections, SQLite full or an I/O error). Anything
//! else fails the same way again: a constraint (class 23), SQL the schema refuses (class 42), a
//! read-only or corrupt database, a row that does not decode or is not there.

/// Whether a sqlx error (PostgreSQL, or SQLite through sqlx) may pass on another try.
pub fn sqlx_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // After a cut the connection reads what it did not expect.
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| code_is_transient(&code)),
        _ => false,
    }
}

/// Whether a database error code is transient: a PostgreSQL SQLSTATE (5 characters), or a
/// SQLite result code (a number, its primary code in the low byte).
fn code_is_transient(code: &str) -> bool {
    if code.len() == 5 {
        return code.starts_with("08")
            || code.starts_with("57P")
            || matches!(code, "40001" | "40P01" | "55P03" | "53100" | "53300");
    }
    code.parse::<i32>()
        .is_ok_and(|code| sqlite_primary_is_transient(code & 0xff))
}

/// SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR and SQLITE_FULL.
fn sqlite_primary_is_transient(primary: i32) -> bool {
    matches!(primary, 5 | 6 | 10 | 13)
}

/// Whether a rusqlite error may pass on another try.
pub fn rusqlite_is_transient(error: &rusqlite::Error) -> bool {
    match error {
        rusqlite::Error::SqliteFailure(error, _) => {
            sqlite_primary_is_transient(error.extended_code & 0xff)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lost_connections_races_locks_and_full_disks_are_transient() {
        for code in [
            "08006", "08001", "57P01", "57P03", "40001", "40P01", "55P03", "53100",
        ] {
            assert!(code_is_transient(code), "{code}");
        }
        // Unique and foreign-key violations, an undefined table, a syntax error, a read-only
        // transaction, a division by zero.
        for code in ["23505", "23503", "42P01", "42601", "25006", "22012"] {
            assert!(!code_is_transient(code), "{code}");
        }
        // SQLite: busy, locked, IOERR_WRITE, full; then read-only, corrupt, constraint
        // (UNIQUE), misuse.
        for code in ["5", "6", "778", "13"] {
            assert!(code_is_transient(code), "{code}");
        }
        for code in ["8", "11", "2067", "21"] {
            assert!(!code_is_transient(code), "{code}");
        }
        assert!(sqlx_is_transient(&sqlx::Error::Protocol("cut".into())));
        assert!(sqlx_is_transient(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(!sqlx_is_transient(&sqlx::Error::RowNotFound));
        assert!(!sqlx_is_transient(&sqlx::Error::ColumnNotFound("x".into())));
    }

    #[test]
    fn a_read_only_or_corrupt_sqlite_database_is_not_transient() {
        let failure =
            |code: i32| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert!(!rusqlite_is_transient(&failure(
            rusqlite::ffi::SQLITE_READONLY
        )));
        assert!(!rusqlite_is_transient(&failure(
            rusqlite::ffi::SQLITE_CORRUPT
        )));
        assert!(!rusqlite_is_transient(&failure(
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        )));
        assert!(rusqlite_is_transient(&failure(rusqlite::ffi::SQLITE_BUSY)));
        assert!(rusqlite_is_transient(&failure(rusqlite::ffi::SQLITE_FULL)));
        assert!(rusqlite_is_transient(&failure(778)));
        assert!(!rusqlite_is_transient(
            &rusqlite::Error::QueryReturnedNoRows
        ));
    }
}
