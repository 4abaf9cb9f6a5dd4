//! The `sse-publisher` binary as operators run it: `--help`, refusing a configuration nobody
//! could publish with, tokens from the environment, and SIGTERM ending it with status 0 after
//! the request in flight is answered.
//!
//! Every child gets a cleared environment, so nothing from the machine (a `REDIS_URL`, a
//! `SSE_PUBLISH_TOKENS`) leaks in, and a Redis of its own.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};

use harness::{PATIENCE, http_client, ids, read_response, xlen};
use serde_json::json;
use sse_testkit::{RedisServer, eventually, find, free_port, wait_until};

/// A child process that is killed (SIGKILL) if the test ends before it exits.
struct Running {
    child: Child,
    listen: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn publisher_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-publisher"));
    command
        .env_clear()
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Starts the binary on a free port with `args` and `env`.
fn spawn(redis: &RedisServer, args: &[&str], env: &[(&str, &str)]) -> Running {
    let listen = format!("127.0.0.1:{}", free_port());
    let url = redis.url();
    let mut all = vec!["--listen", listen.as_str(), "--redis-url", url.as_str()];
    all.extend_from_slice(args);
    let mut command = publisher_command(&all);
    command.stderr(Stdio::null()).envs(env.iter().copied());
    let child = command.spawn().expect("spawn sse-publisher");
    Running { child, listen }
}

/// Waits for the child to exit and returns its status.
fn wait_exit(child: &mut Child) -> ExitStatus {
    let mut status = None;
    wait_until("sse-publisher exits", PATIENCE, || {
        status = child.try_wait().expect("read the child's status");
        status.is_some()
    });
    status.expect("wait_until returned, so the child exited")
}

/// Sends SIGTERM to the child (through `kill`, as this crate forbids unsafe code).
fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill -TERM");
    assert!(status.success(), "kill -TERM failed: {status}");
}

/// Waits until the child serves `/healthz`.
async fn wait_healthy(running: &Running) {
    let client = http_client();
    let url = format!("http://{}/healthz", running.listen);
    eventually("sse-publisher serves /healthz", PATIENCE, || async {
        let response = client.get(&url).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

/// Publishes with `token` and returns the status.
async fn publish_status(running: &Running, token: &str) -> u16 {
    http_client()
        .post(format!("http://{}/v1/publish", running.listen))
        .bearer_auth(token)
        .json(&json!({"topic": "proc", "data": token}))
        .send()
        .await
        .expect("send a publish request")
        .status()
        .as_u16()
}

#[test]
fn help_lists_the_flags_and_their_environment_variables() {
    let output = publisher_command(&["--help"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "--listen",
        "--redis-url",
        "--token",
        "SSE_PUBLISH_TOKENS",
        "--allow-anonymous",
        "--max-body",
        "--max-batch",
        "--retention",
        "--retention-age",
        "--redis-timeout",
        "--shutdown-timeout",
    ] {
        assert!(help.contains(expected), "--help lacks {expected}:\n{help}");
    }
}

#[test]
fn without_a_token_or_allow_anonymous_it_refuses_to_start() {
    let stderr = refused_at_start(&[]);
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(stderr.contains("--allow-anonymous"), "{stderr}");
}

#[test]
fn an_empty_token_is_refused_at_start() {
    let stderr = refused_at_start(&["--token", ""]);
    assert!(stderr.contains("token is empty"), "{stderr}");
}

#[tokio::test]
async fn sigterm_stops_it_with_status_0() {
    let redis = RedisServer::start();
    let mut running = spawn(&redis, &["--token", "t"], &[]);
    wait_healthy(&running).await;
    assert_eq!(publish_status(&running, "t").await, 201);

    sigterm(&running.child);
    let status = wait_exit(&mut running.child);

    assert!(status.success(), "{status}");
    assert_eq!(xlen(&redis, "proc"), 1);
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish() {
    let redis = RedisServer::start();
    let mut running = spawn(&redis, &["--token", "t"], &[]);
    wait_healthy(&running).await;
    let body = r#"{"topic": "proc", "data": "in flight"}"#;
    let mut stream = TcpStream::connect(&running.listen).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "POST /v1/publish HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer t\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    // `100 Continue` comes when the handler starts reading the body: the request is in flight.
    let mut interim = Vec::new();
    while find(&interim, b"\r\n\r\n").is_none() {
        let mut byte = [0_u8; 1];
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed early"
        );
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );

    sigterm(&running.child);
    // The listener closes when shutdown begins; only then does the body arrive.
    wait_until("the listener is closed", PATIENCE, || {
        TcpStream::connect(&running.listen).is_err()
    });
    stream.write_all(body.as_bytes()).unwrap();
    let reply = read_response(&mut stream, Vec::new());
    let status = wait_exit(&mut running.child);

    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(ids(&redis, "proc"), [reply.json()["id"].as_str().unwrap()]);
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn tokens_come_from_the_environment_as_a_comma_separated_list() {
    let redis = RedisServer::start();
    let running = spawn(&redis, &[], &[("SSE_PUBLISH_TOKENS", "a,b")]);
    wait_healthy(&running).await;

    assert_eq!(publish_status(&running, "a").await, 201);
    assert_eq!(publish_status(&running, "b").await, 201);
    assert_eq!(publish_status(&running, "c").await, 401);
    assert_eq!(publish_status(&running, "a,b").await, 401);
    assert_eq!(xlen(&redis, "proc"), 2);
}

/// Starts the binary with `extra` flags, expects it to refuse to start, and returns its stderr.
fn refused_at_start(extra: &[&str]) -> String {
    let redis = RedisServer::start();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--listen", listen.as_str(), "--redis-url"];
    let url = redis.url();
    args.push(&url);
    args.extend_from_slice(extra);
    let child = publisher_command(&args)
        .spawn()
        .expect("spawn the publisher");
    let mut running = Running { child, listen };
    let status = wait_exit(&mut running.child);
    assert!(!status.success(), "{status}");
    let mut stderr = String::new();
    running
        .child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    stderr
}
