//! What the simulator does with one request, in the order Clever's edge would: count it, apply
//! an injected fault, send the OAuth endpoints (`/oauth/authorize`, `/oauth/tokens`) to
//! `oauth.rs`, check the bearer token (the district token, or a login token), count it against
//! the rate limit, route it (`/{v3.0|v3.1}/{collection}` lists, `/{version}/{collection}/{id}`
//! single records, both for the events feed too; a login token's few paths in `oauth.rs`), and
//! log the outcome.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures_util::{StreamExt, stream};
use serde_json::Value;

use super::connection::KillSwitch;
use super::oauth;
use super::paging::{self, Cursor, ListQuery};
use super::rate_limit::{Verdict, unix_secs_after};
use super::{Fault, LoggedRequest, Shared, SimOptions, UnknownCursor, lock};
use crate::district::{Collection, Dataset, Record, Role};

const JSON: &str = "application/json; charset=utf-8";
pub(super) const HTML: &str = "text/html; charset=utf-8";
/// The largest request body read (a token request is a few hundred bytes).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// The value of `X-RateLimit-Bucket`.
const BUCKET: &str = "district-token";

/// A response before it becomes HTTP: status, body, the rate-limit headers if the request got
/// that far, and where a redirect leads.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) content_type: &'static str,
    pub(super) body: String,
    pub(super) rate: Option<Verdict>,
    /// The `Location` header of a redirect.
    pub(super) location: Option<String>,
}

impl Answer {
    pub(super) fn json(status: StatusCode, body: String) -> Answer {
        Answer {
            status,
            content_type: JSON,
            body,
            rate: None,
            location: None,
        }
    }

    pub(super) fn message(status: StatusCode, message: &str) -> Answer {
        Answer::json(
            status,
            serde_json::json!({ "message": message }).to_string(),
        )
    }

    pub(super) fn html(status: StatusCode) -> Answer {
        let body = format!(
            "<!DOCTYPE html>\n<html><head><title>{status}</title></head>\
             <body><h1>{status}</h1><p>Something went wrong.</p></body></html>\n"
        );
        Answer {
            status,
            content_type: HTML,
            body,
            rate: None,
            location: None,
        }
    }

    pub(super) fn empty(status: StatusCode) -> Answer {
        Answer {
            status,
            content_type: JSON,
            body: String::new(),
            rate: None,
            location: None,
        }
    }
}

/// The one handler behind every path.
pub(crate) async fn handle(
    State(sim): State<Arc<Shared>>,
    ConnectInfo(kill): ConnectInfo<KillSwitch>,
    request: Request,
) -> Response {
    let n = sim.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |pq| pq.to_string());
    lock(&sim.received).push(uri.clone());
    let fault = lock(&sim.faults).take(n, &uri);
    let log = |status: Option<u16>| {
        lock(&sim.log).push(LoggedRequest {
            method: method.to_string(),
            uri: uri.clone(),
            status,
            fault: fault.clone(),
        });
    };

    if let Some(Fault::Slow(delay)) = &fault {
        let mut stop = sim.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(*delay) => {}
            _ = stop.wait_for(|stopped| *stopped) => {
                kill.kill();
                log(None);
                return Response::default();
            }
        }
    }

    let answer = match &fault {
        Some(Fault::DropConnection) => {
            kill.kill();
            log(None);
            return Response::default();
        }
        Some(Fault::RateLimited) => {
            let options = lock(&sim.options).clone();
            let mut answer = Answer::empty(StatusCode::TOO_MANY_REQUESTS);
            answer.rate = Some(Verdict {
                allowed: false,
                limit: options.rate_limit,
                remaining: 0,
                reset_unix: unix_secs_after(std::time::Duration::from_secs(1)),
            });
            answer
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Answer::message(status, &format!("simulated failure: {status}"))
        }
        Some(Fault::Html) => Answer::html(StatusCode::OK),
        _ => {
            // An unreadable or oversized body reads as empty: the endpoints that need one refuse.
            let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
                .await
                .unwrap_or_default();
            answer(&sim, &method, &uri, &parts.headers, &body)
        }
    };

    log(Some(answer.status.as_u16()));
    let body = match &fault {
        Some(Fault::TruncatedJson) => Body::from(cut_in_half(answer.body)),
        Some(Fault::NextToSelf) => Body::from(next_to(answer.body, &uri)),
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
    if let Some(rate) = answer.rate {
        rate_headers(headers, rate);
    }
    if let Some(location) = answer.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// A list page whose `next` link is `uri`; any other body as it is.
fn next_to(body: String, uri: &str) -> String {
    let Ok(mut page) = serde_json::from_str::<serde_json::Value>(&body) else {
        return body;
    };
    let Some(links) = page.get_mut("links").and_then(|l| l.as_array_mut()) else {
        return body;
    };
    links.retain(|link| link["rel"] != "next");
    links.push(serde_json::json!({"rel": "next", "uri": uri}));
    page.to_string()
}

fn cut_in_half(body: String) -> String {
    let mut cut = body.len() / 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body[..cut].to_string()
}

fn rate_headers(headers: &mut HeaderMap, rate: Verdict) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(rate.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(rate.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(rate.reset_unix));
    headers.insert("x-ratelimit-bucket", HeaderValue::from_static(BUCKET));
}

/// The normal answer: the OAuth endpoints, or auth, rate limit, routing.
fn answer(sim: &Shared, method: &Method, uri: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    match path {
        "/oauth/authorize" => return oauth::authorize(sim, method, query),
        "/oauth/tokens" => return oauth::tokens(sim, method, headers, body),
        _ => {}
    }
    let options = lock(&sim.options).clone();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer.filter(|t| *t == options.token) else {
        let login = bearer.and_then(|t| Some((t, lock(&sim.oauth).identity(t)?)));
        if let Some((token, who)) = login {
            return login_answer(sim, &options, token, &who, method, path);
        }
        return Answer::message(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: invalid or missing bearer token",
        );
    };
    if options.forbidden {
        return Answer::message(StatusCode::FORBIDDEN, "Resource not in token's scopes");
    }
    let rate = lock(&sim.limiter).check(token, options.rate_limit, options.rate_limit_window);
    let mut answer = if !rate.allowed {
        Answer::empty(StatusCode::TOO_MANY_REQUESTS)
    } else if method != Method::GET {
        Answer::message(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else {
        let dataset = sim
            .dataset
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        route(&dataset, &options, uri)
    };
    answer.rate = Some(rate);
    answer
}

/// A request with a login (SSO) token: rate limited per token like any other, then the few
/// paths such a token may read.
fn login_answer(
    sim: &Shared,
    options: &SimOptions,
    token: &str,
    who: &oauth::Identity,
    method: &Method,
    path: &str,
) -> Answer {
    let rate = lock(&sim.limiter).check(token, options.rate_limit, options.rate_limit_window);
    let mut answer = if rate.allowed {
        let dataset = sim
            .dataset
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        oauth::login_api(&dataset, who, method, path)
    } else {
        Answer::empty(StatusCode::TOO_MANY_REQUESTS)
    };
    answer.rate = Some(rate);
    answer
}

fn route(dataset: &Dataset, options: &SimOptions, uri: &str) -> Answer {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (version, rest) = match segments.split_first() {
        Some((v, rest)) if *v == "v3.0" || *v == "v3.1" => (*v, rest),
        _ => return Answer::html(StatusCode::NOT_FOUND),
    };
    let Some(collection) = rest.first().and_then(|c| Collection::from_name(c)) else {
        return Answer::html(StatusCode::NOT_FOUND);
    };
    match rest {
        [_] => list(dataset, options, version, collection, uri, query),
        [_, id] => single(dataset, version, collection, id),
        _ => Answer::message(
            StatusCode::NOT_IMPLEMENTED,
            "this endpoint is not simulated",
        ),
    }
}

/// One record in `{"data":..,"links":[{"rel":"self",..}]}`, or 404.
pub(super) fn single(dataset: &Dataset, version: &str, collection: Collection, id: &str) -> Answer {
    let Some(json) = dataset.raw(collection, id) else {
        return Answer::message(StatusCode::NOT_FOUND, "Resource not found");
    };
    let mut body = String::with_capacity(json.len() + 80);
    body.push_str("{\"data\":");
    body.push_str(json);
    body.push_str(",\"links\":[{\"rel\":\"self\",\"uri\":");
    crate::district::json::push_str(&mut body, &format!("/{version}/{}/{id}", collection.name()));
    body.push_str("}]}");
    Answer::json(StatusCode::OK, body)
}

fn list(
    dataset: &Dataset,
    options: &SimOptions,
    version: &str,
    collection: Collection,
    uri: &str,
    query: &str,
) -> Answer {
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

    let limit = match param("limit") {
        None => options.default_limit,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n > options.max_limit as i64 => {
                return Answer::message(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "Request entity too large: Your limit parameter may be over {}",
                        options.max_limit
                    ),
                );
            }
            Ok(n) if n >= 1 => n as usize,
            _ => return Answer::message(StatusCode::BAD_REQUEST, &format!("invalid limit: {raw}")),
        },
    };
    let cursor = match (param("starting_after"), param("ending_before")) {
        (Some(_), Some(_)) => {
            return Answer::message(
                StatusCode::BAD_REQUEST,
                "use either starting_after or ending_before, not both",
            );
        }
        (Some(after), None) => Cursor::After(after),
        (None, Some("last")) => Cursor::Before(None),
        (None, Some(before)) => Cursor::Before(Some(before)),
        (None, None) => Cursor::Start,
    };

    let mut params: Vec<(&str, &str)> = Vec::new();
    let keep: Box<dyn Fn(&Record) -> bool> = match collection {
        Collection::Users => match param("role") {
            None => Box::new(|_| true),
            Some(name) => {
                let Some(role) = Role::from_name(name) else {
                    return Answer::message(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid role: {name}"),
                    );
                };
                params.push(("role", name));
                Box::new(move |r| r.has_role(role))
            }
        },
        Collection::Events => {
            if let Some(answer) = check_event_cursor(dataset, options, cursor) {
                return answer;
            }
            let types: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| k == "record_type")
                .map(|(_, v)| v.as_str())
                .collect();
            params.extend(types.iter().map(|t| ("record_type", *t)));
            let school = param("school");
            if let Some(school) = school {
                params.push(("school", school));
            }
            let types: Vec<String> = types.into_iter().map(str::to_string).collect();
            let school = school.map(str::to_string);
            Box::new(move |r| event_matches(r, &types, school.as_deref()))
        }
        _ => Box::new(|_| true),
    };

    let query = ListQuery {
        version,
        collection,
        limit,
        explicit_limit: param("limit").is_some(),
        cursor,
        params,
        self_uri: uri,
        empty_last_page: options.empty_last_page,
    };
    let page = paging::render_list(dataset.records(collection), &query, &*keep);
    Answer::json(StatusCode::OK, page.body)
}

/// What an events cursor that names no stored event gets, per [`UnknownCursor`].
fn check_event_cursor(
    dataset: &Dataset,
    options: &SimOptions,
    cursor: Cursor<'_>,
) -> Option<Answer> {
    let id = match cursor {
        Cursor::After(id) | Cursor::Before(Some(id)) => id,
        _ => return None,
    };
    if dataset.contains(Collection::Events, id) {
        return None;
    }
    match options.unknown_event_cursor {
        UnknownCursor::Range => None,
        UnknownCursor::NotFound => Some(Answer::message(
            StatusCode::NOT_FOUND,
            &format!("event not found: {id}"),
        )),
        UnknownCursor::BadRequest => Some(Answer::message(
            StatusCode::BAD_REQUEST,
            &format!("invalid starting_after or ending_before: {id}"),
        )),
    }
}

/// Whether an event passes the `record_type` (the type's prefix: `users` for `users.updated`)
/// and `school` filters.
fn event_matches(record: &Record, types: &[String], school: Option<&str>) -> bool {
    if types.is_empty() && school.is_none() {
        return true;
    }
    let Ok(event) = serde_json::from_str::<Value>(&record.json) else {
        return false;
    };
    let kind = event["type"].as_str().unwrap_or_default();
    let record_type = kind.split('.').next().unwrap_or_default();
    if !types.is_empty() && !types.iter().any(|t| t == record_type) {
        return false;
    }
    match school {
        None => true,
        Some(school) => {
            let object = &event["data"]["object"];
            (record_type == "schools" && object["id"] == school)
                || object["school"] == school
                || object["schools"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|v| v == school))
                || object["roles"].as_object().is_some_and(|roles| {
                    roles.values().any(|r| {
                        r["school"] == school
                            || r["schools"]
                                .as_array()
                                .is_some_and(|s| s.iter().any(|v| v == school))
                    })
                })
        }
    }
}

/// Percent-decodes a query component (`+` is a space).
pub(super) fn decode(s: &str) -> String {
    let hex = |b: &u8| (*b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex(bytes.get(i + 1)?)? * 16 + hex(bytes.get(i + 2)?)?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
