//! Test support for the SSE gateway: a real `redis-server` that one test owns, and
//! [`SseClient`], an event-stream client that reads what a browser would.
//!
//! Tests of this workspace never talk to a Redis they did not start (in particular not the one that may
//! run on `127.0.0.1:6379`). Each test starts its own [`RedisServer`] on a free port, in its own
//! temporary directory, and can kill and restart it to exercise "Redis lost" and "Redis back" paths.
//!
//! This crate is dev-only: it panics instead of returning errors, because every failure here is a
//! failed test, and the panic message says what went wrong (including the tail of `redis.log`).
//! It does not manage clusters, replicas or TLS, and it needs `redis-server` on `PATH`.

mod redis_server;
mod sse_client;

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

pub use redis_server::RedisServer;
pub use sse_client::{Next, Protocol, SseClient};

/// How long [`wait_until`] sleeps between two checks of its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Returns a TCP port on `127.0.0.1` that was free a moment ago.
///
/// Binds `127.0.0.1:0`, reads the port the kernel chose and drops the listener. Another process may
/// take the port before the caller binds it; [`RedisServer::start`] retries with a new port when that
/// happens.
///
/// # Panics
///
/// If no port can be bound on `127.0.0.1`.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("a bound listener has a local address")
        .port()
}

/// Calls `cond` every ~10 ms until it returns `true`.
///
/// `cond` is always called at least once, and once more after the deadline, so a condition that holds
/// by then passes even on a slow machine.
///
/// # Panics
///
/// If `cond` is still `false` after `timeout`; the message names `what`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        // Read the clock before `cond`, so the last call of `cond` happens after the deadline.
        let expired = Instant::now() >= deadline;
        if cond() {
            return;
        }
        if expired {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}
