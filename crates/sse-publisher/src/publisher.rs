//! [`Publisher`]: publishing events as a library, one atomic Redis call per event.
//!
//! Every publish is one `FCALL sse_publish` (see `sse_core::schema`): the event is appended to
//! its topic's stream and announced on its channel in the same call, so `Ok(id)` means the
//! event is in the stream, and an error means it was not written (with one exception, below).
//! A batch is one `MULTI … EXEC` of such calls: all of its events are written or none.
//!
//! The connection is one multiplexed [`ConnectionManager`], cloned per call: concurrent
//! publishes are pipelined on one socket, which is what Redis serves fastest, and the manager
//! reconnects by itself after Redis goes away. The function library is loaded at connect time
//! and again whenever Redis says it is missing (a restart without persistence), then the call
//! is retried once: a missing function wrote nothing, so the retry cannot duplicate.
//!
//! The exception: when a reply times out or the connection drops after the call was sent, the
//! event may or may not be in the stream (Redis runs a call it received even if nobody waits
//! for the answer). That is [`PublishError::NoReply`]; a caller that retries may then publish
//! the event twice.

use sse_core::ErrorChain;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};
use sse_core::schema::{FUNCTION, LIBRARY, PublishCall, Retention};
use sse_core::{Event, EventId};

/// Publishes events into Redis. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Publisher {
    connection: ConnectionManager,
    retention: Retention,
}

/// Why a publish failed. In every case the event was not written, except as the module docs
/// say for a reply lost in an outage.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Redis could not be reached, or cannot take writes now (loading, failing over, out of
    /// memory): nothing was written. Retry later.
    #[error("redis is unavailable")]
    Unavailable(#[source] RedisError),
    /// The call was sent but no reply came (timeout, or the connection broke): the event may
    /// or may not be in the stream.
    #[error("redis did not answer, so the outcome is unknown")]
    NoReply(#[source] RedisError),
    /// Redis answered with an error: it refused the call.
    #[error("redis refused the publish")]
    Refused(#[source] RedisError),
    /// The Redis URL cannot be used (`redis://[user:password@]host:port[/db]`).
    #[error("invalid redis url {url:?}")]
    InvalidUrl {
        /// The URL, as given.
        url: String,
        /// Why redis-rs refused it.
        #[source]
        source: RedisError,
    },
    /// Redis answered with something that is not a stream id.
    #[error("redis answered the publish with {reply:?}, which is not a stream id")]
    BadReply {
        /// What Redis answered.
        reply: String,
    },
}

impl PublishError {
    fn from_redis(error: RedisError) -> Self {
        match error.kind() {
            // EXECABORT: Redis refused a queued command of a batch before running any, which
            // for our validated calls means READONLY or OOM, both conditions to wait out.
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::ExecAbort,
            ) => Self::Unavailable(error),
            _ if error.code() == Some("OOM") => Self::Unavailable(error),
            ErrorKind::Server(_) | ErrorKind::Extension => Self::Refused(error),
            // Only a refused connection proves the call never reached Redis: when a connection
            // breaks, redis-rs fails every call in flight alike, sent or not.
            _ if error.is_connection_refusal() => Self::Unavailable(error),
            _ => Self::NoReply(error),
        }
    }
}

/// How to reach Redis.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// How long one call may wait for its reply, and one connection attempt for the server.
    pub timeout: Duration,
}

impl Publisher {
    /// A publisher for `redis`, keeping `retention` of history per topic.
    ///
    /// It does not wait for Redis: a publisher can start before Redis does, and its calls fail
    /// with [`PublishError::Unavailable`] until Redis is there. It tries to load the function
    /// library at once, so a ready Redis is ready to publish to.
    ///
    /// # Errors
    /// [`PublishError::InvalidUrl`] if the URL is invalid.
    pub async fn connect(redis: &RedisOptions, retention: Retention) -> Result<Self, PublishError> {
        let invalid_url = |source| PublishError::InvalidUrl {
            url: redis.url.clone(),
            source,
        };
        let client = redis::Client::open(redis.url.as_str()).map_err(invalid_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(redis.timeout))
            .set_response_timeout(Some(redis.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(invalid_url)?;
        let publisher = Self {
            connection,
            retention,
        };
        if let Err(error) = publisher.load_function().await {
            tracing::warn!(error = %ErrorChain(&error), "could not load the publish function yet; will retry on use");
        }
        Ok(publisher)
    }

    /// Loads (or reloads) the publish function library. Idempotent.
    ///
    /// # Errors
    /// [`PublishError`] if Redis is unreachable or refuses the library.
    pub async fn load_function(&self) -> Result<(), PublishError> {
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(LIBRARY)
            .exec_async(&mut self.connection.clone())
            .await
            .map_err(PublishError::from_redis)
    }

    /// Publishes one event and returns the id Redis gave it.
    ///
    /// # Errors
    /// [`PublishError`]; the event was not written (see the module docs for the exception).
    pub async fn publish(&self, event: &Event) -> Result<EventId, PublishError> {
        let reply: String = self
            .with_function(|| fcall(&PublishCall::new(event, self.retention)))
            .await?;
        parse_id(reply)
    }

    /// Publishes several events, possibly on different topics, all or nothing, and returns
    /// their ids in order. Per topic, their ids increase in the order given.
    ///
    /// # Errors
    /// [`PublishError`]; none of the events was written (see the module docs).
    pub async fn publish_batch(&self, events: &[Event]) -> Result<Vec<EventId>, PublishError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let replies: Vec<String> = self
            .with_function(|| {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for event in events {
                    pipe.add_command(fcall(&PublishCall::new(event, self.retention)));
                }
                pipe
            })
            .await?;
        replies.into_iter().map(parse_id).collect()
    }

    /// Whether Redis answers a `PING` now.
    pub async fn ping(&self) -> bool {
        redis::cmd("PING")
            .exec_async(&mut self.connection.clone())
            .await
            .is_ok()
    }

    /// Runs the request built by `build`; if Redis has lost the function, loads it and runs
    /// the request once more.
    async fn with_function<R, T>(&self, build: impl Fn() -> R) -> Result<T, PublishError>
    where
        R: Request,
        T: redis::FromRedisValue,
    {
        let mut connection = self.connection.clone();
        match build().run(&mut connection).await {
            Err(error) if is_function_missing(&error) => {
                tracing::info!("publish function missing in redis; loading it");
                self.load_function().await?;
                build()
                    .run(&mut connection)
                    .await
                    .map_err(PublishError::from_redis)
            }
            result => result.map_err(PublishError::from_redis),
        }
    }
}

/// A command or a pipeline: what [`Publisher::with_function`] runs.
trait Request {
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut ConnectionManager,
    ) -> redis::RedisResult<T>;
}

impl Request for redis::Cmd {
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut ConnectionManager,
    ) -> redis::RedisResult<T> {
        self.query_async(connection).await
    }
}

impl Request for redis::Pipeline {
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut ConnectionManager,
    ) -> redis::RedisResult<T> {
        self.query_async(connection).await
    }
}

fn fcall(call: &PublishCall) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(FUNCTION).arg(1).arg(&call.key);
    for arg in &call.args {
        cmd.arg(&arg[..]);
    }
    cmd
}

fn is_function_missing(error: &RedisError) -> bool {
    error
        .detail()
        .is_some_and(|d| d.contains("Function not found"))
        || error.to_string().contains("Function not found")
}

fn parse_id(reply: String) -> Result<EventId, PublishError> {
    EventId::parse(&reply).map_err(|_| PublishError::BadReply { reply })
}

#[cfg(test)]
mod tests {
    use super::{PublishError, Publisher, RedisOptions};
    use sse_core::ErrorChain;
    use sse_core::schema::Retention;
    use std::time::Duration;

    #[tokio::test]
    async fn an_invalid_url_is_named_as_such_with_its_cause_once() {
        let options = RedisOptions {
            url: "http://not-redis".into(),
            timeout: Duration::from_secs(1),
        };
        let retention = Retention {
            max_len: 10,
            max_age: None,
        };
        let Err(error) = Publisher::connect(&options, retention).await else {
            panic!("an http:// URL was accepted as a Redis URL");
        };
        assert!(
            matches!(error, PublishError::InvalidUrl { .. }),
            "{error:?}"
        );
        let text = ErrorChain(&error).to_string();
        assert!(
            text.starts_with("invalid redis url \"http://not-redis\": "),
            "{text}"
        );
        assert!(!text.contains("refused"), "{text}");
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(
            text.matches(cause.as_deref().unwrap_or("?")).count(),
            1,
            "{text}"
        );
    }
}
