//! [`Drain`]: the shutdown choreography of a node.
//!
//! An event stream never finishes by itself, so graceful shutdown has to reach each one. On
//! SIGTERM or SIGINT: `/readyz` fails and new streams are refused (load balancers move new
//! clients elsewhere), the listener closes, then open streams are ended one by one, spread
//! evenly over `--drain-seconds`, so their clients reconnect to other nodes gradually rather
//! than in one storm, each resuming from its `Last-Event-ID`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::outbox::Closed;

/// Whether the node is draining. Cheap to clone; clones share the state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Drain {
    started: CancellationToken,
}

impl Drain {
    /// Whether draining has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.started.is_cancelled()
    }

    /// Completes once draining has begun.
    pub(crate) fn started(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.started.clone().cancelled_owned()
    }

    /// Begins draining: from now on `/readyz` fails and new streams are refused.
    pub(crate) fn begin(&self) {
        self.started.cancel();
    }

    /// Ends every open stream, spread evenly over `over`.
    pub(crate) async fn end_streams(&self, hub: &Arc<Hub>, over: Duration) {
        let outboxes = hub.outboxes();
        let count = outboxes.len();
        tracing::info!(streams = count, ?over, "draining: ending open streams");
        let start = Instant::now();
        for (index, outbox) in outboxes.iter().enumerate() {
            // u32 is plenty for one node's streams; the cast saturates rather than wraps.
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            tokio::time::sleep_until(start + over * index / count).await;
            outbox.close(Closed::Drain);
        }
    }
}
