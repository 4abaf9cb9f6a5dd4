//! [`ErrorChain`]: an error and its causes as one line, `outer: cause: root cause`.
//!
//! Every error enum here keeps its cause attached with `#[source]` and says only its own part
//! in its message, so a cause is never printed twice. What a person reads (a response body, a
//! log field) is the whole chain, written by this one formatter. Errors of other crates do
//! not all keep that rule (a `redis::RedisError` made from an I/O error repeats that error's
//! text and also returns it as its source): a cause whose text its error's message already
//! ends with is left out.

use std::fmt;

/// Displays an error followed by each of its sources, separated by `": "`.
#[derive(Clone, Copy, Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !said.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            said = text;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorChain;

    #[derive(Debug, thiserror::Error)]
    #[error("reading failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_is_written_once_in_order() {
        let error = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "reading failed: disk on fire"
        );
        let alone = std::io::Error::other("alone");
        assert_eq!(ErrorChain(&alone).to_string(), "alone");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connecting failed: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_cause_its_error_already_quotes_is_not_written_again() {
        let error = Outer(std::io::Error::other(Repeats(std::io::Error::other(
            "refused",
        ))));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "reading failed: connecting failed: refused"
        );
    }
}
