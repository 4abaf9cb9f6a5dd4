//! Properties tying the encoder ([`sse_core::frame`]) to the parser ([`sse_core::parser`]):
//! whatever a publisher sends comes out of a spec-following client unchanged (up to the line
//! endings and invalid UTF-8 the format cannot carry), and no chunking of the stream changes
//! what the client sees.

use proptest::prelude::*;
use proptest::sample::Index;
use sse_core::EventName;
use sse_core::frame::{self, Frame, id_tail};
use sse_core::parser::{Item, MessageEvent, ParseError, Parser};

/// What a client receives for `payload`: line endings become `\n`, invalid UTF-8 U+FFFD.
fn normalise(payload: &[u8]) -> String {
    let mut out = Vec::with_capacity(payload.len());
    let mut bytes = payload.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte == b'\r' {
            out.push(b'\n');
            bytes.next_if_eq(&b'\n');
        } else {
            out.push(byte);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes rich in what matters to the format: line breaks, NUL, colons, non-ASCII, BOMs.
fn tricky_bytes() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        any::<String>().prop_map(String::into_bytes),
        prop::sample::select(vec![
            "\n", "\r", "\r\n", "\0", ":", " ", "data", "event", "id", "retry", "12", "\u{FEFF}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    prop::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat())
}

fn event_name() -> impl Strategy<Value = String> {
    "(?s).{0,16}"
}

fn event_id() -> impl Strategy<Value = String> {
    "[^\r\n\0]{0,16}"
}

/// Feeds `stream` split at `cuts` (byte offsets, in any order); stops at the first error.
fn feed_split(parser: &mut Parser, stream: &[u8], cuts: &[usize]) -> Result<Vec<Item>, ParseError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    cuts.sort_unstable();
    let mut items = Vec::new();
    let mut start = 0;
    for end in cuts.into_iter().chain([stream.len()]) {
        items.extend(parser.feed(&stream[start..end])?);
        start = end;
    }
    Ok(items)
}

/// One piece of a stream a gateway may send.
#[derive(Clone, Debug)]
enum Piece {
    Message {
        name: Option<EventName>,
        data: Vec<u8>,
        id: Option<String>,
    },
    Comment(String),
    Retry(u64),
    BareId(String),
}

fn piece() -> impl Strategy<Value = Piece> {
    let name = event_name().prop_filter_map("not an event name", |n| EventName::parse(&n).ok());
    prop_oneof![
        4 => (prop::option::of(name), tricky_bytes(), prop::option::of(event_id()))
            .prop_map(|(name, data, id)| Piece::Message { name, data, id }),
        1 => "[^\r\n]{0,12}".prop_map(Piece::Comment),
        1 => any::<u64>().prop_map(Piece::Retry),
        1 => event_id().prop_map(Piece::BareId),
    ]
}

/// Encodes `pieces` with `\n` line endings; returns the stream, the items a client should see
/// and its last event id at the end.
fn encode(pieces: &[Piece]) -> (Vec<u8>, Vec<Item>, String) {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    let mut last_id = String::new();
    for piece in pieces {
        match piece {
            Piece::Message { name, data, id } => {
                let frame = Frame::new(id.as_deref(), name.as_ref(), data)
                    .expect("generated ids have no CR, LF or NUL");
                stream.extend_from_slice(frame.message());
                if let Some(id) = id {
                    last_id.clone_from(id);
                }
                expected.push(Item::Event(MessageEvent {
                    event_type: name
                        .as_ref()
                        .map_or("message", EventName::as_str)
                        .to_owned(),
                    data: normalise(data),
                    last_event_id: last_id.clone(),
                }));
            }
            Piece::Comment(text) => {
                stream.extend_from_slice(
                    &frame::comment(text).expect("generated comments have no CR or LF"),
                );
                expected.push(Item::Comment(format!(" {text}")));
            }
            Piece::Retry(millis) => {
                stream.extend_from_slice(&frame::retry(*millis));
                expected.push(Item::Retry(*millis));
            }
            Piece::BareId(id) => {
                stream
                    .extend_from_slice(&id_tail(id).expect("generated ids have no CR, LF or NUL"));
                last_id.clone_from(id);
            }
        }
    }
    (stream, expected, last_id)
}

/// `stream` with every `\n` replaced by `ending`.
fn with_line_ending(stream: &[u8], ending: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stream.len() * 2);
    for &byte in stream {
        if byte == b'\n' {
            out.extend_from_slice(ending);
        } else {
            out.push(byte);
        }
    }
    out
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(
        name in prop::option::of(event_name()),
        data in tricky_bytes(),
        id in prop::option::of(event_id()),
    ) {
        let name = match name {
            Some(name) => match EventName::parse(&name) {
                Ok(name) => Some(name),
                Err(_) => return Err(TestCaseError::reject("not an event name")),
            },
            None => None,
        };
        let frame = Frame::new(id.as_deref(), name.as_ref(), &data).unwrap();
        let expected = Item::Event(MessageEvent {
            event_type: name.as_ref().map_or("message", EventName::as_str).to_owned(),
            data: normalise(&data),
            last_event_id: id.clone().unwrap_or_default(),
        });

        // As one buffer...
        let mut parser = Parser::new();
        prop_assert_eq!(parser.feed(frame.message()).unwrap(), vec![expected.clone()]);
        prop_assert_eq!(parser.last_event_id(), id.as_deref().unwrap_or(""));

        // ...and as the fan-out path sends it: shared fields, then a per-client tail.
        let tail = match &id {
            Some(id) => id_tail(id).unwrap(),
            None => Frame::END,
        };
        let mut parser = Parser::new();
        let mut items = parser.feed(&frame.fields()).unwrap();
        prop_assert_eq!(&items, &Vec::<Item>::new());
        items.extend(parser.feed(&tail).unwrap());
        prop_assert_eq!(items, vec![expected]);
    }

    #[test]
    fn parsing_is_the_same_under_every_chunk_split(
        pieces in prop::collection::vec(piece(), 0..8),
        ending in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        bom in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let (stream, expected, last_id) = encode(&pieces);
        let mut stream = with_line_ending(&stream, ending.as_bytes());
        if bom {
            stream.splice(0..0, "\u{FEFF}".bytes());
        }

        let mut whole = Parser::new();
        prop_assert_eq!(whole.feed(&stream).unwrap(), expected.clone());
        prop_assert_eq!(whole.last_event_id(), last_id.as_str());

        let random_cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        let after_each_cr: Vec<usize> = stream
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\r')
            .map(|(at, _)| at + 1)
            .collect();
        let every_byte: Vec<usize> = (0..stream.len()).collect();
        for cuts in [random_cuts, after_each_cr, every_byte] {
            let mut parser = Parser::new();
            prop_assert_eq!(feed_split(&mut parser, &stream, &cuts).unwrap(), expected.clone());
            prop_assert_eq!(parser.last_event_id(), last_id.as_str());
        }
    }

    #[test]
    fn any_bytes_in_any_chunking_never_panic_and_agree(
        stream in tricky_bytes(),
        max in prop::option::of(0usize..48),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let new_parser = || max.map_or_else(Parser::new, Parser::with_max_line_len);
        let mut whole = new_parser();
        let whole_items = whole.feed(&stream);

        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        let mut split = new_parser();
        let split_items = feed_split(&mut split, &stream, &cuts);
        match (whole_items, split_items) {
            (Ok(whole_items), Ok(split_items)) => {
                prop_assert_eq!(whole_items, split_items);
                prop_assert_eq!(whole.last_event_id(), split.last_event_id());
            }
            (Err(whole_err), Err(split_err)) => prop_assert_eq!(whole_err, split_err),
            (whole_items, split_items) => {
                prop_assert!(false, "whole: {whole_items:?}, split: {split_items:?}");
            }
        }
    }
}
