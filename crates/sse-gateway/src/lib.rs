//! # sse-gateway: the read path
//!
//! A stateless node that serves Server-Sent Events from Redis. Each node subscribes to the
//! topics its own clients want, over one shared pub/sub connection, and fans every event out
//! to them; a client that reconnects to any node with its `Last-Event-ID` gets exactly what it
//! missed from the topic's Redis stream.
//!
//! How a node is put together, one file each:
//!
//! - `server`: accept loop, HTTP/1.1 and h2c; `connection`: what a request knows of its
//!   connection; `routes`: `(method, path)` → handler;
//! - `app`: the state every handler shares; `auth`: subscriber tokens (JWT);
//!   `response`: the body type, plain-text replies;
//!   `error`: every refusal as a status and a sentence;
//! - `events`: `GET /events` → validated request → a stream; `body`: the stream itself;
//!   `takeover`: an HTTP/1.1 stream written straight to its socket, without hyper's buffers;
//! - `hub`: the fan-out table (topic → clients), encoding each event once;
//! - `outbox`: a client's queue, bounded in bytes: a slow client is cut, never waited for;
//! - `pubsub`: the node's one Redis pub/sub connection (one per shard on a Cluster), with gap
//!   filling after outages and slot moves;
//! - `replay_cache`: each topic's recent events in memory, for resumes without Redis;
//! - `history`: reading streams for resuming clients; `shared_reads`: one read per page for
//!   the clients resuming a topic together; `drain`: the shutdown choreography;
//! - `metrics`, [`config`].
//!
//! The modules import each other without a cycle: `server` → `routes` → `events`, which
//! opens a `body` (the stream) from `app` (shared state); `takeover` writes a body to its
//! socket; `response` and `error` sit below the routes, `hub`, `outbox` and `history` below
//! the body.

pub mod config;

mod admin;
mod admission;
mod app;
mod auth;
mod body;
mod client_limits;
mod connection;
mod dev_cert;
mod drain;
mod error;
mod events;
mod fleet_counts;
mod history;
mod hub;
mod metrics;
mod outbox;
mod pipelines;
mod presence;
mod pubsub;
mod replay_cache;
mod response;
mod routes;
mod server;
mod shared_reads;
mod takeover;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

pub use auth::{IssueError, TokenArgs, issue as issue_token};
pub use config::{Config, LogFormat, Switch};
pub use dev_cert::{CertArgs, CertError, Written, write_cert};
pub use sse_core::jwt::{KeyError, PatternError};
use sse_core::runtime::cors::Cors;
pub use sse_core::runtime::cors::CorsError;
use sse_core::runtime::redis::{CheckError, Redis, RedisConfigError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Redis flags cannot work, or Redis is not the kind they name.
    #[error(transparent)]
    Redis(#[from] RedisConfigError),
    /// Streams could end as soon as they open.
    #[error(
        "--max-connection-age-jitter ({jitter:?}) must be less than --max-connection-age ({age:?})"
    )]
    AgeJitter {
        /// The age.
        age: Duration,
        /// The jitter.
        jitter: Duration,
    },
    /// The `--admin-listen` address cannot be bound.
    #[error("cannot listen on --admin-listen {addr}")]
    AdminListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The redis crate refused to build a client.
    #[error("cannot set up the redis client")]
    RedisClient(#[source] redis::RedisError),
    /// The JWT key cannot be read or used.
    #[error("invalid JWT key")]
    Key(#[from] KeyError),
    /// The CORS flags contradict each other.
    #[error(transparent)]
    Cors(#[from] CorsError),
    /// `--auth-url` is not an http(s) URL.
    #[error("the --auth-url {0:?} is not an http:// or https:// URL")]
    AuthUrl(String),
    /// No HTTP client could be built for forward auth.
    #[error("cannot build the HTTP client for --auth-url")]
    HttpClient(#[source] reqwest::Error),
    /// `--presence` without anything that names subscribers.
    #[error(
        "--presence needs subscriber auth (--jwt-secret, --jwt-public-key, --jwks-url or --auth-url) to know who is listening"
    )]
    PresenceWithoutAuth,
}

/// Subscriber checks as `config` asks for them, or `None` when nothing is checked. A JWKS
/// URL's keys are fetched until `stop`.
fn subscriber_auth(
    config: &Config,
    metrics: &Arc<metrics::Metrics>,
    stop: &CancellationToken,
) -> Result<Option<auth::Auth>, StartError> {
    let sources = auth::Sources {
        cookie: config.jwt_cookie.clone(),
        query: config.jwt_query == Switch::On,
    };
    let tokens = config.jwt.tokens(metrics.jwks.clone(), stop)?;
    let forward = match &config.auth_url {
        None => None,
        Some(url) => {
            let parsed = sse_core::runtime::http_client::http_url(url)
                .ok_or_else(|| StartError::AuthUrl(url.clone()))?;
            let client = sse_core::runtime::http_client::build(config.auth_timeout)
                .map_err(StartError::HttpClient)?;
            Some(auth::ForwardAuth::new(
                parsed,
                client,
                config.auth_cache_ttl,
                metrics.clone(),
            ))
        }
    };
    let auth = auth::Auth {
        tokens,
        sources,
        forward,
    };
    Ok(auth.is_on().then_some(auth))
}

/// Serves event streams on `listener` until `shutdown` completes, then drains (ends open
/// streams over `--drain-seconds`) and returns.
///
/// The node starts without waiting for Redis: until the pub/sub connection is up, `/readyz`
/// fails and new streams wait for their subscriptions.
///
/// # Errors
/// [`StartError`] if the configuration cannot work.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let metrics = Arc::new(metrics::Metrics::new());
    let stopping = CancellationToken::new();
    let auth = subscriber_auth(&config, &metrics, &stopping)?;
    let cors = Cors::new(
        &config.cors_origins,
        config.cors_credentials,
        "GET, OPTIONS",
        // A resume position, a token, and what fetch-based clients send.
        "Last-Event-ID, Authorization, Content-Type, Cache-Control, Accept",
        metrics.cors_rejected.clone(),
    )?;
    let max_age = match config.max_connection_age {
        None => None,
        Some(age) => {
            let jitter = config.max_connection_age_jitter.unwrap_or(age / 10);
            if jitter >= age {
                return Err(StartError::AgeJitter { age, jitter });
            }
            Some(app::Band {
                least: age - jitter,
                spread: jitter,
            })
        }
    };
    let admin = match config.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::AdminListen { addr, source })?,
        ),
        None => None,
    };
    let redis = Redis::from_flags(&config.redis)?;
    let commands = redis.commands().map_err(StartError::RedisClient)?;
    // A connection of its own: whatever happens to the count writes (a master that died,
    // a slot that moved) never delays a resume's or a gap fill's reads.
    let count_writes = redis.commands().map_err(StartError::RedisClient)?;
    match redis.check_mode().await {
        Err(CheckError::Mismatch(error)) => return Err(error.into()),
        Err(CheckError::Unreachable(_)) => {
            tracing::warn!("redis does not answer yet; the node starts and keeps trying");
        }
        Ok(()) => {}
    }
    let history = history::History::new(
        commands,
        config.replay_page as usize,
        metrics.messages_invalid.clone(),
    );
    let cache = replay_cache::CacheLimits {
        events: config.replay_cache_events,
        bytes: usize::try_from(config.replay_cache_bytes.as_u64()).unwrap_or(usize::MAX),
        total_bytes: usize::try_from(config.replay_cache_total_bytes.as_u64())
            .unwrap_or(usize::MAX),
    };
    let (hub, link_commands) = hub::Hub::new(metrics.clone(), cache, config.replay_cache_linger);
    let redis_connected = Arc::new(AtomicBool::new(false));

    let link = tokio::spawn(
        pubsub::PubSubLink {
            redis: redis.clone(),
            hub: hub.clone(),
            history: history.clone(),
            commands: link_commands,
            metrics: metrics.clone(),
            connected: redis_connected.clone(),
            timeout: redis.timeout(),
            shutdown: stopping.clone(),
        }
        .run(),
    );
    tokio::spawn(heartbeats(hub.clone(), config.heartbeat, stopping.clone()));
    tokio::spawn(hub.clone().sweep_lingering(stopping.clone()));
    let node = config
        .node_id
        .clone()
        .unwrap_or_else(fleet_counts::random_node_id);
    let presence = if config.presence {
        if auth.is_none() {
            return Err(StartError::PresenceWithoutAuth);
        }
        let presence = Arc::new(presence::Presence::default());
        let writer = presence::PresenceWriter {
            presence: presence.clone(),
            redis: count_writes.clone(),
            node: node.clone(),
            grace: config.presence_grace,
            refresh: config.count_refresh,
            timeout: redis.timeout(),
            writes: metrics.presence_writes.clone(),
            events: metrics.presence_events.clone(),
        };
        tokio::spawn(writer.run(stopping.clone()));
        Some(presence)
    } else {
        None
    };
    let counts = fleet_counts::FleetCounts {
        hub: hub.clone(),
        redis: count_writes,
        node,
        refresh: config.count_refresh,
        timeout: redis.timeout(),
        refreshes: metrics.count_refreshes.clone(),
    };
    let counts = tokio::spawn(counts.run(stopping.clone()));

    let app = Arc::new(app::App {
        hub,
        reads: shared_reads::SharedReads::new(
            match config.max_concurrent_replays {
                Some(max) => history.limited(Arc::new(history::ReplayTurns::new(
                    max.get(),
                    metrics.replays_waiting.clone(),
                ))),
                None => history,
            },
            metrics.replay_reads_coalesced.clone(),
        ),
        metrics,
        limits: app::Limits {
            max_topics: config.max_topics as usize,
            max_streams: config.max_connections,
            client_buffer: usize::try_from(config.client_buffer.as_u64()).unwrap_or(usize::MAX),
            retry: app::Band {
                least: Duration::from_millis(config.retry_ms),
                spread: config.retry_jitter,
            },
            max_age,
        },
        open_streams: Arc::new(AtomicUsize::new(0)),
        drain: drain::Drain::default(),
        redis_connected,
        cors,
        auth,
        client_limits: Arc::new(client_limits::ClientLimits::new(
            config.max_connections_per_ip,
            config.max_connections_per_user,
            config.trusted_proxies.clone(),
        )),
        admission: config.accept_rate.map(admission::Admission::new),
        presence,
    });
    tracing::info!(addr = ?listener.local_addr().ok(), "sse-gateway listening");
    let drain_over = Duration::from_secs(config.drain_seconds);
    let limits = server::ConnectionLimits {
        http: sse_core::runtime::connection::ConnectionLimits {
            header_timeout: config.header_timeout,
            max_header_size: usize::try_from(config.max_header_size.as_u64()).unwrap_or(usize::MAX),
            h2_keep_alive: Some(config.heartbeat),
        },
        dead_peer_timeout: (config.heartbeat * 2).max(Duration::from_secs(10)),
        send_buffer: match config.send_buffer.as_u64() {
            0 => None,
            bytes => Some(usize::try_from(bytes).unwrap_or(usize::MAX)),
        },
    };
    if let Some(admin) = admin {
        tracing::info!(addr = ?admin.local_addr().ok(), "admin listener: /healthz, /readyz, /metrics");
        tokio::spawn(admin::serve(
            admin,
            app.clone(),
            limits.http,
            stopping.clone(),
        ));
    }
    server::serve(
        listener,
        app,
        shutdown,
        limits,
        drain_over,
        Duration::from_secs(5),
    )
    .await;
    stopping.cancel();
    let _ = link.await;
    let _ = counts.await;
    Ok(())
}

/// The one heartbeat timer of the node: every `period`, each stream that wrote nothing since
/// the last tick gets a heartbeat comment.
pub(crate) async fn heartbeats(hub: Arc<hub::Hub>, period: Duration, stopping: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            _ = tick.tick() => {
                for outbox in hub.outboxes() {
                    outbox.tick();
                }
            }
        }
    }
}
