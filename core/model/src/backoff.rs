//! Exponential backoff: how long to wait before trying again, for every retry loop (Clever
//! requests, welcome emails). Jitter, where a caller wants it, is applied by the caller.

use std::time::Duration;

/// The wait after the `attempt`-th failed try (counting from 1; 0 counts as 1): `base`, doubled
/// for every earlier failure, never more than `max`.
pub fn exponential(base: Duration, max: Duration, attempt: u32) -> Duration {
    // 2^31 doublings is past any cap: the shift stays within a u32.
    let doublings = attempt.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_attempt_up_to_the_cap() {
        let (base, max) = (Duration::from_millis(500), Duration::from_secs(5));
        let waits: Vec<u128> = (0..=6)
            .map(|n| exponential(base, max, n).as_millis())
            .collect();
        assert_eq!(waits, [500, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(exponential(base, max, u32::MAX), max);
        assert_eq!(exponential(Duration::MAX, Duration::MAX, 40), Duration::MAX);
        assert_eq!(exponential(Duration::ZERO, max, 40), Duration::ZERO);
    }
}
