//! Outside text (a source's record, a plugin's message, a server's error) as rosterflow's own
//! messages carry it: bounded, on one line, and never able to forge a log line.

/// A value as a message quotes it: quoted and escaped as Rust shows a string (`"a\nb"`), cut
/// to its first 40 characters (`"…"...` when cut).
pub fn quoted(value: &str) -> String {
    const LONGEST: usize = 40;
    match value.char_indices().nth(LONGEST) {
        Some((end, _)) => format!("{:?}...", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// `text` on one line of at most `max` characters (and `...` when cut): control characters (a
/// line break would forge a log line) become spaces.
pub fn one_line(text: &str, max: usize) -> String {
    let mut line: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        line.push_str("...");
    }
    line
}

/// `text` with its first letter upper case, for a sentence that starts with it.
pub fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_value_is_escaped_and_cut_to_forty_characters() {
        assert_eq!(quoted("a\"b\nc"), "\"a\\\"b\\nc\"");
        let long = "é".repeat(41);
        assert_eq!(quoted(&long), format!("\"{}\"...", "é".repeat(40)));
        assert_eq!(quoted(&"é".repeat(40)), format!("\"{}\"", "é".repeat(40)));
    }

    #[test]
    fn one_line_turns_control_characters_to_spaces_and_is_bounded() {
        assert_eq!(one_line("a\nb\r\tc\u{7f}", 100), "a b  c ");
        assert_eq!(one_line("abcdef", 3), "abc...");
        assert_eq!(one_line("abc", 3), "abc");
        assert_eq!(one_line(&"\u{2028}x".repeat(500), 10).chars().count(), 13);
    }
}
