//! The decoder: a push-style, sans-I/O event-stream parser that follows the WHATWG HTML
//! algorithm "interpreting an event stream" (§ 9.2.6) to the letter.
//!
//! The tests, the benchmark driver and any Rust client read the gateway through it, so it
//! checks the encoder in [`crate::frame`] against the spec rather than against itself. Feed it
//! bytes as they arrive, in any chunking; it yields [`Item`]s: dispatched events, valid
//! `retry:` hints and comments (so tests can see heartbeats).
//!
//! What it guarantees:
//!
//! - The items and [`Parser::last_event_id`] depend only on the bytes, never on how they were
//!   split into chunks, a `\r` ending one chunk and its `\n` starting the next included.
//! - Lines end at `\r\n`, `\n` or `\r`. Each line is decoded as UTF-8 with invalid sequences
//!   replaced by U+FFFD, and one byte-order mark at the very start of the stream is skipped.
//! - Memory is bounded: a line, and the data of one event, may each be at most
//!   [`Parser::with_max_line_len`] bytes (default [`DEFAULT_MAX_LINE_LEN`]); beyond that the
//!   stream is broken and [`Parser::feed`] returns a [`ParseError`]. No input panics it.
//!
//! What it does not do: no I/O, no reconnecting, no waiting for `retry:`. An event still
//! incomplete when the stream ends is never dispatched, as the spec requires: the caller
//! simply stops feeding.

use std::mem;

/// The longest line, and the most data in one event, a [`Parser::new`] accepts: 1 MiB.
pub const DEFAULT_MAX_LINE_LEN: usize = 1 << 20;

/// The UTF-8 byte-order mark, skipped once at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A dispatched event, as the WHATWG spec's `MessageEvent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageEvent {
    /// The `event:` field, or `"message"` when the event had none.
    pub event_type: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The stream's last event id when the event was dispatched: the latest valid `id:` field,
    /// of this event or an earlier one.
    pub last_event_id: String,
}

/// Something the parser yields, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A message with data, dispatched by its blank line.
    Event(MessageEvent),
    /// A valid `retry:` field (ASCII digits only): the reconnection time in milliseconds.
    Retry(u64),
    /// A comment line's raw text after the `:`, leading space included (`": hi"` gives
    /// `" hi"`); clients ignore comments, tests look for heartbeats in them.
    Comment(String),
}

/// Why the stream cannot be parsed any further; the caller should drop the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line is longer than the parser's bound.
    #[error("an event-stream line is longer than the limit of {max} bytes")]
    LineTooLong {
        /// The bound, in bytes.
        max: usize,
    },
    /// The `data:` lines of one event add up to more than the parser's bound.
    #[error("an event's data is longer than the limit of {max} bytes")]
    DataTooLong {
        /// The bound, in bytes.
        max: usize,
    },
}

/// A streaming event-stream parser: [`Parser::feed`] it chunks, collect [`Item`]s.
#[derive(Clone, Debug)]
pub struct Parser {
    /// Bytes of the current line, not yet ended by CR or LF (kept across chunks).
    line: Vec<u8>,
    /// Bound on `line` and on `data`, in bytes.
    max_line_len: usize,
    /// How many bytes of a leading BOM have been seen, or `None` once the start is behind us.
    bom_seen: Option<usize>,
    /// The last byte was a CR ending a line, so an LF starting the next chunk ends nothing.
    after_cr: bool,
    /// The spec's data buffer: each `data:` value followed by `\n`.
    data: String,
    /// The spec's event type buffer.
    event_type: String,
    /// The spec's last event ID buffer, set by `id:` lines.
    id_buffer: String,
    /// The event source's last event ID string: the buffer, copied at each blank line.
    last_event_id: String,
    /// `last_event_id` before the current feed changed it, to restore if the feed fails.
    id_before_feed: Option<String>,
    /// Set by the first error; the stream stays broken.
    broken: Option<ParseError>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser at the start of a stream, bounding lines to [`DEFAULT_MAX_LINE_LEN`].
    pub fn new() -> Self {
        Self::with_max_line_len(DEFAULT_MAX_LINE_LEN)
    }

    /// A parser at the start of a stream that accepts lines of at most `max` bytes (line
    /// ending excluded), and events whose data buffer (UTF-8 bytes after decoding, with the
    /// `\n` each `data:` line adds) is at most `max` bytes.
    pub fn with_max_line_len(max: usize) -> Self {
        Self {
            line: Vec::new(),
            max_line_len: max,
            bom_seen: Some(0),
            after_cr: false,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            id_before_feed: None,
            broken: None,
        }
    }

    /// The last event ID string: what a reconnecting client sends as `Last-Event-ID`.
    ///
    /// As the spec says, an `id:` field takes effect at the blank line that ends its message,
    /// whether or not that message has data; an `id:` of a message cut off before its blank
    /// line is not reported, since that message was never received.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Parses the next chunk of the stream and returns the items it completes.
    ///
    /// # Errors
    /// [`ParseError`] if a line or an event's data exceeds the bound. The stream is then
    /// broken: the items of this chunk are dropped, [`Parser::last_event_id`] is left as it
    /// was before this chunk (so a client resuming from it misses nothing), and every later
    /// call returns the same error.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Item>, ParseError> {
        if let Some(err) = &self.broken {
            return Err(err.clone());
        }
        let mut items = Vec::new();
        self.id_before_feed = None;
        match self.feed_lines(chunk, &mut items) {
            Ok(()) => Ok(items),
            Err(err) => {
                if let Some(id) = self.id_before_feed.take() {
                    self.last_event_id = id;
                }
                self.broken = Some(err.clone());
                Err(err)
            }
        }
    }

    fn feed_lines(&mut self, chunk: &[u8], items: &mut Vec<Item>) -> Result<(), ParseError> {
        let mut rest = self.skip_bom(chunk);
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(after_lf) = rest.strip_prefix(b"\n") {
                rest = after_lf;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, ending) = rest.split_at(end);
            if self.line.is_empty() {
                self.check_line_len(head.len())?;
                self.process_line(head, items)?;
            } else {
                self.check_line_len(self.line.len() + head.len())?;
                let mut line = mem::take(&mut self.line);
                line.extend_from_slice(head);
                let processed = self.process_line(&line, items);
                line.clear();
                self.line = line; // keep the allocation for the next split line
                processed?;
            }
            rest = match ending {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[], // unreachable: `end` indexes a CR or LF
            };
        }
        self.check_line_len(self.line.len() + rest.len())?;
        self.line.extend_from_slice(rest);
        Ok(())
    }

    /// Consumes the part of a leading BOM in `chunk`. Bytes that turn out not to be a BOM
    /// go back into the line, to be decoded like any others.
    fn skip_bom<'a>(&mut self, mut chunk: &'a [u8]) -> &'a [u8] {
        while let Some(seen) = self.bom_seen {
            let Some((&byte, after)) = chunk.split_first() else {
                break;
            };
            if BOM.get(seen) == Some(&byte) {
                chunk = after;
                self.bom_seen = (seen + 1 < BOM.len()).then_some(seen + 1);
            } else {
                self.line
                    .extend_from_slice(BOM.get(..seen).unwrap_or_default());
                self.bom_seen = None;
            }
        }
        chunk
    }

    fn check_line_len(&self, len: usize) -> Result<(), ParseError> {
        if len > self.max_line_len {
            return Err(ParseError::LineTooLong {
                max: self.max_line_len,
            });
        }
        Ok(())
    }

    /// One line, without its line ending, as the spec's steps for a line.
    fn process_line(&mut self, line: &[u8], items: &mut Vec<Item>) -> Result<(), ParseError> {
        if line.is_empty() {
            self.dispatch(items);
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some(("", comment)) => {
                items.push(Item::Comment(comment.to_owned()));
                return Ok(());
            }
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_line_len {
                    return Err(ParseError::DataTooLong {
                        max: self.max_line_len,
                    });
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => {
                self.id_buffer.clear();
                self.id_buffer.push_str(value);
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // All digits, so the only failure is overflow, and then the field is ignored.
                if let Ok(millis) = value.parse() {
                    items.push(Item::Retry(millis));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The spec's "dispatch the event" steps, at a blank line.
    fn dispatch(&mut self, items: &mut Vec<Item>) {
        if self.last_event_id != self.id_buffer {
            let before = mem::replace(&mut self.last_event_id, self.id_buffer.clone());
            self.id_before_feed.get_or_insert(before);
        }
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event_type = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            mem::take(&mut self.event_type)
        };
        items.push(Item::Event(MessageEvent {
            event_type,
            data: mem::take(&mut self.data),
            last_event_id: self.last_event_id.clone(),
        }));
    }
}

/// Parses a whole stream at once with a default [`Parser`]; an unfinished last message is
/// discarded.
///
/// # Errors
/// [`ParseError`] as [`Parser::feed`].
pub fn parse_all(input: &[u8]) -> Result<Vec<Item>, ParseError> {
    Parser::new().feed(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, data: &str, last_event_id: &str) -> Item {
        Item::Event(MessageEvent {
            event_type: event_type.to_owned(),
            data: data.to_owned(),
            last_event_id: last_event_id.to_owned(),
        })
    }

    fn parse(input: &str) -> Vec<Item> {
        parse_all(input.as_bytes()).unwrap()
    }

    fn feed_each(parser: &mut Parser, chunks: &[&[u8]]) -> Vec<Item> {
        chunks
            .iter()
            .flat_map(|chunk| parser.feed(chunk).unwrap())
            .collect()
    }

    // === the spec's own examples (WHATWG HTML § 9.2.5) ===

    #[test]
    fn spec_stock_example_joins_data_lines() {
        assert_eq!(
            parse("data: YHOO\ndata: +2\ndata: 10\n\n"),
            [event("message", "YHOO\n+2\n10", "")]
        );
    }

    #[test]
    fn spec_comment_and_id_example() {
        let mut parser = Parser::new();
        let items = parser
            .feed(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n")
            .unwrap();
        assert_eq!(
            items,
            [
                Item::Comment(" test stream".to_owned()),
                event("message", "first event", "1"),
                event("message", "second event", ""),
                event("message", " third event", ""),
            ]
        );
        assert_eq!(parser.last_event_id(), "");
    }

    #[test]
    fn spec_empty_data_example_discards_the_unfinished_block() {
        assert_eq!(
            parse("data\n\ndata\ndata\n\ndata:"),
            [event("message", "", ""), event("message", "\n", "")]
        );
    }

    #[test]
    fn spec_one_space_after_the_colon_is_optional() {
        assert_eq!(
            parse("data:test\n\ndata: test\n\n"),
            [event("message", "test", ""), event("message", "test", "")]
        );
    }

    // === line endings, BOM, decoding ===

    #[test]
    fn every_line_ending_and_event_types() {
        let expected = [event("add", "a\nb", "7"), event("message", "c", "7")];
        for ending in ["\n", "\r\n", "\r"] {
            let input = "event: add\ndata: a\ndata: b\nid: 7\n\ndata: c\n\n".replace('\n', ending);
            assert_eq!(parse(&input), expected, "line ending {ending:?}");
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_ending() {
        let mut parser = Parser::new();
        let items = feed_each(
            &mut parser,
            &[b"data: a\r", b"\ndata: b\r", b"", b"\n\r", b"\n"],
        );
        assert_eq!(items, [event("message", "a\nb", "")]);
    }

    #[test]
    fn bom_is_skipped_once_and_only_at_the_start() {
        assert_eq!(parse("\u{FEFF}data: a\n\n"), [event("message", "a", "")]);
        // A second BOM is part of the first line: the field "\u{FEFF}data" is unknown.
        assert_eq!(parse("\u{FEFF}\u{FEFF}data: a\n\n"), []);
        assert_eq!(
            parse("data: \u{FEFF}a\n\n"),
            [event("message", "\u{FEFF}a", "")]
        );
    }

    #[test]
    fn bom_split_across_chunks() {
        let mut parser = Parser::new();
        let items = feed_each(&mut parser, &[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]);
        assert_eq!(items, [event("message", "a", "")]);
        // A BOM prefix that is not a BOM is ordinary (invalid) bytes of the first line.
        let mut parser = Parser::new();
        let items = feed_each(&mut parser, &[b"\xEF\xBB", b"data: a\n\n"]);
        assert_eq!(items, []);
        // ...so "\xEF:x" is an unknown field "\u{FFFD}", not a comment.
        let items = feed_each(&mut Parser::new(), &[b"\xEF", b":x\n"]);
        assert_eq!(items, []);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(
            parse_all(b"data: a\xFFb\xE2\x82\n\n").unwrap(),
            [event("message", "a\u{FFFD}b\u{FFFD}", "")]
        );
    }

    // === fields ===

    #[test]
    fn id_with_nul_is_ignored_and_ids_persist() {
        let mut parser = Parser::new();
        let items = parser
            .feed(b"id: 1\ndata: a\n\nid: 2\0\ndata: b\n\ndata: c\n\n")
            .unwrap();
        assert_eq!(
            items,
            [
                event("message", "a", "1"),
                event("message", "b", "1"),
                event("message", "c", "1")
            ]
        );
    }

    #[test]
    fn id_takes_effect_at_the_blank_line_even_without_data() {
        let mut parser = Parser::new();
        assert_eq!(parser.feed(b"id: 5-0\n").unwrap(), []);
        assert_eq!(parser.last_event_id(), "");
        assert_eq!(parser.feed(b"\n").unwrap(), []);
        assert_eq!(parser.last_event_id(), "5-0");
    }

    #[test]
    fn retry_accepts_only_ascii_digits() {
        assert_eq!(parse("retry: 3000\n"), [Item::Retry(3000)]);
        assert_eq!(parse("retry:0\n"), [Item::Retry(0)]);
        for bad in ["+5", " 5", "5a", "", "-1", "1.5", "99999999999999999999999"] {
            assert_eq!(parse(&format!("retry: {bad}\n")), [], "retry {bad:?}");
        }
        assert_eq!(parse("retry\n"), []);
    }

    #[test]
    fn unknown_fields_and_field_names_are_exact() {
        assert_eq!(parse("foo: bar\nData: x\ndata : y\n\n"), []);
        assert_eq!(parse("event\ndata: z\n\n"), [event("message", "z", "")]);
        assert_eq!(
            parse("event: a:b\ndata: c:d\n\n"),
            [event("a:b", "c:d", "")]
        );
    }

    #[test]
    fn comments_keep_their_raw_text() {
        assert_eq!(
            parse(":\n: hi\n::x\n"),
            [
                Item::Comment(String::new()),
                Item::Comment(" hi".to_owned()),
                Item::Comment(":x".to_owned())
            ]
        );
    }

    // === bounds ===

    #[test]
    fn lines_up_to_the_bound_pass_and_longer_ones_break_the_stream() {
        let mut parser = Parser::with_max_line_len(8);
        assert_eq!(
            parser.feed(b"data: ab\n\n").unwrap(),
            [event("message", "ab", "")]
        );
        assert_eq!(parser.feed(b"data:"), Ok(vec![]));
        assert_eq!(
            parser.feed(b" abc"),
            Err(ParseError::LineTooLong { max: 8 })
        );
        assert_eq!(
            parser.feed(b"\n\n"),
            Err(ParseError::LineTooLong { max: 8 })
        );
    }

    #[test]
    fn data_of_one_event_is_bounded() {
        let mut parser = Parser::with_max_line_len(8);
        assert_eq!(
            parser.feed(b"data:abc\ndata:def\ndata:g\n"),
            Err(ParseError::DataTooLong { max: 8 })
        );
    }

    #[test]
    fn a_failed_feed_leaves_last_event_id_as_before_it() {
        let mut parser = Parser::with_max_line_len(16);
        parser.feed(b"id: 1\ndata: a\n\n").unwrap();
        assert_eq!(
            parser.feed(b"id: 2\ndata: b\n\ndata: 0123456789abcdef\n"),
            Err(ParseError::LineTooLong { max: 16 })
        );
        assert_eq!(parser.last_event_id(), "1");
    }
}
