//! The randomness a plugin gets. WASI's `random`, `insecure` and `insecure-seed` interfaces
//! (what `getrandom`, `rand` and the standard library's `HashMap` keys draw from) answer from
//! ChaCha20 generators that the host seeds for each call from what the call is given: the
//! stage's name in the pipeline, its config, and the snapshot exactly as the plugin receives it.
//!
//! So the same pipeline on the same roster draws the same bytes and proposes the same edits on a
//! rerun (a plugin that shuffles, samples or iterates a `HashMap` does not churn the roster),
//! while another roster, config or stage draws others. The bytes are not secret: anyone with
//! the pipeline and the snapshot can derive them.

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::v0_1_0::wire;

/// The most a plugin may ask for in one `get-random-bytes` call. The host builds the answer in
/// its own memory before copying it in, outside the plugin's memory cap; `getrandom` asks for 8
/// bytes at a time.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Names this derivation: a change to it must change the name, so that no two versions of the
/// host give the same seed for different inputs.
const DOMAIN: &[u8] = b"rosterflow plugin random v1";

/// Everything a call's randomness comes from, hashed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seed([u8; 32]);

impl Seed {
    /// The seed of a call into the stage `plugin` (its name in the pipeline) with `config_json`,
    /// on `snapshot` for a run and none for `describe` and `check-config`.
    pub(crate) fn new(plugin: &str, config_json: &str, snapshot: Option<&wire::Snapshot>) -> Seed {
        let mut feed = Feed(Sha256::new());
        feed.bytes(DOMAIN);
        feed.str(plugin);
        feed.str(config_json);
        match snapshot {
            None => feed.u8(0),
            Some(snapshot) => {
                feed.u8(1);
                feed.snapshot(snapshot);
            }
        }
        Seed(feed.0.finalize().into())
    }

    /// Points WASI's three random interfaces at generators derived from this seed, each from
    /// its own key, so that what one reveals says nothing about the others.
    pub(crate) fn grant(&self, wasi: &mut WasiCtxBuilder) {
        let insecure_seed = self.derive(b"insecure-seed");
        let (insecure_seed, _) = insecure_seed
            .split_first_chunk::<16>()
            .expect("16 of 32 bytes");
        wasi.secure_random(ChaCha20Rng::from_seed(self.derive(b"random")))
            .insecure_random(ChaCha20Rng::from_seed(self.derive(b"insecure")))
            .insecure_random_seed(u128::from_le_bytes(*insecure_seed))
            .max_random_size(MAX_RANDOM_BYTES);
    }

    fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let mut feed = Feed(Sha256::new());
        feed.bytes(&self.0);
        feed.bytes(purpose);
        feed.0.finalize().into()
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seed({})", hex::encode(self.0))
    }
}

/// Writes values into the hash so that no two inputs write alike: every string and list is
/// preceded by its length, every option by a tag.
struct Feed(Sha256);

impl Feed {
    fn u8(&mut self, v: u8) {
        self.0.update([v]);
    }

    fn u32(&mut self, v: u32) {
        self.0.update(v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.update(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn opt_str(&mut self, s: &Option<String>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
        }
    }

    fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        for &x in v {
            self.u32(x);
        }
    }

    /// Every field of the snapshot the plugin receives, costly columns included when sent. The
    /// destructuring names every field, so a field added to the interface does not compile
    /// until it is hashed here too.
    fn snapshot(&mut self, snapshot: &wire::Snapshot) {
        let wire::Snapshot {
            district,
            schools,
            terms,
            courses,
            sections,
            grades,
            students,
            student_ids,
            teachers,
            teacher_details,
        } = snapshot;
        self.str(district);
        self.len(schools.len());
        for wire::School {
            id,
            sis_id,
            school_number,
            name,
            low_grade,
            high_grade,
        } in schools
        {
            self.str(id);
            self.opt_str(sis_id);
            self.opt_str(school_number);
            self.str(name);
            self.opt_str(low_grade);
            self.opt_str(high_grade);
        }
        self.len(terms.len());
        for wire::Term {
            id,
            name,
            start_date,
            end_date,
        } in terms
        {
            self.str(id);
            self.opt_str(name);
            self.opt_str(start_date);
            self.opt_str(end_date);
        }
        self.len(courses.len());
        for wire::Course { id, name, number } in courses {
            self.str(id);
            self.opt_str(name);
            self.opt_str(number);
        }
        self.len(sections.len());
        for wire::Section {
            id,
            sis_id,
            school,
            name,
            subject,
            grade,
            period,
            term,
            course,
            teachers,
            students,
            ext,
            made_by,
        } in sections
        {
            self.str(id);
            self.opt_str(sis_id);
            self.u32(*school);
            self.str(name);
            self.opt_str(subject);
            self.opt_str(grade);
            self.opt_str(period);
            self.opt_u32(*term);
            self.opt_u32(*course);
            self.u32s(teachers);
            self.u32s(students);
            self.len(ext.len());
            for (key, value) in ext {
                self.str(key);
                self.str(value);
            }
            self.opt_str(made_by);
        }
        self.len(grades.len());
        for grade in grades {
            self.str(grade);
        }
        self.len(students.len());
        for wire::Student { school, grade } in students {
            self.opt_u32(*school);
            self.opt_u32(*grade);
        }
        self.len(student_ids.len());
        for wire::StudentIds {
            id,
            sis_id,
            state_id,
            student_number,
        } in student_ids
        {
            self.str(id);
            self.opt_str(sis_id);
            self.opt_str(state_id);
            self.opt_str(student_number);
        }
        self.len(teachers.len());
        for wire::Teacher { school } in teachers {
            self.opt_u32(*school);
        }
        self.len(teacher_details.len());
        for wire::TeacherDetails {
            id,
            sis_id,
            state_id,
            teacher_number,
            email,
            title,
        } in teacher_details
        {
            self.str(id);
            self.opt_str(sis_id);
            self.opt_str(state_id);
            self.opt_str(teacher_number);
            self.opt_str(email);
            self.opt_str(title);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> wire::Snapshot {
        wire::Snapshot {
            district: "d".into(),
            schools: vec![wire::School {
                id: "sc".into(),
                sis_id: None,
                school_number: None,
                name: "School".into(),
                low_grade: None,
                high_grade: None,
            }],
            terms: Vec::new(),
            courses: Vec::new(),
            sections: vec![wire::Section {
                id: "se".into(),
                sis_id: Some("MATH".into()),
                school: 0,
                name: "Math".into(),
                subject: None,
                grade: None,
                period: None,
                term: None,
                course: None,
                teachers: vec![0],
                students: vec![0, 1],
                ext: Vec::new(),
                made_by: None,
            }],
            grades: vec!["3".into()],
            students: vec![
                wire::Student {
                    school: Some(0),
                    grade: Some(0),
                },
                wire::Student {
                    school: Some(0),
                    grade: None,
                },
            ],
            student_ids: Vec::new(),
            teachers: vec![wire::Teacher { school: Some(0) }],
            teacher_details: Vec::new(),
        }
    }

    #[test]
    fn the_same_call_gets_the_same_seed() {
        let s = snapshot();
        assert_eq!(
            Seed::new("p", "{}", Some(&s)),
            Seed::new("p", "{}", Some(&s.clone()))
        );
        assert_eq!(Seed::new("p", "{}", None), Seed::new("p", "{}", None));
    }

    #[test]
    fn the_stage_its_config_and_the_snapshot_each_change_the_seed() {
        let s = snapshot();
        let base = Seed::new("p", "{}", Some(&s));
        let mut moved = s.clone();
        moved.sections[0].students = vec![1, 0];
        let mut renamed = s.clone();
        renamed.sections[0].name = "Math 2".into();
        let mut cleared = s.clone();
        cleared.students[1].school = None;
        for (what, other) in [
            ("name", Seed::new("q", "{}", Some(&s))),
            ("config", Seed::new("p", r#"{"a":1}"#, Some(&s))),
            ("no snapshot", Seed::new("p", "{}", None)),
            ("members", Seed::new("p", "{}", Some(&moved))),
            ("a string", Seed::new("p", "{}", Some(&renamed))),
            ("an option", Seed::new("p", "{}", Some(&cleared))),
        ] {
            assert_ne!(base, other, "{what}");
        }
    }

    #[test]
    fn field_boundaries_are_part_of_the_seed() {
        // "ab" + "c" and "a" + "bc" must not hash alike.
        assert_ne!(Seed::new("ab", "c", None), Seed::new("a", "bc", None));
        let mut a = snapshot();
        a.sections[0].teachers = vec![0, 1];
        a.sections[0].students = vec![1];
        assert_ne!(
            Seed::new("p", "{}", Some(&a)),
            Seed::new("p", "{}", Some(&snapshot()))
        );
    }

    #[test]
    fn each_interface_gets_its_own_key() {
        let seed = Seed::new("p", "{}", None);
        let keys = [
            seed.derive(b"random"),
            seed.derive(b"insecure"),
            seed.derive(b"insecure-seed"),
        ];
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
    }

    #[test]
    fn a_call_draws_the_same_bytes_in_every_release() {
        // A change to the derivation or the generator changes what every plugin draws, and so
        // the edits of those that draw: it needs a new `DOMAIN` and a release note. This is the
        // first ChaCha20 block (zero nonce and counter) under SHA-256(seed, "random"), for the
        // seed of stage "p", config "{}" and no snapshot.
        use chacha20::rand_core::Rng;
        let mut rng = ChaCha20Rng::from_seed(Seed::new("p", "{}", None).derive(b"random"));
        assert_eq!(rng.next_u64(), 0x5fc4_3f8a_a026_f9b1);
    }
}
