//! # sse-core: the contract the SSE gateway's parts share
//!
//! The publisher writes events, the gateway reads and fans them out, the benchmark and the tests
//! check them, and third parties publish straight into Redis. They agree through this crate, and
//! only through it:
//!
//! - [`topic`]: [`Topic`], the validated topic name every key, channel and URL is built from;
//! - [`event`]: [`Event`], [`EventName`] and [`EventId`] (a Redis stream id);
//! - [`frame`]: the WHATWG event-stream encoder, one encode per event into shared [`bytes::Bytes`];
//! - [`parser`]: a streaming WHATWG event-stream parser, fed any chunking, for clients and tests;
//! - [`cursor`]: [`Cursor`], the resume position a client carries as its `Last-Event-ID`;
//! - [`control`]: the control events the gateway itself sends (history truncated);
//! - [`error_chain`]: [`ErrorChain`], an error with its causes as the one line a person reads;
//! - [`schema`]: the Redis contract: keys, channels, the publish function and its payload;
//! - `jwt` (feature `jwt`): verifying tokens and reading the topics they allow, for both
//!   services;
//! - `runtime` (feature `runtime`): log setup and the shutdown signal the binaries share.
//!
//! The crate is sans-I/O (no runtime, no sockets), so anything can depend on it. Input from the
//! outside (a socket, a request, Redis) goes through parsers that return typed errors; nothing
//! here panics on it.

#![warn(missing_docs)]

pub mod control;
pub mod cursor;
pub mod error_chain;
pub mod event;
pub mod frame;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod parser;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod schema;
pub mod topic;

pub use cursor::{Cursor, CursorError};
pub use error_chain::ErrorChain;
pub use event::{Event, EventId, EventIdError, EventName, EventNameError};
pub use frame::{Frame, FrameError};
pub use parser::{Item, MessageEvent, ParseError, Parser};
pub use topic::{Topic, TopicError};
