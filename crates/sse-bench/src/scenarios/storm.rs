//! `reconnect-storm`: what a mass reconnect (a node restart, a network blip) does to
//! delivery. While publishing, `--storm-share` of the connections drop at the same instant
//! and reconnect with `Last-Event-ID`; their sequence checks run on, so anything the resume
//! loses or repeats is reported as missing or duplicated. Optionally `--ready-url` is polled
//! every 100 ms meanwhile, to see whether the server stays ready under the storm.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::StormOptions;
use crate::conn::{self, Connection, HttpError};
use crate::payload;
use crate::plan::Plan;
use crate::report::{Details, Params, ReadyPolls, Report, ScenarioParams, Storm, round};
use crate::scenarios::Stage;
use crate::template::Endpoint;

/// How long to wait for every storm connection to be back (20 attempts 500 ms apart, plus
/// time for slow connects).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `--ready-url` is polled, and how long one poll may take.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the scenario.
pub(crate) async fn run(plan: Plan, options: &StormOptions) -> Report {
    let clients = (options.storm_share * plan.connections as f64).round() as usize;
    let storm_at = options.storm_at.unwrap_or(plan.duration / 2);
    let stage = Stage::open(plan, clients).await;
    let mut publisher = stage.publisher();
    let window = stage.window(publisher.published());
    let (publishing, storm) = tokio::join!(
        publisher.publish(stage.plan.rate, stage.plan.duration),
        storm(&stage, storm_at, clients, options.ready_url.as_ref()),
    );
    let whole = stage
        .measure(window, publisher.published(), publishing)
        .await;
    let params = Params {
        scenario: ScenarioParams::Storm {
            storm_at_s: round(storm_at.as_secs_f64(), 3),
            storm_share: options.storm_share,
            ready_url: options.ready_url.as_ref().map(|ready| ready.url.clone()),
        },
        ..stage.plan.params.clone()
    };
    stage
        .finish("reconnect-storm", params, whole, Details::Storm { storm })
        .await
}

/// Waits `at`, drops the storm connections, and waits until they are all back.
async fn storm(stage: &Stage, at: Duration, clients: usize, ready: Option<&Endpoint>) -> Storm {
    tokio::time::sleep(at).await;
    let started = Instant::now();
    let started_micros = payload::now_micros();
    eprintln!("storm: dropping {clients} connections");
    stage.fleet.storm();
    let tally = &stage.tally;
    let back = CancellationToken::new();
    let wait = async {
        let deadline = started + RECONNECT_TIMEOUT;
        while tally.reconnected.load(Ordering::Relaxed)
            + tally.reconnect_failed.load(Ordering::Relaxed)
            < clients as u64
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        back.cancel();
    };
    let ((), ready_polls) = tokio::join!(wait, poll_ready(ready, &back));
    let reconnected = tally.reconnected.load(Ordering::Relaxed);
    let last = tally.last_reconnect_micros.load(Ordering::Relaxed);
    let seconds_to_reconnect = if reconnected > 0 {
        last.saturating_sub(started_micros) as f64 / 1e6
    } else {
        started.elapsed().as_secs_f64()
    };
    eprintln!("storm: {reconnected} of {clients} back after {seconds_to_reconnect:.2}s");
    Storm {
        clients,
        reconnected,
        failed: tally.reconnect_failed.load(Ordering::Relaxed),
        failed_by_status: tally.reconnect_failed_by_status.snapshot(),
        seconds_to_reconnect: round(seconds_to_reconnect, 3),
        ready_during_storm: ready_polls.as_ref().map(|polls| polls.not_ready == 0),
        ready_polls,
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
