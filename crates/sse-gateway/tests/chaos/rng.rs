//! [`Rng`]: SplitMix64, a tiny seeded generator, so that a run's fault schedule and choices
//! are replayable from the seed it prints (the timing of the processes is not).

use std::time::Duration;

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, good enough for test choices.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for part `index` of the run, independent of the others.
    pub(crate) fn fork(&self, index: u64) -> Self {
        let mut mixed = Self(self.0 ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
        Self(mixed.next_u64())
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must be positive.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        // The modulo bias is irrelevant for the small `n` of a test.
        (self.next_u64() % n as u64) as usize
    }

    /// A duration between `lo_ms` and `hi_ms` milliseconds, inclusive.
    pub(crate) fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(lo_ms + self.next_u64() % (hi_ms - lo_ms + 1))
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}
