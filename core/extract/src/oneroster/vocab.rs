//! OneRoster's vocabularies: the enums its cells hold, and the tables that turn its grades
//! (CEDS codes) and subjects (names, SCED codes) into the names the model uses, which are
//! Clever's.

pub(super) use rosterflow_model::text::quoted as shown;
use serde::{Deserialize, Serialize};
use strum::VariantNames;

/// `orgs.csv` `type`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::VariantNames,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase", ascii_case_insensitive)]
pub(super) enum OrgType {
    Department,
    School,
    District,
    Local,
    State,
    National,
}

/// `academicSessions.csv` `type`: every kind becomes a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "camelCase", ascii_case_insensitive)]
pub(super) enum SessionType {
    Term,
    GradingPeriod,
    SchoolYear,
    Semester,
}

/// `classes.csv` `classType`: checked, not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "camelCase", ascii_case_insensitive)]
pub(super) enum ClassType {
    Homeroom,
    Scheduled,
}

/// A user's role: `users.csv` `role` (1.1) or `roles.csv` `role` (1.2). Both versions' words
/// are accepted in both: a 1.1 feed that says `principal` means it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::VariantNames,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase", ascii_case_insensitive)]
pub(super) enum Role {
    Administrator,
    Aide,
    Guardian,
    Parent,
    Proctor,
    Relative,
    Student,
    Teacher,
    Counselor,
    Principal,
    DistrictAdministrator,
    SiteAdministrator,
    SystemAdministrator,
}

/// What a role makes of a user in Freckle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RoleKind {
    Student,
    Teacher,
    Admin,
    Staff,
    Contact,
}

impl Role {
    /// The kind of user the role makes; `at_district` says whether the role's org is the
    /// district (an `administrator` of the district is an admin, of a school staff).
    pub(super) fn kind(self, at_district: bool) -> RoleKind {
        match self {
            Role::Student => RoleKind::Student,
            Role::Teacher => RoleKind::Teacher,
            Role::DistrictAdministrator => RoleKind::Admin,
            Role::Administrator if at_district => RoleKind::Admin,
            Role::Administrator
            | Role::Aide
            | Role::Proctor
            | Role::Counselor
            | Role::Principal
            | Role::SiteAdministrator
            | Role::SystemAdministrator => RoleKind::Staff,
            Role::Guardian | Role::Parent | Role::Relative => RoleKind::Contact,
        }
    }
}

/// `enrollments.csv` `role`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::VariantNames,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase", ascii_case_insensitive)]
pub(super) enum EnrollmentRole {
    Administrator,
    Proctor,
    Student,
    Teacher,
}

/// `roles.csv` `roleType` (1.2).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::VariantNames,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase", ascii_case_insensitive)]
pub(super) enum RoleType {
    Primary,
    Secondary,
}

/// A record's `status` in a delta file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::VariantNames)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub(super) enum Status {
    Active,
    Tobedeleted,
}

/// Reads `value` as one of `T`'s words; the error lists them.
pub(super) fn parse_word<T: std::str::FromStr + VariantNames>(
    column: &str,
    value: &str,
) -> Result<T, String> {
    value.trim().parse().map_err(|_| {
        format!(
            "{column} {} is not one of {}",
            shown(value),
            T::VARIANTS.join(", ")
        )
    })
}

/// Reads a `true`/`false` cell (any case).
pub(super) fn parse_bool(column: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{column} {} is not true or false", shown(value))),
    }
}

/// The model's grade names (Clever's).
const GRADES: &[&str] = &[
    "InfantToddler",
    "Preschool",
    "PreKindergarten",
    "TransitionalKindergarten",
    "Kindergarten",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "10",
    "11",
    "12",
    "13",
    "PostGraduate",
    "Ungraded",
    "Other",
];

/// The model's name for a CEDS grade code: `KG` -> `Kindergarten`, `03` -> `3`; a model name is
/// kept; anything else is `Other`.
pub(super) fn grade(code: &str) -> String {
    let code = code.trim();
    let named = match code.to_ascii_uppercase().as_str() {
        "IT" => Some("InfantToddler"),
        "PR" => Some("Preschool"),
        "PK" => Some("PreKindergarten"),
        "TK" => Some("TransitionalKindergarten"),
        "KG" => Some("Kindergarten"),
        "PS" => Some("PostGraduate"),
        "UG" => Some("Ungraded"),
        _ => None,
    };
    if let Some(name) = named {
        return name.to_owned();
    }
    if (1..=2).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_digit())
        && let Ok(number @ 1..=13) = code.parse::<u8>()
    {
        return number.to_string();
    }
    GRADES
        .iter()
        .find(|name| name.eq_ignore_ascii_case(code))
        .map_or("Other", |name| name)
        .to_owned()
}

/// The model's subject names (Clever's).
pub(super) const SUBJECTS: [&str; 11] = [
    "english/language arts",
    "math",
    "science",
    "social studies",
    "language",
    "homeroom/advisory",
    "interventions/online learning",
    "technology and engineering",
    "PE and health",
    "arts and music",
    "other",
];

/// A piece of text a subject is recognised by.
enum Clue {
    /// Anywhere in the text.
    Part(&'static str),
    /// As a whole word (`pe`, not the `pe` of `speech`).
    Word(&'static str),
}

use Clue::{Part, Word};

/// Subjects recognised by words in the `subjects` text, tried in this order.
const CLUES: &[(&[Clue], &str)] = &[
    (
        &[
            Part("math"),
            Part("algebra"),
            Part("geometry"),
            Part("calculus"),
        ],
        "math",
    ),
    (
        &[
            Part("english"),
            Part("ela"),
            Part("language arts"),
            Part("reading"),
            Part("literacy"),
            Part("writing"),
        ],
        "english/language arts",
    ),
    (
        &[
            Part("science"),
            Part("biology"),
            Part("chemistry"),
            Part("physics"),
        ],
        "science",
    ),
    (
        &[
            Part("social"),
            Part("history"),
            Part("civics"),
            Part("geography"),
            Part("economics"),
        ],
        "social studies",
    ),
    (
        &[
            Part("spanish"),
            Part("french"),
            Part("german"),
            Part("chinese"),
            Part("world language"),
            Part("foreign language"),
        ],
        "language",
    ),
    (&[Part("homeroom"), Part("advisory")], "homeroom/advisory"),
    (&[Part("intervention")], "interventions/online learning"),
    (
        &[Part("physical education"), Word("pe"), Part("health")],
        "PE and health",
    ),
    (
        &[
            Part("art"),
            Part("music"),
            Part("band"),
            Part("chorus"),
            Part("orchestra"),
            Part("theater"),
            Part("theatre"),
            Part("drama"),
        ],
        "arts and music",
    ),
    (
        &[
            Part("computer"),
            Part("technology"),
            Part("engineering"),
            Part("coding"),
        ],
        "technology and engineering",
    ),
];

/// The model's subject for a class: a `subjects` entry that is already a model name, else the
/// SCED area of the first `subjectCodes` entry, else words in the `subjects` text, else `other`
/// when there is text, else none.
pub(super) fn subject(subjects: &[String], codes: &[String]) -> Option<String> {
    let named = subjects.iter().find_map(|entry| {
        SUBJECTS
            .iter()
            .find(|name| name.eq_ignore_ascii_case(entry.trim()))
    });
    if let Some(name) = named {
        return Some((*name).to_owned());
    }
    if let Some(code) = codes.first() {
        return Some(sced_area(code).to_owned());
    }
    if subjects.is_empty() {
        return None;
    }
    let text = subjects.join(", ").to_lowercase();
    let clued = CLUES.iter().find(|(clues, _)| {
        clues.iter().any(|clue| match clue {
            Part(part) => text.contains(part),
            Word(word) => has_word(&text, word),
        })
    });
    Some(clued.map_or("other", |(_, name)| name).to_owned())
}

/// The subject of a SCED course code's area (its first two digits).
fn sced_area(code: &str) -> &'static str {
    match code.trim().get(..2) {
        Some("01") => "english/language arts",
        Some("02") => "math",
        Some("03") => "science",
        Some("04") => "social studies",
        Some("05") => "arts and music",
        Some("06") => "language",
        Some("08") => "PE and health",
        Some("10" | "21") => "technology and engineering",
        _ => "other",
    }
}

/// Whether `word` stands in `text` with no letter, digit or `_` either side (regex `\b`).
fn has_word(text: &str, word: &str) -> bool {
    let is_word_char = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn grades_map_from_ceds_codes() {
        for (code, name) in [
            ("IT", "InfantToddler"),
            ("PR", "Preschool"),
            ("PK", "PreKindergarten"),
            ("TK", "TransitionalKindergarten"),
            ("KG", "Kindergarten"),
            ("kg", "Kindergarten"),
            ("01", "1"),
            ("09", "9"),
            ("10", "10"),
            ("13", "13"),
            ("PS", "PostGraduate"),
            ("UG", "Ungraded"),
            ("Other", "Other"),
            // Already a model name: kept.
            ("Kindergarten", "Kindergarten"),
            ("7", "7"),
            ("PreKindergarten", "PreKindergarten"),
            // Anything else.
            ("00", "Other"),
            ("14", "Other"),
            ("001", "Other"),
            ("Grade 3", "Other"),
            ("", "Other"),
        ] {
            assert_eq!(grade(code), name, "{code:?}");
        }
    }

    #[test]
    fn a_subject_that_is_a_model_name_is_kept_whatever_its_case() {
        for name in SUBJECTS {
            assert_eq!(subject(&list(&[name]), &[]).as_deref(), Some(name));
        }
        assert_eq!(
            subject(&list(&["Reading", "MATH"]), &list(&["03001"])).as_deref(),
            Some("math"),
            "a model name wins over codes and words"
        );
    }

    #[test]
    fn subject_codes_map_by_their_sced_area() {
        for (code, name) in [
            ("01001", "english/language arts"),
            ("02052", "math"),
            ("03051", "science"),
            ("04001", "social studies"),
            ("05153", "arts and music"),
            ("06101", "language"),
            ("08001", "PE and health"),
            ("10011", "technology and engineering"),
            ("21007", "technology and engineering"),
            ("07001", "other"),
            ("9", "other"),
        ] {
            assert_eq!(
                subject(&list(&["Whatever"]), &list(&[code])).as_deref(),
                Some(name),
                "{code}"
            );
        }
        assert_eq!(
            subject(&[], &list(&["02001", "03001"])).as_deref(),
            Some("math"),
            "the first code decides"
        );
    }

    #[test]
    fn subjects_are_recognised_by_their_words_in_order() {
        for (text, name) in [
            ("Algebra I", "math"),
            ("AP Calculus", "math"),
            ("ELA 3", "english/language arts"),
            ("Reading Workshop", "english/language arts"),
            ("Biology", "science"),
            ("US History", "social studies"),
            ("Spanish 2", "language"),
            ("World Language", "language"),
            ("Homeroom", "homeroom/advisory"),
            ("Reading Intervention", "english/language arts"),
            ("Math Intervention", "math"),
            ("Tier 2 Intervention", "interventions/online learning"),
            ("Physical Education", "PE and health"),
            ("PE 5", "PE and health"),
            ("Speech", "other"),
            ("Band", "arts and music"),
            ("Theatre", "arts and music"),
            ("Computer Applications", "technology and engineering"),
            ("Study Hall", "other"),
        ] {
            assert_eq!(
                subject(&list(&[text]), &[]).as_deref(),
                Some(name),
                "{text}"
            );
        }
        assert_eq!(subject(&[], &[]), None);
    }

    #[test]
    fn enums_read_any_case_and_name_their_words_when_wrong() {
        assert_eq!(
            parse_word::<Role>("role", "districtAdministrator"),
            Ok(Role::DistrictAdministrator)
        );
        assert_eq!(parse_word::<Role>("role", "Teacher"), Ok(Role::Teacher));
        assert_eq!(
            parse_word::<Status>("status", "toBeDeleted"),
            Ok(Status::Tobedeleted)
        );
        assert_eq!(
            parse_word::<SessionType>("type", "gradingPeriod"),
            Ok(SessionType::GradingPeriod)
        );
        let error = parse_word::<OrgType>("type", "campus").expect_err("not a type");
        assert!(
            error.contains("\"campus\"") && error.contains("district"),
            "{error}"
        );
        assert_eq!(parse_bool("primary", "TRUE"), Ok(true));
        assert!(parse_bool("primary", "yes").is_err());
    }

    #[test]
    fn roles_make_students_teachers_admins_staff_and_contacts() {
        assert_eq!(Role::Administrator.kind(true), RoleKind::Admin);
        assert_eq!(Role::Administrator.kind(false), RoleKind::Staff);
        assert_eq!(Role::DistrictAdministrator.kind(false), RoleKind::Admin);
        for staff in [
            Role::Aide,
            Role::Proctor,
            Role::Counselor,
            Role::Principal,
            Role::SiteAdministrator,
            Role::SystemAdministrator,
        ] {
            assert_eq!(staff.kind(true), RoleKind::Staff, "{staff:?}");
        }
        for contact in [Role::Guardian, Role::Parent, Role::Relative] {
            assert_eq!(contact.kind(false), RoleKind::Contact, "{contact:?}");
        }
    }
}
