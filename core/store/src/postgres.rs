//! The Freckle DB on PostgreSQL, through one native sqlx connection per run: state read with
//! `COPY ... TO STDOUT`, new rows and memberships written with `COPY ... FROM STDIN`, updates
//! through a temporary table and one set-based `UPDATE ... FROM`, archives and ends with one
//! array statement each, all in one transaction.
//!
//! The district's run lock is a session advisory lock taken on that same connection: it frees
//! itself when the connection (or its process) dies, and a run whose connection was lost cannot
//! commit anything either. A run that stops answering (a stopped or hung process) loses it too:
//! the connection pings the server while the run pulls and plans, and the server ends a session
//! that has been silent for the lock's lease, rolling back whatever it had begun.

mod copy;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Postgres, Transaction};

use super::schema::{
    ENTITIES, Kind, Lookups, MEMBERSHIPS, Record, TableVisitor, Value, layout, visit_tables,
};
use super::state::{
    Cell, Existing, MembershipState, OpenDecision, Role, State, TableState, fingerprint,
};
use super::{
    RowIds, RunOutcome, RunRecord, StoreError, counts_json, school_year_date, sis_rows_sql,
    skipped_json, source_kind,
};
use crate::apply::{Step, fence, program};
use crate::db::timestamp;
use crate::runs::sql;
use copy::{Encoder, Lines};
use rosterflow_model::school_year::SchoolYear;
use rosterflow_model::{DecisionAction, Entity, Id};
use rosterflow_plan::switch::{MATCHED, Match, SisRow};
use rosterflow_plan::{Plan, RecordAction, member_entity};

type Result<T> = std::result::Result<T, StoreError>;

pub(super) struct PgStore {
    /// Shared with the keep-alive task, which pings only while no one else uses it.
    connection: Arc<tokio::sync::Mutex<PgConnection>>,
    district: String,
    _keep_alive: Option<KeepAlive>,
}

/// Pings a locked connection while the run works elsewhere; stops when the store is dropped.
struct KeepAlive(tokio::task::JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl KeepAlive {
    fn start(connection: &Arc<tokio::sync::Mutex<PgConnection>>, lease: Duration) -> KeepAlive {
        let connection = Arc::downgrade(connection);
        KeepAlive(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(lease / 4);
            loop {
                ticks.tick().await;
                let Some(connection) = connection.upgrade() else {
                    return;
                };
                // A busy connection is not silent: the server does not time it out.
                if let Ok(mut connection) = connection.try_lock()
                    && let Err(error) = connection.ping().await
                {
                    tracing::warn!(error = %error, "the connection holding a district's run lock was lost");
                    return;
                }
            }
        }))
    }
}

impl PgStore {
    /// A connection for the district, without its run lock.
    pub async fn connect(url: &url::Url, district: &str) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url.as_str())
            .map_err(StoreError::postgres("connecting"))?
            .disable_statement_logging();
        let connection = options
            .connect()
            .await
            .map_err(StoreError::postgres("connecting"))?;
        Ok(PgStore {
            connection: Arc::new(tokio::sync::Mutex::new(connection)),
            district: district.to_owned(),
            _keep_alive: None,
        })
    }

    /// A connection holding the district's run lock, which the server takes back when the
    /// connection has been silent for `lease`.
    pub async fn lock(
        url: &url::Url,
        district: &str,
        wait: Duration,
        lease: Duration,
    ) -> Result<PgStore> {
        let store = PgStore::connect(url, district).await?;
        let mut connection = store.connection.lock().await;
        let lease = lease.max(Duration::from_secs(1));
        let version: String = sqlx::query_scalar("SHOW server_version_num")
            .fetch_one(&mut *connection)
            .await
            .map_err(StoreError::postgres("reading the server's version"))?;
        // `idle_session_timeout` came with PostgreSQL 14; before it, only a run silent in the
        // middle of a transaction loses its session.
        let settings: &[&str] = match version.parse::<u32>() {
            Ok(version) if version < 140_000 => &["idle_in_transaction_session_timeout"],
            _ => &[
                "idle_session_timeout",
                "idle_in_transaction_session_timeout",
            ],
        };
        for setting in settings {
            sqlx::query(AssertSqlSafe(format!(
                "SET {setting} = {}",
                lease.as_millis()
            )))
            .execute(&mut *connection)
            .await
            .map_err(StoreError::postgres("setting the run lock's lease"))?;
        }
        let key = lock_key(district);
        let started = Instant::now();
        let mut waiting = false;
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *connection)
                .await
                .map_err(StoreError::postgres("taking the district's run lock"))?;
            if locked {
                break;
            }
            if started.elapsed() >= wait {
                return Err(StoreError::Busy {
                    district: district.to_owned(),
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            if !std::mem::replace(&mut waiting, true) {
                crate::waiting_for_lock(district, wait);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(connection);
        Ok(PgStore {
            _keep_alive: Some(KeepAlive::start(&store.connection, lease)),
            ..store
        })
    }

    pub async fn read_sis_rows(&mut self) -> Result<Vec<SisRow>> {
        let mut connection = self.connection.lock().await;
        let step = || "reading SIS ids to match";
        let district: Option<i64> = sqlx::query_scalar(sql::DISTRICT_ID)
            .bind(&self.district)
            .fetch_optional(&mut *connection)
            .await
            .map_err(StoreError::postgres(step()))?;
        let mut rows = Vec::new();
        let Some(district) = district else {
            return Ok(rows);
        };
        for entity in MATCHED {
            let read: Vec<(i64, String, String)> =
                sqlx::query_as(AssertSqlSafe(sis_rows_sql(entity)))
                    .bind(district)
                    .fetch_all(&mut *connection)
                    .await
                    .map_err(StoreError::postgres(step()))?;
            rows.extend(read.into_iter().map(|(row, key, sis_id)| SisRow {
                entity,
                row,
                key: Id::from(key),
                sis_id,
            }));
        }
        Ok(rows)
    }

    pub async fn read_state(&mut self) -> Result<State> {
        let mut connection = self.connection.lock().await;
        let mut tx = connection
            .begin()
            .await
            .map_err(StoreError::postgres("starting to read the district"))?;
        // One snapshot of every table.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::postgres("starting to read the district"))?;
        let district: Option<(i64, String)> = sqlx::query_as(sql::DISTRICT_SOURCE)
            .bind(&self.district)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::postgres("reading the district"))?;
        let mut state = State {
            district: district.as_ref().map(|(id, _)| *id),
            source: district.as_ref().and_then(|(_, kind)| source_kind(kind)),
            ..State::default()
        };
        let district = district.map(|(id, _)| id);
        let Some(district) = district else {
            return Ok(state);
        };
        state.last_run = last_committed_run(&mut tx, district).await?;
        for entity in ENTITIES {
            let table = read_table(&mut tx, entity, district).await?;
            state.tables.insert(entity, table);
        }
        for table in MEMBERSHIPS {
            let role = if table.entity == Entity::ClassTeacher {
                "m.role"
            } else {
                "NULL"
            };
            let sql = format!(
                "COPY (SELECT m.class_id, m.{member}, m.source, {role} FROM {name} m \
                 JOIN classes c ON c.id = m.class_id \
                 WHERE c.district_id = {district} AND m.ended_at IS NULL \
                 AND (m.source = 'sis' OR m.source LIKE 'plugin:%') \
                 ORDER BY m.class_id, m.{member}) TO STDOUT",
                member = table.member_column,
                name = table.name,
            );
            let mut open = MembershipState::default();
            copy_out(&mut tx, &sql, table.name, |fields| {
                let [class, member, source, role] = fields else {
                    return Err(bad_line(table.name));
                };
                let class = int(class.as_deref(), table.name)?;
                let member = int(member.as_deref(), table.name)?;
                let source = source.as_deref().unwrap_or_default();
                open.push(class, member, Role::from_db(role.as_deref()), source)?;
                Ok(())
            })
            .await?;
            state.memberships.insert(table.entity, open);
        }
        let decisions: Vec<(i64, String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, entity, source_id, action, author, detail FROM sync_decisions \
             WHERE district_id = $1 AND ended_run IS NULL ORDER BY id",
        )
        .bind(district)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::postgres("reading decisions"))?;
        for (row, entity, key, action, author, detail) in decisions {
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
        tx.commit()
            .await
            .map_err(StoreError::postgres("reading the district"))?;
        Ok(state)
    }

    pub async fn apply(&mut self, plan: &Plan<'_>, run: RunRecord<'_>) -> Result<RunOutcome> {
        let mut connection = self.connection.lock().await;
        let mut tx = connection
            .begin()
            .await
            .map_err(StoreError::postgres("starting the run"))?;
        Bulk::enter(&mut tx, plan).await?;
        let now = timestamp(Utc::now());
        let mut writer = Writer {
            plan,
            // Set by the `District` and `Run` steps, which come before any write.
            run_id: 0,
            district: 0,
            now: &now,
            lookups: Lookups::new(plan.snapshot),
            rows: RowIds::new(plan),
            reserved: BTreeMap::new(),
            work: Vec::new(),
        };
        for step in program(plan) {
            match step {
                Step::District => writer.district = ensure_district(&mut tx, plan, &now).await?,
                Step::Fence => fence(plan, last_committed_run(&mut tx, writer.district).await?)?,
                Step::Run => {
                    writer.run_id = record_run(&mut tx, plan, run, writer.district, &now).await?;
                }
                Step::DistrictMadeBy => {
                    sqlx::query(sql::DISTRICT_MADE_BY)
                        .bind(writer.run_id)
                        .bind(writer.district)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::postgres("recording the new district"))?;
                }
                Step::Rekey => writer.rekey(&mut tx).await?,
                Step::Tables => writer.tables(&mut tx).await?,
                Step::Memberships => writer.memberships(&mut tx).await?,
                Step::ChangeLog => writer.change_log(&mut tx).await?,
                Step::Accounts => writer.accounts(&mut tx).await?,
                Step::Decisions => writer.decisions(&mut tx).await?,
                Step::Quarantine => writer.quarantine(&mut tx).await?,
                Step::Finish => {
                    sqlx::query(sql::FINISH)
                        .bind(timestamp(Utc::now()))
                        .bind(writer.run_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::postgres("finishing the run"))?;
                }
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::postgres("committing the run"))?;
        Ok(RunOutcome {
            run_id: writer.run_id,
            changes: plan.change_count(),
            quarantined: plan.snapshot.quarantine.len(),
        })
    }
}

/// The advisory lock key of a district: stable across versions, processes and machines.
fn lock_key(district: &str) -> i64 {
    let digest = Sha256::digest(format!("rosterflow district {district}"));
    i64::from_be_bytes(digest[..8].try_into().expect("a digest has 8 bytes"))
}

/// Takes `count` ids from a table's id sequence.
async fn reserve_ids(
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    count: usize,
) -> Result<Vec<i64>> {
    let sql = format!(
        "COPY (SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, {count})) TO STDOUT"
    );
    let mut ids = Vec::with_capacity(count);
    copy_out(tx, &sql, table, |fields| {
        ids.push(int(fields.first().and_then(|f| f.as_deref()), table)?);
        Ok(())
    })
    .await?;
    Ok(ids)
}

async fn last_committed_run(
    tx: &mut Transaction<'_, Postgres>,
    district: i64,
) -> Result<Option<i64>> {
    sqlx::query_scalar(sql::LAST_COMMITTED_RUN)
        .bind(district)
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::postgres("reading run history"))
}

/// Runs `COPY (...) TO STDOUT` and hands each line's fields to `row`.
async fn copy_out(
    tx: &mut Transaction<'_, Postgres>,
    sql: &str,
    what: &str,
    mut row: impl FnMut(&[Option<std::borrow::Cow<'_, str>>]) -> Result<()>,
) -> Result<()> {
    let step = || format!("reading {what}");
    let mut stream = tx
        .copy_out_raw(sql)
        .await
        .map_err(StoreError::postgres(step()))?;
    let mut lines = Lines::default();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(StoreError::postgres(step()))?
    {
        lines.feed(&chunk, |line| {
            let fields: Vec<_> = copy::fields(line).collect();
            row(&fields)
        })?;
    }
    if !lines.is_done() {
        return Err(bad_line(what));
    }
    Ok(())
}

fn bad_line(what: &str) -> StoreError {
    StoreError::Postgres {
        step: format!("reading {what}"),
        source: sqlx::Error::Protocol("a COPY line did not have the expected fields".into()),
    }
}

fn int(field: Option<&str>, what: &str) -> Result<i64> {
    field
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| bad_line(what))
}

/// The district's rows of one synced table, with their columns' fingerprints.
async fn read_table(
    tx: &mut Transaction<'_, Postgres>,
    entity: Entity,
    district: i64,
) -> Result<TableState> {
    let layout = layout(entity);
    let columns: Vec<&str> = layout.columns.iter().map(|(name, _)| *name).collect();
    let school = match entity {
        Entity::School => "id",
        _ if columns.contains(&"school_id") => "school_id",
        _ => "NULL",
    };
    let (archived, scope) = if layout.in_district {
        (
            "archived_at IS NOT NULL",
            format!("district_id = {district}"),
        )
    } else {
        ("false", format!("id = {district}"))
    };
    let managed = if matches!(entity, Entity::Class | Entity::Teacher) {
        " AND managed_by = 'sis'"
    } else {
        ""
    };
    let sql = format!(
        "COPY (SELECT id, {key}, {archived}, {school}, {year}, {} FROM {} \
         WHERE {scope} AND {key} IS NOT NULL{managed} ORDER BY id) TO STDOUT",
        columns.join(", "),
        layout.name,
        key = layout.key_column,
        year = school_year_date(entity),
    );
    let mut table = TableState::new(layout.columns.len());
    let mut fingerprints = Vec::with_capacity(layout.columns.len());
    copy_out(tx, &sql, layout.name, |fields| {
        if fields.len() != 5 + layout.columns.len() {
            return Err(bad_line(layout.name));
        }
        let id = int(fields[0].as_deref(), layout.name)?;
        let key = fields[1].as_deref().ok_or_else(|| bad_line(layout.name))?;
        let archived = fields[2].as_deref() == Some("t");
        let school = fields[3]
            .as_deref()
            .map(|s| int(Some(s), layout.name))
            .transpose()?;
        let year = fields[4].as_deref().and_then(SchoolYear::of_date);
        fingerprints.clear();
        for ((_, kind), value) in layout.columns.iter().zip(&fields[5..]) {
            let cell = match (value.as_deref(), kind) {
                (None, _) => Cell::Null,
                (Some(flag), Kind::Flag) => Cell::Flag(flag == "t"),
                (Some(id), Kind::Ref(_)) => Cell::Row(int(Some(id), layout.name)?),
                (Some(text), Kind::Text) => Cell::Text(text),
            };
            fingerprints.push(fingerprint(cell));
        }
        let existing = Existing {
            id,
            archived,
            school,
            year,
        };
        table.push(key.into(), existing, fingerprints.iter().copied())?;
        Ok(())
    })
    .await?;
    Ok(table)
}

async fn ensure_district(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
    now: &str,
) -> Result<i64> {
    let district = &plan.snapshot.district;
    sqlx::query(sql::ENSURE_DISTRICT)
        .bind(district.id.as_str())
        .bind(&district.name)
        .bind(district.source.as_str())
        .bind(district.source_id.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::postgres("creating the district"))?;
    sqlx::query_scalar(sql::DISTRICT_ID)
        .bind(district.id.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::postgres("reading the district"))
}

async fn record_run(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
    run: RunRecord<'_>,
    district: i64,
    now: &str,
) -> Result<i64> {
    match run {
        RunRecord::New { start, source } => {
            let run: i64 = sqlx::query_scalar(sql::INSERT_COMMITTED)
                .bind(district)
                .bind(start.pipeline)
                .bind(timestamp(start.started_at))
                .bind(now)
                .bind(plan.change_count() as i64)
                .bind(plan.snapshot.quarantine.len() as i64)
                .bind(counts_json(plan))
                .bind(source.kind)
                .bind(source.checkpoint.and_then(|c| c.cursor))
                .bind(source.note)
                .bind(skipped_json(plan))
                .bind(start.scheduled_for.map(timestamp))
                .bind(start.requested_by)
                .fetch_one(&mut **tx)
                .await
                .map_err(StoreError::postgres("recording the run"))?;
            if let Some(checkpoint) = source.checkpoint {
                sqlx::query(sql::SAVE_CHECKPOINT)
                    .bind(district)
                    .bind(run)
                    .bind(checkpoint.cursor)
                    .bind(checkpoint.roster)
                    .bind(timestamp(checkpoint.full_sync_at))
                    .bind(timestamp(checkpoint.saved_at))
                    .execute(&mut **tx)
                    .await
                    .map_err(StoreError::postgres("saving the events checkpoint"))?;
            }
            Ok(run)
        }
        RunRecord::Approve { run, by } => {
            let approved = sqlx::query(sql::APPROVE_HELD)
                .bind(now)
                .bind(by)
                .bind(run)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::postgres("approving the run"))?;
            if approved.rows_affected() != 1 {
                let status: Option<String> = sqlx::query_scalar(sql::STATUS)
                    .bind(run)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(StoreError::postgres("approving the run"))?;
                return Err(StoreError::NotHeld {
                    run,
                    status: status.unwrap_or_else(|| "missing".to_owned()),
                    action: "approved",
                });
            }
            let moving = || StoreError::postgres("moving the held run's checkpoint");
            sqlx::query(sql::ADOPT_HELD_CHECKPOINT)
                .bind(district)
                .bind(run)
                .execute(&mut **tx)
                .await
                .map_err(moving())?;
            sqlx::query(sql::FORGET_HELD_CHECKPOINT)
                .bind(run)
                .execute(&mut **tx)
                .await
                .map_err(moving())?;
            Ok(run)
        }
    }
}

/// One table's writes, encoded while its records were visited.
struct TableWork {
    entity: Entity,
    name: &'static str,
    columns: Vec<&'static str>,
    in_district: bool,
    /// New rows: id, every synced column, then source_id, created_at, updated_at, district_id,
    /// created_run.
    creates: Encoder,
    create_count: u64,
    /// Updated and restored rows: id, then every synced column.
    updates: Encoder,
    update_count: u64,
    restores: Encoder,
    restore_count: u64,
    archives: (Vec<i64>, Vec<String>),
}

/// Writes one plan inside its transaction.
struct Writer<'t, 'a> {
    plan: &'t Plan<'a>,
    run_id: i64,
    district: i64,
    now: &'t str,
    lookups: Lookups<'a>,
    /// Row ids of the snapshot's records, per entity, by position.
    rows: RowIds,
    /// Ids taken for each table's new rows, in the plan's order.
    reserved: BTreeMap<Entity, std::vec::IntoIter<i64>>,
    /// Each table's encoded writes, in the order they are sent.
    work: Vec<TableWork>,
}

impl<'a> TableVisitor<'a> for Writer<'_, 'a> {
    type Error = std::convert::Infallible;

    /// Encodes one table's writes.
    fn visit<R: Record>(&mut self, records: &'a [R]) -> std::result::Result<(), Self::Error> {
        let table = &R::TABLE;
        let entity = table.entity;
        let mut rows = RowIds::existing(self.plan.state, records);
        let mut work = TableWork {
            entity,
            name: table.name,
            columns: table.columns.iter().map(|c| c.name).collect(),
            in_district: table.in_district,
            creates: Encoder::default(),
            create_count: 0,
            updates: Encoder::default(),
            update_count: 0,
            restores: Encoder::default(),
            restore_count: 0,
            archives: (Vec::new(), Vec::new()),
        };
        for change in self.plan.records.iter().filter(|c| c.entity == entity) {
            let position = change.index as usize;
            match change.action {
                // The district's own row is created with the run (see `ensure_district`).
                RecordAction::Create if entity == Entity::District => {}
                RecordAction::Create => {
                    let record = &records[position];
                    let id = self
                        .reserved
                        .get_mut(&entity)
                        .and_then(Iterator::next)
                        .expect("an id was reserved for every new row");
                    rows[position] = Some(id);
                    work.creates.int(Some(id));
                    self.encode_values(&mut work.creates, record);
                    work.creates.text(Some(record.key()));
                    work.creates.text(Some(self.now));
                    work.creates.text(Some(self.now));
                    work.creates.int(Some(self.district));
                    work.creates.int(Some(self.run_id));
                    work.creates.end_row();
                    work.create_count += 1;
                }
                RecordAction::Update | RecordAction::Restore => {
                    let record = &records[position];
                    let (encoder, count) = if change.action == RecordAction::Update {
                        (&mut work.updates, &mut work.update_count)
                    } else {
                        (&mut work.restores, &mut work.restore_count)
                    };
                    encoder.int(change.row);
                    self.encode_values(encoder, record);
                    encoder.end_row();
                    *count += 1;
                }
                RecordAction::Archive => {
                    work.archives
                        .0
                        .push(change.row.expect("archives name their row"));
                    work.archives.1.push(change.reason().into_owned());
                }
            }
        }
        self.rows.insert(entity, rows);
        self.work.push(work);
        Ok(())
    }
}

impl<'a> Writer<'_, 'a> {
    /// Every table's writes: new rows get their ids up front, so that each table's rows can be
    /// encoded in one pass with their references resolved, then copied in.
    async fn tables(&mut self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        for entity in ENTITIES.into_iter().filter(|&e| e != Entity::District) {
            let count = self
                .plan
                .records
                .iter()
                .filter(|c| c.entity == entity && c.action == RecordAction::Create)
                .count();
            if count > 0 {
                let ids = reserve_ids(tx, layout(entity).name, count).await?;
                self.reserved.insert(entity, ids.into_iter());
            }
        }
        let Ok(()) = visit_tables(self.plan.snapshot, self);
        for work in std::mem::take(&mut self.work) {
            self.write_table(tx, work).await?;
        }
        Ok(())
    }

    fn encode_values<R: Record>(&self, encoder: &mut Encoder, record: &'a R) {
        for column in R::TABLE.columns {
            match (column.value)(record, &self.lookups) {
                Value::Text(text) => encoder.text(text.as_deref()),
                Value::Flag(flag) => encoder.flag(flag),
                Value::Ref(key) => {
                    let Kind::Ref(to) = column.kind else {
                        unreachable!("reference values come from reference columns")
                    };
                    encoder.int(key.and_then(|key| self.rows.of_key(self.plan, to, key)));
                }
            }
        }
    }

    async fn write_table(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        mut work: TableWork,
    ) -> Result<()> {
        let step = |what: &str| format!("writing {what} {}", work.name);
        tracing::info!(target: rosterflow_model::PROGRESS, "writing {}", work.name);
        let columns = work.columns.join(", ");
        if work.create_count > 0 {
            let sql = format!(
                "COPY {} (id, {columns}, source_id, created_at, updated_at, district_id, created_run) FROM STDIN",
                work.name
            );
            let bulk = Bulk::begin(tx, work.name, work.create_count).await?;
            copy_in(tx, &sql, work.creates.take())
                .await
                .map_err(|source| taken_or(source, work.entity, step("new rows into")))?;
            bulk.end(tx, work.name).await?;
        }
        let scratch = "rosterflow_rows";
        for (encoder, count, restore) in [
            (&mut work.updates, work.update_count, false),
            (&mut work.restores, work.restore_count, true),
        ] {
            if count == 0 {
                continue;
            }
            sqlx::query(AssertSqlSafe(format!(
                "CREATE TEMPORARY TABLE {scratch} ON COMMIT DROP AS SELECT id, {columns} FROM {} WITH NO DATA",
                work.name
            )))
            .execute(&mut **tx)
            .await
            .map_err(StoreError::postgres(step("updates to")))?;
            copy_in(
                tx,
                &format!("COPY {scratch} (id, {columns}) FROM STDIN"),
                encoder.take(),
            )
            .await
            .map_err(StoreError::postgres(step("updates to")))?;
            let assignments: Vec<String> = work
                .columns
                .iter()
                .map(|c| format!("{c} = u.{c}"))
                .collect();
            let (set_archived, condition) = match (work.in_district, restore) {
                (false, _) => ("", ""),
                (true, false) => ("", " AND t.archived_at IS NULL"),
                (true, true) => (
                    ", archived_at = NULL, archived_reason = NULL",
                    " AND t.archived_at IS NOT NULL",
                ),
            };
            let updated = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {} t SET {}, updated_at = $1{set_archived} FROM {scratch} u \
                 WHERE t.id = u.id{condition}",
                work.name,
                assignments.join(", ")
            )))
            .bind(self.now)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::postgres(step("updates to")))?;
            if updated.rows_affected() != count {
                return Err(StoreError::Changed {
                    entity: work.entity,
                    expected: count,
                    found: updated.rows_affected(),
                });
            }
            sqlx::query(AssertSqlSafe(format!("DROP TABLE {scratch}")))
                .execute(&mut **tx)
                .await
                .map_err(StoreError::postgres(step("updates to")))?;
        }
        let (ids, reasons) = &work.archives;
        if !ids.is_empty() {
            let archived = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {} t SET archived_at = $1, archived_reason = u.reason, updated_at = $1 \
                 FROM UNNEST($2::bigint[], $3::text[]) AS u(id, reason) \
                 WHERE t.id = u.id AND t.archived_at IS NULL",
                work.name
            )))
            .bind(self.now)
            .bind(ids)
            .bind(reasons)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::postgres(step("archives in")))?;
            if archived.rows_affected() != ids.len() as u64 {
                return Err(StoreError::Changed {
                    entity: work.entity,
                    expected: ids.len() as u64,
                    found: archived.rows_affected(),
                });
            }
        }
        Ok(())
    }

    async fn memberships(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        let plan = self.plan;
        for table in MEMBERSHIPS {
            let step = |what: &str| format!("writing {what} of {}", table.name);
            let member = member_entity(table.entity);
            let is_teacher = table.entity == Entity::ClassTeacher;
            let source_of =
                |class: u32, position: u32| plan.source_of(table.entity, class, position);

            let role_column = if is_teacher { ", role" } else { "" };
            let sql = format!(
                "COPY {} (class_id, {}, source, started_at, started_run{role_column}) FROM STDIN",
                table.name, table.member_column
            );
            let count = plan
                .starts
                .iter()
                .filter(|s| s.entity == table.entity)
                .count();
            if count > 0 {
                let bulk = Bulk::begin(tx, table.name, count as u64).await?;
                let mut copy = tx
                    .copy_in_raw(&sql)
                    .await
                    .map_err(StoreError::postgres(step("starts")))?;
                let mut encoder = Encoder::default();
                // A plain loop: a filtering closure held across the awaits below would make
                // the run's future impossible to prove `Send`.
                for start in &plan.starts {
                    if start.entity != table.entity {
                        continue;
                    }
                    let (Some(class_row), Some(member_row)) = (
                        self.rows.at(Entity::Class, start.class),
                        self.rows.at(member, start.member),
                    ) else {
                        let _ = copy
                            .abort("a membership names a record without a row")
                            .await;
                        return Err(StoreError::Missing {
                            entity: table.entity,
                        });
                    };
                    encoder.int(Some(class_row));
                    encoder.int(Some(member_row));
                    encoder.text(Some(&source_of(start.class, start.member)));
                    encoder.text(Some(self.now));
                    encoder.int(Some(self.run_id));
                    if is_teacher {
                        encoder.text(start.role.as_db());
                    }
                    encoder.end_row();
                    if encoder.is_full() {
                        copy.send(encoder.take())
                            .await
                            .map_err(StoreError::postgres(step("starts")))?;
                    }
                }
                copy.send(encoder.take())
                    .await
                    .map_err(StoreError::postgres(step("starts")))?;
                copy.finish()
                    .await
                    .map_err(StoreError::postgres(step("starts")))?;
                bulk.end(tx, table.name).await?;
            }

            let ends: Vec<_> = plan
                .ends
                .iter()
                .filter(|e| e.entity == table.entity)
                .collect();
            if !ends.is_empty() {
                let ended = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {name} m SET ended_at = $1, ended_run = $2, ended_reason = u.reason, ended_by = u.by \
                     FROM UNNEST($3::bigint[], $4::bigint[], $5::text[], $6::text[]) AS u(class, member, reason, by) \
                     WHERE m.class_id = u.class AND m.{member} = u.member AND m.ended_at IS NULL",
                    name = table.name,
                    member = table.member_column
                )))
                .bind(self.now)
                .bind(self.run_id)
                .bind(ends.iter().map(|e| e.class_row).collect::<Vec<_>>())
                .bind(ends.iter().map(|e| e.member_row).collect::<Vec<_>>())
                .bind(ends.iter().map(|e| e.reason.text()).collect::<Vec<_>>())
                .bind(
                    ends.iter()
                        .map(|e| e.reason.author().to_owned())
                        .collect::<Vec<_>>(),
                )
                .execute(&mut **tx)
                .await
                .map_err(StoreError::postgres(step("ends")))?;
                if ended.rows_affected() != ends.len() as u64 {
                    return Err(StoreError::Changed {
                        entity: table.entity,
                        expected: ends.len() as u64,
                        found: ended.rows_affected(),
                    });
                }
            }

            let retags: Vec<_> = plan
                .retags
                .iter()
                .filter(|r| r.entity == table.entity)
                .collect();
            if !retags.is_empty() {
                let role = if is_teacher { ", role = u.role" } else { "" };
                let updated = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {name} m SET source = u.source{role} \
                     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS u(class, member, source, role) \
                     WHERE m.class_id = u.class AND m.{member} = u.member AND m.ended_at IS NULL",
                    name = table.name,
                    member = table.member_column
                )))
                .bind(retags.iter().map(|r| r.class_row).collect::<Vec<_>>())
                .bind(retags.iter().map(|r| r.member_row).collect::<Vec<_>>())
                .bind(
                    retags
                        .iter()
                        .map(|r| source_of(r.class, r.member).into_owned())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    retags
                        .iter()
                        .map(|r| r.role.as_db())
                        .collect::<Vec<_>>(),
                )
                .execute(&mut **tx)
                .await
                .map_err(StoreError::postgres(step("role changes")))?;
                if updated.rows_affected() != retags.len() as u64 {
                    return Err(StoreError::Changed {
                        entity: table.entity,
                        expected: retags.len() as u64,
                        found: updated.rows_affected(),
                    });
                }
            }
        }
        Ok(())
    }

    /// What rows cannot say for themselves: updates, restores, archives and role changes.
    /// Rows matched to the records of the district's new source take their new keys: one array
    /// statement per table. No new key is any row's key (the matcher leaves such records to the
    /// row they already have).
    async fn rekey(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        let matches: Vec<&Match> = self
            .plan
            .state
            .switch
            .iter()
            .flat_map(|s| &s.matches)
            .collect();
        for entity in MATCHED {
            let (keys, rows): (Vec<&str>, Vec<i64>) = matches
                .iter()
                .filter(|m| m.entity == entity)
                .map(|m| (m.to.as_str(), m.row))
                .unzip();
            if rows.is_empty() {
                continue;
            }
            let sql = format!(
                "UPDATE {} AS t SET source_id = v.key FROM UNNEST($1::text[], $2::bigint[]) AS v(key, id) \
                 WHERE t.id = v.id",
                layout(entity).name
            );
            let written = sqlx::query(AssertSqlSafe(sql))
                .bind(&keys)
                .bind(&rows)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::postgres("giving matched rows their new keys"))?
                .rows_affected();
            if written != rows.len() as u64 {
                return Err(StoreError::Changed {
                    entity,
                    expected: rows.len() as u64,
                    found: written,
                });
            }
        }
        Ok(())
    }

    async fn change_log(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        let mut encoder = Encoder::default();
        let rows = self
            .plan
            .record_rows()
            .filter(|row| row.action != RecordAction::Create.as_str())
            .chain(self.plan.retag_rows())
            .chain(self.plan.switch_rows());
        for row in rows {
            encoder.int(Some(self.run_id));
            encoder.text(Some(row.entity.as_str()));
            encoder.text(Some(row.key));
            encoder.text(row.member);
            encoder.text(Some(row.action));
            encoder.text(Some(&row.reason));
            encoder.text(Some(&row.author));
            encoder.text(row.detail.as_deref());
            encoder.end_row();
        }
        copy_in(
            tx,
            "COPY sync_changes (run_id, entity, source_id, member_id, action, reason, author, detail) FROM STDIN",
            encoder.take(),
        )
        .await
        .map_err(StoreError::postgres("recording changes"))
    }

    /// An account and one queued welcome email for each new teacher.
    async fn accounts(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        if self.plan.new_accounts.is_empty() {
            return Ok(());
        }
        let teachers = self
            .plan
            .new_accounts
            .iter()
            .map(|&t| self.rows.at(Entity::Teacher, t))
            .collect::<Option<Vec<i64>>>()
            .ok_or(StoreError::Missing {
                entity: Entity::Teacher,
            })?;
        sqlx::query(
            "INSERT INTO teacher_accounts (teacher_id, login_state, created_at) \
             SELECT t, 'invited', $2 FROM UNNEST($1::bigint[]) AS t ON CONFLICT (teacher_id) DO NOTHING",
        )
        .bind(&teachers)
        .bind(self.now)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::postgres("creating teacher accounts"))?;
        sqlx::query(
            "INSERT INTO email_outbox (district_id, run_id, kind, teacher_id, recipient, status, created_at) \
             SELECT $1, $2, 'welcome', t.id, t.email, 'pending', $3 FROM teachers t WHERE t.id = ANY($4) \
             ORDER BY t.id ON CONFLICT (kind, teacher_id) DO NOTHING",
        )
        .bind(self.district)
        .bind(self.run_id)
        .bind(self.now)
        .bind(&teachers)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::postgres("queueing welcome emails"))?;
        Ok(())
    }

    async fn decisions(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        let mut encoder = Encoder::default();
        for &index in &self.plan.decisions_started {
            let decision = &self.plan.snapshot.decisions[index as usize];
            encoder.int(Some(self.run_id));
            encoder.int(Some(self.district));
            encoder.text(Some(decision.entity.as_str()));
            encoder.text(Some(&decision.id));
            encoder.text(Some(decision.action.as_str()));
            encoder.text(Some(&decision.author));
            encoder.text(Some(&decision.detail));
            encoder.end_row();
        }
        copy_in(
            tx,
            "COPY sync_decisions (run_id, district_id, entity, source_id, action, author, detail) FROM STDIN",
            encoder.take(),
        )
        .await
        .map_err(StoreError::postgres("recording decisions"))?;
        if !self.plan.decisions_ended.is_empty() {
            sqlx::query(
                "UPDATE sync_decisions SET ended_run = $1 WHERE id = ANY($2) AND ended_run IS NULL",
            )
            .bind(self.run_id)
            .bind(&self.plan.decisions_ended)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::postgres("ending decisions"))?;
        }
        Ok(())
    }

    async fn quarantine(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        let mut encoder = Encoder::default();
        for record in &self.plan.snapshot.quarantine {
            encoder.int(Some(self.run_id));
            encoder.text(Some(&record.kind));
            encoder.text(record.id.as_deref());
            encoder.text(Some(&record.reason));
            encoder.text(record.suggested_fix.as_deref());
            encoder.text(Some(&record.record));
            encoder.text(record.origin.as_deref());
            encoder.end_row();
        }
        copy_in(
            tx,
            "COPY quarantine (run_id, kind, source_id, reason, suggested_fix, record, origin) FROM STDIN",
            encoder.take(),
        )
        .await
        .map_err(StoreError::postgres("recording quarantined records"))
    }
}

/// A bulk load into an empty table (a first load into a new Freckle DB): the table's secondary
/// indexes and foreign keys are dropped for the copy and rebuilt after it, in the same
/// transaction, as PostgreSQL's "Populating a Database" advises: one sorted index build and one
/// join to validate each key, instead of an index insert and a trigger's lookup per row (three
/// times faster for memberships). An empty table has no other district's rows to keep readers
/// waiting on, and bulk loads run alone: a run that may bulk-load takes [`WRITERS`]
/// exclusively, every other run shared, so two runs never wait on each other's tables in
/// opposite orders. Unique indexes are rebuilt too, so a duplicate still fails the run;
/// constraint-backed ones (primary keys, `UNIQUE` columns) stay throughout.
#[must_use = "a bulk load's indexes and keys must be rebuilt"]
struct Bulk {
    rebuild: Vec<String>,
}

/// The advisory lock of rosterflow's write transactions (see [`Bulk`]).
const WRITERS: i64 = 0x726f_7374_6572_666c; // "rosterfl"

impl Bulk {
    /// Fewer new rows than this are always inserted with the indexes in place.
    const MIN_ROWS: u64 = 10_000;

    /// Whether `plan` may bulk-load a table, so that its transaction must write alone.
    fn possible(plan: &Plan<'_>) -> bool {
        let creates = ENTITIES.into_iter().any(|entity| {
            let count = plan
                .records
                .iter()
                .filter(|c| c.entity == entity && c.action == RecordAction::Create)
                .count();
            count as u64 >= Self::MIN_ROWS
        });
        let starts = MEMBERSHIPS.iter().any(|table| {
            let count = plan
                .starts
                .iter()
                .filter(|s| s.entity == table.entity)
                .count();
            count as u64 >= Self::MIN_ROWS
        });
        creates || starts
    }

    /// Takes [`WRITERS`] for the transaction: exclusively when it may bulk-load.
    async fn enter(tx: &mut Transaction<'_, Postgres>, plan: &Plan<'_>) -> Result<()> {
        let sql = if Self::possible(plan) {
            "SELECT pg_advisory_xact_lock($1)"
        } else {
            "SELECT pg_advisory_xact_lock_shared($1)"
        };
        sqlx::query(sql)
            .bind(WRITERS)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::postgres("waiting for other writers"))?;
        Ok(())
    }

    async fn begin(tx: &mut Transaction<'_, Postgres>, table: &str, rows: u64) -> Result<Bulk> {
        let mut bulk = Bulk {
            rebuild: Vec::new(),
        };
        let step = || format!("preparing a bulk load of {table}");
        if rows < Self::MIN_ROWS {
            return Ok(bulk);
        }
        let occupied: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {table})"
        )))
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::postgres(step()))?;
        if occupied {
            return Ok(bulk);
        }
        let keys: Vec<(String, String)> = sqlx::query_as(
            "SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = $1::regclass AND contype = 'f'",
        )
        .bind(table)
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::postgres(step()))?;
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
             WHERE i.indrelid = $1::regclass AND NOT i.indisprimary \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        )
        .bind(table)
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::postgres(step()))?;
        for (name, definition) in keys {
            execute(
                tx,
                &format!("ALTER TABLE {table} DROP CONSTRAINT {name}"),
                &step(),
            )
            .await?;
            bulk.rebuild.push(format!(
                "ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
            ));
        }
        for (name, definition) in indexes {
            execute(tx, &format!("DROP INDEX {name}"), &step()).await?;
            bulk.rebuild.push(definition);
        }
        tracing::debug!(
            table,
            rows,
            "bulk load: indexes and foreign keys rebuilt after the copy"
        );
        Ok(bulk)
    }

    async fn end(self, tx: &mut Transaction<'_, Postgres>, table: &str) -> Result<()> {
        if self.rebuild.is_empty() {
            return Ok(());
        }
        let step = "rebuilding indexes and keys after a bulk load";
        for statement in &self.rebuild {
            execute(tx, statement, step).await?;
        }
        // Fresh statistics, so that the next run's state read plans for the table's new size.
        execute(tx, &format!("ANALYZE {table}"), step).await
    }
}

async fn execute(tx: &mut Transaction<'_, Postgres>, sql: &str, step: &str) -> Result<()> {
    sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(&mut **tx)
        .await
        .map_err(StoreError::postgres(step))?;
    Ok(())
}

/// Sends encoded rows through `COPY ... FROM STDIN` (nothing when there are none).
async fn copy_in(
    tx: &mut Transaction<'_, Postgres>,
    sql: &str,
    rows: Vec<u8>,
) -> std::result::Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = tx.copy_in_raw(sql).await?;
    for chunk in rows.chunks(Encoder::CHUNK) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// A unique-key violation on insert means the source id is held by a row the sync does not own.
fn taken_or(source: sqlx::Error, entity: Entity, step: String) -> StoreError {
    let unique = source
        .as_database_error()
        .filter(|e| e.kind() == sqlx::error::ErrorKind::UniqueViolation)
        .and_then(|e| e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>());
    match unique {
        // "Key (district_id, source_id)=(3, 5a25...) already exists."
        Some(error) => StoreError::Taken {
            entity,
            key: error
                .detail()
                .and_then(|d| d.split_once(")=(")?.1.rsplit_once(')'))
                .map(|(values, _)| values.split_once(", ").map_or(values, |(_, key)| key))
                .map(str::to_owned)
                .unwrap_or_default(),
        },
        None => StoreError::Postgres { step, source },
    }
}
