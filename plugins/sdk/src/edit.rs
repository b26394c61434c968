//! What a plugin returns: edits to the snapshot, or an error with a kind; and what it says about
//! itself. Plain Rust types that depend on nothing but `std`.

use crate::snapshot::{
    CourseIndex, SchoolIndex, SectionIndex, StudentIndex, TeacherIndex, TermIndex,
};

/// One change to the snapshot. The host validates every edit, then applies them in order, all or
/// none, and records the plugin as their author.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Make a new class, such as an intervention group.
    CreateGroup(Group),
    /// Add a member to a section of the snapshot (adding a present member changes nothing).
    AddMember {
        section: SectionIndex,
        member: Member,
    },
    /// Remove a member from a section of the snapshot (removing an absent one changes nothing).
    RemoveMember {
        section: SectionIndex,
        member: Member,
    },
    /// Drop a section: it is archived as filtered, not deleted.
    DropSection(SectionIndex),
    /// Drop a student; they leave every section too.
    DropStudent(StudentIndex),
    /// Drop a teacher; they leave every section too, and the sections stay.
    DropTeacher(TeacherIndex),
    /// Set a field of a section of the snapshot.
    SetAttribute {
        section: SectionIndex,
        attribute: Attribute,
    },
}

/// A member of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Member {
    Student(StudentIndex),
    /// Added teachers go after the existing ones (the primary teacher stays first).
    Teacher(TeacherIndex),
}

/// A new class a plugin makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Stable across runs and unique within the plugin: the class's id becomes
    /// `plugin:<plugin name>:<key>`, so the same key next night updates the same class.
    /// Letters, digits, `-`, `_` and `.`; at most 128 bytes.
    pub key: String,
    pub name: String,
    pub school: SchoolIndex,
    pub subject: Option<String>,
    pub grade: Option<String>,
    pub period: Option<String>,
    pub term: Option<TermIndex>,
    pub course: Option<CourseIndex>,
    /// The primary teacher first.
    pub teachers: Vec<TeacherIndex>,
    pub students: Vec<StudentIndex>,
}

impl Group {
    /// A group with a key, a name and a school, and nothing else yet.
    pub fn new(key: impl Into<String>, name: impl Into<String>, school: SchoolIndex) -> Group {
        Group {
            key: key.into(),
            name: name.into(),
            school,
            subject: None,
            grade: None,
            period: None,
            term: None,
            course: None,
            teachers: Vec::new(),
            students: Vec::new(),
        }
    }
}

/// A section field a plugin may set; `None` clears an optional field.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    Name(String),
    Subject(Option<String>),
    Grade(Option<String>),
    Period(Option<String>),
    /// An `ext.*` field; `None` removes it.
    Ext {
        key: String,
        value: Option<String>,
    },
}

/// Why a plugin could not produce edits. The host fails the stage with the plugin's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The config is wrong: the pipeline file must be fixed.
    InvalidConfig(String),
    /// The snapshot lacks something the plugin needs.
    UnsupportedSnapshot(String),
    /// Anything else.
    Fatal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Error::UnsupportedSnapshot(m) => write!(f, "unsupported snapshot: {m}"),
            Error::Fatal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Columns that cost time to send; ask only for those the plugin reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    /// Fill [`Snapshot::student_ids`](crate::Snapshot::student_ids).
    pub student_ids: bool,
    /// Fill [`Snapshot::teacher_details`](crate::Snapshot::teacher_details).
    pub teacher_details: bool,
    /// Fill [`Section::ext`](crate::Section::ext).
    pub section_ext: bool,
}

/// What a plugin says about itself (`rosterflow plugin check` prints it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    /// The plugin's own name (a pipeline may call it something else).
    pub name: String,
    pub version: String,
    /// One line: what it does.
    pub description: String,
    pub wants: Wants,
}
