//! The Freckle DB on SQLite, through rusqlite connections of the store's own (the same bundled
//! SQLite as sqlx): prepared statements reused across a run's rows in one `IMMEDIATE`
//! transaction, at a fraction of the per-row cost of a pooled async driver.
//!
//! The district's run lock is an exclusive `flock` on `<db file>.<district>.lock`: the kernel
//! releases it when its process dies, so a killed run never leaves it behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior, params};

use super::schema::{
    ENTITIES, Kind, Lookups, MEMBERSHIPS, Record, TableVisitor, Value, layout, visit_tables,
};
use super::state::{
    Cell, Existing, MembershipState, OpenDecision, Role, State, TableState, fingerprint,
};
use super::{
    RowIds, RunOutcome, RunRecord, StoreError, counts_json, rekey_sql, school_year_date,
    sis_rows_sql, skipped_json, source_kind, waiting_for_lock,
};
use crate::apply::{Step, fence, program};
use crate::db::{sqlite_file, timestamp};
use crate::runs::sql;
use rosterflow_model::school_year::SchoolYear;
use rosterflow_model::{DecisionAction, Entity, Id};
use rosterflow_plan::switch::{MATCHED, SisRow};
use rosterflow_plan::{Plan, RecordAction, member_entity};

/// How long a write waits for another writer (the Freckle app, another district's run).
const BUSY_TIMEOUT: Duration = Duration::from_secs(300);

type Result<T> = std::result::Result<T, StoreError>;

pub(super) struct SqliteStore {
    connection: Connection,
    path: PathBuf,
    district: String,
    _lock: File,
}

/// Reads a district's state on a read-only connection of its own.
pub(super) struct Reader {
    path: PathBuf,
    district: String,
}

impl SqliteStore {
    pub fn lock(url: &url::Url, district: &str, wait: Duration) -> Result<SqliteStore> {
        let path = sqlite_file(url).ok_or(StoreError::InMemory)?;
        let lock_path = PathBuf::from(format!("{}.{district}.lock", path.display()));
        let lock_error = |source| StoreError::Lock {
            path: lock_path.clone(),
            source,
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(lock_error)?;
        let started = Instant::now();
        let mut waiting = false;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if started.elapsed() < wait => {
                    if !std::mem::replace(&mut waiting, true) {
                        waiting_for_lock(district, wait);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::Busy {
                        district: district.to_owned(),
                        waited_secs: started.elapsed().as_secs(),
                    });
                }
                Err(TryLockError::Error(source)) => return Err(lock_error(source)),
            }
        }
        // A database opened read-only (`?mode=ro`) stays so: a run that would write fails.
        let read_only = url.query_pairs().any(|(k, v)| k == "mode" && v == "ro");
        let flags = match read_only {
            true => OpenFlags::SQLITE_OPEN_READ_ONLY,
            false => OpenFlags::SQLITE_OPEN_READ_WRITE,
        };
        let connection = open(&path, flags)?;
        // A large first load inserts into indexes out of order: keep them in memory.
        connection
            .execute_batch("PRAGMA cache_size = -131072;")
            .map_err(StoreError::sqlite("opening the database"))?;
        Ok(SqliteStore {
            connection,
            path,
            district: district.to_owned(),
            _lock: lock,
        })
    }

    pub fn reader(&self) -> Reader {
        Reader {
            path: self.path.clone(),
            district: self.district.clone(),
        }
    }

    pub fn apply(&mut self, plan: &Plan<'_>, run: RunRecord<'_>) -> Result<RunOutcome> {
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting the run"))?;
        let now = timestamp(Utc::now());
        let mut writer = Writer {
            tx: &tx,
            plan,
            // Set by the `District` and `Run` steps, which come before any write.
            run_id: 0,
            district: 0,
            now: &now,
            lookups: Lookups::new(plan.snapshot),
            rows: RowIds::new(plan),
        };
        for step in program(plan) {
            match step {
                Step::District => writer.district = ensure_district(&tx, plan, &now)?,
                Step::Fence => fence(plan, last_committed_run(&tx, writer.district)?)?,
                Step::Run => writer.run_id = record_run(&tx, plan, run, writer.district, &now)?,
                Step::DistrictMadeBy => {
                    tx.execute(
                        sql::DISTRICT_MADE_BY,
                        params![writer.run_id, writer.district],
                    )
                    .map_err(StoreError::sqlite("recording the new district"))?;
                }
                Step::Rekey => writer.rekey()?,
                Step::Tables => visit_tables(plan.snapshot, &mut writer)?,
                Step::Memberships => writer.memberships()?,
                Step::ChangeLog => writer.change_log()?,
                Step::Accounts => writer.accounts()?,
                Step::Decisions => writer.decisions()?,
                Step::Quarantine => writer.quarantine()?,
                Step::Finish => {
                    tx.execute(sql::FINISH, params![timestamp(Utc::now()), writer.run_id])
                        .map_err(StoreError::sqlite("finishing the run"))?;
                }
            }
        }
        let run_id = writer.run_id;
        drop(writer);
        tx.commit()
            .map_err(StoreError::sqlite("committing the run"))?;
        Ok(RunOutcome {
            run_id,
            changes: plan.change_count(),
            quarantined: plan.snapshot.quarantine.len(),
        })
    }
}

impl Reader {
    pub fn new(url: &url::Url, district: &str) -> Result<Reader> {
        Ok(Reader {
            path: sqlite_file(url).ok_or(StoreError::InMemory)?,
            district: district.to_owned(),
        })
    }

    pub fn read_state(self) -> Result<State> {
        let mut connection = open(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        // One read transaction: every table as of one moment.
        let tx = connection
            .transaction()
            .map_err(StoreError::sqlite("starting to read the district"))?;
        let district: Option<(i64, String)> = tx
            .query_row(sql::DISTRICT_SOURCE, [&self.district], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map(Some)
            .or_else(none_if_no_rows)
            .map_err(StoreError::sqlite("reading the district"))?;
        let mut state = State {
            district: district.as_ref().map(|(id, _)| *id),
            source: district.as_ref().and_then(|(_, kind)| source_kind(kind)),
            ..State::default()
        };
        let district = district.map(|(id, _)| id);
        let Some(district) = district else {
            return Ok(state);
        };
        state.last_run = last_committed_run(&tx, district)?;
        for entity in ENTITIES {
            state
                .tables
                .insert(entity, read_table(&tx, entity, district)?);
        }
        for table in MEMBERSHIPS {
            let role = if table.entity == Entity::ClassTeacher {
                "m.role"
            } else {
                "NULL"
            };
            let sql = format!(
                "SELECT m.class_id, m.{member}, m.source, {role} FROM {name} m \
                 JOIN classes c ON c.id = m.class_id \
                 WHERE c.district_id = ?1 AND m.ended_at IS NULL \
                 AND (m.source = 'sis' OR m.source LIKE 'plugin:%') \
                 ORDER BY m.class_id, m.{member}",
                member = table.member_column,
                name = table.name,
            );
            let step = || format!("reading {}", table.name);
            let mut statement = tx.prepare(&sql).map_err(StoreError::sqlite(step()))?;
            let mut rows = statement
                .query([district])
                .map_err(StoreError::sqlite(step()))?;
            let mut open = MembershipState::default();
            while let Some(row) = rows.next().map_err(StoreError::sqlite(step()))? {
                let read = || -> rusqlite::Result<(i64, i64, String, Option<String>)> {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                };
                let (class, member, source, role) = read().map_err(StoreError::sqlite(step()))?;
                open.push(class, member, Role::from_db(role.as_deref()), &source)?;
            }
            state.memberships.insert(table.entity, open);
        }
        let mut statement = tx
            .prepare(
                "SELECT id, entity, source_id, action, author, detail FROM sync_decisions \
                 WHERE district_id = ?1 AND ended_run IS NULL ORDER BY id",
            )
            .map_err(StoreError::sqlite("reading decisions"))?;
        let decisions = statement
            .query_map([district], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .map_err(StoreError::sqlite("reading decisions"))?;
        for decision in decisions {
            let (row, entity, key, action, author, detail) =
                decision.map_err(StoreError::sqlite("reading decisions"))?;
            // Rows an older version wrote in another form are simply not in force.
            if let (Some(entity), Some(action)) =
                (Entity::parse(&entity), DecisionAction::parse(&action))
            {
                state.decisions.push(OpenDecision {
                    row,
                    entity,
                    key: key.into(),
                    action,
                    author,
                    detail,
                });
            }
        }
        Ok(state)
    }
}

impl Reader {
    pub fn read_sis_rows(self) -> Result<Vec<SisRow>> {
        let connection = open(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let step = || "reading SIS ids to match".to_owned();
        let district: Option<i64> = connection
            .query_row(sql::DISTRICT_ID, [&self.district], |row| row.get(0))
            .map(Some)
            .or_else(none_if_no_rows)
            .map_err(StoreError::sqlite(step()))?;
        let mut rows = Vec::new();
        let Some(district) = district else {
            return Ok(rows);
        };
        for entity in MATCHED {
            let mut statement = connection
                .prepare(&sis_rows_sql(entity))
                .map_err(StoreError::sqlite(step()))?;
            let read = statement
                .query_map([district], |row| {
                    Ok(SisRow {
                        entity,
                        row: row.get(0)?,
                        key: Id::from(row.get::<_, String>(1)?),
                        sis_id: row.get(2)?,
                    })
                })
                .map_err(StoreError::sqlite(step()))?;
            for row in read {
                rows.push(row.map_err(StoreError::sqlite(step()))?);
            }
        }
        Ok(rows)
    }
}

/// The district's rows of one synced table, with their columns' fingerprints.
fn read_table(tx: &Transaction<'_>, entity: Entity, district: i64) -> Result<TableState> {
    let layout = layout(entity);
    let columns: Vec<&str> = layout.columns.iter().map(|(name, _)| *name).collect();
    let school = match entity {
        Entity::School => "id",
        _ if columns.contains(&"school_id") => "school_id",
        _ => "NULL",
    };
    let (archived, scope) = if layout.in_district {
        ("archived_at IS NOT NULL", "district_id = ?1")
    } else {
        ("0", "id = ?1")
    };
    // Manual classes and teachers belong to Freckle users, not to the sync.
    let managed = if matches!(entity, Entity::Class | Entity::Teacher) {
        " AND managed_by = 'sis'"
    } else {
        ""
    };
    let sql = format!(
        "SELECT id, {key}, {archived}, {school}, {year}, {} FROM {} \
         WHERE {scope} AND {key} IS NOT NULL{managed} ORDER BY id",
        columns.join(", "),
        layout.name,
        key = layout.key_column,
        year = school_year_date(entity),
    );
    let step = || format!("reading {}", layout.name);
    let mut statement = tx.prepare(&sql).map_err(StoreError::sqlite(step()))?;
    let mut rows = statement
        .query([district])
        .map_err(StoreError::sqlite(step()))?;
    let mut table = TableState::new(layout.columns.len());
    while let Some(row) = rows.next().map_err(StoreError::sqlite(step()))? {
        let read = || -> rusqlite::Result<(String, Existing)> {
            let year: Option<String> = row.get(4)?;
            let existing = Existing {
                id: row.get(0)?,
                archived: row.get(2)?,
                school: row.get(3)?,
                year: year.as_deref().and_then(SchoolYear::of_date),
            };
            Ok((row.get(1)?, existing))
        };
        let (key, existing) = read().map_err(StoreError::sqlite(step()))?;
        let mut fingerprints = Vec::with_capacity(layout.columns.len());
        for (index, (_, kind)) in layout.columns.iter().enumerate() {
            let value = row.get_ref(index + 5).map_err(StoreError::sqlite(step()))?;
            fingerprints.push(fingerprint(stored_cell(value, *kind)));
        }
        table.push(key.into(), existing, fingerprints)?;
    }
    Ok(table)
}

/// A stored value as the planner compares it.
fn stored_cell(value: ValueRef<'_>, kind: Kind) -> Cell<'_> {
    match (value, kind) {
        (ValueRef::Null, _) => Cell::Null,
        (ValueRef::Integer(flag), Kind::Flag) => Cell::Flag(flag != 0),
        (ValueRef::Integer(id), Kind::Ref(_)) => Cell::Row(id),
        (ValueRef::Text(text), _) => Cell::Text(std::str::from_utf8(text).unwrap_or_default()),
        // A value of a type the sync never writes: it differs from anything the roster wants.
        _ => Cell::Pending,
    }
}

fn none_if_no_rows<T>(error: rusqlite::Error) -> rusqlite::Result<Option<T>> {
    match error {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        other => Err(other),
    }
}

fn last_committed_run(connection: &Connection, district: i64) -> Result<Option<i64>> {
    connection
        .query_row(sql::LAST_COMMITTED_RUN, [district], |row| row.get(0))
        .map_err(StoreError::sqlite("reading run history"))
}

/// The district's row id, creating the row on its first run.
fn ensure_district(tx: &Transaction<'_>, plan: &Plan<'_>, now: &str) -> Result<i64> {
    let district = &plan.snapshot.district;
    tx.execute(
        sql::ENSURE_DISTRICT,
        params![
            district.id.as_str(),
            district.name,
            district.source.as_str(),
            district.source_id.as_str(),
            now
        ],
    )
    .map_err(StoreError::sqlite("creating the district"))?;
    tx.query_row(sql::DISTRICT_ID, [district.id.as_str()], |row| row.get(0))
        .map_err(StoreError::sqlite("reading the district"))
}

fn record_run(
    tx: &Transaction<'_>,
    plan: &Plan<'_>,
    run: RunRecord<'_>,
    district: i64,
    now: &str,
) -> Result<i64> {
    match run {
        RunRecord::New { start, source } => {
            let run: i64 = tx
                .query_row(
                    sql::INSERT_COMMITTED,
                    params![
                        district,
                        start.pipeline,
                        timestamp(start.started_at),
                        now,
                        plan.change_count() as i64,
                        plan.snapshot.quarantine.len() as i64,
                        counts_json(plan),
                        source.kind,
                        source.checkpoint.and_then(|c| c.cursor),
                        source.note,
                        skipped_json(plan),
                        start.scheduled_for.map(timestamp),
                        start.requested_by,
                    ],
                    |row| row.get(0),
                )
                .map_err(StoreError::sqlite("recording the run"))?;
            if let Some(checkpoint) = source.checkpoint {
                tx.execute(
                    sql::SAVE_CHECKPOINT,
                    params![
                        district,
                        run,
                        checkpoint.cursor,
                        checkpoint.roster,
                        timestamp(checkpoint.full_sync_at),
                        timestamp(checkpoint.saved_at),
                    ],
                )
                .map_err(StoreError::sqlite("saving the events checkpoint"))?;
            }
            Ok(run)
        }
        RunRecord::Approve { run, by } => {
            let approved = tx
                .execute(sql::APPROVE_HELD, params![now, by, run])
                .map_err(StoreError::sqlite("approving the run"))?;
            if approved != 1 {
                let status: Option<String> = tx
                    .query_row(sql::STATUS, [run], |row| row.get(0))
                    .map(Some)
                    .or_else(none_if_no_rows)
                    .map_err(StoreError::sqlite("approving the run"))?;
                return Err(StoreError::NotHeld {
                    run,
                    status: status.unwrap_or_else(|| "missing".to_owned()),
                    action: "approved",
                });
            }
            tx.execute(sql::ADOPT_HELD_CHECKPOINT, params![district, run])
                .and_then(|_| tx.execute(sql::FORGET_HELD_CHECKPOINT, [run]))
                .map_err(StoreError::sqlite("moving the held run's checkpoint"))?;
            Ok(run)
        }
    }
}

/// Writes one plan inside its transaction.
struct Writer<'t, 'a> {
    tx: &'t Transaction<'t>,
    plan: &'t Plan<'a>,
    run_id: i64,
    district: i64,
    now: &'t str,
    lookups: Lookups<'a>,
    /// Row ids of the snapshot's records, per entity, by position: the state's rows, then the
    /// ones this run creates.
    rows: RowIds,
}

impl<'a> TableVisitor<'a> for Writer<'_, 'a> {
    type Error = StoreError;

    fn visit<R: Record>(&mut self, records: &'a [R]) -> Result<()> {
        let table = &R::TABLE;
        tracing::info!(target: rosterflow_model::PROGRESS, "writing {}", table.name);
        let entity = table.entity;
        let mut rows = RowIds::existing(self.plan.state, records);
        let step = |what: &str| format!("writing {what} {}", table.name);
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        let n = columns.len();
        let changes = self
            .plan
            .records
            .iter()
            .filter(|change| change.entity == entity);

        // The district's own row is created with the run (see `ensure_district`).
        let mut create = table
            .in_district
            .then(|| {
                self.tx.prepare_cached(&format!(
                    "INSERT INTO {} ({}, source_id, created_at, updated_at, district_id, created_run) \
                     VALUES ({}, ?{}, ?{}, ?{}, ?{}, ?{})",
                    table.name,
                    columns.join(", "),
                    placeholders(1..=n),
                    n + 1,
                    n + 2,
                    n + 2,
                    n + 3,
                    n + 4
                ))
            })
            .transpose()
            .map_err(StoreError::sqlite(step("new rows into")))?;
        let assignments: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name} = ?{}", i + 1))
            .collect();
        let (restore, only_active, only_archived) = if table.in_district {
            (
                ", archived_at = NULL, archived_reason = NULL",
                " AND archived_at IS NULL",
                " AND archived_at IS NOT NULL",
            )
        } else {
            ("", "", "")
        };
        let mut update = self
            .tx
            .prepare_cached(&format!(
                "UPDATE {} SET {}, updated_at = ?{} WHERE id = ?{}{only_active}",
                table.name,
                assignments.join(", "),
                n + 1,
                n + 2
            ))
            .map_err(StoreError::sqlite(step("updates to")))?;
        let mut restore = self
            .tx
            .prepare_cached(&format!(
                "UPDATE {} SET {}, updated_at = ?{}{restore} WHERE id = ?{}{only_archived}",
                table.name,
                assignments.join(", "),
                n + 1,
                n + 2
            ))
            .map_err(StoreError::sqlite(step("restores to")))?;

        for change in changes {
            let position = change.index as usize;
            match change.action {
                RecordAction::Create => {
                    let Some(create) = create.as_mut() else {
                        continue;
                    };
                    let record = &records[position];
                    self.bind_values(create, record)?;
                    bind_all(
                        create,
                        n + 1,
                        params![record.key(), self.now, self.district, self.run_id],
                    )?;
                    create.raw_execute().map_err(|source| {
                        taken_or(source, entity, record.key(), step("new rows into"))
                    })?;
                    rows[position] = Some(self.tx.last_insert_rowid());
                }
                RecordAction::Update | RecordAction::Restore => {
                    let record = &records[position];
                    let row = change.row.expect("updates name their row");
                    let statement = if change.action == RecordAction::Update {
                        &mut update
                    } else {
                        &mut restore
                    };
                    self.bind_values(statement, record)?;
                    bind_all(statement, n + 1, params![self.now, row])?;
                    let updated = statement
                        .raw_execute()
                        .map_err(StoreError::sqlite(step("updates to")))?;
                    if updated != 1 {
                        return Err(changed(entity, updated));
                    }
                }
                RecordAction::Archive => {
                    let row = change.row.expect("archives name their row");
                    let reason = change.reason();
                    let archived = self
                        .tx
                        .prepare_cached(&format!(
                            "UPDATE {} SET archived_at = ?1, archived_reason = ?2, updated_at = ?1 \
                             WHERE id = ?3 AND archived_at IS NULL",
                            table.name
                        ))
                        .and_then(|mut archive| {
                            archive.execute(params![self.now, reason.as_ref(), row])
                        })
                        .map_err(StoreError::sqlite(step("archives in")))?;
                    if archived != 1 {
                        return Err(changed(entity, archived));
                    }
                }
            }
        }
        self.rows.insert(entity, rows);
        Ok(())
    }
}

impl<'a> Writer<'_, 'a> {
    /// Binds a record's synced columns to parameters 1..=n.
    fn bind_values<R: Record>(
        &self,
        statement: &mut rusqlite::CachedStatement<'_>,
        record: &'a R,
    ) -> Result<()> {
        for (index, column) in R::TABLE.columns.iter().enumerate() {
            let slot = index + 1;
            let result = match (column.value)(record, &self.lookups) {
                Value::Text(text) => statement.raw_bind_parameter(slot, text.as_deref()),
                Value::Flag(flag) => statement.raw_bind_parameter(slot, flag),
                Value::Ref(key) => {
                    let Kind::Ref(to) = column.kind else {
                        unreachable!("reference values come from reference columns")
                    };
                    statement.raw_bind_parameter(
                        slot,
                        key.and_then(|key| self.rows.of_key(self.plan, to, key)),
                    )
                }
            };
            result.map_err(|source| StoreError::Sqlite {
                step: format!("binding a row of {}", R::TABLE.name),
                source,
            })?;
        }
        Ok(())
    }

    fn memberships(&mut self) -> Result<()> {
        let plan = self.plan;
        for table in MEMBERSHIPS {
            let step = |what: &str| format!("writing {what} of {}", table.name);
            let (role_column, role_value) = if table.entity == Entity::ClassTeacher {
                (", role", ", ?6")
            } else {
                ("", "")
            };
            let mut start = self
                .tx
                .prepare_cached(&format!(
                    "INSERT INTO {} (class_id, {}, source, started_at, started_run{role_column}) \
                     VALUES (?1, ?2, ?3, ?4, ?5{role_value})",
                    table.name, table.member_column
                ))
                .map_err(StoreError::sqlite(step("starts")))?;
            let member = member_entity(table.entity);
            let starts = plan.starts.iter().filter(|s| s.entity == table.entity);
            for (written, change) in starts.enumerate() {
                if written % 1_000_000 == 0 {
                    tracing::info!(target: rosterflow_model::PROGRESS, "writing {}: {written} new", table.name);
                }
                let source = plan.source_of(table.entity, change.class, change.member);
                let class_row = self.rows.at(Entity::Class, change.class);
                let member_row = self.rows.at(member, change.member);
                let (Some(class_row), Some(member_row)) = (class_row, member_row) else {
                    return Err(StoreError::Missing {
                        entity: table.entity,
                    });
                };
                bind_all(
                    &mut start,
                    1,
                    params![
                        class_row,
                        member_row,
                        source.as_ref(),
                        self.now,
                        self.run_id
                    ],
                )?;
                if let Some(role) = change.role.as_db() {
                    bind_all(&mut start, 6, params![role])?;
                }
                start
                    .raw_execute()
                    .map_err(StoreError::sqlite(step("starts")))?;
            }

            let mut end = self
                .tx
                .prepare_cached(&format!(
                    "UPDATE {} SET ended_at = ?1, ended_reason = ?2, ended_by = ?3, ended_run = ?4 \
                     WHERE class_id = ?5 AND {} = ?6 AND ended_at IS NULL",
                    table.name, table.member_column
                ))
                .map_err(StoreError::sqlite(step("ends")))?;
            for change in plan.ends.iter().filter(|e| e.entity == table.entity) {
                let ended = end
                    .execute(params![
                        self.now,
                        change.reason.text(),
                        change.reason.author(),
                        self.run_id,
                        change.class_row,
                        change.member_row
                    ])
                    .map_err(StoreError::sqlite(step("ends")))?;
                if ended != 1 {
                    return Err(changed(table.entity, ended));
                }
            }

            let role_assignment = if table.entity == Entity::ClassTeacher {
                ", role = ?4"
            } else {
                ""
            };
            let mut retag = self
                .tx
                .prepare_cached(&format!(
                    "UPDATE {} SET source = ?1{role_assignment} \
                     WHERE class_id = ?2 AND {} = ?3 AND ended_at IS NULL",
                    table.name, table.member_column
                ))
                .map_err(StoreError::sqlite(step("role changes")))?;
            for change in plan.retags.iter().filter(|r| r.entity == table.entity) {
                let source = plan.source_of(table.entity, change.class, change.member);
                bind_all(
                    &mut retag,
                    1,
                    params![source.as_ref(), change.class_row, change.member_row],
                )?;
                if let Some(role) = change.role.as_db() {
                    bind_all(&mut retag, 4, params![role])?;
                }
                let updated = retag
                    .raw_execute()
                    .map_err(StoreError::sqlite(step("role changes")))?;
                if updated != 1 {
                    return Err(changed(table.entity, updated));
                }
            }
        }
        Ok(())
    }

    /// Rows matched to the records of the district's new source take their new keys. No new key
    /// is any row's key (the matcher leaves such records to the row they already have).
    fn rekey(&self) -> Result<()> {
        let matches = self.plan.state.switch.iter().flat_map(|s| &s.matches);
        for m in matches {
            let written = self
                .tx
                .prepare_cached(&rekey_sql(m.entity))
                .and_then(|mut update| update.execute(params![m.to.as_str(), m.row]))
                .map_err(StoreError::sqlite("giving matched rows their new keys"))?;
            if written != 1 {
                return Err(changed(m.entity, written));
            }
        }
        Ok(())
    }

    /// What rows cannot say for themselves: updates, restores, archives and role changes.
    fn change_log(&self) -> Result<()> {
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO sync_changes (run_id, entity, source_id, member_id, action, reason, author, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(StoreError::sqlite("recording changes"))?;
        let rows = self
            .plan
            .record_rows()
            .filter(|row| row.action != RecordAction::Create.as_str())
            .chain(self.plan.retag_rows())
            .chain(self.plan.switch_rows());
        for row in rows {
            insert
                .execute(params![
                    self.run_id,
                    row.entity.as_str(),
                    row.key,
                    row.member,
                    row.action,
                    row.reason.as_ref(),
                    row.author.as_ref(),
                    row.detail
                ])
                .map_err(StoreError::sqlite("recording changes"))?;
        }
        Ok(())
    }

    /// An account and one queued welcome email for each new teacher.
    fn accounts(&self) -> Result<()> {
        let mut account = self
            .tx
            .prepare_cached(
                "INSERT INTO teacher_accounts (teacher_id, login_state, created_at) VALUES (?1, 'invited', ?2) \
                 ON CONFLICT (teacher_id) DO NOTHING",
            )
            .map_err(StoreError::sqlite("creating teacher accounts"))?;
        let mut email = self
            .tx
            .prepare_cached(
                "INSERT INTO email_outbox (district_id, run_id, kind, teacher_id, recipient, status, created_at) \
                 SELECT ?1, ?2, 'welcome', t.id, t.email, 'pending', ?3 FROM teachers t WHERE t.id = ?4 \
                 ON CONFLICT (kind, teacher_id) DO NOTHING",
            )
            .map_err(StoreError::sqlite("queueing welcome emails"))?;
        for &teacher in &self.plan.new_accounts {
            let row = self
                .rows
                .at(Entity::Teacher, teacher)
                .ok_or(StoreError::Missing {
                    entity: Entity::Teacher,
                })?;
            account
                .execute(params![row, self.now])
                .map_err(StoreError::sqlite("creating teacher accounts"))?;
            email
                .execute(params![self.district, self.run_id, self.now, row])
                .map_err(StoreError::sqlite("queueing welcome emails"))?;
        }
        Ok(())
    }

    fn decisions(&self) -> Result<()> {
        let mut start = self
            .tx
            .prepare_cached(
                "INSERT INTO sync_decisions (run_id, district_id, entity, source_id, action, author, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(StoreError::sqlite("recording decisions"))?;
        for &index in &self.plan.decisions_started {
            let decision = &self.plan.snapshot.decisions[index as usize];
            start
                .execute(params![
                    self.run_id,
                    self.district,
                    decision.entity.as_str(),
                    decision.id.as_str(),
                    decision.action.as_str(),
                    decision.author,
                    decision.detail
                ])
                .map_err(StoreError::sqlite("recording decisions"))?;
        }
        let mut end = self
            .tx
            .prepare_cached(
                "UPDATE sync_decisions SET ended_run = ?1 WHERE id = ?2 AND ended_run IS NULL",
            )
            .map_err(StoreError::sqlite("ending decisions"))?;
        for &row in &self.plan.decisions_ended {
            end.execute(params![self.run_id, row])
                .map_err(StoreError::sqlite("ending decisions"))?;
        }
        Ok(())
    }

    fn quarantine(&self) -> Result<()> {
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO quarantine (run_id, kind, source_id, reason, suggested_fix, record, origin) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(StoreError::sqlite("recording quarantined records"))?;
        for record in &self.plan.snapshot.quarantine {
            insert
                .execute(params![
                    self.run_id,
                    record.kind,
                    record.id.as_deref(),
                    record.reason,
                    record.suggested_fix,
                    record.record,
                    record.origin
                ])
                .map_err(StoreError::sqlite("recording quarantined records"))?;
        }
        Ok(())
    }
}

/// Binds `values` to the parameters from `first` on.
fn bind_all(
    statement: &mut rusqlite::CachedStatement<'_>,
    first: usize,
    values: &[&dyn rusqlite::ToSql],
) -> Result<()> {
    for (offset, value) in values.iter().enumerate() {
        statement
            .raw_bind_parameter(first + offset, value)
            .map_err(StoreError::sqlite("binding a row"))?;
    }
    Ok(())
}

/// A unique-key violation on insert means the Clever id is held by a row the sync does not own.
fn taken_or(source: rusqlite::Error, entity: Entity, key: &str, step: String) -> StoreError {
    const SQLITE_CONSTRAINT_UNIQUE: std::ffi::c_int = 2067;
    match &source {
        rusqlite::Error::SqliteFailure(error, _)
            if error.extended_code == SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::Taken {
                entity,
                key: key.to_owned(),
            }
        }
        _ => StoreError::Sqlite { step, source },
    }
}

/// A row-by-row write that found its row no longer as planned.
fn changed(entity: Entity, written: usize) -> StoreError {
    StoreError::Changed {
        entity,
        expected: 1,
        found: written as u64,
    }
}

fn placeholders(range: std::ops::RangeInclusive<usize>) -> String {
    range
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens a connection for the store: WAL (set when sqlx created the file), a long busy
/// timeout, enforced foreign keys.
fn open(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let connection = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(StoreError::sqlite("opening the database"))?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite("opening the database"))?;
    connection
        .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .map_err(StoreError::sqlite("opening the database"))?;
    Ok(connection)
}
