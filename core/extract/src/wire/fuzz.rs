//! Fuzzing Clever's JSON pages: arbitrary bytes, and valid pages of every collection with
//! fields removed, of the wrong type, odd or huge, duplicated, or cut short. Whatever comes, a
//! page is read or refused with a clear error, and a snapshot keeps its promises
//! ([`check_snapshot`]): nothing whose id is not a Clever id is loaded.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::fuzz::{cases, check_snapshot, odd_json, odd_text};

pub(crate) const DISTRICT_ID: &str = "5a0c91b95c7cc000010d417c";

/// A few Clever ids, so that records name each other and some come twice.
pub(crate) fn clever_id() -> impl Strategy<Value = String> {
    (0u8..12).prop_map(|n| format!("5a0c91b95c7cc000010d4{n:03x}"))
}

/// An id as a page may bring it: mostly a Clever id, sometimes anything.
pub(crate) fn wire_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => clever_id().prop_map(Value::from),
        1 => odd_text().prop_map(Value::from),
        1 => odd_json(),
    ]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[A-Za-z][A-Za-z .'-]{0,12}".prop_map(Value::from),
        1 => odd_text().prop_map(Value::from),
    ]
}

fn ids(max: usize) -> impl Strategy<Value = Value> {
    prop::collection::vec(wire_id(), 0..max).prop_map(Value::from)
}

/// A valid record of `collection`, as Clever sends it.
pub(crate) fn record(collection: Collection) -> BoxedStrategy<Value> {
    let district = prop_oneof![
        8 => Just(Value::from(DISTRICT_ID)),
        1 => Just(Value::from("5a0c91b95c7cc000010d4100")),
        1 => Just(Value::Null),
    ];
    match collection {
        Collection::Districts => (Just(DISTRICT_ID), text())
            .prop_map(|(id, name)| json!({"id": id, "name": name}))
            .boxed(),
        Collection::Schools => (wire_id(), district, text(), text(), text())
            .prop_map(|(id, district, name, sis_id, grade)| {
                json!({"id": id, "district": district, "name": name, "sis_id": sis_id,
                       "school_number": "12", "state_id": "", "low_grade": grade,
                       "high_grade": "12"})
            })
            .boxed(),
        Collection::Terms => (wire_id(), district, text())
            .prop_map(|(id, district, name)| {
                json!({"id": id, "district": district, "name": name,
                       "start_date": "2026-08-15", "end_date": "2027-06-10"})
            })
            .boxed(),
        Collection::Courses => (wire_id(), district, text())
            .prop_map(|(id, district, name)| {
                json!({"id": id, "district": district, "name": name, "number": "M3"})
            })
            .boxed(),
        Collection::Sections => (
            (wire_id(), district, wire_id(), text(), text()),
            (wire_id(), wire_id(), wire_id(), ids(4), ids(8)),
        )
            .prop_map(
                |((id, district, school, name, subject), (term, course, teacher, teachers, students))| {
                    json!({"id": id, "district": district, "school": school, "name": name,
                           "sis_id": "S-1", "subject": subject, "grade": "3", "period": "2",
                           "section_number": "1", "term_id": term, "course": course,
                           "teacher": teacher, "teachers": teachers, "students": students,
                           "ext": {"band": "2"}})
                },
            )
            .boxed(),
        Collection::Users => {
            let role = prop_oneof![
                (wire_id(), text()).prop_map(|(school, grade)| json!({"student": {
                    "sis_id": "1001", "state_id": "ST-1", "student_number": "1001",
                    "grade": grade, "school": school, "email": "s@example.org"}})),
                (wire_id(), text()).prop_map(|(school, title)| json!({"teacher": {
                    "sis_id": "T-1", "state_id": "", "teacher_number": "9", "title": title,
                    "school": school}})),
                Just(json!({"district_admin": {"title": "Superintendent"}})),
                Just(json!({"staff": {"title": "Principal"}})),
                Just(json!({"contact": {"phone": ""}})),
                wire_id().prop_map(|school| json!({
                    "student": {"school": school}, "teacher": {"school": school}})),
                Just(json!({})),
            ];
            (wire_id(), district, text(), text(), role)
                .prop_map(|(id, district, first, last, roles)| {
                    json!({"id": id, "district": district, "email": "u@example.org",
                           "name": {"first": first, "middle": null, "last": last},
                           "roles": roles})
                })
                .boxed()
        }
    }
}

/// A change to a record: a field removed, replaced by any value, or nested deeper.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    Remove(usize),
    Replace(usize, Value),
    /// Goes into the field's value (an object or a list) and changes something there.
    Inside(usize, Box<Mutation>),
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    let leaf = prop_oneof![
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), odd_json()).prop_map(|(at, value)| Mutation::Replace(at, value)),
    ];
    leaf.prop_recursive(2, 4, 1, |inner| {
        (any::<usize>(), inner).prop_map(|(at, m)| Mutation::Inside(at, Box::new(m)))
    })
}

pub(crate) fn apply(value: &mut Value, mutation: &Mutation) {
    let at = match mutation {
        Mutation::Remove(at) | Mutation::Replace(at, _) | Mutation::Inside(at, _) => *at,
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(at % map.len()).cloned().expect("in range");
            match mutation {
                Mutation::Remove(_) => {
                    map.remove(&key);
                }
                Mutation::Replace(_, new) => {
                    map.insert(key, new.clone());
                }
                Mutation::Inside(_, inner) => apply(map.get_mut(&key).expect("a key"), inner),
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = at % items.len();
            match mutation {
                Mutation::Remove(_) => {
                    items.remove(i);
                }
                Mutation::Replace(_, new) => items[i] = new.clone(),
                Mutation::Inside(_, inner) => apply(&mut items[i], inner),
            }
        }
        other => {
            if let Mutation::Replace(_, new) = mutation {
                *other = new.clone();
            }
        }
    }
}

/// What happens to the text of a page after it is written.
#[derive(Debug, Clone)]
pub(crate) enum Damage {
    None,
    /// A key written twice: `"id":"x"` becomes `"id":"x","id":<value>`.
    DuplicateKey(usize, Value),
    /// Cut after some bytes, maybe inside a character.
    Truncate(usize),
    /// A byte changed.
    Flip(usize, u8),
}

pub(crate) fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        2 => (any::<usize>(), odd_json()).prop_map(|(at, v)| Damage::DuplicateKey(at, v)),
        1 => any::<usize>().prop_map(Damage::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Flip(at, b)),
    ]
}

pub(crate) fn damaged(text: String, damage: &Damage) -> Vec<u8> {
    match damage {
        Damage::None => text.into_bytes(),
        Damage::DuplicateKey(at, value) => {
            // Any `"key":` of the text.
            let keys: Vec<(usize, usize)> = text
                .match_indices("\":")
                .filter_map(|(end, _)| {
                    let start = text[..end].rfind('"')?;
                    Some((start, end + 2))
                })
                .collect();
            if keys.is_empty() {
                return text.into_bytes();
            }
            let (start, end) = keys[at % keys.len()];
            let key = &text[start..end];
            format!("{}{key}{value},{}", &text[..start], &text[start..]).into_bytes()
        }
        Damage::Truncate(at) => {
            let mut bytes = text.into_bytes();
            bytes.truncate(at % (bytes.len() + 1));
            bytes
        }
        Damage::Flip(at, byte) => {
            let mut bytes = text.into_bytes();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = *byte;
            }
            bytes
        }
    }
}

/// A list page of `records`, with a `next` link.
pub(crate) fn page(records: &[Value]) -> String {
    let data: Vec<Value> = records
        .iter()
        .map(|r| json!({"data": r, "uri": "/v3.0/x"}))
        .collect();
    json!({"data": data, "links": [{"rel": "next", "uri": "/v3.0/users?starting_after=x"}]})
        .to_string()
}

/// Records of `collection`, each maybe changed.
fn mutated_records(collection: Collection) -> impl Strategy<Value = Vec<Value>> {
    let one = (record(collection), prop::collection::vec(mutation(), 0..3)).prop_map(
        |(mut record, mutations)| {
            for m in &mutations {
                apply(&mut record, m);
            }
            record
        },
    );
    prop::collection::vec(prop_oneof![3 => record(collection), 2 => one], 0..8)
}

/// A whole district: a page per collection, each maybe damaged.
fn district() -> impl Strategy<Value = Vec<(Collection, Vec<u8>)>> {
    let collection = |c: Collection| {
        (mutated_records(c), damage())
            .prop_map(move |(records, damage)| (c, damaged(page(&records), &damage)))
    };
    (
        (collection(Collection::Districts), any::<bool>()),
        collection(Collection::Schools),
        collection(Collection::Terms),
        collection(Collection::Courses),
        collection(Collection::Sections),
        collection(Collection::Users),
    )
        .prop_map(|((d, clean), s, t, c, se, u)| {
            // Mostly one clean district, so that the rest is read.
            let districts = if clean {
                (
                    Collection::Districts,
                    page(&[json!({"id": DISTRICT_ID, "name": "D"})]).into_bytes(),
                )
            } else {
                d
            };
            vec![districts, s, t, c, se, u]
        })
}

/// Reads `pages` as a replay does; a page refused is a clear error, never a panic.
pub(crate) fn read(
    pages: &[(Collection, Vec<u8>)],
    expected: Option<&str>,
    synthesize: bool,
) -> Result<Option<Snapshot>, TestCaseError> {
    let mut builder = SnapshotBuilder::new(expected);
    for (collection, body) in pages {
        match builder.add_page(*collection, body, "page") {
            Ok(info) => prop_assert!(info.next.is_none() || info.records > 0),
            Err(error) => {
                let message = error.to_string();
                prop_assert!(message.starts_with("page: "), "{}", message);
                prop_assert!(message.len() < 2000, "a message of {} bytes", message.len());
            }
        }
    }
    match builder.finish(synthesize) {
        Ok(snapshot) => Ok(Some(snapshot)),
        Err(error) => {
            prop_assert!(!error.to_string().is_empty());
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes_are_a_page_or_a_clear_error(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        collection in prop::sample::select(Collection::ALL.to_vec()),
    ) {
        let _ = outline(&bytes, "page");
        if let Err(error) = parse_page(collection, &bytes, "page", Some(DISTRICT_ID)) {
            prop_assert!(error.to_string().starts_with("page: not a Clever list page"));
        }
        let _ = record_id(&String::from_utf8_lossy(&bytes));
        let _ = teacher_of_user(&String::from_utf8_lossy(&bytes), DISTRICT_ID);
    }

    #[test]
    fn arbitrary_json_is_a_page_or_a_clear_error(
        value in odd_json(),
        collection in prop::sample::select(Collection::ALL.to_vec()),
    ) {
        let body = json!({"data": [{"data": value.clone()}], "links": value}).to_string();
        let _ = parse_page(collection, body.as_bytes(), "page", None);
        let _ = parse_page(collection, value.to_string().as_bytes(), "page", None);
        let _ = teacher_of_user(&value.to_string(), DISTRICT_ID);
    }

}

proptest! {
    #![proptest_config(cases(128))]

    /// A district whose pages are valid, changed or damaged: read, it keeps every promise.
    #[test]
    fn mutated_pages_keep_the_snapshots_promises(
        pages in district(),
        expected in prop::option::of(Just(DISTRICT_ID)),
        synthesize in any::<bool>(),
    ) {
        if let Some(snapshot) = read(&pages, expected, synthesize)? {
            check_snapshot(&snapshot, is_clever_id)?;
        }
    }
}

/// One record of each collection whose id cannot be a Clever id, among valid ones: quarantined
/// with a reason that names it, never loaded; the valid ones are.
#[test]
fn records_whose_ids_are_not_clever_ids_are_quarantined() {
    const SCHOOL: &str = "5a0c91b95c7cc000010d4001";
    const STUDENT: &str = "5a0c91b95c7cc000010d4002";
    const TEACHER: &str = "5a0c91b95c7cc000010d4003";
    const SECTION: &str = "5a0c91b95c7cc000010d4004";
    let bad = [
        "../../etc/passwd",
        "a|b",
        "x".repeat(10_000).as_str(),
        "5a0c91b95c7cc000010d417",
    ]
    .map(str::to_owned);
    let schools: Vec<Value> = std::iter::once(json!({"id": SCHOOL, "name": "S"}))
        .chain(bad.iter().map(|id| json!({"id": id, "name": "Bad"})))
        .collect();
    let mut users = vec![
        json!({"id": STUDENT, "roles": {"student": {"school": SCHOOL}}}),
        json!({"id": TEACHER, "roles": {"teacher": {"school": "../x"}}}),
    ];
    users.extend(
        bad.iter()
            .map(|id| json!({"id": id, "roles": {"student": {}}})),
    );
    // Unreadable as well as badly named: still quarantined, never held as unreadable.
    users.push(json!({"id": "u-1", "roles": {"student": "oops"}}));
    // A contact is counted, whatever its id.
    users.push(json!({"id": "c-1", "roles": {"contact": {}}}));
    let mut sections = vec![json!({"id": SECTION, "school": SCHOOL, "term_id": "t/1",
        "course": "..", "teacher": TEACHER, "students": [STUDENT, "../s", "s|2"]})];
    sections.extend(bad.iter().map(|id| json!({"id": id, "school": SCHOOL})));
    sections.push(json!({"id": "5a0c91b95c7cc000010d4005", "school": "../school"}));
    let pages = [
        (
            Collection::Districts,
            page(&[json!({"id": DISTRICT_ID, "name": "D"})]),
        ),
        (Collection::Schools, page(&schools)),
        (Collection::Sections, page(&sections)),
        (Collection::Users, page(&users)),
    ]
    .map(|(c, text)| (c, text.into_bytes()));
    let snapshot = read(&pages, None, true).expect("read").expect("a snapshot");
    check_snapshot(&snapshot, is_clever_id).expect("the promises hold");
    fn ids<'a, T: 'a>(records: &'a [T], id: impl Fn(&'a T) -> &'a str) -> Vec<&'a str> {
        records.iter().map(id).collect()
    }
    assert_eq!(ids(&snapshot.schools, |s| &s.id), [SCHOOL]);
    assert_eq!(ids(&snapshot.students, |s| &s.id), [STUDENT]);
    assert_eq!(ids(&snapshot.teachers, |s| &s.id), [TEACHER]);
    assert_eq!(
        snapshot.teachers[0].school, None,
        "a school that is no id is unknown"
    );
    assert_eq!(ids(&snapshot.sections, |s| &s.id), [SECTION]);
    let section = &snapshot.sections[0];
    assert_eq!(section.students, [STUDENT]);
    assert_eq!(section.teachers, [TEACHER]);
    assert_eq!(
        (section.term.as_deref(), section.course.as_deref()),
        (None, None)
    );
    assert!(snapshot.unreadable.is_empty(), "{:?}", snapshot.unreadable);
    assert_eq!(snapshot.skipped.contacts, 1);
    let reasons: Vec<String> = snapshot
        .quarantine
        .iter()
        .map(|q| {
            format!(
                "{}|{}|{}",
                q.kind,
                q.id.as_deref().unwrap_or("NULL"),
                q.reason
            )
        })
        .collect();
    let not_ids = reasons
        .iter()
        .filter(|r| {
            r.contains("|NULL|its id ")
                && r.ends_with("is not a Clever id (24 hex digits): not loaded")
        })
        .count();
    assert_eq!(not_ids, 3 * bad.len() + 1, "{reasons:#?}");
    assert!(
        reasons.contains(
            &"school|NULL|its id \"../../etc/passwd\" is not a Clever id (24 hex digits): not loaded"
                .to_owned()
        ),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("school|NULL|its id \"xxxxxxxxxx") && r.len() < 200),
        "a long id is cut short: {reasons:#?}"
    );
    for member in ["\"../s\"", "\"s|2\""] {
        assert!(
            reasons.contains(&format!(
                "section.students|{SECTION}|section {SECTION} names student {member} whose id is not a Clever id (24 hex digits)"
            )),
            "{reasons:#?}"
        );
    }
    assert!(
        reasons.contains(&"section|5a0c91b95c7cc000010d4005|section names school \"../school\" that is not a Clever id (24 hex digits)".to_owned()),
        "{reasons:#?}"
    );
}

/// A replay without schools makes them from what sections name: never from an id that is not
/// a Clever id.
#[test]
fn no_school_is_made_from_a_reference_that_is_not_a_clever_id() {
    let sections = [
        json!({"id": "5a0c91b95c7cc000010d4004", "school": "5a0c91b95c7cc000010d4001"}),
        json!({"id": "5a0c91b95c7cc000010d4005", "school": "../school"}),
    ];
    let pages = [
        (
            Collection::Districts,
            page(&[json!({"id": DISTRICT_ID, "name": "D"})]),
        ),
        (Collection::Sections, page(&sections)),
    ]
    .map(|(c, text)| (c, text.into_bytes()));
    let snapshot = read(&pages, None, true).expect("read").expect("a snapshot");
    let schools: Vec<&str> = snapshot.schools.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(schools, ["5a0c91b95c7cc000010d4001"]);
    assert_eq!(snapshot.sections.len(), 1);
}

/// A field of megabytes (a page Clever would never send) is read or refused in a bounded
/// message, never echoed whole.
#[test]
fn a_huge_field_is_never_echoed_whole() {
    let huge = "x".repeat(1 << 20);
    let users = [
        json!({"id": "5a0c91b95c7cc000010d4002", "roles": {"student": huge}}),
        json!({"id": "5a0c91b95c7cc000010d4003", "name": {"first": huge}, "roles": {"teacher": {}}}),
    ];
    let pages = [
        (
            Collection::Districts,
            page(&[json!({"id": DISTRICT_ID, "name": "D"})]).into_bytes(),
        ),
        (Collection::Users, page(&users).into_bytes()),
        (
            Collection::Schools,
            format!("{{\"data\": \"{huge}\"}}").into_bytes(),
        ),
    ];
    let snapshot = read(&pages, None, false)
        .expect("read")
        .expect("a snapshot");
    check_snapshot(&snapshot, is_clever_id).expect("the promises hold");
    assert_eq!(snapshot.teachers.len(), 1);
    assert_eq!(snapshot.quarantine.len(), 1);
}
