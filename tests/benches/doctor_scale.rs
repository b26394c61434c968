//! How fast `rosterflow doctor` checks a large district (target: a 1M-student district in well
//! under 30 s, README).
//!
//! `cargo bench -p rosterflow-tests --bench doctor_scale` builds the release `rosterflow` binary,
//! generates a district of this school year ([`generate`], 1M students by default), writes it as
//! a Clever recording and points a pipeline at it (`clever_replay`, with a specials filter, into
//! a SQLite Freckle DB in a temporary directory). Then, each as a child process:
//! 1. `doctor` before any run (the source and the transforms; no Freckle DB to read yet);
//! 2. `run`, a first sync (timed for comparison, not a doctor's target);
//! 3. `doctor` again, now also reading the district's live rows and quarantined records.
//!
//! Each line gives the wall time, the exit code and the findings' codes with their counts.
//! Times are never asserted: the bench exits 1 only when a command fails.
//!
//! Knobs: `ROSTERFLOW_BENCH_STUDENTS` (default `1000000`), `ROSTERFLOW_BENCH_BIN` (a
//! `rosterflow` binary to use instead of building the release one) and
//! `ROSTERFLOW_BENCH_VERBOSE` (set: each doctor's steps with their times, on stderr).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rosterflow_model::school_year::SchoolYear;
use rosterflow_tests::binary::{self, Profile};
use rosterflow_tests::district::{Collection, GenSpec, generate};

fn main() {
    let students: usize = std::env::var("ROSTERFLOW_BENCH_STUDENTS")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1_000_000);
    let bin = std::env::var_os("ROSTERFLOW_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| binary::rosterflow_bin(Profile::Release));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let verbose = std::env::var_os("ROSTERFLOW_BENCH_VERBOSE").is_some();
    let started = Instant::now();
    // This school year's district, so that its terms are current (as a district's are).
    let mut spec = GenSpec::new(students);
    spec.school_year = SchoolYear::of_day(chrono::Utc::now().date_naive()).start();
    let dataset = generate(spec);
    let district = dataset.ids(Collection::Districts)[0].clone();
    let sections = dataset.len(Collection::Sections);
    let recording = dir.path().join("recording");
    dataset
        .write_recording(&recording, 10_000)
        .expect("write the recording");
    drop(dataset);
    println!(
        "generated and recorded {students} students, {sections} sections in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let pipeline = dir.path().join("big.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"[pipeline]
name = "big"
district_id = "{district}"

[source]
type = "clever_replay"
dir = "{}"

[[transform]]
type = "filter"
name = "specials"
section_subjects = ["PE and health", "arts and music"]
section_name_patterns = ["(?i)^(PE|Art|Music|Band|Chorus)\\b"]

[load]
database = "sqlite://{}"
"#,
            recording.display(),
            dir.path().join("freckle.db").display()
        ),
    )
    .expect("write the pipeline");
    let mut failed = false;
    failed |= !doctor(
        &bin,
        &pipeline,
        students,
        "doctor, no Freckle DB yet",
        verbose,
    );
    let (code, seconds, _) = time(&bin, &["run", path(&pipeline)], false);
    println!("run (first sync, for comparison): {seconds:.1} s, exit {code}");
    failed |= !matches!(code, 0 | 1);
    failed |= !doctor(
        &bin,
        &pipeline,
        students,
        "doctor, after the first sync",
        verbose,
    );
    if failed {
        std::process::exit(1);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Runs `rosterflow ARGS`: (exit code, wall seconds, stdout). `verbose` shows its steps' times.
fn time(bin: &Path, args: &[&str], verbose: bool) -> (i32, f64, String) {
    let started = Instant::now();
    let output = Command::new(bin)
        .args(args)
        .env(
            "ROSTERFLOW_LOG",
            if verbose {
                "warn,rosterflow_pipeline=debug"
            } else {
                "warn"
            },
        )
        .output()
        .expect("run rosterflow");
    let seconds = started.elapsed().as_secs_f64();
    if !output.stderr.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
    }
    (
        output.status.code().unwrap_or(-1),
        seconds,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Times one `doctor`, prints its line; whether it worked (exit 0 or 1).
fn doctor(bin: &Path, pipeline: &Path, students: usize, what: &str, verbose: bool) -> bool {
    let (code, seconds, out) = time(
        bin,
        &["doctor", path(pipeline), "--format", "json"],
        verbose,
    );
    let found = serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|diagnosis| {
            Some(
                diagnosis["findings"]
                    .as_array()?
                    .iter()
                    .map(|f| format!("{} {}", f["code"].as_str().unwrap_or("?"), f["count"]))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
        .unwrap_or_else(|| "no diagnosis".to_owned());
    println!(
        "{what}: {students} students in {seconds:.1} s (target: under 30 s), exit {code}; found: {found}"
    );
    matches!(code, 0 | 1)
}
