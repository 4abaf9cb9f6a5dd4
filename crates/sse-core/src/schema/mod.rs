//! # The Redis schema: every key, channel and payload byte, and the publish function
//!
//! This module is the written contract between publishers (ours, or anyone with a Redis
//! client) and gateways. A change to anything here is a breaking change.
//!
//! ## Keys and channels, per topic
//!
//! | what | name | holds |
//! |---|---|---|
//! | history | `sse:{<topic>}:stream` | a Redis stream; entry fields `data` and, if named, `event` |
//! | live | `sse:{<topic>}:live` | pub/sub messages `<id>\n<event>\n<data>`; on a Cluster also `sse.probe` ([`PROBE_MESSAGE`], skipped by readers) |
//! | idempotency record | `sse:{<topic>}:idempotency:<key>` | a hash, for [`IdempotencyKey`] `<key>` of a request whose first event is on `<topic>`: `count` (the request's events) and per position `i` `digest:<i>` (SHA-1 of topic, name and data) and `id:<i>`; it expires after the window |
//! | subscribers | `sse:{<topic>}:subscribers`, `sse:{nodes}:alive:<node>` | each gateway node's count of its open streams on the topic, and whether the node is alive ([`counts`]) |
//! | presence | `sse:{presence:<topic>}:present`, `sse:{nodes}:presence:<node>` | with `--presence`: which subjects have streams on the topic on which nodes; joins and leaves are events of the companion topic `presence:<topic>` ([`presence`]) |
//!
//! The topic is the Redis Cluster hash tag, so a topic's keys live in one hash slot ([`keys`]).
//!
//! ## Publishing: one atomic call
//!
//! The function library [`script::LIBRARY`] (`publish.lua`, library `sse`) registers
//! `sse_publish`:
//!
//! ```text
//! FCALL sse_publish 1 sse:{<topic>}:stream <data> <event or ""> <maxlen> <max-age-ms or 0> [<idle-ms>]
//! ```
//!
//! It validates the topic and event name (the same rules as [`crate::Topic`] and
//! [`crate::EventName`]), `XADD`s the entry with `MAXLEN ~ <maxlen>` (and `XTRIM MINID ~` for
//! a max age; with an `<idle-ms>` other than 0, `PEXPIRE`s the stream by it, so a topic nobody
//! publishes to any more frees its history), then `PUBLISH`es the live message (`SPUBLISH` on a Redis Cluster: the library
//! loaded there, [`script::cluster_library`], differs in that one word), and returns the new id. Being one function
//! call, it runs atomically: no reader ever sees a live message whose entry is not in the
//! stream, and a refused or failed call has written nothing.
//!
//! With an idempotency key (a publish retried after its reply was lost, say), the call takes
//! the key's record as a second key and the window, and the event's position in its request:
//!
//! ```text
//! FCALL sse_publish 2 sse:{<topic>}:stream sse:{<first topic>}:idempotency:<key>
//!       <data> <event or ""> <maxlen> <max-age-ms or 0> <idle-ms or 0> <window-ms> [<index> <count>]
//! ```
//!
//! A position the record already holds with the same content is not written again: the call
//! returns `[<its id>, 1]` instead of `[<new id>, 0]`; a record made for another request is a
//! `CONFLICT` error, and nothing is written ([`idempotency`]). A batch is one `MULTI` of such
//! calls, position `0` to `count - 1`, all with the first event's record.
//!
//! The library also registers `sse_presence`, which gateways call to record who is listening
//! and which appends joins and leaves exactly as `sse_publish` appends events ([`presence`]).
//!
//! ## Ids
//!
//! The event id is the stream id Redis assigns (`<ms>-<seq>`): strictly increasing per topic,
//! and its millisecond part is the publish time on the Redis clock.
//!
//! ## Loading the function
//!
//! `FUNCTION LOAD REPLACE` with [`script::LIBRARY`] is idempotent; `sse-publisher` does it at
//! startup and again when Redis reports the function missing (after a restart without
//! persistence). From a shell:
//! `redis-cli -x FUNCTION LOAD REPLACE < crates/sse-core/src/schema/publish.lua`. On a
//! Cluster, `FUNCTION LOAD` goes to every master (replicas get it by replication), and the
//! gateways subscribe with `SSUBSCRIBE`; the channel name is the same.

pub mod counts;
pub mod idempotency;
pub mod keys;
pub mod payload;
pub mod presence;
pub mod script;

pub use counts::{FleetCount, MEMBERS_KEY, alive_key, node_topics_key, subscribers_key};
pub use idempotency::{IdempotencyKey, InvalidIdempotencyKey, Record};
pub use keys::{PROBE_MESSAGE, live_channel, stream_key, topic_of_channel};
pub use payload::{PayloadError, PublishedEvent};
pub use script::{FUNCTION, LIBRARY, PublishCall, Retention, cluster_library};
