//! One CSV file of a feed, read by its header: columns are found by name (case-sensitive, as
//! the spec says), a UTF-8 BOM, CRLF line ends and quoted cells (commas, quotes and line
//! breaks inside) are read as RFC 4180 says, and every record knows the line it starts on.
//!
//! A missing required column fails the file. Problems of one record (a cell that is not
//! UTF-8, a record with more or fewer cells than the header) are that record's: it is
//! quarantined and the others are read.

use std::collections::HashMap;
use std::rc::Rc;

use csv::{ByteRecord, StringRecord};

use super::feed::Problem;
use crate::ExtractError;
use rosterflow_model::Id;

/// The longest `sourcedId` accepted, in bytes.
const MAX_ID_BYTES: usize = 255;

/// A file's header and its records, not yet read.
pub(super) struct Sheet<'a> {
    file: &'static str,
    bytes: &'a [u8],
    columns: Columns,
    reader: csv::Reader<&'a [u8]>,
}

/// A file's header.
#[derive(Debug)]
struct Columns {
    /// In file order.
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl<'a> Sheet<'a> {
    /// Reads the header of `file` (its name, `users.csv`) and checks that every `required`
    /// column is there.
    pub fn open(
        file: &'static str,
        bytes: &'a [u8],
        required: &[&'static str],
        version: &'static str,
    ) -> Result<Sheet<'a>, ExtractError> {
        // csv reads a BOM as part of the first header's name.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
        let header = reader.byte_headers().map_err(|error| ExtractError::Csv {
            file: file.to_owned(),
            reason: format!("cannot read the header: {error}"),
        })?;
        let header =
            StringRecord::from_byte_record(header.clone()).map_err(|_| ExtractError::Csv {
                file: file.to_owned(),
                reason: "the header is not UTF-8 text".to_owned(),
            })?;
        let names: Vec<String> = header.iter().map(|name| name.trim().to_owned()).collect();
        let mut index = HashMap::new();
        for (at, name) in names.iter().enumerate() {
            if !name.is_empty() && index.insert(name.clone(), at).is_some() {
                return Err(ExtractError::Csv {
                    file: file.to_owned(),
                    reason: format!(
                        "the header names column {} twice",
                        super::vocab::shown(name)
                    ),
                });
            }
        }
        if let Some(column) = required.iter().find(|c| !index.contains_key(**c)) {
            return Err(ExtractError::MissingColumn {
                file,
                column,
                version,
            });
        }
        Ok(Sheet {
            file,
            bytes,
            columns: Columns { names, index },
            reader,
        })
    }

    /// The records, in file order: each a row, or the problem that made it unreadable.
    pub fn rows(mut self) -> impl Iterator<Item = Result<Row, Problem>> + use<'a> {
        let mut record = ByteRecord::new();
        let columns = Rc::new(self.columns);
        let file = self.file;
        let mut lines = Lines {
            bytes: self.bytes,
            at: 0,
            line: 1,
        };
        std::iter::from_fn(move || {
            let read = self.reader.read_byte_record(&mut record);
            let start = record.position().map_or(0, |p| p.byte());
            let line = lines.line_at(usize::try_from(start).unwrap_or(usize::MAX));
            let origin = format!("{file}:{line}");
            match read {
                Ok(false) => None,
                Ok(true) => Some(
                    Row::new(file, line, std::mem::take(&mut record), &columns).map_err(|p| *p),
                ),
                // A slice cannot fail to read, and a flexible reader takes any width: this is
                // only in case csv finds something else to refuse.
                Err(error) => Some(Err(Problem::unreadable_line(origin, error.to_string()))),
            }
        })
    }
}

/// Line numbers of byte offsets, counted as the offsets grow. csv's own line numbers are
/// off after CRLF line ends and blank lines; its byte offset of a record is where reading it
/// began, before the blank lines and the LF of a CRLF that it skipped.
struct Lines<'a> {
    bytes: &'a [u8],
    /// Counted up to here.
    at: usize,
    line: u64,
}

impl Lines<'_> {
    /// The line of the record whose reading began at byte `from`.
    fn line_at(&mut self, from: usize) -> u64 {
        let blank = |b: &u8| *b == b'\r' || *b == b'\n';
        let from = from.max(self.at).min(self.bytes.len());
        let start = from + self.bytes[from..].iter().take_while(|b| blank(b)).count();
        for at in self.at..start {
            // A line ends at LF, at CRLF (counted at its LF) or at a lone CR.
            self.line += match self.bytes[at] {
                b'\n' => 1,
                b'\r' if self.bytes.get(at + 1) != Some(&b'\n') => 1,
                _ => 0,
            };
        }
        self.at = start;
        self.line
    }
}

/// One record of a file, with the line it starts on.
#[derive(Debug)]
pub(super) struct Row {
    file: &'static str,
    line: u64,
    cells: StringRecord,
    columns: Rc<Columns>,
}

impl Row {
    fn new(
        file: &'static str,
        line: u64,
        record: ByteRecord,
        columns: &Rc<Columns>,
    ) -> Result<Row, Box<Problem>> {
        let origin = format!("{file}:{line}");
        let width = columns.names.len();
        let cells = StringRecord::from_byte_record(record).map_err(|_| {
            Problem::unreadable_line(origin.clone(), "the record is not UTF-8 text".to_owned())
        })?;
        let row = Row {
            file,
            line,
            cells,
            columns: columns.clone(),
        };
        if row.cells.len() != width {
            let id = row
                .raw("sourcedId")
                .filter(|id| usable_id(id).is_ok())
                .map(Id::from);
            return Err(Box::new(Problem {
                // Its cells cannot be trusted: the record is unreadable, not merely absent.
                unreadable: id.is_some(),
                id,
                origin,
                reason: format!(
                    "the record has {} cells but the header has {width}",
                    row.cells.len()
                ),
                fix: Some(
                    "quote every cell that holds a comma, a quote or a line break (RFC 4180)"
                        .to_owned(),
                ),
                record: row.json(),
            }));
        }
        Ok(row)
    }

    /// `file:line`, for quarantine.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    pub fn line(&self) -> u64 {
        self.line
    }

    /// The cell of `column` as written; `None` when the column is absent or the cell blank.
    pub fn raw(&self, column: &str) -> Option<&str> {
        let cell = self.cells.get(*self.columns.index.get(column)?)?;
        (!cell.trim().is_empty()).then_some(cell)
    }

    /// The text of `column`, without NULs (no database stores them alike).
    pub fn text(&self, column: &str) -> Option<String> {
        let mut text = self.raw(column)?.to_owned();
        text.retain(|c| c != '\0');
        (!text.trim().is_empty()).then_some(text)
    }

    /// The text of a required `column`.
    pub fn required(&self, column: &str) -> Result<String, String> {
        self.text(column)
            .ok_or_else(|| format!("required cell {column} is blank"))
    }

    /// The id in a required `column`.
    pub fn id(&self, column: &str) -> Result<Id, String> {
        let id = self
            .raw(column)
            .ok_or_else(|| format!("required cell {column} is blank"))?;
        usable_id(id).map_err(|why| format!("{column} {why}"))?;
        Ok(Id::from(id))
    }

    /// The id in an optional `column`; one that is there must be usable.
    pub fn optional_id(&self, column: &str) -> Result<Option<Id>, String> {
        match self.raw(column) {
            None => Ok(None),
            Some(_) => self.id(column).map(Some),
        }
    }

    /// A multi-value cell (`"01,02"`): its comma-separated entries, trimmed, blanks dropped.
    pub fn list(&self, column: &str) -> Vec<String> {
        self.text(column)
            .map(|text| split_list(&text))
            .unwrap_or_default()
    }

    /// A multi-value cell of ids; entries that are not usable ids are dropped.
    pub fn ids(&self, column: &str) -> Vec<Id> {
        self.list(column)
            .into_iter()
            .filter(|id| usable_id(id).is_ok())
            .map(Id::from)
            .collect()
    }

    /// The record as a JSON object of column to cell, for quarantine. A `password` column is
    /// left out: quarantine is shown in reports.
    pub fn json(&self) -> String {
        let mut object = serde_json::Map::new();
        for (name, cell) in self.columns.names.iter().zip(self.cells.iter()) {
            if !name.eq_ignore_ascii_case("password") {
                object.insert(name.clone(), cell.into());
            }
        }
        serde_json::Value::Object(object).to_string()
    }
}

/// Splits a multi-value cell at its commas.
fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `id` can be a record's id: not empty, at most 255 bytes, no control characters.
/// Anything else goes (`/`, `..`, `|`): ids are only ever compared, never used as paths.
pub(crate) fn usable_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        Err("is empty".to_owned())
    } else if id.len() > MAX_ID_BYTES {
        Err(format!(
            "is {} bytes long: ids are at most {MAX_ID_BYTES}",
            id.len()
        ))
    } else if id.chars().any(char::is_control) {
        Err(format!(
            "{:?} holds a control character",
            id.chars().take(40).collect::<String>()
        ))
    } else if id.starts_with("plugin:") {
        // The key of a plugin's group in the same tables (`plugin:<name>:<group>`).
        Err(format!(
            "{:?} starts with \"plugin:\", which names the groups plugins make",
            id.chars().take(40).collect::<String>()
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, required: &[&'static str]) -> Vec<Result<Row, Problem>> {
        Sheet::open("t.csv", text.as_bytes(), required, "1.1")
            .expect("header")
            .rows()
            .collect()
    }

    #[test]
    fn lines_are_counted_across_crlf_blank_lines_and_quoted_line_breaks() {
        for (text, expected) in [
            ("h,t\na,1\nb,2\n", [2, 3]),
            ("h,t\r\na,1\r\nb,2\r\n", [2, 3]),
            ("h,t\n\na,1\n\nb,2", [3, 5]),
            ("h,t\r\n\r\na,\"x\r\ny\"\r\nb,2\r\n", [3, 5]),
            ("h,t\ra,1\rb,2\r", [2, 3]),
        ] {
            let lines: Vec<u64> = rows(text, &["h"])
                .into_iter()
                .map(|r| r.expect("row").line())
                .collect();
            assert_eq!(lines, expected, "{text:?}");
        }
    }

    #[test]
    fn a_bom_crlf_and_quoted_commas_quotes_and_line_breaks_are_read() {
        let text = "\u{feff}sourcedId,title,grades\r\n\
                    c1,\"Math, period 1\",\"01,02\"\r\n\
                    c2,\"Two\r\nlines \"\"quoted\"\"\",KG\r\n\
                    c3,Last,\r\n";
        let rows = rows(text, &["sourcedId", "title"]);
        let rows: Vec<Row> = rows.into_iter().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0].raw("sourcedId"),
            Some("c1"),
            "the BOM is not in the name"
        );
        assert_eq!(rows[0].text("title").as_deref(), Some("Math, period 1"));
        assert_eq!(rows[0].list("grades"), ["01", "02"]);
        assert_eq!(
            rows[1].text("title").as_deref(),
            Some("Two\r\nlines \"quoted\"")
        );
        assert_eq!(
            rows.iter().map(Row::line).collect::<Vec<_>>(),
            [2, 3, 5],
            "each record's first line, the header being line 1"
        );
        assert_eq!(rows[2].raw("grades"), None, "a blank cell is absent");
        assert_eq!(rows[2].raw("nosuch"), None);
    }

    #[test]
    fn a_missing_required_column_names_the_file_and_column() {
        let Err(error) = Sheet::open(
            "users.csv",
            b"sourcedId,Role\nu1,x\n",
            &["sourcedId", "role"],
            "1.1",
        ) else {
            panic!("accepted a header without role");
        };
        let message = error.to_string();
        assert!(
            message.contains("users.csv") && message.contains("role"),
            "{message}"
        );
    }

    #[test]
    fn a_record_of_the_wrong_width_or_not_utf8_is_a_problem_of_its_line() {
        let mut bytes = b"sourcedId,title\nc1,One\nc2,a,b\nc3,".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b"\nc4,Four\n");
        let rows: Vec<_> = Sheet::open("t.csv", &bytes, &["sourcedId"], "1.1")
            .expect("header")
            .rows()
            .collect();
        assert_eq!(rows.len(), 4);
        let wide = rows[1].as_ref().expect_err("too wide");
        assert_eq!(wide.origin, "t.csv:3");
        assert_eq!(wide.id.as_deref(), Some("c2"));
        let garbled = rows[2].as_ref().expect_err("not utf-8");
        assert_eq!(garbled.origin, "t.csv:4");
        assert!(rows[3].is_ok());
    }

    #[test]
    fn ids_are_any_string_but_empty_long_or_with_control_characters() {
        for good in [
            "a/b",
            "..",
            "../../etc/passwd",
            "x|y",
            "7_1553",
            "é",
            &"x".repeat(255),
        ] {
            assert!(usable_id(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "a\u{0}b",
            "a\nb",
            "tab\there",
            &"x".repeat(256),
            "plugin:flex:g1",
        ] {
            assert!(usable_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_password_never_reaches_quarantine() {
        let rows = rows("sourcedId,password\nu1,hunter2\n", &["sourcedId"]);
        let json = rows[0].as_ref().expect("row").json();
        assert!(!json.contains("hunter2"), "{json}");
    }
}
