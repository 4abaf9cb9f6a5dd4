//! The driver against the real stack (Redis, a gateway and a publisher, in-process): a few
//! hundred streams, a short burst of publishing over HTTP, and a report that counts every
//! event exactly once, also across a reconnect storm and with a topic's events spread over
//! several publish connections (where they may arrive reordered, which is counted, not lost).

use std::process::Command;

use clap::Parser;
use serde_json::Value;
use sse_testkit::{RedisServer, ServerThread};

const TOKEN: &str = "smoke-token";

/// Redis, a gateway and a publisher that needs [`TOKEN`].
struct Stack {
    gateway: ServerThread<()>,
    publisher: ServerThread<()>,
    _redis: RedisServer,
}

impl Stack {
    fn start() -> Self {
        let redis = RedisServer::start();
        let gateway_config =
            sse_gateway::Config::try_parse_from(["sse-gateway", "--redis-url", &redis.url()])
                .expect("gateway flags");
        let gateway = ServerThread::start("gateway", move |listener, shutdown| async move {
            sse_gateway::run(gateway_config, listener, shutdown)
                .await
                .expect("the gateway starts");
        });
        let publisher_config = sse_publisher::Config::try_parse_from([
            "sse-publisher",
            "--redis-url",
            &redis.url(),
            "--token",
            TOKEN,
        ])
        .expect("publisher flags");
        let publisher = ServerThread::start("publisher", move |listener, shutdown| async move {
            sse_publisher::run(publisher_config, listener, shutdown)
                .await
                .expect("the publisher starts");
        });
        Self {
            gateway,
            publisher,
            _redis: redis,
        }
    }

    /// Runs `sse-bench <scenario> <args>` against this stack and returns its JSON report.
    fn bench(&self, scenario: &str, args: &[&str]) -> Value {
        let report = std::env::temp_dir().join(format!(
            "sse-bench-smoke-{}-{scenario}.json",
            std::process::id()
        ));
        let subscribe = format!("http://{}/events?topic={{topic}}", self.gateway.addr());
        let publish = format!("http://{}/v1/publish", self.publisher.addr());
        let auth = format!("Authorization: Bearer {TOKEN}");
        let report_path = report.to_str().expect("a UTF-8 temp dir");
        // The servers run in this process, so its CPU is the server CPU.
        let pid = std::process::id().to_string();
        let status = Command::new(env!("CARGO_BIN_EXE_sse-bench"))
            .arg(scenario)
            .args(["--subscribe-url", &subscribe, "--publish-url", &publish])
            .args(["--publish-header", &auth, "--settle", "500ms"])
            .args(["--json", report_path, "--pid", &pid])
            .args(args)
            .status()
            .expect("sse-bench runs");
        assert!(status.success());
        let json =
            serde_json::from_slice(&std::fs::read(&report).expect("sse-bench wrote its report"))
                .expect("the report is JSON");
        let _ = std::fs::remove_file(&report);
        json
    }

    fn ready_url(&self) -> String {
        format!("http://{}/readyz", self.gateway.addr())
    }
}

/// Every connection live, and every event delivered exactly once (in any order).
fn assert_exactly_once(report: &Value, connections: u64, published: u64, expected: u64) {
    let events = &report["events"];
    assert_eq!(report["connections"]["live"], connections, "{report:#}");
    assert_eq!(events["published"], published, "{report:#}");
    assert_eq!(events["publish_failed"], 0, "{report:#}");
    assert_eq!(events["expected"], expected, "{report:#}");
    assert_eq!(events["received"], expected, "{report:#}");
    assert_eq!(events["missing"], 0, "{report:#}");
    assert_eq!(events["duplicated"], 0, "{report:#}");
    assert!(events["reordered"].is_u64(), "{report:#}");
    assert!(
        events["published_per_second"].as_f64() > Some(0.0),
        "{report:#}"
    );
    for latency in ["latency_ms", "latency_from_schedule_ms"] {
        assert_eq!(
            report[latency]["samples"], expected,
            "{latency}: {report:#}"
        );
    }
    assert!(report["server_cpu_percent"].is_number(), "{report:#}");
    assert!(report["driver_cpu_percent"].is_number(), "{report:#}");
    assert!(report["driver_core_busy_percent"].is_number(), "{report:#}");
    assert!(report["driver_bound"].is_boolean(), "{report:#}");
    let bound_by = report["bound_by"].as_str().unwrap_or_default();
    assert!(
        ["driver", "server", "publisher", "none"].contains(&bound_by),
        "{report:#}"
    );
}

/// Spread publishing: every topic's events over all of these connections.
const SPREAD: [&str; 3] = ["--publish-spread", "--publish-connections", "8"];

#[test]
fn topics_and_fanout_runs_deliver_every_event_once() {
    let stack = Stack::start();
    let small = ["--rate", "200", "--duration", "1s", "--ramp", "2000"];

    let topics = stack.bench(
        "topics",
        &[&["--connections", "300", "--topics", "3"], &small[..]].concat(),
    );
    assert_exactly_once(&topics, 300, 200, 200 * 100);
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
    assert_exactly_once(&fanout, 100, 200, 200 * 100);
    assert_eq!(fanout["params"]["topics"], 1);
    assert_eq!(fanout["params"]["publish_spread"], true);
    assert_eq!(fanout["params"]["publish_connections"], 8);
}

#[test]
fn a_reconnect_storm_resumes_without_loss_or_duplicates() {
    let stack = Stack::start();
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
    assert_exactly_once(&report, 200, 400, 400 * 100);
    let storm = &report["storm"];
    assert_eq!(storm["clients"], 200, "{report:#}");
    assert_eq!(storm["reconnected"], 200, "{report:#}");
    assert_eq!(storm["failed"], 0, "{report:#}");
    assert_eq!(storm["ready_during_storm"], true, "{report:#}");
}
