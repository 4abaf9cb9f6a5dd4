//! Who may publish: a request must carry `Authorization: Bearer <token>` (the scheme name is
//! case-insensitive, as HTTP says) with one of the configured tokens, unless the service was
//! started with `--allow-anonymous`.
//!
//! Tokens are compared in constant time, so response timing does not reveal how much of a
//! guess was right.

use http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The publishing policy.
#[derive(Clone)]
pub(crate) enum Auth {
    /// Anyone may publish (`--allow-anonymous`).
    Anonymous,
    /// A request needs one of these bearer tokens.
    Tokens(Vec<String>),
}

impl Auth {
    /// Checks a request's headers against the policy.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Self::Tokens(tokens) = self else {
            return Ok(());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(ApiError::Unauthorized)?;
        let known = tokens.iter().fold(false, |found, token| {
            found | bool::from(token.as_bytes().ct_eq(presented.as_bytes()))
        });
        if known {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}
