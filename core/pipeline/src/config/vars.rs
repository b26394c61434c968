//! `${VAR}` interpolation in pipeline files, from an environment passed in as a map.
//!
//! `${VAR}` takes the variable's value and `${VAR:-fallback}` a fallback when it is unset or
//! empty; `$$` is a literal `$`. Variables are read inside string values only
//! (`token = "${CLEVER_TOKEN}"`), after the file is parsed: the file's tables and keys are
//! fixed before any value is read, so a value holding quotes, line breaks or `[load]` is the
//! text of its one string and can never add or change another key. Keys and comments are
//! never interpolated.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Problem, line_column};

/// A parsed file with its variables replaced.
#[derive(Debug)]
pub(super) struct Interpolated<'i> {
    pub root: Spanned<DeTable<'i>>,
    /// The variables that were not set, each with its place. Their references are left as
    /// written (`${NAME}`).
    pub missing: Vec<Missing>,
    /// The variables used and their values: what a message must never show.
    pub values: Vec<Value>,
}

/// A variable's value, as messages must not show it.
#[derive(Debug)]
pub(super) struct Value {
    pub name: String,
    pub value: String,
    /// Whether it is used in a secret field ([`SECRET_FIELDS`]): hidden however short.
    pub secret: bool,
}

/// The fields that hold secrets, by table and key: a variable used in one is hidden in every
/// message whatever its length.
const SECRET_FIELDS: &[(&str, &str)] = &[
    // The Clever token.
    ("source", "token"),
    // A OneRoster service's OAuth client secret.
    ("source", "client_secret"),
    ("email", "password"),
    // A database URL may hold a password.
    ("load", "database"),
];

/// A variable that is not set.
#[derive(Debug)]
pub(super) struct Missing {
    pub problem: Problem,
    /// Whether it is used in the top-level `[source]` table (a secret only pulls need).
    pub in_source: bool,
}

/// Parses `text` and replaces every variable reference it can in its string values; a file
/// that does not parse, or a malformed reference, is an error.
pub(super) fn interpolate<'i>(
    text: &'i str,
    env: &BTreeMap<String, String>,
) -> Result<Interpolated<'i>, Vec<Problem>> {
    let mut root = DeTable::parse(text).map_err(|error| vec![parse_problem(text, &error)])?;
    let mut walk = Walk {
        text,
        env,
        problems: Vec::new(),
        missing: Vec::new(),
        values: Vec::new(),
    };
    for (key, value) in root.get_mut().iter_mut() {
        let table: &str = key.get_ref();
        let in_source = table == "source";
        match value.get_mut() {
            DeValue::Table(fields) => {
                for (field, value) in fields.iter_mut() {
                    let field: &str = field.get_ref();
                    let secret = SECRET_FIELDS.contains(&(table, field));
                    walk.value(value, in_source, secret);
                }
            }
            _ => walk.value(value, in_source, false),
        }
    }
    if walk.problems.is_empty() {
        Ok(Interpolated {
            root,
            missing: walk.missing,
            values: walk.values,
        })
    } else {
        Err(walk.problems)
    }
}

/// A TOML syntax error, with a hint when a variable stands outside a string.
fn parse_problem(text: &str, error: &toml::de::Error) -> Problem {
    let mut at = error.span().map(|span| span.start.min(text.len()));
    let mut message = error.message().trim_end().to_owned();
    // The parser stops at the `$` or at the `{` after it.
    let variable = at.and_then(|start| {
        (start.saturating_sub(1)..=start)
            .find(|&i| text.get(i..).is_some_and(|t| t.starts_with("${")))
    });
    if let Some(start) = variable {
        at = Some(start);
        message.push_str(" (a variable goes inside a quoted string: \"${NAME}\")");
    }
    Problem {
        at: at.map(|offset| line_column(text, offset)),
        message,
    }
}

struct Walk<'a> {
    text: &'a str,
    env: &'a BTreeMap<String, String>,
    problems: Vec<Problem>,
    missing: Vec<Missing>,
    values: Vec<Value>,
}

impl Walk<'_> {
    /// Interpolates `value`; `secret` when it is (in) a secret field.
    fn value(&mut self, value: &mut Spanned<DeValue<'_>>, in_source: bool, secret: bool) {
        let span = value.span();
        match value.get_mut() {
            DeValue::String(string) => {
                if string.contains('$') {
                    let expanded = self.string(string, span, in_source, secret);
                    *string = Cow::Owned(expanded);
                }
            }
            DeValue::Array(array) => {
                for item in array.iter_mut() {
                    self.value(item, in_source, secret);
                }
            }
            DeValue::Table(table) => {
                for (_, item) in table.iter_mut() {
                    self.value(item, in_source, secret);
                }
            }
            DeValue::Integer(_)
            | DeValue::Float(_)
            | DeValue::Boolean(_)
            | DeValue::Datetime(_) => {}
        }
    }

    /// The string `value` (written at `span` of the file) with its references replaced.
    fn string(&mut self, value: &str, span: Range<usize>, in_source: bool, secret: bool) -> String {
        let text = self.text;
        let written = text.get(span.clone()).unwrap_or_default();
        // Where the next reference is searched for in the string as written, to name its place.
        let mut cursor = 0;
        let mut place = |reference: &str| {
            let offset = match written[cursor..].find(reference) {
                Some(found) => {
                    cursor += found + reference.len();
                    span.start + cursor - reference.len()
                }
                None => span.start,
            };
            Some(line_column(text, offset))
        };
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
                continue;
            }
            let Some(inside) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                continue;
            };
            let Some(len) = inside.find('}') else {
                self.problems.push(Problem {
                    at: place("${"),
                    message: "unclosed variable reference `${`".into(),
                });
                out.push_str(&rest[dollar..]);
                rest = "";
                break;
            };
            let reference = &inside[..len];
            let whole = &rest[dollar..dollar + 2 + len + 1];
            rest = &inside[len + 1..];
            let (name, fallback) = match reference.split_once(":-") {
                Some((name, fallback)) => (name, Some(fallback)),
                None => (reference, None),
            };
            let valid_name =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                self.problems.push(Problem {
                    at: place(whole),
                    message: format!("invalid variable name {name:?}"),
                });
                continue;
            }
            match self.env.get(name).filter(|v| !v.is_empty()) {
                Some(value) => {
                    place(whole);
                    out.push_str(value);
                    self.values.push(Value {
                        name: name.to_owned(),
                        value: value.clone(),
                        secret,
                    });
                }
                None => match fallback {
                    Some(fallback) => {
                        place(whole);
                        out.push_str(fallback);
                    }
                    None => {
                        out.push_str(whole);
                        let problem = Problem {
                            at: place(whole),
                            message: format!("environment variable {name} is not set"),
                        };
                        self.missing.push(Missing { problem, in_source });
                    }
                },
            }
        }
        out.push_str(rest);
        out
    }
}

/// Values shorter than this are shown as they are, unless used in a secret field: hiding a `5`
/// would garble every number of a message.
const SHORTEST_HIDDEN: usize = 6;

/// `message` as a problem may show it: every variable value in `values` replaced by its
/// `${NAME}`, as written and as `{:?}` shows it (a problem may quote the value it is about,
/// and a value may be a secret), and the user, password and secret parameters of any URL in
/// it by `***`. A value used in a secret field is hidden whatever its length, others from
/// [`SHORTEST_HIDDEN`] characters.
pub(super) fn hide_secrets(message: &str, values: &[Value]) -> String {
    let mut message = message.to_owned();
    // Longest first, so that a value holding another is hidden whole.
    let mut values: Vec<&Value> = values
        .iter()
        .filter(|value| value.secret || value.value.chars().count() >= SHORTEST_HIDDEN)
        .collect();
    values.sort_by_key(|value| std::cmp::Reverse(value.value.len()));
    for Value { name, value, .. } in values {
        let reference = format!("${{{name}}}");
        let debug = format!("{value:?}");
        let escaped = &debug[1..debug.len() - 1];
        for shown in [value.as_str(), escaped] {
            if message.contains(shown) {
                message = message.replace(shown, &reference);
            }
        }
    }
    rosterflow_model::secret::hide_urls(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([("TOKEN".to_owned(), "a\"b\\c".to_owned())])
    }

    /// The string value of `key` (top level) once interpolated.
    fn value(source: &str, key: &str) -> String {
        let interpolated = interpolate(source, &env()).expect("well formed");
        let value = interpolated.root.get_ref().get(key).expect("the key");
        value.get_ref().as_str().expect("a string").to_owned()
    }

    #[test]
    fn values_are_taken_as_they_are_into_any_string() {
        assert_eq!(value("t = \"${TOKEN}\"", "t"), "a\"b\\c");
        assert_eq!(value("t = '${TOKEN}'", "t"), "a\"b\\c");
        assert_eq!(value("t = \"\"\"\n${TOKEN}\"\"\"", "t"), "a\"b\\c");
    }

    #[test]
    fn a_fallback_applies_only_when_unset() {
        assert_eq!(
            value("t = \"${NOPE:-sqlite://x.db} ${TOKEN:-no}\"", "t"),
            "sqlite://x.db a\"b\\c"
        );
        assert_eq!(value("t = \"${NOPE:-é}x\"", "t"), "éx");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(value("t = \"a$$b $x $\"", "t"), "a$b $x $");
    }

    #[test]
    fn every_missing_variable_is_reported_with_its_place_and_left_as_written() {
        let interpolated =
            interpolate("a = \"${A}\"\n  b = \"x ${B} ${B}\"", &env()).expect("parsed");
        let places: Vec<_> = interpolated.missing.iter().map(|m| m.problem.at).collect();
        assert_eq!(places, vec![Some((1, 6)), Some((2, 10)), Some((2, 15))]);
        let b = interpolated.root.get_ref().get("b").expect("b");
        assert_eq!(b.get_ref().as_str(), Some("x ${B} ${B}"));
    }

    #[test]
    fn a_malformed_reference_is_an_error() {
        assert!(interpolate("a = \"${A\"", &env()).is_err());
        assert!(interpolate("a = \"${A-B}\"", &env()).is_err());
    }

    #[test]
    fn keys_and_comments_are_never_interpolated() {
        let interpolated = interpolate("# ${NOPE}\n\"${TOKEN}\" = 1\n", &env()).expect("parsed");
        assert!(interpolated.missing.is_empty());
        assert!(interpolated.root.get_ref().get("${TOKEN}").is_some());
    }

    #[test]
    fn a_variable_outside_a_string_is_a_clear_error() {
        let problems = interpolate("limit = ${LIMIT}\n", &env()).expect_err("not TOML");
        assert_eq!(problems[0].at, Some((1, 9)), "{problems:?}");
        assert!(
            problems[0].message.contains("goes inside a quoted string"),
            "{problems:?}"
        );
    }

    #[test]
    fn values_and_url_passwords_are_hidden_in_messages() {
        let value = |name: &str, value: &str, secret| Value {
            name: name.to_owned(),
            value: value.to_owned(),
            secret,
        };
        let values = vec![value("SECRET", "pa\"ss-word", false)];
        assert_eq!(
            hide_secrets("invalid \"pa\\\"ss-word\" and pa\"ss-word", &values),
            "invalid \"${SECRET}\" and ${SECRET}"
        );
        let short = vec![value("LIMIT", "5", false)];
        assert_eq!(hide_secrets("between 5 and 50", &short), "between 5 and 50");
        let secret = vec![value("TOKEN", "tok", true)];
        assert_eq!(
            hide_secrets("bad value \"tok\"", &secret),
            "bad value \"${TOKEN}\""
        );
        assert_eq!(
            hide_secrets(
                "\"postgres://u:p w@h:1/x\" and https://h/a@b and s3://k@b/",
                &[]
            ),
            "\"postgres://***@h:1/x\" and https://***@b and s3://***@b/"
        );
    }

    /// A short secret is still a secret: the token `abc` of a Clever source, a database URL.
    #[test]
    fn a_short_value_of_a_secret_field_is_hidden() {
        let env = BTreeMap::from([
            ("T".to_owned(), "abc".to_owned()),
            ("N".to_owned(), "abc".to_owned()),
        ]);
        let interpolated = interpolate(
            "[source]\ntoken = \"${T}\"\nname = \"${N}\"\n[load]\ndatabase = \"${T}\"\n",
            &env,
        )
        .expect("parsed");
        let secret: Vec<(&str, bool)> = interpolated
            .values
            .iter()
            .map(|v| (v.name.as_str(), v.secret))
            .collect();
        assert_eq!(secret, [("T", true), ("N", false), ("T", true)]);
        assert_eq!(
            hide_secrets("token \"abc\"", &interpolated.values),
            "token \"${T}\""
        );
    }
}
