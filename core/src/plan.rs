//! The plan: what a run would change in the Freckle DB, computed before anything is written.
//!
//! A plan diffs the transformed snapshot against the district's current rows, keyed by Clever
//! id: every create, update, archive (never delete) and restore, every membership that starts,
//! ends or changes role, and the side effects (new teacher accounts with one welcome email each).
//! A dry run prints it; the safety checks judge it; the load applies it whole.
//! The sync owns only rows with a Clever id and memberships whose source is `sis` or
//! `plugin:<name>`: manual classes, manual memberships and shares are never in a plan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::load::State;
use crate::load::tables::{MEMBERSHIPS, TABLES};
use crate::model::{Decision, DecisionAction, Entity, Quarantined, Snapshot};

/// Everything a run would do.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The district's Clever id.
    pub district: String,
    pub records: Vec<RecordChange>,
    pub memberships: Vec<MembershipChange>,
    /// Teachers (Clever ids) who get a Freckle account and one welcome email.
    pub new_accounts: Vec<String>,
    pub quarantine: Vec<Quarantined>,
    /// What the transforms dropped or created, kept with the run for `explain`.
    pub decisions: Vec<Decision>,
    /// Active rows per entity before the run, for the safety checks.
    pub active_before: BTreeMap<Entity, usize>,
    /// Active rows per entity and school before the run, for the per-school safety checks
    /// (not kept with a held plan: an approval applies it as it stands).
    #[serde(skip)]
    pub active_by_school: BTreeMap<(Entity, String), usize>,
    /// Records per entity in the snapshot.
    pub in_source: BTreeMap<Entity, usize>,
    /// The last committed run this plan was computed against: an approval applies it only if
    /// the DB has not moved since.
    pub based_on_run: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordAction {
    Create,
    Update,
    Archive,
    Restore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipAction {
    Start,
    End,
    Update,
}

/// A change to one keyed row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordChange {
    pub entity: Entity,
    /// The Clever id (or `plugin:<name>:<key>` for a plugin's group).
    pub key: String,
    pub action: RecordAction,
    /// The existing row, for everything but a create.
    pub id: Option<i64>,
    /// The values to write, in the table's column order (none for an archive).
    pub values: Vec<Option<String>>,
    /// Columns whose value changes (updates and restores).
    pub changed: Vec<String>,
    pub reason: String,
    /// `sync`, or the rule, filter or plugin responsible.
    pub author: String,
    /// The school the record belongs to, for per-school safety checks.
    pub school: Option<String>,
}

/// A change to one class membership.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembershipChange {
    /// `class_student` or `class_teacher`.
    pub entity: Entity,
    pub class: String,
    pub member: String,
    pub action: MembershipAction,
    /// The open membership row, for ends and updates.
    pub id: Option<i64>,
    /// `primary` or `co` for teachers.
    pub role: Option<String>,
    /// `sis` or `plugin:<name>`.
    pub source: String,
    pub reason: String,
    pub author: String,
}

/// A row as the snapshot wants it: Clever id, values in column order, and its school.
pub(crate) struct Desired {
    pub key: String,
    pub values: Vec<Option<String>>,
    pub school: Option<String>,
}

/// A membership as the snapshot wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMember {
    pub role: Option<String>,
    pub source: String,
}

impl Plan {
    /// Diffs `snapshot` against the district's `state`.
    pub fn compute(snapshot: &Snapshot, state: &State) -> Plan {
        let dropped: HashMap<(Entity, &str), &Decision> = snapshot
            .decisions
            .iter()
            .filter(|d| d.action == DecisionAction::Dropped)
            .map(|d| ((d.entity, d.id.as_str()), d))
            .collect();
        let created: HashMap<(Entity, &str), &Decision> = snapshot
            .decisions
            .iter()
            .filter(|d| d.action == DecisionAction::Created)
            .map(|d| ((d.entity, d.id.as_str()), d))
            .collect();
        let absent = |entity: Entity, key: &str| -> (String, String) {
            match dropped.get(&(entity, key)) {
                Some(d) => (format!("filtered: {}", d.detail), d.author.clone()),
                None => (
                    "absent from source (deleted or unshared upstream)".to_owned(),
                    "sync".to_owned(),
                ),
            }
        };

        let mut plan = Plan {
            district: snapshot.district.id.clone(),
            quarantine: snapshot.quarantine.clone(),
            decisions: snapshot.decisions.clone(),
            based_on_run: state.last_run,
            ..Plan::default()
        };

        let desired = desired_rows(snapshot);
        let mut wanted: HashMap<Entity, HashSet<&str>> = HashMap::new();
        for table in TABLES {
            let rows = &desired[&table.entity];
            let existing = state.records.get(&table.entity);
            plan.in_source.insert(table.entity, rows.len());
            plan.active_before.insert(
                table.entity,
                existing.map_or(0, |e| e.values().filter(|r| !r.archived).count()),
            );
            for current in existing.into_iter().flat_map(|e| e.values()) {
                if let (false, Some(school)) = (current.archived, &current.school) {
                    *plan
                        .active_by_school
                        .entry((table.entity, school.clone()))
                        .or_default() += 1;
                }
            }
            let keys = wanted.entry(table.entity).or_default();
            for row in rows {
                keys.insert(&row.key);
                let author = created
                    .get(&(table.entity, row.key.as_str()))
                    .map_or("sync", |d| d.author.as_str());
                let change = |action, id, changed, reason: &str| RecordChange {
                    entity: table.entity,
                    key: row.key.clone(),
                    action,
                    id,
                    values: row.values.clone(),
                    changed,
                    reason: reason.to_owned(),
                    author: author.to_owned(),
                    school: row.school.clone(),
                };
                match existing.and_then(|e| e.get(&row.key)) {
                    None => {
                        plan.records.push(change(
                            RecordAction::Create,
                            None,
                            Vec::new(),
                            "new in source",
                        ));
                        if table.entity == Entity::Teacher {
                            plan.new_accounts.push(row.key.clone());
                        }
                    }
                    Some(current) => {
                        let changed: Vec<String> = table
                            .columns
                            .iter()
                            .zip(row.values.iter().zip(&current.values))
                            .filter(|(_, (want, have))| want != have)
                            .map(|(column, _)| column.name.to_owned())
                            .collect();
                        if current.archived {
                            plan.records.push(change(
                                RecordAction::Restore,
                                Some(current.id),
                                changed,
                                "back in source",
                            ));
                        } else if !changed.is_empty() {
                            plan.records.push(change(
                                RecordAction::Update,
                                Some(current.id),
                                changed,
                                "changed in source",
                            ));
                        }
                    }
                }
            }
            if !table.in_district {
                continue;
            }
            let mut archives: Vec<RecordChange> = existing
                .into_iter()
                .flatten()
                .filter(|(key, current)| !current.archived && !keys.contains(key.as_str()))
                .map(|(key, current)| {
                    let (reason, author) = absent(table.entity, key);
                    RecordChange {
                        entity: table.entity,
                        key: key.clone(),
                        action: RecordAction::Archive,
                        id: Some(current.id),
                        values: Vec::new(),
                        changed: Vec::new(),
                        reason,
                        author,
                        school: current.school.clone(),
                    }
                })
                .collect();
            archives.sort_by(|a, b| a.key.cmp(&b.key));
            plan.records.extend(archives);
        }

        let desired_members = desired_memberships(snapshot);
        for table in &MEMBERSHIPS {
            let want = &desired_members[&table.entity];
            let have = state.memberships.get(&table.entity);
            plan.in_source.insert(table.entity, want.len());
            plan.active_before
                .insert(table.entity, have.map_or(0, HashMap::len));
            let mut changes = Vec::new();
            for ((class, member), desired) in want {
                let author = snapshot_author(&created, class, desired);
                match have.and_then(|h| h.get(&(class.clone(), member.clone()))) {
                    None => changes.push(MembershipChange {
                        entity: table.entity,
                        class: class.clone(),
                        member: member.clone(),
                        action: MembershipAction::Start,
                        id: None,
                        role: desired.role.clone(),
                        source: desired.source.clone(),
                        reason: "in the section in source".to_owned(),
                        author,
                    }),
                    Some(current) if current.member != *desired => changes.push(MembershipChange {
                        entity: table.entity,
                        class: class.clone(),
                        member: member.clone(),
                        action: MembershipAction::Update,
                        id: Some(current.id),
                        role: desired.role.clone(),
                        source: desired.source.clone(),
                        reason: "role or source changed in source".to_owned(),
                        author,
                    }),
                    Some(_) => {}
                }
            }
            let class_keys = &wanted[&Entity::Class];
            let member_keys = &wanted[&table.member];
            for ((class, member), current) in have.into_iter().flatten() {
                if want.contains_key(&(class.clone(), member.clone())) {
                    continue;
                }
                let (reason, author) = if !class_keys.contains(class.as_str()) {
                    let (why, author) = absent(Entity::Class, class);
                    (format!("class archived: {why}"), author)
                } else if !member_keys.contains(member.as_str()) {
                    let (why, author) = absent(table.member, member);
                    (format!("{} archived: {why}", table.member), author)
                } else {
                    (
                        "no longer in the section in source".to_owned(),
                        "sync".to_owned(),
                    )
                };
                changes.push(MembershipChange {
                    entity: table.entity,
                    class: class.clone(),
                    member: member.clone(),
                    action: MembershipAction::End,
                    id: Some(current.id),
                    role: current.member.role.clone(),
                    source: current.member.source.clone(),
                    reason,
                    author,
                });
            }
            changes.sort_by(|a, b| {
                (a.action, &a.class, &a.member).cmp(&(b.action, &b.class, &b.member))
            });
            plan.memberships.extend(changes);
        }
        plan
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.memberships.is_empty()
    }

    /// Changes per `entity.action`, e.g. `student.create`.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for change in &self.records {
            *counts
                .entry(format!("{}.{}", change.entity, action_name(change.action)))
                .or_default() += 1;
        }
        for change in &self.memberships {
            *counts
                .entry(format!(
                    "{}.{}",
                    change.entity,
                    membership_action_name(change.action)
                ))
                .or_default() += 1;
        }
        counts
    }

    pub fn change_count(&self) -> usize {
        self.records.len() + self.memberships.len()
    }
}

fn snapshot_author(
    created: &HashMap<(Entity, &str), &Decision>,
    class: &str,
    desired: &DesiredMember,
) -> String {
    if desired.source != "sis" {
        return desired.source.clone();
    }
    created
        .get(&(Entity::Class, class))
        .map_or_else(|| "sync".to_owned(), |d| d.author.clone())
}

pub fn action_name(action: RecordAction) -> &'static str {
    match action {
        RecordAction::Create => "create",
        RecordAction::Update => "update",
        RecordAction::Archive => "archive",
        RecordAction::Restore => "restore",
    }
}

pub fn membership_action_name(action: MembershipAction) -> &'static str {
    match action {
        MembershipAction::Start => "start",
        MembershipAction::End => "end",
        MembershipAction::Update => "update",
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan for district {}:", self.district)?;
        let counts = self.counts();
        if counts.is_empty() {
            writeln!(f, "  no changes")?;
        }
        for (what, count) in &counts {
            writeln!(f, "  {what:<24} {count:>8}")?;
        }
        writeln!(
            f,
            "side effects: {} new teacher account(s), {} welcome email(s)",
            self.new_accounts.len(),
            self.new_accounts.len()
        )?;
        if !self.quarantine.is_empty() {
            writeln!(f, "quarantined records: {}", self.quarantine.len())?;
        }
        Ok(())
    }
}

fn opt(value: &Option<String>) -> Option<String> {
    value.clone()
}

fn flag(value: bool) -> Option<String> {
    Some(value.to_string())
}

/// The rows the snapshot wants, per entity, sorted by key, values in column order.
pub(crate) fn desired_rows(snapshot: &Snapshot) -> HashMap<Entity, Vec<Desired>> {
    let mut rows: HashMap<Entity, Vec<Desired>> = HashMap::new();
    let mut add = |entity, key: &str, school: Option<&String>, values: Vec<Option<String>>| {
        rows.entry(entity).or_default().push(Desired {
            key: key.to_owned(),
            values,
            school: school.cloned(),
        });
    };
    let district = &snapshot.district;
    add(
        Entity::District,
        &district.id,
        None,
        vec![Some(district.name.clone())],
    );
    for s in &snapshot.schools {
        add(
            Entity::School,
            &s.id,
            Some(&s.id),
            vec![
                Some(s.name.clone()),
                opt(&s.sis_id),
                opt(&s.school_number),
                opt(&s.state_id),
                opt(&s.low_grade),
                opt(&s.high_grade),
                flag(s.synthesized),
            ],
        );
    }
    for t in &snapshot.terms {
        add(
            Entity::Term,
            &t.id,
            None,
            vec![
                opt(&t.name),
                opt(&t.start_date),
                opt(&t.end_date),
                flag(t.synthesized),
            ],
        );
    }
    for c in &snapshot.courses {
        add(
            Entity::Course,
            &c.id,
            None,
            vec![opt(&c.name), opt(&c.number), flag(c.synthesized)],
        );
    }
    for t in &snapshot.teachers {
        add(
            Entity::Teacher,
            &t.id,
            t.school.as_ref(),
            vec![
                opt(&t.sis_id),
                opt(&t.email),
                opt(&t.name.first),
                opt(&t.name.middle),
                opt(&t.name.last),
                opt(&t.title),
                opt(&t.teacher_number),
                opt(&t.state_id),
                opt(&t.school),
            ],
        );
    }
    for s in &snapshot.students {
        add(
            Entity::Student,
            &s.id,
            s.school.as_ref(),
            vec![
                opt(&s.sis_id),
                opt(&s.state_id),
                opt(&s.student_number),
                opt(&s.email),
                opt(&s.name.first),
                opt(&s.name.middle),
                opt(&s.name.last),
                opt(&s.grade),
                opt(&s.school),
            ],
        );
    }
    for a in &snapshot.admins {
        add(
            Entity::Admin,
            &a.id,
            None,
            vec![
                opt(&a.email),
                opt(&a.name.first),
                opt(&a.name.middle),
                opt(&a.name.last),
                opt(&a.title),
            ],
        );
    }
    let term_names: HashMap<&str, &Option<String>> = snapshot
        .terms
        .iter()
        .map(|t| (t.id.as_str(), &t.name))
        .collect();
    for s in &snapshot.sections {
        let term_name = s
            .term
            .as_deref()
            .and_then(|t| term_names.get(t))
            .and_then(|name| (*name).clone());
        add(
            Entity::Class,
            &s.id,
            Some(&s.school),
            vec![
                opt(&s.sis_id),
                Some(s.school.clone()),
                Some(s.name.clone()),
                opt(&s.subject),
                opt(&s.grade),
                opt(&s.period),
                opt(&s.section_number),
                term_name,
                opt(&s.term),
                opt(&s.course),
                Some(s.source.as_db()),
            ],
        );
    }
    for table in TABLES {
        let entries = rows.entry(table.entity).or_default();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        // A user listed twice by the source is one record.
        entries.dedup_by(|a, b| a.key == b.key);
    }
    rows
}

/// The memberships the snapshot wants, per membership entity, keyed by (class, member).
pub(crate) fn desired_memberships(
    snapshot: &Snapshot,
) -> HashMap<Entity, BTreeMap<(String, String), DesiredMember>> {
    let mut teachers = BTreeMap::new();
    let mut students = BTreeMap::new();
    for section in &snapshot.sections {
        let source_of = |member: &String| {
            section
                .member_sources
                .get(member)
                .unwrap_or(&section.source)
                .as_db()
        };
        for (index, teacher) in section.teachers.iter().enumerate() {
            let role = if index == 0 { "primary" } else { "co" };
            teachers.insert(
                (section.id.clone(), teacher.clone()),
                DesiredMember {
                    role: Some(role.to_owned()),
                    source: source_of(teacher),
                },
            );
        }
        for student in &section.students {
            students.insert(
                (section.id.clone(), student.clone()),
                DesiredMember {
                    role: None,
                    source: source_of(student),
                },
            );
        }
    }
    HashMap::from([
        (Entity::ClassTeacher, teachers),
        (Entity::ClassStudent, students),
    ])
}
