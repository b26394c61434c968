//! One page of a collection, and how pages follow each other.
//!
//! A page is `{"<collection>": [records]}`; `X-Total-Count` and a `Link` header with `next`
//! say whether more follow, when the service sends them. Without either, a page shorter than
//! the page size ends the collection. A service may serve fewer records a page than `limit`
//! asks for, silently: so a short first page is followed by one more request, and if that one
//! has records, the first page's size is the service's page size from then on (a full first
//! page shows that the service serves `limit`).
//!
//! A 200 carrying the spec's status envelope with `imsx_codeMajor` `failure` (or
//! `unsupported`) is an error, not an empty page.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::ExtractError;

/// A page read.
#[derive(Debug)]
pub(super) struct Page {
    pub records: Vec<Value>,
    /// `X-Total-Count`.
    pub total: Option<u64>,
    /// With a `Link` header, whether it has `next`.
    pub next: Option<bool>,
}

/// Reads the page at `origin` of the collection whose records come under `key`.
pub(super) fn read(
    body: &[u8],
    headers: &HeaderMap,
    key: &str,
    origin: &str,
) -> Result<Page, ExtractError> {
    let refuse = |reason: String| ExtractError::Page {
        origin: origin.to_owned(),
        reason,
        snippet: snippet(body),
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| refuse(format!("not a OneRoster page: {error}")))?;
    if let Some(failure) = failure(&value) {
        // A busy service may pass on the next try; anything else it will say again.
        if failure.busy {
            return Err(refuse(failure.message));
        }
        return Err(ExtractError::Service {
            status: 200,
            url: origin.to_owned(),
            message: failure.message,
        });
    }
    let records = match value {
        Value::Object(mut object) => match object.remove(key) {
            Some(Value::Array(records)) => records,
            Some(Value::Null) => Vec::new(),
            Some(_) => return Err(refuse(format!("{key} is not a list"))),
            // Tolerated: the one list of a page whose key is spelt otherwise.
            None => {
                let mut lists = object.into_iter().filter_map(|(_, v)| match v {
                    Value::Array(records) => Some(records),
                    _ => None,
                });
                match (lists.next(), lists.next()) {
                    (Some(records), None) => records,
                    _ => return Err(refuse(format!("the page has no {key} list"))),
                }
            }
        },
        Value::Array(records) => records,
        _ => return Err(refuse(format!("the page has no {key} list"))),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Ok(Page {
        records,
        total: header("x-total-count").and_then(|v| v.trim().parse().ok()),
        next: header("link").map(has_next),
    })
}

/// Whether a `Link` header (`<url>; rel="next", <url>; rel="last"`) has a `next` link.
pub(super) fn has_next(link: &str) -> bool {
    // Each link is `<url>` then its parameters; a URL may hold commas and semicolons.
    link.split('<')
        .filter_map(|l| l.split_once('>'))
        .any(|(_, params)| {
            params.split([';', ',']).any(|param| {
                param.split_once('=').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("rel")
                        && value
                            .trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|rel| rel.eq_ignore_ascii_case("next"))
                })
            })
        })
}

/// A failure status envelope.
struct Failure {
    message: String,
    /// The service said it is busy or failed inside: worth another try.
    busy: bool,
}

/// The failure a body's status envelope reports: `imsx_codeMajor` at the top, in
/// `imsx_statusInfo`, or in a `statusInfoSet`.
fn failure(value: &Value) -> Option<Failure> {
    let status = |info: &Value| -> Option<Failure> {
        let major = info.get("imsx_codeMajor")?.as_str()?;
        if !(major.eq_ignore_ascii_case("failure") || major.eq_ignore_ascii_case("unsupported")) {
            return None;
        }
        let minor = code_minor(info);
        let description = info
            .get("imsx_description")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        Some(Failure {
            message: match &minor {
                Some(minor) => format!("{major}, {minor}: {description}"),
                None => format!("{major}: {description}"),
            },
            busy: minor.as_deref().is_some_and(|m| {
                m.eq_ignore_ascii_case("server_busy")
                    || m.eq_ignore_ascii_case("internal_server_error")
            }),
        })
    };
    status(value)
        .or_else(|| value.get("imsx_statusInfo").and_then(status))
        .or_else(|| {
            value
                .get("statusInfoSet")
                .and_then(Value::as_array)?
                .iter()
                .find_map(status)
        })
}

/// `imsx_CodeMinor.imsx_codeMinorField[0].imsx_codeMinorFieldValue`.
fn code_minor(info: &Value) -> Option<String> {
    let fields = info.get("imsx_CodeMinor")?.get("imsx_codeMinorField")?;
    let field = match fields {
        Value::Array(fields) => fields.first()?,
        other => other,
    };
    Some(field.get("imsx_codeMinorFieldValue")?.as_str()?.to_owned())
}

/// What an error answer says: its status envelope, an OAuth error (`error`,
/// `error_description`), or the start of its text.
pub(super) fn status_message(body: &[u8], status: StatusCode) -> String {
    let reason = || {
        status
            .canonical_reason()
            .unwrap_or("unexpected status")
            .to_owned()
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let text = snippet(body);
        return if text.trim().is_empty() || text.trim_start().starts_with('<') {
            reason()
        } else {
            text
        };
    };
    if let Some(failure) = failure(&value) {
        return failure.message;
    }
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return match value.get("error_description").and_then(Value::as_str) {
            Some(description) => format!("{error}: {description}"),
            None => error.to_owned(),
        };
    }
    reason()
}

/// The start of a body, for messages.
fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// Where the paging of one collection stands.
#[derive(Debug)]
pub(super) struct Paging {
    limit: u64,
    offset: u64,
    /// The service's page size, once a full page, or a page after a short one, showed it.
    cap: Option<u64>,
    /// The size of the short page whose next page is being asked for.
    probe: Option<u64>,
    probed: bool,
}

impl Paging {
    pub(super) fn new(limit: u32) -> Paging {
        Paging {
            limit: u64::from(limit.max(1)),
            offset: 0,
            cap: None,
            probe: None,
            probed: false,
        }
    }

    /// The offset of the next page.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the page being asked for follows a short page, to learn the service's size.
    pub(super) fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// Takes a page of `records` at the current offset; whether another page follows.
    pub(super) fn next(&mut self, records: u64, total: Option<u64>, next: Option<bool>) -> bool {
        let at = self.offset;
        self.offset += records;
        let probe = self.probe.take();
        if records == 0 {
            return false;
        }
        if let Some(total) = total {
            return at + records < total;
        }
        if let Some(next) = next {
            return next;
        }
        if let Some(short) = probe {
            // The page after a short one has records: the service serves at most that many.
            self.cap = Some(short);
            return records >= short;
        }
        let size = self.cap.unwrap_or(self.limit);
        if records >= size {
            // A full page shows the page size: the next short page is the last.
            self.cap = Some(size);
            return true;
        }
        if self.cap.is_none() && !self.probed {
            self.probed = true;
            self.probe = Some(records);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn page(body: &str, headers: &[(&'static str, &str)]) -> Result<Page, ExtractError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        read(
            body.as_bytes(),
            &map,
            "users",
            "https://h/users?limit=2&offset=0",
        )
    }

    #[test]
    fn a_page_is_its_list_and_its_headers() {
        let p = page(
            r#"{"users": [{"sourcedId": "a"}, {"sourcedId": "b"}]}"#,
            &[
                ("x-total-count", "5"),
                ("link", "<https://h/users?limit=2&offset=2>; rel=\"next\""),
            ],
        )
        .expect("page");
        assert_eq!((p.records.len(), p.total, p.next), (2, Some(5), Some(true)));
        let p = page(
            r#"{"users": []}"#,
            &[("link", "<https://h/u>; rel=\"first\"")],
        )
        .expect("page");
        assert_eq!((p.records.len(), p.total, p.next), (0, None, Some(false)));
        let p = page(r#"{"Users": [{"sourcedId": "a"}]}"#, &[]).expect("one list, other key");
        assert_eq!(p.records.len(), 1);
        assert!(matches!(
            page(r#"{"a": [], "b": []}"#, &[]),
            Err(ExtractError::Page { .. })
        ));
        assert!(matches!(
            page(r#"{"users": [{"sourcedId"#, &[]),
            Err(ExtractError::Page { .. })
        ));
        assert!(matches!(
            page("<html></html>", &[]),
            Err(ExtractError::Page { .. })
        ));
    }

    #[test]
    fn an_error_envelope_in_a_200_is_an_error() {
        let envelope = |minor: &str| {
            format!(
                r#"{{"imsx_codeMajor": "failure", "imsx_severity": "error",
                    "imsx_description": "cannot filter on shoeSize",
                    "imsx_CodeMinor": {{"imsx_codeMinorField": [{{
                        "imsx_codeMinorFieldName": "TargetEndSystem",
                        "imsx_codeMinorFieldValue": "{minor}"}}]}}}}"#
            )
        };
        let error = page(&envelope("invalid_filter_field"), &[]).expect_err("failure");
        let ExtractError::Service {
            status, message, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(*status, 200);
        assert_eq!(
            message,
            "failure, invalid_filter_field: cannot filter on shoeSize"
        );
        assert!(!error.is_retryable());
        let busy = page(&envelope("server_busy"), &[]).expect_err("busy");
        assert!(busy.is_retryable(), "{busy:?}");
        let wrapped = format!(r#"{{"statusInfoSet": [{}], "users": []}}"#, envelope("x"));
        assert!(matches!(
            page(&wrapped, &[]),
            Err(ExtractError::Service { .. })
        ));
        let warning = r#"{"imsx_codeMajor": "success", "imsx_severity": "warning", "users": []}"#;
        assert!(page(warning, &[]).is_ok());
    }

    #[test]
    fn error_answers_say_what_the_server_said() {
        let message = |body: &str| status_message(body.as_bytes(), StatusCode::BAD_REQUEST);
        assert_eq!(
            message(r#"{"error": "invalid_client", "error_description": "wrong secret"}"#),
            "invalid_client: wrong secret"
        );
        assert_eq!(message(r#"{"error": "invalid_scope"}"#), "invalid_scope");
        assert_eq!(message("<html>nope</html>"), "Bad Request");
        assert_eq!(message(""), "Bad Request");
        assert_eq!(message("plain words"), "plain words");
        assert_eq!(message("{}"), "Bad Request");
    }

    #[test]
    fn link_headers_are_read_by_rel() {
        assert!(has_next(
            r#"<https://h/u?limit=2&offset=0>; rel="first", <https://h/u?filter=a%2Cb;x&offset=2>; rel="next""#
        ));
        assert!(has_next("<https://h/u>; rel=next"));
        assert!(has_next(r#"<https://h/u>; title="x"; rel="prev next""#));
        assert!(!has_next(
            r#"<https://h/u>; rel="first", <https://h/u>; rel="last""#
        ));
        assert!(!has_next(r#"<https://h/next>; rel="prev""#));
        assert!(!has_next(""));
    }

    /// Pages of the given sizes, with no headers: the offsets asked for and how many pages.
    fn walk(limit: u32, pages: &[u64]) -> Vec<u64> {
        let mut paging = Paging::new(limit);
        let mut offsets = Vec::new();
        for &records in pages {
            offsets.push(paging.offset());
            if !paging.next(records, None, None) {
                return offsets;
            }
        }
        panic!("still paging after {pages:?}: {offsets:?}");
    }

    #[test]
    fn without_headers_a_short_page_ends_once_the_page_size_is_known() {
        assert_eq!(walk(10, &[10, 10, 3]), [0, 10, 20]);
        assert_eq!(walk(10, &[10, 10, 0]), [0, 10, 20], "an empty page ends");
        assert_eq!(
            walk(10, &[4, 0]),
            [0, 4],
            "a short first page is checked once"
        );
        // A service that serves 4 a page whatever limit asks for.
        assert_eq!(walk(10, &[4, 4, 4, 1]), [0, 4, 8, 12]);
        assert_eq!(walk(10, &[4, 4, 0]), [0, 4, 8]);
        assert_eq!(walk(10, &[10, 7]), [0, 10], "a full page showed the size");
        assert_eq!(walk(10, &[3, 0]), [0, 3]);
    }

    #[test]
    fn the_count_and_links_decide_when_sent() {
        let mut paging = Paging::new(10);
        assert!(paging.next(4, Some(9), None), "4 of 9: a capped page");
        assert_eq!(paging.offset(), 4);
        assert!(paging.next(4, Some(9), None));
        assert!(!paging.next(1, Some(9), None));
        let mut paging = Paging::new(10);
        assert!(paging.next(4, None, Some(true)));
        assert!(!paging.next(4, None, Some(false)));
        let mut paging = Paging::new(10);
        assert!(
            !paging.next(0, Some(9), Some(true)),
            "an empty page always ends"
        );
    }
}
