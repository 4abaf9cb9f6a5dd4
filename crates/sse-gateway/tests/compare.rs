//! `loadtest/compare/run.sh`, the README's side-by-side command, at toy size (`SCALE=small`)
//! with this build's binaries: it must run every scenario against the gateway and Nchan and
//! write the report and the plots, with the columns that make the comparison fair (achieved
//! publish rate, reordered, latency from the schedule, server and driver CPU, what bound the
//! run) in every scenario. Debug builds measure nothing worth keeping; this checks that the
//! command works and that the gateway lost nothing where the load suits a debug build, and that
//! it cut every stalled reader and freed its socket with nothing left queued in the kernel.

mod harness;

use std::path::Path;
use std::process::Command;

const SCENARIOS: [&str; 7] = [
    "idle",
    "fanout",
    "fanout-10",
    "topics",
    "ramp",
    "reconnect-storm",
    "stalled",
];

/// Rows every scenario's table in compare.md has, for both servers.
const ROWS: [&str; 16] = [
    "| published |",
    "| publish rate achieved /s |",
    "| delivered /s |",
    "| missing |",
    "| duplicated |",
    "| reordered (arrived after a higher sequence) |",
    "| p50 ms from send |",
    "| p99 ms from send |",
    "| p50 ms from schedule |",
    "| p99 ms from schedule |",
    "| server CPU % (of one core) |",
    "| driver CPU % (of one core; all driver processes together) |",
    "| timed streams (the latency sample; all streams checked) |",
    "| driver's core busy % (driver, Redis, anything else) |",
    "| driver-bound |",
    "| bound by |",
];

/// Fields every report has, with both servers' processes given as --pid.
const FIELDS: [&str; 8] = [
    "/events/published_per_second",
    "/events/reordered",
    "/latency_from_schedule_ms/p99",
    "/server_cpu_percent",
    "/driver_cpu_percent",
    "/driver_core_busy_percent",
    "/driver_bound",
    "/bound_by",
];

#[test]
fn the_comparison_runs_every_scenario_against_both_servers_and_writes_the_report() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .parent()
        .expect("the binary has a directory");
    harness::publisher_binary();
    harness::sibling_binary("sse-bench");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new("bash")
        .arg(root.join("loadtest/compare/run.sh"))
        .env("SCALE", "small")
        .env("OUT", out.path())
        .env("SSE_BIN_DIR", bin_dir)
        .status()
        .expect("run loadtest/compare/run.sh");
    assert!(status.success(), "loadtest/compare/run.sh failed: {status}");

    let report = std::fs::read_to_string(out.path().join("compare.md")).expect("compare.md");
    for scenario in SCENARIOS {
        let heading = format!("\n## {scenario}\n");
        let section = report
            .split_once(&heading)
            .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest));
        let section = section.unwrap_or_else(|| panic!("no {scenario} section:\n{report}"));
        for row in ROWS {
            assert!(
                section.contains(row),
                "{scenario} has no row {row}:\n{report}"
            );
        }
    }
    assert!(
        report.contains("\n| rate asked | server | achieved /s |"),
        "the ramp has no per-step table:\n{report}"
    );
    assert!(
        report.contains("nginx master + worker"),
        "compare.md says which processes it counts:\n{report}"
    );
    for plot in ["latency.svg", "latency.png", "memory.svg", "memory.png"] {
        let size = std::fs::metadata(out.path().join(plot)).map_or(0, |m| m.len());
        assert!(size > 0, "{plot} was not written");
    }
    for scenario in SCENARIOS {
        for server in ["sse-gateway", "nchan"] {
            let path = out.path().join(format!("{scenario}.{server}.json"));
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).expect("a report per run"))
                    .expect("the report is JSON");
            let connections = &json["connections"];
            assert_eq!(
                connections["live"], connections["requested"],
                "{scenario} on {server}: every connection opened"
            );
            for field in FIELDS {
                assert!(
                    json.pointer(field).is_some_and(|value| !value.is_null()),
                    "{scenario} on {server} has no {field}: {json}"
                );
            }
            let pids = json["params"]["server_pids"].as_array().map_or(0, Vec::len);
            assert_eq!(
                pids, 2,
                "{scenario} on {server}: both processes of the stack"
            );
            if scenario != "idle" {
                assert_eq!(
                    json["params"]["publish_spread"], true,
                    "{scenario} on {server}"
                );
            }
        }
    }
    for scenario in ["fanout-10", "topics", "reconnect-storm", "stalled"] {
        let path = out.path().join(format!("{scenario}.sse-gateway.json"));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("the gateway's report"))
                .expect("the report is JSON");
        let events = &json["events"];
        assert!(events["published"].as_u64() > Some(0), "{scenario}: {json}");
        assert_eq!(events["missing"], 0, "{scenario}: {json}");
        assert_eq!(events["duplicated"], 0, "{scenario}: {json}");
    }
    // The stalled readers: the gateway cut every one, and by the end their sockets were gone
    // with nothing left queued in the kernel; only the healthy readers' remained.
    let path = out.path().join("stalled.sse-gateway.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("the gateway's stalled report"))
            .expect("the report is JSON");
    let stalled = &json["stalled"];
    assert!(stalled["opened"].as_u64() > Some(0), "{json}");
    assert_eq!(stalled["failed"], 0, "{json}");
    assert_eq!(
        stalled["end"]["server"]["sockets"], stalled["healthy"],
        "every stalled stream was cut and its socket freed: {json}"
    );
    assert_eq!(stalled["end"]["server"]["send_queue_bytes"], 0, "{json}");
    assert_eq!(stalled["peak"]["server_fin_wait1"], 0, "{json}");
}
