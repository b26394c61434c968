//! An exported Parquet file as CSV, for a spreadsheet: the same columns in the same order, a
//! header row, every value as text (timestamps in RFC 3339, UTC), empty for null. Read one record
//! batch at a time, so memory stays that of a batch whatever the file's size.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatchReader;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{Dataset, ExportError};

/// Writes the Parquet file `parquet` (of `dataset`) as CSV to `csv`; returns the rows written.
pub fn parquet_to_csv(dataset: Dataset, parquet: &Path, csv: &Path) -> Result<u64, ExportError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Io { path, source }
    };
    let encode = |source| ExportError::Encode { dataset, source };
    let batch = |source| ExportError::Batch { dataset, source };
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(File::open(parquet).map_err(io(parquet))?)
            .map_err(encode)?
            .build()
            .map_err(encode)?;
    let mut out = BufWriter::new(File::create(csv).map_err(io(csv))?);
    let header: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|field| quote(field.name()))
        .collect();
    writeln!(out, "{}", header.join(",")).map_err(io(csv))?;
    // Timestamps are UTC: written without the zone's name, which the formatter cannot look up.
    let options = FormatOptions::default()
        .with_null("")
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.6fZ"));
    let mut rows = 0;
    let mut line = String::new();
    for next in reader {
        let next = next.map_err(batch)?;
        let naive: Vec<ArrayRef> = next.columns().iter().map(without_zone).collect();
        let columns = naive
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(batch)?;
        for row in 0..next.num_rows() {
            line.clear();
            for (i, column) in columns.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str(&quote(&column.value(row).to_string()));
            }
            writeln!(out, "{line}").map_err(io(csv))?;
        }
        rows += next.num_rows() as u64;
    }
    out.flush().map_err(io(csv))?;
    Ok(rows)
}

/// A UTC timestamp column as the same instants without a zone; any other column as it is.
fn without_zone(column: &ArrayRef) -> ArrayRef {
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => {
            let instants = column
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("a microsecond timestamp column")
                .clone()
                .with_timezone_opt(None::<String>);
            Arc::new(instants)
        }
        _ => column.clone(),
    }
}

/// A CSV field (RFC 4180), quoted when it holds a comma, quote or line break, and defused (see
/// [`rosterflow_model::spreadsheet_cell`]).
fn quote(field: &str) -> String {
    let field = rosterflow_model::spreadsheet_cell(field);
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(quote("-12.5"), "-12.5");
        assert_eq!(quote("-cmd"), "'-cmd");
    }
}
