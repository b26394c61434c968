//! A Clever Data API v3.0 simulator on `127.0.0.1:0`, faithful to Clever's Swagger specs
//! (`clever-v3.0.yml`, `clever-v3.0-events.yml`) and to the real responses of the demo district:
//! the list envelope `{"data":[{"data":{..},"uri":..}],"links":[..]}`, range pagination by id
//! with `limit` (default 100, at most 10000, else 413), `starting_after` and `ending_before`, a
//! last page whose `next` link leads to an empty page, `/users?role=`, the events feed with
//! `record_type` and `school` filters, bearer-token auth (401, or 403 in forbidden mode), and the
//! 1200-requests-a-minute rate limit with its `X-RateLimit-*` headers (429 with an empty body).
//!
//! Tests inject faults ([`Fault`]), read the request log, and change the district between syncs
//! with [`CleverSim::update`].
//!
//! # Instant Login (SSO)
//! The simulator also serves Clever's OAuth 2.0 authorization code grant at the same base URL
//! (in production `https://clever.com` for OAuth, `https://api.clever.com` for the API). A test
//! registers the app ([`CleverSim::register_app`]) and says who is signed in to Clever
//! ([`CleverSim::sign_in_as`] with a [`Login`]), or starts a login as the portal does
//! ([`CleverSim::portal_login_url`]: the first redirect URI, a `code`, no `state`).
//! - `GET /oauth/authorize?response_type=code&client_id&redirect_uri` (optional `state`,
//!   `district_id`, `nonce`): 400 (an HTML page, no redirect) for an unknown `client_id`, a
//!   `redirect_uri` that is not exactly a registered one, or another `response_type`; Clever's
//!   sign-in page (200 HTML titled [`SIGN_IN_PAGE`]) when nobody is signed in, or the login is of
//!   another district than `district_id`; else 302 to the redirect URI (its own query kept) with
//!   `code` and, only if given, `state`. Without `redirect_uri`, the first registered one
//!   (Clever's default).
//! - `POST /oauth/tokens`: HTTP Basic `client_id:client_secret` (else 401 `invalid_client`), a
//!   JSON or form body with `code`, `grant_type=authorization_code` and `redirect_uri` (another
//!   content type: 400 `invalid_request`). A code unknown, used, older than
//!   [`SimOptions::code_lifetime`], or presented with another client or redirect URI than it was
//!   issued for: 400 `invalid_grant`. Else 200 `{"access_token","token_type":"bearer"}`.
//!   [`CleverSim::code_exchanges`] counts the exchanges and the refusals (every 400 and 401).
//! - With a login token (rate limited per token like the district token): `/v3.0/me` (also
//!   `/v3.1/me` and `/me`), `/userinfo` (the login's role only), `/v3.0/users/{own id}` and
//!   `/v3.0/districts/{own district}`; any other path, or another id, is 403
//!   `{"message":"Resource not in token's scopes"}` (Clever's message for a token outside its
//!   scopes; its docs add that the body may even be HTML, which [`Fault::Html`] covers). `/me`'s
//!   `self` link is `/me`, as in Clever's documented example (dev.clever.com/docs/links).
//!
//! Choices where Clever's documentation is silent: the 403 status of an out-of-scope request;
//! a failed exchange does not use up the code (a used one stays used, the token it gave keeps
//! working); login tokens do not expire; `authorized_by` is `"district"`; `/userinfo` has no
//! `email` when the user has none, `schools` from the login's role, and `user_id` from that
//! role's `legacy_id` (the v3 id when it has none); `school_admin` logins are users with the v3
//! `staff` role; the district token's `forbidden` mode leaves login tokens alone; `nonce` is
//! accepted and no `id_token` is issued (OIDC is off unless Clever turns it on for an app).
//!
//! Not simulated: the `count` parameter (ignored: its v3 response shape is undocumented),
//! sub-resource paths such as `/schools/{id}/sections` (501), the district tokens listing
//! (`GET /oauth/tokens`, 501), `/me` with the district token, Instant Login links
//! (`/oauth/instant-login`), OIDC, Clever Library (teacher-authorized) logins, and v3.1-only
//! fields (`/v3.1/...` serves the same records as `/v3.0/...`).
//!
//! # Layout
//! - `clever_sim.rs`: [`CleverSim`] (start, stop, controls) and [`SimOptions`];
//! - `connection.rs`: the listener, whose connections a handler can drop without a response;
//! - `handler.rs`: one request from fault to auth to rate limit to route;
//! - `oauth.rs`: Instant Login: [`SsoApp`], [`Login`], codes, login tokens and what they read;
//! - `paging.rs`: range pagination and the page JSON (shared with recordings);
//! - `rate_limit.rs`: per-token fixed windows;
//! - `faults.rs`: [`Fault`] and the queue of upcoming faults.
//!
//! ```no_run
//! # async fn demo() {
//! use rosterflow_tests::clever_sim::{CleverSim, Fault, Login, SimOptions, SsoApp};
//! use rosterflow_tests::district::{Collection, Dataset, Role};
//!
//! let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
//! let url = format!("{}/v3.0/users?limit=500", sim.base_url());
//! sim.inject_on("/v3.0/sections", Fault::Status(503));
//! // ... sync with the client, bearer token `sim.token()` ...
//! sim.update(|d| {
//!     let student = d.section_students(&d.ids(Collection::Sections)[0])[0].clone();
//!     d.remove_user(&student);
//! });
//! // ... sync again, then check what was requested:
//! assert!(sim.requests().iter().all(|r| r.status != Some(401)));
//!
//! // Instant Login: the service under test sends the browser to /oauth/authorize...
//! sim.register_app(SsoApp {
//!     client_id: "app-id".into(),
//!     client_secret: "app-secret".into(),
//!     redirect_uris: vec!["http://127.0.0.1:8080/auth/clever".into()],
//! });
//! let teacher = sim.read(|d| d.ids_with_role(Role::Teacher)[0].clone());
//! sim.sign_in_as(Some(Login::user(&teacher, "teacher")));
//! // ... or Clever starts the login from the portal:
//! let arrival = sim.portal_login_url(&Login::user(&teacher, "teacher"));
//! # }
//! ```

mod connection;
mod faults;
mod handler;
mod oauth;
pub(crate) mod paging;
mod rate_limit;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::district::Dataset;
use connection::{KillSwitch, SimListener};
use faults::FaultPlan;
use oauth::OAuthState;
use rate_limit::RateLimiter;

pub use faults::Fault;
pub use oauth::{Login, SIGN_IN_PAGE, SsoApp};

/// The bearer token the simulator accepts unless told otherwise.
pub const DEFAULT_TOKEN: &str = "sim-district-token";

/// How the simulator behaves; change it while running with [`CleverSim::configure`].
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The district bearer token every request must carry (`Authorization: Bearer <token>`).
    pub token: String,
    /// Answer every authenticated request with 403 (a token without the needed scopes).
    pub forbidden: bool,
    /// Requests allowed per token per window (Clever: 1200 a minute).
    pub rate_limit: u32,
    /// The rate-limit window (Clever: one minute).
    pub rate_limit_window: Duration,
    /// Page size when a request gives no `limit`. Clever does not document its default; 100 is
    /// this simulator's choice.
    pub default_limit: usize,
    /// The largest `limit` accepted; above it, 413 (Clever: 10000).
    pub max_limit: usize,
    /// Whether the last non-empty page still has a `next` link (leading to `{"data":[]}`), as
    /// Clever's pages may. On by default so that clients are tested on it.
    pub empty_last_page: bool,
    /// What an events request gets when its cursor names no stored event (expired or made up).
    pub unknown_event_cursor: UnknownCursor,
    /// How long an Instant Login authorization code can be exchanged (Clever: one minute).
    pub code_lifetime: Duration,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            token: DEFAULT_TOKEN.to_string(),
            forbidden: false,
            rate_limit: 1200,
            rate_limit_window: Duration::from_secs(60),
            default_limit: 100,
            max_limit: 10_000,
            empty_last_page: true,
            unknown_event_cursor: UnknownCursor::Range,
            code_lifetime: Duration::from_secs(60),
        }
    }
}

impl SimOptions {
    /// The defaults with another token.
    pub fn with_token(token: &str) -> SimOptions {
        SimOptions {
            token: token.to_string(),
            ..SimOptions::default()
        }
    }
}

/// The answer to an events cursor (`starting_after` / `ending_before`) that names no stored
/// event. Clever does not document it, so tests can try each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownCursor {
    /// Treat it as a position in the id range, like any cursor (the events after it, if any).
    Range,
    /// 404 with `{"message":..}`.
    NotFound,
    /// 400 with `{"message":..}`.
    BadRequest,
}

/// One request the simulator received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `GET`, ...
    pub method: String,
    /// Path and query, as sent: `/v3.0/users?limit=100&starting_after=...`.
    pub uri: String,
    /// The status sent; `None` when the connection was dropped without a response.
    pub status: Option<u16>,
    /// The fault injected into this request, if any.
    pub fault: Option<Fault>,
}

impl LoggedRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or(&self.uri)
    }
}

/// The state every request handler shares with the test.
pub(crate) struct Shared {
    dataset: RwLock<Dataset>,
    options: Mutex<SimOptions>,
    faults: Mutex<FaultPlan>,
    limiter: Mutex<RateLimiter>,
    /// Instant Login: the app, who is signed in, codes and login tokens.
    oauth: Mutex<OAuthState>,
    log: Mutex<Vec<LoggedRequest>>,
    /// The path and query of each request as it arrives, before it is answered.
    received: Mutex<Vec<String>>,
    requests: AtomicU64,
    /// Turns true when the simulator stops.
    shutdown: watch::Receiver<bool>,
}

/// Locks a mutex, even one poisoned by a test that panicked while holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running simulator. Dropping it stops it: it stops accepting connections, finishes the
/// requests in flight (a [`Fault::Slow`] one is cut short) and closes idle connections.
pub struct CleverSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl CleverSim {
    /// Starts a simulator serving `dataset` on `127.0.0.1` at a free port. Needs a tokio
    /// runtime (`#[tokio::test]`).
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start(dataset: Dataset, options: SimOptions) -> CleverSim {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the simulator to 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            dataset: RwLock::new(dataset),
            options: Mutex::new(options),
            faults: Mutex::new(FaultPlan::default()),
            limiter: Mutex::new(RateLimiter::default()),
            oauth: Mutex::new(OAuthState::default()),
            log: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            shutdown: stopped.clone(),
        });
        let app = Router::new()
            .fallback(handler::handle)
            .with_state(shared.clone());
        let mut signal = stopped;
        let server = axum::serve(
            SimListener(listener),
            app.into_make_service_with_connect_info::<KillSwitch>(),
        )
        .with_graceful_shutdown(async move {
            // A dropped sender ends the wait too.
            let _ = signal.wait_for(|stop| *stop).await;
        });
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        CleverSim {
            shared,
            addr,
            stop,
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`: no trailing slash, no version.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bearer token it currently accepts.
    pub fn token(&self) -> String {
        lock(&self.shared.options).token.clone()
    }

    /// Changes the district (between syncs, typically). Requests wait while `f` runs.
    pub fn update<R>(&self, f: impl FnOnce(&mut Dataset) -> R) -> R {
        let mut dataset = self
            .shared
            .dataset
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut dataset)
    }

    /// Reads the district as it is served now.
    pub fn read<R>(&self, f: impl FnOnce(&Dataset) -> R) -> R {
        let dataset = self
            .shared
            .dataset
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f(&dataset)
    }

    /// Changes the options (token, forbidden mode, limits...) for the next requests.
    pub fn configure(&self, f: impl FnOnce(&mut SimOptions)) {
        f(&mut lock(&self.shared.options));
    }

    /// Queues a fault for the next request.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(None, fault);
    }

    /// Queues a fault for the next request whose path and query start with `uri_prefix`
    /// (`/v3.0/sections`, `/v3.0/users?role=teacher`...).
    pub fn inject_on(&self, uri_prefix: &str, fault: Fault) {
        lock(&self.shared.faults).push(Some(uri_prefix.to_string()), fault);
    }

    /// Injects `fault` into every `n`th request (counting all requests since start; 0 turns it
    /// off). Queued faults come first.
    pub fn inject_every(&self, n: u64, fault: Fault) {
        lock(&self.shared.faults).set_every(n, fault);
    }

    /// Drops every queued and repeating fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Starts a fresh rate-limit window for every token.
    pub fn reset_rate_limit(&self) {
        lock(&self.shared.limiter).reset();
    }

    /// Registers the app whose logins this simulator serves (replacing any earlier one; codes
    /// and tokens already issued stay).
    pub fn register_app(&self, app: SsoApp) {
        lock(&self.shared.oauth).register_app(app);
    }

    /// Who `/oauth/authorize` issues codes for; `None`: it shows Clever's sign-in page
    /// ([`SIGN_IN_PAGE`]) instead. Nobody is signed in at start.
    ///
    /// # Panics
    /// If a [`Login::user`] names no user of the district, or one without that role.
    pub fn sign_in_as(&self, login: Option<Login>) {
        let identity = login.map(|login| self.read(|d| oauth::identify(&login, d)));
        lock(&self.shared.oauth).sign_in(identity);
    }

    /// A login that Clever starts (the portal or an Instant Login link): the app's first
    /// registered redirect URI with a fresh `code` for `login` (its lifetime starts now) and no
    /// `state`. Who is signed in does not change.
    ///
    /// # Panics
    /// Without a registered app, or as [`CleverSim::sign_in_as`] for `login`.
    pub fn portal_login_url(&self, login: &Login) -> String {
        let identity = self.read(|d| oauth::identify(login, d));
        lock(&self.shared.oauth).portal_login_url(identity)
    }

    /// How many times `POST /oauth/tokens` exchanged a code successfully, and refused one
    /// (any 400 or 401 it answered; injected faults are not counted).
    pub fn code_exchanges(&self) -> (usize, usize) {
        lock(&self.shared.oauth).code_exchanges()
    }

    /// Every request answered (or dropped) so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// The path and query of every request received so far, in order of arrival, with those
    /// still being answered (a [`Fault::Slow`] one, say): what a test waits for to act while a
    /// client waits on a page.
    pub fn received(&self) -> Vec<String> {
        lock(&self.shared.received).clone()
    }

    /// Empties the request log and the list of requests received (the request count keeps
    /// counting).
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

impl Drop for CleverSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::district::{Collection, GenSpec, Role, generate};
    use serde_json::{Value, json};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What came back for one raw HTTP/1.1 request.
    pub(super) struct Reply {
        /// `None` when the connection closed before a status line.
        pub(super) status: Option<u16>,
        pub(super) headers: Vec<(String, String)>,
        pub(super) body: Vec<u8>,
        /// Whether the body arrived whole (per Content-Length or the last chunk).
        pub(super) complete: bool,
    }

    impl Reply {
        pub(super) fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub(super) fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("json body ({e}): {}", String::from_utf8_lossy(&self.body))
            })
        }
    }

    /// A minimal HTTP client, so these tests depend on nothing but tokio: one request per
    /// connection, the raw bytes parsed by hand (a redirect is a reply like any other).
    async fn get_with(sim: &CleverSim, uri: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        send(sim, "GET", uri, &headers, "").await
    }

    /// Sends one request with `headers` and, unless empty, `body` (with its Content-Length).
    pub(super) async fn send(
        sim: &CleverSim,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(sim.addr())
            .await
            .expect("connect");
        let mut request = format!("{method} {uri} HTTP/1.1\r\nHost: {}\r\n", sim.addr());
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str(&format!("Connection: close\r\n\r\n{body}"));
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 65536];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the simulator answered within 20 s");
        parse_reply(&raw)
    }

    async fn get(sim: &CleverSim, uri: &str) -> Reply {
        get_with(sim, uri, Some(DEFAULT_TOKEN)).await
    }

    fn parse_reply(raw: &[u8]) -> Reply {
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Reply {
                status: None,
                headers: Vec::new(),
                body: Vec::new(),
                complete: false,
            };
        };
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let rest = &raw[split + 4..];
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let (body, complete) = if chunked {
            let mut body = Vec::new();
            let mut at = 0;
            let mut complete = false;
            while let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(String::from_utf8_lossy(&rest[at..at + eol]).trim(), 16)
                        .unwrap_or(0);
                at += eol + 2;
                if size == 0 {
                    complete = true;
                    break;
                }
                let end = (at + size).min(rest.len());
                body.extend_from_slice(&rest[at..end]);
                if end < at + size {
                    break;
                }
                at = end + 2;
                if at > rest.len() {
                    break;
                }
            }
            (body, complete)
        } else {
            let length = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok());
            (rest.to_vec(), length.is_none_or(|l| l == rest.len()))
        };
        Reply {
            status,
            headers,
            body,
            complete,
        }
    }

    fn link<'a>(page: &'a Value, rel: &str) -> Option<&'a str> {
        page["links"].as_array()?.iter().find(|l| l["rel"] == rel)?["uri"].as_str()
    }

    fn page_ids(page: &Value) -> Vec<String> {
        page["data"]
            .as_array()
            .expect("data array")
            .iter()
            .map(|d| d["data"]["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// Follows `next` links from `first`, as a client does; returns the ids and the page count.
    async fn follow(sim: &CleverSim, first: &str) -> (Vec<String>, usize) {
        let mut uri = first.to_string();
        let mut ids = Vec::new();
        let mut pages = 0;
        loop {
            let reply = get(sim, &uri).await;
            assert_eq!(reply.status, Some(200), "{uri}");
            let page = reply.json();
            pages += 1;
            let got = page_ids(&page);
            if got.is_empty() {
                assert!(link(&page, "next").is_none(), "an empty page ends the list");
                break;
            }
            ids.extend(got);
            match link(&page, "next") {
                Some(next) => uri = next.to_string(),
                None => break,
            }
        }
        (ids, pages)
    }

    #[tokio::test]
    async fn paging_covers_every_record_exactly_once() {
        let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
        let (ids, pages) = follow(&sim, "/v3.0/users?limit=300").await;
        assert_eq!(ids, sim.read(|d| d.ids(Collection::Users)));
        assert_eq!(
            pages,
            2098usize.div_ceil(300) + 1,
            "the last page links to an empty page"
        );

        let (students, _) = follow(&sim, "/v3.0/users?role=student&limit=99").await;
        assert_eq!(students, sim.read(|d| d.ids_with_role(Role::Student)));

        for c in Collection::DATA {
            let (ids, _) = follow(&sim, &format!("/v3.0/{}?limit=64", c.name())).await;
            assert_eq!(ids, sim.read(|d| d.ids(c)), "{c:?}");
        }
    }

    #[tokio::test]
    async fn envelope_matches_clever() {
        let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
        let reply = get(&sim, "/v3.0/users?limit=2").await;
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let page = reply.json();
        let first = &page["data"][0];
        assert_eq!(first["uri"], "/v3.0/users/5a25ffb0c1bc2a00360003ed");
        assert_eq!(first["data"]["name"]["last"], "Ziemann");
        assert_eq!(
            page["links"][0],
            json!({"rel": "self", "uri": "/v3.0/users?limit=2"})
        );
        assert_eq!(
            link(&page, "next"),
            Some("/v3.0/users?limit=2&starting_after=5a25ffb0c1bc2a00360003ee")
        );
        assert!(link(&page, "prev").is_none());

        // Without limit: the default page size, and links without limit.
        let page = get(&sim, "/v3.0/users").await.json();
        assert_eq!(page_ids(&page).len(), 100);
        assert!(link(&page, "next").is_some_and(|n| n.starts_with("/v3.0/users?starting_after=")));

        let one = get(&sim, "/v3.0/sections/5a25ffc265e950634b00017c")
            .await
            .json();
        assert_eq!(one["data"]["name"], "Group Guidance - Greene - 0");
        assert_eq!(
            get(&sim, "/v3.0/sections/000000000000000000000000")
                .await
                .status,
            Some(404)
        );
        let v31 = get(&sim, "/v3.1/districts").await.json();
        assert_eq!(
            v31["data"][0]["uri"],
            "/v3.1/districts/5a0c91b95c7cc000010d417c"
        );
        let unknown = get(&sim, "/v3.0/nonsense").await;
        assert_eq!(unknown.status, Some(404));
        assert!(
            unknown
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/html"))
        );
    }

    #[tokio::test]
    async fn last_page_next_link_is_switchable() {
        let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
        let page = get(&sim, "/v3.0/districts").await.json();
        let next = link(&page, "next")
            .expect("next link on the only page")
            .to_string();
        let empty = get(&sim, &next).await.json();
        assert_eq!(empty["data"], json!([]));
        assert_eq!(empty["links"], json!([{"rel": "self", "uri": next}]));

        sim.configure(|o| o.empty_last_page = false);
        let page = get(&sim, "/v3.0/districts").await.json();
        assert!(link(&page, "next").is_none());
        let (ids, pages) = follow(&sim, "/v3.0/sections?limit=100").await;
        assert_eq!((ids.len(), pages), (378, 4));
    }

    #[tokio::test]
    async fn ending_before_pages_backwards() {
        let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
        let all = sim.read(|d| d.ids(Collection::Sections));
        let page = get(
            &sim,
            &format!("/v3.0/sections?limit=5&ending_before={}", all[10]),
        )
        .await
        .json();
        assert_eq!(page_ids(&page), all[5..10].to_vec());
        assert!(link(&page, "prev").is_some());
        let last = get(&sim, "/v3.0/sections?limit=3&ending_before=last")
            .await
            .json();
        assert_eq!(page_ids(&last), all[all.len() - 3..].to_vec());
    }

    #[tokio::test]
    async fn auth_forbidden_and_limit_errors() {
        let sim = CleverSim::start(Dataset::demo(), SimOptions::with_token("secret")).await;
        for token in [None, Some("wrong")] {
            let reply = get_with(&sim, "/v3.0/users", token).await;
            assert_eq!(reply.status, Some(401));
            assert!(reply.json()["message"].is_string());
        }
        assert_eq!(
            get_with(&sim, "/v3.0/users?limit=1", Some("secret"))
                .await
                .status,
            Some(200)
        );
        let too_big = get_with(&sim, "/v3.0/users?limit=10001", Some("secret")).await;
        assert_eq!(too_big.status, Some(413));
        assert!(
            too_big.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains("10000"))
        );
        assert_eq!(
            get_with(&sim, "/v3.0/users?limit=10000", Some("secret"))
                .await
                .status,
            Some(200)
        );
        assert_eq!(
            get_with(&sim, "/v3.0/users?limit=abc", Some("secret"))
                .await
                .status,
            Some(400)
        );
        assert_eq!(
            get_with(&sim, "/v3.0/users?role=wizard", Some("secret"))
                .await
                .status,
            Some(400)
        );

        sim.configure(|o| o.forbidden = true);
        let reply = get_with(&sim, "/v3.0/users", Some("secret")).await;
        assert_eq!(reply.status, Some(403));
        assert!(reply.json()["message"].is_string());
    }

    #[tokio::test]
    async fn rate_limit_gives_429_with_headers() {
        let options = SimOptions {
            rate_limit: 3,
            ..SimOptions::default()
        };
        let sim = CleverSim::start(Dataset::demo(), options).await;
        for remaining in ["2", "1", "0"] {
            let reply = get(&sim, "/v3.0/districts").await;
            assert_eq!(reply.status, Some(200));
            assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
            assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining));
            assert!(reply.header("x-ratelimit-bucket").is_some());
        }
        let limited = get(&sim, "/v3.0/districts").await;
        assert_eq!(limited.status, Some(429));
        assert!(limited.body.is_empty(), "429 has an empty body");
        let reset: u64 = limited
            .header("x-ratelimit-reset")
            .expect("reset header")
            .parse()
            .expect("unix seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(
            reset > now && reset <= now + 61,
            "reset {reset} within the minute after {now}"
        );
        sim.reset_rate_limit();
        assert_eq!(get(&sim, "/v3.0/districts").await.status, Some(200));
    }

    #[tokio::test]
    async fn injected_faults() {
        let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;

        sim.inject(Fault::Status(503));
        let reply = get(&sim, "/v3.0/users").await;
        assert_eq!(reply.status, Some(503));
        assert!(reply.json()["message"].is_string());
        assert_eq!(
            get(&sim, "/v3.0/users?limit=1").await.status,
            Some(200),
            "a queued fault is used once"
        );

        sim.inject(Fault::RateLimited);
        let reply = get(&sim, "/v3.0/users").await;
        assert_eq!(reply.status, Some(429));
        assert!(reply.body.is_empty());
        let reset: u64 = reply
            .header("x-ratelimit-reset")
            .expect("reset")
            .parse()
            .expect("number");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(reset >= now && reset <= now + 2);

        sim.inject(Fault::DropConnection);
        let reply = get(&sim, "/v3.0/users").await;
        assert_eq!(reply.status, None, "no response at all");

        sim.inject(Fault::Html);
        let reply = get(&sim, "/v3.0/users").await;
        assert_eq!(reply.status, Some(200));
        assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/html"))
        );
        assert!(serde_json::from_slice::<Value>(&reply.body).is_err());

        sim.inject(Fault::TruncatedJson);
        let reply = get(&sim, "/v3.0/users?limit=50").await;
        assert_eq!(reply.status, Some(200));
        assert!(reply.complete, "the HTTP response is whole");
        assert!(
            serde_json::from_slice::<Value>(&reply.body).is_err(),
            "the JSON is not"
        );

        sim.inject(Fault::DropMidBody);
        let reply = get(&sim, "/v3.0/users?limit=50").await;
        assert_eq!(reply.status, Some(200));
        assert!(!reply.complete, "the body stops halfway");

        sim.inject(Fault::NextToSelf);
        let reply = get(&sim, "/v3.0/users?limit=50").await;
        let page: Value = serde_json::from_slice(&reply.body).expect("a whole page");
        assert_eq!(link(&page, "next"), Some("/v3.0/users?limit=50"));
        assert!(!reply.body.is_empty());

        sim.inject_on("/v3.0/sections", Fault::Slow(Duration::from_millis(400)));
        assert_eq!(
            get(&sim, "/v3.0/users?limit=1").await.status,
            Some(200),
            "other paths are not slowed"
        );
        let started = Instant::now();
        assert_eq!(get(&sim, "/v3.0/sections?limit=1").await.status, Some(200));
        assert!(started.elapsed() >= Duration::from_millis(400));

        let log = sim.requests();
        let faults: Vec<Option<Fault>> = log.iter().map(|r| r.fault.clone()).collect();
        assert_eq!(faults.iter().filter(|f| f.is_some()).count(), 8);
        assert_eq!(log[3].status, None);
        assert_eq!(log[3].fault, Some(Fault::DropConnection));
        assert_eq!(log.last().map(LoggedRequest::path), Some("/v3.0/sections"));
    }

    #[tokio::test]
    async fn every_nth_request_fails() {
        let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
        sim.inject_every(2, Fault::Status(502));
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(get(&sim, "/v3.0/districts").await.status);
        }
        assert_eq!(statuses, vec![Some(200), Some(502), Some(200), Some(502)]);
        sim.clear_faults();
        assert_eq!(get(&sim, "/v3.0/districts").await.status, Some(200));
        assert_eq!(sim.request_count(), 5);
    }

    #[tokio::test]
    async fn updates_show_in_the_next_sync() {
        let sim = CleverSim::start(Dataset::demo(), SimOptions::default()).await;
        let student = sim.read(|d| d.ids_with_role(Role::Student)[0].clone());
        assert!(sim.update(|d| d.remove_user(&student)));
        let (ids, _) = follow(&sim, "/v3.0/users?limit=10000").await;
        assert_eq!(ids.len(), 2097);
        assert!(!ids.contains(&student));
        assert_eq!(
            get(&sim, &format!("/v3.0/users/{student}")).await.status,
            Some(404)
        );
    }

    #[tokio::test]
    async fn events_feed_pages_and_filters() {
        let mut dataset = Dataset::demo();
        let cursor = dataset.push_event(
            "districts.updated",
            json!({"id": "x"}),
            Some(json!({"name": "old"})),
        );
        dataset.set_emit_events(true);
        let students = dataset.ids_with_role(Role::Student);
        let section = dataset.sections_of(&students[0])[0].clone();
        dataset.remove_student_from_section(&section, &students[0]);
        dataset.edit(Collection::Users, &students[1], |u| {
            u["name"]["first"] = json!("Renamed")
        });
        dataset.remove_user(&students[2]);
        let total = dataset.len(Collection::Events);
        let sim = CleverSim::start(dataset, SimOptions::default()).await;

        let (ids, _) = follow(
            &sim,
            &format!("/v3.0/events?limit=2&starting_after={cursor}"),
        )
        .await;
        assert_eq!(ids.len(), total - 1);
        let page = get(
            &sim,
            &format!("/v3.0/events?starting_after={cursor}&limit=1"),
        )
        .await
        .json();
        let event = &page["data"][0];
        assert_eq!(event["data"]["type"], "sections.updated");
        assert!(
            event["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("/v3.0/events/"))
        );
        assert!(event["data"]["data"]["previous_attributes"]["students"].is_array());
        assert!(event["data"]["created"].is_string());

        let users = get(&sim, "/v3.0/events?record_type=users&limit=100")
            .await
            .json();
        let types: Vec<&str> = users["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|e| e["data"]["type"].as_str())
            .collect();
        // The renamed student, the removed one, and the contact who lost a relationship.
        assert_eq!(
            types,
            vec!["users.updated", "users.deleted", "users.updated"]
        );
        assert_eq!(
            link(&users, "next").map(|n| n.split("&starting_after").next().unwrap_or_default()),
            Some("/v3.0/events?limit=100&record_type=users")
        );
        let both = get(
            &sim,
            "/v3.0/events?record_type=users&record_type=sections&limit=100",
        )
        .await
        .json();
        assert_eq!(page_ids(&both).len(), total - 1);

        let made_up = "ffffffffffffffffffffffff";
        assert_eq!(
            get(&sim, &format!("/v3.0/events?starting_after={made_up}"))
                .await
                .json()["data"],
            json!([])
        );
        sim.configure(|o| o.unknown_event_cursor = UnknownCursor::NotFound);
        assert_eq!(
            get(&sim, &format!("/v3.0/events?starting_after={made_up}"))
                .await
                .status,
            Some(404)
        );
        sim.update(|d| d.expire_events_before(&ids[0]));
        assert_eq!(
            get(&sim, &format!("/v3.0/events?starting_after={cursor}"))
                .await
                .status,
            Some(404),
            "expired cursor"
        );
        assert_eq!(
            get(&sim, &format!("/v3.0/events/{}", ids[0])).await.status,
            Some(200)
        );
    }

    #[tokio::test]
    async fn recording_pages_equal_served_pages() {
        let dataset = generate(GenSpec::new(400));
        let tmp = tempfile::tempdir().expect("temp dir");
        dataset
            .write_recording(tmp.path(), 150)
            .expect("write recording");
        let sim = CleverSim::start(dataset, SimOptions::default()).await;
        for c in Collection::DATA {
            let mut uri = format!("/v3.0/{}?limit=150", c.name());
            for n in 1.. {
                let served = get(&sim, &uri).await.body;
                let file = tmp.path().join(c.name()).join(format!("{n:04}.json"));
                let recorded = std::fs::read(&file).expect("recorded page");
                assert_eq!(served, recorded, "{}", file.display());
                match link(&serde_json::from_slice(&served).expect("json"), "next") {
                    Some(next) => uri = next.to_string(),
                    None => break,
                }
            }
        }
    }

    #[tokio::test]
    async fn stopping_closes_the_port_even_with_a_slow_request_in_flight() {
        let sim = CleverSim::start(Dataset::new(), SimOptions::default()).await;
        let addr = sim.addr();
        sim.inject(Fault::Slow(Duration::from_secs(3600)));
        let slow = tokio::spawn({
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            async move {
                let request = format!(
                    "GET /v3.0/users HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).await.expect("send");
                let mut buf = Vec::new();
                let _ = stream.read_to_end(&mut buf).await;
                buf
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        sim.stop().await;
        assert!(started.elapsed() < Duration::from_secs(3));
        let cut = tokio::time::timeout(Duration::from_secs(5), slow)
            .await
            .expect("slow request ended")
            .expect("task");
        assert!(cut.is_empty(), "the slow request got no response");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "port closed"
        );
    }

    #[tokio::test]
    async fn dropping_stops_the_server() {
        let sim = CleverSim::start(Dataset::new(), SimOptions::default()).await;
        let addr = sim.addr();
        assert_eq!(get(&sim, "/v3.0/users").await.status, Some(200));
        drop(sim);
        let mut closed = false;
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(closed, "the port closes after drop");
    }
}
