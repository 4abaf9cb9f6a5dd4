//! `deploy/local/run.sh`, the README's "run" command: it starts Redis and the publisher,
//! publishing through it works, and stopping it stops exactly what it started.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sse_testkit::{free_port, wait_until};

#[test]
fn run_script_serves_and_stops_what_it_started() {
    let (redis_port, publisher_port) = (free_port(), free_port());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut script = Command::new("bash")
        .arg("deploy/local/run.sh")
        .current_dir(&root)
        .env("REDIS_PORT", redis_port.to_string())
        .env("PUBLISHER_PORT", publisher_port.to_string())
        .env("SSE_PUBLISHER_BIN", env!("CARGO_BIN_EXE_sse-publisher"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start deploy/local/run.sh");

    let mut stdout = BufReader::new(script.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    while !line.contains("Press Ctrl-C") {
        line.clear();
        let read = stdout
            .read_line(&mut line)
            .expect("read the script's output");
        assert!(read > 0, "the script ended before it was ready");
    }

    let publish = Command::new("curl")
        .args(["-sS", "-X", "POST", "-H", "Authorization: Bearer dev-token"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", r#"{"topic":"orders","data":{"n":1}}"#])
        .arg(format!("http://127.0.0.1:{publisher_port}/v1/publish"))
        .output()
        .expect("run curl");
    let reply = String::from_utf8_lossy(&publish.stdout);
    assert!(reply.contains(r#""topic":"orders""#), "{reply}");
    let redis_cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["-p", &redis_port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli")
    };
    let xlen = redis_cli(&["XLEN", "sse:{orders}:stream"]);
    assert_eq!(String::from_utf8_lossy(&xlen.stdout).trim(), "1");

    Command::new("kill")
        .args(["-TERM", &script.id().to_string()])
        .status()
        .expect("send SIGTERM");
    script.wait().expect("the script exits");
    wait_until(
        "redis and the publisher stop",
        Duration::from_secs(15),
        || {
            !redis_cli(&["PING"]).status.success()
                && std::net::TcpStream::connect(("127.0.0.1", publisher_port)).is_err()
        },
    );
}
