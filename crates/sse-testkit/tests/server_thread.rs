//! Tests of `ServerThread`: the address is bound before `start` returns, `stop` and dropping
//! both shut the server down and wait for it, and a panic of the server fails the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sse_testkit::{ServerThread, send_raw};
use tokio::io::AsyncWriteExt;

/// Bounds a hang of a read; asserts nothing about speed.
const PATIENCE: Duration = Duration::from_secs(15);

/// Answers every connection with `reply` and closes it, until shut down; returns how many
/// connections it served.
fn start_replying(reply: &'static [u8]) -> ServerThread<usize> {
    ServerThread::start("replier", move |listener, shutdown| async move {
        tokio::pin!(shutdown);
        let mut served = 0;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (mut socket, _) = accepted.expect("accept");
                    socket.write_all(reply).await.expect("reply");
                    served += 1;
                }
                () = &mut shutdown => return served,
            }
        }
    })
}

#[test]
fn a_client_can_connect_at_once_and_stop_returns_what_the_server_returned() {
    let server = start_replying(b"hello");
    let addr = server.addr();
    assert_eq!(send_raw(addr, b"", PATIENCE), b"hello");
    assert_eq!(send_raw(addr, b"", PATIENCE), b"hello");
    assert_eq!(server.stop(), 2);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is closed once stop returned"
    );
}

#[test]
fn dropping_it_shuts_the_server_down_and_waits_for_it() {
    let finished = Arc::new(AtomicBool::new(false));
    let server = ServerThread::start("waiter", {
        let finished = finished.clone();
        move |_listener, shutdown| async move {
            shutdown.await;
            finished.store(true, Ordering::SeqCst);
        }
    });
    drop(server);
    assert!(
        finished.load(Ordering::SeqCst),
        "drop returned before the server did"
    );
}

#[test]
#[should_panic(expected = "the server broke")]
fn stop_raises_the_servers_panic() {
    let server = ServerThread::start("breaker", |_listener, shutdown| async move {
        shutdown.await;
        panic!("the server broke");
    });
    server.stop();
}

#[test]
fn detach_asks_the_server_to_shut_down_without_waiting() {
    let (finished, finished_received) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let server = ServerThread::start("slow", move |_listener, shutdown| async move {
        shutdown.await;
        // A shutdown that lasts until the test releases it.
        let _ = released.recv();
        let _ = finished.send(());
    });
    let (detached, detached_received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.detach();
        let _ = detached.send(());
    });
    detached_received
        .recv_timeout(PATIENCE)
        .expect("detach returns while the server is still shutting down");
    release.send(()).expect("the server waits for the release");
    finished_received
        .recv_timeout(PATIENCE)
        .expect("the detached server finishes its shutdown");
}
