//! `docker compose up`, proven: `deploy/compose/smoke.sh up` builds stand-in base images from
//! Debian's packages, the project's image with its own Dockerfile, and starts the project's own
//! docker-compose.yml (Grafana left out by `smoke.override.yml`). Then, through nginx's
//! published ports on 127.0.0.1, as a user would:
//! - an event published is received, over HTTP/1.1 and over TLS with HTTP/2;
//! - a gateway container killed (`docker kill`) under a client: the client resumes on another
//!   gateway with nothing lost or repeated;
//! - a gateway stopped (`docker-compose stop`: SIGTERM, the drain): its streams are ended by the
//!   node, not cut, and resume elsewhere exactly;
//! - Prometheus scrapes every target and evaluates every alert rule;
//! - Redis restarted keeps the history (AOF on its volume);
//! - `smoke.sh down` (`docker-compose down -v`) leaves no container, volume or network behind.
//!
//! Needs root (it may start dockerd, and runs debootstrap); about 8 minutes from a cold machine
//! (the image's release build is most of it), under a minute once the images exist.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sse_testkit::{Next, SseClient, eventually};

const PATIENCE: Duration = Duration::from_secs(60);
const NGINX: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8000);
const GATEWAYS: [&str; 3] = ["gateway-1", "gateway-2", "gateway-3"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// Runs `program args` in the repository root and returns its stdout; fails the test if it
/// fails.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `deploy/compose/smoke.sh args`.
fn smoke(args: &[&str]) -> String {
    let mut all = vec!["deploy/compose/smoke.sh"];
    all.extend_from_slice(args);
    run("bash", &all)
}

/// A container of the smoke project, by service name.
fn container(service: &str) -> String {
    let id = smoke(&["compose", "ps", "-q", service]);
    let id = id.trim();
    assert!(!id.is_empty(), "no container for {service}");
    id.to_owned()
}

/// `docker args`, which must succeed; its stdout.
fn docker(args: &[&str]) -> String {
    run("docker", args)
}

/// `curl args` on this machine (nginx's and Prometheus's published ports); its stdout.
fn curl(args: &[&str]) -> String {
    let mut all = vec!["-fsS", "--max-time", "10"];
    all.extend_from_slice(args);
    run("curl", &all)
}

/// Publishes `data` on `topic` through nginx; the event id.
fn publish(topic: &str, data: &str) -> String {
    let body = format!(r#"{{"topic":"{topic}","data":"{data}"}}"#);
    let reply = curl(&[
        "-X",
        "POST",
        "http://127.0.0.1:8000/v1/publish",
        "-H",
        "Authorization: Bearer dev-token",
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
    ]);
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("a JSON reply");
    reply["id"].as_str().expect("an id").to_owned()
}

/// Streams the gateway behind `service` holds now (its /metrics, asked from nginx's container,
/// which is on the compose network).
fn streams_on(service: &str) -> u64 {
    let url = format!("http://{service}:9091/metrics");
    let metrics = docker(&["exec", &container("nginx"), "curl", "-fsS", &url]);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("sse_connections_active "))
        .and_then(|value| value.trim().parse().ok())
        .expect("sse_connections_active")
}

/// Whether the gateway behind `service` answers `/readyz` with 200 (connected to Redis).
fn ready(service: &str) -> bool {
    let url = format!("http://{service}:9091/readyz");
    Command::new("docker")
        .args([
            "exec",
            &container("nginx"),
            "curl",
            "-fsS",
            "-o",
            "/dev/null",
            &url,
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A stream through nginx on `topic`, from `last_event_id` when given, open and positioned.
async fn stream(topic: &str, last_event_id: Option<&str>) -> SseClient {
    let path = format!("/events?topic={topic}");
    let headers: Vec<(&str, &str)> = last_event_id
        .map(|id| ("Last-Event-ID", id))
        .into_iter()
        .collect();
    let mut client = SseClient::get(NGINX, &path, &headers).await;
    assert_eq!(client.status(), 200, "{}", client.text().await);
    client.position(PATIENCE).await;
    client
}

/// Reads `client` until it got `expected` (data, in order) or its stream ended; what it got,
/// and its last event id.
async fn read_until_end(client: &mut SseClient, expected: usize) -> (Vec<String>, Option<String>) {
    let mut data = Vec::new();
    let mut last = None;
    while data.len() < expected {
        match client.next(PATIENCE).await {
            Next::Item(sse_core::parser::Item::Event(event)) => {
                data.push(event.data);
                last = Some(event.last_event_id);
            }
            Next::Item(_) => {}
            Next::Closed => break,
            Next::Timeout => panic!("nothing within {PATIENCE:?}; got {data:?}"),
        }
    }
    (data, last)
}

/// The gateway holding exactly the one stream this test has open.
async fn serving(services: &[&'static str]) -> &'static str {
    eventually("one gateway holds the stream", PATIENCE, || async {
        let holding: Vec<&str> = services
            .iter()
            .copied()
            .filter(|service| streams_on(service) == 1)
            .collect();
        (holding.len() == 1).then(|| holding[0])
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "e2e"),
    ignore = "needs root and docker: tests/run.sh (or --features sse-gateway/e2e)"
)]
async fn docker_compose_up_serves_fails_over_drains_monitors_persists_and_leaves_nothing() {
    smoke(&["up"]);
    let outcome = tokio::spawn(checks()).await;
    smoke(&["down"]);
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

async fn checks() {
    // Published and received, over HTTP/1.1 and over TLS with HTTP/2.
    let mut client = stream("smoke", None).await;
    let first = publish("smoke", "hello");
    let event = client.next_event(PATIENCE).await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("hello", first.as_str())
    );
    drop(client);
    let h2 = curl(&[
        "-k",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        "https://127.0.0.1:8443/nginx-health",
    ]);
    assert_eq!(h2, "2", "nginx's TLS port speaks HTTP/2");

    // A gateway killed under a client: the client resumes on another, exactly.
    let mut client = stream("failover", None).await;
    let victim = serving(&GATEWAYS).await;
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(n.to_string());
        publish("failover", &n.to_string());
    }
    let (mut got, mut last) = read_until_end(&mut client, 5).await;
    docker(&["kill", &container(victim)]);
    for n in 5..10 {
        published.push(n.to_string());
        publish("failover", &n.to_string());
    }
    let (more, _) = read_until_end(&mut client, 5).await;
    assert!(
        more.is_empty(),
        "the stream of a killed gateway ends: {more:?}"
    );
    let mut resumed = stream("failover", last.as_deref()).await;
    let (rest, _) = read_until_end(&mut resumed, 5).await;
    got.extend(rest);
    assert_eq!(
        got, published,
        "nothing lost or repeated across the kill of {victim}"
    );
    drop(resumed);
    // Docker does not restart a container killed by hand: start it as an operator would.
    smoke(&["compose", "start", victim]);
    eventually("the killed gateway is back", PATIENCE, || async {
        docker(&[
            "inspect",
            "-f",
            "{{.State.Health.Status}}",
            &container(victim),
        ])
        .trim()
        .eq("healthy")
        .then_some(())
    })
    .await;

    // A gateway stopped: its stream is ended by the node (drained), then resumes elsewhere.
    let mut client = stream("drain", None).await;
    let drained = serving(&GATEWAYS).await;
    let before = publish("drain", "before");
    let (got_before, _) = read_until_end(&mut client, 1).await;
    assert_eq!(got_before, ["before"]);
    smoke(&["compose", "stop", drained]);
    let (after, _) = read_until_end(&mut client, 1).await;
    assert!(after.is_empty(), "the drained stream ended");
    publish("drain", "after");
    let mut resumed = stream("drain", Some(&before)).await;
    let (got_after, last_after) = read_until_end(&mut resumed, 1).await;
    assert_eq!(got_after, ["after"]);
    last = last_after;
    let logs = docker(&["logs", &container(drained)]);
    assert!(
        logs.contains("draining: ending open streams") && logs.contains(r#""streams":1"#),
        "the node drained its stream:\n{logs}"
    );
    smoke(&["compose", "start", drained]);
    drop(resumed);

    // Prometheus scrapes every target and evaluates the alert rules.
    eventually("every target is up", PATIENCE, || async {
        let targets = curl(&["http://127.0.0.1:9090/api/v1/targets"]);
        let targets: serde_json::Value = serde_json::from_str(&targets).ok()?;
        let active = targets["data"]["activeTargets"].as_array()?;
        let up = active.iter().filter(|t| t["health"] == "up").count();
        (active.len() == 5 && up == 5).then_some(())
    })
    .await;
    let rules = curl(&["http://127.0.0.1:9090/api/v1/rules?type=alert"]);
    let rules: serde_json::Value = serde_json::from_str(&rules).expect("rules as JSON");
    let alerts: usize = rules["data"]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .map(|group| group["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(alerts >= 10, "the alert rules are loaded: {rules}");
    eventually("every alert rule evaluated", PATIENCE, || async {
        let rules = curl(&["http://127.0.0.1:9090/api/v1/rules?type=alert"]);
        let rules: serde_json::Value = serde_json::from_str(&rules).ok()?;
        let evaluated = rules["data"]["groups"].as_array()?.iter().all(|group| {
            group["rules"].as_array().is_some_and(|rules| {
                rules.iter().all(|rule| {
                    rule["health"] == "ok"
                        && rule["lastEvaluation"]
                            .as_str()
                            .is_some_and(|at| !at.starts_with("0001"))
                })
            })
        });
        evaluated.then_some(())
    })
    .await;

    // Redis restarted keeps the history: the AOF is on its volume.
    smoke(&["compose", "restart", "redis"]);
    eventually("the gateways are back on Redis", PATIENCE, || async {
        GATEWAYS.iter().all(|service| ready(service)).then_some(())
    })
    .await;
    let mut replay = eventually("a stream after the restart", PATIENCE, || async {
        let client = SseClient::try_get(NGINX, "/events?topic=drain", &[("Last-Event-ID", "0-0")])
            .await
            .ok()?;
        (client.status() == 200).then_some(client)
    })
    .await;
    let (history, replayed_last) = read_until_end(&mut replay, 2).await;
    assert_eq!(
        history,
        ["before", "after"],
        "the history survived the restart"
    );
    assert_eq!(replayed_last, last);
}
