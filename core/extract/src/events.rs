//! Incremental pulls through Clever's Events API (`sync = "events"`).
//!
//! The first run pulls the whole district, as a full sync does, after noting Clever's newest
//! event id (so that no change made during the pull is missed: replaying an event is harmless).
//! It keeps the raw roster (every record as the source sent it, before transforms) with that
//! cursor in a [`Checkpoint`]. Each later run pages the events after the cursor and applies
//! them to the raw roster (each event carries its whole record, so the last event of a record
//! decides, and applying twice changes nothing), then hands the roster on like a full pull: the
//! transforms see the district as a full sync would show it.
//!
//! A full pull happens instead when there is no checkpoint, when the last full pull is older
//! than `full_sync_every_days`, when the cursor is close to Clever's 30 days of events, or when
//! Clever refuses the cursor; the pull says which, and why. The checkpoint is saved only with
//! the run that used it, in the same transaction (see the `rosterflow-store` crate).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rustc_hash::FxHashSet;

use super::clever::{self, Event};
use super::wire::{self, SnapshotBuilder};
use super::{Collection, ExtractError};
use crate::config::CleverSourceConfig;
use rosterflow_model::{Id, Snapshot, packed};

/// Clever keeps events for 30 days; a cursor saved longer ago than this is not trusted.
const CURSOR_TRUSTED_DAYS: i64 = 29;

/// Where an events sync stands after a run.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The newest event applied (none when Clever's feed was empty).
    pub cursor: Option<String>,
    /// The raw roster as of that event ([`pack`](packed::pack)ed [`SnapshotBuilder`]).
    pub roster: Vec<u8>,
    /// When the district was last pulled whole.
    pub full_sync_at: DateTime<Utc>,
    /// When the checkpoint was made.
    pub saved_at: DateTime<Utc>,
}

/// How a run read the source. The names (`full`, `events`) are stored with the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum PullKind {
    /// Every collection.
    Full,
    /// The events since the last run.
    Events,
}

impl PullKind {
    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }
}

/// What an events-mode pull brought.
#[derive(Debug)]
pub struct Pulled {
    pub snapshot: Snapshot,
    pub kind: PullKind,
    /// Saved with the run that applies this pull.
    pub checkpoint: Checkpoint,
    /// Why a full pull happened, or what the events were.
    pub note: String,
}

/// Events applied and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub events: usize,
    /// Events of types rosterflow does not use (resources, ...).
    pub skipped: usize,
}

/// Pulls `district`: the events since `previous`, or the whole district when a full pull is
/// due.
pub async fn pull(
    config: &CleverSourceConfig,
    district: &str,
    previous: Option<Checkpoint>,
    now: DateTime<Utc>,
) -> Result<Pulled, ExtractError> {
    let full_reason = match &previous {
        None => Some("first events sync: the whole district".to_owned()),
        Some(p) if now - p.full_sync_at >= Duration::days(config.full_sync_every_days.into()) => {
            Some(format!(
                "periodic full sync (every {} days)",
                config.full_sync_every_days
            ))
        }
        Some(p) if now - p.saved_at >= Duration::days(CURSOR_TRUSTED_DAYS) => Some(format!(
            "the last run is over {CURSOR_TRUSTED_DAYS} days old: Clever may have dropped its events"
        )),
        Some(_) => None,
    };
    let previous = match (full_reason, previous) {
        (None, Some(previous)) => previous,
        (reason, _) => {
            let reason = reason.expect("a full pull has a reason");
            return full(config, district, now, reason).await;
        }
    };
    // A cursor that is no Clever id did not come from Clever's feed: it is never sent.
    if let Some(cursor) = previous
        .cursor
        .as_deref()
        .filter(|cursor| !rosterflow_model::is_clever_id(cursor))
    {
        let reason = format!(
            "the stored events cursor {} is not a Clever event id: a full sync instead",
            rosterflow_model::text::quoted(cursor)
        );
        tracing::warn!(district, "{reason}");
        return full(config, district, now, reason).await;
    }
    let events = match clever::events_since(config, previous.cursor.as_deref()).await {
        Ok(events) => events,
        Err(ExtractError::Status {
            status: status @ (400 | 404 | 410),
            message,
            ..
        }) => {
            let reason = format!(
                "Clever no longer knows event {} ({status}: {message}): a full sync instead",
                previous.cursor.as_deref().unwrap_or("(none)")
            );
            tracing::warn!(district, "{reason}");
            return full(config, district, now, reason).await;
        }
        Err(error) => return Err(error),
    };
    let cursor = events
        .last()
        .map(|event| event.id.clone())
        .or(previous.cursor);
    let district = district.to_owned();
    let (snapshot, roster, applied) = tokio::task::spawn_blocking(move || {
        let mut roster: SnapshotBuilder =
            packed::unpack(&previous.roster).map_err(|source| ExtractError::Roster { source })?;
        let applied = apply(&mut roster, &events, &district);
        let packed = packed::pack(&roster).map_err(|source| ExtractError::Roster { source })?;
        Ok::<_, ExtractError>((roster.finish(false)?, packed, applied))
    })
    .await??;
    Ok(Pulled {
        snapshot,
        kind: PullKind::Events,
        note: format!(
            "{} event(s) applied, {} of unused types skipped",
            applied.events, applied.skipped
        ),
        checkpoint: Checkpoint {
            cursor,
            roster,
            full_sync_at: previous.full_sync_at,
            saved_at: now,
        },
    })
}

/// A full pull, with the newest event id noted first.
async fn full(
    config: &CleverSourceConfig,
    district: &str,
    now: DateTime<Utc>,
    reason: String,
) -> Result<Pulled, ExtractError> {
    let cursor = clever::newest_event(config).await?;
    let roster = clever::pull_roster(config, Some(district), None).await?;
    let (snapshot, packed) = tokio::task::spawn_blocking(move || {
        let packed = packed::pack(&roster).map_err(|source| ExtractError::Roster { source })?;
        Ok::<_, ExtractError>((roster.finish(false)?, packed))
    })
    .await??;
    Ok(Pulled {
        snapshot,
        kind: PullKind::Full,
        note: reason,
        checkpoint: Checkpoint {
            cursor,
            roster: packed,
            full_sync_at: now,
            saved_at: now,
        },
    })
}

/// Applies `events` to the raw roster, in order. Every event carries its whole record, so the
/// last event of each record decides: a creation or update replaces it, a deletion removes it.
/// A record of another district is refused as a full pull refuses it.
fn apply(roster: &mut SnapshotBuilder, events: &[Event], district: &str) -> Applied {
    let mut applied = Applied::default();
    // (collection, id) -> the record after its last event, or `None` when deleted.
    let mut last: BTreeMap<(Collection, Id), Option<&str>> = BTreeMap::new();
    for event in events {
        let used = event.kind.split_once('.').and_then(|(name, action)| {
            let collection = Collection::parse(name)?;
            let id = wire::record_id(event.data.object.get())?;
            Some((collection, id, action == "deleted"))
        });
        match used {
            Some((collection, id, deleted)) => {
                applied.events += 1;
                last.insert(
                    (collection, id),
                    (!deleted).then(|| event.data.object.get()),
                );
            }
            None => applied.skipped += 1,
        }
    }
    let mut touched: BTreeMap<Collection, FxHashSet<Id>> = BTreeMap::new();
    for (collection, id) in last.keys() {
        touched.entry(*collection).or_default().insert(id.clone());
    }
    roster.remove(&touched);
    for ((collection, id), record) in last {
        let Some(record) = record else {
            continue;
        };
        let page = format!(r#"{{"data":[{{"data":{record}}}]}}"#);
        let origin = format!("event for {} {id}", collection.record_kind());
        match wire::parse_page(collection, page.as_bytes(), &origin, Some(district)) {
            Ok(part) => roster.merge(collection, part),
            // A record is already valid JSON: parse_page only fails on the page around it.
            Err(error) => tracing::warn!(%error, "an event's record could not be read"),
        }
    }
    roster.sort_by_id();
    applied
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are stored with each run.
    #[test]
    fn pull_kinds_keep_their_stored_names() {
        let names: Vec<&str> = <PullKind as strum::VariantArray>::VARIANTS
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(names, ["full", "events"]);
    }
}
