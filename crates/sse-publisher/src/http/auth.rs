//! Who may publish, and to which topics: a request carries `Authorization: Bearer <token>`
//! (the scheme name is case-insensitive, as HTTP says) with one of the configured static
//! tokens (any topic), or, with a JWT key configured, a JWT whose claim lists the topics it
//! may publish to (`{"sse": {"publish": ["orders.*"]}}`, the same claim and patterns the
//! gateway reads). Without either, only a service started with `--allow-anonymous` takes it.
//!
//! Static tokens are compared in constant time, so response timing does not reveal how much
//! of a guess was right. A batch is checked whole before anything is written: one topic the
//! token does not allow refuses all of it.

use http::{HeaderMap, header};
use sse_core::Topic;
use sse_core::jwt::{TokenError, TopicSet};
use sse_core::runtime::jwt_flags::Tokens;
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The publishing policy.
pub(crate) struct Auth {
    /// Anyone may publish (`--allow-anonymous`).
    pub(crate) anonymous: bool,
    /// Bearer tokens that may publish to any topic.
    pub(crate) tokens: Vec<String>,
    /// Verifies JWTs, when a key is configured.
    pub(crate) jwt: Option<Tokens>,
}

/// Who is publishing, as far as topics go.
#[derive(Debug)]
pub(crate) enum Caller {
    /// A static token, or anonymous publishing: any topic.
    Anyone,
    /// A JWT: the topics it lists.
    Limited(TopicSet),
}

impl Auth {
    /// Checks a request's headers against the policy.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] without a known token, [`ApiError::InvalidToken`] for a
    /// JWT that does not verify, [`ApiError::KeysUnavailable`] while no JWKS keys could be
    /// fetched.
    pub(crate) async fn check(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(presented) = presented else {
            return if self.anonymous {
                Ok(Caller::Anyone)
            } else {
                Err(ApiError::Unauthorized)
            };
        };
        let known = self.tokens.iter().fold(false, |found, token| {
            found | bool::from(token.as_bytes().ct_eq(presented.as_bytes()))
        });
        if known {
            return Ok(Caller::Anyone);
        }
        match &self.jwt {
            Some(tokens) => match tokens.verify(presented).await {
                Ok(verified) => Ok(Caller::Limited(verified.allowed.publish)),
                Err(TokenError::NoKeys) => Err(ApiError::KeysUnavailable),
                Err(error) => Err(ApiError::InvalidToken(error)),
            },
            None if self.anonymous => Ok(Caller::Anyone),
            None => Err(ApiError::Unauthorized),
        }
    }
}

impl Caller {
    /// Checks that every one of `topics` may be published to (and so looked up).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] naming the first topic that may not.
    pub(crate) fn may_publish<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a Topic>,
    ) -> Result<(), ApiError> {
        let Self::Limited(allowed) = self else {
            return Ok(());
        };
        let refused = topics
            .into_iter()
            .find(|topic: &&Topic| !allowed.allows(topic));
        match refused {
            Some(topic) => Err(ApiError::Forbidden {
                topic: topic.as_str().to_owned(),
            }),
            None => Ok(()),
        }
    }
}
