//! rosterflow keeps a school district's rosters in the Freckle DB exactly in step with its
//! student information system, as Clever delivers it.
//!
//! # Layout
//!
//! A run flows through one module per stage:
//!
//! - [`config`]: a district's pipeline file: parsed, validated (every error with file:line:column),
//!   then built into a runnable pipeline.
//! - [`extract`]: sources that produce a [`model::Snapshot`]: the Clever Data API, recorded replays.
//! - [`transform`]: sharing rules, filters and district WASM plugins that edit the snapshot.
//! - [`plan`]: the diff of a snapshot against the district's state in the Freckle DB: every
//!   create, update, archive, restore and side effect, before anything is written.
//! - [`store`]: the Freckle DB as the sync sees it: the synced tables, reading a district's
//!   state, applying a plan in one set-based transaction, the per-district run lock.
//! - [`runs`]: run history, held runs and their approval.
//! - [`export`]: Parquet growth data and roster history for BI tools, by district and school year.
//! - [`safety`]: the checks that hold a plan for an admin instead of applying it.
//! - [`sync`]: one run of a pipeline, stage after stage.
//! - [`db`]: opening and migrating the Freckle DB (SQLite or PostgreSQL).
//! - [`email`]: delivering the welcome emails of committed runs over SMTP, exactly once.
//! - [`account`]: teacher accounts' single-use, expiring password-set tokens, stored hashed.
//! - [`model`]: the roster types every stage shares.
//! - [`roster`]: manual edits and their guard: Clever-managed rosters are locked, shares are not.
//! - [`explain`]: why a student is (not) in a class, from the recorded decisions and history.
//! - [`report`]: each run's changes and quarantined records, as JSON or CSV.
//! - [`cli`]: the `rosterflow` command.

pub mod account;
pub mod cli;
pub mod config;
pub mod db;
pub mod email;
pub mod explain;
pub mod export;
pub mod extract;
pub mod growth;
pub mod model;
pub mod plan;
pub mod report;
pub mod roster;
pub mod runs;
pub mod safety;
pub mod serve;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod transform;

/// The `tracing` target of progress reports: what a long step is doing now, for someone
/// watching a terminal. The binary shows the latest on stderr (a terminal only) and keeps them
/// out of the logs; an empty message ends the display.
pub const PROGRESS: &str = "rosterflow::progress";

/// Runs blocking or CPU-heavy work (a SQLite transaction, planning, plugins) on this thread,
/// telling a multi-threaded runtime to move its other tasks elsewhere meanwhile; on a
/// current-thread runtime it simply runs.
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// An error and all its causes on one line (`outer: inner: root`), for logs and run history.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
