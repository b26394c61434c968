//! District WASM plugins against the real host: the example plugins on a small district, and
//! the hostile suite (each misdeed fails cleanly, within its limit, with the right error, and
//! leaves the snapshot as it was).
//!
//! The plugins are real components built for `wasm32-wasip2`; [`plugin_wasm`] finds them and
//! says how to build them when they are missing.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rosterflow_model::{
    DecisionAction, District, Entity, Id, School, Section, Snapshot, Source, Student, Teacher,
};
use rosterflow_transform::plugin::{
    Attribute, Edit, Plugin, PluginError, PluginErrorKind, PluginHost, PluginLimits, check,
};

use crate::util::peak_heap_during;

/// The component of a plugin crate of this workspace (`"flex-groups"`, `"hostile-evil"`...),
/// built for `wasm32-wasip2` in the debug profile.
pub fn plugin_wasm(crate_name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target
        .join("wasm32-wasip2/debug")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: build the plugins first with\n  cargo build --target wasm32-wasip2 \
         -p flex-groups -p drop-by-title -p hostile-evil -p hostile-wrong-version\n(the target \
         comes from `rustup target add wasm32-wasip2`)",
        path.display()
    );
    path
}

/// One host for the whole binary, as in a process: components compile once.
fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new(None).expect("plugin host"))
}

fn load(crate_name: &str) -> Plugin {
    host()
        .load(&plugin_wasm(crate_name))
        .unwrap_or_else(|e| panic!("load {crate_name}: {e}"))
}

/// Clever-like ids: 24 hex digits, a prefix per kind.
fn id(kind: u8, n: usize) -> Id {
    format!("{kind:02x}{n:022x}").into()
}

/// Two schools; school 0 has eight 3rd graders, two 1st graders and a math section of six
/// taught by a teacher and a substitute; school 1 has three 4th graders and an art section
/// taught by a substitute alone.
fn small_snapshot() -> Snapshot {
    let school = |n: usize| School {
        id: id(1, n),
        name: format!("School {n}"),
        sis_id: Some(format!("{}00", n + 1)),
        ..School::default()
    };
    let student = |n: usize, school: usize, grade: &str| Student {
        id: id(2, n),
        sis_id: Some(format!("S{n}")),
        grade: Some(grade.into()),
        school: Some(id(1, school)),
        ..Student::default()
    };
    let teacher = |n: usize, title: &str| Teacher {
        id: id(3, n),
        title: Some(title.into()),
        school: Some(id(1, 0)),
        ..Teacher::default()
    };
    let mut students: Vec<Student> = (0..8).map(|n| student(n, 0, "3")).collect();
    students.extend((8..10).map(|n| student(n, 0, "1")));
    students.extend((10..13).map(|n| student(n, 1, "4")));
    Snapshot {
        district: District {
            id: id(0, 1),
            name: "Test district".into(),
            ..District::default()
        },
        schools: vec![school(0), school(1)],
        sections: vec![
            Section {
                id: id(4, 0),
                school: id(1, 0),
                name: "Math 3".into(),
                sis_id: Some("MATH-3".into()),
                subject: Some("math".into()),
                grade: Some("3".into()),
                teachers: vec![id(3, 0), id(3, 1)],
                students: (0..6).map(|n| id(2, n)).collect(),
                ..Section::default()
            },
            Section {
                id: id(4, 1),
                school: id(1, 1),
                name: "Art 4".into(),
                subject: Some("arts and music".into()),
                grade: Some("4".into()),
                teachers: vec![id(3, 1)],
                students: (10..13).map(|n| id(2, n)).collect(),
                ..Section::default()
            },
        ],
        students,
        teachers: vec![teacher(0, "Teacher"), teacher(1, "Substitute")],
        ..Snapshot::default()
    }
}

const FLEX_CONFIG: &str = r#"{
    "bands": [{"key": "math-3", "name": "Math group", "grades": ["3"],
               "enrolled_in_subject": "math", "subject": "math", "max_size": 4}],
    "splits": [{"key": "split", "subject": "math", "max_size": 4}]
}"#;

#[test]
fn flex_groups_on_a_small_snapshot_gives_the_expected_groups() {
    let plugin = load("flex-groups");
    let mut snapshot = small_snapshot();
    let report = plugin
        .run("flex", FLEX_CONFIG, &PluginLimits::default(), &mut snapshot)
        .expect("flex-groups runs");
    assert_eq!(report.counts.groups_created, 4);
    assert_eq!(report.log.len(), 1, "{:?}", report.log);

    let groups: Vec<(&str, &str, Vec<Id>, Vec<Id>)> = snapshot
        .sections
        .iter()
        .filter(|s| s.source == Source::Plugin("flex".into()))
        .map(|s| {
            (
                s.id.as_str(),
                s.name.as_str(),
                s.teachers.clone(),
                s.students.clone(),
            )
        })
        .collect();
    let students = |range: std::ops::Range<usize>| range.map(|n| id(2, n)).collect::<Vec<_>>();
    assert_eq!(
        groups,
        [
            // The six 3rd graders in math, pooled at school 0 (SIS id 100), in groups of <= 4.
            (
                "plugin:flex:math-3-100-1",
                "Math group 1",
                vec![],
                students(0..3)
            ),
            (
                "plugin:flex:math-3-100-2",
                "Math group 2",
                vec![],
                students(3..6)
            ),
            // The math section split in two, keeping both its teachers.
            (
                "plugin:flex:split-MATH-3-1",
                "Math 3 (1 of 2)",
                vec![id(3, 0), id(3, 1)],
                students(0..3)
            ),
            (
                "plugin:flex:split-MATH-3-2",
                "Math 3 (2 of 2)",
                vec![id(3, 0), id(3, 1)],
                students(3..6)
            ),
        ]
    );
    let created: Vec<&str> = snapshot
        .decisions
        .iter()
        .filter(|d| {
            d.entity == Entity::Class
                && d.action == DecisionAction::Created
                && d.author == "plugin:flex"
        })
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(created.len(), 4);
    assert_eq!(snapshot.sections[2].school, id(1, 0));
    assert_eq!(snapshot.sections[2].subject.as_deref(), Some("math"));
}

#[test]
fn drop_by_title_drops_substitutes_and_the_sections_only_they_teach() {
    let plugin = load("drop-by-title");
    assert_eq!(plugin.describe().wants, ["teacher-details"]);
    let mut snapshot = small_snapshot();
    let report = plugin
        .run(
            "subs",
            r#"{"titles": ["substitute"]}"#,
            &PluginLimits::default(),
            &mut snapshot,
        )
        .expect("drop-by-title runs");
    assert_eq!(report.counts.sections_dropped, 1);
    assert_eq!(report.counts.teachers_dropped, 1);
    let sections: Vec<&str> = snapshot.sections.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(sections, [id(4, 0)]);
    assert_eq!(snapshot.sections[0].teachers, [id(3, 0)]);
    assert_eq!(snapshot.teachers.len(), 1);
    assert!(
        snapshot
            .decisions
            .iter()
            .any(|d| d.entity == Entity::Teacher
                && d.id == id(3, 1)
                && d.action == DecisionAction::Dropped
                && d.author == "plugin:subs")
    );
}

#[test]
fn propose_shows_edits_as_clever_ids_without_applying_them() {
    let plugin = load("drop-by-title");
    let snapshot = small_snapshot();
    let edits = plugin
        .propose(
            "subs",
            r#"{"titles": ["substitute"]}"#,
            &PluginLimits::default(),
            &snapshot,
        )
        .expect("propose");
    assert_eq!(
        edits,
        [Edit::DropSection(id(4, 1)), Edit::DropTeacher(id(3, 1))]
    );
    assert_eq!(edits[0].to_string(), format!("drop section {}", id(4, 1)));
    assert_eq!(snapshot, small_snapshot());
}

#[test]
fn check_describes_the_interface_and_the_plugin() {
    let description = check(host(), &plugin_wasm("flex-groups")).expect("check");
    assert_eq!(description.interface, "rosterflow:plugin@0.1.0");
    assert_eq!(description.name, "flex-groups");
    assert!(
        description
            .exports
            .iter()
            .any(|e| e == "rosterflow:plugin/transform@0.1.0 (describe, check-config, run)"),
        "{:?}",
        description.exports
    );
    assert!(
        description
            .imports
            .iter()
            .any(|i| i == "rosterflow:plugin/log@0.1.0")
    );
    let shown = description.to_string();
    assert!(
        shown.contains("interface  rosterflow:plugin@0.1.0"),
        "{shown}"
    );
}

#[test]
fn a_bad_config_is_reported_as_invalid_config() {
    let plugin = load("flex-groups");
    let err = plugin
        .check_config("flex", r#"{"bands": 3}"#, &PluginLimits::default())
        .expect_err("bad config");
    assert!(err.is_invalid_config(), "{err}");
    assert!(
        err.to_string()
            .starts_with("plugin flex reported invalid config:"),
        "{err}"
    );
    plugin
        .check_config("flex", FLEX_CONFIG, &PluginLimits::default())
        .expect("good config");
}

#[test]
fn a_second_host_deserialises_the_cached_component() {
    let cache = tempfile::tempdir().expect("temp dir");
    let wasm = plugin_wasm("drop-by-title");
    let started = Instant::now();
    PluginHost::new(Some(cache.path().to_owned()))
        .expect("host")
        .load(&wasm)
        .expect("first load compiles");
    let compile = started.elapsed();
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");

    let started = Instant::now();
    let plugin = PluginHost::new(Some(cache.path().to_owned()))
        .expect("host")
        .load(&wasm)
        .expect("second load deserialises");
    let deserialise = started.elapsed();
    assert!(
        deserialise < compile,
        "deserialising took {deserialise:?}, compiling {compile:?}"
    );
    assert_eq!(plugin.describe().name, "drop-by-title");
}

// The hostile suite. Each case runs the evil plugin in one mode; `hostile` checks that it
// failed within its limit and left the snapshot exactly as it was.
// TODO(load): also run it as a pipeline stage and assert the DB is unchanged.

struct Failure {
    error: PluginError,
    elapsed: Duration,
    /// The most heap the host held at once during the run.
    peak_heap: usize,
}

fn hostile(mode: &str, limits: PluginLimits) -> Failure {
    let plugin = load("hostile-evil");
    let mut snapshot = small_snapshot();
    let started = Instant::now();
    let (result, peak_heap) = peak_heap_during(|| {
        plugin.run(
            "evil",
            &format!(r#"{{"mode": "{mode}"}}"#),
            &limits,
            &mut snapshot,
        )
    });
    let elapsed = started.elapsed();
    let error = match result {
        Ok(report) => panic!("mode {mode} should fail, but ran: {report}"),
        Err(error) => error,
    };
    assert_eq!(
        snapshot,
        small_snapshot(),
        "mode {mode} changed the snapshot"
    );
    Failure {
        error,
        elapsed,
        peak_heap,
    }
}

#[test]
fn an_infinite_loop_exceeds_its_time_budget() {
    let limits = PluginLimits {
        timeout_ms: 300,
        ..PluginLimits::default()
    };
    let f = hostile("loop", limits);
    assert!(
        matches!(
            f.error,
            PluginError::Timeout {
                timeout_ms: 300,
                ..
            }
        ),
        "{}",
        f.error
    );
    assert_eq!(
        f.error.to_string(),
        "plugin evil exceeded its time budget of 300 ms"
    );
    // The budget, plus instantiation and slack for a busy two-core machine.
    assert!(
        f.elapsed < Duration::from_millis(2000),
        "took {:?}",
        f.elapsed
    );
    assert!(
        f.elapsed >= Duration::from_millis(250),
        "took {:?}",
        f.elapsed
    );
}

#[test]
fn a_memory_bomb_hits_its_memory_cap() {
    let limits = PluginLimits {
        memory_mb: 64,
        ..PluginLimits::default()
    };
    let f = hostile("memory-bomb", limits);
    assert!(
        matches!(f.error, PluginError::OutOfMemory { memory_mb: 64, .. }),
        "{}",
        f.error
    );
    assert_eq!(
        f.error.to_string(),
        "plugin evil exceeded its memory cap of 64 MB"
    );
    assert!(f.elapsed < Duration::from_secs(2), "took {:?}", f.elapsed);
}

#[test]
fn a_panic_is_a_crash_with_the_panic_message() {
    let f = hostile("panic", PluginLimits::default());
    assert!(
        matches!(f.error, PluginError::Trapped { .. }),
        "{}",
        f.error
    );
    let message = f.error.to_string();
    assert!(message.starts_with("plugin evil crashed: "), "{message}");
    assert!(
        message.contains("the evil plugin panics on purpose"),
        "{message}"
    );
}

#[test]
fn an_oversized_output_hits_its_output_cap() {
    let limits = PluginLimits {
        max_output_mb: 16,
        ..PluginLimits::default()
    };
    let f = hostile("oversized-output", limits);
    assert!(
        matches!(f.error, PluginError::OutputTooLarge { max_output_mb: 16, output_bytes: Some(n), .. }
            if n > 16 << 20),
        "{}",
        f.error
    );
}

#[test]
fn a_huge_output_is_stopped_while_it_is_copied() {
    // 20 MB of member indices against a cap of 1 MB: the host must refuse them without first
    // copying them out of the plugin.
    let limits = PluginLimits {
        max_output_mb: 1,
        ..PluginLimits::default()
    };
    let f = hostile("oversized-output", limits);
    assert!(
        matches!(
            f.error,
            PluginError::OutputTooLarge {
                output_bytes: None,
                max_output_mb: 1,
                ..
            }
        ),
        "{}",
        f.error
    );
    assert_eq!(
        f.error.to_string(),
        "plugin evil passed the host more than its output cap of 1 MB allows; the host stopped \
         copying it"
    );
    assert!(
        f.peak_heap < 2 << 20,
        "the host held {} bytes at once for a 20 MB output",
        f.peak_heap
    );
}

#[test]
fn dangling_ids_are_an_invalid_edit() {
    let f = hostile("dangling-ids", PluginLimits::default());
    assert!(
        matches!(f.error, PluginError::InvalidEdit { index: 0, .. }),
        "{}",
        f.error
    );
    assert_eq!(
        f.error.to_string(),
        "plugin evil returned an invalid edit (edit #0): student index 20 is out of range (the \
         snapshot has 13 students)"
    );
}

#[test]
fn duplicate_group_keys_are_an_invalid_edit() {
    let f = hostile("duplicate-keys", PluginLimits::default());
    assert!(
        matches!(f.error, PluginError::InvalidEdit { index: 1, .. }),
        "{}",
        f.error
    );
    assert!(
        f.error.to_string().contains("\"twin\" is used twice"),
        "{}",
        f.error
    );
}

#[test]
fn editing_a_dropped_section_is_an_invalid_edit() {
    let f = hostile("drop-then-edit", PluginLimits::default());
    assert!(
        matches!(f.error, PluginError::InvalidEdit { index: 1, .. }),
        "{}",
        f.error
    );
}

#[test]
fn a_reported_error_keeps_its_kind() {
    let f = hostile("fatal", PluginLimits::default());
    assert!(
        matches!(&f.error, PluginError::Reported { kind: PluginErrorKind::Fatal, message, .. }
            if message == "the evil plugin gives up"),
        "{}",
        f.error
    );
}

#[test]
fn exit_is_a_crash() {
    let f = hostile("exit", PluginLimits::default());
    assert!(
        matches!(&f.error, PluginError::Trapped { message, .. } if message.contains("it exited with status")),
        "{}",
        f.error
    );
}

#[test]
fn sleeping_is_a_crash_not_a_stuck_thread() {
    let limits = PluginLimits {
        timeout_ms: 300,
        ..PluginLimits::default()
    };
    let f = hostile("sleep", limits);
    assert!(
        matches!(&f.error, PluginError::Trapped { message, .. } if message.contains("sleep")),
        "{}",
        f.error
    );
    assert!(f.elapsed < Duration::from_secs(2), "took {:?}", f.elapsed);
}

#[test]
fn a_wrong_interface_version_is_refused_at_load() {
    let error = host()
        .load(&plugin_wasm("hostile-wrong-version"))
        .err()
        .expect("a 0.2.0 plugin does not load");
    assert!(
        matches!(error, PluginError::UnsupportedInterface { .. }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "plugin hostile_wrong_version was built for rosterflow:plugin@0.2.0, which this host \
         does not run (it runs rosterflow:plugin@0.1.0); rebuild it against a supported \
         rosterflow-plugin-sdk"
    );
}

#[test]
fn nothing_is_granted_by_default() {
    let f = hostile("probe", PluginLimits::default());
    let PluginError::Reported { message, .. } = &f.error else {
        panic!("{}", f.error);
    };
    assert!(message.starts_with("fs=denied"), "{message}");
    assert!(message.ends_with("; env=0; clock=0"), "{message}");
}

/// The `ext.draw` value the evil plugin's `random` mode proposes: bytes from `getrandom` and a
/// `HashMap` key.
fn draw(plugin: &Plugin, name: &str, note: &str, snapshot: &Snapshot) -> String {
    let config = format!(r#"{{"mode": "random", "note": "{note}"}}"#);
    let edits = plugin
        .propose(name, &config, &PluginLimits::default(), snapshot)
        .expect("random runs");
    match edits.as_slice() {
        [
            Edit::SetAttribute {
                attribute:
                    Attribute::Ext {
                        value: Some(drawn), ..
                    },
                ..
            },
        ] => drawn.clone(),
        other => panic!("unexpected edits {other:?}"),
    }
}

#[test]
fn random_draws_repeat_on_a_rerun_and_change_with_the_input() {
    let plugin = load("hostile-evil");
    let first = draw(&plugin, "evil", "a", &small_snapshot());
    assert_eq!(first.len(), 32 + 1 + 16, "{first}");
    // Every call is a fresh instance; another host is another process's rerun.
    assert_eq!(draw(&plugin, "evil", "a", &small_snapshot()), first);
    let rerun = PluginHost::new(None)
        .expect("host")
        .load(&plugin_wasm("hostile-evil"))
        .expect("load");
    assert_eq!(draw(&rerun, "evil", "a", &small_snapshot()), first);

    let mut roster = small_snapshot();
    roster.students.pop();
    let others = [
        ("another roster", draw(&plugin, "evil", "a", &roster)),
        (
            "another config",
            draw(&plugin, "evil", "b", &small_snapshot()),
        ),
        (
            "another stage",
            draw(&plugin, "evil-2", "a", &small_snapshot()),
        ),
    ];
    for (what, other) in others {
        // Both the `getrandom` bytes and the `HashMap` key change.
        let (bytes, key) = other.split_once('-').expect("bytes-key");
        assert!(
            !first.starts_with(bytes) && !first.ends_with(key),
            "{what}: {other} against {first}"
        );
    }
}

#[test]
fn a_trapped_plugin_runs_again_in_a_fresh_instance() {
    let plugin = load("hostile-evil");
    let mut snapshot = small_snapshot();
    let limits = PluginLimits::default();
    plugin
        .run("evil", r#"{"mode": "panic"}"#, &limits, &mut snapshot)
        .expect_err("panics");
    plugin
        .run("evil", r#"{"mode": "ok"}"#, &limits, &mut snapshot)
        .expect("the next run gets a fresh instance");
}

#[test]
fn log_lines_are_capped() {
    let plugin = load("hostile-evil");
    let mut snapshot = small_snapshot();
    let report = plugin
        .run(
            "evil",
            r#"{"mode": "log-spam"}"#,
            &PluginLimits::default(),
            &mut snapshot,
        )
        .expect("log spam is not an error");
    assert_eq!(report.log.len(), 1000);
    assert_eq!(report.log_dropped, 4000);
}
