//! `${VAR}` interpolation in pipeline files, from an environment passed in as a map.
//!
//! `${VAR}` takes the variable's value and `${VAR:-fallback}` a fallback when it is unset or
//! empty; `$$` is a literal `$`. Values are escaped for a TOML basic string, which is where
//! variables belong (`token = "${CLEVER_TOKEN}"`), so a quote or backslash in a secret cannot
//! change the file's structure.

use std::collections::BTreeMap;

use super::Problem;

/// Replaces every variable reference, or returns every missing variable with its place.
pub(super) fn interpolate(
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, Vec<Problem>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let (mut line, mut column) = (1, 1);
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let at = (line, column);
        if c == '\n' {
            (line, column) = (line + 1, 1);
        } else {
            column += 1;
        }
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some((_, '$')) => {
                chars.next();
                column += 1;
                out.push('$');
            }
            Some((_, '{')) => {
                let Some(len) = text[start..].find('}') else {
                    problems.push(Problem {
                        at: Some(at),
                        message: "unclosed variable reference `${`".into(),
                    });
                    out.push(c);
                    continue;
                };
                let reference = &text[start + 2..start + len];
                // Skip the reference's characters; it never spans lines.
                for _ in 0..len {
                    chars.next();
                    column += 1;
                }
                let (name, fallback) = match reference.split_once(":-") {
                    Some((name, fallback)) => (name, Some(fallback)),
                    None => (reference, None),
                };
                let valid_name =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid_name {
                    problems.push(Problem {
                        at: Some(at),
                        message: format!("invalid variable name {name:?}"),
                    });
                    continue;
                }
                match env.get(name).filter(|v| !v.is_empty()).map(String::as_str) {
                    Some(value) => out.push_str(&escape(value)),
                    None => match fallback {
                        Some(fallback) => out.push_str(fallback),
                        None => problems.push(Problem {
                            at: Some(at),
                            message: format!("environment variable {name} is not set"),
                        }),
                    },
                }
            }
            _ => out.push(c),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() => escaped.push_str(&format!("\\u{:04X}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([("TOKEN".to_owned(), "a\"b\\c".to_owned())])
    }

    #[test]
    fn values_are_escaped_for_a_basic_string() {
        assert_eq!(
            interpolate("t = \"${TOKEN}\"", &env()).expect("set"),
            "t = \"a\\\"b\\\\c\""
        );
    }

    #[test]
    fn a_fallback_applies_only_when_unset() {
        assert_eq!(
            interpolate("${NOPE:-sqlite://x.db} ${TOKEN:-no}", &env()).expect("fallback"),
            "sqlite://x.db a\\\"b\\\\c"
        );
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(interpolate("a$$b $x", &env()).expect("literal"), "a$b $x");
    }

    #[test]
    fn every_missing_variable_is_reported_with_its_place() {
        let problems = interpolate("a = \"${A}\"\n  b = \"${B}\"", &env()).expect_err("missing");
        let places: Vec<_> = problems.iter().map(|p| p.at).collect();
        assert_eq!(places, vec![Some((1, 6)), Some((2, 8))]);
    }
}
