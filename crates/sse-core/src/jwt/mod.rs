//! Verifying JWTs and reading what they allow, the same way in both services: the gateway
//! checks subscribers' tokens, the publisher publishers'.
//!
//! The key is an HMAC secret (HS256, HS384, HS512) or a PEM public key (RSA for RS256/384/512,
//! EC for ES256/384, Ed25519 for EdDSA). The accepted algorithms are pinned to the key's
//! type, so a token cannot choose `none`, nor get an RSA public key used as an HMAC secret.
//! `exp` is required; `exp` and `nbf` are checked with a leeway; `aud` and `iss` when
//! configured. What a token allows comes from its topic claim ([`claims`]), with topics and
//! [`TopicPattern`]s ([`pattern`]). Public-key verifications are remembered per token until
//! it expires ([`cache`]): a reconnect storm costs one signature check per token at most.

pub mod cache;
pub mod claims;
pub mod pattern;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

pub use cache::VerifiedCache;
pub use claims::{Allowed, ClaimError, ClaimFormat, TopicSet};
pub use pattern::{PatternError, TopicPattern};

/// The longest token read, in bytes; a longer one is refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A verification key as configured.
#[derive(Clone, Debug)]
pub enum Key {
    /// An HMAC secret.
    Secret(Vec<u8>),
    /// A PEM public key (RSA, EC or Ed25519).
    PublicPem(Vec<u8>),
}

/// Why the configured key cannot be used (a startup error).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file cannot be read.
    #[error("cannot read the JWT key file {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The secret is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// The PEM is no RSA, EC or Ed25519 public key.
    #[error("the JWT public key is not a PEM RSA, EC (P-256/P-384) or Ed25519 public key")]
    NotAPublicKey,
}

impl Key {
    /// The key the flags name: a secret, a file holding one (a trailing line break is
    /// ignored), or a PEM public key file; `None` when none is given.
    ///
    /// # Errors
    /// [`KeyError::File`] when a file cannot be read.
    pub fn from_flags(
        secret: Option<&str>,
        secret_file: Option<&Path>,
        public_key: Option<&Path>,
    ) -> Result<Option<Self>, KeyError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| KeyError::File {
                path: path.to_owned(),
                source,
            })
        };
        Ok(if let Some(secret) = secret {
            Some(Self::Secret(secret.as_bytes().to_vec()))
        } else if let Some(path) = secret_file {
            let mut secret = read(path)?;
            while secret
                .last()
                .is_some_and(|byte| matches!(byte, b'\n' | b'\r'))
            {
                secret.pop();
            }
            Some(Self::Secret(secret))
        } else if let Some(path) = public_key {
            Some(Self::PublicPem(read(path)?))
        } else {
            None
        })
    }
}

/// What is checked besides the signature.
#[derive(Clone, Debug)]
pub struct Checks {
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Allowed clock skew for `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim holding the topics.
    pub claim: ClaimFormat,
}

/// Verifies tokens with one key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    claim: ClaimFormat,
    /// For public keys, whose checks are costly; HMAC is cheaper than a cache lookup.
    cache: Option<VerifiedCache>,
}

/// A verified token.
#[derive(Clone, Debug)]
pub struct Verified {
    /// What it allows.
    pub allowed: Allowed,
    /// Its `sub`, if it has one.
    pub subject: Option<String>,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// What is wrong with a token, in words a person understands.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Over [`MAX_TOKEN_LEN`].
    #[error("it is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not three base64url parts with a JSON header and claims.
    #[error(
        "it is not a JWT (three base64url parts, a JSON header naming an accepted algorithm, JSON claims)"
    )]
    Malformed,
    /// Signed with an algorithm this key does not verify (`none` never is).
    #[error("it is signed with an algorithm this service does not accept (it accepts {0})")]
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
    /// `aud` does not name the configured audience.
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

impl TokenError {
    /// A short label for the reason, for metrics (a fixed set).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::Malformed => "malformed",
            Self::Algorithm(_) => "algorithm",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Audience => "audience",
            Self::Issuer => "issuer",
            Self::MissingClaim(_) | Self::ClaimType(_) | Self::Claim(_) => "claims",
        }
    }
}

impl Verifier {
    /// A verifier for `key` with `checks`.
    ///
    /// # Errors
    /// [`KeyError`] if the key cannot be used.
    pub fn new(key: &Key, checks: Checks) -> Result<Self, KeyError> {
        let key = match key {
            Key::Secret(secret) if secret.is_empty() => return Err(KeyError::EmptySecret),
            Key::Secret(secret) => DecodingKey::from_secret(secret),
            Key::PublicPem(pem) => DecodingKey::from_rsa_pem(pem)
                .or_else(|_| DecodingKey::from_ec_pem(pem))
                .or_else(|_| DecodingKey::from_ed_pem(pem))
                .map_err(|_| KeyError::NotAPublicKey)?,
        };
        let mut validation = Validation::new_for_family(key.family());
        validation.leeway = checks.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = checks.audience.is_some();
        let mut required = vec!["exp"];
        if let Some(audience) = &checks.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &checks.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let cache =
            (key.family() != AlgorithmFamily::Hmac).then(|| VerifiedCache::new(cache::MAX_ENTRIES));
        Ok(Self {
            key,
            validation,
            claim: checks.claim,
            cache,
        })
    }

    /// Verifies `token` and reads what it allows.
    ///
    /// # Errors
    /// [`TokenError`] saying what is wrong with it.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        if let Some(verified) = self.cache.as_ref().and_then(|cache| cache.get(token)) {
            return Ok(verified);
        }
        let verified = self.verify_signed(token)?;
        if let Some(cache) = &self.cache {
            cache.insert(token, &verified);
        }
        Ok(verified)
    }

    /// How many verifications are remembered (always 0 for an HMAC key).
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, VerifiedCache::len)
    }

    fn verify_signed(&self, token: &str) -> Result<Verified, TokenError> {
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|error| self.explain(error.into_kind()))?
            .claims;
        let allowed = self.claim.allowed(&claims)?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| TokenError::ClaimType("exp".into()))?;
        Ok(Verified {
            allowed,
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

impl Verified {
    /// How long the token stays valid from now (zero if it already expired).
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::{Checks, ClaimFormat, Key, TokenError, Verifier};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// A key pair for these tests only.
    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINIyM2TO6mzHT5Nry9Jo7oFpvQ9ScXF1+H/ReeRUBZ25
-----END PRIVATE KEY-----
";
    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA1k6HJ3q2RPO4CunB9b7fUw7/Ten2zzce2puZBkFkDJA=
-----END PUBLIC KEY-----
";

    fn checks() -> Checks {
        Checks {
            audience: None,
            issuer: None,
            leeway: Duration::ZERO,
            claim: ClaimFormat::named("sse"),
        }
    }

    fn exp(from_now: u64) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + from_now
    }

    #[test]
    fn a_public_key_verification_is_remembered_and_an_hmac_one_is_not() {
        let verifier = Verifier::new(&Key::PublicPem(PUBLIC.into()), checks()).unwrap();
        let key = EncodingKey::from_ed_pem(PRIVATE.as_bytes()).unwrap();
        let claims = json!({"exp": exp(60), "sse": {"subscribe": ["a"]}});
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
        assert_eq!(verifier.cached(), 0);
        verifier.verify(&token).unwrap();
        verifier.verify(&token).unwrap();
        assert_eq!(verifier.cached(), 1, "one entry for the token, reused");
        let tampered = format!("{}x", &token[..token.len() - 1]);
        assert!(matches!(
            verifier.verify(&tampered),
            Err(TokenError::Signature | TokenError::Malformed)
        ));
        assert_eq!(verifier.cached(), 1, "a refused token is not remembered");

        let hmac = Verifier::new(&Key::Secret(b"s".to_vec()), checks()).unwrap();
        let token =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s"))
                .unwrap();
        hmac.verify(&token).unwrap();
        assert_eq!(hmac.cached(), 0);
    }
}
