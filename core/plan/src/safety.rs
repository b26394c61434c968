//! Safety checks: a plan that would archive or rewrite too much of a district is held for an
//! admin instead of applied. One bad SIS export must not archive half a district.
//!
//! Thresholds are per pipeline (`[safety]`), checked per record type district-wide and per
//! school. A collection that comes back empty while the DB holds many of its records is a
//! "successful failure" (HTTP 200, no data) and always holds the run. A new school year
//! ([`Rollover`]) holds the run with one reason of its own instead of the thresholds its
//! changes would trip, unless it comes in the pipeline's rollover window; what it does not
//! explain is judged as always.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::rollover::{MonthDay, Rollover};
use crate::{Plan, RecordAction};
use rosterflow_model::Entity;

/// Thresholds beyond which a plan is held for an admin rather than applied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// Hold the run if it would archive more than this percentage of any record type,
    /// district-wide or in any one school.
    #[serde(default = "default_archive_max_percent")]
    pub archive_max_percent: f64,
    /// Hold the run if it would update more than this percentage of any record type.
    #[serde(default = "default_update_max_percent")]
    pub update_max_percent: f64,
    /// Thresholds apply only to record types (or schools) with at least this many records,
    /// so that a school of three classes does not hold a run over one archive.
    #[serde(default = "default_min_records")]
    pub min_records: usize,
    /// At a new school year, hold the run if more than this percentage of the students or
    /// teachers leave, district-wide or in any one school (graduation alone takes about a
    /// quarter of a four-year high school).
    #[serde(default = "default_rollover_leave_max_percent")]
    pub rollover_leave_max_percent: f64,
    /// The days of the year (`["07-15", "09-15"]`, both included) in which a new school year is
    /// applied without a hold of its own.
    #[serde(default)]
    pub rollover_window: Option<RolloverWindow>,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            archive_max_percent: default_archive_max_percent(),
            update_max_percent: default_update_max_percent(),
            min_records: default_min_records(),
            rollover_leave_max_percent: default_rollover_leave_max_percent(),
            rollover_window: None,
        }
    }
}

/// From one day of the year to another, both included; across New Year when `to` comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "[String; 2]")]
pub struct RolloverWindow {
    pub from: MonthDay,
    pub to: MonthDay,
}

impl TryFrom<[String; 2]> for RolloverWindow {
    type Error = String;

    fn try_from([from, to]: [String; 2]) -> Result<RolloverWindow, String> {
        Ok(RolloverWindow {
            from: from.parse()?,
            to: to.parse()?,
        })
    }
}

impl RolloverWindow {
    pub fn contains(&self, day: NaiveDate) -> bool {
        let day = MonthDay::of(day);
        if self.from <= self.to {
            self.from <= day && day <= self.to
        } else {
            self.from <= day || day <= self.to
        }
    }
}

fn default_archive_max_percent() -> f64 {
    10.0
}
fn default_update_max_percent() -> f64 {
    75.0
}
fn default_min_records() -> usize {
    20
}
fn default_rollover_leave_max_percent() -> f64 {
    30.0
}

impl SafetyConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, value) in [
            ("archive_max_percent", self.archive_max_percent),
            ("update_max_percent", self.update_max_percent),
            (
                "rollover_leave_max_percent",
                self.rollover_leave_max_percent,
            ),
        ] {
            if !(0.0..=100.0).contains(&value) {
                problems.push(format!(
                    "safety.{name}: {value} is not a percentage (0 to 100)"
                ));
            }
        }
        problems
    }
}

/// Every reason to hold `plan`, made on `today`; empty when it may be applied.
pub fn check(plan: &Plan<'_>, config: &SafetyConfig, today: NaiveDate) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(switch) = &plan.state.switch {
        reasons.push(switch.hold_reason());
    }
    for (entity, before) in &plan.active_before {
        let in_source = plan.in_source.get(entity).copied().unwrap_or_default();
        if *before >= config.min_records && in_source == 0 && *entity != Entity::District {
            reasons.push(format!(
                "{entity}: the source returned none while the DB holds {before} active: a successful failure?"
            ));
        }
    }
    let rollover = Rollover::of(plan, today);
    if let Some(rollover) = &rollover
        && !config.rollover_window.is_some_and(|w| w.contains(today))
    {
        reasons.push(rollover.reason());
    }
    // Archives and ends per entity, district-wide (`None`) and per school row; at a new school
    // year, those who leave apart, and what the year explains not at all.
    let mut archives = Counts::new();
    let mut leaves = Counts::new();
    let mut updates: BTreeMap<Entity, usize> = BTreeMap::new();
    for change in &plan.records {
        if rollover.as_ref().is_some_and(|r| r.explains(change)) {
            continue;
        }
        match change.action {
            RecordAction::Archive => {
                let counts = if rollover.as_ref().is_some_and(|r| r.leaves(change)) {
                    &mut leaves
                } else {
                    &mut archives
                };
                *counts.entry((change.entity, None)).or_default() += 1;
                let (_, row) = plan.state.table(change.entity).at(change.index as usize);
                if let Some(school) = row.school {
                    *counts.entry((change.entity, Some(school))).or_default() += 1;
                }
            }
            RecordAction::Update => *updates.entry(change.entity).or_default() += 1,
            RecordAction::Create | RecordAction::Restore => {}
        }
    }
    for end in &plan.ends {
        if !rollover.as_ref().is_some_and(|r| r.explains_end(end)) {
            *archives.entry((end.entity, None)).or_default() += 1;
        }
    }
    for (counts, limit, what, threshold) in [
        (
            archives,
            config.archive_max_percent,
            "would archive or end",
            "",
        ),
        (
            leaves,
            config.rollover_leave_max_percent,
            "at the new school year, would lose",
            " rollover_leave_max_percent",
        ),
    ] {
        for ((entity, school), count) in counts {
            let before = match school {
                None => plan.active_before.get(&entity).copied(),
                Some(school) => plan.active_by_school.get(&(entity, school)).copied(),
            }
            .unwrap_or_default();
            if let Some(percent) = over(count, before, limit, config.min_records) {
                let place = match school {
                    None => "district-wide".to_owned(),
                    Some(row) => school_named(plan, plan.key_of_row(Entity::School, row)),
                };
                reasons.push(format!(
                    "{entity}: {what} {count} of {before} ({percent:.1}%) {place}, above the {limit}%{threshold} threshold"
                ));
            }
        }
    }
    for (entity, count) in updates {
        let before = plan.active_before.get(&entity).copied().unwrap_or_default();
        if let Some(percent) = over(count, before, config.update_max_percent, config.min_records) {
            reasons.push(format!(
                "{entity}: would update {count} of {before} ({percent:.1}%), above the {}% threshold",
                config.update_max_percent
            ));
        }
    }
    reasons
}

/// Changes counted per entity, district-wide (`None`) and per school row.
type Counts = BTreeMap<(Entity, Option<i64>), usize>;

/// `in school "Lincoln Elementary" (5a25...)`: an admin knows a school by its name, the SIS and
/// Clever by its id. A school the source no longer sends is named by its id alone.
fn school_named(plan: &Plan, id: Option<&str>) -> String {
    let id = id.unwrap_or("?");
    match plan.snapshot.schools.iter().find(|school| school.id == id) {
        Some(school) if !school.name.is_empty() => format!("in school {:?} ({id})", school.name),
        _ => format!("in school {id}"),
    }
}

/// The percentage `count` is of `before`, when it exceeds `limit` on a large enough base.
fn over(count: usize, before: usize, limit: f64, min_records: usize) -> Option<f64> {
    if before < min_records.max(1) {
        return None;
    }
    let percent = count as f64 * 100.0 / before as f64;
    (percent > limit).then_some(percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::loaded;
    use rosterflow_model::{School, Snapshot, Student};

    /// A DB of `before` students in one school, and a source that still has `kept` of them.
    fn reasons(before: usize, kept: usize) -> Vec<String> {
        let student = |i: usize| Student {
            id: format!("s{i}").into(),
            school: Some("north".into()),
            ..Student::default()
        };
        let mut snapshot = Snapshot {
            schools: vec![School {
                id: "north".into(),
                name: "North High".into(),
                ..School::default()
            }],
            students: (0..before).map(student).collect(),
            ..Snapshot::default()
        };
        let state = loaded(&snapshot);
        snapshot.students.truncate(kept);
        check(
            &Plan::compute(&snapshot, &state),
            &SafetyConfig::default(),
            NaiveDate::default(),
        )
    }

    #[test]
    fn archiving_half_the_students_holds_the_run_district_wide_and_in_the_school() {
        let reasons = reasons(100, 50);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].contains("50 of 100 (50.0%) district-wide"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains(r#"in school "North High" (north)"#),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_few_archives_pass() {
        assert!(reasons(100, 95).is_empty());
    }

    #[test]
    fn an_empty_collection_is_a_successful_failure() {
        let reasons = reasons(100, 0);
        assert!(reasons[0].contains("successful failure"), "{reasons:?}");
    }

    #[test]
    fn small_record_types_are_not_judged() {
        assert!(reasons(10, 0).is_empty());
    }
}
