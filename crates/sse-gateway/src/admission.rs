//! Admission control: at most `--accept-rate` new event streams per second on a node.
//!
//! Why: after a deploy, a node loss or a network blip, every client of the lost streams comes
//! back within a second or two, each wanting its replay at once. Admitting them at a bounded
//! rate keeps the node (and Redis behind it) serving the streams it has; the rest are told when
//! to come back, each at a different time, so they return spread out rather than as a second
//! wave. The node stays ready throughout: refusing new streams is the node doing its job, not
//! a fault a load balancer should route around.
//!
//! The bucket holds one second's worth of streams (a burst of `--accept-rate`) and refills at
//! that rate (GCRA, from the `governor` crate).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::app::Band;

/// The spread added, at random, to the wait until a token is free: the clients refused in
/// one instant come back over this long.
const SPREAD: Duration = Duration::from_secs(2);

/// The node's admission bucket.
pub(crate) struct Admission {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    rate: NonZeroU32,
}

/// A stream refused because the node admits no more right now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverRate {
    /// `--accept-rate`.
    pub(crate) rate: NonZeroU32,
    /// When this client should try again: the wait for a free token plus a random share of
    /// [`SPREAD`].
    pub(crate) retry_after: Duration,
}

impl Admission {
    pub(crate) fn new(rate: NonZeroU32) -> Self {
        let clock = DefaultClock::default();
        Self {
            limiter: RateLimiter::direct_with_clock(Quota::per_second(rate), clock.clone()),
            clock,
            rate,
        }
    }

    /// Takes a token for one new stream, or says when to come back.
    pub(crate) fn admit(&self) -> Result<(), OverRate> {
        self.limiter.check().map_err(|not_until| {
            let wait = Band {
                least: not_until.wait_time_from(self.clock.now()),
                spread: SPREAD,
            };
            OverRate {
                rate: self.rate,
                retry_after: wait.pick(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_rate_is_admitted_then_each_refusal_says_when_to_return() {
        let admission = Admission::new(NonZeroU32::new(5).expect("not zero"));
        for _ in 0..5 {
            assert!(admission.admit().is_ok());
        }
        let mut waits = Vec::new();
        for _ in 0..20 {
            let refused = admission.admit().expect_err("the bucket is empty");
            assert_eq!(refused.rate.get(), 5);
            // A token comes back every 200 ms; the spread adds up to 2 s.
            assert!(refused.retry_after <= Duration::from_millis(2200));
            waits.push(refused.retry_after);
        }
        waits.sort_unstable();
        waits.dedup();
        assert!(waits.len() > 1, "refusals are spread: {waits:?}");
    }
}
