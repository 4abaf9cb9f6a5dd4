//! `deploy/local/run.sh`, the README's "run" command: it starts Redis, the publisher, two
//! gateways and nginx with the project's config; a stream opened on one gateway receives what is
//! published over HTTP and resumes on the other; through nginx, a stream receives an event
//! published through nginx (a buffering proxy would hold it back and fail the test); stopping
//! the script stops exactly what it started.

mod harness;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sse_testkit::{SseClient, free_port, wait_until};

const PATIENCE: Duration = Duration::from_secs(15);

/// The `sse-publisher` binary of this build (a sibling of ours), built if it is not there yet.

#[tokio::test]
async fn run_script_serves_resumes_across_gateways_and_stops_what_it_started() {
    let (redis_port, publisher_port, nginx_port) = (free_port(), free_port(), free_port());
    let gateways = [free_port(), free_port()];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut script = Command::new("bash")
        .arg("deploy/local/run.sh")
        .current_dir(&root)
        .env("REDIS_PORT", redis_port.to_string())
        .env("PUBLISHER_PORT", publisher_port.to_string())
        .env("GATEWAY_PORTS", format!("{} {}", gateways[0], gateways[1]))
        .env("NGINX_PORT", nginx_port.to_string())
        .env("SSE_PUBLISHER_BIN", harness::publisher_binary())
        .env("SSE_GATEWAY_BIN", env!("CARGO_BIN_EXE_sse-gateway"))
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

    let first: SocketAddr = ([127, 0, 0, 1], gateways[0]).into();
    let second: SocketAddr = ([127, 0, 0, 1], gateways[1]).into();
    let mut client = SseClient::get(first, "/events?topic=orders", &[]).await;
    client.position(PATIENCE).await;
    let publish_to = |port: u16, n: u32| {
        Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-X",
                "POST",
                "-H",
                "Authorization: Bearer dev-token",
            ])
            .args(["-H", "Content-Type: application/json"])
            .args(["-d", &format!(r#"{{"topic":"orders","data":{{"n":{n}}}}}"#)])
            .arg(format!("http://127.0.0.1:{port}/v1/publish"))
            .output()
            .expect("run curl")
    };
    let publish = |n: u32| publish_to(publisher_port, n);
    assert!(publish(1).status.success());
    assert_eq!(client.next_event(PATIENCE).await.data, r#"{"n":1}"#);
    let last_id = client.last_event_id().to_owned();
    drop(client);
    assert!(publish(2).status.success());
    let mut resumed = SseClient::get(
        second,
        "/events?topic=orders",
        &[("Last-Event-ID", &last_id)],
    )
    .await;
    assert_eq!(resumed.next_event(PATIENCE).await.data, r#"{"n":2}"#);

    let proxy: SocketAddr = ([127, 0, 0, 1], nginx_port).into();
    let mut proxied = SseClient::get(proxy, "/events?topic=orders", &[]).await;
    assert_eq!(proxied.status(), 200);
    proxied.position(PATIENCE).await;
    assert!(publish_to(nginx_port, 3).status.success());
    assert_eq!(proxied.next_event(PATIENCE).await.data, r#"{"n":3}"#);
    assert_eq!(resumed.next_event(PATIENCE).await.data, r#"{"n":3}"#);

    Command::new("kill")
        .args(["-TERM", &script.id().to_string()])
        .status()
        .expect("send SIGTERM");
    script.wait().expect("the script exits");
    let ports = [
        redis_port,
        publisher_port,
        gateways[0],
        gateways[1],
        nginx_port,
    ];
    wait_until("every process the script started stops", PATIENCE, || {
        ports
            .iter()
            .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_err())
    });
}
