//! The driver against the real stack (Redis, a gateway and a publisher, in-process): a few
//! hundred streams, a short burst of publishing over HTTP, and a report that counts every
//! event exactly once, also across a reconnect storm and with a topic's events spread over
//! several publish connections (where they may arrive reordered, which is counted, not lost);
//! and a storm whose clients stay away and come back spread out, timed until each caught up,
//! with the Redis commands of the storm counted.

mod harness;

use harness::{SPREAD, Stack, assert_exactly_once};

#[test]
fn topics_and_fanout_runs_deliver_every_event_once() {
    let stack = Stack::start(&[]);
    let small = ["--rate", "200", "--duration", "1s", "--ramp", "2000"];

    let topics = stack.bench(
        "topics",
        &[&["--connections", "300", "--topics", "3"], &small[..]].concat(),
    );
    assert_exactly_once(&topics, 300, 200, 100);
    assert_eq!(topics["params"]["topics"], 3);
    // One connection per topic keeps each topic in order.
    assert_eq!(topics["params"]["publish_spread"], false);
    assert_eq!(topics["events"]["reordered"], 0, "{topics:#}");

    let fanout = stack.bench(
        "fanout",
        &[
            &["--connections", "100", "--topics", "3"],
            &small[..],
            &SPREAD[..],
        ]
        .concat(),
    );
    assert_exactly_once(&fanout, 100, 200, 100);
    assert_eq!(fanout["params"]["topics"], 1);
    assert_eq!(fanout["params"]["publish_spread"], true);
    assert_eq!(fanout["params"]["publish_connections"], 8);
}

#[test]
fn a_reconnect_storm_resumes_without_loss_or_duplicates() {
    let stack = Stack::start(&[]);
    let ready = stack.ready_url();
    let report = stack.bench(
        "reconnect-storm",
        &[
            "--connections",
            "200",
            "--topics",
            "2",
            "--rate",
            "200",
            "--duration",
            "2s",
            "--ramp",
            "2000",
            "--storm-at",
            "1s",
            "--ready-url",
            &ready,
            SPREAD[0],
            SPREAD[1],
            SPREAD[2],
        ],
    );
    assert_exactly_once(&report, 200, 400, 100);
    let storm = &report["storm"];
    assert_eq!(storm["clients"], 200, "{report:#}");
    assert_eq!(storm["reconnected"], 200, "{report:#}");
    assert_eq!(storm["failed"], 0, "{report:#}");
    assert_eq!(storm["ready_during_storm"], true, "{report:#}");
}

#[test]
fn a_storm_with_away_time_reports_catch_up_resources_and_redis_commands() {
    let stack = Stack::start(&[]);
    let redis = stack.redis_url();
    let report = stack.bench(
        "reconnect-storm",
        &[
            "--connections",
            "40",
            "--topics",
            "2",
            "--rate",
            "100",
            "--duration",
            "3s",
            "--ramp",
            "2000",
            "--storm-at",
            "1s",
            "--storm-away",
            "500ms",
            "--storm-spread",
            "300ms",
            "--redis-stats",
            &redis,
            SPREAD[0],
            SPREAD[1],
            SPREAD[2],
        ],
    );
    assert_exactly_once(&report, 40, 300, 20);
    assert_eq!(report["params"]["storm_away_s"], 0.5, "{report:#}");
    assert_eq!(report["params"]["storm_spread_s"], 0.3, "{report:#}");
    assert_eq!(
        report["params"]["redis_stats"][0],
        redis.as_str(),
        "{report:#}"
    );
    let storm = &report["storm"];
    assert_eq!(storm["clients"], 40, "{report:#}");
    assert_eq!(storm["reconnected"], 40, "{report:#}");

    // Every client was measured at its reconnect and caught up, in a finite, positive time.
    let behind = &storm["behind_at_reconnect"];
    assert_eq!(behind["clients"], 40, "{report:#}");
    assert!(
        behind["mean"].as_f64().is_some_and(|mean| mean >= 0.0),
        "{report:#}"
    );
    assert!(behind["max"].is_u64(), "{report:#}");
    let catch_up = &storm["catch_up"];
    assert_eq!(catch_up["caught_up"], 40, "{report:#}");
    assert_eq!(catch_up["not_caught_up"], 0, "{report:#}");
    let positive =
        |value: &serde_json::Value| value.as_f64().is_some_and(|v| v.is_finite() && v > 0.0);
    assert!(positive(&catch_up["seconds_until_all"]), "{report:#}");
    assert!(
        positive(&catch_up["from_reconnect_ms"]["p99"]),
        "{report:#}"
    );
    assert_eq!(catch_up["from_reconnect_ms"]["samples"], 40, "{report:#}");
    let resumed = &storm["resumed_events_from_reconnect_ms"];
    assert!(resumed["samples"].is_u64(), "{report:#}");
    assert!(
        resumed["p99"].as_f64().is_some_and(f64::is_finite),
        "{report:#}"
    );

    // The servers' resources over the storm window (they run in the test process).
    let window = &storm["window"];
    assert!(positive(&window["seconds"]), "{report:#}");
    assert!(
        window["server_cpu_seconds"]
            .as_f64()
            .is_some_and(|cpu| cpu >= 0.0),
        "{report:#}"
    );
    assert!(window["server_cpu_percent"].is_number(), "{report:#}");
    assert!(
        window["server_rss_peak_kib"].as_u64() > Some(0),
        "{report:#}"
    );
    assert!(window["driver_cpu_percent"].is_number(), "{report:#}");
    let reconnecting = &window["reconnecting"];
    assert!(positive(&reconnecting["seconds"]), "{report:#}");
    assert!(
        reconnecting["seconds"].as_f64() <= window["seconds"].as_f64(),
        "{report:#}"
    );
    assert!(reconnecting["server_cpu_percent"].is_number(), "{report:#}");
    assert!(reconnecting["driver_cpu_percent"].is_number(), "{report:#}");

    // Redis counted every publish of the window: the publisher's FCALL (and the XADD inside
    // it). Stream reads may be 0 once the gateway replays from memory, so only their
    // presence is checked.
    assert!(storm["redis_stats_error"].is_null(), "{report:#}");
    let commands = &storm["redis_commands"];
    let published = window["published"].as_u64().unwrap_or(0);
    assert!(published >= 1, "{report:#}");
    let fcall = commands["by_command"]["fcall"].as_u64().unwrap_or(0);
    assert!(fcall >= published, "{report:#}");
    assert!(
        commands["by_command"]["xadd"].as_u64() >= Some(published),
        "{report:#}"
    );
    assert!(commands["read_commands"].is_u64(), "{report:#}");
    assert!(commands["total"].as_u64() >= Some(fcall), "{report:#}");
}
