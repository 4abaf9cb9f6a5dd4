//! [`SequenceCheck`]: one connection's record of which sequence numbers of its topic arrived,
//! so that loss, duplicates and reordering are told apart.
//!
//! With `--publish-spread` one topic's events travel over several publish connections at
//! once and may reach the server, and so the subscriber, in another order than they were
//! numbered. A check that expects `n + 1` after `n` would call every such swap a gap and a
//! duplicate. This one keeps a *floor* (every sequence below it has arrived) and the set of
//! sequences seen above the floor:
//!
//! - a sequence seen before is a **duplicate**, and only then;
//! - a new sequence below the highest one seen so far arrived **late**: it is counted as
//!   reordered, and as delivered (early arrivals are the other side of the same swap and
//!   are not counted twice);
//! - a sequence that never arrives leaves a hole, which the run's
//!   `missing = expected − (received − duplicated)` counts.
//!
//! The set is bounded by [`CAP`]: when more than `CAP` sequences wait above a hole, the floor
//! moves past the lowest hole, which is remembered (up to `CAP` holes) so that a very late
//! arrival still counts as late and not as a duplicate. Only past that second bound, when a
//! connection already misses thousands of events, is a hole forgotten; should it still
//! arrive, it counts as a duplicate and stays missing, so the check errs towards showing a
//! problem, never towards hiding one. Both bounds are far above what reordering between a
//! few dozen publish connections causes.
//!
//! The check lives as long as its connection's subscriber, so it carries on across a
//! `Last-Event-ID` resume: a resume that repeats an event shows as a duplicate, one that skips
//! an event as missing.

use std::collections::BTreeSet;

/// How many sequences may wait above the floor, and how many passed-over holes are kept.
pub(crate) const CAP: usize = 4096;

/// What one arrival was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not seen before, and no higher sequence had arrived: in order, or ahead of a hole.
    New,
    /// Not seen before, but a higher sequence had already arrived.
    Late,
    /// Seen before.
    Duplicate,
}

/// The sequence check of one connection (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct SequenceCheck {
    /// Every sequence below this arrived, or is in `holes`, or was a hole and forgotten.
    floor: u64,
    /// Sequences above `floor` that arrived.
    above: BTreeSet<u64>,
    /// Sequences below `floor` that had not arrived when the floor was moved past them.
    holes: BTreeSet<u64>,
    /// The highest sequence seen, once one arrived.
    highest: Option<u64>,
}

impl SequenceCheck {
    /// Records the arrival of `sequence` and says what it was.
    pub(crate) fn observe(&mut self, sequence: u64) -> Seen {
        let seen_before = if sequence < self.floor {
            !self.holes.remove(&sequence)
        } else if sequence == self.floor {
            self.floor += 1;
            false
        } else {
            !self.above.insert(sequence)
        };
        if seen_before {
            return Seen::Duplicate;
        }
        self.raise_floor();
        if self.above.len() > CAP {
            self.pass_lowest_hole();
        }
        let late = self.highest.is_some_and(|highest| sequence < highest);
        self.highest = Some(
            self.highest
                .map_or(sequence, |highest| highest.max(sequence)),
        );
        if late { Seen::Late } else { Seen::New }
    }

    /// Every sequence below this one has arrived (or was given up on, see the module docs).
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// Whether every sequence below `target` has arrived, as far as the check remembers (a
    /// hole forgotten past the second bound is not seen here; `missing` still counts it).
    pub(crate) fn has_all_below(&self, target: u64) -> bool {
        self.floor >= target && self.holes.range(..target).next().is_none()
    }

    /// How many sequences below `target` have not arrived (the holes it remembers included).
    pub(crate) fn outstanding_below(&self, target: u64) -> u64 {
        let arrived_above = self.above.range(..target).count() as u64;
        let holes = self.holes.range(..target).count() as u64;
        target
            .saturating_sub(self.floor)
            .saturating_sub(arrived_above)
            + holes
    }

    /// Moves the floor over every sequence that has arrived.
    fn raise_floor(&mut self) {
        while self.above.remove(&self.floor) {
            self.floor += 1;
        }
    }

    /// Gives up waiting at the lowest hole: remembers it (and the holes up to the next
    /// arrival) as holes and raises the floor past them.
    fn pass_lowest_hole(&mut self) {
        let Some(&next) = self.above.first() else {
            return;
        };
        // Only the top CAP of a longer run of holes can be kept anyway.
        let keep_from = self.floor.max(next.saturating_sub(CAP as u64));
        self.holes.extend(keep_from..next);
        while self.holes.len() > CAP {
            self.holes.pop_first();
        }
        self.floor = next;
        self.raise_floor();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe_all(check: &mut SequenceCheck, sequences: &[u64]) -> Vec<Seen> {
        sequences.iter().map(|&s| check.observe(s)).collect()
    }

    use Seen::{Duplicate, Late, New};

    #[test]
    fn in_order_arrivals_are_new() {
        let mut check = SequenceCheck::default();
        assert_eq!(observe_all(&mut check, &[0, 1, 2, 3]), [New; 4]);
        assert!(check.above.is_empty());
        assert_eq!(check.floor, 4);
    }

    #[test]
    fn a_swap_is_one_late_arrival_and_no_loss_or_duplicate() {
        let mut check = SequenceCheck::default();
        assert_eq!(
            observe_all(&mut check, &[1, 0, 2, 4, 3, 5]),
            [New, Late, New, New, Late, New]
        );
        assert!(check.above.is_empty());
        assert_eq!(check.floor, 6);
    }

    #[test]
    fn duplicates_are_only_sequences_really_seen_twice() {
        let mut check = SequenceCheck::default();
        assert_eq!(
            observe_all(&mut check, &[0, 2, 2, 0, 1, 1, 2]),
            [New, New, Duplicate, Duplicate, Late, Duplicate, Duplicate]
        );
    }

    #[test]
    fn a_hole_is_neither_a_duplicate_nor_late_and_can_fill_later() {
        let mut check = SequenceCheck::default();
        assert_eq!(observe_all(&mut check, &[0, 1, 3, 4]), [New; 4]);
        assert_eq!(check.floor, 2);
        assert_eq!(check.observe(2), Late);
        assert_eq!(check.floor, 5);
        assert_eq!(check.observe(2), Duplicate);
    }

    #[test]
    fn a_first_event_above_zero_leaves_the_earlier_ones_as_holes() {
        let mut check = SequenceCheck::default();
        assert_eq!(observe_all(&mut check, &[5, 6, 0]), [New, New, Late]);
        assert_eq!(check.observe(6), Duplicate);
    }

    #[test]
    fn the_cap_moves_the_floor_past_a_hole_but_remembers_it() {
        let mut check = SequenceCheck::default();
        // Sequence 0 never comes; 1..=CAP+1 arrive, one more than may wait above the floor.
        for sequence in 1..=(CAP as u64 + 1) {
            assert_eq!(check.observe(sequence), New);
        }
        assert!(check.above.len() <= CAP);
        assert_eq!(check.floor, CAP as u64 + 2);
        // The passed-over hole is still known: its arrival is late, its repeat a duplicate.
        assert_eq!(check.observe(0), Late);
        assert_eq!(check.observe(0), Duplicate);
        assert_eq!(check.observe(1), Duplicate);
    }

    #[test]
    fn holes_beyond_the_cap_are_forgotten_and_err_towards_a_duplicate() {
        let mut check = SequenceCheck::default();
        // 0..2*CAP never arrive, then enough above them to pass the floor over all of them.
        let start = 2 * CAP as u64;
        for sequence in start..=start + CAP as u64 {
            assert_eq!(check.observe(sequence), New);
        }
        assert!(check.holes.len() <= CAP);
        assert!(check.above.len() <= CAP);
        // Sequence 0 was forgotten: its arrival is reported as a problem, not hidden.
        assert_eq!(check.observe(0), Duplicate);
        // The kept holes are exact.
        assert_eq!(check.observe(start - 1), Late);
        assert_eq!(check.observe(start - 1), Duplicate);
        assert_eq!(check.observe(start), Duplicate);
    }

    #[test]
    fn what_is_outstanding_below_a_target_counts_holes_and_skips_early_arrivals() {
        let mut check = SequenceCheck::default();
        observe_all(&mut check, &[0, 1, 3, 5]);
        assert_eq!(check.floor(), 2);
        assert_eq!(check.outstanding_below(2), 0);
        assert!(check.has_all_below(2));
        // 2 and 4 are missing below 6; 3 and 5 arrived early.
        assert_eq!(check.outstanding_below(6), 2);
        assert_eq!(check.outstanding_below(10), 6);
        assert!(!check.has_all_below(4));
        observe_all(&mut check, &[2, 4]);
        assert!(check.has_all_below(6));
        assert_eq!(check.outstanding_below(6), 0);
    }

    #[test]
    fn a_passed_over_hole_is_still_outstanding() {
        let mut check = SequenceCheck::default();
        for sequence in 1..=(CAP as u64 + 1) {
            check.observe(sequence);
        }
        let floor = check.floor();
        assert!(floor > 1);
        assert!(!check.has_all_below(floor));
        assert_eq!(check.outstanding_below(floor), 1);
        check.observe(0);
        assert!(check.has_all_below(floor));
    }

    #[test]
    fn many_scattered_holes_stay_bounded() {
        let mut check = SequenceCheck::default();
        // Every other sequence is lost, for far longer than the cap.
        for sequence in (1..20 * CAP as u64).step_by(2) {
            assert_eq!(check.observe(sequence), New);
        }
        assert!(check.above.len() <= CAP);
        assert!(check.holes.len() <= CAP);
    }
}
