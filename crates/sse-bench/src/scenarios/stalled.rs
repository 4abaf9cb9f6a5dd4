//! `stalled`: what readers that stop reading cost the server, and whether it gets the memory
//! back. `--connections` streams subscribe to one topic, read their response head and then
//! nothing, forever (see `stall`), while `--rate` events of `--payload` padding are published
//! to that topic for `--duration`; `--healthy` ordinary readers on the same topic must get
//! every event meanwhile (the run's `events` and latency are theirs).
//!
//! Every `--sample-interval`, and for `--hold-after` once publishing ended (the stalled
//! streams still open), the driver reads the server's RSS, the machine's TCP memory and the
//! server side's sockets: their summed send queues and how many are in each TCP state (a
//! server that cuts a slow reader leaves its socket in `FIN_WAIT1` while data is queued,
//! unless it resets it), and the clients' side likewise (a stalled stream the server cut
//! disappears from it once reset). The report gives the baseline before any stream opened,
//! the peak of each figure, the last sample, one taken a second after the driver closed the
//! stalled streams, and the series. A server that frees what it cut shows a send queue that
//! stops growing, or falls, while the streams are still open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::cli::StalledOptions;
use crate::fleet::StormPlan;
use crate::kernel;
use crate::plan::Plan;
use crate::procfs;
use crate::report::{
    Details, Params, Report, ScenarioParams, Stalled, StalledPeak, StalledSample, round,
};
use crate::scenarios::Stage;
use crate::stall;

/// How long after closing the stalled streams the last sample is taken.
const AFTER_CLOSE: Duration = Duration::from_secs(1);
/// Failures printed before the driver stays quiet.
const FAILURES_SHOWN: u64 = 5;

/// Runs the scenario.
pub(crate) async fn run(mut plan: Plan, options: &StalledOptions) -> Report {
    let stalled_asked = plan.connections;
    let ports = plan.server_ports();
    let page_size = kernel::page_size();
    let baseline = sample(&plan.pids, &ports, page_size, 0.0);
    let (streams, failed) = open_stalled(&plan, options).await;
    eprintln!(
        "{} of {stalled_asked} stalled streams open ({failed} failed); {} healthy readers next",
        streams.len(),
        options.healthy
    );
    plan.connections = options.healthy;
    plan.total_connections = options.healthy;
    let stage = Stage::open(plan, StormPlan::NONE).await;
    let mut publisher = stage.publisher();
    let window = stage.window(publisher.published());
    let start = Instant::now();
    let sampler = Sampler::start(
        stage.plan.pids.clone(),
        ports.clone(),
        options.sample_interval,
        start,
    );
    let publishing = publisher
        .publish(stage.plan.rate, stage.plan.duration)
        .await;
    tokio::time::sleep(options.hold_after).await;
    let mut samples = sampler.stop();
    let end = sample(
        &stage.plan.pids,
        &ports,
        page_size,
        start.elapsed().as_secs_f64(),
    );
    samples.push(end.clone());
    let whole = stage
        .measure(window, publisher.published(), publishing)
        .await;
    let opened = streams.len() as u64;
    drop(streams);
    tokio::time::sleep(AFTER_CLOSE).await;
    let after_close = sample(
        &stage.plan.pids,
        &ports,
        page_size,
        start.elapsed().as_secs_f64(),
    );
    let peak = StalledPeak::of(&samples);
    let per_stream = |peak: Option<u64>, baseline: Option<u64>| {
        let grown = peak?.saturating_sub(baseline?);
        (opened > 0).then(|| round(grown as f64 / opened as f64, 2))
    };
    let stalled = Stalled {
        connections: stalled_asked,
        opened,
        failed,
        receive_buffer_bytes: options.stalled_rcvbuf,
        healthy: options.healthy,
        per_stream_peak_rss_kib: per_stream(Some(peak.rss_kib), Some(baseline.rss_kib)),
        per_stream_peak_tcp_mem_kib: per_stream(peak.tcp_mem_kib, baseline.tcp_mem_kib),
        per_stream_peak_server_send_queue_kib: per_stream(
            Some(peak.server_send_queue_bytes / 1024),
            Some(baseline.server.send_queue_bytes / 1024),
        ),
        baseline,
        peak,
        end,
        after_close,
        samples,
    };
    let params = Params {
        scenario: ScenarioParams::Stalled {
            healthy: options.healthy,
            stalled_rcvbuf: options.stalled_rcvbuf,
            sample_interval_s: round(options.sample_interval.as_secs_f64(), 3),
            hold_after_s: round(options.hold_after.as_secs_f64(), 3),
        },
        ..stage.plan.params.clone()
    };
    let details = Details::Stalled {
        stalled: Box::new(stalled),
    };
    let mut report = stage.finish("stalled", params, whole, details).await;
    // Its per-connection figures would divide by the healthy readers alone: `stalled` has
    // the kernel's figures, per stalled stream.
    report.kernel_memory = None;
    report
}

/// Opens the stalled streams at `--ramp` per second; returns those open and how many failed.
async fn open_stalled(plan: &Plan, options: &StalledOptions) -> (Vec<TcpStream>, u64) {
    let mut opening = JoinSet::new();
    let started = Instant::now();
    let endpoint = plan.subscribe[0].clone();
    let topic = plan.topics[0].clone();
    let failed = Arc::new(AtomicU64::new(0));
    for index in 0..plan.connections {
        let endpoint = endpoint.clone();
        let topic = topic.clone();
        let source = plan.sources[index % plan.sources.len()];
        let authorization = plan.tokens.as_ref().map(|t| t.for_connection(index));
        let receive_buffer = options.stalled_rcvbuf;
        let failed = failed.clone();
        opening.spawn(async move {
            let opened = stall::open(
                &endpoint,
                &topic,
                source,
                receive_buffer,
                authorization.as_ref(),
            )
            .await;
            opened
                .inspect_err(|error| {
                    if failed.fetch_add(1, Ordering::Relaxed) < FAILURES_SHOWN {
                        eprintln!("stalled stream {index}: {error}");
                    }
                })
                .ok()
        });
        let due = Duration::from_secs_f64((index + 1) as f64 / plan.ramp as f64);
        tokio::time::sleep_until(started + due).await;
    }
    let mut streams = Vec::with_capacity(plan.connections);
    while let Some(opened) = opening.join_next().await {
        streams.extend(opened.ok().flatten());
    }
    (streams, failed.load(Ordering::Relaxed))
}

/// One reading of the server's memory, at `t_s` seconds.
fn sample(pids: &[u32], ports: &[u16], page_size: u64, t_s: f64) -> StalledSample {
    let kernel = kernel::sample(ports, page_size);
    StalledSample {
        t_s: round(t_s, 1),
        rss_kib: procfs::total_rss_kib(pids),
        tcp_mem_kib: kernel.tcp_mem_kib,
        server: kernel.server,
        clients: kernel.clients,
    }
}

/// Samples every interval in the background until stopped.
struct Sampler {
    samples: Arc<Mutex<Vec<StalledSample>>>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pids` and the sockets of `ports` every `interval`, timed from `start`.
    fn start(pids: Vec<u32>, ports: Vec<u16>, interval: Duration, start: Instant) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                let page_size = kernel::page_size();
                let mut tick = tokio::time::interval(interval);
                // A driver held off its core skips samples rather than bunching them up.
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let taken = sample(&pids, &ports, page_size, start.elapsed().as_secs_f64());
                    if let Ok(mut samples) = samples.lock() {
                        samples.push(taken);
                    }
                }
            }
        });
        Self { samples, task }
    }

    /// Stops sampling and returns the samples.
    fn stop(self) -> Vec<StalledSample> {
        self.task.abort();
        self.samples
            .lock()
            .map(|mut samples| std::mem::take(&mut *samples))
            .unwrap_or_default()
    }
}
