//! [`Fleet`]: all the subscribers of a run, opened at `--ramp` per second and spread
//! round-robin over topics, subscribe URLs, source addresses and `--tokens`; and the two
//! signals they obey, stop and storm.
//!
//! The storm clients are the first [`StormPlan::clients`]; each draws how long it stays
//! away after the drop here, once: `--storm-away` plus a uniformly random share of
//! `--storm-spread`, so their reconnects spread evenly over that window.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::acked::Acked;
use crate::clients::{Signals, Subscriber};
use crate::plan::Plan;
use crate::tally::Tally;

/// How long to wait, after the last connection was started, for the slowest to answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Which subscribers take part in a reconnect storm, and how long they stay away.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StormPlan {
    /// The first this many connections.
    pub(crate) clients: usize,
    /// Each stays away at least this long after the drop…
    pub(crate) away: Duration,
    /// …plus a uniformly random part of this.
    pub(crate) spread: Duration,
}

impl StormPlan {
    /// No storm.
    pub(crate) const NONE: Self = Self {
        clients: 0,
        away: Duration::ZERO,
        spread: Duration::ZERO,
    };

    /// How long one storm client stays away: `away` plus a random part of `spread`.
    fn delay(&self) -> Duration {
        let spread = u64::try_from(self.spread.as_micros()).unwrap_or(u64::MAX);
        self.away + Duration::from_micros(fastrand::u64(0..=spread))
    }
}

/// The running subscribers.
pub(crate) struct Fleet {
    signals: Signals,
    tasks: JoinSet<()>,
    /// Connections per topic, for the events each topic's publishes are expected to yield.
    pub(crate) subscribers: Vec<u64>,
    /// From the first connection started until all were live or had failed.
    pub(crate) seconds_to_open: f64,
}

impl Fleet {
    /// Opens `plan.connections` subscribers; the first `storm.clients` take part in the
    /// storm; `acked` is what the publisher has seen acknowledged. Returns once every one is
    /// live or has failed (or after a timeout).
    pub(crate) async fn open(
        plan: &Plan,
        tally: &Arc<Tally>,
        acked: &Arc<Acked>,
        storm: StormPlan,
    ) -> Self {
        let signals = Signals {
            stop: CancellationToken::new(),
            storm: CancellationToken::new(),
        };
        let mut tasks = JoinSet::new();
        let mut subscribers = vec![0; plan.topics.len()];
        let opening = Instant::now();
        for index in 0..plan.connections {
            let topic = index % plan.topics.len();
            subscribers[topic] += 1;
            let subscriber = Subscriber {
                index,
                endpoint: plan.subscribe[index % plan.subscribe.len()].clone(),
                source: plan.sources[index % plan.sources.len()],
                topic: plan.topics[topic].clone(),
                topic_index: topic,
                authorization: plan
                    .tokens
                    .as_ref()
                    .map(|tokens| tokens.for_connection(index)),
                storm_delay: (index < storm.clients).then(|| storm.delay()),
                acked: acked.clone(),
            };
            tasks.spawn(subscriber.run(tally.clone(), signals.clone()));
            let due = Duration::from_secs_f64((index + 1) as f64 / plan.ramp as f64);
            tokio::time::sleep_until(opening + due).await;
        }
        let deadline = Instant::now() + OPEN_TIMEOUT;
        let settled = || {
            tally.live.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed)
                >= plan.connections as u64
        };
        while !settled() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            signals,
            tasks,
            subscribers,
            seconds_to_open: opening.elapsed().as_secs_f64(),
        }
    }

    /// Drops the storm subscribers' connections, all at once; they reconnect by themselves.
    pub(crate) fn storm(&self) {
        self.signals.storm.cancel();
    }

    /// Closes every connection and waits for the subscribers to finish.
    pub(crate) async fn stop(mut self) {
        self.signals.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
