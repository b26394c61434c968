//! The metrics rosterflow records, by name. Any part may record them (the `metrics` facade does
//! nothing until a recorder is installed); `rosterflow serve` installs one and exports them at
//! `/metrics` in the Prometheus text format.

/// Runs by pipeline and outcome (`committed`, `quarantined`, `held`, `failed`, `retrying`,
/// `already_ran`, `config_error`, `unknown_pipeline`); a failure's outcome is its
/// `Failure::outcome` in the pipeline crate.
pub const RUNS: &str = "rosterflow_runs_total";
/// Run durations by pipeline, in seconds.
pub const RUN_SECONDS: &str = "rosterflow_run_duration_seconds";
/// Roster rows and memberships changed by committed runs, by pipeline.
pub const CHANGES: &str = "rosterflow_records_changed_total";
/// Records quarantined by each pipeline's last run.
pub const QUARANTINED: &str = "rosterflow_records_quarantined";
/// Runs waiting for an admin, by pipeline.
pub const HELD: &str = "rosterflow_runs_held";
/// When each pipeline runs next (Unix seconds).
pub const NEXT_RUN: &str = "rosterflow_next_run_timestamp_seconds";
/// Pipeline files the service cannot serve.
pub const BAD_FILES: &str = "rosterflow_pipeline_files_invalid";
/// Welcome emails by outcome (`sent`, `failed`, `retrying`).
pub const EMAILS: &str = "rosterflow_welcome_emails_total";
/// Requests to Clever sent again after a failure, and waits for its rate limit.
pub const HTTP_RETRIES: &str = "rosterflow_http_retries_total";
pub const RATE_LIMIT_WAITS: &str = "rosterflow_rate_limit_waits_total";
/// Time each plugin run took, by plugin, in seconds.
pub const PLUGIN_SECONDS: &str = "rosterflow_plugin_duration_seconds";
/// Sign-ins with Clever by outcome (`signed_in`, `created`, and each reason for a refusal: see
/// `Outcome` in the store's `sign_in` module).
pub const SSO_LOGINS: &str = "rosterflow_sso_logins_total";
