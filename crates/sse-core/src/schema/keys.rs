//! Key and channel names: the only place they are spelled.
//!
//! Both contain the topic as a Redis Cluster hash tag (`{topic}`), so a topic's stream and
//! channel always share one hash slot, and under Cluster one shard serves the whole topic.

use crate::Topic;

/// The stream holding `topic`'s history: `sse:{<topic>}:stream`.
pub fn stream_key(topic: &Topic) -> String {
    format!("sse:{{{topic}}}:stream")
}

/// The pub/sub channel announcing `topic`'s new events: `sse:{<topic>}:live`.
pub fn live_channel(topic: &Topic) -> String {
    format!("sse:{{{topic}}}:live")
}

/// A live message that is not an event: a gateway on a Redis Cluster publishes it on a
/// channel to learn when its subscription carries the channel's messages. Readers skip it;
/// it cannot be mistaken for an event, whose message begins with its id (a digit).
pub const PROBE_MESSAGE: &[u8] = b"sse.probe";

/// The topic a live channel name belongs to, if it is one of ours.
pub fn topic_of_channel(channel: &str) -> Option<Topic> {
    let inner = channel.strip_prefix("sse:{")?.strip_suffix("}:live")?;
    Topic::parse(inner).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_is_the_hash_tag() {
        let topic = Topic::parse("user:42/inbox").unwrap();
        assert_eq!(stream_key(&topic), "sse:{user:42/inbox}:stream");
        assert_eq!(live_channel(&topic), "sse:{user:42/inbox}:live");
        assert_eq!(topic_of_channel(&live_channel(&topic)), Some(topic));
        assert_eq!(topic_of_channel("sse:{a b}:live"), None);
        assert_eq!(topic_of_channel("other"), None);
    }
}
