//! Presence: which subjects (a token's `sub`) have a stream open on a topic anywhere in the
//! fleet, and their joins and leaves as events any client can resume.
//!
//! | key | holds | written |
//! |---|---|---|
//! | `sse:{presence:<topic>}:present` | a hash: subject → the ids of the nodes it has streams on, space-separated | by `sse_presence` when a node's subjects change, and at least every [`REWRITE_EVERY`] count refreshes; expires [`TOPIC_TTL_REFRESHES`] refreshes after the last write |
//! | `sse:{presence:<topic>}:stream` | the companion topic `presence:<topic>`'s history: events `join` and `leave`, data `{"topic":"<topic>","sub":"<subject>"}` | by `sse_presence`, in the same call that changes the hash |
//! | `sse:{nodes}:presence:<node>` | a set: the topics the node holds subjects on | with the topic's hash; expires like it |
//! | `sse:{nodes}:reaped:<node>` | `1`: a live node is removing a gone node's subjects | by that node, for [`REAP_CLAIM`] |
//!
//! Keys of the hash and the companion stream carry the companion topic as hash tag, so one
//! call on a Redis Cluster touches one slot. A reader lists the subjects with at least one
//! node whose `alive` key exists ([`super::counts`]): a node killed without a word drops out
//! within the same bound as its counts. A live node that finds a gone node in
//! `sse:{nodes}:members` then removes it from every topic it held (`*`), which publishes the
//! leaves of the subjects nobody else holds; a subject that reconnected to another node
//! meanwhile never left, so a node's crash costs no leave and join pair for clients that came
//! back.

use std::time::Duration;

use bytes::Bytes;

use crate::Topic;

/// The function that records one node's presence changes on one topic.
pub const FUNCTION: &str = "sse_presence";

/// The companion topic of `<topic>` is `presence:<topic>`.
pub const COMPANION_PREFIX: &str = "presence:";

/// The event a subject's first stream anywhere publishes on the companion topic.
pub const JOIN_EVENT: &str = "join";
/// The event a subject's last stream anywhere ending publishes on the companion topic.
pub const LEAVE_EVENT: &str = "leave";

/// About this many newest joins and leaves each companion topic keeps.
pub const MAX_LEN: u64 = 1000;
/// A companion topic's history expires once no join or leave was appended for this long.
pub const MAX_IDLE: Duration = Duration::from_secs(24 * 3600);

/// A node rewrites the subjects it holds on a topic at least every this many count refreshes.
pub const REWRITE_EVERY: u32 = super::counts::REWRITE_EVERY;
/// A topic's presence hash expires this many count refreshes after a node last wrote it.
pub const TOPIC_TTL_REFRESHES: u32 = super::counts::TOPIC_TTL_REFRESHES;

/// How long a node's claim to remove a gone node's subjects lasts.
pub const REAP_CLAIM: Duration = Duration::from_secs(3600);

/// The longest subject presence records, in bytes.
pub const MAX_SUBJECT: usize = 1024;

/// `presence:<topic>`, unless `topic` is a companion topic itself or too long to have one.
pub fn companion(topic: &Topic) -> Option<Topic> {
    if topic.as_str().starts_with(COMPANION_PREFIX) {
        return None;
    }
    Topic::parse(&format!("{COMPANION_PREFIX}{topic}")).ok()
}

/// `sse:{presence:<topic>}:present`, for the companion topic `presence:<topic>`.
pub fn present_key(companion: &Topic) -> String {
    format!("sse:{{{companion}}}:present")
}

/// `sse:{nodes}:presence:<node>`.
pub fn node_presence_key(node: &str) -> String {
    format!("sse:{{nodes}}:presence:{node}")
}

/// `sse:{nodes}:reaped:<node>`.
pub fn reaped_key(node: &str) -> String {
    format!("sse:{{nodes}}:reaped:{node}")
}

/// One change a node makes to who it holds on a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The node has a stream of this subject now.
    Holds(String),
    /// The node no longer has one.
    Released(String),
    /// The node holds nobody any more: it is gone.
    Gone,
}

/// One `FCALL sse_presence 2 <present> <stream> <node> <maxlen> <idle-ms> <ttl-ms> <op> <subject>…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceCall {
    /// The companion topic's presence hash and stream.
    pub keys: [String; 2],
    /// `node`, `maxlen`, `idle-ms`, `ttl-ms`, then an op and a subject per change.
    pub args: Vec<Bytes>,
}

impl PresenceCall {
    /// The call recording `changes` by `node` on the topic whose companion is `companion`,
    /// the hash kept for `ttl`.
    pub fn new(companion: &Topic, node: &str, ttl: Duration, changes: &[Change]) -> Self {
        let mut args: Vec<Bytes> = [
            node.to_owned(),
            MAX_LEN.to_string(),
            MAX_IDLE.as_millis().to_string(),
            ttl.as_millis().max(1).to_string(),
        ]
        .into_iter()
        .map(Bytes::from)
        .collect();
        for change in changes {
            let (op, subject) = match change {
                Change::Holds(subject) => ("+", subject.as_str()),
                Change::Released(subject) => ("-", subject.as_str()),
                Change::Gone => ("*", ""),
            };
            args.push(Bytes::from_static(op.as_bytes()));
            args.push(Bytes::copy_from_slice(subject.as_bytes()));
        }
        Self {
            keys: [present_key(companion), super::stream_key(companion)],
            args,
        }
    }

    /// The `FCALL` command itself.
    #[cfg(feature = "runtime")]
    pub fn command(&self) -> redis::Cmd {
        super::script::fcall(FUNCTION, &self.keys, &self.args)
    }
}

/// The subjects of a presence hash's `fields` (subject, nodes as Redis holds them) that have
/// a node `alive` says is, sorted.
pub fn present<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    alive: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut subjects: Vec<String> = fields
        .into_iter()
        .filter(|(_, nodes)| nodes_of(nodes).any(&alive))
        .map(|(subject, _)| subject.to_owned())
        .collect();
    subjects.sort_unstable();
    subjects
}

/// The node ids a presence hash's value names.
pub fn nodes_of(value: &str) -> impl Iterator<Item = &str> {
    value.split(' ').filter(|node| !node.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Topic {
        Topic::parse(name).unwrap()
    }

    #[test]
    fn a_topic_has_a_companion_unless_it_is_one_or_too_long() {
        assert_eq!(companion(&topic("orders")), Some(topic("presence:orders")));
        assert_eq!(companion(&topic("presence:orders")), None);
        assert_eq!(companion(&topic(&"a".repeat(128))), None);
        assert_eq!(
            companion(&topic(&"a".repeat(119))).map(|t| t.as_str().len()),
            Some(128)
        );
    }

    #[test]
    fn keys_carry_the_companion_topic_as_tag() {
        let companion = topic("presence:orders");
        assert_eq!(present_key(&companion), "sse:{presence:orders}:present");
        assert_eq!(node_presence_key("n1"), "sse:{nodes}:presence:n1");
        assert_eq!(reaped_key("n1"), "sse:{nodes}:reaped:n1");
    }

    #[test]
    fn the_call_follows_the_documented_argument_order() {
        let changes = [
            Change::Holds("alice".into()),
            Change::Released("bob".into()),
            Change::Gone,
        ];
        let call = PresenceCall::new(
            &topic("presence:orders"),
            "n1",
            Duration::from_secs(1800),
            &changes,
        );
        assert_eq!(
            call.keys,
            [
                "sse:{presence:orders}:present",
                "sse:{presence:orders}:stream"
            ]
        );
        let args: Vec<&[u8]> = call.args.iter().map(|a| &a[..]).collect();
        let expected: [&[u8]; 10] = [
            b"n1",
            b"1000",
            b"86400000",
            b"1800000",
            b"+",
            b"alice",
            b"-",
            b"bob",
            b"*",
            b"",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn only_subjects_on_a_live_node_are_present() {
        let fields = [("carol", "dead"), ("bob", "dead n2"), ("alice", "n1")];
        assert_eq!(present(fields, |node| node != "dead"), ["alice", "bob"]);
        assert_eq!(nodes_of("n1 n2").collect::<Vec<_>>(), ["n1", "n2"]);
    }
}
