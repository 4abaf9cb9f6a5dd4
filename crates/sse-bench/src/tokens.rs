//! `--tokens FILE`: a bearer token per subscriber, for servers that require one.
//!
//! A storm against a server with subscriber tokens should cost what it costs in production:
//! every client presenting its own token, each connect and reconnect checked again. So the file
//! holds one token per line (empty lines are skipped) and connection `i` sends
//! `Authorization: Bearer <token i mod n>` on every request it makes. The header values are
//! built once, at start-up, and every connection holds a clone of its value: a reference count
//! on shared bytes, not a copy of the token, so ten thousand connections cost no more memory
//! with tokens than without.
//!
//! A file that cannot be read, holds no token, or holds a line that cannot be a header value
//! is refused at start-up, before any connection opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderValue;

/// The `Authorization` values of a tokens file, one per token, in file order.
#[derive(Debug)]
pub(crate) struct Tokens(Arc<[HeaderValue]>);

/// Why a tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokensError {
    /// The file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has no line with a token.
    #[error("{} holds no token (one per line expected)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line holds a character a header value cannot (a control character, non-ASCII).
    #[error("{} line {line} cannot be sent as a header value", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
    },
}

impl Tokens {
    /// Reads the tokens file at `path`.
    ///
    /// # Errors
    /// [`TokensError`] naming the file, and the line for an invalid token.
    pub(crate) fn load(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The tokens of `text`, read from `path`: one per non-empty line, surrounding white
    /// space trimmed.
    fn parse(text: &str, path: &Path) -> Result<Self, TokensError> {
        let values = text
            .lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line.trim()))
            .filter(|(_, token)| !token.is_empty())
            .map(|(line, token)| {
                let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    TokensError::Invalid {
                        path: path.to_owned(),
                        line,
                    }
                })?;
                value.set_sensitive(true);
                Ok(value)
            })
            .collect::<Result<Arc<[HeaderValue]>, _>>()?;
        if values.is_empty() {
            return Err(TokensError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self(values))
    }

    /// How many tokens there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `Authorization` value connection `index` sends: token `index mod n`.
    pub(crate) fn for_connection(&self, index: usize) -> HeaderValue {
        self.0[index % self.0.len()].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_take_the_tokens_in_turn_and_empty_lines_are_skipped() {
        let tokens = Tokens::parse("a.b.c\n\n  d.e.f \r\n\n", Path::new("t")).unwrap();
        assert_eq!(tokens.len(), 2);
        let sent: Vec<_> = (0..5)
            .map(|i| tokens.for_connection(i).to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            sent,
            [
                "Bearer a.b.c",
                "Bearer d.e.f",
                "Bearer a.b.c",
                "Bearer d.e.f",
                "Bearer a.b.c"
            ]
        );
        assert!(tokens.for_connection(0).is_sensitive());
    }

    #[test]
    fn an_empty_or_unreadable_file_or_a_bad_line_is_refused() {
        let path = Path::new("t");
        let bad = Tokens::parse("ok\nbad\u{7}token\n", path).unwrap_err();
        assert!(matches!(bad, TokensError::Invalid { line: 2, .. }), "{bad}");
        let missing = Tokens::load(Path::new("/nonexistent/tokens.txt")).unwrap_err();
        assert!(matches!(missing, TokensError::Read { .. }), "{missing}");
        let file = std::env::temp_dir().join(format!("sse-bench-tokens-{}", std::process::id()));
        std::fs::write(&file, "\n \n").unwrap();
        let empty = Tokens::load(&file).unwrap_err();
        let _ = std::fs::remove_file(&file);
        assert!(matches!(empty, TokensError::Empty { .. }), "{empty}");
    }
}
