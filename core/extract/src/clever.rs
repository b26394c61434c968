//! The Clever Data API v3.0 client: every page of every collection, with the district's bearer
//! token, following `next` links.
//!
//! Clever allows 1200 requests a minute per token; a 429 is answered by sleeping until
//! `X-RateLimit-Reset`. 5xx answers, timeouts, dropped connections and garbled pages are retried
//! with capped exponential backoff and jitter. 401 and 403 stop the pull at once. Each page is
//! parsed as it arrives and then dropped, so memory follows the snapshot, not the JSON.

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use url::Url;

use super::wire::{self, Part, SnapshotBuilder};
use super::{Collection, ExtractError, Recorder};
use crate::config::CleverSourceConfig;
use rosterflow_model::text::quoted;
use rosterflow_model::{Snapshot, is_clever_id};

const API_VERSION: &str = "/v3.0";

/// Pulls every collection of the district the token belongs to: districts first (they say
/// which district the other records must belong to), then the other collections side by side.
pub async fn pull(
    config: &CleverSourceConfig,
    district: Option<&str>,
    recorder: Option<&Recorder>,
) -> Result<Snapshot, ExtractError> {
    let builder = pull_roster(config, district, recorder).await?;
    rosterflow_model::blocking(|| builder.finish(false))
}

/// Pulls every collection into a builder, not yet finished into a snapshot.
pub async fn pull_roster(
    config: &CleverSourceConfig,
    district: Option<&str>,
    recorder: Option<&Recorder>,
) -> Result<SnapshotBuilder, ExtractError> {
    let client = Client::new(config)?;
    let mut builder = pull_collection(
        &client,
        config,
        Collection::Districts,
        SnapshotBuilder::new(district),
        recorder,
    )
    .await?;
    let filter = builder.district();
    let others = Collection::ALL[1..].iter().map(|&collection| {
        let builder = SnapshotBuilder::new(filter.as_deref());
        pull_collection(&client, config, collection, builder, recorder)
    });
    for pulled in futures_util::future::try_join_all(others).await? {
        builder.absorb(pulled);
    }
    Ok(builder)
}

/// One event of Clever's Events API, as it came: `{"id", "type", "data": {"object": ...}}`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct EventData {
    /// The record as it is after the event (for a deletion, as it was).
    pub object: Box<serde_json::value::RawValue>,
}

/// The newest event's id: where the events of changes after now will start. `None` when the
/// feed is empty.
pub async fn newest_event(config: &CleverSourceConfig) -> Result<Option<String>, ExtractError> {
    let client = Client::new(config)?;
    let url = client.url(&format!("{API_VERSION}/events?ending_before=last&limit=1"))?;
    let url = url.as_str();
    let (body, page) = client.fetch(url, |body| events_page(body, url)).await?;
    check_event_ids(&page.events, url, &body)?;
    Ok(page.events.last().map(|event| event.id.clone()))
}

/// Every event after `cursor` (the whole feed without one), oldest first.
pub async fn events_since(
    config: &CleverSourceConfig,
    cursor: Option<&str>,
) -> Result<Vec<Event>, ExtractError> {
    let client = Client::new(config)?;
    let mut url = client.url(&format!("{API_VERSION}/events"))?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(cursor) = cursor {
            // The cursor is the id of an event Clever sent: a text of any other shape did not
            // come from it, and is never pasted into a request.
            if !is_clever_id(cursor) {
                return Err(ExtractError::Page {
                    origin: "the events cursor".to_owned(),
                    reason: format!(
                        "{} is not a Clever event id (24 hex digits): a full sync starts a new cursor",
                        quoted(cursor)
                    ),
                    snippet: String::new(),
                });
            }
            query.append_pair("starting_after", cursor);
        }
        query.append_pair("limit", &config.limit.to_string());
    }
    let mut fetched = HashSet::new();
    let mut events = Vec::new();
    loop {
        fetched.insert(url.to_string());
        let origin = url.as_str();
        let (body, page) = client
            .fetch(origin, |body| events_page(body, origin))
            .await?;
        check_event_ids(&page.events, origin, &body)?;
        let done = page.events.is_empty();
        events.extend(page.events);
        tracing::info!(target: rosterflow_model::PROGRESS, "pulling events: {}", events.len());
        match page.next {
            Some(next) if !done => url = next_page(&client, &fetched, origin, &next, &body)?,
            _ => break,
        }
    }
    Ok(events)
}

/// Each event's id must be a Clever id: the newest becomes the cursor of the next sync.
fn check_event_ids(events: &[Event], origin: &str, body: &[u8]) -> Result<(), ExtractError> {
    match events.iter().find(|event| !is_clever_id(&event.id)) {
        Some(event) => Err(ExtractError::Page {
            origin: origin.to_owned(),
            reason: format!(
                "event id {} is not a Clever id (24 hex digits)",
                quoted(&event.id)
            ),
            snippet: wire::snippet(body),
        }),
        None => Ok(()),
    }
}

/// The page a `next` link names, on the configured host; a page already fetched (of those in
/// `fetched`) is refused: following it again would never end.
fn next_page(
    client: &Client,
    fetched: &HashSet<String>,
    origin: &str,
    next: &str,
    body: &[u8],
) -> Result<Url, ExtractError> {
    let url = client.url(next)?;
    if fetched.contains(url.as_str()) {
        return Err(ExtractError::Page {
            origin: origin.to_owned(),
            reason: format!(
                "its next link {} leads back to a page already fetched: the pages would never end",
                quoted(next)
            ),
            snippet: wire::snippet(body),
        });
    }
    Ok(url)
}

/// A page of events.
struct EventsPage {
    events: Vec<Event>,
    next: Option<String>,
}

fn events_page(body: &[u8], origin: &str) -> Result<EventsPage, ExtractError> {
    #[derive(serde::Deserialize)]
    struct Item {
        data: Event,
    }
    #[derive(serde::Deserialize)]
    struct Page {
        #[serde(default)]
        data: Vec<Item>,
    }
    let info = wire::outline(body, origin)?;
    let page: Page = serde_json::from_slice(body).map_err(|error| ExtractError::Page {
        origin: origin.to_owned(),
        reason: format!("not a Clever events page: {}", wire::brief(&error)),
        snippet: wire::snippet(body),
    })?;
    Ok(EventsPage {
        events: page.data.into_iter().map(|item| item.data).collect(),
        next: info.next,
    })
}

/// Pulls every page of one collection into `builder`. Each page is parsed on a blocking thread
/// while the next one downloads; pages are added in order.
async fn pull_collection(
    client: &Client,
    config: &CleverSourceConfig,
    collection: Collection,
    mut builder: SnapshotBuilder,
    recorder: Option<&Recorder>,
) -> Result<SnapshotBuilder, ExtractError> {
    let district = builder.district();
    let mut url = client.url(&format!(
        "{API_VERSION}/{}?limit={}",
        collection.name(),
        config.limit
    ))?;
    let mut parsing: Option<tokio::task::JoinHandle<Result<Part, ExtractError>>> = None;
    let mut pages = 0;
    let mut records = 0;
    let mut fetched = HashSet::new();
    loop {
        pages += 1;
        fetched.insert(url.to_string());
        let origin = url.as_str();
        let (body, info) = client
            .fetch(origin, |body| wire::outline(body, origin))
            .await?;
        if let Some(recorder) = recorder {
            recorder.save(collection, pages, &body)?;
        }
        tracing::debug!(
            collection = collection.name(),
            page = pages,
            records = info.records,
            "page received"
        );
        records += info.records;
        tracing::info!(target: rosterflow_model::PROGRESS, "pulling {}: {records} records", collection.name());
        if let Some(previous) = parsing.take() {
            builder.merge(collection, previous.await??);
        }
        let next = match &info.next {
            Some(next) => Some(next_page(client, &fetched, origin, next, &body)?),
            None => None,
        };
        let district = district.clone();
        let origin = origin.to_owned();
        parsing = Some(tokio::task::spawn_blocking(move || {
            wire::parse_page(collection, &body, &origin, district.as_deref())
        }));
        match next {
            Some(next) => url = next,
            None => break,
        }
    }
    if let Some(last) = parsing {
        builder.merge(collection, last.await??);
    }
    tracing::info!(collection = collection.name(), pages, "collection pulled");
    Ok(builder)
}

/// `link` on the host of `base`. Clever gives `next` links relative to the host
/// (`/v3.0/users?starting_after=...`); an absolute link is resolved too, but only its path and
/// query are kept, so that every request goes to the configured host (a simulator, a proxy).
fn on_host(base: &Url, link: &str) -> Result<Url, url::ParseError> {
    let target = base.join(link)?;
    let mut url = base.clone();
    url.set_path(target.path());
    url.set_query(target.query());
    Ok(url)
}

struct Client {
    /// The configured `base_url`: every request goes to its host.
    base: Url,
    http: reqwest::Client,
    authorization: HeaderValue,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl Client {
    fn new(config: &CleverSourceConfig) -> Result<Client, ExtractError> {
        // The ring provider serves rustls; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .connect_timeout(Duration::from_secs(config.timeout_secs.min(10)))
            .user_agent(concat!("rosterflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ExtractError::Http {
                url: rosterflow_model::secret::shown_url(&config.base_url),
                source,
            })?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", config.token.expose()))
            .map_err(|_| ExtractError::Status {
                status: 0,
                url: rosterflow_model::secret::shown_url(&config.base_url),
                message: "the token holds characters an HTTP header cannot carry".into(),
            })?;
        authorization.set_sensitive(true);
        let base = Url::parse(&config.base_url).map_err(|source| ExtractError::BadUrl {
            what: "source.base_url",
            url: rosterflow_model::secret::shown_url(&config.base_url),
            source,
        })?;
        Ok(Client {
            base,
            http,
            authorization,
            max_attempts: config.max_attempts,
            backoff_base: Duration::from_millis(config.backoff_base_ms),
            backoff_max: Duration::from_secs(config.backoff_max_secs),
        })
    }

    /// `link` (a path, or a page's `next` link) on the configured host.
    fn url(&self, link: &str) -> Result<Url, ExtractError> {
        on_host(&self.base, link).map_err(|source| ExtractError::BadUrl {
            what: "the link",
            url: link.to_owned(),
            source,
        })
    }

    /// GETs `url` until `accept` takes the body, retrying what may succeed on another try.
    async fn fetch<T>(
        &self,
        url: &str,
        mut accept: impl FnMut(&[u8]) -> Result<T, ExtractError>,
    ) -> Result<(Vec<u8>, T), ExtractError> {
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            // How long to wait before the next try, and the counter the wait adds to.
            let (wait, counter) = match self.get(url).await {
                Ok(Response::Body(body)) => match accept(&body) {
                    Ok(value) => return Ok((body, value)),
                    Err(error) => {
                        last = error.to_string();
                        (
                            self.backoff(attempt),
                            rosterflow_model::metrics::HTTP_RETRIES,
                        )
                    }
                },
                Ok(Response::RateLimited { reset_in }) => {
                    last = "rate limited (429)".to_owned();
                    let wait = reset_in.unwrap_or_else(|| self.backoff(attempt));
                    (
                        wait.min(self.backoff_max),
                        rosterflow_model::metrics::RATE_LIMIT_WAITS,
                    )
                }
                Err(error) if error.is_retryable() => {
                    last = error.to_string();
                    (
                        self.backoff(attempt),
                        rosterflow_model::metrics::HTTP_RETRIES,
                    )
                }
                Err(error) => return Err(error),
            };
            if attempt < self.max_attempts {
                metrics::counter!(counter).increment(1);
                tracing::warn!(url, attempt, wait_ms = wait.as_millis() as u64, error = %last, "retrying");
                tokio::time::sleep(wait).await;
            }
        }
        Err(ExtractError::Exhausted {
            url: url.to_owned(),
            attempts: self.max_attempts,
            last,
        })
    }

    async fn get(&self, url: &str) -> Result<Response, ExtractError> {
        let http = |source| ExtractError::Http {
            url: url.to_owned(),
            source,
        };
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .send()
            .await
            .map_err(http)?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Ok(Response::RateLimited {
                reset_in: reset_in(response.headers()),
            });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ExtractError::Unauthorized {
                status: status.as_u16(),
                url: url.to_owned(),
            });
        }
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = response.bytes().await.map_err(http)?;
        if !status.is_success() {
            return Err(ExtractError::Status {
                status: status.as_u16(),
                url: url.to_owned(),
                message: clever_message(&body, status),
            });
        }
        if !is_json {
            // Clever answers HTML for an unknown endpoint or a token of the wrong kind.
            return Err(ExtractError::Status {
                status: status.as_u16(),
                url: url.to_owned(),
                message: format!(
                    "expected JSON, got {:?}: is base_url the Clever API host?",
                    wire::snippet(&body)
                ),
            });
        }
        Ok(Response::Body(body.to_vec()))
    }

    /// The wait after the `attempt`-th failed try: exponential, capped, and jittered (a random
    /// half to all of it) so that collections pulled side by side do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        rosterflow_model::backoff::exponential(self.backoff_base, self.backoff_max, attempt)
            .mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

enum Response {
    Body(Vec<u8>),
    RateLimited { reset_in: Option<Duration> },
}

/// How long until `X-RateLimit-Reset` (a Unix time in seconds).
fn reset_in(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let reset: u64 = headers
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    // The reset is whole seconds; wait into the new window rather than hit its edge.
    Some(Duration::from_secs(reset).saturating_sub(now) + Duration::from_millis(100))
}

/// Clever's `{"message": ...}`, or the status text when the body has none: one line of at most
/// 300 characters, since it goes into errors and logs.
fn clever_message(body: &[u8], status: StatusCode) -> String {
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    const LONGEST: usize = 300;
    let message = serde_json::from_slice::<Message>(body)
        .map(|m| m.message)
        .unwrap_or_else(|_| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_owned()
        });
    rosterflow_model::text::one_line(&message, LONGEST)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CleverSourceConfig {
        serde_json::from_value(serde_json::json!({"token": "t", "base_url": "http://127.0.0.1:1"}))
            .expect("a Clever source")
    }

    /// An event id becomes the next sync's cursor, pasted into a request: only a Clever id is.
    #[tokio::test]
    async fn an_event_id_or_cursor_that_is_no_clever_id_fails_before_any_request() {
        let error = events_since(&config(), Some("x&limit=1#"))
            .await
            .expect_err("not a cursor");
        assert!(
            error.to_string().contains("is not a Clever event id"),
            "{error}"
        );
        let event = |id: &str| Event {
            id: id.to_owned(),
            kind: "users.created".to_owned(),
            data: EventData {
                object: serde_json::value::RawValue::from_string("{}".to_owned()).expect("JSON"),
            },
        };
        let good = event("5a0c91b95c7cc000010d417c");
        assert!(check_event_ids(std::slice::from_ref(&good), "o", b"").is_ok());
        let error = check_event_ids(&[good, event("../x?y=1")], "o", b"{}").expect_err("bad id");
        assert!(
            error
                .to_string()
                .contains("event id \"../x?y=1\" is not a Clever id"),
            "{error}"
        );
    }

    #[test]
    fn next_links_become_paths_on_the_configured_host() {
        let base = Url::parse("http://127.0.0.1:8080").expect("a URL");
        let next = |link| on_host(&base, link).expect("follows").to_string();
        assert_eq!(
            next("/v3.0/users?starting_after=abc"),
            "http://127.0.0.1:8080/v3.0/users?starting_after=abc"
        );
        assert_eq!(
            next("https://api.clever.com/v3.0/users?starting_after=abc"),
            "http://127.0.0.1:8080/v3.0/users?starting_after=abc"
        );
    }
}
