//! A plugin's edits: checked against the snapshot (every index in range, keys well-formed and
//! unique, nothing touched after it was dropped), shown as `model` ids for `plugin test`, and
//! applied all together with a decision recorded for each.

use std::collections::HashSet;
use std::fmt;

use rosterflow_model::{Decision, DecisionAction, Entity, Id, Section, Snapshot, Source};

use super::PluginError;
use super::bindings::v0_1_0::wire;
use rosterflow_model::text::quoted as shown;

/// Longest group key, ext key and attribute value a plugin may send, in bytes.
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 1024;

/// One edit a plugin proposed, with the records it names as Clever ids (as `rosterflow plugin
/// test` prints it).
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// A new class made by the plugin (`source = plugin:<name>`).
    CreateGroup(Group),
    AddMember {
        section: Id,
        member: Member,
    },
    RemoveMember {
        section: Id,
        member: Member,
    },
    DropSection(Id),
    DropStudent(Id),
    DropTeacher(Id),
    SetAttribute {
        section: Id,
        attribute: Attribute,
    },
}

/// A class a plugin makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// `plugin:<plugin name>:<key>`.
    pub id: Id,
    pub name: String,
    pub school: Id,
    pub subject: Option<String>,
    pub grade: Option<String>,
    pub period: Option<String>,
    pub term: Option<Id>,
    pub course: Option<Id>,
    /// The primary teacher first.
    pub teachers: Vec<Id>,
    pub students: Vec<Id>,
}

/// A member of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Student(Id),
    Teacher(Id),
}

/// A section field a plugin sets; `None` clears it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    Name(String),
    Subject(Option<String>),
    Grade(Option<String>),
    Period(Option<String>),
    Ext { key: String, value: Option<String> },
}

impl fmt::Display for Edit {
    /// One line per edit; `{:#}` also lists a group's members.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::CreateGroup(g) => {
                write!(
                    f,
                    "create group {} {:?} at school {}: {} students, {} teachers",
                    g.id,
                    g.name,
                    g.school,
                    g.students.len(),
                    g.teachers.len()
                )?;
                if f.alternate() {
                    for t in &g.teachers {
                        write!(f, "\n    teacher {t}")?;
                    }
                    for s in &g.students {
                        write!(f, "\n    student {s}")?;
                    }
                }
                Ok(())
            }
            Edit::AddMember { section, member } => write!(f, "add {member} to section {section}"),
            Edit::RemoveMember { section, member } => {
                write!(f, "remove {member} from section {section}")
            }
            Edit::DropSection(id) => write!(f, "drop section {id}"),
            Edit::DropStudent(id) => write!(f, "drop student {id}"),
            Edit::DropTeacher(id) => write!(f, "drop teacher {id}"),
            Edit::SetAttribute { section, attribute } => {
                write!(f, "set {attribute} on section {section}")
            }
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Student(id) => write!(f, "student {id}"),
            Member::Teacher(id) => write!(f, "teacher {id}"),
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (field, value) = match self {
            Attribute::Name(v) => ("name".to_owned(), Some(v)),
            Attribute::Subject(v) => ("subject".to_owned(), v.as_ref()),
            Attribute::Grade(v) => ("grade".to_owned(), v.as_ref()),
            Attribute::Period(v) => ("period".to_owned(), v.as_ref()),
            Attribute::Ext { key, value } => (format!("ext.{key}"), value.as_ref()),
        };
        match value {
            Some(v) => write!(f, "{field} = {v:?}"),
            None => write!(f, "{field} = (none)"),
        }
    }
}

/// The id of a group a plugin made.
pub(crate) fn group_id(plugin: &str, key: &str) -> Id {
    compact_str::format_compact!("plugin:{plugin}:{key}")
}

/// The least [`output_bytes`] counts for one edit: a fixed cost and the index it names.
const MIN_EDIT_BYTES: usize = 24;

/// Bytes of output an edit stands for (strings, indices, a fixed cost per record): what the
/// output-size cap measures.
pub(crate) fn output_bytes(edits: &[wire::Edit]) -> usize {
    fn opt(s: &Option<String>) -> usize {
        s.as_ref().map_or(0, String::len)
    }
    edits
        .iter()
        .map(|edit| {
            16 + match edit {
                wire::Edit::CreateGroup(g) => {
                    g.key.len()
                        + g.name.len()
                        + opt(&g.subject)
                        + opt(&g.grade)
                        + opt(&g.period)
                        + 4 * (g.teachers.len() + g.students.len())
                        + 32
                }
                wire::Edit::SetAttribute(change) => {
                    8 + match &change.attribute {
                        wire::Attribute::Name(v) => v.len(),
                        wire::Attribute::Subject(v)
                        | wire::Attribute::Grade(v)
                        | wire::Attribute::Period(v) => opt(v),
                        wire::Attribute::Ext(e) => e.key.len() + opt(&e.value),
                    }
                }
                _ => 8,
            }
        })
        .sum()
}

/// What the host may spend copying a plugin's output out of its memory, for an output cap of
/// `max_output_bytes`: enough for any output that [`output_bytes`] counts within the cap, and
/// a fixed multiple of the cap however much the plugin returns.
///
/// wasmtime charges a copy out of a guest (its "hostcall fuel") what the copy allocates, before
/// allocating it: `size_of` of the host type for each list element, and the bytes of each
/// string. Strings and index lists cost the same there as in `output_bytes`; an edit costs
/// `size_of::<wire::Edit>()` (its largest variant, a group, sets it) where `output_bytes`
/// counts at least [`MIN_EDIT_BYTES`]. So copying an output costs at most `ratio` times what
/// `output_bytes` counts, and with this budget the host stops copying an output over the cap
/// by the time it holds `ratio` times the cap, whatever the size of the whole.
pub(crate) fn copy_budget(max_output_bytes: u64) -> usize {
    let ratio = size_of::<wire::Edit>().div_ceil(MIN_EDIT_BYTES).max(1);
    usize::try_from(max_output_bytes)
        .unwrap_or(usize::MAX)
        .saturating_mul(ratio)
}

/// Checks every edit against the snapshot before any is applied.
pub(crate) fn validate(
    plugin: &str,
    edits: &[wire::Edit],
    snapshot: &Snapshot,
) -> Result<(), PluginError> {
    let mut v = Validator {
        snapshot,
        section_ids: snapshot.sections.iter().map(|s| s.id.as_str()).collect(),
        keys: HashSet::new(),
        dropped_sections: vec![false; snapshot.sections.len()],
        dropped_students: vec![false; snapshot.students.len()],
        dropped_teachers: vec![false; snapshot.teachers.len()],
        seen_students: vec![0; snapshot.students.len()],
        seen_teachers: vec![0; snapshot.teachers.len()],
        group: 0,
        plugin,
    };
    for (n, edit) in edits.iter().enumerate() {
        v.check(edit).map_err(|reason| PluginError::InvalidEdit {
            plugin: plugin.to_owned(),
            index: n,
            reason,
        })?;
    }
    Ok(())
}

struct Validator<'a> {
    snapshot: &'a Snapshot,
    section_ids: HashSet<&'a str>,
    keys: HashSet<&'a str>,
    // Per-record flags rather than hash sets: a million group members are checked per run.
    dropped_sections: Vec<bool>,
    dropped_students: Vec<bool>,
    dropped_teachers: Vec<bool>,
    /// The number of the last group that listed each student (or teacher), to find duplicates.
    seen_students: Vec<u32>,
    seen_teachers: Vec<u32>,
    group: u32,
    plugin: &'a str,
}

impl<'a> Validator<'a> {
    fn check(&mut self, edit: &'a wire::Edit) -> Result<(), String> {
        match edit {
            wire::Edit::CreateGroup(g) => self.group(g),
            wire::Edit::AddMember(m) | wire::Edit::RemoveMember(m) => {
                self.section(m.section)?;
                self.member(&m.member)
            }
            wire::Edit::DropSection(s) => {
                self.section(*s)?;
                self.dropped_sections[*s as usize] = true;
                Ok(())
            }
            wire::Edit::DropStudent(s) => {
                self.student(*s)?;
                self.dropped_students[*s as usize] = true;
                Ok(())
            }
            wire::Edit::DropTeacher(t) => {
                self.teacher(*t)?;
                self.dropped_teachers[*t as usize] = true;
                Ok(())
            }
            wire::Edit::SetAttribute(change) => {
                self.section(change.section)?;
                match &change.attribute {
                    wire::Attribute::Name(name) => {
                        text("name", name)?;
                        if name.trim().is_empty() {
                            return Err("sets an empty section name".into());
                        }
                        Ok(())
                    }
                    wire::Attribute::Subject(v)
                    | wire::Attribute::Grade(v)
                    | wire::Attribute::Period(v) => {
                        v.as_deref().map_or(Ok(()), |v| text("value", v))
                    }
                    wire::Attribute::Ext(field) => {
                        key("ext key", &field.key, 64)?;
                        field
                            .value
                            .as_deref()
                            .map_or(Ok(()), |v| text("ext value", v))
                    }
                }
            }
        }
    }

    fn group(&mut self, g: &'a wire::Group) -> Result<(), String> {
        key("group key", &g.key, MAX_KEY)?;
        if !self.keys.insert(g.key.as_str()) {
            return Err(format!("group key {:?} is used twice", g.key));
        }
        let id = group_id(self.plugin, &g.key);
        if self.section_ids.contains(id.as_str()) {
            return Err(format!("group {id} already exists in the snapshot"));
        }
        text("group name", &g.name)?;
        if g.name.trim().is_empty() {
            return Err(format!("group {:?} has an empty name", g.key));
        }
        for value in [&g.subject, &g.grade, &g.period].into_iter().flatten() {
            text("group field", value)?;
        }
        in_range("school", g.school, self.snapshot.schools.len())?;
        if let Some(t) = g.term {
            in_range("term", t, self.snapshot.terms.len())?;
        }
        if let Some(c) = g.course {
            in_range("course", c, self.snapshot.courses.len())?;
        }
        self.group += 1;
        for &s in &g.students {
            self.student(s)?;
            let seen = &mut self.seen_students[s as usize];
            if *seen == self.group {
                return Err(format!("group {:?} lists student {s} twice", g.key));
            }
            *seen = self.group;
        }
        for &t in &g.teachers {
            self.teacher(t)?;
            let seen = &mut self.seen_teachers[t as usize];
            if *seen == self.group {
                return Err(format!("group {:?} lists teacher {t} twice", g.key));
            }
            *seen = self.group;
        }
        Ok(())
    }

    fn section(&self, s: u32) -> Result<(), String> {
        in_range("section", s, self.snapshot.sections.len())?;
        if self.dropped_sections[s as usize] {
            return Err(format!("section {s} was dropped by an earlier edit"));
        }
        Ok(())
    }

    fn student(&self, s: u32) -> Result<(), String> {
        in_range("student", s, self.snapshot.students.len())?;
        if self.dropped_students[s as usize] {
            return Err(format!("student {s} was dropped by an earlier edit"));
        }
        Ok(())
    }

    fn teacher(&self, t: u32) -> Result<(), String> {
        in_range("teacher", t, self.snapshot.teachers.len())?;
        if self.dropped_teachers[t as usize] {
            return Err(format!("teacher {t} was dropped by an earlier edit"));
        }
        Ok(())
    }

    fn member(&self, m: &wire::Member) -> Result<(), String> {
        match *m {
            wire::Member::Student(s) => self.student(s),
            wire::Member::Teacher(t) => self.teacher(t),
        }
    }
}

fn in_range(table: &str, index: u32, len: usize) -> Result<(), String> {
    if (index as usize) < len {
        Ok(())
    } else {
        Err(format!(
            "{table} index {index} is out of range (the snapshot has {len} {table}s)"
        ))
    }
}

fn key(what: &str, key: &str, max: usize) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= max
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {} must be 1 to {max} letters, digits, '-', '_' or '.'",
            shown(key)
        ))
    }
}

fn text(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE {
        return Err(format!("{what} is longer than {MAX_VALUE} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} {} holds a control character", shown(value)));
    }
    Ok(())
}

/// The validated edits as `model` ids. Indices must have passed [`validate`].
pub(crate) fn to_public(plugin: &str, edits: &[wire::Edit], snapshot: &Snapshot) -> Vec<Edit> {
    let section = |s: u32| snapshot.sections[s as usize].id.clone();
    let student = |s: u32| snapshot.students[s as usize].id.clone();
    let teacher = |t: u32| snapshot.teachers[t as usize].id.clone();
    let member = |m: &wire::Member| match *m {
        wire::Member::Student(s) => Member::Student(student(s)),
        wire::Member::Teacher(t) => Member::Teacher(teacher(t)),
    };
    edits
        .iter()
        .map(|edit| match edit {
            wire::Edit::CreateGroup(g) => Edit::CreateGroup(Group {
                id: group_id(plugin, &g.key),
                name: g.name.clone(),
                school: snapshot.schools[g.school as usize].id.clone(),
                subject: g.subject.clone(),
                grade: g.grade.clone(),
                period: g.period.clone(),
                term: g.term.map(|t| snapshot.terms[t as usize].id.clone()),
                course: g.course.map(|c| snapshot.courses[c as usize].id.clone()),
                teachers: g.teachers.iter().map(|&t| teacher(t)).collect(),
                students: g.students.iter().map(|&s| student(s)).collect(),
            }),
            wire::Edit::AddMember(m) => Edit::AddMember {
                section: section(m.section),
                member: member(&m.member),
            },
            wire::Edit::RemoveMember(m) => Edit::RemoveMember {
                section: section(m.section),
                member: member(&m.member),
            },
            wire::Edit::DropSection(s) => Edit::DropSection(section(*s)),
            wire::Edit::DropStudent(s) => Edit::DropStudent(student(*s)),
            wire::Edit::DropTeacher(t) => Edit::DropTeacher(teacher(*t)),
            wire::Edit::SetAttribute(c) => Edit::SetAttribute {
                section: section(c.section),
                attribute: match &c.attribute {
                    wire::Attribute::Name(v) => Attribute::Name(v.clone()),
                    wire::Attribute::Subject(v) => Attribute::Subject(v.clone()),
                    wire::Attribute::Grade(v) => Attribute::Grade(v.clone()),
                    wire::Attribute::Period(v) => Attribute::Period(v.clone()),
                    wire::Attribute::Ext(e) => Attribute::Ext {
                        key: e.key.clone(),
                        value: e.value.clone(),
                    },
                },
            },
        })
        .collect()
}

/// What a run changed, by kind of edit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EditCounts {
    pub groups_created: usize,
    pub members_added: usize,
    pub members_removed: usize,
    pub sections_dropped: usize,
    pub students_dropped: usize,
    pub teachers_dropped: usize,
    pub attributes_set: usize,
}

/// Applies validated edits in order and records a decision for each change. Cannot fail:
/// [`validate`] has proven every index and every conflict.
pub(crate) fn apply(plugin: &str, edits: Vec<wire::Edit>, snapshot: &mut Snapshot) -> EditCounts {
    let author = format!("plugin:{plugin}");
    let source = Source::Plugin(plugin.to_owned());
    let decide = |entity, id: &str, action, detail: String| Decision {
        entity,
        id: id.into(),
        action,
        author: author.clone(),
        detail,
    };
    let mut counts = EditCounts::default();
    let mut decisions = Vec::new();
    let mut new_sections = Vec::new();
    let mut drop_sections = HashSet::new();
    let mut drop_students = HashSet::new();
    let mut drop_teachers = HashSet::new();

    for edit in edits {
        match edit {
            wire::Edit::CreateGroup(g) => {
                let id = group_id(plugin, &g.key);
                decisions.push(decide(
                    Entity::Class,
                    &id,
                    DecisionAction::Created,
                    format!(
                        "group {:?}: {} students, {} teachers",
                        g.name,
                        g.students.len(),
                        g.teachers.len()
                    ),
                ));
                new_sections.push(Section {
                    id,
                    school: snapshot.schools[g.school as usize].id.clone(),
                    name: g.name,
                    sis_id: None,
                    subject: g.subject,
                    grade: g.grade,
                    period: g.period,
                    section_number: None,
                    term: g.term.map(|t| snapshot.terms[t as usize].id.clone()),
                    course: g.course.map(|c| snapshot.courses[c as usize].id.clone()),
                    teachers: g
                        .teachers
                        .iter()
                        .map(|&t| snapshot.teachers[t as usize].id.clone())
                        .collect(),
                    students: g
                        .students
                        .iter()
                        .map(|&s| snapshot.students[s as usize].id.clone())
                        .collect(),
                    ext: Default::default(),
                    source: Source::Plugin(plugin.to_owned()),
                    member_sources: Default::default(),
                });
                counts.groups_created += 1;
            }
            wire::Edit::AddMember(m) => {
                let section_id = snapshot.sections[m.section as usize].id.clone();
                let (entity, member_id, list) = member_list(snapshot, m.section, &m.member);
                if !list.contains(&member_id) {
                    list.push(member_id.clone());
                    let section = &mut snapshot.sections[m.section as usize];
                    // A plugin's member of a plugin's own group needs no note.
                    if section.source != source {
                        section
                            .member_sources
                            .insert(member_id.clone(), source.clone());
                    }
                    decisions.push(decide(
                        entity,
                        &member_id,
                        DecisionAction::Created,
                        format!("added to class {section_id}"),
                    ));
                    counts.members_added += 1;
                }
            }
            wire::Edit::RemoveMember(m) => {
                let section_id = snapshot.sections[m.section as usize].id.clone();
                let (entity, member_id, list) = member_list(snapshot, m.section, &m.member);
                let before = list.len();
                list.retain(|id| *id != member_id);
                if list.len() != before {
                    snapshot.sections[m.section as usize]
                        .member_sources
                        .remove(&member_id);
                    decisions.push(decide(
                        entity,
                        &member_id,
                        DecisionAction::Dropped,
                        format!("removed from class {section_id}"),
                    ));
                    counts.members_removed += 1;
                }
            }
            wire::Edit::DropSection(s) => {
                drop_sections.insert(s as usize);
                let id = &snapshot.sections[s as usize].id;
                decisions.push(decide(
                    Entity::Class,
                    id,
                    DecisionAction::Dropped,
                    "dropped by the plugin".into(),
                ));
                counts.sections_dropped += 1;
            }
            wire::Edit::DropStudent(s) => {
                let id = snapshot.students[s as usize].id.clone();
                decisions.push(decide(
                    Entity::Student,
                    &id,
                    DecisionAction::Dropped,
                    "dropped by the plugin".into(),
                ));
                drop_students.insert(id);
                counts.students_dropped += 1;
            }
            wire::Edit::DropTeacher(t) => {
                let id = snapshot.teachers[t as usize].id.clone();
                decisions.push(decide(
                    Entity::Teacher,
                    &id,
                    DecisionAction::Dropped,
                    "dropped by the plugin".into(),
                ));
                drop_teachers.insert(id);
                counts.teachers_dropped += 1;
            }
            wire::Edit::SetAttribute(change) => {
                let section = &mut snapshot.sections[change.section as usize];
                let detail = set_attribute(section, change.attribute);
                decisions.push(decide(
                    Entity::Class,
                    &section.id,
                    DecisionAction::Edited,
                    detail,
                ));
                counts.attributes_set += 1;
            }
        }
    }

    // Drops are applied last so that positions stay valid while the edits above run.
    if !drop_sections.is_empty() {
        let mut position = 0;
        snapshot.sections.retain(|_| {
            position += 1;
            !drop_sections.contains(&(position - 1))
        });
    }
    snapshot.sections.extend(new_sections);
    if !drop_students.is_empty() {
        snapshot.students.retain(|s| !drop_students.contains(&s.id));
        for section in &mut snapshot.sections {
            section.students.retain(|s| !drop_students.contains(s));
            section
                .member_sources
                .retain(|id, _| !drop_students.contains(id));
        }
    }
    if !drop_teachers.is_empty() {
        snapshot.teachers.retain(|t| !drop_teachers.contains(&t.id));
        for section in &mut snapshot.sections {
            // As for a filter: a dropped primary keeps its place, so a co-teacher stays co.
            crate::remove_teachers(section, &drop_teachers);
            section
                .member_sources
                .retain(|id, _| !drop_teachers.contains(id));
        }
    }
    snapshot.decisions.extend(decisions);
    counts
}

/// The member list of a section that `member` belongs in, with the member's entity and id.
fn member_list<'s>(
    snapshot: &'s mut Snapshot,
    section: u32,
    member: &wire::Member,
) -> (Entity, Id, &'s mut Vec<Id>) {
    let (entity, id) = match *member {
        wire::Member::Student(s) => (
            Entity::ClassStudent,
            snapshot.students[s as usize].id.clone(),
        ),
        wire::Member::Teacher(t) => (
            Entity::ClassTeacher,
            snapshot.teachers[t as usize].id.clone(),
        ),
    };
    let section = &mut snapshot.sections[section as usize];
    let list = match entity {
        Entity::ClassStudent => &mut section.students,
        _ => &mut section.teachers,
    };
    (entity, id, list)
}

/// Sets one field and describes the change for the decision log.
fn set_attribute(section: &mut Section, attribute: wire::Attribute) -> String {
    fn change(field: &str, slot: &mut Option<String>, value: Option<String>) -> String {
        let detail = format!("{field}: {:?} -> {:?}", slot, value);
        *slot = value;
        detail
    }
    match attribute {
        wire::Attribute::Name(v) => {
            let detail = format!("name: {:?} -> {:?}", section.name, v);
            section.name = v;
            detail
        }
        wire::Attribute::Subject(v) => change("subject", &mut section.subject, v),
        wire::Attribute::Grade(v) => change("grade", &mut section.grade, v),
        wire::Attribute::Period(v) => change("period", &mut section.period, v),
        wire::Attribute::Ext(field) => {
            let old = match &field.value {
                Some(v) => section.ext.insert(field.key.clone(), v.clone()),
                None => section.ext.remove(&field.key),
            };
            format!("ext.{}: {:?} -> {:?}", field.key, old, field.value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosterflow_model::{School, Student, Teacher};

    fn snapshot() -> Snapshot {
        Snapshot {
            schools: vec![School {
                id: "sc".into(),
                ..School::default()
            }],
            sections: vec![Section {
                id: "se0".into(),
                school: "sc".into(),
                name: "Math".into(),
                teachers: vec!["t0".into()],
                students: vec!["s0".into(), "s1".into()],
                ..Section::default()
            }],
            students: ["s0", "s1", "s2"]
                .map(|id| Student {
                    id: id.into(),
                    ..Student::default()
                })
                .into(),
            teachers: ["t0", "t1"]
                .map(|id| Teacher {
                    id: id.into(),
                    ..Teacher::default()
                })
                .into(),
            ..Snapshot::default()
        }
    }

    fn group(key: &str, students: Vec<u32>) -> wire::Edit {
        wire::Edit::CreateGroup(wire::Group {
            key: key.into(),
            name: "G".into(),
            school: 0,
            subject: None,
            grade: None,
            period: None,
            term: None,
            course: None,
            teachers: vec![1],
            students,
        })
    }

    fn reason(edits: &[wire::Edit]) -> String {
        match validate("p", edits, &snapshot()) {
            Err(PluginError::InvalidEdit { index, reason, .. }) => format!("#{index}: {reason}"),
            other => panic!("expected an invalid edit, got {other:?}"),
        }
    }

    #[test]
    fn validation_rejects_what_cannot_apply() {
        assert_eq!(
            reason(&[wire::Edit::DropTeacher(2)]),
            "#0: teacher index 2 is out of range (the snapshot has 2 teachers)"
        );
        assert!(reason(&[group("a", vec![0, 0])]).contains("lists student 0 twice"));
        assert!(reason(&[group("a b", vec![])]).contains("group key \"a b\""));
        assert!(reason(&[group("a", vec![]), group("a", vec![])]).starts_with("#1:"));
        assert!(
            reason(&[
                wire::Edit::DropStudent(2),
                wire::Edit::AddMember(wire::Membership {
                    section: 0,
                    member: wire::Member::Student(2),
                }),
            ])
            .contains("student 2 was dropped by an earlier edit")
        );
        let control = wire::Edit::SetAttribute(wire::AttributeChange {
            section: 0,
            attribute: wire::Attribute::Name("a\u{7}".into()),
        });
        assert!(reason(&[control]).contains("control character"));
    }

    #[test]
    fn a_group_id_that_exists_already_is_rejected() {
        let mut s = snapshot();
        s.sections[0].id = "plugin:p:a".into();
        assert!(validate("p", &[group("a", vec![])], &s).is_err());
    }

    #[test]
    fn a_dropped_primary_teacher_keeps_its_place_so_the_co_teacher_stays_co() {
        let mut s = snapshot();
        s.sections[0].teachers.push("t1".into());
        let edits = vec![wire::Edit::DropTeacher(0)];
        validate("p", &edits, &s).expect("valid");
        apply("p", edits, &mut s);
        assert!(s.teachers.iter().all(|t| t.id != "t0"));
        // The plan passes over the id that is no longer in the roster: t1 is still second.
        assert_eq!(s.sections[0].teachers, ["t0", "t1"]);
    }

    #[test]
    fn apply_records_members_sources_and_decisions() {
        let mut s = snapshot();
        let edits = vec![
            group("g", vec![2, 0]),
            wire::Edit::AddMember(wire::Membership {
                section: 0,
                member: wire::Member::Student(2),
            }),
            // Already there: no change, no decision.
            wire::Edit::AddMember(wire::Membership {
                section: 0,
                member: wire::Member::Student(0),
            }),
            wire::Edit::RemoveMember(wire::Membership {
                section: 0,
                member: wire::Member::Teacher(0),
            }),
            wire::Edit::SetAttribute(wire::AttributeChange {
                section: 0,
                attribute: wire::Attribute::Ext(wire::ExtField {
                    key: "band".into(),
                    value: Some("2".into()),
                }),
            }),
            wire::Edit::DropStudent(1),
        ];
        validate("p", &edits, &s).expect("valid");
        let counts = apply("p", edits, &mut s);
        assert_eq!(
            counts,
            EditCounts {
                groups_created: 1,
                members_added: 1,
                members_removed: 1,
                students_dropped: 1,
                attributes_set: 1,
                ..EditCounts::default()
            }
        );
        let math = &s.sections[0];
        assert_eq!(math.students, ["s0", "s2"]);
        assert!(math.teachers.is_empty());
        assert_eq!(
            math.member_sources.get("s2"),
            Some(&Source::Plugin("p".into()))
        );
        assert_eq!(math.ext.get("band").map(String::as_str), Some("2"));
        let g = &s.sections[1];
        assert_eq!(g.id, "plugin:p:g");
        assert_eq!(g.source, Source::Plugin("p".into()));
        assert_eq!(
            (g.teachers.as_slice(), g.students.as_slice()),
            (&["t1".into()][..], &["s2".into(), "s0".into()][..])
        );
        assert!(g.member_sources.is_empty());
        assert_eq!(s.students.len(), 2);
        assert_eq!(s.decisions.len(), 5);
        assert!(s.decisions.iter().all(|d| d.author == "plugin:p"));
    }

    #[test]
    fn drops_apply_after_positions_are_used() {
        let mut s = snapshot();
        s.sections.push(Section {
            id: "se1".into(),
            school: "sc".into(),
            name: "Art".into(),
            ..Section::default()
        });
        let edits = vec![
            wire::Edit::DropSection(0),
            wire::Edit::SetAttribute(wire::AttributeChange {
                section: 1,
                attribute: wire::Attribute::Name("Art 2".into()),
            }),
        ];
        validate("p", &edits, &s).expect("valid");
        apply("p", edits, &mut s);
        assert_eq!(s.sections.len(), 1);
        assert_eq!(
            (s.sections[0].id.as_str(), s.sections[0].name.as_str()),
            ("se1", "Art 2")
        );
    }

    /// What wasmtime charges to copy `edits` out of a guest: `size_of` of each list element,
    /// the bytes of each string (see `copy_budget`).
    fn copy_cost(edits: &[wire::Edit]) -> usize {
        fn opt(s: &Option<String>) -> usize {
            s.as_ref().map_or(0, String::len)
        }
        size_of_val(edits)
            + edits
                .iter()
                .map(|edit| match edit {
                    wire::Edit::CreateGroup(g) => {
                        g.key.len()
                            + g.name.len()
                            + opt(&g.subject)
                            + opt(&g.grade)
                            + opt(&g.period)
                            + 4 * (g.teachers.len() + g.students.len())
                    }
                    wire::Edit::SetAttribute(change) => match &change.attribute {
                        wire::Attribute::Name(v) => v.len(),
                        wire::Attribute::Subject(v)
                        | wire::Attribute::Grade(v)
                        | wire::Attribute::Period(v) => opt(v),
                        wire::Attribute::Ext(e) => e.key.len() + opt(&e.value),
                    },
                    _ => 0,
                })
                .sum::<usize>()
    }

    #[test]
    fn the_copy_budget_covers_every_output_within_the_cap() {
        let set = |attribute| {
            wire::Edit::SetAttribute(wire::AttributeChange {
                section: 0,
                attribute,
            })
        };
        let outputs = [
            vec![wire::Edit::DropStudent(0); 1000],
            vec![set(wire::Attribute::Subject(None)); 1000],
            vec![set(wire::Attribute::Name(String::new())); 1000],
            vec![
                set(wire::Attribute::Ext(wire::ExtField {
                    key: "band".into(),
                    value: Some("x".repeat(1000)),
                }));
                100
            ],
            vec![group("g", (0..10_000).collect())],
            vec![group("g", Vec::new()); 1000],
        ];
        for edits in outputs {
            let counted = output_bytes(&edits);
            assert!(
                copy_cost(&edits) <= copy_budget(counted as u64),
                "{} edits counted {counted} bytes cost {} to copy",
                edits.len(),
                copy_cost(&edits)
            );
        }
        // And the budget stays a small multiple of the cap.
        assert!(copy_budget(16 << 20) <= 16 * (16 << 20));
    }

    #[test]
    fn edits_display_as_one_line_each() {
        let edit = Edit::SetAttribute {
            section: "se0".into(),
            attribute: Attribute::Ext {
                key: "band".into(),
                value: None,
            },
        };
        assert_eq!(edit.to_string(), "set ext.band = (none) on section se0");
    }
}
