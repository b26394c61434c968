//! Range pagination as Clever does it, and the list-page JSON it produces.
//!
//! Records are sorted by id ascending. `starting_after=<id>` returns up to `limit` records with
//! larger ids; `ending_before=<id>` the last `limit` records with smaller ids (still ascending;
//! `ending_before=last` means the end of the list, as Clever's own JS client test uses it).
//! Links: `self` echoes the request; `next` (`starting_after=<last id on the page>`) and `prev`
//! (`ending_before=<first id>`). As Clever documents, `starting_after` pages carry a `prev` link
//! even when nothing precedes them and, with `empty_last_page` on, the last page of a list still
//! carries a `next` link, which returns `{"data":[],"links":[..]}`.
//!
//! The page body is built from the stored JSON text of each record, so a page is served as fast
//! as it can be copied, and [`crate::district::Dataset::write_recording`] writes the very same
//! bytes.

use crate::district::{Collection, Record};

/// Where a page starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cursor<'a> {
    /// The beginning of the list.
    Start,
    /// `starting_after=<id>`
    After(&'a str),
    /// `ending_before=<id>`; `None` for `ending_before=last`.
    Before(Option<&'a str>),
}

/// A list request, already validated.
pub(crate) struct ListQuery<'a> {
    /// `v3.0` or `v3.1`: the version segment of every uri.
    pub(crate) version: &'a str,
    pub(crate) collection: Collection,
    pub(crate) limit: usize,
    /// Whether the request named `limit` (links repeat it only then, as Clever's do).
    pub(crate) explicit_limit: bool,
    pub(crate) cursor: Cursor<'a>,
    /// Other query parameters to repeat in the links (`role`, `record_type`, `school`), in order.
    pub(crate) params: Vec<(&'a str, &'a str)>,
    /// The request's path and query, echoed as the `self` link.
    pub(crate) self_uri: &'a str,
    /// Whether the last non-empty page still carries a `next` link.
    pub(crate) empty_last_page: bool,
}

/// A rendered list page.
pub(crate) struct Page {
    /// `{"data":[...],"links":[...]}`
    pub(crate) body: String,
    /// The `next` link's uri, if the page has one.
    pub(crate) next_uri: Option<String>,
    /// The id of the last record on the page.
    pub(crate) last_id: Option<String>,
}

/// Renders the page of `records` (sorted by key) that `query` asks for, counting only the
/// records `keep` accepts (the role and event filters).
pub(crate) fn render_list(
    records: &[Record],
    query: &ListQuery<'_>,
    keep: &dyn Fn(&Record) -> bool,
) -> Page {
    let limit = query.limit.max(1);
    let (page, more_before, more_after): (Vec<&Record>, bool, bool) = match query.cursor {
        Cursor::Start | Cursor::After(_) => {
            let start = match query.cursor {
                Cursor::After(id) => records.partition_point(|r| &*r.key <= id),
                _ => 0,
            };
            let mut page: Vec<&Record> = records[start..]
                .iter()
                .filter(|r| keep(r))
                .take(limit + 1)
                .collect();
            let more_after = page.len() > limit;
            page.truncate(limit);
            (page, matches!(query.cursor, Cursor::After(_)), more_after)
        }
        Cursor::Before(id) => {
            let end = id.map_or(records.len(), |id| {
                records.partition_point(|r| &*r.key < id)
            });
            let mut page: Vec<&Record> = records[..end]
                .iter()
                .rev()
                .filter(|r| keep(r))
                .take(limit + 1)
                .collect();
            let more_before = page.len() > limit;
            page.truncate(limit);
            page.reverse();
            // Clever: ending_before pages may have a next link even with nothing after them.
            let more_after =
                !page.is_empty() && (query.empty_last_page || records[end..].iter().any(keep));
            (page, more_before, more_after)
        }
    };

    let collection = query.collection.name();
    let mut body = String::with_capacity(
        64 + page
            .iter()
            .map(|r| r.json.len() + r.key.len() + 40)
            .sum::<usize>(),
    );
    body.push_str("{\"data\":[");
    for (i, record) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"data\":");
        body.push_str(&record.json);
        body.push_str(",\"uri\":");
        push_json_string(
            &mut body,
            &format!("/{}/{collection}/{}", query.version, record.key),
        );
        body.push('}');
    }
    body.push_str("],\"links\":[");
    push_link(&mut body, "self", query.self_uri);

    let last_id = page.last().map(|r| r.key.to_string());
    let first_id = page.first().map(|r| r.key.to_string());
    let next_wanted = match query.cursor {
        Cursor::Before(_) => more_after,
        _ => more_after || query.empty_last_page,
    };
    let next_uri = match (&last_id, next_wanted) {
        (Some(last), true) => Some(link_uri(query, "starting_after", last)),
        _ => None,
    };
    if let (Some(first), true) = (&first_id, more_before) {
        body.push(',');
        push_link(&mut body, "prev", &link_uri(query, "ending_before", first));
    }
    if let Some(next) = &next_uri {
        body.push(',');
        push_link(&mut body, "next", next);
    }
    body.push_str("]}");
    Page {
        body,
        next_uri,
        last_id,
    }
}

/// A link to the same list with another cursor: `limit` first (if the request gave it), the
/// filters, then the cursor.
fn link_uri(query: &ListQuery<'_>, cursor: &str, id: &str) -> String {
    let mut uri = format!("/{}/{}?", query.version, query.collection.name());
    if query.explicit_limit {
        uri.push_str(&format!("limit={}&", query.limit));
    }
    for (key, value) in &query.params {
        uri.push_str(&format!("{}={}&", encode(key), encode(value)));
    }
    uri.push_str(&format!("{cursor}={}", encode(id)));
    uri
}

fn push_link(body: &mut String, rel: &str, uri: &str) {
    body.push_str("{\"rel\":\"");
    body.push_str(rel);
    body.push_str("\",\"uri\":");
    push_json_string(body, uri);
    body.push('}');
}

fn push_json_string(body: &mut String, s: &str) {
    crate::district::json::push_str(body, s);
}

/// Percent-encodes a query component (everything but unreserved characters).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: format!("{:024x}", i * 3 + 1).into(),
                json: format!(r#"{{"id":"{:024x}","n":{i}}}"#, i * 3 + 1).into(),
                roles: (i % 2) as u8,
            })
            .collect()
    }

    fn query<'a>(
        cursor: Cursor<'a>,
        self_uri: &'a str,
        limit: usize,
        empty_last_page: bool,
    ) -> ListQuery<'a> {
        ListQuery {
            version: "v3.0",
            collection: Collection::Users,
            limit,
            explicit_limit: true,
            cursor,
            params: Vec::new(),
            self_uri,
            empty_last_page,
        }
    }

    fn ids(body: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(body).expect("page is json");
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|d| d["data"]["id"].as_str().expect("id").to_string())
            .collect()
    }

    #[test]
    fn following_next_covers_every_record_once() {
        let recs = records(23);
        for empty_last in [true, false] {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            let mut pages = 0;
            loop {
                let cursor = after.as_deref().map_or(Cursor::Start, Cursor::After);
                let page = render_list(
                    &recs,
                    &query(cursor, "/v3.0/users?limit=5", 5, empty_last),
                    &|_| true,
                );
                pages += 1;
                let got = ids(&page.body);
                if got.is_empty() {
                    break;
                }
                seen.extend(got);
                match page.next_uri {
                    Some(_) => after = page.last_id,
                    None => break,
                }
            }
            let all: Vec<String> = recs.iter().map(|r| r.key.to_string()).collect();
            assert_eq!(seen, all);
            assert_eq!(pages, if empty_last { 6 } else { 5 });
        }
    }

    #[test]
    fn ending_before_returns_the_previous_records_ascending() {
        let recs = records(10);
        let before = recs[6].key.to_string();
        let page = render_list(
            &recs,
            &query(Cursor::Before(Some(&before)), "/x", 3, true),
            &|_| true,
        );
        let want: Vec<String> = recs[3..6].iter().map(|r| r.key.to_string()).collect();
        assert_eq!(ids(&page.body), want);
        assert!(page.body.contains("\"rel\":\"prev\""));
        let last = render_list(&recs, &query(Cursor::Before(None), "/x", 2, false), &|_| {
            true
        });
        assert_eq!(
            ids(&last.body),
            vec![recs[8].key.to_string(), recs[9].key.to_string()]
        );
        assert!(last.next_uri.is_none());
    }

    #[test]
    fn filters_and_links_carry_the_parameters() {
        let recs = records(10);
        let mut q = query(Cursor::Start, "/v3.0/users?limit=2&role=student", 2, true);
        q.params = vec![("role", "student")];
        let page = render_list(&recs, &q, &|r| r.roles == 1);
        assert_eq!(
            ids(&page.body),
            vec![recs[1].key.to_string(), recs[3].key.to_string()]
        );
        assert_eq!(
            page.next_uri.as_deref(),
            Some(&*format!(
                "/v3.0/users?limit=2&role=student&starting_after={}",
                recs[3].key
            ))
        );
        let v: Value = serde_json::from_str(&page.body).expect("json");
        assert_eq!(v["data"][0]["uri"], format!("/v3.0/users/{}", recs[1].key));
        assert_eq!(
            v["links"][0],
            serde_json::json!({"rel": "self", "uri": "/v3.0/users?limit=2&role=student"})
        );
    }
}
