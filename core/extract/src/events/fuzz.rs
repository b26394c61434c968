//! Fuzzing Clever's events as an events sync applies them to the raw roster: any type, any
//! record (valid, changed, of another district, without an id, not JSON of a record at all).
//! The roster still packs and reads back, the snapshot keeps its promises, and applying the
//! same events twice changes nothing.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::clever::EventData;
use crate::fuzz::{cases, check_snapshot, odd_json, odd_text};
use crate::wire::fuzz::{DISTRICT_ID, apply as mutate, mutation, page, record};
use rosterflow_model::is_clever_id;

/// An event's type: the ones rosterflow uses, others Clever sends, and garbage.
fn kind() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "users.created",
        "users.updated",
        "users.deleted",
        "sections.created",
        "sections.updated",
        "sections.deleted",
        "schools.updated",
        "schools.deleted",
        "terms.created",
        "courses.deleted",
        "districts.updated",
        "districts.deleted",
        "resources.created",
        "users",
        ".created",
        "users.",
        "users.created.extra",
    ])
    .prop_map(str::to_owned);
    prop_oneof![6 => known, 1 => odd_text()]
}

/// An event as Clever could send it, or not.
fn event() -> impl Strategy<Value = Event> {
    let collection = prop::sample::select(Collection::ALL.to_vec());
    let object = prop_oneof![
        4 => collection.prop_flat_map(record).boxed(),
        3 => (
            prop::sample::select(Collection::ALL.to_vec()).prop_flat_map(record),
            prop::collection::vec(mutation(), 1..3),
        )
            .prop_map(|(mut record, mutations)| {
                for m in &mutations {
                    mutate(&mut record, m);
                }
                record
            })
            .boxed(),
        1 => odd_json().boxed(),
    ];
    (odd_text(), kind(), object).prop_map(|(id, kind, object)| Event {
        id,
        kind,
        data: EventData {
            object: serde_json::value::to_raw_value(&object).expect("any JSON value"),
        },
    })
}

/// A raw roster to start from: a district whose pages are valid.
fn roster() -> impl Strategy<Value = SnapshotBuilder> {
    let records = |c: Collection| prop::collection::vec(record(c), 0..6);
    (
        records(Collection::Schools),
        records(Collection::Sections),
        records(Collection::Users),
    )
        .prop_map(|(schools, sections, users)| {
            let mut builder = SnapshotBuilder::new(Some(DISTRICT_ID));
            let district = page(&[json!({"id": DISTRICT_ID, "name": "D"})]);
            for (collection, body) in [
                (Collection::Districts, district),
                (Collection::Schools, page(&schools)),
                (Collection::Sections, page(&sections)),
                (Collection::Users, page(&users)),
            ] {
                builder
                    .add_page(collection, body.as_bytes(), "page")
                    .expect("a valid page");
            }
            builder
        })
}

/// The roster with `events` applied, through a checkpoint and back, as the next run sees it.
fn applied(
    roster: &SnapshotBuilder,
    events: &[Event],
) -> Result<(SnapshotBuilder, Applied), TestCaseError> {
    let mut roster: SnapshotBuilder =
        packed::unpack(&packed::pack(roster).expect("packs")).expect("reads back");
    let counts = apply(&mut roster, events, DISTRICT_ID);
    prop_assert_eq!(counts.events + counts.skipped, events.len());
    let roster = packed::unpack(&packed::pack(&roster).expect("packs")).expect("reads back");
    Ok((roster, counts))
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn any_events_keep_the_snapshots_promises(
        roster in roster(),
        events in prop::collection::vec(event(), 0..12),
    ) {
        let (once, counts) = applied(&roster, &events)?;
        let (twice, _) = applied(&once, &events)?;
        // An event may take the district away (`districts.deleted`): a clear error then.
        let first = once.finish(false);
        if let Ok(snapshot) = &first {
            check_snapshot(snapshot, is_clever_id)?;
        }
        let second = twice.finish(false);
        let shown = |result: &Result<Snapshot, ExtractError>| match result {
            Ok(snapshot) => serde_json::to_string(snapshot).expect("JSON"),
            Err(error) => error.to_string(),
        };
        // Every event carries its whole record: applying them again changes nothing.
        prop_assert_eq!(shown(&first), shown(&second), "{} events applied", counts.events);
    }
}

/// An event for a record whose id is not a Clever id: quarantined once, however often it
/// comes, and gone when it is deleted.
#[test]
fn an_event_for_a_record_that_is_no_clever_id_is_quarantined_once() {
    let event = |kind: &str, object: Value| Event {
        id: "e".into(),
        kind: kind.into(),
        data: EventData {
            object: serde_json::value::to_raw_value(&object).expect("JSON"),
        },
    };
    let bad = json!({"id": "../x", "roles": {"student": {}}});
    let mut roster = SnapshotBuilder::new(Some(DISTRICT_ID));
    let district = page(&[json!({"id": DISTRICT_ID, "name": "D"})]);
    roster
        .add_page(Collection::Districts, district.as_bytes(), "page")
        .expect("a district");
    for _ in 0..3 {
        apply(
            &mut roster,
            &[event("users.updated", bad.clone())],
            DISTRICT_ID,
        );
    }
    let quarantined = |roster: &SnapshotBuilder| {
        let snapshot: SnapshotBuilder =
            packed::unpack(&packed::pack(roster).expect("packs")).expect("reads");
        snapshot.finish(false).expect("a snapshot").quarantine.len()
    };
    assert_eq!(quarantined(&roster), 1);
    apply(&mut roster, &[event("users.deleted", bad)], DISTRICT_ID);
    assert_eq!(quarantined(&roster), 0);
}
