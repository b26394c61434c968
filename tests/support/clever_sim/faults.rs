//! Fault injection: the failures a client of Clever must survive, queued for upcoming requests
//! or repeated every Nth request.

use std::collections::VecDeque;
use std::time::Duration;

/// One injected failure, applied instead of (or, for [`Fault::Slow`], before) the normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with an empty body and `X-RateLimit-Reset` one second from now.
    RateLimited,
    /// That status (500, 502, 503...) with a `{"message":..}` body.
    Status(u16),
    /// The connection is closed without any response.
    DropConnection,
    /// The response comes after this delay (longer than a client's timeout, typically).
    Slow(Duration),
    /// 200 with an HTML page instead of JSON.
    Html,
    /// 200 with the real page cut in half: a complete HTTP response whose JSON is truncated.
    TruncatedJson,
    /// 200 whose body stops halfway: the connection closes in the middle of the page.
    DropMidBody,
    /// 200 with the real page, its `next` link naming the page itself: a server whose paging
    /// cursor is stuck (its `starting_after` not moving on), which a client following links
    /// would fetch forever.
    NextToSelf,
}

/// The faults waiting for requests.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    /// One-shot faults, in order; each applies to the first request whose path starts with its
    /// prefix (any request when `None`).
    queue: VecDeque<(Option<String>, Fault)>,
    /// A fault for every Nth request (counting every request from 1).
    every: Option<(u64, Fault)>,
}

impl FaultPlan {
    pub(crate) fn push(&mut self, path_prefix: Option<String>, fault: Fault) {
        self.queue.push_back((path_prefix, fault));
    }

    pub(crate) fn set_every(&mut self, n: u64, fault: Fault) {
        self.every = (n > 0).then_some((n, fault));
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.every = None;
    }

    /// The fault for request number `n` (from 1) to `path`, if any; a queued fault is used up.
    pub(crate) fn take(&mut self, n: u64, path: &str) -> Option<Fault> {
        let queued = self
            .queue
            .iter()
            .position(|(prefix, _)| prefix.as_deref().is_none_or(|p| path.starts_with(p)));
        if let Some(i) = queued {
            return self.queue.remove(i).map(|(_, fault)| fault);
        }
        match &self.every {
            Some((every, fault)) if n.is_multiple_of(*every) => Some(fault.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_faults_are_used_once_and_match_their_prefix() {
        let mut plan = FaultPlan::default();
        plan.push(Some("/v3.0/sections".into()), Fault::Status(503));
        plan.push(None, Fault::Html);
        assert_eq!(plan.take(1, "/v3.0/users"), Some(Fault::Html));
        assert_eq!(plan.take(2, "/v3.0/users"), None);
        assert_eq!(
            plan.take(3, "/v3.0/sections?limit=1"),
            Some(Fault::Status(503))
        );
        assert_eq!(plan.take(4, "/v3.0/sections"), None);
    }

    #[test]
    fn every_nth_request_fails() {
        let mut plan = FaultPlan::default();
        plan.set_every(3, Fault::RateLimited);
        let hits: Vec<u64> = (1..=9).filter(|n| plan.take(*n, "/").is_some()).collect();
        assert_eq!(hits, vec![3, 6, 9]);
        plan.clear();
        assert_eq!(plan.take(12, "/"), None);
    }
}
