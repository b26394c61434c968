//! The Freckle DB's storage failing under a run, through the binary: each run leaves the
//! database as it was before it (or after it), says why, and exits with the right code.

use rosterflow_tests::district::demo_dir;

use crate::util::{pipeline_text, replay_source, rosterflow};

/// A SQLite Freckle DB opened read-only (`?mode=ro`) is never written: a run fails, says why,
/// and leaves the database as it was.
#[test]
fn a_database_opened_read_only_is_never_written() {
    let work = tempfile::tempdir().expect("a directory");
    let file = work.path().join("freckle.db");
    let write = |name: &str, database: &str| {
        let path = work.path().join(format!("{name}.toml"));
        let text = pipeline_text(name, &replay_source(&demo_dir()), database, "").replacen(
            "[pipeline]\n",
            "[pipeline]\ndistrict_id = \"5a0c91b95c7cc000010d417c\"\n",
            1,
        );
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let writable = write("writable", &format!("sqlite://{}", file.display()));
    let read_only = write("read_only", &format!("sqlite://{}?mode=ro", file.display()));
    let (code, out, err) = rosterflow(&["run", &writable], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let before = std::fs::read(&file).expect("the database");
    let (code, out, err) = rosterflow(&["run", &read_only], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("readonly database"), "{err}");
    assert_eq!(
        std::fs::read(&file).expect("the database"),
        before,
        "unchanged"
    );
}

/// A database that cannot be reached: the run says so at once ("connection refused", not a pool
/// timeout), without the URL's password, and exits 2.
#[test]
fn an_unreachable_database_is_said_at_once() {
    let work = tempfile::tempdir().expect("a directory");
    let path = work.path().join("unreachable.toml");
    let text = pipeline_text(
        "unreachable",
        &replay_source(&demo_dir()),
        "postgres://u:secretpw@127.0.0.1:1/x",
        "",
    );
    std::fs::write(&path, text).expect("write");
    let started = std::time::Instant::now();
    let (code, out, err) = rosterflow(&["run", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!format!("{out}{err}").contains("secretpw"), "{out}{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
