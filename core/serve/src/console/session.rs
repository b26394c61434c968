//! Who is signed in to the console: a session cookie signed with a key derived from the admin
//! token, so that every service of a database accepts the sessions of the others, and nothing
//! is stored. Each form carries a CSRF token derived from the session; a POST without it (or
//! with another session's) is refused.

use chrono::{DateTime, Duration, Utc};
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "rosterflow_session";

/// The shortest admin token accepted: sessions are signed with a key derived from it.
pub const MIN_TOKEN_LEN: usize = 16;

/// How long a session lasts.
const LIFETIME: Duration = Duration::hours(12);

/// The console's secret: the admin token that signs in, and the key that signs sessions.
pub struct Keys {
    signing: [u8; 32],
    /// The admin token's MAC, to compare a candidate's with in constant time.
    token_mac: Vec<u8>,
}

/// A signed-in admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The name the admin signed in with; recorded with every action they take.
    pub user: String,
    /// The cookie's value, which the CSRF token is derived from.
    cookie: String,
}

impl Keys {
    pub fn new(admin_token: &str) -> Keys {
        let signing: [u8; 32] =
            Sha256::digest(format!("rosterflow console sessions\n{admin_token}")).into();
        let mut keys = Keys {
            signing,
            token_mac: Vec::new(),
        };
        keys.token_mac = keys.token(admin_token).finalize().into_bytes().to_vec();
        keys
    }

    /// Whether `token` is the admin token (compared in constant time).
    pub fn admits(&self, token: &str) -> bool {
        self.token(token).verify_slice(&self.token_mac).is_ok()
    }

    fn token(&self, token: &str) -> HmacSha256 {
        self.mac(b"admin token\n").chain_update(token.as_bytes())
    }

    /// A new session for `user` (a name of 1 to 64 letters, digits, `.`, `_`, `-` or `@`).
    pub fn sign_in(&self, user: &str, now: DateTime<Utc>) -> Option<Session> {
        let valid = (1..=64).contains(&user.len())
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
        if !valid {
            return None;
        }
        let expires = (now + LIFETIME).timestamp();
        let payload = format!("{user}.{expires}");
        let signature = hex::encode(self.mac(payload.as_bytes()).finalize().into_bytes());
        Some(Session {
            user: user.to_owned(),
            cookie: format!("{payload}.{signature}"),
        })
    }

    /// The session a cookie value stands for, if it is signed by these keys and not expired.
    pub fn session(&self, cookie: &str, now: DateTime<Utc>) -> Option<Session> {
        let (payload, signature) = cookie.rsplit_once('.')?;
        let signature = hex::decode(signature).ok()?;
        self.mac(payload.as_bytes()).verify_slice(&signature).ok()?;
        let (user, expires) = payload.rsplit_once('.')?;
        (expires.parse::<i64>().ok()? > now.timestamp()).then(|| Session {
            user: user.to_owned(),
            cookie: cookie.to_owned(),
        })
    }

    /// The CSRF token of `session`'s forms.
    pub fn csrf(&self, session: &Session) -> String {
        hex::encode(self.csrf_mac(session).finalize().into_bytes())
    }

    /// Whether `token` is `session`'s CSRF token (compared in constant time).
    pub fn csrf_matches(&self, session: &Session, token: &str) -> bool {
        let Ok(token) = hex::decode(token) else {
            return false;
        };
        self.csrf_mac(session).verify_slice(&token).is_ok()
    }

    fn csrf_mac(&self, session: &Session) -> HmacSha256 {
        self.mac(b"csrf\n").chain_update(session.cookie.as_bytes())
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.signing).expect("any key length");
        mac.update(data);
        mac
    }
}

impl Session {
    /// The `Set-Cookie` value that keeps this session in the browser: not readable by scripts,
    /// sent only to this site and over a secure context.
    pub fn set_cookie(&self) -> String {
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
            self.cookie,
            LIFETIME.num_seconds()
        )
    }

    /// The `Set-Cookie` value that ends a session.
    pub fn clear_cookie() -> String {
        format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn only_the_admin_token_signs_in() {
        let keys = Keys::new("s3cret");
        assert!(keys.admits("s3cret"));
        assert!(!keys.admits("s3cret "));
        assert!(!keys.admits(""));
    }

    #[test]
    fn a_session_is_accepted_until_it_expires_and_only_as_signed() {
        let keys = Keys::new("s3cret");
        let session = keys.sign_in("alice", now()).unwrap();
        assert_eq!(keys.session(&session.cookie, now()), Some(session.clone()));
        assert_eq!(keys.session(&session.cookie, now() + LIFETIME), None);
        let forged = session.cookie.replacen("alice", "mallory", 1);
        assert_eq!(keys.session(&forged, now()), None);
        assert_eq!(Keys::new("other").session(&session.cookie, now()), None);
        assert_eq!(keys.sign_in("a<b>", now()), None);
        assert_eq!(keys.sign_in("", now()), None);
    }

    #[test]
    fn a_csrf_token_belongs_to_its_session() {
        let keys = Keys::new("s3cret");
        let alice = keys.sign_in("alice", now()).unwrap();
        let bob = keys.sign_in("bob", now()).unwrap();
        assert!(keys.csrf_matches(&alice, &keys.csrf(&alice)));
        assert!(!keys.csrf_matches(&alice, &keys.csrf(&bob)));
        assert!(!keys.csrf_matches(&alice, ""));
        assert!(!keys.csrf_matches(&alice, "zz"));
    }
}
