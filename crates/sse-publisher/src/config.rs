//! [`Config`]: every flag of `sse-publisher`, each with an environment fallback. The doc
//! comment of each field is its `--help` text.

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use clap::Parser;
pub use sse_core::runtime::LogFormat;
use sse_core::runtime::jwt_flags::JwtFlags;
use sse_core::runtime::parse_positive_duration;
use sse_core::runtime::redis::RedisFlags;

/// Publishes events over HTTP into Redis streams and pub/sub, for sse-gateway to deliver.
#[derive(Clone, Debug, Parser)]
#[command(name = "sse-publisher", version)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SSE_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,

    /// Where Redis is: one server, or a Redis Cluster.
    #[command(flatten)]
    pub redis: RedisFlags,

    /// A bearer token that may publish; repeat the flag for several. In the environment, a
    /// comma-separated list.
    #[arg(
        long = "token",
        env = "SSE_PUBLISH_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub tokens: Vec<String>,

    /// Publisher tokens (JWT): the key and what is checked. A JWT may publish to the topics
    /// its claim lists under `publish`; static `--token`s still work.
    #[command(flatten)]
    pub jwt: JwtFlags,

    /// Origins allowed to publish from a browser on another origin (CORS); repeat the flag
    /// for several, or `*` for any. In the environment, a comma-separated list.
    #[arg(long = "cors-origin", env = "SSE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Let the allowed origins send credentials (cookies): the allowed origin is echoed,
    /// never `*`, with `Access-Control-Allow-Credentials: true`.
    #[arg(long, env = "SSE_CORS_CREDENTIALS")]
    pub cors_credentials: bool,

    /// Let anyone publish without a token. For development only.
    #[arg(long, env = "SSE_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

    /// Largest accepted request body (e.g. 1MiB, 64KiB, 1000); larger ones get 413.
    #[arg(long, env = "SSE_MAX_BODY", default_value = "1MiB")]
    pub max_body: ByteSize,

    /// Most events in one batch; more get 413.
    #[arg(long, env = "SSE_MAX_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: u32,

    /// Events kept per topic stream, approximately (Redis trims whole nodes of 100 entries).
    #[arg(long, env = "SSE_RETENTION", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub retention: u64,

    /// Also trim events older than this (e.g. 24h); unset keeps events regardless of age.
    #[arg(long, env = "SSE_RETENTION_AGE", value_parser = humantime::parse_duration)]
    pub retention_age: Option<Duration>,

    /// Delete a topic's whole history once nothing was published to it for this long (e.g.
    /// 7d), so that idle topics (one per user or order) do not hold Redis memory forever;
    /// unset keeps it.
    #[arg(long, env = "SSE_RETENTION_IDLE", value_parser = parse_positive_duration)]
    pub retention_idle: Option<Duration>,

    /// How long a publish's `Idempotency-Key` is remembered: a retry with the same key within
    /// it writes nothing and gets the first attempt's ids.
    #[arg(long, env = "SSE_IDEMPOTENCY_WINDOW", default_value = "5m", value_parser = parse_positive_duration)]
    pub idempotency_window: Duration,

    /// Answer 2xx only once this many replicas hold the event (`WAIT` after the publish on
    /// the same connection), so that a failover cannot lose an acknowledged event; 0 answers
    /// as soon as the master wrote it (Redis replicates asynchronously).
    #[arg(long, env = "SSE_MIN_REPLICAS_ACK", default_value_t = 0)]
    pub min_replicas_ack: u32,

    /// How long a publish waits for --min-replicas-ack replicas before it answers 503 (the
    /// event was written on the master but may not survive a failover).
    #[arg(long, env = "SSE_MIN_REPLICAS_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub min_replicas_timeout: Duration,

    /// Send concurrent single-event publishes that arrive at the same moment to Redis as one
    /// pipeline (each still its own atomic call and reply). Off by default: it measured no
    /// faster than the multiplexed connection alone.
    #[arg(long, env = "SSE_GROUP_PUBLISHES")]
    pub group_publishes: bool,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before exit.
    #[arg(long, env = "SSE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// How long a client may take to send its request headers (the slow-client guard).
    #[arg(long, env = "SSE_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// How long a client may take to send its request body.
    #[arg(long, env = "SSE_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// Largest request head (request line and headers) accepted; larger ones get 431.
    #[arg(long, env = "SSE_MAX_HEADER_SIZE", default_value = "16KiB")]
    pub max_header_size: ByteSize,

    /// Log format; the level filter comes from RUST_LOG (default info).
    #[arg(long, env = "SSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither tokens, a JWT key, nor anonymous publishing: nobody could publish.
    #[error(
        "no publish token configured: pass --token (or SSE_PUBLISH_TOKENS), a JWT key (--jwt-secret, --jwt-secret-file, --jwt-public-key), or --allow-anonymous for development"
    )]
    NoAuth,
    /// An empty token would accept `Authorization: Bearer ` with nothing after it.
    #[error("a publish token is empty; check --token / SSE_PUBLISH_TOKENS")]
    EmptyToken,
}

impl Config {
    /// Checks what clap cannot: that the settings make sense together.
    ///
    /// # Errors
    /// [`ConfigError`] naming the problem and the flag that fixes it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tokens.iter().any(|token| token.trim().is_empty()) {
            return Err(ConfigError::EmptyToken);
        }
        if self.tokens.is_empty() && !self.jwt.has_key() && !self.allow_anonymous {
            return Err(ConfigError::NoAuth);
        }
        Ok(())
    }
}
