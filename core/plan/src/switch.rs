//! A district that moves to another source (from Clever to OneRoster, or back) keeps its rows:
//! the records of the new source have new ids, so each live row of the old source is matched
//! to the new record with the same SIS id, within the district and the entity, and takes the
//! new id. The row, its history, its memberships' rows and its growth data stay as they are.
//!
//! Only a SIS id held by exactly one live row and exactly one new record matches; duplicates
//! are listed, never guessed. Rows no record matched are archived by the plan like any record
//! that left; records no row matched are created. Terms and courses carry no SIS id: they are
//! created anew and the old ones archived. A plan that switches sources is always held, so an
//! admin reviews the matches (a dry run lists every one) before approving them.

use std::collections::HashMap;
use std::fmt;

use rosterflow_model::{Entity, Id, Snapshot, SourceKind};

use crate::state::State;

/// The entities matched by SIS id.
pub const MATCHED: [Entity; 4] = [
    Entity::School,
    Entity::Teacher,
    Entity::Student,
    Entity::Class,
];

/// A live, sync-managed row with a SIS id, as the store reads it for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SisRow {
    pub entity: Entity,
    pub row: i64,
    pub key: Id,
    pub sis_id: String,
}

/// A row that takes a record of the new source: its key changes from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub entity: Entity,
    pub row: i64,
    pub from: Id,
    pub to: Id,
    pub sis_id: String,
}

/// What could not be matched, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    pub entity: Entity,
    /// The row's key (old source) or the record's id (new source).
    pub id: Id,
    pub sis_id: Option<String>,
    pub why: UnmatchedWhy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmatchedWhy {
    /// A row of the old source whose SIS id no new record has: archived unless it returns.
    NotInNewSource,
    /// A record of the new source whose SIS id no row has: created.
    New,
    /// The SIS id is held by several rows or several records: never matched.
    Duplicate,
    /// No SIS id to match by.
    NoSisId,
}

/// The change of a district's source, as matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSwitch {
    pub from: SourceKind,
    pub to: SourceKind,
    pub matches: Vec<Match>,
    pub unmatched: Vec<Unmatched>,
}

impl SourceSwitch {
    /// Matches the live rows `rows` of the district (read from the DB, of source `from`) to the
    /// records of `snapshot` by SIS id. A record whose id already keys a row of the state is that
    /// row already: neither is matched nor listed.
    pub fn match_by_sis_id(
        snapshot: &Snapshot,
        state: &State,
        from: SourceKind,
        rows: &[SisRow],
    ) -> SourceSwitch {
        let mut switch = SourceSwitch {
            from,
            to: snapshot.district.source,
            matches: Vec::new(),
            unmatched: Vec::new(),
        };
        for entity in MATCHED {
            let records = records_of(snapshot, entity);
            let table = state.table(entity);
            let ids: std::collections::HashSet<&str> =
                records.iter().map(|(id, _)| id.as_str()).collect();
            let mut old: HashMap<&str, Vec<&SisRow>> = HashMap::new();
            for row in rows
                .iter()
                .filter(|r| r.entity == entity && !ids.contains(r.key.as_str()))
            {
                old.entry(row.sis_id.as_str()).or_default().push(row);
            }
            let mut new: HashMap<&str, Vec<&Id>> = HashMap::new();
            for (id, sis_id) in &records {
                if table.row_id(id).is_some() {
                    continue;
                }
                match sis_id {
                    Some(sis_id) => new.entry(sis_id).or_default().push(id),
                    None => switch.unmatched.push(Unmatched {
                        entity,
                        id: (*id).clone(),
                        sis_id: None,
                        why: UnmatchedWhy::NoSisId,
                    }),
                }
            }
            for (sis_id, rows) in &old {
                match (rows.as_slice(), new.get(sis_id).map(Vec::as_slice)) {
                    ([row], Some([id])) => switch.matches.push(Match {
                        entity,
                        row: row.row,
                        from: row.key.clone(),
                        to: (*id).clone(),
                        sis_id: (*sis_id).to_owned(),
                    }),
                    (rows, records) => {
                        let why = if rows.len() > 1 || records.is_some_and(|r| r.len() > 1) {
                            UnmatchedWhy::Duplicate
                        } else {
                            UnmatchedWhy::NotInNewSource
                        };
                        switch.unmatched.extend(rows.iter().map(|row| Unmatched {
                            entity,
                            id: row.key.clone(),
                            sis_id: Some(row.sis_id.clone()),
                            why,
                        }));
                    }
                }
            }
            for (sis_id, ids) in &new {
                let why = match old.get(sis_id).map(Vec::len) {
                    Some(1) if ids.len() == 1 => continue,
                    Some(_) => UnmatchedWhy::Duplicate,
                    None if ids.len() > 1 => UnmatchedWhy::Duplicate,
                    None => UnmatchedWhy::New,
                };
                switch.unmatched.extend(ids.iter().map(|id| Unmatched {
                    entity,
                    id: (*id).clone(),
                    sis_id: Some((*sis_id).to_owned()),
                    why,
                }));
            }
        }
        switch.matches.sort_by_key(|m| (m.entity, m.row));
        switch
            .unmatched
            .sort_by(|a, b| (a.entity, a.why as u8, &a.id).cmp(&(b.entity, b.why as u8, &b.id)));
        switch
    }

    /// Matches of `entity`.
    pub fn matched(&self, entity: Entity) -> usize {
        self.matches.iter().filter(|m| m.entity == entity).count()
    }

    fn count(&self, entity: Entity, why: UnmatchedWhy) -> usize {
        self.unmatched
            .iter()
            .filter(|u| u.entity == entity && u.why == why)
            .count()
    }

    /// The reason a plan that switches sources is held: one line, in numbers.
    pub fn hold_reason(&self) -> String {
        let parts: Vec<String> = MATCHED
            .iter()
            .map(|&entity| {
                format!(
                    "{entity}: {} matched, {} left, {} new, {} with a duplicate SIS id",
                    self.matched(entity),
                    self.count(entity, UnmatchedWhy::NotInNewSource),
                    self.count(entity, UnmatchedWhy::New)
                        + self.count(entity, UnmatchedWhy::NoSisId),
                    self.count(entity, UnmatchedWhy::Duplicate),
                )
            })
            .collect();
        format!(
            "the district's source changes from {} to {}: records matched by SIS id ({}); see the dry run for every match",
            self.from,
            self.to,
            parts.join("; ")
        )
    }
}

/// Every match and every record that could not be matched, one per line.
impl fmt::Display for SourceSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "source change: {} to {}", self.from, self.to)?;
        for m in &self.matches {
            writeln!(
                f,
                "  matched    {} {} -> {} (SIS id {})",
                m.entity, m.from, m.to, m.sis_id
            )?;
        }
        for u in &self.unmatched {
            let why = match u.why {
                UnmatchedWhy::NotInNewSource => "not in the new source: archived",
                UnmatchedWhy::New => "new: created",
                UnmatchedWhy::Duplicate => "duplicate SIS id: not matched",
                UnmatchedWhy::NoSisId => "no SIS id: created",
            };
            let sis = u.sis_id.as_deref().unwrap_or("-");
            writeln!(
                f,
                "  unmatched  {} {} (SIS id {sis}): {why}",
                u.entity, u.id
            )?;
        }
        Ok(())
    }
}

/// The ids and SIS ids of the snapshot's records of `entity`.
fn records_of(snapshot: &Snapshot, entity: Entity) -> Vec<(&Id, Option<&str>)> {
    match entity {
        Entity::School => snapshot
            .schools
            .iter()
            .map(|r| (&r.id, r.sis_id.as_deref()))
            .collect(),
        Entity::Teacher => snapshot
            .teachers
            .iter()
            .map(|r| (&r.id, r.sis_id.as_deref()))
            .collect(),
        Entity::Student => snapshot
            .students
            .iter()
            .map(|r| (&r.id, r.sis_id.as_deref()))
            .collect(),
        Entity::Class => snapshot
            .sections
            .iter()
            .map(|r| (&r.id, r.sis_id.as_deref()))
            .collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .map(|(id, sis)| (id, sis.filter(|s| !s.trim().is_empty())))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::loaded;
    use rosterflow_model::{District, Student};

    fn student(id: &str, sis: Option<&str>) -> Student {
        Student {
            id: id.into(),
            sis_id: sis.map(str::to_owned),
            ..Student::default()
        }
    }

    fn row(row: i64, key: &str, sis: &str) -> SisRow {
        SisRow {
            entity: Entity::Student,
            row,
            key: key.into(),
            sis_id: sis.into(),
        }
    }

    #[test]
    fn unique_sis_ids_match_and_duplicates_never_do() {
        let snapshot = Snapshot {
            district: District {
                source: SourceKind::OneRoster,
                ..District::default()
            },
            students: vec![
                student("or-1", Some("1001")),
                student("or-2", Some("1002")),
                student("or-3", Some("1003")),
                student("or-4", Some("1003")),
                student("or-5", None),
                student("or-6", Some("2000")),
            ],
            ..Snapshot::default()
        };
        let rows = [
            row(10, "c10", "1001"),
            row(11, "c11", "1002"),
            row(12, "c12", "1002"),
            row(13, "c13", "1003"),
            row(14, "c14", "9999"),
        ];
        let switch =
            SourceSwitch::match_by_sis_id(&snapshot, &State::default(), SourceKind::Clever, &rows);
        assert_eq!(
            switch.matches,
            [Match {
                entity: Entity::Student,
                row: 10,
                from: "c10".into(),
                to: "or-1".into(),
                sis_id: "1001".into(),
            }]
        );
        let listed = |why| {
            let mut ids: Vec<&str> = switch
                .unmatched
                .iter()
                .filter(|u| u.why == why)
                .map(|u| u.id.as_str())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(
            listed(UnmatchedWhy::Duplicate),
            ["c11", "c12", "c13", "or-2", "or-3", "or-4"]
        );
        assert_eq!(listed(UnmatchedWhy::NotInNewSource), ["c14"]);
        assert_eq!(listed(UnmatchedWhy::New), ["or-6"]);
        assert_eq!(listed(UnmatchedWhy::NoSisId), ["or-5"]);
        assert!(
            switch
                .hold_reason()
                .contains("student: 1 matched, 1 left, 2 new, 6 with a duplicate SIS id"),
            "{}",
            switch.hold_reason()
        );
        assert!(
            switch
                .to_string()
                .contains("matched    student c10 -> or-1 (SIS id 1001)")
        );
    }

    #[test]
    fn a_record_whose_id_already_has_a_row_is_not_matched_again() {
        let snapshot = Snapshot {
            students: vec![student("same", Some("1001"))],
            ..Snapshot::default()
        };
        let state = loaded(&snapshot);
        let rows = [row(1, "same", "1001")];
        let switch = SourceSwitch::match_by_sis_id(&snapshot, &state, SourceKind::Clever, &rows);
        assert!(switch.matches.is_empty());
        assert!(switch.unmatched.is_empty(), "{switch}");
    }
}
