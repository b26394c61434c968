//! JSON text helpers for the dataset: a small streaming object writer (the generator writes a
//! million records with it, far faster than building `serde_json::Value`s), a whitespace
//! compactor that keeps key order (for pretty-printed recordings), Clever-style ids and
//! timestamps.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `s` to `out` as a JSON string literal, escaping what JSON requires.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Writes one JSON object field by field, in the order the fields are given.
///
/// Keys and values are written as given, unescaped: callers pass only text without `"`, `\` or
/// control characters (the generator builds every value from checked word lists, digits and
/// ids). Skipping the per-byte escape check is what keeps a million-student district fast in an
/// unoptimised test build. Use [`push_str`] for arbitrary text.
pub(crate) struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    /// Writes a whole object into `out` through `fill`.
    pub(crate) fn write(out: &'a mut String, fill: impl FnOnce(&mut Obj<'_>)) {
        out.push('{');
        let mut obj = Obj { out, first: true };
        fill(&mut obj);
        obj.out.push('}');
    }

    fn value(&mut self, value: &str) {
        self.out.push('"');
        self.out.push_str(value);
        self.out.push('"');
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.value(key);
        self.out.push(':');
    }

    /// A string field.
    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.value(value);
        self
    }

    /// A nested object.
    pub(crate) fn obj(&mut self, key: &str, fill: impl FnOnce(&mut Obj<'_>)) -> &mut Self {
        self.key(key);
        Obj::write(self.out, fill);
        self
    }

    /// An array of strings.
    pub(crate) fn strs<'s>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = &'s str>,
    ) -> &mut Self {
        self.key(key);
        self.out.push('[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.value(item);
        }
        self.out.push(']');
        self
    }

    /// An array of objects.
    pub(crate) fn objs<T>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = T>,
        mut fill: impl FnMut(&mut Obj<'_>, T),
    ) -> &mut Self {
        self.key(key);
        self.out.push('[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            Obj::write(self.out, |o| fill(o, item));
        }
        self.out.push(']');
        self
    }
}

/// Removes insignificant whitespace from valid JSON text, keeping everything else (key order,
/// number spelling, escapes) byte for byte.
pub(crate) fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The 24-hex-digit spelling of an id number, as Clever (Mongo ObjectIDs) writes ids.
pub(crate) fn hex_id(n: u128) -> String {
    format!("{:024x}", n & ((1u128 << 96) - 1))
}

/// Parses a 24-hex-digit id back to its number; `None` for anything else.
pub(crate) fn parse_hex_id(id: &str) -> Option<u128> {
    if id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        u128::from_str_radix(id, 16).ok()
    } else {
        None
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A (year, month, day) to days since 1970-01-01.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the Unix epoch as Clever writes timestamps: `2021-03-02T22:24:53.347Z`.
pub(crate) fn timestamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// The current time as a Clever timestamp.
pub(crate) fn now_timestamp() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    timestamp(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_output_parses_and_keeps_order() {
        let mut out = String::new();
        Obj::write(&mut out, |o| {
            o.str("id", "a b")
                .obj("name", |n| {
                    n.str("first", "José");
                })
                .strs("schools", ["x", "y"])
                .objs("list", ["1", "2"], |o, i| {
                    o.str("n", i);
                });
        });
        assert_eq!(
            out,
            r#"{"id":"a b","name":{"first":"José"},"schools":["x","y"],"list":[{"n":"1"},{"n":"2"}]}"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid json");
        assert_eq!(v["name"]["first"], "José");
    }

    #[test]
    fn push_str_escapes() {
        let mut out = String::new();
        push_str(&mut out, "a\"b\\c\n\u{1}");
        assert_eq!(out, r#""a\"b\\c\n\u0001""#);
        let back: String = serde_json::from_str(&out).expect("valid json string");
        assert_eq!(back, "a\"b\\c\n\u{1}");
    }

    #[test]
    fn compact_keeps_strings_intact() {
        let pretty = "{\n  \"a b\" : [1, 2],\n  \"c\": \"x \\\" y\"\n}";
        assert_eq!(compact(pretty), r#"{"a b":[1,2],"c":"x \" y"}"#);
    }

    #[test]
    fn timestamps_and_dates_round_trip() {
        assert_eq!(timestamp(1_614_723_893_347), "2021-03-02T22:24:53.347Z");
        for days in [-1000, 0, 18_688, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn hex_ids_round_trip() {
        let id = "5a25ffb0c1bc2a00360003ed";
        assert_eq!(hex_id(parse_hex_id(id).expect("hex")), id);
        assert_eq!(parse_hex_id("not-an-id"), None);
    }
}
