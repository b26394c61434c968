//! The snapshot as a plugin reads it: plain Rust types, one table per kind of record, records
//! referring to each other by typed index.
//!
//! This file depends on nothing but `std`, so that plugin logic written against it also runs
//! natively (tests, benchmarks) without a WASM runtime.

macro_rules! index_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// The position in its table, for indexing a `Vec`.
            pub fn get(self) -> usize {
                self.0 as usize
            }
        }
    };
}

index_type!(
    /// A school: a position in [`Snapshot::schools`].
    SchoolIndex
);
index_type!(
    /// A term: a position in [`Snapshot::terms`].
    TermIndex
);
index_type!(
    /// A course: a position in [`Snapshot::courses`].
    CourseIndex
);
index_type!(
    /// A section: a position in [`Snapshot::sections`].
    SectionIndex
);
index_type!(
    /// A student: a position in [`Snapshot::students`].
    StudentIndex
);
index_type!(
    /// A teacher: a position in [`Snapshot::teachers`].
    TeacherIndex
);
index_type!(
    /// A grade value: a position in [`Snapshot::grades`].
    GradeIndex
);

/// One district's roster, as the host sends it to a plugin.
///
/// Indices are valid for one run only: they change whenever the roster does. Columns a plugin
/// did not ask for in [`Wants`](crate::Wants) are empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The district's Clever id.
    pub district: String,
    pub schools: Vec<School>,
    pub terms: Vec<Term>,
    pub courses: Vec<Course>,
    pub sections: Vec<Section>,
    /// The distinct grade values of students, which [`Student::grade`] indexes.
    pub grades: Vec<String>,
    pub students: Vec<Student>,
    /// Parallel to `students` when the plugin wants `student_ids`, else empty.
    pub student_ids: Vec<StudentIds>,
    pub teachers: Vec<Teacher>,
    /// Parallel to `teachers` when the plugin wants `teacher_details`, else empty.
    pub teacher_details: Vec<TeacherDetails>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct School {
    /// Clever id.
    pub id: String,
    pub sis_id: Option<String>,
    pub school_number: Option<String>,
    pub name: String,
    pub low_grade: Option<String>,
    pub high_grade: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Term {
    /// Clever id.
    pub id: String,
    pub name: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Course {
    /// Clever id.
    pub id: String,
    pub name: Option<String>,
    pub number: Option<String>,
}

/// A section (Freckle calls it a class).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Clever id, or `plugin:<name>:<key>` for a group an earlier plugin made.
    pub id: String,
    pub sis_id: Option<String>,
    pub school: SchoolIndex,
    pub name: String,
    pub subject: Option<String>,
    pub grade: Option<String>,
    pub period: Option<String>,
    pub term: Option<TermIndex>,
    pub course: Option<CourseIndex>,
    /// The primary teacher first.
    pub teachers: Vec<TeacherIndex>,
    pub students: Vec<StudentIndex>,
    /// `ext.*` fields as (key, value); empty unless the plugin wants `section_ext`.
    pub ext: Vec<(String, String)>,
    /// The plugin that made this section, or `None` for a section from the SIS.
    pub made_by: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Student {
    /// The primary school.
    pub school: Option<SchoolIndex>,
    /// The grade, as a position in [`Snapshot::grades`]; see [`Snapshot::grade`].
    pub grade: Option<GradeIndex>,
}

/// A student's identifiers (sent only to plugins that want `student_ids`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudentIds {
    /// Clever id.
    pub id: String,
    pub sis_id: Option<String>,
    pub state_id: Option<String>,
    pub student_number: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Teacher {
    /// The primary school.
    pub school: Option<SchoolIndex>,
}

/// A teacher's identifiers and title (sent only to plugins that want `teacher_details`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeacherDetails {
    /// Clever id.
    pub id: String,
    pub sis_id: Option<String>,
    pub state_id: Option<String>,
    pub teacher_number: Option<String>,
    pub email: Option<String>,
    pub title: Option<String>,
}

impl Snapshot {
    /// The school at `index`. Panics if the index is not from this snapshot.
    pub fn school(&self, index: SchoolIndex) -> &School {
        &self.schools[index.get()]
    }

    /// The section at `index`. Panics if the index is not from this snapshot.
    pub fn section(&self, index: SectionIndex) -> &Section {
        &self.sections[index.get()]
    }

    /// A student's grade as the SIS spells it (`"3"`, `"Kindergarten"`...), if known.
    pub fn grade(&self, student: &Student) -> Option<&str> {
        student
            .grade
            .and_then(|g| self.grades.get(g.get()))
            .map(String::as_str)
    }

    /// Sections with their indices.
    pub fn sections_indexed(&self) -> impl Iterator<Item = (SectionIndex, &Section)> {
        self.sections
            .iter()
            .enumerate()
            .map(|(i, s)| (SectionIndex(to_u32(i)), s))
    }

    /// Students with their indices.
    pub fn students_indexed(&self) -> impl Iterator<Item = (StudentIndex, &Student)> {
        self.students
            .iter()
            .enumerate()
            .map(|(i, s)| (StudentIndex(to_u32(i)), s))
    }

    /// Teachers with their indices.
    pub fn teachers_indexed(&self) -> impl Iterator<Item = (TeacherIndex, &Teacher)> {
        self.teachers
            .iter()
            .enumerate()
            .map(|(i, t)| (TeacherIndex(to_u32(i)), t))
    }

    /// Schools with their indices.
    pub fn schools_indexed(&self) -> impl Iterator<Item = (SchoolIndex, &School)> {
        self.schools
            .iter()
            .enumerate()
            .map(|(i, s)| (SchoolIndex(to_u32(i)), s))
    }
}

/// Tables come from the host as `list<T>` indexed by `u32`, so every position fits.
fn to_u32(i: usize) -> u32 {
    u32::try_from(i).expect("snapshot tables are indexed by u32")
}
