//! `${VAR}` interpolation in pipeline files, from an environment passed in as a map.
//!
//! `${VAR}` takes the variable's value and `${VAR:-fallback}` a fallback when it is unset or
//! empty; `$$` is a literal `$`. Values are escaped for a TOML basic string, which is where
//! variables belong (`token = "${CLEVER_TOKEN}"`), so a quote or backslash in a secret cannot
//! change the file's structure.

use std::collections::BTreeMap;

use super::Problem;

/// Text with its variables replaced, and the variables that were not set: their references are
/// left as written (`${NAME}`), each with its place.
#[derive(Debug)]
pub(super) struct Interpolated {
    pub text: String,
    pub missing: Vec<(String, Problem)>,
}

/// Replaces every variable reference it can; a malformed reference is an error.
pub(super) fn interpolate(
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<Interpolated, Vec<Problem>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut missing = Vec::new();
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
                        None => {
                            out.push_str(&text[start..=start + len]);
                            let problem = Problem {
                                at: Some(at),
                                message: format!("environment variable {name} is not set"),
                            };
                            missing.push((name.to_owned(), problem));
                        }
                    },
                }
            }
            _ => out.push(c),
        }
    }
    if problems.is_empty() {
        Ok(Interpolated { text: out, missing })
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

    fn text(source: &str) -> String {
        interpolate(source, &env()).expect("well formed").text
    }

    #[test]
    fn values_are_escaped_for_a_basic_string() {
        assert_eq!(text("t = \"${TOKEN}\""), "t = \"a\\\"b\\\\c\"");
    }

    #[test]
    fn a_fallback_applies_only_when_unset() {
        assert_eq!(
            text("${NOPE:-sqlite://x.db} ${TOKEN:-no}"),
            "sqlite://x.db a\\\"b\\\\c"
        );
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(text("a$$b $x"), "a$b $x");
    }

    #[test]
    fn every_missing_variable_is_reported_with_its_place_and_left_as_written() {
        let interpolated = interpolate("a = \"${A}\"\n  b = \"${B}\"", &env()).expect("parsed");
        let places: Vec<_> = interpolated.missing.iter().map(|(_, p)| p.at).collect();
        assert_eq!(places, vec![Some((1, 6)), Some((2, 8))]);
        assert_eq!(interpolated.text, "a = \"${A}\"\n  b = \"${B}\"");
    }

    #[test]
    fn a_malformed_reference_is_an_error() {
        assert!(interpolate("a = \"${A\"", &env()).is_err());
        assert!(interpolate("a = \"${A-B}\"", &env()).is_err());
    }
}
