//! What the simulator does with one request: count it, apply an injected fault, then either
//! answer the token endpoint or check the bearer token, count it against the rate limit and
//! route it (`<base>/<collection>` lists, `<base>/<collection>/<sourcedId>` single records),
//! and log the outcome. Errors of the API carry the spec's `imsx_StatusInfo` envelope.

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use super::query::{self, FieldValue, ListQuery, QueryError};
use super::store::{Row, Store, Table};
use super::{Fault, LoggedRequest, OneRosterOptions, Shared, lock, oauth};
use crate::district::OneRosterVersion;
use crate::district::json::timestamp;
use crate::district::oneroster::entity::{Entity, Refs};
use crate::district::oneroster::feed::{Class, Course, Enrollment, Org, OrgType, Session, User};

const JSON: &str = "application/json; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
/// The largest token request body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A response before it becomes HTTP.
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: String,
    headers: Vec<(HeaderName, String)>,
}

impl Answer {
    fn json(status: StatusCode, body: String) -> Answer {
        Answer {
            status,
            content_type: JSON,
            body,
            headers: Vec::new(),
        }
    }

    /// An error with the spec's status envelope.
    fn status_info(status: StatusCode, code_minor: &str, description: &str) -> Answer {
        let body = json!({
            "imsx_codeMajor": "failure",
            "imsx_severity": "error",
            "imsx_description": description,
            "imsx_CodeMinor": {
                "imsx_codeMinorField": [{
                    "imsx_codeMinorFieldName": "TargetEndSystem",
                    "imsx_codeMinorFieldValue": code_minor,
                }],
            },
        });
        Answer::json(status, body.to_string())
    }

    fn query_error(error: QueryError) -> Answer {
        Answer::status_info(
            StatusCode::BAD_REQUEST,
            error.code_minor,
            &error.description,
        )
    }

    fn with(mut self, name: HeaderName, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }
}

/// The code minor that goes with an injected status.
fn code_minor(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invaliddata",
        401 => "unauthorisedrequest",
        403 => "forbidden",
        404 => "unknownobject",
        429 => "server_busy",
        _ => "internal_server_error",
    }
}

/// The one handler behind every path.
pub(crate) async fn handle(State(sim): State<Arc<Shared>>, request: Request) -> Response {
    let n = sim.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let method = request.method().clone();
    let uri = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_string(), |pq| pq.to_string());
    lock(&sim.received).push(uri.clone());
    let fault = lock(&sim.faults).take(n, &uri);

    let mut stopped = false;
    if let Some(Fault::Slow(delay)) = &fault {
        let mut stop = sim.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(*delay) => {}
            _ = stop.wait_for(|stopped| *stopped) => stopped = true,
        }
    }
    let answer = match &fault {
        _ if stopped => Answer::status_info(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "the simulator is stopping",
        ),
        Some(Fault::RateLimited { retry_after_secs }) => Answer::status_info(
            StatusCode::TOO_MANY_REQUESTS,
            "server_busy",
            "too many requests",
        )
        .with(header::RETRY_AFTER, retry_after_secs.to_string()),
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Answer::status_info(
                status,
                code_minor(status),
                &format!("simulated failure: {status}"),
            )
        }
        Some(Fault::Html) => Answer {
            status: StatusCode::OK,
            content_type: HTML,
            body: "<!DOCTYPE html>\n<html><body><h1>Service unavailable</h1></body></html>\n"
                .to_string(),
            headers: Vec::new(),
        },
        _ => answer(&sim, &method, &uri, request).await,
    };
    lock(&sim.log).push(LoggedRequest {
        method: method.to_string(),
        uri,
        status: answer.status.as_u16(),
        fault: fault.clone(),
    });

    let body = match fault {
        Some(Fault::TruncatedJson) => Body::from(cut_in_half(answer.body)),
        Some(Fault::DropMidBody) => {
            // The first half goes out (the pause lets it be flushed), then the body fails and
            // the server aborts the connection.
            let half: Result<Bytes, std::io::Error> = Ok(Bytes::from(cut_in_half(answer.body)));
            let failure = async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "dropped mid-body by fault injection",
                ))
            };
            Body::from_stream(stream::iter([half]).chain(stream::once(failure)))
        }
        _ => Body::from(answer.body),
    };
    let mut response = Response::new(body);
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(name, value);
        }
    }
    response
}

fn cut_in_half(body: String) -> String {
    let mut cut = body.len() / 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body[..cut].to_string()
}

/// The normal answer: the token endpoint, or auth, rate limit and the API.
async fn answer(sim: &Shared, method: &Method, uri: &str, request: Request) -> Answer {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let options = lock(&sim.options).clone();
    if path == "/oauth/token" {
        let headers = request.headers().clone();
        let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
            .await
            .unwrap_or_default();
        let reply = oauth::token(&options, &mut lock(&sim.tokens), method, &headers, &body);
        let mut answer = Answer::json(reply.status, reply.body.to_string())
            .with(header::CACHE_CONTROL, "no-store")
            .with(header::PRAGMA, "no-cache");
        if reply.challenge {
            answer = answer.with(header::WWW_AUTHENTICATE, "Basic realm=\"oneroster\"");
        }
        return answer;
    }

    let Some((version, rest)) = OneRosterVersion::ALL.into_iter().find_map(|v| {
        let rest = path.strip_prefix(v.base_path())?;
        (rest.is_empty() || rest.starts_with('/')).then_some((v, rest))
    }) else {
        return Answer::status_info(StatusCode::NOT_FOUND, "unknownobject", "no such endpoint");
    };

    let token = bearer(request.headers());
    if !token.is_some_and(|t| lock(&sim.tokens).valid(t)) {
        return Answer::status_info(
            StatusCode::UNAUTHORIZED,
            "unauthorisedrequest",
            "missing, unknown or expired access token",
        )
        .with(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"oneroster\", error=\"invalid_token\"",
        );
    }
    if let Some(retry_after) = rate_limited(sim, token.unwrap_or_default(), &options) {
        return Answer::status_info(
            StatusCode::TOO_MANY_REQUESTS,
            "server_busy",
            "rate limit exceeded",
        )
        .with(header::RETRY_AFTER, retry_after.to_string());
    }
    if method != Method::GET {
        return Answer::status_info(
            StatusCode::METHOD_NOT_ALLOWED,
            "invaliddata",
            "this service is read-only",
        );
    }
    let store = sim.store.read().unwrap_or_else(PoisonError::into_inner);
    let request = Api {
        options: &options,
        version,
        refs: Refs::new(&sim.base_url, version),
        url: format!("{}{path}", sim.base_url),
        query,
    };
    route(&store, &request, rest)
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Counts one request of `token` against the fixed window; `Some(seconds until the window
/// resets)` when over the limit.
fn rate_limited(sim: &Shared, token: &str, options: &OneRosterOptions) -> Option<u64> {
    if options.rate_limit == 0 {
        return None;
    }
    let now = tokio::time::Instant::now();
    let window = options.rate_limit_window;
    let mut windows = lock(&sim.windows);
    let entry = windows.entry(token.to_string()).or_insert((now, 0));
    if now.duration_since(entry.0) >= window {
        *entry = (now, 0);
    }
    if entry.1 >= options.rate_limit {
        let left = window.saturating_sub(now.duration_since(entry.0));
        return Some(left.as_secs() + u64::from(left.subsec_nanos() > 0));
    }
    entry.1 += 1;
    None
}

/// One API request, authenticated.
struct Api<'a> {
    options: &'a OneRosterOptions,
    version: OneRosterVersion,
    refs: Refs,
    /// The request's URL without the query (for `Link`).
    url: String,
    query: &'a str,
}

/// A served collection: its table, which records belong (`/schools` of `orgs`...), and the
/// response keys.
struct Endpoint<'t, T> {
    table: &'t Table<T>,
    keep: &'t dyn Fn(&T) -> bool,
    /// `orgs`, `users`...
    plural: &'static str,
    /// `org`, `user`...
    singular: &'static str,
}

fn route(store: &Store, api: &Api<'_>, rest: &str) -> Answer {
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let v1_1 = api.version == OneRosterVersion::V1_1;
    macro_rules! serve {
        ($table:expr, $keep:expr, $plural:literal, $singular:literal $(,)?) => {
            serve(
                &Endpoint {
                    table: $table,
                    keep: &$keep,
                    plural: $plural,
                    singular: $singular,
                },
                api,
                &segments[1..],
            )
        };
    }
    match segments[0] {
        "orgs" => serve!(&store.orgs, |_: &Org| true, "orgs", "org"),
        "schools" => serve!(
            &store.orgs,
            |o: &Org| o.kind == OrgType::School,
            "orgs",
            "org"
        ),
        // Every session is a term; none is a grading period.
        "academicSessions" | "terms" => serve!(
            &store.sessions,
            |_: &Session| true,
            "academicSessions",
            "academicSession"
        ),
        "gradingPeriods" => serve!(
            &store.sessions,
            |_: &Session| false,
            "academicSessions",
            "academicSession"
        ),
        "courses" => serve!(&store.courses, |_: &Course| true, "courses", "course"),
        "classes" => serve!(&store.classes, |_: &Class| true, "classes", "class"),
        "users" => serve!(&store.users, |_: &User| true, "users", "user"),
        "students" => serve!(
            &store.users,
            |u: &User| u.has_role("student", v1_1),
            "users",
            "user"
        ),
        "teachers" => serve!(
            &store.users,
            |u: &User| u.has_role("teacher", v1_1),
            "users",
            "user"
        ),
        "enrollments" => serve!(
            &store.enrollments,
            |_: &Enrollment| true,
            "enrollments",
            "enrollment"
        ),
        _ => Answer::status_info(StatusCode::NOT_FOUND, "unknownobject", "no such endpoint"),
    }
}

/// A collection (`rest` empty), one record (`rest` its sourcedId) or a relationship path.
fn serve<T: Entity>(endpoint: &Endpoint<'_, T>, api: &Api<'_>, rest: &[&str]) -> Answer {
    match rest {
        [] | [""] => list(endpoint, api),
        [id] => {
            // A path segment: `+` is a plus, not a space.
            let id = query::decode(&id.replace('+', "%2B"));
            match endpoint
                .table
                .get(&id)
                .filter(|r| (endpoint.keep)(&r.entity))
            {
                Some(row) => {
                    let mut body = serde_json::Map::new();
                    body.insert(endpoint.singular.into(), render(row, api));
                    Answer::json(StatusCode::OK, Value::Object(body).to_string())
                }
                None => Answer::status_info(
                    StatusCode::NOT_FOUND,
                    "unknownobject",
                    &format!("no {} {id}", endpoint.singular),
                ),
            }
        }
        _ => Answer::status_info(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported",
            "relationship endpoints are not simulated",
        ),
    }
}

fn render<T: Entity>(row: &Row<T>, api: &Api<'_>) -> Value {
    row.entity
        .json(&api.refs, status(row), &timestamp(row.modified_ms))
}

fn status<T>(row: &Row<T>) -> &'static str {
    if row.deleted { "tobedeleted" } else { "active" }
}

/// A record's value of a field a filter or sort names.
fn value<T: Entity>(row: &Row<T>, field: &str, version: OneRosterVersion) -> FieldValue {
    match field {
        "dateLastModified" => FieldValue::Instant(row.modified_ms),
        "status" => FieldValue::Text(status(row).to_string()),
        _ => FieldValue::Text(row.entity.field(field, version).unwrap_or_default()),
    }
}

fn compare(a: &FieldValue, b: &FieldValue) -> CmpOrdering {
    match (a, b) {
        (FieldValue::Instant(a), FieldValue::Instant(b)) => a.cmp(b),
        (FieldValue::Text(a), FieldValue::Text(b)) => a.cmp(b),
        (FieldValue::Instant(_), FieldValue::Text(_)) => CmpOrdering::Less,
        (FieldValue::Text(_), FieldValue::Instant(_)) => CmpOrdering::Greater,
    }
}

fn list<T: Entity>(endpoint: &Endpoint<'_, T>, api: &Api<'_>) -> Answer {
    let options = api.options;
    let query: ListQuery = match query::parse(api.query, options.default_limit, options.max_limit) {
        Ok(q) => q,
        Err(e) => return Answer::query_error(e),
    };
    let version = api.version;
    let known = |field: &str| {
        matches!(field, "status" | "dateLastModified") || T::field_names(version).contains(&field)
    };
    if let Some(filter) = &query.filter
        && let Some(bad) = filter.clauses().find(|c| !known(&c.field))
    {
        return Answer::status_info(
            StatusCode::BAD_REQUEST,
            "invalid_filter_field",
            &format!("cannot filter {} on {}", endpoint.plural, bad.field),
        );
    }
    if let Some(sort) = &query.sort
        && !known(sort)
    {
        return Answer::status_info(
            StatusCode::BAD_REQUEST,
            "invalid_sort_field",
            &format!("cannot sort {} by {sort}", endpoint.plural),
        );
    }

    // Deleted records are for delta pulls: requests with a filter.
    let deleted_visible = query.filter.is_some() && options.serve_deletions;
    let mut rows: Vec<&Row<T>> = endpoint
        .table
        .rows
        .iter()
        .filter(|r| (!r.deleted || deleted_visible) && (endpoint.keep)(&r.entity))
        .filter(|r| {
            query
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(|c| value(r, &c.field, version)))
        })
        .collect();
    if let Some(sort) = &query.sort {
        rows.sort_by(|a, b| compare(&value(a, sort, version), &value(b, sort, version)));
    }
    if query.descending {
        rows.reverse();
    }
    let total = rows.len();
    let items: Vec<Value> = rows
        .iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|r| render(r, api))
        .collect();
    let mut body = serde_json::Map::new();
    body.insert(endpoint.plural.into(), Value::Array(items));
    let mut answer = Answer::json(StatusCode::OK, Value::Object(body).to_string());
    if options.total_count_header {
        answer = answer.with(HeaderName::from_static("x-total-count"), total.to_string());
    }
    if options.link_header {
        let link = query::link_header(&api.url, &query, total, options.total_count_header);
        answer = answer.with(header::LINK, link);
    }
    answer
}
