//! The data of every event the driver publishes, written and read here only:
//! `<sequence on its topic> <publish time in µs since the Unix epoch> <padding of x>`.
//!
//! The sequence lets every subscriber check its topic for gaps and duplicates; the timestamp
//! gives the publish-to-receive latency without any clock but the driver's own. Digits, spaces
//! and `x` need no escaping in JSON, a URL or a raw HTTP body, so one format serves every
//! server and body template.

use std::time::{SystemTime, UNIX_EPOCH};

/// The data of event `sequence`, published at `sent_micros`, padded with `padding`.
pub(crate) fn encode(sequence: u64, sent_micros: u64, padding: &str) -> String {
    format!("{sequence} {sent_micros} {padding}")
}

/// The sequence and publish time in `data`, or `None` for data the driver did not write.
pub(crate) fn decode(data: &str) -> Option<(u64, u64)> {
    let mut fields = data.split(' ');
    let sequence = fields.next()?.parse().ok()?;
    let sent = fields.next()?.parse().ok()?;
    Some((sequence, sent))
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
        assert_eq!(decode(&encode(7, 1_700_000, "xxxx")), Some((7, 1_700_000)));
        assert_eq!(decode(&encode(0, 1, "")), Some((0, 1)));
        assert_eq!(decode("hello"), None);
        assert_eq!(decode("1"), None);
    }
}
