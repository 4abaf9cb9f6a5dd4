//! A client that vanishes without a FIN (a laptop closed, a phone off the network) is found
//! and freed. Loopback cannot stop acknowledging, so the client runs in a network namespace the
//! test creates, joined to this one by a veth pair of its own; taking the namespace's end of the
//! pair down makes the client vanish mid-stream: its socket stays open, and nothing sent to it
//! is acknowledged any more.
//!
//! Talking to the gateway directly, the client is given up after two heartbeats (at least
//! 10 s: `TCP_USER_TIMEOUT`), counted in `sse_dead_peer_disconnects_total`, and the stream is
//! freed. Behind nginx, the gateway's peer is nginx, which goes on acknowledging for the
//! vanished client: the stream stays open until `--max-connection-age` ends it.
//!
//! Needs root (`ip netns`, `ip link`) and curl, which is the client inside the namespace. Each
//! test removes the namespace and the pair it made; traffic flows only between the pair's two
//! addresses.

mod harness;

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use harness::{PATIENCE, metric_at, publish, publisher};
use sse_testkit::{RedisServer, eventually};

/// Heartbeat period the gateways run with here: its dead-peer timeout is then the 10 s floor.
const HEARTBEAT: &str = "1s";
/// How long after the link goes down a gateway may take to free the stream: 10 s of
/// `TCP_USER_TIMEOUT` after the first unacknowledged heartbeat, and room for a loaded machine.
/// Without the timeout, Linux retransmits for about 15 minutes.
const FREED_WITHIN: Duration = Duration::from_secs(60);

/// A network namespace joined to this one by a veth pair, with one address at each end.
struct IsolatedHost {
    namespace: String,
    host_link: String,
    client_link: String,
    /// This namespace's end: where servers listen for the isolated client.
    host_ip: Ipv4Addr,
    client_ip: Ipv4Addr,
    clients: Vec<Child>,
}

impl IsolatedHost {
    /// The namespace and pair numbered `n` (distinct per test of this process), in
    /// `10.213.0.0/16`, on a /30 of their own.
    fn create(n: u8) -> Self {
        let pid = std::process::id();
        let subnet = u8::try_from(pid % 250).unwrap_or(0);
        let host = Self {
            namespace: format!("sse-vanish-{pid}-{n}"),
            host_link: format!("svh{}x{n}", pid % 100_000),
            client_link: format!("svc{}x{n}", pid % 100_000),
            host_ip: Ipv4Addr::new(10, 213, subnet, n * 4 + 1),
            client_ip: Ipv4Addr::new(10, 213, subnet, n * 4 + 2),
            clients: Vec::new(),
        };
        // From here on, `drop` removes whatever part was made.
        let (ns, host_link, client_link) = (&host.namespace, &host.host_link, &host.client_link);
        ip(&["netns", "add", ns]);
        ip(&[
            "link",
            "add",
            host_link,
            "type",
            "veth",
            "peer",
            "name",
            client_link,
            "netns",
            ns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", host.host_ip),
            "dev",
            host_link,
        ]);
        ip(&["link", "set", host_link, "up"]);
        let client_addr = format!("{}/30", host.client_ip);
        ip(&["-n", ns, "addr", "add", &client_addr, "dev", client_link]);
        ip(&["-n", ns, "link", "set", client_link, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        host
    }

    /// Opens `url` from inside the namespace with curl; what it receives collects in the
    /// returned buffer.
    fn open_stream(&mut self, url: &str) -> Arc<Mutex<String>> {
        let mut curl = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .args(["curl", "-sS", "-N", "--max-time", "600", url])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run curl in the namespace");
        let mut stdout = curl.stdout.take().expect("piped stdout");
        self.clients.push(curl);
        let received = Arc::new(Mutex::new(String::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(read @ 1..) = stdout.read(&mut chunk) {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&chunk[..read]));
            }
        });
        received
    }

    /// Takes the namespace's end of the pair down: its clients vanish without a word.
    fn vanish(&self) {
        ip(&[
            "-n",
            &self.namespace,
            "link",
            "set",
            &self.client_link,
            "down",
        ]);
    }
}

impl Drop for IsolatedHost {
    fn drop(&mut self) {
        for client in &mut self.clients {
            let _ = client.kill();
            let _ = client.wait();
        }
        // Removing the namespace removes its end of the pair, and with it the other end; the
        // second command matters only when the namespace was never made.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `ip args`, failing the test with what it said when it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {} (this test needs root)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Waits until the stream collecting in `received` has its first position: it is live.
async fn until_live(received: &Mutex<String>) {
    eventually("the isolated client's stream is live", PATIENCE, || async {
        let text = received.lock().unwrap_or_else(PoisonError::into_inner);
        text.contains("\nid: ").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_vanishes_is_freed_after_two_heartbeats_and_counted() {
    let mut isolated = IsolatedHost::create(0);
    let redis = RedisServer::start();
    let url = redis.url();
    let gateway = harness::start_gateway_on(
        isolated.host_ip.into(),
        &["--redis-url", &url, "--heartbeat", HEARTBEAT],
    );
    let received = isolated.open_stream(&format!("http://{}/events?topic=laptops", gateway.addr));
    until_live(&received).await;
    let mut bystander = gateway.subscribe(&["laptops"]).await;
    assert_eq!(gateway.metric("sse_connections_active").await, 2);
    assert_eq!(gateway.metric("sse_dead_peer_disconnects_total").await, 0);

    isolated.vanish();
    let vanished = Instant::now();
    eventually(
        "the gateway frees the vanished client's stream",
        FREED_WITHIN,
        || async { (gateway.metric("sse_connections_active").await == 1).then_some(()) },
    )
    .await;
    let freed_after = vanished.elapsed();
    eprintln!("the vanished client's stream was freed {freed_after:?} after its link went down");
    assert_eq!(
        gateway.metric("sse_dead_peer_disconnects_total").await,
        1,
        "the stream freed {freed_after:?} after the link went down is counted as a vanished client"
    );
    assert!(
        freed_after >= Duration::from_secs(10),
        "freed after {freed_after:?}: before the dead-peer timeout, so not for vanishing"
    );

    let publisher = publisher(&redis).await;
    let id = publish(&publisher, "laptops", None, "still here").await;
    let event = bystander.next_event(PATIENCE).await;
    assert_eq!(
        (event.last_event_id.as_str(), event.data.as_str()),
        (id.as_str(), "still here"),
        "the other client on the topic is untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_nginx_the_connection_age_frees_what_nginx_keeps_open() {
    let mut isolated = IsolatedHost::create(1);
    let host_ip = isolated.host_ip.to_string();
    let cluster = harness::local_cluster::LocalCluster::start_with(&[
        ("NGINX_HOST", host_ip.as_str()),
        ("SSE_HEARTBEAT", HEARTBEAT),
        ("SSE_MAX_CONNECTION_AGE", "40s"),
        ("SSE_MAX_CONNECTION_AGE_JITTER", "0s"),
    ]);
    let gateways = cluster
        .gateway_ports
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
    let open_streams = || async {
        let mut open = 0;
        for gateway in gateways {
            open += metric_at(gateway, "sse_connections_active").await;
        }
        open
    };
    let received = isolated.open_stream(&format!(
        "http://{host_ip}:{}/events?topic=phones",
        cluster.nginx_port
    ));
    until_live(&received).await;
    assert_eq!(open_streams().await, 1);

    isolated.vanish();
    let vanished = Instant::now();
    // Two heartbeats and the 10 s dead-peer timeout, and then some: a gateway talking to the
    // client directly would have freed it by now.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        open_streams().await,
        1,
        "nginx acknowledges for the vanished client, so its stream is still open"
    );
    eventually(
        "--max-connection-age ends the stream nginx keeps open",
        Duration::from_secs(40) + PATIENCE,
        || async { (open_streams().await == 0).then_some(()) },
    )
    .await;
    let freed_after = vanished.elapsed();
    eprintln!("the stream nginx kept open was freed {freed_after:?} after the link went down");
    for gateway in gateways {
        assert_eq!(
            metric_at(gateway, "sse_dead_peer_disconnects_total").await,
            0,
            "freed {freed_after:?} after the link went down, by its age: nginx never vanished"
        );
    }
}
