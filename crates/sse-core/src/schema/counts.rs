//! Fleet-wide subscriber counts: what each gateway node tells Redis about the streams it holds,
//! and how a reader adds them up.
//!
//! | key | holds | written |
//! |---|---|---|
//! | `sse:{<topic>}:subscribers` | a hash: node id → the streams that node has open on the topic | by each node when its count changed, and at least every [`REWRITE_EVERY`] refreshes; expires [`TOPIC_TTL_REFRESHES`] refreshes after the last write |
//! | `sse:{nodes}:alive:<node>` | `1`, while the node is alive | by the node every refresh, with an expiry of [`ALIVE_REFRESHES`] refreshes |
//! | `sse:{nodes}:topics:<node>` | a sorted set: the node's topics, scored by its streams on each | with the topic's key; expires like it |
//! | `sse:{nodes}:members` | a sorted set: node ids, scored by the time (ms) of their last refresh | by each node every refresh; ids older than [`FORGET_NODES_AFTER`] are dropped |
//!
//! A reader counts only the fields of nodes whose `alive` key exists: a node killed without
//! a word drops out of every count within [`ALIVE_REFRESHES`] refreshes, and its stale fields
//! go with the topic's key later. The busiest topics over the fleet are the union of the live
//! nodes' `topics` sets (`ZUNION`, one slot thanks to the shared tag). A node whose `alive` key was missing when it renewed it
//! (it just started, or Redis lost its data) writes all its counts again at once. The topic's
//! key carries the topic as hash tag, so it lives in the topic's slot on a Redis Cluster; the
//! `alive` keys share the tag `{nodes}`, so a reader checks any number of nodes in one `MGET`.

use crate::Topic;

/// A node counts as gone when it did not renew its `alive` key for this many refreshes.
pub const ALIVE_REFRESHES: u32 = 3;
/// A node rewrites each of its counts at least every this many refreshes, changed or not.
pub const REWRITE_EVERY: u32 = 60;
/// A topic's key expires this many refreshes after a node last wrote it.
pub const TOPIC_TTL_REFRESHES: u32 = 3 * REWRITE_EVERY;

/// Node ids that have not refreshed for this long leave `sse:{nodes}:members`.
pub const FORGET_NODES_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `sse:{nodes}:members`.
pub const MEMBERS_KEY: &str = "sse:{nodes}:members";

/// `sse:{nodes}:topics:<node>`.
pub fn node_topics_key(node: &str) -> String {
    format!("sse:{{nodes}}:topics:{node}")
}

/// `sse:{<topic>}:subscribers`.
pub fn subscribers_key(topic: &Topic) -> String {
    format!("sse:{{{topic}}}:subscribers")
}

/// `sse:{nodes}:alive:<node>`.
pub fn alive_key(node: &str) -> String {
    format!("sse:{{nodes}}:alive:{node}")
}

/// A topic's subscribers across the fleet: the fields of its key whose node is alive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetCount {
    /// Open streams on the topic, over every live node.
    pub subscribers: u64,
    /// Live nodes with at least one of them.
    pub nodes: u64,
}

impl FleetCount {
    /// Adds up `fields` (node, count as Redis holds it) of the nodes `alive` says are.
    pub fn of<'a>(
        fields: impl IntoIterator<Item = (&'a str, u64)>,
        alive: impl Fn(&str) -> bool,
    ) -> Self {
        fields
            .into_iter()
            .filter(|(node, count)| *count > 0 && alive(node))
            .fold(Self::default(), |total, (_, count)| Self {
                subscribers: total.subscribers + count,
                nodes: total.nodes + 1,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_topic_or_the_nodes_tag() {
        let topic = Topic::parse("orders").unwrap();
        assert_eq!(subscribers_key(&topic), "sse:{orders}:subscribers");
        assert_eq!(alive_key("n1"), "sse:{nodes}:alive:n1");
    }

    #[test]
    fn only_live_nodes_count() {
        let fields = [("a", 3), ("b", 2), ("dead", 7), ("c", 0)];
        let count = FleetCount::of(fields, |node| node != "dead");
        assert_eq!(
            count,
            FleetCount {
                subscribers: 5,
                nodes: 2
            }
        );
    }
}
