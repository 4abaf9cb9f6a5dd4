//! Verifying JWTs and reading what they allow, the same way in both services: the gateway
//! checks subscribers' tokens, the publisher publishers'.
//!
//! The key is an HMAC secret (HS256, HS384, HS512), a PEM public key (RSA for RS256/384/512,
//! EC for ES256/384, Ed25519 for EdDSA), or a set of public keys from a JWKS document, found
//! by the token's `kid` ([`keys`]; fetching the document is the runtime's). The accepted
//! algorithms are pinned to each key's type (and to a JWK's `alg`), so a token cannot choose
//! `none`, nor get an RSA public key used as an HMAC secret.
//! `exp` is required; `exp` and `nbf` are checked with a leeway; `aud` and `iss` when
//! configured. What a token allows comes from its topic claim ([`claims`]), with topics and
//! [`TopicPattern`]s ([`pattern`]). Public-key verifications are remembered per token until
//! it expires ([`cache`]): a reconnect storm costs one signature check per token at most.

pub mod cache;
pub mod claims;
pub mod keys;
pub mod pattern;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

pub use cache::VerifiedCache;
pub use claims::{Allowed, ClaimError, ClaimFormat, TopicSet};
pub use keys::{JwksError, KeySet};
pub use pattern::{PatternError, TopicPattern};

use keys::{Lookup, VerifyingKey};

/// The longest token read, in bytes; a longer one is refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A verification key as configured.
#[derive(Clone, Debug)]
pub enum Key {
    /// An HMAC secret.
    Secret(Vec<u8>),
    /// A PEM public key (RSA, EC or Ed25519).
    PublicPem(Vec<u8>),
    /// Public keys from a JWKS document, installed later ([`Verifier::install`]).
    Set,
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
    /// The JWKS URL is not an `http` or `https` URL.
    #[error("the JWKS URL {0:?} is not an http:// or https:// URL")]
    JwksUrl(String),
    /// No HTTP client could be built to fetch the JWKS (no TLS roots).
    #[cfg(feature = "runtime")]
    #[error("cannot build the HTTP client that fetches the JWKS")]
    Client(#[source] reqwest::Error),
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

/// Verifies tokens with one key, or with the key of a [`KeySet`] their `kid` names.
pub struct Verifier {
    keys: Keys,
    checks: Checks,
    /// For public keys, whose checks are costly; HMAC is cheaper than a cache lookup.
    cache: Option<VerifiedCache>,
}

enum Keys {
    One(Box<VerifyingKey>),
    /// Replaced whole when a newer document is installed.
    Set(RwLock<Arc<KeySet>>),
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
    /// Its `kid` names no key of the key set (`None`: it names none, and the set has more
    /// than one key to choose from).
    #[error("{}", match .0 {
        Some(kid) => format!("it is signed with a key (kid {kid:?}) this service does not know"),
        None => "it names no key (kid), and this service has several".to_owned(),
    })]
    UnknownKey(Option<String>),
    /// No key set has been installed yet (the JWKS could not be fetched): no token can be
    /// checked, which is the service's fault, not the token's.
    #[error("the keys to check it with are not available yet")]
    NoKeys,
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
            Self::UnknownKey(_) => "unknown_key",
            Self::NoKeys => "no_keys",
        }
    }
}

impl Verifier {
    /// A verifier for `key` with `checks`.
    ///
    /// # Errors
    /// [`KeyError`] if the key cannot be used.
    pub fn new(key: &Key, checks: Checks) -> Result<Self, KeyError> {
        let keys = match key {
            Key::Secret(secret) if secret.is_empty() => return Err(KeyError::EmptySecret),
            Key::Secret(secret) => {
                return Ok(Self {
                    keys: Keys::One(Box::new(VerifyingKey::for_family(
                        DecodingKey::from_secret(secret),
                        &checks,
                    ))),
                    checks,
                    cache: None,
                });
            }
            Key::PublicPem(pem) => {
                let key = DecodingKey::from_rsa_pem(pem)
                    .or_else(|_| DecodingKey::from_ec_pem(pem))
                    .or_else(|_| DecodingKey::from_ed_pem(pem))
                    .map_err(|_| KeyError::NotAPublicKey)?;
                Keys::One(Box::new(VerifyingKey::for_family(key, &checks)))
            }
            Key::Set => Keys::Set(RwLock::default()),
        };
        Ok(Self {
            keys,
            checks,
            cache: Some(VerifiedCache::new(cache::MAX_ENTRIES)),
        })
    }

    /// Replaces the key set with the keys of a JWKS `document`, and forgets the
    /// verifications made with the old keys (a key gone from the set verifies nothing more).
    /// Returns how many keys the set now holds.
    ///
    /// # Errors
    /// [`JwksError`] when the document cannot be used: the keys stay as they were. A
    /// verifier of one configured key ignores documents.
    pub fn install(&self, document: &[u8]) -> Result<usize, JwksError> {
        let Keys::Set(current) = &self.keys else {
            return Ok(1);
        };
        let set = KeySet::parse(document, &self.checks)?;
        let count = set.len();
        *current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
        if let Some(cache) = &self.cache {
            cache.clear();
        }
        Ok(count)
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

    /// How many keys it verifies with (a key set's before its first document: 0).
    pub fn keys(&self) -> usize {
        match &self.keys {
            Keys::One(_) => 1,
            Keys::Set(set) => set.read().unwrap_or_else(PoisonError::into_inner).len(),
        }
    }

    /// How many verifications are remembered (always 0 for an HMAC key).
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, VerifiedCache::len)
    }

    fn verify_signed(&self, token: &str) -> Result<Verified, TokenError> {
        match &self.keys {
            Keys::One(key) => self.verify_with(token, key),
            Keys::Set(set) => {
                let set = set.read().unwrap_or_else(PoisonError::into_inner).clone();
                if set.is_empty() {
                    return Err(TokenError::NoKeys);
                }
                let header =
                    jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
                match set.lookup(header.kid.as_deref()) {
                    Lookup::Found(key) => self.verify_with(token, key),
                    Lookup::Unknown(kid) => Err(TokenError::UnknownKey(kid)),
                }
            }
        }
    }

    fn verify_with(&self, token: &str, key: &VerifyingKey) -> Result<Verified, TokenError> {
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation)
            .map_err(|error| explain(error.into_kind(), &key.validation))?
            .claims;
        let allowed = self.checks.claim.allowed(&claims)?;
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
}

fn explain(kind: ErrorKind, validation: &Validation) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            let names: Vec<String> = validation
                .algorithms
                .iter()
                .map(|algorithm| format!("{algorithm:?}"))
                .collect();
            TokenError::Algorithm(names.join(", "))
        }
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
        ErrorKind::InvalidClaimFormat(claim) => TokenError::ClaimType(claim),
        // Bad base64, bad JSON (an unknown `alg` such as `none` too), bad shape; and a key
        // the verifier cannot use for this token, which a token can only cause by being
        // something else than it claims.
        _ => TokenError::Malformed,
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

    /// The checks of the unit tests: no audience, issuer or leeway, the `sse` claim.
    pub(super) fn checks() -> Checks {
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

    #[test]
    fn a_key_set_verifies_by_kid_and_a_new_document_replaces_it_whole() {
        let verifier = Verifier::new(&Key::Set, checks()).unwrap();
        let key = EncodingKey::from_ed_pem(PRIVATE.as_bytes()).unwrap();
        let claims = json!({"exp": exp(60), "sse": {"subscribe": ["a"]}});
        let signed = |kid: &str| {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(kid.into());
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        };
        let document = |kid: &str| {
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": "1k6HJ3q2RPO4CunB9b7fUw7_Ten2zzce2puZBkFkDJA"}]})
            .to_string()
        };
        assert!(matches!(
            verifier.verify(&signed("one")),
            Err(TokenError::NoKeys)
        ));
        assert_eq!(verifier.install(document("one").as_bytes()).unwrap(), 1);
        verifier.verify(&signed("one")).unwrap();
        assert!(matches!(
            verifier.verify(&signed("two")),
            Err(TokenError::UnknownKey(Some(kid))) if kid == "two"
        ));
        assert!(verifier.install(b"garbage").is_err());
        verifier.verify(&signed("one")).unwrap();
        verifier.install(document("two").as_bytes()).unwrap();
        verifier.verify(&signed("two")).unwrap();
        assert!(
            matches!(
                verifier.verify(&signed("one")),
                Err(TokenError::UnknownKey(_))
            ),
            "a key gone from the set verifies nothing more, remembered or not"
        );
    }
}
