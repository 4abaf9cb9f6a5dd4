//! What the driver's tests start from: Redis, a gateway and a publisher in this process, and
//! `sse-bench` run as the binary against them, its JSON report read back; plus the check that
//! a run delivered every event exactly once.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;
use serde_json::Value;
use sse_testkit::{RedisServer, ServerThread};

/// The publisher's static token.
const TOKEN: &str = "smoke-token";

/// Spread publishing: every topic's events over all of these connections.
pub(crate) const SPREAD: [&str; 3] = ["--publish-spread", "--publish-connections", "8"];

/// Numbers the report files, so that runs in parallel tests of one process never share one.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Redis, a gateway and a publisher that needs [`TOKEN`].
pub(crate) struct Stack {
    gateway: ServerThread<()>,
    publisher: ServerThread<()>,
    redis: RedisServer,
}

impl Stack {
    /// Starts the stack, the gateway with `gateway_flags` besides its Redis URL.
    pub(crate) fn start(gateway_flags: &[&str]) -> Self {
        let redis = RedisServer::start();
        let redis_url = redis.url();
        let gateway_config = sse_gateway::Config::try_parse_from(
            ["sse-gateway", "--redis-url", &redis_url]
                .into_iter()
                .chain(gateway_flags.iter().copied()),
        )
        .expect("gateway flags");
        let gateway = ServerThread::start("gateway", move |listener, shutdown| async move {
            sse_gateway::run(gateway_config, listener, shutdown)
                .await
                .expect("the gateway starts");
        });
        let publisher_config = sse_publisher::Config::try_parse_from([
            "sse-publisher",
            "--redis-url",
            &redis_url,
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
            redis,
        }
    }

    /// Runs `sse-bench <scenario> <args>` against this stack and returns its JSON report.
    pub(crate) fn bench(&self, scenario: &str, args: &[&str]) -> Value {
        let report = std::env::temp_dir().join(format!(
            "sse-bench-test-{}-{}-{scenario}.json",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed),
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

    /// The URL of the Redis both servers use.
    pub(crate) fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// The gateway's readiness URL.
    pub(crate) fn ready_url(&self) -> String {
        format!("http://{}/readyz", self.gateway.addr())
    }
}

/// Every connection live, and every event published delivered exactly once (in any order) to
/// each of its topic's `subscribers`. Up to `planned` events are published: a driver starved
/// of CPU gives up at twice the planned time (see `publish.rs`), so fewer is not a failure.
pub(crate) fn assert_exactly_once(
    report: &Value,
    connections: u64,
    planned: u64,
    subscribers: u64,
) {
    let events = &report["events"];
    assert_eq!(report["connections"]["live"], connections, "{report:#}");
    assert_eq!(report["connections"]["failed"], 0, "{report:#}");
    let published = events["published"].as_u64().unwrap_or(0);
    assert!((1..=planned).contains(&published), "{report:#}");
    assert_eq!(events["publish_failed"], 0, "{report:#}");
    let expected = published * subscribers;
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
