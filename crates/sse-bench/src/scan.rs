//! [`Scanner`]: the cheap way to read an event stream, for the connections that are counted
//! but not timed (`--timed-sample`).
//!
//! Parsing every event in full (strings for each field, the data decoded into a stamp) and
//! reading the clock for each one cost the driver more than the server spends writing the
//! event, so at 10,000 streams the driver, not the server, was measured. The scanner reads the
//! body bytes once, in place, with a state machine that carries over chunk boundaries, and
//! yields only what the loss check needs: the sequence number at the head of each dispatched
//! event's data (see `payload`). It builds nothing and allocates nothing.
//!
//! It reads the stream the way the WHATWG algorithm does, for what matters here: lines end
//! at `\r\n`, `\n` or `\r` (a `\r` ending one chunk and its `\n` starting the next included),
//! one byte-order mark at the very start is skipped, comment lines (`:` first) and fields
//! other than `data` (`id:`, `event:`, `retry:`) are skipped, one space after `data:` is
//! dropped, and an event counts only when its blank line dispatches it. An event counts as
//! the driver's when its data, as the parser would join its lines, starts with three
//! space-separated runs of digits, the third followed by a space or by the end of the data:
//! what `payload::decode` accepts for the data the driver writes. Anything else (control
//! events such as `sse.truncated`, a number too large for `u64`) is not counted, as there.

/// `data`, the one field name that matters.
const DATA: &[u8] = b"data";
/// The UTF-8 byte-order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the scanner is within the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the very start of the stream, `n` bytes of a byte-order mark seen.
    Bom(u8),
    /// At the start of a line.
    LineStart,
    /// In a field name whose first `n` bytes are those of `data`.
    Name(u8),
    /// Just after `data:` on the event's first data line: one space may follow.
    ValueStart,
    /// In number `field` (0, 1 or 2) of the stamp; `digits` whether it has any yet.
    Number { field: u8, value: u64, digits: bool },
    /// The rest of the line does not matter.
    Rest,
}

/// What the scanner knows of the event being read.
#[derive(Clone, Copy, Debug, Default)]
struct Event {
    /// `data` lines so far.
    data_lines: u32,
    /// The sequence, once the first data line holds a complete stamp.
    sequence: Option<u64>,
    /// Whether that stamp ended with its line: a further data line then joins onto its
    /// third number, which makes it no stamp.
    stamp_ends_line: bool,
}

/// A byte-level reader of one event stream (see the module docs).
#[derive(Debug)]
pub(crate) struct Scanner {
    state: State,
    event: Event,
    /// The sequence field of the stamp being read, once complete.
    sequence: u64,
    /// The last byte was a `\r`: a `\n` right after it ends nothing more.
    after_cr: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            state: State::Bom(0),
            event: Event::default(),
            sequence: 0,
            after_cr: false,
        }
    }
}

impl Scanner {
    /// Reads `bytes`, the next part of the stream, and calls `on_event` with the sequence of
    /// every driver event they complete, in stream order.
    pub(crate) fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(u64)) {
        let mut at = 0;
        while at < bytes.len() {
            if self.state == State::Rest {
                // Skip to the end of the line in one go: most bytes of a stream are here.
                match bytes[at..].iter().position(|&b| b == b'\n' || b == b'\r') {
                    Some(offset) => at += offset,
                    None => return,
                }
            }
            let byte = bytes[at];
            at += 1;
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            if byte == b'\r' || byte == b'\n' {
                self.after_cr = byte == b'\r';
                self.end_line(&mut on_event);
            } else {
                self.byte(byte);
            }
        }
    }

    /// One byte that is not a line end.
    fn byte(&mut self, byte: u8) {
        self.state = match self.state {
            State::Bom(seen) => {
                if byte == BOM[usize::from(seen)] {
                    if usize::from(seen) + 1 == BOM.len() {
                        State::LineStart
                    } else {
                        State::Bom(seen + 1)
                    }
                } else if seen == 0 {
                    self.state = State::LineStart;
                    return self.byte(byte);
                } else {
                    // Part of a BOM, then something else: the line's field is not `data`.
                    State::Rest
                }
            }
            State::LineStart if byte == b':' => State::Rest,
            State::LineStart => Self::name(0, byte),
            State::Name(seen) if usize::from(seen) == DATA.len() => {
                if byte == b':' {
                    self.data_line()
                } else {
                    State::Rest
                }
            }
            State::Name(seen) => Self::name(seen, byte),
            State::ValueStart if byte == b' ' => Self::number(0),
            State::ValueStart => return self.in_number(0, 0, false, byte),
            State::Number {
                field,
                value,
                digits,
            } => return self.in_number(field, value, digits, byte),
            State::Rest => State::Rest,
        };
    }

    /// The field name after `seen` bytes of `data` and then `byte`.
    fn name(seen: u8, byte: u8) -> State {
        if DATA.get(usize::from(seen)) == Some(&byte) {
            State::Name(seen + 1)
        } else {
            State::Rest
        }
    }

    /// At the start of a number of the stamp.
    fn number(field: u8) -> State {
        State::Number {
            field,
            value: 0,
            digits: false,
        }
    }

    /// `byte` inside stamp number `field`, whose digits so far make `value`.
    fn in_number(&mut self, field: u8, value: u64, digits: bool, byte: u8) {
        self.state = if byte.is_ascii_digit() {
            match value
                .checked_mul(10)
                .and_then(|value| value.checked_add(u64::from(byte - b'0')))
            {
                Some(value) => State::Number {
                    field,
                    value,
                    digits: true,
                },
                None => State::Rest,
            }
        } else if byte == b' ' && digits {
            match field {
                0 => {
                    self.sequence = value;
                    Self::number(1)
                }
                1 => Self::number(2),
                _ => {
                    self.stamp(false);
                    State::Rest
                }
            }
        } else {
            State::Rest
        };
    }

    /// A `data` field begins (its name and colon, or its name alone at the end of the
    /// line): the stamp is read from the first data line only.
    fn data_line(&mut self) -> State {
        self.event.data_lines += 1;
        if self.event.data_lines == 1 {
            State::ValueStart
        } else {
            if self.event.stamp_ends_line {
                self.event.sequence = None;
            }
            State::Rest
        }
    }

    /// The first data line held a complete stamp; `ends_line` if nothing followed it.
    fn stamp(&mut self, ends_line: bool) {
        self.event.sequence = Some(self.sequence);
        self.event.stamp_ends_line = ends_line;
    }

    /// A line ends.
    fn end_line(&mut self, on_event: &mut impl FnMut(u64)) {
        match self.state {
            State::LineStart => {
                if let Some(sequence) = std::mem::take(&mut self.event).sequence {
                    on_event(sequence);
                }
            }
            State::Name(seen) if usize::from(seen) == DATA.len() => {
                self.data_line();
            }
            State::Number {
                field: 2,
                digits: true,
                ..
            } => self.stamp(true),
            _ => {}
        }
        self.state = State::LineStart;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{self, Stamp};
    use sse_core::parser::{Item, Parser};

    /// The sequences `Scanner` finds in `stream` fed in `chunks`.
    fn scan(chunks: &[&[u8]]) -> Vec<u64> {
        let mut scanner = Scanner::default();
        let mut found = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, |sequence| found.push(sequence));
        }
        found
    }

    /// The sequences the full parser and `payload::decode` find in `stream`.
    fn parse(stream: &[u8]) -> Vec<u64> {
        let mut parser = Parser::new();
        let items = parser.feed(stream).unwrap_or_default();
        items
            .into_iter()
            .filter_map(|item| match item {
                Item::Event(event) => payload::decode(&event.data).map(|stamp| stamp.sequence),
                _ => None,
            })
            .collect()
    }

    /// Asserts that every split of `stream` in two, and byte by byte, scans to `expected`,
    /// which is also what the full parser finds.
    fn check(stream: &[u8], expected: &[u64]) {
        assert_eq!(parse(stream), expected, "parser on {stream:?}");
        assert_eq!(scan(&[stream]), expected, "whole {stream:?}");
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(scan(&[a, b]), expected, "split at {split} of {stream:?}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(scan(&bytes), expected, "byte by byte {stream:?}");
    }

    fn event(sequence: u64) -> String {
        let stamp = Stamp {
            sequence,
            sent_micros: 1_700_000_000_000_000,
            due_micros: 1_700_000_000_000_001,
        };
        format!(
            "data: {}\nid: 1-{sequence}\n\n",
            payload::encode(stamp, "xxxx")
        )
    }

    #[test]
    fn the_gateways_frames_and_nchans_are_read_at_every_split() {
        let stream: String = (0..3).map(event).collect();
        check(stream.as_bytes(), &[0, 1, 2]);
        // Nchan: the id first, no padding.
        check(b"id: 1700000000:0\ndata: 5 1 2 \n\n", &[5]);
        // No space after the colon, and a stamp that ends its data.
        check(b"data:7 10 20\n\n", &[7]);
    }

    #[test]
    fn comments_heartbeats_retry_and_other_fields_are_skipped() {
        let stream = format!(
            ":\n\n: heartbeat data: 9 9 9 x\n\nretry: 2500\n\nevent: message\n{}:\n\n{}",
            event(1),
            event(2)
        );
        check(stream.as_bytes(), &[1, 2]);
        check(b"retry: 1 2 3\ndata: 4 5 6 x\n\n", &[4]);
        check(b"datum: 1 2 3 x\n\ndat: 1 2 3\n\n", &[]);
    }

    #[test]
    fn crlf_and_lone_cr_end_lines() {
        check(
            b"data: 3 1 2 x\r\n\r\ndata: 4 1 2 x\r\rdata: 5 1 2\r\n\n",
            &[3, 4, 5],
        );
        // A \r then \n counts once: no blank line between them.
        check(b"data: 6 1 2 x\r\nid: 1\r\n\r\n", &[6]);
    }

    #[test]
    fn a_byte_order_mark_is_skipped_once_at_the_start_only() {
        check(b"\xEF\xBB\xBFdata: 1 2 3 x\n\n", &[1]);
        check(
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: 1 2 3 x\n\ndata: 2 2 3 x\n\n",
            &[2],
        );
        check(b"\xEFdata: 1 2 3 x\n\ndata: 2 2 3 x\n\n", &[2]);
    }

    #[test]
    fn data_that_is_not_a_stamp_is_not_counted() {
        check(
            b"event: sse.truncated\ndata: {\"topic\":\"t\",\"reason\":\"trimmed\"}\n\n",
            &[],
        );
        for data in [
            "hello", "1 2", "1 2 x", "1  2 3 x", " 1 2 3 x", "1 2 3x", "", "x 1 2 3",
        ] {
            check(format!("data: {data}\n\n").as_bytes(), &[]);
        }
        // Too large for u64, in any field.
        check(b"data: 18446744073709551616 1 2 x\n\n", &[]);
        check(b"data: 1 18446744073709551616 2 x\n\n", &[]);
        check(b"data: 18446744073709551615 1 2 x\n\n", &[u64::MAX]);
        // Never dispatched: no blank line before the stream ends.
        check(b"data: 1 2 3 x\n", &[]);
        check(b"data\n\ndata:\n\n", &[]);
    }

    #[test]
    fn more_data_lines_join_as_the_parser_joins_them() {
        // The stamp is followed by a space: later lines join onto the padding.
        check(b"data: 1 2 3 x\ndata: more\n\n", &[1]);
        // The stamp ends its line: the next line joins onto its third number.
        check(b"data: 1 2 3\ndata: more\n\n", &[]);
        check(b"data: 1 2 3\ndata\n\n", &[]);
        // The stamp split over two lines is no stamp.
        check(b"data: 1 2\ndata: 3 x\n\n", &[]);
        // Only the first data line is read, even when the event starts with other fields.
        check(b"id: 7\nevent: x\ndata: 8 1 1 x\ndata: 9 1 1 x\n\n", &[8]);
    }

    #[test]
    fn sequences_feed_the_loss_check() {
        use crate::sequence::{Seen, SequenceCheck};
        // 0..6 with 2 lost and 4 twice; 5 before 3 (reordered).
        let stream: String = [0, 1, 5, 3, 4, 4, 6].into_iter().map(event).collect();
        let mut check = SequenceCheck::default();
        let mut seen = Vec::new();
        let mut scanner = Scanner::default();
        for chunk in stream.as_bytes().chunks(7) {
            scanner.feed(chunk, |sequence| seen.push(check.observe(sequence)));
        }
        use Seen::{Duplicate, Late, New};
        assert_eq!(seen, [New, New, New, Late, Late, Duplicate, New]);
        let received = seen.len() as u64;
        let duplicated = seen.iter().filter(|&&s| s == Duplicate).count() as u64;
        // 7 published (0..=6): 2 is missing.
        assert_eq!(7 - (received - duplicated), 1);
        assert!(!check.has_all_below(7));
        assert_eq!(check.outstanding_below(7), 1);
    }
}
