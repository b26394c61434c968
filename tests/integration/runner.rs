//! What a process lends each run: the Freckle DB's pool, the plugin host and the clock.

use chrono::{DateTime, Utc};
use rosterflow_model::Clock;
use rosterflow_pipeline::sync::{RunOptions, RunStatus, Runner};
use rosterflow_transform::plugin::Plugins;

use crate::on_both_backends;
use crate::util::{Backend, TestDb};

/// A run reads the time from its runner's clock: here one that starts in 2030 and moves with
/// tokio's clock, as a test that pauses time would give it.
async fn a_run_is_recorded_at_its_runners_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let origin: DateTime<Utc> = "2030-09-01T06:00:00Z".parse().expect("a time");
    let runner =
        Runner::new(db.open().await, Plugins::default()).with_clock(Clock::following_tokio(origin));
    let first = runner
        .run(&db.demo_pipeline(), &RunOptions::default())
        .await
        .expect("a run");
    let again = runner
        .run(&db.demo_pipeline(), &RunOptions::default())
        .await
        .expect("a second run on the same pool");
    assert!(matches!(first.status, RunStatus::Committed { .. }));
    assert_eq!(
        again.plan.change_count(),
        0,
        "the second run changes nothing"
    );
    let started = db
        .rows("SELECT started_at FROM sync_runs ORDER BY id")
        .await;
    assert_eq!(started.len(), 2, "{started:?}");
    for at in &started {
        assert!(
            at.starts_with("2030-09-01T06:0"),
            "recorded at the runner's time: {at}"
        );
    }
}

on_both_backends!(a_run_is_recorded_at_its_runners_time);
