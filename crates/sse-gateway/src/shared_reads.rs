//! [`SharedReads`]: resuming clients of a topic share their history reads.
//!
//! In a reconnect storm, the clients of one topic come back from the same few positions. Each
//! page of history is read once: a client that needs a page another client's read is already
//! fetching (same topic, same position) waits for that read instead of sending its own, so N
//! clients cost Redis O(pages), not O(N × pages).
//!
//! **Reads sent before a client was live.** A client's replay must reach at least every event
//! this node delivered before the client's topics were live for it (from then on, its outbox
//! gets the rest). A read sent earlier may have been answered before such an event was in
//! the stream. So each client takes a [`ticket`](SharedReads::ticket) once every topic of its
//! stream is live, each read takes one as it is sent, and a client that shared a read sent
//! before its ticket does not take that read's last page for the end of the stream: it reads
//! on from there (`body`). Those follow-up reads are shared in turn, by every client that
//! joined the earlier read late, so a storm still costs a few reads per page.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, WeakShared};
use prometheus::IntCounter;
use sse_core::{EventId, Topic};

use crate::history::{History, HistoryError, Resume};

/// A page read for resuming clients, as shared between them, and the ticket taken as it was
/// sent.
pub(crate) type Read = (Ticket, Result<Arc<Resume>, Arc<HistoryError>>);

/// Where a page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Position {
    /// The first page of a resume from this id ([`History::resume`]).
    From(EventId),
    /// The page after this id ([`History::after`]).
    After(EventId),
}

/// Orders reads and clients (module docs).
pub(crate) type Ticket = u64;

struct Flight {
    /// Tells this read from a later one of the same page.
    id: u64,
    read: WeakShared<BoxFuture<'static, Read>>,
}

#[derive(Default)]
struct Flights {
    by_page: HashMap<(Topic, Position), Flight>,
    /// When the map is this long, entries whose every reader went away are dropped.
    prune_at: usize,
}

/// The node's history reads for resuming clients; see the module docs.
pub(crate) struct SharedReads {
    history: History,
    tickets: AtomicU64,
    flights: Mutex<Flights>,
    /// `sse_replay_reads_coalesced_total`.
    coalesced: IntCounter,
}

/// Entries kept before the first prune.
const PRUNE_FIRST: usize = 1024;

impl SharedReads {
    /// Reads of `history`, counting those shared in `coalesced`.
    pub(crate) fn new(history: History, coalesced: IntCounter) -> Arc<Self> {
        Arc::new(Self {
            history,
            tickets: AtomicU64::new(0),
            flights: Mutex::new(Flights {
                by_page: HashMap::new(),
                prune_at: PRUNE_FIRST,
            }),
            coalesced,
        })
    }

    /// A ticket, for a client whose topics are all live now: it may share reads sent later.
    pub(crate) fn ticket(&self) -> Ticket {
        self.tickets.fetch_add(1, Ordering::SeqCst)
    }

    /// The page of `topic` at `position`, shared with a read of it under way if there is one.
    pub(crate) fn read(
        self: &Arc<Self>,
        topic: &Topic,
        position: Position,
    ) -> Shared<BoxFuture<'static, Read>> {
        let key = (topic.clone(), position);
        let mut flights = lock(&self.flights);
        if let Some(read) = flights.by_page.get(&key).and_then(|f| f.read.upgrade()) {
            self.coalesced.inc();
            return read;
        }
        let id = self.ticket();
        let this = self.clone();
        let topic = topic.clone();
        let read = async move {
            let sent = this.ticket();
            let read = match position {
                Position::From(from) => this.history.resume(&topic, from).await,
                Position::After(after) => {
                    this.history.after(&topic, after).await.map(|page| Resume {
                        truncated: None,
                        page,
                    })
                }
            };
            let mut flights = lock(&this.flights);
            let key = (topic, position);
            if flights.by_page.get(&key).is_some_and(|f| f.id == id) {
                flights.by_page.remove(&key);
            }
            (sent, read.map(Arc::new).map_err(Arc::new))
        }
        .boxed()
        .shared();
        if let Some(weak) = read.downgrade() {
            if flights.by_page.len() >= flights.prune_at {
                flights.by_page.retain(|_, f| f.read.upgrade().is_some());
                flights.prune_at = (flights.by_page.len() * 2).max(PRUNE_FIRST);
            }
            flights.by_page.insert(key, Flight { id, read: weak });
        }
        read
    }
}

// The lock guards a map updated without awaiting: a poisoned one is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
