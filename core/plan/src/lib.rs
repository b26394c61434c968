//! The plan: what a run would change in the Freckle DB, computed before anything is written.
//!
//! A plan is a pure function of the transformed snapshot and the district's [`State`]: every
//! create, update, archive (never delete) and restore of a keyed row, every membership that
//! starts, ends or changes role or source, the transform decisions that start or stop being in
//! force, and the side effects (new teacher accounts, one welcome email each). A dry run prints
//! it; the safety checks judge it; the store applies it whole.
//!
//! The sync owns only rows with a Clever id and memberships whose source is `sis` or
//! `plugin:<name>`: manual classes, manual memberships and shares are never in a plan. Records
//! the source sent but could not read are left exactly as they are, with their memberships.
//! A plan refers to records by position in the snapshot or the state, so even a first load of
//! a million students costs a few bytes per change.
//!
//! # Layout
//!
//! - [`schema`]: the synced tables and their columns, as the plan and the store both see them.
//! - [`state`]: a district's state in the Freckle DB, compact: row ids and column fingerprints.
//! - this module: [`Plan::compute`], the diff.
//! - [`safety`]: the checks that hold a plan for an admin instead of applying it.

pub mod rollover;
pub mod safety;
pub mod schema;
pub mod state;
pub mod switch;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use rustc_hash::FxHashMap;

use crate::schema::{
    Columns, Lookups, MEMBERSHIPS, MembershipTable, Record, TableVisitor, layout, visit_tables,
};
use crate::state::{Role, State, desired_cell, fingerprint};
use rosterflow_model::{Decision, DecisionAction, Entity, Skipped, Snapshot};

/// Everything a run would do.
pub struct Plan<'a> {
    pub snapshot: &'a Snapshot,
    pub state: &'a State,
    pub records: Vec<RecordChange<'a>>,
    pub starts: Vec<Start>,
    pub ends: Vec<End<'a>>,
    pub retags: Vec<Retag>,
    /// Teachers (positions in the snapshot) who get a Freckle account and one welcome email.
    pub new_accounts: Vec<u32>,
    /// Decisions of the snapshot (positions) that were not in force before.
    pub decisions_started: Vec<u32>,
    /// Decisions in force (their rows) that the snapshot no longer makes.
    pub decisions_ended: Vec<i64>,
    /// Active rows per entity before the run, for the safety checks.
    pub active_before: BTreeMap<Entity, usize>,
    /// Active rows per entity and school (row id) before the run, for per-school checks.
    pub active_by_school: BTreeMap<(Entity, i64), usize>,
    /// Records (and memberships) per entity in the snapshot.
    pub in_source: BTreeMap<Entity, usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordAction {
    Create,
    Update,
    Archive,
    Restore,
}

impl RecordAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordAction::Create => "create",
            RecordAction::Update => "update",
            RecordAction::Archive => "archive",
            RecordAction::Restore => "restore",
        }
    }
}

/// A change to one keyed row.
#[derive(Debug, Clone, Copy)]
pub struct RecordChange<'a> {
    pub entity: Entity,
    pub action: RecordAction,
    /// Columns whose value changes (updates and restores).
    pub changed: Columns,
    /// The record's position: in the snapshot for creates, updates and restores, in the state
    /// for archives.
    pub index: u32,
    /// The existing row (all but creates).
    pub row: Option<i64>,
    /// The decision behind it: the plugin that created the record, or the filter that dropped it.
    pub by: Option<&'a Decision>,
}

impl<'a> RecordChange<'a> {
    /// Why the change happens, as the run history says it.
    pub fn reason(&self) -> Cow<'static, str> {
        match self.action {
            RecordAction::Create => Cow::Borrowed("new in source"),
            RecordAction::Update => Cow::Borrowed("changed in source"),
            RecordAction::Restore => Cow::Borrowed("back in source"),
            RecordAction::Archive => absence(self.by),
        }
    }

    /// `sync`, or the plugin or filter whose decision it follows.
    pub fn author(&self) -> &'a str {
        author(self.by)
    }
}

/// A membership that starts: positions of the section and of the member in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub entity: Entity,
    pub role: Role,
    pub class: u32,
    pub member: u32,
}

/// An open membership whose role or source changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retag {
    pub entity: Entity,
    pub role: Role,
    pub class: u32,
    pub member: u32,
    pub class_row: i64,
    pub member_row: i64,
}

/// An open membership that ends.
#[derive(Debug, Clone, Copy)]
pub struct End<'a> {
    pub entity: Entity,
    pub class_row: i64,
    pub member_row: i64,
    pub reason: EndReason<'a>,
}

/// Why a membership ends; the decision, when a transform dropped the class or the member.
#[derive(Debug, Clone, Copy)]
pub enum EndReason<'a> {
    LeftSection,
    ClassGone(Option<&'a Decision>),
    MemberGone(Entity, Option<&'a Decision>),
}

impl<'a> EndReason<'a> {
    pub fn text(&self) -> String {
        match self {
            EndReason::LeftSection => "no longer in the section in source".to_owned(),
            EndReason::ClassGone(by) => format!("class archived: {}", absence(*by)),
            EndReason::MemberGone(entity, by) => format!("{entity} archived: {}", absence(*by)),
        }
    }

    pub fn author(&self) -> &'a str {
        match self {
            EndReason::LeftSection => "sync",
            EndReason::ClassGone(by) | EndReason::MemberGone(_, by) => author(*by),
        }
    }
}

/// Why a record is no longer in the roster.
fn absence(by: Option<&Decision>) -> Cow<'static, str> {
    match by {
        Some(decision) => Cow::Owned(format!("filtered: {}", decision.detail)),
        None => Cow::Borrowed("absent from source (deleted or unshared upstream)"),
    }
}

fn author(by: Option<&Decision>) -> &str {
    by.map_or("sync", |d| d.author.as_str())
}

/// Who a membership is by: the plugin its source names, or the sync.
fn membership_author<'a>(source: Cow<'static, str>) -> Cow<'a, str> {
    if source == "sis" {
        Cow::Borrowed("sync")
    } else {
        source
    }
}

/// One change as the run history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow<'a> {
    pub entity: Entity,
    pub key: &'a str,
    pub member: Option<&'a str>,
    pub action: &'static str,
    pub reason: Cow<'a, str>,
    pub author: Cow<'a, str>,
    /// The columns an update or restore changes, or a membership's new role.
    pub detail: Option<String>,
}

/// What the diff looks up: transform decisions by record, records nobody could read.
struct Context<'a> {
    dropped: HashMap<(Entity, &'a str), &'a Decision>,
    created: HashMap<(Entity, &'a str), &'a Decision>,
    unreadable: HashSet<(Entity, &'a str)>,
    /// Members (entity, row) of classes that could not be read: they stay as they are, even
    /// when a transform drops them for want of another class.
    held: HashSet<(Entity, i64)>,
    lookups: Lookups<'a>,
}

impl<'a> Plan<'a> {
    /// Diffs `snapshot` against the district's `state`.
    pub fn compute(snapshot: &'a Snapshot, state: &'a State) -> Plan<'a> {
        let decisions = |action| {
            snapshot
                .decisions
                .iter()
                .filter(move |d| d.action == action)
                .map(|d| ((d.entity, d.id.as_str()), d))
                .collect()
        };
        let unreadable: HashSet<(Entity, &str)> = snapshot
            .unreadable
            .iter()
            .map(|(entity, id)| (*entity, id.as_str()))
            .collect();
        let classes = state.table(Entity::Class);
        let mut held = HashSet::new();
        for table in MEMBERSHIPS {
            let open = state.members(table.entity);
            for (position, &class) in open.classes().iter().enumerate() {
                let unread = classes.find_row(class).is_some_and(|index| {
                    unreadable.contains(&(Entity::Class, classes.at(index).0))
                });
                if unread {
                    let members = open.of_class_at(position).0;
                    held.extend(members.iter().map(|&row| (table.member, row)));
                }
            }
        }
        let context = Context {
            dropped: decisions(DecisionAction::Dropped),
            created: decisions(DecisionAction::Created),
            unreadable,
            held,
            lookups: Lookups::new(snapshot),
        };
        let mut plan = Plan {
            snapshot,
            state,
            records: Vec::new(),
            starts: Vec::new(),
            ends: Vec::new(),
            retags: Vec::new(),
            new_accounts: Vec::new(),
            decisions_started: Vec::new(),
            decisions_ended: Vec::new(),
            active_before: BTreeMap::new(),
            active_by_school: BTreeMap::new(),
            in_source: BTreeMap::new(),
        };
        let Ok(()) = visit_tables(
            snapshot,
            &mut RecordDiff {
                plan: &mut plan,
                context: &context,
            },
        );
        for table in MEMBERSHIPS {
            plan.diff_memberships(table, &context);
        }
        plan.diff_decisions();
        plan
    }

    /// Whether the plan changes nothing in the roster.
    pub fn is_empty(&self) -> bool {
        self.change_count() == 0
    }

    /// Whether this is the district's first run: its row is created with the run.
    pub fn creates_district(&self) -> bool {
        self.records
            .iter()
            .any(|c| c.entity == Entity::District && c.action == RecordAction::Create)
    }

    pub fn change_count(&self) -> usize {
        self.records.len() + self.starts.len() + self.ends.len() + self.retags.len()
    }

    /// Changes per `entity.action`, e.g. `student.create`.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        let mut count = |entity: Entity, action: &str| {
            *counts.entry(format!("{entity}.{action}")).or_default() += 1;
        };
        for change in &self.records {
            count(change.entity, change.action.as_str());
        }
        for start in &self.starts {
            count(start.entity, "start");
        }
        for end in &self.ends {
            count(end.entity, "end");
        }
        for retag in &self.retags {
            count(retag.entity, "update");
        }
        counts
    }

    /// The Clever id of a record change's subject.
    pub fn key(&self, change: &RecordChange<'a>) -> &'a str {
        match change.action {
            RecordAction::Archive => self.state.table(change.entity).at(change.index as usize).0,
            _ => record_key(self.snapshot, change.entity, change.index),
        }
    }

    /// The Clever id of a row of a synced table, as the state knows it.
    pub fn key_of_row(&self, entity: Entity, row: i64) -> Option<&'a str> {
        let table = self.state.table(entity);
        table.find_row(row).map(|index| table.at(index).0)
    }

    /// How many changes of each type (`student.archive`, `class_student.start`...) the plan
    /// makes in each school (by Clever id; `None` for records of no school: terms, courses,
    /// district admins): what an admin reviews before approving a held run.
    pub fn changes_by_school(&self) -> BTreeMap<(Option<&'a str>, String), usize> {
        // Counted by parts, named once per kind: a held plan can make millions of changes.
        let mut counts: FxHashMap<(Option<&'a str>, Entity, &'static str), usize> =
            FxHashMap::default();
        let mut count = |school: Option<&'a str>, entity: Entity, action: &'static str| {
            *counts.entry((school, entity, action)).or_default() += 1;
        };
        for change in &self.records {
            let school = match change.action {
                RecordAction::Archive => {
                    let (_, row) = self.state.table(change.entity).at(change.index as usize);
                    row.school
                        .and_then(|school| self.key_of_row(Entity::School, school))
                }
                _ => record_school(self.snapshot, change.entity, change.index),
            };
            count(school, change.entity, change.action.as_str());
        }
        let section_school =
            |class: u32| Some(self.snapshot.sections[class as usize].school.as_str());
        for start in &self.starts {
            count(section_school(start.class), start.entity, "start");
        }
        for retag in &self.retags {
            count(section_school(retag.class), retag.entity, "update");
        }
        for end in &self.ends {
            let classes = self.state.table(Entity::Class);
            let school = classes
                .find_row(end.class_row)
                .and_then(|index| classes.at(index).1.school)
                .and_then(|school| self.key_of_row(Entity::School, school));
            count(school, end.entity, "end");
        }
        counts
            .into_iter()
            .map(|((school, entity, action), n)| ((school, format!("{entity}.{action}")), n))
            .collect()
    }

    /// Every change, in the run history's terms: what a report of this plan lists.
    pub fn change_rows(&self) -> impl Iterator<Item = ChangeRow<'a>> + '_ {
        self.record_rows()
            .chain(self.start_rows())
            .chain(self.end_rows())
            .chain(self.retag_rows())
    }

    pub fn record_rows(&self) -> impl Iterator<Item = ChangeRow<'a>> + '_ {
        self.records.iter().map(move |change| ChangeRow {
            entity: change.entity,
            key: self.key(change),
            member: None,
            action: change.action.as_str(),
            reason: change.reason(),
            author: Cow::Borrowed(change.author()),
            detail: (change.changed != 0).then(|| layout(change.entity).names(change.changed)),
        })
    }

    pub fn start_rows(&self) -> impl Iterator<Item = ChangeRow<'a>> + '_ {
        self.starts.iter().map(move |start| ChangeRow {
            entity: start.entity,
            key: &self.snapshot.sections[start.class as usize].id,
            member: Some(member_key(self.snapshot, start.entity, start.member)),
            action: "start",
            reason: Cow::Borrowed("in the section in source"),
            author: membership_author(self.source_of(start.entity, start.class, start.member)),
            detail: start.role.as_db().map(str::to_owned),
        })
    }

    pub fn end_rows(&self) -> impl Iterator<Item = ChangeRow<'a>> + '_ {
        self.ends.iter().map(move |end| ChangeRow {
            entity: end.entity,
            key: self
                .key_of_row(Entity::Class, end.class_row)
                .unwrap_or_default(),
            member: self.key_of_row(member_entity(end.entity), end.member_row),
            action: "end",
            reason: Cow::Owned(end.reason.text()),
            author: Cow::Borrowed(end.reason.author()),
            detail: None,
        })
    }

    /// A change row per row that takes a record of the district's new source (see [`switch`]):
    /// its new key, with the old one and the SIS id that matched them.
    pub fn switch_rows(&self) -> impl Iterator<Item = ChangeRow<'a>> + '_ {
        let matches = self.state.switch.iter().flat_map(|s| &s.matches);
        matches.map(|m| ChangeRow {
            entity: m.entity,
            key: &m.to,
            member: None,
            action: "rekey",
            reason: Cow::Borrowed("matched by SIS id in the district's new source"),
            author: Cow::Borrowed("sync"),
            detail: Some(
                serde_json::json!({ "from": m.from.as_str(), "sis_id": m.sis_id }).to_string(),
            ),
        })
    }

    pub fn retag_rows(&self) -> impl Iterator<Item = ChangeRow<'a>> + '_ {
        self.retags.iter().map(move |retag| ChangeRow {
            entity: retag.entity,
            key: &self.snapshot.sections[retag.class as usize].id,
            member: Some(member_key(self.snapshot, retag.entity, retag.member)),
            action: "update",
            reason: Cow::Borrowed("role or source changed in source"),
            author: membership_author(self.source_of(retag.entity, retag.class, retag.member)),
            detail: retag.role.as_db().map(str::to_owned),
        })
    }

    /// The `source` of the membership of the snapshot's member at `member` (a position in the
    /// membership entity's member list) in the section at `class`: `sis` or `plugin:<name>`.
    pub fn source_of(&self, entity: Entity, class: u32, member: u32) -> Cow<'static, str> {
        let section = &self.snapshot.sections[class as usize];
        section
            .source_of(member_key(self.snapshot, entity, member))
            .as_db()
    }

    fn diff_memberships(&mut self, table: &MembershipTable, context: &Context<'a>) {
        let snapshot = self.snapshot;
        let members = self.state.table(table.member);
        let classes = self.state.table(Entity::Class);
        let open = self.state.members(table.entity);
        let positions: HashMap<&str, u32> = match table.member {
            Entity::Teacher => keyed_positions(snapshot.teachers.iter().map(|t| t.id.as_str())),
            _ => keyed_positions(snapshot.students.iter().map(|s| s.id.as_str())),
        };
        // Why an open membership of a class in the snapshot ends; none when its member could
        // not be read this time (it stays as it is).
        let gone = |member_row: i64| -> Option<EndReason<'a>> {
            let key = self
                .key_of_row(table.member, member_row)
                .unwrap_or_default();
            if context.unreadable.contains(&(table.member, key)) {
                return None;
            }
            Some(if positions.contains_key(key) {
                EndReason::LeftSection
            } else {
                let by = context.dropped.get(&(table.member, key)).copied();
                EndReason::MemberGone(table.member, by)
            })
        };
        let mut visited = vec![false; open.classes().len()];
        let mut in_source = 0;
        // (member row, or None for a member without one yet; member position; role)
        let mut wanted: Vec<(Option<i64>, u32, Role)> = Vec::new();
        let (mut starts, mut retags, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for (class, section) in snapshot.sections.iter().enumerate() {
            let class = class as u32;
            let list = match table.member {
                Entity::Teacher => &section.teachers,
                _ => &section.students,
            };
            wanted.clear();
            for (index, id) in list.iter().enumerate() {
                // A reference to a record not in the roster (one that could not be read, or a
                // primary teacher a filter or plugin dropped) starts nothing but keeps its
                // place, so the teachers after it keep their roles.
                let Some(&member) = positions.get(id.as_str()) else {
                    continue;
                };
                let role = Role::in_list(table.member, index);
                wanted.push((members.row_id(id), member, role));
            }
            // Rows ascending, members without a row last; a member listed twice counts once.
            wanted.sort_by_key(|&(row, member, _)| (row.is_none(), row, member));
            wanted.dedup_by_key(|&mut (_, member, _)| member);
            in_source += wanted.len();

            let class_row = classes.row_id(&section.id);
            let (have, tags) = match class_row.and_then(|row| open.class_position(row)) {
                Some(position) => {
                    visited[position] = true;
                    open.of_class_at(position)
                }
                None => (&[][..], &[][..]),
            };
            let start = |(_, member, role): (Option<i64>, u32, Role)| Start {
                entity: table.entity,
                role,
                class,
                member,
            };
            let (mut i, mut j) = (0, 0);
            loop {
                // Members without a row sort after every open membership.
                let order = match (wanted.get(i), have.get(j)) {
                    (None, None) => break,
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(&(row, ..)), Some(open_row)) => {
                        row.map_or(Ordering::Greater, |row| row.cmp(open_row))
                    }
                };
                match order {
                    Ordering::Less => {
                        starts.push(start(wanted[i]));
                        i += 1;
                    }
                    Ordering::Greater => {
                        if let Some(reason) = gone(have[j]) {
                            ends.push(End {
                                entity: table.entity,
                                class_row: class_row.expect("an open membership has a class"),
                                member_row: have[j],
                                reason,
                            });
                        }
                        j += 1;
                    }
                    Ordering::Equal => {
                        let (_, member, role) = wanted[i];
                        let source = section
                            .source_of(member_key(snapshot, table.entity, member))
                            .as_db();
                        let tag = tags[j];
                        if tag.role != role || open.source(tag.source) != source {
                            retags.push(Retag {
                                entity: table.entity,
                                role,
                                class,
                                member,
                                class_row: class_row.expect("an open membership has a class"),
                                member_row: have[j],
                            });
                        }
                        i += 1;
                        j += 1;
                    }
                }
            }
        }
        for (position, &class_row) in open.classes().iter().enumerate() {
            if visited[position] {
                continue;
            }
            let key = self
                .key_of_row(Entity::Class, class_row)
                .unwrap_or_default();
            if context.unreadable.contains(&(Entity::Class, key)) {
                continue;
            }
            let reason = EndReason::ClassGone(context.dropped.get(&(Entity::Class, key)).copied());
            for &member_row in open.of_class_at(position).0 {
                let member = self.key_of_row(table.member, member_row);
                if context
                    .unreadable
                    .contains(&(table.member, member.unwrap_or_default()))
                {
                    continue;
                }
                ends.push(End {
                    entity: table.entity,
                    class_row,
                    member_row,
                    reason,
                });
            }
        }
        self.in_source.insert(table.entity, in_source);
        self.active_before.insert(table.entity, open.len());
        self.starts.append(&mut starts);
        self.retags.append(&mut retags);
        self.ends.append(&mut ends);
    }

    fn diff_decisions(&mut self) {
        type Key<'k> = (Entity, &'k str, DecisionAction, &'k str, &'k str);
        let mut in_force: HashMap<Key<'a>, i64> = self
            .state
            .decisions
            .iter()
            .map(|d| {
                let key = (
                    d.entity,
                    d.key.as_str(),
                    d.action,
                    d.author.as_str(),
                    d.detail.as_str(),
                );
                (key, d.row)
            })
            .collect();
        let mut started: HashSet<Key<'a>> = HashSet::new();
        for (index, d) in self.snapshot.decisions.iter().enumerate() {
            let key = (
                d.entity,
                d.id.as_str(),
                d.action,
                d.author.as_str(),
                d.detail.as_str(),
            );
            if in_force.remove(&key).is_none() && started.insert(key) {
                self.decisions_started.push(index as u32);
            }
        }
        self.decisions_ended = in_force.into_values().collect();
        self.decisions_ended.sort_unstable();
    }
}

/// Diffs each synced table's records against the state's rows.
struct RecordDiff<'p, 'a> {
    plan: &'p mut Plan<'a>,
    context: &'p Context<'a>,
}

impl<'a> TableVisitor<'a> for RecordDiff<'_, 'a> {
    type Error = std::convert::Infallible;

    fn visit<R: Record>(&mut self, records: &'a [R]) -> Result<(), Self::Error> {
        let plan = &mut *self.plan;
        let context = self.context;
        let table = &R::TABLE;
        let entity = table.entity;
        let state = plan.state;
        let current = state.table(entity);
        plan.in_source.insert(entity, records.len());
        let mut active = 0;
        for (_, _, row) in current.iter().filter(|(_, _, row)| !row.archived) {
            active += 1;
            if let Some(school) = row.school {
                *plan.active_by_school.entry((entity, school)).or_default() += 1;
            }
        }
        plan.active_before.insert(entity, active);

        let mut seen = vec![false; current.len()];
        for (index, record) in records.iter().enumerate() {
            let key = record.key();
            let by = context.created.get(&(entity, key)).copied();
            let change = |action, changed, row| RecordChange {
                entity,
                action,
                changed,
                index: index as u32,
                row,
                by,
            };
            match current.get(key) {
                None => {
                    plan.records.push(change(RecordAction::Create, 0, None));
                    if entity == Entity::Teacher {
                        plan.new_accounts.push(index as u32);
                    }
                }
                Some((position, existing)) => {
                    seen[position] = true;
                    let changed = changed_columns(
                        record,
                        &context.lookups,
                        state,
                        current.fingerprints(position),
                    );
                    if existing.archived {
                        plan.records.push(change(
                            RecordAction::Restore,
                            changed,
                            Some(existing.id),
                        ));
                    } else if changed != 0 {
                        plan.records
                            .push(change(RecordAction::Update, changed, Some(existing.id)));
                    }
                }
            }
        }
        if !table.in_district {
            return Ok(());
        }
        let mut archives: Vec<(&str, RecordChange<'a>)> = current
            .iter()
            .filter(|&(position, key, row)| {
                !seen[position]
                    && !row.archived
                    && !context.unreadable.contains(&(entity, key))
                    && !context.held.contains(&(entity, row.id))
            })
            .map(|(position, key, row)| {
                let change = RecordChange {
                    entity,
                    action: RecordAction::Archive,
                    changed: 0,
                    index: position as u32,
                    row: Some(row.id),
                    by: context.dropped.get(&(entity, key)).copied(),
                };
                (key, change)
            })
            .collect();
        archives.sort_by_key(|(key, _)| *key);
        plan.records
            .extend(archives.into_iter().map(|(_, change)| change));
        Ok(())
    }
}

/// The columns of `record` whose value differs from the stored fingerprints.
fn changed_columns<R: Record>(
    record: &R,
    lookups: &Lookups<'_>,
    state: &State,
    stored: &[u64],
) -> Columns {
    let mut changed = 0;
    for (index, column) in R::TABLE.columns.iter().enumerate() {
        let value = (column.value)(record, lookups);
        if fingerprint(desired_cell(&value, column.kind, state)) != stored[index] {
            changed |= 1 << index;
        }
    }
    changed
}

fn keyed_positions<'a>(keys: impl Iterator<Item = &'a str>) -> HashMap<&'a str, u32> {
    keys.enumerate().map(|(i, key)| (key, i as u32)).collect()
}

/// The member entity of a membership entity.
pub fn member_entity(membership: Entity) -> Entity {
    match membership {
        Entity::ClassTeacher => Entity::Teacher,
        _ => Entity::Student,
    }
}

/// The Clever id of the member at `index` of a membership entity's member list.
fn member_key(snapshot: &Snapshot, membership: Entity, index: u32) -> &str {
    record_key(snapshot, member_entity(membership), index)
}

/// The Clever id of the school of the snapshot's record at `index`, if it has one.
fn record_school(snapshot: &Snapshot, entity: Entity, index: u32) -> Option<&str> {
    let index = index as usize;
    match entity {
        Entity::School => Some(&snapshot.schools[index].id),
        Entity::Teacher => snapshot.teachers[index].school.as_deref(),
        Entity::Student => snapshot.students[index].school.as_deref(),
        Entity::Class | Entity::ClassTeacher | Entity::ClassStudent => {
            Some(&snapshot.sections[index].school)
        }
        Entity::District | Entity::Term | Entity::Course | Entity::Admin => None,
    }
}

/// The Clever id of the snapshot's record of `entity` at `index`.
pub fn record_key(snapshot: &Snapshot, entity: Entity, index: u32) -> &str {
    let index = index as usize;
    match entity {
        Entity::District => &snapshot.district.id,
        Entity::School => &snapshot.schools[index].id,
        Entity::Term => &snapshot.terms[index].id,
        Entity::Course => &snapshot.courses[index].id,
        Entity::Teacher => &snapshot.teachers[index].id,
        Entity::Student => &snapshot.students[index].id,
        Entity::Admin => &snapshot.admins[index].id,
        Entity::Class | Entity::ClassTeacher | Entity::ClassStudent => &snapshot.sections[index].id,
    }
}

/// What a plan does, in numbers: what a run prints and records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The district's Clever id.
    pub district: String,
    counts: BTreeMap<String, usize>,
    /// New teacher accounts, each with one welcome email queued.
    pub new_accounts: usize,
    pub quarantined: usize,
    pub skipped: Skipped,
    /// Every match and unmatched record of a change of source, when the plan makes one.
    pub source_switch: Option<String>,
}

impl Summary {
    /// Changes per `entity.action`, e.g. `student.create`.
    pub fn counts(&self) -> &BTreeMap<String, usize> {
        &self.counts
    }

    pub fn change_count(&self) -> usize {
        self.counts.values().sum()
    }

    /// Whether the plan changes nothing in the roster.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

impl Plan<'_> {
    pub fn summary(&self) -> Summary {
        Summary {
            district: self.snapshot.district.id.to_string(),
            counts: self.counts(),
            new_accounts: self.new_accounts.len(),
            quarantined: self.snapshot.quarantine.len(),
            skipped: self.snapshot.skipped,
            source_switch: self.state.switch.as_ref().map(ToString::to_string),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan for district {}:", self.district)?;
        if self.counts.is_empty() {
            writeln!(f, "  no changes")?;
        }
        for (what, count) in &self.counts {
            writeln!(f, "  {what:<24} {count:>8}")?;
        }
        writeln!(
            f,
            "side effects: {} new teacher account(s), each with one welcome email queued",
            self.new_accounts
        )?;
        if self.quarantined > 0 {
            writeln!(f, "quarantined records: {}", self.quarantined)?;
        }
        let skipped = &self.skipped;
        if skipped.contacts + skipped.staff + skipped.other_district + skipped.disabled > 0 {
            writeln!(
                f,
                "not loaded: {} contact(s), {} staff-only user(s), {} record(s) of other districts, {} disabled user(s)",
                skipped.contacts, skipped.staff, skipped.other_district, skipped.disabled
            )?;
        }
        if let Some(switch) = &self.source_switch {
            write!(f, "{switch}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Plan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("district", &self.snapshot.district.id)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::loaded;
    use rosterflow_model::{Decision, District, School, Section, Source, Student, Teacher};

    /// Two schools, two teachers, four students; math (primary t1, co t2) has s1..s3, art
    /// (t2) has s3 and s4.
    fn district() -> Snapshot {
        let student = |id: &str, school: &str, grade: &str| Student {
            id: id.into(),
            sis_id: Some(format!("SIS-{id}")),
            grade: Some(grade.into()),
            school: Some(school.into()),
            ..Student::default()
        };
        let teacher = |id: &str| Teacher {
            id: id.into(),
            email: Some(format!("{id}@example.org")),
            school: Some("north".into()),
            ..Teacher::default()
        };
        let section = |id: &str, teachers: &[&str], students: &[&str]| Section {
            id: id.into(),
            school: "north".into(),
            name: id.to_uppercase(),
            teachers: teachers.iter().map(|&t| t.into()).collect(),
            students: students.iter().map(|&s| s.into()).collect(),
            ..Section::default()
        };
        let school = |id: &str| School {
            id: id.into(),
            name: id.to_uppercase(),
            ..School::default()
        };
        Snapshot {
            district: District {
                id: "d".into(),
                name: "District".into(),
                ..District::default()
            },
            schools: vec![school("north"), school("south")],
            teachers: vec![teacher("t1"), teacher("t2")],
            students: vec![
                student("s1", "north", "3"),
                student("s2", "north", "3"),
                student("s3", "north", "4"),
                student("s4", "north", "4"),
            ],
            sections: vec![
                section("math", &["t1", "t2"], &["s1", "s2", "s3"]),
                section("art", &["t2"], &["s3", "s4"]),
            ],
            ..Snapshot::default()
        }
    }

    /// The plan's changes as `entity action key [member] (detail): reason by author`, sorted.
    fn changes(plan: &Plan<'_>) -> Vec<String> {
        let mut rows: Vec<String> = plan
            .change_rows()
            .map(|row| {
                let mut line = format!("{} {} {}", row.entity, row.action, row.key);
                if let Some(member) = row.member {
                    line.push_str(&format!(" {member}"));
                }
                if let Some(detail) = &row.detail {
                    line.push_str(&format!(" ({detail})"));
                }
                line.push_str(&format!(": {} by {}", row.reason, row.author));
                line
            })
            .collect();
        rows.sort();
        rows
    }

    /// The plan from `before` (loaded) to `after`.
    fn diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
        let state = loaded(before);
        changes(&Plan::compute(after, &state))
    }

    fn dropped(entity: Entity, id: &str) -> Decision {
        Decision {
            entity,
            id: id.into(),
            action: DecisionAction::Dropped,
            author: "filter:specials".into(),
            detail: "subject is arts and music".into(),
        }
    }

    #[test]
    fn a_first_load_creates_everything_with_one_account_per_teacher() {
        let snapshot = district();
        let state = State::default();
        let plan = Plan::compute(&snapshot, &state);
        let counts = plan.counts();
        assert_eq!(counts["district.create"], 1);
        assert_eq!(counts["school.create"], 2);
        assert_eq!(counts["student.create"], 4);
        assert_eq!(counts["class_student.start"], 5);
        assert_eq!(counts["class_teacher.start"], 3);
        assert_eq!(plan.new_accounts, [0, 1]);
        let roles: Vec<String> = plan
            .start_rows()
            .filter(|row| row.entity == Entity::ClassTeacher)
            .map(|row| {
                format!(
                    "{} {} {:?}",
                    row.key,
                    row.member.unwrap_or_default(),
                    row.detail
                )
            })
            .collect();
        assert_eq!(
            roles,
            [
                r#"math t1 Some("primary")"#,
                r#"math t2 Some("co")"#,
                r#"art t2 Some("primary")"#
            ]
        );
    }

    #[test]
    fn an_unchanged_roster_plans_nothing() {
        let snapshot = district();
        let state = loaded(&snapshot);
        let plan = Plan::compute(&snapshot, &state);
        assert!(plan.is_empty(), "{:?}", changes(&plan));
        assert!(plan.new_accounts.is_empty());
        assert!(plan.decisions_started.is_empty() && plan.decisions_ended.is_empty());
    }

    #[test]
    fn an_update_names_exactly_the_columns_that_changed() {
        let before = district();
        let mut after = before.clone();
        after.students[0].grade = Some("5".into());
        after.students[0].name.first = Some("Ada".into());
        assert_eq!(
            diff(&before, &after),
            ["student update s1 (first_name,grade): changed in source by sync"]
        );
    }

    #[test]
    fn a_student_who_left_is_archived_and_their_classes_end() {
        let before = district();
        let mut after = before.clone();
        after.students.retain(|s| s.id != "s3");
        for section in &mut after.sections {
            section.students.retain(|s| s != "s3");
        }
        assert_eq!(
            diff(&before, &after),
            [
                "class_student end art s3: student archived: absent from source (deleted or unshared upstream) by sync",
                "class_student end math s3: student archived: absent from source (deleted or unshared upstream) by sync",
                "student archive s3: absent from source (deleted or unshared upstream) by sync",
            ]
        );
    }

    #[test]
    fn changes_are_counted_per_school_and_type() {
        let before = district();
        let mut after = before.clone();
        after.students.retain(|s| s.id != "s3");
        for section in &mut after.sections {
            section.students.retain(|s| s != "s3");
        }
        after.students.push(Student {
            id: "s5".into(),
            school: Some("south".into()),
            ..Student::default()
        });
        let state = loaded(&before);
        let plan = Plan::compute(&after, &state);
        let counts: Vec<(Option<&str>, String, usize)> = plan
            .changes_by_school()
            .into_iter()
            .map(|((school, change), count)| (school, change, count))
            .collect();
        assert_eq!(
            counts,
            [
                (Some("north"), "class_student.end".to_owned(), 2),
                (Some("north"), "student.archive".to_owned(), 1),
                (Some("south"), "student.create".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn a_filtered_class_is_archived_with_the_filter_as_author() {
        let before = district();
        let mut after = before.clone();
        after.sections.retain(|s| s.id != "art");
        after.students.retain(|s| s.id != "s4");
        after.decisions = vec![
            dropped(Entity::Class, "art"),
            dropped(Entity::Student, "s4"),
        ];
        let plan_changes = diff(&before, &after);
        assert!(plan_changes.contains(
            &"class archive art: filtered: subject is arts and music by filter:specials".to_owned()
        ));
        assert!(plan_changes.contains(
            &"class_teacher end art t2: class archived: filtered: subject is arts and music by filter:specials"
                .to_owned()
        ));
        assert!(
            plan_changes.contains(
                &"student archive s4: filtered: subject is arts and music by filter:specials"
                    .to_owned()
            )
        );
        assert_eq!(plan_changes.len(), 5, "{plan_changes:?}");
        // The decisions start being in force; unchanged, they are not written again.
        let state = loaded(&before);
        let plan = Plan::compute(&after, &state);
        assert_eq!(plan.decisions_started, [0, 1]);
        let state = loaded(&after);
        assert!(Plan::compute(&after, &state).decisions_started.is_empty());
    }

    #[test]
    fn a_record_that_comes_back_is_restored_with_its_changes() {
        let before = district();
        let mut state = loaded(&before);
        state.archive(Entity::Student, "s4");
        let mut after = before.clone();
        after.students[3].grade = Some("5".into());
        let plan = Plan::compute(&after, &state);
        assert_eq!(
            changes(&plan),
            ["student restore s4 (grade): back in source by sync"]
        );
    }

    #[test]
    fn a_transfer_between_schools_updates_the_student_and_moves_their_classes() {
        let mut before = district();
        before.sections.push(Section {
            id: "south-math".into(),
            school: "south".into(),
            name: "SOUTH MATH".into(),
            teachers: vec!["t1".into()],
            ..Section::default()
        });
        let mut after = before.clone();
        after.students[0].school = Some("south".into());
        after.sections[0].students.retain(|s| s != "s1");
        after.sections[2].students.push("s1".into());
        assert_eq!(
            diff(&before, &after),
            [
                "class_student end math s1: no longer in the section in source by sync",
                "class_student start south-math s1: in the section in source by sync",
                "student update s1 (school_id): changed in source by sync",
            ]
        );
    }

    #[test]
    fn a_co_teacher_promoted_to_primary_changes_roles_in_place() {
        let before = district();
        let mut after = before.clone();
        after.sections[0].teachers.reverse();
        assert_eq!(
            diff(&before, &after),
            [
                "class_teacher update math t1 (co): role or source changed in source by sync",
                "class_teacher update math t2 (primary): role or source changed in source by sync",
            ]
        );
    }

    #[test]
    fn a_student_who_rejoins_a_class_starts_a_new_membership() {
        let mut before = district();
        before.sections[1].students.retain(|s| s != "s4");
        let after = district();
        assert_eq!(
            diff(&before, &after),
            ["class_student start art s4: in the section in source by sync"]
        );
    }

    #[test]
    fn a_new_student_in_an_existing_class_starts_once_created() {
        let before = district();
        let mut after = before.clone();
        after.students.push(Student {
            id: "s5".into(),
            ..Student::default()
        });
        after.sections[1].students.push("s5".into());
        let state = loaded(&before);
        let plan = Plan::compute(&after, &state);
        assert_eq!(
            changes(&plan),
            [
                "class_student start art s5: in the section in source by sync",
                "student create s5: new in source by sync",
            ]
        );
        assert_eq!(plan.starts[0].member, 4, "the new student's position");
    }

    #[test]
    fn a_vanished_class_is_archived_and_every_membership_ends() {
        let before = district();
        let mut after = before.clone();
        after.sections.retain(|s| s.id != "art");
        let plan_changes = diff(&before, &after);
        assert_eq!(plan_changes.len(), 4, "{plan_changes:?}");
        assert!(
            plan_changes
                .iter()
                .filter(|c| c.contains(" end art "))
                .all(|c| {
                    c.ends_with(
                        "class archived: absent from source (deleted or unshared upstream) by sync",
                    )
                })
        );
    }

    #[test]
    fn records_that_could_not_be_read_are_left_as_they_are() {
        let before = district();
        let mut after = before.clone();
        // s3 and the art section arrive unreadable: neither they nor their memberships change.
        after.students.retain(|s| s.id != "s3");
        after.sections.retain(|s| s.id != "art");
        after.sections[0].students.retain(|s| s != "s3");
        after.unreadable = vec![
            (Entity::Student, "s3".into()),
            (Entity::Class, "art".into()),
        ];
        assert_eq!(diff(&before, &after), Vec::<String>::new());
    }

    #[test]
    fn an_unreadable_primary_teacher_keeps_the_roles_as_they_are() {
        let before = district();
        let mut after = before.clone();
        // t1, math's primary teacher, arrives unreadable; the source still lists them first.
        after.teachers.retain(|t| t.id != "t1");
        after.unreadable = vec![(Entity::Teacher, "t1".into())];
        after.quarantine_dangling_references();
        assert_eq!(diff(&before, &after), Vec::<String>::new());
    }

    /// Found by the property tests: a filter that dropped a primary teacher used to take their
    /// id out of the list, and the co-teacher became primary. The id keeps its place now.
    #[test]
    fn a_filtered_primary_teacher_leaves_the_co_teacher_co() {
        let before = district();
        let mut after = before.clone();
        after.teachers.retain(|t| t.id != "t1");
        after.decisions = vec![dropped(Entity::Teacher, "t1")];
        assert_eq!(
            diff(&before, &after),
            [
                "class_teacher end math t1: teacher archived: filtered: subject is arts and music by filter:specials",
                "teacher archive t1: filtered: subject is arts and music by filter:specials",
            ]
        );
    }

    /// OneRoster ids are unique within a file only: an unreadable class does not shield the
    /// student who shares its id.
    #[test]
    fn an_unreadable_record_holds_only_its_own_entity() {
        let before = district();
        let mut after = before.clone();
        after.students.retain(|s| s.id != "s4");
        after.unreadable = vec![(Entity::Class, "s4".into())];
        let plan_changes = diff(&before, &after);
        assert!(
            plan_changes
                .iter()
                .any(|c| c.starts_with("student archive s4")),
            "{plan_changes:?}"
        );
    }

    #[test]
    fn a_student_held_by_an_unreadable_class_is_not_archived() {
        let before = district();
        let mut after = before.clone();
        // art arrives unreadable; a sharing rule then drops s4, whose only other class it was.
        after.sections.retain(|s| s.id != "art");
        after.unreadable = vec![(Entity::Class, "art".into())];
        after.students.retain(|s| s.id != "s4");
        after.decisions = vec![dropped(Entity::Student, "s4")];
        let plan_changes = diff(&before, &after);
        assert!(
            !plan_changes.iter().any(|c| c.contains("s4")),
            "{plan_changes:?}"
        );
    }

    #[test]
    fn a_plugin_taking_over_a_membership_changes_its_source() {
        let before = district();
        let mut after = before.clone();
        after.sections[1]
            .member_sources
            .insert("s4".into(), Source::Plugin("flex".into()));
        assert_eq!(
            diff(&before, &after),
            ["class_student update art s4: role or source changed in source by plugin:flex"]
        );
        // A plugin's own group: its class and memberships are the plugin's.
        let mut grouped = before.clone();
        grouped.sections.push(Section {
            id: "plugin:flex:g1".into(),
            school: "north".into(),
            name: "Group 1".into(),
            students: vec!["s1".into()],
            source: Source::Plugin("flex".into()),
            ..Section::default()
        });
        grouped.decisions.push(Decision {
            entity: Entity::Class,
            id: "plugin:flex:g1".into(),
            action: DecisionAction::Created,
            author: "plugin:flex".into(),
            detail: "group 1".into(),
        });
        assert_eq!(
            diff(&before, &grouped),
            [
                "class create plugin:flex:g1: new in source by plugin:flex",
                "class_student start plugin:flex:g1 s1: in the section in source by plugin:flex",
            ]
        );
    }
}
