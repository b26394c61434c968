//! How fast the growth export is at district scale: 1M students x 10 domains (10M growth rows)
//! from a SQLite Freckle DB, with the peak memory it takes.
//!
//! `cargo bench -p rosterflow-export --bench export_speed` (release). Each dataset is exported several
//! times; the target is a median of 15 s for the growth file, and the bench exits non-zero above
//! it. Seeding the DB (10M sessions, 10M level measurements, a roster) is timed separately.
//! Knobs: `ROSTERFLOW_BENCH_STUDENTS` (default 1000000), `ROSTERFLOW_BENCH_RUNS` (default 3),
//! `ROSTERFLOW_BENCH_DB` (a path: seed once, reuse on later runs).

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use rosterflow_export::{self as export, Dataset, ExportConfig};
use rosterflow_store::db::Db;

const DOMAINS: i64 = 10;
const BUDGET: Duration = Duration::from_secs(15);
const DISTRICT: &str = "5f0000000000000000000001";

fn main() {
    let students: i64 = std::env::var("ROSTERFLOW_BENCH_STUDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("ROSTERFLOW_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&runs| runs > 0)
        .unwrap_or(3);
    let scratch = tempfile::tempdir().expect("temp dir");
    let db_path = std::env::var("ROSTERFLOW_BENCH_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| scratch.path().join("bench.db"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let fresh = !db_path.exists();
        let db = Db::open(&format!("sqlite://{}", db_path.display()))
            .await
            .expect("open the bench DB");
        if fresh {
            let started = Instant::now();
            seed(&db, students).await;
            println!(
                "seed: {students} students, {} sessions, {} level measurements in {:.1} s",
                students * DOMAINS,
                students * DOMAINS,
                started.elapsed().as_secs_f64()
            );
        } else {
            println!("seed: reusing {}", db_path.display());
        }
        db.pool.close().await;
        let db = Db::open(&format!("sqlite://{}", db_path.display()))
            .await
            .expect("reopen the bench DB");

        let now = Utc.with_ymd_and_hms(2027, 6, 30, 12, 0, 0).unwrap();
        let mut failed = false;
        for dataset in [Dataset::Growth, Dataset::RosterHistory] {
            let config = ExportConfig {
                dir: scratch.path().join("out").display().to_string(),
                datasets: vec![dataset],
                school_year: Some("2026-27".into()),
                ..ExportConfig::default()
            };
            let mut times = Vec::new();
            for run in 1..=runs {
                reset_peak_rss();
                let started = Instant::now();
                let report = export::run(&db, DISTRICT, &config, now)
                    .await
                    .expect("export");
                let elapsed = started.elapsed();
                let file = &report.files[0];
                println!(
                    "export {dataset} run {run}: {} rows, {:.1} MB in {:.2} s ({:.2} M rows/s), peak RSS {} MB",
                    file.rows,
                    file.bytes as f64 / 1e6,
                    elapsed.as_secs_f64(),
                    file.rows as f64 / elapsed.as_secs_f64() / 1e6,
                    peak_rss_kb() / 1024,
                );
                if dataset == Dataset::Growth {
                    assert_eq!(file.rows, (students * DOMAINS) as u64, "every growth row");
                }
                times.push(elapsed);
            }
            times.sort();
            // The middle run (of an even count, the slower of the two middle ones).
            let median = times[times.len() / 2];
            println!(
                "export {dataset}: median {:.2} s of {runs} (min {:.2} s, max {:.2} s)",
                median.as_secs_f64(),
                times[0].as_secs_f64(),
                times[times.len() - 1].as_secs_f64(),
            );
            if dataset == Dataset::Growth && median > BUDGET {
                println!("growth export over its {} s budget", BUDGET.as_secs());
                failed = true;
            }
        }
        if failed {
            std::process::exit(1);
        }
    });
}

/// A district of `students` students in 40 schools, classes of 25 with one teacher each, and per
/// student and domain one practice session and one level measurement in 2026-27 plus a baseline
/// before it (for half the domains): inserted by SQLite itself, as fast as it goes.
async fn seed(db: &Db, students: i64) {
    let now = "2026-07-01T00:00:00.000000Z";
    let statements = [
        format!(
            "INSERT INTO districts (id, source_id, name, created_at, updated_at) \
             VALUES (1, '{DISTRICT}', 'Bench District', '{now}', '{now}')"
        ),
        format!(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 40) \
             INSERT INTO schools (id, district_id, source_id, sis_id, name, created_at, updated_at) \
             SELECT x, 1, printf('5c%022x', x), 'SCH' || x, 'School ' || x, '{now}', '{now}' FROM n"
        ),
        format!(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {students}) \
             INSERT INTO students (id, district_id, source_id, sis_id, state_id, student_number, grade, school_id, created_at, updated_at) \
             SELECT x, 1, printf('5s%022x', x), 'S' || x, 'ST' || x, 'N' || x, '' || (x % 6), 1 + x % 40, '{now}', '{now}' FROM n"
        ),
        format!(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {students} / 25 + 1) \
             INSERT INTO teachers (id, district_id, source_id, sis_id, first_name, last_name, school_id, created_at, updated_at) \
             SELECT x, 1, printf('5t%022x', x), 'T' || x, 'Pat', 'Teacher' || x, 1 + x % 40, '{now}', '{now}' FROM n"
        ),
        format!(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {students} / 25 + 1) \
             INSERT INTO classes (id, district_id, source_id, sis_id, school_id, name, subject, grade, created_at, updated_at) \
             SELECT x, 1, printf('5k%022x', x), 'C' || x, 1 + x % 40, 'Math ' || x, 'math', '3', '{now}', '{now}' FROM n"
        ),
        format!(
            "INSERT INTO class_teachers (class_id, teacher_id, role, started_at) \
             SELECT id, id, 'primary', '{now}' FROM classes"
        ),
        format!(
            "INSERT INTO class_students (class_id, student_id, started_at) \
             SELECT 1 + id / 25, id, '{now}' FROM students"
        ),
        format!(
            "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < {students} * {DOMAINS} - 1) \
             INSERT INTO practice_sessions (student_id, subject, domain, started_at, minutes, questions, correct, source, created_at) \
             SELECT 1 + x / {DOMAINS}, CASE WHEN x % {DOMAINS} < 5 THEN 'math' ELSE 'ela' END, 'Domain ' || (x % {DOMAINS}), \
                    printf('2026-%02d-%02dT%02d:15:00.000000Z', 9 + x % 4, 1 + x % 28, 8 + x % 8), \
                    5 + x % 20, 10 + x % 10, 5 + x % 6, 'demo', '{now}' FROM n"
        ),
        format!(
            "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < {students} * {DOMAINS} - 1) \
             INSERT INTO domain_levels (student_id, subject, domain, level, measured_at, source) \
             SELECT 1 + x / {DOMAINS}, CASE WHEN x % {DOMAINS} < 5 THEN 'math' ELSE 'ela' END, 'Domain ' || (x % {DOMAINS}), \
                    2.0 + (x % 30) / 10.0, printf('2026-%02d-15T00:00:00.000000Z', 10 + x % 3), 'demo' FROM n"
        ),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    sqlx::query("ANALYZE")
        .execute(&db.pool)
        .await
        .expect("analyze");
}

/// Starts a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
