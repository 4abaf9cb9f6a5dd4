//! [`Config`]: every flag of `sse-gateway`, each with an environment fallback. The doc comment
//! of each field is its `--help` text.

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use clap::Parser;
pub use sse_core::runtime::LogFormat;
use sse_core::runtime::jwt_flags::JwtFlags;
use sse_core::runtime::parse_positive_duration;
use sse_core::runtime::redis::RedisFlags;

/// Serves Server-Sent Events from Redis: live fan-out of pub/sub, exact resume from streams.
#[derive(Clone, Debug, Parser)]
#[command(name = "sse-gateway", version)]
pub struct Config {
    /// Address to listen on (HTTP/1.1 and h2c).
    #[arg(long, env = "SSE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// A second address serving only /healthz, /readyz and /metrics, on a listener of its own,
    /// so probes are answered while the main listener is flooded with new clients (they are
    /// served on the main address too).
    #[arg(long, env = "SSE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Where Redis is: one server, or a Redis Cluster.
    #[command(flatten)]
    pub redis: RedisFlags,

    /// How often idle streams get a heartbeat comment. One timer serves the whole node: at
    /// each tick, every stream that wrote nothing since the previous tick gets one, so an
    /// idle gap lasts between one and two periods.
    #[arg(long, env = "SSE_HEARTBEAT", default_value = "15s", value_parser = parse_positive_duration)]
    pub heartbeat: Duration,

    /// Reconnection delay sent to clients in the `retry:` field, in milliseconds: the least
    /// one (see --retry-jitter).
    #[arg(long, env = "SSE_RETRY_MS", default_value_t = 1000)]
    pub retry_ms: u64,

    /// Up to this much, chosen at random for each stream, is added to --retry-ms, so that
    /// the clients of a node that went away do not all come back in the same instant. `0s`
    /// sends every client --retry-ms exactly.
    #[arg(long, env = "SSE_RETRY_JITTER", default_value = "1s", value_parser = humantime::parse_duration)]
    pub retry_jitter: Duration,

    /// End each event stream after about this long, cleanly: its client reconnects and
    /// resumes by Last-Event-ID, on whichever node it reaches. Frees streams a proxy keeps
    /// open for clients that vanished, and rebalances streams after nodes are added. Off by
    /// default.
    #[arg(long, env = "SSE_MAX_CONNECTION_AGE", value_parser = parse_positive_duration)]
    pub max_connection_age: Option<Duration>,

    /// How much earlier than --max-connection-age a stream may end, drawn at random for each
    /// stream, so streams opened together do not end together. Default: a tenth of the age.
    #[arg(long, env = "SSE_MAX_CONNECTION_AGE_JITTER", value_parser = humantime::parse_duration)]
    pub max_connection_age_jitter: Option<Duration>,

    /// Most bytes queued for one client; a client further behind is disconnected (it
    /// reconnects and resumes from the stream).
    #[arg(long, env = "SSE_CLIENT_BUFFER", default_value = "256KiB")]
    pub client_buffer: ByteSize,

    /// The kernel send buffer of each client connection (`SO_SNDBUF`; Linux doubles it for
    /// its bookkeeping). Without a cap the kernel grows it up to `net.ipv4.tcp_wmem`'s
    /// maximum (4 MiB by default) for a client that stops reading, memory RSS does not show;
    /// a cut client's is freed at once either way. `0` leaves it to the kernel's autotuning.
    #[arg(long, env = "SSE_SEND_BUFFER", default_value = "64KiB")]
    pub send_buffer: ByteSize,

    /// Most topics one stream may subscribe to.
    #[arg(long, env = "SSE_MAX_TOPICS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_topics: u32,

    /// Most open event streams on this node; more get 503 with Retry-After. It counts
    /// streams, not TCP connections: an HTTP/2 connection may carry several streams, and
    /// other requests (probes, metrics) are not counted.
    #[arg(long, env = "SSE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most new event streams admitted per second on this node (a burst of as many is
    /// allowed); beyond it, 503 with a Retry-After spread over a few seconds. /readyz is not
    /// affected. Off by default.
    #[arg(long, env = "SSE_ACCEPT_RATE")]
    pub accept_rate: Option<std::num::NonZeroU32>,

    /// Most open streams per client address on this node; more get 429 with Retry-After.
    /// Behind a proxy, set `--trusted-proxy` so the client's address is used, not the proxy's.
    #[arg(long, env = "SSE_MAX_CONNECTIONS_PER_IP", value_parser = clap::value_parser!(usize))]
    pub max_connections_per_ip: Option<usize>,

    /// Most open streams per user (the token's `sub`) on this node, with tokens on; more get
    /// 429 with Retry-After.
    #[arg(long, env = "SSE_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<usize>,

    /// A proxy (address or CIDR, repeatable) whose `X-Forwarded-For` / `X-Real-IP` name the
    /// client; from any other peer those headers are ignored.
    #[arg(long = "trusted-proxy", env = "SSE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Most history reads for resuming clients at a time on this node; the others wait their
    /// turn (a reconnect storm then costs Redis a bounded number of concurrent reads). Gap
    /// fills after a pub/sub outage never wait. Off by default.
    #[arg(long, env = "SSE_MAX_CONCURRENT_REPLAYS")]
    pub max_concurrent_replays: Option<std::num::NonZeroUsize>,

    /// Recent events kept in memory per topic, so that a client resuming from a recent
    /// position is served without reading Redis (a reconnect storm costs Redis nothing).
    /// `0` turns the cache off: every resume reads the topic's stream.
    #[arg(long, env = "SSE_REPLAY_CACHE_EVENTS", default_value_t = 1000)]
    pub replay_cache_events: usize,

    /// Most bytes of recent events kept per topic (see --replay-cache-events).
    #[arg(long, env = "SSE_REPLAY_CACHE_BYTES", default_value = "1MiB")]
    pub replay_cache_bytes: ByteSize,

    /// Most bytes of recent events kept over every topic of the node; at the limit, a topic
    /// that receives an event makes room in its own cache.
    #[arg(long, env = "SSE_REPLAY_CACHE_TOTAL_BYTES", default_value = "256MiB")]
    pub replay_cache_total_bytes: ByteSize,

    /// How often this node writes its subscriber counts to Redis (`GET /v1/topics/<topic>` on
    /// the publisher adds them up over the fleet). A node that stops writing drops out of
    /// the counts three refreshes later.
    #[arg(long, env = "SSE_COUNT_REFRESH", default_value = "10s", value_parser = parse_positive_duration)]
    pub count_refresh: Duration,

    /// This node's name in the fleet's subscriber counts. Default: 16 random hex digits,
    /// new at every start.
    #[arg(long, env = "SSE_NODE_ID", value_parser = parse_node_id)]
    pub node_id: Option<String>,

    /// Record which subjects (a token's `sub`) are listening on each topic, over the fleet,
    /// and publish their joins and leaves on the companion topic `presence:<topic>` (needs
    /// subscriber auth; off by default: it costs Redis memory per listening subject).
    #[arg(long, env = "SSE_PRESENCE")]
    pub presence: bool,

    /// With `--presence`, how long a subject's last stream must stay closed before it leaves:
    /// a reconnect within it is neither a leave nor a join.
    #[arg(long, env = "SSE_PRESENCE_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub presence_grace: Duration,

    /// With the cache on, how long a topic stays subscribed (and its recent events kept)
    /// after its last local client left, so that clients coming back after a network blip
    /// or a storm resume from memory (as Nchan keeps a channel's messages with nobody
    /// subscribed). `0s` unsubscribes at once.
    #[arg(long, env = "SSE_REPLAY_CACHE_LINGER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub replay_cache_linger: Duration,

    /// Events read from Redis per request while replaying history to a resuming client.
    #[arg(long, env = "SSE_REPLAY_PAGE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub replay_page: u32,

    /// On SIGTERM/SIGINT, open streams are ended spread over this many seconds, so their
    /// clients reconnect to other nodes gradually.
    #[arg(long, env = "SSE_DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,

    /// How long a client may take to send its request headers (the slow-client guard).
    #[arg(long, env = "SSE_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// Largest request head (request line and headers) accepted; larger ones get 431.
    #[arg(long, env = "SSE_MAX_HEADER_SIZE", default_value = "16KiB")]
    pub max_header_size: ByteSize,

    /// Origins allowed to open streams from a browser on another origin (CORS); repeat the
    /// flag for several, or `*` for any. In the environment, a comma-separated list.
    #[arg(long = "cors-origin", env = "SSE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Let the allowed origins send credentials (cookies): the allowed origin is echoed,
    /// never `*`, with `Access-Control-Allow-Credentials: true`. Needed for a token in a
    /// cookie on another origin (`new EventSource(url, {withCredentials: true})`).
    #[arg(long, env = "SSE_CORS_CREDENTIALS")]
    pub cors_credentials: bool,

    /// Subscriber tokens (JWT): the key and what is checked.
    #[command(flatten)]
    pub jwt: JwtFlags,

    /// A cookie that may carry the token (for browsers on the same site).
    #[arg(long, env = "SSE_JWT_COOKIE")]
    pub jwt_cookie: Option<String>,

    /// Whether a token may come in the `access_token` query parameter (for a cross-site
    /// `EventSource`, which cannot set headers). `off` for deployments that use only
    /// headers or cookies: URLs end up in logs.
    #[arg(long, env = "SSE_JWT_QUERY", value_enum, default_value_t = Switch::On)]
    pub jwt_query: Switch,

    /// Forward auth: before a stream opens, `GET` this URL (with `?topic=...`) carrying
    /// the subscriber's cookies and Authorization; a 2xx allows, 401/403 refuse, anything
    /// else is a 503. With a JWT key too, both must allow.
    #[arg(long, env = "SSE_AUTH_URL")]
    pub auth_url: Option<String>,

    /// How long a call to --auth-url may take before the stream is refused with 503.
    #[arg(long, env = "SSE_AUTH_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub auth_timeout: Duration,

    /// How long a decision of --auth-url is reused for the same cookies, Authorization and
    /// topics (never past the `exp` it gave); `0s` asks every time.
    #[arg(long, env = "SSE_AUTH_CACHE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub auth_cache_ttl: Duration,

    /// Log format; the level filter comes from RUST_LOG (default info).
    #[arg(long, env = "SSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A feature turned on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

fn parse_network(value: &str) -> Result<ipnet::IpNet, String> {
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{value:?} is neither an address nor a CIDR network (10.0.0.0/8)"))
}

fn parse_node_id(value: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(value.to_owned())
    } else {
        Err("must be 1 to 64 ASCII letters, digits, '-', '_' or '.'".to_owned())
    }
}
