//! The synced tables of the Freckle DB, described once: for each entity its table, the columns the
//! sync owns, what kind of value each holds, and how to read that value off a roster record.
//! Reading state, diffing and writing all follow these descriptions, so one mechanism serves
//! every entity and a column cannot mean one thing to the planner and another to the store.

use std::borrow::Cow;
use std::collections::HashMap;

use rosterflow_model::{
    Admin, Course, District, Entity, School, Section, Snapshot, Student, Teacher, Term,
};

/// What a synced column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Flag,
    /// The row id of another entity's record, which the roster names by its source id.
    Ref(Entity),
}

/// A column's value as a roster record gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Text(Option<Cow<'a, str>>),
    Flag(bool),
    /// The source id of the referenced record.
    Ref(Option<&'a str>),
}

/// What a column's value may depend on beyond its own record.
pub struct Lookups<'a> {
    term_names: HashMap<&'a str, &'a str>,
}

impl<'a> Lookups<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Lookups<'a> {
        Lookups {
            term_names: snapshot
                .terms
                .iter()
                .filter_map(|t| Some((t.id.as_str(), t.name.as_deref()?)))
                .collect(),
        }
    }
}

/// One synced column.
pub struct Column<R: 'static> {
    pub name: &'static str,
    pub kind: Kind,
    pub value: for<'a> fn(&'a R, &Lookups<'a>) -> Value<'a>,
}

/// A column of `R`'s table.
const fn column<R>(
    name: &'static str,
    kind: Kind,
    value: for<'a> fn(&'a R, &Lookups<'a>) -> Value<'a>,
) -> Column<R> {
    Column { name, kind, value }
}

/// A table whose rows the sync keys by their record's [`Record::key`], unique within their
/// district.
pub struct Table<R: 'static> {
    pub entity: Entity,
    pub name: &'static str,
    /// The column that holds the key: `source_id`, or the district's own `key`.
    pub key_column: &'static str,
    /// The columns the sync writes (at most 32: changes are kept as a bit set).
    pub columns: &'static [Column<R>],
    /// Whether rows belong to a district and can be archived (the district's own row cannot).
    pub in_district: bool,
}

/// A roster record that has a row in a synced table.
pub trait Record: Sized + 'static {
    const TABLE: Table<Self>;
    /// The record's id at its source (the district's key, for the district).
    fn key(&self) -> &str;
    /// The school the record belongs to, for per-school safety checks.
    fn school(&self) -> Option<&str>;
}

/// The column set of a change: bit `i` is column `i` of the table.
pub type Columns = u32;

/// Visits each synced table with its records, in the order a plan applies them (referenced
/// tables first).
pub trait TableVisitor<'a> {
    type Error;
    fn visit<R: Record>(&mut self, records: &'a [R]) -> Result<(), Self::Error>;
}

/// Runs `visitor` over the snapshot's records of every synced table, stopping at an error.
pub fn visit_tables<'a, V: TableVisitor<'a>>(
    snapshot: &'a Snapshot,
    visitor: &mut V,
) -> Result<(), V::Error> {
    visitor.visit(std::slice::from_ref(&snapshot.district))?;
    visitor.visit(&snapshot.schools)?;
    visitor.visit(&snapshot.terms)?;
    visitor.visit(&snapshot.courses)?;
    visitor.visit(&snapshot.teachers)?;
    visitor.visit(&snapshot.students)?;
    visitor.visit(&snapshot.admins)?;
    visitor.visit(&snapshot.sections)
}

/// The synced entities, in the order [`visit_tables`] visits them.
pub const ENTITIES: [Entity; 8] = [
    Entity::District,
    Entity::School,
    Entity::Term,
    Entity::Course,
    Entity::Teacher,
    Entity::Student,
    Entity::Admin,
    Entity::Class,
];

/// A synced table's shape, whatever its record type.
#[derive(Debug, Clone)]
pub struct Layout {
    pub entity: Entity,
    pub name: &'static str,
    pub key_column: &'static str,
    pub in_district: bool,
    pub columns: Vec<(&'static str, Kind)>,
}

impl Layout {
    fn of<R: Record>() -> Layout {
        let table = &R::TABLE;
        Layout {
            entity: table.entity,
            name: table.name,
            key_column: table.key_column,
            in_district: table.in_district,
            columns: table.columns.iter().map(|c| (c.name, c.kind)).collect(),
        }
    }

    /// The set of the columns named `names` (those the table has).
    pub fn mask(&self, names: &[&str]) -> Columns {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| names.contains(name))
            .fold(0, |set, (i, _)| set | 1 << i)
    }

    /// The names of the columns in `set`, comma-separated.
    pub fn names(&self, set: Columns) -> String {
        let names: Vec<&str> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| set & (1 << i) != 0)
            .map(|(_, (name, _))| *name)
            .collect();
        names.join(",")
    }
}

/// The shape of a synced entity's table.
pub fn layout(entity: Entity) -> Layout {
    match entity {
        Entity::District => Layout::of::<District>(),
        Entity::School => Layout::of::<School>(),
        Entity::Term => Layout::of::<Term>(),
        Entity::Course => Layout::of::<Course>(),
        Entity::Teacher => Layout::of::<Teacher>(),
        Entity::Student => Layout::of::<Student>(),
        Entity::Admin => Layout::of::<Admin>(),
        Entity::Class | Entity::ClassTeacher | Entity::ClassStudent => Layout::of::<Section>(),
    }
}

fn text(value: &Option<String>) -> Value<'_> {
    Value::Text(value.as_deref().map(Cow::Borrowed))
}

fn id(value: &Option<rosterflow_model::Id>) -> Value<'_> {
    Value::Ref(value.as_deref())
}

impl Record for District {
    const TABLE: Table<Self> = Table {
        entity: Entity::District,
        name: "districts",
        key_column: "key",
        columns: &[
            column("name", Kind::Text, |d, _| {
                Value::Text(Some(Cow::Borrowed(&d.name)))
            }),
            column("source_kind", Kind::Text, |d, _| {
                Value::Text(Some(Cow::Borrowed(d.source.as_str())))
            }),
            column("source_id", Kind::Text, |d, _| {
                Value::Text(Some(Cow::Borrowed(&d.source_id)))
            }),
        ],
        in_district: false,
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn school(&self) -> Option<&str> {
        None
    }
}

impl Record for School {
    const TABLE: Table<Self> = Table {
        entity: Entity::School,
        name: "schools",
        key_column: "source_id",
        columns: &[
            column("name", Kind::Text, |s, _| {
                Value::Text(Some(Cow::Borrowed(&s.name)))
            }),
            column("sis_id", Kind::Text, |s, _| text(&s.sis_id)),
            column("school_number", Kind::Text, |s, _| text(&s.school_number)),
            column("state_id", Kind::Text, |s, _| text(&s.state_id)),
            column("low_grade", Kind::Text, |s, _| text(&s.low_grade)),
            column("high_grade", Kind::Text, |s, _| text(&s.high_grade)),
            column("synthesized", Kind::Flag, |s, _| Value::Flag(s.synthesized)),
        ],
        in_district: true,
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn school(&self) -> Option<&str> {
        Some(&self.id)
    }
}

impl Record for Term {
    const TABLE: Table<Self> = Table {
        entity: Entity::Term,
        name: "terms",
        key_column: "source_id",
        columns: &[
            column("name", Kind::Text, |t, _| text(&t.name)),
            column("start_date", Kind::Text, |t, _| text(&t.start_date)),
            column("end_date", Kind::Text, |t, _| text(&t.end_date)),
            column("synthesized", Kind::Flag, |t, _| Value::Flag(t.synthesized)),
        ],
        in_district: true,
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn school(&self) -> Option<&str> {
        None
    }
}

impl Record for Course {
    const TABLE: Table<Self> = Table {
        entity: Entity::Course,
        name: "courses",
        key_column: "source_id",
        columns: &[
            column("name", Kind::Text, |c, _| text(&c.name)),
            column("number", Kind::Text, |c, _| text(&c.number)),
            column("synthesized", Kind::Flag, |c, _| Value::Flag(c.synthesized)),
        ],
        in_district: true,
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn school(&self) -> Option<&str> {
        None
    }
}

impl Record for Teacher {
    const TABLE: Table<Self> = Table {
        entity: Entity::Teacher,
        name: "teachers",
        key_column: "source_id",
        columns: &[
            column("sis_id", Kind::Text, |t, _| text(&t.sis_id)),
            column("email", Kind::Text, |t, _| text(&t.email)),
            column("first_name", Kind::Text, |t, _| text(&t.name.first)),
            column("middle_name", Kind::Text, |t, _| text(&t.name.middle)),
            column("last_name", Kind::Text, |t, _| text(&t.name.last)),
            column("title", Kind::Text, |t, _| text(&t.title)),
            column("teacher_number", Kind::Text, |t, _| text(&t.teacher_number)),
            column("state_id", Kind::Text, |t, _| text(&t.state_id)),
            column("school_id", Kind::Ref(Entity::School), |t, _| id(&t.school)),
        ],
        in_district: true,
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn school(&self) -> Option<&str> {
        self.school.as_deref()
    }
}

impl Record for Student {
    const TABLE: Table<Self> = Table {
        entity: Entity::Student,
        name: "students",
        key_column: "source_id",
        columns: &[
            column("sis_id", Kind::Text, |s, _| text(&s.sis_id)),
            column("state_id", Kind::Text, |s, _| text(&s.state_id)),
            column("student_number", Kind::Text, |s, _| text(&s.student_number)),
            column("email", Kind::Text, |s, _| text(&s.email)),
            column("first_name", Kind::Text, |s, _| text(&s.name.first)),
            column("middle_name", Kind::Text, |s, _| text(&s.name.middle)),
            column("last_name", Kind::Text, |s, _| text(&s.name.last)),
            column("grade", Kind::Text, |s, _| text(&s.grade)),
            column("school_id", Kind::Ref(Entity::School), |s, _| id(&s.school)),
        ],
        in_district: true,
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn school(&self) -> Option<&str> {
        self.school.as_deref()
    }
}

impl Record for Admin {
    const TABLE: Table<Self> = Table {
        entity: Entity::Admin,
        name: "admins",
        key_column: "source_id",
        columns: &[
            column("email", Kind::Text, |a, _| text(&a.email)),
            column("first_name", Kind::Text, |a, _| text(&a.name.first)),
            column("middle_name", Kind::Text, |a, _| text(&a.name.middle)),
            column("last_name", Kind::Text, |a, _| text(&a.name.last)),
            column("title", Kind::Text, |a, _| text(&a.title)),
        ],
        in_district: true,
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn school(&self) -> Option<&str> {
        None
    }
}

impl Record for Section {
    const TABLE: Table<Self> = Table {
        entity: Entity::Class,
        name: "classes",
        key_column: "source_id",
        columns: &[
            column("sis_id", Kind::Text, |s, _| text(&s.sis_id)),
            column("school_id", Kind::Ref(Entity::School), |s, _| {
                Value::Ref(Some(&s.school))
            }),
            column("name", Kind::Text, |s, _| {
                Value::Text(Some(Cow::Borrowed(&s.name)))
            }),
            column("subject", Kind::Text, |s, _| text(&s.subject)),
            column("grade", Kind::Text, |s, _| text(&s.grade)),
            column("period", Kind::Text, |s, _| text(&s.period)),
            column("section_number", Kind::Text, |s, _| text(&s.section_number)),
            // The term's name, kept on the class for the Freckle app.
            column("term", Kind::Text, |s, lookups| {
                let name = s.term.as_deref().and_then(|t| lookups.term_names.get(t));
                Value::Text(name.map(|name| Cow::Borrowed(*name)))
            }),
            column("term_id", Kind::Ref(Entity::Term), |s, _| id(&s.term)),
            column("course_id", Kind::Ref(Entity::Course), |s, _| id(&s.course)),
            column("source", Kind::Text, |s, _| {
                Value::Text(Some(s.source.as_db()))
            }),
        ],
        in_district: true,
    };
    fn key(&self) -> &str {
        &self.id
    }
    fn school(&self) -> Option<&str> {
        Some(&self.school)
    }
}

/// A membership table: students or teachers in classes, as intervals.
#[derive(Debug)]
pub struct MembershipTable {
    pub entity: Entity,
    pub name: &'static str,
    pub member: Entity,
    pub member_column: &'static str,
}

pub const TEACHERS_OF_CLASSES: MembershipTable = MembershipTable {
    entity: Entity::ClassTeacher,
    name: "class_teachers",
    member: Entity::Teacher,
    member_column: "teacher_id",
};

pub const STUDENTS_OF_CLASSES: MembershipTable = MembershipTable {
    entity: Entity::ClassStudent,
    name: "class_students",
    member: Entity::Student,
    member_column: "student_id",
};

/// Both membership tables, teachers first.
pub const MEMBERSHIPS: [&MembershipTable; 2] = [&TEACHERS_OF_CLASSES, &STUDENTS_OF_CLASSES];
