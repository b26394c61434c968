//! What the planner knows of the Freckle DB before a run: for each synced table the district's
//! rows (source id, row id, archived or not, school, and a fingerprint of each synced column),
//! the open sync-owned memberships as pairs of row ids, and the transform decisions in force.
//!
//! The store reads it; the planner diffs a snapshot against it. No column value is kept, only
//! its [`fingerprint`]: enough to tell which columns changed, at a few bytes a column.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use indexmap::IndexMap;
use rustc_hash::{FxBuildHasher, FxHasher};

use rosterflow_model::school_year::SchoolYear;
use rosterflow_model::{DecisionAction, Entity, Id, SourceKind};

use crate::schema::{Kind, Value};
use crate::switch::SourceSwitch;

/// A district's rows as the sync sees them.
#[derive(Debug, Default)]
pub struct State {
    /// The district's row, once it has one.
    pub district: Option<i64>,
    /// The source the district's rows came from, once it has a row.
    pub source: Option<SourceKind>,
    /// The change of source this run makes, with the rows it matched (already keyed by their
    /// new ids in `tables`).
    pub switch: Option<SourceSwitch>,
    /// The last committed run of the district.
    pub last_run: Option<i64>,
    /// Rows with a source id, per synced entity.
    pub tables: BTreeMap<Entity, TableState>,
    /// Open memberships the sync owns (`sis` and `plugin:` sources), per membership entity.
    pub memberships: BTreeMap<Entity, MembershipState>,
    /// The transform decisions in force (recorded by earlier runs, not yet ended).
    pub decisions: Vec<OpenDecision>,
}

impl State {
    /// Marks a row archived, as an earlier run would have.
    #[cfg(test)]
    pub(crate) fn archive(&mut self, entity: Entity, key: &str) {
        self.tables
            .get_mut(&entity)
            .expect("a loaded table")
            .archive(key);
    }

    /// Whether the roster now comes from another source than the district's rows: then its
    /// rows are matched by SIS id ([`State::switch_source`]) before planning.
    pub fn switches_to(&self, source: SourceKind) -> bool {
        self.source.is_some_and(|from| from != source) && self.switch.is_none()
    }

    /// Keys the matched rows by their new ids, so the plan updates them instead of archiving
    /// them and creating new ones; the store writes the new keys first.
    pub fn switch_source(&mut self, switch: SourceSwitch) {
        for entity in crate::switch::MATCHED {
            let renames: HashMap<i64, &Id> = switch
                .matches
                .iter()
                .filter(|m| m.entity == entity)
                .map(|m| (m.row, &m.to))
                .collect();
            if let Some(table) = self.tables.get_mut(&entity)
                && !renames.is_empty()
            {
                table.rekey(&renames);
            }
        }
        self.switch = Some(switch);
    }

    /// The rows of `entity` (empty when the table was not read).
    pub fn table(&self, entity: Entity) -> &TableState {
        static EMPTY: TableState = TableState::empty();
        self.tables.get(&entity).unwrap_or(&EMPTY)
    }

    pub fn members(&self, entity: Entity) -> &MembershipState {
        static EMPTY: MembershipState = MembershipState::empty();
        self.memberships.get(&entity).unwrap_or(&EMPTY)
    }
}

/// One column's value as the DB holds it, or as a record wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    Flag(bool),
    /// A reference to an existing row.
    Row(i64),
    /// A reference to a record that has no row yet: never equal to a stored value.
    Pending,
}

/// A column value's fingerprint: equal values give equal fingerprints on either side, and a
/// changed value a different one but for a 2^-64 chance.
pub fn fingerprint(cell: Cell<'_>) -> u64 {
    let mut hasher = FxHasher::default();
    match cell {
        Cell::Null => 0u8.hash(&mut hasher),
        Cell::Text(text) => {
            1u8.hash(&mut hasher);
            text.hash(&mut hasher);
        }
        Cell::Flag(flag) => {
            2u8.hash(&mut hasher);
            flag.hash(&mut hasher);
        }
        Cell::Row(id) => {
            3u8.hash(&mut hasher);
            id.hash(&mut hasher);
        }
        Cell::Pending => 4u8.hash(&mut hasher),
    }
    hasher.finish()
}

/// An existing row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    pub id: i64,
    pub archived: bool,
    /// The row id of its school (a school's own id for schools).
    pub school: Option<i64>,
    /// A class's school year: its term's, else the one it was first synced in (`None` for
    /// other rows). What tells a new school year's rollover apart from a broken feed.
    pub year: Option<SchoolYear>,
}

/// The district's rows of one table, by source id, in ascending row id order.
#[derive(Debug)]
pub struct TableState {
    columns: usize,
    rows: IndexMap<Id, Existing, FxBuildHasher>,
    /// `columns` fingerprints per row, in row order.
    fingerprints: Vec<u64>,
}

/// Why the store could not build a state: its query broke an ordering it promised.
#[derive(Debug, thiserror::Error)]
#[error("{what} arrived out of order (row {row} after {after})")]
pub struct OutOfOrder {
    pub what: &'static str,
    pub row: i64,
    pub after: i64,
}

impl TableState {
    const fn empty() -> TableState {
        TableState {
            columns: 0,
            rows: IndexMap::with_hasher(FxBuildHasher),
            fingerprints: Vec::new(),
        }
    }

    pub fn new(columns: usize) -> TableState {
        TableState {
            columns,
            ..TableState::empty()
        }
    }

    /// Gives the rows in `renames` (by row id) their new keys, keeping the order.
    fn rekey(&mut self, renames: &HashMap<i64, &Id>) {
        let rows = std::mem::take(&mut self.rows);
        self.rows = rows
            .into_iter()
            .map(|(key, existing)| match renames.get(&existing.id) {
                Some(&new) => (new.clone(), existing),
                None => (key, existing),
            })
            .collect();
    }

    /// Adds a row; rows come in ascending row id order, each with one fingerprint per column.
    pub fn push(
        &mut self,
        key: Id,
        existing: Existing,
        fingerprints: impl IntoIterator<Item = u64>,
    ) -> Result<(), OutOfOrder> {
        if let Some((_, last)) = self.rows.last()
            && last.id >= existing.id
        {
            return Err(OutOfOrder {
                what: "rows",
                row: existing.id,
                after: last.id,
            });
        }
        self.rows.insert(key, existing);
        let before = self.fingerprints.len();
        self.fingerprints.extend(fingerprints);
        debug_assert_eq!(self.fingerprints.len() - before, self.columns);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row of a source id, with its position.
    pub fn get(&self, key: &str) -> Option<(usize, &Existing)> {
        self.rows.get_full(key).map(|(index, _, row)| (index, row))
    }

    pub fn row_id(&self, key: &str) -> Option<i64> {
        self.rows.get(key).map(|row| row.id)
    }

    /// The source id and row at a position.
    pub fn at(&self, index: usize) -> (&str, &Existing) {
        let (key, row) = self
            .rows
            .get_index(index)
            .expect("positions come from this table");
        (key, row)
    }

    /// The position of a row id.
    pub fn find_row(&self, id: i64) -> Option<usize> {
        let rows = self.rows.as_slice();
        let index = rows.binary_search_by_key(&id, |_, row| row.id).ok()?;
        Some(index)
    }

    pub fn fingerprints(&self, index: usize) -> &[u64] {
        &self.fingerprints[index * self.columns..(index + 1) * self.columns]
    }

    /// Gives every row the school year `year`, as the store reads a class's.
    #[cfg(test)]
    pub(crate) fn set_year(&mut self, year: SchoolYear) {
        for row in self.rows.values_mut() {
            row.year = Some(year);
        }
    }

    /// Marks a row archived, as an earlier run would have.
    #[cfg(test)]
    pub(crate) fn archive(&mut self, key: &str) {
        self.rows.get_mut(key).expect("a loaded row").archived = true;
    }

    /// Every row with its position and source id.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str, &Existing)> {
        self.rows
            .iter()
            .enumerate()
            .map(|(index, (key, row))| (index, key.as_str(), row))
    }
}

/// A teacher's role in a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Students have none.
    None,
    Primary,
    Co,
}

impl Role {
    /// The role of the member at `index` of a section's list of `member`s: the first teacher
    /// is the primary one.
    pub fn in_list(member: Entity, index: usize) -> Role {
        match (member, index) {
            (Entity::Teacher, 0) => Role::Primary,
            (Entity::Teacher, _) => Role::Co,
            _ => Role::None,
        }
    }

    pub fn as_db(self) -> Option<&'static str> {
        match self {
            Role::None => None,
            Role::Primary => Some("primary"),
            Role::Co => Some("co"),
        }
    }

    pub fn from_db(role: Option<&str>) -> Role {
        match role {
            Some("primary") => Role::Primary,
            Some("co") => Role::Co,
            _ => Role::None,
        }
    }
}

/// What a membership row says beyond its class and member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub role: Role,
    /// Index into the sources of its [`MembershipState`].
    pub source: u32,
}

/// Open memberships of one kind, grouped by class: class row ids ascending, and within a class
/// member row ids ascending. About 16 bytes a membership.
#[derive(Debug)]
pub struct MembershipState {
    classes: Vec<i64>,
    /// Where each class's members start in `members`; one more entry than `classes`.
    offsets: Vec<u32>,
    members: Vec<i64>,
    tags: Vec<Tag>,
    /// The distinct `source` values (`sis`, `plugin:<name>`).
    sources: Vec<String>,
}

impl Default for MembershipState {
    fn default() -> MembershipState {
        MembershipState::empty()
    }
}

impl MembershipState {
    const fn empty() -> MembershipState {
        MembershipState {
            classes: Vec::new(),
            offsets: Vec::new(),
            members: Vec::new(),
            tags: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// Adds a membership; they come ordered by class, then member.
    pub fn push(
        &mut self,
        class: i64,
        member: i64,
        role: Role,
        source: &str,
    ) -> Result<(), OutOfOrder> {
        match self.classes.last() {
            Some(&last) if last == class => {
                let previous = *self.members.last().expect("a class has members");
                if previous >= member {
                    return Err(OutOfOrder {
                        what: "memberships",
                        row: member,
                        after: previous,
                    });
                }
            }
            Some(&last) if last > class => {
                return Err(OutOfOrder {
                    what: "membership classes",
                    row: class,
                    after: last,
                });
            }
            _ => {
                self.classes.push(class);
                self.offsets.push(self.members.len() as u32);
            }
        }
        let source = self.source_index(source).unwrap_or_else(|| {
            self.sources.push(source.to_owned());
            (self.sources.len() - 1) as u32
        });
        self.members.push(member);
        self.tags.push(Tag { role, source });
        Ok(())
    }

    /// The index of a source value, if any membership has it.
    pub fn source_index(&self, source: &str) -> Option<u32> {
        self.sources
            .iter()
            .position(|s| s == source)
            .map(|i| i as u32)
    }

    pub fn source(&self, index: u32) -> &str {
        &self.sources[index as usize]
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The classes that have open memberships, in ascending row order.
    pub fn classes(&self) -> &[i64] {
        &self.classes
    }

    /// The members and tags of the class at position `index` of [`MembershipState::classes`].
    pub fn of_class_at(&self, index: usize) -> (&[i64], &[Tag]) {
        let start = self.offsets[index] as usize;
        let end = self
            .offsets
            .get(index + 1)
            .map_or(self.members.len(), |&end| end as usize);
        (&self.members[start..end], &self.tags[start..end])
    }

    /// The position of a class row in [`MembershipState::classes`].
    pub fn class_position(&self, class: i64) -> Option<usize> {
        self.classes.binary_search(&class).ok()
    }
}

/// A transform decision recorded by an earlier run and still in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDecision {
    pub row: i64,
    pub entity: Entity,
    pub key: Id,
    pub action: DecisionAction,
    pub author: String,
    pub detail: String,
}

/// The state a DB would hold after loading `snapshot` into an empty district: rows numbered in
/// load order, fingerprints of the snapshot's own values, its memberships and decisions. What
/// the planner's tests diff against.
#[cfg(test)]
pub(crate) fn loaded(snapshot: &rosterflow_model::Snapshot) -> State {
    use crate::schema::{Lookups, Record, TableVisitor, visit_tables};

    struct Loader<'a> {
        state: State,
        next: i64,
        lookups: Lookups<'a>,
    }
    impl<'a> TableVisitor<'a> for Loader<'a> {
        type Error = std::convert::Infallible;
        fn visit<R: Record>(&mut self, records: &'a [R]) -> Result<(), Self::Error> {
            let table = &R::TABLE;
            let mut rows = TableState::new(table.columns.len());
            for record in records {
                self.next += 1;
                let school = match table.entity {
                    Entity::School => Some(self.next),
                    _ => record
                        .school()
                        .and_then(|key| self.state.table(Entity::School).row_id(key)),
                };
                let fingerprints: Vec<u64> = table
                    .columns
                    .iter()
                    .map(|column| {
                        let value = (column.value)(record, &self.lookups);
                        fingerprint(desired_cell(&value, column.kind, &self.state))
                    })
                    .collect();
                let existing = Existing {
                    id: self.next,
                    archived: false,
                    school,
                    year: None,
                };
                rows.push(record.key().into(), existing, fingerprints)
                    .expect("rows are numbered in order");
            }
            self.state.tables.insert(table.entity, rows);
            Ok(())
        }
    }

    let mut loader = Loader {
        state: State {
            district: Some(1),
            last_run: Some(1),
            ..State::default()
        },
        next: 0,
        lookups: Lookups::new(snapshot),
    };
    let Ok(()) = visit_tables(snapshot, &mut loader);
    let mut state = loader.state;
    for (entity, member) in [
        (Entity::ClassTeacher, Entity::Teacher),
        (Entity::ClassStudent, Entity::Student),
    ] {
        let mut pairs = Vec::new();
        for section in &snapshot.sections {
            let class = state
                .table(Entity::Class)
                .row_id(&section.id)
                .expect("loaded");
            let list = match member {
                Entity::Teacher => &section.teachers,
                _ => &section.students,
            };
            for (index, id) in list.iter().enumerate() {
                let role = Role::in_list(member, index);
                let source = section.source_of(id);
                if let Some(row) = state.table(member).row_id(id) {
                    pairs.push((class, row, role, source.as_db()));
                }
            }
        }
        pairs.sort();
        pairs.dedup_by_key(|(class, member, ..)| (*class, *member));
        let mut open = MembershipState::default();
        for (class, row, role, source) in pairs {
            open.push(class, row, role, &source).expect("sorted");
        }
        state.memberships.insert(entity, open);
    }
    state.decisions = snapshot
        .decisions
        .iter()
        .enumerate()
        .map(|(row, d)| OpenDecision {
            row: row as i64 + 1,
            entity: d.entity,
            key: d.id.clone(),
            action: d.action,
            author: d.author.clone(),
            detail: d.detail.clone(),
        })
        .collect();
    state
}

/// The cell a record wants, with references resolved to the rows the state holds.
pub fn desired_cell<'v>(value: &'v Value<'_>, kind: Kind, state: &State) -> Cell<'v> {
    match (value, kind) {
        (Value::Text(None) | Value::Ref(None), _) => Cell::Null,
        (Value::Text(Some(text)), _) => Cell::Text(text),
        (Value::Flag(flag), _) => Cell::Flag(*flag),
        (Value::Ref(Some(key)), Kind::Ref(to)) => {
            state.table(to).row_id(key).map_or(Cell::Pending, Cell::Row)
        }
        (Value::Ref(Some(_)), _) => Cell::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_kinds_and_values_apart() {
        let all = [
            Cell::Null,
            Cell::Text(""),
            Cell::Text("1"),
            Cell::Flag(false),
            Cell::Flag(true),
            Cell::Row(1),
            Cell::Row(2),
            Cell::Pending,
        ];
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                assert_eq!(fingerprint(*a) == fingerprint(*b), i == j, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn rows_are_found_by_key_and_by_row_id() {
        let mut table = TableState::new(1);
        for (key, id) in [("a", 3), ("b", 7), ("c", 9)] {
            let existing = Existing {
                id,
                archived: false,
                school: None,
                year: None,
            };
            table
                .push(key.into(), existing, [id as u64])
                .expect("ascending");
        }
        assert_eq!(table.row_id("b"), Some(7));
        assert_eq!(table.find_row(9), Some(2));
        assert_eq!(table.find_row(8), None);
        assert_eq!(table.fingerprints(1), &[7]);
        let existing = Existing {
            id: 5,
            archived: false,
            school: None,
            year: None,
        };
        assert!(table.push("d".into(), existing, [0]).is_err());
    }

    #[test]
    fn memberships_group_by_class() {
        let mut members = MembershipState::default();
        for (class, member, source) in [(1, 10, "sis"), (1, 11, "plugin:x"), (4, 10, "sis")] {
            members
                .push(class, member, Role::None, source)
                .expect("ordered");
        }
        assert_eq!(members.classes(), &[1, 4]);
        let (ids, tags) = members.of_class_at(0);
        assert_eq!(ids, &[10, 11]);
        assert_eq!(members.source(tags[1].source), "plugin:x");
        assert_eq!(members.of_class_at(1).0, &[10]);
        assert!(members.push(4, 9, Role::None, "sis").is_err());
        assert!(members.push(2, 1, Role::None, "sis").is_err());
    }
}
