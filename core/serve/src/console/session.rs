//! Who is signed in to the console. A session is a random token in an HttpOnly, Secure,
//! SameSite=Strict cookie; the Freckle DB keeps only its hash (`console_sessions`), so that
//! signing out, or the operator, ends it at once on every service of the database. The operator
//! signs in with the admin token and sees every district; a district administrator signs in with
//! Clever and sees only their own. Each form carries a CSRF token derived from the session's
//! token: a POST without it (or with another session's) is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use chrono::Duration;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use rosterflow_store::sign_in::ConsoleSession;

/// The session cookie's name.
pub const COOKIE: &str = "rosterflow_session";

/// The shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// How long a session lasts.
pub const LIFETIME: Duration = Duration::hours(12);

/// The admin token, kept as its SHA-256 to compare a candidate's with in constant time.
pub struct AdminToken([u8; 32]);

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Sha256::digest(token).into())
    }

    /// Whether `candidate` is the admin token.
    pub fn admits(&self, candidate: &str) -> bool {
        let candidate: [u8; 32] = Sha256::digest(candidate).into();
        candidate.ct_eq(&self.0).into()
    }
}

/// Wrong admin tokens, counted per client and overall in one-minute windows. A client over its
/// share, or any client that has guessed wrong once while guesses flood in overall, is refused
/// without its token being checked; a client with no wrong guess in the window is always checked,
/// so that the operator can sign in during a flood.
#[derive(Debug)]
pub struct Guesses {
    window_start: Instant,
    per_client: HashMap<IpAddr, u32>,
    overall: u32,
}

impl Guesses {
    /// Wrong tokens one client may try in a window.
    pub const PER_CLIENT: u32 = 10;
    /// Wrong tokens all clients may try in a window.
    pub const OVERALL: u32 = 100;
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    pub fn new() -> Guesses {
        Guesses {
            window_start: Instant::now(),
            per_client: HashMap::new(),
            overall: 0,
        }
    }

    /// Whether `client`'s token may be checked now.
    pub fn may_try(&mut self, client: IpAddr, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Self::WINDOW {
            *self = Guesses {
                window_start: now,
                ..Guesses::new()
            };
        }
        let wrong = self.per_client.get(&client).copied().unwrap_or(0);
        wrong < Self::PER_CLIENT && (wrong == 0 || self.overall < Self::OVERALL)
    }

    /// Counts a wrong token from `client`.
    pub fn wrong(&mut self, client: IpAddr) {
        *self.per_client.entry(client).or_default() += 1;
        self.overall += 1;
    }
}

impl Default for Guesses {
    fn default() -> Guesses {
        Guesses::new()
    }
}

/// A signed-in console user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's row, for the operator to end it.
    pub id: i64,
    /// The name recorded with every action they take.
    pub user: String,
    /// The district a district administrator sees; `None` for the operator, who sees all.
    pub district: Option<String>,
    /// The cookie's value, which the CSRF token is derived from.
    token: String,
}

impl Session {
    pub fn new(token: &str, stored: ConsoleSession) -> Session {
        Session {
            id: stored.id,
            user: stored.user_name,
            district: stored.district_key,
            token: token.to_owned(),
        }
    }

    /// Whether this session may see district `key`.
    pub fn sees(&self, key: &str) -> bool {
        self.district.as_deref().is_none_or(|own| own == key)
    }

    /// Whether this is the operator's session.
    pub fn is_operator(&self) -> bool {
        self.district.is_none()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CSRF token of this session's forms.
    pub fn csrf(&self) -> String {
        hex::encode(Sha256::digest(format!(
            "rosterflow console csrf\n{}",
            self.token
        )))
    }

    /// Whether `candidate` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, candidate: &str) -> bool {
        self.csrf().as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

/// A user name as the console records it: a person's name as they write it ("Dana Admin",
/// "Zoë O'Brien"), 1 to 64 characters, none of them a control character. Pages escape it and
/// logs quote it.
pub fn valid_user(user: &str) -> bool {
    (1..=64).contains(&user.chars().count()) && !user.chars().any(char::is_control)
}

/// The `Set-Cookie` value that keeps session `token` in the browser: not readable by scripts,
/// sent only to this site and over a secure context.
pub fn set_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        LIFETIME.num_seconds()
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(token: &str, district: Option<&str>) -> Session {
        Session::new(
            token,
            ConsoleSession {
                id: 1,
                user_name: "alice".into(),
                district_key: district.map(str::to_owned),
                created_at: String::new(),
                expires_at: String::new(),
            },
        )
    }

    #[test]
    fn only_the_admin_token_signs_in() {
        let token = AdminToken::new("s3cret-s3cret-s3cret");
        assert!(token.admits("s3cret-s3cret-s3cret"));
        assert!(!token.admits("s3cret-s3cret-s3cret "));
        assert!(!token.admits(""));
    }

    #[test]
    fn a_csrf_token_belongs_to_its_session() {
        let alice = session("token-a", None);
        let bob = session("token-b", None);
        assert!(alice.csrf_matches(&alice.csrf()));
        assert!(!alice.csrf_matches(&bob.csrf()));
        assert!(!alice.csrf_matches(""));
    }

    #[test]
    fn a_district_session_sees_its_district_only() {
        assert!(session("t", None).sees("springfield"));
        let district = session("t", Some("springfield"));
        assert!(district.sees("springfield"));
        assert!(!district.sees("shelbyville"));
    }

    #[test]
    fn wrong_tokens_are_limited_per_client_and_overall_but_a_new_client_is_checked() {
        let start = Instant::now();
        let mut guesses = Guesses::new();
        let mallory: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..Guesses::PER_CLIENT {
            assert!(guesses.may_try(mallory, start));
            guesses.wrong(mallory);
        }
        assert!(!guesses.may_try(mallory, start), "over the client's share");
        // A flood from many clients: each that guessed wrong once is refused...
        for i in 0..Guesses::OVERALL {
            let client: IpAddr = format!("10.1.{}.{}", i / 250, i % 250).parse().unwrap();
            guesses.wrong(client);
        }
        assert!(!guesses.may_try("10.1.0.1".parse().unwrap(), start));
        // ...while the operator, new in the window, is still checked.
        assert!(guesses.may_try("192.168.1.5".parse().unwrap(), start));
        // A minute later every client starts again.
        let later = start + std::time::Duration::from_secs(61);
        assert!(guesses.may_try(mallory, later));
    }

    #[test]
    fn user_names_are_as_people_write_them() {
        assert!(valid_user("ada.lovelace@example.org"));
        assert!(valid_user("Dana Admin"));
        assert!(valid_user("Zoë O'Brien-Ngũgĩ"));
        assert!(!valid_user("forged\nlog line"));
        assert!(!valid_user(""));
        assert!(!valid_user(&"a".repeat(65)));
    }
}
