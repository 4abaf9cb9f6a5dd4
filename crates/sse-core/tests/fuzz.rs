//! Hostile input to the contract's decoders: every validator accepts exactly its documented
//! alphabet (checked against a predicate written here, independently of the code under test),
//! and no string, field list or byte stream makes a decoder panic or hold more memory than
//! its documented bound.
//!
//! What `tests/roundtrip.rs` and the unit proptests already cover (encode → parse round
//! trips, chunking invariance, `Cursor` round trips and decoding `.{0,200}` against fixed
//! topics, live-message decoding of arbitrary bytes) is not repeated here.

use bytes::Bytes;
use proptest::prelude::*;
use sse_core::cursor::MAX_ENCODED_LEN;
use sse_core::event::{MAX_EVENT_NAME_LEN, RESERVED_EVENT_PREFIX};
use sse_core::parser::{ParseError, Parser};
use sse_core::schema::{PayloadError, PublishedEvent};
use sse_core::topic::MAX_TOPIC_LEN;
use sse_core::{Cursor, CursorError, EventId, EventName, Frame, FrameError, Topic, TopicError};

const CASES: u32 = 4096;

// === independent predicates: the documented rules, spelled out again ===

/// "1 to 128 bytes of ASCII letters, digits and `_ - . : /`".
fn is_documented_topic(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes().all(|b| {
            matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b':' | b'/')
        })
}

/// "1 to 128 bytes, no CR, LF or NUL, and not starting with `sse.`".
fn is_documented_event_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
        && !s.starts_with("sse.")
}

/// A decimal number of ASCII digits that fits in a `u64`, by comparing digit strings (no
/// arithmetic shared with the code under test).
fn documented_u64(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    let max = u64::MAX.to_string();
    let fits = significant.len() < max.len()
        || (significant.len() == max.len() && significant <= max.as_str());
    fits.then(|| {
        significant
            .bytes()
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
    })
}

/// `<ms>-<seq>`: exactly one `-` between two such numbers.
fn documented_event_id(s: &str) -> Option<(u64, u64)> {
    let mut parts = s.split('-');
    let (Some(ms), Some(seq), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    Some((documented_u64(ms)?, documented_u64(seq)?))
}

// === strategies ===

/// Strings rich in what the rules are about: the allowed alphabet, its neighbours, line
/// breaks, NUL, the reserved prefix, multi-byte characters, and lengths around 128.
fn hostile_string() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        4 => "[a-zA-Z0-9_.:/-]{1,40}",
        2 => prop::sample::select(vec![
            " ", "\t", "\r", "\n", "\r\n", "\0", "{", "}", "*", "%", "+", "#", "?", "&", "=",
            "\"", "\\", ",", ";", "@", "~", "sse.", "sse", "é", "\u{FEFF}", "\u{10FFFF}", "日本",
            "\u{7f}", "\u{80}",
        ])
        .prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => (1usize..140).prop_map(|n| "x".repeat(n)),
    ];
    prop_oneof![
        6 => prop::collection::vec(fragment, 0..6).prop_map(|parts| parts.concat()),
        2 => any::<String>(),
        // Exactly at, or one past, the length limit, with a multi-byte character at the end.
        1 => (prop::bool::ANY, prop::sample::select(vec!["", "é", "日"])).prop_map(|(over, tail)| {
            let len = 128 + usize::from(over) - tail.len();
            format!("{}{tail}", "a".repeat(len))
        }),
    ]
}

/// Strings shaped like stream ids: digits, `-`, signs, spaces, and numbers near `u64::MAX`.
fn id_like_string() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        "[0-9]{0,22}",
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_owned()),
        Just("000000000000000000000018446744073709551615".to_owned()),
        "[0-9+ -]{0,4}",
        any::<u64>().prop_map(|n| n.to_string()),
    ];
    prop_oneof![
        4 => (number.clone(), prop::sample::select(vec!["-", "--", "", "+", " -", "-+", "\u{2212}"]), number)
            .prop_map(|(a, sep, b)| format!("{a}{sep}{b}")),
        1 => hostile_string(),
    ]
}

/// One to four valid topics, possibly repeated.
fn topic_set() -> impl Strategy<Value = Vec<Topic>> {
    let name = prop_oneof![
        "[a-c]{1,2}",
        "[a-zA-Z0-9_.:/-]{1,16}",
        Just("x".repeat(MAX_TOPIC_LEN)),
    ];
    prop::collection::vec(
        name.prop_map(|n| Topic::parse(&n).expect("generated topics are valid")),
        1..5,
    )
}

/// A string that decodes as a cursor for `topics` with some probability: a real encoding,
/// mutated (cut, spliced, a byte replaced), or a string shaped like one.
fn cursor_input(topics: &[Topic]) -> impl Strategy<Value = String> + use<> {
    let topics = topics.to_vec();
    let positions = prop::collection::vec((any::<u64>(), prop_oneof![Just(0u64), any::<u64>()]), 5);
    let encoded = positions.prop_map(move |positions| {
        Cursor::new(
            topics
                .iter()
                .zip(positions)
                .map(|(t, (ms, seq))| (t.clone(), EventId::new(ms, seq))),
        )
        .encode()
    });
    let edit = (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        "[0-9a-z.+ -]{0,3}|.{0,2}",
    );
    prop_oneof![
        2 => encoded.clone(),
        4 => (encoded, edit).prop_map(|(s, (at, len, insert))| {
            let chars: Vec<char> = s.chars().collect();
            let at = at.index(chars.len() + 1);
            let end = (at + len.index(4)).min(chars.len());
            let mut out: String = chars[..at].iter().collect();
            out.push_str(&insert);
            out.extend(&chars[end..]);
            out
        }),
        2 => "[0-9a-z]{0,14}(\\.[0-9a-z]{0,14}(-[0-9a-z]{0,3})?){0,6}",
        1 => hostile_string(),
        1 => (MAX_ENCODED_LEN - 2..MAX_ENCODED_LEN + 2).prop_map(|n| "0.".repeat(n / 2) + &"0".repeat(n % 2)),
    ]
}

/// Field/value pairs of a stream entry, as anyone with `redis-cli` could write them.
fn entry_fields() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let field = prop_oneof![
        3 => prop::sample::select(vec!["data", "event", "Data", "event ", "", "id"])
            .prop_map(|f| f.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ];
    let value = prop_oneof![
        2 => hostile_string().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ];
    prop::collection::vec((field, value), 0..6)
}

/// Arbitrary bytes, with the event-stream format's line breaks and field names common.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..32),
        2 => prop::sample::select(vec![
            "\n", "\r", "\r\n", "\n\n", ":", "data:", "data: ", "event:", "id:", "retry:", "\0",
            "\u{FEFF}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => (1usize..200).prop_map(|n| vec![b'x'; n]),
    ];
    prop::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat())
}

/// An upper bound on what a parser with line bound `max` may hold, measured as the length of
/// its `Debug` text: a handful of buffers of at most `max` bytes each, every byte or
/// character shown in at most 12 characters (`\u{10ffff}`, `255, `), plus fixed fields.
fn parser_debug_bound(max: usize) -> usize {
    8 * 12 * max + 1024
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn topic_parse_accepts_exactly_the_documented_alphabet(s in hostile_string()) {
        let parsed = Topic::parse(&s);
        prop_assert_eq!(parsed.is_ok(), is_documented_topic(&s), "{:?} → {:?}", s, parsed);
        match parsed {
            Ok(topic) => prop_assert_eq!(topic.as_str(), s.as_str()),
            Err(TopicError::Empty) => prop_assert!(s.is_empty()),
            Err(TopicError::TooLong { len }) => prop_assert!(len == s.len() && len > MAX_TOPIC_LEN),
            Err(TopicError::InvalidChar { topic, found }) => {
                prop_assert!(topic.len() <= MAX_TOPIC_LEN, "an error carries bounded input");
                prop_assert_eq!(Some(found), s.chars().find(|&c| !is_documented_topic(&c.to_string())));
            }
        }
    }

    #[test]
    fn event_name_parse_accepts_exactly_the_documented_rule(s in hostile_string()) {
        let parsed = EventName::parse(&s);
        prop_assert_eq!(parsed.is_ok(), is_documented_event_name(&s), "{:?} → {:?}", s, parsed);
        if let Ok(name) = &parsed {
            prop_assert_eq!(name.as_str(), s.as_str());
        }
        // The control namespace differs only by the prefix.
        let control_ok = !s.is_empty()
            && s.len() <= MAX_EVENT_NAME_LEN
            && !s.contains(['\r', '\n', '\0']);
        prop_assert_eq!(EventName::control(&s).is_ok(), control_ok);
        if control_ok && s.starts_with(RESERVED_EVENT_PREFIX) {
            prop_assert!(parsed.is_err(), "{:?} is reserved", s);
        }
    }

    #[test]
    fn event_id_parse_accepts_exactly_digits_dash_digits(s in id_like_string()) {
        let parsed = EventId::parse(&s);
        let expected = documented_event_id(&s);
        prop_assert_eq!(parsed.as_ref().ok().map(|id| (id.ms, id.seq)), expected, "{:?}", s);
        match parsed {
            Ok(id) => prop_assert_eq!(EventId::parse(&id.to_string()), Ok(id)),
            Err(error) => prop_assert!(error.input.chars().count() <= 64, "bounded error"),
        }
    }

    #[test]
    fn cursor_decode_never_panics_and_never_changes_the_topic_set(
        (topics, input) in topic_set().prop_flat_map(|topics| {
            let input = cursor_input(&topics);
            (Just(topics), input)
        }),
    ) {
        let mut requested = topics.clone();
        requested.sort();
        requested.dedup();
        match Cursor::decode(&input, &topics) {
            Ok(cursor) => {
                let decoded: Vec<Topic> = cursor.iter().map(|(t, _)| t.clone()).collect();
                prop_assert_eq!(&decoded, &requested, "{:?}", input);
                prop_assert!(input.len() <= MAX_ENCODED_LEN);
                // Whatever spelling was accepted, the canonical one means the same.
                prop_assert_eq!(Cursor::decode(&cursor.encode(), &topics), Ok(cursor));
            }
            Err(CursorError::TooLong { len }) => {
                prop_assert!(len == input.len() && len > MAX_ENCODED_LEN);
            }
            Err(CursorError::Malformed { input: shown, .. }) => {
                prop_assert!(shown.chars().count() <= 64, "bounded error");
            }
            Err(CursorError::OtherTopics) => prop_assert!(requested.len() > 1),
        }
    }

    #[test]
    fn a_cursor_never_resumes_another_topic_set(
        ours in topic_set(),
        theirs in topic_set(),
        positions in prop::collection::vec((any::<u64>(), any::<u64>()), 5),
    ) {
        let cursor = Cursor::new(
            ours.iter().zip(positions).map(|(t, (ms, seq))| (t.clone(), EventId::new(ms, seq))),
        );
        let mut requested = theirs.clone();
        requested.sort();
        requested.dedup();
        if let Ok(decoded) = Cursor::decode(&cursor.encode(), &theirs) {
            let decoded: Vec<Topic> = decoded.iter().map(|(t, _)| t.clone()).collect();
            prop_assert_eq!(decoded, requested);
        }
    }

    #[test]
    fn from_entry_never_panics_and_follows_the_documented_fields(
        id in id_like_string(),
        fields in entry_fields(),
    ) {
        let decoded = PublishedEvent::from_entry(
            &id,
            fields.iter().map(|(f, v)| (f.as_slice(), Bytes::from(v.clone()))),
        );
        // The model: the id must be a stream id; every `event` value must be empty or a valid
        // name (the last one counts); the last `data` value is the payload and must exist.
        let id_ok = documented_event_id(&id).is_some();
        let names_ok = fields.iter().filter(|(f, _)| f == b"event").all(|(_, v)| {
            v.is_empty() || std::str::from_utf8(v).is_ok_and(is_documented_event_name)
        });
        let data = fields.iter().rev().find(|(f, _)| f == b"data").map(|(_, v)| v);
        let name = fields.iter().rev().find(|(f, _)| f == b"event").map(|(_, v)| v);
        match decoded {
            Ok(event) => {
                prop_assert!(id_ok && names_ok);
                prop_assert_eq!(Some(&event.data[..]), data.map(Vec::as_slice));
                prop_assert_eq!(
                    event.name.as_ref().map(|n| n.as_str().as_bytes()),
                    name.filter(|v| !v.is_empty()).map(Vec::as_slice)
                );
            }
            Err(PayloadError::BadId) => prop_assert!(!id_ok),
            Err(PayloadError::BadName(_)) => prop_assert!(id_ok && !names_ok),
            Err(PayloadError::NoData) => prop_assert!(id_ok && names_ok && data.is_none()),
            Err(PayloadError::Truncated) => prop_assert!(false, "entries are never truncated"),
        }
    }

    #[test]
    fn live_messages_of_any_valid_event_round_trip(
        ms in any::<u64>(),
        seq in any::<u64>(),
        name in prop::option::of(hostile_string()),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let name = name.and_then(|n| EventName::parse(&n).ok());
        let event = PublishedEvent { id: EventId::new(ms, seq), name, data: data.into() };
        prop_assert_eq!(
            PublishedEvent::from_live_message(event.to_live_message().into()),
            Ok(event)
        );
    }

    #[test]
    fn frame_new_refuses_exactly_ids_that_would_break_framing(
        id in prop::option::of(hostile_string()),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let frame = Frame::new(id.as_deref(), None, &data);
        match (&id, frame) {
            (Some(id), Err(FrameError::LineBreakInId)) => prop_assert!(id.contains(['\r', '\n'])),
            (Some(id), Err(FrameError::NulInId)) => {
                prop_assert!(id.contains('\0') && !id.contains(['\r', '\n']));
            }
            (id, Ok(frame)) => {
                prop_assert!(!id.as_deref().unwrap_or_default().contains(['\r', '\n', '\0']));
                prop_assert!(frame.message().ends_with(b"\n\n"));
            }
            (None, Err(error)) => prop_assert!(false, "no id, yet {:?}", error),
            (_, Err(error)) => prop_assert!(false, "unexpected {:?}", error),
        }
    }

    #[test]
    fn a_parser_stays_bounded_and_broken_stays_broken(
        chunks in prop::collection::vec(stream_bytes(), 1..6),
        max in 1usize..64,
    ) {
        let mut parser = Parser::with_max_line_len(max);
        let mut broken: Option<ParseError> = None;
        for chunk in &chunks {
            let fed = parser.feed(chunk);
            match (&broken, fed) {
                (Some(before), fed) => prop_assert_eq!(fed, Err(before.clone())),
                (None, Err(error)) => {
                    let bounded = matches!(
                        error,
                        ParseError::LineTooLong { max: m } | ParseError::DataTooLong { max: m } if m == max
                    );
                    prop_assert!(bounded, "{:?}", error);
                    broken = Some(error);
                }
                (None, Ok(_)) => {}
            }
            // An id line is at most `max` bytes; invalid UTF-8 in it may triple as U+FFFD.
            prop_assert!(parser.last_event_id().len() <= 3 * max);
            let held = format!("{parser:?}").len();
            prop_assert!(held <= parser_debug_bound(max), "parser holds {} debug chars", held);
        }
    }
}

/// 10 MB of one line that never ends, to a parser bounded at 1 KiB: it refuses as soon as the
/// line passes 1 KiB, whatever the chunking, and holds no more than that bound meanwhile.
#[test]
fn an_endless_line_is_refused_at_the_bound_not_buffered() {
    const MAX: usize = 1024;
    const TOTAL: usize = 10 * 1024 * 1024;
    let line = vec![b'a'; TOTAL];
    for chunk_size in [1, 100, MAX, MAX + 1, 64 * 1024, TOTAL] {
        let mut parser = Parser::with_max_line_len(MAX);
        let mut fed = 0;
        let mut failed_at = None;
        for chunk in line.chunks(chunk_size) {
            fed += chunk.len();
            match parser.feed(chunk) {
                Ok(items) => assert!(items.is_empty()),
                Err(error) => {
                    assert_eq!(error, ParseError::LineTooLong { max: MAX });
                    failed_at = Some(fed);
                    break;
                }
            }
            assert!(format!("{parser:?}").len() <= parser_debug_bound(MAX));
        }
        let failed_at = failed_at.expect("a 10 MB line is refused");
        assert!(
            failed_at <= MAX + chunk_size,
            "chunks of {chunk_size}: refused only after {failed_at} bytes"
        );
        assert!(format!("{parser:?}").len() <= parser_debug_bound(MAX));
        assert_eq!(
            parser.feed(b"\n\ndata: more\n\n"),
            Err(ParseError::LineTooLong { max: MAX }),
            "a broken stream stays broken"
        );
    }
}

/// Ten million short `data:` lines with no blank line: the data of that one event is
/// refused at the bound, not accumulated.
#[test]
fn endless_data_lines_are_refused_at_the_bound() {
    const MAX: usize = 1024;
    let chunk = b"data: 0123456789\n".repeat(4096); // 68 KiB per feed
    let mut parser = Parser::with_max_line_len(MAX);
    let mut fed = 0;
    let error = loop {
        assert!(fed < 10 * 1024 * 1024, "10 MB of data lines were accepted");
        fed += chunk.len();
        if let Err(error) = parser.feed(&chunk) {
            break error;
        }
    };
    assert_eq!(error, ParseError::DataTooLong { max: MAX });
    assert_eq!(fed, chunk.len(), "refused within the first chunk");
    assert!(format!("{parser:?}").len() <= parser_debug_bound(MAX));
}

/// Ids, event names and comments that repeat forever replace each other: a stream of them
/// never grows what the parser holds.
#[test]
fn endless_fields_without_data_hold_nothing_extra() {
    const MAX: usize = 64;
    let mut parser = Parser::with_max_line_len(MAX);
    let chunk = b"id: 123\nevent: e\nretry: 5\n: comment\nunknown: x\n".repeat(1000);
    for _ in 0..200 {
        parser.feed(&chunk).expect("every line is within the bound");
        assert!(format!("{parser:?}").len() <= parser_debug_bound(MAX));
    }
}
