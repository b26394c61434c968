//! The query of a collection request: `limit` and `offset`, `filter` (at most two clauses
//! `field<op>'value'` joined by ` AND ` or ` OR `; a quote inside a value is doubled), `sort`
//! and `orderBy`; the other parameters, repeated in the `Link` header's URLs.

use std::cmp::Ordering;

use crate::district::oneroster::entity::percent_encode;

/// Why a query was refused: the `imsx_codeMinorFieldValue` and a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueryError {
    pub(crate) code_minor: &'static str,
    pub(crate) description: String,
}

impl QueryError {
    fn new(code_minor: &'static str, description: String) -> QueryError {
        QueryError {
            code_minor,
            description,
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `~`: contains, ignoring case.
    Contains,
}

impl Op {
    fn holds(self, order: Ordering) -> bool {
        match self {
            Op::Eq => order == Ordering::Equal,
            Op::Ne => order != Ordering::Equal,
            Op::Gt => order == Ordering::Greater,
            Op::Ge => order != Ordering::Less,
            Op::Lt => order == Ordering::Less,
            Op::Le => order != Ordering::Greater,
            Op::Contains => false,
        }
    }
}

/// One clause: `field op 'value'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Clause {
    pub(crate) field: String,
    pub(crate) op: Op,
    pub(crate) value: String,
    /// The value as an instant, for `dateLastModified`.
    pub(crate) instant: Option<u64>,
}

/// A record's value for a clause's field.
pub(crate) enum FieldValue {
    Text(String),
    /// Unix milliseconds (`dateLastModified`).
    Instant(u64),
}

impl Clause {
    /// Whether a record whose field holds `actual` passes.
    pub(crate) fn matches(&self, actual: &FieldValue) -> bool {
        match (actual, self.instant) {
            (FieldValue::Instant(t), Some(wanted)) if self.op != Op::Contains => {
                self.op.holds(t.cmp(&wanted))
            }
            (FieldValue::Instant(t), _) => {
                let text = crate::district::json::timestamp(*t);
                text.to_lowercase().contains(&self.value.to_lowercase())
            }
            (FieldValue::Text(text), _) => match self.op {
                Op::Contains => text.to_lowercase().contains(&self.value.to_lowercase()),
                op => op.holds(text.as_str().cmp(self.value.as_str())),
            },
        }
    }
}

/// A filter: one clause, or two joined by `AND` (`and` true) or `OR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) first: Clause,
    pub(crate) second: Option<(bool, Clause)>,
}

impl Filter {
    /// Every clause.
    pub(crate) fn clauses(&self) -> impl Iterator<Item = &Clause> {
        std::iter::once(&self.first).chain(self.second.as_ref().map(|(_, c)| c))
    }

    /// Whether a record passes, given each clause's field value.
    pub(crate) fn matches(&self, value: impl Fn(&Clause) -> FieldValue) -> bool {
        let first = self.first.matches(&value(&self.first));
        match &self.second {
            None => first,
            Some((true, c)) => first && c.matches(&value(c)),
            Some((false, c)) => first || c.matches(&value(c)),
        }
    }
}

/// A parsed collection query.
#[derive(Clone, Debug)]
pub(crate) struct ListQuery {
    pub(crate) limit: usize,
    pub(crate) offset: usize,
    pub(crate) filter: Option<Filter>,
    pub(crate) sort: Option<String>,
    pub(crate) descending: bool,
    /// Every parameter but `limit` and `offset`, decoded, in request order.
    pub(crate) others: Vec<(String, String)>,
}

/// Parses the query string of a collection request. `fields` are checked by the caller (a
/// filter's and sort's field must exist in the collection): this checks only the syntax.
pub(crate) fn parse(
    query: &str,
    default_limit: usize,
    max_limit: Option<usize>,
) -> Result<ListQuery, QueryError> {
    let pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let number = |name: &str, min: usize| -> Result<Option<usize>, QueryError> {
        match param(name) {
            None => Ok(None),
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if n >= min => Ok(Some(n)),
                _ => Err(QueryError::new(
                    "invalid_selection_field",
                    format!("invalid {name}: {raw:?}"),
                )),
            },
        }
    };
    let mut limit = number("limit", 1)?.unwrap_or(default_limit).max(1);
    if let Some(max) = max_limit {
        limit = limit.min(max.max(1));
    }
    let offset = number("offset", 0)?.unwrap_or(0);
    let filter = match param("filter") {
        None => None,
        Some(raw) if raw.trim().is_empty() => None,
        Some(raw) => Some(parse_filter(raw).map_err(|e| {
            QueryError::new(
                "invalid_filter_field",
                format!("invalid filter {raw:?}: {e}"),
            )
        })?),
    };
    let sort = param("sort")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let descending = param("orderBy").is_some_and(|o| o.trim() == "desc");
    let others = pairs
        .iter()
        .filter(|(k, _)| k != "limit" && k != "offset")
        .cloned()
        .collect();
    Ok(ListQuery {
        limit,
        offset,
        filter,
        sort,
        descending,
        others,
    })
}

/// Parses `field op 'value'` clauses joined by ` AND ` or ` OR ` (at most two).
pub(crate) fn parse_filter(text: &str) -> Result<Filter, String> {
    let (first, rest) = parse_clause(text)?;
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(Filter {
            first,
            second: None,
        });
    }
    let (and, rest) = if let Some(r) = rest.strip_prefix("AND ") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("OR ") {
        (false, r)
    } else {
        return Err(format!("expected AND or OR at {rest:?}"));
    };
    let (second, rest) = parse_clause(rest)?;
    if !rest.trim().is_empty() {
        return Err("at most two clauses".into());
    }
    Ok(Filter {
        first,
        second: Some((and, second)),
    })
}

/// Parses one clause at the start of `text`; returns it and what follows.
fn parse_clause(text: &str) -> Result<(Clause, &str), String> {
    let text = text.trim_start();
    let field_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let field = &text[..field_end];
    if field.is_empty() {
        return Err(format!("expected a field name at {text:?}"));
    }
    let rest = text[field_end..].trim_start();
    let (op, rest) = [
        ("!=", Op::Ne),
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("~", Op::Contains),
    ]
    .into_iter()
    .find_map(|(token, op)| rest.strip_prefix(token).map(|r| (op, r)))
    .ok_or_else(|| format!("expected an operator after {field:?}"))?;
    let rest = rest
        .trim_start()
        .strip_prefix('\'')
        .ok_or_else(|| format!("expected a quoted value after {field:?}"))?;
    // The value runs to the next single quote not doubled.
    let mut value = String::new();
    let mut chars = rest.char_indices().peekable();
    let end = loop {
        match chars.next() {
            None => return Err(format!("unterminated value for {field:?}")),
            Some((i, '\'')) => {
                if matches!(chars.peek(), Some((_, '\''))) {
                    chars.next();
                    value.push('\'');
                } else {
                    break i + 1;
                }
            }
            Some((_, c)) => value.push(c),
        }
    };
    let instant = if field == "dateLastModified" {
        Some(parse_instant(&value).ok_or_else(|| format!("{value:?} is not an RFC 3339 time"))?)
    } else {
        None
    };
    Ok((
        Clause {
            field: field.to_string(),
            op,
            value,
            instant,
        },
        &rest[end..],
    ))
}

/// Parses an RFC 3339 time (`2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.250+02:00`) or a
/// date (`2026-01-01`, midnight UTC) to Unix milliseconds.
pub(crate) fn parse_instant(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let year = digits(text.get(0..4)?)?;
    let month = digits(text.get(5..7)?)?;
    let day = digits(text.get(8..10)?)?;
    if text.get(4..5)? != "-"
        || text.get(7..8)? != "-"
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let days = crate::district::json::days_from_civil(year, month as u32, day as u32);
    let mut ms = days * 86_400_000;
    let rest = &text[10..];
    if !rest.is_empty() {
        let rest = rest.strip_prefix(['T', 't', ' '])?;
        let hour = digits(rest.get(0..2)?)?;
        let minute = digits(rest.get(3..5)?)?;
        let second = digits(rest.get(6..8)?)?;
        if rest.get(2..3)? != ":"
            || rest.get(5..6)? != ":"
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        ms += (hour * 3600 + minute * 60 + second) * 1000;
        let mut zone = &rest[8..];
        if let Some(fraction) = zone.strip_prefix('.') {
            let n = fraction
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(fraction.len());
            let frac = &fraction[..n];
            if frac.is_empty() {
                return None;
            }
            let millis = format!("{frac:0<3}");
            ms += digits(&millis[..3])?;
            zone = &fraction[n..];
        }
        match zone {
            "Z" | "z" => {}
            _ => {
                let sign = match zone.get(0..1)? {
                    "+" => 1,
                    "-" => -1,
                    _ => return None,
                };
                let h = digits(zone.get(1..3)?)?;
                let m = digits(zone.get(4..6)?)?;
                if zone.get(3..4)? != ":" || zone.len() != 6 {
                    return None;
                }
                ms -= sign * (h * 3600 + m * 60) * 1000;
            }
        }
    }
    u64::try_from(ms).ok()
}

/// Percent-decodes a query component (`+` is a space).
pub(crate) fn decode(s: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16)).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Link` header of a page: `first`, `prev` (when not at the start), `next` (when records
/// follow) and, when the total is told, `last`.
pub(crate) fn link_header(url: &str, query: &ListQuery, total: usize, with_last: bool) -> String {
    let page_url = |offset: usize| {
        let mut q: Vec<String> = query
            .others
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        q.push(format!("limit={}", query.limit));
        q.push(format!("offset={offset}"));
        format!("<{url}?{}>", q.join("&"))
    };
    let mut links = vec![format!("{}; rel=\"first\"", page_url(0))];
    if query.offset > 0 {
        let prev = query.offset.saturating_sub(query.limit);
        links.push(format!("{}; rel=\"prev\"", page_url(prev)));
    }
    if query.offset + query.limit < total {
        links.push(format!(
            "{}; rel=\"next\"",
            page_url(query.offset + query.limit)
        ));
    }
    if with_last {
        let last = total.saturating_sub(1) / query.limit * query.limit;
        links.push(format!("{}; rel=\"last\"", page_url(last)));
    }
    links.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_with_and_or_and_doubled_quotes() {
        let f = parse_filter("dateLastModified>'2026-01-01T00:00:00Z'").expect("filter");
        assert_eq!(f.first.field, "dateLastModified");
        assert_eq!(f.first.op, Op::Gt);
        assert_eq!(f.first.instant, parse_instant("2026-01-01"));
        let f = parse_filter("status='active' AND familyName='O''Brien'").expect("filter");
        assert_eq!(f.first.value, "active");
        let (and, second) = f.second.expect("second clause");
        assert!(and);
        assert_eq!(second.value, "O'Brien");
        let f = parse_filter("role='student' OR role>='teacher'").expect("filter");
        assert_eq!(f.second.map(|(and, c)| (and, c.op)), Some((false, Op::Ge)));
        for bad in [
            "status",
            "status=active",
            "status='active",
            "='x'",
            "a='1' AND b='2' AND c='3'",
            "a='1' XOR b='2'",
            "dateLastModified>'yesterday'",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instants_parse() {
        let base = parse_instant("2026-01-01T00:00:00Z").expect("instant");
        assert_eq!(parse_instant("2026-01-01"), Some(base));
        assert_eq!(parse_instant("2026-01-01T00:00:00.5Z"), Some(base + 500));
        assert_eq!(parse_instant("2026-01-01T02:00:00+02:00"), Some(base));
        assert_eq!(
            crate::district::json::timestamp(base + 1),
            "2026-01-01T00:00:00.001Z"
        );
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn queries_and_links() {
        let q = parse(
            "limit=2&offset=4&filter=status%3D%27active%27&x=a%2Cb",
            100,
            None,
        )
        .expect("query");
        assert_eq!((q.limit, q.offset), (2, 4));
        assert!(q.filter.is_some());
        let link = link_header("http://h/u", &q, 7, true);
        let url = |offset: u32| {
            format!("<http://h/u?filter=status%3D%27active%27&x=a%2Cb&limit=2&offset={offset}>")
        };
        assert_eq!(
            link,
            format!(
                "{}; rel=\"first\", {}; rel=\"prev\", {}; rel=\"next\", {}; rel=\"last\"",
                url(0),
                url(2),
                url(6),
                url(6)
            )
        );
        assert_eq!(parse("", 100, Some(50)).expect("query").limit, 50);
        assert_eq!(parse("limit=500", 100, Some(50)).expect("query").limit, 50);
        for bad in ["limit=0", "limit=x", "offset=-1", "filter=nonsense"] {
            assert!(parse(bad, 100, None).is_err(), "{bad}");
        }
    }
}
