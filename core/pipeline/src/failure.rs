//! What a failure means, decided once: the command line turns it into an exit code, `serve`
//! into a retry (or not) and the `outcome` it counts. A failure is classified by the first error
//! in its chain that says what it is.

use rosterflow_extract::ExtractError;
use rosterflow_store::StoreError;
use rosterflow_store::db::DbError;
use rosterflow_store::runs::RunsError;
use rosterflow_store::transient;
use rosterflow_transform::TransformError;

use crate::config::ConfigError;
use crate::sync::SyncError;

/// Process exit codes, so that a scheduler can tell outcomes apart.
pub mod exit {
    /// Applied cleanly (or nothing to do).
    pub const OK: u8 = 0;
    /// Applied, but some records were quarantined: see the run's report.
    pub const QUARANTINED: u8 = 1;
    /// Failed: nothing was applied.
    pub const FAILED: u8 = 2;
    /// Held for an admin: nothing was applied.
    pub const HELD: u8 = 3;
    /// Another run of the district is in progress (EX_TEMPFAIL): try again later.
    pub const BUSY: u8 = 75;
    /// A bad configuration (EX_CONFIG): the pipeline file, or a setting it names that the source
    /// or a plugin refuses. See [`Failure::Config`](super::Failure::Config).
    pub const CONFIG: u8 = 78;
}

impl SyncError {
    /// What this failure means: see [`Failure`].
    pub fn failure(&self) -> Failure {
        match self {
            SyncError::Extract { source, .. } => match source {
                ExtractError::Unauthorized { .. }
                | ExtractError::WrongDistrict { .. }
                | ExtractError::SeveralDistricts { .. } => Failure::Config,
                // OneRoster: what only the feed's or the service's settings can fix.
                ExtractError::NoManifest { .. }
                | ExtractError::Manifest { .. }
                | ExtractError::MissingFile { .. }
                | ExtractError::MissingColumn { .. }
                | ExtractError::SeveralDistrictOrgs { .. }
                | ExtractError::NoDistrictOrg
                | ExtractError::DeltaWithoutBulk { .. }
                | ExtractError::VersionChanged { .. }
                | ExtractError::Location { .. }
                | ExtractError::ClientRefused { .. }
                | ExtractError::AccessRefused { .. } => Failure::Config,
                ExtractError::Exhausted { .. } => Failure::Transient,
                source if source.is_retryable() => Failure::Transient,
                _ => Failure::Failed,
            },
            SyncError::Transform { source, .. } => match source {
                TransformError::Pattern { .. } => Failure::Config,
                TransformError::Plugin(plugin) if plugin.is_config() => Failure::Config,
                TransformError::Plugin(_) => Failure::Failed,
            },
            SyncError::Store { source, .. } => store_failure(source),
            // Run history that could not be read or written: the database was lost or busy,
            // or failed in a way another try cannot mend.
            SyncError::Runs {
                source: RunsError::Sql { source, .. },
                ..
            } if transient::sqlx_is_transient(source) => Failure::Transient,
            // Planning again cannot help a held run: its plan is the one the admin reviewed.
            SyncError::Outdated { .. } | SyncError::Runs { .. } => Failure::Failed,
        }
    }

    /// Whether another run of the district held its lock.
    pub fn is_busy(&self) -> bool {
        self.failure() == Failure::Busy
    }
}

fn store_failure(error: &StoreError) -> Failure {
    match error {
        StoreError::Busy { .. } => Failure::Busy,
        // The database was lost or busy under the run, or another run committed first: a
        // later run may succeed (the database back, room made on its disk). A read-only or
        // corrupt database, a constraint, SQL the schema refuses fail again the same way.
        error if error.is_transient() => Failure::Transient,
        _ => Failure::Failed,
    }
}

/// What a failure means to whoever runs pipelines, decided here once for the command line (its
/// exit code) and for `serve` (whether it tries again, how it counts the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The pipeline file, or the source's settings it names, must be fixed by an admin.
    Config,
    /// Another run of the district holds its lock.
    Busy,
    /// The source or the database was unreachable or overloaded, or another run committed
    /// while this one planned: the same run may succeed later.
    Transient,
    /// Anything else. Nothing was applied.
    Failed,
}

impl Failure {
    /// What an error means, from the first error in its chain that rosterflow classifies.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Failure {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if let Some(error) = error.downcast_ref::<SyncError>() {
                return error.failure();
            }
            if error.is::<ConfigError>() {
                return Failure::Config;
            }
            if let Some(error) = error.downcast_ref::<StoreError>() {
                return store_failure(error);
            }
            if let Some(DbError::Connect { source, .. }) = error.downcast_ref::<DbError>() {
                return if transient::sqlx_is_transient(source) {
                    Failure::Transient
                } else {
                    Failure::Failed
                };
            }
            cause = error.source();
        }
        Failure::Failed
    }

    /// The process exit code of a command that failed this way.
    pub fn exit_code(self) -> u8 {
        match self {
            Failure::Config => exit::CONFIG,
            Failure::Busy => exit::BUSY,
            Failure::Transient | Failure::Failed => exit::FAILED,
        }
    }

    /// Whether a scheduled run that failed this way is tried again.
    pub fn is_retried(self) -> bool {
        matches!(self, Failure::Busy | Failure::Transient)
    }

    /// The `outcome` label of a failed run in `rosterflow_runs_total`.
    pub fn outcome(self) -> &'static str {
        match self {
            Failure::Config => "config_error",
            Failure::Busy | Failure::Transient => "retrying",
            Failure::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn store(source: StoreError) -> SyncError {
        SyncError::Store {
            pipeline: "p".into(),
            source,
        }
    }

    #[test]
    fn a_refused_token_is_the_admins_to_fix_never_retried() {
        let error = SyncError::Extract {
            pipeline: "p".into(),
            source: ExtractError::Unauthorized {
                status: 401,
                url: "https://api.clever.com/v3.0/districts".into(),
            },
        };
        let failure = Failure::of(&error);
        assert_eq!(failure, Failure::Config);
        assert_eq!(failure.exit_code(), exit::CONFIG);
        assert!(!failure.is_retried());
        assert_eq!(failure.outcome(), "config_error");
    }

    fn extract(source: ExtractError) -> SyncError {
        SyncError::Extract {
            pipeline: "p".into(),
            source,
        }
    }

    #[test]
    fn oneroster_settings_the_source_refuses_are_the_admins_to_fix() {
        let refused = [
            ExtractError::NoManifest {
                location: "/feeds/today".into(),
            },
            ExtractError::Manifest {
                location: "/feeds/today".into(),
                reason: "has no oneroster.version".into(),
            },
            ExtractError::MissingFile {
                location: "/feeds/today".into(),
                file: "users.csv",
                mode: "bulk",
            },
            ExtractError::MissingColumn {
                file: "users.csv",
                column: "role",
                version: "1.1",
            },
            ExtractError::SeveralDistrictOrgs {
                found: vec!["d1".into(), "d2".into()],
            },
            ExtractError::NoDistrictOrg,
            ExtractError::DeltaWithoutBulk {
                files: "users.csv".into(),
            },
            ExtractError::VersionChanged {
                roster: "1.1",
                feed: "1.2",
            },
            ExtractError::Location {
                path: "ftp://x/".into(),
                reason: "unsupported scheme".into(),
            },
            ExtractError::ClientRefused {
                url: "https://sis.example.org/oauth/token".into(),
                status: 401,
                reason: "invalid_client: unknown client or wrong secret".into(),
            },
            ExtractError::AccessRefused {
                url: "https://sis.example.org/ims/oneroster/v1p1/users".into(),
                status: 403,
            },
        ];
        for source in refused {
            let shown = source.to_string();
            let failure = Failure::of(&extract(source));
            assert_eq!(failure, Failure::Config, "{shown}");
            assert_eq!(failure.exit_code(), exit::CONFIG, "{shown}");
            assert!(!failure.is_retried(), "{shown}");
        }
        // A busy service is tried again; a record it cannot serve is a failed run.
        let busy = extract(ExtractError::Service {
            status: 503,
            url: "https://sis.example.org/ims/oneroster/v1p1/users".into(),
            message: "server_busy".into(),
        });
        assert_eq!(busy.failure(), Failure::Transient);
        let refused = extract(ExtractError::Service {
            status: 400,
            url: "https://sis.example.org/ims/oneroster/v1p1/users".into(),
            message: "invalid_filter_field".into(),
        });
        assert_eq!(refused.failure(), Failure::Failed);
    }

    #[test]
    fn a_busy_district_and_a_moved_one_are_tried_again() {
        let busy = store(StoreError::Busy {
            district: "d".into(),
            waited_secs: 0,
        });
        assert_eq!(busy.failure(), Failure::Busy);
        assert_eq!(busy.failure().exit_code(), exit::BUSY);
        assert!(busy.failure().is_retried() && busy.is_busy());
        let moved = store(StoreError::Stale {
            planned: Some(1),
            now: Some(2),
        });
        assert_eq!(moved.failure(), Failure::Transient);
        assert_eq!(moved.failure().exit_code(), exit::FAILED);
        assert_eq!(moved.failure().outcome(), "retrying");
    }

    /// A database that is read-only, corrupt or refuses the statement fails the same way on
    /// every try: retrying it forever hides it. A lost connection or a busy database passes.
    #[test]
    fn only_a_database_lost_or_busy_is_tried_again() {
        let sqlite = |code: i32| {
            store(StoreError::Sqlite {
                step: "applying".into(),
                source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
            })
        };
        for code in [
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_CORRUPT,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE,
        ] {
            assert_eq!(sqlite(code).failure(), Failure::Failed, "{code}");
        }
        assert_eq!(
            sqlite(rusqlite::ffi::SQLITE_BUSY).failure(),
            Failure::Transient
        );
        let postgres = |source| {
            store(StoreError::Postgres {
                step: "applying".into(),
                source,
            })
        };
        assert_eq!(
            postgres(sqlx::Error::RowNotFound).failure(),
            Failure::Failed
        );
        assert_eq!(
            postgres(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())).failure(),
            Failure::Transient
        );
        let runs = |source| SyncError::Runs {
            pipeline: "p".into(),
            source: RunsError::Sql {
                step: "recording the run",
                source,
            },
        };
        assert_eq!(runs(sqlx::Error::RowNotFound).failure(), Failure::Failed);
        assert_eq!(
            runs(sqlx::Error::Protocol("cut".into())).failure(),
            Failure::Transient
        );
        // Both fail the command the same way: the exit codes do not change.
        assert_eq!(Failure::Failed.exit_code(), Failure::Transient.exit_code());
    }

    #[test]
    fn a_held_run_whose_district_moved_is_not_approved_later() {
        let outdated = SyncError::Outdated {
            pipeline: "p".into(),
            run: 3,
            source: StoreError::Stale {
                planned: Some(1),
                now: Some(2),
            },
        };
        assert_eq!(outdated.failure(), Failure::Failed);
        assert!(!outdated.failure().is_retried());
    }

    #[test]
    fn a_cause_deep_in_the_chain_decides() {
        #[derive(Debug, thiserror::Error)]
        #[error("running the command")]
        struct Outer(#[source] ConfigError);
        let error = Outer(ConfigError::Invalid {
            path: PathBuf::from("p.toml"),
            problems: Vec::new(),
        });
        assert_eq!(Failure::of(&error), Failure::Config);
        let plain = std::io::Error::other("something else");
        assert_eq!(Failure::of(&plain), Failure::Failed);
    }
}
