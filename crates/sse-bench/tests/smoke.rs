//! The driver against a real node: a few hundred streams, a short burst of publishing, and a
//! report that counts every event exactly once.

use std::process::Command;

use clap::Parser;
use sse_testkit::RedisServer;

#[test]
fn a_small_fanout_run_reports_zero_loss() {
    let redis = RedisServer::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let gateway = listener.local_addr().unwrap();
    let config =
        sse_gateway::Config::try_parse_from(["sse-gateway", "--redis-url", &redis.url()]).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            sse_gateway::run(config, listener, async move {
                let _ = stopped.await;
            })
            .await
        })
    });
    let report = tempfile_path();

    let status = Command::new(env!("CARGO_BIN_EXE_sse-bench"))
        .args([
            "--gateway",
            &gateway.to_string(),
            "--redis-url",
            &redis.url(),
        ])
        .args([
            "--connections",
            "300",
            "--topics",
            "3",
            "--rate",
            "200",
            "--duration",
            "1s",
        ])
        .args(["--json", report.to_str().unwrap()])
        .status()
        .unwrap();

    assert!(status.success());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let events = &report["events"];
    assert_eq!(report["connections"]["live"], 300, "{report}");
    assert_eq!(events["published"], 200, "{report}");
    assert_eq!(events["expected"], 200 * 100, "{report}");
    assert_eq!(events["received"], events["expected"], "{report}");
    assert_eq!(events["missing"], 0, "{report}");
    assert_eq!(events["duplicated"], 0, "{report}");
    assert_eq!(events["sequence_gaps"], 0, "{report}");
    let _ = stop.send(());
    node.join().unwrap().unwrap();
}

fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sse-bench-smoke-{}.json", std::process::id()))
}
