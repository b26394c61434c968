//! The synced tables of the Freckle DB, described once: for each entity its table, the columns the
//! sync owns, what kind of value each holds, and how to read that value off a roster record.
//! Reading state, diffing and writing all follow these descriptions, so one mechanism serves
//! every entity and a column cannot mean one thing to the planner and another to the store.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::model::{
    Admin, Course, District, Entity, School, Section, Snapshot, Student, Teacher, Term,
};

/// What a synced column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Flag,
    /// The row id of another entity's record, which the roster names by Clever id.
    Ref(Entity),
}

/// A column's value as a roster record gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Text(Option<Cow<'a, str>>),
    Flag(bool),
    /// The Clever id of the referenced record.
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

/// A table whose rows the sync keys by Clever id.
pub struct Table<R: 'static> {
    pub entity: Entity,
    pub name: &'static str,
    /// The columns the sync writes (at most 32: changes are kept as a bit set).
    pub columns: &'static [Column<R>],
    /// Whether rows belong to a district and can be archived (the district's own row cannot).
    pub in_district: bool,
}

/// A roster record that has a row in a synced table.
pub trait Record: Sized + 'static {
    const TABLE: Table<Self>;
    /// The Clever id.
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
    pub in_district: bool,
    pub columns: Vec<(&'static str, Kind)>,
}

impl Layout {
    fn of<R: Record>() -> Layout {
        let table = &R::TABLE;
        Layout {
            entity: table.entity,
            name: table.name,
            in_district: table.in_district,
            columns: table.columns.iter().map(|c| (c.name, c.kind)).collect(),
        }
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

fn id(value: &Option<crate::model::Id>) -> Value<'_> {
    Value::Ref(value.as_deref())
}

impl Record for District {
    const TABLE: Table<Self> = Table {
        entity: Entity::District,
        name: "districts",
        columns: &[Column {
            name: "name",
            kind: Kind::Text,
            value: |d, _| Value::Text(Some(Cow::Borrowed(&d.name))),
        }],
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
        columns: &[
            Column {
                name: "name",
                kind: Kind::Text,
                value: |s, _| Value::Text(Some(Cow::Borrowed(&s.name))),
            },
            Column {
                name: "sis_id",
                kind: Kind::Text,
                value: |s, _| text(&s.sis_id),
            },
            Column {
                name: "school_number",
                kind: Kind::Text,
                value: |s, _| text(&s.school_number),
            },
            Column {
                name: "state_id",
                kind: Kind::Text,
                value: |s, _| text(&s.state_id),
            },
            Column {
                name: "low_grade",
                kind: Kind::Text,
                value: |s, _| text(&s.low_grade),
            },
            Column {
                name: "high_grade",
                kind: Kind::Text,
                value: |s, _| text(&s.high_grade),
            },
            Column {
                name: "synthesized",
                kind: Kind::Flag,
                value: |s, _| Value::Flag(s.synthesized),
            },
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
        columns: &[
            Column {
                name: "name",
                kind: Kind::Text,
                value: |t, _| text(&t.name),
            },
            Column {
                name: "start_date",
                kind: Kind::Text,
                value: |t, _| text(&t.start_date),
            },
            Column {
                name: "end_date",
                kind: Kind::Text,
                value: |t, _| text(&t.end_date),
            },
            Column {
                name: "synthesized",
                kind: Kind::Flag,
                value: |t, _| Value::Flag(t.synthesized),
            },
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
        columns: &[
            Column {
                name: "name",
                kind: Kind::Text,
                value: |c, _| text(&c.name),
            },
            Column {
                name: "number",
                kind: Kind::Text,
                value: |c, _| text(&c.number),
            },
            Column {
                name: "synthesized",
                kind: Kind::Flag,
                value: |c, _| Value::Flag(c.synthesized),
            },
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
        columns: &[
            Column {
                name: "sis_id",
                kind: Kind::Text,
                value: |t, _| text(&t.sis_id),
            },
            Column {
                name: "email",
                kind: Kind::Text,
                value: |t, _| text(&t.email),
            },
            Column {
                name: "first_name",
                kind: Kind::Text,
                value: |t, _| text(&t.name.first),
            },
            Column {
                name: "middle_name",
                kind: Kind::Text,
                value: |t, _| text(&t.name.middle),
            },
            Column {
                name: "last_name",
                kind: Kind::Text,
                value: |t, _| text(&t.name.last),
            },
            Column {
                name: "title",
                kind: Kind::Text,
                value: |t, _| text(&t.title),
            },
            Column {
                name: "teacher_number",
                kind: Kind::Text,
                value: |t, _| text(&t.teacher_number),
            },
            Column {
                name: "state_id",
                kind: Kind::Text,
                value: |t, _| text(&t.state_id),
            },
            Column {
                name: "school_id",
                kind: Kind::Ref(Entity::School),
                value: |t, _| id(&t.school),
            },
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
        columns: &[
            Column {
                name: "sis_id",
                kind: Kind::Text,
                value: |s, _| text(&s.sis_id),
            },
            Column {
                name: "state_id",
                kind: Kind::Text,
                value: |s, _| text(&s.state_id),
            },
            Column {
                name: "student_number",
                kind: Kind::Text,
                value: |s, _| text(&s.student_number),
            },
            Column {
                name: "email",
                kind: Kind::Text,
                value: |s, _| text(&s.email),
            },
            Column {
                name: "first_name",
                kind: Kind::Text,
                value: |s, _| text(&s.name.first),
            },
            Column {
                name: "middle_name",
                kind: Kind::Text,
                value: |s, _| text(&s.name.middle),
            },
            Column {
                name: "last_name",
                kind: Kind::Text,
                value: |s, _| text(&s.name.last),
            },
            Column {
                name: "grade",
                kind: Kind::Text,
                value: |s, _| text(&s.grade),
            },
            Column {
                name: "school_id",
                kind: Kind::Ref(Entity::School),
                value: |s, _| id(&s.school),
            },
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
        columns: &[
            Column {
                name: "email",
                kind: Kind::Text,
                value: |a, _| text(&a.email),
            },
            Column {
                name: "first_name",
                kind: Kind::Text,
                value: |a, _| text(&a.name.first),
            },
            Column {
                name: "middle_name",
                kind: Kind::Text,
                value: |a, _| text(&a.name.middle),
            },
            Column {
                name: "last_name",
                kind: Kind::Text,
                value: |a, _| text(&a.name.last),
            },
            Column {
                name: "title",
                kind: Kind::Text,
                value: |a, _| text(&a.title),
            },
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
        columns: &[
            Column {
                name: "sis_id",
                kind: Kind::Text,
                value: |s, _| text(&s.sis_id),
            },
            Column {
                name: "school_id",
                kind: Kind::Ref(Entity::School),
                value: |s, _| Value::Ref(Some(&s.school)),
            },
            Column {
                name: "name",
                kind: Kind::Text,
                value: |s, _| Value::Text(Some(Cow::Borrowed(&s.name))),
            },
            Column {
                name: "subject",
                kind: Kind::Text,
                value: |s, _| text(&s.subject),
            },
            Column {
                name: "grade",
                kind: Kind::Text,
                value: |s, _| text(&s.grade),
            },
            Column {
                name: "period",
                kind: Kind::Text,
                value: |s, _| text(&s.period),
            },
            Column {
                name: "section_number",
                kind: Kind::Text,
                value: |s, _| text(&s.section_number),
            },
            // The term's name, kept on the class for the Freckle app.
            Column {
                name: "term",
                kind: Kind::Text,
                value: |s, lookups| {
                    Value::Text(
                        s.term
                            .as_deref()
                            .and_then(|t| lookups.term_names.get(t))
                            .map(|name| Cow::Borrowed(*name)),
                    )
                },
            },
            Column {
                name: "term_id",
                kind: Kind::Ref(Entity::Term),
                value: |s, _| id(&s.term),
            },
            Column {
                name: "course_id",
                kind: Kind::Ref(Entity::Course),
                value: |s, _| id(&s.course),
            },
            Column {
                name: "source",
                kind: Kind::Text,
                value: |s, _| Value::Text(Some(s.source.as_db())),
            },
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
