//! The time as a process reads it: the system's, or one that follows tokio's clock, so that a
//! test can pause time and advance it instead of sleeping.

use chrono::{DateTime, Utc};

/// Where a run or the service reads the current time.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// `origin` at the tokio instant `start`, moving as tokio's clock moves (and standing still
    /// while a test has it paused).
    Tokio {
        origin: DateTime<Utc>,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `origin` now and follows tokio's clock from here.
    pub fn following_tokio(origin: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            origin,
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { origin, start } => {
                let elapsed = chrono::Duration::from_std(start.elapsed())
                    .expect("a test's clock stays within chrono's range");
                *origin + elapsed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_with_tokio_time() {
        let origin = DateTime::parse_from_rfc3339("2026-09-01T06:00:00Z")
            .expect("a time")
            .to_utc();
        let clock = Clock::following_tokio(origin);
        assert_eq!(clock.now(), origin);
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(clock.now(), origin + chrono::Duration::seconds(90));
    }
}
