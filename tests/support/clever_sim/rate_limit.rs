//! Clever's rate limit: a fixed number of requests per bearer token per window (1200 a minute),
//! the count resetting at the end of each window rather than as a moving average.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the limiter decided for one request: the values of the `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    /// Unix seconds when the window resets.
    pub(crate) reset_unix: u64,
}

struct Window {
    started: Instant,
    reset_unix: u64,
    used: u32,
}

/// Per-token fixed windows.
#[derive(Default)]
pub(crate) struct RateLimiter {
    windows: HashMap<String, Window>,
}

impl RateLimiter {
    /// Counts one request for `token` against `limit` requests per `window`.
    pub(crate) fn check(&mut self, token: &str, limit: u32, window: Duration) -> Verdict {
        let now = Instant::now();
        let entry = self
            .windows
            .entry(token.to_string())
            .or_insert_with(|| new_window(now, window));
        if now.duration_since(entry.started) >= window {
            *entry = new_window(now, window);
        }
        let allowed = entry.used < limit;
        if allowed {
            entry.used += 1;
        }
        Verdict {
            allowed,
            limit,
            remaining: limit.saturating_sub(entry.used),
            reset_unix: entry.reset_unix,
        }
    }

    /// Forgets every window (a fresh minute for every token).
    pub(crate) fn reset(&mut self) {
        self.windows.clear();
    }
}

fn new_window(now: Instant, window: Duration) -> Window {
    Window {
        started: now,
        reset_unix: unix_secs_after(window),
        used: 0,
    }
}

/// Unix seconds `after` from now, rounded up.
pub(crate) fn unix_secs_after(after: Duration) -> u64 {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + after;
    at.as_secs() + u64::from(at.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_token_and_resets_with_the_window() {
        let mut limiter = RateLimiter::default();
        let window = Duration::from_millis(200);
        for i in 0..3 {
            let v = limiter.check("a", 3, window);
            assert!(v.allowed);
            assert_eq!(v.remaining, 2 - i);
        }
        assert!(!limiter.check("a", 3, window).allowed);
        assert!(
            limiter.check("b", 3, window).allowed,
            "another token has its own window"
        );
        std::thread::sleep(window);
        let v = limiter.check("a", 3, window);
        assert!(v.allowed);
        assert_eq!(v.remaining, 2);
    }
}
