//! A [`Diagnosis`] shown four ways: a table for a terminal, JSON (the fields documented in the
//! README), CSV for a spreadsheet (one row per example, every cell defused with
//! [`rosterflow_model::spreadsheet_cell`]), and a text ready to send to whoever runs the source (the Clever or
//! OneRoster admin), listing only what is fixed at the source.

use std::fmt::Write as _;

use super::{Diagnosis, Example, Finding, Fixer};
use rosterflow_model::{SourceKind, spreadsheet_row, text_table};

/// The diagnosis as pretty JSON (see the README for its fields).
pub fn json(diagnosis: &Diagnosis) -> String {
    serde_json::to_string_pretty(diagnosis).expect("a diagnosis serialises")
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 11] = [
    "code",
    "about",
    "fixer",
    "count",
    "summary",
    "fix",
    "example_kind",
    "example_name",
    "example_sis_id",
    "example_source_id",
    "example_detail",
];

/// The findings as CSV: one row per example (a finding without examples has one row with empty
/// example cells). Every text cell is defused for spreadsheets.
pub fn write_csv(diagnosis: &Diagnosis, out: impl std::io::Write) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(CSV_COLUMNS)?;
    for finding in &diagnosis.findings {
        let count = finding.count.to_string();
        let head = [
            finding.code,
            finding.about.as_deref().unwrap_or_default(),
            finding.fixer.as_str(),
            &count,
            &finding.summary,
            &finding.fix,
        ];
        let none = Example {
            kind: String::new(),
            name: String::new(),
            sis_id: None,
            source_id: None,
            detail: None,
        };
        let examples: Vec<&Example> = if finding.examples.is_empty() {
            vec![&none]
        } else {
            finding.examples.iter().collect()
        };
        for example in examples {
            let tail = [
                example.kind.as_str(),
                &example.name,
                example.sis_id.as_deref().unwrap_or_default(),
                example.source_id.as_deref().unwrap_or_default(),
                example.detail.as_deref().unwrap_or_default(),
            ];
            let cells = spreadsheet_row(head.iter().chain(&tail).copied());
            writer.write_record(cells.iter().map(|cell| cell.as_bytes()))?;
        }
    }
    writer.flush()?;
    Ok(())
}

/// An example on one line: `student Ann Lee (SIS id 1234, Clever id 5a...): detail`.
fn example_line(example: &Example, source: SourceKind) -> String {
    let mut ids = Vec::new();
    if let Some(sis_id) = &example.sis_id {
        ids.push(format!("SIS id {sis_id}"));
    }
    if let Some(id) = &example.source_id {
        ids.push(format!("{} {id}", source.id_name()));
    }
    let mut line = example.kind.clone();
    if !example.name.is_empty() {
        line.push(' ');
        line.push_str(&example.name);
    }
    if !ids.is_empty() {
        let _ = write!(line, " ({})", ids.join(", "));
    }
    if let Some(detail) = &example.detail {
        let _ = write!(line, ": {detail}");
    }
    line
}

fn heading(diagnosis: &Diagnosis) -> String {
    let roster = &diagnosis.roster;
    format!(
        "{} (district {}, from {}), pipeline {}, {} (school year {})\nroster after transforms: {} schools, {} sections, {} students, {} teachers\n",
        diagnosis.district.name,
        diagnosis.district.key,
        diagnosis.district.source.name(),
        diagnosis.pipeline,
        diagnosis.today,
        diagnosis.school_year,
        roster.schools,
        roster.sections,
        roster.students,
        roster.teachers,
    )
}

/// The diagnosis as a table, then each finding's examples and fix.
pub fn table(diagnosis: &Diagnosis) -> String {
    let mut out = heading(diagnosis);
    out.push('\n');
    if diagnosis.findings.is_empty() {
        out.push_str("nothing found\n");
    } else {
        let rows: Vec<[String; 5]> = diagnosis
            .findings
            .iter()
            .enumerate()
            .map(|(number, finding)| {
                [
                    (number + 1).to_string(),
                    finding.count.to_string(),
                    finding.code.to_owned(),
                    finding.fixer.as_str().to_owned(),
                    finding.summary.clone(),
                ]
            })
            .collect();
        out.push_str(&text_table(
            ["#", "COUNT", "FINDING", "WHO FIXES", "WHAT"],
            &rows,
            [true, true, false, false, false],
        ));
        for (number, finding) in diagnosis.findings.iter().enumerate() {
            let _ = writeln!(
                out,
                "\n{}. {}: {}",
                number + 1,
                finding.code,
                finding.summary
            );
            for example in &finding.examples {
                let _ = writeln!(
                    out,
                    "   - {}",
                    example_line(example, diagnosis.district.source)
                );
            }
            if finding.count > finding.examples.len() && !finding.examples.is_empty() {
                let _ = writeln!(
                    out,
                    "   - and {} more",
                    finding.count - finding.examples.len()
                );
            }
            let _ = writeln!(out, "   fix ({}): {}", finding.fixer, finding.fix);
        }
    }
    for note in &diagnosis.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    out
}

/// Where a fix at the source is made, as the admin reads it.
fn where_fixed(fixer: Fixer) -> &'static str {
    match fixer {
        Fixer::Sis => "in the SIS",
        Fixer::CleverAdmin => SourceKind::Clever.where_fixed(),
        Fixer::OneRosterAdmin => SourceKind::OneRoster.where_fixed(),
        Fixer::PipelineFile => "in the pipeline file",
    }
}

/// A text to send to the source's admin (Clever's or OneRoster's): what to fix at the source,
/// with examples. What only the pipeline file can fix is left out.
pub fn text(diagnosis: &Diagnosis) -> String {
    let source = diagnosis.district.source;
    let at_source: Vec<&Finding> = diagnosis
        .findings
        .iter()
        .filter(|f| f.fixer.at_source())
        .collect();
    let district = &diagnosis.district.name;
    let via = source.reaches_freckle();
    let mut out = format!("Subject: Roster data to fix for {district}\n\nHello,\n\n");
    if at_source.is_empty() {
        let _ = writeln!(
            out,
            "A check on {} of the roster {district} {via} found nothing to fix at the source. Thank you!",
            diagnosis.today
        );
        return out;
    }
    let _ = writeln!(
        out,
        "A check on {} of the roster {district} {via} found {} to fix at the source. Each is fixed in the SIS or in {}; the next sync then picks the change up by itself.",
        diagnosis.today,
        if at_source.len() == 1 {
            "one thing".to_owned()
        } else {
            format!("{} things", at_source.len())
        },
        source.name(),
    );
    for (number, finding) in at_source.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n{}. {}.",
            number + 1,
            rosterflow_model::text::capitalised(&finding.summary)
        );
        let _ = writeln!(
            out,
            "   To fix {}: {}",
            where_fixed(finding.fixer),
            finding.fix
        );
        if !finding.examples.is_empty() {
            let more = finding.count.saturating_sub(finding.examples.len());
            let _ = writeln!(
                out,
                "   {}:",
                if more > 0 {
                    format!("For example (and {more} more)")
                } else {
                    "Namely".to_owned()
                }
            );
            for example in &finding.examples {
                let _ = writeln!(out, "   - {}", example_line(example, source));
            }
        }
    }
    out.push_str("\nThank you!\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::{DistrictSeen, RosterCounts};

    fn diagnosis() -> Diagnosis {
        Diagnosis {
            version: 1,
            pipeline: "springfield".into(),
            district: DistrictSeen {
                key: "d1".into(),
                name: "Springfield".into(),
                source: SourceKind::Clever,
            },
            checked_at: "2026-10-01T06:00:00.000000Z".into(),
            today: chrono::NaiveDate::from_ymd_opt(2026, 10, 1).expect("a day"),
            school_year: "2026-27".into(),
            roster: RosterCounts::default(),
            findings: vec![
                Finding {
                    code: "missing_sis_id",
                    about: None,
                    summary: "1 student has no SIS id".into(),
                    count: 1,
                    fixer: Fixer::Sis,
                    fix: "Enter it.".into(),
                    examples: vec![Example {
                        kind: "student".into(),
                        name: "=HYPERLINK(\"x\")".into(),
                        sis_id: None,
                        source_id: Some("s1".into()),
                        detail: None,
                    }],
                },
                Finding {
                    code: "filter_matches_nothing",
                    about: None,
                    summary: "1 filter entry matches nothing".into(),
                    count: 1,
                    fixer: Fixer::PipelineFile,
                    fix: "Correct it.".into(),
                    examples: Vec::new(),
                },
            ],
            notes: vec!["a note".into()],
        }
    }

    #[test]
    fn csv_cells_cannot_run_in_a_spreadsheet() {
        let mut out = Vec::new();
        write_csv(&diagnosis(), &mut out).expect("written");
        let text = String::from_utf8(out).expect("text");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert!(lines[1].contains("'=HYPERLINK"), "{}", lines[1]);
        assert_eq!(
            lines[2],
            "filter_matches_nothing,,pipeline_file,1,1 filter entry matches nothing,Correct it.,,,,,"
        );
    }

    #[test]
    fn the_admins_text_lists_only_what_is_fixed_at_the_source() {
        let text = text(&diagnosis());
        assert!(
            text.contains("1. 1 student has no SIS id.\n   To fix in the SIS: Enter it."),
            "{text}"
        );
        assert!(text.contains("Clever id s1"), "{text}");
        assert!(!text.contains("filter"), "{text}");
        let mut clean = diagnosis();
        clean.findings.retain(|f| !f.fixer.at_source());
        assert!(text_of(&clean).contains("found nothing to fix at the source"));
    }

    fn text_of(diagnosis: &Diagnosis) -> String {
        text(diagnosis)
    }

    #[test]
    fn the_table_lists_each_finding_then_its_examples_and_fix() {
        let table = table(&diagnosis());
        assert!(table.contains("COUNT  FINDING"), "{table}");
        assert!(table.contains("fix (sis): Enter it."), "{table}");
        assert!(table.contains("note: a note"), "{table}");
    }

    #[test]
    fn json_names_every_documented_field() {
        let value: serde_json::Value = serde_json::from_str(&json(&diagnosis())).expect("JSON");
        for field in [
            "version",
            "pipeline",
            "district",
            "checked_at",
            "today",
            "school_year",
            "roster",
            "findings",
            "notes",
        ] {
            assert!(value.get(field).is_some(), "{field}");
        }
        let finding = &value["findings"][0];
        for field in [
            "code", "about", "summary", "count", "fixer", "fix", "examples",
        ] {
            assert!(finding.get(field).is_some(), "{field}");
        }
        assert_eq!(finding["fixer"], "sis");
        assert_eq!(value["today"], "2026-10-01");
        assert_eq!(value["district"]["source"], "clever");
        let example = &finding["examples"][0];
        for field in ["kind", "name", "sis_id", "source_id", "detail"] {
            assert!(example.get(field).is_some(), "{field}");
        }
    }
}
