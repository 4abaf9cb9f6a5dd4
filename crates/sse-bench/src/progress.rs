//! A line on stderr once a second, so a long run shows it is alive and where it stands:
//! elapsed time, live and failed connections, events received and their rate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::tally::Tally;

/// The running progress printer; dropping it stops it.
pub(crate) struct Progress(JoinHandle<()>);

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Progress {
    /// Starts printing `tally` for a run of `connections` connections.
    pub(crate) fn start(tally: Arc<Tally>, connections: usize) -> Self {
        Self(tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut before = 0;
            loop {
                tick.tick().await;
                let received = tally.received.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>5.0}s] live {}/{connections}  failed {}  received {received} ({}/s)",
                    start.elapsed().as_secs_f64(),
                    tally.live.load(Ordering::Relaxed),
                    tally.failed.load(Ordering::Relaxed),
                    received - before,
                );
                before = received;
            }
        }))
    }
}
