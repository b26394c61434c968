//! A held run's page, read at a glance: why it is held in one sentence (every reason listed
//! below it), and what its plan would change as one row per school, a column per kind of change
//! (new, changed, archived students; started and ended enrolments...) and a bar for the largest
//! share of a school's records of one type it would archive.

use std::collections::BTreeMap;

use maud::{Markup, html};

use rosterflow_model::Entity;
use rosterflow_store::report::{ActiveRecords, PlannedChanges};

/// The school of records of no school (terms, courses, district admins).
const NO_SCHOOL: &str = "(no school)";

/// How the second part of a reason that holds "; " begins.
const CONTINUED: [&str; 2] = ["discard it", "see "];

/// A hold's reasons as the run history stores them (joined by "; "), the one that matters
/// first: a plan the district has moved past cannot be approved, whatever else it does.
pub(crate) fn reasons(note: &str) -> Vec<String> {
    // Split at the top level only: a reason may hold "; " in parentheses (a source switch's).
    let mut reasons = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (at, c) in note.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ';' if depth == 0 && note[at..].starts_with("; ") => {
                reasons.push(note[start..at].trim().to_owned());
                start = at + 2;
            }
            _ => {}
        }
    }
    reasons.push(note[start..].trim().to_owned());
    // What follows a reason's own "; ": "...: approving it will be refused; discard it and run
    // again", "...; see the dry run for every match".
    let mut whole: Vec<String> = Vec::new();
    for reason in reasons {
        match whole.last_mut() {
            Some(last) if CONTINUED.iter().any(|c| reason.starts_with(c)) => {
                last.push_str("; ");
                last.push_str(&reason);
            }
            _ => whole.push(reason),
        }
    }
    let mut reasons = whole;
    reasons.retain(|reason| !reason.is_empty());
    reasons.sort_by_key(|reason| !reason.starts_with("the district has moved"));
    reasons
}

/// One reason as a clause of a sentence: a safety hold's "class: would archive or end 165 of
/// 165 (100.0%) in school ..." reads "it would archive or end 165 of 165 classes (100.0%) in
/// school ..."; any other reason as it is.
pub(crate) fn clause(reason: &str) -> String {
    let worded = || {
        let (entity, rest) = reason.split_once(": would ")?;
        let noun = plural(Entity::parse(entity)?);
        let (verb, rest) = rest.split_once(' ')?;
        let verb = match verb {
            "archive" => "archive or end",
            "update" => "update",
            _ => return None,
        };
        let rest = rest.strip_prefix("or end ").unwrap_or(rest);
        let (count, rest) = rest.split_once(" of ")?;
        let (before, rest) = rest.split_once(' ')?;
        Some(format!("it would {verb} {count} of {before} {noun} {rest}"))
    };
    worded().unwrap_or_else(|| reason.to_owned())
}

/// The sentence a held run's page leads with.
pub(crate) fn headline(reasons: &[String]) -> String {
    match reasons {
        [] => "Held for approval: nothing of it is applied until someone approves it.".to_owned(),
        [only] => format!("Held for approval because {}.", clause(only)),
        [first, rest @ ..] => format!(
            "Held for approval because {}, and {} more reason{} listed below.",
            clause(first),
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
    }
}

/// A kind of change, as a column: an entity and an action (`student`, `archive`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Kind {
    /// Where the entity comes in a row: people first, then classes and memberships.
    order: (usize, usize),
    pub entity: String,
    pub action: String,
}

impl Kind {
    fn parse(change: &str) -> Kind {
        let (entity, action) = change.split_once('.').unwrap_or((change, ""));
        const ENTITIES: [&str; 10] = [
            "student",
            "teacher",
            "class",
            "class_student",
            "class_teacher",
            "admin",
            "course",
            "term",
            "school",
            "district",
        ];
        const ACTIONS: [&str; 6] = ["create", "restore", "update", "start", "archive", "end"];
        let place =
            |all: &[&str], name: &str| all.iter().position(|n| *n == name).unwrap_or(all.len());
        Kind {
            order: (place(&ENTITIES, entity), place(&ACTIONS, action)),
            entity: entity.to_owned(),
            action: action.to_owned(),
        }
    }

    /// The column's heading: the records, then what happens to them.
    pub fn records(&self) -> String {
        match Entity::parse(&self.entity) {
            Some(entity) => rosterflow_model::text::capitalised(plural(entity)),
            None => self.entity.clone(),
        }
    }

    pub fn what(&self) -> &str {
        match self.action.as_str() {
            "create" => "new",
            "restore" => "back",
            "update" => "changed",
            "start" => "start",
            "archive" => "archived",
            "end" => "end",
            other => other,
        }
    }

    /// Whether the change takes something away (drawn as such).
    fn ends(&self) -> bool {
        matches!(self.action.as_str(), "archive" | "end")
    }
}

/// The largest share of one type of a school's records a plan would archive.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Share {
    pub entity: String,
    pub ended: usize,
    pub active: usize,
}

impl Share {
    pub fn percent(&self) -> f64 {
        self.ended as f64 * 100.0 / self.active.max(1) as f64
    }
}

/// One school's changes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SchoolChanges {
    pub school: String,
    /// By column, as [`PerSchool::kinds`].
    pub counts: Vec<usize>,
    pub share: Option<Share>,
}

/// A held plan's changes, one row per school.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PerSchool {
    /// The kinds of change the plan makes, one column each.
    pub kinds: Vec<Kind>,
    /// The schools, those it would empty most first; records of no school last.
    pub schools: Vec<SchoolChanges>,
}

/// `planned` (changes per school and type) as one row per school.
pub(crate) fn per_school(planned: &[PlannedChanges], active: &[ActiveRecords]) -> PerSchool {
    let mut kinds: Vec<Kind> = planned.iter().map(|p| Kind::parse(&p.change)).collect();
    kinds.sort();
    kinds.dedup();
    let mut schools: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for p in planned {
        let school = p.school.as_deref().unwrap_or(NO_SCHOOL);
        let kind = Kind::parse(&p.change);
        let column = kinds.binary_search(&kind).expect("every kind is a column");
        schools
            .entry(school)
            .or_insert_with(|| vec![0; kinds.len()])[column] += p.count;
    }
    let mut schools: Vec<SchoolChanges> = schools
        .into_iter()
        .map(|(school, counts)| {
            let share = active
                .iter()
                .filter(|a| a.school == school && a.active > 0)
                .filter_map(|a| {
                    let column = kinds
                        .iter()
                        .position(|k| k.entity == a.entity && k.action == "archive")?;
                    Some(Share {
                        entity: a.entity.clone(),
                        ended: counts[column],
                        active: a.active,
                    })
                })
                .max_by(|a, b| a.percent().total_cmp(&b.percent()));
            SchoolChanges {
                school: school.to_owned(),
                counts,
                share,
            }
        })
        .collect();
    schools.sort_by(|a, b| {
        let key = |s: &SchoolChanges| {
            (
                s.school == NO_SCHOOL,
                -s.share.as_ref().map_or(0.0, Share::percent),
                std::cmp::Reverse(s.counts.iter().sum::<usize>()),
            )
        };
        let (a, b) = (key(a), key(b));
        a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2))
    });
    PerSchool { kinds, schools }
}

/// The table of [`per_school`]; shares above `threshold` (the pipeline's
/// `archive_max_percent`, when it is still served) drawn as such. On a phone each school is a
/// card of labelled counts.
pub(crate) fn table(per_school: &PerSchool, threshold: Option<f64>) -> Markup {
    // Consecutive columns of one entity share a heading.
    let mut groups: Vec<(String, usize)> = Vec::new();
    for kind in &per_school.kinds {
        match groups.last_mut() {
            Some((records, span)) if *records == kind.records() => *span += 1,
            _ => groups.push((kind.records(), 1)),
        }
    }
    html! {
        table.per-school.cards {
            thead {
                tr {
                    th rowspan="2" { "School" }
                    @for (records, span) in &groups { th.group colspan=(span) { (records) } }
                    th rowspan="2" { "Share it would archive" }
                }
                tr { @for kind in &per_school.kinds { th.num { (kind.what()) } } }
            }
            tbody { @for school in &per_school.schools { tr {
                th scope="row" { (school.school) }
                @for (kind, count) in per_school.kinds.iter().zip(&school.counts) {
                    td.num.zero[*count == 0].ends[kind.ends() && *count > 0]
                        data-label={ (kind.records()) " " (kind.what()) } {
                        @if *count > 0 { (count) }
                    }
                }
                td.share data-label="Would archive" {
                    @if let Some(share) = &school.share {
                        @let percent = share.percent();
                        span.bar.over[threshold.is_some_and(|limit| percent > limit)] {
                            span.fill style={ "width:" (format!("{:.1}", percent.min(100.0))) "%" } {}
                        }
                        " " (format!("{percent:.0}%")) " of " (plural_of(&share.entity))
                        " (" (share.ended) " of " (share.active) ")"
                    }
                }
            } } }
        }
    }
}

fn plural_of(entity: &str) -> String {
    Entity::parse(entity).map_or_else(|| entity.to_owned(), |e| plural(e).to_owned())
}

/// What an admin calls records of `entity`.
fn plural(entity: Entity) -> &'static str {
    match entity {
        Entity::District => "districts",
        Entity::School => "schools",
        Entity::Term => "terms",
        Entity::Course => "courses",
        Entity::Teacher => "teachers",
        Entity::Student => "students",
        Entity::Admin => "admins",
        Entity::Class => "classes",
        Entity::ClassTeacher => "class teachers",
        Entity::ClassStudent => "enrolments",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(school: Option<&str>, change: &str, count: usize) -> PlannedChanges {
        PlannedChanges {
            school: school.map(str::to_owned),
            change: change.to_owned(),
            count,
        }
    }

    fn active(school: &str, entity: &str, active: usize) -> ActiveRecords {
        ActiveRecords {
            school: school.to_owned(),
            entity: entity.to_owned(),
            active,
        }
    }

    #[test]
    fn a_plan_reads_as_one_row_per_school_with_a_column_per_kind_of_change() {
        let north = "North High (n1)";
        let south = "South Middle (s1)";
        let table = per_school(
            &[
                planned(Some(north), "class.archive", 165),
                planned(Some(north), "class_student.end", 3000),
                planned(Some(north), "student.update", 4),
                planned(Some(south), "class.create", 2),
                planned(Some(south), "class_student.start", 40),
                planned(Some(south), "student.archive", 3),
                planned(None, "term.create", 1),
            ],
            &[
                active(north, "class", 165),
                active(north, "student", 600),
                active(south, "class", 50),
                active(south, "student", 300),
            ],
        );
        let columns: Vec<String> = table
            .kinds
            .iter()
            .map(|k| format!("{} {}", k.records(), k.what()))
            .collect();
        assert_eq!(
            columns,
            [
                "Students changed",
                "Students archived",
                "Classes new",
                "Classes archived",
                "Enrolments start",
                "Enrolments end",
                "Terms new"
            ]
        );
        // The school it would empty first, the records of no school last.
        let schools: Vec<&str> = table.schools.iter().map(|s| s.school.as_str()).collect();
        assert_eq!(schools, [north, south, NO_SCHOOL]);
        assert_eq!(table.schools[0].counts, [4, 0, 0, 165, 0, 3000, 0]);
        assert_eq!(table.schools[1].counts, [0, 3, 2, 0, 40, 0, 0]);
        assert_eq!(
            table.schools[0].share,
            Some(Share {
                entity: "class".into(),
                ended: 165,
                active: 165
            })
        );
        // South archives 3 of 300 students and none of its 50 classes: its largest share is 1%.
        let south_share = table.schools[1].share.as_ref().expect("a share");
        assert_eq!(
            (south_share.entity.as_str(), south_share.percent()),
            ("student", 1.0)
        );
        assert_eq!(table.schools[2].share, None);

        let html = super::table(&table, Some(10.0)).into_string();
        assert_eq!(
            html.matches("<tr>").count(),
            2 + 3,
            "two heading rows, one per school"
        );
        assert!(html.contains("100% of classes (165 of 165)"), "{html}");
        assert!(html.contains(r#"class="bar over""#), "{html}");
        assert!(html.contains(r#"data-label="Enrolments end""#), "{html}");
    }

    #[test]
    fn a_held_run_leads_with_one_sentence_the_moved_district_first() {
        let note = "student: would archive or end 20 of 60 (33.3%) district-wide, above the 10% threshold; \
                    class: would archive or end 165 of 165 (100.0%) in school \"North High\" (n1), above the 10% threshold; \
                    the district has moved since this run was held: approving it will be refused; discard it and run again";
        let reasons = reasons(note);
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons[0].starts_with("the district has moved"),
            "{reasons:?}"
        );
        assert!(
            reasons[0].ends_with("discard it and run again"),
            "{reasons:?}"
        );
        assert_eq!(
            headline(&reasons[1..2]),
            "Held for approval because it would archive or end 20 of 60 students (33.3%) district-wide, above the 10% threshold."
        );
        assert_eq!(
            headline(&reasons[1..]),
            "Held for approval because it would archive or end 20 of 60 students (33.3%) district-wide, above the 10% threshold, \
             and 1 more reason listed below."
        );
    }

    #[test]
    fn a_reason_with_semicolons_in_parentheses_stays_whole() {
        let switch = "the district's source changes from clever to oneroster: records matched by SIS id \
                      (student: 5 matched, 0 left, 0 new, 0 with a duplicate SIS id; teacher: 2 matched, 0 left, 0 new, 0 with a duplicate SIS id); \
                      see the dry run for every match";
        let reasons = reasons(&format!(
            "{switch}; teacher: would update 30 of 31 (96.8%), above the 75% threshold"
        ));
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert_eq!(reasons[0], switch);
        assert_eq!(
            clause(&reasons[1]),
            "it would update 30 of 31 teachers (96.8%), above the 75% threshold"
        );
        assert_eq!(clause("something else"), "something else");
    }
}
