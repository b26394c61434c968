//! The district generator: a realistic synthetic Clever district of any size, deterministic from
//! a seed, for scale tests and benchmarks.
//!
//! Shape of what it builds (see [`GenSpec`] for the knobs):
//! - one district; schools of about `students_per_school` students each, elementary (K-5),
//!   middle (6-8) and high (9-12) in a 2:1:1 mix (K-12 schools when there are fewer than three);
//! - three terms (the school year, fall, spring) and district-wide courses ("Math 3",
//!   "Algebra I", "PE 7", "Art I", "Concert Band"...);
//! - elementary homerooms of `class_size` students, each with one teacher who teaches its
//!   homeroom, math, ELA, science and social studies sections, plus PE and art or music sections
//!   taught by the school's specialists;
//! - secondary students in advisory, math, English, science, social studies, PE or health and
//!   one elective (art, band, Spanish, computer science), sections filled from a shuffled roster;
//! - co-teachers (special education) on a share of math and ELA sections, primary teacher first;
//! - subjects from Clever's enum, including `PE and health` and `arts and music`, except in the
//!   share of schools whose SIS leaves `subject` empty, where only names such as "PE 7 - Ortiz - 3"
//!   or course names such as "Art I" tell what a section is;
//! - per school a principal and a counselor (staff), one teacher who is also staff (multi-role),
//!   district admins, and contacts (parents, emergency contacts, some shared by two students).
//!
//! Every id is a unique 24-hex ObjectID-like string (seconds, a seed-derived machine part, a
//! counter), so ids ascend in creation order. Records are written straight to JSON text: a
//! million students take a few seconds and about a gigabyte.

use std::collections::HashMap;
use std::ops::Range;

use super::json::{self, Obj};
use super::{Collection, Dataset, Record, Role};

/// What to generate. Start from [`GenSpec::new`] and change fields as needed.
#[derive(Clone, Debug)]
pub struct GenSpec {
    /// Seed of every random choice: the same spec gives the same dataset, byte for byte.
    pub seed: u64,
    /// Number of students.
    pub students: usize,
    /// Students per school (sets the number of schools).
    pub students_per_school: usize,
    /// Students per section (sections are filled evenly up to this size).
    pub class_size: usize,
    /// Percent of math and ELA sections that get a special-education co-teacher.
    pub co_teacher_percent: u32,
    /// Percent of schools whose SIS feed leaves every section's `subject` empty.
    pub blank_subject_percent: u32,
    /// Percent of students with a parent or guardian contact.
    pub contact_percent: u32,
    /// Percent of students with a second (emergency) contact.
    pub second_contact_percent: u32,
    /// Percent of parent contacts who are also the contact of a second student (siblings).
    pub sibling_percent: u32,
    /// Number of district admins.
    pub district_admins: usize,
    /// The calendar year the school year starts in (2025 for 2025-2026).
    pub school_year: i32,
}

impl GenSpec {
    /// A district of `students` students with realistic defaults and seed 42.
    pub fn new(students: usize) -> GenSpec {
        GenSpec {
            seed: 42,
            students,
            students_per_school: 600,
            class_size: 25,
            co_teacher_percent: 15,
            blank_subject_percent: 25,
            contact_percent: 90,
            second_contact_percent: 30,
            sibling_percent: 8,
            district_admins: 2,
            school_year: 2025,
        }
    }

    /// The same spec with another seed.
    pub fn with_seed(mut self, seed: u64) -> GenSpec {
        self.seed = seed;
        self
    }
}

impl Default for GenSpec {
    fn default() -> GenSpec {
        GenSpec::new(1000)
    }
}

/// Generates a district as [`GenSpec`] describes.
pub fn generate(spec: GenSpec) -> Dataset {
    let mut g = Generator::new(spec);
    g.district_frame();
    g.students();
    for school in 0..g.schools.len() {
        g.school_sections(school);
    }
    g.staff_and_admins();
    g.finish()
}

const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sophia", "Elijah", "Isabella", "Lucas",
    "Mia", "Levi", "Amelia", "Ezra", "Harper", "Asher", "Evelyn", "Leo", "Abigail", "James",
    "Emily", "Luca", "Ella", "Aiden", "Chloe", "Jayden", "Zoë", "José", "Aaliyah", "Dmitri",
    "Priya", "Wei", "Fatima", "Kwame", "Siobhan", "Nguyen", "Camila", "Santiago", "Aisha",
    "Hiroshi", "Maya", "Diego", "Layla", "Omar", "Grace", "Ethan", "Nora", "Caleb", "Ruby",
    "Malik",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "García",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Nguyen",
    "O'Brien",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Okafor",
    "Kowalski",
    "Yamamoto",
];
const CITIES: &[&str] = &[
    "Riverton",
    "Maple Grove",
    "Fairview",
    "Lakeside",
    "Cedar Falls",
    "Brookfield",
];
const STREETS: &[&str] = &[
    "Oak St",
    "Maple Ave",
    "Pine Rd",
    "Cedar Ln",
    "Elm St",
    "Lake Dr",
    "Hill Rd",
];
const RACES: &[&str] = &[
    "Caucasian",
    "Asian",
    "Black or African American",
    "American Indian",
    "Hawaiian or Other Pacific Islander",
    "Two or More Races",
    "Unknown",
];
const STATE: &str = "CO";

/// A deterministic random source (SplitMix64), hand-written on purpose: its stream defines every
/// generated test district and benchmark district (the same spec gives the same dataset, byte
/// for byte, so tests' expectations hold and benchmark runs compare like with like). A crate's
/// generator (`rand`'s `SmallRng` or `StdRng`) may change its stream with a new version or on
/// another platform, silently changing every district; `next` below never will.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// An independent stream for item `n` of a kind, so each record's fields depend only on
    /// the seed and its index.
    fn for_item(seed: u64, kind: u64, n: u64) -> Rng {
        let mut r = Rng(seed ^ kind.wrapping_mul(0xA076_1D64_78BD_642F));
        r.0 ^= r.next().wrapping_add(n.wrapping_mul(0xE703_7ED1_A0B4_28DB));
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn percent(&mut self, p: u32) -> bool {
        self.below(100) < p as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[derive(Clone, Copy)]
struct Person {
    first: &'static str,
    middle: &'static str,
    last: &'static str,
}

impl Person {
    fn random(r: &mut Rng) -> Person {
        Person {
            first: r.pick(FIRST_NAMES),
            middle: r.pick(&["A", "B", "C", "D", "E", "J", "L", "M", "R", "S", ""]),
            last: r.pick(LAST_NAMES),
        }
    }

    /// A login or email local part: lowercase ASCII letters.
    fn handle(&self) -> String {
        let ascii = |s: &str| -> String {
            s.chars()
                .filter_map(|c| match c {
                    'é' => Some('e'),
                    'í' => Some('i'),
                    'ë' => Some('e'),
                    c if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        };
        format!("{}.{}", ascii(self.first), ascii(self.last))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SchoolKind {
    Elementary,
    Middle,
    High,
    K12,
}

struct School {
    id: String,
    counter: u64,
    kind: SchoolKind,
    name: String,
    number: String,
    /// Grades taught, Kindergarten = 0.
    grades: Range<usize>,
    blank_subjects: bool,
    principal: Person,
    /// Indices of its students.
    students: Range<usize>,
}

/// Teaching departments: a teacher's title and a section's subject follow from one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Dept {
    Homeroom,
    Advisory,
    Math,
    English,
    Science,
    Social,
    Pe,
    Art,
    Music,
    Language,
    Tech,
    SpecialEd,
}

impl Dept {
    fn subject(self) -> &'static str {
        match self {
            Dept::Homeroom | Dept::Advisory => "homeroom/advisory",
            Dept::Math => "math",
            Dept::English => "english/language arts",
            Dept::Science => "science",
            Dept::Social => "social studies",
            Dept::Pe => "PE and health",
            Dept::Art | Dept::Music => "arts and music",
            Dept::Language => "language",
            Dept::Tech => "technology and engineering",
            Dept::SpecialEd => "other",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Dept::Homeroom | Dept::Advisory => "Teacher",
            Dept::Math => "Math Teacher",
            Dept::English => "English Teacher",
            Dept::Science => "Science Teacher",
            Dept::Social => "Social Studies Teacher",
            Dept::Pe => "PE Teacher",
            Dept::Art => "Art Teacher",
            Dept::Music => "Music Teacher",
            Dept::Language => "Spanish Teacher",
            Dept::Tech => "Computer Science Teacher",
            Dept::SpecialEd => "Special Education Teacher",
        }
    }

    /// Sections one teacher of this department takes before the school hires another.
    fn max_load(self, kind: SchoolKind) -> u32 {
        match (self, kind) {
            (Dept::SpecialEd, _) => 12,
            (Dept::Pe | Dept::Art | Dept::Music, SchoolKind::Elementary) => 20,
            _ => 5,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Dept::Homeroom => "HR",
            Dept::Advisory => "ADV",
            Dept::Math => "MTH",
            Dept::English => "ENG",
            Dept::Science => "SCI",
            Dept::Social => "SOC",
            Dept::Pe => "PE",
            Dept::Art => "ART",
            Dept::Music => "MUS",
            Dept::Language => "WL",
            Dept::Tech => "CS",
            Dept::SpecialEd => "SPED",
        }
    }
}

struct Teacher {
    id: String,
    counter: u64,
    school: usize,
    title: String,
    person: Person,
    /// Also holds the staff role (an instructional coach who teaches).
    also_staff: bool,
    sections: u32,
}

#[derive(Clone, Copy)]
enum Term {
    Year,
    Fall,
    Spring,
}

struct Generator {
    spec: GenSpec,
    rng: Rng,
    /// The next id counter; ids ascend with it.
    next_counter: u64,
    /// The machine part of every id, from the seed.
    machine: u64,
    district_id: String,
    district_name: String,
    schools: Vec<School>,
    terms: [String; 3],
    courses: HashMap<String, (String, String)>,
    teachers: Vec<Teacher>,
    /// The teacher currently taking sections, per school and department.
    current_teacher: HashMap<(usize, Dept), usize>,
    /// Index of the first teacher of the school being built (schools are built in turn).
    school_teachers_from: usize,
    /// Counter of the first student; student `i` has counter `first_student + i`.
    first_student: u64,
    section_count: u64,
    tables: [Vec<Record>; 7],
    /// Contact records, in id order, until [`Generator::finish`] merges them into the users.
    contacts: Vec<Record>,
}

/// Unix seconds of 2025-06-01T00:00:00Z: the clock of the first generated id.
const BASE_SECS: u64 = 1_748_736_000;

impl Generator {
    fn new(spec: GenSpec) -> Generator {
        // Records are written without escaping (see `Obj`): every word they are built from must
        // need none.
        for word in [FIRST_NAMES, LAST_NAMES, CITIES, STREETS, RACES].concat() {
            assert!(
                !word.contains(['"', '\\']) && !word.contains(char::is_control),
                "plain word: {word}"
            );
        }
        let mut rng = Rng::new(spec.seed);
        let machine = rng.next() & 0xFF_FFFF;
        Generator {
            spec,
            rng,
            next_counter: 1,
            machine,
            district_id: String::new(),
            district_name: String::new(),
            schools: Vec::new(),
            terms: Default::default(),
            courses: HashMap::new(),
            teachers: Vec::new(),
            current_teacher: HashMap::new(),
            school_teachers_from: 0,
            first_student: 0,
            section_count: 0,
            tables: Default::default(),
            contacts: Vec::new(),
        }
    }

    fn alloc(&mut self) -> u64 {
        let c = self.next_counter;
        self.next_counter += 1;
        c
    }

    /// The id for a counter: 8 hex digits of seconds, 6 of machine, 10 of counter.
    fn id(&self, counter: u64) -> String {
        let secs = BASE_SECS + counter / 1000;
        json::hex_id(
            (u128::from(secs) << 64) | (u128::from(self.machine) << 40) | u128::from(counter),
        )
    }

    /// A v2-era `legacy_id`: same shape, another machine part, so it never equals a v3 id.
    fn legacy_id(&self, counter: u64) -> String {
        let secs = BASE_SECS - 86_400 * 900 + counter / 1000;
        json::hex_id(
            (u128::from(secs) << 64)
                | (u128::from(self.machine ^ 0xFF_FFFF) << 40)
                | u128::from(counter),
        )
    }

    /// The creation timestamp of a record, consistent with its id.
    fn created(&self, counter: u64) -> String {
        json::timestamp((BASE_SECS + counter / 1000) * 1000 + counter % 1000)
    }

    fn modified(&self) -> String {
        json::timestamp((BASE_SECS + 86_400 * 60) * 1000 + 347)
    }

    fn push(&mut self, collection: Collection, key: String, json: String, roles: u8) {
        self.tables[collection as usize].push(Record {
            key: key.into(),
            json: json.into(),
            roles,
        });
    }

    /// Contacts are written between students but have later ids: they wait here and are merged
    /// into the users table in id order (sorting two million users would take longer).
    fn push_contact(&mut self, key: String, json: String) {
        self.contacts.push(Record {
            key: key.into(),
            json: json.into(),
            roles: Role::Contact.bit(),
        });
    }

    fn date(year: i32, month: u32, day: u32) -> String {
        format!("{year:04}-{month:02}-{day:02}")
    }

    /// The district, its schools and its terms.
    fn district_frame(&mut self) {
        let counter = self.alloc();
        self.district_id = self.id(counter);
        let city = self.rng.pick(CITIES);
        self.district_name = format!("{city} Unified School District");

        let n_schools = self
            .spec
            .students
            .div_ceil(self.spec.students_per_school.max(1))
            .max(1);
        let n_students = self.spec.students;
        let mut per_kind = [0usize; 4];
        for s in 0..n_schools {
            let kind = if n_schools < 3 {
                SchoolKind::K12
            } else {
                [
                    SchoolKind::Elementary,
                    SchoolKind::Middle,
                    SchoolKind::High,
                    SchoolKind::Elementary,
                ][s % 4]
            };
            per_kind[kind as usize] += 1;
            let ordinal = per_kind[kind as usize];
            let (grades, kind_name) = match kind {
                SchoolKind::Elementary => (0..6, "Elementary School"),
                SchoolKind::Middle => (6..9, "Middle School"),
                SchoolKind::High => (9..13, "High School"),
                SchoolKind::K12 => (0..13, "Academy"),
            };
            let counter = self.alloc();
            let place = self.rng.pick(LAST_NAMES);
            let name = if ordinal == 1 {
                format!("{place} {kind_name}")
            } else {
                format!("{place} {kind_name} {ordinal}")
            };
            let blank_subjects = self.rng.percent(self.spec.blank_subject_percent);
            let principal = Person::random(&mut self.rng);
            self.schools.push(School {
                id: self.id(counter),
                counter,
                kind,
                name,
                number: format!("{}", 100 + s),
                grades,
                blank_subjects,
                principal,
                students: (s * n_students / n_schools)..((s + 1) * n_students / n_schools),
            });
        }

        let year = self.spec.school_year;
        let terms = [
            (
                format!("{year}-{}", year + 1),
                Self::date(year, 8, 18),
                Self::date(year + 1, 6, 5),
            ),
            (
                format!("Fall {year}"),
                Self::date(year, 8, 18),
                Self::date(year, 12, 19),
            ),
            (
                format!("Spring {}", year + 1),
                Self::date(year + 1, 1, 6),
                Self::date(year + 1, 6, 5),
            ),
        ];
        for (i, (name, start, end)) in terms.into_iter().enumerate() {
            let counter = self.alloc();
            let id = self.id(counter);
            let mut out = String::new();
            Obj::write(&mut out, |o| {
                o.str("district", &self.district_id)
                    .str("end_date", &end)
                    .str("id", &id)
                    .str("name", &name)
                    .str("start_date", &start);
            });
            self.terms[i] = id.clone();
            self.push(Collection::Terms, id, out, 0);
        }
    }

    /// Every student (ids in one block, school by school and grade by grade) and their contacts.
    fn students(&mut self) {
        self.first_student = self.next_counter;
        self.next_counter += self.spec.students as u64;
        let year = self.spec.school_year;
        let modified = self.modified();
        for s in 0..self.schools.len() {
            let school = &self.schools[s];
            let (school_id, range, grades) = (
                school.id.clone(),
                school.students.clone(),
                school.grades.clone(),
            );
            for i in range.clone() {
                let grade = grade_of(i - range.start, range.len(), &grades);
                let counter = self.first_student + i as u64;
                let id = self.id(counter);
                let mut r = Rng::for_item(self.spec.seed, 1, i as u64);
                let person = Person::random(&mut r);
                let email = r
                    .percent(85)
                    .then(|| format!("{}{}@students.example.org", person.handle(), i));
                let sis_id = format!("{}", 200_000_000 + i);
                let birth_year = year - 6 - grade as i32 + i32::from(r.percent(25));
                let dob = format!("{}/{}/{birth_year}", 1 + r.below(12), 1 + r.below(28));
                let mut out = String::with_capacity(900);
                Obj::write(&mut out, |o| {
                    o.str("created", &self.created(counter))
                        .str("district", &self.district_id);
                    if let Some(email) = &email {
                        o.str("email", email);
                    }
                    o.str("last_modified", &modified)
                        .obj("name", |n| {
                            n.str("first", person.first)
                                .str("last", person.last)
                                .str("middle", person.middle);
                        })
                        .str("id", &id)
                        .obj("roles", |roles| {
                            roles.obj("student", |st| {
                                st.obj("credentials", |c| {
                                    c.str(
                                        "district_username",
                                        &format!("{}{}", person.handle(), i % 100),
                                    );
                                })
                                .str("dob", &dob)
                                .objs("enrollments", [&school_id], |e, school| {
                                    e.str("school", school)
                                        .str("start_date", &format!("{year}-08-18T00:00:00.000Z"))
                                        .str("end_date", "");
                                })
                                .str("ell_status", if r.percent(10) { "Y" } else { "N" })
                                .str("gender", r.pick(&["M", "F", "M", "F", "X"]))
                                .str("grade", grade_name(grade))
                                .str("graduation_year", &format!("{}", year + 13 - grade as i32))
                                .str("hispanic_ethnicity", if r.percent(28) { "Y" } else { "N" })
                                .obj("location", |l| {
                                    l.str(
                                        "address",
                                        &format!("{} {}", 100 + r.below(9000), r.pick(STREETS)),
                                    )
                                    .str("city", r.pick(CITIES))
                                    .str("state", STATE)
                                    .str("zip", &format!("{}", 80_000 + r.below(700)));
                                })
                                .str("race", r.pick(RACES))
                                .str("school", &school_id)
                                .strs("schools", [school_id.as_str()])
                                .str("sis_id", &sis_id)
                                .str("state_id", &format!("{}", 1_000_000_000 + i * 7))
                                .str("student_number", &sis_id);
                                if let Some(email) = &email {
                                    st.str("email", email);
                                }
                            });
                        });
                });
                self.push(Collection::Users, id, out, Role::Student.bit());
                self.contacts_of(i, person);
            }
        }
    }

    /// A student's contacts: a parent (sometimes shared with the next student) and maybe an
    /// emergency contact. Clever keeps a contact's full name in `name.last`.
    fn contacts_of(&mut self, student: usize, person: Person) {
        let mut r = Rng::for_item(self.spec.seed, 2, student as u64);
        let mut contacts: Vec<(String, &str, &str, Vec<usize>)> = Vec::new();
        if r.percent(self.spec.contact_percent) {
            let mut students = vec![student];
            if student + 1 < self.spec.students && r.percent(self.spec.sibling_percent) {
                students.push(student + 1);
            }
            let name = format!("{} {}", r.pick(FIRST_NAMES), person.last);
            contacts.push((name, "Parent", "Parent/Guardian", students));
        }
        if r.percent(self.spec.second_contact_percent) {
            let name = format!("{} {}", r.pick(FIRST_NAMES), r.pick(LAST_NAMES));
            let relationship = r.pick(&["Grandparent", "Aunt/Uncle", "Sibling", "Other"]);
            contacts.push((name, relationship, "Emergency", vec![student]));
        }
        let modified = self.modified();
        for (name, relationship, kind, students) in contacts {
            let counter = self.alloc();
            let id = self.id(counter);
            let ids: Vec<String> = students
                .iter()
                .map(|s| self.id(self.first_student + *s as u64))
                .collect();
            let email = r
                .percent(80)
                .then(|| format!("contact{counter}@family.example.com"));
            let mut out = String::with_capacity(400);
            Obj::write(&mut out, |o| {
                o.str("created", &self.created(counter))
                    .str("district", &self.district_id);
                if let Some(email) = &email {
                    o.str("email", email);
                }
                o.str("last_modified", &modified)
                    .obj("name", |n| {
                        n.str("last", &name);
                    })
                    .str("id", &id)
                    .obj("roles", |roles| {
                        roles.obj("contact", |c| {
                            c.str("phone", &format!("(303) 555-{:04}", r.below(10_000)))
                                .str("phone_type", r.pick(&["Cell", "Cell", "Home", "Work"]))
                                .str(
                                    "sis_id",
                                    &if r.percent(70) {
                                        format!("C{counter}")
                                    } else {
                                        String::new()
                                    },
                                )
                                .objs("student_relationships", &ids, |rel, student| {
                                    rel.str("relationship", relationship)
                                        .str("student", student)
                                        .str("type", kind);
                                });
                        });
                    });
            });
            self.push_contact(id, out);
        }
    }

    /// A course by name, created on first use.
    fn course(&mut self, name: &str, dept: Dept) -> String {
        if let Some((id, _)) = self.courses.get(name) {
            return id.clone();
        }
        let counter = self.alloc();
        let id = self.id(counter);
        let number = format!("{}{:03}", dept.code(), 100 + self.courses.len());
        self.courses.insert(name.to_string(), (id.clone(), number));
        id
    }

    /// The teacher who takes the next section of a department at a school.
    fn teacher_for(&mut self, school: usize, dept: Dept) -> usize {
        let max = dept.max_load(self.schools[school].kind);
        if let Some(&t) = self.current_teacher.get(&(school, dept))
            && self.teachers[t].sections < max
        {
            return t;
        }
        let t = self.new_teacher(school, dept.title().to_string());
        self.current_teacher.insert((school, dept), t);
        t
    }

    fn new_teacher(&mut self, school: usize, title: String) -> usize {
        let counter = self.alloc();
        let mut r = Rng::for_item(self.spec.seed, 3, counter);
        // The school's second teacher is also an instructional coach (staff).
        let also_staff = self.teachers.len() == self.school_teachers_from + 1;
        self.teachers.push(Teacher {
            id: self.id(counter),
            counter,
            school,
            title,
            person: Person::random(&mut r),
            also_staff,
            sections: 0,
        });
        self.teachers.len() - 1
    }

    /// All sections of one school.
    fn school_sections(&mut self, s: usize) {
        self.school_teachers_from = self.teachers.len();
        let (range, grades) = (
            self.schools[s].students.clone(),
            self.schools[s].grades.clone(),
        );
        for grade in grades.clone() {
            let cohort: Vec<usize> = range
                .clone()
                .filter(|i| grade_of(i - range.start, range.len(), &grades) == grade)
                .collect();
            if cohort.is_empty() {
                continue;
            }
            if grade <= 5 {
                self.elementary_grade(s, grade, &cohort);
            } else {
                self.secondary_grade(s, grade, &cohort);
            }
        }
    }

    /// Self-contained homerooms: one teacher, five sections with the same roster; PE and art or
    /// music with the school's specialists.
    fn elementary_grade(&mut self, s: usize, grade: usize, cohort: &[usize]) {
        let label = if grade == 0 {
            "K".to_string()
        } else {
            grade.to_string()
        };
        let homerooms = cohort.len().div_ceil(self.spec.class_size.max(1));
        let mut order = cohort.to_vec();
        self.rng.shuffle(&mut order);
        for h in 0..homerooms {
            let roster: Vec<usize> = order.iter().skip(h).step_by(homerooms).copied().collect();
            let title = if grade == 0 {
                "Kindergarten Teacher".to_string()
            } else {
                format!("Grade {grade} Teacher")
            };
            let teacher = self.new_teacher(s, title);
            let core = [
                (Dept::Homeroom, format!("Homeroom {label}"), "0"),
                (Dept::English, format!("ELA {label}"), "1"),
                (Dept::Math, format!("Math {label}"), "2"),
                (Dept::Science, format!("Science {label}"), "3"),
                (Dept::Social, format!("Social Studies {label}"), "4"),
            ];
            for (dept, course, period) in core {
                let mut teachers = vec![teacher];
                if matches!(dept, Dept::Math | Dept::English)
                    && self.rng.percent(self.spec.co_teacher_percent)
                {
                    teachers.push(self.teacher_for(s, Dept::SpecialEd));
                }
                self.section(
                    s,
                    &course,
                    dept,
                    grade,
                    Term::Year,
                    &teachers,
                    &roster,
                    period,
                );
            }
            let pe = self.teacher_for(s, Dept::Pe);
            self.section(
                s,
                &format!("PE {label}"),
                Dept::Pe,
                grade,
                Term::Year,
                &[pe],
                &roster,
                "5",
            );
            let (dept, course) = if h % 2 == 0 {
                (Dept::Art, format!("Art {label}"))
            } else {
                (Dept::Music, format!("General Music {label}"))
            };
            let specialist = self.teacher_for(s, dept);
            self.section(
                s,
                &course,
                dept,
                grade,
                Term::Year,
                &[specialist],
                &roster,
                "6",
            );
        }
    }

    /// Departmentalised grades: each subject's sections are filled from a fresh shuffle of the
    /// grade; each student takes one elective.
    fn secondary_grade(&mut self, s: usize, grade: usize, cohort: &[usize]) {
        const HS_MATH: [&str; 4] = ["Algebra I", "Geometry", "Algebra II", "Precalculus"];
        const HS_SCIENCE: [&str; 4] = ["Biology", "Chemistry", "Physics", "Environmental Science"];
        const HS_SOCIAL: [&str; 4] = ["World History", "US History", "Government", "Economics"];
        const ROMAN: [&str; 7] = ["I", "I", "I", "I", "II", "III", "IV"];
        let high = grade >= 9;
        let hs = grade.saturating_sub(9).min(3);
        let roman = ROMAN[grade - 6];
        let mut subjects: Vec<(Dept, String, Term)> = vec![
            (
                Dept::Math,
                if high {
                    HS_MATH[hs].into()
                } else {
                    format!("Math {grade}")
                },
                Term::Year,
            ),
            (Dept::English, format!("English {grade}"), Term::Year),
            (
                Dept::Science,
                if high {
                    HS_SCIENCE[hs].into()
                } else {
                    format!("Science {grade}")
                },
                Term::Year,
            ),
            (
                Dept::Social,
                if high {
                    HS_SOCIAL[hs].into()
                } else {
                    format!("Social Studies {grade}")
                },
                Term::Year,
            ),
            (
                Dept::Pe,
                if grade >= 11 {
                    "Health".into()
                } else {
                    format!("PE {grade}")
                },
                Term::Fall,
            ),
        ];
        let mut order = cohort.to_vec();
        for (dept, course, term) in subjects.drain(..) {
            self.rng.shuffle(&mut order);
            self.fill_sections(s, grade, &course, dept, term, &order);
        }

        // One elective each, in the spring term.
        let electives = [
            (Dept::Art, format!("Art {roman}")),
            (
                Dept::Music,
                if high {
                    "Concert Band".to_string()
                } else {
                    "Band".to_string()
                },
            ),
            (Dept::Language, format!("Spanish {roman}")),
            (
                Dept::Tech,
                if grade >= 11 {
                    "AP Computer Science".to_string()
                } else {
                    "Intro to Computer Science".to_string()
                },
            ),
        ];
        self.rng.shuffle(&mut order);
        let per = order.len().div_ceil(electives.len());
        for (k, (dept, course)) in electives.into_iter().enumerate() {
            let group: Vec<usize> = order.iter().skip(k * per).take(per).copied().collect();
            if !group.is_empty() {
                self.fill_sections(s, grade, &course, dept, Term::Spring, &group);
            }
        }

        // Advisory: taught by the school's teachers in turn.
        self.rng.shuffle(&mut order);
        let n = order.len().div_ceil(self.spec.class_size.max(1));
        let staff = self.school_teachers_from..self.teachers.len();
        for k in 0..n {
            let roster: Vec<usize> = order.iter().skip(k).step_by(n).copied().collect();
            let teacher = staff.start + (self.section_count as usize + k) % staff.len();
            self.section(
                s,
                &format!("Advisory {grade}"),
                Dept::Advisory,
                grade,
                Term::Year,
                &[teacher],
                &roster,
                "0",
            );
        }
    }

    fn fill_sections(
        &mut self,
        s: usize,
        grade: usize,
        course: &str,
        dept: Dept,
        term: Term,
        students: &[usize],
    ) {
        let n = students.len().div_ceil(self.spec.class_size.max(1));
        for k in 0..n {
            let roster: Vec<usize> = students.iter().skip(k).step_by(n).copied().collect();
            let mut teachers = vec![self.teacher_for(s, dept)];
            if matches!(dept, Dept::Math | Dept::English)
                && self.rng.percent(self.spec.co_teacher_percent)
            {
                teachers.push(self.teacher_for(s, Dept::SpecialEd));
            }
            let period = (self.teachers[teachers[0]].sections % 7 + 1).to_string();
            self.section(s, course, dept, grade, term, &teachers, &roster, &period);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn section(
        &mut self,
        s: usize,
        course_name: &str,
        dept: Dept,
        grade: usize,
        term: Term,
        teachers: &[usize],
        students: &[usize],
        period: &str,
    ) {
        let course = self.course(course_name, dept);
        for t in teachers {
            self.teachers[*t].sections += 1;
        }
        let counter = self.alloc();
        self.section_count += 1;
        let id = self.id(counter);
        let school = &self.schools[s];
        let subject = if school.blank_subjects {
            ""
        } else {
            dept.subject()
        };
        let primary = &self.teachers[teachers[0]];
        let name = format!("{course_name} - {} - {period}", primary.person.last);
        let teacher_ids: Vec<&str> = teachers
            .iter()
            .map(|t| self.teachers[*t].id.as_str())
            .collect();
        let student_ids: Vec<String> = students
            .iter()
            .map(|i| self.id(self.first_student + *i as u64))
            .collect();
        let term_id = match term {
            Term::Year => &self.terms[0],
            Term::Fall => &self.terms[1],
            Term::Spring => &self.terms[2],
        };
        let mut out = String::with_capacity(400 + 27 * students.len());
        Obj::write(&mut out, |o| {
            o.str("course", &course)
                .str("created", &self.created(counter))
                .str("district", &self.district_id)
                .str("grade", grade_name(grade))
                .str("last_modified", &self.modified())
                .str("name", &name)
                .str("period", period)
                .str("school", &school.id)
                .str(
                    "section_number",
                    &format!("{}", 1 + self.section_count % 90),
                )
                .str("sis_id", &format!("{}", 500_000 + self.section_count))
                .strs("students", student_ids.iter().map(String::as_str))
                .str("subject", subject)
                .str("teacher", teacher_ids[0])
                .strs("teachers", teacher_ids.iter().copied())
                .str("term_id", term_id)
                .obj("ext", |_| {})
                .str("id", &id);
        });
        self.push(Collection::Sections, id, out, 0);
    }

    /// Principals, counselors, the district admins, and the teacher and school records (written
    /// last, when their sections are known).
    fn staff_and_admins(&mut self) {
        let modified = self.modified();
        for s in 0..self.schools.len() {
            let principal = self.schools[s].principal;
            let counselor = Person::random(&mut self.rng);
            for (person, title, department) in [
                (principal, "Principal", "Administration"),
                (counselor, "Counselor", "Student Services"),
            ] {
                let counter = self.alloc();
                let id = self.id(counter);
                let school_id = self.schools[s].id.clone();
                let mut out = String::new();
                Obj::write(&mut out, |o| {
                    o.str("created", &self.created(counter))
                        .str("district", &self.district_id)
                        .str(
                            "email",
                            &format!("{}@district.example.org", person.handle()),
                        )
                        .str("last_modified", &modified)
                        .obj("name", |n| {
                            n.str("first", person.first).str("last", person.last);
                        })
                        .str("id", &id)
                        .obj("roles", |roles| {
                            roles.obj("staff", |st| {
                                self.staff_role(
                                    st,
                                    counter,
                                    &[&school_id],
                                    title,
                                    department,
                                    person,
                                );
                            });
                        });
                });
                self.push(Collection::Users, id, out, Role::Staff.bit());
            }
        }

        let mut first_admin: Option<(String, Person)> = None;
        for _ in 0..self.spec.district_admins {
            let counter = self.alloc();
            let id = self.id(counter);
            let person = Person::random(&mut self.rng);
            first_admin.get_or_insert((id.clone(), person));
            let mut out = String::new();
            Obj::write(&mut out, |o| {
                o.str("created", &self.created(counter))
                    .str("district", &self.district_id)
                    .str(
                        "email",
                        &format!("{}@district.example.org", person.handle()),
                    )
                    .str("last_modified", &modified)
                    .obj("name", |n| {
                        n.str("first", person.first).str("last", person.last);
                    })
                    .str("id", &id)
                    .obj("roles", |roles| {
                        roles.obj("district_admin", |a| {
                            a.str("legacy_id", &self.legacy_id(counter))
                                .str("title", "Director of Technology");
                        });
                    });
            });
            self.push(Collection::Users, id, out, Role::DistrictAdmin.bit());
        }

        self.write_district(first_admin);
        self.write_schools();
        self.write_teachers();
        self.write_courses();
    }

    fn staff_role(
        &self,
        st: &mut Obj<'_>,
        counter: u64,
        schools: &[&str],
        title: &str,
        department: &str,
        person: Person,
    ) {
        st.obj("credentials", |c| {
            c.str("district_username", &person.handle());
        })
        .str("department", department)
        // Each role of a v2-era user had its own id.
        .str("legacy_id", &self.legacy_id(counter | 1 << 39))
        .strs("roles", [])
        .strs("schools", schools.iter().copied())
        .str("staff_id", &format!("ST{counter}"))
        .str("title", title)
        .obj("ext", |_| {});
    }

    fn write_district(&mut self, admin: Option<(String, Person)>) {
        let id = self.district_id.clone();
        let slug: String = self
            .district_name
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let mut out = String::new();
        Obj::write(&mut out, |o| {
            o.str("name", &self.district_name)
                .str("portal_url", &format!("https://clever.com/in/{slug}"))
                .str("sis_type", "sftp")
                .str("error", "")
                .str("launch_date", &Self::date(self.spec.school_year - 3, 7, 15));
            if let Some((admin_id, person)) = &admin {
                o.obj("district_contact", |c| {
                    c.str("title", "Director of Technology")
                        .str("district", &id)
                        .str(
                            "email",
                            &format!("{}@district.example.org", person.handle()),
                        )
                        .obj("name", |n| {
                            n.str("first", person.first).str("last", person.last);
                        })
                        .str("id", admin_id);
                });
            }
            o.str("state", "success")
                .str("last_sync", &self.modified())
                .strs("login_methods", ["Clever Badges", "Clever Passwords"])
                .str(
                    "mdr_number",
                    &format!("{}", 4_000_000 + self.machine % 1_000_000),
                )
                .str("nces_id", &format!("08{:05}", self.machine % 100_000))
                .str("id", &id);
        });
        self.push(Collection::Districts, id, out, 0);
    }

    fn write_schools(&mut self) {
        let modified = self.modified();
        for s in 0..self.schools.len() {
            let school = &self.schools[s];
            let mut r = Rng::for_item(self.spec.seed, 4, s as u64);
            let mut out = String::new();
            Obj::write(&mut out, |o| {
                o.str("created", &self.created(school.counter))
                    .str("district", &self.district_id)
                    .obj("ext", |_| {})
                    .str("high_grade", grade_name(school.grades.end - 1))
                    .str("id", &school.id)
                    .str("last_modified", &modified)
                    .obj("location", |l| {
                        l.str(
                            "address",
                            &format!("{} {}", 100 + r.below(9000), r.pick(STREETS)),
                        )
                        .str("city", r.pick(CITIES))
                        .str("state", STATE)
                        .str("zip", &format!("{}", 80_000 + r.below(700)));
                    })
                    .str("low_grade", grade_name(school.grades.start))
                    .str("mdr_number", &format!("{}", 5_000_000 + s))
                    .str("name", &school.name)
                    .str("nces_id", &format!("0800{:08}", 10_000 + s))
                    .str("phone", &format!("(303) 555-{:04}", r.below(10_000)))
                    .obj("principal", |p| {
                        p.str(
                            "email",
                            &format!("{}@district.example.org", school.principal.handle()),
                        )
                        .str(
                            "name",
                            &format!("{} {}", school.principal.first, school.principal.last),
                        );
                    })
                    .str("school_number", &school.number)
                    .str("sis_id", &school.number)
                    .str("state_id", &format!("CO-{}", 9000 + s));
            });
            let id = school.id.clone();
            self.push(Collection::Schools, id, out, 0);
        }
    }

    fn write_teachers(&mut self) {
        let modified = self.modified();
        let teachers = std::mem::take(&mut self.teachers);
        for t in &teachers {
            let school_id = self.schools[t.school].id.clone();
            let mut out = String::new();
            Obj::write(&mut out, |o| {
                o.str("created", &self.created(t.counter))
                    .str("district", &self.district_id)
                    .str(
                        "email",
                        &format!(
                            "{}{}@district.example.org",
                            t.person.handle(),
                            t.counter % 1000
                        ),
                    )
                    .str("last_modified", &modified)
                    .obj("name", |n| {
                        n.str("first", t.person.first).str("last", t.person.last);
                        if !t.person.middle.is_empty() {
                            n.str("middle", t.person.middle);
                        }
                    })
                    .str("id", &t.id)
                    .obj("roles", |roles| {
                        roles.obj("teacher", |te| {
                            te.obj("credentials", |c| {
                                c.str(
                                    "district_username",
                                    &format!("{}{}", t.person.handle(), t.counter % 1000),
                                );
                            })
                            .str("legacy_id", &self.legacy_id(t.counter))
                            .str("school", &school_id)
                            .strs("schools", [school_id.as_str()])
                            .str("sis_id", &format!("T{}", t.counter))
                            .str("state_id", &format!("{}", 700_000_000 + t.counter))
                            .str("teacher_number", &format!("{}", 30_000 + t.counter))
                            .str("title", &t.title)
                            .obj("ext", |_| {});
                        });
                        if t.also_staff {
                            roles.obj("staff", |st| {
                                self.staff_role(
                                    st,
                                    t.counter,
                                    &[&school_id],
                                    "Instructional Coach",
                                    "Curriculum",
                                    t.person,
                                );
                            });
                        }
                    });
            });
            let roles = Role::Teacher.bit() | if t.also_staff { Role::Staff.bit() } else { 0 };
            self.push(Collection::Users, t.id.clone(), out, roles);
        }
        self.teachers = teachers;
    }

    fn write_courses(&mut self) {
        let courses: Vec<(String, String, String)> = self
            .courses
            .iter()
            .map(|(name, (id, number))| (name.clone(), id.clone(), number.clone()))
            .collect();
        for (name, id, number) in courses {
            let mut out = String::new();
            Obj::write(&mut out, |o| {
                o.str("district", &self.district_id)
                    .str("id", &id)
                    .str("name", &name)
                    .str("number", &number);
            });
            self.push(Collection::Courses, id, out, 0);
        }
    }

    fn finish(mut self) -> Dataset {
        // Users so far: students (one id block), then staff, admins and teachers (later ids);
        // contacts' ids fall between the two runs.
        let users = std::mem::take(&mut self.tables[Collection::Users as usize]);
        let mut merged = Vec::with_capacity(users.len() + self.contacts.len());
        let mut users = users.into_iter();
        merged.extend(users.by_ref().take(self.spec.students));
        let mut contacts = std::mem::take(&mut self.contacts).into_iter().peekable();
        let mut others = users.peekable();
        loop {
            let take_contact = match (contacts.peek(), others.peek()) {
                (Some(c), Some(o)) => c.key < o.key,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_contact {
                contacts.next()
            } else {
                others.next()
            };
            merged.extend(next);
        }
        self.tables[Collection::Users as usize] = merged;
        Dataset::from_tables(self.tables)
    }
}

/// The grade of the `n`th of `count` students of a school teaching `grades` (evenly spread).
fn grade_of(n: usize, count: usize, grades: &Range<usize>) -> usize {
    grades.start + n * grades.len() / count.max(1)
}

fn grade_name(grade: usize) -> &'static str {
    const NAMES: [&str; 13] = [
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
    ];
    NAMES[grade.min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::district::tests::assert_references_resolve;
    use serde_json::Value;
    use std::collections::HashSet;

    #[test]
    fn same_seed_same_dataset_other_seed_other_dataset() {
        let a = generate(GenSpec::new(1500));
        let b = generate(GenSpec::new(1500));
        let c = generate(GenSpec::new(1500).with_seed(7));
        for coll in Collection::ALL {
            assert_eq!(a.ids(coll), b.ids(coll), "{coll:?}");
            for id in a.ids(coll) {
                assert_eq!(a.raw(coll, &id), b.raw(coll, &id));
            }
        }
        assert_ne!(a.ids(Collection::Users), c.ids(Collection::Users));
    }

    #[test]
    fn generated_references_resolve_and_ids_are_unique() {
        let d = generate(GenSpec::new(3000));
        for coll in Collection::ALL {
            assert_eq!(
                d.all(coll).len(),
                d.len(coll),
                "every {coll:?} record is valid JSON"
            );
        }
        assert_references_resolve(&d);
        let mut seen = HashSet::new();
        for coll in Collection::ALL {
            for id in d.ids(coll) {
                assert!(json::parse_hex_id(&id).is_some(), "24 hex: {id}");
                assert!(seen.insert(id.clone()), "unique: {id}");
            }
        }
        assert_eq!(d.count_role(Role::Student), 3000);
        assert!(d.count_role(Role::Teacher) > 3000 / 60);
        assert!(d.count_role(Role::Contact) > 2000);
        assert_eq!(d.count_role(Role::DistrictAdmin), 2);
        assert!(d.count_role(Role::Staff) >= 2 * d.len(Collection::Schools));
    }

    #[test]
    fn sections_look_like_real_sis_feeds() {
        let d = generate(GenSpec {
            blank_subject_percent: 40,
            ..GenSpec::new(6000)
        });
        let sections = d.all(Collection::Sections);
        let subjects: HashSet<&str> = sections
            .iter()
            .filter_map(|s| s["subject"].as_str())
            .collect();
        for s in [
            "PE and health",
            "arts and music",
            "math",
            "english/language arts",
            "",
            "homeroom/advisory",
        ] {
            assert!(subjects.contains(s), "subject {s:?} in {subjects:?}");
        }
        let blank_names: Vec<&str> = sections
            .iter()
            .filter(|s| s["subject"] == "")
            .filter_map(|s| s["name"].as_str())
            .collect();
        assert!(
            blank_names.iter().any(|n| n.starts_with("PE ")),
            "PE by name only"
        );
        let courses = d.all(Collection::Courses);
        assert!(courses.iter().any(|c| c["name"] == "Art I"));
        let co_taught = sections
            .iter()
            .filter(|s| s["teachers"].as_array().is_some_and(|t| t.len() > 1))
            .count();
        assert!(co_taught > 0, "some sections have co-teachers");
        for s in &sections {
            let n = s["students"].as_array().map_or(0, Vec::len);
            assert!((1..=25).contains(&n), "class size {n}");
        }
        // Every student sits in several sections.
        let mut per_student: HashMap<String, usize> = HashMap::new();
        for s in &sections {
            for st in s["students"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                *per_student.entry(st.to_string()).or_default() += 1;
            }
        }
        assert_eq!(per_student.len(), 6000);
        assert!(per_student.values().all(|n| *n >= 6));
        let multi_role = d
            .all(Collection::Users)
            .into_iter()
            .filter(|u| u["roles"].as_object().is_some_and(|r| r.len() > 1))
            .count();
        assert!(multi_role > 0, "teachers who are also staff");
    }

    #[test]
    fn tiny_districts_work() {
        for n in [0, 1, 7] {
            let d = generate(GenSpec::new(n));
            assert_eq!(d.count_role(Role::Student), n);
            assert_eq!(d.len(Collection::Schools), 1);
            assert_references_resolve(&d);
        }
    }
}

#[cfg(test)]
mod scale {
    use super::*;
    use std::time::Instant;

    /// A million students fit in memory and generate in seconds (run with `--ignored`).
    #[test]
    #[ignore = "scale check: about a gigabyte of memory"]
    fn a_million_students() {
        let started = Instant::now();
        let d = generate(GenSpec::new(1_000_000));
        let elapsed = started.elapsed();
        let bytes: usize = Collection::ALL
            .iter()
            .map(|c| d.records(*c).iter().map(|r| r.json.len()).sum::<usize>())
            .sum();
        eprintln!(
            "1M students: {:?}, {} users, {} sections, {} MB of JSON",
            elapsed,
            d.len(Collection::Users),
            d.len(Collection::Sections),
            bytes / 1_000_000
        );
        assert_eq!(d.count_role(Role::Student), 1_000_000);

        let tmp = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        d.write_recording(tmp.path(), 10_000)
            .expect("write recording");
        eprintln!("recording at limit=10000: {:?}", started.elapsed());
    }
}
