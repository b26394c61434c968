//! Sharing rules and filters on the real demo district. The expected roster is computed here,
//! from Clever's JSON, independently of the transform code.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use rosterflow_pipeline::config;
use rosterflow_pipeline::sync::RunOptions;
use serde_json::Value;

use crate::on_both_backends;
use crate::util::{Backend, TestDb, demo_records, repo};

const SHARED_SCHOOLS: [&str; 2] = ["5a25ff950a5f621109000004", "5a25ff950a5f621109000005"];
const SPECIALS: [&str; 2] = ["PE and health", "arts and music"];
const SPECIALS_NAME: &str = r"(?i)^(PE|Phys(ical)? Ed|Art|Music|Band|Chorus|Orchestra)\b";

fn ids(values: &Value) -> BTreeSet<String> {
    values
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// The roster the district expects: two schools shared whole, no specials.
struct Expected {
    classes: BTreeSet<String>,
    students: BTreeSet<String>,
    teachers: BTreeSet<String>,
}

fn expected() -> Expected {
    let sections = demo_records("sections");
    let users = demo_records("users");
    let special_name = Regex::new(SPECIALS_NAME).expect("pattern");
    let in_shared_school =
        |s: &&Value| SHARED_SCHOOLS.contains(&s["school"].as_str().unwrap_or(""));
    let shared: Vec<&Value> = sections.iter().filter(in_shared_school).collect();
    let kept: Vec<&Value> = shared
        .iter()
        .copied()
        .filter(|s| {
            !SPECIALS.contains(&s["subject"].as_str().unwrap_or(""))
                && !special_name.is_match(s["name"].as_str().unwrap_or(""))
        })
        .collect();
    let members = |sections: &[&Value], field: &str| -> BTreeSet<String> {
        sections.iter().flat_map(|s| ids(&s[field])).collect()
    };
    // Users with a primary school shared whole stay even with no section, unless every section
    // they had was a special (then they followed their sections out).
    let primary_in_shared: BTreeMap<String, (bool, bool)> = users
        .iter()
        .map(|u| {
            let roles = &u["roles"];
            let school = |role: &str| {
                roles[role]["school"]
                    .as_str()
                    .is_some_and(|s| SHARED_SCHOOLS.contains(&s))
            };
            (
                u["id"].as_str().expect("id").to_owned(),
                (school("student"), school("teacher")),
            )
        })
        .collect();
    let follow = |field: &str, is_role: fn(&(bool, bool)) -> bool| -> BTreeSet<String> {
        let had = members(&shared, field);
        let keeps = members(&kept, field);
        primary_in_shared
            .iter()
            .filter(|(id, school)| keeps.contains(*id) || (is_role(school) && !had.contains(*id)))
            .map(|(id, _)| id.clone())
            .collect()
    };
    Expected {
        classes: kept
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_owned())
            .collect(),
        students: follow("students", |(student, _)| *student),
        teachers: follow("teachers", |(_, teacher)| *teacher),
    }
}

async fn active(db: &TestDb, table: &str) -> BTreeSet<String> {
    db.rows(&format!(
        "SELECT source_id FROM {table} WHERE archived_at IS NULL"
    ))
    .await
    .into_iter()
    .collect()
}

fn specials_pipeline(db: &TestDb, extra: &str) -> config::Pipeline {
    let text = std::fs::read_to_string(repo().join("pipelines/demo-specials.toml"))
        .expect("demo-specials.toml")
        .replace(
            "dir = \"demo\"",
            &format!("dir = \"{}\"", repo().join("pipelines/demo").display()),
        );
    let path = db.dir.path().join("demo-specials.toml");
    std::fs::write(&path, format!("{text}\n{extra}\n")).expect("write pipeline");
    let env = BTreeMap::from([("FRECKLE_DB".to_owned(), db.url.clone())]);
    config::load(&path, &env).expect("a valid pipeline")
}

/// Two shared schools without PE, Art and Music load exactly the expected classes, students
/// and teachers.
async fn sharing_rules_and_filters_load_exactly_the_expected_roster(backend: Backend) {
    let db = TestDb::new(backend).await;
    let expected = expected();
    assert!(expected.classes.len() > 100 && expected.classes.len() < 292);
    let report = crate::util::run(&specials_pipeline(&db, ""), &RunOptions::default())
        .await
        .expect("run");
    assert_eq!(report.exit_code(), 0);
    assert_eq!(active(&db, "classes").await, expected.classes);
    assert_eq!(active(&db, "students").await, expected.students);
    assert_eq!(active(&db, "teachers").await, expected.teachers);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM schools").await, 3);
    // Every drop is recorded with the stage that made it.
    let authors: BTreeSet<String> = db
        .rows("SELECT DISTINCT author FROM sync_decisions")
        .await
        .into_iter()
        .collect();
    assert_eq!(
        authors,
        BTreeSet::from([
            "filter:specials".to_owned(),
            "sharing_rules:two-schools".to_owned()
        ])
    );
}

/// Records a rule drops after they were loaded are archived as filtered, never deleted, and
/// come back when the rule goes.
async fn records_dropped_by_a_rule_are_archived_as_filtered(backend: Backend) {
    let db = TestDb::new(backend).await;
    let everything = db.demo_pipeline();
    crate::util::run(&everything, &RunOptions::default())
        .await
        .expect("full load");
    let lenient = "[safety]\narchive_max_percent = 100\nupdate_max_percent = 100";
    let specials = specials_pipeline(&db, lenient);
    crate::util::run(&specials, &RunOptions::default())
        .await
        .expect("filtered load");
    let expected = expected();
    assert_eq!(active(&db, "classes").await, expected.classes);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM classes").await, 378);
    let reasons = db
        .rows("SELECT DISTINCT archived_reason FROM classes WHERE archived_at IS NOT NULL")
        .await;
    assert!(!reasons.is_empty());
    assert!(
        reasons.iter().all(|r| r.starts_with("filtered: ")),
        "{reasons:?}"
    );
    let authors = db
        .rows("SELECT DISTINCT author FROM sync_changes WHERE action = 'archive' AND entity = 'class'")
        .await;
    assert_eq!(authors.len(), 2, "{authors:?}");
    // The rule goes: everything is restored under the same ids.
    crate::util::run(&everything, &RunOptions::default())
        .await
        .expect("full load again");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM classes WHERE archived_at IS NULL")
            .await,
        378
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM classes").await, 378);
}

fn groups_pipeline(db: &TestDb, plugin: &str, config: &str) -> config::Pipeline {
    let text = format!(
        "[pipeline]\nname = \"groups\"\n\n[source]\n{}\n\n[[transform]]\ntype = \"plugin\"\n\
         name = \"{plugin}\"\npath = \"{}\"\ntimeout_ms = 1000\nmemory_mb = 64\n\n\
         [transform.config]\n{config}\n\n[load]\ndatabase = \"{}\"\n",
        crate::util::replay_source(&repo().join("pipelines/demo")),
        crate::plugins::plugin_wasm(plugin).display(),
        db.url
    );
    let path = db.dir.path().join("groups.toml");
    std::fs::write(&path, text).expect("write pipeline");
    config::load(&path, &BTreeMap::new()).expect("a valid pipeline")
}

/// A plugin's groups load as classes owned by the plugin, and `explain` names it.
async fn plugin_groups_load_and_explain_names_their_author(backend: Backend) {
    let db = TestDb::new(backend).await;
    let pipeline = groups_pipeline(
        &db,
        "flex-groups",
        "bands = [{ key = \"k2\", name = \"K-2 group\", grades = [\"Kindergarten\", \"1\", \"2\"], max_size = 12 }]",
    );
    crate::util::run(&pipeline, &RunOptions::default())
        .await
        .expect("run");
    let groups = db
        .rows("SELECT source_id FROM classes WHERE source = 'plugin:flex-groups' ORDER BY 1")
        .await;
    assert!(!groups.is_empty());
    assert!(
        groups
            .iter()
            .all(|g| g.starts_with("plugin:flex-groups:k2-"))
    );
    let member = db
        .rows(&format!(
            "SELECT s.source_id FROM class_students m JOIN students s ON s.id = m.student_id \
             JOIN classes c ON c.id = m.class_id WHERE c.source_id = '{}'",
            groups[0]
        ))
        .await;
    assert!(!member.is_empty() && member.len() <= 12);
    let handle = db.open().await;
    let district = "5a0c91b95c7cc000010d417c";
    let student = rosterflow_store::explain::explain(
        &handle,
        district,
        rosterflow_store::explain::Subject::Student,
        &member[0],
    )
    .await
    .expect("explain student");
    assert!(
        student
            .memberships
            .iter()
            .any(|m| m.other.starts_with(&groups[0]) && m.source == "plugin:flex-groups"),
        "{student}"
    );
    let group = rosterflow_store::explain::explain(
        &handle,
        district,
        rosterflow_store::explain::Subject::Class,
        &groups[0],
    )
    .await
    .expect("explain group");
    assert!(
        group.verdict().contains("created by plugin:flex-groups"),
        "{}",
        group.verdict()
    );
    // Unchanged input: the plugin's groups are stable, the rerun changes nothing.
    let report = crate::util::run(&pipeline, &RunOptions::default())
        .await
        .expect("rerun");
    assert!(report.plan.is_empty(), "{}", report.plan);
}

/// A plugin that loops or exhausts its memory fails the run within its limit, names itself and
/// the limit, and the DB is left exactly as it was.
async fn a_hostile_plugin_fails_the_run_and_loads_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let everything = db.demo_pipeline();
    crate::util::run(&everything, &RunOptions::default())
        .await
        .expect("load");
    let before = db.fingerprint().await;
    for (mode, limit) in [("loop", "1000 ms"), ("memory-bomb", "memory cap of 64 MB")] {
        let pipeline = groups_pipeline(&db, "hostile-evil", &format!("mode = \"{mode}\""));
        let error = crate::util::run(&pipeline, &RunOptions::default())
            .await
            .expect_err("the plugin fails the run");
        let message = rosterflow_model::error_chain(&error);
        assert!(
            message.contains("hostile-evil") && message.contains(limit),
            "{mode}: {message}"
        );
        assert_eq!(
            db.fingerprint().await,
            before,
            "{mode} left the DB as it was"
        );
    }
    assert_eq!(
        db.rows("SELECT status FROM sync_runs ORDER BY id").await,
        ["committed", "failed", "failed"]
    );
}

on_both_backends!(
    sharing_rules_and_filters_load_exactly_the_expected_roster,
    records_dropped_by_a_rule_are_archived_as_filtered,
    plugin_groups_load_and_explain_names_their_author,
    a_hostile_plugin_fails_the_run_and_loads_nothing,
);
