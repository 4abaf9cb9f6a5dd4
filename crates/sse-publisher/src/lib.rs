//! # sse-publisher: the write path
//!
//! Publishes events into Redis so that every `sse-gateway` node delivers them: each event is
//! appended to its topic's stream (the history clients resume from) and announced on its
//! channel (the live path) in one atomic call. See `sse_core::schema` for the contract.
//!
//! As a library, [`Publisher`] publishes from Rust code. As a service ([`run`], the
//! `sse-publisher` binary), it serves:
//!
//! - `POST /v1/publish`: `{"topic", "data", "event"?}` or an array of them, → `201`; with an
//!   `Idempotency-Key` header, at most once per key (a repeat → `200`, the same ids);
//! - `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! Modules: [`publisher`] (Redis), `coalesce` (group commit of single events), `request` (JSON → events), `http` (routes, auth,
//! errors), `server` (accept loop, graceful shutdown), `metrics`, [`config`].

mod coalesce;
pub mod config;
mod http;
mod metrics;
pub mod publisher;
mod request;
mod server;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use config::{Config, ConfigError, LogFormat};
pub use publisher::{
    DEFAULT_IDEMPOTENCY_WINDOW, Outcome, Present, PublishError, Publisher, TopicInfo,
};
use sse_core::jwt;
use sse_core::runtime::cors::Cors;
pub use sse_core::runtime::redis::RedisFlags;
use sse_core::schema::Retention;
use tokio::net::TcpListener;

/// Serves the publish API on `listener` until `shutdown` completes, then finishes in-flight
/// requests (for at most `--shutdown-timeout`) and returns.
///
/// # Errors
/// [`StartError`] if `config` cannot work, or if the Redis URL is invalid.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    config.validate()?;
    let retention = Retention {
        max_len: config.retention,
        max_age: config.retention_age,
        max_idle: config.retention_idle,
    };
    let publisher = Publisher::connect(&config.redis, retention)
        .await
        .map_err(StartError::Redis)?
        .acknowledged_by(config.min_replicas_ack, config.min_replicas_timeout)
        .map_err(StartError::Redis)?
        .remembering_keys_for(config.idempotency_window);
    let publisher = if config.group_publishes {
        publisher.grouped()
    } else {
        publisher
    };
    let metrics = metrics::Metrics::new();
    // Runs as long as the process: the publisher's JWKS keys stay fresh until it exits.
    let jwks_stop = tokio_util::sync::CancellationToken::new();
    let jwt = config.jwt.tokens(metrics.jwks.clone(), &jwks_stop)?;
    let _stop_jwks_on_return = jwks_stop.drop_guard();
    // Anonymous only when nothing else is configured, as --allow-anonymous always meant.
    let anonymous = config.allow_anonymous && config.tokens.is_empty() && jwt.is_none();
    if anonymous {
        tracing::warn!("anonymous publishing is enabled: anyone who reaches this port can publish");
    }
    let auth = http::Auth {
        anonymous,
        tokens: config.tokens.clone(),
        jwt,
    };
    let cors = Cors::new(
        &config.cors_origins,
        config.cors_credentials,
        "POST, OPTIONS",
        "Authorization, Content-Type, Idempotency-Key",
        metrics.cors_rejected.clone(),
    )?;
    let app = Arc::new(http::App {
        publisher,
        auth,
        limits: http::Limits {
            max_body: config.max_body.as_u64(),
            max_batch: config.max_batch as usize,
            body_timeout: config.body_timeout,
        },
        metrics,
        draining: AtomicBool::new(false),
        cors,
    });
    tracing::info!(addr = ?listener.local_addr().ok(), "sse-publisher listening");
    server::serve(
        listener,
        app,
        shutdown,
        config.header_timeout,
        usize::try_from(config.max_header_size.as_u64()).unwrap_or(usize::MAX),
        config.shutdown_timeout,
    )
    .await;
    Ok(())
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Redis URL is invalid.
    #[error(transparent)]
    Redis(PublishError),
    /// The JWT key cannot be read or used.
    #[error("invalid JWT key")]
    Key(#[from] jwt::KeyError),
    /// The CORS flags contradict each other.
    #[error(transparent)]
    Cors(#[from] sse_core::runtime::cors::CorsError),
}
