//! A pipeline's recent runs as two bar charts, server-rendered inline SVG (no script): the
//! changes of each run and how long it took, oldest on the left, each bar coloured by the run's
//! outcome and titled with its run, time and numbers (a browser shows the title on hover).
//!
//! An approved or discarded run's duration is not drawn: its end is when an admin decided.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};

use super::time;
use rosterflow_store::runs::RunSummary;

/// The charts' drawing box, in SVG units; the SVG scales to the page's width.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 80.0;

/// One bar: its height's value, its outcome, its title.
struct Bar {
    value: f64,
    status: String,
    title: String,
}

/// The charts of `runs` (newest first, as run history lists them).
pub(crate) fn runs(runs: &[RunSummary], zone: Tz, now: DateTime<Utc>) -> Markup {
    let oldest_first: Vec<&RunSummary> = runs.iter().rev().collect();
    let label = |run: &RunSummary| {
        let at = time::parse(&run.started_at)
            .map(|at| time::human(at, zone, now))
            .unwrap_or_else(|| run.started_at.clone());
        format!("Run {} · {} · {at}", run.id, run.status)
    };
    let changes: Vec<Option<Bar>> = oldest_first
        .iter()
        .map(|run| {
            Some(Bar {
                value: run.changes.max(0) as f64,
                status: run.status.clone(),
                title: format!(
                    "{}: {} changes, {} quarantined",
                    label(run),
                    run.changes,
                    run.quarantined
                ),
            })
        })
        .collect();
    let durations: Vec<Option<Bar>> = oldest_first
        .iter()
        .map(|run| {
            if !matches!(run.status.as_str(), "committed" | "held" | "failed") {
                return None;
            }
            let took = time::elapsed(&run.started_at, run.finished_at.as_deref()?)?;
            Some(Bar {
                value: took.num_milliseconds() as f64 / 1000.0,
                status: run.status.clone(),
                title: format!("{}: took {}", label(run), time::duration(took)),
            })
        })
        .collect();
    let most_changes = runs.iter().map(|run| run.changes).max().unwrap_or(0);
    let longest = durations
        .iter()
        .flatten()
        .map(|bar| bar.value)
        .fold(0.0, f64::max);
    html! {
        figure.chart {
            (bars(&changes, "Changes per run"))
            figcaption { "Changes per run, the last " (runs.len()) " runs, oldest on the left; the most: " (most_changes) "." }
        }
        figure.chart {
            (bars(&durations, "Duration per run"))
            figcaption { "How long each run took; the longest: "
                (time::duration(chrono::Duration::milliseconds((longest * 1000.0) as i64))) "." }
        }
        p.legend {
            span.key.committed { "committed" } " " span.key.approved { "approved" } " "
            span.key.held { "held" } " " span.key.failed { "failed" } " " span.key.discarded { "discarded" }
        }
    }
}

/// A chart has room for at least this many bars: a few runs draw a few thin bars on the left.
const SLOTS: usize = 20;

/// A bar chart of `bars` (none: a gap), scaled to the tallest.
fn bars(bars: &[Option<Bar>], name: &str) -> Markup {
    let tallest = bars
        .iter()
        .flatten()
        .map(|bar| bar.value)
        .fold(0.0, f64::max);
    let slot = WIDTH / bars.len().max(SLOTS) as f64;
    let width = (slot * 0.7).max(1.0);
    html! {
        svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width="100%" role="img" aria-label=(name)
            preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg" {
            line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
            @for (index, bar) in bars.iter().enumerate() {
                @if let Some(bar) = bar {
                    @let height = match tallest > 0.0 {
                        // A run that did something is never invisible.
                        true if bar.value > 0.0 => (bar.value / tallest * HEIGHT).max(1.5),
                        _ => 0.0,
                    };
                    rect class=(bar.status) x=(format!("{:.1}", index as f64 * slot + (slot - width) / 2.0))
                        y=(format!("{:.1}", HEIGHT - height)) width=(format!("{width:.1}"))
                        height=(format!("{height:.1}")) {
                        title { (bar.title) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(id: i64, status: &str, changes: i64, took_secs: Option<i64>) -> RunSummary {
        let start =
            Utc.with_ymd_and_hms(2026, 12, 8, 7, 30, 0).unwrap() + chrono::Duration::days(id);
        RunSummary {
            id,
            status: status.into(),
            started_at: rosterflow_store::db::timestamp(start),
            finished_at: took_secs.map(|secs| {
                rosterflow_store::db::timestamp(start + chrono::Duration::seconds(secs))
            }),
            changes,
            quarantined: 0,
            error: None,
            source_kind: None,
            event_cursor: None,
            source_note: None,
            requested_by: None,
            decided_by: None,
        }
    }

    #[test]
    fn runs_are_charted_oldest_first_with_their_outcome_and_numbers() {
        let now = Utc.with_ymd_and_hms(2026, 12, 8, 0, 0, 0).unwrap();
        let zone: Tz = "America/New_York".parse().unwrap();
        // Newest first, as run history lists them.
        let history = [
            run(3, "approved", 0, Some(86_400)),
            run(2, "held", 8000, Some(90)),
            run(1, "committed", 400, Some(30)),
        ];
        let html = runs(&history, zone, now).into_string();
        assert_eq!(html.matches("<svg").count(), 2);
        // Three bars of changes (one of them empty); two durations: an approval's is not one.
        assert_eq!(html.matches("<rect").count(), 5, "{html}");
        let first = html
            .find("Run 1 · committed · Wed 9 Dec, 02:30 EST: 400 changes")
            .expect(&html);
        let second = html.find("Run 2 · held").expect(&html);
        assert!(first < second, "oldest first: {html}");
        assert!(html.contains("took 1 min 30 s"), "{html}");
        assert!(!html.contains("took 24 h"), "{html}");
        assert!(
            html.contains(r#"<rect class="held" x="34.5" y="0.0" width="21.0" height="80.0">"#),
            "{html}"
        );
        assert!(html.contains("the most: 8000."), "{html}");
        assert!(html.contains("the longest: 1 min 30 s."), "{html}");
    }

    #[test]
    fn no_runs_draw_empty_charts() {
        let html = runs(&[], Tz::UTC, Utc::now()).into_string();
        assert_eq!(html.matches("<rect").count(), 0);
    }
}
