//! The new school year. Once a year a district's classes end and next year's start with new
//! ids and new terms, students move up a grade (some to another school), and the graduating
//! class leaves. Judged by the usual thresholds, that plan looks like a broken feed: every class
//! archived, every membership ended. It is recognised instead, by the school years of the
//! classes that end and of those that start, and held (or applied, in the pipeline's rollover
//! window) as what it is.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;

use crate::schema::{Columns, layout};
use crate::{End, EndReason, Plan, RecordAction, RecordChange};
use rosterflow_model::Entity;
use rosterflow_model::school_year::SchoolYear;

/// A plan that ends one school year's classes and starts the next one's.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollover {
    /// The school year that ends: that of most classes that end.
    pub from: SchoolYear,
    /// The school year that starts: that of most classes that start.
    pub to: SchoolYear,
    /// Classes of a school year before `to` that end.
    pub classes_ending: usize,
    /// Classes of `to` that start.
    pub classes_starting: usize,
    pub students_continuing: usize,
    pub teachers_continuing: usize,
    /// Students and teachers gone from the source (graduated or left), not dropped by a filter.
    pub students_leaving: usize,
    pub teachers_leaving: usize,
    /// The rows of the classes whose end the rollover explains.
    ending: HashSet<i64>,
    /// The rows of the students and teachers who leave.
    leaving: HashSet<(Entity, i64)>,
    /// The columns of students and teachers that move up with the year: grade and school.
    moving_up: BTreeMap<Entity, Columns>,
}

impl Rollover {
    /// The new school year `plan` starts, if it starts one: more than half of the district's
    /// active classes end, and most classes that start belong to a later school year than
    /// those that end. A class's school year is its term's (by its dates, else its name); a
    /// class without one belongs to the year it was first synced in (`today` for a new one).
    pub fn of(plan: &Plan<'_>, today: NaiveDate) -> Option<Rollover> {
        let classes = plan.state.table(Entity::Class);
        let mut ending_years: BTreeMap<SchoolYear, Vec<i64>> = BTreeMap::new();
        let mut starting_years: BTreeMap<SchoolYear, usize> = BTreeMap::new();
        let mut leaving = HashSet::new();
        for change in &plan.records {
            match (change.entity, change.action) {
                // A class a filter or plugin dropped did not end with the year.
                (Entity::Class, RecordAction::Archive) if change.by.is_none() => {
                    let (_, row) = classes.at(change.index as usize);
                    if let Some(year) = row.year {
                        ending_years.entry(year).or_default().push(row.id);
                    }
                }
                (Entity::Class, RecordAction::Create) => {
                    let section = &plan.snapshot.sections[change.index as usize];
                    let year = section
                        .term
                        .as_deref()
                        .and_then(|id| plan.snapshot.terms.iter().find(|t| t.id == id))
                        .and_then(SchoolYear::of_term)
                        .unwrap_or_else(|| SchoolYear::of_day(today));
                    *starting_years.entry(year).or_default() += 1;
                }
                (entity @ (Entity::Student | Entity::Teacher), RecordAction::Archive)
                    if change.by.is_none() =>
                {
                    leaving.extend(change.row.map(|row| (entity, row)));
                }
                _ => {}
            }
        }
        let (&to, &starting) = starting_years.iter().max_by_key(|(_, count)| **count)?;
        let all_starting: usize = starting_years.values().sum();
        let ending: HashSet<i64> = ending_years
            .range(..to)
            .flat_map(|(_, rows)| rows.iter().copied())
            .collect();
        let from = ending_years
            .range(..to)
            .max_by_key(|(_, rows)| rows.len())
            .map(|(year, _)| *year)?;
        let active = |entity| plan.active_before.get(&entity).copied().unwrap_or_default();
        if ending.len() * 2 <= active(Entity::Class) || starting * 2 <= all_starting {
            return None;
        }
        let leaving_of = |entity| leaving.iter().filter(|(e, _)| *e == entity).count();
        let (students_leaving, teachers_leaving) =
            (leaving_of(Entity::Student), leaving_of(Entity::Teacher));
        let moving_up = [Entity::Student, Entity::Teacher]
            .into_iter()
            .map(|entity| (entity, layout(entity).mask(&["grade", "school_id"])))
            .collect();
        Some(Rollover {
            from,
            to,
            classes_ending: ending.len(),
            classes_starting: starting,
            students_continuing: active(Entity::Student).saturating_sub(students_leaving),
            teachers_continuing: active(Entity::Teacher).saturating_sub(teachers_leaving),
            students_leaving,
            teachers_leaving,
            ending,
            leaving,
            moving_up,
        })
    }

    /// The one sentence an admin reads: `new school year 2026-27: 378 classes of 2025-26 end,
    /// 381 start; 1004 students and 89 teachers continue, 212 graduate or leave`.
    pub fn reason(&self) -> String {
        let mut reason = format!(
            "new school year {}: {} of {} end, {} start; {} and {} continue, {} graduate or leave",
            self.to,
            count(self.classes_ending, "class", "classes"),
            self.from,
            self.classes_starting,
            count(self.students_continuing, "student", "students"),
            count(self.teachers_continuing, "teacher", "teachers"),
            self.students_leaving,
        );
        if self.teachers_leaving > 0 {
            reason.push_str(&format!(
                ", {} leave",
                count(self.teachers_leaving, "teacher", "teachers")
            ));
        }
        reason
    }

    /// Whether the change is the year's: a class of the old year that ends, or a student or
    /// teacher moving up a grade or to another school. Who leaves is judged apart
    /// ([`Rollover::leaves`]).
    pub fn explains(&self, change: &RecordChange<'_>) -> bool {
        match (change.entity, change.action) {
            (Entity::Class, RecordAction::Archive) => {
                change.row.is_some_and(|row| self.ending.contains(&row))
            }
            (entity, RecordAction::Update) => self
                .moving_up
                .get(&entity)
                .is_some_and(|&columns| change.changed & !columns == 0),
            _ => false,
        }
    }

    /// Whether the change is a student or teacher leaving with the year.
    pub fn leaves(&self, change: &RecordChange<'_>) -> bool {
        change.action == RecordAction::Archive
            && change
                .row
                .is_some_and(|row| self.leaving.contains(&(change.entity, row)))
    }

    /// Whether a membership ends with the year: its class ended, or its member left.
    pub fn explains_end(&self, end: &End<'_>) -> bool {
        match end.reason {
            EndReason::ClassGone(None) => self.ending.contains(&end.class_row),
            EndReason::MemberGone(entity, None) => self.leaving.contains(&(entity, end.member_row)),
            _ => false,
        }
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Month and day, as `[safety] rollover_window` writes them (`"07-15"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthDay {
    pub month: u32,
    pub day: u32,
}

impl std::str::FromStr for MonthDay {
    type Err = String;

    fn from_str(text: &str) -> Result<MonthDay, String> {
        let wrong = || format!("{text:?} is not a month and day like \"07-15\"");
        let (month, day) = text.split_once('-').ok_or_else(wrong)?;
        if month.len() != 2 || day.len() != 2 {
            return Err(wrong());
        }
        let month_day = MonthDay {
            month: month.parse().map_err(|_| wrong())?,
            day: day.parse().map_err(|_| wrong())?,
        };
        // A leap year has every day a year can have.
        NaiveDate::from_ymd_opt(2024, month_day.month, month_day.day).ok_or_else(wrong)?;
        Ok(month_day)
    }
}

impl MonthDay {
    pub fn of(day: NaiveDate) -> MonthDay {
        use chrono::Datelike;
        MonthDay {
            month: day.month(),
            day: day.day(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::{RolloverWindow, SafetyConfig, check};
    use crate::state::{State, loaded};
    use rosterflow_model::{School, Section, Snapshot, Student, Teacher, Term};

    /// A school year of one school: 30 classes of 10 students each in `year`'s term, 300
    /// students in grades 9 to 12 (SIS ids `s0`..), 30 teachers.
    fn year(year: i16, students: std::ops::Range<usize>, promoted: i16) -> Snapshot {
        let term = Term {
            id: format!("term-{year}").into(),
            name: Some(format!("{year}-{}", year + 1)),
            start_date: Some(format!("{year}-08-17")),
            end_date: Some(format!("{}-06-05", year + 1)),
            ..Term::default()
        };
        let students: Vec<Student> = students
            .map(|i| Student {
                id: format!("s{i}").into(),
                grade: Some((9 + (i % 4) as i16 + promoted).to_string()),
                school: Some("high".into()),
                ..Student::default()
            })
            .collect();
        Snapshot {
            schools: vec![School {
                id: "high".into(),
                name: "Central High".into(),
                ..School::default()
            }],
            terms: vec![term.clone()],
            teachers: (0..30)
                .map(|i| Teacher {
                    id: format!("t{i}").into(),
                    school: Some("high".into()),
                    ..Teacher::default()
                })
                .collect(),
            sections: (0..30)
                .map(|i| Section {
                    id: format!("{year}-c{i}").into(),
                    school: "high".into(),
                    name: format!("Class {i}"),
                    term: Some(term.id.clone()),
                    teachers: vec![format!("t{i}").into()],
                    students: students
                        .iter()
                        .skip(i * 10)
                        .take(10)
                        .map(|s| s.id.clone())
                        .collect(),
                    ..Section::default()
                })
                .collect(),
            students,
            ..Snapshot::default()
        }
    }

    /// The Freckle DB after syncing `snapshot`, its classes of `school_year`.
    fn synced(snapshot: &Snapshot, school_year: i16) -> State {
        let mut state = loaded(snapshot);
        state
            .tables
            .get_mut(&Entity::Class)
            .expect("classes")
            .set_year(SchoolYear(school_year));
        state
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("a date")
    }

    #[test]
    fn a_new_school_year_is_one_reason_not_a_page_of_thresholds() {
        let last_year = year(2025, 0..300, 0);
        let state = synced(&last_year, 2025);
        // The seniors (grade 12, a quarter) graduate, 20 freshmen arrive, everyone else moves up.
        let mut this_year = year(2026, 0..320, 1);
        this_year
            .students
            .retain(|s| s.grade.as_deref() != Some("13"));
        let plan = Plan::compute(&this_year, &state);
        let rollover = Rollover::of(&plan, day("2026-08-20")).expect("a rollover");
        assert_eq!(
            (rollover.from, rollover.to),
            (SchoolYear(2025), SchoolYear(2026))
        );
        let reasons = check(&plan, &SafetyConfig::default(), day("2026-08-20"));
        assert_eq!(
            reasons,
            [
                "new school year 2026-27: 30 classes of 2025-26 end, 30 start; 225 students and 30 \
                 teachers continue, 75 graduate or leave"
            ]
        );

        // In the pipeline's rollover window it is applied without a hold.
        let config: SafetyConfig =
            serde_json::from_str(r#"{"rollover_window": ["07-15", "09-15"]}"#).expect("valid");
        assert!(check(&plan, &config, day("2026-08-20")).is_empty());
        assert_eq!(
            check(&plan, &config, day("2026-10-01")).len(),
            1,
            "outside the window it is held"
        );
    }

    #[test]
    fn what_the_year_does_not_explain_is_still_held() {
        let last_year = year(2025, 0..300, 0);
        let state = synced(&last_year, 2025);
        // Half the students are missing: a broken export, not a graduation.
        let this_year = year(2026, 0..150, 1);
        let plan = Plan::compute(&this_year, &state);
        let config: SafetyConfig =
            serde_json::from_str(r#"{"rollover_window": ["07-15", "09-15"]}"#).expect("valid");
        let reasons = check(&plan, &config, day("2026-08-20"));
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].starts_with(
                "student: at the new school year, would lose 150 of 300 (50.0%) district-wide, \
                 above the 30% rollover_leave_max_percent threshold"
            ),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains(r#"in school "Central High" (high)"#),
            "{reasons:?}"
        );
    }

    #[test]
    fn classes_ending_without_new_ones_of_a_later_year_are_no_rollover() {
        let last_year = year(2025, 0..300, 0);
        let state = synced(&last_year, 2025);
        // The same year's classes under new ids: a re-keyed SIS, not a new school year.
        let mut rekeyed = year(2025, 0..300, 0);
        for section in &mut rekeyed.sections {
            section.id = format!("new-{}", section.id).into();
        }
        let plan = Plan::compute(&rekeyed, &state);
        assert_eq!(Rollover::of(&plan, day("2026-01-10")), None);
        let reasons = check(&plan, &SafetyConfig::default(), day("2026-01-10"));
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("class: would archive or end 30 of 30")),
            "{reasons:?}"
        );
    }

    #[test]
    fn classes_without_terms_belong_to_the_year_they_were_synced_in() {
        let mut last_year = year(2025, 0..300, 0);
        last_year.terms.clear();
        for section in &mut last_year.sections {
            section.term = None;
        }
        let state = synced(&last_year, 2025);
        let mut this_year = year(2026, 0..300, 1);
        this_year.terms.clear();
        for section in &mut this_year.sections {
            section.term = None;
        }
        let plan = Plan::compute(&this_year, &state);
        // In June the new classes would be of the same school year: no rollover.
        assert_eq!(Rollover::of(&plan, day("2026-06-20")), None);
        let rollover = Rollover::of(&plan, day("2026-08-20")).expect("a rollover");
        assert_eq!(rollover.to, SchoolYear(2026));
    }

    #[test]
    fn a_rollover_window_reads_month_and_day_and_may_span_new_year() {
        let window = |from: &str, to: &str| RolloverWindow::try_from([from.into(), to.into()]);
        let summer = window("07-15", "09-15").expect("valid");
        assert!(summer.contains(day("2026-07-15")) && summer.contains(day("2026-09-15")));
        assert!(!summer.contains(day("2026-09-16")));
        let southern = window("12-01", "02-28").expect("valid");
        assert!(southern.contains(day("2027-01-20")) && !southern.contains(day("2026-11-30")));
        assert!(window("7-15", "09-15").is_err());
        assert!(window("02-30", "03-01").is_err());
    }
}
