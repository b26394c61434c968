//! The records the simulator serves, each with the status and `dateLastModified` the simulator
//! keeps: a table per collection, sorted by sourcedId (the order pages are served in unless a
//! request sorts), updated by diffing the district's records before and after a change.

use crate::district::oneroster::entity::Entity;
use crate::district::oneroster::feed::{Class, Course, Enrollment, Feed, Org, Session, User};

/// One served record.
#[derive(Clone, Debug)]
pub(crate) struct Row<T> {
    pub(crate) entity: T,
    /// `tobedeleted`: gone from the district since it was first served.
    pub(crate) deleted: bool,
    /// `dateLastModified`, Unix milliseconds.
    pub(crate) modified_ms: u64,
}

/// One collection's records, sorted by sourcedId, unique.
#[derive(Clone, Debug)]
pub(crate) struct Table<T> {
    pub(crate) rows: Vec<Row<T>>,
}

impl<T> Default for Table<T> {
    fn default() -> Table<T> {
        Table { rows: Vec::new() }
    }
}

impl<T: Entity> Table<T> {
    /// The live (not deleted) record with that sourcedId.
    pub(crate) fn get(&self, id: &str) -> Option<&Row<T>> {
        let i = self.rows.binary_search_by(|r| r.entity.id().cmp(id)).ok()?;
        Some(&self.rows[i]).filter(|r| !r.deleted)
    }
}

impl<T: Entity + PartialEq> Table<T> {
    /// Replaces the records with `records`: unchanged ones keep their stamp, new and changed
    /// ones (and deleted ones that came back) get `now`, and the ones gone become `tobedeleted`
    /// at `now` (or are dropped unless `keep_deleted`). Of records sharing an id, the first
    /// counts.
    pub(crate) fn apply(&mut self, records: Vec<T>, now: u64, keep_deleted: bool) {
        let mut records = records;
        records.sort_by(|a, b| a.id().cmp(b.id()));
        records.dedup_by(|b, a| a.id() == b.id());
        let old = std::mem::take(&mut self.rows);
        let mut old = old.into_iter().peekable();
        let mut rows = Vec::with_capacity(records.len());
        for entity in records {
            // Records gone before this id.
            while let Some(gone) = old.next_if(|r| r.entity.id() < entity.id()) {
                rows.extend(retire(gone, now, keep_deleted));
            }
            match old.next_if(|r| r.entity.id() == entity.id()) {
                Some(same) if !same.deleted && same.entity == entity => rows.push(same),
                _ => rows.push(Row {
                    entity,
                    deleted: false,
                    modified_ms: now,
                }),
            }
        }
        for gone in old {
            rows.extend(retire(gone, now, keep_deleted));
        }
        self.rows = rows;
    }
}

/// A record missing from the district: `tobedeleted` from `now` (already deleted ones keep
/// their stamp), or nothing when deletions are not kept.
fn retire<T>(mut row: Row<T>, now: u64, keep_deleted: bool) -> Option<Row<T>> {
    if !keep_deleted {
        return None;
    }
    if !row.deleted {
        row.deleted = true;
        row.modified_ms = now;
    }
    Some(row)
}

/// Every collection the REST service serves.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) orgs: Table<Org>,
    pub(crate) sessions: Table<Session>,
    pub(crate) courses: Table<Course>,
    pub(crate) classes: Table<Class>,
    pub(crate) users: Table<User>,
    pub(crate) enrollments: Table<Enrollment>,
}

impl Store {
    /// Brings every table to `feed` (see [`Table::apply`]).
    pub(crate) fn apply(&mut self, feed: Feed, now: u64, keep_deleted: bool) {
        self.orgs.apply(feed.orgs, now, keep_deleted);
        self.sessions.apply(feed.sessions, now, keep_deleted);
        self.courses.apply(feed.courses, now, keep_deleted);
        self.classes.apply(feed.classes, now, keep_deleted);
        self.users.apply(feed.users, now, keep_deleted);
        self.enrollments.apply(feed.enrollments, now, keep_deleted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::district::oneroster::feed::OrgType;

    fn org(id: &str, name: &str) -> Org {
        Org {
            id: id.into(),
            name: name.into(),
            kind: OrgType::School,
            identifier: String::new(),
            parent: None,
            children: Vec::new(),
        }
    }

    fn state(t: &Table<Org>) -> Vec<(&str, bool, u64)> {
        t.rows
            .iter()
            .map(|r| (r.entity.id.as_str(), r.deleted, r.modified_ms))
            .collect()
    }

    #[test]
    fn updates_stamp_changes_and_keep_deletions() {
        let mut t = Table::default();
        t.apply(vec![org("b", "B"), org("a", "A"), org("a", "dup")], 1, true);
        assert_eq!(state(&t), [("a", false, 1), ("b", false, 1)]);
        assert_eq!(t.get("a").map(|r| r.entity.name.as_str()), Some("A"));

        t.apply(vec![org("a", "A"), org("c", "C")], 2, true);
        assert_eq!(
            state(&t),
            [("a", false, 1), ("b", true, 2), ("c", false, 2)]
        );
        assert!(t.get("b").is_none(), "deleted rows are not found by id");

        t.apply(vec![org("a", "A2"), org("c", "C")], 3, true);
        assert_eq!(
            state(&t),
            [("a", false, 3), ("b", true, 2), ("c", false, 2)]
        );

        t.apply(vec![org("b", "B")], 4, true);
        assert_eq!(state(&t), [("a", true, 4), ("b", false, 4), ("c", true, 4)]);

        t.apply(vec![org("b", "B")], 5, false);
        assert_eq!(state(&t), [("b", false, 4)]);
    }
}
