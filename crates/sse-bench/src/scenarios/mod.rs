//! The scenarios, and the [`Stage`] they all start from: the subscribers open and settled,
//! server memory measured before and idle, progress on stderr.
//!
//! - `idle`: memory per connection, nothing published;
//! - `steady`: `fanout` (one topic) and `topics` (many), one rate for one duration;
//! - `ramp`: rising rates until one fails; the best one;
//! - `stalled`: streams that stop reading, and what they cost the server's memory and the
//!   kernel's;
//! - `storm`: connections dropped at once, resumed with `Last-Event-ID` after an away time,
//!   timed until each has caught up.

pub(crate) mod idle;
pub(crate) mod ramp;
pub(crate) mod stalled;
pub(crate) mod steady;
pub(crate) mod storm;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::acked::Acked;
use crate::bound::Busy;
use crate::clock::Ticker;
use crate::fleet::{Fleet, StormPlan};
use crate::kernel;
use crate::memory::{MemoryWatch, Peaks};
use crate::payload;
use crate::plan::Plan;
use crate::procfs;
use crate::progress::Progress;
use crate::publish::{Published, Publisher};
use crate::report::{
    Connections, Details, Histograms, KernelMemory, Latency, Load, Params, PerTopic, Readings,
    Report, ServerRss, round,
};
use crate::tally::Tally;
use crate::window::{Measurement, Window};

/// Waits until `at_ms` (ms since the Unix epoch); returns how late it was called, in ms.
async fn wait_for_start(at_ms: u64) -> u64 {
    let now_ms = payload::now_micros() / 1000;
    if at_ms > now_ms {
        eprintln!("starting at {at_ms} (in {} ms)", at_ms - now_ms);
        tokio::time::sleep(Duration::from_millis(at_ms - now_ms)).await;
        0
    } else {
        eprintln!(
            "late for --start-at {at_ms} by {} ms: starting now",
            now_ms - at_ms
        );
        now_ms - at_ms
    }
}

/// A run with its subscribers open.
pub(crate) struct Stage {
    pub(crate) plan: Plan,
    pub(crate) tally: Arc<Tally>,
    /// What the publisher has seen acknowledged, per topic.
    pub(crate) acked: Arc<Acked>,
    pub(crate) fleet: Fleet,
    memory: MemoryWatch,
    rss_before: u64,
    rss_idle: u64,
    pss_before: Option<u64>,
    pss_idle: Option<u64>,
    /// The ports of the server's sockets, and the kernel's TCP memory before and at idle.
    ports: Vec<u16>,
    kernel_before: kernel::Sample,
    kernel_idle: kernel::Sample,
    /// With `--start-at`: how late this driver was for it, in ms (0: on time).
    started_late_ms: Option<u64>,
    _progress: Progress,
    _clock: Ticker,
}

impl Stage {
    /// Opens the subscribers (`storm` says which take part in a storm), waits `--settle`,
    /// and measures idle memory.
    pub(crate) async fn open(plan: Plan, storm: StormPlan) -> Self {
        let tally = Arc::new(Tally::new());
        let acked = Arc::new(Acked::new(plan.topics.len()));
        let rss_before = procfs::total_rss_kib(&plan.pids);
        let pss_before = procfs::total_pss_kib(&plan.pids);
        let ports = plan.server_ports();
        let kernel_before = kernel::sample(&ports, kernel::page_size());
        let memory = MemoryWatch::start(
            plan.pids.clone(),
            ports.clone(),
            tally.clone(),
            plan.connections,
        );
        let progress = Progress::start(tally.clone(), plan.connections);
        let clock = Ticker::start(tally.clone());
        let fleet = Fleet::open(&plan, &tally, &acked, storm).await;
        eprintln!(
            "{} of {} connections live after {:.1}s ({} failed); settling for {:?}",
            tally.live.load(Ordering::Relaxed),
            plan.connections,
            fleet.seconds_to_open,
            tally.failed.load(Ordering::Relaxed),
            plan.settle,
        );
        tokio::time::sleep(plan.settle).await;
        let started_late_ms = match plan.start_at_ms {
            Some(at_ms) => Some(wait_for_start(at_ms).await),
            None => None,
        };
        let rss_idle = procfs::total_rss_kib(&plan.pids);
        let pss_idle = procfs::total_pss_kib(&plan.pids);
        let kernel_idle = kernel::sample(&ports, kernel::page_size());
        Self {
            plan,
            tally,
            acked,
            fleet,
            memory,
            rss_before,
            rss_idle,
            pss_before,
            pss_idle,
            ports,
            kernel_before,
            kernel_idle,
            started_late_ms,
            _progress: progress,
            _clock: clock,
        }
    }

    /// A publisher for this run's topics.
    pub(crate) fn publisher(&self) -> Publisher {
        Publisher::start(
            self.plan.publish.clone(),
            self.plan.topics.clone(),
            self.acked.clone(),
        )
    }

    /// Nothing published, for scenarios without a publisher.
    pub(crate) fn nothing_published(&self) -> Published {
        Published::none(self.plan.topics.len())
    }

    /// Opens a measurement window now.
    pub(crate) fn window(&self, published: Published) -> Window {
        Window::open(
            &self.tally,
            published,
            &self.plan.pids,
            &self.plan.driver_cpus,
            self.plan.shard.publishes(),
        )
    }

    /// Closes `window` (see [`Window::close`]).
    pub(crate) async fn measure(
        &self,
        window: Window,
        published: Published,
        publishing: Duration,
    ) -> Measurement {
        window
            .close(&self.tally, published, &self.fleet.subscribers, publishing)
            .await
    }

    /// The load `measured` shows, for a window asked to publish `asked_rate` events/s.
    pub(crate) fn load(&self, measured: &Measurement, asked_rate: Option<u64>) -> Load {
        Load::of(&self.busy(measured, asked_rate), self.plan.cores)
    }

    /// The CPU figures and rates of `measured`, asked to publish `asked_rate` events/s.
    pub(crate) fn busy(&self, measured: &Measurement, asked_rate: Option<u64>) -> Busy {
        Busy {
            driver_cpu_percent: measured.driver_cpu_percent,
            server_cpu_percent: measured.server_cpu_percent,
            driver_core_busy_percent: measured.driver_core_busy_percent,
            asked_rate,
            achieved_rate: measured.events.published_per_second,
        }
    }

    /// The server memory samples taken while the connections opened.
    pub(crate) fn memory_samples(&self) -> Vec<crate::report::MemorySample> {
        self.memory.samples()
    }

    /// The kernel's TCP memory before, at idle and at its peak (`peaks`, from the watch), over
    /// `live` connections; `None` where `/proc/net/sockstat` cannot be read.
    fn kernel_memory(&self, peaks: Peaks, live: u64) -> Option<KernelMemory> {
        let (before, idle) = (&self.kernel_before, &self.kernel_idle);
        before.tcp_mem_kib?;
        let kib = |bytes: u64| bytes / 1024;
        let tcp_mem_peak = peaks.tcp_mem_kib.max(idle.tcp_mem_kib);
        let send_queue_peak = peaks
            .server_send_queue_bytes
            .max(idle.server.send_queue_bytes);
        Some(KernelMemory {
            server_ports: self.ports.clone(),
            page_size: kernel::page_size(),
            tcp_mem_kib: Readings::of(before.tcp_mem_kib, idle.tcp_mem_kib, tcp_mem_peak, live),
            server_send_queue_kib: Readings::of(
                Some(kib(before.server.send_queue_bytes)),
                Some(kib(idle.server.send_queue_bytes)),
                Some(kib(send_queue_peak)),
                live,
            ),
            server_sockets_idle: idle.server.sockets,
            server_states_idle: idle.server.states.clone(),
        })
    }

    /// Closes the connections and assembles the report; `whole` measured the run, which was
    /// asked to publish `params.rate`.
    pub(crate) async fn finish(
        self,
        scenario: &'static str,
        params: Params,
        whole: Measurement,
        details: Details,
    ) -> Report {
        let peaks = self.memory.peaks();
        let peak = peaks.rss_kib.max(self.rss_idle);
        let live = self.tally.live.load(Ordering::Relaxed);
        let kernel_memory = self.kernel_memory(peaks, live);
        let per_connection_idle = if live == 0 {
            0.0
        } else {
            self.rss_idle.saturating_sub(self.rss_before) as f64 / live as f64
        };
        let connections = Connections {
            requested: self.plan.connections,
            live,
            failed: self.tally.failed.load(Ordering::Relaxed),
            failed_by_status: self.tally.failed_by_status.snapshot(),
            ended_by_server: self.tally.ended_by_server.load(Ordering::Relaxed),
            seconds_to_open: round(self.fleet.seconds_to_open, 2),
            timed: self.tally.timed.load(Ordering::Relaxed),
        };
        let load = self.load(&whole, params.rate);
        let subscribers = self.fleet.subscribers.clone();
        self.fleet.stop().await;
        let (latency_ms, latency_from_schedule_ms) = Latency::both(&whole.latency);
        let shard = (self.plan.shard.count > 1).then_some(self.plan.shard);
        Report {
            shard,
            started_late_ms: self.started_late_ms,
            per_topic: PerTopic {
                published: whole.published_per_topic,
                subscribers,
            },
            latency_histograms_us: Histograms::of(&whole.latency),
            scenario,
            params,
            connections,
            events: whole.events,
            latency_ms,
            latency_from_schedule_ms,
            server_rss_kib: ServerRss {
                before: self.rss_before,
                idle: self.rss_idle,
                pss_before: self.pss_before,
                pss_idle: self.pss_idle,
                peak,
                per_connection_idle: round(per_connection_idle, 2),
            },
            kernel_memory,
            load,
            details,
        }
    }
}
