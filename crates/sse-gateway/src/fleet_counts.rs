//! Fleet-wide subscriber counts: this node's share, written to Redis in batches.
//!
//! Every `--count-refresh` the node renews its `alive` key (and its entry in the members set)
//! and, in one pipeline, writes the count of every topic whose number of local streams
//! changed since it last wrote it (to the topic's key and to its own sorted set of topics), plus
//! those it has not rewritten for [`REWRITE_EVERY`] refreshes (so their keys never expire
//! under a node that is alive); a topic it no longer serves loses its field. A connect or a
//! disconnect costs nothing by itself: at steady state a node sends one pipeline of three
//! commands per refresh, and a topic with 10,000 streams here is one field. When the `alive` key was missing (the
//! node just started, or Redis lost its data), everything is written again at once. The schema
//! and how readers add the counts up: `sse_core::schema::counts`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounterVec;
use sse_core::ErrorChain;
use sse_core::Topic;
use sse_core::runtime::redis::Commands;
use sse_core::schema::counts::{
    ALIVE_REFRESHES, FORGET_NODES_AFTER, MEMBERS_KEY, REWRITE_EVERY, TOPIC_TTL_REFRESHES,
    alive_key, node_topics_key, subscribers_key,
};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::pipelines::Pipelines;

/// This node's part in the fleet's counts.
pub(crate) struct FleetCounts {
    pub(crate) hub: Arc<Hub>,
    pub(crate) redis: Commands,
    /// This node's id: its field in every topic's key.
    pub(crate) node: String,
    pub(crate) refresh: Duration,
    /// The longest a refresh may take (`--redis-timeout`); then it counts as failed.
    pub(crate) timeout: Duration,
    /// `sse_count_refreshes_total{outcome}`.
    pub(crate) refreshes: IntCounterVec,
}

/// What this node last wrote for a topic, and at which refresh.
#[derive(Clone, Copy)]
struct Written {
    count: usize,
    at: u64,
}

impl FleetCounts {
    /// Refreshes until `stopping`, then removes this node from the counts at once.
    pub(crate) async fn run(self, stopping: CancellationToken) {
        // Both series exist from the start, so a dashboard shows 0 failures, not no data.
        for outcome in ["ok", "failed"] {
            self.refreshes.with_label_values(&[outcome]);
        }
        let mut written = HashMap::new();
        let mut ticker = tokio::time::interval(self.refresh);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh = 0_u64;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stopping.cancelled() => break,
            }
            refresh += 1;
            let written_now = tokio::time::timeout(self.timeout, self.write(&mut written, refresh));
            let outcome = match written_now.await {
                Ok(Ok(())) => "ok",
                failed => {
                    match failed {
                        Ok(Err(error)) => {
                            tracing::warn!(error = %ErrorChain(&error), "could not refresh the subscriber counts")
                        }
                        _ => {
                            tracing::warn!(timeout = ?self.timeout, "refreshing the subscriber counts timed out")
                        }
                    }
                    // Unknown what arrived: write everything next time.
                    forget(&mut written);
                    "failed"
                }
            };
            self.refreshes.with_label_values(&[outcome]).inc();
        }
        // Readers stop counting this node's streams now, not when its key expires.
        let mut goodbye = redis::pipe();
        goodbye
            .del(&[alive_key(&self.node), node_topics_key(&self.node)])
            .zrem(MEMBERS_KEY, &self.node);
        let mut redis = self.redis.clone();
        let _ = tokio::time::timeout(Duration::from_secs(1), goodbye.exec_async(&mut redis)).await;
    }

    /// One refresh: renews `alive`, writes what changed since `written` said, updates it.
    async fn write(
        &self,
        written: &mut HashMap<Topic, Written>,
        refresh: u64,
    ) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        let ttl = |refreshes: u32| {
            u64::try_from((self.refresh * refreshes).as_millis()).unwrap_or(u64::MAX)
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let forget_before = now.saturating_sub(FORGET_NODES_AFTER).as_millis();
        let (known,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(alive_key(&self.node))
            .arg(1)
            .arg("PX")
            .arg(ttl(ALIVE_REFRESHES))
            .arg("GET")
            .zadd(
                MEMBERS_KEY,
                &self.node,
                u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
            )
            .ignore()
            .zrembyscore(
                MEMBERS_KEY,
                "-inf",
                u64::try_from(forget_before).unwrap_or(0),
            )
            .ignore()
            .query_async(&mut redis)
            .await?;
        if known.is_none() {
            // Redis does not know this node (it lost its data, or the node was away longer
            // than its alive key): write everything, and remove what went meanwhile.
            forget(written);
        }
        let counts = self.hub.local_counts();
        let mut pipes = Pipelines::new(&redis);
        let mut changes = Vec::new();
        // This node's topics by their counts, for the fleet's busiest topics.
        let own = node_topics_key(&self.node);
        let topic_ttl = i64::try_from(ttl(TOPIC_TTL_REFRESHES)).unwrap_or(i64::MAX);
        for (topic, &count) in &counts {
            let fresh = written.get(topic).is_some_and(|last| {
                last.count == count && refresh - last.at < u64::from(REWRITE_EVERY)
            });
            if !fresh {
                let key = subscribers_key(topic);
                let pipe = pipes.for_key(&key);
                pipe.hset(&key, &self.node, count).ignore();
                pipe.pexpire(&key, topic_ttl).ignore();
                pipes
                    .for_key(&own)
                    .zadd(&own, topic.as_str(), count)
                    .ignore();
                changes.push((topic.clone(), Some(count)));
            }
        }
        for topic in written.keys().filter(|topic| !counts.contains_key(*topic)) {
            let key = subscribers_key(topic);
            pipes.for_key(&key).hdel(&key, &self.node).ignore();
            pipes.for_key(&own).zrem(&own, topic.as_str()).ignore();
            changes.push((topic.clone(), None));
        }
        if !changes.is_empty() {
            pipes.for_key(&own).pexpire(&own, topic_ttl).ignore();
        }
        for pipe in pipes.into_pipelines() {
            pipe.exec_async(&mut redis).await?;
        }
        for (topic, count) in changes {
            match count {
                Some(count) => {
                    written.insert(topic, Written { count, at: refresh });
                }
                None => {
                    written.remove(&topic);
                }
            }
        }
        Ok(())
    }
}

/// Makes every topic in `written` due for a rewrite, keeping them all, so that one this node
/// no longer serves still loses its field.
fn forget(written: &mut HashMap<Topic, Written>) {
    for last in written.values_mut() {
        last.count = usize::MAX;
    }
}

/// A node id for this process: 16 random hex digits.
pub(crate) fn random_node_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}
