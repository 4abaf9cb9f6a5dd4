//! Group commit for single-event publishes: concurrent [`crate::Publisher::publish`] calls
//! are queued to one collector task, which sends whatever is waiting as one pipeline.
//!
//! Why: each call on the multiplexed connection costs its own trip through redis-rs (a queue
//! message, a write, a wake-up per reply); a group of calls pays that once. Measured (README,
//! Performance) that saving is smaller than this queue's own cost, and over HTTP the
//! per-request cost is elsewhere (kernel, allocator, hyper), so grouping is opt-in
//! (`--group-publishes`): it gains no throughput, only a lower p99 at 64 and more concurrent
//! requests, and loses at 16. The collector takes the first waiting
//! call, waits for one of [`IN_FLIGHT`] permits (so while Redis works on one group the next
//! fills), then adds whatever else is already queued, up to [`MAX_GROUP`] calls: under light
//! load a call goes alone and at once, under heavy load groups grow. No timer is involved.
//!
//! Each call still is its own `FCALL sse_publish` inside the pipeline, so each is atomic on its
//! own and gets its own reply: an error of one (a key of the wrong type, say) fails that call
//! only. A broken connection fails every call of the group alike, as it does without grouping.
//! Batches, idempotency-keyed publishes, replica acks and Redis Cluster stay on the direct path.

use std::sync::Arc;

use redis::{RedisError, Value};
use sse_core::runtime::redis::Commands;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most calls in one group.
const MAX_GROUP: usize = 64;
/// Groups sent and not yet answered, at most.
const IN_FLIGHT: usize = 8;
/// Calls waiting for the collector, at most; a caller beyond that waits to be queued.
const QUEUE: usize = 4096;

/// One queued call and where its reply goes.
struct Pending {
    call: redis::Cmd,
    reply: oneshot::Sender<Result<Value, RedisError>>,
}

/// Why a grouped call got no reply from the collector.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CoalesceError {
    /// Redis answered the call with an error, or the group's pipeline failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The collector is gone (the runtime is shutting down): the call was not sent.
    #[error("the publish queue is closed")]
    Closed,
}

/// The handle callers queue on; clones share one collector.
#[derive(Clone)]
pub(crate) struct Coalescer {
    queue: mpsc::Sender<Pending>,
}

impl Coalescer {
    /// Starts the collector on the current runtime, sending on `connection`. It ends when
    /// the last handle is dropped.
    pub(crate) fn start(connection: Commands) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(collect(waiting, connection));
        Self { queue }
    }

    /// Sends `call` in the next group and returns its own reply.
    pub(crate) async fn call(&self, call: redis::Cmd) -> Result<Value, CoalesceError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { call, reply })
            .await
            .map_err(|_| CoalesceError::Closed)?;
        answer
            .await
            .map_err(|_| CoalesceError::Closed)?
            .map_err(CoalesceError::Redis)
    }
}

/// The collector: groups what is queued and sends each group as one pipeline.
async fn collect(mut waiting: mpsc::Receiver<Pending>, connection: Commands) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut group = Vec::with_capacity(MAX_GROUP);
        group.push(first);
        while group.len() < MAX_GROUP {
            match waiting.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let mut connection = connection.clone();
        tokio::spawn(async move {
            send(group, &mut connection).await;
            drop(permit);
        });
    }
}

/// Sends `group` as one pipeline and hands each call its own reply.
async fn send(group: Vec<Pending>, connection: &mut Commands) {
    let mut pipe = redis::pipe();
    // Each reply on its own: one call's error must not fail the others.
    pipe.ignore_errors();
    let mut callers = Vec::with_capacity(group.len());
    for pending in group {
        pipe.add_command(pending.call);
        callers.push(pending.reply);
    }
    // A caller that stopped waiting is no one to tell, hence the ignored sends.
    match pipe.query_async::<Vec<Value>>(connection).await {
        Ok(replies) if replies.len() == callers.len() => {
            for (caller, reply) in callers.into_iter().zip(replies) {
                let _ = caller.send(reply.extract_error());
            }
        }
        Ok(replies) => {
            let error = RedisError::from((
                redis::ErrorKind::Parse,
                "a grouped pipeline got another number of replies than calls",
                format!("{} calls, {} replies", callers.len(), replies.len()),
            ));
            for caller in callers {
                let _ = caller.send(Err(error.clone()));
            }
        }
        Err(error) => {
            for caller in callers {
                let _ = caller.send(Err(error.clone()));
            }
        }
    }
}
