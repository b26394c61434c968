//! The synced tables of the Freckle DB, described once: which columns the sync owns for each
//! entity and what kind of value each holds. Reading state, diffing and writing all follow
//! these descriptions, so one mechanism serves every entity.

use crate::model::Entity;

/// What a synced column holds. Every value travels as text in a plan; this says how to bind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bool,
    /// The row id of another entity, carried in plans as that entity's Clever id.
    Ref(Entity),
}

#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

const fn text(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Text,
    }
}

const fn boolean(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Bool,
    }
}

const fn refers(name: &'static str, to: Entity) -> Column {
    Column {
        name,
        kind: Kind::Ref(to),
    }
}

/// A table whose rows the sync keys by Clever id.
#[derive(Debug)]
pub struct Table {
    pub entity: Entity,
    pub name: &'static str,
    /// The columns the sync writes, in the order plan rows carry their values.
    pub columns: &'static [Column],
    /// Whether rows belong to a district (`district_id`) and can be archived.
    pub in_district: bool,
}

/// The synced tables, in the order a plan applies them (referenced tables first).
pub const TABLES: &[Table] = &[
    Table {
        entity: Entity::District,
        name: "districts",
        columns: &[text("name")],
        in_district: false,
    },
    Table {
        entity: Entity::School,
        name: "schools",
        columns: &[
            text("name"),
            text("sis_id"),
            text("school_number"),
            text("state_id"),
            text("low_grade"),
            text("high_grade"),
            boolean("synthesized"),
        ],
        in_district: true,
    },
    Table {
        entity: Entity::Term,
        name: "terms",
        columns: &[
            text("name"),
            text("start_date"),
            text("end_date"),
            boolean("synthesized"),
        ],
        in_district: true,
    },
    Table {
        entity: Entity::Course,
        name: "courses",
        columns: &[text("name"), text("number"), boolean("synthesized")],
        in_district: true,
    },
    Table {
        entity: Entity::Teacher,
        name: "teachers",
        columns: &[
            text("sis_id"),
            text("email"),
            text("first_name"),
            text("middle_name"),
            text("last_name"),
            text("title"),
            text("teacher_number"),
            text("state_id"),
            refers("school_id", Entity::School),
        ],
        in_district: true,
    },
    Table {
        entity: Entity::Student,
        name: "students",
        columns: &[
            text("sis_id"),
            text("state_id"),
            text("student_number"),
            text("email"),
            text("first_name"),
            text("middle_name"),
            text("last_name"),
            text("grade"),
            refers("school_id", Entity::School),
        ],
        in_district: true,
    },
    Table {
        entity: Entity::Admin,
        name: "admins",
        columns: &[
            text("email"),
            text("first_name"),
            text("middle_name"),
            text("last_name"),
            text("title"),
        ],
        in_district: true,
    },
    Table {
        entity: Entity::Class,
        name: "classes",
        columns: &[
            text("sis_id"),
            refers("school_id", Entity::School),
            text("name"),
            text("subject"),
            text("grade"),
            text("period"),
            text("section_number"),
            text("term"),
            refers("term_id", Entity::Term),
            refers("course_id", Entity::Course),
            text("source"),
        ],
        in_district: true,
    },
];

/// The table of a keyed entity.
pub fn table(entity: Entity) -> &'static Table {
    TABLES
        .iter()
        .find(|t| t.entity == entity)
        .expect("every keyed entity has a table")
}

/// A membership table: students or teachers in classes, as intervals.
#[derive(Debug)]
pub struct MembershipTable {
    pub entity: Entity,
    pub name: &'static str,
    pub member: Entity,
    pub member_column: &'static str,
}

pub const MEMBERSHIPS: [MembershipTable; 2] = [
    MembershipTable {
        entity: Entity::ClassTeacher,
        name: "class_teachers",
        member: Entity::Teacher,
        member_column: "teacher_id",
    },
    MembershipTable {
        entity: Entity::ClassStudent,
        name: "class_students",
        member: Entity::Student,
        member_column: "student_id",
    },
];

pub fn membership_table(entity: Entity) -> &'static MembershipTable {
    MEMBERSHIPS
        .iter()
        .find(|t| t.entity == entity)
        .expect("every membership entity has a table")
}
