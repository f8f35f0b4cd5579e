//! The keyring: the master key (`PERSONAL_DATA_KEY`) and a cache of unwrapped data keys,
//! with what is known of the keys that are gone. It reads and writes no table itself
//! (`data_keys` does); a key made inside a transaction is cached only once that transaction
//! has committed (`remember`), so that no event is ever sealed under a key that was rolled
//! back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::StoreError;
use super::sealed::{ACCOUNT_PERIOD, DataKey, MasterKey};

/// Above this many cached keys the cache starts over: one key is 72 bytes wrapped and an
/// unwrap takes about a microsecond.
pub(super) const CACHE_LIMIT: usize = 200_000;

/// Why a reader has no key for a period.
pub const FORGOTTEN: &str = "forgotten";
pub const EXPIRED: &str = "expired";
/// A section sealed under a key the table does not have at all (a restored older backup of
/// the table, or a row deleted by hand).
pub const MISSING: &str = "missing";

/// What is known of one owner's key for one period.
#[derive(Clone, Debug)]
pub enum Known {
    Key(DataKey),
    Gone(Arc<str>),
}

/// A `(owner, period)` pair.
pub type Slot = (String, i64);

/// The keys a batch seals with, and those it made (to `remember` after its commit).
#[derive(Debug, Default)]
pub struct BatchKeys {
    pub keys: HashMap<Slot, DataKey>,
    pub made: Vec<(Slot, DataKey)>,
}

impl BatchKeys {
    pub fn get(&self, owner: &str, period: i64) -> Option<&DataKey> {
        self.keys.get(&(owner.to_owned(), period))
    }
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) master: MasterKey,
    cache: Mutex<HashMap<Slot, Known>>,
}

/// The master key and the cache of data keys.
#[derive(Clone, Debug)]
pub struct Keyring(pub(super) Arc<Inner>);

pub(super) fn undecryptable(owner: &str, period: i64) -> StoreError {
    StoreError::Keys(format!(
        "the data key of {owner} for period {period} does not open with PERSONAL_DATA_KEY \
         (is it the key this database was written with?)"
    ))
}

impl Keyring {
    pub fn new(master: MasterKey) -> Keyring {
        Keyring(Arc::new(Inner {
            master,
            cache: Mutex::new(HashMap::new()),
        }))
    }

    pub(super) fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Slot, Known>> {
        self.0.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn known(
        &self,
        owner: &str,
        period: i64,
        wrapped: Option<Vec<u8>>,
        erased: Option<String>,
    ) -> Result<Known, StoreError> {
        match wrapped {
            Some(wrapped) => self
                .0
                .master
                .unwrap(owner, period, &wrapped)
                .map(Known::Key)
                .ok_or_else(|| undecryptable(owner, period)),
            None => Ok(Known::Gone(
                erased.unwrap_or_else(|| MISSING.to_owned()).into(),
            )),
        }
    }

    /// Caches the keys a committed transaction made.
    pub fn remember(&self, made: Vec<(Slot, DataKey)>) {
        let mut cache = self.cache();
        for (slot, key) in made {
            cache.insert(slot, Known::Key(key));
        }
    }

    /// Drops every cached key of `owner` (forgotten), or of the periods up to `through`.
    pub fn evict(&self, owner: Option<&str>, through: Option<i64>) {
        self.cache().retain(|(o, period), _| {
            let owner_matches = owner.is_none_or(|owner| o == owner);
            let period_matches =
                through.is_none_or(|through| *period != ACCOUNT_PERIOD && *period <= through);
            !(owner_matches && period_matches)
        });
    }
}
