//! The generated bindings of `rosterflow:plugin@0.1.0` and the glue between them and the SDK's
//! plain types. Not for plugin authors: [`export!`](crate::export) is the way in.

use std::marker::PhantomData;

use crate::{Plugin, edit, snapshot};

wit_bindgen::generate!({
    path: "../../wit/v0.1.0",
    world: "rosterflow:plugin/plugin@0.1.0",
    pub_export_macro: true,
    export_macro_name: "__export_world",
    default_bindings_module: "rosterflow_plugin_sdk::__guest",
});

use exports::rosterflow::plugin::transform::Guest;
use rosterflow::plugin::types as wire;

/// Implements the generated export trait for any [`Plugin`].
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin> Guest for Adapter<P> {
    fn describe() -> wire::Info {
        let info = P::info();
        let mut wants = wire::Wants::empty();
        wants.set(wire::Wants::STUDENT_IDS, info.wants.student_ids);
        wants.set(wire::Wants::TEACHER_DETAILS, info.wants.teacher_details);
        wants.set(wire::Wants::SECTION_EXT, info.wants.section_ext);
        wire::Info {
            name: info.name,
            version: info.version,
            description: info.description,
            wants,
        }
    }

    fn check_config(config: String) -> Result<(), wire::PluginError> {
        let config = crate::parse_config::<P::Config>(&config).map_err(error_to_wire)?;
        P::check(&config).map_err(error_to_wire)
    }

    fn run(config: String, snapshot: wire::Snapshot) -> Result<Vec<wire::Edit>, wire::PluginError> {
        let config = crate::parse_config::<P::Config>(&config).map_err(error_to_wire)?;
        let snapshot = snapshot_from_wire(snapshot);
        let edits = P::run(&config, &snapshot).map_err(error_to_wire)?;
        Ok(edits.into_iter().map(edit_to_wire).collect())
    }
}

/// Sends one line to the host's log.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
pub(crate) fn log(level: crate::log::Level, message: &str) {
    use crate::log::Level;
    let level = match level {
        Level::Trace => rosterflow::plugin::log::Level::Trace,
        Level::Debug => rosterflow::plugin::log::Level::Debug,
        Level::Info => rosterflow::plugin::log::Level::Info,
        Level::Warn => rosterflow::plugin::log::Level::Warn,
        Level::Error => rosterflow::plugin::log::Level::Error,
    };
    rosterflow::plugin::log::log(level, message);
}

fn error_to_wire(error: edit::Error) -> wire::PluginError {
    match error {
        edit::Error::InvalidConfig(m) => wire::PluginError::InvalidConfig(m),
        edit::Error::UnsupportedSnapshot(m) => wire::PluginError::UnsupportedSnapshot(m),
        edit::Error::Fatal(m) => wire::PluginError::Fatal(m),
    }
}

// The index lists below are converted with `map(..).collect()` over same-layout types, which
// the standard library does in place: no copy of the member lists.

fn snapshot_from_wire(s: wire::Snapshot) -> snapshot::Snapshot {
    use snapshot::*;
    Snapshot {
        district: s.district,
        schools: s
            .schools
            .into_iter()
            .map(|s| School {
                id: s.id,
                sis_id: s.sis_id,
                school_number: s.school_number,
                name: s.name,
                low_grade: s.low_grade,
                high_grade: s.high_grade,
            })
            .collect(),
        terms: s
            .terms
            .into_iter()
            .map(|t| Term {
                id: t.id,
                name: t.name,
                start_date: t.start_date,
                end_date: t.end_date,
            })
            .collect(),
        courses: s
            .courses
            .into_iter()
            .map(|c| Course {
                id: c.id,
                name: c.name,
                number: c.number,
            })
            .collect(),
        sections: s
            .sections
            .into_iter()
            .map(|s| Section {
                id: s.id,
                sis_id: s.sis_id,
                school: SchoolIndex(s.school),
                name: s.name,
                subject: s.subject,
                grade: s.grade,
                period: s.period,
                term: s.term.map(TermIndex),
                course: s.course.map(CourseIndex),
                teachers: s.teachers.into_iter().map(TeacherIndex).collect(),
                students: s.students.into_iter().map(StudentIndex).collect(),
                ext: s.ext,
                made_by: s.made_by,
            })
            .collect(),
        grades: s.grades,
        students: s
            .students
            .into_iter()
            .map(|s| Student {
                school: s.school.map(SchoolIndex),
                grade: s.grade.map(GradeIndex),
            })
            .collect(),
        student_ids: s
            .student_ids
            .into_iter()
            .map(|s| StudentIds {
                id: s.id,
                sis_id: s.sis_id,
                state_id: s.state_id,
                student_number: s.student_number,
            })
            .collect(),
        teachers: s
            .teachers
            .into_iter()
            .map(|t| Teacher {
                school: t.school.map(SchoolIndex),
            })
            .collect(),
        teacher_details: s
            .teacher_details
            .into_iter()
            .map(|t| TeacherDetails {
                id: t.id,
                sis_id: t.sis_id,
                state_id: t.state_id,
                teacher_number: t.teacher_number,
                email: t.email,
                title: t.title,
            })
            .collect(),
    }
}

fn member_to_wire(member: edit::Member) -> wire::Member {
    match member {
        edit::Member::Student(s) => wire::Member::Student(s.0),
        edit::Member::Teacher(t) => wire::Member::Teacher(t.0),
    }
}

fn edit_to_wire(edit: edit::Edit) -> wire::Edit {
    use edit::{Attribute, Edit};
    match edit {
        Edit::CreateGroup(g) => wire::Edit::CreateGroup(wire::Group {
            key: g.key,
            name: g.name,
            school: g.school.0,
            subject: g.subject,
            grade: g.grade,
            period: g.period,
            term: g.term.map(|t| t.0),
            course: g.course.map(|c| c.0),
            teachers: g.teachers.into_iter().map(|t| t.0).collect(),
            students: g.students.into_iter().map(|s| s.0).collect(),
        }),
        Edit::AddMember { section, member } => wire::Edit::AddMember(wire::Membership {
            section: section.0,
            member: member_to_wire(member),
        }),
        Edit::RemoveMember { section, member } => wire::Edit::RemoveMember(wire::Membership {
            section: section.0,
            member: member_to_wire(member),
        }),
        Edit::DropSection(s) => wire::Edit::DropSection(s.0),
        Edit::DropStudent(s) => wire::Edit::DropStudent(s.0),
        Edit::DropTeacher(t) => wire::Edit::DropTeacher(t.0),
        Edit::SetAttribute { section, attribute } => {
            let attribute = match attribute {
                Attribute::Name(v) => wire::Attribute::Name(v),
                Attribute::Subject(v) => wire::Attribute::Subject(v),
                Attribute::Grade(v) => wire::Attribute::Grade(v),
                Attribute::Period(v) => wire::Attribute::Period(v),
                Attribute::Ext { key, value } => {
                    wire::Attribute::Ext(wire::ExtField { key, value })
                }
            };
            wire::Edit::SetAttribute(wire::AttributeChange {
                section: section.0,
                attribute,
            })
        }
    }
}
