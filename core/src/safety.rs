//! Safety checks: a plan that would archive or rewrite too much of a district is held for an
//! admin instead of applied. One bad SIS export must not archive half a district.
//!
//! Thresholds are per pipeline (`[safety]`), checked per record type district-wide and per
//! school. A collection that comes back empty while the DB holds many of its records is a
//! "successful failure" (HTTP 200, no data) and always holds the run.

use std::collections::BTreeMap;

use crate::config::SafetyConfig;
use crate::model::Entity;
use crate::plan::{MembershipAction, Plan, RecordAction};

/// Every reason to hold `plan`; empty when it may be applied.
pub fn check(plan: &Plan, config: &SafetyConfig) -> Vec<String> {
    let mut reasons = Vec::new();
    for (entity, before) in &plan.active_before {
        let in_source = plan.in_source.get(entity).copied().unwrap_or_default();
        if *before >= config.min_records && in_source == 0 && *entity != Entity::District {
            reasons.push(format!(
                "{entity}: the source returned none while the DB holds {before} active: a successful failure?"
            ));
        }
    }
    let mut archives: BTreeMap<(Entity, Option<&str>), usize> = BTreeMap::new();
    let mut updates: BTreeMap<Entity, usize> = BTreeMap::new();
    for change in &plan.records {
        match change.action {
            RecordAction::Archive => {
                *archives.entry((change.entity, None)).or_default() += 1;
                if let Some(school) = &change.school {
                    *archives
                        .entry((change.entity, Some(school.as_str())))
                        .or_default() += 1;
                }
            }
            RecordAction::Update => *updates.entry(change.entity).or_default() += 1,
            RecordAction::Create | RecordAction::Restore => {}
        }
    }
    for change in &plan.memberships {
        if change.action == MembershipAction::End {
            *archives.entry((change.entity, None)).or_default() += 1;
        }
    }
    for ((entity, school), count) in archives {
        let before = match school {
            None => plan.active_before.get(&entity).copied(),
            Some(school) => plan
                .active_by_school
                .get(&(entity, school.to_owned()))
                .copied(),
        }
        .unwrap_or_default();
        if let Some(percent) = over(
            count,
            before,
            config.archive_max_percent,
            config.min_records,
        ) {
            let place =
                school.map_or_else(|| "district-wide".to_owned(), |s| format!("in school {s}"));
            reasons.push(format!(
                "{entity}: would archive or end {count} of {before} ({percent:.1}%) {place}, above the {}% threshold",
                config.archive_max_percent
            ));
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
    use crate::plan::RecordChange;

    fn archive(entity: Entity, key: usize, school: &str) -> RecordChange {
        RecordChange {
            entity,
            key: key.to_string(),
            action: RecordAction::Archive,
            id: Some(key as i64),
            values: Vec::new(),
            changed: Vec::new(),
            reason: String::new(),
            author: "sync".into(),
            school: Some(school.into()),
        }
    }

    fn plan(archived: usize, before: usize) -> Plan {
        Plan {
            records: (0..archived)
                .map(|i| archive(Entity::Student, i, "north"))
                .collect(),
            active_before: BTreeMap::from([(Entity::Student, before)]),
            in_source: BTreeMap::from([(Entity::Student, before - archived)]),
            active_by_school: BTreeMap::from([((Entity::Student, "north".into()), before)]),
            ..Plan::default()
        }
    }

    #[test]
    fn archiving_half_the_students_holds_the_run() {
        let reasons = check(&plan(50, 100), &SafetyConfig::default());
        assert_eq!(reasons.len(), 2, "{reasons:?}"); // district-wide and in the school
    }

    #[test]
    fn a_few_archives_pass() {
        assert!(check(&plan(5, 100), &SafetyConfig::default()).is_empty());
    }

    #[test]
    fn an_empty_collection_is_a_successful_failure() {
        let reasons = check(&plan(100, 100), &SafetyConfig::default());
        assert!(reasons[0].contains("successful failure"), "{reasons:?}");
    }
}
