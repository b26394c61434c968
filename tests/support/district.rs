//! The roster a simulated Clever district holds: [`Dataset`], its collections of Clever objects,
//! the small edits tests make between syncs (remove a student from a section, remove a user...),
//! the Events API feed those edits can produce, and recordings on disk.
//!
//! Each record is kept as its exact Clever JSON text (the inner object, without the
//! `{"data":..,"uri":..}` wrapper), sorted by id. Text rather than `serde_json::Value` keeps the
//! key order of real recordings and lets a million-student district fit in about a gigabyte;
//! the public API reads and edits records as `serde_json::Value`.
//!
//! Where the data comes from: [`Dataset::demo`] (the real Clever demo district, `demo.rs` supplies
//! the schools, terms and courses it only references), [`generate`] (a synthetic district of any
//! size, `generate.rs`) or [`Dataset::from_recording`]. `oneroster.rs` writes a dataset as
//! OneRoster (CSV feeds and REST JSON).

mod demo;
mod generate;
pub(crate) mod json;
pub(crate) mod oneroster;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::clever_sim::paging::{self, Cursor, ListQuery};

pub use generate::{GenSpec, generate};
pub use oneroster::{Ids, OneRosterFile, OneRosterVersion, OneRosterWrite, ceds_grade};

/// One collection of the Clever Data API (plus the Events API feed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collection {
    /// `/districts`
    Districts,
    /// `/schools`
    Schools,
    /// `/terms`
    Terms,
    /// `/courses`
    Courses,
    /// `/sections`
    Sections,
    /// `/users` (students, teachers, staff, district admins and contacts)
    Users,
    /// `/events`
    Events,
}

impl Collection {
    /// Every collection, events last.
    pub const ALL: [Collection; 7] = [
        Collection::Districts,
        Collection::Schools,
        Collection::Terms,
        Collection::Courses,
        Collection::Sections,
        Collection::Users,
        Collection::Events,
    ];

    /// The Data API collections (everything but events), in the order a full sync reads them.
    pub const DATA: [Collection; 6] = [
        Collection::Districts,
        Collection::Schools,
        Collection::Terms,
        Collection::Courses,
        Collection::Sections,
        Collection::Users,
    ];

    /// The path segment: `districts`, `schools`, ..., `events`.
    pub fn name(self) -> &'static str {
        match self {
            Collection::Districts => "districts",
            Collection::Schools => "schools",
            Collection::Terms => "terms",
            Collection::Courses => "courses",
            Collection::Sections => "sections",
            Collection::Users => "users",
            Collection::Events => "events",
        }
    }

    /// The collection named by a path segment.
    pub fn from_name(name: &str) -> Option<Collection> {
        Collection::ALL.into_iter().find(|c| c.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A user role, as the keys of a v3 user's `roles` object and the `/users?role=` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `student`
    Student,
    /// `teacher`
    Teacher,
    /// `staff`
    Staff,
    /// `district_admin`
    DistrictAdmin,
    /// `contact`
    Contact,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Student,
        Role::Teacher,
        Role::Staff,
        Role::DistrictAdmin,
        Role::Contact,
    ];

    /// The spelling Clever uses.
    pub fn name(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Teacher => "teacher",
            Role::Staff => "staff",
            Role::DistrictAdmin => "district_admin",
            Role::Contact => "contact",
        }
    }

    /// The role with that Clever spelling.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One stored record: its sort key (the id), its exact JSON text and, for users, its roles.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// The record's `id` ("" when it has none).
    pub(crate) key: Box<str>,
    /// The inner Clever object, compact JSON.
    pub(crate) json: Box<str>,
    /// Bit set of [`Role::bit`]s (users only).
    pub(crate) roles: u8,
}

impl Record {
    /// Builds a record from a JSON object, reading its id and roles.
    fn from_value(value: &Value) -> Record {
        Record {
            key: value.get("id").and_then(Value::as_str).unwrap_or("").into(),
            json: value.to_string().into(),
            roles: roles_of(value),
        }
    }

    /// Parses the record (records inserted raw may not parse).
    fn value(&self) -> Option<Value> {
        serde_json::from_str(&self.json).ok()
    }

    /// Whether the user holds `role`.
    pub(crate) fn has_role(&self, role: Role) -> bool {
        self.roles & role.bit() != 0
    }
}

fn roles_of(value: &Value) -> u8 {
    value
        .get("roles")
        .and_then(Value::as_object)
        .map(|roles| {
            roles
                .keys()
                .filter_map(|k| Role::from_name(k))
                .fold(0, |bits, r| bits | r.bit())
        })
        .unwrap_or(0)
}

/// The first id [`Dataset::new_id`] hands out in an empty dataset: an ObjectID from 2025-01-01.
const FIRST_NEW_ID: u128 = 0x6774_8580 << 64;

/// A Clever district's data: every collection's objects, sorted by id, as Clever serves them.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    tables: [Vec<Record>; 7],
    /// Greater than every 24-hex id in the dataset.
    next_id: u128,
    /// Whether edits also append the matching events to the events feed.
    emit_events: bool,
}

impl Dataset {
    /// An empty dataset.
    pub fn new() -> Dataset {
        Dataset::default()
    }

    /// The real Clever demo district (`pipelines/demo/`, copied byte for byte from Clever's
    /// published v3.0 responses), plus spec-shaped schools, terms and courses synthesised from
    /// the references in its sections and users (the recording holds none).
    ///
    /// # Panics
    /// If the recording cannot be read: the repository is incomplete.
    pub fn demo() -> Dataset {
        let dir = demo_dir();
        let mut dataset = Dataset::from_recording(&dir)
            .unwrap_or_else(|e| panic!("read the demo recording {}: {e}", dir.display()));
        demo::synthesize_references(&mut dataset);
        dataset
    }

    /// Loads a recording: `DIR/<collection>/0001.json`, `0002.json`, ... each one raw list page
    /// (`{"data":[{"data":{..},"uri":..}],"links":[..]}`). Missing collections stay empty. Records
    /// keep their JSON text (compacted) and key order.
    pub fn from_recording(dir: &Path) -> io::Result<Dataset> {
        let mut dataset = Dataset::new();
        for collection in Collection::ALL {
            let sub = dir.join(collection.name());
            if !sub.is_dir() {
                continue;
            }
            let mut pages: Vec<PathBuf> = fs::read_dir(&sub)?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<io::Result<_>>()?;
            pages.retain(|p| p.extension().is_some_and(|e| e == "json"));
            pages.sort();
            for page in pages {
                let text = fs::read_to_string(&page)?;
                dataset.load_page(collection, &text).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", page.display()),
                    )
                })?;
            }
            dataset.tables[collection.index()].sort_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(dataset)
    }

    fn load_page(&mut self, collection: Collection, text: &str) -> Result<(), serde_json::Error> {
        #[derive(Deserialize)]
        struct Page<'a> {
            #[serde(borrow)]
            data: Vec<Item<'a>>,
        }
        #[derive(Deserialize)]
        struct Item<'a> {
            #[serde(borrow)]
            data: &'a RawValue,
        }
        #[derive(Deserialize)]
        struct Probe {
            id: Option<String>,
            roles: Option<serde_json::Map<String, Value>>,
        }
        let page: Page<'_> = serde_json::from_str(text)?;
        for item in page.data {
            let probe: Probe = serde_json::from_str(item.data.get())?;
            let roles = probe
                .roles
                .map(|r| {
                    r.keys()
                        .filter_map(|k| Role::from_name(k))
                        .fold(0, |b, r| b | r.bit())
                })
                .unwrap_or(0);
            let key = probe.id.unwrap_or_default();
            self.note_id(&key);
            self.tables[collection.index()].push(Record {
                key: key.into(),
                json: json::compact(item.data.get()).into(),
                roles,
            });
        }
        Ok(())
    }

    /// Writes the dataset as a recording in the demo's layout: `DIR/<collection>/0001.json`, ...
    /// for the six Data API collections (and `events` when the feed is not empty), each file one
    /// raw page exactly as [`crate::clever_sim::CleverSim`] serves it with default options for
    /// `GET /v3.0/<collection>?limit=<limit>` and then each `next` link in turn (so the last file
    /// is the empty page that ends the list).
    pub fn write_recording(&self, dir: &Path, limit: usize) -> io::Result<()> {
        for collection in Collection::ALL {
            if collection == Collection::Events && self.is_empty(Collection::Events) {
                continue;
            }
            let sub = dir.join(collection.name());
            fs::create_dir_all(&sub)?;
            let mut uri = format!("/v3.0/{}?limit={limit}", collection.name());
            let mut after: Option<String> = None;
            for n in 1.. {
                let query = ListQuery {
                    version: "v3.0",
                    collection,
                    limit,
                    explicit_limit: true,
                    cursor: after.as_deref().map_or(Cursor::Start, Cursor::After),
                    params: Vec::new(),
                    self_uri: &uri,
                    empty_last_page: true,
                };
                let page = paging::render_list(self.records(collection), &query, &|_| true);
                fs::write(sub.join(format!("{n:04}.json")), &page.body)?;
                match (page.next_uri, page.last_id) {
                    (Some(next), Some(last)) => {
                        uri = next;
                        after = Some(last);
                    }
                    _ => break,
                }
            }
        }
        Ok(())
    }

    pub(crate) fn records(&self, collection: Collection) -> &[Record] {
        &self.tables[collection.index()]
    }

    /// How many records the collection holds.
    pub fn len(&self, collection: Collection) -> usize {
        self.tables[collection.index()].len()
    }

    /// Whether the collection is empty.
    pub fn is_empty(&self, collection: Collection) -> bool {
        self.tables[collection.index()].is_empty()
    }

    /// The ids in the collection, ascending.
    pub fn ids(&self, collection: Collection) -> Vec<String> {
        self.records(collection)
            .iter()
            .map(|r| r.key.to_string())
            .collect()
    }

    /// Whether the collection holds a record with that id.
    pub fn contains(&self, collection: Collection, id: &str) -> bool {
        self.position(collection, id).is_ok()
    }

    /// The record with that id, parsed.
    pub fn get(&self, collection: Collection, id: &str) -> Option<Value> {
        let i = self.position(collection, id).ok()?;
        self.records(collection)[i].value()
    }

    /// The record's exact JSON text, as the simulator serves it.
    pub fn raw(&self, collection: Collection, id: &str) -> Option<&str> {
        let i = self.position(collection, id).ok()?;
        Some(&self.records(collection)[i].json)
    }

    /// Every record of the collection, parsed, in id order (records inserted raw that are not
    /// valid JSON are skipped). Meant for small datasets.
    pub fn all(&self, collection: Collection) -> Vec<Value> {
        self.records(collection)
            .iter()
            .filter_map(Record::value)
            .collect()
    }

    /// The ids of the users holding `role` (a multi-role user is listed for each role it holds).
    pub fn ids_with_role(&self, role: Role) -> Vec<String> {
        self.records(Collection::Users)
            .iter()
            .filter(|r| r.has_role(role))
            .map(|r| r.key.to_string())
            .collect()
    }

    /// How many users hold `role`.
    pub fn count_role(&self, role: Role) -> usize {
        self.records(Collection::Users)
            .iter()
            .filter(|r| r.has_role(role))
            .count()
    }

    /// Makes every later edit also append the matching `<collection>.created|updated|deleted`
    /// event to the events feed, as Clever does when the district's data changes. Off by default.
    pub fn set_emit_events(&mut self, on: bool) {
        self.emit_events = on;
    }

    /// A fresh id: 24 hex digits, greater than every id in the dataset.
    pub fn new_id(&mut self) -> String {
        let n = self.next_id.max(FIRST_NEW_ID);
        self.next_id = n + 1;
        json::hex_id(n)
    }

    /// Inserts `object` (which must have a string `id`), replacing the record with that id.
    /// Returns the replaced record.
    ///
    /// # Panics
    /// If `object` has no string `id` (use [`Dataset::insert_raw`] for such records).
    pub fn upsert(&mut self, collection: Collection, object: Value) -> Option<Value> {
        let record = Record::from_value(&object);
        assert!(
            !record.key.is_empty(),
            "upsert needs an object with a string \"id\": {object}"
        );
        let previous = self.put(collection, record).and_then(|r| r.value());
        match &previous {
            None => self.emit(collection, "created", &object, None),
            Some(old) => {
                let changes = diff(old, &object);
                if let Some(changes) = changes {
                    self.emit(collection, "updated", &object, Some(changes));
                }
            }
        }
        previous
    }

    /// Inserts raw text as a record under `key`, unchecked (dirty data for quarantine tests: a
    /// record without an id, a bad enum, even invalid JSON). Replaces the record under `key`.
    /// Emits no event.
    pub fn insert_raw(&mut self, collection: Collection, key: &str, json_text: &str) {
        let roles = serde_json::from_str::<Value>(json_text)
            .map(|v| roles_of(&v))
            .unwrap_or(0);
        self.note_id(key);
        self.put(
            collection,
            Record {
                key: key.into(),
                json: json_text.into(),
                roles,
            },
        );
    }

    /// Edits the record with that id in place. Returns false when there is no such record (or it
    /// is not valid JSON). An edit that changes nothing emits no event.
    pub fn edit(&mut self, collection: Collection, id: &str, f: impl FnOnce(&mut Value)) -> bool {
        let Ok(i) = self.position(collection, id) else {
            return false;
        };
        let Some(old) = self.tables[collection.index()][i].value() else {
            return false;
        };
        let mut new = old.clone();
        f(&mut new);
        if new == old {
            return true;
        }
        let mut record = Record::from_value(&new);
        if record.key.is_empty() {
            record.key = id.into();
        }
        if *record.key == *id {
            // Same id: replace in place rather than shift the sorted table twice.
            self.tables[collection.index()][i] = record;
        } else {
            self.tables[collection.index()].remove(i);
            self.note_id(&record.key);
            self.put(collection, record);
        }
        let changes = diff(&old, &new);
        self.emit(collection, "updated", &new, changes);
        true
    }

    /// Removes the record with that id and returns it. It does not touch references to it (see
    /// [`Dataset::remove_user`]).
    pub fn remove(&mut self, collection: Collection, id: &str) -> Option<Value> {
        let i = self.position(collection, id).ok()?;
        let record = self.tables[collection.index()].remove(i);
        let value = record.value();
        if let Some(v) = &value {
            self.emit(collection, "deleted", v, None);
        }
        value
    }

    /// Removes a user the way an unshare or an SIS deletion does: the user leaves `/users` and
    /// every section (`students`, `teachers`, `teacher`) and contact relationship that named it.
    /// Returns false when there was no such user.
    pub fn remove_user(&mut self, user: &str) -> bool {
        if self.remove(Collection::Users, user).is_none() {
            return false;
        }
        for section in self.ids_mentioning(Collection::Sections, user) {
            self.edit(Collection::Sections, &section, |s| {
                remove_from_array(s, "students", user);
                remove_from_array(s, "teachers", user);
                if s.get("teacher").and_then(Value::as_str) == Some(user) {
                    let next = s["teachers"]
                        .get(0)
                        .cloned()
                        .unwrap_or(Value::String(String::new()));
                    s["teacher"] = next;
                }
            });
        }
        for contact in self.ids_mentioning(Collection::Users, user) {
            self.edit(Collection::Users, &contact, |u| {
                if let Some(rels) = u
                    .pointer_mut("/roles/contact/student_relationships")
                    .and_then(Value::as_array_mut)
                {
                    rels.retain(|r| r.get("student").and_then(Value::as_str) != Some(user));
                }
            });
        }
        true
    }

    /// The students of a section (empty when there is no such section).
    pub fn section_students(&self, section: &str) -> Vec<String> {
        self.get(Collection::Sections, section)
            .map(|s| string_array(&s, "students"))
            .unwrap_or_default()
    }

    /// The teachers of a section, primary first.
    pub fn section_teachers(&self, section: &str) -> Vec<String> {
        self.get(Collection::Sections, section)
            .map(|s| string_array(&s, "teachers"))
            .unwrap_or_default()
    }

    /// The sections naming the user as a student or a teacher.
    pub fn sections_of(&self, user: &str) -> Vec<String> {
        self.ids_mentioning(Collection::Sections, user)
            .into_iter()
            .filter(|id| {
                self.get(Collection::Sections, id).is_some_and(|s| {
                    string_array(&s, "students").iter().any(|u| u == user)
                        || string_array(&s, "teachers").iter().any(|u| u == user)
                })
            })
            .collect()
    }

    /// Removes a student from a section. Returns whether the section listed them.
    pub fn remove_student_from_section(&mut self, section: &str, student: &str) -> bool {
        let mut removed = false;
        self.edit(Collection::Sections, section, |s| {
            removed = remove_from_array(s, "students", student);
        });
        removed
    }

    /// Adds a student to a section. Returns false when there is no such section or the student
    /// was already in it.
    pub fn add_student_to_section(&mut self, section: &str, student: &str) -> bool {
        let mut added = false;
        self.edit(Collection::Sections, section, |s| {
            if let Some(list) = s.get_mut("students").and_then(Value::as_array_mut)
                && !list.iter().any(|v| v.as_str() == Some(student))
            {
                list.push(Value::String(student.to_string()));
                added = true;
            }
        });
        added
    }

    /// Sets a section's teachers (primary first) and its `teacher` field.
    pub fn set_section_teachers(&mut self, section: &str, teachers: &[&str]) -> bool {
        self.edit(Collection::Sections, section, |s| {
            s["teachers"] = Value::from(teachers.iter().map(|t| t.to_string()).collect::<Vec<_>>());
            s["teacher"] = Value::from(teachers.first().copied().unwrap_or(""));
        })
    }

    /// Moves a student to another section (a transfer): out of `from`, into `to`.
    pub fn move_student(&mut self, student: &str, from: &str, to: &str) -> bool {
        self.remove_student_from_section(from, student) && self.add_student_to_section(to, student)
    }

    /// Appends an event to the feed: `event_type` such as `users.updated`, the object as it is
    /// now, and for updates the changed fields' previous values. Returns the event id (greater
    /// than every earlier one, so the feed stays in creation order).
    pub fn push_event(
        &mut self,
        event_type: &str,
        object: Value,
        previous_attributes: Option<Value>,
    ) -> String {
        let id = self.new_id();
        let mut data = serde_json::Map::new();
        data.insert("object".into(), object);
        if let Some(previous) = previous_attributes {
            data.insert("previous_attributes".into(), previous);
        }
        let event = serde_json::json!({
            "id": id,
            "type": event_type,
            "created": json::now_timestamp(),
            "data": data,
        });
        self.put(Collection::Events, Record::from_value(&event));
        id
    }

    /// The events feed, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.all(Collection::Events)
    }

    /// The newest event's id, the cursor a client saves after a full sync.
    pub fn last_event_id(&self) -> Option<String> {
        self.records(Collection::Events)
            .last()
            .map(|r| r.key.to_string())
    }

    /// Drops the events older than `id` (exclusive), as Clever drops events after 30 days.
    pub fn expire_events_before(&mut self, id: &str) {
        self.tables[Collection::Events.index()].retain(|r| &*r.key >= id);
    }

    /// Empties the events feed.
    pub fn clear_events(&mut self) {
        self.tables[Collection::Events.index()].clear();
    }

    fn emit(
        &mut self,
        collection: Collection,
        action: &str,
        object: &Value,
        previous: Option<Value>,
    ) {
        if self.emit_events && collection != Collection::Events {
            self.push_event(
                &format!("{}.{action}", collection.name()),
                object.clone(),
                previous,
            );
        }
    }

    /// Ids of the records whose text mentions `needle` (a cheap pre-filter before parsing).
    fn ids_mentioning(&self, collection: Collection, needle: &str) -> Vec<String> {
        self.records(collection)
            .iter()
            .filter(|r| r.json.contains(needle) && &*r.key != needle)
            .map(|r| r.key.to_string())
            .collect()
    }

    fn position(&self, collection: Collection, id: &str) -> Result<usize, usize> {
        self.records(collection)
            .binary_search_by(|r| (*r.key).cmp(id))
    }

    /// Inserts or replaces by key, keeping the table sorted.
    fn put(&mut self, collection: Collection, record: Record) -> Option<Record> {
        self.note_id(&record.key);
        let table = &mut self.tables[collection.index()];
        match table.binary_search_by(|r| r.key.cmp(&record.key)) {
            Ok(i) => Some(std::mem::replace(&mut table[i], record)),
            Err(i) => {
                table.insert(i, record);
                None
            }
        }
    }

    fn note_id(&mut self, id: &str) {
        if let Some(n) = json::parse_hex_id(id) {
            self.next_id = self.next_id.max(n + 1);
        }
    }

    /// Builds a dataset from generated tables (each record's key set), sorting each table.
    pub(crate) fn from_tables(mut tables: [Vec<Record>; 7]) -> Dataset {
        let mut next_id = 0;
        for table in &mut tables {
            if !table.is_sorted_by(|a, b| a.key <= b.key) {
                table.sort_by(|a, b| a.key.cmp(&b.key));
            }
            if let Some(last) = table.last().and_then(|r| json::parse_hex_id(&r.key)) {
                next_id = next_id.max(last + 1);
            }
        }
        Dataset {
            tables,
            next_id,
            emit_events: false,
        }
    }
}

/// Where the demo recording lives in this repository.
pub fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/demo")
}

fn string_array(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn remove_from_array(value: &mut Value, key: &str, item: &str) -> bool {
    let Some(list) = value.get_mut(key).and_then(Value::as_array_mut) else {
        return false;
    };
    let before = list.len();
    list.retain(|v| v.as_str() != Some(item));
    list.len() != before
}

/// The fields of `old` that differ in `new`, with their old values (nested objects are compared
/// field by field; a field that did not exist before is `null`). `None` when nothing changed.
fn diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut changes = serde_json::Map::new();
            for (key, old_value) in a {
                match b.get(key) {
                    Some(new_value) => {
                        if let Some(change) = diff(old_value, new_value) {
                            changes.insert(key.clone(), change);
                        }
                    }
                    None => {
                        changes.insert(key.clone(), old_value.clone());
                    }
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                changes.insert(key.clone(), Value::Null);
            }
            (!changes.is_empty()).then_some(Value::Object(changes))
        }
        _ => (old != new).then(|| old.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn demo_matches_the_recording_counts() {
        let d = Dataset::demo();
        assert_eq!(d.len(Collection::Districts), 1);
        assert_eq!(d.len(Collection::Users), 2098);
        assert_eq!(d.len(Collection::Sections), 378);
        assert_eq!(d.count_role(Role::Student), 1004);
        assert_eq!(d.count_role(Role::Teacher), 89);
        assert_eq!(d.count_role(Role::DistrictAdmin), 3);
        assert_eq!(d.count_role(Role::Contact), 1002);
        let ids = d.ids(Collection::Users);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    }

    #[test]
    fn demo_records_keep_their_text() {
        let d = Dataset::demo();
        let raw = d
            .raw(Collection::Users, "5a25ffb0c1bc2a00360003ed")
            .expect("first demo student");
        assert!(raw.starts_with(
            r#"{"created":"2021-03-02T22:24:53.347Z","district":"5a0c91b95c7cc000010d417c""#
        ));
        let district = d
            .raw(Collection::Districts, "5a0c91b95c7cc000010d417c")
            .expect("district");
        assert!(
            district.starts_with(r##"{"name":"#DEMO_DISTRICT","portal_url""##),
            "{district}"
        );
    }

    #[test]
    fn demo_references_resolve() {
        let d = Dataset::demo();
        assert_references_resolve(&d);
    }

    /// Every reference from a section or a user names an existing record.
    pub(crate) fn assert_references_resolve(d: &Dataset) {
        let district = d.ids(Collection::Districts);
        assert_eq!(district.len(), 1);
        for c in [
            Collection::Schools,
            Collection::Terms,
            Collection::Courses,
            Collection::Sections,
            Collection::Users,
        ] {
            for v in d.all(c) {
                assert_eq!(v["district"], district[0].as_str(), "{c:?} {v}");
            }
        }
        for s in d.all(Collection::Sections) {
            assert!(
                d.contains(Collection::Schools, s["school"].as_str().expect("school")),
                "{s}"
            );
            if let Some(term) = s["term_id"].as_str().filter(|t| !t.is_empty()) {
                assert!(d.contains(Collection::Terms, term), "term {term}");
            }
            if let Some(course) = s["course"].as_str().filter(|t| !t.is_empty()) {
                assert!(d.contains(Collection::Courses, course), "course {course}");
            }
            let teachers = string_array(&s, "teachers");
            assert_eq!(
                s["teacher"].as_str(),
                Some(teachers.first().map_or("", String::as_str)),
                "{s}"
            );
            for t in &teachers {
                let user = d.get(Collection::Users, t).expect("teacher exists");
                assert!(user["roles"].get("teacher").is_some(), "{t} is a teacher");
            }
            for st in string_array(&s, "students") {
                let user = d.get(Collection::Users, &st).expect("student exists");
                assert!(user["roles"].get("student").is_some(), "{st} is a student");
            }
        }
        for u in d.all(Collection::Users) {
            for role in ["student", "teacher", "staff"] {
                if let Some(r) = u["roles"].get(role) {
                    for school in string_array(r, "schools")
                        .iter()
                        .chain(r["school"].as_str().map(str::to_string).iter())
                    {
                        assert!(
                            d.contains(Collection::Schools, school),
                            "{role} school {school}"
                        );
                    }
                }
            }
            if let Some(rels) = u
                .pointer("/roles/contact/student_relationships")
                .and_then(Value::as_array)
            {
                for rel in rels {
                    let st = rel["student"].as_str().expect("student id");
                    assert!(d.contains(Collection::Users, st), "contact's student {st}");
                }
            }
        }
    }

    #[test]
    fn edits_emit_events_with_previous_attributes() {
        let mut d = Dataset::demo();
        d.set_emit_events(true);
        let student = d.ids_with_role(Role::Student)[0].clone();
        assert!(d.edit(
            Collection::Users,
            &student,
            |u| u["roles"]["student"]["grade"] = json!("5")
        ));
        let sections = d.sections_of(&student);
        assert!(!sections.is_empty());
        assert!(d.remove_student_from_section(&sections[0], &student));
        assert!(!d.section_students(&sections[0]).contains(&student));
        let events = d.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["type"], "users.updated");
        assert_eq!(
            events[0]["data"]["previous_attributes"],
            json!({"roles": {"student": {"grade": "Kindergarten"}}})
        );
        assert_eq!(
            events[0]["data"]["object"]["roles"]["student"]["grade"],
            "5"
        );
        assert_eq!(events[1]["type"], "sections.updated");
        assert!(events[0]["id"].as_str() < events[1]["id"].as_str());
        assert_eq!(d.last_event_id().as_deref(), events[1]["id"].as_str());
    }

    #[test]
    fn remove_user_scrubs_every_reference() {
        let mut d = Dataset::demo();
        let student = d.ids_with_role(Role::Student)[3].clone();
        assert!(!d.sections_of(&student).is_empty());
        assert!(d.remove_user(&student));
        assert!(!d.contains(Collection::Users, &student));
        assert!(d.sections_of(&student).is_empty());
        assert!(
            d.all(Collection::Users)
                .iter()
                .all(|u| !u.to_string().contains(&student))
        );
        assert!(!d.remove_user(&student));

        let teacher = d.ids_with_role(Role::Teacher)[0].clone();
        assert!(d.remove_user(&teacher));
        assert_references_resolve(&d);
    }

    #[test]
    fn upsert_replaces_and_raw_inserts_dirty_records() {
        let mut d = Dataset::new();
        let id = d.new_id();
        assert!(
            d.upsert(Collection::Schools, json!({"id": id, "name": "A"}))
                .is_none()
        );
        let old = d
            .upsert(Collection::Schools, json!({"id": id, "name": "B"}))
            .expect("replaced");
        assert_eq!(old["name"], "A");
        assert_eq!(d.len(Collection::Schools), 1);
        d.insert_raw(
            Collection::Users,
            "",
            r#"{"name":{"first":"No","last":"Id"}}"#,
        );
        assert_eq!(d.len(Collection::Users), 1);
        assert!(d.new_id() > id);
    }

    #[test]
    fn move_student_transfers_between_sections() {
        let mut d = Dataset::demo();
        let sections = d.ids(Collection::Sections);
        let student = d.section_students(&sections[0])[0].clone();
        let target = sections
            .iter()
            .find(|s| !d.section_students(s).contains(&student))
            .expect("a section without the student")
            .clone();
        assert!(d.move_student(&student, &sections[0], &target));
        assert!(d.section_students(&target).contains(&student));
        assert!(!d.section_students(&sections[0]).contains(&student));
    }

    #[test]
    fn recording_round_trips() {
        let d = Dataset::demo();
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        d.write_recording(dir, 500).expect("write");
        let pages = fs::read_dir(dir.join("users")).expect("users dir").count();
        assert_eq!(
            pages,
            2098usize.div_ceil(500) + 1,
            "full pages plus the empty last page"
        );
        let back = Dataset::from_recording(dir).expect("read back");
        for c in Collection::DATA {
            assert_eq!(back.ids(c), d.ids(c), "{c:?}");
            for id in d.ids(c) {
                assert_eq!(back.raw(c, &id), d.raw(c, &id));
            }
        }
    }
}
