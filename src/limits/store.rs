//! Where the rate limiters keep their state: fixed-size keys in a map of bounded size.
//!
//! A key is 16 bytes of SHA-256 over what it stands for, so a 60 KB identifier costs what a
//! short one does; and a limiter holds at most `capacity` keys, evicting the least recently
//! used eighth when a new key would pass it. Without both, every distinct identifier a client
//! sends stays in memory until the idle sweep (the attack of issue 14: 1 GB in 7 seconds).

use std::collections::HashMap;
use std::sync::Mutex;

use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use sha2::{Digest, Sha256};

/// What a limiter counts against: the first 16 bytes of SHA-256 of its parts. Collisions
/// would take 2^64 tries, far more than any limit lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key([u8; 16]);

impl Key {
    /// `parts` are length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    pub fn of(parts: &[&[u8]]) -> Key {
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        let digest = hash.finalize();
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        Key(key)
    }

    /// A key that is 16 bytes already and not a client's choice (a session id from a signed
    /// token): used as it is.
    pub fn from_bytes(bytes: [u8; 16]) -> Key {
        Key(bytes)
    }
}

/// One key's GCRA state: its theoretical arrival time, and when it was last used (a tick of
/// the store, for eviction).
struct Slot {
    tat: u64,
    used: u64,
}

#[derive(Default)]
struct Slots {
    map: HashMap<Key, Slot>,
    tick: u64,
}

impl Slots {
    /// Drops the least recently used eighth (at least one key): linear, once per
    /// `capacity / 8` new keys, so constant per key on average.
    fn evict_oldest(&mut self) {
        let mut used: Vec<u64> = self.map.values().map(|slot| slot.used).collect();
        let nth = used.len() / 8;
        let (_, threshold, _) = used.select_nth_unstable(nth);
        let threshold = *threshold;
        self.map.retain(|_, slot| slot.used > threshold);
    }
}

/// A governor state store that never holds more than `capacity` keys.
pub struct BoundedStore {
    capacity: usize,
    slots: Mutex<Slots>,
}

impl BoundedStore {
    pub fn new(capacity: usize) -> BoundedStore {
        BoundedStore {
            capacity: capacity.max(1),
            slots: Mutex::new(Slots::default()),
        }
    }

    /// A key's state (its theoretical arrival time), without touching it.
    pub fn peek(&self, key: &Key) -> Option<u64> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .map
            .get(key)
            .map(|slot| slot.tat)
            .filter(|tat| *tat != 0)
    }
}

impl StateStore for BoundedStore {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.tick += 1;
        let tick = slots.tick;
        // As governor's own stores: 0 is "never seen".
        let previous = slots
            .map
            .get(key)
            .map(|slot| slot.tat)
            .filter(|tat| *tat != 0)
            .map(Nanos::from);
        let (result, tat) = match f(previous) {
            Ok(measured) => measured,
            Err(refused) => {
                // A refused key is in use: it must not be the next to go.
                if let Some(slot) = slots.map.get_mut(key) {
                    slot.used = tick;
                }
                return Err(refused);
            }
        };
        match slots.map.get_mut(key) {
            Some(slot) => {
                slot.tat = tat.into();
                slot.used = tick;
            }
            None => {
                if slots.map.len() >= self.capacity {
                    slots.evict_oldest();
                }
                let slot = Slot {
                    tat: tat.into(),
                    used: tick,
                };
                slots.map.insert(*key, slot);
            }
        }
        Ok(result)
    }
}

impl ShrinkableKeyedStateStore<Key> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below: u64 = drop_below.into();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.map.retain(|_, slot| slot.tat > drop_below);
    }

    fn shrink_to_fit(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::DefaultClock;
    use governor::{Quota, RateLimiter};

    use super::*;

    fn limiter(capacity: usize) -> RateLimiter<Key, BoundedStore, DefaultClock> {
        let quota = Quota::with_period(Duration::from_secs(60)).unwrap();
        RateLimiter::new(quota, BoundedStore::new(capacity), DefaultClock::default())
    }

    #[test]
    fn keys_are_fixed_size_and_length_prefixed() {
        assert_eq!(Key::of(&[b"ab", b"c"]), Key::of(&[b"ab", b"c"]));
        assert_ne!(Key::of(&[b"ab", b"c"]), Key::of(&[b"a", b"bc"]));
        assert_eq!(std::mem::size_of::<Key>(), 16);
    }

    #[test]
    fn given_a_full_store_when_new_keys_arrive_then_the_least_recently_used_go() {
        let limiter = limiter(80);
        let key = |n: u32| Key::of(&[&n.to_le_bytes()]);
        for n in 0..80 {
            limiter.check_key(&key(n)).unwrap();
        }
        // Key 0 is tried again (refused: one a minute), so it is now the most recently used.
        assert!(limiter.check_key(&key(0)).is_err());
        limiter.check_key(&key(80)).unwrap();
        assert!(limiter.len() <= 80, "{} keys", limiter.len());
        assert!(limiter.check_key(&key(0)).is_err(), "kept: used lately");
        assert!(limiter.check_key(&key(1)).is_ok(), "forgotten: the oldest");
        for n in 81..10_000 {
            limiter.check_key(&key(n)).unwrap();
        }
        assert!(limiter.len() <= 80, "{} keys", limiter.len());
        assert!(
            limiter.check_key(&key(9_999)).is_err(),
            "the newest stay limited"
        );
    }

    #[test]
    fn given_a_key_back_to_a_full_allowance_when_swept_then_it_is_dropped() {
        let quota = Quota::with_period(Duration::from_millis(1)).unwrap();
        let limiter: RateLimiter<Key, BoundedStore, DefaultClock> =
            RateLimiter::new(quota, BoundedStore::new(10), DefaultClock::default());
        limiter.check_key(&Key::of(&[b"a"])).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        limiter.retain_recent();
        assert!(limiter.is_empty());
    }
}
