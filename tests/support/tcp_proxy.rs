//! A TCP proxy in front of a PostgreSQL server, for storage-fault tests: it forwards every
//! connection on 127.0.0.1, reads the PostgreSQL messages each client sends, and when one
//! matches the trigger a test set, it cuts every connection there and then (and refuses new
//! ones until told to accept again), or holds that client's messages until the test releases
//! them (time for the test to stop the server under it). A fault lands at a chosen point of a
//! run, such as its first `COPY` into a table, with no sleeps and no change to rosterflow.
//!
//! The proxy runs on a runtime of its own, so that both synchronous and `#[tokio::test]` tests
//! can drive it with plain calls.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A message a client sent, as the proxy saw it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The message's type byte; `None` for the untyped messages that open a connection
    /// (startup, SSL request, cancel).
    pub kind: Option<u8>,
    /// The message after its type and length.
    pub body: &'a [u8],
}

impl Message<'_> {
    /// The SQL of a simple query (`Q`) or of a statement being prepared (`P`).
    pub fn sql(&self) -> Option<&str> {
        let text = match self.kind? {
            b'Q' => self.body,
            // Parse: the statement's name, then its text, each NUL-terminated.
            b'P' => {
                let name_end = self.body.iter().position(|&b| b == 0)?;
                &self.body[name_end + 1..]
            }
            _ => return None,
        };
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        std::str::from_utf8(&text[..end]).ok()
    }

    /// The message in a few words, for a test's log.
    fn describe(&self) -> String {
        match (self.kind, self.sql()) {
            (_, Some(sql)) => format!("query {:?}", sql.chars().take(120).collect::<String>()),
            (Some(kind), None) => {
                format!("message {:?} of {} bytes", kind as char, self.body.len())
            }
            (None, None) => "a startup message".to_owned(),
        }
    }
}

/// What the proxy does when the trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Closes every connection at once, the matching message unsent, and refuses new
    /// connections (the port is closed) until [`TcpProxy::accept`].
    Cut,
    /// Holds the matching message, and everything its client sends after it, until
    /// [`TcpProxy::release`]; the server's answers still reach the client.
    Hold,
}

type Matcher = Box<dyn Fn(&Message<'_>) -> bool + Send + Sync>;

#[derive(Default)]
struct State {
    /// Connections are refused, and those open were closed.
    refusing: bool,
    /// How many cuts there were: a connection opened before a cut ends with it.
    cuts: u64,
    /// How many releases there were: a held connection goes on after one.
    releases: u64,
    trigger: Option<(Fault, Matcher)>,
    /// The message that fired the trigger, described.
    fired: Option<String>,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    /// Wakes tests waiting for the trigger.
    fired: Condvar,
    /// Wakes the proxy's tasks after a change of state.
    changed: watch::Sender<()>,
}

impl Shared {
    fn change(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("proxy state"));
        self.changed.send_replace(());
        self.fired.notify_all();
    }
}

/// A proxy listening on 127.0.0.1, forwarding to a server.
pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream` (a PostgreSQL server) on a free port of 127.0.0.1.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tcp-proxy")
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        // Bound here, made a tokio listener on the proxy's runtime: a test's own runtime may be
        // the caller, inside which no other runtime may block.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the proxy");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the proxy's address");
        let (changed, _) = watch::channel(());
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State::default()),
            fired: Condvar::new(),
            changed,
        });
        let accepting = shared.clone();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            accept(listener, address, accepting).await
        });
        TcpProxy {
            port: address.port(),
            shared,
            runtime: Some(runtime),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `url` (a `postgres://` URL) through this proxy: its host and port replaced.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a database URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"));
        format!(
            "{scheme}://{}127.0.0.1:{}{path}",
            user.unwrap_or_default(),
            self.port
        )
    }

    /// Arms the trigger: the first message of any client for which `matches` holds (checked
    /// before the message is forwarded) makes the proxy do `fault`. One trigger at a time; it
    /// fires once.
    pub fn on(&self, fault: Fault, matches: impl Fn(&Message<'_>) -> bool + Send + Sync + 'static) {
        self.shared.change(|state| {
            state.trigger = Some((fault, Box::new(matches)));
            state.fired = None;
        });
    }

    /// Waits until the trigger fires and returns the message that fired it, described. Fails
    /// the test after `limit`.
    pub fn wait_fired(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut state = self.shared.state.lock().expect("proxy state");
        loop {
            if let Some(fired) = &state.fired {
                return fired.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the proxy's trigger did not fire within {limit:?}"
            );
            state = self
                .shared
                .fired
                .wait_timeout(state, left)
                .expect("proxy state")
                .0;
        }
    }

    /// Cuts every connection now and refuses new ones, as if the server's host went away.
    pub fn cut(&self) {
        self.shared.change(|state| {
            state.refusing = true;
            state.cuts += 1;
        });
    }

    /// Accepts and forwards connections again after a cut.
    pub fn accept(&self) {
        self.shared.change(|state| state.refusing = false);
    }

    /// Lets held messages go on to the server (which may have gone by then).
    pub fn release(&self) {
        self.shared.change(|state| state.releases += 1);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Without waiting: a test's own runtime may be what drops the proxy.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Accepts connections while the proxy is not refusing them; while it is, the port is closed,
/// so that clients are refused as by a server that is down.
async fn accept(listener: TcpListener, address: SocketAddr, shared: Arc<Shared>) {
    let mut changed = shared.changed.subscribe();
    let mut listener = Some(listener);
    loop {
        let refusing = shared.state.lock().expect("proxy state").refusing;
        match (&listener, refusing) {
            (Some(_), true) => listener = None,
            (None, false) => match TcpListener::bind(address).await {
                Ok(bound) => listener = Some(bound),
                Err(error) => panic!("the proxy cannot listen on {address} again: {error}"),
            },
            _ => {}
        }
        let Some(open) = &listener else {
            if changed.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = open.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let cuts = shared.state.lock().expect("proxy state").cuts;
                tokio::spawn(forward(client, shared.clone(), cuts));
            }
            done = changed.changed() => if done.is_err() { return },
        }
    }
}

/// Forwards one connection until either side closes it or a cut ends it.
async fn forward(client: TcpStream, shared: Arc<Shared>, cuts: u64) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let cut = {
        let mut changed = shared.changed.subscribe();
        let shared = shared.clone();
        async move {
            loop {
                if shared.state.lock().expect("proxy state").cuts > cuts {
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        }
    };
    // Whichever ends first ends the connection: both sockets are dropped with this future.
    tokio::select! {
        _ = cut => {}
        _ = answers(server_read, client_write) => {}
        _ = requests(client_read, server_write, &shared) => {}
    }
}

/// The server's side, copied as is.
async fn answers(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
}

/// The client's side, message by message, each checked against the trigger before it goes on.
async fn requests(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
) {
    let mut frames = Frames::default();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut changed = shared.changed.subscribe();
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        frames.push(&buffer[..read]);
        while let Some((start, end, kind)) = frames.next() {
            let bytes = &frames.buffer[start..end];
            let message = Message {
                kind,
                body: &bytes[if kind.is_some() { 5 } else { 4 }..],
            };
            let fault = {
                let mut state = shared.state.lock().expect("proxy state");
                let fires = state
                    .trigger
                    .as_ref()
                    .is_some_and(|(_, matches)| matches(&message));
                if fires {
                    let (fault, _) = state.trigger.take().expect("just matched");
                    state.fired = Some(message.describe());
                    if fault == Fault::Cut {
                        state.refusing = true;
                        state.cuts += 1;
                    }
                    Some((fault, state.releases))
                } else {
                    None
                }
            };
            match fault {
                Some((Fault::Cut, _)) => {
                    shared.changed.send_replace(());
                    shared.fired.notify_all();
                    return;
                }
                Some((Fault::Hold, releases)) => {
                    shared.changed.send_replace(());
                    shared.fired.notify_all();
                    while shared.state.lock().expect("proxy state").releases <= releases {
                        if changed.changed().await.is_err() {
                            return;
                        }
                    }
                }
                None => {}
            }
            if to.write_all(bytes).await.is_err() {
                return;
            }
        }
        frames.consume();
        // Once the stream cannot be read as PostgreSQL messages, the rest goes as it comes.
        if frames.raw {
            let rest = std::mem::take(&mut frames.buffer);
            if to.write_all(&rest).await.is_err() {
                return;
            }
            let _ = tokio::io::copy(&mut from, &mut to).await;
            return;
        }
    }
}

/// Splits what a client sends into PostgreSQL frontend messages.
#[derive(Default)]
struct Frames {
    buffer: Vec<u8>,
    /// Where the next message starts in `buffer`.
    start: usize,
    /// Past the startup message: every message has a type byte.
    typed: bool,
    /// The stream is not PostgreSQL's protocol (or turned to TLS): not parsed.
    raw: bool,
}

impl Frames {
    /// The codes of untyped requests after which the client sends its startup message.
    const SSL_REQUEST: u32 = 80_877_103;
    const GSS_REQUEST: u32 = 80_877_104;

    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message: its range in `buffer` and its type byte.
    fn next(&mut self) -> Option<(usize, usize, Option<u8>)> {
        if self.raw {
            return None;
        }
        let rest = &self.buffer[self.start..];
        let header = if self.typed { 5 } else { 8 };
        if rest.len() < header {
            return None;
        }
        let at = usize::from(self.typed);
        let length = u32::from_be_bytes(rest[at..at + 4].try_into().expect("4 bytes")) as usize;
        if !(4..=1 << 30).contains(&length) {
            self.raw = true;
            return None;
        }
        let size = at + length;
        if rest.len() < size {
            return None;
        }
        let kind = self.typed.then(|| rest[0]);
        if !self.typed {
            let code = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
            self.typed = !matches!(code, Self::SSL_REQUEST | Self::GSS_REQUEST);
        }
        let range = (self.start, self.start + size, kind);
        self.start += size;
        Some(range)
    }

    /// Drops the messages already forwarded.
    fn consume(&mut self) {
        self.buffer.drain(..self.start);
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn messages_are_split_across_reads_and_their_sql_read() {
        let mut stream = Vec::new();
        // SSL request, then a startup message, then typed messages.
        stream.extend_from_slice(&8u32.to_be_bytes());
        stream.extend_from_slice(&Frames::SSL_REQUEST.to_be_bytes());
        stream.extend_from_slice(&9u32.to_be_bytes());
        stream.extend_from_slice(&196_608u32.to_be_bytes());
        stream.push(0);
        stream.extend(typed(b'Q', b"COPY class_students (class_id) FROM STDIN\0"));
        stream.extend(typed(b'P', b"s1\0SELECT 1\0\0\0"));
        stream.extend(typed(b'd', b"1\t2\n"));
        let mut frames = Frames::default();
        let mut seen = Vec::new();
        for chunk in stream.chunks(3) {
            frames.push(chunk);
            while let Some((start, end, kind)) = frames.next() {
                let bytes = &frames.buffer[start..end];
                let message = Message {
                    kind,
                    body: &bytes[if kind.is_some() { 5 } else { 4 }..],
                };
                seen.push((kind, message.sql().map(str::to_owned)));
            }
            frames.consume();
        }
        assert_eq!(
            seen,
            [
                (None, None),
                (None, None),
                (
                    Some(b'Q'),
                    Some("COPY class_students (class_id) FROM STDIN".into())
                ),
                (Some(b'P'), Some("SELECT 1".into())),
                (Some(b'd'), None),
            ]
        );
        assert!(!frames.raw);
    }
}
