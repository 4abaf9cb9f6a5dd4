//! The driver against the real stack (Redis, a gateway and a publisher, in-process): a few
//! hundred streams, a short burst of publishing over HTTP, and a report that counts every
//! event exactly once, also across a reconnect storm and with a topic's events spread over
//! several publish connections (where they may arrive reordered, which is counted, not lost).

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
