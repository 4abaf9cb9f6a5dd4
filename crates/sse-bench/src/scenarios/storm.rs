//! `reconnect-storm`: what a mass reconnect (a node restart, a network blip) does to
//! delivery and to the server. While publishing, `--storm-share` of the connections drop at
//! the same instant, stay away `--storm-away` while publishing goes on (so they come back
//! behind), and reconnect with `Last-Event-ID`, spread uniformly over `--storm-spread`; their
//! sequence checks run on, so anything the resume loses or repeats is reported as missing or
//! duplicated.
//!
//! The storm is timed until every client has *caught up* (received what its topic had when
//! it sent its reconnect request, see `clients`): the seconds from the drop until the last
//! one did, and per client from its own request. Over the same window, from just before the
//! drop until then, the driver measures the servers' CPU and peak RSS (`--pid`), its own
//! CPU, and with `--redis-stats` the Redis commands issued (see `redis_stats`), so a replay
//! cache or coalesced reads show as fewer commands for the same catch-up. Optionally
//! `--ready-url` is polled every 100 ms from the drop until all reconnected, to see whether
//! the server stays ready under the storm.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::StormOptions;
use crate::conn::{self, Connection, HttpError};
use crate::fleet::StormPlan;
use crate::payload;
use crate::plan::Plan;
use crate::procfs;
use crate::redis_stats::{Calls, RedisStats, StatsError};
use crate::report::{
    Behind, CatchUp, Details, Latency, Params, Phase, ReadyPolls, RedisCommands, Report,
    ScenarioParams, Storm, StormWindow, round,
};
use crate::scenarios::Stage;
use crate::template::Endpoint;

/// How long to wait for every storm connection to be back after its away time (20
/// attempts 500 ms apart, plus time for slow connects).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait, once all are back, for the last ones to catch up: at most
/// `CATCH_UP_TIMEOUT`, and no longer than `CATCH_UP_STALL` without another one catching up
/// (a client that lost an event never does).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
const CATCH_UP_STALL: Duration = Duration::from_secs(10);
/// How often `--ready-url` is polled, and how long one poll may take.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often server memory is sampled in the storm window.
const RSS_INTERVAL: Duration = Duration::from_millis(10);

/// Runs the scenario.
pub(crate) async fn run(plan: Plan, options: &StormOptions) -> Report {
    let clients = (options.storm_share * plan.connections as f64).round() as usize;
    let storm_at = options.storm_at.unwrap_or(plan.duration / 2);
    let storm_plan = StormPlan {
        clients,
        away: options.storm_away,
        spread: options.storm_spread,
    };
    let stage = Stage::open(plan, storm_plan).await;
    let mut publisher = stage.publisher();
    let window = stage.window(publisher.published());
    let (publishing, storm) = tokio::join!(
        publisher.publish(stage.plan.rate, stage.plan.duration),
        storm(&stage, storm_at, storm_plan, options),
    );
    let whole = stage
        .measure(window, publisher.published(), publishing)
        .await;
    let params = Params {
        scenario: ScenarioParams::Storm {
            storm_at_s: round(storm_at.as_secs_f64(), 3),
            storm_share: options.storm_share,
            storm_away_s: round(options.storm_away.as_secs_f64(), 3),
            storm_spread_s: round(options.storm_spread.as_secs_f64(), 3),
            ready_url: options.ready_url.as_ref().map(|ready| ready.url.clone()),
            redis_stats: options.redis_stats.clone(),
        },
        ..stage.plan.params.clone()
    };
    stage
        .finish(
            "reconnect-storm",
            params,
            whole,
            Details::Storm {
                storm: Box::new(storm),
            },
        )
        .await
}

/// The Redis side of a storm window: the servers and their counts at the start, or why
/// they could not be read.
enum RedisWindow {
    Off,
    Counting(RedisStats, Calls),
    Failed(String),
}

impl RedisWindow {
    /// Connects to `urls` and takes the first snapshot.
    async fn open(urls: &[String]) -> Self {
        if urls.is_empty() {
            return Self::Off;
        }
        let started = async {
            let mut stats = RedisStats::connect(urls).await?;
            let before = stats.snapshot().await?;
            Ok::<_, StatsError>(Self::Counting(stats, before))
        };
        started
            .await
            .unwrap_or_else(|error| Self::Failed(unreadable(&error)))
    }

    /// Takes the second snapshot: the commands of the window, or why they are unknown.
    async fn close(self) -> (Option<RedisCommands>, Option<String>) {
        match self {
            Self::Off => (None, None),
            Self::Failed(error) => (None, Some(error)),
            Self::Counting(mut stats, before) => match stats.snapshot().await {
                Ok(after) => (Some(stats.delta(&before, &after)), None),
                Err(error) => (None, Some(unreadable(&error))),
            },
        }
    }
}

/// Says that the Redis commands cannot be counted, and why; returns the why.
fn unreadable(error: &StatsError) -> String {
    eprintln!("storm: cannot count Redis commands: {error}");
    error.to_string()
}

/// Waits `at`, drops the storm connections, waits until they are all back and have caught
/// up, and measures the window.
async fn storm(stage: &Stage, at: Duration, plan: StormPlan, options: &StormOptions) -> Storm {
    let clients = plan.clients;
    tokio::time::sleep(at).await;
    let pids = &stage.plan.pids;
    let redis = RedisWindow::open(&options.redis_stats).await;
    let whole = Usage::now(stage);
    let rss_at_drop = procfs::total_rss_kib(pids);
    stage.acked.open_window();
    let started = Instant::now();
    let started_micros = payload::now_micros();
    eprintln!(
        "storm: dropping {clients} connections for {:?} (+ up to {:?})",
        plan.away, plan.spread
    );
    stage.fleet.storm();
    let tally = &stage.tally;
    let catch_ups = &tally.catch_ups;
    let window_done = CancellationToken::new();
    let back = CancellationToken::new();
    let wait = async {
        let deadline = started + plan.away + plan.spread + RECONNECT_TIMEOUT;
        let failed = || tally.reconnect_failed.load(Ordering::Relaxed);
        while tally.reconnected.load(Ordering::Relaxed) + failed() < clients as u64
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        back.cancel();
        let give_up = Instant::now() + CATCH_UP_TIMEOUT;
        let caught_up = || catch_ups.caught_up.load(Ordering::Relaxed);
        let (mut last, mut since) = (caught_up(), Instant::now());
        while caught_up() + failed() < clients as u64
            && Instant::now() < give_up
            && since.elapsed() < CATCH_UP_STALL
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if caught_up() != last {
                (last, since) = (caught_up(), Instant::now());
            }
        }
        window_done.cancel();
    };
    // The first client reconnects once the away time is over: from then on the servers
    // replay, which the whole window's CPU (mostly the away time) would dilute.
    let reconnecting = async {
        tokio::time::sleep_until(started + plan.away).await;
        Usage::now(stage)
    };
    let ((), ready_polls, rss_peak, reconnecting) = tokio::join!(
        wait,
        poll_ready(options.ready_url.as_ref(), &back),
        peak_rss(pids, &window_done),
        reconnecting,
    );
    let published = stage.acked.close_window();
    let whole = whole.until_now(stage);
    let reconnecting = reconnecting.until_now(stage);
    let (redis_commands, redis_stats_error) = redis.close().await;

    let reconnected = tally.reconnected.load(Ordering::Relaxed);
    let last = tally.last_reconnect_micros.load(Ordering::Relaxed);
    let seconds_to_reconnect = if reconnected > 0 {
        last.saturating_sub(started_micros) as f64 / 1e6
    } else {
        started.elapsed().as_secs_f64()
    };
    let caught_up = catch_ups.caught_up.load(Ordering::Relaxed);
    let seconds_until_all = (caught_up >= clients as u64 && clients > 0).then(|| {
        let last = catch_ups.last_caught_up_micros.load(Ordering::Relaxed);
        round(last.saturating_sub(started_micros) as f64 / 1e6, 3)
    });
    let behind_clients = catch_ups.behind_clients.load(Ordering::Relaxed);
    let behind = Behind {
        clients: behind_clients,
        mean: if behind_clients == 0 {
            0.0
        } else {
            round(
                catch_ups.behind_total.load(Ordering::Relaxed) as f64 / behind_clients as f64,
                2,
            )
        },
        max: catch_ups.behind_max.load(Ordering::Relaxed),
    };
    let catch_up = CatchUp {
        caught_up,
        not_caught_up: (clients as u64).saturating_sub(caught_up),
        seconds_until_all,
        from_reconnect_ms: Latency::of(&catch_ups.catch_up_times()),
    };
    let has_pids = !pids.is_empty();
    let window = StormWindow {
        seconds: whole.seconds,
        published,
        server_cpu_seconds: whole.server_cpu_seconds,
        server_cpu_percent: whole.server_cpu_percent,
        server_rss_at_drop_kib: has_pids.then_some(rss_at_drop),
        server_rss_peak_kib: has_pids.then(|| rss_peak.max(rss_at_drop)),
        driver_cpu_seconds: whole.driver_cpu_seconds,
        driver_cpu_percent: whole.driver_cpu_percent,
        driver_core_busy_percent: whole.driver_core_busy_percent,
        reconnecting,
    };
    let storm = Storm {
        clients,
        reconnected,
        failed: tally.reconnect_failed.load(Ordering::Relaxed),
        failed_by_status: tally.reconnect_failed_by_status.snapshot(),
        seconds_to_reconnect: round(seconds_to_reconnect, 3),
        behind_at_reconnect: behind,
        catch_up,
        resumed_events_from_reconnect_ms: Latency::of(&catch_ups.resumed()),
        window,
        redis_commands,
        redis_stats_error,
        ready_during_storm: ready_polls.as_ref().map(|polls| polls.not_ready == 0),
        ready_polls,
    };
    summarize(&storm);
    storm
}

/// CPU counters at one moment, to measure a phase of the storm from.
struct Usage {
    at: Instant,
    server_cpu: f64,
    driver_cpu: f64,
    driver_core_ticks: Option<(u64, u64)>,
}

impl Usage {
    /// The counters now.
    fn now(stage: &Stage) -> Self {
        Self {
            at: Instant::now(),
            server_cpu: procfs::total_cpu_seconds(&stage.plan.pids),
            driver_cpu: procfs::own_cpu_seconds(),
            driver_core_ticks: procfs::core_ticks(&stage.plan.driver_cpus),
        }
    }

    /// What was used from `self` until now.
    fn until_now(self, stage: &Stage) -> Phase {
        let now = Self::now(stage);
        let seconds = now.at.duration_since(self.at).as_secs_f64();
        let percent = |cpu: f64| round(cpu / seconds.max(f64::EPSILON) * 100.0, 0);
        let server_cpu = now.server_cpu - self.server_cpu;
        let driver_cpu = now.driver_cpu - self.driver_cpu;
        let has_pids = !stage.plan.pids.is_empty();
        let driver_core_busy_percent =
            procfs::busy_percent(self.driver_core_ticks, now.driver_core_ticks)
                .map(|percent| round(percent, 0));
        Phase {
            seconds: round(seconds, 3),
            server_cpu_seconds: has_pids.then(|| round(server_cpu, 2)),
            server_cpu_percent: has_pids.then(|| percent(server_cpu)),
            driver_cpu_seconds: round(driver_cpu, 2),
            driver_cpu_percent: percent(driver_cpu),
            driver_core_busy_percent,
        }
    }
}

/// A few lines on stderr about the storm, as it ends.
fn summarize(storm: &Storm) {
    let catch_up = &storm.catch_up;
    eprintln!(
        "storm: {} of {} back after {:.2}s, {:.1} events behind on average (max {})",
        storm.reconnected,
        storm.clients,
        storm.seconds_to_reconnect,
        storm.behind_at_reconnect.mean,
        storm.behind_at_reconnect.max,
    );
    let until_all = catch_up
        .seconds_until_all
        .map_or_else(|| "not all".to_owned(), |s| format!("{s:.2}s"));
    eprintln!(
        "storm: {} caught up ({} not), all after {until_all}; from reconnect p50 {} ms, \
         p99 {} ms; resumed events p99 {} ms",
        catch_up.caught_up,
        catch_up.not_caught_up,
        catch_up.from_reconnect_ms.p50,
        catch_up.from_reconnect_ms.p99,
        storm.resumed_events_from_reconnect_ms.p99,
    );
    let window = &storm.window;
    let unknown = || "?".to_owned();
    eprintln!(
        "storm window {:.2}s: server CPU {} s ({} %), RSS peak {} KiB; driver CPU {} %; \
         {} events published",
        window.seconds,
        window
            .server_cpu_seconds
            .map_or_else(unknown, |s| s.to_string()),
        window
            .server_cpu_percent
            .map_or_else(unknown, |p| p.to_string()),
        window
            .server_rss_peak_kib
            .map_or_else(unknown, |k| k.to_string()),
        window.driver_cpu_percent,
        window.published,
    );
    let reconnecting = &window.reconnecting;
    eprintln!(
        "storm, from the first reconnect ({:.2}s): server CPU {} %, driver CPU {} %, \
         driver's cores {} % busy",
        reconnecting.seconds,
        reconnecting
            .server_cpu_percent
            .map_or_else(unknown, |p| p.to_string()),
        reconnecting.driver_cpu_percent,
        reconnecting
            .driver_core_busy_percent
            .map_or_else(unknown, |p| p.to_string()),
    );
    if let Some(redis) = &storm.redis_commands {
        eprintln!(
            "storm window: {} Redis commands, {} of them stream reads",
            redis.total, redis.read_commands
        );
    }
}

/// The highest summed RSS of `pids` until `done`, sampled every 10 ms; 0 without PIDs.
async fn peak_rss(pids: &[u32], done: &CancellationToken) -> u64 {
    let mut peak = 0;
    if pids.is_empty() {
        return peak;
    }
    loop {
        peak = peak.max(procfs::total_rss_kib(pids));
        tokio::select! {
            () = tokio::time::sleep(RSS_INTERVAL) => {}
            () = done.cancelled() => return peak,
        }
    }
}

/// Polls `ready` until `done` and counts the outcomes; `None` without a URL.
async fn poll_ready(ready: Option<&Endpoint>, done: &CancellationToken) -> Option<ReadyPolls> {
    let ready = ready?;
    let mut polls = ReadyPolls::default();
    loop {
        match tokio::time::timeout(POLL_TIMEOUT, status_of(ready)).await {
            Ok(Ok(StatusCode::OK)) => polls.ready += 1,
            Ok(Ok(_)) => polls.not_ready += 1,
            Ok(Err(_)) | Err(_) => polls.unanswered += 1,
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            () = done.cancelled() => return Some(polls),
        }
    }
}

/// The status of `GET ready`, on a fresh connection.
async fn status_of(ready: &Endpoint) -> Result<StatusCode, HttpError> {
    let mut connection = Connection::open(ready.addr, None).await?;
    let request = conn::request(Method::GET, ready, "", &HeaderMap::new(), Bytes::new())?;
    Ok(connection.send(request).await?.status())
}
