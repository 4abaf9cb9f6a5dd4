//! [`Rng`]: SplitMix64, a tiny seeded generator for tests that explore inputs or fault
//! schedules at random, so that a failing run is replayed from the seed it prints.
//!
//! It is not cryptographic and not statistically strong: good enough for test choices, and
//! dependency-free, so its sequence for a seed never changes under a library upgrade.

use std::time::Duration;

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for part `index` of a run, independent of the others and of `self`'s own
    /// sequence (which it leaves untouched).
    pub fn fork(&self, index: u64) -> Self {
        let mut mixed = Self(self.0 ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
        Self(mixed.next_u64())
    }

    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0): there is no number below 0");
        // The modulo bias is irrelevant for the small `n` of a test.
        (self.next_u64() % n as u64) as usize
    }

    /// `true` with probability `percent` / 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    ///
    /// # Panics
    /// If `items` is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Up to `max_len` random bytes (any length from 0 to `max_len`).
    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// A duration between `lo_ms` and `hi_ms` milliseconds, inclusive.
    ///
    /// # Panics
    /// If `hi_ms < lo_ms`.
    pub fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        assert!(
            lo_ms <= hi_ms,
            "Rng::millis({lo_ms}, {hi_ms}): an empty range"
        );
        Duration::from_millis(lo_ms + self.next_u64() % (hi_ms - lo_ms + 1))
    }

    /// Puts `items` in a random order (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs for seed 0, from the reference implementation (Vigna's
    /// `splitmix64.c`): a run's seed replays the same choices on every machine and version.
    #[test]
    fn the_sequence_is_splitmix64() {
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn forks_differ_from_each_other_and_leave_the_parent_alone() {
        let parent = Rng::new(7);
        let (mut a, mut b) = (parent.fork(1), parent.fork(2));
        assert_ne!(a.next_u64(), b.next_u64());
        assert_eq!(parent.clone().next_u64(), Rng::new(7).next_u64());
    }

    #[test]
    fn ranges_hold() {
        let mut rng = Rng::new(42);
        for _ in 0..1000 {
            assert!(rng.below(3) < 3);
            let d = rng.millis(5, 7);
            assert!((5..=7).contains(&d.as_millis()));
            assert!(rng.bytes(4).len() <= 4);
        }
        let mut items = [1, 2, 3, 4, 5];
        rng.shuffle(&mut items);
        items.sort_unstable();
        assert_eq!(items, [1, 2, 3, 4, 5]);
    }
}
