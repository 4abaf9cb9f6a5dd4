//! Reaching Redis as the flags say: one server (the default) or a Redis Cluster named by its
//! seed nodes, behind one command connection, [`Commands`], so the rest of each binary does
//! not care which.
//!
//! - **One server**: a [`ConnectionManager`]: one multiplexed socket that reconnects by
//!   itself.
//! - **Cluster** (`--redis-cluster`): the redis crate's async cluster client, which holds one
//!   multiplexed socket per node, sends each command to the master of its key's slot and
//!   follows `MOVED`/`ASK` while slots move. It is connected on first use, and again after an
//!   attempt failed, so a binary may start before its cluster does.
//!
//! **Managed Redis**: `rediss://` URLs connect over TLS (rustls), verifying the server against
//! the system's roots or `--redis-ca-file`, with a client certificate for mutual TLS if given;
//! an ACL user and password come from the URL or, the password, from `--redis-password-file`.
//! Passwords never reach logs or error messages: URLs are shown with the password masked.
//!
//! Pointing either mode at the other kind of Redis would fail later, call by call, with
//! errors that do not say why. So [`Redis::check_mode`] asks the server (`INFO cluster`)
//! and says it in one sentence; the binaries call it at startup and on every reconnect.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    ClientTlsConfig, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    TlsCertificates, Value,
};
use tokio::sync::OnceCell;

/// The Redis flags both binaries share.
#[derive(Clone, Debug, clap::Args)]
pub struct RedisFlags {
    /// Redis to use: redis://[user:password@]host:port[/db]. With --redis-cluster, one or
    /// more seed nodes of the cluster, comma-separated (any live one is enough to start).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// Redis is a Redis Cluster: keys and commands go to the master of each topic's slot,
    /// and live messages use sharded pub/sub (SPUBLISH / SSUBSCRIBE).
    #[arg(long, env = "REDIS_CLUSTER")]
    pub redis_cluster: bool,

    /// How long one Redis call (and one connection attempt) may take.
    #[arg(long, env = "SSE_REDIS_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// PEM file of the certificate authorities to trust for `rediss://` (default: the
    /// system's roots).
    #[arg(long, env = "SSE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// PEM client certificate for mutual TLS with `rediss://` (with --redis-client-key).
    #[arg(long, env = "SSE_REDIS_CLIENT_CERT", requires = "redis_client_key")]
    pub redis_client_cert: Option<PathBuf>,

    /// PEM private key of --redis-client-cert.
    #[arg(long, env = "SSE_REDIS_CLIENT_KEY", requires = "redis_client_cert")]
    pub redis_client_key: Option<PathBuf>,

    /// File holding the Redis password (for the ACL user named in --redis-url, or `default`),
    /// so that it need not be in the URL. Trailing whitespace is ignored.
    #[arg(long, env = "SSE_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
}

impl RedisFlags {
    /// The defaults, for one Redis at `url`.
    pub fn single(url: impl Into<String>) -> Self {
        Self {
            redis_url: url.into(),
            ..Self::default()
        }
    }

    /// The defaults, for a Redis Cluster with these comma-separated seed URLs.
    pub fn cluster(seeds: impl Into<String>) -> Self {
        Self {
            redis_url: seeds.into(),
            redis_cluster: true,
            ..Self::default()
        }
    }
}

impl Default for RedisFlags {
    /// The flags' defaults: `redis://127.0.0.1:6379`, one server, 5 s, no TLS files.
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_cluster: false,
            redis_timeout: Duration::from_secs(5),
            redis_ca_file: None,
            redis_client_cert: None,
            redis_client_key: None,
            redis_password_file: None,
        }
    }
}

/// Which kind of Redis the flags name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One Redis server (with or without replicas behind it).
    Single,
    /// A Redis Cluster.
    Cluster,
}

/// Why the Redis flags cannot be used, or the server is not what they say.
#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    /// A URL does not parse.
    #[error("invalid redis url {url:?}")]
    InvalidUrl {
        /// The URL, as given, its password masked.
        url: String,
        /// Why the redis crate refused it.
        #[source]
        source: RedisError,
    },
    /// No URL at all.
    #[error("--redis-url is empty")]
    NoUrl,
    /// Several URLs, but not a cluster.
    #[error(
        "--redis-url names {0} servers; a list of seed nodes needs --redis-cluster, one Redis is named by one URL"
    )]
    SeveralWithoutCluster(usize),
    /// The flags say cluster, the server is not one (or the reverse).
    #[error("{0}")]
    ModeMismatch(&'static str),
    /// A file named by a flag cannot be read.
    #[error("cannot read {flag} {path:?}")]
    File {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS files cannot be used (a key or certificate that does not parse).
    #[error("cannot set up TLS for redis")]
    Tls(#[source] RedisError),
    /// Redis refused the TLS handshake's certificate, or ours: no retry will help.
    #[error(
        "the TLS connection to redis failed; check --redis-ca-file, the server's certificate (its host name and dates) and the client certificate"
    )]
    Handshake(#[source] RedisError),
    /// The ACL user may not run a command this binary needs (Redis's message names it).
    #[error(
        "the redis user lacks a permission this binary needs (the README's Security section lists them)"
    )]
    Permission(#[source] RedisError),
    /// Redis refused the user or password.
    #[error(
        "redis refused the credentials (the ACL user and password of --redis-url or --redis-password-file)"
    )]
    Credentials(#[source] RedisError),
}

/// Where Redis is and how to reach it: what [`RedisFlags`] name. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Redis {
    mode: Mode,
    /// The first node named: the server, or the first seed.
    first: ConnectionInfo,
    /// Every node named (seeds, in cluster mode).
    nodes: Vec<ConnectionInfo>,
    /// A CA file or client certificate, when given.
    tls: Option<TlsCertificates>,
    timeout: Duration,
}

impl Redis {
    /// Parses the flags.
    ///
    /// # Errors
    /// [`RedisConfigError::InvalidUrl`] or [`RedisConfigError::SeveralWithoutCluster`].
    pub fn from_flags(flags: &RedisFlags) -> Result<Self, RedisConfigError> {
        let urls: Vec<&str> = flags
            .redis_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect();
        let mode = if flags.redis_cluster {
            Mode::Cluster
        } else {
            Mode::Single
        };
        if mode == Mode::Single && urls.len() > 1 {
            return Err(RedisConfigError::SeveralWithoutCluster(urls.len()));
        }
        let nodes = urls
            .iter()
            .map(|url| {
                url.into_connection_info()
                    .map_err(|source| RedisConfigError::InvalidUrl {
                        url: masked(url),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nodes = match &flags.redis_password_file {
            None => nodes,
            Some(path) => {
                let password = read(path, "--redis-password-file")?;
                let password = String::from_utf8_lossy(&password).trim_end().to_owned();
                nodes
                    .into_iter()
                    .map(|info| {
                        let settings = info.redis_settings().clone().set_password(&password);
                        info.set_redis_settings(settings)
                    })
                    .collect()
            }
        };
        let first = nodes.first().cloned().ok_or(RedisConfigError::NoUrl)?;
        let tls = tls_files(flags)?;
        super::install_tls_provider();
        Ok(Self {
            mode,
            first,
            nodes,
            tls,
            timeout: flags.redis_timeout,
        })
    }

    /// A client for `node`, with the TLS files if any.
    fn client(&self, node: ConnectionInfo) -> Result<redis::Client, RedisError> {
        match &self.tls {
            None => redis::Client::open(node),
            Some(certificates) => redis::Client::build_with_tls(node, certificates.clone()),
        }
    }

    /// The mode the flags chose.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How long one call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client for the one server (in cluster mode: the first seed node).
    ///
    /// # Errors
    /// When the redis crate refuses the URL (it checked it at parse time already).
    pub fn first_node(&self) -> Result<redis::Client, RedisError> {
        self.client(self.first.clone())
    }

    /// A cluster client for the seed nodes, set up by `build` (a push sender, say).
    ///
    /// # Errors
    /// When the redis crate refuses the seed list (it checked it at parse time already).
    pub fn cluster_client(
        &self,
        build: impl FnOnce(ClusterClientBuilder) -> ClusterClientBuilder,
    ) -> Result<ClusterClient, RedisError> {
        let mut builder = ClusterClientBuilder::new(self.nodes.clone())
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .retries(3);
        if let Some(certificates) = &self.tls {
            builder = builder.certs(certificates.clone());
        }
        build(builder).build()
    }

    /// The command connection for this deployment. It connects lazily: nothing is sent
    /// until the first command.
    ///
    /// # Errors
    /// When the redis crate refuses the URLs (they were checked at parse time already).
    pub fn commands(&self) -> Result<Commands, RedisError> {
        match self.mode {
            Mode::Single => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                let manager = ConnectionManager::new_lazy_with_config(self.first_node()?, config)?;
                Ok(Commands::Single(manager))
            }
            Mode::Cluster => Ok(Commands::Cluster(LazyCluster {
                client: Arc::new(self.cluster_client(|builder| builder)?),
                connection: Arc::new(OnceCell::new()),
            })),
        }
    }

    /// Asks the server (`INFO cluster`, on a connection of its own to each named node in
    /// turn, until one answers) whether it is what the flags say.
    ///
    /// # Errors
    /// [`CheckError::Unreachable`] when no node answered (the mode is unknown, not wrong);
    /// [`CheckError::Mismatch`] when the server is the other kind.
    pub async fn check_mode(&self) -> Result<(), CheckError> {
        let mut last = None;
        for node in &self.nodes {
            let client = self
                .client(node.clone())
                .map_err(|error| CheckError::Mismatch(RedisConfigError::Tls(error)))?;
            match tokio::time::timeout(self.timeout, cluster_enabled(client)).await {
                Ok(Ok(cluster)) => return self.compare(cluster),
                Ok(Err(error)) => match fatal(error) {
                    Ok(error) => return Err(CheckError::Mismatch(error)),
                    Err(error) => last = Some(error),
                },
                Err(_) => {}
            }
        }
        Err(CheckError::Unreachable(last))
    }

    fn compare(&self, cluster: bool) -> Result<(), CheckError> {
        match (self.mode, cluster) {
            (Mode::Single, true) => Err(CheckError::Mismatch(RedisConfigError::ModeMismatch(
                "this Redis is a cluster node (cluster_enabled:1): start with --redis-cluster and name its nodes in --redis-url",
            ))),
            (Mode::Cluster, false) => Err(CheckError::Mismatch(RedisConfigError::ModeMismatch(
                "--redis-cluster is set, but this Redis is not a cluster node (cluster_enabled:0): drop --redis-cluster",
            ))),
            _ => Ok(()),
        }
    }
}

/// Whether the node of `client` says `cluster_enabled:1`.
async fn cluster_enabled(client: redis::Client) -> Result<bool, RedisError> {
    let mut connection = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut connection)
        .await?;
    Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
}

/// Sorts a failed first contact: a certificate, credentials or a permission refused will fail
/// every attempt alike, so it is a configuration error (`Ok`); anything else may pass (`Err`).
fn fatal(error: RedisError) -> Result<RedisConfigError, RedisError> {
    let text = format!("{error} {:?}", std::error::Error::source(&error));
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
    {
        return Ok(RedisConfigError::Credentials(error));
    }
    if text.contains("certificate")
        || text.contains("Certificate")
        || text.contains("InvalidCertificate")
    {
        return Ok(RedisConfigError::Handshake(error));
    }
    if error.code() == Some("NOPERM") || text.contains("NOPERM") {
        return Ok(RedisConfigError::Permission(error));
    }
    Err(error)
}

/// `url` with its password, if any, replaced by `***`.
pub fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://***@{host}"),
        },
        None => url.to_owned(),
    }
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, RedisConfigError> {
    std::fs::read(path).map_err(|source| RedisConfigError::File {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// The CA file and client certificate the flags name, if any.
fn tls_files(flags: &RedisFlags) -> Result<Option<TlsCertificates>, RedisConfigError> {
    let root_cert = flags
        .redis_ca_file
        .as_deref()
        .map(|path| read(path, "--redis-ca-file"))
        .transpose()?;
    let client_tls = match (&flags.redis_client_cert, &flags.redis_client_key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert, "--redis-client-cert")?,
            client_key: read(key, "--redis-client-key")?,
        }),
        _ => None,
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

/// What [`Redis::check_mode`] found.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No answer: the mode could not be checked now.
    #[error("redis did not answer INFO cluster")]
    Unreachable(#[source] Option<RedisError>),
    /// The server is the other kind of Redis, or refuses this configuration (its TLS
    /// certificate or credentials) in a way no retry will change.
    #[error(transparent)]
    Mismatch(RedisConfigError),
}

/// The connection every command goes through, in either mode. Cheap to clone; clones share
/// the connection. Use it like any redis connection (`cmd.query_async(&mut commands)`).
#[derive(Clone)]
pub enum Commands {
    /// One server.
    Single(ConnectionManager),
    /// A cluster, connected on first use.
    Cluster(LazyCluster),
}

impl Commands {
    /// Whether Redis can serve now: one server answers `PING`; a cluster answers
    /// `CLUSTER INFO` with `cluster_state:ok` (every slot served).
    ///
    /// # Errors
    /// The call's error, or [`NotReady`] naming the cluster state.
    pub async fn ready(&mut self) -> Result<(), NotReady> {
        match self {
            Self::Single(_) => {
                redis::cmd("PING").exec_async(self).await?;
                Ok(())
            }
            Self::Cluster(_) => {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(self).await?;
                match info
                    .lines()
                    .find_map(|line| line.trim().strip_prefix("cluster_state:"))
                {
                    Some("ok") => Ok(()),
                    state => Err(NotReady::ClusterState(
                        state.unwrap_or("missing").to_owned(),
                    )),
                }
            }
        }
    }

    /// Loads (or reloads) the schema's function library (`sse_publish`, `sse_presence`):
    /// on a cluster the variant for it, on every master. Idempotent.
    ///
    /// # Errors
    /// The call's error: Redis unreachable, or refusing the library.
    pub async fn load_functions(&mut self) -> Result<(), RedisError> {
        let library = match self {
            Self::Single(_) => crate::schema::LIBRARY.to_owned(),
            Self::Cluster(_) => crate::schema::cluster_library(),
        };
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(library)
            .exec_async(self)
            .await
    }
}

/// Whether `error` says a function of the library is missing (Redis restarted without it).
pub fn is_function_missing(error: &RedisError) -> bool {
    error
        .detail()
        .is_some_and(|detail| detail.contains("Function not found"))
        || error.to_string().contains("Function not found")
}

/// Why [`Commands::ready`] failed.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The call failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The cluster is not serving every slot.
    #[error("the redis cluster is not ok (cluster_state:{0})")]
    ClusterState(String),
}

/// A cluster connection made on first use, and again on the next use after an attempt
/// failed; concurrent first uses share one attempt.
#[derive(Clone)]
pub struct LazyCluster {
    client: Arc<ClusterClient>,
    connection: Arc<OnceCell<ClusterConnection>>,
}

impl LazyCluster {
    async fn get(&self) -> Result<ClusterConnection, RedisError> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(manager) => manager.req_packed_command(cmd),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut connection = lazy.get().await?;
                connection.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut connection = lazy.get().await?;
                connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(manager) => manager.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(url: &str, cluster: bool) -> RedisFlags {
        RedisFlags {
            redis_url: url.to_owned(),
            redis_cluster: cluster,
            ..RedisFlags::default()
        }
    }

    #[test]
    fn a_password_is_masked_wherever_a_url_is_shown() {
        assert_eq!(
            masked("redis://app:s3cret@h:6379/0"),
            "redis://app:***@h:6379/0"
        );
        assert_eq!(masked("rediss://:s3cret@h:6380"), "rediss://:***@h:6380");
        assert_eq!(masked("redis://h:6379"), "redis://h:6379");
        let error = Redis::from_flags(&flags("redis://u:s3cret@h:notaport", false)).unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn several_urls_need_the_cluster_flag() {
        let seeds = "redis://127.0.0.1:7000, redis://127.0.0.1:7001";
        let error = Redis::from_flags(&flags(seeds, false)).unwrap_err();
        assert!(
            matches!(error, RedisConfigError::SeveralWithoutCluster(2)),
            "{error}"
        );
        let redis = Redis::from_flags(&flags(seeds, true)).unwrap();
        assert_eq!(redis.mode(), Mode::Cluster);
        assert_eq!(redis.nodes.len(), 2);
    }

    #[test]
    fn a_bad_seed_is_named() {
        let error =
            Redis::from_flags(&flags("redis://127.0.0.1:7000,http://nope", true)).unwrap_err();
        assert!(
            matches!(&error, RedisConfigError::InvalidUrl { url, .. } if url == "http://nope"),
            "{error}"
        );
    }
}
