//! Who may read which topic: subscriber JWTs, checked once when a stream opens, never per
//! event.
//!
//! Off unless a key is configured: `--jwt-secret` / `--jwt-secret-file` (HS256, HS384, HS512)
//! or `--jwt-public-key` (a PEM file: RSA for RS256/384/512, EC for ES256/384, Ed25519 for
//! EdDSA). The accepted algorithms are pinned to the key's type, so a token cannot choose
//! `none`, nor get an RSA public key used as an HMAC secret. `exp` is required; `exp` and
//! `nbf` are checked with `--jwt-leeway`; `aud` and `iss` when `--jwt-audience` and
//! `--jwt-issuer` are set. The token comes from the sources in [`credentials`]; what it
//! allows, from the claim described in [`claims`].
//!
//! Every requested topic must be allowed: no token gets 401 with `WWW-Authenticate: Bearer`,
//! an invalid one 401 saying why, a topic the token does not allow 403 naming it.

mod claims;
mod credentials;
mod issue;
mod pattern;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use sse_core::Topic;

pub(crate) use claims::{ClaimError, ClaimFormat, Readable};
pub(crate) use credentials::Sources;
pub use issue::{IssueError, TokenArgs, issue};
pub use pattern::PatternError;

/// The longest token read, in bytes; a longer one is refused before any decoding.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// How subscribers' tokens are checked.
pub(crate) struct Auth {
    key: DecodingKey,
    validation: Validation,
    claim: ClaimFormat,
    sources: Sources,
}

/// What the configuration says about tokens, read from flags and files.
pub(crate) struct AuthOptions {
    /// The verification key.
    pub(crate) key: Key,
    /// Required `aud`, if any.
    pub(crate) audience: Option<String>,
    /// Required `iss`, if any.
    pub(crate) issuer: Option<String>,
    /// Allowed clock skew for `exp` and `nbf`.
    pub(crate) leeway: Duration,
    /// The claim holding the topics.
    pub(crate) claim: ClaimFormat,
    /// Where tokens are looked for.
    pub(crate) sources: Sources,
}

/// A verification key as configured.
pub(crate) enum Key {
    /// An HMAC secret.
    Secret(Vec<u8>),
    /// A PEM public key (RSA, EC or Ed25519).
    PublicPem(Vec<u8>),
}

/// Why the configured key cannot be used (a startup error).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The secret is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// The PEM is no RSA, EC or Ed25519 public key.
    #[error("the JWT public key is not a PEM RSA, EC (P-256/P-384) or Ed25519 public key")]
    NotAPublicKey,
}

/// A verified token: what it allows and until when.
#[derive(Debug)]
pub(crate) struct Grant {
    readable: Readable,
    /// The token's `sub`, if it has one.
    pub(crate) subject: Option<String>,
    /// When the token expires.
    pub(crate) expires_at: SystemTime,
}

/// Why a request gets no stream (401 or 403).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// No token where one was looked for.
    #[error("this stream needs a token: send it as {0}")]
    NoToken(String),
    /// A token that does not verify or cannot be used.
    #[error("the token was refused")]
    Invalid(#[source] TokenError),
    /// A valid token that does not allow a requested topic.
    #[error("the token does not allow reading topic {0:?}")]
    Forbidden(String),
}

/// What is wrong with a token, in words a person understands.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// Over [`MAX_TOKEN_LEN`].
    #[error("it is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not three base64url parts with a JSON header and claims.
    #[error(
        "it is not a JWT (three base64url parts, a JSON header naming an accepted algorithm, JSON claims)"
    )]
    Malformed,
    /// Signed with an algorithm this key does not verify (`none` never is).
    #[error("it is signed with an algorithm this gateway does not accept (it accepts {0})")]
    Algorithm(String),
    /// The signature does not match.
    #[error("its signature does not verify")]
    Signature,
    /// `exp` has passed.
    #[error("it has expired")]
    Expired,
    /// `nbf` is still ahead.
    #[error("it is not valid yet (nbf)")]
    NotYetValid,
    /// `aud` does not name this gateway's audience.
    #[error("it is not meant for this audience (aud)")]
    Audience,
    /// `iss` is not the configured issuer.
    #[error("its issuer (iss) is not accepted")]
    Issuer,
    /// A required claim is missing (`exp`, or `aud`/`iss` when configured).
    #[error("it has no {0:?} claim, which is required")]
    MissingClaim(String),
    /// A registered claim has the wrong type.
    #[error("its {0:?} claim has the wrong type")]
    ClaimType(String),
    /// The topic claim is unusable.
    #[error(transparent)]
    Claim(#[from] ClaimError),
}

impl Auth {
    /// Token checking as `options` say.
    ///
    /// # Errors
    /// [`KeyError`] if the key cannot be used.
    pub(crate) fn new(options: AuthOptions) -> Result<Self, KeyError> {
        let key = match &options.key {
            Key::Secret(secret) if secret.is_empty() => return Err(KeyError::EmptySecret),
            Key::Secret(secret) => DecodingKey::from_secret(secret),
            Key::PublicPem(pem) => DecodingKey::from_rsa_pem(pem)
                .or_else(|_| DecodingKey::from_ec_pem(pem))
                .or_else(|_| DecodingKey::from_ed_pem(pem))
                .map_err(|_| KeyError::NotAPublicKey)?,
        };
        let mut validation = Validation::new_for_family(key.family());
        validation.leeway = options.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = options.audience.is_some();
        let mut required = vec!["exp"];
        if let Some(audience) = &options.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &options.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            claim: options.claim,
            sources: options.sources,
        })
    }

    /// Checks the request's token against every topic it asks for.
    ///
    /// # Errors
    /// [`Refusal`]: no token, an invalid one, or a topic it does not allow.
    pub(crate) fn authorize(
        &self,
        headers: &http::HeaderMap,
        query: &str,
        topics: &[Topic],
    ) -> Result<Grant, Refusal> {
        let token = self
            .sources
            .find(headers, query)
            .ok_or_else(|| Refusal::NoToken(self.sources.describe()))?;
        let grant = self.verify(&token).map_err(Refusal::Invalid)?;
        match topics.iter().find(|topic| !grant.readable.allows(topic)) {
            Some(topic) => Err(Refusal::Forbidden(topic.as_str().to_owned())),
            None => Ok(grant),
        }
    }

    /// Verifies `token` and reads what it allows.
    ///
    /// # Errors
    /// [`TokenError`] saying what is wrong with it.
    pub(crate) fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|error| self.explain(error.into_kind()))?;
        let claims = data.claims;
        let readable = self.claim.readable(&claims)?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| TokenError::ClaimType("exp".into()))?;
        Ok(Grant {
            readable,
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }

    fn explain(&self, kind: ErrorKind) -> TokenError {
        match kind {
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                TokenError::Algorithm(self.accepted())
            }
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAudience => TokenError::Audience,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
            ErrorKind::InvalidClaimFormat(claim) => TokenError::ClaimType(claim),
            // Bad base64, bad JSON (an unknown `alg` such as `none` too), bad shape; and a
            // key the verifier cannot use for this token, which a token can only cause by
            // being something else than it claims.
            _ => TokenError::Malformed,
        }
    }

    /// The algorithms accepted, for messages.
    fn accepted(&self) -> String {
        let names: Vec<String> = self
            .validation
            .algorithms
            .iter()
            .map(|algorithm| format!("{algorithm:?}"))
            .collect();
        names.join(", ")
    }
}

impl Grant {
    /// How long the token stays valid from now (zero if it already expired).
    pub(crate) fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}
