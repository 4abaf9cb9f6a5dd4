//! [`VerifiedCache`]: public-key verifications remembered per token until it expires.
//!
//! An RSA or ECDSA signature check costs tens of microseconds to milliseconds; HMAC costs
//! about a microsecond. In a reconnect storm every client comes back with the token it had,
//! so a node that checked a token once need not check it again. Entries are keyed by the
//! token's SHA-256 (the token itself is never kept), hold what the token allows, and are
//! used only until the token's `exp`. The cache is bounded: when full, expired entries go
//! first, then the oldest; a token that falls out is simply verified again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::Verified;

/// Tokens remembered at most (about 300 bytes each with a short topic list).
pub const MAX_ENTRIES: usize = 100_000;

type TokenHash = [u8; 32];

/// See the module docs.
#[derive(Debug)]
pub struct VerifiedCache {
    entries: Mutex<Entries>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Entries {
    by_hash: HashMap<TokenHash, Verified>,
    /// Insertion order, for evicting the oldest.
    order: VecDeque<TokenHash>,
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            capacity: capacity.max(1),
        }
    }

    /// The remembered verification of `token`, if it has not expired.
    pub fn get(&self, token: &str) -> Option<Verified> {
        let hash = hash(token);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .by_hash
            .get(&hash)
            .filter(|verified| verified.expires_at > SystemTime::now())
            .cloned()
    }

    /// Remembers that `token` verified as `verified`.
    pub fn insert(&self, token: &str, verified: &Verified) {
        let hash = hash(token);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.by_hash.len() >= self.capacity {
            let now = SystemTime::now();
            entries
                .by_hash
                .retain(|_, verified| verified.expires_at > now);
            let Entries { by_hash, order } = &mut *entries;
            order.retain(|hash| by_hash.contains_key(hash));
            while entries.by_hash.len() >= self.capacity {
                let Some(oldest) = entries.order.pop_front() else {
                    break;
                };
                entries.by_hash.remove(&oldest);
            }
        }
        if entries.by_hash.insert(hash, verified.clone()).is_none() {
            entries.order.push_back(hash);
        }
    }

    /// Forgets every token.
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.by_hash.clear();
        entries.order.clear();
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_hash
            .len()
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::VerifiedCache;
    use crate::jwt::{Allowed, Verified};
    use std::time::{Duration, SystemTime};

    fn verified(valid_for: i64) -> Verified {
        let now = SystemTime::now();
        let expires_at = if valid_for >= 0 {
            now + Duration::from_secs(valid_for.unsigned_abs())
        } else {
            now - Duration::from_secs(valid_for.unsigned_abs())
        };
        Verified {
            allowed: Allowed::default(),
            subject: Some("alice".into()),
            expires_at,
        }
    }

    #[test]
    fn a_token_is_remembered_until_it_expires_and_the_cache_stays_bounded() {
        let cache = VerifiedCache::new(2);
        cache.insert("a", &verified(60));
        assert_eq!(cache.get("a").and_then(|v| v.subject), Some("alice".into()));
        assert!(cache.get("b").is_none());
        cache.insert("expired", &verified(-1));
        assert!(
            cache.get("expired").is_none(),
            "an expired token is verified again"
        );
        cache.insert("c", &verified(60));
        assert_eq!(cache.len(), 2, "the expired entry went first");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        cache.insert("d", &verified(60));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a").is_none(), "then the oldest");
        assert!(cache.get("d").is_some());
    }
}
