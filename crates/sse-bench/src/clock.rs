//! A clock the counted (untimed) connections can read for nothing: a task stores the time in
//! [`Tally::coarse_micros`] every [`TICK`], so a connection that only counts events notes when
//! its latest one arrived (for the delivery rate) with an atomic load instead of a clock read
//! per chunk. Latency is never taken from it: only the timed connections measure latency, with
//! the real clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::payload;
use crate::tally::Tally;

/// How often the time is stored: the resolution of the counted connections' arrival times.
const TICK: Duration = Duration::from_millis(10);

/// The running ticker; dropping it stops it.
pub(crate) struct Ticker(JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Ticker {
    /// Starts storing the time in `tally`.
    pub(crate) fn start(tally: Arc<Tally>) -> Self {
        tally
            .coarse_micros
            .store(payload::now_micros(), Ordering::Relaxed);
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                tally
                    .coarse_micros
                    .store(payload::now_micros(), Ordering::Relaxed);
            }
        }))
    }
}
