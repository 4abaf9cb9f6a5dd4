//! The `sse-gateway` binary as an operator runs it: `--help` documents the flags, and SIGTERM
//! or SIGINT drains the node (open streams end) and the process exits with status 0.

mod harness;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::{PATIENCE, publish, publisher};
use sse_testkit::{RedisServer, SseClient, eventually, free_port};

const BINARY: &str = env!("CARGO_BIN_EXE_sse-gateway");

#[test]
fn help_lists_the_operational_flags() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--redis-url",
        "--heartbeat",
        "--client-buffer",
        "--max-connections",
        "--drain-seconds",
    ] {
        assert!(help.contains(flag), "--help lists {flag}:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_and_exits_0() {
    stops_gracefully_on("-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ends_open_streams_and_exits_0() {
    stops_gracefully_on("-INT").await;
}

/// Runs the binary, opens a stream that receives an event, sends `signal`, and checks that
/// the stream ends and the process exits with status 0.
async fn stops_gracefully_on(signal: &str) {
    let redis = RedisServer::start();
    let mut gateway = GatewayProcess::start(&redis);
    let addr = gateway.addr;
    eventually("the binary answers /healthz", PATIENCE, || async {
        (sse_testkit::http_status(addr, "/healthz", PATIENCE).await == Some(200)).then_some(())
    })
    .await;
    let mut stream = SseClient::get(addr, "/events?topic=proc", &[]).await;
    assert_eq!(stream.status(), 200);
    stream.position(PATIENCE).await;
    let publisher = publisher(&redis).await;
    let id = publish(&publisher, "proc", None, "served by the binary").await;
    assert_eq!(stream.next_event(PATIENCE).await.last_event_id, id);

    let pid = gateway.child.id().to_string();
    let kill = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill {signal} {pid}: {kill:?}");

    stream.until_closed(PATIENCE).await;
    let status = gateway.wait(PATIENCE);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after {signal}: {status:?}\n{}",
        gateway.logs()
    );
}

/// The binary running as a child process; killed (SIGKILL) if the test ends first.
struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    /// Collects the child's stderr (its logs) until it exits.
    stderr: Option<JoinHandle<String>>,
}

impl GatewayProcess {
    fn start(redis: &RedisServer) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut child = Command::new(BINARY)
            .args(["--listen", &addr.to_string()])
            .args(["--redis-url", &redis.url()])
            .args(["--drain-seconds", "1"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sse-gateway");
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut logs = String::new();
            let _ = pipe.read_to_string(&mut logs);
            logs
        });
        Self {
            child,
            addr,
            stderr: Some(stderr),
        }
    }

    /// Waits for the process to exit; after `timeout`, kills it and fails.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("read the child's status") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "sse-gateway still ran {timeout:?} after the signal; killed it\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process logged; call after it exited.
    fn logs(&mut self) -> String {
        self.stderr
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
