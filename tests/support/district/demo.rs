//! Synthesises the schools, terms and courses of the real Clever demo district. Its recording
//! holds only districts, users and sections; the other records exist there only as references
//! (`section.school`, `section.term_id`, `section.course`, a user's `school`/`schools`). This
//! builds spec-shaped objects for every referenced id, from what the references reveal:
//! a school's grade span from its students, a course's name from its sections' names, the
//! school year from the district's last sync.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Collection, Dataset};

/// Grades in Clever's order, to find a school's lowest and highest grade.
const GRADE_ORDER: [&str; 21] = [
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

/// What the references tell about one school.
#[derive(Default)]
struct SchoolFacts {
    /// Primary students per grade.
    grades: BTreeMap<usize, usize>,
    created: Option<String>,
    last_modified: Option<String>,
}

impl SchoolFacts {
    fn saw(&mut self, record: &Value) {
        if let Some(c) = record["created"].as_str().filter(|c| !c.is_empty())
            && self.created.as_deref().is_none_or(|old| c < old)
        {
            self.created = Some(c.to_string());
        }
        if let Some(m) = record["last_modified"].as_str()
            && self.last_modified.as_deref().is_none_or(|old| m > old)
        {
            self.last_modified = Some(m.to_string());
        }
    }
}

/// Adds the schools, terms and courses that the dataset's sections and users reference but that
/// it does not hold. Collections that already hold records are left alone.
pub(crate) fn synthesize_references(dataset: &mut Dataset) {
    let Some(district) = dataset.all(Collection::Districts).into_iter().next() else {
        return;
    };
    let district_id = district["id"].as_str().unwrap_or_default().to_string();
    let sections = dataset.all(Collection::Sections);
    let users = dataset.all(Collection::Users);
    let (first_year, _) = school_year(&district);

    if dataset.is_empty(Collection::Schools) {
        for school in schools(&district_id, &sections, &users) {
            dataset.upsert(Collection::Schools, school);
        }
    }
    if dataset.is_empty(Collection::Terms) {
        for term in terms(&district_id, &sections, first_year) {
            dataset.upsert(Collection::Terms, term);
        }
    }
    if dataset.is_empty(Collection::Courses) {
        for course in courses(&district_id, &sections) {
            dataset.upsert(Collection::Courses, course);
        }
    }
}

/// The school year the district's data belongs to, from its last sync (July starts a year).
fn school_year(district: &Value) -> (i32, i32) {
    let stamp = district["last_sync"]
        .as_str()
        .or(district["launch_date"].as_str())
        .unwrap_or("2021-03-01");
    let year: i32 = stamp.get(0..4).and_then(|y| y.parse().ok()).unwrap_or(2021);
    let month: u32 = stamp.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    if month >= 7 {
        (year, year + 1)
    } else {
        (year - 1, year)
    }
}

fn schools(district: &str, sections: &[Value], users: &[Value]) -> Vec<Value> {
    let mut facts: BTreeMap<String, SchoolFacts> = BTreeMap::new();
    for section in sections {
        if let Some(school) = section["school"].as_str().filter(|s| !s.is_empty()) {
            facts.entry(school.to_string()).or_default().saw(section);
        }
    }
    for user in users {
        let Some(roles) = user["roles"].as_object() else {
            continue;
        };
        for (role, body) in roles {
            let primary = body["school"].as_str().filter(|s| !s.is_empty());
            let all = body["schools"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str);
            for school in primary.into_iter().chain(all) {
                facts.entry(school.to_string()).or_default().saw(user);
            }
            if role == "student"
                && let (Some(school), Some(grade)) = (primary, body["grade"].as_str())
                && let Some(rank) = GRADE_ORDER.iter().position(|g| *g == grade)
            {
                *facts
                    .entry(school.to_string())
                    .or_default()
                    .grades
                    .entry(rank)
                    .or_default() += 1;
            }
        }
    }

    facts
        .into_iter()
        .enumerate()
        .map(|(n, (id, facts))| {
            // Ignore stray grades (a few students misfiled in the SIS): keep those with 5% or more.
            let total: usize = facts.grades.values().sum();
            let main: Vec<usize> = facts
                .grades
                .iter()
                .filter(|(_, count)| **count * 20 >= total)
                .map(|(rank, _)| *rank)
                .collect();
            let low = main.first().map_or("", |r| GRADE_ORDER[*r]);
            let high = main.last().map_or("", |r| GRADE_ORDER[*r]);
            let number = format!("{}", n + 1);
            json!({
                "created": facts.created.as_deref().unwrap_or(""),
                "district": district,
                "high_grade": high,
                "id": id,
                "last_modified": facts.last_modified.as_deref().unwrap_or(""),
                "location": {"address": "", "city": "", "state": "", "zip": ""},
                "low_grade": low,
                "name": school_name(low, high, n + 1),
                "phone": "",
                "principal": {"email": "", "name": ""},
                "school_number": number,
                "sis_id": number,
                "state_id": "",
                "nces_id": "",
                "mdr_number": "",
                "ext": {},
            })
        })
        .collect()
}

fn school_name(low: &str, high: &str, n: usize) -> String {
    let rank = |g: &str| GRADE_ORDER.iter().position(|x| *x == g);
    match (rank(low), rank(high)) {
        (Some(l), Some(h)) if h <= 9 && l <= 5 => "#DEMO Elementary School".into(),
        (Some(l), Some(h)) if l >= 10 && h <= 12 => "#DEMO Middle School".into(),
        (Some(l), Some(_)) if l >= 13 => "#DEMO High School".into(),
        _ => format!("#DEMO School {n}"),
    }
}

/// The term most sections use spans the school year; the others, in id order, split it evenly
/// (the demo's four small terms become quarters).
fn terms(district: &str, sections: &[Value], first_year: i32) -> Vec<Value> {
    let mut use_count: BTreeMap<String, usize> = BTreeMap::new();
    for section in sections {
        if let Some(term) = section["term_id"].as_str().filter(|t| !t.is_empty()) {
            *use_count.entry(term.to_string()).or_default() += 1;
        }
    }
    let Some(full_year) = use_count
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse(*id)))
        .map(|(id, _)| id.clone())
    else {
        return Vec::new();
    };
    let start = super::json::days_from_civil(i64::from(first_year), 8, 17);
    let end = super::json::days_from_civil(i64::from(first_year) + 1, 6, 11);
    let date = |days: i64| {
        let (y, m, d) = super::json::civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}")
    };
    let year_name = format!("{first_year}-{}", first_year + 1);
    let parts: Vec<&String> = use_count.keys().filter(|id| **id != full_year).collect();
    let span = (end - start) / parts.len().max(1) as i64;
    let part_word = if parts.len() == 4 { "Quarter" } else { "Term" };

    let mut terms = vec![json!({
        "district": district,
        "end_date": date(end),
        "id": full_year,
        "name": year_name,
        "start_date": date(start),
    })];
    for (i, id) in parts.into_iter().enumerate() {
        let from = start + span * i as i64;
        terms.push(json!({
            "district": district,
            "end_date": date(from + span - 1),
            "id": id,
            "name": format!("{year_name} {part_word} {}", i + 1),
            "start_date": date(from),
        }));
    }
    terms
}

/// A course is named after its sections' names ("Algebra I - Smith - 3" -> "Algebra I").
fn courses(district: &str, sections: &[Value]) -> Vec<Value> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for section in sections {
        if let Some(course) = section["course"].as_str().filter(|c| !c.is_empty()) {
            let name = section["name"].as_str().unwrap_or_default();
            let course_name = name.split(" - ").next().unwrap_or(name).trim().to_string();
            names
                .entry(course.to_string())
                .or_default()
                .insert(course_name);
        }
    }
    names
        .into_iter()
        .enumerate()
        .map(|(n, (id, names))| {
            let name = names.into_iter().next().unwrap_or_default();
            json!({
                "district": district,
                "id": id,
                "name": name,
                "number": format!("{:04}", n + 1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_gets_five_schools_five_terms_and_its_courses() {
        let d = Dataset::demo();
        let schools = d.all(Collection::Schools);
        assert_eq!(
            schools.len(),
            5,
            "3 with sections and 2 referenced by users only"
        );
        let names: Vec<&str> = schools.iter().filter_map(|s| s["name"].as_str()).collect();
        assert!(names.contains(&"#DEMO Elementary School"), "{names:?}");
        assert!(names.contains(&"#DEMO Middle School"), "{names:?}");
        assert!(names.contains(&"#DEMO High School"), "{names:?}");
        let high = schools
            .iter()
            .find(|s| s["name"] == "#DEMO High School")
            .expect("high school");
        assert_eq!(
            (high["low_grade"].as_str(), high["high_grade"].as_str()),
            (Some("9"), Some("12"))
        );
        for s in &schools {
            for field in [
                "id",
                "district",
                "name",
                "sis_id",
                "school_number",
                "created",
                "last_modified",
            ] {
                assert!(s[field].is_string(), "{field} in {s}");
            }
        }

        let terms = d.all(Collection::Terms);
        assert_eq!(terms.len(), 5);
        let year = terms
            .iter()
            .find(|t| t["id"] == "603ebb2ab452fb006c763964")
            .expect("full-year term");
        assert_eq!(year["name"], "2020-2021");
        assert_eq!(year["start_date"], "2020-08-17");
        for t in &terms {
            assert!(t["start_date"].as_str() < t["end_date"].as_str(), "{t}");
        }

        let courses = d.all(Collection::Courses);
        assert_eq!(courses.len(), 343);
        assert!(courses.iter().any(|c| c["name"] == "Group Guidance"));
        assert!(
            courses
                .iter()
                .all(|c| c["name"].as_str().is_some_and(|n| !n.is_empty()))
        );
    }
}
