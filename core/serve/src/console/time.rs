//! Times and durations as an admin reads them: in the pipeline's time zone (its `[schedule]
//! timezone`, UTC when it has none), to the minute, with the zone's abbreviation ("Tue 8 Dec,
//! 02:30 EST"), the year only when it is not this one. The exact time stays in the page, in the
//! `datetime` and `title` of each `<time>`.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};

use rosterflow_pipeline::schedule::ScheduleConfig;

/// The time zone a pipeline's times are shown in: its schedule's, else UTC.
pub(crate) fn zone_of(schedule: Option<&ScheduleConfig>) -> Tz {
    schedule
        .and_then(|schedule| schedule.timezone.parse().ok())
        .unwrap_or(Tz::UTC)
}

/// `at` in `zone`, as "Tue 8 Dec, 02:30 EST"; "Tue 8 Dec 2025, 02:30 EST" when it is not in
/// the year of `now` there.
pub(crate) fn human(at: DateTime<Utc>, zone: Tz, now: DateTime<Utc>) -> String {
    let local = at.with_timezone(&zone);
    if local.year() == now.with_timezone(&zone).year() {
        local.format("%a %-d %b, %H:%M %Z").to_string()
    } else {
        local.format("%a %-d %b %Y, %H:%M %Z").to_string()
    }
}

/// A `<time>` element showing `at` as [`human`] does, its exact UTC time kept beside.
pub(crate) fn time(at: DateTime<Utc>, zone: Tz, now: DateTime<Utc>) -> Markup {
    let exact = rosterflow_store::db::timestamp(at);
    html! { time datetime=(exact) title=(exact) { (human(at, zone, now)) } }
}

/// A stored timestamp (run history's).
pub(crate) fn parse(text: &str) -> Option<DateTime<Utc>> {
    rosterflow_store::db::parse_timestamp(text)
}

/// A stored timestamp as [`time`] shows it; a text that is not one, as it is.
pub(crate) fn stored(text: &str, zone: Tz, now: DateTime<Utc>) -> Markup {
    match parse(text) {
        Some(at) => time(at, zone, now),
        None => html! { (text) },
    }
}

/// How long from `start` to `end`, both stored timestamps; none if either is not one or the
/// end comes first.
pub(crate) fn elapsed(start: &str, end: &str) -> Option<chrono::Duration> {
    let (start, end) = (parse(start)?, parse(end)?);
    (end >= start).then(|| end - start)
}

/// A duration as "850 ms", "42 s", "3 min 5 s", "2 h 10 min".
pub(crate) fn duration(took: chrono::Duration) -> String {
    let ms = took.num_milliseconds().max(0);
    let secs = ms / 1000;
    match secs {
        0 => format!("{ms} ms"),
        1..60 => format!("{secs} s"),
        60..3600 => match secs % 60 {
            0 => format!("{} min", secs / 60),
            s => format!("{} min {s} s", secs / 60),
        },
        _ => match secs % 3600 / 60 {
            0 => format!("{} h", secs / 3600),
            m => format!("{} h {m} min", secs / 3600),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn new_york() -> Tz {
        "America/New_York".parse().unwrap()
    }

    #[test]
    fn a_time_reads_in_the_pipelines_zone_to_the_minute() {
        let now = utc(2026, 12, 8, 1, 0);
        assert_eq!(
            human(utc(2026, 12, 8, 7, 30), new_york(), now),
            "Tue 8 Dec, 02:30 EST"
        );
        assert_eq!(
            human(utc(2026, 12, 8, 7, 30), Tz::UTC, now),
            "Tue 8 Dec, 07:30 UTC"
        );
    }

    #[test]
    fn daylight_saving_time_moves_the_offset_and_the_name() {
        let now = utc(2026, 3, 1, 0, 0);
        // 02:30 in New York, the day before and the day after clocks go forward (8 March 2026).
        assert_eq!(
            human(utc(2026, 3, 7, 7, 30), new_york(), now),
            "Sat 7 Mar, 02:30 EST"
        );
        assert_eq!(
            human(utc(2026, 3, 9, 6, 30), new_york(), now),
            "Mon 9 Mar, 02:30 EDT"
        );
        // And back (1 November 2026): 01:30 happens twice, told apart by its zone's name.
        assert_eq!(
            human(utc(2026, 11, 1, 5, 30), new_york(), now),
            "Sun 1 Nov, 01:30 EDT"
        );
        assert_eq!(
            human(utc(2026, 11, 1, 6, 30), new_york(), now),
            "Sun 1 Nov, 01:30 EST"
        );
    }

    #[test]
    fn the_year_shows_only_when_it_is_not_this_one_there() {
        // Already 2027 in UTC, still 2026 in New York.
        let now = utc(2027, 1, 1, 2, 0);
        assert_eq!(
            human(utc(2026, 12, 31, 23, 0), new_york(), now),
            "Thu 31 Dec, 18:00 EST"
        );
        assert_eq!(
            human(utc(2026, 12, 31, 23, 0), Tz::UTC, now),
            "Thu 31 Dec 2026, 23:00 UTC"
        );
    }

    #[test]
    fn a_pipeline_without_a_schedule_or_with_an_unknown_zone_reads_in_utc() {
        let schedule = |timezone: &str| ScheduleConfig {
            cron: "0 3 * * *".into(),
            timezone: timezone.into(),
            jitter_secs: 0,
            catch_up_mins: 120,
        };
        assert_eq!(zone_of(None), Tz::UTC);
        assert_eq!(zone_of(Some(&schedule("America/New_York"))), new_york());
        assert_eq!(zone_of(Some(&schedule("Mars/Olympus"))), Tz::UTC);
    }

    #[test]
    fn a_stored_timestamp_keeps_its_exact_time_beside() {
        let now = utc(2026, 12, 8, 1, 0);
        let shown = stored("2026-12-08T07:30:12.123456Z", new_york(), now).into_string();
        assert_eq!(
            shown,
            "<time datetime=\"2026-12-08T07:30:12.123456Z\" title=\"2026-12-08T07:30:12.123456Z\">Tue 8 Dec, 02:30 EST</time>"
        );
        assert_eq!(stored("soon", Tz::UTC, now).into_string(), "soon");
    }

    #[test]
    fn durations_read_in_the_largest_units_that_matter() {
        let d = chrono::Duration::milliseconds;
        assert_eq!(duration(d(850)), "850 ms");
        assert_eq!(duration(d(42_300)), "42 s");
        assert_eq!(duration(d(185_000)), "3 min 5 s");
        assert_eq!(duration(d(120_000)), "2 min");
        assert_eq!(duration(d(7_800_000)), "2 h 10 min");
        assert_eq!(
            elapsed("2026-12-08T07:30:00.000000Z", "2026-12-08T07:31:30.500000Z"),
            Some(d(90_500))
        );
        assert_eq!(
            elapsed("2026-12-08T07:30:00Z", "2026-12-08T07:29:00Z"),
            None
        );
    }
}
