//! The Parquet side of an export: the column types BI tools read without a fight, fixed-size
//! Arrow record batches, and the writer with its explicit properties.
//!
//! Types: identifiers are `Utf8`, low-cardinality strings `Dictionary(Int32, Utf8)`, counts
//! `Int64`, levels and ratios `Float64`, instants `Timestamp(Microsecond, "UTC")` (never
//! nanoseconds: Spark and others reject them). Every string column but the identifiers is
//! dictionary-encoded in the file; pages carry statistics; the writer version stays at Parquet 1.0 (no DELTA encodings
//! that some BI connectors lack); compression is zstd.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, DictionaryArray, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use rustc_hash::FxHashMap;

use super::{Dataset, ExportConfig, ExportError};

/// How a column is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A high-cardinality string, such as an id: `Utf8`.
    Text,
    /// A low-cardinality string: `Dictionary(Int32, Utf8)`.
    Dict,
    /// `Int64`.
    Int,
    /// `Float64`.
    Float,
    /// Microseconds since the epoch, UTC.
    Time,
}

/// One column of a dataset's catalog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

/// A value for one cell, borrowed from the row being written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Float(Option<f64>),
    Time(Option<i64>),
}

/// A text cell: NULL and `""` (absent, as Clever means it) both become null.
pub(crate) fn text(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// A row that can hand out its cells by catalog index.
pub(crate) trait Cells {
    fn cell(&self, column: usize) -> Value<'_>;
}

/// What the encoder needs from the config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub dataset: Dataset,
    /// Catalog indices of the columns to write, in catalog order.
    pub columns: Vec<usize>,
    pub batch_rows: usize,
    pub properties: WriterProperties,
}

impl Settings {
    pub fn from_config(config: &ExportConfig, dataset: Dataset, columns: Vec<usize>) -> Settings {
        Settings {
            dataset,
            columns,
            batch_rows: config.batch_rows,
            properties: properties(config, dataset),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        let catalog = self.dataset.catalog();
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|&i| Field::new(catalog[i].name, data_type(catalog[i].kind), true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// The writer profile every export file of `dataset` gets. Identifier columns (one value per
/// student or stay) are written PLAIN: a dictionary would hold nearly every value, and zstd
/// already folds their repeats. Every other string column is dictionary-encoded.
pub(crate) fn properties(config: &ExportConfig, dataset: Dataset) -> WriterProperties {
    let zstd = ZstdLevel::try_new(config.zstd_level).unwrap_or_default();
    let mut builder = WriterProperties::builder();
    for column in dataset.catalog().iter().filter(|c| c.kind == Kind::Text) {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column.name), false);
    }
    builder
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(zstd))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(config.row_group_rows))
        .set_created_by(format!("rosterflow {}", env!("CARGO_PKG_VERSION")))
        .build()
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Text => DataType::Utf8,
        Kind::Dict => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

enum Builder {
    Text(StringBuilder),
    Dict(DictBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Time(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(kind: Kind, rows: usize) -> Builder {
        match kind {
            Kind::Text => Builder::Text(StringBuilder::with_capacity(rows, rows * 16)),
            Kind::Dict => Builder::Dict(DictBuilder::new(rows)),
            Kind::Int => Builder::Int(Int64Builder::with_capacity(rows)),
            Kind::Float => Builder::Float(Float64Builder::with_capacity(rows)),
            Kind::Time => {
                Builder::Time(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
        }
    }

    fn append(&mut self, value: Value<'_>) {
        match (self, value) {
            (Builder::Text(b), Value::Text(v)) => b.append_option(v),
            (Builder::Dict(b), Value::Text(v)) => b.append(v),
            (Builder::Int(b), Value::Int(v)) => b.append_option(v),
            (Builder::Float(b), Value::Float(v)) => b.append_option(v),
            (Builder::Time(b), Value::Time(v)) => b.append_option(v),
            // The catalogs pair each column with the value its rows hand out; a mismatch is a
            // bug caught by the unit tests, written as a null rather than a panic.
            (Builder::Text(b), _) => b.append_null(),
            (Builder::Dict(b), _) => b.append(None),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Float(b), _) => b.append_null(),
            (Builder::Time(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Dict(b) => b.finish(),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
        }
    }
}

/// A dictionary column for one batch. Rows of one student repeat the same strings (often the
/// very same `&str`), so a value identical in place to the previous row's reuses its key without
/// hashing; the others go through a small hash map.
struct DictBuilder {
    keys: Int32Builder,
    values: StringBuilder,
    index: FxHashMap<Box<str>, i32>,
    /// Address and length of the previous value, and its key.
    last: Option<(usize, usize, i32)>,
}

impl DictBuilder {
    fn new(rows: usize) -> DictBuilder {
        DictBuilder {
            keys: Int32Builder::with_capacity(rows),
            values: StringBuilder::new(),
            index: FxHashMap::default(),
            last: None,
        }
    }

    fn append(&mut self, value: Option<&str>) {
        let Some(value) = value else {
            self.keys.append_null();
            return;
        };
        let place = (value.as_ptr() as usize, value.len());
        if let Some((ptr, len, key)) = self.last
            && (ptr, len) == place
        {
            self.keys.append_value(key);
            return;
        }
        let key = match self.index.get(value) {
            Some(&key) => key,
            None => {
                let key = i32::try_from(self.index.len()).unwrap_or(i32::MAX);
                self.values.append_value(value);
                self.index.insert(value.into(), key);
                key
            }
        };
        self.last = Some((place.0, place.1, key));
        self.keys.append_value(key);
    }

    fn finish(&mut self) -> ArrayRef {
        self.index.clear();
        self.last = None;
        let keys = self.keys.finish();
        let values = Arc::new(self.values.finish());
        Arc::new(DictionaryArray::<Int32Type>::new(keys, values))
    }
}

/// Rows of one dataset on their way into a Parquet file: fills fixed-size record batches and
/// writes each one as soon as it is full.
pub(crate) struct BatchWriter {
    settings: Settings,
    schema: SchemaRef,
    builders: Vec<Builder>,
    pending: usize,
    rows: u64,
    writer: ArrowWriter<BufWriter<File>>,
    /// The same file as the writer's, kept to sync it to disk and measure it after `close`.
    file: File,
    path: PathBuf,
}

/// A finished file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub rows: u64,
    pub bytes: u64,
}

impl BatchWriter {
    pub fn new(output: Output, settings: &Settings) -> Result<BatchWriter, ExportError> {
        let schema = settings.schema();
        let encode = |source| ExportError::Encode {
            dataset: settings.dataset,
            source,
        };
        let file = output.file.try_clone().map_err(|source| ExportError::Io {
            path: output.path.clone(),
            source,
        })?;
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, output.file),
            schema.clone(),
            Some(settings.properties.clone()),
        )
        .map_err(encode)?;
        Ok(BatchWriter {
            builders: Self::builders(settings),
            settings: settings.clone(),
            schema,
            pending: 0,
            rows: 0,
            writer,
            file,
            path: output.path,
        })
    }

    fn builders(settings: &Settings) -> Vec<Builder> {
        let catalog = settings.dataset.catalog();
        settings
            .columns
            .iter()
            .map(|&i| Builder::new(catalog[i].kind, settings.batch_rows))
            .collect()
    }

    /// Adds one row; writes the batch when it is full.
    pub fn push(&mut self, row: &impl Cells) -> Result<(), ExportError> {
        for (builder, &column) in self.builders.iter_mut().zip(&self.settings.columns) {
            builder.append(row.cell(column));
        }
        self.pending += 1;
        if self.pending >= self.settings.batch_rows {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), ExportError> {
        if self.pending == 0 {
            return Ok(());
        }
        let columns = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|source| {
            ExportError::Batch {
                dataset: self.settings.dataset,
                source,
            }
        })?;
        self.writer
            .write(&batch)
            .map_err(|source| ExportError::Encode {
                dataset: self.settings.dataset,
                source,
            })?;
        self.rows += self.pending as u64;
        self.pending = 0;
        // Dictionary builders keep their dictionary across `finish`: start fresh so every batch
        // (and the memory it holds) stays the same size.
        self.builders = Self::builders(&self.settings);
        Ok(())
    }

    /// Writes the last batch, closes the Parquet file (footer included) and flushes it to disk.
    pub fn close(mut self) -> Result<Written, ExportError> {
        self.flush_batch()?;
        let dataset = self.settings.dataset;
        let io = |source| ExportError::Io {
            path: self.path.clone(),
            source,
        };
        // `close` writes the footer and flushes the buffer into the file.
        self.writer
            .close()
            .map_err(|source| ExportError::Encode { dataset, source })?;
        self.file.sync_all().map_err(io)?;
        let bytes = self.file.metadata().map_err(io)?.len();
        Ok(Written {
            rows: self.rows,
            bytes,
        })
    }
}

/// The temporary file an encoder writes into.
pub(crate) struct Output {
    pub file: File,
    pub path: PathBuf,
}

/// Microseconds since the epoch for a Freckle DB timestamp (`2026-11-30T08:15:00.123456Z`).
/// The canonical form is parsed by hand (it is on every row); anything else goes through chrono.
pub(crate) fn micros(text: &str) -> Option<i64> {
    fast_micros(text)
        .or_else(|| rosterflow_store::db::parse_timestamp(text).map(|t| t.timestamp_micros()))
}

fn fast_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 27
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[26] != b'Z'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, micro) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let date =
        chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month as u32, day as u32)?;
    let days = date
        .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
        .num_days();
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000 + micro)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_timestamps_parse_like_chrono() {
        for text in [
            "2026-11-30T08:15:00.123456Z",
            "1970-01-01T00:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "1969-12-31T23:59:59.000001Z",
        ] {
            let expected = rosterflow_store::db::parse_timestamp(text)
                .unwrap()
                .timestamp_micros();
            assert_eq!(fast_micros(text), Some(expected), "{text}");
        }
        assert_eq!(fast_micros("2026-02-30T00:00:00.000000Z"), None);
        assert_eq!(
            micros("2026-11-30T08:15:00Z"),
            Some(
                rosterflow_store::db::parse_timestamp("2026-11-30T08:15:00Z")
                    .unwrap()
                    .timestamp_micros()
            )
        );
    }
}
