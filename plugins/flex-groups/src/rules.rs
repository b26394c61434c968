//! The grouping rules and the logic that turns them into groups. Written against the SDK's plain
//! types only (`crate::sdk`), so the benchmark in `core/benches/plugin_speed.rs` compiles this
//! very file natively to compare it with the WASM build.

use std::collections::HashSet;

use serde::Deserialize;

use crate::sdk::{Edit, Error, Group, SchoolIndex, Section, Snapshot, StudentIndex};

/// The plugin's config (`[transform.config]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pools students by school and grade band, and cuts each pool into groups.
    #[serde(default)]
    pub bands: Vec<BandRule>,
    /// Cuts sections larger than a size into groups that keep the section's teachers.
    #[serde(default)]
    pub splits: Vec<SplitRule>,
}

/// Students of some grades at a school, cut into groups of at most `max_size`.
///
/// Groups get the key `<key>-<school>-<n>`, where `<school>` is the school's SIS id (else its
/// Clever id), and the name `<name> <n>`. Students are taken in snapshot order, so the same
/// roster always gives the same groups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandRule {
    /// Prefix of the group keys; unique among the rules.
    pub key: String,
    /// Name of the groups, followed by their number.
    pub name: String,
    /// Student grades in the band, as the SIS spells them (`"K"`, `"3"`...); case-insensitive.
    pub grades: Vec<String>,
    /// Only these schools, by Clever id, SIS id or name; all schools when empty.
    #[serde(default)]
    pub schools: Vec<String>,
    /// Only students enrolled in a section of this subject (case-insensitive).
    #[serde(default)]
    pub enrolled_in_subject: Option<String>,
    /// The subject the groups carry.
    #[serde(default)]
    pub subject: Option<String>,
    /// The most students in one group; a pool is cut into groups of nearly equal size.
    pub max_size: u32,
}

/// Sections with more than `max_size` students, cut into groups of nearly equal size that keep
/// the section's teachers, school, term, course, subject, grade and period.
///
/// Groups get the key `<key>-<section>-<n>`, where `<section>` is the section's SIS id (else its
/// Clever id), and the name `<section name> (<n> of <m>)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitRule {
    /// Prefix of the group keys; unique among the rules.
    pub key: String,
    /// Only sections of this subject (case-insensitive); all when absent.
    #[serde(default)]
    pub subject: Option<String>,
    /// Only sections of these grades (case-insensitive); all when empty.
    #[serde(default)]
    pub grades: Vec<String>,
    /// The most students in one group; larger sections are split.
    pub max_size: u32,
}

/// Checks what serde cannot: sizes, keys, empty bands.
pub fn check(config: &Config) -> Result<(), Error> {
    let mut keys = HashSet::new();
    let rules = config
        .bands
        .iter()
        .map(|b| (b.key.as_str(), b.max_size))
        .chain(config.splits.iter().map(|s| (s.key.as_str(), s.max_size)));
    for (key, max_size) in rules {
        if key.is_empty() || !key.bytes().all(key_byte) || key.len() > 64 {
            return Err(Error::InvalidConfig(format!(
                "rule key {key:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
            )));
        }
        if !keys.insert(key) {
            return Err(Error::InvalidConfig(format!(
                "rule key {key:?} is used twice"
            )));
        }
        if max_size == 0 {
            return Err(Error::InvalidConfig(format!(
                "rule {key:?}: max_size must be at least 1"
            )));
        }
    }
    if let Some(band) = config.bands.iter().find(|b| b.grades.is_empty()) {
        return Err(Error::InvalidConfig(format!(
            "band {:?} names no grades",
            band.key
        )));
    }
    Ok(())
}

/// Turns the rules into groups: bands first, then splits, each in config order.
pub fn plan(config: &Config, snapshot: &Snapshot) -> Result<Vec<Edit>, Error> {
    check(config)?;
    let mut edits = Vec::new();
    for band in &config.bands {
        plan_band(band, snapshot, &mut edits);
    }
    for split in &config.splits {
        plan_split(split, snapshot, &mut edits);
    }
    Ok(edits)
}

fn plan_band(band: &BandRule, snapshot: &Snapshot, edits: &mut Vec<Edit>) {
    let grades = grade_set(&band.grades, &snapshot.grades);
    let schools: Vec<bool> = snapshot
        .schools
        .iter()
        .map(|school| {
            band.schools.is_empty()
                || band.schools.iter().any(|wanted| {
                    *wanted == school.id
                        || school.sis_id.as_deref() == Some(wanted)
                        || school.name.eq_ignore_ascii_case(wanted)
                })
        })
        .collect();
    let enrolled = band
        .enrolled_in_subject
        .as_deref()
        .map(|subject| enrolled_in(subject, snapshot));

    let mut pools: Vec<Vec<StudentIndex>> = vec![Vec::new(); snapshot.schools.len()];
    for (index, student) in snapshot.students_indexed() {
        let (Some(school), Some(grade)) = (student.school, student.grade) else {
            continue;
        };
        if !grades.get(grade.get()).copied().unwrap_or(false)
            || !schools.get(school.get()).copied().unwrap_or(false)
            || enrolled.as_ref().is_some_and(|e| !e[index.get()])
        {
            continue;
        }
        if let Some(pool) = pools.get_mut(school.get()) {
            pool.push(index);
        }
    }
    let single_grade = match band.grades.as_slice() {
        [grade] => Some(grade.clone()),
        _ => None,
    };
    for (school, pool) in pools.into_iter().enumerate() {
        let school = SchoolIndex(school as u32);
        let school_key = key_part(
            snapshot
                .school(school)
                .sis_id
                .as_deref()
                .unwrap_or(&snapshot.school(school).id),
        );
        for (n, students) in chunks(pool, band.max_size).enumerate() {
            let mut group = Group::new(
                format!("{}-{}-{}", band.key, school_key, n + 1),
                format!("{} {}", band.name, n + 1),
                school,
            );
            group.subject = band.subject.clone();
            group.grade = single_grade.clone();
            group.students = students;
            edits.push(Edit::CreateGroup(group));
        }
    }
}

fn plan_split(split: &SplitRule, snapshot: &Snapshot, edits: &mut Vec<Edit>) {
    for section in &snapshot.sections {
        if section.students.len() <= split.max_size as usize || !split_applies(split, section) {
            continue;
        }
        let section_key = key_part(section.sis_id.as_deref().unwrap_or(&section.id));
        let groups: Vec<Vec<StudentIndex>> =
            chunks(section.students.clone(), split.max_size).collect();
        let count = groups.len();
        for (n, students) in groups.into_iter().enumerate() {
            let mut group = Group::new(
                format!("{}-{}-{}", split.key, section_key, n + 1),
                format!("{} ({} of {})", section.name, n + 1, count),
                section.school,
            );
            group.subject = section.subject.clone();
            group.grade = section.grade.clone();
            group.period = section.period.clone();
            group.term = section.term;
            group.course = section.course;
            group.teachers = section.teachers.clone();
            group.students = students;
            edits.push(Edit::CreateGroup(group));
        }
    }
}

fn split_applies(split: &SplitRule, section: &Section) -> bool {
    let subject_ok = split.subject.as_deref().is_none_or(|wanted| {
        section
            .subject
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(wanted))
    });
    let grade_ok = split.grades.is_empty()
        || section
            .grade
            .as_deref()
            .is_some_and(|g| split.grades.iter().any(|w| w.eq_ignore_ascii_case(g)));
    subject_ok && grade_ok
}

/// For each grade value, whether it is one of `wanted`.
fn grade_set(wanted: &[String], grades: &[String]) -> Vec<bool> {
    grades
        .iter()
        .map(|g| wanted.iter().any(|w| w.eq_ignore_ascii_case(g)))
        .collect()
}

/// For each student, whether they are in a section of `subject`.
fn enrolled_in(subject: &str, snapshot: &Snapshot) -> Vec<bool> {
    let mut enrolled = vec![false; snapshot.students.len()];
    for section in &snapshot.sections {
        if section
            .subject
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(subject))
        {
            for student in &section.students {
                if let Some(e) = enrolled.get_mut(student.get()) {
                    *e = true;
                }
            }
        }
    }
    enrolled
}

/// Cuts `items` into `ceil(len / max)` runs whose sizes differ by at most one.
fn chunks<T>(items: Vec<T>, max: u32) -> impl Iterator<Item = Vec<T>> {
    let max = max.max(1) as usize;
    let count = items.len().div_ceil(max);
    let base = items.len().checked_div(count).unwrap_or(0);
    let extra = items.len().checked_rem(count).unwrap_or(0);
    let mut rest = items.into_iter();
    (0..count).map(move |n| {
        let size = base + usize::from(n < extra);
        rest.by_ref().take(size).collect()
    })
}

fn key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// A group key part from an id: bytes a key may not hold become `_`.
fn key_part(id: &str) -> String {
    id.bytes()
        .map(|b| if key_byte(b) { char::from(b) } else { '_' })
        .collect()
}
