//! Values that must never reach a log line, an error or a report.

use std::fmt;

use serde::Deserialize;

/// A value that must never reach a log line, an error or a report.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A URL, or a text meant as one (a database URL, a source's address), as a message may show
/// it: its user and password, and the values of query parameters that carry a secret (see
/// [`is_secret_parameter`]), as `***`.
///
/// Everything between `://` (the start, when there is none) and the text's last `@` is taken
/// for a user and a password: a password may hold an unencoded `/`, `?`, `#` or `@`, so where
/// a parser ends the authority cannot be trusted. A URL whose path or query holds an `@` loses
/// more than it needs to, never less. A text that still does not read as a URL is not shown,
/// only its scheme: what makes it unreadable may be a password.
pub fn shown_url(text: &str) -> String {
    let hidden = hide_credentials(text);
    if url::Url::parse(&hidden).is_ok() {
        return hidden;
    }
    match text.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            format!("{scheme}://(not shown: not a valid URL)")
        }
        _ => "(not shown: not a valid URL)".to_owned(),
    }
}

/// `message` with every URL in it (each `://` up to the next quote, `<`, `>`, line break or
/// URL) hidden as [`shown_url`] hides it, for messages that quote a URL among other words.
pub fn hide_urls(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(scheme_end) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_end + 3);
        out.push_str(head);
        // An escaped quote (`\"`, as `{:?}` shows one in a password) does not end the URL.
        let mut end = tail.len();
        let mut previous = '\0';
        for (i, c) in tail.char_indices() {
            if matches!(c, '\n' | '\r' | '<' | '>' | '`')
                || (matches!(c, '"' | '\'') && previous != '\\')
            {
                end = i;
                break;
            }
            previous = c;
        }
        // Nor past the next URL, which is hidden on its own.
        if let Some(next) = tail[..end].find("://") {
            let scheme = tail[..next].trim_end_matches(|c: char| {
                c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
            });
            end = scheme.len();
        }
        out.push_str(&hide_credentials(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Whether a URL's query parameter named `name` (percent-decoded, any case) carries a secret:
/// a password (`password`, `sslpassword`, `passfile`, `pwd`...), a token, a secret, a key or a
/// signature (`sig`, an Azure SAS).
pub fn is_secret_parameter(name: &str) -> bool {
    let name = percent_decoded(name).to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "token",
        "secret",
        "key",
        "sig",
        "credential",
        "auth",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// `text` with its user and password (up to the last `@`) and its secret parameters hidden.
fn hide_credentials(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let (head, rest) = text.split_at(start);
    let mut out = head.to_owned();
    let rest = match rest.rfind('@') {
        Some(at) => {
            out.push_str("***");
            &rest[at..]
        }
        None => rest,
    };
    let Some(query) = rest.find(['?', '#']) else {
        out.push_str(rest);
        return out;
    };
    out.push_str(&rest[..=query]);
    let mut parameters = &rest[query + 1..];
    loop {
        let end = parameters.find(['&', ';', '#']).unwrap_or(parameters.len());
        let parameter = &parameters[..end];
        match parameter.split_once('=') {
            Some((name, _)) if is_secret_parameter(name) => {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => out.push_str(parameter),
        }
        let Some(separator) = parameters[end..].chars().next() else {
            break;
        };
        out.push(separator);
        parameters = &parameters[end + 1..];
    }
    out
}

/// `text` with its `%XX` escapes and `+` decoded, as a URL's query names are read.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_hides_its_user_and_password() {
        assert_eq!(
            shown_url("postgres://u:secretpw@127.0.0.1:5432/x?sslmode=require"),
            "postgres://***@127.0.0.1:5432/x?sslmode=require"
        );
        assert_eq!(shown_url("sqlite://freckle.db"), "sqlite://freckle.db");
        assert_eq!(shown_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(shown_url("postgres://u@h/x"), "postgres://***@h/x");
        for url in [
            "postgres://u:p w@h/x",
            "postgres://u:secret/pw@h:5432/x",
            "postgres://u:12/secretpw@h/x",
            "postgres://u:se@cret/pw@h/x",
            "postgres://u:secret?pw@h/x",
            "postgres://u:secret#pw@h/x",
            "https://u:secretpw@h@host/x",
            "u:secretpw@h",
        ] {
            let shown = shown_url(url);
            assert!(!shown.contains("secret"), "{url}: {shown}");
            assert!(!shown.contains("pw"), "{url}: {shown}");
        }
        assert_eq!(
            shown_url("postgres://u:secret/pw@h:5432/x"),
            "postgres://***@h:5432/x"
        );
    }

    /// sqlx takes `?password=` (and libpq `sslpassword`): it is as secret as the userinfo's.
    #[test]
    fn a_shown_url_hides_the_values_of_secret_parameters() {
        assert_eq!(
            shown_url("postgres://u@h/x?password=secretpw&sslmode=require"),
            "postgres://***@h/x?password=***&sslmode=require"
        );
        assert_eq!(
            shown_url("postgres://h/x?sslmode=require&SSLPassword=secretpw"),
            "postgres://h/x?sslmode=require&SSLPassword=***"
        );
        assert_eq!(
            shown_url("postgres://h/x?pass%77ord=secretpw"),
            "postgres://h/x?pass%77ord=***"
        );
        assert_eq!(
            shown_url("https://h/x?access_token=a&api_key=b&client_secret=c&sig=d#id_token=e"),
            "https://h/x?access_token=***&api_key=***&client_secret=***&sig=***#id_token=***"
        );
        assert_eq!(shown_url("https://h/x?limit=5"), "https://h/x?limit=5");
    }

    /// What cannot be read as a URL may hold a password anywhere.
    #[test]
    fn a_text_that_is_no_url_is_not_shown() {
        assert_eq!(
            shown_url("postgres://u:secretpw/h/x"),
            "postgres://(not shown: not a valid URL)"
        );
        assert_eq!(shown_url("secretpw"), "(not shown: not a valid URL)");
        assert_eq!(
            shown_url("a b://u:secretpw/h"),
            "(not shown: not a valid URL)"
        );
    }

    #[test]
    fn urls_in_a_message_are_hidden_and_the_rest_kept() {
        assert_eq!(
            hide_urls("bad \"postgres://u:p w@h:1/x\" and `s3://k@b/`: see https://h/a"),
            "bad \"postgres://***@h:1/x\" and `s3://***@b/`: see https://h/a"
        );
        assert_eq!(
            hide_urls("\"postgres://u:p\\\"w@h/x?password=pw\" is wrong"),
            "\"postgres://***@h/x?password=***\" is wrong"
        );
        assert_eq!(hide_urls("no URL: a@b"), "no URL: a@b");
        // The next URL ends the one before: its `://` is never taken for the first one's.
        assert_eq!(
            hide_urls("see https://u:secretpw@h and s3://x/y"),
            "see https://***@h and s3://x/y"
        );
    }
}
