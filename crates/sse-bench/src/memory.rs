//! Watching the server's memory through a run: the peak, and a sample each time another 10 %
//! of the connections are live, so the idle scenario can plot memory against connections
//! (a straight line means a fixed cost per connection; a bend means something else grows).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::procfs;
use crate::report::MemorySample;
use crate::tally::Tally;

/// How often memory is read.
const INTERVAL: Duration = Duration::from_millis(10);

/// What the watch saw.
#[derive(Debug, Default)]
struct Seen {
    peak: u64,
    samples: Vec<MemorySample>,
}

/// A running watch; dropping it stops it.
pub(crate) struct MemoryWatch {
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MemoryWatch {
    /// Starts watching `pids` while up to `connections` connections open (counted in `tally`).
    pub(crate) fn start(pids: Vec<u32>, tally: Arc<Tally>, connections: usize) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut tenth = 1;
                loop {
                    let rss = procfs::total_rss_kib(&pids);
                    let live = tally.live.load(Ordering::Relaxed);
                    let crossed = tenth;
                    while tenth <= 10 && live * 10 >= (connections * tenth) as u64 {
                        tenth += 1;
                    }
                    if let Ok(mut seen) = seen.lock() {
                        seen.peak = seen.peak.max(rss);
                        if tenth > crossed {
                            seen.samples.push(MemorySample {
                                connections: live,
                                rss_kib: rss,
                            });
                        }
                    }
                    tokio::time::sleep(INTERVAL).await;
                }
            }
        });
        Self { seen, task }
    }

    /// The highest memory seen so far, in KiB.
    pub(crate) fn peak(&self) -> u64 {
        self.seen.lock().map_or(0, |seen| seen.peak)
    }

    /// The samples taken so far, one per 10 % of the connections live.
    pub(crate) fn samples(&self) -> Vec<MemorySample> {
        self.seen
            .lock()
            .map_or_else(|_| Vec::new(), |seen| seen.samples.clone())
    }
}
