//! Cached token validation for the controller's hot path: a hit costs a hash and a map
//! lookup instead of a round trip to Keystone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{Keystone, Result, TokenInfo};

pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// How long a validation is trusted: a token revoked in Keystone is still accepted for up to
/// this long by a controller that validated it just before.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

/// Valid tokens seen recently, keyed by the SHA-256 of the token (the token itself is never
/// stored), each kept until `ttl` has passed or the token expires, whichever is first. Holds
/// at most `capacity` entries; when full, expired entries go first, then the ones closest to
/// expiring. Failed validations are not cached.
#[derive(Debug)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    capacity: usize,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    info: TokenInfo,
    fresh_until: Instant,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL)
    }
}

impl TokenCache {
    /// A cache of at most `capacity` (at least 1) tokens, each trusted for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached answer for `token`, or Keystone's (cached when valid).
    pub async fn validate(&self, keystone: &Keystone, token: &str) -> Result<TokenInfo> {
        if let Some(info) = self.get(token) {
            return Ok(info);
        }
        let info = keystone.validate_token(token).await?;
        self.insert(token, info.clone());
        Ok(info)
    }

    /// The cached validation of `token` while it is fresh; counts a hit or a miss.
    pub fn get(&self, token: &str) -> Option<TokenInfo> {
        let key = digest(token);
        let now = Instant::now();
        let mut entries = self.lock();
        let found = match entries.get(&key) {
            Some(entry) if entry.fresh_until > now => Some(entry.info.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        };
        drop(entries);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remembers that `token` validated as `info`. A token that has already expired is not
    /// kept.
    pub fn insert(&self, token: &str, info: TokenInfo) {
        let now = Instant::now();
        let Some(lifetime) = remaining(&info) else {
            return;
        };
        let fresh_until = now + lifetime.min(self.ttl);
        let key = digest(token);
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.fresh_until > now);
            if entries.len() >= self.capacity {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.fresh_until)
                    .map(|(key, _)| *key);
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, Entry { info, fresh_until });
    }

    /// Forgets `token`, e.g. after it was revoked here.
    pub fn remove(&self, token: &str) {
        self.lock().remove(&digest(token));
    }

    /// Entries held, fresh or not yet evicted.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (hits, misses) of [`TokenCache::get`] so far, for metrics.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters here: every entry is complete on its own.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// How long until the token expires; `None` if it already has.
fn remaining(info: &TokenInfo) -> Option<Duration> {
    let left = info.expires_at.duration_since(jiff::Timestamp::now());
    Duration::try_from(left).ok().filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user: &str, expires_in: i64) -> TokenInfo {
        TokenInfo {
            user_id: user.to_owned(),
            user_name: user.to_owned(),
            project_id: Some("p".to_owned()),
            roles: vec!["member".to_owned()],
            expires_at: jiff::Timestamp::now() + jiff::SignedDuration::from_secs(expires_in),
            application_credential_id: None,
        }
    }

    #[test]
    fn hit_returns_what_was_inserted_and_counts() {
        let cache = TokenCache::default();
        assert!(cache.get("t1").is_none());
        cache.insert("t1", info("alice", 3600));
        assert_eq!(cache.get("t1").unwrap().user_id, "alice");
        assert!(cache.get("t2").is_none());
        assert_eq!(cache.stats(), (1, 2));
    }

    #[test]
    fn entries_expire_at_ttl_or_token_expiry_whichever_is_first() {
        let cache = TokenCache::new(10, Duration::from_millis(50));
        cache.insert("short-ttl", info("a", 3600));
        let long = TokenCache::new(10, Duration::from_secs(3600));
        long.insert("expires-soon", info("b", 1));
        long.insert("already-expired", info("c", -5));
        assert!(cache.get("short-ttl").is_some());
        assert!(long.get("expires-soon").is_some());
        assert!(long.get("already-expired").is_none());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(cache.get("short-ttl").is_none());
        assert!(long.get("expires-soon").is_none());
    }

    #[test]
    fn capacity_is_a_bound_and_the_soonest_to_expire_goes_first() {
        let cache = TokenCache::new(2, Duration::from_secs(3600));
        cache.insert("soon", info("a", 100));
        cache.insert("late", info("b", 3000));
        cache.insert("new", info("c", 2000));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("soon").is_none());
        assert!(cache.get("late").is_some());
        assert!(cache.get("new").is_some());
    }

    #[test]
    fn the_token_itself_is_not_kept() {
        let cache = TokenCache::default();
        cache.insert("gAAAA-secret-token", info("a", 3600));
        assert!(!format!("{cache:?}").contains("gAAAA-secret-token"));
    }
}
