//! The `[export]` table of a pipeline file: where the Parquet files go, which period they cover,
//! which columns a district agreed to share, and how the files are laid out.
//!
//! Parsing is pure serde; [`ExportConfig::validate`] then reports every problem at once, and
//! [`ExportConfig::period`] resolves the period against the run's clock.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rosterflow_model::school_year::SchoolYear;
use serde::{Deserialize, Serialize};

use super::Dataset;

/// The `[export]` table. Every field has a default, so `[export]` alone exports both datasets of
/// the current school year to `out/exports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Where the files go: a local directory (relative paths are taken from the working
    /// directory), or an object-store URL: `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` (credentials come from the standard `AWS_*`, `GOOGLE_*` and
    /// `AZURE_*` environment variables, never from this file), or `file:///absolute/path`.
    #[serde(default = "default_dir")]
    pub dir: String,

    /// Extra object-store settings, by their `object_store` names (for example `aws_region`,
    /// `aws_endpoint`, `aws_allow_http`, `azure_storage_account_name`); credentials are refused
    /// (they come from the environment). Ignored for a local `dir`.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,

    /// Which datasets to write: `growth` (per student, subject and domain) and `roster_history`
    /// (student x class x teacher with valid_from / valid_to).
    #[serde(default = "default_datasets")]
    pub datasets: Vec<Dataset>,

    /// The school year to export, as `2026-27` (July 1, 2026 to June 30, 2027, UTC). Default: the
    /// school year the run falls in. It is also the `school_year=` partition of the files.
    #[serde(default)]
    pub school_year: Option<String>,

    /// First day of the period (`YYYY-MM-DD`, inclusive, 00:00 UTC). Default: the first day of the
    /// school year. Must lie inside the school year.
    #[serde(default)]
    pub from: Option<String>,

    /// Last day of the period (`YYYY-MM-DD`, inclusive, through 24:00 UTC). Default: the last day
    /// of the school year. Must lie inside the school year and not before `from`.
    #[serde(default)]
    pub to: Option<String>,

    /// The column allow-list: only these columns are written (each dataset writes those of its
    /// columns that are listed). Default: every column. Names are checked against the export
    /// schema in `pipelines/README.md`.
    #[serde(default)]
    pub columns: Option<Vec<String>>,

    /// Export again after every committed sync of this pipeline, not only on `rosterflow export`.
    #[serde(default = "default_after_sync")]
    pub after_sync: bool,

    /// Rows per Parquet row group (DuckDB reads row groups in parallel; Spark splits on them).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,

    /// Rows per Arrow record batch handed to the Parquet writer: the unit of memory while
    /// encoding.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,

    /// zstd compression level, 1 (fastest) to 22 (smallest).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
}

fn default_dir() -> String {
    "out/exports".to_owned()
}

fn default_datasets() -> Vec<Dataset> {
    vec![Dataset::Growth, Dataset::RosterHistory]
}

fn default_after_sync() -> bool {
    false
}

fn default_row_group_rows() -> usize {
    262_144
}

fn default_batch_rows() -> usize {
    8_192
}

fn default_zstd_level() -> i32 {
    3
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            dir: default_dir(),
            storage_options: BTreeMap::new(),
            datasets: default_datasets(),
            school_year: None,
            from: None,
            to: None,
            columns: None,
            after_sync: default_after_sync(),
            row_group_rows: default_row_group_rows(),
            batch_rows: default_batch_rows(),
            zstd_level: default_zstd_level(),
        }
    }
}

/// The time span an export covers: `[start, end)` in UTC, inside one school year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// The `school_year=` partition value, such as `2026-27`.
    pub school_year: String,
    /// First instant of the period.
    pub start: DateTime<Utc>,
    /// First instant after the period.
    pub end: DateTime<Utc>,
}

impl ExportConfig {
    /// Every problem with this table, as `export.<field>: <what is wrong>` lines; empty when it
    /// is valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.dir.trim().is_empty() {
            problems.push("export.dir: must not be empty".to_owned());
        }
        match super::destination::Destination::parse(&self.dir, &self.storage_options) {
            Ok(_) => {}
            Err(problem) => problems.push(format!("export.dir: {problem}")),
        }
        if self.datasets.is_empty() {
            problems
                .push("export.datasets: list at least one of growth, roster_history".to_owned());
        }
        let mut seen = Vec::new();
        for dataset in &self.datasets {
            if seen.contains(dataset) {
                problems.push(format!("export.datasets: {dataset} is listed twice"));
            }
            seen.push(*dataset);
        }
        if let Some(columns) = &self.columns {
            for name in columns {
                if !Dataset::ALL
                    .iter()
                    .any(|d| d.column_names().contains(&name.as_str()))
                {
                    problems.push(format!(
                        "export.columns: unknown column {name:?} (see `## Export schema` in pipelines/README.md)"
                    ));
                }
            }
            for dataset in &self.datasets {
                if !dataset
                    .column_names()
                    .iter()
                    .any(|c| columns.iter().any(|n| n == c))
                {
                    problems.push(format!(
                        "export.columns: none of the {dataset} columns is allowed; allow some or drop {dataset} from export.datasets"
                    ));
                }
            }
        }
        if let Some(year) = &self.school_year
            && year.parse::<SchoolYear>().is_err()
        {
            problems.push(format!(
                "export.school_year: {year:?} is not a school year such as \"2026-27\""
            ));
        }
        let from = self.from.as_deref().map(|d| (d, parse_day(d)));
        let to = self.to.as_deref().map(|d| (d, parse_day(d)));
        for (field, day) in [("from", from), ("to", to)] {
            if let Some((text, None)) = day {
                problems.push(format!(
                    "export.{field}: {text:?} is not a date such as \"2026-08-15\""
                ));
            }
        }
        if let (Some((_, Some(from))), Some((_, Some(to)))) = (from, to)
            && to < from
        {
            problems.push(format!("export.to: {to} is before export.from {from}"));
        }
        // The period must lie inside one school year: it names the partition.
        let year = self
            .school_year
            .as_deref()
            .and_then(|year| year.parse().ok())
            .or_else(|| from.and_then(|(_, d)| d).map(SchoolYear::of_day));
        if let Some(year) = year {
            for (field, day) in [("from", from), ("to", to)] {
                if let Some((_, Some(day))) = day
                    && SchoolYear::of_day(day) != year
                {
                    problems.push(format!(
                        "export.{field}: {day} is outside the school year {year}"
                    ));
                }
            }
        }
        if self.row_group_rows == 0 {
            problems.push("export.row_group_rows: must be at least 1".to_owned());
        }
        if self.batch_rows == 0 {
            problems.push("export.batch_rows: must be at least 1".to_owned());
        }
        if !(1..=22).contains(&self.zstd_level) {
            problems.push(format!(
                "export.zstd_level: {} is not between 1 and 22",
                self.zstd_level
            ));
        }
        problems
    }

    /// The period this export covers when run at `now`. Call after [`ExportConfig::validate`]
    /// returned no problem; returns `None` otherwise.
    pub fn period(&self, now: DateTime<Utc>) -> Option<Period> {
        let from = self.from.as_deref().map(parse_day);
        let to = self.to.as_deref().map(parse_day);
        let year = match (&self.school_year, from) {
            (Some(year), _) => year.parse().ok()?,
            (None, Some(from)) => SchoolYear::of_day(from?),
            (None, None) => SchoolYear::of_day(now.date_naive()),
        };
        let start_day = match from {
            Some(day) => day?,
            None => NaiveDate::from_ymd_opt(year.start(), 7, 1)?,
        };
        let end_day = match to {
            Some(day) => day?.succ_opt()?,
            None => NaiveDate::from_ymd_opt(year.next().start(), 7, 1)?,
        };
        let midnight = |day: NaiveDate| Some(Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?));
        Some(Period {
            school_year: year.to_string(),
            start: midnight(start_day)?,
            end: midnight(end_day)?,
        })
    }
}

fn parse_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ExportConfig {
        toml::from_str(text).expect("valid toml")
    }

    #[test]
    fn empty_table_is_valid_and_exports_the_current_school_year() {
        let config = parse("");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
        let period = config.period(now).unwrap();
        assert_eq!(period.school_year, "2026-27");
        assert_eq!(
            period.start,
            Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            period.end,
            Utc.with_ymd_and_hms(2027, 7, 1, 0, 0, 0).unwrap()
        );
        let spring = Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(config.period(spring).unwrap().school_year, "2026-27");
    }

    #[test]
    fn from_and_to_are_inclusive_days() {
        let config = parse("from = \"2026-08-15\"\nto = \"2026-12-20\"");
        assert!(config.validate().is_empty());
        let period = config.period(Utc::now()).unwrap();
        assert_eq!(period.school_year, "2026-27");
        assert_eq!(
            period.start,
            Utc.with_ymd_and_hms(2026, 8, 15, 0, 0, 0).unwrap()
        );
        assert_eq!(
            period.end,
            Utc.with_ymd_and_hms(2026, 12, 21, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let config = parse(
            r#"
            school_year = "2026-28"
            from = "2026-13-01"
            to = "2025-01-01"
            columns = ["student_sis_id", "favourite_colour"]
            datasets = ["growth", "growth"]
            row_group_rows = 0
            zstd_level = 40
            dir = "ftp://example/x"
            "#,
        );
        let problems = config.validate();
        let all = problems.join("\n");
        for needle in [
            "export.school_year",
            "export.from",
            "favourite_colour",
            "listed twice",
            "export.row_group_rows",
            "export.zstd_level",
            "export.dir",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
    }

    #[test]
    fn storage_options_are_store_settings_but_never_credentials() {
        let problems = |options: &str| {
            parse(&format!(
                "dir = \"s3://bucket/prefix\"\n[storage_options]\n{options}"
            ))
            .validate()
        };
        assert!(
            problems("aws_region = \"us-east-1\"\nendpoint = \"http://127.0.0.1:9000\"").is_empty()
        );
        let unknown = problems("aws_colour = \"blue\"");
        assert!(
            unknown
                .iter()
                .any(|p| p.contains("not a setting of the s3 store")),
            "{unknown:?}"
        );
        // Any alias of a secret is refused, naming the variable to set instead.
        let secret = problems("secret_access_key = \"hunter2\"");
        assert!(
            secret.iter().any(
                |p| p.contains("is a credential: set AWS_SECRET_ACCESS_KEY in the environment")
            ),
            "{secret:?}"
        );
    }

    #[test]
    fn a_period_across_school_years_is_refused() {
        let config = parse("from = \"2026-08-15\"\nto = \"2027-08-01\"");
        let problems = config.validate();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("outside the school year 2026-27")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<ExportConfig>("directory = \"x\"").is_err());
    }

    #[test]
    fn an_allow_list_that_empties_a_dataset_is_refused() {
        let config = parse(
            "columns = [\"subject\", \"sessions\"]\ndatasets = [\"growth\", \"roster_history\"]",
        );
        let problems = config.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("roster_history"));
    }
}
