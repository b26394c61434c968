//! The load: reads a district's current state from the Freckle DB and applies a plan to it in
//! one transaction, recording the run, every change with its reason and author, the transforms'
//! decisions and the quarantined records.
//!
//! A run commits whole or not at all: a crash at any point leaves the previous state, and a
//! rerun plans again from there. Rows are archived, never deleted. New teachers get an account
//! and one welcome email in the outbox, which is delivered only after the commit.

pub mod tables;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use crate::db::{Db, timestamp};
use crate::model::Entity;
use crate::plan::{
    DesiredMember, MembershipAction, Plan, RecordAction, action_name, membership_action_name,
};
use tables::{Kind, MEMBERSHIPS, TABLES, membership_table, table};

/// Why reading or writing the Freckle DB failed. Messages name the step, never the URL.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database error while {step}")]
    Sql {
        step: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the plan refers to {entity} {key}, which neither the DB nor the plan holds")]
    Dangling { entity: Entity, key: String },
    #[error("run {run} is {status}, not held: only a held run can be {action}")]
    NotHeld {
        run: i64,
        status: String,
        action: &'static str,
    },
    #[error("run {run} does not exist")]
    NoSuchRun { run: i64 },
    #[error(
        "run {run} was planned against run {planned:?} but the DB has since moved to run {now:?}: discard it and run the pipeline again"
    )]
    Stale {
        run: i64,
        planned: Option<i64>,
        now: Option<i64>,
    },
}

fn sql(step: impl Into<String>) -> impl FnOnce(sqlx::Error) -> LoadError {
    let step = step.into();
    move |source| LoadError::Sql { step, source }
}

/// A district's rows as the sync sees them.
#[derive(Debug, Default)]
pub struct State {
    pub district_id: Option<i64>,
    /// Rows with a Clever id, per entity, by Clever id.
    pub records: HashMap<Entity, HashMap<String, Existing>>,
    /// Open sync-owned memberships, per membership entity, by (class, member) Clever ids.
    pub memberships: HashMap<Entity, HashMap<(String, String), ExistingMembership>>,
    /// The last committed run of this district.
    pub last_run: Option<i64>,
}

#[derive(Debug)]
pub struct Existing {
    pub id: i64,
    pub values: Vec<Option<String>>,
    pub archived: bool,
    pub school: Option<String>,
}

#[derive(Debug)]
pub struct ExistingMembership {
    pub id: i64,
    pub member: DesiredMember,
}

/// Reads the district's synced rows and open memberships.
pub async fn read_state(db: &Db, district: &str) -> Result<State, LoadError> {
    let pool = &db.pool;
    let district_id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM districts WHERE clever_id = $1")
            .bind(district)
            .fetch_optional(pool)
            .await
            .map_err(sql("reading the district"))?;
    let mut state = State {
        district_id,
        ..State::default()
    };
    let Some(district_id) = district_id else {
        return Ok(state);
    };
    state.last_run = last_committed_run(pool, district_id).await?;
    for table in TABLES {
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|column| match column.kind {
                Kind::Text => format!("t.{}", column.name),
                Kind::Bool => format!("CASE WHEN t.{} THEN 'true' ELSE 'false' END", column.name),
                Kind::Ref(to) => format!(
                    "(SELECT r.clever_id FROM {} r WHERE r.id = t.{})",
                    tables::table(to).name,
                    column.name
                ),
            })
            .collect();
        let (archived, scope) = if table.in_district {
            (
                "CASE WHEN t.archived_at IS NULL THEN 0 ELSE 1 END",
                "t.district_id = $1",
            )
        } else {
            ("0", "t.id = $1")
        };
        let query = format!(
            "SELECT t.id, t.clever_id, {archived}, {} FROM {} t WHERE {scope} AND t.clever_id IS NOT NULL{}",
            columns.join(", "),
            table.name,
            // Manual classes and teachers belong to Freckle users, not to the sync.
            if matches!(table.entity, Entity::Class | Entity::Teacher) {
                " AND t.managed_by = 'clever'"
            } else {
                ""
            }
        );
        let school_column = table.columns.iter().position(|c| c.name == "school_id");
        let rows = sqlx::query(AssertSqlSafe(query))
            .bind(district_id)
            .fetch_all(pool)
            .await
            .map_err(sql(format!("reading {}", table.name)))?;
        let mut records = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = get(&row, 1, table.name)?;
            let values = (0..table.columns.len())
                .map(|i| get::<Option<String>>(&row, i + 3, table.name))
                .collect::<Result<Vec<_>, _>>()?;
            let school = match (table.entity, school_column) {
                (Entity::School, _) => Some(key.clone()),
                (_, Some(index)) => values[index].clone(),
                (_, None) => None,
            };
            records.insert(
                key,
                Existing {
                    id: get(&row, 0, table.name)?,
                    archived: get::<i64>(&row, 2, table.name)? != 0,
                    values,
                    school,
                },
            );
        }
        state.records.insert(table.entity, records);
    }
    for membership in &MEMBERSHIPS {
        let role = if membership.entity == Entity::ClassTeacher {
            "m.role"
        } else {
            "NULL"
        };
        let query = format!(
            "SELECT m.id, c.clever_id, u.clever_id, {role}, m.source FROM {} m \
             JOIN classes c ON c.id = m.class_id JOIN {} u ON u.id = m.{} \
             WHERE c.district_id = $1 AND m.ended_at IS NULL \
             AND (m.source = 'sis' OR m.source LIKE 'plugin:%')",
            membership.name,
            table(membership.member).name,
            membership.member_column,
        );
        let rows = sqlx::query(AssertSqlSafe(query))
            .bind(district_id)
            .fetch_all(pool)
            .await
            .map_err(sql(format!("reading {}", membership.name)))?;
        let mut open = HashMap::with_capacity(rows.len());
        for row in rows {
            open.insert(
                (
                    get(&row, 1, membership.name)?,
                    get(&row, 2, membership.name)?,
                ),
                ExistingMembership {
                    id: get(&row, 0, membership.name)?,
                    member: DesiredMember {
                        role: get(&row, 3, membership.name)?,
                        source: get(&row, 4, membership.name)?,
                    },
                },
            );
        }
        state.memberships.insert(membership.entity, open);
    }
    Ok(state)
}

fn get<'r, T>(row: &'r AnyRow, index: usize, table: &str) -> Result<T, LoadError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(index)
        .map_err(sql(format!("decoding a row of {table}")))
}

async fn last_committed_run(
    executor: impl sqlx::Executor<'_, Database = Any>,
    district_id: i64,
) -> Result<Option<i64>, LoadError> {
    sqlx::query_scalar(
        "SELECT MAX(id) FROM sync_runs WHERE district_id = $1 AND status IN ('committed', 'approved')",
    )
    .bind(district_id)
    .fetch_one(executor)
    .await
    .map_err(sql("reading run history"))
}

/// What a committed run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_id: i64,
    pub changes: usize,
    pub quarantined: usize,
}

/// Applies `plan` in one transaction and records it as run `pipeline`; the whole run commits or
/// nothing does. `status` is `committed` for a normal run, `approved` for an approved hold.
pub async fn apply(
    db: &Db,
    pipeline: &str,
    plan: &Plan,
    started_at: DateTime<Utc>,
) -> Result<RunOutcome, LoadError> {
    let mut tx = db.pool.begin().await.map_err(sql("starting the run"))?;
    let run_id = insert_run(&mut tx, pipeline, plan, started_at, "committed", None).await?;
    write_plan(&mut tx, run_id, plan).await?;
    tx.commit().await.map_err(sql("committing the run"))?;
    Ok(RunOutcome {
        run_id,
        changes: plan.change_count(),
        quarantined: plan.quarantine.len(),
    })
}

/// Stores a plan without applying it, for an admin to approve or discard.
pub async fn hold(
    db: &Db,
    pipeline: &str,
    plan: &Plan,
    started_at: DateTime<Utc>,
    reasons: &[String],
) -> Result<i64, LoadError> {
    let mut tx = db.pool.begin().await.map_err(sql("holding the run"))?;
    let district_id = ensure_district(&mut tx, plan, started_at).await?;
    let now = timestamp(Utc::now());
    let run_id: i64 = sqlx::query_scalar(
        "INSERT INTO sync_runs (district_id, pipeline, status, started_at, finished_at, changes, quarantined, counts, plan, error) \
         VALUES ($1, $2, 'held', $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(district_id)
    .bind(pipeline)
    .bind(timestamp(started_at))
    .bind(now)
    .bind(plan.change_count() as i64)
    .bind(plan.quarantine.len() as i64)
    .bind(serde_json::to_string(&plan.counts()).expect("counts serialise"))
    .bind(serde_json::to_string(plan).expect("plans serialise"))
    .bind(reasons.join("; "))
    .fetch_one(&mut *tx)
    .await
    .map_err(sql("recording the held run"))?;
    tx.commit().await.map_err(sql("holding the run"))?;
    Ok(run_id)
}

/// Applies a held run's plan if the DB has not moved since it was planned.
pub async fn approve(db: &Db, run: i64) -> Result<RunOutcome, LoadError> {
    let mut tx = db.pool.begin().await.map_err(sql("approving the run"))?;
    let (plan, district_id) = held_plan(&mut tx, run, "approved").await?;
    let now = last_committed_run(&mut *tx, district_id).await?;
    if now != plan.based_on_run {
        return Err(LoadError::Stale {
            run,
            planned: plan.based_on_run,
            now,
        });
    }
    sqlx::query("UPDATE sync_runs SET status = 'approved', finished_at = $1 WHERE id = $2")
        .bind(timestamp(Utc::now()))
        .bind(run)
        .execute(&mut *tx)
        .await
        .map_err(sql("approving the run"))?;
    write_plan(&mut tx, run, &plan).await?;
    tx.commit()
        .await
        .map_err(sql("committing the approved run"))?;
    Ok(RunOutcome {
        run_id: run,
        changes: plan.change_count(),
        quarantined: plan.quarantine.len(),
    })
}

/// Drops a held run's plan; nothing of it is applied.
pub async fn discard(db: &Db, run: i64) -> Result<(), LoadError> {
    let mut tx = db.pool.begin().await.map_err(sql("discarding the run"))?;
    held_plan(&mut tx, run, "discarded").await?;
    sqlx::query("UPDATE sync_runs SET status = 'discarded', finished_at = $1 WHERE id = $2")
        .bind(timestamp(Utc::now()))
        .bind(run)
        .execute(&mut *tx)
        .await
        .map_err(sql("discarding the run"))?;
    tx.commit().await.map_err(sql("discarding the run"))
}

async fn held_plan(
    tx: &mut Transaction<'_, Any>,
    run: i64,
    action: &'static str,
) -> Result<(Plan, i64), LoadError> {
    let row: Option<(String, Option<String>, i64)> =
        sqlx::query_as("SELECT status, plan, district_id FROM sync_runs WHERE id = $1")
            .bind(run)
            .fetch_optional(&mut **tx)
            .await
            .map_err(sql("reading the held run"))?;
    let Some((status, plan, district_id)) = row else {
        return Err(LoadError::NoSuchRun { run });
    };
    match (status.as_str(), plan) {
        ("held", Some(plan)) => {
            let plan = serde_json::from_str(&plan).map_err(|error| LoadError::Sql {
                step: format!("reading the plan of run {run}"),
                source: sqlx::Error::Decode(Box::new(error)),
            })?;
            Ok((plan, district_id))
        }
        _ => Err(LoadError::NotHeld {
            run,
            status,
            action,
        }),
    }
}

/// Records a run that failed before it could commit, so history shows it.
pub async fn record_failure(
    db: &Db,
    pipeline: &str,
    district: Option<&str>,
    started_at: DateTime<Utc>,
    error: &str,
) -> Result<i64, LoadError> {
    let district_id: Option<i64> = match district {
        Some(district) => sqlx::query_scalar("SELECT id FROM districts WHERE clever_id = $1")
            .bind(district)
            .fetch_optional(&db.pool)
            .await
            .map_err(sql("reading the district"))?,
        None => None,
    };
    sqlx::query_scalar(
        "INSERT INTO sync_runs (district_id, pipeline, status, started_at, finished_at, error) \
         VALUES ($1, $2, 'failed', $3, $4, $5) RETURNING id",
    )
    .bind(district_id)
    .bind(pipeline)
    .bind(timestamp(started_at))
    .bind(timestamp(Utc::now()))
    .bind(error)
    .fetch_one(&db.pool)
    .await
    .map_err(sql("recording the failed run"))
}

async fn ensure_district(
    tx: &mut Transaction<'_, Any>,
    plan: &Plan,
    at: DateTime<Utc>,
) -> Result<i64, LoadError> {
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM districts WHERE clever_id = $1")
        .bind(&plan.district)
        .fetch_optional(&mut **tx)
        .await
        .map_err(sql("reading the district"))?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let name = plan
        .records
        .iter()
        .find(|c| c.entity == Entity::District)
        .and_then(|c| c.values.first().cloned().flatten())
        .unwrap_or_else(|| plan.district.clone());
    let now = timestamp(at);
    sqlx::query_scalar(
        "INSERT INTO districts (clever_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
    )
    .bind(&plan.district)
    .bind(name)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(sql("creating the district"))
}

async fn insert_run(
    tx: &mut Transaction<'_, Any>,
    pipeline: &str,
    plan: &Plan,
    started_at: DateTime<Utc>,
    status: &str,
    error: Option<&str>,
) -> Result<i64, LoadError> {
    let district_id = ensure_district(tx, plan, started_at).await?;
    sqlx::query_scalar(
        "INSERT INTO sync_runs (district_id, pipeline, status, started_at, finished_at, changes, quarantined, counts, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(district_id)
    .bind(pipeline)
    .bind(status)
    .bind(timestamp(started_at))
    .bind(timestamp(Utc::now()))
    .bind(plan.change_count() as i64)
    .bind(plan.quarantine.len() as i64)
    .bind(serde_json::to_string(&plan.counts()).expect("counts serialise"))
    .bind(error)
    .fetch_one(&mut **tx)
    .await
    .map_err(sql("recording the run"))
}

/// Writes every change of `plan`, its decisions and quarantine, as run `run_id`.
async fn write_plan(
    tx: &mut Transaction<'_, Any>,
    run_id: i64,
    plan: &Plan,
) -> Result<(), LoadError> {
    let now = timestamp(Utc::now());
    let district_id = ensure_district(tx, plan, Utc::now()).await?;
    // Row ids by entity and Clever id: existing rows first, then rows this run creates.
    let mut ids: HashMap<(Entity, String), i64> = HashMap::new();
    for table in TABLES {
        let scope = if table.in_district {
            "district_id = $1"
        } else {
            "id = $1"
        };
        let rows: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, clever_id FROM {} WHERE {scope} AND clever_id IS NOT NULL",
            table.name
        )))
        .bind(district_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(sql(format!("reading {} ids", table.name)))?;
        ids.extend(rows.into_iter().map(|(id, key)| ((table.entity, key), id)));
    }

    for change in &plan.records {
        let table = table(change.entity);
        let resolve = |ids: &HashMap<(Entity, String), i64>, to: Entity, key: &Option<String>| {
            key.as_ref()
                .map(|key| {
                    ids.get(&(to, key.clone()))
                        .copied()
                        .ok_or_else(|| LoadError::Dangling {
                            entity: to,
                            key: key.clone(),
                        })
                })
                .transpose()
        };
        let step = || format!("writing {} {}", change.entity, change.key);
        // The district row exists already: the run hangs on it (see `ensure_district`).
        let action = match change.action {
            RecordAction::Create if change.entity == Entity::District => RecordAction::Update,
            action => action,
        };
        let existing_id = change
            .id
            .or_else(|| ids.get(&(change.entity, change.key.clone())).copied());
        match action {
            RecordAction::Create | RecordAction::Update | RecordAction::Restore => {
                let mut assignments = Vec::new();
                let mut columns = Vec::new();
                for (index, column) in table.columns.iter().enumerate() {
                    columns.push(column.name);
                    assignments.push(format!("{} = ${}", column.name, index + 1));
                }
                let n = table.columns.len();
                let query = match action {
                    RecordAction::Create if table.in_district => format!(
                        "INSERT INTO {} ({}, clever_id, created_at, updated_at, district_id) VALUES ({}, ${}, ${}, ${}, ${}) RETURNING id",
                        table.name,
                        columns.join(", "),
                        (1..=n)
                            .map(|i| format!("${i}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        n + 1,
                        n + 2,
                        n + 2,
                        n + 3
                    ),
                    RecordAction::Create => format!(
                        "INSERT INTO {} ({}, clever_id, created_at, updated_at) VALUES ({}, ${}, ${}, ${}) RETURNING id",
                        table.name,
                        columns.join(", "),
                        (1..=n)
                            .map(|i| format!("${i}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        n + 1,
                        n + 2,
                        n + 2
                    ),
                    _ => format!(
                        "UPDATE {} SET {}, updated_at = ${}{} WHERE id = ${} RETURNING id",
                        table.name,
                        assignments.join(", "),
                        n + 2,
                        if table.in_district {
                            ", archived_at = NULL, archived_reason = NULL"
                        } else {
                            ""
                        },
                        n + 1
                    ),
                };
                let mut query = sqlx::query_scalar::<_, i64>(AssertSqlSafe(query));
                for (column, value) in table.columns.iter().zip(&change.values) {
                    query = match column.kind {
                        Kind::Text => query.bind(value.clone()),
                        Kind::Bool => query.bind(value.as_deref() == Some("true")),
                        Kind::Ref(to) => query.bind(resolve(&ids, to, value)?),
                    };
                }
                query = match action {
                    RecordAction::Create => query.bind(change.key.clone()),
                    _ => query.bind(existing_id.expect("updates name their row")),
                };
                query = query.bind(now.clone());
                if action == RecordAction::Create && table.in_district {
                    query = query.bind(district_id);
                }
                let id = query.fetch_one(&mut **tx).await.map_err(sql(step()))?;
                ids.insert((change.entity, change.key.clone()), id);
            }
            RecordAction::Archive => {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {} SET archived_at = $1, archived_reason = $2, updated_at = $1 WHERE id = $3",
                    table.name
                )))
                .bind(now.clone())
                .bind(change.reason.clone())
                .bind(change.id.expect("archives name their row"))
                .execute(&mut **tx)
                .await
                .map_err(sql(step()))?;
            }
        }
        record_change(
            tx,
            run_id,
            change.entity,
            &change.key,
            None,
            action_name(change.action),
            &change.reason,
            &change.author,
            (!change.changed.is_empty()).then(|| change.changed.join(",")),
        )
        .await?;
    }

    for change in &plan.memberships {
        let table = membership_table(change.entity);
        let step = || {
            format!(
                "writing {} {} in {}",
                change.entity, change.member, change.class
            )
        };
        match change.action {
            MembershipAction::Start => {
                let class = ids
                    .get(&(Entity::Class, change.class.clone()))
                    .copied()
                    .ok_or_else(|| LoadError::Dangling {
                        entity: Entity::Class,
                        key: change.class.clone(),
                    })?;
                let member = ids
                    .get(&(table.member, change.member.clone()))
                    .copied()
                    .ok_or_else(|| LoadError::Dangling {
                        entity: table.member,
                        key: change.member.clone(),
                    })?;
                let query = if change.entity == Entity::ClassTeacher {
                    format!(
                        "INSERT INTO {} (class_id, {}, source, started_at, role) VALUES ($1, $2, $3, $4, $5)",
                        table.name, table.member_column
                    )
                } else {
                    format!(
                        "INSERT INTO {} (class_id, {}, source, started_at) VALUES ($1, $2, $3, $4)",
                        table.name, table.member_column
                    )
                };
                let mut query = sqlx::query(AssertSqlSafe(query))
                    .bind(class)
                    .bind(member)
                    .bind(change.source.clone())
                    .bind(now.clone());
                if change.entity == Entity::ClassTeacher {
                    query = query.bind(change.role.clone());
                }
                query.execute(&mut **tx).await.map_err(sql(step()))?;
            }
            MembershipAction::End => {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {} SET ended_at = $1, ended_reason = $2 WHERE id = $3",
                    table.name
                )))
                .bind(now.clone())
                .bind(change.reason.clone())
                .bind(change.id.expect("ends name their row"))
                .execute(&mut **tx)
                .await
                .map_err(sql(step()))?;
            }
            MembershipAction::Update => {
                let id = change.id.expect("updates name their row");
                let query = if change.entity == Entity::ClassTeacher {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {} SET source = $1, role = $2 WHERE id = $3",
                        table.name
                    )))
                    .bind(change.source.clone())
                    .bind(change.role.clone())
                    .bind(id)
                } else {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {} SET source = $1 WHERE id = $2",
                        table.name
                    )))
                    .bind(change.source.clone())
                    .bind(id)
                };
                query.execute(&mut **tx).await.map_err(sql(step()))?;
            }
        }
        record_change(
            tx,
            run_id,
            change.entity,
            &change.class,
            Some(&change.member),
            membership_action_name(change.action),
            &change.reason,
            &change.author,
            change.role.clone(),
        )
        .await?;
    }

    for teacher in &plan.new_accounts {
        let teacher_id = ids
            .get(&(Entity::Teacher, teacher.clone()))
            .copied()
            .ok_or_else(|| LoadError::Dangling {
                entity: Entity::Teacher,
                key: teacher.clone(),
            })?;
        // A teacher who was archived and came back keeps the account and the email they had.
        sqlx::query(
            "INSERT INTO teacher_accounts (teacher_id, login_state, created_at) VALUES ($1, 'invited', $2) \
             ON CONFLICT (teacher_id) DO NOTHING",
        )
        .bind(teacher_id)
        .bind(now.clone())
        .execute(&mut **tx)
        .await
        .map_err(sql("creating a teacher account"))?;
        sqlx::query(
            "INSERT INTO email_outbox (district_id, run_id, kind, teacher_id, recipient, status, created_at) \
             SELECT $1, $2, 'welcome', t.id, t.email, 'pending', $3 FROM teachers t WHERE t.id = $4 \
             ON CONFLICT (kind, teacher_id) DO NOTHING",
        )
        .bind(district_id)
        .bind(run_id)
        .bind(now.clone())
        .bind(teacher_id)
        .execute(&mut **tx)
        .await
        .map_err(sql("queueing a welcome email"))?;
    }

    for decision in &plan.decisions {
        sqlx::query(
            "INSERT INTO sync_decisions (run_id, entity, clever_id, action, author, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(run_id)
        .bind(decision.entity.as_str())
        .bind(decision.id.clone())
        .bind(decision.action.as_str())
        .bind(decision.author.clone())
        .bind(decision.detail.clone())
        .execute(&mut **tx)
        .await
        .map_err(sql("recording a decision"))?;
    }
    for record in &plan.quarantine {
        sqlx::query(
            "INSERT INTO quarantine (run_id, kind, clever_id, reason, suggested_fix, record) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(run_id)
        .bind(record.kind.clone())
        .bind(record.id.clone())
        .bind(record.reason.clone())
        .bind(record.suggested_fix.clone())
        .bind(record.record.clone())
        .execute(&mut **tx)
        .await
        .map_err(sql("recording a quarantined record"))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn record_change(
    tx: &mut Transaction<'_, Any>,
    run_id: i64,
    entity: Entity,
    key: &str,
    member: Option<&str>,
    action: &str,
    reason: &str,
    author: &str,
    detail: Option<String>,
) -> Result<(), LoadError> {
    sqlx::query(
        "INSERT INTO sync_changes (run_id, entity, clever_id, member_id, action, reason, author, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(run_id)
    .bind(entity.as_str())
    .bind(key.to_owned())
    .bind(member.map(str::to_owned))
    .bind(action.to_owned())
    .bind(reason.to_owned())
    .bind(author.to_owned())
    .bind(detail)
    .execute(&mut **tx)
    .await
    .map_err(sql("recording a change"))?;
    Ok(())
}

/// One line of run history.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub id: i64,
    pub status: String,
    pub started_at: String,
    pub changes: i64,
    pub quarantined: i64,
    pub error: Option<String>,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {:>5}  {:<9}  {}  {} changes, {} quarantined",
            self.id, self.status, self.started_at, self.changes, self.quarantined
        )?;
        if let Some(error) = &self.error {
            write!(f, "  ({error})")?;
        }
        Ok(())
    }
}

/// The pipeline's most recent runs, newest first.
pub async fn history(db: &Db, pipeline: &str, limit: i64) -> Result<Vec<RunSummary>, LoadError> {
    let rows: Vec<(i64, String, String, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, status, started_at, changes, quarantined, error FROM sync_runs \
         WHERE pipeline = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(pipeline)
    .bind(limit)
    .fetch_all(&db.pool)
    .await
    .map_err(sql("reading run history"))?;
    Ok(rows
        .into_iter()
        .map(
            |(id, status, started_at, changes, quarantined, error)| RunSummary {
                id,
                status,
                started_at,
                changes,
                quarantined,
                error,
            },
        )
        .collect())
}

/// The district the pipeline's latest run loaded, if it has run.
pub async fn district_of_pipeline(db: &Db, pipeline: &str) -> Result<Option<String>, LoadError> {
    sqlx::query_scalar(
        "SELECT d.clever_id FROM sync_runs r JOIN districts d ON d.id = r.district_id \
         WHERE r.pipeline = $1 ORDER BY r.id DESC LIMIT 1",
    )
    .bind(pipeline)
    .fetch_optional(&db.pool)
    .await
    .map_err(sql("reading run history"))
}
