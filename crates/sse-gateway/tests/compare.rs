//! `loadtest/compare/run.sh`, the README's side-by-side command, at toy size (`SCALE=small`)
//! with this build's binaries: it must run every scenario against the gateway and Nchan and
//! write the report and the plots. Debug builds measure nothing worth keeping; this checks
//! that the command works and that the gateway lost nothing where the load suits a debug
//! build.

mod harness;

use std::path::Path;
use std::process::Command;

const SCENARIOS: [&str; 6] = [
    "idle",
    "fanout",
    "fanout-10",
    "topics",
    "ramp",
    "reconnect-storm",
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
        assert!(
            report.contains(&format!("\n## {scenario}\n")),
            "compare.md has no {scenario} section:\n{report}"
        );
    }
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
        }
    }
    for scenario in ["fanout-10", "topics", "reconnect-storm"] {
        let path = out.path().join(format!("{scenario}.sse-gateway.json"));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("the gateway's report"))
                .expect("the report is JSON");
        let events = &json["events"];
        assert!(events["published"].as_u64() > Some(0), "{scenario}: {json}");
        assert_eq!(events["missing"], 0, "{scenario}: {json}");
        assert_eq!(events["duplicated"], 0, "{scenario}: {json}");
    }
}
