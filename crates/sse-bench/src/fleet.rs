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

/// Whether connection `index` of `connections` over `topics` is one of the `sample` timed
/// ones (all without a sample). The sample is spread over the topics: topic `t` (connections
/// `t`, `t + T`, …) gets its share of it, `⌊(t+1)·n/T⌋ − ⌊t·n/T⌋`, from its first
/// connections on, so a sample smaller than the topics times one connection on every few
/// topics, and a larger one the same number on each.
fn is_timed(index: usize, connections: usize, topics: usize, sample: Option<usize>) -> bool {
    let Some(sample) = sample else {
        return true;
    };
    if sample >= connections {
        return true;
    }
    let topics = topics.max(1);
    let topic = index % topics;
    let share = (topic + 1) * sample / topics - topic * sample / topics;
    index / topics < share
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
    /// Opens this shard's `plan.connections` subscribers (connection numbers are of the
    /// whole run, so topics and the timed sample are the same however the run is split);
    /// the first `storm.clients` take part in the
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
        for (opened, index) in plan.shard.indices(plan.total_connections).enumerate() {
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
                timed: is_timed(
                    index,
                    plan.connections,
                    plan.topics.len(),
                    plan.timed_sample,
                ),
            };
            tasks.spawn(subscriber.run(tally.clone(), signals.clone()));
            let due = Duration::from_secs_f64((opened + 1) as f64 / plan.ramp as f64);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(connections: usize, topics: usize, sample: Option<usize>) -> Vec<usize> {
        (0..connections)
            .filter(|&index| is_timed(index, connections, topics, sample))
            .collect()
    }

    #[test]
    fn without_a_sample_every_connection_is_timed() {
        assert_eq!(timed(5, 2, None), [0, 1, 2, 3, 4]);
        assert_eq!(timed(5, 2, Some(9)), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_sample_is_spread_over_the_topics() {
        // One topic: the first n.
        assert_eq!(timed(10_000, 1, Some(500)).len(), 500);
        // 1,000 topics, 500 timed: one on every other topic.
        let sampled = timed(10_000, 1000, Some(500));
        assert_eq!(sampled.len(), 500);
        let topics: std::collections::BTreeSet<usize> =
            sampled.iter().map(|index| index % 1000).collect();
        assert_eq!(topics.len(), 500);
        // 10 topics, 500 timed: 50 on each.
        let sampled = timed(10_000, 10, Some(500));
        assert_eq!(sampled.len(), 500);
        for topic in 0..10 {
            assert_eq!(sampled.iter().filter(|&&i| i % 10 == topic).count(), 50);
        }
        assert!(timed(100, 3, Some(0)).is_empty());
    }
}
