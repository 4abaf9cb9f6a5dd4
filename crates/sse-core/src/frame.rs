//! The encoder: events, comments and `retry:` hints as bytes in the WHATWG HTML event-stream
//! format, encoded once and shared as [`Bytes`].
//!
//! A message on the wire is its fields followed by a blank line. A gateway sends one event to
//! many clients, but a client subscribed to several topics carries its own resume cursor as
//! the `id:`, so the encoding is split in two:
//!
//! - [`Frame`]: the `event:` and `data:` lines, encoded once per event and shared by every
//!   client (cloning is a reference-count bump);
//! - [`id_tail`]: the short `id: <id>` line plus the blank line that dispatches the message,
//!   per client (or shared too, when every client has the same id).
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

/// The shared part of one event on the wire: its `event:` line (if named) and one `data:`
/// line per payload line. Complete it with [`id_tail`] or [`Frame::END`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    fields: Bytes,
}

impl Frame {
    /// The blank line that dispatches a message without changing the client's last event id.
    pub const END: Bytes = Bytes::from_static(b"\n");

    /// Encodes an event's name and payload. An empty payload is one empty `data:` line, which
    /// clients dispatch as an event with empty data.
    pub fn new(name: Option<&EventName>, data: &[u8]) -> Self {
        let name_len = name.map_or(0, |n| n.as_str().len() + 8);
        // Each line costs "data: " + "\n" on top of its bytes; most payloads are one line.
        let mut out = BytesMut::with_capacity(name_len + data.len() + 8);
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
        Self {
            fields: out.freeze(),
        }
    }

    /// The encoded `event:` and `data:` lines.
    pub fn fields(&self) -> &Bytes {
        &self.fields
    }

    /// The whole message with `id` as its `id:` field, in one buffer. The fan-out path sends
    /// [`Frame::fields`] and an [`id_tail`] as two buffers instead, to share the first.
    ///
    /// # Errors
    /// [`FrameError`] if `id` contains CR, LF or NUL.
    pub fn to_message(&self, id: Option<&str>) -> Result<Bytes, FrameError> {
        let tail = match id {
            Some(id) => id_tail(id)?,
            None => Self::END,
        };
        let mut out = BytesMut::with_capacity(self.fields.len() + tail.len());
        out.put_slice(&self.fields);
        out.put_slice(&tail);
        Ok(out.freeze())
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
    if id.contains(['\r', '\n']) {
        return Err(FrameError::LineBreakInId);
    }
    if id.contains('\0') {
        return Err(FrameError::NulInId);
    }
    let mut out = BytesMut::with_capacity(id.len() + 6);
    out.put_slice(b"id: ");
    out.put_slice(id.as_bytes());
    out.put_slice(b"\n\n");
    Ok(out.freeze())
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
        let bytes = Frame::new(name.as_ref(), data.as_bytes())
            .to_message(id)
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
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
