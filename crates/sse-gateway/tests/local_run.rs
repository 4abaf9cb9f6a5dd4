//! `deploy/local/run.sh`, the README's "run" command: it starts Redis, the publisher, two
//! gateways and nginx with the project's config; a stream opened on one gateway receives what is
//! published over HTTP and resumes on the other; through nginx, a stream receives an event
//! published through nginx (a buffering proxy would hold it back and fail the test); stopping
//! the script stops exactly what it started. Without nginx on the `PATH`, the script says so,
//! with the package to install, and runs the rest.

mod harness;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use sse_testkit::SseClient;

const PATIENCE: Duration = Duration::from_secs(15);

/// Publishes `{"n":<n>}` on `orders` with curl through `port`, as the README shows.
fn publish_to(port: u16, n: u32) -> std::process::Output {
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
}

/// A stream on the script's first gateway receives an event published over HTTP; gone, it
/// resumes on the second and gets the one published meanwhile. Returns that stream.
async fn resumes_on_the_other_gateway(cluster: &harness::local_cluster::LocalCluster) -> SseClient {
    let gateways = cluster.gateway_ports;
    let first: SocketAddr = ([127, 0, 0, 1], gateways[0]).into();
    let second: SocketAddr = ([127, 0, 0, 1], gateways[1]).into();
    let mut client = SseClient::get(first, "/events?topic=orders", &[]).await;
    client.position(PATIENCE).await;
    assert!(publish_to(cluster.publisher_port, 1).status.success());
    assert_eq!(client.next_event(PATIENCE).await.data, r#"{"n":1}"#);
    let last_id = client.last_event_id().to_owned();
    drop(client);
    assert!(publish_to(cluster.publisher_port, 2).status.success());
    let mut resumed = SseClient::get(
        second,
        "/events?topic=orders",
        &[("Last-Event-ID", &last_id)],
    )
    .await;
    assert_eq!(resumed.next_event(PATIENCE).await.data, r#"{"n":2}"#);
    resumed
}

#[tokio::test]
async fn run_script_serves_resumes_across_gateways_and_stops_what_it_started() {
    let mut cluster = harness::local_cluster::LocalCluster::start();
    let nginx_port = cluster.nginx_port;
    let mut resumed = resumes_on_the_other_gateway(&cluster).await;

    let proxy: SocketAddr = ([127, 0, 0, 1], nginx_port).into();
    let mut proxied = SseClient::get(proxy, "/events?topic=orders", &[]).await;
    assert_eq!(proxied.status(), 200);
    proxied.position(PATIENCE).await;
    assert!(publish_to(nginx_port, 3).status.success());
    assert_eq!(proxied.next_event(PATIENCE).await.data, r#"{"n":3}"#);
    assert_eq!(resumed.next_event(PATIENCE).await.data, r#"{"n":3}"#);

    cluster.stop();
}

#[tokio::test]
async fn without_nginx_the_script_says_so_and_runs_the_rest() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let without_nginx: Vec<_> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("nginx").exists())
        .collect();
    let path = std::env::join_paths(without_nginx).expect("a PATH");
    let path = path.to_str().expect("a UTF-8 PATH");
    let mut cluster = harness::local_cluster::LocalCluster::start_with(&[("PATH", path)]);
    sse_testkit::wait_until("the script says nginx is missing", PATIENCE, || {
        cluster
            .complaints()
            .contains("apt-get install -y nginx-light")
    });
    let complaints = cluster.complaints();
    assert!(
        complaints.contains("nginx is not installed, so it was NOT started"),
        "{complaints}"
    );
    assert!(
        !cluster.said.contains("nginx         on"),
        "no nginx URL is printed:\n{}",
        cluster.said
    );
    let gateway: SocketAddr = ([127, 0, 0, 1], cluster.gateway_ports[0]).into();
    assert_eq!(
        sse_testkit::http_status(gateway, "/readyz", PATIENCE).await,
        Some(200),
        "the gateways run without nginx"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", cluster.nginx_port)).is_err(),
        "nothing listens on the nginx port"
    );
    cluster.stop();
}

#[tokio::test]
async fn with_redis_cluster_the_script_runs_a_cluster_and_serves_and_resumes_on_it() {
    let ports: Vec<String> = (0..12)
        .map(|_| sse_testkit::free_port().to_string())
        .collect();
    let mut cluster = harness::local_cluster::LocalCluster::start_with(&[
        ("REDIS_CLUSTER", "on"),
        ("CLUSTER_PORTS", &ports[..6].join(" ")),
        ("CLUSTER_BUS_PORTS", &ports[6..].join(" ")),
        ("NGINX", "off"),
    ]);
    assert!(
        cluster
            .said
            .contains("redis cluster: 3 masters and 3 replicas"),
        "{}",
        cluster.said
    );
    let mut node = redis::Client::open(format!("redis://127.0.0.1:{}", ports[0]))
        .expect("a valid url")
        .get_connection()
        .expect("a cluster node answers");
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut node)
        .expect("CLUSTER INFO");
    assert!(info.contains("cluster_state:ok"), "{info}");

    resumes_on_the_other_gateway(&cluster).await;
    cluster.stop();
}
