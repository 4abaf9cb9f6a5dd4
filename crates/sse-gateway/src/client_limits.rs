//! [`ClientLimits`]: how many streams one client may hold, by address
//! (`--max-connections-per-ip`) and, with tokens on, by the token's `sub`
//! (`--max-connections-per-user`). One misbehaving page or script cannot take the node's
//! `--max-connections` for itself.
//!
//! The client's address is the peer's, unless the peer is a proxy listed in
//! `--trusted-proxy` (nginx): then it is taken from `X-Forwarded-For` (the rightmost address
//! that is not a trusted proxy: the one the first trusted proxy saw) or else `X-Real-IP`.
//! Headers from anyone else are ignored, so a client cannot pick its own address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::HeaderMap;
use ipnet::IpNet;

/// The per-client limits of a node and what each client holds now.
#[derive(Debug, Default)]
pub(crate) struct ClientLimits {
    per_ip: Option<usize>,
    per_user: Option<usize>,
    trusted: Vec<IpNet>,
    open_by_ip: Mutex<HashMap<IpAddr, usize>>,
    open_by_user: Mutex<HashMap<String, usize>>,
}

/// A client over one of its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OverLimit {
    /// Its address holds `max` streams.
    #[error(
        "this address holds its maximum of {max} streams on this node; close one, or retry later"
    )]
    Address {
        /// The limit.
        max: usize,
    },
    /// Its user (`sub`) holds `max` streams.
    #[error("this user holds its maximum of {max} streams on this node; close one, or retry later")]
    User {
        /// The limit.
        max: usize,
    },
}

/// A stream's share of its client's limits, given back on drop.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    limits: Arc<ClientLimits>,
    ip: Option<IpAddr>,
    user: Option<String>,
}

impl ClientLimits {
    /// Limits of `per_ip` and `per_user` streams (none when `None`), with addresses from
    /// headers trusted only when the peer is in `trusted`.
    pub(crate) fn new(per_ip: Option<usize>, per_user: Option<usize>, trusted: Vec<IpNet>) -> Self {
        Self {
            per_ip,
            per_user,
            trusted,
            ..Self::default()
        }
    }

    /// The client's address (see the module docs).
    pub(crate) fn client_address(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        if let Some(client) = forwarded.iter().rev().find(|ip| !self.is_trusted(**ip)) {
            return *client;
        }
        if let Some(first) = forwarded.first() {
            return *first;
        }
        headers
            .get("x-real-ip")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<IpAddr>().ok())
            .map_or(peer, |ip| ip.to_canonical())
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Admits one more stream for `ip` and `user`.
    ///
    /// # Errors
    /// [`OverLimit`] naming the limit the client is at.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        user: Option<&str>,
    ) -> Result<ClientSlot, OverLimit> {
        let mut slot = ClientSlot {
            limits: self.clone(),
            ip: None,
            user: None,
        };
        if let Some(max) = self.per_ip {
            take(&mut lock(&self.open_by_ip), ip, max).ok_or(OverLimit::Address { max })?;
            slot.ip = Some(ip);
        }
        if let (Some(max), Some(user)) = (self.per_user, user) {
            // On refusal, `slot` gives the address's share back as it drops.
            take(&mut lock(&self.open_by_user), user.to_owned(), max)
                .ok_or(OverLimit::User { max })?;
            slot.user = Some(user.to_owned());
        }
        Ok(slot)
    }
}

/// Counts one more for `key` unless it holds `max` already.
fn take<K: std::hash::Hash + Eq>(open: &mut HashMap<K, usize>, key: K, max: usize) -> Option<()> {
    let count = open.entry(key).or_insert(0);
    (*count < max).then(|| *count += 1)
}

/// Counts one less for `key`, forgetting it at zero (the maps hold current clients only).
fn give_back<K: std::hash::Hash + Eq>(open: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = open.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            open.remove(key);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned count is still a count; keep serving.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some(ip) = &self.ip {
            give_back(&mut lock(&self.limits.open_by_ip), ip);
        }
        if let Some(user) = &self.user {
            give_back(&mut lock(&self.limits.open_by_user), user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ClientLimits, OverLimit};
    use http::{HeaderMap, HeaderValue};
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn peer(text: &str) -> SocketAddr {
        SocketAddr::new(ip(text), 40000)
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let limits = ClientLimits::new(None, None, vec!["10.0.0.0/8".parse().unwrap()]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.1.1.1"),
        );
        assert_eq!(
            limits.client_address(peer("10.0.0.2"), &headers),
            ip("203.0.113.7"),
            "the rightmost address that is not a trusted proxy"
        );
        assert_eq!(
            limits.client_address(peer("198.51.100.1"), &headers),
            ip("198.51.100.1"),
            "an untrusted peer cannot choose its address"
        );
        let mut real_ip = HeaderMap::new();
        real_ip.insert("x-real-ip", HeaderValue::from_static("192.0.2.9"));
        assert_eq!(
            limits.client_address(peer("10.0.0.2"), &real_ip),
            ip("192.0.2.9")
        );
        assert_eq!(
            limits.client_address(peer("::ffff:10.0.0.2"), &real_ip),
            ip("192.0.2.9"),
            "an IPv4-mapped peer is its IPv4 address"
        );
    }

    #[test]
    fn each_limit_counts_its_own_clients_and_slots_give_back_on_drop() {
        let limits = Arc::new(ClientLimits::new(Some(2), Some(1), Vec::new()));
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let first = limits.admit(a, Some("alice")).unwrap();
        assert_eq!(
            limits.admit(a, Some("alice")).unwrap_err(),
            OverLimit::User { max: 1 }
        );
        let second = limits.admit(a, Some("bob")).unwrap();
        assert_eq!(
            limits.admit(a, None).unwrap_err(),
            OverLimit::Address { max: 2 }
        );
        let other = limits.admit(b, None).unwrap();
        drop(first);
        let again = limits.admit(a, Some("alice")).unwrap();
        drop((second, other, again));
        assert!(limits.open_by_ip.lock().unwrap().is_empty());
        assert!(limits.open_by_user.lock().unwrap().is_empty());
    }
}
