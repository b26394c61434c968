//! School years, July to June: what the doctor judges terms by, the exports partition growth
//! by, and the plan recognises a new school year by.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

use crate::Term;

/// A school year, named by the calendar year it starts in: `SchoolYear(2026)` is 2026-27,
/// from July 2026 to June 2027.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchoolYear(pub i16);

impl SchoolYear {
    /// The school year `day` falls in: 2026-27 for 2026-10-01 and for 2027-03-01.
    pub fn of_day(day: NaiveDate) -> SchoolYear {
        let year = if day.month() >= 7 {
            day.year()
        } else {
            day.year() - 1
        };
        SchoolYear(year as i16)
    }

    /// The school year of a date as sources and the Freckle DB write it (`2026-08-18`, perhaps
    /// with a time after it).
    pub fn of_date(text: &str) -> Option<SchoolYear> {
        let day = NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()?;
        Some(SchoolYear::of_day(day))
    }

    /// The school year of a term: by its start date, else its end date, else a name that says
    /// it (`2025-2026`, `2025-26`, `Fall 2025`, `Spring 2026`).
    pub fn of_term(term: &Term) -> Option<SchoolYear> {
        [&term.start_date, &term.end_date]
            .into_iter()
            .find_map(|date| date.as_deref().and_then(SchoolYear::of_date))
            .or_else(|| SchoolYear::in_name(term.name.as_deref()?))
    }

    /// The school year a term's name says, if it says one.
    fn in_name(name: &str) -> Option<SchoolYear> {
        let words: Vec<&str> = name
            .split(|c: char| c.is_whitespace() || c == '/')
            .filter(|w| !w.is_empty())
            .collect();
        let calendar_year = |text: &str| {
            (text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<i16>().ok())
                .flatten()
        };
        let spelled = words.iter().find_map(|word| {
            // `2025-2026` or `2025-26`
            let (first, second) = word.split_once('-')?;
            let start = calendar_year(first)?;
            let next = start + 1;
            (second == next.to_string() || second == format!("{:02}", next.rem_euclid(100)))
                .then_some(SchoolYear(start))
        });
        spelled.or_else(|| {
            words.windows(2).find_map(|pair| {
                let year = calendar_year(pair[1])?;
                match pair[0].to_lowercase().as_str() {
                    "fall" | "autumn" => Some(SchoolYear(year)),
                    "spring" | "winter" => Some(SchoolYear(year - 1)),
                    _ => None,
                }
            })
        })
    }

    /// The calendar year it starts in.
    pub fn start(self) -> i32 {
        i32::from(self.0)
    }

    pub fn next(self) -> SchoolYear {
        SchoolYear(self.0 + 1)
    }
}

/// `2026-27`.
impl fmt::Display for SchoolYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:02}", self.0, (self.0 + 1).rem_euclid(100))
    }
}

/// Reads `2026-27`.
impl FromStr for SchoolYear {
    type Err = String;

    fn from_str(text: &str) -> Result<SchoolYear, String> {
        let wrong = || format!("{text:?} is not a school year like 2026-27");
        let (first, second) = text.split_once('-').ok_or_else(wrong)?;
        if first.len() != 4 || second.len() != 2 {
            return Err(wrong());
        }
        let first: i16 = first.parse().map_err(|_| wrong())?;
        let second: i16 = second.parse().map_err(|_| wrong())?;
        if (first + 1).rem_euclid(100) != second {
            return Err(wrong());
        }
        Ok(SchoolYear(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("a date")
    }

    #[test]
    fn a_school_year_runs_july_to_june() {
        assert_eq!(SchoolYear::of_day(day("2026-07-01")), SchoolYear(2026));
        assert_eq!(SchoolYear::of_day(day("2027-06-30")), SchoolYear(2026));
        assert_eq!(SchoolYear(2026).to_string(), "2026-27");
        assert_eq!(SchoolYear(2099).to_string(), "2099-00");
        assert_eq!("2026-27".parse(), Ok(SchoolYear(2026)));
        assert!("2026-28".parse::<SchoolYear>().is_err());
        assert_eq!(
            SchoolYear::of_date("2026-08-18T00:00:00Z"),
            Some(SchoolYear(2026))
        );
    }

    #[test]
    fn a_term_says_its_year_by_its_dates_else_its_name() {
        let term = |start: Option<&str>, end: Option<&str>, name: &str| Term {
            start_date: start.map(Into::into),
            end_date: end.map(Into::into),
            name: Some(name.into()),
            ..Term::default()
        };
        let year = |t: Term| SchoolYear::of_term(&t);
        assert_eq!(
            year(term(Some("2025-08-18"), None, "2030")),
            Some(SchoolYear(2025))
        );
        assert_eq!(
            year(term(None, Some("2026-06-10"), "")),
            Some(SchoolYear(2025))
        );
        assert_eq!(year(term(None, None, "2025-2026")), Some(SchoolYear(2025)));
        assert_eq!(year(term(None, None, "SY 2025-26")), Some(SchoolYear(2025)));
        assert_eq!(year(term(None, None, "Fall 2025")), Some(SchoolYear(2025)));
        assert_eq!(
            year(term(None, None, "Spring 2026")),
            Some(SchoolYear(2025))
        );
        assert_eq!(year(term(None, None, "Semester 1")), None);
        assert_eq!(year(term(None, None, "2025-2027")), None);
    }
}
