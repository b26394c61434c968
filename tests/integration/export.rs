//! Parquet exports read back the way analysts read them: DuckDB and pyarrow
//! (`readback.py`), compared with what the Freckle DB holds. On SQLite and PostgreSQL (a fresh
//! database per test); the object-store and CLI paths on SQLite.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rosterflow_demo::{SeedOptions, seed_demo_practice};
use rosterflow_export::{self as export, Dataset, ExportConfig, ExportError};
use rosterflow_store::db::{Db, parse_timestamp};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::util::{Backend, TestDb, rosterflow};

const DISTRICT: &str = "d1000000000000000000000a";
const OTHER_DISTRICT: &str = "d2000000000000000000000b";
const NOW: &str = "2027-01-15T00:00:00.000000Z";
const PERIOD_START: &str = "2026-07-01T00:00:00.000000Z";
const PERIOD_END: &str = "2027-07-01T00:00:00.000000Z";

/// `2026-09-02T15:00` in the DB's text form.
fn ts(short: &str) -> String {
    match short.len() {
        10 => format!("{short}T00:00:00.000000Z"),
        16 => format!("{short}:00.000000Z"),
        _ => short.to_owned(),
    }
}

fn micros(short: &str) -> i64 {
    parse_timestamp(&ts(short))
        .expect("timestamp")
        .timestamp_micros()
}

async fn exec(db: &Db, sql: &'static str, params: &[&dyn Param]) {
    let mut query = sqlx::query(sql);
    for p in params {
        query = p.bind(query);
    }
    query
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

trait Param: Sync {
    fn bind<'q>(&self, query: Query<'q>) -> Query<'q>;
}

impl Param for i64 {
    fn bind<'q>(&self, query: Query<'q>) -> Query<'q> {
        query.bind(*self)
    }
}

impl Param for f64 {
    fn bind<'q>(&self, query: Query<'q>) -> Query<'q> {
        query.bind(*self)
    }
}

impl Param for &str {
    fn bind<'q>(&self, query: Query<'q>) -> Query<'q> {
        query.bind(self.to_string())
    }
}

impl Param for Option<String> {
    fn bind<'q>(&self, query: Query<'q>) -> Query<'q> {
        query.bind(self.clone())
    }
}

/// The fixture: two districts; in ours, a student who stays, one who transfers from Math 3A to
/// Math 3B mid-period, one archived, one who never practises, and a co-teacher who leaves.
async fn fill(db: &Db) {
    let now = ts("2026-07-01");
    let n = now.as_str();
    for (id, clever, name) in [
        (1i64, DISTRICT, "Maple Unified"),
        (2, OTHER_DISTRICT, "Elsewhere"),
    ] {
        exec(
            db,
            "INSERT INTO districts (id, key, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
            &[&id, &clever, &name, &n],
        )
        .await;
    }
    for (id, district, sis, name) in [
        (1i64, 1i64, "N1", "North Elementary"),
        (2, 1, "S1", "South Elementary"),
        (3, 2, "X1", "Other School"),
    ] {
        let clever = format!("5c{id:022x}");
        exec(
            db,
            "INSERT INTO schools (id, district_id, source_id, sis_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
            &[&id, &district, &clever.as_str(), &sis, &name, &n],
        )
        .await;
    }
    for (id, district, sis, first, last) in [
        (1i64, 1i64, "T1", "Ada", "Lovelace"),
        (2, 1, "T2", "Grace", "Hopper"),
        (3, 1, "T3", "Alan", "Turing"),
        (4, 1, "T4", "Edsger", "Dijkstra"),
        (9, 2, "T9", "Other", "Teacher"),
    ] {
        let clever = format!("5t{id:022x}");
        exec(
            db,
            "INSERT INTO teachers (id, district_id, source_id, sis_id, first_name, last_name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            &[&id, &district, &clever.as_str(), &sis, &first, &last, &n],
        )
        .await;
    }
    for (id, district, school, name, subject) in [
        (1i64, 1i64, 1i64, "Math 3A", "math"),
        (2, 1, 2, "Math 3B", "math"),
        (3, 1, 1, "ELA 3", "english/language arts"),
        (9, 2, 3, "Other Math", "math"),
    ] {
        let clever = format!("5k{id:022x}");
        exec(
            db,
            "INSERT INTO classes (id, district_id, source_id, sis_id, school_id, name, subject, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            &[&id, &district, &clever.as_str(), &clever.as_str(), &school, &name, &subject, &n],
        )
        .await;
    }
    for (class, teacher, role, from, to) in [
        (1i64, 1i64, "primary", "2026-08-01", None),
        (1, 2, "co", "2026-09-01", Some("2026-11-01")),
        (2, 3, "primary", "2026-08-01", None),
        (3, 4, "primary", "2026-08-01", None),
        (9, 9, "primary", "2026-08-01", None),
    ] {
        let (from, to) = (ts(from), to.map(ts));
        exec(
            db,
            "INSERT INTO class_teachers (class_id, teacher_id, role, started_at, ended_at) VALUES ($1, $2, $3, $4, $5)",
            &[&class, &teacher, &role, &from.as_str(), &to],
        )
        .await;
    }
    for (id, district, school, sis, archived) in [
        (1i64, 1i64, 1i64, "S-100", None),
        (2, 1, 2, "S-200", None),
        (3, 1, 1, "S-300", Some(ts("2026-12-01"))),
        (4, 1, 1, "S-400", None),
        (9, 2, 3, "S-900", None),
    ] {
        let clever = format!("5s{id:022x}");
        let (state, number) = (format!("ST{id}"), format!("N{id}"));
        exec(
            db,
            "INSERT INTO students (id, district_id, source_id, sis_id, state_id, student_number, grade, school_id, archived_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, '3', $7, $8, $9, $9)",
            &[&id, &district, &clever.as_str(), &sis, &state.as_str(), &number.as_str(), &school, &archived, &n],
        )
        .await;
    }
    for (class, student, from, to) in [
        (1i64, 1i64, "2026-08-01", None),
        (3, 1, "2026-08-01", None),
        (1, 2, "2026-08-20", Some("2026-10-15")),
        (2, 2, "2026-10-15", None),
        (3, 2, "2026-08-20", None),
        (2, 3, "2026-08-01", Some("2026-12-01")),
        (3, 4, "2026-08-01", None),
        (9, 9, "2026-08-01", None),
    ] {
        let (from, to) = (ts(from), to.map(ts));
        exec(
            db,
            "INSERT INTO class_students (class_id, student_id, started_at, ended_at) VALUES ($1, $2, $3, $4)",
            &[&class, &student, &from.as_str(), &to],
        )
        .await;
    }
    for (student, subject, domain, at, minutes, questions, correct) in [
        (
            1i64,
            "math",
            "Geometry",
            "2026-06-15T10:00",
            5i64,
            5i64,
            5i64,
        ), // before the period
        (1, "math", "Geometry", "2026-09-02T15:00", 12, 20, 15),
        (1, "math", "Geometry", "2026-10-05T15:30", 10, 10, 9),
        (1, "ela", "Vocabulary", "2026-09-03T09:00", 8, 12, 6),
        (2, "math", "Geometry", "2026-09-10T10:00", 15, 20, 10), // in Math 3A
        (2, "math", "Geometry", "2026-11-02T10:00", 20, 30, 27), // in Math 3B
        (
            2,
            "math",
            "Measurement & Data",
            "2026-10-20T10:00",
            9,
            10,
            7,
        ), // in Math 3B
        (3, "math", "Geometry", "2026-11-20T11:00", 10, 10, 5),
        (9, "math", "Geometry", "2026-09-10T10:00", 30, 40, 40), // another district
    ] {
        let at = ts(at);
        exec(
            db,
            "INSERT INTO practice_sessions (student_id, subject, domain, started_at, minutes, questions, correct, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $4)",
            &[&student, &subject, &domain, &at.as_str(), &minutes, &questions, &correct],
        )
        .await;
    }
    for (student, subject, domain, at, level) in [
        (1i64, "math", "Geometry", "2026-06-01", 2.5f64),
        (1, "math", "Geometry", "2026-09-30", 2.8),
        (1, "math", "Geometry", "2026-12-15", 3.1),
        (1, "ela", "Vocabulary", "2026-09-03", 3.0),
        (1, "ela", "Vocabulary", "2026-10-30", 3.4),
        (2, "math", "Geometry", "2026-05-01", 3.0),
        (2, "math", "Geometry", "2026-11-30", 3.6),
        (2, "ela", "Vocabulary", "2026-03-01", 2.0),
        (3, "math", "Geometry", "2026-08-15", 2.2),
        (9, "math", "Geometry", "2026-09-10", 4.0),
    ] {
        let at = ts(at);
        exec(
            db,
            "INSERT INTO domain_levels (student_id, subject, domain, measured_at, level) VALUES ($1, $2, $3, $4, $5)",
            &[&student, &subject, &domain, &at.as_str(), &level],
        )
        .await;
    }
}

fn readback(dir: &Path, sql: Option<&str>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/readback.py");
    let mut command = Command::new("python3");
    command.arg(&script).arg(dir);
    if let Some(sql) = sql {
        command.arg("--sql").arg(sql);
    }
    let output = command
        .output()
        .expect("python3 (with duckdb and pyarrow) on PATH");
    assert!(
        output.status.success(),
        "readback.py failed (pip install duckdb pyarrow):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("readback.py prints JSON")
}

fn config(dir: &Path) -> ExportConfig {
    ExportConfig {
        dir: dir.display().to_string(),
        school_year: Some("2026-27".into()),
        row_group_rows: 4,
        batch_rows: 3,
        ..ExportConfig::default()
    }
}

/// The export's clock (this binary names chrono's types only through rosterflow).
macro_rules! now {
    () => {
        parse_timestamp(NOW).expect("now")
    };
}

/// The growth rows the DB says there should be, keyed by (SIS id, subject, domain): sums of
/// the period's sessions and the starting and current levels, from the raw rows.
async fn expected_growth(db: &Db) -> BTreeMap<(String, String, String), Value> {
    use sqlx::Row;
    let (start, end) = (PERIOD_START.to_owned(), PERIOD_END.to_owned());
    let mut expected: BTreeMap<(String, String, String), Value> = BTreeMap::new();
    let sessions = sqlx::query(
        "SELECT s.sis_id, p.subject, p.domain, p.started_at, p.minutes, p.questions, p.correct \
         FROM practice_sessions p JOIN students s ON s.id = p.student_id \
         JOIN districts d ON d.id = s.district_id WHERE d.key = $1",
    )
    .bind(DISTRICT)
    .fetch_all(&db.pool)
    .await
    .expect("sessions");
    for row in sessions {
        let at: String = row.get(3);
        if at < start || at >= end {
            continue;
        }
        let key = (
            row.get::<String, _>(0),
            row.get::<String, _>(1),
            row.get::<String, _>(2),
        );
        let entry = expected.entry(key).or_insert_with(|| json!({"sessions": 0, "minutes": 0, "questions": 0, "correct": 0, "last_active_at": null, "starting_level": null, "current_level": null}));
        for (field, i) in [("minutes", 4), ("questions", 5), ("correct", 6)] {
            entry[field] = json!(entry[field].as_i64().unwrap() + row.get::<i64, _>(i));
        }
        entry["sessions"] = json!(entry["sessions"].as_i64().unwrap() + 1);
        let micros = parse_timestamp(&at).unwrap().timestamp_micros();
        if entry["last_active_at"]
            .as_i64()
            .is_none_or(|last| last < micros)
        {
            entry["last_active_at"] = json!(micros);
        }
    }
    let levels = sqlx::query(
        "SELECT s.sis_id, l.subject, l.domain, l.measured_at, l.level \
         FROM domain_levels l JOIN students s ON s.id = l.student_id \
         JOIN districts d ON d.id = s.district_id WHERE d.key = $1 ORDER BY l.measured_at",
    )
    .bind(DISTRICT)
    .fetch_all(&db.pool)
    .await
    .expect("levels");
    let mut baseline: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for row in levels {
        let at: String = row.get(3);
        if at >= end {
            continue;
        }
        let key = (
            row.get::<String, _>(0),
            row.get::<String, _>(1),
            row.get::<String, _>(2),
        );
        let level: f64 = row.get(4);
        if at <= start {
            baseline.insert(key.clone(), level);
        }
        let entry = expected.entry(key).or_insert_with(|| json!({"sessions": 0, "minutes": 0, "questions": 0, "correct": 0, "last_active_at": null, "starting_level": null, "current_level": null}));
        if entry["starting_level"].is_null() {
            entry["starting_level"] = json!(level);
        }
        entry["current_level"] = json!(level);
    }
    for (key, level) in baseline {
        expected.get_mut(&key).unwrap()["starting_level"] = json!(level);
    }
    expected
}

fn rows_by_key(rows: &Value) -> BTreeMap<(String, String, String), Value> {
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let key = (
                r["student_sis_id"].as_str().unwrap().to_owned(),
                r["subject"].as_str().unwrap().to_owned(),
                r["domain"].as_str().unwrap().to_owned(),
            );
            (key, r.clone())
        })
        .collect()
}

async fn export_matches_the_db_in_duckdb_and_pyarrow(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    fill(&db).await;
    let out = tempfile::tempdir().expect("out dir");
    let report = export::run(&db, DISTRICT, &config(out.path()), now!())
        .await
        .expect("export");
    assert_eq!(report.school_year, "2026-27");
    assert_eq!(report.files.len(), 2);
    let back = readback(out.path(), None);

    // Hive paths, and nothing else left behind (no temp files).
    let partition = format!("district={DISTRICT}/school_year=2026-27");
    assert_eq!(
        back["files"],
        json!([
            format!("growth/{partition}/growth.parquet"),
            format!("roster_history/{partition}/roster_history.parquet"),
        ]),
        "{backend:?}"
    );

    // Growth: the same numbers as the raw rows, through both readers.
    let growth = &back["datasets"]["growth"];
    let expected = expected_growth(&db).await;
    assert_eq!(expected.len(), 6, "fixture: six growth rows");
    for reader in ["duckdb_rows", "pyarrow_rows"] {
        let rows = rows_by_key(&growth[reader]);
        assert_eq!(
            rows.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{backend:?} {reader}: one row per student, subject and domain, only our district"
        );
        for (key, want) in &expected {
            let got = &rows[key];
            for field in [
                "sessions",
                "minutes",
                "questions",
                "correct",
                "last_active_at",
            ] {
                assert_eq!(
                    got[field], want[field],
                    "{backend:?} {reader} {key:?} {field}"
                );
            }
            for field in ["starting_level", "current_level"] {
                match (got[field].as_f64(), want[field].as_f64()) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{key:?} {field}"),
                    (a, b) => assert_eq!(a, b, "{backend:?} {reader} {key:?} {field}"),
                }
            }
            let accuracy = got["accuracy"].as_f64();
            let questions = want["questions"].as_i64().unwrap();
            if questions == 0 {
                assert_eq!(accuracy, None);
            } else {
                let want = want["correct"].as_i64().unwrap() as f64 / questions as f64;
                assert!((accuracy.unwrap() - want).abs() < 1e-9);
            }
            assert_eq!(got["period_start"], json!(micros(PERIOD_START)));
            assert_eq!(got["period_end"], json!(micros(PERIOD_END)));
            assert_eq!(got["district_name"], json!("Maple Unified"));
        }
        // Current teachers at the export's "now": the transferred student's are Math 3B's.
        let teachers = |sis: &str, subject: &str, domain: &str| {
            rows[&(sis.to_owned(), subject.to_owned(), domain.to_owned())]["teacher_sis_ids"]
                .clone()
        };
        assert_eq!(teachers("S-100", "math", "Geometry"), json!("T1"));
        assert_eq!(teachers("S-100", "ela", "Vocabulary"), json!("T4"));
        assert_eq!(teachers("S-200", "math", "Geometry"), json!("T3"));
        assert_eq!(teachers("S-300", "math", "Geometry"), Value::Null);
        let archived = &rows[&("S-300".into(), "math".into(), "Geometry".into())];
        assert_eq!(archived["student_archived_at"], json!(micros("2026-12-01")));
        let s1 = &rows[&("S-100".into(), "math".into(), "Geometry".into())];
        assert_eq!(s1["school_name"], json!("North Elementary"));
        assert!((s1["level_growth"].as_f64().unwrap() - 0.6).abs() < 1e-9);
    }
    // Hive partition columns come from the paths.
    let first = &growth["duckdb_rows"][0];
    assert_eq!(first["district"], json!(DISTRICT));
    assert_eq!(first["school_year"], json!("2026-27"));

    // Types BI tools want: µs UTC timestamps, dictionary strings, zstd everywhere.
    let types = &growth["pyarrow_types"];
    assert_eq!(types["last_active_at"], json!("timestamp[us, tz=UTC]"));
    assert_eq!(
        types["school_name"],
        json!("dictionary<values=string, indices=int32, ordered=0>")
    );
    assert_eq!(types["student_sis_id"], json!("string"));
    assert_eq!(types["sessions"], json!("int64"));
    assert_eq!(
        growth["duckdb_types"]["last_active_at"],
        json!("TIMESTAMP WITH TIME ZONE")
    );
    let parquet = &growth["parquet"];
    assert_eq!(parquet["rows"], json!(6));
    assert_eq!(parquet["row_groups"], json!(2), "row_group_rows = 4");
    for (name, column) in parquet["columns"].as_object().unwrap() {
        assert_eq!(column["compression"], json!(["ZSTD"]), "{name}");
        // Low-cardinality strings are dictionary-encoded; ids are PLAIN (nearly unique).
        let dictionary = types[name]
            .as_str()
            .is_some_and(|t| t.starts_with("dictionary"));
        if dictionary || types[name] == json!("string") {
            assert_eq!(
                column["dictionary_page"],
                json!(dictionary),
                "{name}: dictionary page only for dictionary columns"
            );
        }
    }

    // Roster history: every stay x teacher stay, intersected; archived students included.
    let history = &back["datasets"]["roster_history"];
    let mut stays: Vec<Stay> = history["duckdb_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["student_sis_id"].as_str().unwrap().to_owned(),
                r["class_name"].as_str().unwrap().to_owned(),
                r["teacher_sis_id"].as_str().map(str::to_owned),
                r["valid_from"].as_i64().unwrap(),
                r["valid_to"].as_i64(),
            )
        })
        .collect();
    stays.sort();
    let stay = |s: &str, c: &str, t: &str, from: &str, to: Option<&str>| {
        (
            s.to_owned(),
            c.to_owned(),
            Some(t.to_owned()),
            micros(from),
            to.map(micros),
        )
    };
    let mut want = vec![
        stay("S-100", "ELA 3", "T4", "2026-08-01", None),
        stay("S-100", "Math 3A", "T1", "2026-08-01", None),
        stay("S-100", "Math 3A", "T2", "2026-09-01", Some("2026-11-01")),
        stay("S-200", "ELA 3", "T4", "2026-08-20", None),
        stay("S-200", "Math 3A", "T1", "2026-08-20", Some("2026-10-15")),
        stay("S-200", "Math 3A", "T2", "2026-09-01", Some("2026-10-15")),
        stay("S-200", "Math 3B", "T3", "2026-10-15", None),
        stay("S-300", "Math 3B", "T3", "2026-08-01", Some("2026-12-01")),
        stay("S-400", "ELA 3", "T4", "2026-08-01", None),
    ];
    want.sort();
    assert_eq!(stays, want, "{backend:?}");
    assert_eq!(
        history["pyarrow_rows"].as_array().unwrap().len(),
        want.len()
    );
    assert_eq!(
        history["pyarrow_types"]["valid_from"],
        json!("timestamp[us, tz=UTC]")
    );

    // The transfer stays attributable: joined with the roster history in DuckDB, the mover's
    // math sessions split between Math 3A and Math 3B over their valid ranges, as in the DB.
    let split = readback(
        out.path(),
        Some(&format!(
            "SELECT r.class_name, count(*) AS n FROM growth g \
             JOIN roster_history r USING (student_sis_id) \
             JOIN (SELECT * FROM (VALUES {})) AS s(sis, started) ON s.sis = g.student_sis_id \
             WHERE g.subject = 'math' AND g.domain = 'Geometry' AND r.class_subject = 'math' \
               AND r.teacher_role = 'primary' \
               AND s.started >= r.valid_from AND (r.valid_to IS NULL OR s.started < r.valid_to) \
             GROUP BY r.class_name ORDER BY r.class_name",
            mover_sessions(&db).await
        )),
    );
    assert_eq!(
        split,
        json!([{"class_name": "Math 3A", "n": 1}, {"class_name": "Math 3B", "n": 1}]),
        "{backend:?}"
    );
}

/// (student SIS id, class name, teacher SIS id, valid_from, valid_to) of a roster history row.
type Stay = (String, String, Option<String>, i64, Option<i64>);

/// The transferred student's Geometry sessions in the period, from the DB, as DuckDB VALUES.
async fn mover_sessions(db: &Db) -> String {
    let at: Vec<String> = sqlx::query_scalar(
        "SELECT p.started_at FROM practice_sessions p JOIN students s ON s.id = p.student_id \
         WHERE s.sis_id = 'S-200' AND p.domain = 'Geometry' AND p.started_at >= $1",
    )
    .bind(PERIOD_START)
    .fetch_all(&db.pool)
    .await
    .expect("mover sessions");
    assert_eq!(at.len(), 2);
    at.iter()
        .map(|t| format!("('S-200', TIMESTAMPTZ '{t}')"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn export_writes_only_allowed_columns(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    fill(&db).await;
    let out = tempfile::tempdir().expect("out dir");
    let mut config = config(out.path());
    config.columns = Some(
        [
            "student_sis_id",
            "subject",
            "domain",
            "sessions",
            "class_name",
            "valid_from",
        ]
        .map(String::from)
        .to_vec(),
    );
    let report = export::run(&db, DISTRICT, &config, now!())
        .await
        .expect("export");
    assert_eq!(
        report.files[0].columns,
        ["student_sis_id", "subject", "domain", "sessions"]
    );
    let back = readback(out.path(), None);
    let names = |dataset: &str| {
        back["datasets"][dataset]["pyarrow_types"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut growth = names("growth");
    growth.sort();
    assert_eq!(growth, ["domain", "sessions", "student_sis_id", "subject"]);
    let mut history = names("roster_history");
    history.sort();
    assert_eq!(history, ["class_name", "student_sis_id", "valid_from"]);

    // Unknown names are refused before anything is written.
    config.columns = Some(vec!["student_first_name".into()]);
    let error = export::run(&db, DISTRICT, &config, now!())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ExportError::InvalidConfig { problems } if problems[0].contains("student_first_name")),
        "{error}"
    );
}

#[tokio::test]
async fn export_to_an_object_store_url_and_from_in_memory_sqlite() {
    // The object-store path (put of the finished file) through a file:// URL, reading an
    // in-memory SQLite DB through the pool: the same rows as a plain export of a file DB.
    let test_db = TestDb::new(Backend::Sqlite).await;
    let file_db = test_db.open().await;
    fill(&file_db).await;
    let plain = tempfile::tempdir().expect("plain dir");
    export::run(&file_db, DISTRICT, &config(plain.path()), now!())
        .await
        .expect("plain export");

    let memory_db = Db::open("sqlite::memory:").await.expect("in-memory DB");
    fill(&memory_db).await;
    let store = tempfile::tempdir().expect("store dir");
    let mut config = config(store.path());
    config.dir = format!("file://{}/exports", store.path().display());
    let report = export::run(&memory_db, DISTRICT, &config, now!())
        .await
        .expect("object-store export");
    assert!(
        report.files[0].location.starts_with("file://"),
        "{:?}",
        report.files
    );

    let a = readback(plain.path(), None);
    let b = readback(&store.path().join("exports"), None);
    assert_eq!(
        a["files"], b["files"],
        "same Hive layout, no staging files left"
    );
    for dataset in ["growth", "roster_history"] {
        assert_eq!(
            a["datasets"][dataset]["duckdb_rows"], b["datasets"][dataset]["duckdb_rows"],
            "{dataset}"
        );
    }
}

/// An S3-compatible server on loopback (tests/integration/s3_server.py, moto) with one bucket.
/// Killed when dropped.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
    bucket: &'static str,
}

impl S3Server {
    fn script() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/s3_server.py")
    }

    fn start(bucket: &'static str) -> S3Server {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .arg(Self::script())
            .args(["serve", "--bucket", bucket])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 on PATH");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the server's port");
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            panic!(
                "the S3 server did not start (printed {line:?}); it needs moto: \
                 `pip install 'moto[server]'`"
            );
        };
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket,
        }
    }

    /// The `[export.storage_options]` a pipeline gives for this server.
    fn storage_options(&self) -> String {
        format!(
            "aws_endpoint = \"{}\"\naws_allow_http = \"true\"\naws_region = \"us-east-1\"\n",
            self.endpoint
        )
    }

    /// The credentials, from the environment as in production (moto accepts any).
    const CREDENTIALS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "rosterflow-test"),
        ("AWS_SECRET_ACCESS_KEY", "rosterflow-test-secret"),
    ];

    /// Downloads every object of the bucket into `dir`.
    fn fetch(&self, dir: &Path) {
        let output = Command::new("python3")
            .arg(Self::script())
            .args([
                "fetch",
                "--bucket",
                self.bucket,
                "--endpoint",
                &self.endpoint,
            ])
            .arg("--dir")
            .arg(dir)
            .output()
            .expect("python3 on PATH");
        assert!(
            output.status.success(),
            "s3_server.py fetch failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rosterflow export` of `database` to `dir`, through a pipeline file of its own with
/// `storage_options` (TOML lines), and the S3 credentials in the environment.
fn rosterflow_export(database: &str, dir: &str, storage_options: &str) -> (i32, String, String) {
    let at = tempfile::tempdir().expect("pipeline dir");
    let pipeline = at.path().join("pipeline.toml");
    let demo = crate::util::repo().join("pipelines/demo");
    std::fs::write(
        &pipeline,
        format!(
            "[pipeline]\nname = \"export\"\ndistrict_id = \"{DISTRICT}\"\n\n\
             [source]\ntype = \"clever_replay\"\ndir = \"{}\"\n\n\
             [load]\ndatabase = \"{database}\"\n\n\
             [export]\ndir = \"{dir}\"\nschool_year = \"2026-27\"\n\n\
             [export.storage_options]\n{storage_options}",
            demo.display()
        ),
    )
    .expect("write the pipeline");
    rosterflow(
        &["export", &pipeline.display().to_string()],
        &S3Server::CREDENTIALS,
    )
}

#[tokio::test]
async fn rosterflow_export_to_s3_writes_the_same_files_as_a_local_export() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    fill(&test_db.open().await).await;
    let local = tempfile::tempdir().expect("local dir");
    let local_dir = local.path().join("out");
    let (code, _, stderr) = rosterflow_export(&test_db.url, &local_dir.display().to_string(), "");
    assert_eq!(code, 0, "{stderr}");

    let server = S3Server::start("district-exports");
    let (code, stdout, stderr) = rosterflow_export(
        &test_db.url,
        "s3://district-exports/freckle",
        &server.storage_options(),
    );
    assert_eq!(code, 0, "{stderr}");
    let partition = format!("district={DISTRICT}/school_year=2026-27");
    assert!(
        stdout.contains(&format!(
            "s3://district-exports/freckle/growth/{partition}/growth.parquet"
        )),
        "{stdout}"
    );

    // Everything in the bucket, read back like the local export: the same layout (so nothing
    // staged is left behind) and the same rows.
    let fetched = tempfile::tempdir().expect("fetch dir");
    server.fetch(fetched.path());
    let a = readback(&local_dir, None);
    let b = readback(&fetched.path().join("freckle"), None);
    assert_eq!(a["files"], b["files"]);
    for dataset in ["growth", "roster_history"] {
        assert_eq!(
            a["datasets"][dataset]["duckdb_rows"], b["datasets"][dataset]["duckdb_rows"],
            "{dataset}"
        );
    }
}

#[tokio::test]
async fn a_refused_upload_fails_the_export_without_panicking() {
    // The store refuses the put (no such bucket): the export fails naming the destination.
    let test_db = TestDb::new(Backend::Sqlite).await;
    fill(&test_db.open().await).await;
    let server = S3Server::start("district-exports");
    let (code, _, stderr) = rosterflow_export(
        &test_db.url,
        "s3://no-such-bucket/freckle",
        &server.storage_options(),
    );
    assert_eq!(code, 2, "a failed export, not a panic: {stderr}");
    assert!(stderr.contains("s3://no-such-bucket/freckle"), "{stderr}");
    assert!(
        stderr.contains("NoSuchBucket"),
        "the store's answer: {stderr}"
    );
}

async fn demo_practice_is_deterministic_and_grows(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.open().await;
    fill(&db).await;
    // Only the seeder's practice in our district (the other district keeps its own).
    exec(
        &db,
        "DELETE FROM practice_sessions WHERE student_id < 9",
        &[],
    )
    .await;
    exec(&db, "DELETE FROM domain_levels WHERE student_id < 9", &[]).await;
    let options = SeedOptions::ending_at(now!());
    let first = seed_demo_practice(&db, DISTRICT, &options)
        .await
        .expect("seed");
    assert_eq!(first.students, 3, "archived students get no demo practice");
    assert_eq!(first.sessions, 3 * 2 * 8 * 3);
    let fingerprint = test_db
        .rows("SELECT student_id, subject, domain, started_at, minutes, questions, correct FROM practice_sessions WHERE source = 'demo' ORDER BY 1, 2, 3, 4")
        .await;
    let again = seed_demo_practice(&db, DISTRICT, &options)
        .await
        .expect("seed again");
    assert_eq!(again.replaced, first.sessions + first.levels);
    assert_eq!(
        fingerprint,
        test_db
            .rows("SELECT student_id, subject, domain, started_at, minutes, questions, correct FROM practice_sessions WHERE source = 'demo' ORDER BY 1, 2, 3, 4")
            .await
    );
    // The other district's data is untouched.
    assert_eq!(
        test_db
            .scalar("SELECT COUNT(*) FROM practice_sessions WHERE student_id = 9")
            .await,
        1
    );

    let out = tempfile::tempdir().expect("out dir");
    export::run(&db, DISTRICT, &config(out.path()), now!())
        .await
        .expect("export");
    let back = readback(
        out.path(),
        Some(
            "SELECT student_sis_id, count(*) AS domains, \
                    bool_and(current_level >= starting_level) AS grew \
             FROM growth WHERE sessions > 0 GROUP BY 1 ORDER BY 1",
        ),
    );
    let rows = back.as_array().unwrap();
    assert_eq!(rows.len(), 3, "every student but the archived one");
    for row in rows {
        assert_eq!(row["domains"], json!(10), "{row}");
        assert_eq!(row["grew"], json!(true), "{row}");
    }
}

#[tokio::test]
async fn export_of_an_unknown_district_fails_cleanly() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = test_db.open().await;
    let out = tempfile::tempdir().expect("out dir");
    let error = export::run(&db, "ffffffffffffffffffffffff", &config(out.path()), now!())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ExportError::UnknownDistrict { .. }),
        "{error}"
    );
    let left: Vec<_> = walk(out.path());
    assert!(left.is_empty(), "nothing written: {left:?}");
    let _ = Dataset::ALL;
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

on_both_backends!(
    export_matches_the_db_in_duckdb_and_pyarrow,
    export_writes_only_allowed_columns,
    demo_practice_is_deterministic_and_grows,
);
