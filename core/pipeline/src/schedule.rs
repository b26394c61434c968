//! When a pipeline runs under `rosterflow serve`: a cron pattern read in the district's time
//! zone. Daylight-saving days follow cron's long-standing rule (croner's): a fixed time that
//! falls in the spring gap runs just after it, and one that falls twice in the autumn runs once.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A pipeline's `[schedule]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A cron pattern: minute hour day-of-month month day-of-week, with an optional leading
    /// seconds field (e.g. `"30 2 * * *"`: 02:30 every day).
    pub cron: String,
    /// The IANA time zone the pattern is read in (e.g. `"America/New_York"`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// Each run starts up to this many seconds after its time, so that many districts on the
    /// same pattern do not all hit Clever at once. The delay is fixed per pipeline and time.
    #[serde(default)]
    pub jitter_secs: u64,
    /// A time missed while no `serve` was running is run once at start-up if it is at most this
    /// old; older ones wait for the next time.
    #[serde(default = "default_catch_up_mins")]
    pub catch_up_mins: u64,
}

fn utc() -> String {
    "UTC".into()
}

fn default_catch_up_mins() -> u64 {
    120
}

impl ScheduleConfig {
    /// What is wrong with the table, if anything.
    pub fn validate(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.schedule().err().into_iter().collect();
        if self.jitter_secs > 86_400 {
            problems.push(format!(
                "schedule.jitter_secs: {} is more than a day",
                self.jitter_secs
            ));
        }
        if self.catch_up_mins > 10_080 {
            problems.push(format!(
                "schedule.catch_up_mins: {} is more than a week",
                self.catch_up_mins
            ));
        }
        problems
    }

    /// The schedule the table describes.
    pub fn schedule(&self) -> Result<Schedule, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&self.cron)
            .map_err(|error| {
                format!(
                    "schedule.cron: {:?} is not a cron pattern: {error}",
                    self.cron
                )
            })?;
        let zone = Tz::from_str(&self.timezone).map_err(|_| {
            format!(
                "schedule.timezone: {:?} is not an IANA time zone (e.g. \"America/New_York\")",
                self.timezone
            )
        })?;
        Ok(Schedule {
            cron,
            zone,
            jitter: Duration::from_secs(self.jitter_secs.min(86_400)),
            catch_up: Duration::from_secs(self.catch_up_mins.min(10_080) * 60),
        })
    }
}

/// A compiled `[schedule]`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
    jitter: Duration,
    catch_up: Duration,
}

impl Schedule {
    /// The first time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The newest time at or before `now` that is at most `catch_up` old: the one a service
    /// that was down runs on start-up, unless a run already covered it.
    pub fn missed(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let previous = self
            .cron
            .find_previous_occurrence(&now.with_timezone(&self.zone), true)
            .ok()?
            .with_timezone(&Utc);
        (now - previous <= chrono::Duration::from_std(self.catch_up).ok()?).then_some(previous)
    }

    /// When the run for `time` starts: `time` plus a delay below `jitter`, the same for the
    /// same pipeline and time in every process (and every version).
    pub fn start_of(&self, pipeline: &str, time: DateTime<Utc>) -> DateTime<Utc> {
        let jitter_ms = self.jitter.as_millis() as u64;
        if jitter_ms == 0 {
            return time;
        }
        let digest = Sha256::digest(format!("{pipeline}\n{}", time.timestamp_millis()));
        let (spread, _) = digest.split_first_chunk::<8>().expect("8 of 32 bytes");
        time + chrono::Duration::milliseconds((u64::from_le_bytes(*spread) % jitter_ms) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, timezone: &str) -> Schedule {
        ScheduleConfig {
            cron: cron.into(),
            timezone: timezone.into(),
            jitter_secs: 0,
            catch_up_mins: 120,
        }
        .schedule()
        .unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Every time in `[from, to)`.
    fn times(schedule: &Schedule, from: &str, to: &str) -> Vec<DateTime<Utc>> {
        let (mut at, to) = (utc(from) - chrono::Duration::seconds(1), utc(to));
        let mut times = Vec::new();
        while let Some(next) = schedule.next_after(at).filter(|next| *next < to) {
            times.push(next);
            at = next;
        }
        times
    }

    #[test]
    fn a_daily_time_is_read_in_the_districts_zone() {
        let new_york = schedule("30 2 * * *", "America/New_York");
        // 02:30 EST is 07:30 UTC in January.
        assert_eq!(
            times(&new_york, "2026-01-10T00:00:00Z", "2026-01-12T00:00:00Z"),
            [utc("2026-01-10T07:30:00Z"), utc("2026-01-11T07:30:00Z")]
        );
    }

    #[test]
    fn the_spring_gap_runs_once_just_after_it() {
        // 2026-03-08: New York's clocks jump from 02:00 to 03:00; 02:30 does not exist.
        let new_york = schedule("30 2 * * *", "America/New_York");
        let runs = times(&new_york, "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z");
        assert_eq!(
            runs,
            [
                utc("2026-03-08T07:00:00Z"), // 03:00 EDT, the first time after the gap
                utc("2026-03-09T06:30:00Z"), // 02:30 EDT
            ]
        );
    }

    #[test]
    fn the_autumn_repeat_runs_once() {
        // 2026-11-01: New York's clocks fall back from 02:00 EDT to 01:00 EST; 01:30 happens twice.
        let new_york = schedule("30 1 * * *", "America/New_York");
        let runs = times(&new_york, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z");
        assert_eq!(
            runs,
            [
                utc("2026-11-01T05:30:00Z"), // 01:30 EDT, the first of the two
                utc("2026-11-02T06:30:00Z"), // 01:30 EST
            ]
        );
    }

    #[test]
    fn a_missed_time_is_caught_up_only_within_the_window() {
        let nightly = schedule("0 2 * * *", "UTC");
        assert_eq!(
            nightly.missed(utc("2026-05-01T03:59:00Z")),
            Some(utc("2026-05-01T02:00:00Z"))
        );
        assert_eq!(nightly.missed(utc("2026-05-01T04:01:00Z")), None);
        assert_eq!(
            nightly.missed(utc("2026-05-01T02:00:00Z")),
            Some(utc("2026-05-01T02:00:00Z"))
        );
    }

    #[test]
    fn seconds_are_optional() {
        let every_two = schedule("*/2 * * * * *", "UTC");
        assert_eq!(
            every_two.next_after(utc("2026-05-01T00:00:01Z")),
            Some(utc("2026-05-01T00:00:02Z"))
        );
    }

    #[test]
    fn jitter_is_below_its_bound_and_the_same_everywhere() {
        let mut config = ScheduleConfig {
            cron: "0 2 * * *".into(),
            timezone: "UTC".into(),
            jitter_secs: 600,
            catch_up_mins: 120,
        };
        let jittered = config.schedule().unwrap();
        let at = utc("2026-05-01T02:00:00Z");
        let starts: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|pipeline| jittered.start_of(pipeline, at))
            .collect();
        assert!(
            starts
                .iter()
                .all(|start| *start >= at && *start < at + chrono::Duration::seconds(600))
        );
        assert!(
            starts.windows(2).any(|pair| pair[0] != pair[1]),
            "{starts:?}"
        );
        assert_eq!(jittered.start_of("a", at), starts[0]);
        config.jitter_secs = 0;
        assert_eq!(config.schedule().unwrap().start_of("a", at), at);
    }

    #[test]
    fn bad_patterns_and_zones_are_named() {
        let bad = ScheduleConfig {
            cron: "61 2 * * *".into(),
            timezone: "Mars/Olympus".into(),
            jitter_secs: 0,
            catch_up_mins: 0,
        };
        let problems = bad.validate();
        assert!(
            problems[0].contains("schedule.cron: \"61 2 * * *\""),
            "{problems:?}"
        );
        let bad_zone = ScheduleConfig {
            cron: "0 2 * * *".into(),
            ..bad
        };
        assert!(bad_zone.validate()[0].contains("schedule.timezone: \"Mars/Olympus\""));
    }
}
