//! The data of every event the driver publishes, written and read here only:
//! `<sequence on its topic> <send time> <due time> <padding of x>`, times in µs since the
//! Unix epoch.
//!
//! The sequence lets every subscriber check its topic for loss, duplicates and reordering.
//! The two times give two latencies on the driver's one clock: from when the request was
//! sent, and from when the schedule said it should be sent. They differ by the time the
//! event waited in the driver because the publish path was slower than the rate asked, so a
//! server that pushes back on publishing shows that backlog in the second figure instead of
//! having it dropped. Digits, spaces and `x` need no escaping in JSON, a URL or a raw HTTP
//! body, so one format serves every server and body template.

use std::time::{SystemTime, UNIX_EPOCH};

/// What the driver put into an event's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The event's sequence number on its topic.
    pub(crate) sequence: u64,
    /// When the publish request was sent, in µs since the Unix epoch.
    pub(crate) sent_micros: u64,
    /// When the pacer's schedule had it due, in µs since the Unix epoch.
    pub(crate) due_micros: u64,
}

/// The data of the event stamped `stamp`, padded with `padding`.
pub(crate) fn encode(stamp: Stamp, padding: &str) -> String {
    let Stamp {
        sequence,
        sent_micros,
        due_micros,
    } = stamp;
    format!("{sequence} {sent_micros} {due_micros} {padding}")
}

/// The stamp in `data`, or `None` for data the driver did not write.
pub(crate) fn decode(data: &str) -> Option<Stamp> {
    let mut fields = data.split(' ');
    let mut number = || fields.next()?.parse().ok();
    Some(Stamp {
        sequence: number()?,
        sent_micros: number()?,
        due_micros: number()?,
    })
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| u64::try_from(now.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips() {
        let stamp = Stamp {
            sequence: 7,
            sent_micros: 1_700_000,
            due_micros: 1_600_000,
        };
        assert_eq!(decode(&encode(stamp, "xxxx")), Some(stamp));
        let bare = Stamp {
            sequence: 0,
            sent_micros: 1,
            due_micros: 1,
        };
        assert_eq!(decode(&encode(bare, "")), Some(bare));
        assert_eq!(decode("hello"), None);
        assert_eq!(decode("1 2"), None);
        assert_eq!(decode("1 2 x"), None);
    }
}
