//! `--admin-listen`: the probes (`/healthz`, `/readyz`, `/metrics`) on an address of their own,
//! answering exactly as on the main address, nothing else there, and still answering through
//! a drain, after the main listener has closed.

mod harness;

use std::net::{SocketAddr, TcpListener, TcpStream};

use harness::{PATIENCE, raw_request, start_gateway};
use sse_testkit::{RedisServer, eventually, free_port, status_of};

fn get(addr: SocketAddr, path: &str) -> String {
    raw_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"),
    )
}

fn status(response: &str) -> Option<u16> {
    status_of(response.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_address_serves_the_probes_and_nothing_else() {
    let redis = RedisServer::start();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    let gateway = start_gateway(
        &redis,
        &["--admin-listen", &admin.to_string(), "--drain-seconds", "5"],
    );
    eventually("the node is ready", PATIENCE, || async {
        let listening = TcpStream::connect(admin).is_ok();
        (listening && status(&get(admin, "/readyz")) == Some(200)).then_some(())
    })
    .await;
    assert!(get(admin, "/healthz").ends_with("\r\n\r\nok\n"));
    assert!(get(admin, "/readyz").ends_with("\r\n\r\nready\n"));
    let metrics = get(admin, "/metrics");
    assert_eq!(status(&metrics), Some(200));
    assert!(metrics.contains("sse_connections_active"), "{metrics}");
    // The same probes on the main address still.
    assert_eq!(gateway.fetch("/readyz").await.0, 200);

    // No event streams, no other route; probes only take GET.
    let events = get(admin, "/events?topic=orders");
    assert_eq!(status(&events), Some(404), "{events}");
    let post = raw_request(
        admin,
        "POST /readyz HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&post), Some(405), "{post}");

    // Draining: the main listener is closed, the admin one says why the node is not ready.
    // Streams end spread over the 5 s drain, the first at once: the last of ten keeps the
    // node draining for 4.5 s.
    let mut gateway = gateway;
    let mut streams = Vec::new();
    for _ in 0..10 {
        streams.push(gateway.subscribe(&["orders"]).await);
    }
    gateway.begin_shutdown();
    eventually("the main listener closed", PATIENCE, || async {
        TcpStream::connect(gateway.addr).is_err().then_some(())
    })
    .await;
    let draining = get(admin, "/readyz");
    assert_eq!(status(&draining), Some(503), "{draining}");
    assert!(draining.ends_with("draining\n"), "{draining}");
    assert_eq!(status(&get(admin, "/healthz")), Some(200));
    drop(streams);
}

#[test]
fn an_admin_address_in_use_fails_at_startup_and_names_the_flag() {
    let redis = RedisServer::start();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let error = start_gateway(&redis, &["--admin-listen", &addr])
        .stop()
        .expect_err("the port is taken");
    let message = sse_core::ErrorChain(&error).to_string();
    assert!(
        message.starts_with(&format!("cannot listen on --admin-listen {addr}: ")),
        "{message}"
    );
}
