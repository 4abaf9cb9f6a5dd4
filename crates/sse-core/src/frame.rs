//! The encoder: events, comments and `retry:` hints as bytes in the WHATWG HTML event-stream
//! format, encoded once and shared as [`Bytes`].
//!
//! A message on the wire is its fields followed by a blank line. A gateway sends one event to
//! many clients, but a client subscribed to several topics carries its own resume cursor as
//! the `id:`, so the encoding is split in two:
//!
//! - [`Frame`]: the whole message, encoded once per event with the event's own id and shared by
//!   every client (cloning is a reference-count bump); its `event:`/`data:` lines are a slice
//!   of the same buffer;
//! - [`id_tail`]: a short `id: <cursor>` line plus the blank line that dispatches the message,
//!   for a client whose id is its own multi-topic cursor.
//!
//! Payload lines are split at `\r\n`, `\r` and `\n` alike (a `\r\n` is one line ending), each
//! becoming its own `data:` line, so a parser reassembles the payload with `\n` line endings.
//! Values that would break the framing (a line break in an id or a comment, NUL in an id) are
//! refused with [`FrameError`], never sent.

use bytes::{BufMut, Bytes, BytesMut};

use crate::EventName;

/// A keep-alive comment: ignored by clients, but it keeps proxies and idle sockets honest.
pub const HEARTBEAT: Bytes = Bytes::from_static(b":\n\n");

/// Why a value cannot be written into the event stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// An `id:` value containing CR or LF would end the line early.
    #[error("an SSE id may not contain a line break")]
    LineBreakInId,
    /// An `id:` value containing NUL is ignored by every conforming client.
    #[error("an SSE id may not contain NUL: clients ignore such ids")]
    NulInId,
    /// A comment containing CR or LF would end the comment early.
    #[error("an SSE comment may not contain a line break")]
    LineBreakInComment,
}

/// One event on the wire, encoded once: its `event:` line (if named), one `data:` line per
/// payload line, its `id:` line (if any) and the blank line that dispatches it.
///
/// [`Frame::message`] is the whole message, for every client whose id for this event is the
/// event's own id. [`Frame::fields`] is the `event:`/`data:` part alone, a slice of the same
/// buffer, for a client that completes it with an [`id_tail`] of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    message: Bytes,
    fields_len: usize,
}

impl Frame {
    /// The blank line that dispatches a message without changing the client's last event id.
    pub const END: Bytes = Bytes::from_static(b"\n");

    /// Encodes an event. An empty payload is one empty `data:` line, which clients dispatch as
    /// an event with empty data.
    ///
    /// # Errors
    /// [`FrameError`] if `id` contains CR, LF or NUL.
    pub fn new(
        id: Option<&str>,
        name: Option<&EventName>,
        data: &[u8],
    ) -> Result<Self, FrameError> {
        if let Some(id) = id {
            check_id(id)?;
        }
        let name_len = name.map_or(0, |n| n.as_str().len() + 8);
        let id_len = id.map_or(0, |id| id.len() + 5);
        // Each line costs "data: " + "\n" on top of its bytes; most payloads are one line.
        let mut out = BytesMut::with_capacity(name_len + data.len() + id_len + 9);
        if let Some(name) = name {
            out.put_slice(b"event: ");
            out.put_slice(name.as_str().as_bytes());
            out.put_u8(b'\n');
        }
        for line in lines(data) {
            out.put_slice(b"data: ");
            out.put_slice(line);
            out.put_u8(b'\n');
        }
        let fields_len = out.len();
        if let Some(id) = id {
            out.put_slice(b"id: ");
            out.put_slice(id.as_bytes());
            out.put_u8(b'\n');
        }
        out.put_u8(b'\n');
        Ok(Self {
            message: out.freeze(),
            fields_len,
        })
    }

    /// The whole message, ready to write.
    pub fn message(&self) -> &Bytes {
        &self.message
    }

    /// The `event:` and `data:` lines alone (no copy): complete them with an [`id_tail`] or
    /// [`Frame::END`].
    pub fn fields(&self) -> Bytes {
        self.message.slice(..self.fields_len)
    }
}

/// Splits a payload into lines at `\r\n`, `\r` or `\n`. A payload always has at least one
/// line, and a trailing line ending yields a last empty line, so the split is lossless.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(at) => {
                let ending = if current[at..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[at + ending..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// `id: <id>` and the blank line: sets the client's last event id and dispatches the message
/// whose fields came before it. Sent alone, it moves the client's last event id without
/// dispatching anything (a message with no data is not dispatched).
///
/// # Errors
/// [`FrameError`] if `id` contains CR, LF or NUL.
pub fn id_tail(id: &str) -> Result<Bytes, FrameError> {
    check_id(id)?;
    let mut out = BytesMut::with_capacity(id.len() + 6);
    out.put_slice(b"id: ");
    out.put_slice(id.as_bytes());
    out.put_slice(b"\n\n");
    Ok(out.freeze())
}

fn check_id(id: &str) -> Result<(), FrameError> {
    if id.contains(['\r', '\n']) {
        return Err(FrameError::LineBreakInId);
    }
    if id.contains('\0') {
        return Err(FrameError::NulInId);
    }
    Ok(())
}

/// A comment message (`: text`), which clients ignore.
///
/// # Errors
/// [`FrameError::LineBreakInComment`] if `text` contains CR or LF.
pub fn comment(text: &str) -> Result<Bytes, FrameError> {
    if text.contains(['\r', '\n']) {
        return Err(FrameError::LineBreakInComment);
    }
    Ok(Bytes::from(format!(": {text}\n\n")))
}

/// A `retry:` message: how many milliseconds a client waits before reconnecting.
pub fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(name: Option<&str>, data: &str, id: Option<&str>) -> String {
        let name = name.map(|n| EventName::parse(n).unwrap());
        let frame = Frame::new(id, name.as_ref(), data.as_bytes()).unwrap();
        String::from_utf8(frame.message().to_vec()).unwrap()
    }

    #[test]
    fn one_data_line_per_payload_line_whatever_the_line_ending() {
        assert_eq!(message(None, "hello", None), "data: hello\n\n");
        assert_eq!(message(None, "", None), "data: \n\n");
        assert_eq!(message(None, "a\nb", None), "data: a\ndata: b\n\n");
        assert_eq!(message(None, "a\r\nb", None), "data: a\ndata: b\n\n");
        assert_eq!(message(None, "a\rb", None), "data: a\ndata: b\n\n");
        assert_eq!(message(None, "a\n", None), "data: a\ndata: \n\n");
        assert_eq!(
            message(None, "\r\n\r\n", None),
            "data: \ndata: \ndata: \n\n"
        );
        assert_eq!(
            message(None, "a\n\rb", None),
            "data: a\ndata: \ndata: b\n\n"
        );
    }

    #[test]
    fn named_events_and_ids() {
        assert_eq!(
            message(Some("order.created"), "{\"n\":1}", Some("1-0")),
            "event: order.created\ndata: {\"n\":1}\nid: 1-0\n\n"
        );
    }

    #[test]
    fn refuses_what_would_break_framing() {
        assert_eq!(id_tail("a\nb"), Err(FrameError::LineBreakInId));
        assert_eq!(id_tail("a\rb"), Err(FrameError::LineBreakInId));
        assert_eq!(id_tail("a\0b"), Err(FrameError::NulInId));
        assert_eq!(
            Frame::new(Some("a\nb"), None, b"x"),
            Err(FrameError::LineBreakInId)
        );
        assert_eq!(comment("a\nb"), Err(FrameError::LineBreakInComment));
    }

    #[test]
    fn control_frames() {
        assert_eq!(&retry(3000)[..], b"retry: 3000\n\n");
        assert_eq!(&comment("ok").unwrap()[..], b": ok\n\n");
        assert_eq!(&id_tail("5-1").unwrap()[..], b"id: 5-1\n\n");
        assert_eq!(&HEARTBEAT[..], b":\n\n");
    }
}
