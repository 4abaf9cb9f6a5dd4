//! The publish function as data: its Lua source, its name and how to call it, without
//! depending on any Redis client, so every reader and writer builds the same call.

use std::time::Duration;

use bytes::Bytes;

use super::idempotency::Record;
use super::keys::stream_key;
use crate::Event;

/// The Redis function library (`#!lua name=sse`), for `FUNCTION LOAD REPLACE`. Loading it
/// again is harmless, so every process that publishes loads it at startup and whenever Redis
/// answers that the function is missing.
pub const LIBRARY: &str = include_str!("publish.lua");

/// The library for a Redis Cluster: the same function, announcing with `SPUBLISH` on the
/// topic's shard instead of `PUBLISH` to every node (see `publish.lua`).
pub fn cluster_library() -> String {
    LIBRARY.replacen(ANNOUNCE_LINE, CLUSTER_ANNOUNCE_LINE, 1)
}

/// The one line of [`LIBRARY`] that differs on a Redis Cluster.
const ANNOUNCE_LINE: &str = "local ANNOUNCE = 'PUBLISH'\n";
const CLUSTER_ANNOUNCE_LINE: &str = "local ANNOUNCE = 'SPUBLISH'\n";

/// `limit` in whole milliseconds, `0` for none.
fn millis(limit: Option<Duration>) -> u128 {
    limit.map_or(0, |limit| limit.as_millis())
}

/// The function that publishes one event.
pub const FUNCTION: &str = "sse_publish";

/// How much history each topic's stream keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// About this many newest entries are kept (`XADD … MAXLEN ~`: Redis trims whole
    /// internal nodes, so the stream may hold up to one node, 100 entries by default, more).
    pub max_len: u64,
    /// Entries older than this are trimmed, also approximately (`XTRIM … MINID ~`).
    pub max_age: Option<Duration>,
    /// The whole stream expires once nothing was appended for this long (`PEXPIRE` on every
    /// append), so an idle topic holds no memory.
    pub max_idle: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_len: 10_000,
            max_age: None,
            max_idle: None,
        }
    }
}

/// One `FCALL sse_publish <numkeys> <keys…> <args…>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishCall {
    /// The topic's stream key, and with an idempotency key its record's key.
    pub keys: Vec<String>,
    /// `data`, `event` (empty for none), `maxlen`, `max-age-ms` (0 for none), and `idle-ms`
    /// with a `max_idle`; recorded, then `idle-ms` (0 for none), `window-ms`, `index` and
    /// `count`.
    pub args: Vec<Bytes>,
}

impl PublishCall {
    /// The call that publishes `event` with `retention`.
    pub fn new(event: &Event, retention: Retention) -> Self {
        let name = event.name.as_ref().map_or("", |n| n.as_str());
        let mut args = vec![
            event.data.clone(),
            Bytes::copy_from_slice(name.as_bytes()),
            Bytes::from(retention.max_len.to_string()),
            Bytes::from(millis(retention.max_age).to_string()),
        ];
        // Only when asked for: the four-argument call is what publishers of every version
        // send, and it keeps working on a library loaded by an older one.
        if retention.max_idle.is_some() {
            args.push(Bytes::from(millis(retention.max_idle).to_string()));
        }
        Self {
            keys: vec![stream_key(&event.topic)],
            args,
        }
    }

    /// The call that publishes `event`, position `index` of a request of `count` events, at
    /// most once under `record` (see [`super::idempotency`]).
    pub fn recorded(
        event: &Event,
        retention: Retention,
        record: &Record,
        index: usize,
        count: usize,
    ) -> Self {
        let mut call = Self::new(event, retention);
        if retention.max_idle.is_none() {
            call.args.push(Bytes::from_static(b"0"));
        }
        call.keys.push(record.key.clone());
        let window_ms = record.window.as_millis().max(1);
        call.args
            .extend([window_ms.to_string(), index.to_string(), count.to_string()].map(Bytes::from));
        call
    }

    /// The `FCALL` command itself (with the `runtime` feature, which brings the redis crate).
    #[cfg(feature = "runtime")]
    pub fn command(&self) -> redis::Cmd {
        fcall(FUNCTION, &self.keys, &self.args)
    }
}

/// `FCALL <function> <numkeys> <keys…> <args…>`.
#[cfg(feature = "runtime")]
pub(crate) fn fcall(function: &str, keys: &[String], args: &[Bytes]) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(function).arg(keys.len()).arg(keys);
    for arg in args {
        cmd.arg(&arg[..]);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::IdempotencyKey;
    use crate::{EventName, Topic};

    #[test]
    fn the_call_follows_the_documented_argument_order() {
        let event = Event::new(Topic::parse("orders").unwrap(), "{\"n\":1}")
            .named(EventName::parse("created").unwrap());
        let retention = Retention {
            max_len: 500,
            max_age: Some(Duration::from_secs(60)),
            max_idle: Some(Duration::from_secs(3600)),
        };
        let call = PublishCall::new(&event, retention);
        assert_eq!(call.keys, ["sse:{orders}:stream"]);
        assert_eq!(
            texts(&call),
            ["{\"n\":1}", "created", "500", "60000", "3600000"]
        );

        let plain = PublishCall::new(&event, Retention::default());
        assert_eq!(
            texts(&plain),
            ["{\"n\":1}", "created", "10000", "0"],
            "no idle limit: the four arguments of every version"
        );

        let key = IdempotencyKey::parse(b"k1").unwrap();
        let first = Topic::parse("first").unwrap();
        let record = Record::new(&first, &key, Duration::from_secs(300));
        let call = PublishCall::recorded(&event, retention, &record, 1, 3);
        assert_eq!(
            call.keys,
            ["sse:{orders}:stream", "sse:{first}:idempotency:k1"]
        );
        assert_eq!(
            texts(&call),
            [
                "{\"n\":1}",
                "created",
                "500",
                "60000",
                "3600000",
                "300000",
                "1",
                "3"
            ]
        );
    }

    fn texts(call: &PublishCall) -> Vec<String> {
        call.args
            .iter()
            .map(|a| String::from_utf8(a.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn the_cluster_library_differs_only_in_how_it_announces() {
        let cluster = cluster_library();
        assert!(LIBRARY.contains(ANNOUNCE_LINE));
        assert!(cluster.contains(CLUSTER_ANNOUNCE_LINE));
        assert_eq!(
            cluster.replacen(CLUSTER_ANNOUNCE_LINE, ANNOUNCE_LINE, 1),
            LIBRARY
        );
        assert_eq!(
            LIBRARY.matches("'PUBLISH'").count(),
            1,
            "one announce line to change"
        );
    }

    #[test]
    fn the_library_registers_the_function_it_is_called_by() {
        assert!(LIBRARY.starts_with("#!lua name=sse\n"));
        assert!(LIBRARY.contains(&format!("redis.register_function('{FUNCTION}'")));
    }
}
