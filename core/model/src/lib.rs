//! The roster as rosterflow understands it, whatever the source: one district's schools, terms,
//! courses, sections (Freckle's classes) with their members, and the users who hold roles in it.
//!
//! Every record is keyed by its source's `id` (a Clever id, a OneRoster `sourcedId`), unique
//! within its district; `sis_id` and the other district identifiers ride along. The district
//! itself is keyed by its [`District::id`] in the Freckle DB, which stays when its source
//! changes. Sources build a [`Snapshot`]; transforms edit it; the planner diffs it against the
//! Freckle DB. Records a source could not use are kept in [`Snapshot::quarantine`] with a reason.

pub mod backoff;
mod clock;
pub mod metrics;
pub mod packed;
pub mod school_year;
pub mod secret;
pub mod tagged;
pub mod text;

pub use clock::Clock;
pub use secret::Secret;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// A record's id at its source: a Clever object id (24 hex digits), or a OneRoster `sourcedId`
/// (any string, unique within its district's feed). Ids are kept inline (no heap allocation up
/// to 24 bytes): a large district's sections list millions of them.
pub type Id = compact_str::CompactString;

/// One district's roster at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub district: District,
    pub schools: Vec<School>,
    pub terms: Vec<Term>,
    pub courses: Vec<Course>,
    pub sections: Vec<Section>,
    pub students: Vec<Student>,
    pub teachers: Vec<Teacher>,
    pub admins: Vec<Admin>,
    /// Users the roster does not load (contacts, staff), counted so none vanishes silently.
    pub skipped: Skipped,
    /// Up to [`Skipped::EXAMPLES`] of the records of another district counted in
    /// `skipped.other_district`, as examples name them (never stored with the counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_district_examples: Vec<SkippedRecord>,
    /// Records the source or a transform could not use, with the reason.
    pub quarantine: Vec<Quarantined>,
    /// Records that arrived but could not be read, by entity and id (a OneRoster org, class and
    /// user may share an id): their Freckle rows and memberships stay exactly as they are until
    /// a readable version arrives. A user whose record could not be read is listed as each kind
    /// of user ([`USERS`]): what it is could not be read.
    #[serde(default, deserialize_with = "unreadable::deserialize")]
    pub unreadable: Vec<(Entity, Id)>,
    /// Who dropped or created what, for reports and `explain`.
    pub decisions: Vec<Decision>,
}

/// Users rosterflow does not load, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Skipped {
    /// Users who are only contacts (guardians).
    pub contacts: usize,
    /// Users who are only staff (principals, counselors...).
    pub staff: usize,
    /// Records of another district than the pipeline's, from a token that sees several.
    pub other_district: usize,
    /// Users the source marks disabled (OneRoster `enabledUser = false`): not loaded, so the
    /// sync archives them like users who left.
    #[serde(default)]
    pub disabled: usize,
}

impl Skipped {
    /// How many skipped records a snapshot keeps as examples.
    pub const EXAMPLES: usize = 5;
}

/// A record the roster left out (of another district), as an example names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRecord {
    /// What it is at the source: `school`, `section`, `user`, `class`...
    pub kind: String,
    /// Its id at the source.
    pub id: Id,
    /// A person's first and last name, or the record's name, when it has one.
    pub name: Option<String>,
    pub sis_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct District {
    /// The district's key in the Freckle DB: its row, its run lock and its export partition.
    /// Safe in a file name ([`is_district_key`]); it stays when the district's source changes.
    pub id: Id,
    pub name: String,
    /// Where the roster comes from.
    #[serde(default)]
    pub source: SourceKind,
    /// The district's own id at its source (a Clever district id, a OneRoster org's
    /// `sourcedId`).
    #[serde(default)]
    pub source_id: Id,
}

/// The kind of source a district's roster comes from. The names (`clever`) are stored in the
/// database.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum SourceKind {
    #[default]
    Clever,
    #[strum(serialize = "oneroster")]
    #[serde(rename = "oneroster")]
    OneRoster,
}

impl SourceKind {
    /// The kind's name, as stored.
    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }

    /// The source's name as people write it: `Clever`, `OneRoster`.
    pub const fn name(self) -> &'static str {
        match self {
            SourceKind::Clever => "Clever",
            SourceKind::OneRoster => "OneRoster",
        }
    }

    /// The name of the source's own ids: `Clever id`, `OneRoster id`.
    pub const fn id_name(self) -> &'static str {
        match self {
            SourceKind::Clever => "Clever id",
            SourceKind::OneRoster => "OneRoster id",
        }
    }

    /// Whoever runs the source, as a sentence names them: `the Clever admin`.
    pub const fn admin(self) -> &'static str {
        match self {
            SourceKind::Clever => "the Clever admin",
            SourceKind::OneRoster => "the OneRoster admin",
        }
    }

    /// Where its admin fixes what is fixed at the source rather than in the SIS: `in Clever`.
    pub const fn where_fixed(self) -> &'static str {
        match self {
            SourceKind::Clever => "in Clever",
            SourceKind::OneRoster => "in the OneRoster feed",
        }
    }

    /// How a district's roster reaches Freckle through it: `shares with Freckle through Clever`.
    pub const fn reaches_freckle(self) -> &'static str {
        match self {
            SourceKind::Clever => "shares with Freckle through Clever",
            SourceKind::OneRoster => "sends Freckle through OneRoster",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct School {
    pub id: Id,
    pub name: String,
    pub sis_id: Option<String>,
    pub school_number: Option<String>,
    pub state_id: Option<String>,
    pub low_grade: Option<String>,
    pub high_grade: Option<String>,
    /// Built from references because the source had no record of it (a replay without schools).
    pub synthesized: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub id: Id,
    pub name: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub synthesized: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Course {
    pub id: Id,
    pub name: Option<String>,
    pub number: Option<String>,
    pub synthesized: bool,
}

/// A section as Clever shares it; Freckle calls it a class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub id: Id,
    pub school: Id,
    pub name: String,
    pub sis_id: Option<String>,
    pub subject: Option<String>,
    pub grade: Option<String>,
    pub period: Option<String>,
    pub section_number: Option<String>,
    pub term: Option<Id>,
    pub course: Option<Id>,
    /// Teachers, the primary teacher first.
    pub teachers: Vec<Id>,
    pub students: Vec<Id>,
    /// District-defined extension fields (`ext.*`), flattened to strings.
    pub ext: BTreeMap<String, String>,
    /// Who made this section: `sis` for the source, `plugin:<name>` for a plugin's group.
    pub source: Source,
    /// Members whose source differs from the section's: a plugin added them to an SIS section.
    #[serde(default)]
    pub member_sources: BTreeMap<Id, Source>,
}

impl Section {
    /// Who made the membership of `member`: the plugin that added it, or the section's source.
    pub fn source_of(&self, member: &str) -> &Source {
        self.member_sources.get(member).unwrap_or(&self.source)
    }
}

/// Who authored a class or a membership: the SIS (through the source) or a named plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Source {
    #[default]
    Sis,
    Plugin(String),
}

impl Source {
    /// The form stored in the `source` columns: `sis` or `plugin:<name>`.
    pub fn as_db(&self) -> Cow<'static, str> {
        match self {
            Source::Sis => Cow::Borrowed("sis"),
            Source::Plugin(name) => Cow::Owned(format!("plugin:{name}")),
        }
    }

    pub fn from_db(value: &str) -> Option<Source> {
        match value {
            "sis" => Some(Source::Sis),
            other => other
                .strip_prefix("plugin:")
                .map(|name| Source::Plugin(name.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Name {
    pub first: Option<String>,
    pub middle: Option<String>,
    pub last: Option<String>,
}

impl Name {
    /// `First Last`, as people are named in reports and pages.
    pub fn full(&self) -> String {
        [self.first.as_deref(), self.last.as_deref()]
            .into_iter()
            .flatten()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Student {
    pub id: Id,
    pub name: Name,
    pub email: Option<String>,
    pub sis_id: Option<String>,
    pub state_id: Option<String>,
    pub student_number: Option<String>,
    pub grade: Option<String>,
    /// The primary school.
    pub school: Option<Id>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Teacher {
    pub id: Id,
    pub name: Name,
    pub email: Option<String>,
    pub sis_id: Option<String>,
    pub state_id: Option<String>,
    pub teacher_number: Option<String>,
    pub title: Option<String>,
    /// The primary school.
    pub school: Option<Id>,
}

/// A district administrator: an admin account in Freckle, never a teacher or student.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Admin {
    pub id: Id,
    pub name: Name,
    pub email: Option<String>,
    pub title: Option<String>,
}

/// The kinds of record the sync owns. Their names (`class_teacher`) are stored in the database.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumCount,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum Entity {
    District,
    School,
    Term,
    Course,
    Teacher,
    Student,
    Admin,
    Class,
    ClassTeacher,
    ClassStudent,
}

impl Entity {
    /// Every entity, in declaration order.
    pub const ALL: [Entity; <Entity as strum::EnumCount>::COUNT] =
        *<Entity as strum::VariantArray>::VARIANTS
            .first_chunk()
            .expect("VARIANTS holds every variant");

    /// The entity's name, as stored.
    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }

    /// The entity named by [`Entity::as_str`].
    pub fn parse(name: &str) -> Option<Entity> {
        name.parse().ok()
    }
}

/// A record that could not be used, kept with the reason so that nothing vanishes silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// What kind of record it was (`user`, `section`, `section.students`...).
    pub kind: String,
    /// Its id at the source, when it had one.
    pub id: Option<Id>,
    pub reason: String,
    /// Where the source sent it, when that says more than the id: a file and line, a URL.
    #[serde(default)]
    pub origin: Option<String>,
    /// What an admin can do about it, where that is known.
    pub suggested_fix: Option<String>,
    /// The raw record or reference, as JSON.
    pub record: String,
}

/// Why a transform kept, dropped or created a record, so that `explain` can say it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub entity: Entity,
    pub id: Id,
    pub action: DecisionAction,
    /// The rule, filter or plugin that decided (`filter:specials`, `plugin:flex-groups`).
    pub author: String,
    pub detail: String,
}

/// What a transform did to a record. The names (`dropped`) are stored in the database.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum DecisionAction {
    Dropped,
    Created,
    Edited,
}

impl DecisionAction {
    /// The action named by [`DecisionAction::as_str`].
    pub fn parse(name: &str) -> Option<DecisionAction> {
        name.parse().ok()
    }

    /// The action's name, as stored.
    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }
}

/// The entities a user record becomes: its roles decide which.
pub const USERS: [Entity; 3] = [Entity::Student, Entity::Teacher, Entity::Admin];

impl Snapshot {
    /// Marks the user `id` unreadable, as each kind of user.
    pub fn unreadable_user(&mut self, id: &Id) {
        self.unreadable
            .extend(USERS.iter().map(|&entity| (entity, id.clone())));
    }

    /// Removes references to records that are not in the snapshot (a section naming a student the
    /// source never sent) and quarantines them, and drops sections whose school is unknown.
    pub fn quarantine_dangling_references(&mut self) {
        let schools: HashSet<&str> = self.schools.iter().map(|s| s.id.as_str()).collect();
        // Records that arrived unreadable (quarantined already) are not dangling references.
        let unreadable: HashSet<(Entity, Id)> = self.unreadable.iter().cloned().collect();
        let is_unreadable = |entity: Entity, id: &str| unreadable.contains(&(entity, Id::from(id)));
        let students: HashSet<&str> = self.students.iter().map(|s| s.id.as_str()).collect();
        let teachers: HashSet<&str> = self.teachers.iter().map(|t| t.id.as_str()).collect();
        let terms: HashSet<&str> = self.terms.iter().map(|t| t.id.as_str()).collect();
        let courses: HashSet<&str> = self.courses.iter().map(|c| c.id.as_str()).collect();
        let mut quarantine = Vec::new();
        // A record that names an unreadable school cannot be judged either: it stays as it is.
        let mut frozen = Vec::new();
        self.sections.retain_mut(|section| {
            if is_unreadable(Entity::School, &section.school) {
                frozen.push((Entity::Class, section.id.clone()));
                return false;
            }
            if !schools.contains(section.school.as_str()) {
                quarantine.push(Quarantined {
                    origin: None,
                    kind: "section".into(),
                    id: Some(section.id.clone()),
                    reason: format!("section names school {} that is not shared", section.school),
                    suggested_fix: Some("share the school with the application at the source (Clever, the OneRoster feed), or drop the section".into()),
                    record: serde_json::to_string(section).unwrap_or_default(),
                });
                return false;
            }
            let section_id = section.id.clone();
            // A reference to an unreadable member stays: its membership is left as it is, and a
            // teacher keeps their place (the first one is the primary).
            let mut keep = |list: &mut Vec<Id>, known: &HashSet<&str>, entity: Entity| {
                let role = entity.as_str();
                list.retain(|member| {
                    let ok = known.contains(member.as_str()) || is_unreadable(entity, member);
                    if !ok {
                        quarantine.push(Quarantined {
                            origin: None,
                            kind: format!("section.{role}s"),
                            id: Some(section_id.clone()),
                            reason: format!(
                                "section {section_id} names {role} {member} who is not in the roster"
                            ),
                            suggested_fix: Some(format!(
                                "check that the {role} is shared with the application in Clever"
                            )),
                            record: serde_json::json!({ "section": section_id, role: member })
                                .to_string(),
                        });
                    }
                    ok
                });
            };
            keep(&mut section.students, &students, Entity::Student);
            keep(&mut section.teachers, &teachers, Entity::Teacher);
            if section.term.as_deref().is_some_and(|t| !terms.contains(t)) {
                section.term = None;
            }
            if section.course.as_deref().is_some_and(|c| !courses.contains(c)) {
                section.course = None;
            }
            true
        });
        self.quarantine.extend(quarantine);
        let unreadable_school = |school: &Option<Id>| {
            school
                .as_deref()
                .is_some_and(|s| is_unreadable(Entity::School, s))
        };
        self.students.retain(|s| {
            let keep = !unreadable_school(&s.school);
            if !keep {
                frozen.push((Entity::Student, s.id.clone()));
            }
            keep
        });
        self.teachers.retain(|t| {
            let keep = !unreadable_school(&t.school);
            if !keep {
                frozen.push((Entity::Teacher, t.id.clone()));
            }
            keep
        });
        self.unreadable.extend(frozen);
        // A primary school that is not shared is not a school Freckle knows: the user stays,
        // without it (Clever shares users whose primary school is elsewhere).
        for school in self
            .students
            .iter_mut()
            .map(|s| &mut s.school)
            .chain(self.teachers.iter_mut().map(|t| &mut t.school))
        {
            if school.as_deref().is_some_and(|id| !schools.contains(id)) {
                *school = None;
            }
        }
    }
}

mod unreadable {
    use serde::{Deserialize, Deserializer};

    use super::{Entity, Id};

    /// A snapshot held by an older rosterflow lists unreadable records by id alone: such an id
    /// stands for every entity, as it did then.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Kinded(Entity, Id),
        Plain(Id),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(Entity, Id)>, D::Error> {
        let stored = Vec::<Stored>::deserialize(deserializer)?;
        Ok(stored
            .into_iter()
            .flat_map(|record| match record {
                Stored::Kinded(entity, id) => vec![(entity, id)],
                Stored::Plain(id) => Entity::ALL.iter().map(|&e| (e, id.clone())).collect(),
            })
            .collect())
    }
}

/// Whether `id` looks like a Clever object id.
pub fn is_clever_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `key` can name a district in the Freckle DB: 1 to 64 ASCII letters, digits, `-` or
/// `_`, not starting with `-`. It names lock files and export directories, so it must be safe
/// in a path as it is. A Clever district id is one.
pub fn is_district_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && !key.starts_with('-')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `tracing` target of progress reports: what a long step is doing now, for someone
/// watching a terminal. The binary shows the latest on stderr (a terminal only) and keeps them
/// out of the logs; an empty message ends the display.
pub const PROGRESS: &str = "rosterflow::progress";

/// Runs blocking or CPU-heavy work (a SQLite transaction, planning, plugins) on this thread,
/// telling a multi-threaded runtime to move its other tasks elsewhere meanwhile; on a
/// current-thread runtime it simply runs.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// A text as a spreadsheet cell that cannot run: a text a spreadsheet would read as a formula
/// (`=`, `+`, `-` or `@` first, or a tab or carriage return) gets a leading `'`, so that a name
/// from a SIS can never run in an admin's spreadsheet. Numbers (`-12.5`) stay as they are.
pub fn spreadsheet_cell(text: &str) -> Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '@' | '\t' | '\r') => Cow::Owned(format!("'{text}")),
        Some('-') if text.parse::<f64>().is_err() => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

/// A row of spreadsheet cells, each defused with [`spreadsheet_cell`]: what every CSV the
/// admin may open in a spreadsheet writes (reports, the doctor's findings).
pub fn spreadsheet_row<'a>(cells: impl IntoIterator<Item = &'a str>) -> Vec<Cow<'a, str>> {
    cells.into_iter().map(spreadsheet_cell).collect()
}

/// Rows as a text table for a terminal: each column as wide as its widest cell (in characters),
/// two spaces apart, right-aligned where `right` says so, no space at the end of a line. The
/// header is the first row.
pub fn text_table<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    right: [bool; N],
) -> String {
    let mut widths = header.map(|cell| cell.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let mut text = String::new();
        for ((cell, width), right) in cells.iter().zip(widths).zip(right) {
            let pad = " ".repeat(width - cell.chars().count());
            if right {
                text.push_str(&pad);
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&pad);
            }
            text.push_str("  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

/// An error and all its causes on one line (`outer: inner: root`), for logs and run history.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A roster held by an older rosterflow named unreadable records by id alone: such an id
    /// still holds every entity that has it.
    #[test]
    fn unreadable_ids_of_an_older_held_roster_hold_every_entity() {
        let mut json = serde_json::to_value(Snapshot::default()).expect("serializes");
        json["unreadable"] = serde_json::json!(["x", ["student", "y"]]);
        let snapshot: Snapshot = serde_json::from_value(json).expect("deserializes");
        assert_eq!(snapshot.unreadable.len(), Entity::ALL.len() + 1);
        assert!(snapshot.unreadable.contains(&(Entity::Class, "x".into())));
        assert!(snapshot.unreadable.contains(&(Entity::Student, "y".into())));
        assert!(!snapshot.unreadable.contains(&(Entity::Teacher, "y".into())));
    }

    #[test]
    fn district_keys_are_safe_in_a_path() {
        assert!(is_district_key("5a0c91b95c7cc000010d417c"));
        assert!(is_district_key("springfield_2026-27"));
        for bad in ["", "-rf", "a/b", "..", "a.b", "a|b", "é", &"x".repeat(65)] {
            assert!(!is_district_key(bad), "{bad:?} was accepted");
        }
    }

    /// The names are stored in the database and in recordings: they must never change.
    #[test]
    fn every_entity_and_action_round_trips_through_its_stored_name() {
        let names: Vec<&str> = Entity::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            names,
            [
                "district",
                "school",
                "term",
                "course",
                "teacher",
                "student",
                "admin",
                "class",
                "class_teacher",
                "class_student",
            ]
        );
        for entity in Entity::ALL {
            assert_eq!(Entity::parse(entity.as_str()), Some(entity));
            assert_eq!(entity.to_string(), entity.as_str());
            let json = serde_json::to_string(&entity).expect("serializes");
            assert_eq!(json, format!("\"{}\"", entity.as_str()));
        }
        let names: Vec<&str> = <DecisionAction as strum::VariantArray>::VARIANTS
            .iter()
            .map(|a| a.as_str())
            .collect();
        assert_eq!(names, ["dropped", "created", "edited"]);
        for &action in <DecisionAction as strum::VariantArray>::VARIANTS {
            assert_eq!(DecisionAction::parse(action.as_str()), Some(action));
            let json = serde_json::to_string(&action).expect("serializes");
            assert_eq!(json, format!("\"{}\"", action.as_str()));
        }
        assert_eq!(Entity::parse("Class_Teacher"), None);
        let kinds: Vec<&str> = <SourceKind as strum::VariantArray>::VARIANTS
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(kinds, ["clever", "oneroster"]);
        assert_eq!(
            serde_json::to_string(&SourceKind::OneRoster).expect("serializes"),
            "\"oneroster\""
        );
        assert_eq!(DecisionAction::parse(""), None);
    }
}
