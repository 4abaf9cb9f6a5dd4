//! The keys tokens are verified with, each pinned to the algorithms it may verify: one
//! configured key ([`VerifyingKey`]), or a key set ([`KeySet`]) read from a JWKS document and
//! looked up by the token's `kid`.
//!
//! A JWKS document is read key by key: a key this service cannot use (an encryption key, a
//! symmetric `oct` key, an unknown type or algorithm) is skipped, so one odd entry does not
//! take the others down; a document that is not `{"keys": [...]}`, or holds no usable key, is
//! refused whole, and whoever installs it keeps the keys it had.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::Checks;

/// One key, with what a token verified by it must satisfy.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub(crate) key: DecodingKey,
    pub(crate) validation: Validation,
}

impl VerifyingKey {
    /// `key`, accepting `algorithms` only, with `checks`.
    pub(crate) fn new(key: DecodingKey, algorithms: Vec<Algorithm>, checks: &Checks) -> Self {
        let mut validation = Validation::new_for_family(key.family());
        validation.algorithms = algorithms;
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
        Self { key, validation }
    }

    /// `key`, accepting every algorithm of its family.
    pub(crate) fn for_family(key: DecodingKey, checks: &Checks) -> Self {
        let algorithms = Validation::new_for_family(key.family()).algorithms;
        Self::new(key, algorithms, checks)
    }
}

/// Public keys by `kid`, from a JWKS document.
#[derive(Clone, Default)]
pub struct KeySet {
    by_id: HashMap<String, VerifyingKey>,
    /// A key without a `kid`, used for tokens without one when it is the only key.
    unnamed: Option<VerifyingKey>,
}

/// Why a JWKS document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or not `{"keys": [...]}`.
    #[error("it is not a JWKS document ({{\"keys\": [...]}})")]
    NotJwks(#[source] serde_json::Error),
    /// Not one key in it can verify tokens.
    #[error("it holds no public signing key this service can use ({skipped} skipped)")]
    NoUsableKey {
        /// Keys present but unusable.
        skipped: usize,
    },
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<Value>,
}

/// What a token's header names, to find its key.
pub(crate) enum Lookup<'a> {
    Found(&'a VerifyingKey),
    /// The set has no key by that `kid` (`None`: the token names none, and the set has no
    /// single key to fall back on).
    Unknown(Option<String>),
}

impl KeySet {
    /// Reads a JWKS document; its keys verify tokens with `checks`.
    ///
    /// # Errors
    /// [`JwksError`] when the document is not JWKS or holds no usable key.
    pub fn parse(document: &[u8], checks: &Checks) -> Result<Self, JwksError> {
        let document: Document = serde_json::from_slice(document).map_err(JwksError::NotJwks)?;
        let mut set = Self::default();
        let mut skipped = 0;
        let mut unnamed = Vec::new();
        for entry in document.keys {
            let Some((id, key)) = usable(entry, checks) else {
                skipped += 1;
                continue;
            };
            match id {
                Some(id) => {
                    set.by_id.insert(id, key);
                }
                None => unnamed.push(key),
            }
        }
        if set.by_id.is_empty() && unnamed.is_empty() {
            return Err(JwksError::NoUsableKey { skipped });
        }
        if unnamed.len() == 1 && set.by_id.is_empty() {
            set.unnamed = unnamed.pop();
        }
        Ok(set)
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.by_id.len() + usize::from(self.unnamed.is_some())
    }

    /// Whether it holds no key (only before a first document was installed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn lookup(&self, kid: Option<&str>) -> Lookup<'_> {
        let found = match kid {
            Some(kid) => self.by_id.get(kid),
            None => self.unnamed.as_ref(),
        };
        match found {
            Some(key) => Lookup::Found(key),
            None => Lookup::Unknown(kid.map(str::to_owned)),
        }
    }
}

/// A document entry as a key, if this service can verify signatures with it.
fn usable(entry: Value, checks: &Checks) -> Option<(Option<String>, VerifyingKey)> {
    let jwk: Jwk = serde_json::from_value(entry).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    // A JWKS is public: a symmetric key in it would let anyone sign.
    if matches!(
        jwk.algorithm,
        AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
    ) {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    let key = match jwk.common.key_algorithm {
        None => VerifyingKey::for_family(key, checks),
        Some(named) => {
            let algorithm: Algorithm = named.to_string().parse().ok()?;
            if algorithm.family() != key.family() || algorithm.family() == AlgorithmFamily::Hmac {
                return None;
            }
            VerifyingKey::new(key, vec![algorithm], checks)
        }
    };
    Some((jwk.common.key_id, key))
}

#[cfg(test)]
mod tests {
    use super::{JwksError, KeySet, Lookup};
    use crate::jwt::tests::checks;
    use serde_json::json;

    /// An Ed25519 public key, as a JWK.
    fn ed25519(kid: Option<&str>) -> serde_json::Value {
        let mut key = json!({"kty": "OKP", "crv": "Ed25519", "x": "1k6HJ3q2RPO4CunB9b7fUw7_Ten2zzce2puZBkFkDJA"});
        if let Some(kid) = kid {
            key["kid"] = json!(kid);
        }
        key
    }

    fn parse(document: &serde_json::Value) -> Result<KeySet, JwksError> {
        KeySet::parse(document.to_string().as_bytes(), &checks())
    }

    #[test]
    fn keys_are_found_by_kid_and_unusable_entries_are_skipped() {
        let set = parse(&json!({"keys": [
            ed25519(Some("a")),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "symmetric"},
            {"kty": "RSA", "n": "x", "e": "AQAB", "kid": "enc", "use": "enc"},
            {"kty": "XYZ", "kid": "odd"},
            "not a key",
        ]}))
        .unwrap();
        assert_eq!(set.len(), 1);
        assert!(matches!(set.lookup(Some("a")), Lookup::Found(_)));
        for missing in ["symmetric", "enc", "odd", "b"] {
            assert!(matches!(
                set.lookup(Some(missing)),
                Lookup::Unknown(Some(_))
            ));
        }
        assert!(
            matches!(set.lookup(None), Lookup::Unknown(None)),
            "a token without kid needs a set with one unnamed key"
        );
    }

    #[test]
    fn a_single_key_without_kid_serves_tokens_without_kid() {
        let set = parse(&json!({"keys": [ed25519(None)]})).unwrap();
        assert!(matches!(set.lookup(None), Lookup::Found(_)));
    }

    #[test]
    fn a_named_algorithm_of_another_family_makes_the_key_unusable() {
        let mut key = ed25519(Some("a"));
        key["alg"] = json!("HS256");
        assert!(matches!(
            parse(&json!({"keys": [key]})),
            Err(JwksError::NoUsableKey { skipped: 1 })
        ));
    }

    #[test]
    fn garbage_is_refused_whole() {
        for garbage in [json!("keys"), json!({"keys": 1}), json!({"other": []})] {
            assert!(matches!(parse(&garbage), Err(JwksError::NotJwks(_))));
        }
        assert!(matches!(
            KeySet::parse(b"<html>", &checks()),
            Err(JwksError::NotJwks(_))
        ));
        assert!(matches!(
            parse(&json!({"keys": []})),
            Err(JwksError::NoUsableKey { skipped: 0 })
        ));
    }
}
