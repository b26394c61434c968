//! A OneRoster REST simulator on `127.0.0.1:0`: a [`Dataset`] served as OneRoster 1.1 under
//! `/ims/oneroster/v1p1` and 1.2 under `/ims/oneroster/rostering/v1p2` (the records of
//! [`crate::district::Dataset::oneroster_json`]), behind OAuth 2 client credentials.
//!
//! - Collections: `/orgs`, `/schools`, `/academicSessions`, `/terms`, `/gradingPeriods`,
//!   `/courses`, `/classes`, `/users`, `/students`, `/teachers`, `/enrollments`, each also as
//!   `/<collection>/<sourcedId>` (percent-encoded). Responses are wrapped as the spec does:
//!   `{"orgs":[..]}` for `/schools`, `{"users":[..]}` for `/students`, `{"user":{..}}` for one.
//! - Paging: `limit` (default 100) and `offset`, `X-Total-Count`, and a `Link` header with
//!   `first`, `prev`, `next`, `last`; either header can be switched off (some ClassLink endpoints
//!   send no count), so clients must stop on a short page.
//! - Filters: `field<op>'value'` with `= != > >= < <= ~`, at most two clauses joined by ` AND `
//!   or ` OR `; fields are `sourcedId`, `status`, `dateLastModified` (compared as instants) and
//!   each collection's scalar fields. Anything else is 400 with an `imsx_StatusInfo` envelope.
//!   `sort` and `orderBy` (`desc`; anything else ascends) are honoured.
//! - Change tracking: each record carries a `dateLastModified` kept by the simulator. On
//!   [`OneRosterSim::update`] records new or changed are stamped with the simulator's clock
//!   ([`OneRosterSim::set_time`]), and records removed stay as `status: "tobedeleted"`, served
//!   only to filtered requests (as delta pulls), unless [`OneRosterOptions::serve_deletions`] is
//!   off.
//! - OAuth 2: `POST /oauth/token` with `grant_type=client_credentials`, the client's id and
//!   secret by HTTP Basic or in the form body; tokens expire after `expires_in_secs`
//!   (tokio's clock); a missing, unknown or expired bearer token gets 401.
//! - A per-token rate limit, injected faults ([`Fault`]: 429 with `Retry-After`, any status, a
//!   slow answer, HTML, truncated JSON, a body cut off mid-way) and a request log, as in
//!   [`crate::clever_sim`] (but for dropping a connection before any response).
//!
//! Not simulated: relationship paths such as `/classes/{id}/students` (501), `/demographics`
//! (404), the `fields` parameter (whole objects are served) and OAuth 1.
//!
//! # Layout
//! - `oneroster_sim.rs`: [`OneRosterSim`] (start, stop, controls), [`OneRosterOptions`],
//!   [`Fault`], [`LoggedRequest`];
//! - `handler.rs`: one request from fault to token or auth to rate limit to route;
//! - `oauth.rs`: the token endpoint and bearer tokens;
//! - `query.rs`: `limit`/`offset`, filters, sorting, the `Link` header;
//! - `store.rs`: the served records with their status and `dateLastModified`.
//!
//! ```no_run
//! # async fn demo() {
//! use rosterflow_tests::district::{GenSpec, Role, generate};
//! use rosterflow_tests::oneroster_sim::{OneRosterOptions, OneRosterSim};
//!
//! let sim = OneRosterSim::start(generate(GenSpec::new(200)), OneRosterOptions::default()).await;
//! // ... a client gets a token at sim.token_url() with sim.client_id() and sim.client_secret(),
//! // then reads sim.api_url(OneRosterVersion::V1_2) + "/users" ...
//! sim.set_time("2026-02-01T00:00:00Z");
//! sim.update(|d| {
//!     let student = d.ids_with_role(Role::Student)[0].clone();
//!     d.remove_user(&student);
//! });
//! // ... a delta pull: /users?filter=dateLastModified>'2026-01-31T00:00:00Z' ...
//! # }
//! ```

mod handler;
mod oauth;
mod query;
mod store;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::district::oneroster::feed::Feed;
use crate::district::{Dataset, Ids, OneRosterVersion};
use oauth::Tokens;
use store::Store;

/// The client id the simulator accepts unless told otherwise.
pub const DEFAULT_CLIENT_ID: &str = "sim-oneroster-client";
/// The client secret the simulator accepts unless told otherwise.
pub const DEFAULT_CLIENT_SECRET: &str = "sim-oneroster-secret";

/// How the simulator behaves; change it while running with [`OneRosterSim::configure`].
#[derive(Clone, Debug)]
pub struct OneRosterOptions {
    /// The OAuth 2 client id.
    pub client_id: String,
    /// The OAuth 2 client secret.
    pub client_secret: String,
    /// Lifetime of an access token (the `expires_in` of the token response), in seconds.
    pub expires_in_secs: u64,
    /// How the dataset's ids become sourcedIds. Read when the records are built (at start and
    /// on each update): change it only with an [`Ids`] that names every record as before.
    pub ids: Ids,
    /// Page size when a request gives no `limit` (the spec's default is 100).
    pub default_limit: usize,
    /// The largest page served: a larger `limit` is cut down to it silently, as some servers
    /// do. `None`: no cap.
    pub max_limit: Option<usize>,
    /// Whether list responses carry `X-Total-Count` (some ClassLink endpoints do not; without it
    /// the `Link` header has no `last`).
    pub total_count_header: bool,
    /// Whether list responses carry a `Link` header.
    pub link_header: bool,
    /// Whether records removed by an update stay, as `tobedeleted`, for filtered requests.
    /// Off: they vanish, as on servers that do not serve deletions.
    pub serve_deletions: bool,
    /// The simulator's clock, which stamps `dateLastModified` (RFC 3339). `None`: the system
    /// clock.
    pub time: Option<String>,
    /// API requests allowed per token per window; 0 for no limit.
    pub rate_limit: u32,
    /// The rate-limit window.
    pub rate_limit_window: Duration,
}

impl Default for OneRosterOptions {
    fn default() -> OneRosterOptions {
        OneRosterOptions {
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: DEFAULT_CLIENT_SECRET.to_string(),
            expires_in_secs: 3600,
            ids: Ids::clever(),
            default_limit: 100,
            max_limit: None,
            total_count_header: true,
            link_header: true,
            serve_deletions: true,
            time: None,
            rate_limit: 0,
            rate_limit_window: Duration::from_secs(60),
        }
    }
}

/// One injected failure, applied instead of (or, for [`Fault::Slow`], before) the normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: <secs>` and an `imsx_StatusInfo` body.
    RateLimited {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// That status (500, 502, 503...) with an `imsx_StatusInfo` body.
    Status(u16),
    /// The normal answer after this delay.
    Slow(Duration),
    /// 200 with an HTML page instead of JSON.
    Html,
    /// 200 with the normal body cut in half: a complete HTTP response whose JSON is truncated.
    TruncatedJson,
    /// 200 whose body stops halfway: the connection closes in the middle of the page.
    DropMidBody,
}

/// One request the simulator answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `GET`, `POST`.
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// The status sent.
    pub status: u16,
    /// The fault injected into this request, if any.
    pub fault: Option<Fault>,
}

impl LoggedRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or(&self.uri)
    }
}

/// The faults waiting for requests: one-shot ones (each for the first request whose path and
/// query start with its prefix, any request when `None`), then one every Nth request.
#[derive(Debug, Default)]
struct FaultPlan {
    queue: VecDeque<(Option<String>, Fault)>,
    every: Option<(u64, Fault)>,
}

impl FaultPlan {
    fn take(&mut self, n: u64, uri: &str) -> Option<Fault> {
        let queued = self
            .queue
            .iter()
            .position(|(prefix, _)| prefix.as_deref().is_none_or(|p| uri.starts_with(p)));
        if let Some(i) = queued {
            return self.queue.remove(i).map(|(_, fault)| fault);
        }
        match &self.every {
            Some((every, fault)) if n.is_multiple_of(*every) => Some(fault.clone()),
            _ => None,
        }
    }
}

/// The state every request handler shares with the test.
pub(crate) struct Shared {
    dataset: Mutex<Dataset>,
    store: RwLock<Store>,
    options: Mutex<OneRosterOptions>,
    /// Fixed clock in Unix milliseconds, or `None` for the system clock.
    clock: Mutex<Option<u64>>,
    tokens: Mutex<Tokens>,
    faults: Mutex<FaultPlan>,
    /// Per token: when its window started and how many requests it used.
    windows: Mutex<HashMap<String, (tokio::time::Instant, u32)>>,
    log: Mutex<Vec<LoggedRequest>>,
    received: Mutex<Vec<String>>,
    requests: AtomicU64,
    /// `http://127.0.0.1:PORT`
    base_url: String,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// The simulator's clock, in Unix milliseconds.
    fn now_ms(&self) -> u64 {
        lock(&self.clock).unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        })
    }
}

/// Locks a mutex, even one poisoned by a test that panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running simulator. Dropping it stops it.
pub struct OneRosterSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl OneRosterSim {
    /// Starts a simulator serving `dataset` on `127.0.0.1` at a free port, every record stamped
    /// with the clock's time. Needs a tokio runtime (`#[tokio::test]`).
    ///
    /// # Panics
    /// If no local port can be bound, or `options.time` is not an RFC 3339 time.
    pub async fn start(dataset: Dataset, options: OneRosterOptions) -> OneRosterSim {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the simulator to 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let clock = options.time.as_deref().map(|t| {
            query::parse_instant(t).unwrap_or_else(|| panic!("options.time {t:?} is not RFC 3339"))
        });
        let (stop, stopped) = watch::channel(false);
        let feed = Feed::from_dataset(&dataset, &options.ids);
        let shared = Arc::new(Shared {
            dataset: Mutex::new(dataset),
            store: RwLock::new(Store::default()),
            options: Mutex::new(options),
            clock: Mutex::new(clock),
            tokens: Mutex::new(Tokens::default()),
            faults: Mutex::new(FaultPlan::default()),
            windows: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            base_url: format!("http://{addr}"),
            shutdown: stopped.clone(),
        });
        let now = shared.now_ms();
        shared
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(feed, now, true);
        let app = Router::new()
            .fallback(handler::handle)
            .with_state(shared.clone());
        let mut signal = stopped;
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = signal.wait_for(|stop| *stop).await;
        });
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        OneRosterSim {
            shared,
            addr,
            stop,
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`: no trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OAuth 2 token endpoint: `http://127.0.0.1:PORT/oauth/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.shared.base_url)
    }

    /// The base URL of a version's rostering service, e.g.
    /// `http://127.0.0.1:PORT/ims/oneroster/rostering/v1p2`.
    pub fn api_url(&self, version: OneRosterVersion) -> String {
        format!("{}{}", self.shared.base_url, version.base_path())
    }

    /// The client id it accepts.
    pub fn client_id(&self) -> String {
        lock(&self.shared.options).client_id.clone()
    }

    /// The client secret it accepts.
    pub fn client_secret(&self) -> String {
        lock(&self.shared.options).client_secret.clone()
    }

    /// Changes the district. Then stamps every record new or changed (in either version's
    /// shape) with the clock's time, and marks every record that is gone `tobedeleted` (or
    /// drops it, with `serve_deletions` off). Requests wait while this runs.
    pub fn update<R>(&self, f: impl FnOnce(&mut Dataset) -> R) -> R {
        let mut dataset = lock(&self.shared.dataset);
        let result = f(&mut dataset);
        let options = lock(&self.shared.options).clone();
        let feed = Feed::from_dataset(&dataset, &options.ids);
        let now = self.shared.now_ms();
        self.shared
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(feed, now, options.serve_deletions);
        result
    }

    /// Reads the district as it is served now.
    pub fn read<R>(&self, f: impl FnOnce(&Dataset) -> R) -> R {
        f(&lock(&self.shared.dataset))
    }

    /// Changes the options for the next requests.
    pub fn configure(&self, f: impl FnOnce(&mut OneRosterOptions)) {
        f(&mut lock(&self.shared.options));
    }

    /// Sets the clock (and stops it there) to an RFC 3339 time (`2026-02-01T00:00:00Z`).
    ///
    /// # Panics
    /// If `time` is not an RFC 3339 time.
    pub fn set_time(&self, time: &str) {
        let ms = query::parse_instant(time)
            .unwrap_or_else(|| panic!("set_time: {time:?} is not an RFC 3339 time"));
        *lock(&self.shared.clock) = Some(ms);
    }

    /// Moves the clock on (a system clock is frozen at its current time first).
    pub fn advance_time(&self, by: Duration) {
        let now = self.shared.now_ms();
        *lock(&self.shared.clock) = Some(now + by.as_millis() as u64);
    }

    /// The clock's time, as `dateLastModified` values are written.
    pub fn now(&self) -> String {
        crate::district::json::timestamp(self.shared.now_ms())
    }

    /// How many access tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> u64 {
        lock(&self.shared.tokens).issued
    }

    /// Expires every token issued so far (their next use gets 401).
    pub fn expire_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// Queues a fault for the next request (the token endpoint's included).
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).queue.push_back((None, fault));
    }

    /// Queues a fault for the next request whose path and query start with `uri_prefix`
    /// (`/ims/oneroster/rostering/v1p2/users`, `/oauth/token`...).
    pub fn inject_on(&self, uri_prefix: &str, fault: Fault) {
        lock(&self.shared.faults)
            .queue
            .push_back((Some(uri_prefix.to_string()), fault));
    }

    /// Injects `fault` into every `n`th request (counting all requests since start; 0 turns it
    /// off). Queued faults come first.
    pub fn inject_every(&self, n: u64, fault: Fault) {
        lock(&self.shared.faults).every = (n > 0).then_some((n, fault));
    }

    /// Drops every queued and repeating fault.
    pub fn clear_faults(&self) {
        let mut faults = lock(&self.shared.faults);
        faults.queue.clear();
        faults.every = None;
    }

    /// Starts a fresh rate-limit window for every token.
    pub fn reset_rate_limit(&self) {
        lock(&self.shared.windows).clear();
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// The path and query of every request received so far, in order of arrival, with those
    /// still being answered.
    pub fn received(&self) -> Vec<String> {
        lock(&self.shared.received).clone()
    }

    /// Empties the request log and the list of requests received (the count keeps counting).
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
        lock(&self.shared.received).clear();
    }

    /// How many requests arrived since start.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Stops the simulator and waits (at most two seconds) until its port is closed.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for OneRosterSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::district::oneroster::entity::percent_encode;
    use crate::district::{Collection, GenSpec, Role, generate};
    use serde_json::Value;
    use std::collections::HashSet;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const V1P1: &str = "/ims/oneroster/v1p1";
    const V1P2: &str = "/ims/oneroster/rostering/v1p2";

    /// What came back for one raw HTTP/1.1 request.
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("json body ({e}): {}", String::from_utf8_lossy(&self.body))
            })
        }

        /// The `imsx_codeMinorFieldValue` of an error envelope.
        fn code_minor(&self) -> String {
            let body = self.json();
            assert_eq!(body["imsx_codeMajor"], "failure", "{body}");
            body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }

        /// The target of the `Link` header's `rel` link, as a path and query.
        fn link(&self, rel: &str) -> Option<String> {
            self.header("link")?.split(", ").find_map(|part| {
                let (url, r) = part.split_once("; ")?;
                (r == format!("rel=\"{rel}\"")).then(|| {
                    let url = url.trim_start_matches('<').trim_end_matches('>');
                    let path = url.split_once("//").map_or(url, |(_, rest)| rest);
                    path[path.find('/').unwrap_or(0)..].to_string()
                })
            })
        }
    }

    /// A minimal HTTP client (one request per connection), so these tests need only tokio.
    async fn send(
        sim: &OneRosterSim,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(sim.addr())
            .await
            .expect("connect");
        let mut request = format!(
            "{method} {uri} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            sim.addr()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        // A connection aborted mid-body (a fault) keeps what arrived.
        let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
            .await
            .expect("an answer within 20 s");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    async fn token_request(sim: &OneRosterSim, id: &str, secret: &str, body: &str) -> Reply {
        let basic = format!(
            "Basic {}",
            crate::base64::encode(format!("{id}:{secret}").as_bytes())
        );
        let headers = [
            ("Authorization", basic.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        send(sim, "POST", "/oauth/token", &headers, body).await
    }

    async fn token(sim: &OneRosterSim) -> String {
        let reply = token_request(
            sim,
            &sim.client_id(),
            &sim.client_secret(),
            "grant_type=client_credentials",
        )
        .await;
        assert_eq!(reply.status, 200);
        reply.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    async fn get(sim: &OneRosterSim, token: &str, uri: &str) -> Reply {
        let auth = format!("Bearer {token}");
        send(sim, "GET", uri, &[("Authorization", auth.as_str())], "").await
    }

    /// Every sourcedId of a collection, following `next` links; and the number of pages.
    async fn follow(sim: &OneRosterSim, token: &str, uri: &str, key: &str) -> (Vec<String>, usize) {
        let mut ids = Vec::new();
        let mut next = Some(uri.to_string());
        let mut pages = 0;
        while let Some(uri) = next {
            let reply = get(sim, token, &uri).await;
            assert_eq!(reply.status, 200, "{uri}");
            pages += 1;
            let body = reply.json();
            ids.extend(
                body[key]
                    .as_array()
                    .expect("list")
                    .iter()
                    .map(|r| r["sourcedId"].as_str().expect("id").to_string()),
            );
            next = reply.link("next");
        }
        (ids, pages)
    }

    #[tokio::test]
    async fn token_endpoint_follows_client_credentials() {
        let sim = OneRosterSim::start(Dataset::new(), OneRosterOptions::default()).await;
        let (id, secret) = (sim.client_id(), sim.client_secret());
        let ok = token_request(&sim, &id, &secret, "grant_type=client_credentials").await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("cache-control"), Some("no-store"));
        let body = ok.json();
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3600);
        assert!(
            body["scope"]
                .as_str()
                .is_some_and(|s| s.contains("/v1p2/scope/roster-core.readonly"))
        );
        assert_eq!(body["access_token"].as_str().map(str::len), Some(32));

        let form = format!(
            "grant_type=client_credentials&client_id={id}&client_secret={secret}&scope={}",
            percent_encode(oauth::SCOPES[3])
        );
        let reply = send(
            &sim,
            "POST",
            "/oauth/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await;
        assert_eq!(reply.status, 200, "credentials in the body");
        assert_eq!(reply.json()["scope"], oauth::SCOPES[3]);
        assert_eq!(sim.tokens_issued(), 2);

        let wrong = token_request(&sim, &id, "wrong", "grant_type=client_credentials").await;
        assert_eq!(wrong.status, 401);
        assert_eq!(wrong.json()["error"], "invalid_client");
        assert!(
            wrong
                .header("www-authenticate")
                .is_some_and(|w| w.starts_with("Basic"))
        );
        let wrong_body = format!("grant_type=client_credentials&client_id={id}&client_secret=nope");
        assert_eq!(
            send(&sim, "POST", "/oauth/token", &[], &wrong_body)
                .await
                .status,
            401
        );
        assert_eq!(
            send(
                &sim,
                "POST",
                "/oauth/token",
                &[],
                "grant_type=client_credentials"
            )
            .await
            .status,
            401
        );
        let both = token_request(
            &sim,
            &id,
            &secret,
            &format!("grant_type=client_credentials&client_id={id}"),
        )
        .await;
        assert_eq!(
            (both.status, both.json()["error"].as_str()),
            (400, Some("invalid_request"))
        );
        let grant = token_request(&sim, &id, &secret, "grant_type=password").await;
        assert_eq!(
            (grant.status, grant.json()["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
        let missing = token_request(&sim, &id, &secret, "").await;
        assert_eq!(
            (missing.status, missing.json()["error"].as_str()),
            (400, Some("invalid_request"))
        );
        let scope = token_request(
            &sim,
            &id,
            &secret,
            "grant_type=client_credentials&scope=everything",
        )
        .await;
        assert_eq!(
            (scope.status, scope.json()["error"].as_str()),
            (400, Some("invalid_scope"))
        );
        assert_eq!(send(&sim, "GET", "/oauth/token", &[], "").await.status, 405);
        assert_eq!(sim.tokens_issued(), 2, "only granted requests count");
    }

    #[tokio::test]
    async fn api_requests_need_a_live_token() {
        let options = OneRosterOptions {
            expires_in_secs: 1,
            ..OneRosterOptions::default()
        };
        let sim = OneRosterSim::start(generate(GenSpec::new(20)), options).await;
        let users = format!("{V1P2}/users?limit=1");
        let none = send(&sim, "GET", &users, &[], "").await;
        assert_eq!(none.status, 401);
        assert_eq!(none.code_minor(), "unauthorisedrequest");
        assert!(
            none.header("www-authenticate")
                .is_some_and(|w| w.starts_with("Bearer"))
        );
        assert_eq!(get(&sim, "made-up", &users).await.status, 401);

        let t = token(&sim).await;
        assert_eq!(get(&sim, &t, &users).await.status, 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(get(&sim, &t, &users).await.status, 401, "expired");

        let fresh = token(&sim).await;
        assert_eq!(get(&sim, &fresh, &users).await.status, 200);
        sim.expire_tokens();
        assert_eq!(get(&sim, &fresh, &users).await.status, 401);
        assert_eq!(sim.tokens_issued(), 2);
        let t = token(&sim).await;
        assert_eq!(
            get(&sim, &t, &format!("{V1P2}/nonsense"))
                .await
                .code_minor(),
            "unknownobject"
        );
        assert_eq!(get(&sim, &t, "/ims/oneroster/v1p3/users").await.status, 404);
        assert_eq!(
            get(&sim, &t, &format!("{V1P2}/classes/x/students"))
                .await
                .status,
            501
        );
        assert_eq!(
            send(
                &sim,
                "POST",
                &users,
                &[("Authorization", &format!("Bearer {t}"))],
                ""
            )
            .await
            .status,
            405
        );
    }

    #[tokio::test]
    async fn collections_page_with_total_count_and_links() {
        let d = generate(GenSpec::new(200));
        let users = d.len(Collection::Users);
        let students = d.count_role(Role::Student);
        let teachers = d.count_role(Role::Teacher);
        let schools = d.len(Collection::Schools);
        let terms = d.len(Collection::Terms);
        let sim = OneRosterSim::start(d, OneRosterOptions::default()).await;
        let t = token(&sim).await;
        for base in [V1P1, V1P2] {
            let first = get(&sim, &t, &format!("{base}/users?limit=100")).await;
            assert_eq!(
                first.header("x-total-count"),
                Some(users.to_string().as_str())
            );
            assert!(first.link("last").is_some() && first.link("prev").is_none());
            assert_eq!(first.json()["users"].as_array().map(Vec::len), Some(100));
            let (ids, pages) = follow(&sim, &t, &format!("{base}/users?limit=100"), "users").await;
            assert_eq!(ids.len(), users, "{base}");
            assert_eq!(pages, users.div_ceil(100));
            assert_eq!(
                ids.iter().collect::<HashSet<_>>().len(),
                users,
                "no record twice"
            );
            let (ids, _) = follow(&sim, &t, &format!("{base}/users"), "users").await;
            assert_eq!(ids.len(), users, "default limit");

            for (path, key, count) in [
                ("students", "users", students),
                ("teachers", "users", teachers),
                ("schools", "orgs", schools),
                ("orgs", "orgs", schools + 1),
                ("terms", "academicSessions", terms),
                ("gradingPeriods", "academicSessions", 0),
            ] {
                let reply = get(&sim, &t, &format!("{base}/{path}?limit=1000")).await;
                assert_eq!(
                    reply.json()[key].as_array().map(Vec::len),
                    Some(count),
                    "{base}/{path}"
                );
                assert_eq!(
                    reply.header("x-total-count"),
                    Some(count.to_string().as_str())
                );
            }
            let teacher = &get(&sim, &t, &format!("{base}/teachers?limit=1"))
                .await
                .json()["users"][0];
            if base == V1P1 {
                assert_eq!(teacher["role"], "teacher");
                assert_eq!(teacher["orgs"][0]["type"], "org");
            } else {
                assert!(teacher.get("role").is_none());
                assert_eq!(teacher["roles"][0]["role"], "teacher");
                assert_eq!(teacher["roles"][0]["roleType"], "primary");
            }
            let one = get(
                &sim,
                &t,
                &format!(
                    "{base}/users/{}",
                    teacher["sourcedId"].as_str().expect("id")
                ),
            )
            .await;
            assert_eq!(one.json()["user"]["sourcedId"], teacher["sourcedId"]);
            let sorted = get(
                &sim,
                &t,
                &format!("{base}/users?sort=familyName&orderBy=desc&limit=5"),
            )
            .await
            .json();
            let names: Vec<&str> = sorted["users"]
                .as_array()
                .expect("users")
                .iter()
                .filter_map(|u| u["familyName"].as_str())
                .collect();
            assert!(names.windows(2).all(|w| w[0] >= w[1]), "{names:?}");
        }
        let bad = get(&sim, &t, &format!("{V1P2}/users?limit=0")).await;
        assert_eq!(bad.status, 400);
        assert_eq!(
            get(&sim, &t, &format!("{V1P2}/users?sort=shoeSize"))
                .await
                .code_minor(),
            "invalid_sort_field"
        );
    }

    #[tokio::test]
    async fn without_count_or_links_a_short_page_ends_the_collection() {
        let options = OneRosterOptions {
            total_count_header: false,
            link_header: false,
            max_limit: Some(50),
            ..OneRosterOptions::default()
        };
        let d = generate(GenSpec::new(100));
        let classes = d.len(Collection::Sections);
        let sim = OneRosterSim::start(d, options).await;
        let t = token(&sim).await;
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let reply = get(
                &sim,
                &t,
                &format!("{V1P1}/classes?limit=50&offset={offset}"),
            )
            .await;
            assert_eq!(reply.header("x-total-count"), None);
            assert_eq!(reply.header("link"), None);
            let page = reply.json()["classes"]
                .as_array()
                .cloned()
                .expect("classes");
            seen.extend(page.iter().map(|c| c["sourcedId"].clone()));
            if page.len() < 50 {
                break;
            }
            offset += 50;
        }
        assert_eq!(seen.len(), classes);
        let capped = get(&sim, &t, &format!("{V1P1}/classes?limit=500"))
            .await
            .json();
        assert_eq!(
            capped["classes"].as_array().map(Vec::len),
            Some(50.min(classes)),
            "max_limit cuts pages"
        );
        sim.configure(|o| o.link_header = true);
        let reply = get(&sim, &t, &format!("{V1P1}/classes?limit=10")).await;
        assert!(reply.link("next").is_some());
        assert!(reply.link("last").is_none(), "no last without a count");
    }

    #[tokio::test]
    async fn filtered_pulls_see_changes_and_deletions() {
        let options = OneRosterOptions {
            time: Some("2026-01-01T00:00:00Z".into()),
            ..OneRosterOptions::default()
        };
        let d = generate(GenSpec::new(200));
        let students = d.ids_with_role(Role::Student);
        let (gone, renamed) = (students[0].clone(), students[1].clone());
        let gone_sections = d.sections_of(&gone).len();
        let users = d.len(Collection::Users);
        let sim = OneRosterSim::start(d, options).await;
        let t = token(&sim).await;
        let since = |ts: &str| percent_encode(&format!("dateLastModified>'{ts}'"));

        let quiet = get(
            &sim,
            &t,
            &format!("{V1P2}/users?filter={}", since("2026-01-01T00:00:00Z")),
        )
        .await;
        assert_eq!(quiet.json()["users"], serde_json::json!([]));

        sim.set_time("2026-02-01T00:00:00Z");
        assert_eq!(sim.now(), "2026-02-01T00:00:00.000Z");
        sim.update(|d| {
            assert!(d.remove_user(&gone));
            d.edit(Collection::Users, &renamed, |u| {
                u["name"]["first"] = "Renamed".into()
            });
        });

        let changed = get(
            &sim,
            &t,
            &format!(
                "{V1P2}/users?limit=1000&filter={}",
                since("2026-01-15T00:00:00Z")
            ),
        )
        .await
        .json();
        let changed = changed["users"].as_array().cloned().expect("users");
        let by_id = |id: &str| changed.iter().find(|u| u["sourcedId"] == id).cloned();
        let g = by_id(&gone).expect("the removed student is served");
        assert_eq!(
            (g["status"].as_str(), g["dateLastModified"].as_str()),
            (Some("tobedeleted"), Some("2026-02-01T00:00:00.000Z"))
        );
        let r = by_id(&renamed).expect("the renamed student");
        assert_eq!(
            (r["status"].as_str(), r["givenName"].as_str()),
            (Some("active"), Some("Renamed"))
        );
        for u in &changed {
            if u["sourcedId"] != gone.as_str() && u["sourcedId"] != renamed.as_str() {
                assert_eq!(
                    u["roles"][0]["role"], "guardian",
                    "only the removed student's contacts changed besides: {u}"
                );
            }
        }

        let enrollments = get(
            &sim,
            &t,
            &format!(
                "{V1P1}/enrollments?limit=1000&filter={}",
                since("2026-01-15T00:00:00Z")
            ),
        )
        .await
        .json();
        let enrollments = enrollments["enrollments"]
            .as_array()
            .cloned()
            .expect("enrollments");
        assert_eq!(enrollments.len(), gone_sections);
        assert!(
            enrollments
                .iter()
                .all(|e| e["status"] == "tobedeleted" && e["user"]["sourcedId"] == gone.as_str())
        );

        let active = percent_encode("status='active' AND dateLastModified>='2026-02-01T00:00:00Z'");
        let active = get(
            &sim,
            &t,
            &format!("{V1P2}/users?limit=1000&filter={active}"),
        )
        .await
        .json();
        assert_eq!(
            active["users"].as_array().map(Vec::len),
            Some(changed.len() - 1)
        );

        let all = get(&sim, &t, &format!("{V1P2}/users?limit=1")).await;
        assert_eq!(
            all.header("x-total-count"),
            Some((users - 1).to_string().as_str()),
            "unfiltered pulls skip deletions"
        );
        assert_eq!(
            get(&sim, &t, &format!("{V1P2}/users/{gone}")).await.status,
            404
        );

        let role = percent_encode("role='student'");
        let students = get(&sim, &t, &format!("{V1P1}/users?limit=1&filter={role}")).await;
        assert_eq!(
            students.header("x-total-count"),
            Some("200"),
            "199 students and one tobedeleted"
        );
        let refused = get(&sim, &t, &format!("{V1P2}/users?filter={role}")).await;
        assert_eq!(
            (refused.status, refused.code_minor()),
            (400, "invalid_filter_field".to_string())
        );
        for bad in [
            "shoeSize='9'",
            "givenName",
            "dateLastModified>'soon'",
            "a='1' AND b='2' AND c='3'",
        ] {
            let reply = get(
                &sim,
                &t,
                &format!("{V1P2}/users?filter={}", percent_encode(bad)),
            )
            .await;
            assert_eq!(
                (reply.status, reply.code_minor()),
                (400, "invalid_filter_field".to_string()),
                "{bad}"
            );
        }

        sim.configure(|o| o.serve_deletions = false);
        let without = get(
            &sim,
            &t,
            &format!(
                "{V1P2}/users?limit=1000&filter={}",
                since("2026-01-15T00:00:00Z")
            ),
        )
        .await
        .json();
        assert_eq!(
            without["users"].as_array().map(Vec::len),
            Some(changed.len() - 1)
        );
    }

    #[tokio::test]
    async fn faults_rate_limits_and_the_request_log() {
        let sim =
            OneRosterSim::start(generate(GenSpec::new(20)), OneRosterOptions::default()).await;
        let t = token(&sim).await;
        let users = format!("{V1P2}/users");
        sim.inject_on(
            &users,
            Fault::RateLimited {
                retry_after_secs: 2,
            },
        );
        let limited = get(&sim, &t, &users).await;
        assert_eq!(
            (limited.status, limited.header("retry-after")),
            (429, Some("2"))
        );
        assert_eq!(limited.code_minor(), "server_busy");
        assert_eq!(
            get(&sim, &t, &users).await.status,
            200,
            "a queued fault is used once"
        );

        sim.inject(Fault::Status(500));
        let failed = get(&sim, &t, &users).await;
        assert_eq!(
            (failed.status, failed.code_minor()),
            (500, "internal_server_error".to_string())
        );
        sim.inject_on("/oauth/token", Fault::Status(503));
        assert_eq!(
            token_request(
                &sim,
                &sim.client_id(),
                &sim.client_secret(),
                "grant_type=client_credentials"
            )
            .await
            .status,
            503
        );
        sim.inject(Fault::TruncatedJson);
        let cut = get(&sim, &t, &users).await;
        assert_eq!(cut.status, 200);
        assert!(serde_json::from_slice::<Value>(&cut.body).is_err());
        sim.inject(Fault::DropMidBody);
        let dropped = get(&sim, &t, &users).await;
        assert_eq!(dropped.status, 200);
        assert!(!dropped.body.ends_with(b"0\r\n\r\n"), "no last chunk");
        sim.inject(Fault::Html);
        assert!(
            get(&sim, &t, &users)
                .await
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/html"))
        );
        sim.inject(Fault::Slow(Duration::from_millis(300)));
        let started = Instant::now();
        assert_eq!(get(&sim, &t, &users).await.status, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));

        sim.configure(|o| {
            o.rate_limit = 2;
            o.rate_limit_window = Duration::from_secs(30);
        });
        assert_eq!(get(&sim, &t, &users).await.status, 200);
        assert_eq!(get(&sim, &t, &users).await.status, 200);
        let over = get(&sim, &t, &users).await;
        assert_eq!(over.status, 429);
        let retry: u64 = over
            .header("retry-after")
            .expect("retry-after")
            .parse()
            .expect("seconds");
        assert!((1..=30).contains(&retry), "{retry}");
        sim.reset_rate_limit();
        assert_eq!(get(&sim, &t, &users).await.status, 200);
        sim.configure(|o| o.rate_limit = 0);

        sim.inject_every(2, Fault::Status(502));
        let before = sim.request_count();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(get(&sim, &t, &users).await.status);
        }
        let expected: Vec<u16> = (before + 1..=before + 4)
            .map(|n| if n % 2 == 0 { 502 } else { 200 })
            .collect();
        assert_eq!(statuses, expected);
        sim.clear_faults();

        let log = sim.requests();
        assert_eq!(log[0].path(), "/oauth/token");
        assert_eq!(
            log[1].fault,
            Some(Fault::RateLimited {
                retry_after_secs: 2
            })
        );
        assert_eq!(log[1].status, 429);
        assert_eq!(sim.received().len(), log.len());
        assert_eq!(sim.request_count() as usize, log.len());
        sim.clear_requests();
        assert!(sim.requests().is_empty() && sim.received().is_empty());
    }

    #[tokio::test]
    async fn odd_ids_are_served_percent_encoded() {
        let options = OneRosterOptions {
            ids: Ids::with(|id| format!("a/../{id}|x y+z")),
            ..OneRosterOptions::default()
        };
        let sim = OneRosterSim::start(generate(GenSpec::new(20)), options).await;
        let t = token(&sim).await;
        let list = get(&sim, &t, &format!("{V1P1}/enrollments?limit=1"))
            .await
            .json();
        let enrollment = &list["enrollments"][0];
        let user = enrollment["user"]["sourcedId"].as_str().expect("user id");
        assert!(user.starts_with("a/../") && user.ends_with("|x y+z"));
        let href = enrollment["user"]["href"].as_str().expect("href");
        let path = &href[sim.base_url().len()..];
        assert_eq!(path, format!("{V1P1}/users/{}", percent_encode(user)));
        let one = get(&sim, &t, path).await;
        assert_eq!(one.status, 200, "{path}");
        assert_eq!(one.json()["user"]["sourcedId"], user);
    }

    #[tokio::test]
    async fn stopping_ends_a_slow_request() {
        let sim = OneRosterSim::start(Dataset::new(), OneRosterOptions::default()).await;
        let addr = sim.addr();
        sim.inject(Fault::Slow(Duration::from_secs(3600)));
        let slow = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let request =
                format!("GET /oauth/token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("send");
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf).await;
            buf
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        sim.stop().await;
        assert!(started.elapsed() < Duration::from_secs(3));
        let reply = tokio::time::timeout(Duration::from_secs(5), slow)
            .await
            .expect("ended")
            .expect("task");
        assert!(
            reply.starts_with(b"HTTP/1.1 503"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "port closed"
        );
    }
}
