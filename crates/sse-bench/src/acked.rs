//! [`Acked`]: what the server has acknowledged of each topic, as the publisher saw it.
//!
//! A reconnect storm measures how long each client takes to *catch up*: to hold every event
//! its topic had when it sent its reconnect request. The driver cannot ask the server for
//! that, and the number of requests sent is not it either (an event in flight may not be
//! stored yet), so the target is what the publisher had seen acknowledged: per topic, the
//! highest `n` with every sequence below `n` answered 2xx. With `--publish-spread` answers
//! come back out of order, so the same [`SequenceCheck`] that subscribers use keeps that
//! floor (a failed publish stops it, until the check passes the hole over, see `sequence`);
//! the floor is mirrored in an atomic so that thousands of reconnecting clients read it
//! without a lock. An event stored but not yet answered is left out of the target: the
//! target errs low by what is in flight, never high.
//!
//! It also counts the events published *within* a window (the storm's): sent after the
//! window opened and answered before it closed. Each of those was executed by the server
//! between the two moments, so the Redis commands counted over the window include at least
//! one publish call for each.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sequence::SequenceCheck;

/// One topic's acknowledged sequences.
#[derive(Default)]
struct Topic {
    check: Mutex<SequenceCheck>,
    floor: AtomicU64,
}

/// The acknowledged floor of every topic, and the window count (see the module docs).
pub(crate) struct Acked {
    topics: Vec<Topic>,
    window_open: AtomicBool,
    in_window: AtomicU64,
}

impl Acked {
    /// Nothing acknowledged yet, on `topics` topics.
    pub(crate) fn new(topics: usize) -> Self {
        Self {
            topics: (0..topics).map(|_| Topic::default()).collect(),
            window_open: AtomicBool::new(false),
            in_window: AtomicU64::new(0),
        }
    }

    /// Whether a window is open: asked by a lane just before it sends a request.
    pub(crate) fn window_open(&self) -> bool {
        self.window_open.load(Ordering::SeqCst)
    }

    /// Records that `sequence` of `topic` was answered 2xx; `sent_in_window` is what
    /// [`Acked::window_open`] said when its request was sent.
    pub(crate) fn ack(&self, topic: usize, sequence: u64, sent_in_window: bool) {
        let Some(slot) = self.topics.get(topic) else {
            return;
        };
        if let Ok(mut check) = slot.check.lock() {
            check.observe(sequence);
            slot.floor.store(check.floor(), Ordering::SeqCst);
        }
        if sent_in_window && self.window_open() {
            self.in_window.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Every sequence of `topic` below this one has been acknowledged.
    pub(crate) fn floor(&self, topic: usize) -> u64 {
        self.topics
            .get(topic)
            .map_or(0, |slot| slot.floor.load(Ordering::SeqCst))
    }

    /// Opens the window: from now on sent requests count once answered.
    pub(crate) fn open_window(&self) {
        self.in_window.store(0, Ordering::SeqCst);
        self.window_open.store(true, Ordering::SeqCst);
    }

    /// Closes the window and returns the events sent and answered within it.
    pub(crate) fn close_window(&self) -> u64 {
        self.window_open.store(false, Ordering::SeqCst);
        self.in_window.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_waits_for_the_lowest_answer() {
        let acked = Acked::new(2);
        acked.ack(0, 1, false);
        assert_eq!(acked.floor(0), 0);
        acked.ack(0, 0, false);
        assert_eq!(acked.floor(0), 2);
        assert_eq!(acked.floor(1), 0);
        assert_eq!(acked.floor(7), 0);
        acked.ack(7, 0, false);
    }

    #[test]
    fn only_requests_sent_and_answered_within_the_window_count() {
        let acked = Acked::new(1);
        acked.ack(0, 0, acked.window_open());
        acked.open_window();
        let sent_before = false;
        acked.ack(0, 1, sent_before);
        acked.ack(0, 2, acked.window_open());
        acked.ack(0, 3, acked.window_open());
        let sent_within = acked.window_open();
        assert_eq!(acked.close_window(), 2);
        acked.ack(0, 4, sent_within);
        assert_eq!(acked.close_window(), 2);
        assert_eq!(acked.floor(0), 5);
    }
}
