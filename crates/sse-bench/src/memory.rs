//! Watching the server's memory through a run: the peak, and a sample each time another 10 %
//! of the connections are live, so the idle scenario can plot memory against connections
//! (a straight line means a fixed cost per connection; a bend means something else grows).
//!
//! Beside the RSS it watches the kernel's TCP memory (see `kernel`), which no RSS shows: the
//! machine's `sockstat` figure every 100 ms (one short file), and the server side's send
//! queues every 5 s, since the socket tables cost about 3 µs of the driver's CPU per socket
//! on the machine (60 ms at 20,000 sockets).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::kernel;
use crate::procfs;
use crate::report::MemorySample;
use crate::tally::Tally;

/// How often RSS is read.
const INTERVAL: Duration = Duration::from_millis(10);
/// How often `/proc/net/sockstat` is read.
const SOCKSTAT_INTERVAL: Duration = Duration::from_millis(100);
/// How often the socket tables are read.
const TABLE_INTERVAL: Duration = Duration::from_secs(5);

/// The highest figures seen.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Peaks {
    /// Summed RSS of the server's processes, in KiB.
    pub(crate) rss_kib: u64,
    /// `sockstat` TCP `mem`, in KiB; `None` if unreadable.
    pub(crate) tcp_mem_kib: Option<u64>,
    /// The server side's summed send queues, in bytes.
    pub(crate) server_send_queue_bytes: u64,
}

/// What the watch saw.
#[derive(Debug, Default)]
struct Seen {
    peaks: Peaks,
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
    /// Starts watching `pids` while up to `connections` connections open (counted in `tally`),
    /// and the kernel's TCP memory of the sockets on `ports`.
    pub(crate) fn start(
        pids: Vec<u32>,
        ports: Vec<u16>,
        tally: Arc<Tally>,
        connections: usize,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let page_size = kernel::page_size();
                let mut tenth = 1;
                let (mut sockstat_at, mut table_at) = (Instant::now(), Instant::now());
                loop {
                    let rss = procfs::total_rss_kib(&pids);
                    let live = tally.live.load(Ordering::Relaxed);
                    let crossed = tenth;
                    while tenth <= 10 && live * 10 >= (connections * tenth) as u64 {
                        tenth += 1;
                    }
                    let now = Instant::now();
                    let tcp_mem = (now >= sockstat_at).then(|| {
                        sockstat_at = now + SOCKSTAT_INTERVAL;
                        kernel::tcp_mem_kib(page_size)
                    });
                    let send_queue = (now >= table_at).then(|| {
                        table_at = now + TABLE_INTERVAL;
                        kernel::sample(&ports, page_size).server.send_queue_bytes
                    });
                    if let Ok(mut seen) = seen.lock() {
                        let peaks = &mut seen.peaks;
                        peaks.rss_kib = peaks.rss_kib.max(rss);
                        if let Some(Some(tcp_mem)) = tcp_mem {
                            peaks.tcp_mem_kib = Some(peaks.tcp_mem_kib.unwrap_or(0).max(tcp_mem));
                        }
                        if let Some(send_queue) = send_queue {
                            peaks.server_send_queue_bytes =
                                peaks.server_send_queue_bytes.max(send_queue);
                        }
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

    /// The highest figures seen so far.
    pub(crate) fn peaks(&self) -> Peaks {
        self.seen
            .lock()
            .map_or_else(|_| Peaks::default(), |seen| seen.peaks)
    }

    /// The samples taken so far, one per 10 % of the connections live.
    pub(crate) fn samples(&self) -> Vec<MemorySample> {
        self.seen
            .lock()
            .map_or_else(|_| Vec::new(), |seen| seen.samples.clone())
    }
}
